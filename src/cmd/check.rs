//! `rsync-gate check`: the policy's own errors (from loading it, every one
//! with file:line:col), then what only the filesystem can tell, judged for
//! the SSH account.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::confine;
use crate::host::{self, Account};
use crate::plan;
use crate::policy::{self, Policy};
use crate::trust;

/// Print the report; the exit status is 0 when there is no error.
pub fn run(path: &Path, who: &Account, out: &mut impl Write) -> std::io::Result<u8> {
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
    let findings = check_environment(&p, who);
    let errors = findings.iter().filter(|f| f.error).count();
    for f in &findings {
        writeln!(
            out,
            "{}: {}",
            if f.error { "error" } else { "warning" },
            f.text
        )?;
    }
    if errors > 0 {
        writeln!(out, "{errors} error(s)")?;
        return Ok(1);
    }
    writeln!(
        out,
        "{}: OK ({} modules, {} clients, {} triggers, {} file(s))",
        path.display(),
        p.modules.len(),
        p.clients.len(),
        p.triggers.len(),
        p.files.len()
    )?;
    Ok(0)
}

/// A problem `check` found beyond the policy's syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub error: bool,
    pub text: String,
}

/// `rsync-gate check`: the policy's own errors come from loading; this adds
/// what only the filesystem can tell, judged for the SSH `account`.
pub fn check_environment(policy: &Policy, account: &Account) -> Vec<Finding> {
    let mut out = Vec::new();
    let err = |text: String| Finding { error: true, text };
    let warn = |text: String| Finding { error: false, text };
    let lock_dir = &policy.gate.lock_dir;
    match std::fs::symlink_metadata(lock_dir) {
        Err(_) => out.push(warn(format!(
            "lock_dir {} does not exist yet: the gate creates it when first needed, which the account must be allowed to do",
            lock_dir.display()
        ))),
        Ok(md) if !md.is_dir() => out.push(err(format!("lock_dir {} is not a directory", lock_dir.display()))),
        Ok(md) => {
            use std::os::unix::fs::MetadataExt;
            if let Err(e) = trust::check_private_dir(lock_dir, account.uid) {
                out.push(err(format!(
                    "lock_dir: {e} (serve refuses every session: lock_dir_unsafe)"
                )));
            } else if account.uid != 0 && md.uid() != account.uid {
                out.push(err(format!(
                    "lock_dir {} belongs to {}, so the account {} cannot write its lock files and daemon configs there",
                    lock_dir.display(),
                    trust::owner_name(md.uid()),
                    trust::owner_name(account.uid)
                )));
            }
        }
    }
    let gate = std::fs::canonicalize(host::gate_binary()).unwrap_or_else(|_| host::gate_binary());
    let protected = policy.protected_paths(&gate);
    for m in policy.modules.values() {
        if m.follow_links && policy.gate.sandbox == policy::Sandbox::Off {
            out.push(warn(format!(
                "{}: module '{}': follow_links = true with sandbox = \"off\": -L/-k follow symlinks inside the module wherever they lead, and only the kernel sandbox keeps those reads inside it",
                m.origin, m.name
            )));
        }
        if let Err(r) = confine::check_module(m, account, &protected) {
            out.push(err(format!(
                "{}: module '{}': {}",
                m.origin,
                m.name,
                r.server_detail()
            )));
        }
    }
    match std::fs::metadata(&policy.gate.rsync) {
        Ok(md) if md.is_file() => match host::rsync::probe(&policy.gate.rsync) {
            Some(caps) => {
                if !caps.confine_root {
                    out.push(warn(format!(
                        "{}: has no --confine-root (rsync < 3.5): served without it, relying on the gate's own checks; --files-from is refused",
                        policy.gate.rsync.display()
                    )));
                }
                if !caps.drop_d {
                    out.push(warn(format!(
                        "{}: has no --drop-D (rsync < 3.5): pushes with -D are refused unless devices = true",
                        policy.gate.rsync.display()
                    )));
                }
            }
            None => out.push(err(format!(
                "{}: cannot be run",
                policy.gate.rsync.display()
            ))),
        },
        _ => out.push(err(format!(
            "{}: rsync not found",
            policy.gate.rsync.display()
        ))),
    }
    // Daemon-mode configs must be expressible for every client.
    for c in policy.clients.values().filter(|c| !c.modules.is_empty()) {
        let modules: Vec<(&policy::Module, PathBuf)> = policy
            .client_modules(c)
            .map(|m| (m, m.path.clone()))
            .collect();
        let ctx = plan::daemon::ConfigContext {
            gate: &gate,
            policy_path: &policy.source,
            client: &c.name,
            account,
            account_gid: nix::unistd::getegid().as_raw(),
        };
        if let Err(e) = plan::daemon::config_text(&ctx, &policy.gate.lock_dir, &modules) {
            out.push(err(format!(
                "{}: client '{}': host::module would fail: {e}",
                c.origin, c.name
            )));
        }
    }
    let log_dir = policy.gate.audit_log.parent().unwrap_or(Path::new("/"));
    if !log_dir.is_dir() {
        out.push(err(format!(
            "audit_log: directory {} does not exist (every session would be refused)",
            log_dir.display()
        )));
    } else if let Err(e) = trust::check_private_dir(log_dir, 0) {
        out.push(err(format!(
            "audit_log: {e} (every session would be refused)"
        )));
    } else if let Ok(md) = std::fs::symlink_metadata(&policy.gate.audit_log)
        && let Err(e) = crate::audit::check_log_file(&md, account.uid)
    {
        out.push(err(format!(
            "audit_log: {}: {e} (every session would be refused)",
            policy.gate.audit_log.display()
        )));
    }
    for t in policy.triggers.values() {
        out.extend(check_trigger(t, account));
    }
    for f in &policy.files {
        if let Err(e) = trust::check_path(f, 0) {
            // "FILE is owned by ...": named once.
            let file = f.display().to_string();
            let what = if e.starts_with(&format!("{file} ")) {
                e
            } else {
                format!("{file}: {e}")
            };
            out.push(err(format!(
                "{what} (serve refuses a policy the account could modify)"
            )));
        }
    }
    out
}

