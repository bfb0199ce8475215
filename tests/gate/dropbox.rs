//! Drop boxes: a write-only module sends its clients nothing derived from
//! the files already in it (issue 11, item 1), in both request forms.
//!
//! The real rsync client uploads through the gate with a shim that copies
//! everything the server sends into a capture file. The capture is
//! demultiplexed and searched for rsync's `sum_head`s: with
//! `--block-size=1` each block checksum a receiver sends for its basis file
//! is one byte of that file (rsync's rolling checksum of a byte `b` is
//! `b + (b << 16)`), so a basis taken from another client's upload would
//! come back byte for byte. The same uploads over a plain shell (no gate)
//! show that the decoding finds exactly that.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use crate::common::{World, gate_bin, install_exec, real_rsync, set_mode, sh_quote, stderr};

/// Another client's upload, already in the module.
const SECRET: &[u8] = b"alice's upload: account 4711, pin 0815";
/// What the client uploads (another length, so no quick check matches).
const MINE: &[u8] = b"bob's upload, nothing like the other one at all";

/// Which request form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    /// `host:module/path`.
    Checked,
    /// `host::module/path` (daemon over SSH).
    Daemon,
}

const FORMS: [Form; 2] = [Form::Checked, Form::Daemon];

/// Who serves the upload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Server {
    Gate(Form),
    /// rsync over a plain shell, no gate: the control.
    Plain,
}

/// A world with two write-only modules: `drop` (overwrite = false, a drop
/// box) and `handin` (overwrite = true: clients may hand in again).
fn world() -> World {
    let w = World::new();
    w.module_dir("drop");
    w.module_dir("handin");
    w.write_policy(
        r#"
[modules.drop]
path = "{srv}/drop"
read_only = false
write_only = true
overwrite = false
list = false

[modules.handin]
path = "{srv}/handin"
read_only = false
write_only = true

[clients.c]
modules = ["drop", "handin"]
"#,
    );
    w
}

/// The real directory of `path` (`MODULE/...`).
fn srv(w: &World, path: &str) -> PathBuf {
    w.root
        .join("srv")
        .join(crate::common::module_dir_name(path))
}

/// Empty module `module`, then put `files` (module-relative) into it.
fn reset(w: &World, module: &str, files: &[(&str, &[u8])]) {
    let dir = srv(w, module);
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::create_dir(&dir).unwrap();
    set_mode(&dir, 0o755);
    for (name, content) in files {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
            set_mode(parent, 0o755);
        }
        std::fs::write(&p, content).unwrap();
    }
}

/// A local file to upload, `client/up/NAME`.
fn local(w: &World, name: &str, content: &[u8]) -> String {
    let dir = w.client.join("up");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    set_mode(&dir, 0o755);
    std::fs::write(dir.join(name), content).unwrap();
    dir.join(name).to_string_lossy().into_owned()
}

/// The `rsync -e` program: it plays sshd (or a plain login shell) and
/// copies what the server writes to the client into `$CAPTURE`.
fn capturing_shim(w: &World, server: Server) -> PathBuf {
    let path = w.root.join(format!(
        "bin/capture-{}",
        match server {
            Server::Plain => "plain",
            Server::Gate(_) => "gate",
        }
    ));
    if !path.exists() {
        let run = match server {
            Server::Plain => "/bin/sh -c \"$*\"".to_string(),
            Server::Gate(_) => format!(
                "SSH_ORIGINAL_COMMAND=\"$*\" SSH_CONNECTION=\"127.0.0.1 40000 127.0.0.1 22\" {} serve --policy {} --client c",
                sh_quote(gate_bin().as_os_str()),
                sh_quote(w.policy.as_os_str()),
            ),
        };
        install_exec(
            &path,
            &format!(
                "#!/bin/bash\n# rsync -e shim: $1 is the host, the rest the remote command\n\
                 shift\nset -o pipefail\n{run} | tee \"$CAPTURE\"\n"
            ),
        );
    }
    path
}

/// An upload: rsync's output, and what the server sent the client.
struct Upload {
    out: Output,
    sent: Vec<u8>,
}

