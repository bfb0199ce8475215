//! Why a request is refused. Every refusal in the gate is one of these:
//! the audit log records the code and the message, the client sees the
//! message, and tests match on the variant.
//!
//! Messages name the option, the path as the client spelled it, or the
//! module, but never a server path the client does not already know.

use std::fmt;

use crate::request::ParseError;

/// A refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReason {
    /// No `SSH_ORIGINAL_COMMAND`: an interactive login.
    NoCommand,
    /// The policy could not be loaded; the message names file, line, problem.
    PolicyInvalid(String),
    /// The policy file (or a directory above it) is unsafe.
    PolicyUnsafe(String),
    /// The `--client` name is not in the policy.
    UnknownClient(String),
    /// The client's address is not in its `from` list.
    SourceNotAllowed(String),
    /// `from` is set but `SSH_CONNECTION` is missing or unparsable.
    NoSourceAddress,
    /// The command could not be parsed.
    Parse(ParseError),
    /// A non-rsync command from a client without a trigger.
    CommandNotAllowed(String),
    /// A trigger word outside the trigger's `args` allowlist (or not a
    /// plain word).
    TriggerWordRefused { trigger: String, word: String },
    /// Too many trigger words, or one too long.
    TriggerTooLarge(String),
    /// A daemon request from a client without modules.
    NoModules,
    /// An option refused whatever the policy says.
    OptionRefused { option: String, why: &'static str },
    /// An option the module's policy does not allow.
    OptionNotPermitted {
        option: String,
        module: String,
        knob: &'static str,
    },
    /// An option that makes no sense in this direction.
    OptionWrongDirection { option: String, pushing: bool },
    /// `-s`/`--secluded-args` where it is not supported.
    SecludedArgs,
    /// Secluded arguments could not be read or were malformed.
    SecludedArgsMalformed(String),
    /// No path after the `.`.
    NoPath,
    /// A push names more than one destination.
    TooManyDestinations,
    /// A path with spaces that reached the gate as several words: rsync
    /// older than 3.2.4 (and openrsync) send paths unescaped, and the
    /// remote shell splits them. The words as they arrived.
    SplitPath(Vec<String>),
    /// The path does not start with a module name.
    NoModule(String),
    /// The module does not exist or is not granted to this client.
    ModuleNotAvailable(String),
    /// An absolute path outside every module root of the client.
    OutsideModules(String),
    /// The request names paths in more than one module.
    MultipleModules,
    /// `~` paths: the gate does not map home directories.
    HomeRelative(String),
    /// A push into a read-only module.
    ReadOnly(String),
    /// A pull from a write-only module.
    WriteOnly(String),
    /// The path leaves the module, by `..` or by a symlink.
    Escapes(String),
    /// `-R`'s `/./` marker lies above the module root.
    MarkerOutsideModule(String),
    /// A path that must exist does not.
    NotFound(String),
    /// The module root's directory is named differently on the server
    /// from what the client asked for.
    NeedsMarker { path: String, hint: &'static str },
    /// A path component that must be a directory is not.
    NotADirectory(String),
    /// A dangling symlink where the gate must know the target.
    DanglingSymlink(String),
    /// Too many symlinks, too many glob matches, too deep.
    TooComplex(String),
    /// A path changed between check and pinning.
    Race(String),
    /// rsync would look a name of the path up again after the check (it
    /// cannot be handed over by descriptor), in a directory where someone
    /// other than root and the account, or a client able to store working
    /// symlinks, could replace it with a symlink. `why` names the server
    /// directory (audit log only).
    Swappable {
        path: String,
        hint: &'static str,
        why: String,
    },
    /// The module root is missing, not a directory, or unsafely owned.
    ModuleUnsafe { module: String, why: String },
    /// A writable module contains the account's `~/.ssh` or dotfiles.
    ModuleContainsHome(String),
    /// A `--files-from` list names files rsync alone resolves, and the
    /// installed rsync cannot keep them inside the module (no
    /// `--confine-root`; the kernel sandbox would keep their contents in,
    /// not their metadata).
    FilesFromUnconfined { option: String },
    /// A push could create device or special files the policy forbids, and
    /// nothing here can stop it (no `--drop-D` to hand rsync, no sandbox).
    NodesUnconfined { why: &'static str },
    /// All `max_connections` slots of the module are taken.
    Busy(String),
    /// The audit record could not be written (fail closed).
    AuditUnavailable(String),
    /// The sandbox is required but cannot be applied.
    SandboxUnavailable(String),
    /// `lock_dir` could be changed by someone other than root and the
    /// account (with the server-side detail).
    LockDirUnsafe(String),
    /// The arguments rsync would get exceed what the kernel passes to a
    /// program (a large wildcard expansion): bytes needed, bytes allowed.
    ArgumentsTooLong { bytes: usize, limit: usize },
    /// Anything else that stopped the gate before rsync ran.
    Internal(String),
}

impl DenyReason {
    /// A stable identifier for logs and tests.
    pub fn code(&self) -> &'static str {
        use DenyReason::*;
        match self {
            NoCommand => "no_command",
            PolicyInvalid(_) => "policy_invalid",
            PolicyUnsafe(_) => "policy_unsafe",
            UnknownClient(_) => "unknown_client",
            SourceNotAllowed(_) => "source_not_allowed",
            NoSourceAddress => "no_source_address",
            Parse(ParseError::Split(_)) => "unparsable_command",
            Parse(ParseError::UnknownOption(_)) => "unknown_option",
            Parse(ParseError::BadValue { .. }) => "bad_option_value",
            Parse(ParseError::MissingValue(_)) | Parse(ParseError::UnexpectedValue(_)) => {
                "bad_option_value"
            }

            Parse(ParseError::BadDaemon) => "bad_daemon_request",
            Parse(ParseError::OptionAfterDot(_)) => "option_after_paths",
            Parse(ParseError::Priority(_)) => "priority_refused",
            Parse(_) => "malformed_request",
            CommandNotAllowed(_) => "command_not_allowed",
            TriggerWordRefused { .. } => "trigger_word_refused",
            TriggerTooLarge(_) => "trigger_too_large",
            NoModules => "no_modules",
            OptionRefused { .. } => "option_refused",
            OptionNotPermitted { .. } => "option_not_permitted",
            OptionWrongDirection { .. } => "option_wrong_direction",
            SecludedArgs => "secluded_args",
            SecludedArgsMalformed(_) => "secluded_args_malformed",
            NoPath => "no_path",
            TooManyDestinations => "too_many_destinations",
            SplitPath(_) => "split_path",
            NoModule(_) => "no_module",
            ModuleNotAvailable(_) => "module_not_available",
            OutsideModules(_) => "outside_modules",
            MultipleModules => "multiple_modules",
            HomeRelative(_) => "home_relative",
            ReadOnly(_) => "read_only",
            WriteOnly(_) => "write_only",
            Escapes(_) => "escapes_module",
            MarkerOutsideModule(_) => "marker_outside_module",
            NotFound(_) => "not_found",
            NeedsMarker { .. } => "needs_marker",
            NotADirectory(_) => "not_a_directory",
            DanglingSymlink(_) => "dangling_symlink",
            TooComplex(_) => "too_complex",
            Race(_) => "race",
            Swappable { .. } => "swappable_path",
            ModuleUnsafe { .. } => "module_unsafe",
            ModuleContainsHome(_) => "module_contains_home",
            FilesFromUnconfined { .. } => "files_from_unconfined",
            NodesUnconfined { .. } => "nodes_unconfined",
            Busy(_) => "busy",
            AuditUnavailable(_) => "audit_unavailable",
            SandboxUnavailable(_) => "sandbox_unavailable",
            LockDirUnsafe(_) => "lock_dir_unsafe",
            ArgumentsTooLong { .. } => "arguments_too_long",
            Internal(_) => "internal",
        }
    }
}

impl DenyReason {
    /// One of every refusal (with placeholder contents), for documentation
    /// checks and corpus validation. [`DenyReason::example_index`] keeps
    /// this complete: it matches every variant without a wildcard.
    pub fn examples() -> Vec<DenyReason> {
        use DenyReason::*;
        let s = String::new;
        let mut v = vec![
            NoCommand,
            PolicyInvalid(s()),
            PolicyUnsafe(s()),
            UnknownClient(s()),
            SourceNotAllowed(s()),
            NoSourceAddress,
            CommandNotAllowed(s()),
            TriggerWordRefused {
                trigger: s(),
                word: s(),
            },
            TriggerTooLarge(s()),
            NoModules,
            OptionRefused {
                option: s(),
                why: "x",
            },
            OptionNotPermitted {
                option: s(),
                module: s(),
                knob: "x",
            },
            OptionWrongDirection {
                option: s(),
                pushing: false,
            },
            SecludedArgs,
            SecludedArgsMalformed(s()),
            NoPath,
            TooManyDestinations,
            NoModule(s()),
            ModuleNotAvailable(s()),
            OutsideModules(s()),
            MultipleModules,
            HomeRelative(s()),
            ReadOnly(s()),
            WriteOnly(s()),
            Escapes(s()),
            MarkerOutsideModule(s()),
            NotFound(s()),
            NeedsMarker {
                path: s(),
                hint: "x",
            },
            NotADirectory(s()),
            DanglingSymlink(s()),
            TooComplex(s()),
            Race(s()),
            Swappable {
                path: s(),
                hint: "x",
                why: s(),
            },
            ModuleUnsafe {
                module: s(),
                why: s(),
            },
            ModuleContainsHome(s()),
            FilesFromUnconfined { option: s() },
            NodesUnconfined { why: "x" },
            Busy(s()),
            AuditUnavailable(s()),
            SandboxUnavailable(s()),
            Internal(s()),
            LockDirUnsafe(s()),
            ArgumentsTooLong { bytes: 0, limit: 0 },
            SplitPath(vec![]),
        ];
        for e in [
            ParseError::Split(crate::request::SplitError::Empty),
            ParseError::NoServer,
            ParseError::MisplacedSender,
            ParseError::BadDaemon,
            ParseError::UnknownOption(s()),
            ParseError::UnexpectedValue(s()),
            ParseError::MissingValue(s()),
            ParseError::BadValue {
                option: s(),
                why: s(),
            },
            ParseError::NoDot,
            ParseError::OptionAfterDot(s()),
            ParseError::Priority(s()),
        ] {
            v.push(Parse(e));
        }
        v
    }

    /// Every variant, matched without a wildcard: adding one without adding
    /// it to [`DenyReason::examples`] fails the test that compares them.
    pub fn example_index(&self) -> usize {
        use DenyReason::*;
        match self {
            NoCommand => 0,
            PolicyInvalid(_) => 1,
            PolicyUnsafe(_) => 2,
            UnknownClient(_) => 3,
            SourceNotAllowed(_) => 4,
            NoSourceAddress => 5,
            CommandNotAllowed(_) => 6,
            TriggerWordRefused { .. } => 7,
            TriggerTooLarge(_) => 8,
            NoModules => 9,
            OptionRefused { .. } => 10,
            OptionNotPermitted { .. } => 11,
            OptionWrongDirection { .. } => 12,
            SecludedArgs => 13,
            SecludedArgsMalformed(_) => 14,
            NoPath => 15,
            TooManyDestinations => 16,
            NoModule(_) => 17,
            ModuleNotAvailable(_) => 18,
            OutsideModules(_) => 19,
            MultipleModules => 20,
            HomeRelative(_) => 21,
            ReadOnly(_) => 22,
            WriteOnly(_) => 23,
            Escapes(_) => 24,
            MarkerOutsideModule(_) => 25,
            NotFound(_) => 26,
            NeedsMarker { .. } => 27,
            NotADirectory(_) => 28,
            DanglingSymlink(_) => 29,
            TooComplex(_) => 30,
            Race(_) => 31,
            Swappable { .. } => 32,
            ModuleUnsafe { .. } => 33,
            ModuleContainsHome(_) => 34,
            FilesFromUnconfined { .. } => 35,
            NodesUnconfined { .. } => 36,
            Busy(_) => 37,
            AuditUnavailable(_) => 38,
            SandboxUnavailable(_) => 39,
            Internal(_) => 40,
            LockDirUnsafe(_) => 41,
            ArgumentsTooLong { .. } => 42,
            SplitPath(_) => 43,
            Parse(e) => 44 + parse_index(e),
        }
    }

    /// The module a refusal concerns, when it names one.
    pub fn module(&self) -> Option<&str> {
        use DenyReason::*;
        match self {
            OptionNotPermitted { module, .. } | ModuleUnsafe { module, .. } => Some(module),
            ReadOnly(m)
            | WriteOnly(m)
            | ModuleContainsHome(m)
            | Busy(m)
            | ModuleNotAvailable(m) => Some(m),
            _ => None,
        }
    }
}

fn parse_index(e: &ParseError) -> usize {
    match e {
        ParseError::Split(_) => 0,
        ParseError::NoServer => 1,
        ParseError::MisplacedSender => 2,
        ParseError::BadDaemon => 3,
        ParseError::UnknownOption(_) => 4,
        ParseError::UnexpectedValue(_) => 5,
        ParseError::MissingValue(_) => 6,
        ParseError::BadValue { .. } => 7,
        ParseError::NoDot => 8,
        ParseError::OptionAfterDot(_) => 9,
        ParseError::Priority(_) => 10,
    }
}

/// Client-supplied bytes as a message shows them (see [`crate::escape`]).
pub fn shown(b: &[u8]) -> String {
    crate::escape::message(b)
}

/// What every refusal starts with.
pub const DENIED: &str = "rsync-gate: denied: ";

impl DenyReason {
    /// The one line a refused client sees (without the newline).
    pub fn line(&self) -> String {
        format!("{DENIED}{self}")
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use DenyReason::*;
        match self {
            NoCommand => write!(
                f,
                "interactive sessions are not allowed; this key only runs rsync"
            ),
            PolicyInvalid(m) => write!(f, "the server's policy is invalid: {m}"),
            PolicyUnsafe(m) => write!(f, "the server's policy file is unsafe: {m}"),
            UnknownClient(c) => write!(f, "client '{c}' is not in the server's policy"),
            SourceNotAllowed(a) => write!(f, "connections from {a} are not allowed for this key"),
            NoSourceAddress => write!(
                f,
                "the client address is unknown, and this key is restricted by address"
            ),
            Parse(e) => write!(f, "{e}"),
            CommandNotAllowed(p) => write!(f, "only rsync may be run with this key (got '{p}')"),
            TriggerWordRefused { trigger, word } => {
                write!(f, "trigger '{trigger}' does not take the word '{word}'")
            }
            TriggerTooLarge(what) => write!(f, "trigger request too large: {what}"),
            NoModules => write!(f, "no modules are granted to this key"),
            OptionRefused { option, why } => write!(f, "option {option} is not allowed: {why}"),
            OptionNotPermitted {
                option,
                module,
                knob,
            } => {
                write!(
                    f,
                    "option {option} is not allowed in module '{module}' ({knob})"
                )
            }
            OptionWrongDirection { option, pushing } => write!(
                f,
                "option {option} is only meaningful when {}",
                if *pushing { "pulling" } else { "pushing" }
            ),
            SecludedArgs => write!(
                f,
                "-s (secluded args) may only be given on the command line"
            ),
            SecludedArgsMalformed(m) => write!(f, "malformed secluded arguments: {m}"),
            NoPath => write!(
                f,
                "no path given (paths start with a module name, e.g. host:MODULE/path)"
            ),
            TooManyDestinations => write!(f, "a push takes exactly one destination path"),
            SplitPath(words) => {
                let shown: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
                write!(
                    f,
                    "the path arrived as the separate words {}: this looks like a path with spaces from an rsync older than 3.2.4: use -s, or escape the spaces",
                    shown.join(" ")
                )
            }
            NoModule(p) => write!(
                f,
                "path '{p}' does not start with a module name (use MODULE/path)"
            ),
            ModuleNotAvailable(m) => write!(f, "no module '{m}' is available to this key"),
            OutsideModules(p) => write!(
                f,
                "path '{p}' is not inside any module available to this key"
            ),
            MultipleModules => write!(f, "a request may use only one module"),
            HomeRelative(p) => write!(
                f,
                "path '{p}': home-directory paths are not supported (use MODULE/path)"
            ),
            ReadOnly(m) => write!(f, "module '{m}' is read-only"),
            WriteOnly(m) => write!(f, "module '{m}' is write-only (uploads only)"),
            Escapes(p) => write!(f, "path '{p}' leads outside its module"),
            MarkerOutsideModule(p) => {
                write!(f, "path '{p}': the /./ marker must lie inside the module")
            }
            NotFound(p) => write!(f, "path '{p}' does not exist"),
            NeedsMarker { path, hint } => write!(
                f,
                "path '{path}': the module's directory has another name on the server; {hint}"
            ),
            NotADirectory(p) => write!(f, "path '{p}' is not a directory"),
            DanglingSymlink(p) => write!(f, "path '{p}' is a dangling symlink"),
            TooComplex(p) => write!(
                f,
                "path '{p}' is too complex (too many symlinks, matches or components)"
            ),
            Race(p) => write!(f, "path '{p}' changed while it was being checked"),
            // Where the link could come from names server paths: audit only.
            Swappable { path, hint, .. } => write!(
                f,
                "path '{path}' could be swapped for a symlink after the check (the server's audit log says why); {hint}"
            ),
            // The details name server paths: they go to the audit log only.
            ModuleUnsafe { module, .. } => write!(
                f,
                "module '{module}' is not safe to serve (the server's audit log says why)"
            ),
            ModuleContainsHome(m) => write!(
                f,
                "module '{m}' is writable and contains this account's home directory files"
            ),
            FilesFromUnconfined { option } => write!(
                f,
                "{option} is not allowed here: the server's rsync has no --confine-root, so the listed names could lead outside the module"
            ),
            NodesUnconfined { why } => write!(
                f,
                "-D (device and special files) is not allowed here: {why}; the module's policy keeps them out (devices = false)"
            ),
            Busy(m) => write!(
                f,
                "module '{m}' is at its connection limit; try again later"
            ),
            AuditUnavailable(_) => write!(f, "the audit log cannot be written, so nothing may run"),
            SandboxUnavailable(m) => write!(f, "the required sandbox is unavailable: {m}"),
            LockDirUnsafe(_) => write!(
                f,
                "the server's lock directory is not safe to use (its audit log says why)"
            ),
            ArgumentsTooLong { bytes, limit } => write!(
                f,
                "the request expands to {bytes} bytes of arguments, more than the server can pass to rsync (at most {limit}); name fewer paths, or send the list with --files-from=-"
            ),
            Internal(_) => write!(
                f,
                "internal error on the server (its audit log has the details)"
            ),
        }
    }
}

impl std::error::Error for DenyReason {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_lines_escape_what_the_client_sent() {
        let r = DenyReason::NoModule(shown(b"a\x1b[2J\xe2\x80\xaeb"));
        assert_eq!(
            r.line(),
            "rsync-gate: denied: path 'a\\u{1b}[2J\\u{202e}b' does not start with a module name (use MODULE/path)"
        );
    }

    #[test]
    fn examples_hold_every_variant_once() {
        let ex = DenyReason::examples();
        let idx: Vec<usize> = ex.iter().map(DenyReason::example_index).collect();
        let want: Vec<usize> = (0..ex.len()).collect();
        assert_eq!(idx, want, "examples() must list every variant, in order");
        assert_eq!(ex.len(), 55);
    }

    #[test]
    fn client_messages_hide_server_paths() {
        let r = DenyReason::ModuleUnsafe {
            module: "www".into(),
            why: "/srv/www is writable by others".into(),
        };
        assert!(!r.to_string().contains("/srv"), "{r}");
        let r = DenyReason::Internal("cannot write /run/rsync-gate/daemon/c.conf".into());
        assert!(!r.to_string().contains("/run"), "{r}");
    }

    #[test]
    fn audit_messages_hide_internal_detail() {
        // The audit log keeps the detail; the client sees only that nothing runs.
        let r = DenyReason::AuditUnavailable("/var/log/x: Permission denied".into());
        assert!(!r.to_string().contains("/var/log"));
    }
}
