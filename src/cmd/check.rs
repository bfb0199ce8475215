//! `rsync-gate check`: the policy's own errors (from loading it, every one
//! with file:line:col), then what only the filesystem can tell, judged for
//! the SSH account.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::confine;
use crate::deny::DenyReason;
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
            if let Err(e) = trust::check_path(lock_dir, account.uid) {
                out.push(err(format!("lock_dir: {e}")));
            } else if account.uid != 0 && md.uid() != account.uid {
                out.push(err(format!(
                    "lock_dir {} belongs to uid {}, so the account (uid {}) cannot write its lock files and daemon configs there",
                    lock_dir.display(),
                    md.uid(),
                    account.uid
                )));
            }
        }
    }
    for m in policy.modules.values() {
        if m.follow_links && policy.gate.sandbox == policy::Sandbox::Off {
            out.push(warn(format!(
                "{}: module '{}': follow_links = true with sandbox = \"off\": -L/-k follow symlinks inside the module wherever they lead, and only the kernel sandbox keeps those reads inside it",
                m.origin, m.name
            )));
        }
        if let Err(r) = confine::check_module(m, account, &policy.protected_paths()) {
            let detail = match &r {
                DenyReason::ModuleUnsafe { why, .. } => why.clone(),
                other => other.to_string(),
            };
            out.push(err(format!("{}: module '{}': {detail}", m.origin, m.name)));
        }
    }
    match std::fs::metadata(&policy.gate.rsync) {
        Ok(md) if md.is_file() => match host::rsync::probe(&policy.gate.rsync) {
            Some(caps) => {
                if !caps.confine_root {
                    out.push(warn(format!(
                        "{}: has no --confine-root (rsync < 3.5): served without it, relying on the gate's own checks",
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
    let gate = std::fs::canonicalize(host::gate_binary()).unwrap_or_else(|_| host::gate_binary());
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
    } else if let Err(e) = trust::check_path(log_dir, 0) {
        out.push(err(format!(
            "audit_log: {e} (every session would be refused)"
        )));
    }
    for f in &policy.files {
        if let Err(e) = trust::check_path(f, 0) {
            out.push(err(format!(
                "{}: {e} (serve refuses a policy the account could modify)",
                f.display()
            )));
        }
    }
    out
}
