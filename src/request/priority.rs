//! `nice` and `ionice` in front of `rsync`: what a client's
//! `--rsync-path='nice -n 19 rsync'` (or `'ionice -c3 rsync'`) sends.
//!
//! The gate never runs these programs. It reads their options as data
//! (coreutils' `nice`, util-linux's `ionice`), and the exec stage lowers
//! rsync's priority itself before it starts it. Only lowering is
//! possible: a negative `nice` increment and the realtime I/O class are
//! refused; best-effort levels are applied only where they do not raise
//! the I/O priority rsync would have had anyway.

use std::fmt;

use super::ParseError;
use super::split::Word;

/// The default `nice` increment (coreutils: `nice COMMAND` adds 10).
pub const NICE_DEFAULT: i32 = 10;
/// The largest nice value; larger increments end there.
pub const NICE_MAX: i32 = 19;
/// ionice's default best-effort level when `-c 2` comes without `-n`.
pub const IO_DEFAULT_LEVEL: u8 = 4;
/// Best-effort levels are 0 (highest) to 7 (lowest).
pub const IO_LOWEST_LEVEL: u8 = 7;

/// The priority a request asks rsync to run at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Priority {
    /// `nice`: how much to add to the nice value (never negative).
    pub nice: Option<u8>,
    /// `ionice`: the I/O scheduling class.
    pub io: Option<IoPriority>,
}

impl Priority {
    pub fn is_none(&self) -> bool {
        self.nice.is_none() && self.io.is_none()
    }
}

/// An I/O scheduling class a client may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoPriority {
    /// Best-effort at a level (0 highest .. 7 lowest).
    BestEffort(u8),
    /// Only when nothing else wants the disk.
    Idle,
}

impl fmt::Display for IoPriority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IoPriority::BestEffort(l) => write!(f, "best-effort/{l}"),
            IoPriority::Idle => write!(f, "idle"),
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(n) = self.nice {
            parts.push(format!("nice +{n}"));
        }
        if let Some(io) = self.io {
            parts.push(format!("ionice {io}"));
        }
        if parts.is_empty() {
            parts.push("unchanged".into());
        }
        write!(f, "{}", parts.join(", "))
    }
}

fn program_is(w: &Word, name: &[u8]) -> bool {
    if w.glob.is_some() || w.tilde {
        return false;
    }
    let b = &w.bytes[..];
    if b == name {
        return true;
    }
    let mut suffix = b"/".to_vec();
    suffix.extend_from_slice(name);
    b.starts_with(b"/") && b.ends_with(&suffix) && !b.contains(&0)
}

/// Is `w` the `nice` or `ionice` program?
pub fn is_prefix_program(w: &Word) -> bool {
    program_is(w, b"nice") || program_is(w, b"ionice")
}

fn bad(why: impl Into<String>) -> ParseError {
    ParseError::Priority(why.into())
}

fn shown(b: &[u8]) -> String {
    crate::escape::message(b)
}

/// A signed decimal of at most three digits (`19`, `+5`, `-5`).
fn small_int(b: &[u8]) -> Option<i32> {
    let (neg, digits) = match b {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, b),
    };
    if digits.is_empty() || digits.len() > 3 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: i32 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(if neg { -n } else { n })
}

/// The value of an option: the rest of its word (`-n19`, `--adjustment=19`)
/// or the next word (`-n 19`). Returns the value and the words used.
fn value<'w>(inline: Option<&'w [u8]>, next: Option<&'w Word>) -> Option<(&'w [u8], usize)> {
    match inline {
        Some(v) => Some((v, 1)),
        None => next.map(|w| (&w.bytes[..], 2)),
    }
}

