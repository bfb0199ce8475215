//! The daemon's hooks (`host::module`). rsync runs them from the generated
//! config as `$RSYNC_SHELL -c LINE`, and the gate is that shell: it accepts
//! only its own hook lines ([`hook_shell`]), so no shell ever runs.
//!
//! The pre-xfer hook turns the in-band request (`RSYNC_ARG*`, module-
//! relative) into a request through the same parser as checked mode,
//! evaluates it through the same front half, writes its audit line, and
//! vetoes by exiting non-zero with the reason on stdout (which rsync shows
//! the client). The post-xfer hook records the exit status. Every input is
//! data: the command line from the generated config and rsync's
//! variables.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::time::SystemTime;

use super::evaluate::{self, Evaluation, Inputs};
use super::session::{session_id, source};
use crate::audit::{self, AuditLog, Event, Mirrors, Reason, Record, Verdict};
use crate::decide::RsyncCaps;
use crate::deny::DenyReason;
use crate::host::{self, Account};
use crate::plan::daemon::{ROOT_ALIAS_ENV, SANDBOX_ENV, SESSION_ENV};
use crate::policy::{self, LoadError};
use crate::request::conn::Connection;
use crate::request::{self, Request, inband};

/// Which daemon hook is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    PreXfer,
    PostXfer,
}

/// `rsync-gate -c COMMAND`: the gate standing in for the shell rsync runs
/// its daemon hooks with. Only the hook command lines the gate writes into
/// its generated configs are accepted; anything else is refused.
pub fn hook_shell(command: &[u8]) -> u8 {
    let refuse = || {
        let _ = writeln!(
            std::io::stderr().lock(),
            "rsync-gate: denied: not a hook command line"
        );
        127
    };
    let Ok(words) = request::split::split(command) else {
        return refuse();
    };
    let w: Vec<&[u8]> = words
        .iter()
        .map(|w| {
            if w.glob.is_some() || w.tilde {
                &b"\0"[..]
            } else {
                &w.bytes[..]
            }
        })
        .collect();
    let [
        prog,
        b"hook",
        which,
        b"--policy",
        policy,
        b"--client",
        client,
    ] = w.as_slice()
    else {
        return refuse();
    };
    if !prog.starts_with(b"/") {
        return refuse();
    }
    let which = match *which {
        b"pre-xfer" => Hook::PreXfer,
        b"post-xfer" => Hook::PostXfer,
        _ => return refuse(),
    };
    let Ok(client) = std::str::from_utf8(client) else {
        return refuse();
    };
    if !policy::valid_name(client) {
        return refuse();
    }
    hook(
        which,
        Path::new(std::ffi::OsStr::from_bytes(policy)),
        client,
    )
}

/// What a hook reads from rsync's environment.
#[derive(Debug, Clone, Default)]
pub struct HookEnv {
    pub module: String,
    pub args: Vec<Vec<u8>>,
    pub request: Option<Vec<u8>>,
    pub rsync_pid: Option<u32>,
    pub session: Option<String>,
    pub sandboxed: bool,
    /// The session's [`crate::trust::root_alias`].
    pub root_alias: Option<u32>,
    pub exit_status: Option<i32>,
    pub connection: Option<OsString>,
}

impl HookEnv {
    /// Read the variables rsync sets for its hooks (and the two the gate
    /// set for the daemon, which rsync passes on).
    pub fn from_process() -> HookEnv {
        let get = |k: &str| std::env::var_os(k);
        let text = |k: &str| get(k).map(|v| v.to_string_lossy().into_owned());
        let mut args = Vec::new();
        for i in 0..100_000 {
            match get(&format!("RSYNC_ARG{i}")) {
                Some(v) => args.push(v.into_vec()),
                None => break,
            }
        }
        HookEnv {
            module: text("RSYNC_MODULE_NAME").unwrap_or_default(),
            args,
            request: get("RSYNC_REQUEST").map(OsString::into_vec),
            rsync_pid: text("RSYNC_PID").and_then(|p| p.parse().ok()),
            session: text(SESSION_ENV),
            sandboxed: text(SANDBOX_ENV).as_deref() == Some("1"),
            root_alias: text(ROOT_ALIAS_ENV).and_then(|v| v.parse().ok()),
            exit_status: text("RSYNC_EXIT_STATUS").and_then(|p| p.parse().ok()),
            connection: get("SSH_CONNECTION"),
        }
    }
}

