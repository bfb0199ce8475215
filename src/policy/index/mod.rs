//! The compiled policy: an index `rsync-gate check --compile` writes next to
//! the policy (`POLICY.index`), so that a session reads only what its
//! request needs (the gate settings, its client, that client's modules and
//! trigger) instead of parsing every file of a policy of 100,000 clients.
//!
//! ```text
//!  header   magic, version, file length, where each part is, checksums
//!  meta     the sources (device, inode, size, mtime, ctime of the policy,
//!           each drop-in and each drop-in directory), [gate], the
//!           writable modules that keep links (every session needs them)
//!  tables   clients, modules, triggers by name; keys by fingerprint:
//!           fixed-size entries, sorted, read one at a time with pread(2)
//!           in a binary search, each with its own checksum
//!  records  one per item, each with a checksum in its table entry
//! ```
//!
//! Trust: the index is used only when it is as much root's as the policy
//! ([`crate::trust::check_path`] for root on the index and on every source
//! file), when every source file still has the identity it had when the
//! index was written, and when every part read is whole and unchanged
//! (checksums; reading is strict and all-or-nothing). Anything else and
//! the caller parses the TOML, which stays the authority: the index can
//! never say more than the policy does.

pub mod sha256;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Client, Gate, IpNet, Module, Origin, Policy, Sandbox, Trigger};

/// The first bytes of every index.
pub const MAGIC: [u8; 8] = *b"RSGATEIX";
/// The format's version: an index of another version is not used.
pub const VERSION: u32 = 1;
/// The header's size.
const HEADER_LEN: usize = 160;
/// Longest name a table entry holds (the policy's names are at most 64).
const NAME_KEY: usize = 64;
/// A fingerprint: SHA-256.
const FP_KEY: usize = 32;
/// Bytes of a record's checksum kept in its entry.
const REC_SUM: usize = 16;
/// Bytes of an entry's own checksum.
const ENT_SUM: usize = 8;
/// Largest record or meta part read (a bound on what a corrupt length can
/// make the reader allocate).
const MAX_PART: u64 = 64 * 1024 * 1024;

/// The index of the policy at `policy`.
pub fn index_path(policy: &Path) -> PathBuf {
    let mut s = policy.as_os_str().to_owned();
    s.push(".index");
    PathBuf::from(s)
}

/// Why an index is not used (the caller parses the TOML instead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// There is none.
    Missing,
    /// A source changed since it was written.
    Stale(String),
    /// Someone other than root could have written it (or a source).
    Untrusted(String),
    /// It does not read as a whole, well-formed index of this version.
    Corrupt(String),
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unusable::Missing => {
                f.write_str("there is none (rsync-gate check --compile writes it)")
            }
            Unusable::Stale(w) => write!(f, "it is stale: {w}"),
            Unusable::Untrusted(w) => write!(f, "it is not trusted: {w}"),
            Unusable::Corrupt(w) => write!(f, "it is corrupt: {w}"),
        }
    }
}

fn corrupt(what: impl Into<String>) -> Unusable {
    Unusable::Corrupt(what.into())
}

// ---------------------------------------------------------------------------
// Records: a strict little encoding
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Enc(Vec<u8>);

impl Enc {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(u32::try_from(b.len()).unwrap_or(u32::MAX));
        self.0.extend_from_slice(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn path(&mut self, p: &Path) {
        use std::os::unix::ffi::OsStrExt;
        self.bytes(p.as_os_str().as_bytes());
    }
    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
            None => self.u8(0),
        }
    }
    fn strs<S: AsRef<str>>(&mut self, v: &[S]) {
        self.u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
        for s in v {
            self.str(s.as_ref());
        }
    }
    fn duration(&mut self, d: Duration) {
        self.u64(d.as_secs());
        self.u32(d.subsec_nanos());
    }
}

struct Dec<'a>(&'a [u8]);

