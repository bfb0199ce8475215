//! Parsing the client's request: `SSH_ORIGINAL_COMMAND` (or the `-s`
//! argument list) into a typed [`Request`]. Pure: no filesystem, no policy.

pub mod conn;
pub mod inband;
pub mod options;
pub mod priority;
pub mod secluded;
pub mod split;

use std::fmt;

use options::{Meaning, Spec, Takes, Value};
pub use priority::Priority;
pub use split::{SplitError, Word};

/// What the client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The literal `true`: a connectivity probe.
    Probe,
    /// `rsync --server [--sender] OPTIONS . PATHS`.
    Server(ServerArgs),
    /// `rsync --server --daemon .` (with the priority of a `nice` or
    /// `ionice` prefix).
    Daemon { priority: Priority },
    /// One in-band request of a daemon session (the pre-xfer hook's).
    InBand(inband::InBand),
    /// Words that are not an rsync invocation (only a trigger client may
    /// send them: they are the trigger's words).
    Other { words: Vec<Word> },
    /// No command at all (an interactive login, or a trigger with no
    /// words).
    NoCommand,
}

/// A checked-mode request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerArgs {
    /// `--sender`: the server sends (the client pulls).
    pub sender: bool,
    /// Options in the order the client sent them.
    pub opts: Vec<Opt>,
    /// Positional paths after the `.`.
    pub paths: Vec<Word>,
    /// `-s`: the `.` and the paths (and long options) are on stdin and
    /// have not been read yet.
    pub secluded: bool,
    /// A `nice`/`ionice` prefix (`--rsync-path='nice -n 19 rsync'`).
    pub priority: Priority,
}

/// One option use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opt {
    pub spec: &'static Spec,
    pub value: Option<OptValue>,
}

/// A validated option value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptValue {
    /// Text (already checked against the row's charset and length), or a
    /// number or size in the client's spelling (already range-checked).
    Text(String),
    /// A server path, checked against the module later.
    Path(Word),
}

impl ServerArgs {
    /// Is `-R` in effect (last of `-R`/`--no-relative` wins)?
    pub fn relative(&self) -> bool {
        let mut rel = false;
        for o in &self.opts {
            match o.spec.meaning {
                Meaning::Relative => rel = true,
                Meaning::NoRelative => rel = false,
                _ => {}
            }
        }
        rel
    }

    pub fn has(&self, meaning: Meaning) -> bool {
        self.opts.iter().any(|o| o.spec.meaning == meaning)
    }

    /// May the receiver create device nodes (`-D`, `--devices`)?
    pub fn creates_devices(&self) -> bool {
        self.has(Meaning::CreatesNodes) || self.has(Meaning::CreatesDevices)
    }

    /// May the receiver create FIFOs and sockets (`-D`, `--specials`)?
    pub fn creates_specials(&self) -> bool {
        self.has(Meaning::CreatesNodes) || self.has(Meaning::CreatesSpecials)
    }
}

/// Why a request could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    Split(SplitError),

    /// `--server` is not the second word.
    NoServer,
    /// `--sender` somewhere other than right after `--server`.
    MisplacedSender,
    /// `--daemon` request not exactly `rsync --server --daemon .`.
    BadDaemon,
    UnknownOption(String),
    /// A value on a flag (`--delete=x`).
    UnexpectedValue(String),
    MissingValue(String),
    BadValue {
        option: String,
        why: String,
    },
    /// No `.` separating options from paths.
    NoDot,
    /// A word after the `.` that rsync would read as an option.
    OptionAfterDot(String),
    /// A `nice`/`ionice` prefix the gate cannot honour: malformed, or it
    /// would raise the priority.
    Priority(String),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Split(e) => write!(f, "unparsable command: {e}"),

            ParseError::NoServer => write!(
                f,
                "not an rsync server invocation (expected 'rsync --server')"
            ),
            ParseError::MisplacedSender => write!(f, "--sender must directly follow --server"),
            ParseError::BadDaemon => write!(
                f,
                "a daemon request must be exactly 'rsync --server --daemon .'"
            ),
            ParseError::UnknownOption(o) => write!(f, "unknown option {o}"),
            ParseError::UnexpectedValue(o) => write!(f, "option {o} takes no value"),
            ParseError::MissingValue(o) => write!(f, "option {o} needs a value"),
            ParseError::BadValue { option, why } => write!(f, "bad value for {option}: {why}"),
            ParseError::NoDot => write!(
                f,
                "malformed rsync server command (no '.' before the paths)"
            ),
            ParseError::OptionAfterDot(w) => write!(
                f,
                "'{w}' after the '.' would be read as an option; options go before the '.' (a path starting with '-' is written ./-name)"
            ),
            ParseError::Priority(why) => write!(f, "priority prefix refused: {why}"),
        }
    }
}

impl std::error::Error for ParseError {}

impl From<SplitError> for ParseError {
    fn from(e: SplitError) -> Self {
        ParseError::Split(e)
    }
}

/// Parse `SSH_ORIGINAL_COMMAND`. A command of blanks is no words (which
/// only a trigger client may send).
pub fn parse_command(command: &[u8]) -> Result<Request, ParseError> {
    match split::split(command) {
        Ok(words) => parse_words(&words),
        Err(SplitError::Empty) => Ok(Request::Other { words: Vec::new() }),
        Err(e) => Err(e.into()),
    }
}

fn is_rsync_program(w: &Word) -> bool {
    if w.glob.is_some() || w.tilde {
        return false;
    }
    let b = &w.bytes[..];
    b == b"rsync" || (b.starts_with(b"/") && b.ends_with(b"/rsync") && !b.contains(&0))
}