/// `rsync-gate hook pre-xfer|post-xfer`.
pub fn hook(which: Hook, policy_path: &Path, client: &str) -> u8 {
    let env = HookEnv::from_process();
    // Judge files as the session did (the sandbox keeps /proc from us).
    crate::trust::adopt_root_alias(env.root_alias);
    let veto = |reason: &DenyReason| {
        // rsync shows the hook's stdout to the client.
        let _ = writeln!(std::io::stdout().lock(), "{}", reason.line());
        1
    };
    let policy = match policy::index::load_session(policy_path, client).0 {
        Ok(p) => p,
        Err(e) if which == Hook::PreXfer => {
            return veto(&match e {
                LoadError::Unsafe(e) => DenyReason::PolicyUnsafe(e.to_string()),
                LoadError::Invalid(e) => DenyReason::PolicyInvalid(e.to_string()),
            });
        }
        Err(_) => return 0,
    };
    let mut log = match AuditLog::open_checked(&policy.gate.audit_log) {
        Ok(l) => l,
        Err(e) if which == Hook::PreXfer => return veto(&DenyReason::AuditUnavailable(e)),
        Err(_) => return 0,
    };
    let conn = env
        .connection
        .as_ref()
        .and_then(|c| Connection::parse(c.as_bytes()));
    let mut r = Record {
        time: audit::rfc3339(SystemTime::now()),
        session: env
            .session
            .clone()
            .unwrap_or_else(|| session_id(SystemTime::now())),
        client: client.to_string(),
        source: source(conn.as_ref()),
        modules: vec![env.module.clone()],
        pid: env.rsync_pid,
        request: env.request.as_ref().map(|r| audit::escape(r)),
        ..Default::default()
    };
    let code = match which {
        Hook::PostXfer => {
            r.event = Event::End;
            r.exit_status = env.exit_status;
            0
        }
        Hook::PreXfer => {
            r.event = Event::Decision;
            r.argv = env.args.iter().map(|a| audit::escape(a)).collect();
            let request = inband::parse(&env.module, &env.args).map(Request::InBand);
            r.mode = evaluate::requested_mode(request.as_ref());
            if policy.clients.get(client).is_some_and(|c| c.learn) {
                r.learn = Some(evaluate::learned(&policy, request.as_ref()));
            }
            let account = Account::current();
            let gate = host::gate_binary();
            let inputs = Inputs {
                policy: &policy,
                policy_path,
                client,
                conn: conn.as_ref(),
                account: &account,
                // The daemon takes no options from the gate.
                caps: RsyncCaps::default(),
                // The session applied the sandbox around the daemon (and so
                // around this hook) or did not.
                landlock: env.sandboxed,
                gate: &gate,
                session: &r.session,
            };
            match evaluate::evaluate(&inputs, request.as_ref()) {
                Evaluation::InBand(g) => {
                    r.decision = Some(Verdict::Allow);
                    r.mode = Some(g.mode);
                    r.notes = g.notes;
                    0
                }
                Evaluation::Refused(refusal) => {
                    r.decision = Some(Verdict::Deny);
                    r.reason = Some(Reason::from(&refusal.reason));
                    veto(&refusal.reason)
                }
                other => {
                    let reason =
                        DenyReason::Internal(format!("unexpected in-band evaluation {other:?}"));
                    r.decision = Some(Verdict::Deny);
                    r.reason = Some(Reason::from(&reason));
                    veto(&reason)
                }
            }
        }
    };
    Mirrors::connect(policy.gate.syslog, policy.gate.journald).send(&r);
    if let Err(e) = log.write(&r)
        && which == Hook::PreXfer
    {
        return veto(&DenyReason::AuditUnavailable(e.to_string()));
    }
    code
}
