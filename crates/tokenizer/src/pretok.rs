//! Byte-level BPE pre-tokenizers: the regex splits llama.cpp applies for each
//! `tokenizer.ggml.pre`, with its semantics.
//!
//! llama.cpp runs each regex in turn over the pieces the previous one left, keeping the text
//! between matches as pieces of its own. Where a regex uses Unicode classes (`\p{L}`, …) it runs on
//! a "collapsed" copy of the text in which every non-ASCII code point is replaced by one stand-in
//! for its class (or by a vertical tab if it is whitespace), and `\p{X}` becomes "the stand-in or
//! the ASCII members of X". We do the same, so a code point's class — not the regex engine's idea of
//! it — decides every split, exactly as in llama.cpp.

use fancy_regex::Regex;

use crate::unicode::{CharClass, class_of, is_whitespace};

/// Stand-ins for non-ASCII code points in collapsed text (private-use code points, which the
/// collapsed text otherwise never contains).
const STAND_IN_OTHER: char = '\u{E0D0}';
const STAND_IN_NUMBER: char = '\u{E0D1}';
const STAND_IN_LETTER: char = '\u{E0D2}';
const STAND_IN_PUNCT: char = '\u{E0D3}';
const STAND_IN_MARK: char = '\u{E0D4}';
const STAND_IN_SYMBOL: char = '\u{E0D5}';

fn stand_in(c: char) -> char {
    if (c as u32) < 0x80 {
        return c;
    }
    if is_whitespace(c) {
        return '\u{B}';
    }
    match class_of(c) {
        CharClass::Number => STAND_IN_NUMBER,
        CharClass::Letter => STAND_IN_LETTER,
        CharClass::Punctuation => STAND_IN_PUNCT,
        CharClass::Mark => STAND_IN_MARK,
        CharClass::Symbol => STAND_IN_SYMBOL,
        CharClass::Other => STAND_IN_OTHER,
    }
}

/// What `\p{name}` means on collapsed text: the stand-in and the class's ASCII members.
fn class_body(name: &str) -> Option<String> {
    let (stand_in, ascii) = match name {
        "N" => (STAND_IN_NUMBER, "0-9"),
        "L" | "Lu" | "Ll" | "Lt" | "Lm" | "Lo" => (STAND_IN_LETTER, "A-Za-z"),
        "P" => (STAND_IN_PUNCT, r"!-#%-*,-/:-;?-@\[-\]_\{\}"),
        "M" => (STAND_IN_MARK, ""),
        "S" => (STAND_IN_SYMBOL, r"\$\+<->\^`\|~"),
        _ => return None,
    };
    Some(format!("{stand_in}{ascii}"))
}

