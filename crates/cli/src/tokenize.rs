//! `ggufy tokenize` and `ggufy detokenize`: a model's own vocabulary, exactly as llama.cpp uses it.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use ggufy_tokenizer::Tokenizer;

/// Arguments of `ggufy tokenize`.
#[derive(clap::Args, Debug)]
pub struct TokenizeArgs {
    /// The GGUF file whose vocabulary to use (a vocab-only file works too).
    model: PathBuf,
    /// The text (or use --file; `-` reads standard input).
    text: Option<String>,
    /// Read the text from this file instead.
    #[arg(long, short = 'f', value_name = "PATH", conflicts_with = "text")]
    file: Option<PathBuf>,
    /// Do not add the BOS/EOS tokens the vocabulary asks for.
    #[arg(long)]
    no_special: bool,
    /// Turn control-token texts in the input (`<s>`, `<|im_end|>`) into those tokens.
    #[arg(long)]
    parse_special: bool,
    /// Print each token's id and text, one per line.
    #[arg(long)]
    show_pieces: bool,
    /// Print a JSON document: ids, and pieces with --show-pieces.
    #[arg(long)]
    json: bool,
}

/// Arguments of `ggufy detokenize`.
#[derive(clap::Args, Debug)]
pub struct DetokenizeArgs {
    /// The GGUF file whose vocabulary to use.
    model: PathBuf,
    /// Token ids.
    #[arg(required = true, num_args = 1.., allow_negative_numbers = true)]
    ids: Vec<i64>,
    /// Render control tokens (BOS, EOS, chat markers) as their text.
    #[arg(long)]
    special: bool,
    /// Keep a leading BOS / trailing EOS the vocabulary adds (they are dropped by default).
    #[arg(long)]
    keep_bos_eos: bool,
    /// Print a JSON document.
    #[arg(long)]
    json: bool,
}

fn load(model: &std::path::Path) -> Result<Tokenizer> {
    let file = crate::open_gguf(model)?;
    Tokenizer::from_gguf(&file).with_context(|| format!("{}: vocabulary", model.display()))
}

/// Runs `ggufy tokenize`.
pub fn run_tokenize(a: &TokenizeArgs) -> Result<String> {
    let text = match (&a.text, &a.file) {
        (Some(t), _) if t == "-" => {
            std::io::read_to_string(std::io::stdin()).context("reading standard input")?
        }
        (Some(t), _) => t.clone(),
        (None, Some(p)) => {
            std::fs::read_to_string(p).with_context(|| format!("{}", p.display()))?
        }
        (None, None) => bail!("give the text, --file PATH, or - for standard input"),
    };
    let tok = load(&a.model)?;
    let ids = tok.tokenize(&text, !a.no_special, a.parse_special);
    let piece = |id: u32| {
        String::from_utf8_lossy(tok.token_to_piece(id, 0, true).unwrap_or_default()).into_owned()
    };
    let mut out = String::new();
    if a.json {
        let mut doc = serde_json::json!({ "ids": ids, "count": ids.len() });
        if a.show_pieces {
            doc["pieces"] = ids.iter().map(|&id| piece(id)).collect::<Vec<_>>().into();
        }
        out = serde_json::to_string_pretty(&doc)?;
        out.push('\n');
    } else if a.show_pieces {
        for &id in &ids {
            let _ = writeln!(out, "{id:>7} {:?}", piece(id));
        }
    } else {
        let s: Vec<String> = ids.iter().map(u32::to_string).collect();
        out = s.join(" ");
        out.push('\n');
    }
    Ok(out)
}

/// Runs `ggufy detokenize`.
pub fn run_detokenize(a: &DetokenizeArgs) -> Result<String> {
    let tok = load(&a.model)?;
    let n = tok.vocab().len();
    let ids = a
        .ids
        .iter()
        .map(|&id| {
            u32::try_from(id)
                .ok()
                .filter(|&i| (i as usize) < n)
                .with_context(|| {
                    format!("token id {id} is out of range (the vocabulary has {n} tokens)")
                })
        })
        .collect::<Result<Vec<u32>>>()?;
    let bytes = tok.detokenize(&ids, !a.keep_bos_eos, a.special)?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    if a.json {
        let doc = serde_json::json!({
            "text": text,
            "valid_utf8": std::str::from_utf8(&bytes).is_ok(),
        });
        return Ok(serde_json::to_string_pretty(&doc)? + "\n");
    }
    Ok(text + "\n")
}
