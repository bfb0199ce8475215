//! Per-connection cost of the gate. A benchmark, not a test: it prints
//! figures and asserts nothing.
//!
//!     cargo bench --bench connection            # all figures
//!     cargo bench --bench connection -- quick   # fewer rounds
//!
//! Figures:
//! 1. a small real pull through the gate versus the same pull with no gate
//!    (rsync -e pointing at a shim that runs the gate, or runs rsync's server
//!    directly), median wall time of N runs each;
//! 2. the gate's own cost (decision plus exec) over the cost of exec'ing a
//!    program: `rsync-gate serve` running /bin/true as "rsync", minus running
//!    /bin/true directly; with a 3-module and a 10,000-module policy;
//! 3. the gate's peak resident memory before exec (VmHWM of the gate, read
//!    by the program it runs);
//! 4. the cost of per-file transfer records: a pull of 10,000 small files
//!    through the gate from a module with `transfer_log = true` versus the
//!    same pull with it off, median wall time of N runs each, interleaved.
#![allow(
    clippy::print_stdout,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn gate() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rsync-gate"))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
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
        for d in ["srv", "srv/www", "log", "run", "bin", "client"] {
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

    fn policy(&self, name: &str, rsync: &str, extra_modules: usize) -> PathBuf {
        let mut text = format!(
            "[gate]\nrsync = \"{rsync}\"\naudit_log = \"{}/log/audit.jsonl\"\nlock_dir = \"{}/run\"\n\n\
             [modules.www]\npath = \"{}/srv/www\"\n\n[clients.c]\nmodules = [\"www\"]\n",
            self.root.display(),
            self.root.display(),
            self.root.display()
        );
        for i in 0..extra_modules {
            text.push_str(&format!(
                "\n[modules.m{i:05}]\npath = \"/srv/mirror/m{i:05}\"\ncomment = \"module {i}\"\n"
            ));
        }
        let path = self.root.join(name);
        std::fs::write(&path, text).expect("write policy");
        set_mode(&path, 0o644);
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

    fn serve_once(&self, policy: &Path) -> Duration {
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
}

fn bare_exec(program: &str) -> Duration {
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

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let pulls = if quick { 5 } else { 20 };
    let runs = if quick { 50 } else { 300 };
    if !Path::new("/usr/bin/rsync").exists() {
        println!("rsync is not installed; nothing to measure");
        return;
    }
    let b = Bench::new();

    // 1. A small real pull, with and without the gate.
    let policy = b.policy("policy.toml", "/usr/bin/rsync", 0);
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
    println!("  through the gate      {:8.2} ms", ms(g));
    println!("  no gate               {:8.2} ms", ms(n));
    println!(
        "  difference            {:8.2} ms ({:+.1}%)",
        ms(g) - ms(n),
        (ms(g) / ms(n) - 1.0) * 100.0
    );

    // 2. Decision plus exec over the cost of exec'ing a program.
    let true_policy = b.policy("policy-true.toml", "/bin/true", 2);
    let big_policy = b.policy("policy-10k.toml", "/bin/true", 10_000);
    b.serve_once(&true_policy);
    b.serve_once(&big_policy);
    let base = median((0..runs).map(|_| bare_exec("/bin/true")).collect());
    let small = median((0..runs).map(|_| b.serve_once(&true_policy)).collect());
    let big = median((0..runs / 3).map(|_| b.serve_once(&big_policy)).collect());
    let size = std::fs::metadata(&big_policy).map(|m| m.len()).unwrap_or(0);
    println!("gate cost over exec'ing a program, median of {runs}:");
    println!("  exec /bin/true                  {:8.3} ms", ms(base));
    println!(
        "  gate -> /bin/true, 3 modules     {:8.3} ms  (gate's own: {:.3} ms)",
        ms(small),
        ms(small) - ms(base)
    );
    println!(
        "  gate -> /bin/true, 10,002 modules {:7.3} ms  (gate's own: {:.3} ms; policy {} KiB)",
        ms(big),
        ms(big) - ms(base),
        size / 1024
    );

    // 3. Peak memory of the gate before exec: the program it runs reads the
    // gate's VmHWM (the gate is its parent and is only waiting by then).
    let report = b.root.join("client/vmhwm");
    let probe = b.root.join("bin/mem-probe");
    write_exec(
        &probe,
        &format!(
            "#!/bin/sh\nif [ \"$1\" = --help ]; then exit 0; fi\ngrep VmHWM /proc/$PPID/status > {}\n",
            report.display()
        ),
    );
    for (label, extra) in [("3 modules", 2usize), ("10,002 modules", 10_000)] {
        let p = b.policy(
            &format!("policy-mem-{extra}.toml"),
            &probe.display().to_string(),
            extra,
        );
        let text = std::fs::read_to_string(&p)
            .expect("read")
            .replace("[gate]\n", "[gate]\nsandbox = \"off\"\n");
        std::fs::write(&p, text).expect("write");
        b.serve_once(&p);
        let line = std::fs::read_to_string(&report).unwrap_or_default();
        println!(
            "gate peak memory before exec ({label}): {}",
            line.trim().trim_start_matches("VmHWM:").trim()
        );
    }

    // 4. Per-file transfer records: 10,000 files pulled with and without.
    // In memory (tmpfs) where there is one: a disk's noise would swamp the
    // difference.
    let shm = Path::new("/dev/shm");
    let b = if shm.is_dir() {
        Bench::new_in(Some(shm))
    } else {
        b
    };
    let many_runs = if quick { 5 } else { 31 };
    let off = b.gate_shim(&b.many_policy("policy-many-off.toml", false));
    let on = b.gate_shim(&b.many_policy("policy-many-on.toml", true));
    b.pull(&off, "h:many/");
    b.pull(&on, "h:many/");
    let mut with_log = Vec::new();
    let mut without_log = Vec::new();
    for i in 0..many_runs {
        // Interleaved, and each first in turn.
        if i % 2 == 0 {
            with_log.push(b.pull(&on, "h:many/"));
            without_log.push(b.pull(&off, "h:many/"));
        } else {
            without_log.push(b.pull(&off, "h:many/"));
            with_log.push(b.pull(&on, "h:many/"));
        }
    }
    let (on_t, off_t) = (median(with_log), median(without_log));
    println!(
        "pull of 10,000 small files through the gate ({}), median of {many_runs}:",
        if shm.is_dir() { "tmpfs" } else { "disk" }
    );
    println!("  transfer_log = false  {:8.1} ms", ms(off_t));
    println!("  transfer_log = true   {:8.1} ms", ms(on_t));
    println!(
        "  ratio                 {:8.3} ({:+.1}%)",
        ms(on_t) / ms(off_t),
        (ms(on_t) / ms(off_t) - 1.0) * 100.0
    );
}
