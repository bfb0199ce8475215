//! Real rsync clients through the gate: rsync 3.0.9, 3.1.3, 3.2.3, 3.2.7,
//! 3.4.1 and 3.5.0, and openrsync (its upstream with the protocol-27 fix,
//! and the KlaraSystems line that macOS ships). Every client runs every
//! case it can through the shim that plays sshd and, for comparison,
//! through a plain shell (no gate, the same rsync 3.5 server): the trees
//! must be the same byte for byte. One client of each family also goes
//! through a real sshd.
//!
//! The clients are found in `$RSYNC_GATE_CLIENTS` if set, else in
//! `shared/clients` next to the repository, else in `/work/shared/clients`
//! (its README says how they were built); rsync 3.2.7 is Debian's, which
//! `.ci/run` unpacks into `/opt/rsync-gate-tests/rsync-3.2.7`, and 3.5.0 is
//! `/usr/bin/rsync`. Outside CI a missing client is skipped with a note;
//! with `CI=true` it fails the test.
//!
//! Each family has one world and runs its clients in parallel; each test
//! prints its client × case matrix and the `SSH_ORIGINAL_COMMAND` each
//! client sent for a basic pull and push.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Duration;

use crate::common::{self, Entry, World, set_mode};
use crate::sshd;

/// Debian's rsync 3.2.7, unpacked by `.ci/run`.
const RSYNC_327: &str = "/opt/rsync-gate-tests/rsync-3.2.7/usr/bin/rsync";
/// The system's rsync: the newest client, and the server everywhere.
const RSYNC_350: &str = "/usr/bin/rsync";
/// Longest one client run may take.
const LIMIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// The clients
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Rsync,
    Openrsync,
}

/// One client binary and what it can do.
#[derive(Debug, Clone)]
struct Client {
    name: &'static str,
    bin: PathBuf,
    family: Family,
    /// rsync 3.2.4 and later escape shell-special characters in remote
    /// paths; older rsyncs and openrsync send them as they are.
    escapes: bool,
    /// KlaraSystems' openrsync: `-h`, `--files-from`, `--list-only`,
    /// `--no-super`, and it asks for `openrsync --server` unless told
    /// `--rsync-path=rsync`.
    klara: bool,
}

impl Client {
    fn rsync(&self) -> bool {
        self.family == Family::Rsync
    }
    /// `-s` / `--protect-args`, `-A`, `-X`, `host::` (daemon over ssh).
    fn full(&self) -> bool {
        self.rsync()
    }
    /// `--files-from`, `--list-only`, `-h`, `--no-super`.
    fn extras(&self) -> bool {
        self.rsync() || self.klara
    }
}

/// Where the client binaries are: `$RSYNC_GATE_CLIENTS` if set, else
/// `shared/clients` beside the repository, else `/work/shared/clients`.
fn clients_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("RSYNC_GATE_CLIENTS") {
        return Some(PathBuf::from(d));
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    [
        repo.join("../shared/clients"),
        PathBuf::from("/work/shared/clients"),
    ]
    .into_iter()
    .find(|d| d.is_dir())
}

/// A required client: outside CI a missing one is skipped (None, with a
/// note); in CI it fails the test.
fn require_client(name: &str, path: Option<PathBuf>) -> Option<PathBuf> {
    match path {
        Some(p) if p.is_file() => Some(p),
        other => {
            let shown = other.map_or_else(
                || "(no clients directory)".into(),
                |p| p.display().to_string(),
            );
            assert!(
                !common::in_ci(),
                "client {name} is required in CI but missing: {shown} (set RSYNC_GATE_CLIENTS, or see .ci/run)"
            );
            eprintln!("SKIP: client {name} not found ({shown})");
            None
        }
    }
}

/// A known client: name, family, escapes paths, KlaraSystems' openrsync,
/// where it is, what its `--version` says.
type Known = (
    &'static str,
    Family,
    bool,
    bool,
    Option<PathBuf>,
    Option<&'static str>,
);

/// The clients of a family that are here (all of them, in CI).
fn clients(family: Family) -> Vec<Client> {
    let dir = clients_dir();
    let in_dir = |file: &str| dir.as_ref().map(|d| d.join(file));
    let table: &[Known] = &[
        (
            "3.0.9",
            Family::Rsync,
            false,
            false,
            in_dir("rsync-3.0.9"),
            Some("version 3.0.9 "),
        ),
        (
            "3.1.3",
            Family::Rsync,
            false,
            false,
            in_dir("rsync-3.1.3"),
            Some("version 3.1.3 "),
        ),
        (
            "3.2.3",
            Family::Rsync,
            false,
            false,
            in_dir("rsync-3.2.3"),
            Some("version 3.2.3 "),
        ),
        (
            "3.2.7",
            Family::Rsync,
            true,
            false,
            in_dir("rsync-3.2.7")
                .filter(|p| p.is_file())
                .or_else(|| Some(PathBuf::from(RSYNC_327))),
            Some("version 3.2.7 "),
        ),
        (
            "3.4.1",
            Family::Rsync,
            true,
            false,
            in_dir("rsync-3.4.1"),
            Some("version 3.4.1 "),
        ),
        (
            "3.5.0",
            Family::Rsync,
            true,
            false,
            Some(PathBuf::from(RSYNC_350)),
            Some("version 3.5."),
        ),
        (
            "openrsync-fix",
            Family::Openrsync,
            false,
            false,
            in_dir("openrsync-fix"),
            None,
        ),
        (
            "openrsync-klara",
            Family::Openrsync,
            false,
            true,
            in_dir("openrsync-klara"),
            None,
        ),
    ];
    let mut out = Vec::new();
    for (name, fam, escapes, klara, path, version) in table {
        if *fam != family {
            continue;
        }
        let Some(bin) = require_client(name, path.clone()) else {
            continue;
        };
        if let Some(v) = version {
            let o = Command::new(&bin)
                .arg("--version")
                .output()
                .expect("run --version");
            let text = String::from_utf8_lossy(&o.stdout);
            assert!(
                text.contains(v),
                "{} is not rsync {name}: {text}",
                bin.display()
            );
        }
        out.push(Client {
            name,
            bin,
            family: *fam,
            escapes: *escapes,
            klara: *klara,
        });
    }
    out
}

