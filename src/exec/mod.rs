//! Side effects only: carry out an [`ExecPlan`]. First [`prepare`] (write
//! the planned files, create and hold the planned directories, take the
//! connection slot, apply the kernel sandbox), then [`run`] (spawn with a
//! clean environment and only the planned descriptors, forward signals,
//! wait). Nothing here decides anything: it sees the plan, never the policy
//! or the request.

pub mod files;
pub mod priority;
pub mod sandbox;
pub mod slots;
pub mod trigger;

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode as FileMode;

use crate::plan::{ExecPlan, MakeDir, SandboxChoice};

/// Why a plan could not be prepared. Nothing ran; the caller refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrepareError {
    /// Every connection slot of the module stayed taken.
    Busy(String),
    /// A planned directory was swapped or is not where the plan said (the
    /// path as the client spelled it).
    Race(String),
    /// The sandbox the plan relies on could not be applied.
    Sandbox(String),
    /// Anything else (with the server-side detail).
    Io(String),
}

/// What the kernel sandbox does around the child, once prepared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confinement {
    Applied(sandbox::Status),
    Off,
    Unavailable,
}

/// A plan whose preparations are done: only the spawn is left.
#[derive(Debug)]
pub struct Ready {
    plan: ExecPlan,
    _slot: Option<slots::Slot>,
    /// Where the child's log comes from, when the plan has one.
    log: Option<LogChannel>,
    pub confinement: Confinement,
    /// The lower priority applied (None: the client asked for none).
    pub priority: Option<String>,
}

impl Ready {
    pub fn plan(&self) -> &ExecPlan {
        &self.plan
    }
}

/// Do everything the plan needs before the child starts. The order
/// matters: files and directories first (the sandbox would forbid them),
/// then the slot, then the lower priority the client asked for (the gate
/// only waits from then on), then the log channel (a transfer log's file
/// is made under lock_dir) and its tokens, then the sandbox, last because
/// it restricts the gate itself.
pub fn prepare(mut plan: ExecPlan) -> Result<Ready, PrepareError> {
    for f in &plan.files {
        files::write(f).map_err(|e| PrepareError::Io(format!("{}: {e}", f.path.display())))?;
    }
    for m in std::mem::take(&mut plan.mkdirs) {
        let held = make_dir(m)?;
        plan.keep_fds.push(held);
    }
    let slot = match &plan.slot {
        None => None,
        Some(s) => match slots::acquire(&s.lock, s.max, s.wait) {
            Ok(slot) => Some(slot),
            Err(slots::SlotError::Busy) => return Err(PrepareError::Busy(s.module.clone())),
            Err(slots::SlotError::Io(e)) => {
                return Err(PrepareError::Io(format!("connection slots: {e}")));
            }
        },
    };
    let priority = priority::apply(&plan.priority).map_err(PrepareError::Io)?;
    // The log channel, and the transfer log's secret tokens: a session that
    // cannot have them does not start. (Before the sandbox: the file is
    // made under lock_dir.)
    let file = plan.file_log.as_ref().and_then(|f| f.file.clone());
    let log = match (plan.log_fd, file) {
        (target, Some(path)) => Some(LogChannel::File(LogFile::make(&path, target.is_some())?)),
        (Some(_), None) => {
            let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
                .map_err(|e| PrepareError::Io(format!("cannot make the log pipe: {e}")))?;
            Some(LogChannel::Pipe { read, write })
        }
        (None, None) => None,
    };
    if plan.file_log.is_some() {
        let tokens = crate::plan::filelog::Tokens {
            start: random_token()?,
            end: random_token()?,
        };
        plan.seal_file_log(tokens);
    }
    let confinement = match &plan.sandbox {
        SandboxChoice::Apply(sb) => {
            Confinement::Applied(sandbox::apply(sb).map_err(PrepareError::Sandbox)?)
        }
        SandboxChoice::Off => Confinement::Off,
        SandboxChoice::Unavailable => Confinement::Unavailable,
    };
    Ok(Ready {
        plan,
        _slot: slot,
        log,
        confinement,
        priority,
    })
}

/// Where the child's log arrives.
#[derive(Debug)]
enum LogChannel {
    /// A pipe whose write end the child gets as the plan's `log_fd`.
    Pipe { read: OwnedFd, write: OwnedFd },
    /// A file the gate reads as it grows; the child opens it by name, or
    /// gets it opened to append as the plan's `log_fd` (daemon mode).
    File(LogFile),
}

