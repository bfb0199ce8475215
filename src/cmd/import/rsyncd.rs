//! rsyncd.conf: read as rsync 3.5 reads it (`params.c`, `loadparm.c`), then
//! mapped to modules, and to clients by who `auth users` and `hosts allow`
//! let in.
//!
//! The reader follows rsync's own grammar: a line is blank, a comment (first
//! non-blank character `#` or `;`), a `[module]` header, an `&include` or
//! `&merge` directive, or `name = value`; a trailing `\` continues a line;
//! parameter names ignore case and whitespace (`readonly` is `read only`,
//! `read_only` is unknown, and rsync ignores it); `[global]` returns to the
//! defaults, which each module takes as they stand at its header. Where
//! rsync refuses the whole file (an empty or `/`-containing module name, a
//! missing `]`, an unknown directive, an empty parameter name) so does the
//! import.

use std::collections::BTreeMap;
use std::path::Path;

use super::model::{Import, Kind, Loc, Lost, Table, Val, sanitize};
use super::nets::{self, Reach};
use super::{Builder, Files, Grant};
use crate::request::options::{self, Rule};

/// How a parameter's value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Str,
    Path,
    Int,
    Bool,
    /// yes/no/unset.
    Bool3,
    Enum,
}

/// What becomes of a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// Turned into policy keys (see [`map_module`]).
    Mapped,
    /// The gate or sshd does this itself: a note.
    Replaced(&'static str),
    /// Not carried over when true (false is the gate's behaviour too).
    LostIfTrue(&'static str),
    /// Not carried over when not empty.
    LostIfSet(&'static str),
}

/// One rsyncd.conf parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Def {
    /// As rsync's manual spells it.
    pub name: &'static str,
    /// Allowed only before the first module (or under `[global]`).
    pub global: bool,
    pub ty: Ty,
    pub how: How,
}

const fn def(name: &'static str, global: bool, ty: Ty, how: How) -> Def {
    Def {
        name,
        global,
        ty,
        how,
    }
}

const SSHD: &str = "sshd accepts the connections";
const AUDIT: &str = "the audit log (and [gate] syslog) records every session";
const SSH_KEYS: &str = "clients authenticate with their SSH keys";
const HOOKS: &str = "the gate runs no hooks of yours (its audit log records every request)";
const FILTER: &str = "the gate has no server-side filter: files it hid are visible to clients; move them out of the module";
const NO_KNOB: &str = "the gate has no such knob";

/// Every parameter of rsync 3.5's `daemon-parm.txt` and what the import
/// does with it. A test holds that each row's fate is what the README's
/// import table says.
pub static PARAMS: &[Def] = &[
    // Global parameters.
    def("address", true, Ty::Str, How::Replaced(SSHD)),
    def(
        "daemon chroot",
        true,
        Ty::Str,
        How::Replaced("the gate confines rsync itself"),
    ),
    def(
        "daemon gid",
        true,
        Ty::Str,
        How::Replaced("rsync runs as the SSH account"),
    ),
    def(
        "daemon uid",
        true,
        Ty::Str,
        How::Replaced("rsync runs as the SSH account"),
    ),
    def("listen backlog", true, Ty::Int, How::Replaced(SSHD)),
    def(
        "motd file",
        true,
        Ty::Str,
        How::LostIfSet("the gate shows no message of the day"),
    ),
    def(
        "pid file",
        true,
        Ty::Str,
        How::Replaced("there is no daemon process"),
    ),
    def("port", true, Ty::Int, How::Replaced(SSHD)),
    def("proxy protocol", true, Ty::Bool, How::Replaced(SSHD)),
    def("proxy protocol hosts", true, Ty::Str, How::Replaced(SSHD)),
    def("socket options", true, Ty::Str, How::Replaced(SSHD)),
    // Module parameters (also defaults in the global section).
    def("auth digest", false, Ty::Str, How::Replaced(SSH_KEYS)),
    def("auth users", false, Ty::Str, How::Mapped),
    def(
        "charset",
        false,
        Ty::Str,
        How::LostIfSet(
            "the gate has no charset knob: host:: clients cannot use --iconv, host:path clients convert as they ask",
        ),
    ),
    def("comment", false, Ty::Str, How::Mapped),
    def(
        "dont compress",
        false,
        Ty::Str,
        How::LostIfSet("the gate has no such knob (clients choose with --skip-compress)"),
    ),
    def("early exec", false, Ty::Str, How::LostIfSet(HOOKS)),
    def("exclude", false, Ty::Str, How::LostIfSet(FILTER)),
    def("exclude from", false, Ty::Str, How::LostIfSet(FILTER)),
    def("fake super", false, Ty::Bool, How::LostIfTrue(NO_KNOB)),
    def("filter", false, Ty::Str, How::LostIfSet(FILTER)),
    def(
        "forward lookup",
        false,
        Ty::Bool,
        How::Replaced("`from` holds addresses; no DNS lookups"),
    ),
    def("gid", false, Ty::Str, How::Mapped),
    def("hosts allow", false, Ty::Str, How::Mapped),
    def("hosts deny", false, Ty::Str, How::Mapped),
    def(
        "ignore errors",
        false,
        Ty::Bool,
        How::LostIfTrue("the gate has no such knob (clients may pass --ignore-errors)"),
    ),
    def(
        "ignore nonreadable",
        false,
        Ty::Bool,
        How::LostIfTrue("the gate has no such knob: unreadable files are reported to clients"),
    ),
    def("include", false, Ty::Str, How::LostIfSet(FILTER)),
    def("include from", false, Ty::Str, How::LostIfSet(FILTER)),
    def(
        "incoming chmod",
        false,
        Ty::Str,
        How::LostIfSet("the gate has no such knob (clients' --chmod applies)"),
    ),
    def(
        "insecure links",
        false,
        Ty::Bool,
        How::LostIfTrue("the gate never follows symlinks someone else could have planted"),
    ),
    def("list", false, Ty::Bool, How::Mapped),
    def(
        "lock file",
        false,
        Ty::Str,
        How::Replaced("max_connections slots live in the gate's lock_dir"),
    ),
    def("log file", false, Ty::Str, How::Replaced(AUDIT)),
    def("log format", false, Ty::Str, How::Replaced(AUDIT)),
    def("max connections", false, Ty::Int, How::Mapped),
    def("max verbosity", false, Ty::Int, How::Replaced(AUDIT)),
    def("munge symlinks", false, Ty::Bool3, How::Mapped),
    def(
        "name",
        false,
        Ty::Str,
        How::LostIfSet("renames the module inside rsync"),
    ),
    def("name converter", false, Ty::Str, How::LostIfSet(HOOKS)),
    def(
        "numeric ids",
        false,
        Ty::Bool3,
        How::Replaced(
            "host:: requests under a root account use numeric ids; host:path requests do as the client asks",
        ),
    ),
    def(
        "open noatime",
        false,
        Ty::Bool3,
        How::LostIfTrue("the gate has no such knob (clients may pass --open-noatime)"),
    ),
    def("outgoing chmod", false, Ty::Str, How::LostIfSet(NO_KNOB)),
    def("path", false, Ty::Path, How::Mapped),
    def("post-xfer exec", false, Ty::Str, How::LostIfSet(HOOKS)),
    def("pre-xfer exec", false, Ty::Str, How::LostIfSet(HOOKS)),
    def("read only", false, Ty::Bool, How::Mapped),
    def("refuse options", false, Ty::Str, How::Mapped),
    def(
        "reverse lookup",
        false,
        Ty::Bool,
        How::Replaced("`from` holds addresses; no DNS lookups"),
    ),
    def(
        "secrets file",
        false,
        Ty::Str,
        How::LostIfSet("rsync passwords are not used: clients authenticate with their SSH keys"),
    ),
    def(
        "strict modes",
        false,
        Ty::Bool,
        How::Replaced("there is no secrets file"),
    ),
    def("syslog facility", false, Ty::Enum, How::Replaced(AUDIT)),
    def("syslog tag", false, Ty::Str, How::Replaced(AUDIT)),
    def(
        "temp dir",
        false,
        Ty::Path,
        How::LostIfSet("the gate has no such knob (clients may pass --temp-dir inside the module)"),
    ),
    def(
        "timeout",
        false,
        Ty::Int,
        How::LostIfSet("the gate has no module timeout yet (the client's --timeout applies)"),
    ),
    def("transfer logging", false, Ty::Bool, How::Mapped),
    def("uid", false, Ty::Str, How::Mapped),
    def(
        "use chroot",
        false,
        Ty::Bool3,
        How::Replaced(
            "the gate confines every module itself (and chroots host:: requests under a root account)",
        ),
    ),
    def("write only", false, Ty::Bool, How::Mapped),
];

/// Case and whitespace do not count in names (rsync's `strwiEQ`).
fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_ascii_whitespace())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