/// `nice`'s options, up to the program it runs. Returns the increment and
/// how many words the options took.
fn parse_nice(words: &[Word]) -> Result<(u8, usize), ParseError> {
    let mut inc = NICE_DEFAULT;
    let mut i = 0;
    while let Some(w) = words.get(i) {
        let b = &w.bytes[..];
        if w.glob.is_some() || w.tilde {
            return Err(bad(format!("unexpected word '{}' after nice", shown(b))));
        }
        if b == b"--" {
            i += 1;
            break;
        }
        if !b.starts_with(b"-") || b == b"-" {
            break;
        }
        let (v, used) = if let Some(rest) = b.strip_prefix(b"--adjustment") {
            match rest {
                [] => value(None, words.get(i + 1)),
                [b'=', v @ ..] => value(Some(v), None),
                _ => None,
            }
            .ok_or_else(|| bad(format!("nice option '{}' needs a value", shown(b))))?
        } else if let Some(rest) = b.strip_prefix(b"-n") {
            value((!rest.is_empty()).then_some(rest), words.get(i + 1))
                .ok_or_else(|| bad("nice -n needs a value"))?
        } else if let Some(rest) = b.strip_prefix(b"-").filter(|r| small_int(r).is_some()) {
            // The old form: `nice -19` adds 19, `nice --5` subtracts 5.
            (rest, 1)
        } else {
            return Err(bad(format!("unknown nice option '{}'", shown(b))));
        };
        let n = small_int(v)
            .ok_or_else(|| bad(format!("nice adjustment '{}' is not a number", shown(v))))?;
        if n < 0 {
            return Err(bad(format!(
                "nice {n} would raise the priority; only lowering it is allowed"
            )));
        }
        inc = n;
        i += used;
    }
    Ok((u8::try_from(inc.min(NICE_MAX)).unwrap_or(19), i))
}

/// ionice's class names and numbers.
fn io_class(v: &[u8]) -> Result<u8, ParseError> {
    match v.to_ascii_lowercase().as_slice() {
        b"0" | b"none" => Ok(0),
        b"1" | b"realtime" => Ok(1),
        b"2" | b"best-effort" => Ok(2),
        b"3" | b"idle" => Ok(3),
        _ => Err(bad(format!("unknown ionice class '{}'", shown(v)))),
    }
}

/// `ionice`'s options, up to the program it runs.
fn parse_ionice(words: &[Word]) -> Result<(IoPriority, usize), ParseError> {
    let mut class: Option<u8> = None;
    let mut level: Option<u8> = None;
    let mut i = 0;
    while let Some(w) = words.get(i) {
        let b = &w.bytes[..];
        if w.glob.is_some() || w.tilde {
            return Err(bad(format!("unexpected word '{}' after ionice", shown(b))));
        }
        if b == b"--" {
            i += 1;
            break;
        }
        if !b.starts_with(b"-") || b == b"-" {
            break;
        }
        let long = |name: &[u8]| -> Option<Option<&[u8]>> {
            let rest = b.strip_prefix(name)?;
            match rest {
                [] => Some(None),
                [b'=', v @ ..] => Some(Some(v)),
                _ => None,
            }
        };
        let (is_class, inline) = if let Some(v) = long(b"--class") {
            (true, v)
        } else if let Some(v) = long(b"--classdata") {
            (false, v)
        } else if let Some(rest) = b.strip_prefix(b"-c") {
            (true, (!rest.is_empty()).then_some(rest))
        } else if let Some(rest) = b.strip_prefix(b"-n") {
            (false, (!rest.is_empty()).then_some(rest))
        } else {
            return Err(bad(format!("unknown ionice option '{}'", shown(b))));
        };
        let (v, used) = value(inline, words.get(i + 1))
            .ok_or_else(|| bad(format!("ionice option '{}' needs a value", shown(b))))?;
        if is_class {
            class = Some(io_class(v)?);
        } else {
            let n = small_int(v)
                .and_then(|n| u8::try_from(n).ok())
                .filter(|n| *n <= IO_LOWEST_LEVEL)
                .ok_or_else(|| {
                    bad(format!(
                        "ionice level '{}' is not 0 to {IO_LOWEST_LEVEL}",
                        shown(v)
                    ))
                })?;
            level = Some(n);
        }
        i += used;
    }
    // util-linux: a level without a class is best-effort.
    let io = match class.unwrap_or(2) {
        1 => {
            return Err(bad(
                "ionice class realtime would raise the I/O priority; only best-effort and idle are allowed",
            ));
        }
        2 => IoPriority::BestEffort(level.unwrap_or(IO_DEFAULT_LEVEL)),
        3 => IoPriority::Idle,
        _ => {
            return Err(bad(
                "ionice class none is not a priority; only best-effort and idle are allowed",
            ));
        }
    };
    Ok((io, i))
}

