//! The daemon's hooks (`host::module`). rsync runs them from the generated
//! config as `$RSYNC_SHELL -c LINE`, and the gate is that shell: it accepts
//! only its own hook lines ([`hook_shell`]), so no shell ever runs.
//!
//! The pre-xfer hook turns the in-band request (`RSYNC_ARG*`, module-
//! relative) into a request through the same parser as checked mode,
//! evaluates it through the same front half, writes its audit line, and
//! vetoes by exiting non-zero with the reason on stdout (which rsync shows
//! the client). The post-xfer hook records the exit status. Every input is
//! data: the command line from the generated config and rsync's
//! variables.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::time::SystemTime;

use super::evaluate::{self, Evaluation, Inputs};
use super::session::{session_id, source};
use crate::audit::{self, AuditLog, Event, Mirrors, Reason, Record, Verdict};
use crate::decide::RsyncCaps;
use crate::deny::DenyReason;
use crate::host::{self, Account};
use crate::plan::daemon::{ROOT_ALIAS_ENV, SANDBOX_ENV, SESSION_ENV};
use crate::policy::{self, LoadError};
use crate::request::conn::Connection;
use crate::request::{self, Request, inband};

/// Which daemon hook is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    PreXfer,
    PostXfer,
}

/// `rsync-gate -c COMMAND`: the gate standing in for the shell rsync runs
/// its daemon hooks with. Only the hook command lines the gate writes into
/// its generated configs are accepted; anything else is refused.
pub fn hook_shell(command: &[u8]) -> u8 {
    match hook_line(command) {
        Some((which, policy, client)) => hook(
            which,
            Path::new(std::ffi::OsStr::from_bytes(&policy)),
            &client,
        ),
        None => {
            let _ = writeln!(
                std::io::stderr().lock(),
                "rsync-gate: denied: not a hook command line"
            );
            127
        }
    }
}

/// A hook command line as the gate writes it into a generated config:
/// `/ABSOLUTE/GATE hook pre-xfer|post-xfer --policy PATH --client NAME`,
/// split like every command (no shell), no word a shell would expand.
/// The hook, the policy path and the client; None for anything else.
pub fn hook_line(command: &[u8]) -> Option<(Hook, Vec<u8>, String)> {
    let words = request::split::split(command).ok()?;
    // The gate writes no word a shell would expand.
    if words.iter().any(|w| w.glob.is_some() || w.tilde) {
        return None;
    }
    let w: Vec<&[u8]> = words.iter().map(|w| &w.bytes[..]).collect();
    let [
        prog,
        b"hook",
        which,
        b"--policy",
        policy,
        b"--client",
        client,
    ] = w.as_slice()
    else {
        return None;
    };
    if !prog.starts_with(b"/") {
        return None;
    }
    let which = match *which {
        b"pre-xfer" => Hook::PreXfer,
        b"post-xfer" => Hook::PostXfer,
        _ => return None,
    };
    let client = std::str::from_utf8(client).ok()?;
    if !policy::valid_name(client) {
        return None;
    }
    Some((which, policy.to_vec(), client.to_string()))
}

/// What a hook reads from rsync's environment.
#[derive(Debug, Clone, Default)]
pub struct HookEnv {
    pub module: String,
    pub args: Vec<Vec<u8>>,
    pub request: Option<Vec<u8>>,
    pub rsync_pid: Option<u32>,
    pub session: Option<String>,
    pub sandboxed: bool,
    /// The session's [`crate::trust::root_alias`].
    pub root_alias: Option<u32>,
    pub exit_status: Option<i32>,
    pub connection: Option<OsString>,
}

impl HookEnv {
    /// Read the variables rsync sets for its hooks (and the two the gate
    /// set for the daemon, which rsync passes on).
    pub fn from_process() -> HookEnv {
        HookEnv::from_vars(|k| std::env::var_os(k))
    }