// ---------------------------------------------------------------------------
// Trees
// ---------------------------------------------------------------------------

/// What a comparison looks at, per entry: type and content (or link
/// target) and mode, owner and group, the modification time of files and
/// symlinks, and which files are hard links of one another.
fn fingerprint(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut inodes: BTreeMap<u64, PathBuf> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for (rel, entry) in common::tree(root) {
        let md = std::fs::symlink_metadata(root.join(&rel)).expect("lstat");
        let what = match entry {
            Entry::Dir { mode } => format!("dir {mode:o}"),
            Entry::File { mode, content } => {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                content.hash(&mut h);
                format!("file {mode:o} {} bytes #{:x}", content.len(), h.finish())
            }
            Entry::Symlink { target } => format!("link -> {}", target.display()),
            Entry::Other { mode } => format!("special {mode:o}"),
        };
        let mut s = format!("{what} uid={} gid={}", md.uid(), md.gid());
        if !md.is_dir() {
            s.push_str(&format!(" mtime={}", md.mtime()));
        }
        if md.is_file() && md.nlink() > 1 {
            let first = inodes.entry(md.ino()).or_insert_with(|| rel.clone());
            s.push_str(&format!(" link={}", first.display()));
        }
        out.insert(rel, s);
    }
    out
}

/// The two trees hold the same (see [`fingerprint`]).
fn same_tree(a: &Path, b: &Path) -> Result<(), String> {
    let (fa, fb) = (fingerprint(a), fingerprint(b));
    if fa.is_empty() {
        return Err(format!("{} is empty or missing", a.display()));
    }
    if fa == fb {
        return Ok(());
    }
    let mut diffs = Vec::new();
    for k in fa.keys().chain(fb.keys()) {
        if fa.get(k) != fb.get(k) && !diffs.iter().any(|(d, _, _)| d == k) {
            diffs.push((k.clone(), fa.get(k).cloned(), fb.get(k).cloned()));
        }
    }
    let shown: Vec<String> = diffs
        .iter()
        .take(6)
        .map(|(k, x, y)| format!("{}: {x:?} / {y:?}", k.display()))
        .collect();
    Err(format!(
        "trees differ ({} vs {}), {} entries: {}",
        a.display(),
        b.display(),
        diffs.len(),
        shown.join("; ")
    ))
}

/// The files a `--link-dest` push made hard links into `prev`.
fn linked_into(cur: &Path, prev: &Path) -> Result<(), String> {
    let mut files = 0;
    for (rel, entry) in common::tree(cur) {
        if let Entry::File { .. } = entry {
            files += 1;
            let (a, b) = (
                std::fs::metadata(cur.join(&rel)).expect("stat"),
                std::fs::metadata(prev.join(&rel))
                    .map_err(|e| format!("{}: {e}", rel.display()))?,
            );
            if a.ino() != b.ino() {
                return Err(format!("{} is not a hard link into prev", rel.display()));
            }
        }
    }
    if files == 0 {
        return Err(format!("no files in {}", cur.display()));
    }
    Ok(())
}

/// `cp -a`.
fn copy_tree(from: &Path, to: &Path) {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}

fn mkdirs(p: &Path) {
    std::fs::create_dir_all(p).expect("mkdir");
    set_mode(p, 0o755);
}

fn slash(p: &Path) -> String {
    format!("{}/", p.display())
}

// ---------------------------------------------------------------------------
// The world and one client's view of it
// ---------------------------------------------------------------------------

const POLICY: &str = r#"
[modules.www]
path = "{srv}/www"

[modules.up]
path = "{srv}/up"
read_only = false
munge_links = false

[modules.backup]
path = "{srv}/backup"
read_only = false
munge_links = false

[modules.drop]
path = "{srv}/drop"
read_only = false
write_only = true
overwrite = false
munge_links = false

[clients.c]
modules = ["www", "up", "backup", "drop"]
"#;

/// A world for one family: modules `www` (read-only: the sample tree, a
/// hard link, a list for `--files-from`), `up` and `backup` (writable),
/// `drop` (write-only, no overwriting); `plain/` beside `srv/` is where
/// the plain-shell runs push to; `src/` is what pushes send.
fn family_world() -> World {
    let w = World::new();
    let www = w.module_dir("www");
    common::sample_tree(&www);
    std::fs::hard_link(www.join("a.txt"), www.join("a-hardlink")).expect("link");
    std::fs::write(
        www.join("list.txt"),
        "a.txt\nsub/s.txt\ndir with space/file with space.txt\n",
    )
    .expect("w");
    for m in ["up", "backup", "drop"] {
        w.module_dir(m);
    }
    w.write_policy(POLICY);
    let src = w.root.join("src");
    mkdirs(&src);
    common::sample_tree(&src);
    std::fs::write(
        w.client.join("list.txt"),
        "a.txt\nsub/s.txt\ndir with space/file with space.txt\n",
    )
    .expect("w");
    w
}