pub fn lookup(name: &str) -> Option<&'static Def> {
    let k = squash(name);
    PARAMS.iter().find(|d| squash(d.name) == k)
}

/// rsync's booleans: yes/true/1, no/false/0 (and unset/-1 where allowed),
/// ignoring case and whitespace.
fn parse_bool(v: &str, three: bool) -> Option<Option<bool>> {
    match squash(v).as_str() {
        "yes" | "true" | "1" => Some(Some(true)),
        "no" | "false" | "0" => Some(Some(false)),
        "unset" | "-1" if three => Some(None),
        _ => None,
    }
}

/// C's `atoi`: leading blanks, a sign, digits; anything after ignored.
fn atoi(v: &str) -> i64 {
    let t = v.trim_start();
    let (neg, digits) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let mut n: i64 = 0;
    for b in digits.bytes().take_while(u8::is_ascii_digit) {
        n = n.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    if neg { -n } else { n }
}

/// Expand `%%`; a `%NAME%` reference is the daemon's environment, which
/// the import cannot know (Err names it).
fn expand_percent(v: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = v;
    while let Some(i) = rest.find('%') {
        let (head, tail) = rest.split_at(i);
        out.push_str(head);
        let after = tail.get(1..).unwrap_or("");
        if let Some(r) = after.strip_prefix('%') {
            out.push('%');
            rest = r;
            continue;
        }
        if let Some(end) = after.find('%') {
            let name = after.get(..end).unwrap_or("");
            if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!("%{name}%"));
            }
        }
        out.push('%');
        rest = after;
    }
    out.push_str(rest);
    Ok(out)
}

// ---------------------------------------------------------------------------
// Reading (params.c)
// ---------------------------------------------------------------------------

/// A parameter as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub def: &'static Def,
    /// The name as written (whitespace runs collapsed).
    pub written: String,
    pub value: String,
    pub loc: Loc,
}

impl Param {
    /// `name = value` for messages (whitespace runs shown as one space).
    fn shown(&self) -> String {
        let v: Vec<&str> = self.value.split_ascii_whitespace().collect();
        format!("{} = {}", self.written, v.join(" "))
    }
}

type Params = BTreeMap<&'static str, Param>;

/// A `[module]` with every parameter that applies to it (its own and the
/// defaults it took).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawModule {
    pub name: String,
    pub loc: Loc,
    pub params: Params,
}

/// The file as rsync would load it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    pub modules: Vec<RawModule>,
    /// Global-only parameters.
    pub globals: Params,
    /// Lines rsync ignores or reads otherwise than written.
    pub issues: Vec<Lost>,
}

#[derive(Debug)]
enum Ev {
    Section(String),
    Param(String, String),
    Directive(String, String),
    Bad(String),
    Fatal(String),
}

struct Lexer<'a> {
    b: &'a [u8],
    pos: usize,
    line: usize,
    nul: bool,
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Write `c` at `i` (never beyond the end + 1).
fn put(buf: &mut Vec<u8>, i: usize, c: u8) {
    match buf.get_mut(i) {
        Some(slot) => *slot = c,
        None => buf.push(c),
    }
}

/// rsync's `Continuation()`: the offset of a `\` that is the last non-blank
/// byte before `i`.
fn continuation(buf: &[u8], i: usize) -> Option<usize> {
    let mut pos = i;
    while pos > 0 {
        pos -= 1;
        match buf.get(pos) {
            Some(&c) if is_space(c) => continue,
            Some(b'\\') => return Some(pos),
            _ => return None,
        }
    }
    None
}

