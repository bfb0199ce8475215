//! Hardening from the outside security review (issue 11): the gate's own
//! files kept out of writable modules, `lock_dir` and the audit log's
//! directory trusted only where nobody else can plant names, audit records
//! and argument lists bounded, a module `timeout` that frees the connection
//! slots of stalled clients, set-user/group-ID bits stripped from uploads,
//! bidi controls escaped, and rootless containers. The real rsync client
//! goes through the gate wherever a transfer is concerned.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common::{
    World, gate_bin, install_exec, real_rsync, require_landlock, set_mode, sh_quote, stderr,
};

/// A uid nobody on the test machine has.
const STRANGER: u32 = 4242;

fn chown(p: &Path, uid: u32) {
    nix::unistd::chown(p, Some(nix::unistd::Uid::from_raw(uid)), None).unwrap();
}

fn lchown(p: &Path, uid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), None).unwrap();
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `rsync-gate check` with this world's policy, as `gate` (the binary that
/// is checked as the gate's own).
fn check_with(w: &World, gate: &Path) -> Output {
    Command::new(gate)
        .arg("check")
        .arg("--policy")
        .arg(&w.policy)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap()
}

fn check(w: &World) -> Output {
    check_with(w, &gate_bin())
}

/// The refusal code of the last decision record.
fn last_code(w: &World) -> String {
    w.last_decision()["reason"]["code"]
        .as_str()
        .unwrap_or("<allowed>")
        .to_string()
}

/// Copy a file without this process holding it open for writing (see
/// [`install_exec`]).
fn copy_exec(from: &Path, to: &Path) {
    let o = Command::new("/bin/cp").arg(from).arg(to).output().unwrap();
    assert!(o.status.success(), "cp: {}", stderr(&o));
    set_mode(to, 0o755);
}

