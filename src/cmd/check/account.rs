//! What `serve` will be allowed to do as one SSH account, asked as that
//! account (in a child process that has switched to it, see
//! [`crate::sys::run_as`], or in this process when it is the account):
//! read the policy, append to the audit log, create and write in
//! `lock_dir`, run rsync, the trigger jobs and the gate itself, and start
//! the forced command through the login shell. When `check` can act as
//! neither root nor the account, access is judged from ownership and modes
//! ([`Ctx::acting`] false) and the login shell is not run.

use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::unistd::AccessFlags;

use super::{Report, Who, q, trust_fix};
use crate::deny::DenyReason;
use crate::policy::{self, Policy};
use crate::{audit, confine, plan, trust};

/// What the account's checks need.
#[derive(Debug)]
pub struct Ctx<'a> {
    pub policy: &'a Policy,
    pub who: &'a Who,
    /// The gate's own path (the one `authorized-keys` writes).
    pub gate: &'a Path,
    pub syslog_socket: &'a Path,
    /// This process is the account: access is tried, not guessed.
    pub acting: bool,
}

impl Ctx<'_> {
    fn name(&self) -> &str {
        &self.who.account.name
    }

    fn uid(&self) -> u32 {
        self.who.account.uid
    }

    /// `NAME:GROUP`, for chown.
    fn owner(&self) -> String {
        format!("{}:{}", self.who.account.name, self.who.group)
    }

    /// May the account do `how` on `path`? Tried with access(2) when
    /// acting; otherwise from the mode bits of `path` alone.
    fn may(&self, path: &Path, how: AccessFlags) -> Result<(), String> {
        if self.acting {
            return nix::unistd::access(path, how).map_err(|e| std::io::Error::from(e).to_string());
        }
        let md = std::fs::metadata(path).map_err(|e| e.to_string())?;
        let mut bits = 0;
        if how.contains(AccessFlags::R_OK) {
            bits |= 0o4;
        }
        if how.contains(AccessFlags::W_OK) {
            bits |= 0o2;
        }
        if how.contains(AccessFlags::X_OK) {
            bits |= 0o1;
        }
        if self.uid() == 0 {
            return if bits & 0o1 == 0 || md.mode() & 0o111 != 0 {
                Ok(())
            } else {
                Err("Permission denied (os error 13)".into())
            };
        }
        let shift = if md.uid() == self.uid() {
            6
        } else if self.who.groups.contains(&md.gid()) || md.gid() == self.who.gid {
            3
        } else {
            0
        };
        if (md.mode() >> shift) & bits == bits {
            Ok(())
        } else {
            Err("Permission denied (os error 13)".into())
        }
    }

    /// The directory above `path` the account cannot search, if any.
    fn blocked_above(&self, path: &Path) -> Option<PathBuf> {
        let mut dirs: Vec<&Path> = path.ancestors().skip(1).collect();
        dirs.reverse();
        dirs.into_iter()
            .find(|d| self.may(d, AccessFlags::X_OK).is_err())
            .map(Path::to_path_buf)
    }

    /// The one-line fix for a file the account must read (`mode`) or run.
    fn reach_fix(&self, path: &Path, mode: &str) -> String {
        match self.blocked_above(path) {
            Some(d) => format!("chmod o+x {}", q(&d)),
            None => format!("chmod {mode} {}", q(path)),
        }
    }
}

/// Every check for the account.
pub fn check(ctx: &Ctx<'_>) -> Report {
    let mut r = Report::default();
    let who = ctx.who;
    r.fact(
        "account",
        format!(
            "{} (uid {}, gid {}, groups {})",
            who.account.name,
            who.account.uid,
            who.gid,
            who.groups
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ),
    );
    for u in &who.uses {
        r.fact(
            "authorized_keys",
            format!(
                "{}:{} runs {} for client {}",
                u.file.display(),
                u.line,
                u.program.display(),
                u.client.as_deref().unwrap_or("?")
            ),
        );
    }
    policy_as_account(ctx, &mut r);
    audit_log(ctx, &mut r);
    lock_dir(ctx, &mut r);
    syslog(ctx, &mut r);
    modules(ctx, &mut r);
    programs(ctx, &mut r);
    for t in ctx.policy.triggers.values() {
        trigger(ctx, t, &mut r);
    }
    if ctx.acting {
        login_shell(ctx, &mut r);
    }
    r
}

