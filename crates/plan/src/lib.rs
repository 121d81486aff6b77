//! `ggufy-plan`: a [`TensorPlan`] says what file to write — metadata, and for each output tensor
//! its source bytes, source type and output type — and [`execute`] writes any plan: it validates
//! everything first, then streams tensors in order through the GGUF writer, converting rows in
//! parallel into one reusable buffer. Peak memory is about one output tensor; output bytes do not
//! depend on the thread count. `quantize` and (later) `convert` are both plan builders.
//!
//! ```
//! use ggufy_gguf::{GgmlType, Gguf};
//! use ggufy_plan::{ExecOptions, QuantizePolicy, execute, quantize_plan};
//!
//! let model = Gguf::open("../../fixtures/gguf/tiny-llama-f16.gguf").unwrap();
//! let policy = QuantizePolicy { target: GgmlType::Q4_0, pure: false, keep: vec![] };
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
use ggufy_quant::{
    QUANTIZE_TARGETS, QuantError, Rounding, can_dequantize, dequantize_row, quantize_row,
};
use rayon::prelude::*;

pub use policy::{QuantizePolicy, file_type_for, quantize_plan};

/// Where a tensor's data comes from: little-endian bytes of a known type (usually a slice of a
/// memory-mapped file).
#[derive(Clone, Copy, Debug)]
pub struct Source<'a> {
    /// The type the bytes are in.
    pub ty: GgmlType,
    /// The bytes, exactly one tensor's worth.
    pub bytes: &'a [u8],
}

/// One tensor of the output file.
#[derive(Clone, Debug)]
pub struct PlannedTensor<'a> {
    /// Output name.
    pub name: String,
    /// Dimensions in ggml order (`dims[0]` is the row length).
    pub dims: Vec<u64>,
    /// Input data.
    pub source: Source<'a>,
    /// Output type; equal to the source type means a straight copy.
    pub out: GgmlType,
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

/// Options for [`execute`].
#[derive(Clone, Debug, Default)]
pub struct ExecOptions {
    /// Worker threads; 0 means one per available core.
    pub threads: usize,
    /// Rounding of the legacy quantizers (see [`Rounding`]).
    pub rounding: Rounding,
    /// Overwrite and input-protection settings of the writer.
    pub writer: WriterOptions,
}

/// What happened to one tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorReport {
    /// Tensor name.
    pub name: String,
    /// Source type.
    pub from: GgmlType,
    /// Output type.
    pub to: GgmlType,
    /// Source bytes read.
    pub bytes_in: u64,
    /// Bytes written (without padding).
    pub bytes_out: u64,
}

impl TensorPlan<'_> {
    /// Checks every tensor before any work: source sizes agree with shapes, conversions exist,
    /// rows fill whole blocks. Returns the writer's layout.
    pub fn validate(&self) -> Result<WritePlan, PlanError> {
        for t in &self.tensors {
            let fail = |problem: String| PlanError::Tensor {
                name: t.name.clone(),
                problem,
            };
            let ne0 = t.dims.first().copied().unwrap_or(1);
            let rows: u64 = t.dims.iter().skip(1).product();
            let want = t
                .source
                .ty
                .row_bytes(ne0)
                .and_then(|r| r.checked_mul(rows))
                .ok_or_else(|| {
                    fail(format!(
                        "shape {:?} does not fit {} blocks",
                        t.dims, t.source.ty
                    ))
                })?;
            if t.source.bytes.len() as u64 != want {
                return Err(fail(format!(
                    "source has {} bytes but a {} tensor of shape {:?} needs {want}",
                    t.source.bytes.len(),
                    t.source.ty,
                    t.dims
                )));
            }
            if t.out == t.source.ty {
                continue;
            }
            if !can_dequantize(t.source.ty) {
                return Err(fail(format!(
                    "cannot convert from {}: ggufy does not decode that type yet",
                    t.source.ty
                )));
            }
            if !QUANTIZE_TARGETS.contains(&t.out) {
                return Err(fail(format!("cannot convert to {}", t.out)));
            }
            if t.out.row_bytes(ne0).is_none() {
                return Err(fail(format!(
                    "row length {ne0} is not a multiple of the {} block size {}",
                    t.out,
                    t.out.block_size()
                )));
            }
        }
        let specs = self
            .tensors
            .iter()
            .map(|t| TensorSpec {
                name: t.name.clone(),
                dims: t.dims.clone(),
                ty: t.out,
            })
            .collect();
        Ok(WritePlan::new(self.metadata.clone(), specs)?)
    }
}

/// Output bytes converted per parallel task: large enough to amortise scheduling, small enough to
/// balance a few hundred rows across cores.
const TASK_BYTES: usize = 256 * 1024;

/// Converts one tensor into `out` (exactly its output size), rows in parallel.
fn convert_tensor(
    t: &PlannedTensor<'_>,
    out: &mut [u8],
    rounding: Rounding,
) -> Result<(), QuantError> {
    let ne0 = t.dims.first().copied().unwrap_or(1) as usize;
    let src_row = t.source.ty.row_bytes(ne0 as u64).unwrap_or(0) as usize;
    let dst_row = t.out.row_bytes(ne0 as u64).unwrap_or(0) as usize;
    if out.is_empty() || src_row == 0 || dst_row == 0 {
        return Ok(());
    }
    let rows_per_task = (TASK_BYTES / dst_row).max(1);
    out.par_chunks_mut(dst_row * rows_per_task)
        .zip(t.source.bytes.par_chunks(src_row * rows_per_task))
        .try_for_each_init(
            || vec![0.0f32; ne0],
            |row, (dst, src)| {
                for (d, s) in dst.chunks_exact_mut(dst_row).zip(src.chunks_exact(src_row)) {
                    dequantize_row(t.source.ty, s, row)?;
                    quantize_row(t.out, row, d, rounding)?;
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
    for (i, t) in plan.tensors.iter().enumerate() {
        if t.out == t.source.ty {
            writer.write_tensor(t.source.bytes)?;
        } else {
            writer
                .write_tensor_with(|buf| pool.install(|| convert_tensor(t, buf, opts.rounding)))
                .map_err(|e| match e {
                    ggufy_gguf::WriteError::Gguf(g) => PlanError::Gguf(g),
                    ggufy_gguf::WriteError::Source(err) => PlanError::Quant {
                        name: t.name.clone(),
                        err,
                    },
                })?;
        }
        let report = TensorReport {
            name: t.name.clone(),
            from: t.source.ty,
            to: t.out,
            bytes_in: t.source.bytes.len() as u64,
            bytes_out: writer_size(t),
        };
        progress(i, &report);
        reports.push(report);
    }
    Ok((writer.finish()?, reports))
}

fn writer_size(t: &PlannedTensor<'_>) -> u64 {
    let ne0 = t.dims.first().copied().unwrap_or(1);
    let rows: u64 = t.dims.iter().skip(1).product();
    t.out.row_bytes(ne0).unwrap_or(0) * rows
}
