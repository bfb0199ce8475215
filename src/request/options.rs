//! The rsync server option table.
//!
//! One static table of every option rsync 3.5 knows, as data: those an
//! rsync 3.0–3.5 client (or openrsync) sends to a server, and those only a
//! client uses (refused, so that nothing rsync would understand is merely
//! "unknown"). Each row says whether the option takes a value, how that
//! value is validated, which policy rule governs it, and what it would make
//! rsync's receiver tell a client about files already on the server (the
//! rule for write-only modules). Anything not in this table is refused.
//!
//! It is the gate's only list of options: the checked-mode parser, the
//! daemon hook's in-band parser and the generated daemon configs'
//! `refuse options` all come from it, and the options the gate adds itself
//! are named here ([`GATE_ADDED`]).

/// What an option takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takes {
    /// A flag.
    Nothing,
    /// A value: `--name=VALUE` or `--name VALUE`; for a short option the rest
    /// of its cluster or the next word.
    Value(Value),
}

/// How an option's value is validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// A server path, confined to the module; the role says how rsync
    /// resolves it.
    Path(PathRole),
    /// A decimal integer within an inclusive range.
    Int { min: i64, max: i64 },
    /// A size: digits, an optional fraction and an optional unit suffix
    /// (`K`, `M`, `G`, `T`, with optional `B`/`iB`), within an inclusive
    /// range of bytes (suffix-less values count as bytes).
    Size { min: u64, max: u64 },
    /// Text made only of the given bytes, bounded in length.
    Text { charset: Charset, max_len: usize },
    /// The `-e` capability string of a short-option cluster.
    Capabilities,
}

/// Character sets for text values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// Algorithm names and lists: `[A-Za-z0-9,_-]`.
    Names,
    /// `--info` flags: `[A-Za-z0-9,]`.
    InfoFlags,
    /// `--usermap`/`--groupmap`: names, ids, ranges and `*`/`?` wildcards.
    IdMap,
    /// `--iconv` charset names.
    Iconv,
    /// `--skip-compress` suffix lists: `[A-Za-z0-9/._-]`.
    Suffixes,
    /// `--log-format`/`--out-format`: printable ASCII.
    Printable,
    /// `--suffix`: printable ASCII without `/`.
    BackupSuffix,
}

impl Charset {
    pub fn allows(self, b: u8) -> bool {
        match self {
            Charset::Names => b.is_ascii_alphanumeric() || matches!(b, b',' | b'_' | b'-'),
            Charset::InfoFlags => b.is_ascii_alphanumeric() || b == b',',
            Charset::IdMap => {
                b.is_ascii_alphanumeric()
                    || matches!(b, b'*' | b'?' | b':' | b',' | b'-' | b'_' | b'.')
            }
            Charset::Iconv => {
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b',' | b'@')
            }
            Charset::Suffixes => {
                b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-')
            }
            Charset::Printable => (0x20..0x7f).contains(&b),
            Charset::BackupSuffix => (0x20..0x7f).contains(&b) && b != b'/',
        }
    }
}

/// How rsync resolves a path-valued option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRole {
    /// `--link-dest`, `--compare-dest`, `--copy-dest`: a basis directory the
    /// receiver reads (and hard-links from); relative to the destination.
    /// A missing basis is the ordinary first run.
    Basis,
    /// `--backup-dir`: created by the receiver if missing; relative to the
    /// destination.
    BackupDir,
    /// `--partial-dir`: relative values are per-directory names inside the
    /// transfer; absolute ones must lie in the module.
    PartialDir,
    /// `--temp-dir`: must exist; relative to the destination.
    TempDir,
    /// `--files-from`: a file the server reads (`-` means the socket).
    FilesFrom,
}

/// Which policy rule governs an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Always allowed (its value is still validated).
    Allow,
    /// Always refused, with the reason.
    Refuse(&'static str),
    /// Deletes files on the server: needs `delete = true` on a writable
    /// module, and is refused when `overwrite = false`.
    Delete,
    /// Makes rsync follow symlinks: needs `follow_links = true`.
    FollowLinks,
    /// Reads or writes device contents: needs `devices = true`.
    Devices,
    /// Can replace or move existing files aside, or leave a partial file
    /// that `--ignore-existing` would then keep forever: refused when
    /// `overwrite = false`.
    Replaces,
    /// `-s`: the arguments arrive on stdin.
    Secluded,
}

/// What an option makes rsync's receiver tell the client about files
/// already on the server, and so how it fares in a module the client may
/// not read (`write_only = true`), where nothing derived from existing files
/// may reach the client. Each reason is the text a refusal shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOnly {
    /// Tells the client nothing about existing files beyond what every
    /// upload shows (README, "Drop boxes").
    Harmless,
    /// Makes an existing file the basis of an upload (its block checksums,
    /// or its name, go back to the client), or answers for existing names
    /// without transferring anything: refused in every write-only module.
    Reveals(&'static str),
    /// Decides whether to send a file by comparing it with the existing
    /// file of that name: refused in write-only modules whose uploads may
    /// replace files (`overwrite = true`). With `overwrite = false` the
    /// `--ignore-existing` every such upload carries skips each existing
    /// name before any comparison.
    Compares(&'static str),
    /// `--info`: refused in write-only modules when its value asks for
    /// `SKIP2` (by name or through `ALL2` and up), which describes how each
    /// skipped existing file compares with the upload
    /// ([`info_asks_skip_detail`]).
    SkipDetail(&'static str),
}

/// Options whose meaning the gate itself needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meaning {
    /// Nothing special.
    Plain,
    /// `-R`/`--relative`.
    Relative,
    /// `--no-relative`.
    NoRelative,
    /// `--from0`.
    From0,
    /// `-D`: the receiver may create device nodes and special files.
    CreatesNodes,
    /// `--devices`: the receiver may create device nodes.
    CreatesDevices,
    /// `--specials`: the receiver may create FIFOs and sockets.
    CreatesSpecials,
    /// Makes the receiver delete files; a sender ignores it (it has nothing
    /// to delete). openrsync sends these to a sender on a pull with
    /// `--delete`, where the gate drops them from rsync's argv.
    ReceiverDeletes,
}

/// One row of the option table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// Canonical long name, without the leading `--`.
    pub long: &'static str,
    /// The short letter, if rsync has one.
    pub short: Option<u8>,
    /// Further long spellings rsync accepts for the same option.
    pub aliases: &'static [&'static str],
    pub takes: Takes,
    pub rule: Rule,
    pub meaning: Meaning,
    /// How it fares in a write-only module.
    pub write_only: WriteOnly,
}

impl Spec {
    /// The spelling used in messages: `--long` (and `-x` when it has one).
    pub fn display(&self) -> String {
        match self.short {
            Some(c) if self.long.len() == 1 => format!("-{}", char::from(c)),
            Some(c) => format!("--{} (-{})", self.long, char::from(c)),
            None => format!("--{}", self.long),
        }
    }

    /// Does this row answer to the long name `name`?
    pub fn answers_to(&self, name: &str) -> bool {
        self.long == name || self.aliases.contains(&name)
    }
}

const fn flag(long: &'static str, short: Option<u8>, rule: Rule) -> Spec {
    Spec {
        long,
        short,
        aliases: &[],
        takes: Takes::Nothing,
        rule,
        meaning: Meaning::Plain,
        write_only: WriteOnly::Harmless,
    }
}

