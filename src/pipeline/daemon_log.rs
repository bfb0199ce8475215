//! What a `host::` session's rsync daemon refused on its own, before any
//! hook ran, read from its log, turned into the refusal checked mode gives
//! for the same module.
//!
//! The client names its module in-band, after the daemon's greeting, and
//! the daemon answers an unknown name (one not in the generated config: not
//! the client's, or left out as unsafe to serve) or a module at its `max
//! connections` with an `@ERROR` of its own. No hook runs for either. The
//! daemon gets `--log-file=/proc/self/fd/3`, a pipe to the gate, where it
//! logs what became of the client's module line before a module is chosen
//! (then it switches to the module's log setting: the same pipe in a module
//! with `transfer_log`, whose lines [`super::filelog`] reads); after the
//! daemon has exited, the gate reads that log and records the refusal as a `deny`
//! decision with the same reason code checked mode gives (and what rsync
//! said as its detail). Nothing in the log reaches a shell or a file: the
//! client's module name is matched against the policy's names and shown
//! escaped.

use crate::deny::{DenyReason, shown};

/// What rsync's daemon logged about the client's module line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonSaid {
    /// A module listing (`host::`).
    Listing,
    /// No module by this name in the config (the name as the client sent
    /// it).
    UnknownModule(Vec<u8>),
    /// The module's `max connections` (this many) were all taken; rsync
    /// does not say which module.
    MaxConnections(u32),
}

/// Read the daemon's log: lines `YYYY/MM/DD HH:MM:SS [PID] MESSAGE`. Only
/// the daemon's own process (`pid`, the gate's child) answers the module
/// line, so other processes' lines are passed over; its first line after
/// the connection's (`connect from`, `rsync allowed access on module`)
/// says what became of the module line, or nothing did. Later lines are
/// not looked at: in a module with `transfer_log` the daemon goes on
/// logging there, and what it logs then may be a client's doing (`-v`
/// names a push sends).
pub fn parse(log: &[u8], pid: u32) -> Option<DaemonSaid> {
    let tag = format!("[{pid}] ");
    log.split(|&b| b == b'\n')
        .filter_map(|line| {
            let at = line.windows(tag.len()).position(|w| w == tag.as_bytes())?;
            line.get(at + tag.len()..)
        })
        .find(|message| {
            !message.starts_with(b"connect from ")
                && !message.starts_with(b"rsync allowed access on module ")
        })
        .and_then(said)
}

fn said(message: &[u8]) -> Option<DaemonSaid> {
    if message.starts_with(b"module-list request from ") {
        return Some(DaemonSaid::Listing);
    }
    if let Some(rest) = message.strip_prefix(b"unknown module '") {
        const TRIED: &[u8] = b"' tried from ";
        let end = rest.windows(TRIED.len()).rposition(|w| w == TRIED)?;
        return Some(DaemonSaid::UnknownModule(unescape(rest.get(..end)?)));
    }
    let rest = message.strip_prefix(b"max connections (")?;
    let n = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if rest.get(n..)? != b") reached" {
        return None;
    }
    let n = std::str::from_utf8(rest.get(..n)?).ok()?.parse().ok()?;
    Some(DaemonSaid::MaxConnections(n))
}

/// rsync writes a control byte (and a backslash that would look like such
/// an escape) into its log as `\#` and three octal digits: undo that.
fn unescape(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'\\'
            && b.get(i + 1) == Some(&b'#')
            && let Some(d) = b.get(i + 2..i + 5)
            && d.iter().all(|x| (b'0'..=b'7').contains(x))
            && let Ok(v) = u8::from_str_radix(&String::from_utf8_lossy(d), 8)
        {
            out.push(v);
            i += 5;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// A module of the generated config.
#[derive(Debug, Clone, Copy)]
pub struct Offered<'a> {
    pub name: &'a str,
    pub max_connections: u32,
}

/// The gate's record of a refusal the daemon made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonRefusal {
    /// What checked mode refuses the same module with.
    pub reason: DenyReason,
    /// The module(s) concerned.
    pub modules: Vec<String>,
    /// The module as the client named it (escaped), when known.
    pub request: Option<String>,
    /// What rsync said (escaped).
    pub said: String,
}

