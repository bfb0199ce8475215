//! Decision tables for `import`: every output is loaded with the policy
//! loader and checked for the modules, clients and knobs it should hold.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice
)]

use std::collections::BTreeMap;
use std::path::Path;

use super::*;
use crate::policy::{self, Policy};

/// Files in memory: path → text; a path ending in `/` is a directory.
#[derive(Default)]
struct Mem(BTreeMap<String, String>);

impl Mem {
    fn with(files: &[(&str, &str)]) -> Mem {
        Mem(files
            .iter()
            .map(|(p, t)| ((*p).to_string(), (*t).to_string()))
            .collect())
    }
}

impl Files for Mem {
    fn read(&self, path: &Path) -> Result<String, String> {
        self.0
            .get(path.to_str().unwrap())
            .cloned()
            .ok_or_else(|| "cannot read: No such file or directory (os error 2)".into())
    }

    fn is_dir(&self, path: &Path) -> Option<bool> {
        let p = path.to_str().unwrap().trim_end_matches('/');
        if self.0.contains_key(p) {
            Some(false)
        } else if self.0.keys().any(|k| k.starts_with(&format!("{p}/"))) {
            Some(true)
        } else {
            None
        }
    }

    fn list(&self, dir: &Path) -> Result<Vec<String>, String> {
        let d = format!("{}/", dir.to_str().unwrap().trim_end_matches('/'));
        Ok(self
            .0
            .keys()
            .filter_map(|k| k.strip_prefix(&d))
            .filter(|r| !r.contains('/'))
            .map(str::to_string)
            .collect())
    }
}

/// Import, render, load: the policy, and the import for its messages.
fn imported(format: Format, text: &str, home: Option<&str>, files: &Mem) -> (Import, Policy) {
    let home = home.map(Path::new);
    let imp = import(
        format,
        &Input {
            name: "in",
            text,
            home,
        },
        files,
    )
    .unwrap_or_else(|e| panic!("import failed: {e}\n{text}"));
    let rendered = imp.render();
    let p = policy::load_text(Path::new("/etc/rsync-gate/policy.toml"), &rendered)
        .unwrap_or_else(|e| panic!("the import does not load: {e:?}\n{rendered}"));
    // Deterministic: the same input gives the same text.
    let again = import(
        format,
        &Input {
            name: "in",
            text,
            home,
        },
        files,
    )
    .unwrap();
    assert_eq!(again.render(), rendered);
    (imp, p)
}

fn rsyncd(text: &str) -> (Import, Policy) {
    imported(Format::Rsyncd, text, None, &Mem::default())
}

fn keys(text: &str) -> (Import, Policy) {
    imported(
        Format::AuthorizedKeys,
        text,
        Some("/home/m"),
        &Mem::default(),
    )
}

fn lost(imp: &Import) -> String {
    imp.lost
        .iter()
        .map(|l| format!("{}: {}", l.loc, l.text))
        .collect::<Vec<_>>()
        .join("\n")
}

fn from(p: &Policy, client: &str) -> Vec<String> {
    p.clients[client]
        .from
        .iter()
        .map(ToString::to_string)
        .collect()
}

// ---------------------------------------------------------------------------
// rsyncd.conf: reading
// ---------------------------------------------------------------------------

#[test]
fn parameter_names_as_rsync_matches_them() {
    let mut seen = std::collections::BTreeSet::new();
    for d in rsyncd::PARAMS {
        assert!(seen.insert(d.name.replace(' ', "")), "{} twice", d.name);
        assert_eq!(rsyncd::lookup(d.name).map(|x| x.name), Some(d.name));
    }
    // Case and whitespace do not count; underscores do.
    for (written, want) in [
        ("readonly", Some("read only")),
        ("Read Only", Some("read only")),
        ("READ   ONLY", Some("read only")),
        ("hostsallow", Some("hosts allow")),
        ("pre-xfer exec", Some("pre-xfer exec")),
        ("read_only", None),
        ("bind address", None),
        ("", None),
    ] {
        assert_eq!(rsyncd::lookup(written).map(|d| d.name), want, "{written}");
    }
}

