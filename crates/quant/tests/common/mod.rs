//! Fixture access shared by the quantizer tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The workspace's `fixtures/` folder.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// `fixtures/quant/rows.f32`: the random and edge rows every quantizer golden was made from.
pub fn rows() -> Vec<f32> {
    std::fs::read(fixtures().join("quant/rows.f32"))
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}
