//! Daemon over SSH (`host::module`): the real rsync client through the
//! gate via the sshd-playing shim, with the gate running as root (rsync
//! chroots into each module) and as an unprivileged account (no chroot).

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use crate::common::{
    World, assert_same_tree, gate_bin, install_exec, real_rsync, sample_tree, set_mode, sh_quote,
    snapshot, stderr, tree,
};

/// Who the gate runs as.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Account {
    Root,
    Nobody,
}

pub(crate) const NOBODY: u32 = 65534;

pub(crate) struct Daemon {
    pub(crate) w: World,
    pub(crate) account: Account,
}

pub(crate) fn chown(p: &std::path::Path, uid: u32) {
    nix::unistd::chown(
        p,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(uid)),
    )
    .unwrap();
}

pub(crate) fn daemon_world(account: Account) -> Daemon {
    let w = World::new();
    let www = w.module_dir("www");
    sample_tree(&www);
    let outside = w.root.join("outside");
    std::fs::create_dir(&outside).unwrap();
    set_mode(&outside, 0o755);
    std::fs::write(outside.join("secret.txt"), "top secret\n").unwrap();
    std::os::unix::fs::symlink(&outside, www.join("out")).unwrap();
    std::os::unix::fs::symlink("../../outside/secret.txt", www.join("sub/leak")).unwrap();
    let up = w.module_dir("up");
    let backup = w.module_dir("backup");
    let drop = w.module_dir("drop");
    let secret = w.module_dir("secret");
    std::fs::write(secret.join("s"), "s").unwrap();
    if account == Account::Nobody {
        // The account owns what it may write; the gate's own files stay
        // root's, with the audit log itself writable by the account.
        for d in [&up, &backup, &drop] {
            chown(d, NOBODY);
        }
        std::fs::write(&w.audit, "").unwrap();
        chown(&w.audit, NOBODY);
        set_mode(&w.audit, 0o600);
        let daemon_dir = w.run.join("daemon");
        std::fs::create_dir(&daemon_dir).unwrap();
        chown(&daemon_dir, NOBODY);
        chown(&w.run, NOBODY);
        chown(&w.client, NOBODY);
    }
    w.write_policy(
        r#"
[modules.www]
path = "{srv}/www"
comment = "the web site"

[modules.up]
path = "{srv}/up"
read_only = false

[modules.backup]
path = "{srv}/backup"
read_only = false
delete = true

[modules.drop]
path = "{srv}/drop"
read_only = false
write_only = true
overwrite = false
list = false

[modules.secret]
path = "{srv}/secret"

[clients.c]
modules = ["www", "up", "backup", "drop"]
"#,
    );
    Daemon { w, account }
}

impl Daemon {
    /// The shim that plays sshd for this account; `extra_env` lands in the
    /// gate's environment as AcceptEnv would put it there.
    fn shim(&self, extra_env: &[(&str, &str)]) -> PathBuf {
        let path = self.w.root.join(format!("bin/dshim-{}", extra_env.len()));
        // The client runs as the account, and the gate inherits that uid
        // from the shim as it would from sshd.
        let env: String = extra_env
            .iter()
            .map(|(k, v)| format!("{k}={} ", sh_quote(OsStr::new(v))))
            .collect();
        install_exec(
            &path,
            &format!(
                "#!/bin/sh\nshift\nSSH_ORIGINAL_COMMAND=\"$*\" SSH_CONNECTION=\"127.0.0.1 40000 127.0.0.1 22\" {env}\
                                  exec {}{} serve --policy {} --client c\n",
                sh_quote(gate_bin().as_os_str()),
                if self.w.no_landlock {
                    " --test-no-landlock"
                } else {
                    ""
                },
                sh_quote(self.w.policy.as_os_str()),
            ),
        );
        path
    }

    fn rsync_env(&self, env: &[(&str, &str)], args: &[&str]) -> Output {
        let shim = self.shim(env);
        let mut cmd = Command::new("/usr/bin/rsync");
        cmd.arg("-e")
            .arg(&shim)
            .args(args)
            .current_dir(&self.w.client)
            .stdin(Stdio::null());
        if self.account == Account::Nobody {
            // The client side runs as the account too, so it can read back
            // what it pushed and write what it pulls.
            cmd.uid(NOBODY).gid(NOBODY);
        }
        cmd.output().unwrap()
    }

    pub(crate) fn rsync(&self, args: &[&str]) -> Output {
        self.rsync_env(&[], args)
    }

