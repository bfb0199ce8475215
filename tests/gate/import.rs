//! `rsync-gate import`: the binary on the fixtures in tests/data/import
//! (rsyncd.conf(5)'s examples, a Debian-style rsyncd.conf, an
//! authorized_keys with rrsync lines of every flag, a daemon line, a
//! push-mirror trigger and junk); each output passes `rsync-gate check` in
//! a world where its directories exist; and rrsync lines imported behave
//! through the gate as the real rrsync behaves.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::common::{
    World, assert_same_tree, gate_bin, install_exec, real_rsync, require, sample_tree, set_mode,
    stderr, tree,
};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/import")
}

fn import(args: &[&str]) -> Output {
    Command::new(gate_bin())
        .arg("import")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run rsync-gate import")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Put an imported policy into `w`: every module path becomes a directory
/// under the world (created, root's, 0755), every trigger command a
/// stand-in, and the world's [gate] goes on top.
fn install(w: &World, imported: &str) -> PathBuf {
    let tree_root = w.root.join("imported");
    let mut body = String::new();
    for line in imported.lines() {
        if let Some(p) = line
            .strip_prefix("path = \"")
            .and_then(|r| r.strip_suffix('"'))
        {
            let dir = if p == "/" {
                tree_root.clone()
            } else {
                tree_root.join(p.trim_start_matches('/'))
            };
            std::fs::create_dir_all(&dir).unwrap();
            let mut d = dir.as_path();
            while d.starts_with(&w.root) {
                set_mode(d, 0o755);
                d = d.parent().unwrap();
            }
            body.push_str(&format!("path = \"{}\"\n", dir.display()));
        } else if line.starts_with("command = [") {
            let job = w.root.join("bin/job");
            install_exec(&job, "#!/bin/sh\nexit 0\n");
            body.push_str(&format!("command = [\"{}\"]\n", job.display()));
        } else {
            body.push_str(line);
            body.push('\n');
        }
    }
    w.write_policy(&body);
    w.policy.clone()
}

fn check(policy: &Path) -> Output {
    Command::new(gate_bin())
        .args(["check", "--policy"])
        .arg(policy)
        .output()
        .expect("run check")
}

/// Each fixture: the exit status, the warnings on stderr, and `check`
/// accepting the policy once its directories exist.
#[test]
fn imported_fixtures_pass_check() {
    let dir = fixtures();
    let home = dir.to_string_lossy().into_owned();
    // (arguments, exit status, warnings)
    let cases: &[(&[&str], i32, usize)] = &[
        (&["manual-simple.conf"], 0, 0),
        (&["manual-full.conf"], 1, 1),
        (&["--format", "rsyncd", "debian-style.conf"], 1, 13),
        (&["--home", &home, "authorized_keys"], 1, 8),
    ];
    for (args, status, warnings) in cases {
        let args: Vec<String> = args
            .iter()
            .map(|a| {
                if a.ends_with(".conf") || *a == "authorized_keys" {
                    dir.join(a).to_string_lossy().into_owned()
                } else {
                    (*a).to_string()
                }
            })
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = import(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(*status), "import {args:?}: {err}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), *warnings, "import {args:?}:\n{err}");
        assert!(
            lines.iter().all(|l| l.starts_with("rsync-gate: import: ")),
            "{err}"
        );
        let out = stdout(&o);
        if *warnings > 0 {
            assert!(
                out.contains(&format!("# NOT CARRIED OVER ({warnings};")),
                "{out}"
            );
        }
        let w = World::new();
        let policy = install(&w, &out);
        let c = check(&policy);
        assert!(
            c.status.success(),
            "import {args:?} then check:\n{}{}\npolicy:\n{}",
            String::from_utf8_lossy(&c.stdout),
            stderr(&c),
            std::fs::read_to_string(&policy).unwrap()
        );
        assert!(String::from_utf8_lossy(&c.stdout).contains(": OK ("));
    }
}

#[test]
fn import_refuses_what_it_cannot_read() {
    let w = World::new();
    let bad = w.root.join("bad.conf");
    std::fs::write(&bad, "[www/pub]\npath = /srv/www\n").unwrap();
    let o = import(&[bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
    assert!(
        stderr(&o)
            .contains("bad.conf:1: module name 'www/pub' contains '/' (rsync refuses this file)"),
        "{}",
        stderr(&o)
    );
    let junk = w.root.join("junk");
    std::fs::write(&junk, "hello\n").unwrap();
    let o = import(&[junk.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--format"), "{}", stderr(&o));
    let o = import(&[w.root.join("missing").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    // stdin works, and the format is told from the content.
    let mut child = Command::new(gate_bin())
        .args(["import", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"[www]\npath = /srv/www\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("[modules.www]\n"));
}

/// The real rsync client through the gate with an imported rrsync line,
/// and through the real rrsync with the same line: the same operations
/// succeed and fail, and leave the same trees.
#[test]
fn imported_rrsync_lines_behave_as_rrsync() {
    if real_rsync().is_none()
        || require("/usr/bin/rrsync").is_none()
        || require("/usr/bin/python3").is_none()
    {
        return;
    }
    // rrsync flags; writable lines use -munge, which the gate's default
    // munging of writable modules matches.
    let cases: &[(&str, &[(&str, bool)])] = &[
        (
            "-ro",
            &[("pull", true), ("push", false), ("push-delete", false)],
        ),
        (
            "-munge",
            &[("pull", true), ("push", true), ("push-delete", true)],
        ),
        (
            "-munge -no-del",
            &[("pull", true), ("push", true), ("push-delete", false)],
        ),
        (
            "-wo -munge -no-lock",
            &[("pull", false), ("push", true), ("push-delete", true)],
        ),
    ];
    for (flags, ops) in cases {
        let w = World::new();
        let module = w.module_dir("www");
        let key =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIL2vP+bK/plCjzjmBvLUyj0qafrLVpraKvoQTrxZWER9";
        let keys = w.root.join("authorized_keys");
        std::fs::write(
            &keys,
            format!(
                "command=\"rrsync {flags} {}\" {key} mirror\n",
                module.display()
            ),
        )
        .unwrap();
        let o = import(&[keys.to_str().unwrap()]);
        assert!(o.status.code() == Some(0), "rrsync {flags}: {}", stderr(&o));
        let body = stdout(&o);
        assert!(
            body.contains("[clients.mirror]\nmodules = [\"public-tree\"]"),
            "{body}"
        );
        w.write_policy(&body);
        // rrsync as sshd would run it.
        let rrsync_shim = w.root.join("bin/rrsync-shim");
        install_exec(
            &rrsync_shim,
            &format!(
                "#!/bin/sh\nshift\nSSH_ORIGINAL_COMMAND=\"$*\" SSH_CONNECTION='127.0.0.1 40000 127.0.0.1 22' exec /usr/bin/rrsync {flags} {}\n",
                module.display()
            ),
        );
        let src = w.client.join("src");
        std::fs::create_dir_all(&src).unwrap();
        set_mode(&src, 0o755);
        sample_tree(&src);
        for (op, want) in *ops {
            let mut results = Vec::new();
            for through_gate in [true, false] {
                // Each run starts from the same module tree.
                std::fs::remove_dir_all(&module).unwrap();
                let module = w.module_dir("www");
                sample_tree(&module);
                std::fs::write(module.join("extra"), "only on the server\n").unwrap();
                let dest = w.client.join(format!("dest-{op}-{through_gate}"));
                let _ = std::fs::remove_dir_all(&dest);
                let (remote, shim) = if through_gate {
                    ("host:public-tree/", w.shim("mirror"))
                } else {
                    ("host:", rrsync_shim.clone())
                };
                let src_arg = format!("{}/", src.display());
                let args: Vec<&str> = match *op {
                    "pull" => vec!["-a", remote, dest.to_str().unwrap()],
                    "push" => vec!["-a", &src_arg, remote],
                    _ => vec!["-a", "--delete", &src_arg, remote],
                };
                let o = Command::new("/usr/bin/rsync")
                    .arg("-e")
                    .arg(&shim)
                    .args(&args)
                    .current_dir(&w.client)
                    .stdin(Stdio::null())
                    .output()
                    .unwrap();
                let via = if through_gate { "the gate" } else { "rrsync" };
                assert_eq!(
                    o.status.success(),
                    *want,
                    "rrsync {flags}, {op} through {via}: {}",
                    stderr(&o)
                );
                let result = if *op == "pull" {
                    tree(&dest)
                } else {
                    tree(&module)
                };
                results.push((result, dest));
            }
            let (gate, rr) = (&results[0], &results[1]);
            assert!(
                gate.0 == rr.0,
                "rrsync {flags}, {op}: the gate and rrsync left different trees"
            );
            if *op == "pull" && *want {
                assert_same_tree(&gate.1, &rr.1);
            }
        }
    }
}

/// The README's example is what the command prints.
#[test]
fn readme_example_is_what_import_prints() {
    let readme =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    let block = |start: &str| -> String {
        let i = readme
            .find(start)
            .unwrap_or_else(|| panic!("README has no {start:?}"));
        let rest = &readme[i + start.len()..];
        rest[..rest.find("```").unwrap()].to_string()
    };
    let first = block("$ cat rsyncd.conf\n");
    let (conf, err) = first
        .split_once("$ rsync-gate import rsyncd.conf > policy.toml\n")
        .expect("the import command after the config");
    let policy = block("$ cat policy.toml\n");
    let w = World::new();
    std::fs::write(w.client.join("rsyncd.conf"), conf).unwrap();
    let o = Command::new(gate_bin())
        .args(["import", "rsyncd.conf"])
        .current_dir(&w.client)
        .output()
        .unwrap();
    assert_eq!(stderr(&o), err);
    assert_eq!(stdout(&o), policy);
    assert_eq!(o.status.code(), Some(1));
}
