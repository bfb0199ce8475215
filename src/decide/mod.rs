//! The decision: a pure function of the policy, the client, the connection,
//! what the server side can enforce, and the parsed request. It maps every
//! path lexically onto a module, applies every policy rule, and returns a
//! typed [`Decision`]. It touches no filesystem: resolving symlinks and
//! pinning directories is the next stage ([`crate::confine`]), which can
//! only narrow a grant, never widen it.

mod locate;
pub mod trace;

pub use locate::{Comp, Target, Trailing, module_named};
pub use trace::{NoTrace, Step, Tracer};

use crate::deny::{DenyReason, shown};
use crate::policy::{Client, Module, Policy};
pub use crate::request::conn::Conn;
use crate::request::inband::InBand;
use crate::request::options::{self, Meaning, PathRole, Rule, Spec, Takes, Value, WriteOnly};
use crate::request::{Opt, OptValue, ParseError, Priority, Request, ServerArgs, Word};
use locate::{locate, locate_rel, parse_path};
use trace::{At, Knob, Stage};

/// What the installed rsync supports (probed once, see [`crate::host`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RsyncCaps {
    pub confine_root: bool,
    pub drop_d: bool,
}

/// What will confine rsync beyond its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Server {
    /// The installed rsync's options (`--confine-root`, `--drop-D`); they
    /// matter only where the gate writes rsync's argv (checked mode).
    pub caps: RsyncCaps,
    /// The kernel sandbox will be around rsync (the policy asks for it and
    /// the kernel has it, or, in a daemon hook, the session applied it).
    pub sandbox: bool,
}

/// Everything the decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub policy: &'a Policy,
    pub client: &'a str,
    pub conn: Option<Conn>,
    pub server: Server,
}

/// The outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// `true`: succeed without running anything.
    Probe,
    /// Run rsync as a checked server.
    Checked(Grant),
    /// Run rsync as a daemon over the SSH channel with these modules.
    Daemon(DaemonGrant),
    /// A daemon session's in-band request, which the daemon then runs.
    InBand(Grant),
    /// Start (or queue) a trigger's job.
    Trigger(TriggerGrant),
    /// Refuse.
    Deny(DenyReason),
}

/// A trigger request: the job, and the words that go with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerGrant {
    /// The trigger's name.
    pub trigger: String,
    /// Every word the client sent, as sent.
    pub words: Vec<Vec<u8>>,
    /// Whether the words are passed to the job (the trigger has an `args`
    /// allowlist, which each matched) or only recorded.
    pub passed: bool,
}

/// Daemon-over-SSH grant: the client's modules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonGrant {
    pub modules: Vec<String>,
    /// The lower priority the daemon runs at (a `nice`/`ionice` prefix).
    pub priority: Priority,
}

/// Which side rsync plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `--sender`: the client pulls.
    Sender,
    /// The client pushes.
    Receiver,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Sender => "sender",
            Mode::Receiver => "receiver",
        }
    }
}

/// How the positional paths of a pull are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sources {
    /// Each path is sent under its own name (its last component).
    Plain,
    /// `-R`: each path is sent under its whole name, or from its `/./` on.
    Relative,
    /// `--files-from`: the path is the base directory the listed names are
    /// taken from (rsync implies `-R` for the names, not for the base).
    FilesFromBase,
}

/// A checked-mode grant: what may run, before the filesystem is consulted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub module: String,
    pub mode: Mode,
    /// How pull sources are read.
    pub sources: Sources,
    /// The client's non-path options, in order, all allowed.
    pub opts: Vec<Opt>,
    /// Path-valued options.
    pub path_opts: Vec<PathOpt>,
    /// Positional paths.
    pub paths: Vec<Target>,
    /// Options the gate adds.
    pub added: Vec<Added>,
    /// Options the client sent that the gate leaves out of rsync's argv:
    /// receiver-side deletes on a pull (openrsync sends them; a sender has
    /// nothing to delete).
    pub dropped: Vec<&'static Spec>,
    /// The lower priority rsync runs at (a `nice`/`ionice` prefix).
    pub priority: Priority,
}

/// An option the gate adds to what the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// `--ignore-existing` (`overwrite = false`).
    IgnoreExisting,
    /// `--whole-file` (receivers, `write_only = true`): no checksums of
    /// existing files go to the client.
    WholeFile,
    /// `--drop-D` (receivers, `devices = false`).
    DropD,
    /// `--munge-links` (`munge_links = true`).
    MungeLinks,
    /// `--confine-root=<module root>`.
    ConfineRoot,
    /// `--chmod=ug-s` (pushes, `setuid = false`).
    NoSetuid,
    /// `--timeout=N` (the module's `timeout`, or the client's own when
    /// that is shorter; it replaces the client's).
    Timeout(u32),
}

impl Added {
    /// The option's name, a row of the option table.
    pub fn long(self) -> &'static str {
        match self {
            Added::IgnoreExisting => options::IGNORE_EXISTING,
            Added::WholeFile => options::WHOLE_FILE,
            Added::DropD => options::DROP_D,
            Added::MungeLinks => options::MUNGE_LINKS,
            Added::ConfineRoot => options::CONFINE_ROOT,
            Added::NoSetuid => options::CHMOD,
            Added::Timeout(_) => options::TIMEOUT,
        }
    }

    /// As rsync's argv will carry it (`--confine-root` with the module's
    /// root as the policy names it; the argv has the real one).
    fn long_shown(self, m: &Module) -> String {
        match self {
            Added::ConfineRoot => format!("--{}={}", self.long(), m.path.display()),
            Added::NoSetuid => format!("--{}={}", self.long(), options::STRIP_SETUID),
            Added::Timeout(n) => format!("--{}={n}", self.long()),
            _ => format!("--{}", self.long()),
        }
    }
}

/// A path-valued option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathOpt {
    pub spec: &'static Spec,
    pub role: PathRole,
    pub value: PathValue,
}

/// Where a path-valued option points, lexically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathValue {
    /// `--files-from=-`: the list comes over the connection.
    Stdin,
    /// A module path (`MODULE/x` for `--files-from`, or an absolute path).
    InModule(Target),
    /// Relative to the destination directory (`--link-dest=../prev`).
    DestRelative { spelled: Vec<u8>, comps: Vec<Comp> },
    /// A relative `--partial-dir`: a name inside each destination directory.
    PerDirectory(Vec<u8>),
    /// Accepted but not passed on (`--backup-dir` on a pull does nothing).
    Dropped,
}

/// Which policy knob refuses an option governed by `rule` in module `m`,
/// if one does. The decision and the generated daemon configs' `refuse
/// options` both ask this.
pub fn knob_refuses(m: &Module, rule: Rule) -> Option<&'static str> {
    match rule {
        Rule::Delete if !m.delete => Some("delete = false"),
        Rule::Delete | Rule::Replaces if !m.overwrite => Some("overwrite = false"),
        Rule::FollowLinks if !m.follow_links => Some("follow_links = false"),
        Rule::Devices if !m.devices => Some("devices = false"),
        _ => None,
    }
}

/// Why the option row `spec` is refused in module `m` because the client
/// may not read it (`write_only = true`), whatever its value, if it is. The
/// decision and the generated daemon configs' `refuse options` both ask
/// this; [`write_only_refuses`] also judges values.
pub fn write_only_refuses_row(m: &Module, spec: &Spec) -> Option<&'static str> {
    if m.readable() {
        return None;
    }
    match spec.write_only {
        WriteOnly::Reveals(why) => Some(why),
        WriteOnly::Compares(why) if m.overwrite => Some(why),
        WriteOnly::Harmless | WriteOnly::Compares(_) | WriteOnly::SkipDetail(_) => None,
    }
}

/// Why the option use `o` is refused in module `m` because the client may
/// not read it, if it is: its row ([`write_only_refuses_row`]), or its
/// value (`--info` asking for `SKIP2`).
pub fn write_only_refuses(m: &Module, o: &Opt) -> Option<&'static str> {
    if let Some(why) = write_only_refuses_row(m, o.spec) {
        return Some(why);
    }
    match (o.spec.write_only, &o.value) {
        (WriteOnly::SkipDetail(why), Some(OptValue::Text(v)))
            if !m.readable() && options::info_asks_skip_detail(v) =>
        {
            Some(why)
        }
        _ => None,
    }
}

/// Decide on a request.
pub fn decide(ctx: &Context<'_>, request: Result<&Request, &ParseError>) -> Decision {
    decide_with(ctx, request, &mut NoTrace)
}

/// [`decide`], recording every rule that applied, in order, and ending in
/// the decision ([`Step::Decision`]).
pub fn decide_traced(
    ctx: &Context<'_>,
    request: Result<&Request, &ParseError>,
    trace: &mut Vec<Step>,
) -> Decision {
    let d = decide_with(ctx, request, trace);
    trace.step(|| decided(Stage::Decide, &d));
    d
}

/// The decision, reporting the rules it applies to `t` (the one code path
/// of [`decide`] and [`decide_traced`]).
pub fn decide_with<T: Tracer>(
    ctx: &Context<'_>,
    request: Result<&Request, &ParseError>,
    t: &mut T,
) -> Decision {
    match decide_inner(ctx, request, t) {
        Ok(d) => d,
        Err(r) => Decision::Deny(r),
    }
}

/// The [`Step::Decision`] that says what a decision is.
pub fn decided(stage: Stage, d: &Decision) -> Step {
    let (allowed, code, summary) = match d {
        Decision::Probe => (
            true,
            None,
            "'true' succeeds without running anything".into(),
        ),
        Decision::Checked(g) => (
            true,
            None,
            format!(
                "rsync as a {} in module '{}' (host:path)",
                g.mode.name(),
                g.module
            ),
        ),
        Decision::Daemon(g) => (
            true,
            None,
            format!(
                "rsync's daemon over the SSH channel, offering {}",
                g.modules.join(", ")
            ),
        ),
        Decision::InBand(g) => (
            true,
            None,
            format!(
                "the daemon runs this request as a {} in module '{}'",
                g.mode.name(),
                g.module
            ),
        ),
        Decision::Trigger(g) => (true, None, format!("trigger '{}' fires", g.trigger)),
        Decision::Deny(r) => (false, Some(r.code().to_string()), r.to_string()),
    };
    Step::Decision {
        stage,
        allowed,
        code,
        summary,
    }
}

/// Check the client and its source address.
pub fn admit<'p>(ctx: &Context<'p>) -> Result<&'p Client, DenyReason> {
    admit_with(ctx, &mut NoTrace)
}

