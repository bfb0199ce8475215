//! `rsync-gate explain`: what `serve` would do with a command, without
//! doing it. The same front half ([`super::evaluate`]) with the same inputs
//! `serve` gathers: the cached rsync capabilities, the kernel's Landlock,
//! the connection parsed the same way. Nothing is written or created; the
//! plan's files and directories are shown instead.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde::Serialize;

use super::evaluate::{self, Evaluation, Inputs};
use crate::audit::Reason;
use crate::decide::RsyncCaps;
use crate::escape;
use crate::host::{self, Account};
use crate::plan::{ExecPlan, FileContent, SandboxChoice};
use crate::policy::Policy;
use crate::request::conn::Connection;
use crate::request::{self, Request, secluded};

/// What `explain` reports.
#[derive(Debug, Serialize)]
pub struct Explanation {
    pub decision: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub argv: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Each descriptor the argv names, and what it holds (or, for a
    /// directory the gate would create first, will hold).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pins: Vec<PinShown>,
    /// The generated rsyncd.conf (daemon requests).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
}

impl Explanation {
    fn deny(reason: Reason, mode: Option<String>, modules: Vec<String>) -> Explanation {
        Explanation {
            decision: "deny".into(),
            reason: Some(reason),
            mode,
            modules,
            argv: vec![],
            env: vec![],
            cwd: None,
            notes: vec![],
            pins: vec![],
            config: None,
        }
    }

    /// An allowed request: exactly what would run.
    fn allowed(
        plan: &ExecPlan,
        mode: &str,
        modules: Vec<String>,
        config: Option<String>,
    ) -> Explanation {
        let mut notes = plan.notes.clone();
        for f in &plan.files {
            notes.push(match f.content {
                FileContent::Text(_) => format!("would write {}", f.path.display()),
                FileContent::LockFile => format!("would create {} if missing", f.path.display()),
            });
        }
        for m in &plan.mkdirs {
            notes.push(format!("would create {}", m.expect.display()));
        }
        if !plan.priority.is_none() {
            notes.push(format!("would lower the priority: {}", plan.priority));
        }
        if let Some(s) = &plan.slot {
            notes.push(format!(
                "would take one of {} connection slots ({})",
                s.max,
                s.lock.display()
            ));
        }
        let proc = |fd: &std::os::fd::OwnedFd| {
            format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(fd))
        };
        let mut pins: Vec<PinShown> = plan
            .keep_fds
            .iter()
            .map(|fd| PinShown {
                fd: proc(fd),
                path: std::fs::read_link(proc(fd))
                    .map(|p| escape::field(p.as_os_str().as_bytes()))
                    .unwrap_or_default(),
                created: false,
            })
            .collect();
        pins.extend(plan.mkdirs.iter().map(|m| PinShown {
            fd: proc(&m.slot),
            path: escape::field(m.expect.as_os_str().as_bytes()),
            created: true,
        }));
        if let Some(fd) = plan.log_fd {
            pins.push(PinShown {
                fd: format!("/proc/self/fd/{fd}"),
                path: LOG_PIPE.into(),
                created: true,
            });
        }
        match plan.sandbox {
            // The plan's own note says what it would allow.
            SandboxChoice::Apply(_) => {}
            SandboxChoice::Off => notes.push("sandbox: off".into()),
            SandboxChoice::Unavailable => {
                notes.push("sandbox: unavailable (the kernel has no Landlock)".into());
            }
        }
        Explanation {
            decision: "allow".into(),
            reason: None,
            mode: Some(mode.into()),
            modules,
            argv: std::iter::once(escape::field(plan.program.as_os_str().as_bytes()))
                .chain(plan.argv_shown().into_iter().skip(1))
                .collect(),
            env: plan
                .env
                .iter()
                .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
                .collect(),
            cwd: Some(plan.cwd.display().to_string()),
            notes,
            pins,
            config,
        }
    }
}

/// What `pins` says the daemon's log descriptor holds: a pipe to the gate.
pub const LOG_PIPE: &str = "pipe";

/// A descriptor in the argv.
#[derive(Debug, Serialize)]
pub struct PinShown {
    /// `/proc/self/fd/N`, as the argv spells it.
    pub fd: String,
    /// What it holds (escaped as the argv is).
    pub path: String,
    /// The gate would create this before rsync starts (a directory, or
    /// the pipe a daemon logs to, [`LOG_PIPE`]).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub created: bool,
}

/// Where the client is, as `explain` is told.
#[derive(Debug, Clone, Copy)]
pub enum From {
    /// Unknown.
    Nowhere,
    /// `--from IP`: the client's address only.
    Address(std::net::IpAddr),
    /// `--connection 'IP PORT IP PORT'`: sshd's whole `SSH_CONNECTION`.
    Connection(Connection),
}

/// What is explained.
#[derive(Debug, Clone, Copy)]
pub enum Asked<'a> {
    /// `SSH_ORIGINAL_COMMAND`, as `serve` gets it.
    Command(&'a [u8]),
    /// The in-band request of a `host::MODULE` session, as the pre-xfer
    /// hook gets it (`rsync --server ...` words, paths relative to the
    /// module; sandboxed or not).
    InBand {
        module: &'a str,
        words: &'a [Vec<u8>],
        sandboxed: bool,
    },
}

