//! The policy: TOML schema, defaults and validation.
//!
//! Parsing is strict and all-or-nothing: unknown keys, wrong types and
//! semantic mistakes are errors reported as `file:line:col: message`, and a
//! policy with any error is not used at all. Every problem is reported at
//! once, each in words (no type names), and once: a mistake in one item
//! does not make the items that name it wrong too.

pub mod index;
pub mod keys;
pub mod net;
mod origins;
mod words;

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

pub use net::IpNet;
pub use origins::KeyOrigins;

/// The default policy location.
pub const DEFAULT_POLICY: &str = "/etc/rsync-gate/policy.toml";

/// Largest policy file (or drop-in) we read.
const MAX_POLICY_BYTES: u64 = 64 * 1024 * 1024;

/// Whether to confine rsync with Landlock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sandbox {
    /// Refuse to run when the kernel cannot confine rsync.
    Required,
    /// Confine where the kernel supports it.
    BestEffort,
    /// Never confine.
    Off,
}

impl fmt::Display for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Sandbox::Required => "required",
            Sandbox::BestEffort => "best-effort",
            Sandbox::Off => "off",
        })
    }
}

/// `[gate]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    pub rsync: PathBuf,
    pub audit_log: PathBuf,
    pub lock_dir: PathBuf,
    pub sandbox: Sandbox,
    pub include: Vec<String>,
    pub syslog: bool,
    /// Also send every record to the systemd journal, as a structured
    /// entry (when its socket exists).
    pub journald: bool,
    pub wait_for_slot: Duration,
    /// Most per-file transfer records one session writes (modules with
    /// `transfer_log`); past it one record counts the rest.
    pub transfer_log_limit: u64,
    /// The SSH account `authorized-keys --for-sshd` answers for.
    pub account: Option<String>,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            rsync: PathBuf::from("/usr/bin/rsync"),
            audit_log: PathBuf::from("/var/log/rsync-gate/audit.jsonl"),
            lock_dir: PathBuf::from("/run/rsync-gate"),
            sandbox: Sandbox::BestEffort,
            include: Vec::new(),
            syslog: false,
            journald: false,
            wait_for_slot: Duration::ZERO,
            transfer_log_limit: DEFAULT_TRANSFER_LOG_LIMIT,
            account: None,
        }
    }
}

/// Where a policy item was defined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)
    }
}

/// `[modules.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub name: String,
    /// Absolute, normalised (no `.`/`..`, no trailing slash).
    pub path: PathBuf,
    pub comment: Option<String>,
    pub read_only: bool,
    pub write_only: bool,
    pub delete: bool,
    pub overwrite: bool,
    pub munge_links: bool,
    pub devices: bool,
    /// FIFOs and sockets may be created (default: as `devices`); device
    /// nodes only with `devices`.
    pub specials: bool,
    pub follow_links: bool,
    pub max_connections: u32,
    /// Seconds of I/O inactivity after which rsync ends the session
    /// (rsync's `--timeout`, a daemon module's `timeout`); 0: none.
    pub timeout: u32,
    /// Uploads keep set-user-ID and set-group-ID bits (otherwise rsync
    /// strips them: `--chmod=ug-s`, a daemon module's `incoming chmod`).
    pub setuid: bool,
    /// One audit record per file sent, received or deleted.
    pub transfer_log: bool,
    pub uid: Option<String>,
    pub gid: Option<String>,
    pub list: bool,
    pub origin: Origin,
}

impl Module {
    pub fn writable(&self) -> bool {
        !self.read_only
    }

    pub fn readable(&self) -> bool {
        !self.write_only
    }
}

/// `[clients.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub name: String,
    pub modules: Vec<String>,
    pub from: Vec<IpNet>,
    pub key: Option<String>,
    pub note: Option<String>,
    pub trigger: Option<String>,
    /// Learn mode: decided as any client, and every decision record notes
    /// what the request asked for (`rsync-gate learn`).
    pub learn: bool,
    pub origin: Origin,
}

/// `[triggers.NAME]`: a job a trigger client starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    pub name: String,
    /// The job's argv: an absolute program and its fixed arguments.
    pub command: Vec<String>,
    /// Words a client may send (a trailing `*` matches a suffix of
    /// [`trigger_word_char`]s); `None`: words are recorded and ignored.
    pub args: Option<Vec<String>>,
    /// The job's stdout and stderr, appended.
    pub log: Option<PathBuf>,
    /// Fixed variables for the job.
    pub env: BTreeMap<String, String>,
    /// The job is stopped after this long.
    pub timeout: Option<Duration>,
    pub origin: Origin,
}

/// Most words a trigger request may carry.
pub const MAX_TRIGGER_WORDS: usize = 16;
/// Longest word of a trigger request.
pub const MAX_TRIGGER_WORD: usize = 256;
/// Most words in a trigger's `command`.
pub const MAX_TRIGGER_COMMAND: usize = 64;
/// Longest word of a trigger's `command`.
pub const MAX_TRIGGER_COMMAND_WORD: usize = 4096;
/// Most concurrent sessions `max_connections` may allow.
pub const MAX_CONNECTIONS: u32 = 100_000;
/// Longest module `timeout` (seconds): the longest `--timeout` the option
/// table accepts.
pub const MAX_MODULE_TIMEOUT: u32 = 30 * 86_400;
/// A module's `timeout` when it sets `max_connections` and no `timeout`:
/// a stalled client frees its slot after this long.
pub const DEFAULT_SLOT_TIMEOUT: u32 = 600;

/// `[gate] transfer_log_limit` when the policy does not set it.
pub const DEFAULT_TRANSFER_LOG_LIMIT: u64 = 100_000;
/// Largest `[gate] transfer_log_limit`.
pub const MAX_TRANSFER_LOG_LIMIT: u64 = 100_000_000;

/// Most entries in a trigger's `args`, and most variables in its `env`.
pub const MAX_TRIGGER_LIST: usize = 256;
/// Longest trigger timeout.
pub const MAX_TRIGGER_TIMEOUT: Duration = Duration::from_secs(7 * 86_400);

/// Characters a trigger word may consist of: letters, digits, `._+-:`.
pub fn trigger_word_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-' | b':')
}

impl Trigger {
    /// Does `word` match one of the `args` patterns? (None: there is no
    /// allowlist.)
    pub fn allows(&self, word: &[u8]) -> Option<bool> {
        let patterns = self.args.as_ref()?;
        Some(
            word.iter().all(|&b| trigger_word_char(b))
                && patterns.iter().any(|p| match p.strip_suffix('*') {
                    Some(prefix) => word.starts_with(prefix.as_bytes()),
                    None => word == p.as_bytes(),
                }),
        )
    }
}

/// A validated policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The main policy file.
    pub source: PathBuf,
    /// Every file read (main file first, then drop-ins in order).
    pub files: Vec<PathBuf>,
    pub gate: Gate,
    pub modules: BTreeMap<String, Module>,
    pub clients: BTreeMap<String, Client>,
    pub triggers: BTreeMap<String, Trigger>,
}

/// One problem found in a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based; 0 when the problem is the file as a whole.
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display().to_string();
        if self.line == 0
            && self
                .message
                .strip_prefix(&file)
                .is_some_and(|rest| rest.starts_with(' '))
        {
            // "FILE is owned by ...": the message names the file already.
            write!(f, "{}", self.message)
        } else if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.col,
                self.message
            )
        }
    }
}

/// Every problem found; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyErrors(pub Vec<Diagnostic>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.first() {
            Some(first) if self.0.len() > 1 => {
                write!(f, "{first} (and {} more problems)", self.0.len() - 1)
            }
            Some(first) => write!(f, "{first}"),
            None => write!(f, "invalid policy"),
        }
    }
}

impl std::error::Error for PolicyErrors {}

// ---------------------------------------------------------------------------
// Reading the TOML: every key type-checked with its own diagnostic
// ---------------------------------------------------------------------------

/// A TOML value as parsed, with its place in the file.
type Value<'i> = Spanned<DeValue<'i>>;
/// A key as written, with its place in the file.
type Key<'i> = Spanned<DeString<'i>>;

/// The keys of each table (their order is the one messages list them in).
const GATE_KEYS: &[&str] = &[
    "rsync",
    "audit_log",
    "lock_dir",
    "sandbox",
    "include",
    "syslog",
    "journald",
    "wait_for_slot",
    "transfer_log_limit",
    "account",
];
const MODULE_KEYS: &[&str] = &[
    "path",
    "comment",
    "read_only",
    "write_only",
    "delete",
    "overwrite",
    "munge_links",
    "devices",
    "specials",
    "follow_links",
    "max_connections",
    "timeout",
    "setuid",
    "transfer_log",
    "uid",
    "gid",
    "list",
];
const CLIENT_KEYS: &[&str] = &["modules", "from", "key", "note", "trigger", "learn"];
const TRIGGER_KEYS: &[&str] = &["command", "args", "log", "env", "timeout"];
const TOP_KEYS: &[&str] = &["gate", "modules", "clients", "triggers"];

/// A value was present but wrong (and a diagnostic says so).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Invalid;

/// A present key's value, where its key and its value are.
#[derive(Debug, Clone)]
struct Field<T> {
    value: T,
    key: Range<usize>,
    at: Range<usize>,
}

/// Absent (`Ok(None)`), present and of the right type, or wrong.
type Got<T> = Result<Option<Field<T>>, Invalid>;

/// The value to use: the one given, the default when absent, none when
/// it was wrong.
fn given<T: Copy>(g: &Got<T>, default: T) -> Option<T> {
    match g {
        Ok(Some(f)) => Some(f.value),
        Ok(None) => Some(default),
        Err(Invalid) => None,
    }
}

/// Reading one file: its text, where its problems go, and how many there
/// were.
struct Ctx<'a> {
    src: &'a Source,
    diags: &'a mut Vec<Diagnostic>,
    /// Problems found in this file (said or not).
    errors: usize,
    /// The file has TOML syntax errors: what the parser recovered of it is
    /// read for the names it defines, and nothing is said about it (it
    /// would be echoes of the syntax errors).
    quiet: bool,
    /// Keys of the table being read that an unknown key was probably
    /// meant to be: they count as given but wrong, so that nothing is
    /// said of them being absent (`readonly = false` is one mistake).
    guessed: Vec<&'static str>,
}