const fn valued(long: &'static str, short: Option<u8>, value: Value, rule: Rule) -> Spec {
    Spec {
        long,
        short,
        aliases: &[],
        takes: Takes::Value(value),
        rule,
        meaning: Meaning::Plain,
        write_only: WriteOnly::Harmless,
    }
}

const fn with_aliases(mut s: Spec, aliases: &'static [&'static str]) -> Spec {
    s.aliases = aliases;
    s
}

const fn with_meaning(mut s: Spec, meaning: Meaning) -> Spec {
    s.meaning = meaning;
    s
}

const fn in_write_only(mut s: Spec, write_only: WriteOnly) -> Spec {
    s.write_only = write_only;
    s
}

const fn text(charset: Charset, max_len: usize) -> Value {
    Value::Text { charset, max_len }
}

const fn int(min: i64, max: i64) -> Value {
    Value::Int { min, max }
}

const KIB: u64 = 1024;
const GIB: u64 = 1024 * 1024 * 1024;

/// Largest block size rsync accepts (protocol >= 30).
pub const MAX_BLOCK_SIZE: i64 = 128 * 1024;
/// Most compression threads a client may ask for (rsync 3.5 caps daemons at 8).
pub const MAX_COMPRESS_THREADS: i64 = 8;
/// Largest `--max-alloc` a client may ask for.
pub const MAX_ALLOC: u64 = 8 * GIB;

const DAEMON_ONLY: &str = "daemon options are not accepted here";
const SET_BY_GATE: &str = "the gate sets this itself";
const CLIENT_ONLY: &str = "it is a client-side option; rsync clients never send it to a server";
// openrsync sends some options a real rsync client keeps to itself; rsync's
// server accepts them and they change only how its own messages look
// (`-h`, `-8`) or nothing at all (`--progress`, `--no-super` on a sender).
const FILTER_FILES: &str =
    "filter rules travel in the protocol; the server's rule files are not the client's to name";

// Why options are refused in write-only modules (`WriteOnly`); each is the
// "(KNOB: why)" part of the refusal the client sees.
const WO_FUZZY: &str = "write_only = true: a similarly named existing file would be the basis, its name and checksums sent to the client";
const WO_DEST: &str = "write_only = true: files in that directory would be compared with the upload and become its basis, whose checksums go to the client";
const WO_PARTIAL: &str = "write_only = true: another upload's partial file would be the basis, and the client would learn of it";
/// Why write-only modules refuse delta transfers (`--no-W`, and in daemon
/// mode uploads without `--whole-file`).
pub const WO_DELTA: &str =
    "write_only = true: delta transfers send the client checksums of existing files";
const WO_APPEND: &str =
    "write_only = true: the existing file's length would decide what is sent, and go to the client";
const WO_DRY_RUN: &str =
    "write_only = true: a dry run would answer questions about existing files without a trace";
const WO_EXISTING: &str =
    "write_only = true: skipping the names that do not exist tells the client which do";
const WO_MAX_DELETE: &str = "write_only = true: it would report how many files a deletion would remove, without removing them";
const WO_CHECKSUM: &str = "write_only = true, overwrite = true: skipping files whose content matches would confirm guesses of their content";
const WO_UPDATE: &str = "write_only = true, overwrite = true: skipping files that are newer on the server would reveal their times";
const WO_SIZE_ONLY: &str =
    "write_only = true, overwrite = true: skipping files of the same size would reveal their sizes";
const WO_MODIFY_WINDOW: &str = "write_only = true, overwrite = true: a time window would turn the skip test into a range query on existing files' times";
const WO_SKIP_DETAIL: &str =
    "write_only = true: SKIP2 describes how each existing file compares with the upload";

/// The letters an rsync client puts in the option cluster it sends a
/// server (rsync 3.5's `server_options()`, in its order). The gate writes
/// these as one cluster too, and every other option by its long name.
pub const CLUSTER_LETTERS: &[u8] = b"svqbunldKmOJyLkWHogDtUNpEAXrcCIRxSz";

/// `--ignore-existing`: added on pushes into `overwrite = false` modules.
pub const IGNORE_EXISTING: &str = "ignore-existing";
/// `--drop-D`: added on pushes into `devices = false` modules (rsync 3.5).
pub const DROP_D: &str = "drop-D";
/// `--munge-links`: added where `munge_links = true`.
pub const MUNGE_LINKS: &str = "munge-links";
/// `--confine-root=DIR`: added with the module's root (rsync 3.5).
pub const CONFINE_ROOT: &str = "confine-root";
/// `--whole-file`: added on pushes into write-only modules, so the receiver
/// sends no checksums of existing files.
pub const WHOLE_FILE: &str = "whole-file";
/// `--chmod=ug-s`: added on pushes into `setuid = false` modules (the
/// receiving rsync applies it to every file it is sent).
pub const CHMOD: &str = "chmod";
/// The `--chmod` value that strips set-user-ID and set-group-ID bits.
pub const STRIP_SETUID: &str = "ug-s";
/// `--timeout=N`: added for modules with a `timeout` (the smaller of the
/// module's and the client's own, which it replaces).
pub const TIMEOUT: &str = "timeout";

/// Every option the gate may add to what a client asked for. Each is a row
/// of the table (a test holds this); clients may send `--ignore-existing`,
/// `--whole-file`, `--drop-D`, `--munge-links` and `--timeout` themselves,
/// never `--confine-root` or `--chmod`.
pub const GATE_ADDED: &[&str] = &[
    IGNORE_EXISTING,
    WHOLE_FILE,
    DROP_D,
    MUNGE_LINKS,
    CONFINE_ROOT,
    CHMOD,
    TIMEOUT,
];

use Rule::{Allow, Delete, Devices, FollowLinks, Refuse, Replaces};
use WriteOnly::{Compares, Reveals, SkipDetail};

