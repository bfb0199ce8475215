//! `[gate] syslog = true`: a one-line summary of each decision and session
//! end to the local syslog (facility authpriv). Best effort: the audit log is
//! the authoritative record, and a missing syslog never blocks a session.

use std::os::unix::net::UnixDatagram;
use std::path::Path;

use crate::audit::{Event, Record, Verdict};

/// The local syslog socket.
pub const DEFAULT_SOCKET: &str = "/dev/log";

const AUTHPRIV: u8 = 10;
const WARNING: u8 = 4;
const INFO: u8 = 6;

/// A connected syslog socket.
#[derive(Debug)]
pub struct Syslog {
    sock: UnixDatagram,
}

impl Syslog {
    /// Connect to `path` (normally `/dev/log`); None when unavailable.
    pub fn connect(path: &Path) -> Option<Syslog> {
        let sock = UnixDatagram::unbound().ok()?;
        sock.connect(path).ok()?;
        Some(Syslog { sock })
    }

    pub fn send(&self, record: &Record) {
        let _ = self.sock.send(line(record).as_bytes());
    }
}

/// `<PRI>rsync-gate[PID]: summary`, without control characters.
pub fn line(r: &Record) -> String {
    let denied = r.decision == Some(Verdict::Deny);
    let pri = AUTHPRIV * 8 + if denied { WARNING } else { INFO };
    format!("<{pri}>rsync-gate[{}]: {}", std::process::id(), summary(r))
}

/// The one-line summary of a record (`client=... from=... decision=...`),
/// without control characters: syslog's message, and the journal's.
pub fn summary(r: &Record) -> String {
    let source = r.source.as_ref().map(|s| s.addr.as_str()).unwrap_or("-");
    let mut msg = format!("client={} from={source}", r.client);
    match r.decision {
        Some(Verdict::Allow) => msg.push_str(" decision=allow"),
        Some(Verdict::Deny) => msg.push_str(" decision=deny"),
        None => {}
    }
    if r.event == Event::End {
        msg.push_str(" event=end");
    }
    if let Some(m) = r.mode {
        msg.push_str(&format!(" mode={}", m.name()));
    }
    if !r.modules.is_empty() {
        msg.push_str(&format!(" modules={}", r.modules.join(",")));
    }
    if let Some(req) = &r.request {
        msg.push_str(&format!(" request={req}"));
    }
    if let Some(reason) = &r.reason {
        msg.push_str(&format!(" reason={}", reason.code));
    }
    if let Some(c) = r.exit_status {
        msg.push_str(&format!(" exit={c}"));
    }
    if let Some(s) = r.signal {
        msg.push_str(&format!(" signal={s}"));
    }
    if let Some(ms) = r.duration_ms {
        msg.push_str(&format!(" ms={ms}"));
    }
    msg.push_str(&format!(" session={}", r.session));
    crate::escape::display(&msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Mode, Reason, Source};

    #[test]
    fn formats_summaries() {
        let r = Record {
            event: Event::Decision,
            session: "s1".into(),
            client: "backup01".into(),
            source: Some(Source {
                addr: "192.0.2.10".into(),
                port: 5,
            }),
            decision: Some(Verdict::Deny),
            reason: Some(Reason {
                code: "read_only".into(),
                message: "x".into(),
                detail: None,
            }),
            mode: Some(Mode::Receiver),
            modules: vec!["www".into()],
            ..Default::default()
        };
        let l = line(&r);
        assert!(l.starts_with("<84>rsync-gate["), "{l}");
        assert!(
            l.ends_with("client=backup01 from=192.0.2.10 decision=deny mode=receiver modules=www reason=read_only session=s1"),
            "{l}"
        );
        let mut r = r;
        r.decision = Some(Verdict::Allow);
        r.reason = None;
        r.client = "a\nb\u{202e}".into();
        let l = line(&r);
        assert!(l.starts_with("<86>"), "{l}");
        assert!(l.contains("client=a\\nb\\u{202e} "), "{l}");
    }

    #[test]
    fn sends_to_a_datagram_socket() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("log");
        let server = UnixDatagram::bind(&path).unwrap();
        let s = Syslog::connect(&path).unwrap();
        s.send(&Record {
            client: "c".into(),
            ..Default::default()
        });
        let mut buf = [0u8; 512];
        let n = server.recv(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).contains("client=c"));
        assert!(Syslog::connect(&d.path().join("missing")).is_none());
    }
}