/// Through the gate, or through a plain shell (the reference).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Gate,
    Plain,
}

/// One client in a family world.
struct Ctx<'a> {
    w: &'a World,
    c: &'a Client,
    /// The client's address in SSH_CONNECTION (tells its audit records
    /// apart).
    addr: String,
    shim: PathBuf,
    plain: PathBuf,
    /// Where this client's local destinations go.
    dir: PathBuf,
    /// Runs repeated after openrsync's end-of-session hangup (see `run`).
    retried: std::cell::Cell<usize>,
}

impl<'a> Ctx<'a> {
    fn new(w: &'a World, c: &'a Client, n: usize) -> Ctx<'a> {
        let addr = format!("127.0.0.{}", 10 + n);
        let dir = w.client.join(c.name);
        mkdirs(&dir);
        for m in ["up", "backup"] {
            mkdirs(
                &w.root
                    .join("srv")
                    .join(common::module_dir_name(m))
                    .join(c.name),
            );
            mkdirs(&w.root.join("plain").join(m).join(c.name));
        }
        mkdirs(&w.root.join("plain/drop"));
        Ctx {
            shim: w.shim_from("c", &addr),
            plain: w.plain_shim(),
            addr,
            w,
            c,
            dir,
            retried: std::cell::Cell::new(0),
        }
    }

    /// A path as the client writes it: escaped by hand where the client
    /// does not escape it itself.
    fn spell(&self, p: &str) -> String {
        if self.c.escapes {
            p.to_string()
        } else {
            p.replace(' ', "\\ ")
        }
    }

    /// `host:PATH` for a module path: as is through the gate, the module's
    /// real directory through the plain shell (push destinations go to
    /// `plain/` instead of the module).
    fn remote(&self, via: Via, path: &str) -> String {
        let p = match via {
            Via::Gate => path.to_string(),
            Via::Plain => {
                let first = path.split('/').next().unwrap_or_default();
                if matches!(first, "up" | "backup" | "drop") {
                    format!("{}/plain/{path}", self.w.root.display())
                } else {
                    let mut dir = common::module_dir_name(path);
                    if path.ends_with('/') && !dir.ends_with('/') {
                        dir.push('/');
                    }
                    format!("{}/srv/{dir}", self.w.root.display())
                }
            }
        };
        format!("localhost:{}", self.spell(&p))
    }

    /// Where a module path lands on the server for `via`.
    fn server(&self, via: Via, path: &str) -> PathBuf {
        match via {
            Via::Gate => self.w.root.join("srv").join(common::module_dir_name(path)),
            Via::Plain => self.w.root.join("plain").join(path),
        }
    }

    /// A fresh local destination for a case.
    fn dst(&self, case: &str, via: Via) -> PathBuf {
        self.dir.join(format!("{case}-{via:?}"))
    }

    /// Run the client: `-e SHIM [--rsync-path=rsync for klara] ARGS`.
    ///
    /// openrsync's sender checks `POLLHUP` before `POLLIN` on the channel
    /// from the server (`rsync_sender` in its sender.c). When rsync's
    /// server writes its last message and exits before the client polls,
    /// the client sees both at once and fails with `poll: hangup` after
    /// the transfer itself is done. That is a client race, through the
    /// gate or a plain shell alike (CI saw it once in a plain push). Such
    /// a run is repeated, at most twice, and counted in the report; any
    /// other failure, or a third hangup, stands.
    fn run(&self, via: Via, args: &[String]) -> Output {
        let mut o = self.run_once(via, args);
        for _ in 0..2 {
            if self.c.family != Family::Openrsync
                || o.status.success()
                || !common::stderr(&o).contains("error: poll: hangup")
            {
                break;
            }
            self.retried.set(self.retried.get() + 1);
            o = self.run_once(via, args);
        }
        o
    }

    fn run_once(&self, via: Via, args: &[String]) -> Output {
        let mut cmd = Command::new(&self.c.bin);
        cmd.arg("-e").arg(match via {
            Via::Gate => &self.shim,
            Via::Plain => &self.plain,
        });
        if self.c.klara && !args.iter().any(|a| a.starts_with("--rsync-path")) {
            cmd.arg("--rsync-path=rsync");
        }
        cmd.args(args).current_dir(&self.dir);
        sshd::run_timed(cmd, LIMIT)
    }

    fn ok(&self, via: Via, args: &[String]) -> Result<Output, String> {
        let o = self.run(via, args);
        if o.status.success() {
            Ok(o)
        } else {
            Err(format!(
                "{via:?} run {args:?}: {}; stderr: {}",
                o.status,
                common::stderr(&o)
            ))
        }
    }

    /// The same pull through the gate and through a plain shell: both
    /// succeed and give the same tree. `seed` prepares each destination.
    fn pull_with(
        &self,
        case: &str,
        opts: &[&str],
        path: &str,
        seed: &dyn Fn(&Path),
    ) -> Result<(), String> {
        let mut dsts = Vec::new();
        for via in [Via::Gate, Via::Plain] {
            let d = self.dst(case, via);
            seed(&d);
            let mut args: Vec<String> = opts.iter().map(|s| s.to_string()).collect();
            args.push(self.remote(via, path));
            args.push(slash(&d));
            self.ok(via, &args)?;
            dsts.push(d);
        }
        same_tree(&dsts[0], &dsts[1])
    }

    fn pull(&self, case: &str, opts: &[&str], path: &str) -> Result<(), String> {
        self.pull_with(case, opts, path, &|_| {})
    }

    /// The same push of `src/` through the gate and a plain shell, into
    /// `MODULE/CLIENT/CASE/`: the two server trees are the same.
    fn push_with(
        &self,
        case: &str,
        opts: &[&str],
        module: &str,
        seed: &dyn Fn(&Path),
    ) -> Result<(PathBuf, PathBuf), String> {
        let path = format!("{module}/{}/{case}/", self.c.name);
        let mut dsts = Vec::new();
        for via in [Via::Gate, Via::Plain] {
            seed(&self.server(via, &path));
            let mut args: Vec<String> = opts.iter().map(|s| s.to_string()).collect();
            args.push(slash(&self.w.root.join("src")));
            args.push(self.remote(via, &path));
            self.ok(via, &args)?;
            dsts.push(self.server(via, &path));
        }
        same_tree(&dsts[0], &dsts[1])?;
        Ok((dsts.remove(0), dsts.remove(0)))
    }

    fn push(&self, case: &str, opts: &[&str], module: &str) -> Result<(), String> {
        self.push_with(case, opts, module, &|_| {}).map(|_| ())
    }

    /// A gate run that must be refused with `message` in stderr.
    fn refused(&self, args: &[String], message: &str) -> Result<(), String> {
        let o = self.run(Via::Gate, args);
        let err = common::stderr(&o);
        if o.status.success() {
            return Err(format!("{args:?} was not refused; stderr: {err}"));
        }
        if !err.contains(message) {
            return Err(format!("{args:?}: want {message:?} in stderr: {err}"));
        }
        Ok(())
    }

    /// This client's latest decision record.
    fn last_decision(&self) -> Result<serde_json::Value, String> {
        let text = std::fs::read_to_string(&self.w.audit).map_err(|e| e.to_string())?;
        text.lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|r| r["event"] == "decision" && r["source"]["addr"] == self.addr.as_str())
            .ok_or_else(|| "no decision record".to_string())
    }

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }
}

