//! Triggers' side effects: at most one run of a trigger's job at a time,
//! and a trigger that arrives during a run causes exactly one more run
//! afterwards, with the latest trigger's words.
//!
//! Each trigger has a state directory (`lock_dir/triggers/NAME/`, the
//! account's) with two kernel locks and one file:
//! - `run.lock` is held, for as long as runs go on, by the trigger's
//!   supervisor: a process of its own (a new session, no terminal, no part
//!   of any SSH session) that runs the job again and again while runs are
//!   pending. The lock goes with the supervisor, however it ends.
//! - `state.lock` is held only for the short moments a trigger looks at
//!   `run.lock` and writes `pending`, or the supervisor takes `pending` or
//!   gives up `run.lock`: so no trigger can be lost between a supervisor's
//!   last look and its exit.
//! - `pending` holds the run wanted next (the latest trigger's words, as
//!   JSON); it is replaced, never queued, so a burst gives one run.
//!
//! A trigger takes `state.lock`, tries `run.lock` without waiting, records
//! its decision (started or queued), writes `pending`, and when it got
//! `run.lock` starts a supervisor that inherits it. The supervisor takes
//! `pending` under `state.lock`, runs the job, and repeats; when nothing is
//! pending it gives up `run.lock` before `state.lock` and exits.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::host::{CHILD_HOME, CHILD_PATH};
use crate::plan::trigger::TriggerPlan;

/// How long a job gets to end after SIGTERM before SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(10);
/// How often a waiting supervisor looks at its job.
const POLL: Duration = Duration::from_millis(50);

/// What a trigger did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fired {
    /// No run was going on: a supervisor now runs the job.
    Started,
    /// A run is going on: the job runs once more after it.
    Queued,
}

/// The run a trigger asks for, until the supervisor takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRun {
    /// The triggering session (its audit records carry the same id).
    pub session: String,
    /// The client's words, as sent.
    pub words: Vec<Vec<u8>>,
    /// `SSH_CONNECTION` as the gate parsed it, for re-checking `from`.
    pub connection: Option<String>,
    /// The original command, escaped, for the run's audit records.
    pub command: Option<String>,
    /// Earlier triggers this run also answers (their sessions, oldest
    /// first, at most [`MAX_SUPERSEDED`]): they were queued and replaced
    /// before a run took them.
    #[serde(default)]
    pub superseded: Vec<String>,
    /// How many earlier triggers this run answers, all told.
    #[serde(default)]
    pub superseded_total: u64,
}

/// How many superseded sessions a pending run names.
pub const MAX_SUPERSEDED: usize = 32;

/// How to start a supervisor: the gate binary and its arguments (the
/// policy and client it was triggered for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisorSpec {
    pub gate: PathBuf,
    pub args: Vec<std::ffi::OsString>,
}

/// A trigger's state directory.
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
}

/// Open `path` for reading and writing (close-on-exec), creating it,
/// never through a link.
fn open_file(path: &Path) -> io::Result<File> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::other(format!(
            "{}: not a regular file",
            path.display()
        )));
    }
    Ok(f)
}

impl StateDir {
    /// The directory, created (0700) when missing; it must be a directory
    /// of this process's user, not a link, and every directory above it
    /// (`lock_dir/triggers`, `lock_dir`, ...) the account's or root's and
    /// writable by nobody else, as for every file under `lock_dir`.
    pub fn open(path: &Path) -> io::Result<StateDir> {
        StateDir::open_as(path, nix::unistd::geteuid().as_raw())
    }

    /// [`StateDir::open`] for the user `uid`.
    fn open_as(path: &Path, uid: u32) -> io::Result<StateDir> {
        crate::trust::ensure_private_dir(path, uid, 0o700).map_err(io::Error::other)?;
        let md = std::fs::symlink_metadata(path)?;
        if !md.is_dir() || md.uid() != uid || md.mode() & 0o022 != 0 {
            return Err(io::Error::other(format!(
                "{} is not a directory of this account's alone",
                path.display()
            )));
        }
        Ok(StateDir {
            path: path.to_path_buf(),
        })
    }

