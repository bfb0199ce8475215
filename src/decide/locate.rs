//! Lexical path mapping: a path word as the client spelled it, onto one of
//! the client's modules (`MODULE/sub`, or an absolute path inside a module
//! root), split into components. Nothing here touches the filesystem; the
//! confinement stage resolves the result physically.

use crate::deny::{DenyReason, shown};
use crate::glob;
use crate::policy::{Client, Module, Policy};
use crate::request::Word;

/// One path component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Comp {
    Name(Vec<u8>),
    /// A component with wildcards (pull paths only), as a pattern.
    Glob(Vec<u8>),
    Parent,
}

/// What followed the last component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trailing {
    None,
    /// `dir/`
    Slash,
    /// `dir/.`
    SlashDot,
}

/// A path inside a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// As the client spelled it (for messages and the audit log).
    pub spelled: Vec<u8>,
    /// For an absolute path: the components the client wrote up to the
    /// module root (what `-R` transmits above the module).
    pub prefix: Option<Vec<Vec<u8>>>,
    /// Components below the module root.
    pub comps: Vec<Comp>,
    /// `-R`'s first `/./`: how many of `comps` lie before it.
    pub marker: Option<usize>,
    pub trailing: Trailing,
}

impl Target {
    pub fn shown(&self) -> String {
        shown(&self.spelled)
    }
}

/// A path split into components.
pub(super) struct Parsed {
    pub(super) absolute: bool,
    pub(super) comps: Vec<Comp>,
    /// Index into `comps` of the first interior `/./`.
    pub(super) marker: Option<usize>,
    pub(super) trailing: Trailing,
}

/// Split a word into components; wildcards are kept only when `globs`.
pub(super) fn parse_path(word: &Word, globs: bool) -> Parsed {
    let pattern = if globs { word.glob.as_deref() } else { None };
    let src: &[u8] = pattern.unwrap_or(&word.bytes);
    let absolute = src.first() == Some(&b'/');
    let mut pieces: Vec<&[u8]> = src.split(|&b| b == b'/').collect();
    // The index of the last piece as the client wrote it: a `.` before a
    // trailing `/.` (`sub/./.`) is an interior one, so it marks -R's start.
    let last = pieces.len().saturating_sub(1);
    let mut trailing = Trailing::None;
    if src.len() > 1 && src.ends_with(b"/") {
        trailing = Trailing::Slash;
    } else if src.len() > 1 && src.ends_with(b"/.") {
        trailing = Trailing::SlashDot;
        pieces.pop();
    }
    let mut comps = Vec::new();
    let mut marker = None;
    for (i, piece) in pieces.iter().enumerate() {
        match *piece {
            b"" => {}
            b"." => {
                if i > 0 && i < last && marker.is_none() {
                    marker = Some(comps.len());
                }
            }
            b".." => comps.push(Comp::Parent),
            p if pattern.is_some() => {
                if glob::has_wildcard(p) {
                    comps.push(Comp::Glob(p.to_vec()));
                } else {
                    comps.push(Comp::Name(glob::literal(p).unwrap_or_else(|| p.to_vec())));
                }
            }
            p => comps.push(Comp::Name(p.to_vec())),
        }
    }
    Parsed {
        absolute,
        comps,
        marker,
        trailing,
    }
}

fn module_components(m: &Module) -> Vec<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    m.path
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(n) => Some(n.as_bytes().to_vec()),
            _ => None,
        })
        .collect()
}

/// Map a path word onto one of the client's modules.
pub(super) fn locate<'p>(
    policy: &'p Policy,
    client: &'p Client,
    word: &Word,
    globs: bool,
    allow_module_form: bool,
) -> Result<(&'p Module, Target), DenyReason> {
    locate_rel(policy, client, word, globs, allow_module_form, false)
}