    pub(crate) fn ok(&self, args: &[&str]) -> Output {
        let o = self.rsync(args);
        assert!(
            o.status.success(),
            "{:?} rsync {args:?}: {}",
            self.account,
            stderr(&o)
        );
        o
    }

    pub(crate) fn refused(&self, args: &[&str], message: &str) {
        assert!(!message.is_empty(), "a refusal test names the reason");
        let before = (
            snapshot(&self.w.root.join("srv")),
            snapshot(&self.w.root.join("outside")),
        );
        let o = self.rsync(args);
        assert!(
            !o.status.success(),
            "{:?} rsync {args:?} succeeded",
            self.account
        );
        let err = stderr(&o);
        assert!(
            err.contains(message),
            "{:?} rsync {args:?}: want {message:?} in:\n{err}",
            self.account
        );
        let after = (
            snapshot(&self.w.root.join("srv")),
            snapshot(&self.w.root.join("outside")),
        );
        assert!(before == after, "rsync {args:?} changed the server");
    }

    pub(crate) fn srv(&self, m: &str) -> PathBuf {
        self.w
            .root
            .join("srv")
            .join(crate::common::module_dir_name(m))
    }

    pub(crate) fn dst(&self, name: &str) -> String {
        let p = self.w.client.join(name);
        format!("{}/", p.display())
    }

    pub(crate) fn src(&self) -> PathBuf {
        let src = self.w.client.join("src");
        std::fs::create_dir_all(&src).unwrap();
        set_mode(&src, 0o755);
        sample_tree(&src);
        if self.account == Account::Nobody {
            let status = Command::new("chown")
                .args(["-R", "65534:65534"])
                .arg(&src)
                .status()
                .unwrap();
            assert!(status.success());
        }
        src
    }

    /// Records the hooks wrote (one per in-band request and its end).
    /// The last daemon session's decision record.
    fn session(&self) -> serde_json::Value {
        self.w
            .audit_records()
            .into_iter()
            .rev()
            .find(|r| r["event"] == "decision" && r["mode"] == "daemon")
            .expect("a daemon session record")
    }

    fn request_records(&self) -> Vec<serde_json::Value> {
        self.w
            .audit_records()
            .into_iter()
            .filter(|r| {
                r["mode"] != "daemon"
                    && (r["request"].is_string() || r["event"] == "end" && r["mode"].is_null())
            })
            .collect()
    }
}

pub(crate) fn both() -> Vec<Daemon> {
    vec![daemon_world(Account::Root), daemon_world(Account::Nobody)]
}

#[test]
fn lists_exactly_the_clients_listable_modules() {
    let Some(_) = real_rsync() else { return };
    for d in both() {
        let o = d.ok(&["h::"]);
        let out = String::from_utf8_lossy(&o.stdout);
        let names: Vec<&str> = out
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(names, ["www", "up", "backup"], "{:?}: {out}", d.account);
        assert!(out.contains("the web site"));
        let last = d.w.last_decision();
        assert_eq!(last["mode"], "daemon");
        assert_eq!(
            last["modules"],
            serde_json::json!(["www", "up", "backup", "drop"])
        );
        // The kernel sandbox covers daemon mode too (the union of the
        // client's module roots), on kernels that have Landlock.
        if crate::common::require_landlock() {
            assert_eq!(last["sandbox"], "applied", "{last}");
        }
        let notes = last["notes"].to_string();
        assert!(notes.contains("daemon/c.conf"), "{notes}");
    }
}

