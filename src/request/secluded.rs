//! Reading `-s` (secluded) arguments from stdin.
//!
//! The client sends its arguments NUL-separated, ending with an empty one,
//! and starts the rsync protocol right after. The gate reads one byte at a
//! time so that not a single protocol byte is consumed, with bounds on
//! count, length and time.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::request::split::{MAX_COMMAND_LEN, MAX_WORD_LEN, MAX_WORDS, SplitError, Word};
use crate::request::{Opt, ParseError, ServerArgs, options, parse_server_args};

/// How long a client may take to send its arguments (rsync 3.5's own
/// handshake deadline).
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Read the NUL-separated list up to its empty terminator.
pub fn read_args(fd: impl AsFd, deadline: Duration) -> Result<Vec<Vec<u8>>, String> {
    let fd = fd.as_fd();
    let end = Instant::now() + deadline;
    let mut args = Vec::new();
    let mut cur = Vec::new();
    let mut total = 0usize;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("timed out waiting for the arguments".into());
        }
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("cannot read stdin: {e}")),
        }
        let mut byte = [0u8; 1];
        match nix::unistd::read(fd, &mut byte) {
            Ok(0) => {
                return Err("the client closed the connection before sending its arguments".into());
            }
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => continue,
            Err(e) => return Err(format!("cannot read stdin: {e}")),
        }
        total += 1;
        if total > MAX_COMMAND_LEN {
            return Err(format!("arguments longer than {MAX_COMMAND_LEN} bytes"));
        }
        match byte {
            [0] if cur.is_empty() => return Ok(args),
            [0] => {
                if args.len() >= MAX_WORDS {
                    return Err(format!("more than {MAX_WORDS} arguments"));
                }
                args.push(std::mem::take(&mut cur));
            }
            [b] => {
                if cur.len() >= MAX_WORD_LEN {
                    return Err(format!("an argument is longer than {MAX_WORD_LEN} bytes"));
                }
                cur.push(b);
            }
        }
    }
}

