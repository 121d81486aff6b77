//! Faults during `ggufy convert` and `ggufy quantize`: killed with SIGKILL, a full disk, a file
//! size limit, a read-only directory, the output named as an input, an input truncated or
//! rewritten while it is read. Each must end in a clean result or a clear error with exit code 1,
//! never a file at the output path that is not a complete model, and never a changed input.
//!
//! The full-disk and read-only cases mount a small tmpfs inside a private mount namespace
//! (`unshare -r -m`, no root needed where user namespaces are allowed). Where that is not possible
//! they say so on stderr and pass, unless `GGUFY_REQUIRE_MOUNT_TESTS=1` (CI sets it) makes that a
//! failure. Peak memory is checked here too, on a model much larger than its largest tensor.

mod common;

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{big_model, ggufy, ggufy_cmd, names_in, partials, stderr};

/// A cheap fingerprint of a file's whole content (FNV-1a over every byte).
fn fingerprint(path: &Path) -> (u64, u64) {
    let bytes = std::fs::read(path).unwrap();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in &bytes {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    (bytes.len() as u64, h)
}

/// The arguments of the two jobs under test, writing `out`; slow enough (one thread, a ~100 MB
/// model) that a fault can land in the middle.
fn job_args(job: &str, out: &Path) -> Vec<String> {
    let m = big_model();
    let out = out.to_str().unwrap().to_string();
    let v: Vec<&str> = match job {
        "convert" => vec![
            "convert",
            m.checkpoint.to_str().unwrap(),
            "--outtype",
            "q8_0",
            "-t",
            "1",
            "-q",
            "-o",
        ],
        "quantize" => vec!["quantize", m.f16.to_str().unwrap(), "q6_k", "-t", "1", "-q"],
        _ => unreachable!(),
    };
    let mut v: Vec<String> = v.into_iter().map(String::from).collect();
    if job == "convert" {
        v.push(out);
    } else {
        v.insert(2, out);
    }
    v
}

fn input_of(job: &str) -> PathBuf {
    let m = big_model();
    match job {
        "convert" => m.checkpoint.join("model.safetensors"),
        _ => m.f16.clone(),
    }
}

/// Starts ggufy with `args` and waits until a temporary output of more than 1 MiB exists in
/// `dir`, i.e. the job is in the middle of writing. `Err(child)` with the finished child if the
/// job ended first (it was faster than the poll).
fn spawn_and_wait_for_partial(args: &[String], dir: &Path) -> Result<Child, Child> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = ggufy_cmd(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let growing = partials(dir)
            .iter()
            .any(|p| std::fs::metadata(dir.join(p)).is_ok_and(|m| m.len() > 1 << 20));
        if growing {
            return Ok(child);
        }
        if child.try_wait().unwrap().is_some() {
            return Err(child);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("{args:?} never started writing into {}", dir.display());
}

/// Starts `job` writing `out` and waits until it is in the middle of writing.
fn start_and_wait_for_partial(job: &str, out: &Path) -> Option<Child> {
    spawn_and_wait_for_partial(&job_args(job, out), out.parent().unwrap()).ok()
}

#[test]
fn sigkill_mid_job_leaves_nothing_at_the_output_path_and_the_input_intact() {
    for job in ["convert", "quantize"] {
        let input = input_of(job);
        let before = fingerprint(&input);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.gguf");
        let mut child = start_and_wait_for_partial(job, &out).expect("job ended before the kill");
        child.kill().unwrap(); // SIGKILL on Unix
        let status = child.wait().unwrap();
        assert!(!status.success(), "{job}");
        assert!(!out.exists(), "{job}: a killed job left {}", out.display());
        // What a SIGKILL leaves is the hidden temporary file, never the output name.
        assert!(
            names_in(dir.path()).iter().all(|n| n.ends_with(".partial")),
            "{job}: {:?}",
            names_in(dir.path())
        );
        assert_eq!(fingerprint(&input), before, "{job} changed its input");
        // A rerun is not confused by the leftover and produces the file.
        let args = job_args(job, &out);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = ggufy(&args);
        assert!(o.status.success(), "{job} rerun: {}", stderr(&o));
        assert!(ggufy(&["inspect", out.to_str().unwrap()]).status.success());
    }
}

/// Runs `sh -c script` in a private mount namespace with a tmpfs mounted (options `opts`) on a
/// fresh directory passed as `$1`; `None` (after saying why) when mounts are not possible here.
fn in_tmpfs(opts: &str, script: &str) -> Option<Output> {
    let probe = Command::new("unshare")
        .args(["-r", "-m", "sh", "-c", "mount -t tmpfs tmpfs /mnt"])
        .output();
    let usable = matches!(&probe, Ok(o) if o.status.success());
    if !usable {
        let why = match &probe {
            Ok(o) => stderr(o),
            Err(e) => e.to_string(),
        };
        assert!(
            std::env::var_os("GGUFY_REQUIRE_MOUNT_TESTS").is_none(),
            "cannot mount a tmpfs in a user namespace: {why}"
        );
        eprintln!(
            "SKIPPED: cannot mount a tmpfs here ({}); set up user namespaces to run this",
            why.trim()
        );
        return None;
    }
    let mnt = tempfile::tempdir().unwrap();
    let full = format!("mount -t tmpfs -o {opts} tmpfs \"$1\" && {script}");
    Some(
        Command::new("unshare")
            .args(["-r", "-m", "sh", "-c", &full, "sh"])
            .arg(mnt.path())
            .env("GGUFY", env!("CARGO_BIN_EXE_ggufy"))
            .output()
            .unwrap(),
    )
}

/// Shell words for `job` writing to `$1/out.gguf`.
fn job_shell(job: &str) -> String {
    job_args(job, Path::new("/OUT/out.gguf"))
        .iter()
        .map(|a| {
            if a == "/OUT/out.gguf" {
                "\"$1/out.gguf\"".to_string()
            } else {
                format!("'{a}'")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn a_full_disk_is_a_clear_error_and_leaves_no_file() {
    for job in ["convert", "quantize"] {
        let input = input_of(job);
        let before = fingerprint(&input);
        // 8 MiB: the header fits, the tensors (tens of MB) do not.
        let script = format!(
            "\"$GGUFY\" {} ; rc=$?; echo \"left:$(ls -A \"$1\")\"; exit $rc",
            job_shell(job)
        );
        let Some(o) = in_tmpfs("size=8m", &script) else {
            return;
        };
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{job}: {err}");
        assert!(err.contains("No space left on device"), "{job}: {err}");
        assert_eq!(
            err.lines().count(),
            1,
            "{job}: one line, not a trace: {err}"
        );
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            stdout.contains("left:\n") || stdout.trim_end().ends_with("left:"),
            "{job}: {stdout}"
        );
        assert_eq!(fingerprint(&input), before, "{job} changed its input");
    }
}

#[test]
fn a_file_size_limit_is_a_clear_error_and_leaves_no_file() {
    // The same failure path as a full disk (write(2) fails), reachable without mounts: the shell's
    // `ulimit -f` (in 512-byte blocks), with SIGXFSZ ignored so the write returns EFBIG instead.
    for job in ["convert", "quantize"] {
        let dir = tempfile::tempdir().unwrap();
        let script = format!(
            "ulimit -f 16384; trap '' XFSZ; exec \"$GGUFY\" {}",
            job_shell(job)
        );
        let o = Command::new("sh")
            .args(["-c", &script, "sh"])
            .arg(dir.path())
            .env("GGUFY", env!("CARGO_BIN_EXE_ggufy"))
            .output()
            .unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{job}: {err}");
        assert!(err.contains("File too large"), "{job}: {err}");
        assert!(
            names_in(dir.path()).is_empty(),
            "{job}: {:?}",
            names_in(dir.path())
        );
    }
}

#[test]
fn a_read_only_output_directory_is_a_clear_error() {
    for job in ["convert", "quantize"] {
        let script = format!("\"$GGUFY\" {}", job_shell(job));
        let Some(o) = in_tmpfs("ro", &script) else {
            return;
        };
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{job}: {err}");
        assert!(err.contains("Read-only file system"), "{job}: {err}");
        assert_eq!(err.lines().count(), 1, "{job}: {err}");
    }
}

#[test]
fn an_output_that_is_an_input_is_refused_even_with_force() {
    let m = big_model();
    // quantize: the output is the input through a symbolic link.
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("link.gguf");
    std::os::unix::fs::symlink(&m.f16, &link).unwrap();
    let before = fingerprint(&m.f16);
    let o = ggufy(&[
        "quantize",
        m.f16.to_str().unwrap(),
        link.to_str().unwrap(),
        "q8_0",
        "--force",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("same file as input"), "{}", stderr(&o));
    assert_eq!(fingerprint(&m.f16), before);
    // convert: the output is one of the checkpoint's own shards.
    let shard = m.checkpoint.join("model.safetensors");
    let before = fingerprint(&shard);
    let o = ggufy(&[
        "convert",
        m.checkpoint.to_str().unwrap(),
        "-o",
        shard.to_str().unwrap(),
        "--force",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("same file as input"), "{}", stderr(&o));
    assert_eq!(fingerprint(&shard), before);
    assert!(partials(&m.checkpoint).is_empty());
}

/// A private copy of `job`'s input that the test may damage, and the job's arguments with it.
fn damageable_copy(job: &str, dir: &Path) -> (PathBuf, Vec<String>) {
    let out = dir.join("out.gguf");
    let mut args = job_args(job, &out);
    let src = input_of(job);
    let copy = match job {
        "convert" => {
            let d = dir.join("ckpt");
            std::fs::create_dir(&d).unwrap();
            for e in std::fs::read_dir(src.parent().unwrap()).unwrap() {
                let p = e.unwrap().path();
                std::fs::copy(&p, d.join(p.file_name().unwrap())).unwrap();
            }
            args[1] = d.to_str().unwrap().to_string();
            d.join("model.safetensors")
        }
        _ => {
            let c = dir.join("in.gguf");
            std::fs::copy(&src, &c).unwrap();
            args[1] = c.to_str().unwrap().to_string();
            c
        }
    };
    (copy, args)
}

/// Runs the job on a private copy of its input and applies `damage` to the input once the job
/// is writing; returns the job's result and the output directory. The job may also win the race
/// and finish first, which proves nothing: then it is run again (a few times at most).
fn damage_mid_job(job: &str, damage: fn(&Path)) -> (Output, tempfile::TempDir) {
    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let (input, args) = damageable_copy(job, dir.path());
        if let Ok(child) = spawn_and_wait_for_partial(&args, dir.path()) {
            damage(&input);
            return (child.wait_with_output().unwrap(), dir);
        }
    }
    panic!("{job} finished before its input could be damaged, three times");
}

#[test]
fn an_input_truncated_mid_job_is_a_clear_error_not_a_crash() {
    for job in ["convert", "quantize"] {
        let (o, dir) = damage_mid_job(job, |p| {
            let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
            f.set_len(4096).unwrap();
        });
        let err = stderr(&o);
        // Either the mapped read hit a vanished page (SIGBUS, reported by the handler) or the
        // job read only what was still there and the final check saw the new size.
        assert_eq!(o.status.code(), Some(1), "{job}: {err}");
        assert!(
            err.contains("truncated") || err.contains("changed while it was being read"),
            "{job}: {err}"
        );
        assert!(!dir.path().join("out.gguf").exists(), "{job}");
    }
}

#[test]
fn an_input_rewritten_mid_job_discards_the_output() {
    for job in ["convert", "quantize"] {
        let (o, dir) = damage_mid_job(job, |p| {
            // Same size, different bytes near the end (a tensor the job has not read yet).
            let mut f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
            let len = f.metadata().unwrap().len();
            f.seek(SeekFrom::Start(len - 4096)).unwrap();
            f.write_all(&[0x3c; 4096]).unwrap();
            f.sync_all().unwrap();
        });
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{job}: {err}");
        assert!(
            err.contains("changed while it was being read"),
            "{job}: {err}"
        );
        assert!(!dir.path().join("out.gguf").exists(), "{job}");
        assert!(
            partials(dir.path()).is_empty(),
            "{job}: {:?}",
            names_in(dir.path())
        );
    }
}

#[test]
fn peak_memory_is_about_a_tensor_not_the_model() {
    // The model is ~100 MB; its largest tensor is 5.8 MB (bf16) / 11.5 MB (F16 → F32 rows).
    // Without releasing consumed input pages, the mapped model counts fully in the resident set.
    let m = big_model();
    let model_bytes = std::fs::metadata(&m.f16).unwrap().len();
    let dir = tempfile::tempdir().unwrap();
    for job in ["convert", "quantize"] {
        let out = dir.path().join(format!("{job}.gguf"));
        let mut args = job_args(job, &out);
        args.retain(|a| a != "-q");
        args.push("--json".into());
        args.push("--quiet".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = ggufy(&args);
        assert!(o.status.success(), "{job}: {}", stderr(&o));
        let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let Some(peak) = doc["peak_rss_bytes"].as_u64() else {
            eprintln!("SKIPPED: this OS does not report peak RSS");
            return;
        };
        eprintln!(
            "{job}: peak RSS {} MB for a {} MB model",
            peak >> 20,
            model_bytes >> 20
        );
        assert!(
            peak < 48 << 20,
            "{job}: peak RSS {} MB for a {} MB model",
            peak >> 20,
            model_bytes >> 20
        );
    }
}