#[test]
fn pull_push_and_secluded_args() {
    let Some(_) = real_rsync() else { return };
    for d in both() {
        d.ok(&["-a", "h::www/", &d.dst("pull")]);
        assert_same_tree(&d.srv("www"), &d.w.client.join("pull"));
        d.ok(&["-as", "h::www/dir with space/", &d.dst("s")]);
        assert_same_tree(&d.srv("www").join("dir with space"), &d.w.client.join("s"));
        d.ok(&["-a", "h::www/*.txt", &d.dst("g")]);
        let names: Vec<_> = tree(&d.w.client.join("g")).into_keys().collect();
        assert_eq!(
            names,
            [PathBuf::from("a.txt"), PathBuf::from("b.txt")],
            "{:?}",
            d.account
        );
        let src = d.src();
        d.ok(&["-a", &format!("{}/", src.display()), "h::up/in/"]);
        let got = tree(&d.srv("up").join("in"));
        assert_eq!(got.len(), tree(&src).len(), "{:?}", d.account);
        assert_eq!(
            std::fs::read(d.srv("up").join("in/sub/deeper/d.bin")).unwrap(),
            (0u8..=255).collect::<Vec<u8>>()
        );
        // Pushed files belong to the SSH account in both forms.
        let owner = std::fs::metadata(d.srv("up").join("in/a.txt"))
            .unwrap()
            .uid();
        let want = if d.account == Account::Root {
            0
        } else {
            NOBODY
        };
        assert_eq!(owner, want, "{:?}", d.account);
        d.ok(&[
            "-as",
            &format!("{}/", src.display()),
            "h::up/odd dir;$(id)/",
        ]);
        assert!(d.srv("up").join("odd dir;$(id)/a.txt").is_file());
        d.ok(&[
            "-a",
            "--delete",
            &format!("{}/", src.display()),
            "h::backup/b/",
        ]);
    }
}

#[test]
fn refusals_are_the_gates_and_change_nothing() {
    let Some(_) = real_rsync() else { return };
    for d in both() {
        let src = d.src();
        let s = format!("{}/", src.display());
        d.refused(
            &["-a", &s, "h::www/"],
            "rsync-gate: denied: module 'www' is read-only",
        );
        d.refused(
            &["-a", "h::secret/", &d.dst("x")],
            "Unknown module 'secret'",
        );
        d.refused(
            &["-a", "--delete", &s, "h::up/"],
            "rsync-gate: denied: option --delete is not allowed in module 'up' (delete = false)",
        );
        d.refused(
            &["-a", "h::drop/", &d.dst("x")],
            "rsync-gate: denied: module 'drop' is write-only",
        );
        d.refused(
            &["-r", &s, "h::drop/"],
            "rsync-gate: denied: option uploads without --ignore-existing is not allowed in module 'drop'",
        );
        d.refused(
            &["-r", "--ignore-existing", &s, "h::drop/"],
            "rsync-gate: denied: option uploads without --whole-file (-W) is not allowed in module 'drop' (write_only = true: ",
        );
        d.ok(&["-rW", "--ignore-existing", &s, "h::drop/"]);
        d.refused(
            &["-a", "-M--max-alloc=0", "h::www/", &d.dst("x")],
            "rsync-gate: denied: bad value for --max-alloc",
        );
        d.refused(
            &["-aL", "h::www/", &d.dst("x")],
            "option --copy-links (-L) is not allowed in module 'www'",
        );
        d.refused(
            &["-a", "--temp-dir=../../outside", &s, "h::up/t/"],
            "leads outside its module",
        );
    }
}

