//! `[gate] journald = true`: each audit record also as a structured entry
//! in the systemd journal, sent as one datagram in the journal's native
//! protocol to `/run/systemd/journal/socket` (when it exists). Best effort,
//! like syslog: the audit log is the authoritative record, and a missing or
//! slow journal never blocks a session.
//!
//! Every entry carries `MESSAGE` (the syslog summary), `PRIORITY`,
//! `SYSLOG_IDENTIFIER=rsync-gate`, `SYSLOG_FACILITY` (authpriv), a fixed
//! `MESSAGE_ID` per kind of record ([`ALLOW_ID`], [`DENY_ID`], [`END_ID`])
//! and the record's fields as `RSYNC_GATE_*` ([`fields`]), so that
//! `journalctl RSYNC_GATE_CLIENT=backup01` or
//! `journalctl MESSAGE_ID=DENY_ID` select them.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::audit::{Event, Record, Verdict};

/// journald's socket for the native protocol.
pub const DEFAULT_SOCKET: &str = "/run/systemd/journal/socket";

/// `MESSAGE_ID` of a decision that allowed the request.
pub const ALLOW_ID: &str = "937e4953f5344411baa9f70d04517de8";
/// `MESSAGE_ID` of a refusal.
pub const DENY_ID: &str = "c8168d60e39b4126b16378246af24313";
/// `MESSAGE_ID` of the end of a session, an in-band request or a trigger run.
pub const END_ID: &str = "8601b2642db84e6a937bddf433595e97";

/// Longest value sent for a field; longer ones are cut (the audit log has
/// them whole).
const VALUE_BYTES: usize = 4096;
/// How long a send may wait for room in the socket's buffer.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

const AUTHPRIV: u8 = 10;
const WARNING: u8 = 4;
const INFO: u8 = 6;

/// Set once at start-up by the test-only `--test-journal-socket` switch
/// (debug builds only; a client or a policy cannot set it).
static TEST_SOCKET: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Tests only: send journal entries to `path` instead of journald.
#[cfg(debug_assertions)]
pub fn use_test_socket(path: PathBuf) {
    let _ = TEST_SOCKET.set(path);
}

/// The socket entries go to.
pub fn socket() -> &'static Path {
    TEST_SOCKET
        .get()
        .map_or(Path::new(DEFAULT_SOCKET), PathBuf::as_path)
}

/// A socket connected to journald.
#[derive(Debug)]
pub struct Journald {
    sock: UnixDatagram,
}

impl Journald {
    /// Connect to `path`; None when nothing listens there (no journald).
    pub fn connect(path: &Path) -> Option<Journald> {
        let sock = UnixDatagram::unbound().ok()?;
        sock.connect(path).ok()?;
        sock.set_write_timeout(Some(SEND_TIMEOUT)).ok()?;
        Some(Journald { sock })
    }

    pub fn send(&self, record: &Record) {
        let _ = self.sock.send(&entry(record));
    }
}

/// The record's `RSYNC_GATE_*` fields, in order; `RSYNC_GATE_MODULE` once
/// per module.
pub fn fields(r: &Record) -> Vec<(&'static str, String)> {
    let mut f: Vec<(&'static str, String)> = vec![
        (
            "RSYNC_GATE_EVENT",
            match r.event {
                Event::Decision => "decision",
                Event::End => "end",
                // Not sent: file records go to the audit log only.
                Event::File => "file",
                Event::Other => "other",
            }
            .into(),
        ),
        ("RSYNC_GATE_SESSION", r.session.clone()),
        ("RSYNC_GATE_CLIENT", r.client.clone()),
    ];
    if let Some(s) = &r.source {
        f.push(("RSYNC_GATE_SOURCE", s.addr.clone()));
    }
    match r.decision {
        Some(Verdict::Allow) => f.push(("RSYNC_GATE_DECISION", "allow".into())),
        Some(Verdict::Deny) => f.push(("RSYNC_GATE_DECISION", "deny".into())),
        None => {}
    }
    if let Some(reason) = &r.reason {
        f.push(("RSYNC_GATE_REASON", reason.code.clone()));
    }
    if let Some(m) = r.mode {
        f.push(("RSYNC_GATE_MODE", m.name().into()));
    }
    for m in &r.modules {
        f.push(("RSYNC_GATE_MODULE", m.clone()));
    }
    if let Some(req) = &r.request {
        f.push(("RSYNC_GATE_REQUEST", req.clone()));
    }
    if let Some(t) = &r.trigger {
        f.push(("RSYNC_GATE_TRIGGER", t.name.clone()));
    }
    if let Some(c) = r.exit_status {
        f.push(("RSYNC_GATE_EXIT_STATUS", c.to_string()));
    }
    if let Some(s) = r.signal {
        f.push(("RSYNC_GATE_SIGNAL", s.to_string()));
    }
    if let Some(ms) = r.duration_ms {
        f.push(("RSYNC_GATE_DURATION_MS", ms.to_string()));
    }
    f
}

