//! Audit review (`rsync-gate audit`) and what it reviews: refusals rsync's
//! daemon makes in `host::` form (an unknown or unsafe module, a connection
//! limit) recorded as the same `deny` decisions checked mode writes, and
//! counted once by `--summary`; several logs, rotated and gzip'ed; the
//! filters; `--follow`.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use crate::common::{World, gate_bin, real_rsync, set_mode, stderr};
use crate::daemon::{Account, Daemon, NOBODY, both, chown, daemon_world};

/// `rsync-gate audit --log LOG ARGS...`: stdout, or the test fails.
fn audit(log: &Path, args: &[&str]) -> String {
    let o = Command::new(gate_bin())
        .arg("audit")
        .arg("--log")
        .arg(log)
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "audit {args:?}: {}", stderr(&o));
    String::from_utf8(o.stdout).unwrap()
}

/// `--summary --json`: the client's row.
fn summary_row(log: &Path, client: &str) -> serde_json::Value {
    audit(log, &["--summary", "--json"])
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["client"] == client)
        .unwrap_or_else(|| panic!("no summary row for {client}"))
}

/// Hold slot 0 of a `max connections` lock file (record locks belong to a
/// process: the gate and rsync, other processes, see it taken) until the
/// returned file is dropped.
fn hold_slot(lock: &Path, account: Account) -> File {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(lock)
        .unwrap();
    if account == Account::Nobody {
        chown(lock, NOBODY);
    }
    let l = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 4,
        l_pid: 0,
    };
    nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_SETLK(&l)).unwrap();
    f
}

/// `max_connections = 1` on `www` and `backup` (so rsync's "max connections
/// (1) reached" could be either: the gate finds the full one), and `up`
/// made unsafe to serve (group-writable).
fn limits_and_an_unsafe_module(d: &Daemon) {
    let text = std::fs::read_to_string(&d.w.policy).unwrap();
    let text = text
        .replace(
            "comment = \"the web site\"\n",
            "comment = \"the web site\"\nmax_connections = 1\n",
        )
        .replace("delete = true\n", "delete = true\nmax_connections = 1\n");
    std::fs::write(&d.w.policy, text).unwrap();
    set_mode(&d.srv("up"), 0o775);
}

/// The last decision record.
fn last_decision(d: &Daemon) -> serde_json::Value {
    d.w.last_decision()
}

/// An unknown module, a module that is not the client's, a module left out
/// of the daemon's config as unsafe, and a module at its connection limit:
/// in `host::` form rsync's daemon refuses them itself, before any hook
/// runs, and the gate records each as the `deny` decision checked mode
/// writes for the same module (the same code and message), with what the
/// daemon said in the detail; `--summary` counts them as denied, not as
/// failed sessions, and `--denied` lists them.
#[test]
fn daemon_refusals_are_recorded_as_checked_mode_records_them() {
    let Some(_) = real_rsync() else { return };
    for d in both() {
        limits_and_an_unsafe_module(&d);
        let _slot = hold_slot(&d.w.run.join("backup.lock"), d.account);
        let cases: [(&str, &str, &str, &str); 4] = [
            (
                "nosuch",
                "Unknown module 'nosuch'",
                "module_not_available",
                "no module 'nosuch' is available to this key",
            ),
            (
                "secret",
                "Unknown module 'secret'",
                "module_not_available",
                "no module 'secret' is available to this key",
            ),
            (
                "up",
                "Unknown module 'up'",
                "module_unsafe",
                "module 'up' is not safe to serve (the server's audit log says why)",
            ),
            (
                "backup",
                "max connections (1) reached",
                "busy",
                "module 'backup' is at its connection limit; try again later",
            ),
        ];
        for (module, rsync_says, code, message) in cases {
            let what = format!("{:?} {module}", d.account);
            d.refused(&["-a", &format!("h::{module}/"), &d.dst("x")], rsync_says);
            let r = last_decision(&d);
            assert_eq!(r["decision"], "deny", "{what}: {r}");
            assert_eq!(r["mode"], "daemon", "{what}: {r}");
            assert_eq!(r["reason"]["code"], code, "{what}: {r}");
            assert_eq!(r["reason"]["message"], message, "{what}: {r}");
            assert_eq!(r["modules"], serde_json::json!([module]), "{what}: {r}");
            let detail = r["reason"]["detail"].as_str().unwrap_or_default();
            assert!(
                detail.contains("refused by rsync's daemon: "),
                "{what}: {r}"
            );
            if code == "module_unsafe" {
                assert!(detail.contains("writable by its group"), "{what}: {detail}");
            }
            // The session's own records: its start, this refusal, its end.
            let session: Vec<serde_json::Value> =
                d.w.audit_records()
                    .into_iter()
                    .filter(|x| x["session"] == r["session"])
                    .collect();
            assert_eq!(session.len(), 3, "{what}: {session:#?}");
            // Checked mode: the same code and message for the same module.
            let o = d.rsync(&["-a", &format!("h:{module}/"), &d.dst("y")]);
            assert!(!o.status.success(), "{what}");
            assert!(stderr(&o).contains(message), "{what}: {}", stderr(&o));
            let c = last_decision(&d);
            assert_eq!(c["reason"]["code"], code, "{what}: {c}");
            assert_eq!(c["reason"]["message"], message, "{what}: {c}");
        }
        let row = summary_row(&d.w.audit, "c");
        assert_eq!(
            (&row["allowed"], &row["denied"], &row["failed"]),
            (&0.into(), &8.into(), &0.into()),
            "{:?}: {row}",
            d.account
        );
        assert_eq!(
            row["refusals"],
            serde_json::json!({"busy": 2, "module_not_available": 4, "module_unsafe": 2}),
            "{:?}: {row}",
            d.account
        );
        let denied = audit(&d.w.audit, &["--denied", "--mode", "daemon"]);
        assert_eq!(denied.lines().count(), 4, "{denied}");
        assert!(
            denied.contains("(detail: ") && denied.contains("writable by its group"),
            "{denied}"
        );
    }
}

