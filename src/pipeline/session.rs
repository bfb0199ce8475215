//! A session's bookkeeping: its id, who connected from where with what
//! command, and the audit records it writes (and the syslog summaries and
//! journal entries that mirror them). Every refusal goes through
//! [`Session::refuse`]: one audit record, one `rsync-gate: denied:` line on
//! stderr.

use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use crate::audit::{
    self, AuditLog, Event, Mirrors, Mode, Reason, Record, SandboxStatus, Source, Verdict,
};
use crate::deny::DenyReason;
use crate::exec::{Confinement, Outcome, Ready, sandbox};
use crate::request::conn::Connection;

use super::evaluate::Refusal;

/// A session in progress.
#[derive(Debug)]
pub struct Session {
    pub id: String,
    client: String,
    source: Option<Source>,
    command: Option<String>,
    log: Result<AuditLog, String>,
    mirrors: Mirrors,
    started: SystemTime,
    /// A learn client's request: what its decision records note.
    learn: Option<audit::Learned>,
}

/// A new session id: start time and process id.
pub fn session_id(started: SystemTime) -> String {
    let nanos = started
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{:x}-{}", nanos, std::process::id())
}

/// The audit record's view of a connection.
pub fn source(conn: Option<&Connection>) -> Option<Source> {
    conn.map(|c| Source {
        addr: crate::policy::net::canonical(c.client.addr).to_string(),
        port: c.client.port,
    })
}

/// Print the one line a refused client sees.
pub fn deny_line(reason: &DenyReason) {
    let _ = writeln!(std::io::stderr().lock(), "{}", reason.line());
}

impl Session {
    pub fn new(client: &str, conn: Option<&Connection>, command: Option<&[u8]>) -> Session {
        let started = SystemTime::now();
        Session {
            id: session_id(started),
            client: client.to_string(),
            source: source(conn),
            command: command.map(audit::escape),
            log: Err("the policy could not be loaded".into()),
            mirrors: Mirrors::default(),
            started,
            learn: None,
        }
    }

    /// The client is a learn client (`learn = true`): its decision records
    /// note what `request` asked for ([`audit::Learned`]).
    pub fn learn(&mut self, request: audit::Learned) {
        self.learn = Some(request);
    }

    /// Open the audit log (with its safety checks), and syslog and the
    /// journal when the policy says so.
    pub fn open_log(&mut self, path: &Path, syslog: bool, journald: bool) {
        self.log = AuditLog::open_checked(path);
        self.mirrors = Mirrors::connect(syslog, journald);
    }

    /// The log could not be opened: nothing may run, and nothing can be
    /// recorded.
    pub fn log_error(&self) -> Option<DenyReason> {
        self.log
            .as_ref()
            .err()
            .map(|e| DenyReason::AuditUnavailable(e.clone()))
    }

    /// Show what arrived on stdin (`-s`) after the command line.
    pub fn add_stdin_args(&mut self, args: &[Vec<u8>]) {
        self.command = self.command.take().map(|c| {
            let shown: Vec<String> = args.iter().map(|a| audit::escape(a)).collect();
            format!("{c} <stdin: {}>", shown.join(" "))
        });
    }

    fn record(&self, event: Event) -> Record {
        Record {
            time: audit::rfc3339(SystemTime::now()),
            event,
            session: self.id.clone(),
            client: self.client.clone(),
            source: self.source.clone(),
            command: self.command.clone(),
            learn: match event {
                Event::Decision => self.learn.clone(),
                _ => None,
            },
            pid: Some(std::process::id()),
            ..Default::default()
        }
    }

    fn write(&mut self, record: &Record) -> Result<(), DenyReason> {
        self.mirrors.send(record);
        match &mut self.log {
            Ok(log) => log
                .write(record)
                .map_err(|e| DenyReason::AuditUnavailable(e.to_string())),
            Err(e) => Err(DenyReason::AuditUnavailable(e.clone())),
        }
    }

    /// Record and report a refusal; returns the exit status.
    pub fn refuse(&mut self, refusal: &Refusal) -> u8 {
        let mut r = self.record(Event::Decision);
        r.decision = Some(Verdict::Deny);
        r.reason = Some(Reason::from(&refusal.reason));
        r.mode = refusal.mode;
        r.modules = refusal.modules.clone();
        r.trigger = refusal.trigger.clone();
        // Refused either way; a failed audit write changes nothing.
        let _ = self.write(&r);
        deny_line(&refusal.reason);
        1
    }

    /// A refusal rsync's daemon made in this `host::` session (it told the
    /// client itself): the `deny` record checked mode writes for the same
    /// module, with what the daemon said in its detail.
    pub fn refused_by_daemon(&mut self, refusal: &super::daemon_log::DaemonRefusal) {
        let mut r = self.record(Event::Decision);
        r.command = None;
        r.decision = Some(Verdict::Deny);
        let mut reason = Reason::from(&refusal.reason);
        let said = format!("refused by rsync's daemon: {}", refusal.said);
        reason.detail = Some(match reason.detail.take() {
            Some(d) => format!("{d}; {said}"),
            None => said,
        });
        r.reason = Some(reason);
        r.mode = Some(Mode::Daemon);
        r.modules = refusal.modules.clone();
        r.request = refusal.request.clone();
        // The module the client named, as far as it is a module name.
        r.learn = self.learn.as_ref().map(|_| {
            let mut l = audit::Learned::default();
            if let Some(name) = refusal
                .request
                .as_deref()
                .filter(|n| crate::policy::valid_name(n))
            {
                l.add_module(name.to_string());
            }
            l
        });
        if let Err(e) = self.write(&r) {
            tracing::warn!("cannot write the daemon's refusal: {e}");
        }
    }