fn text(buf: &[u8], end: usize) -> String {
    String::from_utf8_lossy(buf.get(..end).unwrap_or(buf)).into_owned()
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str) -> Lexer<'a> {
        Lexer {
            b: text.as_bytes(),
            pos: 0,
            line: 1,
            nul: false,
        }
    }

    /// The next byte; a NUL ends the input, as for rsync.
    fn getc(&mut self) -> Option<u8> {
        let c = *self.b.get(self.pos)?;
        if c == 0 {
            self.nul = true;
            self.pos = self.b.len();
            return None;
        }
        self.pos += 1;
        if c == b'\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn eat_ws(&mut self) -> Option<u8> {
        loop {
            match self.getc() {
                Some(c) if is_space(c) && c != b'\n' => continue,
                other => return other,
            }
        }
    }

    fn eat_comment(&mut self) {
        while let Some(c) = self.getc() {
            if c == b'\n' {
                return;
            }
        }
    }

    /// The next item and the line it starts on.
    fn next(&mut self) -> Option<(usize, Ev)> {
        loop {
            let c = self.eat_ws()?;
            let line = self.line;
            match c {
                b'\n' | b'\\' => continue,
                b';' | b'#' => self.eat_comment(),
                b'[' => return Some((line, self.section())),
                c => return Some((line, self.parameter(c))),
            }
        }
    }

    fn section(&mut self) -> Ev {
        let mut buf = Vec::new();
        let (mut i, mut end) = (0usize, 0usize);
        let mut c = self.eat_ws();
        loop {
            match c {
                None => {
                    return Ev::Fatal(format!(
                        "end of file in the module name '[{}' (rsync refuses this file)",
                        text(&buf, end)
                    ));
                }
                Some(b']') => {
                    if end == 0 {
                        return Ev::Fatal("empty module name (rsync refuses this file)".into());
                    }
                    self.eat_comment();
                    return Ev::Section(text(&buf, end));
                }
                Some(b'\n') => match continuation(&buf, i) {
                    None => {
                        return Ev::Fatal(format!(
                            "no ']' after '[{}' (rsync refuses this file)",
                            text(&buf, end)
                        ));
                    }
                    Some(p) => {
                        i = p;
                        end = if i > 0 && buf.get(i - 1) == Some(&b' ') {
                            i - 1
                        } else {
                            i
                        };
                        c = self.getc();
                    }
                },
                Some(ch) if is_space(ch) => {
                    put(&mut buf, end, b' ');
                    i = end + 1;
                    c = self.eat_ws();
                }
                Some(ch) => {
                    put(&mut buf, i, ch);
                    i += 1;
                    end = i;
                    c = self.getc();
                }
            }
        }
    }

    fn parameter(&mut self, first: u8) -> Ev {
        let mut buf = Vec::new();
        let (mut i, mut end) = (0usize, 0usize);
        let mut c = Some(first);
        let name;
        let directive = first == b'&';
        loop {
            match c {
                Some(b'=') => {
                    if end == 0 {
                        return Ev::Fatal(
                            "a parameter without a name (rsync refuses this file)".into(),
                        );
                    }
                    name = text(&buf, end);
                    c = self.eat_ws();
                    break;
                }
                Some(b'\n') => match continuation(&buf, i) {
                    None => {
                        return Ev::Bad(format!(
                            "'{}' is not 'name = value': rsync ignores the line",
                            text(&buf, end)
                        ));
                    }
                    Some(p) => {
                        i = p;
                        end = if i > 0 && buf.get(i - 1) == Some(&b' ') {
                            i - 1
                        } else {
                            i
                        };
                        c = self.getc();
                    }
                },
                None => {
                    return Ev::Bad(format!(
                        "'{}': end of file before '=': rsync ignores it",
                        text(&buf, end)
                    ));
                }
                Some(b' ' | b'\t') if directive => {
                    name = text(&buf, end);
                    c = self.eat_ws();
                    if c == Some(b'=') {
                        c = self.eat_ws();
                    }
                    break;
                }
                Some(ch) if is_space(ch) => {
                    put(&mut buf, end, b' ');
                    i = end + 1;
                    c = self.eat_ws();
                }
                Some(ch) => {
                    put(&mut buf, i, ch);
                    i += 1;
                    end = i;
                    c = self.getc();
                }
            }
        }
        let mut val = Vec::new();
        let (mut i, mut end) = (0usize, 0usize);
        while let Some(ch) = c {
            match ch {
                b'\r' => c = self.getc(),
                b'\n' => match continuation(&val, i) {
                    None => break,
                    Some(p) => {
                        i = p;
                        end = p;
                        c = self.getc();
                    }
                },
                ch => {
                    put(&mut val, i, ch);
                    i += 1;
                    if !is_space(ch) {
                        end = i;
                    }
                    c = self.getc();
                }
            }
        }
        let value = text(&val, end);
        if directive {
            Ev::Directive(name, value)
        } else {
            Ev::Param(name, value)
        }
    }
}

/// Most nested `&include`/`&merge` files.
const MAX_DEPTH: usize = 16;

struct State<'f> {
    files: &'f dyn Files,
    /// Module parameters set as defaults.
    defaults: Params,
    globals: Params,
    stack: Vec<(Params, Params)>,
    in_global: bool,
    current: Option<usize>,
    modules: Vec<RawModule>,
    issues: Vec<Lost>,
    dparams: Vec<(String, String)>,
    dparam_loc: Loc,
    open: Vec<String>,
}

/// Read an rsyncd.conf as rsync does. `dparams` are `--dparam NAME=VALUE`
/// settings of a daemon command line (applied as defaults at the first
/// module, as rsync applies them). Err: rsync would refuse the file.
pub fn parse(
    name: &str,
    text: &str,
    files: &dyn Files,
    dparams: &[(String, String)],
    dparam_loc: &Loc,
) -> Result<Parsed, String> {
    let mut st = State {
        files,
        defaults: Params::new(),
        globals: Params::new(),
        stack: Vec::new(),
        in_global: true,
        current: None,
        modules: Vec::new(),
        issues: Vec::new(),
        dparams: dparams.to_vec(),
        dparam_loc: dparam_loc.clone(),
        open: vec![name.to_string()],
    };
    st.file(name, text)?;
    Ok(Parsed {
        modules: st.modules,
        globals: st.globals,
        issues: st.issues,
    })
}

