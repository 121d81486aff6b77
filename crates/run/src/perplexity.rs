//! Perplexity as llama.cpp's `llama-perplexity` measures it, and the KL divergence of a model
//! from a reference model on the same text: a quality gate for quantized files.
//!
//! The text is cut into chunks of `n_ctx` tokens, each evaluated from an empty cache with its
//! first token replaced by BOS (when the vocabulary adds one); only the second half of each
//! chunk is scored, so every scored token has at least `n_ctx / 2` tokens of context.

use crate::error::{Result, RunError};
use crate::model::{Model, Session};

/// What a run measured.
#[derive(Clone, Debug, Default)]
pub struct PerplexityReport {
    /// Chunks evaluated.
    pub chunks: usize,
    /// Tokens scored.
    pub scored: usize,
    /// exp(mean negative log-likelihood).
    pub ppl: f64,
    /// llama.cpp's "+/-": the standard error of the mean NLL, times the perplexity.
    pub ppl_err: f64,
    /// Perplexity after each chunk (llama.cpp's running estimates).
    pub running: Vec<f64>,
    /// Against a base model, when one was given.
    pub kl: Option<KlReport>,
}

/// How a model's next-token distributions differ from a base model's.
#[derive(Clone, Debug, Default)]
pub struct KlReport {
    /// The base model's perplexity on the same tokens.
    pub base_ppl: f64,
    /// Mean KL(base ‖ model) per scored token, in nats.
    pub mean_kl: f64,
    /// Largest KL at any scored token.
    pub max_kl: f64,
    /// Fraction of scored tokens where both models rank the same token first.
    pub top1_agreement: f64,
}

/// Log-softmax of `logits` at every index, summed in f64 as llama.cpp does.
fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from((l - max).exp())).sum();
    let lse = sum.ln();
    logits.iter().map(|&l| f64::from(l - max) - lse).collect()
}

fn argmax(v: &[f32]) -> usize {
    crate::sampler::argmax(v)
}

/// Measures perplexity of `model` on `tokens` (already tokenized with BOS if the vocabulary adds
/// one) in chunks of `n_ctx`, at most `max_chunks`; with `base`, also the KL divergence from it.
/// `on_chunk` sees the running perplexity after each chunk.
pub fn perplexity(
    model: &Model<'_>,
    base: Option<&Model<'_>>,
    tokens: &[u32],
    n_ctx: usize,
    bos: Option<u32>,
    max_chunks: Option<usize>,
    on_chunk: &mut dyn FnMut(usize, f64),
) -> Result<PerplexityReport> {
    if n_ctx < 4 {
        return Err(RunError::BadKey {
            key: "--ctx".into(),
            problem: format!("{n_ctx} is too small to score anything"),
        });
    }
    if tokens.len() < 2 * n_ctx {
        return Err(RunError::BadKey {
            key: "text".into(),
            problem: format!(
                "{} tokens; at least {} are needed for a context of {n_ctx}",
                tokens.len(),
                2 * n_ctx
            ),
        });
    }
    if let Some(b) = base
        && b.hp.n_vocab != model.hp.n_vocab
    {
        return Err(RunError::BadKey {
            key: "--base".into(),
            problem: format!(
                "its vocabulary has {} tokens, the model's {}: they cannot be compared",
                b.hp.n_vocab, model.hp.n_vocab
            ),
        });
    }
    let mut n_chunk = tokens.len() / n_ctx;
    if let Some(m) = max_chunks {
        n_chunk = n_chunk.min(m);
    }
    let first = n_ctx / 2;
    const BATCH: usize = 64;
    let mut report = PerplexityReport::default();
    let (mut nll, mut nll2, mut count) = (0f64, 0f64, 0usize);
    let mut kl = KlReport::default();
    let mut base_nll = 0f64;
    let mut agree = 0usize;
    let mut session = Session::new(model, n_ctx);
    let mut base_session = base.map(|b| Session::new(b, n_ctx));
    for c in 0..n_chunk {
        let chunk = &tokens[c * n_ctx..(c + 1) * n_ctx];
        session.reset();
        if let Some(s) = base_session.as_mut() {
            s.reset();
        }
        let mut input = chunk[..n_ctx - 1].to_vec();
        if let Some(b) = bos {
            input[0] = b;
        }
        // Batch by batch, so that only one batch of logits is held (a 128k vocabulary makes
        // a whole chunk's logits hundreds of MB).
        let nv = model.hp.n_vocab;
        let mut start = 0;
        while start < input.len() {
            let end = (start + BATCH).min(input.len());
            let all = session.eval_all(&input[start..end])?;
            let base_all = match base_session.as_mut() {
                Some(s) => Some(s.eval_all(&input[start..end])?),
                None => None,
            };
            for j in start.max(first)..end {
                let logits = &all[(j - start) * nv..(j - start + 1) * nv];
                let next = chunk[j + 1] as usize;
                let lp = log_softmax(logits);
                let v = -lp[next];
                nll += v;
                nll2 += v * v;
                count += 1;
                if let Some(b) = &base_all {
                    let bl = &b[(j - start) * nv..(j - start + 1) * nv];
                    let blp = log_softmax(bl);
                    base_nll += -blp[next];
                    let d: f64 = blp.iter().zip(&lp).map(|(&b, &m)| b.exp() * (b - m)).sum();
                    kl.mean_kl += d;
                    kl.max_kl = kl.max_kl.max(d);
                    agree += usize::from(argmax(bl) == argmax(logits));
                }
            }
            start = end;
        }
        let running = (nll / count as f64).exp();
        report.running.push(running);
        on_chunk(c + 1, running);
    }
    let n = count as f64;
    let mean = nll / n;
    report.ppl = mean.exp();
    let var = nll2 / n - mean * mean;
    report.ppl_err = if var > 0.0 && count > 1 {
        (var / (n - 1.0)).sqrt() * report.ppl
    } else {
        0.0
    };
    report.chunks = n_chunk;
    report.scored = count;
    if base.is_some() {
        kl.base_ppl = (base_nll / n).exp();
        kl.mean_kl /= n;
        kl.top1_agreement = agree as f64 / n;
        report.kl = Some(kl);
    }
    Ok(report)
}
