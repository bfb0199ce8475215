//! The security oracle, shared by the fuzz targets (`fuzz/src/lib.rs`
//! includes this file) and the property tests (`tests/gate/props.rs`): one
//! lexical policy, one hostile tree, and the invariants every decision and
//! every plan must satisfy.
//!
//! Everything goes through the gate's one front half,
//! `pipeline::evaluate` (its decision stage alone where there is no real
//! tree). The fuzz input format: the first byte selects the client, the
//! connection and what confines rsync (see [`select`]); the remaining
//! bytes are `SSH_ORIGINAL_COMMAND`.
//!
//! Every check returns `Err(description)` on an invariant violation; the
//! fuzz targets turn that into a panic (a crash for libFuzzer), the
//! property tests into a failing case.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Component, Path, PathBuf};

use rsync_gate::confine::{Account, Confined};
use rsync_gate::decide::{Added, Conn, Decision, Grant, Mode, PathValue, RsyncCaps, Sources};
use rsync_gate::deny::DenyReason;
use rsync_gate::pipeline::evaluate::{self, Evaluation, Inputs};
use rsync_gate::plan::{self, ExecPlan};
use rsync_gate::policy::{self, Module, Policy};
use rsync_gate::request::conn::Connection;
use rsync_gate::request::options::{self, Charset, PathRole, Takes, Value};
use rsync_gate::request::{ParseError, Request};

/// Client names the selector picks from (both policies define the same
/// names; "nobody" is in neither).
pub const CLIENTS: [&str; 8] = [
    "c", "fenced", "rooty", "trig", "nobody", "dropper", "trig_any", "reader",
];

/// Connections the selector picks from.
pub const CONNS: [Option<&str>; 8] = [
    None,
    Some("192.0.2.10"),
    Some("192.0.2.11"),
    Some("::ffff:192.0.2.10"),
    Some("2001:db8::7"),
    Some("127.0.0.1"),
    Some("2001:db9::1"),
    Some("192.0.2.10"),
];

/// Who asks, from where, against which rsync, under which kernel.
#[derive(Debug, Clone, Copy)]
pub struct Selector {
    pub client: &'static str,
    pub conn: Option<Conn>,
    pub caps: RsyncCaps,
    /// The kernel offers Landlock (so the default `best-effort` sandbox
    /// goes around rsync).
    pub landlock: bool,
}

impl Selector {
    /// The connection as `serve` would parse it from sshd.
    pub fn connection(&self) -> Option<Connection> {
        self.conn.map(|c| Connection {
            client: c,
            server: Some(Conn {
                addr: std::net::Ipv4Addr::LOCALHOST.into(),
                port: 22,
            }),
        })
    }

    /// The front half's inputs for this selector.
    pub fn inputs<'a>(
        &self,
        policy: &'a Policy,
        account: &'a Account,
        conn: Option<&'a Connection>,
    ) -> Inputs<'a> {
        Inputs {
            policy,
            policy_path: &policy.source,
            client: self.client,
            conn,
            account,
            caps: self.caps,
            landlock: self.landlock,
            gate: Path::new("/usr/local/bin/rsync-gate"),
            session: "oracle",
        }
    }
}

/// Split a fuzz input into the selector and the command. Bits 0-2 pick the
/// client, bits 3-5 the connection; bit 6 clear means rsync supports
/// `--confine-root`, bit 7 clear that it supports `--drop-D`. The kernel
/// lacks Landlock when the connection index is 6 (an address no client may
/// come from; so the no-sandbox paths are reached with every client but
/// the fenced ones). A leading 0x00 is client "c", no connection, a current
/// rsync, Landlock.
pub fn select(data: &[u8]) -> (Selector, &[u8]) {
    let (b, rest) = match data.split_first() {
        Some((b, rest)) => (*b, rest),
        None => (0, data),
    };
    let idx = |shift: u32| usize::from((b >> shift) & 7);
    let client = CLIENTS.get(idx(0)).copied().unwrap_or("c");
    let conn = CONNS
        .get(idx(3))
        .copied()
        .flatten()
        .and_then(|a| a.parse::<IpAddr>().ok())
        .map(|addr| Conn { addr, port: 40000 });
    let caps = RsyncCaps {
        confine_root: b & 0x40 == 0,
        drop_d: b & 0x80 == 0,
    };
    let landlock = idx(3) != 6;
    (
        Selector {
            client,
            conn,
            caps,
            landlock,
        },
        rest,
    )
}

/// The lexical policy: module paths that need not exist (also the
/// decision's unit tables' policy).
pub const LEXICAL_POLICY: &str = include_str!("../data/lexical-policy.toml");

pub fn lexical_policy() -> Policy {
    match policy::load_text(Path::new("/fuzz/policy.toml"), LEXICAL_POLICY) {
        Ok(p) => p,
        Err(e) => panic!("the fuzz policy does not load: {e}"),
    }
}

/// Where the real tree lives (fixed, so absolute paths into it can be
/// found by mutation and listed in the dictionary).
pub fn tree_base() -> PathBuf {
    std::env::var_os("RSYNC_GATE_FUZZ_TREE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/rsync-gate-fuzz"))
}

/// Bump when the tree's layout changes: an old tree is then rebuilt.
const TREE_VERSION: &str = "5";

/// The tree's module directories, named as on a real server (not after
/// their modules): (module, directory below `srv/`).
pub const MODULE_DIRS: &[(&str, &str)] = &[
    ("www", "public-tree"),
    ("nested", "public-tree/sub"),
    ("backup", "vault"),
    ("drop", "inbox"),
    ("handin", "submissions"),
    ("links", "linkfarm"),
    ("via", "alias"),
    ("secret", "private"),
];

/// The real tree for the pipeline target and its policy.
pub struct Tree {
    pub base: PathBuf,
    pub policy: Policy,
    pub account: Account,
}

fn io<T>(what: &Path, r: std::io::Result<T>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("building the fuzz tree: {}: {e}", what.display()),
    }
}

fn mkdir(p: &Path) {
    io(p, std::fs::create_dir_all(p));
    use std::os::unix::fs::PermissionsExt;
    io(
        p,
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)),
    );
}

fn file(p: &Path, content: &str) {
    io(p, std::fs::write(p, content));
}

fn link(target: impl AsRef<Path>, at: &Path) {
    io(at, symlink(target, at));
}

