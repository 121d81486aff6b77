//! The llama-family forward pass over a mapped GGUF file, following llama.cpp's graph and its
//! numerics: f64-summed RMSNorm, iterative RoPE angles, an F16 KV cache, F16 attention operands.

use std::collections::HashMap;

use ggufy_gguf::Gguf;
use ggufy_quant::simd;

use rayon::prelude::*;

use crate::error::{Result, RunError};
use crate::weights::{Accelerator, DeviceMatrix, Matrix, Storage, round_f16};

/// The supported architectures and what differs between them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// Llama 2/3, Mistral, TinyLlama, SmolLM.
    Llama,
    /// Qwen2: q/k/v biases, NeoX RoPE.
    Qwen2,
    /// Phi-3: fused qkv and gate/up, NeoX RoPE, LongRoPE factors.
    Phi3,
    /// Gemma: GeGLU, embeddings scaled by √n_embd, NeoX RoPE.
    Gemma,
}

/// Hyperparameters, checked.
#[derive(Clone, Debug)]
pub struct Hparams {
    /// Architecture.
    pub arch: Arch,
    /// Its GGUF name (the key prefix).
    pub arch_name: String,
    /// Vocabulary size (rows of the embedding).
    pub n_vocab: usize,
    /// Hidden size.
    pub n_embd: usize,
    /// Layers.
    pub n_layer: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads.
    pub n_head_kv: usize,
    /// Per-head size of keys and queries.
    pub head_dim: usize,
    /// Per-head size of values.
    pub head_dim_v: usize,
    /// Feed-forward size.
    pub n_ff: usize,
    /// Training context length.
    pub n_ctx_train: usize,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// RoPE base.
    pub rope_base: f32,
    /// Rotated dimensions per head.
    pub n_rot: usize,
    /// Linear RoPE scaling (1 / factor).
    pub rope_freq_scale: f32,
    /// Multiplier on RoPE's cos and sin (Phi-3's attn_factor).
    pub rope_attn_factor: f32,
    /// Context length before RoPE scaling (Phi-3 picks long or short factors by it).
    pub n_ctx_orig: usize,
    /// YaRN's extrapolation mix and correction dimensions, when the file asks for YaRN.
    pub yarn: Option<Yarn>,
}

fn key<B: AsRef<[u8]>>(f: &Gguf<B>, arch: &str, k: &str) -> Result<Option<u64>> {
    Ok(f.get_u64(&format!("{arch}.{k}"))?)
}

fn need<B: AsRef<[u8]>>(f: &Gguf<B>, arch: &str, k: &str) -> Result<usize> {
    let v = key(f, arch, k)?.ok_or_else(|| RunError::MissingKey {
        key: format!("{arch}.{k}"),
    })?;
    usize::try_from(v).map_err(|_| RunError::BadKey {
        key: format!("{arch}.{k}"),
        problem: format!("{v} is too large"),
    })
}

fn float<B: AsRef<[u8]>>(f: &Gguf<B>, arch: &str, k: &str) -> Result<Option<f32>> {
    Ok(f.get_f64(&format!("{arch}.{k}"))?.map(|v| v as f32))
}

