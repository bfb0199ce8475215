//! Reading the audit log back: filters, text lines and per-client
//! summaries (`rsync-gate audit`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Event, Mode, Record, Verdict, days_from_civil};

/// Parse `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SS[.fff]Z`, or a relative
/// `30m`/`24h`/`7d` (before `now`) into seconds since the epoch.
pub fn parse_since(s: &str, now: SystemTime) -> Result<u64, String> {
    let bad =
        || format!("'{s}' is not a time (use 2026-11-23, 2026-11-23T06:00:00Z, 30m, 24h or 7d)");
    let now_secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    if let Some(unit) = s.chars().last().filter(|c| matches!(c, 'm' | 'h' | 'd')) {
        let num = s.get(..s.len() - 1).ok_or_else(bad)?;
        if !num.is_empty() && num.len() <= 6 && num.bytes().all(|b| b.is_ascii_digit()) {
            let n: u64 = num.parse().map_err(|_| bad())?;
            let mult = match unit {
                'm' => 60,
                'h' => 3600,
                _ => 86_400,
            };
            return Ok(now_secs.saturating_sub(n.saturating_mul(mult)));
        }
    }
    let num = |a: usize, b: usize| -> Result<i64, String> {
        let t = s.get(a..b).ok_or_else(bad)?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        t.parse().map_err(|_| bad())
    };
    let sep = |i: usize, c: u8| -> Result<(), String> {
        if s.as_bytes().get(i) == Some(&c) {
            Ok(())
        } else {
            Err(bad())
        }
    };
    sep(4, b'-')?;
    sep(7, b'-')?;
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let mut secs = days_from_civil(y, mo as u32, d as u32) * 86_400;
    if s.len() > 10 {
        sep(10, b'T')?;
        sep(13, b':')?;
        sep(16, b':')?;
        let (h, mi, se) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
        if h > 23 || mi > 59 || se > 60 {
            return Err(bad());
        }
        let tail = s.get(19..).ok_or_else(bad)?;
        let tail = match tail.strip_prefix('.') {
            Some(t) => t.trim_start_matches(|c: char| c.is_ascii_digit()),
            None => tail,
        };
        if tail != "Z" {
            return Err(bad());
        }
        secs += h * 3600 + mi * 60 + se;
    }
    u64::try_from(secs).map_err(|_| bad())
}

/// Filters for `rsync-gate audit`.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub client: Option<String>,
    pub denied: bool,
    pub since: Option<u64>,
}

impl Filter {
    fn keep(&self, r: &Record) -> bool {
        if self.client.as_ref().is_some_and(|c| *c != r.client) {
            return false;
        }
        if self.denied && r.decision != Some(Verdict::Deny) {
            return false;
        }
        if let Some(since) = self.since {
            match parse_since(&r.time, SystemTime::now()) {
                Ok(t) if t >= since => {}
                _ => return false,
            }
        }
        true
    }
}

/// Read matching records from an audit log. Lines that do not parse are
/// counted, not fatal.
pub fn read(path: &Path, filter: &Filter) -> io::Result<(Vec<Record>, usize)> {
    let file = File::open(path)?;
    let mut out = Vec::new();
    let mut bad = 0;
    for line in io::BufReader::new(file).split(b'\n') {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Record>(&line) {
            Ok(r) if filter.keep(&r) => out.push(r),
            Ok(_) => {}
            Err(_) => bad += 1,
        }
    }
    Ok((out, bad))
}

/// Escape control characters for a terminal (the log is JSON, but a
/// hand-edited or foreign log could hold anything).
fn clean(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let esc: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            esc
        })
        .collect()
}

/// One human-readable line per record.
pub fn format_line(r: &Record) -> String {
    clean(&format_line_raw(r))
}

fn format_line_raw(r: &Record) -> String {
    let source = r
        .source
        .as_ref()
        .map(|s| s.addr.clone())
        .unwrap_or_else(|| "-".into());
    if r.event == Event::End {
        let status = match (r.exit_status, r.signal) {
            (Some(c), _) => format!("exit {c}"),
            (None, Some(s)) => format!("signal {s}"),
            _ => "ended".into(),
        };
        let what = r.request.clone().unwrap_or_default();
        return format!(
            "{} {:<12} {:<15} end    {} {}ms {}",
            r.time,
            r.client,
            source,
            status,
            r.duration_ms.unwrap_or(0),
            what
        )
        .trim_end()
        .to_string();
    }
    let decision = match r.decision {
        Some(Verdict::Allow) => "allow",
        Some(Verdict::Deny) => "deny",
        None => "-",
    };
    let mode = r.mode.map_or("-", Mode::name);
    let modules = if r.modules.is_empty() {
        "-".to_string()
    } else {
        r.modules.join(",")
    };
    let tail = match (&r.reason, &r.request) {
        (Some(reason), _) => format!("{}: {}", reason.code, reason.message),
        (None, Some(req)) => req.clone(),
        (None, None) => r.command.clone().unwrap_or_default(),
    };
    format!(
        "{} {:<12} {:<15} {:<6} {:<8} {:<12} {}",
        r.time, r.client, source, decision, mode, modules, tail
    )
}

