//! Per-file transfer records (`transfer_log`): the real rsync client
//! through the gate, in both request forms (`host:path` and `host::`), as
//! root (the daemon chroots) and as an unprivileged account: which files a
//! pull sent, a push received or deleted, with names relative to the
//! module, escaped, whole lines from parallel sessions, the limit's
//! summary record, and `rsync-gate audit --files` / `--summary`.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::common::{
    Recorded, World, gate_bin, install_exec, real_rsync, set_mode, sh_quote, stderr,
};
use crate::daemon::{Account, Daemon, both};

/// `host:` (checked mode) or `host::` (daemon mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    Checked,
    Daemon,
}

const FORMS: [Form; 2] = [Form::Checked, Form::Daemon];

impl Form {
    /// The client's spelling of `module/path` on host `h`.
    fn remote(self, path: &str) -> String {
        match self {
            Form::Checked => format!("h:{path}"),
            Form::Daemon => format!("h::{path}"),
        }
    }
}

/// Turn `transfer_log` on in every module (and set the limit).
fn log_files(d: &Daemon, limit: Option<u64>) {
    let text = std::fs::read_to_string(&d.w.policy).unwrap();
    let mut text = text.replace("\npath = ", "\ntransfer_log = true\npath = ");
    if let Some(n) = limit {
        text = text.replacen(
            "[gate]\n",
            &format!("[gate]\ntransfer_log_limit = {n}\n"),
            1,
        );
    }
    std::fs::write(&d.w.policy, text).unwrap();
}

/// A world per account with every module logging its files.
fn worlds(limit: Option<u64>) -> Vec<Daemon> {
    let ds = both();
    for d in &ds {
        log_files(d, limit);
    }
    ds
}

