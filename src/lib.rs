//! rsync-gate: a forced-command gatekeeper for rsync over SSH.
//!
//! The pipeline: load the policy, parse the request, decide (pure), confine
//! the granted paths, write the audit record, run rsync. Each stage is its
//! own module; the exec stage sees only an [`plan::ExecPlan`].

pub mod audit;
pub mod cli;
pub mod daemon;
pub mod decide;
pub mod deny;
pub mod exec;
pub mod glob;
pub mod paths;
pub mod plan;
pub mod policy;
pub mod request;
pub mod rsync;
pub mod sandbox;
pub mod secluded;
pub mod slots;
pub(crate) mod sys;
pub mod syslog;
pub mod trust;

use std::ffi::OsString;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use audit::{AuditLog, Reason, Record, Source};
use decide::{Conn, Context, Decision, Grant, RsyncCaps};
use deny::DenyReason;
use paths::Account;
use plan::ExecPlan;
use policy::Policy;
use request::Request;

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

/// Parse `SSH_CONNECTION` (`client_ip client_port server_ip server_port`).
/// Returns the client end and a canonical rebuilt string.
pub fn parse_connection(raw: &[u8]) -> Option<(Conn, String)> {
    let text = std::str::from_utf8(raw).ok()?;
    let parts: Vec<&str> = text.split(' ').collect();
    let [caddr, cport, saddr, sport] = parts.as_slice() else {
        return None;
    };
    let addr: IpAddr = caddr.parse().ok()?;
    let port: u16 = cport.parse().ok()?;
    let saddr: IpAddr = saddr.parse().ok()?;
    let sport: u16 = sport.parse().ok()?;
    Some((
        Conn { addr, port },
        format!("{addr} {port} {saddr} {sport}"),
    ))
}

/// A session in progress: identifiers and the audit log.
struct Session {
    id: String,
    client: String,
    source: Option<Source>,
    command: Option<String>,
    log: Result<AuditLog, String>,
    syslog: Option<syslog::Syslog>,
    started: SystemTime,
}

impl Session {
    fn base(&self, event: &str) -> Record {
        Record {
            time: audit::rfc3339(SystemTime::now()),
            event: event.into(),
            session: self.id.clone(),
            client: self.client.clone(),
            source: self.source.clone(),
            command: self.command.clone(),
            pid: Some(std::process::id()),
            ..Default::default()
        }
    }

    fn write(&mut self, record: &Record) -> Result<(), DenyReason> {
        if let Some(s) = &self.syslog {
            s.send(record);
        }
        match &mut self.log {
            Ok(log) => log
                .write(record)
                .map_err(|e| DenyReason::AuditUnavailable(e.to_string())),
            Err(e) => Err(DenyReason::AuditUnavailable(e.clone())),
        }
    }

    /// Record and report a refusal; returns the exit status.
    fn refuse(&mut self, reason: &DenyReason, mode: Option<&str>, modules: Vec<String>) -> u8 {
        let mut r = self.base("decision");
        r.decision = Some("deny".into());
        r.reason = Some(reason_of(reason));
        r.mode = mode.map(str::to_string);
        r.modules = modules;
        // Refused either way; a failed audit write only changes nothing.
        let _ = self.write(&r);
        deny_line(reason);
        1
    }
}

fn reason_of(reason: &DenyReason) -> Reason {
    let detail = match reason {
        DenyReason::ModuleUnsafe { why, .. } => Some(why.clone()),
        DenyReason::AuditUnavailable(d)
        | DenyReason::Internal(d)
        | DenyReason::SandboxUnavailable(d) => Some(d.clone()),
        _ => None,
    };
    Reason {
        code: reason.code().into(),
        message: reason.to_string(),
        detail,
    }
}

/// The one line a refused client sees.
pub fn deny_line(reason: &DenyReason) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "rsync-gate: denied: {reason}");
}

fn session_id(started: SystemTime) -> String {
    let nanos = started
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{:x}-{}", nanos, std::process::id())
}

