//! `ggufy-plan`: a [`TensorPlan`] says what file to write — metadata, and for each output tensor
//! its source bytes, source type and output type — and [`execute`] writes any plan: it validates
//! everything first, then streams tensors in order through the GGUF writer, converting rows in
//! parallel into one reusable buffer. Peak memory is about one output tensor; output bytes do not
//! depend on the thread count. `quantize` and (later) `convert` are both plan builders.
//!
//! ```
//! use ggufy_gguf::{GgmlType, Gguf};
//! use ggufy_plan::{Encoding, ExecOptions, QuantizePolicy, execute, quantize_plan};
//!
//! let model = Gguf::open("../../fixtures/gguf/tiny-llama-f16.gguf").unwrap();
//! let policy = QuantizePolicy { target: Encoding::Ggml(GgmlType::Q4_0), pure: false, keep: vec![] };
//! let (plan, warnings) = quantize_plan(&model, &policy).unwrap();
//! assert!(warnings.is_empty());
//! let dir = tempfile::tempdir().unwrap();
//! let (path, report) = execute(&plan, &dir.path().join("q4_0.gguf"), &ExecOptions::default(), &mut |_, _| {}).unwrap();
//! let out = Gguf::open(path).unwrap();
//! assert_eq!(out.tensor("output.weight").unwrap().ty, GgmlType::Q6_K); // llama-quantize's rule
//! assert_eq!(out.tensor("blk.0.attn_q.weight").unwrap().ty, GgmlType::Q4_0);
//! assert_eq!(report.len(), 21);
//! ```

pub mod policy;

use std::path::{Path, PathBuf};

use ggufy_gguf::{
    GgmlType, GgufError, GgufWriter, MetaValue, TensorSpec, WritePlan, WriterOptions,
};
use ggufy_quant::nf4::{NF4_BLOCK, dequantize_nf4, quantize_nf4};
use ggufy_quant::{
    QUANTIZE_TARGETS, QuantError, Rounding, can_dequantize, dequantize_row, quantize_row,
};
use rayon::prelude::*;

pub use policy::{
    NF4_ABSMAX_SUFFIX, NF4_TENSORS_KEY, QuantizePolicy, choose_encoding, file_type_for,
    quantize_plan,
};

/// How values are encoded: a ggml type, or NF4 (which ggml has no type for).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// A ggml tensor type.
    Ggml(GgmlType),
    /// QLoRA's NF4, stored as two GGUF tensors (see `docs/nf4.md`).
    Nf4,
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Encoding::Ggml(t) => f.write_str(t.name()),
            Encoding::Nf4 => f.write_str("NF4"),
        }
    }
}

/// Where a tensor's data comes from (usually slices of a memory-mapped file).
#[derive(Clone, Copy, Debug)]
pub enum Source<'a> {
    /// Little-endian bytes of a ggml type, exactly one tensor's worth.
    Ggml {
        /// The type the bytes are in.
        ty: GgmlType,
        /// The bytes.
        bytes: &'a [u8],
    },
    /// NF4: packed codes (two per byte) and one little-endian f32 absmax per 64 elements.
    Nf4 {
        /// Packed codes.
        codes: &'a [u8],
        /// Block scales.
        absmax: &'a [u8],
    },
    /// NF4 with bitsandbytes' double-quantized scales: the scale of block `b` is
    /// `map2[q[b]] · absmax2[b / block2] + offset`, computed in f32 as bitsandbytes does.
    Nf4Nested {
        /// Packed codes.
        codes: &'a [u8],
        /// One u8 per 64-element block: an index into `map2`.
        scales_q: &'a [u8],
        /// The 8-bit code: 256 little-endian f32.
        map2: &'a [u8],
        /// Second-level scales, one little-endian f32 per `block2` first-level blocks.
        absmax2: &'a [u8],
        /// First-level blocks per second-level scale (256 in bitsandbytes).
        block2: u32,
        /// Added to every decoded scale (the mean that was subtracted).
        offset: f32,
    },
}

