//! Facts about this server the pipeline takes as inputs: the SSH account
//! the gate runs as, where the gate binary is, what the installed rsync
//! supports, and whether the kernel has Landlock. Read once per session;
//! nothing here decides anything.

pub mod rsync;

use std::path::PathBuf;

/// The `PATH` every program the gate starts gets.
pub const CHILD_PATH: &str = "/usr/bin:/bin";
/// The `HOME` rsync gets: a directory that does not exist and cannot be
/// created by the client (rsync reads `~/.popt` and `~/.cvsignore`).
pub const CHILD_HOME: &str = "/nonexistent";

/// The SSH account the gate runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    pub name: String,
    pub home: Option<PathBuf>,
}

impl Account {
    /// A named account (for `check`/`explain --account`).
    pub fn named(name: &str) -> Option<Account> {
        let u = nix::unistd::User::from_name(name).ok()??;
        Some(Account {
            uid: u.uid.as_raw(),
            name: u.name,
            home: Some(u.dir),
        })
    }

    /// The account of the current effective uid.
    pub fn current() -> Account {
        let uid = nix::unistd::geteuid();
        match nix::unistd::User::from_uid(uid) {
            Ok(Some(u)) => Account {
                uid: uid.as_raw(),
                name: u.name,
                home: Some(u.dir),
            },
            _ => Account {
                uid: uid.as_raw(),
                name: uid.to_string(),
                home: None,
            },
        }
    }
}

/// The gate binary's own path, for authorized_keys lines and the daemon
/// hooks' command lines.
pub fn gate_binary() -> PathBuf {
    std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/usr/local/bin/rsync-gate"))
}

/// Most bytes of arguments and environment the gate hands a program, as
/// execve(2) counts them (see [`exec_limit`]), whatever the kernel allows.
pub const MAX_EXEC_BYTES: usize = 2 * 1024 * 1024;

/// Longest single argument or environment string execve(2) accepts
/// (`MAX_ARG_STRLEN`), with its NUL.
pub const MAX_ARG_STRLEN: usize = 32 * 4096;

/// How many bytes of argument and environment strings (each with its NUL)
/// and pointers to them a program can be started with: what execve(2)
/// allows, a quarter of the stack limit but at most 6 MiB and at least
/// 128 KiB (Linux's `bprm_stack_limits`), and at most [`MAX_EXEC_BYTES`].
pub fn exec_limit() -> usize {
    const MIB: u64 = 1024 * 1024;
    let stack = crate::sys::stack_limit().unwrap_or(8 * MIB);
    let kernel = (stack / 4).clamp(128 * 1024, 6 * MIB);
    usize::try_from(kernel)
        .unwrap_or(MAX_EXEC_BYTES)
        .min(MAX_EXEC_BYTES)
}

/// Set once at start-up by the test-only `--test-no-landlock` switch
/// (debug builds only; a client or a policy cannot set it).
static PRETEND_NO_LANDLOCK: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// The Landlock ABI version the kernel offers, if any (asked of the
/// kernel itself; securityfs need not be mounted).
pub fn landlock_abi() -> Option<u32> {
    if PRETEND_NO_LANDLOCK.load(std::sync::atomic::Ordering::Relaxed) {
        return None;
    }
    crate::sys::landlock_abi()
}

/// Tests only: behave as on a kernel without Landlock.
#[cfg(debug_assertions)]
pub fn pretend_no_landlock() {
    PRETEND_NO_LANDLOCK.store(true, std::sync::atomic::Ordering::Relaxed);
}
