//! Daemon over SSH (`host::module`): rsync runs as `rsync --server --daemon
//! --config=FILE .` with a configuration generated from the policy, listing
//! only the client's modules. The config's `pre-xfer exec` and `post-xfer
//! exec` run the gate itself: the pre-xfer hook sees the real request
//! (`RSYNC_ARG*`), applies the same checks as checked mode, writes the audit
//! line and can veto; the post-xfer hook records the exit status.
//!
//! rsync 3.5 reopens the config by name (memfd, O_TMPFILE and deleted files
//! do not work), so the config is a real file, written atomically into a
//! directory under `lock_dir` that no module reaches and that the sandboxed
//! rsync cannot write. Its content depends only on the policy, the client and
//! whether the account is root, so parallel sessions agree on it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::filelog::{END_ENV, FileLogPlan, Names, START_ENV, Tokens};
use super::{ExecPlan, FileContent, PlannedFile, SandboxChoice, SandboxPlan, child_env, lock_file};
use crate::decide::{knob_refuses, write_only_refuses_row};
use crate::host::Account;
use crate::policy::{Module, Policy, Sandbox};
use crate::request::conn::Connection;
use crate::request::options::{self, OPTIONS, Rule, Spec};

/// Environment variable carrying the gate's session id to the hooks. The
/// gate builds rsync's environment from nothing, so only the gate sets it.
pub const SESSION_ENV: &str = "RSYNC_GATE_SESSION";
/// Whether the kernel sandbox is around the daemon (`1` or `0`).
pub const SANDBOX_ENV: &str = "RSYNC_GATE_SANDBOXED";
/// The uid that counts as root's in this user namespace, when one does
/// ([`crate::trust::root_alias`]); the sandboxed hooks cannot read `/proc`.
pub const ROOT_ALIAS_ENV: &str = "RSYNC_GATE_ROOT_ALIAS";

/// The descriptor on which the daemon gets a pipe to the gate for its log
/// (`--log-file=/proc/self/fd/3`). rsync logs there what happens before a
/// module is chosen, which no hook sees: an unknown module, `max
/// connections` reached, a module listing. Once a module is chosen rsync
/// switches to that module's log setting: none (syslog, as a daemon without
/// `log file` always did), or, in a module with `transfer_log`, this same
/// descriptor, where it then logs every file it sends, receives or deletes
/// ([`super::filelog`]). The gate reads the pipe and records the daemon's
/// refusals as its own ([`crate::audit`] `deny` decisions).
pub const DAEMON_LOG_FD: i32 = 3;

/// Table rows a daemon's `refuse options` cannot name, and why. The hook
/// refuses them anyway: it parses every in-band request with the table.
pub const NOT_IN_REFUSE_OPTIONS: &[(&str, &str)] = &[
    (
        "rsh",
        "refusing it refuses -e too, which clients use to send their protocol capabilities",
    ),
    (
        "archive",
        "rsync expands it to -rdlptgoD, so refusing it would refuse every transfer",
    ),
];

/// What the config generation needs besides the policy.
#[derive(Debug, Clone)]
pub struct ConfigContext<'a> {
    /// The gate binary, for the hook commands.
    pub gate: &'a Path,
    /// The policy file, for the hook commands.
    pub policy_path: &'a Path,
    /// The client the config is for.
    pub client: &'a str,
    /// The SSH account.
    pub account: &'a Account,
    /// Primary group of the account (used with `gid` when running as root).
    pub account_gid: u32,
}

/// Would checked mode refuse this row in module `m`, whatever its value?
fn refused_in(spec: &Spec, m: &Module) -> bool {
    matches!(spec.rule, Rule::Refuse(_))
        || knob_refuses(m, spec.rule).is_some()
        || write_only_refuses_row(m, spec).is_some()
}

