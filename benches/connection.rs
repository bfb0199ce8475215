//! Per-connection cost of the gate. A benchmark, not a test: it prints
//! figures and asserts nothing.
//!
//!     cargo bench --bench connection            # all figures
//!     cargo bench --bench connection -- quick   # fewer rounds
//!     cargo bench --bench connection -- transfer-log   # figure 5 only
//!     cargo bench --bench connection -- transfer-log rounds=151
//!
//! Figures (a Markdown table at the end, with ratios, for README.md):
//! 1. a small real pull through the gate versus the same pull with no gate;
//! 2. decision + exec of `/bin/true` through the gate (as its "rsync"), with
//!    policies of 3, 10,000 and 100,000 clients and modules, parsed from
//!    TOML and from the compiled index, against exec'ing `/bin/true` alone
//!    and a static C `true`;
//! 3. the gate's peak resident memory before exec (VmHWM of the gate, read
//!    by the program it runs), at each size, TOML and compiled;
//! 4. `authorized-keys --for-sshd` (sshd's AuthorizedKeysCommand) at 3 and
//!    100,000 keys, and a real login through sshd (root only) with the key
//!    looked up by the gate, against sshd scanning a 100,000-line
//!    `authorized_keys` for it (the key last, as the worst case).
//! 5. the cost of per-file transfer records: a pull of 10,000 small files
//!    through the gate from a module with `transfer_log = true` versus the
//!    same pull with it off (both request forms), and the same pull with
//!    no gate, with and without rsync's own `--log-file`, and rsync's
//!    daemon over the channel with no gate, with and without `transfer
//!    logging`, median wall time and CPU time of N runs each, interleaved.
#![allow(
    clippy::print_stdout,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fmt::Write as _;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The gate measured: this build's, or the one `RSYNC_GATE_BENCH_GATE`
