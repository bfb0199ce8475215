//! `rsync-gate authorized-keys`: one `restrict,from=...,command=...` line
//! per client with a key.

use std::path::Path;

use crate::policy::{self, Policy};

/// Quote a string for an `authorized_keys` option value.
fn ak_quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The lines, in client order.
pub fn lines(policy: &Policy, policy_path: &Path, gate: &Path, only: Option<&str>) -> Vec<String> {
    let mut lines = Vec::new();
    for c in policy.clients.values() {
        if only.is_some_and(|o| o != c.name) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorized_keys_lines() {
        let p = policy::load_text(
            Path::new("/etc/rsync-gate/policy.toml"),
            "[modules.w]\npath = \"/srv/w\"\n\
                 [clients.a]\nmodules = [\"w\"]\nfrom = [\"192.0.2.10\", \"198.51.100.0/24\"]\nkey = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB a@x\"\n\
                 [clients.b]\nmodules = [\"w\"]\n",
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
            [
                "restrict,from=\"192.0.2.10,198.51.100.0/24\",command=\"/usr/local/bin/rsync-gate serve --client a\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB a@x"
            ]
        );
        let lines = super::lines(&p, Path::new("/tmp/p t.toml"), Path::new("/g"), Some("a"));
        assert!(
            lines[0].contains("command=\"/g serve --policy '/tmp/p t.toml' --client a\""),
            "{}",
            lines[0]
        );
    }
}
