//! `ggufy convert SRC -o OUT --outtype T`: a Hugging Face checkpoint to GGUF, with the tensors and
//! metadata llama.cpp's converter writes, streamed from the memory-mapped shards.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use ggufy_convert::{ConvertOptions, Converter, OutType, VocabOptions};
use ggufy_gguf::WriterOptions;
use ggufy_plan::{ExecOptions, Target, execute, file_type_for};
use serde_json::json;

use crate::report::{human_bytes, progress_bar};

/// Arguments of `ggufy convert`.
#[derive(clap::Args, Debug)]
pub struct ConvertArgs {
    /// Checkpoint directory (config.json, *.safetensors, tokenizer files), or a Hugging Face hub id
    /// `org/name[@revision]` (honours HF_TOKEN, HF_HOME, HF_ENDPOINT, HF_HUB_OFFLINE).
    source: PathBuf,
    /// Output GGUF file (written to a temporary file beside it, renamed when complete).
    #[arg(
        long,
        short = 'o',
        value_name = "OUT.gguf",
        required_unless_present = "dry_run"
    )]
    output: Option<PathBuf>,
    /// Output type: auto (bf16 if the checkpoint is bf16, else f16), f32, f16, bf16, q8_0 — as
    /// llama.cpp's converter — or q4_0, q4_1, q5_0, q5_1, q6_k, nf4 with llama-quantize's rules.
    #[arg(long, default_value = "f16", value_parser = parse_outtype)]
    outtype: OutType,
    /// tokenizer.ggml.pre to write when llama.cpp's table does not know the tokenizer's check hash.
    #[arg(long, value_name = "NAME")]
    vocab_pre: Option<String>,
    /// general.name (default: the checkpoint directory's name).
    #[arg(long, value_name = "NAME")]
    model_name: Option<String>,
    /// Print the plan (tensors, types, sizes) and write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Worker threads (default: one per core). The output is identical for any count.
    #[arg(long, short = 't', default_value_t = 0)]
    threads: usize,
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

fn parse_outtype(s: &str) -> Result<OutType, String> {
    OutType::parse(s).ok_or_else(|| {
        "unknown output type; supported: auto, f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q6_k, nf4".into()
    })
}

/// A local directory as is; a hub id fetched into the Hugging Face cache.
fn resolve_source(source: &std::path::Path, quiet: bool) -> Result<PathBuf> {
    if source.exists() {
        return Ok(source.to_owned());
    }
    #[cfg(feature = "hub")]
    if let Some(id) = source.to_str().and_then(ggufy_convert::hub::HubId::parse) {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let opts = ggufy_convert::hub::HubOptions {
            endpoint: env("HF_ENDPOINT"),
            cache_dir: env("HF_HOME").map(|h| PathBuf::from(h).join("hub")),
            token: env("HF_TOKEN").or_else(|| env("HUGGING_FACE_HUB_TOKEN")),
            offline: env("HF_HUB_OFFLINE").is_some_and(|v| {
                matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
            }),
            retries: 5,
        };
        return ggufy_convert::hub::fetch(&id, &opts, &mut |f| {
            if !quiet {
                eprintln!("fetching {}@{}: {f}", id.repo, id.revision);
            }
        })
        .map_err(anyhow::Error::new);
    }
    bail!(
        "{}: no such directory (and not a hub id org/name[@revision])",
        source.display()
    )
}

