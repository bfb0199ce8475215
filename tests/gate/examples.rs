//! The documentation's examples stay true: every example policy loads,
//! every example `authorized_keys` line is what `rsync-gate authorized-keys`
//! prints for the policy next to it, the demo script parses, the audit
//! commands in the READMEs print what the READMEs say, every refusal code
//! is documented, and the README's test command is the one CI runs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use rsync_gate::deny::DenyReason;
use rsync_gate::policy::{self, PlainReader, Policy};

use crate::common::gate_bin;

/// Where the examples' authorized_keys lines say the gate is installed.
const INSTALLED_GATE: &str = "/usr/local/bin/rsync-gate";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every file under `dir` whose name satisfies `want`, sorted.
fn files_under(dir: &Path, want: &dyn Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.file_name().and_then(|n| n.to_str()).is_some_and(want) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn load(path: &Path) -> Policy {
    policy::load(path, &PlainReader).unwrap_or_else(|e| {
        let all: Vec<String> = e.0.iter().map(ToString::to_string).collect();
        panic!("{} does not load:\n{}", path.display(), all.join("\n"))
    })
}

#[test]
fn every_example_policy_loads() {
    let policies = files_under(&repo().join("examples"), &|n| n.ends_with(".toml"));
    assert!(
        policies.len() >= 5,
        "expected at least 5 example policies under examples/, found {policies:?}"
    );
    for p in &policies {
        let loaded = load(p);
        assert!(
            !loaded.clients.is_empty(),
            "{}: an example without clients",
            p.display()
        );
        // Examples are meant to be installed as is: absolute paths only
        // (the loader enforces it), and the default policy location, which
        // their authorized_keys lines rely on.
        assert!(
            loaded.gate.include.is_empty(),
            "{}: examples must not depend on this machine's drop-ins",
            p.display()
        );
    }
    let reference = load(&repo().join("policy.example.toml"));
    assert!(reference.gate.include.is_empty());
    assert!(!reference.modules.is_empty() && !reference.triggers.is_empty());
}

/// The use cases of PRODUCT.md each have their directory, with a README.
#[test]
fn every_use_case_has_an_example_directory() {
    for dir in [
        "pull-mirror",
        "push-trigger",
        "root-backup",
        "drop-box",
        "audit-review",
    ] {
        let d = repo().join("examples").join(dir);
        assert!(d.join("README.md").is_file(), "{}/README.md", d.display());
        assert!(
            !files_under(&d, &|n| n.ends_with(".toml")).is_empty(),
            "{} has no policy",
            d.display()
        );
    }
}

/// One `authorized_keys` line, taken apart.
#[derive(Debug)]
struct KeyLine {
    options: String,
    command: String,
    client: String,
    key_type: String,
}

fn parse_key_line(line: &str) -> KeyLine {
    let rest = line
        .strip_prefix("restrict,")
        .unwrap_or_else(|| panic!("does not start with 'restrict,': {line}"));
    // Options end at the first space outside double quotes.
    let mut in_quotes = false;
    let mut end = None;
    for (i, c) in rest.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            ' ' if !in_quotes => {
                end = Some(i);
                break;
            }
            _ => {}
        }
    }
    let end = end.unwrap_or_else(|| panic!("no key after the options: {line}"));
    let (options, key) = (&rest[..end], &rest[end + 1..]);
    let command = options
        .split_once("command=\"")
        .and_then(|(_, c)| c.split_once('"'))
        .map(|(c, _)| c.to_string())
        .unwrap_or_else(|| panic!("no command=\"...\": {line}"));
    let words: Vec<&str> = command.split_whitespace().collect();
    assert!(
        words.first().is_some_and(|w| w.starts_with('/')),
        "the command must be an absolute path: {line}"
    );
    assert_eq!(words.get(1), Some(&"serve"), "not 'serve': {line}");
    let client = words
        .windows(2)
        .find(|w| w[0] == "--client")
        .map(|w| w[1].to_string())
        .unwrap_or_else(|| panic!("no --client NAME: {line}"));
    assert_eq!(
        words.last(),
        Some(&client.as_str()),
        "--client NAME must end the command: {line}"
    );
    let mut key_words = key.split_whitespace();
    let key_type = key_words.next().unwrap_or_default().to_string();
    let blob = key_words.next().unwrap_or_default();
    assert!(
        key_type.starts_with("ssh-")
            || key_type.starts_with("ecdsa-")
            || key_type.starts_with("sk-"),
        "not a key type: {key_type:?} in {line}"
    );
    assert!(
        blob.len() >= 16
            && blob
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)),
        "the key is not base64: {line}"
    );
    KeyLine {
        options: options.to_string(),
        command,
        client,
        key_type,
    }
}

