//! `rsync-gate check` predicts what `serve` will do (issue 12): for each
//! set-up below `serve`, as a real non-root account (or sshd in front of
//! it), fails, and `check --account` run by root says so as an error with
//! its fix on the next line; where the fix is a command, running it makes
//! `check` and `serve` succeed. Also `authorized-keys`: the clients it
//! leaves out, and the gate paths it refuses to write.
//!
//! These tests need what `nonroot.rs` needs (root, the account tools,
//! setpriv, rsync); those that go through sshd need sshd too.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{self, World};
use crate::nonroot::{self, Setup, TestAccount, assert_ok, assert_refused, chown};
use crate::sshd::{self, Sshd};

/// The report's error whose line contains `needle`, and its fix (the
/// `  fix: ` line after it).
fn error_with_fix<'a>(report: &'a str, needle: &str) -> (&'a str, &'a str) {
    let lines: Vec<&str> = report.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.starts_with("error: ") && l.contains(needle))
        .unwrap_or_else(|| panic!("no error saying {needle:?} in:\n{report}"));
    let fix = lines
        .get(i + 1)
        .and_then(|l| l.strip_prefix("  fix: "))
        .unwrap_or_else(|| panic!("the error {:?} has no fix line:\n{report}", lines[i]));
    (lines[i], fix)
}

/// `check` failed with an error saying `needle` whose fix contains `fix`.
fn assert_check_error(s: &Setup, needle: &str, fix: &str) -> String {
    let (ok, report) = s.check(&s.world.policy);
    assert!(!ok, "check passed:\n{report}");
    let (_, got) = error_with_fix(&report, needle);
    assert!(got.contains(fix), "fix {got:?}, not {fix:?}:\n{report}");
    report
}

/// Run a fix the way an administrator pastes it.
fn apply(fix: &str) {
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(fix)
        .output()
        .expect("sh");
    assert!(out.status.success(), "{fix}: {}", common::stderr(&out));
}

fn assert_check_ok(s: &Setup) {
    let (ok, report) = s.check(&s.world.policy);
    assert!(ok, "check --account {}:\n{report}", s.user.name);
    assert!(
        report.contains(&format!("; account {})", s.user.name)),
        "{report}"
    );
}

/// The policy with `from` replaced by `to` in its text.
fn edit_policy(s: &Setup, from: &str, to: &str) {
    let text = std::fs::read_to_string(&s.world.policy).expect("read policy");
    assert!(text.contains(from), "{from:?} not in the policy:\n{text}");
    std::fs::write(&s.world.policy, text.replacen(from, to, 1)).expect("write policy");
}

const LOG_REFUSED: &str = "the audit log cannot be written, so nothing may run";

#[test]
fn check_reports_a_missing_audit_log() {
    if !nonroot::prerequisites() {
        return;
    }
    let s = Setup::new();
    assert_check_ok(&s);
    std::fs::remove_file(&s.world.audit).expect("rm audit log");
    assert_refused(&s.probe(), "ssh true without the log", LOG_REFUSED);
    let log = s.world.audit.display().to_string();
    let name = &s.user.name;
    let report = assert_check_error(
        &s,
        &format!("audit_log {log} does not exist, and {name} cannot create it"),
        &format!("install -o {name} -g {name} -m 0600 /dev/null {log}"),
    );
    apply(error_with_fix(&report, "audit_log").1);
    assert_check_ok(&s);
    assert_ok(&s.probe(), "ssh true with the log the fix made");
}

#[test]
fn check_reports_an_audit_log_the_account_cannot_write() {
    if !nonroot::prerequisites() {
        return;
    }
    let s = Setup::new();
    // Root's and 0640: safe for the gate, but the account cannot append.
    chown(&s.world.audit, 0, 0);
    common::set_mode(&s.world.audit, 0o640);
    assert_refused(&s.probe(), "ssh true, root's log", LOG_REFUSED);
    let name = &s.user.name;
    let log = s.world.audit.display().to_string();
    let report = assert_check_error(
        &s,
        &format!("{name} cannot append to the audit log {log}"),
        &format!("chown {name}:{name} {log} && chmod 0600 {log}"),
    );
    apply(error_with_fix(&report, "cannot append").1);
    assert_check_ok(&s);
    assert_ok(&s.probe(), "ssh true after the fix");
}

