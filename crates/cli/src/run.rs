//! `ggufy run`: generate from a prompt, streaming the text, with speeds on stderr.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use ggufy_run::{Model, Sampler, SamplerConfig, Session};
use ggufy_tokenizer::Tokenizer;

/// Arguments of `ggufy run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The GGUF model.
    model: PathBuf,
    /// The prompt (special tokens such as `<|im_start|>` in it are parsed).
    #[arg(short, long)]
    prompt: String,
    /// Tokens to generate (generation also stops at an end-of-generation token).
    #[arg(short = 'n', long, default_value_t = 64)]
    n_predict: usize,
    /// Context size in tokens (default: the smaller of 4096 and the model's training context).
    #[arg(long)]
    ctx: Option<usize>,
    /// Temperature; 0 is greedy decoding.
    #[arg(long, default_value_t = 0.8)]
    temp: f32,
    /// Greedy decoding (the same as --temp 0).
    #[arg(long)]
    greedy: bool,
    /// Top-k (0: off).
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    /// Top-p (1: off).
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    /// Min-p (0: off).
    #[arg(long, default_value_t = 0.05)]
    min_p: f32,
    /// Repetition penalty over the last 64 tokens (1: off).
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    /// Seed of the random draw: the same seed gives the same text.
    #[arg(long, default_value_t = 0x5EED)]
    seed: u64,
    /// Worker threads (default: one per core); the output is the same for any count.
    #[arg(short, long, default_value_t = 0)]
    threads: usize,
    /// Print a JSON document at the end instead of streaming text.
    #[arg(long)]
    json: bool,
    /// Treat the prompt as a user message and render the file's chat template
    /// (`tokenizer.chat_template`) around it, in a sandbox.
    #[arg(long)]
    chat: bool,
    /// With --chat: a system message before the user's.
    #[arg(long, requires = "chat")]
    system: Option<String>,
    /// With --chat: a chat template file to use instead of the file's.
    #[arg(long, requires = "chat")]
    chat_template: Option<PathBuf>,
    /// Where Q8_0, Q4_0 and NF4 weight matrices are multiplied. On a GPU the sums are f32 in
    /// another order, so the logits differ slightly from the CPU's (which match llama.cpp's).
    #[arg(long, value_enum, default_value_t = crate::device::Device::Cpu)]
    device: crate::device::Device,
    /// Keep every weight in the file's layout, read in place: no copy and less memory, but
    /// slower on x86-64 CPUs with AVX2, where Q4_0, Q4_1, Q8_0 and K-quant matrices are
    /// otherwise regrouped sixteen rows at a time at load and F16 ones copied into huge pages
    /// (results are the same either way).
    #[arg(long)]
    no_repack: bool,
}

/// Runs `ggufy run`.
pub fn run(a: &RunArgs) -> Result<String> {
    let file = crate::open_gguf(&a.model)?;
    let ctx_label = || a.model.display().to_string();
    let tok =
        Tokenizer::from_gguf(&file).with_context(|| format!("{}: vocabulary", ctx_label()))?;
    let mut model = Model::load(&file).with_context(ctx_label)?;
    if let Some(acc) = crate::device::accelerator(a.device, false)? {
        let moved = model.offload(acc.as_ref()).with_context(ctx_label)?;
        eprintln!("{}: {moved} weight matrices on {}", ctx_label(), acc.name());
    }
    let prompt = if a.chat {
        chat_prompt(a, &file, &tok)?
    } else {
        a.prompt.clone()
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads)
        .build()
        .context("starting worker threads")?;
    pool.install(|| crate::pack_weights(&mut model, &file, a.no_repack));
    pool.install(|| generate(a, &prompt, &tok, &model))
}

