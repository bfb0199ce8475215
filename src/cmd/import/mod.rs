//! `rsync-gate import FILE`: a policy from an rsyncd.conf, or from an
//! authorized_keys file whose keys run rrsync, rsync's daemon or ftpsync.
//!
//! The policy is printed on stdout with a comment for each mapping and, at
//! the top, the list of what could not be carried over (also on stderr,
//! one `rsync-gate: import: FILE:LINE: ...` line each). The mapping never
//! grants more than the input did: where something cannot be said in the
//! policy, the narrower reading is taken and reported. Every policy printed
//! loads (it is loaded before it is printed).
//!
//! Exit status: 0 everything was carried over; 1 the policy is printed but
//! something was not carried over; 2 nothing is printed (the input cannot
//! be read, its format cannot be told, or rsync would refuse it).

pub(crate) mod keys;
mod model;
mod nets;
mod rsyncd;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

pub use model::{Format, Import, Kind, Loc, Lost, Table, Val};
use model::{Names, clean, sanitize};
use nets::Reach;

/// The files an import may read besides its input (`&include`d configs,
/// a daemon line's `--config`).
pub trait Files {
    fn read(&self, path: &Path) -> Result<String, String>;
    /// Some(true) for a directory, Some(false) for anything else that
    /// exists, None when it does not (or cannot be looked at).
    fn is_dir(&self, path: &Path) -> Option<bool>;
    /// The names in a directory.
    fn list(&self, dir: &Path) -> Result<Vec<String>, String>;
}

/// The real filesystem.
#[derive(Debug, Clone, Copy, Default)]
pub struct Disk;

impl Files for Disk {
    fn read(&self, path: &Path) -> Result<String, String> {
        crate::policy::read_bounded(path)
    }

    fn is_dir(&self, path: &Path) -> Option<bool> {
        std::fs::metadata(path).ok().map(|m| m.is_dir())
    }

    fn list(&self, dir: &Path) -> Result<Vec<String>, String> {
        let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read: {e}"))?;
        let mut out = Vec::new();
        for e in entries {
            let e = e.map_err(|e| format!("cannot read: {e}"))?;
            if let Ok(n) = e.file_name().into_string() {
                out.push(n);
            }
        }
        Ok(out)
    }
}

/// The input.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// As named on the command line (`-`: stdin).
    pub name: &'a str,
    pub text: &'a str,
    /// The SSH account's home: rrsync directories, `--config` files and
    /// ftpsync paths relative to it (or `~`) are read from there.
    pub home: Option<&'a Path>,
}

/// A module granted to a client, and who may connect to use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub module: String,
    pub reach: Reach,
    /// What the addresses came from.
    pub why: Option<String>,
}

/// The import being built, and the names taken in each namespace.
#[derive(Debug)]
pub struct Builder {
    pub imp: Import,
    pub modules: Names,
    pub clients: Names,
    pub triggers: Names,
}

impl Builder {
    pub fn new(source: &str, format: Format) -> Builder {
        Builder {
            imp: Import::new(source, format),
            modules: Names::default(),
            clients: Names::default(),
            triggers: Names::default(),
        }
    }

    /// Add the client(s) for `raw` (a user, a key's comment) granted
    /// `grants`. A client has one `from`: grants that let in different
    /// addresses make several clients when `split` (rsyncd users), and
    /// otherwise (a key is one client) only those like the first grant's
    /// are kept.
    pub fn add_client(
        &mut self,
        raw: &str,
        note: &str,
        key: Option<&str>,
        grants: Vec<Grant>,
        split: bool,
        loc: &Loc,
    ) {
        let base = sanitize(raw, "client");
        let mut groups: Vec<(Reach, Vec<String>, Vec<String>)> = Vec::new();
        for g in grants {
            if g.reach.is_nobody() {
                self.imp.lose(
                    loc,
                    format!(
                        "'{raw}': module '{}': no address is let in both by the key and by the module; not granted",
                        g.module
                    ),
                );
                continue;
            }
            match groups.iter_mut().find(|(r, _, _)| *r == g.reach) {
                Some((_, mods, whys)) => {
                    if !mods.contains(&g.module) {
                        mods.push(g.module);
                    }
                    whys.extend(g.why.filter(|w| !whys.contains(w)));
                }
                None => groups.push((g.reach, vec![g.module], g.why.into_iter().collect())),
            }
        }
        if groups.is_empty() {
            self.imp.note(format!(
                "{loc}: '{raw}' is granted no module, so no client is made"
            ));
            return;
        }
        if !split && groups.len() > 1 {
            let first = groups.first().map(|g| g.1.join(", ")).unwrap_or_default();
            for (_, mods, _) in groups.drain(1..) {
                self.imp.lose(
                    loc,
                    format!(
                        "'{raw}': {} let in other addresses than {first}, and a key's client has one `from`; not granted",
                        mods.join(", ")
                    ),
                );
            }
        }
        let many = groups.len() > 1;
        let mut made = Vec::new();
        for (reach, mods, whys) in groups {
            let want = if many {
                sanitize(
                    &format!("{base}-{}", mods.first().map_or("", String::as_str)),
                    &base,
                )
            } else {
                base.clone()
            };
            let name = self.clients.claim(&want);
            let mut t = Table::new(Kind::Client, &name);
            t.set("modules", Val::List(mods), None);
            let from = reach.policy_from();
            if !from.is_empty() {
                t.set(
                    "from",
                    Val::List(from),
                    Some(whys.join("; ")).filter(|w| !w.is_empty()),
                );
            }
            if let Some(k) = key {
                t.set("key", Val::Str(k.to_string()), None);
            }
            t.set("note", Val::Str(note_text(note)), None);
            self.imp.tables.push(t);
            made.push(name);
        }
        if many {
            self.imp.lose(
                loc,
                format!(
                    "'{raw}': its modules let in different addresses and a client has one `from`: it became clients {}, each needing its own key",
                    made.join(", ")
                ),
            );
        }
    }

