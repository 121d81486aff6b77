//! Any bytes as a Hugging Face checkpoint directory — `config.json`, the shard index
//! `model.safetensors.index.json` and safetensors shards (their JSON headers, offsets, dtypes,
//! shapes) — opened, planned and converted to a GGUF file: must never panic, hang or allocate
//! without bound. The input is the files' bytes joined by `SEP`, in that order (an empty part
//! means the file is absent); the tokenizer is the bundled tiny llama's.
//!
//!     python3 fuzz/make_seeds.py      # writes fuzz/corpus/checkpoint from fixtures/hf
//!     cargo +nightly fuzz run checkpoint fuzz/corpus/checkpoint -- -max_len=65536
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use ggufy_convert::{Checkpoint, ConvertOptions, Converter, OutType};
use ggufy_plan::{Encoding, ExecOptions, execute};
use libfuzzer_sys::fuzz_target;

/// Separates the files in an input (chosen to be unlikely inside JSON or tensor data).
const SEP: &[u8] = b"\n--8<--ggufy--\n";

const TOKENIZER: &[u8] = include_bytes!("../../fixtures/hf/tiny-llama/tokenizer.model");

fn workdir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("ggufy-fuzz-checkpoint-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

fn split<'a>(mut data: &'a [u8]) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    while let Some(i) = data.windows(SEP.len()).position(|w| w == SEP) {
        parts.push(&data[..i]);
        data = &data[i + SEP.len()..];
    }
    parts.push(data);
    parts
}

fuzz_target!(|data: &[u8]| {
    let dir = workdir().join("ckpt");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tokenizer.model"), TOKENIZER).unwrap();
    let parts = split(data);
    let shards = parts.len().saturating_sub(2).min(4);
    let write = |name: String, bytes: &[u8]| std::fs::write(dir.join(name), bytes).unwrap();
    if let Some(c) = parts.first().filter(|c| !c.is_empty()) {
        write("config.json".into(), c);
    }
    if let Some(i) = parts.get(1).filter(|i| !i.is_empty()) {
        write("model.safetensors.index.json".into(), i);
    }
    for (k, shard) in parts.iter().skip(2).take(shards).enumerate() {
        let name = if shards == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{:05}.safetensors", k + 1, shards)
        };
        write(name, shard);
    }

    if let Ok(ck) = Checkpoint::open(&dir) {
        let mut x = 0u8;
        for t in ck.tensors() {
            let d = ck.data(t);
            x ^= d.first().copied().unwrap_or(0) ^ d.last().copied().unwrap_or(0);
            let _ = (t.dtype.size(), t.n_elements());
            ck.release(t);
        }
        std::hint::black_box(x);
    }
    // The last byte picks the output type, so quantizers and NF4 see these inputs too.
    let outtype = match data.last().copied().unwrap_or(0) % 4 {
        0 => OutType::F16,
        1 => OutType::Auto,
        2 => OutType::parse("q4_0").unwrap(),
        _ => OutType::Encoding(Encoding::Nf4),
    };
    let opts = ConvertOptions {
        outtype,
        ..Default::default()
    };
    let Ok(conv) = Converter::open(&dir, &opts) else {
        return;
    };
    let Ok((plan, _warnings)) = conv.plan() else {
        return;
    };
    let exec = ExecOptions {
        threads: 1,
        ..Default::default()
    };
    let out = workdir().join("out.gguf");
    let _ = std::fs::remove_file(&out);
    let _ = execute(&plan, &out, &exec, &mut |_, _| {});
});
