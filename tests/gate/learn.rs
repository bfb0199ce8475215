//! Learn mode: a `learn = true` client is decided as any other (nothing
//! it could not do before gets through), its decision records note what
//! each request asked for, and `rsync-gate learn` turns a session log into
//! a candidate policy that, merged into the policy, allows exactly those
//! requests (replayed through `explain`), and nothing they did not need.

use std::process::{Command, Output, Stdio};

use crate::common::{self, World};

const CONNECTION: &str = "127.0.0.1 40000 127.0.0.1 22";

const POLICY: &str = r#"
[modules.www]
path = "{srv}/www"
comment = "web site"

[modules.backup]
path = "{srv}/backup"
read_only = false

[clients.lc]
modules = ["www"]
learn = true

[clients.plain]
modules = ["www"]
"#;

fn world() -> World {
    let w = World::new();
    common::sample_tree(&w.module_dir("www"));
    w.module_dir("backup");
    // Directories no module names yet.
    std::fs::write(w.module_dir("extra").join("e.txt"), "extra\n").unwrap();
    std::fs::write(w.module_dir("extra2").join("f.txt"), "extra2\n").unwrap();
    let src = w.client.join("src");
    common::sample_tree(&src);
    w.write_policy(POLICY);
    w
}

fn learn(w: &World, args: &[&str]) -> Output {
    Command::new(common::gate_bin())
        .arg("learn")
        .arg("--policy")
        .arg(&w.policy)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// explain against the policy now in the world: the decision's code
/// (`None`: allowed).
fn explain(w: &World, client: &str, module: Option<&str>, words: &[String]) -> Option<String> {
    let mut cmd = Command::new(common::gate_bin());
    cmd.args(["explain", "--json", "--policy"])
        .arg(&w.policy)
        .args(["--client", client, "--connection", CONNECTION]);
    if let Some(m) = module {
        cmd.arg(format!("--module={m}"));
    }
    let o = cmd
        .arg("--")
        .args(words)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let e: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|_| panic!("explain: {}", common::stderr(&o)));
    (e["decision"] != "allow").then(|| e["reason"]["code"].as_str().unwrap().to_string())
}

/// A policy document with the proposal's tables in place of the
/// original's of the same names.
fn merge(original: &str, proposal: &str) -> String {
    let mut doc: toml::Table = toml::from_str(original).unwrap();
    let proposed: toml::Table = toml::from_str(proposal).unwrap();
    for (section, tables) in proposed {
        let toml::Value::Table(tables) = tables else {
            panic!("{section} is not a table");
        };
        let into = doc
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        for (name, t) in tables {
            into.as_table_mut().unwrap().insert(name, t);
        }
    }
    toml::to_string(&doc).unwrap()
}