/// `serve` loads the policy as the account (`policy::load_checked`).
fn policy_as_account(ctx: &Ctx<'_>, r: &mut Report) {
    if !ctx.acting {
        return;
    }
    let p = ctx.policy;
    let mut unreadable = false;
    for f in &p.files {
        if let Err(e) = std::fs::File::open(f) {
            unreadable = true;
            r.error(
                format!(
                    "{} cannot read the policy file {} ({e}): every client is told \"the server's policy is invalid\"",
                    ctx.name(),
                    f.display()
                ),
                ctx.reach_fix(f, "0644"),
            );
        }
    }
    if unreadable {
        return;
    }
    match policy::load_checked(&p.source) {
        Ok(q) if q.files == p.files => {}
        Ok(q) => r.error(
            format!(
                "as {} the policy is made of other files ({}) than as the user running check ({}): a drop-in directory it cannot read?",
                ctx.name(),
                show_paths(&q.files),
                show_paths(&p.files)
            ),
            "chmod 0755 the directories `include` names, and 0644 the files in them".to_string(),
        ),
        // Reported once for everyone (the files' ownership).
        Err(policy::LoadError::Unsafe(_)) => {}
        Err(policy::LoadError::Invalid(e)) => r.error(
            format!(
                "as {} the policy does not load: every client is told \"the server's policy is invalid\": {}",
                ctx.name(),
                e.0.first().map(ToString::to_string).unwrap_or_default()
            ),
            "make every policy file and the directories above it readable by the account (0644 and 0755)".to_string(),
        ),
    }
}

fn show_paths(v: &[PathBuf]) -> String {
    v.iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `serve` appends to the audit log (`AuditLog::open_checked`), creating
/// it only as root; nothing runs when it cannot.
fn audit_log(ctx: &Ctx<'_>, r: &mut Report) {
    let log = &ctx.policy.gate.audit_log;
    let dir = log.parent().unwrap_or(Path::new("/"));
    if trust::check_private_dir(dir, 0).is_err() {
        // Reported once for everyone.
        return;
    }
    let uid = ctx.uid();
    let refused = "every session is refused (\"the audit log cannot be written\")";
    let log_fix = if uid == 0 {
        format!("chown root:root {l} && chmod 0640 {l}", l = q(log))
    } else {
        format!("chown {} {l} && chmod 0600 {l}", ctx.owner(), l = q(log))
    };
    let md = match std::fs::symlink_metadata(log) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if uid == 0 {
                r.fact(
                    "audit_log",
                    format!("{} (root creates it, 0640)", log.display()),
                );
            } else {
                r.error(
                    format!(
                        "audit_log {} does not exist, and {} cannot create it in {} (root's): {refused}",
                        log.display(),
                        ctx.name(),
                        dir.display()
                    ),
                    format!(
                        "[ -e {l} ] || install -o {} -g {} -m 0600 /dev/null {l}",
                        ctx.name(),
                        ctx.who.group,
                        l = q(log)
                    ),
                );
            }
            return;
        }
        Err(e) => {
            r.error(
                format!("audit_log {}: {e}: {refused}", log.display()),
                log_fix,
            );
            return;
        }
    };
    if let Err(e) = audit::check_log_file(&md, uid) {
        let fix = if md.file_type().is_file() {
            log_fix
        } else {
            format!(
                "rm {l} && install -o {} -g {} -m 0600 /dev/null {l}",
                ctx.name(),
                ctx.who.group,
                l = q(log)
            )
        };
        r.error(
            format!(
                "audit_log: {}: {e} (every session would be refused)",
                log.display()
            ),
            fix,
        );
        return;
    }
    let writable = if ctx.acting {
        // As serve opens it, without creating it and without writing.
        std::fs::OpenOptions::new()
            .append(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(log)
            .map(drop)
            .map_err(|e| e.to_string())
    } else {
        ctx.may(log, AccessFlags::W_OK)
    };
    match writable {
        Ok(()) => r.fact(
            "audit_log",
            format!(
                "{} (uid {}, mode {:o})",
                log.display(),
                md.uid(),
                md.mode() & 0o7777
            ),
        ),
        Err(e) => r.error(
            format!(
                "{} cannot append to the audit log {} ({e}): {refused}",
                ctx.name(),
                log.display()
            ),
            log_fix,
        ),
    }
}

