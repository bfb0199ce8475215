//! The Debian package, tested by installing it: `dpkg -i` into this
//! machine, `rsync-gate check` on the shipped policy, the manual pages and
//! the bash completion where they belong, a real pull through sshd with
//! `/usr/bin/rsync-gate` from the package as the forced command, a
//! rotation with the shipped logrotate file followed by another session, an
//! upgrade that keeps an edited policy, and `dpkg --purge`, after which
//! every path the package touched is as it was before.
//!
//! It changes the machine, so it runs only when `RSYNC_GATE_DEB` names the
//! package to test (tools/package-test builds it and sets it; `.ci/run` runs
//! tools/package-test after the test suite). Without it the test skips, in
//! CI too; with it, anything missing is a failure. It refuses to run where
//! rsync-gate is installed already.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::common::{self, World, stderr};
use crate::sshd::{Sshd, assert_ok, slash};

/// Names the .deb to install.
const DEB_VAR: &str = "RSYNC_GATE_DEB";
const PACKAGE: &str = "rsync-gate";
const GATE: &str = "/usr/bin/rsync-gate";
const POLICY: &str = "/etc/rsync-gate/policy.toml";
const AUDIT_DIR: &str = "/var/log/rsync-gate";
const AUDIT_LOG: &str = "/var/log/rsync-gate/audit.jsonl";
const LOCK_DIR: &str = "/run/rsync-gate";
const LOGROTATE: &str = "/etc/logrotate.d/rsync-gate";
const BASH_COMPLETION: &str = "/usr/share/bash-completion/completions/rsync-gate";
/// The test's drop-in: a module and a client for the real pull.
const DROP_IN: &str = "/etc/rsync-gate/conf.d/50-package-test.toml";

/// A tool the test needs: with the test asked for, missing is a failure.
fn need(path: &str) -> PathBuf {
    let p = PathBuf::from(path);
    assert!(
        p.is_file(),
        "{path} is needed to test the installed package (.ci/run installs it)"
    );
    p
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

fn ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What dpkg knows of the package (`${Status}`), if anything.
fn dpkg_status() -> Option<String> {
    let out = run("dpkg-query", &["-W", "-f=${Status}", PACKAGE]);
    let status = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !status.is_empty()).then_some(status)
}

/// The paths in a package, from `dpkg-deb -c` (`./usr/bin/x` as `/usr/bin/x`).
fn package_paths(deb: &Path) -> Vec<PathBuf> {
    ok("dpkg-deb", &["-c", deb.to_str().unwrap()])
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| PathBuf::from(p.trim_start_matches('.').trim_end_matches('/')))
        .filter(|p| p.as_os_str().len() > 1)
        .collect()
}

/// One path's state: kind, mode, owner, group and (files) size; None when
/// it does not exist.
type State = Option<(char, u32, u32, u32, u64)>;

fn state(p: &Path) -> State {
    let md = std::fs::symlink_metadata(p).ok()?;
    let kind = if md.is_dir() {
        'd'
    } else if md.file_type().is_symlink() {
        'l'
    } else {
        'f'
    };
    let size = if kind == 'f' { md.len() } else { 0 };
    Some((kind, md.mode() & 0o7777, md.uid(), md.gid(), size))
}

/// Everything the package and the gate may touch: each path in the
/// package, everything below the package's own directories, and dpkg's
/// records of it.
fn snapshot(paths: &[PathBuf]) -> BTreeMap<PathBuf, State> {
    let mut out = BTreeMap::new();
    for p in paths {
        out.insert(p.clone(), state(p));
    }
    for top in [
        "/etc/rsync-gate",
        AUDIT_DIR,
        LOCK_DIR,
        "/usr/share/doc/rsync-gate",
    ] {
        let mut pending = vec![PathBuf::from(top)];
        while let Some(p) = pending.pop() {
            let s = state(&p);
            if matches!(s, Some(('d', ..))) {
                for e in std::fs::read_dir(&p).unwrap() {
                    pending.push(e.unwrap().path());
                }
            }
            out.insert(p, s);
        }
    }
    for e in std::fs::read_dir("/var/lib/dpkg/info").unwrap() {
        let p = e.unwrap().path();
        if p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("rsync-gate."))
        {
            let s = state(&p);
            out.insert(p, s);
        }
    }
    out
}

/// Purges the package if the test stops half-way (and the drop-in first,
/// so that nothing the test made stays).
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(DROP_IN);
        if dpkg_status().is_some() {
            let _ = run("dpkg", &["--purge", PACKAGE]);
        }
    }
}