/// Complete a `-s` request with the argument list read from stdin.
///
/// The list is NUL-separated as the client sent it: `argv[0]`, long
/// options (values as separate entries), `.`, then paths. Nothing in it
/// went through a shell; as rsync's own server does in this mode, paths
/// with wildcards or backslashes are glob patterns (backslash escapes).
/// The result is an ordinary request without `-s`: the gate passes the
/// checked arguments to rsync in argv.
pub fn parse_secluded(
    cmdline: &ServerArgs,
    stdin_args: &[Vec<u8>],
) -> Result<ServerArgs, ParseError> {
    let bad = |why: &str| ParseError::BadValue {
        option: "-s".into(),
        why: why.into(),
    };
    let Some((argv0, rest)) = stdin_args.split_first() else {
        return Err(bad("no arguments were sent"));
    };
    if argv0.is_empty() {
        return Err(bad("empty program name"));
    }
    let mut words = Vec::with_capacity(rest.len());
    let mut after_dot = false;
    for a in rest {
        if a.contains(&b'\n') {
            return Err(ParseError::Split(SplitError::Newline));
        }
        if !after_dot {
            after_dot = a.as_slice() == b".";
            words.push(Word::plain(a.clone()));
            continue;
        }
        let pattern = a.iter().any(|c| matches!(c, b'*' | b'?' | b'[' | b'\\'));
        words.push(Word {
            bytes: a.clone(),
            glob: pattern.then(|| a.clone()),
            tilde: false,
        });
    }
    let tail = parse_server_args(cmdline.sender, &words)?;
    if tail.secluded
        || tail
            .opts
            .iter()
            .any(|o| o.spec.rule == options::Rule::Secluded)
    {
        return Err(bad("-s may only be given on the command line"));
    }
    let mut opts: Vec<Opt> = cmdline
        .opts
        .iter()
        .filter(|o| o.spec.rule != options::Rule::Secluded)
        .cloned()
        .collect();
    opts.extend(tail.opts);
    Ok(ServerArgs {
        sender: cmdline.sender,
        opts,
        paths: tail.paths,
        secluded: false,
        priority: cmdline.priority,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    #[test]
    fn reads_exactly_up_to_the_terminator() {
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(b"rsync\0.\0dir/a b\0\0PROTOCOL").unwrap();
        let args = read_args(&b, DEADLINE).unwrap();
        assert_eq!(
            args,
            [b"rsync".to_vec(), b".".to_vec(), b"dir/a b".to_vec()]
        );
        // The protocol bytes are still there for rsync.
        drop(a);
        let mut rest = Vec::new();
        (&b).read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"PROTOCOL");
    }

    #[test]
    fn refuses_eof_and_oversize() {
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(b"rsync\0.\0").unwrap();
        drop(a);
        assert!(read_args(&b, DEADLINE).unwrap_err().contains("closed"));

        let (mut a, b) = UnixStream::pair().unwrap();
        let long = vec![b'x'; MAX_WORD_LEN + 1];
        std::thread::spawn(move || {
            let _ = a.write_all(&long);
        });
        assert!(read_args(&b, DEADLINE).unwrap_err().contains("longer than"));

        let (mut a, b) = UnixStream::pair().unwrap();
        std::thread::spawn(move || {
            for _ in 0..=MAX_WORDS {
                if a.write_all(b"x\0").is_err() {
                    break;
                }
            }
        });
        assert!(read_args(&b, DEADLINE).unwrap_err().contains("more than"));
    }

    /// The whole list may be [`MAX_COMMAND_LEN`] bytes, terminator
    /// included, and not one more.
    #[test]
    fn the_lists_length_bound_is_exact() {
        let list = |last: usize| {
            let mut l = Vec::new();
            for _ in 0..MAX_COMMAND_LEN / MAX_WORD_LEN - 1 {
                l.extend(vec![b'x'; MAX_WORD_LEN - 1]);
                l.push(0);
            }
            l.extend(vec![b'y'; last]);
            l.extend([0, 0]);
            l
        };
        let exact = list(MAX_WORD_LEN - 2);
        assert_eq!(exact.len(), MAX_COMMAND_LEN);
        for (bytes, ok) in [(exact, true), (list(MAX_WORD_LEN - 1), false)] {
            let (mut a, b) = UnixStream::pair().unwrap();
            std::thread::spawn(move || {
                let _ = a.write_all(&bytes);
            });
            match read_args(&b, DEADLINE) {
                Ok(args) => {
                    assert!(ok);
                    assert_eq!(args.len(), MAX_COMMAND_LEN / MAX_WORD_LEN);
                }
                Err(e) => {
                    assert!(!ok, "{e}");
                    assert_eq!(e, format!("arguments longer than {MAX_COMMAND_LEN} bytes"));
                }
            }
        }
    }

    /// After the `.`, paths with wildcards or backslashes are patterns, as
    /// rsync's server reads them in this mode; before it, options are
    /// plain words whatever they hold.
    #[test]
    fn patterns_only_after_the_dot() {
        let cmdline = match crate::request::parse_command(b"rsync --server --sender -sre.iLsfxCIvu")
        {
            Ok(crate::request::Request::Server(a)) => a,
            other => panic!("{other:?}"),
        };
        let args: Vec<Vec<u8>> = [
            "rsync",
            "--exclude=*.o",
            "--temp-dir",
            "tmp*",
            ".",
            "www/*.txt",
            "www/a\\b",
            "www/plain",
        ]
        .iter()
        .map(|a| a.as_bytes().to_vec())
        .collect();
        let parsed = parse_secluded(&cmdline, &args).unwrap();
        let globs: Vec<bool> = parsed.paths.iter().map(|w| w.glob.is_some()).collect();
        assert_eq!(globs, [true, true, false]);
        let temp = parsed
            .opts
            .iter()
            .find(|o| o.spec.long == "temp-dir")
            .expect("the temp-dir option");
        match &temp.value {
            Some(crate::request::OptValue::Path(w)) => {
                assert_eq!(
                    (w.bytes.as_slice(), w.glob.as_deref()),
                    (&b"tmp*"[..], None)
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn gives_up_at_the_deadline() {
        let (_a, b) = UnixStream::pair().unwrap();
        assert!(
            read_args(&b, Duration::from_millis(100))
                .unwrap_err()
                .contains("timed out")
        );
    }
}
