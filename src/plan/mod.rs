//! The exec plan: exactly what runs, and what must happen just before it
//! does. Built from a grant and its confined paths (checked mode) or from
//! the client's modules (daemon mode); pure: nothing here touches the
//! filesystem or starts anything. The exec stage sees only this, never the
//! policy or the request.

pub mod checked;
pub mod daemon;
pub mod filelog;
pub mod trigger;

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::confine::MakeDir;
use crate::host::{Account, CHILD_HOME, CHILD_PATH};
use crate::request::Priority;
use crate::request::conn::Connection;

/// What to run.
#[derive(Debug)]
pub struct ExecPlan {
    /// Absolute path of the program.
    pub program: PathBuf,
    /// `argv[0]` as the program will see it.
    pub arg0: OsString,
    /// `argv[1..]`.
    pub args: Vec<OsString>,
    /// The complete environment.
    pub env: Vec<(OsString, OsString)>,
    /// Working directory.
    pub cwd: PathBuf,
    /// Descriptors the child inherits (besides 0, 1, 2). They are not
    /// close-on-exec and must stay open until the child has started.
    pub keep_fds: Vec<OwnedFd>,
    /// Directories to create and hold before the child starts.
    pub mkdirs: Vec<MakeDir>,
    /// Files to write before the child starts.
    pub files: Vec<PlannedFile>,
    /// A connection slot to take first (`max_connections`).
    pub slot: Option<SlotPlan>,
    /// Kernel confinement.
    pub sandbox: SandboxChoice,
    /// The child gets, as this descriptor, the write end of a pipe (or,
    /// with a transfer log, its file, opened to append), and the gate
    /// keeps what arrives (rsync daemon's own log: what it refused before
    /// any hook ran).
    pub log_fd: Option<i32>,
    /// One audit record per file rsync sends, receives or deletes, read
    /// from its log (`log_fd`, or the file it names): modules with
    /// `transfer_log`.
    pub file_log: Option<filelog::FileLogPlan>,
    /// The lower priority to run at (applied to the gate before it starts
    /// the child, which inherits it).
    pub priority: Priority,
    /// Human-readable remarks (explain, audit).
    pub notes: Vec<String>,
}

impl ExecPlan {
    /// argv as text for the audit log and `explain`: every byte shown
    /// (escaped as every audit field is), nothing replaced.
    /// The transfer log's secret tokens show as their placeholders.
    pub fn argv_shown(&self) -> Vec<String> {
        use std::os::unix::ffi::OsStrExt;
        let secret = self.file_log.as_ref().map(|f| &f.tokens);
        std::iter::once(&self.arg0)
            .chain(self.args.iter())
            .map(|a| {
                let shown = crate::escape::field(a.as_bytes());
                match secret {
                    Some(t) if t.sealed() => shown
                        .replace(&t.start, filelog::START_PLACEHOLDER)
                        .replace(&t.end, filelog::END_PLACEHOLDER),
                    _ => shown,
                }
            })
            .collect()
    }

    /// Put the transfer log's real tokens where the plan has their
    /// placeholders: in the gate's own `--log-file-format` (before the
    /// `--`; a client's `--log-file*` are refused) or the daemon's two
    /// variables, nowhere else (a client's path may spell a placeholder).
    /// Done just before rsync starts; nothing the gate records or shows
    /// holds them.
    pub fn seal_file_log(&mut self, tokens: filelog::Tokens) {
        use std::os::unix::ffi::OsStrExt;
        let Some(f) = self.file_log.as_mut() else {
            return;
        };
        let sealed = |v: &[u8]| -> OsString {
            String::from_utf8_lossy(v)
                .replace(filelog::START_PLACEHOLDER, &tokens.start)
                .replace(filelog::END_PLACEHOLDER, &tokens.end)
                .into()
        };
        let options = self.args.iter().position(|a| a == "--");
        for a in self.args.iter_mut().take(options.unwrap_or(usize::MAX)) {
            if a.as_bytes().starts_with(filelog::FORMAT_OPTION.as_bytes()) {
                *a = sealed(a.as_bytes());
            }
        }
        for (k, v) in self.env.iter_mut() {
            if k == filelog::START_ENV {
                *v = tokens.start.clone().into();
            } else if k == filelog::END_ENV {
                *v = tokens.end.clone().into();
            }
        }
        f.tokens = tokens;
    }

