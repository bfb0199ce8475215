//! Thin entry point: parse the command line, call the library, map the
//! result to an exit status.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{Context as _, Result};
use clap::Parser;

use rsync_gate::cli::{Cli, Command};
use rsync_gate::{audit, paths::Account, policy};

fn main() -> ExitCode {
    // rsync runs daemon hooks as `$RSYNC_SHELL -c COMMAND`, and the gate is
    // that shell: it runs only its own hook command lines.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let [_, flag, command] = args.as_slice()
        && flag == "-c"
    {
        return ExitCode::from(rsync_gate::hook_shell(command.as_bytes()));
    }
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        _ => tracing::Level::DEBUG,
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .without_time()
        .init();
    match run(cli.command) {
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

fn run(command: Command) -> Result<u8> {
    match command {
        Command::Serve { policy, client } => Ok(rsync_gate::serve(
            &policy,
            &client,
            &rsync_gate::SshEnv::from_process(),
        )),
        Command::Check {
            policy,
            account: who,
        } => check(&absolute(policy), &account(who.as_deref())?),
        Command::Hook {
            which,
            policy,
            client,
        } => {
            let which = match which {
                rsync_gate::cli::HookKind::PreXfer => rsync_gate::Hook::PreXfer,
                rsync_gate::cli::HookKind::PostXfer => rsync_gate::Hook::PostXfer,
            };
            Ok(rsync_gate::hook(which, &policy, &client))
        }
        Command::Explain {
            policy,
            client,
            from,
            json,
            account: who,
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
            let e = rsync_gate::explain(&p, &policy, &who, &client, from, &joined);
            let mut out = std::io::stdout().lock();
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&e)?)?;
            } else {
                writeln!(out, "decision: {}", e.decision)?;
                if let Some(r) = &e.reason {
                    writeln!(out, "reason:   {} ({})", r.message, r.code)?;
                }
                if let Some(m) = &e.mode {
                    writeln!(out, "mode:     {m}")?;
                }
                if !e.modules.is_empty() {
                    writeln!(out, "modules:  {}", e.modules.join(", "))?;
                }
                if !e.argv.is_empty() {
                    writeln!(out, "argv:     {}", shell_words::join(&e.argv))?;
                }
                if let Some(cwd) = &e.cwd {
                    writeln!(out, "cwd:      {cwd}")?;
                }
                if !e.env.is_empty() {
                    writeln!(out, "env:      {}", e.env.join(" "))?;
                }
                for n in &e.notes {
                    writeln!(out, "note:     {n}")?;
                }
                if let Some(c) = &e.config {
                    writeln!(out, "config:\n{c}")?;
                }
            }
            Ok(if e.decision == "allow" { 0 } else { 1 })
        }
        Command::AuthorizedKeys { policy, client } => {
            let policy = absolute(policy);
            let p = load(&policy)?;
            if let Some(c) = &client
                && !p.clients.contains_key(c)
            {
                anyhow::bail!("no client '{c}' in {}", policy.display());
            }
            let mut out = std::io::stdout().lock();
            for line in rsync_gate::authorized_keys(
                &p,
                &policy,
                &rsync_gate::gate_path(),
                client.as_deref(),
            ) {
                writeln!(out, "{line}")?;
            }
            Ok(0)
        }
        Command::Audit {
            log,
            policy,
            client,
            denied,
            since,
            summary,
            json,
        } => {
            let log = match log {
                Some(l) => l,
                None => policy::load(&policy, &policy::PlainReader)
                    .map(|p| p.gate.audit_log)
                    .unwrap_or_else(|_| policy::Gate::default().audit_log),
            };
            let since = since
                .map(|s| audit::parse_since(&s, SystemTime::now()))
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let filter = audit::Filter {
                client,
                denied,
                since,
            };
            let (records, bad) = audit::read(&log, &filter)
                .with_context(|| format!("cannot read {}", log.display()))?;
            let mut out = std::io::stdout().lock();
            if summary {
                write!(out, "{}", audit::summary(&records))?;
            } else {
                for r in &records {
                    if json {
                        writeln!(out, "{}", serde_json::to_string(r)?)?;
                    } else {
                        writeln!(out, "{}", audit::format_line(r))?;
                    }
                }
            }
            if bad > 0 {
                let _ = writeln!(
                    std::io::stderr(),
                    "rsync-gate: {bad} unreadable line(s) skipped"
                );
            }
            Ok(0)
        }
    }
}

fn load(path: &Path) -> Result<policy::Policy> {
    policy::load(path, &policy::PlainReader).map_err(|e| {
        let lines: Vec<String> = e.0.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("invalid policy:\n{}", lines.join("\n"))
    })
}

fn check(path: &Path, who: &Account) -> Result<u8> {
    let mut out = std::io::stdout().lock();
    let p = match policy::load(path, &policy::PlainReader) {
        Ok(p) => p,
        Err(e) => {
            for d in &e.0 {
                writeln!(out, "{d}")?;
            }
            writeln!(out, "{} error(s)", e.0.len())?;
            return Ok(1);
        }
    };
    let findings = rsync_gate::check_environment(&p, who);
    let errors = findings.iter().filter(|f| f.error).count();
    for f in &findings {
        writeln!(
            out,
            "{}: {}",
            if f.error { "error" } else { "warning" },
            f.text
        )?;
    }
    if errors > 0 {
        writeln!(out, "{errors} error(s)")?;
        return Ok(1);
    }
    writeln!(
        out,
        "{}: OK ({} modules, {} clients, {} triggers, {} file(s))",
        path.display(),
        p.modules.len(),
        p.clients.len(),
        p.triggers.len(),
        p.files.len()
    )?;
    Ok(0)
}