#[test]
fn check_reports_an_audit_log_writable_by_others() {
    if !nonroot::prerequisites() {
        return;
    }
    let s = Setup::new();
    common::set_mode(&s.world.audit, 0o666);
    assert_refused(&s.probe(), "ssh true, log 0666", LOG_REFUSED);
    let name = &s.user.name;
    let log = s.world.audit.display().to_string();
    let report = assert_check_error(
        &s,
        "writable by others (every session would be refused)",
        &format!("chown {name}:{name} {log} && chmod 0600 {log}"),
    );
    apply(error_with_fix(&report, "writable by others").1);
    assert_check_ok(&s);
}

#[test]
fn check_reports_a_policy_the_account_cannot_read() {
    if !nonroot::prerequisites() {
        return;
    }
    let s = Setup::new();
    common::set_mode(&s.world.policy, 0o600);
    let out = s.rsync(&["-a", "h:www/", &s.dst("x")]);
    sshd::assert_denied(&out, "pull, policy 0600", "the server's policy is invalid");
    assert!(common::stderr(&out).contains("Permission denied"));
    let policy = s.world.policy.display().to_string();
    let report = assert_check_error(
        &s,
        &format!(
            "{} cannot read the policy file {policy} (Permission denied",
            s.user.name
        ),
        &format!("chmod 0644 {policy}"),
    );
    apply(error_with_fix(&report, "cannot read the policy").1);
    assert_check_ok(&s);
    // A drop-in directory it cannot search: the files are found as root
    // only, so the account would serve a different policy.
    let conf_d = s.world.root.join("conf.d");
    std::fs::create_dir(&conf_d).expect("mkdir");
    common::set_mode(&conf_d, 0o700);
    std::fs::write(conf_d.join("c.toml"), "[clients.d]\nmodules = [\"www\"]\n").expect("w");
    common::set_mode(&conf_d.join("c.toml"), 0o644);
    edit_policy(
        &s,
        "[gate]\n",
        &format!("[gate]\ninclude = [\"{}/*.toml\"]\n", conf_d.display()),
    );
    let out = s.rsync_with(&s.world.policy, "d", &["-a", "h:www/", &s.dst("y")]);
    sshd::assert_denied(&out, "pull, conf.d 0700", "the server's policy is invalid");
    let (ok, report) = s.check(&s.world.policy);
    assert!(!ok, "{report}");
    assert!(
        report.contains(&format!(
            "{} cannot read the policy file {}/c.toml",
            s.user.name,
            conf_d.display()
        )),
        "{report}"
    );
    assert!(
        report.contains(&format!("fix: chmod o+x {}", conf_d.display())),
        "{report}"
    );
}

#[test]
fn check_reports_a_lock_dir_the_account_cannot_create() {
    if !nonroot::prerequisites() {
        return;
    }
    let s = Setup::new();
    // lock_dir below root's directory, not there yet.
    chown(&s.world.run, 0, 0);
    let lock_dir = s.world.run.join("gate");
    edit_policy(
        &s,
        &format!("lock_dir = \"{}\"", s.world.run.display()),
        &format!("lock_dir = \"{}\"", lock_dir.display()),
    );
    let out = s.rsync(&["-a", "h::www/", &s.dst("x")]);
    sshd::assert_denied(
        &out,
        "h:: pull, no lock_dir",
        "internal error on the server",
    );
    let name = &s.user.name;
    let report = assert_check_error(
        &s,
        &format!(
            "lock_dir {} does not exist, and {name} cannot create it in {}",
            lock_dir.display(),
            s.world.run.display()
        ),
        &format!(
            "install -d -o {name} -g {name} -m 0755 {}",
            lock_dir.display()
        ),
    );
    assert!(!report.contains("warning: lock_dir"), "{report}");
    apply(error_with_fix(&report, "lock_dir").1);
    assert_check_ok(&s);
    assert_ok(
        &s.rsync(&["-a", "h::www/", &s.dst("y")]),
        "h:: pull with the lock_dir the fix made",
    );
}

/// As root, a missing lock_dir is no concern (root creates it): no
/// warning any more.
#[test]
fn a_missing_lock_dir_is_no_concern_for_root() {
    let w = World::new();
    w.module_dir("www");
    w.write_policy("[modules.www]\npath = \"{srv}/www\"\n");
    let gone = w.run.join("later");
    let text = std::fs::read_to_string(&w.policy).unwrap().replace(
        &format!("lock_dir = \"{}\"", w.run.display()),
        &format!("lock_dir = \"{}\"", gone.display()),
    );
    std::fs::write(&w.policy, text).unwrap();
    let out = Command::new(common::gate_bin())
        .args(["check", "--account", "root", "--policy"])
        .arg(&w.policy)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}");
    assert!(!report.contains("lock_dir"), "{report}");
}