/// The fix that makes `lock_dir` the account's: a tmpfiles.d line under
/// `/run` (a tmpfs, emptied at boot), `install -d` elsewhere.
fn lock_dir_fix(ctx: &Ctx<'_>) -> String {
    let dir = &ctx.policy.gate.lock_dir;
    if dir.starts_with("/run") {
        let conf = format!("/etc/tmpfiles.d/rsync-gate-{}.conf", ctx.name());
        format!(
            "echo 'd {} 0755 {} {} -' > {conf} && systemd-tmpfiles --create {conf}",
            dir.display(),
            ctx.name(),
            ctx.who.group
        )
    } else {
        format!(
            "install -d -o {} -g {} -m 0755 {}",
            ctx.name(),
            ctx.who.group,
            q(dir)
        )
    }
}

/// `lock_dir` (daemon configs, lock files, trigger state): `serve` refuses
/// every session when it is not the account's and root's alone, and
/// `host::` sessions, modules with `max_connections` or `transfer_log` and
/// triggers fail when the account cannot create or write what goes there.
fn lock_dir(ctx: &Ctx<'_>, r: &mut Report) {
    let dir = &ctx.policy.gate.lock_dir;
    let uid = ctx.uid();
    let fails = "host:: sessions, modules with max_connections or transfer_log and triggers fail (\"internal error on the server\")";
    let md = match std::fs::symlink_metadata(dir) {
        Ok(md) => md,
        Err(_) => {
            if uid == 0 {
                r.fact("lock_dir", format!("{} (root creates it)", dir.display()));
                return;
            }
            let Some(parent) = dir.ancestors().skip(1).find(|a| a.exists()) else {
                return;
            };
            if let Err(e) = ctx.may(parent, AccessFlags::W_OK | AccessFlags::X_OK) {
                r.error(
                    format!(
                        "lock_dir {} does not exist, and {} cannot create it in {} ({e}): {fails}",
                        dir.display(),
                        ctx.name(),
                        parent.display()
                    ),
                    lock_dir_fix(ctx),
                );
            } else if let Err(e) = trust::check_path(parent, uid) {
                r.error(
                    format!(
                        "lock_dir {} would be created where others can change it: {e} (serve would then refuse every session: lock_dir_unsafe)",
                        dir.display()
                    ),
                    lock_dir_fix(ctx),
                );
            } else {
                r.fact(
                    "lock_dir",
                    format!("{} ({} creates it)", dir.display(), ctx.name()),
                );
            }
            return;
        }
    };
    if !md.is_dir() {
        r.error(
            format!("lock_dir {} is not a directory: {fails}", dir.display()),
            format!("rm {} && {}", q(dir), lock_dir_fix(ctx)),
        );
        return;
    }
    if let Err(e) = trust::check_private_dir(dir, uid) {
        r.error(
            format!("lock_dir: {e} (serve refuses every session: lock_dir_unsafe)"),
            trust_fix(dir, uid, &ctx.owner(), true).unwrap_or_else(|| lock_dir_fix(ctx)),
        );
        return;
    }
    if let Err(e) = ctx.may(dir, AccessFlags::W_OK | AccessFlags::X_OK) {
        r.error(
            format!(
                "{} cannot write its lock files and daemon configs in lock_dir {} (owned by {}, mode {:o}: {e}): {fails}",
                ctx.name(),
                dir.display(),
                trust::owner_name(md.uid()),
                md.mode() & 0o7777
            ),
            if dir.starts_with("/run") {
                lock_dir_fix(ctx)
            } else {
                format!("chown {} {}", ctx.owner(), q(dir))
            },
        );
        return;
    }
    r.fact(
        "lock_dir",
        format!(
            "{} (uid {}, mode {:o})",
            dir.display(),
            md.uid(),
            md.mode() & 0o7777
        ),
    );
    // What the gate creates there, where it exists already.
    let mut subs: Vec<(PathBuf, String, bool)> = vec![(
        dir.join("daemon"),
        "every host:: session fails (\"internal error on the server\")".into(),
        false,
    )];
    if ctx.policy.modules.values().any(|m| m.transfer_log) {
        subs.push((
            dir.join(plan::filelog::LOG_DIR),
            "sessions of modules with transfer_log are refused (\"internal error on the server\")"
                .into(),
            false,
        ));
    }
    if !ctx.policy.triggers.is_empty() {
        subs.push((dir.join("triggers"), "every trigger fails".into(), false));
    }
    for t in ctx.policy.triggers.values() {
        subs.push((
            plan::trigger::state_dir(dir, &t.name),
            format!("trigger '{}' fails", t.name),
            true,
        ));
    }
    for (sub, what, own) in subs {
        let Ok(md) = std::fs::symlink_metadata(&sub) else {
            continue;
        };
        let fix = format!("chown -R {} {}", ctx.owner(), q(&sub));
        if let Err(e) = trust::check_private_dir(&sub, uid) {
            r.error(format!("{e}: {what}"), fix);
        } else if own && md.uid() != uid {
            r.error(
                format!(
                    "{} belongs to {}, not {}: {what}",
                    sub.display(),
                    trust::owner_name(md.uid()),
                    ctx.name()
                ),
                fix,
            );
        } else if let Err(e) = ctx.may(&sub, AccessFlags::W_OK | AccessFlags::X_OK) {
            r.error(
                format!(
                    "{} cannot write in {} ({e}): {what}",
                    ctx.name(),
                    sub.display()
                ),
                fix,
            );
        }
    }
    for m in ctx
        .policy
        .modules
        .values()
        .filter(|m| m.max_connections > 0)
    {
        let lock = plan::lock_file(dir, &m.name);
        let Ok(md) = std::fs::symlink_metadata(&lock) else {
            continue;
        };
        let fix = format!("chown {} {}", ctx.owner(), q(&lock));
        let what = format!("every session of module '{}' fails", m.name);
        if !md.is_file() || !trust::root_or(md.uid(), uid) {
            r.error(
                format!(
                    "{} is not a regular file of {}'s or root's: {what}",
                    lock.display(),
                    ctx.name()
                ),
                format!("rm {}", q(&lock)),
            );
        } else if let Err(e) = ctx.may(&lock, AccessFlags::R_OK | AccessFlags::W_OK) {
            r.error(
                format!(
                    "{} cannot open {} ({e}): {what}",
                    ctx.name(),
                    lock.display()
                ),
                fix,
            );
        }
    }
}

