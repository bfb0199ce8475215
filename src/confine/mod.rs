//! Module mapping, confinement and pinning.
//!
//! The decision mapped every path onto a module lexically. Here each one is
//! resolved physically under the module's real root, following symlinks the
//! way the kernel (and so rsync) would, and refused if it leaves the module.
//! Every directory the check relied on is then opened and held; rsync is
//! handed `/proc/self/fd/N/...` names for them, so a path cannot be swapped
//! between the check and rsync's use of it. After opening, the descriptor's
//! real path is read back and must be the one the check saw (otherwise the
//! request is refused as a race). Directories a push needs that do not
//! exist yet are planned ([`MakeDir`]) for the exec stage to create and
//! hold. What rsync is still given by name after a held directory (a last
//! name it does not follow, one a push makes a file or a directory, the
//! directories `-R` transmits) must exist where rsync only reads, and lie
//! where no one but root and the account can replace it with a symlink.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode as FileMode;

use crate::decide::trace::Step as TraceStep;
use crate::decide::{
    Comp, Grant, Mode, NoTrace, PathOpt, PathValue, Sources, Target, Tracer, Trailing,
};
use crate::deny::{DenyReason, shown};
use crate::escape;
use crate::glob;
pub use crate::host::Account;
use crate::policy::Module;
use crate::request::options::{PathRole, Spec};
use crate::trust;

/// Most symlinks followed while resolving one path.
const MAX_LINKS: usize = 40;
/// Advice when a module root cannot be sent under the name the client
/// asked for.
const MODULE_NAME_HINT: &str = "add a trailing slash to transfer the module's contents";
const MODULE_NAME_HINT_RELATIVE: &str =
    "with -R, mark where the transferred path starts with /./ (e.g. MODULE/./dir)";
/// Advice when a push destination's last component would be looked up
/// again by rsync where a link could be planted.
const DEST_HINT: &str = "end the destination with '/' to push into a directory the gate creates and holds, or push into an existing directory";
/// Advice when the directories a -R pull transmits would be walked again
/// where a link could be planted.
const RELATIVE_HINT: &str =
    "with -R, put the /./ marker just before the last component (MODULE/dir/./name)";

/// Most paths a request's wildcards may expand to.
pub const MAX_MATCHES: usize = 10_000;

/// A held directory (or file) rsync reaches through `/proc/self/fd/N`.
#[derive(Debug)]
pub struct Pin {
    pub fd: OwnedFd,
    /// Where the check found it.
    pub real: PathBuf,
}

impl Pin {
    pub fn proc_path(&self) -> PathBuf {
        proc_fd(&self.fd)
    }
}

fn proc_fd(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// The confined form of a grant's paths.
#[derive(Debug, Default)]
pub struct Confined {
    /// The module's real root.
    pub root: PathBuf,
    /// Positional arguments for rsync.
    pub args: Vec<OsString>,
    /// Path-valued options for rsync, in the client's order.
    pub path_opts: Vec<(&'static Spec, OsString)>,
    /// What the gate did that the client should know of (audit and explain).
    pub notes: Vec<String>,
    /// Held descriptors; they must stay open until rsync has started.
    pub pins: Vec<Pin>,
    /// Directories the exec stage creates (and holds) before rsync starts.
    pub mkdirs: Vec<MakeDir>,
}

/// A directory that does not exist yet and that rsync is handed by
/// descriptor: the exec stage creates `names` one by one below `parent`
/// (never following a link), checks the result is `expect`, and moves its
/// descriptor onto `slot`, which the argv already names. Until then `slot`
/// holds `/dev/null`, so a plan whose creation did not happen names nothing
/// rsync could use.
#[derive(Debug)]
pub struct MakeDir {
    pub parent: OwnedFd,
    pub names: Vec<Vec<u8>>,
    pub mode: u32,
    pub expect: PathBuf,
    pub slot: OwnedFd,
    /// The path as the client spelled it (for a refusal).
    pub spelled: String,
}

/// Check a module's root (ownership, type, home directory, the gate's own
/// files) and return its real path. `protected` lists the gate's files (the
/// policy, the audit log, the lock directory, rsync itself), which no
/// writable module may contain.
pub fn check_module(
    module: &Module,
    account: &Account,
    protected: &[PathBuf],
) -> Result<PathBuf, DenyReason> {
    let unsafe_module = |why: String| DenyReason::ModuleUnsafe {
        module: module.name.clone(),
        why,
    };
    let missing = |why: String| DenyReason::ModuleMissing {
        module: module.name.clone(),
        why,
    };
    let shown = module.path.display();
    match std::fs::metadata(&module.path) {
        Ok(md) if md.is_dir() => {}
        Ok(_) => return Err(missing(format!("{shown} is not a directory"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(missing(
                if std::fs::symlink_metadata(&module.path).is_ok() {
                    format!("{shown} is a symlink to something that does not exist")
                } else {
                    format!("{shown} does not exist")
                },
            ));
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
            return Err(missing(format!(
                "{shown} does not exist (a component of it is not a directory)"
            )));
        }
        // Unreadable: the ownership walk says why.
        Err(_) => {}
    }
    let real = trust::check_path(&module.path, account.uid).map_err(unsafe_module)?;
    match std::fs::metadata(&real) {
        Ok(md) if md.is_dir() => {}
        Ok(_) => {
            return Err(unsafe_module(format!(
                "{} is not a directory",
                module.path.display()
            )));
        }
        Err(e) => return Err(unsafe_module(format!("{}: {e}", module.path.display()))),
    }
    if module.writable()
        && let Some(home) = &account.home
        && trust::contains_home(&real, home)
    {
        return Err(DenyReason::ModuleContainsHome(module.name.clone()));
    }
    if module.writable()
        && let Some(p) = protected.iter().find(|p| trust::is_within(p, &real))
    {
        return Err(unsafe_module(format!(
            "it is writable and contains the gate's own file {}",
            p.display()
        )));
    }
    Ok(real)
}

/// The modules of a daemon session, each checked as [`check_module`] does;
/// unsafe ones are left out (with a note, and the refusal checked mode
/// would give in `left_out`), as checked mode refuses them.
pub fn check_modules<'p>(
    policy: &'p crate::policy::Policy,
    names: &[String],
    account: &Account,
    protected: &[PathBuf],
    notes: &mut Vec<String>,
    left_out: &mut Vec<DenyReason>,
) -> Vec<(&'p Module, PathBuf)> {
    let mut out: Vec<(&Module, PathBuf)> = Vec::new();
    for name in names {
        let Some(m) = policy.modules.get(name) else {
            continue;
        };
        if out.iter().any(|(seen, _)| seen.name == *name) {
            continue;
        }
        match check_module(m, account, protected) {
            Ok(root) => out.push((m, root)),
            Err(r) => {
                notes.push(format!("module '{name}' left out: {}", r.server_detail()));
                left_out.push(r);
            }
        }
    }
    out
}

/// What a resolution found.
#[derive(Debug)]
struct Found {
    /// The real directory reached.
    dir: PathBuf,
    /// The final component, when it was not descended into (a file, a
    /// special file, or a symlink that was not followed).
    leaf: Option<(Vec<u8>, Kind)>,
    /// Trailing components that do not exist (plain names).
    missing: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Symlink,
}

/// Where the destination directory of a push is.
#[derive(Debug, Clone)]
struct DestBase {
    dir: PathBuf,
    missing: Vec<Vec<u8>>,
}

fn os(b: &[u8]) -> OsString {
    OsString::from_vec(b.to_vec())
}

fn join_names(base: &Path, names: &[Vec<u8>]) -> PathBuf {
    let mut p = base.to_path_buf();
    for n in names {
        p.push(std::ffi::OsStr::from_bytes(n));
    }
    p
}

fn with_trailing(mut s: OsString, t: Trailing) -> OsString {
    match t {
        Trailing::None => {}
        Trailing::Slash => s.push("/"),
        Trailing::SlashDot => s.push("/."),
    }
    s
}

/// Where clients can store symlinks that work: the real roots of the
/// policy's writable modules with `munge_links = false` (any client's), by
/// module name. A directory inside one can have an entry replaced by such a
/// link at any time.
pub fn link_writable_roots(policy: &crate::policy::Policy) -> Vec<(String, PathBuf)> {
    policy
        .modules
        .values()
        .filter(|m| m.writable() && !m.munge_links)
        // A root that does not resolve holds nothing.
        .filter_map(|m| {
            std::fs::canonicalize(&m.path)
                .ok()
                .map(|r| (m.name.clone(), r))
        })
        .collect()
}

/// Options that make rsync skip (or delete on the client) a source that
/// does not exist, instead of failing.
const MISSING_ARGS: &[&str] = &["ignore-missing-args", "delete-missing-args"];
/// The option that makes rsync create a push destination's missing parents.
const MKPATH: &str = "mkpath";

/// One step of a path as the kernel walks it.
#[derive(Debug, Clone)]
enum Step {
    Name(Vec<u8>),
    Parent,
}

/// The confinement walker for one request.
struct Walker<'a> {
    root: PathBuf,
    module: String,
    spelled: String,
    pins: Vec<Pin>,
    by_path: HashMap<PathBuf, usize>,
    mkdirs: Vec<MakeDir>,
    notes: &'a mut Vec<String>,
    /// The account rsync runs as (its own links are trusted, as root's).
    uid: u32,
    /// [`link_writable_roots`].
    link_roots: &'a [(String, PathBuf)],
    /// The client asked rsync to tolerate missing sources.
    missing_ok: bool,
    /// `--mkpath`: rsync creates a push destination's missing parents.
    mkpath: bool,
}

/// A component of `spelled` that exists could not be looked up: a
/// directory on the way is not one (a race: the walk descends only into
/// directories), a name is longer than the kernel takes, or anything else.
fn lookup_failed(e: &io::Error, spelled: &str) -> DenyReason {
    match e.raw_os_error() {
        Some(libc::ENOTDIR) => DenyReason::NotADirectory(spelled.to_string()),
        Some(libc::ENAMETOOLONG) => DenyReason::TooComplex(spelled.to_string()),
        _ => DenyReason::Internal(format!("{spelled}: {e}")),
    }
}

/// A symlink on the way through `spelled` could not be resolved: its
/// target, or a directory on the way to it, is not there (or is a file);
/// it loops, or names something longer than the kernel takes; or anything
/// else.
fn link_failed(e: &io::Error, spelled: &str) -> DenyReason {
    match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENOTDIR) => DenyReason::DanglingSymlink(spelled.to_string()),
        Some(libc::ELOOP | libc::ENAMETOOLONG) => DenyReason::TooComplex(spelled.to_string()),
        _ => DenyReason::Internal(format!("{spelled}: {e}")),
    }
}

