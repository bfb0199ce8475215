//! `rsync-gate serve`: the forced command. One line per stage:
//! inputs → policy → request (with `-s`) → evaluate → prepare → audit →
//! run. Never writes to stdout (the rsync protocol channel).

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::evaluate::{self, Evaluation, Inputs, Refusal, Run};
use super::session::{Session, deny_line};
use super::{daemon_log, filelog};
use crate::audit::Mode;
use crate::decide::RsyncCaps;
use crate::deny::DenyReason;
use crate::exec::{self, PrepareError, Ready};
use crate::host::{self, Account};
use crate::policy::{self, LoadError, Policy};
use crate::request::conn::Connection;
use crate::request::{self, ParseError, Request, secluded};

/// What `serve` reads from its environment. Only these two variables, set
/// by sshd, are read; the policy path and client name come from the
/// command line.
#[derive(Debug, Clone, Default)]
pub struct SshEnv {
    pub original_command: Option<OsString>,
    pub connection: Option<OsString>,
}

impl SshEnv {
    pub fn from_process() -> SshEnv {
        SshEnv {
            original_command: std::env::var_os("SSH_ORIGINAL_COMMAND"),
            connection: std::env::var_os("SSH_CONNECTION"),
        }
    }
}

/// A stage that ended the session early returns its exit status here.
type Stage<T> = Result<T, u8>;

/// Decide, audit, run rsync or refuse. Returns the exit status.
pub fn serve(policy_path: &Path, client: &str, env: &SshEnv) -> u8 {
    match stages(policy_path, client, env) {
        Ok(code) | Err(code) => code,
    }
}

fn stages(policy_path: &Path, client: &str, env: &SshEnv) -> Stage<u8> {
    let given = gather(policy_path, env)?;
    let mut session = Session::new(client, given.conn.as_ref(), given.command());
    let policy = load_policy(&mut session, &given.policy_path, client)?;
    check_lock_dir(&mut session, &policy, &given.account)?;
    let id = session.id.clone();
    let inputs = given.inputs(&policy, client, &id);
    let learning = policy.clients.get(client).is_some_and(|c| c.learn);
    if learning {
        // Refusals before the request is read note that much.
        session.learn(crate::audit::Learned::default());
    }
    let request = read_request(&mut session, &inputs, given.command())?;
    if learning {
        session.learn(evaluate::learned(&policy, request.as_ref()));
    }
    let Run {
        mode,
        modules,
        plan,
        left_out,
        ..
    } = evaluate(&mut session, &inputs.with_caps_for(&request), &request)?;
    let ready = prepare(&mut session, plan, mode, &modules)?;
    let files = file_records(&mut session, &ready, mode, &modules)?;
    audit(&mut session, mode, &modules, &ready)?;
    let sink = files
        .as_ref()
        .map(|w| Box::new(filelog::Shared(Arc::clone(w))) as Box<dyn exec::LogSink>);
    let outcome = exec::run(ready, sink);
    if let Ok(o) = &outcome {
        daemon_refusal(&mut session, &policy, &modules, &left_out, o);
    }
    let code = outcome.as_ref().ok().and_then(|o| o.code);
    let status = files.map(|w| match w.lock() {
        Ok(mut w) => w.status(code),
        Err(_) => crate::audit::FileLogStatus {
            error: Some("the transfer log's reader failed".into()),
            ..Default::default()
        },
    });
    Ok(session.end(mode, modules, outcome, status))
}

/// The writer of the session's file records (`transfer_log`), made before
/// anything runs: a session whose records could not be written does not
/// start.
fn file_records(
    session: &mut Session,
    ready: &Ready,
    mode: Mode,
    modules: &[String],
) -> Stage<Option<Arc<Mutex<filelog::FileLogWriter>>>> {
    let Some(plan) = ready.plan().file_log.as_ref() else {
        return Ok(None);
    };
    match session.file_records(plan) {
        Ok(w) => Ok(Some(Arc::new(Mutex::new(w)))),
        Err(e) => Err(session.refuse(&Refusal::new(
            DenyReason::Internal(format!("cannot start the transfer log: {e}")),
            Some(mode),
            modules.to_vec(),
        ))),
    }
}