impl<'a> Dec<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Unusable> {
        if n > self.0.len() {
            return Err(corrupt("a record ends early"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], Unusable> {
        <[u8; N]>::try_from(self.take(N)?).map_err(|_| corrupt("a record ends early"))
    }
    fn u8(&mut self) -> Result<u8, Unusable> {
        Ok(u8::from_le_bytes(self.array::<1>()?))
    }
    fn u32(&mut self) -> Result<u32, Unusable> {
        Ok(u32::from_le_bytes(self.array::<4>()?))
    }
    fn u64(&mut self) -> Result<u64, Unusable> {
        Ok(u64::from_le_bytes(self.array::<8>()?))
    }
    fn i64(&mut self) -> Result<i64, Unusable> {
        Ok(i64::from_le_bytes(self.array::<8>()?))
    }
    fn bool(&mut self) -> Result<bool, Unusable> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(corrupt("a flag is neither 0 nor 1")),
        }
    }
    fn len(&mut self) -> Result<usize, Unusable> {
        let n = usize::try_from(self.u32()?).map_err(|_| corrupt("a length is too large"))?;
        if n > self.0.len() {
            return Err(corrupt("a length runs past its record"));
        }
        Ok(n)
    }
    fn bytes(&mut self) -> Result<&'a [u8], Unusable> {
        let n = self.len()?;
        self.take(n)
    }
    fn str(&mut self) -> Result<String, Unusable> {
        std::str::from_utf8(self.bytes()?)
            .map(str::to_string)
            .map_err(|_| corrupt("a string is not UTF-8"))
    }
    fn path(&mut self) -> Result<PathBuf, Unusable> {
        use std::os::unix::ffi::OsStrExt;
        Ok(PathBuf::from(std::ffi::OsStr::from_bytes(self.bytes()?)))
    }
    fn opt_str(&mut self) -> Result<Option<String>, Unusable> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.str().map(Some),
            _ => Err(corrupt("an optional value is malformed")),
        }
    }
    fn strs(&mut self) -> Result<Vec<String>, Unusable> {
        let n = self.len()?;
        let mut v = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            v.push(self.str()?);
        }
        Ok(v)
    }
    fn duration(&mut self) -> Result<Duration, Unusable> {
        let secs = self.u64()?;
        let nanos = self.u32()?;
        if nanos >= 1_000_000_000 {
            return Err(corrupt("a duration is malformed"));
        }
        Ok(Duration::new(secs, nanos))
    }
    fn end(&self) -> Result<(), Unusable> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(corrupt("a record has bytes left over"))
        }
    }
}

/// Origins name their file by its place in the sources.
fn enc_origin(e: &mut Enc, o: &Origin, files: &[PathBuf]) {
    let idx = files
        .iter()
        .position(|f| *f == o.file)
        .unwrap_or(usize::MAX);
    e.u32(u32::try_from(idx).unwrap_or(u32::MAX));
    e.u64(o.line as u64);
    e.u64(o.col as u64);
}

fn dec_origin(d: &mut Dec<'_>, files: &[PathBuf]) -> Result<Origin, Unusable> {
    let idx = usize::try_from(d.u32()?).map_err(|_| corrupt("an origin is malformed"))?;
    let file = files
        .get(idx)
        .cloned()
        .ok_or_else(|| corrupt("an origin names no source"))?;
    let line = usize::try_from(d.u64()?).map_err(|_| corrupt("an origin is malformed"))?;
    let col = usize::try_from(d.u64()?).map_err(|_| corrupt("an origin is malformed"))?;
    Ok(Origin { file, line, col })
}

// Every field is named (no `..`): a key added to the policy's structures
// without a place here does not compile.

fn enc_gate(e: &mut Enc, g: &Gate) {
    let Gate {
        rsync,
        audit_log,
        lock_dir,
        sandbox,
        include,
        syslog,
        journald,
        wait_for_slot,
        transfer_log_limit,
        account,
    } = g;
    e.path(rsync);
    e.path(audit_log);
    e.path(lock_dir);
    e.u8(match sandbox {
        Sandbox::Required => 0,
        Sandbox::BestEffort => 1,
        Sandbox::Off => 2,
    });
    e.strs(include);
    e.bool(*syslog);
    e.bool(*journald);
    e.duration(*wait_for_slot);
    e.u64(*transfer_log_limit);
    e.opt_str(account.as_deref());
}

fn dec_gate(d: &mut Dec<'_>) -> Result<Gate, Unusable> {
    Ok(Gate {
        rsync: d.path()?,
        audit_log: d.path()?,
        lock_dir: d.path()?,
        sandbox: match d.u8()? {
            0 => Sandbox::Required,
            1 => Sandbox::BestEffort,
            2 => Sandbox::Off,
            _ => return Err(corrupt("sandbox is malformed")),
        },
        include: d.strs()?,
        syslog: d.bool()?,
        journald: d.bool()?,
        wait_for_slot: d.duration()?,
        transfer_log_limit: d.u64()?,
        account: d.opt_str()?,
    })
}

