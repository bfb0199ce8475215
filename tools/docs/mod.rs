//! What the Debian package installs besides the binary and the files in
//! pkg/: the manual pages rsync-gate(8) (from the clap definitions) and
//! rsync-gate-policy(5) (from the policy key table,
//! `rsync_gate::policy::keys`), the bash, zsh and fish completions (from the
//! clap definitions) and the shipped policy (policy.example.toml with its
//! modules, clients and triggers commented out).
//!
//! Used by tools/gen-docs.rs (`cargo run --example gen-docs -- DIR`, which
//! tools/build-deb runs before `cargo deb`) and by tests/gate/docs.rs, so
//! the product binary carries none of it.
#![allow(dead_code)]

use std::io;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_mangen::roff::{Inline, Roff, bold, italic, roman};

use rsync_gate::policy::keys::{self, Section};

/// The files `write_all` writes, by name.
pub const FILES: [&str; 6] = [
    "rsync-gate.8",
    "rsync-gate-policy.5",
    "rsync-gate.bash",
    "_rsync-gate",
    "rsync-gate.fish",
    "policy.toml",
];

/// The command line as users see it, built (bin names and globals set):
/// the clap definitions without what they hide (the hooks and the trigger
/// supervisor rsync-gate starts itself, and the debug builds' test
/// switches), which clap_complete would otherwise offer.
pub fn cli() -> clap::Command {
    let full = rsync_gate::cli::Cli::command();
    let mut cmd = clap::Command::new("rsync-gate")
        .bin_name("rsync-gate")
        .version(env!("CARGO_PKG_VERSION"))
        .disable_version_flag(true)
        .args(full.get_arguments().filter(|a| !a.is_hide_set()).cloned())
        .subcommands(full.get_subcommands().filter(|c| !c.is_hide_set()).cloned());
    if let Some(about) = full.get_about() {
        cmd = cmd.about(about.clone());
    }
    if let Some(usage) = full.get_overridden_usage() {
        cmd = cmd.override_usage(usage.clone());
    }
    cmd.build();
    cmd
}

/// Write every file of [`FILES`] into `dir` (created if needed), reading
/// policy.example.toml from `repo`.
pub fn write_all(repo: &Path, dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let example = std::fs::read_to_string(repo.join("policy.example.toml"))?;
    let policy = shipped_policy(&example).map_err(io::Error::other)?;
    let contents = [
        man_gate(),
        man_policy(),
        completion(clap_complete::Shell::Bash),
        completion(clap_complete::Shell::Zsh),
        completion(clap_complete::Shell::Fish),
        policy,
    ];
    let mut written = Vec::new();
    for (name, text) in FILES.iter().zip(contents) {
        let path = dir.join(name);
        std::fs::write(&path, text)?;
        written.push(path);
    }
    Ok(written)
}

/// The completion script for `shell`.
pub fn completion(shell: clap_complete::Shell) -> String {
    let mut cmd = cli();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "rsync-gate", &mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    match shell {
        // clap_complete's bash script spells the state of a subcommand of
        // a binary with a '-' in its name two ways (`rsync__gate__subcmd__x`
        // where it is set, `rsync__subcmd__gate__subcmd__x` where it is
        // matched), so nothing completes after a subcommand
        // (clap-rs/clap#6421). Spell it the first way everywhere.
        clap_complete::Shell::Bash => text.replace("rsync__subcmd__gate", "rsync__gate"),
        _ => text,
    }
}

// ---------------------------------------------------------------------------
// Markdown (the key table's) to roff
// ---------------------------------------------------------------------------

