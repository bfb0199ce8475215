//! The one escaper: how bytes that came from a client (or from a file an
//! attacker may have named) are shown in refusal messages, audit records and
//! audit review output.
//!
//! Printable text stays as it is. Control characters, Unicode format
//! characters (bidi overrides and isolates, zero-width marks, the line and
//! paragraph separators) and invalid UTF-8 become backslash escapes, so
//! nothing a client sends can move a terminal's cursor, reorder what an
//! administrator reads, or hide part of a line. A backslash is doubled, so
//! an escape in the output always means the gate wrote it.

/// Longest text kept in a refusal message (characters).
pub const MESSAGE_CHARS: usize = 200;
/// Longest text kept in one audit field (bytes).
pub const FIELD_BYTES: usize = 16 * 1024;

/// Is `c` a character that must not reach a terminal or a log viewer as is?
pub fn needs_escape(c: char) -> bool {
    c.is_control() || is_format(c)
}

/// Unicode format characters (general category Cf) and the line and
/// paragraph separators (Zl, Zp): invisible, and some reorder the text
/// around them (U+202E RIGHT-TO-LEFT OVERRIDE, U+2066..U+2069 isolates).
fn is_format(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x2028..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    )
}

/// What to do with a backslash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backslash {
    /// Double it (raw bytes: the output's escapes stay unambiguous).
    Double,
    /// Keep it (text that was escaped once already, read back for display).
    Keep,
}

/// The escaper. `limit` bounds the output; a cut is marked with `...`.
fn escape_with(b: &[u8], backslash: Backslash, limit: Limit) -> String {
    // Printable ASCII without a backslash, within the limit (most names),
    // is kept as it is.
    if b.len() <= limit.most() && b.iter().all(|&c| matches!(c, b' '..=b'~') && c != b'\\') {
        return b.iter().map(|&c| char::from(c)).collect();
    }
    let mut s = String::with_capacity(b.len().min(256));
    let mut chars = 0usize;
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            if limit.reached(s.len(), chars) {
                s.push_str("...");
                return s;
            }
            chars += 1;
            if c == '\\' && backslash == Backslash::Double {
                s.push_str("\\\\");
            } else if needs_escape(c) {
                s.extend(c.escape_default());
            } else {
                s.push(c);
            }
        }
        for byte in chunk.invalid() {
            if limit.reached(s.len(), chars) {
                s.push_str("...");
                return s;
            }
            chars += 1;
            s.push_str(&format!("\\x{byte:02x}"));
        }
    }
    s
}

#[derive(Debug, Clone, Copy)]
enum Limit {
    Chars(usize),
    Bytes(usize),
}

impl Limit {
    /// Characters or bytes: the same for ASCII.
    fn most(self) -> usize {
        match self {
            Limit::Chars(n) | Limit::Bytes(n) => n,
        }
    }

    fn reached(self, bytes: usize, chars: usize) -> bool {
        match self {
            Limit::Chars(n) => chars >= n,
            Limit::Bytes(n) => bytes >= n,
        }
    }
}

/// Client bytes in a refusal message: escaped, at most [`MESSAGE_CHARS`].
pub fn message(b: &[u8]) -> String {
    escape_with(b, Backslash::Double, Limit::Chars(MESSAGE_CHARS))
}

/// Client bytes in an audit field: escaped, at most [`FIELD_BYTES`].
pub fn field(b: &[u8]) -> String {
    escape_with(b, Backslash::Double, Limit::Bytes(FIELD_BYTES))
}

