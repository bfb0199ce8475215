//! The hostile-input corpus: every case in `tests/data/corpus.toml` (an
//! `SSH_ORIGINAL_COMMAND` and the environment around it) runs through the
//! gate binary with the recording stand-in rsync, and its outcome is compared
//! with the expectation written in the file.
//!
//! For every case:
//! - stdout stays empty;
//! - `deny`: non-zero exit, exactly one stderr line, starting
//!   `rsync-gate: denied: `, with no raw control bytes and no server path the
//!   client did not spell itself; one new audit decision record whose
//!   `reason.code` is the expected code; and the stand-in rsync did not run;
//! - `allow`: exit 0, nothing on stderr (but the dynamic loader's own
//!   complaint about a bogus `LD_PRELOAD`/`LD_AUDIT`, once, for the gate
//!   itself); one new audit record that allows; the stand-in ran as the
//!   policy's rsync with exactly the expected argv (each `/proc/self/fd/N`
//!   mapped back to what it pinned) and an environment holding only what the
//!   gate builds (none of the case's hostile variables);
//! - `probe`: exit 0, nothing on stderr, an `allow`/`probe` audit record, and
//!   rsync did not run.
//!
//! Cases marked `in_process` cannot travel through an environment variable
//! (a NUL byte, or more than the kernel's 128 KiB per environment string):
//! they go through the library's parser, decision and planner instead.
//!
//! The server tree (`srv/` and `outside/`) must be unchanged after the whole
//! corpus, and no program from a hostile `PATH` may have run.
//!
//! Template syntax in `command`, `env` values, `stdin` and `argv`:
//! `{srv}` (the modules directory; `{srv}/MODULE` is the module's own
//! directory, named otherwise), `{root}` (the world root), `{fd:PATH}` (in
//! `argv`: a held descriptor holding PATH, i.e. `/proc/self/fd/N` in the
//! argv rsync got, N being a descriptor it inherited on PATH),
//! `{repeat:N:TEXT}` (TEXT N times; TEXT may nest repeats but holds no `}`),
//! and in `argv` only a leading `{times:N}` (the element N times). With
//! `pct = true`, `%XX` is then decoded to the byte 0xXX (write `%` as `%25`)
//! so a case can hold bytes that are not UTF-8.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde::Deserialize;

use rsync_gate::deny::DenyReason;
use rsync_gate::host::{self, Account};
use rsync_gate::pipeline::evaluate::{self, Evaluation, Inputs};
use rsync_gate::policy::{self, Policy};
use rsync_gate::request::{self, conn::Connection};

use crate::common;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/corpus.toml");

/// Cases marked `known_issue` that the maintainer has been told about and
/// not yet decided: their failure is reported but does not fail the test.
/// A listed case that starts passing fails the test until its marker and
/// this entry are removed.
const ACCEPTED_KNOWN_ISSUES: &[&str] = &[];

/// `SSH_CONNECTION` as [`common::World::serve`] sets it.
const DEFAULT_CONNECTION: &str = "127.0.0.1 40000 127.0.0.1 22";

/// Variables the gate itself puts into rsync's environment (in daemon
/// mode the two `RSYNC_GATE_*` ones for its hooks, and `RSYNC_SHELL`, which
/// names the gate itself as the program rsync runs its hooks with).
const GATE_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SSH_CONNECTION",
    "RSYNC_GATE_SESSION",
    "RSYNC_GATE_SANDBOXED",
    "RSYNC_GATE_ROOT_ALIAS",
    "RSYNC_SHELL",
];

/// Variables `/bin/sh` adds by itself when it runs the stand-in.
const SHELL_ENV: &[&str] = &["PWD", "OLDPWD", "SHLVL", "_"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Corpus {
    case: Vec<Case>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Expect {
    Deny,
    Allow,
    Probe,
    /// A trigger client's request fires its trigger.
    Trigger,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    category: String,
    #[serde(default = "default_client")]
    client: String,
    /// `SSH_ORIGINAL_COMMAND`; absent only with `no_command = true`.
    command: Option<String>,
    /// No `SSH_ORIGINAL_COMMAND` at all (an interactive login).
    #[serde(default)]
    no_command: bool,
    /// Decode `%XX` in command, env values, stdin and argv.
    #[serde(default)]
    pct: bool,
    /// The expanded command must be exactly this long (limit cases).
    command_len: Option<usize>,
    /// Extra environment for the gate.
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Variables removed from the gate's environment.
    #[serde(default)]
    env_remove: Vec<String>,
    /// Bytes on the gate's stdin.
    stdin: Option<String>,
    /// Run through the library instead of the binary (see the module doc).
    #[serde(default)]
    in_process: bool,
    expect: Expect,
    code: Option<String>,
    message_contains: Option<String>,
    /// The expected argv after argv[0], resolved.
    argv: Option<Vec<String>>,
    /// Exact values in the stand-in's environment.
    #[serde(default)]
    env_exact: BTreeMap<String, String>,
    /// Variables that must be absent from the stand-in's environment.
    #[serde(default)]
    env_absent: Vec<String>,
    /// Files to inspect after the case ran (the generated daemon config).
    #[serde(default)]
    files: Vec<FileCheck>,
    /// The gate disagrees with this expectation (see ACCEPTED_KNOWN_ISSUES).
    known_issue: Option<String>,
    /// The case needs a feature that is not built (or not committed) yet.
    /// Without `pending_code`, the expectation records today's behaviour
    /// and will change when the feature lands.
    pending: Option<String>,
    /// With `pending`: a denial with this code is accepted (and reported as
    /// pending) until the feature is built; any other outcome must match
    /// the expectation, which is the feature's.
    pending_code: Option<String>,
    /// Free text.
    #[allow(dead_code)]
    note: Option<String>,
}

/// What a file must and must not hold after a case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCheck {
    path: String,
    #[serde(default)]
    contains: Vec<String>,
    #[serde(default)]
    lacks: Vec<String>,
}

fn default_client() -> String {
    "c".into()
}

/// Placeholder values.
struct Vars {
    srv: Vec<u8>,
    root: Vec<u8>,
}

/// Expand `{srv}`, `{root}`, `{fd:PATH}` (a held descriptor holding PATH,
/// as [`resolve_fds`] shows it: `<fd:PATH>`) and `{repeat:N:TEXT}`; inside
/// a repeat or fd, stop at its closing `}` and return what follows.
fn expand_until<'a>(
    mut s: &'a [u8],
    v: &Vars,
    nested: bool,
) -> Result<(Vec<u8>, &'a [u8]), String> {
    let mut out = Vec::new();
    loop {
        let Some((&first, tail)) = s.split_first() else {
            if nested {
                return Err("unterminated {repeat:".into());
            }
            return Ok((out, s));
        };
        if nested && first == b'}' {
            return Ok((out, tail));
        }
        if let Some(r) = s.strip_prefix(b"{srv}") {
            out.extend_from_slice(&v.srv);
            s = r;
        } else if let Some(r) = s.strip_prefix(b"{root}") {
            out.extend_from_slice(&v.root);
            s = r;
        } else if let Some(r) = s.strip_prefix(b"{fd:") {
            // What a held descriptor stands for, as resolve_fds shows it.
            let (body, after) = expand_until(r, v, true)?;
            out.extend_from_slice(b"<fd:");
            out.extend_from_slice(&body);
            out.push(b'>');
            s = after;
        } else if let Some(r) = s.strip_prefix(b"{repeat:") {
            let colon = r
                .iter()
                .position(|&c| c == b':')
                .ok_or("{repeat: without a count")?;
            let n: usize = std::str::from_utf8(&r[..colon])
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or("bad {repeat: count")?;
            let (body, after) = expand_until(&r[colon + 1..], v, true)?;
            for _ in 0..n {
                out.extend_from_slice(&body);
            }
            s = after;
        } else {
            out.push(first);
            s = tail;
        }
    }
}

fn pct_decode(b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad %-escape at byte {i}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    Ok(out)
}

fn expand(s: &str, v: &Vars, pct: bool) -> Result<Vec<u8>, String> {
    // `{srv}/www` is module www's directory, whatever it is called.
    let s = crate::common::map_srv_paths(s, "{srv}");
    let (out, _) = expand_until(s.as_bytes(), v, false)?;
    if !pct {
        return Ok(out);
    }
    pct_decode(&out)
}