fn lines(path: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A pull of `www/` through sshd into a new directory; the audit log's
/// decision and end records of it.
fn pull(sshd: &Sshd, world: &World, key: &crate::sshd::Key, www: &Path, n: usize) {
    let dst = world.client.join(format!("dst{n}"));
    let out = sshd.rsync(
        world,
        key,
        &[],
        &[],
        &["-a", "root@127.0.0.1:www/", &slash(&dst)],
    );
    assert_ok(&out, &format!("pull {n} through sshd and {GATE}"));
    common::assert_same_tree(www, &dst);
}

#[test]
fn the_package_installs_works_upgrades_and_purges() {
    let Some(deb) = std::env::var_os(DEB_VAR).map(PathBuf::from) else {
        eprintln!(
            "SKIP: the installed-package test runs only with {DEB_VAR}=PACKAGE.deb \
             (tools/package-test sets it): it installs and purges the package on this machine"
        );
        return;
    };
    assert!(
        nix::unistd::geteuid().is_root(),
        "installing a package needs root"
    );
    let deb = std::fs::canonicalize(&deb).unwrap_or_else(|e| panic!("{}: {e}", deb.display()));
    for tool in [
        "/usr/bin/dpkg",
        "/usr/bin/dpkg-deb",
        "/usr/sbin/logrotate",
        "/usr/bin/man",
        "/usr/bin/bash",
        crate::sshd::SSHD,
        crate::sshd::SSH,
        "/usr/bin/rsync",
    ] {
        need(tool);
    }
    assert_eq!(
        dpkg_status(),
        None,
        "{PACKAGE} is on this machine already: this test would replace and purge it"
    );
    let paths = package_paths(&deb);
    for p in &paths {
        assert!(
            p.is_dir() || !p.exists(),
            "{} exists already; the package would replace it",
            p.display()
        );
    }
    let before = snapshot(&paths);
    let guard = Installed;

    // Install. (--path-include: a slim image's dpkg may be told to leave
    // manual pages out.)
    ok(
        "dpkg",
        &[
            "--path-include=/usr/share/man/man8/rsync-gate.8.gz",
            "--path-include=/usr/share/man/man5/rsync-gate-policy.5.gz",
            "-i",
            deb.to_str().unwrap(),
        ],
    );
    assert_eq!(dpkg_status().as_deref(), Some("install ok installed"));
    let conffiles = ok("dpkg-query", &["-W", "-f=${Conffiles}", PACKAGE]);
    for c in [POLICY, "/etc/rsync-gate/conf.d/README", LOGROTATE] {
        assert!(
            conffiles.contains(&format!(" {c} ")),
            "{c} is not a conffile: {conffiles}"
        );
    }
    assert_eq!(
        state(Path::new(GATE)).map(|s| (s.0, s.1, s.2)),
        Some(('f', 0o755, 0))
    );
    assert_eq!(
        state(Path::new(AUDIT_DIR)).map(|s| (s.0, s.1, s.2, s.3)),
        Some(('d', 0o755, 0, 0)),
        "{AUDIT_DIR}: root's, 0755"
    );
    assert_eq!(
        state(Path::new(POLICY)).map(|s| (s.1, s.2)),
        Some((0o644, 0))
    );
    // The binary from the package is the one built from this tree.
    let version = ok(GATE, &["--version"]);
    assert_eq!(
        version,
        ok(common::gate_bin().to_str().unwrap(), &["--version"])
    );
    eprintln!("{}", ok(GATE, &["--version", "-v"]));

    // lock_dir as the boot would make it (systemd-tmpfiles), when there is
    // one; the gate makes it itself otherwise.
    if Path::new("/usr/bin/systemd-tmpfiles").is_file() {
        ok(
            "/usr/bin/systemd-tmpfiles",
            &["--create", "rsync-gate.conf"],
        );
        assert_eq!(
            state(Path::new(LOCK_DIR)).map(|s| (s.0, s.1, s.2, s.3)),
            Some(('d', 0o755, 0, 0))
        );
    }

    // The shipped policy: valid, and granting nothing.
    let check = ok(GATE, &["check"]);
    assert!(
        check.ends_with(&format!(
            "{POLICY}: OK (0 modules, 0 clients, 0 triggers, 1 file(s); account root)\n"
        )),
        "{check}"
    );

    // The manual pages and the completion, where man and bash look.
    assert_eq!(
        ok("man", &["-w", "rsync-gate"]),
        "/usr/share/man/man8/rsync-gate.8.gz\n"
    );
    assert_eq!(
        ok("man", &["-w", "5", "rsync-gate-policy"]),
        "/usr/share/man/man5/rsync-gate-policy.5.gz\n"
    );
    let page = ok("man", &["-P", "cat", "rsync-gate"]);
    assert!(
        page.contains("rsync-gate - A forced-command gatekeeper for rsync over SSH"),
        "{page}"
    );
    let bash = Path::new(BASH_COMPLETION);
    assert_eq!(
        crate::docs::bash_complete(bash, &["rsync-gate", "ch"]),
        ["check"]
    );
    assert_eq!(
        crate::docs::bash_complete(bash, &["rsync-gate", "audit", "--fo"]),
        ["--follow"]
    );

    // A real pull through sshd, the packaged binary as the forced command,
    // with the shipped policy and a drop-in granting one module.
    let world = World::new();
    let www = world.module_dir("www");
    common::sample_tree(&www);
    std::fs::write(
        DROP_IN,
        format!(
            "[modules.www]\npath = \"{}\"\n\n[clients.pkgtest]\nmodules = [\"www\"]\n",
            www.display()
        ),
    )
    .unwrap();
    common::set_mode(Path::new(DROP_IN), 0o644);
    let check = ok(GATE, &["check"]);
    assert!(
        check.ends_with(&format!(
            "{POLICY}: OK (1 modules, 1 clients, 0 triggers, 2 file(s); account root)\n"
        )),
        "{check}"
    );
    let sshd = Sshd::start();
    let key = sshd.add_key("pkgtest", &format!("{GATE} serve --client pkgtest"));
    pull(&sshd, &world, &key, &www, 1);
    let first = lines(AUDIT_LOG);
    assert_eq!(first.len(), 2, "{first:#?}");
    assert_eq!(first[0]["client"], "pkgtest");
    assert_eq!(first[0]["decision"], "allow");
    assert_eq!(first[1]["event"], "end");
    assert_eq!(first[1]["exit_status"], 0);

    // Rotation by the shipped logrotate file (its own state file, not the
    // machine's), then another session: the new log gets its records.
    let state_dir = tempfile::tempdir().unwrap();
    let status = state_dir.path().join("status");
    ok(
        "/usr/sbin/logrotate",
        &["-f", "-s", status.to_str().unwrap(), LOGROTATE],
    );
    let rotated = format!("{AUDIT_LOG}.1");
    assert_eq!(
        lines(&rotated),
        first,
        "the rotated log holds the first session"
    );
    let adm = nix::unistd::Group::from_name("adm")
        .unwrap()
        .unwrap()
        .gid
        .as_raw();
    assert_eq!(
        state(Path::new(AUDIT_LOG)),
        Some(('f', 0o640, 0, adm, 0)),
        "logrotate's new log: root:adm 0640, empty"
    );
    pull(&sshd, &world, &key, &www, 2);
    let second = lines(AUDIT_LOG);
    assert_eq!(second.len(), 2, "{second:#?}");
    assert_eq!(second[0]["decision"], "allow");
    assert_ne!(second[0]["session"], first[0]["session"]);
    assert_eq!(
        lines(&rotated),
        first,
        "nothing more went to the rotated log"
    );
    let summary = ok(
        GATE,
        &[
            "audit",
            "--log",
            &rotated,
            "--log",
            AUDIT_LOG,
            "--summary",
            "--json",
        ],
    );
    let row: serde_json::Value = serde_json::from_str(summary.trim()).unwrap();
    assert_eq!(row["allowed"], 2, "{summary}");

    // An upgrade keeps an edited policy: the same package as a newer
    // version (its policy.toml unchanged), installed without a terminal.
    let edited = format!(
        "{}\n# Edited by the package test.\n",
        std::fs::read_to_string(POLICY).unwrap()
    );
    std::fs::write(POLICY, &edited).unwrap();
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    ok(
        "dpkg-deb",
        &["-R", deb.to_str().unwrap(), tree.to_str().unwrap()],
    );
    let control = tree.join("DEBIAN/control");
    let text = std::fs::read_to_string(&control).unwrap();
    let old = text
        .lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .unwrap()
        .to_string();
    let new = format!("{old}.1");
    std::fs::write(
        &control,
        text.replace(&format!("Version: {old}\n"), &format!("Version: {new}\n")),
    )
    .unwrap();
    let newer = work.path().join("newer.deb");
    ok(
        "dpkg-deb",
        &["-b", tree.to_str().unwrap(), newer.to_str().unwrap()],
    );
    ok("dpkg", &["-i", newer.to_str().unwrap()]);
    assert_eq!(
        ok("dpkg-query", &["-W", "-f=${Version}", PACKAGE]),
        new,
        "not upgraded"
    );
    assert_eq!(std::fs::read_to_string(POLICY).unwrap(), edited);
    assert!(!Path::new(&format!("{POLICY}.dpkg-dist")).exists());
    assert_eq!(lines(AUDIT_LOG), second, "the upgrade kept the audit log");
    ok(GATE, &["check"]);

    // Purge: everything as it was before.
    drop(sshd);
    std::fs::remove_file(DROP_IN).unwrap();
    ok("dpkg", &["--purge", PACKAGE]);
    assert_eq!(dpkg_status(), None);
    drop(guard);
    let after = snapshot(&paths);
    let all: std::collections::BTreeSet<&PathBuf> = before.keys().chain(after.keys()).collect();
    let changed: Vec<String> = all
        .into_iter()
        .filter(|p| before.get(*p) != after.get(*p))
        .map(|p| format!("{}: {:?} -> {:?}", p.display(), before.get(p), after.get(p)))
        .collect();
    assert!(
        changed.is_empty(),
        "the machine is not as it was:\n{}",
        changed.join("\n")
    );
}