/// The f32 scales of NF4 row `row` (`out.len()` blocks of 64), from either scale layout.
fn nf4_row_scales(src: &Source<'_>, row: usize, out: &mut [f32]) -> bool {
    let nb = out.len();
    let f32_at = |b: &[u8], i: usize| {
        b.get(i * 4..i * 4 + 4)
            .map(|x| f32::from_le_bytes([x[0], x[1], x[2], x[3]]))
    };
    match *src {
        Source::Nf4 { absmax, .. } => {
            for (j, s) in out.iter_mut().enumerate() {
                match f32_at(absmax, row * nb + j) {
                    Some(v) => *s = v,
                    None => return false,
                }
            }
            true
        }
        Source::Nf4Nested {
            scales_q,
            map2,
            absmax2,
            block2,
            offset,
            ..
        } => {
            for (j, s) in out.iter_mut().enumerate() {
                let b = row * nb + j;
                let (Some(&q), Some(blk)) = (scales_q.get(b), b.checked_div(block2 as usize))
                else {
                    return false;
                };
                match (f32_at(map2, q as usize), f32_at(absmax2, blk)) {
                    (Some(c), Some(a)) => *s = c * a + offset,
                    _ => return false,
                }
            }
            true
        }
        Source::Ggml { .. } => false,
    }
}

impl Source<'_> {
    /// The source's encoding.
    pub fn encoding(&self) -> Encoding {
        match self {
            Source::Ggml { ty, .. } => Encoding::Ggml(*ty),
            Source::Nf4 { .. } | Source::Nf4Nested { .. } => Encoding::Nf4,
        }
    }

    /// The input buffers this source reads (so a caller can release their pages once done).
    pub fn buffers(&self) -> Vec<&[u8]> {
        match *self {
            Source::Ggml { bytes, .. } => vec![bytes],
            Source::Nf4 { codes, absmax } => vec![codes, absmax],
            Source::Nf4Nested {
                codes,
                scales_q,
                map2,
                absmax2,
                ..
            } => vec![codes, scales_q, map2, absmax2],
        }
    }

    fn len(&self) -> u64 {
        match self {
            Source::Ggml { bytes, .. } => bytes.len() as u64,
            Source::Nf4 { codes, absmax } => (codes.len() + absmax.len()) as u64,
            Source::Nf4Nested {
                codes, scales_q, ..
            } => (codes.len() + scales_q.len()) as u64,
        }
    }
}

/// What one output tensor holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The data in a ggml type; the source's own type means a straight copy.
    Ggml(GgmlType),
    /// NF4 codes (an I8 tensor of half the row length); must be followed by its `Nf4Absmax`.
    Nf4Codes,
    /// The block scales of the NF4 tensor just before it (F32, row length / 64).
    Nf4Absmax,
}

/// A value-level change applied while a tensor is read (what converters need besides a cast).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Transform {
    /// Values as stored.
    #[default]
    None,
    /// Undo Hugging Face's rotate-half RoPE layout for ggml's adjacent-pair RoPE: within each of
    /// `heads` blocks of rows, row `s·(hd/2) + i` moves to row `2i + s` (hd = rows per head). A
    /// 1-D tensor (a bias) has its elements moved the same way.
    PermuteHeads {
        /// Number of heads the rows are split into.
        heads: u64,
    },
    /// `x + 1`, for norms stored as an offset from one (Gemma). Computed in f32 and, for an F16
    /// source, rounded back to f16 as torch's half-precision add does.
    AddOne,
}

/// One tensor of the output file.
#[derive(Clone, Debug)]
pub struct PlannedTensor<'a> {
    /// Output name.
    pub name: String,
    /// Logical dimensions of the values in ggml order (`dims[0]` is the row length); the stored
    /// shape follows from the target (NF4 codes are half as long, scales 1/64).
    pub dims: Vec<u64>,
    /// Input data.
    pub source: Source<'a>,
    /// What to write.
    pub out: Target,
    /// Applied to the values on the way.
    pub transform: Transform,
}

