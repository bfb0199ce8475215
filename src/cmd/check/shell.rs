//! The account's login shell, run as sshd runs a forced command: `SHELL -c
//! COMMAND` with the environment sshd gives (HOME, USER, LOGNAME, PATH,
//! SHELL, MAIL and the SSH_ variables, so that bash reads `~/.bashrc` as it
//! does under sshd), in the home directory. Anything it prints on stdout
//! goes down the rsync protocol channel; a shell that fails (`nologin`)
//! never starts the gate.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How long the shell may take.
pub const LIMIT: Duration = Duration::from_secs(10);

/// Most bytes of each stream kept.
const KEEP: usize = 4096;

/// The PATH sshd gives (OpenSSH's default `_PATH_STDPATH`, and the one for
/// root with the sbin directories).
const SSHD_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/games";
const SSHD_ROOT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How `SHELL -c true` went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ran {
    /// It could not be started (the error).
    pub not_started: Option<String>,
    /// Its exit status (None: killed by a signal or by the time limit).
    pub status: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
    /// The home directory could not be entered (sshd says so on stderr
    /// and starts the shell in `/`).
    pub no_home: Option<String>,
    pub millis: u64,
}

/// Run `shell -c command` as the current user (the account), as sshd
/// would for `name` with home `home`.
pub fn run(shell: &Path, name: &str, uid: u32, home: &Path, command: &str) -> Ran {
    let started = Instant::now();
    let mut ran = Ran::default();
    let arg0 = shell
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| shell.as_os_str().to_os_string());
    let mut cmd = Command::new(shell);
    cmd.arg0(arg0)
        .arg("-c")
        .arg(command)
        .env_clear()
        .env("USER", name)
        .env("LOGNAME", name)
        .env("HOME", home)
        .env("SHELL", shell)
        .env("PATH", if uid == 0 { SSHD_ROOT_PATH } else { SSHD_PATH })
        .env("MAIL", format!("/var/mail/{name}"))
        .env("SSH_CLIENT", "127.0.0.1 40000 22")
        .env("SSH_CONNECTION", "127.0.0.1 40000 127.0.0.1 22")
        .env("SSH_ORIGINAL_COMMAND", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if std::fs::read_dir(home).is_ok() {
        cmd.current_dir(home);
    } else {
        let e = std::fs::metadata(home)
            .err()
            .map_or_else(|| "Permission denied".to_string(), |e| e.to_string());
        ran.no_home = Some(e);
        cmd.current_dir("/");
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            ran.not_started = Some(e.to_string());
            return ran;
        }
    };
    let deadline = started + LIMIT;
    let (out, err) = collect(child.stdout.take(), child.stderr.take(), deadline);
    ran.stdout = out;
    ran.stderr = err;
    let pgid = i32::try_from(child.id())
        .ok()
        .map(nix::unistd::Pid::from_raw);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(None) | Err(_) => break None,
        }
    };
    // Whatever it left running in its group goes too.
    if let Some(pg) = pgid {
        let _ = nix::sys::signal::killpg(pg, nix::sys::signal::Signal::SIGKILL);
    }
    match status {
        Some(s) => {
            use std::os::unix::process::ExitStatusExt;
            ran.status = s.code();
            ran.signal = s.signal();
        }
        None => {
            ran.timed_out = true;
            let _ = child.wait();
        }
    }
    ran.millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    ran
}

/// Read both pipes until they close or `deadline` passes (one thread:
/// poll), keeping the first [`KEEP`] bytes of each.
fn collect(
    out: Option<std::process::ChildStdout>,
    err: Option<std::process::ChildStderr>,
    deadline: Instant,
) -> (String, String) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let mut streams: [Stream; 2] = [
        (out.map(|o| Box::new(o) as Box<dyn ReadFd>), Vec::new()),
        (err.map(|e| Box::new(e) as Box<dyn ReadFd>), Vec::new()),
    ];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || streams.iter().all(|(s, _)| s.is_none()) {
            break;
        }
        let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
        let ready: Vec<bool> = {
            let mut fds: Vec<PollFd<'_>> = streams
                .iter()
                .filter_map(|(s, _)| s.as_ref())
                .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN))
                .collect();
            match poll(
                &mut fds,
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
            ) {
                Ok(_) => fds
                    .iter()
                    .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                    .collect(),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
        };
        let mut flags = ready.into_iter();
        for (stream, buf) in &mut streams {
            let Some(s) = stream else { continue };
            if !flags.next().unwrap_or(false) {
                continue;
            }
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => *stream = None,
                Ok(n) => {
                    let room = KEEP.saturating_sub(buf.len());
                    buf.extend(chunk.iter().take(n.min(room)));
                }
            }
        }
    }
    let [(_, out), (_, err)] = streams;
    (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

/// A pipe from the child: readable and pollable.
trait ReadFd: Read + std::os::fd::AsFd {}
impl<T: Read + std::os::fd::AsFd> ReadFd for T {}

/// One of the child's pipes (None once it closed) and what came from it.
type Stream = (Option<Box<dyn ReadFd>>, Vec<u8>);

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> (String, u32) {
        let uid = nix::unistd::geteuid();
        let name = nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map_or_else(|| uid.to_string(), |u| u.name);
        (name, uid.as_raw())
    }

    #[test]
    fn a_silent_shell_says_nothing() {
        let (name, uid) = me();
        let r = run(Path::new("/bin/sh"), &name, uid, Path::new("/"), "true");
        assert_eq!(
            (r.status, r.stdout.as_str(), r.stderr.as_str(), r.timed_out),
            (Some(0), "", "", false),
            "{r:?}"
        );
    }

    #[test]
    fn what_the_shell_prints_and_how_it_ends_is_seen() {
        let (name, uid) = me();
        let d = tempfile::tempdir().unwrap();
        let r = run(
            Path::new("/bin/sh"),
            &name,
            uid,
            d.path(),
            "echo \"$USER $LOGNAME $HOME\"; pwd; echo oops >&2; exit 3",
        );
        let home = d.path().display();
        assert_eq!(r.status, Some(3), "{r:?}");
        let real = std::fs::canonicalize(d.path()).unwrap();
        assert_eq!(
            r.stdout,
            format!("{name} {name} {home}\n{}\n", real.display())
        );
        assert_eq!(r.stderr, "oops\n");
        let r = run(Path::new("/nonexistent/sh"), &name, uid, d.path(), "true");
        assert!(r.not_started.is_some(), "{r:?}");
        let r = run(
            Path::new("/bin/sh"),
            &name,
            uid,
            &d.path().join("gone"),
            "true",
        );
        assert!(r.no_home.is_some() && r.status == Some(0), "{r:?}");
    }

    /// A shell that does not end, or leaves a child holding its output
    /// open, is stopped at the limit (here a shorter one).
    #[test]
    fn a_hanging_shell_is_stopped() {
        let started = Instant::now();
        let (_, err) = collect(None, None, started + Duration::from_millis(50));
        assert_eq!(err, "");
        let mut child = Command::new("/bin/sh")
            .args(["-c", "echo before; exec sleep 30"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (out, _) = collect(
            child.stdout.take(),
            child.stderr.take(),
            Instant::now() + Duration::from_millis(300),
        );
        assert_eq!(out, "before\n");
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