    /// The same, from `get`.
    pub fn from_vars(get: impl Fn(&str) -> Option<OsString>) -> HookEnv {
        let text = |k: &str| get(k).map(|v| v.to_string_lossy().into_owned());
        let mut args = Vec::new();
        for i in 0..100_000 {
            match get(&format!("RSYNC_ARG{i}")) {
                Some(v) => args.push(v.into_vec()),
                None => break,
            }
        }
        HookEnv {
            module: text("RSYNC_MODULE_NAME").unwrap_or_default(),
            args,
            request: get("RSYNC_REQUEST").map(OsString::into_vec),
            rsync_pid: text("RSYNC_PID").and_then(|p| p.parse().ok()),
            session: text(SESSION_ENV),
            sandboxed: text(SANDBOX_ENV).as_deref() == Some("1"),
            root_alias: text(ROOT_ALIAS_ENV).and_then(|v| v.parse().ok()),
            exit_status: text("RSYNC_EXIT_STATUS").and_then(|p| p.parse().ok()),
            connection: get("SSH_CONNECTION"),
        }
    }
}

/// `rsync-gate hook pre-xfer|post-xfer`.
pub fn hook(which: Hook, policy_path: &Path, client: &str) -> u8 {
    let env = HookEnv::from_process();
    // Judge files as the session did (the sandbox keeps /proc from us).
    crate::trust::adopt_root_alias(env.root_alias);
    // rsync shows the hook's stdout to the client.
    run_hook(
        which,
        policy_path,
        client,
        &env,
        &mut std::io::stdout().lock(),
    )
}