/// The module's `refuse options`: every table row checked mode refuses in
/// this module, by each of its names.
pub fn refuse_options(m: &Module) -> String {
    let mut names: Vec<&str> = Vec::new();
    for spec in OPTIONS.iter().filter(|s| refused_in(s, m)) {
        for name in std::iter::once(&spec.long).chain(spec.aliases.iter()) {
            if !NOT_IN_REFUSE_OPTIONS.iter().any(|(n, _)| n == name) {
                names.push(name);
            }
        }
    }
    names.join(" ")
}

/// A value written into rsyncd.conf must not be able to change the file's
/// structure or be expanded by rsync (`%VAR%`, line continuation).
fn conf_value(what: &str, s: &str) -> Result<String, String> {
    if s.chars().any(|c| c.is_control() || c == '%' || c == '\\') || s.trim() != s || s.is_empty() {
        return Err(format!(
            "{what} cannot be written into an rsync daemon config (control character, '%', '\\' or surrounding spaces)"
        ));
    }
    Ok(s.to_string())
}

/// The hook command line: fixed words only, nothing from the client.
fn hook_command(ctx: &ConfigContext<'_>, which: &str) -> Result<String, String> {
    let gate = conf_value("the gate's path", &ctx.gate.to_string_lossy())?;
    let policy = conf_value("the policy path", &ctx.policy_path.to_string_lossy())?;
    if !crate::policy::valid_name(ctx.client) {
        return Err("client name".into());
    }
    Ok(format!(
        "{} hook {which} --policy {} --client {}",
        shell_words::quote(&gate),
        shell_words::quote(&policy),
        ctx.client
    ))
}

/// Generate the config for `modules` (each with its checked real root).
pub fn config_text(
    ctx: &ConfigContext<'_>,
    lock_dir: &Path,
    modules: &[(&Module, PathBuf)],
) -> Result<String, String> {
    let as_root = ctx.account.uid == 0;
    let pre = hook_command(ctx, "pre-xfer")?;
    let post = hook_command(ctx, "post-xfer")?;
    let mut out = String::new();
    out.push_str(&format!(
        "# Generated by rsync-gate for client {} from {}. Do not edit: it is\n\
         # rewritten from the policy whenever the client connects with host::module.\n",
        ctx.client,
        ctx.policy_path.display()
    ));
    out.push_str("reverse lookup = no\nforward lookup = no\n");
    for (m, root) in modules {
        out.push_str(&format!("\n[{}]\n", m.name));
        out.push_str(&format!(
            "path = {}\n",
            conf_value("module path", &root.to_string_lossy())?
        ));
        if let Some(c) = &m.comment {
            out.push_str(&format!("comment = {}\n", conf_value("comment", c)?));
        }
        out.push_str(&format!("read only = {}\n", yes(m.read_only)));
        out.push_str(&format!("write only = {}\n", yes(m.write_only)));
        out.push_str(&format!("list = {}\n", yes(m.list)));
        // As root, chroot into the module so no symlink inside it leads out;
        // otherwise rsync's own sanitising and the gate's checks apply.
        out.push_str(&format!("use chroot = {}\n", yes(as_root)));
        if as_root {
            out.push_str("numeric ids = yes\n");
        }
        out.push_str(&format!("munge symlinks = {}\n", yes(m.munge_links)));
        if as_root {
            // rsync's own default as root is "nobody"; the gate keeps the
            // SSH account unless the module says otherwise, so both request
            // forms behave alike.
            let uid = m.uid.clone().unwrap_or_else(|| ctx.account.uid.to_string());
            let gid = m.gid.clone().unwrap_or_else(|| ctx.account_gid.to_string());
            out.push_str(&format!("uid = {uid}\ngid = {gid}\n"));
        } else if m.uid.is_some() || m.gid.is_some() {
            return Err(format!(
                "module '{}' sets uid/gid, which needs the SSH account to be root",
                m.name
            ));
        }
        if m.max_connections > 0 {
            out.push_str(&format!("max connections = {}\n", m.max_connections));
            let lock = lock_file(lock_dir, &m.name);
            out.push_str(&format!(
                "lock file = {}\n",
                conf_value("lock file", &lock.to_string_lossy())?
            ));
        }
        if m.timeout > 0 {
            // rsync keeps the client's own --timeout when it is shorter.
            out.push_str(&format!("timeout = {}\n", m.timeout));
        }
        if m.writable() && !m.setuid {
            out.push_str(&format!("incoming chmod = {}\n", options::STRIP_SETUID));
        }
        if m.transfer_log {
            out.push_str(&super::filelog::daemon_lines(DAEMON_LOG_FD));
        }
        out.push_str(&format!("refuse options = {}\n", refuse_options(m)));
        out.push_str(&format!("pre-xfer exec = {pre}\n"));
        out.push_str(&format!("post-xfer exec = {post}\n"));
    }
    Ok(out)
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// Where a client's generated config lives.
pub fn config_path(lock_dir: &Path, client: &str) -> PathBuf {
    lock_dir.join("daemon").join(format!("{client}.conf"))
}

/// Everything a daemon-mode plan is built from.
#[derive(Debug)]
pub struct Inputs<'a> {
    pub policy: &'a Policy,
    pub config: ConfigContext<'a>,
    /// The client's modules that are safe to serve, each with its real root.
    pub modules: &'a [(&'a Module, PathBuf)],
    pub conn: Option<&'a Connection>,
    /// The session id the hooks record under.
    pub session: &'a str,
    /// The kernel sandbox goes around the daemon.
    pub sandbox: bool,
    /// The lower priority the daemon runs at.
    pub priority: crate::request::Priority,
}

