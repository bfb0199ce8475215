//! Audit records (one JSON object per line), the log they go to, and their
//! review ([`review`]), syslog summaries ([`syslog`]) and journal entries
//! ([`journald`]).
//!
//! Every decision writes one line before anything runs; a session that ran
//! writes a second line when it ends. Each line is appended with a single
//! `write(2)` on an `O_APPEND` descriptor, so parallel sessions never
//! interleave, and a failed or short write refuses the request.

pub mod follow;
pub mod journald;
pub mod review;
pub mod syslog;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::deny::DenyReason;

/// What a record is about.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A decision, written before anything runs.
    #[default]
    Decision,
    /// How a session (or an in-band request) ended.
    End,
    /// A file sent, received or deleted (modules with `transfer_log`).
    File,
    /// Written by another version of the gate.
    #[serde(other)]
    Other,
}

/// A decision record's verdict (the JSON field `decision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Allow,
    Deny,
}

/// What rsync played, or what else the request was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The client pulls.
    Sender,
    /// The client pushes.
    Receiver,
    /// A `host::module` session.
    Daemon,
    /// `true`.
    Probe,
    /// A push-mirror trigger.
    Trigger,
    /// Written by another version of the gate.
    #[serde(other)]
    Other,
}

impl From<crate::decide::Mode> for Mode {
    fn from(m: crate::decide::Mode) -> Mode {
        match m {
            crate::decide::Mode::Sender => Mode::Sender,
            crate::decide::Mode::Receiver => Mode::Receiver,
        }
    }
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Sender => "sender",
            Mode::Receiver => "receiver",
            Mode::Daemon => "daemon",
            Mode::Probe => "probe",
            Mode::Trigger => "trigger",
            Mode::Other => "other",
        }
    }
}

/// The kernel sandbox around what ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxStatus {
    #[serde(rename = "applied")]
    Applied,
    #[serde(rename = "applied (partially: older kernel)")]
    Partial,
    #[serde(rename = "unsupported by the kernel")]
    Unavailable,
    #[serde(rename = "off")]
    Off,
    /// Written by another version of the gate.
    #[serde(other)]
    Other,
}

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

impl From<&DenyReason> for Reason {
    /// The code and the client's message, and the server-side detail the
    /// client does not see.
    fn from(reason: &DenyReason) -> Reason {
        let detail = match reason {
            DenyReason::ModuleUnsafe { why, .. }
            | DenyReason::ModuleMissing { why, .. }
            | DenyReason::Swappable { why, .. } => Some(why.clone()),
            DenyReason::AuditUnavailable(d)
            | DenyReason::LockDirUnsafe(d)
            | DenyReason::Internal(d)
            | DenyReason::SandboxUnavailable(d) => Some(d.clone()),
            _ => None,
        };
        Reason {
            code: reason.code().into(),
            message: reason.to_string(),
            detail,
        }
    }
}

/// A trigger request or run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerInfo {
    /// The trigger's name.
    pub name: String,
    /// The client's words (escaped).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub words: Vec<String>,
    /// Decision records: whether the job started now or runs once more
    /// after the current run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<TriggerState>,
    /// End records: the trigger's timeout stopped the job.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
    /// End records: the sessions of earlier triggers that were queued and
    /// replaced by this run's trigger, so that this run answered them too
    /// (oldest first, at most 32 named).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub superseded: Vec<String>,
    /// End records: how many earlier triggers this run answered, all told.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub superseded_total: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What rsync did with a file (rsync's `%o`: `send`, `recv`, `del.`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileOp {
    /// Sent to the client (a pull).
    Send,
    /// Received from the client (a push).
    Recv,
    /// Deleted on the server (a push with `--delete`).
    Del,
    /// Written by another version of the gate.
    #[serde(other)]
    Other,
}

impl FileOp {
    pub fn name(self) -> &'static str {
        match self {
            FileOp::Send => "send",
            FileOp::Recv => "recv",
            FileOp::Del => "del",
            FileOp::Other => "other",
        }
    }
}