/// `[text](target)` made `text`, and a link to a section of README.md
/// (`#anchor`) `text (README.md)`.
fn strip_links(md: &str) -> String {
    let mut out = String::with_capacity(md.len());
    let mut rest = md;
    while let Some((before, after)) = rest.split_once('[') {
        out.push_str(before);
        match after.split_once("](").and_then(|(text, tail)| {
            let (target, tail) = tail.split_once(')')?;
            (!text.contains('[')).then_some((text, target, tail))
        }) {
            Some((text, target, tail)) => {
                out.push_str(text);
                if target.starts_with('#') {
                    out.push_str(" (README.md)");
                }
                rest = tail;
            }
            None => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Markdown inline text as roff: code spans bold, links their text.
pub fn inline(md: &str) -> Vec<Inline> {
    strip_links(md)
        .split('`')
        .enumerate()
        .filter(|(_, s)| !s.is_empty())
        .map(|(i, s)| if i % 2 == 1 { bold(s) } else { roman(s) })
        .collect()
}

/// Markdown text without its markup (headings, table cells for plain use).
pub fn plain(md: &str) -> String {
    strip_links(md).replace('`', "")
}

// ---------------------------------------------------------------------------
// The policy reference: README.md's tables and rsync-gate-policy(5)
// ---------------------------------------------------------------------------

/// A section's table as README.md shows it (header, rule, one row per key).
pub fn markdown_table(s: &Section) -> String {
    let mut out = String::from("| key | type | default | meaning |\n|---|---|---|---|\n");
    for k in s.keys {
        let names: Vec<String> = k.names.iter().map(|n| format!("`{n}`")).collect();
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            names.join(", "),
            k.ty,
            k.default,
            k.meaning
        ));
    }
    out
}

fn title(page: &str, section: &str, manual: &str) -> Roff {
    let mut r = Roff::new();
    let source = format!("rsync-gate {}", env!("CARGO_PKG_VERSION"));
    r.control("TH", [page, section, "", source.as_str(), manual]);
    // No hyphenation, ragged right: paths and options stay whole.
    r.control("nh", []);
    r.control("ad", ["l"]);
    r
}

/// A paragraph of plain text.
fn para(r: &mut Roff, text: &str) {
    r.control("PP", []);
    r.text([roman(text)]);
}

/// A tagged paragraph: `tag` in bold, then `text`.
fn item(r: &mut Roff, tag: &str, text: &str) {
    r.control("TP", []);
    r.text([bold(tag)]);
    r.text([roman(text)]);
}

/// rsync-gate-policy(5).
pub fn man_policy() -> String {
    let mut r = title("RSYNC-GATE-POLICY", "5", "File Formats");
    r.control("SH", ["NAME"]);
    r.text([roman("rsync-gate-policy - the rsync-gate policy file")]);
    r.control("SH", ["SYNOPSIS"]);
    r.text([
        bold(rsync_gate::policy::DEFAULT_POLICY),
        roman(", and the drop-ins its "),
        bold("include"),
        roman(" names (the package's policy names "),
        bold("/etc/rsync-gate/conf.d/*.toml"),
        roman(")"),
    ]);
    r.control("SH", ["DESCRIPTION"]);
    r.text([
        roman("The policy of "),
        bold("rsync-gate"),
        roman(
            "(8) says which directory trees (modules) each client key may use, \
             read-only or writable, from which addresses and with which options, \
             and which push-mirror jobs (triggers) a key may start. Each \
             authorized_keys line names its client with ",
        ),
        bold("serve --client NAME"),
        roman(
            "; nothing else is reachable. A policy with no clients grants \
             nothing. Run ",
        ),
        bold("rsync-gate check"),
        roman(" after every change."),
    ]);
    r.control("PP", []);
    r.text(inline(keys::RULES));
    for s in keys::SECTIONS {
        r.control("SH", [plain(s.heading).as_str()]);
        if !s.intro.is_empty() {
            r.text(inline(s.intro));
        }
        for k in s.keys {
            r.control("TP", []);
            let mut tag = Vec::new();
            for (i, n) in k.names.iter().enumerate() {
                if i > 0 {
                    tag.push(roman(", "));
                }
                tag.push(bold(*n));
            }
            tag.push(roman(" ("));
            tag.extend(inline(k.ty));
            tag.push(roman("; default: "));
            tag.extend(inline(k.default));
            tag.push(roman(")"));
            r.text(tag);
            r.text(inline(k.meaning));
        }
    }
    r.control("SH", ["EXAMPLE"]);
    example(
        &mut r,
        "A read-only module for one client, which may connect from one address:",
        &[
            "[modules.www]",
            "path = \"/srv/www\"",
            "comment = \"web site\"",
            "",
            "[clients.mirror01]",
            "modules = [\"www\"]",
            "from = [\"192.0.2.10\"]",
            "key = \"ssh-ed25519 AAAA... mirror01\"",
        ],
    );
    para(
        &mut r,
        "With the default [gate] settings this lets the key of mirror01, from \
         192.0.2.10, pull /srv/www with rsync -a mirror@server:www/ or \
         rsync -a -e ssh mirror@server::www/, and nothing else.",
    );
    r.control("SH", ["FILES"]);
    item(
        &mut r,
        rsync_gate::policy::DEFAULT_POLICY,
        "The policy (a conffile of the package: upgrades keep your edits).",
    );
    item(
        &mut r,
        "/etc/rsync-gate/conf.d/*.toml",
        "Drop-ins, e.g. one file per client.",
    );
    item(
        &mut r,
        "/usr/share/doc/rsync-gate/examples/policy.example.toml",
        "The annotated reference: every key, with its default and an example.",
    );
    r.control("SH", ["SEE ALSO"]);
    r.text([roman(
        "rsync-gate(8), rsync(1), rsyncd.conf(5), sshd(8), \
         /usr/share/doc/rsync-gate/README.md (drop boxes, triggers, known limitations)",
    )]);
    r.render()
}

/// A paragraph `intro`, then `lines` as they are, indented.
fn example(r: &mut Roff, intro: &str, lines: &[&str]) {
    r.control("PP", []);
    r.text([roman(intro)]);
    r.control("RS", ["4"]);
    r.control("nf", []);
    for l in lines {
        r.text([roman(*l)]);
    }
    r.control("fi", []);
    r.control("RE", []);
}

// ---------------------------------------------------------------------------
// rsync-gate(8)
// ---------------------------------------------------------------------------

/// How an option or argument is written in a synopsis: `--client <CLIENT>`,
/// `[--json]`, `[--log <FILE>]...`, `-- <COMMAND>...`.
/// The value an option takes as a synopsis writes it: its name, or, for an
/// option that takes a fixed number of values, each one's
/// (`--for-sshd USER FINGERPRINT`).
fn value_words(a: &clap::Arg) -> String {
    let names: Vec<String> = a
        .get_value_names()
        .map(|v| v.iter().map(ToString::to_string).collect())
        .unwrap_or_default();
    if fixed_values(a) && names.len() > 1 {
        return names.join(" ");
    }
    names
        .into_iter()
        .next()
        .unwrap_or_else(|| a.get_id().as_str().to_uppercase())
}

/// Does `a` take exactly N > 1 values each time?
fn fixed_values(a: &clap::Arg) -> bool {
    a.get_num_args()
        .is_some_and(|n| n.min_values() == n.max_values() && n.max_values() > 1)
}

fn synopsis_word(a: &clap::Arg) -> Vec<Inline> {
    let value = || value_words(a);
    let takes = a.get_num_args().is_some_and(|n| n.takes_values());
    // An option of fixed arity is given once (the command refuses more).
    let many = !fixed_values(a)
        && (a.get_num_args().is_some_and(|n| n.max_values() > 1)
            || matches!(a.get_action(), clap::ArgAction::Append));
    let mut w = Vec::new();
    if a.is_positional() {
        if a.is_last_set() {
            w.push(bold("--"));
            w.push(roman(" "));
        }
        w.push(italic(value()));
    } else {
        let flag = match (a.get_long(), a.get_short()) {
            (Some(l), _) => format!("--{l}"),
            (None, Some(s)) => format!("-{s}"),
            (None, None) => return w,
        };
        w.push(bold(flag));
        if takes {
            w.push(roman(" "));
            w.push(italic(value()));
        }
    }
    let required = a.is_required_set();
    if !required {
        w.insert(0, roman("["));
        w.push(roman("]"));
    }
    if many {
        w.push(roman("..."));
    }
    w
}

/// The arguments a subcommand documents itself (not help, not globals).
fn own_args(c: &clap::Command) -> Vec<&clap::Arg> {
    c.get_arguments()
        .filter(|a| !a.is_hide_set() && !a.is_global_set() && a.get_id().as_str() != "help")
        .collect()
}

fn command_synopsis(c: &clap::Command) -> Vec<Inline> {
    let mut line = vec![bold(format!("rsync-gate {}", c.get_name()))];
    let args = own_args(c);
    // Options first (required ones last, as usage does), positionals after.
    let mut ordered: Vec<&clap::Arg> = args
        .iter()
        .copied()
        .filter(|a| !a.is_positional() && !a.is_required_set())
        .collect();
    ordered.extend(
        args.iter()
            .copied()
            .filter(|a| !a.is_positional() && a.is_required_set()),
    );
    ordered.extend(args.iter().copied().filter(|a| a.is_positional()));
    for a in ordered {
        line.push(roman(" "));
        line.extend(synopsis_word(a));
    }
    line
}

/// An option's tag in an options list: `-f, --follow`, `--policy <POLICY>`.
fn option_tag(a: &clap::Arg) -> Vec<Inline> {
    let mut tag = Vec::new();
    if a.is_positional() {
        return synopsis_word(a)
            .into_iter()
            .filter(|i| !matches!(i, Inline::Roman(s) if s == "[" || s == "]"))
            .collect();
    }
    if let Some(s) = a.get_short() {
        tag.push(bold(format!("-{s}")));
        if a.get_long().is_some() {
            tag.push(roman(", "));
        }
    }
    if let Some(l) = a.get_long() {
        tag.push(bold(format!("--{l}")));
    }
    if a.get_num_args().is_some_and(|n| n.takes_values()) {
        let v = value_words(a);
        tag.push(roman(" "));
        tag.push(italic(v));
    }
    tag
}

/// An option's help, with its default and its possible values.
fn option_text(a: &clap::Arg) -> String {
    let mut text = a
        .get_long_help()
        .or_else(|| a.get_help())
        .map(|h| h.to_string())
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let takes = a.get_num_args().is_some_and(|n| n.takes_values());
    let mut sentence = |s: String| {
        if !text.is_empty() && !text.ends_with('.') {
            text.push('.');
        }
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(&s);
    };
    let values: Vec<String> = a
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| format!("`{}`", v.get_name()))
        .collect();
    if !values.is_empty() && takes {
        sentence(format!("One of {}.", values.join(", ")));
    }
    let defaults: Vec<String> = a
        .get_default_values()
        .iter()
        .map(|v| format!("`{}`", v.to_string_lossy()))
        .collect();
    if !defaults.is_empty() && takes {
        sentence(format!("Default: {}.", defaults.join(" ")));
    }
    text
}