impl Hparams {
    /// Reads and checks the hyperparameters (users-and-security.md §2.2 item 35).
    pub fn from_gguf<B: AsRef<[u8]>>(f: &Gguf<B>) -> Result<Hparams> {
        let arch_name = f
            .get_str("general.architecture")?
            .ok_or_else(|| RunError::MissingKey {
                key: "general.architecture".into(),
            })?
            .to_owned();
        let arch = match arch_name.as_str() {
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            "phi3" => Arch::Phi3,
            "gemma" => Arch::Gemma,
            other => return Err(RunError::Architecture(other.to_owned())),
        };
        let a = arch_name.as_str();
        let bad = |k: &str, problem: String| RunError::BadKey {
            key: format!("{a}.{k}"),
            problem,
        };
        let n_embd = need(f, a, "embedding_length")?;
        let n_layer = need(f, a, "block_count")?;
        let n_head = need(f, a, "attention.head_count")?;
        let n_head_kv = match key(f, a, "attention.head_count_kv")? {
            Some(v) => v as usize,
            None => n_head,
        };
        let n_ff = need(f, a, "feed_forward_length")?;
        let n_ctx_train = need(f, a, "context_length")?;
        if n_embd == 0 || n_embd > 1 << 17 {
            return Err(bad(
                "embedding_length",
                format!("{n_embd} is not a usable width"),
            ));
        }
        if n_layer == 0 || n_layer > 4096 {
            return Err(bad(
                "block_count",
                format!("{n_layer} layers is not plausible"),
            ));
        }
        if n_head == 0 || n_head > 4096 {
            return Err(bad(
                "attention.head_count",
                format!("{n_head} heads is not plausible"),
            ));
        }
        if n_head_kv == 0 || n_head % n_head_kv != 0 {
            return Err(bad(
                "attention.head_count_kv",
                format!("{n_head_kv} must be at least 1 and divide the {n_head} query heads"),
            ));
        }
        if n_ff == 0 || n_ff > 1 << 20 {
            return Err(bad(
                "feed_forward_length",
                format!("{n_ff} is not plausible"),
            ));
        }
        if n_ctx_train == 0 {
            return Err(bad("context_length", "0".into()));
        }
        let head_dim = match key(f, a, "attention.key_length")? {
            Some(v) => v as usize,
            None => {
                if n_embd % n_head != 0 {
                    return Err(bad(
                        "embedding_length",
                        format!("{n_embd} is not a multiple of the {n_head} heads"),
                    ));
                }
                n_embd / n_head
            }
        };
        let head_dim_v = key(f, a, "attention.value_length")?.map_or(head_dim, |v| v as usize);
        if head_dim == 0 || head_dim > 4096 || head_dim_v != head_dim {
            return Err(bad(
                "attention.key_length",
                format!("head sizes {head_dim}/{head_dim_v} are not supported"),
            ));
        }
        let n_rot = key(f, a, "rope.dimension_count")?.map_or(head_dim, |v| v as usize);
        if n_rot > head_dim || n_rot % 2 != 0 {
            return Err(bad(
                "rope.dimension_count",
                format!("{n_rot} must be even and at most the head size {head_dim}"),
            ));
        }
        let rms_eps = float(f, a, "attention.layer_norm_rms_epsilon")?.ok_or_else(|| {
            RunError::MissingKey {
                key: format!("{a}.attention.layer_norm_rms_epsilon"),
            }
        })?;
        let rope_base = float(f, a, "rope.freq_base")?.unwrap_or(10000.0);
        let mut rope_freq_scale = 1.0;
        let mut yarn_asked = false;
        match f.get_str(&format!("{a}.rope.scaling.type"))? {
            None | Some("none") => {}
            Some(kind @ ("linear" | "yarn")) => {
                let factor = float(f, a, "rope.scaling.factor")?.unwrap_or(1.0);
                if factor.is_nan() || factor <= 0.0 {
                    return Err(bad("rope.scaling.factor", format!("{factor}")));
                }
                rope_freq_scale = 1.0 / factor;
                yarn_asked = kind == "yarn";
            }
            Some(other) => {
                return Err(bad(
                    "rope.scaling.type",
                    format!("'{other}' RoPE scaling is not supported by the runner yet"),
                ));
            }
        }
        let mut rope_attn_factor = float(f, a, "rope.scaling.attn_factor")?.unwrap_or(1.0);
        let n_ctx_orig =
            key(f, a, "rope.scaling.original_context_length")?.map_or(n_ctx_train, |v| v as usize);
        let yarn = if yarn_asked {
            // llama.cpp's defaults for the llama family: full extrapolation mix, β 32 and 1, and
            // an attention factor that cancels the magnitude correction applied in the kernel
            // (llama_context's constructor; its float steps kept).
            let factor = 1.0 / rope_freq_scale;
            let mscale = if factor <= 1.0 {
                1.0
            } else {
                0.1f32 * 1.0 * factor.ln() + 1.0
            };
            rope_attn_factor *= mscale * (1.0 / (1.0 + 0.1 * factor.ln()));
            Some(Yarn::new(n_rot, n_ctx_orig, rope_base, 1.0, 32.0, 1.0))
        } else {
            None
        };
        let n_vocab = f
            .tensor("token_embd.weight")
            .and_then(|t| t.dims.get(1).copied())
            .ok_or_else(|| RunError::Tensor {
                name: "token_embd.weight".into(),
                problem: "missing or not 2-D".into(),
            })? as usize;
        Ok(Hparams {
            arch,
            arch_name,
            n_vocab,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            head_dim,
            head_dim_v,
            n_ff,
            n_ctx_train,
            rms_eps,
            rope_base,
            n_rot,
            rope_freq_scale,
            rope_attn_factor,
            n_ctx_orig,
            yarn,
        })
    }

    /// Whether RoPE rotates NeoX-style pairs (i, i + n_rot/2) rather than adjacent ones.
    pub fn neox(&self) -> bool {
        self.arch != Arch::Llama
    }
}

/// YaRN RoPE scaling (llama.cpp's `rope_yarn`): per dimension pair, a mix of the interpolated
/// and the extrapolated angle, ramped between two correction dimensions, and a magnitude
/// correction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Yarn {
    /// Extrapolation mix (1: full YaRN).
    pub ext_factor: f32,
    /// The ramp's start and end dimensions.
    pub corr_dims: [f32; 2],
}

impl Yarn {
    /// ggml's `ggml_rope_yarn_corr_dims` for these parameters.
    pub fn new(
        n_rot: usize,
        n_ctx_orig: usize,
        base: f32,
        ext_factor: f32,
        beta_fast: f32,
        beta_slow: f32,
    ) -> Yarn {
        let dim = |n_rotations: f32| {
            n_rot as f32 * (n_ctx_orig as f32 / (n_rotations * 2.0 * std::f32::consts::PI)).ln()
                / (2.0 * base.ln())
        };
        let start = dim(beta_fast).floor();
        let end = dim(beta_slow).ceil();
        Yarn {
            ext_factor,
            corr_dims: [start.max(0.0), end.min(n_rot as f32 - 1.0)],
        }
    }

