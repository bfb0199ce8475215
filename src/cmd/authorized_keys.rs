//! `rsync-gate authorized-keys`: one `restrict,from=...,command=...` line
//! per client with a key, the clients it leaves out and why, and whether
//! the gate's own path is one an SSH account can run and cannot replace.

use std::path::{Path, PathBuf};

use crate::policy::{self, Client, Policy};

/// Quote a string for an `authorized_keys` option value.
fn ak_quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Why a client gets no line, if it gets none.
pub fn skip_reason(c: &Client) -> Option<String> {
    match &c.key {
        None => Some("it has no key".into()),
        Some(key) => check_key(key)
            .err()
            .map(|e| format!("its key does not parse ({e}): sshd would ignore the line")),
    }
}

/// The clients that get no line (only `only`, when given), each with why.
pub fn skipped(policy: &Policy, only: Option<&str>) -> Vec<(String, String)> {
    policy
        .clients
        .values()
        .filter(|c| only.is_none_or(|o| o == c.name))
        .filter_map(|c| skip_reason(c).map(|why| (c.name.clone(), why)))
        .collect()
}

/// The lines, in client order.
pub fn lines(policy: &Policy, policy_path: &Path, gate: &Path, only: Option<&str>) -> Vec<String> {
    let mut lines = Vec::new();
    for c in policy.clients.values() {
        if only.is_some_and(|o| o != c.name) || skip_reason(c).is_some() {
            continue;
        }
        let Some(key) = &c.key else { continue };
        let mut cmd = shell_words::quote(&gate.to_string_lossy()).into_owned();
        cmd.push_str(" serve");
        if policy_path != Path::new(policy::DEFAULT_POLICY) {
            cmd.push_str(" --policy ");
            cmd.push_str(&shell_words::quote(&policy_path.to_string_lossy()));
        }
        cmd.push_str(" --client ");
        cmd.push_str(&c.name);
        let mut opts = String::from("restrict");
        if !c.from.is_empty() {
            let from: Vec<String> = c.from.iter().map(ToString::to_string).collect();
            opts.push_str(&format!(",from=\"{}\"", from.join(",")));
        }
        opts.push_str(&format!(",command=\"{}\"", ak_quote(&cmd)));
        lines.push(format!("{opts} {key}"));
    }
    lines
}

/// Where the README installs the gate.
pub const INSTALL_PATH: &str = "/usr/local/bin/rsync-gate";

/// The one-line fix for a gate binary at an unsafe or unreachable path.
pub fn install_fix(gate: &Path) -> String {
    format!(
        "install -o root -g root -m 0755 {} {INSTALL_PATH} (or target/release/rsync-gate after `cargo build --release --locked`), then run {INSTALL_PATH}",
        shell_words::quote(&gate.to_string_lossy())
    )
}

/// Why `gate`, the path `authorized-keys` writes into `command=`, is not
/// safe for an SSH account to run: anyone but root could replace it (it,
/// or a directory above it, is not root's or is writable by group or
/// others; the rule of [`crate::trust::check_path`] for root), or it is
/// not a regular file executable by others. None when it is safe.
pub fn gate_path_unsafe(gate: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    if let Err(e) = crate::trust::check_path(gate, 0) {
        return Some(format!(
            "{e}: whoever can change it can run anything as the SSH account"
        ));
    }
    match std::fs::metadata(gate) {
        Ok(md) if md.is_file() && md.permissions().mode() & 0o111 != 0 => None,
        Ok(_) => Some(format!("{} is not an executable file", gate.display())),
        Err(e) => Some(format!("{}: {e}", gate.display())),
    }
}

/// Why other accounts cannot run `gate` (a directory above it is not
/// searchable by others, or it is not executable by others), if they
/// cannot: an SSH account other than root then fails every login with
/// "Permission denied" from its shell (`cargo install` leaves the binary
/// in root's 0700 home).
pub fn gate_path_unreachable(gate: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let real = std::fs::canonicalize(gate).unwrap_or_else(|_| gate.to_path_buf());
    let mut dirs: Vec<PathBuf> = real.ancestors().skip(1).map(Path::to_path_buf).collect();
    dirs.reverse();
    for d in dirs {
        let Ok(md) = std::fs::metadata(&d) else {
            continue;
        };
        let mode = md.permissions().mode();
        if mode & 0o001 == 0 {
            return Some(format!(
                "{} is not searchable by others (mode {:o}), so no SSH account but root can run {}",
                d.display(),
                mode & 0o7777,
                gate.display()
            ));
        }
    }
    match std::fs::metadata(&real) {
        Ok(md) if md.permissions().mode() & 0o001 == 0 => Some(format!(
            "{} is not executable by others (mode {:o}), so no SSH account but root can run it",
            gate.display(),
            md.permissions().mode() & 0o7777
        )),
        _ => None,
    }
}

