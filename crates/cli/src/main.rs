//! `ggufy`: the command line. Parses arguments, calls the library crates, formats their results.
//! Exit codes: 0 success, 1 the job failed (bad input, I/O), 2 bad arguments (clap's convention).

mod convert;
mod inspect;
mod perplexity;
mod quantize;
mod report;
mod run;
mod signals;
mod tokenize;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Hugging Face checkpoints to GGUF, quantization and a quick check run, in one static binary.
#[derive(Parser, Debug)]
#[command(name = "ggufy", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show a GGUF file's header, metadata, tensors and tokenizer (or why it is not a valid GGUF).
    Inspect(InspectArgs),
    /// Convert a Hugging Face safetensors checkpoint to GGUF (what llama.cpp's converter writes).
    Convert(convert::ConvertArgs),
    /// Quantize a GGUF file (F32/F16/BF16 or already quantized) to another type.
    Quantize(quantize::QuantizeArgs),
    /// Generate text from a prompt with a model (llama, qwen2, phi3, gemma architectures).
    Run(run::RunArgs),
    /// Measure perplexity on a text, optionally against a base model (KL divergence, a CI gate).
    Perplexity(perplexity::PerplexityArgs),
    /// Turn text into token ids with a model's vocabulary, exactly as llama.cpp does.
    Tokenize(tokenize::TokenizeArgs),
    /// Turn token ids back into text with a model's vocabulary.
    Detokenize(tokenize::DetokenizeArgs),
}

/// Arguments of `ggufy inspect`.
#[derive(clap::Args, Debug)]
struct InspectArgs {
    /// The GGUF file.
    file: PathBuf,
    /// Print everything as one JSON document on stdout (arrays in full unless --array-limit).
    #[arg(long)]
    json: bool,
    /// Show at most this many elements of each metadata array (text default: 8; JSON: all).
    #[arg(long, value_name = "N")]
    array_limit: Option<usize>,
    /// Leave the tensor table out (totals per type are still shown).
    #[arg(long)]
    no_tensors: bool,
    /// Fail (exit 1) if there are warnings, such as anything llama.cpp would refuse to load.
    #[arg(long)]
    strict: bool,
}

/// Opens a GGUF file; errors name the path once (I/O errors from the library already do).
pub(crate) fn open_gguf(path: &std::path::Path) -> anyhow::Result<ggufy_gguf::GgufFile> {
    ggufy_gguf::Gguf::open(path).map_err(|e| match e {
        ggufy_gguf::GgufError::Io { .. } => anyhow::Error::new(e),
        other => anyhow::Error::new(other).context(path.display().to_string()),
    })
}

fn main() -> ExitCode {
    signals::install();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(args) => inspect::run(&args),
        Command::Convert(args) => convert::run(&args),
        Command::Quantize(args) => quantize::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Perplexity(args) => perplexity::run(&args),
        Command::Tokenize(args) => tokenize::run_tokenize(&args),
        Command::Detokenize(args) => tokenize::run_detokenize(&args),
    };
    match result {
        Ok(output) => {
            let mut out = std::io::stdout().lock();
            // A closed pipe (`ggufy inspect x | head`) is not an error worth reporting.
            match out.write_all(output.as_bytes()).and_then(|()| out.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: writing to stdout: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            // One line: the context chain joined by ": ".
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