impl State<'_> {
    fn issue(&mut self, loc: &Loc, text: impl Into<String>) {
        self.issues.push(Lost {
            loc: loc.clone(),
            text: text.into(),
        });
    }

    fn file(&mut self, name: &str, text: &str) -> Result<(), String> {
        let mut lx = Lexer::new(text);
        while let Some((line, ev)) = lx.next() {
            let loc = Loc::new(name, line);
            match ev {
                Ev::Section(s) => self.section(s, &loc)?,
                Ev::Param(n, v) => self.param(n, v, &loc),
                Ev::Directive(n, v) => self.directive(&n, &v, &loc)?,
                Ev::Bad(why) => self.issue(&loc, why),
                Ev::Fatal(why) => return Err(format!("{loc}: {why}")),
            }
        }
        if lx.nul {
            let loc = Loc::new(name, lx.line);
            self.issue(
                &loc,
                "a NUL byte: rsync reads no further, and neither does the import",
            );
        }
        Ok(())
    }

    fn section(&mut self, name: String, loc: &Loc) -> Result<(), String> {
        let global = squash(&name) == "global";
        if self.in_global && !global && self.modules.is_empty() {
            for (n, v) in std::mem::take(&mut self.dparams) {
                let dl = self.dparam_loc.clone();
                self.param(n, v, &dl);
            }
        }
        self.in_global = global;
        if global {
            return Ok(());
        }
        if name.contains('/') {
            return Err(format!(
                "{loc}: module name '{name}' contains '/' (rsync refuses this file)"
            ));
        }
        let key = squash(&name);
        self.current = match self.modules.iter().position(|m| squash(&m.name) == key) {
            Some(i) => Some(i),
            None => {
                self.modules.push(RawModule {
                    name,
                    loc: loc.clone(),
                    params: self.defaults.clone(),
                });
                Some(self.modules.len() - 1)
            }
        };
        Ok(())
    }

    fn param(&mut self, written: String, value: String, loc: &Loc) {
        let Some(def) = lookup(&written) else {
            let hint = lookup(&written.replace(['_', '-'], " "))
                .map(|d| format!(" (did you mean '{}'?)", d.name))
                .unwrap_or_default();
            self.issue(
                loc,
                format!("unknown parameter '{written}': rsync ignores it{hint}"),
            );
            return;
        };
        let mut value = value;
        // Non-string values are read (and %VAR% expanded) right away; a bad
        // one leaves the previous value, as in rsync.
        match def.ty {
            Ty::Bool | Ty::Bool3 | Ty::Int => match expand_percent(&value) {
                Err(var) => {
                    self.issue(
                        loc,
                        format!(
                            "{written} = {value}: {var} is the daemon's environment, which the import cannot know; not carried over"
                        ),
                    );
                    return;
                }
                Ok(v) => value = v,
            },
            _ => {}
        }
        match def.ty {
            Ty::Bool | Ty::Bool3 if parse_bool(&value, def.ty == Ty::Bool3).is_none() => {
                self.issue(
                    loc,
                    format!("{written} = {value}: not a boolean: rsync ignores it"),
                );
                return;
            }
            Ty::Int => {
                let n = atoi(&value);
                if n.to_string() != value.trim() {
                    self.issue(loc, format!("{written} = {value}: rsync reads it as {n}"));
                }
                value = n.to_string();
            }
            _ => {}
        }
        let p = Param {
            def,
            written,
            value,
            loc: loc.clone(),
        };
        if self.in_global {
            if def.global {
                self.globals.insert(def.name, p);
            } else {
                self.defaults.insert(def.name, p);
            }
        } else if def.global {
            self.issue(
                loc,
                format!(
                    "{}: a global parameter in a module section: rsync ignores it",
                    p.shown()
                ),
            );
        } else if let Some(m) = self.current.and_then(|i| self.modules.get_mut(i)) {
            m.params.insert(def.name, p);
        }
    }

    fn push(&mut self) {
        self.stack
            .push((self.defaults.clone(), self.globals.clone()));
        self.in_global = true;
    }

    fn reset(&mut self, pop: bool) {
        let top = if pop {
            self.stack.pop()
        } else {
            self.stack.last().cloned()
        };
        if let Some((d, g)) = top {
            self.defaults = d;
            self.globals = g;
        }
        self.in_global = true;
    }

    fn directive(&mut self, name: &str, value: &str, loc: &Loc) -> Result<(), String> {
        let include = match squash(name).as_str() {
            "&include" => true,
            "&merge" => false,
            _ => {
                return Err(format!(
                    "{loc}: unknown directive '{name}' (rsync refuses this file)"
                ));
            }
        };
        let lost = |st: &mut Self, why: String| {
            st.issue(
                loc,
                format!(
                    "{name} {value}: {why}; the modules and settings it holds are not carried over"
                ),
            );
        };
        if !value.starts_with('/') {
            lost(
                self,
                "a relative path, which rsync reads from its working directory".into(),
            );
            return Ok(());
        }
        if self.open.len() > MAX_DEPTH || self.open.iter().any(|o| o == value) {
            lost(self, "included again from within itself".into());
            return Ok(());
        }
        let path = Path::new(value);
        let mut names = match self.files.is_dir(path) {
            None => {
                lost(
                    self,
                    "cannot be read here (rsync itself refuses a config whose include is missing)"
                        .into(),
                );
                return Ok(());
            }
            Some(false) => vec![value.to_string()],
            Some(true) => match self.files.list(path) {
                Ok(list) => {
                    let suffix = if include { ".conf" } else { ".inc" };
                    list.into_iter()
                        .filter(|n| n.ends_with(suffix))
                        .map(|n| format!("{}/{n}", value.trim_end_matches('/')))
                        .collect()
                }
                Err(e) => {
                    lost(self, e);
                    return Ok(());
                }
            },
        };
        names.sort();
        let count = names.len();
        for (j, file) in names.into_iter().enumerate() {
            let text = match self.files.read(Path::new(&file)) {
                Ok(t) => t,
                Err(e) => {
                    self.issue(
                        loc,
                        format!("{name} {file}: {e}; the modules and settings it holds are not carried over"),
                    );
                    continue;
                }
            };
            if include {
                if j == 0 {
                    self.push();
                } else {
                    self.reset(false);
                }
            }
            self.open.push(file.clone());
            let r = self.file(&file, &text);
            self.open.pop();
            r?;
        }
        if include && count > 0 {
            self.reset(true);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Mapping
// ---------------------------------------------------------------------------

/// One rule of `auth users`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRule {
    /// The pattern as written (`@group` for groups).
    pub pattern: String,
    pub access: Access,
}

/// What an `auth users` rule grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The module's own read only setting.
    AsModule,
    ReadOnly,
    ReadWrite,
    Deny,
}