    /// The angle and magnitude for dimension pair `i` (`theta_extrap` before scaling).
    fn angle(&self, theta_extrap: f32, freq_scale: f32, i: usize, mscale: f32) -> (f32, f32) {
        let theta_interp = freq_scale * theta_extrap;
        if self.ext_factor == 0.0 {
            return (theta_interp, mscale);
        }
        let [low, high] = self.corr_dims;
        let y = (i as f32 - low) / (high - low).max(0.001);
        let ramp_mix = (1.0 - y.clamp(0.0, 1.0)) * self.ext_factor;
        let theta = theta_interp * (1.0 - ramp_mix) + theta_extrap * ramp_mix;
        (theta, mscale * (1.0 + 0.1 * (1.0 / freq_scale).ln()))
    }
}

/// One layer's weights.
#[derive(Debug)]
struct Layer<'a> {
    attn_norm: Vec<f32>,
    /// Separate q, k, v; or Phi-3's fused qkv as `q` with `k`/`v` None.
    wq: Matrix<'a>,
    wk: Option<Matrix<'a>>,
    wv: Option<Matrix<'a>>,
    bq: Option<Vec<f32>>,
    bk: Option<Vec<f32>>,
    bv: Option<Vec<f32>>,
    wo: Matrix<'a>,
    ffn_norm: Vec<f32>,
    /// None for Phi-3, whose `up` holds gate and up.
    gate: Option<Matrix<'a>>,
    up: Matrix<'a>,
    down: Matrix<'a>,
}

/// A model ready to run: hyperparameters and weights borrowed from the mapped file.
#[derive(Debug)]
pub struct Model<'a> {
    /// Hyperparameters.
    pub hp: Hparams,
    embd: Matrix<'a>,
    output: Matrix<'a>,
    output_norm: Vec<f32>,
    rope_freqs: Option<Vec<f32>>,
    rope_long: Option<Vec<f32>>,
    rope_short: Option<Vec<f32>>,
    layers: Vec<Layer<'a>>,
    /// Matrices offloaded to a device, by the address of their data in the file's map.
    device: DeviceMatrices,
}

/// [`Model::offload`]'s matrices (a newtype so the model can still be printed).
#[derive(Default)]
struct DeviceMatrices(HashMap<usize, Box<dyn DeviceMatrix>>);

impl std::fmt::Debug for DeviceMatrices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} matrices on a device", self.0.len())
    }
}

/// The key of a matrix in [`Model::device`].
fn device_key(m: &Matrix<'_>) -> usize {
    m.data.as_ptr() as usize
}

struct Loader<'a, B: AsRef<[u8]>> {
    f: &'a Gguf<B>,
    nf4: Vec<String>,
}

impl<'a, B: AsRef<[u8]>> Loader<'a, B> {
    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Matrix<'a>> {
        let t = self.f.tensor(name).ok_or_else(|| RunError::Tensor {
            name: name.into(),
            problem: "missing".into(),
        })?;
        let t_name: &'a str = &t.name;
        let data = self.f.tensor_data(t).ok_or_else(|| RunError::Tensor {
            name: name.into(),
            problem: "data outside the file".into(),
        })?;
        let bad_shape = |what: String| RunError::Tensor {
            name: name.into(),
            problem: what,
        };
        if self.nf4.iter().any(|n| n == name) {
            let am_name = format!("{name}.absmax");
            let am = self.f.tensor(&am_name).ok_or_else(|| RunError::Tensor {
                name: am_name.clone(),
                problem: "missing (NF4 needs its block scales)".into(),
            })?;
            let absmax = self.f.tensor_data(am).unwrap_or(&[]);
            if t.dims[..] != [cols as u64 / 2, rows as u64] {
                return Err(bad_shape(format!(
                    "NF4 shape {:?}, expected [{}, {rows}]",
                    t.dims,
                    cols / 2
                )));
            }
            return Matrix::new(t_name, Storage::Nf4 { absmax }, rows, cols, data);
        }
        if t.dims[..] != [cols as u64, rows as u64] {
            return Err(bad_shape(format!(
                "shape {:?}, expected [{cols}, {rows}]",
                t.dims
            )));
        }
        Matrix::new(t_name, Storage::Ggml(t.ty), rows, cols, data)
    }

    fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>> {
        let t = self.f.tensor(name).ok_or_else(|| RunError::Tensor {
            name: name.into(),
            problem: "missing".into(),
        })?;
        if t.dims.iter().product::<u64>() != n as u64 {
            return Err(RunError::Tensor {
                name: name.into(),
                problem: format!("{:?} elements, expected {n}", t.dims),
            });
        }
        let data = self.f.tensor_data(t).unwrap_or(&[]);
        let mut out = vec![0f32; n];
        ggufy_quant::dequantize_row(t.ty, data, &mut out).map_err(|e| RunError::Tensor {
            name: name.into(),
            problem: e.to_string(),
        })?;
        Ok(out)
    }

    fn optional_vector(&self, name: &str, n: usize) -> Result<Option<Vec<f32>>> {
        if self.f.tensor(name).is_some() {
            self.vector(name, n).map(Some)
        } else {
            Ok(None)
        }
    }
}