/// `syslog = true`: the summaries go to the socket, or nowhere (silently:
/// a missing syslog never blocks a session).
fn syslog(ctx: &Ctx<'_>, r: &mut Report) {
    if !ctx.policy.gate.syslog {
        r.fact("syslog", "off".to_string());
        return;
    }
    let socket = ctx.syslog_socket;
    let reached = if ctx.acting {
        std::os::unix::net::UnixDatagram::unbound()
            .and_then(|s| s.connect(socket))
            .map_err(|e| e.to_string())
    } else {
        std::fs::metadata(socket)
            .map(drop)
            .map_err(|e| e.to_string())
    };
    match reached {
        Ok(()) => r.fact("syslog", format!("{}", socket.display())),
        Err(e) => r.error(
            format!(
                "syslog = true, but {} takes no messages from {} ({e}): the syslog summaries are lost (the audit log still has every record)",
                socket.display(),
                ctx.name()
            ),
            format!(
                "run a syslog daemon that listens on {} (apt-get install rsyslog), or set syslog = false",
                socket.display()
            ),
        ),
    }
}

/// Each module as `serve` checks it for the account, then whether the
/// account can read it (pulls) and write it (pushes).
fn modules(ctx: &Ctx<'_>, r: &mut Report) {
    let p = ctx.policy;
    let account = &ctx.who.account;
    let protected = p.protected_paths(ctx.gate);
    for m in p.modules.values() {
        let root = match confine::check_module(m, account, &protected) {
            Ok(root) => root,
            Err(reason) => {
                let fix = match &reason {
                    DenyReason::ModuleUnsafe { .. } => {
                        trust_fix(&m.path, account.uid, &ctx.owner(), false).unwrap_or_else(
                            || "keep the gate's own files out of writable modules".to_string(),
                        )
                    }
                    DenyReason::ModuleMissing { .. } => format!(
                        "install -d -o {} -m 0755 {} (or correct the module's path)",
                        if m.writable() {
                            format!("{} -g {}", ctx.who.account.name, ctx.who.group)
                        } else {
                            "root -g root".to_string()
                        },
                        q(&m.path)
                    ),
                    _ => "move the account's home (and ~/.ssh) out of the module, or make the module read-only".to_string(),
                };
                r.error(
                    format!(
                        "{}: module '{}': {} (serve refuses the module)",
                        m.origin,
                        m.name,
                        reason.server_detail()
                    ),
                    fix,
                );
                continue;
            }
        };
        if m.readable()
            && let Err(e) = ctx.may(&root, AccessFlags::R_OK | AccessFlags::X_OK)
        {
            r.error(
                format!(
                    "{}: module '{}': {} cannot read {} ({e}): every pull fails",
                    m.origin,
                    m.name,
                    ctx.name(),
                    root.display()
                ),
                ctx.reach_fix(&root, "o+rx"),
            );
        }
        if m.writable()
            && let Err(e) = ctx.may(&root, AccessFlags::W_OK | AccessFlags::X_OK)
        {
            r.error(
                format!(
                    "{}: module '{}': {} cannot write in {} ({e}): pushes into it fail",
                    m.origin,
                    m.name,
                    ctx.name(),
                    root.display()
                ),
                format!("chown {} {}", ctx.owner(), q(&root)),
            );
        }
    }
    // Daemon-mode configs must be expressible for every client.
    for c in p.clients.values().filter(|c| !c.modules.is_empty()) {
        let mods: Vec<(&policy::Module, PathBuf)> =
            p.client_modules(c).map(|m| (m, m.path.clone())).collect();
        let cfg = plan::daemon::ConfigContext {
            gate: ctx.gate,
            policy_path: &p.source,
            client: &c.name,
            account,
            account_gid: ctx.who.gid,
        };
        if let Err(e) = plan::daemon::config_text(&cfg, &p.gate.lock_dir, &mods) {
            r.error(
                format!(
                    "{}: client '{}': host::module would fail: {e}",
                    c.origin, c.name
                ),
                "give the module's uid/gid only under a root account".to_string(),
            );
        }
    }
}