/// Populate `base` (which must not exist yet).
pub fn build_tree(base: &Path) {
    let srv = base.join("srv");
    let www = srv.join("public-tree");
    let sub = www.join("sub");
    let backup = srv.join("vault");
    let drop = srv.join("inbox");
    let handin = srv.join("submissions");
    let links = srv.join("linkfarm");
    let real = srv.join("real");
    let outside = base.join("outside");
    for d in [
        base,
        &srv,
        &www,
        &sub,
        &sub.join("deeper"),
        &www.join("dir with space"),
        &backup,
        &backup.join("prev"),
        &backup.join("cur"),
        &backup.join("tmp"),
        &drop,
        &handin,
        &links,
        &links.join("sub"),
        &real,
        &real.join("inner"),
        &srv.join("private"),
        &srv.join("www"),
        &outside,
        &outside.join("dir"),
    ] {
        mkdir(d);
    }
    file(&base.join("VERSION"), TREE_VERSION);
    for (name, content) in [
        ("a.txt", "a"),
        ("b.txt", "b"),
        (".hidden.txt", "h"),
        ("-dash", "d"),
        ("star*", "s"),
        ("q?", "q"),
        ("back\\slash", "b"),
        ("it's", "i"),
        ("list", "a.txt\nsub/file.txt\n"),
        ("dir with space/f g", "x"),
        ("sub/file.txt", "f"),
        ("sub/deeper/d.bin", "d"),
    ] {
        file(&www.join(name), content);
    }
    file(&outside.join("secret"), "s");
    file(&outside.join("dir/x"), "x");
    file(&backup.join("listb"), "x\n");
    file(&backup.join("prev/old"), "o");
    file(&drop.join("existing.txt"), "e");
    file(&handin.join("existing.txt"), "e");
    file(&links.join("sub/f"), "f");
    file(&real.join("inner/r.txt"), "r");
    file(&srv.join("private/s"), "s");
    // A directory named like a module, which is not one.
    file(&srv.join("www/decoy"), "d");
    // Symlinks leading out, in, nowhere, in circles.
    link(&outside, &www.join("out"));
    link("../../outside/secret", &www.join("leak"));
    link("sub", &www.join("insub"));
    link("nowhere", &www.join("dangling"));
    link("loop", &www.join("loop"));
    link("c2", &www.join("c1"));
    link("sub", &www.join("c2"));
    link("../vault", &www.join("back"));
    link("..", &sub.join("up"));
    link("../a.txt", &sub.join("a-link"));
    link("/etc", &sub.join("etc"));
    link(&outside, &backup.join("evil"));
    link("prev", &backup.join("prev-link"));
    link("gone", &backup.join("dl"));
    link("listb", &backup.join("list-link"));
    link("../outside/secret", &backup.join("leakfile"));
    link("../public-tree/a.txt", &links.join("l"));
    link("sub", &links.join("in"));
    link("real", &srv.join("alias"));
    link("../../outside/dir", &real.join("outdir"));
    // A FIFO where a list file might be expected.
    let fifo = www.join("fifo");
    if let Err(e) = nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)) {
        panic!("mkfifo {}: {e}", fifo.display());
    }
}

fn tree_policy_text(base: &Path) -> String {
    let srv = base.join("srv");
    let p = |m: &str| {
        let dir = MODULE_DIRS
            .iter()
            .find(|(name, _)| *name == m)
            .map_or(m, |(_, d)| d);
        srv.join(dir).display().to_string()
    };
    format!(
        r#"
[gate]
rsync = "/usr/bin/rsync"

[modules.www]
path = "{www}"

[modules.nested]
path = "{nested}"
read_only = false
specials = true

[modules.backup]
path = "{backup}"
read_only = false
delete = true

[modules.drop]
path = "{drop}"
read_only = false
write_only = true
overwrite = false

[modules.handin]
path = "{handin}"
read_only = false
write_only = true

[modules.links]
path = "{links}"
read_only = false
delete = true
follow_links = true
devices = true
munge_links = false
setuid = true
max_connections = 4

[modules.via]
path = "{via}"

[modules.secret]
path = "{secret}"

[clients.c]
modules = ["www", "nested", "backup", "drop", "handin", "links", "via"]

[clients.fenced]
modules = ["www", "backup"]
from = ["192.0.2.10", "2001:db8::/32"]

[clients.rooty]
modules = ["via", "links"]

[clients.dropper]
modules = ["drop", "handin"]

[clients.reader]
modules = ["www", "nested"]
from = ["192.0.2.0/24", "127.0.0.0/8"]

[triggers.t]
command = ["/bin/true"]
args = ["sync:all", "sync:stage1", "sync:archive:*"]

[clients.trig]
trigger = "t"

[triggers.any]
command = ["/bin/true"]

[clients.trig_any]
trigger = "any"
from = ["192.0.2.0/24"]
"#,
        www = p("www"),
        nested = p("nested"),
        backup = p("backup"),
        drop = p("drop"),
        handin = p("handin"),
        links = p("links"),
        via = p("via"),
        secret = p("secret"),
    )
}

impl Tree {
    /// Build (or reuse) the tree at [`tree_base`] (the fuzz targets' fixed
    /// place). It is built next to its final place and renamed into it, so
    /// concurrent fuzzers agree.
    pub fn get() -> Tree {
        let base = tree_base();
        let current = std::fs::read_to_string(base.join("VERSION")).ok();
        if current.as_deref() != Some(TREE_VERSION) {
            let tmp = base.with_extension(format!("{}.tmp", std::process::id()));
            let _ = std::fs::remove_dir_all(&tmp);
            build_tree(&tmp);
            if current.is_some() {
                let _ = std::fs::remove_dir_all(&base);
            }
            if std::fs::rename(&tmp, &base).is_err() {
                // Someone else won the race.
                let _ = std::fs::remove_dir_all(&tmp);
            }
        }
        Tree::at(&base)
    }

    /// Build a fresh tree at `base`, which must not exist (the property
    /// tests' temporary directory).
    pub fn build(base: &Path) -> Tree {
        build_tree(base);
        Tree::at(base)
    }

    fn at(base: &Path) -> Tree {
        let base = io(base, std::fs::canonicalize(base));
        let text = tree_policy_text(&base);
        let policy = match policy::load_text(&base.join("policy.toml"), &text) {
            Ok(p) => p,
            Err(e) => panic!("the oracle's tree policy does not load: {e}"),
        };
        let account = Account {
            uid: nix::unistd::geteuid().as_raw(),
            name: "oracle".into(),
            home: Some(PathBuf::from("/nonexistent-oracle-home")),
        };
        // Without usable module roots every grant would be refused and the
        // run would prove nothing: a plain pull of (or push into) each
        // granted module must be allowed.
        let sel = Selector {
            client: "c",
            conn: None,
            caps: RsyncCaps {
                confine_root: true,
                drop_d: true,
            },
            landlock: true,
        };
        for m in ["www", "nested", "backup", "links", "via", "drop"] {
            let cmd = if m == "drop" {
                format!("rsync --server -r . {m}/")
            } else {
                format!("rsync --server --sender -r . {m}/")
            };
            let parsed = rsync_gate::request::parse_command(cmd.as_bytes());
            let why =
                match evaluate::evaluate(&sel.inputs(&policy, &account, None), parsed.as_ref()) {
                    Evaluation::Run(_) => continue,
                    Evaluation::Refused(r) => r.reason.to_string(),
                    other => format!("{other:?}"),
                };
            panic!(
                "module {m} of the oracle's tree is not usable ({why}); remove {} or set RSYNC_GATE_FUZZ_TREE",
                base.display()
            );
        }
        Tree {
            base,
            policy,
            account,
        }
    }
}

// ---------------------------------------------------------------------------
// Invariants of the decision (no filesystem)
// ---------------------------------------------------------------------------

