//! authorized_keys: each key line becomes a client, its forced command the
//! modules (or trigger) it is granted.
//!
//! - `command="rrsync [-ro|-wo] [-munge] [-no-del] [-no-lock]
//!   [-no-overwrite] [-absolute] DIR"`: a module for DIR with what the
//!   flags allow (one per distinct DIR and flags).
//! - `command="rsync --server --daemon [--config=FILE] ."`: the modules of
//!   FILE, read as an rsyncd.conf.
//! - `command=".../ftpsync"`: a trigger running ftpsync (push mirroring).
//! - anything else (no command, a home-made validator, a fixed rsync
//!   command): not carried over.
//!
//! `from="..."` becomes the client's `from`; the key itself its `key`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::model::{Kind, Loc, Table, Val, clean, sanitize};
use super::nets::{self, Reach};
use super::rsyncd::{self, Emitted, ModSpec};
use super::{Builder, Files, Grant, Input};

/// Key types sshd accepts (certificate types end in
/// `-cert-v01@openssh.com`).
const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ssh-dss",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "sk-ssh-ed25519@openssh.com",
    "ssh-ed448",
];

fn is_key_type(t: &str) -> bool {
    KEY_TYPES.contains(&t)
        || t.strip_suffix("-cert-v01@openssh.com")
            .is_some_and(|base| KEY_TYPES.iter().any(|k| k.starts_with(base)))
}

/// One key line, taken apart as sshd does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLine {
    /// Option names (lower case) and their values.
    pub options: Vec<(String, Option<String>)>,
    pub key_type: String,
    pub blob: String,
    pub comment: String,
}

/// sshd's options: `name` or `name="value"` (`\"` inside), comma-separated.
fn parse_options(s: &str) -> Result<Vec<(String, Option<String>)>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' {
                break;
            }
            name.push(c);
            chars.next();
        }
        if name.is_empty() {
            return Err("an empty option".into());
        }
        let value = if chars.peek() == Some(&'=') {
            chars.next();
            if chars.next() != Some('"') {
                return Err(format!("option {name}: the value must be in double quotes"));
            }
            let mut v = String::new();
            loop {
                match chars.next() {
                    None => return Err(format!("option {name}: no closing quote")),
                    Some('\\') if chars.peek() == Some(&'"') => {
                        chars.next();
                        v.push('"');
                    }
                    Some('"') => break,
                    Some(c) => v.push(c),
                }
            }
            Some(v)
        } else {
            None
        };
        out.push((name.to_ascii_lowercase(), value));
        match chars.next() {
            None => return Ok(out),
            Some(',') => {}
            Some(c) => return Err(format!("'{c}' after an option")),
        }
    }
}

/// A line of an authorized_keys file. Ok(None): blank or a comment.
pub fn parse_line(line: &str) -> Result<Option<KeyLine>, String> {
    let t = line
        .trim_start_matches([' ', '\t'])
        .trim_end_matches(['\r', '\n']);
    if t.trim().is_empty() || t.starts_with('#') {
        return Ok(None);
    }
    let first = t.split([' ', '\t']).next().unwrap_or("");
    let (options, rest) = if is_key_type(first) {
        (Vec::new(), t)
    } else {
        // Options end at the first blank outside double quotes.
        let mut quoted = false;
        let mut escaped = false;
        let mut end = t.len();
        for (i, c) in t.char_indices() {
            match c {
                '\\' if quoted && !escaped => {
                    escaped = true;
                    continue;
                }
                '"' if !escaped => quoted = !quoted,
                ' ' | '\t' if !quoted => {
                    end = i;
                    break;
                }
                _ => {}
            }
            escaped = false;
        }
        let (opts, rest) = t.split_at(end);
        (parse_options(opts)?, rest)
    };
    let mut words = rest.trim_start_matches([' ', '\t']).splitn(3, [' ', '\t']);
    let key_type = words.next().unwrap_or("");
    if !is_key_type(key_type) {
        return Err(format!("'{}' is not an SSH key type", clean(key_type)));
    }
    let blob = words.next().unwrap_or("");
    if blob.len() < 16
        || !blob
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
    {
        return Err("the key is not base64".into());
    }
    Ok(Some(KeyLine {
        options,
        key_type: key_type.to_string(),
        blob: blob.to_string(),
        comment: words.next().unwrap_or("").trim().to_string(),
    }))
}

