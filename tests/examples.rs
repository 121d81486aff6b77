//! The shipped examples run: the Dockerfile's `example` stage and the GitHub Actions workflow in
//! `examples/`. Docker and Actions are not available where the tests run, so this file executes
//! their steps itself — the Dockerfile's WORKDIR/COPY/ENV/RUN instructions and the workflow's
//! `run:` steps — with the ggufy binary this build made standing in for the installed one.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{fixtures, ggufy};

fn repo() -> PathBuf {
    fixtures().join("..")
}

/// `PATH` with this build's ggufy first.
fn path_with_ggufy() -> String {
    let bin = Path::new(env!("CARGO_BIN_EXE_ggufy")).parent().unwrap();
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// A Dockerfile as (stage name, [(instruction, arguments)]), continuation lines joined.
fn dockerfile_stages(text: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut logical = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if cur.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            cur.push_str(head);
            cur.push(' ');
        } else {
            cur.push_str(t);
            logical.push(std::mem::take(&mut cur));
        }
    }
    let mut stages: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for l in logical {
        let (ins, args) = l.split_once(' ').unwrap_or((&l, ""));
        let (ins, args) = (ins.to_uppercase(), args.trim().to_string());
        if ins == "FROM" {
            let name = args.rsplit(" AS ").next().unwrap_or("").trim().to_string();
            stages.push((name, Vec::new()));
        } else {
            stages
                .last_mut()
                .expect("instruction before FROM")
                .1
                .push((ins, args));
        }
    }
    stages
}

#[test]
fn the_dockerfile_example_stage_runs() {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let stages = dockerfile_stages(&text);
    let names: Vec<&str> = stages.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["build", "example", "runtime"]);
    // The build stage builds with the script .ci/run checks, and installs where the others copy from.
    let build = &stages[0].1;
    assert!(
        build.iter().any(|(i, a)| i == "RUN"
            && a.contains("scripts/build-static.sh")
            && a.contains("/usr/local/bin/ggufy")),
        "{build:?}"
    );
    for (_, steps) in &stages[1..] {
        assert!(
            steps
                .iter()
                .any(|(i, a)| i == "COPY" && a.starts_with("--from=build /usr/local/bin/ggufy ")),
            "{steps:?}"
        );
    }
    // Run the example stage in a scratch root.
    let root = tempfile::tempdir().unwrap();
    let mut cwd = root.path().to_path_buf();
    let mut env: Vec<(String, String)> = Vec::new();
    let mut ran = 0;
    for (ins, args) in &stages[1].1 {
        match ins.as_str() {
            "WORKDIR" => {
                cwd = root.path().join(args.trim_start_matches('/'));
                std::fs::create_dir_all(&cwd).unwrap();
            }
            "ENV" => {
                let (k, v) = args.split_once('=').unwrap();
                env.push((k.into(), v.into()));
            }
            "COPY" if args.starts_with("--from=") => {} // the binary: this build's stands in
            "COPY" => {
                let (src, dest) = args.split_once(' ').unwrap();
                let src = repo().join(src);
                let dest_path = cwd.join(dest.trim());
                if src.is_dir() {
                    std::fs::create_dir_all(&dest_path).unwrap();
                    for e in std::fs::read_dir(&src).unwrap() {
                        let p = e.unwrap().path();
                        std::fs::copy(&p, dest_path.join(p.file_name().unwrap())).unwrap();
                    }
                } else {
                    std::fs::copy(&src, &dest_path).unwrap();
                }
            }
            "RUN" => {
                let o = Command::new("sh")
                    .args(["-e", "-c", args])
                    .current_dir(&cwd)
                    .env("PATH", path_with_ggufy())
                    .envs(env.iter().map(|(k, v)| (k, v)))
                    .output()
                    .unwrap();
                assert!(
                    o.status.success(),
                    "RUN {args}\n{}",
                    String::from_utf8_lossy(&o.stderr)
                );
                ran += 1;
            }
            other => panic!("the test does not know how to run {other} {args}"),
        }
    }
    assert!(ran >= 4);
    let model = cwd.join("model-q4_0.gguf");
    let o = ggufy(&["inspect", model.to_str().unwrap(), "--json", "--no-tensors"]);
    assert!(o.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let file_type = doc["metadata"]
        .as_array()
        .unwrap()
        .iter()
        .find(|kv| kv["key"] == "general.file_type")
        .map(|kv| kv["value"].clone());
    assert_eq!(file_type, Some(serde_json::json!(2)), "Q4_0");
    assert!(cwd.join("SHA256SUMS").exists());
}