#[test]
fn a_symlink_pointing_out_of_a_module_does_not_leak() {
    let Some(_) = real_rsync() else { return };
    for d in both() {
        // Through the directory symlink: refused by the gate's checks.
        d.refused(
            &["-a", "h::www/out/", &d.dst("x")],
            "leads outside its module",
        );
        d.refused(
            &["-a", "h::www/out/secret.txt", &d.dst("x")],
            "leads outside its module",
        );
        // The leaf link travels as a link; its target's content never does.
        d.ok(&["-a", "h::www/sub/", &d.dst("sub")]);
        let leak = d.w.client.join("sub/leak");
        assert!(
            std::fs::symlink_metadata(&leak)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(!d.w.client.join("x").exists());
        let pulled = tree(&d.w.client.join("sub"));
        for (_, e) in pulled {
            if let crate::common::Entry::File { content, .. } = e {
                assert_ne!(content, b"top secret\n", "{:?} leaked", d.account);
            }
        }
        // A pushed symlink is munged (writable modules default to it), so
        // nothing can be reached through it afterwards.
        let src = d.w.client.join("linksrc");
        std::fs::create_dir(&src).unwrap();
        std::os::unix::fs::symlink(d.w.root.join("outside"), src.join("escape")).unwrap();
        d.ok(&["-a", &format!("{}/", src.display()), "h::up/l/"]);
        let stored = std::fs::read_link(d.srv("up").join("l/escape")).unwrap();
        assert!(stored.starts_with("/rsyncd-munged/"), "{stored:?}");
        // The stored link points at /rsyncd-munged/...: nothing there.
        d.refused(
            &["-a", "h::up/l/escape/", &d.dst("y")],
            "rsync-gate: denied: path 'up/l/escape/' is a dangling symlink",
        );
        assert!(!d.w.client.join("y/secret.txt").exists());
    }
}

#[test]
fn each_request_leaves_its_audit_lines() {
    let Some(_) = real_rsync() else { return };
    for d in both() {
        d.ok(&["-a", "h::www/a.txt", &d.dst("one")]);
        let _ = d.rsync(&["-a", &format!("{}/", d.src().display()), "h::www/"]);
        let recs = d.w.audit_records();
        let sessions: Vec<&serde_json::Value> =
            recs.iter().filter(|r| r["mode"] == "daemon").collect();
        assert_eq!(
            sessions.len(),
            4,
            "{:?}: two sessions, decision and end each: {recs:#?}",
            d.account
        );
        let reqs = d.request_records();
        // Pull: decision from pre-xfer, end from post-xfer.
        let pull = &reqs[0];
        assert_eq!(pull["event"], "decision");
        assert_eq!(pull["decision"], "allow");
        assert_eq!(pull["mode"], "sender");
        assert_eq!(pull["modules"], serde_json::json!(["www"]));
        assert_eq!(pull["request"], "www/a.txt");
        assert_eq!(pull["client"], "c");
        assert_eq!(pull["source"]["addr"], "127.0.0.1");
        assert_eq!(pull["session"], sessions[0]["session"]);
        let end = &reqs[1];
        assert_eq!(end["event"], "end");
        assert_eq!(end["exit_status"], 0);
        assert_eq!(end["modules"], serde_json::json!(["www"]));
        // Refused push: its reason.
        let push = &reqs[2];
        assert_eq!(push["decision"], "deny");
        assert_eq!(push["reason"]["code"], "read_only");
        assert_eq!(push["mode"], "receiver");
        assert_eq!(push["request"], "www/");
    }
}

#[test]
fn client_environment_cannot_switch_the_hooks_off_or_spoof_the_address() {
    let Some(_) = real_rsync() else { return };
    let d = daemon_world(Account::Root);
    let text = std::fs::read_to_string(&d.w.policy).unwrap();
    std::fs::write(
        &d.w.policy,
        text.replace("[clients.c]\n", "[clients.c]\nfrom = [\"127.0.0.1\"]\n"),
    )
    .unwrap();
    let src = d.src();
    let o = d.rsync_env(
        &[
            ("RSYNC_NO_XFER_EXEC", "1"),
            ("REMOTE_HOST", "10.9.9.9"),
            ("RSYNC_SHELL", "/bin/false"),
        ],
        &["-a", &format!("{}/", src.display()), "h::www/"],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("rsync-gate: denied: module 'www' is read-only"),
        "{}",
        stderr(&o)
    );
    let reqs = d.request_records();
    assert_eq!(reqs[0]["source"]["addr"], "127.0.0.1");
}

#[test]
fn generated_config_is_deterministic_and_not_in_any_module() {
    let Some(_) = real_rsync() else { return };
    let d = daemon_world(Account::Root);
    d.ok(&["h::"]);
    let conf = d.w.run.join("daemon/c.conf");
    let first = std::fs::read_to_string(&conf).unwrap();
    let ino = std::fs::metadata(&conf).unwrap().ino();
    d.ok(&["h::"]);
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), first);
    assert_eq!(
        std::fs::metadata(&conf).unwrap().ino(),
        ino,
        "unchanged content is not rewritten"
    );
    assert!(first.contains("[www]") && !first.contains("[secret]"));
    assert!(!first.contains("rsh"), "refusing rsh would refuse -e");
    let litter: Vec<_> = std::fs::read_dir(d.w.run.join("daemon"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(litter, [std::ffi::OsString::from("c.conf")]);
    // explain shows the same config.
    let o = Command::new(gate_bin())
        .args(["explain", "--policy"])
        .arg(&d.w.policy)
        .args(["--client", "c", "--", "rsync --server --daemon ."])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(first.trim_end()), "{out}");
}

