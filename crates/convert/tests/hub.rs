//! Hub downloads against a stand-in for huggingface.co on 127.0.0.1 (never the real hub): only
//! the files a conversion needs, the token sent, interrupted downloads resumed, and offline
//! mode served from the cache alone.
#![cfg(feature = "hub")]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use ggufy_convert::hub::{HubId, HubOptions, fetch};
use sha2::{Digest, Sha256};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

#[derive(Default)]
struct Log {
    requests: Vec<(String, Option<String>)>,
    /// Files whose first download is cut short, to exercise resuming.
    cut_once: Vec<String>,
}

/// Serves `files` as repo `org/tiny` at revision main; returns the endpoint URL.
fn serve(files: BTreeMap<String, Vec<u8>>, log: Arc<Mutex<Log>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
            let (mut range, mut auth, mut probe) = (None, None, false);
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                let lower = h.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("range: bytes=") {
                    // hf-hub probes metadata with bytes=0-0, then downloads bytes=N-.
                    probe = v.trim() == "0-0";
                    range = v
                        .trim()
                        .split('-')
                        .next()
                        .and_then(|s| s.parse::<usize>().ok());
                }
                if lower.starts_with("authorization:") {
                    auth = Some(h["authorization:".len()..].trim().to_owned());
                }
            }
            log.lock().unwrap().requests.push((path.clone(), auth));
            let reply = |stream: &mut std::net::TcpStream,
                         status: &str,
                         headers: &str,
                         body: &[u8]| {
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(body);
            };
            if path.starts_with("/api/models/org/tiny/revision/main") {
                let siblings: Vec<_> = files
                    .keys()
                    .map(|f| serde_json::json!({"rfilename": f}))
                    .collect();
                let body = serde_json::json!({"sha": COMMIT, "siblings": siblings}).to_string();
                reply(
                    &mut stream,
                    "200 OK",
                    "Content-Type: application/json\r\n",
                    body.as_bytes(),
                );
                continue;
            }
            let Some(name) = path.strip_prefix("/org/tiny/resolve/main/") else {
                reply(&mut stream, "404 Not Found", "", b"");
                continue;
            };
            let Some(data) = files.get(name) else {
                reply(&mut stream, "404 Not Found", "", b"");
                continue;
            };
            let start = range.unwrap_or(0).min(data.len());
            let etag: String = Sha256::digest(data)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let end = data.len().saturating_sub(1);
            let headers = format!(
                "ETag: \"{etag}\"\r\nX-Repo-Commit: {COMMIT}\r\nContent-Range: bytes {start}-{}/{}\r\n",
                if probe { 0 } else { end },
                data.len()
            );
            let body: &[u8] = if probe { &data[..1] } else { &data[start..] };
            let cut = !probe && start == 0 && {
                let mut l = log.lock().unwrap();
                let hit = l.cut_once.iter().position(|c| c == name);
                hit.map(|i| l.cut_once.remove(i)).is_some()
            };
            if cut {
                // Promise the whole body, send half, hang up: the client must resume.
                let head = format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body[..body.len() / 2]);
                continue;
            }
            reply(&mut stream, "206 Partial Content", &headers, body);
        }
    });
    format!("http://{addr}")
}

