//! Files the exec stage writes before rsync starts: generated daemon
//! configs (atomically, never through a link, and read back before rsync is
//! pointed at them) and `max connections` lock files (created when missing,
//! never truncated). Their directories under `lock_dir` are created when
//! missing and must be the account's and root's alone.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::plan::{FileContent, PlannedFile};

/// Write one planned file.
pub fn write(f: &PlannedFile) -> std::io::Result<()> {
    match &f.content {
        FileContent::Text(text) => write_atomic(&f.path, text),
        FileContent::LockFile => {
            super::slots::ensure_lock_file(&f.path).map_err(std::io::Error::other)
        }
    }
}

/// The text of the regular file `path`, opened without following a link,
/// if it is the account's (or root's) and writable by its owner alone.
fn read_own(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let md = f.metadata()?;
    let uid = nix::unistd::geteuid().as_raw();
    if !md.is_file() || !crate::trust::root_or(md.uid(), uid) || md.mode() & 0o022 != 0 {
        return Err(std::io::Error::other(format!(
            "{}: not a regular file of this account's alone",
            path.display()
        )));
    }
    let mut text = Vec::new();
    f.read_to_end(&mut text)?;
    Ok(text)
}

/// Write `text` to `path` atomically (a new file beside it, created with
/// `O_EXCL` and never through a link, renamed over it), unless it already
/// holds exactly this text; then read it back by name, without following a
/// link, and require exactly this text. The directory is created if
/// missing and must be the account's and root's alone (so nobody else can
/// swap what the name leads to before rsync opens it).
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let uid = nix::unistd::geteuid().as_raw();
    crate::trust::ensure_private_dir(dir, uid, 0o755).map_err(std::io::Error::other)?;
    if read_own(path).is_ok_and(|old| old == text.as_bytes()) {
        return Ok(());
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        // Parallel sessions of a client write the same text: the first
        // one's file stays (a daemon that has it open must not see it
        // replaced), and only a different text replaces it.
        let here = nix::fcntl::AT_FDCWD;
        match nix::fcntl::renameat2(
            here,
            &tmp,
            here,
            path,
            nix::fcntl::RenameFlags::RENAME_NOREPLACE,
        ) {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::EEXIST)
                if read_own(path).is_ok_and(|now| now == text.as_bytes()) =>
            {
                std::fs::remove_file(&tmp)
            }
            Err(nix::errno::Errno::EEXIST | nix::errno::Errno::EINVAL) => {
                std::fs::rename(&tmp, path)
            }
            Err(e) => Err(e.into()),
        }
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    match read_own(path) {
        Ok(now) if now == text.as_bytes() => Ok(()),
        Ok(_) => Err(std::io::Error::other(format!(
            "{}: changed after it was written",
            path.display()
        ))),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only a regular file of the account's (or root's), writable by its
    /// owner alone and not reached through a link, is read back.
    #[test]
    fn read_back_only_what_is_the_accounts_alone() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        let own = dir.join("own.conf");
        std::fs::write(&own, "a\n").unwrap();
        std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read_own(&own).unwrap(), b"a\n");
        std::os::unix::fs::symlink(&own, dir.join("link.conf")).unwrap();
        assert!(read_own(&dir.join("link.conf")).is_err());
        let refused = |p: &Path| {
            let e = read_own(p).unwrap_err().to_string();
            assert_eq!(
                e,
                format!(
                    "{}: not a regular file of this account's alone",
                    p.display()
                )
            );
        };
        nix::unistd::mkfifo(
            &dir.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        refused(&dir.join("fifo"));
        for mode in [0o664, 0o646] {
            std::fs::set_permissions(&own, std::fs::Permissions::from_mode(mode)).unwrap();
            refused(&own);
        }
    }

    #[test]
    fn planned_files_are_written_as_planned() {
        let d = tempfile::tempdir().unwrap();
        let conf = d.path().join("daemon/c.conf");
        write(&PlannedFile {
            path: conf.clone(),
            content: FileContent::Text("[www]\n".into()),
        })
        .unwrap();
        assert_eq!(std::fs::read_to_string(&conf).unwrap(), "[www]\n");
        let lock = d.path().join("locks/www.lock");
        write(&PlannedFile {
            path: lock.clone(),
            content: FileContent::LockFile,
        })
        .unwrap();
        assert!(std::fs::symlink_metadata(&lock).unwrap().is_file());
    }

    #[test]
    fn writes_atomically_and_only_when_changed() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("daemon/c.conf");
        write_atomic(&path, "a\n").unwrap();
        let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap());
        write_atomic(&path, "a\n").unwrap();
        assert_eq!(
            ino,
            std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap())
        );
        write_atomic(&path, "b\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "b\n");
        let litter: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(litter, [std::ffi::OsString::from("c.conf")]);
    }

    /// A link planted where the config goes is replaced, never written
    /// through; a directory others may write in is refused.
    #[test]
    fn never_writes_through_a_planted_link() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(d.path()).unwrap();
        let victim = base.join("victim");
        std::fs::create_dir(&victim).unwrap();
        std::fs::write(victim.join("c.conf"), "precious\n").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o755)).unwrap();
        // A directory writable by others is refused, and nothing is written.
        let open = base.join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(write_atomic(&open.join("c.conf"), "x\n").is_err());
        assert!(!open.join("c.conf").exists());
        // A link as the file itself is replaced, never followed.
        let priv_dir = base.join("priv");
        std::fs::create_dir(&priv_dir).unwrap();
        std::fs::set_permissions(&priv_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink(victim.join("c.conf"), priv_dir.join("c.conf")).unwrap();
        write_atomic(&priv_dir.join("c.conf"), "new\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(victim.join("c.conf")).unwrap(),
            "precious\n"
        );
        assert!(
            std::fs::symlink_metadata(priv_dir.join("c.conf"))
                .unwrap()
                .is_file()
        );
    }
}