fn admit_with<'p, T: Tracer>(ctx: &Context<'p>, t: &mut T) -> Result<&'p Client, DenyReason> {
    let Some(client) = ctx.policy.clients.get(ctx.client) else {
        t.step(|| Step::ClientUnknown {
            client: shown(ctx.client.as_bytes()),
        });
        return Err(DenyReason::UnknownClient(shown(ctx.client.as_bytes())));
    };
    t.step(|| Step::ClientFound {
        client: client.name.clone(),
        learn: client.learn,
        at: client.origin.clone(),
    });
    let addr = || {
        ctx.conn
            .map(|c| crate::policy::net::canonical(c.addr).to_string())
    };
    if client.from.is_empty() {
        t.step(|| Step::SourceNotRestricted { addr: addr() });
        return Ok(client);
    }
    let refused = || Step::SourceRefused {
        addr: addr(),
        entries: client.from.iter().map(ToString::to_string).collect(),
        at: client.origin.clone(),
    };
    let Some(conn) = ctx.conn else {
        t.step(refused);
        return Err(DenyReason::NoSourceAddress);
    };
    match client.from.iter().position(|n| n.contains(conn.addr)) {
        Some(index) => {
            t.step(|| Step::SourceMatched {
                addr: addr().unwrap_or_default(),
                entry: client
                    .from
                    .get(index)
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                index,
                at: At::Table(client.origin.clone()),
            });
            Ok(client)
        }
        None => {
            t.step(refused);
            Err(DenyReason::SourceNotAllowed(
                crate::policy::net::canonical(conn.addr).to_string(),
            ))
        }
    }
}

/// What a request is, in a trace.
fn request_shown(request: &Request) -> String {
    let priority = |p: &Priority| {
        if p.is_none() {
            String::new()
        } else {
            format!(", at a lower priority ({p})")
        }
    };
    let server = |a: &ServerArgs, form: &str| {
        format!(
            "{form}, {} ({} option(s), {} path(s)){}",
            if a.sender {
                "--sender: the client pulls"
            } else {
                "the client pushes"
            },
            a.opts.len(),
            a.paths.len(),
            priority(&a.priority)
        )
    };
    match request {
        Request::Probe => "'true' (a connectivity probe)".into(),
        Request::Server(a) => server(a, "rsync --server (host:path)"),
        Request::Daemon { priority: p } => {
            format!("rsync --server --daemon . (host::module){}", priority(p))
        }
        Request::InBand(ib) => server(
            &ib.args,
            &format!(
                "in-band request of a host:: session for module '{}'",
                ib.module
            ),
        ),
        Request::Other { words } => format!("a command of {} word(s), not rsync", words.len()),
        Request::NoCommand => "no command (an interactive login)".into(),
    }
}

fn decide_inner<T: Tracer>(
    ctx: &Context<'_>,
    request: Result<&Request, &ParseError>,
    t: &mut T,
) -> Result<Decision, DenyReason> {
    let client = admit_with(ctx, t)?;
    let request = match request {
        Ok(r) => r,
        Err(e) => {
            t.step(|| Step::Request {
                request: format!("not understood: {e}"),
            });
            return Err(DenyReason::Parse(e.clone()));
        }
    };
    t.step(|| Step::Request {
        request: request_shown(request),
    });
    match request {
        Request::Probe => Ok(Decision::Probe),
        Request::Other { words } => match (&client.trigger, words.first()) {
            (Some(tr), _) => trigger(ctx, tr, words, t).map(Decision::Trigger),
            (None, Some(program)) => Err(DenyReason::CommandNotAllowed(shown(&program.bytes))),
            (None, None) => Err(DenyReason::Parse(ParseError::Split(
                crate::request::SplitError::Empty,
            ))),
        },
        Request::NoCommand => match &client.trigger {
            Some(tr) => trigger(ctx, tr, &[], t).map(Decision::Trigger),
            None => Err(DenyReason::NoCommand),
        },
        Request::Daemon { priority } => {
            if client.modules.is_empty() {
                return Err(DenyReason::NoModules);
            }
            if t.enabled() {
                for m in ctx.policy.client_modules(client) {
                    t.step(|| granted(m, client));
                }
            }
            Ok(Decision::Daemon(DaemonGrant {
                modules: client.modules.clone(),
                priority: *priority,
            }))
        }
        Request::Server(args) => {
            if client.modules.is_empty() {
                return Err(DenyReason::NoModules);
            }
            checked(ctx, client, args, Form::Checked, t).map(Decision::Checked)
        }
        Request::InBand(inband) => {
            if !client.modules.contains(&inband.module) {
                return Err(DenyReason::ModuleNotAvailable(shown(
                    inband.module.as_bytes(),
                )));
            }
            let g = checked(ctx, client, &inband.args, Form::InBand(inband), t)?;
            if g.module != inband.module {
                return Err(DenyReason::MultipleModules);
            }
            Ok(Decision::InBand(g))
        }
    }
}

/// A trigger client's words: bounded, plain words (no wildcards, no `~`),
/// and with an `args` allowlist each one matching it.
fn trigger<T: Tracer>(
    ctx: &Context<'_>,
    name: &str,
    words: &[Word],
    tr: &mut T,
) -> Result<TriggerGrant, DenyReason> {
    use crate::policy::{MAX_TRIGGER_WORD, MAX_TRIGGER_WORDS};
    let t = ctx
        .policy
        .triggers
        .get(name)
        .ok_or_else(|| DenyReason::Internal(format!("trigger '{name}' is not defined")))?;
    tr.step(|| Step::Trigger {
        trigger: t.name.clone(),
        passed: t.args.is_some(),
        at: t.origin.clone(),
    });
    if words.len() > MAX_TRIGGER_WORDS {
        return Err(DenyReason::TriggerTooLarge(format!(
            "{} words (at most {MAX_TRIGGER_WORDS})",
            words.len()
        )));
    }
    for w in words {
        if w.bytes.len() > MAX_TRIGGER_WORD {
            return Err(DenyReason::TriggerTooLarge(format!(
                "a word of {} bytes (at most {MAX_TRIGGER_WORD})",
                w.bytes.len()
            )));
        }
        let plain = w.glob.is_none() && !w.tilde;
        let allowed = plain && t.allows(&w.bytes) != Some(false);
        tr.step(|| Step::TriggerWord {
            word: shown(&w.bytes),
            allowed,
        });
        if !allowed {
            return Err(DenyReason::TriggerWordRefused {
                trigger: t.name.clone(),
                word: shown(&w.bytes),
            });
        }
    }
    Ok(TriggerGrant {
        trigger: t.name.clone(),
        words: words.iter().map(|w| w.bytes.clone()).collect(),
        passed: t.args.is_some(),
    })
}

/// Which request form a grant is for.
#[derive(Debug, Clone, Copy)]
enum Form<'r> {
    /// `host:path`: the gate writes rsync's argv.
    Checked,
    /// `host::module`: the daemon runs the client's own arguments, with
    /// paths relative to the module and absolute option values rooted in it.
    InBand(&'r InBand),
}

/// Options refused whatever the module: checked before paths, so a
/// smuggling attempt is named as such.
fn check_refused<T: Tracer>(args: &ServerArgs, t: &mut T) -> Result<(), DenyReason> {
    for o in &args.opts {
        match o.spec.rule {
            Rule::Refuse(why) => {
                t.step(|| option_step(o, None, false, Some(why.to_string())));
                return Err(DenyReason::OptionRefused {
                    option: o.spec.display(),
                    why,
                });
            }
            Rule::Secluded => {
                t.step(|| {
                    option_step(
                        o,
                        None,
                        false,
                        Some("-s may only be given on the command line".into()),
                    )
                });
                return Err(DenyReason::SecludedArgs);
            }
            _ => {}
        }
    }
    Ok(())
}

/// A rule's name in a trace.
fn rule_name(rule: Rule) -> String {
    match rule {
        Rule::Allow => "allow".into(),
        Rule::Refuse(_) => "refuse".into(),
        Rule::Delete => "delete".into(),
        Rule::FollowLinks => "follow_links".into(),
        Rule::Devices => "devices".into(),
        Rule::Replaces => "replaces (overwrite)".into(),
        Rule::Secluded => "secluded".into(),
    }
}

fn option_step(o: &Opt, knob: Option<Knob>, allowed: bool, why: Option<String>) -> Step {
    Step::Option {
        option: o.spec.display(),
        value: match &o.value {
            Some(OptValue::Text(v)) if !v.is_empty() => Some(shown(v.as_bytes())),
            _ => None,
        },
        row: o.spec.long,
        rule: rule_name(o.spec.rule),
        knob,
        allowed,
        why,
    }
}

/// The module key an option's rule consults (and, where it allows the
/// option, the value that does).
fn rule_knob(m: &Module, o: &Opt) -> Option<Knob> {
    // (`delete = true` needs `overwrite = true`: the policy refuses the
    // other way round, so `delete` alone decides a delete.)
    match o.spec.rule {
        Rule::Delete => Some(Knob::new(m, "delete", m.delete)),
        Rule::Replaces => Some(Knob::new(m, "overwrite", m.overwrite)),
        Rule::FollowLinks => Some(Knob::new(m, "follow_links", m.follow_links)),
        Rule::Devices => Some(Knob::new(m, "devices", m.devices)),
        Rule::Allow | Rule::Refuse(_) | Rule::Secluded => None,
    }
}

fn check_module_rules<T: Tracer>(
    m: &Module,
    args: &ServerArgs,
    t: &mut T,
) -> Result<(), DenyReason> {
    for o in &args.opts {
        if let Some(knob) = knob_refuses(m, o.spec.rule) {
            t.step(|| option_step(o, rule_knob(m, o), false, None));
            return Err(DenyReason::OptionNotPermitted {
                option: o.spec.display(),
                module: m.name.clone(),
                knob,
            });
        }
        if let Some(knob) = write_only_refuses(m, o) {
            t.step(|| {
                let why = match knob.split_once(": ") {
                    Some((k, w)) if k.contains("overwrite") => {
                        format!("with overwrite = true, {w}")
                    }
                    Some((_, w)) => w.to_string(),
                    None => knob.to_string(),
                };
                option_step(
                    o,
                    Some(Knob::new(m, "write_only", m.write_only)),
                    false,
                    Some(why),
                )
            });
            return Err(DenyReason::OptionNotPermitted {
                option: o.spec.display(),
                module: m.name.clone(),
                knob,
            });
        }
        t.step(|| option_step(o, rule_knob(m, o), true, None));
    }
    Ok(())
}

/// The [`Step::ModuleGranted`] of a module of the client.
fn granted(m: &Module, client: &Client) -> Step {
    Step::ModuleGranted {
        module: m.name.clone(),
        path: m.path.display().to_string(),
        at: m.origin.clone(),
        listed: At::Table(client.origin.clone()),
    }
}

