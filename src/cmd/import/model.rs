//! What an import produces: the policy's tables with a comment for every
//! mapping, what could not be carried over, and the rendering as TOML.

use std::collections::BTreeSet;
use std::fmt;

/// Where something came from: `FILE:LINE` (line 0: the file as a whole).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Loc {
    pub file: String,
    pub line: usize,
}

impl Loc {
    pub fn new(file: &str, line: usize) -> Loc {
        Loc {
            file: file.to_string(),
            line,
        }
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file)
        } else {
            write!(f, "{}:{}", self.file, self.line)
        }
    }
}

/// A value of the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Bool(bool),
    Int(u64),
    Str(String),
    List(Vec<String>),
}

/// One `key = value`, with the comments that explain it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: &'static str,
    pub val: Val,
    pub why: Vec<String>,
}

/// Which kind of policy table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Module,
    Trigger,
    Client,
}

impl Kind {
    fn section(self) -> &'static str {
        match self {
            Kind::Module => "modules",
            Kind::Trigger => "triggers",
            Kind::Client => "clients",
        }
    }
}

/// `[modules.NAME]`, `[triggers.NAME]` or `[clients.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub kind: Kind,
    pub name: String,
    /// Comments under the header.
    pub about: Vec<String>,
    pub entries: Vec<Entry>,
}

impl Table {
    pub fn new(kind: Kind, name: &str) -> Table {
        Table {
            kind,
            name: name.to_string(),
            about: Vec::new(),
            entries: Vec::new(),
        }
    }

    /// Set `key` (replacing an earlier value, keeping its place and
    /// comments), with an optional comment.
    pub fn set(&mut self, key: &'static str, val: Val, why: Option<String>) {
        match self.entries.iter_mut().find(|e| e.key == key) {
            Some(e) => {
                e.val = val;
                e.why.extend(why);
            }
            None => self.entries.push(Entry {
                key,
                val,
                why: why.into_iter().collect(),
            }),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Val> {
        self.entries.iter().find(|e| e.key == key).map(|e| &e.val)
    }
}

/// The input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Rsyncd,
    AuthorizedKeys,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Rsyncd => "rsyncd.conf",
            Format::AuthorizedKeys => "authorized_keys",
        })
    }
}

/// Something of the input the policy does not carry: a warning.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Lost {
    pub loc: Loc,
    pub text: String,
}

/// The imported policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// The input as named on the command line.
    pub source: String,
    pub format: Format,
    pub tables: Vec<Table>,
    /// What could not be carried over, in input order.
    pub lost: Vec<Lost>,
    /// What the gate does differently but no less safely, in input order.
    pub notes: Vec<String>,
    /// Stanzas printed commented out (they need the administrator).
    pub commented: Vec<String>,
}

impl Import {
    pub fn new(source: &str, format: Format) -> Import {
        Import {
            source: source.to_string(),
            format,
            tables: Vec::new(),
            lost: Vec::new(),
            notes: Vec::new(),
            commented: Vec::new(),
        }
    }

    /// Record something not carried over (once per place and text).
    pub fn lose(&mut self, loc: &Loc, text: impl Into<String>) {
        let l = Lost {
            loc: loc.clone(),
            text: text.into(),
        };
        if !self.lost.contains(&l) {
            self.lost.push(l);
        }
    }

    /// Record a difference that needs no action (once per text).
    pub fn note(&mut self, text: impl Into<String>) {
        let t = text.into();
        if !self.notes.contains(&t) {
            self.notes.push(t);
        }
    }

    pub fn table(&self, kind: Kind, name: &str) -> Option<&Table> {
        self.tables
            .iter()
            .find(|t| t.kind == kind && t.name == name)
    }

    pub fn table_mut(&mut self, kind: Kind, name: &str) -> Option<&mut Table> {
        self.tables
            .iter_mut()
            .find(|t| t.kind == kind && t.name == name)
    }

    /// The policy as TOML: a header (what to do next, what was not carried
    /// over, notes), then modules, triggers and clients in input order.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut c = |text: &str| comment(&mut out, text, "");
        c(&format!(
            "Imported by `rsync-gate import` from {} ({}).",
            self.source, self.format
        ));
        c(
            "Review it, give each client its SSH key (key = \"TYPE BASE64 COMMENT\") \
           and its addresses (from), install it as /etc/rsync-gate/policy.toml, \
           run `rsync-gate check --account ACCOUNT`, then write the SSH account's \
           authorized_keys with `rsync-gate authorized-keys`.",
        );
        c("Clients name the module first: host:MODULE/path and host::MODULE/path.");
        out.push_str("#\n");
        if self.lost.is_empty() {
            comment(&mut out, "Everything was carried over.", "");
        } else {
            comment(
                &mut out,
                &format!(
                    "NOT CARRIED OVER ({}; also printed on stderr):",
                    self.lost.len()
                ),
                "",
            );
            for l in &self.lost {
                comment(&mut out, &format!("- {}: {}", l.loc, l.text), "  ");
            }
        }
        if !self.notes.is_empty() {
            out.push_str("#\n");
            comment(&mut out, "Notes:", "");
            for n in &self.notes {
                comment(&mut out, &format!("- {n}"), "  ");
            }
        }
        let mut tables: Vec<&Table> = self.tables.iter().collect();
        tables.sort_by_key(|t| t.kind);
        for t in tables {
            out.push('\n');
            out.push_str(&format!("[{}.{}]\n", t.kind.section(), key_name(&t.name)));
            for a in &t.about {
                comment(&mut out, a, "");
            }
            for e in &t.entries {
                for w in &e.why {
                    comment(&mut out, w, "");
                }
                out.push_str(&format!("{} = {}\n", e.key, value(&e.val)));
            }
        }
        for s in &self.commented {
            out.push('\n');
            for line in s.lines() {
                if line.is_empty() {
                    out.push_str("#\n");
                } else {
                    out.push_str(&format!("# {}\n", clean(line)));
                }
            }
        }
        out
    }
}

