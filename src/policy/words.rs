//! Policy mistakes in an administrator's words: what a TOML value is
//! ("the text \"4\"", "a list"), what a syntax error means, and the key
//! that was probably meant. Nothing here names a Rust type.

use std::ops::Range;

use toml::Spanned;
use toml::de::DeValue;

/// Longest piece of a value quoted back in a message.
const MAX_SHOWN: usize = 60;

/// `s` as a message quotes it: escaped as everything the gate shows
/// ([`crate::escape`]), cut to [`MAX_SHOWN`] characters.
pub(super) fn shown(s: &str) -> String {
    match s.char_indices().nth(MAX_SHOWN) {
        Some((cut, _)) => format!(
            "{}...",
            crate::escape::message(s.get(..cut).unwrap_or("").as_bytes())
        ),
        None => crate::escape::message(s.as_bytes()),
    }
}

/// What a value is, as a message says it: `the text "4"`, `the number 4`,
/// `true`, `a list`, `a table`.
pub(super) fn found(v: &Spanned<DeValue<'_>>, text: &str) -> String {
    let written = text.get(v.span()).unwrap_or("");
    match v.get_ref() {
        DeValue::String(s) => format!("the text \"{}\"", shown(s)),
        DeValue::Integer(_) | DeValue::Float(_) => format!("the number {}", shown(written)),
        DeValue::Boolean(b) => b.to_string(),
        DeValue::Datetime(_) => format!("the date {}", shown(written)),
        DeValue::Array(_) if written.starts_with("[[") => {
            "a list of tables (a [[...]] header; write [...] with single brackets)".into()
        }
        DeValue::Array(_) => "a list".into(),
        DeValue::Table(_) => "a table".into(),
    }
}

/// How far apart two key names are: edits of one character, a swap of
/// two neighbours counting as one.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // d[i][j]: distance between the first i of a and the first j of b.
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    let at = |d: &Vec<Vec<usize>>, i: usize, j: usize| {
        d.get(i)
            .and_then(|r| r.get(j))
            .copied()
            .unwrap_or(usize::MAX / 2)
    };
    for i in 0..=a.len() {
        for j in 0..=b.len() {
            let v = if i == 0 || j == 0 {
                i + j
            } else {
                let (ca, cb) = (a.get(i - 1), b.get(j - 1));
                let mut v = (at(&d, i - 1, j) + 1)
                    .min(at(&d, i, j - 1) + 1)
                    .min(at(&d, i - 1, j - 1) + usize::from(ca != cb));
                if i > 1 && j > 1 && ca == b.get(j - 2) && a.get(i - 2) == cb {
                    v = v.min(at(&d, i - 2, j - 2) + 1);
                }
                v
            };
            if let Some(cell) = d.get_mut(i).and_then(|r| r.get_mut(j)) {
                *cell = v;
            }
        }
    }
    at(&d, a.len(), b.len())
}

/// The name in `known` that `name` was probably meant to be: the same
/// letters but for case, `-` and `_`, or at most two edits away (one for
/// short names).
pub(super) fn closest<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let squash = |s: &str| -> String {
        s.chars()
            .filter(|c| !matches!(c, '_' | '-' | ' '))
            .flat_map(char::to_lowercase)
            .collect()
    };
    let wanted = squash(name);
    let limit = if name.chars().count() <= 4 { 1 } else { 2 };
    let mut best: Option<(usize, &str)> = None;
    for k in known {
        let d = if squash(k) == wanted {
            0
        } else {
            distance(&name.to_lowercase(), k)
        };
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, k));
        }
    }
    best.map(|(_, k)| k)
}

/// `, did you mean 'x'?` or nothing.
pub(super) fn did_you_mean<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    match closest(name, known) {
        Some(k) => format!("; did you mean '{k}'?"),
        None => String::new(),
    }
}

/// Words people write for true and false that TOML does not know.
fn is_yes_no(word: &str) -> bool {
    matches!(
        word.to_ascii_lowercase().as_str(),
        "yes" | "no" | "on" | "off" | "true" | "false" | "y" | "n"
    )
}

