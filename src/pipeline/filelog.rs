//! Per-file transfer records: what rsync logs to the gate about each file
//! it sends, receives or deletes ([`crate::plan::filelog`] sets the format),
//! read as it arrives and appended to the audit log, one `"event": "file"`
//! record per file, each with a single write.
//!
//! rsync's log is read as untrusted text: every name in it may come from a
//! client. A record is what lies between the session's secret start and
//! end tokens, which no name can hold; the fields before the name are
//! checked (an operation rsync knows, two numbers, a module of the plan);
//! the name is decoded (rsync writes control bytes as `\#` and three octal
//! digits) and turned into a path relative to the module, through the
//! descriptors the gate holds (checked mode) or the module rsync names
//! (daemon mode), never with anything above the module in it, then
//! escaped as every audit field is. Past `transfer_log_limit` records one
//! record counts the rest.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::audit::{self, AuditLog, Event, FileInfo, FileLogStatus, FileOp, Mode, Record, Tally};
use crate::decide;
use crate::plan::filelog::{CheckedNames, FileLogPlan, Names, Tokens, split_fd};

/// The longest message rsync logs: it cuts every message to 2047 bytes
/// (log.c, `rwrite`), before escaping.
pub const MESSAGE_MAX: usize = 2047;

/// How much unread text after a start token is kept while waiting for the
/// end token: more than any message rsync writes, escaped (a record cut
/// short and followed by other lines is given up past it).
const PENDING_MAX: usize = 64 * 1024;

/// Longest line outside records that is looked at (daemon mode: the line
/// that names the client's request).
const LINE_MAX: usize = 8 * 1024;

/// One file as rsync logged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    pub op: FileOp,
    pub length: u64,
    pub bytes: u64,
    /// Daemon mode: the module (`%m`).
    pub module: Option<String>,
    /// The name, decoded: rsync's `%f`.
    pub name: Vec<u8>,
    /// rsync cut the message short: `name` is its beginning.
    pub cut: bool,
}

/// What the parser found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    File(Logged),
    /// Text between the tokens that is not a file record.
    Unreadable,
    /// Daemon mode: the path a push names (`rsync to MODULE/PATH from ...`,
    /// logged once the module is chosen, before any transfer).
    PushTo(Vec<u8>),
}

/// Reads rsync's log as it arrives, in chunks of any size.
#[derive(Debug)]
pub struct Parser {
    start: Vec<u8>,
    end: Vec<u8>,
    /// The searches for the two tokens, built once.
    find_start: memchr::memmem::Finder<'static>,
    find_end: memchr::memmem::Finder<'static>,
    /// Records carry the module (`%m`, daemon mode).
    with_module: bool,
    buf: Vec<u8>,
    /// Where the unread part of `buf` begins.
    pos: usize,
    /// `buf[pos..]` begins with a start token.
    started: bool,
    /// How far into `buf` the search for the next token has gone.
    scanned: usize,
    /// Daemon mode: the line outside records being gathered, until the
    /// request line has been seen.
    line: Option<Vec<u8>>,
}

impl Parser {
    pub fn new(tokens: &Tokens, with_module: bool) -> Parser {
        Parser {
            start: tokens.start.as_bytes().to_vec(),
            end: tokens.end.as_bytes().to_vec(),
            find_start: memchr::memmem::Finder::new(tokens.start.as_bytes()).into_owned(),
            find_end: memchr::memmem::Finder::new(tokens.end.as_bytes()).into_owned(),
            with_module,
            buf: Vec::new(),
            pos: 0,
            started: false,
            scanned: 0,
            line: with_module.then(Vec::new),
        }
    }