/// Files and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub files: u64,
    pub bytes: u64,
}

/// A file record (`"event": "file"`): one file sent, received or deleted;
/// or, once a session has written `transfer_log_limit` of them, the one
/// record that counts the rest (`omitted`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<FileOp>,
    /// The file's path relative to the module (escaped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The file's length (0 for a deletion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    /// Bytes that crossed the connection for it (rsync's `%b`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// rsync cut the name short in its log (a name of about 2000 bytes or
    /// more): `path` is its beginning.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cut: bool,
    /// The records left out past `transfer_log_limit`, per operation.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub omitted: BTreeMap<FileOp, Tally>,
}

/// An end record's account of the session's file records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileLogStatus {
    /// File records written.
    pub records: u64,
    /// Files past `transfer_log_limit` (counted in one record).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub omitted: u64,
    /// File records that could not be written.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unwritten: u64,
    /// Lines rsync logged that the gate could not read as file records.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unreadable: u64,
    /// Why records are missing (the first error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A trigger decision's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerState {
    Started,
    Queued,
    Refused,
}

/// The fields of a file record before its `file`: exactly those of a
/// [`Record`] of event `file`, in its order, borrowed. A session writes
/// one record per file it moves, thousands of them with the same head, so
/// they are not built as whole `Record`s (the same text: see the tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FileHead<'a> {
    pub time: &'a str,
    pub event: Event,
    pub session: &'a str,
    pub client: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    pub modules: [&'a str; 1],
}

/// A file record as written.
#[derive(Debug, Clone, Copy)]
pub struct FileRecord<'a> {
    pub head: FileHead<'a>,
    pub file: &'a FileInfo,
}

/// File records, each a line, appended to `out`: the text of a head is
/// made once for the records that follow with the same one, and each
/// record is that text, its `file`, and the closing brace.
pub fn file_lines(records: &[FileRecord<'_>], out: &mut Vec<u8>) -> io::Result<()> {
    let mut head: Option<(FileHead<'_>, Vec<u8>)> = None;
    for r in records {
        let text = match &mut head {
            Some((h, text)) if *h == r.head => text,
            _ => {
                let mut text = serde_json::to_vec(&r.head).map_err(io::Error::other)?;
                // An object: without its closing brace, the file follows.
                if text.pop() != Some(b'}') {
                    return Err(io::Error::other("a file record's head is not an object"));
                }
                text.extend_from_slice(b",\"file\":");
                &mut head.insert((r.head, text)).1
            }
        };
        out.extend_from_slice(text);
        serde_json::to_writer(&mut *out, r.file).map_err(io::Error::other)?;
        out.extend_from_slice(b"}\n");
    }
    Ok(())
}

/// One audit line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub time: String,
    pub event: Event,
    /// Joins a decision to its end record.
    pub session: String,
    pub client: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Decision records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Verdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub argv: Vec<String>,
    /// How many arguments at the end of `argv` the record leaves out (see
    /// [`RECORD_ARGS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv_omitted: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<SandboxStatus>,
    /// The lower priority rsync runs at, when the client asked for one
    /// (`nice`/`ionice` in front of `rsync`): what was applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Daemon mode: the in-band request (`module/path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// A trigger's decision or run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<TriggerInfo>,
    /// Decision records of a `learn = true` client: what the request asked
    /// for, whatever the decision (`rsync-gate learn` reads them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learn: Option<Learned>,
    /// File records: the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileInfo>,
    /// End records of sessions with file records: how many were written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_log: Option<FileLogStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
}

/// What a learn client's request asked for, as parsed (the would-be
/// decision's context; the decision itself is the record's).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Learned {
    /// The modules its paths (and path-valued options) name: `MODULE/...`,
    /// or the module an absolute path lies under. Lexical: named is not
    /// granted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<String>,
    /// The option table's rows it used (long names), each once, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    /// Its paths as sent (escaped), at most [`LEARN_PATHS`] of at most
    /// [`LEARN_PATH_BYTES`] each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// How many paths `paths` leaves out.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub paths_omitted: u64,
}

