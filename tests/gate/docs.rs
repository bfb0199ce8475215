//! What the Debian package documents stays true: README.md's policy
//! reference and `policy.example.toml` are the policy key table
//! (`rsync_gate::policy::keys`, itself held to the loader by unit tests);
//! the manual pages (tools/docs) render without a warning and cover every
//! command, option and key; the completions complete; the shipped policy is
//! the reference with nothing granted; `--version` names the commit.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rsync_gate::policy::keys::{self, SECTIONS, Section};
use rsync_gate::policy::{self, Gate};

use crate::common::{gate_bin, stderr};
use crate::gendocs;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs of whitespace made one space.
fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// README.md's text between `### HEADING` and its table, and the table.
fn readme_section(readme: &str, s: &Section) -> (String, String) {
    let heading = format!("\n### {}\n", s.heading);
    let (_, rest) = readme
        .split_once(&heading)
        .unwrap_or_else(|| panic!("README.md has no heading {heading:?}"));
    let (intro, table) = rest
        .split_once("\n| key |")
        .unwrap_or_else(|| panic!("no table after {heading:?}"));
    let table = format!("| key |{}", table.split("\n\n").next().unwrap_or_default());
    (intro.to_string(), format!("{}\n", table.trim_end()))
}

#[test]
fn readme_policy_reference_is_the_key_table() {
    let readme = read(&repo().join("README.md"));
    let reference = readme
        .split_once("\n## Policy reference\n")
        .expect("README.md has a policy reference")
        .1;
    assert!(
        squash(reference).starts_with(&squash(keys::RULES)),
        "README.md's policy reference must start with keys::RULES:\n{}",
        keys::RULES
    );
    for s in SECTIONS {
        let (intro, table) = readme_section(&readme, s);
        assert_eq!(
            squash(&intro),
            squash(s.intro),
            "README.md: the text under ### {} is not the key table's intro",
            s.heading
        );
        let want = gendocs::markdown_table(s);
        assert!(
            table == want,
            "README.md's table under ### {} is not src/policy/keys.rs's; it should read:\n\n{want}",
            s.heading
        );
    }
}

/// The keys `policy.example.toml` sets or shows commented out (`# key =
/// value`), per section, and the values set in `[gate]` and in the first
/// module (which shows every key at its default).
fn example_keys(text: &str) -> (BTreeMap<String, BTreeSet<String>>, BTreeMap<String, String>) {
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut values = BTreeMap::new();
    let mut table = String::new();
    let mut first_module: Option<String> = None;
    for line in text.lines() {
        if let Some(h) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            table = h.to_string();
            if h.starts_with("modules.") && first_module.is_none() {
                first_module = Some(h.to_string());
            }
            continue;
        }
        let (commented, kv) = match line.strip_prefix("# ") {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        let Some((key, value)) = kv.split_once(" = ") else {
            continue;
        };
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            continue;
        }
        let section = match table.split_once('.') {
            Some((kind, _)) => format!("{kind}.NAME"),
            None => table.clone(),
        };
        seen.entry(section).or_default().insert(key.to_string());
        let at_defaults = table == "gate" || Some(&table) == first_module.as_ref();
        if at_defaults && !commented {
            values.insert(format!("{table}.{key}"), value.to_string());
        }
    }
    let first = first_module.expect("policy.example.toml has a module");
    let values = values
        .into_iter()
        .map(|(k, v)| (k.replacen(&first, "modules.NAME", 1), v))
        .collect();
    (seen, values)
}

fn toml_value(v: &str) -> toml::Value {
    let t: toml::Table = toml::from_str(&format!("v = {v}")).unwrap_or_else(|e| panic!("{v}: {e}"));
    t["v"].clone()
}

#[test]
fn policy_example_has_every_key_at_its_default() {
    let (seen, values) = example_keys(&read(&repo().join("policy.example.toml")));
    let mut checked = 0;
    for s in SECTIONS {
        let want: BTreeSet<String> = s.names().map(str::to_string).collect();
        assert_eq!(
            seen.get(s.table),
            Some(&want),
            "policy.example.toml: the keys shown in {} are not the key table's",
            s.header()
        );
        for k in s.keys {
            let Some(default) = k.toml_default else {
                continue;
            };
            for name in k.names {
                let Some(v) = values.get(&format!("{}.{name}", s.table)) else {
                    continue;
                };
                assert_eq!(
                    toml_value(v),
                    toml_value(default),
                    "policy.example.toml: {} {name} = {v}, but its default is {default}",
                    s.header()
                );
                checked += 1;
            }
        }
    }
    // Every [gate] key and every module key with a plain default.
    assert!(checked >= 17, "only {checked} defaults checked");
}