/// The audit log's lines as text (to measure them).
fn audit_lines(w: &World) -> Vec<String> {
    std::fs::read_to_string(&w.audit)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

// ---------------------------------------------------------------------------
// The gate's own files: the binary and the directories `include` names
// ---------------------------------------------------------------------------

/// A writable module that holds the gate binary (the program in every
/// `command=` line and daemon hook line): a push would replace it and the
/// next session would run the client's program. Refused in both request
/// forms, and `check` says why.
#[test]
fn a_writable_module_holding_the_gate_binary_is_refused() {
    if real_rsync().is_none() {
        return;
    }
    let w = World::new();
    let tools = w.module_dir("up");
    let gate = tools.join("rsync-gate");
    copy_exec(&gate_bin(), &gate);
    w.module_dir("www");
    w.write_policy(
        "[modules.up]\npath = \"{srv}/up\"\nread_only = false\n\
         [modules.www]\npath = \"{srv}/www\"\n\
         [clients.c]\nmodules = [\"up\", \"www\"]\n",
    );
    // sshd running the installed copy as the forced command.
    let shim = w.root.join("bin/shim-installed");
    install_exec(
        &shim,
        &format!(
            "#!/bin/sh\nshift\nSSH_ORIGINAL_COMMAND=\"$*\" SSH_CONNECTION=\"127.0.0.1 40000 127.0.0.1 22\" \
             exec {} serve --policy {} --client c\n",
            sh_quote(gate.as_os_str()),
            sh_quote(w.policy.as_os_str()),
        ),
    );
    let evil = w.client.join("evil");
    std::fs::create_dir(&evil).unwrap();
    install_exec(&evil.join("rsync-gate"), "#!/bin/sh\necho pwned\n");
    let original = std::fs::read(&gate).unwrap();
    let push = |target: &str| {
        Command::new("/usr/bin/rsync")
            .arg("-e")
            .arg(&shim)
            .args(["-a", "evil/", target])
            .current_dir(&w.client)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let o = push("h:up/");
    assert!(!o.status.success(), "the push went through");
    assert!(
        stderr(&o).contains("rsync-gate: denied: module 'up' is not safe to serve"),
        "{}",
        stderr(&o)
    );
    let d = w.last_decision();
    assert_eq!(d["reason"]["code"], "module_unsafe");
    let detail = d["reason"]["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("the gate's own file {}", gate.display())),
        "{detail}"
    );
    assert!(
        std::fs::read(&gate).unwrap() == original,
        "the binary changed"
    );
    // host::up: the daemon config leaves the module out.
    let o = push("h::up/");
    assert!(!o.status.success(), "the daemon push went through");
    assert!(stderr(&o).contains("Unknown module 'up'"), "{}", stderr(&o));
    assert!(
        std::fs::read(&gate).unwrap() == original,
        "the binary changed"
    );
    // check, run as that binary, names it.
    let o = check_with(&w, &gate);
    assert!(!o.status.success());
    assert!(
        stdout(&o).contains(&format!(
            "module 'up': it is writable and contains the gate's own file {}",
            gate.display()
        )),
        "{}",
        stdout(&o)
    );
    // The same tree served read-only is fine.
    w.write_policy("[modules.up]\npath = \"{srv}/up\"\n[clients.c]\nmodules = [\"up\"]\n");
    assert!(check_with(&w, &gate).status.success());
}

/// A directory `include` names, inside a writable module or reached through
/// a symlink inside one: a client could drop a policy file there (one that
/// root writes, in a root backup's module, is trusted like the rest).
#[test]
fn a_writable_module_reaching_an_include_directory_is_refused() {
    let w = World::new();
    let up = w.module_dir("up");
    let push = b"rsync --server -r . up/";
    let body = |include: &Path| {
        format!(
            "include = [\"{}/*.toml\"]\n[modules.up]\npath = \"{{srv}}/up\"\nread_only = false\n\
             [clients.c]\nmodules = [\"up\"]\n",
            include.display()
        )
    };
    // Directly inside.
    let conf = up.join("conf.d");
    std::fs::create_dir(&conf).unwrap();
    set_mode(&conf, 0o755);
    w.write_policy(&body(&conf));
    let o = w.serve("c", Some(push), &[]);
    assert!(!o.status.success());
    assert_eq!(last_code(&w), "module_unsafe");
    assert!(
        w.last_decision()["reason"]["detail"]
            .as_str()
            .unwrap()
            .contains(&conf.display().to_string())
    );
    let c = check(&w);
    assert!(!c.status.success());
    assert!(
        stdout(&c).contains("module 'up': it is writable and contains the gate's own file"),
        "{}",
        stdout(&c)
    );
    std::fs::remove_dir(&conf).unwrap();

    // Reached through a link inside the module: etc/conf.d -> up/link ->
    // real-conf/. The directory itself is outside, but the client can
    // replace up/link and so choose what the pattern reads.
    let real = w.root.join("real-conf");
    let etc = w.root.join("etc");
    for d in [&real, &etc] {
        std::fs::create_dir(d).unwrap();
        set_mode(d, 0o755);
    }
    std::os::unix::fs::symlink(&real, up.join("link")).unwrap();
    std::os::unix::fs::symlink(up.join("link"), etc.join("conf.d")).unwrap();
    w.write_policy(&body(&etc.join("conf.d")));
    let o = w.serve("c", Some(push), &[]);
    assert!(!o.status.success());
    assert_eq!(last_code(&w), "module_unsafe");
    assert!(!check(&w).status.success());

    // Without the link in the way, the module is served.
    std::fs::remove_file(etc.join("conf.d")).unwrap();
    std::os::unix::fs::symlink(&real, etc.join("conf.d")).unwrap();
    w.write_policy(&body(&etc.join("conf.d")));
    let c = check(&w);
    assert!(c.status.success(), "{}", stdout(&c));
    w.serve("c", Some(push), &[]);
    assert_eq!(w.last_decision()["decision"], "allow");
}

// ---------------------------------------------------------------------------
// lock_dir
// ---------------------------------------------------------------------------

/// `serve` applies the rule `check` reports: a `lock_dir` someone else
/// owns, or others may write in (sticky or not), refuses every session.
#[test]
fn serve_refuses_a_lock_dir_someone_else_could_change() {
    let w = World::new();
    w.module_dir("www");
    w.write_policy("[modules.www]\npath = \"{srv}/www\"\n[clients.c]\nmodules = [\"www\"]\n");
    let refused = |why: &str| {
        let o = w.serve("c", Some(b"true"), &[]);
        assert!(!o.status.success(), "served with lock_dir {why}");
        assert_eq!(
            stderr(&o),
            "rsync-gate: denied: the server's lock directory is not safe to use (its audit log says why)\n"
        );
        let d = w.last_decision();
        assert_eq!(d["reason"]["code"], "lock_dir_unsafe");
        let detail = d["reason"]["detail"].as_str().unwrap().to_string();
        assert!(detail.contains(why), "{detail}");
        let c = check(&w);
        assert!(!c.status.success());
        assert!(
            stdout(&c).contains(&format!("error: lock_dir: {}", w.run.display())),
            "{}",
            stdout(&c)
        );
    };
    chown(&w.run, STRANGER);
    refused(&format!("owned by uid {STRANGER}"));
    let o = w.serve("c", Some(b"rsync --server --sender -r . www/"), &[]);
    assert!(!o.status.success());
    assert_eq!(last_code(&w), "lock_dir_unsafe");
    chown(&w.run, 0);
    set_mode(&w.run, 0o777);
    refused("writable by others");
    set_mode(&w.run, 0o1777);
    refused("writable by others");
    set_mode(&w.run, 0o775);
    refused("writable by its group");
    set_mode(&w.run, 0o755);
    let o = w.serve("c", Some(b"true"), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Missing: created when first needed, then checked.
    std::fs::remove_dir(&w.run).unwrap();
    let o = w.serve("c", Some(b"true"), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// The attack: `lock_dir` in a directory everyone may write in (sticky, as
/// `/tmp`). Another user plants `daemon` as a link to a directory of root's;
/// a root session's daemon config would have replaced the file there.
#[test]
fn a_link_planted_in_a_shared_lock_dir_is_never_written_through() {
    let mut w = World::new();
    w.module_dir("www");
    let shared = w.root.join("shared");
    std::fs::create_dir(&shared).unwrap();
    set_mode(&shared, 0o1777);
    let victim = w.root.join("victim");
    std::fs::create_dir(&victim).unwrap();
    set_mode(&victim, 0o755);
    std::fs::write(victim.join("c.conf"), "precious\n").unwrap();
    let daemon = b"rsync --server --daemon .";
    let policy = "[modules.www]\npath = \"{srv}/www\"\n[clients.c]\nmodules = [\"www\"]\n";

    // lock_dir is the shared directory itself.
    w.run = shared.clone();
    w.write_policy(policy);
    std::os::unix::fs::symlink(&victim, shared.join("daemon")).unwrap();
    lchown(&shared.join("daemon"), STRANGER);
    let o = w.serve("c", Some(daemon), &[]);
    assert!(!o.status.success());
    assert_eq!(last_code(&w), "lock_dir_unsafe");
    assert_eq!(
        std::fs::read_to_string(victim.join("c.conf")).unwrap(),
        "precious\n"
    );
    std::fs::remove_file(shared.join("daemon")).unwrap();

    // lock_dir below it, made by someone else first (with the link inside).
    let run = shared.join("run");
    std::fs::create_dir(&run).unwrap();
    std::os::unix::fs::symlink(&victim, run.join("daemon")).unwrap();
    lchown(&run.join("daemon"), STRANGER);
    chown(&run, STRANGER);
    w.run = run.clone();
    w.write_policy(policy);
    let o = w.serve("c", Some(daemon), &[]);
    assert!(!o.status.success());
    assert_eq!(last_code(&w), "lock_dir_unsafe");
    assert_eq!(
        std::fs::read_to_string(victim.join("c.conf")).unwrap(),
        "precious\n"
    );

    // Made by the gate: its own, and the config lands there.
    std::fs::remove_file(run.join("daemon")).unwrap();
    std::fs::remove_dir(&run).unwrap();
    w.serve("c", Some(daemon), &[]);
    assert_eq!(w.last_decision()["decision"], "allow");
    let conf = run.join("daemon/c.conf");
    let md = std::fs::symlink_metadata(&conf).unwrap();
    assert!(md.is_file() && md.uid() == 0, "{md:?}");
    assert_eq!(std::fs::metadata(&run).unwrap().mode() & 0o7777, 0o755);
    assert_eq!(
        std::fs::read_to_string(victim.join("c.conf")).unwrap(),
        "precious\n"
    );
}

// ---------------------------------------------------------------------------
// The audit log's directory and file
// ---------------------------------------------------------------------------

/// An audit log in a root-owned sticky directory (such as one under
/// `/tmp`), or one someone else created first, is refused: that someone
/// could have made it a file of their own.
#[test]
fn an_audit_log_others_could_plant_is_refused() {
    let mut w = World::new();
    w.module_dir("www");
    let policy = "[modules.www]\npath = \"{srv}/www\"\n[clients.c]\nmodules = [\"www\"]\n";
    let refused = |w: &World, why: &str| {
        let o = w.serve("c", Some(b"true"), &[]);
        assert!(!o.status.success(), "served with an audit log {why}");
        assert_eq!(
            stderr(&o),
            "rsync-gate: denied: the audit log cannot be written, so nothing may run\n"
        );
        let c = check(w);
        assert!(!c.status.success());
        assert!(
            stdout(&c).contains("error: audit_log: ") && stdout(&c).contains(why),
            "{}",
            stdout(&c)
        );
    };
    let sticky = w.root.join("tmp");
    std::fs::create_dir(&sticky).unwrap();
    set_mode(&sticky, 0o1777);
    w.audit = sticky.join("audit.jsonl");
    w.write_policy(policy);
    refused(&w, "writable by others");
    assert!(
        !w.audit.exists(),
        "the log was created in a shared directory"
    );

    // Pre-created by someone else in a directory of root's.
    w.audit = w.root.join("log/audit.jsonl");
    w.write_policy(policy);
    std::fs::write(&w.audit, "").unwrap();
    set_mode(&w.audit, 0o600);
    chown(&w.audit, STRANGER);
    refused(&w, &format!("owned by uid {STRANGER}"));
    assert_eq!(std::fs::read(&w.audit).unwrap(), b"");
    chown(&w.audit, 0);
    let o = w.serve("c", Some(b"true"), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(check(&w).status.success());
}

// ---------------------------------------------------------------------------
// Bounded audit records and argument lists
// ---------------------------------------------------------------------------

fn many_files(dir: &Path, n: usize, name_len: usize) {
    std::fs::create_dir_all(dir).unwrap();
    set_mode(dir, 0o755);
    for i in 0..n {
        std::fs::write(dir.join(format!("{i:0>name_len$}")), "x").unwrap();
    }
}

/// A large wildcard expansion through the real client: within what the
/// kernel passes to a program it transfers, and its audit record lists the
/// options and the first paths with a count of the rest; beyond that it is
/// refused before anything runs, saying why.
#[test]
fn large_wildcard_expansions_are_bounded() {
    if real_rsync().is_none() {
        return;
    }
    let w = World::new();
    let up = w.module_dir("up");
    many_files(&up.join("many"), 1500, 40);
    many_files(&up.join("huge"), 900, 240);
    w.write_policy(
        "[modules.up]\npath = \"{srv}/up\"\nread_only = false\n[clients.c]\nmodules = [\"up\"]\n",
    );
    let dst = w.client.join("got");
    std::fs::create_dir(&dst).unwrap();
    let o = w.rsync_as("c", &["-a", "h:up/many/*", "got/"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_dir(&dst).unwrap().count(), 1500);
    let line = audit_lines(&w)
        .into_iter()
        .find(|l| l.contains("\"decision\":\"allow\""))
        .unwrap();
    // Unbounded, it would have been some 90 KB.
    assert!(
        line.len() < 32 * 1024,
        "an audit line of {} bytes",
        line.len()
    );
    let d: serde_json::Value = serde_json::from_str(&line).unwrap();
    let argv = d["argv"].as_array().unwrap();
    let omitted = d["argv_omitted"].as_u64().unwrap();
    assert!(argv.len() > 6 && argv.len() <= 256, "{}", argv.len());
    // The options, then as many paths as fit, and the count of the rest.
    let dot = argv.iter().position(|a| a == ".").unwrap();
    assert_eq!(argv[dot - 1], "--");
    assert_eq!((argv.len() - dot - 1) as u64 + omitted, 1500);

    // Ten patterns over 900 names of 240 bytes: 9000 paths, some 2.4 MB.
    let before = audit_lines(&w).len();
    let mut args = vec!["-a"];
    args.extend(["h:up/huge/*"; 10]);
    args.push("got/");
    let o = w.rsync_as("c", &args);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("rsync-gate: denied: the request expands to ")
            && err.contains("bytes of arguments, more than the server can pass to rsync"),
        "{err}"
    );
    let lines = audit_lines(&w);
    assert_eq!(lines.len(), before + 1, "one refusal record, nothing ran");
    assert!(lines.iter().all(|l| l.len() < 64 * 1024));
    assert_eq!(last_code(&w), "arguments_too_long");
}

// ---------------------------------------------------------------------------
// Bidi controls
// ---------------------------------------------------------------------------

/// Bidi overrides, isolates and marks a client sends are escaped in the
/// refusal it sees and in what `rsync-gate audit` shows.
#[test]
fn bidi_controls_are_escaped_in_refusals_and_the_audit_review() {
    let w = World::new();
    w.module_dir("www");
    w.write_policy("[modules.www]\npath = \"{srv}/www\"\n[clients.c]\nmodules = [\"www\"]\n");
    let bidi = [
        '\u{202e}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', '\u{200e}', '\u{200f}',
    ];
    for c in bidi {
        let escaped = c.escape_default().to_string();
        let command = format!("rsync --server --sender -r . w{c}ww/");
        let o = w.serve("c", Some(command.as_bytes()), &[]);
        let line = stderr(&o);
        assert_eq!(
            line,
            format!("rsync-gate: denied: no module 'w{escaped}ww' is available to this key\n")
        );
        let command = format!("{c}cat /etc/passwd{c}");
        let o = w.serve("c", Some(command.as_bytes()), &[]);
        assert_eq!(
            stderr(&o),
            format!(
                "rsync-gate: denied: only rsync may be run with this key (got '{escaped}cat')\n"
            )
        );
    }
    let raw_log = std::fs::read_to_string(&w.audit).unwrap();
    for (what, text) in [
        ("log", raw_log),
        (
            "audit",
            stdout(
                &Command::new(gate_bin())
                    .arg("audit")
                    .arg("--log")
                    .arg(&w.audit)
                    .arg("--denied")
                    .output()
                    .unwrap(),
            ),
        ),
        (
            "audit --json",
            stdout(
                &Command::new(gate_bin())
                    .arg("audit")
                    .arg("--log")
                    .arg(&w.audit)
                    .arg("--json")
                    .output()
                    .unwrap(),
            ),
        ),
    ] {
        assert!(text.lines().count() >= 14, "{what}: {text}");
        for c in bidi {
            assert!(!text.contains(c), "{what} holds a raw {c:?}: {text}");
            assert!(
                text.contains(&c.escape_default().to_string()),
                "{what} lacks {c:?} escaped: {text}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Module timeout
// ---------------------------------------------------------------------------

/// The direct children of `pid` that are rsync (the client's own forks;
/// not the remote-shell shim, which runs the gate).
fn rsync_children(pid: u32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some((comm, rest)) = stat.split_once(") ") else {
            continue;
        };
        let ppid = rest
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u32>().ok());
        if ppid == Some(pid) && comm.ends_with("(rsync") {
            out.push(p);
        }
    }
    out
}

/// Stop (as a stalled client would be) or kill a client and its forks.
fn signal_client(client: &Child, sig: Signal) {
    for p in rsync_children(client.id()) {
        let _ = kill(Pid::from_raw(p), sig);
    }
    let _ = kill(Pid::from_raw(client.id() as i32), sig);
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

/// A puller that stops reading (SIGSTOP: connected, silent) held its
/// `max_connections` slot for as long as it stayed so. With the module's
/// `timeout`, rsync ends the session after that much inactivity and the
/// slot is free again; meanwhile other clients are turned away. Both
/// request forms.
#[test]
fn a_stalled_puller_frees_its_slot_after_the_module_timeout() {
    if real_rsync().is_none() || !require_landlock() {
        return;
    }
    for daemon in [false, true] {
        let w = World::new();
        let www = w.module_dir("www");
        let data: Vec<u8> = (0..4_000_000u64).map(|i| (i * 7919 % 251) as u8).collect();
        std::fs::write(www.join("big"), &data).unwrap();
        w.write_policy(
            "[modules.www]\npath = \"{srv}/www\"\nmax_connections = 1\ntimeout = 3\n\
             [clients.c]\nmodules = [\"www\"]\n",
        );
        let src = if daemon { "h::www/" } else { "h:www/" };
        let mut first = Command::new("/usr/bin/rsync")
            .arg("-e")
            .arg(w.shim("c"))
            .args(["-a", "--bwlimit=200", src, "first/"])
            .current_dir(&w.client)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The transfer is under way: rsync holds the slot.
        let mut session = String::new();
        wait_for("the first session starts", Duration::from_secs(20), || {
            let started = audit_lines(&w).into_iter().find(|l| {
                l.contains("\"decision\":\"allow\"") && l.contains("\"mode\":\"sender\"")
            });
            if let Some(l) = started {
                let r: serde_json::Value = serde_json::from_str(&l).unwrap();
                session = r["session"].as_str().unwrap().to_string();
            }
            !session.is_empty() && std::fs::metadata(w.client.join("first")).is_ok()
        });
        std::thread::sleep(Duration::from_millis(500));
        signal_client(&first, Signal::SIGSTOP);
        let stalled = Instant::now();
        // Another client is turned away while the slot is held.
        let o = w.rsync_as("c", &["-a", src, "second/"]);
        assert!(
            !o.status.success(),
            "daemon={daemon}: a second session got in"
        );
        let err = stderr(&o);
        if daemon {
            assert!(err.contains("max connections (1) reached"), "{err}");
        } else {
            assert!(
                err.contains("module 'www' is at its connection limit"),
                "{err}"
            );
        }
        assert!(
            stalled.elapsed() < Duration::from_secs(3),
            "too slow to prove the slot was held"
        );
        // The stalled session ends after the timeout (3 s of inactivity).
        // (In host:: form the gate's own end record of the session, after
        // the hook's.)
        let ended = |w: &World| {
            audit_lines(w).iter().any(|l| {
                let r: serde_json::Value = serde_json::from_str(l).unwrap();
                // rsync's own status for a timeout: 30.
                r["event"] == "end"
                    && r["session"] == session.as_str()
                    && r["mode"] == if daemon { "daemon" } else { "sender" }
                    && r["exit_status"] == 30
            })
        };
        wait_for("the stalled session ends", Duration::from_secs(30), || {
            ended(&w)
        });
        let took = stalled.elapsed();
        assert!(
            took >= Duration::from_secs(2),
            "daemon={daemon}: ended after {took:?}, before the timeout"
        );
        // The slot is free: a new client gets through.
        let o = w.rsync_as("c", &["-a", src, "third/"]);
        assert!(o.status.success(), "daemon={daemon}: {}", stderr(&o));
        assert_eq!(std::fs::read(w.client.join("third/big")).unwrap(), data);
        signal_client(&first, Signal::SIGKILL);
        let _ = first.wait();
    }
}

/// A client that connects and never says anything (stopped before the
/// protocol starts) is ended after the module's timeout too, pushing as
/// pulling.
#[test]
fn a_client_silent_from_the_start_is_ended_after_the_module_timeout() {
    if real_rsync().is_none() {
        return;
    }
    let w = World::new();
    w.module_dir("up");
    w.write_policy(
        "[modules.up]\npath = \"{srv}/up\"\nread_only = false\nmax_connections = 1\ntimeout = 2\n\
         [clients.c]\nmodules = [\"up\"]\n",
    );
    // sshd, with the client stopping itself before the gate starts.
    let shim = w.root.join("bin/stop-shim");
    install_exec(
        &shim,
        &format!(
            "#!/bin/sh\nshift\nkill -STOP $PPID\nSSH_ORIGINAL_COMMAND=\"$*\" SSH_CONNECTION=\"127.0.0.1 40000 127.0.0.1 22\" \
             exec {} serve --policy {} --client c\n",
            sh_quote(gate_bin().as_os_str()),
            sh_quote(w.policy.as_os_str()),
        ),
    );
    let src = w.client.join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), "f\n").unwrap();
    for (n, args) in [(1, ["-a", "src/", "h:up/"]), (2, ["-a", "h:up/", "back/"])] {
        let mut client = Command::new("/usr/bin/rsync")
            .arg("-e")
            .arg(&shim)
            .args(args)
            .current_dir(&w.client)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let took = wait_for("the silent session ends", Duration::from_secs(30), || {
            audit_lines(&w)
                .iter()
                .filter(|l| l.contains("\"event\":\"end\"") && l.contains("\"exit_status\":30"))
                .count()
                == n
        });
        assert!(took >= Duration::from_secs(1), "{took:?}");
        signal_client(&client, Signal::SIGKILL);
        let _ = client.wait();
    }
    // Both sessions ran with the module's timeout.
    let timeouts = audit_lines(&w)
        .iter()
        .filter(|l| l.contains("\"--timeout=2\""))
        .count();
    assert_eq!(timeouts, 2);
}

// ---------------------------------------------------------------------------
// Set-user/group-ID bits
// ---------------------------------------------------------------------------

/// A root push (`-a`, and `--usermap='*:0'` for good measure) of a
/// set-user-ID file stores it without the bit, in both request forms,
/// unless the module says `setuid = true`.
#[test]
fn uploads_lose_set_user_and_group_id_bits_unless_the_module_keeps_them() {
    if real_rsync().is_none() {
        return;
    }
    let w = World::new();
    let up = w.module_dir("up");
    let keep = w.module_dir("backup");
    w.write_policy(
        "[modules.up]\npath = \"{srv}/up\"\nread_only = false\n\
         [modules.backup]\npath = \"{srv}/backup\"\nread_only = false\nsetuid = true\n\
         [clients.c]\nmodules = [\"up\", \"backup\"]\n",
    );
    let src = w.client.join("src");
    std::fs::create_dir(&src).unwrap();
    set_mode(&src, 0o755);
    for (name, mode) in [
        ("suid", 0o4755),
        ("sgid", 0o2755),
        ("both", 0o6711),
        ("plain", 0o644),
    ] {
        std::fs::write(src.join(name), name).unwrap();
        set_mode(&src.join(name), mode);
    }
    let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().mode() & 0o7777;
    for target in ["h:", "h::"] {
        for (module, dir, kept) in [("up", &up, false), ("backup", &keep, true)] {
            for e in std::fs::read_dir(dir).unwrap() {
                std::fs::remove_file(e.unwrap().path()).unwrap();
            }
            let dest = format!("{target}{module}/");
            let o = w.rsync_as("c", &["-a", "--usermap=*:0", "src/", &dest]);
            assert!(o.status.success(), "{dest}: {}", stderr(&o));
            for (name, want_kept, want_stripped) in [
                ("suid", 0o4755, 0o755),
                ("sgid", 0o2755, 0o755),
                ("both", 0o6711, 0o711),
                ("plain", 0o644, 0o644),
            ] {
                let got = mode(&dir.join(name));
                let want = if kept { want_kept } else { want_stripped };
                assert_eq!(got, want, "{dest}{name}: mode {got:o}, want {want:o}");
                assert_eq!(std::fs::metadata(dir.join(name)).unwrap().uid(), 0);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Rootless containers
// ---------------------------------------------------------------------------

/// Can this process make an unprivileged user namespace (`unshare -U -r`
/// maps root alone; everyone else's files show as the overflow uid)?
fn user_namespaces() -> bool {
    let ok = Path::new("/usr/bin/unshare").is_file()
        && Command::new("/usr/bin/unshare")
            .args(["-U", "-r", "/bin/true"])
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            !crate::common::in_ci(),
            "CI needs user namespaces (unshare -U -r)"
        );
        eprintln!("SKIP: no user namespaces");
    }
    ok
}

/// Inside a user namespace that maps root alone, a policy file owned by
/// someone outside shows as the overflow uid, which nobody inside can act
/// as: it counts as root's, so the gate works in a rootless container. The
/// rule is otherwise unchanged: not in the initial namespace, not for a
/// group-writable file.
#[test]
fn in_a_user_namespace_files_of_outsiders_count_as_roots() {
    if !user_namespaces() {
        return;
    }
    let w = World::new();
    w.module_dir("www");
    w.write_policy("[modules.www]\npath = \"{srv}/www\"\n[clients.c]\nmodules = [\"www\"]\n");
    let probe = |in_ns: bool| -> Output {
        let mut cmd = if in_ns {
            let mut c = Command::new("/usr/bin/unshare");
            c.args(["-U", "-r", "--"]).arg(gate_bin());
            c
        } else {
            Command::new(gate_bin())
        };
        cmd.arg("serve")
            .arg("--policy")
            .arg(&w.policy)
            .args(["--client", "c"])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("SSH_ORIGINAL_COMMAND", "true")
            .env("SSH_CONNECTION", "127.0.0.1 40000 127.0.0.1 22")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    chown(&w.policy, STRANGER);
    let o = probe(true);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(w.last_decision()["mode"], "probe");
    // Outside the namespace the stranger is a stranger.
    let o = probe(false);
    assert!(
        stderr(&o).contains("the server's policy file is unsafe"),
        "{}",
        stderr(&o)
    );
    // The alias never excuses a mode.
    set_mode(&w.policy, 0o664);
    let o = probe(true);
    assert!(
        stderr(&o).contains("the server's policy file is unsafe"),
        "{}",
        stderr(&o)
    );
    // In the initial namespace the overflow uid (nobody) is an account
    // like any other.
    set_mode(&w.policy, 0o644);
    let overflow: u32 = std::fs::read_to_string("/proc/sys/kernel/overflowuid")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    chown(&w.policy, overflow);
    let o = probe(false);
    assert!(
        stderr(&o).contains("the server's policy file is unsafe"),
        "{}",
        stderr(&o)
    );
    let o = probe(true);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// `cmd` (the gate, or what execs it) made the daemon's `which` hook of
/// client `c`'s recursive pull of module `www`, as rsync's daemon runs it.
fn pull_hook(mut cmd: Command, which: &str, policy: &Path) -> Command {
    cmd.args(["hook", which, "--policy"])
        .arg(policy)
        .args(["--client", "c"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("RSYNC_MODULE_NAME", "www")
        .env("RSYNC_ARG0", "rsyncd")
        .env("RSYNC_ARG1", "--server")
        .env("RSYNC_ARG2", "--sender")
        .env("RSYNC_ARG3", "-r")
        .env("RSYNC_ARG4", ".")
        .env("RSYNC_ARG5", "/")
        .stdin(Stdio::null());
    cmd
}

/// The daemon's hooks run in the kernel sandbox, where `/proc` is out of
/// reach: they judge files as their session did (in a rootless container,
/// with the overflow uid as root's), which the gate passes in the daemon's
/// environment.
#[test]
fn hooks_judge_files_as_their_session_did() {
    let w = World::new();
    w.module_dir("www");
    w.write_policy("[modules.www]\npath = \"{srv}/www\"\n[clients.c]\nmodules = [\"www\"]\n");
    chown(&w.policy, STRANGER);
    let hook = |alias: Option<&str>| {
        let mut cmd = pull_hook(Command::new(gate_bin()), "pre-xfer", &w.policy);
        if let Some(a) = alias {
            cmd.env("RSYNC_GATE_ROOT_ALIAS", a);
        }
        cmd.output().unwrap()
    };
    let o = hook(None);
    assert!(
        stdout(&o).contains("the server's policy file is unsafe"),
        "{}",
        stdout(&o)
    );
    let o = hook(Some(&STRANGER.to_string()));
    assert!(o.status.success(), "{}", stdout(&o));
    assert_eq!(w.last_decision()["decision"], "allow");
}

/// The pre-xfer hook's record is the transfer's decision: when it cannot
/// be written (here the file size limit is below the log's size, with
/// SIGXFSZ ignored, so the append fails with EFBIG after the log opened
/// fine), the transfer is vetoed. The post-xfer hook cannot stop anything
/// that already ran, and exits 0 all the same.
#[test]
fn the_pre_xfer_hook_vetoes_when_its_record_cannot_be_written() {
    let w = World::new();
    w.module_dir("www");
    w.write_policy("[modules.www]\npath = \"{srv}/www\"\n[clients.c]\nmodules = [\"www\"]\n");
    std::fs::write(&w.audit, vec![b'\n'; 8192]).unwrap();
    let hook = |which: &str, limited: bool| {
        let cmd = if limited {
            // A shell only to set the limit and the disposition the gate
            // inherits; the gate itself never runs one.
            let mut sh = Command::new("sh");
            sh.args(["-c", "trap '' XFSZ; ulimit -f 2; exec \"$0\" \"$@\""])
                .arg(gate_bin());
            sh
        } else {
            Command::new(gate_bin())
        };
        pull_hook(cmd, which, &w.policy)
            .env("RSYNC_EXIT_STATUS", "0")
            .output()
            .unwrap()
    };
    let o = hook("pre-xfer", true);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert_eq!(
        stdout(&o),
        "rsync-gate: denied: the audit log cannot be written, so nothing may run\n"
    );
    let o = hook("post-xfer", true);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_eq!(stdout(&o), "");
    assert_eq!(
        std::fs::metadata(&w.audit).unwrap().len(),
        8192,
        "nothing written"
    );
    // Without the limit, the same request is allowed and recorded.
    std::fs::write(&w.audit, b"").unwrap();
    let o = hook("pre-xfer", false);
    assert!(o.status.success(), "{}", stdout(&o));
    assert_eq!(w.last_decision()["decision"], "allow");
}
