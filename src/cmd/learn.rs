//! `rsync-gate learn`: a candidate policy from what `learn = true` clients
//! did, for an administrator to review. It reads the audit log and prints
//! TOML; it writes nothing and grants nothing by itself.
//!
//! Learn clients are decided like any other (the policy alone decides);
//! their decision records note what each request asked for. This command
//! widens a copy of the policy only as far as those requests need: it
//! replays each recorded request through the gate's own decision against
//! the copy, and for each refusal a policy setting can lift (a module not
//! granted or not defined, `read_only`, `write_only`, `delete`,
//! `overwrite`, `follow_links`, `devices`, an address outside `from`) it
//! changes that one setting, then replays again, until every request is
//! allowed or refused for a reason no setting lifts (those are listed).
//! What it prints are the tables that changed, whole, to replace the
//! policy's tables of the same names.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context as _, Result};
use toml::{Table, Value};

use crate::audit::review::{self, Filter, Lines};
use crate::audit::{Event, Mode, Record, Verdict};
use crate::decide::{self, Conn, Context, Decision, RsyncCaps, Server};
use crate::deny::DenyReason;
use crate::policy::{self, Policy};
use crate::request::{self, ParseError, Request};

/// The path new modules get until the administrator names their directory.
pub const PLACEHOLDER: &str = "/CHANGE/ME";

/// What to learn from.
#[derive(Debug, Clone)]
pub struct Options {
    /// The logs (default: the policy's `audit_log`).
    pub logs: Vec<PathBuf>,
    pub policy: PathBuf,
    pub client: Option<String>,
    pub since: Option<String>,
}

/// Most rounds of replaying: each lifts at least one refusal, and a
/// request meets at most a few rules a setting governs.
const ROUNDS: usize = 32;

pub fn run(o: Options, out: &mut impl Write, err: &mut impl Write) -> Result<u8> {
    let policy = policy::load(&o.policy, &policy::PlainReader).map_err(|e| {
        let lines: Vec<String> = e.0.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("invalid policy:\n{}", lines.join("\n"))
    })?;
    let since = o
        .since
        .as_deref()
        .map(|s| review::parse_when(s, SystemTime::now()))
        .transpose()
        .map_err(|e| anyhow::anyhow!("--since: {e}"))?;
    let filter = Filter {
        client: o.client.clone(),
        since,
        ..Default::default()
    };
    let mut logs = o.logs;
    if logs.is_empty() {
        logs.push(policy.gate.audit_log.clone());
    }
    let mut per_log = Vec::new();
    let mut bad = 0;
    for log in &logs {
        let cannot = || format!("cannot read {}", log.display());
        let mut lines = Lines::default();
        lines
            .read_all(review::open(log).with_context(cannot)?, &filter)
            .with_context(cannot)?;
        bad += lines.bad;
        per_log.push(lines.records);
    }
    if bad > 0 {
        let _ = writeln!(err, "rsync-gate: {bad} unreadable line(s) skipped");
    }
    let records: Vec<Record> = review::merge(per_log)
        .into_iter()
        .filter(|r| r.event == Event::Decision && r.learn.is_some())
        .collect();
    let texts = policy_texts(&policy)?;
    let p = propose(&policy, &texts, &records)?;
    write!(out, "{}", p.render(&logs, &policy))?;
    out.flush()?;
    Ok(if records.is_empty() { 1 } else { 0 })
}

/// The policy's files as TOML tables (main file first).
fn policy_texts(policy: &Policy) -> Result<Vec<(PathBuf, Table)>> {
    policy
        .files
        .iter()
        .map(|f| {
            let text =
                policy::read_bounded(f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
            let t: Table = toml::from_str(&text).with_context(|| format!("{}", f.display()))?;
            Ok((f.clone(), t))
        })
        .collect()
}

/// The policy as one document: `[gate]` without `include` (the drop-ins'
/// tables are in it already), every file's modules, clients and triggers.
fn one_document(texts: &[(PathBuf, Table)]) -> Table {
    let mut doc = Table::new();
    for (i, (_, t)) in texts.iter().enumerate() {
        for (section, v) in t {
            match (section.as_str(), v) {
                ("gate", Value::Table(g)) if i == 0 => {
                    let mut g = g.clone();
                    g.remove("include");
                    doc.insert("gate".into(), Value::Table(g));
                }
                ("modules" | "clients" | "triggers", Value::Table(items)) => {
                    let Value::Table(into) = doc
                        .entry(section.clone())
                        .or_insert_with(|| Value::Table(Table::new()))
                    else {
                        continue;
                    };
                    for (k, v) in items {
                        into.insert(k.clone(), v.clone());
                    }
                }
                _ => {}
            }
        }
    }
    doc
}

/// A table of the document (`modules.NAME`), made if missing.
fn table_mut<'a>(doc: &'a mut Table, section: &str, name: &str) -> Option<&'a mut Table> {
    let Value::Table(s) = doc
        .entry(section.to_string())
        .or_insert_with(|| Value::Table(Table::new()))
    else {
        return None;
    };
    match s
        .entry(name.to_string())
        .or_insert_with(|| Value::Table(Table::new()))
    {
        Value::Table(t) => Some(t),
        _ => None,
    }
}