/// rrsync's command line (support/rrsync in rsync 3.5).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rrsync {
    pub ro: bool,
    pub wo: bool,
    pub munge: bool,
    pub absolute: bool,
    pub no_del: bool,
    pub no_lock: bool,
    pub no_overwrite: bool,
    pub dir: String,
}

/// rrsync's arguments, as its argparse reads them. Err: rrsync would
/// refuse them (so the line never worked).
pub fn rrsync_args(args: &[String]) -> Result<Rrsync, String> {
    let mut r = Rrsync::default();
    let mut dirs = Vec::new();
    let mut options_done = false;
    for a in args {
        if options_done || a == "-" || !a.starts_with('-') {
            dirs.push(a.clone());
            continue;
        }
        match a.as_str() {
            "--" => options_done = true,
            "-ro" => r.ro = true,
            "-wo" => r.wo = true,
            "-munge" => r.munge = true,
            "-absolute" => r.absolute = true,
            "-no-del" => r.no_del = true,
            "-no-lock" => r.no_lock = true,
            "-no-overwrite" => r.no_overwrite = true,
            "-h" | "-help" => return Err("rrsync -help only prints its usage".into()),
            other => return Err(format!("rrsync does not know the option '{other}'")),
        }
    }
    if r.ro && r.wo {
        return Err("rrsync refuses -ro and -wo together".into());
    }
    match dirs.as_slice() {
        [d] => r.dir = d.clone(),
        [] => return Err("rrsync needs a directory".into()),
        _ => return Err("rrsync takes one directory".into()),
    }
    if r.ro {
        // "-ro: implies -no-del and -no-lock".
        r.no_del = true;
        r.no_lock = true;
    }
    Ok(r)
}

/// A path from a forced command, as the account's shell and then the
/// program see it: `~`, `$HOME` and relative paths are the account's
/// home; `.`, `//` and a trailing `/` are dropped.
pub fn account_path(word: &str, home: Option<&Path>) -> Result<String, String> {
    let home_rest = if matches!(word, "~" | "$HOME" | "${HOME}") {
        Some("")
    } else {
        ["~/", "$HOME/", "${HOME}/"]
            .iter()
            .find_map(|p| word.strip_prefix(p))
    };
    let full = if word.starts_with('/') {
        word.to_string()
    } else {
        if home_rest.is_none() && word.starts_with('~') {
            return Err(format!("'{word}' is another user's home"));
        }
        let rel = home_rest.unwrap_or(word);
        let Some(h) = home else {
            return Err(format!(
                "'{word}' is relative to the SSH account's home directory; name it with --home"
            ));
        };
        format!("{}/{rel}", h.display())
    };
    if full.contains('$') {
        return Err(format!("'{word}' needs the shell to expand it"));
    }
    if let Some(c) = full.chars().find(|c| c.is_control() || *c == '%') {
        return Err(format!(
            "the character {c:?} is not allowed in a policy path"
        ));
    }
    let mut parts = Vec::new();
    for c in full.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                return Err(format!(
                    "'{word}' has '..' (rrsync resolves it with realpath); write the directory it leads to"
                ));
            }
            c => parts.push(c),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

/// The words runmirrors sends and ftpsync takes (sync:callback needs
/// CALLBACKHOST in ftpsync.conf and is left out).
const FTPSYNC_ARGS: &[&str] = &[
    "sync:all",
    "sync:stage1",
    "sync:stage2",
    "sync:mhop",
    "sync:archive:*",
];

/// What a forced command is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Command {
    Rrsync(Vec<String>),
    Daemon(Vec<String>),
    Ftpsync(String, Vec<String>),
    Other(String),
}

fn basename(w: &str) -> &str {
    w.rsplit('/').next().unwrap_or(w)
}