/// Open the audit log for `serve`: its directory must be root's alone (the
/// SSH account must not be able to replace the file), and the file must be
/// a regular file nobody else can write.
fn open_audit_log(path: &Path) -> Result<AuditLog, String> {
    use std::os::unix::fs::MetadataExt;
    let dir = path.parent().unwrap_or(Path::new("/"));
    trust::check_path(dir, 0).map_err(|e| format!("audit log directory unsafe: {e}"))?;
    let log = AuditLog::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let md = log
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if md.mode() & 0o002 != 0 {
        return Err(format!("{} is writable by others", path.display()));
    }
    Ok(log)
}

/// The gate's own files, which no writable module may contain.
pub fn protected_paths(policy: &Policy) -> Vec<PathBuf> {
    let mut v = policy.files.clone();
    v.push(policy.gate.audit_log.clone());
    v.push(policy.gate.lock_dir.clone());
    v.push(policy.gate.rsync.clone());
    v
}

/// Load the policy for `serve`: the file and the directories above it must
/// be safe from the SSH account.
pub fn load_policy_checked(path: &Path) -> Result<Policy, DenyReason> {
    struct Checked;
    impl policy::Reader for Checked {
        fn read(&self, path: &Path) -> Result<String, String> {
            if std::fs::symlink_metadata(path).is_err() {
                // Missing or unreachable: say so plainly.
                return policy::read_bounded(path);
            }
            // Like sudoers: root's alone, whoever the SSH account is.
            trust::check_path(path, 0).map_err(|e| format!("unsafe: {e}"))?;
            policy::read_bounded(path)
        }
    }
    policy::load(path, &Checked).map_err(|e| {
        let first = e.0.first().map(|d| d.message.as_str()).unwrap_or("");
        if first.starts_with("unsafe: ") {
            DenyReason::PolicyUnsafe(e.to_string())
        } else {
            DenyReason::PolicyInvalid(e.to_string())
        }
    })
}