/// Parse split words.
///
/// A client's `--rsync-path` puts words in front of `--server`: a `nice`
/// or `ionice` prefix before the program (read by [`priority`]; the gate
/// applies it itself), and options after it (`rsync --fake-super --server
/// ...`), which are read with the same table and checks as the options
/// after `--server`.
pub fn parse_words(words: &[Word]) -> Result<Request, ParseError> {
    let Some((first, rest)) = words.split_first() else {
        return Ok(Request::Other { words: Vec::new() });
    };
    if first.bytes == b"true" && first.glob.is_none() && rest.is_empty() {
        return Ok(Request::Probe);
    }
    let (priority, words) =
        if priority::is_prefix_program(first) && rest.iter().any(is_rsync_program) {
            priority::parse_prefix(words)?
        } else {
            (Priority::default(), words)
        };
    let Some((program, rest)) = words.split_first() else {
        return Err(ParseError::NoServer);
    };
    if !is_rsync_program(program) {
        if priority.is_none() {
            return Ok(Request::Other {
                words: words.to_vec(),
            });
        }
        return Err(ParseError::Priority(format!(
            "'{}' where rsync was expected",
            crate::escape::message(&program.bytes)
        )));
    }
    let (pre_opts, rest) = parse_before_server(rest)?;
    if rest.iter().any(|w| w.bytes == b"--daemon") {
        let exact = pre_opts.is_empty()
            && rest.len() == 2
            && rest.first().is_some_and(|w| w.bytes == b"--daemon")
            && rest.get(1).is_some_and(|w| w.bytes == b".");
        return if exact {
            Ok(Request::Daemon { priority })
        } else {
            Err(ParseError::BadDaemon)
        };
    }
    let (sender, rest) = match rest.split_first() {
        Some((w, r)) if w.bytes == b"--sender" => (true, r),
        _ => (false, rest),
    };
    let mut args = parse_server_args(sender, rest)?;
    if !pre_opts.is_empty() {
        let post = std::mem::take(&mut args.opts);
        args.opts = pre_opts;
        args.opts.extend(post);
    }
    args.priority = priority;
    Ok(Request::Server(args))
}

/// The options between the program and `--server` (from `--rsync-path`),
/// and the words after `--server`. rsync reads options wherever they are;
/// the gate reads these with the same table and checks as the others. Here
/// `-e` is what rsync makes of it before `--server`, `--rsh` (refused),
/// not a capability string.
fn parse_before_server(words: &[Word]) -> Result<(Vec<Opt>, &[Word]), ParseError> {
    let mut opts = Vec::new();
    let mut i = 0;
    loop {
        let Some(w) = words.get(i) else {
            return Err(ParseError::NoServer);
        };
        i += 1;
        let b = &w.bytes[..];
        if w.glob.is_some() {
            return Err(ParseError::NoServer);
        }
        if b.starts_with(b"--server=") {
            return Err(ParseError::NoServer);
        }
        match b {
            b"--server" => return Ok((opts, words.get(i..).unwrap_or_default())),
            b"--sender" => return Err(ParseError::MisplacedSender),
            b"--daemon" => return Err(ParseError::BadDaemon),
            b"--" => return Err(ParseError::NoServer),
            _ => {}
        }
        let next = words.get(i);
        let consumed = if let Some(long) = b.strip_prefix(b"--") {
            parse_long(long, next, &mut opts)?
        } else if let Some(cluster) = b.strip_prefix(b"-").filter(|c| !c.is_empty()) {
            parse_cluster_as(cluster, next, &mut opts, Cluster::BeforeServer)?
        } else {
            return Err(ParseError::NoServer);
        };
        i += consumed;
    }
}