/// The decision for a request. A `-s` command's arguments are read from
/// `stdin` as `serve` reads them.
pub fn explain(
    policy: &Policy,
    policy_path: &Path,
    account: &Account,
    client: &str,
    from: From,
    asked: Asked<'_>,
    stdin: impl std::os::fd::AsFd,
) -> Explanation {
    let conn = match from {
        From::Nowhere => None,
        From::Address(a) => Some(Connection::from_client(a)),
        From::Connection(c) => Some(c),
    };
    let gate = host::gate_binary();
    let mut landlock = host::landlock_abi().is_some();
    let mut parsed = match asked {
        Asked::Command(command) => request::parse_command(command),
        Asked::InBand {
            module,
            words,
            sandboxed,
        } => {
            // The hook's view: the session applied the sandbox or did not.
            landlock = sandboxed;
            request::inband::parse(module, words).map(Request::InBand)
        }
    };
    if let Ok(Request::Server(args)) = &parsed
        && args.secluded
    {
        parsed = match secluded::read_args(stdin, secluded::DEADLINE) {
            Ok(stdin_args) => secluded::parse_secluded(args, &stdin_args).map(Request::Server),
            Err(e) => {
                let reason = crate::deny::DenyReason::SecludedArgsMalformed(e);
                return Explanation::deny(Reason::from(&reason), None, vec![]);
            }
        };
    }
    let caps = match &parsed {
        Ok(Request::Server(_)) => host::rsync::caps(&policy.gate.rsync, &policy.gate.lock_dir),
        _ => RsyncCaps::default(),
    };
    let inputs = Inputs {
        policy,
        policy_path,
        client,
        conn: conn.as_ref(),
        account,
        caps,
        landlock,
        gate: &gate,
        session: "explain",
    };
    match evaluate::evaluate(&inputs, parsed.as_ref()) {
        Evaluation::Refused(r) => Explanation::deny(
            Reason::from(&r.reason),
            r.mode.map(|m| m.name().to_string()),
            r.modules,
        ),
        Evaluation::Probe => Explanation {
            decision: "allow".into(),
            reason: None,
            mode: Some("probe".into()),
            modules: vec![],
            argv: vec![],
            env: vec![],
            cwd: None,
            notes: vec!["'true' succeeds without running anything".into()],
            pins: vec![],
            config: None,
        },
        Evaluation::Run(run) => {
            Explanation::allowed(&run.plan, run.mode.name(), run.modules, run.config)
        }
        Evaluation::Trigger(plan) => {
            let fired = crate::exec::trigger::would_fire(&plan.state_dir);
            let mut notes = vec![format!(
                "trigger '{}' would be {}",
                plan.name,
                match fired {
                    crate::exec::trigger::Fired::Started => "started now, detached",
                    crate::exec::trigger::Fired::Queued => {
                        "queued: it runs once more after the run going on"
                    }
                }
            )];
            notes.push(match &plan.log {
                Some(l) => format!("the job's output is appended to {}", l.display()),
                None => "the job's output is discarded (no log)".into(),
            });
            if let Some(t) = plan.timeout {
                notes.push(format!("the job is stopped after {}", duration_shown(t)));
            }
            if !plan.passed && !plan.words.is_empty() {
                notes.push(format!(
                    "words recorded, not passed (the trigger has no args): {}",
                    plan.words_shown().join(" ")
                ));
            }
            notes.push(format!("state in {}", plan.state_dir.display()));
            Explanation {
                decision: "allow".into(),
                reason: None,
                mode: Some("trigger".into()),
                modules: vec![],
                argv: plan.argv_shown(),
                env: plan
                    .env
                    .iter()
                    .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
                    .collect(),
                cwd: Some(plan.cwd.display().to_string()),
                notes,
                pins: vec![],
                config: None,
            }
        }
        Evaluation::InBand(g) => Explanation {
            decision: "allow".into(),
            reason: None,
            mode: Some(g.mode.name().into()),
            modules: vec![g.module],
            argv: vec![],
            env: vec![],
            cwd: None,
            notes: g.notes,
            pins: vec![],
            config: None,
        },
    }
}

/// The text form.
pub fn render(e: &Explanation, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "decision: {}", e.decision)?;
    if let Some(r) = &e.reason {
        writeln!(out, "reason:   {} ({})", r.message, r.code)?;
    }
    if let Some(m) = &e.mode {
        writeln!(out, "mode:     {m}")?;
    }
    if !e.modules.is_empty() {
        writeln!(out, "modules:  {}", e.modules.join(", "))?;
    }
    if !e.argv.is_empty() {
        writeln!(out, "argv:     {}", shell_words::join(&e.argv))?;
    }
    if let Some(cwd) = &e.cwd {
        writeln!(out, "cwd:      {cwd}")?;
    }
    if !e.env.is_empty() {
        writeln!(out, "env:      {}", e.env.join(" "))?;
    }
    for n in &e.notes {
        writeln!(out, "note:     {n}")?;
    }
    if let Some(c) = &e.config {
        writeln!(out, "config:\n{c}")?;
    }
    Ok(())
}

/// A whole number of the largest unit that divides it: `12h`, `90s`.
fn duration_shown(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        _ if s % 86_400 == 0 => format!("{}d", s / 86_400),
        _ if s % 3_600 == 0 => format!("{}h", s / 3_600),
        _ if s % 60 == 0 => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

#[cfg(test)]
mod duration_tests {
    use super::duration_shown;
    use std::time::Duration;

    #[test]
    fn durations_are_shown_in_their_largest_whole_unit() {
        for (secs, want) in [
            (43_200, "12h"),
            (86_400 * 7, "7d"),
            (90, "90s"),
            (600, "10m"),
            (3_601, "3601s"),
        ] {
            assert_eq!(duration_shown(Duration::from_secs(secs)), want);
        }
        assert_eq!(duration_shown(Duration::from_millis(250)), "250ms");
    }
}