#[test]
fn check_reports_a_daemon_directory_of_another_account() {
    if !nonroot::prerequisites() {
        return;
    }
    let s = Setup::new();
    let daemon = s.world.run.join("daemon");
    std::fs::create_dir(&daemon).expect("mkdir daemon");
    common::set_mode(&daemon, 0o755);
    let name = &s.user.name;
    for (uid, says) in [
        (
            65534,
            format!(
                "{} is owned by {}",
                daemon.display(),
                rsync_gate::trust::owner_name(65534)
            ),
        ),
        (0, format!("{name} cannot write in {}", daemon.display())),
    ] {
        chown(&daemon, uid, uid);
        let out = s.rsync(&["-a", "h::www/", &s.dst("x")]);
        sshd::assert_denied(
            &out,
            &format!("h:: pull, daemon/ of uid {uid}"),
            "internal error on the server",
        );
        assert_check_error(
            &s,
            &says,
            &format!("chown -R {name}:{name} {}", daemon.display()),
        );
    }
    apply(&format!("chown -R {name}:{name} {}", daemon.display()));
    assert_check_ok(&s);
    assert_ok(
        &s.rsync(&["-a", "h::www/", &s.dst("y")]),
        "h:: pull after the fix",
    );
}

/// The directory of the transfer log's files (`lock_dir/filelog`,
/// modules with `transfer_log`): another account's, or root's, and
/// sessions of such a module are refused in both forms; check says so,
/// and its fix makes them work.
#[test]
fn check_reports_a_filelog_directory_the_account_cannot_use() {
    if !nonroot::prerequisites() {
        return;
    }
    let s = Setup::new();
    edit_policy(
        &s,
        "[modules.www]\n",
        "[modules.www]\ntransfer_log = true\n",
    );
    let dir = s.world.run.join("filelog");
    std::fs::create_dir(&dir).expect("mkdir filelog");
    common::set_mode(&dir, 0o700);
    let name = &s.user.name;
    for (uid, says) in [
        (
            65534,
            format!(
                "{} is owned by {}",
                dir.display(),
                rsync_gate::trust::owner_name(65534)
            ),
        ),
        (0, format!("{name} cannot write in {}", dir.display())),
    ] {
        chown(&dir, uid, uid);
        let out = s.rsync(&["-a", "h:www/", &s.dst("x")]);
        sshd::assert_denied(
            &out,
            &format!("h: pull, filelog/ of uid {uid}"),
            "internal error on the server",
        );
        let out = s.rsync(&["-a", "h::www/", &s.dst("x")]);
        sshd::assert_denied(
            &out,
            &format!("h:: pull, filelog/ of uid {uid}"),
            "internal error on the server",
        );
        let report = assert_check_error(
            &s,
            &says,
            &format!("chown -R {name}:{name} {}", dir.display()),
        );
        assert!(report.contains("modules with transfer_log"), "{report}");
    }
    apply(&format!("chown -R {name}:{name} {}", dir.display()));
    assert_check_ok(&s);
    assert_ok(
        &s.rsync(&["-a", "h:www/", &s.dst("y")]),
        "h: pull after the fix",
    );
    assert_ok(
        &s.rsync(&["-a", "h::www/", &s.dst("z")]),
        "h:: pull after the fix",
    );
}