impl Ctx<'_> {
    fn err(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.errors += 1;
        if !self.quiet {
            self.diags.push(self.src.diag(span, message));
        }
    }

    fn found(&self, v: &Value<'_>) -> String {
        words::found(v, &self.src.text)
    }

    /// The text of `span` as written.
    fn written(&self, span: Range<usize>) -> String {
        words::shown(self.src.text.get(span).unwrap_or("").trim())
    }

    fn wrong_type(&mut self, key: &str, expected: &str, v: &Value<'_>) -> Invalid {
        let found = self.found(v);
        self.err(
            v.span(),
            format!("{key}: expected {expected}, found {found}"),
        );
        Invalid
    }

    /// Where an item (a module, client or trigger) is: its `[table]`
    /// header, or its key when it is written inline.
    fn item_span(&self, key: &Key<'_>, v: &Value<'_>) -> Range<usize> {
        let header = matches!(v.get_ref(), DeValue::Table(_))
            && self
                .src
                .text
                .get(v.span())
                .is_some_and(|t| t.starts_with('['));
        if header { v.span() } else { key.span() }
    }

    /// Every key of `table` (which messages call `title()`) must be one
    /// of `known`.
    fn known_keys(
        &mut self,
        table: &DeTable<'_>,
        title: impl Fn() -> String,
        known: &[&'static str],
    ) {
        self.guessed.clear();
        for (k, _) in table.iter() {
            let name: &str = k.get_ref();
            if known.contains(&name) {
                continue;
            }
            let hint = match words::closest(name, known.iter().copied()) {
                Some(c) => {
                    if !table.contains_key(c) {
                        self.guessed.push(c);
                    }
                    format!("; did you mean '{c}'?")
                }
                None => format!(" (the keys there are: {})", known.join(", ")),
            };
            self.err(
                k.span(),
                format!("unknown key '{}' in {}{hint}", words::shown(name), title()),
            );
        }
    }

    /// `key` in `table`: absent, or (when a misspelling of it was found)
    /// wrong.
    fn lookup<'t, 'i>(
        &self,
        table: &'t DeTable<'i>,
        key: &str,
    ) -> Result<Option<(&'t Key<'i>, &'t Value<'i>)>, Invalid> {
        match table.get_key_value(key) {
            Some(kv) => Ok(Some(kv)),
            None if self.guessed.contains(&key) => Err(Invalid),
            None => Ok(None),
        }
    }

    fn get<T>(
        &mut self,
        table: &DeTable<'_>,
        key: &str,
        expected: &str,
        take: impl FnOnce(&DeValue<'_>) -> Option<T>,
    ) -> Got<T> {
        let Some((k, v)) = self.lookup(table, key)? else {
            return Ok(None);
        };
        match take(v.get_ref()) {
            Some(value) => Ok(Some(Field {
                value,
                key: k.span(),
                at: v.span(),
            })),
            None => Err(self.wrong_type(key, expected, v)),
        }
    }

    fn boolean(&mut self, table: &DeTable<'_>, key: &str) -> Got<bool> {
        self.get(table, key, "true or false", |v| v.as_bool())
    }

    fn string(&mut self, table: &DeTable<'_>, key: &str, expected: &str) -> Got<String> {
        self.get(table, key, expected, |v| v.as_str().map(str::to_string))
    }

    /// A whole number (one too large for any key saturates).
    fn integer(&mut self, table: &DeTable<'_>, key: &str, expected: &str) -> Got<i64> {
        self.get(table, key, expected, |v| v.as_integer().map(int_value))
    }

    /// A list of strings, each with its place.
    fn strings(
        &mut self,
        table: &DeTable<'_>,
        key: &str,
        expected: &str,
        item: &str,
    ) -> Got<Vec<Field<String>>> {
        let Some((k, v)) = self.lookup(table, key)? else {
            return Ok(None);
        };
        let Some(list) = v.get_ref().as_array() else {
            return Err(self.wrong_type(key, expected, v));
        };
        let mut out = Vec::new();
        let mut bad = false;
        for e in list.iter() {
            match e.get_ref().as_str() {
                Some(s) => out.push(Field {
                    value: s.to_string(),
                    key: k.span(),
                    at: e.span(),
                }),
                None => {
                    self.wrong_type(key, item, e);
                    bad = true;
                }
            }
        }
        if bad {
            return Err(Invalid);
        }
        Ok(Some(Field {
            value: out,
            key: k.span(),
            at: v.span(),
        }))
    }

    /// A string that must be an absolute path.
    fn path(&mut self, table: &DeTable<'_>, key: &str) -> Got<PathBuf> {
        match self.string(table, key, "a path in quotes")? {
            None => Ok(None),
            Some(f) => match check_abs_path(&f.value) {
                Ok(p) => Ok(Some(Field {
                    value: p,
                    key: f.key,
                    at: f.at,
                })),
                Err(e) => {
                    self.err(f.at, e);
                    Err(Invalid)
                }
            },
        }
    }

    /// A string checked by `check`.
    fn text(
        &mut self,
        table: &DeTable<'_>,
        key: &str,
        check: impl FnOnce(&str) -> Result<(), String>,
    ) -> Got<String> {
        let f = self.string(table, key, "text in quotes")?;
        if let Some(f) = &f
            && let Err(e) = check(&f.value)
        {
            self.err(f.at.clone(), e);
            return Err(Invalid);
        }
        Ok(f)
    }
}

/// A TOML integer's value; one that does not fit saturates (every range
/// check then refuses it, quoting it as written).
fn int_value(i: &toml::de::DeInteger<'_>) -> i64 {
    i64::from_str_radix(i.as_str(), i.radix()).unwrap_or(if i.as_str().starts_with('-') {
        i64::MIN
    } else {
        i64::MAX
    })
}

/// Parse a file's TOML, reporting its syntax errors: every one the parser
/// finds, one per line, in order, up to one after which the parser may
/// have lost track of where things start (an unclosed list). The table is
/// what the parser made of the file (recovered past the errors). False
/// when there were syntax errors.
fn parse<'i>(src: &'i Source, diags: &mut Vec<Diagnostic>) -> (DeTable<'i>, bool) {
    let (doc, errors) = DeTable::parse_recoverable(&src.text);
    let mut errors: Vec<(Range<usize>, String)> = errors
        .iter()
        .map(|e| (e.span().unwrap_or(0..0), e.message().to_string()))
        .collect();
    errors.sort_by_key(|(s, _)| s.start);
    let clean = errors.is_empty();
    let mut last_line = 0;
    // Keys below a table header defined twice are repeated too: not news.
    let mut skip_until = 0;
    for (span, message) in errors {
        let (line, _) = src.locate(span.start);
        if line == last_line || span.start < skip_until {
            continue;
        }
        last_line = line;
        let header = (message == "duplicate key")
            .then(|| header_at(src, span.start))
            .flatten();
        match header {
            Some((start, text)) => {
                skip_until = next_header(src, start);
                let said = match earlier_header(src, start, &text) {
                    Some(first) => {
                        format!("{text} is already defined at {}", src.origin(first..first))
                    }
                    None => format!("{text} is already defined above in this file"),
                };
                diags.push(src.diag(start..start, said));
            }
            None => {
                let key = src.text.get(span.clone()).unwrap_or("");
                let said = match (message == "duplicate key")
                    .then(|| earlier_key(src, span.start, key))
                    .flatten()
                {
                    Some(first) => format!(
                        "'{}' is set twice in one table; it is already set at {}",
                        words::shown(key),
                        src.origin(first..first)
                    ),
                    None => words::syntax(&src.text, &span, &message),
                };
                diags.push(src.diag(span.clone(), said));
            }
        }
        if words::loses_track(&message) {
            break;
        }
    }
    (doc.into_inner(), clean)
}

/// The line holding `offset`: where it starts and its text.
fn line_at(src: &Source, offset: usize) -> (usize, &str) {
    let start = src
        .text
        .get(..offset)
        .and_then(|t| t.rfind('\n'))
        .map_or(0, |i| i + 1);
    let rest = src.text.get(start..).unwrap_or("");
    (start, rest.split('\n').next().unwrap_or(""))
}

/// The `[table]` header on the line holding `offset`, if that line is one:
/// where its `[` is and the header as written.
fn header_at(src: &Source, offset: usize) -> Option<(usize, String)> {
    let (start, line) = line_at(src, offset);
    let indent = line.len() - line.trim_start().len();
    let trimmed = line.trim_start();
    if !trimmed.starts_with('[') {
        return None;
    }
    let end = trimmed.rfind(']')? + 1;
    Some((start + indent, trimmed.get(..end)?.to_string()))
}

/// Where the same header is written before `before` (the offset of its
/// `[`).
fn earlier_header(src: &Source, before: usize, header: &str) -> Option<usize> {
    let mut start = 0;
    for line in src.text.get(..before)?.split_inclusive('\n') {
        let indent = line.len() - line.trim_start().len();
        if line.trim_start().starts_with(header) {
            return Some(start + indent);
        }
        start += line.len();
    }
    None
}

/// Where `key = ...` is written in the lines above `offset`, up to the
/// table header they are under (the offset of the key).
fn earlier_key(src: &Source, offset: usize, key: &str) -> Option<usize> {
    let (start, _) = line_at(src, offset);
    let above = src.text.get(..start)?;
    let mut end = above.len();
    for line in above.split_inclusive('\n').rev() {
        end -= line.len();
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            return None;
        }
        if let Some(rest) = trimmed.strip_prefix(key)
            && rest.trim_start().starts_with('=')
            && !key.is_empty()
        {
            let indent = line.len() - trimmed.len();
            return Some(end + indent);
        }
    }
    None
}

/// Where the next `[table]` header after the line at `offset` starts (or
/// the end of the text).
fn next_header(src: &Source, offset: usize) -> usize {
    let (start, line) = line_at(src, offset);
    let mut pos = start + line.len();
    for l in src.text.get(pos..).unwrap_or("").split_inclusive('\n') {
        if l.trim_start().starts_with('[') {
            return pos;
        }
        pos += l.len();
    }
    src.text.len()
}

// ---------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------

/// A file's text and a way to turn byte offsets into line:col.
struct Source {
    path: PathBuf,
    text: String,
    /// Byte offset where each line starts (computed once: a policy can
    /// hold tens of thousands of items, each with a location).
    line_starts: Vec<usize>,
}

impl Source {
    fn new(path: PathBuf, text: String) -> Source {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Source {
            path,
            text,
            line_starts,
        }
    }

    fn locate(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1);
        let start = self.line_starts.get(line - 1).copied().unwrap_or(0);
        let col = self
            .text
            .get(start..offset)
            .map_or(offset - start, |t| t.chars().count())
            + 1;
        (line, col)
    }

    fn diag(&self, span: Range<usize>, message: impl Into<String>) -> Diagnostic {
        let (line, col) = self.locate(span.start);
        Diagnostic {
            file: self.path.clone(),
            line,
            col,
            message: message.into(),
        }
    }

    fn origin(&self, span: Range<usize>) -> Origin {
        let (line, col) = self.locate(span.start);
        Origin {
            file: self.path.clone(),
            line,
            col,
        }
    }
}

fn whole_file(path: &Path, message: impl Into<String>) -> Diagnostic {
    Diagnostic {
        file: path.to_path_buf(),
        line: 0,
        col: 0,
        message: message.into(),
    }
}

/// Reads a policy file. Split out so `serve` can check the file's owner and
/// mode on the descriptor it actually read.
pub trait Reader {
    fn read(&self, path: &Path) -> Result<String, String>;
}

/// Plain filesystem reads (used by `check` and tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainReader;

impl Reader for PlainReader {
    fn read(&self, path: &Path) -> Result<String, String> {
        read_bounded(path)
    }
}

/// The main policy from given text, drop-ins from disk.
struct TextReader<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Reader for TextReader<'_> {
    fn read(&self, path: &Path) -> Result<String, String> {
        if path == self.path {
            Ok(self.text.to_string())
        } else {
            read_bounded(path)
        }
    }
}

/// Load and validate a policy whose main file's text is given (as if read
/// from `path`); drop-ins are read from disk.
pub fn load_text(path: &Path, text: &str) -> Result<Policy, PolicyErrors> {
    load(path, &TextReader { path, text })
}

/// Read a file of at most [`MAX_POLICY_BYTES`] as UTF-8.
pub fn read_bounded(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut text = String::new();
    file.take(MAX_POLICY_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read: {e}"))?;
    if text.len() as u64 > MAX_POLICY_BYTES {
        return Err(format!("larger than {MAX_POLICY_BYTES} bytes"));
    }
    Ok(text)
}

/// Load and validate the policy at `path` and its drop-ins. Every problem
/// is reported, each once: a mistake in one item (a module whose path is
/// wrong) does not make others that name it wrong too.
pub fn load(path: &Path, reader: &dyn Reader) -> Result<Policy, PolicyErrors> {
    let mut diags = Vec::new();
    let text = reader
        .read(path)
        .map_err(|e| PolicyErrors(vec![whole_file(path, e)]))?;
    let main = Source::new(path.to_path_buf(), text);
    let mut builder = Builder::default();
    let mut files = vec![path.to_path_buf()];
    let gate = builder.source(&main, true, &mut diags);

    for pattern in &gate.include {
        match expand_include(pattern) {
            Ok(paths) => {
                for p in paths {
                    // A drop-in pattern that also matches the main file.
                    if same_file(&p, path) {
                        continue;
                    }
                    let text = match reader.read(&p) {
                        Ok(t) => t,
                        Err(e) => {
                            diags.push(whole_file(&p, e));
                            continue;
                        }
                    };
                    let src = Source::new(p.clone(), text);
                    builder.source(&src, false, &mut diags);
                    files.push(p);
                }
            }
            Err(e) => diags.push(whole_file(path, e)),
        }
    }
    builder.cross_check(&mut diags);
    if !diags.is_empty() {
        // In reading order: file by file, top to bottom.
        let rank = |d: &Diagnostic| {
            files
                .iter()
                .position(|f| *f == d.file)
                .unwrap_or(usize::MAX)
        };
        diags.sort_by_key(|d| (rank(d), d.line, d.col));
        return Err(PolicyErrors(diags));
    }
    Ok(Policy {
        source: path.to_path_buf(),
        files,
        gate,
        modules: builder.modules,
        clients: builder.clients,
        triggers: builder.triggers,
    })
}

/// Why a session could not use the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// A policy file, a drop-in, or a directory above one, could be
    /// changed by someone other than root.
    Unsafe(PolicyErrors),
    /// Missing, unreadable or invalid.
    Invalid(PolicyErrors),
}

/// Load the policy for a session (`serve`, the daemon hooks): every file
/// read (the main one and each drop-in) and every directory above it must
/// be root's alone, as sudo requires of sudoers, whoever the SSH account is.
pub fn load_checked(path: &Path) -> Result<Policy, LoadError> {
    struct Checked {
        unsafe_seen: std::cell::Cell<bool>,
    }
    impl Reader for Checked {
        fn read(&self, path: &Path) -> Result<String, String> {
            if std::fs::symlink_metadata(path).is_err() {
                // Missing or unreachable: say so plainly.
                return read_bounded(path);
            }
            if let Err(e) = crate::trust::check_path(path, 0) {
                // The refusal says the policy is unsafe; `e` says why.
                self.unsafe_seen.set(true);
                return Err(e);
            }
            read_bounded(path)
        }
    }
    let reader = Checked {
        unsafe_seen: std::cell::Cell::new(false),
    };
    load(path, &reader).map_err(|e| {
        if reader.unsafe_seen.get() {
            LoadError::Unsafe(e)
        } else {
            LoadError::Invalid(e)
        }
    })
}