/// Parse the words after `--server [--sender]`: options, `.`, paths.
///
/// rsync's own parser (popt) takes options wherever they appear, until a
/// `--`; real clients put every option before the `.` and turn a path that
/// starts with `-` into `./-...`. So a word after the `.` that starts with
/// `-` is refused instead of being read either as an option (which the
/// gate would then have to check again) or as a path (which rsync would
/// take as an option). After a `--`, everything is positional: the `.`
/// and then paths.
pub fn parse_server_args(sender: bool, words: &[Word]) -> Result<ServerArgs, ParseError> {
    let mut opts: Vec<Opt> = Vec::new();
    let mut i = 0;
    loop {
        let Some(w) = words.get(i) else {
            // With -s the client sends only its option cluster on the command
            // line; everything else follows on stdin.
            if opts.iter().any(|o| o.spec.rule == options::Rule::Secluded) {
                return Ok(ServerArgs {
                    sender,
                    opts,
                    paths: Vec::new(),
                    secluded: true,
                    priority: Priority::default(),
                });
            }
            return Err(ParseError::NoDot);
        };
        i += 1;
        let b = &w.bytes[..];
        if b == b"." {
            break;
        }
        if b == b"--" {
            // End of options: the '.' must come next.
            match words.get(i) {
                Some(dot) if dot.bytes == b"." => {
                    i += 1;
                    break;
                }
                _ => return Err(ParseError::NoDot),
            }
        }
        if b == b"--sender" {
            return Err(ParseError::MisplacedSender);
        }
        if let Some(long) = b.strip_prefix(b"--") {
            let next = words.get(i);
            let consumed = parse_long(long, next, &mut opts)?;
            i += consumed;
        } else if let Some(cluster) = b.strip_prefix(b"-").filter(|c| !c.is_empty()) {
            let next = words.get(i);
            let consumed = parse_cluster(cluster, next, &mut opts)?;
            i += consumed;
        } else {
            // A word that is neither an option nor the '.': rsync would take
            // it as a path; clients always send the '.' first.
            return Err(ParseError::NoDot);
        }
    }
    let rest = words.get(i..).unwrap_or_default();
    let mut paths = Vec::with_capacity(rest.len());
    let mut options_ended = words
        .get(..i)
        .is_some_and(|w| w.iter().any(|w| w.bytes == b"--"));
    for w in rest {
        if !options_ended && w.bytes == b"--" {
            options_ended = true;
            continue;
        }
        if !options_ended && w.bytes.first() == Some(&b'-') {
            return Err(ParseError::OptionAfterDot(crate::escape::message(&w.bytes)));
        }
        paths.push(w.clone());
    }
    Ok(ServerArgs {
        sender,
        opts,
        paths,
        secluded: false,
        priority: Priority::default(),
    })
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Parse `--name[=value]`; returns how many following words were consumed.
fn parse_long(body: &[u8], next: Option<&Word>, out: &mut Vec<Opt>) -> Result<usize, ParseError> {
    let (name, inline) = match body.iter().position(|&c| c == b'=') {
        Some(eq) => (
            body.get(..eq).unwrap_or_default(),
            Some(body.get(eq + 1..).unwrap_or_default()),
        ),
        None => (body, None),
    };
    // The name is the client's: escaped, it can carry no terminal control.
    let shown = format!("--{}", crate::escape::message(name));
    let spec = std::str::from_utf8(name)
        .ok()
        .and_then(options::by_long)
        .ok_or_else(|| ParseError::UnknownOption(shown.clone()))?;
    match spec.takes {
        Takes::Nothing => {
            if inline.is_some() {
                return Err(ParseError::UnexpectedValue(shown));
            }
            out.push(Opt { spec, value: None });
            Ok(0)
        }
        Takes::Value(kind) => {
            let (raw, consumed): (Word, usize) = match inline {
                // An '=' value arrived as one word: keep its glob/tilde
                // nature only for what follows the '='.
                Some(v) => (Word::plain(v), 0),
                None => match next {
                    Some(w) => (w.clone(), 1),
                    None => return Err(ParseError::MissingValue(shown)),
                },
            };
            let value = check_value(spec, kind, raw, &shown)?;
            out.push(Opt {
                spec,
                value: Some(value),
            });
            Ok(consumed)
        }
    }
}

/// Where a short-option cluster stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cluster {
    /// After `--server`: `e` starts the protocol capability string.
    Server,
    /// Before `--server`: `e` is rsync's `-e`, `--rsh`.
    BeforeServer,
}

/// Parse a short-option cluster (without its `-`); returns how many
/// following words were consumed.
fn parse_cluster(
    cluster: &[u8],
    next: Option<&Word>,
    out: &mut Vec<Opt>,
) -> Result<usize, ParseError> {
    parse_cluster_as(cluster, next, out, Cluster::Server)
}

fn parse_cluster_as(
    cluster: &[u8],
    next: Option<&Word>,
    out: &mut Vec<Opt>,
    place: Cluster,
) -> Result<usize, ParseError> {
    let mut idx = 0;
    while let Some(&letter) = cluster.get(idx) {
        idx += 1;
        let rest = cluster.get(idx..).unwrap_or_default();
        if letter == b'e' && place == Cluster::Server {
            // The capability string ends the cluster.
            check_capabilities(rest)?;
            out.push(Opt {
                spec: &CAPABILITIES,
                value: Some(OptValue::Text(lossy(rest))),
            });
            return Ok(0);
        }
        let shown = format!("-{}", char::from(letter));
        let spec = if letter == b'e' {
            options::by_long("rsh")
        } else {
            options::by_short(letter)
        };
        let spec = spec.ok_or_else(|| {
            ParseError::UnknownOption(if letter.is_ascii_graphic() {
                shown.clone()
            } else {
                format!("-\\x{letter:02x}")
            })
        })?;
        match spec.takes {
            Takes::Nothing => out.push(Opt { spec, value: None }),
            Takes::Value(kind) => {
                let (raw, consumed) = if rest.is_empty() {
                    match next {
                        Some(w) => (w.clone(), 1),
                        None => return Err(ParseError::MissingValue(shown)),
                    }
                } else {
                    (Word::plain(rest), 0)
                };
                let value = check_value(spec, kind, raw, &shown)?;
                out.push(Opt {
                    spec,
                    value: Some(value),
                });
                return Ok(consumed);
            }
        }
    }
    Ok(0)
}

/// The pseudo-row for `-e<capabilities>`: it is not an option a user types,
/// only the protocol capability string clients append to their cluster.
pub static CAPABILITIES: Spec = Spec {
    long: "e",
    short: Some(b'e'),
    aliases: &[],
    takes: Takes::Value(Value::Capabilities),
    rule: options::Rule::Allow,
    meaning: Meaning::Plain,
    write_only: options::WriteOnly::Harmless,
};

fn check_capabilities(caps: &[u8]) -> Result<(), ParseError> {
    let bad = |why: &str| ParseError::BadValue {
        option: "-e".into(),
        why: why.into(),
    };
    if caps.is_empty() {
        return Err(bad("empty capability string"));
    }
    if caps.len() > 32 {
        return Err(bad("capability string too long"));
    }
    if !caps.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'.') {
        return Err(bad("capability string has unexpected characters"));
    }
    Ok(())
}