/// rsync runs daemon hooks as `$RSYNC_SHELL -c COMMAND`, and the gate is
/// that program: it accepts only its own hook command lines, so no shell
/// runs, whatever the command.
#[test]
fn the_gate_is_the_only_shell_the_daemon_gets() {
    let d = daemon_world(Account::Root);
    let marker = d.w.root.join("pwned");
    for cmd in [
        format!("touch {}", marker.display()),
        format!(
            "{} hook pre-xfer --policy {} --client c; touch {}",
            gate_bin().display(),
            d.w.policy.display(),
            marker.display()
        ),
        format!(
            "{} serve --policy {} --client c",
            gate_bin().display(),
            d.w.policy.display()
        ),
        format!(
            "{} hook pre-xfer --policy {} --client c extra",
            gate_bin().display(),
            d.w.policy.display()
        ),
        format!(
            "relative/rsync-gate hook pre-xfer --policy {} --client c",
            d.w.policy.display()
        ),
        "/bin/sh -c id".to_string(),
    ] {
        let o = Command::new(gate_bin())
            .arg("-c")
            .arg(&cmd)
            .env_clear()
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(127), "{cmd}");
        assert_eq!(
            stderr(&o),
            "rsync-gate: denied: not a hook command line\n",
            "{cmd}"
        );
    }
    assert!(!marker.exists());
    // Its own line runs the hook (here: a pre-xfer check that refuses a
    // push into the read-only module, on stdout as rsync expects).
    let line = format!(
        "{} hook pre-xfer --policy {} --client c",
        sh_quote(gate_bin().as_os_str()),
        sh_quote(d.w.policy.as_os_str())
    );
    let o = Command::new(gate_bin())
        .arg("-c")
        .arg(&line)
        .env_clear()
        .env("RSYNC_MODULE_NAME", "www")
        .env("RSYNC_ARG0", "rsyncd")
        .env("RSYNC_ARG1", "--server")
        .env("RSYNC_ARG2", "-r")
        .env("RSYNC_ARG3", ".")
        .env("RSYNC_ARG4", "x/")
        .env("RSYNC_REQUEST", "www/x/")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "rsync-gate: denied: module 'www' is read-only\n"
    );
    // And the generated config's daemon really runs its hooks through it.
    let Some(_) = real_rsync() else { return };
    d.ok(&["h::"]);
    let conf = std::fs::read_to_string(d.w.run.join("daemon/c.conf")).unwrap();
    assert!(conf.contains("pre-xfer exec = "));
    let last = d.w.last_decision();
    assert!(last["argv"].to_string().contains("--daemon"));
}

/// Without the kernel sandbox (the gate's test switch for a kernel without
/// Landlock) the hook must keep device and special files out of a
/// `devices = false` module itself: `-D` pushes are refused, others pass;
/// and a `--files-from` pull works, the daemon confining the listed names
/// (it was refused, as a -D refusal, before the hook went through the one
/// front half).
#[test]
fn without_the_sandbox_the_hook_decides_alone() {
    let Some(_) = real_rsync() else { return };
    for mut d in both() {
        d.w.no_landlock = true;
        let src = d.src();
        let s = format!("{}/", src.display());
        d.refused(
            &["-a", &s, "h::up/x/"],
            "rsync-gate: denied: -D (device and special files) is not allowed here: a daemon cannot be given --drop-D and no kernel sandbox is active",
        );
        let req = d.request_records();
        assert_eq!(req.last().unwrap()["reason"]["code"], "nodes_unconfined");
        d.ok(&["-rlt", &s, "h::up/y/"]);
        assert_eq!(d.session()["sandbox"], "unsupported by the kernel");
        let list = d.w.client.join("list");
        std::fs::write(&list, "a.txt\nsub/s.txt\n").unwrap();
        if d.account == Account::Nobody {
            chown(&list, NOBODY);
        }
        d.ok(&[
            "-a",
            &format!("--files-from={}", list.display()),
            "h::www/",
            &d.dst("ff"),
        ]);
        let got: Vec<_> = tree(&d.w.client.join("ff")).into_keys().collect();
        assert_eq!(
            got,
            [
                PathBuf::from("a.txt"),
                PathBuf::from("sub"),
                PathBuf::from("sub/s.txt")
            ],
            "{:?}",
            d.account
        );
        // With a sandbox-off policy the same holds.
        let text = std::fs::read_to_string(&d.w.policy).unwrap();
        d.w.no_landlock = false;
        d.w.sandbox = Some("off");
        d.w.write_policy(&text[text.find("[modules.www]").unwrap()..]);
        d.ok(&[
            "-a",
            &format!("--files-from={}", list.display()),
            "h::www/",
            &d.dst("ff2"),
        ]);
        assert_eq!(d.session()["sandbox"], "off");
    }
}