    fn lock_state(&self) -> io::Result<Flock<File>> {
        let f = open_file(&self.path.join("state.lock"))?;
        Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| io::Error::from(e))
    }

    /// `run.lock`, opened so that a child inherits it.
    fn open_run_lock(&self) -> io::Result<OwnedFd> {
        let fd = nix::fcntl::open(
            &self.path.join("run.lock"),
            nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CREAT | nix::fcntl::OFlag::O_NOFOLLOW,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )?;
        Ok(fd)
    }

    /// Leave `run` pending in place of any run already pending, which it
    /// then also answers (named in `superseded`).
    fn queue(&self, run: &PendingRun) -> io::Result<()> {
        let mut run = run.clone();
        if let Some(old) = self.read_pending()? {
            let mut superseded = old.superseded;
            superseded.push(old.session);
            superseded.truncate(MAX_SUPERSEDED);
            run.superseded = superseded;
            run.superseded_total = old.superseded_total.saturating_add(1);
        }
        self.write_pending(&run)
    }

    fn write_pending(&self, run: &PendingRun) -> io::Result<()> {
        let text = serde_json::to_vec(run).map_err(io::Error::other)?;
        let tmp = self.path.join(format!(".pending.{}", std::process::id()));
        let result = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&tmp)?;
            f.write_all(&text)?;
            std::fs::rename(&tmp, self.path.join("pending"))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// The pending run, left in place (one that cannot be read counts as
    /// none).
    fn read_pending(&self) -> io::Result<Option<PendingRun>> {
        Ok(self
            .read_pending_bytes()?
            .and_then(|text| serde_json::from_slice(&text).ok()))
    }

    fn read_pending_bytes(&self) -> io::Result<Option<Vec<u8>>> {
        match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.path.join("pending"))
        {
            Ok(mut f) => {
                let mut v = Vec::new();
                std::io::Read::read_to_end(&mut f, &mut v)?;
                Ok(Some(v))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn take_pending(&self) -> io::Result<Option<PendingRun>> {
        let Some(text) = self.read_pending_bytes()? else {
            return Ok(None);
        };
        std::fs::remove_file(self.path.join("pending"))?;
        // A pending run that cannot be read is dropped, not retried forever.
        Ok(serde_json::from_slice(&text).ok())
    }
}

/// Why a trigger could not be fired.
#[derive(Debug)]
pub enum FireError<E> {
    /// The decision could not be recorded: nothing was started or queued.
    Audit(E),
    /// The state directory, its locks or the supervisor failed.
    Io(String),
}

/// Fire a trigger: record the decision through `audit` (after the
/// started-or-queued question is settled and before anything is written),
/// leave the run pending, and start a supervisor unless one is running.
pub fn fire<E>(
    plan: &TriggerPlan,
    run: &PendingRun,
    supervisor: &SupervisorSpec,
    audit: impl FnOnce(Fired) -> Result<(), E>,
) -> Result<Fired, FireError<E>> {
    let io = |what: &str, e: io::Error| {
        FireError::Io(format!("{what} ({}): {e}", plan.state_dir.display()))
    };
    let dir = StateDir::open(&plan.state_dir).map_err(|e| io("state directory", e))?;
    let _state = dir.lock_state().map_err(|e| io("state lock", e))?;
    let run_lock = dir.open_run_lock().map_err(|e| io("run lock", e))?;
    let fired = match crate::sys::try_lock_exclusive(run_lock.as_fd()) {
        Ok(true) => Fired::Started,
        Ok(false) => Fired::Queued,
        Err(e) => return Err(io("run lock", e)),
    };
    audit(fired).map_err(FireError::Audit)?;
    dir.queue(run).map_err(|e| io("pending run", e))?;
    if fired == Fired::Started {
        let mut cmd = Command::new(&supervisor.gate);
        cmd.args(&supervisor.args)
            .arg("--lock-fd")
            .arg(run_lock.as_raw_fd().to_string())
            .env_clear()
            .env("PATH", CHILD_PATH)
            .env("HOME", CHILD_HOME)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // The supervisor now holds run.lock through its inherited copy; ours
        // is closed below without unlocking.
        crate::sys::spawn_detached(&mut cmd).map_err(|e| io("starting the supervisor", e))?;
    }
    drop(run_lock);
    Ok(fired)
}

/// What firing a trigger would do now, found without creating anything
/// (for `explain`): queued if a supervisor holds `run.lock`.
pub fn would_fire(state_dir: &Path) -> Fired {
    let Ok(f) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(state_dir.join("run.lock"))
    else {
        return Fired::Started;
    };
    match crate::sys::try_lock_exclusive(f.as_fd()) {
        // Ours for a moment only: closing it gives it back.
        Ok(true) | Err(_) => Fired::Started,
        Ok(false) => Fired::Queued,
    }
}

/// A trigger's supervisor, holding `run.lock`.
#[derive(Debug)]
pub struct Supervisor {
    dir: StateDir,
    run_lock: Option<OwnedFd>,
}

impl Supervisor {
    /// Take over `run.lock` from the trigger that started this process
    /// (descriptor `fd`, which must be that very file).
    pub fn adopt(state_dir: &Path, fd: i32) -> io::Result<Supervisor> {
        let dir = StateDir::open(state_dir)?;
        let lock = crate::sys::adopt_inherited_fd(fd)?;
        let held = nix::sys::stat::fstat(&lock).map_err(io::Error::from)?;
        let file = std::fs::symlink_metadata(state_dir.join("run.lock"))?;
        if held.st_dev != file.dev() || held.st_ino != file.ino() {
            return Err(io::Error::other(
                "the descriptor is not this trigger's run lock",
            ));
        }
        Ok(Supervisor {
            dir,
            run_lock: Some(lock),
        })
    }

    /// The next run, or None: then `run.lock` is given up (under
    /// `state.lock`, so a trigger arriving now starts a new supervisor) and
    /// the supervisor should exit.
    pub fn take_next(&mut self) -> io::Result<Option<PendingRun>> {
        let _state = self.dir.lock_state()?;
        let run = self.dir.take_pending()?;
        if run.is_none() {
            // Closing the last descriptor on run.lock releases it.
            self.run_lock.take();
        }
        Ok(run)
    }
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobOutcome {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub duration: Duration,
    /// The trigger's timeout stopped it.
    pub timed_out: bool,
}

/// Run one job to its end: stdin `/dev/null`, stdout and stderr appended
/// to the trigger's log, its own process group (so a timeout stops all of
/// it: SIGTERM, then SIGKILL after a grace period).
pub fn run_job(plan: &TriggerPlan) -> Result<JobOutcome, String> {
    let mut cmd = job_command(plan);
    match &plan.log {
        Some(path) => {
            let f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o640)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)
                .map_err(|e| format!("log {}: {e}", path.display()))?;
            let err = f.try_clone().map_err(|e| format!("log: {e}"))?;
            cmd.stdout(f).stderr(err);
        }
        None => {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
    }
    wait(plan, cmd)
}

fn job_command(plan: &TriggerPlan) -> Command {
    let mut cmd = Command::new(&plan.program);
    cmd.args(&plan.args)
        .env_clear()
        .envs(plan.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&plan.cwd)
        .stdin(Stdio::null())
        .process_group(0);
    crate::sys::terminate_with_parent(&mut cmd);
    cmd
}

fn wait(plan: &TriggerPlan, mut cmd: Command) -> Result<JobOutcome, String> {
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", plan.program.display()))?;
    let group = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let mut timed_out = false;
    let mut kill_at: Option<Instant> = None;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return Err(format!("waiting for the job: {e}")),
        }
        let now = Instant::now();
        if let Some(limit) = plan.timeout
            && !timed_out
            && now.duration_since(start) >= limit
        {
            timed_out = true;
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGTERM);
            kill_at = Some(now + KILL_GRACE);
        }
        if kill_at.is_some_and(|at| now >= at) {
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            kill_at = None;
        }
        std::thread::sleep(POLL);
    };
    if timed_out {
        // Whatever of the group is left goes too.
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    }
    Ok(JobOutcome {
        code: status.code(),
        signal: status.signal(),
        duration: start.elapsed(),
        timed_out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_in(dir: &Path) -> TriggerPlan {
        TriggerPlan {
            name: "t".into(),
            program: "/bin/true".into(),
            args: vec![],
            env: vec![],
            cwd: "/".into(),
            log: None,
            timeout: None,
            state_dir: dir.join("triggers/t"),
            words: vec![],
            passed: false,
        }
    }

    fn run(session: &str) -> PendingRun {
        PendingRun {
            session: session.into(),
            words: vec![b"sync:all".to_vec()],
            connection: None,
            command: None,
            superseded: vec![],
            superseded_total: 0,
        }
    }

    #[test]
    fn pending_runs_replace_each_other() {
        let d = tempfile::tempdir().unwrap();
        let dir = StateDir::open(&d.path().join("t")).unwrap();
        assert_eq!(dir.take_pending().unwrap(), None);
        dir.queue(&run("a")).unwrap();
        dir.queue(&run("b")).unwrap();
        dir.queue(&run("c")).unwrap();
        let mut want = run("c");
        want.superseded = vec!["a".into(), "b".into()];
        want.superseded_total = 2;
        assert_eq!(dir.take_pending().unwrap(), Some(want));
        assert_eq!(dir.take_pending().unwrap(), None);
        // The list is bounded; the count is not.
        for i in 0..100 {
            dir.queue(&run(&format!("s{i}"))).unwrap();
        }
        let last = dir.take_pending().unwrap().unwrap();
        assert_eq!(last.session, "s99");
        assert_eq!(last.superseded.len(), MAX_SUPERSEDED);
        assert_eq!(last.superseded.first().map(String::as_str), Some("s0"));
        assert_eq!(last.superseded_total, 99);
    }

    #[test]
    fn a_held_run_lock_queues_and_nothing_is_written_when_the_audit_fails() {
        let d = tempfile::tempdir().unwrap();
        let plan = plan_in(d.path());
        let dir = StateDir::open(&plan.state_dir).unwrap();
        // Someone holds run.lock: a supervisor is running.
        let held = dir.open_run_lock().unwrap();
        assert!(crate::sys::try_lock_exclusive(held.as_fd()).unwrap());
        let spec = SupervisorSpec {
            gate: "/nonexistent".into(),
            args: vec![],
        };
        let fired = fire(&plan, &run("a"), &spec, |f| {
            assert_eq!(f, Fired::Queued);
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(fired, Fired::Queued);
        assert_eq!(dir.take_pending().unwrap(), Some(run("a")));
        // An audit failure writes nothing.
        let e = fire(&plan, &run("b"), &spec, |_| Err("no log"));
        assert!(matches!(e, Err(FireError::Audit("no log"))));
        assert_eq!(dir.take_pending().unwrap(), None);
    }

    /// A supervisor takes over only the run lock of its own trigger, and
    /// takes the pending runs until there are none.
    #[test]
    fn a_supervisor_adopts_only_its_run_lock_and_takes_what_is_pending() {
        use std::os::fd::IntoRawFd;
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("t");
        let dir = StateDir::open(&path).unwrap();
        let lock = dir.open_run_lock().unwrap().into_raw_fd();
        // Another file of the same file system is not the lock.
        std::fs::write(d.path().join("other"), "").unwrap();
        let other = std::fs::File::open(d.path().join("other")).unwrap();
        let e = Supervisor::adopt(&path, other.into_raw_fd()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the descriptor is not this trigger's run lock"
        );
        let mut s = Supervisor::adopt(&path, lock).unwrap();
        dir.queue(&run("a")).unwrap();
        assert_eq!(s.take_next().unwrap(), Some(run("a")));
        assert!(s.run_lock.is_some());
        assert_eq!(s.take_next().unwrap(), None);
        // With nothing pending the lock is given up.
        assert!(s.run_lock.is_none());
    }

    /// A pending run that cannot be read (a directory or a link in its
    /// place) is an error, not "nothing pending".
    #[test]
    fn an_unreadable_pending_run_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let dir = StateDir::open(&d.path().join("t")).unwrap();
        std::fs::create_dir(d.path().join("t/pending")).unwrap();
        assert!(dir.read_pending_bytes().is_err());
        // Nor is a link in its place (never followed).
        std::fs::remove_dir(d.path().join("t/pending")).unwrap();
        std::fs::write(d.path().join("elsewhere"), "{}").unwrap();
        std::os::unix::fs::symlink(d.path().join("elsewhere"), d.path().join("t/pending")).unwrap();
        let e = dir.read_pending_bytes().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
        // Missing: nothing pending.
        std::fs::remove_file(d.path().join("t/pending")).unwrap();
        assert_eq!(dir.read_pending_bytes().unwrap(), None);
    }

    /// A state directory must be the account's own: one of root's (which
    /// the ownership rules trust for the directories above it) is not
    /// the state of an account that is not root.
    #[test]
    fn a_state_directory_of_roots_is_not_an_accounts() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("t");
        std::fs::create_dir(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
        let uid = nix::unistd::geteuid().as_raw();
        assert!(StateDir::open_as(&path, uid).is_ok());
        let e = StateDir::open_as(&path, uid + 4242).err().unwrap();
        assert_eq!(
            e.to_string(),
            format!(
                "{} is not a directory of this account's alone",
                path.display()
            )
        );
    }

    #[test]
    fn a_state_directory_that_is_a_link_is_refused() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(d.path().join("elsewhere"), d.path().join("t")).unwrap();
        assert!(StateDir::open(&d.path().join("t")).is_err());
    }

    #[test]
    fn a_job_past_its_timeout_is_stopped_with_its_group() {
        let d = tempfile::tempdir().unwrap();
        let mut plan = plan_in(d.path());
        plan.program = "/bin/sh".into();
        // A child of the job that ignores nothing: it goes with the group.
        plan.args = vec!["-c".into(), "sleep 30 & sleep 30".into()];
        plan.timeout = Some(Duration::from_millis(300));
        let o = run_job(&plan).unwrap();
        assert!(o.timed_out);
        assert_eq!(o.signal, Some(libc::SIGTERM));
        assert!(o.duration < Duration::from_secs(5), "{o:?}");
        let o = run_job(&plan_in(d.path())).unwrap();
        assert_eq!((o.code, o.timed_out), (Some(0), false));
        // Within its timeout a job runs to its own end.
        plan.args = vec!["-c".into(), "sleep 0.3; exit 3".into()];
        plan.timeout = Some(Duration::from_secs(60));
        let o = run_job(&plan).unwrap();
        assert_eq!((o.code, o.signal, o.timed_out), (Some(3), None, false));
        // Past it, a job that stops on SIGTERM has the grace to do so
        // before SIGKILL.
        plan.args = vec![
            "-c".into(),
            "trap 'sleep 0.3; exit 5' TERM; sleep 30 & wait".into(),
        ];
        plan.timeout = Some(Duration::from_millis(200));
        let o = run_job(&plan).unwrap();
        assert_eq!((o.code, o.signal, o.timed_out), (Some(5), None, true));
    }

    #[test]
    fn a_missing_program_is_an_error_not_a_hang() {
        let d = tempfile::tempdir().unwrap();
        let mut plan = plan_in(d.path());
        plan.program = "/nonexistent/job".into();
        let e = run_job(&plan).unwrap_err();
        assert!(e.contains("cannot run /nonexistent/job"), "{e}");
    }
}
