//! The only module allowed `unsafe`: raw descriptor flag changes the safe
//! wrappers cannot express for descriptors we do not own.
#![allow(unsafe_code)]

use std::io;

/// Mark every inherited descriptor above stderr close-on-exec, so nothing
/// the gate was started with leaks into rsync. Descriptors the gate itself
/// opens later are close-on-exec by default; the pins it hands to rsync are
/// opened without the flag on purpose.
pub fn cloexec_inherited() -> io::Result<()> {
    // SAFETY: close_range(2) with CLOSE_RANGE_CLOEXEC only changes
    // descriptor flags in this process; it takes no pointers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r == 0 {
        return Ok(());
    }
    // Older kernels: walk /proc/self/fd.
    let mut fds = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let entry = entry?;
        if let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<libc::c_int>().ok())
            && fd > 2
        {
            fds.push(fd);
        }
    }
    for fd in fds {
        // SAFETY: fcntl(2) F_GETFD/F_SETFD on an integer descriptor takes
        // no pointers; a descriptor that closed meanwhile returns EBADF.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
    Ok(())
}

/// The child signals are forwarded to (0: none).
static FORWARD_TO: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Signals forwarded to rsync while the gate waits for it.
const FORWARDED: [libc::c_int; 5] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

extern "C" fn forward(sig: libc::c_int) {
    let pid = FORWARD_TO.load(std::sync::atomic::Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe and takes no pointers.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// While the gate waits for rsync, pass HUP, INT, TERM, USR1 and USR2 on to
/// it instead of dying: rsync ends as it would have, and the gate still
/// records how the session ended. A caught signal reverts to its default
/// action in anything the gate executes later.
pub fn forward_signals_to(pid: u32) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?;
    FORWARD_TO.store(pid, std::sync::atomic::Ordering::SeqCst);
    for sig in FORWARDED {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask"
        // value; we set a handler that only calls kill(2) (async-signal-
        // safe) and pass valid pointers to sigaction(2).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = forward as extern "C" fn(libc::c_int) as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// `landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)`:
/// the kernel's Landlock ABI version, or None when the kernel has no
/// Landlock (ENOSYS) or it is disabled (EOPNOTSUPP).
pub fn landlock_abi() -> Option<u32> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a null attribute pointer and size 0 and only the VERSION
    // flag, the kernel reads no memory; the call has no side effects.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0 as libc::size_t,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    u32::try_from(v).ok().filter(|&v| v > 0)
}

/// `flock(fd, LOCK_EX | LOCK_NB)`: Ok(true) when this open file now holds
/// the lock, Ok(false) when another holds it. The lock belongs to the open
/// file (so to every process that inherited the descriptor) and goes when
/// the last descriptor on it is closed.
pub fn try_lock_exclusive(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock(2) on a descriptor we borrow (so it is open) takes no
    // pointers and changes only the lock state.
    let r = unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Spawn `cmd` as the leader of a new session (and process group), so it
/// belongs to no SSH session and no terminal, and outlives its parent.
pub fn spawn_detached(cmd: &mut std::process::Command) -> io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec; it only
    // calls setsid(2), which is async-signal-safe, allocates nothing and
    // touches no lock.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Have the child `cmd` starts get SIGTERM when this process dies (so a
/// trigger's job does not run on unsupervised, next to the one a new
/// supervisor starts, when its supervisor is killed).
pub fn terminate_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    // SAFETY: the closure runs in the child between fork and exec; it only
    // calls prctl(2) and getppid(2), which are async-signal-safe, take no
    // pointers, allocate nothing and touch no lock.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) < 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before the request took effect.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                return Err(io::Error::other("the supervisor is gone"));
            }
            Ok(())
        });
    }
}

