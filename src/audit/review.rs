//! Reading the audit log back: times, filters, reading (rotated and
//! gzip'ed files too), text lines and per-client summaries
//! (`rsync-gate audit`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::{Event, FileInfo, FileOp, Mode, Record, Tally, Verdict, days_from_civil};

const WHEN_HELP: &str = "use 2026-11-23, 2026-11-23T06:00:00Z, 2026-11-23T08:00:00+02:00, or a relative 30s, 5m, 2h, 3d";

/// `--since` / `--until`: `YYYY-MM-DD` (midnight UTC), an RFC 3339
/// timestamp (`2026-11-23T06:00:00Z`, `...06:00:00.250+02:00`), or a time
/// before `now`: digits and `s`, `m`, `h` or `d` (`30s`, `5m`, `2h`, `3d`).
/// Milliseconds since the epoch.
pub fn parse_when(s: &str, now: SystemTime) -> Result<i64, String> {
    let bad = || format!("'{s}' is not a time ({WHEN_HELP})");
    if let Some(unit) = s
        .chars()
        .last()
        .filter(|c| matches!(c, 's' | 'm' | 'h' | 'd'))
    {
        let num = s.get(..s.len() - 1).ok_or_else(bad)?;
        if !num.is_empty() && num.len() <= 9 && num.bytes().all(|b| b.is_ascii_digit()) {
            let n: i64 = num.parse().map_err(|_| bad())?;
            let unit_ms: i64 = match unit {
                's' => 1000,
                'm' => 60_000,
                'h' => 3_600_000,
                _ => 86_400_000,
            };
            let now_ms = i64::try_from(
                now.duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis(),
            )
            .unwrap_or(i64::MAX);
            return Ok(now_ms.saturating_sub(n.saturating_mul(unit_ms)));
        }
    }
    if s.len() == 10 {
        return date(s).map(|days| days * 86_400_000).ok_or_else(bad);
    }
    parse_timestamp(s).ok_or_else(bad)
}

/// `YYYY-MM-DD` as days since the epoch.
fn date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let (y, m, d) = (digits(s, 0, 4)?, digits(s, 5, 7)?, digits(s, 8, 10)?);
    let days_in_month = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => return None,
    };
    if !(1..=days_in_month).contains(&d) {
        return None;
    }
    Some(days_from_civil(
        y,
        u32::try_from(m).ok()?,
        u32::try_from(d).ok()?,
    ))
}

/// The decimal number in `s[a..b]`, digits only.
fn digits(s: &str, a: usize, b: usize) -> Option<i64> {
    let t = s.get(a..b)?;
    if t.is_empty() || !t.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

/// An RFC 3339 timestamp (`2026-11-23T06:40:00.123Z`; `t` and `z` in
/// lower case and `+HH:MM`/`-HH:MM` offsets too) as milliseconds since the
/// epoch. A time without a zone is not a timestamp.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let days = date(s.get(..10)?)?;
    let b = s.as_bytes();
    if !matches!(b.get(10), Some(b'T' | b't'))
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
    {
        return None;
    }
    let (h, mi, se) = (digits(s, 11, 13)?, digits(s, 14, 16)?, digits(s, 17, 19)?);
    if h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = s.get(19..)?;
    let mut ms = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        // Milliseconds: the first three digits, the rest cut off.
        let first = frac.get(..n.min(3))?;
        ms = format!("{first:0<3}").parse::<i64>().ok()?;
        rest = frac.get(n..)?;
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes().get(3) != Some(&b':') {
                return None;
            }
            let (oh, om) = (digits(rest, 1, 3)?, digits(rest, 4, 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 60 + om)
        }
    };
    let secs = days * 86_400 + h * 3600 + mi * 60 + se - offset_min * 60;
    secs.checked_mul(1000)?.checked_add(ms)
}

/// Which records as to file records (`"event": "file"`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FileRecords {
    /// Every record but file records (the default listing).
    #[default]
    Without,
    /// File records only (`--files`).
    Only,
    /// Every record (`--summary`, which counts files too).
    With,
}

/// Filters for `rsync-gate audit`. A record is shown when it passes every
/// filter that is set.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub files: FileRecords,
    pub client: Option<String>,
    /// Records naming this module (see [`Filter::keep`]).
    pub module: Option<String>,
    pub mode: Option<Mode>,
    pub session: Option<String>,
    /// Refusals only.
    pub denied: bool,
    /// Records at or after this time (ms since the epoch).
    pub since: Option<i64>,
    /// Records before this time (ms since the epoch).
    pub until: Option<i64>,
}

/// The start or end record of a `host::` session, which lists every module
/// the session offered (its in-band requests and refusals name the one
/// used).
fn is_daemon_envelope(r: &Record) -> bool {
    r.mode == Some(Mode::Daemon) && r.decision != Some(Verdict::Deny)
}