#[test]
fn grammar() {
    // (config, module, key, value); None: key absent. Paths stay put.
    let table: &[(&str, &str, &str, Option<&str>)] = &[
        // Comments: '#' and ';' at the start; elsewhere they are content.
        (
            "[a]\npath = /srv/a\n# read only = no\n",
            "a",
            "read_only",
            Some("true"),
        ),
        (
            "[a]\npath = /srv/a\n ; read only = no\n",
            "a",
            "read_only",
            Some("true"),
        ),
        (
            "[a]\npath = /srv/a\ncomment = web # site\n",
            "a",
            "comment",
            Some("web # site"),
        ),
        // Continuation lines.
        ("[a]\npath = /srv/\\\na\n", "a", "path", Some("/srv/a")),
        (
            "[a]\npath = /srv/a\ncomment = one \\\n  two\n",
            "a",
            "comment",
            Some("one   two"),
        ),
        (
            "[a]\npath = /srv/a\nread \\\n only = no\n",
            "a",
            "read_only",
            Some("false"),
        ),
        (
            "[long \\\n name]\npath = /srv/a\n",
            "long-name",
            "path",
            Some("/srv/a"),
        ),
        // Whitespace in values is kept inside, trimmed outside; \r dropped.
        (
            "[a]\n  path   =   /srv/a  \r\n",
            "a",
            "path",
            Some("/srv/a"),
        ),
        // Booleans.
        (
            "[a]\npath = /srv/a\nread only = False\n",
            "a",
            "read_only",
            Some("false"),
        ),
        (
            "[a]\npath = /srv/a\nread only = 0\n",
            "a",
            "read_only",
            Some("false"),
        ),
        (
            "[a]\npath = /srv/a\nreadonly = n o\n",
            "a",
            "read_only",
            Some("false"),
        ),
        (
            "[a]\npath = /srv/a\nread only = nope\n",
            "a",
            "read_only",
            Some("true"),
        ),
        // Globals are defaults for the modules that follow.
        (
            "read only = no\n[a]\npath = /srv/a\n",
            "a",
            "read_only",
            Some("false"),
        ),
        (
            "[a]\npath = /srv/a\n[global]\nread only = no\n",
            "a",
            "read_only",
            Some("true"),
        ),
        (
            "[global]\nread only = no\n[a]\npath = /srv/a\n",
            "a",
            "read_only",
            Some("false"),
        ),
        // A second [a] continues the first (names ignore case).
        (
            "[a]\npath = /srv/a\n[b]\npath = /srv/b\n[A]\nread only = no\n",
            "a",
            "read_only",
            Some("false"),
        ),
        // A bad value leaves the value before it.
        (
            "read only = no\n[a]\npath = /srv/a\nread only = maybe\n",
            "a",
            "read_only",
            Some("false"),
        ),
        // Integers are read as atoi reads them.
        (
            "[a]\npath = /srv/a\nmax connections = 4 # four\n",
            "a",
            "max_connections",
            Some("4"),
        ),
        (
            "[a]\npath = /srv/a\nmax connections = many\n",
            "a",
            "max_connections",
            None,
        ),
        // Trailing slashes, /./ and . are gone from paths.
        (
            "[a]\npath = /var/ftp/./pub/\n",
            "a",
            "path",
            Some("/var/ftp/pub"),
        ),
        ("[a]\npath = /srv//a/.\n", "a", "path", Some("/srv/a")),
        // %% is a literal %, which a policy path cannot hold.
        (
            "[a]\npath = /srv/a\ncomment = 100%% pure\n",
            "a",
            "comment",
            None,
        ),
        // A NUL ends the file for rsync.
        (
            "[a]\npath = /srv/a\n\0read only = no\n",
            "a",
            "read_only",
            Some("true"),
        ),
    ];
    for (conf, module, key, want) in table {
        let (_, p) = rsyncd(conf);
        let m = p
            .modules
            .get(*module)
            .unwrap_or_else(|| panic!("{conf:?}: no module {module}: {:?}", p.modules.keys()));
        let got = match *key {
            "path" => Some(m.path.display().to_string()),
            "read_only" => Some(m.read_only.to_string()),
            "comment" => m.comment.clone(),
            "max_connections" => (m.max_connections > 0).then(|| m.max_connections.to_string()),
            other => panic!("no key {other}"),
        };
        assert_eq!(got.as_deref(), *want, "{conf:?}");
    }
}

#[test]
fn what_rsync_ignores_is_reported_with_its_line() {
    let table: &[(&str, &str)] = &[
        (
            "[a]\npath = /srv/a\nread_only = no\n",
            "in:3: unknown parameter 'read_only': rsync ignores it (did you mean 'read only'?)",
        ),
        (
            "[a]\npath = /srv/a\nport = 8873\n",
            "in:3: port = 8873: a global parameter in a module section: rsync ignores it",
        ),
        (
            "[a]\npath = /srv/a\njunk\n",
            "in:3: 'junk' is not 'name = value': rsync ignores the line",
        ),
        (
            "[a]\npath = /srv/a\nlist = sometimes\n",
            "in:3: list = sometimes: not a boolean: rsync ignores it",
        ),
        (
            "[a]\npath = /srv/a\nmax connections = 4x\n",
            "in:3: max connections = 4x: rsync reads it as 4",
        ),
        (
            "[a]\npath = /srv/a\nread only = %RO%\n",
            "in:3: read only = %RO%: %RO% is the daemon's environment",
        ),
        ("[a]\npath = /srv/a\0\n", "in:2: a NUL byte"),
    ];
    for (conf, want) in table {
        let (imp, _) = rsyncd(conf);
        assert!(
            lost(&imp).contains(want),
            "{conf:?}\n got: {}\nwant: {want}",
            lost(&imp)
        );
    }
}

#[test]
fn what_rsync_refuses_is_an_error() {
    let table: &[(&str, &str)] = &[
        ("[]\npath = /srv/a\n", "in:1: empty module name"),
        (
            "[a/b]\npath = /srv/a\n",
            "in:1: module name 'a/b' contains '/'",
        ),
        ("[a\npath = /srv/a\n", "in:1: no ']' after '[a'"),
        ("[a", "in:1: end of file in the module name"),
        ("= x\n", "in:1: a parameter without a name"),
        ("&frobnicate /x\n", "in:1: unknown directive '&frobnicate'"),
    ];
    for (conf, want) in table {
        let e = import(
            Format::Rsyncd,
            &Input {
                name: "in",
                text: conf,
                home: None,
            },
            &Mem::default(),
        )
        .unwrap_err();
        assert!(e.starts_with(want), "{conf:?}: {e}");
    }
}

#[test]
fn includes_and_merges_as_rsync_reads_them() {
    let files = Mem::with(&[
        (
            "/etc/rsyncd.d/b.conf",
            "read only = no\n[b]\npath = /srv/b\n",
        ),
        ("/etc/rsyncd.d/a.conf", "[a]\npath = /srv/a\n"),
        ("/etc/rsyncd.d/x.inc", "list = no\n"),
        ("/etc/rsyncd.d/ignored.txt", "[zzz]\npath = /srv/z\n"),
        ("/etc/one.conf", "[one]\npath = /srv/one\n"),
    ]);
    let conf = "&merge /etc/rsyncd.d\n&include /etc/rsyncd.d\n[c]\npath = /srv/c\n&include /etc/one.conf\n&include /etc/missing.conf\n&include relative.conf\n";
    let (imp, p) = imported(Format::Rsyncd, conf, None, &files);
    assert_eq!(
        p.modules.keys().collect::<Vec<_>>(),
        ["a", "b", "c", "one"],
        "{}",
        imp.render()
    );
    // &merge sets defaults for everything after it; each &include file
    // starts from the defaults and leaves them as they were.
    assert!(p.modules.values().all(|m| !m.list));
    assert!(!p.modules["b"].read_only);
    assert!(p.modules["a"].read_only && p.modules["c"].read_only);
    let l = lost(&imp);
    assert!(
        l.contains("in:6: &include /etc/missing.conf: cannot be read here"),
        "{l}"
    );
    assert!(
        l.contains("in:7: &include relative.conf: a relative path"),
        "{l}"
    );
    // An include of itself stops.
    let files = Mem::with(&[(
        "/etc/loop.conf",
        "&include /etc/loop.conf\n[l]\npath = /srv/l\n",
    )]);
    let (imp, p) = imported(Format::Rsyncd, "&include /etc/loop.conf\n", None, &files);
    assert!(p.modules.contains_key("l"));
    assert!(
        lost(&imp).contains("included again from within itself"),
        "{}",
        lost(&imp)
    );
}