/// The plan for a daemon session: the config and lock files to write and
/// `rsync --server --daemon --config=FILE .` to run. Returns the config
/// text too (for explain).
pub fn plan(i: Inputs<'_>) -> Result<(ExecPlan, String), String> {
    let policy = i.policy;
    let lock_dir = &policy.gate.lock_dir;
    let text = config_text(&i.config, lock_dir, i.modules)?;
    let config = config_path(lock_dir, i.config.client);
    let mut files = vec![PlannedFile {
        path: config.clone(),
        content: FileContent::Text(text.clone()),
    }];
    let mut lock_files = Vec::new();
    for (m, _) in i.modules {
        if m.max_connections > 0 {
            let lock = lock_file(lock_dir, &m.name);
            files.push(PlannedFile {
                path: lock.clone(),
                content: FileContent::LockFile,
            });
            lock_files.push(lock);
        }
    }
    let mut notes = vec![format!("config {}", config.display())];
    let mut env = child_env(i.config.account, i.conn);
    env.push((SESSION_ENV.into(), i.session.into()));
    env.push((SANDBOX_ENV.into(), if i.sandbox { "1" } else { "0" }.into()));
    // rsync runs its hooks as `$RSYNC_SHELL -c COMMAND`: the gate is that
    // "shell", and accepts only its own hook command lines, so no shell
    // ever runs.
    env.push(("RSYNC_SHELL".into(), i.config.gate.as_os_str().to_owned()));
    let logged: Vec<(String, PathBuf)> = i
        .modules
        .iter()
        .filter(|(m, _)| m.transfer_log)
        .map(|(m, root)| (m.name.clone(), root.clone()))
        .collect();
    let file_log = (!logged.is_empty()).then(|| {
        let tokens = Tokens::placeholders();
        env.push((START_ENV.into(), tokens.start.clone().into()));
        env.push((END_ENV.into(), tokens.end.clone().into()));
        let file = super::filelog::log_path(&policy.gate.lock_dir, i.session);
        notes.push(format!(
            "transfer log: one audit record per file in {}, from /proc/self/fd/{DAEMON_LOG_FD} (the file {}, made for the session, read as it grows)",
            logged
                .iter()
                .map(|(m, _)| m.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            file.display()
        ));
        FileLogPlan {
            tokens,
            limit: policy.gate.transfer_log_limit,
            names: Names::Daemon(logged),
            file: Some(file),
        }
    });
    let sandbox = match (policy.gate.sandbox, i.sandbox) {
        (Sandbox::Off, _) => SandboxChoice::Off,
        (_, false) => SandboxChoice::Unavailable,
        (mode, true) => {
            let mut read: Vec<PathBuf> = policy.files.clone();
            // The hooks read the compiled index, when there is one.
            let index = crate::policy::index::index_path(&policy.source);
            if index.exists() {
                read.push(index);
            }
            for pattern in &policy.gate.include {
                if let Some(dir) = Path::new(pattern).parent() {
                    read.push(dir.to_path_buf());
                }
            }
            read.push(config.clone());
            let mut write_roots = Vec::new();
            let (mut devices, mut specials) = (Vec::new(), Vec::new());
            for (m, root) in i.modules {
                if m.writable() {
                    write_roots.push(root.clone());
                    // Each module's own node rights: another module's
                    // devices = true must not open this one.
                    if m.devices {
                        devices.push(root.clone());
                    }
                    if m.specials {
                        specials.push(root.clone());
                    }
                } else {
                    read.push(root.clone());
                }
            }
            let mut append = lock_files;
            append.push(policy.gate.audit_log.clone());
            // The daemon opens its log (the transfer log's file) by the
            // name of the descriptor it gets.
            append.extend(file_log.iter().filter_map(|f| f.file.clone()));
            notes.push(format!("sandbox ({mode}) around the daemon and its hooks"));
            SandboxChoice::Apply(SandboxPlan {
                read,
                write: write_roots,
                exec: vec![policy.gate.rsync.clone(), i.config.gate.to_path_buf()],
                append,
                devices,
                specials,
            })
        }
    };
    let mut config_arg = OsString::from("--config=");
    config_arg.push(&config);
    notes.push(format!(
        "the daemon logs to the gate through /proc/self/fd/{DAEMON_LOG_FD}"
    ));
    let plan = ExecPlan {
        program: policy.gate.rsync.clone(),
        arg0: "rsync".into(),
        args: vec![
            "--server".into(),
            "--daemon".into(),
            config_arg,
            format!("--log-file=/proc/self/fd/{DAEMON_LOG_FD}").into(),
            ".".into(),
        ],
        env,
        cwd: PathBuf::from("/"),
        keep_fds: Vec::new(),
        mkdirs: Vec::new(),
        files,
        slot: None,
        sandbox,
        log_fd: Some(DAEMON_LOG_FD),
        file_log,
        priority: i.priority,
        notes,
    };
    Ok((plan, text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy;

    fn policy() -> Policy {
        policy::load_text(
            Path::new("/etc/rsync-gate/policy.toml"),
            r#"
[gate]
lock_dir = "/run/rsync-gate"
[modules.www]
path = "/srv/www"
comment = "web site"
[modules.backup]
path = "/srv/backup"
read_only = false
delete = true
max_connections = 2
[modules.drop]
path = "/srv/drop"
read_only = false
write_only = true
overwrite = false
list = false
[clients.c]
modules = ["www", "backup", "drop"]
"#,
        )
        .unwrap()
    }

    fn account(uid: u32) -> Account {
        Account {
            uid,
            name: "acct".into(),
            home: None,
        }
    }

    #[test]
    fn generated_config_for_a_non_root_account() {
        let p = policy();
        let acct = account(1000);
        let ctx = ConfigContext {
            gate: Path::new("/usr/local/bin/rsync-gate"),
            policy_path: Path::new("/etc/rsync-gate/policy.toml"),
            client: "c",
            account: &acct,
            account_gid: 1000,
        };
        let mods: Vec<(&Module, PathBuf)> =
            p.modules.values().map(|m| (m, m.path.clone())).collect();
        let text = config_text(&ctx, Path::new("/run/rsync-gate"), &mods).unwrap();
        let www = text.split("\n[").find(|s| s.starts_with("www]")).unwrap();
        assert!(www.contains("path = /srv/www\n"));
        assert!(www.contains("comment = web site\n"));
        assert!(www.contains("read only = yes\n"));
        assert!(www.contains("use chroot = no\n"));
        assert!(www.contains("munge symlinks = no\n"));
        assert!(!www.contains("uid ="));
        assert!(www.contains(
            "pre-xfer exec = /usr/local/bin/rsync-gate hook pre-xfer --policy /etc/rsync-gate/policy.toml --client c\n"
        ));
        assert!(
            !www.contains(" rsh "),
            "refusing rsh refuses -e, the capability string"
        );
        assert!(www.contains(" delete "));
        let backup = text
            .split("\n[")
            .find(|s| s.starts_with("backup]"))
            .unwrap();
        assert!(backup.contains("max connections = 2\nlock file = /run/rsync-gate/backup.lock\n"));
        // max_connections brings the default timeout; writable modules strip
        // set-user/group-ID bits from uploads.
        assert!(backup.contains("timeout = 600\nincoming chmod = ug-s\n"));
        assert!(!www.contains("timeout =") && !www.contains("incoming chmod"));
        assert!(!backup.contains(" delete "));
        assert!(backup.contains("munge symlinks = yes\n"));
        let drop = text.split("\n[").find(|s| s.starts_with("drop]")).unwrap();
        assert!(drop.contains("write only = yes\nlist = no\n"));
        assert!(drop.contains("incoming chmod = ug-s\n") && !drop.contains("timeout ="));
        assert!(drop.contains("backup-dir"));
        assert!(text.contains("reverse lookup = no\n"));
        // Deterministic.
        assert_eq!(
            text,
            config_text(&ctx, Path::new("/run/rsync-gate"), &mods).unwrap()
        );
    }

    #[test]
    fn module_timeout_and_setuid_in_the_config() {
        let p = policy::load_text(
            Path::new("/p.toml"),
            "[modules.keep]\npath = \"/srv/keep\"\nread_only = false\nsetuid = true\ntimeout = 30\n\
             [modules.slow]\npath = \"/srv/slow\"\nmax_connections = 3\ntimeout = 0\n\
             [clients.c]\nmodules = [\"keep\", \"slow\"]\n",
        )
        .unwrap();
        let acct = account(0);
        let ctx = ConfigContext {
            gate: Path::new("/usr/local/bin/rsync-gate"),
            policy_path: Path::new("/p.toml"),
            client: "c",
            account: &acct,
            account_gid: 0,
        };
        let mods: Vec<(&Module, PathBuf)> =
            p.modules.values().map(|m| (m, m.path.clone())).collect();
        let text = config_text(&ctx, Path::new("/run/rsync-gate"), &mods).unwrap();
        let keep = text.split("\n[").find(|s| s.starts_with("keep]")).unwrap();
        assert!(keep.contains("\ntimeout = 30\n") && !keep.contains("incoming chmod"));
        let slow = text.split("\n[").find(|s| s.starts_with("slow]")).unwrap();
        assert!(!slow.contains("timeout =") && !slow.contains("incoming chmod"));
    }

    /// `uid` or `gid` alone needs a root account as much as both.
    #[test]
    fn uid_or_gid_alone_needs_root() {
        for key in ["uid = \"www-data\"", "gid = \"www-data\""] {
            let p = policy::load_text(
                Path::new("/p.toml"),
                &format!("[modules.m]\npath = \"/srv/m\"\n{key}\n[clients.c]\nmodules = [\"m\"]\n"),
            )
            .unwrap();
            let acct = account(1000);
            let ctx = ConfigContext {
                gate: Path::new("/usr/local/bin/rsync-gate"),
                policy_path: Path::new("/p.toml"),
                client: "c",
                account: &acct,
                account_gid: 1000,
            };
            let mods: Vec<(&Module, PathBuf)> =
                p.modules.values().map(|m| (m, m.path.clone())).collect();
            assert_eq!(
                config_text(&ctx, Path::new("/run/rsync-gate"), &mods).unwrap_err(),
                "module 'm' sets uid/gid, which needs the SSH account to be root",
                "{key}"
            );
        }
    }

    /// Client "c"'s daemon plan for all of `p`'s modules, session
    /// 18ed3-7, without the sandbox.
    fn plan_of(p: &Policy, acct: &Account) -> (ExecPlan, String) {
        let mods: Vec<(&Module, PathBuf)> =
            p.modules.values().map(|m| (m, m.path.clone())).collect();
        plan(Inputs {
            policy: p,
            config: ConfigContext {
                gate: Path::new("/usr/local/bin/rsync-gate"),
                policy_path: Path::new("/etc/rsync-gate/policy.toml"),
                client: "c",
                account: acct,
                account_gid: acct.uid,
            },
            modules: &mods,
            conn: None,
            session: "18ed3-7",
            sandbox: false,
            priority: Default::default(),
        })
        .unwrap()
    }

    /// The plan writes a lock file for exactly the modules with
    /// `max_connections` (the config names them), and a module without one
    /// gets no `max connections` line (not even 0).
    #[test]
    fn lock_files_for_exactly_the_limited_modules() {
        let p = policy();
        let acct = account(1000);
        let (plan, text) = plan_of(&p, &acct);
        let locks: Vec<&Path> = plan
            .files
            .iter()
            .filter(|f| matches!(f.content, FileContent::LockFile))
            .map(|f| f.path.as_path())
            .collect();
        assert_eq!(locks, [Path::new("/run/rsync-gate/backup.lock")]);
        assert_eq!(text.matches("max connections").count(), 1, "{text}");
        assert_eq!(text.matches("lock file").count(), 1, "{text}");
        // The config is written to the client's file and named to rsync.
        assert_eq!(
            plan.files[0].path,
            Path::new("/run/rsync-gate/daemon/c.conf")
        );
        assert!(
            plan.args
                .contains(&"--config=/run/rsync-gate/daemon/c.conf".into())
        );
        // No module with transfer_log: no file records, no log file.
        assert!(plan.file_log.is_none());
        assert!(!text.contains("transfer logging"));
        // One with it: the session's log file.
        let mut logged = p.clone();
        for m in logged.modules.values_mut() {
            m.transfer_log = m.name == "www";
        }
        let (plan, _) = plan_of(&logged, &acct);
        assert_eq!(
            plan.file_log.and_then(|f| f.file),
            Some(PathBuf::from("/run/rsync-gate/filelog/18ed3-7.log"))
        );
    }

    #[test]
    fn root_chroots_and_keeps_the_account() {
        let p = policy();
        let acct = account(0);
        let ctx = ConfigContext {
            gate: Path::new("/usr/local/bin/rsync-gate"),
            policy_path: Path::new("/etc/rsync-gate/policy.toml"),
            client: "c",
            account: &acct,
            account_gid: 0,
        };
        let mods: Vec<(&Module, PathBuf)> =
            p.modules.values().map(|m| (m, m.path.clone())).collect();
        let text = config_text(&ctx, Path::new("/run/rsync-gate"), &mods).unwrap();
        assert!(text.contains("use chroot = yes\nnumeric ids = yes\n"));
        assert!(text.contains("uid = 0\ngid = 0\n"));
    }

    #[test]
    fn refuses_values_that_would_change_the_config() {
        for bad in ["/srv/a%HOME%", "/srv/a\\", " /srv", "/srv\nx"] {
            assert!(conf_value("path", bad).is_err(), "{bad:?}");
        }
        let acct = account(1000);
        let ctx = ConfigContext {
            gate: Path::new("/opt/my gate/rsync-gate"),
            policy_path: Path::new("/etc/p.toml"),
            client: "c",
            account: &acct,
            account_gid: 1000,
        };
        assert_eq!(
            hook_command(&ctx, "pre-xfer").unwrap(),
            "'/opt/my gate/rsync-gate' hook pre-xfer --policy /etc/p.toml --client c"
        );
    }

    /// Every option the hook refuses in a module (asked of the decision
    /// itself, one in-band request per table row; these are what checked
    /// mode refuses, but for the receiver-side deletes checked mode drops
    /// from a pull's argv, which an in-band request cannot lose) is in that
    /// module's generated `refuse options` under each of its names, and
    /// nothing else is, but for the rows a daemon cannot be told to refuse
    /// (which the hook refuses instead).
    #[test]
    fn refuse_options_are_what_checked_mode_refuses() {
        use crate::decide::{self, Context, Decision, RsyncCaps, Server};
        use crate::request::Request;
        use crate::request::inband;
        use crate::request::options::{OPTIONS, PathRole, Takes, Value};
        use std::collections::BTreeSet;
        let p = policy::load_text(
            Path::new("/p.toml"),
            r#"
[modules.ro]
path = "/srv/ro"
[modules.strict]
path = "/srv/strict"
read_only = false
write_only = true
overwrite = false
[modules.handin]
path = "/srv/handin"
read_only = false
write_only = true
[modules.open]
path = "/srv/open"
read_only = false
delete = true
follow_links = true
devices = true
[clients.c]
modules = ["ro", "strict", "handin", "open"]
"#,
        )
        .unwrap();
        let ctx = Context {
            policy: &p,
            client: "c",
            conn: None,
            server: Server {
                caps: RsyncCaps {
                    confine_root: true,
                    drop_d: true,
                },
                sandbox: true,
            },
        };
        for m in p.modules.values() {
            let listed: BTreeSet<String> = refuse_options(m)
                .split(' ')
                .filter(|n| !n.is_empty())
                .map(String::from)
                .collect();
            let mut refused = BTreeSet::new();
            for spec in OPTIONS {
                let value = match spec.takes {
                    Takes::Nothing => None,
                    Takes::Value(Value::Int { min, .. }) => Some(min.max(1).to_string()),
                    Takes::Value(Value::Size { min, .. }) => Some(min.max(1).to_string()),
                    // A list from the client: what a file on the server
                    // would be is the value's business, not the row's.
                    Takes::Value(Value::Path(PathRole::FilesFrom)) => Some("-".to_string()),
                    Takes::Value(Value::Path(_)) => Some("x".to_string()),
                    Takes::Value(_) => Some("a".to_string()),
                };
                let opt = match value {
                    Some(v) => format!("--{}={v}", spec.long),
                    None if spec.long.len() == 1 => format!("-{}", spec.long),
                    None => format!("--{}", spec.long),
                };
                // The option as a daemon would get it in-band (where even
                // --daemon is just a word to parse), with what the hook
                // requires of uploads into these modules.
                let mut argv = vec!["rsyncd", "--server"];
                if !m.writable() {
                    argv.push("--sender");
                }
                argv.extend(["-rW", "--ignore-existing", &opt, ".", "sub/"]);
                let argv: Vec<Vec<u8>> = argv.iter().map(|w| w.as_bytes().to_vec()).collect();
                let req = inband::parse(&m.name, &argv).map(Request::InBand);
                let d = decide::decide(&ctx, req.as_ref());
                if let Decision::Deny(r) = &d
                    && matches!(r.code(), "option_refused" | "option_not_permitted")
                    && r.to_string().contains(&spec.display())
                {
                    refused.extend(
                        std::iter::once(spec.long)
                            .chain(spec.aliases.iter().copied())
                            .map(String::from),
                    );
                }
            }
            let exempt: BTreeSet<String> = NOT_IN_REFUSE_OPTIONS
                .iter()
                .map(|(n, _)| n.to_string())
                .collect();
            let want: BTreeSet<String> = refused.difference(&exempt).cloned().collect();
            assert_eq!(listed, want, "module {}", m.name);
            for must in [
                "copy-as",
                "log-file",
                "rsync-path",
                "debug",
                "config",
                "dparam",
            ] {
                assert!(listed.contains(must), "module {} lacks {must}", m.name);
            }
        }
        // The exempt rows are refused by the hook's parse of the same table.
        for (name, _) in NOT_IN_REFUSE_OPTIONS {
            assert!(matches!(
                crate::request::options::by_long(name).map(|s| s.rule),
                Some(Rule::Refuse(_))
            ));
        }
    }
}