/// `auth users` as rsync 3.5 splits it (`conf_strtok`: a leading comma
/// means commas only), with each rule's `:deny`, `:ro`, `:rw`.
pub fn auth_rules(value: &str) -> Vec<AuthRule> {
    let commas_only = value.trim_start().starts_with(',');
    value
        .split(|c: char| c == ',' || (!commas_only && c.is_ascii_whitespace()))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|tok| {
            let (pattern, opt) = match tok.split_once(':') {
                Some((p, o)) => (p, Some(o.to_ascii_lowercase())),
                None => (tok, None),
            };
            let access = match opt.as_deref() {
                Some(o) if o.starts_with('d') => Access::Deny,
                Some(o) if o.starts_with("ro") => Access::ReadOnly,
                Some(o) if o.starts_with("rw") => Access::ReadWrite,
                _ => Access::AsModule,
            };
            AuthRule {
                pattern: pattern.to_string(),
                access,
            }
        })
        .collect()
}

/// What `refuse options` amounts to for the gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusals {
    /// Every delete option is allowed (a writable module gets delete = true).
    pub delete: bool,
    pub lost: Vec<String>,
    pub notes: Vec<String>,
}

/// rsync's own options a `*` never matches (rsyncd.conf(5)).
const NOT_WILD: &[&str] = &[
    "server",
    "rsh",
    "out-format",
    "log-format",
    "sender",
    "dry-run",
    "secluded-args",
    "protect-args",
    "from0",
    "iconv",
    "no-iconv",
    "checksum-seed",
    "write-devices",
];

/// `refuse options`: rsync applies the words in order (a later `!word`
/// un-refuses), matching long names, one-letter names, or wildcards over
/// long names; `a`/`archive` by name also refuses `-rdlptgoD`, and
/// `delete` by name every delete option. The result is judged against the
/// gate's option table: refusals the gate makes anyway are fine, the delete
/// family becomes `delete`, anything else has no knob.
pub fn refusals(value: &str) -> Refusals {
    let words: Vec<(bool, &str)> = value
        .split_ascii_whitespace()
        .map(|w| match w.strip_prefix('!') {
            Some(r) => (true, r),
            None => (false, w),
        })
        .collect();
    let names = |s: &options::Spec| -> Vec<&'static str> {
        std::iter::once(s.long)
            .chain(s.aliases.iter().copied())
            .collect()
    };
    let matches = |s: &options::Spec, pat: &str| -> bool {
        let archive =
            (pat == "a" || pat == "archive") && s.short.is_some_and(|c| b"rdlptgoD".contains(&c));
        if crate::glob::has_wildcard(pat.as_bytes()) {
            return !names(s).iter().any(|n| NOT_WILD.contains(n))
                && names(s)
                    .iter()
                    .any(|n| crate::glob::matches(pat.as_bytes(), n.as_bytes()));
        }
        if pat.chars().count() == 1 {
            return s.short.is_some_and(|c| pat.as_bytes() == [c]) || s.long == pat || archive;
        }
        if names(s).contains(&pat) {
            return true;
        }
        archive || pat == "delete" && s.rule == Rule::Delete
    };
    let mut lost = Vec::new();
    let mut notes = Vec::new();
    for (neg, w) in &words {
        if !options::OPTIONS.iter().any(|s| matches(s, w)) {
            notes.push(format!(
                "'{}{w}' names no option the gate knows (the gate refuses options it does not know)",
                if *neg { "!" } else { "" }
            ));
        }
    }
    let mut refused_delete = Vec::new();
    let mut allowed_delete = Vec::new();
    let mut no_knob = Vec::new();
    let mut unrefused = Vec::new();
    // Each option: refused, and un-refused by a `!word`.
    let state: Vec<(&options::Spec, bool, bool)> = options::OPTIONS
        .iter()
        .map(|s| {
            // rsync refuses these unless un-refused by name.
            let mut refused = matches!(s.long, "copy-devices" | "write-devices");
            let mut by_negation = false;
            for (neg, w) in &words {
                if matches(s, w) {
                    refused = !neg;
                    by_negation = *neg;
                }
            }
            (s, refused, by_negation)
        })
        .collect();
    let refused_by_name = |name: &str| state.iter().any(|(s, r, _)| s.long == name && *r);
    // A plain --delete picks --delete-before or --delete-during, and is
    // refused when both are (options.c).
    let plain_delete_refused = refused_by_name("delete-before") && refused_by_name("delete-during");
    for &(s, refused, by_negation) in &state {
        let refused = refused || (s.long == "delete" && plain_delete_refused);
        // The delete options proper and --remove-source-files decide; the
        // gate's delete governs --force and --remove-sent-files with them.
        let core = s.long.starts_with("del") || s.long == "remove-source-files";
        match s.rule {
            Rule::Delete if !core => {}
            Rule::Delete if refused => refused_delete.push(s.display()),
            Rule::Delete => allowed_delete.push(s.display()),
            Rule::Allow | Rule::Replaces | Rule::Secluded if refused => no_knob.push(s.display()),
            // Options clients never send a server need no word.
            Rule::Refuse(why) if why.starts_with("it is a client-side option") => {}
            Rule::Refuse(_) | Rule::FollowLinks | Rule::Devices if by_negation && !refused => {
                unrefused.push(s.display());
            }
            _ => {}
        }
    }
    let delete = refused_delete.is_empty();
    if !refused_delete.is_empty() && !allowed_delete.is_empty() {
        lost.push(format!(
            "it refuses {} but not {}; the gate's delete allows all of them or none: delete = false",
            refused_delete.join(", "),
            allowed_delete.join(", ")
        ));
    }
    if !no_knob.is_empty() {
        lost.push(format!(
            "no module knob refuses {}: clients may use {}",
            no_knob.join(", "),
            if no_knob.len() == 1 { "it" } else { "them" }
        ));
    }
    if !unrefused.is_empty() {
        lost.push(format!(
            "it allows {}, which the gate refuses (see the README's security model)",
            unrefused.join(", ")
        ));
    }
    Refusals {
        delete,
        lost,
        notes,
    }
}