fn enc_module(m: &Module, files: &[PathBuf]) -> Vec<u8> {
    let Module {
        name,
        path,
        comment,
        read_only,
        write_only,
        delete,
        overwrite,
        munge_links,
        devices,
        specials,
        follow_links,
        max_connections,
        timeout,
        setuid,
        transfer_log,
        uid,
        gid,
        list,
        origin,
    } = m;
    let mut e = Enc::default();
    e.str(name);
    e.path(path);
    e.opt_str(comment.as_deref());
    for b in [
        read_only,
        write_only,
        delete,
        overwrite,
        munge_links,
        devices,
        specials,
        follow_links,
        setuid,
        transfer_log,
        list,
    ] {
        e.bool(*b);
    }
    e.u32(*max_connections);
    e.u32(*timeout);
    e.opt_str(uid.as_deref());
    e.opt_str(gid.as_deref());
    enc_origin(&mut e, origin, files);
    e.0
}

fn dec_module(bytes: &[u8], files: &[PathBuf]) -> Result<Module, Unusable> {
    let mut d = Dec(bytes);
    let name = d.str()?;
    let path = d.path()?;
    let comment = d.opt_str()?;
    let mut flags = [false; 11];
    for f in &mut flags {
        *f = d.bool()?;
    }
    let [
        read_only,
        write_only,
        delete,
        overwrite,
        munge_links,
        devices,
        specials,
        follow_links,
        setuid,
        transfer_log,
        list,
    ] = flags;
    let m = Module {
        name,
        path,
        comment,
        read_only,
        write_only,
        delete,
        overwrite,
        munge_links,
        devices,
        specials,
        follow_links,
        max_connections: d.u32()?,
        timeout: d.u32()?,
        setuid,
        transfer_log,
        uid: d.opt_str()?,
        gid: d.opt_str()?,
        list,
        origin: dec_origin(&mut d, files)?,
    };
    d.end()?;
    Ok(m)
}

fn enc_client(c: &Client, files: &[PathBuf]) -> Vec<u8> {
    let Client {
        name,
        modules,
        from,
        key,
        note,
        trigger,
        learn,
        origin,
    } = c;
    let mut e = Enc::default();
    e.str(name);
    e.strs(modules);
    let from: Vec<String> = from.iter().map(ToString::to_string).collect();
    e.strs(&from);
    e.opt_str(key.as_deref());
    e.opt_str(note.as_deref());
    e.opt_str(trigger.as_deref());
    e.bool(*learn);
    enc_origin(&mut e, origin, files);
    e.0
}

fn dec_client(bytes: &[u8], files: &[PathBuf]) -> Result<Client, Unusable> {
    let mut d = Dec(bytes);
    let name = d.str()?;
    let modules = d.strs()?;
    let from = d
        .strs()?
        .iter()
        .map(|s| s.parse::<IpNet>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| corrupt("an address block is malformed"))?;
    let c = Client {
        name,
        modules,
        from,
        key: d.opt_str()?,
        note: d.opt_str()?,
        trigger: d.opt_str()?,
        learn: d.bool()?,
        origin: dec_origin(&mut d, files)?,
    };
    d.end()?;
    Ok(c)
}

fn enc_trigger(t: &Trigger, files: &[PathBuf]) -> Vec<u8> {
    let Trigger {
        name,
        command,
        args,
        log,
        env,
        timeout,
        origin,
    } = t;
    let mut e = Enc::default();
    e.str(name);
    e.strs(command);
    match args {
        Some(a) => {
            e.u8(1);
            e.strs(a);
        }
        None => e.u8(0),
    }
    match log {
        Some(l) => {
            e.u8(1);
            e.path(l);
        }
        None => e.u8(0),
    }
    e.u32(u32::try_from(env.len()).unwrap_or(u32::MAX));
    for (k, v) in env {
        e.str(k);
        e.str(v);
    }
    match timeout {
        Some(t) => {
            e.u8(1);
            e.duration(*t);
        }
        None => e.u8(0),
    }
    enc_origin(&mut e, origin, files);
    e.0
}

fn dec_trigger(bytes: &[u8], files: &[PathBuf]) -> Result<Trigger, Unusable> {
    let mut d = Dec(bytes);
    let name = d.str()?;
    let command = d.strs()?;
    let args = match d.u8()? {
        0 => None,
        1 => Some(d.strs()?),
        _ => return Err(corrupt("a trigger's args are malformed")),
    };
    let log = match d.u8()? {
        0 => None,
        1 => Some(d.path()?),
        _ => return Err(corrupt("a trigger's log is malformed")),
    };
    let n = d.len()?;
    let mut env = BTreeMap::new();
    for _ in 0..n {
        let k = d.str()?;
        let v = d.str()?;
        env.insert(k, v);
    }
    let timeout = match d.u8()? {
        0 => None,
        1 => Some(d.duration()?),
        _ => return Err(corrupt("a trigger's timeout is malformed")),
    };
    let t = Trigger {
        name,
        command,
        args,
        log,
        env,
        timeout,
        origin: dec_origin(&mut d, files)?,
    };
    d.end()?;
    Ok(t)
}