fn options(r: &mut Roff, args: &[&clap::Arg]) {
    for a in args {
        r.control("TP", []);
        r.text(option_tag(a));
        r.text(inline(&option_text(a)));
    }
}

/// rsync-gate(8).
pub fn man_gate() -> String {
    let cmd = cli();
    let mut r = title("RSYNC-GATE", "8", "System Administration");
    r.control("SH", ["NAME"]);
    r.text([roman(format!(
        "rsync-gate - {}",
        cmd.get_about().map(|a| a.to_string()).unwrap_or_default()
    ))]);

    r.control("SH", ["SYNOPSIS"]);
    // clap's own `help` command is left out: `rsync-gate COMMAND --help`.
    let visible: Vec<&clap::Command> = cmd
        .get_subcommands()
        .filter(|c| !c.is_hide_set() && c.get_name() != "help")
        .collect();
    for (i, c) in visible.iter().enumerate() {
        if i > 0 {
            r.control("br", []);
        }
        r.text(command_synopsis(c));
    }
    r.control("br", []);
    r.text([
        bold("rsync-gate --version"),
        roman(" ["),
        bold("-v"),
        roman("]"),
    ]);

    r.control("SH", ["DESCRIPTION"]);
    r.text([
        bold("rsync-gate"),
        roman(
            " is a gatekeeper for rsync over SSH. Put it in an authorized_keys \
             entry as the forced command (command=\"/usr/bin/rsync-gate serve \
             --client NAME\"); sshd then runs it instead of whatever the client \
             asked for. It reads the client's request from SSH_ORIGINAL_COMMAND, \
             checks the rsync invocation against the policy (",
        ),
        bold("rsync-gate-policy"),
        roman(
            "(5): which directories this key may use, read-only or writable, \
             from which addresses, with which options), writes an audit \
             record, and runs the real rsync confined to what the policy \
             grants. No shell is involved at any point.",
        ),
    ]);
    para(
        &mut r,
        "Clients use rsync as usual, in either form: rsync -a server:MODULE/path/ dest/ \
         (the gate checks every option and path and runs rsync with the checked \
         arguments), or rsync -a -e ssh server::MODULE/path/ dest/ (rsync runs as a \
         daemon over the SSH channel, with a configuration the gate generates and \
         a hook that checks each request the same way). A client with a trigger \
         starts the policy's push-mirroring job instead.",
    );
    para(
        &mut r,
        "The other commands are for the administrator: check validates the policy, \
         explain shows what a request would do (with --trace, every rule that \
         applied and the policy line it came from), authorized-keys writes the \
         authorized_keys lines, audit reviews the audit log, learn drafts a policy \
         from what clients in learn mode (learn = true) asked for, import converts \
         an rsyncd.conf or rrsync setup into a policy.",
    );

    r.control("SH", ["OPTIONS"]);
    let globals: Vec<&clap::Arg> = cmd.get_arguments().filter(|a| !a.is_hide_set()).collect();
    options(&mut r, &globals);

    r.control("SH", ["COMMANDS"]);
    for c in &visible {
        r.control("SS", [c.get_name()]);
        r.text(command_synopsis(c));
        let about = c
            .get_long_about()
            .or_else(|| c.get_about())
            .map(|a| a.to_string())
            .unwrap_or_default();
        if !about.is_empty() {
            r.control("PP", []);
            r.text(inline(
                &about.split_whitespace().collect::<Vec<_>>().join(" "),
            ));
        }
        options(&mut r, &own_args(c));
    }

    r.control("SH", ["EXIT STATUS"]);
    item(
        &mut r,
        "serve",
        "rsync's own exit status when rsync ran; 0 for the connectivity probe (true) \
         and a started or queued trigger; 1 when the request was refused (the client \
         sees one line, rsync-gate: denied: REASON, on stderr).",
    );
    item(
        &mut r,
        "check",
        "0 when the policy has no error (warnings allowed), 1 otherwise.",
    );
    item(
        &mut r,
        "explain",
        "0 allow, 1 deny, 2 error (for example, the policy does not load).",
    );
    item(
        &mut r,
        "learn",
        "0 a proposal is printed, 1 no decision record of a learn client matched, 2 on \
         an error.",
    );
    item(
        &mut r,
        "import",
        "0 everything was carried over, 1 the policy is printed but something was not \
         carried over, 2 nothing is printed.",
    );
    item(
        &mut r,
        "others",
        "0 on success, 2 on an error (a message on stderr).",
    );

    r.control("SH", ["ENVIRONMENT"]);
    item(
        &mut r,
        "SSH_ORIGINAL_COMMAND",
        "The client's command, set by sshd; read by serve.",
    );
    item(
        &mut r,
        "SSH_CONNECTION",
        "The client's and the server's address and port, set by sshd; checked against \
         the client's from and passed on to rsync. serve reads nothing else from its \
         environment: the policy path and the client name come only from its command \
         line, and rsync gets an environment built from nothing.",
    );

    r.control("SH", ["FILES"]);
    item(
        &mut r,
        rsync_gate::policy::DEFAULT_POLICY,
        "The policy (rsync-gate-policy(5)); drop-ins in /etc/rsync-gate/conf.d/*.toml. \
         Must be root's and writable by root alone.",
    );
    item(
        &mut r,
        "/var/log/rsync-gate/audit.jsonl",
        "The audit log: one JSON object per decision and per session end, appended. \
         Nothing runs when it cannot be written. /etc/logrotate.d/rsync-gate rotates \
         it by renaming it (each session opens the log anew).",
    );
    item(
        &mut r,
        "/run/rsync-gate",
        "lock_dir: connection slots, generated daemon configurations, the rsync \
         capability cache, trigger state. Created at boot by \
         /usr/lib/tmpfiles.d/rsync-gate.conf.",
    );
    item(
        &mut r,
        "/usr/share/doc/rsync-gate/README.md",
        "The full documentation: installation, policy reference, refusal messages, \
         audit records, security model, known limitations.",
    );

    r.control("SH", ["EXAMPLES"]);
    example(
        &mut r,
        "An authorized_keys line (rsync-gate authorized-keys writes them from the policy):",
        &[
            "restrict,from=\"192.0.2.10\",command=\"/usr/bin/rsync-gate serve --client mirror01\" ssh-ed25519 AAAA... mirror01",
        ],
    );
    example(
        &mut r,
        "Check the policy as the SSH account sees it, then write the account's keys:",
        &[
            "rsync-gate check --account mirror",
            "rsync-gate authorized-keys > /var/lib/mirror/.ssh/authorized_keys",
        ],
    );
    example(
        &mut r,
        "What would a client's command do?",
        &[
            "rsync-gate explain --client mirror01 --from 192.0.2.10 -- rsync --server --sender -logDtpre.iLsfxCIvu . www/",
        ],
    );
    example(
        &mut r,
        "Which rules decided it, and where in the policy each is set?",
        &[
            "rsync-gate explain --trace --client mirror01 --from 192.0.2.10 -- rsync --server --sender -logDtpre.iLsfxCIvu . www/",
        ],
    );
    example(
        &mut r,
        "A client in learn mode (learn = true) ran for a week: the policy its requests needed, to review:",
        &["rsync-gate learn --client host2 --since 7d"],
    );
    example(
        &mut r,
        "Today's refusals, a summary per client, and one client's decisions in the journal ([gate] journald = true):",
        &[
            "rsync-gate audit --denied --since 1d",
            "rsync-gate audit --summary",
            "journalctl RSYNC_GATE_CLIENT=mirror01",
        ],
    );

    r.control("SH", ["SECURITY MODEL"]);
    for (lead, text) in [
        (
            "sshd forces the gate.",
            "The policy path and the client name come only from the command= line.",
        ),
        (
            "No shell, ever.",
            "The command is split by the gate's own parser, which refuses shell syntax; \
             rsync is executed directly.",
        ),
        (
            "Default deny.",
            "Every option is checked against a table of the options rsync clients send; \
             anything unknown, unparsable or not granted is refused, with one line on \
             stderr and an audit record.",
        ),
        (
            "Paths are resolved, then pinned.",
            "Every path is resolved physically inside one module and handed to rsync as \
             a held directory, so a symlink swapped in after the check changes nothing.",
        ),
        (
            "Confined.",
            "rsync gets --confine-root and --drop-D where it has them, a clean \
             environment, and a Landlock sandbox limiting it to the module.",
        ),
        (
            "Trusted files.",
            "The policy, the audit log's directory and lock_dir must be root's (or the \
             account's); writable modules may not contain the account's home or the \
             gate's own files.",
        ),
        (
            "Fail closed.",
            "A policy with any error is not used, and nothing runs when the audit record \
             cannot be written.",
        ),
    ] {
        item(&mut r, lead, text);
    }

    r.control("SH", ["SEE ALSO"]);
    r.text([roman(
        "rsync-gate-policy(5), rsync(1), sshd(8), sshd_config(5), logrotate(8), \
         tmpfiles.d(5), journalctl(1), /usr/share/doc/rsync-gate/README.md",
    )]);
    r.render()
}

