//! `rsync-gate audit --follow`: the live log's new lines as they are
//! appended, like `tail -F`: a log renamed away (rotated) is read to its
//! end and the new file at the same path from its start; a log truncated in
//! place (logrotate's `copytruncate`) is read again from its start.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often `--follow` looks for new lines.
pub const POLL: Duration = Duration::from_millis(250);

/// At most this much of a line without its newline is kept while waiting
/// for the rest (a longer one is passed on as it is).
const MAX_PARTIAL: usize = 1 << 20;

/// A log being followed.
#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    file: File,
    /// (device, inode) of the open file.
    id: (u64, u64),
    /// Bytes read from the open file.
    pos: u64,
    /// The start of a line whose newline has not been written yet.
    partial: Vec<u8>,
}

fn identity(md: &std::fs::Metadata) -> (u64, u64) {
    (md.dev(), md.ino())
}

impl Follower {
    /// Open the log; nothing is read yet (the first [`Follower::poll`]
    /// returns every line it has). A compressed log cannot be followed.
    pub fn open(path: &Path) -> io::Result<Follower> {
        let mut file = File::open(path)?;
        let mut head = [0u8; 2];
        let n = file.read(&mut head)?;
        if super::review::is_gzip(head.get(..n).unwrap_or_default()) {
            return Err(io::Error::other(
                "a compressed log cannot be followed (name the live log last)",
            ));
        }
        file.seek(SeekFrom::Start(0))?;
        let id = identity(&file.metadata()?);
        Ok(Follower {
            path: path.to_path_buf(),
            file,
            id,
            pos: 0,
            partial: Vec::new(),
        })
    }

    /// The complete lines (without their newline) appended since the last
    /// call. When the path now names another file (the log was rotated),
    /// the old file's last lines come first, then the new file's; when the
    /// file shrank (truncated in place), it is read again from its start.
    pub fn poll(&mut self) -> io::Result<Vec<Vec<u8>>> {
        let mut lines = Vec::new();
        let size = self.file.metadata()?.len();
        if size < self.pos {
            // Truncated in place: what is there now is new.
            self.file.seek(SeekFrom::Start(0))?;
            self.pos = 0;
            self.partial.clear();
        }
        self.read_new(&mut lines)?;
        match std::fs::metadata(&self.path) {
            Ok(md) if identity(&md) != self.id => {
                // Rotated: finish the old file (a session that opened it
                // before the rename may have written since), then start on
                // the new one.
                self.read_new(&mut lines)?;
                if !self.partial.is_empty() {
                    lines.push(std::mem::take(&mut self.partial));
                }
                // The path may have changed again meanwhile: stay on the
                // old file and try next time.
                if let Ok(file) = File::open(&self.path) {
                    self.id = identity(&file.metadata()?);
                    self.file = file;
                    self.pos = 0;
                    self.read_new(&mut lines)?;
                }
            }
            // Unchanged, or renamed away and not yet created again.
            _ => {}
        }
        Ok(lines)
    }

    fn read_new(&mut self, lines: &mut Vec<Vec<u8>>) -> io::Result<()> {
        let mut buf = Vec::new();
        let n = (&self.file).read_to_end(&mut buf)?;
        self.pos += n as u64;
        let mut rest: &[u8] = &buf;
        while let Some(at) = rest.iter().position(|&b| b == b'\n') {
            let (line, after) = rest.split_at(at);
            let mut whole = std::mem::take(&mut self.partial);
            whole.extend_from_slice(line);
            lines.push(whole);
            rest = after.get(1..).unwrap_or_default();
        }
        self.partial.extend_from_slice(rest);
        if self.partial.len() > MAX_PARTIAL {
            lines.push(std::mem::take(&mut self.partial));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(p: &Path, s: &str) {
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(p)
            .unwrap()
            .write_all(s.as_bytes())
            .unwrap();
    }

    fn text(lines: Vec<Vec<u8>>) -> Vec<String> {
        lines
            .into_iter()
            .map(|l| String::from_utf8(l).unwrap())
            .collect()
    }

    #[test]
    fn appended_rotated_and_truncated() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("audit.jsonl");
        append(&p, "one\ntwo\n");
        let mut f = Follower::open(&p).unwrap();
        assert_eq!(text(f.poll().unwrap()), ["one", "two"]);
        assert!(f.poll().unwrap().is_empty());
        // A line arrives in two writes.
        append(&p, "thr");
        assert!(f.poll().unwrap().is_empty());
        append(&p, "ee\nfour\n");
        assert_eq!(text(f.poll().unwrap()), ["three", "four"]);
        // Rotation: renamed away, a late write to the old file, a new one.
        std::fs::rename(&p, d.path().join("audit.jsonl.1")).unwrap();
        append(&d.path().join("audit.jsonl.1"), "late\n");
        assert_eq!(text(f.poll().unwrap()), ["late"]);
        append(&p, "five\n");
        assert_eq!(text(f.poll().unwrap()), ["five"]);
        append(&p, "six\n");
        assert_eq!(text(f.poll().unwrap()), ["six"]);
        // copytruncate: the same file, emptied, then written again.
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        append(&p, "7\n");
        assert_eq!(text(f.poll().unwrap()), ["7"]);
    }

    #[test]
    fn compressed_logs_are_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("audit.jsonl.1.gz");
        std::fs::write(&p, [0x1f, 0x8b, 8, 0]).unwrap();
        assert!(Follower::open(&p).is_err());
    }
}