fn table<'a>(doc: &'a Table, section: &str, name: &str) -> Option<&'a Table> {
    match doc.get(section)? {
        Value::Table(s) => match s.get(name)? {
            Value::Table(t) => Some(t),
            _ => None,
        },
        _ => None,
    }
}

/// One recorded request, ready to replay.
#[derive(Debug)]
struct Item<'r> {
    record: &'r Record,
    /// The request as the gate parsed it, when the record holds it exactly
    /// (an escaped command, or `-s` arguments, cannot be replayed).
    request: Option<Result<Request, ParseError>>,
    conn: Option<Conn>,
}

/// What the requests used of a module.
#[derive(Debug, Default)]
struct ModuleUse {
    pulls: usize,
    pushes: usize,
    /// Named in a `host::` request rsync's daemon refused (no direction).
    named: usize,
    options: BTreeSet<String>,
    paths: BTreeSet<String>,
    clients: BTreeSet<String>,
}

/// What a client did.
#[derive(Debug, Default)]
struct ClientUse {
    requests: usize,
    refused: usize,
    addrs: BTreeSet<String>,
    /// Some request had no source address.
    addressless: bool,
}

/// The candidate, and why it differs from the policy.
#[derive(Debug)]
pub struct Proposal {
    original: Table,
    doc: Table,
    /// Why each table changed: (section, name) → lines.
    why: BTreeMap<(String, String), Vec<String>>,
    modules: BTreeMap<String, ModuleUse>,
    clients: BTreeMap<String, ClientUse>,
    /// Requests no setting allows: a line each, with a count.
    not_proposable: BTreeMap<String, usize>,
    records: usize,
    refusals: usize,
    replayed: usize,
    /// The policy's grants: module → the clients it is granted to.
    granted_to: BTreeMap<String, Vec<String>>,
    /// The request each table's last note named.
    last_example: BTreeMap<(String, String), String>,
}

/// An example of a request, for a comment.
fn example(r: &Record) -> String {
    let what = match (&r.request, &r.command) {
        (Some(req), _) if r.mode == Some(Mode::Daemon) => {
            format!("host::{req} (refused by rsync's daemon)")
        }
        (Some(_), _) => format!("host:: request {}", r.argv.join(" ")),
        (None, Some(c)) => c.clone(),
        (None, None) => "-".into(),
    };
    let cut: String = what.chars().take(160).collect();
    let cut = if cut.len() < what.len() {
        format!("{cut}...")
    } else {
        cut
    };
    format!("{} {}: {cut}", r.time, r.client)
}

/// The request a record holds exactly, if it does.
fn replayable(r: &Record) -> Option<Result<Request, ParseError>> {
    let exact = |s: &str| !s.contains('\\');
    match (&r.request, &r.command) {
        // An in-band request of a host:: session: rsync's arguments.
        (Some(_), _) if matches!(r.mode, Some(Mode::Sender | Mode::Receiver)) => {
            let module = r.modules.first()?;
            if !r.argv.iter().all(|a| exact(a)) || r.argv_omitted.is_some() {
                return None;
            }
            let argv: Vec<Vec<u8>> = r.argv.iter().map(|a| a.as_bytes().to_vec()).collect();
            Some(request::inband::parse(module, &argv).map(Request::InBand))
        }
        (Some(_), _) => None,
        (None, Some(c)) if exact(c) && !c.contains(" <stdin: ") => {
            Some(request::parse_command(c.as_bytes()))
        }
        _ => None,
    }
}

fn conn_of(r: &Record) -> Option<Conn> {
    let s = r.source.as_ref()?;
    Some(Conn {
        addr: s.addr.parse().ok()?,
        port: s.port,
    })
}

/// What the server can hold at its best: refusals for want of rsync's
/// options or the sandbox are not the policy's to lift.
const SERVER: Server = Server {
    caps: RsyncCaps {
        confine_root: true,
        drop_d: true,
    },
    sandbox: true,
};

