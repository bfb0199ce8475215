//! Address rules: rsyncd's `hosts allow`/`hosts deny` and sshd's `from=`
//! patterns, as sets of address blocks, and the set arithmetic that turns
//! "allow these, deny those" into the one allow-list a client's `from` is.
//!
//! Only what can be stated exactly as addresses is carried over. A pattern
//! that names hosts (a hostname, a wildcard, a netgroup) says nothing about
//! addresses, so it is reported, and the result is always the *narrower*
//! choice: an allow-pattern that cannot be carried over is left out (fewer
//! hosts get in), a deny-pattern that cannot be carried over makes the whole
//! rule unusable (no host is known to be outside it).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address block, masked: `len` leading bits of `bits` (IPv4 addresses
/// in the low 32 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Block {
    v6: bool,
    bits: u128,
    len: u8,
}

impl Block {
    fn max(v6: bool) -> u8 {
        if v6 { 128 } else { 32 }
    }

    fn mask(v6: bool, len: u8) -> u128 {
        let max = u32::from(Self::max(v6));
        let ones = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
        // Keep the block's bits in the low `max` bits.
        if v6 {
            ones
        } else {
            (ones >> (128 - max)) & u128::from(u32::MAX)
        }
    }

    /// The block of `len` bits around `addr` (host bits cleared).
    pub fn new(addr: IpAddr, len: u8) -> Option<Block> {
        let (v6, bits) = match addr {
            IpAddr::V4(a) => (false, u128::from(u32::from(a))),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                // The gate treats IPv4-mapped addresses as IPv4.
                Some(v4) if len >= 96 => return Block::new(IpAddr::V4(v4), len - 96),
                _ => (true, u128::from(a)),
            },
        };
        if len > Self::max(v6) {
            return None;
        }
        Some(Block {
            v6,
            bits: bits & Self::mask(v6, len),
            len,
        })
    }

    /// Every address of one family.
    pub fn all(v6: bool) -> Block {
        Block {
            v6,
            bits: 0,
            len: 0,
        }
    }

    /// Does this block contain all of `other`?
    pub fn covers(&self, other: &Block) -> bool {
        self.v6 == other.v6
            && self.len <= other.len
            && other.bits & Self::mask(self.v6, self.len) == self.bits
    }

    /// The two halves (None for a single address).
    fn halves(&self) -> Option<(Block, Block)> {
        if self.len >= Self::max(self.v6) {
            return None;
        }
        let len = self.len + 1;
        let bit = 1u128 << (u32::from(Self::max(self.v6)) - u32::from(len));
        Some((
            Block { len, ..*self },
            Block {
                len,
                bits: self.bits | bit,
                ..*self
            },
        ))
    }

    /// The block of which this is a half.
    fn parent(&self) -> Option<Block> {
        let len = self.len.checked_sub(1)?;
        Some(Block {
            v6: self.v6,
            bits: self.bits & Self::mask(self.v6, len),
            len,
        })
    }
}

impl fmt::Display for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addr = if self.v6 {
            IpAddr::V6(Ipv6Addr::from(self.bits))
        } else {
            IpAddr::V4(Ipv4Addr::from(u32::try_from(self.bits).unwrap_or(0)))
        };
        if self.len == Self::max(self.v6) {
            write!(f, "{addr}")
        } else {
            write!(f, "{addr}/{}", self.len)
        }
    }
}

/// The smallest list of blocks covering the same addresses: sorted, no
/// block inside another, sibling halves joined.
pub fn normalize(mut blocks: Vec<Block>) -> Vec<Block> {
    loop {
        // Sorted, a block comes before every block inside it, and the
        // blocks inside one follow it: one pass drops them.
        blocks.sort();
        let mut out: Vec<Block> = Vec::with_capacity(blocks.len());
        for b in blocks {
            if !out.last().is_some_and(|l| l.covers(&b)) {
                out.push(b);
            }
        }
        let mut joined = false;
        let mut merged: Vec<Block> = Vec::with_capacity(out.len());
        let mut i = 0;
        while let Some(b) = out.get(i) {
            if let (Some(next), Some(parent)) = (out.get(i + 1), b.parent())
                && b.len == next.len
                && next.parent() == Some(parent)
            {
                merged.push(parent);
                joined = true;
                i += 2;
                continue;
            }
            merged.push(*b);
            i += 1;
        }
        blocks = merged;
        if !joined {
            return blocks;
        }
    }
}

