//! The decision: a pure function of the policy, the client, the connection
//! and the parsed request. It maps every path lexically onto a module,
//! applies every policy rule, and returns a typed [`Decision`]. It touches no
//! filesystem: resolving symlinks and pinning directories is the next stage
//! ([`crate::paths`]), which can only narrow a grant, never widen it.

use std::net::IpAddr;

use crate::deny::{DenyReason, shown};
use crate::glob;
use crate::policy::{Client, Module, Policy};
use crate::request::options::{Meaning, PathRole, Rule, Spec, Takes, Value};
use crate::request::{Opt, OptValue, ParseError, Request, ServerArgs, Word};

/// The client end of the SSH connection (from `SSH_CONNECTION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conn {
    pub addr: IpAddr,
    pub port: u16,
}

/// What the installed rsync supports (probed once, see [`crate::rsync`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RsyncCaps {
    pub confine_root: bool,
    pub drop_d: bool,
}

/// Everything the decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub policy: &'a Policy,
    pub client: &'a str,
    pub conn: Option<Conn>,
    pub caps: RsyncCaps,
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
    /// Refuse.
    Deny(DenyReason),
}

/// Daemon-over-SSH grant: the client's modules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonGrant {
    pub modules: Vec<String>,
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

/// A checked-mode grant: what may run, before the filesystem is consulted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub module: String,
    pub mode: Mode,
    /// `-R` in effect.
    pub relative: bool,
    /// The client's non-path options, in order, all allowed.
    pub opts: Vec<Opt>,
    /// Path-valued options.
    pub path_opts: Vec<PathOpt>,
    /// Positional paths.
    pub paths: Vec<Target>,
    /// Options the gate adds.
    pub added: Vec<Added>,
}

/// An option the gate adds to what the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// `--ignore-existing` (`overwrite = false`).
    IgnoreExisting,
    /// `--drop-D` (receivers, `devices = false`).
    DropD,
    /// `--munge-links` (`munge_links = true`).
    MungeLinks,
    /// `--confine-root=<module root>`.
    ConfineRoot,
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

/// One path component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Comp {
    Name(Vec<u8>),
    /// A component with wildcards (pull paths only), as a pattern.
    Glob(Vec<u8>),
    Parent,
}

/// What followed the last component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trailing {
    None,
    /// `dir/`
    Slash,
    /// `dir/.`
    SlashDot,
}

/// A path inside a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// As the client spelled it (for messages and the audit log).
    pub spelled: Vec<u8>,
    /// For an absolute path: the components the client wrote up to the
    /// module root (what `-R` transmits above the module).
    pub prefix: Option<Vec<Vec<u8>>>,
    /// Components below the module root.
    pub comps: Vec<Comp>,
    /// `-R`'s first `/./`: how many of `comps` lie before it.
    pub marker: Option<usize>,
    pub trailing: Trailing,
}

impl Target {
    pub fn shown(&self) -> String {
        shown(&self.spelled)
    }
}

/// A path split into components.
struct Parsed {
    absolute: bool,
    comps: Vec<Comp>,
    /// Index into `comps` of the first interior `/./`.
    marker: Option<usize>,
    trailing: Trailing,
}

/// Split a word into components; wildcards are kept only when `globs`.
fn parse_path(word: &Word, globs: bool) -> Parsed {
    let pattern = if globs { word.glob.as_deref() } else { None };
    let src: &[u8] = pattern.unwrap_or(&word.bytes);
    let absolute = src.first() == Some(&b'/');
    let mut pieces: Vec<&[u8]> = src.split(|&b| b == b'/').collect();
    let mut trailing = Trailing::None;
    if src.len() > 1 && src.ends_with(b"/") {
        trailing = Trailing::Slash;
    } else if src.len() > 1 && src.ends_with(b"/.") {
        trailing = Trailing::SlashDot;
        pieces.pop();
    }
    let mut comps = Vec::new();
    let mut marker = None;
    let last = pieces.len().saturating_sub(1);
    for (i, piece) in pieces.iter().enumerate() {
        match *piece {
            b"" => {}
            b"." => {
                if i > 0 && i < last && marker.is_none() {
                    marker = Some(comps.len());
                }
            }
            b".." => comps.push(Comp::Parent),
            p if pattern.is_some() => {
                if glob::has_wildcard(p) {
                    comps.push(Comp::Glob(p.to_vec()));
                } else {
                    comps.push(Comp::Name(glob::literal(p).unwrap_or_else(|| p.to_vec())));
                }
            }
            p => comps.push(Comp::Name(p.to_vec())),
        }
    }
    Parsed {
        absolute,
        comps,
        marker,
        trailing,
    }
}