impl<'a> Model<'a> {
    /// Loads a model from a parsed GGUF file; the weights stay in the file's bytes.
    pub fn load<B: AsRef<[u8]>>(f: &'a Gguf<B>) -> Result<Model<'a>> {
        let hp = Hparams::from_gguf(f)?;
        let nf4 = match f.get_array("ggufy.nf4.tensors")? {
            Some(a) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            None => Vec::new(),
        };
        let l = Loader { f, nf4 };
        let (e, hd, nh, nkv) = (hp.n_embd, hp.head_dim, hp.n_head, hp.n_head_kv);
        let embd = l.matrix("token_embd.weight", hp.n_vocab, e)?;
        let output = if f.tensor("output.weight").is_some() {
            l.matrix("output.weight", hp.n_vocab, e)?
        } else {
            embd.clone()
        };
        let output_norm = l.vector("output_norm.weight", e)?;
        let rope_freqs = l.optional_vector("rope_freqs.weight", hp.n_rot / 2)?;
        let rope_long = l.optional_vector("rope_factors_long.weight", hp.n_rot / 2)?;
        let rope_short = l.optional_vector("rope_factors_short.weight", hp.n_rot / 2)?;
        let mut layers = Vec::with_capacity(hp.n_layer);
        for i in 0..hp.n_layer {
            let n = |s: &str| format!("blk.{i}.{s}");
            let fused = hp.arch == Arch::Phi3;
            let (wq, wk, wv) = if fused {
                (
                    l.matrix(&n("attn_qkv.weight"), (nh + 2 * nkv) * hd, e)?,
                    None,
                    None,
                )
            } else {
                (
                    l.matrix(&n("attn_q.weight"), nh * hd, e)?,
                    Some(l.matrix(&n("attn_k.weight"), nkv * hd, e)?),
                    Some(l.matrix(&n("attn_v.weight"), nkv * hd, e)?),
                )
            };
            let (gate, up) = if fused {
                (None, l.matrix(&n("ffn_up.weight"), 2 * hp.n_ff, e)?)
            } else {
                (
                    Some(l.matrix(&n("ffn_gate.weight"), hp.n_ff, e)?),
                    l.matrix(&n("ffn_up.weight"), hp.n_ff, e)?,
                )
            };
            layers.push(Layer {
                attn_norm: l.vector(&n("attn_norm.weight"), e)?,
                wq,
                wk,
                wv,
                bq: l.optional_vector(&n("attn_q.bias"), nh * hd)?,
                bk: l.optional_vector(&n("attn_k.bias"), nkv * hd)?,
                bv: l.optional_vector(&n("attn_v.bias"), nkv * hd)?,
                wo: l.matrix(&n("attn_output.weight"), e, nh * hd)?,
                ffn_norm: l.vector(&n("ffn_norm.weight"), e)?,
                gate,
                up,
                down: l.matrix(&n("ffn_down.weight"), e, hp.n_ff)?,
            });
        }
        Ok(Model {
            hp,
            embd,
            output,
            output_norm,
            rope_freqs,
            rope_long,
            rope_short,
            layers,
            device: DeviceMatrices::default(),
        })
    }

    /// Copies the weight matrices `acc` handles to it; their products run there from now on
    /// (others stay on the CPU). Returns how many matrices moved. Results then follow the
    /// device's arithmetic (f32 sums of exact weights) instead of llama.cpp's CPU kernels, so
    /// logits differ slightly from the CPU path.
    pub fn offload(&mut self, acc: &dyn Accelerator) -> Result<usize> {
        let mut moved = HashMap::new();
        for m in self.matrices() {
            let uploaded = acc.upload(m).map_err(|problem| RunError::Tensor {
                name: m.name.to_owned(),
                problem: format!("uploading to {}: {problem}", acc.name()),
            })?;
            if let Some(d) = uploaded {
                moved.insert(device_key(m), d);
            }
        }
        self.device.0.extend(moved);
        Ok(self.device.0.len())
    }

    /// The weight matrices products read: the output and every layer's.
    fn matrices(&self) -> Vec<&Matrix<'a>> {
        let mut mats = vec![&self.output];
        for l in &self.layers {
            mats.extend([&l.wq, &l.wo, &l.up, &l.down]);
            mats.extend([&l.wk, &l.wv, &l.gate].into_iter().flatten());
        }
        mats
    }

