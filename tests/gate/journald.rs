//! `[gate] journald = true`: each decision and session end as a structured
//! journal entry, read here from a datagram socket the test listens on
//! (the gate's debug-only `--test-journal-socket`), in the journal's native
//! format: the same records the audit log has, with the fields
//! `journalctl RSYNC_GATE_CLIENT=...` selects on.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rsync_gate::audit::journald::{self, ALLOW_ID, DENY_ID, END_ID};

use crate::common::{self, World, gate_bin, install_exec, sh_quote, stderr};

/// A shim for `rsync -e` like `World::shim`, with the gate sending journal
/// entries to `socket`.
fn shim(world: &World, client: &str, socket: &Path) -> PathBuf {
    let path = world.root.join(format!("bin/journal-shim-{client}"));
    install_exec(
        &path,
        &format!(
            "#!/bin/sh\nshift\n\
             SSH_ORIGINAL_COMMAND=\"$*\" SSH_CONNECTION=\"192.0.2.10 40000 127.0.0.1 22\" \
             exec {} --test-journal-socket {} serve --policy {} --client {}\n",
            sh_quote(gate_bin().as_os_str()),
            sh_quote(socket.as_os_str()),
            sh_quote(world.policy.as_os_str()),
            sh_quote(std::ffi::OsStr::new(client)),
        ),
    );
    path
}

fn rsync(world: &World, shim: &Path, args: &[&str]) -> std::process::Output {
    Command::new("/usr/bin/rsync")
        .arg("-e")
        .arg(shim)
        .args(args)
        .current_dir(&world.client)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Every datagram waiting on `sock`, taken apart. The gate sends each
/// before it goes on, so once it has exited they are all here.
fn entries(sock: &UnixDatagram) -> Vec<Vec<(String, String)>> {
    sock.set_nonblocking(true).unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match sock.recv(&mut buf) {
            Ok(n) => out.push(
                journald::parse(&buf[..n])
                    .unwrap_or_else(|| panic!("not a native journal entry: {:?}", &buf[..n])),
            ),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return out,
            Err(e) => panic!("recv: {e}"),
        }
    }
}

fn field<'a>(entry: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    entry
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn one<'a>(entry: &'a [(String, String)], key: &str) -> &'a str {
    match field(entry, key).as_slice() {
        [v] => v,
        other => panic!("{key}: {other:?} in {entry:?}"),
    }
}

const POLICY: &str = "[modules.www]\npath = \"{srv}/www\"\n\n\
                      [clients.backup01]\nmodules = [\"www\"]\n";

#[test]
fn decisions_and_ends_go_to_the_journal_as_fields() {
    if common::real_rsync().is_none() {
        return;
    }
    let world = World::new();
    let www = world.module_dir("www");
    common::sample_tree(&www);
    // Lines before the first table are [gate]'s (World writes [gate] first).
    world.write_policy(&format!("journald = true\n\n{POLICY}"));
    let socket = world.root.join("journal.socket");
    let journal = UnixDatagram::bind(&socket).unwrap();
    let shim = shim(&world, "backup01", &socket);

    let dst = world.client.join("dst");
    let out = rsync(
        &world,
        &shim,
        &["-a", "host:www/", &format!("{}/", dst.display())],
    );
    assert!(out.status.success(), "pull: {}", stderr(&out));
    common::assert_same_tree(&www, &dst);
    let out = rsync(
        &world,
        &shim,
        &["-a", &format!("{}/", dst.display()), "host:www/"],
    );
    assert!(
        stderr(&out).contains("rsync-gate: denied: module 'www' is read-only"),
        "push: {}",
        stderr(&out)
    );

    let got = entries(&journal);
    let records = world.audit_records();
    assert_eq!(got.len(), 3, "{got:#?}");
    assert_eq!(records.len(), 3, "{records:#?}");
    // One entry per audit record, in order, saying the same.
    for (e, r) in got.iter().zip(&records) {
        assert_eq!(one(e, "SYSLOG_IDENTIFIER"), "rsync-gate");
        assert_eq!(one(e, "SYSLOG_FACILITY"), "10");
        assert_eq!(one(e, "RSYNC_GATE_CLIENT"), "backup01");
        assert_eq!(one(e, "RSYNC_GATE_SESSION"), r["session"].as_str().unwrap());
        assert_eq!(one(e, "RSYNC_GATE_EVENT"), r["event"].as_str().unwrap());
        assert_eq!(one(e, "RSYNC_GATE_SOURCE"), "192.0.2.10");
        assert_eq!(field(e, "RSYNC_GATE_MODULE"), ["www"]);
        assert!(
            one(e, "MESSAGE").starts_with("client=backup01 from=192.0.2.10 "),
            "{e:?}"
        );
    }
    let (allow, end, deny) = (&got[0], &got[1], &got[2]);
    assert_eq!(one(allow, "MESSAGE_ID"), ALLOW_ID);
    assert_eq!(one(allow, "PRIORITY"), "6");
    assert_eq!(one(allow, "RSYNC_GATE_DECISION"), "allow");
    assert_eq!(one(allow, "RSYNC_GATE_MODE"), "sender");
    assert!(field(allow, "RSYNC_GATE_REASON").is_empty());
    assert_eq!(one(end, "MESSAGE_ID"), END_ID);
    assert_eq!(one(end, "RSYNC_GATE_EXIT_STATUS"), "0");
    assert_eq!(
        one(end, "RSYNC_GATE_SESSION"),
        one(allow, "RSYNC_GATE_SESSION")
    );
    assert!(field(end, "RSYNC_GATE_DECISION").is_empty());
    assert_eq!(one(deny, "MESSAGE_ID"), DENY_ID);
    assert_eq!(one(deny, "PRIORITY"), "4");
    assert_eq!(one(deny, "RSYNC_GATE_DECISION"), "deny");
    assert_eq!(one(deny, "RSYNC_GATE_REASON"), "read_only");
    assert_eq!(one(deny, "RSYNC_GATE_MODE"), "receiver");
    assert!(
        one(deny, "MESSAGE").ends_with(&format!(
            "decision=deny mode=receiver modules=www reason=read_only session={}",
            one(deny, "RSYNC_GATE_SESSION")
        )),
        "{deny:?}"
    );
}

#[test]
fn nothing_goes_to_the_journal_unless_the_policy_says_so() {
    if common::real_rsync().is_none() {
        return;
    }
    let world = World::new();
    common::sample_tree(&world.module_dir("www"));
    world.write_policy(POLICY);
    let socket = world.root.join("journal.socket");
    let journal = UnixDatagram::bind(&socket).unwrap();
    let shim = shim(&world, "backup01", &socket);
    let out = rsync(&world, &shim, &["-a", "host:www/", "dst/"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(world.audit_records().len(), 2);
    assert!(entries(&journal).is_empty());

    // With journald = true and no journal listening, sessions go on.
    world.write_policy(&format!("journald = true\n\n{POLICY}"));
    drop(journal);
    std::fs::remove_file(&socket).unwrap();
    let out = rsync(&world, &shim, &["-a", "host:www/", "dst2/"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(world.audit_records().len(), 4);
}