/// The prompt text from the chat template: the user's message (after the system message, if
/// any), the assistant's turn opened.
fn chat_prompt<B: AsRef<[u8]>>(
    a: &RunArgs,
    file: &ggufy_gguf::Gguf<B>,
    tok: &Tokenizer,
) -> Result<String> {
    let template = match &a.chat_template {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("reading the chat template {}", p.display()))?,
        None => file
            .get_str("tokenizer.chat_template")
            .with_context(|| format!("{}: tokenizer.chat_template", a.model.display()))?
            .with_context(|| {
                format!(
                    "{}: the file has no tokenizer.chat_template; give one with --chat-template",
                    a.model.display()
                )
            })?
            .to_owned(),
    };
    let text = |id: Option<u32>| {
        id.and_then(|i| tok.vocab().token_text(i))
            .map(|t| String::from_utf8_lossy(t).into_owned())
            .unwrap_or_default()
    };
    let special = tok.vocab().special();
    let mut messages = Vec::new();
    if let Some(sys) = &a.system {
        messages.push(ggufy_chat::Message::new("system", sys));
    }
    messages.push(ggufy_chat::Message::new("user", &a.prompt));
    let opts = ggufy_chat::RenderOptions {
        add_generation_prompt: true,
        bos_token: text(special.bos),
        eos_token: text(special.eos),
        now: None,
    };
    ggufy_chat::render(&template, &messages, &opts, &ggufy_chat::Limits::default())
        .with_context(|| format!("{}: tokenizer.chat_template", a.model.display()))
}

fn generate(a: &RunArgs, text_prompt: &str, tok: &Tokenizer, model: &Model<'_>) -> Result<String> {
    let text = text_prompt;
    // A rendered chat prompt that already starts with the BOS text gets no second BOS.
    let bos_text = tok
        .vocab()
        .special()
        .bos
        .and_then(|i| tok.vocab().token_text(i))
        .filter(|t| !t.is_empty());
    let has_bos = a.chat && bos_text.is_some_and(|b| text.as_bytes().starts_with(b));
    let prompt = tok.tokenize(text, !has_bos, true);
    let n_ctx = a
        .ctx
        .unwrap_or(4096)
        .min(model.hp.n_ctx_train)
        .max(prompt.len() + 1);
    let mut session = Session::new(model, n_ctx);
    let cfg = SamplerConfig {
        temp: if a.greedy { 0.0 } else { a.temp },
        top_k: a.top_k,
        top_p: a.top_p,
        min_p: a.min_p,
        penalty_repeat: a.repeat_penalty,
        seed: a.seed,
        ..SamplerConfig::default()
    };
    let mut sampler = Sampler::new(cfg);
    for &t in &prompt {
        sampler.accept(t);
    }
    let t0 = Instant::now();
    let mut logits = session.eval(&prompt)?;
    let prefill = t0.elapsed();
    let mut decoder = tok.stream_decoder(true);
    let mut text = String::new();
    let mut generated = Vec::new();
    let mut out = std::io::stdout().lock();
    let t1 = Instant::now();
    for _ in 0..a.n_predict {
        let id = sampler.sample(&logits);
        if tok.vocab().eog().contains(&id) {
            break;
        }
        sampler.accept(id);
        generated.push(id);
        let piece = decoder.push(id)?;
        if !a.json {
            // Streaming: each piece as soon as it is whole; a closed pipe ends the run quietly.
            if out
                .write_all(piece.as_bytes())
                .and_then(|()| out.flush())
                .is_err()
            {
                return Ok(String::new());
            }
        }
        text.push_str(&piece);
        if generated.len() == a.n_predict || session.pos() == session.n_ctx() {
            break;
        }
        logits = session.eval(&[id])?;
    }
    let rest = decoder.finish();
    text.push_str(&rest);
    let decode = t1.elapsed();
    let per_s = |n: usize, d: std::time::Duration| n as f64 / d.as_secs_f64().max(1e-9);
    let prefill_tps = per_s(prompt.len(), prefill);
    let decode_tps = per_s(generated.len().saturating_sub(1), decode);
    eprintln!(
        "\nprompt: {} tokens, {prefill_tps:.1} tokens/s; generated: {} tokens, {decode_tps:.1} tokens/s",
        prompt.len(),
        generated.len()
    );
    if a.json {
        let doc = serde_json::json!({
            "prompt": text_prompt,
            "prompt_tokens": prompt,
            "tokens": generated,
            "text": text,
            "prefill_tokens_per_s": prefill_tps,
            "decode_tokens_per_s": decode_tps,
        });
        return Ok(serde_json::to_string_pretty(&doc)? + "\n");
    }
    Ok(rest + "\n")
}