/// Behind a real sshd, which runs the forced command through the login
/// shell: bash with a `.bashrc` that prints, and nologin, fail every
/// session; check runs the shell as sshd does and says why.
#[test]
fn check_runs_the_login_shell_as_sshd_does() {
    if !nonroot::prerequisites() || !nonroot::sshd_prerequisites() {
        return;
    }
    let s = Setup::new();
    let sshd = Sshd::start();
    common::set_mode(&sshd.dir, 0o755);
    common::set_mode(&sshd.authorized_keys, 0o644);
    let key = sshd.add_key(
        "gate-shell",
        &format!(
            "{} serve --policy {} --client c",
            common::sh_quote(s.gate.as_os_str()),
            common::sh_quote(s.world.policy.as_os_str()),
        ),
    );
    let name = s.user.name.clone();
    let pull = |dst: &str| {
        sshd.rsync(
            &s.world,
            &key,
            &[],
            &[],
            &["-a", &format!("{name}@127.0.0.1:www/"), &s.dst(dst)],
        )
    };
    assert_ok(&pull("sh"), "pull with /bin/sh");
    assert_check_ok(&s);

    // bash, and a .bashrc that greets (Debian's bash reads it under sshd).
    s.user.set_shell("/bin/bash");
    std::fs::write(s.user.home.join(".bashrc"), "echo Welcome to the mirror\n").expect("w");
    let out = pull("bash");
    assert!(!out.status.success(), "pull through a noisy bash worked");
    assert!(
        common::stderr(&out).contains("protocol version mismatch"),
        "{}",
        common::stderr(&out)
    );
    let fix = format!("usermod -s /bin/sh {name}");
    let report = assert_check_error(
        &s,
        &format!(
            "{name}'s login shell /bin/bash prints \"Welcome to the mirror\" for `bash -c true`"
        ),
        &fix,
    );
    eprintln!("--- noisy bash:\n{report}");

    s.user.set_shell("/usr/sbin/nologin");
    let out = pull("nologin");
    assert!(!out.status.success(), "pull through nologin worked");
    assert_check_error(
        &s,
        &format!(
            "{name}'s login shell /usr/sbin/nologin fails `nologin -c true` (exit 1: \"This account is currently not available.\")"
        ),
        &fix,
    );

    apply(&fix);
    assert_check_ok(&s);
    assert_ok(&pull("fixed"), "pull after the fix");
}

/// A key cut short when copied: sshd ignores its line, so the client
/// cannot log in; `check` says so, `authorized-keys` leaves it out and
/// says why.
#[test]
fn check_reports_a_truncated_key() {
    if !nonroot::prerequisites() || !nonroot::sshd_prerequisites() {
        return;
    }
    let s = Setup::new();
    let sshd = Sshd::start();
    common::set_mode(&sshd.dir, 0o755);
    common::set_mode(&sshd.authorized_keys, 0o644);
    let key = sshd.add_key(
        "gate-cut",
        &format!(
            "{} serve --policy {} --client c",
            common::sh_quote(s.gate.as_os_str()),
            common::sh_quote(s.world.policy.as_os_str()),
        ),
    );
    // The line as it was, with the key cut short by a few characters, as
    // authorized-keys wrote it before it checked keys.
    let line = std::fs::read_to_string(&sshd.authorized_keys).expect("read");
    let (opts, key_text) = line
        .trim_end()
        .split_once(" ssh-ed25519 ")
        .expect("key line");
    let (data, _comment) = key_text.split_once(' ').expect("comment");
    let cut = format!("ssh-ed25519 {} laptop", &data[..data.len() - 8]);
    std::fs::write(&sshd.authorized_keys, format!("{opts} {cut}\n")).expect("write");
    let name = &s.user.name;
    let out = sshd.rsync(
        &s.world,
        &key,
        &[],
        &[],
        &["-a", &format!("{name}@127.0.0.1:www/"), &s.dst("x")],
    );
    assert!(!out.status.success(), "logged in with a cut key");
    assert!(
        common::stderr(&out).contains("Permission denied"),
        "{}",
        common::stderr(&out)
    );
    edit_policy(
        &s,
        "[clients.c]\n",
        &format!("[clients.c]\nkey = \"{cut}\"\n"),
    );
    let report = assert_check_error(
        &s,
        "client 'c': its key does not parse (its data is cut short)",
        "the whole line of the client's public key file",
    );
    assert!(report.contains(&format!("{}:", s.world.policy.display())));
    let out = Command::new(&s.gate)
        .args(["authorized-keys", "--policy"])
        .arg(&s.world.policy)
        .output()
        .expect("authorized-keys");
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        common::stderr(&out),
        "rsync-gate: authorized-keys: no line for client 'c': its key does not parse (its data is cut short): sshd would ignore the line\n\
         rsync-gate: authorized-keys: no line for client 'solo': it has no key\n"
    );
}