/// Most paths a learn record lists.
pub const LEARN_PATHS: usize = 16;
/// Longest path a learn record lists (bytes; cut with `...`).
pub const LEARN_PATH_BYTES: usize = 512;
/// Most modules a learn record lists.
pub const LEARN_MODULES: usize = 16;

impl Learned {
    /// Record a path (escaped and cut).
    pub fn add_path(&mut self, raw: &[u8]) {
        if self.paths.len() < LEARN_PATHS {
            self.paths.push(cut(&escape(raw), LEARN_PATH_BYTES));
        } else {
            self.paths_omitted += 1;
        }
    }

    /// Record a module name (each once).
    pub fn add_module(&mut self, name: String) {
        if !self.modules.contains(&name) && self.modules.len() < LEARN_MODULES {
            self.modules.push(name);
        }
    }

    /// Record an option row (each once).
    pub fn add_option(&mut self, long: &str) {
        if !self.options.iter().any(|o| o == long) {
            self.options.push(long.to_string());
        }
    }
}
/// Most bytes [`AuditLog::write_batch`] is given at once.
pub const BATCH_BYTES: usize = 64 * 1024;

/// Most arguments one record lists: the options and the first paths of a
/// large wildcard expansion; `argv_omitted` counts the rest.
pub const RECORD_ARGS: usize = 256;
/// Most bytes of arguments one record lists.
pub const RECORD_ARGV_BYTES: usize = 32 * 1024;
/// Most notes one record lists (a last note counts the rest).
pub const RECORD_NOTES: usize = 64;
/// Most bytes of notes one record lists.
pub const RECORD_NOTES_BYTES: usize = 16 * 1024;

/// The leading entries of `list` within `max` entries and `bytes` bytes,
/// and how many were left out.
fn leading(list: &[String], max: usize, bytes: usize) -> (Vec<String>, usize) {
    let mut used = 0usize;
    let kept: Vec<String> = list
        .iter()
        .take(max)
        .take_while(|a| {
            used = used.saturating_add(a.len());
            used <= bytes
        })
        .cloned()
        .collect();
    let omitted = list.len() - kept.len();
    (kept, omitted)
}

/// `s` cut to at most `max` bytes on a character boundary, marked `...`.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", s.get(..end).unwrap_or_default())
}

impl Record {
    /// The record as it is written: whatever a client can make large (a
    /// wildcard expansion's argv, one note per pinned directory, the
    /// command with its `-s` arguments) within bounds, so one request
    /// writes a line of at most about 100 KiB.
    pub fn bounded(&self) -> std::borrow::Cow<'_, Record> {
        let argv_bytes: usize = self.argv.iter().map(String::len).sum();
        let notes_bytes: usize = self.notes.iter().map(String::len).sum();
        let command_long = self
            .command
            .as_ref()
            .is_some_and(|c| c.len() > crate::escape::FIELD_BYTES);
        if self.argv.len() <= RECORD_ARGS
            && argv_bytes <= RECORD_ARGV_BYTES
            && self.notes.len() <= RECORD_NOTES
            && notes_bytes <= RECORD_NOTES_BYTES
            && !command_long
        {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut r = self.clone();
        let (argv, omitted) = leading(&self.argv, RECORD_ARGS, RECORD_ARGV_BYTES);
        if omitted > 0 {
            r.argv = argv;
            r.argv_omitted = Some(self.argv_omitted.unwrap_or(0) + omitted as u64);
        }
        // Notes within their bounds stay whole whatever else is cut; past
        // them, the last kept one counts the rest.
        if self.notes.len() > RECORD_NOTES || notes_bytes > RECORD_NOTES_BYTES {
            let (mut notes, omitted) = leading(&self.notes, RECORD_NOTES - 1, RECORD_NOTES_BYTES);
            notes.push(format!("... and {omitted} more notes, not recorded"));
            r.notes = notes;
        }
        r.command = self
            .command
            .as_ref()
            .map(|c| cut(c, crate::escape::FIELD_BYTES));
        std::borrow::Cow::Owned(r)
    }
}