/// Widen a copy of the policy until the recorded requests are allowed (or
/// refused for reasons no setting lifts).
pub fn propose(
    policy: &Policy,
    texts: &[(PathBuf, Table)],
    records: &[Record],
) -> Result<Proposal> {
    let original = one_document(texts);
    let mut p = Proposal {
        doc: original.clone(),
        original,
        why: BTreeMap::new(),
        modules: BTreeMap::new(),
        clients: BTreeMap::new(),
        not_proposable: BTreeMap::new(),
        records: records.len(),
        refusals: 0,
        replayed: 0,
        granted_to: BTreeMap::new(),
        last_example: BTreeMap::new(),
    };
    for c in policy.clients.values() {
        for m in &c.modules {
            p.granted_to
                .entry(m.clone())
                .or_default()
                .push(c.name.clone());
        }
    }
    let mut items = Vec::new();
    for r in records {
        let c = p.clients.entry(r.client.clone()).or_default();
        c.requests += 1;
        match &r.source {
            Some(s) => {
                c.addrs.insert(s.addr.clone());
            }
            None => c.addressless = true,
        }
        if r.decision == Some(Verdict::Deny) {
            c.refused += 1;
            p.refusals += 1;
        }
        if let Some(l) = &r.learn {
            for m in &l.modules {
                let u = p.modules.entry(m.clone()).or_default();
                match r.mode {
                    Some(Mode::Sender) => u.pulls += 1,
                    Some(Mode::Receiver) => u.pushes += 1,
                    _ => u.named += 1,
                }
                // Options refused whatever the policy are listed with
                // the requests no setting allows.
                u.options.extend(
                    l.options
                        .iter()
                        .filter(|o| {
                            crate::request::options::by_long(o).is_none_or(|spec| {
                                !matches!(
                                    spec.rule,
                                    crate::request::options::Rule::Refuse(_)
                                        | crate::request::options::Rule::Secluded
                                )
                            })
                        })
                        .cloned(),
                );
                u.paths.extend(l.paths.iter().take(8).cloned());
                u.clients.insert(r.client.clone());
            }
        }
        // Requests refused for what the decision alone cannot see again
        // (a path leading out of its module, a file that is not there, the
        // server's state) are not replayed: nothing is lifted for them.
        let liftable = match (&r.decision, &r.reason) {
            (Some(Verdict::Deny), Some(reason)) => LIFTABLE.contains(&reason.code.as_str()),
            (Some(Verdict::Deny), None) => false,
            _ => true,
        };
        let request = replayable(r).filter(|_| liftable);
        if request.is_some() {
            p.replayed += 1;
        }
        items.push(Item {
            record: r,
            request,
            conn: conn_of(r),
        });
    }
    // A client the policy lets in from anywhere: the addresses it came
    // from (narrower; every recorded request still comes from one).
    for (client, u) in &p.clients {
        let Some(t) = table_mut(&mut p.doc, "clients", client) else {
            continue;
        };
        if t.contains_key("from") || u.addressless || u.addrs.is_empty() {
            continue;
        }
        t.insert(
            "from".into(),
            Value::Array(u.addrs.iter().cloned().map(Value::String).collect()),
        );
    }
    let mut final_refusals = Vec::new();
    for round in 0..=ROUNDS {
        let candidate = p.candidate()?;
        let mut lifted = false;
        final_refusals.clear();
        for it in &items {
            let Some(req) = &it.request else {
                // A request that cannot be replayed: what its recorded
                // refusal names is lifted, once (in the log's order).
                if round == 0
                    && it.record.decision == Some(Verdict::Deny)
                    && let Some(reason) = recorded_reason(it.record)
                {
                    lifted |= p.lift(policy, it.record, &reason);
                }
                continue;
            };
            let ctx = Context {
                policy: &candidate,
                client: &it.record.client,
                conn: it.conn,
                server: SERVER,
            };
            if let Decision::Deny(reason) = decide::decide(&ctx, req.as_ref()) {
                if round < ROUNDS && p.lift(policy, it.record, &reason) {
                    lifted = true;
                } else {
                    final_refusals.push((it.record, reason));
                }
            }
        }
        if !lifted {
            break;
        }
    }
    for (r, reason) in final_refusals {
        *p.not_proposable
            .entry(format!(
                "{}: {}: {} (e.g. {})",
                r.client,
                reason.code(),
                reason,
                example(r)
            ))
            .or_default() += 1;
    }
    for it in items.iter().filter(|i| i.request.is_none()) {
        let r = it.record;
        if r.decision != Some(Verdict::Deny) {
            continue;
        }
        let fixable = replayable(r).is_none() && recorded_reason(r).is_some();
        if !fixable {
            let reason = r.reason.as_ref();
            *p.not_proposable
                .entry(format!(
                    "{}: {}: {} (e.g. {})",
                    r.client,
                    reason.map_or("-", |x| x.code.as_str()),
                    reason.map_or("", |x| x.message.as_str()),
                    example(r)
                ))
                .or_default() += 1;
        }
    }
    Ok(p)
}

