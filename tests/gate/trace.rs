//! `explain --trace`: every rule that applied, in order, each with the
//! policy file:line:col it came from (the client, the `from` entry that
//! matched, the module and the `modules` entry that grants it, each
//! option's row and the key its rule consults, what the gate adds and why),
//! each path's resolution and what rsync is handed for it, ending in the
//! decision. The text and the JSON form.

use std::process::{Command, Output, Stdio};

use crate::common::{self, World};

const CONNECTION: &str = "127.0.0.1 40000 127.0.0.1 22";

fn world() -> World {
    let w = World::new();
    let www = w.module_dir("www");
    common::sample_tree(&www);
    let backup = w.module_dir("backup");
    std::fs::create_dir(backup.join("prev")).unwrap();
    common::set_mode(&backup.join("prev"), 0o755);
    w.write_policy(
        r#"
[modules.www]
path = "{srv}/www"
comment = "web site"

[modules.backup]
path = "{srv}/backup"
read_only = false
delete = true
max_connections = 4

[clients.host1]
note = "nightly backup"
modules = ["www", "backup"]
from = ["198.51.100.0/24", "127.0.0.1"]
"#,
    );
    w
}

fn explain(w: &World, args: &[&str], command: &[&str]) -> Output {
    Command::new(common::gate_bin())
        .arg("explain")
        .args(args)
        .arg("--policy")
        .arg(&w.policy)
        .args(["--client", "host1"])
        .arg("--")
        .args(command)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The numbered lines after `trace:`, without their numbers.
fn trace_lines(o: &Output) -> Vec<String> {
    let text = String::from_utf8_lossy(&o.stdout);
    let mut lines = text.lines().skip_while(|l| *l != "trace:");
    assert_eq!(lines.next(), Some("trace:"), "no trace in:\n{text}");
    lines
        .take_while(|l| l.starts_with("  "))
        .map(|l| {
            let l = l.trim_start();
            let (n, rest) = l.split_once(". ").unwrap();
            assert!(n.parse::<usize>().is_ok(), "{l}");
            rest.to_string()
        })
        .collect()
}

/// `FILE:LINE:COL` of the first occurrence of `needle` in the policy file
/// (COL counts from 1 at the needle's first character).
fn at(w: &World, needle: &str) -> String {
    let text = std::fs::read_to_string(&w.policy).unwrap();
    let (i, line) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle} not in the policy"));
    let col = line.find(needle).unwrap() + 1;
    format!("{}:{}:{col}", w.policy.display(), i + 1)
}