/// A client that speaks the daemon protocol itself (the greeting, the
/// module line, then its arguments, NUL-terminated as protocol 30 and later
/// send them) and so can put anything after the `.`: what a rewritten
/// rsync client sends. It stops there (it does not speak the transfer
/// protocol): the hook's decision is in the audit log. Returns what the
/// server said and the gate's exit status.
pub(crate) fn raw_inband(w: &World, module: &str, args: &[&str]) -> (String, Option<i32>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut gate = Command::new(gate_bin());
    if w.no_landlock {
        gate.arg("--test-no-landlock");
    }
    let mut child = gate
        .args(["serve", "--policy"])
        .arg(&w.policy)
        .args(["--client", "c"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("SSH_ORIGINAL_COMMAND", "rsync --server --daemon .")
        .env("SSH_CONNECTION", "127.0.0.1 40000 127.0.0.1 22")
        .current_dir(&w.client)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut to = child.stdin.take().unwrap();
    let mut from = BufReader::new(child.stdout.take().unwrap());
    let mut said = String::new();
    let mut line = String::new();
    from.read_line(&mut line).unwrap();
    assert!(line.starts_with("@RSYNCD: "), "no greeting: {line:?}");
    said.push_str(&line);
    to.write_all(b"@RSYNCD: 32.0 md5 md4\n").unwrap();
    to.write_all(format!("{module}\n").as_bytes()).unwrap();
    loop {
        line.clear();
        if from.read_line(&mut line).unwrap() == 0 {
            break;
        }
        said.push_str(&line);
        if line.trim_end() == "@RSYNCD: OK" {
            let mut words = Vec::new();
            for a in args {
                words.extend_from_slice(a.as_bytes());
                words.push(0);
            }
            words.push(0);
            to.write_all(&words).unwrap();
            break;
        }
    }
    drop(to);
    let mut rest = Vec::new();
    let _ = from.read_to_end(&mut rest);
    said.push_str(&String::from_utf8_lossy(&rest));
    let status = child.wait().unwrap();
    (said, status.code())
}

/// The pre-xfer hook's decision records.
fn hook_decisions(d: &Daemon) -> Vec<serde_json::Value> {
    d.request_records()
        .into_iter()
        .filter(|r| r["event"] == "decision")
        .collect()
}

/// rsync's option parser also takes options written after the `.` of an
/// in-band request; the hook reads them the same way and refuses any that
/// a `--` did not end, so a client that rewrites its arguments cannot slip
/// an option past the checks that exist only in the hook (`--files-from`
/// naming a server file on a drop box; `-D` without the sandbox).
#[test]
fn options_after_the_dot_of_a_rewritten_in_band_request_are_refused() {
    let mut d = daemon_world(Account::Root);
    d.w.no_landlock = true;
    let drop = d.srv("drop");
    let cases: &[(&str, &[&str])] = &[
        (
            "drop",
            &[
                "--server",
                "-logDtpre.iLsfxCIvu",
                ".",
                "--files-from=/etc/passwd",
                "drop/",
            ],
        ),
        ("up", &["--server", "-logtpre.iLsfxCIvu", ".", "-D", "up/"]),
        (
            "www",
            &[
                "--server",
                "--sender",
                "-logDtpre.iLsfxCIvu",
                ".",
                "www/",
                "--copy-links",
            ],
        ),
    ];
    for (module, args) in cases {
        let before = snapshot(&d.w.root.join("srv"));
        let decisions = hook_decisions(&d).len();
        let (said, status) = raw_inband(&d.w, module, args);
        assert_ne!(status, Some(0), "{args:?}: {said}");
        let records = hook_decisions(&d);
        assert_eq!(records.len(), decisions + 1, "{args:?}: {said}");
        let r = &records[decisions];
        assert_eq!(r["decision"], "deny", "{r}");
        assert_eq!(r["reason"]["code"], "option_after_paths", "{r}");
        assert_eq!(
            snapshot(&d.w.root.join("srv")),
            before,
            "{args:?} changed the server"
        );
    }
    // After a `--`, a word that begins with `-` is a path, as for rsync.
    let (said, _) = raw_inband(
        &d.w,
        "up",
        &["--server", "-logtpre.iLsfxCIvu", ".", "--", "up/-D"],
    );
    let r = hook_decisions(&d).pop().unwrap();
    assert_eq!(r["decision"], "allow", "{r} {said}");
    assert_eq!(r["request"], "-- up/-D", "{r}");
    assert!(drop.read_dir().unwrap().next().is_none());
}
