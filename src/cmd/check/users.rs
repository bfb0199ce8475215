//! Which SSH accounts use a policy: those whose `~/.ssh/authorized_keys`
//! (or `authorized_keys2`, sshd's default `AuthorizedKeysFile`) has a
//! forced command running `rsync-gate serve` with it, as `authorized-keys`
//! writes them. `check` checks for these accounts when `--account` is not
//! given.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::cmd::import::keys;
use crate::policy;

/// Largest file read here.
const MAX_BYTES: u64 = 4 * 1024 * 1024;

/// An `authorized_keys` line that runs the gate with the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUse {
    pub account: String,
    pub file: PathBuf,
    pub line: usize,
    /// The program the line runs (the gate's path as written there).
    pub program: PathBuf,
    pub client: Option<String>,
}

fn read(path: &Path) -> Option<String> {
    let f = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    f.take(MAX_BYTES).read_to_string(&mut text).ok()?;
    Some(text)
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => a == b,
    }
}

/// If `command` (a forced command) runs `rsync-gate serve` with `policy`
/// (the gate being a program named `rsync-gate`, or `gate` itself): the
/// program and the client.
pub fn runs_policy(command: &str, policy: &Path, gate: &Path) -> Option<(PathBuf, Option<String>)> {
    let words = shell_words::split(command).ok()?;
    let (program, args) = words.split_first()?;
    let program = PathBuf::from(program);
    let named = program.file_name().is_some_and(|n| n == "rsync-gate");
    if !(named || same_file(&program, gate)) || args.first().map(String::as_str) != Some("serve") {
        return None;
    }
    let mut used = PathBuf::from(policy::DEFAULT_POLICY);
    let mut client = None;
    let mut rest = args.iter().skip(1);
    while let Some(a) = rest.next() {
        if let Some(v) = a.strip_prefix("--policy=") {
            used = PathBuf::from(v);
        } else if a == "--policy" {
            used = PathBuf::from(rest.next()?);
        } else if let Some(v) = a.strip_prefix("--client=") {
            client = Some(v.to_string());
        } else if a == "--client" {
            client = rest.next().cloned();
        }
    }
    (used == policy || same_file(&used, policy)).then_some((program, client))
}

/// The lines of `text` (an authorized_keys file of `account`) that run the
/// gate with `policy`.
pub fn uses_in(text: &str, account: &str, file: &Path, policy: &Path, gate: &Path) -> Vec<KeyUse> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Ok(Some(parsed)) = keys::parse_line(line) else {
            continue;
        };
        let Some(command) = parsed
            .options
            .iter()
            .find(|(name, _)| name == "command")
            .and_then(|(_, v)| v.as_deref())
        else {
            continue;
        };
        if let Some((program, client)) = runs_policy(command, policy, gate) {
            out.push(KeyUse {
                account: account.to_string(),
                file: file.to_path_buf(),
                line: i + 1,
                program,
                client,
            });
        }
    }
    out
}

/// Every account in `/etc/passwd` whose authorized_keys files run the gate
/// with `policy`, in passwd order (files this process cannot read are
/// passed over).
pub fn accounts_using(policy: &Path, gate: &Path) -> Vec<KeyUse> {
    let Some(passwd) = read(Path::new("/etc/passwd")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut homes_seen: Vec<(String, PathBuf)> = Vec::new();
    for entry in passwd.lines() {
        let fields: Vec<&str> = entry.split(':').collect();
        let (Some(name), Some(home)) = (fields.first(), fields.get(5)) else {
            continue;
        };
        if name.is_empty() || !home.starts_with('/') {
            continue;
        }
        let key = (name.to_string(), PathBuf::from(home));
        if homes_seen.contains(&key) {
            continue;
        }
        homes_seen.push(key);
        for f in ["authorized_keys", "authorized_keys2"] {
            let file = Path::new(home).join(".ssh").join(f);
            if let Some(text) = read(&file) {
                out.extend(uses_in(&text, name, &file, policy, gate));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_running_the_policy_are_found() {
        let policy = Path::new("/etc/rsync-gate/mirror.toml");
        let gate = Path::new("/usr/local/bin/rsync-gate");
        let text = "# comment\n\
            restrict,command=\"/usr/local/bin/rsync-gate serve --policy /etc/rsync-gate/mirror.toml --client m1\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIByjXTZyhMNg4FJ507SAZ4IU8ihtGHkvqwZqcfdhmePz a\n\
            restrict,command=\"/usr/local/bin/rsync-gate serve --client m2\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIByjXTZyhMNg4FJ507SAZ4IU8ihtGHkvqwZqcfdhmePz b\n\
            restrict,from=\"192.0.2.1\",command=\"/root/.cargo/bin/rsync-gate serve --policy=/etc/rsync-gate/mirror.toml --client=m3\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIByjXTZyhMNg4FJ507SAZ4IU8ihtGHkvqwZqcfdhmePz c\n\
            command=\"/usr/bin/rrsync -ro /srv\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIByjXTZyhMNg4FJ507SAZ4IU8ihtGHkvqwZqcfdhmePz d\n\
            ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIByjXTZyhMNg4FJ507SAZ4IU8ihtGHkvqwZqcfdhmePz e\n";
        let file = Path::new("/home/mirror/.ssh/authorized_keys");
        let found = uses_in(text, "mirror", file, policy, gate);
        let got: Vec<(usize, &str, Option<&str>)> = found
            .iter()
            .map(|u| (u.line, u.program.to_str().unwrap(), u.client.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                (2, "/usr/local/bin/rsync-gate", Some("m1")),
                (4, "/root/.cargo/bin/rsync-gate", Some("m3")),
            ]
        );
        // The default policy.
        let found = uses_in(
            text,
            "mirror",
            file,
            Path::new(policy::DEFAULT_POLICY),
            gate,
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].client.as_deref(), Some("m2"));
        assert_eq!(
            runs_policy("/usr/local/bin/rsync-gate check", policy, gate),
            None
        );
    }
}