#[test]
fn shipped_policy_is_the_reference_granting_nothing() {
    let example = read(&repo().join("policy.example.toml"));
    let shipped = gendocs::shipped_policy(&example).unwrap();
    let p = policy::load_text(Path::new(policy::DEFAULT_POLICY), &shipped)
        .unwrap_or_else(|e| panic!("the shipped policy does not load: {e}\n{shipped}"));
    assert!(p.modules.is_empty() && p.clients.is_empty() && p.triggers.is_empty());
    assert_eq!(
        p.gate,
        Gate {
            include: vec!["/etc/rsync-gate/conf.d/*.toml".into()],
            ..Gate::default()
        }
    );
    // Every line of the reference from its rules on is there, as it is or
    // commented out; nothing else is but the header.
    let from_rules = example
        .split_once("# Rules that apply everywhere:")
        .unwrap()
        .1;
    let (header, body) = shipped
        .split_once("# Rules that apply everywhere:")
        .unwrap();
    assert!(header.lines().all(|l| l.starts_with('#')), "{header}");
    let want: Vec<&str> = from_rules.lines().collect();
    let got: Vec<&str> = body.lines().collect();
    assert_eq!(want.len(), got.len());
    let mut commented = 0;
    for (w, g) in want.iter().zip(&got) {
        if w == g {
            continue;
        }
        if *w == "include = []" {
            assert_eq!(*g, "include = [\"/etc/rsync-gate/conf.d/*.toml\"]");
        } else {
            assert_eq!(*g, format!("# {w}"), "shipped line for {w:?}");
            commented += 1;
        }
    }
    assert!(commented > 30, "{commented}");
}

/// Generate the package's files into a new temporary directory.
fn generated() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("pkg");
    let written = gendocs::write_all(&repo(), &dir).unwrap();
    assert_eq!(written.len(), gendocs::FILES.len());
    (d, dir)
}

/// A manual page as `man` shows it, failing on any groff warning.
fn render(page: &Path) -> String {
    let check = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(page)
        .output()
        .expect("run groff (groff-base)");
    assert!(
        check.status.success() && check.stderr.is_empty(),
        "groff warns about {}:\n{}",
        page.display(),
        stderr(&check)
    );
    let out = Command::new("man")
        .args(["-l", "-Tutf8"])
        .arg(page)
        .env("MANWIDTH", "80")
        .env("MAN_KEEP_FORMATTING", "0")
        .stdin(Stdio::null())
        .output()
        .expect("run man");
    assert!(
        out.status.success(),
        "man -l {}: {}",
        page.display(),
        stderr(&out)
    );
    // Bold and underline as nroff writes them (X\bX, _\bX) made plain.
    let mut text = String::new();
    let mut chars = String::from_utf8_lossy(&out.stdout)
        .into_owned()
        .chars()
        .collect::<Vec<_>>();
    chars.retain(|c| *c != '\u{2010}');
    let mut i = 0;
    while i < chars.len() {
        if chars.get(i + 1) == Some(&'\u{8}') {
            i += 2;
            continue;
        }
        text.push(chars[i]);
        i += 1;
    }
    text
}