/// `rsync-gate serve`: decide, audit, run rsync or refuse. Returns the exit
/// status. Never writes to stdout.
pub fn serve(policy_path: &Path, client: &str, env: &SshEnv) -> u8 {
    // The policy path is also written into daemon configs' hook commands.
    let absolute;
    let policy_path = if policy_path.is_absolute() {
        policy_path
    } else {
        absolute = std::env::current_dir()
            .unwrap_or_default()
            .join(policy_path);
        absolute.as_path()
    };
    if let Err(e) = sys::cloexec_inherited() {
        deny_line(&DenyReason::Internal(format!(
            "cannot close inherited descriptors: {e}"
        )));
        return 1;
    }
    let started = SystemTime::now();
    let account = Account::current();
    let conn = env
        .connection
        .as_ref()
        .and_then(|c| parse_connection(c.as_bytes()));
    let client_conn = conn.as_ref().map(|(c, _)| *c);
    let conn_text = conn.as_ref().map(|(_, t)| t.as_str());
    let mut session = Session {
        id: session_id(started),
        client: client.to_string(),
        source: conn.as_ref().map(|(c, _)| Source {
            addr: policy::net::canonical(c.addr).to_string(),
            port: c.port,
        }),
        command: env
            .original_command
            .as_ref()
            .map(|c| audit::escape(c.as_bytes())),
        log: Err("the policy could not be loaded".into()),
        syslog: None,
        started,
    };
    let policy = match load_policy_checked(policy_path) {
        Ok(p) => p,
        Err(reason) => {
            // The policy names the audit log; fall back to the default one,
            // with the same safety checks.
            session.log = open_audit_log(&policy::Gate::default().audit_log);
            return session.refuse(&reason, None, vec![]);
        }
    };
    session.log = open_audit_log(&policy.gate.audit_log);
    if policy.gate.syslog {
        session.syslog = syslog::Syslog::connect(Path::new(syslog::DEFAULT_SOCKET));
    }
    if let Err(e) = &session.log {
        let reason = DenyReason::AuditUnavailable(e.clone());
        deny_line(&reason);
        return 1;
    }
    let Some(command) = env.original_command.as_ref() else {
        return session.refuse(&DenyReason::NoCommand, None, vec![]);
    };
    let mut parsed = request::parse_command(command.as_bytes());
    if let Ok(Request::Server(args)) = &parsed
        && args.secluded
    {
        // Only an admitted client may make the gate wait for stdin.
        let admission = Context {
            policy: &policy,
            client,
            conn: client_conn,
            caps: RsyncCaps::default(),
        };
        if let Err(reason) = decide::admit(&admission) {
            return session.refuse(&reason, None, vec![]);
        }
        match secluded::read_args(std::io::stdin(), secluded::DEADLINE) {
            Ok(stdin_args) => {
                session.command = session.command.take().map(|c| {
                    let shown: Vec<String> = stdin_args.iter().map(|a| audit::escape(a)).collect();
                    format!("{c} <stdin: {}>", shown.join(" "))
                });
                parsed = request::parse_secluded(args, &stdin_args).map(Request::Server);
            }
            Err(e) => {
                return session.refuse(&DenyReason::SecludedArgsMalformed(e), None, vec![]);
            }
        }
    }
    let caps = match &parsed {
        Ok(Request::Server(_)) => rsync::caps(&policy.gate.rsync, &policy.gate.lock_dir),
        _ => RsyncCaps::default(),
    };
    let ctx = Context {
        policy: &policy,
        client,
        conn: client_conn,
        caps,
    };
    let decision = decide::decide(&ctx, parsed.as_ref());
    match decision {
        Decision::Deny(reason) => {
            let mode = match &parsed {
                Ok(Request::Server(a)) if a.sender => Some("sender"),
                Ok(Request::Server(_)) => Some("receiver"),
                Ok(Request::Daemon) => Some("daemon"),
                _ => None,
            };
            let modules = reason
                .module()
                .map(|m| vec![m.to_string()])
                .unwrap_or_default();
            session.refuse(&reason, mode, modules)
        }
        Decision::Probe => {
            let mut r = session.base("decision");
            r.decision = Some("allow".into());
            r.mode = Some("probe".into());
            match session.write(&r) {
                Ok(()) => 0,
                Err(reason) => {
                    deny_line(&reason);
                    1
                }
            }
        }
        Decision::Checked(grant) => run_checked(
            &mut session,
            &policy,
            &grant,
            &account,
            client_conn.as_ref(),
            conn_text,
        ),
        Decision::Daemon(grant) => {
            let spec = DaemonSpec {
                policy: &policy,
                policy_path,
                client,
                account: &account,
                conn: client_conn.as_ref(),
                conn_text,
            };
            run_daemon(&mut session, &spec, &grant)
        }
    }
}

/// Everything a daemon-mode plan depends on.
struct DaemonSpec<'a> {
    policy: &'a Policy,
    policy_path: &'a Path,
    client: &'a str,
    account: &'a Account,
    conn: Option<&'a Conn>,
    conn_text: Option<&'a str>,
}