/// Expand one expected argv element, with its optional `{times:N}`.
fn expand_argv(s: &str, v: &Vars, pct: bool) -> Result<Vec<Vec<u8>>, String> {
    let Some(rest) = s.strip_prefix("{times:") else {
        return Ok(vec![expand(s, v, pct)?]);
    };
    let (n, body) = rest.split_once('}').ok_or("unterminated {times:")?;
    let n: usize = n.parse().map_err(|_| "bad {times: count")?;
    let one = expand(body, v, pct)?;
    Ok(vec![one; n])
}

/// A case with its templates expanded.
#[derive(Debug)]
struct Prepared {
    command: Option<Vec<u8>>,
    env: Vec<(String, Vec<u8>)>,
    stdin: Vec<u8>,
    argv: Option<Vec<Vec<u8>>>,
    env_exact: Vec<(String, Vec<u8>)>,
}

fn prepare(c: &Case, v: &Vars) -> Result<Prepared, String> {
    let command = c
        .command
        .as_deref()
        .map(|s| expand(s, v, c.pct))
        .transpose()?;
    let mut env = Vec::new();
    for (k, val) in &c.env {
        env.push((k.clone(), expand(val, v, c.pct)?));
    }
    let stdin = match &c.stdin {
        Some(s) => expand(s, v, c.pct)?,
        None => Vec::new(),
    };
    let argv = match &c.argv {
        Some(list) => {
            let mut out = Vec::new();
            for a in list {
                out.extend(expand_argv(a, v, c.pct)?);
            }
            Some(out)
        }
        None => None,
    };
    let mut env_exact = Vec::new();
    for (k, val) in &c.env_exact {
        env_exact.push((k.clone(), expand(val, v, c.pct)?));
    }
    Ok(Prepared {
        command,
        env,
        stdin,
        argv,
        env_exact,
    })
}

/// Every reason code the gate can give (to catch typos in the corpus).
fn known_codes() -> BTreeSet<&'static str> {
    DenyReason::examples()
        .iter()
        .map(DenyReason::code)
        .collect()
}

/// Check the file's own consistency before running anything.
fn validate(cases: &[Case]) -> Vec<String> {
    // Every path an allowed request hands rsync goes through a held
    // descriptor: the expectation must say so.
    let mut unpinned = Vec::new();
    for c in cases.iter().filter(|c| c.expect == Expect::Allow) {
        let Some(argv) = &c.argv else { continue };
        let Some(dot) = argv.iter().position(|a| a == ".") else {
            continue;
        };
        if argv.get(dot - 1).map(String::as_str) != Some("--") {
            continue;
        }
        for a in &argv[dot + 1..] {
            if !a.contains("{fd:") {
                unpinned.push(format!("{}: argv path {a} is not {{fd:...}}", c.name));
            }
        }
    }
    let codes = known_codes();
    let mut problems = unpinned;
    let mut names = BTreeSet::new();
    for c in cases {
        let mut bad = |why: &str| problems.push(format!("{}: {why}", c.name));
        if !names.insert(c.name.as_str()) {
            bad("duplicate name");
        }
        if c.command.is_some() == c.no_command {
            bad("exactly one of `command` and `no_command = true` is needed");
        }
        match c.expect {
            Expect::Deny => {
                match c.code.as_deref() {
                    Some(code) if codes.contains(code) => {}
                    Some(code) => bad(&format!("unknown reason code {code:?}")),
                    None => bad("a denial needs a `code`"),
                }
                if c.argv.is_some() || !c.env_exact.is_empty() || !c.env_absent.is_empty() {
                    bad("a denial has no argv or environment to check");
                }
            }
            Expect::Allow => {
                if c.argv.is_none() {
                    bad("an allowed case needs its exact `argv`");
                }
                if c.code.is_some() || c.message_contains.is_some() {
                    bad("an allowed case has no reason");
                }
            }
            Expect::Probe => {
                if c.argv.is_some() || c.code.is_some() {
                    bad("a probe runs nothing and has no reason");
                }
            }
            Expect::Trigger => {
                if c.argv.is_none() {
                    bad("a trigger case needs the job's exact `argv` (all of it)");
                }
                if c.code.is_some() || !c.env_exact.is_empty() || !c.env_absent.is_empty() {
                    bad("a trigger case has no reason and no stand-in environment");
                }
            }
        }
        if c.in_process
            && (!c.env.is_empty()
                || !c.env_remove.is_empty()
                || c.stdin.is_some()
                || !c.files.is_empty())
        {
            bad("in-process cases take no environment or stdin and write no files");
        }
        if c.known_issue.is_some() && c.pending.is_some() {
            bad("a case is either a known issue or pending, not both");
        }
        match (&c.pending, c.pending_code.as_deref()) {
            (None, Some(_)) => bad("pending_code needs pending"),
            (_, Some(code)) if !codes.contains(code) => {
                bad(&format!("unknown pending_code {code:?}"));
            }
            _ => {}
        }
    }
    for n in ACCEPTED_KNOWN_ISSUES {
        match cases.iter().find(|c| c.name == *n) {
            Some(c) if c.known_issue.is_some() => {}
            _ => problems.push(format!(
                "ACCEPTED_KNOWN_ISSUES lists {n}, which has no known_issue"
            )),
        }
    }
    problems
}

// ---------------------------------------------------------------------------
// The world
// ---------------------------------------------------------------------------

