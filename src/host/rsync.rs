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

fn trusted_cache(path: &Path) -> bool {
    let Ok(md) = std::fs::symlink_metadata(path) else {
        return false;
    };
    let uid = nix::unistd::geteuid().as_raw();
    md.is_file() && (md.uid() == 0 || md.uid() == uid) && md.mode() & 0o022 == 0
}

/// The capabilities of `rsync`, from the cache in `cache_dir` when it is
/// current, otherwise probed (and the cache refreshed when possible).
pub fn caps(rsync: &Path, cache_dir: &Path) -> RsyncCaps {
    let id = identity(rsync);
    let cache = cache_dir.join(CACHE_NAME);
    if let Some(id) = &id
        && trusted_cache(&cache)
        && let Ok(text) = std::fs::read_to_string(&cache)
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
    if let Some(id) = id {
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
}
