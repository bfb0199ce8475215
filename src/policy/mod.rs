//! The policy: TOML schema, defaults and validation.
//!
//! Parsing is strict and all-or-nothing: unknown keys, wrong types and
//! semantic mistakes are errors reported as `file:line:col: message`, and a
//! policy with any error is not used at all.

pub mod index;
pub mod keys;
pub mod net;

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

pub use net::IpNet;

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
/// Longest module `timeout` (seconds): the longest `--timeout` the option
/// table accepts.
pub const MAX_MODULE_TIMEOUT: u32 = 30 * 86_400;
/// A module's `timeout` when it sets `max_connections` and no `timeout`:
/// a stalled client frees its slot after this long.
pub const DEFAULT_SLOT_TIMEOUT: u32 = 600;

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
        if self.line == 0 {
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
// Raw TOML schema
// ---------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    gate: Option<Spanned<RawGate>>,
    #[serde(default)]
    modules: BTreeMap<Spanned<String>, Spanned<RawModule>>,
    #[serde(default)]
    clients: BTreeMap<Spanned<String>, Spanned<RawClient>>,
    #[serde(default)]
    triggers: BTreeMap<Spanned<String>, Spanned<RawTrigger>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGate {
    rsync: Option<Spanned<String>>,
    audit_log: Option<Spanned<String>>,
    lock_dir: Option<Spanned<String>>,
    sandbox: Option<Sandbox>,
    include: Option<Vec<Spanned<String>>>,
    syslog: Option<bool>,
    journald: Option<bool>,
    wait_for_slot: Option<Spanned<String>>,
    account: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModule {
    path: Spanned<String>,
    comment: Option<Spanned<String>>,
    read_only: Option<bool>,
    write_only: Option<bool>,
    delete: Option<bool>,
    overwrite: Option<bool>,
    munge_links: Option<bool>,
    devices: Option<bool>,
    specials: Option<bool>,
    follow_links: Option<bool>,
    max_connections: Option<Spanned<i64>>,
    timeout: Option<Spanned<i64>>,
    setuid: Option<bool>,
    uid: Option<Spanned<IdValue>>,
    gid: Option<Spanned<IdValue>>,
    list: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum IdValue {
    Number(i64),
    Name(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    #[serde(default)]
    modules: Vec<Spanned<String>>,
    #[serde(default)]
    from: Vec<Spanned<String>>,
    key: Option<Spanned<String>>,
    note: Option<Spanned<String>>,
    trigger: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrigger {
    command: Spanned<Vec<String>>,
    args: Option<Spanned<Vec<Spanned<String>>>>,
    log: Option<Spanned<String>>,
    env: Option<Spanned<BTreeMap<String, String>>>,
    timeout: Option<Spanned<String>>,
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

/// Load and validate the policy at `path` and its drop-ins.
pub fn load(path: &Path, reader: &dyn Reader) -> Result<Policy, PolicyErrors> {
    let mut diags = Vec::new();
    let text = reader
        .read(path)
        .map_err(|e| PolicyErrors(vec![whole_file(path, e)]))?;
    let main = Source::new(path.to_path_buf(), text);
    let raw = match toml::from_str::<RawFile>(&main.text) {
        Ok(r) => r,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            return Err(PolicyErrors(vec![
                main.diag(span, e.message().trim().to_string()),
            ]));
        }
    };
    let mut builder = Builder::default();
    let gate = builder.gate(&main, raw.gate.as_ref(), &mut diags);
    let mut files = vec![path.to_path_buf()];
    builder.items(&main, raw, &mut diags);

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
                    match toml::from_str::<RawFile>(&src.text) {
                        Ok(mut r) => {
                            if let Some(g) = r.gate.take() {
                                diags.push(src.diag(
                                    g.span(),
                                    "[gate] is only allowed in the main policy file",
                                ));
                            }
                            builder.items(&src, r, &mut diags);
                        }
                        Err(e) => {
                            let span = e.span().unwrap_or(0..0);
                            diags.push(src.diag(span, e.message().trim().to_string()));
                        }
                    }
                    files.push(p);
                }
            }
            Err(e) => diags.push(whole_file(path, e)),
        }
    }
    builder.cross_check(&mut diags);
    if !diags.is_empty() {
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
                self.unsafe_seen.set(true);
                return Err(format!("unsafe: {e}"));
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

#[derive(Default)]
struct Builder {
    modules: BTreeMap<String, Module>,
    clients: BTreeMap<String, Client>,
    triggers: BTreeMap<String, Trigger>,
    /// Client references to check once every file is read.
    module_refs: Vec<(String, Diagnostic)>,
    trigger_refs: Vec<(String, Diagnostic)>,
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
        return Err(format!("'{s}' must be an absolute path"));
    }
    if let Some(c) = s.chars().find(|c| c.is_control() || *c == '%') {
        return Err(format!(
            "path contains the character {:?}, which is not allowed",
            c
        ));
    }
    let p = Path::new(s);
    for c in p.components() {
        match c {
            Component::CurDir | Component::ParentDir => {
                return Err(format!("'{s}' must not contain '.' or '..' components"));
            }
            _ => {}
        }
    }
    if s.contains("//") || (s.len() > 1 && s.ends_with('/')) {
        return Err(format!(
            "'{s}' must be written without repeated or trailing slashes"
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

fn id_value(v: &Spanned<IdValue>) -> Result<String, String> {
    match v.get_ref() {
        IdValue::Number(n) if (0..=i64::from(u32::MAX)).contains(n) => Ok(n.to_string()),
        IdValue::Number(_) => Err("must be a user or group name, or an id 0..=4294967295".into()),
        IdValue::Name(s) if valid_name(s) => Ok(s.clone()),
        IdValue::Name(s) => Err(format!("'{s}' is not a valid user or group name")),
    }
}

impl Builder {
    fn gate(
        &mut self,
        src: &Source,
        raw: Option<&Spanned<RawGate>>,
        diags: &mut Vec<Diagnostic>,
    ) -> Gate {
        let mut gate = Gate::default();
        let Some(raw) = raw else { return gate };
        let raw = raw.get_ref();
        let mut path_field = |field: &Option<Spanned<String>>, target: &mut PathBuf| {
            if let Some(v) = field {
                match check_abs_path(v.get_ref()) {
                    Ok(p) => *target = p,
                    Err(e) => diags.push(src.diag(v.span(), e)),
                }
            }
        };
        path_field(&raw.rsync, &mut gate.rsync);
        path_field(&raw.audit_log, &mut gate.audit_log);
        path_field(&raw.lock_dir, &mut gate.lock_dir);
        if let Some(s) = raw.sandbox {
            gate.sandbox = s;
        }
        if let Some(s) = raw.syslog {
            gate.syslog = s;
        }
        if let Some(j) = raw.journald {
            gate.journald = j;
        }
        if let Some(inc) = &raw.include {
            for v in inc {
                match check_abs_path(v.get_ref()) {
                    Ok(_) => gate.include.push(v.get_ref().clone()),
                    Err(e) => diags.push(src.diag(v.span(), format!("include: {e}"))),
                }
            }
        }
        if let Some(w) = &raw.wait_for_slot {
            match parse_duration(w.get_ref()) {
                Ok(d) => gate.wait_for_slot = d,
                Err(e) => diags.push(src.diag(w.span(), e)),
            }
        }
        if let Some(a) = &raw.account {
            match index::check_account(a.get_ref()) {
                Ok(()) => gate.account = Some(a.get_ref().clone()),
                Err(e) => diags.push(src.diag(a.span(), e)),
            }
        }
        gate
    }

    fn items(&mut self, src: &Source, raw: RawFile, diags: &mut Vec<Diagnostic>) {
        for (name, m) in raw.modules {
            self.module(src, name, m, diags);
        }
        for (name, c) in raw.clients {
            self.client(src, name, c, diags);
        }
        for (name, t) in raw.triggers {
            self.trigger(src, name, t, diags);
        }
    }

    fn check_name(
        &self,
        src: &Source,
        name: &Spanned<String>,
        kind: &str,
        diags: &mut Vec<Diagnostic>,
    ) -> bool {
        if valid_name(name.get_ref()) {
            return true;
        }
        diags.push(src.diag(
            name.span(),
            format!(
                "{kind} name '{}' must be 1-64 letters, digits, '_', '-' or '.', not starting with '.' or '-'",
                name.get_ref().escape_default()
            ),
        ));
        false
    }

    fn module(
        &mut self,
        src: &Source,
        name: Spanned<String>,
        raw: Spanned<RawModule>,
        diags: &mut Vec<Diagnostic>,
    ) {
        if !self.check_name(src, &name, "module", diags) {
            return;
        }
        if name.get_ref().eq_ignore_ascii_case("global") {
            diags.push(src.diag(
                name.span(),
                format!(
                    "module name '{}' is reserved: it is rsyncd.conf's global section",
                    name.get_ref()
                ),
            ));
            return;
        }
        let origin = src.origin(name.span());
        if let Some(prev) = self.modules.get(name.get_ref()) {
            diags.push(src.diag(
                name.span(),
                format!(
                    "module '{}' is already defined at {}",
                    name.get_ref(),
                    prev.origin
                ),
            ));
            return;
        }
        let span = raw.span();
        let r = raw.into_inner();
        let before = diags.len();
        let path = match check_abs_path(r.path.get_ref()) {
            Ok(p) => p,
            Err(e) => {
                diags.push(src.diag(r.path.span(), e));
                PathBuf::new()
            }
        };
        let comment = match r.comment {
            Some(c) => {
                if let Err(e) = check_text(c.get_ref(), "comment", 256) {
                    diags.push(src.diag(c.span(), e));
                }
                Some(c.into_inner())
            }
            None => None,
        };
        let read_only = r.read_only.unwrap_or(true);
        let write_only = r.write_only.unwrap_or(false);
        let delete = r.delete.unwrap_or(false);
        let overwrite = r.overwrite.unwrap_or(true);
        if read_only && write_only {
            diags.push(src.diag(
                span.clone(),
                "write_only = true needs read_only = false (a module cannot be both)",
            ));
        }
        if delete && read_only {
            diags.push(src.diag(span.clone(), "delete = true needs read_only = false"));
        }
        let devices = r.devices.unwrap_or(false);
        let specials = r.specials.unwrap_or(devices);
        if devices && !specials {
            diags.push(src.diag(
                span.clone(),
                "specials = false contradicts devices = true (a module that takes device nodes takes FIFOs and sockets too)",
            ));
        }
        if delete && !overwrite {
            diags.push(src.diag(
                span.clone(),
                "delete = true contradicts overwrite = false (deleting removes existing files)",
            ));
        }
        let max_connections = match &r.max_connections {
            Some(v) => match u32::try_from(*v.get_ref()) {
                Ok(n) if n <= 100_000 => n,
                _ => {
                    diags.push(src.diag(
                        v.span(),
                        "max_connections must be 0..=100000 (0 = unlimited)",
                    ));
                    0
                }
            },
            None => 0,
        };
        let timeout = match &r.timeout {
            Some(v) => match u32::try_from(*v.get_ref()) {
                Ok(n) if n <= MAX_MODULE_TIMEOUT => n,
                _ => {
                    diags.push(src.diag(
                        v.span(),
                        format!("timeout must be 0..={MAX_MODULE_TIMEOUT} seconds (0 = none)"),
                    ));
                    0
                }
            },
            None if max_connections > 0 => DEFAULT_SLOT_TIMEOUT,
            None => 0,
        };
        let mut id = |v: &Option<Spanned<IdValue>>| match v {
            Some(v) => match id_value(v) {
                Ok(s) => Some(s),
                Err(e) => {
                    diags.push(src.diag(v.span(), e));
                    None
                }
            },
            None => None,
        };
        let uid = id(&r.uid);
        let gid = id(&r.gid);
        if diags.len() > before {
            return;
        }
        self.modules.insert(
            name.get_ref().clone(),
            Module {
                name: name.into_inner(),
                path,
                comment,
                read_only,
                write_only,
                delete,
                overwrite,
                munge_links: r.munge_links.unwrap_or(!read_only),
                devices,
                specials,
                follow_links: r.follow_links.unwrap_or(false),
                max_connections,
                timeout,
                setuid: r.setuid.unwrap_or(false),
                uid,
                gid,
                list: r.list.unwrap_or(true),
                origin,
            },
        );
    }

    fn client(
        &mut self,
        src: &Source,
        name: Spanned<String>,
        raw: Spanned<RawClient>,
        diags: &mut Vec<Diagnostic>,
    ) {
        if !self.check_name(src, &name, "client", diags) {
            return;
        }
        let origin = src.origin(name.span());
        if let Some(prev) = self.clients.get(name.get_ref()) {
            diags.push(src.diag(
                name.span(),
                format!(
                    "client '{}' is already defined at {}",
                    name.get_ref(),
                    prev.origin
                ),
            ));
            return;
        }
        let span = raw.span();
        let r = raw.into_inner();
        let before = diags.len();
        let mut modules = Vec::new();
        for m in &r.modules {
            if modules.contains(m.get_ref()) {
                diags.push(src.diag(
                    m.span(),
                    format!("module '{}' is listed twice", m.get_ref()),
                ));
                continue;
            }
            self.module_refs.push((
                m.get_ref().clone(),
                src.diag(
                    m.span(),
                    format!(
                        "client '{}' refers to module '{}', which is not defined",
                        name.get_ref(),
                        m.get_ref().escape_default()
                    ),
                ),
            ));
            modules.push(m.get_ref().clone());
        }
        let mut from = Vec::new();
        for f in &r.from {
            match f.get_ref().parse::<IpNet>() {
                Ok(n) => from.push(n),
                Err(e) => diags.push(src.diag(f.span(), format!("from: {e}"))),
            }
        }
        if let Some(k) = &r.key
            && let Err(e) = check_key(k.get_ref())
        {
            diags.push(src.diag(k.span(), e));
        }
        if let Some(n) = &r.note
            && let Err(e) = check_text(n.get_ref(), "note", 256)
        {
            diags.push(src.diag(n.span(), e));
        }
        if let Some(t) = &r.trigger {
            self.trigger_refs.push((
                t.get_ref().clone(),
                src.diag(
                    t.span(),
                    format!(
                        "client '{}' refers to trigger '{}', which is not defined",
                        name.get_ref(),
                        t.get_ref().escape_default()
                    ),
                ),
            ));
        }
        if r.modules.is_empty() && r.trigger.is_none() {
            diags.push(src.diag(
                span,
                format!(
                    "client '{}' has neither modules nor a trigger",
                    name.get_ref()
                ),
            ));
        }
        if diags.len() > before {
            return;
        }
        self.clients.insert(
            name.get_ref().clone(),
            Client {
                name: name.into_inner(),
                modules,
                from,
                key: r.key.map(Spanned::into_inner),
                note: r.note.map(Spanned::into_inner),
                trigger: r.trigger.map(Spanned::into_inner),
                origin,
            },
        );
    }

    fn trigger(
        &mut self,
        src: &Source,
        name: Spanned<String>,
        raw: Spanned<RawTrigger>,
        diags: &mut Vec<Diagnostic>,
    ) {
        if !self.check_name(src, &name, "trigger", diags) {
            return;
        }
        let origin = src.origin(name.span());
        if let Some(prev) = self.triggers.get(name.get_ref()) {
            diags.push(src.diag(
                name.span(),
                format!(
                    "trigger '{}' is already defined at {}",
                    name.get_ref(),
                    prev.origin
                ),
            ));
            return;
        }
        let r = raw.into_inner();
        let before = diags.len();
        match r.command.get_ref().first() {
            None => diags.push(src.diag(r.command.span(), "command must not be empty")),
            Some(prog) => {
                if let Err(e) = check_abs_path(prog) {
                    diags.push(src.diag(r.command.span(), format!("command[0]: {e}")));
                }
            }
        }
        if r.command.get_ref().len() > MAX_TRIGGER_COMMAND {
            diags.push(src.diag(
                r.command.span(),
                format!("command: at most {MAX_TRIGGER_COMMAND} words"),
            ));
        }
        for a in r.command.get_ref() {
            if a.contains('\0') {
                diags.push(src.diag(r.command.span(), "command arguments must not contain NUL"));
            } else if a.len() > MAX_TRIGGER_COMMAND_WORD {
                diags.push(src.diag(
                    r.command.span(),
                    format!("command: a word longer than {MAX_TRIGGER_COMMAND_WORD} bytes"),
                ));
            }
        }
        let log = match &r.log {
            Some(l) => match check_abs_path(l.get_ref()) {
                Ok(p) => Some(p),
                Err(e) => {
                    diags.push(src.diag(l.span(), e));
                    None
                }
            },
            None => None,
        };
        let args = r.args.as_ref().map(|list| {
            if list.get_ref().len() > MAX_TRIGGER_LIST {
                diags.push(src.diag(
                    list.span(),
                    format!("args: at most {MAX_TRIGGER_LIST} words"),
                ));
            }
            for a in list.get_ref() {
                if let Err(e) = check_trigger_pattern(a.get_ref()) {
                    diags.push(src.diag(a.span(), e));
                }
            }
            list.get_ref().iter().map(|a| a.get_ref().clone()).collect()
        });
        let mut env = BTreeMap::new();
        if let Some(e) = &r.env {
            if e.get_ref().len() > MAX_TRIGGER_LIST {
                diags.push(src.diag(
                    e.span(),
                    format!("env: at most {MAX_TRIGGER_LIST} variables"),
                ));
            }
            for (k, v) in e.get_ref() {
                let name_ok = !k.is_empty()
                    && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    && !k.starts_with(|c: char| c.is_ascii_digit());
                if !name_ok {
                    diags.push(src.diag(
                        e.span(),
                        format!(
                            "env: '{}' is not a variable name (letters, digits and '_', not starting with a digit)",
                            k.escape_default()
                        ),
                    ));
                } else if ["HOME", "USER", "LOGNAME"].contains(&k.as_str()) {
                    diags.push(src.diag(
                        e.span(),
                        format!("env: {k} is the SSH account's, set by the gate"),
                    ));
                } else if let Err(m) = check_text(v, &format!("env {k}"), 4096) {
                    diags.push(src.diag(e.span(), m));
                } else {
                    env.insert(k.clone(), v.clone());
                }
            }
        }
        let timeout = match &r.timeout {
            Some(t) => match parse_long_duration(t.get_ref()) {
                Ok(d) => Some(d),
                Err(e) => {
                    diags.push(src.diag(t.span(), format!("timeout: {e}")));
                    None
                }
            },
            None => None,
        };
        if diags.len() > before {
            return;
        }
        self.triggers.insert(
            name.get_ref().clone(),
            Trigger {
                name: name.into_inner(),
                command: r.command.into_inner(),
                args,
                log,
                env,
                timeout,
                origin,
            },
        );
    }

    fn cross_check(&mut self, diags: &mut Vec<Diagnostic>) {
        for (m, d) in std::mem::take(&mut self.module_refs) {
            if !self.modules.contains_key(&m) {
                diags.push(d);
            }
        }
        for (t, d) in std::mem::take(&mut self.trigger_refs) {
            if !self.triggers.contains_key(&t) {
                diags.push(d);
            }
        }
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

    #[test]
    fn errors_name_file_line_and_column() {
        let table: &[(&str, &str)] = &[
            (
                "[gate]\nfrobnicate = 1\n",
                "/p.toml:2:1: unknown field `frobnicate`",
            ),
            (
                "[modules.a]\npath = \"/srv/a\"\nreadonly = true\n",
                "/p.toml:3:1: unknown field `readonly`",
            ),
            (
                "[modules.a]\npath = \"srv/a\"\n",
                "/p.toml:2:8: 'srv/a' must be an absolute path",
            ),
            (
                "[modules.a]\npath = \"/srv/../etc\"\n",
                "/p.toml:2:8: '/srv/../etc' must not contain",
            ),
            (
                "[modules.a]\npath = \"/srv/a/\"\n",
                "/p.toml:2:8: '/srv/a/' must be written without",
            ),
            (
                "[modules.a]\npath = \"/srv/%x%\"\n",
                "/p.toml:2:8: path contains the character '%'",
            ),
            ("[modules.a]\n", "/p.toml:1:1: missing field `path`"),
            (
                "[modules.a]\npath = \"/a\"\nread_only = \"no\"\n",
                "/p.toml:3:13: invalid type",
            ),
            (
                "[modules.a]\npath = \"/a\"\nwrite_only = true\n",
                "/p.toml:1:1: write_only = true needs read_only = false",
            ),
            (
                "[modules.a]\npath = \"/a\"\ndelete = true\n",
                "/p.toml:1:1: delete = true needs read_only = false",
            ),
            (
                "[modules.a]\npath = \"/a\"\nread_only = false\ndelete = true\noverwrite = false\n",
                "/p.toml:1:1: delete = true contradicts overwrite = false",
            ),
            (
                "[modules.a]\npath = \"/a\"\nread_only = false\ndevices = true\nspecials = false\n",
                "/p.toml:1:1: specials = false contradicts devices = true",
            ),
            (
                "[modules.\"a b\"]\npath = \"/a\"\n",
                "/p.toml:1:10: module name 'a b' must be",
            ),
            (
                "[clients.c]\nmodules = [\"nope\"]\n",
                "/p.toml:2:12: client 'c' refers to module 'nope'",
            ),
            (
                "[modules.a]\npath = \"/a\"\n[clients.c]\nmodules = [\"a\"]\nfrom = [\"10.0.0.0/33\"]\n",
                "/p.toml:5:9: from:",
            ),
            (
                "[modules.a]\npath = \"/a\"\n[clients.c]\nmodules = [\"a\"]\nkey = \"hello\"\n",
                "/p.toml:5:7: key must be",
            ),
            (
                "[clients.c]\n",
                "/p.toml:1:1: client 'c' has neither modules nor a trigger",
            ),
            (
                "[clients.c]\ntrigger = \"t\"\n",
                "/p.toml:2:11: client 'c' refers to trigger 't'",
            ),
            (
                "[gate]\nsandbox = \"maybe\"\n",
                "/p.toml:2:11: unknown variant `maybe`",
            ),
            (
                "[gate]\nwait_for_slot = \"5 minutes\"\n",
                "/p.toml:2:17: '5 minutes': the unit",
            ),
            (
                "[gate]\nrsync = \"rsync\"\n",
                "/p.toml:2:9: 'rsync' must be an absolute path",
            ),
            (
                "[triggers.t]\ncommand = []\n",
                "/p.toml:2:11: command must not be empty",
            ),
            (
                "[triggers.t]\ncommand = [\"mirror\"]\n",
                "/p.toml:2:11: command[0]: 'mirror' must be",
            ),
            (
                "[modules.a]\npath = \"/a\"\nmax_connections = -1\n",
                "/p.toml:3:19: max_connections must be",
            ),
            ("not toml at all", "/p.toml:1:5: "),
        ];
        for (text, want) in table {
            let got = first_error(text);
            assert!(
                got.starts_with(want),
                "policy {text:?}\n got: {got}\nwant: {want}"
            );
        }
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
        assert!(e.contains("timeout must be 0..=2592000 seconds"), "{e}");
        let e = first_error("[modules.a]\npath = \"/a\"\nsetuid = \"no\"\n");
        assert!(e.starts_with("/p.toml:3:10: invalid type"), "{e}");
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

        std::fs::write(d.join("40-dup.toml"), "[modules.a]\npath = \"/srv/b\"\n").unwrap();
        let e = load(&d.join("main.toml"), &PlainReader).unwrap_err();
        assert!(
            e.0[0]
                .to_string()
                .contains("module 'a' is already defined at"),
            "{e}"
        );
        assert!(e.0[0].to_string().contains("40-dup.toml:1:10"), "{e}");

        std::fs::write(d.join("40-dup.toml"), "[gate]\nsyslog = true\n").unwrap();
        let e = load(&d.join("main.toml"), &PlainReader).unwrap_err();
        assert!(e.0[0].to_string().contains("[gate] is only allowed"), "{e}");
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