impl Filter {
    /// Does the record pass? `module` matches records whose `modules` name
    /// it, but not the start and end records of `host::` sessions, which
    /// name every module the session offered.
    pub fn keep(&self, r: &Record) -> bool {
        let file = r.event == Event::File;
        match self.files {
            FileRecords::Without if file => return false,
            FileRecords::Only if !file => return false,
            _ => {}
        }
        if self.client.as_ref().is_some_and(|c| *c != r.client) {
            return false;
        }
        if self.session.as_ref().is_some_and(|s| *s != r.session) {
            return false;
        }
        if let Some(m) = &self.module
            && (is_daemon_envelope(r) || !r.modules.contains(m))
        {
            return false;
        }
        if self.mode.is_some_and(|m| r.mode != Some(m)) {
            return false;
        }
        if self.denied && r.decision != Some(Verdict::Deny) {
            return false;
        }
        if self.since.is_some() || self.until.is_some() {
            let Some(t) = parse_timestamp(&r.time) else {
                return false;
            };
            if self.since.is_some_and(|s| t < s) || self.until.is_some_and(|u| t >= u) {
                return false;
            }
        }
        true
    }
}

/// A log file to read, as a stream of lines: plain, or gzip'ed (known by
/// its first two bytes, whatever its name).
pub fn open(path: &Path) -> io::Result<Box<dyn BufRead>> {
    let mut file = BufReader::new(File::open(path)?);
    if is_gzip(file.fill_buf()?) {
        Ok(Box::new(BufReader::new(
            flate2::bufread::MultiGzDecoder::new(file),
        )))
    } else {
        Ok(Box::new(file))
    }
}

/// gzip's magic bytes.
pub fn is_gzip(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b])
}

/// The lines of one log read so far: the records that passed the filter
/// and how many lines did not parse.
#[derive(Debug, Default)]
pub struct Lines {
    pub records: Vec<Record>,
    pub bad: usize,
}

impl Lines {
    /// Take one line (without its newline).
    pub fn push(&mut self, line: &[u8], filter: &Filter) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        match serde_json::from_slice::<Record>(line) {
            Ok(r) if filter.keep(&r) => self.records.push(r),
            Ok(_) => {}
            Err(_) => self.bad += 1,
        }
    }

    /// Read every line of `input`.
    pub fn read_all(&mut self, input: impl BufRead, filter: &Filter) -> io::Result<()> {
        for line in input.split(b'\n') {
            self.push(&line?, filter);
        }
        Ok(())
    }
}

/// Matching records from one log file (plain or gzip'ed), and how many
/// lines did not parse.
pub fn read(path: &Path, filter: &Filter) -> io::Result<(Vec<Record>, usize)> {
    let mut lines = Lines::default();
    lines.read_all(open(path)?, filter)?;
    Ok((lines.records, lines.bad))
}

/// Several logs' records in time order. Each log keeps its own order (the
/// order its records were written in); across logs the earliest record
/// comes first, and a tie goes to the log named first. A record whose
/// time does not parse stays after the record before it in its log.
pub fn merge(logs: Vec<Vec<Record>>) -> Vec<Record> {
    let mut heads: Vec<std::iter::Peekable<std::vec::IntoIter<(i64, Record)>>> = logs
        .into_iter()
        .map(|records| {
            let mut last = i64::MIN;
            records
                .into_iter()
                .map(|r| {
                    last = parse_timestamp(&r.time).unwrap_or(last);
                    (last, r)
                })
                .collect::<Vec<_>>()
                .into_iter()
                .peekable()
        })
        .collect();
    let mut out = Vec::new();
    loop {
        let mut best: Option<(usize, i64)> = None;
        for (i, h) in heads.iter_mut().enumerate() {
            if let Some((t, _)) = h.peek()
                && best.is_none_or(|(_, bt)| *t < bt)
            {
                best = Some((i, *t));
            }
        }
        let Some((i, _)) = best else { break };
        match heads.get_mut(i).and_then(Iterator::next) {
            Some((_, r)) => out.push(r),
            None => break,
        }
    }
    out
}

/// One human-readable line per record: time, session, client, source
/// address, then `allow`/`deny` with the mode and modules and the reason
/// (with its detail), the in-band request or the command; or `end` with the
/// mode and modules, the exit status (or signal), the duration when one was
/// measured, and the in-band request.
pub fn format_line(r: &Record) -> String {
    crate::escape::display(&format_line_raw(r))
}

