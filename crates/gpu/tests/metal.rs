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
        "// Generated from kernels/wgsl/{name}.wgsl by naga 30 (crates/gpu/tests/metal.rs); do not edit.\n{msl}"
    )
}

#[test]
fn metal_sources_are_current() {
    let bless = std::env::var_os("GGUFY_BLESS").is_some();
    let mut stale = Vec::new();
    let mut n = 0;
    for e in std::fs::read_dir(kernels().join("wgsl")).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_none_or(|x| x != "wgsl") {
            continue;
        }
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let msl = to_msl(&name, &std::fs::read_to_string(&path).unwrap());
        let metal = kernels().join("metal").join(format!("{name}.metal"));
        if bless {
            std::fs::write(&metal, &msl).unwrap();
        } else if std::fs::read_to_string(&metal).ok().as_deref() != Some(msl.as_str()) {
            stale.push(metal.display().to_string());
        }
        n += 1;
    }
    assert!(n > 0, "no WGSL kernels found");
    assert!(
        stale.is_empty(),
        "stale or missing (regenerate with GGUFY_BLESS=1 cargo test -p ggufy-gpu --test metal): {stale:?}"
    );
}