/// A mixed run through the real client, both request forms, with `host::`
/// refusals of every kind: `--summary` counts each request once.
#[test]
fn summary_of_a_mixed_run_counts_each_request_once() {
    let Some(_) = real_rsync() else { return };
    // As an account that cannot read everything: a pull of what it cannot
    // read is allowed and fails.
    let d = daemon_world(Account::Nobody);
    limits_and_an_unsafe_module(&d);
    let _slot = hold_slot(&d.w.run.join("backup.lock"), d.account);
    let src = format!("{}/", d.src().display());
    // Allowed, and worked.
    d.ok(&["-a", "h:www/", &d.dst("p1")]);
    d.ok(&["-a", "h::www/", &d.dst("p2")]);
    d.ok(&["h::"]);
    let locked = d.srv("www").join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::write(locked.join("secret"), "s").unwrap();
    set_mode(&locked.join("secret"), 0o000);
    set_mode(&locked, 0o755);
    // Allowed, and failed (rsync cannot open a file: exit 23).
    for from in ["h:www/locked/", "h::www/locked/"] {
        let o = d.rsync(&["-a", from, &d.dst("p3")]);
        assert_eq!(o.status.code(), Some(23), "{from}: {}", stderr(&o));
    }
    // Refused: by the gate (checked mode), by the pre-xfer hook, by the
    // daemon.
    d.refused(&["-a", &src, "h:www/"], "module 'www' is read-only");
    d.refused(&["-a", &src, "h::www/"], "module 'www' is read-only");
    d.refused(
        &["-a", "h::nosuch/", &d.dst("x")],
        "Unknown module 'nosuch'",
    );
    d.refused(&["-a", "h::up/", &d.dst("x")], "Unknown module 'up'");
    d.refused(
        &["-a", "h::backup/", &d.dst("x")],
        "max connections (1) reached",
    );
    let summary = audit(&d.w.audit, &["--summary"]);
    eprintln!("audit --summary after the mixed run:\n{summary}");
    let row = summary_row(&d.w.audit, "c");
    assert_eq!(
        (&row["allowed"], &row["denied"], &row["failed"]),
        (&5.into(), &5.into(), &2.into()),
        "{row}"
    );
    assert_eq!(row["modules"], serde_json::json!({"www": 4}), "{row}");
    assert_eq!(
        row["refusals"],
        serde_json::json!({"busy": 1, "module_not_available": 1, "module_unsafe": 1, "read_only": 2}),
        "{row}"
    );
    let line = summary.lines().find(|l| l.starts_with("c ")).unwrap();
    assert!(
        line.contains("      5       5       2  ")
            && line.ends_with("www=4 / busy=1,module_not_available=1,module_unsafe=1,read_only=2"),
        "{summary}"
    );
    // The in-band request's end has no measured duration; its session's
    // end has one. End lines name the session and the module.
    let lines = audit(&d.w.audit, &["--module", "www", "--mode", "receiver"]);
    assert!(lines.lines().all(|l| l.contains(" deny ")), "{lines}");
    let session = last_decision(&d)["session"].as_str().unwrap().to_string();
    let text = audit(&d.w.audit, &["--session", &session]);
    let ends: Vec<&str> = text.lines().filter(|l| l.contains(" end ")).collect();
    assert_eq!(ends.len(), 1, "{text}");
    assert!(ends[0].contains(&session), "{text}");
    assert!(ends[0].contains(" daemon "), "{text}");
    assert!(
        ends[0].contains(" exit ") && ends[0].ends_with("ms"),
        "{text}"
    );
    let inband_ends: Vec<String> = audit(&d.w.audit, &[])
        .lines()
        .filter(|l| l.contains(" end    -        www "))
        .map(String::from)
        .collect();
    // The two transfers' (the refused push's, when rsync runs post-xfer
    // after a veto, counts once all the same: see the unit tests).
    assert!(inband_ends.len() >= 2, "{inband_ends:#?}");
    for l in inband_ends {
        assert!(!l.contains("ms"), "a duration nobody measured: {l}");
    }
}