    /// What starting the program takes, as execve(2) counts it: the
    /// program's path, every argument and environment string with its NUL,
    /// and a pointer for each argument and variable; and the longest single
    /// string.
    pub fn exec_size(&self) -> (usize, usize) {
        use std::os::unix::ffi::OsStrExt;
        let strings = std::iter::once(self.program.as_os_str().len())
            .chain(std::iter::once(self.arg0.len()))
            .chain(self.args.iter().map(|a| a.as_bytes().len()))
            .chain(self.env.iter().map(|(k, v)| k.len() + 1 + v.len()));
        let mut total = 0usize;
        let mut longest = 0usize;
        for n in strings {
            total = total.saturating_add(n + 1);
            longest = longest.max(n + 1);
        }
        let pointers = (1 + self.args.len() + self.env.len()) * std::mem::size_of::<usize>();
        (total.saturating_add(pointers), longest)
    }
}

/// A file the exec stage writes before the child starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFile {
    pub path: PathBuf,
    pub content: FileContent,
}

/// What a planned file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileContent {
    /// This text, written atomically (left alone when it already holds it).
    Text(String),
    /// A `max connections` lock file: created empty when missing, never
    /// truncated (the daemon's rsync opens it by name).
    LockFile,
}

/// A module's connection slot (rsync daemon's lock-file scheme).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotPlan {
    pub module: String,
    pub lock: PathBuf,
    pub max: u32,
    pub wait: Duration,
}

/// Whether the kernel sandbox goes around the child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxChoice {
    /// Apply this; failing to is a refusal.
    Apply(SandboxPlan),
    /// The policy says `sandbox = "off"`.
    Off,
    /// `best-effort`, and the kernel has no Landlock.
    Unavailable,
}

/// What rsync may touch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxPlan {
    /// Trees readable (and listable).
    pub read: Vec<PathBuf>,
    /// Trees readable and writable.
    pub write: Vec<PathBuf>,
    /// Files and trees readable and executable (beyond the system ones).
    pub exec: Vec<PathBuf>,
    /// Single files that may be opened for reading and writing, never
    /// created, removed or truncated (the audit log the daemon's hooks
    /// append to, `max connections` lock files).
    pub append: Vec<PathBuf>,
    /// Writable trees (of `write`) where device nodes may be created.
    pub devices: Vec<PathBuf>,
    /// Writable trees (of `write`) where FIFOs and sockets may be created.
    pub specials: Vec<PathBuf>,
}

/// What a sandbox note adds about device and special files in a writable
/// tree.
pub(crate) fn nodes_note(devices: bool, specials: bool) -> &'static str {
    match (devices, specials) {
        (true, _) => ", device nodes, FIFOs and sockets may be created",
        (false, true) => ", FIFOs and sockets may be created, device nodes may not",
        (false, false) => "",
    }
}

/// The lock file of a module's connection slots (shared by both request
/// forms: the daemon's rsync is pointed at the same file).
pub fn lock_file(lock_dir: &std::path::Path, module: &str) -> PathBuf {
    lock_dir.join(format!("{module}.lock"))
}