#[test]
fn every_authorized_keys_line_matches_its_policy() {
    let files = files_under(&repo().join("examples"), &|n| n == "authorized_keys");
    assert!(files.len() >= 5, "authorized_keys examples: {files:?}");
    let mut lines_seen = 0;
    for file in &files {
        let dir = file.parent().unwrap();
        let policy_path = dir.join("policy.toml");
        let p = load(&policy_path);
        // What `rsync-gate authorized-keys` prints when installed.
        let generated = rsync_gate::cmd::authorized_keys::lines(
            &p,
            Path::new(policy::DEFAULT_POLICY),
            Path::new(INSTALLED_GATE),
            None,
        );
        for line in read(file).lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            lines_seen += 1;
            let parsed = parse_key_line(line);
            assert!(
                p.clients.contains_key(&parsed.client),
                "{}: client '{}' is not in {}",
                file.display(),
                parsed.client,
                policy_path.display()
            );
            assert!(
                parsed.command.starts_with(INSTALLED_GATE),
                "{}: {}",
                file.display(),
                parsed.command
            );
            assert!(
                !parsed.options.contains("--policy"),
                "{}: examples use the default policy path",
                file.display()
            );
            assert!(!parsed.key_type.is_empty());
            assert!(
                generated.iter().any(|g| g == line),
                "{}: this line is not what `rsync-gate authorized-keys` prints for {}:\n  {line}\nit prints:\n  {}",
                file.display(),
                policy_path.display(),
                generated.join("\n  ")
            );
        }
    }
    assert!(lines_seen >= 5, "only {lines_seen} authorized_keys lines");
}

#[test]
fn demo_script_parses() {
    let demo = repo().join("examples/demo.sh");
    let out = Command::new("bash")
        .arg("-n")
        .arg(&demo)
        .output()
        .expect("run bash -n");
    assert!(
        out.status.success(),
        "bash -n {}: {}",
        demo.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = read(&demo);
    assert!(text.starts_with("#!/usr/bin/env bash\n"));
    assert!(text.contains("set -euo pipefail"));
    assert!(text.contains("trap cleanup EXIT"));
}

/// The first line of the first fenced block after `heading` in `markdown`.
fn first_code_line_after(markdown: &str, heading: &str) -> String {
    let section = markdown
        .split_once(heading)
        .unwrap_or_else(|| panic!("no heading {heading:?}"))
        .1;
    let blocks = code_blocks(section);
    let block = blocks
        .first()
        .unwrap_or_else(|| panic!("no code block after {heading:?}"));
    block.lines().next().unwrap_or_default().trim().to_string()
}

/// The last line of a shell script that is neither blank nor a comment.
fn last_command(script: &str) -> String {
    script
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or_default()
        .to_string()
}

/// The commands of a shell script: its lines that are neither blank nor a
/// comment.
fn commands(script: &str) -> Vec<&str> {
    script
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

#[test]
fn readme_test_command_is_what_ci_runs() {
    let readme = read(&repo().join("README.md"));
    let ci = read(&repo().join(".ci/run"));
    let documented = first_code_line_after(&readme, "\n## Running the tests\n");
    assert_eq!(documented, "cargo test --locked");
    // .ci/run runs exactly the README's test command, then only the
    // package step the README describes there too.
    let commands = commands(&ci);
    let after: Vec<&str> = commands
        .iter()
        .skip_while(|c| **c != documented)
        .skip(1)
        .copied()
        .collect();
    assert!(
        commands.contains(&documented.as_str()),
        ".ci/run must run exactly the README's test command"
    );
    assert_eq!(
        after,
        [
            "cargo deb --version >/dev/null 2>&1 || cargo install cargo-deb --locked --version 3.8.0",
            "bash tools/package-test",
        ],
        ".ci/run: after the test command, only the package step"
    );
    assert_eq!(last_command(&ci), "bash tools/package-test");
    let running = readme
        .split_once("\n## Running the tests\n")
        .unwrap()
        .1
        .split("\n## ")
        .next()
        .unwrap();
    assert!(
        running.contains("tools/package-test"),
        "README.md, \"Running the tests\", must describe the package step"
    );
    assert!(ci.starts_with("#!/usr/bin/env bash\n"));
    assert!(ci.contains("set -euo pipefail"));
    let demo = first_code_line_after(&readme, "\n## Quick demo\n");
    assert_eq!(demo, "./examples/demo.sh");
}

/// The contents of every fenced code block in `markdown`.
fn code_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        if line.starts_with("```") {
            match current.take() {
                Some(block) => blocks.push(block),
                None => current = Some(String::new()),
            }
        } else if let Some(block) = current.as_mut() {
            block.push_str(line);
            block.push('\n');
        }
    }
    blocks
}