/// The corpus world (module directories named as [`common::MODULE_DIRS`]
/// says: `www` in `srv/public-tree`, and so on; `links` in `srv/links`):
/// - `www` read-only: the sample tree, a file list, and symlinks leading out
///   (`out` -> outside/, `sub/leak` -> outside/secret.txt, `pw` ->
///   /etc/passwd, `secret-link` -> the ungranted module, `dotdot` -> ..),
///   a self loop, a dangling link, and a FIFO (`sub/deeper/fifo`);
/// - `www2`: a directory beside `www` that is not a module;
/// - `backup` writable with delete: `prev/`, `tmp/`, `bk/`, `file.txt`,
///   `escape` -> outside/, `escape-file` -> outside/secret.txt, `inlink` ->
///   prev;
/// - `up` writable without delete: `sub/`, `outlink` -> outside/, and
///   `huge/`: 900 files with 240-byte names (ten wildcards over them
///   expand beyond what the gate passes to a program), and `shared/`
///   writable by anyone (mode 777: a local user could put a link there at
///   any time) holding `g` and `d/f`;
/// - `drop` write-only, no overwrite: `list`, `alice/notes.txt`;
/// - `handin` write-only, overwrite allowed: `notes.txt`, `.partial/`;
/// - `links` read-only with follow_links and devices: `file.txt`, `inside`
///   -> file.txt, `out` -> outside/;
/// - `secret` not granted to anyone; `outside` not a module;
/// - `evil/`: a hostile PATH directory whose programs leave a marker.
///
/// Clients: `c` (www, backup, up, drop, handin, links), `fenced` (www, from
/// 192.0.2.0/24), `trig` (trigger `t`: `/bin/true --fixed` taking the
/// words `sync:all`, `sync:stage1`, `sync:archive:*`), `trig_any` (trigger
/// `any`: `/bin/true`, words recorded and ignored).
fn corpus_world() -> (common::World, PathBuf) {
    let mut w = common::World::new();
    let out = w.use_recorder();
    let outside = w.root.join("outside");
    std::fs::create_dir(&outside).expect("mkdir outside");
    common::set_mode(&outside, 0o755);
    std::fs::write(outside.join("secret.txt"), "top secret\n").expect("write");

    let link = |target: &str, at: &Path| std::os::unix::fs::symlink(target, at).expect("symlink");
    let outside_s = outside.to_string_lossy().into_owned();

    let www = w.module_dir("www");
    common::sample_tree(&www);
    std::fs::write(www.join("list"), "a.txt\nsub/s.txt\n").expect("write");
    link(&outside_s, &www.join("out"));
    link("../../../outside/secret.txt", &www.join("sub/leak"));
    link("/etc/passwd", &www.join("pw"));
    link(
        &format!("../{}", common::module_dir_name("secret")),
        &www.join("secret-link"),
    );
    link("..", &www.join("dotdot"));
    link("loop", &www.join("loop"));
    link("nonexistent", &www.join("dangling"));
    nix::unistd::mkfifo(
        &www.join("sub/deeper/fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .expect("mkfifo");

    let www2 = w.module_dir("www2");
    std::fs::write(www2.join("x"), "not a module\n").expect("write");

    let backup = w.module_dir("backup");
    for d in ["prev", "tmp", "bk"] {
        std::fs::create_dir(backup.join(d)).expect("mkdir");
        common::set_mode(&backup.join(d), 0o755);
    }
    std::fs::write(backup.join("prev/f"), "previous\n").expect("write");
    std::fs::write(backup.join("file.txt"), "backed up\n").expect("write");
    link(&outside_s, &backup.join("escape"));
    link(
        &format!("{outside_s}/secret.txt"),
        &backup.join("escape-file"),
    );
    link("prev", &backup.join("inlink"));

    let up = w.module_dir("up");
    std::fs::create_dir(up.join("sub")).expect("mkdir");
    common::set_mode(&up.join("sub"), 0o755);
    link(&outside_s, &up.join("outlink"));
    let huge = up.join("huge");
    std::fs::create_dir(&huge).expect("mkdir");
    common::set_mode(&huge, 0o755);
    for i in 0..900 {
        std::fs::write(huge.join(format!("{i:0>240}")), "").expect("write");
    }
    std::fs::create_dir_all(up.join("shared/d")).expect("mkdir");
    common::set_mode(&up.join("shared"), 0o777);
    common::set_mode(&up.join("shared/d"), 0o755);
    std::fs::write(up.join("shared/d/f"), "f\n").expect("write");
    std::fs::write(up.join("shared/g"), "g\n").expect("write");

    let drop = w.module_dir("drop");
    std::fs::write(drop.join("list"), "x\n").expect("write");
    std::fs::create_dir(drop.join("alice")).expect("mkdir");
    common::set_mode(&drop.join("alice"), 0o755);
    std::fs::write(drop.join("alice/notes.txt"), "alice's\n").expect("write");

    let handin = w.module_dir("handin");
    std::fs::write(handin.join("notes.txt"), "someone's\n").expect("write");
    std::fs::create_dir(handin.join(".partial")).expect("mkdir");
    common::set_mode(&handin.join(".partial"), 0o755);

    let links = w.module_dir("links");
    std::fs::write(links.join("file.txt"), "linked\n").expect("write");
    link("file.txt", &links.join("inside"));
    link(&outside_s, &links.join("out"));

    let secret = w.module_dir("secret");
    std::fs::write(secret.join("s"), "s\n").expect("write");

    // A hostile PATH: any of these running leaves a marker.
    let evil = w.root.join("evil");
    std::fs::create_dir(&evil).expect("mkdir evil");
    common::set_mode(&evil, 0o755);
    let marker = w.root.join("evil-ran");
    for prog in ["rsync", "env", "find", "sh", "pwd", "printf"] {
        common::install_exec(
            &evil.join(prog),
            &format!("#!/bin/sh\necho {prog} >> '{}'\nexit 0\n", marker.display()),
        );
    }

    w.write_policy(
        r#"
[modules.www]
path = "{srv}/www"

[modules.backup]
path = "{srv}/backup"
read_only = false
delete = true

[modules.up]
path = "{srv}/up"
read_only = false

[modules.drop]
path = "{srv}/drop"
read_only = false
write_only = true
overwrite = false

[modules.handin]
path = "{srv}/handin"
read_only = false
write_only = true

[modules.links]
path = "{srv}/links"
follow_links = true
devices = true

[modules.secret]
path = "{srv}/secret"

[clients.c]
modules = ["www", "backup", "up", "drop", "handin", "links"]

[clients.fenced]
modules = ["www"]
from = ["192.0.2.0/24"]

[triggers.t]
command = ["/bin/true", "--fixed"]
args = ["sync:all", "sync:stage1", "sync:archive:*"]

[clients.trig]
trigger = "t"

[triggers.any]
command = ["/bin/true"]

[clients.trig_any]
trigger = "any"
"#,
    );
    (w, out)
}

// ---------------------------------------------------------------------------
// Running a case
// ---------------------------------------------------------------------------

/// What happened.
#[derive(Debug)]
enum Outcome {
    Deny {
        code: String,
        message: String,
    },
    Allow {
        argv: Vec<Vec<u8>>,
    },
    Probe,
    /// The trigger fired; the job's whole argv, as the audit log shows it.
    Trigger {
        argv: Vec<Vec<u8>>,
    },
}

fn show(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    if s.len() > 300 {
        let cut: String = s.chars().take(300).collect();
        format!("{cut:?}... ({} bytes)", b.len())
    } else {
        format!("{s:?}")
    }
}

fn show_argv(argv: &[Vec<u8>]) -> String {
    if argv.len() > 12 {
        let head: Vec<String> = argv.iter().take(10).map(|a| show(a)).collect();
        format!("[{}, ... ({} in all)]", head.join(", "), argv.len())
    } else {
        let all: Vec<String> = argv.iter().map(|a| show(a)).collect();
        format!("[{}]", all.join(", "))
    }
}

/// Replace `/proc/self/fd/N` (followed by the end or `/`) by what `target`
/// says fd N is.
/// For comparing two plans of one request: what each descriptor the plan
/// holds (and the child inherits under the same number) leads to, read in
/// this process. Any other number in the argv is the child's, not this
/// process's (the log pipe the child gets as descriptor 3, a directory the
/// exec stage creates and hands over), and which number it is depends on
/// what else this process has open (other tests run beside this one): it
/// shows as `<fd:not held>`, the same in both plans.
fn held_fds(plan: &rsync_gate::plan::ExecPlan) -> impl Fn(u32) -> Option<Vec<u8>> + '_ {
    use std::os::fd::AsRawFd;
    move |n: u32| {
        let held = plan
            .keep_fds
            .iter()
            .any(|f| u32::try_from(f.as_raw_fd()) == Ok(n));
        if !held {
            return Some(b"not held".to_vec());
        }
        std::fs::read_link(format!("/proc/self/fd/{n}"))
            .ok()
            .map(|t| t.as_os_str().as_bytes().to_vec())
    }
}

fn resolve_fds(arg: &[u8], target: &dyn Fn(u32) -> Option<Vec<u8>>) -> Vec<u8> {
    const PREFIX: &[u8] = b"/proc/self/fd/";
    let Some(at) = arg.windows(PREFIX.len()).position(|w| w == PREFIX) else {
        return arg.to_vec();
    };
    let digits_start = at + PREFIX.len();
    let digits_len = arg[digits_start..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    let end = digits_start + digits_len;
    let fd = std::str::from_utf8(&arg[digits_start..end])
        .ok()
        .and_then(|d| d.parse().ok());
    let after = &arg[end..];
    match fd.and_then(target) {
        Some(t) if digits_len > 0 && (after.is_empty() || after.starts_with(b"/")) => {
            let mut out = arg[..at].to_vec();
            out.extend_from_slice(b"<fd:");
            out.extend_from_slice(&t);
            out.push(b'>');
            out.extend_from_slice(after);
            out
        }
        _ => arg.to_vec(),
    }
}

/// The stand-in's records, if it ran.
struct Ran {
    argv: Vec<Vec<u8>>,
    env: Vec<(String, String)>,
}

fn recorded(out: &Path) -> Option<Ran> {
    let raw = std::fs::read(out.join("argv")).ok()?;
    let mut argv: Vec<Vec<u8>> = raw.split(|&b| b == 0).map(<[u8]>::to_vec).collect();
    if argv.last().is_some_and(Vec::is_empty) {
        argv.pop();
    }
    let fds: BTreeMap<u32, Vec<u8>> = std::fs::read(out.join("fds"))
        .unwrap_or_default()
        .split(|&b| b == b'\n')
        .filter_map(|l| {
            let sp = l.iter().position(|&b| b == b' ')?;
            let n = std::str::from_utf8(&l[..sp]).ok()?.parse().ok()?;
            let target = &l[sp + 1..];
            // A pipe (the daemon's log) is "pipe:[INODE]"; explain says
            // only that it is one.
            if target.starts_with(b"pipe:[") {
                return Some((
                    n,
                    rsync_gate::pipeline::explain::LOG_PIPE.as_bytes().to_vec(),
                ));
            }
            Some((n, target.to_vec()))
        })
        .collect();
    let argv = argv
        .iter()
        .map(|a| resolve_fds(a, &|n| fds.get(&n).cloned()))
        .collect();
    let env = std::fs::read(out.join("env"))
        .unwrap_or_default()
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let l = String::from_utf8_lossy(l);
            match l.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (l.to_string(), String::new()),
            }
        })
        .collect();
    Some(Ran { argv, env })
}

fn clear_recorder(out: &Path) {
    for f in ["argv", "env", "fds", "cwd"] {
        let _ = std::fs::remove_file(out.join(f));
    }
}

