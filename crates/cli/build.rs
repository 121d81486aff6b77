//! Stamps the binary with the git revision it was built from (`ggufy --version`), so a file made
//! in CI can be traced to the exact ggufy that made it. `GGUFY_GIT_REV` overrides it (builds from
//! a source archive, or a Docker context without `.git`); otherwise "unknown".

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let o = Command::new("git").args(args).output().ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn main() {
    println!("cargo:rerun-if-env-changed=GGUFY_GIT_REV");
    let rev = std::env::var("GGUFY_GIT_REV")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    // A new commit moves HEAD (or the branch it points at): rebuild the stamp then, not on
    // every edit.
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/logs/HEAD");
    }
    println!("cargo:rustc-env=GGUFY_GIT_REV={rev}");
    println!(
        "cargo:rustc-env=GGUFY_TARGET={}",
        std::env::var("TARGET").unwrap_or_default()
    );
}