/// Rewrites a regex that uses `\p{…}` for collapsed text; `None` if it uses none.
fn collapse_regex(re: &str) -> Option<String> {
    if !re.contains("\\p{") {
        return None;
    }
    let mut out = String::with_capacity(re.len() * 2);
    let mut inside = false;
    let mut chars = re.char_indices().peekable();
    let mut escaped = false;
    while let Some((i, c)) = chars.next() {
        if escaped {
            escaped = false;
            if c == 'p' && re[i + 1..].starts_with('{') {
                let rest = &re[i + 2..];
                if let Some(end) = rest.find('}')
                    && let Some(body) = class_body(&rest[..end])
                {
                    if inside {
                        out.push_str(&body);
                    } else {
                        out.push('[');
                        out.push_str(&body);
                        out.push(']');
                    }
                    for _ in 0..end + 2 {
                        chars.next();
                    }
                    continue;
                }
            }
            out.push('\\');
            out.push(c);
            continue;
        }
        match c {
            '\\' => escaped = true,
            '[' if !inside => {
                inside = true;
                out.push(c);
            }
            ']' if inside => {
                inside = false;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    Some(out)
}

/// One split step.
#[derive(Debug)]
struct Split {
    regex: Regex,
    collapsed: bool,
}

/// The regex splits of one `tokenizer.ggml.pre`.
#[derive(Debug)]
pub struct PreTokenizer {
    splits: Vec<Split>,
}

const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const DEEPSEEK_LLM_LETTERS: &str = "\\s?[A-Za-z\u{B5}\u{C0}-\u{D6}\u{D8}-\u{F6}\u{F8}-\u{1BA}\u{1BC}-\u{1BF}\u{1C4}-\u{293}\u{295}-\u{2AF}\u{370}-\u{373}\u{376}\u{377}\u{37B}-\u{37D}\u{37F}\u{386}\u{388}-\u{38A}\u{38C}\u{38E}-\u{3A1}\u{3A3}-\u{3F5}\u{3F7}-\u{481}\u{48A}-\u{52F}\u{531}-\u{556}\u{10A0}-\u{10C5}\u{13A0}-\u{13F5}\u{13F8}-\u{13FD}\u{1C90}-\u{1CBA}\u{1CBD}-\u{1CBF}\u{1D00}-\u{1D2B}\u{1D6B}-\u{1D77}\u{1D79}-\u{1D9A}\u{1E00}-\u{1F15}\u{1F18}-\u{1F1D}\u{1F20}-\u{1F45}\u{1F48}-\u{1F4D}\u{1F50}-\u{1F57}\u{1F59}\u{1F5B}\u{1F5D}\u{1F5F}-\u{1F7D}\u{1F80}-\u{1FB4}\u{1FB6}-\u{1FBC}\u{1FBE}\u{1FC2}-\u{1FC4}\u{1FC6}-\u{1FCC}\u{1FD0}-\u{1FD3}\u{1FD6}-\u{1FDB}\u{1FE0}-\u{1FEC}\u{1FF2}-\u{1FF4}\u{1FF6}-\u{1FFC}\u{2102}\u{2107}\u{210A}-\u{2113}\u{2115}\u{2119}-\u{211D}\u{2124}\u{2126}\u{2128}\u{212A}-\u{212D}\u{212F}-\u{2134}\u{2139}\u{213C}-\u{213F}\u{2145}-\u{2149}\u{214E}\u{2183}\u{2184}\u{2C00}-\u{2C7B}\u{2C7E}-\u{2CE4}\u{2CEB}-\u{2CEE}\u{2CF2}\u{2CF3}\u{A640}-\u{A66D}\u{A680}-\u{A69B}\u{A722}-\u{A76F}\u{A771}-\u{A787}\u{A78B}-\u{A78E}\u{AB70}-\u{ABBF}\u{FB00}-\u{FB06}\u{FB13}-\u{FB17}\u{FF21}-\u{FF3A}\u{FF41}-\u{FF5A}\u{10400}-\u{1044F}\u{104B0}-\u{104D3}\u{104D8}-\u{104FB}\u{10C80}-\u{10CB2}\u{10CC0}-\u{10CF2}\u{118A0}-\u{118DF}\u{1E900}-\u{1E943}]+";

/// How a vocabulary's `tokenizer.ggml.pre` changes llama.cpp's tokenizer flags.
#[derive(Clone, Copy, Debug, Default)]
pub struct PreFlags {
    /// HF's `clean_up_tokenization_spaces` when detokenizing.
    pub clean_spaces: bool,
    /// Whole pre-tokenized words found in the vocabulary skip merging.
    pub ignore_merges: bool,
    /// Add BOS unless the file says otherwise.
    pub add_bos: bool,
}

/// The regexes and flags for a `tokenizer.ggml.pre` name, as llama.cpp reads them; `None` for a
/// name ggufy does not know.
fn pre_table(name: &str) -> Option<(Vec<&'static str>, PreFlags)> {
    let flags = |clean_spaces, ignore_merges, add_bos| PreFlags {
        clean_spaces,
        ignore_merges,
        add_bos,
    };
    let default_regexes = vec![r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", "[0-9][0-9][0-9]"];
    Some(match name {
        "default" => (default_regexes, flags(true, false, false)),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" => (vec![LLAMA3], flags(true, true, true)),
        "dbrx" | "smaug-bpe" => (vec![LLAMA3], flags(true, false, false)),
        "deepseek-llm" => (
            vec![
                "[\r\n]",
                DEEPSEEK_LLM_LETTERS,
                "\\s?[!-/:-~\u{FF01}-\u{FF0F}\u{FF1A}-\u{FF5E}\u{2018}-\u{201F}\u{3000}-\u{3002}]+",
                r"\s+$",
                "[\u{4E00}-\u{9FA5}\u{800}-\u{4E00}\u{AC00}-\u{D7FF}]+",
                r"\p{N}+",
            ],
            flags(false, false, false),
        ),
        "deepseek-v3" => (
            vec![
                r"\p{N}{1,3}",
                "[\u{4E00}-\u{9FA5}\u{3040}-\u{309F}\u{30A0}-\u{30FF}]+",
                r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##,
            ],
            flags(false, false, false),
        ),
        "deepseek-coder" => (
            vec![
                "[\r\n]",
                r"\s?\p{L}+",
                r"\s?\p{P}+",
                "[\u{4E00}-\u{9FA5}\u{800}-\u{4E00}\u{AC00}-\u{D7FF}]+",
                r"\p{N}",
            ],
            flags(false, false, false),
        ),
        "falcon" => (
            vec![r"[\p{P}\$\+<=>\^~\|`]+", GPT2, "[0-9][0-9][0-9]"],
            flags(true, false, false),
        ),
        "starcoder" | "refact" | "codeshell" | "exaone" | "minerva-7b" | "mellum2" => {
            (vec![r"\p{N}", GPT2], flags(true, false, false))
        }
        "command-r" | "smollm" => (vec![r"\p{N}", GPT2], flags(false, false, false)),
        "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de"
        | "a.x-4.0" | "mellum" | "modern-bert" | "mpt" | "olmo" | "jais" | "exaone4"
        | "jina-v1-en" | "jina-v2-code" | "roberta-bpe" => (vec![GPT2], flags(true, false, false)),
        "trillion" | "granite-docling" => (vec![GPT2], flags(false, false, false)),
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" => {
            (vec![QWEN2], flags(false, false, false))
        }
        "stablelm2" | "megrez" => (vec![QWEN2], flags(true, false, false)),
        "hunyuan" | "solar-open" => (vec![QWEN2], flags(false, false, false)),
        "poro-chat" => (
            vec![" ?[^(\\s|.,!?\u{2026}\u{3002}\u{FF0C}\u{3001}\u{964}\u{6D4}\u{60C})]+"],
            flags(false, false, false),
        ),
        "bloom" | "gpt3-finnish" => (
            vec![" ?[^(\\s|.,!?\u{2026}\u{3002}\u{FF0C}\u{3001}\u{964}\u{6D4}\u{60C})]+"],
            flags(true, false, false),
        ),
        "viking" => (
            vec![
                " ?[^(\\s|.,!?\u{2026}\u{3002}\u{FF0C}\u{3001}\u{964}\u{6D4}\u{60C})]+",
                "\\p{N}",
            ],
            flags(false, false, false),
        ),
        "chatglm-bpe" => (
            vec![
                r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
            ],
            flags(true, false, false),
        ),
        "qwen35" => (
            vec![
                r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
            ],
            flags(false, false, false),
        ),
        "tekken" => (
            vec![
                r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
            ],
            flags(false, true, true),
        ),
        "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => (
            vec![
                r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
            ],
            flags(false, false, false),
        ),
        "chameleon" => (
            vec![
                "<sentinel:[0-9]+>",
                "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
                "([\t\n]|    |  )",
                r"\p{N}",
                r"[\p{P}!-/:-@\[-`{-~]",
                GPT2,
            ],
            flags(false, false, true),
        ),
        _ => return None,
    })
}

/// Every `tokenizer.ggml.pre` name ggufy knows, for error messages.
pub const KNOWN_PRE: &[&str] = &[
    "default",
    "llama3",
    "llama-v3",
    "llama-bpe",
    "falcon3",
    "falcon-h1",
    "pixtral",
    "midm-2.0",
    "lfm2",
    "dbrx",
    "smaug-bpe",
    "deepseek-llm",
    "deepseek-v3",
    "deepseek-coder",
    "falcon",
    "starcoder",
    "refact",
    "codeshell",
    "exaone",
    "minerva-7b",
    "mellum2",
    "command-r",
    "smollm",
    "gpt-2",
    "phi-2",
    "jina-es",
    "jina-de",
    "gigachat",
    "jina-v2-es",
    "jina-v2-de",
    "a.x-4.0",
    "mellum",
    "modern-bert",
    "mpt",
    "olmo",
    "jais",
    "exaone4",
    "jina-v1-en",
    "jina-v2-code",
    "roberta-bpe",
    "trillion",
    "granite-docling",
    "qwen2",
    "deepseek-r1-qwen",
    "kormo",
    "f2llmv2",
    "stablelm2",
    "megrez",
    "hunyuan",
    "solar-open",
    "poro-chat",
    "bloom",
    "gpt3-finnish",
    "viking",
    "chatglm-bpe",
    "qwen35",
    "tekken",
    "gpt-4o",
    "llama4",
    "kanana2",
    "talkie",
    "minimax-m2",
    "chameleon",
];

impl PreTokenizer {
    /// The pre-tokenizer llama.cpp uses for `name`, with its flags; `None` if unknown.
    pub fn for_name(name: &str) -> Option<(PreTokenizer, PreFlags)> {
        let (regexes, flags) = pre_table(name)?;
        let splits = regexes
            .into_iter()
            .map(|re| {
                let (pattern, collapsed) = match collapse_regex(re) {
                    Some(p) => (p, true),
                    None => (re.to_owned(), false),
                };
                // The table is ours and tested; a pattern that fails to compile is a bug here.
                let regex = fancy_regex::RegexBuilder::new(&pattern)
                    .backtrack_limit(10_000_000)
                    .build()
                    .unwrap_or_else(|e| panic!("pre-tokenizer {name}: regex {pattern:?}: {e}"));
                Split { regex, collapsed }
            })
            .collect();
        Some((PreTokenizer { splits }, flags))
    }

    /// Splits `text` into words (byte ranges), applying every regex in turn.
    pub fn split(&self, text: &str) -> Vec<std::ops::Range<usize>> {
        // Code point boundaries of the text, as byte offsets (plus the end).
        let mut bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
        bounds.push(text.len());
        let chars: Vec<char> = text.chars().collect();
        let n = chars.len();
        // Pieces as code point ranges.
        let mut pieces: Vec<(usize, usize)> = if n == 0 { Vec::new() } else { vec![(0, n)] };
        let mut hay = String::new();
        let mut starts: Vec<usize> = Vec::new();
        for split in &self.splits {
            let mut next = Vec::with_capacity(pieces.len() * 2);
            for &(a, b) in &pieces {
                hay.clear();
                starts.clear();
                for &c in &chars[a..b] {
                    starts.push(hay.len());
                    let c = if split.collapsed {
                        stand_in(c)
                    } else if (c as u32) >= 0x80 && is_whitespace(c) {
                        '\u{B}'
                    } else {
                        c
                    };
                    hay.push(c);
                }
                starts.push(hay.len());
                let cp = |byte: usize| starts.partition_point(|&s| s < byte);
                let mut prev = 0usize;
                for m in split.regex.find_iter(&hay) {
                    // A pathological input can exhaust the backtracking budget: keep the rest of
                    // the piece whole rather than fail.
                    let Ok(m) = m else { break };
                    if m.start() == m.end() {
                        continue;
                    }
                    let (s, e) = (cp(m.start()), cp(m.end()));
                    if s > prev {
                        next.push((a + prev, a + s));
                    }
                    next.push((a + s, a + e));
                    prev = e;
                }
                if prev < b - a {
                    next.push((a + prev, b));
                }
            }
            pieces = next;
        }
        pieces
            .into_iter()
            .map(|(a, b)| bounds[a]..bounds[b])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words<'a>(pre: &str, text: &'a str) -> Vec<&'a str> {
        let (p, _) = PreTokenizer::for_name(pre).unwrap();
        p.split(text).into_iter().map(|r| &text[r]).collect()
    }

    #[test]
    fn every_known_name_compiles() {
        for name in KNOWN_PRE {
            assert!(PreTokenizer::for_name(name).is_some(), "{name}");
        }
        assert!(PreTokenizer::for_name("no-such").is_none());
    }

    #[test]
    fn collapsing_rewrites_classes() {
        assert_eq!(
            collapse_regex(r"[^\s\p{L}]?\p{N}").unwrap(),
            "[^\\s\u{E0D2}A-Za-z]?[\u{E0D1}0-9]"
        );
        assert_eq!(collapse_regex("[0-9]"), None);
    }

    #[test]
    fn llama3_splits() {
        assert_eq!(
            words("llama-bpe", "Hello world's 12345  x\n\n"),
            ["Hello", " world", "'s", " ", "123", "45", " ", " x", "\n\n"]
        );
        assert_eq!(
            words("gpt-2", "h\u{E9}llo  w\u{F6}rld"),
            ["h\u{E9}llo", " ", " w\u{F6}rld"]
        );
    }
}