/// Run the gate binary for a case.
fn spawn(w: &common::World, c: &Case, p: &Prepared) -> Output {
    let utf8_env: Option<Vec<(&str, &str)>> = p
        .env
        .iter()
        .map(|(k, v)| std::str::from_utf8(v).ok().map(|v| (k.as_str(), v)))
        .collect();
    if let (Some(env), true) = (&utf8_env, c.env_remove.is_empty()) {
        return w.serve_with_stdin(&c.client, p.command.as_deref(), env, &p.stdin);
    }
    // World::serve cannot remove a variable or pass non-UTF-8 values: the
    // same invocation, by hand.
    let mut cmd = Command::new(common::gate_bin());
    cmd.arg("serve")
        .arg("--policy")
        .arg(&w.policy)
        .arg("--client")
        .arg(&c.client)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("SSH_CONNECTION", DEFAULT_CONNECTION)
        .current_dir(&w.client)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(command) = &p.command {
        cmd.env("SSH_ORIGINAL_COMMAND", OsStr::from_bytes(command));
    }
    for (k, v) in &p.env {
        cmd.env(k, OsStr::from_bytes(v));
    }
    for k in &c.env_remove {
        cmd.env_remove(k);
    }
    let mut child = cmd.spawn().expect("spawn gate");
    {
        let mut sin = child.stdin.take().expect("stdin");
        let _ = sin.write_all(&p.stdin);
    }
    child.wait_with_output().expect("wait gate")
}

/// The decision records appended to the audit log after byte `from`.
fn new_decisions(log: &Path, from: u64, bad: &mut Vec<String>) -> Vec<serde_json::Value> {
    let all = std::fs::read(log).unwrap_or_default();
    let start = usize::try_from(from).unwrap_or(usize::MAX).min(all.len());
    let mut out = Vec::new();
    for line in all[start..]
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
    {
        match serde_json::from_slice::<serde_json::Value>(line) {
            Ok(r) if r["event"] == "decision" => out.push(r),
            Ok(_) => {}
            Err(e) => bad.push(format!("audit line is not JSON: {e}")),
        }
    }
    out
}

/// Lines of stderr that are the dynamic loader complaining about a bogus
/// `LD_PRELOAD`/`LD_AUDIT` given to the gate itself.
fn is_loader_line(l: &str) -> bool {
    l.starts_with("ERROR: ld.so:")
}

/// Run one case through the binary and list every way it differs from the
/// expectation.
fn check_binary(
    w: &common::World,
    out: &Path,
    c: &Case,
    p: &Prepared,
    account: &str,
) -> (Option<Outcome>, Vec<String>) {
    let mut bad = Vec::new();
    clear_recorder(out);
    let before = std::fs::metadata(&w.audit).map_or(0, |m| m.len());
    let o = spawn(w, c, p);
    let decisions = new_decisions(&w.audit, before, &mut bad);
    let ran = recorded(out);
    if !o.stdout.is_empty() {
        bad.push(format!("wrote {} bytes to stdout", o.stdout.len()));
    }
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let loader_lines = stderr.lines().filter(|l| is_loader_line(l)).count();
    if loader_lines > 1 {
        bad.push(format!(
            "the loader complained {loader_lines} times: a hostile LD_* reached the child"
        ));
    }
    let lines: Vec<&str> = stderr.lines().filter(|l| !is_loader_line(l)).collect();
    let record = if decisions.len() == 1 {
        decisions.last().cloned()
    } else {
        bad.push(format!(
            "expected one new audit decision record, got {}",
            decisions.len()
        ));
        None
    };
    // The audit log keeps client bytes escaped (control characters, and
    // format characters such as bidi overrides): `rsync-gate audit` prints
    // these fields as they are. A record is bounded, too.
    let raw = |v: &str| v.chars().any(rsync_gate::escape::needs_escape);
    if let Some(r) = &record {
        let mut fields: Vec<(&str, &str)> = Vec::new();
        if let Some(v) = r["command"].as_str() {
            fields.push(("command", v));
        }
        if let Some(v) = r["reason"]["message"].as_str() {
            fields.push(("message", v));
        }
        for list in ["argv", "notes"] {
            for v in r[list].as_array().into_iter().flatten() {
                fields.push((list, v.as_str().unwrap_or_default()));
            }
        }
        for (field, v) in fields {
            if raw(v) {
                bad.push(format!(
                    "raw control or format characters in the audit {field} {v:?}"
                ));
            }
        }
        let size = r.to_string().len();
        if size > 100 * 1024 {
            bad.push(format!("an audit record of {size} bytes"));
        }
    }
    let status = o.status.code();
    let outcome = match (status, &ran) {
        (Some(0), Some(r)) => Some(Outcome::Allow {
            argv: r.argv.iter().skip(1).cloned().collect(),
        }),
        (Some(0), None) if record.as_ref().is_some_and(|r| r["mode"] == "trigger") => {
            Some(Outcome::Trigger {
                argv: json_strings(record.as_ref().map(|r| &r["argv"])),
            })
        }
        (Some(0), None) => Some(Outcome::Probe),
        (Some(n), None) if n != 0 => {
            let line = lines.first().copied().unwrap_or("");
            let message = line
                .strip_prefix("rsync-gate: denied: ")
                .unwrap_or(line)
                .to_string();
            let code = record
                .as_ref()
                .and_then(|r| r["reason"]["code"].as_str())
                .unwrap_or("<no audit reason>")
                .to_string();
            Some(Outcome::Deny { code, message })
        }
        _ => {
            bad.push(format!(
                "exit status {status:?} with the stand-in {}",
                if ran.is_some() { "run" } else { "not run" }
            ));
            None
        }
    };
    match &outcome {
        Some(Outcome::Deny { .. }) => {
            if lines.len() != 1 || !lines.iter().all(|l| l.starts_with("rsync-gate: denied: ")) {
                bad.push(format!(
                    "expected exactly one 'rsync-gate: denied: ' line, got {stderr:?}"
                ));
            }
            if let Some(r) = record.as_ref().filter(|r| r["decision"] != "deny") {
                bad.push(format!("audit decision is {}", r["decision"]));
            }
            if lines.iter().any(|l| raw(l)) {
                bad.push(format!(
                    "raw control or format characters in the denial line {stderr:?}"
                ));
            }
            let root = w.root.to_string_lossy();
            let spelled = p
                .command
                .as_deref()
                .is_some_and(|cmd| cmd.windows(root.len()).any(|x| x == root.as_bytes()));
            if !spelled && stderr.contains(root.as_ref()) {
                bad.push(format!(
                    "the denial reveals a server path the client never named: {stderr:?}"
                ));
            }
        }
        Some(Outcome::Trigger { .. }) => {
            let name = record
                .as_ref()
                .and_then(|r| r["trigger"]["name"].as_str())
                .unwrap_or("<no trigger in the audit record>");
            let started = format!("rsync-gate: trigger '{name}' started");
            let queued = format!("rsync-gate: trigger '{name}' queued");
            if lines != [started.as_str()] && lines != [queued.as_str()] {
                bad.push(format!(
                    "expected one line '{started}' or 'queued', got {stderr:?}"
                ));
            }
            if let Some(r) = &record {
                if r["decision"] != "allow" {
                    bad.push(format!("audit decision is {}", r["decision"]));
                }
                let state = &r["trigger"]["state"];
                if state != "started" && state != "queued" {
                    bad.push(format!("audit trigger state is {state}"));
                }
            }
        }
        Some(Outcome::Allow { .. }) | Some(Outcome::Probe) => {
            if !lines.is_empty() {
                bad.push(format!("unexpected stderr {stderr:?}"));
            }
            if let Some(r) = &record {
                if r["decision"] != "allow" {
                    bad.push(format!("audit decision is {}", r["decision"]));
                }
                let probe = matches!(outcome, Some(Outcome::Probe));
                if probe && r["mode"] != "probe" {
                    bad.push(format!("audit mode is {} for a probe", r["mode"]));
                }
            }
        }
        None => {}
    }
    if let Some(r) = &ran {
        let want0 = w.rsync.as_os_str().as_bytes();
        if r.argv.first().map(Vec::as_slice) != Some(want0) {
            bad.push(format!(
                "argv[0] is {}, not the policy's rsync",
                show(r.argv.first().map(Vec::as_slice).unwrap_or(b""))
            ));
        }
        check_env(c, p, &r.env, account, &mut bad);
    }
    (outcome, bad)
}