fn module_components(m: &Module) -> Vec<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    m.path
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(n) => Some(n.as_bytes().to_vec()),
            _ => None,
        })
        .collect()
}

/// Map a path word onto one of the client's modules.
fn locate<'p>(
    policy: &'p Policy,
    client: &'p Client,
    word: &Word,
    globs: bool,
    allow_module_form: bool,
) -> Result<(&'p Module, Target), DenyReason> {
    locate_rel(policy, client, word, globs, allow_module_form, false)
}

/// [`locate`], with `-R`'s `/./` marker honoured when `relative` (without
/// `-R` a `/./` is just a `.`).
fn locate_rel<'p>(
    policy: &'p Policy,
    client: &'p Client,
    word: &Word,
    globs: bool,
    allow_module_form: bool,
    relative: bool,
) -> Result<(&'p Module, Target), DenyReason> {
    let spelled = shown(&word.bytes);
    if word.tilde {
        return Err(DenyReason::HomeRelative(spelled));
    }
    let mut p = parse_path(word, globs);
    if !relative {
        p.marker = None;
    }
    if p.absolute {
        let mut best: Option<(&Module, Vec<Vec<u8>>)> = None;
        for m in policy.client_modules(client) {
            let root = module_components(m);
            let is_prefix = root.len() <= p.comps.len()
                && root
                    .iter()
                    .zip(&p.comps)
                    .all(|(r, c)| matches!(c, Comp::Name(n) if n == r));
            if is_prefix && best.as_ref().is_none_or(|(_, b)| root.len() > b.len()) {
                best = Some((m, root));
            }
        }
        let Some((m, root)) = best else {
            return Err(DenyReason::OutsideModules(spelled));
        };
        let n = root.len();
        let marker = match p.marker {
            Some(k) if k < n => return Err(DenyReason::MarkerOutsideModule(spelled)),
            Some(k) => Some(k - n),
            None => None,
        };
        return Ok((
            m,
            Target {
                spelled: word.bytes.clone(),
                prefix: Some(root),
                comps: p.comps.into_iter().skip(n).collect(),
                marker,
                trailing: p.trailing,
            },
        ));
    }
    if !allow_module_form {
        return Err(DenyReason::NoModule(spelled));
    }
    let mut comps = p.comps.into_iter();
    let name = match comps.next() {
        Some(Comp::Name(n)) => n,
        Some(Comp::Glob(g)) => return Err(DenyReason::ModuleNotAvailable(shown(&g))),
        Some(Comp::Parent) | None => return Err(DenyReason::NoModule(spelled)),
    };
    let name_text = String::from_utf8_lossy(&name);
    let module = client
        .modules
        .iter()
        .find(|m| m.as_bytes() == name.as_slice())
        .and_then(|m| policy.modules.get(m))
        .ok_or_else(|| DenyReason::ModuleNotAvailable(shown(name_text.as_bytes())))?;
    let marker = match p.marker {
        // A marker before the module name ("./www" is not a marker).
        Some(0) => return Err(DenyReason::MarkerOutsideModule(spelled)),
        Some(k) => Some(k - 1),
        None => None,
    };
    Ok((
        module,
        Target {
            spelled: word.bytes.clone(),
            prefix: None,
            comps: comps.collect(),
            marker,
            trailing: p.trailing,
        },
    ))
}

/// Decide on a request.
pub fn decide(ctx: &Context<'_>, request: Result<&Request, &ParseError>) -> Decision {
    match decide_inner(ctx, request) {
        Ok(d) => d,
        Err(r) => Decision::Deny(r),
    }
}

/// Check the client and its source address.
pub fn admit<'p>(ctx: &Context<'p>) -> Result<&'p Client, DenyReason> {
    let client = ctx
        .policy
        .clients
        .get(ctx.client)
        .ok_or_else(|| DenyReason::UnknownClient(shown(ctx.client.as_bytes())))?;
    if !client.from.is_empty() {
        let conn = ctx.conn.ok_or(DenyReason::NoSourceAddress)?;
        if !client.from.iter().any(|n| n.contains(conn.addr)) {
            return Err(DenyReason::SourceNotAllowed(
                crate::policy::net::canonical(conn.addr).to_string(),
            ));
        }
    }
    Ok(client)
}