/// The addresses of `from` that are in none of `minus`.
pub fn subtract(from: &[Block], minus: &[Block]) -> Vec<Block> {
    fn go(b: Block, minus: &[Block], out: &mut Vec<Block>) {
        if minus.iter().any(|m| m.covers(&b)) {
            return;
        }
        // Only what lies inside b matters below it.
        let inside: Vec<Block> = minus.iter().filter(|m| b.covers(m)).copied().collect();
        if inside.is_empty() {
            out.push(b);
            return;
        }
        // Split (at most 128 deep; each half sees only its part).
        if let Some((lo, hi)) = b.halves() {
            go(lo, &inside, out);
            go(hi, &inside, out);
        }
    }
    let mut out = Vec::new();
    for b in from {
        go(*b, minus, &mut out);
    }
    normalize(out)
}

/// The addresses in both.
pub fn intersect(a: &[Block], b: &[Block]) -> Vec<Block> {
    let mut out = Vec::new();
    for x in a {
        for y in b {
            if x.covers(y) {
                out.push(*y);
            } else if y.covers(x) {
                out.push(*x);
            }
        }
    }
    normalize(out)
}

/// Who may connect: anyone, or the addresses of these blocks (possibly
/// none at all).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reach {
    Anywhere,
    Only(Vec<Block>),
}

impl Reach {
    /// From a list of blocks: every address of both families is anywhere.
    pub fn only(blocks: Vec<Block>) -> Reach {
        let blocks = normalize(blocks);
        if blocks.contains(&Block::all(false)) && blocks.contains(&Block::all(true)) {
            Reach::Anywhere
        } else {
            Reach::Only(blocks)
        }
    }

    pub fn intersect(&self, other: &Reach) -> Reach {
        match (self, other) {
            (Reach::Anywhere, r) | (r, Reach::Anywhere) => r.clone(),
            (Reach::Only(a), Reach::Only(b)) => Reach::only(intersect(a, b)),
        }
    }

    /// No address at all.
    pub fn is_nobody(&self) -> bool {
        matches!(self, Reach::Only(b) if b.is_empty())
    }

    /// The client's `from` (empty: anywhere).
    pub fn policy_from(&self) -> Vec<String> {
        match self {
            Reach::Anywhere => Vec::new(),
            Reach::Only(b) => b.iter().map(ToString::to_string).collect(),
        }
    }
}

/// One pattern of an address rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// Matches exactly these addresses.
    Net(Block),
    /// Matches every connecting host.
    Everyone,
    /// Names hosts, not addresses: cannot be carried over (the text says why).
    Hosts(String),
}

/// Parse an address as rsync's `hosts allow` does (`getaddrinfo` with
/// numeric hosts): dotted IPv4 or IPv6, no scope.
fn parse_addr(s: &str) -> Option<IpAddr> {
    s.parse().ok()
}

/// A netmask written as an address (`255.255.255.0`) as a prefix length,
/// if its one bits are contiguous.
fn mask_len(mask: IpAddr, v6: bool) -> Option<u8> {
    let (bits, max) = match mask {
        IpAddr::V4(m) if !v6 => (u128::from(u32::from(m)) << 96, 32u32),
        IpAddr::V6(m) if v6 => (u128::from(m), 128u32),
        _ => return None,
    };
    let ones = bits.leading_ones();
    if bits.checked_shl(ones).unwrap_or(0) != 0 || ones > max {
        return None;
    }
    u8::try_from(ones).ok()
}