    /// Take the next chunk of the log.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<Parsed>) {
        self.buf.extend_from_slice(chunk);
        self.scan(out);
        // What was read goes, once per chunk.
        self.buf.drain(..self.pos);
        self.scanned -= self.pos.min(self.scanned);
        self.pos = 0;
    }

    fn scan(&mut self, out: &mut Vec<Parsed>) {
        loop {
            if !self.started {
                let unread = self.buf.get(self.pos..).unwrap_or_default();
                match self.find_start.find(unread) {
                    Some(i) => {
                        self.outside(self.pos + i, out);
                        self.pos += i;
                        self.started = true;
                        self.scanned = self.pos + self.start.len();
                    }
                    None => {
                        // A start token may begin in the last bytes.
                        let keep = self.start.len().saturating_sub(1);
                        let upto = self.buf.len().saturating_sub(keep).max(self.pos);
                        self.outside(upto, out);
                        self.pos = upto;
                        self.scanned = upto;
                        return;
                    }
                }
            }
            let hay = self.buf.get(self.scanned..).unwrap_or_default();
            let end = self.find_end.find(hay).map(|i| i + self.scanned);
            let next = self.find_start.find(hay).map(|i| i + self.scanned);
            match (end, next) {
                (Some(e), None) => {
                    self.take_complete(e, out);
                }
                (Some(e), Some(n)) if e < n => {
                    self.take_complete(e, out);
                }
                (_, Some(n)) => {
                    // No end before the next record: rsync cut this one.
                    out.push(self.cut(n));
                    self.pos = n;
                    self.scanned = n + self.start.len();
                }
                (None, None) => {
                    if self.buf.len() - self.pos > PENDING_MAX {
                        out.push(self.cut(self.buf.len()));
                        self.pos = self.buf.len();
                        self.scanned = self.pos;
                        self.started = false;
                        return;
                    }
                    let longest = self.start.len().max(self.end.len());
                    self.scanned = self
                        .buf
                        .len()
                        .saturating_sub(longest.saturating_sub(1))
                        .max(self.pos + self.start.len());
                    return;
                }
            }
        }
    }

    /// The record from `pos` to the end token at `e`.
    fn take_complete(&mut self, e: usize, out: &mut Vec<Parsed>) {
        let content = self
            .buf
            .get(self.pos + self.start.len()..e)
            .unwrap_or_default();
        out.push(self.complete(content));
        self.pos = e + self.end.len();
        self.started = false;
    }

    /// The log has ended.
    pub fn finish(&mut self, out: &mut Vec<Parsed>) {
        if self.started {
            out.push(self.cut(self.buf.len()));
        }
        self.buf.clear();
        self.pos = 0;
        self.scanned = 0;
        self.started = false;
    }

    /// `buf[pos..upto]` lies outside any record: daemon mode looks there
    /// for the line naming the client's request.
    fn outside(&mut self, upto: usize, out: &mut Vec<Parsed>) {
        let Some(line) = self.line.as_mut() else {
            return;
        };
        let mut found = None;
        for &b in self.buf.get(self.pos..upto).unwrap_or_default() {
            if b != b'\n' {
                if line.len() < LINE_MAX {
                    line.push(b);
                }
                continue;
            }
            match request_line(line) {
                RequestLine::Other => line.clear(),
                RequestLine::Pull => {
                    found = Some(None);
                    break;
                }
                RequestLine::Push(p) => {
                    found = Some(Some(p));
                    break;
                }
            }
        }
        if let Some(push) = found {
            // Only the first request line counts: later ones may be a
            // client's doing (`-v` names).
            self.line = None;
            if let Some(p) = push {
                out.push(Parsed::PushTo(p));
            }
        }
    }

    /// The text between a start and an end token.
    fn complete(&self, content: &[u8]) -> Parsed {
        let Some(rest) = content
            .strip_prefix(b" ")
            .and_then(|c| c.strip_suffix(b" "))
        else {
            return Parsed::Unreadable;
        };
        self.fields(rest, false)
            .map_or(Parsed::Unreadable, Parsed::File)
    }

    /// A record rsync cut short, whose text (escaped) is `buf[pos..upto]`,
    /// followed by whatever rsync logged next: the message was 2047 bytes
    /// before escaping, so that much of it is decoded and the rest is
    /// another message's.
    fn cut(&self, upto: usize) -> Parsed {
        let raw = self.buf.get(self.pos..upto).unwrap_or_default();
        let (message, _) = unescape_upto(raw, MESSAGE_MAX);
        let Some(mut rest) = message
            .strip_prefix(self.start.as_slice())
            .and_then(|m| m.strip_prefix(b" "))
        else {
            return Parsed::Unreadable;
        };
        // The end token itself may have been cut: none of it is the name.
        for n in (1..=self.end.len()).rev() {
            let mut tail = vec![b' '];
            tail.extend_from_slice(self.end.get(..n).unwrap_or_default());
            if let Some(r) = rest.strip_suffix(tail.as_slice()) {
                rest = r;
                break;
            }
        }
        self.fields(rest, true)
            .map_or(Parsed::Unreadable, Parsed::File)
    }

    /// `OP LENGTH BYTES [MODULE ]NAME`, NAME still escaped by rsync
    /// (decoded here) unless `cut` (already decoded).
    fn fields(&self, text: &[u8], cut: bool) -> Option<Logged> {
        let mut words = text.splitn(if self.with_module { 5 } else { 4 }, |&b| b == b' ');
        let op = match words.next()? {
            b"send" => FileOp::Send,
            b"recv" => FileOp::Recv,
            b"del." => FileOp::Del,
            _ => return None,
        };
        let number = |w: &[u8]| -> Option<u64> {
            if w.is_empty() || !w.iter().all(u8::is_ascii_digit) {
                return None;
            }
            std::str::from_utf8(w).ok()?.parse().ok()
        };
        let length = number(words.next()?)?;
        let bytes = number(words.next()?)?;
        let module = match self.with_module {
            true => {
                let m = std::str::from_utf8(words.next()?).ok()?;
                if !crate::policy::valid_name(m) {
                    return None;
                }
                Some(m.to_string())
            }
            false => None,
        };
        let name = words.next()?;
        if name.is_empty() {
            return None;
        }
        Some(Logged {
            op,
            length,
            bytes,
            module,
            name: if cut { name.to_vec() } else { unescape(name) },
            cut,
        })
    }
}

/// What a line outside records says (daemon mode).
#[derive(Debug, PartialEq, Eq)]
enum RequestLine {
    Other,
    /// `rsync on ...`: a pull.
    Pull,
    /// `rsync to MODULE/PATH from HOST (ADDR)`: a push, and its path.
    Push(Vec<u8>),
}

/// `YYYY/MM/DD HH:MM:SS [PID] MESSAGE`.
fn request_line(line: &[u8]) -> RequestLine {
    let Some(at) = memchr::memmem::find(line, b"] ") else {
        return RequestLine::Other;
    };
    let message = line.get(at + 2..).unwrap_or_default();
    if message.starts_with(b"rsync on ") {
        return RequestLine::Pull;
    }
    let Some(rest) = message.strip_prefix(b"rsync to ") else {
        return RequestLine::Other;
    };
    const FROM: &[u8] = b" from ";
    match rest.windows(FROM.len()).rposition(|w| w == FROM) {
        Some(end) => RequestLine::Push(unescape(rest.get(..end).unwrap_or_default())),
        None => RequestLine::Other,
    }
}

/// One `\#ooo` escape at the start of `b`: its byte.
fn escaped_byte(b: &[u8]) -> Option<u8> {
    let d = b.get(..5)?;
    if d.get(..2)? != b"\\#" {
        return None;
    }
    let digits = d.get(2..)?;
    if !digits.iter().all(|x| (b'0'..=b'7').contains(x)) {
        return None;
    }
    u8::from_str_radix(std::str::from_utf8(digits).ok()?, 8).ok()
}

/// rsync writes a control byte (and a backslash that would look like such
/// an escape) into its log as `\#` and three octal digits: undo that.
pub fn unescape(b: &[u8]) -> Vec<u8> {
    unescape_upto(b, usize::MAX).0
}