/// A module as the policy will hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModSpec {
    /// The name in rsyncd.conf.
    pub rsync_name: String,
    pub loc: Loc,
    pub path: String,
    pub path_why: Option<String>,
    pub comment: Option<String>,
    pub read_only: bool,
    pub read_only_why: String,
    pub write_only: bool,
    pub list: bool,
    /// `transfer logging = yes`: a record per file (`transfer_log`).
    pub transfer_log: bool,
    pub max_connections: u32,
    pub uid: Option<String>,
    pub gid: Option<String>,
    /// `munge symlinks = yes` set explicitly.
    pub munge: bool,
    /// delete when writable, and why.
    pub delete: bool,
    pub delete_why: String,
    pub reach: Reach,
    pub reach_why: Option<String>,
    /// `auth users`, when set: the rules, where, and as written.
    pub auth: Option<(Vec<AuthRule>, Loc, String)>,
}

impl ModSpec {
    /// The module's table when clients get it `read_only` (None: nothing
    /// could be done with it).
    pub fn table(&self, name: &str, read_only: bool, access_why: Option<String>) -> Option<Table> {
        if read_only && self.write_only {
            return None;
        }
        let mut t = Table::new(Kind::Module, name);
        t.about
            .push(format!("[{}] at {}", self.rsync_name, self.loc));
        t.set("path", Val::Str(self.path.clone()), self.path_why.clone());
        if let Some(c) = &self.comment {
            t.set("comment", Val::Str(c.clone()), None);
        }
        t.set(
            "read_only",
            Val::Bool(read_only),
            Some(access_why.unwrap_or_else(|| self.read_only_why.clone())),
        );
        if self.write_only {
            t.set(
                "write_only",
                Val::Bool(true),
                Some("write only = yes".into()),
            );
        }
        if !read_only {
            t.set(
                "delete",
                Val::Bool(self.delete),
                Some(self.delete_why.clone()),
            );
        }
        if self.munge && read_only {
            t.set(
                "munge_links",
                Val::Bool(true),
                Some("munge symlinks = yes".into()),
            );
        }
        if !self.list {
            t.set("list", Val::Bool(false), Some("list = no".into()));
        }
        if self.transfer_log {
            t.set(
                "transfer_log",
                Val::Bool(true),
                Some("transfer logging = yes: each file is an audit record".into()),
            );
        }
        if self.max_connections > 0 {
            t.set(
                "max_connections",
                Val::Int(u64::from(self.max_connections)),
                None,
            );
        }
        let ids = "rsyncd ran the module as this user/group; the gate does too for host:: requests under a root account (host:path requests run as the SSH account)";
        if let Some(u) = &self.uid {
            t.set("uid", Val::Str(u.clone()), Some(ids.into()));
        }
        if let Some(g) = &self.gid {
            t.set(
                "gid",
                Val::Str(g.clone()),
                self.uid.is_none().then(|| ids.into()),
            );
        }
        Some(t)
    }
}

/// A module path as the policy takes it: `%%` read, `/./` (rsync's chroot
/// divider) and `.` dropped, `//` joined. Err: why it cannot be.
fn module_path(value: &str) -> Result<(String, Option<String>), String> {
    let v = expand_percent(value).map_err(|var| {
        format!("{var} is filled in by rsync when a client connects; the gate's paths are fixed")
    })?;
    if !v.starts_with('/') {
        return Err("not an absolute path".into());
    }
    if let Some(c) = v.chars().find(|c| c.is_control() || *c == '%') {
        return Err(format!(
            "the character {c:?} is not allowed in a policy path"
        ));
    }
    let mut parts = Vec::new();
    for comp in v.split('/') {
        match comp {
            "" | "." => {}
            ".." => return Err("'..' in a path; write the path it leads to".into()),
            c => parts.push(c),
        }
    }
    let path = format!("/{}", parts.join("/"));
    let why = if v.contains("/./") {
        Some(format!(
            "path = {value}: the /./ chroot divider is dropped; the gate confines every module to its path"
        ))
    } else if path != v {
        Some(format!("path = {value}"))
    } else {
        None
    };
    Ok((path, why))
}

/// The modules of a parsed rsyncd.conf, with what could not be carried
/// over recorded in `imp`.
pub fn map_modules(parsed: &Parsed, imp: &mut Import) -> Vec<ModSpec> {
    for i in &parsed.issues {
        imp.lose(&i.loc, i.text.clone());
    }
    for p in by_place(&parsed.globals) {
        fate(p, imp);
    }
    let mut out = Vec::new();
    for m in &parsed.modules {
        if let Some(spec) = map_module(m, imp) {
            out.push(spec);
        }
    }
    if out.iter().any(|m| m.uid.is_none()) {
        imp.note(
            "rsyncd run as root served modules without uid as 'nobody'; the gate runs rsync as the SSH account",
        );
    }
    if out.iter().any(|m| !m.read_only) {
        imp.note(
            "in writable modules the gate stores pushed symlinks munged (munge_links defaults to true; rsyncd munged them unless it chrooted into the module)",
        );
    }
    out
}

/// Parameters in file and line order.
fn by_place(params: &Params) -> Vec<&Param> {
    let mut v: Vec<&Param> = params.values().collect();
    v.sort_by(|a, b| a.loc.cmp(&b.loc));
    v
}

/// What becomes of a parameter that is not mapped.
fn fate(p: &Param, imp: &mut Import) {
    let truthy = || parse_bool(&p.value, true).flatten() == Some(true);
    let set = match p.def.ty {
        Ty::Int => atoi(&p.value) != 0,
        _ => !p.value.trim().is_empty(),
    };
    match p.def.how {
        How::Mapped => {}
        How::Replaced(why) if set => imp.note(format!("{}: {}: {why}", p.loc, p.shown())),
        How::LostIfTrue(why) if truthy() => imp.lose(&p.loc, format!("{}: {why}", p.shown())),
        How::LostIfSet(why) if set => imp.lose(&p.loc, format!("{}: {why}", p.shown())),
        How::Replaced(_) | How::LostIfTrue(_) | How::LostIfSet(_) => {}
    }
}