#[test]
fn a_push_with_link_dest_shows_every_rule_and_path() {
    let w = world();
    let cmd = [
        "rsync",
        "--server",
        "-logDtpre.iLsfxCIvu",
        "--delete",
        "--link-dest=../prev",
        ".",
        "backup/cur/",
    ];
    let o = explain(&w, &["--trace", "--connection", CONNECTION], &cmd);
    let out = String::from_utf8_lossy(&o.stdout);
    eprintln!(
        "$ rsync-gate explain --trace ... -- {}\n{out}",
        cmd.join(" ")
    );
    assert_eq!(o.status.code(), Some(0), "{out}{}", common::stderr(&o));
    let lines = trace_lines(&o);
    let srv = w.root.join("srv");
    let vault = srv.join("vault");
    let argv = out
        .lines()
        .find_map(|l| l.strip_prefix("argv:     "))
        .unwrap();
    // The descriptors the trace names are the argv's.
    let link_dest_fd = argv
        .split(' ')
        .find_map(|a| a.trim_matches('\'').strip_prefix("--link-dest="))
        .unwrap();
    let dest_fd = argv.rsplit(' ').next().unwrap();
    // A table is where its header is written.
    let client_at = at(&w, "[clients.host1]");
    let module_at = at(&w, "[modules.backup]");
    let expected = vec![
        format!("client 'host1' ([clients.host1] at {client_at})"),
        format!(
            "source 127.0.0.1 matches from entry 127.0.0.1 ({})",
            at(&w, "\"127.0.0.1\"")
        ),
        "request: rsync --server (host:path), the client pushes (10 option(s), 1 path(s))".into(),
        "path 'backup/cur/' names module 'backup'".into(),
        "--link-dest '../prev': relative to the destination directory".into(),
        format!(
            "module 'backup' (path {}; [modules.backup] at {module_at}) is granted by the client's modules ({})",
            vault.display(),
            at(&w, "\"backup\"]")
        ),
        format!(
            "push (rsync receives) in module 'backup': allowed by read_only = false at {}",
            at(&w, "read_only = false")
        ),
        "option --links (-l) (row links, rule allow): allowed".into(),
        "option --owner (-o) (row owner, rule allow): allowed".into(),
        "option --group (-g) (row group, rule allow): allowed".into(),
        "option -D (row D, rule allow): allowed".into(),
        "option --times (-t) (row times, rule allow): allowed".into(),
        "option --perms (-p) (row perms, rule allow): allowed".into(),
        "option --recursive (-r) (row recursive, rule allow): allowed".into(),
        "option -e '.iLsfxCIvu' (row e, rule allow): allowed".into(),
        format!(
            "option --delete (row delete, rule delete): allowed by delete = true at {}",
            at(&w, "delete = true")
        ),
        "option --link-dest (row link-dest, rule allow): allowed".into(),
        format!(
            "adds --drop-D: no device or special files are created; devices = false, the default ([modules.backup] at {module_at})"
        ),
        format!(
            "adds --munge-links: symlinks are stored munged; munge_links = true, the default ([modules.backup] at {module_at})"
        ),
        format!(
            "adds --confine-root={}: the server's rsync refuses paths resolving outside the module",
            vault.display()
        ),
        format!(
            "adds --chmod=ug-s: uploads lose set-user-ID and set-group-ID bits; setuid = false, the default ([modules.backup] at {module_at})"
        ),
        format!(
            "adds --timeout=600: rsync ends a session without I/O for this long; timeout = 600, the default ([modules.backup] at {module_at})"
        ),
        format!("module 'backup' root {}: safe to serve", vault.display()),
        format!(
            "destination 'backup/cur/' resolves to {}/cur/ (created by the gate before rsync starts); rsync gets {dest_fd}",
            vault.display()
        ),
        format!(
            "--link-dest '../prev' resolves to {}/prev; rsync gets {link_dest_fd}",
            vault.display()
        ),
        "decision: allow: rsync runs as a receiver (with the argv above)".into(),
    ];
    assert_eq!(
        lines,
        expected,
        "\n got:\n  {}\n want:\n  {}",
        lines.join("\n  "),
        expected.join("\n  ")
    );
    // The JSON form: the same steps, typed, origins as file:line:col.
    let o = explain(&w, &["--trace", "--json", "--connection", CONNECTION], &cmd);
    let e: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let steps = e["trace"].as_array().unwrap();
    assert_eq!(steps.len(), expected.len());
    let delete = steps
        .iter()
        .find(|s| s["step"] == "option" && s["row"] == "delete")
        .unwrap();
    assert_eq!(delete["allowed"], true);
    assert_eq!(delete["rule"], "delete");
    assert_eq!(delete["knob"]["module"], "backup");
    assert_eq!(delete["knob"]["key"], "delete");
    assert_eq!(delete["knob"]["value"], "true");
    assert_eq!(delete["knob"]["at"]["key"], at(&w, "delete = true"));
    let matched = &steps[1];
    assert_eq!(matched["step"], "source_matched");
    assert_eq!(matched["index"], 1);
    assert_eq!(matched["at"]["key"], at(&w, "\"127.0.0.1\""));
    let path = steps
        .iter()
        .find(|s| s["step"] == "path" && s["role"] == "--link-dest")
        .unwrap();
    assert_eq!(path["resolved"], format!("{}/prev", vault.display()));
    assert_eq!(path["handed"], link_dest_fd);
    let last = steps.last().unwrap();
    assert_eq!(last["step"], "decision");
    assert_eq!(last["stage"], "final");
    assert_eq!(last["allowed"], true);
    // Without --trace there is none.
    let o = explain(&w, &["--json", "--connection", CONNECTION], &cmd);
    let e: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(e.get("trace").is_none(), "{e}");
    let o = explain(&w, &["--connection", CONNECTION], &cmd);
    assert!(!String::from_utf8_lossy(&o.stdout).contains("trace:"));
}

