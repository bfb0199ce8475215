//! Records the git commit the binary is built from, for `--version`
//! (`RSYNC_GATE_COMMIT`): `git rev-parse HEAD`, with `-modified` when the
//! files the binary is built from (src/, Cargo.toml, Cargo.lock, build.rs)
//! differ from it. A build outside a git checkout (a source tarball) says
//! `unknown`, unless the builder sets `RSYNC_GATE_COMMIT` itself.

use std::path::Path;
use std::process::Command;

/// The files whose changes a build can see; `-modified` is about these.
const SOURCES: [&str; 4] = ["src", "Cargo.toml", "Cargo.lock", "build.rs"];

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8(out.stdout).ok()?.trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=RSYNC_GATE_COMMIT");
    for s in SOURCES {
        println!("cargo:rerun-if-changed={s}");
    }
    let commit = match std::env::var("RSYNC_GATE_COMMIT") {
        Ok(c) if !c.is_empty() => c,
        _ => from_git().unwrap_or_else(|| "unknown".into()),
    };
    println!("cargo:rustc-env=RSYNC_GATE_COMMIT={commit}");
}

fn from_git() -> Option<String> {
    // This package's own checkout, not one it happens to be inside of
    // (a vendored copy in another project's tree).
    let top = git(&["rev-parse", "--show-toplevel"])?;
    let here = std::env::var("CARGO_MANIFEST_DIR").ok()?;
    if std::fs::canonicalize(&top).ok()? != std::fs::canonicalize(&here).ok()? {
        return None;
    }
    // Run again when HEAD moves: HEAD itself, the branch it names, the
    // packed refs, and the index (a commit, a checkout, a reset).
    let mut watch = vec!["HEAD".to_string(), "index".into(), "packed-refs".into()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch.push(branch);
    }
    for w in watch {
        if let Some(p) = git(&["rev-parse", "--path-format=absolute", "--git-path", &w])
            && Path::new(&p).exists()
        {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    let head = git(&["rev-parse", "HEAD"])?;
    let mut status = vec!["status", "--porcelain", "--"];
    status.extend(SOURCES);
    let modified = !git(&status)?.is_empty();
    Some(if modified {
        format!("{head}-modified")
    } else {
        head
    })
}