fn map_module(m: &RawModule, imp: &mut Import) -> Option<ModSpec> {
    let get = |name: &str| m.params.get(name);
    let boolean = |name: &str, default: bool| -> bool {
        get(name)
            .and_then(|p| parse_bool(&p.value, false).flatten())
            .unwrap_or(default)
    };
    for p in by_place(&m.params) {
        fate(p, imp);
    }
    let Some(path_param) = get("path") else {
        imp.lose(
            &m.loc,
            format!(
                "[{}]: no path (rsync refuses to serve the module); not carried over",
                m.name
            ),
        );
        return None;
    };
    let (path, path_why) = match module_path(&path_param.value) {
        Ok(p) => p,
        Err(why) => {
            imp.lose(
                &path_param.loc,
                format!(
                    "{}: {why}; module [{}] not carried over",
                    path_param.shown(),
                    m.name
                ),
            );
            return None;
        }
    };
    if let Some(mc) = get("max connections")
        && atoi(&mc.value) < 0
    {
        imp.note(format!(
            "{}: [{}] is disabled ({}); not imported",
            mc.loc,
            m.name,
            mc.shown()
        ));
        return None;
    }
    let max_connections = match get("max connections").map(|p| (atoi(&p.value), p)) {
        Some((n, p)) if n > 100_000 => {
            imp.lose(
                &p.loc,
                format!("{}: the gate allows at most 100000", p.shown()),
            );
            100_000
        }
        Some((n, _)) => u32::try_from(n).unwrap_or(0),
        None => 0,
    };
    let comment = get("comment").and_then(|p| {
        let why = match expand_percent(&p.value) {
            Err(var) => Some(format!(
                "{var} is filled in by rsync when a client connects"
            )),
            Ok(c) if c.contains(['%', '\\']) => {
                Some("'%' and '\\' cannot be shown in host:: listings".to_string())
            }
            Ok(c) if c.len() > 256 => Some("longer than 256 bytes".into()),
            Ok(c) if c.chars().any(char::is_control) => Some("control characters".into()),
            Ok(c) if c.is_empty() => return None,
            Ok(c) => return Some(c),
        };
        if let Some(why) = why {
            imp.lose(
                &p.loc,
                format!("{}: {why}; the comment is left out", p.shown()),
            );
        }
        None
    });
    let read_only = boolean("read only", true);
    let read_only_why = match get("read only") {
        Some(p) => p.shown(),
        None => "rsyncd's default: read only = yes".into(),
    };
    let write_only = boolean("write only", false);
    let list = boolean("list", true);
    let transfer_log = boolean("transfer logging", false);
    let id = |name: &str, imp: &mut Import| -> Option<String> {
        let p = get(name)?;
        let v = match expand_percent(&p.value) {
            Ok(v) => v,
            Err(var) => {
                imp.lose(
                    &p.loc,
                    format!(
                        "{}: {var} is filled in by rsync when a client connects; not carried over",
                        p.shown()
                    ),
                );
                return None;
            }
        };
        let commas = v.trim_start().starts_with(',');
        let toks: Vec<&str> = v
            .split(|c: char| c == ',' || (!commas && c.is_ascii_whitespace()))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect();
        let first = *toks.first()?;
        if first == "*" {
            imp.lose(
                &p.loc,
                format!(
                    "{}: '*' (the user's own groups) has no policy equivalent; not carried over",
                    p.shown()
                ),
            );
            return None;
        }
        if toks.len() > 1 {
            imp.lose(
                &p.loc,
                format!(
                    "{}: the gate sets one group; the supplementary groups are left out",
                    p.shown()
                ),
            );
        }
        if !crate::policy::valid_name(first) {
            imp.lose(
                &p.loc,
                format!(
                    "{}: '{first}' is not a user or group name the policy takes; not carried over",
                    p.shown()
                ),
            );
            return None;
        }
        Some(first.to_string())
    };
    let uid = id("uid", imp);
    let gid = id("gid", imp);
    let munge = match get("munge symlinks") {
        Some(p) => match parse_bool(&p.value, true).flatten() {
            Some(false) if !read_only => {
                imp.lose(
                    &p.loc,
                    format!(
                        "{}: not carried over: the gate stores pushed symlinks munged (rsyncd still sanitized them); set munge_links = false only where symlinks may point anywhere on the server",
                        p.shown()
                    ),
                );
                false
            }
            v => v == Some(true),
        },
        None => false,
    };
    let (delete, delete_why) = match get("refuse options") {
        Some(p) => {
            let r = refusals(&p.value);
            for l in &r.lost {
                imp.lose(&p.loc, format!("{}: {l}", p.shown()));
            }
            for n in &r.notes {
                imp.note(format!("{}: {}: {n}", p.loc, p.shown()));
            }
            let why = if r.delete {
                format!("{}: the delete options stay allowed", p.shown())
            } else {
                p.shown()
            };
            (r.delete, why)
        }
        None => (
            true,
            "rsyncd allowed --delete in writable modules (refuse options = delete turns it off)"
                .into(),
        ),
    };
    let allow = get("hosts allow");
    let deny = get("hosts deny");
    let rule = nets::rsyncd_rule(
        allow.map(|p| p.value.as_str()),
        deny.map(|p| p.value.as_str()),
    );
    for l in &rule.lost {
        let at = if l.starts_with("hosts deny") {
            deny
        } else {
            allow
        };
        let loc = at.map_or(&m.loc, |p| &p.loc);
        imp.lose(loc, l.clone());
    }
    let reach_why = match (allow, deny) {
        (None, None) => None,
        _ => Some(
            [allow, deny]
                .iter()
                .flatten()
                .map(|p| p.shown())
                .collect::<Vec<_>>()
                .join("; "),
        ),
    };
    if rule.reach.is_nobody() {
        imp.lose(
            &m.loc,
            format!(
                "[{}]: no address of its hosts allow/hosts deny can be carried over, so no client is granted it; grant it to a client whose `from` says who may connect",
                m.name
            ),
        );
    }
    let auth = get("auth users")
        .filter(|p| !p.value.trim().is_empty())
        .map(|p| (auth_rules(&p.value), p.loc.clone(), p.shown()));
    Some(ModSpec {
        rsync_name: m.name.clone(),
        loc: m.loc.clone(),
        path,
        path_why,
        comment,
        read_only,
        read_only_why,
        write_only,
        list,
        transfer_log,
        max_connections,
        uid,
        gid,
        munge,
        delete,
        delete_why,
        reach: rule.reach,
        reach_why,
        auth,
    })
}

/// The policy names given to a config's modules (None: not emitted), and
/// the read-only/read-write variants made for `auth users` rules.
#[derive(Debug, Clone, Default)]
pub struct Emitted {
    pub names: Vec<Option<String>>,
    twins: BTreeMap<(usize, bool), Option<String>>,
}