/// A `host::` session whose daemon refused the module the client named (no
/// hook ran): its `deny` record, with the reason checked mode gives.
fn daemon_refusal(
    session: &mut Session,
    policy: &Policy,
    modules: &[String],
    left_out: &[DenyReason],
    outcome: &exec::Outcome,
) {
    let Some(said) = daemon_log::parse(&outcome.log, outcome.pid) else {
        return;
    };
    let offered: Vec<daemon_log::Offered<'_>> = modules
        .iter()
        .filter(|m| !left_out.iter().any(|r| r.module() == Some(m.as_str())))
        .filter_map(|m| policy.modules.get(m))
        .map(|m| daemon_log::Offered {
            name: &m.name,
            max_connections: m.max_connections,
        })
        .collect();
    let full = |m: &daemon_log::Offered<'_>| {
        exec::slots::is_full(
            &crate::plan::lock_file(&policy.gate.lock_dir, m.name),
            m.max_connections,
        )
    };
    if let Some(r) = daemon_log::refusal(&said, left_out, &offered, &full) {
        session.refused_by_daemon(&r);
    }
}

/// What the session starts from, before the policy is read.
struct Given {
    policy_path: PathBuf,
    command: Option<OsString>,
    conn: Option<Connection>,
    account: Account,
    landlock: bool,
    gate: PathBuf,
}

impl Given {
    fn command(&self) -> Option<&[u8]> {
        self.command.as_ref().map(|c| c.as_bytes())
    }

    fn inputs<'a>(&'a self, policy: &'a Policy, client: &'a str, session: &'a str) -> Inputs<'a> {
        Inputs {
            policy,
            policy_path: &self.policy_path,
            client,
            conn: self.conn.as_ref(),
            account: &self.account,
            caps: RsyncCaps::default(),
            landlock: self.landlock,
            gate: &self.gate,
            session,
        }
    }
}

trait WithCaps {
    fn with_caps_for(&self, request: &Result<Request, ParseError>) -> Self;
}

impl WithCaps for Inputs<'_> {
    /// Checked-mode requests need to know what the installed rsync can do
    /// (from the cache under `lock_dir`); nothing else does.
    fn with_caps_for(&self, request: &Result<Request, ParseError>) -> Self {
        let caps = match request {
            Ok(Request::Server(_)) => {
                host::rsync::caps(&self.policy.gate.rsync, &self.policy.gate.lock_dir)
            }
            _ => RsyncCaps::default(),
        };
        Inputs { caps, ..*self }
    }
}

/// Inputs: the command line, sshd's two variables, the account, the kernel.
fn gather(policy_path: &Path, env: &SshEnv) -> Stage<Given> {
    // The policy path is also written into daemon configs' hook commands.
    let policy_path = if policy_path.is_absolute() {
        policy_path.to_path_buf()
    } else {
        std::env::current_dir()
            .unwrap_or_default()
            .join(policy_path)
    };
    if let Err(e) = crate::sys::cloexec_inherited() {
        deny_line(&DenyReason::Internal(format!(
            "cannot close inherited descriptors: {e}"
        )));
        return Err(1);
    }
    Ok(Given {
        policy_path,
        command: env.original_command.clone(),
        conn: env
            .connection
            .as_ref()
            .and_then(|c| Connection::parse(c.as_bytes())),
        account: Account::current(),
        landlock: host::landlock_abi().is_some(),
        gate: host::gate_binary(),
    })
}

/// The policy (the part of it this client needs, from the compiled index
/// when it is current), its safety checks, and the audit log it names.
fn load_policy(session: &mut Session, path: &Path, client: &str) -> Stage<Policy> {
    match policy::index::load_session(path, client).0 {
        Ok(p) => {
            session.open_log(&p.gate.audit_log, p.gate.syslog, p.gate.journald);
            if let Some(reason) = session.log_error() {
                deny_line(&reason);
                return Err(1);
            }
            Ok(p)
        }
        Err(e) => {
            // The policy names the audit log; fall back to the default one,
            // with the same safety checks.
            session.open_log(&policy::Gate::default().audit_log, false, false);
            let reason = match e {
                LoadError::Unsafe(e) => DenyReason::PolicyUnsafe(e.to_string()),
                LoadError::Invalid(e) => DenyReason::PolicyInvalid(e.to_string()),
            };
            Err(session.refuse(&Refusal::new(reason, None, vec![])))
        }
    }
}