/// Upload with `args` (options and paths; `DEST` stands for the
/// destination, `MODULE/path`, which each server spells its own way).
fn upload(w: &World, server: Server, args: &[&str], dest: &str) -> Upload {
    let capture = w.root.join("capture");
    let _ = std::fs::remove_file(&capture);
    let dest = match server {
        Server::Gate(Form::Checked) => format!("h:{dest}"),
        Server::Gate(Form::Daemon) => format!("h::{dest}"),
        Server::Plain => format!("h:{}/", srv(w, dest).display()),
    };
    let args: Vec<&str> = args
        .iter()
        .map(|a| if *a == "DEST" { dest.as_str() } else { a })
        .collect();
    let out = Command::new("/usr/bin/rsync")
        .arg("-e")
        .arg(capturing_shim(w, server))
        .args(&args)
        .env("CAPTURE", &capture)
        .current_dir(&w.client)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let sent = std::fs::read(&capture).unwrap_or_default();
    Upload { out, sent }
}

// ---------------------------------------------------------------------------
// Reading what the server sent
// ---------------------------------------------------------------------------

/// The message tags rsync multiplexes (rsync's io.h, `MSG_*`).
const TAGS: &[u32] = &[
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 22, 33, 42, 86, 100, 101, 102,
];

/// The payload of the `MSG_DATA` frames in what a server sent. Each frame
/// is a 4-byte little-endian header (tag + 7 in the top byte, the length
/// in the low 24 bits) and its bytes. Before the first frame come the
/// greeting, compatibility flags, checksum names and seed, which are not
/// multiplexed: the frames start where a chain of well-formed frames runs
/// exactly to the end of the capture. None when there is no such chain.
fn demux(stream: &[u8]) -> Option<Vec<u8>> {
    (0..stream.len()).find_map(|start| {
        let mut data = Vec::new();
        let mut at = start;
        while at < stream.len() {
            let header = u32::from_le_bytes(stream.get(at..at + 4)?.try_into().ok()?);
            let tag = (header >> 24).wrapping_sub(7);
            let len = (header & 0x00ff_ffff) as usize;
            if !TAGS.contains(&tag) {
                return None;
            }
            let body = stream.get(at + 4..at + 4 + len)?;
            if tag == 0 {
                data.extend_from_slice(body);
            }
            at += 4 + len;
        }
        Some(data)
    })
}

/// A `sum_head` a receiver sent for its basis file, and the bytes of the
/// basis its 1-byte blocks' checksums give away.
#[derive(Debug)]
struct SumHead {
    count: u32,
    s2length: u32,
    bytes: Vec<u8>,
}

fn le32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

/// Every `sum_head` in `data` of the shape `--block-size=1` gives (a count
/// of at least 1, block length 1, strong checksum length 1 to 16,
/// remainder 0; a whole-file transfer sends count 0 and nothing else),
/// with the bytes
/// its blocks' rolling checksums reveal, as far as they follow: for one
/// byte `b` (a signed char), `s1 = b` and the checksum is
/// `(s1 & 0xffff) | (s1 << 16)`.
fn sum_heads(data: &[u8]) -> Vec<SumHead> {
    let mut heads = Vec::new();
    for at in 0..data.len() {
        let (Some(count), Some(1), Some(s2length), Some(0)) = (
            le32(data, at),
            le32(data, at + 4),
            le32(data, at + 8),
            le32(data, at + 12),
        ) else {
            continue;
        };
        if count == 0 || count > 1 << 20 || !(1..=16).contains(&s2length) {
            continue;
        }
        let mut bytes = Vec::new();
        for i in 0..count as usize {
            let Some(sum1) = le32(data, at + 16 + i * (4 + s2length as usize)) else {
                break;
            };
            let b = sum1 as u8;
            let s1 = u32::from(b as i8 as i16 as u16);
            if sum1 != s1 | (s1 << 16) {
                break;
            }
            bytes.push(b);
        }
        heads.push(SumHead {
            count,
            s2length,
            bytes,
        });
    }
    heads
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------
// Basis files
// ---------------------------------------------------------------------------

/// An upload that would make the receiver take another client's file as
/// its basis.
struct Case {
    name: &'static str,
    module: &'static str,
    /// What is in the module before the upload.
    before: &'static [(&'static str, &'static [u8])],
    /// The local file's name.
    file: &'static str,
    /// The destination, `MODULE/path`.
    dest: &'static str,
    /// The options (besides -rt and --block-size=1).
    opts: &'static [&'static str],
    /// The file name of the basis, which must not reach the client either.
    basis_name: Option<&'static str>,
    /// The basis's length alone reaches a plain rsync's client (--append
    /// sends the sum head and no checksums).
    length_only: bool,
}