/// names (to compare builds, e.g. a static one:
/// `RUSTFLAGS="-C target-feature=+crt-static" cargo build --release
/// --target x86_64-unknown-linux-gnu`).
fn gate() -> PathBuf {
    match std::env::var_os("RSYNC_GATE_BENCH_GATE") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_BIN_EXE_rsync-gate")),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// User and system time of this process's children that have ended.
fn children_cpu() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    let Ok(u) = getrusage(UsageWho::RUSAGE_CHILDREN) else {
        return Duration::ZERO;
    };
    let t = |v: nix::sys::time::TimeVal| {
        Duration::from_secs(v.tv_sec().max(0) as u64)
            + Duration::from_micros(v.tv_usec().max(0) as u64)
    };
    t(u.user_time()) + t(u.system_time())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn write_exec(path: &Path, text: &str) {
    // Written by a child process so this one never holds it open (ETXTBSY).
    let mut child = Command::new("/bin/sh")
        .args(["-c", "cat > \"$1\" && chmod 755 \"$1\"", "sh"])
        .arg(path)
        .stdin(Stdio::piped())
        .spawn()
        .expect("sh");
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), text.as_bytes())
        .expect("write");
    drop(child.stdin.take());
    assert!(child.wait().expect("wait").success());
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in data.chunks(3) {
        let v = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[((v >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// A well-formed ed25519 public key nobody holds the private half of.
fn fake_key(i: usize) -> String {
    let mut blob = Vec::new();
    blob.extend_from_slice(&11u32.to_be_bytes());
    blob.extend_from_slice(b"ssh-ed25519");
    blob.extend_from_slice(&32u32.to_be_bytes());
    let mut k = [0u8; 32];
    k[..8].copy_from_slice(&(i as u64).to_le_bytes());
    k[31] = 0x5a;
    blob.extend_from_slice(&k);
    format!("ssh-ed25519 {} k{i}", b64(&blob))
}

struct Bench {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Bench {
    fn new() -> Bench {
        Bench::new_in(None)
    }

    /// A bench whose files live below `base` (default: the system's
    /// temporary directory).
    fn new_in(base: Option<&Path>) -> Bench {
        let mut builder = tempfile::Builder::new();
        builder.prefix("gate-bench-");
        let dir = match base {
            Some(b) => builder.tempdir_in(b),
            None => builder.tempdir(),
        }
        .expect("tempdir");
        let root = std::fs::canonicalize(dir.path()).expect("canonicalize");
        set_mode(&root, 0o755);
        for d in [
            "srv",
            "srv/www",
            "srv/mirror",
            "log",
            "run",
            "bin",
            "client",
            "keys",
        ] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
            set_mode(&root.join(d), 0o755);
        }
        // A small tree: 20 files of 1 KiB in two directories.
        let www = root.join("srv/www");
        std::fs::create_dir(www.join("sub")).expect("mkdir");
        set_mode(&www.join("sub"), 0o755);
        for i in 0..10 {
            std::fs::write(www.join(format!("f{i}.txt")), vec![b'a' + i as u8; 1024]).expect("w");
            std::fs::write(
                www.join(format!("sub/g{i}.txt")),
                vec![b'A' + i as u8; 1024],
            )
            .expect("w");
        }
        Bench { _dir: dir, root }
    }

    /// A policy of `n` clients and `n` modules (client `c` and module `www`
    /// among them; every other client has a key and a module of its own),
    /// `last_key` the key of the last client.
    fn policy(&self, name: &str, rsync: &str, n: usize, last_key: Option<&str>) -> PathBuf {
        let mut text = format!(
            "[gate]\nrsync = \"{rsync}\"\naudit_log = \"{}/log/audit.jsonl\"\nlock_dir = \"{}/run\"\naccount = \"root\"\n\n\
             [modules.www]\npath = \"{}/srv/www\"\n\n[clients.c]\nmodules = [\"www\"]\n",
            self.root.display(),
            self.root.display(),
            self.root.display()
        );
        for i in 1..n {
            let key = match last_key {
                Some(k) if i == n - 1 => k.to_string(),
                _ => fake_key(i),
            };
            let _ = write!(
                text,
                "\n[modules.m{i:06}]\npath = \"{}/srv/mirror\"\ncomment = \"module {i}\"\n\
                 \n[clients.k{i:06}]\nmodules = [\"m{i:06}\"]\nfrom = [\"127.0.0.1\", \"192.0.2.0/24\"]\nkey = \"{key}\"\n",
                self.root.display()
            );
        }
        let path = self.root.join(name);
        std::fs::write(&path, text).expect("write policy");
        set_mode(&path, 0o644);
        let _ = std::fs::remove_file(index_of(&path));
        path
    }

    fn gate_shim(&self, policy: &Path) -> PathBuf {
        let stem = policy
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let p = self.root.join(format!("bin/gate-shim-{stem}"));
        write_exec(
            &p,
            &format!(
                "#!/bin/sh\nshift\nSSH_ORIGINAL_COMMAND=\"$*\" SSH_CONNECTION=\"127.0.0.1 1 127.0.0.1 22\" exec {} serve --policy {} --client c\n",
                gate().display(),
                policy.display()
            ),
        );
        p
    }

    fn plain_shim(&self) -> PathBuf {
        let p = self.root.join("bin/plain-shim");
        write_exec(&p, "#!/bin/sh\nshift\nexec \"$@\"\n");
        p
    }

    /// A module `many` of 10,000 small files (100 directories of 100),
    /// with or without per-file transfer records.
    fn many_policy(&self, name: &str, transfer_log: bool) -> PathBuf {
        let many = self.root.join("srv/many");
        if !many.exists() {
            for d in 0..100 {
                let dir = many.join(format!("d{d:03}"));
                std::fs::create_dir_all(&dir).expect("mkdir");
                set_mode(&dir, 0o755);
                for f in 0..100 {
                    std::fs::write(
                        dir.join(format!("f{f:03}.txt")),
                        [b'a' + (f % 26) as u8; 100],
                    )
                    .expect("w");
                }
            }
            set_mode(&many, 0o755);
        }
        let text = format!(
            "[gate]\naudit_log = \"{root}/log/audit.jsonl\"\nlock_dir = \"{root}/run\"\n\n\
             [modules.many]\npath = \"{root}/srv/many\"\ntransfer_log = {transfer_log}\n\n\
             [clients.c]\nmodules = [\"many\"]\n",
            root = self.root.display()
        );
        let path = self.root.join(name);
        std::fs::write(&path, text).expect("write policy");
        set_mode(&path, 0o644);
        path
    }

    fn pull(&self, shim: &Path, src: &str) -> Duration {
        self.pull_timed(shim, src).0
    }

    /// A pull's wall time, and the CPU time (user and system) of every
    /// process in it: the client, the shim, the gate (its reader thread
    /// included) and the server's rsync, each waited for by its parent.
    fn pull_timed(&self, shim: &Path, src: &str) -> (Duration, Duration) {
        let before = children_cpu();
        let wall = self.pull_once(shim, src);
        (wall, children_cpu().saturating_sub(before))
    }

    fn pull_once(&self, shim: &Path, src: &str) -> Duration {
        let dst = self.root.join("client/dst");
        let _ = std::fs::remove_dir_all(&dst);
        let t = Instant::now();
        let st = Command::new("/usr/bin/rsync")
            .arg("-e")
            .arg(shim)
            .args(["-a", src])
            .arg(format!("{}/", dst.display()))
            .stdin(Stdio::null())
            .status()
            .expect("rsync");
        let d = t.elapsed();
        assert!(st.success(), "pull failed");
        d
    }
}

fn index_of(policy: &Path) -> PathBuf {
    let mut s = policy.as_os_str().to_owned();
    s.push(".index");
    PathBuf::from(s)
}

fn compile(policy: &Path) -> Duration {
    let t = Instant::now();
    let out = Command::new(gate())
        .args(["check", "--account", "root", "--compile", "--policy"])
        .arg(policy)
        .output()
        .expect("check --compile");
    let d = t.elapsed();
    assert!(
        out.status.success(),
        "check --compile: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    d
}

fn serve_once(policy: &Path) -> Duration {
    let t = Instant::now();
    let st = Command::new(gate())
        .args(["serve", "--policy"])
        .arg(policy)
        .args(["--client", "c"])
        .env_clear()
        .env(
            "SSH_ORIGINAL_COMMAND",
            "rsync --server --sender -re.iLsfxCIvu . www/",
        )
        .env("SSH_CONNECTION", "127.0.0.1 1 127.0.0.1 22")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("gate");
    let d = t.elapsed();
    assert!(st.success(), "gate run failed");
    d
}

fn bare_exec(program: &Path) -> Duration {
    let t = Instant::now();
    let st = Command::new(program)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("exec");
    let d = t.elapsed();
    assert!(st.success());
    d
}

/// A static C `true`, if there is a C compiler with a static libc.
fn static_true(dir: &Path) -> Option<PathBuf> {
    let src = dir.join("true.c");
    std::fs::write(&src, "int main(void) { return 0; }\n").ok()?;
    let bin = dir.join("true-static");
    let ok = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(bin)
}

/// The gate's VmHWM (KiB) before it runs its program, at policy `p`.
fn peak_rss(b: &Bench, p: &Path) -> u64 {
    let report = b.root.join("client/vmhwm");
    let _ = std::fs::remove_file(&report);
    serve_once(p);
    std::fs::read_to_string(&report)
        .unwrap_or_default()
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn for_sshd(policy: &Path, fp: &str) -> Duration {
    let t = Instant::now();
    let out = Command::new(gate())
        .args(["authorized-keys", "--policy"])
        .arg(policy)
        .args(["--for-sshd", "root", fp])
        .stdin(Stdio::null())
        .output()
        .expect("for-sshd");
    let d = t.elapsed();
    assert!(
        out.status.success() && !out.stdout.is_empty(),
        "for-sshd found nothing: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    d
}

// ---------------------------------------------------------------------------
// A real sshd (as tests/gate/sshd.rs starts one)
// ---------------------------------------------------------------------------

struct Sshd {
    child: Child,
    port: u16,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn banner(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 8];
    s.read_exact(&mut buf).is_ok() && &buf == b"SSH-2.0-"
}

fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("ssh-keygen");
    assert!(st.success());
}

fn start_sshd(dir: &Path, name: &str, extra: &str) -> Option<Sshd> {
    let _ = std::fs::create_dir("/run/sshd");
    for _ in 0..5 {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let cfg = dir.join(format!("{name}.conf"));
        std::fs::write(
            &cfg,
            format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {}\nPidFile {}/{name}.pid\n\
                 PermitRootLogin forced-commands-only\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nLogLevel ERROR\n{extra}",
                dir.join("host").display(),
                dir.display()
            ),
        )
        .ok()?;
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let mut s = Sshd { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = s.child.try_wait() {
                break;
            }
            if banner(port) {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    None
}

fn login(port: u16, key: &Path) -> Duration {
    let t = Instant::now();
    let out = Command::new("ssh")
        .args(["-p", &port.to_string(), "-i"])
        .arg(key)
        .args([
            "-F",
            "/dev/null",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "LogLevel=ERROR",
            "root@127.0.0.1",
            "true",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("ssh");
    let d = t.elapsed();
    assert!(
        out.status.success(),
        "login failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    d
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{nproc} CPUs ({cpu}), Linux {kernel}")
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    // Only figure 5 (a few minutes instead of the whole run).
    let only_transfer_log = std::env::args().any(|a| a == "transfer-log");
    let pulls = if quick { 5 } else { 20 };
    let runs = if quick { 30 } else { 200 };
    if !Path::new("/usr/bin/rsync").exists() {
        println!("rsync is not installed; nothing to measure");
        return;
    }
    let b = Bench::new();
    let mut table: Vec<(String, String)> = Vec::new();
    let mut row = |what: &str, value: String| {
        println!("  {what:<58} {value}");
        table.push((what.to_string(), value));
    };
    // Figure 5's rounds: `-- rounds=N` for a tighter figure (each round
    // is seven pulls of about 0.7 s).
    let many_runs = std::env::args()
        .find_map(|a| a.strip_prefix("rounds=").and_then(|n| n.parse().ok()))
        .unwrap_or(if quick { 5 } else { 31 });
    if only_transfer_log {
        transfer_log(&b, many_runs, &mut row);
        return;
    }

    // 1. A small real pull, with and without the gate.
    let policy = b.policy("policy.toml", "/usr/bin/rsync", 3, None);
    let gate_shim = b.gate_shim(&policy);
    let plain = b.plain_shim();
    let abs = format!("h:{}/srv/www/", b.root.display());
    b.pull(&gate_shim, "h:www/"); // warm caches (and the rsync capability cache)
    b.pull(&plain, &abs);
    let mut with_gate = Vec::new();
    let mut without = Vec::new();
    for _ in 0..pulls {
        // Interleaved, so drift affects both alike.
        with_gate.push(b.pull(&gate_shim, "h:www/"));
        without.push(b.pull(&plain, &abs));
    }
    let (g, n) = (median(with_gate), median(without));
    println!("small pull (20 files, 20 KiB), median of {pulls}:");
    row(
        "small pull through the gate / no gate",
        format!("{:.2} ms / {:.2} ms ({:.3}x)", ms(g), ms(n), ms(g) / ms(n)),
    );

    // 2. Decision plus exec over the cost of exec'ing a program.
    println!("decision + exec of /bin/true, median:");
    let bin_true = PathBuf::from("/bin/true");
    let base = median((0..runs).map(|_| bare_exec(&bin_true)).collect());
    row("exec /bin/true alone", format!("{:.3} ms", ms(base)));
    let stat = static_true(&b.root.join("bin"));
    let stat_t = stat
        .as_ref()
        .map(|s| median((0..runs).map(|_| bare_exec(s)).collect()));
    row(
        "exec a static C true alone",
        stat_t.map_or("n/a (no static C toolchain)".into(), |t| {
            format!("{:.3} ms", ms(t))
        }),
    );
    let sizes = [3usize, 10_000, 100_000];
    let mut compiled_at = Vec::new();
    for n in sizes {
        let p = b.policy(&format!("policy-{n}.toml"), "/bin/true", n, None);
        let size_kib = std::fs::metadata(&p).map(|m| m.len() / 1024).unwrap_or(0);
        serve_once(&p);
        let toml_runs = match n {
            3 => runs,
            10_000 => runs / 10,
            _ => 5,
        };
        let toml = median((0..toml_runs).map(|_| serve_once(&p)).collect());
        let c = compile(&p);
        serve_once(&p);
        let compiled = median((0..runs).map(|_| serve_once(&p)).collect());
        compiled_at.push(compiled);
        row(
            &format!("gate -> /bin/true, {n} clients+modules, TOML ({size_kib} KiB)"),
            format!("{:.3} ms ({:.2}x /bin/true)", ms(toml), ms(toml) / ms(base)),
        );
        row(
            &format!("gate -> /bin/true, {n} clients+modules, compiled"),
            format!(
                "{:.3} ms ({:.2}x /bin/true; check --compile took {:.0} ms)",
                ms(compiled),
                ms(compiled) / ms(base),
                ms(c)
            ),
        );
    }
    row(
        "compiled: deciding at 100,000 / at 3 (target <= 1.2x)",
        format!("{:.3}x", ms(compiled_at[2]) / ms(compiled_at[0])),
    );
    row(
        "gate's own cost over exec'ing /bin/true, compiled, 3 (target <= 0.5 ms)",
        format!("{:.3} ms", ms(compiled_at[0]) - ms(base)),
    );

    // 3. Peak memory of the gate before exec: the program it runs reads
    // the gate's VmHWM (the gate is its parent and is only waiting by then).
    println!("peak memory before exec:");
    let report = b.root.join("client/vmhwm");
    let probe = b.root.join("bin/mem-probe");
    write_exec(
        &probe,
        &format!(
            "#!/bin/sh\nif [ \"$1\" = --help ]; then exit 0; fi\ngrep VmHWM /proc/$PPID/status > {}\n",
            report.display()
        ),
    );
    for n in sizes {
        let p = b.policy(
            &format!("policy-mem-{n}.toml"),
            &probe.display().to_string(),
            n,
            None,
        );
        let text = std::fs::read_to_string(&p)
            .expect("read")
            .replace("[gate]\n", "[gate]\nsandbox = \"off\"\n");
        std::fs::write(&p, text).expect("write");
        let toml = peak_rss(&b, &p);
        compile(&p);
        let compiled = peak_rss(&b, &p);
        row(
            &format!("peak RSS before exec, {n}: TOML / compiled (target < 8 MiB)"),
            format!("{toml} KiB / {compiled} KiB"),
        );
    }

    // 5. Per-file transfer records.
    transfer_log(&b, many_runs, &mut row);

    // 4. sshd's key lookup.
    println!("key lookup:");
    let root = nix_is_root();
    let have_ssh = ["/usr/sbin/sshd", "/usr/bin/ssh", "/usr/bin/ssh-keygen"]
        .iter()
        .all(|p| Path::new(p).exists());
    let keydir = b.root.join("keys");
    let user_key = keydir.join("user");
    let mut public = fake_key(0);
    let mut fp = String::new();
    if have_ssh {
        keygen(&keydir.join("host"));
        keygen(&user_key);
        public = std::fs::read_to_string(user_key.with_extension("pub"))
            .expect("read .pub")
            .trim()
            .to_string();
        let out = Command::new("ssh-keygen")
            .arg("-lf")
            .arg(user_key.with_extension("pub"))
            .output()
            .expect("ssh-keygen -l");
        fp = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
    }
    if fp.is_empty() {
        row("authorized-keys --for-sshd", "n/a (no ssh-keygen)".into());
        return print_table(&table);
    }
    let small = b.policy("keys-3.toml", "/bin/true", 3, Some(&public));
    let big = b.policy("keys-100000.toml", "/bin/true", 100_000, Some(&public));
    compile(&small);
    compile(&big);
    let ak_small = median((0..runs).map(|_| for_sshd(&small, &fp)).collect());
    let ak_big = median((0..runs).map(|_| for_sshd(&big, &fp)).collect());
    row(
        "authorized-keys --for-sshd, 3 keys / 100,000 keys (compiled)",
        format!(
            "{:.3} ms / {:.3} ms ({:.2}x)",
            ms(ak_small),
            ms(ak_big),
            ms(ak_big) / ms(ak_small)
        ),
    );
    if !root {
        row("sshd login", "n/a (needs root)".into());
        return print_table(&table);
    }
    // The same 100,000 lines authorized-keys prints, the real key last.
    let out = Command::new(gate())
        .args(["authorized-keys", "--policy"])
        .arg(&big)
        .output()
        .expect("authorized-keys");
    let ak = keydir.join("authorized_keys");
    std::fs::write(&ak, &out.stdout).expect("write authorized_keys");
    let lines = out
        .stdout
        .split(|&c| c == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    let file_sshd = start_sshd(
        &keydir,
        "file",
        &format!("AuthorizedKeysFile {}\n", ak.display()),
    );
    // sshd runs an AuthorizedKeysCommand only from a path that is root's
    // and writable by root alone all the way up (no sticky /tmp): a copy
    // in a directory of its own under /run.
    let installed = tempfile::Builder::new()
        .prefix("rsync-gate-bench-")
        .tempdir_in("/run")
        .expect("a directory under /run");
    set_mode(installed.path(), 0o755);
    let command = installed.path().join("rsync-gate");
    std::fs::copy(gate(), &command).expect("copy the gate");
    set_mode(&command, 0o755);
    let cmd_sshd = start_sshd(
        &keydir,
        "cmd",
        &format!(
            "AuthorizedKeysFile none\nAuthorizedKeysCommand {} authorized-keys --policy {} --for-sshd %u %f\nAuthorizedKeysCommandUser root\n",
            command.display(),
            big.display()
        ),
    );
    let (Some(file_sshd), Some(cmd_sshd)) = (file_sshd, cmd_sshd) else {
        row("sshd login", "n/a (sshd did not start)".into());
        return print_table(&table);
    };
    login(file_sshd.port, &user_key);
    login(cmd_sshd.port, &user_key);
    let logins = if quick { 5 } else { 15 };
    let (mut f, mut c) = (Vec::new(), Vec::new());
    for _ in 0..logins {
        f.push(login(file_sshd.port, &user_key));
        c.push(login(cmd_sshd.port, &user_key));
    }
    let (f, c) = (median(f), median(c));
    row(
        &format!("sshd login: {lines}-line authorized_keys / gate as AuthorizedKeysCommand"),
        format!("{:.1} ms / {:.1} ms ({:.2}x)", ms(f), ms(c), ms(c) / ms(f)),
    );
    print_table(&table);
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        .unwrap_or(false)
}

fn print_table(table: &[(String, String)]) {
    println!("\nMachine: {}\n", machine());
    println!("| measurement | result |");
    println!("|---|---|");
    for (what, value) in table {
        println!("| {what} | {value} |");
    }
}

/// Figure 5: a pull of 10,000 small files through the gate with and without
/// `transfer_log`, and the same pull with no gate, with and without rsync's
/// own `--log-file` in the gate's format (to a named pipe a reader drains,
/// and to a file), and rsync's daemon over the channel (`host::`, the
/// module as the gate writes it for root, without its hooks) with and
/// without `transfer logging` to a file: what rsync's logging costs by
/// itself, in each request form, which the gate cannot avoid. Run in
/// memory (tmpfs) where there is one: a disk's noise would swamp the
/// difference.
fn transfer_log(b: &Bench, runs: usize, row: &mut impl FnMut(&str, String)) {
    let shm = Path::new("/dev/shm");
    let tmp;
    let b = if shm.is_dir() {
        tmp = Bench::new_in(Some(shm));
        &tmp
    } else {
        b
    };
    let off = b.gate_shim(&b.many_policy("policy-many-off.toml", false));
    let on = b.gate_shim(&b.many_policy("policy-many-on.toml", true));
    let plain = b.plain_shim();
    let logged = b.root.join("bin/logged-shim");
    write_exec(
        &logged,
        &format!(
            "#!/bin/sh\nshift\nr=$1\nshift\nf={}/run/floor.$$\nmkfifo -m 600 \"$f\"\n\
             cat \"$f\" >/dev/null &\n\
             exec \"$r\" \"--log-file=$f\" \"--log-file-format=@log-start@ %o %l %b %f @log-end@\" \"$@\"\n",
            b.root.display()
        ),
    );
    let to_file = b.root.join("bin/file-logged-shim");
    write_exec(
        &to_file,
        &format!(
            "#!/bin/sh\nshift\nr=$1\nshift\n\
             exec \"$r\" \"--log-file={}/run/floor.$$\" \"--log-file-format=@log-start@ %o %l %b %f @log-end@\" \"$@\"\n",
            b.root.display()
        ),
    );
    std::fs::create_dir_all(b.root.join("run")).expect("mkdir run");
    // rsync's daemon with no gate: the module as the gate generates it for
    // root (chroot, numeric ids, the SSH account's ids), without the
    // hooks, the daemon's log to /dev/null, and with `transfer logging` to
    // a file in the gate's format (a file made again each round).
    let daemon_conf = |logged: bool| {
        let conf = b.root.join(if logged {
            "run/d-on.conf"
        } else {
            "run/d-off.conf"
        });
        let mut text = format!(
            "reverse lookup = no\nforward lookup = no\n\n[many]\npath = {}\nread only = yes\n\
             write only = no\nlist = no\nuse chroot = yes\nnumeric ids = yes\n\
             munge symlinks = no\nuid = 0\ngid = 0\n",
            b.root.join("srv/many").display()
        );
        if logged {
            text.push_str(&format!(
                "transfer logging = yes\nlog file = {}/run/floor.daemon.log\n\
                 log format = @log-start@ %o %l %b %m %f @log-end@\n",
                b.root.display()
            ));
        }
        std::fs::write(&conf, text).expect("write daemon config");
        let shim = b.root.join(if logged {
            "bin/daemon-on-shim"
        } else {
            "bin/daemon-off-shim"
        });
        // The client runs `SHIM h rsync --server --daemon .`.
        write_exec(
            &shim,
            &format!(
                "#!/bin/sh\nshift 2\nexec /usr/bin/rsync --config={} --log-file=/dev/null \"$@\"\n",
                conf.display()
            ),
        );
        shim
    };
    let (daemon_off, daemon_on) = (daemon_conf(false), daemon_conf(true));
    let abs = format!("h:{}/srv/many/", b.root.display());
    let variants: [(&Path, &str); 9] = [
        (&off, "h:many/"),
        (&on, "h:many/"),
        (&plain, &abs),
        (&logged, &abs),
        (&off, "h::many/"),
        (&on, "h::many/"),
        (&to_file, &abs),
        (&daemon_off, "h::many/"),
        (&daemon_on, "h::many/"),
    ];
    let mut times: [Vec<Duration>; 9] = Default::default();
    let mut cpu: [Vec<Duration>; 9] = Default::default();
    for (shim, src) in variants {
        b.pull(shim, src); // warm caches
    }
    for i in 0..runs {
        // Interleaved, each first in turn, so drift affects all alike.
        for k in 0..variants.len() {
            let v = (i + k) % variants.len();
            let (shim, src) = variants[v];
            let (wall, used) = b.pull_timed(shim, src);
            times[v].push(wall);
            cpu[v].push(used);
        }
        for f in std::fs::read_dir(b.root.join("run"))
            .expect("read run")
            .flatten()
        {
            if f.file_name().to_string_lossy().starts_with("floor.") {
                let _ = std::fs::remove_file(f.path());
            }
        }
    }
    // Each round ran every variant once: the median of the rounds' own
    // ratios is less moved by drift over the run than the ratio of the
    // medians.
    //
    // With it, the rounds' ratios between their 20th and 80th
    // percentiles: the spread a single figure hides.
    let paired = |t: &[Vec<Duration>; 9], on: usize, off: usize| {
        let mut r: Vec<f64> = t[on]
            .iter()
            .zip(&t[off])
            .map(|(a, b)| ms(*a) / ms(*b))
            .collect();
        r.sort_by(f64::total_cmp);
        let at = |q: usize| r.get(r.len() * q / 100).copied().unwrap_or_default();
        (at(50), at(20), at(80))
    };
    let pairs = [(1, 0), (5, 4), (3, 2), (6, 2), (8, 7)];
    let ratios = pairs.map(|(on, off)| paired(&times, on, off));
    let cpu_ratios = pairs.map(|(on, off)| paired(&cpu, on, off));
    let cpu_t = cpu.clone().map(median);
    let wall_t = times.map(median);
    let [
        off_t,
        on_t,
        plain_t,
        logged_t,
        d_off_t,
        d_on_t,
        file_t,
        pd_off_t,
        pd_on_t,
    ] = wall_t;
    let names = [
        "gate, transfer_log = false",
        "gate, transfer_log = true",
        "no gate",
        "no gate, rsync --log-file to a pipe",
        "gate, host::, transfer_log = false",
        "gate, host::, transfer_log = true",
        "no gate, rsync --log-file to a file",
        "no gate, host::, daemon unlogged",
        "no gate, host::, transfer logging",
    ];
    println!(
        "pull of 10,000 small files ({}), median of {runs}:",
        if shm.is_dir() { "tmpfs" } else { "disk" }
    );
    for (what, t) in names.iter().zip(wall_t) {
        println!("  {what:<36} {:8.1} ms", ms(t));
    }
    println!("CPU time of all its processes (user + system), median of {runs}:");
    for (what, t) in names.iter().zip(cpu_t) {
        println!("  {what:<36} {:8.1} ms", ms(t));
    }
    for (what, (a, b), paired) in [
        (
            "pull of 10,000 small files, transfer_log off / on",
            (off_t, on_t),
            ratios[0],
        ),
        (
            "same pull, host::many/, transfer_log off / on",
            (d_off_t, d_on_t),
            ratios[1],
        ),
        (
            "same pull, no gate: rsync without / with its --log-file (pipe)",
            (plain_t, logged_t),
            ratios[2],
        ),
        (
            "same pull, no gate: rsync without / with its --log-file (file)",
            (plain_t, file_t),
            ratios[3],
        ),
        (
            "same pull, no gate, host::: rsync's daemon without / with transfer logging",
            (pd_off_t, pd_on_t),
            ratios[4],
        ),
    ] {
        let (p50, p20, p80) = paired;
        row(
            what,
            format!(
                "{:.1} / {:.1} ms ({:.3}x; paired {p50:.3}x, 20-80% {p20:.3}-{p80:.3})",
                ms(a),
                ms(b),
                ms(b) / ms(a),
            ),
        );
    }
    for (what, (on, off), (p50, p20, p80)) in [
        ("CPU time, transfer_log off / on", (1, 0), cpu_ratios[0]),
        (
            "CPU time, host::, transfer_log off / on",
            (5, 4),
            cpu_ratios[1],
        ),
        (
            "CPU time, no gate, --log-file (pipe)",
            (3, 2),
            cpu_ratios[2],
        ),
        (
            "CPU time, no gate, --log-file (file)",
            (6, 2),
            cpu_ratios[3],
        ),
        (
            "CPU time, no gate, host::, transfer logging",
            (8, 7),
            cpu_ratios[4],
        ),
    ] {
        row(
            what,
            format!(
                "{:.1} / {:.1} ms (paired {p50:.3}x, 20-80% {p20:.3}-{p80:.3})",
                ms(cpu_t[off]),
                ms(cpu_t[on]),
            ),
        );
    }
}
