//! Checked mode (`host:module/path`): rsync's argv from a grant and its
//! confined paths, and the plan around it.

use std::ffi::OsString;

use super::filelog::{self, CheckedNames, FileLogPlan, Names, Tokens};
use super::{ExecPlan, SandboxChoice, SandboxPlan, SlotPlan, child_env, lock_file};
use crate::confine::Confined;
use crate::decide::{Added, Grant, Mode};
use crate::host::Account;
use crate::policy::{Module, Policy, Sandbox};
use crate::request::OptValue;
use crate::request::conn::Connection;
use crate::request::options::{self, Takes, Value};

/// Everything a checked-mode plan is built from.
#[derive(Debug)]
pub struct Inputs<'a> {
    pub policy: &'a Policy,
    pub module: &'a Module,
    pub grant: &'a Grant,
    pub confined: Confined,
    pub account: &'a Account,
    pub conn: Option<&'a Connection>,
    /// The kernel sandbox goes around rsync (decided with the grant).
    pub sandbox: bool,
    /// The session id (names the transfer log's pipe).
    pub session: &'a str,
}

/// The plan for a checked grant.
pub fn plan(i: Inputs<'_>) -> ExecPlan {
    let Inputs {
        policy,
        module,
        grant,
        confined,
        account,
        conn,
        sandbox,
        session,
    } = i;
    let mut args = args(grant, &confined);
    let mut notes: Vec<String> = grant
        .dropped
        .iter()
        .map(|spec| {
            format!(
                "dropped {}: this server is the sender, which has nothing to delete",
                spec.display()
            )
        })
        .collect();
    notes.extend(confined.notes.iter().cloned());
    notes.extend(
        confined
            .pins
            .iter()
            .map(|p| format!("pinned {} = {}", p.proc_path().display(), p.real.display())),
    );
    let file_log = module
        .transfer_log
        .then(|| file_log(policy, module, grant, &confined, session));
    let sandbox = match (policy.gate.sandbox, sandbox) {
        (Sandbox::Off, _) => SandboxChoice::Off,
        (_, false) => SandboxChoice::Unavailable,
        (mode, true) => {
            let root = confined.root.clone();
            let (read, write) = match grant.mode {
                Mode::Sender => (vec![root], vec![]),
                Mode::Receiver => (vec![], vec![root]),
            };
            let nodes = |allowed: bool| if allowed { write.clone() } else { vec![] };
            let (devices, specials) = (nodes(module.devices), nodes(module.specials));
            notes.push(format!(
                "sandbox ({mode}): {} {}{}",
                if write.is_empty() {
                    "read-only"
                } else {
                    "read-write"
                },
                confined.root.display(),
                super::nodes_note(!devices.is_empty(), !specials.is_empty())
            ));
            SandboxChoice::Apply(SandboxPlan {
                read,
                write,
                exec: vec![policy.gate.rsync.clone()],
                // rsync writes its transfer log to the session's file.
                append: file_log.iter().filter_map(|f| f.file.clone()).collect(),
                devices,
                specials,
            })
        }
    };
    let slot = (module.max_connections > 0).then(|| SlotPlan {
        module: module.name.clone(),
        lock: lock_file(&policy.gate.lock_dir, &module.name),
        max: module.max_connections,
        wait: policy.gate.wait_for_slot,
    });
    if let Some(f) = &file_log
        && let Some(log) = &f.file
    {
        // rsync's own log options go before the `--`.
        let at = args.iter().position(|a| a == "--").unwrap_or(args.len());
        args.splice(at..at, filelog::checked_args(log, &f.tokens));
        notes.push(format!(
            "transfer log: one audit record per file, through the file {} (made for the session, read as it grows)",
            log.display()
        ));
    }
    ExecPlan {
        program: policy.gate.rsync.clone(),
        arg0: "rsync".into(),
        args,
        env: child_env(account, conn),
        cwd: confined.root.clone(),
        keep_fds: confined.pins.into_iter().map(|p| p.fd).collect(),
        mkdirs: confined.mkdirs,
        files: Vec::new(),
        slot,
        sandbox,
        log_fd: None,
        file_log,
        priority: grant.priority,
        notes,
    }
}