/// The refusal for what the daemon said: an unknown name is refused as
/// checked mode refuses it (`module_unsafe`, `module_missing` or `module_contains_home` for a
/// module of the client's left out of the config, `left_out`;
/// `module_not_available` for any other name); `max connections` is
/// `busy` for the module of the config (`offered`) with that limit, or, when
/// several have it, the one whose slots are all taken (`full`); a listing
/// is no refusal.
pub fn refusal(
    said: &DaemonSaid,
    left_out: &[DenyReason],
    offered: &[Offered<'_>],
    full: &dyn Fn(&Offered<'_>) -> bool,
) -> Option<DaemonRefusal> {
    match said {
        DaemonSaid::Listing => None,
        DaemonSaid::UnknownModule(name) => {
            let name_shown = shown(name);
            let reason = left_out
                .iter()
                .find(|r| r.module().map(str::as_bytes) == Some(name.as_slice()))
                .cloned()
                .unwrap_or_else(|| DenyReason::ModuleNotAvailable(name_shown.clone()));
            Some(DaemonRefusal {
                reason,
                modules: vec![name_shown.clone()],
                request: Some(name_shown.clone()),
                said: format!("unknown module '{name_shown}'"),
            })
        }
        DaemonSaid::MaxConnections(n) => {
            let limited: Vec<&Offered<'_>> =
                offered.iter().filter(|m| m.max_connections > 0).collect();
            let with_n: Vec<&Offered<'_>> = limited
                .iter()
                .copied()
                .filter(|m| m.max_connections == *n)
                .collect();
            // No module with that limit: the policy changed under the
            // session; any limited module may be the one.
            let candidates = if with_n.is_empty() { limited } else { with_n };
            let full_ones: Vec<&Offered<'_>> =
                candidates.iter().copied().filter(|m| full(m)).collect();
            let chosen = match (candidates.len(), full_ones.len()) {
                (0, _) => return None,
                (1, _) | (_, 0) => candidates,
                _ => full_ones,
            };
            let names: Vec<String> = chosen.iter().map(|m| m.name.to_string()).collect();
            // Two or more it could be: the message names them all ("module
            // 'a' or 'b' is at its connection limit").
            Some(DaemonRefusal {
                reason: DenyReason::Busy(names.join("' or '")),
                request: match names.as_slice() {
                    [one] => Some(one.clone()),
                    _ => None,
                },
                modules: names,
                said: format!("max connections ({n}) reached"),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(lines: &[&str]) -> Vec<u8> {
        lines
            .iter()
            .flat_map(|l| format!("{l}\n").into_bytes())
            .collect()
    }

    #[test]
    fn reads_what_the_daemon_said() {
        let connect = "2026/12/01 16:59:57 [700] connect from UNDETERMINED (127.0.0.1)";
        for (lines, want) in [
            (vec![connect], None),
            (
                vec![
                    connect,
                    "2026/12/01 16:59:57 [700] module-list request from UNDETERMINED (127.0.0.1)",
                ],
                Some(DaemonSaid::Listing),
            ),
            (
                vec![
                    connect,
                    "2026/12/01 16:59:57 [700] unknown module 'nosuch' tried from UNDETERMINED (127.0.0.1)",
                ],
                Some(DaemonSaid::UnknownModule(b"nosuch".to_vec())),
            ),
            // rsync escapes control bytes (and \#ddd look-alikes); a name
            // may itself hold "' tried from ".
            (
                vec![
                    "2026/12/01 16:59:57 [700] unknown module 'a\\#033[2J' tried from x (y)' tried from UNDETERMINED (127.0.0.1)",
                ],
                Some(DaemonSaid::UnknownModule(
                    b"a\x1b[2J' tried from x (y)".to_vec(),
                )),
            ),
            (
                vec!["2026/12/01 16:59:57 [700] unknown module 'b\\#134#123\\#' tried from U (1)"],
                Some(DaemonSaid::UnknownModule(b"b\\#123\\#".to_vec())),
            ),
            (
                vec![
                    connect,
                    "2026/12/01 16:59:57 [700] max connections (2) reached",
                ],
                Some(DaemonSaid::MaxConnections(2)),
            ),
            // Another process's lines, and lines that only look alike.
            (
                vec![
                    "2026/12/01 16:59:57 [701] unknown module 'x' tried from U (1)",
                    "2026/12/01 16:59:57 [7000] max connections (2) reached",
                    "2026/12/01 16:59:57 [700] max connections (2) reached soon",
                    "2026/12/01 16:59:57 [700] max connections () reached",
                    "2026/12/01 16:59:57 [700] unknown module 'x' from U (1)",
                    "garbage \u{0} [700]",
                ],
                None,
            ),
            // The first answer counts.
            (
                vec![
                    "2026/12/01 16:59:57 [700] max connections (1) reached",
                    "2026/12/01 16:59:57 [700] unknown module 'x' tried from U (1)",
                ],
                Some(DaemonSaid::MaxConnections(1)),
            ),
            // A module chosen: what follows (a transfer log, with a
            // client's names) is not the module line's answer.
            (
                vec![
                    connect,
                    "2026/12/01 16:59:57 [700] rsync allowed access on module up from U (1)",
                    "2026/12/01 16:59:57 [700] rsync to up/ from UNDETERMINED (127.0.0.1)",
                    "2026/12/01 16:59:57 [700] receiving file list",
                    "2026/12/01 16:59:57 [700] unknown module 'www' tried from U (1)",
                    "2026/12/01 16:59:57 [700] max connections (2) reached",
                ],
                None,
            ),
            (
                vec![
                    connect,
                    "2026/12/01 16:59:57 [700] rsync allowed access on module up from U (1)",
                    "2026/12/01 16:59:57 [700] max connections (2) reached",
                ],
                Some(DaemonSaid::MaxConnections(2)),
            ),
        ] {
            assert_eq!(parse(&log(&lines), 700), want, "{lines:?}");
        }
        assert_eq!(parse(b"", 1), None);
        assert_eq!(parse(b"\xff\xfe[1] \n", 1), None);
    }

    fn unsafe_www() -> DenyReason {
        DenyReason::ModuleUnsafe {
            module: "www".into(),
            why: "/srv/www is writable by others (mode 777)".into(),
        }
    }

    /// (what the daemon said, the refusal's code and message, modules,
    /// request)
    #[test]
    fn refusals_are_checked_modes() {
        let offered = [
            Offered {
                name: "up",
                max_connections: 2,
            },
            Offered {
                name: "backup",
                max_connections: 2,
            },
            Offered {
                name: "drop",
                max_connections: 5,
            },
            Offered {
                name: "pub",
                max_connections: 0,
            },
        ];
        let left_out = [unsafe_www(), DenyReason::ModuleContainsHome("home".into())];
        let none_full = |_: &Offered<'_>| false;
        let backup_full = |m: &Offered<'_>| m.name == "backup";
        let all_full = |_: &Offered<'_>| true;
        type Full<'f> = &'f dyn Fn(&Offered<'_>) -> bool;
        type Want<'w> = Option<(&'w str, &'w str, &'w [&'w str], Option<&'w str>)>;
        let cases: Vec<(DaemonSaid, Full<'_>, Want<'_>)> = vec![
            (DaemonSaid::Listing, &none_full, None),
            (
                DaemonSaid::UnknownModule(b"nosuch".to_vec()),
                &none_full,
                Some((
                    "module_not_available",
                    "no module 'nosuch' is available to this key",
                    &["nosuch"],
                    Some("nosuch"),
                )),
            ),
            (
                DaemonSaid::UnknownModule(b"ev\x1bil\\".to_vec()),
                &none_full,
                Some((
                    "module_not_available",
                    "no module 'ev\\u{1b}il\\\\' is available to this key",
                    &["ev\\u{1b}il\\\\"],
                    Some("ev\\u{1b}il\\\\"),
                )),
            ),
            (
                DaemonSaid::UnknownModule(b"www".to_vec()),
                &none_full,
                Some((
                    "module_unsafe",
                    "module 'www' is not safe to serve (the server's audit log says why)",
                    &["www"],
                    Some("www"),
                )),
            ),
            (
                DaemonSaid::UnknownModule(b"home".to_vec()),
                &none_full,
                Some((
                    "module_contains_home",
                    "module 'home' is writable and contains this account's home directory files",
                    &["home"],
                    Some("home"),
                )),
            ),
            (
                DaemonSaid::MaxConnections(5),
                &none_full,
                Some((
                    "busy",
                    "module 'drop' is at its connection limit; try again later",
                    &["drop"],
                    Some("drop"),
                )),
            ),
            (
                DaemonSaid::MaxConnections(2),
                &backup_full,
                Some((
                    "busy",
                    "module 'backup' is at its connection limit; try again later",
                    &["backup"],
                    Some("backup"),
                )),
            ),
            (
                DaemonSaid::MaxConnections(2),
                &all_full,
                Some((
                    "busy",
                    "module 'up' or 'backup' is at its connection limit; try again later",
                    &["up", "backup"],
                    None,
                )),
            ),
            (
                DaemonSaid::MaxConnections(2),
                &none_full,
                Some((
                    "busy",
                    "module 'up' or 'backup' is at its connection limit; try again later",
                    &["up", "backup"],
                    None,
                )),
            ),
            (
                DaemonSaid::MaxConnections(7),
                &backup_full,
                Some((
                    "busy",
                    "module 'backup' is at its connection limit; try again later",
                    &["backup"],
                    Some("backup"),
                )),
            ),
        ];
        for (said, full, want) in cases {
            let got = refusal(&said, &left_out, &offered, full);
            let got = got.as_ref().map(|r| {
                (
                    r.reason.code(),
                    r.reason.to_string(),
                    r.modules.clone(),
                    r.request.clone(),
                )
            });
            let want = want.map(|(code, message, modules, request)| {
                (
                    code,
                    message.to_string(),
                    modules.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
                    request.map(String::from),
                )
            });
            assert_eq!(got, want, "{said:?}");
        }
        // No limited module at all: nothing to blame.
        assert_eq!(
            refusal(
                &DaemonSaid::MaxConnections(2),
                &[],
                &offered[3..],
                &none_full
            ),
            None
        );
        // The unsafe module's own detail is kept for the record.
        let r = refusal(
            &DaemonSaid::UnknownModule(b"www".to_vec()),
            &left_out,
            &offered,
            &none_full,
        )
        .unwrap();
        assert_eq!(r.reason, unsafe_www());
        assert_eq!(r.said, "unknown module 'www'");
    }
}
