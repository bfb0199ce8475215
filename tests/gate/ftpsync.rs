//! Push mirroring end to end with Debian's own tools (issue 10, point 4):
//!
//! ```text
//! runmirrors (upstream, root)  --ssh-->  the real sshd  -->  rsync-gate serve
//!   (account `rsgt-…`, forced command, client `upstream` with trigger `debian`)
//!   --> supervisor --> ftpsync sync:archive: sync:all (the trigger's job)
//!   --> rsync pull from the upstream's rsync daemon on 127.0.0.1
//! ```
//!
//! The downstream is laid out as a Debian mirror is, with README
//! "Installation": a dedicated non-root account (its root-owned home holds
//! ftpsync's configuration, `~/.config/ftpsync/ftpsync.conf`; `~/.local`,
//! where ftpsync keeps its logs, is the account's), the mirror tree (ftpsync's
//! `TO`) owned by the account, the audit log pre-created for the account and
//! the lock directory the account's. The upstream is root running
//! `runmirrors` with a home of its own (its push key made by ssh-keygen, its
//! ssh configuration passed with `-F` so nothing of root's is used), and an
//! `rsync --daemon` on a free loopback port serving the archive.
//!
//! ftpsync and runmirrors come from the Debian package `ftpsync`: installed
//! (`/usr/bin`), or unpacked by `.ci/run` into [`FTPSYNC_ROOT`]. Outside CI
//! a missing one skips the test with a note; with `CI=true` it fails.

use std::fmt::Write as _;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::common::{self, World};
use crate::nonroot::{self, TestAccount};
use crate::sshd::{self, Sshd};

/// Where `.ci/run` unpacks the package (`apt-get download ftpsync` and
/// `dpkg -x`) when it is not installed.
const FTPSYNC_ROOT: &str = "/opt/rsync-gate-tests/ftpsync";
/// The downstream's name in its trace files (never resolved).
const MIRRORNAME: &str = "downstream.rsync-gate.invalid";
/// The upstream's archive serial, which ftpsync copies into its own trace.
const SERIAL: &str = "2024010101";
/// How long the job gets to end after the trigger.
const JOB_LIMIT: Duration = Duration::from_secs(60);
/// How long the rsync daemon gets to start listening.
const START_LIMIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(50);

/// The words runmirrors sends for a push of type `all` to the main archive,
/// as the gate splits them (runmirrors sends them as one argument with a
/// leading space: `' sync:archive: sync:all'`).
const WORDS: [&str; 2] = ["sync:archive:", "sync:all"];

/// ftpsync and runmirrors.
struct DebianTools {
    ftpsync: PathBuf,
    runmirrors: PathBuf,
}

/// The installed package's scripts, else the unpacked ones; outside CI a
/// missing one skips the test (None), in CI it fails it.
fn debian_tools() -> Option<DebianTools> {
    let installed = DebianTools {
        ftpsync: PathBuf::from("/usr/bin/ftpsync"),
        runmirrors: PathBuf::from("/usr/bin/runmirrors"),
    };
    if installed.ftpsync.is_file() && installed.runmirrors.is_file() {
        return Some(installed);
    }
    Some(DebianTools {
        ftpsync: common::require(&format!("{FTPSYNC_ROOT}/usr/bin/ftpsync"))?,
        runmirrors: common::require(&format!("{FTPSYNC_ROOT}/usr/bin/runmirrors"))?,
    })
}

// ---------------------------------------------------------------------------
// The upstream archive: a tiny tree and an rsync daemon serving it
// ---------------------------------------------------------------------------

/// Write a file (0644, as ftpsync's `--chmod=D755,F644` leaves it on the
/// downstream), creating its directories (0755).
fn put(root: &Path, rel: &str, content: &[u8]) {
    let path = root.join(rel);
    mkdir(path.parent().expect("a parent"), 0o755);
    std::fs::write(&path, content).expect("write");
    common::set_mode(&path, 0o644);
}

