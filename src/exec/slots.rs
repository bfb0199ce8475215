//! `max_connections`: a module's connection slots.
//!
//! The scheme is rsync daemon's own (`max connections` + `lock file`): slot
//! *i* of a module is the byte range `[4i, 4i+4)` of the module's lock file,
//! held with a POSIX record lock for the life of the session. Checked-mode
//! sessions and daemon-mode sessions (whose generated config points rsync at
//! the same lock file) therefore share one limit. Record locks belong to the
//! gate process and vanish when it exits, however it exits.

use std::fs::File;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, fcntl};

/// How often a waiting session retries.
const POLL: Duration = Duration::from_millis(100);

/// A held slot; released when dropped (or when the process exits).
#[derive(Debug)]
pub struct Slot {
    _file: File,
    pub index: u32,
}

/// Why no slot was taken.
#[derive(Debug)]
pub enum SlotError {
    /// Every slot stayed taken for the whole wait.
    Busy,
    /// The lock file could not be opened or locked.
    Io(String),
}

/// Create the lock file if needed (the daemon's rsync opens it by name).
pub fn ensure_lock_file(path: &Path) -> Result<(), String> {
    open_lock(path).map(drop).map_err(|e| match e {
        SlotError::Io(m) => m,
        SlotError::Busy => String::from("busy"),
    })
}

/// Open (creating) a lock file, never through a link, in a directory that
/// is the account's and root's alone (created when missing), so nobody else
/// can plant the name rsync's daemon will open too.
fn open_lock(path: &Path) -> Result<File, SlotError> {
    let uid = nix::unistd::geteuid().as_raw();
    if let Some(dir) = path.parent() {
        crate::trust::ensure_private_dir(dir, uid, 0o755).map_err(SlotError::Io)?;
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| SlotError::Io(format!("{}: {e}", path.display())))?;
    match f.metadata() {
        Ok(md) if md.is_file() && crate::trust::root_or(md.uid(), uid) => Ok(f),
        _ => Err(SlotError::Io(format!(
            "{}: not a regular file of this account's",
            path.display()
        ))),
    }
}

fn try_slot(f: &File, i: u32) -> Result<bool, SlotError> {
    let lock = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: libc::off_t::from(i) * 4,
        l_len: 4,
        l_pid: 0,
    };
    match fcntl(f, FcntlArg::F_SETLK(&lock)) {
        Ok(_) => Ok(true),
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EACCES) => Ok(false),
        Err(e) => Err(SlotError::Io(format!("lock: {e}"))),
    }
}

/// Take one of `max` slots of the lock file at `path`, waiting up to `wait`.
pub fn acquire(path: &Path, max: u32, wait: Duration) -> Result<Slot, SlotError> {
    let file = open_lock(path)?;
    let deadline = Instant::now() + wait;
    loop {
        for i in 0..max {
            if try_slot(&file, i)? {
                return Ok(Slot {
                    _file: file,
                    index: i,
                });
            }
        }
        if Instant::now() >= deadline {
            return Err(SlotError::Busy);
        }
        std::thread::sleep(POLL.min(deadline.saturating_duration_since(Instant::now())));
    }
}

/// Are all `max` slots of the lock file at `path` held (by other
/// processes) right now? Takes nothing; a lock file that cannot be opened
/// is not full.
pub fn is_full(path: &Path, max: u32) -> bool {
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    else {
        return false;
    };
    max > 0
        && (0..max).all(|i| {
            let mut lock = libc::flock {
                l_type: libc::F_WRLCK as libc::c_short,
                l_whence: libc::SEEK_SET as libc::c_short,
                l_start: libc::off_t::from(i) * 4,
                l_len: 4,
                l_pid: 0,
            };
            fcntl(&file, FcntlArg::F_GETLK(&mut lock)).is_ok()
                && lock.l_type != libc::F_UNLCK as libc::c_short
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Record locks are per process, so holding a slot needs another process.
    fn hold_slot_in_child(path: &Path, index: u32) -> std::process::Child {
        // python3 is on every machine this project builds on; it takes the
        // same byte-range lock rsync would.
        let script = format!(
            "import fcntl,os,sys,time\nfd=os.open({:?},os.O_RDWR|os.O_CREAT,0o600)\n\
             fcntl.lockf(fd,fcntl.LOCK_EX|fcntl.LOCK_NB,4,{},0)\nprint('held',flush=True)\ntime.sleep(30)\n",
            path.display().to_string(),
            index * 4
        );
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(script)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "held");
        child
    }

    #[test]
    fn slots_are_byte_ranges_shared_with_other_processes() {
        let d = tempfile::tempdir().unwrap();
        let path = crate::plan::lock_file(d.path(), "www");
        assert!(!is_full(&path, 1), "no lock file yet");
        let mut holder = hold_slot_in_child(&path, 0);
        assert!(is_full(&path, 1));
        assert!(!is_full(&path, 2));
        assert!(!is_full(&path, 0));
        // Slot 0 is taken by the other process; with two slots we get slot 1.
        let s = acquire(&path, 2, Duration::ZERO).unwrap();
        assert_eq!(s.index, 1);
        // With one slot: busy, immediately and after a short wait.
        assert!(matches!(
            acquire(&path, 1, Duration::ZERO),
            Err(SlotError::Busy)
        ));
        let t = Instant::now();
        assert!(matches!(
            acquire(&path, 1, Duration::from_millis(300)),
            Err(SlotError::Busy)
        ));
        assert!(t.elapsed() >= Duration::from_millis(300));
        holder.kill().unwrap();
        holder.wait().unwrap();
        assert_eq!(acquire(&path, 1, Duration::from_secs(5)).unwrap().index, 0);
    }

    /// A lock file that is not a regular file of the account's (or
    /// root's) is refused.
    #[test]
    fn lock_files_are_regular_files_of_the_account() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo.lock");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert_eq!(
            ensure_lock_file(&fifo),
            Err(format!(
                "{}: not a regular file of this account's",
                fifo.display()
            ))
        );
        let own = d.path().join("www.lock");
        assert_eq!(ensure_lock_file(&own), Ok(()));
        assert!(std::fs::symlink_metadata(&own).unwrap().is_file());
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(&own, Some(4242), None).unwrap();
            assert!(ensure_lock_file(&own).is_err());
        }
    }

    #[test]
    fn refuses_symlinked_lock_files() {
        let d = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("www.lock")).unwrap();
        assert!(matches!(
            acquire(&crate::plan::lock_file(d.path(), "www"), 1, Duration::ZERO),
            Err(SlotError::Io(_))
        ));
    }
}