/// What `explain` says about a case: its decision as an [`Outcome`]
/// (argv resolved through the descriptors it lists), or why it failed.
/// With `trace` it runs `explain --trace`, whose trace must start with the
/// client and end in the decision it gives.
fn explain(
    w: &common::World,
    c: &Case,
    p: &Prepared,
    trace: bool,
) -> Result<Option<Outcome>, String> {
    let Some(command) = &p.command else {
        return Ok(None);
    };
    // The connection serve sees, as it would parse it.
    let conn = if c.env_remove.iter().any(|k| k == "SSH_CONNECTION") {
        None
    } else {
        Some(
            p.env
                .iter()
                .find(|(k, _)| k == "SSH_CONNECTION")
                .map_or(DEFAULT_CONNECTION.as_bytes(), |(_, v)| v.as_slice()),
        )
    };
    let mut cmd = Command::new(common::gate_bin());
    cmd.arg("explain");
    if trace {
        cmd.arg("--trace");
    }
    cmd.arg("--json")
        .arg("--policy")
        .arg(&w.policy)
        .arg("--client")
        .arg(&c.client)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir(&w.client)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(conn) = conn.filter(|v| Connection::parse(v).is_some()) {
        cmd.arg("--connection").arg(OsStr::from_bytes(conn));
    }
    cmd.arg("--").arg(OsStr::from_bytes(command));
    let mut child = cmd.spawn().map_err(|e| format!("explain: {e}"))?;
    {
        let mut sin = child.stdin.take().ok_or("explain: no stdin")?;
        let _ = sin.write_all(&p.stdin);
    }
    let o = child
        .wait_with_output()
        .map_err(|e| format!("explain: {e}"))?;
    let e: serde_json::Value = serde_json::from_slice(&o.stdout).map_err(|e| {
        format!(
            "explain printed no JSON ({e}): status {:?}, stderr {:?}",
            o.status.code(),
            String::from_utf8_lossy(&o.stderr)
        )
    })?;
    let want_status = if e["decision"] == "allow" { 0 } else { 1 };
    if o.status.code() != Some(want_status) {
        return Err(format!(
            "explain exited {:?} for {}",
            o.status.code(),
            e["decision"]
        ));
    }
    if trace {
        check_trace(&e)?;
    } else if e.get("trace").is_some() {
        return Err("explain without --trace printed a trace".into());
    }
    if e["decision"] != "allow" {
        return Ok(Some(Outcome::Deny {
            code: e["reason"]["code"].as_str().unwrap_or_default().to_string(),
            message: e["reason"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        }));
    }
    if e["mode"] == "probe" {
        return Ok(Some(Outcome::Probe));
    }
    if e["mode"] == "trigger" {
        return Ok(Some(Outcome::Trigger {
            argv: json_strings(Some(&e["argv"])),
        }));
    }
    let pins: BTreeMap<u32, Vec<u8>> = e["pins"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let n = p["fd"]
                .as_str()?
                .strip_prefix("/proc/self/fd/")?
                .parse()
                .ok()?;
            Some((n, p["path"].as_str()?.as_bytes().to_vec()))
        })
        .collect();
    let argv = e["argv"]
        .as_array()
        .into_iter()
        .flatten()
        .skip(1)
        .map(|a| {
            resolve_fds(a.as_str().unwrap_or_default().as_bytes(), &|n| {
                pins.get(&n).cloned()
            })
        })
        .collect();
    Ok(Some(Outcome::Allow { argv }))
}

/// An `explain --trace --json` answer's trace: it names the client first
/// and ends in the decision the answer gives (allow or deny, and the
/// refusal's code).
fn check_trace(e: &serde_json::Value) -> Result<(), String> {
    let steps = e["trace"]
        .as_array()
        .ok_or("explain --trace printed no trace")?;
    let first = steps.first().map(|s| &s["step"]);
    let last = steps.last().ok_or("an empty trace")?;
    let secluded_failure = e["reason"]["code"] == "secluded_args_malformed";
    if !secluded_failure
        && first != Some(&serde_json::json!("client_found"))
        && first != Some(&serde_json::json!("client_unknown"))
    {
        return Err(format!("the trace starts with {first:?}"));
    }
    let allowed = e["decision"] == "allow";
    let code = e["reason"]["code"].as_str();
    if last["step"] != "decision"
        || last["stage"] != "final"
        || last["allowed"] != allowed
        || last["code"].as_str() != code
    {
        return Err(format!(
            "the trace ends in {last}, not the decision ({}, {code:?})",
            e["decision"]
        ));
    }
    Ok(())
}

/// The library's traced evaluation (what `explain --trace` runs) agrees
/// with the plain one on a case: the same decision, the same outcome once
/// the paths are confined, and a trace that ends in it.
fn traced_agrees(
    policy: &Policy,
    caps: rsync_gate::decide::RsyncCaps,
    c: &Case,
    p: &Prepared,
) -> Vec<String> {
    let Some(command) = &p.command else {
        return Vec::new();
    };
    let parsed = request::parse_command(command);
    let connection = if c.env_remove.iter().any(|k| k == "SSH_CONNECTION") {
        None
    } else {
        Connection::parse(
            p.env
                .iter()
                .find(|(k, _)| k == "SSH_CONNECTION")
                .map_or(DEFAULT_CONNECTION.as_bytes(), |(_, v)| v.as_slice()),
        )
    };
    let account = Account::current();
    let gate = common::gate_bin();
    let inputs = Inputs {
        policy,
        policy_path: &policy.source,
        client: &c.client,
        conn: connection.as_ref(),
        account: &account,
        caps,
        landlock: common::landlock_available(),
        gate: &gate,
        session: "corpus",
    };
    let mut bad = Vec::new();
    let mut steps = Vec::new();
    let plain = evaluate::decision(&inputs, parsed.as_ref());
    let traced = evaluate::decision_traced(&inputs, parsed.as_ref(), &mut steps);
    if plain != traced {
        bad.push(format!(
            "decide_traced disagrees with decide: {traced:?} vs {plain:?}"
        ));
    }
    // After confinement: each plan is summed up while its descriptors are
    // open.
    let sum = |e: Evaluation| -> String {
        match e {
            Evaluation::Refused(r) => format!("deny {}", r.reason.code()),
            Evaluation::Probe => "probe".into(),
            Evaluation::Trigger(t) => format!("trigger {:?}", t.argv_shown()),
            Evaluation::InBand(g) => format!("in-band {g:?}"),
            Evaluation::Run(run) => {
                let target = held_fds(&run.plan);
                let argv: Vec<Vec<u8>> = run
                    .plan
                    .args
                    .iter()
                    .map(|a| resolve_fds(a.as_bytes(), &target))
                    .collect();
                format!("run {}", show_argv(&argv))
            }
        }
    };
    let plain = sum(evaluate::evaluate(&inputs, parsed.as_ref()));
    let mut steps = Vec::new();
    let traced = sum(evaluate::evaluate_traced(
        &inputs,
        parsed.as_ref(),
        &mut steps,
    ));
    if plain != traced {
        bad.push(format!(
            "evaluate_traced disagrees with evaluate:\n      traced: {traced}\n      plain:  {plain}"
        ));
    }
    let refused = plain.strip_prefix("deny ");
    let ends_well = matches!(
        steps.last(),
        Some(rsync_gate::decide::Step::Decision { allowed, code, .. })
            if *allowed == refused.is_none() && code.as_deref() == refused
    );
    if !ends_well {
        bad.push(format!(
            "the trace does not end in the outcome {plain}: {:?}",
            steps.last()
        ));
    }
    bad
}

/// explain and serve must agree: the same decision, the same reason, the
/// same argv (every descriptor resolved to what it holds; explain shows
/// each byte escaped, as the audit log does).
fn agree(served: &Outcome, said: Result<Option<Outcome>, String>) -> Vec<String> {
    let said = match said {
        Ok(Some(s)) => s,
        Ok(None) => return Vec::new(),
        Err(e) => return vec![format!("explain: {e}")],
    };
    let escaped = |argv: &[Vec<u8>]| -> Vec<Vec<u8>> {
        argv.iter()
            .map(|a| rsync_gate::escape::field(a).into_bytes())
            .collect()
    };
    let same = match (served, &said) {
        (Outcome::Deny { code: a, .. }, Outcome::Deny { code: b, .. }) => a == b,
        (Outcome::Allow { argv: a }, Outcome::Allow { argv: b }) => escaped(a) == *b,
        (Outcome::Probe, Outcome::Probe) => true,
        (Outcome::Trigger { argv: a }, Outcome::Trigger { argv: b }) => a == b,
        _ => false,
    };
    if same {
        Vec::new()
    } else {
        vec![format!(
            "explain and serve disagree:\n      serve:   {}\n      explain: {}",
            outcome_line(served),
            outcome_line(&said)
        )]
    }
}