/// Expand an include pattern: an absolute path whose last component may
/// contain `*` and `?`. Matches are sorted; a pattern without wildcards must
/// name an existing file.
fn expand_include(pattern: &str) -> Result<Vec<PathBuf>, String> {
    let path = Path::new(pattern);
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Err(format!("include '{pattern}': not a file pattern"));
    };
    if !name.contains(['*', '?']) {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        // A missing drop-in directory means no drop-ins.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("include '{pattern}': {e}")),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("include '{pattern}': {e}"))?;
        let fname = entry.file_name();
        let Some(fname) = fname.to_str() else {
            continue;
        };
        if fname.starts_with('.') {
            continue;
        }
        if crate::glob::matches(name.as_bytes(), fname.as_bytes()) {
            out.push(dir.join(fname));
        }
    }
    out.sort();
    Ok(out)
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => a == b,
    }
}

/// Names of modules, clients and triggers: they appear in rsync daemon
/// configs, file names and audit records, so keep them plain.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !name.starts_with(['.', '-'])
}

/// An absolute, normalised path without control characters or `%`.
fn check_abs_path(s: &str) -> Result<PathBuf, String> {
    if !s.starts_with('/') {
        return Err(format!("'{}' must be an absolute path", words::shown(s)));
    }
    if let Some(c) = s.chars().find(|c| c.is_control() || *c == '%') {
        let c = if c == '%' {
            "the character '%'".to_string()
        } else {
            format!("a control character (U+{:04X})", u32::from(c))
        };
        return Err(format!(
            "path '{}' contains {c}, which is not allowed",
            words::shown(s)
        ));
    }
    let p = Path::new(s);
    for c in p.components() {
        match c {
            Component::CurDir | Component::ParentDir => {
                return Err(format!(
                    "'{}' must not contain '.' or '..' components",
                    words::shown(s)
                ));
            }
            _ => {}
        }
    }
    if s.contains("//") {
        return Err(format!(
            "'{}' must be written without '//'",
            words::shown(s)
        ));
    }
    if s.len() > 1 && s.ends_with('/') {
        return Err(format!(
            "'{}' must be written without the trailing '/'",
            words::shown(s)
        ));
    }
    Ok(p.to_path_buf())
}

fn check_text(s: &str, what: &str, max: usize) -> Result<(), String> {
    if s.len() > max {
        return Err(format!("{what} is longer than {max} bytes"));
    }
    if s.chars().any(char::is_control) {
        return Err(format!("{what} must not contain control characters"));
    }
    Ok(())
}

/// `"30s"`, `"5m"`, `"1h"`, `"0s"`, `"250ms"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(digits_end);
    if num.is_empty() || num.len() > 9 {
        return Err(format!(
            "'{s}' is not a duration (e.g. \"0s\", \"30s\", \"5m\")"
        ));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(format!("'{s}': the unit must be ms, s, m or h")),
    };
    if d > Duration::from_secs(24 * 3600) {
        return Err(format!("'{s}' is longer than a day"));
    }
    Ok(d)
}

/// A trigger `args` pattern: a word of [`trigger_word_char`]s, optionally
/// ending in `*` (any suffix of such characters, including none).
fn check_trigger_pattern(p: &str) -> Result<(), String> {
    let body = p.strip_suffix('*').unwrap_or(p);
    if p.is_empty() || p == "*" {
        return Err("args: a pattern must begin with at least one character".into());
    }
    if body.len() > MAX_TRIGGER_WORD {
        return Err(format!(
            "args: '{p}' is longer than {MAX_TRIGGER_WORD} characters"
        ));
    }
    if let Some(c) = body
        .chars()
        .find(|&c| !(c.is_ascii() && trigger_word_char(c as u8)))
    {
        return Err(format!(
            "args: '{}' has the character {c:?}; a word is letters, digits and . _ + - : (and a pattern may end in *)",
            p.escape_default()
        ));
    }
    Ok(())
}

/// A duration of up to a week: `"90s"`, `"30m"`, `"6h"`, `"2d"`.
pub fn parse_long_duration(s: &str) -> Result<Duration, String> {
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(digits_end);
    let n: u64 = match num.parse() {
        Ok(n) if num.len() <= 9 => n,
        _ => {
            return Err(format!(
                "'{s}' is not a duration (e.g. \"90s\", \"30m\", \"6h\", \"2d\")"
            ));
        }
    };
    let d = match unit {
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        "d" => Duration::from_secs(n.saturating_mul(86_400)),
        _ => return Err(format!("'{s}': the unit must be s, m, h or d")),
    };
    if d.is_zero() || d > MAX_TRIGGER_TIMEOUT {
        return Err(format!(
            "'{s}' must be more than nothing and at most 7 days"
        ));
    }
    Ok(d)
}

/// An OpenSSH public key line: `TYPE BASE64 [COMMENT]`.
fn check_key(key: &str) -> Result<(), String> {
    check_text(key, "key", 16 * 1024)?;
    if key.contains('"') {
        return Err("key must not contain '\"'".into());
    }
    let mut parts = key.split_whitespace();
    let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else {
        return Err("key must be 'TYPE BASE64 [COMMENT]' as in an authorized_keys file".into());
    };
    let kind_ok = kind.starts_with("ssh-") || kind.starts_with("ecdsa-") || kind.starts_with("sk-");
    if !kind_ok
        || !kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-@.".contains(&b))
    {
        return Err(format!("'{kind}' is not an SSH key type"));
    }
    if !blob
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
        || blob.len() < 16
    {
        return Err("the key's second field must be base64".into());
    }
    Ok(())
}

/// What an item is, as messages name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Module,
    Client,
    Trigger,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Module => "module",
            Kind::Client => "client",
            Kind::Trigger => "trigger",
        }
    }

    fn section(self) -> &'static str {
        match self {
            Kind::Module => "modules",
            Kind::Client => "clients",
            Kind::Trigger => "triggers",
        }
    }
}

#[derive(Default)]
struct Builder {
    modules: BTreeMap<String, Module>,
    clients: BTreeMap<String, Client>,
    triggers: BTreeMap<String, Trigger>,
    /// Every item defined, valid or not, and where: a client naming a
    /// module with a mistake of its own is not told the module is missing.
    defined: BTreeMap<(&'static str, String), Origin>,
    /// Client references to check once every file is read.
    module_refs: Vec<(String, Diagnostic)>,
    trigger_refs: Vec<(String, Diagnostic)>,
    /// A file had TOML syntax errors: what it defines is not known for
    /// sure, so references are not checked.
    broken: bool,
}

impl Builder {
    /// Read one file (`main`: the main policy, which alone may have
    /// `[gate]`); returns its `[gate]`.
    fn source(&mut self, src: &Source, main: bool, diags: &mut Vec<Diagnostic>) -> Gate {
        let (doc, clean) = parse(src, diags);
        self.broken |= !clean;
        let mut cx = Ctx {
            src,
            diags,
            errors: 0,
            quiet: !clean,
            guessed: Vec::new(),
        };
        let mut gate = Gate::default();
        for (k, v) in doc.iter() {
            let name: &str = k.get_ref();
            let kind = match name {
                "gate" if main => {
                    gate = self.gate(&mut cx, v);
                    continue;
                }
                "gate" => {
                    let at = cx.item_span(k, v);
                    cx.err(at, "[gate] is only allowed in the main policy file");
                    continue;
                }
                "modules" => Kind::Module,
                "clients" => Kind::Client,
                "triggers" => Kind::Trigger,
                other => {
                    let at = cx.item_span(k, v);
                    let what = if v.get_ref().is_table() {
                        format!("unknown table [{}]", words::shown(other))
                    } else {
                        format!(
                            "unknown key '{}' at the top of the file",
                            words::shown(other)
                        )
                    };
                    let hint = if let Some(c) = words::closest(other, TOP_KEYS.iter().copied()) {
                        format!("; did you mean [{c}]?")
                    } else if GATE_KEYS.contains(&other) {
                        format!("; {other} belongs under [gate]")
                    } else if MODULE_KEYS.contains(&other) {
                        format!("; {other} belongs under a [modules.NAME] header")
                    } else if CLIENT_KEYS.contains(&other) {
                        format!("; {other} belongs under a [clients.NAME] header")
                    } else if TRIGGER_KEYS.contains(&other) {
                        format!("; {other} belongs under a [triggers.NAME] header")
                    } else {
                        " (the policy has [gate], [modules.NAME], [clients.NAME] and [triggers.NAME])"
                            .to_string()
                    };
                    cx.err(at, format!("{what}{hint}"));
                    continue;
                }
            };
            let Some(items) = v.get_ref().as_table() else {
                cx.wrong_type(name, &format!("tables such as [{name}.NAME]"), v);
                continue;
            };
            for (item, value) in items.iter() {
                let Some((at, table)) = self.item(&mut cx, kind, item, value) else {
                    continue;
                };
                match kind {
                    Kind::Module => self.module(&mut cx, item, at, table),
                    Kind::Client => self.client(&mut cx, item, at, table),
                    Kind::Trigger => self.trigger(&mut cx, item, at, table),
                }
            }
        }
        gate
    }

    /// Claim an item's name (once in the whole policy), check it, and
    /// return where it is and its table.
    fn item<'t, 'i>(
        &mut self,
        cx: &mut Ctx<'_>,
        kind: Kind,
        name: &Key<'_>,
        v: &'t Value<'i>,
    ) -> Option<(Range<usize>, &'t DeTable<'i>)> {
        let n: &str = name.get_ref();
        let at = cx.item_span(name, v);
        let id = (kind.name(), n.to_string());
        if let Some(prev) = self.defined.get(&id) {
            cx.err(
                at,
                format!(
                    "{} '{}' is already defined at {prev}",
                    kind.name(),
                    words::shown(n)
                ),
            );
            return None;
        }
        self.defined.insert(id, cx.src.origin(at.clone()));
        if !valid_name(n) {
            cx.err(
                name.span(),
                format!(
                    "{} name '{}' must be 1-64 letters, digits, '_', '-' or '.', not starting with '.' or '-'",
                    kind.name(),
                    words::shown(n)
                ),
            );
            return None;
        }
        if kind == Kind::Module && n.eq_ignore_ascii_case("global") {
            cx.err(
                name.span(),
                format!("module name '{n}' is reserved: it is rsyncd.conf's global section"),
            );
            return None;
        }
        match v.get_ref().as_table() {
            Some(t) => Some((at, t)),
            None => {
                cx.wrong_type(
                    &format!("{}.{n}", kind.section()),
                    &format!("a table ([{}.{n}] and its keys below it)", kind.section()),
                    v,
                );
                None
            }
        }
    }

    fn gate(&mut self, cx: &mut Ctx<'_>, v: &Value<'_>) -> Gate {
        let mut gate = Gate::default();
        let Some(t) = v.get_ref().as_table() else {
            cx.wrong_type("gate", "a table ([gate] and its keys below it)", v);
            return gate;
        };
        cx.known_keys(t, || "[gate]".into(), GATE_KEYS);
        if let Ok(Some(f)) = cx.path(t, "rsync") {
            gate.rsync = f.value;
        }
        if let Ok(Some(f)) = cx.path(t, "audit_log") {
            gate.audit_log = f.value;
        }
        if let Ok(Some(f)) = cx.path(t, "lock_dir") {
            gate.lock_dir = f.value;
        }
        if let Ok(Some(f)) = cx.string(t, "sandbox", "\"required\", \"best-effort\" or \"off\"") {
            match f.value.as_str() {
                "required" => gate.sandbox = Sandbox::Required,
                "best-effort" => gate.sandbox = Sandbox::BestEffort,
                "off" => gate.sandbox = Sandbox::Off,
                other => cx.err(
                    f.at,
                    format!(
                        "sandbox must be \"required\", \"best-effort\" or \"off\", not \"{}\"",
                        words::shown(other)
                    ),
                ),
            }
        }
        if let Ok(Some(list)) = cx.strings(
            t,
            "include",
            "a list of file patterns, like [\"/etc/rsync-gate/conf.d/*.toml\"]",
            "a file pattern in quotes",
        ) {
            for f in list.value {
                match check_abs_path(&f.value) {
                    Ok(_) => gate.include.push(f.value),
                    Err(e) => cx.err(f.at, format!("include: {e}")),
                }
            }
        }
        if let Ok(Some(f)) = cx.boolean(t, "syslog") {
            gate.syslog = f.value;
        }
        if let Ok(Some(f)) = cx.boolean(t, "journald") {
            gate.journald = f.value;
        }
        if let Ok(Some(f)) = cx.string(t, "account", "an account name in quotes") {
            match index::check_account(&f.value) {
                Ok(()) => gate.account = Some(f.value),
                Err(e) => cx.err(f.at, e),
            }
        }
        if let Ok(Some(f)) = cx.integer(t, "transfer_log_limit", "a whole number of records") {
            match u64::try_from(f.value) {
                Ok(n) if n <= MAX_TRANSFER_LOG_LIMIT => gate.transfer_log_limit = n,
                _ => {
                    let shown = cx.written(f.at.clone());
                    cx.err(
                        f.at,
                        format!(
                            "transfer_log_limit must be a whole number of records from 0 to {MAX_TRANSFER_LOG_LIMIT}, not {shown}"
                        ),
                    );
                }
            }
        }
        if let Ok(Some(f)) = cx.string(t, "wait_for_slot", "a duration in quotes, like \"30s\"") {
            match parse_duration(&f.value) {
                Ok(d) => gate.wait_for_slot = d,
                Err(e) => cx.err(f.at, format!("wait_for_slot: {e}")),
            }
        }
        gate
    }