/// Decode at most `max` bytes' worth of `b`: the bytes, and how much of
/// `b` they took.
fn unescape_upto(b: &[u8], max: usize) -> (Vec<u8>, usize) {
    if memchr::memchr(b'\\', b).is_none() {
        let n = b.len().min(max);
        return (b.get(..n).unwrap_or_default().to_vec(), n);
    }
    let mut out = Vec::with_capacity(b.len().min(max));
    let mut i = 0;
    while out.len() < max
        && let Some(&c) = b.get(i)
    {
        match escaped_byte(b.get(i..).unwrap_or_default()) {
            Some(v) => {
                out.push(v);
                i += 5;
            }
            None => {
                out.push(c);
                i += 1;
            }
        }
    }
    (out, i)
}

/// Turns the names rsync logs into paths relative to the module.
#[derive(Debug)]
pub struct Mapper {
    names: Names,
    /// Checked mode, a push to a last name: is it the directory the
    /// files go in (decided at the first file)?
    into_last: Option<bool>,
    /// Daemon mode: the module and path a push names, and (decided at the
    /// first file) whether a single file is stored under that path.
    push_to: Option<(String, Vec<Vec<u8>>)>,
    single: Option<bool>,
    /// Checked mode, a pull: each held descriptor's directory relative to
    /// the module (None: not inside it), found at its first file.
    held_rel: Vec<(i32, Option<Vec<u8>>)>,
}

/// `name`'s components, without empty ones and `.`; None if one is `..`.
fn components(name: &[u8]) -> Option<Vec<&[u8]>> {
    let comps: Vec<&[u8]> = name
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect();
    if comps.iter().any(|c| *c == b"..") {
        return None;
    }
    Some(comps)
}

/// `real` relative to `root`, as the record shows it (`.` for the root).
fn relative(root: &Path, real: &Path) -> Option<String> {
    let rel = real.strip_prefix(root).ok()?;
    let bytes = rel.as_os_str().as_bytes();
    if components(bytes)?.is_empty() {
        return Some(".".into());
    }
    Some(audit::escape(bytes))
}

/// A path relative to the module, with no empty or `.` component, as the
/// record shows it: `.` for the module itself.
fn shown(rel: &[u8]) -> String {
    if rel.is_empty() {
        ".".into()
    } else {
        audit::escape(rel)
    }
}

fn join(dir: &Path, names: &[&[u8]]) -> PathBuf {
    names.iter().fold(dir.to_path_buf(), |p, n| {
        p.join(std::ffi::OsStr::from_bytes(n))
    })
}

/// A name that cannot be placed in the module: its last component only,
/// never anything above it.
fn basename(name: &[u8]) -> String {
    let last = name
        .rsplit(|&b| b == b'/')
        .find(|c| !c.is_empty() && *c != b"." && *c != b"..")
        .unwrap_or(b"?");
    audit::escape(last)
}

impl Mapper {
    pub fn new(names: Names) -> Mapper {
        Mapper {
            names,
            into_last: None,
            push_to: None,
            single: None,
            held_rel: Vec::new(),
        }
    }

    /// Daemon mode: what the push named (the first request line only).
    pub fn push_to(&mut self, request: &[u8]) {
        if self.push_to.is_some() {
            return;
        }
        let (module, path) = match request.iter().position(|&b| b == b'/') {
            Some(i) => (
                request.get(..i).unwrap_or_default(),
                request.get(i + 1..).unwrap_or_default(),
            ),
            None => (request, &b""[..]),
        };
        // A path ending in `/` (or naming the module) is a directory.
        if path.is_empty() || path.ends_with(b"/") || path.ends_with(b"/.") || path == b"." {
            return;
        }
        let (Ok(module), Some(comps)) = (std::str::from_utf8(module), components(path)) else {
            return;
        };
        if comps.is_empty() {
            return;
        }
        self.push_to = Some((
            module.to_string(),
            comps.iter().map(|c| c.to_vec()).collect(),
        ));
    }

    /// The module (numbered: see [`Mapper::module_name`]) and the path of
    /// a logged file.
    pub fn place(&mut self, f: &Logged) -> Option<(usize, String)> {
        match &self.names {
            Names::Checked(c) => Some((0, checked(c, &mut self.into_last, &mut self.held_rel, f))),
            Names::Daemon(modules) => {
                let module = f.module.as_deref()?;
                let at = modules.iter().position(|(m, _)| m == module)?;
                let (module, root) = modules.get(at)?;
                let push = self
                    .push_to
                    .as_ref()
                    .filter(|(m, _)| m == module)
                    .map(|(_, p)| p);
                Some((at, daemon(root, push, &mut self.single, f)))
            }
        }
    }

    /// The name of the module [`Mapper::place`] numbered `at`.
    pub fn module_name(&self, at: usize) -> Option<&str> {
        match &self.names {
            Names::Checked(c) => (at == 0).then_some(c.module.as_str()),
            Names::Daemon(m) => m.get(at).map(|(n, _)| n.as_str()),
        }
    }

    /// The module of the session's records, when there is one.
    pub fn module(&self) -> Option<&str> {
        match &self.names {
            Names::Checked(c) => Some(&c.module),
            Names::Daemon(m) if m.len() == 1 => m.first().map(|(n, _)| n.as_str()),
            Names::Daemon(_) => None,
        }
    }
}

