//! Command-line definitions.

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::policy::DEFAULT_POLICY;

/// The version and the git commit the binary was built from (build.rs),
/// as `--version` prints them first.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("RSYNC_GATE_COMMIT"),
    ")"
);

/// A forced-command gatekeeper for rsync over SSH.
#[derive(Debug, Parser)]
#[command(
    name = "rsync-gate",
    version = env!("CARGO_PKG_VERSION"),
    override_usage = "rsync-gate [-v]... <COMMAND> [OPTIONS]\n       rsync-gate --version [-v]",
    about,
    long_about = None,
    disable_version_flag = true
)]
pub struct Cli {
    /// Print the version and the git commit it was built from; with -v
    /// also the rsync it finds and the kernel's Landlock ABI.
    #[arg(short = 'V', long)]
    pub version: bool,
    /// More diagnostics on stderr (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Tests only (debug builds): behave as on a kernel without Landlock.
    #[cfg(debug_assertions)]
    #[arg(long, hide = true, global = true)]
    pub test_no_landlock: bool,
    /// Tests only (debug builds): send journal entries to this socket
    /// instead of journald's.
    #[cfg(debug_assertions)]
    #[arg(long, hide = true, global = true, value_name = "SOCKET")]
    pub test_journal_socket: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The forced command: decide, audit, run rsync or refuse.
    Serve {
        /// Policy file.
        #[arg(long, default_value = DEFAULT_POLICY)]
        policy: PathBuf,
        /// The client (key) this authorized_keys line belongs to.
        #[arg(long)]
        client: String,
    },
    /// Validate the policy (every problem with file:line:col), then what
    /// serve will meet as the SSH account, each problem with its fix.
    Check {
        #[arg(long, default_value = DEFAULT_POLICY)]
        policy: PathBuf,
        /// Check as this SSH account (default: every account whose
        /// ~/.ssh/authorized_keys runs the gate with this policy, else the
        /// user running check). As root, check acts as the account.
        #[arg(long)]
        account: Option<String>,
        /// Then write the compiled index serve reads (POLICY.index), as
        /// root, after every edit of the policy or its drop-ins.
        #[arg(long)]
        compile: bool,
        /// Tests only (debug builds): the syslog socket instead of /dev/log.
        #[cfg(debug_assertions)]
        #[arg(long, hide = true)]
        test_syslog_socket: Option<PathBuf>,
    },
    /// Dry run of a decision (exit 0 allow, 1 deny, 2 error).
    Explain {
        #[arg(long, default_value = DEFAULT_POLICY)]
        policy: PathBuf,
        #[arg(long)]
        client: String,
        /// The client's address (as in SSH_CONNECTION).
        #[arg(long)]
        from: Option<IpAddr>,
        /// sshd's whole SSH_CONNECTION ('CLIENT_IP PORT SERVER_IP PORT'),
        /// to see exactly what serve passes on.
        #[arg(long, conflicts_with = "from")]
        connection: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Also show every rule that applied, in order, with the policy
        /// file:line:col it came from, ending in the decision.
        #[arg(long)]
        trace: bool,
        /// Decide as this SSH account (default: the user running explain).
        #[arg(long)]
        account: Option<String>,
        /// Explain an in-band request of a `host::MODULE` session instead,
        /// as the daemon's pre-xfer hook sees it: COMMAND is `rsync --server
        /// [--sender] OPTIONS . PATHS` with paths relative to the module.
        #[arg(long)]
        module: Option<String>,
        /// With --module: as if the session's sandbox were not applied.
        #[arg(long, requires = "module")]
        unsandboxed: bool,
        /// The command as the client would send it (SSH_ORIGINAL_COMMAND).
        #[arg(last = true, required = true, num_args = 1..)]
        command: Vec<OsString>,
    },
    /// Print authorized_keys lines for clients that have a key (the
    /// clients left out, and why, on stderr).
    AuthorizedKeys {
        #[arg(long, default_value = DEFAULT_POLICY)]
        policy: PathBuf,
        /// Only this client.
        #[arg(long, conflicts_with = "for_sshd")]
        client: Option<String>,
        /// OpenSSH's AuthorizedKeysCommand (`--for-sshd %u %f`): the line of
        /// the key with this fingerprint, when the policy's [gate] account
        /// is USER; nothing otherwise.
        #[arg(long, num_args = 2, value_names = ["USER", "FINGERPRINT"])]
        for_sshd: Option<Vec<String>>,
    },
    /// Daemon-mode hooks: run by rsync itself from the generated config
    /// (pre-xfer checks and audits each in-band request; post-xfer records
    /// its exit status). Not for interactive use.
    #[command(hide = true)]
    Hook {
        #[arg(value_enum)]
        which: HookKind,
        #[arg(long)]
        policy: PathBuf,
        #[arg(long)]
        client: String,
    },
    /// A trigger's supervisor: runs the trigger's pending runs one after
    /// another. Started by the gate itself; not for interactive use.
    #[command(hide = true)]
    TriggerRun(TriggerRun),
    /// Review the audit log.
    Audit(Audit),
    /// Print a candidate policy from what `learn = true` clients did (the
    /// audit log's records of them): the modules, settings and addresses
    /// their requests needed. Writes nothing (exit 0, or 1 when no record
    /// matched).
    Learn {
        /// Audit log to read (default: the policy's audit_log); repeat for
        /// rotated logs, plain or gzip'ed.
        #[arg(long = "log", value_name = "FILE")]
        logs: Vec<PathBuf>,
        #[arg(long, default_value = DEFAULT_POLICY)]
        policy: PathBuf,
        /// Only this client's records.
        #[arg(long)]
        client: Option<String>,
        /// Only records at or after this time (2026-11-23,
        /// 2026-11-23T06:00:00Z, or ago: 30s, 5m, 2h, 3d).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
    },
    /// Print a policy equivalent to an rsyncd.conf or to authorized_keys
    /// lines running rrsync, rsync's daemon or ftpsync, saying what could
    /// not be carried over (exit 0 all, 1 not all, 2 nothing).
    Import {
        /// The input's format (default: told from its content).
        #[arg(long, value_enum)]
        format: Option<ImportFormat>,
        /// The SSH account's home directory, for paths relative to it
        /// (default: above the .ssh directory FILE is in).
        #[arg(long)]
        home: Option<PathBuf>,
        /// rsyncd.conf or authorized_keys file ('-': standard input).
        file: PathBuf,
    },
}

