//! Thin entry point: parse the command line, call the library, map the
//! result to an exit status.

use anyhow::Result;
use clap::Parser;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rsync_gate::audit::Mode;
use rsync_gate::cli::{self, Cli, Command};
use rsync_gate::host::{self, Account};
use rsync_gate::pipeline::{self, explain};
use rsync_gate::request::conn::Connection;
use rsync_gate::{cmd, policy};

fn main() -> ExitCode {
    // rsync runs daemon hooks as `$RSYNC_SHELL -c COMMAND`, and the gate is
    // that shell: it runs only its own hook command lines.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let [_, flag, command] = args.as_slice()
        && flag == "-c"
    {
        return ExitCode::from(pipeline::hook::hook_shell(command.as_bytes()));
    }
    let cli = Cli::parse();
    #[cfg(debug_assertions)]
    if cli.test_no_landlock {
        host::pretend_no_landlock();
    }
    #[cfg(debug_assertions)]
    if let Some(socket) = cli.test_journal_socket.clone() {
        rsync_gate::audit::journald::use_test_socket(socket);
    }
    let level = match cli.verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        _ => tracing::Level::DEBUG,
    };
    // Without -v only warnings are shown: a static subscriber that writes
    // them to stderr, instead of setting up tracing-subscriber's on every
    // connection.
    if cli.verbose > 0 {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_max_level(level)
            .without_time()
            .init();
    } else {
        let _ = tracing::subscriber::set_global_default(rsync_gate::cli::WarningsOnly);
    }
    if cli.version {
        // As clap's own --version: whatever else the command line says.
        return match version(cli.verbose > 0, &mut std::io::stdout().lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::from(2),
        };
    }
    let Some(command) = cli.command else {
        let _ = <Cli as clap::CommandFactory>::command()
            .error(
                clap::error::ErrorKind::MissingSubcommand,
                "a command is required (rsync-gate --help lists them)",
            )
            .print();
        return ExitCode::from(2);
    };
    match run(command, cli.verbose) {
        Ok(code) => ExitCode::from(code),
        // The reader went away (`rsync-gate audit | head`): not an error.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "rsync-gate: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Policy paths are used in authorized_keys lines, daemon configs and
/// ownership checks: always absolute.
fn absolute(p: PathBuf) -> PathBuf {
    if p.is_absolute() {
        p
    } else {
        std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p)
    }
}

fn account(name: Option<&str>) -> Result<Account> {
    match name {
        None => Ok(Account::current()),
        Some(n) => Account::named(n).ok_or_else(|| anyhow::anyhow!("no such account '{n}'")),
    }
}

