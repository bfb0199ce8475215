//! A trigger's job (push mirroring): what runs, with what words, where its
//! output goes, and where its state lives. Pure; the exec stage starts the
//! job detached and serialises the runs ([`crate::exec::trigger`]).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::decide::TriggerGrant;
use crate::host::{Account, CHILD_PATH};
use crate::policy::Trigger;

/// Variables the gate sets for every job; a trigger's `env` cannot change
/// them.
pub const FIXED_ENV: &[&str] = &["HOME", "USER", "LOGNAME"];

/// One run of a trigger's job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerPlan {
    pub name: String,
    /// Absolute path of the program.
    pub program: PathBuf,
    /// `argv[1..]`: the fixed arguments, then the client's words when the
    /// trigger takes them.
    pub args: Vec<OsString>,
    /// The complete environment.
    pub env: Vec<(OsString, OsString)>,
    pub cwd: PathBuf,
    /// Where stdout and stderr are appended (else they are discarded).
    pub log: Option<PathBuf>,
    pub timeout: Option<Duration>,
    /// The trigger's state directory (locks, the pending run).
    pub state_dir: PathBuf,
    /// Every word the client sent.
    pub words: Vec<Vec<u8>>,
    /// Whether the words are in `args`.
    pub passed: bool,
}

/// The state directory of trigger `name`.
pub fn state_dir(lock_dir: &Path, name: &str) -> PathBuf {
    lock_dir.join("triggers").join(name)
}

/// The plan for a granted trigger request.
pub fn plan(t: &Trigger, g: &TriggerGrant, account: &Account, lock_dir: &Path) -> TriggerPlan {
    let mut command = t.command.iter();
    let program = PathBuf::from(command.next().cloned().unwrap_or_default());
    let mut args: Vec<OsString> = command.map(OsString::from).collect();
    if g.passed {
        args.extend(g.words.iter().cloned().map(OsString::from_vec));
    }
    let home = account.home.clone().unwrap_or_else(|| PathBuf::from("/"));
    let mut env: Vec<(OsString, OsString)> = vec![
        ("PATH".into(), CHILD_PATH.into()),
        ("HOME".into(), home.clone().into_os_string()),
        ("USER".into(), account.name.clone().into()),
        ("LOGNAME".into(), account.name.clone().into()),
    ];
    for (k, v) in &t.env {
        if FIXED_ENV.contains(&k.as_str()) {
            continue;
        }
        env.retain(|(name, _)| name.as_os_str() != k.as_str());
        env.push((k.into(), v.into()));
    }
    TriggerPlan {
        name: t.name.clone(),
        program,
        args,
        env,
        cwd: if home.is_dir() {
            home
        } else {
            PathBuf::from("/")
        },
        log: t.log.clone(),
        timeout: t.timeout,
        state_dir: state_dir(lock_dir, &t.name),
        words: g.words.clone(),
        passed: g.passed,
    }
}

impl TriggerPlan {
    /// argv as text for the audit log and `explain`.
    pub fn argv_shown(&self) -> Vec<String> {
        use std::os::unix::ffi::OsStrExt;
        std::iter::once(self.program.as_os_str())
            .chain(self.args.iter().map(OsString::as_os_str))
            .map(|a| crate::escape::field(a.as_bytes()))
            .collect()
    }

    /// The words as the audit log shows them.
    pub fn words_shown(&self) -> Vec<String> {
        self.words.iter().map(|w| crate::escape::field(w)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy;

    fn trigger(text: &str) -> Trigger {
        let p = policy::load_text(
            Path::new("/p.toml"),
            &format!("{text}\n[clients.up]\ntrigger = \"t\"\n"),
        )
        .unwrap();
        p.triggers["t"].clone()
    }

    fn account() -> Account {
        Account {
            uid: 1000,
            name: "mirror".into(),
            home: Some(PathBuf::from("/nonexistent-home")),
        }
    }

    #[test]
    fn words_are_appended_only_with_an_allowlist() {
        let g = |passed| TriggerGrant {
            trigger: "t".into(),
            words: vec![b"sync:all".to_vec()],
            passed,
        };
        let t = trigger(
            "[triggers.t]\ncommand = [\"/usr/bin/ftpsync\", \"-T\", \"push\"]\nargs = [\"sync:*\"]",
        );
        let p = plan(&t, &g(true), &account(), Path::new("/run/rsync-gate"));
        assert_eq!(p.program, PathBuf::from("/usr/bin/ftpsync"));
        assert_eq!(p.args, ["-T", "push", "sync:all"]);
        assert_eq!(p.state_dir, PathBuf::from("/run/rsync-gate/triggers/t"));
        assert_eq!(
            p.argv_shown(),
            ["/usr/bin/ftpsync", "-T", "push", "sync:all"]
        );
        let t = trigger("[triggers.t]\ncommand = [\"/usr/bin/ftpsync\"]");
        let p = plan(&t, &g(false), &account(), Path::new("/run"));
        assert!(p.args.is_empty());
        assert_eq!(p.words_shown(), ["sync:all"]);
    }

    #[test]
    fn environment_is_built_from_nothing_plus_the_triggers() {
        let mut t = trigger(
            "[triggers.t]\ncommand = [\"/bin/true\"]\nenv = { MAILTO = \"\", PATH = \"/opt/bin:/usr/bin\" }",
        );
        // The policy refuses HOME in `env`; the plan ignores it anyway.
        t.env.insert("HOME".into(), "/x".into());
        let g = TriggerGrant {
            trigger: "t".into(),
            words: vec![],
            passed: false,
        };
        let p = plan(&t, &g, &account(), Path::new("/run"));
        let env: Vec<(String, String)> = p
            .env
            .iter()
            .map(|(k, v)| (k.to_string_lossy().into(), v.to_string_lossy().into()))
            .collect();
        assert_eq!(
            env,
            [
                ("HOME".to_string(), "/nonexistent-home".to_string()),
                ("USER".into(), "mirror".into()),
                ("LOGNAME".into(), "mirror".into()),
                ("MAILTO".into(), "".into()),
                ("PATH".into(), "/opt/bin:/usr/bin".into()),
            ]
        );
        assert_eq!(p.cwd, PathBuf::from("/"));
    }
}