    /// Regroups the matrices this CPU's packed kernels read (see [`Matrix::pack`]),
    /// in parallel; results do not change. Returns the bytes copied. `release` is called with
    /// each packed matrix's file bytes as soon as it is copied, so that the caller can let the OS
    /// drop them and memory stays near one copy of the weights throughout (the embedding table,
    /// which lookups still read, is never passed). Matrices on a device are skipped.
    pub fn pack(&mut self, release: &(dyn Fn(&'a [u8]) + Sync)) -> usize {
        // An address, to recognise the tied output matrix (a pointer is not `Sync`).
        let embd = self.embd.data.as_ptr() as usize;
        let device = &self.device.0;
        let mut mats = vec![&mut self.output];
        for l in &mut self.layers {
            mats.extend([&mut l.wq, &mut l.wo, &mut l.up, &mut l.down]);
            mats.extend([&mut l.wk, &mut l.wv, &mut l.gate].into_iter().flatten());
        }
        mats.retain(|m| !device.contains_key(&device_key(m)));
        mats.par_iter_mut()
            .map(|m| {
                let n = m.pack();
                if n > 0 && m.data.as_ptr() as usize != embd {
                    release(m.data);
                }
                n
            })
            .sum()
    }

    /// `out = X · Wᵀ` on the device holding `w`, or on the CPU.
    fn mm(&self, w: &Matrix<'_>, x: &[f32], out: &mut [f32]) -> Result<()> {
        match self.device.0.get(&device_key(w)) {
            Some(d) => d.matmul(x, out).map_err(|problem| RunError::Tensor {
                name: w.name.to_owned(),
                problem: format!("on the device: {problem}"),
            }),
            None => {
                w.matmul(x, out);
                Ok(())
            }
        }
    }

    /// [`Matrix::matmul_shared`], unless some of the matrices live on a device.
    fn mm_shared(&self, mats: &[&Matrix<'_>], x: &[f32], outs: &mut [&mut [f32]]) -> Result<()> {
        if mats
            .iter()
            .any(|m| self.device.0.contains_key(&device_key(m)))
        {
            for (m, o) in mats.iter().zip(outs.iter_mut()) {
                self.mm(m, x, o)?;
            }
        } else {
            Matrix::matmul_shared(mats, x, outs);
        }
        Ok(())
    }

    /// The embedding table's bytes in the file (every token reads a row of it).
    pub fn embedding_bytes(&self) -> &'a [u8] {
        self.embd.data
    }

    /// The storage type of the output matrix (for reports).
    pub fn output_type(&self) -> Storage<'a> {
        self.output.storage
    }

    /// Bytes of weights one decode step reads.
    pub fn weight_bytes(&self) -> usize {
        self.matrices().iter().map(|m| m.data.len()).sum()
    }
}

/// `x += o`, a token row of `e` values per task.
fn add_rows(x: &mut [f32], o: &[f32], e: usize) {
    x.par_chunks_mut(e)
        .zip(o.par_chunks(e))
        .for_each(|(x, o)| x.iter_mut().zip(o).for_each(|(a, b)| *a += b));
}

/// llama.cpp's RMSNorm: the sum of squares in f64, the scale in f32, then the weight.
fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let sum: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    let mean = (sum / x.len() as f64) as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(w) {
        *o = v * scale * g;
    }
}

/// ggml's tanh GELU through its f16 table (`GGML_GELU_FP16`).
fn gelu_f16_table(x: f32) -> f32 {
    if x <= -10.0 {
        return 0.0;
    }
    if x >= 10.0 {
        return x;
    }
    let h = round_f16(x);
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let g = 0.5 * h * (1.0 + (SQRT_2_OVER_PI * h * (1.0 + 0.044715 * h * h)).tanh());
    round_f16(g)
}

fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// A running sequence: the KV cache and the position.
#[derive(Debug)]
pub struct Session<'m, 'a> {
    model: &'m Model<'a>,
    n_ctx: usize,
    pos: usize,
    /// Per layer: f16 values (little-endian) as llama.cpp's default cache stores them, head
    /// by head (`n_head_kv × n_ctx × head_dim`) so that one head's keys (or values) up to a
    /// position are one run, converted to f32 in long strides.
    k: Vec<Vec<u8>>,
    v: Vec<Vec<u8>>,
}

impl<'m, 'a> Session<'m, 'a> {
    /// A new sequence with room for `n_ctx` tokens (at most the training context).
    pub fn new(model: &'m Model<'a>, n_ctx: usize) -> Session<'m, 'a> {
        let hp = &model.hp;
        let n_ctx = n_ctx.clamp(1, hp.n_ctx_train);
        // Zeroed allocations: pages are only touched (and resident) as positions fill.
        let kv_bytes = 2 * n_ctx * hp.n_head_kv * hp.head_dim;
        Session {
            model,
            n_ctx,
            pos: 0,
            k: vec![vec![0; kv_bytes]; hp.n_layer],
            v: vec![vec![0; kv_bytes]; hp.n_layer],
        }
    }

    /// Tokens evaluated so far.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// The context size.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Forgets everything evaluated.
    pub fn reset(&mut self) {
        self.pos = 0;
    }

    /// Keeps only the first `n` positions (later cache entries are overwritten as new tokens
    /// come).
    pub fn truncate(&mut self, n: usize) {
        self.pos = self.pos.min(n);
    }

    /// The model's RoPE rotation at `pos` ([`rope_rotation`] with the file's frequency factors).
    fn rope_rotation(&self, pos: usize) -> Vec<(f32, f32)> {
        let hp = &self.model.hp;
        let factors = match (&self.model.rope_long, &self.model.rope_short) {
            (Some(long), Some(short)) => Some(if self.n_ctx > hp.n_ctx_orig {
                long
            } else {
                short
            }),
            _ => self.model.rope_freqs.as_ref(),
        };
        rope_rotation(hp, factors.map(Vec::as_slice), pos)
    }

    /// Evaluates `tokens` at the next positions; returns the logits after the last one. Tokens
    /// go through the layers in batches (each weight is read once per batch, not once per
    /// token); the result is bit-identical to evaluating them one by one.
    pub fn eval(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        let mut logits = Vec::new();
        for batch in tokens.chunks(MAX_BATCH) {
            logits = self.forward(batch, false)?;
        }
        Ok(logits)
    }