/// The table. Short-letter rows first, then long-only rows, each group in
/// alphabetical order (a test holds this).
pub static OPTIONS: &[Spec] = &[
    // ---- options with a short letter ----
    flag("ipv4", Some(b'4'), Refuse(CLIENT_ONLY)),
    flag("ipv6", Some(b'6'), Refuse(CLIENT_ONLY)),
    // openrsync sends it: it only changes how the server's messages show
    // names with high-bit bytes.
    flag("8-bit-output", Some(b'8'), Allow),
    flag("acls", Some(b'A'), Allow),
    flag("cvs-exclude", Some(b'C'), Allow),
    with_meaning(flag("D", Some(b'D'), Allow), Meaning::CreatesNodes),
    flag("executability", Some(b'E'), Allow),
    flag("F", Some(b'F'), Refuse(FILTER_FILES)),
    flag("hard-links", Some(b'H'), Allow),
    flag("ignore-times", Some(b'I'), Allow),
    flag("omit-link-times", Some(b'J'), Allow),
    flag("keep-dirlinks", Some(b'K'), FollowLinks),
    flag("copy-links", Some(b'L'), FollowLinks),
    valued(
        "remote-option",
        Some(b'M'),
        text(Charset::Printable, 0),
        Refuse(CLIENT_ONLY),
    ),
    flag("crtimes", Some(b'N'), Allow),
    flag("omit-dir-times", Some(b'O'), Allow),
    flag("P", Some(b'P'), Refuse(CLIENT_ONLY)),
    with_meaning(flag("relative", Some(b'R'), Allow), Meaning::Relative),
    flag("sparse", Some(b'S'), Allow),
    valued(
        "temp-dir",
        Some(b'T'),
        Value::Path(PathRole::TempDir),
        Allow,
    ),
    flag("atimes", Some(b'U'), Allow),
    flag("version", Some(b'V'), Refuse(CLIENT_ONLY)),
    flag("whole-file", Some(b'W'), Allow),
    flag("xattrs", Some(b'X'), Allow),
    flag("archive", Some(b'a'), Refuse(CLIENT_ONLY)),
    flag("backup", Some(b'b'), Replaces),
    in_write_only(flag("checksum", Some(b'c'), Allow), Compares(WO_CHECKSUM)),
    flag("dirs", Some(b'd'), Allow),
    valued(
        "filter",
        Some(b'f'),
        text(Charset::Printable, 0),
        Refuse(FILTER_FILES),
    ),
    flag("group", Some(b'g'), Allow),
    // openrsync sends it (`-avhP`): it only changes how the server's
    // messages show numbers.
    flag("human-readable", Some(b'h'), Allow),
    flag("itemize-changes", Some(b'i'), Refuse(CLIENT_ONLY)),
    flag("copy-dirlinks", Some(b'k'), FollowLinks),
    flag("links", Some(b'l'), Allow),
    flag("prune-empty-dirs", Some(b'm'), Allow),
    in_write_only(flag("dry-run", Some(b'n'), Allow), Reveals(WO_DRY_RUN)),
    flag("owner", Some(b'o'), Allow),
    flag("perms", Some(b'p'), Allow),
    flag("quiet", Some(b'q'), Allow),
    flag("recursive", Some(b'r'), Allow),
    with_aliases(
        flag("secluded-args", Some(b's'), Rule::Secluded),
        &["protect-args"],
    ),
    flag("times", Some(b't'), Allow),
    in_write_only(flag("update", Some(b'u'), Allow), Compares(WO_UPDATE)),
    flag("verbose", Some(b'v'), Allow),
    flag("one-file-system", Some(b'x'), Allow),
    in_write_only(flag("fuzzy", Some(b'y'), Allow), Reveals(WO_FUZZY)),
    flag("compress", Some(b'z'), Allow),
    with_meaning(flag("from0", Some(b'0'), Allow), Meaning::From0),
    valued("block-size", Some(b'B'), int(0, MAX_BLOCK_SIZE), Allow),
    in_write_only(
        valued(
            "modify-window",
            Some(b'@'),
            int(-1_000_000_000, 1_000_000_000),
            Allow,
        ),
        Compares(WO_MODIFY_WINDOW),
    ),
    // ---- long-only options ----
    valued(
        "address",
        None,
        text(Charset::Printable, 0),
        Refuse(CLIENT_ONLY),
    ),
    in_write_only(flag("append", None, Replaces), Reveals(WO_APPEND)),
    in_write_only(flag("append-verify", None, Replaces), Reveals(WO_APPEND)),
    valued(
        "backup-dir",
        None,
        Value::Path(PathRole::BackupDir),
        Replaces,
    ),
    flag("blocking-io", None, Refuse(CLIENT_ONLY)),
    valued(
        "bwlimit",
        None,
        Value::Size {
            min: 0,
            max: 1 << 50,
        },
        Allow,
    ),
    with_aliases(
        valued("checksum-choice", None, text(Charset::Names, 64), Allow),
        &["cc"],
    ),
    valued("checksum-seed", None, int(0, i32::MAX as i64), Allow),
    valued(
        "chmod",
        None,
        text(Charset::Printable, 0),
        Refuse(CLIENT_ONLY),
    ),
    valued(
        "chown",
        None,
        text(Charset::Printable, 0),
        Refuse(CLIENT_ONLY),
    ),
    in_write_only(
        valued("compare-dest", None, Value::Path(PathRole::Basis), Allow),
        Reveals(WO_DEST),
    ),
    with_aliases(
        valued("compress-choice", None, text(Charset::Names, 32), Allow),
        &["zc"],
    ),
    with_aliases(
        valued("compress-level", None, int(-131_072, 22), Allow),
        &["zl"],
    ),
    with_aliases(
        valued(
            "compress-threads",
            None,
            int(0, MAX_COMPRESS_THREADS),
            Allow,
        ),
        &["zt"],
    ),
    valued(
        "config",
        None,
        text(Charset::Printable, 0),
        Refuse(DAEMON_ONLY),
    ),
    valued(
        "confine-root",
        None,
        text(Charset::Printable, 0),
        Refuse(SET_BY_GATE),
    ),
    valued(
        "contimeout",
        None,
        text(Charset::Printable, 0),
        Refuse(CLIENT_ONLY),
    ),
    valued(
        "copy-as",
        None,
        text(Charset::Printable, 0),
        Refuse("switching the user is not allowed"),
    ),
    in_write_only(
        valued("copy-dest", None, Value::Path(PathRole::Basis), Allow),
        Reveals(WO_DEST),
    ),
    flag("copy-devices", None, Devices),
    flag("copy-unsafe-links", None, FollowLinks),
    flag("daemon", None, Refuse(DAEMON_ONLY)),
    valued(
        "debug",
        None,
        text(Charset::Printable, 0),
        Refuse("debug output can reveal server files"),
    ),
    in_write_only(flag("delay-updates", None, Replaces), Reveals(WO_PARTIAL)),
    with_meaning(flag("delete", None, Delete), Meaning::ReceiverDeletes),
    with_meaning(flag("delete-after", None, Delete), Meaning::ReceiverDeletes),
    with_meaning(
        flag("delete-before", None, Delete),
        Meaning::ReceiverDeletes,
    ),
    with_meaning(flag("delete-delay", None, Delete), Meaning::ReceiverDeletes),
    with_meaning(
        with_aliases(flag("delete-during", None, Delete), &["del"]),
        Meaning::ReceiverDeletes,
    ),
    with_meaning(
        flag("delete-excluded", None, Delete),
        Meaning::ReceiverDeletes,
    ),
    flag("delete-missing-args", None, Delete),
    with_meaning(flag("devices", None, Allow), Meaning::CreatesDevices),
    valued(
        "dparam",
        None,
        text(Charset::Printable, 0),
        Refuse(DAEMON_ONLY),
    ),
    flag("drop-D", None, Allow),
    valued(
        "early-input",
        None,
        text(Charset::Printable, 0),
        Refuse(CLIENT_ONLY),
    ),
    valued(
        "exclude",
        None,
        text(Charset::Printable, 0),
        Refuse(FILTER_FILES),
    ),
    valued(
        "exclude-from",
        None,
        text(Charset::Printable, 0),
        Refuse(FILTER_FILES),
    ),
    in_write_only(
        with_aliases(flag("existing", None, Allow), &["ignore-non-existing"]),
        Reveals(WO_EXISTING),
    ),
    flag("fake-super", None, Allow),
    valued("files-from", None, Value::Path(PathRole::FilesFrom), Allow),
    with_meaning(flag("force", None, Delete), Meaning::ReceiverDeletes),
    flag("fsync", None, Allow),
    valued("groupmap", None, text(Charset::IdMap, 1024), Allow),
    flag("help", None, Refuse(CLIENT_ONLY)),
    valued("iconv", None, text(Charset::Iconv, 64), Allow),
    flag("ignore-errors", None, Allow),
    flag("ignore-existing", None, Allow),
    flag("ignore-missing-args", None, Allow),
    with_aliases(flag("inc-recursive", None, Refuse(CLIENT_ONLY)), &["i-r"]),
    valued(
        "include",
        None,
        text(Charset::Printable, 0),
        Refuse(FILTER_FILES),
    ),
    valued(
        "include-from",
        None,
        text(Charset::Printable, 0),
        Refuse(FILTER_FILES),
    ),
    in_write_only(
        valued("info", None, text(Charset::InfoFlags, 256), Allow),
        SkipDetail(WO_SKIP_DETAIL),
    ),
    flag("inplace", None, Replaces),
    flag(
        "insecure-links",
        None,
        Refuse("following attacker-owned symlinks is not allowed"),
    ),
    in_write_only(
        valued("link-dest", None, Value::Path(PathRole::Basis), Allow),
        Reveals(WO_DEST),
    ),
    flag("list-only", None, Allow),
    valued(
        "log-file",
        None,
        text(Charset::Printable, 0),
        Refuse("the server's log file is not the client's to choose"),
    ),
    valued(
        "log-file-format",
        None,
        text(Charset::Printable, 0),
        Refuse("the server's log file is not the client's to choose"),
    ),
    with_aliases(
        valued("log-format", None, text(Charset::Printable, 256), Allow),
        &["out-format"],
    ),
    valued(
        "max-alloc",
        None,
        Value::Size {
            min: KIB,
            max: MAX_ALLOC,
        },
        Allow,
    ),
    in_write_only(
        valued("max-delete", None, int(-1, i32::MAX as i64), Allow),
        Reveals(WO_MAX_DELETE),
    ),
    valued(
        "max-size",
        None,
        Value::Size {
            min: 0,
            max: i64::MAX as u64,
        },
        Allow,
    ),
    valued(
        "min-size",
        None,
        Value::Size {
            min: 0,
            max: i64::MAX as u64,
        },
        Allow,
    ),
    flag("mkpath", None, Allow),
    flag("msgs2stderr", None, Allow),
    flag("munge-links", None, Allow),
    flag("new-compress", None, Allow),
    flag("no-implied-dirs", None, Allow),
    with_aliases(
        flag("no-inc-recursive", None, Refuse(CLIENT_ONLY)),
        &["no-i-r"],
    ),
    flag("no-motd", None, Refuse(CLIENT_ONLY)),
    flag("no-msgs2stderr", None, Allow),
    flag(
        "no-munge-links",
        None,
        Refuse("symlink munging is the server's choice"),
    ),
    with_aliases(flag("no-r", None, Allow), &["no-recursive"]),
    with_meaning(
        with_aliases(flag("no-relative", None, Allow), &["no-R"]),
        Meaning::NoRelative,
    ),
    flag("no-specials", None, Allow),
    // openrsync sends it: the receiver acts as a non-root user (no owners,
    // no device nodes), a sender ignores it.
    flag("no-super", None, Allow),
    in_write_only(
        with_aliases(flag("no-W", None, Allow), &["no-whole-file"]),
        Reveals(WO_DELTA),
    ),
    flag("numeric-ids", None, Allow),
    flag("old-args", None, Refuse(CLIENT_ONLY)),
    flag("old-compress", None, Allow),
    with_aliases(flag("old-dirs", None, Refuse(CLIENT_ONLY)), &["old-d"]),
    valued(
        "only-write-batch",
        None,
        text(Charset::Printable, 0),
        Refuse("batch files are not allowed"),
    ),
    flag("open-noatime", None, Allow),
    valued(
        "outbuf",
        None,
        text(Charset::Printable, 0),
        Refuse(CLIENT_ONLY),
    ),
    flag("partial", None, Replaces),
    in_write_only(
        valued(
            "partial-dir",
            None,
            Value::Path(PathRole::PartialDir),
            Replaces,
        ),
        Reveals(WO_PARTIAL),
    ),
    valued(
        "password-file",
        None,
        text(Charset::Printable, 0),
        Refuse(CLIENT_ONLY),
    ),
    valued(
        "port",
        None,
        text(Charset::Printable, 0),
        Refuse(CLIENT_ONLY),
    ),
    flag("preallocate", None, Allow),
    // openrsync sends it (`-P`); rsync's server ignores it.
    flag("progress", None, Allow),
    valued(
        "protocol",
        None,
        text(Charset::Printable, 0),
        Refuse(CLIENT_ONLY),
    ),
    with_aliases(flag("qsort", None, Allow), &["use-qsort"]),
    valued(
        "read-batch",
        None,
        text(Charset::Printable, 0),
        Refuse("batch files are not allowed"),
    ),
    flag("remove-sent-files", None, Delete),
    flag("remove-source-files", None, Delete),
    valued(
        "rsh",
        None,
        text(Charset::Printable, 0),
        Refuse("a server does not start remote shells"),
    ),
    valued(
        "rsync-path",
        None,
        text(Charset::Printable, 0),
        Refuse("the server runs its own rsync"),
    ),
    flag("safe-links", None, Allow),
    in_write_only(flag("size-only", None, Allow), Compares(WO_SIZE_ONLY)),
    valued("skip-compress", None, text(Charset::Suffixes, 1024), Allow),
    valued(
        "sockopts",
        None,
        text(Charset::Printable, 0),
        Refuse(CLIENT_ONLY),
    ),
    with_meaning(flag("specials", None, Allow), Meaning::CreatesSpecials),
    flag("stats", None, Allow),
    valued("stderr", None, text(Charset::Names, 16), Allow),
    with_aliases(
        valued(
            "stop-after",
            None,
            text(Charset::Printable, 0),
            Refuse(CLIENT_ONLY),
        ),
        &["time-limit"],
    ),
    valued(
        "stop-at",
        None,
        text(Charset::Printable, 0),
        Refuse(CLIENT_ONLY),
    ),
    valued("suffix", None, text(Charset::BackupSuffix, 64), Allow),
    flag("super", None, Allow),
    valued("timeout", None, int(1, 30 * 86_400), Allow),
    flag(
        "trust-sender",
        None,
        Refuse("the receiver must check the sender's file list"),
    ),
    valued("usermap", None, text(Charset::IdMap, 1024), Allow),
    valued(
        "write-batch",
        None,
        text(Charset::Printable, 0),
        Refuse("batch files are not allowed"),
    ),
    flag("write-devices", None, Devices),
];

