//! Per-file transfer records (a module's `transfer_log`): how rsync is told
//! to log every file it sends, receives or deletes to the gate, and what
//! the gate needs to turn the names it logs into paths relative to the
//! module.
//!
//! rsync writes its log to a file the gate makes for the session in
//! `lock_dir/filelog/` and reads as it grows, one line per file in a
//! format the gate sets. In checked mode rsync gets its name
//! (`--log-file=FILE`): rsync 3.5 with `--confine-root` opens its log file
//! by walking the path itself (a `/proc/self/fd/N` name is refused). In
//! daemon mode the file is the daemon's log descriptor (the module's `log
//! file`, the `/proc/self/fd/N` name the daemon already logs to, a pipe
//! without a transfer log). A file, not a pipe: a line written to a pipe
//! wakes the reader, one line per file (on a pull of 10,000 small files,
//! rsync with its log in a pipe took 10% longer than without it, with its
//! log in a file 1 to 2%). The
//! format: numbers first, the name last, between two tokens
//! (`START %o %l %b [%m] %f END`). The tokens are random per session and
//! secret (placeholders in the plan; [`crate::exec::prepare`] seals them),
//! so no name a client chooses can contain them: a record begins where a
//! start token is and ends at the end token, whatever the name holds, and a
//! line rsync cut short (it logs at most 2047 bytes of a message) is told
//! apart from the next one. rsync writes control bytes in its log as `\#`
//! and three octal digits; the gate decodes them and escapes the name as
//! every audit field is.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::decide::Mode;

/// Where the tokens go in the argv (checked mode) or the environment
/// (daemon mode) until the plan is sealed; what the audit record and
/// `explain` show instead of the secret ones.
pub const START_PLACEHOLDER: &str = "@log-start@";
pub const END_PLACEHOLDER: &str = "@log-end@";

/// The daemon's environment variables holding the tokens; the generated
/// config's `log format` names them (rsync expands `%VAR%` in it), so the
/// config stays the same for every session.
pub const START_ENV: &str = "RSYNC_GATE_LOG_START";
pub const END_ENV: &str = "RSYNC_GATE_LOG_END";

/// rsync's log format escapes, after the start token: operation (`send`,
/// `recv`, `del.`), the file's length, the bytes transferred for it.
const FIELDS: &str = "%o %l %b";

/// The secret tokens a record starts and ends with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    pub start: String,
    pub end: String,
}

impl Tokens {
    /// The placeholders a plan is made with.
    pub fn placeholders() -> Tokens {
        Tokens {
            start: START_PLACEHOLDER.into(),
            end: END_PLACEHOLDER.into(),
        }
    }

    /// Are these the real tokens?
    pub fn sealed(&self) -> bool {
        self.start != START_PLACEHOLDER
    }
}

/// The file records of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLogPlan {
    pub tokens: Tokens,
    /// Most records the session writes (`[gate] transfer_log_limit`).
    pub limit: u64,
    pub names: Names,
    /// The file rsync logs to, made for the session (and removed after
    /// it) by the exec stage: by this name in checked mode, as the plan's
    /// `log_fd` in daemon mode.
    pub file: Option<PathBuf>,
}

/// The directory under `lock_dir` holding the sessions' log files.
pub const LOG_DIR: &str = "filelog";

/// The suffix of a session's log file.
pub const LOG_SUFFIX: &str = ".log";

/// A session's log file: `lock_dir/filelog/SESSION.log`.
pub fn log_path(lock_dir: &Path, session: &str) -> PathBuf {
    let name: String = session
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    lock_dir.join(LOG_DIR).join(format!("{name}{LOG_SUFFIX}"))
}

/// How the names rsync logs (`%f`) become paths relative to the module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Names {
    Checked(CheckedNames),
    /// Daemon mode: rsync logs the module (`%m`) and the name relative to
    /// it. The modules with `transfer_log`, and their real roots.
    Daemon(Vec<(String, PathBuf)>),
}

/// Checked mode: rsync knows the paths by the descriptors the gate holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedNames {
    pub module: String,
    /// The module's real root.
    pub root: PathBuf,
    pub mode: Mode,
    /// Each descriptor the argv names, and the real directory it holds. A
    /// sender logs `proc/self/fd/N/NAME`.
    pub fds: Vec<(i32, PathBuf)>,
    /// A receiver logs names relative to its destination.
    pub dest: Option<Dest>,
}

/// A push's destination: a directory, and the last name rsync makes a
/// directory (names are then below it) or, for a single file, the file
/// itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dest {
    /// The real directory held for it.
    pub dir: PathBuf,
    pub last: Option<Vec<u8>>,
}

/// A `/proc/self/fd/N[/REST]` argument: N and REST's components (without
/// `.` and empty ones), and whether it ends in `/` or `/.`.
pub fn split_proc(arg: &[u8]) -> Option<(i32, Vec<&[u8]>, bool)> {
    let (fd, rest) = split_fd(arg.strip_prefix(b"/proc/self/fd/")?)?;
    let trailing = rest.ends_with(b"/") || rest.ends_with(b"/.");
    let comps = rest
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect();
    Some((fd, comps, trailing))
}