const CASES: &[Case] = &[
    Case {
        name: "same name, -I",
        module: "handin",
        before: &[("notes.txt", SECRET)],
        file: "notes.txt",
        dest: "handin/",
        opts: &["-I"],
        basis_name: None,
        length_only: false,
    },
    Case {
        name: "a similar name, -y",
        module: "drop",
        before: &[("report-alice.txt", SECRET)],
        file: "report-bob.txt",
        dest: "drop/",
        opts: &["-y"],
        basis_name: Some("alice"),
        length_only: false,
    },
    Case {
        name: "a similar name, -y, overwrite = true",
        module: "handin",
        before: &[("report-alice.txt", SECRET)],
        file: "report-bob.txt",
        dest: "handin/",
        opts: &["--fuzzy"],
        basis_name: Some("alice"),
        length_only: false,
    },
    Case {
        name: "--copy-dest",
        module: "drop",
        before: &[("alice/notes.txt", SECRET)],
        file: "notes.txt",
        dest: "drop/bob/",
        opts: &["--copy-dest=../alice"],
        basis_name: None,
        length_only: false,
    },
    Case {
        name: "--compare-dest",
        module: "drop",
        before: &[("alice/notes.txt", SECRET)],
        file: "notes.txt",
        dest: "drop/bob/",
        opts: &["--compare-dest=../alice"],
        basis_name: None,
        length_only: false,
    },
    Case {
        name: "--link-dest",
        module: "handin",
        before: &[("alice/notes.txt", SECRET)],
        file: "notes.txt",
        dest: "handin/bob/",
        opts: &["--link-dest=../alice"],
        basis_name: None,
        length_only: false,
    },
    Case {
        name: "another upload's partial file, --partial-dir",
        module: "handin",
        before: &[(".partial/notes.txt", SECRET)],
        file: "notes.txt",
        dest: "handin/",
        opts: &["--partial-dir=.partial"],
        basis_name: None,
        length_only: false,
    },
    Case {
        name: "--append",
        module: "handin",
        before: &[("notes.txt", SECRET)],
        file: "notes.txt",
        dest: "handin/",
        opts: &["--append"],
        basis_name: None,
        length_only: true,
    },
];

/// What `case` uploads: longer than the secret for --append (which sends
/// only what lies beyond the existing length).
fn content(case: &Case) -> Vec<u8> {
    if case.length_only {
        [SECRET, MINE].concat()
    } else {
        MINE.to_vec()
    }
}

fn case_args<'a>(case: &'a Case, form: Option<Form>, file: &'a str) -> Vec<&'a str> {
    let mut args = vec!["-rt", "--block-size=1"];
    args.extend(case.opts);
    // What the daemon form asks of every upload into a drop box.
    if form == Some(Form::Daemon) && case.module == "drop" {
        args.push("--ignore-existing");
    }
    args.push(file);
    args.push("DEST");
    args
}

/// Without a gate, each of these uploads sends the client its basis: the
/// decoding below finds the secret in it (so the test can see a leak).
#[test]
fn plain_rsync_sends_the_basis_as_checksums() {
    let Some(_) = real_rsync() else { return };
    let w = world();
    for case in CASES {
        reset(&w, case.module, case.before);
        let file = local(&w, case.file, &content(case));
        let up = upload(&w, Server::Plain, &case_args(case, None, &file), case.dest);
        assert!(
            up.out.status.success(),
            "{}: {}",
            case.name,
            stderr(&up.out)
        );
        let data = demux(&up.sent).unwrap_or_else(|| panic!("{}: no frames", case.name));
        let heads = sum_heads(&data);
        if case.length_only {
            assert!(
                heads.iter().any(|h| h.count as usize == SECRET.len()),
                "{}: {heads:?}",
                case.name
            );
        } else {
            assert!(
                heads.iter().any(|h| h.bytes == SECRET),
                "{}: the secret is not decoded from {heads:?}",
                case.name
            );
        }
        if let Some(name) = case.basis_name {
            assert!(contains(&data, name.as_bytes()), "{}", case.name);
        }
    }
}