impl PlannedTensor<'_> {
    fn ne0(&self) -> u64 {
        self.dims.first().copied().unwrap_or(1)
    }

    fn rows(&self) -> u64 {
        self.dims.iter().skip(1).product()
    }

    /// The stored type and shape.
    fn stored(&self) -> (GgmlType, Vec<u64>) {
        let mut dims = self.dims.clone();
        let ne0 = self.ne0();
        match self.out {
            Target::Ggml(ty) => (ty, dims),
            Target::Nf4Codes => {
                if let Some(d) = dims.first_mut() {
                    *d = ne0 / 2;
                }
                (GgmlType::I8, dims)
            }
            Target::Nf4Absmax => {
                if let Some(d) = dims.first_mut() {
                    *d = ne0 / NF4_BLOCK as u64;
                }
                (GgmlType::F32, dims)
            }
        }
    }

    fn is_copy(&self) -> bool {
        self.transform == Transform::None
            && matches!((self.source, self.out), (Source::Ggml { ty, .. }, Target::Ggml(out)) if ty == out)
    }

    /// The source row that output row `row` is read from.
    fn source_row(&self, row: usize) -> usize {
        match self.transform {
            Transform::PermuteHeads { heads } if self.dims.len() >= 2 => {
                permuted_index(row, self.rows() as usize, heads as usize)
            }
            _ => row,
        }
    }
}

/// Everything needed to write one GGUF file.
#[derive(Clone, Debug, Default)]
pub struct TensorPlan<'a> {
    /// Metadata in output order, with the value types llama.cpp expects.
    pub metadata: Vec<(String, MetaValue)>,
    /// Tensors in output order.
    pub tensors: Vec<PlannedTensor<'a>>,
}

/// Why a plan cannot be executed.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The container layer refused (bad metadata, I/O, output is an input).
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// A tensor cannot be converted as planned.
    #[error("tensor '{name}': {problem}")]
    Tensor {
        /// The tensor.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// A row failed to convert (only reachable through a bug; inputs are checked up front).
    #[error("tensor '{name}': {err}")]
    Quant {
        /// The tensor.
        name: String,
        /// The conversion error.
        err: QuantError,
    },
}

/// Quantizes whole tensors somewhere else than the CPU's row loop — a GPU — for the targets it
/// supports; the executor decodes (and transforms) the rows on the CPU first. An offload must
/// produce exactly the bytes the CPU reference does: the output file may not depend on it.
pub trait Offload: Send + Sync {
    /// Whether `target` with `rounding` can be offloaded.
    fn supports(&self, target: Target, rounding: Rounding) -> bool;

    /// Quantizes `x` (the whole tensor, rows of f32) into `out` and, for NF4 codes, the f32
    /// block scales (little-endian) into `scales`.
    fn quantize(
        &self,
        target: Target,
        x: &[f32],
        out: &mut [u8],
        scales: &mut [u8],
    ) -> Result<(), String>;
}

/// Options for [`execute`].
#[derive(Clone, Default)]
pub struct ExecOptions {
    /// Worker threads; 0 means one per available core.
    pub threads: usize,
    /// Rounding of the legacy quantizers (see [`Rounding`]).
    pub rounding: Rounding,
    /// Overwrite and input-protection settings of the writer.
    pub writer: WriterOptions,
    /// Where supported tensors are quantized instead of the CPU (a GPU), if anywhere.
    pub offload: Option<std::sync::Arc<dyn Offload>>,
}

impl std::fmt::Debug for ExecOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecOptions")
            .field("threads", &self.threads)
            .field("rounding", &self.rounding)
            .field("writer", &self.writer)
            .field("offload", &self.offload.is_some())
            .finish()
    }
}