/// One token of rsyncd's `hosts allow`/`hosts deny` (rsync's `access.c`):
/// an address, `ADDR/BITS` or `ADDR/MASK` (host bits are ignored, as rsync
/// masks both sides; `/0` matches every address of the family), or else a
/// hostname pattern matched against the reverse-DNS name, which is never
/// empty ("UNKNOWN" when there is none), so `*` matches everyone.
pub fn rsync_pattern(tok: &str) -> Pattern {
    let (addr_text, mask_text) = match tok.split_once('/') {
        Some((a, m)) => (a, Some(m)),
        None => (tok, None),
    };
    let addressy = addr_text.contains(':')
        || (!addr_text.is_empty() && addr_text.bytes().all(|b| b.is_ascii_digit() || b == b'.'));
    if !addressy {
        if !tok.is_empty() && tok.bytes().all(|b| b == b'*') {
            return Pattern::Everyone;
        }
        let what = if tok.starts_with('@') {
            "a netgroup"
        } else if tok.contains(['*', '?', '[']) {
            "a hostname wildcard"
        } else {
            "a hostname"
        };
        return Pattern::Hosts(format!("'{tok}' is {what}; `from` holds addresses only"));
    }
    if addr_text.contains('%') {
        return Pattern::Hosts(format!(
            "'{tok}' has an IPv6 scope, which `from` cannot hold"
        ));
    }
    let Some(addr) = parse_addr(addr_text) else {
        return Pattern::Hosts(format!("'{tok}' is not an address rsync or the gate reads"));
    };
    let v6 = addr.is_ipv6();
    let len = match mask_text {
        None => Block::max(v6),
        Some(m) => match parse_addr(m) {
            Some(mask) if m.contains(['.', ':']) => match mask_len(mask, v6) {
                Some(l) => l,
                None => {
                    return Pattern::Hosts(format!(
                        "'{tok}': the netmask is not a prefix, which `from` cannot hold"
                    ));
                }
            },
            _ => match m.parse::<u8>() {
                Ok(l) if l <= Block::max(v6) => l,
                _ => {
                    // rsync logs "malformed mask" and the token matches
                    // nothing.
                    return Pattern::Hosts(format!(
                        "'{tok}': malformed mask (rsync matches nothing with it)"
                    ));
                }
            },
        },
    };
    match Block::new(addr, len) {
        Some(b) => Pattern::Net(b),
        None => Pattern::Hosts(format!("'{tok}' is not an address block")),
    }
}

/// One pattern of sshd's `from="..."` (OpenSSH `match_host_and_ip`): a
/// CIDR block or address is matched against the client's address; anything
/// else is a wildcard pattern matched against the address *and* the
/// hostname. `*` and whole trailing IPv4 octets (`192.0.2.*`) are exact
/// address blocks; other wildcards and names are not.
pub fn ssh_pattern(pat: &str) -> Pattern {
    if let Ok(net) = pat.parse::<crate::policy::IpNet>() {
        let (addr_text, len) = match pat.split_once('/') {
            Some((a, l)) => (a, l.parse::<u8>().ok()),
            None => (pat, None),
        };
        if let Some(addr) = parse_addr(addr_text) {
            let len = len.unwrap_or(Block::max(addr.is_ipv6()));
            if let Some(b) = Block::new(addr, len) {
                return Pattern::Net(b);
            }
        }
        return Pattern::Hosts(format!("'{pat}' ({net}) could not be read"));
    }
    if pat.contains('/') {
        // sshd refuses the whole list ("inconsistent address/mask").
        return Pattern::Hosts(format!("'{pat}' is not an address block sshd accepts"));
    }
    if !pat.is_empty() && pat.bytes().all(|b| b == b'*') {
        return Pattern::Everyone;
    }
    if let Some(prefix) = pat.strip_suffix(".*") {
        let octets: Vec<&str> = prefix.split('.').collect();
        let plain = |o: &&str| {
            !o.is_empty()
                && o.len() <= 3
                && o.bytes().all(|b| b.is_ascii_digit())
                && (o.len() == 1 || !o.starts_with('0'))
                && o.parse::<u16>().is_ok_and(|n| n <= 255)
        };
        if (1..=3).contains(&octets.len()) && octets.iter().all(plain) {
            let mut parts: Vec<&str> = octets.clone();
            parts.resize(4, "0");
            if let Ok(a) = parts.join(".").parse::<Ipv4Addr>()
                && let Some(b) =
                    Block::new(IpAddr::V4(a), u8::try_from(octets.len() * 8).unwrap_or(32))
            {
                return Pattern::Net(b);
            }
        }
    }
    let what = if pat.contains(['*', '?']) {
        "a wildcard pattern"
    } else {
        "a hostname"
    };
    Pattern::Hosts(format!("'{pat}' is {what}; `from` holds addresses only"))
}

/// What an address rule amounts to, and what of it could not be carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub reach: Reach,
    /// Patterns left out (each narrows the result, never widens it).
    pub lost: Vec<String>,
    /// Host bits dropped, wildcards read as blocks, and the like.
    pub notes: Vec<String>,
}