fn classify(command: &str) -> Result<Command, String> {
    let words =
        shell_words::split(command).map_err(|e| format!("cannot split it into words ({e})"))?;
    for w in &words {
        let expansions = w.replace("${HOME}", "").replace("$HOME", "");
        if w.contains([';', '|', '&', '<', '>', '`', '(', ')', '\n']) || expansions.contains('$') {
            return Err("it is a shell command line, not a simple command".into());
        }
    }
    let mut w: &[String] = &words;
    if w.first().is_some_and(|x| x == "exec") {
        w = w.get(1..).unwrap_or(&[]);
    }
    let Some(first) = w.first() else {
        return Err("it is empty".into());
    };
    if first.contains('=') && !first.contains('/') {
        return Err("it sets environment variables first".into());
    }
    if matches!(basename(first), "python3" | "python" | "perl" | "env")
        && w.get(1).is_some_and(|p| basename(p) == "rrsync")
    {
        w = w.get(1..).unwrap_or(&[]);
    }
    let prog = w.first().map_or("", |p| basename(p));
    let args = w.get(1..).unwrap_or(&[]).to_vec();
    Ok(match prog {
        "rrsync" => Command::Rrsync(args),
        "rsync" if args.iter().any(|a| a == "--daemon") => Command::Daemon(args),
        "ftpsync" => Command::Ftpsync(w.first().cloned().unwrap_or_default(), args),
        other => Command::Other(other.to_string()),
    })
}

/// rsync's daemon-over-ssh command line: the config, `--dparam`s, and what
/// else it sets. Err: not one rsync would run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct DaemonCmd {
    config: Option<String>,
    dparams: Vec<(String, String)>,
    lost: Vec<String>,
    notes: Vec<String>,
}

fn daemon_args(args: &[String]) -> Result<DaemonCmd, String> {
    let mut d = DaemonCmd::default();
    let (mut server, mut daemon) = (false, false);
    let mut it = args.iter().peekable();
    let dparam = |v: &str, d: &mut DaemonCmd| -> Result<(), String> {
        match v.split_once('=') {
            Some((n, val)) if !n.is_empty() => {
                d.dparams.push((n.to_string(), val.to_string()));
                Ok(())
            }
            _ => Err(format!("--dparam '{v}' is not NAME=VALUE")),
        }
    };
    while let Some(a) = it.next() {
        let (opt, inline) = match a.split_once('=') {
            Some((o, v)) if o.starts_with("--") => (o, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let value = |it: &mut std::iter::Peekable<std::slice::Iter<'_, String>>| {
            inline.clone().or_else(|| it.next().cloned())
        };
        match opt {
            "--server" => server = true,
            "--daemon" => daemon = true,
            "." if it.peek().is_none() => {}
            "--config" => d.config = value(&mut it),
            "--dparam" | "-M" => {
                let v = value(&mut it).unwrap_or_default();
                dparam(&v, &mut d)?;
            }
            m if m.starts_with("-M") && m.len() > 2 => dparam(m.get(2..).unwrap_or(""), &mut d)?,
            "--log-file" | "--log-file-format" => {
                let v = value(&mut it).unwrap_or_default();
                d.notes
                    .push(format!("{opt}={v}: the audit log records every session"));
            }
            "-v" | "--verbose" | "--no-detach" | "--detach" => {}
            "--temp-dir" | "-T" | "--bwlimit" => {
                let v = value(&mut it).unwrap_or_default();
                d.lost.push(format!("{opt} {v}: the gate has no such knob"));
            }
            other => return Err(format!("'{other}' in an rsync daemon command")),
        }
    }
    if !(server && daemon && args.last().is_some_and(|a| a == ".")) {
        return Err("not 'rsync --server --daemon ... .'".into());
    }
    Ok(d)
}

/// Modules made for rrsync lines: the same DIR with the same flags is one
/// module.
type RrsyncKey = (String, bool, bool, bool, bool, bool, u32);

/// A daemon line's config: its path and `--dparam`s.
type DaemonKey = (String, Vec<(String, String)>);

struct State<'a> {
    b: Builder,
    files: &'a dyn Files,
    home: Option<PathBuf>,
    rrsync: Vec<(RrsyncKey, String)>,
    daemons: BTreeMap<DaemonKey, Option<(Vec<ModSpec>, Emitted)>>,
    triggers: BTreeMap<Vec<String>, String>,
    keys: BTreeMap<String, usize>,
}

