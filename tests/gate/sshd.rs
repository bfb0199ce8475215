//! End to end behind a real OpenSSH sshd: the gate as the `command=` of
//! `authorized_keys` entries, the real rsync client (`rsync -e ssh`) and
//! plain `ssh` on the other side.
//!
//! Each test starts its own sshd (loopback only, a free port, its own host
//! key, config and `authorized_keys` in a temporary directory) and its own
//! [`World`], so tests are independent and may run in parallel. The
//! fixture logs in as root (`PermitRootLogin forced-commands-only`), so
//! these tests need root; like a missing tool, that is a skip outside CI
//! and a failure in CI.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::common::{self, World};

pub(crate) const SSHD: &str = "/usr/sbin/sshd";
pub(crate) const SSH: &str = "/usr/bin/ssh";
pub(crate) const SSH_KEYGEN: &str = "/usr/bin/ssh-keygen";
const RSYNC: &str = "/usr/bin/rsync";

/// Longest any single client command (ssh, rsync, ssh-keygen) may take.
pub(crate) const RUN_LIMIT: Duration = Duration::from_secs(60);
/// How long sshd gets to start listening.
const START_LIMIT: Duration = Duration::from_secs(10);
/// How long sshd gets to exit after SIGTERM before it is killed.
const STOP_LIMIT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(20);

/// The environment a hostile client sends: each is accepted by the
/// fixture's `AcceptEnv`, so sshd hands them to the forced command.
const HOSTILE_ENV: [(&str, &str); 3] = [
    ("LD_PRELOAD", "/nonexistent/evil.so"),
    ("RSYNC_RSH", "evil"),
    ("REMOTE_HOST", "10.9.9.9"),
];
const SEND_HOSTILE_ENV: [&str; 6] = [
    "-o",
    "SendEnv=LD_PRELOAD",
    "-o",
    "SendEnv=RSYNC_RSH",
    "-o",
    "SendEnv=REMOTE_HOST",
];

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Are sshd, ssh, ssh-keygen and rsync here, and are we root? Outside CI a
/// missing piece skips the test (false); in CI it fails it.
pub(crate) fn prerequisites() -> bool {
    let tools = [SSHD, SSH, SSH_KEYGEN]
        .iter()
        .all(|t| common::require(t).is_some());
    if !tools || common::real_rsync().is_none() {
        return false;
    }
    if !nix::unistd::geteuid().is_root() {
        if common::in_ci() {
            panic!("the sshd tests log in as root and must run as root in CI");
        }
        eprintln!("SKIP: the sshd tests log in as root; not running as root");
        return false;
    }
    true
}

/// Wait for a reader thread for at most `limit`; None if it is still
/// running (it is then left behind).
fn join_within(t: JoinHandle<Vec<u8>>, limit: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + limit;
    while !t.is_finished() {
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(POLL);
    }
    t.join().ok()
}

fn reader(mut r: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        v
    })
}

/// Run `cmd` (stdin from /dev/null, output captured) in its own process
/// group, killing the whole group if it does not finish within `limit`
/// (then the test fails, showing what stderr said so far).
pub(crate) fn run_timed(mut cmd: Command, limit: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {desc}: {e}"));
    let pgid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"));
    let out_t = reader(child.stdout.take().expect("stdout"));
    let err_t = reader(child.stderr.take().expect("stderr"));
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait().expect("try_wait") {
            Some(s) => break Some(s),
            None if Instant::now() >= deadline => break None,
            None => thread::sleep(POLL),
        }
    };
    let Some(status) = status else {
        let _ = killpg(pgid, Signal::SIGKILL);
        let _ = child.wait();
        let err = join_within(err_t, STOP_LIMIT).unwrap_or_default();
        panic!(
            "{desc} did not finish within {limit:?}; its stderr:\n{}",
            String::from_utf8_lossy(&err)
        );
    };
    // The command has exited. Something it started that still holds the
    // pipes (it should not) keeps its process group alive, so killing the
    // group cannot hit anybody else.
    let grace = Instant::now() + STOP_LIMIT;
    while !(out_t.is_finished() && err_t.is_finished()) {
        if Instant::now() >= grace {
            let _ = killpg(pgid, Signal::SIGKILL);
            break;
        }
        thread::sleep(POLL);
    }
    let stdout = join_within(out_t, STOP_LIMIT).expect("stdout reader finished");
    let stderr = join_within(err_t, STOP_LIMIT).expect("stderr reader finished");
    Output {
        status,
        stdout,
        stderr,
    }
}

/// sshd's privilege separation directory.
fn ensure_privsep_dir() {
    let p = Path::new("/run/sshd");
    match std::fs::create_dir(p) {
        Ok(()) => common::set_mode(p, 0o755),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => panic!("cannot create /run/sshd: {e}"),
    }
}