/// Through the gate, in both forms, none of these uploads sends the client
/// anything of the basis: no sum head with blocks at all (whole-file
/// transfers send count 0), none of the secret's bytes, not the basis's
/// name. Either the upload runs as a whole-file transfer or it is refused
/// with the reason.
#[test]
fn no_basis_reaches_the_client_through_the_gate() {
    let Some(_) = real_rsync() else { return };
    let w = world();
    let mut leaks = Vec::new();
    let mut ran = 0;
    for form in FORMS {
        for case in CASES {
            reset(&w, case.module, case.before);
            let mine = content(case);
            let file = local(&w, case.file, &mine);
            let args = case_args(case, Some(form), &file);
            let up = upload(&w, Server::Gate(form), &args, case.dest);
            let what = format!("{form:?} {}", case.name);
            let data = demux(&up.sent).unwrap_or_default();
            let heads = sum_heads(&data);
            if !heads.is_empty() {
                let decoded: Vec<String> = heads
                    .iter()
                    .map(|h| format!("count {}: {:?}", h.count, String::from_utf8_lossy(&h.bytes)))
                    .collect();
                leaks.push(format!("{what}: sum heads {decoded:?}"));
            }
            if contains(&up.sent, SECRET) {
                leaks.push(format!("{what}: the secret itself"));
            }
            if let Some(name) = case.basis_name
                && contains(&up.sent, name.as_bytes())
            {
                leaks.push(format!("{what}: the basis's name {name:?}"));
            }
            if up.out.status.success() {
                // Allowed: a whole-file transfer that replaced the file.
                ran += 1;
                assert!(!data.is_empty(), "{what}: nothing was decoded");
                let got = std::fs::read(srv(&w, case.dest).join(case.file)).unwrap();
                assert_eq!(got, mine, "{what}");
                assert_eq!(w.last_decision()["decision"], "allow", "{what}");
            } else {
                let err = stderr(&up.out);
                assert!(
                    err.contains("rsync-gate: denied: option ")
                        && err.contains(&format!("in module '{}' (", case.module))
                        && err.contains("write_only = true"),
                    "{what}: {err}"
                );
                // Nothing changed.
                for (name, content) in case.before {
                    let p = srv(&w, case.module).join(name);
                    assert_eq!(std::fs::read(p).unwrap(), *content, "{what}");
                }
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "existing files reached the client:\n{}",
        leaks.join("\n")
    );
    // Checked mode runs `-I` as a whole-file transfer: the gate added
    // --whole-file.
    assert_eq!(ran, 1);
    let allowed = w
        .audit_records()
        .into_iter()
        .find(|r| r["event"] == "decision" && r["decision"] == "allow" && r["mode"] == "receiver")
        .expect("the allowed checked upload");
    let argv = allowed["argv"].to_string();
    assert!(argv.contains("--whole-file"), "{argv}");
}

/// In daemon mode the gate cannot add --whole-file: a client that passes
/// it uploads (its basis sends nothing), one that does not is refused.
#[test]
fn daemon_uploads_need_whole_file() {
    let Some(_) = real_rsync() else { return };
    let w = world();
    for (module, extra) in [("handin", &[][..]), ("drop", &["--ignore-existing"][..])] {
        reset(&w, module, &[("notes.txt", SECRET)]);
        let file = local(&w, "notes.txt", MINE);
        let dest = format!("{module}/");
        let mut args = vec!["-rtI", "--block-size=1"];
        args.extend(extra);
        args.extend([file.as_str(), "DEST"]);
        let up = upload(&w, Server::Gate(Form::Daemon), &args, &dest);
        assert!(!up.out.status.success());
        let err = stderr(&up.out);
        assert!(
            err.contains(&format!(
                "rsync-gate: denied: option uploads without --whole-file (-W) is not allowed in module '{module}' (write_only = true: "
            )),
            "{module}: {err}"
        );
        assert!(sum_heads(&demux(&up.sent).unwrap_or_default()).is_empty());
        args.insert(0, "-W");
        let up = upload(&w, Server::Gate(Form::Daemon), &args, &dest);
        assert!(up.out.status.success(), "{module}: {}", stderr(&up.out));
        let data = demux(&up.sent).expect("frames");
        assert!(sum_heads(&data).is_empty());
        assert!(!contains(&up.sent, SECRET));
        let want: &[u8] = if module == "drop" { SECRET } else { MINE };
        assert_eq!(
            std::fs::read(srv(&w, module).join("notes.txt")).unwrap(),
            want
        );
    }
}

// ---------------------------------------------------------------------------
// Every other option that makes the receiver look at existing files
// ---------------------------------------------------------------------------

/// How a write-only module treats an option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    Allowed,
    /// Refused, the reason naming this knob text.
    Refused(&'static str),
}

use Want::{Allowed, Refused};

/// (options, in `drop`, in `handin`). Each refused one is refused in both
/// request forms with the gate's reason; each allowed one uploads.
const OPTIONS: &[(&[&str], Want, Want)] = &[
    // A basis, or answers about existing names without a transfer: refused
    // in every write-only module.
    (
        &["-y"],
        Refused("write_only = true"),
        Refused("write_only = true"),
    ),
    (
        &["--compare-dest=x"],
        Refused("write_only = true"),
        Refused("write_only = true"),
    ),
    (
        &["--copy-dest=x"],
        Refused("write_only = true"),
        Refused("write_only = true"),
    ),
    (
        &["--link-dest=x"],
        Refused("write_only = true"),
        Refused("write_only = true"),
    ),
    (
        &["--no-W", "--inplace", "--sparse"],
        Refused("overwrite = false"),
        Refused("write_only = true"),
    ),
    (
        &["-n"],
        Refused("write_only = true"),
        Refused("write_only = true"),
    ),
    (
        &["--existing"],
        Refused("write_only = true"),
        Refused("write_only = true"),
    ),
    (
        &["--max-delete=0"],
        Refused("write_only = true"),
        Refused("write_only = true"),
    ),
    (
        &["--info=skip2"],
        Refused("write_only = true"),
        Refused("write_only = true"),
    ),
    (
        &["--info=ALL2"],
        Refused("write_only = true"),
        Refused("write_only = true"),
    ),
    (
        &["--append"],
        Refused("overwrite = false"),
        Refused("write_only = true"),
    ),
    (
        &["--append-verify"],
        Refused("overwrite = false"),
        Refused("write_only = true"),
    ),
    (
        &["--partial-dir=.p"],
        Refused("overwrite = false"),
        Refused("write_only = true"),
    ),
    (
        &["--delay-updates"],
        Refused("overwrite = false"),
        Refused("write_only = true"),
    ),
    // Comparisons with the file an upload would replace: refused where
    // uploads replace files; with overwrite = false every existing name is
    // skipped before any comparison.
    (
        &["-c"],
        Allowed,
        Refused("write_only = true, overwrite = true"),
    ),
    (
        &["-u"],
        Allowed,
        Refused("write_only = true, overwrite = true"),
    ),
    (
        &["--size-only"],
        Allowed,
        Refused("write_only = true, overwrite = true"),
    ),
    (
        &["--modify-window=5"],
        Allowed,
        Refused("write_only = true, overwrite = true"),
    ),
    // Nothing derived from existing files beyond what every upload shows.
    (&["-I"], Allowed, Allowed),
    (&["-W"], Allowed, Allowed),
    (&["-vv", "-i", "--stats"], Allowed, Allowed),
    (&["--info=skip1,name2"], Allowed, Allowed),
    (&["-H", "-S", "-z"], Allowed, Allowed),
    (&["--inplace"], Refused("overwrite = false"), Allowed),
    (&["--partial"], Refused("overwrite = false"), Allowed),
    (&["-b"], Refused("overwrite = false"), Allowed),
    (&["--ignore-existing"], Allowed, Allowed),
];

#[test]
fn option_decisions_in_both_forms() {
    let Some(_) = real_rsync() else { return };
    let w = world();
    let mut wrong = Vec::new();
    for form in FORMS {
        for (opts, in_drop, in_handin) in OPTIONS {
            for (module, want) in [("drop", *in_drop), ("handin", *in_handin)] {
                reset(
                    &w,
                    module,
                    &[("notes.txt", SECRET), ("x/notes.txt", SECRET)],
                );
                let file = local(&w, "notes.txt", MINE);
                let mut args = vec!["-rt"];
                args.extend(*opts);
                if form == Form::Daemon {
                    // What the daemon form asks of every such upload (but
                    // where the row turns whole-file transfers off, or the
                    // client would not combine it with them).
                    if !opts
                        .iter()
                        .any(|o| ["--no-W", "--append", "--append-verify"].contains(o))
                    {
                        args.push("-W");
                    }
                    if module == "drop" {
                        args.push("--ignore-existing");
                    }
                }
                args.extend([file.as_str(), "DEST"]);
                let dest = format!("{module}/");
                let up = upload(&w, Server::Gate(form), &args, &dest);
                let what = format!("{form:?} {module} {args:?}");
                let err = stderr(&up.out);
                let denial = err
                    .lines()
                    .find(|l| l.starts_with("rsync-gate: denied: "))
                    .unwrap_or("");
                match want {
                    Allowed if !up.out.status.success() => {
                        wrong.push(format!("{what}: refused: {err}"));
                    }
                    Allowed => {}
                    Refused(_) if up.out.status.success() => {
                        wrong.push(format!("{what}: allowed"));
                    }
                    Refused(knob) => {
                        let reason = format!("is not allowed in module '{module}' ({knob}");
                        if !(denial.starts_with("rsync-gate: denied: option ")
                            && denial.contains(&reason))
                        {
                            wrong.push(format!("{what}: {err}"));
                        } else {
                            let last = w.last_decision();
                            assert_eq!(last["decision"], "deny", "{what}");
                            assert_eq!(last["reason"]["code"], "option_not_permitted", "{what}");
                        }
                    }
                }
                // Whatever happened, nothing of the existing files came back.
                let data = demux(&up.sent).unwrap_or_default();
                assert!(sum_heads(&data).is_empty(), "{what}");
                assert!(!contains(&up.sent, SECRET), "{what}");
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// `-c` with `--info=skip2` confirms a guess of another client's content
/// even where existing names are skipped (`overwrite = false`): rsync
/// reports each skipped name as "(uptodate)" or "(sum change)". So does
/// `-u` for modification times where uploads may replace files. Over a
/// plain shell the guesses are answered; through the gate, in both forms,
/// they are refused.
#[test]
fn guesses_about_existing_files_are_not_answered() {
    let Some(_) = real_rsync() else { return };
    let w = world();
    let right = local(&w, "notes.txt", SECRET);
    let probe = |server: Server, module: &str, opts: &[&str]| {
        reset(&w, module, &[("notes.txt", SECRET)]);
        let mut args = vec!["-r"];
        args.extend(opts);
        if server == Server::Gate(Form::Daemon) {
            args.push("-W");
        }
        args.extend([right.as_str(), "DEST"]);
        upload(&w, server, &args, &format!("{module}/"))
    };
    // The control: a right guess is confirmed.
    let o = probe(
        Server::Plain,
        "drop",
        &["--ignore-existing", "-c", "--info=skip2"],
    );
    assert!(
        String::from_utf8_lossy(&o.out.stdout).contains("notes.txt exists (uptodate)"),
        "{}",
        String::from_utf8_lossy(&o.out.stdout)
    );
    for form in FORMS {
        let o = probe(
            Server::Gate(form),
            "drop",
            &["--ignore-existing", "-c", "--info=skip2"],
        );
        assert!(!o.out.status.success(), "{form:?}");
        let out = String::from_utf8_lossy(&o.out.stdout);
        assert!(!out.contains("uptodate"), "{form:?}: {out}");
        assert!(
            stderr(&o.out)
                .contains("option --info is not allowed in module 'drop' (write_only = true: "),
            "{form:?}: {}",
            stderr(&o.out)
        );
    }
    // -u: a file newer on the server is skipped, one older replaced: the
    // client learns the order of the times.
    let touched = Command::new("touch")
        .args(["-d", "2001-02-03 04:05:06"])
        .arg(&right)
        .status()
        .unwrap();
    assert!(touched.success());
    let o = probe(Server::Plain, "handin", &["-u", "-vv"]);
    assert!(
        String::from_utf8_lossy(&o.out.stdout).contains("notes.txt is newer"),
        "{}",
        String::from_utf8_lossy(&o.out.stdout)
    );
    for form in FORMS {
        let o = probe(Server::Gate(form), "handin", &["-u", "-vv"]);
        assert!(!o.out.status.success(), "{form:?}");
        assert!(
            stderr(&o.out).contains(
                "option --update (-u) is not allowed in module 'handin' (write_only = true, overwrite = true: "
            ),
            "{form:?}: {}",
            stderr(&o.out)
        );
    }
}

/// What a write-only module still shows (README, Known limitations): with
/// `overwrite = false` an existing name is skipped, so the client can tell
/// it exists; with `overwrite = true` rsync's itemized changes say whether
/// the name existed and whether its size and time differ from the upload's.
/// The contents never come back.
#[test]
fn what_a_write_only_module_still_shows() {
    let Some(_) = real_rsync() else { return };
    let w = world();
    let dir = w.client.join("many");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    set_mode(&dir, 0o755);
    std::fs::write(dir.join("notes.txt"), MINE).unwrap();
    std::fs::write(dir.join("new.txt"), MINE).unwrap();
    // Older than anything on the server, so times differ.
    let touched = Command::new("touch")
        .args(["-d", "2001-02-03 04:05:06"])
        .arg(dir.join("notes.txt"))
        .arg(dir.join("new.txt"))
        .status()
        .unwrap();
    assert!(touched.success());
    let src = format!("{}/", dir.display());
    for form in FORMS {
        let extra: &[&str] = match form {
            Form::Checked => &[],
            Form::Daemon => &["-W", "--ignore-existing"],
        };
        reset(&w, "drop", &[("notes.txt", SECRET)]);
        let mut args = vec!["-rt", "-i"];
        args.extend(extra);
        args.extend([src.as_str(), "DEST"]);
        let up = upload(&w, Server::Gate(form), &args, "drop/");
        assert!(up.out.status.success(), "{form:?}: {}", stderr(&up.out));
        let out = String::from_utf8_lossy(&up.out.stdout);
        assert!(out.contains("<f+++++++++ new.txt"), "{form:?}: {out}");
        assert!(!out.contains("notes.txt"), "{form:?}: {out}");
        assert_eq!(std::fs::read(srv(&w, "drop/notes.txt")).unwrap(), SECRET);

        reset(&w, "handin", &[("notes.txt", SECRET)]);
        let mut args = vec!["-rt", "-i"];
        if form == Form::Daemon {
            args.push("-W");
        }
        args.extend([src.as_str(), "DEST"]);
        let up = upload(&w, Server::Gate(form), &args, "handin/");
        assert!(up.out.status.success(), "{form:?}: {}", stderr(&up.out));
        let out = String::from_utf8_lossy(&up.out.stdout);
        assert!(out.contains("<f+++++++++ new.txt"), "{form:?}: {out}");
        assert!(out.contains("<f.st...... notes.txt"), "{form:?}: {out}");
        assert_eq!(std::fs::read(srv(&w, "handin/notes.txt")).unwrap(), MINE);
        let data = demux(&up.sent).expect("frames");
        assert!(sum_heads(&data).is_empty(), "{form:?}");
        assert!(!contains(&up.sent, SECRET), "{form:?}");
    }
}

/// The decoding itself, on a made-up stream: a greeting, then frames.
#[test]
fn decoding_finds_a_basis_in_frames() {
    let mut payload = vec![0x02, 0x04, 0x80];
    for v in [3u32, 1, 2, 0] {
        payload.extend(v.to_le_bytes());
    }
    for b in b"ab\xe9" {
        let s1 = u32::from(*b as i8 as i16 as u16);
        payload.extend((s1 | (s1 << 16)).to_le_bytes());
        payload.extend([0x11, 0x22]);
    }
    let mut stream = b"@RSYNCD: 32.0\n@RSYNCD: OK\n".to_vec();
    for chunk in payload.chunks(7) {
        let header = (7u32 << 24) | chunk.len() as u32;
        stream.extend(header.to_le_bytes());
        stream.extend(chunk);
    }
    // An info message between the data frames.
    let info = b"hello\n";
    stream.extend(((9u32 << 24) | info.len() as u32).to_le_bytes());
    stream.extend(info);
    let data = demux(&stream).unwrap();
    assert_eq!(data, payload);
    let heads = sum_heads(&data);
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert_eq!(heads[0].count, 3);
    assert_eq!(heads[0].s2length, 2);
    assert_eq!(heads[0].bytes, b"ab\xe9");
    // A whole-file sum head is all zeros: nothing to decode.
    assert!(sum_heads(&[0; 32]).is_empty());
    assert_eq!(demux(b"@RSYNCD: 32.0\n"), None);
}