/// Build the plan for `rsync --server --daemon` with a generated config.
/// With `write` false (explain), nothing is written; the config text is
/// returned either way.
fn build_daemon_plan(
    spec: &DaemonSpec<'_>,
    grant: &decide::DaemonGrant,
    session_id: &str,
    write: bool,
) -> Result<(ExecPlan, String), DenyReason> {
    let policy = spec.policy;
    let mut notes = Vec::new();
    let modules = daemon::checked_modules(policy, &grant.modules, spec.account, &mut notes);
    if modules.is_empty() {
        return Err(DenyReason::NoModules);
    }
    let gate = std::fs::canonicalize(gate_path()).unwrap_or_else(|_| gate_path());
    let policy_path =
        std::fs::canonicalize(spec.policy_path).unwrap_or_else(|_| spec.policy_path.to_path_buf());
    let ctx = daemon::ConfigContext {
        gate: &gate,
        policy_path: &policy_path,
        client: spec.client,
        account: spec.account,
        account_gid: nix::unistd::getegid().as_raw(),
    };
    let text =
        daemon::config_text(&ctx, &policy.gate.lock_dir, &modules).map_err(DenyReason::Internal)?;
    let config = daemon::config_path(&policy.gate.lock_dir, spec.client);
    let mut lock_files = Vec::new();
    for (m, _) in &modules {
        if m.max_connections > 0 {
            let lock = slots::lock_file(&policy.gate.lock_dir, &m.name);
            if write {
                slots::ensure_lock_file(&lock)
                    .map_err(|e| DenyReason::Internal(format!("lock file: {e}")))?;
            }
            lock_files.push(lock);
        }
    }
    if write {
        daemon::write_config(&config, &text)
            .map_err(|e| DenyReason::Internal(format!("cannot write {}: {e}", config.display())))?;
    }
    notes.push(format!("config {}", config.display()));
    let mut env = plan::child_env(spec.account, spec.conn, spec.conn_text);
    env.push((daemon::SESSION_ENV.into(), session_id.into()));
    // rsync runs its hooks as `$RSYNC_SHELL -c COMMAND`: the gate is that
    // "shell", and accepts only its own hook command lines, so no shell
    // ever runs.
    env.push(("RSYNC_SHELL".into(), gate.clone().into_os_string()));
    let sandbox = match policy.gate.sandbox {
        policy::Sandbox::Off => None,
        _ => {
            let mut read: Vec<PathBuf> = policy.files.clone();
            for pattern in &policy.gate.include {
                if let Some(dir) = Path::new(pattern).parent() {
                    read.push(dir.to_path_buf());
                }
            }
            read.push(config.clone());
            let mut write_roots = Vec::new();
            for (m, root) in &modules {
                if m.writable() {
                    write_roots.push(root.clone());
                } else {
                    read.push(root.clone());
                }
            }
            let mut append = lock_files;
            append.push(policy.gate.audit_log.clone());
            Some(sandbox::SandboxPlan {
                read,
                write: write_roots,
                exec: vec![policy.gate.rsync.clone(), gate.clone()],
                append,
                devices: modules.iter().any(|(m, _)| m.devices),
            })
        }
    };
    let mut config_arg = OsString::from("--config=");
    config_arg.push(&config);
    let plan = ExecPlan {
        program: policy.gate.rsync.clone(),
        arg0: "rsync".into(),
        args: vec!["--server".into(), "--daemon".into(), config_arg, ".".into()],
        env,
        cwd: PathBuf::from("/"),
        keep_fds: Vec::new(),
        sandbox,
        sandbox_mode: policy.gate.sandbox,
        notes,
    };
    Ok((plan, text))
}

/// Run rsync as a daemon over the SSH channel.
fn run_daemon(session: &mut Session, spec: &DaemonSpec<'_>, grant: &decide::DaemonGrant) -> u8 {
    let modules = grant.modules.clone();
    let (mut plan, _) = match build_daemon_plan(spec, grant, &session.id, true) {
        Ok(p) => p,
        Err(reason) => return session.refuse(&reason, Some("daemon"), modules),
    };
    let sandbox_status = match confine_self(&plan) {
        Ok(s) => s,
        Err(reason) => return session.refuse(&reason, Some("daemon"), modules),
    };
    let sandboxed = sandbox_status.starts_with("applied");
    plan.env.push((
        daemon::SANDBOX_ENV.into(),
        if sandboxed { "1" } else { "0" }.into(),
    ));
    let mut r = session.base("decision");
    r.decision = Some("allow".into());
    r.mode = Some("daemon".into());
    r.modules = modules.clone();
    r.argv = plan.argv_lossy();
    r.notes = plan.notes.clone();
    r.sandbox = Some(sandbox_status);
    if let Err(reason) = session.write(&r) {
        deny_line(&reason);
        return 1;
    }
    finish(session, plan, "daemon", modules)
}

/// Spawn, wait, and write the session's end record.
fn finish(session: &mut Session, plan: ExecPlan, mode: &str, modules: Vec<String>) -> u8 {
    let outcome = exec::spawn_and_wait(plan);
    let mut end = session.base("end");
    end.command = None;
    end.mode = Some(mode.into());
    end.modules = modules;
    let code = match outcome {
        Ok(o) => {
            end.exit_status = o.code;
            end.signal = o.signal;
            end.duration_ms = Some(audit::millis(o.duration));
            o.exit_code()
        }
        Err(e) => {
            end.reason = Some(reason_of(&DenyReason::Internal(format!(
                "cannot run rsync: {e}"
            ))));
            deny_line(&DenyReason::Internal("cannot run rsync".into()));
            1
        }
    };
    end.duration_ms = end
        .duration_ms
        .or_else(|| session.started.elapsed().ok().map(audit::millis));
    if let Err(e) = session.write(&end) {
        tracing::warn!("cannot write the session's end record: {e}");
    }
    code
}