impl Walker<'_> {
    fn escapes(&self) -> DenyReason {
        DenyReason::Escapes(self.spelled.clone())
    }

    /// Resolve `comps` from the real directory `start` (inside the root).
    fn resolve(
        &self,
        start: &Path,
        comps: &[Comp],
        follow_last: bool,
    ) -> Result<Found, DenyReason> {
        let mut cur = start.to_path_buf();
        let mut links = 0usize;
        let n = comps.len();
        for (i, c) in comps.iter().enumerate() {
            let last = i + 1 == n;
            match c {
                Comp::Parent => {
                    if cur == self.root || !cur.starts_with(&self.root) {
                        return Err(self.escapes());
                    }
                    cur.pop();
                }
                Comp::Glob(_) => {
                    return Err(DenyReason::Internal("unexpanded wildcard".into()));
                }
                Comp::Name(name) => {
                    let next = cur.join(std::ffi::OsStr::from_bytes(name));
                    let md = match std::fs::symlink_metadata(&next) {
                        Ok(md) => md,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {
                            let mut missing = vec![name.clone()];
                            for rest in comps.iter().skip(i + 1) {
                                match rest {
                                    Comp::Name(r) => missing.push(r.clone()),
                                    _ => return Err(DenyReason::NotFound(self.spelled.clone())),
                                }
                            }
                            return Ok(Found {
                                dir: cur,
                                leaf: None,
                                missing,
                            });
                        }
                        Err(e) => return Err(lookup_failed(&e, &self.spelled)),
                    };
                    let ft = md.file_type();
                    if ft.is_symlink() {
                        if last && !follow_last {
                            return Ok(Found {
                                dir: cur,
                                leaf: Some((name.clone(), Kind::Symlink)),
                                missing: Vec::new(),
                            });
                        }
                        links += 1;
                        if links > MAX_LINKS {
                            return Err(DenyReason::TooComplex(self.spelled.clone()));
                        }
                        let target = std::fs::canonicalize(&next)
                            .map_err(|e| link_failed(&e, &self.spelled))?;
                        if !target.starts_with(&self.root) {
                            return Err(self.escapes());
                        }
                        if target.is_dir() {
                            cur = target;
                        } else if last {
                            let (Some(parent), Some(fname)) = (target.parent(), target.file_name())
                            else {
                                return Err(self.escapes());
                            };
                            return Ok(Found {
                                dir: parent.to_path_buf(),
                                leaf: Some((fname.as_bytes().to_vec(), Kind::File)),
                                missing: Vec::new(),
                            });
                        } else {
                            return Err(DenyReason::NotADirectory(self.spelled.clone()));
                        }
                    } else if ft.is_dir() {
                        cur = next;
                    } else if last {
                        return Ok(Found {
                            dir: cur,
                            leaf: Some((name.clone(), Kind::File)),
                            missing: Vec::new(),
                        });
                    } else {
                        return Err(DenyReason::NotADirectory(self.spelled.clone()));
                    }
                }
            }
        }
        Ok(Found {
            dir: cur,
            leaf: None,
            missing: Vec::new(),
        })
    }

    /// The [`TraceStep::Path`] for an argument rsync gets: what each
    /// `/proc/self/fd/N` in it holds (or, for a directory the gate creates
    /// first, will hold).
    fn path_step(&self, role: &str, path: String, arg: &OsString) -> TraceStep {
        let b = arg.as_bytes();
        let mut resolved = None;
        if let Some(rest) = b.strip_prefix(b"/proc/self/fd/") {
            let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
            let (num, tail) = rest.split_at(digits);
            let fd: Option<i32> = std::str::from_utf8(num).ok().and_then(|n| n.parse().ok());
            let held = fd.and_then(|fd| {
                self.pins
                    .iter()
                    .find(|p| p.fd.as_raw_fd() == fd)
                    .map(|p| (p.real.clone(), false))
                    .or_else(|| {
                        self.mkdirs
                            .iter()
                            .find(|m| m.slot.as_raw_fd() == fd)
                            .map(|m| (m.expect.clone(), true))
                    })
            });
            if let Some((real, created)) = held {
                let mut r = real.into_os_string().into_vec();
                r.extend_from_slice(tail);
                let mut text = escape::field(&r);
                if created {
                    text.push_str(" (created by the gate before rsync starts)");
                }
                resolved = Some(text);
            }
        }
        TraceStep::Path {
            role: role.to_string(),
            path,
            resolved: resolved.unwrap_or_else(|| escape::field(b)),
            handed: escape::field(b),
        }
    }

    /// Hold the directory `real` and return its index in `pins`.
    fn pin(&mut self, real: &Path) -> Result<usize, DenyReason> {
        if let Some(&i) = self.by_path.get(real) {
            return Ok(i);
        }
        let fd = nix::fcntl::open(
            real,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
            FileMode::empty(),
        )
        .map_err(|_| DenyReason::Race(self.spelled.clone()))?;
        self.verify(&fd, real)?;
        self.pins.push(Pin {
            fd,
            real: real.to_path_buf(),
        });
        let i = self.pins.len() - 1;
        self.by_path.insert(real.to_path_buf(), i);
        Ok(i)
    }

    /// The held descriptor must be exactly where the check found it.
    fn verify(&self, fd: &OwnedFd, real: &Path) -> Result<(), DenyReason> {
        let now = std::fs::read_link(proc_fd(fd))
            .map_err(|e| DenyReason::Internal(format!("cannot read /proc/self/fd: {e}")))?;
        if now != real || !now.starts_with(&self.root) {
            return Err(DenyReason::Race(self.spelled.clone()));
        }
        Ok(())
    }

    /// Every lookup of a name in a directory that resolving `comps` from the
    /// real directory `start` makes, as the kernel makes them (symlinks
    /// followed by their text, each component looked up in turn). The last
    /// component's own lookup is left out unless `follow_last`: rsync does
    /// not follow a link there, so replacing it changes nothing. Stops at a
    /// missing last component; anything else missing is `not_found`.
    fn lookups(
        &self,
        start: &Path,
        comps: &[Vec<u8>],
        follow_last: bool,
    ) -> Result<Vec<(PathBuf, Vec<u8>)>, DenyReason> {
        let mut cur = start.to_path_buf();
        let mut pending: Vec<(Step, bool)> = comps
            .iter()
            .rev()
            .enumerate()
            .map(|(i, n)| (Step::Name(n.clone()), i == 0))
            .collect();
        let mut out = Vec::new();
        let mut links = 0usize;
        while let Some((step, last)) = pending.pop() {
            let name = match step {
                Step::Parent => {
                    cur.pop();
                    continue;
                }
                Step::Name(n) => n,
            };
            let follow = !last || follow_last;
            if follow {
                out.push((cur.clone(), name.clone()));
            }
            let next = cur.join(std::ffi::OsStr::from_bytes(&name));
            let md = match std::fs::symlink_metadata(&next) {
                Ok(md) => md,
                Err(e) if e.kind() == io::ErrorKind::NotFound && last => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(DenyReason::NotFound(self.spelled.clone()));
                }
                Err(e) => return Err(DenyReason::Internal(format!("{}: {e}", self.spelled))),
            };
            if md.file_type().is_symlink() && follow {
                links += 1;
                if links > MAX_LINKS {
                    return Err(DenyReason::TooComplex(self.spelled.clone()));
                }
                let target = std::fs::read_link(&next)
                    .map_err(|e| DenyReason::Internal(format!("{}: {e}", self.spelled)))?;
                if target.is_absolute() {
                    cur = PathBuf::from("/");
                }
                let steps: Vec<Step> = target
                    .components()
                    .filter_map(|c| match c {
                        std::path::Component::Normal(n) => Some(Step::Name(n.as_bytes().to_vec())),
                        std::path::Component::ParentDir => Some(Step::Parent),
                        _ => None,
                    })
                    .collect();
                let n = steps.len();
                for (i, st) in steps.into_iter().enumerate().rev() {
                    pending.push((st, last && i + 1 == n));
                }
            } else if md.is_dir() {
                cur = next;
            } else if !last {
                return Err(DenyReason::NotADirectory(self.spelled.clone()));
            }
        }
        Ok(out)
    }

    /// Could the entry `name` of the real directory `dir` be replaced (or,
    /// missing, be created) as a symlink by someone but root and the
    /// account? Says why (a server-side detail) if so.
    fn swappable(&self, dir: &Path, name: &[u8]) -> Option<String> {
        use std::os::unix::fs::MetadataExt;
        let md = match std::fs::symlink_metadata(dir) {
            Ok(md) => md,
            Err(e) => return Some(format!("{}: {e}", dir.display())),
        };
        let trusted = |uid: u32| uid == 0 || uid == self.uid;
        if !trusted(md.uid()) {
            return Some(format!(
                "{} is owned by {}",
                dir.display(),
                trust::owner_name(md.uid())
            ));
        }
        let mode = md.mode();
        if mode & 0o022 != 0 {
            // In a root-owned sticky directory (/tmp) others cannot replace
            // an entry that is not theirs; they can create a missing one.
            let held = mode & 0o1000 != 0
                && md.uid() == 0
                && std::fs::symlink_metadata(dir.join(std::ffi::OsStr::from_bytes(name)))
                    .is_ok_and(|e| trusted(e.uid()));
            if !held {
                return Some(format!(
                    "{} is writable by its group or others (mode {:o})",
                    dir.display(),
                    mode & 0o7777
                ));
            }
        }
        if let Some((m, _)) = self.link_roots.iter().find(|(_, r)| dir.starts_with(r)) {
            return Some(format!(
                "{} is in writable module '{m}', whose clients can store symlinks (munge_links = false)",
                dir.display()
            ));
        }
        None
    }

    /// Refuse unless no lookup in `lookups` could be redirected.
    fn hold_still(
        &self,
        lookups: &[(PathBuf, Vec<u8>)],
        hint: &'static str,
    ) -> Result<(), DenyReason> {
        for (dir, name) in lookups {
            if let Some(why) = self.swappable(dir, name) {
                return Err(DenyReason::Swappable {
                    path: self.spelled.clone(),
                    hint,
                    why,
                });
            }
        }
        Ok(())
    }

    fn proc(&self, i: usize) -> OsString {
        self.pins
            .get(i)
            .map(|p| p.proc_path().into_os_string())
            .unwrap_or_default()
    }

    /// `/proc/self/fd/N/name/...`
    fn below(&self, i: usize, names: &[Vec<u8>]) -> OsString {
        let mut s = self.proc(i);
        for n in names {
            s.push("/");
            s.push(std::ffi::OsStr::from_bytes(n));
        }
        s
    }

    /// Expand wildcards in a pull path into concrete targets.
    fn expand(&self, t: &Target, budget: &mut usize) -> Result<Vec<Target>, DenyReason> {
        if !t.comps.iter().any(|c| matches!(c, Comp::Glob(_))) {
            return Ok(vec![t.clone()]);
        }
        let mut partial: Vec<Vec<Comp>> = vec![Vec::new()];
        for c in &t.comps {
            let Comp::Glob(pattern) = c else {
                for p in &mut partial {
                    p.push(c.clone());
                }
                continue;
            };
            let mut next = Vec::new();
            for p in &partial {
                // A candidate whose prefix is not an existing directory has
                // nothing to match below it (as in the shell). One leading
                // out of the module refuses the request, as naming it would:
                // rsync's own daemon globbing would walk through it too.
                let found = match self.resolve(&self.root, p, true) {
                    Ok(f) => f,
                    Err(e @ DenyReason::Escapes(_)) => return Err(e),
                    Err(_) => continue,
                };
                if !found.missing.is_empty() || found.leaf.is_some() {
                    continue;
                }
                let mut names: Vec<Vec<u8>> = match std::fs::read_dir(&found.dir) {
                    Ok(entries) => entries
                        .filter_map(Result::ok)
                        .map(|e| e.file_name().as_bytes().to_vec())
                        .filter(|n| glob::matches_component(pattern, n))
                        .collect(),
                    Err(_) => Vec::new(),
                };
                names.sort();
                for n in names {
                    *budget = budget
                        .checked_sub(1)
                        .ok_or_else(|| DenyReason::TooComplex(self.spelled.clone()))?;
                    let mut q = p.clone();
                    q.push(Comp::Name(n));
                    next.push(q);
                }
            }
            partial = next;
        }
        // Like the shell, a pattern yields only paths that exist (and, with
        // a trailing slash, only directories); one leading out of the
        // module is kept, to be refused.
        let dirs_only = t.trailing != Trailing::None;
        partial.retain(|comps| match self.resolve(&self.root, comps, dirs_only) {
            Ok(f) => f.missing.is_empty() && !(dirs_only && f.leaf.is_some()),
            Err(DenyReason::Escapes(_)) => true,
            Err(_) => false,
        });
        if partial.is_empty() {
            // No match: like the shell, keep the pattern as a literal name,
            // and rsync reports that it does not exist.
            let literal = t
                .comps
                .iter()
                .map(|c| match c {
                    Comp::Glob(g) => Comp::Name(unescape(g)),
                    other => other.clone(),
                })
                .collect();
            return Ok(vec![Target {
                comps: literal,
                ..t.clone()
            }]);
        }
        Ok(partial
            .into_iter()
            .map(|comps| Target { comps, ..t.clone() })
            .collect())
    }

    /// The argument for one source of a pull.
    fn sender_arg(&mut self, t: &Target, sources: Sources) -> Result<OsString, DenyReason> {
        let root = self.root.clone();
        if sources == Sources::FilesFromBase {
            // The directory the listed names are taken from.
            let f = self.resolve(&root, &t.comps, true)?;
            if f.leaf.is_some() {
                return Err(DenyReason::NotADirectory(self.spelled.clone()));
            }
            if !f.missing.is_empty() {
                return Err(DenyReason::NotFound(self.spelled.clone()));
            }
            let i = self.pin(&f.dir)?;
            return Ok(with_trailing(self.proc(i), Trailing::Slash));
        }
        if sources == Sources::Relative {
            let (anchor, suffix, above): (&[Comp], &[Comp], Vec<Vec<u8>>) =
                match (t.marker, &t.prefix) {
                    (Some(k), _) => (
                        t.comps.get(..k).unwrap_or_default(),
                        t.comps.get(k..).unwrap_or_default(),
                        vec![],
                    ),
                    (None, Some(prefix)) => (&[], &t.comps[..], prefix.clone()),
                    // MODULE/path under -R: the client expects names that start
                    // with the module's name.
                    (None, None) => (&[], &t.comps[..], vec![self.module.as_bytes().to_vec()]),
                };
            let mut names = above.clone();
            for c in suffix {
                match c {
                    Comp::Name(n) => names.push(n.clone()),
                    _ => return Err(self.escapes()),
                }
            }
            let a = self.resolve(&root, anchor, true)?;
            if !a.missing.is_empty() {
                return Err(DenyReason::NotFound(self.spelled.clone()));
            }
            if a.leaf.is_some() {
                return Err(DenyReason::NotADirectory(self.spelled.clone()));
            }
            // The part rsync will transmit must stay inside too, and exist:
            // rsync walks it by name, and a missing component could appear
            // as a link later (a missing last one is rsync's to skip when
            // the client asked it to, as a file it does not follow).
            let follow_last = t.trailing != Trailing::None;
            let found = self.resolve(&a.dir, suffix, follow_last)?;
            let skipped = self.missing_ok && found.missing.len() == 1 && !follow_last;
            if !found.missing.is_empty() && !skipped {
                return Err(DenyReason::NotFound(self.spelled.clone()));
            }
            let pin = match (t.marker, &t.prefix) {
                (Some(_), _) => self.pin(&a.dir)?,
                // An absolute path under -R transmits its full name: anchor at
                // "/" and spell out the module path (root-owned, checked).
                (None, Some(_)) => self.pin_fs_root()?,
                (None, None) => {
                    let name = self.module.as_bytes().to_vec();
                    self.check_root_name(&name, MODULE_NAME_HINT_RELATIVE)?;
                    self.pin_root_parent()?
                }
            };
            // Only the anchor can be held: rsync looks up every transmitted
            // directory by name again (it sends them as directories even
            // where they are links). That is safe only where no one but
            // root and the account can replace one of them with a link.
            let start = self
                .pins
                .get(pin)
                .map(|p| p.real.clone())
                .ok_or_else(|| DenyReason::Internal("lost a pin".into()))?;
            let walked = self.lookups(&start, &names, follow_last)?;
            self.hold_still(&walked, RELATIVE_HINT)?;
            let mut s = self.proc(pin);
            s.push("/.");
            for n in &names {
                s.push("/");
                s.push(std::ffi::OsStr::from_bytes(n));
            }
            return Ok(with_trailing(s, t.trailing));
        }
        let n = t.comps.len();
        let last_is_parent = matches!(t.comps.last(), Some(Comp::Parent));
        if n == 0 && t.trailing == Trailing::None {
            // The module root itself, no trailing slash: the client expects a
            // directory of the name it asked for (as `host:dir` would give).
            let name = t.prefix.as_ref().and_then(|p| p.last()).cloned();
            let name = name.unwrap_or_else(|| self.module.as_bytes().to_vec());
            self.check_root_name(&name, MODULE_NAME_HINT)?;
            let i = self.pin_root_parent()?;
            return Ok(self.below(i, &[name]));
        }
        if n == 0 || t.trailing != Trailing::None || last_is_parent {
            let f = self.resolve(&root, &t.comps, true)?;
            if f.leaf.is_some() {
                return Err(DenyReason::NotADirectory(self.spelled.clone()));
            }
            // A missing directory would be looked up by name, and followed.
            if !f.missing.is_empty() {
                return Err(DenyReason::NotFound(self.spelled.clone()));
            }
            let i = self.pin(&f.dir)?;
            // The module root, and "dir/..", mean the directory's contents.
            let trailing = match t.trailing {
                Trailing::None => Trailing::SlashDot,
                other => other,
            };
            return Ok(with_trailing(self.proc(i), trailing));
        }
        let (parent, leaf) = t.comps.split_at(n - 1);
        let Some(Comp::Name(leaf)) = leaf.first() else {
            return Err(DenyReason::Internal("unexpected leaf".into()));
        };
        let f = self.resolve(&root, parent, true)?;
        if f.leaf.is_some() {
            return Err(DenyReason::NotADirectory(self.spelled.clone()));
        }
        // The parent is held; rsync looks up only the last name, without
        // following a link there. A missing parent would be walked by name.
        if !f.missing.is_empty() {
            return Err(DenyReason::NotFound(self.spelled.clone()));
        }
        match std::fs::symlink_metadata(f.dir.join(std::ffi::OsStr::from_bytes(leaf))) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.missing_ok => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(DenyReason::NotFound(self.spelled.clone()));
            }
            Err(e) => return Err(lookup_failed(&e, &self.spelled)),
        }
        let i = self.pin(&f.dir)?;
        Ok(self.below(i, std::slice::from_ref(leaf)))
    }

    /// Hold the directory above the module root (root-owned and not
    /// writable by the account, as the module check made sure), so the root
    /// can be passed by its name.
    fn pin_root_parent(&mut self) -> Result<usize, DenyReason> {
        let Some(parent) = self.root.parent().map(Path::to_path_buf) else {
            return Err(DenyReason::NeedsMarker {
                path: self.spelled.clone(),
                hint: MODULE_NAME_HINT,
            });
        };
        if let Some(&i) = self.by_path.get(&parent) {
            return Ok(i);
        }
        let fd = nix::fcntl::open(
            &parent,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
            FileMode::empty(),
        )
        .map_err(|_| DenyReason::Race(self.spelled.clone()))?;
        let now = std::fs::read_link(proc_fd(&fd))
            .map_err(|e| DenyReason::Internal(format!("cannot read /proc/self/fd: {e}")))?;
        if now != parent {
            return Err(DenyReason::Race(self.spelled.clone()));
        }
        self.pins.push(Pin {
            fd,
            real: parent.clone(),
        });
        let i = self.pins.len() - 1;
        self.by_path.insert(parent, i);
        Ok(i)
    }

    /// The module root's directory must carry the name the client expects.
    fn check_root_name(&self, name: &[u8], hint: &'static str) -> Result<(), DenyReason> {
        if self.root.file_name().map(OsStrExt::as_bytes) == Some(name) {
            Ok(())
        } else {
            Err(DenyReason::NeedsMarker {
                path: self.spelled.clone(),
                hint,
            })
        }
    }

    fn pin_fs_root(&mut self) -> Result<usize, DenyReason> {
        let slash = PathBuf::from("/");
        if let Some(&i) = self.by_path.get(&slash) {
            return Ok(i);
        }
        let fd = nix::fcntl::open("/", OFlag::O_PATH | OFlag::O_DIRECTORY, FileMode::empty())
            .map_err(|e| DenyReason::Internal(format!("cannot open /: {e}")))?;
        self.pins.push(Pin {
            fd,
            real: slash.clone(),
        });
        let i = self.pins.len() - 1;
        self.by_path.insert(slash, i);
        Ok(i)
    }

    /// The destination of a push, and where relative options start from.
    ///
    /// rsync is handed a held directory whenever the destination is (or is
    /// to be) one: missing directories are created by the exec stage and
    /// held. Only a last component that is not a directory (a file, a link
    /// to one, or a name the transfer decides about) is passed by name,
    /// below its held parent; rsync looks that name up again (and follows
    /// a link there), so the parent must be one where no one else can put
    /// a link.
    fn receiver_arg(&mut self, t: &Target) -> Result<(OsString, DestBase), DenyReason> {
        let root = self.root.clone();
        let f = self.resolve(&root, &t.comps, false)?;
        let base = DestBase {
            dir: f.dir.clone(),
            missing: f.missing.clone(),
        };
        if !f.missing.is_empty() {
            // What rsync would create: with a trailing slash the whole
            // chain is directories; without one, the last name becomes a
            // file or a directory as the transfer decides. Without
            // --mkpath rsync creates the destination alone, its parent must
            // exist.
            if f.missing.len() > 1 && !self.mkpath {
                return Err(DenyReason::NotFound(self.spelled.clone()));
            }
            let (dirs, leaf) = match (t.trailing, f.missing.split_last()) {
                (Trailing::None, Some((leaf, dirs))) => (dirs, Some(leaf.clone())),
                _ => (f.missing.as_slice(), None),
            };
            let Some(leaf) = leaf else {
                let slot = self.plan_mkdir(&f.dir, dirs, 0o777)?;
                self.notes.push(format!(
                    "destination {}: created by the gate before rsync starts",
                    self.spelled
                ));
                return Ok((with_trailing(slot, t.trailing), base));
            };
            // The last name is looked up in its parent (created and held
            // by the gate when missing: it is then as the existing
            // directory it is made in).
            self.hold_still(&[(f.dir.clone(), leaf.clone())], DEST_HINT)?;
            if dirs.is_empty() {
                let i = self.pin(&f.dir)?;
                return Ok((self.below(i, &[leaf]), base));
            }
            let mut slot = self.plan_mkdir(&f.dir, dirs, 0o777)?;
            self.notes.push(format!(
                "destination {}: its directories created by the gate before rsync starts",
                self.spelled
            ));
            slot.push("/");
            slot.push(std::ffi::OsStr::from_bytes(&leaf));
            return Ok((slot, base));
        }
        match f.leaf {
            None => {
                let i = self.pin(&f.dir)?;
                Ok((with_trailing(self.proc(i), t.trailing), base))
            }
            Some((_, Kind::File)) if t.trailing != Trailing::None => {
                Err(DenyReason::NotADirectory(self.spelled.clone()))
            }
            Some((name, Kind::File)) => {
                self.hold_still(&[(f.dir.clone(), name.clone())], DEST_HINT)?;
                let i = self.pin(&f.dir)?;
                Ok((self.below(i, &[name]), base))
            }
            Some((name, Kind::Symlink)) => {
                let link = f.dir.join(std::ffi::OsStr::from_bytes(&name));
                let target = match std::fs::canonicalize(&link) {
                    Ok(t) => t,
                    Err(_) => return Err(DenyReason::DanglingSymlink(self.spelled.clone())),
                };
                if !target.starts_with(&self.root) {
                    return Err(self.escapes());
                }
                if target.is_dir() {
                    let i = self.pin(&target)?;
                    Ok((
                        with_trailing(self.proc(i), t.trailing),
                        DestBase {
                            dir: target,
                            missing: vec![],
                        },
                    ))
                } else {
                    // rsync follows the link to see what is there, then
                    // replaces the link itself with the new file.
                    let walked = self.lookups(&f.dir, std::slice::from_ref(&name), true)?;
                    self.hold_still(&walked, DEST_HINT)?;
                    let i = self.pin(&f.dir)?;
                    Ok((self.below(i, &[name]), base))
                }
            }
        }
    }

    /// Plan the creation of `names` below the real directory `dir`: the
    /// exec stage makes them and holds the result on a reserved descriptor,
    /// whose `/proc/self/fd/N` name is returned.
    fn plan_mkdir(
        &mut self,
        dir: &Path,
        names: &[Vec<u8>],
        mode: u32,
    ) -> Result<OsString, DenyReason> {
        let start = self.pin(dir)?;
        let Some(parent) = self.pins.get(start).and_then(|p| p.fd.try_clone().ok()) else {
            return Err(DenyReason::Internal("cannot duplicate a descriptor".into()));
        };
        let expect = join_names(dir, names);
        if !expect.starts_with(&self.root) {
            return Err(self.escapes());
        }
        // Not close-on-exec: rsync inherits it.
        let slot = nix::fcntl::open("/dev/null", OFlag::O_PATH, FileMode::empty())
            .map_err(|e| DenyReason::Internal(format!("cannot open /dev/null: {e}")))?;
        let name = proc_fd(&slot).into_os_string();
        self.mkdirs.push(MakeDir {
            parent,
            names: names.to_vec(),
            mode,
            expect,
            slot,
            spelled: self.spelled.clone(),
        });
        Ok(name)
    }

    fn path_opt(
        &mut self,
        po: &PathOpt,
        base: Option<&DestBase>,
    ) -> Result<Option<OsString>, DenyReason> {
        let opt = po.spec.display();
        let (start_dir, mut missing, comps): (PathBuf, Vec<Vec<u8>>, Vec<Comp>) = match &po.value {
            PathValue::Stdin => return Ok(Some(OsString::from("-"))),
            PathValue::Dropped => {
                self.notes
                    .push(format!("{opt} is not used when pulling; not passed on"));
                return Ok(None);
            }
            PathValue::PerDirectory(name) => {
                // A name inside each destination directory. Where the
                // destination exists already, the name must not be a link
                // leading out of the module.
                self.spelled = shown(name);
                if let Some(base) = base
                    && base.missing.is_empty()
                {
                    let comps: Vec<Comp> = name
                        .split(|&b| b == b'/')
                        .filter(|c| !c.is_empty() && *c != b".")
                        .map(|c| Comp::Name(c.to_vec()))
                        .collect();
                    self.resolve(&base.dir, &comps, true)?;
                }
                return Ok(Some(os(name)));
            }
            PathValue::InModule(t) => {
                self.spelled = t.shown();
                (self.root.clone(), Vec::new(), t.comps.clone())
            }
            PathValue::DestRelative { spelled, comps } => {
                self.spelled = shown(spelled);
                let Some(base) = base else {
                    return Err(DenyReason::Internal(
                        "relative option without a destination".into(),
                    ));
                };
                (base.dir.clone(), base.missing.clone(), comps.clone())
            }
        };
        // Components still inside not-yet-existing directories cancel out
        // lexically (nothing there can be a symlink); the rest resolve
        // physically.
        let mut rest = Vec::new();
        for c in comps {
            if !rest.is_empty() || missing.is_empty() {
                rest.push(c);
                continue;
            }
            match c {
                Comp::Parent => {
                    missing.pop();
                }
                Comp::Name(n) => missing.push(n),
                Comp::Glob(_) => rest.push(c),
            }
        }
        let found = if missing.is_empty() {
            self.resolve(&start_dir, &rest, true)?
        } else {
            Found {
                dir: start_dir,
                leaf: None,
                missing,
            }
        };
        match po.role {
            PathRole::FilesFrom => {
                let Some((name, Kind::File)) = &found.leaf else {
                    return Err(DenyReason::NotFound(self.spelled.clone()));
                };
                let path = found.dir.join(std::ffi::OsStr::from_bytes(name));
                let fd = nix::fcntl::open(
                    &path,
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK,
                    FileMode::empty(),
                )
                .map_err(|_| DenyReason::Race(self.spelled.clone()))?;
                let st = nix::sys::stat::fstat(&fd)
                    .map_err(|_| DenyReason::Race(self.spelled.clone()))?;
                if st.st_mode & libc::S_IFMT != libc::S_IFREG {
                    return Err(DenyReason::NotFound(self.spelled.clone()));
                }
                self.verify(&fd, &path)?;
                let s = proc_fd(&fd).into_os_string();
                self.pins.push(Pin { fd, real: path });
                Ok(Some(s))
            }
            PathRole::Basis => {
                if found.leaf.is_some() {
                    return Err(DenyReason::NotADirectory(self.spelled.clone()));
                }
                if !found.missing.is_empty() {
                    self.notes.push(format!(
                        "{opt} {}: does not exist yet (first run); not passed on",
                        self.spelled
                    ));
                    return Ok(None);
                }
                let i = self.pin(&found.dir)?;
                Ok(Some(self.proc(i)))
            }
            PathRole::TempDir => {
                if found.leaf.is_some() {
                    return Err(DenyReason::NotADirectory(self.spelled.clone()));
                }
                if !found.missing.is_empty() {
                    return Err(DenyReason::NotFound(self.spelled.clone()));
                }
                let i = self.pin(&found.dir)?;
                Ok(Some(self.proc(i)))
            }
            PathRole::BackupDir | PathRole::PartialDir => {
                if found.leaf.is_some() {
                    return Err(DenyReason::NotADirectory(self.spelled.clone()));
                }
                if found.missing.is_empty() {
                    let i = self.pin(&found.dir)?;
                    return Ok(Some(self.proc(i)));
                }
                let mode = if po.role == PathRole::PartialDir {
                    0o700
                } else {
                    0o777
                };
                let name = self.plan_mkdir(&found.dir, &found.missing, mode)?;
                self.notes.push(format!(
                    "{opt} {}: created by the gate before rsync starts",
                    self.spelled
                ));
                Ok(Some(name))
            }
        }
    }
}

