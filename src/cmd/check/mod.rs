//! `rsync-gate check`: the policy's own errors (from loading it, every one
//! with file:line:col), then what `serve` will meet on this server, asked
//! as each SSH account that uses the policy ([`account`]): each problem an
//! error or a warning with its fix in one line.
//!
//! The accounts are the one named with `--account`, or else every account
//! whose `~/.ssh/authorized_keys` runs the gate with this policy
//! ([`users`]), or else the user running `check`.

pub mod account;
pub mod compiled;
pub mod shell;
pub mod users;

#[cfg(test)]
mod tests;

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cmd::authorized_keys;
use crate::host::{self, Account};
use crate::policy::{self, Policy};
use crate::trust;

/// A problem `check` found beyond the policy's syntax.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub error: bool,
    pub text: String,
    /// What to do about it, in one line.
    pub fix: Option<String>,
}

/// What `check` found: problems, and (for `-v`) what it saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub facts: Vec<(String, String)>,
}

impl Report {
    pub fn error(&mut self, text: String, fix: String) {
        self.findings.push(Finding {
            error: true,
            text,
            fix: Some(fix),
        });
    }

    pub fn warning(&mut self, text: String, fix: String) {
        self.findings.push(Finding {
            error: false,
            text,
            fix: Some(fix),
        });
    }

    pub fn fact(&mut self, name: &str, value: String) {
        self.facts.push((name.to_string(), value));
    }

    fn extend(&mut self, other: Report) {
        self.findings.extend(other.findings);
        self.facts.extend(other.facts);
    }

    pub fn errors(&self) -> usize {
        self.findings.iter().filter(|f| f.error).count()
    }
}

/// An SSH account as `check` judges it: who it is, its groups, its login
/// shell, and the authorized_keys lines that make it use this policy.
#[derive(Debug, Clone)]
pub struct Who {
    pub account: Account,
    pub gid: u32,
    /// The primary group's name (for chown in fixes).
    pub group: String,
    pub groups: Vec<u32>,
    pub shell: Option<PathBuf>,
    pub uses: Vec<users::KeyUse>,
}

impl Who {
    pub fn of(account: Account, uses: Vec<users::KeyUse>) -> Who {
        let uid = nix::unistd::Uid::from_raw(account.uid);
        let user = nix::unistd::User::from_uid(uid).ok().flatten();
        let gid = user
            .as_ref()
            .map_or_else(|| nix::unistd::getegid().as_raw(), |u| u.gid.as_raw());
        let group = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
            .ok()
            .flatten()
            .map_or_else(|| gid.to_string(), |g| g.name);
        let groups = user
            .as_ref()
            .and_then(|u| std::ffi::CString::new(u.name.as_bytes()).ok())
            .and_then(|n| nix::unistd::getgrouplist(&n, nix::unistd::Gid::from_raw(gid)).ok())
            .map_or_else(
                || vec![gid],
                |g| g.into_iter().map(nix::unistd::Gid::as_raw).collect(),
            );
        Who {
            account,
            gid,
            group,
            groups,
            shell: user.map(|u| u.shell),
            uses,
        }
    }
}

/// How `check` runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--account`.
    pub account: Option<Account>,
    /// `-v`: also print what it saw.
    pub verbose: bool,
    /// Where `syslog = true` sends (`/dev/log`).
    pub syslog_socket: PathBuf,
    /// `--compile`: then write the compiled index.
    pub compile: bool,
}

/// Quote a path for a shell command in a fix.
pub(crate) fn q(p: &Path) -> String {
    shell_words::quote(&p.to_string_lossy()).into_owned()
}

/// The fix for the first component of `path` (from `/` down) that breaks
/// the ownership rule of [`trust::check_path`] for `account`: `chown` it to
/// root (or, for `path` itself, to `own`), or take write access away from
/// group and others. `private`: `path` itself must be writable by its
/// owner alone, even if sticky.
pub(crate) fn trust_fix(path: &Path, account: u32, own: &str, private: bool) -> Option<String> {
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut comps: Vec<&Path> = real.ancestors().collect();
    comps.reverse();
    for c in comps {
        let md = std::fs::symlink_metadata(c).ok()?;
        let owner = if Some(md.uid()) == trust::root_alias() {
            0
        } else {
            md.uid()
        };
        if !trust::root_or(owner, account) {
            return Some(if c == real {
                format!("chown {own} {}", q(c))
            } else {
                format!("chown root:root {}", q(c))
            });
        }
        let sticky_root = md.is_dir() && md.mode() & 0o1000 != 0 && owner == 0;
        let exempt = sticky_root && !(private && c == real);
        if !exempt && md.mode() & 0o022 != 0 {
            return Some(format!("chmod go-w {}", q(c)));
        }
    }
    None
}