/// rsync's options as its manual describes them, written here without
/// looking at the gate's option table: what each does on a server decides
/// where the policy may allow it.
pub mod rsync_doc {
    /// Delete files on the receiver (or, `remove-*`, on the sender).
    pub const DELETES: &[&str] = &[
        "delete",
        "delete-before",
        "delete-during",
        "del",
        "delete-delay",
        "delete-after",
        "delete-excluded",
        "delete-missing-args",
        "remove-source-files",
        "remove-sent-files",
        "force",
    ];
    /// Move an existing file aside, write into it, or leave a partial one
    /// in its place.
    pub const REPLACES: &[&str] = &[
        "backup",
        "backup-dir",
        "partial",
        "partial-dir",
        "delay-updates",
        "inplace",
        "append",
        "append-verify",
    ];
    /// Follow symlinks wherever they lead.
    pub const FOLLOWS: &[&str] = &[
        "copy-links",
        "copy-dirlinks",
        "keep-dirlinks",
        "copy-unsafe-links",
    ];
    /// Read or write device contents.
    pub const DEVICE_CONTENTS: &[&str] = &["copy-devices", "write-devices"];
    /// Make the receiver base an upload on an existing file (a similarly
    /// named one, one in a basis directory, a partial one, the same name
    /// in a delta transfer or an append), or tell the client about existing
    /// names without transferring anything (a dry run, skipping the names
    /// that do not exist, counting what a deletion would remove).
    pub const USES_EXISTING: &[&str] = &[
        "fuzzy",
        "compare-dest",
        "copy-dest",
        "link-dest",
        "partial-dir",
        "delay-updates",
        "no-W",
        "no-whole-file",
        "append",
        "append-verify",
        "dry-run",
        "existing",
        "ignore-non-existing",
        "max-delete",
    ];
    /// Skip an upload when the existing file of its name compares a
    /// certain way (content, time order, size, a time window).
    pub const COMPARES_EXISTING: &[&str] = &["checksum", "update", "size-only", "modify-window"];
    /// Deletes on the receiving side only: a sender ignores them (it has
    /// nothing to delete). `--delete-missing-args` is not one (the sender
    /// marks the missing arguments), nor are the `remove-*` options (the
    /// sender removes what it sent).
    pub const SENDER_IGNORES: &[&str] = &[
        "delete",
        "delete-before",
        "delete-during",
        "delete-delay",
        "delete-after",
        "delete-excluded",
        "force",
    ];
    /// Never a client's to choose: other programs, logs, batch files,
    /// daemon configuration, identity, the confinement itself, server-side
    /// rule files, trust in the sender's list, and what only clients use.
    pub const NEVER: &[&str] = &[
        "rsync-path",
        "rsh",
        "log-file",
        "log-file-format",
        "write-batch",
        "read-batch",
        "only-write-batch",
        "debug",
        "config",
        "dparam",
        "daemon",
        "copy-as",
        "insecure-links",
        "no-munge-links",
        "confine-root",
        "filter",
        "exclude",
        "include",
        "exclude-from",
        "include-from",
        "trust-sender",
        "secluded-args",
        "protect-args",
        "remote-option",
        "password-file",
        "early-input",
        "chmod",
        "chown",
    ];
    /// Options whose value is a server path.
    pub const PATH_VALUED: &[&str] = &[
        "files-from",
        "link-dest",
        "compare-dest",
        "copy-dest",
        "backup-dir",
        "partial-dir",
        "temp-dir",
    ];
    /// The letters an rsync client puts in the cluster it sends a server
    /// (`server_options()`), with the long option each stands for.
    pub const LETTERS: &[(u8, &str)] = &[
        (b's', "secluded-args"),
        (b'v', "verbose"),
        (b'q', "quiet"),
        (b'b', "backup"),
        (b'u', "update"),
        (b'n', "dry-run"),
        (b'l', "links"),
        (b'd', "dirs"),
        (b'K', "keep-dirlinks"),
        (b'm', "prune-empty-dirs"),
        (b'O', "omit-dir-times"),
        (b'J', "omit-link-times"),
        (b'y', "fuzzy"),
        (b'L', "copy-links"),
        (b'k', "copy-dirlinks"),
        (b'W', "whole-file"),
        (b'H', "hard-links"),
        (b'o', "owner"),
        (b'g', "group"),
        (b'D', "devices-and-specials"),
        (b't', "times"),
        (b'U', "atimes"),
        (b'N', "crtimes"),
        (b'p', "perms"),
        (b'E', "executability"),
        (b'A', "acls"),
        (b'X', "xattrs"),
        (b'r', "recursive"),
        (b'c', "checksum"),
        (b'C', "cvs-exclude"),
        (b'I', "ignore-times"),
        (b'R', "relative"),
        (b'x', "one-file-system"),
        (b'S', "sparse"),
        (b'z', "compress"),
    ];
}

/// May module `m` allow the option `name` (a long name, as the gate writes
/// it)? Judged from the policy and [`rsync_doc`] alone.
fn option_allowed(name: &str, m: &Module) -> Result<(), String> {
    let has = |list: &[&str]| list.contains(&name);
    let ok = if has(rsync_doc::NEVER) {
        false
    } else if has(rsync_doc::DELETES) {
        m.delete && m.overwrite && m.writable()
    } else if has(rsync_doc::REPLACES) {
        m.overwrite
    } else if has(rsync_doc::FOLLOWS) {
        m.follow_links
    } else if has(rsync_doc::DEVICE_CONTENTS) {
        m.devices
    } else {
        true
    };
    // A write-only module sends its clients nothing derived from existing
    // files (with overwrite = false, --ignore-existing skips existing names
    // before any comparison).
    let ok = ok
        && (m.readable()
            || !(has(rsync_doc::USES_EXISTING)
                || (m.overwrite && has(rsync_doc::COMPARES_EXISTING))));
    if ok {
        Ok(())
    } else {
        Err(format!("option --{name} granted in module {}", m.name))
    }
}

/// Does an `--info` value set SKIP (itself or through ALL) to 2 or more?
/// rsync's manual: words separated by commas, a level after the name,
/// case does not matter.
fn info_skip2(value: &[u8]) -> bool {
    value.split(|&b| b == b',').any(|w| {
        let w = String::from_utf8_lossy(w).to_ascii_lowercase();
        let name = w.trim_end_matches(|c: char| c.is_ascii_digit());
        let level: u64 = w[name.len()..].parse().unwrap_or(1);
        (name == "skip" || name == "all") && level >= 2
    })
}

/// The option a cluster letter stands for ([`rsync_doc::LETTERS`]).
fn letter_name(l: u8) -> Option<&'static str> {
    rsync_doc::LETTERS
        .iter()
        .find(|(c, _)| *c == l)
        .map(|(_, n)| *n)
}

/// Is `addr` inside `net` (`ADDR/LEN`, as a policy's `from` entry reads)?
/// IPv4-mapped IPv6 addresses are their IPv4 address, as sshd reports
/// them either way.
pub fn cidr_contains(net: &str, addr: IpAddr) -> bool {
    let v4 = |a: IpAddr| match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
        other => other,
    };
    let (base, len) = net.split_once('/').unwrap_or((net, ""));
    let Ok(base) = base.parse::<IpAddr>() else {
        return false;
    };
    let (base, addr) = (v4(base), v4(addr));
    let bits = |a: IpAddr| -> (u128, u32) {
        match a {
            IpAddr::V4(x) => (u128::from(u32::from(x)), 32),
            IpAddr::V6(x) => (u128::from(x), 128),
        }
    };
    let ((b, width), (x, xwidth)) = (bits(base), bits(addr));
    if width != xwidth {
        return false;
    }
    let len: u32 = if len.is_empty() {
        width
    } else {
        match len.parse() {
            Ok(n) if n <= width => n,
            _ => return false,
        }
    };
    if len == 0 {
        return true;
    }
    let shift = width - len;
    (b >> shift) == (x >> shift)
}

/// A refusal is shown to the client as one line; client bytes in it must
/// be escaped.
pub fn check_message(reason: &DenyReason) -> Result<(), String> {
    let msg = reason.to_string();
    if msg.is_empty() || reason.code().is_empty() {
        return Err(format!("empty refusal message or code: {reason:?}"));
    }
    if let Some(c) = msg.chars().find(|c| c.is_control()) {
        return Err(format!(
            "refusal message holds the raw control character {c:?}: {msg:?} ({reason:?})"
        ));
    }
    Ok(())
}

/// Is the message check on for this refusal?
/// `RSYNC_GATE_FUZZ_SKIP_MESSAGES=code,code` turns it off for those refusal
/// codes (to keep fuzzing past a known, reported message bug).
pub fn message_checked(reason: &DenyReason) -> bool {
    static SKIP: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let skip = SKIP.get_or_init(|| {
        std::env::var("RSYNC_GATE_FUZZ_SKIP_MESSAGES")
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    });
    !skip.iter().any(|c| c == reason.code())
}