/// A Debian archive in miniature, as dak leaves it: indices under
/// `dists/`, packages under `pool/`, the master trace (whose serial ftpsync
/// copies into the downstream's trace).
fn upstream_archive(root: &Path) {
    let deb: Vec<u8> = (0u8..=255).cycle().take(4096).collect();
    put(root, "pool/main/h/hello/hello_1.0-1_amd64.deb", &deb);
    put(
        root,
        "pool/main/h/hello/hello_1.0-1.dsc",
        b"Source: hello\n",
    );
    put(root, "pool/main/h/hello/hello_1.0.orig.tar.gz", &deb[..512]);
    let packages = "Package: hello\nVersion: 1.0-1\nFilename: pool/main/h/hello/hello_1.0-1_amd64.deb\nSize: 4096\n\n";
    put(
        root,
        "dists/bookworm/main/binary-amd64/Packages",
        packages.as_bytes(),
    );
    put(
        root,
        "dists/bookworm/main/binary-amd64/Packages.gz",
        &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3],
    );
    put(
        root,
        "dists/bookworm/main/source/Sources",
        b"Package: hello\nBinary: hello\n\n",
    );
    put(
        root,
        "dists/bookworm/main/i18n/Translation-en",
        b"Package: hello\nDescription-en: hello world\n\n",
    );
    put(
        root,
        "dists/bookworm/Release",
        format!("Suite: stable\nCodename: bookworm\nSerial: {SERIAL}\n").as_bytes(),
    );
    put(
        root,
        "dists/bookworm/InRelease",
        b"-----BEGIN PGP SIGNED MESSAGE-----\nCodename: bookworm\n",
    );
    std::os::unix::fs::symlink("bookworm", root.join("dists/stable")).expect("symlink");
    put(root, "ls-lR.gz", b"ls-lR\n");
    put(
        root,
        "README",
        b"A tiny Debian archive for rsync-gate's tests.\n",
    );
    let trace = format!(
        "Mon Jan  1 00:00:00 UTC 2024\nDate: Mon, 01 Jan 2024 00:00:00 +0000\n\
         Archive serial: {SERIAL}\nCreator: dak (rsync-gate test)\n"
    );
    put(root, "project/trace/master", trace.as_bytes());
    put(
        root,
        "project/trace/ftp-master.debian.org",
        trace.as_bytes(),
    );
}