/// Does this syntax error leave the parser unsure where the next item
/// starts (a list, an inline table or a long string left open)? Errors
/// after it may be echoes of this one.
pub(super) fn loses_track(message: &str) -> bool {
    message.contains("array") || message.contains("inline table") || message.contains("multi-line")
}

/// A TOML syntax error in plain words. `span` is where the parser stopped,
/// `message` what it said.
pub(super) fn syntax(text: &str, span: &Range<usize>, message: &str) -> String {
    let what = text.get(span.clone()).unwrap_or("").trim();
    let line_start = text
        .get(..span.start)
        .and_then(|t| t.rfind('\n'))
        .map_or(0, |i| i + 1);
    let before = text.get(line_start..span.start).unwrap_or("");
    let at_line_start = before.trim().is_empty();
    let head = message.split(", expected").next().unwrap_or(message);
    match head {
        "string values must be quoted" | "invalid float" | "invalid integer number"
            if is_yes_no(what) =>
        {
            format!("'{}' is not a value here: write true or false", shown(what))
        }
        "string values must be quoted" => format!(
            "text must be in quotes: \"{}\"",
            shown(what.trim_matches(['"', '\'']))
        ),
        h if h.starts_with("invalid boolean") => {
            format!(
                "'{}' is not a value here: write true or false (in small letters)",
                shown(what)
            )
        }
        "key with no value" => {
            "expected '=' after the key: each line is key = value, a [table] header or a # comment"
                .into()
        }
        "missing value for key" => "the key has no value after '='".into(),
        "unclosed table" => "the table header has no closing ']' (a name with spaces or other characters goes in quotes: [modules.\"my files\"])".into(),
        "unclosed array table" => "the table header has no closing ']]'".into(),
        "invalid table" => "this is not a table header: write [NAME] or [modules.NAME]".into(),
        "unexpected key or value" => {
            "unexpected text after the value: one key = value per line; a comment starts with '#'"
                .into()
        }
        h if h.starts_with("extra `=`") => "one '=' too many".into(),
        "invalid basic string" => "the text has no closing '\"' on this line".into(),
        "invalid literal string" => "the text has no closing \"'\" on this line".into(),
        "invalid multi-line basic string" => "the text has no closing '\"\"\"'".into(),
        "invalid multi-line literal string" => "the text has no closing \"'''\"".into(),
        "missing escaped value" | "invalid escape value" => {
            "a '\\' in double quotes starts an escape such as \\n or \\\\; write '\\\\' for a backslash, or use single quotes".into()
        }
        "missing comma between array elements" if at_line_start => {
            "the list on a line above has no closing ']' (or a ',' is missing between its items)"
                .into()
        }
        "missing comma between array elements" => "a ',' is missing between the items of the list".into(),
        "unclosed array" => "the list has no closing ']'".into(),
        "unclosed inline table" => {
            "the { ... } table has no closing '}' (it must be on one line)".into()
        }
        "duplicate key" => format!("'{}' is set twice", shown(what)),
        _ => message.replace('`', "'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names() {
        let keys = ["read_only", "write_only", "delete", "path", "uid", "gid"];
        assert_eq!(closest("readonly", keys), Some("read_only"));
        assert_eq!(closest("Read-Only", keys), Some("read_only"));
        assert_eq!(closest("delet", keys), Some("delete"));
        assert_eq!(closest("paht", keys), Some("path"));
        assert_eq!(closest("frobnicate", keys), None);
        assert_eq!(closest("xid", keys), Some("uid"));
        assert_eq!(closest("abc", keys), None);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("abcd", "abdc"), 1);
        assert_eq!(distance("kitten", "sitting"), 3);
    }

    #[test]
    fn long_values_are_cut() {
        let s = shown(&"x".repeat(100));
        assert_eq!(s.len(), MAX_SHOWN + 3);
        assert_eq!(shown("a\nb"), "a\\nb");
        assert_eq!(shown("a'b\"c"), "a'b\"c");
    }
}
