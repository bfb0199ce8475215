//! Audit records (one JSON object per line) and their review.
//!
//! Every decision writes one line before anything runs; a session that ran
//! writes a second line when it ends. Each line is appended with a single
//! `write(2)` on an `O_APPEND` descriptor, so parallel sessions never
//! interleave, and a failed or short write refuses the request.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Largest audit line written; longer fields are cut.
const MAX_FIELD: usize = 16 * 1024;

/// The client's address, as `SSH_CONNECTION` gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub addr: String,
    pub port: u16,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One audit line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub time: String,
    /// `decision` or `end`.
    pub event: String,
    /// Joins a decision to its end record.
    pub session: String,
    pub client: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// `allow` or `deny` (decision records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// `sender`, `receiver`, `daemon`, `probe`, `trigger`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub argv: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Whether the kernel sandbox was applied (`applied`, `unsupported`, `off`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Daemon mode: the in-band request (`module/path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
}

/// An open audit log.
#[derive(Debug)]
pub struct AuditLog {
    file: File,
}

impl AuditLog {
    /// Open (creating if needed) for appending. Refuses symlinks and
    /// anything but a regular file.
    pub fn open(path: &Path) -> io::Result<AuditLog> {
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o640)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)?;
        let md = file.metadata()?;
        if !md.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        Ok(AuditLog { file })
    }

    pub fn metadata(&self) -> io::Result<std::fs::Metadata> {
        self.file.metadata()
    }

    /// Append one record with a single write.
    pub fn write(&mut self, record: &Record) -> io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
        line.push(b'\n');
        let n = self.file.write(&line)?;
        if n != line.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short write to the audit log",
            ));
        }
        Ok(())
    }
}

/// Escape bytes for the log: printable text as is, control characters and
/// invalid UTF-8 as backslash escapes; cut at [`MAX_FIELD`] bytes.
pub fn escape(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len());
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                s.push_str("\\\\");
            } else if c.is_control() {
                s.extend(c.escape_default());
            } else {
                s.push(c);
            }
        }
        for byte in chunk.invalid() {
            s.push_str(&format!("\\x{byte:02x}"));
        }
        if s.len() > MAX_FIELD {
            let mut cut = MAX_FIELD;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
            s.push_str("...");
            break;
        }
    }
    s
}

/// RFC 3339 UTC with milliseconds.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day) (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

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
        if self.denied && r.decision.as_deref() != Some("deny") {
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
    if r.event == "end" {
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
    let decision = r.decision.as_deref().unwrap_or("-");
    let mode = r.mode.as_deref().unwrap_or("-");
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
        if r.mode.as_deref() == Some("daemon") {
            continue;
        }
        match (r.event.as_str(), r.decision.as_deref()) {
            ("decision", Some("allow")) => {
                row.allowed += 1;
                for m in &r.modules {
                    *row.modules.entry(m.clone()).or_default() += 1;
                }
            }
            ("decision", Some("deny")) => {
                row.denied += 1;
                if let Some(reason) = &r.reason {
                    *row.reasons.entry(reason.code.clone()).or_default() += 1;
                }
            }
            ("end", _) if r.exit_status != Some(0) => row.failed += 1,
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
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        let t = |s: u64| rfc3339(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(t(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(t(951_782_400), "2000-02-29T00:00:00.000Z");
        assert_eq!(t(1_795_416_000), "2026-11-23T06:40:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(1_234)),
            "1970-01-01T00:00:01.234Z"
        );
    }

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
    fn escaping() {
        assert_eq!(
            escape(b"rsync --server . a\\ b"),
            "rsync --server . a\\\\ b"
        );
        assert_eq!(escape(b"a\x1b[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(escape(b"a\rb\tc"), "a\\rb\\tc");
        assert_eq!(escape(b"\xff\xfe"), "\\xff\\xfe");
        assert!(escape(&vec![b'a'; MAX_FIELD * 2]).len() < MAX_FIELD + 10);
    }

    #[test]
    fn appends_whole_lines_and_reads_them_back() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("audit.jsonl");
        let mut log = AuditLog::open(&p).unwrap();
        let mut r = Record {
            time: "2026-11-23T06:40:00.000Z".into(),
            event: "decision".into(),
            session: "1-2".into(),
            client: "backup01".into(),
            decision: Some("deny".into()),
            reason: Some(Reason {
                code: "read_only".into(),
                message: "module 'www' is read-only".into(),
                detail: None,
            }),
            ..Default::default()
        };
        log.write(&r).unwrap();
        r.client = "other".into();
        r.decision = Some("allow".into());
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
            event: "decision".into(),
            client: "c".into(),
            decision: Some("deny".into()),
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

    #[test]
    fn refuses_symlinked_logs() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("elsewhere");
        std::fs::write(&target, "").unwrap();
        std::os::unix::fs::symlink(&target, d.path().join("audit.jsonl")).unwrap();
        assert!(AuditLog::open(&d.path().join("audit.jsonl")).is_err());
        assert!(AuditLog::open(d.path()).is_err());
    }
}