fn format_line_raw(r: &Record) -> String {
    if let (Event::File, Some(f)) = (r.event, &r.file) {
        return file_line(r, f);
    }
    let source = r.source.as_ref().map_or("-", |s| s.addr.as_str());
    let session = if r.session.is_empty() {
        "-"
    } else {
        &r.session
    };
    let mode = r.mode.map_or("-", Mode::name);
    let modules = if r.modules.is_empty() {
        "-".to_string()
    } else {
        r.modules.join(",")
    };
    let reason = r.reason.as_ref().map(|reason| match &reason.detail {
        Some(d) => format!("{}: {} (detail: {d})", reason.code, reason.message),
        None => format!("{}: {}", reason.code, reason.message),
    });
    let (verb, tail) = if r.event == Event::End {
        let mut tail = match (r.exit_status, r.signal) {
            (Some(c), _) => format!("exit {c}"),
            (None, Some(s)) => format!("signal {s}"),
            _ => "ended".into(),
        };
        if let Some(ms) = r.duration_ms {
            tail.push_str(&format!(" {ms}ms"));
        }
        for extra in [&r.request, &reason].into_iter().flatten() {
            tail.push(' ');
            tail.push_str(extra);
        }
        ("end", tail)
    } else {
        let verb = match r.decision {
            Some(Verdict::Allow) => "allow",
            Some(Verdict::Deny) => "deny",
            None => "-",
        };
        let tail = match (reason, &r.request) {
            (Some(reason), _) => reason,
            (None, Some(req)) => req.clone(),
            (None, None) => r.command.clone().unwrap_or_default(),
        };
        (verb, tail)
    };
    format!(
        "{} {session:<24} {:<12} {source:<15} {verb:<6} {mode:<8} {modules:<12} {tail}",
        r.time, r.client
    )
    .trim_end()
    .to_string()
}

/// A file record: time, session, client, module, then the operation, the
/// bytes transferred and the file's length, and the path; or, for the
/// record past `transfer_log_limit`, what it leaves out.
fn file_line(r: &Record, f: &FileInfo) -> String {
    let session = if r.session.is_empty() {
        "-"
    } else {
        &r.session
    };
    let modules = if r.modules.is_empty() {
        "-".to_string()
    } else {
        r.modules.join(",")
    };
    let tail = if f.omitted.is_empty() {
        let op = f.op.map_or("-", FileOp::name);
        let numbers = format!(
            "{}/{}",
            f.bytes.map_or("-".into(), |b| b.to_string()),
            f.length.map_or("-".into(), |l| l.to_string())
        );
        let path = f.path.as_deref().unwrap_or("-");
        let cut = if f.cut { " (name cut)" } else { "" };
        format!("{op:<4} {numbers:>19} {path}{cut}")
    } else {
        let left: Vec<String> = f
            .omitted
            .iter()
            .map(|(op, t)| format!("{} {} files {} bytes", op.name(), t.files, t.bytes))
            .collect();
        format!("omitted past transfer_log_limit: {}", left.join(", "))
    };
    format!(
        "{} {session:<24} {:<12} {modules:<12} {tail}",
        r.time, r.client
    )
    .trim_end()
    .to_string()
}

/// One client's counts (`--summary`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClientSummary {
    pub client: String,
    /// Requests allowed.
    pub allowed: usize,
    /// Requests refused.
    pub denied: usize,
    /// Allowed requests that ended badly: a non-zero exit status, a signal,
    /// or rsync (or the job) could not be run.
    pub failed: usize,
    /// The newest record's time.
    pub last_seen: String,
    /// Allowed requests per module.
    pub modules: BTreeMap<String, usize>,
    /// Refusals per reason code.
    pub refusals: BTreeMap<String, usize>,
    /// Files sent to the client (pulls) and their bytes, from file records.
    #[serde(skip_serializing_if = "is_nothing")]
    pub sent: Tally,
    /// Files received from the client (pushes) and their bytes.
    #[serde(skip_serializing_if = "is_nothing")]
    pub received: Tally,
    /// Files deleted on the server.
    #[serde(skip_serializing_if = "is_zero")]
    pub deleted: u64,
}