/// A path with spaces from a client that does not escape them (rsync
/// older than 3.2.4, openrsync) reaches the gate as several words, split by
/// the remote shell: the first names a module, a later one does not. The
/// words, as the refusal shows them.
fn split_path(
    ctx: &Context<'_>,
    client: &Client,
    args: &ServerArgs,
    relative: bool,
) -> Option<Vec<String>> {
    const SHOWN: usize = 8;
    let sender = args.sender;
    let (first, rest) = args.paths.split_first()?;
    locate_rel(ctx.policy, client, first, sender, true, relative).ok()?;
    let stray = rest.iter().any(|w| {
        matches!(
            locate_rel(ctx.policy, client, w, sender, true, relative),
            Err(DenyReason::NoModule(_) | DenyReason::ModuleNotAvailable(_))
        )
    });
    stray.then(|| {
        args.paths
            .iter()
            .take(SHOWN)
            .map(|w| shown(&w.bytes))
            .collect()
    })
}

fn checked<'p, T: Tracer>(
    ctx: &Context<'p>,
    client: &'p Client,
    args: &ServerArgs,
    form: Form<'_>,
    t: &mut T,
) -> Result<Grant, DenyReason> {
    check_refused(args, t)?;
    let mode = if args.sender {
        Mode::Sender
    } else {
        Mode::Receiver
    };
    // A sender has nothing to delete: the receiver-side delete options
    // openrsync sends on a pull are left out of the argv (and so judged by
    // no knob). A daemon's in-band request cannot be rewritten, and rsync
    // clients never send them there.
    let mut dropped = Vec::new();
    let kept;
    let args = if mode == Mode::Sender && matches!(form, Form::Checked) {
        let (gone, keep): (Vec<Opt>, Vec<Opt>) = args
            .opts
            .iter()
            .cloned()
            .partition(|o| o.spec.meaning == Meaning::ReceiverDeletes);
        dropped = gone.iter().map(|o| o.spec).collect();
        for o in &gone {
            t.step(|| Step::Rule {
                rule: format!(
                    "{}: a receiver-side delete on a pull; left out of rsync's argv (a sender has nothing to delete)",
                    o.spec.display()
                ),
                knob: None,
                allowed: true,
            });
        }
        kept = ServerArgs {
            opts: keep,
            ..args.clone()
        };
        &kept
    } else {
        args
    };
    let files_from = args
        .opts
        .iter()
        .any(|o| matches!(o.spec.takes, Takes::Value(Value::Path(PathRole::FilesFrom))));
    let sources = match (files_from, args.relative()) {
        (true, _) => Sources::FilesFromBase,
        (false, true) => Sources::Relative,
        (false, false) => Sources::Plain,
    };
    if args.paths.is_empty() {
        return Err(DenyReason::NoPath);
    }
    if args.paths.len() > 1
        && matches!(form, Form::Checked)
        && let Some(words) = split_path(ctx, client, args, sources == Sources::Relative)
    {
        t.step(|| Step::Rule {
            rule: format!(
                "the first path word names a module and a later one does not: a path split at its spaces ('{}')",
                words.join("' '")
            ),
            knob: None,
            allowed: false,
        });
        return Err(DenyReason::SplitPath(words));
    }
    if mode == Mode::Receiver && args.paths.len() > 1 {
        return Err(DenyReason::TooManyDestinations);
    }
    let mut module: Option<&Module> = None;
    fn same_module<'p>(module: &mut Option<&'p Module>, m: &'p Module) -> Result<(), DenyReason> {
        match module {
            Some(prev) if prev.name != m.name => Err(DenyReason::MultipleModules),
            _ => {
                *module = Some(m);
                Ok(())
            }
        }
    }
    let mut paths = Vec::new();
    for w in &args.paths {
        let (m, tg) = locate_rel(
            ctx.policy,
            client,
            w,
            mode == Mode::Sender,
            true,
            sources == Sources::Relative,
        )?;
        same_module(&mut module, m)?;
        t.step(|| Step::PathMapped {
            path: tg.shown(),
            module: m.name.clone(),
            absolute: tg.prefix.is_some(),
        });
        paths.push(tg);
    }
    // Path-valued options.
    let mut opts = Vec::new();
    let mut path_opts = Vec::new();
    for o in &args.opts {
        let (Takes::Value(Value::Path(role)), Some(OptValue::Path(word))) =
            (o.spec.takes, &o.value)
        else {
            opts.push(o.clone());
            continue;
        };
        let value = path_option(ctx, client, o.spec, role, word, mode, form)?;
        t.step(|| Step::PathOption {
            option: o.spec.display(),
            value: shown(&word.bytes),
            reading: match &value {
                PathValue::Stdin => "the list comes over the connection".into(),
                PathValue::InModule(_) => "a path in a module".into(),
                PathValue::DestRelative { .. } => "relative to the destination directory".into(),
                PathValue::PerDirectory(_) => "a name inside each destination directory".into(),
                PathValue::Dropped => "not used when pulling; not passed on".into(),
            },
        });
        if let PathValue::InModule(tg) = &value {
            let (m, _) = locate(
                ctx.policy,
                client,
                &Word::plain(tg.spelled.clone()),
                false,
                true,
            )?;
            same_module(&mut module, m)?;
            t.step(|| Step::PathMapped {
                path: tg.shown(),
                module: m.name.clone(),
                absolute: tg.prefix.is_some(),
            });
        }
        path_opts.push(PathOpt {
            spec: o.spec,
            role,
            value,
        });
    }
    let Some(m) = module else {
        return Err(DenyReason::NoPath);
    };
    t.step(|| granted(m, client));
    t.step(|| match mode {
        Mode::Sender => Step::Direction {
            mode: "pull (rsync sends)",
            knob: Knob::new(m, "write_only", m.write_only),
            allowed: m.readable(),
        },
        Mode::Receiver => Step::Direction {
            mode: "push (rsync receives)",
            knob: Knob::new(m, "read_only", m.read_only),
            allowed: m.writable(),
        },
    });
    match mode {
        Mode::Sender if !m.readable() => return Err(DenyReason::WriteOnly(m.name.clone())),
        Mode::Receiver if !m.writable() => return Err(DenyReason::ReadOnly(m.name.clone())),
        _ => {}
    }
    check_module_rules(m, args, t)?;
    // Option rules that depend on the module's side effects.
    for po in &path_opts {
        if po.role == PathRole::FilesFrom && !matches!(po.value, PathValue::Stdin) && !m.readable()
        {
            t.step(|| Step::Option {
                option: po.spec.display(),
                value: None,
                row: po.spec.long,
                rule: "a server file the client reads".into(),
                knob: Some(Knob::new(m, "write_only", m.write_only)),
                allowed: false,
                why: Some("server files cannot be read".into()),
            });
            return Err(DenyReason::OptionNotPermitted {
                option: po.spec.display(),
                module: m.name.clone(),
                knob: "write_only = true: server files cannot be read",
            });
        }
    }
    // Remove-source-files on a pull deletes from the module.
    if mode == Mode::Sender && !m.writable() {
        if let Some(o) = args.opts.iter().find(|o| o.spec.rule == Rule::Delete) {
            t.step(|| option_step(o, Some(Knob::new(m, "read_only", m.read_only)), false, None));
            return Err(DenyReason::OptionNotPermitted {
                option: o.spec.display(),
                module: m.name.clone(),
                knob: "read_only = true",
            });
        }
    }
    let added = match form {
        Form::Checked => checked_added(ctx, m, mode, args, &path_opts, t)?,
        Form::InBand(_) => {
            in_band_rules(ctx, m, mode, args, t)?;
            Vec::new()
        }
    };
    Ok(Grant {
        module: m.name.clone(),
        mode,
        sources,
        opts,
        path_opts,
        paths,
        added,
        dropped,
        priority: args.priority,
    })
}

/// Checked mode: what the gate adds to rsync's argv, and what it must
/// refuse because neither rsync nor the sandbox could hold it.
fn checked_added<T: Tracer>(
    ctx: &Context<'_>,
    m: &Module,
    mode: Mode,
    args: &ServerArgs,
    path_opts: &[PathOpt],
    t: &mut T,
) -> Result<Vec<Added>, DenyReason> {
    let server = ctx.server;
    // The names a --files-from list selects are resolved by rsync alone,
    // following links in the module: only its --confine-root keeps them
    // inside. (The kernel sandbox keeps their contents in, not their
    // metadata: rsync would still list an outside file a link leads to.)
    if !server.caps.confine_root
        && let Some(po) = path_opts.iter().find(|p| p.role == PathRole::FilesFrom)
    {
        t.step(|| Step::Rule {
            rule: format!(
                "{}: the names in the list need the server's rsync to have --confine-root",
                po.spec.display()
            ),
            knob: None,
            allowed: false,
        });
        return Err(DenyReason::FilesFromUnconfined {
            option: po.spec.display(),
        });
    }
    let mut added = Vec::new();
    // The knob is built only when tracing.
    type KnobOf = fn(&Module) -> Knob;
    let mut add = |a: Added, why: &str, knob: Option<KnobOf>, t: &mut T| {
        t.step(|| Step::Added {
            option: a.long_shown(m),
            why: why.to_string(),
            knob: knob.map(|k| k(m)),
        });
        added.push(a);
    };
    if mode == Mode::Receiver && !m.overwrite {
        add(
            Added::IgnoreExisting,
            "uploads never replace existing files",
            Some(|m| Knob::new(m, "overwrite", m.overwrite)),
            t,
        );
    }
    if mode == Mode::Receiver && !m.readable() {
        add(
            Added::WholeFile,
            "no checksums of existing files go to the client",
            Some(|m| Knob::new(m, "write_only", m.write_only)),
            t,
        );
    }
    if mode == Mode::Receiver && !m.devices {
        let devices = || Knob::new(m, "devices", m.devices);
        if m.specials {
            // FIFOs and sockets may come in, device nodes may not: --drop-D
            // would keep out both, and only the kernel sandbox tells them
            // apart.
            if args.creates_devices() {
                let held = server.sandbox;
                t.step(|| Step::Rule {
                    rule: "device nodes on a push with specials = true: only the kernel sandbox keeps them out (FIFOs and sockets may come in)".into(),
                    knob: Some(Knob::new(m, "specials", m.specials)),
                    allowed: held,
                });
                if !held {
                    return Err(DenyReason::NodesUnconfined {
                        why: "with specials = true only the kernel sandbox keeps device nodes out, and none is active",
                    });
                }
            }
        } else if server.caps.drop_d {
            add(
                Added::DropD,
                "no device or special files are created",
                Some(|m| Knob::new(m, "devices", m.devices)),
                t,
            );
        } else if args.creates_devices() || args.creates_specials() {
            let held = server.sandbox;
            t.step(|| Step::Rule {
                rule: if held {
                    "device or special files on a push: the server's rsync has no --drop-D; the kernel sandbox keeps them out"
                } else {
                    "device or special files on a push: the server's rsync has no --drop-D and no kernel sandbox is active"
                }
                .into(),
                knob: Some(devices()),
                allowed: held,
            });
            if !held {
                return Err(DenyReason::NodesUnconfined {
                    why: "the server's rsync has no --drop-D and no kernel sandbox is active",
                });
            }
        }
    }
    if m.munge_links {
        add(
            Added::MungeLinks,
            "symlinks are stored munged",
            Some(|m| Knob::new(m, "munge_links", m.munge_links)),
            t,
        );
    }
    if server.caps.confine_root {
        add(
            Added::ConfineRoot,
            "the server's rsync refuses paths resolving outside the module",
            None,
            t,
        );
    }
    if mode == Mode::Receiver && !m.setuid {
        add(
            Added::NoSetuid,
            "uploads lose set-user-ID and set-group-ID bits",
            Some(|m| Knob::new(m, "setuid", m.setuid)),
            t,
        );
    }
    if m.timeout > 0 {
        // A client cannot lengthen the module's timeout, only shorten it.
        let asked = args
            .opts
            .iter()
            .filter(|o| o.spec.long == options::TIMEOUT)
            .filter_map(|o| match &o.value {
                Some(OptValue::Text(v)) => v.parse::<u32>().ok(),
                _ => None,
            })
            .min();
        let secs = asked.map_or(m.timeout, |a| a.min(m.timeout));
        let why = if secs < m.timeout {
            "the client's own --timeout, shorter than the module's"
        } else {
            "rsync ends a session without I/O for this long"
        };
        add(
            Added::Timeout(secs),
            why,
            Some(|m| Knob::new(m, "timeout", m.timeout)),
            t,
        );
    }
    Ok(added)
}