    fn module(&mut self, cx: &mut Ctx<'_>, name: &Key<'_>, at: Range<usize>, t: &DeTable<'_>) {
        let name: &str = name.get_ref();
        let before = cx.errors;
        cx.known_keys(t, || format!("[modules.{name}]"), MODULE_KEYS);
        let path = match cx.path(t, "path") {
            Ok(Some(f)) => Some(f.value),
            Ok(None) => {
                cx.err(
                    at.clone(),
                    format!(
                        "module '{name}' has no path (every module needs path = \"/its/directory\")"
                    ),
                );
                None
            }
            Err(Invalid) => None,
        };
        let comment = cx.text(t, "comment", |c| check_text(c, "comment", 256));
        let read_only = cx.boolean(t, "read_only");
        let write_only = cx.boolean(t, "write_only");
        let delete = cx.boolean(t, "delete");
        let overwrite = cx.boolean(t, "overwrite");
        let munge_links = cx.boolean(t, "munge_links");
        let devices = cx.boolean(t, "devices");
        let specials = cx.boolean(t, "specials");
        let follow_links = cx.boolean(t, "follow_links");
        let setuid = cx.boolean(t, "setuid");
        let transfer_log = cx.boolean(t, "transfer_log");
        let list = cx.boolean(t, "list");
        let (ro, wo, del, ow) = (
            given(&read_only, true),
            given(&write_only, false),
            given(&delete, false),
            given(&overwrite, true),
        );
        // Only between values that are themselves right.
        let read_only_by_default = if matches!(read_only, Ok(None)) {
            " (a module is read-only unless it says read_only = false)"
        } else {
            ""
        };
        if let (Some(true), Some(true), Ok(Some(f))) = (ro, wo, &write_only) {
            cx.err(
                f.key.clone(),
                format!("write_only = true needs read_only = false{read_only_by_default}"),
            );
        }
        if let (Some(true), Some(true), Ok(Some(f))) = (ro, del, &delete) {
            cx.err(
                f.key.clone(),
                format!("delete = true needs read_only = false{read_only_by_default}"),
            );
        }
        let dev = given(&devices, false);
        if let (Some(true), Some(false), Ok(Some(f))) = (dev, given(&specials, true), &specials) {
            cx.err(
                f.key.clone(),
                "specials = false contradicts devices = true (a module that takes device nodes takes FIFOs and sockets too)",
            );
        }
        if let (Some(true), Some(false), Ok(Some(f))) = (del, ow, &delete) {
            cx.err(
                f.key.clone(),
                "delete = true contradicts overwrite = false (deleting removes existing files)",
            );
        }
        let max_connections = match cx.integer(t, "max_connections", "a whole number") {
            Ok(Some(f)) => match u32::try_from(f.value) {
                Ok(n) if n <= MAX_CONNECTIONS => Some(n),
                _ => {
                    let shown = cx.written(f.at.clone());
                    cx.err(
                        f.at,
                        format!(
                            "max_connections must be a whole number from 0 to {MAX_CONNECTIONS} (0 = unlimited), not {shown}"
                        ),
                    );
                    None
                }
            },
            Ok(None) => Some(0),
            Err(Invalid) => None,
        };
        let timeout = match cx.integer(t, "timeout", "a whole number of seconds") {
            Ok(Some(f)) => match u32::try_from(f.value) {
                Ok(n) if n <= MAX_MODULE_TIMEOUT => Some(n),
                _ => {
                    let shown = cx.written(f.at.clone());
                    cx.err(
                        f.at,
                        format!(
                            "timeout must be a whole number of seconds from 0 to {MAX_MODULE_TIMEOUT} (30 days; 0 = none), not {shown}"
                        ),
                    );
                    None
                }
            },
            Ok(None) if max_connections.is_some_and(|n| n > 0) => Some(DEFAULT_SLOT_TIMEOUT),
            Ok(None) => Some(0),
            Err(Invalid) => None,
        };
        let uid = account_id(cx, t, "uid", "user");
        let gid = account_id(cx, t, "gid", "group");
        if cx.quiet || cx.errors > before {
            return;
        }
        let (Some(path), Some(read_only), Some(write_only), Some(delete), Some(overwrite)) =
            (path, ro, wo, del, ow)
        else {
            return;
        };
        let (Some(max_connections), Some(timeout)) = (max_connections, timeout) else {
            return;
        };
        let flag = |g: &Got<bool>, default: bool| given(g, default).unwrap_or(default);
        self.modules.insert(
            name.to_string(),
            Module {
                name: name.to_string(),
                path,
                comment: comment.ok().flatten().map(|f| f.value),
                read_only,
                write_only,
                delete,
                overwrite,
                munge_links: flag(&munge_links, !read_only),
                devices: flag(&devices, false),
                specials: flag(&specials, flag(&devices, false)),
                follow_links: flag(&follow_links, false),
                max_connections,
                timeout,
                setuid: flag(&setuid, false),
                transfer_log: flag(&transfer_log, false),
                uid: uid.ok().flatten(),
                gid: gid.ok().flatten(),
                list: flag(&list, true),
                origin: cx.src.origin(at),
            },
        );
    }

    fn client(&mut self, cx: &mut Ctx<'_>, name: &Key<'_>, at: Range<usize>, t: &DeTable<'_>) {
        let name: &str = name.get_ref();
        let before = cx.errors;
        cx.known_keys(t, || format!("[clients.{name}]"), CLIENT_KEYS);
        let listed = cx.strings(
            t,
            "modules",
            "a list of module names, like [\"www\"]",
            "a module name in quotes",
        );
        let mut modules: Vec<String> = Vec::new();
        if let Ok(Some(list)) = &listed {
            for m in &list.value {
                if modules.contains(&m.value) {
                    cx.err(
                        m.at.clone(),
                        format!("module '{}' is listed twice", words::shown(&m.value)),
                    );
                    continue;
                }
                self.module_refs.push((
                    m.value.clone(),
                    cx.src.diag(
                        m.at.clone(),
                        format!(
                            "client '{name}' refers to module '{}', which is not defined",
                            words::shown(&m.value)
                        ),
                    ),
                ));
                modules.push(m.value.clone());
            }
        }
        let mut from = Vec::new();
        if let Ok(Some(list)) = cx.strings(
            t,
            "from",
            "a list of addresses, like [\"192.0.2.10\", \"198.51.100.0/24\"]",
            "an address in quotes",
        ) {
            for f in list.value {
                match f.value.parse::<IpNet>() {
                    Ok(n) => from.push(n),
                    Err(e) => cx.err(f.at, format!("from: {e}")),
                }
            }
        }
        let key = cx.text(t, "key", check_key);
        let note = cx.text(t, "note", |n| check_text(n, "note", 256));
        let trigger = cx.string(t, "trigger", "a trigger name in quotes");
        let learn = cx.boolean(t, "learn");
        if let Ok(Some(f)) = &trigger {
            self.trigger_refs.push((
                f.value.clone(),
                cx.src.diag(
                    f.at.clone(),
                    format!(
                        "client '{name}' refers to trigger '{}', which is not defined",
                        words::shown(&f.value)
                    ),
                ),
            ));
        }
        let learn_on = match &learn {
            Ok(Some(f)) => f.value,
            Ok(None) => false,
            // Said wrong: said already, no second message.
            Err(Invalid) => true,
        };
        let no_modules = match &listed {
            Ok(None) => true,
            Ok(Some(l)) => l.value.is_empty(),
            Err(Invalid) => false,
        };
        if no_modules && matches!(trigger, Ok(None)) && !learn_on {
            cx.err(
                at.clone(),
                format!("client '{name}' has neither modules nor a trigger (nor learn = true)"),
            );
        }
        if cx.quiet || cx.errors > before {
            return;
        }
        self.clients.insert(
            name.to_string(),
            Client {
                name: name.to_string(),
                modules,
                from,
                key: key.ok().flatten().map(|f| f.value),
                note: note.ok().flatten().map(|f| f.value),
                trigger: trigger.ok().flatten().map(|f| f.value),
                learn: learn_on,
                origin: cx.src.origin(at),
            },
        );
    }

    fn trigger(&mut self, cx: &mut Ctx<'_>, name: &Key<'_>, at: Range<usize>, t: &DeTable<'_>) {
        let name: &str = name.get_ref();
        let before = cx.errors;
        cx.known_keys(t, || format!("[triggers.{name}]"), TRIGGER_KEYS);
        let command = match cx.strings(
            t,
            "command",
            "a list: the program and its arguments, like [\"/usr/bin/ftpsync\"]",
            "a word in quotes",
        ) {
            Ok(Some(c)) => Some(c),
            Ok(None) => {
                cx.err(
                    at.clone(),
                    format!(
                        "trigger '{name}' has no command (every trigger needs command = [\"/the/program\", ...])"
                    ),
                );
                None
            }
            Err(Invalid) => None,
        };
        if let Some(c) = &command {
            match c.value.first() {
                None => cx.err(c.at.clone(), "command must not be empty"),
                Some(prog) => {
                    if let Err(e) = check_abs_path(&prog.value) {
                        cx.err(
                            prog.at.clone(),
                            format!("command: {e} (the program to run)"),
                        );
                    }
                }
            }
            if c.value.len() > MAX_TRIGGER_COMMAND {
                cx.err(
                    c.at.clone(),
                    format!("command: at most {MAX_TRIGGER_COMMAND} words"),
                );
            }
            for a in &c.value {
                if a.value.contains('\0') {
                    cx.err(a.at.clone(), "command arguments must not contain NUL");
                } else if a.value.len() > MAX_TRIGGER_COMMAND_WORD {
                    cx.err(
                        a.at.clone(),
                        format!("command: a word longer than {MAX_TRIGGER_COMMAND_WORD} bytes"),
                    );
                }
            }
        }
        let log = cx.path(t, "log");
        let args = cx.strings(
            t,
            "args",
            "a list of words, like [\"sync:all\"]",
            "a word in quotes",
        );
        if let Ok(Some(list)) = &args {
            if list.value.len() > MAX_TRIGGER_LIST {
                cx.err(
                    list.at.clone(),
                    format!("args: at most {MAX_TRIGGER_LIST} words"),
                );
            }
            for a in &list.value {
                if let Err(e) = check_trigger_pattern(&a.value) {
                    cx.err(a.at.clone(), e);
                }
            }
        }
        let mut env = BTreeMap::new();
        if let Some((_, v)) = t.get_key_value("env") {
            match v.get_ref().as_table() {
                None => {
                    cx.wrong_type("env", "a table of variables, like { MAILTO = \"\" }", v);
                }
                Some(vars) => {
                    if vars.len() > MAX_TRIGGER_LIST {
                        cx.err(
                            v.span(),
                            format!("env: at most {MAX_TRIGGER_LIST} variables"),
                        );
                    }
                    for (k, val) in vars.iter() {
                        let var: &str = k.get_ref();
                        let name_ok = !var.is_empty()
                            && var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                            && !var.starts_with(|c: char| c.is_ascii_digit());
                        if !name_ok {
                            cx.err(
                                k.span(),
                                format!(
                                    "env: '{}' is not a variable name (letters, digits and '_', not starting with a digit)",
                                    words::shown(var)
                                ),
                            );
                        } else if ["HOME", "USER", "LOGNAME"].contains(&var) {
                            cx.err(
                                k.span(),
                                format!("env: {var} is the SSH account's, set by the gate"),
                            );
                        } else if let Some(s) = val.get_ref().as_str() {
                            match check_text(s, &format!("env {var}"), 4096) {
                                Ok(()) => {
                                    env.insert(var.to_string(), s.to_string());
                                }
                                Err(m) => cx.err(val.span(), m),
                            }
                        } else {
                            cx.wrong_type(&format!("env: {var}"), "text in quotes", val);
                        }
                    }
                }
            }
        }
        let timeout = match cx.string(t, "timeout", "a duration in quotes, like \"6h\"") {
            Ok(Some(f)) => match parse_long_duration(&f.value) {
                Ok(d) => Some(d),
                Err(e) => {
                    cx.err(f.at, format!("timeout: {e}"));
                    None
                }
            },
            _ => None,
        };
        if cx.quiet || cx.errors > before {
            return;
        }
        let Some(command) = command else { return };
        self.triggers.insert(
            name.to_string(),
            Trigger {
                name: name.to_string(),
                command: command.value.into_iter().map(|f| f.value).collect(),
                args: args
                    .ok()
                    .flatten()
                    .map(|l| l.value.into_iter().map(|f| f.value).collect()),
                log: log.ok().flatten().map(|f| f.value),
                env,
                timeout,
                origin: cx.src.origin(at),
            },
        );
    }