#[test]
fn refusals_end_the_trace_at_the_rule_that_refused() {
    let w = world();
    let pull = ["rsync", "--server", "--sender", "-re.iLsfxCIvu"];
    let with = |paths: &[&str]| -> Vec<String> {
        pull.iter()
            .chain([&"."])
            .chain(paths)
            .map(|s| s.to_string())
            .collect()
    };
    let client_at = at(&w, "[clients.host1]");
    let www_at = at(&w, "[modules.www]");
    let run = |from: &str, cmd: &[String]| {
        let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let o = explain(&w, &["--trace", "--from", from], &cmd);
        assert_eq!(o.status.code(), Some(1), "{}", common::stderr(&o));
        trace_lines(&o)
    };
    // An address outside `from`.
    assert_eq!(
        run("203.0.113.9", &with(&["www/"])),
        [
            format!("client 'host1' ([clients.host1] at {client_at})"),
            format!(
                "source 203.0.113.9 matches no from entry (198.51.100.0/24, 127.0.0.1; at {client_at})"
            ),
            "decision: deny: connections from 203.0.113.9 are not allowed for this key (source_not_allowed)"
                .to_string(),
        ]
    );
    // A push into a read-only module: the default says so.
    let push: Vec<String> = ["rsync", "--server", "-r", ".", "www/"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let lines = run("127.0.0.1", &push);
    assert_eq!(
        lines[lines.len() - 2..],
        [
            format!(
                "push (rsync receives) in module 'www': refused by read_only = true, the default ([modules.www] at {www_at})"
            ),
            "decision: deny: module 'www' is read-only (read_only)".to_string(),
        ]
    );
    // A path leading out of the module: refused once resolved.
    let lines = run("127.0.0.1", &with(&["www/../../"]));
    let www = w.root.join("srv/public-tree");
    assert_eq!(
        lines[lines.len() - 2..],
        [
            format!("module 'www' root {}: safe to serve", www.display()),
            "decision: deny: path 'www/../../' leads outside its module (escapes_module)"
                .to_string(),
        ]
    );
    // A link inside the module: the resolution names where it leads.
    let cmd: Vec<&str> = pull
        .iter()
        .copied()
        .chain([".", "www/link-to-sub/"])
        .collect();
    let o = explain(&w, &["--trace", "--from", "127.0.0.1"], &cmd);
    assert_eq!(o.status.code(), Some(0), "{}", common::stderr(&o));
    let lines = trace_lines(&o);
    assert!(
        lines.iter().any(|l| l.starts_with(&format!(
            "source 'www/link-to-sub/' resolves to {}/sub/; rsync gets /proc/self/fd/",
            www.display()
        ))),
        "{lines:#?}"
    );
}

/// A `host::` session and one of its in-band requests.
#[test]
fn daemon_sessions_and_in_band_requests_are_traced() {
    let w = world();
    let o = explain(
        &w,
        &["--trace", "--connection", CONNECTION],
        &["rsync", "--server", "--daemon", "."],
    );
    assert_eq!(o.status.code(), Some(0), "{}", common::stderr(&o));
    let lines = trace_lines(&o);
    let srv = w.root.join("srv");
    for want in [
        "request: rsync --server --daemon . (host::module)".to_string(),
        format!(
            "module 'www' root {}: safe to serve",
            srv.join("public-tree").display()
        ),
        format!(
            "module 'backup' root {}: safe to serve",
            srv.join("vault").display()
        ),
        "decision: allow: rsync runs as a daemon (a daemon over the SSH channel)".to_string(),
    ] {
        assert!(lines.contains(&want), "{want} not in {lines:#?}");
    }
    let o = explain(
        &w,
        &["--trace", "--connection", CONNECTION, "--module", "backup"],
        &["rsyncd", "--server", "-r", "--delete", ".", "cur/"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", common::stderr(&o));
    let lines = trace_lines(&o);
    assert!(
        lines.contains(
            &"request: in-band request of a host:: session for module 'backup', the client pushes (2 option(s), 1 path(s))"
                .to_string()
        ),
        "{lines:#?}"
    );
    assert_eq!(
        lines.last().unwrap(),
        "decision: allow: the daemon runs the request as a receiver in module 'backup'"
    );
}