/// Decodes every row of `t` (with its transform) into one f32 buffer, for an [`Offload`].
fn decode_tensor(t: &PlannedTensor<'_>, x: &mut [f32]) -> Result<(), QuantError> {
    let ne0 = t.ne0() as usize;
    x.par_chunks_mut(ne0.max(1)).enumerate().try_for_each_init(
        || (vec![0.0f32; ne0 / NF4_BLOCK], Vec::<f32>::new()),
        |(am, scratch), (r, row)| {
            decode_row(&t.source, t.source_row(r), row, am)?;
            apply_transform(t, row, scratch);
            Ok(())
        },
    )
}

/// What happened to one tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorReport {
    /// Tensor name.
    pub name: String,
    /// Source encoding.
    pub from: Encoding,
    /// Output encoding (NF4 for both of an NF4 tensor's parts).
    pub to: Encoding,
    /// Source bytes read.
    pub bytes_in: u64,
    /// Bytes written (without padding).
    pub bytes_out: u64,
}

impl TensorPlan<'_> {
    /// Checks every tensor before any work: source sizes agree with shapes, conversions exist,
    /// rows fill whole blocks. Returns the writer's layout.
    pub fn validate(&self) -> Result<WritePlan, PlanError> {
        for (i, t) in self.tensors.iter().enumerate() {
            let fail = |problem: String| PlanError::Tensor {
                name: t.name.clone(),
                problem,
            };
            let (ne0, rows) = (t.ne0(), t.rows());
            let n = ne0
                .checked_mul(rows)
                .ok_or_else(|| fail(format!("shape {:?} overflows", t.dims)))?;
            match t.source {
                Source::Ggml { ty, bytes } => {
                    let want = ty
                        .row_bytes(ne0)
                        .and_then(|r| r.checked_mul(rows))
                        .ok_or_else(|| {
                            fail(format!("shape {:?} does not fit {ty} blocks", t.dims))
                        })?;
                    if bytes.len() as u64 != want {
                        return Err(fail(format!(
                            "source has {} bytes but a {ty} tensor of shape {:?} needs {want}",
                            bytes.len(),
                            t.dims
                        )));
                    }
                    if !t.is_copy() && !can_dequantize(ty) {
                        return Err(fail(format!(
                            "cannot convert from {ty}: ggufy does not decode that type yet"
                        )));
                    }
                }
                Source::Nf4Nested {
                    codes,
                    scales_q,
                    map2,
                    absmax2,
                    block2,
                    ..
                } => {
                    let blocks = n / NF4_BLOCK as u64;
                    if ne0 % NF4_BLOCK as u64 != 0
                        || codes.len() as u64 != n / 2
                        || scales_q.len() as u64 != blocks
                        || map2.len() != 256 * 4
                        || block2 == 0
                        || absmax2.len() as u64 != blocks.div_ceil(u64::from(block2)) * 4
                    {
                        return Err(fail(format!(
                            "double-quantized NF4 data ({} code bytes, {} scale indices, {} second-level scale bytes per {block2} blocks) does not fit shape {:?}",
                            codes.len(),
                            scales_q.len(),
                            absmax2.len(),
                            t.dims
                        )));
                    }
                }
                Source::Nf4 { codes, absmax } => {
                    if ne0 % NF4_BLOCK as u64 != 0
                        || codes.len() as u64 != n / 2
                        || absmax.len() as u64 != n / NF4_BLOCK as u64 * 4
                    {
                        return Err(fail(format!(
                            "NF4 data of {} code bytes and {} scale bytes does not fit shape {:?}",
                            codes.len(),
                            absmax.len(),
                            t.dims
                        )));
                    }
                }
            }
            match t.transform {
                Transform::None => {}
                Transform::PermuteHeads { heads } => {
                    let along = if t.dims.len() >= 2 { rows } else { ne0 };
                    if t.dims.len() > 2 || heads == 0 || along % (2 * heads) != 0 {
                        return Err(fail(format!(
                            "shape {:?} cannot be split into {heads} heads of paired rows",
                            t.dims
                        )));
                    }
                }
                Transform::AddOne => {}
            }
            if t.transform == Transform::AddOne && t.source.encoding() == Encoding::Nf4 {
                return Err(fail("+1 applies to ggml-typed sources only".into()));
            }
            match t.out {
                Target::Ggml(ty) if !t.is_copy() => {
                    if !QUANTIZE_TARGETS.contains(&ty) {
                        return Err(fail(format!("cannot convert to {ty}")));
                    }
                    if ty.row_bytes(ne0).is_none() {
                        return Err(fail(format!(
                            "row length {ne0} is not a multiple of the {ty} block size {}",
                            ty.block_size()
                        )));
                    }
                }
                Target::Ggml(_) => {}
                Target::Nf4Codes => {
                    if ne0 % NF4_BLOCK as u64 != 0 {
                        return Err(fail(format!(
                            "row length {ne0} is not a multiple of the NF4 block size 64"
                        )));
                    }
                    let next = self.tensors.get(i + 1);
                    if !next.is_some_and(|a| a.out == Target::Nf4Absmax && a.dims == t.dims) {
                        return Err(fail("NF4 codes must be followed by their scales".into()));
                    }
                }
                Target::Nf4Absmax => {
                    let prev = i.checked_sub(1).and_then(|p| self.tensors.get(p));
                    if !prev.is_some_and(|c| c.out == Target::Nf4Codes) {
                        return Err(fail("NF4 scales must follow their codes".into()));
                    }
                }
            }
        }
        let specs = self
            .tensors
            .iter()
            .map(|t| {
                let (ty, dims) = t.stored();
                TensorSpec {
                    name: t.name.clone(),
                    dims,
                    ty,
                }
            })
            .collect();
        Ok(WritePlan::new(self.metadata.clone(), specs)?)
    }
}