/// `rsync --daemon --no-detach` on 127.0.0.1, module `debian`, in its own
/// process group; on drop the group gets SIGTERM, then SIGKILL.
struct RsyncDaemon {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl RsyncDaemon {
    fn start(dir: &Path, archive: &Path) -> RsyncDaemon {
        let config = dir.join("rsyncd.conf");
        let log = dir.join("rsyncd.log");
        let mut last_log = String::new();
        for _attempt in 0..5 {
            let port = sshd::free_port();
            std::fs::write(
                &config,
                format!(
                    "log file = {}\nuse chroot = yes\nuid = nobody\ngid = nogroup\n\n\
                     [debian]\n    path = {}\n    read only = yes\n    list = yes\n",
                    log.display(),
                    archive.display()
                ),
            )
            .expect("write rsyncd.conf");
            let _ = std::fs::remove_file(&log);
            let child = Command::new("/usr/bin/rsync")
                .arg("--daemon")
                .arg("--no-detach")
                .arg(format!("--config={}", config.display()))
                .arg("--address=127.0.0.1")
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("spawn rsync --daemon");
            let mut daemon = RsyncDaemon {
                child,
                port,
                log: log.clone(),
            };
            let deadline = Instant::now() + START_LIMIT;
            loop {
                let exited = daemon.child.try_wait().expect("try_wait rsyncd");
                last_log = std::fs::read_to_string(&log).unwrap_or_default();
                if exited.is_some() {
                    break;
                }
                if rsync_greeting(port) {
                    return daemon;
                }
                assert!(
                    Instant::now() < deadline,
                    "rsync --daemon did not listen on port {port} within {START_LIMIT:?}; its log:\n{last_log}"
                );
                std::thread::sleep(POLL);
            }
            if !last_log.contains("Address already in use") {
                break;
            }
            // Someone took the port between our probe and the daemon's bind.
        }
        panic!("rsync --daemon did not start; its log:\n{last_log}");
    }
}

impl Drop for RsyncDaemon {
    fn drop(&mut self) {
        // The group is the daemon's own (and its per-connection children).
        let Ok(pgid) = i32::try_from(self.child.id()) else {
            return;
        };
        let group = Pid::from_raw(pgid);
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = killpg(group, Signal::SIGKILL);
                return;
            }
            std::thread::sleep(POLL);
        }
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// Does an rsync daemon greet on `port`? (The probe then asks for the
/// module list, so the daemon sees a well-behaved client.)
fn rsync_greeting(port: u16) -> bool {
    use std::io::Write;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut got = [0u8; 9];
    if s.read_exact(&mut got).is_err() || &got != b"@RSYNCD: " {
        return false;
    }
    let mut rest = Vec::new();
    let _ = s
        .write_all(b"@RSYNCD: 30.0\n\n")
        .and_then(|()| s.read_to_end(&mut rest));
    true
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// `mkdir -p` with `mode` for every directory it creates (whatever the
/// umask: the account and rsyncd's `nobody` must get through them).
fn mkdir(p: &Path, mode: u32) {
    let missing: Vec<&Path> = p.ancestors().take_while(|d| !d.exists()).collect();
    for d in missing.iter().rev() {
        std::fs::create_dir(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        common::set_mode(d, mode);
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| format!("<{}: {e}>", p.display()))
}

/// Every file in `dir` whose name starts with `prefix`, with its content.
fn logs(dir: &Path, prefix: &str) -> String {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(prefix))
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut out = String::new();
    for n in names {
        let _ = writeln!(out, "== {}\n{}", n.display(), read(&n));
    }
    out
}

/// A listing of a tree: one line per entry with its kind, mode, owner and
/// size (or link target).
fn listing(root: &Path) -> String {
    let mut out = String::new();
    for (rel, entry) in common::tree(root) {
        let md = std::fs::symlink_metadata(root.join(&rel)).expect("lstat");
        let what = match entry {
            common::Entry::Dir { mode } => format!("d {mode:04o}"),
            common::Entry::File { mode, content } => {
                format!("f {mode:04o} {:>5} bytes", content.len())
            }
            common::Entry::Symlink { target } => format!("l -> {}", target.display()),
            common::Entry::Other { mode } => format!("? {mode:04o}"),
        };
        let _ = writeln!(out, "  {:<52} {what} uid {}", rel.display(), md.uid());
    }
    out
}

/// Wait (bounded) for `ready` to say yes.
fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            eprintln!("gave up waiting for {what} after {limit:?}");
            return false;
        }
        std::thread::sleep(POLL);
    }
}

// ---------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------