/// `rsync-gate -c COMMAND`: the gate standing in for the shell rsync runs
/// its daemon hooks with. Only the hook command lines the gate writes into
/// its generated configs are accepted; anything else is refused.
pub fn hook_shell(command: &[u8]) -> u8 {
    let refuse = || {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "rsync-gate: denied: not a hook command line");
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

/// Which daemon hook is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    PreXfer,
    PostXfer,
}

/// `rsync-gate hook pre-xfer|post-xfer`: run by the daemon's rsync for each
/// in-band request. The pre-xfer hook applies the checked-mode rules to the
/// real request, writes its audit line, and vetoes by exiting non-zero with
/// the reason on stdout (which rsync shows to the client). Its inputs are
/// the command line from the generated config and rsync's `RSYNC_*`
/// variables, all treated as data.
pub fn hook(which: Hook, policy_path: &Path, client: &str) -> u8 {
    let env = daemon::HookEnv::from_process();
    let account = Account::current();
    let deny_stdout = |reason: &DenyReason| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "rsync-gate: denied: {reason}");
    };
    let policy = match load_policy_checked(policy_path) {
        Ok(p) => p,
        Err(reason) => {
            if which == Hook::PreXfer {
                deny_stdout(&reason);
                return 1;
            }
            return 0;
        }
    };
    let conn = env
        .connection
        .as_ref()
        .and_then(|c| parse_connection(c.as_bytes()));
    let mut log = match open_audit_log(&policy.gate.audit_log) {
        Ok(l) => l,
        Err(e) => {
            if which == Hook::PreXfer {
                deny_stdout(&DenyReason::AuditUnavailable(e));
                return 1;
            }
            return 0;
        }
    };
    let syslog = policy
        .gate
        .syslog
        .then(|| syslog::Syslog::connect(Path::new(syslog::DEFAULT_SOCKET)))
        .flatten();
    let mut r = Record {
        time: audit::rfc3339(SystemTime::now()),
        session: env
            .session
            .clone()
            .unwrap_or_else(|| session_id(SystemTime::now())),
        client: client.to_string(),
        source: conn.as_ref().map(|(c, _)| Source {
            addr: policy::net::canonical(c.addr).to_string(),
            port: c.port,
        }),
        modules: vec![env.module.clone()],
        pid: env.rsync_pid,
        request: env.request.as_ref().map(|r| audit::escape(r)),
        ..Default::default()
    };
    let code = match which {
        Hook::PostXfer => {
            r.event = "end".into();
            r.exit_status = env.exit_status;
            0
        }
        Hook::PreXfer => {
            r.event = "decision".into();
            r.argv = env.args.iter().map(|a| audit::escape(a)).collect();
            let sender = env.args.iter().any(|a| a.as_slice() == b"--sender");
            r.mode = Some(if sender { "sender" } else { "receiver" }.into());
            match daemon::pre_xfer_decision(&policy, client, &account, &env) {
                Ok(_) => {
                    r.decision = Some("allow".into());
                    0
                }
                Err(reason) => {
                    r.decision = Some("deny".into());
                    r.reason = Some(reason_of(&reason));
                    deny_stdout(&reason);
                    1
                }
            }
        }
    };
    if let Some(s) = &syslog {
        s.send(&r);
    }
    if let Err(e) = log.write(&r)
        && which == Hook::PreXfer
    {
        deny_stdout(&DenyReason::AuditUnavailable(e.to_string()));
        return 1;
    }
    code
}

