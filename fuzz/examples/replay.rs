//! Replay inputs through the same checks as the fuzz targets, without
//! libFuzzer, and summarise the outcomes:
//!
//! `cargo run --release --example replay -- [--lexical | --inband] FILE_OR_DIR...`
//!
//! Without `--lexical` the pipeline target's tree and policy are used;
//! `--inband` replays inputs of the `inband` target (the lexical policy).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rsync_gate::decide::Decision;
use rsync_gate::pipeline::evaluate::{self, Evaluation};
use rsync_gate_fuzz::{Tree, check_one, select};

fn inputs(p: &Path, out: &mut Vec<PathBuf>) {
    match std::fs::read_dir(p) {
        Ok(entries) => {
            for e in entries.flatten() {
                inputs(&e.path(), out);
            }
        }
        Err(_) => out.push(p.to_path_buf()),
    }
}

fn main() {
    let mut lexical = false;
    let mut inband = false;
    let mut files = Vec::new();
    for a in std::env::args().skip(1) {
        if a == "--lexical" {
            lexical = true;
        } else if a == "--inband" {
            inband = true;
        } else {
            inputs(Path::new(&a), &mut files);
        }
    }
    files.sort();
    if inband {
        return replay_inband(&files);
    }
    let tree = (!lexical).then(Tree::get);
    let policy = match &tree {
        Some(t) => t.policy.clone(),
        None => rsync_gate_fuzz::lexical_policy(),
    };
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut failed = 0;
    for f in &files {
        let Ok(data) = std::fs::read(f) else { continue };
        let (sel, cmd) = select(&data);
        let decision = match check_one(&policy, tree.as_ref(), &sel, cmd) {
            Ok(c) => c.decision,
            Err(e) => {
                failed += 1;
                println!("VIOLATION {}: {e}", f.display());
                continue;
            }
        };
        let outcome = match decision {
            Decision::Deny(r) => format!("deny {}", r.code()),
            Decision::Probe => "probe".into(),
            Decision::Daemon(_) => "daemon".into(),
            Decision::InBand(_) => "in-band".into(),
            Decision::Trigger(g) => format!("trigger {}", g.trigger),
            Decision::Checked(g) => match &tree {
                None => format!("grant {}", g.mode.name()),
                Some(t) => {
                    let conn = sel.connection();
                    let inputs = sel.inputs(&policy, &t.account, conn.as_ref());
                    let parsed = rsync_gate::request::parse_command(cmd);
                    match evaluate::evaluate(&inputs, parsed.as_ref()) {
                        Evaluation::Run(_) => format!("allow {} {}", g.mode.name(), g.module),
                        Evaluation::Refused(r) => {
                            format!("grant {}, confine deny {}", g.mode.name(), r.reason.code())
                        }
                        other => format!("grant {}, then {other:?}", g.mode.name()),
                    }
                }
            },
        };
        *outcomes.entry(outcome).or_default() += 1;
    }
    for (k, v) in &outcomes {
        println!("{v:8} {k}");
    }
    println!("{} inputs, {failed} violations", files.len());
    if failed > 0 {
        std::process::exit(1);
    }
}

/// The `inband` target's checks over `files`, with a summary of decisions.
fn replay_inband(files: &[PathBuf]) {
    let policy = rsync_gate_fuzz::lexical_policy();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut failed = 0;
    for f in files {
        let Ok(data) = std::fs::read(f) else { continue };
        let (sel, rest) = select(&data);
        let (m, rest) = rest.split_first().map_or((0, rest), |(m, r)| (*m, r));
        let (flags, rest) = rest.split_first().map_or((0, rest), |(f, r)| (*f, r));
        let module = rsync_gate_fuzz::inband_module(&policy, m);
        let argv = rsync_gate_fuzz::inband_argv(flags & 1 == 1, rest);
        match rsync_gate_fuzz::check_inband(&policy, &sel, &module, &argv) {
            Ok(Decision::Deny(r)) => {
                *outcomes.entry(format!("deny {}", r.code())).or_default() += 1
            }
            Ok(Decision::InBand(g)) => {
                *outcomes
                    .entry(format!("allow {} {}", g.mode.name(), g.module))
                    .or_default() += 1;
            }
            Ok(other) => *outcomes.entry(format!("{other:?}")).or_default() += 1,
            Err(e) => {
                failed += 1;
                println!("VIOLATION {}: {e}", f.display());
            }
        }
    }
    for (k, v) in &outcomes {
        println!("{v:8} {k}");
    }
    println!("{} inputs, {failed} violations", files.len());
    if failed > 0 {
        std::process::exit(1);
    }
}