pub(crate) fn keygen(path: &Path, comment: &str) {
    let mut cmd = Command::new(SSH_KEYGEN);
    cmd.args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path);
    let out = run_timed(cmd, RUN_LIMIT);
    assert!(
        out.status.success(),
        "ssh-keygen for {}: {}",
        path.display(),
        common::stderr(&out)
    );
}

/// A free loopback port (it may be taken again before sshd binds it: the
/// fixture retries).
pub(crate) fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// Does something answer on `port` with an SSH banner?
fn ssh_banner(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    while got.len() < 8 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(buf.get(..n).unwrap_or_default()),
        }
    }
    got.starts_with(b"SSH-2.0-")
}

/// A `KEY=VALUE` list as (key, value) pairs.
fn env_pairs(lines: &[String]) -> Vec<(String, String)> {
    lines
        .iter()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ---------------------------------------------------------------------------
// The fixture
// ---------------------------------------------------------------------------

/// A started sshd; on drop it gets SIGTERM, then SIGKILL if it lingers, and
/// is waited for.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.0.try_wait() {
            return;
        }
        if let Ok(pid) = i32::try_from(self.0.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + STOP_LIMIT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            thread::sleep(POLL);
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A client key pair known to the fixture's sshd.
#[derive(Debug, Clone)]
pub(crate) struct Key {
    /// The private key (the public one is next to it, `.pub`).
    path: PathBuf,
}

/// A real sshd on 127.0.0.1 with its own configuration, host key and
/// `authorized_keys`, all in a temporary directory that goes away with it.
pub(crate) struct Sshd {
    // Field order matters: the daemon is stopped before its files go.
    _daemon: Daemon,
    pub(crate) port: u16,
    pub(crate) dir: PathBuf,
    log: PathBuf,
    pub(crate) authorized_keys: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Sshd {
    /// Start sshd and wait until it accepts connections.
    pub(crate) fn start() -> Sshd {
        Sshd::start_with("")
    }

    /// [`Sshd::start`], with `extra` lines appended to its sshd_config.
    pub(crate) fn start_with(extra: &str) -> Sshd {
        ensure_privsep_dir();
        let tmp = tempfile::Builder::new()
            .prefix("sshd-")
            .tempdir()
            .expect("tempdir");
        let dir = std::fs::canonicalize(tmp.path()).expect("canonicalize");
        common::set_mode(&dir, 0o700);
        assert!(
            !dir.to_string_lossy().contains(char::is_whitespace),
            "the fixture's paths go into `rsync -e` unquoted"
        );
        std::fs::create_dir(dir.join("keys")).expect("mkdir keys");
        let host_key = dir.join("host_ed25519");
        keygen(&host_key, "rsync-gate test host");
        let authorized_keys = dir.join("authorized_keys");
        std::fs::write(&authorized_keys, "").expect("write authorized_keys");
        common::set_mode(&authorized_keys, 0o600);
        let config = dir.join("sshd_config");
        let log = dir.join("sshd.log");
        let mut last_log = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let cfg = format!(
                "ListenAddress 127.0.0.1\n\
                 Port {port}\n\
                 HostKey {host}\n\
                 PidFile {pid}\n\
                 PermitRootLogin forced-commands-only\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 UsePAM no\n\
                 StrictModes no\n\
                 AuthorizedKeysFile {ak}\n\
                 AcceptEnv LD_PRELOAD RSYNC_* REMOTE_HOST\n\
                 LogLevel VERBOSE\n\
                 PermitUserEnvironment no\n\
                 {extra}",
                host = host_key.display(),
                pid = dir.join("sshd.pid").display(),
                ak = authorized_keys.display(),
            );
            std::fs::write(&config, cfg).expect("write sshd_config");
            let log_file = std::fs::File::create(&log).expect("create sshd.log");
            let child = Command::new(SSHD)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file)
                .spawn()
                .expect("spawn sshd");
            let mut daemon = Daemon(child);
            let listening = format!("Server listening on 127.0.0.1 port {port}.");
            let deadline = Instant::now() + START_LIMIT;
            loop {
                let exited = daemon.0.try_wait().expect("try_wait sshd");
                last_log = std::fs::read_to_string(&log).unwrap_or_default();
                if exited.is_some() {
                    break;
                }
                // sshd logs this once it has bound the port, so the banner
                // that follows is ours, not some other process's.
                if last_log.contains(&listening) && ssh_banner(port) {
                    return Sshd {
                        _daemon: daemon,
                        port,
                        dir,
                        log,
                        authorized_keys,
                        _tmp: tmp,
                    };
                }
                if Instant::now() >= deadline {
                    drop(daemon);
                    panic!(
                        "sshd did not accept connections on port {port} within {START_LIMIT:?}; its log:\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                thread::sleep(POLL);
            }
            if !last_log.contains("Address already in use") {
                break;
            }
            // Someone took the port between our probe and sshd's bind.
        }
        panic!("sshd did not start; its log:\n{last_log}");
    }

    /// What sshd logged so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A new key pair whose `authorized_keys` entry forces `command`
    /// (run by the account's shell, as sshd does).
    pub(crate) fn add_key(&self, name: &str, command: &str) -> Key {
        assert!(
            name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
            "key name {name:?}"
        );
        let path = self.dir.join("keys").join(name);
        assert!(!path.exists(), "key {name} exists already");
        keygen(&path, name);
        let public = std::fs::read_to_string(path.with_extension("pub"))
            .expect("read public key")
            .trim_end()
            .to_string();
        let line = format!(
            "restrict,command=\"{}\" {public}\n",
            command.replace('\\', "\\\\").replace('"', "\\\"")
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(&self.authorized_keys)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .expect("append to authorized_keys");
        Key { path }
    }

    /// A new key pair that `authorized_keys` does not mention; returns it
    /// and its public line.
    pub(crate) fn new_key(&self, name: &str) -> (Key, String) {
        let path = self.dir.join("keys").join(name);
        keygen(&path, name);
        let public = std::fs::read_to_string(path.with_extension("pub"))
            .expect("read public key")
            .trim_end()
            .to_string();
        (Key { path }, public)
    }

    /// A key whose forced command is the gate, serving `client` from the
    /// world's policy.
    pub(crate) fn gate_key(&self, world: &World, client: &str) -> Key {
        let command = format!(
            "{} serve --policy {} --client {}",
            common::sh_quote(common::gate_bin().as_os_str()),
            common::sh_quote(world.policy.as_os_str()),
            common::sh_quote(OsStr::new(client)),
        );
        self.add_key(&format!("gate-{client}"), &command)
    }

    /// ssh's options: this server, this key, nothing from the user's or the
    /// system's ssh configuration, no prompts, no host key bookkeeping.
    fn ssh_args(&self, key: &Key) -> Vec<String> {
        vec![
            "-p".into(),
            self.port.to_string(),
            "-i".into(),
            key.path.to_string_lossy().into_owned(),
            "-F".into(),
            "/dev/null".into(),
            "-o".into(),
            "StrictHostKeyChecking=no".into(),
            "-o".into(),
            "UserKnownHostsFile=/dev/null".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            "LogLevel=ERROR".into(),
            "-o".into(),
            "ConnectTimeout=10".into(),
        ]
    }

    /// The remote shell for `rsync -e`, with `extra` ssh options.
    fn rsh(&self, key: &Key, extra: &[&str]) -> String {
        let mut words = vec![SSH.to_string()];
        words.extend(self.ssh_args(key));
        words.extend(extra.iter().map(|s| (*s).to_string()));
        words.join(" ")
    }

    /// `ssh [extra] root@127.0.0.1 [command]`, with `env` added to ssh's
    /// environment.
    fn ssh(
        &self,
        key: &Key,
        extra: &[&str],
        env: &[(&str, &str)],
        command: Option<&str>,
    ) -> Output {
        let mut cmd = Command::new(SSH);
        cmd.args(self.ssh_args(key))
            .args(extra)
            .arg("root@127.0.0.1")
            .envs(env.iter().copied());
        if let Some(c) = command {
            cmd.arg(c);
        }
        run_timed(cmd, RUN_LIMIT)
    }

    /// `CLIENT -e "<ssh ...>" ARGS` with another rsync client (an older
    /// rsync, openrsync), run in the world's client directory.
    pub(crate) fn rsync_client(
        &self,
        world: &World,
        key: &Key,
        client: &Path,
        args: &[&str],
    ) -> Output {
        let mut cmd = Command::new(client);
        cmd.arg("-e")
            .arg(self.rsh(key, &[]))
            .args(args)
            .current_dir(&world.client);
        run_timed(cmd, RUN_LIMIT)
    }

    /// `rsync -e "<ssh ... extra>" ARGS`, run in the world's client
    /// directory with `env` added to rsync's (and so ssh's) environment.
    pub(crate) fn rsync(
        &self,
        world: &World,
        key: &Key,
        extra: &[&str],
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Output {
        let mut cmd = Command::new(RSYNC);
        cmd.arg("-e")
            .arg(self.rsh(key, extra))
            .args(args)
            .current_dir(&world.client)
            .envs(env.iter().copied());
        run_timed(cmd, RUN_LIMIT)
    }
}

/// A remote `host:path` (or `host:`) argument for rsync.
fn remote(path: &str) -> String {
    format!("root@127.0.0.1:{path}")
}

/// `dir` with a trailing slash, as rsync wants it for "the contents of".
pub(crate) fn slash(p: &Path) -> String {
    format!("{}/", p.display())
}

pub(crate) fn assert_denied(out: &Output, what: &str, needle: &str) {
    let err = common::stderr(out);
    assert!(
        !out.status.success(),
        "{what}: expected a refusal, got success; stderr:\n{err}"
    );
    assert!(
        err.contains(needle),
        "{what}: stderr should contain {needle:?}; it was:\n{err}"
    );
}

pub(crate) fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}; stderr:\n{}",
        out.status,
        common::stderr(out)
    );
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

const ONE_MODULE: &str =
    "[modules.www]\npath = \"{srv}/www\"\n\n[clients.c]\nmodules = [\"www\"]\n";

/// A pull of a read-only module through sshd and the gate gives a
/// byte-identical tree.
#[test]
fn pull_gives_identical_tree() {
    if !prerequisites() {
        return;
    }
    let world = World::new();
    let www = world.module_dir("www");
    common::sample_tree(&www);
    world.write_policy(ONE_MODULE);
    let sshd = Sshd::start();
    let key = sshd.gate_key(&world, "c");
    let dst = world.client.join("dst");

    let out = sshd.rsync(
        &world,
        &key,
        &[],
        &[],
        &["-a", &remote("www/"), &slash(&dst)],
    );
    assert_ok(&out, "pull of www/");
    assert!(
        out.stdout.is_empty(),
        "rsync -a is quiet: {}",
        text(&out.stdout)
    );
    common::assert_same_tree(&www, &dst);

    // A second pull with --delete into a dirtied copy repairs it.
    std::fs::write(dst.join("a.txt"), "changed\n").expect("w");
    std::fs::write(dst.join("extra"), "not on the server\n").expect("w");
    let out = sshd.rsync(
        &world,
        &key,
        &[],
        &[],
        &["-a", "--delete", "-c", &remote("www/"), &slash(&dst)],
    );
    assert_ok(&out, "second pull with --delete");
    common::assert_same_tree(&www, &dst);
}

/// A push into a writable module transfers an identical tree; a push
/// into a read-only module is refused with the gate's message and leaves
/// the module untouched.
#[test]
fn push_writable_and_read_only() {
    if !prerequisites() {
        return;
    }
    let world = World::new();
    let www = world.module_dir("www");
    common::sample_tree(&www);
    let up = world.module_dir("up");
    // munge_links defaults to true for writable modules, which (rightly)
    // rewrites the pushed symlinks; turn it off to compare trees exactly.
    world.write_policy(
        "[modules.www]\npath = \"{srv}/www\"\n\n\
         [modules.up]\npath = \"{srv}/up\"\nread_only = false\nmunge_links = false\n\n\
         [clients.c]\nmodules = [\"www\", \"up\"]\n",
    );
    let src = world.client.join("src");
    std::fs::create_dir(&src).expect("mkdir src");
    common::set_mode(&src, 0o755);
    common::sample_tree(&src);
    std::fs::write(src.join("pushed-only"), "new\n").expect("w");
    let sshd = Sshd::start();
    let key = sshd.gate_key(&world, "c");

    let out = sshd.rsync(
        &world,
        &key,
        &[],
        &[],
        &["-a", &slash(&src), &remote("up/")],
    );
    assert_ok(&out, "push into up/");
    common::assert_same_tree(&src, &up);

    let before = common::snapshot(&www);
    let out = sshd.rsync(
        &world,
        &key,
        &[],
        &[],
        &["-a", &slash(&src), &remote("www/")],
    );
    assert_denied(
        &out,
        "push into read-only www/",
        "rsync-gate: denied: module 'www' is read-only",
    );
    assert_eq!(before, common::snapshot(&www), "www changed");
    assert!(!www.join("pushed-only").exists());
}

/// The key runs rsync and nothing else: no other command, no shell
/// syntax, no interactive session; `true` is the connectivity probe.
#[test]
fn no_shell_and_no_other_command() {
    if !prerequisites() {
        return;
    }
    let world = World::new();
    common::sample_tree(&world.module_dir("www"));
    world.write_policy(ONE_MODULE);
    let sshd = Sshd::start();
    let key = sshd.gate_key(&world, "c");

    let out = sshd.ssh(&key, &[], &[], Some("id"));
    assert_denied(
        &out,
        "ssh id",
        "rsync-gate: denied: only rsync may be run with this key (got 'id')",
    );
    assert!(out.stdout.is_empty(), "stdout: {}", text(&out.stdout));

    // Shell syntax must not reach a shell: each would create its marker.
    let markers: Vec<PathBuf> = (0..4)
        .map(|i| world.root.join(format!("marker-{i}")))
        .collect();
    let m = |i: usize| markers.get(i).expect("marker").display().to_string();
    let attempts = [
        (
            format!("rsync --server --sender -e.LsfxCIvu . www/; touch {}", m(0)),
            "rsync-gate: denied: unparsable command: ",
        ),
        (
            format!("rsync --server --sender -e.LsfxCIvu . www/`touch {}`", m(1)),
            "rsync-gate: denied: unparsable command: ",
        ),
        (
            format!(
                "rsync --server --sender -e.LsfxCIvu . www/$(touch {})",
                m(2)
            ),
            "rsync-gate: denied: unparsable command: ",
        ),
        (
            format!("touch {}", m(3)),
            "rsync-gate: denied: only rsync may be run with this key (got 'touch')",
        ),
    ];
    for (a, why) in &attempts {
        let out = sshd.ssh(&key, &[], &[], Some(a));
        assert_denied(&out, a, why);
        assert!(out.stdout.is_empty(), "{a}: stdout: {}", text(&out.stdout));
    }
    for mk in &markers {
        assert!(!mk.exists(), "{} was created", mk.display());
    }

    // No command: an interactive login (no tty, as scripts would ask).
    let out = sshd.ssh(&key, &["-T"], &[], None);
    assert_denied(
        &out,
        "interactive session",
        "rsync-gate: denied: interactive sessions are not allowed",
    );
    assert!(out.stdout.is_empty(), "stdout: {}", text(&out.stdout));

    let out = sshd.ssh(&key, &[], &[], Some("true"));
    assert_ok(&out, "ssh true");
    assert!(out.stdout.is_empty(), "stdout: {}", text(&out.stdout));
}

/// Variables a client passes through sshd's AcceptEnv reach the gate
/// but not rsync: rsync gets exactly the gate's clean environment.
#[test]
fn client_environment_does_not_reach_rsync() {
    if !prerequisites() {
        return;
    }
    let mut world = World::new();
    common::sample_tree(&world.module_dir("www"));
    let recorded = world.use_recorder();
    world.write_policy(ONE_MODULE);
    let sshd = Sshd::start();
    let key = sshd.gate_key(&world, "c");

    // Proof that the fixture's sshd really passes these variables on to a
    // forced command: a second key whose command dumps its environment.
    let dump = world.root.join("forced-command-env");
    let dumper = world.root.join("bin/env-dump");
    common::install_exec(
        &dumper,
        &format!("#!/bin/sh\nenv > {}\n", common::sh_quote(dump.as_os_str())),
    );
    let dump_key = sshd.add_key("env-dump", &common::sh_quote(dumper.as_os_str()));
    let out = sshd.ssh(&dump_key, &SEND_HOSTILE_ENV, &HOSTILE_ENV, Some("x"));
    assert_ok(&out, "env dump through sshd");
    let seen = std::fs::read_to_string(&dump).expect("the forced command ran");
    for (k, v) in HOSTILE_ENV {
        assert!(
            seen.lines().any(|l| l == format!("{k}={v}")),
            "sshd did not pass {k} to the forced command; it saw:\n{seen}"
        );
    }

    // The same variables sent to the gate's key.
    let dst = world.client.join("dst");
    let _ = sshd.rsync(
        &world,
        &key,
        &SEND_HOSTILE_ENV,
        &HOSTILE_ENV,
        &["-a", &remote("www/"), &slash(&dst)],
    );
    // (The recorder does not speak the protocol, so the rsync client fails.)
    let rec = common::Recorded::read(&recorded).expect("the gate ran the recorder");
    assert!(
        rec.argv.iter().any(|a| a == "--server") && rec.argv.iter().any(|a| a == "--sender"),
        "the recording is not of the transfer: {:?}",
        rec.argv
    );
    let env = env_pairs(&rec.env);
    for (k, _) in &env {
        assert!(
            k != "LD_PRELOAD" && k != "REMOTE_HOST" && !k.starts_with("RSYNC_"),
            "{k} reached rsync: {env:?}"
        );
    }
    // Exactly the gate's set (src/plan.rs child_env), plus PWD, which the
    // recorder's /bin/sh exports itself.
    let get = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let mut names: Vec<&str> = env
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| *k != "PWD")
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["HOME", "LOGNAME", "PATH", "SSH_CONNECTION", "USER"],
        "rsync's environment: {env:?}"
    );
    assert_eq!(get("PATH"), Some("/usr/bin:/bin"));
    assert_eq!(get("HOME"), Some("/nonexistent"));
    assert_eq!(get("USER"), Some("root"));
    assert_eq!(get("LOGNAME"), Some("root"));
    if let Some(pwd) = get("PWD") {
        assert_eq!(pwd, rec.cwd, "PWD is the shell's own");
    }
    let conn: Vec<&str> = get("SSH_CONNECTION")
        .expect("SSH_CONNECTION")
        .split(' ')
        .collect();
    let port = sshd.port.to_string();
    assert!(
        matches!(conn.as_slice(), [c, p, s, sp]
            if *c == "127.0.0.1" && p.parse::<u16>().is_ok() && *s == "127.0.0.1" && *sp == port),
        "SSH_CONNECTION {conn:?}"
    );
}