/// Runs the command and returns what goes to stdout.
pub fn run(args: &ConvertArgs) -> Result<String> {
    let start = Instant::now();
    if let Some(out) = &args.output
        && !args.dry_run
        && !args.force
        && out.exists()
    {
        bail!(
            "{}: already exists; pass --force to replace it",
            out.display()
        );
    }
    let opts = ConvertOptions {
        outtype: args.outtype,
        vocab: VocabOptions {
            pre_override: args.vocab_pre.clone(),
        },
        model_name: args.model_name.clone(),
    };
    let dir = resolve_source(&args.source, args.quiet)?;
    let conv = Converter::open(&dir, &opts)
        .with_context(|| format!("converting {}", args.source.display()))?;
    let (plan, warnings) = conv
        .plan()
        .with_context(|| args.source.display().to_string())?;
    let encoding = conv.encoding();
    if args.dry_run {
        let layout = plan
            .validate()
            .with_context(|| args.source.display().to_string())?;
        let tensors: Vec<_> = plan
            .tensors
            .iter()
            .zip(layout.tensor_sizes())
            .map(|(t, (_, bytes))| {
                let to = match t.out {
                    Target::Ggml(ty) => ty.name().to_owned(),
                    Target::Nf4Codes => "NF4 codes (I8)".into(),
                    Target::Nf4Absmax => "NF4 scales (F32)".into(),
                };
                let from = t.source.encoding().to_string();
                (t.name.clone(), t.dims.clone(), from, to, bytes)
            })
            .collect();
        for w in &warnings {
            eprintln!("warning: {w}");
        }
        if args.json {
            let list: Vec<_> = tensors
                .iter()
                .map(
                    |(n, d, f, t, b)| json!({"name": n, "dims": d, "from": f, "to": t, "bytes": b}),
                )
                .collect();
            let doc = json!({
                "source": args.source.display().to_string(),
                "architecture": conv.architecture().gguf,
                "type": encoding.to_string(),
                "file_type": file_type_for(encoding),
                "metadata_keys": plan.metadata.len(),
                "tensors": list,
                "output_bytes": layout.file_len(),
                "warnings": warnings,
            });
            return Ok(format!("{}\n", serde_json::to_string_pretty(&doc)?));
        }
        let mut out = format!(
            "{} ({}, {}) -> {}: {} metadata keys, {} tensors, {}\n",
            args.source.display(),
            conv.hf_architecture(),
            conv.architecture().gguf,
            encoding,
            plan.metadata.len(),
            tensors.len(),
            human_bytes(layout.file_len())
        );
        let width = tensors.iter().map(|t| t.0.len()).max().unwrap_or(0);
        for (name, dims, from, to, bytes) in &tensors {
            let dims = dims
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(" x ");
            out.push_str(&format!(
                "  {name:width$}  {dims:>16}  {from:>5} -> {to:<6} {}\n",
                human_bytes(*bytes)
            ));
        }
        return Ok(out);
    }
    let Some(output) = &args.output else {
        bail!("--output is required");
    };
    let exec = ExecOptions {
        threads: args.threads,
        rounding: ggufy_quant::Rounding::Separate,
        writer: WriterOptions {
            overwrite: args.force,
            inputs: conv
                .checkpoint()
                .shard_names()
                .iter()
                .map(|s| dir.join(s))
                .collect(),
        },
        offload: crate::device::offload(args.device, args.quiet)?,
    };
    let bar = progress_bar(plan.tensors.len() as u64, args.quiet);
    let (path, reports) = execute(&plan, output, &exec, &mut |_, r| {
        conv.release(&r.name);
        if let Some(bar) = &bar {
            bar.set_message(r.name.clone());
            bar.inc(1);
        }
    })
    .with_context(|| {
        format!(
            "converting {} to {}",
            args.source.display(),
            output.display()
        )
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if !args.quiet {
        for w in &warnings {
            eprintln!("warning: {w}");
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let bytes_in: u64 = reports.iter().map(|r| r.bytes_in).sum();
    let bytes_out: u64 = reports.iter().map(|r| r.bytes_out).sum();
    if !args.quiet {
        eprintln!(
            "{}: {} {} tensors, {} -> {} ({}) in {seconds:.2} s",
            path.display(),
            reports.len(),
            conv.architecture().gguf,
            human_bytes(bytes_in),
            human_bytes(bytes_out),
            encoding
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
        "source": args.source.display().to_string(),
        "output": path.display().to_string(),
        "architecture": conv.architecture().gguf,
        "type": encoding.to_string(),
        "file_type": file_type_for(encoding),
        "tensors": tensors,
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "seconds": seconds,
        "peak_rss_bytes": crate::report::peak_rss_bytes(),
        "warnings": warnings,
    });
    Ok(format!("{}\n", serde_json::to_string_pretty(&doc)?))
}