/// The `MESSAGE_ID` of a record.
pub fn message_id(r: &Record) -> &'static str {
    match (r.event, r.decision) {
        (Event::Decision, Some(Verdict::Deny)) => DENY_ID,
        (Event::Decision, _) => ALLOW_ID,
        _ => END_ID,
    }
}

/// The datagram for `r`: one field per line, `KEY=value`, or, for a value
/// with a newline, `KEY`, a newline, the value's length as a 64-bit
/// little-endian number, the value and a newline.
pub fn entry(r: &Record) -> Vec<u8> {
    let denied = r.decision == Some(Verdict::Deny);
    let mut out = Vec::with_capacity(512);
    put(
        &mut out,
        "MESSAGE",
        &crate::audit::syslog::summary(r),
        2 * VALUE_BYTES,
    );
    put(
        &mut out,
        "PRIORITY",
        &(if denied { WARNING } else { INFO }).to_string(),
        VALUE_BYTES,
    );
    put(&mut out, "SYSLOG_IDENTIFIER", "rsync-gate", VALUE_BYTES);
    put(
        &mut out,
        "SYSLOG_FACILITY",
        &AUTHPRIV.to_string(),
        VALUE_BYTES,
    );
    put(&mut out, "MESSAGE_ID", message_id(r), VALUE_BYTES);
    for (k, v) in fields(r) {
        put(&mut out, k, &v, VALUE_BYTES);
    }
    out
}

fn put(out: &mut Vec<u8>, key: &str, value: &str, max: usize) {
    let value = cut(value, max);
    out.extend_from_slice(key.as_bytes());
    if value.contains('\n') {
        out.push(b'\n');
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
        out.extend_from_slice(value.as_bytes());
    } else {
        out.push(b'=');
        out.extend_from_slice(value.as_bytes());
    }
    out.push(b'\n');
}