/// Output bytes converted per parallel task: large enough to amortise scheduling, small enough to
/// balance a few hundred rows across cores.
const TASK_BYTES: usize = 256 * 1024;

/// Where element `index` of a permuted run of `len` elements split into `heads` heads comes from
/// (see [`Transform::PermuteHeads`]).
fn permuted_index(index: usize, len: usize, heads: usize) -> usize {
    let hd = len / heads.max(1);
    if hd < 2 {
        return index;
    }
    let (head, r) = (index / hd, index % hd);
    head * hd + (r % 2) * (hd / 2) + r / 2
}

/// Applies a value transform to one decoded row (the row permutation itself happens on read).
fn apply_transform(t: &PlannedTensor<'_>, row: &mut [f32], scratch: &mut Vec<f32>) {
    match t.transform {
        Transform::None => {}
        Transform::PermuteHeads { heads } => {
            if t.dims.len() < 2 {
                scratch.clear();
                scratch.extend_from_slice(row);
                let len = row.len();
                for (i, v) in row.iter_mut().enumerate() {
                    *v = scratch[permuted_index(i, len, heads as usize)];
                }
            }
        }
        Transform::AddOne => {
            let f16_source = matches!(
                t.source,
                Source::Ggml {
                    ty: GgmlType::F16,
                    ..
                }
            );
            for v in row.iter_mut() {
                *v += 1.0;
                if f16_source {
                    *v = half::f16::from_f32(*v).to_f32();
                }
            }
        }
    }
}

