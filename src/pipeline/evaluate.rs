//! The one front half of the pipeline: (policy, client, connection, what
//! confines rsync, the request) → a refusal or a planned, not yet executed,
//! grant. `serve`, `explain`, the daemon's pre-xfer hook, the fuzz targets
//! and the property tests all come through here; nothing else builds a
//! [`decide::Context`].
//!
//! ```text
//! request ─ decide ─┬─ Probe
//!                   ├─ Checked grant ─ confine (resolve, pin) ─ plan::checked ─ Run
//!                   ├─ Daemon grant ── check module roots ───── plan::daemon ── Run
//!                   ├─ In-band grant ─ confine (resolve only) ─────────────── InBand
//!                   └─ Deny ───────────────────────────────────────────────── Refused
//! ```

use std::path::Path;

use crate::audit::Mode;
use crate::confine::{self, Account};
use crate::decide::trace::Stage;
use crate::decide::{self, Context, Decision, NoTrace, RsyncCaps, Server, Step, Tracer};
use crate::deny::DenyReason;
use crate::plan::{self, ExecPlan};
use crate::policy::{Policy, Sandbox};
use crate::request::conn::Connection;
use crate::request::{ParseError, Request};

/// Everything a decision and its plan depend on besides the request.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub policy: &'a Policy,
    /// The policy file as named on the command line (for the daemon
    /// hooks' command lines).
    pub policy_path: &'a Path,
    pub client: &'a str,
    pub conn: Option<&'a Connection>,
    pub account: &'a Account,
    /// The installed rsync's capabilities (checked mode).
    pub caps: RsyncCaps,
    /// The kernel offers Landlock (in a daemon hook: the session applied it).
    pub landlock: bool,
    /// The gate binary (for the daemon hooks' command lines).
    pub gate: &'a Path,
    /// The session id (handed to the daemon hooks).
    pub session: &'a str,
}

impl Inputs<'_> {
    /// Will the kernel sandbox be around rsync?
    pub fn sandbox(&self) -> bool {
        self.policy.gate.sandbox != Sandbox::Off && self.landlock
    }

    fn context(&self) -> Context<'_> {
        Context {
            policy: self.policy,
            client: self.client,
            conn: self.conn.map(|c| c.client),
            server: Server {
                caps: self.caps,
                sandbox: self.sandbox(),
            },
        }
    }
}

/// The outcome of the front half.
#[derive(Debug)]
pub enum Evaluation {
    Refused(Refusal),
    /// `true`: succeed, run nothing.
    Probe,
    /// Run this plan.
    Run(Box<Run>),
    /// A daemon session's in-band request may proceed (the daemon runs it).
    InBand(InBandGrant),
    /// Start (or queue) a trigger's job.
    Trigger(Box<crate::plan::trigger::TriggerPlan>),
}

/// A refusal and what it concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: DenyReason,
    pub mode: Option<Mode>,
    pub modules: Vec<String>,
    /// A refused trigger: its name and the words (when within bounds).
    pub trigger: Option<crate::audit::TriggerInfo>,
}

impl Refusal {
    /// A refusal of anything but a trigger.
    pub fn new(reason: DenyReason, mode: Option<Mode>, modules: Vec<String>) -> Refusal {
        Refusal {
            reason,
            mode,
            modules,
            trigger: None,
        }
    }
}

/// A granted request and its plan.
#[derive(Debug)]
pub struct Run {
    pub mode: Mode,
    pub modules: Vec<String>,
    pub plan: ExecPlan,
    /// The checked-mode grant the plan was made from.
    pub grant: Option<decide::Grant>,
    /// The generated rsyncd.conf (daemon sessions).
    pub config: Option<String>,
    /// Daemon sessions: the client's modules left out of the config as
    /// unsafe to serve, with the refusal checked mode gives for each.
    pub left_out: Vec<DenyReason>,
}

/// An in-band request the hook lets through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InBandGrant {
    pub mode: Mode,
    pub module: String,
    pub notes: Vec<String>,
}