fn record(time: SystemTime, session: &str, client: &str, module: &str) -> String {
    serde_json::json!({
        "time": rsync_gate::audit::rfc3339(time),
        "event": "decision",
        "session": session,
        "client": client,
        "decision": "allow",
        "mode": "sender",
        "modules": [module],
    })
    .to_string()
        + "\n"
}

fn gzip(path: &Path, text: &str) {
    let mut gz = flate2::write::GzEncoder::new(File::create(path).unwrap(), Default::default());
    gz.write_all(text.as_bytes()).unwrap();
    gz.finish().unwrap();
}

fn sessions(out: &str) -> Vec<String> {
    out.lines()
        .map(|l| l.split_whitespace().nth(1).unwrap_or_default().to_string())
        .collect()
}

/// Several logs (rotated, gzip'ed by content, named in any order) in time
/// order; `--since`/`--until` with seconds, minutes, dates and RFC 3339
/// timestamps; `--client`, `--module`, `--mode`, `--session`; `--summary
/// --json`.
#[test]
fn review_reads_rotated_logs_and_filters() {
    let w = World::new();
    let now = SystemTime::now();
    let ago = |s: u64| now - Duration::from_secs(s);
    let dir = w.root.join("log");
    let (oldest, older, live) = (
        dir.join("audit.jsonl.2.gz"),
        dir.join("audit.jsonl.1"),
        dir.join("audit.jsonl"),
    );
    gzip(
        &oldest,
        &(record(ago(3 * 86_400), "s1", "a", "www") + &record(ago(7200), "s2", "b", "www")),
    );
    std::fs::write(
        &older,
        record(ago(600), "s3", "a", "up") + &record(ago(100), "s4", "b", "www"),
    )
    .unwrap();
    std::fs::write(&live, record(ago(20), "s5", "a", "www") + "not json\n").unwrap();
    // Renamed: still gzip, by its first bytes.
    let renamed = dir.join("old-log");
    std::fs::copy(&oldest, &renamed).unwrap();
    let run = |logs: &[&Path], args: &[&str]| -> (String, String) {
        let mut cmd = Command::new(gate_bin());
        cmd.arg("audit");
        for l in logs {
            cmd.arg("--log").arg(l);
        }
        let o = cmd.args(args).output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        (String::from_utf8(o.stdout.clone()).unwrap(), stderr(&o))
    };
    let all = ["s1", "s2", "s3", "s4", "s5"];
    for logs in [
        [&oldest, &older, &live],
        [&live, &older, &oldest],
        [&older, &renamed, &live],
    ] {
        let (out, err) = run(&logs.map(PathBuf::as_path), &[]);
        assert_eq!(sessions(&out), all, "{logs:?}");
        assert_eq!(err, "rsync-gate: 1 unreadable line(s) skipped\n");
    }
    let logs = [oldest.as_path(), older.as_path(), live.as_path()];
    for (args, want) in [
        (vec!["--since", "30s"], vec!["s5"]),
        (vec!["--since", "5m"], vec!["s4", "s5"]),
        (vec!["--since", "2h", "--until", "60s"], vec!["s3", "s4"]),
        (vec!["--since", "3d"], vec!["s2", "s3", "s4", "s5"]),
        (vec!["--until", "1d"], vec!["s1"]),
        // The record written 3 days before the command ran.
        (vec!["--since", "4d", "--until", "3d"], vec!["s1"]),
        (vec!["--client", "a"], vec!["s1", "s3", "s5"]),
        (vec!["--module", "www", "--client", "b"], vec!["s2", "s4"]),
        (vec!["--mode", "sender", "--module", "up"], vec!["s3"]),
        (vec!["--mode", "daemon"], vec![]),
        (vec!["--session", "s4"], vec!["s4"]),
    ] {
        assert_eq!(sessions(&run(&logs, &args).0), want, "{args:?}");
    }
    // An RFC 3339 time with an offset is the same instant.
    let at = rsync_gate::audit::rfc3339(ago(700));
    let (out, _) = run(&logs, &["--since", &at]);
    assert_eq!(sessions(&out), ["s3", "s4", "s5"]);
    let shifted = {
        // The same instant written in UTC+01:00.
        let t = rsync_gate::audit::review::parse_timestamp(&at).unwrap() + 3_600_000;
        let utc = rsync_gate::audit::rfc3339(
            SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(t).unwrap()),
        );
        format!("{}+01:00", &utc[..23])
    };
    assert_eq!(
        sessions(&run(&logs, &["--since", &shifted]).0),
        ["s3", "s4", "s5"]
    );
    // Not times.
    for bad in ["30", "yesterday", "2026-11-23T06:00:00"] {
        let o = Command::new(gate_bin())
            .args(["audit", "--log"])
            .arg(&live)
            .args(["--since", bad])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{bad}");
        assert!(stderr(&o).contains("--since: "), "{}", stderr(&o));
    }
    // --summary --json: one object per client.
    let (out, _) = run(&logs, &["--summary", "--json"]);
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert_eq!(rows[0]["client"], "a");
    assert_eq!(rows[0]["allowed"], 3);
    assert_eq!(rows[0]["modules"], serde_json::json!({"up": 1, "www": 2}));
    assert_eq!(rows[1]["client"], "b");
    // --json: the records as they are.
    let (out, _) = run(&logs, &["--json", "--session", "s2"]);
    let r: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
    assert_eq!(r["client"], "b");
}