/// Decodes row `row` of a source into `out` (`ne0` values); `scales` (one per 64 values) is
/// scratch for NF4 sources, reused across rows.
fn decode_row(
    src: &Source<'_>,
    row: usize,
    out: &mut [f32],
    scales: &mut [f32],
) -> Result<(), QuantError> {
    let ne0 = out.len();
    match *src {
        Source::Ggml { ty, bytes } => {
            let rb = ty.row_bytes(ne0 as u64).unwrap_or(0) as usize;
            let b = bytes.get(row * rb..(row + 1) * rb).unwrap_or(&[]);
            dequantize_row(ty, b, out)
        }
        Source::Nf4 { codes, .. } | Source::Nf4Nested { codes, .. } => {
            let c = codes.get(row * ne0 / 2..(row + 1) * ne0 / 2).unwrap_or(&[]);
            if c.len() * 2 != ne0
                || scales.len() != ne0 / NF4_BLOCK
                || !nf4_row_scales(src, row, scales)
            {
                return Err(QuantError::BadLength {
                    ty: GgmlType::I8,
                    n: ne0,
                    block: NF4_BLOCK as u64,
                    bytes: c.len(),
                });
            }
            dequantize_nf4(c, scales, out);
            Ok(())
        }
    }
}

/// Converts one tensor into `out` (exactly its stored size), rows in parallel. For NF4 codes,
/// `scales` receives the block scales as little-endian f32.
fn convert_tensor(
    t: &PlannedTensor<'_>,
    out: &mut [u8],
    scales: &mut [u8],
    rounding: Rounding,
) -> Result<(), QuantError> {
    let ne0 = t.ne0() as usize;
    let (dst_row, scale_row) = match t.out {
        Target::Ggml(ty) => (ty.row_bytes(ne0 as u64).unwrap_or(0) as usize, 0),
        Target::Nf4Codes => (ne0 / 2, ne0 / NF4_BLOCK * 4),
        Target::Nf4Absmax => return Ok(()),
    };
    if out.is_empty() || dst_row == 0 {
        return Ok(());
    }
    let rows_per_task = (TASK_BYTES / dst_row).max(1);
    let scale_chunk = (scale_row * rows_per_task).max(1);
    let mut no_scales = Vec::new();
    let scales: &mut [u8] = if scale_row == 0 {
        no_scales.resize(out.len().div_ceil(dst_row * rows_per_task), 0);
        &mut no_scales
    } else {
        scales
    };
    out.par_chunks_mut(dst_row * rows_per_task)
        .zip(scales.par_chunks_mut(scale_chunk))
        .enumerate()
        .try_for_each_init(
            || {
                (
                    vec![0.0f32; ne0],
                    vec![0.0f32; ne0 / NF4_BLOCK],
                    Vec::<f32>::new(),
                )
            },
            |(row, am, scratch), (task, (dst, sc))| {
                for (k, d) in dst.chunks_exact_mut(dst_row).enumerate() {
                    decode_row(&t.source, t.source_row(task * rows_per_task + k), row, am)?;
                    apply_transform(t, row, scratch);
                    match t.out {
                        Target::Ggml(ty) => quantize_row(ty, row, d, rounding)?,
                        _ => {
                            quantize_nf4(row, d, am);
                            for (b, v) in sc[k * scale_row..(k + 1) * scale_row]
                                .chunks_exact_mut(4)
                                .zip(am.iter())
                            {
                                b.copy_from_slice(&v.to_le_bytes());
                            }
                        }
                    }
                }
                Ok(())
            },
        )
}