    /// Evaluates `tokens` at the next positions and returns the logits after every one of them
    /// (`tokens.len() × n_vocab`, row by row), as perplexity needs.
    pub fn eval_all(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        let mut logits = Vec::with_capacity(tokens.len() * self.model.hp.n_vocab);
        for batch in tokens.chunks(MAX_BATCH) {
            logits.extend(self.forward(batch, true)?);
        }
        Ok(logits)
    }

    /// Evaluates one token at the next position; returns its logits.
    pub fn step(&mut self, token: u32) -> Result<Vec<f32>> {
        self.forward(&[token], false)
    }

    /// One batch through the model; logits for every token (`all`) or the last.
    fn forward(&mut self, tokens: &[u32], all: bool) -> Result<Vec<f32>> {
        crate::spin::with_spinning_workers(|| self.forward_batch(tokens, all))
    }

    /// [`Session::forward`]'s work, on the calling thread and the pool.
    fn forward_batch(&mut self, tokens: &[u32], all: bool) -> Result<Vec<f32>> {
        let m = self.model;
        let hp = &m.hp;
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= hp.n_vocab) {
            return Err(RunError::Token {
                id: bad,
                n_vocab: hp.n_vocab,
            });
        }
        if self.pos + tokens.len() > self.n_ctx {
            return Err(RunError::ContextFull(self.n_ctx));
        }
        let n = tokens.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let (e, hd, nh, nkv) = (hp.n_embd, hp.head_dim, hp.n_head, hp.n_head_kv);
        let pos0 = self.pos;
        let mut x = vec![0f32; n * e];
        for (row, &t) in x.chunks_exact_mut(e).zip(tokens) {
            m.embd.row_f32(t as usize, row);
            if hp.arch == Arch::Gemma {
                let s = (e as f32).sqrt();
                row.iter_mut().for_each(|v| *v *= s);
            }
        }
        let mut h = vec![0f32; n * e];
        let mut q = vec![0f32; n * nh * hd];
        let mut k = vec![0f32; n * nkv * hd];
        let mut v = vec![0f32; n * nkv * hd];
        let mut att = vec![0f32; n * nh * hd];
        let mut o = vec![0f32; n * e];
        let mut g = vec![0f32; n * hp.n_ff];
        let up_rows = if hp.arch == Arch::Phi3 {
            2 * hp.n_ff
        } else {
            hp.n_ff
        };
        let mut u = vec![0f32; n * up_rows];
        let mut act = vec![0f32; n * hp.n_ff];
        // Phi-3 and Gemma scale q before the product; llama.cpp's other graphs scale the scores.
        let prescale = matches!(hp.arch, Arch::Phi3 | Arch::Gemma);
        let q_scale = 1.0 / (hd as f32).sqrt();
        let row = nkv * hd;
        let rotations: Vec<Vec<(f32, f32)>> =
            (0..n).map(|t| self.rope_rotation(pos0 + t)).collect();
        for (li, layer) in m.layers.iter().enumerate() {
            // Per-token steps go on the pool (one token runs inline): at 16 threads, a 64-token
            // prefill's norms, rotations and residual adds on one thread were a sixth of it.
            x.par_chunks_exact(e)
                .zip(h.par_chunks_exact_mut(e))
                .for_each(|(xr, hr)| rms_norm(xr, &layer.attn_norm, hp.rms_eps, hr));
            match (&layer.wk, &layer.wv) {
                (Some(wk), Some(wv)) => m.mm_shared(
                    &[&layer.wq, wk, wv],
                    &h,
                    &mut [&mut q[..], &mut k[..], &mut v[..]],
                )?,
                _ => {
                    let mut qkv = vec![0f32; n * (nh + 2 * nkv) * hd];
                    m.mm(&layer.wq, &h, &mut qkv)?;
                    for (t, r) in qkv.chunks_exact((nh + 2 * nkv) * hd).enumerate() {
                        q[t * nh * hd..(t + 1) * nh * hd].copy_from_slice(&r[..nh * hd]);
                        k[t * row..(t + 1) * row].copy_from_slice(&r[nh * hd..(nh + nkv) * hd]);
                        v[t * row..(t + 1) * row].copy_from_slice(&r[(nh + nkv) * hd..]);
                    }
                }
            }
            for (dst, b) in [
                (&mut q, &layer.bq),
                (&mut k, &layer.bk),
                (&mut v, &layer.bv),
            ] {
                if let Some(b) = b {
                    for r in dst.chunks_exact_mut(b.len()) {
                        r.iter_mut().zip(b).for_each(|(a, b)| *a += b);
                    }
                }
            }
            q.par_chunks_exact_mut(nh * hd)
                .zip(k.par_chunks_exact_mut(row))
                .zip(&rotations)
                .for_each(|((qr, kr), rotation)| {
                    for head in qr.chunks_exact_mut(hd).chain(kr.chunks_exact_mut(hd)) {
                        rope_apply(hp, rotation, head);
                    }
                    if prescale {
                        qr.iter_mut().for_each(|a| *a *= q_scale);
                    }
                });
            // The cache holds f16 values, as llama.cpp's default KV cache does.
            let n_ctx = self.n_ctx;
            let level = simd::level();
            for (cache, src) in [(&mut self.k[li], &k), (&mut self.v[li], &v)] {
                for (t, r) in src.chunks_exact(row).enumerate() {
                    for (kvh, head) in r.chunks_exact(hd).enumerate() {
                        let at = 2 * (kvh * n_ctx + pos0 + t) * hd;
                        simd::f32_row_to_f16(head, &mut cache[at..at + 2 * hd], level);
                    }
                }
            }
            let kq_scale = if prescale { 1.0 } else { q_scale };
            let (kc, vc) = (&self.k[li][..], &self.v[li][..]);
            let head_bytes = 2 * n_ctx * hd;
            // One task per (token, head): each reads the cache up to its own position. Every
            // head may go to its own thread: at 16 threads a decode step's 32 heads in tasks of
            // four left half the threads idle (attention was a tenth of a token there).
            att.par_chunks_mut(hd)
                .zip(q.par_chunks(hd))
                .enumerate()
                .for_each(|(i, (out, qh))| {
                    let (t, hq) = (i / nh, i % nh);
                    let kvh = hq / (nh / nkv);
                    let len = pos0 + t + 1;
                    let at = kvh * head_bytes;
                    let cache = HeadCache {
                        k: &kc[at..at + 2 * len * hd],
                        v: &vc[at..at + 2 * len * hd],
                        kq_scale,
                    };
                    attend(qh, &cache, out);
                });
            m.mm(&layer.wo, &att, &mut o)?;
            add_rows(&mut x, &o, e);

            x.par_chunks_exact(e)
                .zip(h.par_chunks_exact_mut(e))
                .for_each(|(xr, hr)| rms_norm(xr, &layer.ffn_norm, hp.rms_eps, hr));
            let f = hp.n_ff;
            let gated = |a: f32| {
                if hp.arch == Arch::Gemma {
                    gelu_f16_table(a)
                } else {
                    silu(a)
                }
            };
            match &layer.gate {
                Some(gate) => {
                    m.mm_shared(&[gate, &layer.up], &h, &mut [&mut g[..], &mut u[..]])?;
                    // On the pool: 5632 exponentials a layer were the largest serial step
                    // of a decode step at 16 threads.
                    act.par_chunks_mut(GATE_TASK)
                        .zip(g.par_chunks(GATE_TASK))
                        .zip(u.par_chunks(GATE_TASK))
                        .for_each(|((a, g), u)| {
                            for ((a, &gv), &uv) in a.iter_mut().zip(g).zip(u) {
                                *a = gated(gv) * uv;
                            }
                        });
                }
                // Phi-3: one product gives the gate, then the up projection.
                None => {
                    m.mm(&layer.up, &h, &mut u)?;
                    for (ar, ur) in act.chunks_exact_mut(f).zip(u.chunks_exact(2 * f)) {
                        let (gv, uv) = ur.split_at(f);
                        for ((a, &gv), &uv) in ar.iter_mut().zip(gv).zip(uv) {
                            *a = gated(gv) * uv;
                        }
                    }
                }
            }
            m.mm(&layer.down, &act, &mut o)?;
            add_rows(&mut x, &o, e);
        }
        let first = if all { 0 } else { n - 1 };
        let rows = n - first;
        let mut hn = vec![0f32; rows * e];
        for (xr, hr) in x[first * e..].chunks_exact(e).zip(hn.chunks_exact_mut(e)) {
            rms_norm(xr, &m.output_norm, hp.rms_eps, hr);
        }
        let mut logits = vec![0f32; rows * hp.n_vocab];
        m.mm(&m.output, &hn, &mut logits)?;
        self.pos += n;
        Ok(logits)
    }
}

