//! `SSH_CONNECTION`: where the client connects from. sshd sets it to
//! `client_ip client_port server_ip server_port`; anything else is not a
//! connection the gate can vouch for.

use std::net::IpAddr;

/// One end of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conn {
    pub addr: IpAddr,
    pub port: u16,
}

/// The parsed connection: the client end (what `from` rules check) and,
/// when sshd said so, the server end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection {
    pub client: Conn,
    pub server: Option<Conn>,
}

impl Connection {
    /// Parse an `SSH_CONNECTION` value, strictly: four fields separated by
    /// single spaces, two addresses and two ports.
    pub fn parse(raw: &[u8]) -> Option<Connection> {
        let text = std::str::from_utf8(raw).ok()?;
        let parts: Vec<&str> = text.split(' ').collect();
        let [caddr, cport, saddr, sport] = parts.as_slice() else {
            return None;
        };
        Some(Connection {
            client: Conn {
                addr: caddr.parse().ok()?,
                port: cport.parse().ok()?,
            },
            server: Some(Conn {
                addr: saddr.parse().ok()?,
                port: sport.parse().ok()?,
            }),
        })
    }

    /// Only the client's address is known (`explain --from`).
    pub fn from_client(addr: IpAddr) -> Connection {
        Connection {
            client: Conn { addr, port: 0 },
            server: None,
        }
    }

    /// The value rsync's environment gets: rebuilt from the parsed parts,
    /// never the client-influenced original text; none when only the
    /// client's address is known.
    pub fn env_value(&self) -> Option<String> {
        let s = self.server?;
        Some(format!(
            "{} {} {} {}",
            self.client.addr, self.client.port, s.addr, s.port
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_sshd_sets_and_nothing_else() {
        let c = Connection::parse(b"192.0.2.10 53422 192.0.2.1 22").unwrap();
        assert_eq!(c.client.addr.to_string(), "192.0.2.10");
        assert_eq!(c.client.port, 53422);
        assert_eq!(
            c.env_value().as_deref(),
            Some("192.0.2.10 53422 192.0.2.1 22")
        );
        assert!(Connection::parse(b"::1 1 ::1 22").is_some());
        assert!(Connection::parse(b"::ffff:192.0.2.1 1 ::1 22").is_some());
        for bad in [
            &b""[..],
            b"192.0.2.10",
            b"192.0.2.10 x 1.2.3.4 22",
            b"192.0.2.10 1 1.2.3.4 22 extra",
            b"192.0.2.10  1 1.2.3.4 22",
            b"host 1 1.2.3.4 22",
            b"192.0.2.10 70000 1.2.3.4 22",
            b"192.0.2.10 1 1.2.3.4 22\n",
        ] {
            assert!(Connection::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn a_client_address_alone_gives_no_environment_value() {
        let c = Connection::from_client("192.0.2.7".parse().unwrap());
        assert_eq!(c.env_value(), None);
        assert_eq!(c.client.port, 0);
    }
}