/// A session's log file (`lock_dir/filelog/SESSION.log`): made afresh
/// (never an existing name, never through a link) in a directory of the
/// account's alone, and read by the gate as rsync appends to it. What has
/// been read is handed back to the file system as the session goes (a
/// hole punched), so a long session does not fill `lock_dir`. Removed when
/// dropped, if the sandbox lets the gate; otherwise by a later session,
/// once its session has ended.
#[derive(Debug)]
struct LogFile {
    fd: OwnedFd,
    /// The child's descriptor for it, opened to append (when the child
    /// gets one: daemon mode).
    child: Option<OwnedFd>,
    name: LogName,
}

impl LogFile {
    fn make(path: &std::path::Path, for_child: bool) -> Result<LogFile, PrepareError> {
        let fail = |e: String| PrepareError::Io(format!("cannot start the transfer log: {e}"));
        let dir = path.parent().unwrap_or(std::path::Path::new("/"));
        let us = nix::unistd::geteuid();
        crate::trust::ensure_private_dir(dir, us.as_raw(), 0o700).map_err(fail)?;
        sweep_logs(dir);
        let create = || {
            nix::fcntl::open(
                path,
                OFlag::O_RDWR
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                FileMode::from_bits_truncate(0o600),
            )
        };
        // The name holds this process's id: whatever is there already was
        // left by an earlier process of the same id, and goes.
        let fd = match create() {
            Err(nix::errno::Errno::EEXIST) => {
                let _ = std::fs::remove_file(path);
                create()
            }
            other => other,
        }
        .map_err(|e| fail(format!("{}: {e}", path.display())))?;
        let name = LogName(path.to_path_buf());
        let md =
            nix::sys::stat::fstat(&fd).map_err(|e| fail(format!("{}: {e}", path.display())))?;
        let kind = nix::sys::stat::SFlag::from_bits_truncate(md.st_mode);
        if !kind.contains(nix::sys::stat::SFlag::S_IFREG) || md.st_uid != us.as_raw() {
            return Err(fail(format!("{}: not a file of ours", path.display())));
        }
        // The same file (not the name again), with an offset of its own.
        let child = for_child
            .then(|| {
                nix::fcntl::open(
                    format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd)).as_str(),
                    OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CLOEXEC,
                    FileMode::empty(),
                )
            })
            .transpose()
            .map_err(|e| fail(format!("{}: {e}", path.display())))?;
        Ok(LogFile { fd, child, name })
    }
}

/// Remove the log files of sessions that have ended (`NAME-PID.log`, or
/// the named pipes of earlier versions, `NAME-PID.fifo`, whose process is
/// gone): a sandboxed session cannot remove its own.
fn sweep_logs(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| {
                n.strip_suffix(crate::plan::filelog::LOG_SUFFIX)
                    .or_else(|| n.strip_suffix(".fifo"))
            })
            .and_then(|n| n.rsplit('-').next())
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let gone = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
            == Err(nix::errno::Errno::ESRCH);
        if gone && e.file_type().is_ok_and(|t| !t.is_dir()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// 128 random bits as 32 hex digits (a transfer log token).
fn random_token() -> Result<String, PrepareError> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| {
            PrepareError::Io(format!("cannot start the transfer log: /dev/urandom: {e}"))
        })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Takes what the child writes to its log, as it arrives, in the thread
/// that reads it (so it must never block for long: a child logging to a
/// pipe waits while the pipe is full).
pub trait LogSink: Send {
    fn take(&mut self, bytes: &[u8]);
    /// The pipe closed, or the child ended and its log file was read to
    /// the end: everything has arrived.
    fn closed(&mut self);
}

