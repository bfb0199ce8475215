//! A decision's trace: every rule that applied, in order, with where in the
//! policy it came from (`explain --trace`).
//!
//! The decision code (and the confinement stage after it) reports each rule
//! it applies to a [`Tracer`]. [`super::decide`] passes [`NoTrace`], which
//! keeps nothing and compiles to nothing (the step is built by a closure
//! that is never called); [`super::decide_traced`] passes a `Vec<Step>`.
//! Both run the same code, so a trace cannot tell a different story from
//! the decision it explains.
//!
//! Steps carry the policy location of what they used: the client's or
//! module's table header ([`Origin`]). Where a step used one key of a table
//! (a module's `delete`, an entry of a client's `from` or `modules`), the
//! header is where the decision found it; [`locate_keys`] then refines it
//! to the key itself, or says the value is the default, from the policy's
//! [`KeyOrigins`] (read only when a trace is asked for).

use serde::{Serialize, Serializer};

use crate::policy::{KeyOrigins, Origin};

/// Where the decision code reports the rules it applies.
pub trait Tracer {
    /// Record the step `make` builds (or, not tracing, never build it).
    fn step(&mut self, make: impl FnOnce() -> Step);

    /// Are steps kept? (For loops that would run only to report.)
    fn enabled(&self) -> bool {
        true
    }
}

/// Keeps nothing: what `serve` decides with.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTrace;

impl Tracer for NoTrace {
    #[inline(always)]
    fn step(&mut self, _make: impl FnOnce() -> Step) {}

    #[inline(always)]
    fn enabled(&self) -> bool {
        false
    }
}

impl Tracer for Vec<Step> {
    fn step(&mut self, make: impl FnOnce() -> Step) {
        self.push(make());
    }
}

/// Where a policy value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum At {
    /// The table (a client's or module's header) the value was read from;
    /// the key itself has not been looked up.
    Table(Origin),
    /// The key (or the array entry) that sets it.
    Key(Origin),
    /// Not set: the default applies (in the table at this origin).
    Default(Origin),
}

impl At {
    pub fn origin(&self) -> &Origin {
        match self {
            At::Table(o) | At::Key(o) | At::Default(o) => o,
        }
    }
}

impl Serialize for At {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let (kind, o) = match self {
            At::Table(o) => ("table", o),
            At::Key(o) => ("key", o),
            At::Default(o) => ("default", o),
        };
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(kind, &o.to_string())?;
        m.end()
    }
}

fn origin<S: Serializer>(o: &Origin, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&o.to_string())
}

/// A module key the decision consulted, and its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Knob {
    pub module: String,
    /// The key: `read_only`, `delete`, ...
    pub key: &'static str,
    pub value: String,
    pub at: At,
}

impl Knob {
    pub fn new(m: &crate::policy::Module, key: &'static str, value: impl ToString) -> Knob {
        Knob {
            module: m.name.clone(),
            key,
            value: value.to_string(),
            at: At::Table(m.origin.clone()),
        }
    }

    /// `delete = true at FILE:LINE:COL`, `devices = false, the default
    /// ([modules.NAME] at FILE:LINE:COL)`.
    fn shown(&self) -> String {
        match &self.at {
            At::Table(o) => format!(
                "{} = {} ([modules.{}] at {o})",
                self.key, self.value, self.module
            ),
            At::Key(o) => format!("{} = {} at {o}", self.key, self.value),
            At::Default(o) => format!(
                "{} = {}, the default ([modules.{}] at {o})",
                self.key, self.value, self.module
            ),
        }
    }
}

/// Which stage a decision step concludes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The pure decision, before the filesystem is consulted.
    Decide,
    /// The whole front half: decision, confinement, plan.
    Final,
}