#[test]
fn manual_pages_render_cleanly_and_cover_everything() {
    if crate::common::require("/usr/bin/groff").is_none()
        || crate::common::require("/usr/bin/man").is_none()
    {
        return;
    }
    let (_d, dir) = generated();
    let gate = render(&dir.join("rsync-gate.8"));
    let flat = squash(&gate);
    for section in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "COMMANDS",
        "EXIT STATUS",
        "ENVIRONMENT",
        "FILES",
        "EXAMPLES",
        "SECURITY MODEL",
        "SEE ALSO",
    ] {
        assert!(
            gate.lines().any(|l| l == section),
            "rsync-gate(8) has no {section} section:\n{gate}"
        );
    }
    assert!(flat.contains("rsync-gate - A forced-command gatekeeper for rsync over SSH"));
    let cli = gendocs::cli();
    let mut commands = 0;
    for c in cli
        .get_subcommands()
        .filter(|c| !c.is_hide_set() && c.get_name() != "help")
    {
        let name = c.get_name();
        assert!(
            gate.lines().any(|l| l.trim() == name),
            "rsync-gate(8) has no subsection for {name}"
        );
        assert!(
            flat.contains(&format!("rsync-gate {name} ")),
            "no synopsis for {name}"
        );
        for a in c.get_arguments().filter(|a| !a.is_hide_set()) {
            if let Some(long) = a.get_long() {
                assert!(
                    flat.contains(&format!("--{long}")),
                    "rsync-gate(8) does not mention {name} --{long}"
                );
            }
        }
        commands += 1;
    }
    assert!(commands >= 6, "{commands}");
    // Hidden commands stay out of the page.
    assert!(!flat.contains("trigger-run") && !flat.contains("rsync-gate hook"));
    assert!(flat.contains("--version [-v]"));

    let pol = render(&dir.join("rsync-gate-policy.5"));
    let flat = squash(&pol);
    assert!(flat.contains("rsync-gate-policy - the rsync-gate policy file"));
    for s in SECTIONS {
        assert!(
            pol.lines().any(|l| l.starts_with(&s.header())),
            "rsync-gate-policy(5) has no section {}",
            s.header()
        );
        for k in s.keys {
            let shown = k.names.join(", ");
            let default = gendocs::plain(k.default);
            assert!(
                flat.contains(&format!(
                    "{shown} ({}; default: {default})",
                    gendocs::plain(k.ty)
                )),
                "rsync-gate-policy(5) does not show {shown} with its type and default"
            );
            // The meaning, whole (links made their text).
            let meaning = squash(&gendocs::plain(k.meaning).replace(" (README.md)", ""));
            let first_words: String = meaning.split(' ').take(6).collect::<Vec<_>>().join(" ");
            assert!(
                flat.contains(&first_words),
                "rsync-gate-policy(5): {shown}: {first_words:?}"
            );
        }
    }
    // whatis (mandb) reads the NAME sections.
    for (page, want) in [
        (
            "rsync-gate.8",
            "rsync-gate - A forced-command gatekeeper for rsync over SSH",
        ),
        (
            "rsync-gate-policy.5",
            "rsync-gate-policy - the rsync-gate policy file",
        ),
    ] {
        let out = Command::new("lexgrog")
            .arg(dir.join(page))
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.contains(want),
            "lexgrog {page}: {said}{}",
            stderr(&out)
        );
    }
}

/// What bash completes for `words` (the last one being completed), with
/// the completion script at `script`.
pub(crate) fn bash_complete(script: &Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words
        .iter()
        .map(|w| crate::common::sh_quote(std::ffi::OsStr::new(w)))
        .collect();
    let line = words.join(" ");
    let prog = format!(
        "source {script}\n\
         COMP_WORDS=({words})\n\
         COMP_CWORD={cword}\n\
         COMP_LINE={line}\n\
         COMP_POINT=${{#COMP_LINE}}\n\
         spec=$(complete -p rsync-gate) && f=${{spec#*-F }} && f=${{f%% *}}\n\
         \"$f\" rsync-gate {cur} {prev}\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script = crate::common::sh_quote(script.as_os_str()),
        words = quoted.join(" "),
        cword = words.len() - 1,
        line = crate::common::sh_quote(std::ffi::OsStr::new(&line)),
        cur = quoted.last().unwrap(),
        prev = quoted.get(words.len().saturating_sub(2)).unwrap(),
    );
    let out = Command::new("bash")
        .arg("--norc")
        .arg("--noprofile")
        .arg("-c")
        .arg(&prog)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "bash completion: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn completions_complete_commands_and_options() {
    let (_d, dir) = generated();
    let bash = dir.join("rsync-gate.bash");
    assert_eq!(bash_complete(&bash, &["rsync-gate", "ch"]), ["check"]);
    assert_eq!(
        bash_complete(&bash, &["rsync-gate", "audit", "--de"]),
        ["--denied"]
    );
    assert_eq!(
        bash_complete(&bash, &["rsync-gate", "audit", "--mode", "re"]),
        ["receiver"]
    );
    let all = bash_complete(&bash, &["rsync-gate", ""]);
    for c in [
        "serve",
        "check",
        "explain",
        "authorized-keys",
        "audit",
        "import",
    ] {
        assert!(all.iter().any(|w| w == c), "{c} not in {all:?}");
    }
    assert!(
        !all.iter().any(|w| w == "hook" || w == "trigger-run"),
        "hidden commands completed: {all:?}"
    );
    // zsh and fish: the same commands and options, in their own syntax.
    for file in ["_rsync-gate", "rsync-gate.fish"] {
        let text = read(&dir.join(file));
        for word in [
            "serve",
            "authorized-keys",
            "denied",
            "follow",
            "unsandboxed",
        ] {
            assert!(text.contains(word), "{file} lacks {word}");
        }
        assert!(!text.contains("trigger-run"), "{file}");
    }
    assert!(read(&dir.join("_rsync-gate")).starts_with("#compdef rsync-gate"));
}