/// May `account` do what `want` (a mode bit pattern for the owner, shifted
/// for group and others) allows on a file with this metadata?
fn permits(md: &std::fs::Metadata, account: &Account, owner_bit: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    if account.uid == 0 {
        // Root needs an execute bit somewhere to execute; it may write
        // anything.
        return owner_bit != 0o100 || md.mode() & 0o111 != 0;
    }
    let gid = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(account.uid))
        .ok()
        .flatten()
        .map(|u| u.gid.as_raw());
    if md.uid() == account.uid {
        md.mode() & owner_bit != 0
    } else if gid == Some(md.gid()) {
        md.mode() & (owner_bit >> 3) != 0
    } else {
        md.mode() & (owner_bit >> 6) != 0
    }
}

/// A trigger's job must be runnable, and its log writable, by the account.
fn check_trigger(t: &policy::Trigger, account: &Account) -> Vec<Finding> {
    let mut out = Vec::new();
    let err = |text: String| Finding { error: true, text };
    let program = t.command.first().map(PathBuf::from).unwrap_or_default();
    match std::fs::metadata(&program) {
        Ok(md) if md.is_file() && permits(&md, account, 0o100) => {}
        Ok(md) if md.is_file() => out.push(err(format!(
            "{}: trigger '{}': {} cannot be executed by {}",
            t.origin,
            t.name,
            program.display(),
            account.name
        ))),
        Ok(_) => out.push(err(format!(
            "{}: trigger '{}': {} is not a program file",
            t.origin,
            t.name,
            program.display()
        ))),
        Err(e) => out.push(err(format!(
            "{}: trigger '{}': {}: {e}",
            t.origin,
            t.name,
            program.display()
        ))),
    }
    if let Some(log) = &t.log {
        let dir = log.parent().unwrap_or(Path::new("/"));
        match std::fs::symlink_metadata(log) {
            Ok(md) if md.is_file() => {
                use std::os::unix::fs::MetadataExt;
                if !permits(&md, account, 0o200) {
                    out.push(err(format!(
                        "{}: trigger '{}': {} cannot be written by {}",
                        t.origin,
                        t.name,
                        log.display(),
                        account.name
                    )));
                } else if md.mode() & 0o002 != 0 {
                    out.push(err(format!(
                        "{}: trigger '{}': {} is writable by others",
                        t.origin,
                        t.name,
                        log.display()
                    )));
                }
            }
            Ok(_) => out.push(err(format!(
                "{}: trigger '{}': {} is not a regular file",
                t.origin,
                t.name,
                log.display()
            ))),
            Err(_) => match std::fs::metadata(dir) {
                Ok(md) if md.is_dir() && permits(&md, account, 0o300) => {}
                Ok(_) | Err(_) => out.push(err(format!(
                    "{}: trigger '{}': the log {} does not exist and {} cannot create it in {}",
                    t.origin,
                    t.name,
                    log.display(),
                    account.name,
                    dir.display()
                ))),
            },
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn triggers_are_checked_for_the_account() {
        let d = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(d.path()).unwrap();
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
        let nobody = Account {
            uid: 65534,
            name: "nobody".into(),
            home: None,
        };
        let texts = |f: Vec<Finding>| f.into_iter().map(|f| f.text).collect::<Vec<_>>().join("\n");
        let t = texts(check_trigger(&p.triggers["t"], &nobody));
        assert!(t.contains("cannot be executed by nobody"), "{t}");
        assert!(
            t.contains("does not exist and nobody cannot create it"),
            "{t}"
        );
        std::fs::set_permissions(&job, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir(base.join("logs")).unwrap();
        std::fs::set_permissions(base.join("logs"), std::fs::Permissions::from_mode(0o777))
            .unwrap();
        assert_eq!(texts(check_trigger(&p.triggers["t"], &nobody)), "");
        let u = texts(check_trigger(&p.triggers["u"], &nobody));
        assert!(u.contains("missing: No such file"), "{u}");
    }
}
