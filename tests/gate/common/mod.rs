//! Shared fixtures for the integration tests: a scratch world with modules,
//! a policy and an audit log; a shim that plays sshd for `rsync -e`; a
//! stand-in rsync that records what the gate runs; tree comparison.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The gate binary under test.
pub fn gate_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rsync-gate"))
}

/// Is this a CI run (where a missing tool is a failure, not a skip)?
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Find a required external tool. Outside CI a missing tool skips the test
/// (returns None, with a note on stderr); in CI it fails the test.
pub fn require(path: &str) -> Option<PathBuf> {
    let p = PathBuf::from(path);
    if p.is_file() {
        return Some(p);
    }
    if in_ci() {
        panic!("{path} is required in CI but missing (install it in .ci/run)");
    }
    eprintln!("SKIP: {path} not installed");
    None
}

/// The real rsync, or skip/fail.
pub fn real_rsync() -> Option<PathBuf> {
    require("/usr/bin/rsync")
}

/// Write an executable without this process ever holding it open for
/// writing (a test thread forking meanwhile would make exec fail with
/// ETXTBSY): a child shell writes it.
pub fn install_exec(path: &Path, content: &str) {
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg("cat > \"$1\" && chmod 755 \"$1\"")
        .arg("sh")
        .arg(path)
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(content.as_bytes())
        .expect("write script");
    assert!(
        child.wait().expect("wait").success(),
        "writing {}",
        path.display()
    );
}

