//! Fixture conversion shared by the runner's tests.

use std::path::{Path, PathBuf};

use ggufy_convert::{ConvertOptions, Converter, OutType};
use ggufy_plan::{ExecOptions, execute};

/// The workspace's `fixtures/` folder.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// Converts checkpoint `src` to `outtype` in `dir` (once: a second call reuses the file), with
/// a `tokenizer.ggml.pre` override for fixtures too small for llama.cpp's check text.
pub fn convert(src: &Path, outtype: &str, pre: Option<&str>, dir: &Path) -> PathBuf {
    let name = format!(
        "{}-{outtype}.gguf",
        src.file_name().unwrap().to_string_lossy()
    );
    if dir.join(&name).exists() {
        return dir.join(name);
    }
    let mut opts = ConvertOptions {
        outtype: OutType::parse(outtype).unwrap(),
        ..ConvertOptions::default()
    };
    opts.vocab.pre_override = pre.map(str::to_owned);
    let conv = Converter::open(src, &opts).unwrap();
    let (plan, _) = conv.plan().unwrap();
    execute(
        &plan,
        &dir.join(name),
        &ExecOptions::default(),
        &mut |_, _| {},
    )
    .unwrap()
    .0
}