/// `syslog = true` where nothing listens: serve goes on silently (syslog
/// is best effort), so only check can tell.
#[test]
fn check_reports_syslog_without_a_socket() {
    if !nonroot::prerequisites() {
        return;
    }
    let s = Setup::new();
    edit_policy(&s, "[gate]\n", "[gate]\nsyslog = true\n");
    let socket = s.world.root.join("log.sock");
    let check = || {
        let out = Command::new(&s.gate)
            .args(["check", "--account", &s.user.name, "--test-syslog-socket"])
            .arg(&socket)
            .arg("--policy")
            .arg(&s.world.policy)
            .output()
            .expect("check");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, report) = check();
    assert!(!ok, "{report}");
    let (_, fix) = error_with_fix(
        &report,
        &format!(
            "syslog = true, but {} takes no messages from {}",
            socket.display(),
            s.user.name
        ),
    );
    assert!(fix.contains("or set syslog = false"), "{fix}");
    // A socket the account may not write to.
    let listener = std::os::unix::net::UnixDatagram::bind(&socket).expect("bind");
    common::set_mode(&socket, 0o600);
    let (ok, report) = check();
    assert!(!ok && report.contains("Permission denied"), "{report}");
    common::set_mode(&socket, 0o666);
    let (ok, report) = check();
    assert!(ok, "{report}");
    drop(listener);
    // serve does not fail without /dev/log: nothing tells the operator.
    if !Path::new("/dev/log").exists() {
        let out = s.probe();
        assert_ok(&out, "ssh true without /dev/log");
        assert!(common::stderr(&out).is_empty(), "{}", common::stderr(&out));
    }
}