pub fn set_mode(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Quote for a POSIX shell script.
pub fn sh_quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// How the test worlds name module directories: as a real server does, not
/// after the modules (`www` lives in `srv/public-tree`). `links` keeps its
/// module's name, so the case where the two agree stays covered.
pub const MODULE_DIRS: &[(&str, &str)] = &[
    ("www", "public-tree"),
    ("backup", "vault"),
    ("up", "incoming"),
    ("drop", "inbox"),
    ("handin", "submissions"),
    ("secret", "private"),
    ("web", "htdocs"),
    ("everything", "whole-disk"),
];

/// The directory below `srv/` that holds module `module` (a path below a
/// module maps its first component).
pub fn module_dir_name(path: &str) -> String {
    let (first, rest) = path.split_once('/').unwrap_or((path, ""));
    let dir = MODULE_DIRS
        .iter()
        .find(|(m, _)| *m == first)
        .map_or(first, |(_, d)| d);
    if rest.is_empty() {
        dir.to_string()
    } else {
        format!("{dir}/{rest}")
    }
}

/// Replace each `{srv}/MODULE` in `text` by the module's real directory.
pub fn map_srv_paths(text: &str, srv: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("{srv}") {
        out.push_str(&rest[..i]);
        out.push_str(srv);
        rest = &rest[i + "{srv}".len()..];
        // Slashes and `./` between `{srv}` and the name are kept as written.
        let lead = rest.len() - rest.trim_start_matches(['/', '.']).len();
        let (sep, after) = rest.split_at(lead);
        if sep.starts_with('/') && !sep.contains("..") {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                .unwrap_or(after.len());
            let name = &after[..end];
            if let Some((_, dir)) = MODULE_DIRS.iter().find(|(m, _)| *m == name) {
                out.push_str(sep);
                out.push_str(dir);
                rest = &after[end..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A scratch world: `srv/` holds modules, `log/audit.jsonl` the audit log,
/// `run/` the lock dir, `client/` the client's side.
pub struct World {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub policy: PathBuf,
    pub audit: PathBuf,
    pub run: PathBuf,
    pub client: PathBuf,
    /// The rsync the policy runs (real by default).
    pub rsync: PathBuf,
    /// `[gate] sandbox` when set (stand-ins that write their notes outside
    /// the module need "off"; the default policy applies Landlock).
    pub sandbox: Option<&'static str>,
    /// Run the gate as on a kernel without Landlock (its debug-build test
    /// switch).
    pub no_landlock: bool,
}

impl World {
    /// A new world. The integration tests run as root: the gate refuses a
    /// policy that is not root's (as sudo does with sudoers), so no world a
    /// user could build for itself is one the gate would serve.
    pub fn new() -> World {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the integration tests need root: the gate refuses a policy not owned by root \
             (run them as root, e.g. in a container or VM; `cargo test --lib` runs as anyone)"
        );
        let dir = tempfile::Builder::new()
            .prefix("gate-")
            .tempdir()
            .expect("tempdir");
        let root = std::fs::canonicalize(dir.path()).expect("canonicalize");
        set_mode(&root, 0o755);
        for d in ["srv", "log", "run", "client", "bin"] {
            std::fs::create_dir(root.join(d)).expect("mkdir");
            set_mode(&root.join(d), 0o755);
        }
        World {
            policy: root.join("policy.toml"),
            audit: root.join("log/audit.jsonl"),
            run: root.join("run"),
            client: root.join("client"),
            rsync: PathBuf::from("/usr/bin/rsync"),
            sandbox: None,
            no_landlock: false,
            root,
            dir,
        }
    }

    /// Create (if needed) and return the directory of module `name` (or a
    /// path below it), named as [`MODULE_DIRS`] says.
    pub fn module_dir(&self, name: &str) -> PathBuf {
        let p = self.root.join("srv").join(module_dir_name(name));
        std::fs::create_dir_all(&p).expect("mkdir module");
        set_mode(&p, 0o755);
        p
    }

    /// Write the policy: a `[gate]` section pointing into this world, then
    /// `body`. `{srv}` in the body is replaced by the modules directory, and
    /// `{srv}/MODULE` by the module's real directory ([`MODULE_DIRS`]).
    pub fn write_policy(&self, body: &str) {
        let sandbox = self
            .sandbox
            .map(|s| format!("sandbox = \"{s}\"\n"))
            .unwrap_or_default();
        let text = format!(
            "[gate]\nrsync = \"{}\"\naudit_log = \"{}\"\nlock_dir = \"{}\"\n{sandbox}\n{}",
            self.rsync.display(),
            self.audit.display(),
            self.run.display(),
            map_srv_paths(body, &self.root.join("srv").to_string_lossy())
        );
        std::fs::write(&self.policy, text).expect("write policy");
        set_mode(&self.policy, 0o644);
    }

    /// A shim for `rsync -e`: it plays sshd, setting SSH_ORIGINAL_COMMAND
    /// to the words rsync gives the remote shell (joined by spaces, as ssh
    /// does) and SSH_CONNECTION, then runs the gate as the forced command.
    pub fn shim(&self, client: &str) -> PathBuf {
        self.shim_from(client, "127.0.0.1")
    }

    pub fn shim_from(&self, client: &str, addr: &str) -> PathBuf {
        let flag = if self.no_landlock { "-nolandlock" } else { "" };
        let path = self.root.join(format!("bin/shim-{client}-{addr}{flag}"));
        if !path.exists() {
            let script = format!(
                "#!/bin/sh\n# rsync -e shim: $1 is the host, the rest is the remote command\nshift\n\
                 SSH_ORIGINAL_COMMAND=\"$*\" SSH_CONNECTION=\"{addr} 40000 127.0.0.1 22\" \
                 exec {}{} serve --policy {} --client {}\n",
                sh_quote(gate_bin().as_os_str()),
                if self.no_landlock {
                    " --test-no-landlock"
                } else {
                    ""
                },
                sh_quote(self.policy.as_os_str()),
                sh_quote(OsStr::new(client)),
            );
            install_exec(&path, &script);
        }
        path
    }

    /// A shim for `rsync -e` with no gate: the remote command runs through a
    /// shell (`sh -c`), as a plain SSH login would run it.
    pub fn plain_shim(&self) -> PathBuf {
        let path = self.root.join("bin/plain-shell");
        if !path.exists() {
            install_exec(
                &path,
                "#!/bin/sh\n# rsync -e shim: $1 is the host, the rest the remote command\nshift\nexec /bin/sh -c \"$*\"\n",
            );
        }
        path
    }

    /// Run the real rsync client over a plain shell (no gate).
    pub fn rsync_plain(&self, args: &[&str]) -> Output {
        Command::new("/usr/bin/rsync")
            .arg("-e")
            .arg(self.plain_shim())
            .args(args)
            .current_dir(&self.client)
            .stdin(Stdio::null())
            .output()
            .expect("run rsync")
    }

    /// Run the real rsync client through the gate as `client`.
    pub fn rsync_as(&self, client: &str, args: &[&str]) -> Output {
        let shim = self.shim(client);
        Command::new("/usr/bin/rsync")
            .arg("-e")
            .arg(&shim)
            .args(args)
            .current_dir(&self.client)
            .stdin(Stdio::null())
            .output()
            .expect("run rsync")
    }

    /// Run the gate directly with a given command and environment.
    pub fn serve(&self, client: &str, command: Option<&[u8]>, env: &[(&str, &str)]) -> Output {
        self.serve_with_stdin(client, command, env, b"")
    }

    pub fn serve_with_stdin(
        &self,
        client: &str,
        command: Option<&[u8]>,
        env: &[(&str, &str)],
        stdin: &[u8],
    ) -> Output {
        use std::os::unix::ffi::OsStrExt;
        let mut cmd = Command::new(gate_bin());
        if self.no_landlock {
            cmd.arg("--test-no-landlock");
        }
        cmd.arg("serve")
            .arg("--policy")
            .arg(&self.policy)
            .arg("--client")
            .arg(client)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("SSH_CONNECTION", "127.0.0.1 40000 127.0.0.1 22")
            .current_dir(&self.client)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(c) = command {
            cmd.env("SSH_ORIGINAL_COMMAND", OsStr::from_bytes(c));
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn gate");
        {
            let mut sin = child.stdin.take().expect("stdin");
            let _ = sin.write_all(stdin);
        }
        child.wait_with_output().expect("wait gate")
    }

    /// Every audit record so far.
    pub fn audit_records(&self) -> Vec<serde_json::Value> {
        // A session may still be writing (a `host::` hook's end record can
        // come after the client has gone): a line being written has no
        // newline yet. Every whole record ends with one, so a log that
        // still ends without one after a few seconds is a broken record.
        let mut text = String::new();
        for _ in 0..50 {
            text = match std::fs::read_to_string(&self.audit) {
                Ok(t) => t,
                Err(_) => return Vec::new(),
            };
            if text.is_empty() || text.ends_with('\n') {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        text.lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("audit line is not JSON ({e}): {l}"))
            })
            .collect()
    }

    /// The last decision record.
    pub fn last_decision(&self) -> serde_json::Value {
        self.audit_records()
            .into_iter()
            .rev()
            .find(|r| r["event"] == "decision")
            .expect("a decision record")
    }

    /// Use a recording stand-in as the policy's rsync. Returns the
    /// directory it records into (argv, env, fds, cwd).
    pub fn use_recorder(&mut self) -> PathBuf {
        let out = self.root.join("recorded");
        std::fs::create_dir_all(&out).expect("mkdir");
        let path = self.root.join("bin/recorder-rsync");
        install_exec(&path, &recorder_script(&out));
        self.rsync = path;
        // The recorder writes its notes outside every module, which the
        // kernel sandbox would (rightly) refuse.
        self.sandbox = Some("off");
        out
    }
}

/// A stand-in rsync that records its argv (NUL-separated), environment,
/// descriptors and working directory, then exits 0 without reading stdin.
/// It answers `--help` (the gate's capability probe) as the real rsync does,
/// without recording.
pub fn recorder_script(out: &Path) -> String {
    let o = sh_quote(out.as_os_str());
    format!(
        "#!/bin/sh\n\
         if [ \"$1\" = --help ]; then exec /usr/bin/rsync --help; fi\n\
         printf '%s\\0' \"$0\" \"$@\" > {o}/argv\n\
         env > {o}/env\n\
         pwd -P > {o}/cwd\n\
         find /proc/$$/fd -mindepth 1 -maxdepth 1 -fprintf {o}/fds '%f %l\\n'\n\
         exit 0\n"
    )
}

/// What the recorder saw.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub fds: BTreeMap<u32, String>,
    pub cwd: String,
}

impl Recorded {
    pub fn read(out: &Path) -> Option<Recorded> {
        let argv = std::fs::read(out.join("argv")).ok()?;
        let argv = argv
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let env = std::fs::read_to_string(out.join("env"))
            .ok()?
            .lines()
            .map(str::to_string)
            .collect();
        let fds = std::fs::read_to_string(out.join("fds"))
            .ok()?
            .lines()
            .filter_map(|l| {
                let (n, t) = l.split_once(' ')?;
                Some((n.parse().ok()?, t.to_string()))
            })
            .collect();
        let cwd = std::fs::read_to_string(out.join("cwd"))
            .ok()?
            .trim_end()
            .to_string();
        Some(Recorded {
            argv,
            env,
            fds,
            cwd,
        })
    }

    /// Each argument with every `/proc/self/fd/N` shown as `<fd:TARGET>`,
    /// TARGET being what descriptor N held in the stand-in: an expectation
    /// says both that a path was handed over by descriptor and what it
    /// held. A descriptor the stand-in did not have is left as it is (and
    /// so matches nothing an expectation spells with `<fd:`).
    pub fn argv_pinned(&self) -> Vec<String> {
        self.argv
            .iter()
            .map(|a| {
                let mut s = a.clone();
                for (n, target) in &self.fds {
                    let p = format!("/proc/self/fd/{n}");
                    if let Some(i) = s.find(&p) {
                        let after = &s[i + p.len()..];
                        if after.is_empty() || after.starts_with('/') {
                            s = format!("{}<fd:{}>{}", &s[..i], target, after);
                            break;
                        }
                    }
                }
                s
            })
            .collect()
    }
}

/// One entry of a tree listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir { mode: u32 },
    File { mode: u32, content: Vec<u8> },
    Symlink { target: PathBuf },
    Other { mode: u32 },
}

/// Everything below `root` (relative paths), without following symlinks.
pub fn tree(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), &mut out);
    out
}

fn walk(base: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, Entry>) {
    let dir = base.join(rel);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for e in entries {
        let e = e.expect("dir entry");
        let name = rel.join(e.file_name());
        let path = base.join(&name);
        let md = std::fs::symlink_metadata(&path).expect("lstat");
        let mode = md.mode() & 0o7777;
        let ft = md.file_type();
        if ft.is_symlink() {
            out.insert(
                name,
                Entry::Symlink {
                    target: std::fs::read_link(&path).expect("readlink"),
                },
            );
        } else if ft.is_dir() {
            out.insert(name.clone(), Entry::Dir { mode });
            walk(base, &name, out);
        } else if ft.is_file() {
            out.insert(
                name,
                Entry::File {
                    mode,
                    content: std::fs::read(&path).expect("read"),
                },
            );
        } else {
            out.insert(name, Entry::Other { mode });
        }
    }
}

/// Assert two trees are byte-for-byte identical (content, modes, links).
pub fn assert_same_tree(a: &Path, b: &Path) {
    let ta = tree(a);
    let tb = tree(b);
    if ta != tb {
        let only_a: Vec<_> = ta.keys().filter(|k| !tb.contains_key(*k)).collect();
        let only_b: Vec<_> = tb.keys().filter(|k| !ta.contains_key(*k)).collect();
        let differ: Vec<_> = ta
            .keys()
            .filter(|k| tb.get(*k).is_some_and(|v| Some(v) != ta.get(*k)))
            .collect();
        panic!(
            "trees differ: {} vs {}\n only in first: {only_a:?}\n only in second: {only_b:?}\n differ: {differ:?}",
            a.display(),
            b.display()
        );
    }
}

/// A snapshot of a tree including mtimes, to prove nothing changed.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, (Entry, i64, i64)> {
    tree(root)
        .into_iter()
        .map(|(k, v)| {
            let md = std::fs::symlink_metadata(root.join(&k)).expect("lstat");
            (k, (v, md.mtime(), md.mtime_nsec()))
        })
        .collect()
}