/// Import an authorized_keys file.
pub fn import(input: &Input<'_>, files: &dyn Files) -> super::Import {
    let mut st = State {
        b: Builder::new(input.name, super::Format::AuthorizedKeys),
        files,
        home: input.home.map(Path::to_path_buf),
        rrsync: Vec::new(),
        daemons: BTreeMap::new(),
        triggers: BTreeMap::new(),
        keys: BTreeMap::new(),
    };
    for (n, line) in input.text.lines().enumerate() {
        let loc = Loc::new(input.name, n + 1);
        match parse_line(line) {
            Ok(None) => {}
            Ok(Some(k)) => st.key(&k, &loc),
            Err(e) => st.b.imp.lose(
                &loc,
                format!("not a key line sshd reads ({e}); ignored, as sshd ignores it"),
            ),
        }
    }
    st.b.finish()
}

impl State<'_> {
    fn key(&mut self, k: &KeyLine, loc: &Loc) {
        let lose = |st: &mut Self, text: String| st.b.imp.lose(loc, text);
        let mut reach = Reach::Anywhere;
        let mut reach_why = None;
        let mut command = None;
        let mut superseded = Vec::new();
        for (name, value) in &k.options {
            let v = value.clone().unwrap_or_default();
            match name.as_str() {
                "restrict"
                | "no-pty"
                | "no-port-forwarding"
                | "no-agent-forwarding"
                | "no-x11-forwarding"
                | "no-user-rc" => superseded.push(name.clone()),
                "from" => {
                    let rule = nets::ssh_rule(&v);
                    for l in rule.lost {
                        lose(self, l);
                    }
                    for n in rule.notes {
                        self.b.imp.note(format!("{loc}: {n}"));
                    }
                    reach = rule.reach;
                    reach_why = Some(format!("from=\"{v}\""));
                }
                "command" => command = Some(v),
                "environment" => lose(
                    self,
                    format!("environment=\"{v}\": the gate passes rsync no variables of the key's"),
                ),
                "expiry-time" => lose(
                    self,
                    format!(
                        "expiry-time=\"{v}\": the generated line does not expire; remove the client when the key should"
                    ),
                ),
                "cert-authority" | "principals" => {
                    lose(
                        self,
                        format!(
                            "{name}: a certificate authority, not a client's key; the key is not carried over"
                        ),
                    );
                    return;
                }
                "pty" | "port-forwarding" | "agent-forwarding" | "x11-forwarding" | "user-rc"
                | "permitopen" | "permitlisten" | "tunnel" => lose(
                    self,
                    format!("{name}: the generated line starts with restrict, which turns it off"),
                ),
                "no-touch-required" => lose(
                    self,
                    "no-touch-required: the generated line requires a touch of a FIDO key".into(),
                ),
                "verify-required" => lose(
                    self,
                    "verify-required: the generated line does not require user verification".into(),
                ),
                other => {
                    lose(
                        self,
                        format!(
                            "unknown option '{other}': sshd refuses the line; the key is not carried over"
                        ),
                    );
                    return;
                }
            }
        }
        if !superseded.is_empty() {
            self.b.imp.note(
                "restrict, no-pty, no-*-forwarding, no-user-rc: the lines `rsync-gate authorized-keys` writes start with restrict, which covers them",
            );
        }
        if reach.is_nobody() {
            lose(
                self,
                "from=: no address can be carried over, so the key is not (its client would be allowed from anywhere)".into(),
            );
            return;
        }
        let Some(command) = command else {
            lose(
                self,
                "no command=: this key logs in with a shell; not carried over".into(),
            );
            return;
        };
        let shown = clean(&command.chars().take(200).collect::<String>());
        let cmd = match classify(&command) {
            Ok(c) => c,
            Err(why) => {
                lose(
                    self,
                    format!("command=\"{shown}\": {why}; not carried over"),
                );
                return;
            }
        };
        let mut key = format!("{} {}", k.key_type, k.blob);
        if !k.comment.is_empty()
            && !k.comment.contains('"')
            && !k.comment.chars().any(char::is_control)
        {
            key.push(' ');
            key.push_str(&k.comment);
        }
        if let Some(first) = self.keys.get(&k.blob) {
            lose(
                self,
                format!(
                    "the same key as line {first}: sshd uses the first line that lets the connection in, but `rsync-gate authorized-keys` writes the clients in name order; give each client its own key"
                ),
            );
        } else {
            self.keys.insert(k.blob.clone(), loc.line);
        }
        let client = sanitize(
            k.comment.split_whitespace().next().unwrap_or(""),
            &format!("key-{}", loc.line),
        );
        let note = format!("authorized_keys line {}", loc.line);
        let from_why = reach_why.clone();
        match cmd {
            Command::Rrsync(args) => {
                let r = match rrsync_args(&args) {
                    Ok(r) => r,
                    Err(why) => {
                        lose(
                            self,
                            format!("command=\"{shown}\": {why}; not carried over"),
                        );
                        return;
                    }
                };
                let path = match account_path(&r.dir, self.home.as_deref()) {
                    Ok(p) => p,
                    Err(why) => {
                        lose(
                            self,
                            format!("command=\"{shown}\": {why}; not carried over"),
                        );
                        return;
                    }
                };
                let module = self.rrsync_module(&r, &path, &shown, loc);
                self.b.add_client(
                    &client,
                    &note,
                    Some(&key),
                    vec![Grant {
                        module,
                        reach,
                        why: from_why,
                    }],
                    false,
                    loc,
                );
            }
            Command::Daemon(args) => {
                self.daemon(&args, &shown, &client, &note, &key, &reach, from_why, loc)
            }
            Command::Ftpsync(prog, args) => self.ftpsync(
                &prog, &args, &shown, &client, &note, &key, &reach, from_why, loc,
            ),
            Command::Other(prog) => {
                let what = if prog == "rsync" {
                    "a fixed rsync command: the gate lets clients choose their options within a module; make a module for its path by hand"
                } else if prog == "rsync-gate" {
                    "already rsync-gate: merge its policy instead"
                } else {
                    "not rrsync, rsync's daemon or ftpsync (a home-made validator?); write its client by hand"
                };
                lose(
                    self,
                    format!("command=\"{shown}\": {what}; not carried over"),
                );
            }
        }
    }

    fn rrsync_module(&mut self, r: &Rrsync, path: &str, shown: &str, loc: &Loc) -> String {
        let writable = !r.ro;
        let overwrite = !r.no_overwrite;
        let delete = writable && !r.no_del && overwrite;
        let max_connections = u32::from(writable && !r.no_lock);
        let k: RrsyncKey = (
            path.to_string(),
            r.ro,
            r.wo,
            delete,
            overwrite,
            r.munge,
            max_connections,
        );
        if let Some((_, name)) = self.rrsync.iter().find(|(x, _)| *x == k) {
            return name.clone();
        }
        if r.no_overwrite && writable && !r.no_del {
            self.b.imp.lose(
                loc,
                format!("command=\"{shown}\": rrsync -no-overwrite still allowed --delete; the gate's overwrite = false refuses it (delete = false)"),
            );
        }
        let base = match path.rsplit('/').next() {
            Some("") | None => "root".to_string(),
            Some(last) => sanitize(last, "module"),
        };
        let name = self.b.modules.claim(&base);
        let mut t = Table::new(Kind::Module, &name);
        t.about.push(format!("{shown} at {loc}"));
        t.set(
            "path",
            Val::Str(path.to_string()),
            (path != r.dir).then(|| format!("DIR {}", r.dir)),
        );
        t.set(
            "read_only",
            Val::Bool(!writable),
            Some(if r.ro {
                "rrsync -ro".into()
            } else {
                "rrsync without -ro lets clients upload".into()
            }),
        );
        if r.wo {
            t.set("write_only", Val::Bool(true), Some("rrsync -wo".into()));
        }
        if writable {
            let why = if r.no_del {
                "rrsync -no-del"
            } else if r.no_overwrite {
                "rrsync -no-overwrite (the gate refuses deletes where nothing may be overwritten)"
            } else {
                "rrsync allows --delete and --remove-source-files unless -no-del"
            };
            t.set("delete", Val::Bool(delete), Some(why.into()));
        }
        if r.no_overwrite {
            t.set(
                "overwrite",
                Val::Bool(false),
                Some("rrsync -no-overwrite: uploads get --ignore-existing".into()),
            );
        }
        if r.munge {
            t.set("munge_links", Val::Bool(true), Some("rrsync -munge".into()));
        } else if writable {
            self.b.imp.note(
                "rrsync without -munge stored pushed symlinks as sent; in writable modules the gate stores them munged (munge_links defaults to true; set it to false to keep rrsync's way)",
            );
        }
        if max_connections > 0 {
            t.set(
                "max_connections",
                Val::Int(1),
                Some("rrsync's single-run lock (no -no-lock): one session at a time, others are refused as busy".into()),
            );
        }
        if r.absolute {
            self.b.imp.note(format!(
                "{loc}: rrsync -absolute: the gate takes absolute paths inside a module's path anyway"
            ));
        }
        if path == "/" {
            self.b.imp.note(format!(
                "{loc}: rrsync {} allowed -L/-k/-K (the directory is /); the gate refuses them unless follow_links = true",
                r.dir
            ));
        }
        self.b.imp.note(
            "rrsync took paths inside its DIR; clients now name the module first: host:MODULE/path",
        );
        self.b.imp.tables.push(t);
        self.rrsync.push((k, name.clone()));
        name
    }

    #[allow(clippy::too_many_arguments)]
    fn daemon(
        &mut self,
        args: &[String],
        shown: &str,
        client: &str,
        note: &str,
        key: &str,
        reach: &Reach,
        from_why: Option<String>,
        loc: &Loc,
    ) {
        let d = match daemon_args(args) {
            Ok(d) => d,
            Err(why) => {
                self.b
                    .imp
                    .lose(loc, format!("command=\"{shown}\": {why}; not carried over"));
                return;
            }
        };
        for l in &d.lost {
            self.b.imp.lose(loc, format!("command=\"{shown}\": {l}"));
        }
        for n in &d.notes {
            self.b.imp.note(format!("{loc}: {n}"));
        }
        let word = match &d.config {
            Some(c) => c.clone(),
            None => {
                self.b.imp.lose(
                    loc,
                    format!("command=\"{shown}\": no --config: rsync reads ~/rsyncd.conf for an account other than root (imported here) and /etc/rsyncd.conf for root"),
                );
                "rsyncd.conf".into()
            }
        };
        let path = match account_path(&word, self.home.as_deref()) {
            Ok(p) => p,
            Err(why) => {
                self.b.imp.lose(
                    loc,
                    format!("command=\"{shown}\": the config {why}; not carried over"),
                );
                return;
            }
        };
        let cache_key = (path.clone(), d.dparams.clone());
        if !self.daemons.contains_key(&cache_key) {
            let loaded = self.load_daemon(&path, &d.dparams, shown, loc);
            self.daemons.insert(cache_key.clone(), loaded);
        }
        let Some(Some((specs, emitted))) = self.daemons.get(&cache_key) else {
            return;
        };
        let mut grants = Vec::new();
        let mut needs_password = Vec::new();
        for (i, s) in specs.iter().enumerate() {
            let Some(Some(name)) = emitted.names.get(i) else {
                continue;
            };
            if let Some((_, _, shown_auth)) = &s.auth {
                needs_password.push(format!("[{}] ({shown_auth})", s.rsync_name));
                continue;
            }
            let why = match (&from_why, &s.reach_why) {
                (Some(a), Some(b)) => Some(format!("{a} and {b} in {path}")),
                (Some(a), None) => Some(a.clone()),
                (None, Some(b)) => Some(format!("{b} in {path}")),
                (None, None) => None,
            };
            grants.push(Grant {
                module: name.clone(),
                reach: reach.intersect(&s.reach),
                why,
            });
        }
        if !needs_password.is_empty() {
            self.b.imp.lose(
                loc,
                format!(
                    "{}: rsync asked for a user name and password on top of the key; not granted to this key (grant them if its holder is one of those users)",
                    needs_password.join(", ")
                ),
            );
        }
        self.b
            .add_client(client, note, Some(key), grants, false, loc);
    }

    fn load_daemon(
        &mut self,
        path: &str,
        dparams: &[(String, String)],
        shown: &str,
        loc: &Loc,
    ) -> Option<(Vec<ModSpec>, Emitted)> {
        let text = match self.files.read(Path::new(path)) {
            Ok(t) => t,
            Err(e) => {
                self.b.imp.lose(
                    loc,
                    format!("command=\"{shown}\": {path}: {e}; its modules are not carried over (import it on the server, or with --home)"),
                );
                return None;
            }
        };
        let parsed = match rsyncd::parse(path, &text, self.files, dparams, loc) {
            Ok(p) => p,
            Err(e) => {
                self.b
                    .imp
                    .lose(loc, format!("command=\"{shown}\": {e}; not carried over"));
                return None;
            }
        };
        let specs = rsyncd::map_modules(&parsed, &mut self.b.imp);
        let emitted = rsyncd::emit_modules(&specs, &mut self.b);
        Some((specs, emitted))
    }

    #[allow(clippy::too_many_arguments)]
    fn ftpsync(
        &mut self,
        prog: &str,
        args: &[String],
        shown: &str,
        client: &str,
        note: &str,
        key: &str,
        reach: &Reach,
        from_why: Option<String>,
        loc: &Loc,
    ) {
        let path = if prog.contains('/') || prog.starts_with('~') || prog.starts_with('$') {
            account_path(prog, self.home.as_deref())
        } else {
            Err(format!("the shell finds '{prog}' on the account's PATH"))
        };
        let mut command = vec![path.clone().unwrap_or_else(|_| "/usr/bin/ftpsync".into())];
        command.extend(args.iter().cloned());
        let stanza = |name: &str| -> Table {
            let mut t = Table::new(Kind::Trigger, name);
            t.about.push(format!(
                "push mirroring: {shown} at {loc}; ftpsync read the upstream's words from SSH_ORIGINAL_COMMAND, the gate passes them (checked against args) as arguments"
            ));
            t.set("command", Val::List(command.clone()), None);
            t.set(
                "args",
                Val::List(FTPSYNC_ARGS.iter().map(|s| (*s).to_string()).collect()),
                Some(
                    "what runmirrors sends (sync:callback needs CALLBACKHOST and is left out)"
                        .into(),
                ),
            );
            t
        };
        if let Err(why) = path {
            let t = stanza("ftpsync");
            let mut text = String::from(
                "A trigger for the ftpsync key(s) not carried over: set command to ftpsync's absolute path, then add\n[clients.NAME] with trigger = \"ftpsync\", from and key.\n",
            );
            text.push_str("[triggers.ftpsync]\n");
            for e in &t.entries {
                let v = match &e.val {
                    Val::List(l) => format!(
                        "[{}]",
                        l.iter()
                            .map(|s| super::model::toml_string(s))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    _ => String::new(),
                };
                text.push_str(&format!("{} = {v}\n", e.key));
            }
            if !self.b.imp.commented.contains(&text) {
                self.b.imp.commented.push(text);
            }
            self.b.imp.lose(
                loc,
                format!("command=\"{shown}\": {why}; the trigger is printed commented out at the end, and the key is not carried over"),
            );
            return;
        }
        let name = match self.triggers.get(&command) {
            Some(n) => n.clone(),
            None => {
                let n = self.b.triggers.claim("ftpsync");
                self.b.imp.tables.push(stanza(&n));
                self.b.imp.note(
                    "a trigger's job gets an environment built from nothing: put what ftpsync needs (MAILTO, ...) in its env, and its output in log",
                );
                self.triggers.insert(command.clone(), n.clone());
                n
            }
        };
        self.b
            .add_trigger_client(client, note, key, &name, reach, from_why);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_lines() {
        let k = parse_line(
            "restrict,from=\"192.0.2.1,!10.0.0.1\",command=\"rrsync -ro \\\"/srv/a b\\\"\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB alice@laptop  x",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            k.options,
            [
                ("restrict".to_string(), None),
                ("from".to_string(), Some("192.0.2.1,!10.0.0.1".to_string())),
                (
                    "command".to_string(),
                    Some("rrsync -ro \"/srv/a b\"".to_string())
                ),
            ]
        );
        assert_eq!(k.key_type, "ssh-ed25519");
        assert_eq!(k.comment, "alice@laptop  x");
        let plain = parse_line("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAB")
            .unwrap()
            .unwrap();
        assert!(plain.options.is_empty() && plain.comment.is_empty());
        assert_eq!(parse_line("  # comment").unwrap(), None);
        assert_eq!(parse_line("").unwrap(), None);
        for bad in [
            "hello world",
            "command=rrsync ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB",
            "command=\"rrsync ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB",
            "ssh-ed25519 short",
            "no-pty ssh-foo AAAAC3NzaC1lZDI1NTE5AAAAIB",
        ] {
            assert!(parse_line(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rrsync_flags() {
        let a = |s: &str| -> Result<Rrsync, String> {
            rrsync_args(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
        };
        let r = a("-ro /srv/www").unwrap();
        assert!(r.ro && r.no_del && r.no_lock && !r.wo);
        let r = a("-wo -munge -no-overwrite -no-lock /srv/in").unwrap();
        assert!(r.wo && r.munge && r.no_overwrite && r.no_lock && !r.no_del);
        let r = a("/srv/x -no-del").unwrap();
        assert!(r.no_del && r.dir == "/srv/x");
        assert_eq!(a("-- -odd").unwrap().dir, "-odd");
        for bad in ["-ro -wo /x", "-rw /x", "", "/a /b", "-help /x", "--ro /x"] {
            assert!(a(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn account_paths() {
        let home = Some(Path::new("/home/u"));
        let table: &[(&str, Option<&Path>, Result<&str, &str>)] = &[
            ("/srv/www", None, Ok("/srv/www")),
            ("/srv//www/./", None, Ok("/srv/www")),
            ("/", None, Ok("/")),
            ("backup", home, Ok("/home/u/backup")),
            ("~/backup", home, Ok("/home/u/backup")),
            ("$HOME/backup", home, Ok("/home/u/backup")),
            ("${HOME}", home, Ok("/home/u")),
            ("~", home, Ok("/home/u")),
            ("backup", None, Err("--home")),
            ("~bob/x", home, Err("another user's home")),
            ("$DATA/x", home, Err("shell")),
            ("/srv/../etc", None, Err("'..'")),
            ("/srv/50%", None, Err("not allowed")),
        ];
        for (word, home, want) in table {
            let got = account_path(word, *home);
            match (want, &got) {
                (Ok(w), Ok(g)) => assert_eq!(g, w, "{word}"),
                (Err(w), Err(g)) => assert!(g.contains(w), "{word}: {g}"),
                _ => panic!("{word}: {got:?}"),
            }
        }
    }

    #[test]
    fn commands() {
        let table: &[(&str, &str)] = &[
            ("rrsync -ro /srv", "rrsync"),
            ("/usr/bin/rrsync /srv", "rrsync"),
            ("$HOME/bin/rrsync /srv", "rrsync"),
            ("python3 /usr/local/bin/rrsync -ro /srv", "rrsync"),
            ("exec rrsync /srv", "rrsync"),
            ("rsync --server --daemon .", "daemon"),
            (
                "/usr/bin/rsync --config=/etc/r.conf --server --daemon .",
                "daemon",
            ),
            ("~/bin/ftpsync", "ftpsync"),
            ("/usr/bin/ftpsync sync:all", "ftpsync"),
            ("/usr/local/bin/validate-rsync", "other"),
            ("rsync --server --sender -vlogDtpr . /srv/www/", "other"),
            ("rrsync /srv; rm -rf /", "error"),
            ("rrsync `id`", "error"),
            ("rrsync $DIR", "error"),
            ("FOO=1 rrsync /srv", "error"),
            ("rrsync 'unbalanced", "error"),
            ("", "error"),
        ];
        for (cmd, want) in table {
            let got = match classify(cmd) {
                Ok(Command::Rrsync(_)) => "rrsync",
                Ok(Command::Daemon(_)) => "daemon",
                Ok(Command::Ftpsync(..)) => "ftpsync",
                Ok(Command::Other(_)) => "other",
                Err(_) => "error",
            };
            assert_eq!(got, *want, "{cmd}");
        }
    }

    #[test]
    fn daemon_commands() {
        let d = |s: &str| daemon_args(&s.split_whitespace().map(String::from).collect::<Vec<_>>());
        let x = d("--server --daemon --config=/etc/r.conf .").unwrap();
        assert_eq!(x.config.as_deref(), Some("/etc/r.conf"));
        let x =
            d("--config /etc/r.conf --server --daemon -M readonly=no --dparam=list=no .").unwrap();
        assert_eq!(
            x.dparams,
            [
                ("readonly".into(), "no".into()),
                ("list".into(), "no".into())
            ]
        );
        assert_eq!(x.config.as_deref(), Some("/etc/r.conf"));
        assert_eq!(d("--server --daemon -T /tmp .").unwrap().lost.len(), 1);
        for bad in [
            "--server --daemon",
            "--daemon .",
            "--server --daemon --port=1 .",
            "--server --daemon -M x .",
        ] {
            assert!(d(bad).is_err(), "{bad}");
        }
    }
}
