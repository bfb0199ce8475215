//! Splitting `SSH_ORIGINAL_COMMAND` into words.
//!
//! sshd hands the client's command to the account's shell. rsync >= 3.2.4
//! backslash-escapes every shell-special character of a path before sending
//! it, older clients (and `--old-args`) send plain words, and openrsync sends
//! plain words without escapes. We split exactly the way a POSIX shell would
//! split those words (backslash escapes, single and double quotes, blanks),
//! but nothing is ever expanded or executed: a quoted or escaped character is
//! plain data, and anything a shell would treat as syntax (an unquoted
//! operator, a substitution, a comment, a brace expansion) is refused, as are
//! newlines, NUL bytes and unbalanced quotes. The parser is all-or-nothing.

use std::fmt;

/// Most words a command may have.
pub const MAX_WORDS: usize = 4096;
/// Longest command accepted, in bytes.
pub const MAX_COMMAND_LEN: usize = 256 * 1024;
/// Longest single word accepted, in bytes (PATH_MAX).
pub const MAX_WORD_LEN: usize = 4096;

/// One word of the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// The word's bytes after quote removal.
    pub bytes: Vec<u8>,
    /// `Some(pattern)` when the word holds an unquoted glob character
    /// (`*`, `?`, `[`). In the pattern every character that was quoted or
    /// escaped, and every literal backslash, is preceded by a backslash, so a
    /// matcher can tell data from wildcards.
    pub glob: Option<Vec<u8>>,
    /// The word starts with an unquoted `~`, which a shell would expand to a
    /// home directory.
    pub tilde: bool,
}

impl Word {
    /// A word of plain data (no wildcards, no tilde).
    pub fn plain(bytes: impl Into<Vec<u8>>) -> Word {
        Word {
            bytes: bytes.into(),
            glob: None,
            tilde: false,
        }
    }

    /// A word as the splitter would mark it (tests): its bytes, as a
    /// pattern of themselves when `glob`, and whether it starts with `~`.
    #[cfg(test)]
    pub fn marked(bytes: &[u8], glob: bool, tilde: bool) -> Word {
        Word {
            bytes: bytes.to_vec(),
            glob: glob.then(|| bytes.to_vec()),
            tilde,
        }
    }

    /// The word as text, lossily (for messages and matching ASCII options).
    pub fn lossy(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// Why a command could not be split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitError {
    Empty,
    TooLong,
    TooManyWords,
    WordTooLong,
    Newline,
    Nul,
    UnbalancedQuote,
    TrailingBackslash,
    /// An unquoted shell operator or syntax character.
    Operator(char),
    /// `$...` or a backtick: parameter expansion or command substitution.
    Substitution,
    /// An unquoted `#` at the start of a word (a shell comment).
    Comment,
    /// Unquoted `{` or `}` (brace expansion in bash).
    Brace,
}

impl fmt::Display for SplitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SplitError::Empty => write!(f, "empty command"),
            SplitError::TooLong => {
                write!(f, "command longer than {MAX_COMMAND_LEN} bytes")
            }
            SplitError::TooManyWords => write!(f, "more than {MAX_WORDS} words"),
            SplitError::WordTooLong => {
                write!(f, "a word is longer than {MAX_WORD_LEN} bytes")
            }
            SplitError::Newline => write!(f, "newline in command"),
            SplitError::Nul => write!(f, "NUL byte in command"),
            SplitError::UnbalancedQuote => write!(f, "unbalanced quote"),
            SplitError::TrailingBackslash => write!(f, "trailing backslash"),
            SplitError::Operator(c) => {
                write!(
                    f,
                    "shell operator '{}' (escape or quote it if it is data)",
                    c.escape_default()
                )
            }
            SplitError::Substitution => {
                write!(f, "shell expansion ('$' or '`') is not allowed")
            }
            SplitError::Comment => write!(f, "unquoted '#' (a shell comment)"),
            SplitError::Brace => write!(f, "brace expansion is not supported"),
        }
    }
}

impl std::error::Error for SplitError {}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn is_glob(b: u8) -> bool {
    matches!(b, b'*' | b'?' | b'[')
}

/// Word under construction.
#[derive(Default)]
struct Builder {
    bytes: Vec<u8>,
    pattern: Vec<u8>,
    has_glob: bool,
    tilde: bool,
    started: bool,
}

impl Builder {
    fn push_literal(&mut self, b: u8) {
        self.started = true;
        self.bytes.push(b);
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            self.pattern.push(b'\\');
        }
        self.pattern.push(b);
    }

    fn push_unquoted(&mut self, b: u8) {
        self.started = true;
        self.bytes.push(b);
        if is_glob(b) {
            self.has_glob = true;
        }
        if b == b'\\' {
            self.pattern.push(b'\\');
        }
        self.pattern.push(b);
    }

    fn finish(self, out: &mut Vec<Word>) -> Result<(), SplitError> {
        if !self.started {
            return Ok(());
        }
        if self.bytes.len() > MAX_WORD_LEN {
            return Err(SplitError::WordTooLong);
        }
        if out.len() >= MAX_WORDS {
            return Err(SplitError::TooManyWords);
        }
        out.push(Word {
            glob: self.has_glob.then_some(self.pattern),
            bytes: self.bytes,
            tilde: self.tilde,
        });
        Ok(())
    }
}