/// Remove the backslash escapes of a glob pattern.
fn unescape(p: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(p.len());
    let mut it = p.iter();
    while let Some(&c) = it.next() {
        if c == b'\\' {
            if let Some(&n) = it.next() {
                out.push(n);
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// Resolve, check and pin every path of a grant. Nothing is created here:
/// a missing push destination, `--backup-dir` or absolute `--partial-dir`
/// becomes a planned [`MakeDir`]. `link_roots` is
/// [`link_writable_roots`] of the policy.
pub fn confine(
    grant: &Grant,
    module: &Module,
    account: &Account,
    protected: &[PathBuf],
    link_roots: &[(String, PathBuf)],
) -> Result<Confined, DenyReason> {
    confine_with(grant, module, account, protected, link_roots, &mut NoTrace)
}

/// [`confine`], reporting each check and each path's resolution to `t`
/// (the same code: [`confine`] passes [`NoTrace`]).
pub fn confine_with<T: Tracer>(
    grant: &Grant,
    module: &Module,
    account: &Account,
    protected: &[PathBuf],
    link_roots: &[(String, PathBuf)],
    t: &mut T,
) -> Result<Confined, DenyReason> {
    let checked = check_module(module, account, protected);
    t.step(|| TraceStep::ModuleRoot {
        module: module.name.clone(),
        root: match &checked {
            Ok(real) => escape::field(real.as_os_str().as_bytes()),
            Err(_) => escape::field(module.path.as_os_str().as_bytes()),
        },
        allowed: checked.is_ok(),
    });
    let root = checked?;
    let mut notes = Vec::new();
    let has = |names: &[&str]| grant.opts.iter().any(|o| names.contains(&o.spec.long));
    let mut w = Walker {
        root: root.clone(),
        module: module.name.clone(),
        spelled: String::new(),
        pins: Vec::new(),
        by_path: HashMap::new(),
        mkdirs: Vec::new(),
        notes: &mut notes,
        uid: account.uid,
        link_roots,
        missing_ok: has(MISSING_ARGS),
        mkpath: has(&[MKPATH]),
    };
    // Hold the root first: every other check hangs off it.
    w.pin(&root)?;
    let mut args = Vec::new();
    let mut base = None;
    match grant.mode {
        Mode::Sender => {
            let mut budget = MAX_MATCHES;
            for tg in &grant.paths {
                w.spelled = tg.shown();
                for concrete in w.expand(tg, &mut budget)? {
                    let arg = w.sender_arg(&concrete, grant.sources)?;
                    t.step(|| w.path_step("source", concrete.shown(), &arg));
                    args.push(arg);
                }
            }
        }
        Mode::Receiver => {
            for tg in &grant.paths {
                w.spelled = tg.shown();
                let (arg, b) = w.receiver_arg(tg)?;
                t.step(|| w.path_step("destination", tg.shown(), &arg));
                args.push(arg);
                base = Some(b);
            }
        }
    }
    let mut path_opts = Vec::new();
    for po in &grant.path_opts {
        let v = w.path_opt(po, base.as_ref())?;
        let spelled = || match &po.value {
            PathValue::Stdin => "-".to_string(),
            PathValue::InModule(tg) => tg.shown(),
            PathValue::DestRelative { spelled, .. } => shown(spelled),
            PathValue::PerDirectory(name) => shown(name),
            PathValue::Dropped => String::new(),
        };
        match &v {
            Some(arg) => t.step(|| w.path_step(&po.spec.display(), spelled(), arg)),
            None => t.step(|| TraceStep::Path {
                role: po.spec.display(),
                path: spelled(),
                resolved: "nothing yet (or unused)".into(),
                handed: "nothing: not passed on".into(),
            }),
        }
        if let Some(v) = v {
            path_opts.push((po.spec, v));
        }
    }
    let pins = std::mem::take(&mut w.pins);
    let mkdirs = std::mem::take(&mut w.mkdirs);
    Ok(Confined {
        root,
        args,
        path_opts,
        notes,
        pins,
        mkdirs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::{self, Context, Decision, RsyncCaps, Server};
    use crate::policy::{self, Policy};
    use crate::request::parse_command;
    use std::os::unix::fs::symlink;

    struct Fixture {
        _dir: tempfile::TempDir,
        base: PathBuf,
        policy: Policy,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        let www = base.join("www");
        let bk = base.join("backup");
        let outside = base.join("outside");
        for d in [&www, &bk, &outside] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::create_dir_all(www.join("sub/deeper")).unwrap();
        std::fs::write(www.join("sub/file.txt"), "x").unwrap();
        std::fs::write(www.join("a.txt"), "a").unwrap();
        std::fs::write(www.join("b.txt"), "b").unwrap();
        std::fs::write(www.join(".hidden.txt"), "h").unwrap();
        std::fs::write(outside.join("secret"), "s").unwrap();
        symlink(&outside, www.join("out")).unwrap();
        symlink("../outside/secret", www.join("leak")).unwrap();
        symlink("sub", www.join("insub")).unwrap();
        symlink("nowhere", www.join("dangling")).unwrap();
        std::fs::create_dir_all(bk.join("prev")).unwrap();
        symlink(&outside, bk.join("evil")).unwrap();
        std::fs::write(www.join("list"), "a.txt\n").unwrap();
        // A directory anyone may write to, and a module whose clients can
        // store working symlinks: links can appear in both at any time.
        std::fs::create_dir(bk.join("shared")).unwrap();
        std::fs::set_permissions(
            bk.join("shared"),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        let open = base.join("open");
        std::fs::create_dir_all(open.join("sub/deeper")).unwrap();
        std::fs::write(open.join("sub/deeper/f"), "f").unwrap();
        let text = format!(
            "[modules.www]\npath = \"{}\"\n[modules.backup]\npath = \"{}\"\nread_only = false\ndelete = true\n\
             [modules.open]\npath = \"{}\"\nread_only = false\nmunge_links = false\n\
             [clients.c]\nmodules = [\"www\", \"backup\", \"open\"]\n",
            www.display(),
            bk.display(),
            open.display()
        );
        let policy = policy::load_text(Path::new("/p.toml"), &text).unwrap();
        Fixture {
            _dir: dir,
            base,
            policy,
        }
    }

    fn account() -> Account {
        Account {
            uid: nix::unistd::geteuid().as_raw(),
            name: "test".into(),
            home: Some(PathBuf::from("/nonexistent-home")),
        }
    }

    fn confine_cmd(f: &Fixture, cmd: &str) -> Result<Confined, DenyReason> {
        let g = grant(f, cmd);
        let m = &f.policy.modules[&g.module];
        confine(&g, m, &account(), &[], &link_writable_roots(&f.policy))
    }

    /// The checked-mode grant of client `c` for `cmd` (which must be one).
    fn grant(f: &Fixture, cmd: &str) -> decide::Grant {
        let ctx = Context {
            policy: &f.policy,
            client: "c",
            conn: None,
            server: Server {
                caps: RsyncCaps {
                    confine_root: true,
                    drop_d: true,
                },
                sandbox: true,
            },
        };
        let req = parse_command(cmd.as_bytes());
        let Decision::Checked(g) = decide::decide(&ctx, req.as_ref()) else {
            panic!("not granted: {cmd}");
        };
        g
    }

    /// Each argument as `<PINNED-DIR>rest`: `/proc/self/fd/N` shown as the
    /// directory the descriptor holds, so an expectation says both that a
    /// path is pinned and which directory is. An argument that is not a
    /// held descriptor fails the test.
    fn real_args(c: &Confined) -> Vec<String> {
        c.args
            .iter()
            .map(|a| {
                let s = a.to_string_lossy().into_owned();
                for p in &c.pins {
                    let pp = p.proc_path().to_string_lossy().into_owned();
                    if let Some(rest) = s.strip_prefix(&pp)
                        && (rest.is_empty() || rest.starts_with('/'))
                    {
                        // The descriptor really holds that directory.
                        assert_eq!(std::fs::read_link(&pp).unwrap(), p.real);
                        return format!("<{}>{rest}", p.real.display());
                    }
                }
                // A directory the exec stage creates, shown `<+DIR>`.
                for m in &c.mkdirs {
                    let pp = format!("/proc/self/fd/{}", m.slot.as_raw_fd());
                    if let Some(rest) = s.strip_prefix(&pp)
                        && (rest.is_empty() || rest.starts_with('/'))
                    {
                        return format!("<+{}>{rest}", m.expect.display());
                    }
                }
                panic!("{s} is not a held descriptor")
            })
            .collect()
    }

    const PULL: &str = "rsync --server --sender -logDtpre.iLsfxCIvu . ";
    const PULLR: &str = "rsync --server --sender -logDtpRe.iLsfxCIvu . ";
    const PUSH: &str = "rsync --server -logDtpre.iLsfxCIvu . ";

    #[test]
    fn sender_forms() {
        let f = fixture();
        let w = f.base.join("www");
        let w = w.display();
        let table: &[(&str, Vec<String>)] = &[
            // The root by name, as `host:dir` would send it: its parent held.
            ("www", vec![format!("<{}>/www", f.base.display())]),
            ("www/", vec![format!("<{w}>/")]),
            ("www/.", vec![format!("<{w}>/.")]),
            ("www/sub", vec![format!("<{w}>/sub")]),
            ("www/sub/", vec![format!("<{w}/sub>/")]),
            ("www/sub/file.txt", vec![format!("<{w}/sub>/file.txt")]),
            ("www/sub/..", vec![format!("<{w}>/.")]),
            ("www/sub/../a.txt", vec![format!("<{w}>/a.txt")]),
            ("www/insub/file.txt", vec![format!("<{w}/sub>/file.txt")]),
            ("www/insub/", vec![format!("<{w}/sub>/")]),
            // The link itself is sent (as a link), from its directory.
            ("www/insub", vec![format!("<{w}>/insub")]),
            ("www/leak", vec![format!("<{w}>/leak")]),
            (
                "www/*.txt",
                vec![format!("<{w}>/a.txt"), format!("<{w}>/b.txt")],
            ),
            ("www/.*.txt", vec![format!("<{w}>/.hidden.txt")]),
            ("www/s*/f*", vec![format!("<{w}/sub>/file.txt")]),
            // A wildcard in a parent yields only existing paths.
            // (insub is a link to sub: its real directory is what is held.)
            ("www/s*/file.txt", vec![format!("<{w}/sub>/file.txt")]),
            (
                "www/*sub/file.txt",
                vec![format!("<{w}/sub>/file.txt"), format!("<{w}/sub>/file.txt")],
            ),
            // With a trailing slash, as in the shell, only directories
            // (and links to them) match.
            ("www/[bs]*/", vec![format!("<{w}/sub>/")]),
            ("www/[ai]*/", vec![format!("<{w}/sub>/")]),
        ];
        for (path, want) in table {
            let c = confine_cmd(&f, &format!("{PULL}{path}"))
                .unwrap_or_else(|e| panic!("{path}: {e:?}"));
            assert_eq!(&real_args(&c), want, "{path}");
        }
        // Absolute spelling of a module path.
        let c = confine_cmd(&f, &format!("{PULL}{w}/sub/file.txt")).unwrap();
        assert_eq!(real_args(&c), [format!("<{w}/sub>/file.txt")]);
    }

    #[test]
    fn sender_refusals() {
        let f = fixture();
        let table: &[(&str, &str)] = &[
            ("www/..", "escapes_module"),
            ("www/../outside", "escapes_module"),
            ("www/sub/../../outside/secret", "escapes_module"),
            ("www/out/secret", "escapes_module"),
            ("www/out/", "escapes_module"),
            ("www/leak/", "escapes_module"),
            ("www/dangling/", "dangling_symlink"),
            // What does not exist is refused: rsync would look it up by
            // name, and a link could be there by then.
            ("www/missing", "not_found"),
            ("www/missing/", "not_found"),
            ("www/missing/x", "not_found"),
            ("www/sub/missing/x", "not_found"),
            ("www/*.nomatch", "not_found"),
            ("www/a\\*", "not_found"),
            ("www/a.txt/x", "not_a_directory"),
            ("www/a.txt/", "not_a_directory"),
            // A wildcard below a file, or below nothing, matches nothing
            // (the file's directory is not listed in its place).
            ("www/a.txt/*", "not_a_directory"),
            ("www/missing/*", "not_found"),
            // A wildcard walking into a link that leads out (www/out).
            ("www/*/file.txt", "escapes_module"),
            ("www/o*/secret", "escapes_module"),
        ];
        for (path, code) in table {
            let e = confine_cmd(&f, &format!("{PULL}{path}")).unwrap_err();
            assert_eq!(e.code(), *code, "{path}: {e}");
        }
    }

    #[test]
    fn relative_forms_keep_the_transmitted_names() {
        let f = fixture();
        let w = f.base.join("www");
        let table: &[(&str, String)] = &[
            // The anchor (the directory before /./) is held; the rest is
            // the name rsync transmits.
            (
                "www/sub/./file.txt",
                format!("<{}/sub>/./file.txt", w.display()),
            ),
            (
                "www/sub/file.txt",
                format!("<{}>/./www/sub/file.txt", f.base.display()),
            ),
            ("www/./sub/", format!("<{}>/./sub/", w.display())),
            ("www/sub/./.", format!("<{}/sub>/./.", w.display())),
        ];
        for (path, want) in table {
            let c = confine_cmd(&f, &format!("{PULLR}{path}")).unwrap();
            assert_eq!(&real_args(&c)[0], want, "{path}");
        }
        // Absolute without a marker: anchored at "/" so the full name travels.
        let abs = format!("{}/sub/file.txt", w.display());
        let c = confine_cmd(&f, &format!("{PULLR}{abs}")).unwrap();
        assert_eq!(real_args(&c)[0], format!("</>/.{abs}"));
        assert_eq!(
            confine_cmd(&f, &format!("{PULLR}www/./out/secret"))
                .unwrap_err()
                .code(),
            "escapes_module"
        );
        assert_eq!(
            confine_cmd(&f, &format!("{PULLR}www/./sub/../a.txt"))
                .unwrap_err()
                .code(),
            "escapes_module"
        );
    }

    /// Under -R rsync looks up every transmitted directory by name again:
    /// all of it must exist, and no one but root and the account may be
    /// able to replace one of them with a link.
    #[test]
    fn relative_walks_only_what_cannot_be_swapped() {
        let f = fixture();
        let bk = f.base.join("backup");
        std::fs::create_dir_all(bk.join("shared/d")).unwrap();
        std::fs::write(bk.join("shared/d/f"), "f").unwrap();
        let o = f.base.join("open");
        for (path, want) in [
            // Only the last name below the held anchor: nothing to walk.
            (
                "open/sub/deeper/./f",
                format!("<{}>/./f", o.join("sub/deeper").display()),
            ),
            (
                "backup/shared/d/./f",
                format!("<{}>/./f", bk.join("shared/d").display()),
            ),
            // Walked directories no one else can touch.
            ("backup/./prev/", format!("<{}>/./prev/", bk.display())),
        ] {
            let c = confine_cmd(&f, &format!("{PULLR}{path}")).unwrap();
            assert_eq!(real_args(&c)[0], want, "{path}");
        }
        for (path, code) in [
            ("www/./missing", "not_found"),
            ("www/./missing/x", "not_found"),
            ("www/./sub/missing/", "not_found"),
            ("www/sub/missing", "not_found"),
            // A directory of a module whose clients store working links.
            ("open/./sub/deeper/f", "swappable_path"),
            ("open/sub/./deeper/f", "swappable_path"),
            ("open/./sub/", "swappable_path"),
            ("open/sub/deeper/f", "swappable_path"),
            // A directory anyone may write to.
            ("backup/./shared/d/f", "swappable_path"),
            ("backup/shared/./d/f", "swappable_path"),
            ("backup/shared/./d/", "swappable_path"),
        ] {
            let e = confine_cmd(&f, &format!("{PULLR}{path}")).unwrap_err();
            assert_eq!(e.code(), code, "{path}: {e}");
        }
        let e = confine_cmd(&f, &format!("{PULLR}open/./sub/deeper/f")).unwrap_err();
        assert!(
            e.to_string().contains("put the /./ marker just before"),
            "{e}"
        );
        // The same pulls without -R hold the parent: nothing is walked.
        for path in ["open/sub/deeper/f", "backup/shared/d/f", "open/sub/"] {
            confine_cmd(&f, &format!("{PULL}{path}")).unwrap();
        }
    }

    /// `--ignore-missing-args` and `--delete-missing-args` ask rsync to
    /// skip a missing source: a missing last name (looked up without
    /// following a link) is passed on; a missing directory never is.
    #[test]
    fn missing_sources_only_where_rsync_skips_them() {
        let f = fixture();
        // (--delete-missing-args is a delete option: a writable module.)
        for (opt, m) in [
            ("--ignore-missing-args", "www"),
            ("--delete-missing-args", "backup"),
        ] {
            let dir = f.base.join(m);
            std::fs::create_dir_all(dir.join("sub")).unwrap();
            let pull = |p: &str| {
                confine_cmd(
                    &f,
                    &format!("rsync --server --sender -logDtpre.iLsfxCIvu {opt} . {m}/{p}"),
                )
            };
            let c = pull("missing").unwrap();
            assert_eq!(real_args(&c), [format!("<{}>/missing", dir.display())]);
            for p in ["missing/", "missing/x"] {
                assert_eq!(pull(p).unwrap_err().code(), "not_found", "{opt} {p}");
            }
            let pull_r = |p: &str| {
                confine_cmd(
                    &f,
                    &format!("rsync --server --sender -logDtpRe.iLsfxCIvu {opt} . {m}/{p}"),
                )
            };
            let c = pull_r("./sub/missing").unwrap();
            assert_eq!(
                real_args(&c),
                [format!("<{}>/./sub/missing", dir.display())]
            );
            assert_eq!(
                pull_r("./missing/x").unwrap_err().code(),
                "not_found",
                "{opt}"
            );
        }
    }

    #[test]
    fn receiver_forms() {
        let f = fixture();
        let b = f.base.join("backup");
        std::fs::write(b.join("file.txt"), "x").unwrap();
        symlink("file.txt", b.join("to-file")).unwrap();
        let b = b.display();
        let o = f.base.join("open");
        let o = o.display();
        const MKPATH: &str = "rsync --server -logDtpre.iLsfxCIvu --mkpath . ";
        let table: &[(&str, &str, String)] = &[
            (PUSH, "backup", format!("<{b}>")),
            (PUSH, "backup/", format!("<{b}>/")),
            (PUSH, "backup/prev/", format!("<{b}/prev>/")),
            // A missing destination directory is created and held.
            (PUSH, "backup/new/", format!("<+{b}/new>/")),
            (PUSH, "backup/new/.", format!("<+{b}/new>/.")),
            (MKPATH, "backup/new/deeper/", format!("<+{b}/new/deeper>/")),
            // A name the transfer makes a file or a directory: rsync looks
            // it up in the held parent, where no one else can put a link.
            (PUSH, "backup/new", format!("<{b}>/new")),
            (PUSH, "backup/file.txt", format!("<{b}>/file.txt")),
            (PUSH, "backup/to-file", format!("<{b}>/to-file")),
            (MKPATH, "backup/new/deeper", format!("<+{b}/new>/deeper")),
            (PUSH, "backup/prev/../cur", format!("<{b}>/cur")),
            // Where links can appear, only held directories are handed on.
            (PUSH, "backup/shared/new/", format!("<+{b}/shared/new>/")),
            (PUSH, "open/new/", format!("<+{o}/new>/")),
            (PUSH, "open/sub/", format!("<{o}/sub>/")),
        ];
        for (cmd, path, want) in table {
            let c = confine_cmd(&f, &format!("{cmd}{path}")).unwrap();
            assert_eq!(&real_args(&c)[0], want, "{path}");
        }
        // The planned directory: its names below the held parent.
        let c = confine_cmd(&f, &format!("{MKPATH}backup/new/deeper/")).unwrap();
        assert_eq!(c.mkdirs.len(), 1);
        assert_eq!(c.mkdirs[0].names, [b"new".to_vec(), b"deeper".to_vec()]);
        assert_eq!(c.mkdirs[0].mode, 0o777);
        assert!(
            !f.base.join("backup/new").exists(),
            "nothing is created here"
        );
        for (cmd, path, code) in [
            (PUSH, "backup/file.txt/", "not_a_directory"),
            (PUSH, "backup/file.txt/.", "not_a_directory"),
            (PUSH, "backup/evil/", "escapes_module"),
            (PUSH, "backup/evil/x", "escapes_module"),
            (PUSH, "backup/..", "escapes_module"),
            (PUSH, "backup/new/../../x", "not_found"),
            // rsync creates no missing parents without --mkpath.
            (PUSH, "backup/new/deeper/", "not_found"),
            (PUSH, "backup/new/deeper", "not_found"),
            // A name looked up again where others can plant a link.
            (PUSH, "backup/shared/new", "swappable_path"),
            (PUSH, "open/new", "swappable_path"),
            (PUSH, "open/sub/deeper/f", "swappable_path"),
            (MKPATH, "open/new/deeper", "swappable_path"),
        ] {
            let e = confine_cmd(&f, &format!("{cmd}{path}")).unwrap_err();
            assert_eq!(e.code(), code, "{path}: {e}");
        }
        // The client is told what to do; the audit log where and why.
        let e = confine_cmd(&f, &format!("{PUSH}backup/shared/new")).unwrap_err();
        assert!(
            e.to_string().contains("end the destination with '/'"),
            "{e}"
        );
        assert!(
            !e.to_string().contains(&f.base.display().to_string()),
            "{e}"
        );
        let detail = crate::audit::Reason::from(&e).detail.unwrap();
        assert!(
            detail.contains("writable by its group or others"),
            "{detail}"
        );
        let e = confine_cmd(&f, &format!("{PUSH}open/new")).unwrap_err();
        let detail = crate::audit::Reason::from(&e).detail.unwrap();
        assert!(detail.contains("writable module 'open'"), "{detail}");
    }

    #[test]
    fn path_options_resolve_against_the_destination() {
        let f = fixture();
        let b = f.base.join("backup");
        let c = confine_cmd(
            &f,
            "rsync --server -logDtpre.iLsfxCIvu --link-dest ../prev . backup/cur/",
        )
        .unwrap();
        let pin = c
            .pins
            .iter()
            .find(|p| c.path_opts[0].1 == p.proc_path().into_os_string())
            .unwrap();
        assert_eq!(pin.real, b.join("prev"));
        // Missing basis: dropped with a note.
        let c = confine_cmd(
            &f,
            "rsync --server -logDtpre.iLsfxCIvu --link-dest ../nope . backup/cur/",
        )
        .unwrap();
        assert!(c.path_opts.is_empty());
        assert!(
            c.notes.iter().any(|n| n.contains("does not exist yet")),
            "{:?}",
            c.notes
        );
        // Escapes.
        for opt in [
            "--link-dest ../../outside",
            "--link-dest ../evil",
            "--temp-dir ../evil",
            "--backup-dir ../../x",
        ] {
            let e = confine_cmd(
                &f,
                &format!("rsync --server -logDtpre.iLsfxCIvu {opt} . backup/cur/"),
            )
            .unwrap_err();
            assert_eq!(e.code(), "escapes_module", "{opt}");
        }
        // A missing backup dir is planned, not created: the exec stage
        // makes it and moves it onto the descriptor the argv names.
        let c = confine_cmd(
            &f,
            "rsync --server -blogDtpre.iLsfxCIvu --backup-dir ../bk/today . backup/cur/",
        )
        .unwrap();
        assert!(!b.join("bk").exists());
        // The destination cur/ is planned first, then the backup dir.
        assert_eq!(c.mkdirs.len(), 2);
        assert_eq!(c.mkdirs[0].expect, b.join("cur"));
        let m = &c.mkdirs[1];
        assert_eq!(m.expect, b.join("bk/today"));
        assert_eq!(m.names, [b"bk".to_vec(), b"today".to_vec()]);
        assert_eq!(m.mode, 0o777);
        assert_eq!(m.spelled, "../bk/today");
        let slot = format!("/proc/self/fd/{}", m.slot.as_raw_fd());
        assert_eq!(c.path_opts.len(), 1);
        assert_eq!(c.path_opts[0].1, std::ffi::OsString::from(&slot));
        // Until then the slot holds /dev/null: nothing rsync could use.
        assert_eq!(std::fs::read_link(&slot).unwrap(), Path::new("/dev/null"));
        // A relative --partial-dir that is a link leading out, where the
        // destination already exists.
        let e = confine_cmd(
            &f,
            "rsync --server -logDtpre.iLsfxCIvu --partial-dir evil . backup/",
        )
        .unwrap_err();
        assert_eq!(e.code(), "escapes_module");
        assert!(
            confine_cmd(
                &f,
                "rsync --server -logDtpre.iLsfxCIvu --partial-dir .p . backup/"
            )
            .is_ok()
        );
        // temp-dir must exist.
        let e = confine_cmd(
            &f,
            "rsync --server -logDtpre.iLsfxCIvu --temp-dir ../tmp . backup/cur/",
        )
        .unwrap_err();
        assert_eq!(e.code(), "not_found");
    }

    #[test]
    fn files_from_is_held_open() {
        let f = fixture();
        let c = confine_cmd(
            &f,
            "rsync --server --sender -logDtpRe.iLsfxCIvu --files-from www/list . www/",
        )
        .unwrap();
        let p = c.pins.iter().find(|p| p.real.ends_with("list")).unwrap();
        assert_eq!(c.path_opts[0].1, p.proc_path().into_os_string());
        assert_eq!(
            confine_cmd(
                &f,
                "rsync --server --sender -logDtpRe.iLsfxCIvu --files-from www/leak . www/"
            )
            .unwrap_err()
            .code(),
            "escapes_module"
        );
    }

    #[test]
    fn over_long_names_are_too_complex_not_internal() {
        let f = fixture();
        let long = "x".repeat(300);
        for cmd in [
            format!("{PULL}www/{long}/a"),
            format!("{PUSH}backup/{long}/"),
        ] {
            let e = confine_cmd(&f, &cmd).unwrap_err();
            assert_eq!(e.code(), "too_complex", "{cmd}: {e}");
        }
    }

    fn walker<'a>(root: &Path, notes: &'a mut Vec<String>) -> Walker<'a> {
        Walker {
            root: root.to_path_buf(),
            module: "m".into(),
            spelled: "m/x".into(),
            pins: Vec::new(),
            by_path: HashMap::new(),
            mkdirs: Vec::new(),
            notes,
            uid: 0,
            link_roots: &[],
            missing_ok: false,
            mkpath: false,
        }
    }

    /// The lookups rsync makes for a path, link by link: each directory
    /// and the name looked up in it.
    #[test]
    fn lookups_follow_links_as_the_kernel_does() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/f"), "f").unwrap();
        symlink("a", root.join("rel")).unwrap();
        symlink(root.join("a"), root.join("abs")).unwrap();
        symlink("../a", root.join("a/back")).unwrap();
        symlink(".", root.join("self")).unwrap();
        let mut notes = Vec::new();
        let w = walker(&root, &mut notes);
        let names =
            |n: &[&str]| -> Vec<Vec<u8>> { n.iter().map(|s| s.as_bytes().to_vec()).collect() };
        let at = |dir: &Path, name: &str| (dir.to_path_buf(), name.as_bytes().to_vec());
        let a = root.join("a");
        for (path, follow_last, want) in [
            (&["a", "b"][..], true, vec![at(&root, "a"), at(&a, "b")]),
            (&["a", "b"], false, vec![at(&root, "a")]),
            // A missing last name ends the walk.
            (&["a", "new"], true, vec![at(&root, "a"), at(&a, "new")]),
            (
                &["rel", "b"],
                true,
                vec![at(&root, "rel"), at(&root, "a"), at(&a, "b")],
            ),
            (
                &["a", "back", "b"],
                true,
                vec![at(&root, "a"), at(&a, "back"), at(&root, "a"), at(&a, "b")],
            ),
            // The last name, not followed, is looked up and left alone.
            (&["rel"], false, vec![]),
        ] {
            assert_eq!(
                w.lookups(&root, &names(path), follow_last),
                Ok(want),
                "{path:?}"
            );
        }
        // An absolute link starts again from /.
        let got = w.lookups(&root, &names(&["abs", "b"]), true).unwrap();
        assert_eq!(got.first(), Some(&at(&root, "abs")));
        assert_eq!(got.get(1).map(|(d, _)| d.as_path()), Some(Path::new("/")));
        assert_eq!(got.last(), Some(&at(&a, "b")));
        // A link whose target is missing, followed on the way: not found
        // (its target's last name is not the path's).
        symlink("a/gone", root.join("deep")).unwrap();
        for (path, code) in [
            (&["gone", "b"][..], "not_found"),
            (&["a", "f", "x"], "not_a_directory"),
            (&["deep", "x"], "not_found"),
        ] {
            assert_eq!(
                w.lookups(&root, &names(path), true).unwrap_err().code(),
                code,
                "{path:?}"
            );
        }
        let chain = |n: usize| {
            let mut p = vec!["self"; n];
            p.push("a");
            names(&p)
        };
        assert_eq!(
            w.lookups(&root, &chain(MAX_LINKS), true).map(|l| l.len()),
            Ok(MAX_LINKS + 1)
        );
        assert_eq!(
            w.lookups(&root, &chain(MAX_LINKS + 1), true)
                .unwrap_err()
                .code(),
            "too_complex"
        );
    }

    #[test]
    fn more_names_a_client_can_send() {
        use nix::sys::stat::Mode;
        let f = fixture();
        let www = f.base.join("www");
        // An over-long last name.
        let e = confine_cmd(&f, &format!("{PULL}www/{}", "x".repeat(300))).unwrap_err();
        assert_eq!(e.code(), "too_complex");
        // A --files-from that is a FIFO is refused at once, not waited on.
        nix::unistd::mkfifo(&www.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        let e = confine_cmd(
            &f,
            "rsync --server --sender -logDtpRe.iLsfxCIvu --files-from www/fifo . www/",
        )
        .unwrap_err();
        assert_eq!(e.code(), "not_found");
        // Escaped wildcards are literal characters of the name.
        std::fs::create_dir(www.join("a*b")).unwrap();
        std::fs::write(www.join("a*b/f"), "f").unwrap();
        let c = confine_cmd(&f, &format!("{PULL}www/a\\*b/*")).unwrap();
        assert_eq!(
            real_args(&c),
            [format!("<{}>/f", www.join("a*b").display())]
        );
        // A pattern that matches nothing is kept as the name it spells,
        // its escapes removed (as a shell does), and that name is missing.
        let e = confine_cmd(&f, &format!("{PULL}www/zz\\*q*")).unwrap_err();
        assert_eq!(e, DenyReason::NotFound("www/zz*q*".into()));
        // With --ignore-missing-args it is rsync's to skip: passed as that
        // name, below the held module root.
        let c = confine_cmd(
            &f,
            "rsync --server --sender -logDtpre.iLsfxCIvu --ignore-missing-args . www/zz\\*q*",
        )
        .unwrap();
        assert_eq!(real_args(&c), [format!("<{}>/zz*q*", www.display())]);
        // The module root by its name: held through its parent, a path-only
        // handle; a root whose directory has another name needs the marker.
        let c = confine_cmd(&f, &format!("{PULL}www")).unwrap();
        for p in &c.pins {
            let flags = nix::fcntl::fcntl(&p.fd, nix::fcntl::FcntlArg::F_GETFL).unwrap();
            assert!(
                OFlag::from_bits_truncate(flags)
                    .contains(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW),
                "{}",
                p.real.display()
            );
        }
        assert_eq!(real_args(&c), [format!("<{}>/www", f.base.display())]);
        let renamed = Fixture {
            _dir: tempfile::tempdir().unwrap(),
            base: f.base.clone(),
            policy: policy::load_text(
                Path::new("/p.toml"),
                &format!(
                    "[modules.web]\npath = \"{}\"\n[clients.c]\nmodules = [\"web\"]\n",
                    www.display()
                ),
            )
            .unwrap(),
        };
        let e = confine_cmd(&renamed, &format!("{PULL}web")).unwrap_err();
        assert_eq!(e.code(), "needs_marker", "{e:?}");
        assert!(confine_cmd(&renamed, &format!("{PULL}web/")).is_ok());
    }

    /// A wildcard below a file or a missing name lists nothing: the
    /// directory the walk stopped in is not listed in its place (it could
    /// hold more names than the budget of matches).
    #[test]
    fn a_wildcard_below_a_file_lists_no_directory() {
        let f = fixture();
        let www = f.base.join("www");
        for i in 0..MAX_MATCHES {
            std::fs::write(www.join(format!("n{i}")), "").unwrap();
        }
        for (path, code) in [
            ("www/a.txt/*", "not_a_directory"),
            ("www/missing/*", "not_found"),
        ] {
            let e = confine_cmd(&f, &format!("{PULL}{path}")).unwrap_err();
            assert_eq!(e.code(), code, "{path}: {e}");
        }
        // Listing www itself is past the budget.
        let e = confine_cmd(&f, &format!("{PULL}www/*")).unwrap_err();
        assert_eq!(e.code(), "too_complex");
    }

    #[test]
    fn failed_lookups_and_links_say_why() {
        let err = io::Error::from_raw_os_error;
        for (errno, lookup, link) in [
            (libc::ENOENT, "internal", "dangling_symlink"),
            (libc::ENOTDIR, "not_a_directory", "dangling_symlink"),
            (libc::ENAMETOOLONG, "too_complex", "too_complex"),
            (libc::ELOOP, "internal", "too_complex"),
            (libc::EACCES, "internal", "internal"),
            (libc::EIO, "internal", "internal"),
        ] {
            assert_eq!(lookup_failed(&err(errno), "m/x").code(), lookup, "{errno}");
            assert_eq!(link_failed(&err(errno), "m/x").code(), link, "{errno}");
        }
        assert_eq!(
            lookup_failed(&err(libc::EACCES), "m/x"),
            DenyReason::Internal(format!("m/x: {}", err(libc::EACCES)))
        );
        assert_eq!(
            link_failed(&err(libc::ELOOP), "m/x"),
            DenyReason::TooComplex("m/x".into())
        );
    }

    /// Who could swap an entry for a symlink: anyone but root and the
    /// account owning the directory, or anyone at all where it is writable
    /// by others (except an existing entry of theirs in a root-owned
    /// sticky directory), or a client of a module that keeps symlinks.
    #[test]
    fn who_could_swap_an_entry() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        let dir = root.join("d");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("entry"), "").unwrap();
        let me = nix::unistd::geteuid().as_raw();
        // The account's own directory (as root: one given to uid 4242).
        let account = if me == 0 { 4242 } else { me };
        if me == 0 {
            for p in [&dir, &dir.join("entry")] {
                std::os::unix::fs::chown(p, Some(account), None).unwrap();
            }
        }
        let mut notes = Vec::new();
        let mut w = walker(&root, &mut notes);
        w.uid = account;
        assert_eq!(w.swappable(&dir, b"entry"), None);
        if me == 0 {
            // Root's directories are trusted whoever the account is.
            assert_eq!(w.swappable(&root, b"d"), None);
        }
        w.uid = account + 1;
        let why = w.swappable(&dir, b"entry").expect("someone else's");
        assert!(
            why.starts_with(&format!("{} is owned by ", dir.display())),
            "{why}"
        );
        w.uid = account;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(
            w.swappable(&dir, b"entry"),
            Some(format!(
                "{} is writable by its group or others (mode 777)",
                dir.display()
            ))
        );
        if me == 0 {
            // A root-owned sticky directory: an existing entry of the
            // account's is held; a missing one, or someone else's, is not.
            std::os::unix::fs::chown(&dir, Some(0), None).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
            assert_eq!(w.swappable(&dir, b"entry"), None);
            assert!(w.swappable(&dir, b"missing").is_some());
            std::os::unix::fs::chown(dir.join("entry"), Some(4343), None).unwrap();
            assert!(w.swappable(&dir, b"entry").is_some());
            // Not sticky: nothing is held.
            std::os::unix::fs::chown(dir.join("entry"), Some(account), None).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
            assert!(w.swappable(&dir, b"entry").is_some());
            // Sticky but not root's: nothing is held.
            std::os::unix::fs::chown(&dir, Some(4343), None).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
            w.uid = 4343;
            assert!(w.swappable(&dir, b"entry").is_some());
        }
        // A module whose clients can store symlinks.
        let links = [("drop".to_string(), root.clone())];
        let mut notes = Vec::new();
        let mut w = walker(&root, &mut notes);
        w.link_roots = &links;
        let why = w.swappable(&root, b"d").expect("a module that keeps links");
        assert!(why.ends_with("is in writable module 'drop', whose clients can store symlinks (munge_links = false)"), "{why}");
    }

    /// If what gets opened is not where the check found it (a component
    /// swapped for a symlink in between), the request is refused.
    #[test]
    fn a_pin_that_lands_elsewhere_is_a_race() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(root.join("elsewhere/b")).unwrap();
        let mut notes = Vec::new();
        let mut w = walker(&root, &mut notes);
        assert!(w.pin(&root.join("a/b")).is_ok());
        // The check saw root/c/b as a real directory; by the time it is
        // opened, c has become a link to elsewhere.
        std::os::unix::fs::symlink(root.join("elsewhere"), root.join("c")).unwrap();
        assert_eq!(w.pin(&root.join("c/b")).unwrap_err().code(), "race");
    }

    /// Once held, a directory is what rsync reaches, whatever happens to
    /// its name afterwards.
    #[test]
    fn a_held_directory_survives_a_swap() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        std::fs::create_dir_all(root.join("m/dir")).unwrap();
        std::fs::write(root.join("m/dir/file"), "inside").unwrap();
        std::fs::create_dir(root.join("outside")).unwrap();
        std::fs::write(root.join("outside/file"), "outside").unwrap();
        let mut notes = Vec::new();
        let mut w = walker(&root.join("m"), &mut notes);
        let i = w.pin(&root.join("m/dir")).unwrap();
        let through = w.below(i, &[b"file".to_vec()]);
        // Swap the checked directory for a link leading out.
        std::fs::rename(root.join("m/dir"), root.join("m/old")).unwrap();
        std::os::unix::fs::symlink(root.join("outside"), root.join("m/dir")).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("m/dir/file")).unwrap(),
            "outside"
        );
        assert_eq!(
            std::fs::read_to_string(PathBuf::from(through)).unwrap(),
            "inside"
        );
    }

    #[test]
    fn pins_are_inheritable_and_shared() {
        let f = fixture();
        let c = confine_cmd(&f, &format!("{PULL}www/a.txt www/b.txt")).unwrap();
        // Root and one shared parent.
        assert_eq!(c.pins.len(), 1);
        let flags = nix::fcntl::fcntl(&c.pins[0].fd, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_eq!(flags & libc::FD_CLOEXEC, 0, "pins must survive exec");
    }

    #[test]
    fn unsafe_module_roots_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let f = fixture();
        let w = f.base.join("www");
        std::fs::set_permissions(&w, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = confine_cmd(&f, &format!("{PULL}www/")).unwrap_err();
        assert_eq!(e.code(), "module_unsafe");
        std::fs::set_permissions(&w, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::remove_dir_all(f.base.join("backup")).unwrap();
        let e = confine_cmd(&f, &format!("{PUSH}backup/")).unwrap_err();
        assert_eq!(e.code(), "module_missing");
        assert_eq!(
            e.server_detail(),
            format!("{} does not exist", f.base.join("backup").display())
        );
        std::fs::write(f.base.join("backup"), "").unwrap();
        let e = confine_cmd(&f, &format!("{PUSH}backup/")).unwrap_err();
        assert_eq!(e.code(), "module_missing");
        assert!(
            e.server_detail().ends_with("backup is not a directory"),
            "{e:?}"
        );
        std::fs::remove_file(f.base.join("backup")).unwrap();
        std::os::unix::fs::symlink(f.base.join("gone"), f.base.join("backup")).unwrap();
        let e = confine_cmd(&f, &format!("{PUSH}backup/")).unwrap_err();
        assert!(
            e.server_detail()
                .ends_with("is a symlink to something that does not exist"),
            "{e:?}"
        );
    }

    #[test]
    fn a_module_reached_through_a_file_is_missing() {
        let f = fixture();
        let mut m = f.policy.modules["www"].clone();
        m.path = f.base.join("list-file/www");
        std::fs::write(f.base.join("list-file"), "").unwrap();
        let e = check_module(&m, &account(), &[]).unwrap_err();
        assert_eq!(e.code(), "module_missing");
        assert_eq!(
            e.server_detail(),
            format!(
                "{} does not exist (a component of it is not a directory)",
                m.path.display()
            )
        );
    }

    /// A module path that ends in a symlink loop is not "missing": the
    /// ownership walk names the loop (only ENOTDIR and ENOENT say a
    /// module does not exist).
    #[test]
    fn a_module_through_a_symlink_loop_is_unsafe_not_missing() {
        let f = fixture();
        let mut m = f.policy.modules["www"].clone();
        m.path = f.base.join("loop-a");
        symlink("loop-b", f.base.join("loop-a")).unwrap();
        symlink("loop-a", f.base.join("loop-b")).unwrap();
        let e = check_module(&m, &account(), &[]).unwrap_err();
        assert_eq!(e.code(), "module_unsafe", "{e:?}");
        assert!(!e.server_detail().contains("does not exist"), "{e:?}");
    }

    #[test]
    fn a_daemons_modules_each_once_and_the_unsafe_left_out() {
        let f = fixture();
        std::fs::remove_dir_all(f.base.join("backup")).unwrap();
        let names: Vec<String> = ["www", "backup", "www", "nope", "open"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (mut notes, mut left_out) = (Vec::new(), Vec::new());
        let kept = check_modules(
            &f.policy,
            &names,
            &account(),
            &[],
            &mut notes,
            &mut left_out,
        );
        let kept: Vec<(&str, PathBuf)> = kept
            .iter()
            .map(|(m, r)| (m.name.as_str(), r.clone()))
            .collect();
        assert_eq!(
            kept,
            [("www", f.base.join("www")), ("open", f.base.join("open"))]
        );
        let codes: Vec<&str> = left_out.iter().map(DenyReason::code).collect();
        assert_eq!(codes, ["module_missing"]);
        assert_eq!(
            notes,
            [format!(
                "module 'backup' left out: {} does not exist",
                f.base.join("backup").display()
            )]
        );
    }

    #[test]
    fn symlink_chains_are_bounded_and_unresolvable_targets_named() {
        let f = fixture();
        let www = f.base.join("www");
        symlink(".", www.join("self")).unwrap();
        let chain = |n: usize| format!("{PULL}www/{}a.txt", "self/".repeat(n));
        let c = confine_cmd(&f, &chain(MAX_LINKS)).unwrap();
        assert_eq!(real_args(&c), [format!("<{}>/a.txt", www.display())]);
        assert_eq!(
            confine_cmd(&f, &chain(MAX_LINKS + 1)).unwrap_err().code(),
            "too_complex"
        );
        symlink("loop2", www.join("loop1")).unwrap();
        symlink("loop1", www.join("loop2")).unwrap();
        symlink("a.txt/x", www.join("through-a-file")).unwrap();
        symlink("x".repeat(300), www.join("overlong")).unwrap();
        for (link, code) in [
            ("loop1", "too_complex"),
            ("through-a-file", "dangling_symlink"),
            ("overlong", "too_complex"),
            ("dangling", "dangling_symlink"),
        ] {
            let e = confine_cmd(&f, &format!("{PULL}www/{link}/")).unwrap_err();
            assert_eq!(e.code(), code, "{link}: {e:?}");
        }
    }

    #[test]
    fn a_per_directory_name_is_passed_as_the_client_wrote_it() {
        let f = fixture();
        let c = confine_cmd(
            &f,
            "rsync --server -logDtpre.iLsfxCIvu --partial-dir=.part . backup/",
        )
        .unwrap();
        let opts: Vec<(&str, String)> = c
            .path_opts
            .iter()
            .map(|(s, v)| (s.long, v.to_string_lossy().into_owned()))
            .collect();
        assert_eq!(opts, [("partial-dir", ".part".to_string())]);
    }

    /// The trace shows each argument's held directory, and says which
    /// ones the gate creates.
    #[test]
    fn traced_paths_show_what_each_descriptor_holds() {
        let f = fixture();
        let traced = |cmd: String| -> Vec<(String, String)> {
            let g = grant(&f, &cmd);
            let m = &f.policy.modules[&g.module];
            let mut trace: Vec<TraceStep> = Vec::new();
            confine_with(
                &g,
                m,
                &account(),
                &[],
                &link_writable_roots(&f.policy),
                &mut trace,
            )
            .unwrap();
            trace
                .into_iter()
                .filter_map(|s| match s {
                    TraceStep::Path { path, resolved, .. } => Some((path, resolved)),
                    _ => None,
                })
                .collect()
        };
        let b = &f.base;
        assert_eq!(
            traced(format!("{PULL}www/a.txt www/sub/")),
            [
                ("www/a.txt".into(), format!("{}/www/a.txt", b.display())),
                ("www/sub/".into(), format!("{}/www/sub/", b.display())),
            ]
        );
        assert_eq!(
            traced(format!("{PUSH}backup/new/")),
            [(
                "backup/new/".into(),
                format!(
                    "{}/backup/new/ (created by the gate before rsync starts)",
                    b.display()
                )
            )]
        );
    }

    /// Pins are O_PATH descriptors of directories that were not reached
    /// through a symlink: nothing can be read through them, and they hold
    /// exactly what was checked.
    #[test]
    fn pins_are_path_only_directory_handles() {
        let f = fixture();
        let c = confine_cmd(&f, &format!("{PULL}www/a.txt www/sub/")).unwrap();
        assert!(!c.pins.is_empty());
        for p in &c.pins {
            let flags = nix::fcntl::fcntl(&p.fd, nix::fcntl::FcntlArg::F_GETFL).unwrap();
            let flags = OFlag::from_bits_truncate(flags);
            assert!(
                flags.contains(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW),
                "{}: {flags:?}",
                p.real.display()
            );
        }
        // "/" itself, held for an absolute path under -R (no symlink to
        // refuse there, so no O_NOFOLLOW).
        let abs = f.base.join("www/a.txt");
        let c = confine_cmd(&f, &format!("{PULLR}{}", abs.display())).unwrap();
        let slash = c.pins.iter().find(|p| p.real == Path::new("/")).unwrap();
        let flags = nix::fcntl::fcntl(&slash.fd, nix::fcntl::FcntlArg::F_GETFL).unwrap();
        let flags = OFlag::from_bits_truncate(flags);
        assert!(
            flags.contains(OFlag::O_PATH | OFlag::O_DIRECTORY),
            "/: {flags:?}"
        );
    }

    #[test]
    fn writable_module_containing_home_is_refused() {
        let f = fixture();
        let mut acct = account();
        acct.home = Some(f.base.join("backup/home/u"));
        std::fs::create_dir_all(f.base.join("backup/home/u")).unwrap();
        let m = &f.policy.modules["backup"];
        assert_eq!(
            check_module(m, &acct, &[]).unwrap_err().code(),
            "module_contains_home"
        );
        // A read-only module may contain it (root backups pull "/").
        let m = &f.policy.modules["www"];
        acct.home = Some(f.base.join("www"));
        assert!(check_module(m, &acct, &[]).is_ok());
        // A writable module may not hold the gate's files.
        acct.home = None;
        let m = &f.policy.modules["backup"];
        let e = check_module(m, &acct, &[f.base.join("backup/log/audit.jsonl")]).unwrap_err();
        assert!(
            matches!(e, DenyReason::ModuleUnsafe { ref why, .. } if why.contains("gate's own file")),
            "{e:?}"
        );
    }

    /// The gate binary and the directories `include` names are the gate's
    /// own files (as the policy lists them), and so is anything reached
    /// through a symlink inside a writable module.
    #[test]
    fn writable_module_reaching_the_gate_binary_or_drop_ins_is_refused() {
        let f = fixture();
        let acct = account();
        let backup = &f.policy.modules["backup"];
        let www = &f.policy.modules["www"];
        let unsafe_for = |m: &Module, gate: &Path| {
            check_module(m, &acct, &f.policy.protected_paths(gate)).is_err()
        };
        // The binary inside the writable module; fine in a read-only one.
        let inside = f.base.join("backup/bin/rsync-gate");
        assert!(unsafe_for(backup, &inside));
        assert!(!unsafe_for(www, &f.base.join("www/bin/rsync-gate")));
        let elsewhere = f.base.join("outside/rsync-gate");
        assert!(!unsafe_for(backup, &elsewhere));
        // Outside, but named through a link the module's writers can
        // replace: outside/bin -> backup/link -> outside/real.
        let real = f.base.join("outside/real");
        std::fs::create_dir(&real).unwrap();
        symlink(&real, f.base.join("backup/link")).unwrap();
        symlink(f.base.join("backup/link"), f.base.join("outside/bin")).unwrap();
        assert!(unsafe_for(backup, &f.base.join("outside/bin/rsync-gate")));
        assert!(!unsafe_for(backup, &real.join("rsync-gate")));
        // An include pattern's directory.
        let text = format!(
            "[gate]\ninclude = [\"{}/backup/conf.d/*.toml\"]\n\
             [modules.backup]\npath = \"{}/backup\"\nread_only = false\n",
            f.base.display(),
            f.base.display()
        );
        let p = policy::load_text(Path::new("/p.toml"), &text).unwrap();
        let e =
            check_module(&p.modules["backup"], &acct, &p.protected_paths(&elsewhere)).unwrap_err();
        assert!(
            matches!(e, DenyReason::ModuleUnsafe { ref why, .. } if why.contains("backup/conf.d")),
            "{e:?}"
        );
    }
}
