//! Every policy key as data: for each section its keys, each with its type,
//! default and meaning (Markdown). This table is the policy reference:
//! README.md's tables ("Policy reference") and the rsync-gate-policy(5)
//! manual page are rendered from it, and tests hold README.md,
//! `policy.example.toml`, the loader's own list of keys and its defaults to
//! it (here, and tests/gate/docs.rs). A key added to the loader without a
//! row here fails those tests.

/// A section of the policy file (`[gate]`, `[modules.NAME]`, ...).
#[derive(Debug)]
pub struct Section {
    /// The TOML table: `gate`, or `modules.NAME` for each named table.
    pub table: &'static str,
    /// README.md's heading for it (Markdown).
    pub heading: &'static str,
    /// What comes between the heading and the table (Markdown; may be empty).
    pub intro: &'static str,
    pub keys: &'static [Key],
}

/// One row of a section's table.
#[derive(Debug)]
pub struct Key {
    /// The key (two for a row that describes a pair, `uid`, `gid`).
    pub names: &'static [&'static str],
    /// Its type (Markdown).
    pub ty: &'static str,
    /// Its default as the reference shows it (Markdown): a TOML value in
    /// backquotes, or words (`required`, `none`, a rule).
    pub default: &'static str,
    /// The default as a TOML value, when it is one value whatever the rest
    /// of the policy says (tests load a policy with the key set to it and
    /// without the key, and get the same).
    pub toml_default: Option<&'static str>,
    /// What it does (Markdown).
    pub meaning: &'static str,
}

impl Section {
    /// The section's name as a TOML table header: `[gate]`, `[modules.NAME]`.
    pub fn header(&self) -> String {
        format!("[{}]", self.table)
    }

    /// Every key name in the section.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.keys.iter().flat_map(|k| k.names.iter().copied())
    }
}

/// The rules for every policy file (README.md, "Policy reference").
pub const RULES: &str = "TOML; unknown keys, wrong types and contradictions are errors, \
    and a policy with any error is not used at all: `serve` refuses every \
    session, naming the first problem, and `check` lists every one at once, \
    each with `file:line:col` and in plain words (an unknown key gets a \
    \"did you mean\" when it is close to a real one). Each mistake is \
    reported once: a module with a mistake of its own still counts as \
    defined, so the clients that name it are not reported too. A TOML \
    syntax error (text without quotes, an unclosed quote or bracket) stops \
    the reading of that file: `check` lists the syntax errors it finds (up \
    to one after which it cannot tell where the next item starts), and the \
    rest of the file is checked once they are fixed. An item defined twice \
    is reported at the second definition's table header, naming the \
    first's. Paths are absolute and normalised (no `.` or `..` components, \
    no `//`, no trailing `/`) and may not contain control characters or \
    `%`. Module, client and trigger names are 1 to 64 characters from `A-Z \
    a-z 0-9 _ - .`, not starting with `.` or `-`; a module may not be \
    named `global` (in any case), which is an rsync daemon config's global \
    section. `policy.example.toml` has all of this as comments.";