/// Is the client known, and does it connect from where it may? (Checked
/// before the gate waits for `-s` arguments on stdin.)
pub fn admit(i: &Inputs<'_>) -> Result<(), DenyReason> {
    decide::admit(&i.context()).map(|_| ())
}

/// The mode a request asks for, as far as it parsed.
pub fn requested_mode(request: Result<&Request, &ParseError>) -> Option<Mode> {
    match request {
        Ok(Request::Server(a)) if a.sender => Some(Mode::Sender),
        Ok(Request::Server(_)) => Some(Mode::Receiver),
        Ok(Request::InBand(ib)) if ib.args.sender => Some(Mode::Sender),
        Ok(Request::InBand(_)) => Some(Mode::Receiver),
        Ok(Request::Daemon { .. }) => Some(Mode::Daemon),
        _ => None,
    }
}

/// What a learn client's request asked for (its decision records carry
/// it, see [`crate::audit::Learned`]): the modules its paths name, the
/// option rows it used, its paths. Whatever the decision; it grants
/// nothing. Empty for requests that are not rsync transfers (or did not
/// parse).
pub fn learned(policy: &Policy, request: Result<&Request, &ParseError>) -> crate::audit::Learned {
    use crate::request::options::{Takes, Value};
    use crate::request::{OptValue, ServerArgs};
    let mut l = crate::audit::Learned::default();
    let server = |args: &ServerArgs, l: &mut crate::audit::Learned| {
        for o in &args.opts {
            if o.spec.takes == Takes::Value(Value::Capabilities) {
                continue;
            }
            l.add_option(o.spec.long);
            if let Some(OptValue::Path(w)) = &o.value
                && w.bytes.starts_with(b"/")
                && let Some(m) = decide::module_named(policy, w)
            {
                l.add_module(m);
            }
        }
        for w in &args.paths {
            if let Some(m) = decide::module_named(policy, w) {
                l.add_module(m);
            }
            l.add_path(&w.bytes);
        }
    };
    match request {
        Ok(Request::Server(args)) => server(args, &mut l),
        Ok(Request::InBand(ib)) => {
            // In-band paths are relative to the module the client named.
            l.add_module(ib.module.clone());
            for o in &ib.args.opts {
                if o.spec.takes != Takes::Value(Value::Capabilities) {
                    l.add_option(o.spec.long);
                }
            }
            for w in &ib.args.paths {
                l.add_path(&w.bytes);
            }
        }
        _ => {}
    }
    l
}

/// What the audit record says of a refused trigger: the client's trigger
/// and its words, unless there are too many or too long to record.
fn refused_trigger(
    i: &Inputs<'_>,
    request: Result<&Request, &ParseError>,
) -> Option<crate::audit::TriggerInfo> {
    use crate::policy::{MAX_TRIGGER_WORD, MAX_TRIGGER_WORDS};
    let name = i.policy.clients.get(i.client)?.trigger.clone()?;
    let words = match request {
        Ok(Request::Other { words })
            if words.len() <= MAX_TRIGGER_WORDS
                && words.iter().all(|w| w.bytes.len() <= MAX_TRIGGER_WORD) =>
        {
            words
                .iter()
                .map(|w| crate::audit::escape(&w.bytes))
                .collect()
        }
        _ => Vec::new(),
    };
    Some(crate::audit::TriggerInfo {
        name,
        words,
        state: Some(crate::audit::TriggerState::Refused),
        ..Default::default()
    })
}

/// The decision stage alone (pure: no filesystem). [`evaluate`] starts
/// with it; the fuzz target that has no real tree stops after it.
pub fn decision(i: &Inputs<'_>, request: Result<&Request, &ParseError>) -> Decision {
    decide::decide(&i.context(), request)
}

/// [`decision`], with its trace ([`decide::decide_traced`]).
pub fn decision_traced(
    i: &Inputs<'_>,
    request: Result<&Request, &ParseError>,
    trace: &mut Vec<Step>,
) -> Decision {
    decide::decide_traced(&i.context(), request, trace)
}

/// Decide, confine and plan.
pub fn evaluate(i: &Inputs<'_>, request: Result<&Request, &ParseError>) -> Evaluation {
    evaluate_with(i, request, &mut NoTrace)
}