/// Daemon mode: the gate cannot add options to an in-band request, so what
/// it would add must be there already or be held by something else. The
/// daemon confines the names of a `--files-from` list itself (its paths are
/// sanitised against the module root, or chrooted into it).
fn in_band_rules<T: Tracer>(
    ctx: &Context<'_>,
    m: &Module,
    mode: Mode,
    args: &ServerArgs,
    t: &mut T,
) -> Result<(), DenyReason> {
    let has = |long: &str| args.opts.iter().any(|o| o.spec.long == long);
    if mode == Mode::Receiver && !m.overwrite {
        let carried = has(options::IGNORE_EXISTING);
        t.step(|| Step::Rule {
            rule: "a host:: push must carry its own --ignore-existing".into(),
            knob: Some(Knob::new(m, "overwrite", m.overwrite)),
            allowed: carried,
        });
        if !carried {
            return Err(DenyReason::OptionNotPermitted {
                option: "uploads without --ignore-existing".into(),
                module: m.name.clone(),
                knob: "overwrite = false",
            });
        }
    }
    if mode == Mode::Receiver && !m.readable() {
        let carried = has(options::WHOLE_FILE);
        t.step(|| Step::Rule {
            rule: "a host:: push must carry its own --whole-file (-W)".into(),
            knob: Some(Knob::new(m, "write_only", m.write_only)),
            allowed: carried,
        });
        if !carried {
            return Err(DenyReason::OptionNotPermitted {
                option: "uploads without --whole-file (-W)".into(),
                module: m.name.clone(),
                knob: options::WO_DELTA,
            });
        }
    }
    let nodes = args.creates_devices() || (!m.specials && args.creates_specials());
    // A push that may create nodes the module does not take: only the
    // sandbox keeps them out (a daemon takes no --drop-D).
    let nodes_to_keep_out = mode == Mode::Receiver && !m.devices && nodes;
    if nodes_to_keep_out {
        let held = ctx.server.sandbox;
        t.step(|| Step::Rule {
            rule:
                "device or special files on a host:: push: only the kernel sandbox keeps them out"
                    .into(),
            knob: Some(if m.specials {
                Knob::new(m, "specials", m.specials)
            } else {
                Knob::new(m, "devices", m.devices)
            }),
            allowed: held,
        });
    }
    if nodes_to_keep_out && !ctx.server.sandbox {
        return Err(DenyReason::NodesUnconfined {
            why: "a daemon cannot be given --drop-D and no kernel sandbox is active (use host:path, or set devices = true)",
        });
    }
    Ok(())
}

