//! Client source addresses: single addresses and CIDR blocks.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address block such as `198.51.100.0/24` or `2001:db8::/32`; a bare
/// address is a block of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Does the block contain `ip`? An IPv4-mapped IPv6 address
    /// (`::ffff:192.0.2.1`) is treated as the IPv4 address it carries.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses become plain IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr_text, prefix_text) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| format!("'{s}' is not an IP address or CIDR block"))?;
        let addr = canonical(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            None => max,
            Some(p) => {
                let ok = !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit());
                let n: u8 = if ok {
                    p.parse().unwrap_or(u8::MAX)
                } else {
                    u8::MAX
                };
                if n > max {
                    return Err(format!(
                        "'{s}': the prefix length must be a number from 0 to {max}"
                    ));
                }
                n
            }
        };
        let net = IpNet { addr, prefix };
        if !net.contains(addr) || net.masked() != addr {
            return Err(format!(
                "'{s}' has host bits set (did you mean {}/{prefix}?)",
                net.masked()
            ));
        }
        Ok(net)
    }
}

impl IpNet {
    fn masked(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        }
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let max = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix == max {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn matching_table() {
        let table: &[(&str, &str, bool)] = &[
            ("192.0.2.10", "192.0.2.10", true),
            ("192.0.2.10", "192.0.2.11", false),
            // The longest prefixes, written out: one address.
            ("192.0.2.10/32", "192.0.2.10", true),
            ("192.0.2.10/32", "192.0.2.11", false),
            ("2001:db8::1/128", "2001:db8::1", true),
            ("2001:db8::1/128", "2001:db8::2", false),
            ("198.51.100.0/24", "198.51.100.7", true),
            ("198.51.100.0/24", "198.51.101.7", false),
            ("0.0.0.0/0", "203.0.113.9", true),
            ("0.0.0.0/0", "::1", false),
            ("2001:db8::/32", "2001:db8:1::5", true),
            ("2001:db8::/32", "2001:db9::5", false),
            ("::1", "::1", true),
            ("192.0.2.10", "::ffff:192.0.2.10", true),
            ("192.0.2.0/24", "::ffff:192.0.2.99", true),
            ("::ffff:192.0.2.10", "192.0.2.10", true),
            ("::/0", "2001:db8::1", true),
            ("::/0", "192.0.2.1", false),
        ];
        for (n, a, want) in table {
            assert_eq!(net(n).contains(ip(a)), *want, "{n} contains {a}");
        }
    }

    #[test]
    fn rejects_bad_blocks() {
        for bad in [
            "",
            "x",
            "192.0.2.1/33",
            "192.0.2.1/",
            "192.0.2.1/-1",
            "::1/129",
            "192.0.2.1/24",
            "host.example",
            "192.0.2.0/2x",
            "192.0.2.0/0024",
        ] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn displays_compactly() {
        assert_eq!(net("192.0.2.10").to_string(), "192.0.2.10");
        assert_eq!(net("198.51.100.0/24").to_string(), "198.51.100.0/24");
        assert_eq!(net("2001:db8::/32").to_string(), "2001:db8::/32");
    }
}