/// Text read back from the audit log, for a terminal: what the gate wrote
/// was escaped already (backslashes stay), but a log can be edited, so
/// anything that could still act on a terminal is escaped again.
pub fn display(s: &str) -> String {
    escape_with(s.as_bytes(), Backslash::Keep, Limit::Bytes(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_text_is_kept() {
        assert_eq!(message(b"www/a b.txt"), "www/a b.txt");
        assert_eq!(field("caf\u{e9}".as_bytes()), "caf\u{e9}");
    }

    #[test]
    fn control_bytes_and_invalid_utf8_are_escaped() {
        assert_eq!(message(b"a\x1b[31mb"), "a\\u{1b}[31mb");
        assert_eq!(message(b"tab\there\n"), "tab\\there\\n");
        assert_eq!(message(b"a\xffb"), "a\\xffb");
        assert_eq!(field(b"\x00\x7f"), "\\u{0}\\u{7f}");
    }

    #[test]
    fn format_characters_are_escaped() {
        for (c, want) in [
            ('\u{202e}', "\\u{202e}"),
            ('\u{2066}', "\\u{2066}"),
            ('\u{2067}', "\\u{2067}"),
            ('\u{2068}', "\\u{2068}"),
            ('\u{2069}', "\\u{2069}"),
            ('\u{200e}', "\\u{200e}"),
            ('\u{200f}', "\\u{200f}"),
            ('\u{200b}', "\\u{200b}"),
            ('\u{feff}', "\\u{feff}"),
            ('\u{2028}', "\\u{2028}"),
        ] {
            let s = format!("a{c}b");
            assert_eq!(message(s.as_bytes()), format!("a{want}b"), "{c:?}");
            assert_eq!(field(s.as_bytes()), format!("a{want}b"), "{c:?}");
            assert_eq!(display(&s), format!("a{want}b"), "{c:?}");
        }
    }

    #[test]
    fn backslashes_are_doubled_in_raw_bytes_but_kept_on_display() {
        assert_eq!(message(b"a\\b"), "a\\\\b");
        assert_eq!(field(b"a\\n"), "a\\\\n");
        // Nothing but backslashes: printable ASCII, and still doubled.
        assert_eq!(field(b"\\"), "\\\\");
        assert_eq!(message(b"\\\\"), "\\".repeat(4));
        // Already escaped text keeps its escapes; a raw control byte that
        // a hand-edited log holds is still escaped.
        assert_eq!(display("a\\u{1b}b"), "a\\u{1b}b");
        assert_eq!(display("a\u{1b}b"), "a\\u{1b}b");
    }

    #[test]
    fn long_values_are_cut_and_marked() {
        let long = vec![b'x'; 1000];
        let m = message(&long);
        assert_eq!(m.len(), MESSAGE_CHARS + 3);
        assert!(m.ends_with("..."));
        let long = vec![b'y'; FIELD_BYTES * 2];
        let f = field(&long);
        assert_eq!(f.len(), FIELD_BYTES + 3);
        // A cut never splits a character.
        let wide = "\u{e9}".repeat(FIELD_BYTES);
        assert!(field(wide.as_bytes()).ends_with("..."));
        // Escapes count once each against the message bound.
        let ctl = vec![0x1bu8; 300];
        assert!(message(&ctl).starts_with("\\u{1b}\\u{1b}"));
        assert_eq!(message(&ctl).matches("\\u{1b}").count(), MESSAGE_CHARS);
        // So do bytes that are not UTF-8.
        let invalid = vec![0xffu8; 300];
        assert_eq!(message(&invalid).matches("\\xff").count(), MESSAGE_CHARS);
        assert!(message(&invalid).ends_with("..."));
    }

    /// Plain ASCII takes a quicker way: the same text, at the limits and
    /// next to them, and every byte that must not take it.
    #[test]
    fn plain_ascii_is_kept_up_to_the_limit_and_cut_past_it() {
        for (n, cut) in [
            (MESSAGE_CHARS - 1, false),
            (MESSAGE_CHARS, false),
            (MESSAGE_CHARS + 1, true),
        ] {
            let m = message(&vec![b'~'; n]);
            let want = "~".repeat(n.min(MESSAGE_CHARS)) + if cut { "..." } else { "" };
            assert_eq!(m, want, "{n}");
        }
        for (n, cut) in [(FIELD_BYTES, false), (FIELD_BYTES + 1, true)] {
            let f = field(&vec![b' '; n]);
            assert_eq!(f.len(), FIELD_BYTES + if cut { 3 } else { 0 }, "{n}");
            assert_eq!(f.ends_with("..."), cut, "{n}");
        }
        // The bounds as documented (README: refusal messages, audit fields).
        assert_eq!(message(&[b'm'; 200]).len(), 200);
        assert_eq!(message(&[b'm'; 201]).len(), 203);
        assert_eq!(field(&vec![b'f'; 16_384]).len(), 16_384);
        assert_eq!(field(&vec![b'f'; 16_385]).len(), 16_387);
        // Printable ASCII is every byte from space to tilde.
        let printable: Vec<u8> = (b' '..=b'~').filter(|&c| c != b'\\').collect();
        assert_eq!(
            field(&printable),
            String::from_utf8(printable.clone()).unwrap()
        );
        for c in (0u8..=255).filter(|c| !printable.contains(c)) {
            let text = [b'a', c, b'b'];
            assert_ne!(field(&text).len(), 3, "{c:#x} must be escaped");
        }
    }
}