fn path_option<'p>(
    ctx: &Context<'p>,
    client: &'p Client,
    spec: &'static Spec,
    role: PathRole,
    word: &Word,
    mode: Mode,
    form: Form<'_>,
) -> Result<PathValue, DenyReason> {
    let spelled = shown(&word.bytes);
    if word.tilde {
        return Err(DenyReason::HomeRelative(spelled));
    }
    let pushing = mode == Mode::Receiver;
    // In daemon mode an absolute value is rooted in the module, and a
    // --files-from name is relative to it: spell both as MODULE/path.
    let module_rooted = match form {
        Form::InBand(ib)
            if word.bytes != b"-"
                && (word.bytes.starts_with(b"/") || role == PathRole::FilesFrom) =>
        {
            let mut p = ib.module.as_bytes().to_vec();
            p.push(b'/');
            let start = word.bytes.iter().take_while(|&&c| c == b'/').count();
            p.extend_from_slice(word.bytes.get(start..).unwrap_or_default());
            Some(Word::plain(p))
        }
        _ => None,
    };
    match role {
        PathRole::FilesFrom => {
            if word.bytes == b"-" {
                return Ok(PathValue::Stdin);
            }
            let w = module_rooted.as_ref().unwrap_or(word);
            let (_, t) = locate(ctx.policy, client, w, false, true)?;
            Ok(PathValue::InModule(t))
        }
        PathRole::BackupDir if !pushing => Ok(PathValue::Dropped),
        PathRole::Basis | PathRole::TempDir | PathRole::PartialDir if !pushing => {
            Err(DenyReason::OptionWrongDirection {
                option: spec.display(),
                pushing,
            })
        }
        PathRole::PartialDir if !word.bytes.starts_with(b"/") => {
            let p = parse_path(word, false);
            if p.comps.iter().any(|c| matches!(c, Comp::Parent)) || p.comps.is_empty() {
                return Err(DenyReason::Escapes(spelled));
            }
            Ok(PathValue::PerDirectory(word.bytes.clone()))
        }
        PathRole::Basis | PathRole::BackupDir | PathRole::TempDir | PathRole::PartialDir => {
            if let Some(w) = &module_rooted {
                let (_, t) = locate(ctx.policy, client, w, false, true)?;
                Ok(PathValue::InModule(t))
            } else if word.bytes.starts_with(b"/") {
                let (_, t) = locate(ctx.policy, client, word, false, false)?;
                Ok(PathValue::InModule(t))
            } else {
                let p = parse_path(word, false);
                Ok(PathValue::DestRelative {
                    spelled: word.bytes.clone(),
                    comps: p.comps,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy;
    use crate::request::parse_command;
    use std::path::Path;

    /// The project's one lexical policy (also the oracle's).
    const POLICY: &str = include_str!("../../tests/data/lexical-policy.toml");

    fn policy() -> Policy {
        policy::load_text(Path::new("/p.toml"), POLICY).unwrap()
    }

    const CAPS: RsyncCaps = RsyncCaps {
        confine_root: true,
        drop_d: true,
    };
    const SERVER: Server = Server {
        caps: CAPS,
        sandbox: true,
    };

    fn run(client: &str, conn: Option<&str>, cmd: &str) -> Decision {
        let p = policy();
        let conn = conn.map(|a| Conn {
            addr: a.parse().unwrap(),
            port: 1234,
        });
        let ctx = Context {
            policy: &p,
            client,
            conn,
            server: SERVER,
        };
        let req = parse_command(cmd.as_bytes());
        decide(&ctx, req.as_ref())
    }

    fn deny(client: &str, cmd: &str) -> DenyReason {
        match run(client, None, cmd) {
            Decision::Deny(r) => r,
            other => panic!("{cmd}: expected a denial, got {other:?}"),
        }
    }

    fn grant(client: &str, cmd: &str) -> Grant {
        match run(client, None, cmd) {
            Decision::Checked(g) => g,
            other => panic!("{cmd}: expected a grant, got {other:?}"),
        }
    }

    const PULL: &str = "rsync --server --sender -logDtpre.iLsfxCIvu";
    const PUSH: &str = "rsync --server -logDtpre.iLsfxCIvu";
    const PULLR: &str = "rsync --server --sender -logDtpRe.iLsfxCIvu";

    #[test]
    fn client_and_address_table() {
        let fenced = format!("{PULL} . www/");
        let table: &[(&str, Option<&str>, bool)] = &[
            ("fenced", Some("192.0.2.10"), true),
            ("fenced", Some("::ffff:192.0.2.10"), true),
            ("fenced", Some("2001:db8::7"), true),
            ("fenced", Some("192.0.2.11"), false),
            ("fenced", None, false),
            ("c", None, true),
            ("nobody", None, false),
        ];
        for (client, addr, ok) in table {
            let d = run(client, *addr, &fenced);
            assert_eq!(
                matches!(d, Decision::Checked(_)),
                *ok,
                "{client} from {addr:?}: {d:?}"
            );
        }
        assert_eq!(
            deny("nobody", &fenced),
            DenyReason::UnknownClient("nobody".into())
        );
        assert!(matches!(
            run("fenced", Some("192.0.2.11"), &fenced),
            Decision::Deny(DenyReason::SourceNotAllowed(a)) if a == "192.0.2.11"
        ));
        // The address check comes before anything about the command.
        assert!(matches!(
            run("fenced", Some("192.0.2.11"), "id; rm -rf /"),
            Decision::Deny(DenyReason::SourceNotAllowed(_))
        ));
    }

    #[test]
    fn probe_daemon_and_other_commands() {
        assert_eq!(run("c", None, "true"), Decision::Probe);
        assert_eq!(
            run("c", None, "rsync --server --daemon ."),
            Decision::Daemon(DaemonGrant {
                modules: vec![
                    "www".into(),
                    "nested".into(),
                    "backup".into(),
                    "drop".into(),
                    "handin".into(),
                    "links".into()
                ],
                priority: Priority::default(),
            })
        );
        assert_eq!(deny("c", "id"), DenyReason::CommandNotAllowed("id".into()));
        assert_eq!(
            run("trig", None, "anything at all"),
            Decision::Trigger(TriggerGrant {
                trigger: "t".into(),
                words: vec![b"anything".to_vec(), b"at".to_vec(), b"all".to_vec()],
                passed: false,
            })
        );
        assert_eq!(
            deny("trig", "rsync --server --sender . www/"),
            DenyReason::NoModules
        );
        assert_eq!(
            deny("trig", "rsync --server --daemon ."),
            DenyReason::NoModules
        );
        assert_eq!(deny("c", "rsync; id").code(), "unparsable_command");
    }

    /// A trigger without `args` takes any plain word, but never one a shell
    /// would expand (a wildcard, a leading `~`), each on its own.
    #[test]
    fn a_trigger_without_args_still_refuses_words_a_shell_would_expand() {
        let p = policy();
        let ctx = Context {
            policy: &p,
            client: "trig_any",
            conn: Some(Conn {
                addr: "192.0.2.9".parse().unwrap(),
                port: 1,
            }),
            server: SERVER,
        };
        let run = |cmd: &str| decide(&ctx, parse_command(cmd.as_bytes()).as_ref());
        match run("anything 'a*' '~b' x/y") {
            Decision::Trigger(g) => {
                assert!(!g.passed);
                let want: Vec<Vec<u8>> = ["anything", "a*", "~b", "x/y"]
                    .iter()
                    .map(|w| w.as_bytes().to_vec())
                    .collect();
                assert_eq!(g.words, want);
            }
            d => panic!("{d:?}"),
        }
        for cmd in ["a*", "a?", "[ab]", "~b", "~"] {
            match run(cmd) {
                Decision::Deny(r) => assert_eq!(r.code(), "trigger_word_refused", "{cmd}: {r}"),
                d => panic!("{cmd}: {d:?}"),
            }
        }
    }

    /// Trigger clients: words are checked against the trigger's `args`
    /// (a trailing `*` takes a suffix of letters, digits and `._+-:`).
    #[test]
    fn trigger_words_table() {
        let up = |cmd: &str| {
            let p = policy();
            let ctx = Context {
                policy: &p,
                client: "upstream",
                conn: Some(Conn {
                    addr: "192.0.2.50".parse().unwrap(),
                    port: 1,
                }),
                server: SERVER,
            };
            decide(&ctx, parse_command(cmd.as_bytes()).as_ref())
        };
        let words =
            |ws: &[&str]| -> Vec<Vec<u8>> { ws.iter().map(|w| w.as_bytes().to_vec()).collect() };
        let many = vec!["sync:all"; 17].join(" ");
        let long = format!("sync:archive:{}", "a".repeat(250));
        // The bounds themselves are allowed: 16 words, a word of 256 bytes.
        let most = vec!["sync:all"; 16].join(" ");
        let longest = format!("sync:archive:{}", "a".repeat(256 - 13));
        type Row<'a> = (&'a str, Result<Vec<Vec<u8>>, &'a str>);
        let table: &[Row<'_>] = &[
            (
                " sync:archive: sync:all",
                Ok(words(&["sync:archive:", "sync:all"])),
            ),
            (
                "sync:archive:debian-security sync:all",
                Ok(words(&["sync:archive:debian-security", "sync:all"])),
            ),
            ("sync:stage1", Ok(words(&["sync:stage1"]))),
            (
                "sync:stage2 sync:mhop",
                Ok(words(&["sync:stage2", "sync:mhop"])),
            ),
            ("", Ok(vec![])),
            ("sync:bogus", Err("trigger_word_refused")),
            ("sync:all --delete", Err("trigger_word_refused")),
            ("sync:archive:a/b", Err("trigger_word_refused")),
            ("'sync:archive:x\\y'", Err("trigger_word_refused")),
            ("sync:archive:*", Err("trigger_word_refused")),
            ("~root", Err("trigger_word_refused")),
            ("sync:all; id", Err("unparsable_command")),
            ("sync:all $(id)", Err("unparsable_command")),
            (many.as_str(), Err("trigger_too_large")),
            (long.as_str(), Err("trigger_too_large")),
            (most.as_str(), Ok(words(&["sync:all"; 16]))),
            (longest.as_str(), Ok(words(&[longest.as_str()]))),
        ];
        for (cmd, want) in table {
            match (up(cmd), want) {
                (Decision::Trigger(g), Ok(w)) => {
                    assert_eq!(&g.words, w, "{cmd}");
                    assert!(g.passed);
                    assert_eq!(g.trigger, "debian");
                }
                (Decision::Deny(r), Err(code)) => {
                    assert_eq!(r.code(), *code, "{cmd}: {r}");
                    if *code == "trigger_word_refused" {
                        assert!(
                            r.to_string()
                                .starts_with("trigger 'debian' does not take the word '"),
                            "{r}"
                        );
                    }
                }
                (d, w) => panic!("{cmd}: got {d:?}, want {w:?}"),
            }
        }
        // No command at all fires it too; `true` still only probes; the
        // address is checked first.
        let p = policy();
        let ctx = Context {
            policy: &p,
            client: "upstream",
            conn: None,
            server: SERVER,
        };
        assert_eq!(
            decide(&ctx, Ok(&Request::NoCommand)),
            Decision::Deny(DenyReason::NoSourceAddress)
        );
        assert!(matches!(up("true"), Decision::Probe));
        let ctx = Context {
            conn: Some(Conn {
                addr: "192.0.2.50".parse().unwrap(),
                port: 1,
            }),
            ..ctx
        };
        assert!(
            matches!(decide(&ctx, Ok(&Request::NoCommand)), Decision::Trigger(g) if g.words.is_empty())
        );
        // A client without a trigger: no command is an interactive login.
        assert_eq!(deny("c", "id"), DenyReason::CommandNotAllowed("id".into()));
    }

    #[test]
    fn direction_table() {
        let table: &[(String, Option<&str>)] = &[
            (format!("{PULL} . www/"), None),
            (format!("{PUSH} . www/"), Some("read_only")),
            (format!("{PUSH} . backup/"), None),
            (format!("{PULL} . backup/"), None),
            (format!("{PUSH} . drop/"), None),
            (format!("{PULL} . drop/"), Some("write_only")),
            (format!("{PULL} --list-only . drop/"), Some("write_only")),
            (format!("{PULL} . secret/"), Some("module_not_available")),
            (format!("{PULL} . nope/"), Some("module_not_available")),
            (format!("{PULL} . /srv/secret/x"), Some("outside_modules")),
            (format!("{PULL} . /etc/passwd"), Some("outside_modules")),
            (format!("{PULL} . ."), Some("no_module")),
            (format!("{PULL} . ../x"), Some("no_module")),
            (format!("{PULL} . ~/x"), Some("home_relative")),
            (format!("{PULL} ."), Some("no_path")),
            (
                format!("{PUSH} . backup/a backup/b"),
                Some("too_many_destinations"),
            ),
            (format!("{PULL} . www/a backup/b"), Some("multiple_modules")),
            (format!("{PULL} . www/a www/b"), None),
        ];
        for (cmd, want) in table {
            let d = run("c", None, cmd);
            match (want, &d) {
                (None, Decision::Checked(_)) => {}
                (Some(code), Decision::Deny(r)) => assert_eq!(r.code(), *code, "{cmd}: {r}"),
                _ => panic!("{cmd}: want {want:?}, got {d:?}"),
            }
        }
    }

    #[test]
    fn option_rules_table() {
        // (client, command, expected code or None for allowed)
        let table: &[(String, Option<&str>)] = &[
            (format!("{PUSH} --delete . backup/"), None),
            (
                format!("{PUSH} --delete-after . nested/"),
                Some("option_not_permitted"),
            ),
            (
                format!("{PUSH} --delete . drop/"),
                Some("option_not_permitted"),
            ),
            (
                format!("{PULL} --remove-source-files . www/"),
                Some("option_not_permitted"),
            ),
            (format!("{PULL} --remove-source-files . backup/"), None),
            (
                format!("{PUSH} --force . nested/"),
                Some("option_not_permitted"),
            ),
            (format!("{PULL} -L . www/"), Some("option_not_permitted")),
            (
                "rsync --server --sender -lkogDtpre.iLsfxCIvu . www/".to_string(),
                Some("option_not_permitted"),
            ),
            (
                "rsync --server -lKogDtpre.iLsfxCIvu . backup/".to_string(),
                Some("option_not_permitted"),
            ),
            (
                format!("{PULL} --copy-unsafe-links . www/"),
                Some("option_not_permitted"),
            ),
            (format!("{PULL} -L --copy-unsafe-links . links/"), None),
            (
                format!("{PULL} --copy-devices . www/"),
                Some("option_not_permitted"),
            ),
            (format!("{PULL} --copy-devices . links/"), None),
            (
                format!("{PUSH} --write-devices . backup/"),
                Some("option_not_permitted"),
            ),
            (
                "rsync --server -blogDtpre.iLsfxCIvu . drop/".to_string(),
                Some("option_not_permitted"),
            ),
            (
                format!("{PUSH} --partial-dir .p . drop/"),
                Some("option_not_permitted"),
            ),
            (
                format!("{PUSH} --delay-updates . drop/"),
                Some("option_not_permitted"),
            ),
            (
                format!("{PUSH} --backup-dir /srv/drop/bk . drop/"),
                Some("option_not_permitted"),
            ),
            (format!("{PUSH} --partial-dir .p . backup/"), None),
            (
                format!("{PUSH} --log-file=/tmp/x . backup/"),
                Some("option_refused"),
            ),
            (format!("{PUSH} --rsh=sh . backup/"), Some("option_refused")),
            (
                format!("{PUSH} --rsync-path=x . backup/"),
                Some("option_refused"),
            ),
            (
                format!("{PUSH} --write-batch=x . backup/"),
                Some("option_refused"),
            ),
            (
                format!("{PUSH} --only-write-batch=x . backup/"),
                Some("option_refused"),
            ),
            (
                format!("{PUSH} --read-batch=x . backup/"),
                Some("option_refused"),
            ),
            (
                format!("{PUSH} --debug=ALL . backup/"),
                Some("option_refused"),
            ),
            (
                format!("{PUSH} --insecure-links . backup/"),
                Some("option_refused"),
            ),
            (
                format!("{PUSH} --no-munge-links . backup/"),
                Some("option_refused"),
            ),
            (
                format!("{PUSH} --confine-root=/ . backup/"),
                Some("option_refused"),
            ),
            (
                format!("{PUSH} --config=/x . backup/"),
                Some("option_refused"),
            ),
            (
                format!("{PUSH} --dparam=x=y . backup/"),
                Some("option_refused"),
            ),
            (
                format!("{PUSH} --copy-as=root . backup/"),
                Some("option_refused"),
            ),
            (
                "rsync --server -slogDtpre.iLsfxCIvu . backup/".to_string(),
                Some("secluded_args"),
            ),
            (
                format!("{PUSH} --protect-args . backup/"),
                Some("secluded_args"),
            ),
            (
                format!("{PUSH} --files-from=www/list . drop/"),
                Some("multiple_modules"),
            ),
            (
                format!("{PUSH} --files-from=drop/list . drop/"),
                Some("option_not_permitted"),
            ),
            (format!("{PULL} --files-from=- --from0 . www/"), None),
            (format!("{PULL} --files-from www/list . www/"), None),
            (
                format!("{PULL} --link-dest=../x . www/"),
                Some("option_wrong_direction"),
            ),
            (
                format!("{PULL} --temp-dir=/srv/www . www/"),
                Some("option_wrong_direction"),
            ),
            (format!("{PUSH} --link-dest ../prev . backup/cur/"), None),
            (
                format!("{PUSH} --link-dest /srv/backup/prev . backup/cur/"),
                None,
            ),
            (
                format!("{PUSH} --link-dest /srv/www . backup/cur/"),
                Some("multiple_modules"),
            ),
            (
                format!("{PUSH} --link-dest /etc . backup/cur/"),
                Some("outside_modules"),
            ),
            (
                format!("{PUSH} --link-dest ~/x . backup/cur/"),
                Some("home_relative"),
            ),
            (
                format!("{PUSH} --partial-dir ../x . backup/"),
                Some("escapes_module"),
            ),
            (format!("{PUSH} --temp-dir backup/tmp . backup/"), None),
        ];
        for (cmd, want) in table {
            let d = run("c", None, cmd);
            match (want, &d) {
                (None, Decision::Checked(_)) => {}
                (Some(code), Decision::Deny(r)) => assert_eq!(r.code(), *code, "{cmd}: {r}"),
                _ => panic!("{cmd}: want {want:?}, got {d:?}"),
            }
        }
    }

    #[test]
    fn names_the_option_and_knob() {
        assert_eq!(
            deny("c", &format!("{PUSH} --delete . nested/")),
            DenyReason::OptionNotPermitted {
                option: "--delete".into(),
                module: "nested".into(),
                knob: "delete = false"
            }
        );
        assert_eq!(
            deny("c", &format!("{PULL} -L . www/")).to_string(),
            "option --copy-links (-L) is not allowed in module 'www' (follow_links = false)"
        );
    }

    #[test]
    fn gate_added_options() {
        let g = grant("c", &format!("{PUSH} . drop/"));
        assert_eq!(
            g.added,
            [
                Added::IgnoreExisting,
                Added::WholeFile,
                Added::DropD,
                Added::MungeLinks,
                Added::ConfineRoot,
                Added::NoSetuid
            ]
        );
        let g = grant("c", &format!("{PUSH} . handin/"));
        assert_eq!(
            g.added,
            [
                Added::WholeFile,
                Added::DropD,
                Added::MungeLinks,
                Added::ConfineRoot,
                Added::NoSetuid
            ]
        );
        let g = grant("c", &format!("{PULL} . www/"));
        assert_eq!(g.added, [Added::ConfineRoot]);
        let g = grant("c", &format!("{PUSH} . backup/"));
        assert_eq!(
            g.added,
            [
                Added::DropD,
                Added::MungeLinks,
                Added::ConfineRoot,
                Added::NoSetuid
            ]
        );
    }

    /// Write-only modules: options that would let the receiver tell the
    /// client about existing files are refused (some only where uploads
    /// may replace files), in both request forms alike.
    #[test]
    fn write_only_table() {
        use crate::request::inband;
        let p = policy();
        let in_band = |module: &str, opts: &[&str]| {
            let mut argv: Vec<Vec<u8>> = vec![b"rsyncd".to_vec(), b"--server".to_vec()];
            argv.extend(opts.iter().map(|a| a.as_bytes().to_vec()));
            argv.extend([b".".to_vec(), b"sub/".to_vec()]);
            let req = inband::parse(module, &argv).map(Request::InBand);
            let ctx = Context {
                policy: &p,
                client: "c",
                conn: None,
                server: SERVER,
            };
            match decide(&ctx, req.as_ref()) {
                Decision::InBand(_) => None,
                Decision::Deny(r) => Some(r),
                other => panic!("{other:?}"),
            }
        };
        let checked = |module: &str, opts: &[&str]| {
            let cmd = format!("rsync --server {} . {module}/sub/", opts.join(" "));
            match run("c", None, &cmd) {
                Decision::Checked(_) => None,
                Decision::Deny(r) => Some(r),
                other => panic!("{other:?}"),
            }
        };
        // (options, refused in drop (overwrite = false), in handin)
        let table: &[(&[&str], bool, bool)] = &[
            (&["-rlt"], false, false),
            (&["-rltI"], false, false),
            (&["-rltW"], false, false),
            (&["-rlty"], true, true),
            (&["-rlt", "--fuzzy"], true, true),
            (&["-rlt", "--compare-dest=../x"], true, true),
            (&["-rlt", "--copy-dest=../x"], true, true),
            (&["-rlt", "--link-dest=../x"], true, true),
            (&["-rlt", "--no-W"], true, true),
            (&["-rlt", "--no-whole-file"], true, true),
            (&["-rltn"], true, true),
            (&["-rlt", "--dry-run"], true, true),
            (&["-rlt", "--existing"], true, true),
            (&["-rlt", "--ignore-non-existing"], true, true),
            (&["-rlt", "--max-delete=0"], true, true),
            (&["-rlt", "--info=skip2"], true, true),
            (&["-rlt", "--info=NAME,ALL2"], true, true),
            (&["-rlt", "--info=skip1,name2,progress2"], false, false),
            (&["-rlt", "--append-verify"], true, true),
            (&["-rlt", "--append"], true, true),
            (&["-rlt", "--partial-dir=.p"], true, true),
            (&["-rlt", "--delay-updates"], true, true),
            // Comparisons with the existing file: only where uploads may
            // replace it (with overwrite = false, existing names are
            // skipped before any comparison).
            (&["-rltc"], false, true),
            (&["-rltu"], false, true),
            (&["-rlt", "--size-only"], false, true),
            (&["-rlt", "--modify-window=1"], false, true),
            (&["-rlt", "-@-1"], false, true),
            // Governed by overwrite alone.
            (&["-rlt", "--inplace"], true, false),
            (&["-rlt", "--partial"], true, false),
            (&["-rltb"], true, false),
            (&["-rlt", "--ignore-existing"], false, false),
        ];
        for (opts, in_drop, in_handin) in table {
            for (module, want) in [("drop", *in_drop), ("handin", *in_handin)] {
                let c = checked(module, opts);
                assert_eq!(c.is_some(), want, "{module} {opts:?}: {c:?}");
                if let Some(r) = &c {
                    assert_eq!(r.code(), "option_not_permitted", "{r}");
                }
                // In-band: what checked mode adds must already be there.
                let mut with: Vec<&str> = opts.to_vec();
                with.push("--whole-file");
                if module == "drop" {
                    with.push("--ignore-existing");
                }
                let ib = in_band(module, &with);
                assert_eq!(ib.is_some(), want, "in-band {module} {with:?}: {ib:?}");
                assert_eq!(c, ib, "{module} {opts:?}: the forms disagree");
            }
        }
        // The refusal names the option and why.
        assert_eq!(
            checked("drop", &["-rlty"]).map(|r| r.to_string()),
            Some(
                "option --fuzzy (-y) is not allowed in module 'drop' (write_only = true: a similarly \
                 named existing file would be the basis, its name and checksums sent to the client)"
                    .to_string()
            )
        );
        assert!(checked("handin", &["-rltc"]).is_some_and(|r| {
            r.to_string()
                .contains("(write_only = true, overwrite = true: ")
        }));
        // Daemon mode cannot add --whole-file: uploads without it are
        // refused (after a missing --ignore-existing, which is named first).
        for (module, opts, why) in [
            ("handin", &["-rlt"][..], "--whole-file"),
            ("handin", &["-rltI"][..], "--whole-file"),
            ("drop", &["-rlt", "--ignore-existing"][..], "--whole-file"),
            ("drop", &["-rltW"][..], "--ignore-existing"),
        ] {
            let r = in_band(module, opts).expect("refused");
            assert_eq!(r.code(), "option_not_permitted");
            assert!(
                r.to_string()
                    .starts_with(&format!("option uploads without {why}")),
                "{r}"
            );
        }
        assert_eq!(in_band("handin", &["-rltW"]), None);
        assert_eq!(in_band("handin", &["-rlt", "--whole-file"]), None);
        // Pulls stay refused as such; readable modules are unaffected.
        assert_eq!(
            deny("c", &format!("{PULL} --fuzzy . handin/")).code(),
            "write_only"
        );
        for cmd in [
            format!("{PUSH} -y --info=skip2 --link-dest=../p . backup/x/"),
            format!("{PULL} -nc --size-only --max-delete=0 . www/"),
        ] {
            assert!(
                matches!(run("c", None, &cmd), Decision::Checked(_)),
                "{cmd}"
            );
        }
    }

    fn with(server: Server, client: &str, cmd: &str) -> Decision {
        let p = policy();
        let ctx = Context {
            policy: &p,
            client,
            conn: None,
            server,
        };
        decide(&ctx, parse_command(cmd.as_bytes()).as_ref())
    }

    /// Pushes with -D into a `devices = false` module: held by --drop-D, or
    /// by the sandbox; refused when neither is there.
    #[test]
    fn device_pushes_need_drop_d_or_the_sandbox() {
        let push_d = format!("{PUSH} . backup/");
        let old = RsyncCaps::default();
        let table = [
            (
                CAPS,
                false,
                Some(vec![
                    Added::DropD,
                    Added::MungeLinks,
                    Added::ConfineRoot,
                    Added::NoSetuid,
                ]),
            ),
            (old, true, Some(vec![Added::MungeLinks, Added::NoSetuid])),
            (old, false, None),
        ];
        for (caps, sandbox, want) in table {
            let d = with(Server { caps, sandbox }, "c", &push_d);
            match (want, d) {
                (Some(want), Decision::Checked(g)) => assert_eq!(g.added, want),
                (None, Decision::Deny(r)) => {
                    assert_eq!(r.code(), "nodes_unconfined");
                    assert!(r.to_string().contains("no --drop-D"), "{r}");
                }
                (want, d) => panic!("{caps:?} sandbox={sandbox}: want {want:?}, got {d:?}"),
            }
        }
        // --devices or --specials alone asks as much as -D.
        for one in ["--devices", "--specials"] {
            let d = with(
                Server {
                    caps: old,
                    sandbox: false,
                },
                "c",
                &format!("rsync --server -rlt {one} . backup/"),
            );
            assert!(
                matches!(&d, Decision::Deny(r) if r.code() == "nodes_unconfined"),
                "{one}: {d:?}"
            );
        }
        // Without -D there is nothing to hold.
        let d = with(
            Server {
                caps: old,
                sandbox: false,
            },
            "c",
            "rsync --server -rlt . backup/",
        );
        assert!(
            matches!(&d, Decision::Checked(g) if g.added == [Added::MungeLinks, Added::NoSetuid]),
            "{d:?}"
        );
    }

    /// An in-band request of a `host::MODULE` session for client "c".
    fn in_band(module: &str, args: &[&str], sandbox: bool) -> Decision {
        use crate::request::inband;
        let p = policy();
        let argv: Vec<Vec<u8>> = std::iter::once("rsyncd")
            .chain(args.iter().copied())
            .map(|a| a.as_bytes().to_vec())
            .collect();
        let req = inband::parse(module, &argv).map(Request::InBand);
        let ctx = Context {
            policy: &p,
            client: "c",
            conn: None,
            server: Server {
                caps: CAPS,
                sandbox,
            },
        };
        decide(&ctx, req.as_ref())
    }

    /// openrsync sends receiver-side deletes to a sender (`openrsync -avz
    /// --delete host:www/ dst/` asks for `--delete-before -g -l -o -p -D -r
    /// -t -v -z . www/`). A sender has nothing to delete: the gate leaves
    /// them out of the argv, in any module, and the grant says so. What
    /// would delete on the server stays refused, and so does an in-band
    /// request, which the gate cannot rewrite.
    #[test]
    fn a_pull_drops_receiver_side_deletes() {
        let g = grant(
            "c",
            "rsync --server --sender --delete-before -g -l -o -p -D -r -t -v -z . www/",
        );
        let dropped: Vec<&str> = g.dropped.iter().map(|s| s.long).collect();
        assert_eq!(dropped, ["delete-before"]);
        assert_eq!(g.opts.len(), 9);
        assert!(g.opts.iter().all(|o| o.spec.rule != Rule::Delete));
        for opt in [
            "--delete",
            "--del",
            "--delete-before",
            "--delete-during",
            "--delete-delay",
            "--delete-after",
            "--delete-excluded",
            "--force",
        ] {
            for module in ["www", "nested", "backup"] {
                let g = grant("c", &format!("{PULL} {opt} . {module}/"));
                assert_eq!(g.dropped.len(), 1, "{opt} {module}");
                assert!(g.opts.iter().all(|o| o.spec.rule != Rule::Delete));
            }
        }
        // What deletes (or marks deletions) on the sending side is judged
        // as before.
        for opt in [
            "--remove-source-files",
            "--remove-sent-files",
            "--delete-missing-args",
        ] {
            assert_eq!(
                deny("c", &format!("{PULL} {opt} . www/")).code(),
                "option_not_permitted",
                "{opt}"
            );
        }
        // Pushes keep them, judged by the module's knobs.
        assert_eq!(
            deny("c", &format!("{PUSH} --delete-before . nested/")).code(),
            "option_not_permitted"
        );
        let g = grant("c", &format!("{PUSH} --delete-before . backup/"));
        assert!(g.dropped.is_empty());
        assert!(g.opts.iter().any(|o| o.spec.long == "delete-before"));
        // In-band: refused in a read-only module, as the daemon's own
        // `refuse options` does.
        let d = in_band(
            "www",
            &["--server", "--sender", "-r", "--delete-before", ".", "sub/"],
            true,
        );
        assert!(
            matches!(&d, Decision::Deny(r) if r.code() == "option_not_permitted"),
            "{d:?}"
        );
    }

    /// A path with spaces from an rsync older than 3.2.4 (or openrsync)
    /// arrives split at its spaces; the refusal says so.
    #[test]
    fn a_path_split_at_its_spaces_says_so() {
        let r = deny(
            "c",
            "rsync --server --sender -logDtpre.iLsf . www/dir with space/",
        );
        assert_eq!(r.code(), "split_path");
        assert_eq!(
            r.to_string(),
            "the path arrived as the separate words 'www/dir' 'with' 'space/': this looks \
             like a path with spaces from an rsync older than 3.2.4: use -s, or escape the spaces"
        );
        assert_eq!(
            deny("c", &format!("{PUSH} . backup/new dir/")).code(),
            "split_path"
        );
        assert_eq!(
            deny("c", &format!("{PULLR} . www/./a b")).code(),
            "split_path"
        );
        // Without -R a `/./` is only a `.`, also when telling a split path:
        // the first word is in module www, whichever of its parts is the
        // module's root.
        assert_eq!(
            deny("c", &format!("{PULL} . /srv/./www/a b")).code(),
            "split_path"
        );
        // Escaped (rsync 3.2.4 and later), it is one path.
        let g = grant("c", &format!("{PULL} . www/dir\\ with\\ space/"));
        assert_eq!(g.paths.len(), 1);
        // Several module paths, or a first word that is no module path,
        // are what they were.
        grant("c", &format!("{PULL} . www/a www/b"));
        assert_eq!(
            deny("c", &format!("{PULL} . nope/a b")).code(),
            "module_not_available"
        );
        assert_eq!(
            deny("c", &format!("{PUSH} . backup/a backup/b")).code(),
            "too_many_destinations"
        );
        assert_eq!(
            deny("c", &format!("{PULL} . www/a backup/b")).code(),
            "multiple_modules"
        );
    }

    /// `specials = true` (module `nested`): FIFOs and sockets may be
    /// created, device nodes may not. --drop-D would keep out both, so only
    /// the sandbox can hold it: without the sandbox a push that may create
    /// device nodes is refused, in both request forms.
    #[test]
    fn specials_let_fifos_in_and_keep_devices_out() {
        let old = RsyncCaps::default();
        // (caps, sandbox, options, allowed)
        let table: &[(RsyncCaps, bool, &str, bool)] = &[
            (CAPS, true, "-logDtpre.iLsfxCIvu", true),
            (old, true, "-logDtpre.iLsfxCIvu", true),
            (CAPS, false, "-logDtpre.iLsfxCIvu", false),
            (old, false, "-logDtpre.iLsfxCIvu", false),
            (CAPS, false, "-rlt --devices", false),
            (CAPS, false, "-rlt --specials", true),
            (old, false, "-rlt --specials", true),
            (CAPS, false, "-rlt", true),
        ];
        for (caps, sandbox, opts, allowed) in table {
            let cmd = format!("rsync --server {opts} . nested/x/");
            match with(
                Server {
                    caps: *caps,
                    sandbox: *sandbox,
                },
                "c",
                &cmd,
            ) {
                Decision::Checked(g) => {
                    assert!(allowed, "{caps:?} {sandbox} {opts}: allowed");
                    assert!(!g.added.contains(&Added::DropD), "{cmd}: {:?}", g.added);
                }
                Decision::Deny(r) => {
                    assert!(!allowed, "{caps:?} {sandbox} {opts}: {r}");
                    assert_eq!(r.code(), "nodes_unconfined");
                    assert!(r.to_string().contains("specials = true"), "{r}");
                }
                d => panic!("{d:?}"),
            }
            let mut args = vec!["--server"];
            args.extend(opts.split(' '));
            args.extend([".", "x/"]);
            let ib = in_band("nested", &args, *sandbox);
            assert_eq!(
                matches!(ib, Decision::InBand(_)),
                *allowed,
                "in-band {opts} sandbox={sandbox}: {ib:?}"
            );
        }
        // Without specials, --drop-D keeps both out as before.
        let g = grant("c", &format!("{PUSH} . backup/"));
        assert!(g.added.contains(&Added::DropD));
    }

    /// A `nice`/`ionice` prefix rides along with the grant; raising the
    /// priority is refused.
    #[test]
    fn priority_prefixes() {
        let g = grant(
            "c",
            "nice -n 19 ionice -c3 rsync --server --sender -logDtpre.iLsfxCIvu . www/",
        );
        assert_eq!(g.priority.nice, Some(19));
        assert_eq!(
            g.priority.io,
            Some(crate::request::priority::IoPriority::Idle)
        );
        let g = grant("c", &format!("{PULL} . www/"));
        assert!(g.priority.is_none());
        match run("c", None, "ionice -c2 -n7 rsync --server --daemon .") {
            Decision::Daemon(d) => assert_eq!(
                d.priority.io,
                Some(crate::request::priority::IoPriority::BestEffort(7))
            ),
            other => panic!("{other:?}"),
        }
        for cmd in [
            "nice -n -5 rsync --server --sender -r . www/",
            "ionice -c1 rsync --server --sender -r . www/",
            "ionice -c realtime rsync --server --daemon .",
        ] {
            let r = deny("c", cmd);
            assert_eq!(r.code(), "priority_refused", "{cmd}: {r}");
        }
        // Options before --server are judged like any other.
        let g = grant(
            "c",
            "rsync --fake-super --server -logDtpre.iLsfxCIvu . backup/",
        );
        assert!(g.opts.iter().any(|o| o.spec.long == "fake-super"));
        assert_eq!(
            deny("c", "rsync --log-file=/tmp/x --server -r . backup/").code(),
            "option_refused"
        );
        assert_eq!(
            deny("c", "rsync -L --server --sender -r . www/").code(),
            "option_not_permitted"
        );
    }

    #[test]
    fn files_from_needs_confine_root() {
        let cmd = format!("{PULL} --files-from=- --from0 . www/");
        let no_confine_root = RsyncCaps {
            confine_root: false,
            drop_d: true,
        };
        for (caps, sandbox, allowed) in [
            // The sandbox does not stop rsync listing what a link leads to.
            (no_confine_root, true, false),
            (no_confine_root, false, false),
            (CAPS, false, true),
            (CAPS, true, true),
        ] {
            match with(Server { caps, sandbox }, "c", &cmd) {
                Decision::Checked(g) => assert!(allowed, "{caps:?} {sandbox}: {g:?}"),
                Decision::Deny(r) => {
                    assert!(!allowed, "{caps:?} {sandbox}: {r}");
                    assert_eq!(r.code(), "files_from_unconfined");
                    assert!(r.to_string().contains("--files-from"), "{r}");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    /// `--files-from` implies -R for the listed names; the source is the
    /// base directory, whatever the module's directory is called.
    #[test]
    fn files_from_sources_are_base_directories() {
        let g = grant("c", &format!("{PULLR} --files-from=- --from0 . www/"));
        assert_eq!(g.sources, Sources::FilesFromBase);
        let g = grant("c", &format!("{PULLR} . www/a/./b"));
        assert_eq!(g.sources, Sources::Relative);
        let g = grant("c", &format!("{PULL} . www/a"));
        assert_eq!(g.sources, Sources::Plain);
    }

    /// The pre-xfer hook's requests: the same rules, with what the daemon
    /// form cannot do refused by name, and what it does itself allowed.
    #[test]
    fn in_band_requests() {
        use crate::request::inband;
        let p = policy();
        let run = |module: &str, args: &[&str], sandbox: bool| {
            let argv: Vec<Vec<u8>> = std::iter::once("rsyncd")
                .chain(args.iter().copied())
                .map(|a| a.as_bytes().to_vec())
                .collect();
            let req = inband::parse(module, &argv).map(Request::InBand);
            let ctx = Context {
                policy: &p,
                client: "c",
                conn: None,
                server: Server {
                    caps: RsyncCaps::default(),
                    sandbox,
                },
            };
            decide(&ctx, req.as_ref())
        };
        let code = |d: Decision| match d {
            Decision::Deny(r) => r.code(),
            Decision::InBand(_) => "allow",
            other => panic!("{other:?}"),
        };
        let pull = ["--server", "--sender", "-logDtpre.iLsfxCIvu"];
        let push = ["--server", "-logDtpre.iLsfxCIvu"];
        let cat = |a: &[&str], b: &[&str]| -> Vec<String> {
            a.iter().chain(b).map(|s| s.to_string()).collect()
        };
        let table: &[(&str, Vec<String>, bool, &str)] = &[
            ("www", cat(&pull, &[".", "sub/"]), false, "allow"),
            // The daemon confines --files-from names itself: no sandbox needed.
            (
                "www",
                cat(&pull, &["--files-from=/list", ".", ""]),
                false,
                "allow",
            ),
            (
                "www",
                cat(&pull, &["--files-from=list", "--from0", ".", ""]),
                false,
                "allow",
            ),
            // -D pushes: only the sandbox keeps nodes out in daemon form.
            (
                "backup",
                cat(&push, &[".", "x/"]),
                false,
                "nodes_unconfined",
            ),
            ("backup", cat(&push, &[".", "x/"]), true, "allow"),
            // A module that takes device nodes needs no sandbox for them.
            ("links", cat(&push, &[".", "x/"]), false, "allow"),
            (
                "backup",
                cat(&["--server", "-rlt"], &[".", "x/"]),
                false,
                "allow",
            ),
            // overwrite = false needs the client's own --ignore-existing,
            // write_only = true its own --whole-file.
            (
                "drop",
                cat(&["--server", "-rltW"], &[".", ""]),
                true,
                "option_not_permitted",
            ),
            (
                "drop",
                cat(&["--server", "-rlt", "--ignore-existing"], &[".", ""]),
                true,
                "option_not_permitted",
            ),
            (
                "drop",
                cat(&["--server", "-rltW", "--ignore-existing"], &[".", ""]),
                true,
                "allow",
            ),
            // Absolute option values are rooted in the module.
            (
                "backup",
                cat(&["--server", "-rlt", "--link-dest=/prev"], &[".", "cur/"]),
                true,
                "allow",
            ),
            // Not the client's module; a path leading to another module.
            (
                "secret",
                cat(&pull, &[".", ""]),
                true,
                "module_not_available",
            ),
            // Options after the '.'.
            (
                "www",
                cat(&pull, &[".", "x", "--files-from=/etc/passwd"]),
                true,
                "option_after_paths",
            ),
            // Aliases rsync accepts.
            ("www", cat(&pull, &["--zt=2", ".", ""]), true, "allow"),
        ];
        for (module, args, sandbox, want) in table {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            assert_eq!(
                code(run(module, &args, *sandbox)),
                *want,
                "{module} {args:?} sandbox={sandbox}"
            );
        }
    }

    /// In a `host::` request an absolute option value is rooted in the
    /// module (leading slashes off) and a relative one stays relative;
    /// `--files-from` names are in the module either way, `-` is stdin.
    #[test]
    fn in_band_path_values() {
        let value = |module: &str, opt: &str| {
            let d = in_band(module, &["--server", "-rlt", opt, ".", "cur/"], true);
            let Decision::InBand(g) = d else {
                panic!("{opt}: {d:?}")
            };
            g.path_opts[0].value.clone()
        };
        let PathValue::InModule(t) = value("backup", "--link-dest=//prev/a") else {
            panic!("absolute --link-dest")
        };
        assert_eq!(
            t.comps,
            [Comp::Name(b"prev".to_vec()), Comp::Name(b"a".to_vec())]
        );
        assert!(matches!(
            value("backup", "--link-dest=prev"),
            PathValue::DestRelative { spelled, .. } if spelled == b"prev"
        ));
        let pull = |opt: &str| {
            let d = in_band("www", &["--server", "--sender", "-r", opt, ".", ""], true);
            let Decision::InBand(g) = d else {
                panic!("{opt}: {d:?}")
            };
            g.path_opts[0].value.clone()
        };
        assert_eq!(pull("--files-from=-"), PathValue::Stdin);
        let PathValue::InModule(t) = pull("--files-from=lists/a") else {
            panic!("relative --files-from")
        };
        assert_eq!(
            t.comps,
            [Comp::Name(b"lists".to_vec()), Comp::Name(b"a".to_vec())]
        );
    }

    #[test]
    fn module_paths_map_lexically() {
        let g = grant("c", &format!("{PULL} . www"));
        assert_eq!(g.paths[0].comps, []);
        assert_eq!(g.paths[0].trailing, Trailing::None);
        let g = grant("c", &format!("{PULL} . www/a/b/"));
        assert_eq!(
            g.paths[0].comps,
            [Comp::Name(b"a".to_vec()), Comp::Name(b"b".to_vec())]
        );
        assert_eq!(g.paths[0].trailing, Trailing::Slash);
        let g = grant("c", &format!("{PULL} . www/a/."));
        assert_eq!(g.paths[0].trailing, Trailing::SlashDot);
        let g = grant("c", &format!("{PULL} . www//a/../b"));
        assert_eq!(
            g.paths[0].comps,
            [
                Comp::Name(b"a".to_vec()),
                Comp::Parent,
                Comp::Name(b"b".to_vec())
            ]
        );
        // Absolute paths: the most specific module wins.
        let g = grant("c", &format!("{PUSH} . /srv/www/sub/x"));
        assert_eq!(g.module, "nested");
        assert_eq!(g.paths[0].comps, [Comp::Name(b"x".to_vec())]);
        let g = grant("c", &format!("{PULL} . /srv/www/subway"));
        assert_eq!(g.module, "www");
        // The root module holds every absolute path.
        let g = grant("rooty", &format!("{PULL} . /etc/hostname"));
        assert_eq!(g.module, "root");
        assert_eq!(g.paths[0].prefix, Some(vec![]));
        assert_eq!(g.paths[0].comps.len(), 2);
    }

    #[test]
    fn relative_markers() {
        let g = grant(
            "c",
            "rsync --server --sender -logDtprRe.iLsfxCIvu . www/a/./b/c",
        );
        assert_eq!(g.sources, Sources::Relative);
        assert_eq!(g.paths[0].marker, Some(1));
        // `/./.`: the marker, then the directory's contents.
        let g = grant(
            "c",
            "rsync --server --sender -logDtprRe.iLsfxCIvu . www/a/./.",
        );
        assert_eq!(g.paths[0].marker, Some(1));
        assert_eq!(g.paths[0].trailing, Trailing::SlashDot);
        let g = grant(
            "c",
            "rsync --server --sender -logDtprRe.iLsfxCIvu . www/./.",
        );
        assert_eq!(g.paths[0].marker, Some(0));
        let g = grant(
            "c",
            "rsync --server --sender -logDtprRe.iLsfxCIvu . /srv/www/./b",
        );
        assert_eq!(g.paths[0].marker, Some(0));
        assert_eq!(
            deny(
                "c",
                "rsync --server --sender -logDtprRe.iLsfxCIvu . /srv/./www/b"
            )
            .code(),
            "marker_outside_module"
        );
        let g = grant(
            "c",
            "rsync --server --sender -logDtprRe.iLsfxCIvu . ./www/b",
        );
        assert_eq!(g.paths[0].marker, None);
        // Without -R a /./ is just a '.'.
        let g = grant("c", &format!("{PULL} . /srv/./www/b"));
        assert_eq!(g.paths[0].marker, None);
        assert_eq!(g.module, "www");
        let g = grant("c", &format!("{PULL} . www/a/./b"));
        assert_eq!(g.paths[0].marker, None);
    }

    #[test]
    fn globs_only_on_pulls() {
        let g = grant("c", &format!("{PULL} . www/*.txt"));
        assert_eq!(g.paths[0].comps, [Comp::Glob(b"*.txt".to_vec())]);
        let g = grant("c", &format!("{PULL} . www/a\\*b"));
        assert_eq!(g.paths[0].comps, [Comp::Name(b"a*b".to_vec())]);
        let g = grant("c", &format!("{PUSH} . backup/*"));
        assert_eq!(g.paths[0].comps, [Comp::Name(b"*".to_vec())]);
        assert_eq!(
            deny("c", &format!("{PULL} . w*/x")).code(),
            "module_not_available"
        );
    }

    #[test]
    fn path_options_map() {
        let g = grant(
            "c",
            &format!("{PUSH} --link-dest ../prev --partial-dir .p . backup/cur/"),
        );
        assert_eq!(
            g.path_opts[0].value,
            PathValue::DestRelative {
                spelled: b"../prev".to_vec(),
                comps: vec![Comp::Parent, Comp::Name(b"prev".to_vec())]
            }
        );
        assert_eq!(
            g.path_opts[1].value,
            PathValue::PerDirectory(b".p".to_vec())
        );
        // Path options are not kept among the plain options.
        assert!(
            g.opts
                .iter()
                .all(|o| !matches!(o.spec.takes, Takes::Value(Value::Path(_))))
        );
        let g = grant(
            "c",
            "rsync --server --sender -blogDtpre.iLsfxCIvu --backup-dir x . www/",
        );
        assert_eq!(g.path_opts[0].value, PathValue::Dropped);
        // An absolute --partial-dir is a path like any other: outside the
        // client's modules it is refused, not taken as a per-directory name.
        let d = deny("c", &format!("{PUSH} --partial-dir /etc . backup/cur/"));
        assert_eq!(d.code(), "outside_modules", "{d}");
        // On a push it is kept, as a path relative to the destination.
        let g = grant("c", &format!("{PUSH} --backup-dir old . backup/cur/"));
        assert!(
            matches!(&g.path_opts[0].value, PathValue::DestRelative { spelled, .. } if spelled == b"old"),
            "{:?}",
            g.path_opts[0].value
        );
    }
}