fn run(command: Command, verbose: u8) -> Result<u8> {
    let mut out = std::io::stdout().lock();
    match command {
        Command::Serve { policy, client } => Ok(pipeline::serve::serve(
            &policy,
            &client,
            &pipeline::serve::SshEnv::from_process(),
        )),
        Command::Check {
            policy,
            account: who,
            compile,
            #[cfg(debug_assertions)]
            test_syslog_socket,
        } => {
            #[cfg(not(debug_assertions))]
            let test_syslog_socket: Option<PathBuf> = None;
            let opts = cmd::check::Options {
                account: who.as_deref().map(|n| account(Some(n))).transpose()?,
                verbose: verbose > 0,
                compile,
                syslog_socket: test_syslog_socket
                    .unwrap_or_else(|| PathBuf::from(rsync_gate::audit::syslog::DEFAULT_SOCKET)),
            };
            Ok(cmd::check::run(&absolute(policy), &opts, &mut out)?)
        }
        Command::Hook {
            which,
            policy,
            client,
        } => {
            let which = match which {
                cli::HookKind::PreXfer => pipeline::hook::Hook::PreXfer,
                cli::HookKind::PostXfer => pipeline::hook::Hook::PostXfer,
            };
            Ok(pipeline::hook::hook(which, &policy, &client))
        }
        Command::TriggerRun(t) => Ok(pipeline::triggers::supervise(
            &t.policy, &t.client, &t.trigger, t.lock_fd,
        )),
        Command::Explain {
            policy,
            client,
            from,
            connection,
            json,
            trace,
            account: who,
            module,
            unsandboxed,
            command,
        } => {
            let policy = absolute(policy);
            let who = account(who.as_deref())?;
            let p = load(&policy)?;
            let joined: Vec<u8> = command
                .iter()
                .map(|a| a.as_bytes())
                .collect::<Vec<_>>()
                .join(&b' ');
            let from = match (from, connection) {
                (_, Some(c)) => explain::From::Connection(
                    Connection::parse(c.as_bytes())
                        .ok_or_else(|| anyhow::anyhow!("--connection: not 'IP PORT IP PORT'"))?,
                ),
                (Some(a), None) => explain::From::Address(a),
                (None, None) => explain::From::Nowhere,
            };
            let words: Vec<Vec<u8>> = command.iter().map(|a| a.as_bytes().to_vec()).collect();
            let asked = match &module {
                Some(m) => explain::Asked::InBand {
                    module: m,
                    words: &words,
                    sandboxed: !unsandboxed,
                },
                None => explain::Asked::Command(&joined),
            };
            let e = explain::explain(
                &p,
                &policy,
                &who,
                &client,
                from,
                asked,
                std::io::stdin(),
                trace,
            );
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&e)?)?;
            } else {
                explain::render(&e, &mut out)?;
            }
            Ok(if e.decision == "allow" { 0 } else { 1 })
        }
        Command::AuthorizedKeys {
            policy,
            client,
            for_sshd,
        } => {
            let policy = absolute(policy);
            if let Some(values) = for_sshd.as_deref() {
                // Given twice, clap collects four values: refuse rather
                // than fall through to every client's line.
                let [user, fingerprint] = values else {
                    anyhow::bail!("--for-sshd takes USER FINGERPRINT, once");
                };
                return Ok(cmd::authorized_keys::for_sshd(
                    &policy,
                    user,
                    fingerprint,
                    &host::gate_binary(),
                    &mut out,
                    &mut std::io::stderr().lock(),
                )?);
            }
            let p = load(&policy)?;
            if let Some(c) = &client
                && !p.clients.contains_key(c)
            {
                anyhow::bail!("no client '{c}' in {}", policy.display());
            }
            // The path written into every line: one the SSH account can
            // run and nobody but root can replace.
            let gate = host::gate_binary();
            if let Some(why) = cmd::authorized_keys::gate_path_unsafe(&gate)
                .or_else(|| cmd::authorized_keys::gate_path_unreachable(&gate))
            {
                anyhow::bail!(
                    "refusing to write authorized_keys lines that run {}: {why}\n  fix: {}",
                    gate.display(),
                    cmd::authorized_keys::install_fix(&gate)
                );
            }
            let mut err = std::io::stderr().lock();
            let skipped = cmd::authorized_keys::skipped(&p, client.as_deref());
            for (name, why) in &skipped {
                writeln!(
                    err,
                    "rsync-gate: authorized-keys: no line for client '{name}': {why}"
                )?;
            }
            for line in cmd::authorized_keys::lines(&p, &policy, &gate, client.as_deref()) {
                writeln!(out, "{line}")?;
            }
            // A client whose key does not parse is an error; one without a
            // key (a client of another account, say) is not.
            let broken = skipped
                .iter()
                .any(|(name, _)| p.clients.get(name).is_some_and(|c| c.key.is_some()));
            Ok(u8::from(
                broken || (client.is_some() && !skipped.is_empty()),
            ))
        }
        Command::Audit(a) => cmd::audit::run(
            cmd::audit::Options {
                logs: a.logs,
                policy: a.policy,
                filter: cmd::audit::FilterArgs {
                    client: a.client,
                    module: a.module,
                    mode: a.mode.map(|m| match m {
                        cli::AuditMode::Sender => Mode::Sender,
                        cli::AuditMode::Receiver => Mode::Receiver,
                        cli::AuditMode::Daemon => Mode::Daemon,
                        cli::AuditMode::Trigger => Mode::Trigger,
                        cli::AuditMode::Probe => Mode::Probe,
                    }),
                    session: a.session,
                    denied: a.denied,
                    since: a.since,
                    until: a.until,
                    files: a.files,
                },
                summary: a.summary,
                json: a.json,
                follow: a.follow,
            },
            &mut out,
            &mut std::io::stderr(),
        ),
        Command::Learn {
            logs,
            policy,
            client,
            since,
        } => cmd::learn::run(
            cmd::learn::Options {
                logs,
                policy: absolute(policy),
                client,
                since,
            },
            &mut out,
            &mut std::io::stderr(),
        ),
        Command::Import { format, home, file } => cmd::import::run(
            &cmd::import::Options {
                file,
                format: format.map(|f| match f {
                    cli::ImportFormat::Rsyncd => cmd::import::Format::Rsyncd,
                    cli::ImportFormat::AuthorizedKeys => cmd::import::Format::AuthorizedKeys,
                }),
                home,
            },
            &mut out,
            &mut std::io::stderr(),
        ),
    }
}

/// `--version`: the version and commit; with `-v` also the rsync the
/// default policy names (and what it supports) and the kernel's Landlock ABI.
fn version(verbose: bool, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "rsync-gate {}", cli::VERSION)?;
    if !verbose {
        return Ok(());
    }
    let default = Path::new(policy::DEFAULT_POLICY);
    let (rsync, whence) = match policy::load(default, &policy::PlainReader) {
        Ok(p) => (
            p.gate.rsync,
            format!("[gate] rsync in {}", default.display()),
        ),
        Err(_) if !default.exists() => (
            policy::Gate::default().rsync,
            format!("the default; there is no {}", default.display()),
        ),
        Err(_) => (
            policy::Gate::default().rsync,
            format!(
                "the default; {} does not load (rsync-gate check)",
                default.display()
            ),
        ),
    };
    writeln!(out, "rsync:    {} ({whence})", rsync.display())?;
    match host::rsync::version(&rsync) {
        Some(v) => {
            let caps = host::rsync::probe(&rsync).unwrap_or_default();
            let yes = |b: bool| if b { "yes" } else { "no" };
            writeln!(
                out,
                "          {v}; --confine-root: {}, --drop-D: {}",
                yes(caps.confine_root),
                yes(caps.drop_d)
            )?;
        }
        None => writeln!(out, "          cannot be run")?,
    }
    match host::landlock_abi() {
        Some(abi) => writeln!(out, "landlock: ABI {abi}")?,
        None => writeln!(
            out,
            "landlock: not available (the kernel has none, or it is turned off)"
        )?,
    }
    Ok(())
}

fn load(path: &Path) -> Result<policy::Policy> {
    policy::load(path, &policy::PlainReader).map_err(|e| {
        let lines: Vec<String> = e.0.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("invalid policy:\n{}", lines.join("\n"))
    })
}