fn blocks_of(patterns: &[Pattern]) -> (Vec<Block>, bool, Vec<String>) {
    let mut blocks = Vec::new();
    let mut everyone = false;
    let mut lost = Vec::new();
    for p in patterns {
        match p {
            Pattern::Net(b) => blocks.push(*b),
            Pattern::Everyone => everyone = true,
            Pattern::Hosts(why) => lost.push(why.clone()),
        }
    }
    if everyone {
        blocks = vec![Block::all(false), Block::all(true)];
    }
    (normalize(blocks), everyone, lost)
}

/// rsyncd's rule (`access.c allow_access`): with `hosts allow`, a host it
/// matches gets in; without `hosts deny` nobody else does; otherwise a host
/// `hosts deny` matches is refused and every other host gets in.
pub fn rsyncd_rule(allow: Option<&str>, deny: Option<&str>) -> Rule {
    let split = |s: &str| -> Vec<Pattern> {
        s.split([' ', ',', '\t'])
            .filter(|t| !t.is_empty())
            .map(|t| rsync_pattern(&t.to_ascii_lowercase()))
            .collect()
    };
    let allow = allow.filter(|s| !s.trim().is_empty()).map(split);
    let deny = deny.filter(|s| !s.trim().is_empty()).map(split);
    let mut lost = Vec::new();
    let notes = Vec::new();
    let allowed: Option<Vec<Block>> = allow.as_ref().map(|a| {
        let (b, _, l) = blocks_of(a);
        lost.extend(l.into_iter().map(|w| format!("hosts allow: {w}: left out")));
        b
    });
    let reach = match (allowed, deny) {
        (None, None) => Reach::Anywhere,
        (Some(a), None) => Reach::only(a),
        (allowed, Some(d)) => {
            let (denied, _, l) = blocks_of(&d);
            let outside_deny = if l.is_empty() {
                subtract(&[Block::all(false), Block::all(true)], &denied)
            } else {
                lost.extend(l.into_iter().map(|w| {
                    format!("hosts deny: {w}: no address is known to be outside it, so only hosts allow's addresses are carried over")
                }));
                Vec::new()
            };
            let mut all = allowed.unwrap_or_default();
            all.extend(outside_deny);
            Reach::only(all)
        }
    };
    Rule { reach, lost, notes }
}