fn decide_inner(
    ctx: &Context<'_>,
    request: Result<&Request, &ParseError>,
) -> Result<Decision, DenyReason> {
    let client = admit(ctx)?;
    let request = request.map_err(|e| DenyReason::Parse(e.clone()))?;
    match request {
        Request::Probe => Ok(Decision::Probe),
        Request::Other { program } => {
            if client.trigger.is_some() {
                Err(DenyReason::TriggerUnavailable)
            } else {
                Err(DenyReason::CommandNotAllowed(shown(program.as_bytes())))
            }
        }
        Request::Daemon => {
            if client.modules.is_empty() {
                return Err(DenyReason::NoModules);
            }
            Ok(Decision::Daemon(DaemonGrant {
                modules: client.modules.clone(),
            }))
        }
        Request::Server(args) => {
            if client.modules.is_empty() {
                return Err(DenyReason::NoModules);
            }
            checked(ctx, client, args).map(Decision::Checked)
        }
    }
}

/// Options refused whatever the module: checked before paths, so a
/// smuggling attempt is named as such.
fn check_refused(args: &ServerArgs) -> Result<(), DenyReason> {
    for o in &args.opts {
        match o.spec.rule {
            Rule::Refuse(why) => {
                return Err(DenyReason::OptionRefused {
                    option: o.spec.display(),
                    why,
                });
            }
            Rule::Secluded => return Err(DenyReason::SecludedArgs),
            _ => {}
        }
    }
    Ok(())
}

fn check_module_rules(m: &Module, args: &ServerArgs) -> Result<(), DenyReason> {
    let not_permitted = |o: &Opt, knob: &'static str| DenyReason::OptionNotPermitted {
        option: o.spec.display(),
        module: m.name.clone(),
        knob,
    };
    for o in &args.opts {
        match o.spec.rule {
            Rule::Delete if !m.delete => return Err(not_permitted(o, "delete = false")),
            Rule::Delete | Rule::Replaces if !m.overwrite => {
                return Err(not_permitted(o, "overwrite = false"));
            }
            Rule::FollowLinks if !m.follow_links => {
                return Err(not_permitted(o, "follow_links = false"));
            }
            Rule::Devices if !m.devices => return Err(not_permitted(o, "devices = false")),
            _ => {}
        }
    }
    Ok(())
}