/// rsync and the gate itself (and every gate path the account's
/// authorized_keys lines name) must be runnable by the account.
fn programs(ctx: &Ctx<'_>, r: &mut Report) {
    let rsync = &ctx.policy.gate.rsync;
    // Missing altogether: reported once for everyone.
    let there = match std::fs::metadata(rsync) {
        Ok(md) => md.is_file(),
        Err(e) => e.kind() == std::io::ErrorKind::PermissionDenied,
    };
    if there && let Err(e) = ctx.may(rsync, AccessFlags::X_OK) {
        r.error(
            format!(
                "{} cannot run rsync {} ({e}): every transfer fails",
                ctx.name(),
                rsync.display()
            ),
            ctx.reach_fix(rsync, "0755"),
        );
    }
    let mut gates: Vec<(PathBuf, Option<String>)> = vec![(ctx.gate.to_path_buf(), None)];
    for u in &ctx.who.uses {
        if !gates.iter().any(|(g, _)| *g == u.program) {
            gates.push((
                u.program.clone(),
                Some(format!("{}:{}", u.file.display(), u.line)),
            ));
        }
    }
    for (g, line) in gates {
        if let Err(e) = ctx.may(&g, AccessFlags::X_OK) {
            let whose = match &line {
                Some(l) => format!("the gate {} that {l} runs", g.display()),
                None => format!("the gate {}", g.display()),
            };
            r.error(
                format!(
                    "{} cannot run {whose} ({e}): every login with a key of this policy fails",
                    ctx.name()
                ),
                super::super::authorized_keys::install_fix(&g),
            );
        }
    }
}