/// Rotates one head's vector `v` in place at position `pos`, as ggml's `rope_ext` does on the
/// CPU (its angle recurrence, frequency factors, linear and YaRN scaling, normal or NeoX pairs
/// by architecture); `factors` are the file's per-pair frequency factors, if any.
pub fn rope(hp: &Hparams, factors: Option<&[f32]>, v: &mut [f32], pos: usize) {
    rope_apply(hp, &rope_rotation(hp, factors, pos), v);
}

/// The (cos, sin) pairs, attention factor included, that rotate every head at position `pos`:
/// computed once per token and pass rather than once per head and layer (the `sin_cos` calls
/// were a tenth of a decode step's serial work).
fn rope_rotation(hp: &Hparams, factors: Option<&[f32]>, pos: usize) -> Vec<(f32, f32)> {
    let n_rot = hp.n_rot;
    let theta_scale = hp.rope_base.powf(-2.0 / n_rot as f32);
    let mscale = hp.rope_attn_factor;
    let mut theta = pos as f32;
    let mut out = Vec::with_capacity(n_rot / 2);
    for i in 0..n_rot / 2 {
        let ff = factors.map_or(1.0, |f| f[i]);
        let (angle, m) = match &hp.yarn {
            Some(y) => y.angle(theta / ff, hp.rope_freq_scale, i, mscale),
            None => (hp.rope_freq_scale * (theta / ff), mscale),
        };
        let (s, c) = angle.sin_cos();
        out.push((c * m, s * m));
        theta *= theta_scale;
    }
    out
}