/// The standard base64 alphabet's value of `b`.
fn b64_value(b: u8) -> Option<u32> {
    match b {
        b'A'..=b'Z' => Some(u32::from(b - b'A')),
        b'a'..=b'z' => Some(u32::from(b - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(b - b'0') + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Strict base64, as OpenSSH reads a key: whole 4-character groups, `=`
/// only as padding at the end.
fn b64_decode(s: &str) -> Result<Vec<u8>, String> {
    const MALFORMED: &str = "its base64 is malformed";
    let bytes = s.as_bytes();
    if bytes.len() % 4 != 0 {
        return Err("its base64 is cut short".into());
    }
    let groups = bytes.len() / 4;
    let mut out = Vec::with_capacity(groups * 3);
    for (i, group) in bytes.chunks(4).enumerate() {
        let data = if i + 1 == groups {
            group.iter().position(|&b| b == b'=').unwrap_or(4)
        } else {
            4
        };
        let (chars, pad) = group.split_at(data.min(group.len()));
        if data < 2 || pad.iter().any(|&b| b != b'=') {
            return Err(MALFORMED.into());
        }
        let mut v = 0u32;
        for &b in chars {
            v = (v << 6) | b64_value(b).ok_or(MALFORMED)?;
        }
        v <<= 6 * (4 - data);
        let [_, a, b, c] = v.to_be_bytes();
        out.extend([a, b, c].into_iter().take(data - 1));
    }
    Ok(out)
}

/// The length-prefixed fields of an SSH wire-format key blob.
fn wire_fields(mut blob: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut fields = Vec::new();
    while !blob.is_empty() {
        let (len, rest) = blob
            .split_first_chunk::<4>()
            .ok_or("its data is cut short")?;
        let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| "a field is too long")?;
        if rest.len() < len {
            return Err("its data is cut short".into());
        }
        let (field, rest) = rest.split_at(len);
        fields.push(field);
        blob = rest;
    }
    Ok(fields)
}

/// Fields after the type name in a public key of this type (None: not
/// known here, only the framing is checked), and the exact length of the
/// first one where it has one.
fn key_shape(kind: &str) -> Option<(usize, Option<usize>)> {
    match kind {
        "ssh-ed25519" => Some((1, Some(32))),
        "sk-ssh-ed25519@openssh.com" => Some((2, Some(32))),
        "ssh-rsa" | "ecdsa-sha2-nistp256" | "ecdsa-sha2-nistp384" | "ecdsa-sha2-nistp521" => {
            Some((2, None))
        }
        "sk-ecdsa-sha2-nistp256@openssh.com" => Some((3, None)),
        "ssh-dss" => Some((4, None)),
        _ => None,
    }
}

/// Does `key` (`TYPE BASE64 [COMMENT]`, as the policy's `key`) hold a
/// whole public key, as sshd reads it? Its base64 must decode, name the
/// same type, and hold exactly the fields of that type: a key cut short
/// when copied fails here (sshd ignores such a line, and the client cannot
/// log in).
pub fn check_key(key: &str) -> Result<(), String> {
    let mut words = key.split_whitespace();
    let (Some(kind), Some(data)) = (words.next(), words.next()) else {
        return Err("not 'TYPE BASE64 [COMMENT]'".into());
    };
    let blob = b64_decode(data)?;
    let fields = wire_fields(&blob)?;
    let Some((name, rest)) = fields.split_first() else {
        return Err("its data is empty".into());
    };
    if *name != kind.as_bytes() {
        return Err(format!(
            "it says {kind}, but its data is a {} key",
            crate::escape::display(&String::from_utf8_lossy(name))
        ));
    }
    if let Some((count, first_len)) = key_shape(kind) {
        if rest.len() != count {
            return Err(format!(
                "its data has {} of the {count} parts of a {kind} key",
                rest.len()
            ));
        }
        if let (Some(want), Some(first)) = (first_len, rest.first())
            && first.len() != want
        {
            return Err(format!(
                "its {kind} key is {} bytes, not {want}",
                first.len()
            ));
        }
    }
    Ok(())
}

/// The SHA-256 fingerprint of `key` (`TYPE BASE64 [COMMENT]`) as sshd
/// computes it: over the decoded key blob.
pub fn fingerprint(key: &str) -> Option<[u8; 32]> {
    let data = key.split_whitespace().nth(1)?;
    let blob = b64_decode(data).ok()?;
    Some(policy::index::sha256::digest(&blob))
}

/// The fingerprint in sshd's `%f` form, `SHA256:` and 43 characters of
/// unpadded base64, as bytes.
pub fn parse_sshd_fingerprint(s: &str) -> Option<[u8; 32]> {
    let b64 = s.strip_prefix("SHA256:")?;
    if b64.len() != 43 || b64.contains('=') {
        return None;
    }
    let bytes = b64_decode(&format!("{b64}=")).ok()?;
    <[u8; 32]>::try_from(bytes).ok()
}

/// `SHA256:...` for `fp`, as `ssh-keygen -l` and sshd's `%f` show it.
pub fn show_fingerprint(fp: &[u8; 32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::from("SHA256:");
    for chunk in fp.chunks(3) {
        let mut v = 0u32;
        for (i, b) in chunk.iter().enumerate() {
            v |= u32::from(*b) << (16 - 8 * i);
        }
        for i in 0..=chunk.len() {
            let idx = (v >> (18 - 6 * i)) & 63;
            if let Some(c) = ALPHABET.get(idx as usize) {
                out.push(char::from(*c));
            }
        }
    }
    out
}

/// The compiled index's key table: (fingerprint, client) for every client
/// that gets a line.
pub fn key_table(policy: &Policy) -> Vec<([u8; 32], String)> {
    policy
        .clients
        .values()
        .filter(|c| skip_reason(c).is_none())
        .filter_map(|c| Some((fingerprint(c.key.as_deref()?)?, c.name.clone())))
        .collect()
}

/// `authorized-keys --for-sshd USER FINGERPRINT`, OpenSSH's
/// `AuthorizedKeysCommand`: the line of each client whose key has that
/// fingerprint, when the policy's `[gate] account` is USER; nothing for
/// anyone else. From the compiled index (a binary search) when it is
/// current; else from the TOML, saying so on stderr (sshd logs it).
/// Returns the exit status (sshd ignores the output of a failure).
pub fn for_sshd(
    policy_path: &Path,
    user: &str,
    fingerprint: &str,
    gate: &Path,
    out: &mut impl std::io::Write,
    err: &mut impl std::io::Write,
) -> std::io::Result<u8> {
    let Some(fp) = parse_sshd_fingerprint(fingerprint) else {
        writeln!(
            err,
            "rsync-gate: authorized-keys: '{}' is not a SHA256 fingerprint as sshd's %f gives it",
            fingerprint.escape_default()
        )?;
        return Ok(1);
    };
    let (account, clients) = match policy::index::Index::open(policy_path)
        .and_then(|ix| Ok((ix.gate.account.clone(), lookup_indexed(&ix, &fp)?)))
    {
        Ok(found) => found,
        Err(why) => {
            writeln!(
                err,
                "rsync-gate: authorized-keys: the compiled index is not used ({why}); reading {}",
                policy_path.display()
            )?;
            match policy::load_checked(policy_path) {
                Ok(p) => {
                    let clients = p
                        .clients
                        .values()
                        .filter(|c| skip_reason(c).is_none())
                        .filter(|c| c.key.as_deref().and_then(self::fingerprint) == Some(fp))
                        .cloned()
                        .collect();
                    (p.gate.account.clone(), clients)
                }
                Err(policy::LoadError::Unsafe(e) | policy::LoadError::Invalid(e)) => {
                    writeln!(err, "rsync-gate: authorized-keys: invalid policy: {e}")?;
                    return Ok(1);
                }
            }
        }
    };
    if account.as_deref() != Some(user) {
        if !clients.is_empty() {
            writeln!(
                err,
                "rsync-gate: authorized-keys: no key for account '{}': the policy's [gate] account is {}",
                user.escape_default(),
                account.map_or_else(|| "not set".to_string(), |a| format!("'{a}'"))
            )?;
        }
        return Ok(0);
    }
    let only = Policy {
        source: policy_path.to_path_buf(),
        files: Vec::new(),
        gate: policy::Gate::default(),
        modules: std::collections::BTreeMap::new(),
        clients: clients.into_iter().map(|c| (c.name.clone(), c)).collect(),
        triggers: std::collections::BTreeMap::new(),
    };
    for line in lines(&only, policy_path, gate, None) {
        writeln!(out, "{line}")?;
    }
    Ok(0)
}

fn lookup_indexed(
    ix: &policy::index::Index,
    fp: &[u8; 32],
) -> Result<Vec<Client>, policy::index::Unusable> {
    let mut found = Vec::new();
    for name in ix.clients_with_key(fp)? {
        match ix.client(&name)? {
            // The index's own key table and the client's key must agree.
            Some(c) if c.key.as_deref().and_then(fingerprint) == Some(*fp) => found.push(c),
            _ => {
                return Err(policy::index::Unusable::Corrupt(format!(
                    "its key table names client '{name}' wrongly"
                )));
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIByjXTZyhMNg4FJ507SAZ4IU8ihtGHkvqwZqcfdhmePz ed25519@test";
    const RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQC6/oaLm2twG/DS2a0Uoodd0CmbgWlcd/GeZLmac/q4vFSP01jj9p/dgeXksG60l5tO5IfH8+lLxnm6dZb0kk376eQ9uCh6PfUPmwBcm9136urUYUDnMqw2AFV1mXjCDUCtb9jBETPM+UjCmf0RMRHhh1UYOn0GKmM5z573E5iN1QhX4uvpcyZ+2/UDilE3DJKi2I+o92O9pCN/57vY1gMky1tCI58KrRkJfpb4HHN+EozVPDPSw/+Y11RR0Ingb//8O/xgy2MinoUOzZaQqLEp/LT/9D0iJk11KbSTIFFU4e8+0ENl+S+r//8VUcMO2ICJuY4BaeUs5FOZJ46mH9EUqm7OxrLn5Hu9saZEtbS55jFX/Znr6nWA0qdPT6rGz6/jPRzLZoq18hPVhwv73rQh7y5utk+Ysk+FqaXeMIJcWNQNY6/0MeYwhJ4SGcwU9V8Mjl1y05Cj6w6lHJvr7jc+T0g+OZdMMeirFwhrg2eN7z/90tsOPo8I8HIyQf9CJ2c= rsa@test";
    const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBMn2wp3NwIGAAsP9QpviBrvm92VVJulLIACKi2iqF0WM9M+V7FISvZgpB5+7T7JvmblGW9niRzMTtSXGrACPoCY= ecdsa@test";
    const ECDSA384: &str = "ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBMyjAH5MDmFLr6cSkzrRxY9BO/56eNcmO1WSC648Frl0PnPpbvepXYAus8lGEcjrnyCikvjSdB81LBMosKAI4dctv+aZREsvl0EYsW+dAchRoxTynqWViI9Zb52qabEfuA== e384";

    /// As `ssh-keygen -l` (and sshd's `%f`) give them.
    #[test]
    fn fingerprints_are_openssh_s() {
        for (key, want) in [
            (
                ED25519,
                "SHA256:+EyCjARF9muT6tm/YwmCpprP3sc3cCxtKd3zgQpY15c",
            ),
            (RSA, "SHA256:l7a9Bv8WkaS8l+8qFDYkD9kDHYX4BiBjKc5NuQdp3DI"),
        ] {
            let fp = fingerprint(key).unwrap();
            assert_eq!(show_fingerprint(&fp), want);
            assert_eq!(parse_sshd_fingerprint(want), Some(fp));
        }
        for bad in [
            "",
            "SHA256:",
            "MD5:+EyCjARF9muT6tm/YwmCpprP3sc3cCxtKd3zgQpY15c",
            "SHA256:+EyCjARF9muT6tm/YwmCpprP3sc3cCxtKd3zgQpY15c=",
            "SHA256:+EyCjARF9muT6tm/YwmCpprP3sc3cCxtKd3zgQpY15",
            "SHA256:+EyCjARF9muT6tm/YwmCpprP3sc3cCxtKd3zgQpY15!",
        ] {
            assert_eq!(parse_sshd_fingerprint(bad), None, "{bad}");
        }
    }

    #[test]
    fn whole_keys_parse() {
        for k in [ED25519, RSA, ECDSA, ECDSA384] {
            assert_eq!(check_key(k), Ok(()), "{k}");
        }
        // Without a comment.
        let bare: String = ED25519.rsplit_once(' ').unwrap().0.into();
        assert_eq!(check_key(&bare), Ok(()));
    }

    /// A key cut short anywhere (as a terminal's copy and paste does) is
    /// told apart from a whole one, as sshd tells it apart.
    #[test]
    fn keys_cut_short_or_mislabelled_do_not_parse() {
        for k in [ED25519, RSA, ECDSA, ECDSA384] {
            let (kind, rest) = k.split_once(' ').unwrap();
            let data = rest.split(' ').next().unwrap();
            for cut in 1..data.len() {
                let short = format!("{kind} {}", data.get(..data.len() - cut).unwrap());
                assert!(check_key(&short).is_err(), "{short}");
            }
        }
        let e = check_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB k@x").unwrap_err();
        assert!(e.contains("cut short"), "{e}");
        let e = check_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBAA k@x").unwrap_err();
        assert!(e.contains("cut short"), "{e}");
        let (_, rsa_data) = RSA.split_once(' ').unwrap();
        let e = check_key(&format!("ssh-ed25519 {rsa_data}")).unwrap_err();
        assert!(e.contains("its data is a ssh-rsa key"), "{e}");
        assert!(check_key("ssh-ed25519 !!!!").is_err());
        assert!(check_key("ssh-ed25519").is_err());
        assert!(check_key("ssh-ed25519 AAAA=AAA").is_err());
    }

    #[test]
    fn authorized_keys_lines() {
        let p = policy::load_text(
            Path::new("/etc/rsync-gate/policy.toml"),
            &format!(
                "[modules.w]\npath = \"/srv/w\"\n\
                 [clients.a]\nmodules = [\"w\"]\nfrom = [\"192.0.2.10\", \"198.51.100.0/24\"]\nkey = \"{ED25519}\"\n\
                 [clients.b]\nmodules = [\"w\"]\n\
                 [clients.c]\nmodules = [\"w\"]\nkey = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB c@x\"\n"
            ),
        )
        .unwrap();
        let lines = super::lines(
            &p,
            Path::new("/etc/rsync-gate/policy.toml"),
            Path::new("/usr/local/bin/rsync-gate"),
            None,
        );
        assert_eq!(
            lines,
            [format!(
                "restrict,from=\"192.0.2.10,198.51.100.0/24\",command=\"/usr/local/bin/rsync-gate serve --client a\" {ED25519}"
            )]
        );
        let lines = super::lines(&p, Path::new("/tmp/p t.toml"), Path::new("/g"), Some("a"));
        assert!(
            lines[0].contains("command=\"/g serve --policy '/tmp/p t.toml' --client a\""),
            "{}",
            lines[0]
        );
        let skipped = super::skipped(&p, None);
        let names: Vec<&str> = skipped.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["b", "c"]);
        assert_eq!(skipped[0].1, "it has no key");
        assert!(
            skipped[1]
                .1
                .starts_with("its key does not parse (its base64 is cut short)"),
            "{}",
            skipped[1].1
        );
        assert!(super::skipped(&p, Some("a")).is_empty());
    }

    #[test]
    fn the_gates_path_must_be_roots_and_reachable() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(d.path()).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        let gate = base.join("rsync-gate");
        std::fs::write(&gate, "").unwrap();
        std::fs::set_permissions(&gate, std::fs::Permissions::from_mode(0o755)).unwrap();
        let root = nix::unistd::geteuid().is_root();
        if root {
            assert_eq!(gate_path_unsafe(&gate), None);
        } else {
            let e = gate_path_unsafe(&gate).unwrap();
            assert!(e.contains("not root"), "{e}");
        }
        assert_eq!(gate_path_unreachable(&gate), None);
        std::fs::set_permissions(&gate, std::fs::Permissions::from_mode(0o775)).unwrap();
        let e = gate_path_unsafe(&gate).unwrap();
        assert!(e.contains("writable by its group"), "{e}");
        std::fs::set_permissions(&gate, std::fs::Permissions::from_mode(0o750)).unwrap();
        let e = gate_path_unreachable(&gate).unwrap();
        assert!(e.contains("not executable by others"), "{e}");
        std::fs::set_permissions(&gate, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700)).unwrap();
        let e = gate_path_unreachable(&gate).unwrap();
        assert!(
            e.contains(&format!("{} is not searchable by others", base.display())),
            "{e}"
        );
        std::fs::set_permissions(&gate, std::fs::Permissions::from_mode(0o644)).unwrap();
        if root {
            let e = gate_path_unsafe(&gate).unwrap();
            assert!(e.contains("not an executable file"), "{e}");
        }
    }
}