/// Is an existing audit log file one the gate may append to? A regular
/// file (not a link), owned by root or the SSH account `account` (nobody
/// else may have created it first), and not writable by others.
pub fn check_log_file(md: &std::fs::Metadata, account: u32) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    if !md.file_type().is_file() {
        return Err("not a regular file".into());
    }
    if !crate::trust::root_or(md.uid(), account) {
        return Err(format!(
            "owned by {}, not root or the account ({})",
            crate::trust::owner_name(md.uid()),
            crate::trust::owner_name(account)
        ));
    }
    if md.mode() & 0o002 != 0 {
        return Err("writable by others".into());
    }
    Ok(())
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

    /// Open the log for a session: its directory must be root's alone and
    /// writable by root alone, not even sticky-writable by others (the SSH
    /// account, or anyone else, must not be able to replace the file or
    /// create it first), and the file, opened without following a link, a
    /// regular file of root or the account that nobody else can write.
    pub fn open_checked(path: &Path) -> Result<AuditLog, String> {
        let dir = path.parent().unwrap_or(Path::new("/"));
        crate::trust::check_private_dir(dir, 0)
            .map_err(|e| format!("audit log directory unsafe: {e}"))?;
        let log = AuditLog::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let md = log
            .file
            .metadata()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let account = nix::unistd::geteuid().as_raw();
        check_log_file(&md, account).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(log)
    }

    /// A log on an open file, as it is (tests: a file that cannot be
    /// written).
    #[cfg(test)]
    pub(crate) fn from_file(file: File) -> AuditLog {
        AuditLog { file }
    }

    /// A second handle on the same open log (appending to it as this one
    /// does), for a thread of its own.
    pub fn try_clone(&self) -> io::Result<AuditLog> {
        Ok(AuditLog {
            file: self.file.try_clone()?,
        })
    }

    /// Append one record with a single write.
    pub fn write(&mut self, record: &Record) -> io::Result<()> {
        let mut line = serde_json::to_vec(&*record.bounded()).map_err(io::Error::other)?;
        line.push(b'\n');
        self.write_line(&line)
    }

    /// Append several records with a single write: whole lines, so
    /// parallel sessions still never interleave inside one (the file
    /// records of one chunk of rsync's log; at most [`BATCH_BYTES`] or one
    /// record).
    pub fn write_batch(&mut self, records: &[Record]) -> io::Result<()> {
        let mut lines = Vec::new();
        for r in records {
            serde_json::to_writer(&mut lines, &*r.bounded()).map_err(io::Error::other)?;
            lines.push(b'\n');
        }
        self.write_line(&lines)
    }

    /// Append file records with a single write.
    pub fn write_files(&mut self, records: &[FileRecord<'_>]) -> io::Result<()> {
        let mut lines = Vec::with_capacity(records.len() * 192);
        file_lines(records, &mut lines)?;
        self.write_line(&lines)
    }

    /// Append serialized records (each ending in a newline) with a single
    /// write.
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        let n = self.file.write(line)?;
        if n != line.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short write to the audit log",
            ));
        }
        Ok(())
    }
}

/// Where records go besides the audit log, as `[gate] syslog` and `[gate]
/// journald` say. Best effort: a failed send is ignored, never a reason to
/// refuse (the audit log is the record).
#[derive(Debug, Default)]
pub struct Mirrors {
    syslog: Option<syslog::Syslog>,
    journal: Option<journald::Journald>,
}

impl Mirrors {
    /// Connect to those the policy asks for that are there.
    pub fn connect(syslog: bool, journald: bool) -> Mirrors {
        Mirrors {
            syslog: syslog
                .then(|| syslog::Syslog::connect(Path::new(syslog::DEFAULT_SOCKET)))
                .flatten(),
            journal: journald
                .then(|| journald::Journald::connect(journald::socket()))
                .flatten(),
        }
    }

    pub fn send(&self, record: &Record) {
        if let Some(s) = &self.syslog {
            s.send(record);
        }
        if let Some(j) = &self.journal {
            j.send(record);
        }
    }
}