/// A hook with its variables: the exit status rsync gets (non-zero
/// vetoes the transfer), and the reason for a veto written to `shown`.
pub fn run_hook(
    which: Hook,
    policy_path: &Path,
    client: &str,
    env: &HookEnv,
    shown: &mut dyn Write,
) -> u8 {
    let mut veto = |reason: &DenyReason| {
        let _ = writeln!(shown, "{}", reason.line());
        1
    };
    let policy = match policy::index::load_session(policy_path, client).0 {
        Ok(p) => p,
        Err(e) if which == Hook::PreXfer => {
            return veto(&match e {
                LoadError::Unsafe(e) => DenyReason::PolicyUnsafe(e.to_string()),
                LoadError::Invalid(e) => DenyReason::PolicyInvalid(e.to_string()),
            });
        }
        Err(_) => return 0,
    };
    let mut log = match AuditLog::open_checked(&policy.gate.audit_log) {
        Ok(l) => l,
        Err(e) if which == Hook::PreXfer => return veto(&DenyReason::AuditUnavailable(e)),
        Err(_) => return 0,
    };
    let conn = env
        .connection
        .as_ref()
        .and_then(|c| Connection::parse(c.as_bytes()));
    let mut r = Record {
        time: audit::rfc3339(SystemTime::now()),
        session: env
            .session
            .clone()
            .unwrap_or_else(|| session_id(SystemTime::now())),
        client: client.to_string(),
        source: source(conn.as_ref()),
        modules: vec![env.module.clone()],
        pid: env.rsync_pid,
        request: env.request.as_ref().map(|r| audit::escape(r)),
        ..Default::default()
    };
    let code = match which {
        Hook::PostXfer => {
            r.event = Event::End;
            r.exit_status = env.exit_status;
            0
        }
        Hook::PreXfer => {
            r.event = Event::Decision;
            r.argv = env.args.iter().map(|a| audit::escape(a)).collect();
            let request = inband::parse(&env.module, &env.args).map(Request::InBand);
            r.mode = evaluate::requested_mode(request.as_ref());
            if policy.clients.get(client).is_some_and(|c| c.learn) {
                r.learn = Some(evaluate::learned(&policy, request.as_ref()));
            }
            let account = Account::current();
            let gate = host::gate_binary();
            let inputs = Inputs {
                policy: &policy,
                policy_path,
                client,
                conn: conn.as_ref(),
                account: &account,
                // The daemon takes no options from the gate.
                caps: RsyncCaps::default(),
                // The session applied the sandbox around the daemon (and so
                // around this hook) or did not.
                landlock: env.sandboxed,
                gate: &gate,
                session: &r.session,
            };
            match evaluate::evaluate(&inputs, request.as_ref()) {
                Evaluation::InBand(g) => {
                    r.decision = Some(Verdict::Allow);
                    r.mode = Some(g.mode);
                    r.notes = g.notes;
                    0
                }
                Evaluation::Refused(refusal) => {
                    r.decision = Some(Verdict::Deny);
                    r.reason = Some(Reason::from(&refusal.reason));
                    veto(&refusal.reason)
                }
                other => {
                    let reason =
                        DenyReason::Internal(format!("unexpected in-band evaluation {other:?}"));
                    r.decision = Some(Verdict::Deny);
                    r.reason = Some(Reason::from(&reason));
                    veto(&reason)
                }
            }
        }
    };
    Mirrors::connect(policy.gate.syslog, policy.gate.journald).send(&r);
    if let Err(e) = log.write(&r)
        && which == Hook::PreXfer
    {
        return veto(&DenyReason::AuditUnavailable(e.to_string()));
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_gates_own_hook_lines_are_run() {
        let ok = |which: Hook| {
            Some((
                which,
                b"/etc/rsync-gate/policy.toml".to_vec(),
                "c1".to_string(),
            ))
        };
        for (line, want) in [
            (
                &b"/usr/bin/rsync-gate hook pre-xfer --policy /etc/rsync-gate/policy.toml --client c1"[..],
                ok(Hook::PreXfer),
            ),
            (
                b"/usr/bin/rsync-gate hook post-xfer --policy /etc/rsync-gate/policy.toml --client c1",
                ok(Hook::PostXfer),
            ),
            // Quoted as the generated config quotes it.
            (
                b"'/usr/bin/rsync-gate' hook pre-xfer --policy '/etc/rsync-gate/policy.toml' --client c1",
                ok(Hook::PreXfer),
            ),
            (b"rsync-gate hook pre-xfer --policy /etc/rsync-gate/policy.toml --client c1", None),
            (b"/usr/bin/rsync-gate hook mid-xfer --policy /etc/rsync-gate/policy.toml --client c1", None),
            (b"/usr/bin/rsync-gate hooks pre-xfer --policy /etc/rsync-gate/policy.toml --client c1", None),
            (b"/usr/bin/rsync-gate hook pre-xfer --client c1 --policy /etc/rsync-gate/policy.toml", None),
            (b"/usr/bin/rsync-gate hook pre-xfer --policy /etc/rsync-gate/policy.toml --client c1 x", None),
            (b"/usr/bin/rsync-gate hook pre-xfer --policy /etc/rsync-gate/*.toml --client c1", None),
            (b"/usr/bin/rsync-gate hook pre-xfer --policy ~/policy.toml --client c1", None),
            (b"/usr/bin/rsync-gate hook pre-xfer --policy /etc/rsync-gate/policy.toml --client 'c 1'", None),
            (b"/usr/bin/rsync-gate hook pre-xfer --policy /etc/rsync-gate/policy.toml --client c\xff", None),
            (b"/usr/bin/rsync-gate hook pre-xfer --policy /p.toml --client c1; rm -rf /", None),
            (b"/usr/bin/rsync-gate hook pre-xfer --policy /p.toml --client 'c1", None),
            (b"", None),
        ] {
            assert_eq!(hook_line(line), want, "{}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn the_hooks_variables_are_read_as_rsync_sets_them() {
        let vars = |pairs: &[(&str, &str)]| {
            let pairs: Vec<(String, OsString)> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), OsString::from(v)))
                .collect();
            HookEnv::from_vars(move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
        };
        let env = vars(&[
            ("RSYNC_MODULE_NAME", "www"),
            ("RSYNC_ARG0", "rsyncd"),
            ("RSYNC_ARG1", "--server"),
            ("RSYNC_ARG2", "."),
            // A gap ends the list.
            ("RSYNC_ARG4", "late"),
            ("RSYNC_REQUEST", "www/a b"),
            ("RSYNC_PID", "4242"),
            (SESSION_ENV, "18ed3-7"),
            (SANDBOX_ENV, "1"),
            (ROOT_ALIAS_ENV, "100000"),
            ("RSYNC_EXIT_STATUS", "23"),
            ("SSH_CONNECTION", "192.0.2.7 50000 192.0.2.1 22"),
        ]);
        assert_eq!(env.module, "www");
        assert_eq!(
            env.args,
            [b"rsyncd".to_vec(), b"--server".to_vec(), b".".to_vec()]
        );
        assert_eq!(env.request.as_deref(), Some(&b"www/a b"[..]));
        assert_eq!(env.rsync_pid, Some(4242));
        assert_eq!(env.session.as_deref(), Some("18ed3-7"));
        assert!(env.sandboxed);
        assert_eq!(env.root_alias, Some(100_000));
        assert_eq!(env.exit_status, Some(23));
        assert_eq!(
            env.connection.as_deref(),
            Some(std::ffi::OsStr::new("192.0.2.7 50000 192.0.2.1 22"))
        );
        // Only "1" says the sandbox is there; numbers that do not parse
        // are absent.
        for sandbox in ["0", "yes", "", "11"] {
            assert!(!vars(&[(SANDBOX_ENV, sandbox)]).sandboxed, "{sandbox}");
        }
        let env = vars(&[("RSYNC_PID", "x"), ("RSYNC_EXIT_STATUS", "")]);
        assert_eq!((env.rsync_pid, env.exit_status), (None, None));
        assert!(env.args.is_empty() && env.module.is_empty());
    }

    /// A policy and audit log in a directory of their own; module `www`
    /// (writable) in a directory named otherwise.
    struct World {
        _dir: tempfile::TempDir,
        root: std::path::PathBuf,
        policy: std::path::PathBuf,
    }

    impl World {
        fn new(learn: bool) -> World {
            let dir = tempfile::tempdir().unwrap();
            let root = std::fs::canonicalize(dir.path()).unwrap();
            std::fs::create_dir_all(root.join("srv/site-2026/sub")).unwrap();
            std::fs::create_dir_all(root.join("log")).unwrap();
            let policy = root.join("policy.toml");
            std::fs::write(
                &policy,
                format!(
                    "[gate]\naudit_log = \"{r}/log/audit.jsonl\"\nlock_dir = \"{r}/run\"\n\n\
                     [modules.www]\npath = \"{r}/srv/site-2026\"\n\n\
                     [clients.c1]\nmodules = [\"www\"]\nlearn = {learn}\n",
                    r = root.display()
                ),
            )
            .unwrap();
            World {
                _dir: dir,
                root,
                policy,
            }
        }

        fn env(&self, args: &[&str]) -> HookEnv {
            HookEnv {
                module: "www".into(),
                args: args.iter().map(|a| a.as_bytes().to_vec()).collect(),
                request: Some(b"www/sub/".to_vec()),
                rsync_pid: Some(4242),
                session: Some("18ed3-7".into()),
                connection: Some("192.0.2.7 50000 192.0.2.1 22".into()),
                ..Default::default()
            }
        }

        fn run(&self, which: Hook, env: &HookEnv) -> (u8, String) {
            let mut shown = Vec::new();
            let code = run_hook(which, &self.policy, "c1", env, &mut shown);
            (code, String::from_utf8(shown).unwrap())
        }

        fn records(&self) -> Vec<Record> {
            std::fs::read_to_string(self.root.join("log/audit.jsonl"))
                .unwrap_or_default()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        }
    }

    const PULL: &[&str] = &["rsyncd", "--server", "--sender", "-r", ".", "sub/"];
    const PUSH: &[&str] = &["rsyncd", "--server", "-r", ".", "sub/"];

    #[test]
    fn pre_xfer_allows_a_request_the_policy_grants_and_records_it() {
        let w = World::new(false);
        assert_eq!(w.run(Hook::PreXfer, &w.env(PULL)), (0, String::new()));
        let [r] = w.records().try_into().unwrap();
        assert_eq!(r.event, Event::Decision);
        assert_eq!(r.decision, Some(Verdict::Allow));
        assert_eq!(r.mode, Some(audit::Mode::Sender));
        assert_eq!((r.session.as_str(), r.client.as_str()), ("18ed3-7", "c1"));
        assert_eq!(r.modules, ["www"]);
        assert_eq!(r.argv, PULL);
        assert_eq!(r.pid, Some(4242));
        assert_eq!(r.request.as_deref(), Some("www/sub/"));
        assert_eq!(r.source.map(|s| s.addr), Some("192.0.2.7".into()));
        assert!(!r.time.is_empty());
        assert_eq!(r.learn, None);
    }

    #[test]
    fn pre_xfer_vetoes_what_the_policy_refuses_and_says_why() {
        let w = World::new(true);
        // `www` is read-only.
        let (code, shown) = w.run(Hook::PreXfer, &w.env(PUSH));
        assert_eq!(code, 1);
        assert_eq!(shown, "rsync-gate: denied: module 'www' is read-only\n");
        let [r] = w.records().try_into().unwrap();
        assert_eq!(r.decision, Some(Verdict::Deny));
        assert_eq!(r.reason.map(|r| r.code), Some("read_only".into()));
        assert_eq!(r.mode, Some(audit::Mode::Receiver));
        // A learn client's record says what the request asked for.
        assert_eq!(r.learn.map(|l| l.modules), Some(vec!["www".to_string()]));
        // Without the gate's session variable, a session id of its own.
        let env = HookEnv {
            session: None,
            ..w.env(PULL)
        };
        assert_eq!(w.run(Hook::PreXfer, &env).0, 0);
        let records = w.records();
        let s = &records[1].session;
        assert!(!s.is_empty() && s != "18ed3-7", "{s}");
    }

    #[test]
    fn post_xfer_records_the_exit_status_and_never_vetoes() {
        let w = World::new(false);
        let env = HookEnv {
            exit_status: Some(23),
            ..w.env(PUSH)
        };
        assert_eq!(w.run(Hook::PostXfer, &env), (0, String::new()));
        let [r] = w.records().try_into().unwrap();
        assert_eq!(r.event, Event::End);
        assert_eq!(r.exit_status, Some(23));
        assert_eq!(r.decision, None);
        assert!(r.argv.is_empty());
    }

    #[test]
    fn without_a_policy_or_a_log_pre_xfer_vetoes_and_post_xfer_lets_go() {
        let w = World::new(false);
        std::fs::remove_file(&w.policy).unwrap();
        let (code, shown) = w.run(Hook::PreXfer, &w.env(PULL));
        assert_eq!(code, 1);
        assert!(shown.starts_with("rsync-gate: denied: "), "{shown}");
        assert_eq!(w.run(Hook::PostXfer, &w.env(PULL)), (0, String::new()));
        // The log's directory is writable by others: unusable.
        let w = World::new(false);
        std::fs::set_permissions(
            w.root.join("log"),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        let (code, shown) = w.run(Hook::PreXfer, &w.env(PULL));
        assert_eq!(code, 1);
        assert!(
            shown.starts_with("rsync-gate: denied: ") && shown.contains("audit"),
            "{shown}"
        );
        assert_eq!(w.run(Hook::PostXfer, &w.env(PULL)), (0, String::new()));
        assert!(w.records().is_empty());
    }
}
