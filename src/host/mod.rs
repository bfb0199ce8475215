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
    exec_limit_for(crate::sys::stack_limit().ok())
}

/// [`exec_limit`] for a stack limit of `stack` bytes (`None`: unknown,
/// taken as the usual 8 MiB; unlimited is `u64::MAX`).
fn exec_limit_for(stack: Option<u64>) -> usize {
    const MIB: u64 = 1024 * 1024;
    let stack = stack.unwrap_or(8 * MIB);
    let kernel = (stack / 4).clamp(128 * 1024, 6 * MIB);
    usize::try_from(kernel)
        .unwrap_or(MAX_EXEC_BYTES)
        .min(MAX_EXEC_BYTES)
}

/// Whether execve(2) takes `bytes` of argument and environment strings and
/// pointers, the longest string `longest` bytes with its NUL, when it
/// takes at most `limit` bytes (see [`exec_limit`]).
pub fn execve_takes(bytes: usize, longest: usize, limit: usize) -> bool {
    bytes <= limit && longest <= MAX_ARG_STRLEN
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Both bounds are inclusive: execve(2) fails with E2BIG only beyond
    /// them (a string of exactly `MAX_ARG_STRLEN` bytes with its NUL is
    /// copied: the kernel's `valid_arg_len` compares with `<=`).
    /// A quarter of the stack, at least 128 KiB, and at most 2 MiB (the
    /// gate's own bound, below the kernel's 6 MiB).
    #[test]
    fn the_exec_limit_follows_the_stack_limit() {
        const KIB: u64 = 1024;
        for (stack, want) in [
            (None, 2 * 1024 * 1024),
            (Some(8 * 1024 * KIB), 2 * 1024 * 1024),
            (Some(64 * 1024 * KIB), MAX_EXEC_BYTES),
            (Some(4 * 1024 * KIB), 1024 * 1024),
            (Some(1024 * KIB), 256 * 1024),
            (Some(512 * KIB), 128 * 1024),
            (Some(100 * KIB), 128 * 1024),
            (Some(0), 128 * 1024),
            (Some(u64::MAX), MAX_EXEC_BYTES),
        ] {
            assert_eq!(exec_limit_for(stack), want, "{stack:?}");
        }
        assert_eq!(MAX_EXEC_BYTES, 2 * 1024 * 1024);
        assert_eq!(MAX_ARG_STRLEN, 131_072);
        assert_eq!(exec_limit(), exec_limit_for(crate::sys::stack_limit().ok()));
    }

    #[test]
    fn execve_takes_up_to_both_bounds_and_not_a_byte_more() {
        let limit = 1000;
        assert!(execve_takes(limit, 10, limit));
        assert!(!execve_takes(limit + 1, 10, limit));
        assert!(execve_takes(0, MAX_ARG_STRLEN, limit));
        assert!(!execve_takes(0, MAX_ARG_STRLEN + 1, limit));
        // Each bound alone refuses.
        assert!(!execve_takes(limit + 1, 1, limit));
        assert!(!execve_takes(1, MAX_ARG_STRLEN + 1, usize::MAX));
        assert!(execve_takes(limit - 1, MAX_ARG_STRLEN - 1, limit));
    }
}