/// Refusal codes a policy setting can lift.
const LIFTABLE: &[&str] = &[
    "module_not_available",
    "read_only",
    "write_only",
    "option_not_permitted",
    "source_not_allowed",
    "no_modules",
    "outside_modules",
];

/// A recorded refusal a setting can lift, as the decision's reason (for
/// requests that cannot be replayed).
fn recorded_reason(r: &Record) -> Option<DenyReason> {
    let reason = r.reason.as_ref()?;
    let module = r.modules.first().cloned().unwrap_or_default();
    Some(match reason.code.as_str() {
        "module_not_available" => DenyReason::ModuleNotAvailable(
            r.learn.as_ref()?.modules.first().cloned().unwrap_or(module),
        ),
        "read_only" => DenyReason::ReadOnly(module),
        "write_only" => DenyReason::WriteOnly(module),
        "source_not_allowed" => DenyReason::SourceNotAllowed(r.source.as_ref()?.addr.clone()),
        "option_not_permitted" => {
            let knob = [
                "delete = false",
                "overwrite = false",
                "follow_links = false",
                "devices = false",
                "read_only = true",
                "write_only = true",
            ]
            .into_iter()
            .find(|k| reason.message.contains(&format!("({k}")))?;
            DenyReason::OptionNotPermitted {
                option: String::new(),
                module,
                knob,
            }
        }
        _ => return None,
    })
}

impl Proposal {
    /// The candidate as the gate would load it.
    fn candidate(&self) -> Result<Policy> {
        let text = toml::to_string(&self.doc).context("writing the candidate policy")?;
        policy::load_text(Path::new("/rsync-gate-learn/candidate.toml"), &text).map_err(|e| {
            let lines: Vec<String> = e.0.iter().map(ToString::to_string).collect();
            anyhow::anyhow!(
                "the candidate policy does not load (this is a bug):\n{}",
                lines.join("\n")
            )
        })
    }

    /// Say why a table changed, with the request that needed it (named
    /// once when several changes of a table come from the same one).
    fn note(&mut self, section: &str, name: &str, line: String, r: Option<&Record>) {
        let at = (section.to_string(), name.to_string());
        let line = match r.map(example) {
            Some(e) if self.last_example.get(&at) == Some(&e) => {
                format!("{line} (the same request)")
            }
            Some(e) => {
                self.last_example.insert(at.clone(), e.clone());
                format!("{line}, e.g. {e}")
            }
            None => line,
        };
        let v = self.why.entry(at).or_default();
        if !v.contains(&line) {
            v.push(line);
        }
    }

    /// Set `key` of `modules.NAME`; false when it is so already (set, or
    /// by default).
    fn set(&mut self, module: &str, key: &str, value: bool, r: &Record, why: &str) -> bool {
        let Some(t) = table_mut(&mut self.doc, "modules", module) else {
            return false;
        };
        let default = matches!(key, "read_only" | "overwrite");
        if t.get(key).and_then(Value::as_bool).unwrap_or(default) == value {
            return false;
        }
        let value = Value::Boolean(value);
        t.insert(key.to_string(), value.clone());
        self.note(
            "modules",
            module,
            format!("{key} = {value}: {why}"),
            Some(r),
        );
        let others: Vec<String> = self
            .granted_to
            .get(module)
            .into_iter()
            .flatten()
            .filter(|c| **c != r.client)
            .cloned()
            .collect();
        if !others.is_empty() {
            self.note(
                "modules",
                module,
                format!(
                    "WARNING: this widens the module for the other clients granted it too: {}",
                    others.join(", ")
                ),
                None,
            );
        }
        true
    }