/// `s` cut to at most `max` bytes on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// A datagram taken apart again: (key, value) pairs in order. For tests
/// here and in tests/gate (what journald itself would read).
pub fn parse(mut d: &[u8]) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    while !d.is_empty() {
        let nl = d.iter().position(|&b| b == b'\n')?;
        let line = d.get(..nl)?;
        d = d.get(nl + 1..)?;
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            let key = String::from_utf8(line.get(..eq)?.to_vec()).ok()?;
            let value = String::from_utf8(line.get(eq + 1..)?.to_vec()).ok()?;
            out.push((key, value));
        } else {
            let key = String::from_utf8(line.to_vec()).ok()?;
            let len: [u8; 8] = d.get(..8)?.try_into().ok()?;
            let len = usize::try_from(u64::from_le_bytes(len)).ok()?;
            let value = d.get(8..8usize.checked_add(len)?)?;
            let value = String::from_utf8(value.to_vec()).ok()?;
            d = d.get(8 + len..)?;
            if d.first() != Some(&b'\n') {
                return None;
            }
            d = d.get(1..)?;
            out.push((key, value));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Mode, Reason, Source};

    fn refusal() -> Record {
        Record {
            event: Event::Decision,
            session: "18ea9d24-4956".into(),
            client: "backup01".into(),
            source: Some(Source {
                addr: "192.0.2.10".into(),
                port: 40022,
            }),
            decision: Some(Verdict::Deny),
            reason: Some(Reason {
                code: "read_only".into(),
                message: "module 'www' is read-only".into(),
                detail: None,
            }),
            mode: Some(Mode::Receiver),
            modules: vec!["www".into(), "backup".into()],
            ..Default::default()
        }
    }

    fn get<'a>(f: &'a [(String, String)], key: &str) -> Vec<&'a str> {
        f.iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    #[test]
    fn a_refusal_as_journal_fields() {
        let f = parse(&entry(&refusal())).unwrap();
        let keys: Vec<&str> = f.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "MESSAGE",
                "PRIORITY",
                "SYSLOG_IDENTIFIER",
                "SYSLOG_FACILITY",
                "MESSAGE_ID",
                "RSYNC_GATE_EVENT",
                "RSYNC_GATE_SESSION",
                "RSYNC_GATE_CLIENT",
                "RSYNC_GATE_SOURCE",
                "RSYNC_GATE_DECISION",
                "RSYNC_GATE_REASON",
                "RSYNC_GATE_MODE",
                "RSYNC_GATE_MODULE",
                "RSYNC_GATE_MODULE",
            ]
        );
        assert_eq!(
            get(&f, "MESSAGE"),
            [
                "client=backup01 from=192.0.2.10 decision=deny mode=receiver modules=www,backup reason=read_only session=18ea9d24-4956"
            ]
        );
        assert_eq!(get(&f, "PRIORITY"), ["4"]);
        assert_eq!(get(&f, "SYSLOG_IDENTIFIER"), ["rsync-gate"]);
        assert_eq!(get(&f, "SYSLOG_FACILITY"), ["10"]);
        assert_eq!(get(&f, "MESSAGE_ID"), [DENY_ID]);
        assert_eq!(get(&f, "RSYNC_GATE_CLIENT"), ["backup01"]);
        assert_eq!(get(&f, "RSYNC_GATE_MODULE"), ["www", "backup"]);
        assert_eq!(get(&f, "RSYNC_GATE_DECISION"), ["deny"]);
        assert_eq!(get(&f, "RSYNC_GATE_REASON"), ["read_only"]);
        assert_eq!(get(&f, "RSYNC_GATE_SESSION"), ["18ea9d24-4956"]);
    }

    #[test]
    fn kinds_of_records_have_their_ids_and_priorities() {
        let mut r = refusal();
        r.decision = Some(Verdict::Allow);
        r.reason = None;
        let f = parse(&entry(&r)).unwrap();
        assert_eq!(get(&f, "MESSAGE_ID"), [ALLOW_ID]);
        assert_eq!(get(&f, "PRIORITY"), ["6"]);
        assert!(get(&f, "RSYNC_GATE_REASON").is_empty());
        let end = Record {
            event: Event::End,
            session: "s".into(),
            client: "c".into(),
            exit_status: Some(23),
            duration_ms: Some(1500),
            ..Default::default()
        };
        let f = parse(&entry(&end)).unwrap();
        assert_eq!(get(&f, "MESSAGE_ID"), [END_ID]);
        assert_eq!(get(&f, "PRIORITY"), ["6"]);
        assert_eq!(get(&f, "RSYNC_GATE_EVENT"), ["end"]);
        assert_eq!(get(&f, "RSYNC_GATE_EXIT_STATUS"), ["23"]);
        assert_eq!(get(&f, "RSYNC_GATE_DURATION_MS"), ["1500"]);
        assert!(get(&f, "RSYNC_GATE_DECISION").is_empty());
        // Three different ids, each 128 bits in lowercase hex.
        for id in [ALLOW_ID, DENY_ID, END_ID] {
            assert_eq!(id.len(), 32);
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
        }
        assert!(ALLOW_ID != DENY_ID && DENY_ID != END_ID && ALLOW_ID != END_ID);
    }

    #[test]
    fn values_with_newlines_use_the_binary_form() {
        let mut out = Vec::new();
        put(&mut out, "X", "a\nb", 100);
        put(&mut out, "Y", "plain", 100);
        let mut want = b"X\n".to_vec();
        want.extend_from_slice(&3u64.to_le_bytes());
        want.extend_from_slice(b"a\nb\nY=plain\n");
        assert_eq!(out, want);
        assert_eq!(
            parse(&out).unwrap(),
            [("X".into(), "a\nb".into()), ("Y".into(), "plain".into())]
        );
        // A request cut to its bound, on a character boundary.
        let mut r = refusal();
        r.request = Some(format!("www/{}", "é".repeat(VALUE_BYTES)));
        let f = parse(&entry(&r)).unwrap();
        let req = get(&f, "RSYNC_GATE_REQUEST")[0];
        assert!(
            req.len() <= VALUE_BYTES && req.len() > VALUE_BYTES - 2,
            "{}",
            req.len()
        );
        // Control characters from a client are escaped before they get here
        // (the summary, like syslog's, shows them as \n).
        r.client = "a\nb".into();
        let f = parse(&entry(&r)).unwrap();
        assert!(get(&f, "MESSAGE")[0].contains("client=a\\nb "));
        assert_eq!(get(&f, "RSYNC_GATE_CLIENT"), ["a\nb"]);
    }

    #[test]
    fn sends_to_a_datagram_socket() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("socket");
        let server = UnixDatagram::bind(&path).unwrap();
        let j = Journald::connect(&path).unwrap();
        j.send(&refusal());
        let mut buf = vec![0u8; 65536];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(buf[..n], entry(&refusal()));
        assert!(Journald::connect(&d.path().join("missing")).is_none());
    }
}