/// Confine, plan, audit and run a checked grant.
fn run_checked(
    session: &mut Session,
    policy: &Policy,
    grant: &Grant,
    account: &Account,
    conn: Option<&Conn>,
    conn_text: Option<&str>,
) -> u8 {
    let mode = grant.mode.name();
    let modules = vec![grant.module.clone()];
    let plan = match build_checked_plan(policy, grant, account, conn, conn_text, true) {
        Ok(p) => p,
        Err(reason) => return session.refuse(&reason, Some(mode), modules),
    };
    let _slot = match take_slot(policy, &grant.module) {
        Ok(s) => s,
        Err(reason) => return session.refuse(&reason, Some(mode), modules),
    };
    let sandbox_status = match confine_self(&plan) {
        Ok(s) => s,
        Err(reason) => return session.refuse(&reason, Some(mode), modules),
    };
    let mut r = session.base("decision");
    r.decision = Some("allow".into());
    r.mode = Some(mode.into());
    r.modules = modules.clone();
    r.argv = plan.argv_lossy();
    r.notes = plan.notes.clone();
    r.sandbox = Some(sandbox_status);
    if let Err(reason) = session.write(&r) {
        deny_line(&reason);
        return 1;
    }
    finish(session, plan, mode, modules)
}

/// Apply the plan's kernel sandbox to this process (rsync inherits it).
/// Returns what to record; refuses when the policy requires a sandbox the
/// kernel cannot give.
fn confine_self(plan: &ExecPlan) -> Result<String, DenyReason> {
    let Some(sb) = &plan.sandbox else {
        return Ok(sandbox::Status::Off.to_string());
    };
    match sandbox::apply(sb, plan.sandbox_mode) {
        Ok(status) => Ok(status.to_string()),
        Err(e) if plan.sandbox_mode == policy::Sandbox::Required => {
            Err(DenyReason::SandboxUnavailable(e))
        }
        Err(e) => {
            tracing::warn!("sandbox not applied: {e}");
            Ok(format!("not applied: {e}"))
        }
    }
}

/// Take a connection slot of the module when it has `max_connections`.
fn take_slot(policy: &Policy, module: &str) -> Result<Option<slots::Slot>, DenyReason> {
    let Some(m) = policy.modules.get(module) else {
        return Ok(None);
    };
    if m.max_connections == 0 {
        return Ok(None);
    }
    let path = slots::lock_file(&policy.gate.lock_dir, &m.name);
    match slots::acquire(&path, m.max_connections, policy.gate.wait_for_slot) {
        Ok(s) => Ok(Some(s)),
        Err(slots::SlotError::Busy) => Err(DenyReason::Busy(m.name.clone())),
        Err(slots::SlotError::Io(e)) => Err(DenyReason::Internal(format!("connection slots: {e}"))),
    }
}

/// Build the exec plan for a checked grant (`create`: may create missing
/// backup/partial directories; false for `explain`).
pub fn build_checked_plan(
    policy: &Policy,
    grant: &Grant,
    account: &Account,
    conn: Option<&Conn>,
    conn_text: Option<&str>,
    create: bool,
) -> Result<ExecPlan, DenyReason> {
    let module = policy
        .modules
        .get(&grant.module)
        .ok_or_else(|| DenyReason::ModuleNotAvailable(grant.module.clone()))?;
    let confined = paths::confine(grant, module, account, &protected_paths(policy), create)?;
    let args = plan::checked_args(grant, &confined);
    let pins: Vec<String> = confined
        .pins
        .iter()
        .map(|p| format!("{} = {}", p.proc_path().display(), p.real.display()))
        .collect();
    let mut notes = confined.notes.clone();
    notes.extend(pins.into_iter().map(|p| format!("pinned {p}")));
    let sandbox = match policy.gate.sandbox {
        policy::Sandbox::Off => None,
        _ => {
            let root = confined.root.clone();
            let (read, write) = match grant.mode {
                decide::Mode::Sender => (vec![root], vec![]),
                decide::Mode::Receiver => (vec![], vec![root]),
            };
            notes.push(format!(
                "sandbox ({}): {} {}",
                policy.gate.sandbox,
                if write.is_empty() {
                    "read-only"
                } else {
                    "read-write"
                },
                confined.root.display()
            ));
            Some(sandbox::SandboxPlan {
                read,
                write,
                exec: vec![policy.gate.rsync.clone()],
                append: vec![],
                devices: module.devices,
            })
        }
    };
    Ok(ExecPlan {
        program: policy.gate.rsync.clone(),
        arg0: "rsync".into(),
        args,
        env: plan::child_env(account, conn, conn_text),
        cwd: confined.root.clone(),
        keep_fds: confined.pins.into_iter().map(|p| p.fd).collect(),
        sandbox,
        sandbox_mode: policy.gate.sandbox,
        notes,
    })
}