/// [`locate`], with `-R`'s `/./` marker honoured when `relative` (without
/// `-R` a `/./` is just a `.`).
pub(super) fn locate_rel<'p>(
    policy: &'p Policy,
    client: &'p Client,
    word: &Word,
    globs: bool,
    allow_module_form: bool,
    relative: bool,
) -> Result<(&'p Module, Target), DenyReason> {
    let spelled = shown(&word.bytes);
    if word.tilde {
        return Err(DenyReason::HomeRelative(spelled));
    }
    let mut p = parse_path(word, globs);
    if !relative {
        p.marker = None;
    }
    if p.absolute {
        let mut best: Option<(&Module, Vec<Vec<u8>>)> = None;
        for m in policy.client_modules(client) {
            let root = module_components(m);
            let is_prefix = root.len() <= p.comps.len()
                && root
                    .iter()
                    .zip(&p.comps)
                    .all(|(r, c)| matches!(c, Comp::Name(n) if n == r));
            if is_prefix && best.as_ref().is_none_or(|(_, b)| root.len() > b.len()) {
                best = Some((m, root));
            }
        }
        let Some((m, root)) = best else {
            return Err(DenyReason::OutsideModules(spelled));
        };
        let n = root.len();
        let marker = match p.marker {
            Some(k) if k < n => return Err(DenyReason::MarkerOutsideModule(spelled)),
            Some(k) => Some(k - n),
            None => None,
        };
        return Ok((
            m,
            Target {
                spelled: word.bytes.clone(),
                prefix: Some(root),
                comps: p.comps.into_iter().skip(n).collect(),
                marker,
                trailing: p.trailing,
            },
        ));
    }
    if !allow_module_form {
        return Err(DenyReason::NoModule(spelled));
    }
    let mut comps = p.comps.into_iter();
    let name = match comps.next() {
        Some(Comp::Name(n)) => n,
        Some(Comp::Glob(g)) => return Err(DenyReason::ModuleNotAvailable(shown(&g))),
        Some(Comp::Parent) | None => return Err(DenyReason::NoModule(spelled)),
    };
    let name_text = String::from_utf8_lossy(&name);
    let module = client
        .modules
        .iter()
        .find(|m| m.as_bytes() == name.as_slice())
        .and_then(|m| policy.modules.get(m))
        .ok_or_else(|| DenyReason::ModuleNotAvailable(shown(name_text.as_bytes())))?;
    let marker = match p.marker {
        // A marker before the module name ("./www" is not a marker).
        Some(0) => return Err(DenyReason::MarkerOutsideModule(spelled)),
        Some(k) => Some(k - 1),
        None => None,
    };
    Ok((
        module,
        Target {
            spelled: word.bytes.clone(),
            prefix: None,
            comps: comps.collect(),
            marker,
            trailing: p.trailing,
        },
    ))
}

/// The module a path word names, lexically, whoever asks: the first
/// component of `MODULE/path` (when it could be a module name), or the
/// policy module whose `path` is the longest prefix of an absolute path.
/// What learn mode records of a request; it grants nothing.
pub fn module_named(policy: &Policy, word: &Word) -> Option<String> {
    if word.tilde {
        return None;
    }
    let p = parse_path(word, false);
    if p.absolute {
        return policy
            .modules
            .values()
            .map(|m| (m, module_components(m)))
            .filter(|(_, root)| {
                root.len() <= p.comps.len()
                    && root
                        .iter()
                        .zip(&p.comps)
                        .all(|(r, c)| matches!(c, Comp::Name(n) if n == r))
            })
            .max_by_key(|(_, root)| root.len())
            .map(|(m, _)| m.name.clone());
    }
    match p.comps.first() {
        Some(Comp::Name(n)) => std::str::from_utf8(n)
            .ok()
            .filter(|n| crate::policy::valid_name(n))
            .map(str::to_string),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy;
    use std::path::Path;

    fn word(s: &str) -> Word {
        Word::plain(s.as_bytes().to_vec())
    }

    /// `/` alone is the root, not a directory with a trailing slash; `a/`
    /// and `a/.` are.
    #[test]
    fn a_lone_slash_has_no_trailing_slash() {
        let p = parse_path(&word("/"), false);
        assert!(p.absolute && p.comps.is_empty());
        assert_eq!(p.trailing, Trailing::None);
        assert_eq!(parse_path(&word("a/"), false).trailing, Trailing::Slash);
        assert_eq!(parse_path(&word("a/."), false).trailing, Trailing::SlashDot);
    }

    /// What learn mode records of a path: the module named first, or the
    /// one whose root is the longest prefix of an absolute path; nothing
    /// for a path in no module, `..`, a name no module could have, `~`.
    #[test]
    fn learn_names_the_module_a_word_is_in() {
        let p = policy::load_text(
            Path::new("/p.toml"),
            include_str!("../../tests/data/lexical-policy.toml"),
        )
        .unwrap();
        let named = |s: &str| module_named(&p, &word(s));
        assert_eq!(named("www/a"), Some("www".into()));
        assert_eq!(named("anything/a"), Some("anything".into()));
        assert_eq!(named("/srv/www/sub/x"), Some("nested".into()));
        assert_eq!(named("/srv/www/x"), Some("www".into()));
        assert_eq!(named("/srv/www"), Some("www".into()));
        // Only module root (`/`) is a prefix of `/srv`.
        assert_eq!(named("/srv"), Some("root".into()));
        assert_eq!(named("../www"), None);
        assert_eq!(named("bad name!/x"), None);
        let mut tilde = word("~/x");
        tilde.tilde = true;
        assert_eq!(module_named(&p, &tilde), None);
    }

    /// Two of a client's modules with the same root: an absolute path goes
    /// to the first the client lists (a tie never moves it to a later one).
    #[test]
    fn a_tie_between_roots_goes_to_the_first_module() {
        let p = policy::load_text(
            Path::new("/p.toml"),
            "[modules.ro]\npath = \"/srv/x\"\n[modules.rw]\npath = \"/srv/x\"\nread_only = false\n\
             [clients.c]\nmodules = [\"ro\", \"rw\"]\n",
        )
        .unwrap();
        let client = p.clients.get("c").unwrap();
        let (m, _) = locate_rel(&p, client, &word("/srv/x/a"), false, true, false).unwrap();
        assert_eq!(m.name, "ro");
    }
}
