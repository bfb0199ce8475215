//! What administrators and clients read (issue 12, point 2): `check` lists
//! every mistake of a policy at once, each once, in plain words; `explain`
//! says what it needs to know; a module whose directory is missing is
//! "not available right now", not "not safe to serve".

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{World, set_mode, stderr};

/// `rsync-gate COMMAND --policy POLICY ARGS...`.
fn gate(args: &[&str], policy: &Path) -> Output {
    let (command, rest) = args.split_first().unwrap();
    Command::new(crate::common::gate_bin())
        .arg(command)
        .arg("--policy")
        .arg(policy)
        .args(rest)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Several mistakes in one file and one in a drop-in: `check` prints each
/// with file:line:col, in file order, and nothing for what only looks
/// wrong because of them (the clients naming the module whose path has a
/// trailing '/', the `delete = true` of the module whose `read_only` is
/// misspelt).
#[test]
fn check_lists_every_mistake_at_once() {
    let w = World::new();
    let conf_d = w.root.join("conf.d");
    std::fs::create_dir(&conf_d).unwrap();
    set_mode(&conf_d, 0o755);
    let drop_in = conf_d.join("clients.toml");
    std::fs::write(
        &drop_in,
        "[clients.www]\nmodules = [\"www\"]\n\n[clients.b]\nmodules = [\"www\"]\nfrom = \"192.0.2.1\"\n",
    )
    .unwrap();
    set_mode(&drop_in, 0o644);
    let p = &w.policy;
    std::fs::write(
        p,
        format!(
            "[gate]\n\
             include = [\"{}/*.toml\"]\n\
             sandbox = \"maybe\"\n\
             syslog = \"yes\"\n\
             \n\
             [modules.www]\n\
             path = \"{}/www/\"\n\
             max_connections = \"4\"\n\
             \n\
             [modules.up]\n\
             path = \"/srv/up\"\n\
             readonly = false\n\
             delete = true\n\
             \n\
             [clients.www]\n\
             modules = [\"www\", \"up\"]\n",
            conf_d.display(),
            w.root.join("srv").display()
        ),
    )
    .unwrap();
    set_mode(p, 0o644);
    let o = gate(&["check"], p);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let (p, d) = (p.display(), drop_in.display());
    let srv = w.root.join("srv");
    assert_eq!(
        stdout(&o),
        format!(
            "{p}:3:11: sandbox must be \"required\", \"best-effort\" or \"off\", not \"maybe\"\n\
             {p}:4:10: syslog: expected true or false, found the text \"yes\"\n\
             {p}:7:8: '{}/www/' must be written without the trailing '/'\n\
             {p}:8:19: max_connections: expected a whole number, found the text \"4\"\n\
             {p}:12:1: unknown key 'readonly' in [modules.up]; did you mean 'read_only'?\n\
             {d}:1:1: client 'www' is already defined at {p}:15:1\n\
             {d}:6:8: from: expected a list of addresses, like [\"192.0.2.10\", \"198.51.100.0/24\"], found the text \"192.0.2.1\"\n\
             7 error(s)\n",
            srv.display()
        )
    );
    // The same policy refuses every session, naming the first problem.
    let o = w.serve("www", Some(b"rsync --server --sender . www/"), &[]);
    assert_eq!(
        stderr(&o).trim_end(),
        format!(
            "rsync-gate: denied: the server's policy is invalid: {p}:3:11: sandbox must be \"required\", \"best-effort\" or \"off\", not \"maybe\" (and 6 more problems)"
        )
    );
}

/// A TOML syntax error: every one found, in words, and nothing guessed
/// from what the parser could not read.
#[test]
fn check_explains_syntax_errors() {
    let w = World::new();
    let p = &w.policy;
    std::fs::write(
        p,
        "[modules.www]\npath = /srv/www\nread_only = yes\n\n[clients.c]\nmodules = [\"www\", \"nope\"]\n",
    )
    .unwrap();
    set_mode(p, 0o644);
    let o = gate(&["check"], p);
    assert_eq!(o.status.code(), Some(1));
    let p = p.display();
    assert_eq!(
        stdout(&o),
        format!(
            "{p}:2:8: text must be in quotes: \"/srv/www\"\n\
             {p}:3:13: 'yes' is not a value here: write true or false\n\
             2 error(s)\n"
        )
    );
}

/// `explain` without an address, for a client restricted by address, says
/// what to give it.
#[test]
fn explain_without_an_address_asks_for_one() {
    let w = World::new();
    w.module_dir("www");
    w.write_policy(
        "[modules.www]\npath = \"{srv}/www\"\n\n[clients.c]\nmodules = [\"www\"]\nfrom = [\"192.0.2.10\", \"198.51.100.0/24\"]\n",
    );
    let run = |extra: &[&str]| {
        let mut args = vec!["explain", "--client", "c"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "rsync", "--server", "--sender", "-r", ".", "www/"]);
        gate(&args, &w.policy)
    };
    let o = run(&[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains(
            "reason:   client 'c' is restricted by address (from = [\"192.0.2.10\", \"198.51.100.0/24\"]); \
             give --from ADDRESS to explain a request from there (no_source_address)\n"
        ),
        "{}",
        stdout(&o)
    );
    let o = run(&["--from", "192.0.2.10"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    // The code is serve's, for the same refusal.
    let o = run(&["--json"]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["reason"]["code"], "no_source_address", "{j}");
}

/// A module whose directory is missing: the client is told it is not
/// available right now (no server path), the audit log and `check` say
/// where it should be.
#[test]
fn missing_module_directory_is_not_available_right_now() {
    let w = World::new();
    w.module_dir("www");
    let gone = w.root.join("srv/gone");
    w.write_policy(&format!(
        "[modules.www]\npath = \"{{srv}}/www\"\n\n[modules.gone]\npath = \"{}\"\n\n[clients.c]\nmodules = [\"www\", \"gone\"]\n",
        gone.display()
    ));
    let o = w.serve("c", Some(b"rsync --server --sender -r . gone/"), &[]);
    assert_eq!(
        stderr(&o).trim_end(),
        "rsync-gate: denied: module 'gone' is not available right now: its directory is missing on the server (the server's audit log says where)"
    );
    let r = w.last_decision();
    assert_eq!(r["reason"]["code"], "module_missing", "{r}");
    assert_eq!(
        r["reason"]["detail"],
        format!("{} does not exist", gone.display()),
        "{r}"
    );
    let o = gate(&["check"], &w.policy);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains(&format!(
            "error: {}:9:1: module 'gone': {} does not exist (serve refuses the module)\n",
            w.policy.display(),
            gone.display()
        )),
        "{}",
        stdout(&o)
    );
    // Pointing at a file is the same mistake.
    std::fs::write(&gone, "").unwrap();
    let o = w.serve("c", Some(b"rsync --server --sender -r . gone/"), &[]);
    assert!(!o.status.success());
    let r = w.last_decision();
    assert_eq!(r["reason"]["code"], "module_missing", "{r}");
    assert_eq!(
        r["reason"]["detail"],
        format!("{} is not a directory", gone.display()),
        "{r}"
    );
}

/// `check` names a module once, a policy file once, and an owner by name.
#[test]
fn check_says_each_thing_once() {
    use rsync_gate::cmd::check::{Who, account};
    use rsync_gate::host::Account;
    let w = World::new();
    let up = w.module_dir("up");
    let home = up.join("home/u");
    std::fs::create_dir_all(&home).unwrap();
    let other = w.module_dir("other");
    nix::unistd::chown(&other, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    w.write_policy(
        "[modules.up]\npath = \"{srv}/up\"\nread_only = false\n\n[modules.other]\npath = \"{srv}/other\"\n\n[clients.c]\nmodules = [\"up\", \"other\"]\n",
    );
    let policy =
        rsync_gate::policy::load_text(&w.policy, &std::fs::read_to_string(&w.policy).unwrap())
            .unwrap();
    // root, with its home inside the writable module.
    let who = Who {
        account: Account {
            uid: 0,
            name: "root".into(),
            home: Some(home),
        },
        gid: 0,
        group: "root".into(),
        groups: vec![0],
        shell: None,
        uses: vec![],
    };
    let gate_path = crate::common::gate_bin();
    let report = account::check(&account::Ctx {
        policy: &policy,
        who: &who,
        gate: &gate_path,
        syslog_socket: Path::new("/dev/log"),
        acting: false,
    });
    let found: Vec<String> = report
        .findings
        .into_iter()
        .filter(|f| f.error && f.text.contains("module '"))
        .map(|f| f.text)
        .collect();
    let p = w.policy.display();
    assert_eq!(
        found,
        [
            format!(
                "{p}:10:1: module 'other': {} is owned by {}, not root (serve refuses the module)",
                other.display(),
                rsync_gate::trust::owner_name(65534)
            ),
            format!(
                "{p}:6:1: module 'up': it is writable and contains the account's home directory files (~/.ssh or dot files) (serve refuses the module)"
            ),
        ]
    );
    // The policy file, named once.
    nix::unistd::chown(&w.policy, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    let o = gate(&["check", "--account", "root"], &w.policy);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.contains(&format!(
            "error: {p} is owned by {}, not root (serve refuses a policy the account could modify)\n",
            rsync_gate::trust::owner_name(65534)
        )),
        "{out}"
    );
    assert!(!out.contains(&format!("{p}: {p}")), "{out}");
}

/// README's `check` example of six mistakes is what `check` prints for
/// them: examples/audit-review/policy.toml with the mistakes made in it
/// and a drop-in defining `mirror01` again, installed where README says
/// (shown as /etc/rsync-gate).
#[test]
fn readme_example_of_many_mistakes_is_what_check_prints() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    let start = "```\n$ rsync-gate check --policy /etc/rsync-gate/policy.toml\n/etc/rsync-gate/policy.toml:7:10:";
    let i = readme.find(start).expect("README has the example");
    let block = &readme[i + 4..];
    let block = &block[..block.find("```").unwrap()];
    let want = block.split_once('\n').unwrap().1;

    let d = tempfile::tempdir().unwrap();
    let etc = d.path().join("etc");
    let conf_d = etc.join("conf.d");
    std::fs::create_dir_all(&conf_d).unwrap();
    let mut text = std::fs::read_to_string(repo.join("examples/audit-review/policy.toml")).unwrap();
    let mut edit = |from: &str, to: String| {
        assert_eq!(text.matches(from).count(), 1, "{from}");
        text = text.replace(from, &to);
    };
    edit(
        "lock_dir = \"/run/rsync-gate\"\n",
        format!(
            "lock_dir = \"/run/rsync-gate\"\nsyslog = \"yes\"\ninclude = [\"{}/*.toml\"]\n",
            conf_d.display()
        ),
    );
    edit("path = \"/srv/www\"\n", "path = \"/srv/www/\"\n".into());
    edit(
        "comment = \"web site\"\n",
        "comment = \"web site\"\nmax_connections = \"4\"\n".into(),
    );
    edit("read_only = false\n", "readonly = false\n".into());
    edit("\"192.0.2.20\"", "\"192.0.2.20/24\"".into());
    let policy = etc.join("policy.toml");
    std::fs::write(&policy, text).unwrap();
    std::fs::write(
        conf_d.join("clients.toml"),
        "# The mirrors, one file each.\n[clients.mirror01]\nmodules = [\"www\"]\n",
    )
    .unwrap();
    let o = gate(&["check"], &policy);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).replace(&etc.display().to_string(), "/etc/rsync-gate"),
        want
    );
}