// ---------------------------------------------------------------------------
// rsyncd.conf: mapping
// ---------------------------------------------------------------------------

/// Every parameter's fate: mapped, replaced (a note) or not carried over
/// (a warning), for a value that matters.
#[test]
fn every_parameter_has_a_fate() {
    for d in rsyncd::PARAMS {
        let value = match d.ty {
            _ if d.name == "refuse options" => "delete",
            rsyncd::Ty::Bool | rsyncd::Ty::Bool3 => "yes",
            rsyncd::Ty::Int => "7",
            rsyncd::Ty::Path => "/srv/x",
            rsyncd::Ty::Str | rsyncd::Ty::Enum => "x",
        };
        let conf = if d.global {
            format!("{} = {value}\n[m]\npath = /srv/m\n", d.name)
        } else if d.name == "path" {
            "[m]\npath = /srv/m\n".to_string()
        } else {
            format!("[m]\npath = /srv/m\n{} = {value}\n", d.name)
        };
        let (imp, _) = rsyncd(&conf);
        let in_lost = imp
            .lost
            .iter()
            .any(|l| l.text.starts_with(&format!("{} = ", d.name)));
        let in_notes = imp
            .notes
            .iter()
            .any(|n| n.contains(&format!(": {} = ", d.name)));
        match d.how {
            rsyncd::How::Mapped => assert!(!in_lost, "{}: {}", d.name, imp.render()),
            rsyncd::How::Replaced(_) => {
                assert!(in_notes && !in_lost, "{}: {}", d.name, imp.render())
            }
            rsyncd::How::LostIfTrue(_) | rsyncd::How::LostIfSet(_) => {
                assert!(in_lost, "{}: {}", d.name, imp.render());
            }
        }
    }
}

#[test]
fn module_knobs() {
    struct Case {
        conf: &'static str,
        read_only: bool,
        write_only: bool,
        delete: bool,
        munge: bool,
        list: bool,
        max: u32,
        ids: (Option<&'static str>, Option<&'static str>),
    }
    let c = |conf, read_only, write_only, delete, munge, list, max, ids| Case {
        conf,
        read_only,
        write_only,
        delete,
        munge,
        list,
        max,
        ids,
    };
    let table = [
        // rsyncd's defaults: read only, listed, no limit.
        c(
            "[m]\npath=/m\n",
            true,
            false,
            false,
            false,
            true,
            0,
            (None, None),
        ),
        // A writable module allowed --delete unless refused.
        c(
            "[m]\npath=/m\nread only=no\n",
            false,
            false,
            true,
            true,
            true,
            0,
            (None, None),
        ),
        c(
            "[m]\npath=/m\nread only=no\nrefuse options=delete\n",
            false,
            false,
            false,
            true,
            true,
            0,
            (None, None),
        ),
        c(
            "[m]\npath=/m\nread only=no\nrefuse options=delete* remove-source-files\n",
            false,
            false,
            false,
            true,
            true,
            0,
            (None, None),
        ),
        c(
            "[m]\npath=/m\nread only=no\nrefuse options=* !a !v\n",
            false,
            false,
            false,
            true,
            true,
            0,
            (None, None),
        ),
        c(
            "[m]\npath=/m\nread only=no\nrefuse options=* !a !v !delete*\n",
            false,
            false,
            false,
            true,
            true,
            0,
            (None, None),
        ),
        c(
            "[m]\npath=/m\nread only=no\nrefuse options=* !a !v !delete* !remove-source-files\n",
            false,
            false,
            true,
            true,
            true,
            0,
            (None, None),
        ),
        c(
            "[m]\npath=/m\nread only=no\nrefuse options=compress\n",
            false,
            false,
            true,
            true,
            true,
            0,
            (None, None),
        ),
        // A drop box.
        c(
            "[m]\npath=/m\nread only=no\nwrite only=yes\nlist=no\nrefuse options=delete\n",
            false,
            true,
            false,
            true,
            false,
            0,
            (None, None),
        ),
        // munge symlinks = yes on a read-only module is carried; on a
        // writable one it is the default; = no is not carried.
        c(
            "[m]\npath=/m\nmunge symlinks=yes\n",
            true,
            false,
            false,
            true,
            true,
            0,
            (None, None),
        ),
        c(
            "[m]\npath=/m\nread only=no\nmunge symlinks=no\n",
            false,
            false,
            true,
            true,
            true,
            0,
            (None, None),
        ),
        c(
            "[m]\npath=/m\nmax connections=3\n",
            true,
            false,
            false,
            false,
            true,
            3,
            (None, None),
        ),
        c(
            "[m]\npath=/m\nmax connections=200000\n",
            true,
            false,
            false,
            false,
            true,
            100_000,
            (None, None),
        ),
        c(
            "uid=backup\ngid=backup\n[m]\npath=/m\n",
            true,
            false,
            false,
            false,
            true,
            0,
            (Some("backup"), Some("backup")),
        ),
        c(
            "[m]\npath=/m\nuid=34\ngid=34, 35\n",
            true,
            false,
            false,
            false,
            true,
            0,
            (Some("34"), Some("34")),
        ),
        c(
            "[m]\npath=/m\nuid=%RSYNC_USER_NAME%\ngid=*\n",
            true,
            false,
            false,
            false,
            true,
            0,
            (None, None),
        ),
    ];
    for t in &table {
        let (imp, p) = rsyncd(t.conf);
        let m = &p.modules["m"];
        let got = (
            m.read_only,
            m.write_only,
            m.delete,
            m.munge_links,
            m.list,
            m.max_connections,
            (m.uid.as_deref(), m.gid.as_deref()),
        );
        let want = (
            t.read_only,
            t.write_only,
            t.delete,
            t.munge,
            t.list,
            t.max,
            t.ids,
        );
        assert_eq!(got, want, "{:?}\n{}", t.conf, imp.render());
    }
}