fn outcome_line(o: &Outcome) -> String {
    match o {
        Outcome::Deny { code, message } => format!("deny {code} ({message})"),
        Outcome::Allow { argv } => format!("allow {}", show_argv(argv)),
        Outcome::Probe => "probe".into(),
        Outcome::Trigger { argv } => format!("trigger {}", show_argv(argv)),
    }
}

/// A JSON array of strings, as bytes.
fn json_strings(v: Option<&serde_json::Value>) -> Vec<Vec<u8>> {
    v.and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .map(|a| a.as_str().unwrap_or("<not a string>").as_bytes().to_vec())
        .collect()
}

/// The stand-in's environment: only what the gate builds, none of the
/// case's hostile variables, and the exact values asked for.
fn check_env(
    c: &Case,
    p: &Prepared,
    env: &[(String, String)],
    account: &str,
    bad: &mut Vec<String>,
) {
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let ours = |k: &str| GATE_ENV.contains(&k) || SHELL_ENV.contains(&k);
    for (k, v) in env {
        if !ours(k) {
            bad.push(format!("the child's environment holds {k}={v}"));
        }
    }
    let fixed = [
        ("PATH", "/usr/bin:/bin"),
        ("HOME", "/nonexistent"),
        ("USER", account),
        ("LOGNAME", account),
    ];
    for (k, want) in fixed {
        if get(k) != Some(want) {
            bad.push(format!("child {k} is {:?}, not {want:?}", get(k)));
        }
    }
    for (k, hostile) in &p.env {
        if k == "SSH_CONNECTION" {
            continue;
        }
        match get(k) {
            // A name the gate sets itself: its value must be the gate's.
            Some(v) if ours(k) && v.as_bytes() == hostile.as_slice() => {
                bad.push(format!("hostile {k}={v:?} reached the child"));
            }
            Some(v) if !ours(k) => bad.push(format!("hostile {k} reached the child as {v:?}")),
            Some(_) | None => {}
        }
    }
    let conn_overridden =
        p.env.iter().any(|(k, _)| k == "SSH_CONNECTION") || !c.env_remove.is_empty();
    if !conn_overridden
        && !c.env_exact.contains_key("SSH_CONNECTION")
        && get("SSH_CONNECTION") != Some(DEFAULT_CONNECTION)
    {
        bad.push(format!(
            "child SSH_CONNECTION is {:?}",
            get("SSH_CONNECTION")
        ));
    }
    for (k, want) in &p.env_exact {
        if get(k).map(str::as_bytes) != Some(want.as_slice()) {
            bad.push(format!("child {k} is {:?}, not {}", get(k), show(want)));
        }
    }
    for k in &c.env_absent {
        if let Some(v) = get(k) {
            bad.push(format!("child has {k}={v:?}, which must be absent"));
        }
    }
}

/// Run a case through the library: parse, decide, confine and plan (no
/// directories are created), as `serve` does.
fn check_in_process(policy: &Policy, c: &Case, p: &Prepared) -> (Option<Outcome>, Vec<String>) {
    let Some(command) = &p.command else {
        return (None, vec!["in-process cases need a command".into()]);
    };
    let parsed = request::parse_command(command);
    let conn = Connection::parse(DEFAULT_CONNECTION.as_bytes());
    let account = Account::current();
    let gate = common::gate_bin();
    let inputs = Inputs {
        policy,
        policy_path: &policy.source,
        client: &c.client,
        conn: conn.as_ref(),
        account: &account,
        caps: host::rsync::probe(&policy.gate.rsync).unwrap_or_default(),
        landlock: common::landlock_available(),
        gate: &gate,
        session: "corpus",
    };
    let outcome = match evaluate::evaluate(&inputs, parsed.as_ref()) {
        Evaluation::Refused(r) => Outcome::Deny {
            code: r.reason.code().to_string(),
            message: r.reason.to_string(),
        },
        Evaluation::Probe => Outcome::Probe,
        Evaluation::Trigger(plan) => Outcome::Trigger {
            argv: plan
                .argv_shown()
                .into_iter()
                .map(String::into_bytes)
                .collect(),
        },
        Evaluation::Run(run) if run.grant.is_some() => {
            // The plan still holds its descriptors: map them here.
            let target = |n: u32| {
                std::fs::read_link(format!("/proc/self/fd/{n}"))
                    .ok()
                    .map(|t| t.as_os_str().as_bytes().to_vec())
            };
            let argv = run
                .plan
                .args
                .iter()
                .map(|a| resolve_fds(a.as_bytes(), &target))
                .collect();
            Outcome::Allow { argv }
        }
        other => {
            return (None, vec![format!("in-process {other:?} is not modelled")]);
        }
    };
    (Some(outcome), Vec::new())
}

/// Compare an outcome with the expectation.
fn compare(c: &Case, p: &Prepared, outcome: Option<&Outcome>, bad: &mut Vec<String>) {
    match (c.expect, outcome) {
        (_, None) => {}
        (Expect::Deny, Some(Outcome::Deny { code, message })) => {
            if Some(code.as_str()) != c.code.as_deref() {
                bad.push(format!(
                    "denied with {code} ({message}), expected {}",
                    c.code.as_deref().unwrap_or("?")
                ));
            }
            if let Some(want) = c
                .message_contains
                .as_ref()
                .filter(|w| !message.contains(w.as_str()))
            {
                bad.push(format!("message {message:?} lacks {want:?}"));
            }
        }
        (Expect::Allow, Some(Outcome::Allow { argv })) => {
            if let Some(want) = p.argv.as_ref().filter(|w| argv != *w) {
                bad.push(format!(
                    "argv {}\n      expected {}",
                    show_argv(argv),
                    show_argv(want)
                ));
            }
        }
        (Expect::Probe, Some(Outcome::Probe)) => {}
        (Expect::Trigger, Some(Outcome::Trigger { argv })) => {
            if let Some(want) = p.argv.as_ref().filter(|w| argv != *w) {
                bad.push(format!(
                    "job argv {}\n      expected {}",
                    show_argv(argv),
                    show_argv(want)
                ));
            }
        }
        (want, Some(got)) => {
            let got = match got {
                Outcome::Deny { code, message } => format!("denied with {code} ({message})"),
                Outcome::Allow { argv } => format!("allowed, argv {}", show_argv(argv)),
                Outcome::Probe => "a probe".into(),
                Outcome::Trigger { argv } => format!("a trigger, job argv {}", show_argv(argv)),
            };
            bad.push(format!("expected {want:?}, got {got}"));
        }
    }
}

/// The case's file checks.
fn check_files(c: &Case, v: &Vars, bad: &mut Vec<String>) {
    for f in &c.files {
        let text = |s: &str| {
            String::from_utf8_lossy(&expand(s, v, false).unwrap_or_default()).into_owned()
        };
        let path = text(&f.path);
        let Ok(body) = std::fs::read_to_string(&path) else {
            bad.push(format!("cannot read {path}"));
            continue;
        };
        for want in &f.contains {
            let want = text(want);
            if !body.contains(&want) {
                bad.push(format!("{path} lacks {want:?}"));
            }
        }
        for unwanted in &f.lacks {
            let unwanted = text(unwanted);
            if body.contains(&unwanted) {
                bad.push(format!("{path} holds {unwanted:?}"));
            }
        }
    }
}