/// The sections, in the order of the reference.
pub static SECTIONS: &[Section] = &[
    Section {
        table: "gate",
        heading: "`[gate]` (optional; only in the main file)",
        intro: "",
        keys: &[
            Key {
                names: &["rsync"],
                ty: "path",
                default: "`\"/usr/bin/rsync\"`",
                toml_default: Some("\"/usr/bin/rsync\""),
                meaning: "The real rsync. Probed once (`--help`, cached in `lock_dir`) for \
                    `--confine-root` and `--drop-D`.",
            },
            Key {
                names: &["audit_log"],
                ty: "path",
                default: "`\"/var/log/rsync-gate/audit.jsonl\"`",
                toml_default: Some("\"/var/log/rsync-gate/audit.jsonl\""),
                meaning: "JSON lines. Directory root's alone and writable by root alone \
                    (not a sticky shared directory such as `/tmp`); file regular, \
                    not a symlink, owned by root or the account, not writable by \
                    others; nothing runs if it cannot be written.",
            },
            Key {
                names: &["lock_dir"],
                ty: "path",
                default: "`\"/run/rsync-gate\"`",
                toml_default: Some("\"/run/rsync-gate\""),
                meaning: "`max_connections` lock files, generated daemon configs, rsync \
                    capability cache, trigger state, the log files of `transfer_log` \
                    sessions. Created on demand (0755). Owned \
                    by root or the account and writable by its owner alone (not a \
                    sticky shared directory), every directory above it root's or the \
                    account's; otherwise every session is refused \
                    (`lock_dir_unsafe`).",
            },
            Key {
                names: &["sandbox"],
                ty: "`\"required\"`, `\"best-effort\"`, `\"off\"`",
                default: "`\"best-effort\"`",
                toml_default: Some("\"best-effort\""),
                meaning: "Landlock around rsync. `required`: refuse when the kernel cannot \
                    confine rsync. `best-effort`: confine when it can (the audit \
                    record says whether it did). `off`: never.",
            },
            Key {
                names: &["include"],
                ty: "array of path patterns",
                default: "`[]`",
                toml_default: Some("[]"),
                meaning: "Drop-in files. Absolute; `*` and `?` wildcards in the last \
                    component; sorted; dot-files skipped; a missing directory is no \
                    drop-ins; a pattern without wildcards must name an existing \
                    file. Drop-ins may add modules, clients and triggers, not \
                    `[gate]`, and may not redefine anything. They must be root's \
                    alone like the main file, and no writable module may contain the \
                    directory a pattern names.",
            },
            Key {
                names: &["syslog"],
                ty: "bool",
                default: "`false`",
                toml_default: Some("false"),
                meaning: "Also send a one-line summary of every decision and session end \
                    to `/dev/log`, facility authpriv (warning for refusals, info \
                    otherwise). Best effort.",
            },
            Key {
                names: &["journald"],
                ty: "bool",
                default: "`false`",
                toml_default: Some("false"),
                meaning: "Also send every decision and session end to the systemd journal \
                    as a structured entry (`SYSLOG_IDENTIFIER=rsync-gate`, a \
                    `MESSAGE_ID` per kind of record, `RSYNC_GATE_CLIENT`, \
                    `RSYNC_GATE_MODULE`, `RSYNC_GATE_DECISION`, `RSYNC_GATE_REASON`, \
                    `RSYNC_GATE_SESSION` and more; see [Shipping the \
                    logs](#shipping-the-logs)), through \
                    `/run/systemd/journal/socket` when it exists. Best effort.",
            },
            Key {
                names: &["wait_for_slot"],
                ty: "duration",
                default: "`\"0s\"`",
                toml_default: Some("\"0s\""),
                meaning: "How long a `host:path` session waits for a free \
                    `max_connections` slot before it is refused. Digits and a unit \
                    `ms`, `s`, `m` or `h` (`\"250ms\"`, `\"30s\"`, `\"5m\"`), at \
                    most `\"24h\"`. `host::` sessions never wait.",
            },
            Key {
                names: &["transfer_log_limit"],
                ty: "integer",
                default: "`100000`",
                toml_default: Some("100000"),
                meaning: "Most per-file records (`transfer_log`) one session writes, 0 \
                    to 100000000; past it one record counts the files left out (with \
                    their bytes, per operation), and the end record says how many. 0 \
                    keeps only that count.",
            },
            Key {
                names: &["account"],
                ty: "string",
                default: "none",
                toml_default: None,
                meaning: "The SSH account this policy's keys log in to when sshd asks \
                    the gate for them (`AuthorizedKeysCommand ... authorized-keys \
                    --for-sshd %u %f`; see [Keys from the policy \
                    (AuthorizedKeysCommand)](#keys-from-the-policy-authorizedkeyscommand)): \
                    `--for-sshd` prints a key's line only when sshd asks for this \
                    account. Unset: it prints nothing for anyone.",
            },
        ],
    },
    Section {
        table: "modules.NAME",
        heading: "`[modules.NAME]`",
        intro: "The client names the module as the first path component \
                    (`host:NAME/dir`, `host::NAME/dir`).",
        keys: &[
            Key {
                names: &["path"],
                ty: "path",
                default: "required",
                toml_default: None,
                meaning: "The tree; nothing outside it is reachable. Every component, \
                    symlinks included, must be owned by root or the SSH account and \
                    not writable by group or others (a root-owned sticky directory \
                    such as `/tmp` is fine); otherwise `check` reports it and \
                    `serve` refuses the module (\"module 'NAME' is not safe to \
                    serve\"). A directory that does not exist (or is not a \
                    directory) is `module_missing` (\"module 'NAME' is not \
                    available right now\"), and `check` says so. May be `/` \
                    (read-only).",
            },
            Key {
                names: &["comment"],
                ty: "string",
                default: "none",
                toml_default: None,
                meaning: "Shown in `host::` listings. At most 256 bytes, no control \
                    characters; `%`, `\\` and leading/trailing spaces make `host::` \
                    requests fail (`check` reports it).",
            },
            Key {
                names: &["read_only"],
                ty: "bool",
                default: "`true`",
                toml_default: Some("true"),
                meaning: "Pulls only. `false` allows pushes. A writable module may not \
                    contain the account's home or `~/.ssh`, nor the gate's own files \
                    (policy, drop-ins and the directories `include` names, audit \
                    log, `lock_dir`, rsync, the rsync-gate binary), nor a symlink on \
                    the way to one of them (`serve` refuses the module, `check` \
                    reports it).",
            },
            Key {
                names: &["write_only"],
                ty: "bool",
                default: "`false`",
                toml_default: Some("false"),
                meaning: "Pushes only (a drop box): pulls, and so listings of its \
                    contents, are refused, and so is `--files-from` naming a server \
                    file. Nothing derived from the files already in it is sent to a \
                    client: uploads are whole-file transfers (`host:path` pushes get \
                    `--whole-file` added; `host::` pushes must pass `-W` themselves \
                    or are refused), and options that would base an upload on an \
                    existing file or answer questions about existing files are \
                    refused (see [Drop boxes](#drop-boxes)). Needs `read_only = \
                    false`.",
            },
            Key {
                names: &["delete"],
                ty: "bool",
                default: "`false`",
                toml_default: Some("false"),
                meaning: "Allows `--delete` and all its variants (`--del`, \
                    `--delete-before/-during/-delay/-after/-excluded/-missing-args`), \
                    `--force`, `--remove-source-files`, `--remove-sent-files`. Needs \
                    `read_only = false`; contradicts `overwrite = false`.",
            },
            Key {
                names: &["overwrite"],
                ty: "bool",
                default: "`true`",
                toml_default: Some("true"),
                meaning: "`false`: uploads never replace or remove existing files. \
                    `host:path` pushes get `--ignore-existing` added; `host::` \
                    pushes must pass `--ignore-existing` themselves or are refused; \
                    `--backup`/`-b`, `--backup-dir`, `--partial-dir`, \
                    `--delay-updates`, the delete options, and `--partial` (`-P`), \
                    `--inplace` and `--append` (an interrupted upload would leave a \
                    partial file that later uploads skip forever) are refused.",
            },
            Key {
                names: &["munge_links"],
                ty: "bool",
                default: "`true` if writable, `false` if read-only",
                toml_default: None,
                meaning: "Pushed symlinks are stored munged (rsync's `--munge-links`, \
                    prefix `/rsyncd-munged/`) so nothing on the server follows them; \
                    pulls through the gate unmunge them. In a writable module with \
                    `false`, clients can store symlinks that work, so pushes to a \
                    name that is not an existing directory and `-R` pulls through \
                    its directories are refused (`swappable_path`, see [Known \
                    limitations](#known-limitations)).",
            },
            Key {
                names: &["devices"],
                ty: "bool",
                default: "`false`",
                toml_default: Some("false"),
                meaning: "`false`: no device nodes (and, unless `specials`, no FIFOs or sockets) are created in the module: `host:path` pushes get `--drop-D` unless `specials = true`, the kernel sandbox refuses to create them, and `--copy-devices`/`--write-devices` are refused. `true`: allowed (device nodes still need a root account).",
            },
            Key {
                names: &["specials"],
                ty: "bool",
                default: "as `devices`",
                toml_default: None,
                meaning: "`true`: FIFOs and sockets may be created while device nodes stay out (root backups of whole systems have FIFOs and sockets, which are harmless). Only the kernel sandbox can tell the two apart (rsync's `--drop-D` keeps out both), so the gate adds no `--drop-D`, the sandbox refuses device nodes (such a push ends with \"mknod ... Permission denied\", exit 23, everything else transferred), and without the sandbox a push that may create device nodes (`-D`, `-a`, `--devices`) is refused (`nodes_unconfined`); `--specials` alone is allowed. `false` with `devices = true` is an error.",
            },
            Key {
                names: &["follow_links"],
                ty: "bool",
                default: "`false`",
                toml_default: Some("false"),
                meaning: "`true` allows `-L`/`--copy-links`, `-k`/`--copy-dirlinks`, \
                    `-K`/`--keep-dirlinks`, `--copy-unsafe-links`. They follow \
                    symlinks inside the module wherever they lead, and only the \
                    kernel sandbox keeps those reads inside it (`check` warns when \
                    `sandbox = \"off\"`).",
            },
            Key {
                names: &["max_connections"],
                ty: "integer",
                default: "`0`",
                toml_default: Some("0"),
                meaning: "Concurrent sessions on this module, 0 to 100000; 0 = unlimited. \
                    One limit for both request forms (rsync daemon's own lock-file \
                    scheme, in `lock_dir`). Setting it makes `timeout` default to \
                    600.",
            },
            Key {
                names: &["timeout"],
                ty: "integer (seconds)",
                default: "`600` with `max_connections`, else `0`",
                toml_default: None,
                meaning: "rsync ends a session after this many seconds without any I/O, 0 \
                    to 2592000; 0 = never (rsync's `--timeout` in `host:path` form, \
                    the module's `timeout` in the generated daemon config). A \
                    client's own `--timeout` applies only when it is shorter. It \
                    frees the `max_connections` slot of a client that stalls (see \
                    [Known limitations](#known-limitations) for a stalled push). \
                    Raise it (or set 0) where clients may stay silent longer, e.g. \
                    while building a huge file list.",
            },
            Key {
                names: &["setuid"],
                ty: "bool",
                default: "`false`",
                toml_default: Some("false"),
                meaning: "`false`: uploads lose their set-user-ID and set-group-ID bits, \
                    whatever the client sends (even a root push with \
                    `--usermap='*:0'`): `host:path` pushes get `--chmod=ug-s`, the \
                    daemon config says `incoming chmod = ug-s`. `true`: uploads keep \
                    them (a root backup of `/` that must restore setuid programs).",
            },
            Key {
                names: &["transfer_log"],
                ty: "bool",
                default: "`false`",
                toml_default: Some("false"),
                meaning: "One audit record per file rsync sends, receives or deletes in \
                    this module, in both request forms: its path relative to the \
                    module, the operation (`send`, `recv`, `del`), its length and the \
                    bytes transferred for it (rsync's `%o %f %l %b`), tied to the \
                    session ([file records](#file-records)). rsync logs each file to \
                    the gate as it goes (a file under `lock_dir`, `filelog/`, that \
                    the gate reads as it grows: by its name in `host:path` form, as \
                    the daemon's log descriptor in `host::` form); a session whose record channel cannot be set up is \
                    refused (`internal`). Review with `rsync-gate audit --files`.",
            },
            Key {
                names: &["list"],
                ty: "bool",
                default: "`true`",
                toml_default: Some("true"),
                meaning: "`host::` only: show the module in `host::` listings.",
            },
            Key {
                names: &["uid", "gid"],
                ty: "user/group name or number",
                default: "the SSH account and its primary group",
                toml_default: None,
                meaning: "`host::` only, and only when the SSH account is root: whom rsync \
                    runs as for this module. With a non-root account, setting either \
                    makes every `host::` request of every client granted the module \
                    fail. They do not apply to `host:path` requests, where rsync \
                    always runs as the SSH account.",
            },
        ],
    },
    Section {
        table: "clients.NAME",
        heading: "`[clients.NAME]`",
        intro: "One per key; the `authorized_keys` line names it with `--client \
                    NAME`. A client needs `modules`, a `trigger` or `learn = true`.",
        keys: &[
            Key {
                names: &["modules"],
                ty: "array of module names",
                default: "`[]`",
                toml_default: Some("[]"),
                meaning: "The modules this key may use; each must be defined.",
            },
            Key {
                names: &["from"],
                ty: "array of addresses / CIDR blocks",
                default: "`[]` (anywhere)",
                toml_default: Some("[]"),
                meaning: "Checked against `SSH_CONNECTION` (IPv4-mapped IPv6 counts as \
                    IPv4; a block with host bits set is an error); written into \
                    generated `authorized_keys` lines as `from=\"...\"`.",
            },
            Key {
                names: &["key"],
                ty: "string",
                default: "none",
                toml_default: None,
                meaning: "The client's public key, `TYPE BASE64 [COMMENT]`; used only by \
                    `authorized-keys`.",
            },
            Key {
                names: &["note"],
                ty: "string",
                default: "none",
                toml_default: None,
                meaning: "Free text for your records (at most 256 bytes); the gate does \
                    not use it.",
            },
            Key {
                names: &["trigger"],
                ty: "trigger name",
                default: "none",
                toml_default: None,
                meaning: "Makes this a trigger client (push mirroring): its commands fire \
                    the trigger, see below.",
            },
            Key {
                names: &["learn"],
                ty: "bool",
                default: "`false`",
                toml_default: Some("false"),
                meaning: "Learn mode: the client's requests are decided as any client's \
                    (nothing more is allowed), and each of its decision records notes \
                    what the request asked for (audit field `learn`), from which \
                    [`rsync-gate learn`](#rsync-gate-learn---log-file---client-name---since-t---policy-file) \
                    drafts a policy. A learn client needs neither `modules` nor a \
                    `trigger` (its rsync requests are then all refused, and recorded).",
            },
        ],
    },
    Section {
        table: "triggers.NAME",
        heading: "`[triggers.NAME]`",
        intro: "Push mirroring: an upstream connects with its own key to say \
                    \"update now\", and the downstream runs its own job (for a \
                    Debian mirror, `ftpsync`).",
        keys: &[
            Key {
                names: &["command"],
                ty: "array of strings",
                default: "required",
                toml_default: None,
                meaning: "The job's argv: an absolute program and its fixed arguments (at \
                    most 64, each at most 4096 bytes, no NUL). Run directly, never \
                    through a shell.",
            },
            Key {
                names: &["args"],
                ty: "array of words",
                default: "none",
                toml_default: None,
                meaning: "The words a client may send, each a word of letters, digits and \
                    `._+-:`, optionally ending in `*`, which matches a suffix of \
                    those characters; at most 256 entries (`\"sync:archive:*\"` \
                    matches `sync:archive:` and `sync:archive:debian-security`). \
                    With `args`, every word the client sends must match one, or the \
                    request is refused (`trigger_word_refused`), and the words are \
                    appended to `command`. Without `args`, the words are recorded in \
                    the audit log and the job gets none of them.",
            },
            Key {
                names: &["log"],
                ty: "path",
                default: "none",
                toml_default: None,
                meaning: "The job's stdout and stderr, appended (created 0640 when \
                    missing, never through a symlink). Without it the output is \
                    discarded.",
            },
            Key {
                names: &["env"],
                ty: "table of strings",
                default: "`{}`",
                toml_default: Some("{}"),
                meaning: "Fixed variables for the job, on top of `PATH=/usr/bin:/bin` \
                    (which `env` may replace) and the account's `HOME`, `USER` and \
                    `LOGNAME` (setting these is an error). At most 256 variables.",
            },
            Key {
                names: &["timeout"],
                ty: "duration",
                default: "none",
                toml_default: None,
                meaning: "The job (its whole process group) gets SIGTERM after this long, \
                    and SIGKILL 10 s later. Digits and a unit `s`, `m`, `h` or `d` \
                    (`\"90s\"`, `\"6h\"`), at most `\"7d\"`.",
            },
        ],
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A policy with one of each named table, each key of `section` either
    /// set (`KEY = VALUE`) or commented out (`#KEY = VALUE`), on the same
    /// lines either way.
    fn policy_with(table: &str, line: &str) -> String {
        let mut parts = vec![
            ("gate", String::new()),
            ("modules.m", "path = \"/srv/m\"\n".to_string()),
            ("clients.c", "trigger = \"t\"\n".to_string()),
            ("triggers.t", "command = [\"/usr/bin/true\"]\n".to_string()),
        ];
        for (t, body) in &mut parts {
            if t.split('.').next() == table.split('.').next() {
                body.push_str(line);
                body.push('\n');
            }
        }
        parts
            .iter()
            .map(|(t, body)| format!("[{t}]\n{body}\n"))
            .collect()
    }

    fn load(text: &str) -> crate::policy::Policy {
        crate::policy::load_text(Path::new("/p.toml"), text)
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    #[test]
    fn the_defaults_are_the_loaders() {
        let mut checked = 0;
        for s in SECTIONS {
            for k in s.keys {
                let Some(value) = k.toml_default else {
                    continue;
                };
                assert!(
                    k.default.starts_with(&format!("`{value}`")),
                    "{}: {} is not {value}",
                    k.names[0],
                    k.default
                );
                for name in k.names {
                    let set = policy_with(s.table, &format!("{name} = {value}"));
                    let unset = policy_with(s.table, &format!("#{name} = {value}"));
                    assert_eq!(load(&set), load(&unset), "{} {name} = {value}", s.header());
                    checked += 1;
                }
            }
        }
        assert!(checked >= 20, "{checked}");
    }

    /// The keys each table accepts, as the loader says when it meets one
    /// it does not know.
    fn loader_keys(table: &str) -> Vec<String> {
        let text = policy_with(table, "no_such_key = 1");
        let e = crate::policy::load_text(Path::new("/p.toml"), &text)
            .unwrap_err()
            .to_string();
        let list = e
            .split_once("(the keys there are: ")
            .and_then(|(_, rest)| rest.split_once(')'))
            .unwrap_or_else(|| panic!("{e}"))
            .0;
        let mut keys: Vec<String> = list.split(", ").map(str::to_string).collect();
        keys.sort();
        keys
    }

    #[test]
    fn every_key_the_loader_knows_is_here() {
        for s in SECTIONS {
            let mut here: Vec<String> = s.names().map(str::to_string).collect();
            here.sort();
            assert_eq!(here, loader_keys(s.table), "{}", s.header());
        }
        let tables: Vec<&str> = SECTIONS.iter().map(|s| s.table).collect();
        assert_eq!(
            tables,
            ["gate", "modules.NAME", "clients.NAME", "triggers.NAME"]
        );
    }
}