    /// Grant the client module `name` (defining it when the policy has
    /// none of that name).
    fn grant(&mut self, policy: &Policy, client: &str, name: &str, r: &Record) -> bool {
        if !policy::valid_name(name) || name.eq_ignore_ascii_case("global") {
            return false;
        }
        let exists = table(&self.doc, "modules", name).is_some();
        if !exists {
            let Some(t) = table_mut(&mut self.doc, "modules", name) else {
                return false;
            };
            t.insert("path".into(), Value::String(PLACEHOLDER.into()));
            self.note(
                "modules",
                name,
                format!("new: the policy has no module '{name}'; set path to its directory"),
                Some(r),
            );
        }
        let Some(c) = table_mut(&mut self.doc, "clients", client) else {
            return false;
        };
        let list = c
            .entry("modules")
            .or_insert_with(|| Value::Array(Vec::new()));
        let Value::Array(list) = list else {
            return false;
        };
        let v = Value::String(name.to_string());
        if list.contains(&v) {
            return !exists;
        }
        list.push(v);
        let shared: Vec<&String> = policy
            .clients
            .values()
            .filter(|c| c.name != client && c.modules.iter().any(|m| m == name))
            .map(|c| &c.name)
            .collect();
        let mut line = format!("modules += '{name}'");
        if !shared.is_empty() && exists {
            line.push_str(&format!(
                " (also granted to {})",
                shared
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        self.note("clients", client, line, Some(r));
        true
    }

    /// Change the one setting that refused `reason`; false when none can.
    fn lift(&mut self, policy: &Policy, r: &Record, reason: &DenyReason) -> bool {
        let client = r.client.as_str();
        match reason {
            DenyReason::ModuleNotAvailable(name) => self.grant(policy, client, name, r),
            DenyReason::NoModules | DenyReason::OutsideModules(_) => {
                let names: Vec<String> = r.learn.iter().flat_map(|l| l.modules.clone()).collect();
                let mut any = false;
                for n in names {
                    any |= self.grant(policy, client, &n, r);
                }
                any
            }
            DenyReason::ReadOnly(m) => self.set(
                m,
                "read_only",
                false,
                r,
                "a push into it was refused (read_only)",
            ),
            DenyReason::WriteOnly(m) => self.set(
                m,
                "write_only",
                false,
                r,
                "a pull from it was refused (write_only)",
            ),
            DenyReason::OptionNotPermitted { module, knob, .. } => {
                let why = format!("refused by {knob}");
                if knob.starts_with("delete = false") {
                    // delete = true needs a writable module (a pull with
                    // --remove-source-files deletes too) and contradicts
                    // overwrite = false.
                    let a = self.set(module, "delete", true, r, &why);
                    let b = self.set(module, "read_only", false, r, "delete = true needs it");
                    let c = self.set(module, "overwrite", true, r, "delete = true needs it");
                    a || b || c
                } else if knob.starts_with("overwrite = false") {
                    self.set(module, "overwrite", true, r, &why)
                } else if knob.starts_with("follow_links = false") {
                    self.set(module, "follow_links", true, r, &why)
                } else if knob.starts_with("devices = false") {
                    self.set(module, "devices", true, r, &why)
                } else if knob.starts_with("read_only = true") {
                    self.set(module, "read_only", false, r, &why)
                } else if knob.starts_with("write_only = true") {
                    self.set(module, "write_only", false, r, &why)
                } else {
                    false
                }
            }
            DenyReason::SourceNotAllowed(addr) => {
                let Some(c) = table_mut(&mut self.doc, "clients", client) else {
                    return false;
                };
                let Value::Array(from) =
                    c.entry("from").or_insert_with(|| Value::Array(Vec::new()))
                else {
                    return false;
                };
                let v = Value::String(addr.clone());
                if from.contains(&v) {
                    return false;
                }
                from.push(v);
                self.note(
                    "clients",
                    client,
                    format!("from += \"{addr}\": a connection from it was refused"),
                    Some(r),
                );
                true
            }
            _ => false,
        }
    }

    /// The proposal as TOML with comments.
    pub fn render(&self, logs: &[PathBuf], policy: &Policy) -> String {
        let mut s = String::new();
        let logs: Vec<String> = logs.iter().map(|l| l.display().to_string()).collect();
        push_comment(
            &mut s,
            &format!(
                "Proposed by `rsync-gate learn` from {}: {} decision record(s) of learn \
                 clients, {} of them refusals ({} replayed through the gate's decision).",
                logs.join(", "),
                self.records,
                self.refusals,
                self.replayed
            ),
            "# ",
        );
        push_comment(
            &mut s,
            &format!(
                "Nothing was written, and nothing is granted until you put it in the \
                 policy. It grants only what those requests needed. Review it; set the \
                 path of every new module (path = \"{PLACEHOLDER}\"); replace the policy's \
                 tables of the same names with these (a drop-in cannot redefine a table); \
                 then run `rsync-gate check`."
            ),
            "# ",
        );
        if self.records == 0 {
            s.push_str("#\n# No decision records of learn clients (learn = true) matched.\n");
            return s;
        }
        if !self.not_proposable.is_empty() {
            s.push_str("#\n# Not proposable (no setting allows these; the clients must change):\n");
            for (line, n) in &self.not_proposable {
                let times = if *n > 1 {
                    format!(" [{n} times]")
                } else {
                    String::new()
                };
                push_comment(&mut s, &format!("- {line}{times}"), "#   ");
            }
        }
        let unchanged: Vec<&String> = self
            .modules
            .keys()
            .filter(|m| {
                table(&self.doc, "modules", m).is_some()
                    && table(&self.doc, "modules", m) == table(&self.original, "modules", m)
            })
            .collect();
        if !unchanged.is_empty() {
            s.push_str(&format!(
                "#\n# Used as they are (no change needed): {}\n",
                unchanged
                    .iter()
                    .map(|m| format!("[modules.{m}]"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        // Modules that changed or are new.
        let modules: BTreeSet<&String> = self
            .why
            .keys()
            .filter(|(sec, _)| sec == "modules")
            .map(|(_, n)| n)
            .collect();
        for name in modules {
            let Some(t) = table(&self.doc, "modules", name) else {
                continue;
            };
            s.push('\n');
            s.push_str(&format!("[modules.{}]\n", key(name)));
            if let Some(m) = policy.modules.get(name.as_str()) {
                push_comment(
                    &mut s,
                    &format!(
                        "defined at {}; the lines marked + are what the requests needed",
                        m.origin
                    ),
                    "#   ",
                );
            }
            for line in self
                .why
                .get(&("modules".to_string(), name.clone()))
                .into_iter()
                .flatten()
            {
                push_comment(&mut s, &format!("+ {line}"), "#   ");
            }
            if let Some(u) = self.modules.get(name.as_str()) {
                self.use_comments(&mut s, name, u, t);
            }
            write_table(&mut s, t, &["path"]);
        }
        for (client, u) in &self.clients {
            let Some(t) = table(&self.doc, "clients", client) else {
                continue;
            };
            s.push('\n');
            s.push_str(&format!("[clients.{}]\n", key(client)));
            if let Some(c) = policy.clients.get(client.as_str()) {
                s.push_str(&format!("# defined at {}\n", c.origin));
            }
            s.push_str(&format!(
                "# {} request(s), {} refused, from {}\n",
                u.requests,
                u.refused,
                if u.addrs.is_empty() {
                    "an unknown address".to_string()
                } else {
                    u.addrs.iter().cloned().collect::<Vec<_>>().join(", ")
                }
            ));
            for line in self
                .why
                .get(&("clients".to_string(), client.clone()))
                .into_iter()
                .flatten()
            {
                push_comment(&mut s, &format!("+ {line}"), "#   ");
            }
            let had_from =
                table(&self.original, "clients", client).is_some_and(|o| o.contains_key("from"));
            if !had_from && t.contains_key("from") {
                s.push_str(
                    "# + from: the addresses these requests came from (the policy had none: any\n\
                     #   address); widen it if the client moves\n",
                );
            }
            if let Some(Value::Array(granted)) = t.get("modules") {
                let unused: Vec<String> = granted
                    .iter()
                    .filter_map(Value::as_str)
                    .filter(|m| {
                        self.modules
                            .get(*m)
                            .is_none_or(|u| !u.clients.contains(client))
                    })
                    .map(str::to_string)
                    .collect();
                if !unused.is_empty() {
                    s.push_str(&format!(
                        "# not used in these records: {} (remove if it never is)\n",
                        unused.join(", ")
                    ));
                }
            }
            if t.get("learn") == Some(&Value::Boolean(true)) {
                s.push_str(
                    "# learn = true: keep it to go on recording; remove it once the policy is settled\n",
                );
            }
            write_table(&mut s, t, &["modules", "from"]);
        }
        s
    }

    /// Comments on what the requests used of a module, and narrower
    /// settings that would still allow them.
    fn use_comments(&self, s: &mut String, name: &str, u: &ModuleUse, t: &Table) {
        s.push_str(&format!(
            "# {} pull(s), {} push(es){}; by {}\n",
            u.pulls,
            u.pushes,
            if u.named > 0 {
                format!(
                    ", {} host:: request(s) refused before saying which way",
                    u.named
                )
            } else {
                String::new()
            },
            u.clients.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
        if !u.options.is_empty() {
            push_comment(
                s,
                &format!(
                    "options used: {}",
                    u.options.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
                "#   ",
            );
        }
        if !u.paths.is_empty() {
            push_comment(
                s,
                &format!(
                    "paths seen: {}",
                    u.paths.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
                "#   ",
            );
        }
        let writable = t.get("read_only") == Some(&Value::Boolean(false));
        let flag = |k: &str| t.get(k).and_then(Value::as_bool);
        // Only where a drop box would still take every option used.
        let harmless = u.options.iter().all(|o| {
            crate::request::options::by_long(o).is_none_or(|spec| {
                matches!(
                    spec.write_only,
                    crate::request::options::WriteOnly::Harmless
                        | crate::request::options::WriteOnly::SkipDetail(_)
                )
            })
        });
        if writable && harmless && u.pulls == 0 && u.named == 0 && flag("write_only") != Some(true)
        {
            s.push_str(
                "# suggestion: no pulls seen; write_only = true would make it a drop box (uploads only)\n",
            );
        }
        let replaces = u.options.iter().any(|o| {
            crate::request::options::by_long(o).is_some_and(|spec| {
                matches!(
                    spec.rule,
                    crate::request::options::Rule::Delete | crate::request::options::Rule::Replaces
                )
            })
        });
        if writable && u.pushes > 0 && !replaces && flag("overwrite") != Some(false) {
            s.push_str(&format!(
                "# suggestion: no option used needs overwrite = true; overwrite = false would keep\n\
                 #   existing files in '{name}' (the gate adds --ignore-existing), but re-sent files\n\
                 #   that changed would then not be updated\n"
            ));
        }
    }
}

/// A TOML key: bare where it can be.
fn key(name: &str) -> String {
    if !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        name.to_string()
    } else {
        Value::String(name.to_string()).to_string()
    }
}

/// A table's keys, `first` ones first, as `key = value` lines.
fn write_table(s: &mut String, t: &Table, first: &[&str]) {
    let mut keys: Vec<&String> = t.keys().collect();
    keys.sort_by_key(|k| (first.iter().position(|f| f == k).unwrap_or(first.len()), *k));
    for k in keys {
        if let Some(v) = t.get(k) {
            s.push_str(&format!("{} = {v}\n", key(k)));
        }
    }
}

/// A comment, wrapped at about 78 columns (continuation lines `indent`).
fn push_comment(s: &mut String, text: &str, indent: &str) {
    let mut line = String::from("# ");
    for word in text.split(' ') {
        if line.len() + word.len() + 1 > 78 && line.len() > indent.len() {
            s.push_str(line.trim_end());
            s.push('\n');
            line = indent.to_string();
        }
        line.push_str(word);
        line.push(' ');
    }
    s.push_str(line.trim_end());
    s.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Learned, Reason, Source};

    const POLICY: &str = r#"
[modules.www]
path = "/srv/www"

[modules.up]
path = "/srv/up"
read_only = false

[clients.c]
modules = ["www"]
from = ["192.0.2.0/24"]
learn = true

[clients.d]
modules = ["www", "up"]
"#;

    fn record(addr: &str, command: Option<&str>, mode: Mode, code: Option<&str>) -> Record {
        Record {
            time: "2026-12-01T10:00:00.000Z".into(),
            event: Event::Decision,
            client: "c".into(),
            source: Some(Source {
                addr: addr.into(),
                port: 1,
            }),
            command: command.map(str::to_string),
            decision: Some(if code.is_some() {
                Verdict::Deny
            } else {
                Verdict::Allow
            }),
            reason: code.map(|c| Reason {
                code: c.into(),
                message: String::new(),
                detail: None,
            }),
            mode: Some(mode),
            learn: Some(Learned::default()),
            ..Default::default()
        }
    }

    /// The policy key: a bool; a learn client needs neither modules nor a
    /// trigger (all its rsync requests are then refused, and recorded).
    #[test]
    fn the_learn_key() {
        let path = Path::new("/p.toml");
        let p = policy::load_text(path, "[clients.new]\nlearn = true\n").unwrap();
        assert!(p.clients["new"].learn && p.clients["new"].modules.is_empty());
        assert!(!policy::load_text(path, POLICY).unwrap().clients["d"].learn);
        let e = policy::load_text(path, "[clients.new]\nlearn = \"yes\"\n").unwrap_err();
        assert!(e.to_string().starts_with("/p.toml:2:9: "), "{e}");
        let e = policy::load_text(path, "[clients.new]\nlearn = false\n").unwrap_err();
        assert!(
            e.to_string().contains("has neither modules nor a trigger"),
            "{e}"
        );
    }

    #[test]
    fn each_refusal_lifts_one_setting_until_the_requests_are_allowed() {
        let path = Path::new("/p.toml");
        let policy = policy::load_text(path, POLICY).unwrap();
        let texts = vec![(path.to_path_buf(), toml::from_str(POLICY).unwrap())];
        let mut daemon = record(
            "192.0.2.9",
            None,
            Mode::Daemon,
            Some("module_not_available"),
        );
        daemon.request = Some("newmod".into());
        daemon.learn = Some(Learned {
            modules: vec!["newmod".into()],
            ..Default::default()
        });
        let records = vec![
            record(
                "192.0.2.9",
                Some("rsync --server --sender -r --remove-source-files . www/x"),
                Mode::Sender,
                Some("option_not_permitted"),
            ),
            record(
                "192.0.2.9",
                Some("rsync --server -r . up/x/"),
                Mode::Receiver,
                Some("module_not_available"),
            ),
            record(
                "203.0.113.7",
                Some("rsync --server --sender -r . www/"),
                Mode::Sender,
                Some("source_not_allowed"),
            ),
            // Refused once resolved: nothing to lift, listed.
            record(
                "192.0.2.9",
                Some("rsync --server --sender -r . www/../../etc"),
                Mode::Sender,
                Some("escapes_module"),
            ),
            record(
                "192.0.2.9",
                Some("rsync --server --sender -r --rsh=x . www/"),
                Mode::Sender,
                Some("option_refused"),
            ),
            daemon,
            record(
                "192.0.2.9",
                Some("rsync --server --sender -r . www/"),
                Mode::Sender,
                None,
            ),
        ];
        let p = propose(&policy, &texts, &records).unwrap();
        let get = |section: &str, name: &str, key: &str| {
            table(&p.doc, section, name)
                .and_then(|t| t.get(key))
                .cloned()
        };
        // --remove-source-files on a pull: delete, which needs a writable
        // module.
        assert_eq!(get("modules", "www", "delete"), Some(Value::Boolean(true)));
        assert_eq!(
            get("modules", "www", "read_only"),
            Some(Value::Boolean(false))
        );
        // overwrite is true by default: not written.
        assert_eq!(get("modules", "www", "overwrite"), None);
        assert_eq!(
            get("clients", "c", "modules"),
            Some(Value::try_from(["www", "up", "newmod"]).unwrap())
        );
        assert_eq!(
            get("clients", "c", "from"),
            Some(Value::try_from(["192.0.2.0/24", "203.0.113.7"]).unwrap())
        );
        assert_eq!(
            get("modules", "newmod", "path"),
            Some(Value::String(PLACEHOLDER.into()))
        );
        // up was writable already, and d's tables are untouched.
        assert_eq!(
            table(&p.doc, "modules", "up"),
            table(&p.original, "modules", "up")
        );
        assert_eq!(
            table(&p.doc, "clients", "d"),
            table(&p.original, "clients", "d")
        );
        let listed: Vec<&String> = p.not_proposable.keys().collect();
        assert_eq!(listed.len(), 2, "{listed:#?}");
        assert!(listed.iter().any(|l| l.starts_with("c: escapes_module")));
        assert!(listed.iter().any(|l| l.starts_with("c: option_refused")));
        // The candidate allows every liftable request.
        let candidate = p.candidate().unwrap();
        for r in records.iter().filter(|r| {
            !matches!(
                r.reason.as_ref().map(|x| x.code.as_str()),
                Some("escapes_module" | "option_refused")
            )
        }) {
            let Some(req) = replayable(r) else { continue };
            let ctx = Context {
                policy: &candidate,
                client: "c",
                conn: conn_of(r),
                server: SERVER,
            };
            let d = decide::decide(&ctx, req.as_ref());
            assert!(!matches!(d, Decision::Deny(_)), "{:?}: {d:?}", r.command);
        }
        // The text: d is warned about, the candidate's tables are there.
        let text = p.render(&[PathBuf::from("/log")], &policy);
        let flat = text.replace("\n#   ", " ");
        assert!(
            flat.contains(
                "WARNING: this widens the module for the other clients granted it too: d"
            ),
            "{text}"
        );
        let parsed: Table = toml::from_str(&text).unwrap();
        assert!(parsed["modules"].get("up").is_none(), "{text}");
        assert!(parsed["clients"].get("d").is_none(), "{text}");
    }
}