#[test]
fn hostile_corpus() {
    let text = std::fs::read_to_string(CORPUS).expect("read the corpus");
    let corpus: Corpus = toml::from_str(&text).expect("the corpus is valid TOML");
    let cases = corpus.case;
    let problems = validate(&cases);
    assert!(
        problems.is_empty(),
        "corpus problems:\n  {}",
        problems.join("\n  ")
    );
    assert!(cases.len() >= 150, "only {} cases", cases.len());

    let (w, out) = corpus_world();
    let vars = Vars {
        srv: w.root.join("srv").as_os_str().as_bytes().to_vec(),
        root: w.root.as_os_str().as_bytes().to_vec(),
    };
    let policy = policy::load(&w.policy, &policy::PlainReader).expect("the corpus policy loads");
    let caps = host::rsync::probe(&policy.gate.rsync).unwrap_or_default();
    let account = Account::current().name;
    let srv_before = common::snapshot(&w.root.join("srv"));
    let outside_before = common::snapshot(&w.root.join("outside"));

    let mut failures = Vec::new();
    let mut known = Vec::new();
    let mut stale = Vec::new();
    let mut pending = Vec::new();
    let mut by_expect: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_code: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_category: BTreeMap<&str, usize> = BTreeMap::new();
    let mut in_process = 0;
    let mut explained = 0;
    let mut traced = 0;
    for c in &cases {
        let p = match prepare(c, &vars) {
            Ok(p) => p,
            Err(e) => {
                failures.push(format!("{}: bad template: {e}", c.name));
                continue;
            }
        };
        let mut bad = Vec::new();
        let len = p.command.as_ref().map(Vec::len);
        if let Some(want) = c.command_len.filter(|w| len != Some(*w)) {
            bad.push(format!("command is {len:?} bytes, not {want}"));
        }
        // The traced decision (explain --trace) is the decision.
        bad.extend(traced_agrees(&policy, caps, c, &p));
        traced += 1;
        let (outcome, mut found) = if c.in_process {
            in_process += 1;
            check_in_process(&policy, c, &p)
        } else {
            // What explain --trace says first (it changes nothing), then
            // what serve does: the two must agree.
            let said = explain(&w, c, &p, true);
            let (outcome, mut found) = check_binary(&w, &out, c, &p, &account);
            if let Some(o) = &outcome {
                found.extend(agree(o, said));
                explained += 1;
            }
            (outcome, found)
        };
        let not_built = match (&outcome, c.pending_code.as_deref()) {
            (Some(Outcome::Deny { code, .. }), Some(want)) => code == want,
            _ => false,
        };
        bad.append(&mut found);
        if !not_built {
            compare(c, &p, outcome.as_ref(), &mut bad);
            check_files(c, &vars, &mut bad);
        }

        *by_category.entry(c.category.as_str()).or_default() += 1;
        match c.expect {
            Expect::Deny => {
                *by_expect.entry("denied").or_default() += 1;
                *by_code
                    .entry(c.code.clone().unwrap_or_default())
                    .or_default() += 1;
            }
            Expect::Allow => *by_expect.entry("allowed").or_default() += 1,
            Expect::Probe => *by_expect.entry("probes").or_default() += 1,
            Expect::Trigger => *by_expect.entry("triggers").or_default() += 1,
        }
        match (&c.pending, not_built) {
            (Some(why), true) => pending.push(format!(
                "{}: {why} (today: {})",
                c.name,
                c.pending_code.as_deref().unwrap_or_default()
            )),
            (Some(why), false) if c.pending_code.is_none() => {
                pending.push(format!("{}: {why}", c.name));
            }
            _ => {}
        }
        let cmd = p.command.as_deref().map(show).unwrap_or("<none>".into());
        match (&c.known_issue, bad.is_empty()) {
            (None, true) => {}
            (None, false) => failures.push(format!(
                "{} [{}] command {cmd}:\n    {}",
                c.name,
                c.category,
                bad.join("\n    ")
            )),
            (Some(_), true) => stale.push(c.name.clone()),
            (Some(issue), false) => known.push((
                c.name.clone(),
                format!(
                    "{} [{}] command {cmd}\n    known issue: {issue}\n    {}",
                    c.name,
                    c.category,
                    bad.join("\n    ")
                ),
            )),
        }
    }

    let srv_after = common::snapshot(&w.root.join("srv"));
    let outside_after = common::snapshot(&w.root.join("outside"));
    // The stand-in changes nothing; the gate itself creates only the
    // missing directories it hands rsync by descriptor: new directories
    // leading to (or being) one that some allowed case's argv names as a
    // held descriptor, holding nothing else.
    let srv_dir = w.root.join("srv");
    let held: Vec<PathBuf> = cases
        .iter()
        .filter(|c| c.expect == Expect::Allow)
        .filter_map(|c| prepare(c, &vars).ok()?.argv)
        .flatten()
        .filter_map(|a| {
            let at = a.windows(4).position(|x| x == b"<fd:")?;
            let body = &a[at + 4..];
            let end = body.iter().position(|&b| b == b'>')?;
            let p = Path::new(OsStr::from_bytes(&body[..end]));
            p.strip_prefix(&srv_dir).ok().map(Path::to_path_buf)
        })
        .collect();
    let created = |k: &PathBuf| {
        !srv_before.contains_key(k)
            && matches!(srv_after.get(k), Some((common::Entry::Dir { .. }, _, _)))
            && held.iter().any(|t| {
                t.starts_with(k)
                    && srv_after
                        .keys()
                        .filter(|o| o.starts_with(k))
                        .all(|o| t.starts_with(o))
            })
    };
    let changed: Vec<_> = srv_before
        .keys()
        .chain(srv_after.keys())
        .filter(|k| srv_before.get(*k) != srv_after.get(*k))
        .collect();
    let made: Vec<&PathBuf> = changed.iter().copied().filter(|k| created(k)).collect();
    let unexplained: Vec<_> = changed
        .iter()
        .filter(|k| !made.contains(k))
        // A directory gaining one of those changes only its times.
        .filter(|k| {
            !(made.iter().any(|m| m.parent() == Some(k.as_path()))
                && srv_before.get(**k).map(|e| &e.0) == srv_after.get(**k).map(|e| &e.0))
        })
        .collect();
    if !unexplained.is_empty() {
        failures.push(format!("the corpus changed srv/: {unexplained:?}"));
    }
    if outside_before != outside_after {
        failures.push("the corpus changed outside/".into());
    }
    let marker = w.root.join("evil-ran");
    if marker.exists() {
        failures.push(format!(
            "a program from a hostile PATH ran: {:?}",
            std::fs::read_to_string(&marker).unwrap_or_default()
        ));
    }

    let counts: Vec<String> = by_expect.iter().map(|(k, n)| format!("{n} {k}")).collect();
    eprintln!(
        "corpus: {} cases, {} ({in_process} in-process)",
        cases.len(),
        counts.join(", ")
    );
    let codes: Vec<String> = by_code.iter().map(|(k, n)| format!("{k} {n}")).collect();
    eprintln!("corpus: denials by code: {}", codes.join(", "));
    eprintln!(
        "corpus: explain --trace agreed with serve on all {explained} cases run through the binary"
    );
    eprintln!(
        "corpus: the traced decision and evaluation agreed with the plain ones on {traced} cases"
    );
    if explained + in_process + 2 < cases.len() {
        failures.push(format!(
            "explain was compared with serve on only {explained} of {} cases",
            cases.len()
        ));
    }
    let cats: Vec<String> = by_category
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    eprintln!("corpus: cases by category: {}", cats.join(", "));
    if !pending.is_empty() {
        eprintln!(
            "corpus: {} cases wait for features not built yet:\n  {}",
            pending.len(),
            pending.join("\n  ")
        );
    }
    if !known.is_empty() {
        eprintln!(
            "corpus: {} known issues (the gate disagrees with the corpus):\n  {}",
            known.len(),
            known
                .iter()
                .map(|(_, t)| t.as_str())
                .collect::<Vec<_>>()
                .join("\n  ")
        );
    }
    for (n, _) in &known {
        if !ACCEPTED_KNOWN_ISSUES.contains(&n.as_str()) {
            failures.push(format!(
                "{n}: known issue not in ACCEPTED_KNOWN_ISSUES (see above)"
            ));
        }
    }
    for n in &stale {
        failures.push(format!(
            "{n}: marked known_issue but now passes: remove the marker{}",
            if ACCEPTED_KNOWN_ISSUES.contains(&n.as_str()) {
                " and its ACCEPTED_KNOWN_ISSUES entry"
            } else {
                ""
            }
        ));
    }
    assert!(
        failures.is_empty(),
        "{} corpus failures:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

const CLIENT_COMMANDS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/client-commands.tsv"
);

/// The cases every rsync 3.x client must get through (the common pulls
/// and pushes; see the file's header for the case names).
const COMMON_CASES: &[&str] = &[
    "a", "b", "c", "c-noAX", "c-X", "d", "f-local", "f-remote", "g", "i-push", "i-link",
    "i-delete", "i-z", "i-H",
];

/// The client corpus: what real clients sent, through the gate binary
/// and through explain, which must agree; the common cases of every rsync
/// 3.x client are allowed.
#[test]
fn client_corpus() {
    let text = std::fs::read_to_string(CLIENT_COMMANDS).expect("read the client commands");
    let (w, out) = corpus_world();
    let vars = Vars {
        srv: w.root.join("srv").as_os_str().as_bytes().to_vec(),
        root: w.root.as_os_str().as_bytes().to_vec(),
    };
    let account = Account::current().name;
    let mut failures = Vec::new();
    let (mut allowed, mut total) = (0, 0);
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let mut f = line.splitn(3, '\t');
        let (Some(client), Some(case), Some(command)) = (f.next(), f.next(), f.next()) else {
            failures.push(format!("malformed line {line:?}"));
            continue;
        };
        let c = Case::client_command(command);
        let p = prepare(&c, &vars).expect("no templates in client commands");
        let said = explain(&w, &c, &p, false);
        let (outcome, mut bad) = check_binary(&w, &out, &c, &p, &account);
        if let Some(o) = &outcome {
            bad.extend(agree(o, said));
        }
        total += 1;
        let is_allowed = matches!(outcome, Some(Outcome::Allow { .. }));
        allowed += usize::from(is_allowed);
        if !client.starts_with("openrsync") && COMMON_CASES.contains(&case) && !is_allowed {
            bad.push(format!(
                "a common case is refused: {}",
                outcome.as_ref().map_or("?".into(), outcome_line)
            ));
        }
        if !bad.is_empty() {
            failures.push(format!(
                "{client} {case} {command}:\n    {}",
                bad.join("\n    ")
            ));
        }
    }
    eprintln!("client corpus: {allowed} of {total} commands allowed; explain agreed on all");
    assert!(total >= 100, "only {total} client commands");
    assert!(
        failures.is_empty(),
        "{} client corpus failures:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

impl Case {
    /// A client-corpus command as a case of client `c`.
    fn client_command(command: &str) -> Case {
        Case {
            name: "client".into(),
            category: "client".into(),
            client: default_client(),
            command: Some(command.to_string()),
            no_command: false,
            pct: false,
            command_len: None,
            env: BTreeMap::new(),
            env_remove: Vec::new(),
            stdin: None,
            in_process: false,
            expect: Expect::Allow,
            code: None,
            message_contains: None,
            argv: None,
            env_exact: BTreeMap::new(),
            env_absent: Vec::new(),
            files: Vec::new(),
            known_issue: None,
            pending: None,
            pending_code: None,
            note: None,
        }
    }
}

/// A checked-mode command turned into the in-band request a `host::`
/// client would send: `rsyncd` for the program, paths relative to their
/// module. None when its paths are not all `MODULE/...` of one module.
fn in_band(command: &[u8]) -> Option<(String, Vec<Vec<u8>>)> {
    let words = rsync_gate::request::split::split(command).ok()?;
    let dot = words.iter().position(|w| w.bytes == b".")?;
    let (head, paths) = words.split_at(dot + 1);
    if head.first()?.bytes != b"rsync" || paths.is_empty() {
        return None;
    }
    let mut module: Option<Vec<u8>> = None;
    let mut rel = Vec::new();
    for p in paths {
        let b = p.glob.as_ref().unwrap_or(&p.bytes);
        let (m, rest) = match b.iter().position(|&c| c == b'/') {
            Some(i) => (b[..i].to_vec(), b[i + 1..].to_vec()),
            None => (b.clone(), Vec::new()),
        };
        if m.is_empty() || module.as_ref().is_some_and(|x| *x != m) {
            return None;
        }
        module = Some(m);
        rel.push(rest);
    }
    let mut argv = vec![b"rsyncd".to_vec()];
    argv.extend(head.iter().skip(1).map(|w| w.bytes.clone()));
    argv.extend(rel);
    Some((String::from_utf8(module?).ok()?, argv))
}

/// What the real pre-xfer hook decides: exit status and audit reason code.
fn run_hook(
    w: &common::World,
    module: &str,
    argv: &[Vec<u8>],
    sandboxed: bool,
) -> Result<Option<String>, String> {
    let before = std::fs::metadata(&w.audit).map_or(0, |m| m.len());
    let mut cmd = Command::new(common::gate_bin());
    cmd.args(["hook", "pre-xfer", "--policy"])
        .arg(&w.policy)
        .args(["--client", "c"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("SSH_CONNECTION", DEFAULT_CONNECTION)
        .env("RSYNC_MODULE_NAME", module)
        .env("RSYNC_GATE_SANDBOXED", if sandboxed { "1" } else { "0" })
        .stdin(Stdio::null());
    for (i, a) in argv.iter().enumerate() {
        cmd.env(format!("RSYNC_ARG{i}"), OsStr::from_bytes(a));
    }
    let o = cmd.output().map_err(|e| format!("hook: {e}"))?;
    let mut bad = Vec::new();
    let records = new_decisions(&w.audit, before, &mut bad);
    let [r] = records.as_slice() else {
        return Err(format!(
            "the hook wrote {} decision records {bad:?}",
            records.len()
        ));
    };
    match o.status.code() {
        Some(0) if r["decision"] == "allow" => Ok(None),
        Some(1) if r["decision"] == "deny" => {
            let line = String::from_utf8_lossy(&o.stdout);
            if !line.starts_with("rsync-gate: denied: ") || line.lines().count() != 1 {
                return Err(format!("the hook's veto is not one denial line: {line:?}"));
            }
            Ok(Some(
                r["reason"]["code"].as_str().unwrap_or_default().to_string(),
            ))
        }
        other => Err(format!("hook exit {other:?} with record {r}")),
    }
}

/// What `explain --module` says of the same in-band request.
fn explain_in_band(
    w: &common::World,
    module: &str,
    argv: &[Vec<u8>],
    sandboxed: bool,
) -> Result<Option<String>, String> {
    let mut cmd = Command::new(common::gate_bin());
    cmd.args(["explain", "--json", "--policy"])
        .arg(&w.policy)
        .args(["--client", "c", "--connection", DEFAULT_CONNECTION])
        .arg(format!("--module={module}"));
    if !sandboxed {
        cmd.arg("--unsandboxed");
    }
    cmd.arg("--")
        .args(argv.iter().map(|a| OsStr::from_bytes(a)));
    let o = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("explain: {e}"))?;
    let e: serde_json::Value =
        serde_json::from_slice(&o.stdout).map_err(|e| format!("explain --module: {e}"))?;
    Ok((e["decision"] != "allow")
        .then(|| e["reason"]["code"].as_str().unwrap_or_default().to_string()))
}

/// The pre-xfer hook and `explain --module` agree on the in-band form of
/// every command of both corpora that names module paths, with and without
/// the sandbox.
#[test]
fn hook_agrees_with_explain() {
    let (w, _) = corpus_world();
    let vars = Vars {
        srv: w.root.join("srv").as_os_str().as_bytes().to_vec(),
        root: w.root.as_os_str().as_bytes().to_vec(),
    };
    let mut commands: Vec<Vec<u8>> = Vec::new();
    let corpus: Corpus =
        toml::from_str(&std::fs::read_to_string(CORPUS).expect("corpus")).expect("corpus TOML");
    for c in corpus
        .case
        .iter()
        .filter(|c| !c.in_process && c.env.is_empty())
    {
        if let Ok(Prepared {
            command: Some(cmd), ..
        }) = prepare(c, &vars)
        {
            commands.push(cmd);
        }
    }
    let clients = std::fs::read_to_string(CLIENT_COMMANDS).expect("client commands");
    commands.extend(
        clients
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.splitn(3, '\t').nth(2))
            .map(|c| c.as_bytes().to_vec()),
    );
    let mut failures = Vec::new();
    let (mut compared, mut allowed) = (0, 0);
    for command in &commands {
        let Some((module, argv)) = in_band(command) else {
            continue;
        };
        for sandboxed in [true, false] {
            let hook = run_hook(&w, &module, &argv, sandboxed);
            let said = explain_in_band(&w, &module, &argv, sandboxed);
            compared += 1;
            if matches!(hook, Ok(None)) {
                allowed += 1;
            }
            if hook != said || hook.is_err() {
                failures.push(format!(
                    "{} (module {module}, sandboxed {sandboxed}): hook {hook:?}, explain {said:?}",
                    show(command)
                ));
            }
        }
    }
    eprintln!("hook and explain agreed on {compared} in-band requests ({allowed} allowed)");
    assert!(
        compared >= 300 && allowed >= 100,
        "{compared} compared, {allowed} allowed"
    );
    assert!(
        failures.is_empty(),
        "{} disagreements:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}