fn is_nothing(t: &Tally) -> bool {
    *t == Tally::default()
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl ClientSummary {
    /// Count a file record (or what a record past the limit left out).
    fn count(&mut self, f: &FileInfo) {
        let mut add = |op: FileOp, t: Tally| {
            let to = match op {
                FileOp::Send => &mut self.sent,
                FileOp::Recv => &mut self.received,
                FileOp::Del => {
                    self.deleted = self.deleted.saturating_add(t.files);
                    return;
                }
                FileOp::Other => return,
            };
            to.files = to.files.saturating_add(t.files);
            to.bytes = to.bytes.saturating_add(t.bytes);
        };
        if let Some(op) = f.op {
            add(
                op,
                Tally {
                    files: 1,
                    bytes: f.bytes.unwrap_or(0),
                },
            );
        }
        for (op, t) in &f.omitted {
            add(*op, *t);
        }
    }

    fn has_files(&self) -> bool {
        !is_nothing(&self.sent) || !is_nothing(&self.received) || self.deleted > 0
    }
}

/// Per-client counts. Every request counts once, by its session's
/// records: a `host:path` session, a `host::` session's in-band request or
/// the daemon's refusal of the module asked for, a refused session, a
/// trigger, a probe. A session with a refusal is denied (a refused in-band
/// request is not also failed); an allowed one failed when the end record
/// of what ran (the in-band request's, for a `host::` session) reports a
/// non-zero status, a signal or that nothing could run. A `host::` session
/// that named no module (a listing) is allowed, and its exit status (255,
/// rsync's own after a listing) is not a failure.
pub fn summarize(records: &[Record]) -> Vec<ClientSummary> {
    // (client, session) -> the session's records; records without a
    // session are each a session of their own.
    let mut sessions: BTreeMap<(&str, String), Vec<&Record>> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        let key = if r.session.is_empty() {
            format!("\0{i}")
        } else {
            r.session.clone()
        };
        sessions.entry((&r.client, key)).or_default().push(r);
    }
    let mut rows: BTreeMap<&str, ClientSummary> = BTreeMap::new();
    for ((client, _), recs) in sessions {
        let row = rows.entry(client).or_insert_with(|| ClientSummary {
            client: client.to_string(),
            ..Default::default()
        });
        for r in &recs {
            if later(&r.time, &row.last_seen) {
                row.last_seen = r.time.clone();
            }
            if let (Event::File, Some(f)) = (r.event, &r.file) {
                row.count(f);
            }
        }
        let decisions = || recs.iter().filter(|r| r.event == Event::Decision);
        if let Some(deny) = decisions().find(|r| r.decision == Some(Verdict::Deny)) {
            row.denied += 1;
            let code = deny.reason.as_ref().map_or("-", |r| r.code.as_str());
            *row.refusals.entry(code.to_string()).or_default() += 1;
            continue;
        }
        if !decisions().any(|r| r.decision == Some(Verdict::Allow)) {
            continue;
        }
        row.allowed += 1;
        // What ran: the in-band request of a host:: session, else the
        // session itself.
        let inner: Vec<&&Record> = decisions()
            .filter(|r| r.decision == Some(Verdict::Allow) && r.mode != Some(Mode::Daemon))
            .collect();
        let modules: BTreeSet<&String> = inner.iter().flat_map(|r| r.modules.iter()).collect();
        for m in modules {
            *row.modules.entry(m.clone()).or_default() += 1;
        }
        let ends = || recs.iter().filter(|r| r.event == Event::End);
        let end = ends()
            .find(|r| r.mode != Some(Mode::Daemon))
            .or(ends().next());
        if let Some(end) = end
            && ended_badly(end, inner.is_empty())
        {
            row.failed += 1;
        }
    }
    rows.into_values().collect()
}

/// Is `a` a later time than `b` (by the clock, or as text when either does
/// not parse)?
fn later(a: &str, b: &str) -> bool {
    match (parse_timestamp(a), parse_timestamp(b)) {
        (Some(x), Some(y)) => x > y,
        (Some(_), None) => true,
        (None, Some(_)) => false,
        (None, None) => a > b,
    }
}

/// Did what this end record is about fail? `no_request`: nothing ran in
/// the session but the daemon itself (a `host::` session that named no
/// module: a listing, or a client that left before naming one), whose exit
/// status is no transfer's (255 after a listing); only a daemon that could
/// not run or was killed failed.
fn ended_badly(end: &Record, no_request: bool) -> bool {
    if end.reason.is_some() || end.signal.is_some() {
        return true;
    }
    if no_request && end.mode == Some(Mode::Daemon) {
        return false;
    }
    !matches!(end.exit_status, None | Some(0))
}