fn checked<'p>(
    ctx: &Context<'p>,
    client: &'p Client,
    args: &ServerArgs,
) -> Result<Grant, DenyReason> {
    check_refused(args)?;
    let mode = if args.sender {
        Mode::Sender
    } else {
        Mode::Receiver
    };
    let relative = args.relative();
    if args.paths.is_empty() {
        return Err(DenyReason::NoPath);
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
        let (m, t) = locate_rel(ctx.policy, client, w, mode == Mode::Sender, true, relative)?;
        same_module(&mut module, m)?;
        paths.push(t);
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
        let value = path_option(ctx, client, o.spec, role, word, mode)?;
        if let PathValue::InModule(t) = &value {
            let (m, _) = locate(
                ctx.policy,
                client,
                &Word::plain(t.spelled.clone()),
                false,
                true,
            )?;
            same_module(&mut module, m)?;
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
    match mode {
        Mode::Sender if !m.readable() => return Err(DenyReason::WriteOnly(m.name.clone())),
        Mode::Receiver if !m.writable() => return Err(DenyReason::ReadOnly(m.name.clone())),
        _ => {}
    }
    check_module_rules(m, args)?;
    // Option rules that depend on the module's side effects.
    for po in &path_opts {
        if po.role == PathRole::FilesFrom && !matches!(po.value, PathValue::Stdin) && !m.readable()
        {
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
            return Err(DenyReason::OptionNotPermitted {
                option: o.spec.display(),
                module: m.name.clone(),
                knob: "read_only = true",
            });
        }
    }
    // The names a --files-from list selects are resolved by rsync alone:
    // only its --confine-root or the kernel sandbox keeps them inside.
    if !ctx.caps.confine_root
        && ctx.policy.gate.sandbox == crate::policy::Sandbox::Off
        && let Some(po) = path_opts.iter().find(|p| p.role == PathRole::FilesFrom)
    {
        return Err(DenyReason::RsyncTooOld(format!(
            "{} needs rsync's --confine-root or the kernel sandbox to keep the listed names inside the module",
            po.spec.display()
        )));
    }
    let mut added = Vec::new();
    if mode == Mode::Receiver && !m.overwrite {
        added.push(Added::IgnoreExisting);
    }
    if mode == Mode::Receiver && !m.devices {
        if ctx.caps.drop_d {
            added.push(Added::DropD);
        } else if args.has(Meaning::CreatesNodes) {
            return Err(DenyReason::RsyncTooOld(
                "it lacks --drop-D, so -D cannot be confined (set devices = true or upgrade rsync)"
                    .into(),
            ));
        }
    }
    if m.munge_links {
        added.push(Added::MungeLinks);
    }
    if ctx.caps.confine_root {
        added.push(Added::ConfineRoot);
    }
    Ok(Grant {
        module: m.name.clone(),
        mode,
        relative,
        opts,
        path_opts,
        paths,
        added,
    })
}

fn path_option<'p>(
    ctx: &Context<'p>,
    client: &'p Client,
    spec: &'static Spec,
    role: PathRole,
    word: &Word,
    mode: Mode,
) -> Result<PathValue, DenyReason> {
    let spelled = shown(&word.bytes);
    if word.tilde {
        return Err(DenyReason::HomeRelative(spelled));
    }
    let pushing = mode == Mode::Receiver;
    match role {
        PathRole::FilesFrom => {
            if word.bytes == b"-" {
                return Ok(PathValue::Stdin);
            }
            let (_, t) = locate(ctx.policy, client, word, false, true)?;
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
            if word.bytes.starts_with(b"/") {
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

    const POLICY: &str = r#"
[modules.www]
path = "/srv/www"

[modules.nested]
path = "/srv/www/sub"
read_only = false

[modules.backup]
path = "/srv/backup"
read_only = false
delete = true

[modules.drop]
path = "/srv/drop"
read_only = false
write_only = true
overwrite = false

[modules.links]
path = "/srv/links"
follow_links = true
devices = true

[modules.root]
path = "/"

[modules.secret]
path = "/srv/secret"

[clients.c]
modules = ["www", "nested", "backup", "drop", "links"]

[clients.rooty]
modules = ["root"]

[clients.fenced]
modules = ["www"]
from = ["192.0.2.10", "2001:db8::/32"]

[triggers.t]
command = ["/bin/true"]

[clients.trig]
trigger = "t"
"#;

    fn policy() -> Policy {
        policy::load_text(Path::new("/p.toml"), POLICY).unwrap()
    }

    const CAPS: RsyncCaps = RsyncCaps {
        confine_root: true,
        drop_d: true,
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
            caps: CAPS,
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
                    "links".into()
                ]
            })
        );
        assert_eq!(deny("c", "id"), DenyReason::CommandNotAllowed("id".into()));
        assert_eq!(deny("trig", "anything"), DenyReason::TriggerUnavailable);
        assert_eq!(
            deny("trig", "rsync --server --daemon ."),
            DenyReason::NoModules
        );
        assert_eq!(deny("c", "rsync; id").code(), "unparsable_command");
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
                Added::DropD,
                Added::MungeLinks,
                Added::ConfineRoot
            ]
        );
        let g = grant("c", &format!("{PULL} . www/"));
        assert_eq!(g.added, [Added::ConfineRoot]);
        let g = grant("c", &format!("{PUSH} . backup/"));
        assert_eq!(
            g.added,
            [Added::DropD, Added::MungeLinks, Added::ConfineRoot]
        );
    }

    #[test]
    fn old_rsync_without_drop_d_refuses_device_pushes() {
        let p = policy();
        let ctx = Context {
            policy: &p,
            client: "c",
            conn: None,
            caps: RsyncCaps::default(),
        };
        let req = parse_command(format!("{PUSH} . backup/").as_bytes());
        assert!(matches!(
            decide(&ctx, req.as_ref()),
            Decision::Deny(DenyReason::RsyncTooOld(_))
        ));
        let req = parse_command(b"rsync --server -rlt . backup/");
        assert!(
            matches!(decide(&ctx, req.as_ref()), Decision::Checked(g) if g.added == [Added::MungeLinks])
        );
    }

    #[test]
    fn files_from_needs_confine_root_or_the_sandbox() {
        let mut p = policy();
        let cmd = format!("{PULL} --files-from=- --from0 . www/");
        let req = parse_command(cmd.as_bytes());
        let old = RsyncCaps {
            confine_root: false,
            drop_d: true,
        };
        let ctx = Context {
            policy: &p,
            client: "c",
            conn: None,
            caps: old,
        };
        // The default sandbox (best effort) is enough...
        assert!(matches!(decide(&ctx, req.as_ref()), Decision::Checked(_)));
        // ...but with it off and no --confine-root, the list is unconfined.
        p.gate.sandbox = crate::policy::Sandbox::Off;
        let ctx = Context {
            policy: &p,
            client: "c",
            conn: None,
            caps: old,
        };
        assert!(matches!(
            decide(&ctx, req.as_ref()),
            Decision::Deny(DenyReason::RsyncTooOld(_))
        ));
        let ctx = Context { caps: CAPS, ..ctx };
        assert!(matches!(decide(&ctx, req.as_ref()), Decision::Checked(_)));
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
        assert!(g.relative);
        assert_eq!(g.paths[0].marker, Some(1));
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
    }
}