/// Reads lines from a child's stdout in a thread of its own.
struct Lines(mpsc::Receiver<String>);

impl Lines {
    fn new(out: std::process::ChildStdout) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines(rx)
    }

    /// The next line within 10 s.
    fn next(&self, waiting_for: &str) -> String {
        self.0
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no line for {waiting_for} within 10 s"))
    }

    fn none_within(&self, d: Duration) {
        if let Ok(l) = self.0.recv_timeout(d) {
            panic!("unexpected line {l}");
        }
    }
}

/// `--follow`: the records so far, then each record appended as it is
/// written, through a rotation (renamed away, a new file) and a truncation
/// in place (logrotate's copytruncate), filters applied; it runs until
/// killed.
#[test]
fn follow_prints_new_records_through_rotation_and_truncation() {
    let w = World::new();
    let live = w.root.join("log/audit.jsonl");
    let now = SystemTime::now();
    let append = |path: &Path, text: &str| {
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    };
    std::fs::write(
        w.root.join("log/audit.jsonl.1"),
        record(now, "r0", "a", "www"),
    )
    .unwrap();
    append(&live, &record(now, "r1", "a", "www"));
    let mut child = Command::new(gate_bin())
        .args(["audit", "--log"])
        .arg(w.root.join("log/audit.jsonl.1"))
        .arg("--log")
        .arg(&live)
        .args(["--follow", "--client", "a"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = Lines::new(child.stdout.take().unwrap());
    let session = |l: String| l.split_whitespace().nth(1).unwrap_or_default().to_string();
    assert_eq!(session(lines.next("r0")), "r0");
    assert_eq!(session(lines.next("r1")), "r1");
    // Appended, in two writes; another client's record is filtered out.
    append(&live, &record(now, "x", "b", "www"));
    let r2 = record(now, "r2", "a", "www");
    let (first, second) = r2.split_at(20);
    append(&live, first);
    std::thread::sleep(Duration::from_millis(400));
    append(&live, second);
    assert_eq!(session(lines.next("r2")), "r2");
    // Rotation: the old file renamed, a late line in it, a new live file.
    let rotated = w.root.join("log/audit.jsonl.0");
    std::fs::rename(&live, &rotated).unwrap();
    append(&rotated, &record(now, "r3", "a", "www"));
    std::thread::sleep(Duration::from_millis(400));
    append(&live, &record(now, "r4", "a", "www"));
    assert_eq!(session(lines.next("r3")), "r3");
    assert_eq!(session(lines.next("r4")), "r4");
    // copytruncate: emptied in place, then written again.
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&live)
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    append(&live, &record(now, "r5", "a", "www"));
    assert_eq!(session(lines.next("r5")), "r5");
    lines.none_within(Duration::from_millis(600));
    assert!(
        child.try_wait().unwrap().is_none(),
        "--follow ended by itself"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