/// What `explain` reports.
#[derive(Debug, serde::Serialize)]
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
    /// The generated rsyncd.conf (daemon requests).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
}

impl Explanation {
    /// An allowed request: exactly what would run.
    fn allowed(
        plan: &ExecPlan,
        mode: &str,
        modules: Vec<String>,
        config: Option<String>,
    ) -> Explanation {
        Explanation {
            decision: "allow".into(),
            reason: None,
            mode: Some(mode.into()),
            modules,
            argv: std::iter::once(plan.program.to_string_lossy().into_owned())
                .chain(plan.argv_lossy().into_iter().skip(1))
                .collect(),
            env: plan
                .env
                .iter()
                .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
                .collect(),
            cwd: Some(plan.cwd.display().to_string()),
            notes: plan.notes.clone(),
            config,
        }
    }
}

/// `rsync-gate explain`: the decision for a command, without running it.
pub fn explain(
    policy: &Policy,
    policy_path: &Path,
    account: &Account,
    client: &str,
    from: Option<IpAddr>,
    command: &[u8],
) -> Explanation {
    let account = account.clone();
    let conn = from.map(|addr| Conn { addr, port: 0 });
    let parsed = request::parse_command(command);
    let caps = match &parsed {
        Ok(Request::Server(_)) => rsync::probe(&policy.gate.rsync).unwrap_or_default(),
        _ => RsyncCaps::default(),
    };
    let ctx = Context {
        policy,
        client,
        conn,
        caps,
    };
    let deny = |reason: DenyReason, mode: Option<String>, modules: Vec<String>| Explanation {
        decision: "deny".into(),
        reason: Some(reason_of(&reason)),
        mode,
        modules,
        argv: vec![],
        env: vec![],
        cwd: None,
        notes: vec![],
        config: None,
    };
    match decide::decide(&ctx, parsed.as_ref()) {
        Decision::Deny(r) => deny(r, None, vec![]),
        Decision::Probe => Explanation {
            decision: "allow".into(),
            reason: None,
            mode: Some("probe".into()),
            modules: vec![],
            argv: vec![],
            env: vec![],
            cwd: None,
            notes: vec!["'true' succeeds without running anything".into()],
            config: None,
        },
        Decision::Daemon(d) => {
            let conn_text = from.map(|a| format!("{a} 0 127.0.0.1 22"));
            let spec = DaemonSpec {
                policy,
                policy_path,
                client,
                account: &account,
                conn: conn.as_ref(),
                conn_text: conn_text.as_deref(),
            };
            match build_daemon_plan(&spec, &d, "explain", false) {
                Err(r) => deny(r, Some("daemon".into()), d.modules),
                Ok((plan, text)) => Explanation::allowed(&plan, "daemon", d.modules, Some(text)),
            }
        }
        Decision::Checked(g) => {
            let mode = Some(g.mode.name().to_string());
            let conn_text = from.map(|a| format!("{a} 0 127.0.0.1 22"));
            match build_checked_plan(
                policy,
                &g,
                &account,
                conn.as_ref(),
                conn_text.as_deref(),
                false,
            ) {
                Err(r) => deny(r, mode, vec![g.module.clone()]),
                Ok(plan) => {
                    Explanation::allowed(&plan, g.mode.name(), vec![g.module.clone()], None)
                }
            }
        }
    }
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
        if let Err(r) = paths::check_module(m, account, &protected_paths(policy)) {
            let detail = match &r {
                DenyReason::ModuleUnsafe { why, .. } => why.clone(),
                other => other.to_string(),
            };
            out.push(err(format!("{}: module '{}': {detail}", m.origin, m.name)));
        }
    }
    match std::fs::metadata(&policy.gate.rsync) {
        Ok(md) if md.is_file() => match rsync::probe(&policy.gate.rsync) {
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
    let gate = std::fs::canonicalize(gate_path()).unwrap_or_else(|_| gate_path());
    for c in policy.clients.values().filter(|c| !c.modules.is_empty()) {
        let modules: Vec<(&policy::Module, PathBuf)> = policy
            .client_modules(c)
            .map(|m| (m, m.path.clone()))
            .collect();
        let ctx = daemon::ConfigContext {
            gate: &gate,
            policy_path: &policy.source,
            client: &c.name,
            account,
            account_gid: nix::unistd::getegid().as_raw(),
        };
        if let Err(e) = daemon::config_text(&ctx, &policy.gate.lock_dir, &modules) {
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

/// Quote a string for an `authorized_keys` option value.
fn ak_quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// `rsync-gate authorized-keys`: one line per client with a key.
pub fn authorized_keys(
    policy: &Policy,
    policy_path: &Path,
    gate: &Path,
    only: Option<&str>,
) -> Vec<String> {
    let mut lines = Vec::new();
    for c in policy.clients.values() {
        if only.is_some_and(|o| o != c.name) {
            continue;
        }
        let Some(key) = &c.key else { continue };
        let mut cmd = shell_words::quote(&gate.to_string_lossy()).into_owned();
        cmd.push_str(" serve");
        if policy_path != Path::new(policy::DEFAULT_POLICY) {
            cmd.push_str(" --policy ");
            cmd.push_str(&shell_words::quote(&policy_path.to_string_lossy()));
        }
        cmd.push_str(" --client ");
        cmd.push_str(&c.name);
        let mut opts = String::from("restrict");
        if !c.from.is_empty() {
            let from: Vec<String> = c.from.iter().map(ToString::to_string).collect();
            opts.push_str(&format!(",from=\"{}\"", from.join(",")));
        }
        opts.push_str(&format!(",command=\"{}\"", ak_quote(&cmd)));
        lines.push(format!("{opts} {key}"));
    }
    lines
}

/// The gate binary's own path, for authorized_keys lines.
pub fn gate_path() -> PathBuf {
    std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/usr/local/bin/rsync-gate"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_parsing() {
        let (c, s) = parse_connection(b"192.0.2.10 53422 192.0.2.1 22").unwrap();
        assert_eq!(c.addr.to_string(), "192.0.2.10");
        assert_eq!(c.port, 53422);
        assert_eq!(s, "192.0.2.10 53422 192.0.2.1 22");
        assert!(parse_connection(b"::1 1 ::1 22").is_some());
        assert!(parse_connection(b"::ffff:192.0.2.1 1 ::1 22").is_some());
        for bad in [
            &b""[..],
            b"192.0.2.10",
            b"192.0.2.10 x 1.2.3.4 22",
            b"192.0.2.10 1 1.2.3.4 22 extra",
            b"192.0.2.10  1 1.2.3.4 22",
            b"host 1 1.2.3.4 22",
            b"192.0.2.10 70000 1.2.3.4 22",
        ] {
            assert!(parse_connection(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn authorized_keys_lines() {
        let p = policy::load_text(
            Path::new("/etc/rsync-gate/policy.toml"),
            "[modules.w]\npath = \"/srv/w\"\n\
                 [clients.a]\nmodules = [\"w\"]\nfrom = [\"192.0.2.10\", \"198.51.100.0/24\"]\nkey = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB a@x\"\n\
                 [clients.b]\nmodules = [\"w\"]\n",
        )
        .unwrap();
        let lines = authorized_keys(
            &p,
            Path::new("/etc/rsync-gate/policy.toml"),
            Path::new("/usr/local/bin/rsync-gate"),
            None,
        );
        assert_eq!(
            lines,
            [
                "restrict,from=\"192.0.2.10,198.51.100.0/24\",command=\"/usr/local/bin/rsync-gate serve --client a\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB a@x"
            ]
        );
        let lines = authorized_keys(&p, Path::new("/tmp/p t.toml"), Path::new("/g"), Some("a"));
        assert!(
            lines[0].contains("command=\"/g serve --policy '/tmp/p t.toml' --client a\""),
            "{}",
            lines[0]
        );
    }
}