/// One rule that applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// The `--client` name is a client of the policy.
    ClientFound {
        client: String,
        /// `learn = true`: the request is decided as for any client, and
        /// the audit record notes what it asked for.
        learn: bool,
        #[serde(serialize_with = "origin")]
        at: Origin,
    },
    /// It is not.
    ClientUnknown { client: String },
    /// The client has no `from`: any address.
    SourceNotRestricted { addr: Option<String> },
    /// The address lies in the `index`th entry of the client's `from`.
    SourceMatched {
        addr: String,
        entry: String,
        index: usize,
        at: At,
    },
    /// The client has a `from` and the address is in none of it (or is
    /// unknown).
    SourceRefused {
        addr: Option<String>,
        entries: Vec<String>,
        #[serde(serialize_with = "origin")]
        at: Origin,
    },
    /// What the request is, as parsed.
    Request { request: String },
    /// A trigger client's trigger.
    Trigger {
        trigger: String,
        /// The words are passed to the job (the trigger has `args`).
        passed: bool,
        #[serde(serialize_with = "origin")]
        at: Origin,
    },
    /// One word of a trigger request.
    TriggerWord { word: String, allowed: bool },
    /// A path (or a path-valued option's value) mapped onto a module,
    /// lexically.
    PathMapped {
        path: String,
        module: String,
        /// An absolute path under the module's `path` (else `MODULE/...`).
        absolute: bool,
    },
    /// A path-valued option's value, as the decision reads it.
    PathOption {
        option: String,
        value: String,
        reading: String,
    },
    /// The module the request uses is one of the client's.
    ModuleGranted {
        module: String,
        path: String,
        #[serde(serialize_with = "origin")]
        at: Origin,
        /// The entry of the client's `modules` that grants it.
        listed: At,
    },
    /// Pull or push, against the module's `read_only`/`write_only`.
    Direction {
        mode: &'static str,
        knob: Knob,
        allowed: bool,
    },
    /// One option the client sent: its row of the option table, the rule
    /// the row names, and the module key that rule consults.
    Option {
        option: String,
        /// Its value, when it takes one that is not a path (paths are
        /// [`Step::PathOption`]s).
        #[serde(skip_serializing_if = "Option::is_none")]
        value: Option<String>,
        row: &'static str,
        rule: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        knob: Option<Knob>,
        allowed: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        why: Option<String>,
    },
    /// Another rule: what rsync or the sandbox can hold, what a daemon
    /// request must carry itself.
    Rule {
        rule: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        knob: Option<Knob>,
        allowed: bool,
    },
    /// An option the gate adds, and why.
    Added {
        option: String,
        why: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        knob: Option<Knob>,
    },
    /// The module's root, checked on the filesystem (owner, modes, what a
    /// writable module may not contain).
    ModuleRoot {
        module: String,
        root: String,
        allowed: bool,
    },
    /// A path resolved physically, and what rsync is handed for it (a held
    /// descriptor, a name below one, or a directory the gate creates).
    Path {
        role: String,
        path: String,
        resolved: String,
        handed: String,
    },
    /// The outcome of a stage.
    Decision {
        stage: Stage,
        allowed: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<String>,
        summary: String,
    },
}

fn yes(allowed: bool) -> &'static str {
    if allowed { "allowed" } else { "refused" }
}

impl Step {
    /// One line of `explain --trace`.
    pub fn text(&self) -> String {
        match self {
            Step::ClientFound { client, learn, at } => {
                let mut s = format!("client '{client}' ([clients.{client}] at {at})");
                if *learn {
                    s.push_str(
                        "; learn = true: decided as any client, and the audit record notes what it asked for",
                    );
                }
                s
            }
            Step::ClientUnknown { client } => format!("client '{client}' is not in the policy"),
            Step::SourceNotRestricted { addr } => format!(
                "source {}: any address (the client has no from)",
                addr.as_deref().unwrap_or("unknown")
            ),
            Step::SourceMatched {
                addr, entry, at, ..
            } => format!(
                "source {addr} matches from entry {entry} ({})",
                at_shown(at)
            ),
            Step::SourceRefused { addr, entries, at } => match addr {
                Some(a) => format!(
                    "source {a} matches no from entry ({}; at {at})",
                    entries.join(", ")
                ),
                None => format!("source unknown, and the client has a from (at {at})"),
            },
            Step::Request { request } => format!("request: {request}"),
            Step::Trigger {
                trigger,
                passed,
                at,
            } => format!(
                "trigger '{trigger}' ([triggers.{trigger}] at {at}): {}",
                if *passed {
                    "its args list the words a client may send, passed to the job"
                } else {
                    "no args: the words are recorded, not passed"
                }
            ),
            Step::TriggerWord { word, allowed } => format!("word '{word}': {}", yes(*allowed)),
            Step::PathMapped {
                path,
                module,
                absolute,
            } => {
                if *absolute {
                    format!("path '{path}' lies under the path of module '{module}'")
                } else {
                    format!("path '{path}' names module '{module}'")
                }
            }
            Step::PathOption {
                option,
                value,
                reading,
            } => format!("{option} '{value}': {reading}"),
            Step::ModuleGranted {
                module,
                path,
                at,
                listed,
            } => format!(
                "module '{module}' (path {path}; [modules.{module}] at {at}) is granted by the client's modules ({})",
                at_shown(listed)
            ),
            Step::Direction {
                mode,
                knob,
                allowed,
            } => format!(
                "{mode} in module '{}': {} by {}",
                knob.module,
                yes(*allowed),
                knob.shown()
            ),
            Step::Option {
                option,
                value,
                row,
                rule,
                knob,
                allowed,
                why,
            } => {
                let value = value
                    .as_ref()
                    .map(|v| format!(" '{v}'"))
                    .unwrap_or_default();
                let mut s = format!(
                    "option {option}{value} (row {row}, rule {rule}): {}",
                    yes(*allowed)
                );
                if let Some(k) = knob {
                    s.push_str(&format!(" by {}", k.shown()));
                }
                if let Some(w) = why {
                    s.push_str(&format!(": {w}"));
                }
                s
            }
            Step::Rule {
                rule,
                knob,
                allowed,
            } => {
                let mut s = format!("{rule}: {}", yes(*allowed));
                if let Some(k) = knob {
                    s.push_str(&format!("; {}", k.shown()));
                }
                s
            }
            Step::Added { option, why, knob } => {
                let mut s = format!("adds {option}: {why}");
                if let Some(k) = knob {
                    s.push_str(&format!("; {}", k.shown()));
                }
                s
            }
            Step::ModuleRoot {
                module,
                root,
                allowed,
            } => {
                if *allowed {
                    format!("module '{module}' root {root}: safe to serve")
                } else {
                    format!("module '{module}' root {root}: not safe to serve")
                }
            }
            Step::Path {
                role,
                path,
                resolved,
                handed,
            } => format!("{role} '{path}' resolves to {resolved}; rsync gets {handed}"),
            Step::Decision {
                stage,
                allowed,
                code,
                summary,
            } => {
                let head = match stage {
                    Stage::Decide => "decided (before the filesystem)",
                    Stage::Final => "decision",
                };
                match (allowed, code) {
                    (true, _) => format!("{head}: allow: {summary}"),
                    (false, Some(c)) => format!("{head}: deny: {summary} ({c})"),
                    (false, None) => format!("{head}: deny: {summary}"),
                }
            }
        }
    }
}