/// The audit record's source address and port.
fn source_of(r: &serde_json::Value) -> (String, u64) {
    (
        r["source"]["addr"].as_str().unwrap_or_default().to_string(),
        r["source"]["port"].as_u64().unwrap_or_default(),
    )
}

/// The audit log shows every session behind sshd with the client name
/// and the real source address and port, its decision, and for a transfer
/// that ran, its end with exit status and duration.
#[test]
fn audit_log_behind_sshd() {
    if !prerequisites() {
        return;
    }
    let world = World::new();
    common::sample_tree(&world.module_dir("www"));
    world.write_policy(ONE_MODULE);
    let sshd = Sshd::start();
    let key = sshd.gate_key(&world, "c");
    let src = world.client.join("src");
    std::fs::create_dir(&src).expect("mkdir src");
    std::fs::write(src.join("f"), "f\n").expect("w");

    let out = sshd.rsync(
        &world,
        &key,
        &[],
        &[],
        &["-a", &remote("www/"), &slash(&world.client.join("dst"))],
    );
    assert_ok(&out, "pull");
    let out = sshd.rsync(
        &world,
        &key,
        &[],
        &[],
        &["-a", &slash(&src), &remote("www/")],
    );
    assert_denied(
        &out,
        "push into read-only www/",
        "rsync-gate: denied: module 'www' is read-only",
    );
    assert_ok(&sshd.ssh(&key, &[], &[], Some("true")), "ssh true");
    assert_denied(
        &sshd.ssh(&key, &[], &[], Some("id")),
        "ssh id",
        "rsync-gate: denied: only rsync may be run with this key (got 'id')",
    );

    let records = world.audit_records();
    let log = sshd.log();
    for r in &records {
        assert_eq!(r["client"], "c", "{r}");
        let (addr, port) = source_of(r);
        assert_eq!(addr, "127.0.0.1", "{r}");
        assert!((1..=65535).contains(&port), "{r}");
        // The port is the one sshd saw for this connection.
        assert!(
            log.contains(&format!(
                "Accepted publickey for root from 127.0.0.1 port {port} "
            )),
            "port {port} of {r} is not in sshd's log:\n{log}"
        );
        assert!(r["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{r}");
    }
    let decisions: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| r["event"] == "decision")
        .collect();
    let ends: Vec<&serde_json::Value> = records.iter().filter(|r| r["event"] == "end").collect();
    assert_eq!(decisions.len(), 4, "{records:#?}");
    assert_eq!(ends.len(), 1, "only the pull ran rsync: {records:#?}");

    let [pull, push, probe, id] = decisions.as_slice() else {
        panic!("four decisions")
    };
    assert_eq!(pull["decision"], "allow", "{pull}");
    assert_eq!(pull["mode"], "sender", "{pull}");
    assert_eq!(pull["modules"], serde_json::json!(["www"]), "{pull}");
    assert!(
        pull["command"]
            .as_str()
            .is_some_and(|c| c.starts_with("rsync --server --sender ") && c.ends_with(" . www/")),
        "{pull}"
    );
    assert!(
        pull["argv"].as_array().is_some_and(|a| !a.is_empty()),
        "{pull}"
    );
    let end = ends.first().expect("end record");
    assert_eq!(end["session"], pull["session"], "{end}");
    assert_eq!(source_of(end), source_of(pull), "{end}");
    assert_eq!(end["exit_status"], 0, "{end}");
    assert!(end["duration_ms"].is_u64(), "{end}");

    assert_eq!(push["decision"], "deny", "{push}");
    assert_eq!(push["reason"]["code"], "read_only", "{push}");
    assert_eq!(
        push["reason"]["message"], "module 'www' is read-only",
        "{push}"
    );

    assert_eq!(probe["decision"], "allow", "{probe}");
    assert_eq!(probe["mode"], "probe", "{probe}");
    assert_eq!(probe["command"], "true", "{probe}");

    assert_eq!(id["decision"], "deny", "{id}");
    assert_eq!(id["reason"]["code"], "command_not_allowed", "{id}");
    assert_eq!(id["command"], "id", "{id}");

    // Four connections, four source ports.
    let mut ports: Vec<u64> = decisions.iter().map(|r| source_of(r).1).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 4, "{decisions:#?}");
}

