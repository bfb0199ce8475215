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
/// only waits from then on), then the sandbox, last because it restricts
/// the gate itself.
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
        confinement,
        priority,
    })
}

/// Create the planned directories one component at a time below the held
/// parent, never following a link, and move the result onto the slot the
/// argv names. Returns the slot, now holding the new directory.
fn make_dir(m: MakeDir) -> Result<OwnedFd, PrepareError> {
    let race = || PrepareError::Race(m.spelled.clone());
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub duration: Duration,
}

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
/// child has ended.
pub fn run(ready: Ready) -> io::Result<Outcome> {
    let Ready {
        plan,
        _slot: slot,
        confinement: _,
        priority: _,
    } = ready;
    let mut cmd = command(&plan);
    let start = Instant::now();
    let mut child = cmd.spawn()?;
    // The child has its own copies of the pinned descriptors now.
    drop(plan.keep_fds);
    if let Err(e) = crate::sys::forward_signals_to(child.id()) {
        tracing::warn!("cannot forward signals to rsync: {e}");
    }
    let status = child.wait()?;
    drop(slot);
    Ok(Outcome {
        code: status.code(),
        signal: status.signal(),
        duration: start.elapsed(),
    })
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

    fn current_umask() -> u32 {
        let old = nix::sys::stat::umask(FileMode::from_bits_truncate(0o022));
        nix::sys::stat::umask(old);
        old.bits()
    }
}