/// Write `files` (name, content) below `dir`, owned as the account needs.
fn files(d: &Daemon, dir: &Path, files: &[(&[u8], &[u8])]) {
    std::fs::create_dir_all(dir).unwrap();
    set_mode(dir, 0o755);
    for (name, content) in files {
        std::fs::write(dir.join(std::ffi::OsStr::from_bytes(name)), content).unwrap();
    }
    if d.account == Account::Nobody {
        let status = Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

/// The records of the last session (whose decision the gate wrote last).
fn last_session(d: &Daemon) -> Vec<Value> {
    let recs = d.w.audit_records();
    let id = recs
        .iter()
        .rev()
        .find(|r| r["event"] == "decision" && r["pid"].is_number())
        .map(|r| r["session"].clone())
        .expect("a session");
    recs.into_iter().filter(|r| r["session"] == id).collect()
}

/// The file records of the last session: (op, path, length).
fn file_records(d: &Daemon) -> Vec<(String, String, u64)> {
    let mut out: Vec<(String, String, u64)> = last_session(d)
        .iter()
        .filter(|r| r["event"] == "file" && r["file"]["op"].is_string())
        .map(|r| {
            (
                r["file"]["op"].as_str().unwrap().to_string(),
                r["file"]["path"].as_str().unwrap().to_string(),
                r["file"]["length"].as_u64().unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

fn owned(v: &[(&str, &str, u64)]) -> Vec<(String, String, u64)> {
    let mut v: Vec<(String, String, u64)> = v
        .iter()
        .map(|(o, p, l)| (o.to_string(), p.to_string(), *l))
        .collect();
    v.sort();
    v
}

/// Every field of a file record, and its session's other records.
fn check_record_fields(d: &Daemon, form: Form, module: &str) {
    let recs = last_session(d);
    let end = recs
        .iter()
        .find(|r| r["event"] == "end" && r["duration_ms"].is_number())
        .expect("the session's end record");
    let files: Vec<&Value> = recs.iter().filter(|r| r["event"] == "file").collect();
    assert!(!files.is_empty());
    for f in &files {
        assert_eq!(f["client"], "c", "{f}");
        assert_eq!(f["modules"], json!([module]), "{f}");
        assert!(f["time"].as_str().unwrap().ends_with('Z'), "{f}");
        assert!(f["file"]["bytes"].as_u64().is_some(), "{f}");
        let mode = if f["file"]["op"] == "send" {
            "sender"
        } else {
            "receiver"
        };
        assert_eq!(f["mode"], mode, "{f}");
    }
    assert_eq!(
        end["file_log"]["records"].as_u64(),
        Some(files.len() as u64),
        "{form:?} {:?}: {end}",
        d.account
    );
    assert!(end["file_log"].get("error").is_none(), "{end}");
}

/// A pull of three files gives three `send` records with the files' names
/// (relative to the module) and sizes, in both forms, tied to the
/// session; bytes transferred cover at least the contents.
#[test]
fn a_pull_of_three_files_gives_three_send_records() {
    let Some(_) = real_rsync() else { return };
    for d in worlds(None) {
        files(
            &d,
            &d.srv("www").join("three"),
            &[(b"one", b"1"), (b"two", b"22"), (b"three.bin", &[7u8; 300])],
        );
        for form in FORMS {
            d.ok(&[
                "-a",
                &form.remote("www/three/"),
                &d.dst(&format!("p-{form:?}")),
            ]);
            assert_eq!(
                file_records(&d),
                owned(&[
                    ("send", "three/one", 1),
                    ("send", "three/two", 2),
                    ("send", "three/three.bin", 300),
                ]),
                "{form:?} {:?}",
                d.account
            );
            check_record_fields(&d, form, "www");
            for r in last_session(&d).iter().filter(|r| r["event"] == "file") {
                let len = r["file"]["length"].as_u64().unwrap();
                assert!(r["file"]["bytes"].as_u64().unwrap() >= len, "{r}");
            }
            // Nothing transferred (the files are there): no records.
            d.ok(&[
                "-a",
                &form.remote("www/three/"),
                &d.dst(&format!("p-{form:?}")),
            ]);
            assert_eq!(file_records(&d), vec![], "{form:?} {:?}", d.account);
        }
    }
}

/// A push gives `recv` records, `--delete` gives `del` records (paths
/// relative to the module, below the destination the client named).
#[test]
fn a_push_gives_recv_records_and_delete_gives_deletion_records() {
    let Some(_) = real_rsync() else { return };
    for d in worlds(None) {
        for form in FORMS {
            let src = d.w.client.join(format!("src-{form:?}"));
            files(
                &d,
                &src,
                &[
                    (b"a.txt", b"alpha"),
                    (b"b.txt", b"bravo!"),
                    (b"gone.txt", b"x"),
                ],
            );
            files(&d, &src.join("sub"), &[(b"c.txt", b"charlie")]);
            let s = format!("{}/", src.display());
            let dest = format!("backup/{form:?}/");
            d.ok(&["-a", &s, &form.remote(&dest)]);
            let p = |n: &str| format!("{form:?}/{n}");
            assert_eq!(
                file_records(&d),
                owned(&[
                    ("recv", &p("a.txt"), 5),
                    ("recv", &p("b.txt"), 6),
                    ("recv", &p("gone.txt"), 1),
                    ("recv", &p("sub/c.txt"), 7),
                ]),
                "{form:?} {:?}",
                d.account
            );
            check_record_fields(&d, form, "backup");
            std::fs::remove_file(src.join("gone.txt")).unwrap();
            std::fs::remove_dir_all(src.join("sub")).unwrap();
            std::fs::write(src.join("a.txt"), "ALPHA!").unwrap();
            d.ok(&["-a", "--delete", &s, &form.remote(&dest)]);
            assert_eq!(
                file_records(&d),
                owned(&[
                    ("del", &p("gone.txt"), 0),
                    ("del", &p("sub"), 0),
                    ("del", &p("sub/c.txt"), 0),
                    ("recv", &p("a.txt"), 6),
                ]),
                "{form:?} {:?}",
                d.account
            );
            assert!(!d.srv("backup").join(format!("{form:?}/sub")).exists());
        }
    }
}

/// A file pushed to a name that is not a directory is stored under that
/// name, and recorded under it (rsync logs the name it had on the
/// client); a push to a new directory name records the files in it.
#[test]
fn a_single_file_pushed_to_a_new_name_is_recorded_under_that_name() {
    let Some(_) = real_rsync() else { return };
    for d in worlds(None) {
        let src = d.w.client.join("one");
        files(&d, &src, &[(b"local.pdf", b"%PDF"), (b"other", b"o")]);
        for form in FORMS {
            let to = format!("up/report-{form:?}.pdf");
            d.ok(&[
                "-a",
                &src.join("local.pdf").display().to_string(),
                &form.remote(&to),
            ]);
            assert_eq!(
                std::fs::read(d.srv("up").join(format!("report-{form:?}.pdf"))).unwrap(),
                b"%PDF"
            );
            assert_eq!(
                file_records(&d),
                owned(&[("recv", &format!("report-{form:?}.pdf"), 4)]),
                "{form:?} {:?}",
                d.account
            );
            // Two files to a new name: rsync makes it a directory.
            let dir = format!("up/new-{form:?}");
            d.ok(&[
                "-a",
                &src.join("local.pdf").display().to_string(),
                &src.join("other").display().to_string(),
                &form.remote(&dir),
            ]);
            assert_eq!(
                file_records(&d),
                owned(&[
                    ("recv", &format!("new-{form:?}/local.pdf"), 4),
                    ("recv", &format!("new-{form:?}/other"), 1),
                ]),
                "{form:?} {:?}",
                d.account
            );
        }
    }
}

/// Names with a newline, a control byte, a bidi override and invalid
/// UTF-8 are escaped in the record as in every other field: the line stays
/// one line and shows nothing raw.
#[test]
fn odd_names_are_escaped() {
    let Some(_) = real_rsync() else { return };
    let names: [(&[u8], &str); 5] = [
        (b"new\nline", "new\\nline"),
        (b"esc\x1b[2Jx", "esc\\u{1b}[2Jx"),
        ("bidi\u{202e}txt.exe".as_bytes(), "bidi\\u{202e}txt.exe"),
        (b"bad\xffutf8", "bad\\xffutf8"),
        (b"tab\there \\#012", "tab\\there \\\\#012"),
    ];
    for d in worlds(None) {
        for form in FORMS {
            let src = d.w.client.join(format!("odd-{form:?}"));
            let list: Vec<(&[u8], &[u8])> = names.iter().map(|(n, _)| (*n, &b"x"[..])).collect();
            files(&d, &src, &list);
            d.ok(&[
                "-a",
                &format!("{}/", src.display()),
                &form.remote("up/odd/"),
            ]);
            let want: Vec<(&str, String, u64)> = names
                .iter()
                .map(|(_, shown)| ("recv", format!("odd/{shown}"), 1))
                .collect();
            let want: Vec<(&str, &str, u64)> =
                want.iter().map(|(o, p, l)| (*o, p.as_str(), *l)).collect();
            assert_eq!(file_records(&d), owned(&want), "{form:?} {:?}", d.account);
            // And pulled back: the same names in send records.
            d.ok(&[
                "-a",
                &form.remote("up/odd/"),
                &d.dst(&format!("back-{form:?}")),
            ]);
            let sent: Vec<String> = file_records(&d).into_iter().map(|(_, p, _)| p).collect();
            let mut shown: Vec<String> = names.iter().map(|(_, s)| format!("odd/{s}")).collect();
            shown.sort();
            assert_eq!(sent, shown, "{form:?} {:?}", d.account);
            // No raw control or format character anywhere in the log.
            let raw = std::fs::read(&d.w.audit).unwrap();
            let text = String::from_utf8(raw).expect("the audit log is UTF-8");
            for line in text.lines() {
                assert!(
                    !line.chars().any(rsync_gate::escape::needs_escape),
                    "{line:?}"
                );
                serde_json::from_str::<Value>(line).unwrap();
            }
            let out = audit(&d.w.audit, &["--files"]);
            assert!(out.contains("odd/new\\nline"), "{out}");
            assert!(
                !out.chars()
                    .any(|c| c != '\n' && rsync_gate::escape::needs_escape(c))
            );
            std::fs::remove_dir_all(d.srv("up").join("odd")).unwrap();
        }
    }
}

/// Names are relative to the module, whatever the client named: a
/// directory without a trailing slash, a symlinked directory (its real
/// place), `-R` with a `/./` marker, an absolute path under `-R`: never
/// the server's path to the module, nor a descriptor.
#[test]
fn names_never_include_server_paths() {
    let Some(_) = real_rsync() else { return };
    for d in worlds(None) {
        let www = d.srv("www");
        for form in FORMS {
            // Checked mode knows a symlinked directory by where it is;
            // rsync's daemon names it as the client did.
            let linked = match form {
                Form::Checked => vec!["sub/deeper/d.bin", "sub/s.txt"],
                Form::Daemon => vec!["link-to-sub/deeper/d.bin", "link-to-sub/s.txt"],
            };
            for (args, want) in [
                (vec!["-a", "www/sub"], vec!["sub/deeper/d.bin", "sub/s.txt"]),
                (vec!["-a", "www/link-to-sub/"], linked),
                (vec!["-aR", "www/./sub/s.txt"], vec!["sub/s.txt"]),
                (vec!["-aR", "www/sub/./deeper/"], vec!["sub/deeper/d.bin"]),
            ] {
                let mut a: Vec<String> = args[..1].iter().map(|s| s.to_string()).collect();
                a.push(form.remote(args[1]));
                let dst = d.dst(&format!("n-{form:?}-{}", args[1].len()));
                a.push(dst.clone());
                let a: Vec<&str> = a.iter().map(String::as_str).collect();
                d.ok(&a);
                let paths: Vec<String> = file_records(&d).into_iter().map(|(_, p, _)| p).collect();
                assert_eq!(paths, want, "{form:?} {:?} {args:?}", d.account);
                std::fs::remove_dir_all(dst.trim_end_matches('/')).unwrap();
            }
        }
        // An absolute path under -R (checked mode only).
        let abs = format!("{}/./sub/s.txt", www.display());
        d.ok(&["-aR", &format!("h:{abs}"), &d.dst("abs")]);
        assert_eq!(file_records(&d), owned(&[("send", "sub/s.txt", 4)]));
        let srv = d.w.root.join("srv").display().to_string();
        let log = std::fs::read_to_string(&d.w.audit).unwrap();
        for r in log
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
        {
            if r["event"] != "file" {
                continue;
            }
            let p = r["file"]["path"].as_str().unwrap();
            assert!(!p.starts_with('/') && !p.contains(".."), "{r}");
            assert!(!p.contains(&srv) && !p.contains("proc/self/fd"), "{r}");
            assert!(!p.contains("public-tree"), "{r}");
        }
    }
}

/// Past `transfer_log_limit` records one record counts the rest (per
/// operation, with their bytes), and the end record says so.
#[test]
fn the_limit_leaves_one_summary_record() {
    let Some(_) = real_rsync() else { return };
    for d in worlds(Some(2)) {
        let many: Vec<(Vec<u8>, Vec<u8>)> = (0..7)
            .map(|i| (format!("f{i}").into_bytes(), vec![b'x'; i + 1]))
            .collect();
        let list: Vec<(&[u8], &[u8])> = many
            .iter()
            .map(|(n, c)| (n.as_slice(), c.as_slice()))
            .collect();
        files(&d, &d.srv("www").join("many"), &list);
        for form in FORMS {
            d.ok(&[
                "-a",
                &form.remote("www/many/"),
                &d.dst(&format!("m-{form:?}")),
            ]);
            let recs = last_session(&d);
            let files: Vec<&Value> = recs.iter().filter(|r| r["event"] == "file").collect();
            assert_eq!(files.len(), 3, "{form:?} {:?}: {files:#?}", d.account);
            let summary: Vec<&&Value> = files
                .iter()
                .filter(|r| r["file"]["omitted"].is_object())
                .collect();
            assert_eq!(summary.len(), 1, "{files:#?}");
            let omitted = &summary[0]["file"]["omitted"]["send"];
            assert_eq!(omitted["files"], 5, "{omitted}");
            assert!(omitted["bytes"].as_u64().unwrap() > 0);
            assert_eq!(summary[0]["modules"], json!(["www"]));
            let end = recs
                .iter()
                .find(|r| r["event"] == "end" && r["duration_ms"].is_number())
                .unwrap();
            assert_eq!(
                end["file_log"],
                json!({"records": 2, "omitted": 5}),
                "{end}"
            );
            // Counted in full by --summary.
            let out = audit(
                &d.w.audit,
                &[
                    "--summary",
                    "--json",
                    "--session",
                    recs[0]["session"].as_str().unwrap(),
                ],
            );
            let row: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
            assert_eq!(row["sent"]["files"], 7, "{row}");
        }
    }
}

/// 50 sessions at once, in both forms: every line of the audit log is a
/// whole JSON record, and each session has exactly its files' records.
#[test]
fn parallel_sessions_leave_only_whole_lines() {
    let Some(_) = real_rsync() else { return };
    let ds = worlds(None);
    let d = &ds[0];
    // Long names make long records, so that interleaving would show.
    let long: Vec<(Vec<u8>, Vec<u8>)> = (0..4)
        .map(|i| {
            (
                format!("{i}-{}", "n".repeat(200)).into_bytes(),
                vec![b'y'; 10],
            )
        })
        .collect();
    let list: Vec<(&[u8], &[u8])> = long
        .iter()
        .map(|(n, c)| (n.as_slice(), c.as_slice()))
        .collect();
    files(d, &d.srv("www").join("par"), &list);
    let before = d.w.audit_records().len();
    // One shim for all (rewriting it while another session execs it would
    // fail with ETXTBSY).
    d.w.shim("c");
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|i| {
                let form = FORMS[i % 2];
                s.spawn(move || {
                    let o = d.w.rsync_as(
                        "c",
                        &["-a", &form.remote("www/par/"), &d.dst(&format!("par{i}"))],
                    );
                    assert!(o.status.success(), "{i}: {}", stderr(&o));
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
    let text = std::fs::read_to_string(&d.w.audit).unwrap();
    assert!(text.ends_with('\n'));
    let recs: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let mut per_session: BTreeMap<String, usize> = BTreeMap::new();
    for r in &recs[before..] {
        if r["event"] == "file" {
            assert!(
                r["file"]["path"].as_str().unwrap().starts_with("par/"),
                "{r}"
            );
            *per_session.entry(r["session"].to_string()).or_default() += 1;
        }
    }
    assert_eq!(per_session.len(), 50, "{per_session:?}");
    assert!(per_session.values().all(|&n| n == 4), "{per_session:?}");
}

/// `rsync-gate audit --files`: the file records only, one line each (time,
/// session, client, module, operation, bytes/length, path), with the
/// filters; `--json` the records; without `--files` no file record shows.
#[test]
fn audit_files_lists_file_records_with_the_filters() {
    let Some(_) = real_rsync() else { return };
    let ds = worlds(None);
    let d = &ds[0];
    files(d, &d.srv("www").join("rv"), &[(b"a", b"aaa"), (b"b", b"b")]);
    d.ok(&["-a", "h:www/rv/", &d.dst("rv1")]);
    let src = d.w.client.join("upload");
    files(d, &src, &[(b"u.txt", b"uuuuu")]);
    d.ok(&["-a", &format!("{}/", src.display()), "h::up/in/"]);
    let all = audit(&d.w.audit, &["--files"]);
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len(), 3, "{all}");
    let cols = |l: &str| l.split_whitespace().map(String::from).collect::<Vec<_>>();
    let a = cols(lines[0]);
    assert_eq!(&a[2..4], ["c", "www"], "{lines:?}");
    assert_eq!(a[4], "send");
    assert!(a[5].ends_with("/3"), "{a:?}");
    assert_eq!(a[6], "rv/a");
    let u = cols(lines[2]);
    assert_eq!(
        (u[3].as_str(), u[4].as_str(), u[6].as_str()),
        ("up", "recv", "in/u.txt")
    );
    assert!(u[5].ends_with("/5"), "{u:?}");
    assert_eq!(
        audit(&d.w.audit, &["--files", "--module", "up"])
            .lines()
            .count(),
        1
    );
    assert_eq!(
        audit(&d.w.audit, &["--files", "--mode", "sender"])
            .lines()
            .count(),
        2
    );
    assert_eq!(audit(&d.w.audit, &["--files", "--client", "other"]), "");
    assert_eq!(
        audit(&d.w.audit, &["--files", "--since", "1h"])
            .lines()
            .count(),
        3
    );
    assert_eq!(audit(&d.w.audit, &["--files", "--until", "1h"]), "");
    let session = cols(lines[2])[1].clone();
    assert_eq!(
        audit(&d.w.audit, &["--files", "--session", &session])
            .lines()
            .count(),
        1
    );
    let json = audit(&d.w.audit, &["--files", "--json"]);
    for l in json.lines() {
        let r: Value = serde_json::from_str(l).unwrap();
        assert_eq!(r["event"], "file");
    }
    // The ordinary listing: decisions and ends only.
    let plain = audit(&d.w.audit, &[]);
    assert!(
        !plain.contains("rv/a") && !plain.contains("in/u.txt"),
        "{plain}"
    );
    // --summary: files and bytes per direction.
    let out = audit(&d.w.audit, &["--summary", "--json"]);
    let row: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(row["sent"]["files"], 2, "{row}");
    assert_eq!(row["received"]["files"], 1, "{row}");
    assert!(row["received"]["bytes"].as_u64().unwrap() >= 5, "{row}");
    let text = audit(&d.w.audit, &["--summary"]);
    assert!(
        text.starts_with("client        allowed  denied  failed  files out"),
        "{text}"
    );
}

/// With `transfer_log = false` (the default) nothing changes: rsync gets
/// no log options and no extra descriptor. With it, the argv names a file
/// made for the session and a format with the session's secret tokens, which the audit record
/// shows as placeholders only.
#[test]
fn off_changes_nothing_and_the_tokens_stay_secret() {
    let mut w = World::new();
    let out = w.use_recorder();
    let www = w.module_dir("www");
    std::fs::write(www.join("a"), "a").unwrap();
    w.write_policy(
        "[modules.www]\npath = \"{srv}/www\"\n[modules.logged]\npath = \"{srv}/www\"\ntransfer_log = true\n\
         [clients.c]\nmodules = [\"www\", \"logged\"]\n",
    );
    let o = w.serve(
        "c",
        Some(b"rsync --server --sender -logDtpre.iLsfxCIvu . www/"),
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let off = Recorded::read(&out).unwrap();
    assert!(
        !off.argv.iter().any(|a| a.starts_with("--log-file")),
        "{:?}",
        off.argv
    );
    assert!(
        off.fds
            .iter()
            .filter(|(n, _)| **n > 2)
            .all(|(_, t)| !t.starts_with("pipe:")),
        "{:?}",
        off.fds
    );
    let o = w.serve(
        "c",
        Some(b"rsync --server --sender -logDtpre.iLsfxCIvu . logged/"),
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let on = Recorded::read(&out).unwrap();
    // A file in lock_dir, made for the session (rsync 3.5's
    // --confine-root does not open a /proc/self/fd name).
    let session = w.last_decision()["session"].as_str().unwrap().to_string();
    let log = w.run.join(format!("filelog/{session}.log"));
    assert!(
        on.argv.contains(&format!("--log-file={}", log.display())),
        "{:?}",
        on.argv
    );
    assert_eq!(on.fds.len(), off.fds.len(), "{:?} vs {:?}", on.fds, off.fds);
    // Removed with the session (no sandbox here), its directory the
    // account's alone.
    assert!(!log.exists());
    let md = std::fs::metadata(log.parent().unwrap()).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&md.permissions()) & 0o777,
        0o700
    );
    let format = on
        .argv
        .iter()
        .find_map(|a| a.strip_prefix("--log-file-format="))
        .expect("--log-file-format");
    let words: Vec<&str> = format.split(' ').collect();
    assert_eq!(words.len(), 6, "{format}");
    assert_eq!(&words[1..5], ["%o", "%l", "%b", "%f"]);
    for token in [words[0], words[5]] {
        assert_eq!(token.len(), 32);
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
    }
    let log = std::fs::read_to_string(&w.audit).unwrap();
    assert!(!log.contains(words[0]) && !log.contains(words[5]));
    let rec = w.last_decision();
    let shown = rec["argv"].to_string();
    assert!(
        shown.contains("--log-file-format=@log-start@ %o %l %b %f @log-end@"),
        "{shown}"
    );
    // A new session, new tokens.
    let o = w.serve(
        "c",
        Some(b"rsync --server --sender -logDtpre.iLsfxCIvu . logged/"),
        &[],
    );
    assert!(o.status.success());
    let again = Recorded::read(&out).unwrap();
    assert!(!again.argv.iter().any(|a| a.contains(words[0])));
    // host:: form: the daemon's log descriptor is the session's file, for
    // a client with a module with transfer_log; a pipe otherwise.
    w.write_policy(
        "[modules.www]\npath = \"{srv}/www\"\n[modules.logged]\npath = \"{srv}/www\"\ntransfer_log = true\n\
         [clients.c]\nmodules = [\"www\", \"logged\"]\n[clients.p]\nmodules = [\"www\"]\n",
    );
    let o = w.serve("c", Some(b"rsync --server --daemon ."), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let daemon = Recorded::read(&out).unwrap();
    let session = w.last_decision()["session"].as_str().unwrap().to_string();
    let log = w.run.join(format!("filelog/{session}.log"));
    assert_eq!(
        daemon.fds.get(&3),
        Some(&log.display().to_string()),
        "{:?}",
        daemon.fds
    );
    assert!(!log.exists());
    let o = w.serve("p", Some(b"rsync --server --daemon ."), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let plain = Recorded::read(&out).unwrap();
    assert!(
        plain.fds.get(&3).is_some_and(|t| t.starts_with("pipe:")),
        "{:?}",
        plain.fds
    );
}

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

/// A session whose record channel cannot start is refused before rsync
/// runs (here the directory of the log files is open to others); one in
/// a module without `transfer_log` does not need it.
#[test]
fn a_session_that_cannot_start_its_records_is_refused() {
    let Some(_) = real_rsync() else { return };
    let ds = both();
    let d = &ds[0];
    let text = std::fs::read_to_string(&d.w.policy).unwrap();
    let text = text.replace(
        "[modules.www]\npath = ",
        "[modules.www]\ntransfer_log = true\npath = ",
    );
    std::fs::write(&d.w.policy, text).unwrap();
    let dir = d.w.run.join("filelog");
    std::fs::create_dir_all(&dir).unwrap();
    set_mode(&dir, 0o777);
    let o = d.rsync(&["-a", "h:www/", &d.dst("refused")]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("rsync-gate: denied: internal error on the server"),
        "{}",
        stderr(&o)
    );
    assert!(!d.w.client.join("refused/a.txt").exists());
    let rec = d.w.last_decision();
    assert_eq!(rec["decision"], "deny", "{rec}");
    assert_eq!(rec["reason"]["code"], "internal");
    let detail = rec["reason"]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("cannot start the transfer log: ") && detail.contains("filelog"),
        "{detail}"
    );
    // No end record: nothing ran.
    let last = d.w.audit_records().pop().unwrap();
    assert_eq!(last["event"], "decision");
    // Without transfer_log the same client, the same world: served.
    let src = d.src();
    d.ok(&["-a", &format!("{}/", src.display()), "h:up/ok/"]);
}

/// A client's path that spells the placeholders of the secret tokens is a
/// path like any other: the gate puts the session's tokens into its own
/// `--log-file-format` only, so a pull (whose argv names the file) and a
/// push send and store the file the client named, and the records say so.
#[test]
fn a_path_spelling_the_token_placeholders_is_left_alone() {
    let Some(_) = real_rsync() else { return };
    let name = "@log-start@ x @log-end@";
    for d in worlds(None) {
        files(&d, &d.srv("www").join("ph"), &[(name.as_bytes(), b"ppp")]);
        let src = d.w.client.join("ph");
        files(&d, &src, &[(b"f", b"ff")]);
        for form in FORMS {
            let dst = d.dst(&format!("ph-{form:?}"));
            d.ok(&["-a", &form.remote(&format!("www/ph/{name}")), &dst]);
            assert_eq!(
                std::fs::read(Path::new(&dst).join(name)).unwrap(),
                b"ppp",
                "{form:?} {:?}",
                d.account
            );
            assert_eq!(
                file_records(&d),
                owned(&[("send", &format!("ph/{name}"), 3)]),
                "{form:?} {:?}",
                d.account
            );
            let dir = format!("@log-start@{form:?}@log-end@");
            d.ok(&[
                "-a",
                &format!("{}/", src.display()),
                &form.remote(&format!("up/{dir}/")),
            ]);
            assert_eq!(
                std::fs::read(d.srv("up").join(&dir).join("f")).unwrap(),
                b"ff",
                "{form:?} {:?}",
                d.account
            );
            assert_eq!(
                file_records(&d),
                owned(&[("recv", &format!("{dir}/f"), 2)]),
                "{form:?} {:?}",
                d.account
            );
        }
    }
}

/// In `host:path` form rsync logs to a file the gate made for the session
/// (a regular file, the account's, mode 0600) and the gate reads it as it
/// grows, in a thread of the lowest priority: a stand-in rsync that logs
/// 20,000 files finds every record in the audit log before it ends, and
/// the part already read handed back to the file system (the file keeps
/// its length, not its blocks). A session
/// that ended without its file removed (one the sandbox kept from removing
/// it) has it removed by a later session; a live one's is left alone.
#[test]
fn the_log_file_is_read_as_it_grows_and_handed_back() {
    let mut w = World::new();
    let out = w.root.join("logged");
    std::fs::create_dir_all(&out).unwrap();
    let o = sh_quote(out.as_os_str());
    let audit = sh_quote(w.audit.as_os_str());
    // Logs as rsync does (a time, a pid, then the gate's format) under the
    // descriptor name it was given; waits (30 s at most) for the gate to
    // have every record in the audit log; notes what it sees.
    let rsync = w.root.join("bin/logging-rsync");
    install_exec(
        &rsync,
        &format!(
            "#!/bin/sh\n\
             if [ \"$1\" = --help ]; then exec /usr/bin/rsync --help; fi\n\
             for a; do case $a in --log-file=*) log=${{a#--log-file=}};; --log-file-format=*) fmt=${{a#--log-file-format=}};; esac; last=$a; done\n\
             start=${{fmt%% *}}; end=${{fmt##* }}; src=${{last#/}}\n\
             seq 1 20000 | awk -v s=\"$start\" -v e=\"$end\" -v d=\"$src\" \
               '{{printf \"2026/12/01 10:00:00 [42] %s send 100 100 %sf%05d %s\\n\", s, d, $1, e}}' >> \"$log\"\n\
             if [ -e {o}/quick ]; then exit 0; fi\n\
             i=0; while [ \"$(grep -c '\"event\":\"file\"' {audit})\" -lt 20000 ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done\n\
             grep -c '\"event\":\"file\"' {audit} > {o}/records\n\
             for t in /proc/$PPID/task/*; do echo \"$(cat $t/comm) $(cut -d' ' -f19 $t/stat)\"; done > {o}/nice\n\
             stat -c '%F %u %a %s %b %B' \"$log\" > {o}/stat\n\
             exit 0\n"
        ),
    );
    w.rsync = rsync;
    w.sandbox = Some("off");
    let www = w.module_dir("www");
    std::fs::write(www.join("a"), "a").unwrap();
    w.write_policy(
        "[modules.logged]\npath = \"{srv}/www\"\ntransfer_log = true\n\
         [clients.c]\nmodules = [\"logged\"]\n",
    );
    // A log file left by a session that has ended (no process has its id)
    // and one of a live session (this test's).
    let dir = w.run.join("filelog");
    std::fs::create_dir_all(&dir).unwrap();
    set_mode(&dir, 0o700);
    let ended = dir.join("18ed3c0ffee-2147483646.log");
    let live = dir.join(format!("18ed3c0ffee-{}.log", std::process::id()));
    std::fs::write(&ended, "old").unwrap();
    std::fs::write(&live, "live").unwrap();
    let o = w.serve(
        "c",
        Some(b"rsync --server --sender -logDtpre.iLsfxCIvu . logged/"),
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let stat = std::fs::read_to_string(out.join("stat")).unwrap();
    let f: Vec<&str> = stat.split_whitespace().collect();
    assert_eq!(f[..2], ["regular", "file"], "{stat}");
    assert_eq!(f[2], nix::unistd::geteuid().as_raw().to_string(), "{stat}");
    assert_eq!(f[3], "600", "{stat}");
    let size: u64 = f[4].parse().unwrap();
    let allocated = f[5].parse::<u64>().unwrap() * f[6].parse::<u64>().unwrap();
    assert!(size > 2_000_000, "{stat}");
    assert!(allocated < 512 * 1024, "read part not handed back: {stat}");
    // Every record was in the audit log while rsync still ran.
    let during: u64 = std::fs::read_to_string(out.join("records"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(during, 20_000);
    // The gate's thread that reads the file runs at the lowest priority
    // (the CPU time it takes is not rsync's), the gate itself as before.
    let nice = std::fs::read_to_string(out.join("nice")).unwrap();
    let nice: BTreeMap<&str, &str> = nice.lines().filter_map(|l| l.split_once(' ')).collect();
    assert_eq!(nice.get("rsync-log"), Some(&"19"), "{nice:?}");
    assert_eq!(nice.get("rsync-gate"), Some(&"0"), "{nice:?}");
    let records: Vec<Value> = w
        .audit_records()
        .into_iter()
        .filter(|r| r["event"] == "file")
        .collect();
    assert_eq!(records.len(), 20_000);
    assert_eq!(records[0]["file"]["path"], "f00001", "{}", records[0]);
    assert_eq!(records[19_999]["file"]["path"], "f20000");
    let end = w.audit_records().pop().unwrap();
    assert_eq!(end["event"], "end", "{end}");
    assert_eq!(end["exit_status"], 0, "{end}");
    // The session's own file is gone, the ended one's too; the live one's
    // stays.
    let left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left,
        [live.file_name().unwrap().to_string_lossy()],
        "{left:?}"
    );
    // A child that ends right after logging: the rest is read once it has
    // ended, before the end record.
    std::fs::write(out.join("quick"), "").unwrap();
    let before = w.audit_records().len();
    let o = w.serve(
        "c",
        Some(b"rsync --server --sender -logDtpre.iLsfxCIvu . logged/"),
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let session: Vec<Value> = w.audit_records().split_off(before);
    assert_eq!(session.len(), 20_002, "decision, 20,000 files, end");
    assert_eq!(session[0]["event"], "decision");
    assert!(session[1..20_001].iter().all(|r| r["event"] == "file"));
    assert_eq!(session[20_000]["file"]["path"], "f20000");
    assert_eq!(session[20_001]["event"], "end");
    assert_eq!(
        session[20_001]["file_log"]["records"], 20_000,
        "{}",
        session[20_001]
    );
}