/// Invariants of a decision.
pub fn check_decision(
    policy: &Policy,
    sel: &Selector,
    parsed: Result<&Request, &ParseError>,
    decision: &Decision,
) -> Result<(), String> {
    let client = policy.clients.get(sel.client);
    match decision {
        Decision::Deny(r) => {
            if message_checked(r) {
                check_message(r)?;
            }
            Ok(())
        }
        Decision::Probe => match parsed {
            Ok(Request::Probe) => Ok(()),
            other => Err(format!("probe decision for {other:?}")),
        },
        Decision::Daemon(d) => {
            let Some(c) = client else {
                return Err("daemon grant for an unknown client".into());
            };
            if !matches!(parsed, Ok(Request::Daemon { .. })) {
                return Err(format!("daemon grant for {parsed:?}"));
            }
            if d.modules != c.modules || d.modules.is_empty() {
                return Err(format!("daemon grant {d:?} for client {c:?}"));
            }
            Ok(())
        }
        Decision::InBand(_) => Err(format!("an in-band grant for {parsed:?}")),
        Decision::Trigger(g) => check_trigger(policy, sel, parsed, g),
        Decision::Checked(g) => {
            let Some(c) = client else {
                return Err("checked grant for an unknown client".into());
            };
            if !c.from.is_empty() {
                let Some(conn) = sel.conn else {
                    return Err("grant without a source address for a fenced client".into());
                };
                if !c
                    .from
                    .iter()
                    .any(|n| cidr_contains(&n.to_string(), conn.addr))
                {
                    return Err(format!("grant from {} outside {:?}", conn.addr, c.from));
                }
            }
            let Ok(Request::Server(args)) = parsed else {
                return Err(format!("checked grant for {parsed:?}"));
            };
            if args.sender != (g.mode == Mode::Sender) {
                return Err("grant mode differs from --sender".into());
            }
            check_grant(policy, sel, g, c.modules.as_slice())
        }
    }
}

/// Invariants of a trigger grant: the client's own trigger, from where it
/// may connect, for a command that is not rsync's, every word plain and
/// within bounds, and passed to the job only when the trigger lists it.
fn check_trigger(
    policy: &Policy,
    sel: &Selector,
    parsed: Result<&Request, &ParseError>,
    g: &rsync_gate::decide::TriggerGrant,
) -> Result<(), String> {
    let Some(c) = policy.clients.get(sel.client) else {
        return Err("trigger grant for an unknown client".into());
    };
    if c.trigger.as_deref() != Some(g.trigger.as_str()) {
        return Err(format!(
            "trigger {} is not client {}'s",
            g.trigger, sel.client
        ));
    }
    if !c.from.is_empty()
        && !sel.conn.is_some_and(|conn| {
            c.from
                .iter()
                .any(|n| cidr_contains(&n.to_string(), conn.addr))
        })
    {
        return Err("trigger from outside the client's `from`".into());
    }
    let words: Vec<&[u8]> = match parsed {
        Ok(Request::Other { words }) => {
            if words.iter().any(|w| w.glob.is_some() || w.tilde) {
                return Err(format!(
                    "trigger with a word a shell would expand: {words:?}"
                ));
            }
            words.iter().map(|w| w.bytes.as_slice()).collect()
        }
        Ok(Request::NoCommand) => Vec::new(),
        other => return Err(format!("trigger for {other:?}")),
    };
    if g.words.iter().map(Vec::as_slice).ne(words.iter().copied()) {
        return Err(format!("trigger words {:?} are not the client's", g.words));
    }
    if words.len() > 16 || words.iter().any(|w| w.len() > 256) {
        return Err(format!(
            "trigger with {} words, or a word too long",
            words.len()
        ));
    }
    let t = policy
        .triggers
        .get(&g.trigger)
        .ok_or_else(|| format!("trigger {} is not in the policy", g.trigger))?;
    if g.passed != t.args.is_some() {
        return Err(format!(
            "words passed: {}, trigger args {:?}",
            g.passed, t.args
        ));
    }
    if let Some(args) = &t.args {
        for w in &words {
            if !args.iter().any(|a| word_matches(a, w)) {
                return Err(format!("trigger word {w:?} matches none of {args:?}"));
            }
        }
    }
    Ok(())
}

/// The product's trigger word pattern, read afresh: an entry ending in `*`
/// matches its prefix followed by letters, digits and `._+-:`; any other
/// entry matches itself.
fn word_matches(entry: &str, word: &[u8]) -> bool {
    const SAFE: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-:";
    match entry.strip_suffix('*') {
        Some(prefix) => word
            .strip_prefix(prefix.as_bytes())
            .is_some_and(|rest| rest.iter().all(|b| SAFE.as_bytes().contains(b))),
        None => word == entry.as_bytes(),
    }
}

/// Invariants of a checked grant, before the filesystem.
pub fn check_grant(
    policy: &Policy,
    sel: &Selector,
    g: &Grant,
    client_modules: &[String],
) -> Result<(), String> {
    let m = grant_common(policy, g, client_modules)?;
    check_added(policy, sel, g, m)
}

/// Invariants of an in-band (`host::`) grant: as a checked grant's, except
/// that the gate adds nothing (the generated daemon config does its part):
/// a push into a module without overwrite must carry `--ignore-existing`,
/// and without the sandbox the hook alone keeps device files out.
pub fn check_inband_grant(
    policy: &Policy,
    sel: &Selector,
    g: &Grant,
    client_modules: &[String],
) -> Result<(), String> {
    let m = grant_common(policy, g, client_modules)?;
    if !g.added.is_empty() {
        return Err(format!("an in-band grant adds {:?}", g.added));
    }
    let receiver = g.mode == Mode::Receiver;
    let has = |names: &[&str]| g.opts.iter().any(|o| names.contains(&o.spec.long));
    if receiver && !m.overwrite && !has(&["ignore-existing"]) {
        return Err("an in-band push without --ignore-existing into a no-overwrite module".into());
    }
    let nodes = if m.specials {
        has(&["D", "devices"])
    } else {
        has(&["D", "devices", "specials"])
    };
    if receiver && !m.devices && !sandboxed(policy, sel) && nodes {
        return Err("an in-band device-creating push without the sandbox".into());
    }
    if !g.dropped.is_empty() {
        return Err(format!("an in-band grant drops {:?}", g.dropped));
    }
    Ok(())
}

/// The invariants every grant keeps; the module it is for.
fn grant_common<'p>(
    policy: &'p Policy,
    g: &Grant,
    client_modules: &[String],
) -> Result<&'p Module, String> {
    if !client_modules.contains(&g.module) {
        return Err(format!("module {} is not the client's", g.module));
    }
    let m = policy
        .modules
        .get(&g.module)
        .ok_or_else(|| format!("module {} is not in the policy", g.module))?;
    match g.mode {
        Mode::Sender if !m.readable() => return Err(format!("pull from write-only {}", m.name)),
        Mode::Receiver if !m.writable() => return Err(format!("push into read-only {}", m.name)),
        _ => {}
    }
    if g.paths.is_empty() {
        return Err("grant without paths".into());
    }
    if g.mode == Mode::Receiver && g.paths.len() != 1 {
        return Err(format!("push with {} destinations", g.paths.len()));
    }
    // What the gate leaves out of the argv: only what a sender ignores,
    // only on a pull.
    for spec in &g.dropped {
        if g.mode != Mode::Sender || !rsync_doc::SENDER_IGNORES.contains(&spec.long) {
            return Err(format!("--{} dropped from a {:?} grant", spec.long, g.mode));
        }
    }
    for o in &g.opts {
        option_allowed(o.spec.long, m)?;
        if let (false, "info", Some(rsync_gate::request::OptValue::Text(v))) =
            (m.readable(), o.spec.long, &o.value)
            && info_skip2(v.as_bytes())
        {
            return Err(format!("--info={v} granted in write-only {}", m.name));
        }
    }
    for po in &g.path_opts {
        option_allowed(po.spec.long, m)?;
        let pulling = g.mode == Mode::Sender;
        match (po.role, &po.value) {
            (PathRole::Basis | PathRole::TempDir | PathRole::PartialDir, _) if pulling => {
                return Err(format!("--{} granted on a pull", po.spec.long));
            }
            (PathRole::BackupDir, v) if pulling && *v != PathValue::Dropped => {
                return Err("--backup-dir kept on a pull".into());
            }
            (PathRole::FilesFrom, PathValue::InModule(_)) if !m.readable() => {
                return Err("--files-from read from a write-only module".into());
            }
            _ => {}
        }
    }
    Ok(m)
}