/// The gate's own path must be root's alone (the account must not be able
/// to replace what its forced command runs) and runnable by the account
/// (`cargo install` leaves it in root's 0700 home).
#[test]
fn check_and_authorized_keys_refuse_an_unsafe_gate_path() {
    if !nonroot::prerequisites() {
        return;
    }
    let s = Setup::new();
    edit_policy(
        &s,
        "[clients.c]\n",
        "[clients.c]\nkey = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIByjXTZyhMNg4FJ507SAZ4IU8ihtGHkvqwZqcfdhmePz c\"\n",
    );
    let name = s.user.name.clone();
    let run = |gate: &Path, args: &[&str]| -> Output {
        Command::new(gate)
            .args(args)
            .arg("--policy")
            .arg(&s.world.policy)
            .output()
            .expect("run the copy")
    };
    // 1. A copy the account owns.
    let bin = s.world.root.join("acct-bin");
    std::fs::create_dir(&bin).expect("mkdir");
    common::set_mode(&bin, 0o755);
    let owned = bin.join("rsync-gate");
    std::fs::copy(&s.gate, &owned).expect("copy gate");
    common::set_mode(&owned, 0o755);
    s.user.chown(&owned);
    let out = run(&owned, &["check", "--account", &name]);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success(), "{report}");
    let (_, fix) = error_with_fix(
        &report,
        &format!(
            "the gate's own path {} is not safe to put in authorized_keys: {} is owned by {} (uid {})",
            owned.display(),
            owned.display(),
            s.user.name,
            s.user.uid
        ),
    );
    assert!(
        fix.starts_with(&format!(
            "install -o root -g root -m 0755 {} /usr/local/bin/rsync-gate",
            owned.display()
        )),
        "{fix}"
    );
    let out = run(&owned, &["authorized-keys"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(
        common::stderr(&out).contains(&format!(
            "refusing to write authorized_keys lines that run {}: {} is owned by {} (uid {})",
            owned.display(),
            owned.display(),
            s.user.name,
            s.user.uid
        )),
        "{}",
        common::stderr(&out)
    );
    // 2. root's, in a directory only root can enter (~/.cargo/bin).
    let home = s.world.root.join("roothome");
    std::fs::create_dir_all(home.join(".cargo/bin")).expect("mkdir");
    common::set_mode(&home, 0o700);
    common::set_mode(&home.join(".cargo"), 0o755);
    common::set_mode(&home.join(".cargo/bin"), 0o755);
    let hidden = home.join(".cargo/bin/rsync-gate");
    std::fs::copy(&s.gate, &hidden).expect("copy gate");
    common::set_mode(&hidden, 0o755);
    // What serve would meet: the account cannot even start it.
    let shim = s.world.root.join("bin/hidden-shim");
    common::install_exec(
        &shim,
        &format!(
            "#!/bin/sh\nshift\nexec /usr/bin/setpriv --reuid={} --regid={} --clear-groups --reset-env \
             /usr/bin/env \"SSH_ORIGINAL_COMMAND=$*\" /bin/sh -c 'exec \"$0\" serve --policy \"$1\" --client c' {} {}\n",
            s.user.uid,
            s.user.gid,
            common::sh_quote(hidden.as_os_str()),
            common::sh_quote(s.world.policy.as_os_str())
        ),
    );
    let out = Command::new("/usr/bin/rsync")
        .arg("-e")
        .arg(&shim)
        .args(["-a", "h:www/", &s.dst("x")])
        .output()
        .expect("rsync");
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("Permission denied"),
        "{}",
        common::stderr(&out)
    );
    let out = run(&hidden, &["check", "--account", &name]);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success(), "{report}");
    let (_, fix) = error_with_fix(
        &report,
        &format!(
            "{name} cannot run the gate {} (Permission denied",
            hidden.display()
        ),
    );
    assert!(fix.starts_with("install -o root -g root -m 0755 "), "{fix}");
    let out = run(&hidden, &["authorized-keys"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        common::stderr(&out).contains(&format!(
            "{} is not searchable by others (mode 700), so no SSH account but root can run {}",
            home.display(),
            hidden.display()
        )),
        "{}",
        common::stderr(&out)
    );
    // The installed one is fine for both.
    let out = run(&s.gate, &["authorized-keys"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert_eq!(
        common::stderr(&out),
        "rsync-gate: authorized-keys: no line for client 'solo': it has no key\n"
    );
    assert_check_ok(&s);
}

/// rsync and a trigger's job in a directory the account cannot enter.
#[test]
fn check_reports_programs_the_account_cannot_run() {
    if !nonroot::prerequisites() {
        return;
    }
    let s = Setup::new();
    let private = s.world.root.join("private");
    std::fs::create_dir(&private).expect("mkdir");
    common::set_mode(&private, 0o700);
    let rsync = private.join("rsync");
    std::fs::copy("/usr/bin/rsync", &rsync).expect("copy rsync");
    common::set_mode(&rsync, 0o755);
    let job = private.join("job");
    common::install_exec(&job, "#!/bin/sh\nexit 0\n");
    edit_policy(
        &s,
        "rsync = \"/usr/bin/rsync\"",
        &format!("rsync = \"{}\"", rsync.display()),
    );
    edit_policy(
        &s,
        "[clients.solo]\n",
        &format!(
            "[triggers.t]\ncommand = [\"{}\"]\n\n[clients.up]\ntrigger = \"t\"\n\n[clients.solo]\n",
            job.display()
        ),
    );
    let out = s.rsync(&["-a", "h:www/", &s.dst("x")]);
    assert!(
        !out.status.success(),
        "pull with an rsync the account cannot run"
    );
    let name = &s.user.name;
    let report = assert_check_error(
        &s,
        &format!(
            "{name} cannot run rsync {} (Permission denied",
            rsync.display()
        ),
        &format!("chmod o+x {}", private.display()),
    );
    let (_, fix) = error_with_fix(
        &report,
        &format!(
            "trigger 't': {} cannot be executed by {name}",
            job.display()
        ),
    );
    assert_eq!(fix, format!("chmod o+x {}", private.display()));
    apply(fix);
    assert_check_ok(&s);
    assert_ok(
        &s.rsync(&["-a", "h:www/", &s.dst("y")]),
        "pull after the fix",
    );
}

/// Without `--account`, check finds the accounts from their
/// authorized_keys files; two accounts on one policy share its lock_dir,
/// which fails.
#[test]
fn check_finds_the_accounts_that_use_the_policy() {
    if !nonroot::prerequisites() {
        return;
    }
    let s = Setup::new();
    edit_policy(
        &s,
        "[clients.c]\n",
        "[clients.c]\nkey = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIByjXTZyhMNg4FJ507SAZ4IU8ihtGHkvqwZqcfdhmePz c\"\n",
    );
    let keys = Command::new(&s.gate)
        .args(["authorized-keys", "--policy"])
        .arg(&s.world.policy)
        .output()
        .expect("authorized-keys");
    assert!(keys.status.success(), "{}", common::stderr(&keys));
    let ak = s.user.home.join(".ssh/authorized_keys");
    std::fs::write(&ak, &keys.stdout).expect("write authorized_keys");
    let check = || {
        let out = Command::new(&s.gate)
            .args(["check", "-v", "--policy"])
            .arg(&s.world.policy)
            .output()
            .expect("check");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, report) = check();
    assert!(ok, "{report}");
    assert!(
        report.contains(&format!("; account {})", s.user.name)),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "{}:1 runs {} for client c",
            ak.display(),
            s.gate.display()
        )),
        "{report}"
    );
    assert!(!report.contains("checked for root"), "{report}");
    // A second account with a line for the same policy.
    let other = TestAccount::create(&s.world.root.join("home"));
    std::fs::write(other.home.join(".ssh/authorized_keys"), &keys.stdout).expect("w");
    let (ok, report) = check();
    assert!(!ok, "{report}");
    let (text, fix) = error_with_fix(&report, "all run the gate with");
    assert!(
        text.contains(&format!("the accounts {}, {}", s.user.name, other.name))
            || text.contains(&format!("the accounts {}, {}", other.name, s.user.name)),
        "{text}"
    );
    assert!(
        fix.contains("its own policy, audit log and lock_dir"),
        "{fix}"
    );
}

