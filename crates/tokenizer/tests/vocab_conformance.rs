//! Every test line of every llama.cpp vocabulary in `../shared/vocab` (or `$GGUFY_VOCAB_DIR`):
//! ggufy's ids must equal llama.cpp's (`.out`, made with add_special = false and
//! parse_special = false), and detokenizing them must give the text back.

use std::path::PathBuf;

use ggufy_gguf::Gguf;
use ggufy_tokenizer::Tokenizer;

fn vocab_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("GGUFY_VOCAB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vocab"));
    dir.is_dir().then_some(dir)
}

/// (vocab file, texts, expected ids) for each vocabulary with test data.
fn cases() -> Vec<(PathBuf, Vec<String>, Vec<Vec<u32>>)> {
    let Some(dir) = vocab_dir() else {
        eprintln!("skipped: no ../shared/vocab (set GGUFY_VOCAB_DIR)");
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let inp = f.with_extension("gguf.inp");
        let exp = f.with_extension("gguf.out");
        if !inp.exists() || !exp.exists() {
            continue;
        }
        let inp = std::fs::read_to_string(inp).unwrap();
        // Texts end with "\n__ggml_vocab_test__\n" (some files omit the last newline).
        let inp = inp.strip_suffix('\n').unwrap_or(&inp);
        let inp = inp
            .strip_suffix("\n__ggml_vocab_test__")
            .unwrap_or_else(|| panic!("{}: no final separator", f.display()));
        let texts: Vec<String> = inp
            .split("\n__ggml_vocab_test__\n")
            .map(str::to_owned)
            .collect();
        let ids: Vec<Vec<u32>> = std::fs::read_to_string(exp)
            .unwrap()
            .lines()
            .map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect())
            .collect();
        assert_eq!(texts.len(), ids.len(), "{}", f.display());
        out.push((f, texts, ids));
    }
    assert!(
        !out.is_empty(),
        "no vocabulary with test data in {}",
        dir.display()
    );
    out
}

#[test]
fn every_line_of_every_vocabulary_matches_llama_cpp() {
    let mut failures = Vec::new();
    let mut lines = 0;
    for (path, texts, want) in cases() {
        let file = Gguf::open(&path).unwrap();
        let tok = Tokenizer::from_gguf(&file).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for (text, want) in texts.iter().zip(&want) {
            lines += 1;
            let got = tok.tokenize(text, false, false);
            if &got != want {
                failures.push(format!(
                    "{}: {text:?}\n  want {want:?}\n  got  {got:?}",
                    path.file_name().unwrap().to_string_lossy()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {lines} lines differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn detokenizing_gives_the_text_back() {
    // The pieces of what we tokenized, concatenated, are the input exactly (SentencePiece
    // vocabularies: after dropping the one leading space they add). `detokenize` gives the input
    // back too, except that vocabularies with HF's clean_up_tokenization_spaces drop a space
    // before `?!.,` and in contractions, as llama.cpp does.
    let mut failures = Vec::new();
    let mut cleaned = 0;
    for (path, texts, _) in cases() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let file = Gguf::open(&path).unwrap();
        let tok = Tokenizer::from_gguf(&file).unwrap();
        for text in &texts {
            let ids = tok.tokenize(text, false, false);
            let mut pieces = Vec::new();
            for (i, &id) in ids.iter().enumerate() {
                let lstrip = usize::from(i == 0 && tok.vocab().add_space_prefix());
                pieces.extend_from_slice(tok.token_to_piece(id, lstrip, false).unwrap());
            }
            if pieces != text.as_bytes() {
                failures.push(format!(
                    "{name} pieces: {text:?} -> {:?}",
                    String::from_utf8_lossy(&pieces)
                ));
            }
            let back = tok.detokenize(&ids, false, false).unwrap();
            if back != text.as_bytes() {
                if tok.vocab().clean_spaces() {
                    cleaned += 1;
                } else {
                    failures.push(format!(
                        "{name}: {text:?} -> {:?}",
                        String::from_utf8_lossy(&back)
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The clean-up changes only the two test lines with " ?" in each of the five vocabularies
    // that use it.
    assert!(cleaned <= 10, "{cleaned}");
}