/// The workflow's steps as (name, run script); a hand parser for the file's simple shape.
fn workflow_steps(text: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut steps = Vec::new();
    let mut name = String::new();
    let mut i = 0;
    while i < lines.len() {
        let t = lines[i].trim_start();
        if let Some(n) = t.strip_prefix("- name:") {
            name = n.trim().to_string();
        } else if t.starts_with("- uses:") {
            name.clear();
        }
        if let Some(run) = t.strip_prefix("run:") {
            let run = run.trim();
            if run == "|" {
                let indent = lines[i + 1].len() - lines[i + 1].trim_start().len();
                let mut body = String::new();
                i += 1;
                while i < lines.len()
                    && (lines[i].trim().is_empty()
                        || lines[i].len() - lines[i].trim_start().len() >= indent)
                {
                    body.push_str(lines[i].get(indent..).unwrap_or(""));
                    body.push('\n');
                    i += 1;
                }
                steps.push((name.clone(), body));
                continue;
            }
            steps.push((name.clone(), run.to_string()));
        }
        i += 1;
    }
    steps
}

#[test]
fn the_github_actions_example_converts_and_gates() {
    let text = std::fs::read_to_string(repo().join("examples/github-actions.yml")).unwrap();
    let steps = workflow_steps(&text);
    let install = steps
        .iter()
        .position(|(n, _)| n == "Install ggufy")
        .expect("an Install ggufy step");
    let to_run = &steps[install + 1..];
    assert!(to_run.len() >= 3, "{steps:?}");
    // GitHub expressions are expanded before the shell runs; none may hide in the scripts.
    for (name, script) in to_run {
        assert!(!script.contains("${{"), "{name}: use env: for expressions");
    }
    let max_kl = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("MAX_KL:"))
        .map(|v| {
            v.split('#')
                .next()
                .unwrap()
                .trim()
                .trim_matches('"')
                .to_string()
        })
        .expect("MAX_KL in env");
    let dir = tempfile::tempdir().unwrap();
    for (name, script) in to_run {
        let o = Command::new("bash")
            .args(["-e", "-c", script])
            .current_dir(dir.path())
            .env("PATH", path_with_ggufy())
            .env("MODEL", fixtures().join("hf/tiny-llama"))
            .env("REVISION", "main")
            .env("EVAL_TEXT", fixtures().join("text/held-out.txt"))
            .env("MAX_KL", &max_kl)
            .env("HF_TOKEN", "")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "step {name}:\n{script}\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let quality: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("quality.json")).unwrap()).unwrap();
    assert_eq!(quality["gate_passed"], true);
    assert!(dir.path().join("SHA256SUMS").exists());
    // And the gate does fail the step when the threshold is not met.
    let gate = &to_run
        .iter()
        .find(|(n, _)| n == "Gate on quality")
        .unwrap()
        .1;
    let o = Command::new("bash")
        .args(["-e", "-c", gate])
        .current_dir(dir.path())
        .env("PATH", path_with_ggufy())
        .env("EVAL_TEXT", fixtures().join("text/held-out.txt"))
        .env("MAX_KL", "0.000001")
        .output()
        .unwrap();
    assert!(!o.status.success(), "a tiny MAX_KL must fail the gate");
}