/// Fenced blocks that start with `$ rsync-gate audit --log audit.jsonl`:
/// (arguments, expected output).
fn audit_blocks(markdown: &str) -> Vec<(Vec<String>, String)> {
    code_blocks(markdown)
        .iter()
        .filter_map(|block| {
            let rest = block.strip_prefix("$ rsync-gate audit --log audit.jsonl")?;
            let (args, expected) = rest.split_once('\n').unwrap_or((rest, ""));
            let args = args.split_whitespace().map(str::to_string).collect();
            Some((args, expected.to_string()))
        })
        .collect()
}

#[test]
fn audit_examples_print_what_the_readmes_say() {
    let dir = repo().join("examples/audit-review");
    let (records, bad) =
        rsync_gate::audit::review::read(&dir.join("audit.jsonl"), &Default::default()).unwrap();
    assert_eq!(bad, 0, "the sample audit log has unreadable lines");
    assert!(records.len() >= 10);
    let mut checked = 0;
    for doc in [repo().join("README.md"), dir.join("README.md")] {
        for (args, expected) in audit_blocks(&read(&doc)) {
            let out = Command::new(gate_bin())
                .current_dir(&dir)
                .args(["audit", "--log", "audit.jsonl"])
                .args(&args)
                .output()
                .unwrap();
            assert!(out.status.success(), "audit {args:?} failed");
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                expected,
                "{}: `rsync-gate audit --log audit.jsonl {}` prints something else",
                doc.display(),
                args.join(" ")
            );
            checked += 1;
        }
    }
    assert!(checked >= 6, "only {checked} audit examples found");
}

fn every_refusal() -> Vec<DenyReason> {
    DenyReason::examples()
}

#[test]
fn every_refusal_code_is_documented() {
    let readme = read(&repo().join("README.md"));
    let codes: BTreeSet<&str> = every_refusal().iter().map(DenyReason::code).collect();
    assert!(codes.len() >= 40, "{codes:?}");
    for code in codes {
        assert!(
            readme.contains(&format!("| `{code}` |")),
            "README.md's refusal table has no row for `{code}`"
        );
    }
}

/// Issue 12: the set-up recipes (README.md, examples/*/README.md) never
/// empty an existing log (`install ... /dev/null LOG` truncates it unless
/// guarded by `[ -e LOG ] ||`), give each account its own tmpfiles.d file,
/// and install the binary built with `cargo build --release --locked`.
#[test]
fn setup_recipes_are_safe_on_a_shared_server() {
    let mut docs = vec![repo().join("README.md")];
    docs.extend(files_under(&repo().join("examples"), &|n| n == "README.md"));
    let mut installs = 0;
    for doc in &docs {
        for block in code_blocks(&read(doc)) {
            for line in block.lines() {
                // (a fix `check` prints counts as a recipe too)
                let line = line.trim_start();
                let line = line.strip_prefix("fix: ").unwrap_or(line);
                if let Some(i) = line.find("/dev/null ") {
                    if !line[..i].contains("install ") {
                        continue;
                    }
                    installs += 1;
                    let target = line[i + "/dev/null ".len()..].trim();
                    assert!(
                        line.starts_with(&format!("[ -e {target} ] || install ")),
                        "{}: this would empty an existing {target}:\n  {line}",
                        doc.display()
                    );
                }
                if line.contains("> /etc/tmpfiles.d/") {
                    assert!(
                        !line.contains("/etc/tmpfiles.d/rsync-gate.conf"),
                        "{}: one tmpfiles.d file for every account:\n  {line}",
                        doc.display()
                    );
                }
            }
        }
    }
    assert!(installs >= 5, "only {installs} log installs seen");
    let readme = read(&repo().join("README.md"));
    let binary = readme
        .split_once("\n### 1. The binary\n")
        .and_then(|(_, rest)| rest.split_once("\n#### With cargo\n"))
        .map(|(_, rest)| code_blocks(rest))
        .unwrap_or_default();
    assert_eq!(
        binary.first().map(String::as_str),
        Some(
            "cargo build --release --locked\n\
             install -o root -g root -m 0755 target/release/rsync-gate /usr/local/bin/rsync-gate\n"
        )
    );
}

#[test]
fn crontab_example_has_no_bare_percent() {
    // cron turns an unescaped % into a newline.
    let crontab = read(&repo().join("examples/pull-mirror/crontab"));
    for line in crontab.lines().filter(|l| !l.starts_with('#')) {
        assert!(!line.contains('%'), "unescaped % in: {line}");
        if !line.trim().is_empty() {
            assert!(line.contains("flock -n"), "{line}");
        }
    }
}