/// `text` without the " (os error N)" the standard library adds to system
/// errors ("Permission denied (os error 13)" says it twice).
fn without_errno(text: &str) -> String {
    const MARK: &str = " (os error ";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(MARK) {
        let (before, after) = rest.split_at(i);
        let tail = after.get(MARK.len()..).unwrap_or("");
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        out.push_str(before);
        match tail.get(digits..) {
            Some(end) if digits > 0 && end.starts_with(')') => {
                rest = end.get(1..).unwrap_or("");
            }
            _ => {
                out.push_str(MARK);
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Print the report; the exit status is 0 when there is no error.
pub fn run(path: &Path, opts: &Options, out: &mut impl Write) -> std::io::Result<u8> {
    let p = match policy::load(path, &policy::PlainReader) {
        Ok(p) => p,
        Err(e) => {
            for d in &e.0 {
                writeln!(out, "{d}")?;
            }
            writeln!(out, "{} error(s)", e.0.len())?;
            return Ok(1);
        }
    };
    let gate = std::fs::canonicalize(host::gate_binary()).unwrap_or_else(|_| host::gate_binary());
    let (whos, mut report) = accounts(path, &gate, opts);
    report.extend(general(&p, &gate, &whos));
    for who in &whos {
        report.extend(as_account(&p, &gate, who, &opts.syslog_socket));
    }
    if !opts.compile {
        report.extend(compiled::stale(path));
    }
    if opts.verbose {
        for (name, value) in &report.facts {
            writeln!(out, "{name:<16}{value}")?;
        }
    }
    for f in &report.findings {
        writeln!(
            out,
            "{}: {}",
            if f.error { "error" } else { "warning" },
            without_errno(&f.text)
        )?;
        if let Some(fix) = &f.fix {
            writeln!(out, "  fix: {fix}")?;
        }
    }
    let errors = report.errors();
    if errors > 0 {
        writeln!(out, "{errors} error(s)")?;
        return Ok(1);
    }
    if opts.compile {
        match compiled::compile(&p) {
            Ok(line) => writeln!(out, "{line}")?,
            Err(e) => {
                writeln!(out, "error: {e}")?;
                return Ok(1);
            }
        }
    }
    let names: Vec<&str> = whos.iter().map(|w| w.account.name.as_str()).collect();
    writeln!(
        out,
        "{}: OK ({} modules, {} clients, {} triggers, {} file(s); {} {})",
        path.display(),
        p.modules.len(),
        p.clients.len(),
        p.triggers.len(),
        p.files.len(),
        if names.len() == 1 {
            "account"
        } else {
            "accounts"
        },
        names.join(", ")
    )?;
    Ok(0)
}

/// The accounts to check for (see the module's documentation).
fn accounts(path: &Path, gate: &Path, opts: &Options) -> (Vec<Who>, Report) {
    let mut report = Report::default();
    let uses = users::accounts_using(path, gate);
    if let Some(a) = &opts.account {
        let mine = uses.into_iter().filter(|u| u.account == a.name).collect();
        return (vec![Who::of(a.clone(), mine)], report);
    }
    let mut whos: Vec<Who> = Vec::new();
    for u in uses {
        if let Some(w) = whos.iter_mut().find(|w| w.account.name == u.account) {
            w.uses.push(u);
        } else if let Some(a) = Account::named(&u.account) {
            whos.push(Who::of(a, vec![u]));
        }
    }
    if whos.is_empty() {
        let me = Account::current();
        if me.uid == 0 {
            report.warning(
                format!(
                    "no ~/.ssh/authorized_keys runs the gate with {} yet, so this is checked for root, the user running check",
                    path.display()
                ),
                "name the SSH account: rsync-gate check --account NAME".to_string(),
            );
        }
        whos.push(Who::of(me, Vec::new()));
    } else if whos.len() > 1 {
        let names: Vec<&str> = whos.iter().map(|w| w.account.name.as_str()).collect();
        report.error(
            format!(
                "the accounts {} all run the gate with {}: they share its lock_dir, whose lock files and daemon configs belong to whichever comes first, so the others' sessions fail",
                names.join(", "),
                path.display()
            ),
            "give each account its own policy, audit log and lock_dir (README: \"Several SSH accounts on one server\")".to_string(),
        );
    }
    (whos, report)
}

/// What holds whoever the account is.
fn general(p: &Policy, gate: &Path, whos: &[Who]) -> Report {
    let mut r = Report::default();
    r.fact(
        "policy",
        p.files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    );
    for f in &p.files {
        if let Err(e) = trust::check_path(f, 0) {
            // "FILE is owned by ...": the file named once.
            let file = f.display().to_string();
            let what = if e.starts_with(&format!("{file} ")) {
                e
            } else {
                format!("{file}: {e}")
            };
            r.error(
                format!("{what} (serve refuses a policy the account could modify)"),
                trust_fix(f, 0, "root:root", false)
                    .unwrap_or_else(|| format!("chown root:root {}", q(f))),
            );
        }
    }
    // The gate's own path, as authorized-keys writes it, and every other
    // one the accounts' authorized_keys lines run.
    r.fact("gate", gate.display().to_string());
    if let Some(e) = authorized_keys::gate_path_unsafe(gate) {
        r.error(
            format!(
                "the gate's own path {} is not safe to put in authorized_keys: {e}",
                gate.display()
            ),
            authorized_keys::install_fix(gate),
        );
    }
    let mut seen = vec![gate.to_path_buf()];
    for u in whos.iter().flat_map(|w| &w.uses) {
        if seen.contains(&u.program) {
            continue;
        }
        seen.push(u.program.clone());
        if let Some(e) = authorized_keys::gate_path_unsafe(&u.program) {
            r.error(
                format!(
                    "{}:{} runs {}, which is not safe: {e}",
                    u.file.display(),
                    u.line,
                    u.program.display()
                ),
                authorized_keys::install_fix(&u.program),
            );
        }
    }
    for m in p.modules.values() {
        if m.follow_links && p.gate.sandbox == policy::Sandbox::Off {
            r.warning(
                format!(
                    "{}: module '{}': follow_links = true with sandbox = \"off\": -L/-k follow symlinks inside the module wherever they lead, and only the kernel sandbox keeps those reads inside it",
                    m.origin, m.name
                ),
                "set sandbox = \"best-effort\" (or follow_links = false)".to_string(),
            );
        }
        if m.writable() && m.specials && !m.devices && p.gate.sandbox == policy::Sandbox::Off {
            r.warning(
                format!(
                    "{}: module '{}': specials = true with sandbox = \"off\": only the kernel sandbox keeps device nodes out while FIFOs and sockets come in, so pushes with -D (every rsync -a) are refused",
                    m.origin, m.name
                ),
                "set sandbox = \"best-effort\" (or specials = false)".to_string(),
            );
        }
    }
    for c in p.clients.values() {
        if let Some(key) = &c.key
            && let Err(e) = authorized_keys::check_key(key)
        {
            r.error(
                format!(
                    "{}: client '{}': its key does not parse ({e}): sshd ignores its authorized_keys line, so the client cannot log in",
                    c.origin, c.name
                ),
                "key = the whole line of the client's public key file (e.g. ~/.ssh/id_ed25519.pub)".to_string(),
            );
        }
    }
    rsync(p, &mut r);
    let abi = host::landlock_abi();
    r.fact(
        "landlock",
        match abi {
            Some(v) => format!("ABI {v} (sandbox = \"{}\")", p.gate.sandbox),
            None => format!(
                "not available in this kernel (sandbox = \"{}\")",
                p.gate.sandbox
            ),
        },
    );
    if abi.is_none() && p.gate.sandbox == policy::Sandbox::Required {
        r.error(
            "sandbox = \"required\", but this kernel has no Landlock: every transfer is refused (sandbox_unavailable)".to_string(),
            "boot a kernel with Landlock (Linux 5.13 or later, landlock in lsm=), or set sandbox = \"best-effort\"".to_string(),
        );
    }
    let log_dir = p.gate.audit_log.parent().unwrap_or(Path::new("/"));
    if !log_dir.is_dir() {
        r.error(
            format!(
                "audit_log: directory {} does not exist (every session would be refused)",
                log_dir.display()
            ),
            format!("install -d -o root -g root -m 0755 {}", q(log_dir)),
        );
    } else if let Err(e) = trust::check_private_dir(log_dir, 0) {
        r.error(
            format!("audit_log: {e} (every session would be refused)"),
            trust_fix(log_dir, 0, "root:root", true)
                .unwrap_or_else(|| format!("chown root:root {}", q(log_dir))),
        );
    }
    r
}

/// rsync: present, runnable, and what it supports.
fn rsync(p: &Policy, r: &mut Report) {
    let rsync = &p.gate.rsync;
    match std::fs::metadata(rsync) {
        Ok(md) if md.is_file() => match host::rsync::probe(rsync) {
            Some(caps) => {
                let yes = |b: bool| if b { "yes" } else { "no" };
                r.fact(
                    "rsync",
                    format!(
                        "{}: {} (--confine-root: {}, --drop-D: {})",
                        rsync.display(),
                        rsync_version(rsync).unwrap_or_else(|| "version unknown".into()),
                        yes(caps.confine_root),
                        yes(caps.drop_d)
                    ),
                );
                if !caps.confine_root {
                    r.warning(
                        format!(
                            "{}: has no --confine-root (rsync < 3.5): served without it, relying on the gate's own checks; --files-from is refused",
                            rsync.display()
                        ),
                        "install rsync 3.5 or later".to_string(),
                    );
                }
                if !caps.drop_d {
                    r.warning(
                        format!(
                            "{}: has no --drop-D (rsync < 3.5): pushes with -D are refused unless devices = true",
                            rsync.display()
                        ),
                        "install rsync 3.5 or later".to_string(),
                    );
                }
            }
            None => r.error(
                format!("{}: cannot be run", rsync.display()),
                format!("chmod 0755 {}", q(rsync)),
            ),
        },
        _ => r.error(
            format!("{}: rsync not found", rsync.display()),
            "apt-get install rsync, or set rsync = to its absolute path".to_string(),
        ),
    }
}

/// The first line of `rsync --version` (clean environment).
fn rsync_version(rsync: &Path) -> Option<String> {
    let out = std::process::Command::new(rsync)
        .arg("--version")
        .env_clear()
        .env("PATH", host::CHILD_PATH)
        .env("HOME", host::CHILD_HOME)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next()?.split_whitespace().collect::<Vec<_>>();
    Some(line.join(" "))
}

/// The account's checks, asked as the account when this process can act
/// as it (it is root, or it is the account).
fn as_account(p: &Policy, gate: &Path, who: &Who, syslog_socket: &Path) -> Report {
    let me = nix::unistd::geteuid().as_raw();
    let ctx = |acting| account::Ctx {
        policy: p,
        who,
        gate,
        syslog_socket,
        acting,
    };
    if me == who.account.uid && me != 0 {
        return account::check(&ctx(true));
    }
    if me != 0 {
        let mut r = Report::default();
        r.warning(
            format!(
                "check runs as uid {me}, neither root nor {}: what {} may read, write and run was judged from ownership and modes alone, and its login shell was not tried",
                who.account.name, who.account.name
            ),
            format!(
                "run check as root, or as {} (sudo -u {} rsync-gate check)",
                who.account.name, who.account.name
            ),
        );
        r.extend(account::check(&ctx(false)));
        return r;
    }
    let acted = crate::sys::run_as(who.account.uid, who.gid, &who.groups, || {
        serde_json::to_vec(&account::check(&ctx(true))).unwrap_or_default()
    })
    .map_err(|e| e.to_string())
    .and_then(|bytes| serde_json::from_slice::<Report>(&bytes).map_err(|e| e.to_string()));
    match acted {
        Ok(r) => r,
        Err(e) => {
            let mut r = Report::default();
            r.warning(
                format!(
                    "cannot act as {} ({e}): judged from ownership and modes alone",
                    who.account.name
                ),
                "run check as the account".to_string(),
            );
            r.extend(account::check(&ctx(false)));
            r
        }
    }
}