/// Take ownership of descriptor `n`, inherited from the parent process
/// (which named it on the command line), after checking it is open; it is
/// marked close-on-exec so nothing this process starts inherits it.
pub fn adopt_inherited_fd(n: libc::c_int) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    if n <= 2 {
        return Err(io::Error::other("not an inherited descriptor"));
    }
    // SAFETY: fcntl(2) F_GETFD/F_SETFD on an integer takes no pointers; an
    // unknown descriptor gives EBADF.
    let flags = unsafe { libc::fcntl(n, libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(n, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor is open (F_GETFD succeeded), this process
    // never opened it itself (it was inherited, and this is called once at
    // start-up for the number the parent passed), so nothing else owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(n) })
}

/// The soft limit on this process's stack size (`RLIMIT_STACK`), in bytes
/// (`u64::MAX` when unlimited).
pub fn stack_limit() -> io::Result<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes one `struct rlimit` through the pointer,
    // which points to a live, properly aligned local of that type.
    if unsafe { libc::getrlimit(libc::RLIMIT_STACK, &mut r) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r.rlim_cur)
}

/// Have the child `cmd` starts get `fd` as descriptor `target`, open across
/// exec, whatever number `fd` has in this process (which must keep `fd`
/// open until the child has started).
pub fn inherit_as(
    cmd: &mut std::process::Command,
    fd: std::os::fd::BorrowedFd<'_>,
    target: libc::c_int,
) {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let fd = fd.as_raw_fd();
    // SAFETY: the closure runs in the child between fork and exec; it only
    // calls dup2(2) and fcntl(2) on integer descriptors, which are
    // async-signal-safe, take no pointers, allocate nothing and touch no
    // lock.
    unsafe {
        cmd.pre_exec(move || {
            if fd == target {
                // dup2 onto itself would keep close-on-exec.
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(fd, target) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// While this lives, the signals the gate forwards to rsync are held back
/// (pending) in the thread that made it and in threads it starts; dropping
/// it lets them through. Taken before rsync is spawned and dropped once
/// [`forward_signals_to`] is in place, so a signal that arrives while rsync
/// starts reaches rsync instead of ending the gate unrecorded. (rsync itself
/// starts with no signal blocked: the standard library clears the mask in
/// the child.)
#[derive(Debug)]
pub struct HeldSignals(nix::sys::signal::SigSet);

pub fn hold_forwarded_signals() -> io::Result<HeldSignals> {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
    let mut set = SigSet::empty();
    for sig in FORWARDED {
        set.add(Signal::try_from(sig).map_err(io::Error::from)?);
    }
    let mut old = SigSet::empty();
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old)).map_err(io::Error::from)?;
    Ok(HeldSignals(old))
}

impl Drop for HeldSignals {
    fn drop(&mut self) {
        use nix::sys::signal::{SigmaskHow, pthread_sigmask};
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&self.0), None);
    }
}

/// This thread's nice value (`getpriority(PRIO_PROCESS, 0)`; on Linux the
/// nice value belongs to the thread, and a child inherits its creator's).
pub fn nice_value() -> io::Result<i32> {
    nix::errno::Errno::clear();
    // SAFETY: getpriority(2) takes no pointers and changes nothing.
    let n = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    if n == -1 && nix::errno::Errno::last_raw() != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n)
}

/// Set this thread's nice value (`setpriority(PRIO_PROCESS, 0, n)`).
pub fn set_nice_value(n: i32) -> io::Result<()> {
    // SAFETY: setpriority(2) takes no pointers; it changes only this
    // thread's scheduling priority.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, n) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `IOPRIO_WHO_PROCESS` (linux/ioprio.h): `who` is a thread id, 0 = self.
const IOPRIO_WHO_PROCESS: libc::c_int = 1;
/// The class sits above the 13 bits of level data.
const IOPRIO_CLASS_SHIFT: u32 = 13;

/// This thread's I/O priority: (class, level), class 0 being "none" (the
/// kernel then derives a best-effort level from the nice value).
pub fn io_priority() -> io::Result<(u8, u8)> {
    // SAFETY: ioprio_get(2) takes two integers and no pointers, and
    // changes nothing.
    let r = unsafe { libc::syscall(libc::SYS_ioprio_get, IOPRIO_WHO_PROCESS, 0 as libc::c_int) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let class = u8::try_from((r >> IOPRIO_CLASS_SHIFT) & 0x7).unwrap_or(0);
    let level = u8::try_from(r & 0xff).unwrap_or(0);
    Ok((class, level))
}

/// Set this thread's I/O priority (`ioprio_set(IOPRIO_WHO_PROCESS, 0,
/// class << 13 | level)`); a child inherits it.
pub fn set_io_priority(class: u8, level: u8) -> io::Result<()> {
    let value = (libc::c_int::from(class) << IOPRIO_CLASS_SHIFT) | libc::c_int::from(level);
    // SAFETY: ioprio_set(2) takes three integers and no pointers; it
    // changes only this thread's I/O scheduling priority.
    let r = unsafe {
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            0 as libc::c_int,
            value,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Does this process have a single thread (so that a child forked from it
/// is a consistent copy: no lock held, no allocation half done, by a
/// thread the child does not have)? Read from `/proc/self/status`; false
/// when it cannot be read.
fn single_threaded() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .is_some_and(|n| n.trim() == "1")
    })
}

/// Run `f` in a child process that has switched to `uid`, `gid` and the
/// supplementary `groups` (all of them: real, effective and saved), and
/// return what `f` returned, passed back through a pipe. `check` asks this
/// way, as the SSH account, what `serve` will be allowed to do: open the
/// policy, append to the audit log, create in `lock_dir`, run rsync and
/// the login shell. Needs root; refused unless this process has a single
/// thread.
pub fn run_as(
    uid: u32,
    gid: u32,
    groups: &[u32],
    f: impl FnOnce() -> Vec<u8>,
) -> io::Result<Vec<u8>> {
    use nix::sys::wait::{WaitStatus, waitpid};
    use nix::unistd::{ForkResult, Gid, Uid};
    use std::io::{Read, Write};
    if !single_threaded() {
        return Err(io::Error::other(
            "cannot act as another account from a process with several threads",
        ));
    }
    let gids: Vec<Gid> = groups.iter().map(|&g| Gid::from_raw(g)).collect();
    let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    // SAFETY: this process has one thread (checked just above, and nothing
    // between that check and here starts one), so the child is a complete
    // copy of it: no lock or allocator state is left half-changed by a
    // thread the child lacks, and the child may run ordinary code.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Child => {
            drop(read_end);
            let switched = nix::unistd::setgroups(&gids)
                .and_then(|()| nix::unistd::setgid(Gid::from_raw(gid)))
                .and_then(|()| nix::unistd::setuid(Uid::from_raw(uid)))
                .is_ok()
                && nix::unistd::getuid().as_raw() == uid
                && nix::unistd::geteuid().as_raw() == uid
                && nix::unistd::getegid().as_raw() == gid;
            let code = if switched {
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                    Ok(bytes) => {
                        let mut w = std::fs::File::from(write_end);
                        if w.write_all(&bytes).is_ok() { 0 } else { 3 }
                    }
                    Err(_) => 4,
                }
            } else {
                2
            };
            // SAFETY: _exit(2) ends the child at once, without running the
            // parent's atexit handlers or flushing buffers it copied from
            // the parent (which would write the parent's output twice).
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            let mut bytes = Vec::new();
            let read = std::fs::File::from(read_end).read_to_end(&mut bytes);
            let status = loop {
                match waitpid(child, None) {
                    Err(nix::errno::Errno::EINTR) => {}
                    other => break other,
                }
            };
            read?;
            match status.map_err(io::Error::from)? {
                WaitStatus::Exited(_, 0) => Ok(bytes),
                WaitStatus::Exited(_, 2) => Err(io::Error::other(format!(
                    "cannot switch to uid {uid}, gid {gid}"
                ))),
                other => Err(io::Error::other(format!(
                    "the child acting as uid {uid} failed ({other:?})"
                ))),
            }
        }
    }
}