/// Populate a small but varied tree.
pub fn sample_tree(root: &Path) {
    std::fs::create_dir_all(root.join("sub/deeper")).expect("mkdir");
    std::fs::create_dir_all(root.join("dir with space")).expect("mkdir");
    std::fs::write(root.join("a.txt"), "alpha\n").expect("w");
    std::fs::write(root.join("b.txt"), "bravo\n").expect("w");
    std::fs::write(root.join("c.log"), "charlie\n").expect("w");
    std::fs::write(root.join(".hidden"), "hidden\n").expect("w");
    std::fs::write(root.join("sub/s.txt"), "sub\n").expect("w");
    std::fs::write(
        root.join("sub/deeper/d.bin"),
        (0u8..=255).collect::<Vec<u8>>(),
    )
    .expect("w");
    std::fs::write(root.join("dir with space/file with space.txt"), "spaces\n").expect("w");
    std::fs::write(root.join("semi;colon"), "x\n").expect("w");
    std::fs::write(root.join("it's"), "quote\n").expect("w");
    std::fs::write(root.join("$(id)"), "dollar\n").expect("w");
    std::os::unix::fs::symlink("a.txt", root.join("link-to-a")).expect("symlink");
    std::os::unix::fs::symlink("sub", root.join("link-to-sub")).expect("symlink");
    set_mode(&root.join("sub"), 0o755);
    set_mode(&root.join("sub/deeper"), 0o755);
    set_mode(&root.join("dir with space"), 0o755);
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Does the running kernel offer Landlock? Asked of the kernel through the
/// landlock crate ([`kernel_landlock_abi`]), not through the gate's own
/// question, so that a gate that gets the answer wrong fails the tests
/// rather than skipping them.
pub fn landlock_available() -> bool {
    kernel_landlock_abi().is_some()
}

/// The highest Landlock ABI whose file system rights this kernel accepts
/// (each probed by making, and dropping, a ruleset that must handle all of
/// them; nothing is restricted): 5, 3, 2 or 1, or None without Landlock.
/// Later ABIs add no file system rights, so the kernel's own ABI is this
/// or higher.
pub fn kernel_landlock_abi() -> Option<u32> {
    use landlock::{ABI, Access, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr};
    [(ABI::V5, 5), (ABI::V3, 3), (ABI::V2, 2), (ABI::V1, 1)]
        .into_iter()
        .find(|&(abi, _)| {
            Ruleset::default()
                .set_compatibility(CompatLevel::HardRequirement)
                .handle_access(AccessFs::from_all(abi))
                .and_then(|r| r.create())
                .is_ok()
        })
        .map(|(_, n)| n)
}

/// The Landlock ABI a report line shows (`landlock: ABI 7`, `ABI 7
/// (sandbox = ...)`): a number at least [`kernel_landlock_abi`]'s, or
/// "not available" exactly when the kernel has none.
pub fn assert_landlock_shown(line: &str) {
    match kernel_landlock_abi() {
        Some(least) => {
            let shown: u32 = line
                .split_once("ABI ")
                .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no Landlock ABI in {line:?}"));
            assert!(
                shown >= least,
                "{line:?}: the kernel takes ABI {least}'s rights"
            );
        }
        None => assert!(line.contains("not available"), "{line:?}"),
    }
}

/// Landlock is needed: outside CI a missing one skips (false); in CI it
/// fails the test.
pub fn require_landlock() -> bool {
    if landlock_available() {
        return true;
    }
    assert!(
        !in_ci(),
        "Landlock is required in CI but this kernel lacks it"
    );
    eprintln!("SKIP: no Landlock");
    false
}