/// Create the planned directories one component at a time below the held
/// parent, never following a link, and move the result onto the slot the
/// argv names. Returns the slot, now holding the new directory. A directory
/// someone else made there in the meantime (not root's, not ours) is a
/// race: its owner could put links in it while rsync works there.
fn make_dir(m: MakeDir) -> Result<OwnedFd, PrepareError> {
    let race = || PrepareError::Race(m.spelled.clone());
    let us = nix::unistd::geteuid().as_raw();
    let mut fd = m.parent;
    for n in &m.names {
        let name = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(n);
        match nix::sys::stat::mkdirat(&fd, name, FileMode::from_bits_truncate(m.mode)) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => {
                return Err(PrepareError::Io(format!(
                    "cannot create {}: {e}",
                    m.expect.display()
                )));
            }
        }
        fd = nix::fcntl::openat(
            &fd,
            name,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            FileMode::empty(),
        )
        .map_err(|_| race())?;
        let owner = nix::sys::stat::fstat(&fd).map_err(|_| race())?.st_uid;
        if owner != 0 && owner != us {
            return Err(race());
        }
    }
    let real = std::fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&fd)
    ))
    .map_err(|_| race())?;
    if real != m.expect {
        return Err(race());
    }
    let mut slot = m.slot;
    // dup2 clears close-on-exec on the slot: rsync inherits it.
    nix::unistd::dup2(&fd, &mut slot).map_err(|e| PrepareError::Io(format!("dup2: {e}")))?;
    Ok(slot)
}

/// How the child ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub duration: Duration,
    /// The child's process id.
    pub pid: u32,
    /// What the child wrote to the plan's log pipe (at most [`LOG_LIMIT`]
    /// bytes; empty without one).
    pub log: Vec<u8>,
}

/// How much of the log pipe is kept (the rest is read and dropped).
pub const LOG_LIMIT: usize = 64 * 1024;

/// After the child has ended, how long the log pipe may take to close (a
/// descendant of the child may still hold it).
const LOG_GRACE: Duration = Duration::from_secs(1);

impl Outcome {
    /// The gate's own exit status: the child's, or 128 + signal.
    pub fn exit_code(&self) -> u8 {
        match (self.code, self.signal) {
            (Some(c), _) => u8::try_from(c).unwrap_or(1),
            (None, Some(s)) => u8::try_from(128 + s).unwrap_or(255),
            _ => 1,
        }
    }
}

/// Build the command without running it.
pub fn command(plan: &ExecPlan) -> Command {
    let mut cmd = Command::new(&plan.program);
    cmd.arg0(&plan.arg0)
        .args(&plan.args)
        .env_clear()
        .envs(plan.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&plan.cwd)
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    cmd
}

/// Spawn the prepared plan and wait for it. The slot is held until the
/// child has ended. What the child writes to the log pipe is kept (see
/// [`Outcome::log`]) and, as it arrives, handed to `sink`.
pub fn run(ready: Ready, sink: Option<Box<dyn LogSink>>) -> io::Result<Outcome> {
    let Ready {
        plan,
        _slot: slot,
        log,
        confinement: _,
        priority: _,
    } = ready;
    let mut cmd = command(&plan);
    // Signals to forward wait until forwarding is in place (the log
    // reader's thread, started meanwhile, never takes them).
    let held = crate::sys::hold_forwarded_signals()?;
    // The reader; the write end to close once the child has started (a
    // pipe it inherited); a log file's name, removed at the end.
    let planned_twice = |target: i32| {
        plan.keep_fds
            .iter()
            .any(|fd| std::os::fd::AsRawFd::as_raw_fd(fd) == target)
    };
    let (reader, inherited, log_name) = match (plan.log_fd, log) {
        (Some(target), _) if planned_twice(target) => {
            return Err(io::Error::other(format!(
                "descriptor {target} is planned twice"
            )));
        }
        (Some(target), Some(LogChannel::Pipe { read, write })) => {
            crate::sys::inherit_as(&mut cmd, std::os::fd::AsFd::as_fd(&write), target);
            (Some(LogReader::start(read, sink)?), Some(write), None)
        }
        (target, Some(LogChannel::File(file))) => {
            let LogFile { fd, child, name } = file;
            if let (Some(target), Some(child)) = (target, &child) {
                crate::sys::inherit_as(&mut cmd, std::os::fd::AsFd::as_fd(child), target);
            }
            (Some(LogReader::follow(fd, sink)?), child, Some(name))
        }
        _ => (None, None, None),
    };
    let start = Instant::now();
    let mut child = cmd.spawn()?;
    // The child has its own copies of the pinned descriptors (and of its
    // log's write end) now.
    drop(plan.keep_fds);
    drop(inherited);
    if let Err(e) = crate::sys::forward_signals_to(child.id()) {
        tracing::warn!("cannot forward signals to rsync: {e}");
    }
    drop(held);
    let status = child.wait()?;
    let duration = start.elapsed();
    drop(slot);
    let log = reader.map(|r| r.finish(LOG_GRACE)).unwrap_or_default();
    drop(log_name);
    Ok(Outcome {
        code: status.code(),
        signal: status.signal(),
        duration,
        pid: child.id(),
        log,
    })
}