/// Put the modules in the policy.
pub fn emit_modules(specs: &[ModSpec], b: &mut Builder) -> Emitted {
    let mut e = Emitted::default();
    for s in specs {
        let want = sanitize(&s.rsync_name, "module");
        let name = b.modules.claim(&want);
        if name != s.rsync_name {
            b.imp.lose(
                &s.loc,
                format!(
                    "[{}]: the policy calls the module '{name}' (module names are letters, digits, '_', '-', '.', and unique); clients must use the new name",
                    s.rsync_name
                ),
            );
        }
        match s.table(&name, s.read_only, None) {
            Some(t) => {
                b.imp.tables.push(t);
                e.names.push(Some(name));
            }
            None => {
                b.imp.note(format!(
                    "{}: [{}] is read only and write only: no client could download or upload; not imported",
                    s.loc, s.rsync_name
                ));
                e.names.push(None);
            }
        }
    }
    e
}

impl Emitted {
    /// The policy module that gives module `i` with `read_only` (its own,
    /// or a variant made for an `auth users` `:ro`/`:rw` rule).
    fn module(
        &mut self,
        specs: &[ModSpec],
        i: usize,
        read_only: bool,
        b: &mut Builder,
    ) -> Option<String> {
        let spec = specs.get(i)?;
        if read_only == spec.read_only {
            return self.names.get(i).cloned().flatten();
        }
        if let Some(n) = self.twins.get(&(i, read_only)) {
            return n.clone();
        }
        let base = sanitize(&spec.rsync_name, "module");
        let name = b
            .modules
            .claim(&format!("{base}-{}", if read_only { "ro" } else { "rw" }));
        let why = format!(
            "{}: `auth users` grants some users {} access",
            spec.auth.as_ref().map_or_else(String::new, |a| a.2.clone()),
            if read_only { "read-only" } else { "read-write" }
        );
        let made = spec.table(&name, read_only, Some(why)).map(|mut t| {
            t.about.push(format!(
                "a {} variant of [{}] for the users `auth users` grants it",
                if read_only { "read-only" } else { "writable" },
                spec.rsync_name
            ));
            b.imp.tables.push(t);
            name
        });
        self.twins.insert((i, read_only), made.clone());
        made
    }
}

/// The clients of an rsyncd.conf: `anonymous` for the modules without
/// `auth users`, and one per user name those rules list, granted the
/// modules whose rules let that user in; a client whose modules let in
/// different addresses is split (a client has one `from`).
pub fn clients(specs: &[ModSpec], e: &mut Emitted, b: &mut Builder) {
    let grant = |s: &ModSpec, module: String| Grant {
        module,
        reach: s.reach.clone(),
        why: s.reach_why.clone(),
    };
    let mut users: Vec<(String, Loc)> = Vec::new();
    for s in specs {
        let Some((rules, loc, _)) = &s.auth else {
            continue;
        };
        for r in rules {
            if !r.pattern.starts_with('@')
                && !crate::glob::has_wildcard(r.pattern.as_bytes())
                && !users.iter().any(|(u, _)| *u == r.pattern)
            {
                users.push((r.pattern.clone(), loc.clone()));
            }
        }
    }
    // Per module and group rule: the users whose own rule it hides.
    let mut hidden: BTreeMap<(usize, usize), Vec<String>> = BTreeMap::new();
    let mut principals: Vec<(String, String, Loc, Vec<Grant>)> = Vec::new();
    let public: Vec<Grant> = specs
        .iter()
        .enumerate()
        .filter(|(_, s)| s.auth.is_none())
        .filter_map(|(i, s)| Some(grant(s, e.module(specs, i, s.read_only, b)?)))
        .collect();
    if !public.is_empty() {
        let loc = Loc::new(&b.imp.source, 0);
        principals.push((
            "anonymous".into(),
            "anonymous rsync: the modules without auth users".into(),
            loc,
            public,
        ));
    }
    for (user, loc) in &users {
        let mut grants = Vec::new();
        for (i, s) in specs.iter().enumerate() {
            let Some((rules, _, _)) = &s.auth else {
                continue;
            };
            let mut decided = None;
            for (j, r) in rules.iter().enumerate() {
                if r.pattern.starts_with('@') {
                    // Membership decides, and the import cannot know it:
                    // not granted (the narrower reading).
                    if rules
                        .get(j..)
                        .unwrap_or(&[])
                        .iter()
                        .any(|later| later.pattern == *user)
                    {
                        hidden.entry((i, j)).or_default().push(user.clone());
                    }
                    decided = Some(Access::Deny);
                    break;
                }
                if crate::glob::matches(r.pattern.as_bytes(), user.as_bytes()) {
                    decided = Some(r.access);
                    break;
                }
            }
            let read_only = match decided {
                None | Some(Access::Deny) => continue,
                Some(Access::AsModule) => s.read_only,
                Some(Access::ReadOnly) => true,
                Some(Access::ReadWrite) => false,
            };
            if let Some(name) = e.module(specs, i, read_only, b) {
                grants.push(grant(s, name));
            }
        }
        principals.push((
            user.clone(),
            format!("rsyncd auth user '{user}' (its password is not carried over)"),
            loc.clone(),
            grants,
        ));
    }
    for (i, s) in specs.iter().enumerate() {
        let Some((rules, loc, shown)) = &s.auth else {
            continue;
        };
        for (j, r) in rules.iter().enumerate() {
            if r.pattern.starts_with('@') {
                let also = hidden
                    .get(&(i, j))
                    .map(|u| format!(", nor to {} (their own rule comes after it)", u.join(", ")))
                    .unwrap_or_default();
                b.imp.lose(
                    loc,
                    format!(
                        "{shown}: '{}' is a group rule, and the gate's clients are keys, not groups: [{}] is not granted to its members{also}; give each member a client",
                        r.pattern, s.rsync_name
                    ),
                );
            } else if crate::glob::has_wildcard(r.pattern.as_bytes()) {
                b.imp.lose(
                    loc,
                    format!(
                        "{shown}: '{}' matches user names: not carried over; give each user it should match a client",
                        r.pattern
                    ),
                );
            }
        }
    }
    if principals.len() > 1 && principals.first().is_some_and(|p| p.0 == "anonymous") {
        b.imp.note(
            "the modules without auth users went to client 'anonymous'; each auth user's client has the modules that named it (add the public ones where that key should reach them too)",
        );
    }
    for (name, note, loc, grants) in principals {
        b.add_client(&name, &note, None, grants, true, &loc);
    }
}