/// Rotates one head's vector by a [`rope_rotation`].
fn rope_apply(hp: &Hparams, rotation: &[(f32, f32)], v: &mut [f32]) {
    let half = rotation.len();
    for (i, &(c, s)) in rotation.iter().enumerate() {
        let (a, b) = if hp.neox() {
            (i, i + half)
        } else {
            (2 * i, 2 * i + 1)
        };
        let (x0, x1) = (v[a], v[b]);
        v[a] = x0 * c - x1 * s;
        v[b] = x0 * s + x1 * c;
    }
}

/// Values per task of the gated activation (`silu(g)·u`): a few microseconds of work.
const GATE_TASK: usize = 1024;

/// The most tokens one forward pass takes; longer prompts go in several.
const MAX_BATCH: usize = 64;

/// One head's keys and values in the KV cache (f16, positions `0..len` of `head_dim` each, one
/// run each), and the factor its scores are scaled by.
struct HeadCache<'c> {
    k: &'c [u8],
    v: &'c [u8],
    kq_scale: f32,
}

/// Cached positions converted to f32 at a time in attention: a few KiB, in L1.
const KV_STRIDE: usize = 32;

/// One query head against its cached keys and values, as ggml's CPU flash attention computes
/// it for an F16 cache: q rounded to f16, each score a `ggml_vec_dot_f16`, an online softmax
/// whose running V sum is kept in f16 (rescaled when the maximum moves), divided by the running
/// sum at the end. Compiled for AVX2 and FMA where the CPU has them (the f16 roundings and the
/// multiply-adds vectorize; a scalar `mul_add` without FMA is a library call per element); the
/// results are the same either way.
fn attend(q: &[f32], cache: &HeadCache<'_>, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if simd::level() == simd::Level::Avx2 {
        // SAFETY: Level::Avx2 is only chosen when the CPU reports AVX2 and FMA.
        unsafe { attend_fma(q, cache, out) };
        return;
    }
    attend_body(q, cache, out);
}

/// [`attend`] compiled with AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn attend_fma(q: &[f32], cache: &HeadCache<'_>, out: &mut [f32]) {
    attend_body(q, cache, out);
}

#[inline(always)]
fn attend_body(q: &[f32], cache: &HeadCache<'_>, out: &mut [f32]) {
    let &HeadCache {
        k: kc,
        v: vc,
        kq_scale,
    } = cache;
    let hd = q.len();
    let len = kc.len() / (2 * hd).max(1);
    let level = simd::level();
    let qh: Vec<f32> = q.iter().map(|&a| round_f16(a)).collect();
    let mut vkq = vec![0f32; out.len()];
    let (mut m, mut sum) = (f32::NEG_INFINITY, 0f32);
    let (mut k_f32, mut v_f32) = (vec![0f32; KV_STRIDE * hd], vec![0f32; KV_STRIDE * hd]);
    for t in 0..len {
        let i = t % KV_STRIDE;
        if i == 0 {
            let c = KV_STRIDE.min(len - t) * hd;
            simd::f16_row_to_f32(&kc[2 * t * hd..2 * (t * hd + c)], &mut k_f32[..c], level);
            simd::f16_row_to_f32(&vc[2 * t * hd..2 * (t * hd + c)], &mut v_f32[..c], level);
        }
        let kt = &k_f32[i * hd..(i + 1) * hd];
        let s = simd::dot_f16_values(kt, &qh, level).unwrap_or_else(|| dot_f16_values(kt, &qh))
            * kq_scale;
        let (mut ms, mut vs) = (1f32, 1f32);
        if s > m {
            let m_old = m;
            m = s;
            ms = (m_old - m).exp();
            if !simd::scale_round_f16(&mut vkq, ms, level) {
                for a in vkq.iter_mut() {
                    *a = round_f16(*a * ms);
                }
            }
        } else {
            vs = (s - m).exp();
        }
        // `ggml_vec_mad_f16`: acc = f16(v·s + acc), one rounding in the multiply-add.
        let vt = &v_f32[i * hd..(i + 1) * hd];
        if !simd::mad_round_f16(&mut vkq, vt, vs, level) {
            for (a, &b) in vkq.iter_mut().zip(vt) {
                *a = round_f16(b.mul_add(vs, *a));
            }
        }
        sum = sum * ms + vs;
    }
    let inv = 1.0 / sum;
    for (o, a) in out.iter_mut().zip(&vkq) {
        *o = a * inv;
    }
}

/// `ggml_vec_dot_f16` of two rows of f16 values held as f32 (products exact): ggml's 4 × 16
/// lanes over steps of 64, the tail added in f64.
#[inline(always)]
fn dot_f16_values(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let whole = n / 64 * 64;
    let mut acc = [0f32; 64];
    for (ac, bc) in a[..whole].chunks_exact(64).zip(b[..whole].chunks_exact(64)) {
        for ((s, x), y) in acc.iter_mut().zip(ac).zip(bc) {
            *s += x * y;
        }
    }
    let mut sum = if whole > 0 {
        f64::from(ggufy_quant::dot::reduce_f16_lanes(&acc))
    } else {
        0.0
    };
    for (x, y) in a[whole..n].iter().zip(&b[whole..n]) {
        sum += f64::from(x * y);
    }
    sum as f32
}

/// Type of a weight, for reports.
pub fn storage_name(s: Storage<'_>) -> String {
    match s {
        Storage::Ggml(t) => t.name().to_owned(),
        Storage::Nf4 { .. } => "NF4".into(),
    }
}