/// [`evaluate`], recording every rule that applied (the decision's, then
/// the module roots and each path's resolution), ending in the outcome
/// ([`Step::Decision`], [`Stage::Final`]).
pub fn evaluate_traced(
    i: &Inputs<'_>,
    request: Result<&Request, &ParseError>,
    trace: &mut Vec<Step>,
) -> Evaluation {
    let e = evaluate_with(i, request, trace);
    trace.push(outcome(&e));
    e
}

/// The final [`Step::Decision`] of an evaluation.
fn outcome(e: &Evaluation) -> Step {
    let (allowed, code, summary) = match e {
        Evaluation::Refused(r) => (
            false,
            Some(r.reason.code().to_string()),
            r.reason.to_string(),
        ),
        Evaluation::Probe => (
            true,
            None,
            "'true' succeeds without running anything".into(),
        ),
        Evaluation::Run(run) => (
            true,
            None,
            format!(
                "rsync runs as a {} ({})",
                run.mode.name(),
                if run.config.is_some() {
                    "a daemon over the SSH channel"
                } else {
                    "with the argv above"
                }
            ),
        ),
        Evaluation::InBand(g) => (
            true,
            None,
            format!(
                "the daemon runs the request as a {} in module '{}'",
                g.mode.name(),
                g.module
            ),
        ),
        Evaluation::Trigger(p) => (true, None, format!("trigger '{}' fires", p.name)),
    };
    Step::Decision {
        stage: Stage::Final,
        allowed,
        code,
        summary,
    }
}

fn evaluate_with<T: Tracer>(
    i: &Inputs<'_>,
    request: Result<&Request, &ParseError>,
    t: &mut T,
) -> Evaluation {
    let refuse = |reason: DenyReason, mode: Option<Mode>, modules: Vec<String>| {
        Evaluation::Refused(Refusal::new(reason, mode, modules))
    };
    match decide::decide_with(&i.context(), request, t) {
        Decision::Deny(reason) => {
            let modules = reason
                .module()
                .map(|m| vec![m.to_string()])
                .unwrap_or_default();
            match reason {
                DenyReason::TriggerWordRefused { .. } | DenyReason::TriggerTooLarge(_) => {
                    Evaluation::Refused(Refusal {
                        trigger: refused_trigger(i, request),
                        reason,
                        mode: Some(Mode::Trigger),
                        modules,
                    })
                }
                _ => refuse(reason, requested_mode(request), modules),
            }
        }
        Decision::Trigger(g) => match i.policy.triggers.get(&g.trigger) {
            Some(t) => Evaluation::Trigger(Box::new(plan::trigger::plan(
                t,
                &g,
                i.account,
                &i.policy.gate.lock_dir,
            ))),
            None => refuse(
                DenyReason::Internal(format!("trigger '{}' is not defined", g.trigger)),
                Some(Mode::Trigger),
                vec![],
            ),
        },
        Decision::Probe => Evaluation::Probe,
        Decision::Checked(g) => {
            let mode = Mode::from(g.mode);
            let modules = vec![g.module.clone()];
            match checked(i, &g, t) {
                Ok(plan) => Evaluation::Run(Box::new(Run {
                    mode,
                    modules,
                    plan,
                    grant: Some(g),
                    config: None,
                    left_out: Vec::new(),
                })),
                Err(reason) => refuse(reason, Some(mode), modules),
            }
        }
        Decision::Daemon(d) => match daemon(i, &d, t) {
            Ok((plan, text, left_out)) => Evaluation::Run(Box::new(Run {
                mode: Mode::Daemon,
                modules: d.modules,
                plan,
                grant: None,
                config: Some(text),
                left_out,
            })),
            Err(reason) => refuse(reason, Some(Mode::Daemon), d.modules),
        },
        Decision::InBand(g) => {
            let mode = Mode::from(g.mode);
            match in_band(i, &g, t) {
                Ok(notes) => Evaluation::InBand(InBandGrant {
                    mode,
                    module: g.module,
                    notes,
                }),
                Err(reason) => refuse(reason, Some(mode), vec![g.module]),
            }
        }
    }
}