/// `lock_dir` (daemon configs, lock files, trigger state, the rsync
/// capability cache) must be the account's and root's alone, as the audit
/// log's directory must be root's: otherwise someone else could plant the
/// names the gate writes there. A missing one is created, and checked the
/// same way, when first needed.
fn check_lock_dir(session: &mut Session, policy: &Policy, account: &Account) -> Stage<()> {
    let dir = &policy.gate.lock_dir;
    if std::fs::symlink_metadata(dir).is_err() {
        return Ok(());
    }
    match crate::trust::check_private_dir(dir, account.uid) {
        Ok(_) => Ok(()),
        Err(e) => Err(session.refuse(&Refusal::new(
            DenyReason::LockDirUnsafe(format!("lock_dir: {e}")),
            None,
            vec![],
        ))),
    }
}

/// The request: `SSH_ORIGINAL_COMMAND`, and with `-s` the arguments on
/// stdin, read only once the client is admitted.
fn read_request(
    session: &mut Session,
    inputs: &Inputs<'_>,
    command: Option<&[u8]>,
) -> Stage<Result<Request, ParseError>> {
    let refuse = |session: &mut Session, reason: DenyReason| {
        session.refuse(&Refusal::new(reason, None, vec![]))
    };
    let Some(command) = command else {
        // An interactive login, or a trigger with no words: the decision
        // tells them apart.
        return Ok(Ok(Request::NoCommand));
    };
    let parsed = request::parse_command(command);
    let Ok(Request::Server(args)) = &parsed else {
        return Ok(parsed);
    };
    if !args.secluded {
        return Ok(parsed);
    }
    // Only an admitted client may make the gate wait for stdin.
    if let Err(reason) = evaluate::admit(inputs) {
        return Err(refuse(session, reason));
    }
    match secluded::read_args(std::io::stdin(), secluded::DEADLINE) {
        Ok(stdin_args) => {
            session.add_stdin_args(&stdin_args);
            Ok(secluded::parse_secluded(args, &stdin_args).map(Request::Server))
        }
        Err(e) => Err(refuse(session, DenyReason::SecludedArgsMalformed(e))),
    }
}

/// The front half: a plan to run, or the session ends here.
fn evaluate(
    session: &mut Session,
    inputs: &Inputs<'_>,
    request: &Result<Request, ParseError>,
) -> Stage<Run> {
    match evaluate::evaluate(inputs, request.as_ref()) {
        Evaluation::Run(run) => Ok(*run),
        Evaluation::Refused(r) => Err(session.refuse(&r)),
        Evaluation::Probe => Err(session.probe()),
        Evaluation::Trigger(plan) => Err(super::triggers::fire(session, inputs, &plan)),
        // An in-band request never arrives on the command line.
        Evaluation::InBand(_) => Err(session.refuse(&Refusal::new(
            DenyReason::Internal("an in-band request outside a daemon session".into()),
            None,
            vec![],
        ))),
    }
}

/// Files, directories, the connection slot and the sandbox.
fn prepare(
    session: &mut Session,
    plan: crate::plan::ExecPlan,
    mode: Mode,
    modules: &[String],
) -> Stage<Ready> {
    exec::prepare(plan).map_err(|e| {
        let reason = match e {
            PrepareError::Busy(m) => DenyReason::Busy(m),
            PrepareError::Race(p) => DenyReason::Race(p),
            PrepareError::Sandbox(e) => DenyReason::SandboxUnavailable(e),
            PrepareError::Io(e) => DenyReason::Internal(e),
        };
        session.refuse(&Refusal::new(reason, Some(mode), modules.to_vec()))
    })
}

/// The allow record, before anything runs.
fn audit(session: &mut Session, mode: Mode, modules: &[String], ready: &Ready) -> Stage<()> {
    session.allow(mode, modules, ready).map_err(|reason| {
        deny_line(&reason);
        1
    })
}
