//! `ggufy quantize IN OUT TYPE`: llama-quantize's job, byte-identical tensors, streamed.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use ggufy_gguf::{GgmlType, WriterOptions};
use ggufy_plan::{Encoding, ExecOptions, QuantizePolicy, execute, file_type_for, quantize_plan};
use ggufy_quant::Rounding;
use serde_json::json;

use crate::open_gguf;
use crate::report::{human_bytes, progress_bar};

/// Types `ggufy quantize` produces, as users type them.
const TYPES: [&str; 9] = [
    "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q6_k", "f16", "bf16", "f32",
];

/// Arguments of `ggufy quantize`.
#[derive(clap::Args, Debug)]
pub struct QuantizeArgs {
    /// Input GGUF file.
    input: PathBuf,
    /// Output GGUF file (written to a temporary file beside it, renamed when complete).
    output: PathBuf,
    /// Output type: q8_0, q4_0, q4_1, q5_0, q5_1, q6_k, nf4, f16, bf16 or f32.
    #[arg(value_name = "TYPE", value_parser = parse_type)]
    ty: Encoding,
    /// Use TYPE for every quantizable tensor (no Q6_K output tensor).
    #[arg(long)]
    pure: bool,
    /// Copy tensors whose names match this pattern unchanged (`*` is a wildcard; repeatable).
    #[arg(long, value_name = "PATTERN")]
    keep: Vec<String>,
    /// Worker threads (default: one per core). The output is identical for any count.
    #[arg(long, short = 't', default_value_t = 0)]
    threads: usize,
    /// Round x*id+8.5 once (fused), as AArch64 builds of llama.cpp do, instead of twice as x86-64
    /// builds and gguf-py do. Affects Q4_0, Q4_1, Q5_0, Q5_1 in rare blocks.
    #[arg(long)]
    fused_rounding: bool,
    /// Replace OUTPUT if it exists (never an input).
    #[arg(long, short = 'f')]
    force: bool,
    /// Where to quantize Q8_0, Q4_0 and NF4 tensors (same bytes on every device).
    #[arg(long, value_enum, default_value_t = crate::device::Device::Cpu)]
    device: crate::device::Device,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    json: bool,
    /// No progress or summary on stderr.
    #[arg(long, short = 'q')]
    quiet: bool,
}

/// Parses TYPE for clap, so a bad type is a usage error (exit 2).
fn parse_type(s: &str) -> Result<Encoding, String> {
    if s.eq_ignore_ascii_case("nf4") {
        return Ok(Encoding::Nf4);
    }
    match GgmlType::from_name(s).map(Encoding::Ggml) {
        Some(e) if file_type_for(e).is_some() => Ok(e),
        _ => Err(format!(
            "unknown output type; supported: {}",
            TYPES.join(", ")
        )),
    }
}

/// Runs the command and returns what goes to stdout.
pub fn run(args: &QuantizeArgs) -> Result<String> {
    let target = args.ty;
    if !args.force && args.output.exists() {
        bail!(
            "{}: already exists; pass --force to replace it",
            args.output.display()
        );
    }
    let start = Instant::now();
    let file = open_gguf(&args.input)?;
    let policy = QuantizePolicy {
        target,
        pure: args.pure,
        keep: args.keep.clone(),
    };
    let (plan, warnings) =
        quantize_plan(&file, &policy).with_context(|| args.input.display().to_string())?;
    let opts = ExecOptions {
        threads: args.threads,
        rounding: if args.fused_rounding {
            Rounding::Fused
        } else {
            Rounding::Separate
        },
        writer: WriterOptions {
            overwrite: args.force,
            inputs: vec![args.input.clone()],
        },
        offload: crate::device::offload(args.device, args.quiet)?,
    };
    let bar = progress_bar(plan.tensors.len() as u64, args.quiet);
    let (path, reports) = execute(&plan, &args.output, &opts, &mut |i, r| {
        // Done with this tensor's input: keep the resident set near one tensor.
        for b in plan
            .tensors
            .get(i)
            .map(|t| t.source.buffers())
            .unwrap_or_default()
        {
            file.release(b);
        }
        if let Some(bar) = &bar {
            bar.set_message(r.name.clone());
            bar.inc(1);
        }
    })
    .with_context(|| {
        format!(
            "quantizing {} to {}",
            args.input.display(),
            args.output.display()
        )
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    // Warnings after the job ran: a refused input gets exactly one line, its error.
    if !args.quiet {
        for w in &warnings {
            eprintln!("warning: {w}");
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let bytes_in: u64 = reports.iter().map(|r| r.bytes_in).sum();
    let bytes_out: u64 = reports.iter().map(|r| r.bytes_out).sum();
    let converted = reports.iter().filter(|r| r.from != r.to).count();
    if !args.quiet {
        eprintln!(
            "{}: {} tensors ({} converted), {} -> {} ({}) in {seconds:.2} s",
            path.display(),
            reports.len(),
            converted,
            human_bytes(bytes_in),
            human_bytes(bytes_out),
            target
        );
    }
    if !args.json {
        return Ok(String::new());
    }
    let tensors: Vec<_> = reports
        .iter()
        .map(|r| json!({"name": r.name, "from": r.from.to_string(), "to": r.to.to_string(), "bytes_in": r.bytes_in, "bytes_out": r.bytes_out}))
        .collect();
    let doc = json!({
        "input": args.input.display().to_string(),
        "output": path.display().to_string(),
        "type": target.to_string(),
        "file_type": file_type_for(target),
        "tensors": tensors,
        "converted": converted,
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "seconds": seconds,
        "peak_rss_bytes": crate::report::peak_rss_bytes(),
        "warnings": warnings,
    });
    Ok(format!("{}\n", serde_json::to_string_pretty(&doc)?))
}