#[test]
fn learn_mode_records_and_proposes_exactly_what_was_used() {
    let w = world();
    let dst = |n: &str| w.client.join(n).display().to_string();
    let src = format!("{}/", w.client.join("src").display());
    let www_before = common::snapshot(&w.root.join("srv/public-tree"));
    // The session log: what a learn client did through the real rsync
    // client, allowed and refused.
    let session: &[(&[&str], bool)] = &[
        (&["-a", "h:www/", &dst("pull")], true),
        (&["-a", &src, "h:www/up/"], false),
        (&["-a", "--delete", &src, "h:backup/cur/"], false),
        (&["-a", "h:extra/", &dst("pull-extra")], false),
        (&["-a", "h::www/", &dst("pull-daemon")], true),
        (&["-a", "h::extra2/", &dst("pull-extra2")], false),
    ];
    for (args, ok) in session {
        for client in ["lc", "plain"] {
            let o = w.rsync_as(client, args);
            assert_eq!(
                o.status.success(),
                *ok,
                "{client} rsync {args:?}: {}",
                common::stderr(&o)
            );
        }
    }
    common::assert_same_tree(&w.root.join("srv/public-tree"), &w.client.join("pull"));
    // One no setting allows: sent as a client could send it.
    let refused_anyway = "rsync --server --sender -re.iLsfxCIvu --rsh=x . www/";
    for client in ["lc", "plain"] {
        let o = w.serve(client, Some(refused_anyway.as_bytes()), &[]);
        assert_eq!(o.status.code(), Some(1));
    }
    // Learning changed nothing that was allowed: the same decisions, and
    // the refused push wrote nothing.
    assert_eq!(
        common::snapshot(&w.root.join("srv/public-tree")),
        www_before
    );
    let records = w.audit_records();
    let decisions = |client: &str| -> Vec<(String, String, Option<String>)> {
        records
            .iter()
            .filter(|r| r["event"] == "decision" && r["client"] == client)
            .map(|r| {
                (
                    r["decision"].as_str().unwrap().to_string(),
                    r["mode"].as_str().unwrap_or("-").to_string(),
                    r["reason"]["code"].as_str().map(str::to_string),
                )
            })
            .collect()
    };
    assert_eq!(decisions("lc"), decisions("plain"));
    assert!(decisions("lc").len() >= 8, "{:?}", decisions("lc"));
    // Every decision of the learn client notes its request; no other
    // client's does.
    for r in records.iter().filter(|r| r["event"] == "decision") {
        assert_eq!(r.get("learn").is_some(), r["client"] == "lc", "{r}");
    }
    let backup_push = records
        .iter()
        .find(|r| {
            r["client"] == "lc"
                && r["reason"]["code"] == "module_not_available"
                && r["mode"] == "receiver"
        })
        .unwrap();
    assert_eq!(
        backup_push["learn"]["modules"],
        serde_json::json!(["backup"])
    );
    assert_eq!(
        backup_push["learn"]["paths"],
        serde_json::json!(["backup/cur/"])
    );
    let options = backup_push["learn"]["options"].as_array().unwrap();
    assert!(
        options.contains(&serde_json::json!("delete")),
        "{options:?}"
    );
    let daemon_refusal = records
        .iter()
        .find(|r| r["client"] == "lc" && r["request"] == "extra2")
        .unwrap();
    assert_eq!(
        daemon_refusal["learn"]["modules"],
        serde_json::json!(["extra2"])
    );

    // The proposal.
    let o = learn(&w, &["--client", "lc", "--since", "1h"]);
    let proposal = String::from_utf8(o.stdout.clone()).unwrap();
    eprintln!("$ rsync-gate learn --client lc --since 1h\n{proposal}");
    assert_eq!(o.status.code(), Some(0), "{}", common::stderr(&o));
    let p: toml::Table = toml::from_str(&proposal).expect("the proposal is TOML");
    let module = |m: &str| p["modules"][m].as_table().unwrap().clone();
    assert_eq!(module("www")["read_only"].as_bool(), Some(false));
    assert!(module("www").get("delete").is_none());
    assert_eq!(module("backup")["delete"].as_bool(), Some(true));
    assert_eq!(module("extra")["path"].as_str(), Some("/CHANGE/ME"));
    assert_eq!(module("extra2")["path"].as_str(), Some("/CHANGE/ME"));
    assert!(module("extra").get("read_only").is_none(), "only pulled");
    let lc = p["clients"]["lc"].as_table().unwrap();
    assert_eq!(
        lc["modules"],
        toml::Value::try_from(["www", "backup", "extra", "extra2"]).unwrap()
    );
    assert_eq!(lc["from"], toml::Value::try_from(["127.0.0.1"]).unwrap());
    assert!(p["clients"].get("plain").is_none());
    assert!(
        proposal.contains("option_refused: option --rsh is not allowed"),
        "{proposal}"
    );
    // www is plain's too: making it writable says so (comments wrap).
    assert!(
        proposal.replace("\n#   ", " ").contains(
            "WARNING: this widens the module for the other clients granted it too: plain"
        ),
        "{proposal}"
    );
    // As printed (the new modules' placeholder paths included) the
    // proposal merged into the policy loads; so it does once the paths
    // are filled in.
    let original = std::fs::read_to_string(&w.policy).unwrap();
    rsync_gate::policy::load_text(&w.policy, &merge(&original, &proposal))
        .expect("the merged proposal loads");
    let filled = proposal
        .replacen(
            "\npath = \"/CHANGE/ME\"\n",
            &format!("\npath = \"{}\"\n", w.root.join("srv/extra").display()),
            1,
        )
        .replacen(
            "\npath = \"/CHANGE/ME\"\n",
            &format!("\npath = \"{}\"\n", w.root.join("srv/extra2").display()),
            1,
        );
    assert!(!filled.contains("\npath = \"/CHANGE/ME\""), "{filled}");
    let merged = merge(&original, &filled);
    rsync_gate::policy::load_text(&w.policy, &merged).expect("the merged policy loads");
    std::fs::write(&w.policy, &merged).unwrap();
    common::set_mode(&w.policy, 0o644);

    // Replayed through explain against the merged policy, every recorded
    // request of the learn client is allowed but the one no setting
    // allows.
    let mut replayed = 0;
    for r in records
        .iter()
        .filter(|r| r["event"] == "decision" && r["client"] == "lc")
    {
        let (module, words): (Option<String>, Vec<String>) = match (&r["request"], &r["command"]) {
            // A host:: in-band request: rsync's arguments.
            (serde_json::Value::String(m), _) if r["argv"].is_array() => (
                Some(m.split('/').next().unwrap().to_string()),
                r["argv"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().to_string())
                    .collect(),
            ),
            // Refused by rsync's daemon: the same pull, from that module.
            (serde_json::Value::String(m), _) => {
                let pull = records
                    .iter()
                    .find(|x| {
                        x["client"] == "lc" && x["request"].is_string() && x["argv"].is_array()
                    })
                    .unwrap();
                (
                    Some(m.clone()),
                    pull["argv"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|a| a.as_str().unwrap().to_string())
                        .collect(),
                )
            }
            (_, serde_json::Value::String(c)) => (None, shell_words::split(c).unwrap()),
            _ => panic!("{r}"),
        };
        let got = explain(&w, "lc", module.as_deref(), &words);
        let want = (r["command"] == refused_anyway).then(|| "option_refused".to_string());
        assert_eq!(got, want, "replaying {module:?} {words:?}");
        replayed += 1;
    }
    assert!(replayed >= 8, "{replayed}");
    // Nothing they did not use: a push where the client only pulled, a
    // delete where it did not delete, a module for another client (the
    // one setting shared with another client, www's read_only, is the
    // proposal's warning above).
    let words = |s: &str| -> Vec<String> { shell_words::split(s).unwrap() };
    for (client, cmd, code) in [
        (
            "lc",
            "rsync --server -logDtpre.iLsfxCIvu . extra/",
            "read_only",
        ),
        (
            "lc",
            "rsync --server -logDtpre.iLsfxCIvu --delete . www/up/",
            "option_not_permitted",
        ),
        (
            "plain",
            "rsync --server --sender -r . extra/",
            "module_not_available",
        ),
    ] {
        assert_eq!(
            explain(&w, client, None, &words(cmd)).as_deref(),
            Some(code),
            "{client} {cmd}"
        );
    }
    // And the real client now gets through where it was refused.
    let o = w.rsync_as("lc", &["-a", &src, "h:www/up/"]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let o = w.rsync_as("lc", &["-a", "h::extra2/", &dst("pull-extra2")]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    common::assert_same_tree(&w.root.join("srv/extra2"), &w.client.join("pull-extra2"));
}

#[test]
fn learn_reads_rotated_logs_and_says_when_there_is_nothing() {
    let w = world();
    let o = w.serve(
        "lc",
        Some(b"rsync --server -logDtpre.iLsfxCIvu . www/x/"),
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    // The log rotated and compressed, then a new one.
    let rotated = w.root.join("log/audit.jsonl.1.gz");
    let gz = Command::new("gzip")
        .arg("-c")
        .arg(&w.audit)
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    std::fs::write(&rotated, gz.stdout).unwrap();
    std::fs::write(&w.audit, "").unwrap();
    let o = learn(
        &w,
        &[
            "--log",
            rotated.to_str().unwrap(),
            "--log",
            w.audit.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", common::stderr(&o));
    let text = String::from_utf8(o.stdout.clone()).unwrap();
    let p: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(p["modules"]["www"]["read_only"].as_bool(), Some(false));
    // Nothing since a time after it, nor of another client.
    for args in [&["--since", "2099-01-01"][..], &["--client", "plain"][..]] {
        let o = learn(
            &w,
            &[&["--log", rotated.to_str().unwrap()][..], args].concat(),
        );
        assert_eq!(o.status.code(), Some(1));
        let text = String::from_utf8(o.stdout.clone()).unwrap();
        assert!(
            text.contains("No decision records of learn clients"),
            "{text}"
        );
        let p: toml::Table = toml::from_str(&text).unwrap();
        assert!(p.is_empty(), "{text}");
    }
    let o = learn(&w, &["--since", "yesterday"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        common::stderr(&o).contains("--since"),
        "{}",
        common::stderr(&o)
    );
}