/// Refuse up front when the policy requires a sandbox the kernel lacks.
fn require_sandbox<T: Tracer>(i: &Inputs<'_>, t: &mut T) -> Result<(), DenyReason> {
    if i.policy.gate.sandbox == Sandbox::Required && !i.landlock {
        t.step(|| Step::Rule {
            rule: "[gate] sandbox = \"required\", and the kernel does not offer Landlock".into(),
            knob: None,
            allowed: false,
        });
        return Err(DenyReason::SandboxUnavailable(
            "the kernel does not offer Landlock".into(),
        ));
    }
    Ok(())
}

fn checked<T: Tracer>(
    i: &Inputs<'_>,
    g: &decide::Grant,
    t: &mut T,
) -> Result<ExecPlan, DenyReason> {
    require_sandbox(i, t)?;
    let module = i
        .policy
        .modules
        .get(&g.module)
        .ok_or_else(|| DenyReason::ModuleNotAvailable(g.module.clone()))?;
    let confined = confine::confine_with(
        g,
        module,
        i.account,
        &i.policy.protected_paths(i.gate),
        &confine::link_writable_roots(i.policy),
        t,
    )?;
    let plan = plan::checked::plan(plan::checked::Inputs {
        policy: i.policy,
        module,
        grant: g,
        confined,
        account: i.account,
        conn: i.conn,
        sandbox: i.sandbox(),
        session: i.session,
    });
    // A large wildcard expansion must not get as far as execve(2) failing
    // with E2BIG: refuse it, saying why.
    let (bytes, longest) = plan.exec_size();
    let limit = crate::host::exec_limit();
    if !crate::host::execve_takes(bytes, longest, limit) {
        t.step(|| Step::Rule {
            rule: format!("{bytes} bytes of arguments, more than execve(2) takes ({limit})"),
            knob: None,
            allowed: false,
        });
        return Err(DenyReason::ArgumentsTooLong { bytes, limit });
    }
    Ok(plan)
}

fn daemon<T: Tracer>(
    i: &Inputs<'_>,
    d: &decide::DaemonGrant,
    t: &mut T,
) -> Result<(ExecPlan, String, Vec<DenyReason>), DenyReason> {
    require_sandbox(i, t)?;
    let names: &[String] = &d.modules;
    let mut notes = Vec::new();
    let mut left_out = Vec::new();
    let modules = confine::check_modules(
        i.policy,
        names,
        i.account,
        &i.policy.protected_paths(i.gate),
        &mut notes,
        &mut left_out,
    );
    let traced = if t.enabled() { names } else { &[] };
    for name in traced {
        let kept = modules.iter().find(|(m, _)| m.name == *name);
        t.step(|| Step::ModuleRoot {
            module: name.clone(),
            root: match (kept, i.policy.modules.get(name)) {
                (Some((_, real)), _) => real.display().to_string(),
                (None, Some(m)) => m.path.display().to_string(),
                (None, None) => String::new(),
            },
            allowed: kept.is_some(),
        });
    }
    if modules.is_empty() {
        return Err(DenyReason::NoModules);
    }
    let gate = std::fs::canonicalize(i.gate).unwrap_or_else(|_| i.gate.to_path_buf());
    let policy_path =
        std::fs::canonicalize(i.policy_path).unwrap_or_else(|_| i.policy_path.to_path_buf());
    let (mut plan, text) = plan::daemon::plan(plan::daemon::Inputs {
        policy: i.policy,
        config: plan::daemon::ConfigContext {
            gate: &gate,
            policy_path: &policy_path,
            client: i.client,
            account: i.account,
            account_gid: nix::unistd::getegid().as_raw(),
        },
        modules: &modules,
        conn: i.conn,
        session: i.session,
        sandbox: i.sandbox(),
        priority: d.priority,
    })
    .map_err(DenyReason::Internal)?;
    if let Some(alias) = crate::trust::root_alias() {
        plan.env.push((
            plan::daemon::ROOT_ALIAS_ENV.into(),
            alias.to_string().into(),
        ));
    }
    notes.append(&mut plan.notes);
    plan.notes = notes;
    Ok((plan, text, left_out))
}