/// Split a command line into words as a POSIX shell would, refusing
/// anything a shell would interpret.
pub fn split(input: &[u8]) -> Result<Vec<Word>, SplitError> {
    if input.len() > MAX_COMMAND_LEN {
        return Err(SplitError::TooLong);
    }
    if input.contains(&b'\n') {
        return Err(SplitError::Newline);
    }
    if input.contains(&0) {
        return Err(SplitError::Nul);
    }
    let mut words = Vec::new();
    let mut cur = Builder::default();
    let mut iter = input.iter().copied().peekable();
    while let Some(b) = iter.next() {
        match b {
            _ if is_blank(b) => {
                std::mem::take(&mut cur).finish(&mut words)?;
            }
            b'\\' => match iter.next() {
                Some(next) => cur.push_literal(next),
                None => return Err(SplitError::TrailingBackslash),
            },
            b'\'' => {
                cur.started = true;
                loop {
                    match iter.next() {
                        Some(b'\'') => break,
                        Some(c) => cur.push_literal(c),
                        None => return Err(SplitError::UnbalancedQuote),
                    }
                }
            }
            b'"' => {
                cur.started = true;
                loop {
                    match iter.next() {
                        Some(b'"') => break,
                        Some(b'\\') => match iter.peek().copied() {
                            Some(c @ (b'"' | b'\\' | b'$' | b'`')) => {
                                iter.next();
                                cur.push_literal(c);
                            }
                            Some(_) => cur.push_literal(b'\\'),
                            None => return Err(SplitError::UnbalancedQuote),
                        },
                        Some(b'$' | b'`') => return Err(SplitError::Substitution),
                        Some(c) => cur.push_literal(c),
                        None => return Err(SplitError::UnbalancedQuote),
                    }
                }
            }
            b'$' | b'`' => return Err(SplitError::Substitution),
            b';' | b'|' | b'&' | b'<' | b'>' | b'(' | b')' => {
                return Err(SplitError::Operator(char::from(b)));
            }
            b'{' | b'}' => return Err(SplitError::Brace),
            b'#' if !cur.started => return Err(SplitError::Comment),
            b'~' if !cur.started => {
                cur.tilde = true;
                cur.push_unquoted(b);
            }
            _ => cur.push_unquoted(b),
        }
    }
    cur.finish(&mut words)?;
    if words.is_empty() {
        return Err(SplitError::Empty);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        split(s.as_bytes())
            .unwrap()
            .into_iter()
            .map(|w| w.lossy())
            .collect()
    }

    fn err(s: &str) -> SplitError {
        split(s.as_bytes()).unwrap_err()
    }

    #[test]
    fn splits_real_client_commands() {
        let table: &[(&str, &[&str])] = &[
            (
                "rsync --server --sender -logDtpre.iLsfxCIvu . dir",
                &[
                    "rsync",
                    "--server",
                    "--sender",
                    "-logDtpre.iLsfxCIvu",
                    ".",
                    "dir",
                ],
            ),
            (
                "rsync  --server\t. a\\ file",
                &["rsync", "--server", ".", "a file"],
            ),
            ("rsync . \\$\\(id\\)", &["rsync", ".", "$(id)"]),
            ("rsync . it\\'s", &["rsync", ".", "it's"]),
            ("rsync . 'a;b' \"c|d\"", &["rsync", ".", "a;b", "c|d"]),
            ("rsync . a\\;b", &["rsync", ".", "a;b"]),
            ("rsync . '' x", &["rsync", ".", "", "x"]),
            ("rsync --usermap=\\*:a", &["rsync", "--usermap=*:a"]),
            ("rsync . \"a\\\"b\\\\c\\d\"", &["rsync", ".", "a\"b\\c\\d"]),
            ("rsync . a#b", &["rsync", ".", "a#b"]),
            ("rsync . \\#a \\{x\\}", &["rsync", ".", "#a", "{x}"]),
            ("  rsync  ", &["rsync"]),
            ("rsync . caf\u{e9}", &["rsync", ".", "caf\u{e9}"]),
            ("rsync . a\rb", &["rsync", ".", "a\rb"]),
        ];
        for (input, want) in table {
            assert_eq!(words(input), *want, "input {input:?}");
        }
    }

    #[test]
    fn refuses_shell_syntax() {
        let table: &[(&str, SplitError)] = &[
            ("rsync; id", SplitError::Operator(';')),
            ("rsync | id", SplitError::Operator('|')),
            ("rsync & id", SplitError::Operator('&')),
            ("rsync && id", SplitError::Operator('&')),
            ("rsync > /etc/x", SplitError::Operator('>')),
            ("rsync < /etc/x", SplitError::Operator('<')),
            ("rsync (id)", SplitError::Operator('(')),
            ("rsync )", SplitError::Operator(')')),
            ("rsync `id`", SplitError::Substitution),
            ("rsync $(id)", SplitError::Substitution),
            ("rsync $HOME", SplitError::Substitution),
            ("rsync ${X}", SplitError::Substitution),
            ("rsync \"$(id)\"", SplitError::Substitution),
            ("rsync \"`id`\"", SplitError::Substitution),
            ("rsync\nid", SplitError::Newline),
            ("rsync '\n'", SplitError::Newline),
            ("rsync 'abc", SplitError::UnbalancedQuote),
            ("rsync \"abc", SplitError::UnbalancedQuote),
            ("rsync \"abc\\", SplitError::UnbalancedQuote),
            ("rsync abc\\", SplitError::TrailingBackslash),
            ("rsync #x", SplitError::Comment),
            ("rsync a{b,c}", SplitError::Brace),
            ("rsync }", SplitError::Brace),
            ("", SplitError::Empty),
            ("   ", SplitError::Empty),
        ];
        for (input, want) in table {
            assert_eq!(err(input), *want, "input {input:?}");
        }
        assert_eq!(split(b"rsync a\0b").unwrap_err(), SplitError::Nul);
    }

    #[test]
    fn records_globs_and_tilde() {
        let w = split(b"dir/*.txt").unwrap();
        assert_eq!(w[0].glob.as_deref(), Some(&b"dir/*.txt"[..]));
        let w = split(b"a\\*b").unwrap();
        assert_eq!(w[0].bytes, b"a*b");
        assert_eq!(w[0].glob, None);
        let w = split(b"'x*'?").unwrap();
        assert_eq!(w[0].glob.as_deref(), Some(&b"x\\*?"[..]));
        let w = split(b"~/dir \\~x '~'y").unwrap();
        assert!(w[0].tilde);
        assert!(!w[1].tilde);
        assert!(!w[2].tilde);
    }

    #[test]
    fn enforces_limits() {
        let long = "a".repeat(MAX_WORD_LEN + 1);
        assert_eq!(err(&long), SplitError::WordTooLong);
        let many = "a ".repeat(MAX_WORDS + 1);
        assert_eq!(err(&many), SplitError::TooManyWords);
        let huge = "a".repeat(MAX_COMMAND_LEN + 1);
        assert_eq!(err(&huge), SplitError::TooLong);
        // Each bound itself is allowed.
        let longest = "a".repeat(MAX_WORD_LEN);
        assert_eq!(words(&longest), std::slice::from_ref(&longest));
        let most = "a ".repeat(MAX_WORDS);
        assert_eq!(words(&most).len(), MAX_WORDS);
        let word = "a".repeat(MAX_WORD_LEN - 1);
        let full = format!("{word} ").repeat(MAX_COMMAND_LEN / MAX_WORD_LEN);
        assert_eq!(full.len(), MAX_COMMAND_LEN);
        assert_eq!(words(&full).len(), MAX_COMMAND_LEN / MAX_WORD_LEN);
        assert_eq!(err(&format!("{full}a")), SplitError::TooLong);
    }

    #[test]
    fn a_tilde_counts_only_at_the_start_of_a_word() {
        let w = split(b"a~b x/~ ~ \"~x\"").unwrap();
        let tilde: Vec<bool> = w.iter().map(|w| w.tilde).collect();
        assert_eq!(tilde, [false, false, true, false]);
    }

    #[test]
    fn errors_say_what_was_refused() {
        for (e, text) in [
            (SplitError::Empty, "empty command".to_string()),
            (
                SplitError::TooLong,
                "command longer than 262144 bytes".into(),
            ),
            (SplitError::TooManyWords, "more than 4096 words".into()),
            (
                SplitError::WordTooLong,
                "a word is longer than 4096 bytes".into(),
            ),
            (SplitError::Newline, "newline in command".into()),
            (SplitError::Nul, "NUL byte in command".into()),
            (SplitError::UnbalancedQuote, "unbalanced quote".into()),
            (SplitError::TrailingBackslash, "trailing backslash".into()),
            (
                SplitError::Operator(';'),
                "shell operator ';' (escape or quote it if it is data)".into(),
            ),
            (
                SplitError::Operator('\t'),
                "shell operator '\\t' (escape or quote it if it is data)".into(),
            ),
            (
                SplitError::Substitution,
                "shell expansion ('$' or '`') is not allowed".into(),
            ),
            (SplitError::Comment, "unquoted '#' (a shell comment)".into()),
            (SplitError::Brace, "brace expansion is not supported".into()),
        ] {
            assert_eq!(e.to_string(), text);
        }
    }
}