/// What follows `/proc/self/fd/`: the descriptor's number, and the rest
/// (empty, or from its `/`).
pub fn split_fd(after: &[u8]) -> Option<(i32, &[u8])> {
    let digits = after.iter().take_while(|b| b.is_ascii_digit()).count();
    let fd = std::str::from_utf8(after.get(..digits)?)
        .ok()?
        .parse()
        .ok()?;
    let rest = after.get(digits..)?;
    if !(rest.is_empty() || rest.starts_with(b"/")) {
        return None;
    }
    Some((fd, rest))
}

/// `dir` joined with `names` (as bytes).
fn join(dir: &Path, names: &[&[u8]]) -> PathBuf {
    names.iter().fold(dir.to_path_buf(), |p, n| {
        p.join(std::ffi::OsStr::from_bytes(n))
    })
}

/// A push's destination, from the argument rsync is given for it.
pub fn dest(arg: &[u8], fds: &[(i32, PathBuf)]) -> Option<Dest> {
    let (fd, comps, trailing) = split_proc(arg)?;
    let held = fds.iter().find(|(n, _)| *n == fd).map(|(_, p)| p)?;
    match comps.split_last() {
        Some((last, dirs)) if !trailing => Some(Dest {
            dir: join(held, dirs),
            last: Some(last.to_vec()),
        }),
        _ => Some(Dest {
            dir: join(held, &comps),
            last: None,
        }),
    }
}

/// The option that sets rsync's log format (checked mode).
pub const FORMAT_OPTION: &str = "--log-file-format=";

/// rsync's arguments that send its log to the gate (checked mode), before
/// the `--`.
pub fn checked_args(log: &Path, tokens: &Tokens) -> [OsString; 2] {
    let mut file = OsString::from("--log-file=");
    file.push(log);
    [
        file,
        format!("{FORMAT_OPTION}{} {FIELDS} %f {}", tokens.start, tokens.end).into(),
    ]
}

/// The lines a daemon module with `transfer_log` gets: rsync keeps logging
/// to the descriptor it was started with (the same name: it does not
/// reopen it, so a chroot does not matter), one line per file.
pub fn daemon_lines(log_fd: i32) -> String {
    format!(
        "transfer logging = yes\nlog file = /proc/self/fd/{log_fd}\nlog format = %{START_ENV}% {FIELDS} %m %f %{END_ENV}%\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_arguments() {
        let s = |a: &str| {
            split_proc(a.as_bytes()).map(|(fd, comps, t)| {
                (
                    fd,
                    comps
                        .iter()
                        .map(|c| String::from_utf8_lossy(c).into_owned())
                        .collect::<Vec<_>>(),
                    t,
                )
            })
        };
        assert_eq!(s("/proc/self/fd/5"), Some((5, vec![], false)));
        assert_eq!(s("/proc/self/fd/5/"), Some((5, vec![], true)));
        assert_eq!(s("/proc/self/fd/5/."), Some((5, vec![], true)));
        assert_eq!(
            s("/proc/self/fd/12/./a/b"),
            Some((12, vec!["a".into(), "b".into()], false))
        );
        assert_eq!(s("/proc/self/fd/12x"), None);
        assert_eq!(s("/proc/self/fd/"), None);
        assert_eq!(s("/srv/x"), None);
        let fds = vec![
            (5, PathBuf::from("/srv/up")),
            (7, PathBuf::from("/srv/up/new")),
        ];
        assert_eq!(
            dest(b"/proc/self/fd/5/", &fds),
            Some(Dest {
                dir: "/srv/up".into(),
                last: None
            })
        );
        assert_eq!(
            dest(b"/proc/self/fd/5/name", &fds),
            Some(Dest {
                dir: "/srv/up".into(),
                last: Some(b"name".to_vec())
            })
        );
        // A trailing slash: the last name is a directory the files go in.
        assert_eq!(
            dest(b"/proc/self/fd/7/a/", &fds),
            Some(Dest {
                dir: "/srv/up/new/a".into(),
                last: None
            })
        );
        assert_eq!(
            dest(b"/proc/self/fd/7/a/name", &fds),
            Some(Dest {
                dir: "/srv/up/new/a".into(),
                last: Some(b"name".to_vec())
            })
        );
        assert_eq!(dest(b"/proc/self/fd/6/", &fds), None);
    }

    #[test]
    fn formats() {
        let log = log_path(Path::new("/run/rsync-gate"), "18ed3-12/x");
        assert_eq!(log, Path::new("/run/rsync-gate/filelog/18ed3-12_x.log"));
        let [file, format] = checked_args(&log, &Tokens::placeholders());
        assert_eq!(file, "--log-file=/run/rsync-gate/filelog/18ed3-12_x.log");
        assert_eq!(
            format,
            "--log-file-format=@log-start@ %o %l %b %f @log-end@"
        );
        assert_eq!(
            daemon_lines(3),
            "transfer logging = yes\nlog file = /proc/self/fd/3\n\
             log format = %RSYNC_GATE_LOG_START% %o %l %b %m %f %RSYNC_GATE_LOG_END%\n"
        );
        assert!(!Tokens::placeholders().sealed());
    }
}