fn check_value(
    spec: &'static Spec,
    kind: Value,
    raw: Word,
    shown: &str,
) -> Result<OptValue, ParseError> {
    let bad = |why: String| ParseError::BadValue {
        option: shown.to_string(),
        why,
    };
    if let options::Rule::Refuse(_) = spec.rule {
        // Refused whatever the value; the decision names the reason.
        return Ok(OptValue::Text(String::new()));
    }
    match kind {
        Value::Path(_) => {
            if raw.bytes.is_empty() {
                return Err(bad("empty path".into()));
            }
            Ok(OptValue::Path(raw))
        }
        Value::Capabilities => {
            check_capabilities(&raw.bytes)?;
            Ok(OptValue::Text(lossy(&raw.bytes)))
        }
        Value::Int { min, max } => {
            let n = parse_int(&raw.bytes).ok_or_else(|| bad("not an integer".into()))?;
            if n < min || n > max {
                return Err(bad(format!("{n} is not between {min} and {max}")));
            }
            Ok(OptValue::Text(n.to_string()))
        }
        Value::Size { min, max } => {
            let n = parse_size(&raw.bytes).ok_or_else(|| bad("not a size".into()))?;
            if n < min || n > max {
                return Err(bad(format!("the size must be from {min} to {max} bytes")));
            }
            Ok(OptValue::Text(lossy(&raw.bytes)))
        }
        Value::Text { charset, max_len } => {
            if raw.bytes.is_empty() {
                return Err(bad("empty value".into()));
            }
            if raw.bytes.len() > max_len {
                return Err(bad(format!("longer than {max_len} bytes")));
            }
            if let Some(c) = raw.bytes.iter().find(|&&c| !charset.allows(c)) {
                return Err(bad(format!("character {:?} not allowed", char::from(*c))));
            }
            Ok(OptValue::Text(lossy(&raw.bytes)))
        }
    }
}

/// A decimal integer, optional leading '-', at most 18 digits.
pub fn parse_int(b: &[u8]) -> Option<i64> {
    let (neg, digits) = match b.strip_prefix(b"-") {
        Some(d) => (true, d),
        None => (false, b),
    };
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let s = std::str::from_utf8(digits).ok()?;
    let n: i64 = s.parse().ok()?;
    Some(if neg { -n } else { n })
}