/// The transfer log of a checked grant: the pipe rsync logs to, and how
/// the names it logs map to the module.
fn file_log(
    policy: &Policy,
    module: &Module,
    grant: &Grant,
    confined: &Confined,
    session: &str,
) -> FileLogPlan {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let fds: Vec<(i32, std::path::PathBuf)> = confined
        .pins
        .iter()
        .map(|p| (p.fd.as_raw_fd(), p.real.clone()))
        .chain(
            confined
                .mkdirs
                .iter()
                .map(|m| (m.slot.as_raw_fd(), m.expect.clone())),
        )
        .collect();
    let dest = match grant.mode {
        Mode::Sender => None,
        Mode::Receiver => confined
            .args
            .last()
            .and_then(|a| filelog::dest(a.as_bytes(), &fds)),
    };
    FileLogPlan {
        tokens: Tokens::placeholders(),
        limit: policy.gate.transfer_log_limit,
        names: Names::Checked(CheckedNames {
            module: module.name.clone(),
            root: confined.root.clone(),
            mode: grant.mode,
            fds,
            dest,
        }),
        file: Some(filelog::log_path(&policy.gate.lock_dir, session)),
    }
}

/// The rsync argv for a checked grant.
pub fn args(grant: &Grant, confined: &Confined) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["--server".into()];
    if grant.mode == Mode::Sender {
        args.push("--sender".into());
    }
    // Consecutive flags with letters become one cluster, as clients send
    // them; the capability string ends a cluster.
    let mut cluster = String::new();
    let flush = |cluster: &mut String, args: &mut Vec<OsString>| {
        if !cluster.is_empty() {
            args.push(format!("-{cluster}").into());
            cluster.clear();
        }
    };
    // The gate's --timeout replaces the client's (it is never longer).
    let own_timeout = grant.added.iter().any(|a| matches!(a, Added::Timeout(_)));
    for o in &grant.opts {
        if own_timeout && o.spec.long == options::TIMEOUT {
            continue;
        }
        let letter = o
            .spec
            .short
            .filter(|c| options::CLUSTER_LETTERS.contains(c));
        match (letter, o.spec.takes, &o.value) {
            (Some(c), Takes::Nothing, _) => cluster.push(char::from(c)),
            (_, Takes::Value(Value::Capabilities), Some(OptValue::Text(caps))) => {
                cluster.push('e');
                cluster.push_str(caps);
                flush(&mut cluster, &mut args);
            }
            (_, Takes::Nothing, _) => {
                flush(&mut cluster, &mut args);
                args.push(format!("--{}", o.spec.long).into());
            }
            (_, Takes::Value(_), Some(OptValue::Text(v))) => {
                flush(&mut cluster, &mut args);
                args.push(format!("--{}={v}", o.spec.long).into());
            }
            (_, Takes::Value(_), _) => {
                // Path values are in `confined.path_opts`.
            }
        }
    }
    flush(&mut cluster, &mut args);
    for (spec, value) in &confined.path_opts {
        let mut a = OsString::from(format!("--{}=", spec.long));
        a.push(value);
        args.push(a);
    }
    for added in &grant.added {
        let mut a = OsString::from(format!("--{}", added.long()));
        match added {
            Added::ConfineRoot => {
                a.push("=");
                a.push(&confined.root);
            }
            Added::NoSetuid => a.push(format!("={}", options::STRIP_SETUID)),
            Added::Timeout(n) => a.push(format!("={n}")),
            Added::IgnoreExisting | Added::WholeFile | Added::DropD | Added::MungeLinks => {}
        }
        args.push(a);
    }
    args.push("--".into());
    args.push(".".into());
    args.extend(confined.args.iter().cloned());
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::{self, Context, Decision, RsyncCaps, Server};
    use crate::policy;
    use crate::request::parse_command;
    use std::path::Path;

    fn args_for(cmd: &str) -> Vec<String> {
        args_in(
            "[modules.w]\npath = \"/srv/w\"\nread_only = false\n[clients.c]\nmodules = [\"w\"]\n",
            cmd,
        )
    }

    /// Client "c"'s checked grant for `cmd`, on a server with every
    /// capability.
    fn granted(p: &Policy, cmd: &str) -> Grant {
        let ctx = Context {
            policy: p,
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
        let req = parse_command(cmd.as_bytes());
        let Decision::Checked(g) = decide::decide(&ctx, req.as_ref()) else {
            panic!("{cmd}")
        };
        g
    }

    fn args_in(policy_text: &str, cmd: &str) -> Vec<String> {
        let p = policy::load_text(Path::new("/p.toml"), policy_text).unwrap();
        let g = granted(&p, cmd);
        let confined = Confined {
            root: "/srv/w".into(),
            args: vec!["/proc/self/fd/3/".into()],
            ..Default::default()
        };
        args(&g, &confined)
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn canonical_argv() {
        assert_eq!(
            args_for("rsync --server -vlogDtprze.iLsfxCIvu --timeout=30 -B8192 . w/"),
            [
                "--server",
                "-vlogDtprze.iLsfxCIvu",
                "--timeout=30",
                "--block-size=8192",
                "--drop-D",
                "--munge-links",
                "--confine-root=/srv/w",
                "--chmod=ug-s",
                "--",
                ".",
                "/proc/self/fd/3/",
            ]
        );
        // openrsync's one letter per word becomes one cluster.
        assert_eq!(
            &args_for("rsync --server -g -l -o -p -D -r -t -v --dirs . w/")[..3],
            ["--server", "-glopDrtvd", "--drop-D"]
        );
        // Values are passed in one word, never as a separate one.
        assert_eq!(
            &args_for("rsync --server -r --usermap \\*:a --bwlimit 100 . w/")[..4],
            ["--server", "-r", "--usermap=*:a", "--bwlimit=100"]
        );
        assert_eq!(
            &args_for("rsync --server -r -@-1 . w/")[..3],
            ["--server", "-r", "--modify-window=-1"]
        );
        // openrsync's receiver-side deletes on a pull are left out; its
        // -h, -8 and --progress go by their long names.
        assert_eq!(
            args_for(
                "rsync --server --sender --delete-before -g -l -r -t -v -h --progress -8 . w/"
            ),
            [
                "--server",
                "--sender",
                "-glrtv",
                "--human-readable",
                "--progress",
                "--8-bit-output",
                "--munge-links",
                "--confine-root=/srv/w",
                "--",
                ".",
                "/proc/self/fd/3/",
            ]
        );
        // Aliases are passed under the row's own name.
        assert_eq!(
            &args_for("rsync --server -rz --zl=3 --zt=2 . w/")[..4],
            [
                "--server",
                "-rz",
                "--compress-level=3",
                "--compress-threads=2"
            ]
        );
    }

    /// The whole plan: a connection slot exactly for a module with
    /// `max_connections`, and the transfer log's options right before the
    /// `--` (after it rsync would take them for paths), naming the
    /// session's file under `lock_dir`.
    #[test]
    fn slots_and_log_options_in_the_plan() {
        let p = policy::load_text(
            Path::new("/p.toml"),
            "[gate]\nlock_dir = \"/run/g\"\n\
             [modules.t]\npath = \"/srv/t\"\nmax_connections = 2\ntransfer_log = true\n\
             [modules.u]\npath = \"/srv/u\"\n[clients.c]\nmodules = [\"t\", \"u\"]\n",
        )
        .unwrap();
        let account = Account {
            uid: 0,
            name: "root".into(),
            home: None,
        };
        let plan_for = |module: &str| {
            let g = granted(&p, &format!("rsync --server --sender -r . {module}/"));
            plan(Inputs {
                policy: &p,
                module: &p.modules[module],
                grant: &g,
                confined: Confined {
                    root: format!("/srv/{module}").into(),
                    args: vec!["/proc/self/fd/3/".into()],
                    ..Default::default()
                },
                account: &account,
                conn: None,
                sandbox: false,
                session: "18ed3-7",
            })
        };
        let t = plan_for("t");
        let slot = t.slot.as_ref().expect("a slot for max_connections = 2");
        assert_eq!(
            (slot.module.as_str(), slot.lock.as_path(), slot.max),
            ("t", Path::new("/run/g/t.lock"), 2)
        );
        let args: Vec<String> = t
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let dd = args.iter().position(|a| a == "--").unwrap();
        assert_eq!(args[dd - 2], "--log-file=/run/g/filelog/18ed3-7.log");
        assert_eq!(
            args[dd - 1],
            "--log-file-format=@log-start@ %o %l %b %f @log-end@"
        );
        assert_eq!(args[dd + 1..], [".", "/proc/self/fd/3/"]);
        let u = plan_for("u");
        assert!(u.slot.is_none());
        assert!(u.file_log.is_none());
        assert!(
            !u.args
                .iter()
                .any(|a| a.to_string_lossy().contains("--log-file"))
        );
    }

    #[test]
    fn module_timeout_and_setuid() {
        let text = "[modules.t]\npath = \"/srv/t\"\nread_only = false\nmax_connections = 1\n\
                    [modules.s]\npath = \"/srv/s\"\nread_only = false\nsetuid = true\ntimeout = 60\n\
                    [clients.c]\nmodules = [\"t\", \"s\"]\n";
        let tail = |cmd: &str| {
            let a = args_in(text, cmd);
            let dd = a.iter().position(|x| x == "--").unwrap();
            a[..dd].to_vec()
        };
        let count = |a: &[String], p: &str| a.iter().filter(|x| x.starts_with(p)).count();
        // max_connections without a timeout: 600 s, and uploads lose their
        // set-user/group-ID bits.
        let a = tail("rsync --server -logDtpre.iLsfxCIvu . t/");
        assert_eq!(
            a[a.len() - 2..],
            ["--chmod=ug-s".to_string(), "--timeout=600".to_string()]
        );
        // A client's shorter timeout is kept, a longer one is not: one
        // --timeout either way.
        let a = tail("rsync --server -logDtpre.iLsfxCIvu --timeout=30 . t/");
        assert_eq!(count(&a, "--timeout="), 1);
        assert!(a.contains(&"--timeout=30".to_string()), "{a:?}");
        let a = tail("rsync --server -logDtpre.iLsfxCIvu --timeout=9999 --timeout=700 . t/");
        assert_eq!(count(&a, "--timeout="), 1);
        assert!(a.contains(&"--timeout=600".to_string()), "{a:?}");
        // Pulls get the timeout, not the chmod.
        let a = tail("rsync --server --sender -logDtpre.iLsfxCIvu . t/");
        assert_eq!(count(&a, "--chmod"), 0);
        assert!(a.contains(&"--timeout=600".to_string()), "{a:?}");
        // setuid = true keeps the bits.
        let a = tail("rsync --server -logDtpre.iLsfxCIvu . s/");
        assert_eq!(count(&a, "--chmod"), 0);
        assert!(a.contains(&"--timeout=60".to_string()), "{a:?}");
        // No timeout, no --timeout of the gate's: the client's stays.
        let a = args_for("rsync --server -logDtpre.iLsfxCIvu --timeout=9999 . w/");
        assert_eq!(count(&a, "--timeout="), 1);
        assert!(a.contains(&"--timeout=9999".to_string()), "{a:?}");
    }
}