/// `transfer logging = yes` (in the module or as a global default) is
/// the module's `transfer_log`.
#[test]
fn transfer_logging_becomes_transfer_log() {
    for (conf, want) in [
        ("[m]\npath=/m\n", false),
        ("[m]\npath=/m\ntransfer logging = yes\n", true),
        ("[m]\npath=/m\ntransferlogging = 1\n", true),
        ("transfer logging = yes\n[m]\npath=/m\n", true),
        (
            "transfer logging = yes\n[m]\npath=/m\ntransfer logging = no\n",
            false,
        ),
    ] {
        let (imp, p) = rsyncd(conf);
        assert_eq!(p.modules["m"].transfer_log, want, "{conf}");
        assert_eq!(lost(&imp), "", "{conf}");
    }
}

#[test]
fn refuse_options_against_the_gate() {
    // (refuse options, delete allowed, warnings containing)
    let table: &[(&str, bool, &[&str])] = &[
        ("", true, &[]),
        ("delete", false, &[]),
        ("delete-*", false, &["but not --remove-source-files"]),
        (
            "delete-after",
            false,
            &["refuses --delete-after but not --delete,"],
        ),
        (
            "c compress",
            true,
            &["no module knob refuses --checksum (-c), --compress (-z)"],
        ),
        ("a", true, &["--links (-l)", "--times (-t)"]),
        ("archive*", true, &[]),
        // Refused by the gate anyway, or by its defaults: nothing to say.
        (
            "log-file copy-links L k K copy-devices write-devices",
            true,
            &[],
        ),
        (
            "!copy-devices",
            true,
            &["it allows --copy-devices, which the gate refuses"],
        ),
        ("* !a !v", false, &["no module knob refuses"]),
    ];
    for (value, delete, want) in table {
        let r = rsyncd::refusals(value);
        assert_eq!(r.delete, *delete, "{value}: {r:?}");
        for w in *want {
            assert!(
                r.lost.iter().any(|l| l.contains(w)),
                "{value}: want {w}: {:?}",
                r.lost
            );
        }
        if want.is_empty() {
            assert!(r.lost.is_empty(), "{value}: {:?}", r.lost);
        }
    }
    assert!(rsyncd::refusals("frobnicate").notes[0].contains("names no option"));
}

#[test]
fn hosts_allow_becomes_from() {
    let (imp, p) = rsyncd(
        "hosts allow = 192.0.2.0/24 198.51.100.7 2001:db8::/32\nhosts deny = *\n[a]\npath=/a\n[b]\npath=/b\nhosts allow = 203.0.113.0/255.255.255.0\n[c]\npath=/c\nhosts allow = *.example.org\n",
    );
    // One client per address rule: a client has one `from`.
    assert_eq!(p.clients["anonymous-a"].modules, ["a"]);
    assert_eq!(
        from(&p, "anonymous-a"),
        ["192.0.2.0/24", "198.51.100.7", "2001:db8::/32"]
    );
    assert_eq!(p.clients["anonymous-b"].modules, ["b"]);
    assert_eq!(from(&p, "anonymous-b"), ["203.0.113.0/24"]);
    // Hostnames are not addresses: the module is granted to nobody.
    assert!(p.modules.contains_key("c"));
    assert!(
        !p.clients
            .values()
            .any(|c| c.modules.contains(&"c".to_string()))
    );
    let l = lost(&imp);
    assert!(l.contains("'*.example.org' is a hostname wildcard"), "{l}");
    assert!(
        l.contains("[c]: no address of its hosts allow/hosts deny can be carried over"),
        "{l}"
    );
    assert!(
        l.contains("it became clients anonymous-a, anonymous-b"),
        "{l}"
    );
    // hosts deny alone: every address but those.
    let (_, p) = rsyncd("[a]\npath=/a\nhosts deny = 0.0.0.0/0\n");
    assert_eq!(from(&p, "anonymous"), ["::/0"]);
}

#[test]
fn auth_users_become_clients() {
    let (imp, p) = rsyncd(
        "[pub]\npath=/pub\n\
         [cvs]\npath=/cvs\nauth users = tridge, susan\nsecrets file = /etc/rsyncd.secrets\n\
         [w]\npath=/w\nread only = no\nauth users = admin:rw, guest:ro, joe:deny, @staff:rw, joe, sam, te*\n",
    );
    assert_eq!(p.clients["anonymous"].modules, ["pub"]);
    assert_eq!(p.clients["tridge"].modules, ["cvs"]);
    assert_eq!(p.clients["susan"].modules, ["cvs"]);
    assert_eq!(p.clients["admin"].modules, ["w"]);
    // guest:ro on a writable module: a read-only variant.
    assert_eq!(p.clients["guest"].modules, ["w-ro"]);
    assert!(p.modules["w-ro"].read_only && p.modules["w-ro"].path == p.modules["w"].path);
    // joe is denied before anything else; sam's rule comes after a group.
    assert!(!p.clients.contains_key("joe"));
    assert!(!p.clients.contains_key("sam"));
    assert!(p.clients.values().all(|c| c.key.is_none()));
    let l = lost(&imp);
    assert!(
        l.contains("secrets file = /etc/rsyncd.secrets: rsync passwords are not used"),
        "{l}"
    );
    assert!(l.contains("'@staff' is a group rule"), "{l}");
    assert!(
        l.contains("nor to sam (their own rule comes after it)"),
        "{l}"
    );
    assert!(l.contains("'te*' matches user names"), "{l}");
    // rw on a read-only module: a writable variant.
    let (_, p) = rsyncd("[r]\npath=/r\nauth users = up:rw, down\n");
    assert_eq!(p.clients["up"].modules, ["r-rw"]);
    assert!(!p.modules["r-rw"].read_only && p.modules["r-rw"].delete);
    assert_eq!(p.clients["down"].modules, ["r"]);
    // A leading comma splits on commas alone.
    assert_eq!(
        rsyncd::auth_rules(", joe:deny, @Some Group:ro, ann")
            .iter()
            .map(|r| r.pattern.as_str())
            .collect::<Vec<_>>(),
        ["joe", "@Some Group", "ann"]
    );
}