    fn cross_check(&mut self, diags: &mut Vec<Diagnostic>) {
        if self.broken {
            // What a file with syntax errors defines is not known for sure.
            return;
        }
        let defined = |kind: Kind, name: &str| -> Vec<&str> {
            self.defined
                .keys()
                .filter(|(k, _)| *k == kind.name())
                .map(|(_, n)| n.as_str())
                .filter(|n| *n != name)
                .collect()
        };
        for (kind, refs) in [
            (Kind::Module, &self.module_refs),
            (Kind::Trigger, &self.trigger_refs),
        ] {
            for (name, d) in refs {
                if self.defined.contains_key(&(kind.name(), name.clone())) {
                    continue;
                }
                let mut d = d.clone();
                // A suggestion costs a pass over the names: not at scale.
                if self.defined.len() <= 10_000 {
                    d.message
                        .push_str(&words::did_you_mean(name, defined(kind, name)));
                }
                diags.push(d);
            }
        }
    }
}

/// A module's `uid` or `gid`: a name, or a number that fits.
fn account_id(
    cx: &mut Ctx<'_>,
    t: &DeTable<'_>,
    key: &str,
    what: &str,
) -> Result<Option<String>, Invalid> {
    let Some((_, v)) = cx.lookup(t, key)? else {
        return Ok(None);
    };
    match v.get_ref() {
        DeValue::Integer(i) => {
            let n = int_value(i);
            if (0..=i64::from(u32::MAX)).contains(&n) {
                Ok(Some(n.to_string()))
            } else {
                let shown = cx.written(v.span());
                cx.err(
                    v.span(),
                    format!(
                        "{key} must be a {what} name or a number from 0 to {}, not {shown}",
                        u32::MAX
                    ),
                );
                Err(Invalid)
            }
        }
        DeValue::String(s) if valid_name(s) => Ok(Some(s.to_string())),
        DeValue::String(s) => {
            cx.err(
                v.span(),
                format!("{key}: '{}' is not a valid {what} name", words::shown(s)),
            );
            Err(Invalid)
        }
        _ => Err(cx.wrong_type(key, &format!("a {what} name in quotes, or a number"), v)),
    }
}

impl Policy {
    /// The gate's own files, which no writable module may contain: the
    /// policy files and the directories `include` names, the audit log,
    /// `lock_dir`, rsync, and the gate binary `gate` (a fact of the host,
    /// passed in: the path in every `command=` line and daemon hook line).
    /// [`crate::trust::is_within`] judges every link on the way to each.
    pub fn protected_paths(&self, gate: &Path) -> Vec<PathBuf> {
        let mut v = self.files.clone();
        for pattern in &self.gate.include {
            if let Some(dir) = Path::new(pattern).parent() {
                v.push(dir.to_path_buf());
            }
        }
        v.push(self.gate.audit_log.clone());
        v.push(self.gate.lock_dir.clone());
        v.push(self.gate.rsync.clone());
        v.push(gate.to_path_buf());
        v
    }

