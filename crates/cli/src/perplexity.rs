//! `ggufy perplexity`: llama-perplexity's measure, plus KL divergence against a base file and
//! thresholds that make it a CI quality gate.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use ggufy_run::Model;
use ggufy_run::perplexity::perplexity;
use ggufy_tokenizer::Tokenizer;

/// Arguments of `ggufy perplexity`.
#[derive(clap::Args, Debug)]
pub struct PerplexityArgs {
    /// The GGUF model to measure.
    model: PathBuf,
    /// The text to measure on (held out from training, ideally).
    #[arg(short, long, value_name = "TEXT")]
    file: PathBuf,
    /// Tokens per chunk; the second half of each chunk is scored.
    #[arg(long, default_value_t = 512)]
    ctx: usize,
    /// Batch size (accepted for llama-perplexity compatibility; tokens are evaluated in order).
    #[arg(long, default_value_t = 512)]
    batch: usize,
    /// Measure at most this many chunks.
    #[arg(long)]
    chunks: Option<usize>,
    /// A reference model (e.g. the F16 file this one was quantized from): report the KL
    /// divergence from it and how often both pick the same top token.
    #[arg(long, value_name = "BASE.gguf")]
    base: Option<PathBuf>,
    /// Fail (exit 1) if the mean KL divergence from --base exceeds this.
    #[arg(long, requires = "base", value_name = "X")]
    max_kl: Option<f64>,
    /// Fail (exit 1) if perplexity exceeds this many times the --base file's.
    #[arg(long, requires = "base", value_name = "R")]
    max_ppl_ratio: Option<f64>,
    /// Worker threads (default: one per core); results do not depend on the count.
    #[arg(short, long, default_value_t = 0)]
    threads: usize,
    /// Print a JSON document.
    #[arg(long)]
    json: bool,
    /// Where Q8_0, Q4_0 and NF4 weight matrices of both models are multiplied. A GPU sums in
    /// f32 without llama.cpp's activation quantization, so results differ slightly from the CPU's.
    #[arg(long, value_enum, default_value_t = crate::device::Device::Cpu)]
    device: crate::device::Device,
    /// Keep every weight in the file's layout, read in place: no copy and less memory, but
    /// slower on x86-64 CPUs with AVX2, where Q4_0, Q4_1, Q8_0 and K-quant matrices are
    /// otherwise regrouped sixteen rows at a time at load and F16 ones copied into huge pages
    /// (results are the same either way).
    #[arg(long)]
    no_repack: bool,
}

/// Runs `ggufy perplexity`.
pub fn run(a: &PerplexityArgs) -> Result<String> {
    let file = crate::open_gguf(&a.model)?;
    let label = a.model.display().to_string();
    let tok = Tokenizer::from_gguf(&file).with_context(|| format!("{label}: vocabulary"))?;
    let mut model = Model::load(&file).with_context(|| label.clone())?;
    let base_file = a.base.as_deref().map(crate::open_gguf).transpose()?;
    let mut base = match (&base_file, &a.base) {
        (Some(f), Some(p)) => Some(Model::load(f).with_context(|| p.display().to_string())?),
        _ => None,
    };
    if let Some(acc) = crate::device::accelerator(a.device, false)? {
        let moved = model.offload(acc.as_ref()).with_context(|| label.clone())?;
        let base_moved = match (&mut base, &a.base) {
            (Some(b), Some(p)) => b
                .offload(acc.as_ref())
                .with_context(|| p.display().to_string())?,
            _ => 0,
        };
        eprintln!(
            "{label}: {moved} weight matrices on {} ({base_moved} of the base model's)",
            acc.name()
        );
    }
    let text = std::fs::read_to_string(&a.file).with_context(|| a.file.display().to_string())?;
    let tokens = tok.tokenize(&text, true, false);
    let bos = if tok.vocab().adds_bos_eos().0 {
        tok.vocab().special().bos
    } else {
        None
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads)
        .build()
        .context("starting worker threads")?;
    pool.install(|| {
        crate::pack_weights(&mut model, &file, a.no_repack);
        if let (Some(b), Some(f)) = (&mut base, &base_file) {
            crate::pack_weights(b, f, a.no_repack);
        }
    });
    let _ = a.batch;
    let quiet = a.json;
    let report = pool.install(|| {
        perplexity(
            &model,
            base.as_ref(),
            &tokens,
            a.ctx,
            bos,
            a.chunks,
            &mut |c, p| {
                if !quiet {
                    eprint!("[{c}]{p:.4},");
                }
            },
        )
    })?;
    if !quiet {
        eprintln!();
    }
    let mut gate = Vec::new();
    if let Some(kl) = &report.kl {
        if let Some(max) = a.max_kl
            && kl.mean_kl > max
        {
            gate.push(format!(
                "mean KL divergence {:.6} exceeds --max-kl {max}",
                kl.mean_kl
            ));
        }
        if let Some(r) = a.max_ppl_ratio
            && report.ppl > r * kl.base_ppl
        {
            gate.push(format!(
                "perplexity {:.4} is {:.4}x the base's {:.4}, above --max-ppl-ratio {r}",
                report.ppl,
                report.ppl / kl.base_ppl,
                kl.base_ppl
            ));
        }
    }
    let out = if a.json {
        let mut doc = serde_json::json!({
            "tokens": tokens.len(),
            "ctx": a.ctx,
            "chunks": report.chunks,
            "scored": report.scored,
            "ppl": report.ppl,
            "ppl_err": report.ppl_err,
            "running": report.running,
            "gate_passed": gate.is_empty(),
        });
        if let Some(kl) = &report.kl {
            doc["base_ppl"] = kl.base_ppl.into();
            doc["ppl_ratio"] = (report.ppl / kl.base_ppl).into();
            doc["mean_kl"] = kl.mean_kl.into();
            doc["max_kl"] = kl.max_kl.into();
            doc["top1_agreement"] = kl.top1_agreement.into();
        }
        serde_json::to_string_pretty(&doc)? + "\n"
    } else {
        let mut s = format!(
            "Final estimate: PPL = {:.4} +/- {:.5} ({} chunks of {}, {} tokens scored)\n",
            report.ppl, report.ppl_err, report.chunks, a.ctx, report.scored
        );
        if let Some(kl) = &report.kl {
            s.push_str(&format!(
                "Base PPL = {:.4}, ratio {:.4}\nMean KLD = {:.6}, max {:.6}\nSame top token: {:.3}%\n",
                kl.base_ppl,
                report.ppl / kl.base_ppl,
                kl.mean_kl,
                kl.max_kl,
                100.0 * kl.top1_agreement
            ));
        }
        s
    };
    if !gate.is_empty() {
        // The report still goes out, then the failure.
        print!("{out}");
        bail!("quality gate failed: {}", gate.join("; "));
    }
    Ok(out)
}