#[test]
fn module_names_the_policy_cannot_hold_are_renamed() {
    let (imp, p) = rsyncd("[my files]\npath=/a\n[my-files]\npath=/b\n");
    assert_eq!(p.modules["my-files"].path, Path::new("/a"));
    assert_eq!(p.modules["my-files-2"].path, Path::new("/b"));
    let l = lost(&imp);
    assert!(
        l.contains("[my files]: the policy calls the module 'my-files'"),
        "{l}"
    );
    assert!(
        l.contains("[my-files]: the policy calls the module 'my-files-2'"),
        "{l}"
    );
}

#[test]
fn modules_that_cannot_be_carried() {
    let table: &[(&str, &str)] = &[
        ("[a]\ncomment = no path\n", "[a]: no path"),
        ("[a]\npath = relative/dir\n", "not an absolute path"),
        (
            "[a]\npath = /home/%RSYNC_USER_NAME%\n",
            "%RSYNC_USER_NAME% is filled in by rsync",
        ),
        ("[a]\npath = /srv/../etc\n", "'..' in a path"),
    ];
    for (conf, want) in table {
        let (imp, p) = rsyncd(conf);
        assert!(p.modules.is_empty(), "{conf:?}");
        assert!(lost(&imp).contains(want), "{conf:?}: {}", lost(&imp));
    }
    // Disabled, or neither readable nor writable: left out with a note.
    let (imp, p) = rsyncd("[a]\npath=/a\nmax connections = -1\n[b]\npath=/b\nwrite only = yes\n");
    assert!(p.modules.is_empty());
    assert!(imp.lost.is_empty(), "{}", lost(&imp));
    assert_eq!(imp.notes.len(), 3, "{:?}", imp.notes);
}

/// The examples of rsyncd.conf(5) and a Debian-style file.
#[test]
fn manual_and_debian_examples() {
    let (imp, p) = rsyncd(include_str!(
        "../../../tests/data/import/manual-simple.conf"
    ));
    assert!(imp.lost.is_empty(), "{}", lost(&imp));
    assert_eq!(p.modules["ftp"].path, Path::new("/home/ftp"));
    assert_eq!(p.modules["ftp"].comment.as_deref(), Some("ftp export area"));
    assert!(p.modules["ftp"].read_only);
    assert_eq!(p.clients["anonymous"].modules, ["ftp"]);
    assert!(p.clients["anonymous"].from.is_empty());

    let (imp, p) = rsyncd(include_str!("../../../tests/data/import/manual-full.conf"));
    assert_eq!(
        p.modules.keys().collect::<Vec<_>>(),
        ["cvs", "ftp", "rsyncftp", "sambaftp", "sambawww"]
    );
    assert_eq!(p.modules["sambaftp"].path, Path::new("/var/ftp/pub/samba"));
    assert!(p.modules.values().all(|m| m.max_connections == 4
        && m.uid.as_deref() == Some("nobody")
        && m.gid.as_deref() == Some("nobody")
        && m.read_only));
    assert_eq!(
        p.clients["anonymous"].modules,
        ["ftp", "sambaftp", "rsyncftp", "sambawww"]
    );
    assert_eq!(p.clients["tridge"].modules, ["cvs"]);
    assert_eq!(p.clients["susan"].modules, ["cvs"]);
    assert_eq!(imp.lost.len(), 1, "{}", lost(&imp));
    assert!(lost(&imp).contains(":31: secrets file"), "{}", lost(&imp));

    let (imp, p) = rsyncd(include_str!("../../../tests/data/import/debian-style.conf"));
    assert_eq!(
        p.modules.keys().collect::<Vec<_>>(),
        [
            "backup",
            "backup-ro",
            "debian",
            "debian-security",
            "incoming"
        ]
    );
    assert_eq!(p.modules["debian"].max_connections, 10);
    assert_eq!(p.modules["debian"].path, Path::new("/srv/mirror/debian"));
    let inc = &p.modules["incoming"];
    assert!(!inc.read_only && inc.write_only && !inc.delete && !inc.list);
    assert!(!p.modules["backup"].delete && !p.modules["backup"].read_only);
    assert_eq!(
        from(&p, "anonymous"),
        ["192.0.2.0/24", "198.51.100.0/24", "2001:db8:100::/48"]
    );
    assert_eq!(
        p.clients["anonymous"].modules,
        ["debian", "debian-security"]
    );
    assert_eq!(from(&p, "buildd"), ["203.0.113.0/24"]);
    assert_eq!(p.clients["backup"].modules, ["backup"]);
    assert_eq!(p.clients["alice"].modules, ["backup-ro"]);
    assert!(!p.clients.contains_key("bob") && !p.clients.contains_key("admin"));
    let l = lost(&imp);
    for want in [
        ":24: timeout = 600",
        ":25: refuse options = checksum dry-run: no module knob refuses --checksum (-c), --dry-run (-n)",
        ":43: hosts allow: 'mirror.example.org' is a hostname",
        ":56: incoming chmod",
        ":68: exclude = /lost+found/ /.snapshots/***: the gate has no server-side filter",
        ":70: unknown parameter 'read_only'",
        ":71: pre-xfer exec",
    ] {
        assert!(l.contains(want), "want {want}\n{l}");
    }
    // [global] timeout = 0 puts [backup] back to no timeout.
    assert!(!l.contains(":60: timeout"), "{l}");
}

// ---------------------------------------------------------------------------
// authorized_keys
// ---------------------------------------------------------------------------

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIL2vP+bK/plCjzjmBvLUyj0qafrLVpraKvoQTrxZWER9";

