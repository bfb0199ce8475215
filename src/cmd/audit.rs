//! `rsync-gate audit`: the audit log, filtered, as text lines, JSON lines
//! or per-client summaries.

use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{Context as _, Result};

use crate::audit::review;
use crate::policy;

/// What to show.
#[derive(Debug, Clone)]
pub struct Options {
    /// The log (default: the policy's `audit_log`).
    pub log: Option<PathBuf>,
    pub policy: PathBuf,
    pub client: Option<String>,
    pub denied: bool,
    pub since: Option<String>,
    pub summary: bool,
    pub json: bool,
}

pub fn run(o: Options, out: &mut impl Write, err: &mut impl Write) -> Result<u8> {
    let log = match o.log {
        Some(l) => l,
        None => policy::load(&o.policy, &policy::PlainReader)
            .map(|p| p.gate.audit_log)
            .unwrap_or_else(|_| policy::Gate::default().audit_log),
    };
    let since = o
        .since
        .map(|s| review::parse_since(&s, SystemTime::now()))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let filter = review::Filter {
        client: o.client,
        denied: o.denied,
        since,
    };
    let (records, bad) =
        review::read(&log, &filter).with_context(|| format!("cannot read {}", log.display()))?;
    if o.summary {
        write!(out, "{}", review::summary(&records))?;
    } else {
        for r in &records {
            if o.json {
                writeln!(out, "{}", serde_json::to_string(r)?)?;
            } else {
                writeln!(out, "{}", review::format_line(r))?;
            }
        }
    }
    if bad > 0 {
        let _ = writeln!(err, "rsync-gate: {bad} unreadable line(s) skipped");
    }
    Ok(0)
}