/// `-v` says what the gate will run with.
#[test]
fn check_verbose_prints_the_effective_setup() {
    if !nonroot::prerequisites() {
        return;
    }
    let s = Setup::new();
    let out = Command::new(&s.gate)
        .args(["check", "-v", "--account", &s.user.name, "--policy"])
        .arg(&s.world.policy)
        .output()
        .expect("check");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{report}");
    eprintln!("--- check -v:\n{report}");
    let line = |name: &str| {
        report
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} line:\n{report}"))
            .to_string()
    };
    let version = Command::new("/usr/bin/rsync")
        .arg("--version")
        .output()
        .unwrap();
    let first = String::from_utf8_lossy(&version.stdout)
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(line("rsync").contains(&first), "{report}");
    assert!(line("rsync").contains("--confine-root: "), "{report}");
    assert!(line("rsync").contains("--drop-D: "), "{report}");
    crate::common::assert_landlock_shown(&line("landlock"));
    assert!(
        line("account").contains(&format!("{} (uid {}", s.user.name, s.user.uid)),
        "{report}"
    );
    assert!(
        line("shell").contains("/bin/sh: `sh -c true` prints nothing and exits 0"),
        "{report}"
    );
    assert!(
        line("gate").contains(&s.gate.display().to_string()),
        "{report}"
    );
    assert!(
        line("audit_log").contains(&s.world.audit.display().to_string()),
        "{report}"
    );
    assert!(
        line("lock_dir").contains(&s.world.run.display().to_string()),
        "{report}"
    );
}

/// The closing note: `check` for a policy with five different
/// mistakes (printed for the record).
#[test]
fn check_output_for_five_mistakes() {
    if !nonroot::prerequisites() {
        return;
    }
    let s = Setup::new();
    // 1. The audit log was never created for the account.
    std::fs::remove_file(&s.world.audit).expect("rm log");
    // 2. The policy is root's 0600.
    common::set_mode(&s.world.policy, 0o600);
    // 3. A key cut short.
    edit_policy(
        &s,
        "[clients.c]\n",
        "[clients.c]\nkey = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIByjXTZyhMNg4FJ507SAZ4IU8ihtGHkvq laptop\"\n",
    );
    // 4. lock_dir/daemon left behind by another account.
    let daemon = s.world.run.join("daemon");
    std::fs::create_dir(&daemon).expect("mkdir");
    common::set_mode(&daemon, 0o755);
    chown(&daemon, 65534, 65534);
    // 5. A login shell whose startup file prints.
    s.user.set_shell("/bin/bash");
    std::fs::write(s.user.home.join(".bashrc"), "echo Welcome to the mirror\n").expect("w");
    let (ok, report) = s.check(&s.world.policy);
    eprintln!(
        "--- rsync-gate check --policy {} --account {}\n{report}",
        s.world.policy.display(),
        s.user.name
    );
    assert!(!ok);
    for needle in [
        "does not exist, and",
        "cannot read the policy file",
        "its key does not parse",
        &format!(
            "{} is owned by {}",
            daemon.display(),
            rsync_gate::trust::owner_name(65534)
        ),
        "prints \"Welcome to the mirror\"",
    ] {
        error_with_fix(&report, needle);
    }
    assert!(report.ends_with("5 error(s)\n"), "{report}");
}