fn checked(
    c: &CheckedNames,
    into_last: &mut Option<bool>,
    held_rel: &mut Vec<(i32, Option<Vec<u8>>)>,
    f: &Logged,
) -> String {
    match c.mode {
        decide::Mode::Sender => sent(c, held_rel, &f.name).unwrap_or_else(|| basename(&f.name)),
        decide::Mode::Receiver => {
            let (Some(dest), Some(comps)) = (&c.dest, components(&f.name)) else {
                return basename(&f.name);
            };
            let real = match &dest.last {
                None => join(&dest.dir, &comps),
                Some(last) => {
                    let target = join(&dest.dir, &[last]);
                    // rsync made the last name a directory before any file
                    // arrived, or it stores the one file under it.
                    let into = *into_last.get_or_insert_with(|| {
                        std::fs::metadata(&target).is_ok_and(|m| m.is_dir())
                    });
                    if into || f.op != FileOp::Recv {
                        join(&target, &comps)
                    } else {
                        target
                    }
                }
            };
            relative(&c.root, &real).unwrap_or_else(|| basename(&f.name))
        }
    }
}

/// A pull's name as rsync logs it, `proc/self/fd/N/NAME` (the leading
/// `/` taken off), where N is a descriptor the gate holds: the path
/// relative to the module, or None if it would not be inside it.
fn sent(
    c: &CheckedNames,
    held_rel: &mut Vec<(i32, Option<Vec<u8>>)>,
    name: &[u8],
) -> Option<String> {
    let (fd, rest) = split_fd(name.strip_prefix(b"proc/self/fd/")?)?;
    let comps = || {
        rest.split(|&b| b == b'/')
            .filter(|c| !c.is_empty() && *c != b".")
    };
    if comps().any(|c| c == b"..") {
        return None;
    }
    // The held directory relative to the module, once per descriptor (a
    // pull logs thousands of names under one).
    let at = match held_rel.iter().position(|(n, _)| *n == fd) {
        Some(at) => at,
        None => {
            let held = c.fds.iter().find(|(n, _)| *n == fd)?;
            let rel = held
                .1
                .strip_prefix(&c.root)
                .ok()
                .map(|r| r.as_os_str().as_bytes().to_vec());
            held_rel.push((fd, rel));
            held_rel.len() - 1
        }
    };
    let prefix = held_rel.get(at)?.1.as_deref()?;
    let mut rel = Vec::with_capacity(prefix.len() + rest.len());
    rel.extend_from_slice(prefix);
    for comp in comps() {
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(comp);
    }
    Some(shown(&rel))
}

fn daemon(
    root: &Path,
    push: Option<&Vec<Vec<u8>>>,
    single: &mut Option<bool>,
    f: &Logged,
) -> String {
    // rsync logs names relative to the module (`%f` in a daemon).
    let Some(comps) = components(&f.name) else {
        return basename(&f.name);
    };
    if f.op == FileOp::Recv
        && let Some(path) = push
    {
        // A push to a name that is not a directory stores its one file
        // under that name (rsync logs the name the file had).
        let path: Vec<&[u8]> = path.iter().map(Vec::as_slice).collect();
        let target = join(root, &path);
        if *single.get_or_insert_with(|| !std::fs::metadata(&target).is_ok_and(|m| m.is_dir())) {
            return relative(root, &target).unwrap_or_else(|| basename(&f.name));
        }
    }
    // The name's components below the root, as they are: the same text as
    // joining them to the root and taking the root off again, without the
    // two path walks per record.
    shown(&comps.join(&b'/'))
}

/// Which side of the transfer a file record's operation is.
fn file_mode(file: &FileInfo) -> Option<Mode> {
    match file.op {
        Some(FileOp::Send) => Some(Mode::Sender),
        Some(FileOp::Recv | FileOp::Del) => Some(Mode::Receiver),
        _ => None,
    }
}

/// What a session's file records are written with: the parser, the
/// names, the audit log (a handle of its own) and the session's fields.
#[derive(Debug)]
pub struct FileLogWriter {
    parser: Parser,
    mapper: Mapper,
    log: AuditLog,
    session: String,
    client: String,
    limit: u64,
    status: FileLogStatus,
    omitted: BTreeMap<FileOp, Tally>,
    /// The module of the last file placed (see [`Mapper::place`]).
    last_module: Option<usize>,
    /// Anything arrived on the pipe.
    heard: bool,
    done: bool,
}

impl FileLogWriter {
    pub fn new(plan: &FileLogPlan, log: AuditLog, session: &str, client: &str) -> FileLogWriter {
        FileLogWriter {
            parser: Parser::new(&plan.tokens, matches!(plan.names, Names::Daemon(_))),
            mapper: Mapper::new(plan.names.clone()),
            log,
            session: session.to_string(),
            client: client.to_string(),
            limit: plan.limit,
            status: FileLogStatus::default(),
            omitted: BTreeMap::new(),
            last_module: None,
            heard: false,
            done: false,
        }
    }

    fn record(&self, time: &str, module: String, file: FileInfo) -> Record {
        Record {
            time: time.to_string(),
            event: Event::File,
            session: self.session.clone(),
            client: self.client.clone(),
            mode: file_mode(&file),
            modules: vec![module],
            file: Some(file),
            ..Default::default()
        }
    }

    /// Write the records of a chunk (read at `time`): whole lines, a
    /// single write per at most [`audit::BATCH_BYTES`].
    fn write(&mut self, time: &str, files: &[(usize, FileInfo)]) {
        let mut start = 0;
        let mut bytes = 0;
        for (i, (_, f)) in files.iter().enumerate() {
            // A path is at most a few KiB: an estimate is enough.
            bytes += 256 + f.path.as_ref().map_or(0, String::len);
            let last = i + 1 == files.len();
            if bytes >= audit::BATCH_BYTES || last {
                let batch: Vec<audit::FileRecord<'_>> = files
                    .get(start..=i)
                    .unwrap_or_default()
                    .iter()
                    .map(|(module, file)| audit::FileRecord {
                        head: audit::FileHead {
                            time,
                            event: Event::File,
                            session: &self.session,
                            client: &self.client,
                            mode: file_mode(file),
                            modules: [self.mapper.module_name(*module).unwrap_or_default()],
                        },
                        file,
                    })
                    .collect();
                let n = batch.len() as u64;
                match self.log.write_files(&batch) {
                    Ok(()) => self.status.records += n,
                    Err(e) => {
                        self.status.unwritten += n;
                        if self.status.error.is_none() {
                            self.status.error = Some(format!("cannot write file records: {e}"));
                            tracing::warn!("cannot write file records: {e}");
                        }
                    }
                }
                start = i + 1;
                bytes = 0;
            }
        }
    }