/// A trigger's job must be runnable, and its log writable, by the account.
pub fn trigger(ctx: &Ctx<'_>, t: &policy::Trigger, r: &mut Report) {
    let program = t.command.first().map(PathBuf::from).unwrap_or_default();
    let fix = ctx.reach_fix(&program, "0755");
    match std::fs::metadata(&program) {
        Ok(md) if md.is_file() => {
            if let Err(e) = ctx.may(&program, AccessFlags::X_OK) {
                r.error(
                    format!(
                        "{}: trigger '{}': {} cannot be executed by {} ({e})",
                        t.origin,
                        t.name,
                        program.display(),
                        ctx.name()
                    ),
                    fix,
                );
            }
        }
        Ok(_) => r.error(
            format!(
                "{}: trigger '{}': {} is not a program file",
                t.origin,
                t.name,
                program.display()
            ),
            "name the job's program file in command".to_string(),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => r.error(
            format!(
                "{}: trigger '{}': {} cannot be executed by {} ({e})",
                t.origin,
                t.name,
                program.display(),
                ctx.name()
            ),
            fix,
        ),
        Err(e) => r.error(
            format!(
                "{}: trigger '{}': {}: {e}",
                t.origin,
                t.name,
                program.display()
            ),
            "install the job, or name it by its absolute path in command".to_string(),
        ),
    }
    let Some(log) = &t.log else { return };
    let dir = log.parent().unwrap_or(Path::new("/"));
    match std::fs::symlink_metadata(log) {
        Ok(md) if md.is_file() => {
            if let Err(e) = ctx.may(log, AccessFlags::W_OK) {
                r.error(
                    format!(
                        "{}: trigger '{}': {} cannot be written by {} ({e})",
                        t.origin,
                        t.name,
                        log.display(),
                        ctx.name()
                    ),
                    format!("chown {} {}", ctx.owner(), q(log)),
                );
            } else if md.mode() & 0o002 != 0 {
                r.error(
                    format!(
                        "{}: trigger '{}': {} is writable by others",
                        t.origin,
                        t.name,
                        log.display()
                    ),
                    format!("chmod o-w {}", q(log)),
                );
            }
        }
        Ok(_) => r.error(
            format!(
                "{}: trigger '{}': {} is not a regular file",
                t.origin,
                t.name,
                log.display()
            ),
            "name a regular file (or a new one) in log".to_string(),
        ),
        Err(_) => {
            if let Err(e) = ctx.may(dir, AccessFlags::W_OK | AccessFlags::X_OK) {
                r.error(
                    format!(
                        "{}: trigger '{}': the log {} does not exist and {} cannot create it in {} ({e})",
                        t.origin,
                        t.name,
                        log.display(),
                        ctx.name(),
                        dir.display()
                    ),
                    format!(
                        "[ -e {l} ] || install -o {} -g {} -m 0640 /dev/null {l}",
                        ctx.name(),
                        ctx.who.group,
                        l = q(log)
                    ),
                );
            }
        }
    }
}

/// sshd runs the forced command as `SHELL -c COMMAND`: run `SHELL -c true`
/// the same way and see that it succeeds and prints nothing.
fn login_shell(ctx: &Ctx<'_>, r: &mut Report) {
    let name = ctx.name();
    let fix = format!("usermod -s /bin/sh {name}");
    let Some(shell) = &ctx.who.shell else {
        r.warning(
            format!("{name} has no passwd entry: its login shell was not tried"),
            "create the account with useradd".to_string(),
        );
        return;
    };
    let home = ctx
        .who
        .account
        .home
        .clone()
        .unwrap_or_else(|| PathBuf::from("/"));
    let ran = super::shell::run(shell, name, ctx.uid(), &home, "true");
    let cmd = format!(
        "{} -c true",
        shell.file_name().map_or_else(
            || shell.display().to_string(),
            |n| n.to_string_lossy().into_owned()
        )
    );
    let said = |s: &str| {
        let line = s
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        crate::escape::display(&line.chars().take(120).collect::<String>())
    };
    if let Some(e) = &ran.not_started {
        r.error(
            format!(
                "{name}'s login shell {} cannot be started ({e}): sshd runs the gate through it, so every login fails",
                shell.display()
            ),
            fix,
        );
        return;
    }
    if ran.timed_out {
        r.error(
            format!(
                "{name}'s login shell {} did not finish `{cmd}` within {} s: every login hangs",
                shell.display(),
                super::shell::LIMIT.as_secs()
            ),
            format!("{fix} (and keep its startup files from waiting)"),
        );
        return;
    }
    if ran.status != Some(0) {
        let how = match (ran.status, ran.signal) {
            (Some(c), _) => format!("exit {c}"),
            (None, Some(s)) => format!("signal {s}"),
            _ => "failure".to_string(),
        };
        let out = if ran.stdout.trim().is_empty() {
            &ran.stderr
        } else {
            &ran.stdout
        };
        r.error(
            format!(
                "{name}'s login shell {} fails `{cmd}` ({how}{}): sshd runs the gate through it, so every login fails",
                shell.display(),
                if out.trim().is_empty() {
                    String::new()
                } else {
                    format!(": \"{}\"", said(out))
                }
            ),
            fix,
        );
        return;
    }
    if !ran.stdout.is_empty() {
        r.error(
            format!(
                "{name}'s login shell {} prints \"{}\" for `{cmd}` (a startup file such as ~/.bashrc?): it goes down the rsync protocol channel, so every session fails (\"protocol version mismatch -- is your shell clean?\")",
                shell.display(),
                said(&ran.stdout)
            ),
            format!("{fix} (or make its startup files print nothing when not interactive)"),
        );
    }
    if !ran.stderr.is_empty() {
        r.warning(
            format!(
                "{name}'s login shell {} prints \"{}\" on stderr for `{cmd}`: every client sees it",
                shell.display(),
                said(&ran.stderr)
            ),
            format!("{fix} (or make its startup files print nothing when not interactive)"),
        );
    }
    if let Some(e) = &ran.no_home {
        r.warning(
            format!(
                "{name}'s home {} cannot be entered ({e}): sshd says \"Could not chdir to home directory\" to every client",
                home.display()
            ),
            format!("install -d -o root -g root -m 0755 {}", q(&home)),
        );
    }
    if ran.status == Some(0) && ran.stdout.is_empty() {
        r.fact(
            "shell",
            format!(
                "{}: `{cmd}` prints nothing and exits 0 ({} ms)",
                shell.display(),
                ran.millis
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::Account;
    use std::os::unix::fs::PermissionsExt;

    fn nobody() -> Who {
        Who {
            account: Account {
                uid: 65534,
                name: "nobody".into(),
                home: None,
            },
            gid: 65534,
            group: "nogroup".into(),
            groups: vec![65534],
            shell: None,
            uses: Vec::new(),
        }
    }

    #[test]
    fn triggers_are_checked_for_the_account() {
        let d = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(d.path()).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        let job = base.join("job");
        std::fs::write(&job, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&job, std::fs::Permissions::from_mode(0o644)).unwrap();
        let text = format!(
            "[triggers.t]\ncommand = [\"{}\"]\nlog = \"{}/logs/t.log\"\n[triggers.u]\ncommand = [\"{}/missing\"]\n\
             [clients.a]\ntrigger = \"t\"\n[clients.b]\ntrigger = \"u\"\n",
            job.display(),
            base.display(),
            base.display()
        );
        let p = policy::load_text(&base.join("p.toml"), &text).unwrap();
        let who = nobody();
        let ctx = Ctx {
            policy: &p,
            who: &who,
            gate: Path::new("/usr/local/bin/rsync-gate"),
            syslog_socket: Path::new("/dev/log"),
            acting: false,
        };
        let texts = |t: &policy::Trigger| {
            let mut r = Report::default();
            trigger(&ctx, t, &mut r);
            r.findings
                .into_iter()
                .map(|f| format!("{} / {}", f.text, f.fix.unwrap_or_default()))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let t = texts(&p.triggers["t"]);
        assert!(t.contains("cannot be executed by nobody"), "{t}");
        assert!(t.contains(&format!("chmod 0755 {}", job.display())), "{t}");
        assert!(
            t.contains("does not exist and nobody cannot create it"),
            "{t}"
        );
        std::fs::set_permissions(&job, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir(base.join("logs")).unwrap();
        std::fs::set_permissions(base.join("logs"), std::fs::Permissions::from_mode(0o777))
            .unwrap();
        assert_eq!(texts(&p.triggers["t"]), "");
        let u = texts(&p.triggers["u"]);
        assert!(u.contains("missing: No such file"), "{u}");
    }
}