#[test]
fn rrsync_flags_become_module_knobs() {
    // (flags, read_only, write_only, delete, overwrite, munge, max)
    let table: &[(&str, bool, bool, bool, bool, bool, u32)] = &[
        ("", false, false, true, true, true, 1),
        ("-ro", true, false, false, true, false, 0),
        ("-wo", false, true, true, true, true, 1),
        ("-munge", false, false, true, true, true, 1),
        ("-ro -munge", true, false, false, true, true, 0),
        ("-no-del", false, false, false, true, true, 1),
        ("-no-lock", false, false, true, true, true, 0),
        ("-no-overwrite", false, false, false, false, true, 1),
        ("-no-overwrite -no-del", false, false, false, false, true, 1),
        (
            "-wo -no-overwrite -no-del -no-lock",
            false,
            true,
            false,
            false,
            true,
            0,
        ),
        ("-absolute -no-lock", false, false, true, true, true, 0),
    ];
    for (flags, ro, wo, del, ow, munge, max) in table {
        let (imp, p) = keys(&format!("command=\"rrsync {flags} /srv/data\" {KEY} c\n"));
        let m = &p.modules["data"];
        assert_eq!(
            (
                m.read_only,
                m.write_only,
                m.delete,
                m.overwrite,
                m.munge_links,
                m.max_connections
            ),
            (*ro, *wo, *del, *ow, *munge, *max),
            "rrsync {flags}\n{}",
            imp.render()
        );
        assert_eq!(p.clients["c"].modules, ["data"]);
        assert_eq!(p.clients["c"].key.as_deref(), Some(&*format!("{KEY} c")));
        // Only -no-overwrite without -no-del loses something (its deletes).
        let want_lost = flags.contains("-no-overwrite") && !flags.contains("-no-del");
        assert_eq!(
            !imp.lost.is_empty(),
            want_lost,
            "rrsync {flags}: {}",
            lost(&imp)
        );
    }
}

#[test]
fn rrsync_lines() {
    let (imp, p) = keys(&format!(
        "command=\"rrsync -ro /srv/www\" {KEY} web1\n\
         restrict,from=\"192.0.2.10,198.51.100.0/24\",command=\"/usr/bin/rrsync -ro /srv/www/\" {KEY}x web2\n\
         command=\"rrsync /srv/www\" {KEY}y up\n\
         command=\"rrsync logs\" {KEY}z\n\
         command=\"rrsync -ro /\" {KEY}w root@backup\n"
    ));
    // One module per distinct directory and flags.
    assert_eq!(p.clients["web1"].modules, ["www"]);
    assert_eq!(p.clients["web2"].modules, ["www"]);
    assert_eq!(p.clients["up"].modules, ["www-2"]);
    assert!(p.modules["www"].read_only && !p.modules["www-2"].read_only);
    assert_eq!(from(&p, "web2"), ["192.0.2.10", "198.51.100.0/24"]);
    assert!(p.clients["web1"].from.is_empty());
    // Relative to the home; a key without a comment is named by its line.
    assert_eq!(p.modules["logs"].path, Path::new("/home/m/logs"));
    assert_eq!(p.clients["key-4"].modules, ["logs"]);
    assert_eq!(p.modules["root"].path, Path::new("/"));
    assert_eq!(p.clients["root-backup"].modules, ["root"]);
    assert!(imp.lost.is_empty(), "{}", lost(&imp));
    assert!(imp.notes.iter().any(|n| n.contains("host:MODULE/path")));
}

#[test]
fn key_lines_not_carried_over() {
    let table: &[(&str, &str)] = &[
        ("this line is junk", "not a key line sshd reads"),
        (
            &format!("{KEY} shell"),
            "no command=: this key logs in with a shell",
        ),
        (
            &format!("command=\"/usr/local/bin/validate-rsync\" {KEY}"),
            "a home-made validator?",
        ),
        (
            &format!("command=\"rsync --server --sender -vlogDtpr . /srv/www/\" {KEY}"),
            "a fixed rsync command",
        ),
        (
            &format!("command=\"rrsync /srv; id\" {KEY}"),
            "a shell command line",
        ),
        (
            &format!("command=\"rrsync -ro -wo /srv\" {KEY}"),
            "rrsync refuses -ro and -wo together",
        ),
        (
            &format!("command=\"rrsync -x /srv\" {KEY}"),
            "rrsync does not know the option '-x'",
        ),
        (
            &format!("command=\"rrsync\" {KEY}"),
            "rrsync needs a directory",
        ),
        (
            &format!("command=\"rrsync ~bob/x\" {KEY}"),
            "another user's home",
        ),
        (&format!("command=\"rrsync /srv/../etc\" {KEY}"), "'..'"),
        (
            &format!("cert-authority,command=\"rrsync /srv\" {KEY}"),
            "a certificate authority",
        ),
        (
            &format!("frobnicate,command=\"rrsync /srv\" {KEY}"),
            "unknown option 'frobnicate'",
        ),
        (
            &format!("from=\"*.example.org\",command=\"rrsync /srv\" {KEY}"),
            "no address can be carried over, so the key is not",
        ),
        (
            &format!("from=\"192.0.2.0/24,!bad.example.org\",command=\"rrsync /srv\" {KEY}"),
            "no address is known to be outside it",
        ),
        (
            &format!("command=\"rsync-gate serve --client x\" {KEY}"),
            "already rsync-gate",
        ),
        (
            &format!("command=\"ftpsync\" {KEY}"),
            "the trigger is printed commented out",
        ),
    ];
    for (line, want) in table {
        let (imp, p) = keys(&format!("{line}\n"));
        assert!(p.clients.is_empty(), "{line}: {:?}", p.clients);
        assert!(
            lost(&imp).contains(want),
            "{line}\n got: {}\nwant: {want}",
            lost(&imp)
        );
        assert!(lost(&imp).starts_with("in:1: "), "{}", lost(&imp));
    }
}