/// Read `nice ...` and `ionice ...` in front of the rsync program word.
/// `words` starts with one of them; returns the priority and the words
/// from the rsync program word on. Each may appear once.
pub fn parse_prefix(words: &[Word]) -> Result<(Priority, &[Word]), ParseError> {
    let mut p = Priority::default();
    let mut rest = words;
    while let Some((program, after)) = rest.split_first() {
        if program_is(program, b"nice") {
            if p.nice.is_some() {
                return Err(bad("nice given twice"));
            }
            let (inc, used) = parse_nice(after)?;
            p.nice = Some(inc);
            rest = after.get(used..).unwrap_or_default();
        } else if program_is(program, b"ionice") {
            if p.io.is_some() {
                return Err(bad("ionice given twice"));
            }
            let (io, used) = parse_ionice(after)?;
            p.io = Some(io);
            rest = after.get(used..).unwrap_or_default();
        } else {
            break;
        }
    }
    Ok((p, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::split::split;

    fn prefix(cmd: &str) -> Result<(Priority, String), ParseError> {
        let words = split(cmd.as_bytes()).unwrap();
        parse_prefix(&words).map(|(p, rest)| {
            (
                p,
                rest.iter().map(Word::lossy).collect::<Vec<_>>().join(" "),
            )
        })
    }

    fn ok(cmd: &str) -> Priority {
        match prefix(cmd) {
            Ok((p, rest)) => {
                assert_eq!(rest, "rsync --server", "{cmd}");
                p
            }
            Err(e) => panic!("{cmd}: {e}"),
        }
    }

    fn nice(n: u8) -> Priority {
        Priority {
            nice: Some(n),
            io: None,
        }
    }

    fn io(io: IoPriority) -> Priority {
        Priority {
            nice: None,
            io: Some(io),
        }
    }

    #[test]
    fn nice_spellings() {
        for (cmd, want) in [
            ("nice rsync --server", nice(10)),
            ("nice -n 19 rsync --server", nice(19)),
            ("nice -n19 rsync --server", nice(19)),
            ("nice -n +5 rsync --server", nice(5)),
            ("nice -19 rsync --server", nice(19)),
            ("nice --adjustment=7 rsync --server", nice(7)),
            ("nice --adjustment 7 rsync --server", nice(7)),
            ("nice -n 0 rsync --server", nice(0)),
            ("nice -n 40 rsync --server", nice(19)),
            ("nice -n 100 rsync --server", nice(19)),
            ("nice -n 5 -n 6 rsync --server", nice(6)),
            ("nice -- rsync --server", nice(10)),
            ("/usr/bin/nice -n 19 rsync --server", nice(19)),
        ] {
            assert_eq!(ok(cmd), want, "{cmd}");
        }
    }

    #[test]
    fn ionice_spellings() {
        for (cmd, want) in [
            ("ionice -c3 rsync --server", io(IoPriority::Idle)),
            ("ionice -c 3 rsync --server", io(IoPriority::Idle)),
            ("ionice -c idle rsync --server", io(IoPriority::Idle)),
            ("ionice --class=idle rsync --server", io(IoPriority::Idle)),
            (
                "ionice -c2 -n7 rsync --server",
                io(IoPriority::BestEffort(7)),
            ),
            (
                "ionice -c 2 -n 0 rsync --server",
                io(IoPriority::BestEffort(0)),
            ),
            ("ionice -c2 rsync --server", io(IoPriority::BestEffort(4))),
            ("ionice -n 6 rsync --server", io(IoPriority::BestEffort(6))),
            (
                "ionice --class best-effort --classdata=5 rsync --server",
                io(IoPriority::BestEffort(5)),
            ),
            ("/usr/bin/ionice -c3 rsync --server", io(IoPriority::Idle)),
            ("ionice -c3 -- rsync --server", io(IoPriority::Idle)),
        ] {
            assert_eq!(ok(cmd), want, "{cmd}");
        }
    }

    #[test]
    fn only_nice_and_ionice_themselves_are_prefixes() {
        let word = |b: &str, glob: bool, tilde: bool| Word::marked(b.as_bytes(), glob, tilde);
        for (w, want) in [
            (word("nice", false, false), true),
            (word("ionice", false, false), true),
            (word("/usr/bin/nice", false, false), true),
            (word("/usr/bin/ionice", false, false), true),
            (word("sudo", false, false), false),
            (word("/usr/bin/nicer", false, false), false),
            (word("bin/nice", false, false), false),
            (word("/usr/*/nice", true, false), false),
            (word("~/bin/nice", false, true), false),
            (word("nice", true, false), false),
            (word("ionice", false, true), false),
        ] {
            assert_eq!(is_prefix_program(&w), want, "{w:?}");
        }
    }

    #[test]
    fn combinations() {
        let both = Priority {
            nice: Some(19),
            io: Some(IoPriority::Idle),
        };
        assert_eq!(ok("nice -n 19 ionice -c3 rsync --server"), both);
        assert_eq!(ok("ionice -c3 nice -n 19 rsync --server"), both);
        assert_eq!(
            ok("nice -n 19 ionice -c3 rsync --server").to_string(),
            "nice +19, ionice idle"
        );
    }

    #[test]
    fn raising_and_nonsense_are_refused() {
        for (cmd, why) in [
            ("nice -n -5 rsync --server", "would raise the priority"),
            ("nice --5 rsync --server", "would raise the priority"),
            ("nice --adjustment=-1 rsync --server", "would raise"),
            ("ionice -c1 rsync --server", "realtime would raise"),
            ("ionice -c realtime -n 0 rsync --server", "realtime"),
            ("ionice -c0 rsync --server", "class none"),
            ("ionice -c2 -n8 rsync --server", "not 0 to 7"),
            ("ionice -c2 -n -1 rsync --server", "not 0 to 7"),
            ("ionice -c4 rsync --server", "unknown ionice class"),
            ("ionice -p 1 rsync --server", "unknown ionice option"),
            ("ionice -t -c3 rsync --server", "unknown ionice option"),
            ("nice -x rsync --server", "unknown nice option"),
            ("nice -n rsync --server", "not a number"),
            ("nice -n 1000 rsync --server", "not a number"),
            ("nice -n", "needs a value"),
            ("nice nice rsync --server", "nice given twice"),
            ("ionice -c3 ionice -c3 rsync --server", "ionice given twice"),
            ("nice * rsync --server", "unexpected word '*' after nice"),
            ("nice ~x rsync --server", "unexpected word '~x' after nice"),
            (
                "ionice * rsync --server",
                "unexpected word '*' after ionice",
            ),
            (
                "ionice ~x rsync --server",
                "unexpected word '~x' after ionice",
            ),
            ("nice -x rsync --server", "unknown nice option '-x'"),
            ("ionice -q rsync --server", "unknown ionice option '-q'"),
        ] {
            match prefix(cmd) {
                Err(ParseError::Priority(w)) => assert!(w.contains(why), "{cmd}: {w}"),
                other => panic!("{cmd}: {other:?}"),
            }
        }
    }
}