/// Writes `plan` to `dest` (via a temporary file renamed on success). `progress` is called after
/// each tensor with its index and report.
pub fn execute(
    plan: &TensorPlan<'_>,
    dest: &Path,
    opts: &ExecOptions,
    progress: &mut dyn FnMut(usize, &TensorReport),
) -> Result<(PathBuf, Vec<TensorReport>), PlanError> {
    let layout = plan.validate()?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads)
        .build()
        .map_err(|e| PlanError::Tensor {
            name: String::new(),
            problem: format!("cannot start worker threads: {e}"),
        })?;
    let mut writer = GgufWriter::create(dest, layout, &opts.writer)?;
    let mut reports = Vec::with_capacity(plan.tensors.len());
    let mut pending_scales: Vec<u8> = Vec::new();
    for (i, t) in plan.tensors.iter().enumerate() {
        let (stored_ty, stored_dims) = t.stored();
        let bytes_out = stored_ty
            .row_bytes(stored_dims.first().copied().unwrap_or(1))
            .unwrap_or(0)
            * stored_dims.iter().skip(1).product::<u64>();
        match (t.source, t.out) {
            (Source::Ggml { bytes, .. }, _) if t.is_copy() => writer.write_tensor(bytes)?,
            (Source::Nf4 { codes, .. } | Source::Nf4Nested { codes, .. }, Target::Nf4Codes) => {
                // NF4 to NF4: codes travel as they are (rows reordered by a permutation), scales
                // are decoded to f32 — nothing is quantized twice.
                let ne0 = t.ne0() as usize;
                let (row_bytes, nb) = (ne0 / 2, ne0 / NF4_BLOCK);
                let mut row_scales = vec![0.0f32; nb];
                pending_scales.clear();
                let scales = &mut pending_scales;
                writer
                    .write_tensor_with(|buf| {
                        for (r, dst) in buf.chunks_exact_mut(row_bytes.max(1)).enumerate() {
                            let sr = t.source_row(r);
                            let src = codes.get(sr * row_bytes..(sr + 1) * row_bytes);
                            match src {
                                Some(src) if nf4_row_scales(&t.source, sr, &mut row_scales) => {
                                    dst.copy_from_slice(src);
                                    for v in &row_scales {
                                        scales.extend_from_slice(&v.to_le_bytes());
                                    }
                                }
                                _ => {
                                    return Err(QuantError::BadLength {
                                        ty: GgmlType::I8,
                                        n: ne0,
                                        block: NF4_BLOCK as u64,
                                        bytes: codes.len(),
                                    });
                                }
                            }
                        }
                        Ok(())
                    })
                    .map_err(|e| match e {
                        ggufy_gguf::WriteError::Gguf(g) => PlanError::Gguf(g),
                        ggufy_gguf::WriteError::Source(err) => PlanError::Quant {
                            name: t.name.clone(),
                            err,
                        },
                    })?;
            }
            (_, Target::Nf4Absmax) => writer.write_tensor(&std::mem::take(&mut pending_scales))?,
            _ => {
                let scale_len = if t.out == Target::Nf4Codes {
                    (t.ne0() as usize / NF4_BLOCK) * 4 * t.rows() as usize
                } else {
                    0
                };
                pending_scales.clear();
                pending_scales.resize(scale_len, 0);
                let scales = &mut pending_scales;
                let offload = opts
                    .offload
                    .as_deref()
                    .filter(|o| o.supports(t.out, opts.rounding));
                writer
                    .write_tensor_with(|buf| match offload {
                        None => pool.install(|| convert_tensor(t, buf, scales, opts.rounding)),
                        Some(o) => {
                            let n = (t.ne0() * t.rows()) as usize;
                            let mut x = vec![0.0f32; n];
                            pool.install(|| decode_tensor(t, &mut x))?;
                            o.quantize(t.out, &x, buf, scales)
                                .map_err(QuantError::Offload)
                        }
                    })
                    .map_err(|e| match e {
                        ggufy_gguf::WriteError::Gguf(g) => PlanError::Gguf(g),
                        ggufy_gguf::WriteError::Source(err) => PlanError::Quant {
                            name: t.name.clone(),
                            err,
                        },
                    })?;
            }
        }
        let report = TensorReport {
            name: t.name.clone(),
            from: t.source.encoding(),
            to: match t.out {
                Target::Ggml(ty) => Encoding::Ggml(ty),
                _ => Encoding::Nf4,
            },
            bytes_in: if t.out == Target::Nf4Absmax {
                0
            } else {
                t.source.len()
            },
            bytes_out,
        };
        progress(i, &report);
        reports.push(report);
    }
    Ok((writer.finish()?, reports))
}
