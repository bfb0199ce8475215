//! The rsync server option table.
//!
//! One static table of every option an rsync 3.2.x–3.5 client (or openrsync)
//! sends to a server, as data. Each row says whether the option takes a
//! value, how that value is validated, and which policy rule governs it.
//! Anything not in this table is refused.

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
    /// `-D`, `--devices`, `--specials`: the receiver may create nodes.
    CreatesNodes,
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

use Rule::{Allow, Delete, Devices, FollowLinks, Refuse, Replaces};

/// The table. Short-letter rows first, then long-only rows, each group in
/// alphabetical order (a test holds this).
pub static OPTIONS: &[Spec] = &[
    // ---- options with a short letter ----
    flag("acls", Some(b'A'), Allow),
    flag("cvs-exclude", Some(b'C'), Allow),
    with_meaning(flag("D", Some(b'D'), Allow), Meaning::CreatesNodes),
    flag("executability", Some(b'E'), Allow),
    flag("hard-links", Some(b'H'), Allow),
    flag("ignore-times", Some(b'I'), Allow),
    flag("omit-link-times", Some(b'J'), Allow),
    flag("keep-dirlinks", Some(b'K'), FollowLinks),
    flag("copy-links", Some(b'L'), FollowLinks),
    flag("crtimes", Some(b'N'), Allow),
    flag("omit-dir-times", Some(b'O'), Allow),
    with_meaning(flag("relative", Some(b'R'), Allow), Meaning::Relative),
    flag("sparse", Some(b'S'), Allow),
    flag("atimes", Some(b'U'), Allow),
    flag("whole-file", Some(b'W'), Allow),
    flag("xattrs", Some(b'X'), Allow),
    flag("backup", Some(b'b'), Replaces),
    flag("checksum", Some(b'c'), Allow),
    flag("dirs", Some(b'd'), Allow),
    flag("group", Some(b'g'), Allow),
    flag("copy-dirlinks", Some(b'k'), FollowLinks),
    flag("links", Some(b'l'), Allow),
    flag("prune-empty-dirs", Some(b'm'), Allow),
    flag("dry-run", Some(b'n'), Allow),
    flag("owner", Some(b'o'), Allow),
    flag("perms", Some(b'p'), Allow),
    flag("quiet", Some(b'q'), Allow),
    flag("recursive", Some(b'r'), Allow),
    with_aliases(
        flag("secluded-args", Some(b's'), Rule::Secluded),
        &["protect-args"],
    ),
    flag("times", Some(b't'), Allow),
    flag("update", Some(b'u'), Allow),
    flag("verbose", Some(b'v'), Allow),
    flag("one-file-system", Some(b'x'), Allow),
    flag("fuzzy", Some(b'y'), Allow),
    flag("compress", Some(b'z'), Allow),
    valued("block-size", Some(b'B'), int(0, MAX_BLOCK_SIZE), Allow),
    valued(
        "modify-window",
        Some(b'@'),
        int(-1_000_000_000, 1_000_000_000),
        Allow,
    ),
    // ---- long-only options ----
    flag("append", None, Replaces),
    valued(
        "backup-dir",
        None,
        Value::Path(PathRole::BackupDir),
        Replaces,
    ),
    valued(
        "bwlimit",
        None,
        Value::Size {
            min: 0,
            max: 1 << 50,
        },
        Allow,
    ),
    valued("checksum-choice", None, text(Charset::Names, 64), Allow),
    valued("checksum-seed", None, int(0, i32::MAX as i64), Allow),
    valued("compare-dest", None, Value::Path(PathRole::Basis), Allow),
    valued("compress-choice", None, text(Charset::Names, 32), Allow),
    valued("compress-level", None, int(-131_072, 22), Allow),
    valued(
        "compress-threads",
        None,
        int(0, MAX_COMPRESS_THREADS),
        Allow,
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
        "copy-as",
        None,
        text(Charset::Printable, 0),
        Refuse("switching the user is not allowed"),
    ),
    valued("copy-dest", None, Value::Path(PathRole::Basis), Allow),
    flag("copy-devices", None, Devices),
    flag("copy-unsafe-links", None, FollowLinks),
    flag("daemon", None, Refuse(DAEMON_ONLY)),
    valued(
        "debug",
        None,
        text(Charset::Printable, 0),
        Refuse("debug output can reveal server files"),
    ),
    flag("delay-updates", None, Replaces),
    flag("delete", None, Delete),
    flag("delete-after", None, Delete),
    flag("delete-before", None, Delete),
    flag("delete-delay", None, Delete),
    with_aliases(flag("delete-during", None, Delete), &["del"]),
    flag("delete-excluded", None, Delete),
    flag("delete-missing-args", None, Delete),
    with_meaning(flag("devices", None, Allow), Meaning::CreatesNodes),
    valued(
        "dparam",
        None,
        text(Charset::Printable, 0),
        Refuse(DAEMON_ONLY),
    ),
    flag("drop-D", None, Allow),
    flag("existing", None, Allow),
    flag("fake-super", None, Allow),
    valued("files-from", None, Value::Path(PathRole::FilesFrom), Allow),
    flag("force", None, Delete),
    with_meaning(flag("from0", None, Allow), Meaning::From0),
    flag("fsync", None, Allow),
    valued("groupmap", None, text(Charset::IdMap, 1024), Allow),
    valued("iconv", None, text(Charset::Iconv, 64), Allow),
    flag("ignore-errors", None, Allow),
    flag("ignore-existing", None, Allow),
    flag("ignore-missing-args", None, Allow),
    valued("info", None, text(Charset::InfoFlags, 256), Allow),
    flag("inplace", None, Replaces),
    flag(
        "insecure-links",
        None,
        Refuse("following attacker-owned symlinks is not allowed"),
    ),
    valued("link-dest", None, Value::Path(PathRole::Basis), Allow),
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
    valued("max-delete", None, int(-1, i32::MAX as i64), Allow),
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
    with_aliases(flag("no-W", None, Allow), &["no-whole-file"]),
    flag("numeric-ids", None, Allow),
    flag("old-compress", None, Allow),
    valued(
        "only-write-batch",
        None,
        text(Charset::Printable, 0),
        Refuse("batch files are not allowed"),
    ),
    flag("open-noatime", None, Allow),
    flag("partial", None, Replaces),
    valued(
        "partial-dir",
        None,
        Value::Path(PathRole::PartialDir),
        Replaces,
    ),
    flag("preallocate", None, Allow),
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
    flag("size-only", None, Allow),
    valued("skip-compress", None, text(Charset::Suffixes, 1024), Allow),
    with_meaning(flag("specials", None, Allow), Meaning::CreatesNodes),
    flag("stats", None, Allow),
    valued("stderr", None, text(Charset::Names, 16), Allow),
    valued("suffix", None, text(Charset::BackupSuffix, 64), Allow),
    flag("super", None, Allow),
    valued("temp-dir", None, Value::Path(PathRole::TempDir), Allow),
    valued("timeout", None, int(1, 30 * 86_400), Allow),
    flag("use-qsort", None, Allow),
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
    /// `server_options()` order) plus the valued ones; every one must be in
    /// the table, and nothing else may have a letter.
    #[test]
    fn letters_match_what_clients_send() {
        let sent = b"svqbunldKmOJyLkWHogDtUNpEAXrcCIRxSze";
        let mut want: BTreeSet<u8> = sent.iter().copied().filter(|&c| c != b'e').collect();
        want.insert(b'B');
        want.insert(b'@');
        let have: BTreeSet<u8> = OPTIONS.iter().filter_map(|s| s.short).collect();
        assert_eq!(have, want);
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
    row!(row_use_qsort, "use-qsort", Rule::Allow);
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
