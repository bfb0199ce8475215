//! `rsync-gate audit`: the audit log (several files, rotated and gzip'ed
//! ones too), filtered, as text lines, JSON lines or per-client summaries,
//! and with `--follow` the records written from then on.

use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{Context as _, Result};

use crate::audit::follow::{self, Follower};
use crate::audit::review::{self, FileRecords, Filter, Lines};
use crate::audit::{Mode, Record};
use crate::policy;

/// Which records (as given on the command line).
#[derive(Debug, Clone, Default)]
pub struct FilterArgs {
    pub client: Option<String>,
    pub module: Option<String>,
    pub mode: Option<Mode>,
    pub session: Option<String>,
    pub denied: bool,
    pub since: Option<String>,
    pub until: Option<String>,
    /// File records only (`--files`).
    pub files: bool,
}

/// What to show.
#[derive(Debug, Clone)]
pub struct Options {
    /// The logs, oldest first or not (default: the policy's `audit_log`).
    pub logs: Vec<PathBuf>,
    pub policy: PathBuf,
    pub filter: FilterArgs,
    pub summary: bool,
    pub json: bool,
    pub follow: bool,
}

impl FilterArgs {
    fn filter(self, now: SystemTime, summary: bool) -> Result<Filter> {
        let when = |flag: &str, v: Option<String>| {
            v.map(|s| review::parse_when(&s, now))
                .transpose()
                .map_err(|e| anyhow::anyhow!("{flag}: {e}"))
        };
        Ok(Filter {
            files: match (summary, self.files) {
                (true, _) => FileRecords::With,
                (false, true) => FileRecords::Only,
                (false, false) => FileRecords::Without,
            },
            since: when("--since", self.since)?,
            until: when("--until", self.until)?,
            client: self.client,
            module: self.module,
            mode: self.mode,
            session: self.session,
            denied: self.denied,
        })
    }
}

fn print(out: &mut impl Write, r: &Record, json: bool) -> Result<()> {
    if json {
        writeln!(out, "{}", serde_json::to_string(r)?)?;
    } else {
        writeln!(out, "{}", review::format_line(r))?;
    }
    Ok(())
}

fn report_bad(err: &mut impl Write, bad: usize) {
    if bad > 0 {
        let _ = writeln!(err, "rsync-gate: {bad} unreadable line(s) skipped");
    }
}

pub fn run(o: Options, out: &mut impl Write, err: &mut impl Write) -> Result<u8> {
    let filter = o.filter.filter(SystemTime::now(), o.summary)?;
    let mut logs = o.logs;
    if logs.is_empty() {
        logs.push(
            policy::load(&o.policy, &policy::PlainReader)
                .map(|p| p.gate.audit_log)
                .unwrap_or_else(|_| policy::Gate::default().audit_log),
        );
    }
    let mut per_log = Vec::new();
    let mut bad = 0;
    let mut follower = None;
    let last = logs.len() - 1;
    for (i, log) in logs.iter().enumerate() {
        let cannot = || format!("cannot read {}", log.display());
        let mut lines = Lines::default();
        if o.follow && i == last {
            // The live log is read through the handle that then follows
            // it, so nothing written in between is lost.
            let mut f = Follower::open(log).with_context(cannot)?;
            for line in f.poll().with_context(cannot)? {
                lines.push(&line, &filter);
            }
            follower = Some(f);
        } else {
            lines
                .read_all(review::open(log).with_context(cannot)?, &filter)
                .with_context(cannot)?;
        }
        bad += lines.bad;
        per_log.push(lines.records);
    }
    let records = review::merge(per_log);
    if o.summary {
        let rows = review::summarize(&records);
        if o.json {
            for row in &rows {
                writeln!(out, "{}", serde_json::to_string(row)?)?;
            }
        } else {
            write!(out, "{}", review::summary_text(&rows))?;
        }
    } else {
        for r in &records {
            print(out, r, o.json)?;
        }
    }
    out.flush()?;
    report_bad(err, bad);
    let Some(mut follower) = follower else {
        return Ok(0);
    };
    let log = logs.get(last).cloned().unwrap_or_default();
    loop {
        std::thread::sleep(follow::POLL);
        let mut lines = Lines::default();
        for line in follower
            .poll()
            .with_context(|| format!("cannot read {}", log.display()))?
        {
            lines.push(&line, &filter);
        }
        for r in &lines.records {
            print(out, r, o.json)?;
        }
        out.flush()?;
        report_bad(err, lines.bad);
    }
}