fn repo_files() -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    files.insert(
        "config.json".into(),
        br#"{"architectures": ["LlamaForCausalLM"]}"#.to_vec(),
    );
    files.insert("tokenizer.json".into(), b"{}".to_vec());
    files.insert("tokenizer_config.json".into(), b"{}".to_vec());
    let weight_map = serde_json::json!({"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}});
    files.insert(
        "model.safetensors.index.json".into(),
        weight_map.to_string().into_bytes(),
    );
    files.insert(
        "model-00001-of-00002.safetensors".into(),
        (0..200_000u32).map(|i| i as u8).collect(),
    );
    files.insert("model-00002-of-00002.safetensors".into(), vec![7u8; 1000]);
    // Never needed: pickles, other formats, a README.
    files.insert("pytorch_model.bin".into(), vec![0u8; 100]);
    files.insert("README.md".into(), b"# tiny".to_vec());
    files.insert("onnx/model.onnx".into(), vec![1u8; 10]);
    files
}

#[test]
fn fetches_only_what_conversion_needs_with_the_token() {
    let files = repo_files();
    let log = Arc::new(Mutex::new(Log::default()));
    log.lock()
        .unwrap()
        .cut_once
        .push("model-00001-of-00002.safetensors".into());
    let endpoint = serve(files.clone(), log.clone());
    let cache = tempfile::tempdir().unwrap();
    let opts = HubOptions {
        endpoint: Some(endpoint),
        cache_dir: Some(cache.path().to_owned()),
        token: Some("hf_test_token".into()),
        offline: false,
        retries: 3,
    };
    let id = HubId::parse("org/tiny").unwrap();
    let mut seen = Vec::new();
    let dir = fetch(&id, &opts, &mut |f| seen.push(f.to_owned())).unwrap();
    for name in [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "model.safetensors.index.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ] {
        assert_eq!(
            std::fs::read(dir.join(name)).unwrap(),
            files[name],
            "{name}"
        );
    }
    for name in ["pytorch_model.bin", "README.md", "onnx/model.onnx"] {
        assert!(!dir.join(name).exists(), "{name} should not be downloaded");
    }
    let l = log.lock().unwrap();
    assert!(
        l.requests
            .iter()
            .all(|(_, a)| a.as_deref() == Some("Bearer hf_test_token")),
        "{:?}",
        l.requests
    );
    assert!(
        l.cut_once.is_empty(),
        "the interrupted download was not retried"
    );
    assert!(
        !l.requests
            .iter()
            .any(|(p, _)| p.contains("pytorch_model.bin"))
    );
    drop(l);

    // Offline: the cache alone serves it, with no request made.
    let before = log.lock().unwrap().requests.len();
    let offline = HubOptions {
        offline: true,
        endpoint: Some("http://127.0.0.1:9".into()),
        ..opts.clone()
    };
    let again = fetch(&id, &offline, &mut |_| {}).unwrap();
    assert_eq!(again, dir);
    assert_eq!(log.lock().unwrap().requests.len(), before);

    // Offline with an empty cache: a clear error.
    let empty = tempfile::tempdir().unwrap();
    let none = HubOptions {
        cache_dir: Some(empty.path().to_owned()),
        ..offline
    };
    let e = fetch(&id, &none, &mut |_| {}).unwrap_err().to_string();
    assert!(
        e.contains("hf://org/tiny@main") && e.contains("offline"),
        "{e}"
    );
}

#[test]
fn hub_ids_are_recognised_and_paths_are_not() {
    assert_eq!(HubId::parse("Qwen/Qwen2.5-0.5B").unwrap().revision, "main");
    let id = HubId::parse("meta-llama/Llama-3.2-1B@v1.0").unwrap();
    assert_eq!(
        (id.repo.as_str(), id.revision.as_str()),
        ("meta-llama/Llama-3.2-1B", "v1.0")
    );
    for bad in [
        "./model",
        "/abs/path",
        "a/b/c",
        "../x",
        "org/",
        "org/name@",
        "https://huggingface.co/x/y",
    ] {
        assert!(HubId::parse(bad).is_none(), "{bad}");
    }
}

#[test]
fn missing_repositories_and_shards_fail_clearly() {
    let mut files = repo_files();
    files.remove("model-00002-of-00002.safetensors");
    let log = Arc::new(Mutex::new(Log::default()));
    let endpoint = serve(files, log);
    let cache = tempfile::tempdir().unwrap();
    let opts = HubOptions {
        endpoint: Some(endpoint),
        cache_dir: Some(cache.path().to_owned()),
        retries: 0,
        ..HubOptions::default()
    };
    let e = fetch(&HubId::parse("org/tiny").unwrap(), &opts, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("model-00002-of-00002.safetensors"), "{e}");
    let e = fetch(&HubId::parse("org/absent").unwrap(), &opts, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("hf://org/absent@main") && e.contains("cannot list"),
        "{e}"
    );
}