/// A client's `from` list is checked against the address sshd reports.
#[test]
fn from_restriction_behind_sshd() {
    if !prerequisites() {
        return;
    }
    let world = World::new();
    let www = world.module_dir("www");
    common::sample_tree(&www);
    world.write_policy(
        "[modules.www]\npath = \"{srv}/www\"\n\n\
         [clients.far]\nmodules = [\"www\"]\nfrom = [\"192.0.2.10\"]\n\n\
         [clients.near]\nmodules = [\"www\"]\nfrom = [\"127.0.0.1\"]\n",
    );
    let sshd = Sshd::start();
    let far = sshd.gate_key(&world, "far");
    let near = sshd.gate_key(&world, "near");

    let far_dst = world.client.join("far");
    let out = sshd.rsync(
        &world,
        &far,
        &[],
        &[],
        &["-a", &remote("www/"), &slash(&far_dst)],
    );
    assert_denied(
        &out,
        "pull by 'far' from 127.0.0.1",
        "rsync-gate: denied: connections from 127.0.0.1 are not allowed",
    );
    assert!(
        common::tree(&far_dst).is_empty(),
        "nothing was transferred to the refused client"
    );
    let refused = world.last_decision();
    assert_eq!(refused["client"], "far", "{refused}");
    assert_eq!(refused["decision"], "deny", "{refused}");
    assert_eq!(refused["reason"]["code"], "source_not_allowed", "{refused}");

    let near_dst = world.client.join("near");
    let out = sshd.rsync(
        &world,
        &near,
        &[],
        &[],
        &["-a", &remote("www/"), &slash(&near_dst)],
    );
    assert_ok(&out, "pull by 'near' from 127.0.0.1");
    common::assert_same_tree(&www, &near_dst);
}