    /// The client's modules, in the order the client lists them.
    pub fn client_modules<'a>(
        &'a self,
        client: &'a Client,
    ) -> impl Iterator<Item = &'a Module> + 'a {
        client.modules.iter().filter_map(|m| self.modules.get(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Mem(Vec<(&'static str, String)>);

    impl Reader for Mem {
        fn read(&self, path: &Path) -> Result<String, String> {
            self.0
                .iter()
                .find(|(p, _)| Path::new(p) == path)
                .map(|(_, t)| t.clone())
                .ok_or_else(|| "cannot read: No such file or directory".to_string())
        }
    }

    fn load_str(text: &str) -> Result<Policy, PolicyErrors> {
        load(
            Path::new("/p.toml"),
            &Mem(vec![("/p.toml", text.to_string())]),
        )
    }

    fn first_error(text: &str) -> String {
        load_str(text).unwrap_err().0[0].to_string()
    }

    const GOOD: &str = r#"
[gate]
rsync = "/usr/bin/rsync"
audit_log = "/var/log/rsync-gate/audit.jsonl"
lock_dir = "/run/rsync-gate"
sandbox = "best-effort"
syslog = false
wait_for_slot = "30s"

[modules.www]
path = "/srv/www"
comment = "web site"

[modules.backup]
path = "/srv/backup"
read_only = false
delete = true

[modules.drop]
path = "/srv/drop"
read_only = false
write_only = true
overwrite = false

[clients.backup01]
modules = ["www", "backup"]
from = ["192.0.2.10", "198.51.100.0/24"]
key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB backup01"
note = "nightly pull"

[triggers.mirror]
command = ["/usr/local/bin/mirror-pull", "--from", "upstream"]
log = "/var/log/rsync-gate/mirror.log"

[clients.upstream]
trigger = "mirror"
"#;

    /// GOOD's modules: `www` read-only (the default), `backup` writable,
    /// `drop` write-only.
    #[test]
    fn modules_are_readable_and_writable_as_their_flags_say() {
        let p = load_str(GOOD).unwrap();
        let rw = |m: &str| (p.modules[m].readable(), p.modules[m].writable());
        assert_eq!(rw("www"), (true, false));
        assert_eq!(rw("backup"), (true, true));
        assert_eq!(rw("drop"), (false, true));
    }

    /// How `check` and the refusals spell the sandbox setting: as the
    /// policy does.
    #[test]
    fn sandbox_settings_are_shown_as_written() {
        let shown: Vec<String> = [Sandbox::Required, Sandbox::BestEffort, Sandbox::Off]
            .iter()
            .map(Sandbox::to_string)
            .collect();
        assert_eq!(shown, ["required", "best-effort", "off"]);
    }

    /// A problem of the whole file names the file once: before the message,
    /// or not at all when the message starts with it; a problem at a place
    /// says `file:line:col:`.
    #[test]
    fn diagnostics_name_their_file_once() {
        let d = |line: usize, col: usize, message: &str| {
            Diagnostic {
                file: PathBuf::from("/p.toml"),
                line,
                col,
                message: message.to_string(),
            }
            .to_string()
        };
        assert_eq!(d(0, 0, "/p.toml is owned by x"), "/p.toml is owned by x");
        assert_eq!(d(0, 0, "cannot read"), "/p.toml: cannot read");
        assert_eq!(d(0, 0, "/p.tomlx is odd"), "/p.toml: /p.tomlx is odd");
        assert_eq!(d(3, 5, "/p.toml is odd"), "/p.toml:3:5: /p.toml is odd");
        assert_eq!(d(3, 5, "bad key"), "/p.toml:3:5: bad key");
    }

    /// A trigger's timeout: more than nothing, at most a week, in each
    /// unit.
    #[test]
    fn long_durations_up_to_a_week() {
        for ok in ["1s", "604800s", "10080m", "168h", "7d"] {
            assert!(parse_long_duration(ok).is_ok(), "{ok}");
        }
        assert_eq!(parse_long_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_long_duration("90m"), Ok(Duration::from_secs(5_400)));
        for bad in ["0s", "0d", "604801s", "10081m", "169h", "8d"] {
            assert_eq!(
                parse_long_duration(bad),
                Err(format!(
                    "'{bad}' must be more than nothing and at most 7 days"
                )),
            );
        }
        assert_eq!(MAX_TRIGGER_TIMEOUT, Duration::from_secs(604_800));
    }

    /// The small validators, each at its bounds and with each of its
    /// conditions failing alone.
    #[test]
    fn validators_at_their_bounds() {
        // Paths: "/" itself is a path (root backups pull it).
        assert_eq!(check_abs_path("/"), Ok(PathBuf::from("/")));
        assert!(check_abs_path("/srv/").is_err());
        // Texts: up to their bound.
        assert_eq!(check_text(&"x".repeat(8), "note", 8), Ok(()));
        assert_eq!(
            check_text(&"x".repeat(9), "note", 8),
            Err("note is longer than 8 bytes".to_string())
        );
        // Short durations: up to nine digits, up to a day, in each unit.
        for (s, secs) in [
            ("000000030s", 30),
            ("1h", 3600),
            ("24h", 86_400),
            ("1440m", 86_400),
            ("86400s", 86_400),
            ("3625s", 3625),
        ] {
            assert_eq!(parse_duration(s), Ok(Duration::from_secs(secs)), "{s}");
        }
        for s in ["s", "0000000030s"] {
            assert_eq!(
                parse_duration(s),
                Err(format!(
                    "'{s}' is not a duration (e.g. \"0s\", \"30s\", \"5m\")"
                ))
            );
        }
        for s in ["86401s", "25h", "1441m"] {
            assert_eq!(
                parse_duration(s),
                Err(format!("'{s}' is longer than a day"))
            );
        }
        // Long durations: up to nine digits too.
        assert_eq!(
            parse_long_duration("000000001s"),
            Ok(Duration::from_secs(1))
        );
        assert!(parse_long_duration("0000000001s").is_err());
        // Trigger patterns: a body of up to MAX_TRIGGER_WORD characters,
        // the `*` not counted.
        let longest = "a".repeat(MAX_TRIGGER_WORD);
        assert_eq!(check_trigger_pattern(&longest), Ok(()));
        assert_eq!(check_trigger_pattern(&format!("{longest}*")), Ok(()));
        assert!(check_trigger_pattern(&format!("{longest}a")).is_err());
        // Keys: the three type families, a type's characters, a blob's
        // characters and length, the bound on the whole line.
        let blob = "AAAAC3NzaC1lZDI1NTE5AAAAIB";
        for kind in [
            "ssh-ed25519",
            "ecdsa-sha2-nistp256",
            "sk-ssh-ed25519@openssh.com",
        ] {
            assert_eq!(check_key(&format!("{kind} {blob} c")), Ok(()), "{kind}");
        }
        assert_eq!(
            check_key(&format!("ssh-ed25519! {blob}")),
            Err("'ssh-ed25519!' is not an SSH key type".to_string())
        );
        assert_eq!(
            check_key(&format!("rsa {blob}")),
            Err("'rsa' is not an SSH key type".to_string())
        );
        for bad in ["AAAAC3NzaC1lZDI1NTE5AAAAIB!", "AAAAC3NzaC1lZDI"] {
            assert_eq!(
                check_key(&format!("ssh-ed25519 {bad}")),
                Err("the key's second field must be base64".to_string()),
                "{bad}"
            );
        }
        assert_eq!(check_key("ssh-ed25519 AAAAC3NzaC1lZDI1"), Ok(()));
        let line = |n: usize| format!("ssh-ed25519 {blob} {}", "c".repeat(n - blob.len() - 13));
        assert_eq!(line(16 * 1024).len(), 16 * 1024);
        assert_eq!(check_key(&line(16 * 1024)), Ok(()));
        assert_eq!(
            check_key(&line(16 * 1024 + 1)),
            Err("key is longer than 16384 bytes".to_string())
        );
    }

    /// A policy file of up to 64 MiB is read; one byte more is refused.
    #[test]
    fn policy_files_are_read_up_to_their_bound() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("p.toml");
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(64 * 1024 * 1024).unwrap();
        assert_eq!(read_bounded(&path).unwrap().len(), 64 * 1024 * 1024);
        f.set_len(64 * 1024 * 1024 + 1).unwrap();
        assert_eq!(
            read_bounded(&path),
            Err("larger than 67108864 bytes".to_string())
        );
    }

    #[test]
    fn loads_the_documented_shape_with_defaults() {
        let p = load_str(GOOD).unwrap();
        assert_eq!(p.gate.wait_for_slot, Duration::from_secs(30));
        let www = &p.modules["www"];
        assert!(www.read_only && !www.write_only && !www.delete && www.overwrite);
        assert!(
            !www.munge_links,
            "read-only modules default to munge_links = false"
        );
        assert!(!www.devices && !www.specials && !www.follow_links && www.list);
        assert_eq!(www.origin.line, 10);
        let backup = &p.modules["backup"];
        assert!(
            backup.munge_links,
            "writable modules default to munge_links = true"
        );
        let c = &p.clients["backup01"];
        assert_eq!(c.modules, ["www", "backup"]);
        assert_eq!(c.from.len(), 2);
        assert_eq!(
            p.triggers["mirror"].command[0],
            "/usr/local/bin/mirror-pull"
        );
    }

    #[test]
    fn defaults_when_gate_is_absent() {
        let p =
            load_str("[modules.a]\npath = \"/srv/a\"\n[clients.c]\nmodules = [\"a\"]\n").unwrap();
        assert_eq!(p.gate, Gate::default());
    }

    /// Every problem of a policy, as `check` prints them.
    fn errors(text: &str) -> Vec<String> {
        match load_str(text) {
            Ok(_) => vec![],
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    /// One mistake each: the exact message, at the exact place, and
    /// nothing else (no echo of the mistake elsewhere).
    const MISTAKES: &[(&str, &[&str])] = &[
        (
            "[gate]\nfrobnicate = 1\n",
            &[
                "/p.toml:2:1: unknown key 'frobnicate' in [gate] (the keys there are: rsync, audit_log, lock_dir, sandbox, include, syslog, journald, wait_for_slot, transfer_log_limit, account)",
            ],
        ),
        (
            "[gate]\nrsync = 4\n",
            &["/p.toml:2:9: rsync: expected a path in quotes, found the number 4"],
        ),
        (
            "[gate]\nrsync = \"rsync\"\n",
            &["/p.toml:2:9: 'rsync' must be an absolute path"],
        ),
        (
            "[gate]\naudit_log = [\"/var/log/a\"]\n",
            &["/p.toml:2:13: audit_log: expected a path in quotes, found a list"],
        ),
        (
            "[gate]\nlock_dir = \"/run/rsync-gate/\"\n",
            &["/p.toml:2:12: '/run/rsync-gate/' must be written without the trailing '/'"],
        ),
        (
            "[gate]\nsandbox = \"maybe\"\n",
            &[
                "/p.toml:2:11: sandbox must be \"required\", \"best-effort\" or \"off\", not \"maybe\"",
            ],
        ),
        (
            "[gate]\nsandbox = true\n",
            &[
                "/p.toml:2:11: sandbox: expected \"required\", \"best-effort\" or \"off\", found true",
            ],
        ),
        (
            "[gate]\ninclude = \"/etc/rsync-gate/conf.d/*.toml\"\n",
            &[
                "/p.toml:2:11: include: expected a list of file patterns, like [\"/etc/rsync-gate/conf.d/*.toml\"], found the text \"/etc/rsync-gate/conf.d/*.toml\"",
            ],
        ),
        (
            "[gate]\ninclude = [\"conf.d/*.toml\", 3]\n",
            &["/p.toml:2:29: include: expected a file pattern in quotes, found the number 3"],
        ),
        (
            "[gate]\nsyslog = \"yes\"\n",
            &["/p.toml:2:10: syslog: expected true or false, found the text \"yes\""],
        ),
        (
            "[gate]\nwait_for_slot = 30\n",
            &[
                "/p.toml:2:17: wait_for_slot: expected a duration in quotes, like \"30s\", found the number 30",
            ],
        ),
        (
            "[gate]\nwait_for_slot = \"5 minutes\"\n",
            &["/p.toml:2:17: wait_for_slot: '5 minutes': the unit must be ms, s, m or h"],
        ),
        (
            "[gate]\nwait_for_slot = \"2d\"\n",
            &["/p.toml:2:17: wait_for_slot: '2d': the unit must be ms, s, m or h"],
        ),
        (
            "[gat]\nrsync = \"/usr/bin/rsync\"\n",
            &["/p.toml:1:1: unknown table [gat]; did you mean [gate]?"],
        ),
        (
            "rsync = \"/usr/bin/rsync\"\n",
            &[
                "/p.toml:1:1: unknown key 'rsync' at the top of the file; rsync belongs under [gate]",
            ],
        ),
        (
            "[modules.a]\npath = \"/srv/a\"\nreadonly = true\n",
            &["/p.toml:3:1: unknown key 'readonly' in [modules.a]; did you mean 'read_only'?"],
        ),
        (
            "[modules.a]\npath = \"/srv/a\"\nfrobnicate = true\n",
            &[
                "/p.toml:3:1: unknown key 'frobnicate' in [modules.a] (the keys there are: path, comment, read_only, write_only, delete, overwrite, munge_links, devices, specials, follow_links, max_connections, timeout, setuid, transfer_log, uid, gid, list)",
            ],
        ),
        (
            "[modules.a]\npath = \"srv/a\"\n",
            &["/p.toml:2:8: 'srv/a' must be an absolute path"],
        ),
        (
            "[modules.a]\npath = \"/srv/../etc\"\n",
            &["/p.toml:2:8: '/srv/../etc' must not contain '.' or '..' components"],
        ),
        (
            "[modules.a]\npath = \"/srv/a/\"\n",
            &["/p.toml:2:8: '/srv/a/' must be written without the trailing '/'"],
        ),
        (
            "[modules.a]\npath = \"/srv//a\"\n",
            &["/p.toml:2:8: '/srv//a' must be written without '//'"],
        ),
        (
            "[modules.a]\npath = \"/srv/%x%\"\n",
            &["/p.toml:2:8: path '/srv/%x%' contains the character '%', which is not allowed"],
        ),
        (
            "[modules.a]\ncomment = \"no path\"\n",
            &["/p.toml:1:1: module 'a' has no path (every module needs path = \"/its/directory\")"],
        ),
        (
            "[modules.a]\npath = 7\n",
            &["/p.toml:2:8: path: expected a path in quotes, found the number 7"],
        ),
        (
            "[modules.a]\npath = \"/a\"\nread_only = \"no\"\n",
            &["/p.toml:3:13: read_only: expected true or false, found the text \"no\""],
        ),
        (
            "[modules.a]\npath = \"/a\"\ndelete = 1\n",
            &["/p.toml:3:10: delete: expected true or false, found the number 1"],
        ),
        (
            "[modules.a]\npath = \"/a\"\nwrite_only = true\n",
            &[
                "/p.toml:3:1: write_only = true needs read_only = false (a module is read-only unless it says read_only = false)",
            ],
        ),
        (
            "[modules.a]\npath = \"/a\"\nread_only = true\ndelete = true\n",
            &["/p.toml:4:1: delete = true needs read_only = false"],
        ),
        (
            "[modules.a]\npath = \"/a\"\nread_only = false\ndelete = true\noverwrite = false\n",
            &[
                "/p.toml:4:1: delete = true contradicts overwrite = false (deleting removes existing files)",
            ],
        ),
        (
            "[modules.a]\npath = \"/a\"\nread_only = false\ndevices = true\nspecials = false\n",
            &[
                "/p.toml:5:1: specials = false contradicts devices = true (a module that takes device nodes takes FIFOs and sockets too)",
            ],
        ),
        (
            "[modules.a]\npath = \"/a\"\nmax_connections = \"4\"\n",
            &["/p.toml:3:19: max_connections: expected a whole number, found the text \"4\""],
        ),
        (
            "[modules.a]\npath = \"/a\"\nmax_connections = -1\n",
            &[
                "/p.toml:3:19: max_connections must be a whole number from 0 to 100000 (0 = unlimited), not -1",
            ],
        ),
        (
            "[modules.a]\npath = \"/a\"\nmax_connections = 100001\n",
            &[
                "/p.toml:3:19: max_connections must be a whole number from 0 to 100000 (0 = unlimited), not 100001",
            ],
        ),
        (
            "[modules.a]\npath = \"/a\"\nmax_connections = 1.5\n",
            &["/p.toml:3:19: max_connections: expected a whole number, found the number 1.5"],
        ),
        (
            "[modules.a]\npath = \"/a\"\ntimeout = \"10m\"\n",
            &["/p.toml:3:11: timeout: expected a whole number of seconds, found the text \"10m\""],
        ),
        (
            "[modules.a]\npath = \"/a\"\ntimeout = 2592001\n",
            &[
                "/p.toml:3:11: timeout must be a whole number of seconds from 0 to 2592000 (30 days; 0 = none), not 2592001",
            ],
        ),
        (
            "[modules.a]\npath = \"/a\"\nuid = -1\n",
            &["/p.toml:3:7: uid must be a user name or a number from 0 to 4294967295, not -1"],
        ),
        (
            "[modules.a]\npath = \"/a\"\nuid = 4294967296\n",
            &[
                "/p.toml:3:7: uid must be a user name or a number from 0 to 4294967295, not 4294967296",
            ],
        ),
        (
            "[modules.a]\npath = \"/a\"\ngid = \"wheel group\"\n",
            &["/p.toml:3:7: gid: 'wheel group' is not a valid group name"],
        ),
        (
            "[modules.a]\npath = \"/a\"\nuid = true\n",
            &["/p.toml:3:7: uid: expected a user name in quotes, or a number, found true"],
        ),
        (
            "[modules.\"a b\"]\npath = \"/a\"\n",
            &[
                "/p.toml:1:10: module name 'a b' must be 1-64 letters, digits, '_', '-' or '.', not starting with '.' or '-'",
            ],
        ),
        (
            "[modules.global]\npath = \"/a\"\n",
            &["/p.toml:1:10: module name 'global' is reserved: it is rsyncd.conf's global section"],
        ),
        (
            "[modules]\nwww = \"/srv/www\"\n",
            &[
                "/p.toml:2:7: modules.www: expected a table ([modules.www] and its keys below it), found the text \"/srv/www\"",
            ],
        ),
        (
            "modules = [\"www\"]\n",
            &["/p.toml:1:11: modules: expected tables such as [modules.NAME], found a list"],
        ),
        (
            "[[modules.a]]\npath = \"/a\"\n",
            &[
                "/p.toml:1:1: modules.a: expected a table ([modules.a] and its keys below it), found a list of tables (a [[...]] header; write [...] with single brackets)",
            ],
        ),
        (
            "[clients.c]\n",
            &["/p.toml:1:1: client 'c' has neither modules nor a trigger (nor learn = true)"],
        ),
        (
            "[clients.c]\nmodules = [\"nope\"]\n",
            &["/p.toml:2:12: client 'c' refers to module 'nope', which is not defined"],
        ),
        (
            "[clients.c]\nmodules = \"www\"\n",
            &[
                "/p.toml:2:11: modules: expected a list of module names, like [\"www\"], found the text \"www\"",
            ],
        ),
        (
            "[clients.c]\nmodules = [\"www\", 2]\n[modules.www]\npath = \"/w\"\n",
            &["/p.toml:2:19: modules: expected a module name in quotes, found the number 2"],
        ),
        (
            "[clients.c]\nmodules = [\"www\", \"www\"]\n[modules.www]\npath = \"/w\"\n",
            &["/p.toml:2:19: module 'www' is listed twice"],
        ),
        (
            "[clients.c]\nmodules = [\"ww\"]\n[modules.www]\npath = \"/w\"\n",
            &[
                "/p.toml:2:12: client 'c' refers to module 'ww', which is not defined; did you mean 'www'?",
            ],
        ),
        (
            "[modules.a]\npath = \"/a\"\n[clients.c]\nmodules = [\"a\"]\nfrom = [\"10.0.0.0/33\"]\n",
            &["/p.toml:5:9: from: '10.0.0.0/33': the prefix length must be a number from 0 to 32"],
        ),
        (
            "[modules.a]\npath = \"/a\"\n[clients.c]\nmodules = [\"a\"]\nfrom = [\"10.0.0.1/8\"]\n",
            &["/p.toml:5:9: from: '10.0.0.1/8' has host bits set (did you mean 10.0.0.0/8?)"],
        ),
        (
            "[modules.a]\npath = \"/a\"\n[clients.c]\nmodules = [\"a\"]\nfrom = \"10.0.0.1\"\n",
            &[
                "/p.toml:5:8: from: expected a list of addresses, like [\"192.0.2.10\", \"198.51.100.0/24\"], found the text \"10.0.0.1\"",
            ],
        ),
        (
            "[modules.a]\npath = \"/a\"\n[clients.c]\nmodules = [\"a\"]\nkey = \"hello\"\n",
            &["/p.toml:5:7: key must be 'TYPE BASE64 [COMMENT]' as in an authorized_keys file"],
        ),
        (
            "[modules.a]\npath = \"/a\"\n[clients.c]\nmodules = [\"a\"]\nnote = 5\n",
            &["/p.toml:5:8: note: expected text in quotes, found the number 5"],
        ),
        (
            "[clients.c]\ntrigger = \"t\"\n",
            &["/p.toml:2:11: client 'c' refers to trigger 't', which is not defined"],
        ),
        (
            "[clients.c]\ntrigger = [\"t\"]\n",
            &["/p.toml:2:11: trigger: expected a trigger name in quotes, found a list"],
        ),
        (
            "[clients.-c]\nmodules = []\n",
            &[
                "/p.toml:1:10: client name '-c' must be 1-64 letters, digits, '_', '-' or '.', not starting with '.' or '-'",
            ],
        ),
        (
            "[triggers.t]\ncommand = []\n[clients.u]\ntrigger = \"t\"\n",
            &["/p.toml:2:11: command must not be empty"],
        ),
        (
            "[triggers.t]\ncommand = [\"mirror\"]\n[clients.u]\ntrigger = \"t\"\n",
            &["/p.toml:2:12: command: 'mirror' must be an absolute path (the program to run)"],
        ),
        (
            "[triggers.t]\ncommand = \"/bin/true\"\n[clients.u]\ntrigger = \"t\"\n",
            &[
                "/p.toml:2:11: command: expected a list: the program and its arguments, like [\"/usr/bin/ftpsync\"], found the text \"/bin/true\"",
            ],
        ),
        (
            "[triggers.t]\nargs = [\"x\"]\n[clients.u]\ntrigger = \"t\"\n",
            &[
                "/p.toml:1:1: trigger 't' has no command (every trigger needs command = [\"/the/program\", ...])",
            ],
        ),
        (
            "[triggers.t]\ncommand = [\"/bin/true\"]\ntimeout = 60\n[clients.u]\ntrigger = \"t\"\n",
            &[
                "/p.toml:3:11: timeout: expected a duration in quotes, like \"6h\", found the number 60",
            ],
        ),
        (
            "[triggers.t]\ncommand = [\"/bin/true\"]\ntimeout = \"8d\"\n[clients.u]\ntrigger = \"t\"\n",
            &["/p.toml:3:11: timeout: '8d' must be more than nothing and at most 7 days"],
        ),
        (
            "[triggers.t]\ncommand = [\"/bin/true\"]\nenv = { A = 1 }\n[clients.u]\ntrigger = \"t\"\n",
            &["/p.toml:3:13: env: A: expected text in quotes, found the number 1"],
        ),
        (
            "[triggers.t]\ncommand = [\"/bin/true\"]\nenv = \"A=1\"\n[clients.u]\ntrigger = \"t\"\n",
            &[
                "/p.toml:3:7: env: expected a table of variables, like { MAILTO = \"\" }, found the text \"A=1\"",
            ],
        ),
        (
            "[triggers.t]\ncommand = [\"/bin/true\"]\nargs = \"sync:all\"\n[clients.u]\ntrigger = \"t\"\n",
            &[
                "/p.toml:3:8: args: expected a list of words, like [\"sync:all\"], found the text \"sync:all\"",
            ],
        ),
        (
            "[triggers.t]\ncommand = [\"/bin/true\"]\nlog = \"t.log\"\n[clients.u]\ntrigger = \"t\"\n",
            &["/p.toml:3:7: 't.log' must be an absolute path"],
        ),
        (
            "not toml at all",
            &[
                "/p.toml:1:5: expected '=' after the key: each line is key = value, a [table] header or a # comment",
            ],
        ),
        (
            "[modules.a]\nread_only = yes\npath = \"/a\"\n",
            &["/p.toml:2:13: 'yes' is not a value here: write true or false"],
        ),
        (
            "[modules.a]\npath = \"/a\nread_only = true\n",
            &["/p.toml:2:11: the text has no closing '\"' on this line"],
        ),
        (
            "[modules.a]\npath = /srv/a\n",
            &["/p.toml:2:8: text must be in quotes: \"/srv/a\""],
        ),
        (
            "[gate]\nsyslog = True\n",
            &["/p.toml:2:10: 'True' is not a value here: write true or false (in small letters)"],
        ),
        (
            "[modules.a\npath = \"/a\"\n",
            &[
                "/p.toml:1:11: the table header has no closing ']' (a name with spaces or other characters goes in quotes: [modules.\"my files\"])",
            ],
        ),
        (
            "[modules.a]\npath = \"/a\"\npath = \"/b\"\n",
            &["/p.toml:3:1: 'path' is set twice in one table; it is already set at /p.toml:2:1"],
        ),
        (
            "[modules.a]\npath = \"/a\"\n[modules.a]\npath = \"/b\"\n",
            &["/p.toml:3:1: [modules.a] is already defined at /p.toml:1:1"],
        ),
        // Indented, and below other lines: the places are the names'.
        (
            "[modules.a]\n  comment = \"x\"\n  path = \"/a\"\n  path = \"/b\"\n",
            &["/p.toml:4:3: 'path' is set twice in one table; it is already set at /p.toml:3:3"],
        ),
        // The keys below a repeated header are not news; a mistake after
        // the next header is.
        (
            "[gate]\nsyslog = false\n  [modules.a]\n  path = \"/a\"\n  [modules.a]\n  path = \"/b\"\n  path = \"/c\"\n[modules.b]\npath = rel\n",
            &[
                "/p.toml:5:3: [modules.a] is already defined at /p.toml:3:3",
                "/p.toml:9:8: text must be in quotes: \"rel\"",
            ],
        ),
        // A mistake at the very start of the next header's line (here a
        // no-break space pasted before it) is news too.
        (
            "[modules.a]\npath = \"/a\"\n[modules.a]\n\u{a0}[modules.b]\npath = \"/b\"\n",
            &[
                "/p.toml:3:1: [modules.a] is already defined at /p.toml:1:1",
                "/p.toml:4:1: invalid unquoted key, expected letters, numbers, '-', '_'",
            ],
        ),
        (
            "[modules.a]\npath = \"/a\"\n[modules.a]\n[modules.a]\n",
            &[
                "/p.toml:3:1: [modules.a] is already defined at /p.toml:1:1",
                "/p.toml:4:1: [modules.a] is already defined at /p.toml:1:1",
            ],
        ),
        (
            "[clients.c]\nmodules = [\"a\", \"b\"\nfrom = [\"192.0.2.1\"]\n",
            &[
                "/p.toml:3:1: the list on a line above has no closing ']' (or a ',' is missing between its items)",
            ],
        ),
        (
            "[modules.a]\npath = \"C:\\\\srv\"\n",
            &["/p.toml:2:8: 'C:\\\\srv' must be an absolute path"],
        ),
        (
            "[modules.a]\npath = \"/srv/a\\u0007b\"\n",
            &[
                "/p.toml:2:8: path '/srv/a\\u{7}b' contains a control character (U+0007), which is not allowed",
            ],
        ),
        (
            "[modules.a]\npath = \"/a\"\ncomment = \"a\\tb\"\n",
            &["/p.toml:3:11: comment must not contain control characters"],
        ),
    ];

    #[test]
    fn each_mistake_in_words_at_its_place() {
        for (text, want) in MISTAKES {
            assert_eq!(errors(text), *want, "policy {text:?}");
        }
    }

    /// What an administrator should never read: Rust's and serde's words.
    const RUST_WORDS: &[&str] = &[
        "i64",
        "u32",
        "u64",
        "usize",
        "..=",
        "invalid type",
        "borrowed",
        "Spanned",
        "variant",
        "field",
        "struct",
        "sequence",
        "`",
        "Some(",
        "None",
    ];

    #[test]
    fn no_message_speaks_rust() {
        let mut all: Vec<String> = MISTAKES.iter().flat_map(|(t, _)| errors(t)).collect();
        for (t, _) in MISTAKES {
            // The same mistakes again, several to a file.
            all.extend(errors(&format!(
                "{t}\n[modules.zz]\npath = \"/zz/\"\nmax_connections = \"x\"\n"
            )));
        }
        assert!(all.len() > MISTAKES.len(), "{all:?}");
        for m in &all {
            for w in RUST_WORDS {
                assert!(!m.contains(w), "{w:?} in {m:?}");
            }
            assert_eq!(crate::deny::repeated_prefix(m), None, "{m}");
        }
    }

    #[test]
    fn every_problem_at_once_in_file_order() {
        let text = "\
[gate]
sandbox = \"maybe\"
syslog = \"no\"

[modules.www]
path = \"/srv/www/\"
readonly = true
max_connections = \"4\"

[modules.up]
path = \"/srv/up\"
write_only = true
timeout = -1

[clients.c]
modules = [\"www\", \"up\", \"nope\"]
from = [\"192.0.2.1/24\"]
";
        assert_eq!(
            errors(text),
            [
                "/p.toml:2:11: sandbox must be \"required\", \"best-effort\" or \"off\", not \"maybe\"",
                "/p.toml:3:10: syslog: expected true or false, found the text \"no\"",
                "/p.toml:6:8: '/srv/www/' must be written without the trailing '/'",
                "/p.toml:7:1: unknown key 'readonly' in [modules.www]; did you mean 'read_only'?",
                "/p.toml:8:19: max_connections: expected a whole number, found the text \"4\"",
                "/p.toml:12:1: write_only = true needs read_only = false (a module is read-only unless it says read_only = false)",
                "/p.toml:13:11: timeout must be a whole number of seconds from 0 to 2592000 (30 days; 0 = none), not -1",
                "/p.toml:16:25: client 'c' refers to module 'nope', which is not defined",
                "/p.toml:17:9: from: '192.0.2.1/24' has host bits set (did you mean 192.0.2.0/24?)",
            ]
        );
    }

    #[test]
    fn one_mistake_is_reported_once() {
        // A module with a mistake is still defined: the clients naming it
        // are not told it is missing.
        for module in [
            "path = \"/srv/www/\"",
            "path = 5",
            "comment = \"no path\"",
            "path = \"/srv/www\"\nread_only = \"no\"",
            "path = \"/srv/www\"\nwrite_only = true",
            "path = \"/srv/www\"\nfrobnicate = 1",
            // A misspelt key is one mistake: not also "has no path", not
            // also "delete = true needs read_only = false".
            "paht = \"/srv/www\"",
            "path = \"/srv/www\"\nreadonly = false\ndelete = true",
            "path = \"/srv/www\"\nread-only = false\nwrite_only = true",
        ] {
            let got = errors(&format!(
                "[modules.www]\n{module}\n[clients.a]\nmodules = [\"www\"]\n[clients.b]\nmodules = [\"www\"]\n"
            ));
            assert_eq!(got.len(), 1, "{module}: {got:?}");
            assert!(!got[0].contains("not defined"), "{got:?}");
        }
        // So are items with a bad name, and triggers with a mistake.
        let got = errors("[modules.\"w w\"]\npath = \"/w\"\n[clients.a]\nmodules = [\"w w\"]\n");
        assert_eq!(got.len(), 1, "{got:?}");
        let got = errors("[triggers.t]\ncommand = [\"t\"]\n[clients.u]\ntrigger = \"t\"\n");
        assert_eq!(
            got,
            ["/p.toml:2:12: command: 't' must be an absolute path (the program to run)"]
        );
        // A client whose modules are mistyped is not also told it has none.
        assert_eq!(errors("[clients.c]\nmodules = \"www\"\n").len(), 1);
        // A value of the wrong type does not make a default contradict.
        let got = errors(
            "[modules.a]\npath = \"/a\"\nread_only = \"no\"\nwrite_only = true\ndelete = true\n",
        );
        assert_eq!(got.len(), 1, "{got:?}");
        // A file with syntax errors says only those.
        let got = errors(
            "[modules.a]\npath = /srv/a\nread_only = yes\n[clients.c]\nmodules = [\"a\", \"b\"]\nfrobnicate = 1\n",
        );
        assert_eq!(
            got,
            [
                "/p.toml:2:8: text must be in quotes: \"/srv/a\"",
                "/p.toml:3:13: 'yes' is not a value here: write true or false",
            ]
        );
        // After a list left open, the rest of the file is not guessed at.
        let got = errors("[clients.c]\nmodules = [\"a\",\n\"b\"\nfrom = [\"x\"]\nkey = yes\n");
        assert_eq!(got.len(), 1, "{got:?}");
    }

    #[test]
    fn a_module_may_not_be_named_global() {
        for name in ["global", "GLOBAL", "Global", "gLoBaL"] {
            let e = first_error(&format!("[modules.{name}]\npath = \"/srv/a\"\n"));
            assert!(
                e.starts_with(&format!(
                    "/p.toml:1:10: module name '{name}' is reserved: it is rsyncd.conf's global section"
                )),
                "{name}: {e}"
            );
        }
        assert!(load_str("[modules.globals]\npath = \"/srv/a\"\n").is_ok());
    }

    #[test]
    fn module_timeout_and_setuid() {
        let p = load_str(
            "[modules.a]\npath = \"/a\"\n\
             [modules.b]\npath = \"/b\"\nmax_connections = 2\n\
             [modules.c]\npath = \"/c\"\nmax_connections = 2\ntimeout = 30\n\
             [modules.d]\npath = \"/d\"\nmax_connections = 2\ntimeout = 0\n\
             [modules.e]\npath = \"/e\"\nread_only = false\nsetuid = true\ntimeout = 2592000\n",
        )
        .unwrap();
        let t = |m: &str| p.modules[m].timeout;
        assert_eq!(
            (t("a"), t("b"), t("c"), t("d"), t("e")),
            (0, DEFAULT_SLOT_TIMEOUT, 30, 0, MAX_MODULE_TIMEOUT)
        );
        assert!(!p.modules["a"].setuid && p.modules["e"].setuid);
        for bad in ["-1", "2592001", "\"10m\""] {
            let e = first_error(&format!("[modules.a]\npath = \"/a\"\ntimeout = {bad}\n"));
            assert!(e.starts_with("/p.toml:3:11: "), "{bad}: {e}");
        }
        let e = first_error("[modules.a]\npath = \"/a\"\ntimeout = -1\n");
        assert!(
            e.contains("timeout must be a whole number of seconds from 0 to 2592000"),
            "{e}"
        );
        let e = first_error("[modules.a]\npath = \"/a\"\nsetuid = \"no\"\n");
        assert_eq!(
            e,
            "/p.toml:3:10: setuid: expected true or false, found the text \"no\""
        );

        // uid and gid: a name or a number.
        let p =
            load_str("[modules.a]\npath = \"/a\"\nread_only = false\nuid = \"backup\"\ngid = 34\n")
                .unwrap();
        let a = &p.modules["a"];
        assert_eq!(
            (a.uid.as_deref(), a.gid.as_deref()),
            (Some("backup"), Some("34"))
        );
        let e = first_error("[modules.a]\npath = \"/a\"\nuid = \"back up\"\n");
        assert_eq!(e, "/p.toml:3:7: uid: 'back up' is not a valid user name");
    }

    #[test]
    fn transfer_log_and_its_limit() {
        let p = load_str(
            "[modules.a]\npath = \"/a\"\n[modules.b]\npath = \"/b\"\ntransfer_log = true\n",
        )
        .unwrap();
        assert!(!p.modules["a"].transfer_log && p.modules["b"].transfer_log);
        assert_eq!(p.gate.transfer_log_limit, DEFAULT_TRANSFER_LOG_LIMIT);
        for (n, want) in [(0, 0), (5, 5), (100_000_000, MAX_TRANSFER_LOG_LIMIT)] {
            let p = load_str(&format!("[gate]\ntransfer_log_limit = {n}\n")).unwrap();
            assert_eq!(p.gate.transfer_log_limit, want);
        }
        for bad in ["-1", "100000001", "\"10\""] {
            let e = first_error(&format!("[gate]\ntransfer_log_limit = {bad}\n"));
            assert!(e.starts_with("/p.toml:2:22: "), "{bad}: {e}");
        }
        let e = first_error("[gate]\ntransfer_log_limit = -1\n");
        assert!(
            e.ends_with(
                "transfer_log_limit must be a whole number of records from 0 to 100000000, not -1"
            ),
            "{e}"
        );
        let e = first_error("[modules.a]\npath = \"/a\"\ntransfer_log = \"yes\"\n");
        assert_eq!(
            e,
            "/p.toml:3:16: transfer_log: expected true or false, found the text \"yes\""
        );
        // A module key, not a [gate] one, and the other way round.
        assert!(
            first_error("[gate]\ntransfer_log = true\n").contains("unknown key 'transfer_log'"),
        );
        assert!(
            first_error("[modules.a]\npath = \"/a\"\ntransfer_log_limit = 3\n")
                .contains("unknown key 'transfer_log_limit'")
        );
    }

    #[test]
    fn protected_paths_hold_the_gate_binary_and_include_directories() {
        let p = load_str(
            "[gate]\ninclude = [\"/etc/rsync-gate/conf.d/*.toml\", \"/srv/extra/one.toml\"]\n",
        );
        // The drop-ins do not exist here: only the pattern without
        // wildcards is an error; the list is what matters.
        let p = match p {
            Ok(p) => p,
            Err(_) => Policy {
                source: "/p.toml".into(),
                files: vec!["/p.toml".into()],
                gate: Gate {
                    include: vec![
                        "/etc/rsync-gate/conf.d/*.toml".into(),
                        "/srv/extra/one.toml".into(),
                    ],
                    ..Gate::default()
                },
                modules: BTreeMap::new(),
                clients: BTreeMap::new(),
                triggers: BTreeMap::new(),
            },
        };
        let v = p.protected_paths(Path::new("/usr/local/bin/rsync-gate"));
        for want in [
            "/p.toml",
            "/etc/rsync-gate/conf.d",
            "/srv/extra",
            "/var/log/rsync-gate/audit.jsonl",
            "/run/rsync-gate",
            "/usr/bin/rsync",
            "/usr/local/bin/rsync-gate",
        ] {
            assert!(v.contains(&PathBuf::from(want)), "{want} not in {v:?}");
        }
    }

    #[test]
    fn reports_every_problem() {
        let errs = load_str(
            "[modules.a]\npath = \"a\"\n[modules.b]\npath = \"b\"\n[clients.c]\nmodules = [\"x\"]\n",
        )
        .unwrap_err();
        assert_eq!(errs.0.len(), 3, "{errs:?}");
        assert_eq!(
            errs.to_string(),
            "/p.toml:2:8: 'a' must be an absolute path (and 2 more problems)"
        );
    }

    #[test]
    fn missing_file_is_an_error() {
        let e = load(Path::new("/nope.toml"), &Mem(vec![])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/nope.toml: cannot read: No such file or directory"
        );
    }

    #[test]
    fn drop_ins_add_items_and_may_not_redefine() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("10-a.toml"), "[modules.a]\npath = \"/srv/a\"\n").unwrap();
        std::fs::write(
            d.join("20-c.toml"),
            "[clients.c]\nmodules = [\"a\", \"www\"]\n",
        )
        .unwrap();
        std::fs::write(d.join("30-x.txt"), "ignored").unwrap();
        let main = format!(
            "[gate]\ninclude = [\"{}/*.toml\"]\n[modules.www]\npath = \"/srv/www\"\n",
            d.display()
        );
        std::fs::write(d.join("main.toml"), &main).unwrap();
        let p = load(&d.join("main.toml"), &PlainReader).unwrap();
        assert_eq!(p.files.len(), 3);
        assert_eq!(p.clients["c"].modules, ["a", "www"]);

        // A redefinition points at both table headers.
        std::fs::write(
            d.join("40-dup.toml"),
            "# again\n[modules.a]\npath = \"/srv/b\"\n[clients.www]\nmodules = [\"www\"]\n",
        )
        .unwrap();
        std::fs::write(
            d.join("50-dup.toml"),
            "[clients]\nc = { modules = [\"www\"] }\n",
        )
        .unwrap();
        let e = load(&d.join("main.toml"), &PlainReader).unwrap_err();
        let shown: Vec<String> = e.0.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                format!(
                    "{}/40-dup.toml:2:1: module 'a' is already defined at {}/10-a.toml:1:1",
                    d.display(),
                    d.display()
                ),
                format!(
                    "{}/50-dup.toml:2:1: client 'c' is already defined at {}/20-c.toml:1:1",
                    d.display(),
                    d.display()
                ),
            ]
        );

        // File by file, each top to bottom: the main file's mistake (at
        // its end) comes before the drop-ins' (at their starts).
        std::fs::write(
            d.join("main.toml"),
            format!("{main}[modules.bad]\npath = \"relative\"\n"),
        )
        .unwrap();
        let e = load(&d.join("main.toml"), &PlainReader).unwrap_err();
        let files: Vec<String> = e.0.iter().map(|d| d.file.display().to_string()).collect();
        let main_file = d.join("main.toml").display().to_string();
        assert_eq!(
            files,
            [
                main_file,
                d.join("40-dup.toml").display().to_string(),
                d.join("50-dup.toml").display().to_string()
            ],
            "{e}"
        );
        assert_eq!(e.0[0].line, 6, "{e}");
        std::fs::write(d.join("main.toml"), &main).unwrap();

        std::fs::write(d.join("40-dup.toml"), "[gate]\nsyslog = true\n").unwrap();
        let e = load(&d.join("main.toml"), &PlainReader).unwrap_err();
        assert!(e.0[0].to_string().contains("[gate] is only allowed"), "{e}");
    }

    /// A pattern that matches the main file too (policy.toml beside its
    /// drop-ins) does not read it twice, however the main file was named.
    #[test]
    fn an_include_that_matches_the_main_file_skips_it() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::write(d.join("10-a.toml"), "[modules.a]\npath = \"/srv/a\"\n").unwrap();
        let main = format!(
            "[gate]\ninclude = [\"{}/*.toml\"]\n[modules.www]\npath = \"/srv/www\"\n",
            d.display()
        );
        std::fs::write(d.join("main.toml"), &main).unwrap();
        for named in [d.join("main.toml"), d.join("sub/../main.toml")] {
            let p =
                load(&named, &PlainReader).unwrap_or_else(|e| panic!("{}: {e}", named.display()));
            assert_eq!(p.files, [named.clone(), d.join("10-a.toml")]);
            assert!(p.modules.contains_key("a") && p.modules.contains_key("www"));
        }
    }

    /// Files that cannot be looked at on disk (here a reader's own) are the
    /// same when their names are.
    #[test]
    fn an_include_of_the_main_file_by_name_is_skipped() {
        let text = "[gate]\ninclude = [\"/p.toml\"]\n[modules.a]\npath = \"/a\"\n";
        let p = load(
            Path::new("/p.toml"),
            &Mem(vec![("/p.toml", text.to_string())]),
        )
        .unwrap();
        assert_eq!(p.files, [PathBuf::from("/p.toml")]);
    }

    /// A drop-in directory that does not exist holds no drop-ins; one that
    /// cannot be listed (here a file, not a directory) is an error.
    #[test]
    fn include_patterns_over_missing_and_unlistable_directories() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let pattern = |p: &Path| p.join("*.toml").display().to_string();
        assert_eq!(expand_include(&pattern(&d.join("none"))), Ok(vec![]));
        std::fs::write(d.join("file"), "").unwrap();
        let p = pattern(&d.join("file"));
        assert_eq!(
            expand_include(&p),
            Err(format!("include '{p}': Not a directory (os error 20)"))
        );
        // No wildcard: the file itself, whether or not it exists.
        let plain = d.join("none/x.toml");
        assert_eq!(
            expand_include(&plain.display().to_string()),
            Ok(vec![plain])
        );
    }

    #[test]
    fn locations_are_line_and_column() {
        let src = Source::new("/p".into(), "ab\ncd\n\nxé z".into());
        assert_eq!(src.locate(0), (1, 1));
        assert_eq!(src.locate(1), (1, 2));
        assert_eq!(src.locate(3), (2, 1));
        assert_eq!(src.locate(6), (3, 1));
        assert_eq!(src.locate(7), (4, 1));
        // Columns count characters, not bytes.
        assert_eq!(src.locate(11), (4, 4));
        assert_eq!(src.locate(999), (4, 5));
        // An offset inside a character (no parser gives one) counts bytes.
        assert_eq!(src.locate(9), (4, 3));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("25h").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn trigger_keys() {
        let load = |t: &str| {
            load_text(
                Path::new("/p.toml"),
                &format!("{t}\n[clients.u]\ntrigger = \"t\"\n"),
            )
        };
        let p = load(
            "[triggers.t]\ncommand = [\"/usr/bin/ftpsync\"]\nargs = [\"sync:all\", \"sync:archive:*\"]\n\
             log = \"/var/log/t.log\"\nenv = { MAILTO = \"\" }\ntimeout = \"6h\"",
        )
        .unwrap();
        let t = &p.triggers["t"];
        assert_eq!(t.timeout, Some(Duration::from_secs(6 * 3600)));
        assert_eq!(t.env.get("MAILTO").map(String::as_str), Some(""));
        assert_eq!(t.allows(b"sync:all"), Some(true));
        assert_eq!(t.allows(b"sync:archive:"), Some(true));
        assert_eq!(t.allows(b"sync:archive:debian-ports"), Some(true));
        assert_eq!(t.allows(b"sync:archive:a/b"), Some(false));
        assert_eq!(t.allows(b"sync:al"), Some(false));
        assert_eq!(t.allows(b"sync:all2"), Some(false));
        let p = load("[triggers.t]\ncommand = [\"/bin/true\"]").unwrap();
        assert_eq!(p.triggers["t"].allows(b"anything"), None);
        // Each bound itself is allowed.
        let vars: Vec<String> = (0..256).map(|i| format!("V_{i} = \"\"")).collect();
        let at_bounds = format!(
            "[triggers.t]\ncommand = [\"/bin/true\", \"{}\"{}]\nargs = [{}]\nenv = {{ {} }}",
            "x".repeat(4096),
            ", \"x\"".repeat(62),
            vec!["\"a\""; 256].join(","),
            vars.join(", ")
        );
        let p = load(&at_bounds).unwrap_or_else(|e| panic!("{e}"));
        let t = &p.triggers["t"];
        assert_eq!(t.command.len(), 64);
        assert_eq!(t.env.len(), 256);
        assert_eq!(t.env.get("V_255").map(String::as_str), Some(""));
        for (bad, want) in [
            ("args = [\"sync all\"]", "has the character ' '"),
            ("args = [\"*\"]", "must begin with at least one character"),
            ("args = [\"a*b*\"]", "has the character '*'"),
            ("env = { \"1X\" = \"y\" }", "is not a variable name"),
            ("env = { HOME = \"/\" }", "HOME is the SSH account's"),
            ("env = { X = \"a\\nb\" }", "control characters"),
            ("timeout = \"0s\"", "more than nothing and at most 7 days"),
            ("timeout = \"8d\"", "more than nothing and at most 7 days"),
            ("timeout = \"6 hours\"", "the unit must be s, m, h or d"),
            ("command = [\"ftpsync\"]", "must be an absolute path"),
            (
                &format!("command = [\"/bin/true\"{}]", ", \"x\"".repeat(64)),
                "at most 64 words",
            ),
            (
                &format!("command = [\"/bin/true\", \"{}\"]", "x".repeat(4097)),
                "longer than 4096 bytes",
            ),
            (
                &format!("args = [{}]", vec!["\"a\""; 257].join(",")),
                "args: at most 256 words",
            ),
            (
                &format!(
                    "env = {{ {} }}",
                    (0..257)
                        .map(|i| format!("V{i} = \"\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "env: at most 256 variables",
            ),
            ("env = { A-B = \"y\" }", "'A-B' is not a variable name"),
        ] {
            let text = if bad.starts_with("command") {
                format!("[triggers.t]\n{bad}")
            } else {
                format!("[triggers.t]\ncommand = [\"/bin/true\"]\n{bad}")
            };
            let e = load(&text).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }
}