    /// The original command, escaped (what the records show).
    pub fn command(&self) -> Option<String> {
        self.command.clone()
    }

    /// A trigger's decision record (allow: started or queued). Nothing runs
    /// or is queued unless it is written.
    pub fn trigger(
        &mut self,
        plan: &crate::plan::trigger::TriggerPlan,
        fired: crate::exec::trigger::Fired,
    ) -> Result<(), DenyReason> {
        let mut r = self.record(Event::Decision);
        r.decision = Some(Verdict::Allow);
        r.mode = Some(Mode::Trigger);
        r.argv = plan.argv_shown();
        r.trigger = Some(audit::TriggerInfo {
            name: plan.name.clone(),
            words: plan.words_shown(),
            state: Some(super::triggers::state(fired)),
            ..Default::default()
        });
        self.write(&r)
    }

    /// A trigger that was recorded but could not be started or queued.
    pub fn trigger_failed(
        &mut self,
        plan: &crate::plan::trigger::TriggerPlan,
        reason: &DenyReason,
    ) {
        let mut end = self.record(Event::End);
        end.mode = Some(Mode::Trigger);
        end.reason = Some(Reason::from(reason));
        end.trigger = Some(audit::TriggerInfo {
            name: plan.name.clone(),
            words: plan.words_shown(),
            ..Default::default()
        });
        let _ = self.write(&end);
        deny_line(reason);
    }

    /// `true`: record it, run nothing.
    pub fn probe(&mut self) -> u8 {
        let mut r = self.record(Event::Decision);
        r.decision = Some(Verdict::Allow);
        r.mode = Some(Mode::Probe);
        match self.write(&r) {
            Ok(()) => 0,
            Err(reason) => {
                deny_line(&reason);
                1
            }
        }
    }

    /// The allow record, written after the plan is prepared (it names the
    /// sandbox that is in place) and before anything runs. An allow that
    /// cannot be recorded is a refusal.
    pub fn allow(
        &mut self,
        mode: Mode,
        modules: &[String],
        ready: &Ready,
    ) -> Result<(), DenyReason> {
        let mut r = self.record(Event::Decision);
        r.decision = Some(Verdict::Allow);
        r.mode = Some(mode);
        r.modules = modules.to_vec();
        r.argv = ready.plan().argv_shown();
        r.notes = ready.plan().notes.clone();
        r.sandbox = Some(sandbox_status(ready.confinement));
        r.priority = ready.priority.clone();
        self.write(&r)
    }

    /// The writer of the session's file records (`transfer_log`): a
    /// handle of its own on the audit log. None when the log is not open.
    pub fn file_records(
        &self,
        plan: &crate::plan::filelog::FileLogPlan,
    ) -> Result<super::filelog::FileLogWriter, String> {
        let log = match &self.log {
            Ok(log) => log.try_clone().map_err(|e| e.to_string())?,
            Err(e) => return Err(e.clone()),
        };
        Ok(super::filelog::FileLogWriter::new(
            plan,
            log,
            &self.id,
            &self.client,
        ))
    }

    /// The end record: how the child ended, or why it could not start,
    /// and (with `transfer_log`) how many file records were written.
    pub fn end(
        &mut self,
        mode: Mode,
        modules: Vec<String>,
        outcome: std::io::Result<Outcome>,
        file_log: Option<audit::FileLogStatus>,
    ) -> u8 {
        let mut end = self.record(Event::End);
        end.command = None;
        end.mode = Some(mode);
        end.modules = modules;
        end.file_log = file_log;
        let code = match outcome {
            Ok(o) => {
                end.exit_status = o.code;
                end.signal = o.signal;
                end.duration_ms = Some(audit::millis(o.duration));
                o.exit_code()
            }
            Err(e) => {
                let reason = DenyReason::Internal(format!("cannot run rsync: {e}"));
                end.reason = Some(Reason::from(&reason));
                end.duration_ms = self.started.elapsed().ok().map(audit::millis);
                deny_line(&reason);
                1
            }
        };
        if let Err(e) = self.write(&end) {
            tracing::warn!("cannot write the session's end record: {e}");
        }
        code
    }
}

/// The audit record's word for a prepared sandbox.
pub fn sandbox_status(c: Confinement) -> SandboxStatus {
    match c {
        Confinement::Applied(sandbox::Status::Full) => SandboxStatus::Applied,
        Confinement::Applied(sandbox::Status::Partial) => SandboxStatus::Partial,
        Confinement::Off => SandboxStatus::Off,
        Confinement::Unavailable => SandboxStatus::Unavailable,
    }
}