// ---------------------------------------------------------------------------
// Daemon over SSH (host::module) behind the real sshd
// ---------------------------------------------------------------------------

/// A daemon-style remote argument (`host::module/path`).
fn daemon_remote(path: &str) -> String {
    format!("root@127.0.0.1::{path}")
}

const DAEMON_MODULES: &str = "[modules.www]\npath = \"{srv}/www\"\n\n\
     [modules.up]\npath = \"{srv}/up\"\nread_only = false\n\n\
     [modules.secret]\npath = \"{srv}/secret\"\n\n\
     [clients.c]\nmodules = [\"www\", \"up\"]\n";

#[test]
fn daemon_over_ssh_behind_sshd() {
    if !prerequisites() {
        return;
    }
    let world = World::new();
    let www = world.module_dir("www");
    common::sample_tree(&www);
    let outside = world.root.join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "top secret\n").unwrap();
    std::os::unix::fs::symlink(&outside, www.join("out")).unwrap();
    let up = world.module_dir("up");
    world.module_dir("secret");
    world.write_policy(DAEMON_MODULES);
    let sshd = Sshd::start();
    let key = sshd.gate_key(&world, "c");

    // host:: lists exactly the client's modules.
    let out = sshd.rsync(&world, &key, &[], &[], &[&daemon_remote("")]);
    assert_ok(&out, "list");
    let listing = text(&out.stdout);
    let names: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(names, ["www", "up"], "{listing}");

    // Pull, and -s pull.
    let dst = world.client.join("pull");
    let out = sshd.rsync(
        &world,
        &key,
        &[],
        &[],
        &["-a", &daemon_remote("www/"), &slash(&dst)],
    );
    assert_ok(&out, "daemon pull");
    common::assert_same_tree(&www, &dst);
    let dst2 = world.client.join("spull");
    let out = sshd.rsync(
        &world,
        &key,
        &[],
        &[],
        &["-as", &daemon_remote("www/sub/"), &slash(&dst2)],
    );
    assert_ok(&out, "daemon -s pull");
    common::assert_same_tree(&www.join("sub"), &dst2);

    // Push into the writable module.
    let src = world.client.join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f.txt"), "pushed\n").unwrap();
    let out = sshd.rsync(
        &world,
        &key,
        &[],
        &[],
        &["-a", &slash(&src), &daemon_remote("up/in/")],
    );
    assert_ok(&out, "daemon push");
    assert_eq!(std::fs::read(up.join("in/f.txt")).unwrap(), b"pushed\n");

    // Refusals, each with nothing changed.
    let before = common::snapshot(&world.root.join("srv"));
    let out = sshd.rsync(
        &world,
        &key,
        &[],
        &[],
        &["-a", &slash(&src), &daemon_remote("www/")],
    );
    assert_denied(
        &out,
        "daemon push into read-only",
        "rsync-gate: denied: module 'www' is read-only",
    );
    let out = sshd.rsync(
        &world,
        &key,
        &[],
        &[],
        &[
            "-a",
            &daemon_remote("secret/"),
            &slash(&world.client.join("x")),
        ],
    );
    assert_denied(&out, "ungranted module", "Unknown module 'secret'");
    let out = sshd.rsync(
        &world,
        &key,
        &[],
        &[],
        &["-a", "--delete", &slash(&src), &daemon_remote("up/in/")],
    );
    assert_denied(
        &out,
        "delete = false",
        "option --delete is not allowed in module 'up' (delete = false)",
    );
    let out = sshd.rsync(
        &world,
        &key,
        &[],
        &[],
        &[
            "-a",
            &daemon_remote("www/out/"),
            &slash(&world.client.join("x")),
        ],
    );
    assert_denied(
        &out,
        "symlink out of the module",
        "leads outside its module",
    );
    assert!(!world.client.join("x").exists());
    assert!(
        before == common::snapshot(&world.root.join("srv")),
        "a refusal changed the server"
    );

    // Every request has its audit lines: the session's, and the request's
    // own decision (module, request) and end (exit status).
    let recs = world.audit_records();
    let pull = recs
        .iter()
        .find(|r| r["request"] == "www/" && r["event"] == "decision")
        .expect("a decision record for the pull");
    assert_eq!(pull["decision"], "allow");
    assert_eq!(pull["modules"], serde_json::json!(["www"]));
    assert_eq!(pull["source"]["addr"], "127.0.0.1");
    let ends = recs
        .iter()
        .filter(|r| r["event"] == "end" && r["session"] == pull["session"])
        .count();
    assert_eq!(ends, 2, "the request's end and the session's end");
    let refused = recs
        .iter()
        .find(|r| r["reason"]["code"] == "read_only")
        .expect("a refusal record");
    assert_eq!(refused["mode"], "receiver");
    assert_eq!(refused["modules"], serde_json::json!(["www"]));
}

