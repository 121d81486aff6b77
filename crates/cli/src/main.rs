//! `ggufy`: the command line. Parses arguments, calls the library crates, formats their results.
//! Exit codes: 0 success, 1 the job failed (bad input, I/O), 2 bad arguments (clap's convention).

mod convert;
mod device;
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

use clap::{CommandFactory, Parser, Subcommand};

/// `ggufy --version`: the release, the git revision and the target it was built for.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("GGUFY_GIT_REV"),
    ", ",
    env!("GGUFY_TARGET"),
    ")"
);

/// Hugging Face checkpoints to GGUF, quantization and a quick check run, in one static binary.
#[derive(Parser, Debug)]
#[command(name = "ggufy", version = VERSION, about, propagate_version = true)]
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
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completions(CompletionsArgs),
    /// Print ggufy's man page (roff) on stdout, or write one page per command into a directory.
    Man(ManArgs),
}

/// Arguments of `ggufy completions`.
#[derive(clap::Args, Debug)]
struct CompletionsArgs {
    /// The shell, e.g. `ggufy completions bash > /etc/bash_completion.d/ggufy`.
    shell: clap_complete::Shell,
}

/// Arguments of `ggufy man`.
#[derive(clap::Args, Debug)]
struct ManArgs {
    /// Write ggufy.1 and ggufy-COMMAND.1 for every command into this directory instead.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
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

/// The completion script for `shell`, generated from the same definitions clap parses with.
fn completions(shell: clap_complete::Shell) -> String {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "ggufy", &mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// The man page on stdout, or every command's page written into `--out-dir`.
fn man(args: &ManArgs) -> anyhow::Result<String> {
    use anyhow::Context;
    let cmd = Cli::command();
    let render = |c: clap::Command| -> anyhow::Result<Vec<u8>> {
        let mut buf = Vec::new();
        clap_mangen::Man::new(c).render(&mut buf)?;
        Ok(buf)
    };
    let Some(dir) = &args.out_dir else {
        return Ok(String::from_utf8_lossy(&render(cmd)?).into_owned());
    };
    std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    let mut written = Vec::new();
    let mut pages = vec![("ggufy".to_string(), cmd.clone())];
    for sub in cmd.get_subcommands() {
        let name = format!("ggufy-{}", sub.get_name());
        // The page's own title and usage line name the full command.
        pages.push((name.clone(), sub.clone().name(name).version(VERSION)));
    }
    for (name, page) in pages {
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, render(page)?).with_context(|| path.display().to_string())?;
        written.push(path.display().to_string());
    }
    Ok(format!("{}\n", written.join("\n")))
}

/// Opens a GGUF file; errors name the path once (I/O errors from the library already do).
pub(crate) fn open_gguf(path: &std::path::Path) -> anyhow::Result<ggufy_gguf::GgufFile> {
    ggufy_gguf::Gguf::open(path).map_err(|e| match e {
        ggufy_gguf::GgufError::Io { .. } => anyhow::Error::new(e),
        other => anyhow::Error::new(other).context(path.display().to_string()),
    })
}

/// Regroups `model`'s matrices for this CPU's packed kernels (unless `keep_layout`)
/// and lets the OS drop the file pages they were copied from, so memory stays near one copy.
pub(crate) fn pack_weights(
    model: &mut ggufy_run::Model<'_>,
    file: &ggufy_gguf::GgufFile,
    keep_layout: bool,
) {
    file.prefetch(model.embedding_bytes());
    if keep_layout {
        return;
    }
    model.pack(&|bytes| file.release(bytes));
}

fn main() -> ExitCode {
    signals::install();
    let cli = Cli::parse();
    if let Ok(v) = std::env::var("GGUFY_SIMD")
        && ggufy_quant::simd::Cap::parse(&v).is_none()
    {
        // A usage error, as clap's are: the run would not use what the user asked for.
        eprintln!("error: GGUFY_SIMD={v:?}: expected scalar, avx2, avxvnni, avx512 or native");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Inspect(args) => inspect::run(&args),
        Command::Convert(args) => convert::run(&args),
        Command::Quantize(args) => quantize::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Perplexity(args) => perplexity::run(&args),
        Command::Tokenize(args) => tokenize::run_tokenize(&args),
        Command::Detokenize(args) => tokenize::run_detokenize(&args),
        Command::Completions(args) => Ok(completions(args.shell)),
        Command::Man(args) => man(&args),
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