    /// Add a trigger client.
    pub fn add_trigger_client(
        &mut self,
        raw: &str,
        note: &str,
        key: &str,
        trigger: &str,
        reach: &Reach,
        why: Option<String>,
    ) {
        let name = self.clients.claim(&sanitize(raw, "client"));
        let mut t = Table::new(Kind::Client, &name);
        t.set("trigger", Val::Str(trigger.to_string()), None);
        let from = reach.policy_from();
        if !from.is_empty() {
            t.set("from", Val::List(from), why);
        }
        t.set("key", Val::Str(key.to_string()), None);
        t.set("note", Val::Str(note_text(note)), None);
        self.imp.tables.push(t);
    }

    /// The import, its warnings in file order then line order.
    pub fn finish(mut self) -> Import {
        let mut order: Vec<String> = Vec::new();
        for l in &self.imp.lost {
            if !order.contains(&l.loc.file) {
                order.push(l.loc.file.clone());
            }
        }
        self.imp.lost.sort_by_key(|l| {
            (
                order.iter().position(|f| *f == l.loc.file).unwrap_or(0),
                l.loc.line,
            )
        });
        self.imp
    }
}

/// A client's `note` (at most 256 bytes, no control characters).
fn note_text(s: &str) -> String {
    let mut out = String::new();
    for c in clean(s).chars() {
        if out.len() + c.len_utf8() > 256 {
            break;
        }
        out.push(c);
    }
    out
}

/// Tell the format from the first line that says: a `[module]` header, an
/// `&include`, or an rsyncd.conf parameter; or a key line.
pub fn detect(text: &str) -> Option<Format> {
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        if t.starts_with('[') || t.starts_with('&') {
            return Some(Format::Rsyncd);
        }
        if matches!(keys::parse_line(t), Ok(Some(_))) {
            return Some(Format::AuthorizedKeys);
        }
        if let Some((name, _)) = t.split_once('=')
            && rsyncd::lookup(name).is_some()
        {
            return Some(Format::Rsyncd);
        }
    }
    None
}

/// Import `input`. Err: rsync would refuse the file (nothing is printed).
pub fn import(format: Format, input: &Input<'_>, files: &dyn Files) -> Result<Import, String> {
    match format {
        Format::Rsyncd => {
            let mut b = Builder::new(input.name, format);
            let parsed =
                rsyncd::parse(input.name, input.text, files, &[], &Loc::new(input.name, 0))?;
            let specs = rsyncd::map_modules(&parsed, &mut b.imp);
            let mut emitted = rsyncd::emit_modules(&specs, &mut b);
            rsyncd::clients(&specs, &mut emitted, &mut b);
            Ok(b.finish())
        }
        Format::AuthorizedKeys => Ok(keys::import(input, files)),
    }
}

/// The command line's choices.
#[derive(Debug, Clone)]
pub struct Options {
    /// The input (`-`: stdin).
    pub file: PathBuf,
    pub format: Option<Format>,
    pub home: Option<PathBuf>,
}

/// Largest input read from stdin.
const MAX_INPUT: u64 = 64 * 1024 * 1024;

/// `FILE` in a `.ssh` directory: the home is the directory above it.
fn home_of(file: &Path) -> Option<PathBuf> {
    let abs = std::path::absolute(file).ok()?;
    let ssh = abs.parent()?;
    if ssh.file_name()? != ".ssh" {
        return None;
    }
    ssh.parent().map(Path::to_path_buf)
}

/// Run the command: the policy on `out`, what was not carried over on
/// `err`; the exit status.
pub fn run(o: &Options, out: &mut impl Write, err: &mut impl Write) -> Result<u8> {
    let stdin = o.file == Path::new("-");
    let name = if stdin {
        "<stdin>".to_string()
    } else {
        o.file.display().to_string()
    };
    let text = if stdin {
        let mut buf = String::new();
        std::io::stdin()
            .take(MAX_INPUT + 1)
            .read_to_string(&mut buf)
            .context("cannot read stdin")?;
        if buf.len() as u64 > MAX_INPUT {
            bail!("stdin: larger than {MAX_INPUT} bytes");
        }
        buf
    } else {
        crate::policy::read_bounded(&o.file).map_err(|e| anyhow::anyhow!("{name}: {e}"))?
    };
    let home = match &o.home {
        Some(h) if !h.is_absolute() => bail!("--home {}: must be an absolute path", h.display()),
        Some(h) => Some(h.clone()),
        None if stdin => None,
        None => home_of(&o.file),
    };
    let format = match o.format.or_else(|| detect(&text)) {
        Some(f) => f,
        None => bail!(
            "{name}: cannot tell whether this is an rsyncd.conf or an authorized_keys file; say which with --format"
        ),
    };
    let input = Input {
        name: &name,
        text: &text,
        home: home.as_deref(),
    };
    let imp = import(format, &input, &Disk).map_err(|e| anyhow::anyhow!("import: {e}"))?;
    let policy = imp.render();
    if let Err(e) = crate::policy::load_text(Path::new("imported.toml"), &policy) {
        let all: Vec<String> = e.0.iter().map(ToString::to_string).collect();
        bail!(
            "import: internal error: the imported policy would not load ({}); nothing printed",
            all.join("; ")
        );
    }
    out.write_all(policy.as_bytes())?;
    out.flush()?;
    for l in &imp.lost {
        writeln!(err, "rsync-gate: import: {}: {}", l.loc, clean(&l.text))?;
    }
    Ok(u8::from(!imp.lost.is_empty()))
}

#[cfg(test)]
mod tests;