/// Invariants of what the gate adds to a checked-mode grant's argv.
fn check_added(policy: &Policy, sel: &Selector, g: &Grant, m: &Module) -> Result<(), String> {
    let caps = sel.caps;
    let sandbox = sandboxed(policy, sel);
    let want = |cond: bool, what: Added| -> Result<(), String> {
        if cond != g.added.contains(&what) {
            return Err(format!("{what:?} added: {}, expected {cond}", !cond));
        }
        Ok(())
    };
    let receiver = g.mode == Mode::Receiver;
    want(receiver && !m.overwrite, Added::IgnoreExisting)?;
    want(receiver && !m.readable(), Added::WholeFile)?;
    // With specials = true, --drop-D would keep out the FIFOs and sockets
    // the module takes: only the sandbox keeps its device nodes out.
    want(
        receiver && !m.devices && !m.specials && caps.drop_d,
        Added::DropD,
    )?;
    want(m.munge_links, Added::MungeLinks)?;
    want(caps.confine_root, Added::ConfineRoot)?;
    want(receiver && !m.setuid, Added::NoSetuid)?;
    let timeouts: Vec<u32> = g
        .added
        .iter()
        .filter_map(|a| match a {
            Added::Timeout(n) => Some(*n),
            _ => None,
        })
        .collect();
    match (m.timeout, timeouts.as_slice()) {
        (0, []) => {}
        (max, [n]) if max > 0 && *n >= 1 && *n <= max => {}
        (max, got) => {
            return Err(format!(
                "--timeout added {got:?} for a module whose timeout is {max}"
            ));
        }
    }
    let has = |names: &[&str]| g.opts.iter().any(|o| names.contains(&o.spec.long));
    if receiver
        && !m.devices
        && !sandbox
        && (has(&["D", "devices"]) || (!m.specials && has(&["specials"])))
        && !g.added.contains(&Added::DropD)
    {
        return Err("a device-creating push with neither --drop-D nor the sandbox".into());
    }
    if !caps.confine_root && g.path_opts.iter().any(|p| p.role == PathRole::FilesFrom) {
        return Err("a --files-from list without --confine-root".into());
    }
    let files_from = g.path_opts.iter().any(|p| p.role == PathRole::FilesFrom);
    if files_from != (g.sources == Sources::FilesFromBase) {
        return Err(format!(
            "sources {:?} with --files-from {files_from}",
            g.sources
        ));
    }
    Ok(())
}

/// Will the kernel sandbox be around rsync?
pub fn sandboxed(policy: &Policy, sel: &Selector) -> bool {
    policy.gate.sandbox != policy::Sandbox::Off && sel.landlock
}

// ---------------------------------------------------------------------------
// Invariants of the argv
// ---------------------------------------------------------------------------

/// What an argument names, for the path check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgKind {
    /// A positional path after `--` and `.`.
    Positional,
    /// The value of a path-valued option.
    Option(PathRole),
}

fn text_ok(charset: Charset, max_len: usize, v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= max_len && v.iter().all(|&b| charset.allows(b))
}

fn caps_ok(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= 32 && v.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'.')
}

/// A check for one path an argv names.
pub type PathCheck<'a> = dyn FnMut(ArgKind, &[u8]) -> Result<(), String> + 'a;