/// The child's environment, built from nothing.
pub fn child_env(account: &Account, conn: Option<&Connection>) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = vec![
        ("PATH".into(), CHILD_PATH.into()),
        ("HOME".into(), CHILD_HOME.into()),
        ("USER".into(), account.name.clone().into()),
        ("LOGNAME".into(), account.name.clone().into()),
    ];
    // rsync (daemon mode) takes the client address from SSH_CONNECTION; pass
    // only a value we parsed, rebuilt from its parts.
    if let Some(text) = conn.and_then(Connection::env_value) {
        env.push(("SSH_CONNECTION".into(), text.into()));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::conn::Conn;

    #[test]
    fn exec_size_counts_as_execve_does() {
        let plan = ExecPlan {
            program: PathBuf::from("/usr/bin/rsync"),
            arg0: "rsync".into(),
            args: vec!["--server".into(), "x".repeat(1000).into()],
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            cwd: PathBuf::from("/"),
            keep_fds: vec![],
            mkdirs: vec![],
            files: vec![],
            slot: None,
            sandbox: SandboxChoice::Off,
            notes: vec![],
            log_fd: None,
            file_log: None,
            priority: Default::default(),
        };
        let strings = 15 + 6 + 9 + 1001 + "PATH=/usr/bin:/bin".len() + 1;
        let pointers = 4 * std::mem::size_of::<usize>();
        assert_eq!(plan.exec_size(), (strings + pointers, 1001));
    }

    /// The real tokens go into the gate's own format option and the
    /// daemon's variables only: a client's path that spells a placeholder
    /// stays as it was, and the shown argv never holds a token.
    #[test]
    fn sealing_puts_the_tokens_in_the_gates_own_places_only() {
        use std::os::unix::ffi::{OsStrExt, OsStringExt};
        let mut plan = ExecPlan {
            program: PathBuf::from("/usr/bin/rsync"),
            arg0: "rsync".into(),
            args: vec![
                "--server".into(),
                "--log-file-format=@log-start@ %o %l %b %f @log-end@".into(),
                "--".into(),
                ".".into(),
                OsString::from_vec(b"/proc/self/fd/3/@log-start@\xff@log-end@".to_vec()),
                "--log-file-format=@log-start@".into(),
            ],
            env: vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                (filelog::START_ENV.into(), filelog::START_PLACEHOLDER.into()),
                (filelog::END_ENV.into(), filelog::END_PLACEHOLDER.into()),
                ("X".into(), "@log-start@".into()),
            ],
            cwd: PathBuf::from("/"),
            keep_fds: vec![],
            mkdirs: vec![],
            files: vec![],
            slot: None,
            sandbox: SandboxChoice::Off,
            notes: vec![],
            log_fd: None,
            priority: Default::default(),
            file_log: Some(filelog::FileLogPlan {
                tokens: filelog::Tokens::placeholders(),
                limit: 5,
                names: filelog::Names::Daemon(vec![]),
                file: None,
            }),
        };
        let (args, env, shown) = (plan.args.clone(), plan.env.clone(), plan.argv_shown());
        // arg0 and every argument, in order, escaped.
        assert_eq!(shown.len(), 7);
        assert_eq!(
            shown[..5],
            [
                "rsync",
                "--server",
                "--log-file-format=@log-start@ %o %l %b %f @log-end@",
                "--",
                "."
            ]
        );
        assert!(
            shown[5].starts_with("/proc/self/fd/3/@log-start@") && !shown[5].contains('\u{ff}'),
            "{}",
            shown[5]
        );
        let (s, e) = ("a".repeat(32), "b".repeat(32));
        plan.seal_file_log(filelog::Tokens {
            start: s.clone(),
            end: e.clone(),
        });
        assert_eq!(
            plan.args[1],
            OsString::from(format!("--log-file-format={s} %o %l %b %f {e}"))
        );
        assert_eq!(plan.args[2..], args[2..]);
        assert_eq!(
            plan.args[4].as_bytes(),
            b"/proc/self/fd/3/@log-start@\xff@log-end@"
        );
        assert_eq!(plan.env[1].1, OsString::from(&s));
        assert_eq!(plan.env[2].1, OsString::from(&e));
        assert_eq!(plan.env[3], env[3]);
        assert_eq!(plan.argv_shown(), shown);
        assert!(plan.file_log.as_ref().unwrap().tokens.sealed());
    }

    /// What `explain` and the audit record say of the nodes a writable
    /// tree may get.
    #[test]
    fn sandbox_notes_say_which_nodes_may_be_created() {
        assert_eq!(
            nodes_note(true, true),
            ", device nodes, FIFOs and sockets may be created"
        );
        assert_eq!(
            nodes_note(true, false),
            ", device nodes, FIFOs and sockets may be created"
        );
        assert_eq!(
            nodes_note(false, true),
            ", FIFOs and sockets may be created, device nodes may not"
        );
        assert_eq!(nodes_note(false, false), "");
    }

    #[test]
    fn environment_is_built_from_nothing() {
        let acct = Account {
            uid: 1000,
            name: "backup".into(),
            home: None,
        };
        let env = child_env(&acct, None);
        let keys: Vec<String> = env
            .iter()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        assert_eq!(keys, ["PATH", "HOME", "USER", "LOGNAME"]);
        let conn = Connection::parse(b"192.0.2.1 5 192.0.2.2 22").unwrap();
        let env = child_env(&acct, Some(&conn));
        assert_eq!(env.len(), 5);
        assert!(env.contains(&("SSH_CONNECTION".into(), "192.0.2.1 5 192.0.2.2 22".into())));
        // Only the client's address known (explain --from): nothing made up.
        let only = Connection {
            client: Conn {
                addr: "192.0.2.1".parse().unwrap(),
                port: 0,
            },
            server: None,
        };
        assert_eq!(child_env(&acct, Some(&only)).len(), 4);
    }
}
