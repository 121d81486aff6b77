//! Any bytes through the GGUF reader and everything a caller touches afterwards: every value,
//! every array element, every tensor's data, and a rewrite plan. Must never panic.
//!
//!     cargo +nightly fuzz run gguf_reader fixtures/gguf fixtures/malformed -- -rss_limit_mb=2048
#![no_main]

use ggufy_gguf::{Gguf, Value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(f) = Gguf::from_bytes(data) else {
        return;
    };
    for (_, v) in f.metadata() {
        if let Value::Array(a) = v {
            for e in a.iter() {
                let _ = e.as_str();
            }
            let _ = a.get(a.len().saturating_sub(1));
        }
        let _ = v.to_owned_value();
    }
    for t in f.tensors() {
        let _ = f.tensor_data(t);
    }
    let _ = f.get_u32("general.alignment");
    let _ = f.to_write_plan();
});
