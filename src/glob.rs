//! Shell-style wildcard matching of one path component: `*`, `?`,
//! `[set]`/`[!set]`/`[^set]` with ranges, and `\` escapes. Iterative (no
//! recursion, linear backtracking), so hostile patterns cannot blow the
//! stack or take exponential time.

/// One parsed pattern element.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(u8),
    Any,
    Star,
    Set { negated: bool, items: Vec<(u8, u8)> },
}

fn tokenize(pat: &[u8]) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&c) = pat.get(i) {
        i += 1;
        match c {
            b'\\' => match pat.get(i) {
                Some(&n) => {
                    i += 1;
                    out.push(Tok::Lit(n));
                }
                None => out.push(Tok::Lit(b'\\')),
            },
            b'?' => out.push(Tok::Any),
            b'*' => {
                if out.last() != Some(&Tok::Star) {
                    out.push(Tok::Star);
                }
            }
            b'[' => match parse_set(pat, i) {
                Some((tok, next)) => {
                    out.push(tok);
                    i = next;
                }
                // An unterminated '[' is a literal, as in the shell.
                None => out.push(Tok::Lit(b'[')),
            },
            _ => out.push(Tok::Lit(c)),
        }
    }
    out
}

/// Parse a bracket expression starting just after `[`.
fn parse_set(pat: &[u8], start: usize) -> Option<(Tok, usize)> {
    let mut i = start;
    let negated = matches!(pat.get(i), Some(b'!' | b'^'));
    if negated {
        i += 1;
    }
    let mut items = Vec::new();
    let mut first = true;
    loop {
        let c = *pat.get(i)?;
        if c == b']' && !first {
            return Some((Tok::Set { negated, items }, i + 1));
        }
        first = false;
        let lo = if c == b'\\' {
            i += 1;
            *pat.get(i)?
        } else {
            c
        };
        i += 1;
        if pat.get(i) == Some(&b'-') && pat.get(i + 1).is_some_and(|&n| n != b']') {
            let mut hi = *pat.get(i + 1)?;
            i += 2;
            if hi == b'\\' {
                hi = *pat.get(i)?;
                i += 1;
            }
            items.push((lo, hi));
        } else {
            items.push((lo, lo));
        }
    }
}

fn tok_matches(t: &Tok, c: u8) -> bool {
    match t {
        Tok::Lit(l) => *l == c,
        Tok::Any => true,
        Tok::Star => true,
        Tok::Set { negated, items } => items.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated,
    }
}

/// Does `name` match `pattern`? Wildcards match any byte (callers match one
/// path component at a time, so `/` never occurs in `name`).
pub fn matches(pattern: &[u8], name: &[u8]) -> bool {
    let toks = tokenize(pattern);
    let (mut t, mut n) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    loop {
        match (toks.get(t), name.get(n)) {
            (Some(Tok::Star), _) => {
                star = Some((t, n));
                t += 1;
            }
            (Some(tok), Some(&c)) if tok_matches(tok, c) => {
                t += 1;
                n += 1;
            }
            (None, None) => return true,
            _ => match star {
                Some((st, sn)) if sn < name.len() => {
                    star = Some((st, sn + 1));
                    t = st + 1;
                    n = sn + 1;
                }
                _ => return false,
            },
        }
    }
}

/// Like [`matches`], but a leading `.` in `name` must be matched by a
/// literal `.` in the pattern (the shell's rule for hidden files), and `.`
/// and `..` never match.
pub fn matches_component(pattern: &[u8], name: &[u8]) -> bool {
    if name == b"." || name == b".." {
        return false;
    }
    if name.first() == Some(&b'.') && !matches!(tokenize(pattern).first(), Some(Tok::Lit(b'.'))) {
        return false;
    }
    matches(pattern, name)
}

/// Does the pattern contain an unescaped wildcard?
pub fn has_wildcard(pattern: &[u8]) -> bool {
    tokenize(pattern).iter().any(|t| !matches!(t, Tok::Lit(_)))
}

/// The literal text of a pattern without wildcards (escapes removed).
pub fn literal(pattern: &[u8]) -> Option<Vec<u8>> {
    tokenize(pattern)
        .into_iter()
        .map(|t| match t {
            Tok::Lit(c) => Some(c),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let table: &[(&str, &str, bool)] = &[
            ("*.txt", "a.txt", true),
            ("*.txt", "a.txd", false),
            ("*.txt", ".txt", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("*", "", true),
            ("", "", true),
            ("", "a", false),
            ("[abc]x", "bx", true),
            ("[abc]x", "dx", false),
            ("[!abc]x", "dx", true),
            ("[^abc]x", "ax", false),
            ("[a-c]", "b", true),
            ("[a-c]", "d", false),
            ("[]]", "]", true),
            ("[a-]", "-", true),
            ("[", "[", true),
            ("a[", "a[", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "aXb", false),
            ("\\[x]", "[x]", true),
            ("\\\\", "\\", true),
            ("x\\", "x\\", true),
            ("**a", "bba", true),
        ];
        for (p, n, want) in table {
            assert_eq!(matches(p.as_bytes(), n.as_bytes()), *want, "{p} vs {n}");
        }
    }

    #[test]
    fn hidden_files_need_a_literal_dot() {
        assert!(!matches_component(b"*", b".hidden"));
        assert!(matches_component(b".*", b".hidden"));
        assert!(!matches_component(b".*", b".."));
        assert!(!matches_component(b"?", b"."));
        assert!(matches_component(b"*", b"visible"));
    }

    #[test]
    fn pathological_patterns_are_fast() {
        let pat = "*a".repeat(64) + "b";
        let name = "a".repeat(4000);
        let t = std::time::Instant::now();
        assert!(!matches(pat.as_bytes(), name.as_bytes()));
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn wildcard_detection_and_literals() {
        assert!(has_wildcard(b"a*"));
        assert!(!has_wildcard(b"a\\*"));
        assert_eq!(literal(b"a\\*b"), Some(b"a*b".to_vec()));
        assert_eq!(literal(b"a*b"), None);
    }
}