/// Text for a comment or a message: control characters escaped.
pub fn clean(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A comment, wrapped at 79 columns; continuation lines get `indent`.
fn comment(out: &mut String, text: &str, indent: &str) {
    const WIDTH: usize = 79;
    let text = clean(text);
    let mut prefix = String::from("# ");
    let mut line = String::new();
    for word in text.split(' ') {
        let len = prefix.chars().count() + line.chars().count() + 1 + word.chars().count();
        if !line.is_empty() && len > WIDTH {
            out.push_str(&prefix);
            out.push_str(line.trim_end());
            out.push('\n');
            line.clear();
            prefix = format!("# {indent}");
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    let last = format!("{prefix}{line}");
    out.push_str(last.trim_end());
    out.push('\n');
}

/// A table name as a TOML key: bare when it can be.
fn key_name(name: &str) -> String {
    if !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        name.to_string()
    } else {
        toml_string(name)
    }
}

/// A TOML basic string.
pub fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn value(v: &Val) -> String {
    match v {
        Val::Bool(b) => b.to_string(),
        Val::Int(n) => n.to_string(),
        Val::Str(s) => toml_string(s),
        Val::List(l) => format!(
            "[{}]",
            l.iter()
                .map(|s| toml_string(s))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A policy name (module, client, trigger) from arbitrary text: letters,
/// digits, `_`, `-` and `.` kept, every other run of characters becomes
/// one `-`; no leading `.`/`-`; at most 64 characters. Empty: `fallback`.
pub fn sanitize(raw: &str, fallback: &str) -> String {
    let mut out = String::new();
    for c in raw.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_start_matches(['.', '-']).trim_end_matches('-');
    let out: String = out.chars().take(64).collect();
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() || !crate::policy::valid_name(&out) {
        fallback.to_string()
    } else {
        out
    }
}

/// Names taken in one of the policy's namespaces.
#[derive(Debug, Clone, Default)]
pub struct Names {
    taken: BTreeSet<String>,
}

impl Names {
    /// `want` (a valid name), or `want-2`, `want-3`... if it is taken.
    pub fn claim(&mut self, want: &str) -> String {
        if self.taken.insert(want.to_string()) {
            return want.to_string();
        }
        let base: String = want.chars().take(58).collect();
        let mut n = 2u32;
        loop {
            let name = format!("{base}-{n}");
            if self.taken.insert(name.clone()) {
                return name;
            }
            n += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let table: &[(&str, &str)] = &[
            ("www", "www"),
            ("alice@laptop", "alice-laptop"),
            ("my files", "my-files"),
            ("  .hidden", "hidden"),
            ("--x--", "x"),
            ("", "fb"),
            ("äöü", "fb"),
            ("a.b_c-d", "a.b_c-d"),
        ];
        for (raw, want) in table {
            assert_eq!(sanitize(raw, "fb"), *want, "{raw:?}");
        }
        assert_eq!(sanitize(&"x".repeat(100), "fb").len(), 64);
        let mut n = Names::default();
        assert_eq!(n.claim("www"), "www");
        assert_eq!(n.claim("www"), "www-2");
        assert_eq!(n.claim("www"), "www-3");
        assert_eq!(n.claim(&"y".repeat(64)).len(), 64);
        assert_eq!(n.claim(&"y".repeat(64)), format!("{}-2", "y".repeat(58)));
    }

    #[test]
    fn toml_text() {
        assert_eq!(toml_string("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u0001\"");
        assert_eq!(key_name("www"), "www");
        assert_eq!(key_name("a.b"), "\"a.b\"");
        let mut out = String::new();
        comment(&mut out, &format!("- {}", "word ".repeat(30)), "  ");
        for line in out.lines() {
            assert!(line.len() <= 79, "{line}");
            assert!(line.starts_with("# "), "{line}");
        }
        assert!(out.lines().nth(1).unwrap().starts_with("#   word"), "{out}");
        let mut out = String::new();
        comment(&mut out, "bell\u{7} and\nnewline", "");
        assert_eq!(out, "# bell\\u{7} and\\nnewline\n");
    }
}