/// Hand the part of a log file read so far (whole pages, once there is
/// [`FREE_STEP`] of it) back to the file system: the file keeps its size,
/// rsync keeps appending at its end. Returns how far the file is freed. A
/// file system that cannot punch holes keeps the file whole until the
/// session ends.
fn free_read_part(file: &std::fs::File, freed: u64, read_to: u64) -> u64 {
    use nix::fcntl::FallocateFlags as F;
    let upto = read_to & !4095;
    if upto < freed.saturating_add(FREE_STEP) {
        return freed;
    }
    let Ok(len) = i64::try_from(upto) else {
        return freed;
    };
    match nix::fcntl::fallocate(
        file,
        F::FALLOC_FL_PUNCH_HOLE | F::FALLOC_FL_KEEP_SIZE,
        0,
        len,
    ) {
        Ok(()) => upto,
        // Not supported here: no point in asking again.
        Err(_) => u64::MAX,
    }
}

/// A log file's name, removed when dropped (if the sandbox allows).
#[derive(Debug)]
struct LogName(std::path::PathBuf);

impl Drop for LogName {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Reads the child's log in a thread of its own, keeping the first
/// [`LOG_LIMIT`] bytes: a pipe (so a child that logs more than a pipe holds
/// never blocks) until it closes, or a file as it grows.
enum LogReader {
    Pipe {
        kept: Arc<Mutex<Vec<u8>>>,
        done: mpsc::Receiver<()>,
    },
    /// The follower thread reads the file while the child runs; the thread
    /// that waited for the child reads what is left (see [`Follower`]).
    File {
        state: Arc<Mutex<Follower>>,
        /// Dropped when the child has ended: the follower stops.
        ended: mpsc::Sender<()>,
    },
}

/// How often the follower of a log file looks for more once it has read
/// what there is (rsync is not kept waiting meanwhile: it appends to a
/// file).
const FOLLOW_POLL: Duration = Duration::from_millis(20);

/// How much read text a log file gathers before it is handed back.
const FREE_STEP: u64 = 256 * 1024;

/// A log file being read: by a thread of the lowest priority while the
/// child runs (the records cost rsync no CPU time it could use: on two
/// CPUs, a pull of 10,000 small files took 6% longer with the follower at
/// the gate's priority, 3% with it at the lowest), then by the thread
/// that waited for the child, at the gate's priority, to its end. Each
/// chunk is read and handed on under the lock, so the two never reorder
/// the text; the waiting thread waits for at most the follower's current
/// chunk.
struct Follower {
    file: std::fs::File,
    sink: Option<Box<dyn LogSink>>,
    kept: Vec<u8>,
    /// How far the file was read, and how far handed back.
    read_to: u64,
    freed: u64,
    buf: Vec<u8>,
}

impl Follower {
    /// Read a chunk and hand it on. False at the end of the file (for now)
    /// or when it cannot be read.
    fn step(&mut self) -> bool {
        use std::io::Read;
        loop {
            match self.file.read(&mut self.buf) {
                Ok(0) => return false,
                Ok(n) => {
                    let got = self.buf.get(..n).unwrap_or_default();
                    keep(&mut self.kept, got);
                    if let Some(s) = self.sink.as_mut() {
                        s.take(got);
                    }
                    self.read_to = self.read_to.saturating_add(n as u64);
                    self.freed = free_read_part(&self.file, self.freed, self.read_to);
                    return true;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }
}

/// Keep what fits of `got` under [`LOG_LIMIT`].
fn keep(kept: &mut Vec<u8>, got: &[u8]) {
    let room = LOG_LIMIT.saturating_sub(kept.len());
    kept.extend_from_slice(got.get(..got.len().min(room)).unwrap_or_default());
}

impl LogReader {
    /// Read a pipe until it closes.
    fn start(read: OwnedFd, mut sink: Option<Box<dyn LogSink>>) -> io::Result<LogReader> {
        use std::io::Read;
        let kept = Arc::new(Mutex::new(Vec::new()));
        let (tx, done) = mpsc::channel();
        let kept_by_thread = Arc::clone(&kept);
        std::thread::Builder::new()
            .name("rsync-log".into())
            .spawn(move || {
                let mut pipe = std::fs::File::from(read);
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match pipe.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            let got = buf.get(..n).unwrap_or_default();
                            if let Ok(mut k) = kept_by_thread.lock() {
                                keep(&mut k, got);
                            }
                            if let Some(s) = sink.as_mut() {
                                s.take(got);
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
                if let Some(s) = sink.as_mut() {
                    s.closed();
                }
                let _ = tx.send(());
            })?;
        Ok(LogReader::Pipe { kept, done })
    }

    /// Follow a file as it grows, until [`LogReader::finish`].
    fn follow(file: OwnedFd, sink: Option<Box<dyn LogSink>>) -> io::Result<LogReader> {
        let state = Arc::new(Mutex::new(Follower {
            file: std::fs::File::from(file),
            sink,
            kept: Vec::new(),
            read_to: 0,
            freed: 0,
            buf: vec![0u8; 64 * 1024],
        }));
        let (ended, ended_rx) = mpsc::channel::<()>();
        let follower = Arc::clone(&state);
        std::thread::Builder::new()
            .name("rsync-log".into())
            .spawn(move || {
                // Only this thread: the lowest priority there is without
                // privileges (it cannot be raised again without them).
                let _ = crate::sys::set_nice_value(19);
                loop {
                    let more = match follower.lock() {
                        Ok(mut f) => f.step(),
                        Err(_) => return,
                    };
                    if more {
                        continue;
                    }
                    // All read for now: look again after a while, unless
                    // the child has ended meanwhile.
                    match ended_rx.recv_timeout(FOLLOW_POLL) {
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                }
            })?;
        Ok(LogReader::File { state, ended })
    }

    /// What was read: once a pipe closed (or after `grace` in any case),
    /// or once the file was read to its end here.
    fn finish(self, grace: Duration) -> Vec<u8> {
        match self {
            LogReader::Pipe { kept, done } => {
                let _ = done.recv_timeout(grace);
                kept.lock()
                    .map(|mut k| std::mem::take(&mut *k))
                    .unwrap_or_default()
            }
            LogReader::File { state, ended } => {
                drop(ended);
                let Ok(mut f) = state.lock() else {
                    return Vec::new();
                };
                while f.step() {}
                if let Some(s) = f.sink.as_mut() {
                    s.closed();
                }
                std::mem::take(&mut f.kept)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::path::{Path, PathBuf};

    fn plan_with(mkdirs: Vec<MakeDir>) -> ExecPlan {
        ExecPlan {
            program: PathBuf::from("/bin/true"),
            arg0: "true".into(),
            args: vec![],
            env: vec![],
            cwd: PathBuf::from("/"),
            keep_fds: vec![],
            mkdirs,
            files: vec![],
            slot: None,
            sandbox: SandboxChoice::Off,
            log_fd: None,
            file_log: None,
            priority: Default::default(),
            notes: vec![],
        }
    }

    fn make_dir(parent: &Path, names: &[&str]) -> MakeDir {
        MakeDir {
            parent: nix::fcntl::open(
                parent,
                OFlag::O_PATH | OFlag::O_DIRECTORY,
                FileMode::empty(),
            )
            .unwrap(),
            names: names.iter().map(|n| n.as_bytes().to_vec()).collect(),
            mode: 0o700,
            expect: names.iter().fold(parent.to_path_buf(), |p, n| p.join(n)),
            slot: nix::fcntl::open("/dev/null", OFlag::O_PATH, FileMode::empty()).unwrap(),
            spelled: "x".into(),
        }
    }

    #[test]
    fn planned_directories_are_created_and_held_on_their_slot() {
        let d = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(d.path()).unwrap();
        let m = make_dir(&base, &["bk", "today"]);
        let slot = m.slot.as_raw_fd();
        let ready = prepare(plan_with(vec![m])).unwrap();
        let made = base.join("bk/today");
        assert!(made.is_dir());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&made).unwrap().permissions().mode() & 0o777,
            0o700 & !current_umask()
        );
        // The argv's descriptor number now holds the new directory, and
        // rsync inherits it.
        assert_eq!(
            std::fs::read_link(format!("/proc/self/fd/{slot}")).unwrap(),
            made
        );
        let flags =
            nix::fcntl::fcntl(&ready.plan().keep_fds[0], nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_eq!(flags & libc::FD_CLOEXEC, 0);
        // A path-only handle of a directory: nothing is read through it.
        let fl = OFlag::from_bits_truncate(
            nix::fcntl::fcntl(&ready.plan().keep_fds[0], nix::fcntl::FcntlArg::F_GETFL).unwrap(),
        );
        assert!(
            fl.contains(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW),
            "{fl:?}"
        );
        assert_eq!(ready.plan().keep_fds[0].as_raw_fd(), slot);
        assert!(ready.plan().mkdirs.is_empty());
    }

    #[test]
    fn a_link_planted_where_a_directory_is_planned_is_a_race() {
        let d = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(d.path()).unwrap();
        let outside = base.join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::create_dir(base.join("m")).unwrap();
        let m = make_dir(&base.join("m"), &["bk", "today"]);
        // After the plan, before exec: bk becomes a link leading out.
        std::os::unix::fs::symlink(&outside, base.join("m/bk")).unwrap();
        let e = prepare(plan_with(vec![m])).unwrap_err();
        assert_eq!(e, PrepareError::Race("x".into()));
        assert!(!outside.join("today").exists());
    }

    /// The log pipe: what the child writes to its descriptor is kept (the
    /// first LOG_LIMIT bytes), a child that writes more than a pipe holds
    /// does not block, and plans without one get nothing.
    /// A sink that keeps what it is given, and whether it was closed.
    #[derive(Clone, Default)]
    struct Kept(Arc<Mutex<(Vec<u8>, bool)>>);

    impl LogSink for Kept {
        fn take(&mut self, bytes: &[u8]) {
            self.0.lock().unwrap().0.extend_from_slice(bytes);
        }
        fn closed(&mut self) {
            self.0.lock().unwrap().1 = true;
        }
    }

    /// A log file in `dir` to write to, followed into a [`Kept`].
    fn followed(dir: &Path) -> (std::fs::File, Kept, LogReader) {
        let path = dir.join("log");
        let w = std::fs::File::create(&path).unwrap();
        let sink = Kept::default();
        let r = std::fs::File::open(&path).unwrap();
        let reader = LogReader::follow(r.into(), Some(Box::new(sink.clone()))).unwrap();
        (w, sink, reader)
    }

    /// A followed file is read as it grows, not only at the end.
    #[test]
    fn followed_logs_are_read_as_they_grow() {
        use std::io::Write;
        let d = tempfile::tempdir().unwrap();
        let (mut w, sink, reader) = followed(d.path());
        let arrived = |want: &[u8]| {
            for _ in 0..500 {
                if sink.0.lock().unwrap().0 == want {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            false
        };
        // Nothing for a while (the follower has found the end more than
        // once), then more, twice.
        std::thread::sleep(FOLLOW_POLL * 3);
        w.write_all(b"one\n").unwrap();
        assert!(arrived(b"one\n"));
        std::thread::sleep(FOLLOW_POLL * 3);
        w.write_all(b"two\n").unwrap();
        assert!(arrived(b"one\ntwo\n"));
        assert!(!sink.0.lock().unwrap().1, "closed before the end");
        reader.finish(LOG_GRACE);
        assert!(sink.0.lock().unwrap().1);
    }

    /// A followed file is read to its end once the child has ended, and
    /// the sink hears of the end; one that cannot be read (a directory)
    /// ends the reading at once, in both kinds of reader.
    #[test]
    fn followed_logs_are_read_to_the_end_and_closed() {
        use std::io::Write;
        let d = tempfile::tempdir().unwrap();
        let (mut w, sink, reader) = followed(d.path());
        let text: Vec<u8> = (0..20_000)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        w.write_all(&text).unwrap();
        let kept = reader.finish(LOG_GRACE);
        let (got, closed) = sink.0.lock().unwrap().clone();
        assert_eq!(got, text);
        assert!(closed);
        assert_eq!(kept, text[..LOG_LIMIT]);
        for pipe in [false, true] {
            let sink = Kept::default();
            let dir: OwnedFd = std::fs::File::open(d.path()).unwrap().into();
            let reader = if pipe {
                LogReader::start(dir, Some(Box::new(sink.clone()))).unwrap()
            } else {
                LogReader::follow(dir, Some(Box::new(sink.clone()))).unwrap()
            };
            // The grace is long: a reader that kept trying would miss it.
            let kept = reader.finish(Duration::from_secs(30));
            assert!(kept.is_empty());
            assert!(sink.0.lock().unwrap().1, "pipe {pipe}");
        }
    }

    /// The log files of ended sessions go; a live session's, anything
    /// that is not such a file, and directories stay.
    #[test]
    fn only_ended_sessions_logs_are_swept() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        let mut child = std::process::Command::new("/bin/true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        let live = std::process::id();
        let names = [
            format!("s1-{gone}.log"),
            format!("s2-{gone}.fifo"),
            format!("s3-{live}.log"),
            format!("s4-{gone}.txt"),
            "s5-x.log".to_string(),
        ];
        for n in &names {
            std::fs::write(dir.join(n), "").unwrap();
        }
        std::fs::create_dir(dir.join(format!("s6-{gone}.log"))).unwrap();
        sweep_logs(dir);
        let mut left: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                format!("s3-{live}.log"),
                format!("s4-{gone}.txt"),
                "s5-x.log".to_string(),
                format!("s6-{gone}.log"),
            ]
        );
    }

    #[test]
    fn tokens_are_128_random_bits_in_hex() {
        let a = random_token().unwrap();
        let b = random_token().unwrap();
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
    }

    #[test]
    fn the_gates_exit_status_is_rsyncs_or_128_and_the_signal() {
        let o = |code: Option<i32>, signal: Option<i32>| Outcome {
            code,
            signal,
            duration: Duration::ZERO,
            pid: 1,
            log: Vec::new(),
        };
        for (code, signal, want) in [
            (Some(0), None, 0),
            (Some(23), None, 23),
            (Some(255), None, 255),
            (Some(-1), None, 1),
            (None, Some(9), 137),
            (None, Some(15), 143),
            (None, Some(200), 255),
            (None, None, 1),
        ] {
            assert_eq!(o(code, signal).exit_code(), want, "{code:?} {signal:?}");
        }
    }

    #[test]
    fn a_descriptor_planned_twice_is_refused() {
        let mut plan = plan_with(vec![]);
        let held = nix::fcntl::open("/dev/null", OFlag::O_RDONLY, FileMode::empty()).unwrap();
        let n = held.as_raw_fd();
        plan.keep_fds.push(held);
        plan.log_fd = Some(n);
        let e = run(prepare(plan).unwrap(), None).unwrap_err();
        assert_eq!(e.to_string(), format!("descriptor {n} is planned twice"));
        // Another number is fine.
        let mut plan = plan_with(vec![]);
        let held = nix::fcntl::open("/dev/null", OFlag::O_RDONLY, FileMode::empty()).unwrap();
        plan.log_fd = Some(held.as_raw_fd() + 100);
        plan.keep_fds.push(held);
        assert_eq!(run(prepare(plan).unwrap(), None).unwrap().code, Some(0));
    }

    /// What has been read of a log file goes back to the file system in
    /// whole pages, once there is FREE_STEP of it; the size stays.
    #[test]
    fn the_read_part_of_a_log_is_freed_in_steps() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap());
        let path = d.path().join("log");
        std::fs::write(&path, vec![b'x'; 1 << 20]).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let blocks = |f: &std::fs::File| f.metadata().unwrap().blocks() * 512;
        let all = blocks(&file);
        assert!(all >= 1 << 20);
        // Less than a step read: nothing freed.
        assert_eq!(free_read_part(&file, 0, FREE_STEP - 1), 0);
        assert_eq!(blocks(&file), all);
        // A step and a bit: freed to the last whole page read.
        let read = FREE_STEP + 5000;
        assert_eq!(free_read_part(&file, 0, read), read & !4095);
        assert_eq!(blocks(&file), all - (read & !4095));
        assert_eq!(file.metadata().unwrap().len(), 1 << 20);
        // The next step counts from there; exactly a step more is freed.
        let freed = read & !4095;
        assert_eq!(free_read_part(&file, freed, freed + FREE_STEP - 1), freed);
        assert_eq!(
            free_read_part(&file, freed, freed + FREE_STEP),
            freed + FREE_STEP
        );
        assert_eq!(blocks(&file), all - freed - FREE_STEP);
        assert_eq!(FREE_STEP, 262_144);
    }

    /// A session's log file: made afresh (whatever was left at its name),
    /// 0600 and the account's, read and written by the gate, appended to
    /// through the child's own descriptor, gone with its name.
    #[test]
    fn a_log_file_is_made_fresh_and_private() {
        use std::io::{Read, Seek, Write};
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let dir = std::fs::canonicalize(d.path()).unwrap().join("filelog");
        let path = dir.join(format!("s1-{}.log", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        std::fs::write(&path, "left by an earlier process\n").unwrap();
        let LogFile { fd, child, name } = LogFile::make(&path, true).unwrap();
        let md = std::fs::symlink_metadata(&path).unwrap();
        assert!(md.file_type().is_file());
        assert_eq!((md.mode() & 0o777, md.len()), (0o600, 0));
        assert_eq!(md.uid(), nix::unistd::geteuid().as_raw());
        let flags = |fd: &OwnedFd| {
            let fl = OFlag::from_bits_truncate(
                nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL).unwrap(),
            );
            let cloexec = nix::fcntl::FdFlag::from_bits_truncate(
                nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).unwrap(),
            )
            .contains(nix::fcntl::FdFlag::FD_CLOEXEC);
            (fl & OFlag::O_ACCMODE, fl.contains(OFlag::O_APPEND), cloexec)
        };
        assert_eq!(flags(&fd), (OFlag::O_RDWR, false, true));
        let child = child.expect("the child's descriptor");
        assert_eq!(flags(&child), (OFlag::O_WRONLY, true, true));
        let mut reader = std::fs::File::from(fd);
        let mut writer = std::fs::File::from(child);
        writer.write_all(b"one\n").unwrap();
        // The gate's offset is its own; the child appends whatever it is.
        reader.seek(std::io::SeekFrom::Start(2)).unwrap();
        writer.write_all(b"two\n").unwrap();
        let mut text = String::new();
        reader.rewind().unwrap();
        reader.read_to_string(&mut text).unwrap();
        assert_eq!(text, "one\ntwo\n");
        drop(name);
        assert!(!path.exists());
        // Without a child's descriptor (checked mode: rsync opens it by name).
        let LogFile { child, .. } = LogFile::make(&path, false).unwrap();
        assert!(child.is_none());
    }

    #[test]
    fn the_log_pipe_keeps_what_the_child_writes() {
        let run_sh = |script: &str, log_fd: Option<i32>| {
            let mut plan = plan_with(vec![]);
            plan.program = PathBuf::from("/bin/sh");
            plan.arg0 = "sh".into();
            plan.args = vec!["-c".into(), script.into()];
            plan.log_fd = log_fd;
            run(prepare(plan).unwrap(), None).unwrap()
        };
        let o = run_sh("echo one >&3; echo two >&3; exit 7", Some(3));
        assert_eq!((o.code, o.log.as_slice()), (Some(7), &b"one\ntwo\n"[..]));
        let o = run_sh("head -c 300000 /dev/zero >&3", Some(3));
        assert_eq!((o.code, o.log.len()), (Some(0), 65_536));
        // Another number, and the pipe is the only thing open there.
        let o = run_sh("readlink /proc/self/fd/9 >&9", Some(9));
        assert!(o.log.starts_with(b"pipe:["), "{:?}", o.log);
        let o = run_sh("echo x >&3 2>/dev/null; exit 0", None);
        assert!(o.log.is_empty());
    }

    #[test]
    fn a_directory_someone_else_made_where_one_is_planned_is_a_race() {
        let d = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(d.path()).unwrap();
        std::fs::create_dir(base.join("m")).unwrap();
        let m = make_dir(&base.join("m"), &["bk", "today"]);
        // After the plan, before exec: another user makes bk.
        std::fs::create_dir(base.join("m/bk")).unwrap();
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(base.join("m/bk"), Some(65534), Some(65534)).unwrap();
            let e = prepare(plan_with(vec![m])).unwrap_err();
            assert_eq!(e, PrepareError::Race("x".into()));
            assert!(!base.join("m/bk/today").exists());
        } else {
            // Our own directory is taken as it is.
            prepare(plan_with(vec![m])).unwrap();
            assert!(base.join("m/bk/today").is_dir());
        }
    }

    fn current_umask() -> u32 {
        let old = nix::sys::stat::umask(FileMode::from_bits_truncate(0o022));
        nix::sys::stat::umask(old);
        old.bits()
    }
}
