//! What the installed rsync supports, probed from its `--help` once and
//! cached next to the lock files, keyed by the binary's identity.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::decide::RsyncCaps;
use crate::host::{CHILD_HOME, CHILD_PATH};
use crate::request::options;

const CACHE_NAME: &str = "rsync-caps";

fn identity(rsync: &Path) -> Option<String> {
    let md = std::fs::metadata(rsync).ok()?;
    Some(format!(
        "v1 {} {} {} {} {} {} {}",
        md.dev(),
        md.ino(),
        md.size(),
        md.mtime(),
        md.mtime_nsec(),
        md.ctime(),
        md.ctime_nsec()
    ))
}

/// Parse `rsync --help` output.
pub fn parse_help(help: &str) -> RsyncCaps {
    RsyncCaps {
        confine_root: help.contains(&format!("--{}", options::CONFINE_ROOT)),
        drop_d: help.contains(&format!("--{}", options::DROP_D)),
    }
}

/// Run `rsync --help` (clean environment, no stdin).
pub fn probe(rsync: &Path) -> Option<RsyncCaps> {
    let out = Command::new(rsync)
        .arg("--help")
        .env_clear()
        .env("PATH", CHILD_PATH)
        .env("HOME", CHILD_HOME)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    Some(parse_help(&String::from_utf8_lossy(&out.stdout)))
}

/// The first line of `rsync --version` with its runs of spaces made one
/// (`rsync version 3.5.0 protocol version 32`), for `rsync-gate --version
/// -v`; None when it cannot be run or says nothing.
pub fn version(rsync: &Path) -> Option<String> {
    let out = Command::new(rsync)
        .arg("--version")
        .env_clear()
        .env("PATH", CHILD_PATH)
        .env("HOME", CHILD_HOME)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next()?.split_whitespace().collect::<Vec<_>>();
    (!first.is_empty()).then(|| crate::escape::display(&first.join(" ")))
}

/// The cache's text, opened without following a link, if it is a regular
/// file of root or this account that nobody else can write.
fn read_cache(path: &Path) -> Option<String> {
    use std::io::Read;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let md = f.metadata().ok()?;
    let uid = nix::unistd::geteuid().as_raw();
    if !md.is_file() || !crate::trust::root_or(md.uid(), uid) || md.mode() & 0o022 != 0 {
        return None;
    }
    let mut text = String::new();
    f.take(4096).read_to_string(&mut text).ok()?;
    Some(text)
}

/// The capabilities of `rsync`, from the cache in `cache_dir` when it is
/// current, otherwise probed (and the cache refreshed when possible). The
/// cache is used only in a directory that is the account's and root's
/// alone (`lock_dir`, as `serve` requires it), and every file there is
/// opened without following a link (the new one with `O_EXCL`).
pub fn caps(rsync: &Path, cache_dir: &Path) -> RsyncCaps {
    let id = identity(rsync);
    let cache = cache_dir.join(CACHE_NAME);
    let usable =
        crate::trust::check_private_dir(cache_dir, nix::unistd::geteuid().as_raw()).is_ok();
    if usable
        && let Some(id) = &id
        && let Some(text) = read_cache(&cache)
        && let Some(rest) = text.trim_end().strip_prefix(id.as_str())
    {
        match rest {
            " 1 1" => {
                return RsyncCaps {
                    confine_root: true,
                    drop_d: true,
                };
            }
            " 1 0" => {
                return RsyncCaps {
                    confine_root: true,
                    drop_d: false,
                };
            }
            " 0 1" => {
                return RsyncCaps {
                    confine_root: false,
                    drop_d: true,
                };
            }
            " 0 0" => return RsyncCaps::default(),
            _ => {}
        }
    }
    let caps = probe(rsync).unwrap_or_default();
    if usable && let Some(id) = id {
        let line = format!(
            "{id} {} {}\n",
            u8::from(caps.confine_root),
            u8::from(caps.drop_d)
        );
        // A new file of our own (never through a link someone planted),
        // renamed over the old one.
        let tmp = cache_dir.join(format!(".{CACHE_NAME}.{}", std::process::id()));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if written.is_ok() {
            let _ = std::fs::rename(&tmp, &cache);
        } else {
            let _ = std::fs::remove_file(&tmp);
        }
    }
    caps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_parsing() {
        let c = parse_help("--munge-links\n--confine-root=DIR  refuse\n--drop-D   receiver\n");
        assert_eq!(
            c,
            RsyncCaps {
                confine_root: true,
                drop_d: true
            }
        );
        assert_eq!(parse_help("--munge-links\n"), RsyncCaps::default());
    }

    #[test]
    fn caches_by_binary_identity() {
        let d = tempfile::tempdir().unwrap();
        let fake = d.path().join("rsync");
        std::fs::write(
            &fake,
            "#!/bin/sh\necho '  --confine-root=DIR'\necho '  --drop-D'\n",
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let cache_dir = d.path().join("run");
        std::fs::create_dir(&cache_dir).unwrap();
        assert_eq!(
            caps(&fake, &cache_dir),
            RsyncCaps {
                confine_root: true,
                drop_d: true
            }
        );
        assert!(cache_dir.join(CACHE_NAME).exists());
        // A changed binary is probed again.
        std::fs::write(&fake, "#!/bin/sh\necho '  --drop-D'\n").unwrap();
        assert_eq!(
            caps(&fake, &cache_dir),
            RsyncCaps {
                confine_root: false,
                drop_d: true
            }
        );
        // The cache is what answers while the binary is unchanged.
        let text = std::fs::read_to_string(cache_dir.join(CACHE_NAME)).unwrap();
        std::fs::write(cache_dir.join(CACHE_NAME), text.replace(" 0 1\n", " 0 0\n")).unwrap();
        assert_eq!(caps(&fake, &cache_dir), RsyncCaps::default());
    }

    /// The cache is read without following a link, and neither read nor
    /// written in a directory others may write in.
    #[test]
    fn the_cache_trusts_no_link_and_no_shared_directory() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let fake = d.path().join("rsync");
        std::fs::write(&fake, "#!/bin/sh\necho '  --drop-D'\n").unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let id = identity(&fake).unwrap();
        let want = RsyncCaps {
            confine_root: false,
            drop_d: true,
        };
        // A planted link to a file claiming everything is not believed (and
        // the refresh replaces the link rather than writing through it).
        let cache_dir = d.path().join("run");
        std::fs::create_dir(&cache_dir).unwrap();
        std::fs::set_permissions(&cache_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let lie = d.path().join("lie");
        std::fs::write(&lie, format!("{id} 1 1\n")).unwrap();
        std::os::unix::fs::symlink(&lie, cache_dir.join(CACHE_NAME)).unwrap();
        assert_eq!(caps(&fake, &cache_dir), want);
        assert_eq!(
            std::fs::read_to_string(&lie).unwrap(),
            format!("{id} 1 1\n")
        );
        assert!(
            std::fs::symlink_metadata(cache_dir.join(CACHE_NAME))
                .unwrap()
                .is_file()
        );
        // A shared directory: probed every time, nothing written there.
        let shared = d.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        std::fs::write(shared.join(CACHE_NAME), format!("{id} 1 1\n")).unwrap();
        std::fs::set_permissions(
            shared.join(CACHE_NAME),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        assert_eq!(caps(&fake, &shared), want);
        assert_eq!(
            std::fs::read_to_string(shared.join(CACHE_NAME)).unwrap(),
            format!("{id} 1 1\n")
        );
    }
}