/// runmirrors → sshd → rsync-gate → ftpsync → pull: the trigger is recorded
/// and started, the job ends with exit status 0 (recorded), and the
/// downstream tree equals the upstream's.
#[test]
fn runmirrors_triggers_ftpsync_through_the_gate() {
    if !nonroot::prerequisites() || !nonroot::sshd_prerequisites() {
        return;
    }
    let Some(tools) = debian_tools() else {
        return;
    };
    let started = Instant::now();

    // Drop order (the reverse of declaration): sshd, the rsync daemon, the
    // account (and whatever still runs as it), the files.
    let world = World::new();
    let homes = world.root.join("home");
    mkdir(&homes, 0o755);
    let account = TestAccount::create(&homes);
    let user = account.name.clone();
    let home = account.home.clone();
    let gate = nonroot::gate_for(&world);

    // --- The upstream archive and its rsync daemon.
    let archive = world.root.join("upstream/archive");
    mkdir(&archive, 0o755);
    upstream_archive(&archive);
    let rsyncd_dir = world.root.join("upstream/rsyncd");
    mkdir(&rsyncd_dir, 0o700);

    // --- The downstream: what README "Installation" says the account owns.
    // The audit log, pre-created (step 4); the lock directory (step 5).
    std::fs::write(&world.audit, "").expect("create audit log");
    account.chown(&world.audit);
    common::set_mode(&world.audit, 0o600);
    account.chown(&world.run);
    // The trigger's log, in a directory of the account's (the gate creates
    // the file when the job first runs).
    let trigger_log_dir = world.root.join("log/mirror");
    mkdir(&trigger_log_dir, 0o755);
    account.chown(&trigger_log_dir);
    let trigger_log = trigger_log_dir.join("trigger-debian.log");
    // The mirror (ftpsync's TO), the account's, with a file the upstream
    // no longer has: ftpsync's stage 2 (`--delete`) must remove it.
    let mirror = world.root.join("srv/mirror/debian");
    mkdir(&mirror, 0o755);
    put(
        &mirror,
        "pool/main/o/old/old_0.9_amd64.deb",
        b"gone upstream\n",
    );
    for p in [
        "",
        "pool",
        "pool/main",
        "pool/main/o",
        "pool/main/o/old",
        "pool/main/o/old/old_0.9_amd64.deb",
    ] {
        account.chown(&mirror.join(p));
    }
    // ftpsync's state (`~/.local/log/ftpsync`, `~/.local/lock/ftpsync`):
    // the account's. Its configuration: in the root-owned home, readable.
    let local = home.join(".local");
    mkdir(&local, 0o755);
    account.chown(&local);
    let conf_dir = home.join(".config/ftpsync");
    mkdir(&home.join(".config"), 0o755);
    mkdir(&conf_dir, 0o755);
    // Hook 1 (ftpsync runs it before stage 1, in its own environment):
    // records the environment the job was given.
    let hook_env = local.join("hook1.env");
    common::install_exec(
        &conf_dir.join("hook1-env"),
        &format!(
            "#!/bin/sh\nenv > {}\n",
            common::sh_quote(hook_env.as_os_str())
        ),
    );

    let daemon = RsyncDaemon::start(&rsyncd_dir, &archive);
    let ftpsync_conf = conf_dir.join("ftpsync.conf");
    std::fs::write(
        &ftpsync_conf,
        format!(
            "# ~{user}/.config/ftpsync/ftpsync.conf (the main archive)\n\
             MIRRORNAME={MIRRORNAME}\n\
             TRACEHOST={MIRRORNAME}\n\
             TO={mirror}/\n\
             RSYNC_HOST=127.0.0.1\n\
             RSYNC_PATH=debian\n\
             # The upstream's rsync daemon is not on port 873.\n\
             RSYNC_EXTRA=\"--port={port}\"\n\
             # Never wait 20 minutes for an upstream update in progress.\n\
             UIPSLEEP=1\n\
             UIPRETRIES=1\n\
             HOOK1={hook}\n",
            mirror = mirror.display(),
            port = daemon.port,
            hook = conf_dir.join("hook1-env").display(),
        ),
    )
    .expect("write ftpsync.conf");
    common::set_mode(&ftpsync_conf, 0o644);

    // --- The upstream's push key and ssh configuration.
    let up_home = world.root.join("upstream/home");
    mkdir(&up_home.join(".ssh"), 0o700);
    let push_key = up_home.join(".ssh/pushmirror"); // runmirrors' default KEYFILE
    sshd::keygen(&push_key, "upstream-push");
    let public = std::fs::read_to_string(push_key.with_extension("pub"))
        .expect("read the public key")
        .trim_end()
        .to_string();

    // --- The policy: trigger `debian` runs ftpsync with the accepted words.
    world.write_policy(&format!(
        "[triggers.debian]\n\
         command = [\"{ftpsync}\"]\n\
         args = [\"sync:all\", \"sync:stage1\", \"sync:stage2\", \"sync:callback\", \"sync:mhop\", \"sync:archive:*\"]\n\
         log = \"{log}\"\n\
         env = {{ MAILTO = \"root@localhost\" }}\n\
         timeout = \"10m\"\n\n\
         [clients.upstream]\n\
         trigger = \"debian\"\n\
         from = [\"127.0.0.1\"]\n\
         key = \"{public}\"\n\
         note = \"runmirrors on the upstream\"\n",
        ftpsync = tools.ftpsync.display(),
        log = trigger_log.display(),
    ));
    let policy = world.policy.to_string_lossy().into_owned();
    let out = Command::new(&gate)
        .args(["check", "--policy", &policy, "--account", &user])
        .output()
        .expect("run check");
    assert!(
        out.status.success(),
        "check --account {user}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        common::stderr(&out)
    );
    let out = Command::new(&gate)
        .args(["explain", "--policy", &policy, "--account", &user])
        .args(["--client", "upstream", "--from", "127.0.0.1", "--"])
        .arg(" sync:archive: sync:all")
        .output()
        .expect("run explain");
    let explained = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!(
        "--- explain (as {user}):\n{explained}{}",
        common::stderr(&out)
    );
    assert!(
        out.status.success() && explained.contains(&tools.ftpsync.to_string_lossy().into_owned()),
        "explain: {}\n{explained}",
        out.status
    );

    // --- sshd, with the line `rsync-gate authorized-keys` prints.
    let sshd = Sshd::start();
    // sshd reads AuthorizedKeysFile as the account: let it.
    common::set_mode(&sshd.dir, 0o755);
    common::set_mode(&sshd.authorized_keys, 0o644);
    let out = Command::new(&gate)
        .args([
            "authorized-keys",
            "--policy",
            &policy,
            "--client",
            "upstream",
        ])
        .output()
        .expect("run authorized-keys");
    assert!(
        out.status.success(),
        "authorized-keys: {}",
        common::stderr(&out)
    );
    let line = String::from_utf8(out.stdout).expect("UTF-8");
    assert_eq!(
        line,
        format!(
            "restrict,from=\"127.0.0.1\",command=\"{} serve --policy {policy} --client upstream\" {public}\n",
            gate.display()
        ),
        "the authorized_keys line"
    );
    std::fs::write(&sshd.authorized_keys, &line).expect("write authorized_keys");

    // --- runmirrors' configuration (in the upstream's HOME).
    let up_conf = up_home.join(".config/ftpsync");
    mkdir(&up_conf, 0o755);
    let ssh_config = up_home.join("ssh_config");
    let host_key =
        std::fs::read_to_string(sshd.dir.join("host_ed25519.pub")).expect("read the host key");
    let host_key: Vec<&str> = host_key.split_whitespace().take(2).collect();
    std::fs::write(
        up_home.join("known_hosts"),
        format!("[127.0.0.1]:{} {}\n", sshd.port, host_key.join(" ")),
    )
    .expect("write known_hosts");
    std::fs::write(
        &ssh_config,
        format!(
            "Host *\n    UserKnownHostsFile {kh}\n    GlobalKnownHostsFile /dev/null\n    \
             StrictHostKeyChecking yes\n    IdentitiesOnly yes\n",
            kh = up_home.join("known_hosts").display()
        ),
    )
    .expect("write ssh_config");
    std::fs::write(
        up_conf.join("runmirrors.conf"),
        format!(
            "# runmirrors needs BASEDIR (it does `cd \"${{BASEDIR}}\"` under set -u)\n\
             BASEDIR=$HOME\nMAILTO=root\nSSH_OPTS=\"-F {}\"\n",
            ssh_config.display()
        ),
    )
    .expect("write runmirrors.conf");
    std::fs::write(
        up_conf.join("runmirrors.mirror"),
        format!(
            "# TYPE SHORTNAME HOST USER [ssh options]\nall downstream 127.0.0.1 {user} -p {}\n",
            sshd.port
        ),
    )
    .expect("write runmirrors.mirror");

    // --- The push.
    let mut cmd = Command::new(&tools.runmirrors);
    cmd.env_clear()
        .env("HOME", &up_home)
        .env("USER", "root")
        .env("LOGNAME", "root")
        .env("PATH", "/usr/bin:/bin")
        .current_dir(&up_home);
    // runmirrors sends each push in the background and exits; its output
    // pipes close when the push's ssh has ended.
    let out = sshd::run_timed(cmd, sshd::RUN_LIMIT);
    let up_logs = up_home.join(".local/log/ftpsync");
    eprintln!(
        "--- runmirrors: {}; stdout {:?}; stderr {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        common::stderr(&out),
        logs(&up_logs, "")
    );
    assert!(out.status.success(), "runmirrors: {}", out.status);
    // What the upstream's ssh got back is the gate's one line.
    let pushed = up_logs.join("downstream.log");
    assert!(
        wait_for("runmirrors' push log", Duration::from_secs(10), || {
            read(&pushed).contains("rsync-gate: trigger 'debian' started")
        }),
        "runmirrors' push log:\n{}",
        read(&pushed)
    );

    // --- The decision.
    let is = |r: &serde_json::Value, event: &str| {
        r["event"] == event && r["mode"] == "trigger" && r["client"] == "upstream"
    };
    let records = world.audit_records();
    let decisions: Vec<&serde_json::Value> = records.iter().filter(|r| is(r, "decision")).collect();
    let [decision] = decisions.as_slice() else {
        panic!("one trigger decision: {records:#?}")
    };
    let shown = tools.ftpsync.to_string_lossy().into_owned();
    let argv = serde_json::json!([shown, WORDS[0], WORDS[1]]);
    assert_eq!(decision["decision"], "allow", "{decision}");
    assert_eq!(decision["trigger"]["name"], "debian", "{decision}");
    assert_eq!(
        decision["trigger"]["words"],
        serde_json::json!(WORDS),
        "{decision}"
    );
    assert_eq!(decision["trigger"]["state"], "started", "{decision}");
    // The accepted words go to ftpsync as arguments (it reads them there;
    // SSH_ORIGINAL_COMMAND is not in its environment, see below).
    assert_eq!(decision["argv"], argv, "{decision}");
    // A login of the account through this sshd, from this connection.
    assert_eq!(decision["source"]["addr"], "127.0.0.1", "{decision}");
    let port = decision["source"]["port"].as_u64().expect("source port");
    let sshd_log = sshd.log();
    assert!(
        sshd_log.contains(&format!(
            "Accepted publickey for {user} from 127.0.0.1 port {port} "
        )),
        "{decision} is not a login of {user} in sshd's log:\n{sshd_log}"
    );
    let session = decision["session"].clone();

    // --- The job's end (the supervisor records it when ftpsync exits).
    let ended = wait_for("the job's end record", JOB_LIMIT, || {
        world
            .audit_records()
            .iter()
            .any(|r| is(r, "end") && r["session"] == session)
    });
    let audit_text = read(&world.audit);
    eprintln!("--- audit log ({}):\n{audit_text}", world.audit.display());
    let ftpsync_logs = logs(&local.join("log/ftpsync"), "ftpsync.log");
    eprintln!("--- ftpsync's logs:\n{ftpsync_logs}");
    eprintln!(
        "--- the trigger's log ({}):\n{}",
        trigger_log.display(),
        read(&trigger_log)
    );
    assert!(ended, "no end record for session {session}:\n{audit_text}");
    let records = world.audit_records();
    let ends: Vec<&serde_json::Value> = records.iter().filter(|r| is(r, "end")).collect();
    let [end] = ends.as_slice() else {
        panic!("one run, one end record: {records:#?}")
    };
    assert_eq!(end["session"], session, "{end}");
    assert_eq!(end["trigger"]["name"], "debian", "{end}");
    assert_eq!(end["trigger"]["words"], serde_json::json!(WORDS), "{end}");
    assert_eq!(end["argv"], argv, "{end}");
    assert_eq!(end["exit_status"], 0, "ftpsync failed: {end}");
    assert!(end["duration_ms"].is_u64(), "{end}");
    assert!(end["reason"].is_null(), "{end}");

    // --- The mirror equals the archive, but for ftpsync's own files.
    let down = listing(&mirror);
    eprintln!("--- downstream tree ({}):\n{down}", mirror.display());
    let mut got = common::tree(&mirror);
    // ftpsync's own additions, each checked to be there and then left out:
    // - project/trace/MIRRORNAME: the downstream's trace (what it synced
    //   from where, when), which its own downstreams and the mirror checkers
    //   read;
    // - project/trace/_hierarchy, _hierarchy.mirror: the chain of mirrors
    //   above it (upstream's hierarchy plus itself);
    // - project/trace/_traces: the list of trace files it knows.
    // ftpsync protects these from rsync's --delete; the upstream has none.
    for name in [MIRRORNAME, "_hierarchy", "_hierarchy.mirror", "_traces"] {
        let rel = Path::new("project/trace").join(name);
        assert!(
            got.remove(&rel).is_some(),
            "ftpsync did not write {}:\n{down}",
            rel.display()
        );
    }
    // Not left out: `Archive-Update-in-Progress-*` (ftpsync's lock) and
    // `Archive-Update-Required-*` are removed by a run that ended well, so
    // any left would make the trees differ.
    let want = common::tree(&archive);
    if got != want {
        let only_up: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
        let only_down: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
        let differ: Vec<_> = want
            .keys()
            .filter(|k| got.get(*k).is_some_and(|v| Some(v) != want.get(*k)))
            .collect();
        panic!(
            "the mirror differs from the archive\n only upstream: {only_up:?}\n \
             only downstream: {only_down:?}\n differ: {differ:?}\n{down}"
        );
    }
    // Written by the job, as the account.
    let md = std::fs::metadata(mirror.join("dists/bookworm/Release")).expect("Release");
    assert_eq!(md.uid(), account.uid, "Release is not the account's");

    // --- The trace: a complete run, and one that did not see the SSH
    // command (ftpsync adds `Trigger: ssh` when SSH_ORIGINAL_COMMAND is set).
    let trace = read(&mirror.join("project/trace").join(MIRRORNAME));
    eprintln!("--- the downstream's trace:\n{trace}");
    assert!(
        trace.contains(&format!("Archive serial: {SERIAL}\n")),
        "{trace}"
    );
    assert!(
        trace.contains(&format!("Running on host: {MIRRORNAME}\n")),
        "{trace}"
    );
    assert!(!trace.contains("Trigger:"), "{trace}");

    // --- The job's environment, as ftpsync's hook saw it: built from
    // nothing but the account and the trigger's `env`.
    let env = read(&hook_env);
    eprintln!("--- the job's environment (hook 1):\n{env}");
    let vars: Vec<(&str, &str)> = env.lines().filter_map(|l| l.split_once('=')).collect();
    let var = |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
    let home_text = home.to_string_lossy().into_owned();
    for (k, v) in [
        ("HOME", home_text.as_str()),
        ("USER", user.as_str()),
        ("LOGNAME", user.as_str()),
        ("PATH", "/usr/bin:/bin"),
        ("MAILTO", "root@localhost"),
    ] {
        assert_eq!(var(k), Some(v), "{k} in the job's environment:\n{env}");
    }
    let ssh_vars: Vec<&&str> = vars
        .iter()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("SSH_"))
        .collect();
    assert!(ssh_vars.is_empty(), "{ssh_vars:?} reached the job:\n{env}");

    // --- The trigger's log: opened (created) for the job, as the account.
    let md = std::fs::symlink_metadata(&trigger_log).expect("the trigger's log exists");
    assert!(md.is_file(), "{}", trigger_log.display());
    assert_eq!(
        md.uid(),
        account.uid,
        "the trigger's log is not the account's"
    );

    // The rsync daemon served the pulls.
    let rsyncd_log = read(&daemon.log);
    assert!(rsyncd_log.contains("rsync on debian/"), "{rsyncd_log}");
    eprintln!(
        "--- rsyncd log:\n{rsyncd_log}--- done in {:.1?}",
        started.elapsed()
    );
}
