//! The exec plan: exactly what runs. Built from a grant and its confined
//! paths; the exec stage sees only this, never the policy or the request.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use crate::decide::{Added, Conn, Grant, Mode};
use crate::paths::{Account, Confined};
use crate::policy::Sandbox;
use crate::request::OptValue;
use crate::request::options::{Takes, Value};
pub use crate::sandbox::SandboxPlan;

/// Directory the child's `HOME` points at: must not exist and cannot be
/// created by the client.
pub const CHILD_HOME: &str = "/nonexistent";
/// The child's `PATH`.
pub const CHILD_PATH: &str = "/usr/bin:/bin";

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
    /// Kernel confinement, if any.
    pub sandbox: Option<SandboxPlan>,
    /// Whether the sandbox is required, best effort or off.
    pub sandbox_mode: Sandbox,
    /// Human-readable remarks (explain, audit).
    pub notes: Vec<String>,
}

impl ExecPlan {
    /// argv as text for the audit log and `explain`.
    pub fn argv_lossy(&self) -> Vec<String> {
        std::iter::once(&self.arg0)
            .chain(self.args.iter())
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }
}

/// The child's environment, built from nothing.
pub fn child_env(
    account: &Account,
    conn: Option<&Conn>,
    conn_text: Option<&str>,
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = vec![
        ("PATH".into(), CHILD_PATH.into()),
        ("HOME".into(), CHILD_HOME.into()),
        ("USER".into(), account.name.clone().into()),
        ("LOGNAME".into(), account.name.clone().into()),
    ];
    // rsync (daemon mode) takes the client address from SSH_CONNECTION; pass
    // only a value we parsed, rebuilt from its parts.
    if let (Some(_), Some(text)) = (conn, conn_text) {
        env.push(("SSH_CONNECTION".into(), text.into()));
    }
    env
}

/// The rsync argv for a checked grant.
pub fn checked_args(grant: &Grant, confined: &Confined) -> Vec<OsString> {
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
    for o in &grant.opts {
        match (o.spec.short, o.spec.takes, &o.value) {
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
        match added {
            Added::IgnoreExisting => args.push("--ignore-existing".into()),
            Added::DropD => args.push("--drop-D".into()),
            Added::MungeLinks => args.push("--munge-links".into()),
            Added::ConfineRoot => {
                let mut a = OsString::from("--confine-root=");
                a.push(&confined.root);
                args.push(a);
            }
        }
    }
    args.push("--".into());
    args.push(".".into());
    args.extend(confined.args.iter().cloned());
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::{self, Context, Decision, RsyncCaps};
    use crate::policy;
    use crate::request::parse_command;
    use std::path::Path;

    fn args_for(cmd: &str) -> Vec<String> {
        let p = policy::load_text(
            Path::new("/p.toml"),
            "[modules.w]\npath = \"/srv/w\"\nread_only = false\n[clients.c]\nmodules = [\"w\"]\n",
        )
        .unwrap();
        let ctx = Context {
            policy: &p,
            client: "c",
            conn: None,
            caps: RsyncCaps {
                confine_root: true,
                drop_d: true,
            },
        };
        let req = parse_command(cmd.as_bytes());
        let Decision::Checked(g) = decide::decide(&ctx, req.as_ref()) else {
            panic!("{cmd}")
        };
        let confined = Confined {
            root: "/srv/w".into(),
            args: vec!["/proc/self/fd/3/".into()],
            ..Default::default()
        };
        checked_args(&g, &confined)
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
    }

    #[test]
    fn environment_is_built_from_nothing() {
        let acct = Account {
            uid: 1000,
            name: "backup".into(),
            home: None,
        };
        let env = child_env(&acct, None, None);
        let keys: Vec<String> = env
            .iter()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        assert_eq!(keys, ["PATH", "HOME", "USER", "LOGNAME"]);
        let conn = Conn {
            addr: "192.0.2.1".parse().unwrap(),
            port: 5,
        };
        let env = child_env(&acct, Some(&conn), Some("192.0.2.1 5 192.0.2.2 22"));
        assert_eq!(env.len(), 5);
    }
}