/// sshd's `from="..."` (comma-separated, `!` negates): a host gets in when
/// a positive pattern matches and no negated one does.
pub fn ssh_rule(list: &str) -> Rule {
    let mut plus = Vec::new();
    let mut minus = Vec::new();
    let mut lost = Vec::new();
    let mut notes = Vec::new();
    let mut unknown_minus = false;
    for p in list.split(',') {
        let (neg, p) = match p.strip_prefix('!') {
            Some(r) => (true, r),
            None => (false, p),
        };
        let pat = ssh_pattern(p);
        if let Pattern::Net(b) = &pat
            && p.contains('*')
        {
            notes.push(format!("from=: '{p}' read as {b}"));
        }
        match (neg, pat) {
            (false, Pattern::Hosts(w)) => lost.push(format!("from=: {w}: left out")),
            (false, p) => plus.push(p),
            (true, Pattern::Hosts(w)) => {
                unknown_minus = true;
                lost.push(format!(
                    "from=: !{w}: no address is known to be outside it, so the key is not carried over"
                ));
            }
            (true, p) => minus.push(p),
        }
    }
    let reach = if unknown_minus {
        Reach::Only(Vec::new())
    } else {
        let (p, _, _) = blocks_of(&plus);
        let (m, _, _) = blocks_of(&minus);
        Reach::only(subtract(&p, &m))
    };
    Rule { reach, lost, notes }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(r: &Reach) -> String {
        match r {
            Reach::Anywhere => "anywhere".into(),
            Reach::Only(b) => b
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    #[test]
    fn rsync_tokens() {
        let table: &[(&str, &str)] = &[
            ("192.0.2.10", "192.0.2.10"),
            ("192.0.2.0/24", "192.0.2.0/24"),
            // rsync masks both sides: host bits do not matter.
            ("192.0.2.77/24", "192.0.2.0/24"),
            ("192.0.2.0/255.255.255.0", "192.0.2.0/24"),
            ("10.0.0.0/0", "0.0.0.0/0"),
            ("2001:db8::1", "2001:db8::1"),
            ("2001:db8::/32", "2001:db8::/32"),
            ("2001:db8::/ffff:ffff::", "2001:db8::/32"),
            // getaddrinfo() does not read brackets.
            ("[2001:db8::]", "hosts"),
            ("*", "everyone"),
            ("**", "everyone"),
            ("host.example.org", "hosts"),
            ("*.example.org", "hosts"),
            ("192.0.2.*", "hosts"),
            ("@trusted", "hosts"),
            ("fe80::1%eth0", "hosts"),
            ("192.0.2.0/255.0.255.0", "hosts"),
            ("192.0.2.0/33", "hosts"),
            ("192.0.2.0/x", "hosts"),
            ("10.1", "hosts"),
            ("unknown", "hosts"),
        ];
        for (tok, want) in table {
            let got = match rsync_pattern(tok) {
                Pattern::Net(b) => b.to_string(),
                Pattern::Everyone => "everyone".into(),
                Pattern::Hosts(_) => "hosts".into(),
            };
            assert_eq!(&got, want, "{tok}");
        }
    }

    #[test]
    fn ssh_patterns() {
        let table: &[(&str, &str)] = &[
            ("192.0.2.10", "192.0.2.10"),
            ("198.51.100.0/24", "198.51.100.0/24"),
            ("2001:db8::/48", "2001:db8::/48"),
            ("*", "everyone"),
            ("192.0.2.*", "192.0.2.0/24"),
            ("10.*", "10.0.0.0/8"),
            ("10.1.*", "10.1.0.0/16"),
            ("10.1*", "hosts"),
            ("10.01.*", "hosts"),
            ("300.1.*", "hosts"),
            ("*.example.org", "hosts"),
            ("backup.example.org", "hosts"),
            ("192.0.2.77/24", "hosts"),
            ("192.0.2.?", "hosts"),
        ];
        for (tok, want) in table {
            let got = match ssh_pattern(tok) {
                Pattern::Net(b) => b.to_string(),
                Pattern::Everyone => "everyone".into(),
                Pattern::Hosts(_) => "hosts".into(),
            };
            assert_eq!(&got, want, "{tok}");
        }
    }

    #[test]
    fn rsyncd_rules() {
        // (hosts allow, hosts deny, reach, number of patterns left out)
        let table: &[(Option<&str>, Option<&str>, &str, usize)] = &[
            (None, None, "anywhere", 0),
            (Some(""), None, "anywhere", 0),
            (
                Some("192.0.2.0/24, 198.51.100.7"),
                None,
                "192.0.2.0/24 198.51.100.7",
                0,
            ),
            (
                Some("192.0.2.0/24 host.example.org"),
                None,
                "192.0.2.0/24",
                1,
            ),
            (Some("192.0.2.0/24"), Some("*"), "192.0.2.0/24", 0),
            (
                Some("192.0.2.0/24"),
                Some("0.0.0.0/0 ::/0"),
                "192.0.2.0/24",
                0,
            ),
            // Allowed by the allow-list, or not denied.
            (
                Some("192.0.2.0/24"),
                Some("0.0.0.0/0"),
                "192.0.2.0/24 ::/0",
                0,
            ),
            (None, Some("128.0.0.0/1"), "0.0.0.0/1 ::/0", 0),
            (
                None,
                Some("192.0.2.0/24"),
                "0.0.0.0/1 128.0.0.0/2 192.0.0.0/23 192.0.3.0/24 192.0.4.0/22 192.0.8.0/21 192.0.16.0/20 192.0.32.0/19 192.0.64.0/18 192.0.128.0/17 192.1.0.0/16 192.2.0.0/15 192.4.0.0/14 192.8.0.0/13 192.16.0.0/12 192.32.0.0/11 192.64.0.0/10 192.128.0.0/9 193.0.0.0/8 194.0.0.0/7 196.0.0.0/6 200.0.0.0/5 208.0.0.0/4 224.0.0.0/3 ::/0",
                0,
            ),
            // A denied hostname could be any address: only the allow-list
            // is known to get in.
            (
                Some("192.0.2.0/24"),
                Some("bad.example.org"),
                "192.0.2.0/24",
                1,
            ),
            (None, Some("bad.example.org"), "", 1),
            (Some("*.example.org"), None, "", 1),
            (Some("*"), None, "anywhere", 0),
            (Some("0.0.0.0/0"), None, "0.0.0.0/0", 0),
        ];
        for (allow, deny, want, lost) in table {
            let r = rsyncd_rule(*allow, *deny);
            assert_eq!(list(&r.reach), *want, "allow {allow:?} deny {deny:?}");
            assert_eq!(
                r.lost.len(),
                *lost,
                "allow {allow:?} deny {deny:?}: {:?}",
                r.lost
            );
        }
    }

    #[test]
    fn ssh_rules() {
        let table: &[(&str, &str, usize)] = &[
            ("192.0.2.10", "192.0.2.10", 0),
            (
                "192.0.2.10,198.51.100.0/24",
                "192.0.2.10 198.51.100.0/24",
                0,
            ),
            ("192.0.2.*,!192.0.2.128/25", "192.0.2.0/25", 0),
            (
                "*,!10.0.0.0/8",
                "0.0.0.0/5 8.0.0.0/7 11.0.0.0/8 12.0.0.0/6 16.0.0.0/4 32.0.0.0/3 64.0.0.0/2 128.0.0.0/1 ::/0",
                0,
            ),
            ("host.example.org,192.0.2.10", "192.0.2.10", 1),
            ("host.example.org", "", 1),
            ("192.0.2.0/24,!bad.example.org", "", 1),
            ("*", "anywhere", 0),
        ];
        for (from, want, lost) in table {
            let r = ssh_rule(from);
            assert_eq!(list(&r.reach), *want, "{from}");
            assert_eq!(r.lost.len(), *lost, "{from}: {:?}", r.lost);
        }
    }

    /// normalize, subtract and intersect against brute force over the 256
    /// addresses of 10.0.0.0/24, for pseudo-random block lists.
    #[test]
    fn set_arithmetic_matches_brute_force() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut blocks = |n: u64| -> Vec<Block> {
            (0..next() % n)
                .map(|_| {
                    let len = 24 + u8::try_from(next() % 9).unwrap();
                    let addr = Ipv4Addr::new(10, 0, 0, u8::try_from(next() % 256).unwrap());
                    Block::new(IpAddr::V4(addr), len).unwrap()
                })
                .collect()
        };
        let set = |bs: &[Block]| -> Vec<bool> {
            (0..=255u8)
                .map(|i| {
                    let a = Block::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)), 32).unwrap();
                    bs.iter().any(|b| b.covers(&a))
                })
                .collect()
        };
        for _ in 0..500 {
            let (a, b) = (blocks(12), blocks(12));
            let n = normalize(a.clone());
            assert_eq!(set(&n), set(&a), "{a:?}");
            assert_eq!(normalize(n.clone()), n);
            assert!(n.windows(2).all(|w| !w[0].covers(&w[1])), "{n:?}");
            let want: Vec<bool> = set(&a).iter().zip(set(&b)).map(|(x, y)| *x && !y).collect();
            assert_eq!(set(&subtract(&a, &b)), want, "{a:?} - {b:?}");
            let want: Vec<bool> = set(&a).iter().zip(set(&b)).map(|(x, y)| *x && y).collect();
            assert_eq!(set(&intersect(&a, &b)), want, "{a:?} & {b:?}");
        }
    }

    #[test]
    fn set_arithmetic() {
        let b = |s: &str| match rsync_pattern(s) {
            Pattern::Net(b) => b,
            _ => panic!("{s}"),
        };
        assert_eq!(
            normalize(vec![b("192.0.2.0/25"), b("192.0.2.128/25"), b("192.0.2.7")]),
            vec![b("192.0.2.0/24")]
        );
        assert_eq!(
            intersect(
                &[b("192.0.2.0/24"), b("2001:db8::/32")],
                &[b("192.0.2.7"), b("10.0.0.0/8")]
            ),
            vec![b("192.0.2.7")]
        );
        assert_eq!(subtract(&[b("192.0.2.0/24")], &[b("192.0.2.0/24")]), vec![]);
        assert_eq!(
            subtract(&[b("192.0.2.0/24")], &[b("192.0.2.0/25")]),
            vec![b("192.0.2.128/25")]
        );
        // IPv4-mapped IPv6 is IPv4, as the gate reads it.
        assert_eq!(b("::ffff:192.0.2.7"), b("192.0.2.7"));
        assert_eq!(
            Reach::Anywhere.intersect(&Reach::Only(vec![b("192.0.2.7")])),
            Reach::Only(vec![b("192.0.2.7")])
        );
        // Every rendered block is one the policy accepts.
        for s in [
            "0.0.0.0/0",
            "::/0",
            "192.0.2.128/25",
            "2001:db8::/32",
            "192.0.2.7",
        ] {
            assert!(
                b(s).to_string().parse::<crate::policy::IpNet>().is_ok(),
                "{s}"
            );
        }
    }
}
