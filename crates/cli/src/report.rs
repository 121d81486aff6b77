//! Rendering helpers shared by commands: sizes, metadata values as text and as JSON.

use ggufy_gguf::{ArrayView, Value};
use serde_json::{Value as Json, json};

/// Bytes in binary units, e.g. `2.5 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A count with thousands separators, e.g. `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A string for display: quoted, escaped, cut to `max` characters.
pub fn quote(bytes: &[u8], max: usize) -> String {
    let s = String::from_utf8_lossy(bytes);
    let mut q = String::new();
    for c in s.chars().take(max) {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            '\t' => q.push_str("\\t"),
            '\r' => q.push_str("\\r"),
            c if c.is_control() => q.push_str(&c.escape_unicode().to_string()),
            c => q.push(c),
        }
    }
    if s.chars().count() > max {
        q.push('…');
    }
    format!("\"{q}\"")
}

fn float_text<F: std::fmt::Display + Into<f64> + Copy>(v: F) -> String {
    let x: f64 = v.into();
    if x.is_finite() {
        // Shortest text that reads back as the same value of the stored width.
        format!("{v}")
    } else if x.is_nan() {
        "NaN".into()
    } else if x > 0.0 {
        "inf".into()
    } else {
        "-inf".into()
    }
}

/// A scalar or (shortened) array as one line of text.
pub fn value_text(v: &Value<'_>, array_limit: usize) -> String {
    match *v {
        Value::String(s) => quote(s, 120),
        Value::Array(a) => array_text(&a, array_limit),
        Value::F32(x) => float_text(x),
        Value::F64(x) => float_text(x),
        Value::Bool(b) => b.to_string(),
        _ => v
            .as_i64()
            .map(|i| i.to_string())
            .or(v.as_u64().map(|u| u.to_string()))
            .unwrap_or_default(),
    }
}

fn array_text(a: &ArrayView<'_>, limit: usize) -> String {
    let mut parts: Vec<String> = a
        .iter()
        .take(limit)
        .map(|e| match e {
            Value::String(s) => quote(s, 40),
            other => value_text(&other, limit.min(4)),
        })
        .collect();
    if a.len() > limit as u64 {
        parts.push(format!("… +{} more", a.len() - limit as u64));
    }
    format!("[{}]", parts.join(", "))
}

/// The value's type as shown to users: `UINT32`, or `[STRING; 32000]` for arrays.
pub fn type_text(v: &Value<'_>) -> String {
    match v {
        Value::Array(a) => format!("[{}; {}]", a.elem_type().name(), a.len()),
        other => other.value_type().name().to_owned(),
    }
}

fn float_json(x: f64) -> Json {
    if x.is_finite() {
        json!(x)
    } else {
        json!(float_text(x))
    }
}

/// A value as JSON. f32 values are printed as the exact double they equal (what gguf-py's
/// `contents()` gives); non-finite floats as the strings "NaN", "inf", "-inf".
pub fn value_json(v: &Value<'_>, array_limit: Option<usize>) -> Json {
    match *v {
        Value::String(s) => json!(String::from_utf8_lossy(s)),
        Value::F32(x) => float_json(x.into()),
        Value::F64(x) => float_json(x),
        Value::Bool(b) => json!(b),
        Value::Array(a) => {
            let limit = array_limit.unwrap_or(usize::MAX);
            Json::Array(
                a.iter()
                    .take(limit)
                    .map(|e| value_json(&e, array_limit))
                    .collect(),
            )
        }
        Value::U64(u) => json!(u),
        _ => json!(v.as_i64().unwrap_or_default()),
    }
}

/// llama.cpp's name for a `general.file_type` value (include/llama.h), if it has one.
pub fn file_type_name(id: u64) -> Option<&'static str> {
    Some(match id {
        0 => "ALL_F32",
        1 => "MOSTLY_F16",
        2 => "MOSTLY_Q4_0",
        3 => "MOSTLY_Q4_1",
        7 => "MOSTLY_Q8_0",
        8 => "MOSTLY_Q5_0",
        9 => "MOSTLY_Q5_1",
        10 => "MOSTLY_Q2_K",
        11 => "MOSTLY_Q3_K_S",
        12 => "MOSTLY_Q3_K_M",
        13 => "MOSTLY_Q3_K_L",
        14 => "MOSTLY_Q4_K_S",
        15 => "MOSTLY_Q4_K_M",
        16 => "MOSTLY_Q5_K_S",
        17 => "MOSTLY_Q5_K_M",
        18 => "MOSTLY_Q6_K",
        19 => "MOSTLY_IQ2_XXS",
        20 => "MOSTLY_IQ2_XS",
        21 => "MOSTLY_Q2_K_S",
        22 => "MOSTLY_IQ3_XS",
        23 => "MOSTLY_IQ3_XXS",
        24 => "MOSTLY_IQ1_S",
        25 => "MOSTLY_IQ4_NL",
        26 => "MOSTLY_IQ3_S",
        27 => "MOSTLY_IQ3_M",
        28 => "MOSTLY_IQ2_S",
        29 => "MOSTLY_IQ2_M",
        30 => "MOSTLY_IQ4_XS",
        31 => "MOSTLY_IQ1_M",
        32 => "MOSTLY_BF16",
        36 => "MOSTLY_TQ1_0",
        37 => "MOSTLY_TQ2_0",
        38 => "MOSTLY_MXFP4_MOE",
        _ => return None,
    })
}

/// A tensor-count progress bar on stderr, only when it is a terminal and not `--quiet`.
pub fn progress_bar(len: u64, quiet: bool) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    (!quiet && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(len);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} tensors {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    })
}

/// The process's peak resident set so far (Linux's VmHWM), for the JSON summaries: users size
/// CI runners and containers by it. `None` where the OS does not say.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_sizes_and_counts() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(2_621_440), "2.5 MiB");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(12), "12");
        assert_eq!(quote(b"a\nb", 10), "\"a\\nb\"");
        assert_eq!(quote(b"abcdef", 3), "\"abc\u{2026}\"");
        assert_eq!(quote(b"m['x']", 10), "\"m['x']\"");
        assert_eq!(value_text(&Value::F32(1e-5), 8), "0.00001");
    }
}