/// Per-client counts for `--summary`.
pub fn summary(records: &[Record]) -> String {
    #[derive(Default)]
    struct Row {
        allowed: usize,
        denied: usize,
        failed: usize,
        last: String,
        reasons: BTreeMap<String, usize>,
        modules: BTreeMap<String, usize>,
    }
    let mut rows: BTreeMap<&str, Row> = BTreeMap::new();
    for r in records {
        let row = rows.entry(&r.client).or_default();
        if r.time > row.last {
            row.last = r.time.clone();
        }
        // A daemon session's own records wrap its in-band requests, which
        // carry their own decisions: count those, not the envelope.
        if r.mode == Some(Mode::Daemon) {
            continue;
        }
        match (r.event, r.decision) {
            (Event::Decision, Some(Verdict::Allow)) => {
                row.allowed += 1;
                for m in &r.modules {
                    *row.modules.entry(m.clone()).or_default() += 1;
                }
            }
            (Event::Decision, Some(Verdict::Deny)) => {
                row.denied += 1;
                if let Some(reason) = &r.reason {
                    *row.reasons.entry(reason.code.clone()).or_default() += 1;
                }
            }
            (Event::End, _) if r.exit_status != Some(0) => row.failed += 1,
            _ => {}
        }
    }
    let mut out = String::from(
        "client        allowed  denied  failed  last seen                 modules / refusals\n",
    );
    for (client, row) in rows {
        let mods: Vec<String> = row
            .modules
            .iter()
            .map(|(m, n)| format!("{m}={n}"))
            .collect();
        let reasons: Vec<String> = row
            .reasons
            .iter()
            .map(|(m, n)| format!("{m}={n}"))
            .collect();
        out.push_str(&format!(
            "{client:<13} {:>7} {:>7} {:>7}  {:<25} {}{}{}\n",
            row.allowed,
            row.denied,
            row.failed,
            row.last,
            mods.join(","),
            if reasons.is_empty() || mods.is_empty() {
                ""
            } else {
                " / "
            },
            reasons.join(",")
        ));
    }
    out
}

/// Milliseconds, saturating.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditLog, Reason, rfc3339};
    use std::io::Write;
    use std::time::Duration;

    #[test]
    fn since_parsing() {
        let now = UNIX_EPOCH + Duration::from_secs(1_795_416_000);
        assert_eq!(parse_since("2026-11-23T06:40:00Z", now), Ok(1_795_416_000));
        assert_eq!(
            parse_since("2026-11-23T06:40:00.123Z", now),
            Ok(1_795_416_000)
        );
        assert_eq!(parse_since("2026-11-23", now), Ok(1_795_392_000));
        assert_eq!(parse_since("24h", now), Ok(1_795_416_000 - 86_400));
        assert_eq!(parse_since("7d", now), Ok(1_795_416_000 - 7 * 86_400));
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-11-23 06:00:00",
            "2026-11-23T06:00:00",
            "5x",
            "h",
        ] {
            assert!(parse_since(bad, now).is_err(), "{bad}");
        }
        // Round trip.
        let s = rfc3339(now);
        assert_eq!(parse_since(&s, now), Ok(1_795_416_000));
    }

    #[test]
    fn appends_whole_lines_and_reads_them_back() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("audit.jsonl");
        let mut log = AuditLog::open(&p).unwrap();
        let mut r = Record {
            time: "2026-11-23T06:40:00.000Z".into(),
            event: Event::Decision,
            session: "1-2".into(),
            client: "backup01".into(),
            decision: Some(Verdict::Deny),
            reason: Some(Reason {
                code: "read_only".into(),
                message: "module 'www' is read-only".into(),
                detail: None,
            }),
            ..Default::default()
        };
        log.write(&r).unwrap();
        r.client = "other".into();
        r.decision = Some(Verdict::Allow);
        r.reason = None;
        log.write(&r).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"garbage\n")
            .unwrap();
        let (all, bad) = read(&p, &Filter::default()).unwrap();
        assert_eq!((all.len(), bad), (2, 1));
        let (denied, _) = read(
            &p,
            &Filter {
                denied: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(denied.len(), 1);
        assert_eq!(denied[0].client, "backup01");
        let s = summary(&all);
        assert!(s.contains("backup01"), "{s}");
        assert!(s.contains("read_only=1"), "{s}");
    }

    #[test]
    fn review_lines_never_carry_control_characters() {
        let r = Record {
            event: Event::Decision,
            client: "c".into(),
            decision: Some(Verdict::Deny),
            reason: Some(Reason {
                code: "unknown_option".into(),
                message: "unknown option --a\u{1b}[2Jb".into(),
                detail: None,
            }),
            ..Default::default()
        };
        let l = format_line(&r);
        assert!(!l.chars().any(char::is_control), "{l:?}");
        assert!(l.contains("\\u{1b}[2Jb"), "{l}");
    }
}