// ---------------------------------------------------------------------------
// Sources and their identities
// ---------------------------------------------------------------------------

/// What a source was when the index was written: (device, inode, size,
/// mtime, ctime), or absent (a drop-in directory that did not exist).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Identity {
    fn of(md: &std::fs::Metadata) -> Identity {
        Identity {
            dev: md.dev(),
            ino: md.ino(),
            size: md.size(),
            mtime: (md.mtime(), md.mtime_nsec()),
            ctime: (md.ctime(), md.ctime_nsec()),
        }
    }
}

const SRC_FILE: u8 = 0;
const SRC_DIR: u8 = 1;
const SRC_ABSENT: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
struct SourceId {
    kind: u8,
    path: PathBuf,
    id: Option<Identity>,
}

fn enc_source(e: &mut Enc, s: &SourceId) {
    e.u8(s.kind);
    e.path(&s.path);
    let id = s.id.unwrap_or(Identity {
        dev: 0,
        ino: 0,
        size: 0,
        mtime: (0, 0),
        ctime: (0, 0),
    });
    e.u64(id.dev);
    e.u64(id.ino);
    e.u64(id.size);
    e.i64(id.mtime.0);
    e.i64(id.mtime.1);
    e.i64(id.ctime.0);
    e.i64(id.ctime.1);
}

fn dec_source(d: &mut Dec<'_>) -> Result<SourceId, Unusable> {
    let kind = d.u8()?;
    let path = d.path()?;
    let id = Identity {
        dev: d.u64()?,
        ino: d.u64()?,
        size: d.u64()?,
        mtime: (d.i64()?, d.i64()?),
        ctime: (d.i64()?, d.i64()?),
    };
    match kind {
        SRC_FILE | SRC_DIR => Ok(SourceId {
            kind,
            path,
            id: Some(id),
        }),
        SRC_ABSENT => Ok(SourceId {
            kind,
            path,
            id: None,
        }),
        _ => Err(corrupt("a source is malformed")),
    }
}

/// The directories the policy's wildcard `include` patterns read: adding
/// a drop-in changes the directory, not any file already read.
fn include_dirs(gate: &Gate) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = gate
        .include
        .iter()
        .filter(|p| p.contains(['*', '?']))
        .filter_map(|p| Path::new(p).parent().map(Path::to_path_buf))
        .collect();
    v.dedup();
    v
}

/// Is `s` still what it was? For files, also: is it root's alone (the
/// check `policy::load_checked` makes before reading one).
fn still(s: &SourceId) -> Result<(), Unusable> {
    match (s.kind, s.id) {
        (SRC_ABSENT, _) => match std::fs::symlink_metadata(&s.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            _ => Err(Unusable::Stale(format!("{} now exists", s.path.display()))),
        },
        (kind, Some(id)) => {
            if kind == SRC_FILE {
                crate::trust::check_path(&s.path, 0)
                    .map_err(|e| Unusable::Untrusted(format!("a source: {e}")))?;
            }
            let md = std::fs::metadata(&s.path)
                .map_err(|e| Unusable::Stale(format!("{}: {e}", s.path.display())))?;
            if Identity::of(&md) == id {
                Ok(())
            } else {
                Err(Unusable::Stale(format!(
                    "{} changed since the index was written",
                    s.path.display()
                )))
            }
        }
        _ => Err(corrupt("a source is malformed")),
    }
}

// ---------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------

/// A table as written: entries of (key, record), sorted by key.
struct TableOut {
    key_len: usize,
    rows: Vec<(Vec<u8>, Vec<u8>)>,
}

fn padded(key: &[u8], len: usize) -> Vec<u8> {
    let mut k = key.to_vec();
    k.resize(len, 0);
    k
}

fn rec_sum(rec: &[u8]) -> [u8; REC_SUM] {
    let d = sha256::digest(rec);
    let mut s = [0u8; REC_SUM];
    s.copy_from_slice(d.get(..REC_SUM).unwrap_or(&[0; REC_SUM]));
    s
}

fn ent_sum(key: &[u8], off: u64, len: u32, sum: &[u8]) -> [u8; ENT_SUM] {
    let d = sha256::digest_parts(&[key, &off.to_le_bytes(), &len.to_le_bytes(), sum]);
    let mut s = [0u8; ENT_SUM];
    s.copy_from_slice(d.get(..ENT_SUM).unwrap_or(&[0; ENT_SUM]));
    s
}

fn entry_len(key_len: usize) -> usize {
    key_len + 8 + 4 + REC_SUM + ENT_SUM
}

