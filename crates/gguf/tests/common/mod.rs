//! Paths shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The workspace's `fixtures/` folder.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// llama.cpp's vocab GGUFs: `$GGUFY_VOCAB_DIR` if set, else `../shared/vocab` beside the repo.
pub fn vocab_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("GGUFY_VOCAB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vocab"));
    dir.is_dir().then_some(dir)
}

/// Every `*.gguf` in a folder, sorted.
pub fn gguf_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
        .collect();
    v.sort();
    v
}