/// What `import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImportFormat {
    /// An rsync daemon configuration (rsyncd.conf(5)).
    Rsyncd,
    /// An OpenSSH authorized_keys file.
    AuthorizedKeys,
}

/// `rsync-gate audit`.
#[derive(Debug, clap::Args)]
pub struct Audit {
    /// Audit log to read (default: the policy's audit_log). Repeat for
    /// rotated logs (plain or gzip'ed, e.g. `--log audit.jsonl.2.gz --log
    /// audit.jsonl.1 --log audit.jsonl`); records come out in time order.
    /// With --follow the last one is followed.
    #[arg(long = "log", value_name = "FILE")]
    pub logs: Vec<PathBuf>,
    #[arg(long, default_value = DEFAULT_POLICY)]
    pub policy: PathBuf,
    /// Only this client.
    #[arg(long)]
    pub client: Option<String>,
    /// Only records naming this module.
    #[arg(long)]
    pub module: Option<String>,
    /// Only records of this mode.
    #[arg(long, value_enum)]
    pub mode: Option<AuditMode>,
    /// Only this session's records.
    #[arg(long)]
    pub session: Option<String>,
    /// Only refusals.
    #[arg(long)]
    pub denied: bool,
    /// Per-file transfer records (modules with transfer_log) instead of
    /// decisions: time, session, client, module, operation,
    /// bytes/length, path.
    #[arg(long)]
    pub files: bool,
    /// Only records at or after this time (2026-11-23, 2026-11-23T06:00:00Z,
    /// 2026-11-23T08:00:00+02:00, or ago: 30s, 5m, 2h, 3d).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only records before this time (as for --since).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Per-client counts instead of records (with file records: files and
    /// bytes sent, received and deleted).
    #[arg(long, conflicts_with = "follow")]
    pub summary: bool,
    /// JSON lines (with --summary: one object per client).
    #[arg(long)]
    pub json: bool,
    /// After the records so far, print new ones as they are written (like
    /// `tail -F`: rotation and truncation are followed); stop with Ctrl-C.
    #[arg(long, short = 'f', conflicts_with = "until")]
    pub follow: bool,
}

/// `audit --mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuditMode {
    Sender,
    Receiver,
    Daemon,
    Trigger,
    Probe,
}

/// The hidden supervisor command a trigger starts.
#[derive(Debug, clap::Args)]
pub struct TriggerRun {
    #[arg(long)]
    pub policy: PathBuf,
    #[arg(long)]
    pub client: String,
    #[arg(long)]
    pub trigger: String,
    /// The trigger's run lock, inherited from the gate that started this.
    #[arg(long)]
    pub lock_fd: i32,
}

/// Which daemon hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HookKind {
    PreXfer,
    PostXfer,
}

/// The subscriber without `-v`: warnings and errors, one line each on
/// stderr (`rsync-gate: warning: ...`); nothing else is even recorded.
#[derive(Debug, Clone, Copy)]
pub struct WarningsOnly;

struct Message<'a>(&'a mut String);

impl tracing::field::Visit for Message<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl tracing::Subscriber for WarningsOnly {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() <= tracing::Level::WARN
    }
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::WARN)
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        use std::io::Write;
        let mut text = String::new();
        event.record(&mut Message(&mut text));
        let kind = if *event.metadata().level() == tracing::Level::ERROR {
            "error"
        } else {
            "warning"
        };
        let _ = writeln!(std::io::stderr(), "rsync-gate: {kind}: {text}");
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}