/// The index of `policy` (already loaded and valid), as bytes. `keys`:
/// (fingerprint, client name) for each client `authorized-keys` would
/// print a line for.
pub fn build(policy: &Policy, keys: &[([u8; 32], String)]) -> Result<Vec<u8>, String> {
    let files = &policy.files;
    let mut sources = Vec::new();
    for f in files {
        let md = std::fs::metadata(f).map_err(|e| format!("{}: {e}", f.display()))?;
        sources.push(SourceId {
            kind: SRC_FILE,
            path: f.clone(),
            id: Some(Identity::of(&md)),
        });
    }
    for d in include_dirs(&policy.gate) {
        match std::fs::metadata(&d) {
            Ok(md) => sources.push(SourceId {
                kind: SRC_DIR,
                path: d,
                id: Some(Identity::of(&md)),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => sources.push(SourceId {
                kind: SRC_ABSENT,
                path: d,
                id: None,
            }),
            Err(e) => return Err(format!("{}: {e}", d.display())),
        }
    }
    let mut meta = Enc::default();
    meta.path(&policy.source);
    meta.u32(u32::try_from(sources.len()).map_err(|_| "too many sources")?);
    for s in &sources {
        enc_source(&mut meta, s);
    }
    enc_gate(&mut meta, &policy.gate);
    let link: Vec<&str> = policy
        .modules
        .values()
        .filter(|m| m.writable() && !m.munge_links)
        .map(|m| m.name.as_str())
        .collect();
    meta.strs(&link);

    let named = |rows: Vec<(Vec<u8>, Vec<u8>)>| TableOut {
        key_len: NAME_KEY,
        rows,
    };
    let clients = named(
        policy
            .clients
            .values()
            .map(|c| (padded(c.name.as_bytes(), NAME_KEY), enc_client(c, files)))
            .collect(),
    );
    let modules = named(
        policy
            .modules
            .values()
            .map(|m| (padded(m.name.as_bytes(), NAME_KEY), enc_module(m, files)))
            .collect(),
    );
    let triggers = named(
        policy
            .triggers
            .values()
            .map(|t| (padded(t.name.as_bytes(), NAME_KEY), enc_trigger(t, files)))
            .collect(),
    );
    let mut key_rows: Vec<(Vec<u8>, Vec<u8>)> = keys
        .iter()
        .map(|(fp, name)| (fp.to_vec(), name.as_bytes().to_vec()))
        .collect();
    key_rows.sort();
    let fps = TableOut {
        key_len: FP_KEY,
        rows: key_rows,
    };
    for t in [&clients, &modules, &triggers] {
        if t.rows.iter().any(|(k, _)| k.len() > NAME_KEY) {
            return Err("a name is longer than the index holds".into());
        }
    }

    // Layout: header, meta, the four tables, then the records.
    let meta_off = HEADER_LEN as u64;
    let mut off = meta_off + meta.0.len() as u64;
    let tables = [&clients, &modules, &triggers, &fps];
    let mut table_offs = [0u64; 4];
    for (slot, t) in table_offs.iter_mut().zip(tables) {
        *slot = off;
        off += (t.rows.len() * entry_len(t.key_len)) as u64;
    }
    let mut table_bytes = Vec::new();
    let mut records = Vec::new();
    for t in tables {
        let mut sorted: Vec<&(Vec<u8>, Vec<u8>)> = t.rows.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, rec) in sorted {
            let rec_off = off + records.len() as u64;
            let rec_len = u32::try_from(rec.len()).map_err(|_| "a record is too large")?;
            let sum = rec_sum(rec);
            table_bytes.extend_from_slice(key);
            table_bytes.extend_from_slice(&rec_off.to_le_bytes());
            table_bytes.extend_from_slice(&rec_len.to_le_bytes());
            table_bytes.extend_from_slice(&sum);
            table_bytes.extend_from_slice(&ent_sum(key, rec_off, rec_len, &sum));
            records.extend_from_slice(rec);
        }
    }
    let file_len = off + records.len() as u64;

    let mut h = Enc::default();
    h.0.extend_from_slice(&MAGIC);
    h.u32(VERSION);
    h.u32(0);
    h.u64(file_len);
    h.u64(meta_off);
    h.u64(meta.0.len() as u64);
    for (t, toff) in tables.iter().zip(table_offs) {
        h.u64(toff);
        h.u64(t.rows.len() as u64);
    }
    h.0.extend_from_slice(&rec_sum(&meta.0));
    let hsum = rec_sum(&h.0);
    h.0.extend_from_slice(&hsum);
    h.0.resize(HEADER_LEN, 0);

    let mut out = h.0;
    out.extend_from_slice(&meta.0);
    out.extend_from_slice(&table_bytes);
    out.extend_from_slice(&records);
    if out.len() as u64 != file_len {
        return Err("the index's layout does not add up".into());
    }
    Ok(out)
}

/// Write `bytes` as the index of the policy at `policy`: a new file (mode
/// 0644) in the same directory, renamed over the old one.
pub fn write(policy: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let target = index_path(policy);
    let dir = target.parent().unwrap_or(Path::new("/"));
    let tmp = dir.join(format!(
        ".{}.{}",
        target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &target).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    Ok(target)
}

// ---------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
struct Table {
    off: u64,
    count: u64,
    key_len: usize,
}

/// An open, checked index: its header and meta part read; tables are
/// searched on demand.
#[derive(Debug)]
pub struct Index {
    file: File,
    len: u64,
    /// The policy it was compiled from.
    pub source: PathBuf,
    /// Every policy file, main first (as [`Policy::files`]).
    pub files: Vec<PathBuf>,
    pub gate: Gate,
    /// Writable modules with `munge_links = false` (any client's).
    link_modules: Vec<String>,
    clients: Table,
    modules: Table,
    triggers: Table,
    keys: Table,
}

fn read_at(file: &File, len: u64, off: u64, n: u64) -> Result<Vec<u8>, Unusable> {
    let end = off
        .checked_add(n)
        .ok_or_else(|| corrupt("an offset is out of range"))?;
    if end > len || n > MAX_PART {
        return Err(corrupt("a part lies outside the file"));
    }
    let n = usize::try_from(n).map_err(|_| corrupt("a part is too large"))?;
    let mut buf = vec![0u8; n];
    file.read_exact_at(&mut buf, off)
        .map_err(|e| corrupt(format!("cannot read: {e}")))?;
    Ok(buf)
}

impl Index {
    /// Open the index of the policy at `policy` (absolute) and check it:
    /// root's alone, whole, of this version, and compiled from the
    /// sources as they are now. One open; the rest is pread(2).
    pub fn open(policy: &Path) -> Result<Index, Unusable> {
        let path = index_path(policy);
        match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Unusable::Missing),
            _ => {}
        }
        crate::trust::check_path(&path, 0).map_err(Unusable::Untrusted)?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| corrupt(format!("{}: {e}", path.display())))?;
        let md = file
            .metadata()
            .map_err(|e| corrupt(format!("{}: {e}", path.display())))?;
        let owner_root = md.uid() == 0 || Some(md.uid()) == crate::trust::root_alias();
        if !md.is_file() || !owner_root || md.mode() & 0o022 != 0 {
            return Err(Unusable::Untrusted(format!(
                "{} is not a file of root's that only root can write",
                path.display()
            )));
        }
        let len = md.len();
        let header = read_at(&file, len, 0, HEADER_LEN as u64)
            .map_err(|_| corrupt(format!("{} is shorter than its header", path.display())))?;
        let mut d = Dec(&header);
        if d.array::<8>()? != MAGIC {
            return Err(corrupt(format!(
                "{} is not an rsync-gate index",
                path.display()
            )));
        }
        let version = d.u32()?;
        if version != VERSION {
            return Err(Unusable::Stale(format!(
                "{} is of format version {version}, this gate reads {VERSION}",
                path.display()
            )));
        }
        let _flags = d.u32()?;
        let file_len = d.u64()?;
        let meta_off = d.u64()?;
        let meta_len = d.u64()?;
        let mut tables = [Table {
            off: 0,
            count: 0,
            key_len: NAME_KEY,
        }; 4];
        for t in &mut tables {
            t.off = d.u64()?;
            t.count = d.u64()?;
        }
        let [clients, modules, triggers, mut keys] = tables;
        keys.key_len = FP_KEY;
        let meta_sum = d.array::<REC_SUM>()?;
        let summed = HEADER_LEN - d.0.len();
        let hsum = d.array::<REC_SUM>()?;
        if rec_sum(header.get(..summed).unwrap_or_default()) != hsum {
            return Err(corrupt(format!(
                "{}: its header does not match its checksum",
                path.display()
            )));
        }
        if file_len != len {
            return Err(corrupt(format!(
                "{} is {len} bytes, its header says {file_len}",
                path.display()
            )));
        }
        for t in [clients, modules, triggers, keys] {
            let size = t
                .count
                .checked_mul(entry_len(t.key_len) as u64)
                .and_then(|s| s.checked_add(t.off));
            if size.is_none_or(|end| end > len) {
                return Err(corrupt("a table lies outside the file"));
            }
        }
        let meta = read_at(&file, len, meta_off, meta_len)?;
        if rec_sum(&meta) != meta_sum {
            return Err(corrupt(format!(
                "{}: its sources and [gate] do not match their checksum",
                path.display()
            )));
        }
        let mut d = Dec(&meta);
        let source = d.path()?;
        if source != policy {
            return Err(Unusable::Stale(format!(
                "{} was compiled from {}",
                path.display(),
                source.display()
            )));
        }
        let n = d.u32()?;
        let mut sources = Vec::new();
        for _ in 0..n {
            sources.push(dec_source(&mut d)?);
        }
        let gate = dec_gate(&mut d)?;
        let link_modules = d.strs()?;
        d.end()?;
        if sources.first().is_none_or(|s| s.path != source) {
            return Err(corrupt("its first source is not the policy"));
        }
        for s in &sources {
            still(s)?;
        }
        let files = sources
            .into_iter()
            .filter(|s| s.kind == SRC_FILE)
            .map(|s| s.path)
            .collect();
        Ok(Index {
            file,
            len,
            source,
            files,
            gate,
            link_modules,
            clients,
            modules,
            triggers,
            keys,
        })
    }

    /// Entry `i` of `t`: its key and record, each checked.
    fn entry(&self, t: &Table, i: u64) -> Result<(Vec<u8>, u64, u32, [u8; REC_SUM]), Unusable> {
        let elen = entry_len(t.key_len) as u64;
        let off = i
            .checked_mul(elen)
            .and_then(|o| o.checked_add(t.off))
            .ok_or_else(|| corrupt("an entry is out of range"))?;
        let raw = read_at(&self.file, self.len, off, elen)?;
        let mut d = Dec(&raw);
        let key = d.take(t.key_len)?.to_vec();
        let rec_off = d.u64()?;
        let rec_len = d.u32()?;
        let sum = d.array::<REC_SUM>()?;
        let check = d.array::<ENT_SUM>()?;
        if ent_sum(&key, rec_off, rec_len, &sum) != check {
            return Err(corrupt("a table entry does not match its checksum"));
        }
        Ok((key, rec_off, rec_len, sum))
    }

    fn record(&self, rec_off: u64, rec_len: u32, sum: &[u8; REC_SUM]) -> Result<Vec<u8>, Unusable> {
        let rec = read_at(&self.file, self.len, rec_off, u64::from(rec_len))?;
        if rec_sum(&rec) != *sum {
            return Err(corrupt("a record does not match its checksum"));
        }
        Ok(rec)
    }

    /// The first entry whose key is not less than `key` (binary search, one
    /// pread per step).
    fn lower_bound(&self, t: &Table, key: &[u8]) -> Result<u64, Unusable> {
        let (mut lo, mut hi) = (0u64, t.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let (k, ..) = self.entry(t, mid)?;
            if k.as_slice() < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// The record named `name` in a name table, if there is one.
    fn named(&self, t: &Table, name: &str) -> Result<Option<Vec<u8>>, Unusable> {
        if name.len() > NAME_KEY || name.as_bytes().contains(&0) {
            return Ok(None);
        }
        let key = padded(name.as_bytes(), NAME_KEY);
        let i = self.lower_bound(t, &key)?;
        if i >= t.count {
            return Ok(None);
        }
        let (k, off, len, sum) = self.entry(t, i)?;
        if k != key {
            return Ok(None);
        }
        self.record(off, len, &sum).map(Some)
    }

    pub fn client(&self, name: &str) -> Result<Option<Client>, Unusable> {
        let Some(rec) = self.named(&self.clients, name)? else {
            return Ok(None);
        };
        let c = dec_client(&rec, &self.files)?;
        if c.name != name {
            return Err(corrupt("a client's record names another client"));
        }
        Ok(Some(c))
    }

    pub fn module(&self, name: &str) -> Result<Option<Module>, Unusable> {
        let Some(rec) = self.named(&self.modules, name)? else {
            return Ok(None);
        };
        let m = dec_module(&rec, &self.files)?;
        if m.name != name {
            return Err(corrupt("a module's record names another module"));
        }
        Ok(Some(m))
    }

    pub fn trigger(&self, name: &str) -> Result<Option<Trigger>, Unusable> {
        let Some(rec) = self.named(&self.triggers, name)? else {
            return Ok(None);
        };
        let t = dec_trigger(&rec, &self.files)?;
        if t.name != name {
            return Err(corrupt("a trigger's record names another trigger"));
        }
        Ok(Some(t))
    }

    /// The clients whose key has the SHA-256 fingerprint `fp`, by name.
    pub fn clients_with_key(&self, fp: &[u8; 32]) -> Result<Vec<String>, Unusable> {
        let t = self.keys;
        let mut i = self.lower_bound(&t, fp)?;
        let mut names = Vec::new();
        while i < t.count {
            let (k, off, len, sum) = self.entry(&t, i)?;
            if k.as_slice() != fp.as_slice() {
                break;
            }
            let rec = self.record(off, len, &sum)?;
            let name =
                std::str::from_utf8(&rec).map_err(|_| corrupt("a key's client is not UTF-8"))?;
            names.push(name.to_string());
            i += 1;
        }
        Ok(names)
    }

    /// The part of the policy a session of `client` needs: `[gate]`, the
    /// files, the client, its modules and trigger, and the writable modules
    /// that keep links (a link a client stored in one can point anywhere,
    /// so every session must know them). Unknown client: no clients.
    pub fn policy_for(&self, client: &str) -> Result<Policy, Unusable> {
        let mut p = Policy {
            source: self.source.clone(),
            files: self.files.clone(),
            gate: self.gate.clone(),
            modules: BTreeMap::new(),
            clients: BTreeMap::new(),
            triggers: BTreeMap::new(),
        };
        let missing = |what: &str, name: &str| corrupt(format!("{what} '{name}' is not in it"));
        for m in &self.link_modules {
            let module = self.module(m)?.ok_or_else(|| missing("module", m))?;
            p.modules.insert(m.clone(), module);
        }
        let Some(c) = self.client(client)? else {
            return Ok(p);
        };
        for m in &c.modules {
            if !p.modules.contains_key(m) {
                let module = self.module(m)?.ok_or_else(|| missing("module", m))?;
                p.modules.insert(m.clone(), module);
            }
        }
        if let Some(t) = &c.trigger {
            let trigger = self.trigger(t)?.ok_or_else(|| missing("trigger", t))?;
            p.triggers.insert(t.clone(), trigger);
        }
        p.clients.insert(c.name.clone(), c);
        Ok(p)
    }
}

/// The part of `full` a session of `client` needs, as
/// [`Index::policy_for`] gives it: what a compiled index must answer.
pub fn expected_for(full: &Policy, client: &str) -> Policy {
    expected_from(&expected_base(full), full, client)
}

/// What every session's part holds: `[gate]`, the files, the writable
/// modules that keep links (computed once for [`expected_from`]).
pub fn expected_base(full: &Policy) -> Policy {
    Policy {
        source: full.source.clone(),
        files: full.files.clone(),
        gate: full.gate.clone(),
        modules: full
            .modules
            .iter()
            .filter(|(_, m)| m.writable() && !m.munge_links)
            .map(|(k, m)| (k.clone(), m.clone()))
            .collect(),
        clients: BTreeMap::new(),
        triggers: BTreeMap::new(),
    }
}

/// [`expected_for`], from [`expected_base`]`(full)`.
pub fn expected_from(base: &Policy, full: &Policy, client: &str) -> Policy {
    let mut p = base.clone();
    if let Some(c) = full.clients.get(client) {
        for m in full.client_modules(c) {
            p.modules.insert(m.name.clone(), m.clone());
        }
        if let Some(t) = c.trigger.as_ref().and_then(|t| full.triggers.get(t)) {
            p.triggers.insert(t.name.clone(), t.clone());
        }
        p.clients.insert(c.name.clone(), c.clone());
    }
    p
}

/// How a session got its policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// From the compiled index.
    Index,
    /// From the TOML, because the index could not be used.
    Toml(Unusable),
}

/// The policy for a session of `client` (serve, the daemon hooks, a
/// trigger's supervisor): from the compiled index when it is current and
/// trusted, else parsed and checked from the TOML
/// ([`super::load_checked`]). Says at `-v` which, and why.
pub fn load_session(path: &Path, client: &str) -> (Result<Policy, super::LoadError>, Via) {
    let why = match Index::open(path).and_then(|ix| ix.policy_for(client)) {
        Ok(p) => {
            tracing::info!(
                "policy: from the compiled index {}",
                index_path(path).display()
            );
            return (Ok(p), Via::Index);
        }
        Err(why) => why,
    };
    tracing::info!(
        "policy: the compiled index {} is not used ({why}); parsing {}",
        index_path(path).display(),
        path.display()
    );
    (super::load_checked(path), Via::Toml(why))
}

#[cfg(test)]
mod tests;

/// `[gate] account`: a user name as `useradd` makes them.
pub fn check_account(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "account '{}' must be a user name: 1-32 letters, digits, '_', '-' or '.', not starting with '-'",
            name.escape_default()
        ))
    }
}
