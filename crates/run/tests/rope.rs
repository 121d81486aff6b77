//! RoPE against ggml's own `ggml_rope_ext` (`fixtures/ggml_rope_ref.c` wrote
//! `fixtures/golden/run/rope.f32`): normal and NeoX pairs, no scaling, linear ×4 and YaRN ×4
//! (original context 32, positions up to 45), bases 10⁴ and 10⁶, one 64-wide head with 48
//! rotated dimensions.

use std::path::PathBuf;

use ggufy_run::{Arch, Hparams, Yarn, rope};

const HD: usize = 64;
const NROT: usize = 48;
const NPOS: usize = 16;

fn hparams(arch: Arch, base: f32, scaling: usize) -> Hparams {
    let freq_scale = if scaling == 0 { 1.0 } else { 0.25 };
    let (yarn, attn) = if scaling == 2 {
        let f = 1.0f32 / freq_scale;
        let attn = (0.1f32 * 1.0 * f.ln() + 1.0) * (1.0 / (1.0 + 0.1 * f.ln()));
        (Some(Yarn::new(NROT, 32, base, 1.0, 32.0, 1.0)), attn)
    } else {
        (None, 1.0)
    };
    Hparams {
        arch,
        arch_name: "test".into(),
        n_vocab: 1,
        n_embd: HD,
        n_layer: 1,
        n_head: 1,
        n_head_kv: 1,
        head_dim: HD,
        head_dim_v: HD,
        n_ff: 1,
        n_ctx_train: 32,
        rms_eps: 1e-5,
        rope_base: base,
        n_rot: NROT,
        rope_freq_scale: freq_scale,
        rope_attn_factor: attn,
        n_ctx_orig: 32,
        yarn,
    }
}

#[test]
fn rope_matches_ggml_rope_ext() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/golden/run/rope.f32");
    let want: Vec<f32> = std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(want.len(), 2 * 3 * 2 * NPOS * HD);
    let mut case = 0;
    let mut worst = 0f32;
    for arch in [Arch::Llama, Arch::Qwen2] {
        for scaling in 0..3 {
            for base in [10000.0f32, 1000000.0] {
                let hp = hparams(arch, base, scaling);
                for k in 0..NPOS {
                    let mut v: Vec<f32> = (0..HD)
                        .map(|i| (0.37f32 * i as f32 + 0.33 * k as f32).sin() + 0.5)
                        .collect();
                    rope(&hp, None, &mut v, 3 * k);
                    let w = &want[(case * NPOS + k) * HD..(case * NPOS + k + 1) * HD];
                    for (i, (a, b)) in v.iter().zip(w).enumerate() {
                        // sin/cos come from different libms: a few ulps.
                        let err = (a - b).abs();
                        worst = worst.max(err);
                        assert!(
                            err <= 2e-6 * (1.0 + b.abs()),
                            "{arch:?} scaling {scaling} base {base} pos {} dim {i}: {a} vs {b}",
                            3 * k
                        );
                    }
                }
                case += 1;
            }
        }
    }
    eprintln!("worst difference from ggml: {worst:e}");
}