#[test]
fn version_names_the_commit() {
    let run = |args: &[&str]| {
        let out = Command::new(gate_bin()).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(out.stderr.is_empty(), "{args:?}: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let short = run(&["--version"]);
    let git = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(repo())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let prefix = format!("rsync-gate {} (commit ", env!("CARGO_PKG_VERSION"));
    let commit = short
        .strip_prefix(&prefix)
        .and_then(|r| r.strip_suffix(")\n"))
        .unwrap_or_else(|| panic!("--version: {short:?}"));
    match git {
        Some(head) => assert!(
            commit == head || commit == format!("{head}-modified"),
            "--version says {commit}, HEAD is {head}"
        ),
        None => assert_eq!(commit, "unknown"),
    }
    assert_eq!(run(&["-V"]), short);
    // With -v: the rsync it finds (and what it supports) and Landlock.
    let long = run(&["-V", "-v"]);
    let lines: Vec<&str> = long.lines().collect();
    assert_eq!(lines[0], short.trim_end());
    assert!(lines[1].starts_with("rsync:    /"), "{long}");
    assert!(
        lines[2].contains("--confine-root: ") || lines[2].contains("cannot be run"),
        "{long}"
    );
    assert!(lines[3].starts_with("landlock: "), "{long}");
    let without = run(&["--test-no-landlock", "-v", "--version"]);
    assert!(
        without.ends_with("landlock: not available (the kernel has none, or it is turned off)\n"),
        "{without}"
    );
    crate::common::assert_landlock_shown(lines[3]);
}

/// README.md's "Shipping the logs" names every journal field the gate
/// sends and each `MESSAGE_ID`.
#[test]
fn readme_names_every_journal_field() {
    use rsync_gate::audit::{self, Event, Mode, Reason, Record, Source, TriggerInfo, Verdict};
    let readme = read(&repo().join("README.md"));
    let section = readme
        .split_once("\n## Shipping the logs\n")
        .expect("README.md has a section Shipping the logs")
        .1
        .split("\n## ")
        .next()
        .unwrap();
    // A record with every field the journal carries.
    let full = Record {
        event: Event::End,
        session: "s".into(),
        client: "c".into(),
        source: Some(Source {
            addr: "192.0.2.1".into(),
            port: 1,
        }),
        decision: Some(Verdict::Deny),
        reason: Some(Reason {
            code: "x".into(),
            message: "x".into(),
            detail: None,
        }),
        mode: Some(Mode::Trigger),
        modules: vec!["m".into()],
        request: Some("m/".into()),
        trigger: Some(TriggerInfo {
            name: "t".into(),
            ..Default::default()
        }),
        exit_status: Some(1),
        signal: Some(9),
        duration_ms: Some(1),
        ..Default::default()
    };
    let entry = audit::journald::parse(&audit::journald::entry(&full)).unwrap();
    assert!(entry.len() >= 18, "{entry:?}");
    for (key, _) in &entry {
        assert!(
            section.contains(&format!("`{key}")),
            "README.md, Shipping the logs, does not name the journal field {key}"
        );
    }
    for id in [
        audit::journald::ALLOW_ID,
        audit::journald::DENY_ID,
        audit::journald::END_ID,
    ] {
        assert!(
            section.contains(id),
            "README.md does not give MESSAGE_ID {id}"
        );
    }
}