/// Check the options of an argv, and hand each path it names to `path`.
/// `root` is the module's real root (for `--confine-root`).
pub fn check_argv(
    policy: &Policy,
    sel: &Selector,
    g: &Grant,
    args: &[&[u8]],
    root: &Path,
    path: &mut PathCheck<'_>,
) -> Result<(), String> {
    let caps = sel.caps;
    let sandbox = sandboxed(policy, sel);
    let m = policy
        .modules
        .get(&g.module)
        .ok_or_else(|| "module vanished".to_string())?;
    let mut it = args.iter().copied().peekable();
    if it.next() != Some(b"--server".as_slice()) {
        return Err("argv does not start with --server".into());
    }
    let sender = it.peek() == Some(&b"--sender".as_slice());
    if sender {
        it.next();
    }
    if sender != (g.mode == Mode::Sender) {
        return Err("--sender does not match the grant".into());
    }
    let mut seen_dashdash = false;
    let mut longs: Vec<&str> = Vec::new();
    let mut letters: Vec<u8> = Vec::new();
    let mut confine_roots = 0;
    let mut chmods = 0;
    let mut timeouts = 0;
    for a in it.by_ref() {
        if a == b"--" {
            seen_dashdash = true;
            break;
        }
        if let Some(body) = a.strip_prefix(b"--") {
            let (name, value) = match body.iter().position(|&b| b == b'=') {
                Some(i) => (
                    body.get(..i).unwrap_or_default(),
                    Some(body.get(i + 1..).unwrap_or_default()),
                ),
                None => (body, None),
            };
            let name = std::str::from_utf8(name).map_err(|_| "non-UTF-8 option name")?;
            let spec =
                options::by_long(name).ok_or_else(|| format!("unknown option --{name} in argv"))?;
            if spec.long != name {
                return Err(format!("--{name} is not the canonical spelling"));
            }
            longs.push(spec.long);
            match (spec.takes, value) {
                (Takes::Nothing, None) => {}
                (Takes::Nothing, Some(_)) => return Err(format!("--{name} with a value")),
                (Takes::Value(_), None) => return Err(format!("--{name} without a value")),
                (Takes::Value(kind), Some(v)) => {
                    if spec.long == "confine-root" {
                        confine_roots += 1;
                        if v != root.as_os_str().as_bytes() {
                            return Err(format!(
                                "--confine-root={} is not the module root",
                                String::from_utf8_lossy(v)
                            ));
                        }
                        continue;
                    }
                    if spec.long == "chmod" {
                        // Only the gate's own: stripping set-user/group-ID
                        // bits from a push.
                        chmods += 1;
                        if v != b"ug-s" || g.mode != Mode::Receiver || m.setuid {
                            return Err(format!(
                                "--chmod={} in this argv",
                                String::from_utf8_lossy(v)
                            ));
                        }
                        continue;
                    }
                    if spec.long == "timeout" {
                        timeouts += 1;
                        let n: u32 = std::str::from_utf8(v)
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .ok_or_else(|| format!("--timeout={v:?} is not a number"))?;
                        if m.timeout > 0 && (n == 0 || n > m.timeout) {
                            return Err(format!(
                                "--timeout={n} in a module whose timeout is {}",
                                m.timeout
                            ));
                        }
                    }
                    match kind {
                        Value::Path(role) => path(ArgKind::Option(role), v)?,
                        Value::Text { charset, max_len } if !text_ok(charset, max_len, v) => {
                            return Err(format!("--{name} has an unchecked value {v:?}"));
                        }
                        Value::Int { min, max } => {
                            let n: i64 =
                                std::str::from_utf8(v)
                                    .ok()
                                    .and_then(|s| s.parse().ok())
                                    .ok_or_else(|| format!("--{name}={v:?} is not an integer"))?;
                            if n < min || n > max {
                                return Err(format!("--{name}={n} out of range"));
                            }
                        }
                        Value::Size { .. }
                            if v.is_empty()
                                || !v.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'.') =>
                        {
                            return Err(format!("--{name} has an odd size {v:?}"));
                        }
                        Value::Capabilities => return Err("capabilities as a long option".into()),
                        _ => {}
                    }
                }
            }
            option_allowed(name, m)?;
            if rsync_doc::PATH_VALUED.contains(&name)
                && !matches!(spec.takes, Takes::Value(Value::Path(_)))
            {
                return Err(format!(
                    "--{name} takes a path, yet its value was not checked as one"
                ));
            }
        } else if let Some(cluster) = a.strip_prefix(b"-").filter(|c| !c.is_empty()) {
            let mut i = 0;
            while let Some(&l) = cluster.get(i) {
                i += 1;
                if l == b'e' {
                    if !caps_ok(cluster.get(i..).unwrap_or_default()) {
                        return Err(format!("bad capability string in {a:?}"));
                    }
                    break;
                }
                let name = letter_name(l).ok_or_else(|| {
                    format!(
                        "letter {:?} is not one rsync puts in a server cluster",
                        char::from(l)
                    )
                })?;
                option_allowed(name, m)?;
                letters.push(l);
            }
        } else {
            return Err(format!(
                "{:?} before the -- (a path among the options)",
                String::from_utf8_lossy(a)
            ));
        }
    }
    if !seen_dashdash {
        return Err("no -- in the argv".into());
    }
    if sender && let Some(l) = longs.iter().find(|l| rsync_doc::SENDER_IGNORES.contains(l)) {
        return Err(format!("a pull's argv carries --{l}"));
    }
    if it.next() != Some(b".".as_slice()) {
        return Err("-- is not followed by .".into());
    }
    let positional: Vec<&[u8]> = it.collect();
    if positional.is_empty() {
        return Err("no positional path after .".into());
    }
    if g.mode == Mode::Receiver && positional.len() != 1 {
        return Err(format!("push with {} destinations", positional.len()));
    }
    for p in positional {
        path(ArgKind::Positional, p)?;
    }
    // What the gate must have added.
    let has = |l: &str| longs.contains(&l);
    let receiver = g.mode == Mode::Receiver;
    if confine_roots != usize::from(caps.confine_root) {
        return Err(format!("{confine_roots} --confine-root with caps {caps:?}"));
    }
    if m.munge_links && !has("munge-links") {
        return Err("no --munge-links for a munging module".into());
    }
    if chmods != usize::from(receiver && !m.setuid) {
        return Err(format!("{chmods} --chmod=ug-s for this push or pull"));
    }
    if m.timeout > 0 && timeouts != 1 {
        return Err(format!(
            "{timeouts} --timeout in a module whose timeout is {}",
            m.timeout
        ));
    }
    if receiver && !m.overwrite && !has("ignore-existing") {
        return Err("no --ignore-existing for an overwrite = false push".into());
    }
    if receiver && !m.readable() && !has("whole-file") {
        return Err("no --whole-file for a push into a write-only module".into());
    }
    if receiver && !m.devices {
        let devices = letters.contains(&b'D') || has("devices");
        let specials = letters.contains(&b'D') || has("specials");
        if caps.drop_d && !m.specials && !has("drop-D") {
            return Err("no --drop-D for a devices = false push".into());
        }
        if !has("drop-D") && !sandbox && (devices || (!m.specials && specials)) {
            return Err("a device-creating push with neither --drop-D nor the sandbox".into());
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Invariants of the plan (real tree)
// ---------------------------------------------------------------------------

/// Where `p` really leads. `follow_last`: whether the last component is
/// followed if it is a symlink. Missing components are appended as they are.
pub fn physical(p: &Path, follow_last: bool) -> Result<PathBuf, String> {
    let comps: Vec<&OsStr> = p
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    let mut cur = PathBuf::from("/");
    for (i, c) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        let next = cur.join(c);
        match std::fs::symlink_metadata(&next) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut out = next;
                for rest in comps.iter().skip(i + 1) {
                    out.push(rest);
                }
                return Ok(out);
            }
            Err(e)
                if e.raw_os_error() == Some(nix::errno::Errno::ENOTDIR as i32)
                    || e.raw_os_error() == Some(nix::errno::Errno::ENAMETOOLONG as i32) =>
            {
                // Below a non-directory, or a name too long: rsync will fail
                // there; nothing is reached.
                let mut out = next;
                for rest in comps.iter().skip(i + 1) {
                    out.push(rest);
                }
                return Ok(out);
            }
            Err(e) => return Err(format!("{}: {e}", next.display())),
            Ok(md) if md.file_type().is_symlink() => {
                if last && !follow_last {
                    return Ok(next);
                }
                cur = std::fs::canonicalize(&next)
                    .map_err(|e| format!("{} cannot be followed: {e}", next.display()))?;
            }
            Ok(_) => cur = next,
        }
    }
    Ok(cur)
}

/// Join `rest` (bytes after a pinned prefix) to `real`, refusing `..`.
fn join_rest(real: &Path, rest: &[u8]) -> Result<PathBuf, String> {
    let mut p = real.to_path_buf();
    for c in rest.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(format!("'..' in a path handed to rsync: {rest:?}")),
            n => p.push(OsStr::from_bytes(n)),
        }
    }
    Ok(p)
}

/// The pins of a plan: `/proc/self/fd/N` and where the descriptor really is.
pub fn plan_pins(plan: &ExecPlan) -> Result<Vec<(String, PathBuf)>, String> {
    let mut pins = Vec::new();
    for fd in &plan.keep_fds {
        let proc = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let real = std::fs::read_link(&proc).map_err(|e| format!("{proc}: {e}"))?;
        let note = format!("pinned {proc} = {}", real.display());
        if !plan.notes.contains(&note) {
            return Err(format!(
                "descriptor {proc} really is {} but the notes say {:?}",
                real.display(),
                plan.notes
            ));
        }
        pins.push((proc, real));
    }
    // Directories the exec stage will create: until then the reserved
    // descriptor holds /dev/null, and the directory-to-be must be inside.
    for m in &plan.mkdirs {
        let proc = format!("/proc/self/fd/{}", m.slot.as_raw_fd());
        let now = std::fs::read_link(&proc).map_err(|e| format!("{proc}: {e}"))?;
        if now != Path::new("/dev/null") {
            return Err(format!(
                "reserved {proc} holds {} before exec",
                now.display()
            ));
        }
        pins.push((proc, m.expect.clone()));
    }
    Ok(pins)
}