fn at_shown(at: &At) -> String {
    match at {
        At::Table(o) => format!("in the table at {o}"),
        At::Key(o) => o.to_string(),
        At::Default(o) => format!("the default, table at {o}"),
    }
}

/// Refine each step's table origins to the keys that set the values (or
/// mark them defaults), from the policy's key positions.
pub fn locate_keys(steps: &mut [Step], keys: &KeyOrigins) {
    let knob = |k: &mut Knob| {
        if let At::Table(header) = &k.at {
            k.at = match keys.module_key(&k.module, k.key) {
                Some(o) => At::Key(o.clone()),
                None if keys.knows_module(&k.module) => At::Default(header.clone()),
                None => At::Table(header.clone()),
            };
        }
    };
    for s in steps.iter_mut() {
        match s {
            Step::Direction { knob: k, .. }
            | Step::Option { knob: Some(k), .. }
            | Step::Rule { knob: Some(k), .. }
            | Step::Added { knob: Some(k), .. } => knob(k),
            _ => {}
        }
    }
    // Entries of a client's lists need the client's name, which the first
    // step carries.
    let client = steps.iter().find_map(|s| match s {
        Step::ClientFound { client, .. } => Some(client.clone()),
        _ => None,
    });
    let Some(client) = client else { return };
    for s in steps.iter_mut() {
        match s {
            Step::SourceMatched { index, at, .. } => {
                if let Some(o) = keys.client_item(&client, "from", *index) {
                    *at = At::Key(o.clone());
                }
            }
            Step::ModuleGranted { module, listed, .. } => {
                if let Some(o) = keys.client_module(&client, module) {
                    *listed = At::Key(o.clone());
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::{Conn, Context, RsyncCaps, Server, decide, decide_traced};
    use crate::policy::{self, Policy};
    use crate::request::parse_command;
    use std::path::Path;

    const POLICY: &str = include_str!("../../tests/data/lexical-policy.toml");

    fn policy() -> Policy {
        policy::load_text(Path::new("/p.toml"), POLICY).unwrap()
    }

    fn traced(
        p: &Policy,
        client: &str,
        conn: Option<&str>,
        server: Server,
        cmd: &str,
    ) -> Vec<String> {
        let ctx = Context {
            policy: p,
            client,
            conn: conn.map(|a| Conn {
                addr: a.parse().unwrap(),
                port: 1,
            }),
            server,
        };
        let req = parse_command(cmd.as_bytes());
        let mut steps = Vec::new();
        let d = decide_traced(&ctx, req.as_ref(), &mut steps);
        assert_eq!(d, decide(&ctx, req.as_ref()), "{cmd}");
        steps.iter().map(Step::text).collect()
    }

    const CAPS: Server = Server {
        caps: RsyncCaps {
            confine_root: true,
            drop_d: true,
        },
        sandbox: true,
    };

    /// The module's timeout is kept with its own reason when the client
    /// asks for the same; a shorter one is the client's.
    #[test]
    fn the_timeout_says_whose_it_is() {
        let p = policy();
        for (asked, whose) in [
            ("30", "rsync ends a session without I/O for this long"),
            (
                "29",
                "the client's own --timeout, shorter than the module's",
            ),
        ] {
            let lines = traced(
                &p,
                "c",
                None,
                CAPS,
                &format!("rsync --server -r --timeout={asked} . links/"),
            );
            assert!(
                lines
                    .iter()
                    .any(|l| l.contains(&format!("--timeout={asked}")) && l.contains(whose)),
                "{asked}: {lines:#?}"
            );
        }
    }

    /// A write-only module's refusal that depends on `overwrite` says so.
    #[test]
    fn refusals_name_the_knob_that_refused() {
        let p = policy::load_text(
            Path::new("/p.toml"),
            "[modules.handin]\npath = \"/srv/handin\"\nread_only = false\nwrite_only = true\n\
             [clients.c]\nmodules = [\"handin\"]\n",
        )
        .unwrap();
        let lines = traced(&p, "c", None, CAPS, "rsync --server -rc . handin/");
        assert!(
            lines.contains(
                &"option --checksum (-c) (row checksum, rule allow): refused by write_only = true ([modules.handin] at /p.toml:1:1): with overwrite = true, skipping files whose content matches would confirm guesses of their content"
                    .to_string()
            ),
            "{lines:#?}"
        );
    }

    /// Each rule that applied, in order, with its policy location.
    #[test]
    fn trace_table() {
        let p = policy();
        let old = Server {
            caps: RsyncCaps::default(),
            sandbox: false,
        };
        type Case<'a> = (&'a str, Option<&'a str>, Server, &'a str, &'a [&'a str]);
        let table: &[Case<'_>] = &[
            (
                "fenced",
                Some("2001:db8::7"),
                CAPS,
                "rsync --server --sender -re.iLsfxCIvu . www/",
                &[
                    "client 'fenced' ([clients.fenced] at /p.toml:46:1)",
                    "source 2001:db8::7 matches from entry 2001:db8::/32 (in the table at /p.toml:46:1)",
                    "request: rsync --server (host:path), --sender: the client pulls (2 option(s), 1 path(s))",
                    "path 'www/' names module 'www'",
                    "module 'www' (path /srv/www; [modules.www] at /p.toml:4:1) is granted by the client's modules (in the table at /p.toml:46:1)",
                    "pull (rsync sends) in module 'www': allowed by write_only = false ([modules.www] at /p.toml:4:1)",
                    "option --recursive (-r) (row recursive, rule allow): allowed",
                    "option -e '.iLsfxCIvu' (row e, rule allow): allowed",
                    "adds --confine-root=/srv/www: the server's rsync refuses paths resolving outside the module",
                    "decided (before the filesystem): allow: rsync as a sender in module 'www' (host:path)",
                ],
            ),
            (
                "fenced",
                Some("192.0.2.11"),
                CAPS,
                "rsync --server --sender -re.iLsfxCIvu . www/",
                &[
                    "client 'fenced' ([clients.fenced] at /p.toml:46:1)",
                    "source 192.0.2.11 matches no from entry (192.0.2.10, 2001:db8::/32; at /p.toml:46:1)",
                    "decided (before the filesystem): deny: connections from 192.0.2.11 are not allowed for this key (source_not_allowed)",
                ],
            ),
            (
                "fenced",
                None,
                CAPS,
                "true",
                &[
                    "client 'fenced' ([clients.fenced] at /p.toml:46:1)",
                    "source unknown, and the client has a from (at /p.toml:46:1)",
                    "decided (before the filesystem): deny: the client address is unknown, and this key is restricted by address (no_source_address)",
                ],
            ),
            (
                "nobody",
                None,
                CAPS,
                "true",
                &[
                    "client 'nobody' is not in the policy",
                    "decided (before the filesystem): deny: client 'nobody' is not in the server's policy (unknown_client)",
                ],
            ),
            (
                "c",
                None,
                CAPS,
                "rsync --server -rte.iLsfxCIvu --delete --link-dest=../prev . backup/cur/",
                &[
                    "client 'c' ([clients.c] at /p.toml:43:1)",
                    "source unknown: any address (the client has no from)",
                    "request: rsync --server (host:path), the client pushes (5 option(s), 1 path(s))",
                    "path 'backup/cur/' names module 'backup'",
                    "--link-dest '../prev': relative to the destination directory",
                    "module 'backup' (path /srv/backup; [modules.backup] at /p.toml:12:1) is granted by the client's modules (in the table at /p.toml:43:1)",
                    "push (rsync receives) in module 'backup': allowed by read_only = false ([modules.backup] at /p.toml:12:1)",
                    "option --recursive (-r) (row recursive, rule allow): allowed",
                    "option --times (-t) (row times, rule allow): allowed",
                    "option -e '.iLsfxCIvu' (row e, rule allow): allowed",
                    "option --delete (row delete, rule delete): allowed by delete = true ([modules.backup] at /p.toml:12:1)",
                    "option --link-dest (row link-dest, rule allow): allowed",
                    "adds --drop-D: no device or special files are created; devices = false ([modules.backup] at /p.toml:12:1)",
                    "adds --munge-links: symlinks are stored munged; munge_links = true ([modules.backup] at /p.toml:12:1)",
                    "adds --confine-root=/srv/backup: the server's rsync refuses paths resolving outside the module",
                    "adds --chmod=ug-s: uploads lose set-user-ID and set-group-ID bits; setuid = false ([modules.backup] at /p.toml:12:1)",
                    "decided (before the filesystem): allow: rsync as a receiver in module 'backup' (host:path)",
                ],
            ),
            (
                "c",
                None,
                CAPS,
                "rsync --server -rte.iLsfxCIvu --delete . drop/",
                &[
                    "client 'c' ([clients.c] at /p.toml:43:1)",
                    "source unknown: any address (the client has no from)",
                    "request: rsync --server (host:path), the client pushes (4 option(s), 1 path(s))",
                    "path 'drop/' names module 'drop'",
                    "module 'drop' (path /srv/drop; [modules.drop] at /p.toml:17:1) is granted by the client's modules (in the table at /p.toml:43:1)",
                    "push (rsync receives) in module 'drop': allowed by read_only = false ([modules.drop] at /p.toml:17:1)",
                    "option --recursive (-r) (row recursive, rule allow): allowed",
                    "option --times (-t) (row times, rule allow): allowed",
                    "option -e '.iLsfxCIvu' (row e, rule allow): allowed",
                    "option --delete (row delete, rule delete): refused by delete = false ([modules.drop] at /p.toml:17:1)",
                    "decided (before the filesystem): deny: option --delete is not allowed in module 'drop' (delete = false) (option_not_permitted)",
                ],
            ),
            (
                "c",
                None,
                CAPS,
                "rsync --server -ryt . handin/",
                &[
                    "client 'c' ([clients.c] at /p.toml:43:1)",
                    "source unknown: any address (the client has no from)",
                    "request: rsync --server (host:path), the client pushes (3 option(s), 1 path(s))",
                    "path 'handin/' names module 'handin'",
                    "module 'handin' (path /srv/handin; [modules.handin] at /p.toml:23:1) is granted by the client's modules (in the table at /p.toml:43:1)",
                    "push (rsync receives) in module 'handin': allowed by read_only = false ([modules.handin] at /p.toml:23:1)",
                    "option --recursive (-r) (row recursive, rule allow): allowed",
                    "option --fuzzy (-y) (row fuzzy, rule allow): refused by write_only = true ([modules.handin] at /p.toml:23:1): a similarly named existing file would be the basis, its name and checksums sent to the client",
                    "decided (before the filesystem): deny: option --fuzzy (-y) is not allowed in module 'handin' (write_only = true: a similarly named existing file would be the basis, its name and checksums sent to the client) (option_not_permitted)",
                ],
            ),
            (
                "c",
                None,
                CAPS,
                "rsync --server --sender -re.iLsfxCIvu --rsh=x . www/",
                &[
                    "client 'c' ([clients.c] at /p.toml:43:1)",
                    "source unknown: any address (the client has no from)",
                    "request: rsync --server (host:path), --sender: the client pulls (3 option(s), 1 path(s))",
                    "option --rsh (row rsh, rule refuse): refused: a server does not start remote shells",
                    "decided (before the filesystem): deny: option --rsh is not allowed: a server does not start remote shells (option_refused)",
                ],
            ),
            (
                "c",
                None,
                old,
                "rsync --server -rLtD --timeout=5 . links/x/",
                &[
                    "client 'c' ([clients.c] at /p.toml:43:1)",
                    "source unknown: any address (the client has no from)",
                    "request: rsync --server (host:path), the client pushes (5 option(s), 1 path(s))",
                    "path 'links/x/' names module 'links'",
                    "module 'links' (path /srv/links; [modules.links] at /p.toml:28:1) is granted by the client's modules (in the table at /p.toml:43:1)",
                    "push (rsync receives) in module 'links': allowed by read_only = false ([modules.links] at /p.toml:28:1)",
                    "option --recursive (-r) (row recursive, rule allow): allowed",
                    "option --copy-links (-L) (row copy-links, rule follow_links): allowed by follow_links = true ([modules.links] at /p.toml:28:1)",
                    "option --times (-t) (row times, rule allow): allowed",
                    "option -D (row D, rule allow): allowed",
                    "option --timeout '5' (row timeout, rule allow): allowed",
                    "adds --timeout=5: the client's own --timeout, shorter than the module's; timeout = 30 ([modules.links] at /p.toml:28:1)",
                    "decided (before the filesystem): allow: rsync as a receiver in module 'links' (host:path)",
                ],
            ),
            (
                "c",
                None,
                old,
                "rsync --server -rtD . backup/",
                &[
                    "client 'c' ([clients.c] at /p.toml:43:1)",
                    "source unknown: any address (the client has no from)",
                    "request: rsync --server (host:path), the client pushes (3 option(s), 1 path(s))",
                    "path 'backup/' names module 'backup'",
                    "module 'backup' (path /srv/backup; [modules.backup] at /p.toml:12:1) is granted by the client's modules (in the table at /p.toml:43:1)",
                    "push (rsync receives) in module 'backup': allowed by read_only = false ([modules.backup] at /p.toml:12:1)",
                    "option --recursive (-r) (row recursive, rule allow): allowed",
                    "option --times (-t) (row times, rule allow): allowed",
                    "option -D (row D, rule allow): allowed",
                    "device or special files on a push: the server's rsync has no --drop-D and no kernel sandbox is active: refused; devices = false ([modules.backup] at /p.toml:12:1)",
                    "decided (before the filesystem): deny: -D (device and special files) is not allowed here: the server's rsync has no --drop-D and no kernel sandbox is active; the module's policy keeps them out (devices = false) (nodes_unconfined)",
                ],
            ),
            (
                "c",
                None,
                CAPS,
                "rsync --server --sender -r . /srv/www/sub/x",
                &[
                    "client 'c' ([clients.c] at /p.toml:43:1)",
                    "source unknown: any address (the client has no from)",
                    "request: rsync --server (host:path), --sender: the client pulls (1 option(s), 1 path(s))",
                    "path '/srv/www/sub/x' lies under the path of module 'nested'",
                    "module 'nested' (path /srv/www/sub; [modules.nested] at /p.toml:7:1) is granted by the client's modules (in the table at /p.toml:43:1)",
                    "pull (rsync sends) in module 'nested': allowed by write_only = false ([modules.nested] at /p.toml:7:1)",
                    "option --recursive (-r) (row recursive, rule allow): allowed",
                    "adds --munge-links: symlinks are stored munged; munge_links = true ([modules.nested] at /p.toml:7:1)",
                    "adds --confine-root=/srv/www/sub: the server's rsync refuses paths resolving outside the module",
                    "decided (before the filesystem): allow: rsync as a sender in module 'nested' (host:path)",
                ],
            ),
            (
                "upstream",
                Some("192.0.2.50"),
                CAPS,
                "sync:all sync:bogus",
                &[
                    "client 'upstream' ([clients.upstream] at /p.toml:67:1)",
                    "source 192.0.2.50 matches from entry 192.0.2.50 (in the table at /p.toml:67:1)",
                    "request: a command of 2 word(s), not rsync",
                    "trigger 'debian' ([triggers.debian] at /p.toml:63:1): its args list the words a client may send, passed to the job",
                    "word 'sync:all': allowed",
                    "word 'sync:bogus': refused",
                    "decided (before the filesystem): deny: trigger 'debian' does not take the word 'sync:bogus' (trigger_word_refused)",
                ],
            ),
            (
                "rooty",
                None,
                CAPS,
                "rsync --server --daemon .",
                &[
                    "client 'rooty' ([clients.rooty] at /p.toml:50:1)",
                    "source unknown: any address (the client has no from)",
                    "request: rsync --server --daemon . (host::module)",
                    "module 'root' (path /; [modules.root] at /p.toml:37:1) is granted by the client's modules (in the table at /p.toml:50:1)",
                    "module 'backup' (path /srv/backup; [modules.backup] at /p.toml:12:1) is granted by the client's modules (in the table at /p.toml:50:1)",
                    "decided (before the filesystem): allow: rsync's daemon over the SSH channel, offering root, backup",
                ],
            ),
            (
                "c",
                None,
                CAPS,
                "rsync --server --sender -r --bogus . www/",
                &[
                    "client 'c' ([clients.c] at /p.toml:43:1)",
                    "source unknown: any address (the client has no from)",
                    "request: not understood: unknown option --bogus",
                    "decided (before the filesystem): deny: unknown option --bogus (unknown_option)",
                ],
            ),
            (
                "c",
                None,
                CAPS,
                "nice -n 19 rsync --server --sender --delete-before -r . www/",
                &[
                    "client 'c' ([clients.c] at /p.toml:43:1)",
                    "source unknown: any address (the client has no from)",
                    "request: rsync --server (host:path), --sender: the client pulls (2 option(s), 1 path(s)), at a lower priority (nice +19)",
                    "--delete-before: a receiver-side delete on a pull; left out of rsync's argv (a sender has nothing to delete): allowed",
                    "path 'www/' names module 'www'",
                    "module 'www' (path /srv/www; [modules.www] at /p.toml:4:1) is granted by the client's modules (in the table at /p.toml:43:1)",
                    "pull (rsync sends) in module 'www': allowed by write_only = false ([modules.www] at /p.toml:4:1)",
                    "option --recursive (-r) (row recursive, rule allow): allowed",
                    "adds --confine-root=/srv/www: the server's rsync refuses paths resolving outside the module",
                    "decided (before the filesystem): allow: rsync as a sender in module 'www' (host:path)",
                ],
            ),
            (
                "c",
                None,
                CAPS,
                "rsync --server --sender -r . www/dir with space/",
                &[
                    "client 'c' ([clients.c] at /p.toml:43:1)",
                    "source unknown: any address (the client has no from)",
                    "request: rsync --server (host:path), --sender: the client pulls (1 option(s), 3 path(s))",
                    "the first path word names a module and a later one does not: a path split at its spaces ('www/dir' 'with' 'space/'): refused",
                    "decided (before the filesystem): deny: the path arrived as the separate words 'www/dir' 'with' 'space/': this looks like a path with spaces from an rsync older than 3.2.4: use -s, or escape the spaces (split_path)",
                ],
            ),
            (
                "c",
                None,
                old,
                "rsync --server -rD . nested/x/",
                &[
                    "client 'c' ([clients.c] at /p.toml:43:1)",
                    "source unknown: any address (the client has no from)",
                    "request: rsync --server (host:path), the client pushes (2 option(s), 1 path(s))",
                    "path 'nested/x/' names module 'nested'",
                    "module 'nested' (path /srv/www/sub; [modules.nested] at /p.toml:7:1) is granted by the client's modules (in the table at /p.toml:43:1)",
                    "push (rsync receives) in module 'nested': allowed by read_only = false ([modules.nested] at /p.toml:7:1)",
                    "option --recursive (-r) (row recursive, rule allow): allowed",
                    "option -D (row D, rule allow): allowed",
                    "device nodes on a push with specials = true: only the kernel sandbox keeps them out (FIFOs and sockets may come in): refused; specials = true ([modules.nested] at /p.toml:7:1)",
                    "decided (before the filesystem): deny: -D (device and special files) is not allowed here: with specials = true only the kernel sandbox keeps device nodes out, and none is active; the module's policy keeps them out (devices = false) (nodes_unconfined)",
                ],
            ),
            (
                "c",
                None,
                CAPS,
                "rsync --server -rD . nested/x/",
                &[
                    "client 'c' ([clients.c] at /p.toml:43:1)",
                    "source unknown: any address (the client has no from)",
                    "request: rsync --server (host:path), the client pushes (2 option(s), 1 path(s))",
                    "path 'nested/x/' names module 'nested'",
                    "module 'nested' (path /srv/www/sub; [modules.nested] at /p.toml:7:1) is granted by the client's modules (in the table at /p.toml:43:1)",
                    "push (rsync receives) in module 'nested': allowed by read_only = false ([modules.nested] at /p.toml:7:1)",
                    "option --recursive (-r) (row recursive, rule allow): allowed",
                    "option -D (row D, rule allow): allowed",
                    "device nodes on a push with specials = true: only the kernel sandbox keeps them out (FIFOs and sockets may come in): allowed; specials = true ([modules.nested] at /p.toml:7:1)",
                    "adds --munge-links: symlinks are stored munged; munge_links = true ([modules.nested] at /p.toml:7:1)",
                    "adds --confine-root=/srv/www/sub: the server's rsync refuses paths resolving outside the module",
                    "adds --chmod=ug-s: uploads lose set-user-ID and set-group-ID bits; setuid = false ([modules.nested] at /p.toml:7:1)",
                    "decided (before the filesystem): allow: rsync as a receiver in module 'nested' (host:path)",
                ],
            ),
        ];
        let mut failures = Vec::new();
        for (client, conn, server, cmd, want) in table {
            let got = traced(&p, client, *conn, *server, cmd);
            if got != *want {
                failures.push(format!(
                    "{client} {cmd}:\n  got:\n    {}\n  want:\n    {}",
                    got.join("\n    "),
                    want.join("\n    ")
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// Every traced decision is the decision: over the decision's own
    /// unit commands, each client and connection.
    #[test]
    fn tracing_changes_no_decision() {
        let p = policy();
        let commands = [
            "true",
            "",
            "id",
            "sync:all",
            "rsync --server --daemon .",
            "rsync --server --sender -logDtpre.iLsfxCIvu . www/",
            "rsync --server -logDtpre.iLsfxCIvu . www/",
            "rsync --server -logDtpre.iLsfxCIvu --delete . backup/x/",
            "rsync --server -logDtpre.iLsfxCIvu --delete . drop/",
            "rsync --server -rlt . drop/",
            "rsync --server -rltcy . handin/",
            "rsync --server --sender -r --files-from=list . drop/",
            "rsync --server --sender -r --remove-source-files . www/",
            "rsync --server -r --link-dest=/srv/backup/p --partial-dir=.p . backup/c/",
            "rsync --server --sender -rR . www/a/./b /srv/www/c",
            "rsync --server --sender -r . www/ backup/",
            "rsync --server -rL . links/",
            "rsync --server --sender -r . /etc/passwd",
        ];
        let clients = [
            "c", "fenced", "rooty", "trig", "upstream", "nobody", "dropper",
        ];
        let conns = [
            None,
            Some("192.0.2.10"),
            Some("192.0.2.50"),
            Some("10.0.0.1"),
        ];
        let servers = [
            CAPS,
            Server {
                caps: RsyncCaps::default(),
                sandbox: false,
            },
        ];
        for cmd in commands {
            for client in clients {
                for conn in conns {
                    for server in servers {
                        // traced() asserts the two decisions are equal.
                        let steps = traced(&p, client, conn, server, cmd);
                        assert!(
                            steps.last().is_some_and(|s| s.starts_with("decided")),
                            "{cmd}: {steps:?}"
                        );
                    }
                }
            }
        }
    }

    /// With the policy's key positions, each value names the key that sets
    /// it, or says it is the default; list entries name themselves.
    #[test]
    fn keys_refine_table_origins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, POLICY).unwrap();
        let p = policy::load_text(&path, POLICY).unwrap();
        let ctx = Context {
            policy: &p,
            client: "fenced",
            conn: Some(Conn {
                addr: "2001:db8::1".parse().unwrap(),
                port: 1,
            }),
            server: CAPS,
        };
        let req = parse_command(b"rsync --server -rte.iLsfxCIvu --delete . backup/");
        let mut steps = Vec::new();
        decide_traced(&ctx, req.as_ref(), &mut steps);
        locate_keys(&mut steps, &KeyOrigins::read(&p));
        let f = path.display();
        let text: Vec<String> = steps.iter().map(Step::text).collect();
        for want in [
            format!("source 2001:db8::1 matches from entry 2001:db8::/32 ({f}:48:23)"),
            format!(
                "module 'backup' (path /srv/backup; [modules.backup] at {f}:12:1) is granted by the client's modules ({f}:47:19)"
            ),
            format!(
                "push (rsync receives) in module 'backup': allowed by read_only = false at {f}:14:1"
            ),
            format!(
                "option --delete (row delete, rule delete): allowed by delete = true at {f}:15:1"
            ),
            format!(
                "adds --drop-D: no device or special files are created; devices = false, the default ([modules.backup] at {f}:12:1)"
            ),
        ] {
            assert!(text.contains(&want), "{want}\nnot in\n{}", text.join("\n"));
        }
        // The JSON form: typed fields, origins as file:line:col.
        let j = serde_json::to_value(&steps).unwrap();
        let delete = j
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == "option" && s["row"] == "delete")
            .unwrap();
        assert_eq!(delete["allowed"], true);
        assert_eq!(delete["knob"]["key"], "delete");
        assert_eq!(delete["knob"]["at"]["key"], format!("{f}:15:1"));
        assert_eq!(j.as_array().unwrap().last().unwrap()["step"], "decision");
    }
}