// ---------------------------------------------------------------------------
// The shipped policy
// ---------------------------------------------------------------------------

/// Where the reference's own introduction ends and its rules begin.
const RULES_MARK: &str = "# Rules that apply everywhere:";
/// The first line after `[gate]`'s keys: the modules' banner.
const MODULES_MARK: &str = "# [modules.NAME]:";

/// What the package installs as /etc/rsync-gate/policy.toml: the annotated
/// reference (`example`, policy.example.toml) under a header of its own,
/// its `[gate]` as it is but with the drop-in directory included, and
/// every module, client and trigger commented out, so it grants nothing.
pub fn shipped_policy(example: &str) -> Result<String, String> {
    let (_, rules) = example
        .split_once(RULES_MARK)
        .ok_or("policy.example.toml: no rules section")?;
    let banner = rules
        .find(MODULES_MARK)
        .ok_or("policy.example.toml: no [modules.NAME] banner")?;
    // The banner's rule line above it starts the part to comment out.
    let start = rules
        .get(..banner)
        .and_then(|b| b.trim_end_matches('\n').rfind('\n'))
        .ok_or("policy.example.toml: no line above the modules banner")?;
    let (gate, items) = rules.split_at(start + 1);
    let include_default = "\ninclude = []\n";
    if gate.matches(include_default).count() != 1 {
        return Err("policy.example.toml: [gate] does not set include = [] once".into());
    }
    let gate = gate.replace(
        include_default,
        "\ninclude = [\"/etc/rsync-gate/conf.d/*.toml\"]\n",
    );
    let mut out = String::from(SHIPPED_HEADER);
    out.push_str(RULES_MARK);
    out.push_str(&gate);
    for line in items.lines() {
        if line.is_empty() || line.starts_with('#') {
            out.push_str(line);
        } else {
            out.push_str("# ");
            out.push_str(line);
        }
        out.push('\n');
    }
    Ok(out)
}

const SHIPPED_HEADER: &str = "\
# rsync-gate policy, as the Debian package installs it.
#
# It grants nothing: it has no modules, clients or triggers. Add them after
# [gate] (the commented-out templates there show every key) or, one file per
# client if you like, in /etc/rsync-gate/conf.d/*.toml, which [gate] includes.
# Then, as root:
#
#   rsync-gate check --account ACCOUNT
#   rsync-gate authorized-keys
#
# This file is a conffile: upgrades keep your edits. The reference is
# rsync-gate-policy(5); the same text with the templates active is
# /usr/share/doc/rsync-gate/examples/policy.example.toml.
#
# The policy and its drop-ins must be owned by root and writable by root
# alone (mode 0644), in directories that are root's alone too: `rsync-gate
# serve` refuses a policy the SSH account, a group or others could modify.
#
";
