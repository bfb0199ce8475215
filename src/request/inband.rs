//! Daemon in-band requests: what a `host::module` client sends after the
//! `@RSYNCD:` greeting, as rsync hands it to the pre-xfer hook
//! (`RSYNC_ARG0..N`, `RSYNC_MODULE_NAME`). rsync has already taken the
//! module name off the paths, so they are relative to the module.
//!
//! The words go through the same option parser as checked mode
//! ([`super::parse_server_args`]): the same table, the same values, the same
//! rule that nothing after the `.` may look like an option.

use super::split::Word;
use super::{ParseError, ServerArgs, options, parse_server_args};

/// One in-band request of a daemon session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InBand {
    /// The module the client asked for.
    pub module: String,
    /// Its arguments; paths are spelled `MODULE/path` (as a checked-mode
    /// request names them), option values as the client sent them.
    pub args: ServerArgs,
}

/// Parse the daemon's argument list: `argv[0]`, `--server`, `[--sender]`,
/// options, `.`, module-relative paths.
pub fn parse(module: &str, argv: &[Vec<u8>]) -> Result<InBand, ParseError> {
    let mut words = argv.iter().skip(1);
    if words.next().map(Vec::as_slice) != Some(b"--server") {
        return Err(ParseError::NoServer);
    }
    let rest: Vec<&Vec<u8>> = words.collect();
    let (sender, rest) = match rest.split_first() {
        Some((first, r)) if first.as_slice() == b"--sender" => (true, r),
        _ => (false, &rest[..]),
    };
    let words: Vec<Word> = rest.iter().map(|a| Word::plain(a.to_vec())).collect();
    let mut args = parse_server_args(sender, &words)?;
    // In daemon mode -s is rsync's own business: the arguments already
    // arrived in-protocol and are all here.
    args.opts.retain(|o| o.spec.rule != options::Rule::Secluded);
    args.secluded = false;
    args.paths = args
        .paths
        .iter()
        .map(|p| module_path(module, &p.bytes))
        .collect();
    Ok(InBand {
        module: module.to_string(),
        args,
    })
}

/// `path` below the module, spelled `MODULE/path`; the daemon expands
/// wildcards itself, so a path with one is a pattern.
fn module_path(module: &str, path: &[u8]) -> Word {
    let mut p = module.as_bytes().to_vec();
    p.push(b'/');
    let start = path.iter().take_while(|&&c| c == b'/').count();
    let rest = path.get(start..).unwrap_or_default();
    if rest != b"." {
        p.extend_from_slice(rest);
    }
    let pattern = p.iter().any(|c| matches!(c, b'*' | b'?' | b'[' | b'\\'));
    Word {
        glob: pattern.then(|| p.clone()),
        bytes: p,
        tilde: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::OptValue;

    fn argv(words: &[&str]) -> Vec<Vec<u8>> {
        words.iter().map(|w| w.as_bytes().to_vec()).collect()
    }

    #[test]
    fn paths_become_module_paths() {
        let r = parse(
            "backup",
            &argv(&[
                "rsyncd",
                "--server",
                "-slogDtpre.iLsfxCIvu",
                "--link-dest",
                "/prev",
                ".",
                "cur/",
            ]),
        )
        .unwrap();
        assert_eq!(r.module, "backup");
        assert!(!r.args.sender);
        assert_eq!(r.args.paths[0].bytes, b"backup/cur/");
        assert!(
            r.args
                .opts
                .iter()
                .all(|o| o.spec.rule != options::Rule::Secluded)
        );
        let ld = r
            .args
            .opts
            .iter()
            .find(|o| o.spec.long == "link-dest")
            .unwrap();
        assert_eq!(
            ld.value,
            Some(OptValue::Path(Word::plain(b"/prev".to_vec())))
        );
        let r = parse(
            "www",
            &argv(&[
                "rsyncd", "--server", "--sender", "-r", ".", "a*.txt", "", "/", ".",
            ]),
        )
        .unwrap();
        assert!(r.args.sender);
        assert_eq!(r.args.paths[0].glob.as_deref(), Some(&b"www/a*.txt"[..]));
        for p in &r.args.paths[1..] {
            assert_eq!(p.bytes, b"www/");
        }
    }

    #[test]
    fn options_after_the_dot_are_refused() {
        for tail in [
            &["--files-from=/etc/passwd"][..],
            &["-D"],
            &["x", "--delete"],
            &["--", "x"],
        ] {
            let mut words = vec!["rsyncd", "--server", "-r", "."];
            words.extend_from_slice(tail);
            let r = parse("www", &argv(&words));
            if tail.first() == Some(&"--") {
                // After "--" a dash word is a path; here "x" simply is one.
                assert!(r.is_ok(), "{tail:?}: {r:?}");
            } else {
                assert!(
                    matches!(r, Err(ParseError::OptionAfterDot(_))),
                    "{tail:?}: {r:?}"
                );
            }
        }
        let r = parse("www", &argv(&["rsyncd", "--server", "-r", ".", "--", "-x"])).unwrap();
        assert_eq!(r.args.paths[0].bytes, b"www/-x");
    }

    #[test]
    fn aliases_are_the_table_rows() {
        let r = parse(
            "www",
            &argv(&[
                "rsyncd",
                "--server",
                "--sender",
                "-rz",
                "--zt=2",
                "--zc=zstd",
                "--zl=3",
                ".",
                "x",
            ]),
        )
        .unwrap();
        let longs: Vec<&str> = r.args.opts.iter().map(|o| o.spec.long).collect();
        assert!(longs.contains(&"compress-threads"), "{longs:?}");
        assert!(longs.contains(&"compress-choice"), "{longs:?}");
        assert!(longs.contains(&"compress-level"), "{longs:?}");
    }

    #[test]
    fn not_a_server_request() {
        assert_eq!(
            parse("www", &argv(&["rsyncd", "--sender"])),
            Err(ParseError::NoServer)
        );
        assert_eq!(parse("www", &argv(&[])), Err(ParseError::NoServer));
    }
}