// ---------------------------------------------------------------------------
// Keys from the policy: sshd's AuthorizedKeysCommand
// ---------------------------------------------------------------------------

/// The gate binary where sshd runs an `AuthorizedKeysCommand`: sshd wants
/// the program and every directory above it root's and writable by root
/// alone, with no exception for a sticky directory, so a build under /tmp
/// (a clone there) will not do. A root-owned copy in a directory of its
/// own under /run, removed when the guard drops.
fn gate_for_authorized_keys_command() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("rsync-gate-test-")
        .tempdir_in("/run")
        .expect("a directory under /run");
    common::set_mode(dir.path(), 0o755);
    let copy = dir.path().join("rsync-gate");
    crate::nonroot::install_gate_copy(&copy);
    (dir, copy)
}

/// The gate as sshd's `AuthorizedKeysCommand`, run as `nobody`: a key that
/// is only in the policy logs in (and gets the gate as its forced
/// command); once removed from the policy and the policy recompiled, it
/// no longer does, and nothing under `~/.ssh` was touched. An unknown key
/// and a login as another account get nothing.
#[test]
fn keys_from_the_policy_through_authorized_keys_command() {
    if !prerequisites() {
        return;
    }
    let world = World::new();
    let www = world.module_dir("www");
    common::sample_tree(&www);
    let (_installed, gate) = gate_for_authorized_keys_command();
    let sshd = Sshd::start_with(&format!(
        "AuthorizedKeysCommand {} authorized-keys --policy {} --for-sshd %u %f\n\
         AuthorizedKeysCommandUser nobody\n",
        gate.display(),
        world.policy.display()
    ));
    let (key, public) = sshd.new_key("policy-only");
    let (stranger, _) = sshd.new_key("stranger");
    let policy = |with_key: bool| {
        let key_line = if with_key {
            format!("key = \"{public}\"\n")
        } else {
            String::new()
        };
        format!(
            "account = \"root\"\n\n[modules.www]\npath = \"{{srv}}/www\"\n\n\
             [clients.c]\nmodules = [\"www\"]\nfrom = [\"127.0.0.1\"]\n{key_line}\n\
             [clients.other]\nmodules = [\"www\"]\n"
        )
    };
    let compile = || {
        let out = Command::new(&gate)
            .args(["check", "--account", "root", "--compile", "--policy"])
            .arg(&world.policy)
            .output()
            .expect("run check --compile");
        assert!(
            out.status.success(),
            "check --compile: {}{}",
            text(&out.stdout),
            common::stderr(&out)
        );
    };
    world.write_policy(&policy(true));
    compile();
    let ak_before = std::fs::read(&sshd.authorized_keys).expect("read authorized_keys");
    assert!(ak_before.is_empty());

    let dst = world.client.join("dst");
    let out = sshd.rsync(
        &world,
        &key,
        &[],
        &[],
        &["-a", &remote("www/"), &slash(&dst)],
    );
    assert_ok(&out, "pull with a key that is only in the policy");
    common::assert_same_tree(&www, &dst);
    let last = world.last_decision();
    assert_eq!(last["client"], "c", "{last}");
    assert_eq!(last["decision"], "allow", "{last}");

    // The forced command is the gate's: nothing else runs.
    let out = sshd.ssh(&key, &[], &[], Some("id"));
    assert!(
        !out.status.success(),
        "a shell command ran: {}",
        text(&out.stdout)
    );

    let out = sshd.ssh(&stranger, &[], &[], Some("true"));
    assert_denied(&out, "a key the policy does not have", "Permission denied");

    // The key is removed from the policy, the policy recompiled.
    world.write_policy(&policy(false));
    compile();
    let _ = std::fs::remove_dir_all(&dst);
    let out = sshd.rsync(
        &world,
        &key,
        &[],
        &[],
        &["-a", &remote("www/"), &slash(&dst)],
    );
    assert_denied(&out, "a key removed from the policy", "Permission denied");
    assert_eq!(
        std::fs::read(&sshd.authorized_keys).expect("read authorized_keys"),
        ak_before,
        "authorized_keys was touched"
    );
    assert!(
        sshd.log().contains("--for-sshd"),
        "sshd did not run the command: {}",
        sshd.log()
    );
}
