//! Files the exec stage writes before rsync starts: generated daemon
//! configs (atomically, never through a link) and `max connections` lock
//! files (created when missing, never truncated).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
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

/// Write `text` to `path` atomically (a new file beside it, renamed over
/// it), unless it already holds exactly this text. The directory is
/// created if missing.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    if !dir.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)?;
    }
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file())
        && std::fs::read(path).is_ok_and(|old| old == text.as_bytes())
    {
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
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