    fn handle(&mut self, items: Vec<Parsed>) {
        if items.is_empty() {
            return;
        }
        // When the gate read the chunk these lines came in.
        let time = audit::rfc3339(SystemTime::now());
        let mut files: Vec<(usize, FileInfo)> = Vec::new();
        for item in items {
            let f = match item {
                Parsed::File(f) => f,
                Parsed::Unreadable => {
                    self.status.unreadable += 1;
                    continue;
                }
                Parsed::PushTo(p) => {
                    self.mapper.push_to(&p);
                    continue;
                }
            };
            let Some((module, path)) = self.mapper.place(&f) else {
                self.status.unreadable += 1;
                continue;
            };
            self.last_module = Some(module);
            let taken = self.status.records + self.status.unwritten + files.len() as u64;
            if taken >= self.limit {
                let t = self.omitted.entry(f.op).or_default();
                t.files += 1;
                t.bytes = t.bytes.saturating_add(f.bytes);
                self.status.omitted += 1;
                continue;
            }
            files.push((
                module,
                FileInfo {
                    op: Some(f.op),
                    path: Some(path),
                    length: Some(f.length),
                    bytes: Some(f.bytes),
                    cut: f.cut,
                    omitted: BTreeMap::new(),
                },
            ));
        }
        self.write(&time, &files);
    }

    /// Take a chunk of rsync's log.
    pub fn take(&mut self, bytes: &[u8]) {
        if self.done {
            return;
        }
        self.heard |= !bytes.is_empty();
        let mut items = Vec::new();
        self.parser.feed(bytes, &mut items);
        self.handle(items);
    }

    /// The log has ended (or the session can wait no longer): the last
    /// record, and the one that counts the records past the limit.
    pub fn close(&mut self) {
        if self.done {
            return;
        }
        let mut items = Vec::new();
        self.parser.finish(&mut items);
        self.handle(items);
        self.done = true;
        if self.omitted.is_empty() {
            return;
        }
        let module = self
            .last_module
            .and_then(|m| self.mapper.module_name(m))
            .or_else(|| self.mapper.module())
            .map(String::from)
            .unwrap_or_default();
        let file = FileInfo {
            omitted: std::mem::take(&mut self.omitted),
            ..Default::default()
        };
        let mut r = self.record(&audit::rfc3339(SystemTime::now()), module, file);
        r.modules.retain(|m| !m.is_empty());
        if let Some(f) = r.file.as_ref() {
            r.mode = match f.omitted.keys().next() {
                Some(FileOp::Send) => Some(Mode::Sender),
                Some(_) => Some(Mode::Receiver),
                None => None,
            };
        }
        match self.log.write_batch(std::slice::from_ref(&r)) {
            Ok(()) => {}
            Err(e) => {
                if self.status.error.is_none() {
                    self.status.error =
                        Some(format!("cannot write the record of omitted files: {e}"));
                }
            }
        }
    }

    /// The end record's account, once rsync has exited with `code`.
    pub fn status(&mut self, code: Option<i32>) -> FileLogStatus {
        self.close();
        let mut s = self.status.clone();
        if !self.heard && code == Some(0) && s.error.is_none() {
            s.error = Some("rsync wrote nothing to the transfer log".into());
        }
        s
    }
}

/// The writer, shared between the thread reading the pipe and the session.
#[derive(Debug, Clone)]
pub struct Shared(pub Arc<Mutex<FileLogWriter>>);

impl crate::exec::LogSink for Shared {
    fn take(&mut self, bytes: &[u8]) {
        if let Ok(mut w) = self.0.lock() {
            w.take(bytes);
        }
    }