/// A size as rsync clients spell it: `123`, `1.5M`, `10MiB`, `2GB`, `4k`.
/// Returns bytes (suffix-less means bytes), or None when malformed.
pub fn parse_size(b: &[u8]) -> Option<u64> {
    let num_end = b
        .iter()
        .position(|c| !(c.is_ascii_digit() || *c == b'.'))
        .unwrap_or(b.len());
    let (num, suffix) = b.split_at(num_end);
    let text = std::str::from_utf8(num).ok()?;
    let (int_part, frac_part) = match text.split_once('.') {
        Some((i, f)) => (i, f),
        None => (text, ""),
    };
    if int_part.is_empty() || int_part.len() > 19 || frac_part.len() > 6 || frac_part.contains('.')
    {
        return None;
    }
    if text.ends_with('.') {
        return None;
    }
    let multiplier: u64 = match suffix {
        b"" | b"b" | b"B" => 1,
        [u, rest @ ..] => {
            let power = match u.to_ascii_lowercase() {
                b'k' => 1,
                b'm' => 2,
                b'g' => 3,
                b't' => 4,
                b'p' => 5,
                _ => return None,
            };
            let base: u64 = match rest {
                b"" | b"ib" | b"iB" | b"IB" | b"Ib" => 1024,
                b"b" | b"B" => 1000,
                _ => return None,
            };
            base.checked_pow(power)?
        }
    };
    let whole: u64 = int_part.parse().ok()?;
    let mut value = whole.checked_mul(multiplier)?;
    if !frac_part.is_empty() {
        let frac: u64 = frac_part.parse().ok()?;
        let scale = 10u64.checked_pow(u32::try_from(frac_part.len()).ok()?)?;
        value = value.checked_add(frac.checked_mul(multiplier)? / scale)?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::secluded::parse_secluded;

    fn parse(s: &str) -> Result<Request, ParseError> {
        parse_command(s.as_bytes())
    }

    fn server(s: &str) -> ServerArgs {
        match parse(s) {
            Ok(Request::Server(a)) => a,
            other => panic!("{s}: {other:?}"),
        }
    }

    fn longs(a: &ServerArgs) -> Vec<String> {
        a.opts
            .iter()
            .map(|o| match &o.value {
                None => o.spec.long.to_string(),
                Some(OptValue::Text(t)) => format!("{}={t}", o.spec.long),
                Some(OptValue::Path(p)) => format!("{}={}", o.spec.long, p.lossy()),
            })
            .collect()
    }

    #[test]
    fn parses_observed_client_commands() {
        // (command, sender, options as long=value, paths)
        let table: &[(&str, bool, &[&str], &[&str])] = &[
            (
                "rsync --server --sender -logDtpre.iLsfxCIvu . dir",
                true,
                &[
                    "links",
                    "owner",
                    "group",
                    "D",
                    "times",
                    "perms",
                    "recursive",
                    "e=.iLsfxCIvu",
                ],
                &["dir"],
            ),
            (
                "rsync --server -vlogDtprze.iLsfxCIvu --delete . dir/",
                false,
                &[
                    "verbose",
                    "links",
                    "owner",
                    "group",
                    "D",
                    "times",
                    "perms",
                    "recursive",
                    "compress",
                    "e=.iLsfxCIvu",
                    "delete",
                ],
                &["dir/"],
            ),
            (
                "rsync --server -logDtpre.iLsfxCIvu --link-dest ../prev . cur/",
                false,
                &[
                    "links",
                    "owner",
                    "group",
                    "D",
                    "times",
                    "perms",
                    "recursive",
                    "e=.iLsfxCIvu",
                    "link-dest=../prev",
                ],
                &["cur/"],
            ),
            (
                "rsync --server -logDtpre.iLsfxCIvu -B8192 --timeout=30 . dir/",
                false,
                &[
                    "links",
                    "owner",
                    "group",
                    "D",
                    "times",
                    "perms",
                    "recursive",
                    "e=.iLsfxCIvu",
                    "block-size=8192",
                    "timeout=30",
                ],
                &["dir/"],
            ),
            (
                "rsync --server -g -l -o -p -D -r -t -v --dirs . /path",
                false,
                &[
                    "group",
                    "links",
                    "owner",
                    "perms",
                    "D",
                    "recursive",
                    "times",
                    "verbose",
                    "dirs",
                ],
                &["/path"],
            ),
            (
                "rsync --server --sender -r -v -v -v --dirs . /path",
                true,
                &["recursive", "verbose", "verbose", "verbose", "dirs"],
                &["/path"],
            ),
            (
                "rsync --server -logDtpre.iLsfxCIvu -@-1 . dir/",
                false,
                &[
                    "links",
                    "owner",
                    "group",
                    "D",
                    "times",
                    "perms",
                    "recursive",
                    "e=.iLsfxCIvu",
                    "modify-window=-1",
                ],
                &["dir/"],
            ),
            (
                "rsync --server -logDtpre.iLsfxCIvu --usermap=\\*:a --groupmap=\\*:b . dir/",
                false,
                &[
                    "links",
                    "owner",
                    "group",
                    "D",
                    "times",
                    "perms",
                    "recursive",
                    "e=.iLsfxCIvu",
                    "usermap=*:a",
                    "groupmap=*:b",
                ],
                &["dir/"],
            ),
            (
                "rsync --server --sender -logDtpRe.LsfxCIvu --files-from=- --from0 . dir/",
                true,
                &[
                    "links",
                    "owner",
                    "group",
                    "D",
                    "times",
                    "perms",
                    "relative",
                    "e=.LsfxCIvu",
                    "files-from=-",
                    "from0",
                ],
                &["dir/"],
            ),
            (
                "rsync --server -logDtpre.iLsfxCIvu --min-size=1 --max-size=10485760 . dir/",
                false,
                &[
                    "links",
                    "owner",
                    "group",
                    "D",
                    "times",
                    "perms",
                    "recursive",
                    "e=.iLsfxCIvu",
                    "min-size=1",
                    "max-size=10485760",
                ],
                &["dir/"],
            ),
            (
                "rsync --server --sender -de.LsfxCIvu . .",
                true,
                &["dirs", "e=.LsfxCIvu"],
                &["."],
            ),
            (
                "/usr/bin/rsync --server -logDtpr . dir/",
                false,
                &[
                    "links",
                    "owner",
                    "group",
                    "D",
                    "times",
                    "perms",
                    "recursive",
                ],
                &["dir/"],
            ),
            (
                "rsync --server --sender -re.iLsfxCIvu . a\\ file\\ with\\ spaces b",
                true,
                &["recursive", "e=.iLsfxCIvu"],
                &["a file with spaces", "b"],
            ),
        ];
        for (cmd, sender, opts, paths) in table {
            let a = server(cmd);
            assert_eq!(a.sender, *sender, "{cmd}");
            assert_eq!(longs(&a), *opts, "{cmd}");
            let got: Vec<String> = a.paths.iter().map(Word::lossy).collect();
            assert_eq!(got, *paths, "{cmd}");
        }
    }

    #[test]
    fn recognises_probe_daemon_and_others() {
        assert_eq!(parse("true"), Ok(Request::Probe));
        assert_eq!(
            parse("rsync --server --daemon ."),
            Ok(Request::Daemon {
                priority: Priority::default()
            })
        );
        let first = |cmd: &str| match parse(cmd) {
            Ok(Request::Other { words }) => words[0].lossy(),
            other => panic!("{cmd}: {other:?}"),
        };
        assert_eq!(first("id"), "id");
        assert_eq!(first("true x"), "true");
        assert_eq!(first("sudo rsync --server . x"), "sudo");
        assert_eq!(first("rsync* --server . x"), "rsync*");
        // Trigger words, as runmirrors sends them (a leading blank).
        let Ok(Request::Other { words }) = parse(" sync:archive: sync:all") else {
            panic!()
        };
        let words: Vec<String> = words.iter().map(Word::lossy).collect();
        assert_eq!(words, ["sync:archive:", "sync:all"]);
    }

    #[test]
    fn values_at_their_bounds() {
        let ok = |cmd: String| parse(&cmd).is_ok();
        assert!(ok("rsync --server --timeout=1 . x".into()));
        assert!(!ok("rsync --server --timeout=0 . x".into()));
        // --max-alloc's least is 1 KiB.
        assert!(ok("rsync --server --max-alloc=1k . x".into()));
        assert!(ok("rsync --server --max-alloc=1024 . x".into()));
        assert!(!ok("rsync --server --max-alloc=1023 . x".into()));
        let names = "a".repeat(32);
        assert!(ok(format!("rsync --server --compress-choice={names} . x")));
        assert!(!ok(format!(
            "rsync --server --compress-choice={names}a . x"
        )));
        let caps = format!(".{}", "L".repeat(31));
        assert!(ok(format!("rsync --server -e{caps} . x")));
        assert!(!ok(format!("rsync --server -e{caps}s . x")));
    }

    #[test]
    fn integers_and_sizes_as_clients_spell_them() {
        for (text, want) in [
            ("0", Some(0)),
            ("-5", Some(-5)),
            ("100000000000000000", Some(100_000_000_000_000_000)),
            ("999999999999999999", Some(999_999_999_999_999_999)),
            // 19 digits: more than the gate reads, even where they fit.
            ("1000000000000000000", None),
            ("-1000000000000000000", None),
            ("", None),
            ("-", None),
            ("1a", None),
            ("+1", None),
        ] {
            assert_eq!(parse_int(text.as_bytes()), want, "{text:?}");
        }
        const K: u64 = 1024;
        for (text, want) in [
            ("0", Some(0)),
            ("123", Some(123)),
            ("123b", Some(123)),
            ("4k", Some(4 * K)),
            ("4KiB", Some(4 * K)),
            ("4kB", Some(4000)),
            ("1.5M", Some(3 * K * K / 2)),
            ("2GB", Some(2_000_000_000)),
            ("1t", Some(K.pow(4))),
            ("1TB", Some(1_000_000_000_000)),
            ("1p", Some(K.pow(5))),
            ("1PB", Some(1_000_000_000_000_000)),
            ("1.123456k", Some(1150)),
            ("1000000000000000000", Some(1_000_000_000_000_000_000)),
            ("18446744073709551615", None),
            ("1.1234567k", None),
            ("", None),
            (".5k", None),
            ("1.", None),
            ("1.2.3", None),
            ("1x", None),
            ("1kx", None),
            ("1e", None),
            ("99999999999999999p", None),
        ] {
            assert_eq!(parse_size(text.as_bytes()), want, "{text:?}");
        }
        // However long the input, a size is at most 29 bytes: the rest is
        // refused without being read as a number.
        assert_eq!(parse_size(&[b'1'; 40]), None);
        assert_eq!(parse_size(format!("1.{}", "0".repeat(40)).as_bytes()), None);
    }

    #[test]
    fn only_rsync_itself_is_the_program() {
        let word = Word::marked;
        for (w, want) in [
            (word(b"rsync", false, false), true),
            (word(b"/usr/bin/rsync", false, false), true),
            (word(b"/opt/rsync-3.4/bin/rsync", false, false), true),
            (word(b"/bin/sh", false, false), false),
            (word(b"/usr/bin/rsync.sh", false, false), false),
            (word(b"usr/bin/rsync", false, false), false),
            (word(b"rsync2", false, false), false),
            (word(b"/usr/bin/rsync\0/rsync", false, false), false),
            // A word a shell would expand is never the program, whatever
            // it would expand to.
            (word(b"/usr/*/rsync", true, false), false),
            (word(b"~/bin/rsync", false, true), false),
            (word(b"rsync", true, false), false),
            (word(b"rsync", false, true), false),
        ] {
            assert_eq!(is_rsync_program(&w), want, "{w:?}");
        }
        // And so, in front of --server, they are other commands.
        for cmd in [
            "/usr/*/rsync --server . x",
            "~/bin/rsync --server . x",
            "/bin/sh --server . x",
        ] {
            assert!(matches!(parse(cmd), Ok(Request::Other { .. })), "{cmd}");
        }
    }

    #[test]
    fn refuses_malformed_requests() {
        let table: &[(&str, ParseError)] = &[
            ("rsync", ParseError::NoServer),
            ("rsync --sender --server . x", ParseError::MisplacedSender),
            ("rsync x --server . x", ParseError::NoServer),
            ("rsync -- --server . x", ParseError::NoServer),
            ("rsync -v", ParseError::NoServer),
            (
                "rsync --fake-super --daemon --server .",
                ParseError::BadDaemon,
            ),
            (
                "rsync --fake-super --server --daemon .",
                ParseError::BadDaemon,
            ),
            (
                "rsync --frob --server . x",
                ParseError::UnknownOption("--frob".into()),
            ),
            (
                "rsync --server -v --sender . x",
                ParseError::MisplacedSender,
            ),
            ("rsync --server --daemon", ParseError::BadDaemon),
            ("rsync --server --daemon . x", ParseError::BadDaemon),
            (
                "rsync --server --daemon --config=/x .",
                ParseError::BadDaemon,
            ),
            (
                "rsync --server --config=/x --daemon .",
                ParseError::BadDaemon,
            ),
            ("rsync --server -v", ParseError::NoDot),
            ("rsync --server -v dir", ParseError::NoDot),
            (
                "rsync --server --frobnicate . x",
                ParseError::UnknownOption("--frobnicate".into()),
            ),
            (
                "rsync --server -vZ . x",
                ParseError::UnknownOption("-Z".into()),
            ),
            (
                "rsync --server -j . x",
                ParseError::UnknownOption("-j".into()),
            ),
            (
                "rsync --server -r . x -D",
                ParseError::OptionAfterDot("-D".into()),
            ),
            ("rsync --server -r -- x", ParseError::NoDot),
            (
                "rsync --server --delete=yes . x",
                ParseError::UnexpectedValue("--delete".into()),
            ),
            (
                "rsync --server --timeout",
                ParseError::MissingValue("--timeout".into()),
            ),
            ("rsync --server -vB", ParseError::MissingValue("-B".into())),
        ];
        for (cmd, want) in table {
            assert_eq!(parse(cmd).unwrap_err(), *want, "{cmd}");
        }
        // As in rsync, "--" ends the options; after it a dash word is a path.
        let a = server("rsync --server -r -- . x -y");
        assert_eq!(a.paths.len(), 2);
        assert_eq!(a.paths[1].bytes, b"-y");
    }

    /// What `--rsync-path` puts before `--server` is read like what comes
    /// after it: options by the same table (`-e` being rsync's `--rsh`
    /// there), a `nice`/`ionice` prefix as a priority.
    #[test]
    fn words_before_server() {
        let a = server("rsync --fake-super --server -logDtpre.iLsfxCIvu . dst/");
        assert_eq!(longs(&a)[0], "fake-super");
        assert_eq!(longs(&a)[1], "links");
        assert_eq!(a.paths.len(), 1);
        assert!(!a.sender && a.priority.is_none());
        let a = server("rsync --fake-super --server --sender -g -l . src/");
        assert!(a.sender);
        assert_eq!(longs(&a), ["fake-super", "group", "links"]);
        // Refused options stay refused: the decision names them.
        let a = server("rsync -e sh --server . x");
        assert_eq!(a.opts[0].spec.long, "rsh");
        let a = server("rsync --log-file=/tmp/x --server . x");
        assert!(matches!(a.opts[0].spec.rule, options::Rule::Refuse(_)));
        // Secluded args: the options before --server are kept.
        let a = server("rsync --fake-super --server -slogDtpre.iLsfxCIvu");
        assert!(a.secluded);
        assert_eq!(longs(&a)[0], "fake-super");
        // A priority prefix.
        let a = server("nice -n 19 rsync --server --sender -logDtpre.iLsfxCIvu . src/");
        assert_eq!(a.priority.nice, Some(19));
        assert!(a.sender);
        let a = server("ionice -c3 /usr/bin/rsync --fake-super --server . dst/");
        assert_eq!(a.priority.io, Some(priority::IoPriority::Idle));
        assert_eq!(longs(&a), ["fake-super"]);
        assert_eq!(
            parse("nice -n 19 ionice -c3 rsync --server --daemon ."),
            Ok(Request::Daemon {
                priority: Priority {
                    nice: Some(19),
                    io: Some(priority::IoPriority::Idle)
                }
            })
        );
        // Raising, and anything but rsync after the prefix, are refused;
        // a prefix program without rsync is just another command.
        assert!(matches!(
            parse("nice -n -5 rsync --server . x"),
            Err(ParseError::Priority(_))
        ));
        assert!(matches!(
            parse("ionice -c1 rsync --server . x"),
            Err(ParseError::Priority(_))
        ));
        assert!(matches!(
            parse("nice -n 19 sh -c rsync"),
            Err(ParseError::Priority(_))
        ));
        assert!(matches!(
            parse("nice -n 19 id"),
            Ok(Request::Other { words }) if words[0].bytes == b"nice"
        ));
        assert!(matches!(parse("nice true"), Ok(Request::Other { .. })));
        // Secluded arguments keep the command line's priority.
        let cmd = server("nice rsync --server --sender -slogDtpre.iLsfxCIvu");
        let stdin: Vec<Vec<u8>> = vec![b"rsync".to_vec(), b".".to_vec(), b"src/".to_vec()];
        assert_eq!(
            parse_secluded(&cmd, &stdin).unwrap().priority.nice,
            Some(10)
        );
    }

    #[test]
    fn option_names_in_errors_are_escaped() {
        assert_eq!(
            parse("rsync --server --del\x1b[2Jete . x").unwrap_err(),
            ParseError::UnknownOption("--del\\u{1b}[2Jete".into())
        );
        assert_eq!(
            parse_command(b"rsync --server --a\xc2\x9bb . x").unwrap_err(),
            ParseError::UnknownOption("--a\\u{9b}b".into())
        );
        assert_eq!(
            parse_command(b"rsync --server --a\xffb . x").unwrap_err(),
            ParseError::UnknownOption("--a\\xffb".into())
        );
    }

    #[test]
    fn checks_values() {
        let bad = [
            "rsync --server --compress-threads=9 . x",
            "rsync --server --compress-threads=-1 . x",
            "rsync --server --max-alloc=0 . x",
            "rsync --server --max-alloc=100G . x",
            "rsync --server --timeout=0 . x",
            "rsync --server --timeout=abc . x",
            "rsync --server -B999999 . x",
            "rsync --server -Bx . x",
            "rsync --server --max-size=1e9 . x",
            "rsync --server --max-size=-1 . x",
            "rsync --server --info=a;b . x",
            "rsync --server --suffix=/x . x",
            "rsync --server --checksum-choice= . x",
            "rsync --server --log-format=\\\u{1}x . x",
            "rsync --server -e . x",
            "rsync --server -e.i\\;x . x",
            "rsync --server --link-dest= . x",
        ];
        for cmd in bad {
            assert!(
                matches!(
                    parse(cmd),
                    Err(ParseError::BadValue { .. } | ParseError::Split(_))
                ),
                "{cmd}: {:?}",
                parse(cmd)
            );
        }
        let good = [
            "rsync --server --compress-threads=8 . x",
            "rsync --server --max-alloc=1g . x",
            "rsync --server --max-alloc=512MiB . x",
            "rsync --server --bwlimit=1.5m . x",
            "rsync --server -B131072 . x",
            "rsync --server -B 8192 . x",
            "rsync --server --timeout 30 . x",
        ];
        for cmd in good {
            assert!(
                matches!(parse(cmd), Ok(Request::Server(_))),
                "{cmd}: {:?}",
                parse(cmd)
            );
        }
    }

    #[test]
    fn refused_options_parse_so_the_decision_can_name_them() {
        let a = server("rsync --server --log-file=/tmp/x --rsh=sh . x");
        assert_eq!(a.opts.len(), 2);
        assert!(matches!(a.opts[0].spec.rule, options::Rule::Refuse(_)));
    }

    #[test]
    fn secluded_shape() {
        let a = server("rsync --server --sender -slogDtpre.iLsfxCIvu");
        assert!(a.secluded);
        assert!(a.paths.is_empty());
        assert!(!server("rsync --server -slogDtpre.iLsfxCIvu . x").secluded);
        assert_eq!(
            parse("rsync --server -logDtpre.iLsfxCIvu").unwrap_err(),
            ParseError::NoDot
        );
    }

    #[test]
    fn secluded_args_complete_the_request() {
        let cmd = server("rsync --server --sender -slogDtpre.iLsfxCIvu");
        let stdin: Vec<Vec<u8>> = [
            "rsync",
            "--link-dest",
            "../p",
            ".",
            "dir/a b",
            "x*.txt",
            "lit\\*",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        let a = parse_secluded(&cmd, &stdin).unwrap();
        assert!(!a.secluded && a.sender);
        assert_eq!(
            longs(&a),
            [
                "links",
                "owner",
                "group",
                "D",
                "times",
                "perms",
                "recursive",
                "e=.iLsfxCIvu",
                "link-dest=../p"
            ]
        );
        assert_eq!(a.paths[0].bytes, b"dir/a b");
        assert_eq!(a.paths[0].glob, None);
        assert_eq!(a.paths[1].glob.as_deref(), Some(&b"x*.txt"[..]));
        assert_eq!(a.paths[2].glob.as_deref(), Some(&b"lit\\*"[..]));
        // Shell syntax is plain data here.
        let stdin: Vec<Vec<u8>> = vec![b"rsync".to_vec(), b".".to_vec(), b"a;b $(id)".to_vec()];
        assert_eq!(
            parse_secluded(&cmd, &stdin).unwrap().paths[0].bytes,
            b"a;b $(id)"
        );
    }

    #[test]
    fn secluded_args_are_checked_like_any_other() {
        let cmd = server("rsync --server -slogDtpre.iLsfxCIvu");
        let v = |xs: &[&str]| xs.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();
        assert_eq!(
            parse_secluded(&cmd, &[]).unwrap_err().to_string(),
            "bad value for -s: no arguments were sent"
        );
        assert_eq!(
            parse_secluded(&cmd, &v(&["rsync", "--frob", ".", "x"])).unwrap_err(),
            ParseError::UnknownOption("--frob".into())
        );
        assert_eq!(
            parse_secluded(&cmd, &v(&["rsync", "x"])).unwrap_err(),
            ParseError::NoDot
        );
        assert!(parse_secluded(&cmd, &v(&["rsync", "-s", ".", "x"])).is_err());
        assert_eq!(
            parse_secluded(&cmd, &v(&["rsync", ".", "a\nb"])).unwrap_err(),
            ParseError::Split(SplitError::Newline)
        );
        let a = parse_secluded(&cmd, &v(&["rsync", "--log-file", "/tmp/x", ".", "x"])).unwrap();
        assert!(matches!(
            a.opts.last().unwrap().spec.rule,
            options::Rule::Refuse(_)
        ));
    }

    #[test]
    fn relative_is_last_one_wins() {
        assert!(server("rsync --server -R . x").relative());
        assert!(!server("rsync --server -R --no-relative . x").relative());
        assert!(server("rsync --server --no-relative --relative . x").relative());
    }

    #[test]
    fn two_token_values_keep_their_word_nature() {
        let a = server("rsync --server --backup-dir ~/bk . x");
        match &a.opts[0].value {
            Some(OptValue::Path(w)) => assert!(w.tilde),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size(b"10"), Some(10));
        assert_eq!(parse_size(b"1k"), Some(1024));
        assert_eq!(parse_size(b"1KB"), Some(1000));
        assert_eq!(parse_size(b"1KiB"), Some(1024));
        assert_eq!(parse_size(b"1.5M"), Some(1_572_864));
        assert_eq!(parse_size(b"2g"), Some(2 << 30));
        assert_eq!(parse_size(b""), None);
        assert_eq!(parse_size(b"."), None);
        assert_eq!(parse_size(b"1."), None);
        assert_eq!(parse_size(b"1.2.3"), None);
        assert_eq!(parse_size(b"1x"), None);
        assert_eq!(parse_size(b"99999999999999999999P"), None);
        assert_eq!(parse_int(b"-1"), Some(-1));
        assert_eq!(parse_int(b"+1"), None);
        assert_eq!(parse_int(b"-"), None);
        assert_eq!(parse_int(b"9999999999999999999"), None);
    }

    #[test]
    fn out_of_range_values_in_words() {
        let msg = |cmd: &str| parse(cmd).unwrap_err().to_string();
        assert_eq!(
            msg("rsync --server --timeout=0 . x"),
            "bad value for --timeout: 0 is not between 1 and 2592000"
        );
        assert_eq!(
            msg("rsync --server --max-alloc=8589934593 . x"),
            "bad value for --max-alloc: the size must be from 1024 to 8589934592 bytes"
        );
    }
}