/// Client bytes for an audit field (see [`crate::escape`]).
pub fn escape(b: &[u8]) -> String {
    crate::escape::field(b)
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

pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every day from 1600 to 2400 against a calendar counted one day at
    /// a time (month lengths and the leap-year rule, nothing else).
    #[test]
    fn every_day_from_1600_to_2400_by_counting() {
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let (mut y, mut m, mut d) = (1600i64, 1u32, 1u32);
        let mut z = -135_140i64;
        while y < 2401 {
            assert_eq!(civil_from_days(z), (y, m, d), "day {z}");
            assert_eq!(days_from_civil(y, m, d), z, "{y}-{m}-{d}");
            let days = match m {
                2 if leap(y) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > days {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
            z += 1;
        }
        assert_eq!(z, 157_420);
    }

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
        assert_eq!(millis(Duration::from_micros(2_999)), 2);
        assert_eq!(millis(Duration::from_secs(u64::MAX)), u64::MAX);
        let ms = |n: u64| rfc3339(UNIX_EPOCH + Duration::from_millis(n));
        assert_eq!(ms(3_723_004), "1970-01-01T01:02:03.004Z");
        assert_eq!(ms(86_399_999), "1970-01-01T23:59:59.999Z");
        assert_eq!(ms(86_400_000), "1970-01-02T00:00:00.000Z");
    }

    /// A file record is written as the `Record` of event `file` with the
    /// same fields would be, byte for byte (and reads back as it).
    #[test]
    fn file_records_are_records() {
        for (mode, op, cut) in [
            (Some(Mode::Sender), FileOp::Send, false),
            (Some(Mode::Receiver), FileOp::Del, true),
            (None, FileOp::Recv, false),
        ] {
            let file = FileInfo {
                op: Some(op),
                path: Some("a/\\x1b b".into()),
                length: Some(7),
                bytes: Some(3),
                cut,
                omitted: BTreeMap::new(),
            };
            let record = Record {
                time: "2026-12-01T10:00:00.000Z".into(),
                event: Event::File,
                session: "18ed3-7".into(),
                client: "c".into(),
                mode,
                modules: vec!["www".into()],
                file: Some(file.clone()),
                ..Default::default()
            };
            let view = FileRecord {
                head: FileHead {
                    time: &record.time,
                    event: Event::File,
                    session: &record.session,
                    client: &record.client,
                    mode,
                    modules: ["www"],
                },
                file: &file,
            };
            // Alone, and after a record whose head differs in each of its
            // fields (the head's text is made again) or in none.
            let other = FileInfo {
                path: Some("other".into()),
                ..file.clone()
            };
            let before = |head: FileHead<'static>| FileRecord { head, file: &other };
            let base = FileHead {
                time: "2026-12-01T10:00:00.000Z",
                event: Event::File,
                session: "18ed3-7",
                client: "c",
                mode,
                modules: ["www"],
            };
            for first in [
                None,
                Some(base),
                Some(FileHead {
                    time: "2026-12-01T09:59:59.999Z",
                    ..base
                }),
                Some(FileHead {
                    event: Event::End,
                    ..base
                }),
                Some(FileHead {
                    session: "18ed3-8",
                    ..base
                }),
                Some(FileHead {
                    client: "d",
                    ..base
                }),
                Some(FileHead {
                    mode: Some(Mode::Daemon),
                    ..base
                }),
                Some(FileHead {
                    modules: ["ftp"],
                    ..base
                }),
            ] {
                let records: Vec<FileRecord<'_>> =
                    first.map(before).into_iter().chain([view]).collect();
                let mut text = Vec::new();
                file_lines(&records, &mut text).unwrap();
                let text = String::from_utf8(text).unwrap();
                let last = text.lines().last().unwrap();
                assert_eq!(
                    last,
                    serde_json::to_string(&record).unwrap(),
                    "after {first:?}"
                );
                assert_eq!(serde_json::from_str::<Record>(last).unwrap(), record);
                assert_eq!(text.lines().count(), records.len());
                assert!(text.ends_with("}\n"));
            }
        }
    }

    #[test]
    fn enums_keep_their_json_strings() {
        let r = Record {
            event: Event::End,
            decision: Some(Verdict::Allow),
            mode: Some(Mode::Receiver),
            sandbox: Some(SandboxStatus::Applied),
            ..Default::default()
        };
        let j = serde_json::to_string(&r).unwrap();
        for want in [
            r#""event":"end""#,
            r#""decision":"allow""#,
            r#""mode":"receiver""#,
            r#""sandbox":"applied""#,
        ] {
            assert!(j.contains(want), "{j}");
        }
        let back: Record = serde_json::from_str(&j).unwrap();
        assert_eq!(back, r);
        // Records another version wrote still read.
        let other: Record = serde_json::from_str(
            r#"{"time":"t","event":"later","session":"s","client":"c","mode":"x","sandbox":"not applied: no"}"#,
        )
        .unwrap();
        assert_eq!(other.event, Event::Other);
        assert_eq!(other.mode, Some(Mode::Other));
        assert_eq!(other.sandbox, Some(SandboxStatus::Other));
    }

    #[test]
    fn reasons_keep_the_server_side_detail_for_the_log_alone() {
        let why = || "/srv/www is writable by group staff".to_string();
        for (reason, detail) in [
            (
                DenyReason::ModuleUnsafe {
                    module: "www".into(),
                    why: why(),
                },
                Some(why()),
            ),
            (
                DenyReason::ModuleMissing {
                    module: "www".into(),
                    why: why(),
                },
                Some(why()),
            ),
            (
                DenyReason::Swappable {
                    path: "a".into(),
                    hint: "h",
                    why: why(),
                },
                Some(why()),
            ),
            (DenyReason::AuditUnavailable(why()), Some(why())),
            (DenyReason::LockDirUnsafe(why()), Some(why())),
            (DenyReason::Internal(why()), Some(why())),
            (DenyReason::SandboxUnavailable(why()), Some(why())),
            (DenyReason::Busy("www".into()), None),
            (DenyReason::ModuleContainsHome("www".into()), None),
        ] {
            let r = Reason::from(&reason);
            assert_eq!(r.code, reason.code());
            assert_eq!(r.message, reason.to_string());
            assert_eq!(r.detail, detail, "{reason:?}");
            // The client's message never holds a server path (the
            // sandbox's detail is the kernel's, and is shown).
            if !matches!(reason, DenyReason::SandboxUnavailable(_)) {
                assert!(!r.message.contains("/srv/www"), "{}", r.message);
            }
        }
    }

    #[test]
    fn zero_counts_and_empty_lists_are_left_out() {
        let text = |t: &TriggerInfo| serde_json::to_string(t).unwrap();
        let mut t = TriggerInfo {
            name: "sync".into(),
            ..Default::default()
        };
        assert_eq!(text(&t), r#"{"name":"sync"}"#);
        t.superseded_total = 1;
        assert_eq!(text(&t), r#"{"name":"sync","superseded_total":1}"#);
        let s = FileLogStatus {
            records: 0,
            omitted: 2,
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"records":0,"omitted":2}"#
        );
    }

    #[test]
    fn file_operations_have_the_names_review_shows() {
        for (op, name) in [
            (FileOp::Send, "send"),
            (FileOp::Recv, "recv"),
            (FileOp::Del, "del"),
            (FileOp::Other, "other"),
        ] {
            assert_eq!(op.name(), name);
        }
    }

    #[test]
    fn learned_requests_are_listed_within_bounds() {
        let mut l = Learned::default();
        for i in 0..LEARN_PATHS + 2 {
            l.add_path(format!("p{i}\n").as_bytes());
        }
        assert_eq!(l.paths.len(), LEARN_PATHS);
        assert_eq!(l.paths.first().map(String::as_str), Some("p0\\n"));
        assert_eq!(l.paths_omitted, 2);
        // A long path is cut on a character boundary: byte 512 falls
        // inside a two-byte character here.
        let mut l = Learned::default();
        let long = format!("a{}", "\u{e9}".repeat(LEARN_PATH_BYTES));
        l.add_path(long.as_bytes());
        let want = format!("a{}...", "\u{e9}".repeat((LEARN_PATH_BYTES - 1) / 2));
        assert_eq!(l.paths, [want]);
        let exact = "b".repeat(LEARN_PATH_BYTES);
        l.add_path(exact.as_bytes());
        assert_eq!(l.paths.get(1), Some(&exact));
        // Modules and options once each; modules up to their bound.
        for i in 0..LEARN_MODULES + 3 {
            l.add_module(format!("m{}", i % (LEARN_MODULES + 1)));
            l.add_option("--recursive");
        }
        l.add_option("--delete");
        let want: Vec<String> = (0..LEARN_MODULES).map(|i| format!("m{i}")).collect();
        assert_eq!(l.modules, want);
        assert_eq!(l.options, ["--recursive", "--delete"]);
    }

    #[test]
    fn each_bound_alone_makes_a_record_bounded_and_nothing_else() {
        let args = |n: usize, len: usize| -> Vec<String> {
            (0..n).map(|i| format!("{i:0>len$}")).collect()
        };
        let plain = Record {
            argv: args(RECORD_ARGS, 8),
            notes: args(RECORD_NOTES, 8),
            command: Some("c".repeat(crate::escape::FIELD_BYTES)),
            ..Default::default()
        };
        // At every bound exactly: as it is.
        assert!(matches!(plain.bounded(), std::borrow::Cow::Borrowed(_)));
        let bytes = Record {
            argv: args(RECORD_ARGS / 2, RECORD_ARGV_BYTES / (RECORD_ARGS / 2)),
            notes: args(RECORD_NOTES / 2, RECORD_NOTES_BYTES / (RECORD_NOTES / 2)),
            ..Default::default()
        };
        assert!(matches!(bytes.bounded(), std::borrow::Cow::Borrowed(_)));
        // One past each bound, alone: that list is cut, the rest kept.
        let one_more_arg = Record {
            argv: args(RECORD_ARGS + 1, 8),
            ..plain.clone()
        };
        let b = one_more_arg.bounded();
        assert_eq!(b.argv.len(), RECORD_ARGS);
        assert_eq!(b.argv_omitted, Some(1));
        assert_eq!(b.notes, plain.notes);
        assert_eq!(b.command, plain.command);
        let long_argv = Record {
            argv: args(2, RECORD_ARGV_BYTES / 2 + 1),
            ..Default::default()
        };
        let b = long_argv.bounded();
        assert_eq!((b.argv.len(), b.argv_omitted), (1, Some(1)));
        assert!(b.notes.is_empty());
        let one_more_note = Record {
            notes: args(RECORD_NOTES + 1, 8),
            ..plain.clone()
        };
        let b = one_more_note.bounded();
        assert_eq!(b.notes.len(), RECORD_NOTES);
        assert_eq!(
            b.notes.last().map(String::as_str),
            Some("... and 2 more notes, not recorded")
        );
        assert_eq!((&b.argv, b.argv_omitted), (&plain.argv, None));
        let long_notes = Record {
            notes: args(2, RECORD_NOTES_BYTES / 2 + 1),
            ..Default::default()
        };
        let b = long_notes.bounded();
        assert_eq!(b.notes.len(), 2);
        assert_eq!(
            b.notes.last().map(String::as_str),
            Some("... and 1 more notes, not recorded")
        );
        let long_command = Record {
            command: Some("c".repeat(crate::escape::FIELD_BYTES + 1)),
            ..plain.clone()
        };
        let b = long_command.bounded();
        assert_eq!(
            b.command.as_deref().map(str::len),
            Some(crate::escape::FIELD_BYTES + 3)
        );
        assert_eq!(
            (&b.argv, &b.notes, b.argv_omitted),
            (&plain.argv, &plain.notes, None)
        );
    }

    #[test]
    fn batches_and_file_records_are_written_as_lines() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("audit.jsonl");
        let mut log = AuditLog::open(&path).unwrap();
        let r = |s: &str| Record {
            session: s.into(),
            ..Default::default()
        };
        log.write_batch(&[r("a"), r("b")]).unwrap();
        let file = FileInfo {
            op: Some(FileOp::Send),
            path: Some("x".into()),
            ..Default::default()
        };
        let head = FileHead {
            time: "t",
            event: Event::File,
            session: "c",
            client: "k",
            mode: Some(Mode::Sender),
            modules: ["www"],
        };
        log.write_files(&[FileRecord { head, file: &file }])
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let back: Vec<Record> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let sessions: Vec<&str> = back.iter().map(|r| r.session.as_str()).collect();
        assert_eq!(sessions, ["a", "b", "c"]);
        assert_eq!(back[2].file.as_ref(), Some(&file));
        assert_eq!(BATCH_BYTES, 64 * 1024);
    }

    #[test]
    fn escaped_for_the_log() {
        assert_eq!(escape(b"a\nb\xff"), "a\\nb\\xff");
        assert_eq!(escape(b"plain"), "plain");
    }

    #[test]
    fn records_are_bounded() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("audit.jsonl");
        let mut log = AuditLog::open(&path).unwrap();
        // A pull whose wildcard expanded to 20000 long names.
        let mut argv: Vec<String> = ["rsync", "--server", "--sender", "-r", "--", "."]
            .iter()
            .map(|s| s.to_string())
            .collect();
        argv.extend((0..20_000).map(|i| format!("/proc/self/fd/3/{i:0>200}")));
        let r = Record {
            argv: argv.clone(),
            notes: (0..5000)
                .map(|i| format!("pinned /proc/self/fd/{i} = /srv/x"))
                .collect(),
            command: Some("x".repeat(3 * crate::escape::FIELD_BYTES)),
            ..Default::default()
        };
        log.write(&r).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.len() < 100 * 1024, "{} bytes", text.len());
        let back: Record = serde_json::from_str(text.trim_end()).unwrap();
        // The options and the first paths, and a count of the rest.
        assert_eq!(back.argv[..6], argv[..6]);
        assert_eq!(back.argv[6], argv[6]);
        let kept = back.argv.len();
        assert!(kept <= RECORD_ARGS && kept > 6, "{kept}");
        assert_eq!(back.argv_omitted, Some((argv.len() - kept) as u64));
        assert_eq!(back.notes.len(), RECORD_NOTES);
        assert!(
            back.notes[RECORD_NOTES - 1].starts_with("... and "),
            "{:?}",
            back.notes.last()
        );
        let c = back.command.unwrap();
        assert_eq!(c.len(), crate::escape::FIELD_BYTES + 3);
        assert!(c.ends_with("..."));
        // A record within the bounds is written as it is.
        let small = Record {
            argv: argv[..8].to_vec(),
            notes: vec!["n".into()],
            ..Default::default()
        };
        assert!(matches!(small.bounded(), std::borrow::Cow::Borrowed(_)));
        assert_eq!(*small.bounded(), small);
    }

    #[test]
    fn log_files_of_someone_else_are_refused() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("audit.jsonl");
        std::fs::write(&f, "").unwrap();
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
        let md = std::fs::symlink_metadata(&f).unwrap();
        let me = md.uid();
        assert_eq!(check_log_file(&md, me), Ok(()));
        if me != 0 && Some(me) != crate::trust::root_alias() {
            assert!(
                check_log_file(&md, me + 1)
                    .unwrap_err()
                    .contains(&format!("owned by {}", crate::trust::owner_name(me)))
            );
        }
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o646)).unwrap();
        let md = std::fs::symlink_metadata(&f).unwrap();
        assert_eq!(check_log_file(&md, me), Err("writable by others".into()));
        std::os::unix::fs::symlink(&f, d.path().join("link")).unwrap();
        let md = std::fs::symlink_metadata(d.path().join("link")).unwrap();
        assert_eq!(check_log_file(&md, me), Err("not a regular file".into()));
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