#[test]
fn key_options_not_carried_over_keep_the_key() {
    for (opt, want) in [
        ("environment=\"A=b\"", "environment=\"A=b\""),
        ("expiry-time=\"20300101\"", "does not expire"),
        ("pty", "restrict, which turns it off"),
        ("permitopen=\"host:80\"", "restrict, which turns it off"),
        ("verify-required", "user verification"),
        (
            "from=\"192.0.2.1,backup.example.org\"",
            "'backup.example.org' is a hostname",
        ),
    ] {
        let (imp, p) = keys(&format!("{opt},command=\"rrsync -ro /srv\" {KEY} k\n"));
        assert_eq!(p.clients["k"].modules, ["srv"], "{opt}");
        assert!(lost(&imp).contains(want), "{opt}: {}", lost(&imp));
    }
    // restrict and the no-* options need nothing.
    let (imp, _) = keys(&format!(
        "restrict,no-pty,no-agent-forwarding,no-port-forwarding,no-X11-forwarding,no-user-rc,command=\"rrsync -ro /srv\" {KEY} k\n"
    ));
    assert!(imp.lost.is_empty(), "{}", lost(&imp));
    // The same key twice: sshd's first match is not the policy's order.
    let (imp, p) = keys(&format!(
        "command=\"rrsync -ro /a\" {KEY} k\ncommand=\"rrsync -ro /b\" {KEY} k\n"
    ));
    assert_eq!(p.clients.len(), 2);
    assert!(
        lost(&imp).contains("in:2: the same key as line 1"),
        "{}",
        lost(&imp)
    );
    // A comment that cannot be in a policy key is left out of it.
    let (_, p) = keys(&format!("command=\"rrsync -ro /srv\" {KEY} say \"hi\"\n"));
    assert_eq!(p.clients["say"].key.as_deref(), Some(KEY));
}

#[test]
fn daemon_lines_import_their_config() {
    let files = Mem::with(&[
        (
            "/home/m/rsyncd.conf",
            "hosts allow = 192.0.2.0/24\n[pub]\npath=/srv/pub\n[up]\npath=/srv/up\nread only=no\n[priv]\npath=/srv/priv\nauth users=alice\n",
        ),
        (
            "/etc/other.conf",
            "[pub]\npath=/srv/other\nhosts allow = 198.51.100.0/24\n[x]\npath=/srv/x\n",
        ),
    ]);
    let text = format!(
        "from=\"192.0.2.7\",command=\"rsync --server --daemon --config=rsyncd.conf .\" {KEY} a\n\
         command=\"rsync --server --daemon --config=~/rsyncd.conf .\" {KEY}b b\n\
         command=\"rsync --config=/etc/other.conf --server --daemon .\" {KEY}c c\n\
         command=\"rsync --server --daemon .\" {KEY}d d\n\
         command=\"rsync --server --daemon --config=/nope.conf .\" {KEY}e e\n\
         command=\"rsync --server --daemon --config=/home/m/rsyncd.conf --dparam=readonly=no .\" {KEY}f f\n"
    );
    let (imp, p) = imported(Format::AuthorizedKeys, &text, Some("/home/m"), &files);
    // The key's from and the config's hosts allow both apply.
    assert_eq!(p.clients["a"].modules, ["pub", "up"]);
    assert_eq!(from(&p, "a"), ["192.0.2.7"]);
    // The same config is one set of modules.
    assert_eq!(p.clients["b"].modules, ["pub", "up"]);
    assert_eq!(from(&p, "b"), ["192.0.2.0/24"]);
    // Another config's modules are renamed where their names are taken,
    // and a key keeps only the modules with the first module's addresses.
    assert_eq!(p.clients["c"].modules, ["pub-2"]);
    assert_eq!(p.modules["pub-2"].path, Path::new("/srv/other"));
    // No --config: ~/rsyncd.conf, with a warning (root reads /etc).
    assert_eq!(p.clients["d"].modules, ["pub", "up"]);
    assert!(!p.clients.contains_key("e"));
    // --dparam: defaults for every module.
    assert_eq!(p.clients["f"].modules, ["pub-3", "up-2"]);
    assert!(!p.modules["pub-3"].read_only);
    let l = lost(&imp);
    for want in [
        "in:1: [priv] (auth users = alice): rsync asked for a user name and password on top of the key",
        "in:3: 'c': x let in other addresses than pub-2",
        "in:4: command=\"rsync --server --daemon .\": no --config",
        "in:5: command=\"rsync --server --daemon --config=/nope.conf .\": /nope.conf: cannot read",
        "/etc/other.conf:1: [pub]: the policy calls the module 'pub-2'",
    ] {
        assert!(l.contains(want), "want {want}\n{l}");
    }
    // Without a home, a relative config cannot be found.
    let (imp, p) = imported(
        Format::AuthorizedKeys,
        &format!("command=\"rsync --server --daemon --config=rsyncd.conf .\" {KEY} a\n"),
        None,
        &files,
    );
    assert!(p.clients.is_empty());
    assert!(lost(&imp).contains("name it with --home"), "{}", lost(&imp));
}

#[test]
fn ftpsync_lines_become_a_trigger() {
    let (imp, p) = keys(&format!(
        "no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty,command=\"~/bin/ftpsync\",from=\"203.0.113.5\" {KEY} syncproxy\n\
         command=\"/home/m/bin/ftpsync\" {KEY}x second\n"
    ));
    let t = &p.triggers["ftpsync"];
    assert_eq!(t.command, ["/home/m/bin/ftpsync"]);
    assert_eq!(t.allows(b"sync:archive:debian"), Some(true));
    assert_eq!(t.allows(b"sync:callback"), Some(false));
    assert_eq!(p.clients["syncproxy"].trigger.as_deref(), Some("ftpsync"));
    assert_eq!(from(&p, "syncproxy"), ["203.0.113.5"]);
    assert_eq!(p.clients["second"].trigger.as_deref(), Some("ftpsync"));
    assert_eq!(p.triggers.len(), 1);
    assert!(imp.lost.is_empty(), "{}", lost(&imp));
    // On PATH only: a commented-out stanza to finish by hand.
    let (imp, p) = keys(&format!("command=\"ftpsync\" {KEY} up\n"));
    assert!(p.triggers.is_empty());
    assert!(
        imp.render()
            .contains("# [triggers.ftpsync]\n# command = [\"/usr/bin/ftpsync\"]\n")
    );
}

