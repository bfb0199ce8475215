//! Push-mirror triggers, after the front half: a trigger client's request
//! evaluated to a [`TriggerPlan`] is recorded, left pending and started (or
//! queued behind the run going on) by [`fire`]; the detached supervisor
//! ([`supervise`], the hidden `trigger-run` command) runs the pending runs
//! one after another, each evaluated again through the same front half
//! against the policy as it is then, and records how each ended.

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use super::evaluate::{self, Evaluation, Inputs};
use super::session::{Session, deny_line};
use crate::audit::{self, AuditLog, Event, Mode, Reason, Record, TriggerInfo, TriggerState};
use crate::decide::RsyncCaps;
use crate::deny::DenyReason;
use crate::exec::trigger::{
    self as exec, FireError, Fired, PendingRun, Supervisor, SupervisorSpec,
};
use crate::host::{self, Account};
use crate::plan::trigger::TriggerPlan;
use crate::policy;
use crate::request::conn::Connection;
use crate::request::{Request, Word};

/// Fire a trigger for the session: record it, leave the run pending, start
/// a supervisor unless a run is going on, and tell the client in one line
/// on stderr. Returns the exit status (0 once started or queued: the job
/// runs on after the client is gone).
pub fn fire(session: &mut Session, inputs: &Inputs<'_>, plan: &TriggerPlan) -> u8 {
    let run = PendingRun {
        session: session.id.clone(),
        words: plan.words.clone(),
        connection: inputs.conn.and_then(Connection::env_value),
        command: session.command(),
        superseded: Vec::new(),
        superseded_total: 0,
    };
    let supervisor = SupervisorSpec {
        gate: inputs.gate.to_path_buf(),
        args: vec![
            OsString::from("trigger-run"),
            "--policy".into(),
            inputs.policy_path.as_os_str().to_owned(),
            "--client".into(),
            inputs.client.into(),
            "--trigger".into(),
            plan.name.clone().into(),
        ],
    };
    let fired = exec::fire(plan, &run, &supervisor, |fired| {
        session.trigger(plan, fired)
    });
    let word = match fired {
        Ok(Fired::Started) => "started",
        Ok(Fired::Queued) => "queued",
        Err(FireError::Audit(reason)) => {
            deny_line(&reason);
            return 1;
        }
        Err(FireError::Io(e)) => {
            session.trigger_failed(plan, &DenyReason::Internal(e));
            return 1;
        }
    };
    let _ = writeln!(
        std::io::stderr().lock(),
        "rsync-gate: trigger '{}' {word}",
        plan.name
    );
    0
}

/// `rsync-gate trigger-run`: the supervisor of trigger `name`, started by
/// [`fire`] with the trigger's `run.lock` on descriptor `lock_fd`. Runs
/// every pending run in turn; exits when none is left.
pub fn supervise(policy_path: &Path, client: &str, name: &str, lock_fd: i32) -> u8 {
    let policy = match policy::index::load_session(policy_path, client).0 {
        Ok(p) => p,
        Err(_) => return 1,
    };
    let state_dir = crate::plan::trigger::state_dir(&policy.gate.lock_dir, name);
    let Ok(mut supervisor) = Supervisor::adopt(&state_dir, lock_fd) else {
        return 1;
    };
    loop {
        let run = match supervisor.take_next() {
            Ok(Some(run)) => run,
            Ok(None) => return 0,
            Err(e) => {
                tracing::warn!("trigger '{name}': {e}");
                return 1;
            }
        };
        one_run(policy_path, client, name, &run);
    }
}

/// One pending run: evaluated again (the policy may have changed since the
/// trigger), run, and its end recorded under the triggering session's id.
fn one_run(policy_path: &Path, client: &str, name: &str, run: &PendingRun) {
    let started = SystemTime::now();
    let conn = run
        .connection
        .as_ref()
        .and_then(|c| Connection::parse(c.as_bytes()));
    let mut end = Record {
        time: String::new(),
        event: Event::End,
        session: run.session.clone(),
        client: client.to_string(),
        source: super::session::source(conn.as_ref()),
        command: run.command.clone(),
        mode: Some(Mode::Trigger),
        pid: Some(std::process::id()),
        trigger: Some(TriggerInfo {
            name: name.to_string(),
            words: run.words.iter().map(|w| audit::escape(w)).collect(),
            state: None,
            timed_out: false,
            superseded: run.superseded.clone(),
            superseded_total: run.superseded_total,
        }),
        ..Default::default()
    };
    let policy = match policy::index::load_session(policy_path, client).0 {
        Ok(p) => p,
        Err(e) => {
            let reason = match e {
                policy::LoadError::Unsafe(e) => DenyReason::PolicyUnsafe(e.to_string()),
                policy::LoadError::Invalid(e) => DenyReason::PolicyInvalid(e.to_string()),
            };
            end.reason = Some(Reason::from(&reason));
            return write_end(&policy::Gate::default(), end, started);
        }
    };
    let account = Account::current();
    let gate = host::gate_binary();
    let inputs = Inputs {
        policy: &policy,
        policy_path,
        client,
        conn: conn.as_ref(),
        account: &account,
        caps: RsyncCaps::default(),
        landlock: false,
        gate: &gate,
        session: &run.session,
    };
    let words: Vec<Word> = run.words.iter().map(|w| Word::plain(w.clone())).collect();
    let request = Request::Other { words };
    match evaluate::evaluate(&inputs, Ok(&request)) {
        Evaluation::Trigger(plan) if plan.name == name => {
            end.argv = plan.argv_shown();
            match exec::run_job(&plan) {
                Ok(o) => {
                    end.exit_status = o.code;
                    end.signal = o.signal;
                    end.duration_ms = Some(audit::millis(o.duration));
                    if let Some(t) = &mut end.trigger {
                        t.timed_out = o.timed_out;
                    }
                }
                Err(e) => end.reason = Some(Reason::from(&DenyReason::Internal(e))),
            }
        }
        Evaluation::Refused(r) => end.reason = Some(Reason::from(&r.reason)),
        other => {
            end.reason = Some(Reason::from(&DenyReason::Internal(format!(
                "the pending run is no longer trigger '{name}': {other:?}"
            ))));
        }
    }
    write_end(&policy.gate, end, started);
}

/// Record a run's end: in the audit log, and in syslog and the journal
/// when the policy says so (as every session's records).
fn write_end(gate: &policy::Gate, mut end: Record, started: SystemTime) {
    end.time = audit::rfc3339(SystemTime::now());
    end.duration_ms = end
        .duration_ms
        .or_else(|| started.elapsed().ok().map(audit::millis));
    audit::Mirrors::connect(gate.syslog, gate.journald).send(&end);
    match AuditLog::open_checked(&gate.audit_log) {
        Ok(mut log) => {
            if let Err(e) = log.write(&end) {
                tracing::warn!("cannot record the end of a trigger run: {e}");
            }
        }
        Err(e) => tracing::warn!("cannot record the end of a trigger run: {e}"),
    }
}

/// The trigger's word for the audit record.
pub fn state(f: Fired) -> TriggerState {
    match f {
        Fired::Started => TriggerState::Started,
        Fired::Queued => TriggerState::Queued,
    }
}