/// An in-band request: every path resolved physically as in checked mode
/// (symlinks followed, escapes refused); nothing is created or handed on.
fn in_band<T: Tracer>(
    i: &Inputs<'_>,
    g: &decide::Grant,
    t: &mut T,
) -> Result<Vec<String>, DenyReason> {
    let module = i
        .policy
        .modules
        .get(&g.module)
        .ok_or_else(|| DenyReason::ModuleNotAvailable(g.module.clone()))?;
    let confined = confine::confine_with(
        g,
        module,
        i.account,
        &i.policy.protected_paths(i.gate),
        &confine::link_writable_roots(i.policy),
        t,
    )?;
    Ok(confined.notes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::conn::Connection;
    use crate::request::{inband, parse_command};

    #[test]
    fn the_mode_a_request_asks_for() {
        let checked = |c: &[u8]| requested_mode(parse_command(c).as_ref());
        assert_eq!(
            checked(b"rsync --server --sender -r . www/"),
            Some(Mode::Sender)
        );
        assert_eq!(checked(b"rsync --server -r . www/"), Some(Mode::Receiver));
        assert_eq!(checked(b"rsync --server --daemon ."), Some(Mode::Daemon));
        assert_eq!(checked(b"true"), None);
        assert_eq!(checked(b"ls /"), None);
        assert_eq!(checked(b"rsync --server --no-such-option . www/"), None);
        let argv = |a: &[&str]| a.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();
        let in_band = |a: &[&str]| {
            requested_mode(inband::parse("www", &argv(a)).map(Request::InBand).as_ref())
        };
        assert_eq!(
            in_band(&["rsyncd", "--server", "--sender", "-r", ".", "www/"]),
            Some(Mode::Sender)
        );
        assert_eq!(
            in_band(&["rsyncd", "--server", "-r", ".", "www/"]),
            Some(Mode::Receiver)
        );
    }

    #[test]
    fn the_sandbox_is_around_rsync_only_where_the_policy_and_kernel_both_have_it() {
        let policy = |sandbox: &str| {
            crate::policy::load_text(
                Path::new("/p.toml"),
                &format!("[gate]\nsandbox = \"{sandbox}\"\n"),
            )
            .expect("a policy")
        };
        for (sandbox, landlock, want) in [
            ("required", true, true),
            ("best-effort", true, true),
            ("off", true, false),
            ("best-effort", false, false),
            ("off", false, false),
        ] {
            let p = policy(sandbox);
            let account = Account {
                uid: 0,
                name: "root".into(),
                home: None,
            };
            let i = Inputs {
                policy: &p,
                policy_path: Path::new("/p.toml"),
                client: "c",
                conn: None,
                account: &account,
                caps: RsyncCaps::default(),
                landlock,
                gate: Path::new("/usr/bin/rsync-gate"),
                session: "s",
            };
            assert_eq!(i.sandbox(), want, "{sandbox} {landlock}");
        }
    }

    /// A tree like a server's: the module `www` lives in a directory not
    /// named after it; a second module's directory is missing.
    struct World {
        _dir: tempfile::TempDir,
        root: std::path::PathBuf,
        policy: Policy,
        account: Account,
    }

    impl World {
        fn new(sandbox: &str) -> World {
            let dir = tempfile::tempdir().unwrap();
            let root = std::fs::canonicalize(dir.path()).unwrap();
            std::fs::create_dir_all(root.join("data/site-2026/sub")).unwrap();
            std::fs::write(root.join("data/site-2026/sub/a.txt"), "a").unwrap();
            let text = format!(
                "[gate]\nsandbox = \"{sandbox}\"\n\n\
                 [modules.www]\npath = \"{r}/data/site-2026\"\nread_only = false\n\n\
                 [modules.gone]\npath = \"{r}/data/removed\"\n\n\
                 [clients.c]\nmodules = [\"www\", \"gone\"]\nfrom = [\"192.0.2.0/24\"]\n\n\
                 [clients.t]\ntrigger = \"sync\"\n\n\
                 [triggers.sync]\ncommand = [\"/bin/true\"]\nargs = [\"sync:*\"]\n",
                r = root.display()
            );
            let policy = crate::policy::load_text(Path::new("/p.toml"), &text).unwrap();
            let account = Account {
                uid: nix::unistd::geteuid().as_raw(),
                name: "test".into(),
                home: Some("/nonexistent-home".into()),
            };
            World {
                _dir: dir,
                root,
                policy,
                account,
            }
        }

        fn with<R>(
            &self,
            client: &str,
            from: &str,
            landlock: bool,
            f: impl FnOnce(&Inputs<'_>) -> R,
        ) -> R {
            let conn = Connection::parse(format!("{from} 50000 192.0.2.1 22").as_bytes());
            let i = Inputs {
                policy: &self.policy,
                policy_path: Path::new("/p.toml"),
                client,
                conn: conn.as_ref(),
                account: &self.account,
                caps: RsyncCaps {
                    confine_root: true,
                    drop_d: true,
                },
                landlock,
                gate: Path::new("/usr/bin/rsync-gate"),
                session: "s1",
            };
            f(&i)
        }

        fn evaluate(&self, client: &str, landlock: bool, command: &str) -> Evaluation {
            self.with(client, "192.0.2.7", landlock, |i| {
                evaluate(i, parse_command(command.as_bytes()).as_ref())
            })
        }
    }

    fn refused(e: Evaluation) -> Refusal {
        match e {
            Evaluation::Refused(r) => r,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn admitted_by_name_and_address() {
        let w = World::new("off");
        let code = |client: &str, from: &str| {
            w.with(client, from, false, |i| admit(i).err().map(|r| r.code()))
        };
        assert_eq!(code("c", "192.0.2.7"), None);
        assert_eq!(code("c", "198.51.100.7"), Some("source_not_allowed"));
        assert_eq!(code("nobody", "192.0.2.7"), Some("unknown_client"));
    }

    #[test]
    fn a_required_sandbox_the_kernel_lacks_refuses_both_forms() {
        const PULL: &str = "rsync --server --sender -r . www/sub/";
        const DAEMON: &str = "rsync --server --daemon .";
        for (sandbox, landlock, refused_too) in [
            ("required", false, true),
            ("required", true, false),
            ("best-effort", false, false),
            ("off", false, false),
        ] {
            let w = World::new(sandbox);
            for command in [PULL, DAEMON] {
                match w.evaluate("c", landlock, command) {
                    Evaluation::Refused(r) => {
                        assert!(refused_too, "{sandbox} {landlock} {command}: {r:?}");
                        assert_eq!(
                            r.reason,
                            DenyReason::SandboxUnavailable(
                                "the kernel does not offer Landlock".into()
                            )
                        );
                    }
                    Evaluation::Run(run) => {
                        assert!(!refused_too, "{sandbox} {landlock} {command}");
                        assert_eq!(run.config.is_some(), command == DAEMON);
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
    }

    #[test]
    fn refused_triggers_record_the_words_when_within_bounds() {
        let w = World::new("off");
        let trigger = |words: Vec<String>| crate::audit::TriggerInfo {
            name: "sync".into(),
            words,
            state: Some(crate::audit::TriggerState::Refused),
            ..Default::default()
        };
        // A word `args` does not allow: refused, with the words.
        let r = refused(w.evaluate("t", false, "sync:archive other"));
        assert_eq!(r.reason.code(), "trigger_word_refused");
        assert_eq!(r.mode, Some(Mode::Trigger));
        assert_eq!(
            r.trigger,
            Some(trigger(vec!["sync:archive".into(), "other".into()]))
        );
        // Exactly the most words, each of the most bytes: still recorded.
        let long = "x".repeat(crate::policy::MAX_TRIGGER_WORD);
        let many = vec![long.clone(); crate::policy::MAX_TRIGGER_WORDS].join(" ");
        let r = refused(w.evaluate("t", false, &many));
        assert_eq!(r.reason.code(), "trigger_word_refused");
        assert_eq!(
            r.trigger,
            Some(trigger(vec![
                long.clone();
                crate::policy::MAX_TRIGGER_WORDS
            ]))
        );
        // One word more, or one byte more: too large, and not recorded.
        for command in [format!("{many} sync:a"), format!("{long}x")] {
            let r = refused(w.evaluate("t", false, &command));
            assert_eq!(r.reason.code(), "trigger_too_large", "{command:.40}");
            assert_eq!(r.mode, Some(Mode::Trigger));
            assert_eq!(r.trigger, Some(trigger(vec![])));
        }
        // A client without a trigger: no trigger field.
        let r = refused(w.evaluate("c", false, "sync:archive"));
        assert_eq!(r.trigger, None);
        // An allowed word fires it.
        assert!(matches!(
            w.evaluate("t", false, "sync:archive"),
            Evaluation::Trigger(_)
        ));
    }

    #[test]
    fn learned_names_modules_options_and_paths() {
        let w = World::new("off");
        let abs = format!("{}/data/site-2026/sub/a.txt", w.root.display());
        let command = format!(
            "rsync --server --sender -re.iLsfxCIvu --compare-dest={}/data/site-2026/sub . www/sub/ {abs}",
            w.root.display()
        );
        let request = parse_command(command.as_bytes());
        let l = learned(&w.policy, request.as_ref());
        assert_eq!(l.modules, ["www"]);
        assert_eq!(l.paths, ["www/sub/".to_string(), abs]);
        // The capabilities (`-e.iLsfxCIvu`) are not an option a client
        // chose.
        assert_eq!(l.options, ["recursive", "compare-dest"]);
        // In-band: the module named, then the options and paths as sent.
        let argv: Vec<Vec<u8>> = [
            "rsyncd",
            "--server",
            "--sender",
            "-re.iLsfxCIvu",
            ".",
            "sub/",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        let ib = inband::parse("www", &argv).map(Request::InBand);
        let l = learned(&w.policy, ib.as_ref());
        assert_eq!(l.modules, ["www"]);
        // Spelled as a checked-mode request names them.
        assert_eq!(l.paths, ["www/sub/"]);
        assert_eq!(l.options, ["recursive"]);
        // Not a transfer: nothing.
        let other = parse_command(b"ls /");
        assert_eq!(
            learned(&w.policy, other.as_ref()),
            crate::audit::Learned::default()
        );
    }

    #[test]
    fn a_daemon_trace_shows_each_modules_root() {
        let w = World::new("off");
        let mut trace = Vec::new();
        let e = w.with("c", "192.0.2.7", false, |i| {
            evaluate_traced(
                i,
                parse_command(b"rsync --server --daemon .").as_ref(),
                &mut trace,
            )
        });
        let Evaluation::Run(run) = e else {
            panic!("{e:?}")
        };
        assert_eq!(run.left_out.len(), 1, "{:?}", run.left_out);
        let roots: Vec<(String, String, bool)> = trace
            .iter()
            .filter_map(|s| match s {
                Step::ModuleRoot {
                    module,
                    root,
                    allowed,
                } => Some((module.clone(), root.clone(), *allowed)),
                _ => None,
            })
            .collect();
        let r = w.root.display();
        assert_eq!(
            roots,
            [
                ("www".into(), format!("{r}/data/site-2026"), true),
                ("gone".into(), format!("{r}/data/removed"), false),
            ]
        );
    }

    #[test]
    fn an_in_band_grant_carries_the_resolution_notes() {
        let w = World::new("off");
        let argv: Vec<Vec<u8>> = ["rsyncd", "--server", "-r", "--link-dest=/prev", ".", "sub/"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        let ib = inband::parse("www", &argv).map(Request::InBand);
        let e = w.with("c", "192.0.2.7", false, |i| evaluate(i, ib.as_ref()));
        let Evaluation::InBand(g) = e else {
            panic!("{e:?}")
        };
        assert_eq!((g.mode, g.module.as_str()), (Mode::Receiver, "www"));
        // The absolute value is rooted in the module, and found missing.
        assert_eq!(
            g.notes,
            ["--link-dest www/prev: does not exist yet (first run); not passed on"]
        );
    }
}