#[test]
fn the_authorized_keys_fixture() {
    let files = Mem::with(&[(
        "/home/mirror/ssh-daemon.conf",
        include_str!("../../../tests/data/import/ssh-daemon.conf"),
    )]);
    let (imp, p) = imported(
        Format::AuthorizedKeys,
        include_str!("../../../tests/data/import/authorized_keys"),
        Some("/home/mirror"),
        &files,
    );
    let modules = |c: &str| p.clients[c].modules.join(" ");
    assert_eq!(modules("web1-mirror.example.org"), "www");
    assert_eq!(modules("web2"), "www");
    assert_eq!(modules("logs"), "logs");
    assert_eq!(modules("host1-backup"), "host1");
    assert_eq!(modules("drop-laptop"), "dropbox");
    assert_eq!(modules("host2"), "host2");
    assert_eq!(modules("daemon1"), "pub upload");
    assert_eq!(p.clients["syncproxy"].trigger.as_deref(), Some("ftpsync"));
    assert_eq!(p.clients.len(), 8);
    assert_eq!(from(&p, "host1-backup"), ["192.0.2.20", "2001:db8:20::/48"]);
    assert_eq!(from(&p, "host2"), ["10.1.2.0/24"]);
    assert_eq!(from(&p, "daemon1"), ["192.0.2.30"]);
    assert_eq!(
        p.modules["logs"].path,
        Path::new("/home/mirror/client/logs")
    );
    assert_eq!(p.modules["dropbox"].path, Path::new("/home/mirror/dropbox"));
    let lines: Vec<usize> = imp
        .lost
        .iter()
        .filter(|l| l.loc.file == "in")
        .map(|l| l.loc.line)
        .collect();
    assert_eq!(lines, [13, 15, 17, 21, 22, 23, 24], "{}", lost(&imp));
}

// ---------------------------------------------------------------------------
// The command
// ---------------------------------------------------------------------------

#[test]
fn formats_are_told_apart() {
    let table: &[(&str, Option<Format>)] = &[
        ("[ftp]\npath = /x\n", Some(Format::Rsyncd)),
        ("# c\n\n  uid = nobody\n", Some(Format::Rsyncd)),
        ("&include /etc/rsyncd.d\n", Some(Format::Rsyncd)),
        ("; c\nRead Only = no\n", Some(Format::Rsyncd)),
        (
            &format!("command=\"rrsync /x\" {KEY}\n"),
            Some(Format::AuthorizedKeys),
        ),
        (&format!("# keys\n{KEY} me\n"), Some(Format::AuthorizedKeys)),
        (&format!("junk\n{KEY} me\n"), Some(Format::AuthorizedKeys)),
        ("hello world\n", None),
        ("", None),
        ("x = y\n", None),
    ];
    for (text, want) in table {
        assert_eq!(detect(text), *want, "{text:?}");
    }
}

#[test]
fn exit_status_and_messages() {
    let d = tempfile::tempdir().unwrap();
    let run_on = |name: &str, text: &str, format: Option<Format>| -> (u8, String, String) {
        let f = d.path().join(name);
        std::fs::write(&f, text).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = match run(
            &Options {
                file: f,
                format,
                home: None,
            },
            &mut out,
            &mut err,
        ) {
            Ok(c) => c,
            Err(e) => {
                err.extend(format!("{e:#}").bytes());
                2
            }
        };
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    };
    let (code, out, err) = run_on("a.conf", "[a]\npath = /srv/a\n", None);
    assert_eq!((code, err.as_str()), (0, ""));
    assert!(out.contains("[modules.a]") && out.contains("Everything was carried over."));
    let (code, out, err) = run_on("b.conf", "[a]\npath = /srv/a\ntimeout = 60\n", None);
    assert_eq!(code, 1);
    assert!(out.contains("NOT CARRIED OVER (1"), "{out}");
    let f = d.path().join("b.conf");
    assert_eq!(
        err,
        format!(
            "rsync-gate: import: {}:3: timeout = 60: the gate has no module timeout yet (the client's --timeout applies)\n",
            f.display()
        )
    );
    let (code, out, err) = run_on("c.conf", "[a/b]\npath = /srv/a\n", None);
    assert_eq!((code, out.as_str()), (2, ""));
    assert!(err.contains(":1: module name 'a/b' contains '/'"), "{err}");
    let (code, _, err) = run_on("d", "hello\n", None);
    assert_eq!(code, 2);
    assert!(err.contains("say which with --format"), "{err}");
    // Told the format, a file of junk key lines still prints a policy.
    let (code, out, _) = run_on("e", "hello\n", Some(Format::AuthorizedKeys));
    assert_eq!(code, 1);
    assert!(out.contains("NOT CARRIED OVER (1"), "{out}");
    // The home is above the .ssh directory the file is in.
    assert_eq!(
        home_of(Path::new("/home/u/.ssh/authorized_keys")),
        Some(PathBuf::from("/home/u"))
    );
    assert_eq!(home_of(Path::new("/home/u/keys")), None);
}

/// The README says what becomes of every rsyncd.conf parameter.
#[test]
fn readme_lists_every_parameter_where_it_goes() {
    let readme = include_str!("../../../README.md");
    let section = &readme[readme.find("### `rsync-gate import").unwrap()..];
    let para = |start: &str| -> Vec<String> {
        let i = section
            .find(start)
            .unwrap_or_else(|| panic!("no {start:?}"));
        let text = &section[i + start.len()..];
        let text = &text[..text.find("\n\n").unwrap()];
        text.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    };
    let replaced = para("Done by the gate or sshd instead (a note):");
    let lost = para("Not carried over (a warning, when set):");
    let table = &section[..section.find("\nModules without `auth users`").unwrap()];
    for d in rsyncd::PARAMS {
        let quoted = format!("`{}`", d.name);
        match d.how {
            rsyncd::How::Mapped => assert!(
                table.lines().any(
                    |l| l.starts_with("| ") && l.split(" | ").next().unwrap().contains(&quoted)
                ),
                "{} is mapped: the README's table says how",
                d.name
            ),
            rsyncd::How::Replaced(_) => {
                assert!(replaced.contains(&d.name.to_string()), "{}: README", d.name)
            }
            rsyncd::How::LostIfSet(_) | rsyncd::How::LostIfTrue(_) => {
                assert!(lost.contains(&d.name.to_string()), "{}: README", d.name);
            }
        }
    }
    assert_eq!(
        replaced.len() + lost.len(),
        rsyncd::PARAMS
            .iter()
            .filter(|d| d.how != rsyncd::How::Mapped)
            .count()
    );
}