/// The summary as a table; with file records, the files and bytes sent
/// to each client (`out`), received from it (`in`) and deleted.
pub fn summary_text(rows: &[ClientSummary]) -> String {
    let files = rows.iter().any(ClientSummary::has_files);
    let mut out = String::from(if files {
        "client        allowed  denied  failed  files out     bytes out  files in      bytes in  deleted  last seen                 modules / refusals\n"
    } else {
        "client        allowed  denied  failed  last seen                 modules / refusals\n"
    });
    for row in rows {
        let counts = |m: &BTreeMap<String, usize>| -> String {
            m.iter()
                .map(|(k, n)| format!("{k}={n}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let (mods, reasons) = (counts(&row.modules), counts(&row.refusals));
        let sep = if mods.is_empty() || reasons.is_empty() {
            ""
        } else {
            " / "
        };
        let moved = if files {
            format!(
                "  {:>9} {:>13} {:>9} {:>13} {:>8}",
                row.sent.files, row.sent.bytes, row.received.files, row.received.bytes, row.deleted
            )
        } else {
            String::new()
        };
        let line = format!(
            "{:<13} {:>7} {:>7} {:>7}{moved}  {:<25} {mods}{sep}{reasons}",
            row.client, row.allowed, row.denied, row.failed, row.last_seen,
        );
        out.push_str(&crate::escape::display(line.trim_end()));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditLog, Reason, Source, rfc3339};
    use std::io::Write;
    use std::time::Duration;

    const NOW: u64 = 1_795_416_000; // 2026-11-23T06:40:00Z

    #[test]
    fn when_accepts_relative_dates_and_timestamps() {
        let now = UNIX_EPOCH + Duration::from_secs(NOW);
        let ms = |s: u64| i64::try_from(s * 1000).unwrap();
        for (arg, want) in [
            ("30s", ms(NOW - 30)),
            ("0s", ms(NOW)),
            ("90s", ms(NOW - 90)),
            ("5m", ms(NOW - 300)),
            ("2h", ms(NOW - 7200)),
            ("24h", ms(NOW - 86_400)),
            ("3d", ms(NOW - 3 * 86_400)),
            ("2026-11-23", ms(1_795_392_000)),
            ("2024-02-29", ms(1_709_164_800)),
            ("2026-11-23T06:40:00Z", ms(NOW)),
            ("2026-11-23t06:40:00z", ms(NOW)),
            ("2026-11-23T06:40:00.123Z", ms(NOW) + 123),
            ("2026-11-23T06:40:00.5Z", ms(NOW) + 500),
            ("2026-11-23T06:40:00.123456789Z", ms(NOW) + 123),
            ("2026-11-23T08:40:00+02:00", ms(NOW)),
            ("2026-11-23T01:10:00-05:30", ms(NOW)),
            ("2026-11-23T08:40:00.250+02:00", ms(NOW) + 250),
        ] {
            assert_eq!(parse_when(arg, now), Ok(want), "{arg}");
        }
        for bad in [
            "",
            "yesterday",
            "s",
            "-5m",
            "5 m",
            "5x",
            "1w",
            "9999999999s",
            "2026-13-01",
            "2026-02-30",
            "2025-02-29",
            "2026-11-23 06:00:00Z",
            "2026-11-23T06:00:00",
            "2026-11-23T24:00:00Z",
            "2026-11-23T06:00:00.Z",
            "2026-11-23T06:00:00+2:00",
            "2026-11-23T06:00:00+02",
            "2026-11-23T06:00:00+24:00",
            "2026-11-23T06:00Z",
            "2026-1-23",
        ] {
            assert!(parse_when(bad, now).is_err(), "{bad}");
        }
        // What the gate writes reads back.
        assert_eq!(parse_timestamp(&rfc3339(now)), Some(ms(NOW)));
        assert_eq!(
            parse_timestamp(&rfc3339(now + Duration::from_millis(7))),
            Some(ms(NOW) + 7)
        );
    }

    fn rec(
        time: &str,
        session: &str,
        client: &str,
        event: Event,
        decision: Option<Verdict>,
        mode: Option<Mode>,
        modules: &[&str],
    ) -> Record {
        Record {
            time: time.into(),
            event,
            session: session.into(),
            client: client.into(),
            decision,
            mode,
            modules: modules.iter().map(|m| m.to_string()).collect(),
            ..Default::default()
        }
    }

    fn reason(code: &str) -> Option<Reason> {
        Some(Reason {
            code: code.into(),
            message: format!("{code} message"),
            detail: None,
        })
    }

    const A: Option<Verdict> = Some(Verdict::Allow);
    const D: Option<Verdict> = Some(Verdict::Deny);
    const DEC: Event = Event::Decision;
    const END: Event = Event::End;

    fn ended(mut r: Record, exit: Option<i32>) -> Record {
        r.exit_status = exit;
        r
    }

    /// A `host::` session: its start and end, and what happened inside.
    fn daemon_session(s: &str, client: &str, inside: Vec<Record>, exit: i32) -> Vec<Record> {
        let t = "2026-11-23T06:00:00.000Z";
        let mut v = vec![rec(
            t,
            s,
            client,
            DEC,
            A,
            Some(Mode::Daemon),
            &["www", "up"],
        )];
        v.extend(inside);
        v.push(ended(
            rec(t, s, client, END, None, Some(Mode::Daemon), &["www", "up"]),
            Some(exit),
        ));
        v
    }

    fn inband(s: &str, decision: Option<Verdict>, module: &str, code: Option<&str>) -> Record {
        let mut r = rec(
            "2026-11-23T06:00:00.001Z",
            s,
            "c",
            DEC,
            decision,
            Some(Mode::Receiver),
            &[module],
        );
        r.request = Some(format!("{module}/"));
        r.reason = code.and_then(reason);
        r
    }

    fn inband_end(s: &str, module: &str, exit: i32) -> Record {
        let mut r = rec(
            "2026-11-23T06:00:00.002Z",
            s,
            "c",
            END,
            None,
            None,
            &[module],
        );
        r.request = Some(format!("{module}/"));
        r.exit_status = Some(exit);
        r
    }

    fn daemon_refusal(s: &str, module: &str, code: &str) -> Record {
        let mut r = rec(
            "2026-11-23T06:00:00.003Z",
            s,
            "c",
            DEC,
            D,
            Some(Mode::Daemon),
            &[module],
        );
        r.request = Some(module.into());
        r.reason = reason(code);
        r
    }

    /// (what happened, (allowed, denied, failed), modules, refusals)
    #[test]
    fn summary_counts_each_request_once() {
        let t = "2026-11-23T06:00:00.000Z";
        let checked = |s: &str, exit: Option<i32>| {
            let mut v = vec![rec(t, s, "c", DEC, A, Some(Mode::Sender), &["www"])];
            if let Some(e) = exit {
                v.push(ended(
                    rec(t, s, "c", END, None, Some(Mode::Sender), &["www"]),
                    Some(e),
                ));
            }
            v
        };
        let refused = |s: &str, code: &str, mode: Option<Mode>| {
            let mut r = rec(t, s, "c", DEC, D, mode, &[]);
            r.reason = reason(code);
            vec![r]
        };
        type Case = (
            &'static str,
            Vec<Record>,
            (usize, usize, usize),
            &'static str,
        );
        let cases: Vec<Case> = vec![
            (
                "host:path pull that worked",
                checked("1", Some(0)),
                (1, 0, 0),
                "www=1",
            ),
            (
                "host:path pull that failed",
                checked("1", Some(23)),
                (1, 0, 1),
                "www=1",
            ),
            (
                "host:path pull still running",
                checked("1", None),
                (1, 0, 0),
                "www=1",
            ),
            (
                "host:path refusal",
                refused("1", "read_only", Some(Mode::Receiver)),
                (0, 1, 0),
                "read_only=1",
            ),
            (
                "host:: session refused as a whole",
                refused("1", "source_not_allowed", Some(Mode::Daemon)),
                (0, 1, 0),
                "source_not_allowed=1",
            ),
            (
                "host:: transfer that worked",
                daemon_session(
                    "1",
                    "c",
                    vec![inband("1", A, "up", None), inband_end("1", "up", 0)],
                    0,
                ),
                (1, 0, 0),
                "up=1",
            ),
            (
                "host:: transfer that failed",
                daemon_session(
                    "1",
                    "c",
                    vec![inband("1", A, "up", None), inband_end("1", "up", 23)],
                    23,
                ),
                (1, 0, 1),
                "up=1",
            ),
            (
                "host:: in-band refusal: denied, not also failed",
                daemon_session(
                    "1",
                    "c",
                    vec![
                        inband("1", D, "www", Some("read_only")),
                        inband_end("1", "www", 4),
                    ],
                    4,
                ),
                (0, 1, 0),
                "read_only=1",
            ),
            (
                "host:: unknown module refused by the daemon",
                daemon_session(
                    "1",
                    "c",
                    vec![daemon_refusal("1", "nosuch", "module_not_available")],
                    255,
                ),
                (0, 1, 0),
                "module_not_available=1",
            ),
            (
                "host:: connection limit",
                daemon_session("1", "c", vec![daemon_refusal("1", "up", "busy")], 255),
                (0, 1, 0),
                "busy=1",
            ),
            (
                "host:: listing",
                daemon_session("1", "c", vec![], 255),
                (1, 0, 0),
                "",
            ),
            (
                "host:: listing whose daemon ended otherwise",
                daemon_session("1", "c", vec![], 19),
                (1, 0, 0),
                "",
            ),
            (
                "host:: session killed before naming a module",
                {
                    let mut v = daemon_session("1", "c", vec![], 0);
                    v[1].exit_status = None;
                    v[1].signal = Some(9);
                    v
                },
                (1, 0, 1),
                "",
            ),
            (
                "host:: transfer whose post-xfer record is missing",
                daemon_session("1", "c", vec![inband("1", A, "up", None)], 12),
                (1, 0, 1),
                "up=1",
            ),
            (
                "rsync could not be started",
                {
                    let mut v = checked("1", Some(0));
                    v[1].exit_status = None;
                    v[1].reason = reason("internal");
                    v
                },
                (1, 0, 1),
                "www=1",
            ),
            (
                "probe",
                vec![rec(t, "1", "c", DEC, A, Some(Mode::Probe), &[])],
                (1, 0, 0),
                "",
            ),
            (
                "two sessions, records interleaved",
                {
                    let mut a = checked("1", Some(0));
                    let b = checked("2", Some(12));
                    a.insert(1, b[0].clone());
                    a.push(b[1].clone());
                    a
                },
                (2, 0, 1),
                "www=2",
            ),
            (
                "records without a session are their own",
                {
                    let mut v = refused("", "no_command", None);
                    v.extend(refused("", "no_command", None));
                    v
                },
                (0, 2, 0),
                "no_command=2",
            ),
            (
                "an end alone (its decision filtered out)",
                checked("1", Some(3)).split_off(1),
                (0, 0, 0),
                "",
            ),
        ];
        for (what, records, (allowed, denied, failed), counts) in cases {
            let rows = summarize(&records);
            assert_eq!(rows.len(), 1, "{what}");
            let row = &rows[0];
            assert_eq!(
                (row.allowed, row.denied, row.failed),
                (allowed, denied, failed),
                "{what}"
            );
            let shown: Vec<String> = row
                .modules
                .iter()
                .chain(row.refusals.iter())
                .map(|(k, n)| format!("{k}={n}"))
                .collect();
            assert_eq!(shown.join(","), counts, "{what}");
        }
    }

    #[test]
    fn summary_rows_text_and_json() {
        let mut records = daemon_session(
            "9",
            "host1",
            vec![daemon_refusal("9", "www", "module_not_available")],
            255,
        );
        for r in &mut records {
            r.client = "host1".into();
        }
        let mut pull = rec(
            "2026-11-23T07:00:00.000Z",
            "8",
            "mirror01",
            DEC,
            A,
            Some(Mode::Sender),
            &["www"],
        );
        records.push(pull.clone());
        pull.event = END;
        pull.decision = None;
        pull.exit_status = Some(0);
        pull.time = "2026-11-23T07:00:01.000Z".into();
        records.push(pull);
        let rows = summarize(&records);
        assert_eq!(
            summary_text(&rows),
            "client        allowed  denied  failed  last seen                 modules / refusals\n\
             host1               0       1       0  2026-11-23T06:00:00.003Z  module_not_available=1\n\
             mirror01            1       0       0  2026-11-23T07:00:01.000Z  www=1\n"
        );
        let json: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| serde_json::to_value(r).unwrap())
            .collect();
        assert_eq!(
            json[0],
            serde_json::json!({"client": "host1", "allowed": 0, "denied": 1, "failed": 0,
                "last_seen": "2026-11-23T06:00:00.003Z", "modules": {},
                "refusals": {"module_not_available": 1}})
        );
    }

    /// (filter, the records it keeps, by session)
    #[test]
    fn filters() {
        let mut records = daemon_session(
            "d1",
            "c",
            vec![inband("d1", A, "up", None), inband_end("d1", "up", 0)],
            0,
        );
        records.extend(daemon_session(
            "d2",
            "c",
            vec![daemon_refusal("d2", "www", "module_unsafe")],
            255,
        ));
        let mut pull = rec(
            "2026-11-23T07:00:00.000Z",
            "p",
            "other",
            DEC,
            A,
            Some(Mode::Sender),
            &["www"],
        );
        records.push(pull.clone());
        pull.event = END;
        pull.decision = None;
        pull.time = "2026-11-23T07:00:02.000Z".into();
        records.push(pull);
        let names = |f: &Filter| -> Vec<String> {
            records
                .iter()
                .filter(|r| f.keep(r))
                .map(|r| {
                    format!(
                        "{}:{}:{}",
                        r.session,
                        if r.event == END { "end" } else { "dec" },
                        r.mode.map_or("-", Mode::name)
                    )
                })
                .collect()
        };
        let at = |s: &str| parse_timestamp(s);
        let cases: Vec<(Filter, &str)> = vec![
            (
                Filter {
                    client: Some("other".into()),
                    ..Default::default()
                },
                "p:dec:sender p:end:sender",
            ),
            (
                Filter {
                    module: Some("www".into()),
                    ..Default::default()
                },
                // Not the host:: sessions' own records, which list both
                // modules offered.
                "d2:dec:daemon p:dec:sender p:end:sender",
            ),
            (
                Filter {
                    module: Some("up".into()),
                    ..Default::default()
                },
                "d1:dec:receiver d1:end:-",
            ),
            (
                Filter {
                    mode: Some(Mode::Daemon),
                    ..Default::default()
                },
                "d1:dec:daemon d1:end:daemon d2:dec:daemon d2:dec:daemon d2:end:daemon",
            ),
            (
                Filter {
                    session: Some("d2".into()),
                    denied: true,
                    ..Default::default()
                },
                "d2:dec:daemon",
            ),
            (
                Filter {
                    since: at("2026-11-23T07:00:00Z"),
                    ..Default::default()
                },
                "p:dec:sender p:end:sender",
            ),
            (
                Filter {
                    since: at("2026-11-23T06:00:00.001Z"),
                    until: at("2026-11-23T07:00:00Z"),
                    client: Some("c".into()),
                    ..Default::default()
                },
                "d1:dec:receiver d1:end:- d2:dec:daemon",
            ),
            (
                Filter {
                    until: at("2026-11-23T07:00:02Z"),
                    client: Some("other".into()),
                    ..Default::default()
                },
                "p:dec:sender",
            ),
        ];
        for (f, want) in cases {
            assert_eq!(names(&f).join(" "), want, "{f:?}");
        }
        // A record whose time does not parse passes no time filter.
        let mut odd = records[0].clone();
        odd.time = "yesterday".into();
        assert!(Filter::default().keep(&odd));
        assert!(
            !Filter {
                since: Some(0),
                ..Default::default()
            }
            .keep(&odd)
        );
    }

    #[test]
    fn text_lines() {
        let src = Some(Source {
            addr: "192.0.2.10".into(),
            port: 4000,
        });
        let mut deny = rec(
            "2026-11-23T07:49:41.348Z",
            "18ea9d2473194ae0-4956",
            "mirror01",
            DEC,
            D,
            Some(Mode::Daemon),
            &["www"],
        );
        deny.source = src.clone();
        deny.reason = Some(Reason {
            code: "module_unsafe".into(),
            message: "module 'www' is not safe to serve (the server's audit log says why)".into(),
            detail: Some("/srv/www is writable by others (mode 777)".into()),
        });
        assert_eq!(
            format_line(&deny),
            "2026-11-23T07:49:41.348Z 18ea9d2473194ae0-4956    mirror01     192.0.2.10      deny   daemon   www          \
             module_unsafe: module 'www' is not safe to serve (the server's audit log says why) (detail: /srv/www is writable by others (mode 777))"
        );
        let mut end = rec(
            "2026-11-23T07:49:40.314Z",
            "18ea9d24342a8bfc-4942",
            "mirror01",
            END,
            None,
            Some(Mode::Sender),
            &["www"],
        );
        end.source = src.clone();
        end.exit_status = Some(0);
        end.duration_ms = Some(32);
        assert_eq!(
            format_line(&end),
            "2026-11-23T07:49:40.314Z 18ea9d24342a8bfc-4942    mirror01     192.0.2.10      end    sender   www          exit 0 32ms"
        );
        // An in-band request's end: no duration was measured, none shown.
        end.mode = None;
        end.duration_ms = None;
        end.request = Some("www/".into());
        assert_eq!(
            format_line(&end),
            "2026-11-23T07:49:40.314Z 18ea9d24342a8bfc-4942    mirror01     192.0.2.10      end    -        www          exit 0 www/"
        );
        end.exit_status = None;
        end.signal = Some(9);
        end.request = None;
        end.reason = reason("internal");
        assert!(
            format_line(&end)
                .ends_with("end    -        www          signal 9 internal: internal message"),
            "{}",
            format_line(&end)
        );
    }

    #[test]
    fn review_lines_never_carry_control_characters() {
        let r = Record {
            event: Event::Decision,
            client: "c\u{202e}".into(),
            decision: Some(Verdict::Deny),
            reason: Some(Reason {
                code: "unknown_option".into(),
                message: "unknown option --a\u{1b}[2Jb".into(),
                detail: Some("x\u{7}".into()),
            }),
            ..Default::default()
        };
        let l = format_line(&r);
        assert!(!l.chars().any(crate::escape::needs_escape), "{l:?}");
        assert!(l.contains("\\u{1b}[2Jb"), "{l}");
        let s = summary_text(&summarize(&[r]));
        assert!(
            !s.chars()
                .any(|c| c != '\n' && crate::escape::needs_escape(c)),
            "{s:?}"
        );
    }

    fn write_records(path: &Path, records: &[Record]) {
        let mut log = AuditLog::open(path).unwrap();
        for r in records {
            log.write(r).unwrap();
        }
    }

    #[test]
    fn appends_whole_lines_and_reads_them_back() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("audit.jsonl");
        let mut r = rec(
            "2026-11-23T06:40:00.000Z",
            "1-2",
            "backup01",
            DEC,
            D,
            None,
            &[],
        );
        r.reason = reason("read_only");
        let mut other = r.clone();
        other.client = "other".into();
        other.decision = A;
        other.reason = None;
        write_records(&p, &[r, other]);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"garbage\n\n")
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
    }

    /// Rotated logs, gzip'ed or not (known by content, not by name), read
    /// in time order whatever order they are named in.
    #[test]
    fn rotated_and_gzipped_logs_merge_in_time_order() {
        let d = tempfile::tempdir().unwrap();
        let at = |n: u64| {
            rec(
                &rfc3339(UNIX_EPOCH + Duration::from_secs(NOW + n)),
                &n.to_string(),
                "c",
                DEC,
                A,
                Some(Mode::Probe),
                &[],
            )
        };
        let oldest = d.path().join("audit.jsonl.2.gz");
        let older = d.path().join("audit.jsonl.1");
        let live = d.path().join("audit.jsonl");
        let plain = d.path().join("plain");
        write_records(&plain, &[at(1), at(2)]);
        let mut gz =
            flate2::write::GzEncoder::new(File::create(&oldest).unwrap(), Default::default());
        gz.write_all(&std::fs::read(&plain).unwrap()).unwrap();
        gz.finish().unwrap();
        // A second gzip member (as `cat a.gz b.gz` makes) is read too.
        let mut gz2 = flate2::write::GzEncoder::new(
            std::fs::OpenOptions::new()
                .append(true)
                .open(&oldest)
                .unwrap(),
            Default::default(),
        );
        gz2.write_all(&serde_json::to_vec(&at(3)).unwrap()).unwrap();
        gz2.write_all(b"\n").unwrap();
        gz2.finish().unwrap();
        write_records(&older, &[at(4), at(6)]);
        write_records(&live, &[at(5), at(7)]);
        // Compressed under a name without .gz: still read as gzip.
        let renamed = d.path().join("renamed");
        std::fs::copy(&oldest, &renamed).unwrap();
        for order in [vec![&oldest, &older, &live], vec![&live, &older, &renamed]] {
            let logs: Vec<Vec<Record>> = order
                .iter()
                .map(|p| read(p, &Filter::default()).unwrap().0)
                .collect();
            let sessions: Vec<String> = merge(logs).into_iter().map(|r| r.session).collect();
            assert_eq!(sessions, ["1", "2", "3", "4", "5", "6", "7"], "{order:?}");
        }
        // Within one log the written order stays, even where the clock
        // went backwards; a record without a time stays in place.
        let mut untimed = at(0);
        untimed.time = "?".into();
        let merged = merge(vec![vec![at(9), at(8), untimed], vec![at(8)]]);
        let sessions: Vec<&str> = merged.iter().map(|r| r.session.as_str()).collect();
        assert_eq!(sessions, ["8", "9", "8", "0"]);
        // A broken gzip stream is an error, not silence.
        std::fs::write(d.path().join("bad.gz"), [0x1f, 0x8b, 8, 0, 1, 2]).unwrap();
        assert!(read(&d.path().join("bad.gz"), &Filter::default()).is_err());
    }
}
