//! `kernels/metal/*.metal` is the Metal Shading Language naga makes from `kernels/wgsl/*.wgsl`,
//! committed so Apple users and reviewers read the code Metal runs. This test regenerates each
//! file and fails when the committed one is stale; `GGUFY_BLESS=1 cargo test -p ggufy-gpu --test
//! metal` rewrites them. (wgpu itself translates the WGSL at run time with the same naga.)

use std::path::PathBuf;

fn kernels() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../kernels")
}

fn to_msl(name: &str, wgsl: &str) -> String {
    let module = naga::front::wgsl::parse_str(wgsl)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(wgsl)));
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::empty(),
    )
    .validate(&module)
    .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(wgsl)));
    let options = naga::back::msl::Options {
        lang_version: (2, 1),
        fake_missing_bindings: true,
        ..Default::default()
    };
    let (msl, _) = naga::back::msl::write_string(
        &module,
        &info,
        &options,
        &naga::back::msl::PipelineOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    format!(
        "// Generated from kernels/wgsl/common.wgsl + {name}.wgsl by naga 30 (crates/gpu/tests/metal.rs); do not edit.\n{msl}"
    )
}

#[test]
fn metal_sources_are_current() {
    let bless = std::env::var_os("GGUFY_BLESS").is_some();
    // Every kernel file is compiled (the shared helpers are prepended to each, not a kernel).
    let mut files: Vec<String> = std::fs::read_dir(kernels().join("wgsl"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wgsl"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .filter(|n| n != "common")
        .collect();
    files.sort();
    let mut known: Vec<String> = ggufy_gpu::wgsl::ALL
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    known.sort();
    assert_eq!(
        files, known,
        "kernels/wgsl and ggufy_gpu::wgsl::ALL disagree"
    );
    let mut stale = Vec::new();
    for (name, source) in ggufy_gpu::wgsl::ALL {
        let msl = to_msl(name, source);
        let metal = kernels().join("metal").join(format!("{name}.metal"));
        if bless {
            std::fs::write(&metal, &msl).unwrap();
        } else if std::fs::read_to_string(&metal).ok().as_deref() != Some(msl.as_str()) {
            stale.push(metal.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "stale or missing (regenerate with GGUFY_BLESS=1 cargo test -p ggufy-gpu --test metal): {stale:?}"
    );
}