    fn closed(&mut self) {
        if let Ok(mut w) = self.0.lock() {
            w.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::filelog::Dest;

    const S: &str = "0123456789abcdef0123456789abcdef";
    const E: &str = "fedcba9876543210fedcba9876543210";

    fn tokens() -> Tokens {
        Tokens {
            start: S.into(),
            end: E.into(),
        }
    }

    /// rsync's escaping (log.c, filtered_fwrite with escape_c1): control
    /// bytes but tab, C1 bytes, and a backslash before `#` and three
    /// digits, as `\#ooo`.
    fn rsync_escape(b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, &c) in b.iter().enumerate() {
            let lookalike = c == b'\\'
                && i + 4 < b.len()
                && b[i + 1] == b'#'
                && b[i + 2..i + 5].iter().all(u8::is_ascii_digit);
            if lookalike || (c != b'\t' && (c < b' ' || (0x80..=0x9f).contains(&c))) {
                out.extend_from_slice(format!("\\#{c:03o}").as_bytes());
            } else {
                out.push(c);
            }
        }
        out
    }

    /// A log line as rsync writes it for `message` (cut at 2047 bytes,
    /// escaped, a newline only when the message was whole).
    fn line(message: &[u8]) -> Vec<u8> {
        let mut m = message.to_vec();
        m.push(b'\n');
        m.truncate(MESSAGE_MAX);
        let whole = m.last() == Some(&b'\n');
        if whole {
            m.pop();
        }
        let mut out = b"2026/12/01 18:04:24 [4812] ".to_vec();
        out.extend(rsync_escape(&m));
        if whole {
            out.push(b'\n');
        }
        out
    }

    fn record(op: &str, len: u64, bytes: u64, module: Option<&str>, name: &[u8]) -> Vec<u8> {
        let mut m = format!("{S} {op} {len} {bytes} ").into_bytes();
        if let Some(module) = module {
            m.extend_from_slice(format!("{module} ").as_bytes());
        }
        m.extend_from_slice(name);
        m.extend_from_slice(format!(" {E}").as_bytes());
        line(&m)
    }

    fn parse_all(log: &[u8], with_module: bool, chunk: usize) -> Vec<Parsed> {
        let mut p = Parser::new(&tokens(), with_module);
        let mut out = Vec::new();
        for c in log.chunks(chunk.max(1)) {
            p.feed(c, &mut out);
        }
        p.finish(&mut out);
        out
    }

    fn file(op: FileOp, len: u64, bytes: u64, name: &[u8], cut: bool) -> Parsed {
        Parsed::File(Logged {
            op,
            length: len,
            bytes,
            module: None,
            name: name.to_vec(),
            cut,
        })
    }

    #[test]
    fn reads_records_in_chunks_of_any_size() {
        let mut log = line(b"building file list");
        log.extend(record("send", 6, 49, None, b"proc/self/fd/3/a.txt"));
        log.extend(record("recv", 100, 140, None, b"sub/deeper/c.bin"));
        log.extend(record("del.", 0, 0, None, b"old"));
        log.extend(line(b"sent 477 bytes  received 117 bytes  total size 111"));
        let want = vec![
            file(FileOp::Send, 6, 49, b"proc/self/fd/3/a.txt", false),
            file(FileOp::Recv, 100, 140, b"sub/deeper/c.bin", false),
            file(FileOp::Del, 0, 0, b"old", false),
        ];
        for chunk in [1, 2, 7, 31, 32, 33, 64, 4096] {
            assert_eq!(parse_all(&log, false, chunk), want, "chunk {chunk}");
        }
    }

    #[test]
    fn odd_names_come_back_as_they_were() {
        for name in [
            &b"new\nline"[..],
            b"tab\there",
            b"esc\x1b[2J",
            b"bidi \xe2\x80\xaeexe.txt",
            b"c1 \xc2\x85 \x85",
            b"back\\slash \\#012 not an escape",
            b"\\#",
            b"ends with \\",
            b"a b  c ",
            b" leading",
            b"looks like a token 0123456789abcdef",
            b"\xff\xfe invalid utf-8",
            b"del. 0 0 x",
        ] {
            let log = record("recv", 5, 6, None, name);
            assert!(
                !log[..log.len() - 1].contains(&b'\n'),
                "{name:?} must stay on one line"
            );
            assert_eq!(
                parse_all(&log, false, 5),
                vec![file(FileOp::Recv, 5, 6, name, false)],
                "{name:?}"
            );
        }
    }

    #[test]
    fn forged_records_in_names_stay_names() {
        // A name that holds what looks like a record, with tokens the
        // client made up (it cannot know the session's), is one name.
        let fake_s = "1111111111111111aaaaaaaaaaaaaaaa";
        let fake_e = "2222222222222222bbbbbbbbbbbbbbbb";
        for name in [
            format!("x {fake_e}\n{fake_s} send 1 1 etc/shadow {fake_e}"),
            format!("x\n2026/12/01 18:04:24 [4812] {fake_s} send 1 1 etc/shadow {fake_e}"),
        ] {
            let log = record("recv", 1, 2, None, name.as_bytes());
            assert_eq!(
                parse_all(&log, false, 3),
                vec![file(FileOp::Recv, 1, 2, name.as_bytes(), false)]
            );
        }
    }

    #[test]
    fn cut_messages_are_marked_and_the_next_record_is_kept() {
        // A name so long rsync cuts the message (and its newline).
        let long = vec![b'n'; 3000];
        let mut log = record("recv", 1, 2, None, &long);
        assert!(!log.ends_with(b"\n"));
        log.extend(line(b"some other message"));
        log.extend(record("recv", 3, 4, None, b"next.txt"));
        let got = parse_all(&log, false, 100);
        let Parsed::File(first) = &got[0] else {
            panic!("{got:?}")
        };
        assert!(first.cut);
        let fixed = format!("{S} recv 1 2 ").len();
        assert_eq!(first.name, vec![b'n'; MESSAGE_MAX - fixed]);
        assert_eq!(got[1], file(FileOp::Recv, 3, 4, b"next.txt", false));
        assert_eq!(got.len(), 2);
        // Control bytes near the cut: decoded up to the cut, nothing of
        // the next line's time taken.
        let mut odd = vec![b'a'; MESSAGE_MAX - format!("{S} recv 1 2 ").len() - 2];
        odd.extend_from_slice(b"\n\n\n\n");
        let mut log = record("recv", 1, 2, None, &odd);
        log.extend(record("recv", 3, 4, None, b"next.txt"));
        let got = parse_all(&log, false, 9);
        let Parsed::File(first) = &got[0] else {
            panic!("{got:?}")
        };
        assert!(first.cut);
        assert!(
            first.name.ends_with(b"aa\n\n"),
            "{:?}",
            &first.name[first.name.len() - 4..]
        );
        assert_eq!(got[1], file(FileOp::Recv, 3, 4, b"next.txt", false));
        // A cut record at the very end of the log.
        let log = record("send", 1, 2, None, &long);
        assert!(matches!(&parse_all(&log, false, 4096)[..], [Parsed::File(f)] if f.cut));
        // A message cut inside the end token: the token is no part of the
        // name.
        let fixed = format!("{S} recv 1 2 ").len();
        let name = vec![b'q'; MESSAGE_MAX - fixed - 5];
        let mut log = record("recv", 1, 2, None, &name);
        log.extend(record("recv", 3, 4, None, b"z"));
        let got = parse_all(&log, false, 4096);
        assert!(
            matches!(&got[0], Parsed::File(f) if f.cut && f.name == name),
            "{got:?}"
        );
    }

    #[test]
    fn what_is_not_a_record() {
        for bad in [
            format!("{S} sent 1 2 x {E}"),
            format!("{S} send x 2 y {E}"),
            format!("{S} send 1 -2 y {E}"),
            format!("{S} send 1 2  {E}"),
            format!("{S}send 1 2 y {E}"),
            format!("{S} send 1 2 y{E}"),
            format!("{S} send 99999999999999999999999 2 y {E}"),
        ] {
            assert_eq!(
                parse_all(&line(bad.as_bytes()), false, 8),
                vec![Parsed::Unreadable],
                "{bad}"
            );
        }
        // Lines without the tokens are not looked at.
        assert!(parse_all(&line(b"send 1 2 etc/shadow"), false, 8).is_empty());
        assert!(parse_all(b"", false, 8).is_empty());
    }

    #[test]
    fn daemon_records_carry_their_module_and_the_push_is_read_once() {
        let mut log = line(b"connect from UNDETERMINED (127.0.0.1)");
        log.extend(line(
            b"rsync to up/x y from z (1) from UNDETERMINED (127.0.0.1)",
        ));
        log.extend(line(b"receiving file list"));
        log.extend(line(b"rsync to up/forged from UNDETERMINED (127.0.0.1)"));
        log.extend(record("recv", 6, 46, Some("up"), b"x y/a.txt"));
        log.extend(record("recv", 6, 46, Some("../etc"), b"a.txt"));
        let got = parse_all(&log, true, 13);
        assert_eq!(
            got,
            vec![
                Parsed::PushTo(b"up/x y from z (1)".to_vec()),
                Parsed::File(Logged {
                    op: FileOp::Recv,
                    length: 6,
                    bytes: 46,
                    module: Some("up".into()),
                    name: b"x y/a.txt".to_vec(),
                    cut: false,
                }),
                Parsed::Unreadable,
            ]
        );
        // A pull stops the search.
        let mut log = line(b"rsync on www/ from UNDETERMINED (127.0.0.1)");
        log.extend(line(b"rsync to www/x from UNDETERMINED (127.0.0.1)"));
        assert!(parse_all(&log, true, 13).is_empty());
    }

    #[test]
    fn unescapes_what_rsync_escapes() {
        assert_eq!(unescape(b"a\\#012b"), b"a\nb");
        assert_eq!(unescape(b"\\#134#123"), b"\\#123");
        assert_eq!(unescape(b"\\#999"), b"\\#999");
        assert_eq!(unescape(b"\\#400"), b"\\#400");
        assert_eq!(unescape(b"\\#01"), b"\\#01");
        assert_eq!(unescape_upto(b"ab\\#001cd", 3), (b"ab\x01".to_vec(), 7));
        // Without a backslash there is nothing to decode.
        assert_eq!(unescape_upto(b"abcdef", 3), (b"abc".to_vec(), 3));
        assert_eq!(unescape_upto(b"abc", 9), (b"abc".to_vec(), 3));
        assert_eq!(unescape_upto(b"ab\\c", 3), (b"ab\\".to_vec(), 3));
    }

    fn writer(log: AuditLog, limit: u64) -> FileLogWriter {
        let plan = FileLogPlan {
            tokens: tokens(),
            limit,
            names: Names::Daemon(vec![("up".into(), PathBuf::from("/srv/up"))]),
            file: None,
        };
        FileLogWriter::new(&plan, log, "s1", "c")
    }

    fn daemon_log(n: usize) -> Vec<u8> {
        let mut log = line(b"connect from UNDETERMINED (127.0.0.1)");
        for i in 0..n {
            log.extend(record(
                "recv",
                3,
                40 + i as u64,
                Some("up"),
                format!("d/f{i}").as_bytes(),
            ));
        }
        log
    }

    /// Records are written as they come, each a line; past the limit one
    /// record counts the rest; the end record's account says how many.
    #[test]
    fn writes_records_and_one_past_the_limit() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("audit.jsonl");
        let mut w = writer(AuditLog::open(&path).unwrap(), 3);
        for chunk in daemon_log(5).chunks(50) {
            w.take(chunk);
        }
        w.take(&line(b"rsync: some error \x1b[2J"));
        let status = w.status(Some(0));
        assert_eq!(
            status,
            FileLogStatus {
                records: 3,
                omitted: 2,
                ..Default::default()
            }
        );
        let recs: Vec<Record> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(recs.len(), 4);
        for (i, r) in recs.iter().take(3).enumerate() {
            assert_eq!(r.event, Event::File);
            assert_eq!((r.session.as_str(), r.client.as_str()), ("s1", "c"));
            assert_eq!(r.modules, ["up"]);
            assert_eq!(r.mode, Some(Mode::Receiver));
            let f = r.file.as_ref().unwrap();
            assert_eq!(f.path.as_deref(), Some(format!("d/f{i}").as_str()));
            assert_eq!(
                (f.op, f.length, f.bytes),
                (Some(FileOp::Recv), Some(3), Some(40 + i as u64))
            );
        }
        let last = recs[3].file.as_ref().unwrap();
        assert_eq!(last.op, None);
        assert_eq!(
            last.omitted,
            BTreeMap::from([(
                FileOp::Recv,
                Tally {
                    files: 2,
                    bytes: 87
                }
            )])
        );
        assert_eq!(recs[3].modules, ["up"]);
        // Closing twice writes nothing more.
        w.close();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 4);
    }

    /// Records that cannot be written: the session goes on (the data has
    /// moved), and its end record says how many are missing and why.
    #[test]
    fn records_that_cannot_be_written_are_counted_with_why() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("audit.jsonl");
        std::fs::write(&path, "").unwrap();
        let read_only = std::fs::File::open(&path).unwrap();
        let mut w = writer(AuditLog::from_file(read_only), 100);
        w.take(&daemon_log(4));
        let status = w.status(Some(0));
        assert_eq!((status.records, status.unwritten), (0, 4));
        assert!(
            status
                .error
                .as_deref()
                .is_some_and(|e| e.starts_with("cannot write file records: ")),
            "{status:?}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        // rsync that wrote nothing at all, though it ended well.
        let mut w = writer(AuditLog::open(&path).unwrap(), 100);
        assert_eq!(
            w.status(Some(0)).error.as_deref(),
            Some("rsync wrote nothing to the transfer log")
        );
        let mut w = writer(AuditLog::open(&path).unwrap(), 100);
        assert_eq!(w.status(Some(23)).error, None);
    }

    fn logged(op: FileOp, name: &[u8]) -> Logged {
        Logged {
            op,
            length: 1,
            bytes: 1,
            module: None,
            name: name.to_vec(),
            cut: false,
        }
    }

    #[test]
    fn checked_names_map_to_the_module() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap().join("tree");
        std::fs::create_dir_all(root.join("sub/made")).unwrap();
        let parent = root.parent().unwrap().to_path_buf();
        let sender = |fds: Vec<(i32, PathBuf)>| {
            Mapper::new(Names::Checked(CheckedNames {
                module: "www".into(),
                root: root.clone(),
                mode: decide::Mode::Sender,
                fds,
                dest: None,
            }))
        };
        let mut m = sender(vec![
            (3, root.clone()),
            (4, root.join("sub")),
            (5, parent.clone()),
        ]);
        for (name, want) in [
            (&b"proc/self/fd/3/a.txt"[..], "a.txt"),
            (b"proc/self/fd/4/b.txt", "sub/b.txt"),
            (b"proc/self/fd/5/tree/c.txt", "c.txt"),
            (b"proc/self/fd/3/new\nline", "new\\nline"),
            (b"proc/self/fd/3/\xe2\x80\xae.txt", "\\u{202e}.txt"),
            // Nothing above the module, whatever rsync says.
            (b"proc/self/fd/5/other/secret", "secret"),
            (b"proc/self/fd/3/../../etc/shadow", "shadow"),
            (b"proc/self/fd/9/x", "x"),
            (b"etc/passwd", "passwd"),
        ] {
            let (module, path) = m.place(&logged(FileOp::Send, name)).unwrap();
            assert_eq!(
                (m.module_name(module), path.as_str()),
                (Some("www"), want),
                "{name:?}"
            );
        }
        let receiver = |dest: Dest| {
            Mapper::new(Names::Checked(CheckedNames {
                module: "up".into(),
                root: root.clone(),
                mode: decide::Mode::Receiver,
                fds: vec![],
                dest: Some(dest),
            }))
        };
        let mut m = receiver(Dest {
            dir: root.join("sub"),
            last: None,
        });
        assert_eq!(m.place(&logged(FileOp::Recv, b"x/y")).unwrap().1, "sub/x/y");
        assert_eq!(m.place(&logged(FileOp::Del, b"old")).unwrap().1, "sub/old");
        assert_eq!(m.place(&logged(FileOp::Del, b"../../x")).unwrap().1, "x");
        // A last name rsync made a directory: names are below it.
        let mut m = receiver(Dest {
            dir: root.join("sub"),
            last: Some(b"made".to_vec()),
        });
        assert_eq!(
            m.place(&logged(FileOp::Recv, b"a.txt")).unwrap().1,
            "sub/made/a.txt"
        );
        // A single file stored under the last name.
        let mut m = receiver(Dest {
            dir: root.join("sub"),
            last: Some(b"report.pdf".to_vec()),
        });
        assert_eq!(
            m.place(&logged(FileOp::Recv, b"a.txt")).unwrap().1,
            "sub/report.pdf"
        );
    }

    #[test]
    fn daemon_names_map_to_the_module() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        std::fs::create_dir_all(root.join("dir")).unwrap();
        let names = Names::Daemon(vec![
            ("www".into(), root.join("dir")),
            ("up".into(), root.clone()),
        ]);
        let with = |module: &str, op: FileOp, name: &[u8]| Logged {
            module: Some(module.into()),
            ..logged(op, name)
        };
        let mut m = Mapper::new(names.clone());
        assert_eq!(
            m.place(&with("up", FileOp::Recv, b"dir/a.txt")),
            Some((1, "dir/a.txt".into()))
        );
        assert_eq!(
            m.place(&with("www", FileOp::Recv, b"a.txt")),
            Some((0, "a.txt".into()))
        );
        assert_eq!(m.module_name(0), Some("www"));
        assert_eq!(m.module_name(1), Some("up"));
        assert_eq!(m.module_name(2), None);
        assert_eq!(m.place(&with("ftp", FileOp::Recv, b"a.txt")), None);
        assert_eq!(
            m.place(&with("up", FileOp::Recv, b"../a.txt")).unwrap().1,
            "a.txt"
        );
        // The module itself, and a name with empty and `.` components.
        assert_eq!(m.place(&with("up", FileOp::Send, b".")).unwrap().1, ".");
        assert_eq!(
            m.place(&with("up", FileOp::Send, b"dir//./a\nb.txt"))
                .unwrap()
                .1,
            "dir/a\\nb.txt"
        );
        // A push of one file to a new name.
        let mut m = Mapper::new(names.clone());
        m.push_to(b"up/dir/report.pdf");
        assert_eq!(
            m.place(&with("up", FileOp::Recv, b"dir/a.txt")).unwrap().1,
            "dir/report.pdf"
        );
        // A push into a directory.
        for to in [&b"up/dir"[..], b"up/dir/", b"up/", b"up"] {
            let mut m = Mapper::new(names.clone());
            m.push_to(to);
            assert_eq!(
                m.place(&with("up", FileOp::Recv, b"dir/a.txt")).unwrap().1,
                "dir/a.txt",
                "{to:?}"
            );
        }
        // A path that would lead out is not used.
        let mut m = Mapper::new(names);
        m.push_to(b"up/../x");
        assert_eq!(
            m.place(&with("up", FileOp::Recv, b"a.txt")).unwrap().1,
            "a.txt"
        );
    }
}