/// Check one path argument of a plan against the module's real root.
pub fn check_path_arg(
    g: &Grant,
    m: &Module,
    root: &Path,
    pins: &[(String, PathBuf)],
    kind: ArgKind,
    arg: &[u8],
) -> Result<(), String> {
    let shown = || String::from_utf8_lossy(arg).into_owned();
    if kind == ArgKind::Option(PathRole::FilesFrom) && arg == b"-" {
        return Ok(());
    }
    let Some(after) = arg.strip_prefix(b"/proc/self/fd/") else {
        if kind == ArgKind::Option(PathRole::PartialDir) && !arg.starts_with(b"/") {
            // A per-directory name: must stay below each directory.
            if arg.is_empty() || arg.split(|&b| b == b'/').any(|c| c == b"..") {
                return Err(format!("--partial-dir={} climbs", shown()));
            }
            return Ok(());
        }
        return Err(format!("{kind:?} {} is not a pinned path", shown()));
    };
    let digits = after.iter().take_while(|b| b.is_ascii_digit()).count();
    let rest = after.get(digits..).unwrap_or_default();
    if digits == 0 || !(rest.is_empty() || rest.starts_with(b"/")) {
        return Err(format!("malformed descriptor path {}", shown()));
    }
    let proc_len = arg.len() - rest.len();
    let proc = String::from_utf8_lossy(arg.get(..proc_len).unwrap_or_default()).into_owned();
    let (_, real) = pins
        .iter()
        .find(|(p, _)| *p == proc)
        .ok_or_else(|| format!("{} names {proc}, which is not a pinned descriptor", shown()))?;
    if kind == ArgKind::Option(PathRole::FilesFrom) {
        if !rest.is_empty() {
            return Err(format!("--files-from={} is not the held file", shown()));
        }
        let md = std::fs::metadata(real).map_err(|e| format!("{}: {e}", real.display()))?;
        if !md.is_file() {
            return Err(format!("--files-from holds a non-file {}", real.display()));
        }
    }
    let lexical = join_rest(real, rest)?;
    if real == Path::new("/") {
        // The -R anchor for an absolute path: "/" then "/./" then the
        // module's path as the policy spells it.
        if !(g.sources == Sources::Relative
            && g.mode == Mode::Sender
            && kind == ArgKind::Positional)
        {
            return Err(format!("{} anchored at / outside a -R pull", shown()));
        }
        if !rest.starts_with(b"/./") {
            return Err(format!("{} anchored at / without /./", shown()));
        }
        if !lexical.starts_with(&m.path) {
            return Err(format!("{} anchored at / outside the module path", shown()));
        }
    } else if !lexical.starts_with(root) {
        return Err(format!(
            "{} is {} outside the root {}",
            shown(),
            lexical.display(),
            root.display()
        ));
    }
    if kind == ArgKind::Positional {
        check_nothing_walked(g, real, rest).map_err(|e| format!("{}: {e}", shown()))?;
    }
    let follow_last = match kind {
        ArgKind::Positional => {
            g.mode == Mode::Receiver
                || rest.is_empty()
                || rest.ends_with(b"/")
                || rest.ends_with(b"/.")
        }
        ArgKind::Option(_) => true,
    };
    // The module's own path (a -R pull of an absolute path naming the
    // module itself) counts as its root even when that path is a symlink.
    let phys = physical(&lexical, follow_last || lexical == m.path)?;
    if !phys.starts_with(root) {
        return Err(format!(
            "{} leads to {} outside the root {}",
            shown(),
            phys.display(),
            root.display()
        ));
    }
    Ok(())
}

/// What rsync looks up by name after a pin must be there already: a push
/// destination is its held directory, or one name below it (a file, or
/// what the transfer makes); a pull source walks only existing names (its
/// last one may be missing when rsync is told to skip missing sources, and
/// is then not followed).
fn check_nothing_walked(g: &Grant, real: &Path, rest: &[u8]) -> Result<(), String> {
    let names: Vec<&[u8]> = rest
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect();
    if g.mode == Mode::Receiver {
        if names.len() > 1 {
            return Err("a push destination walks directories by name below its pin".into());
        }
        return Ok(());
    }
    let missing_ok = g
        .opts
        .iter()
        .any(|o| ["ignore-missing-args", "delete-missing-args"].contains(&o.spec.long));
    let followed = rest.ends_with(b"/") || rest.ends_with(b"/.");
    let mut p = real.to_path_buf();
    for (i, n) in names.iter().enumerate() {
        p.push(OsStr::from_bytes(n));
        let last = i + 1 == names.len();
        if std::fs::symlink_metadata(&p).is_err() && !(last && missing_ok && !followed) {
            return Err(format!(
                "names {} below its pin, which does not exist",
                p.display()
            ));
        }
    }
    Ok(())
}

/// Every invariant of a checked plan.
pub fn check_plan(
    policy: &Policy,
    sel: &Selector,
    g: &Grant,
    plan: &ExecPlan,
) -> Result<(), String> {
    let m = policy
        .modules
        .get(&g.module)
        .ok_or_else(|| "module vanished".to_string())?;
    let root = std::fs::canonicalize(&m.path).map_err(|e| format!("module root: {e}"))?;
    if plan.cwd != root {
        return Err(format!("cwd {} is not the root", plan.cwd.display()));
    }
    if plan.program != policy.gate.rsync {
        return Err("program is not the policy's rsync".into());
    }
    for (k, _) in &plan.env {
        let k = k.to_string_lossy();
        if !["PATH", "HOME", "USER", "LOGNAME", "SSH_CONNECTION"].contains(&k.as_ref()) {
            return Err(format!(
                "unexpected variable {k} in the child's environment"
            ));
        }
    }
    let pins = plan_pins(plan)?;
    for (proc, real) in &pins {
        // A pin is inside the root, or an ancestor of it (the `/` anchor of
        // -R absolute paths, or the root's parent when the root itself is
        // transferred); every path through it is checked below.
        if !real.starts_with(&root) && !root.starts_with(real) {
            return Err(format!("{proc} pins {} outside the root", real.display()));
        }
    }
    let args: Vec<&[u8]> = plan.args.iter().map(|a| a.as_bytes()).collect();
    check_argv(policy, sel, g, &args, &root, &mut |kind, arg| {
        check_path_arg(g, m, &root, &pins, kind, arg)
    })?;
    for mk in &plan.mkdirs {
        if !mk.expect.starts_with(&root) {
            return Err(format!(
                "would create {} outside the root",
                mk.expect.display()
            ));
        }
    }
    Ok(())
}

/// Argv invariants without a filesystem: `plan::checked::args` over a
/// synthetic confinement.
pub fn check_lexical_argv(policy: &Policy, sel: &Selector, g: &Grant) -> Result<(), String> {
    let Some(m) = policy.modules.get(&g.module) else {
        return Err("module vanished".into());
    };
    let confined = Confined {
        root: m.path.clone(),
        args: g
            .paths
            .iter()
            .enumerate()
            .map(|(i, _)| format!("/proc/self/fd/{}/x", i + 3).into())
            .collect(),
        ..Default::default()
    };
    let args = plan::checked::args(g, &confined);
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    check_argv(policy, sel, g, &args, &m.path, &mut |_, _| Ok(()))
}

/// Number of open descriptors of this process, when it is the only thread
/// that could open or close any (the fuzz targets; not a test binary
/// running tests in parallel, where the count says nothing).
pub fn open_fds() -> Option<usize> {
    let threads = std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count());
    (threads == 1).then(|| std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count()))
}

/// The directory of `module` below the tree's `srv/`.
pub fn module_dir(module: &str) -> &str {
    MODULE_DIRS
        .iter()
        .find(|(m, _)| *m == module)
        .map_or(module, |(_, d)| d)
}

/// The lexical account (no tree: nothing is resolved).
fn lexical_account() -> Account {
    Account {
        uid: nix::unistd::geteuid().as_raw(),
        name: "oracle".into(),
        home: Some(PathBuf::from("/nonexistent-oracle-home")),
    }
}

/// What [`check_one`] saw.
#[derive(Debug)]
pub struct Checked {
    pub decision: Decision,
    /// The whole front half produced a plan to run (with a tree only).
    pub planned: bool,
}

