//! Says what a file that is not GGUF most likely is, so users fix the real problem (a Git LFS
//! pointer, a saved error page, an interrupted download) instead of chasing "bad magic".

/// Describes bytes that do not start with the GGUF magic.
pub fn diagnose_non_gguf(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "the file is empty (0 bytes): an interrupted download or write?".into();
    }
    let head = &bytes[..bytes.len().min(512)];
    let text = String::from_utf8_lossy(head);
    let trimmed = text.trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n']);
    let lower = trimmed.to_ascii_lowercase();

    if trimmed.starts_with("version https://git-lfs") {
        let field = |name: &str| {
            trimmed
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_owned())
        };
        let mut msg = String::from(
            "this is a Git LFS pointer file, not the model: run `git lfs pull` (or download the file itself)",
        );
        if let Some(size) = field("size ") {
            msg.push_str(&format!("; the real file is {size} bytes"));
        }
        if let Some(oid) = field("oid ") {
            msg.push_str(&format!(" ({oid})"));
        }
        return msg;
    }
    if lower.starts_with("<!doctype") || lower.starts_with("<html") || lower.starts_with("<?xml") {
        let title = lower
            .find("<title>")
            .and_then(|i| {
                let rest = &trimmed[i + 7..];
                rest.find('<').map(|j| rest[..j].trim().to_owned())
            })
            .filter(|t| !t.is_empty());
        return match title {
            Some(t) => format!(
                "this is an HTML page (\"{t}\"), not a model: the download probably hit a login, gated-repo or error page"
            ),
            None => "this is an HTML page, not a model: the download probably hit a login, gated-repo or error page".into(),
        };
    }
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let snippet: String = trimmed.chars().take(120).collect();
        return format!(
            "this is JSON text, not a model (an API error saved as the file?): {}",
            snippet.replace('\n', " ")
        );
    }
    if bytes.len() >= 8 {
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default());
        if bytes.get(8) == Some(&b'{') && n > 1 && n < 100_000_000 {
            return "this is a safetensors file, not GGUF: convert it with `ggufy convert`".into();
        }
    }
    if head.iter().all(|&b| b == 0) {
        return format!(
            "the first {} bytes are all zero: an interrupted write or a preallocated, never-filled file",
            head.len()
        );
    }
    let magic = &bytes[..bytes.len().min(4)];
    let legacy = match magic {
        b"lmgg" => Some("unversioned GGML ('ggml')"),
        b"fmgg" => Some("GGMF"),
        b"tjgg" => Some("GGJT"),
        b"algg" => Some("GGLA (a legacy LoRA adapter)"),
        _ => None,
    };
    if let Some(kind) = legacy {
        return format!(
            "this is the legacy {kind} format from before GGUF (2023); re-convert the original checkpoint"
        );
    }
    if magic == b"FUGG" {
        return "the magic reads 'FUGG': a GGUF header written with its magic byte-swapped".into();
    }
    if magic == b"PK\x03\x04" {
        return "this is a ZIP archive (a PyTorch .bin/.pt checkpoint?), not GGUF".into();
    }
    if magic.len() < 4 {
        return format!(
            "the file is only {} bytes; a GGUF file starts with the 4-byte magic 'GGUF'",
            bytes.len()
        );
    }
    format!(
        "bad magic {:02x?} (\"{}\"); a GGUF file starts with 'GGUF'",
        magic,
        magic
            .iter()
            .map(|&b| if b.is_ascii_graphic() { b as char } else { '.' })
            .collect::<String>()
    )
}

#[cfg(test)]
mod tests {
    use super::diagnose_non_gguf as d;

    #[test]
    fn recognises_common_impostors() {
        assert!(
            d(b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 123\n")
                .contains("Git LFS")
        );
        assert!(
            d(b"<!DOCTYPE html><html><head><title>401 Unauthorized</title>")
                .contains("401 Unauthorized")
        );
        assert!(d(b"{\"error\":\"Access to model is restricted\"}").contains("JSON"));
        assert!(d(&[0u8; 100]).contains("all zero"));
        assert!(d(b"tjgg\x01\x00\x00\x00").contains("GGJT"));
        assert!(d(b"lmgg....").contains("legacy"));
        assert!(d(b"").contains("empty"));
        assert!(d(b"GG").contains("only 2 bytes"));
        assert!(d(b"XXXX1234").contains("bad magic"));
        let mut st = 20u64.to_le_bytes().to_vec();
        st.extend_from_slice(b"{\"a\":{}}            ");
        assert!(d(&st).contains("safetensors"));
    }
}