/// Look up a long option by any of its spellings.
pub fn by_long(name: &str) -> Option<&'static Spec> {
    OPTIONS.iter().find(|s| s.answers_to(name))
}

/// Look up a short option letter.
pub fn by_short(letter: u8) -> Option<&'static Spec> {
    OPTIONS.iter().find(|s| s.short == Some(letter))
}

/// Does an `--info` value ask for `SKIP` at level 2 or more, by name or
/// through `ALL`? Read as rsync reads it: comma-separated words, each a
/// name (compared without regard to case) and a level in trailing digits
/// (none: 1; a word that starts with a digit is all name). Any level but
/// a plain 0 or 1 counts as 2 or more (rsync caps levels at 4 and turns
/// overflowing ones into 4), so every doubtful value is taken as asking.
pub fn info_asks_skip_detail(value: &str) -> bool {
    value.split(',').any(|word| {
        if word.starts_with(|c: char| c.is_ascii_digit()) {
            return false;
        }
        let name = word.trim_end_matches(|c: char| c.is_ascii_digit());
        let level = word.get(name.len()..).unwrap_or_default();
        let level = level.trim_start_matches('0');
        let detailed = !level.is_empty() && level != "1";
        detailed && (name.eq_ignore_ascii_case("skip") || name.eq_ignore_ascii_case("all"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn names_and_letters_are_unique() {
        let mut longs = BTreeSet::new();
        let mut shorts = BTreeSet::new();
        for s in OPTIONS {
            assert!(longs.insert(s.long), "duplicate long name {}", s.long);
            for a in s.aliases {
                assert!(longs.insert(a), "duplicate alias {a}");
            }
            if let Some(c) = s.short {
                assert!(shorts.insert(c), "duplicate letter {}", char::from(c));
            }
        }
    }

    #[test]
    fn groups_are_sorted() {
        let with_short: Vec<&Spec> = OPTIONS.iter().filter(|s| s.short.is_some()).collect();
        let long_only: Vec<&str> = OPTIONS
            .iter()
            .filter(|s| s.short.is_none())
            .map(|s| s.long)
            .collect();
        // Every lettered row comes before every long-only row.
        let first_long_only = OPTIONS.iter().position(|s| s.short.is_none()).unwrap();
        assert_eq!(first_long_only, with_short.len());
        let mut sorted = long_only.clone();
        sorted.sort_by_key(|a| a.to_ascii_lowercase());
        assert_eq!(long_only, sorted, "long-only rows must be alphabetical");
    }

    #[test]
    fn long_names_are_well_formed() {
        for s in OPTIONS {
            for name in std::iter::once(&s.long).chain(s.aliases.iter()) {
                assert!(!name.is_empty());
                assert!(
                    name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
                    "bad name {name}"
                );
                assert!(!name.starts_with('-'), "{name}");
            }
        }
    }

    #[test]
    fn refused_rows_never_take_real_values() {
        // A refused option is refused whatever its value; its text spec is a
        // placeholder with max_len 0 so no value could ever validate.
        for s in OPTIONS {
            if let (Rule::Refuse(_), Takes::Value(Value::Text { max_len, .. })) = (s.rule, s.takes)
            {
                assert_eq!(max_len, 0, "{}", s.long);
            }
        }
    }

    #[test]
    fn path_valued_options_are_exactly_the_known_ones() {
        let paths: BTreeSet<&str> = OPTIONS
            .iter()
            .filter(|s| matches!(s.takes, Takes::Value(Value::Path(_))))
            .map(|s| s.long)
            .collect();
        let want: BTreeSet<&str> = [
            "backup-dir",
            "compare-dest",
            "copy-dest",
            "files-from",
            "link-dest",
            "partial-dir",
            "temp-dir",
        ]
        .into_iter()
        .collect();
        assert_eq!(paths, want);
    }

    #[test]
    fn ranges_are_sane() {
        for s in OPTIONS {
            match s.takes {
                Takes::Value(Value::Int { min, max }) => assert!(min <= max, "{}", s.long),
                Takes::Value(Value::Size { min, max }) => assert!(min <= max, "{}", s.long),
                _ => {}
            }
        }
    }

    /// The letters real rsync clients put in a server cluster (rsync 3.5's
    /// `server_options()` order) plus the valued ones: every one must be a
    /// row a module can allow (the parser reads `e` itself).
    #[test]
    fn letters_clients_send_are_rows() {
        for &c in CLUSTER_LETTERS.iter().chain(b"B@") {
            let spec = by_short(c).unwrap_or_else(|| panic!("-{}", char::from(c)));
            assert!(
                !matches!(spec.rule, Rule::Refuse(_)),
                "-{} is sent by clients but refused",
                char::from(c)
            );
        }
        assert!(by_short(b'e').is_none(), "-e is the capability string");
    }

    /// Every option and alias the installed rsync lists in `--help` is a row
    /// (so nothing rsync understands is merely "unknown" to the gate), and
    /// every short letter there names the same row as its long name.
    #[test]
    fn every_option_in_rsync_help_is_a_row() {
        let Ok(out) = std::process::Command::new("/usr/bin/rsync")
            .arg("--help")
            .output()
        else {
            assert!(
                std::env::var("CI").is_err(),
                "rsync is required in CI (install it in .ci/run)"
            );
            eprintln!("SKIP: /usr/bin/rsync not installed");
            return;
        };
        let help = String::from_utf8_lossy(&out.stdout);
        let (longs, shorts) = help_options(&help);
        assert!(longs.len() > 140, "parsed only {} options", longs.len());
        let mut missing = Vec::new();
        for name in &longs {
            if by_long(name).is_none() {
                missing.push(format!("--{name}"));
            }
        }
        for (letter, long) in &shorts {
            if *letter == b'e' {
                assert_eq!(long.as_deref(), Some("rsh"));
                continue;
            }
            match (by_short(*letter), long) {
                (None, _) => missing.push(format!("-{}", char::from(*letter))),
                (Some(s), Some(l)) if *letter != b'h' || l != "help" => {
                    assert!(
                        s.answers_to(l),
                        "-{} is {} here, --{l} in rsync",
                        char::from(*letter),
                        s.long
                    )
                }
                _ => {}
            }
        }
        assert!(
            missing.is_empty(),
            "rsync --help lists options the table does not know: {missing:?}"
        );
    }

    /// The `--help` lines: `--long[=ARG][, -x]  text (aka --alias)`, or
    /// `-x  same as ...`. The generic `--no-OPTION` line is not an option.
    fn help_options(help: &str) -> (BTreeSet<String>, Vec<(u8, Option<String>)>) {
        let mut longs = BTreeSet::new();
        let mut shorts = Vec::new();
        for line in help.lines() {
            let line = line.trim_start();
            if !line.starts_with('-') {
                continue;
            }
            let (spec, text) = line.split_once("  ").unwrap_or((line, ""));
            let mut long = None;
            for part in spec.split(", ") {
                let part = part.split(['=', ' ']).next().unwrap_or("");
                if let Some(name) = part.strip_prefix("--") {
                    if name == "no-OPTION" {
                        continue;
                    }
                    long.get_or_insert_with(|| name.to_string());
                    longs.insert(name.to_string());
                } else if let Some(l) = part.strip_prefix('-') {
                    if let [c] = l.as_bytes() {
                        shorts.push((*c, long.clone()));
                    }
                }
            }
            if let Some((_, aka)) = text.split_once("(aka --") {
                longs.insert(aka.trim_end_matches(')').to_string());
            }
        }
        (longs, shorts)
    }

    #[test]
    fn help_parsing_reads_aliases_and_letters() {
        let (longs, shorts) = help_options(
            "Options\n--verbose, -v            increase verbosity\n\
             --no-OPTION              turn off\n\
             --compress-level=NUM     level (aka --zl)\n\
             --no-whole-file, --no-W  use delta\n\
             -D                       same as --devices --specials\n",
        );
        let want: BTreeSet<String> = ["verbose", "compress-level", "zl", "no-whole-file", "no-W"]
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(longs, want);
        assert_eq!(shorts, [(b'v', Some("verbose".to_string())), (b'D', None)]);
    }

    /// The rows a write-only module refuses, and why: exactly these
    /// (README "Drop boxes" has the same list).
    #[test]
    fn write_only_rows_are_exactly_these() {
        let mut reveals = BTreeSet::new();
        let mut compares = BTreeSet::new();
        let mut detail = BTreeSet::new();
        for s in OPTIONS {
            let why = match s.write_only {
                WriteOnly::Harmless => continue,
                WriteOnly::Reveals(why) => {
                    reveals.insert(s.long);
                    why
                }
                WriteOnly::Compares(why) => {
                    compares.insert(s.long);
                    assert!(
                        why.starts_with("write_only = true, overwrite = true: "),
                        "{why}"
                    );
                    why
                }
                WriteOnly::SkipDetail(why) => {
                    detail.insert(s.long);
                    why
                }
            };
            assert!(why.starts_with("write_only = true"), "{}: {why}", s.long);
            assert!(
                why.bytes().all(|b| (0x20..0x7f).contains(&b)),
                "{}: {why}",
                s.long
            );
            // A client-only option is refused everywhere anyway.
            assert!(!matches!(s.rule, Rule::Refuse(_)), "{}", s.long);
        }
        let set = |names: &[&'static str]| names.iter().copied().collect::<BTreeSet<_>>();
        assert_eq!(
            reveals,
            set(&[
                "fuzzy",
                "compare-dest",
                "copy-dest",
                "link-dest",
                "partial-dir",
                "delay-updates",
                "no-W",
                "append",
                "append-verify",
                "dry-run",
                "existing",
                "max-delete",
            ])
        );
        assert_eq!(
            compares,
            set(&["checksum", "update", "size-only", "modify-window"])
        );
        assert_eq!(detail, set(&["info"]));
        // The option that turns delta transfers back on is refused under
        // both its names; the one the gate adds is a plain row.
        assert_eq!(by_long("no-whole-file"), by_long("no-W"));
        assert_eq!(
            by_long(WHOLE_FILE).map(|s| s.write_only),
            Some(WriteOnly::Harmless)
        );
    }

    /// `--info` values as rsync reads them: SKIP (or ALL) at level 2 or
    /// more, in any case, anywhere in the list.
    #[test]
    fn info_values_that_ask_for_skip_detail() {
        for (value, asks) in [
            ("skip2", true),
            ("SKIP2", true),
            ("Skip3", true),
            ("skip4", true),
            ("skip9", true),
            ("skip02", true),
            ("skip99999999999999999999", true),
            ("all2", true),
            ("ALL4", true),
            ("name2,skip2", true),
            ("progress2,skip2,name0", true),
            ("skip2,skip0", true),
            ("skip", false),
            ("skip1", false),
            ("skip0", false),
            ("skip01", false),
            ("skip00", false),
            ("all", false),
            ("all1", false),
            ("none", false),
            ("name2", false),
            ("progress2", false),
            ("stats3", false),
            ("misc2,backup2,del2", false),
            ("2skip", false),
            ("skips2", false),
            ("", false),
            (",,", false),
        ] {
            assert_eq!(info_asks_skip_detail(value), asks, "--info={value}");
        }
    }

    #[test]
    fn options_the_gate_adds_are_rows_clients_cannot_misuse() {
        for name in GATE_ADDED {
            let spec = by_long(name).unwrap_or_else(|| panic!("--{name} is not a row"));
            assert_eq!(spec.long, *name);
        }
        // A client must not choose the confinement root, nor file modes
        // (a --chmod=u+s of its own would undo the gate's).
        for name in [CONFINE_ROOT, CHMOD] {
            assert!(matches!(
                by_long(name).map(|s| s.rule),
                Some(Rule::Refuse(_))
            ));
        }
    }

    #[test]
    fn charsets_allow_exactly_their_characters() {
        let alnum: String = ('0'..='9').chain('A'..='Z').chain('a'..='z').collect();
        let printable: String = (0x20u8..0x7f).map(char::from).collect();
        let table = [
            (Charset::Names, format!("{alnum},_-")),
            (Charset::InfoFlags, format!("{alnum},")),
            (Charset::IdMap, format!("{alnum}*?:,-_.")),
            (Charset::Iconv, format!("{alnum}-_.:,@")),
            (Charset::Suffixes, format!("{alnum}/._-")),
            (Charset::Printable, printable.clone()),
            (Charset::BackupSuffix, printable.replace('/', "")),
        ];
        for (charset, want) in table {
            let got: Vec<u8> = (0..=255u8).filter(|&b| charset.allows(b)).collect();
            let mut want: Vec<u8> = want.into_bytes();
            want.sort_unstable();
            want.dedup();
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want),
                "{charset:?}"
            );
        }
    }

    #[test]
    fn messages_spell_options_as_clients_write_them() {
        let shown = |long: &str| by_long(long).map(|s| s.display());
        assert_eq!(shown("D").as_deref(), Some("-D"));
        assert_eq!(shown("recursive").as_deref(), Some("--recursive (-r)"));
        assert_eq!(shown("delete").as_deref(), Some("--delete"));
    }

    #[test]
    fn value_bounds_are_exact() {
        use crate::request::{ParseError, Request, parse_command};
        let accepts = |opt: &str| -> bool {
            match parse_command(format!("rsync --server -r {opt} . x").as_bytes()) {
                Ok(Request::Server(_)) => true,
                Err(ParseError::BadValue { .. }) => false,
                other => panic!("{opt}: {other:?}"),
            }
        };
        for (ok, bad) in [
            ("--max-delete=-1", "--max-delete=-2"),
            ("--timeout=2592000", "--timeout=2592001"),
            ("--max-alloc=8589934592", "--max-alloc=8589934593"),
            ("--block-size=131072", "--block-size=131073"),
        ] {
            assert!(accepts(ok), "{ok} is refused");
            assert!(!accepts(bad), "{bad} is accepted");
        }
    }

    /// Every word openrsync sends a server (measured with openrsync's
    /// upstream and the KlaraSystems line that macOS ships: one option per
    /// word), read as the row of its rsync spelling, so the same policy
    /// knobs govern it; none is refused whatever the policy.
    #[test]
    fn openrsync_spellings_are_the_rows_of_their_long_forms() {
        use crate::request::{Request, parse_command};
        let table: &[(&str, &str)] = &[
            ("-D", "D"),
            ("-H", "hard-links"),
            ("-O", "omit-dir-times"),
            ("-S", "sparse"),
            ("-W", "whole-file"),
            ("-g", "group"),
            ("-l", "links"),
            ("-n", "dry-run"),
            ("-o", "owner"),
            ("-p", "perms"),
            ("-r", "recursive"),
            ("-t", "times"),
            ("-u", "update"),
            ("-v", "verbose"),
            ("-x", "one-file-system"),
            ("-z", "compress"),
            ("-h", "human-readable"),
            ("-8", "8-bit-output"),
            ("--progress", "progress"),
            ("--no-super", "no-super"),
            ("--super", "super"),
            ("--ignore-non-existing", "existing"),
            ("--existing", "existing"),
            ("--delete-before", "delete-before"),
            ("--dirs", "dirs"),
            ("--relative", "relative"),
            ("--numeric-ids", "numeric-ids"),
            ("--partial", "partial"),
            ("--backup", "backup"),
            ("--ignore-existing", "ignore-existing"),
            ("--size-only", "size-only"),
            ("--list-only", "list-only"),
            ("--from0", "from0"),
            ("--files-from=-", "files-from"),
            ("--link-dest=../prev", "link-dest"),
            ("--max-size=1048576", "max-size"),
            ("--min-size=1", "min-size"),
            ("--bwlimit=1000", "bwlimit"),
            ("--suffix .bak", "suffix"),
            ("--temp-dir tmp", "temp-dir"),
        ];
        for (word, long) in table {
            let cmd = format!("rsync --server --sender {word} . x");
            let Ok(Request::Server(a)) = parse_command(cmd.as_bytes()) else {
                panic!("{word} does not parse");
            };
            let [o] = a.opts.as_slice() else {
                panic!("{word}: {:?}", a.opts);
            };
            assert_eq!(Some(o.spec), by_long(long), "{word}");
            assert!(!matches!(o.spec.rule, Rule::Refuse(_)), "{word} is refused");
        }
        // The delete family on a pull: a sender ignores these, and the
        // gate drops them (see decide).
        for long in [
            "delete",
            "delete-before",
            "delete-during",
            "delete-delay",
            "delete-after",
            "delete-excluded",
            "del",
            "force",
        ] {
            assert_eq!(
                by_long(long).map(|s| s.meaning),
                Some(Meaning::ReceiverDeletes),
                "{long}"
            );
        }
        for long in [
            "remove-source-files",
            "remove-sent-files",
            "delete-missing-args",
        ] {
            assert_ne!(
                by_long(long).map(|s| s.meaning),
                Some(Meaning::ReceiverDeletes),
                "{long} acts on the sending side"
            );
        }
    }

    // One test per row: each row's rule is what the product promises.
    macro_rules! row {
        ($name:ident, $long:expr, $rule:pat) => {
            #[test]
            fn $name() {
                let spec = by_long($long).expect($long);
                assert!(matches!(spec.rule, $rule), "{} has {:?}", $long, spec.rule);
            }
        };
    }

    row!(row_acls, "acls", Rule::Allow);
    row!(row_cvs_exclude, "cvs-exclude", Rule::Allow);
    row!(row_d_letter, "D", Rule::Allow);
    row!(row_executability, "executability", Rule::Allow);
    row!(row_hard_links, "hard-links", Rule::Allow);
    row!(row_ignore_times, "ignore-times", Rule::Allow);
    row!(row_omit_link_times, "omit-link-times", Rule::Allow);
    row!(row_keep_dirlinks, "keep-dirlinks", Rule::FollowLinks);
    row!(row_copy_links, "copy-links", Rule::FollowLinks);
    row!(row_crtimes, "crtimes", Rule::Allow);
    row!(row_omit_dir_times, "omit-dir-times", Rule::Allow);
    row!(row_relative, "relative", Rule::Allow);
    row!(row_sparse, "sparse", Rule::Allow);
    row!(row_atimes, "atimes", Rule::Allow);
    row!(row_whole_file, "whole-file", Rule::Allow);
    row!(row_xattrs, "xattrs", Rule::Allow);
    row!(row_backup, "backup", Rule::Replaces);
    row!(row_checksum, "checksum", Rule::Allow);
    row!(row_dirs, "dirs", Rule::Allow);
    row!(row_group, "group", Rule::Allow);
    row!(row_copy_dirlinks, "copy-dirlinks", Rule::FollowLinks);
    row!(row_links, "links", Rule::Allow);
    row!(row_prune_empty_dirs, "prune-empty-dirs", Rule::Allow);
    row!(row_dry_run, "dry-run", Rule::Allow);
    row!(row_owner, "owner", Rule::Allow);
    row!(row_perms, "perms", Rule::Allow);
    row!(row_quiet, "quiet", Rule::Allow);
    row!(row_recursive, "recursive", Rule::Allow);
    row!(row_secluded_args, "secluded-args", Rule::Secluded);
    row!(row_protect_args, "protect-args", Rule::Secluded);
    row!(row_times, "times", Rule::Allow);
    row!(row_update, "update", Rule::Allow);
    row!(row_verbose, "verbose", Rule::Allow);
    row!(row_one_file_system, "one-file-system", Rule::Allow);
    row!(row_fuzzy, "fuzzy", Rule::Allow);
    row!(row_compress, "compress", Rule::Allow);
    row!(row_block_size, "block-size", Rule::Allow);
    row!(row_modify_window, "modify-window", Rule::Allow);
    row!(row_append, "append", Rule::Replaces);
    row!(row_backup_dir, "backup-dir", Rule::Replaces);
    row!(row_bwlimit, "bwlimit", Rule::Allow);
    row!(row_checksum_choice, "checksum-choice", Rule::Allow);
    row!(row_checksum_seed, "checksum-seed", Rule::Allow);
    row!(row_compare_dest, "compare-dest", Rule::Allow);
    row!(row_compress_choice, "compress-choice", Rule::Allow);
    row!(row_compress_level, "compress-level", Rule::Allow);
    row!(row_compress_threads, "compress-threads", Rule::Allow);
    row!(row_config, "config", Rule::Refuse(_));
    row!(row_confine_root, "confine-root", Rule::Refuse(_));
    row!(row_copy_as, "copy-as", Rule::Refuse(_));
    row!(row_copy_devices, "copy-devices", Rule::Devices);
    row!(
        row_copy_unsafe_links,
        "copy-unsafe-links",
        Rule::FollowLinks
    );
    row!(row_copy_dest, "copy-dest", Rule::Allow);
    row!(row_daemon, "daemon", Rule::Refuse(_));
    row!(row_debug, "debug", Rule::Refuse(_));
    row!(row_delay_updates, "delay-updates", Rule::Replaces);
    row!(row_delete, "delete", Rule::Delete);
    row!(row_delete_after, "delete-after", Rule::Delete);
    row!(row_delete_before, "delete-before", Rule::Delete);
    row!(row_delete_during, "delete-during", Rule::Delete);
    row!(row_del, "del", Rule::Delete);
    row!(row_delete_delay, "delete-delay", Rule::Delete);
    row!(row_delete_excluded, "delete-excluded", Rule::Delete);
    row!(row_delete_missing_args, "delete-missing-args", Rule::Delete);
    row!(row_devices, "devices", Rule::Allow);
    row!(row_dparam, "dparam", Rule::Refuse(_));
    row!(row_drop_d, "drop-D", Rule::Allow);
    row!(row_existing, "existing", Rule::Allow);
    row!(row_fake_super, "fake-super", Rule::Allow);
    row!(row_files_from, "files-from", Rule::Allow);
    row!(row_force, "force", Rule::Delete);
    row!(row_from0, "from0", Rule::Allow);
    row!(row_fsync, "fsync", Rule::Allow);
    row!(row_groupmap, "groupmap", Rule::Allow);
    row!(row_iconv, "iconv", Rule::Allow);
    row!(row_ignore_errors, "ignore-errors", Rule::Allow);
    row!(row_ignore_existing, "ignore-existing", Rule::Allow);
    row!(row_ignore_missing_args, "ignore-missing-args", Rule::Allow);
    row!(row_info, "info", Rule::Allow);
    row!(row_inplace, "inplace", Rule::Replaces);
    row!(row_insecure_links, "insecure-links", Rule::Refuse(_));
    row!(row_link_dest, "link-dest", Rule::Allow);
    row!(row_list_only, "list-only", Rule::Allow);
    row!(row_log_file, "log-file", Rule::Refuse(_));
    row!(row_log_file_format, "log-file-format", Rule::Refuse(_));
    row!(row_log_format, "log-format", Rule::Allow);
    row!(row_out_format, "out-format", Rule::Allow);
    row!(row_max_alloc, "max-alloc", Rule::Allow);
    row!(row_max_delete, "max-delete", Rule::Allow);
    row!(row_max_size, "max-size", Rule::Allow);
    row!(row_min_size, "min-size", Rule::Allow);
    row!(row_mkpath, "mkpath", Rule::Allow);
    row!(row_msgs2stderr, "msgs2stderr", Rule::Allow);
    row!(row_munge_links, "munge-links", Rule::Allow);
    row!(row_new_compress, "new-compress", Rule::Allow);
    row!(row_no_w, "no-W", Rule::Allow);
    row!(row_no_whole_file, "no-whole-file", Rule::Allow);
    row!(row_no_recursive, "no-recursive", Rule::Allow);
    row!(row_no_capital_r, "no-R", Rule::Allow);
    row!(row_no_implied_dirs, "no-implied-dirs", Rule::Allow);
    row!(row_no_msgs2stderr, "no-msgs2stderr", Rule::Allow);
    row!(row_no_munge_links, "no-munge-links", Rule::Refuse(_));
    row!(row_no_r, "no-r", Rule::Allow);
    row!(row_no_relative, "no-relative", Rule::Allow);
    row!(row_no_specials, "no-specials", Rule::Allow);
    row!(row_no_super, "no-super", Rule::Allow);
    row!(row_numeric_ids, "numeric-ids", Rule::Allow);
    row!(row_old_compress, "old-compress", Rule::Allow);
    row!(row_only_write_batch, "only-write-batch", Rule::Refuse(_));
    row!(row_open_noatime, "open-noatime", Rule::Allow);
    row!(row_partial, "partial", Rule::Replaces);
    row!(row_partial_dir, "partial-dir", Rule::Replaces);
    row!(row_preallocate, "preallocate", Rule::Allow);
    row!(row_read_batch, "read-batch", Rule::Refuse(_));
    row!(row_remove_sent_files, "remove-sent-files", Rule::Delete);
    row!(row_remove_source_files, "remove-source-files", Rule::Delete);
    row!(row_rsh, "rsh", Rule::Refuse(_));
    row!(row_rsync_path, "rsync-path", Rule::Refuse(_));
    row!(row_safe_links, "safe-links", Rule::Allow);
    row!(row_size_only, "size-only", Rule::Allow);
    row!(row_skip_compress, "skip-compress", Rule::Allow);
    row!(row_specials, "specials", Rule::Allow);
    row!(row_stats, "stats", Rule::Allow);
    row!(row_stderr, "stderr", Rule::Allow);
    row!(row_suffix, "suffix", Rule::Allow);
    row!(row_super, "super", Rule::Allow);
    row!(row_temp_dir, "temp-dir", Rule::Allow);
    row!(row_timeout, "timeout", Rule::Allow);
    row!(row_qsort, "qsort", Rule::Allow);
    row!(row_use_qsort, "use-qsort", Rule::Allow);
    row!(row_ipv4, "ipv4", Rule::Refuse(_));
    row!(row_ipv6, "ipv6", Rule::Refuse(_));
    row!(row_8_bit_output, "8-bit-output", Rule::Allow);
    row!(row_f_letter, "F", Rule::Refuse(_));
    row!(row_remote_option, "remote-option", Rule::Refuse(_));
    row!(row_p_letter, "P", Rule::Refuse(_));
    row!(row_version, "version", Rule::Refuse(_));
    row!(row_archive, "archive", Rule::Refuse(_));
    row!(row_filter, "filter", Rule::Refuse(_));
    row!(row_human_readable, "human-readable", Rule::Allow);
    row!(row_itemize_changes, "itemize-changes", Rule::Refuse(_));
    row!(row_address, "address", Rule::Refuse(_));
    row!(row_append_verify, "append-verify", Rule::Replaces);
    row!(row_blocking_io, "blocking-io", Rule::Refuse(_));
    row!(row_cc, "cc", Rule::Allow);
    row!(row_chmod, "chmod", Rule::Refuse(_));
    row!(row_chown, "chown", Rule::Refuse(_));
    row!(row_zc, "zc", Rule::Allow);
    row!(row_zl, "zl", Rule::Allow);
    row!(row_zt, "zt", Rule::Allow);
    row!(row_contimeout, "contimeout", Rule::Refuse(_));
    row!(row_early_input, "early-input", Rule::Refuse(_));
    row!(row_exclude, "exclude", Rule::Refuse(_));
    row!(row_exclude_from, "exclude-from", Rule::Refuse(_));
    row!(row_ignore_non_existing, "ignore-non-existing", Rule::Allow);
    row!(row_help, "help", Rule::Refuse(_));
    row!(row_inc_recursive, "inc-recursive", Rule::Refuse(_));
    row!(row_i_r, "i-r", Rule::Refuse(_));
    row!(row_include, "include", Rule::Refuse(_));
    row!(row_include_from, "include-from", Rule::Refuse(_));
    row!(row_no_inc_recursive, "no-inc-recursive", Rule::Refuse(_));
    row!(row_no_i_r, "no-i-r", Rule::Refuse(_));
    row!(row_no_motd, "no-motd", Rule::Refuse(_));
    row!(row_old_args, "old-args", Rule::Refuse(_));
    row!(row_old_dirs, "old-dirs", Rule::Refuse(_));
    row!(row_old_d, "old-d", Rule::Refuse(_));
    row!(row_outbuf, "outbuf", Rule::Refuse(_));
    row!(row_password_file, "password-file", Rule::Refuse(_));
    row!(row_port, "port", Rule::Refuse(_));
    row!(row_progress, "progress", Rule::Allow);
    row!(row_protocol, "protocol", Rule::Refuse(_));
    row!(row_sockopts, "sockopts", Rule::Refuse(_));
    row!(row_stop_after, "stop-after", Rule::Refuse(_));
    row!(row_time_limit, "time-limit", Rule::Refuse(_));
    row!(row_stop_at, "stop-at", Rule::Refuse(_));
    row!(row_trust_sender, "trust-sender", Rule::Refuse(_));
    row!(row_usermap, "usermap", Rule::Allow);
    row!(row_write_devices, "write-devices", Rule::Devices);
    row!(row_write_batch, "write-batch", Rule::Refuse(_));

    /// Every row has a row test above: the number of row tests must match the
    /// number of spellings in the table.
    #[test]
    fn every_row_has_a_row_test() {
        let src = include_str!("options.rs");
        let tested: BTreeSet<&str> = src
            .split("row!(")
            .skip(1)
            .filter_map(|call| call.split('"').nth(1))
            .collect();
        for s in OPTIONS {
            assert!(tested.contains(s.long), "no row test for {}", s.long);
            for a in s.aliases {
                assert!(tested.contains(a), "no row test for alias {a}");
            }
        }
    }
}