/// Run one command through the front half (with a tree: all of it; without:
/// the decision stage) and check every invariant.
pub fn check_one(
    policy: &Policy,
    tree: Option<&Tree>,
    sel: &Selector,
    cmd: &[u8],
) -> Result<Checked, String> {
    let account = tree.map_or_else(lexical_account, |t| t.account.clone());
    let conn = sel.connection();
    let inputs = sel.inputs(policy, &account, conn.as_ref());
    let parsed = rsync_gate::request::parse_command(cmd);
    if parsed != rsync_gate::request::parse_command(cmd) {
        return Err("parse is not deterministic".into());
    }
    let decision = evaluate::decision(&inputs, parsed.as_ref());
    if decision != evaluate::decision(&inputs, parsed.as_ref()) {
        return Err("decide is not deterministic".into());
    }
    check_decision(policy, sel, parsed.as_ref(), &decision)?;
    let unplanned = |decision| {
        Ok(Checked {
            decision,
            planned: false,
        })
    };
    let Decision::Checked(g) = &decision else {
        return unplanned(decision);
    };
    check_lexical_argv(policy, sel, g)?;
    if tree.is_none() {
        return unplanned(decision);
    }
    let before = open_fds();
    let mut planned = false;
    match evaluate::evaluate(&inputs, parsed.as_ref()) {
        Evaluation::Run(run) => {
            if run.grant.as_ref() != Some(g) {
                return Err("evaluate planned another grant than it decided".into());
            }
            check_plan(policy, sel, g, &run.plan)
                .map_err(|e| format!("{e}\n argv: {:?}", run.plan.argv_shown()))?;
            planned = true;
        }
        Evaluation::Refused(r) => {
            let r = r.reason;
            if message_checked(&r) {
                check_message(&r)?;
            }
            if matches!(r, DenyReason::Internal(_) | DenyReason::Race(_)) {
                return Err(format!("confinement failed internally: {r:?}"));
            }
        }
        other => return Err(format!("a checked grant evaluated to {other:?}")),
    }
    let after = open_fds();
    if let (Some(before), Some(after)) = (before, after)
        && after != before
    {
        return Err(format!(
            "descriptors leaked: {before} before, {after} after"
        ));
    }
    Ok(Checked { decision, planned })
}

/// One fuzz input: the selector byte, then the command.
pub fn run_one(policy: &Policy, tree: Option<&Tree>, data: &[u8]) -> Result<(), String> {
    let (sel, cmd) = select(data);
    check_one(policy, tree, &sel, cmd).map(|_| ())
}

// ---------------------------------------------------------------------------
// In-band (host::) requests: what the daemon hands the pre-xfer hook
// ---------------------------------------------------------------------------

/// The module an in-band fuzz input names: one of the policy's, or one it
/// does not have.
pub fn inband_module(policy: &Policy, b: u8) -> String {
    let mut names: Vec<&str> = policy.modules.keys().map(String::as_str).collect();
    names.push("nosuch");
    let i = usize::from(b) % names.len();
    names.get(i).copied().unwrap_or("nosuch").to_string()
}

/// The daemon's argument list for an in-band fuzz input: `rsyncd`,
/// `--server`, `--sender` when `sender`, then `rest` split at NUL bytes.
pub fn inband_argv(sender: bool, rest: &[u8]) -> Vec<Vec<u8>> {
    let mut argv = vec![b"rsyncd".to_vec(), b"--server".to_vec()];
    if sender {
        argv.push(b"--sender".to_vec());
    }
    argv.extend(rest.split(|&b| b == 0).map(<[u8]>::to_vec));
    argv
}

/// Parse an in-band request as the hook does, decide on it, and check:
/// no panic, determinism, rsync's reading of the words (a path that begins
/// with `-` only after a `--`: rsync's option parser takes options anywhere
/// else), paths inside the named module, and the grant's invariants (the
/// client's module, from an allowed address, in a direction the module
/// allows, with no option it forbids).
pub fn check_inband(
    policy: &Policy,
    sel: &Selector,
    module: &str,
    argv: &[Vec<u8>],
) -> Result<Decision, String> {
    use rsync_gate::request::inband;
    let parsed = inband::parse(module, argv).map(Request::InBand);
    if parsed != inband::parse(module, argv).map(Request::InBand) {
        return Err("the in-band parse is not deterministic".into());
    }
    let after_server = argv.get(2..).unwrap_or_default();
    if parsed.is_ok()
        && let Some(w) = option_after_dot(after_server)
    {
        return Err(format!(
            "accepted {:?} after the '.': rsync reads it as an option",
            String::from_utf8_lossy(w)
        ));
    }
    if let Ok(Request::InBand(ib)) = &parsed {
        if ib.module != module {
            return Err(format!("parsed module {} for {module}", ib.module));
        }
        let prefix = format!("{module}/");
        if let Some(p) = ib
            .args
            .paths
            .iter()
            .find(|p| !p.bytes.starts_with(prefix.as_bytes()))
        {
            return Err(format!("path {:?} outside module {module}", p.lossy()));
        }
        if ib.args.secluded {
            return Err("an in-band request is never secluded".into());
        }
    }
    let account = lexical_account();
    let conn = sel.connection();
    let inputs = sel.inputs(policy, &account, conn.as_ref());
    let decision = evaluate::decision(&inputs, parsed.as_ref());
    if decision != evaluate::decision(&inputs, parsed.as_ref()) {
        return Err("decide is not deterministic".into());
    }
    match &decision {
        Decision::Deny(r) => {
            if message_checked(r) {
                check_message(r)?;
            }
        }
        Decision::InBand(g) => {
            let Some(c) = policy.clients.get(sel.client) else {
                return Err("in-band grant for an unknown client".into());
            };
            if g.module != module {
                return Err(format!("in-band grant for {} in module {module}", g.module));
            }
            if !c.from.is_empty()
                && !sel.conn.is_some_and(|conn| {
                    c.from
                        .iter()
                        .any(|n| cidr_contains(&n.to_string(), conn.addr))
                })
            {
                return Err("in-band grant from outside the client's `from`".into());
            }
            let Ok(Request::InBand(ib)) = &parsed else {
                return Err(format!("in-band grant for {parsed:?}"));
            };
            if ib.args.sender != (g.mode == Mode::Sender) {
                return Err("in-band grant mode differs from --sender".into());
            }
            check_inband_grant(policy, sel, g, c.modules.as_slice())?;
        }
        other => return Err(format!("an in-band request decided as {other:?}")),
    }
    Ok(decision)
}

/// The first word after the `.` that rsync's option parser would read as
/// an option (it takes options anywhere until a `--`, which it removes),
/// or None. Only when the word before the first `.` cannot be an option
/// waiting for its value (then that `.` might be the value, and the words
/// after it options): `--name` without `=`, or a lone `-X` that is not a
/// cluster letter.
fn option_after_dot(words: &[Vec<u8>]) -> Option<&[u8]> {
    let dot = words.iter().position(|w| w.as_slice() == b".")?;
    if let Some(prev) = dot.checked_sub(1).and_then(|i| words.get(i)) {
        let long_waiting = prev.starts_with(b"--") && prev.len() > 2 && !prev.contains(&b'=');
        let short_waiting = prev.len() == 2
            && prev.first() == Some(&b'-')
            && prev.get(1).is_some_and(|l| letter_name(*l).is_none());
        if long_waiting || short_waiting {
            return None;
        }
    }
    let mut ended = words.iter().take(dot).any(|w| w.as_slice() == b"--");
    for w in words.iter().skip(dot + 1) {
        if w.as_slice() == b"--" {
            ended = true;
        } else if !ended && w.first() == Some(&b'-') {
            return Some(w);
        }
    }
    None
}

/// One in-band fuzz input: the selector byte, a module byte, a flags byte
/// (bit 0: `--sender`), then the arguments after `--server [--sender]`,
/// separated by NUL bytes.
pub fn run_inband(policy: &Policy, data: &[u8]) -> Result<(), String> {
    let (sel, rest) = select(data);
    let (m, rest) = rest.split_first().map_or((0, rest), |(m, r)| (*m, r));
    let (flags, rest) = rest.split_first().map_or((0, rest), |(f, r)| (*f, r));
    let module = inband_module(policy, m);
    let argv = inband_argv(flags & 1 == 1, rest);
    check_inband(policy, &sel, &module, &argv).map(|_| ())
}