// ---------------------------------------------------------------------------
// The cases
// ---------------------------------------------------------------------------

type Run = fn(&Ctx<'_>) -> Result<(), String>;

/// One case: an id for the matrix, which clients it applies to, and what
/// it does.
struct Case {
    id: &'static str,
    applies: fn(&Client) -> bool,
    run: Run,
}

fn every(_: &Client) -> bool {
    true
}

fn full(c: &Client) -> bool {
    c.full()
}

fn extras(c: &Client) -> bool {
    c.extras()
}

fn unescaping(c: &Client) -> bool {
    !c.escapes
}

const CASES: &[Case] = &[
    Case {
        id: "pull -a",
        applies: every,
        run: |x| x.pull("a", &["-a"], "www/"),
    },
    Case {
        id: "pull -avz --delete",
        applies: every,
        run: |x| {
            x.pull_with("avz-delete", &["-avz", "--delete"], "www/", &|d| {
                mkdirs(d);
                std::fs::write(d.join("stale.txt"), "not on the server\n").expect("w");
                std::fs::write(d.join("a.txt"), "changed\n").expect("w");
            })?;
            // openrsync sends --delete-before to the sender, which the gate
            // drops (and says so).
            let r = x.last_decision()?;
            if x.c.family == Family::Openrsync {
                let notes = r["notes"].to_string();
                if !notes.contains("dropped --delete-before") {
                    return Err(format!("no note of the dropped option: {r}"));
                }
            }
            Ok(())
        },
    },
    Case {
        id: "pull -aHAX --numeric-ids (openrsync: -aH)",
        applies: every,
        run: |x| {
            let opts: &[&str] = if x.c.full() {
                &["-aHAX", "--numeric-ids"]
            } else {
                &["-aH", "--numeric-ids"]
            };
            x.pull("hax", opts, "www/")
        },
    },
    Case {
        id: "pull -R www/./sub",
        applies: every,
        run: |x| x.pull("rel", &["-aR"], "www/./sub"),
    },
    Case {
        id: "pull path with spaces",
        applies: every,
        run: |x| x.pull("spaces", &["-a"], "www/dir with space/"),
    },
    Case {
        id: "spaces unescaped: refused, says why",
        applies: unescaping,
        run: |x| {
            let path = "localhost:www/dir with space/".to_string();
            let d = slash(&x.dst("unescaped", Via::Gate));
            x.refused(
                &[String::from("-a"), path, d],
                "this looks like a path with spaces from an rsync older than 3.2.4: use -s, or escape the spaces",
            )
        },
    },
    Case {
        id: "pull --files-from (local list)",
        applies: extras,
        run: |x| {
            let list = format!("--files-from={}", x.w.client.join("list.txt").display());
            x.pull("files-from", &[&list, "-a"], "www/")
        },
    },
    Case {
        id: "pull --files-from=:www/list.txt",
        applies: full,
        run: |x| {
            let mut dsts = Vec::new();
            for via in [Via::Gate, Via::Plain] {
                let d = x.dst("files-from-remote", via);
                let list = x.remote(via, "www/list.txt");
                let args = vec![
                    format!("--files-from={}", list.trim_start_matches("localhost")),
                    "-a".into(),
                    x.remote(via, "www/"),
                    slash(&d),
                ];
                x.ok(via, &args)?;
                dsts.push(d);
            }
            same_tree(&dsts[0], &dsts[1])
        },
    },
    Case {
        id: "--list-only",
        applies: extras,
        run: |x| {
            let mut outs = Vec::new();
            for via in [Via::Gate, Via::Plain] {
                let o = x.ok(via, &[String::from("--list-only"), x.remote(via, "www/")])?;
                let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
                text.push_str(&common::stderr(&o));
                outs.push(text);
            }
            if outs[0] != outs[1] || !outs[0].contains("a.txt") {
                return Err(format!("listings differ:\n{}\n---\n{}", outs[0], outs[1]));
            }
            Ok(())
        },
    },
    Case {
        id: "pull -s (path with spaces)",
        applies: full,
        run: |x| {
            let mut dsts = Vec::new();
            for via in [Via::Gate, Via::Plain] {
                let d = x.dst("secluded", via);
                // -s sends the path untouched: no escaping.
                let p = x.remote(via, "www/dir with space/").replace("\\ ", " ");
                x.ok(via, &[String::from("-sa"), p, slash(&d)])?;
                dsts.push(d);
            }
            same_tree(&dsts[0], &dsts[1])
        },
    },
    Case {
        id: "push -s --link-dest=../prev",
        applies: full,
        run: |x| {
            let (g, _) = x.push_with(
                "cur-s",
                &["-s", "-a", "--link-dest=../prev-s"],
                "backup",
                &|d| copy_tree(&x.w.root.join("src"), &d.with_file_name("prev-s")),
            )?;
            linked_into(&g, &g.with_file_name("prev-s"))
        },
    },
    Case {
        id: "host:: pull",
        applies: full,
        run: |x| {
            let g = x.dst("daemon", Via::Gate);
            x.ok(
                Via::Gate,
                &[String::from("-a"), "localhost::www/".into(), slash(&g)],
            )?;
            let p = x.dst("daemon", Via::Plain);
            x.ok(
                Via::Plain,
                &[String::from("-a"), x.remote(Via::Plain, "www/"), slash(&p)],
            )?;
            same_tree(&g, &p)
        },
    },
    Case {
        id: "host:: push",
        applies: full,
        run: |x| {
            let path = format!("up/{}/daemon/", x.c.name);
            let src = slash(&x.w.root.join("src"));
            x.ok(
                Via::Gate,
                &[
                    String::from("-a"),
                    src.clone(),
                    format!("localhost::{path}"),
                ],
            )?;
            x.ok(
                Via::Plain,
                &[String::from("-a"), src, x.remote(Via::Plain, &path)],
            )?;
            same_tree(&x.server(Via::Gate, &path), &x.server(Via::Plain, &path))
        },
    },
    Case {
        id: "push -a",
        applies: every,
        run: |x| x.push("push-a", &["-a"], "up"),
    },
    Case {
        id: "push --link-dest=../prev",
        applies: every,
        run: |x| {
            let (g, p) = x.push_with("cur", &["-a", "--link-dest=../prev"], "backup", &|d| {
                copy_tree(&x.w.root.join("src"), &d.with_file_name("prev"))
            })?;
            linked_into(&g, &g.with_file_name("prev"))?;
            linked_into(&p, &p.with_file_name("prev"))
        },
    },
    Case {
        id: "push into a write-only module",
        applies: every,
        run: |x| {
            let path = format!("drop/{}/", x.c.name);
            let src = slash(&x.w.root.join("src"));
            for via in [Via::Gate, Via::Plain] {
                x.ok(
                    via,
                    &[String::from("-a"), src.clone(), x.remote(via, &path)],
                )?;
            }
            same_tree(&x.server(Via::Gate, &path), &x.server(Via::Plain, &path))
        },
    },
    Case {
        id: "refusals",
        applies: every,
        run: |x| {
            let src = slash(&x.w.root.join("src"));
            let d = slash(&x.dst("refused", Via::Gate));
            let new = format!("www/{}-new/", x.c.name);
            x.refused(
                &[String::from("-a"), src.clone(), format!("localhost:{new}")],
                "module 'www' is read-only",
            )?;
            if x.w
                .root
                .join("srv")
                .join(common::module_dir_name(&new))
                .exists()
            {
                return Err("a refused push created its destination".into());
            }
            x.refused(
                &[String::from("-a"), "localhost:www/../".into(), d.clone()],
                "leads outside its module",
            )?;
            x.refused(
                &Ctx::args(&[
                    "-a",
                    "--delete",
                    &src,
                    &format!("localhost:up/{}/del/", x.c.name),
                ]),
                "is not allowed in module 'up' (delete = false)",
            )?;
            x.refused(
                &Ctx::args(&["--rsync-path=nice -n -5 rsync", "-a", "localhost:www/", &d]),
                "priority prefix refused",
            )
        },
    },
    Case {
        id: "--rsync-path='nice -n 19 rsync'",
        applies: every,
        run: |x| {
            x.pull("nice", &["-a", "--rsync-path=nice -n 19 rsync"], "www/")?;
            let r = x.last_decision()?;
            if r["priority"] != "nice 19" {
                return Err(format!("priority in the audit record: {r}"));
            }
            Ok(())
        },
    },
    Case {
        id: "--rsync-path='ionice -c3 rsync'",
        applies: every,
        run: |x| {
            x.pull("ionice", &["-a", "--rsync-path=ionice -c3 rsync"], "www/")?;
            let r = x.last_decision()?;
            if r["priority"] != "ionice idle" {
                return Err(format!("priority in the audit record: {r}"));
            }
            Ok(())
        },
    },
    Case {
        id: "--rsync-path='rsync --fake-super' push",
        applies: every,
        run: |x| {
            x.push(
                "fake-super",
                &["-a", "--rsync-path=rsync --fake-super"],
                "up",
            )
        },
    },
    Case {
        id: "pull -avhP",
        applies: extras,
        run: |x| x.pull("avhp", &["-avhP"], "www/"),
    },
    Case {
        id: "push -avhP",
        applies: extras,
        run: |x| x.push("avhp", &["-avhP"], "up"),
    },
    Case {
        id: "pull -a -8",
        applies: every,
        run: |x| x.pull("8bit", &["-a", "-8"], "www/"),
    },
    Case {
        id: "pull -a --no-super",
        applies: extras,
        run: |x| x.pull("no-super", &["-a", "--no-super"], "www/"),
    },
    Case {
        id: "push --existing",
        applies: every,
        run: |x| {
            x.push_with("existing", &["-a", "--existing"], "up", &|d| {
                mkdirs(&d.join("sub"));
                std::fs::write(d.join("a.txt"), "old\n").expect("w");
                std::fs::write(d.join("sub/s.txt"), "old\n").expect("w");
            })
            .map(|_| ())
        },
    },
];

// ---------------------------------------------------------------------------
// Running a family
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Cell {
    Pass,
    NotApplicable,
    Fail(String),
}

/// The basic pull and push, as each client sent them (from the audit log).
fn sent_command(x: &Ctx<'_>) -> String {
    x.last_decision()
        .ok()
        .and_then(|r| r["command"].as_str().map(String::from))
        .unwrap_or_default()
}

/// Run every case for every client of `family` (clients in parallel, cases
/// in order), print the matrix and the commands, fail on any failure.
fn run_family(family: Family) {
    let Some(_) = common::real_rsync() else {
        return;
    };
    let clients = clients(family);
    if clients.is_empty() {
        return;
    }
    let w = family_world();
    let cells: Mutex<BTreeMap<(usize, usize), Cell>> = Mutex::new(BTreeMap::new());
    let sent: Mutex<BTreeMap<usize, (String, String)>> = Mutex::new(BTreeMap::new());
    let retries: Mutex<BTreeMap<usize, usize>> = Mutex::new(BTreeMap::new());
    std::thread::scope(|s| {
        for (ci, c) in clients.iter().enumerate() {
            let (w, cells, sent, retries) = (&w, &cells, &sent, &retries);
            s.spawn(move || {
                let x = Ctx::new(w, c, ci);
                for (ki, case) in CASES.iter().enumerate() {
                    let cell = if (case.applies)(c) {
                        match (case.run)(&x) {
                            Ok(()) => Cell::Pass,
                            Err(e) => Cell::Fail(e),
                        }
                    } else {
                        Cell::NotApplicable
                    };
                    match case.id {
                        "pull -a" => {
                            sent.lock().unwrap().entry(ci).or_default().0 = sent_command(&x)
                        }
                        "push -a" => {
                            sent.lock().unwrap().entry(ci).or_default().1 = sent_command(&x)
                        }
                        _ => {}
                    }
                    cells.lock().unwrap().insert((ci, ki), cell);
                }
                retries.lock().unwrap().insert(ci, x.retried.get());
            });
        }
    });
    let cells = cells.into_inner().unwrap();
    let mut table = format!(
        "\n{family:?} clients through the gate (✓ same tree as a plain shell gives the same client; – not applicable):\n\n| case |"
    );
    for c in &clients {
        table.push_str(&format!(" {} |", c.name));
    }
    table.push_str("\n|---|");
    table.push_str(&"---|".repeat(clients.len()));
    let mut failures = Vec::new();
    for (ki, case) in CASES.iter().enumerate() {
        table.push_str(&format!("\n| {} |", case.id));
        for (ci, c) in clients.iter().enumerate() {
            let mark = match cells.get(&(ci, ki)) {
                Some(Cell::Pass) => "✓",
                Some(Cell::NotApplicable) => "–",
                Some(Cell::Fail(e)) => {
                    failures.push(format!("{} / {}: {e}", c.name, case.id));
                    "✗"
                }
                None => "?",
            };
            table.push_str(&format!(" {mark} |"));
        }
    }
    table.push_str("\n\nSSH_ORIGINAL_COMMAND (pull -a www/, push -a into up/CLIENT/push-a/):\n");
    for (ci, (pull, push)) in sent.into_inner().unwrap() {
        table.push_str(&format!(
            "  {}: pull `{pull}`; push `{push}`\n",
            clients[ci].name
        ));
    }
    for (ci, n) in retries.into_inner().unwrap() {
        if n > 0 {
            table.push_str(&format!(
                "  {}: {n} run(s) repeated after openrsync's `poll: hangup` race\n",
                clients[ci].name
            ));
        }
    }
    eprintln!("{table}");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn rsync_clients_through_the_gate() {
    run_family(Family::Rsync);
}

#[test]
fn openrsync_clients_through_the_gate() {
    run_family(Family::Openrsync);
}

// ---------------------------------------------------------------------------
// Behind a real sshd: the oldest rsync and the openrsync macOS ships
// ---------------------------------------------------------------------------

#[test]
fn one_client_of_each_family_behind_sshd() {
    if !sshd::prerequisites() {
        return;
    }
    let picks: Vec<Client> = [Family::Rsync, Family::Openrsync]
        .into_iter()
        .filter_map(|f| {
            clients(f)
                .into_iter()
                .find(|c| c.name == "3.0.9" || c.name == "openrsync-klara")
        })
        .collect();
    if picks.is_empty() {
        return;
    }
    let w = family_world();
    let d = sshd::Sshd::start();
    let key = d.gate_key(&w, "c");
    let www = w.root.join("srv").join(common::module_dir_name("www"));
    for c in &picks {
        let base: Vec<&str> = if c.klara {
            vec!["--rsync-path=rsync"]
        } else {
            vec![]
        };
        let run = |args: &[&str]| {
            let mut all: Vec<&str> = base.to_vec();
            all.extend_from_slice(args);
            let o = d.rsync_client(&w, &key, &c.bin, &all);
            sshd::assert_ok(&o, &format!("{} {args:?}", c.name));
            o
        };
        // Pull, as the module is.
        let pulled = w.client.join(format!("{}-sshd-pull", c.name));
        run(&["-a", "root@127.0.0.1:www/", &slash(&pulled)]);
        common::assert_same_tree(&www, &pulled);
        // Push, and it lands as it was.
        let up = w.root.join("srv").join(common::module_dir_name("up"));
        run(&[
            "-a",
            &slash(&w.root.join("src")),
            &format!("root@127.0.0.1:up/{}-sshd/", c.name),
        ]);
        common::assert_same_tree(&w.root.join("src"), &up.join(format!("{}-sshd", c.name)));
        // A lower priority, by --rsync-path.
        let niced = w.client.join(format!("{}-sshd-nice", c.name));
        let mut args = vec!["--rsync-path=nice -n 19 ionice -c3 rsync"];
        args.extend(["-a", "root@127.0.0.1:www/"]);
        let niced_s = slash(&niced);
        args.push(&niced_s);
        let o = d.rsync_client(&w, &key, &c.bin, &args);
        sshd::assert_ok(&o, &format!("{} nice pull", c.name));
        common::assert_same_tree(&www, &niced);
        let r = w.last_decision();
        assert_eq!(r["priority"], "nice 19, ionice idle", "{r}");
        // A refusal reaches the client.
        let o = d.rsync_client(
            &w,
            &key,
            &c.bin,
            &[
                &base[..],
                &["-a", &slash(&w.root.join("src")), "root@127.0.0.1:www/x/"],
            ]
            .concat(),
        );
        sshd::assert_denied(&o, c.name, "module 'www' is read-only");
    }
}

// ---------------------------------------------------------------------------
// The priority rsync runs at
// ---------------------------------------------------------------------------

/// `--rsync-path='nice -n 19 ionice -c3 rsync'`: the gate lowers the
/// priority itself (nice and ionice never run) and rsync runs at it; the
/// audit record says what was applied. Raising it is refused.
#[test]
fn a_priority_prefix_reaches_rsync() {
    let Some(_) = common::real_rsync() else {
        return;
    };
    let mut w = World::new();
    let www = w.module_dir("www");
    common::sample_tree(&www);
    // A stand-in that notes its own nice value and I/O class, then is the
    // real rsync (outside every module, so without the sandbox).
    let notes = w.root.join("priority");
    let wrapper = w.root.join("bin/noting-rsync");
    common::install_exec(
        &wrapper,
        &format!(
            "#!/bin/sh\n\
             if [ \"$1\" = --help ]; then exec /usr/bin/rsync --help; fi\n\
             {{ cut -d' ' -f19 /proc/$$/stat; ionice -p $$; }} > {}\n\
             exec /usr/bin/rsync \"$@\"\n",
            common::sh_quote(notes.as_os_str())
        ),
    );
    w.rsync = wrapper;
    w.sandbox = Some("off");
    w.write_policy("[modules.www]\npath = \"{srv}/www\"\n[clients.c]\nmodules = [\"www\"]\n");
    let d = w.client.join("d");
    let o = w.rsync_as(
        "c",
        &[
            "--rsync-path=nice -n 19 ionice -c3 rsync",
            "-a",
            "h:www/",
            &slash(&d),
        ],
    );
    assert!(o.status.success(), "{}", common::stderr(&o));
    common::assert_same_tree(&www, &d);
    let seen = std::fs::read_to_string(&notes).expect("the stand-in ran");
    assert_eq!(seen, "19\nidle\n");
    assert_eq!(w.last_decision()["priority"], "nice 19, ionice idle");
    // Without a prefix nothing changes (rsync runs as anything this test
    // starts does), and the record has no priority.
    let o = w.rsync_as("c", &["-a", "h:www/", &slash(&w.client.join("e"))]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let here = Command::new("/bin/sh")
        .args(["-c", "cut -d' ' -f19 /proc/$$/stat; ionice -p $$"])
        .output()
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(&notes).unwrap(),
        String::from_utf8_lossy(&here.stdout)
    );
    assert!(w.last_decision().get("priority").is_none());
    // Raising is refused, before anything runs.
    std::fs::remove_file(&notes).unwrap();
    for path in ["nice -n -5 rsync", "ionice -c1 rsync"] {
        let o = w.rsync_as(
            "c",
            &[
                &format!("--rsync-path={path}"),
                "-a",
                "h:www/",
                &slash(&w.client.join("f")),
            ],
        );
        assert!(!o.status.success());
        assert!(
            common::stderr(&o).contains("priority prefix refused"),
            "{}",
            common::stderr(&o)
        );
        assert!(!notes.exists(), "{path}: rsync ran");
        assert_eq!(w.last_decision()["reason"]["code"], "priority_refused");
    }
}

// ---------------------------------------------------------------------------
// Root backups: FIFOs and sockets in, device nodes out
// ---------------------------------------------------------------------------

/// `examples/root-backup/push/policy.toml` with this world's paths.
fn root_backup_world() -> (World, PathBuf) {
    let w = World::new();
    let snapshots = w.module_dir("backup");
    let etc = w.root.join("srv/db1-etc");
    mkdirs(&etc);
    let example =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/root-backup/push/policy.toml");
    let text = std::fs::read_to_string(&example)
        .expect("example policy")
        .replace(
            "/var/log/rsync-gate/audit.jsonl",
            &w.audit.to_string_lossy(),
        )
        .replace("/run/rsync-gate", &w.run.to_string_lossy())
        .replace("/srv/backup/db1/snapshots", &snapshots.to_string_lossy())
        .replace("/srv/backup/db1/etc", &etc.to_string_lossy());
    std::fs::write(&w.policy, text).expect("write policy");
    set_mode(&w.policy, 0o644);
    (w, snapshots)
}

/// A tree with a FIFO and a socket besides files (and, when asked, a
/// character device).
fn tree_with_specials(root: &Path, device: bool) {
    mkdirs(root);
    common::sample_tree(root);
    nix::unistd::mkfifo(
        &root.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .expect("mkfifo");
    drop(std::os::unix::net::UnixListener::bind(root.join("sub/sock")).expect("bind"));
    if device {
        nix::sys::stat::mknod(
            &root.join("null"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 3),
        )
        .expect("mknod");
    }
}

fn file_type(p: &Path) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let ft = std::fs::symlink_metadata(p).ok()?.file_type();
    Some(if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_char_device() {
        "char"
    } else if ft.is_file() {
        "file"
    } else {
        "other"
    })
}

/// The root-backup example: with `specials = true` a root push keeps
/// FIFOs and sockets, in both request forms, and keeps device nodes out.
#[test]
fn root_backup_keeps_fifos_and_sockets_out_devices() {
    let Some(_) = common::real_rsync() else {
        return;
    };
    if !common::require_landlock() {
        return;
    }
    let (w, snapshots) = root_backup_world();
    let src = w.root.join("db1");
    tree_with_specials(&src, false);
    let shim = w.shim_from("db1", "192.0.2.31");
    let rsync = |args: &[&str]| {
        let mut cmd = Command::new(RSYNC_350);
        cmd.arg("-e").arg(&shim).args(args).current_dir(&w.client);
        sshd::run_timed(cmd, LIMIT)
    };
    for (form, dest) in [
        ("host::", "h::db1/2026-11-23/"),
        ("host:", "h:db1/2026-11-22/"),
    ] {
        let o = rsync(&["-aHAX", "--numeric-ids", &slash(&src), dest]);
        assert!(o.status.success(), "{form}: {}", common::stderr(&o));
        let day = snapshots.join(dest.rsplit(':').next().unwrap().trim_start_matches("db1/"));
        assert_eq!(file_type(&day.join("fifo")), Some("fifo"), "{form}");
        assert_eq!(file_type(&day.join("sub/sock")), Some("socket"), "{form}");
        // Everything else as it was; symlinks stored munged (the module
        // is writable, munge_links defaults to true).
        let mut want = common::tree(&src);
        for entry in want.values_mut() {
            if let Entry::Symlink { target } = entry {
                *target = Path::new("/rsyncd-munged").join(&*target);
            }
        }
        assert_eq!(common::tree(&day), want, "{form}");
    }
    // A device node stays out (the kernel refuses it; the rest arrives).
    let dev = w.root.join("db1-dev");
    tree_with_specials(&dev, true);
    for (form, dest) in [
        ("host::", "h::db1/dev-daemon/"),
        ("host:", "h:db1/dev-checked/"),
    ] {
        let o = rsync(&["-aHAX", "--numeric-ids", &slash(&dev), dest]);
        assert_eq!(o.status.code(), Some(23), "{form}: {}", common::stderr(&o));
        let day = snapshots.join(dest.rsplit(':').next().unwrap().trim_start_matches("db1/"));
        assert_eq!(
            file_type(&day.join("null")),
            None,
            "{form}: a device node was created"
        );
        assert_eq!(file_type(&day.join("fifo")), Some("fifo"), "{form}");
        assert_eq!(file_type(&day.join("a.txt")), Some("file"), "{form}");
    }
}

/// One sandbox goes around a `host::` session and all the client's
/// modules, yet each module keeps its own rights to create nodes: another
/// module's `devices = true` does not let FIFOs into this one.
#[test]
fn node_rights_are_per_module_in_one_daemon_session() {
    let Some(_) = common::real_rsync() else {
        return;
    };
    if !common::require_landlock() {
        return;
    }
    let w = World::new();
    let open = w.module_dir("up");
    let closed = w.module_dir("backup");
    w.write_policy(
        "[modules.up]\npath = \"{srv}/up\"\nread_only = false\ndevices = true\n\
         [modules.backup]\npath = \"{srv}/backup\"\nread_only = false\n\
         [clients.c]\nmodules = [\"up\", \"backup\"]\n",
    );
    let src = w.root.join("src");
    tree_with_specials(&src, false);
    let push = |module: &str| w.rsync_as("c", &["-a", &slash(&src), &format!("h::{module}/t/")]);
    let o = push("up");
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert_eq!(file_type(&open.join("t/fifo")), Some("fifo"));
    let o = push("backup");
    assert_eq!(o.status.code(), Some(23), "{}", common::stderr(&o));
    assert!(
        common::stderr(&o).contains("Permission denied"),
        "{}",
        common::stderr(&o)
    );
    assert_eq!(
        file_type(&closed.join("t/fifo")),
        None,
        "a FIFO got into a devices = false module"
    );
    assert_eq!(file_type(&closed.join("t/sub/sock")), None);
    assert_eq!(file_type(&closed.join("t/a.txt")), Some("file"));
}
