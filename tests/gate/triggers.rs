//! Triggers (push mirroring) through the gate binary, with a stand-in job
//! that writes down each run: when it started and ended, its words, its
//! environment, descriptors and session. What these tests hold the gate to:
//! - at most one run of a trigger's job at a time; triggers that arrive
//!   during a run give exactly one more run, with the latest words;
//! - every trigger is answered at once (one line on stderr, exit 0), long
//!   before the job ends, and is audited (started / queued / refused), as
//!   is each run's end;
//! - a job that crashes, is killed, times out or whose supervisor is killed
//!   blocks nothing;
//! - the job gets an environment built from nothing, `/dev/null` for stdin,
//!   no descriptor of the SSH session, and a session of its own.
//!
//! The end-to-end test with Debian's runmirrors and ftpsync behind the real
//! sshd is tests/gate/ftpsync.rs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use crate::common::{self, World};

/// The stand-in job: one line per start and end in `runs`, its environment,
/// descriptors and session ids in `env.<pid>`, `fds.<pid>` and
/// `ids.<pid>`. The first word picks a behaviour: `sync:archive:crash`
/// kills itself with SIGKILL, `sync:archive:fail` exits 3,
/// `sync:archive:hang` sleeps long; otherwise it sleeps `$JOB_SLEEP`
/// seconds (the trigger's `env`).
fn job_script(out: &Path) -> String {
    let o = out.display();
    format!(
        r#"#!/bin/sh
echo "start $$ $(date +%s%N) $*" >> {o}/runs
env > {o}/env.$$
ls /proc/self/fd > {o}/fds.$$
readlink /proc/$$/fd/0 > {o}/stdin.$$
echo "$(cut -d' ' -f5,6 /proc/$$/stat) $(pwd)" > {o}/ids.$$
echo "job output from $$"
case "$1" in
sync:archive:crash) kill -KILL $$ ;;
sync:archive:fail) echo "end $$ $(date +%s%N)" >> {o}/runs; exit 3 ;;
sync:archive:hang) sleep 60 ;;
esac
sleep "$JOB_SLEEP"
echo "end $$ $(date +%s%N)" >> {o}/runs
"#
    )
}

/// A world with trigger `mirror` (the stand-in job, words `sync:all`,
/// `sync:stage1`, `sync:archive:*`), trigger `plain` (the same job, no
/// args) and clients `upstream`, `plainup`.
struct Trig {
    w: World,
    out: PathBuf,
    log: PathBuf,
}

impl Trig {
    fn new(sleep: &str, timeout: Option<&str>) -> Trig {
        let w = World::new();
        let out = w.root.join("job-out");
        std::fs::create_dir(&out).unwrap();
        let job = w.root.join("bin/job");
        common::install_exec(&job, &job_script(&out));
        let log = w.root.join("log/trigger-mirror.log");
        let timeout = timeout
            .map(|t| format!("timeout = \"{t}\"\n"))
            .unwrap_or_default();
        w.write_policy(&format!(
            r#"
[triggers.mirror]
command = ["{job}"]
args = ["sync:all", "sync:stage1", "sync:archive:*"]
log = "{log}"
env = {{ JOB_SLEEP = "{sleep}", MAILTO = "mirror-admin@example.org" }}
{timeout}
[triggers.plain]
command = ["{job}", "fixed"]
env = {{ JOB_SLEEP = "0" }}

[clients.upstream]
trigger = "mirror"
key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJV8g8VxUBrcTr2skBQNb4USpwqq8PhBoHjS4TSew5PQ archive-master"
from = ["127.0.0.1", "192.0.2.50"]

[clients.plainup]
trigger = "plain"
"#,
            job = job.display(),
            log = log.display(),
        ));
        Trig { w, out, log }
    }

    /// Fire: the gate's answer and how long it took.
    fn fire(&self, client: &str, words: &str) -> (Output, Duration) {
        self.fire_env(client, words, &[])
    }

    fn fire_env(&self, client: &str, words: &str, env: &[(&str, &str)]) -> (Output, Duration) {
        let t = Instant::now();
        let o = self.w.serve(client, Some(words.as_bytes()), env);
        (o, t.elapsed())
    }

    /// The runs so far: (pid, start ns, end ns if it ended, words).
    fn runs(&self) -> Vec<Run> {
        let text = std::fs::read_to_string(self.out.join("runs")).unwrap_or_default();
        let mut runs: Vec<Run> = Vec::new();
        for line in text.lines() {
            let mut f = line.splitn(4, ' ');
            let (kind, pid, ns) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
            let ns: u128 = ns.parse().unwrap();
            match kind {
                "start" => runs.push(Run {
                    pid: pid.to_string(),
                    start: ns,
                    end: None,
                    words: f.next().unwrap_or("").to_string(),
                }),
                _ => {
                    let r = runs.iter_mut().find(|r| r.pid == pid).unwrap();
                    r.end = Some(ns);
                }
            }
        }
        runs
    }

    fn records(&self, event: &str) -> Vec<serde_json::Value> {
        self.w
            .audit_records()
            .into_iter()
            .filter(|r| r["event"] == event)
            .collect()
    }

    /// Wait until `n` runs have ended (audit end records), at most `limit`.
    fn wait_ends(&self, n: usize, limit: Duration) -> Vec<serde_json::Value> {
        let t = Instant::now();
        loop {
            let ends = self.records("end");
            if ends.len() >= n {
                return ends;
            }
            assert!(
                t.elapsed() < limit,
                "{} of {n} trigger runs ended within {limit:?}; audit log:\n{}",
                ends.len(),
                std::fs::read_to_string(&self.w.audit).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait until the job has started `n` times.
    fn wait_starts(&self, n: usize) {
        let t = Instant::now();
        while self.runs().len() < n {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "the job did not start"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// No supervisor runs: the trigger's run lock is free.
    fn settled(&self, name: &str) -> bool {
        let lock = self.w.run.join("triggers").join(name).join("run.lock");
        let f = std::fs::File::open(lock).unwrap();
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).is_ok()
    }
}

#[derive(Debug)]
struct Run {
    pid: String,
    start: u128,
    end: Option<u128>,
    words: String,
}

/// The gate's stderr, without the dynamic loader's complaint about a
/// bogus `LD_PRELOAD` given to the gate itself.
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| !l.starts_with("ERROR: ld.so:"))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn assert_answer(o: &Output, want: &str) {
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(o));
    assert_eq!(stderr(o), format!("rsync-gate: trigger 'mirror' {want}\n"));
    assert!(o.stdout.is_empty(), "the gate wrote to stdout");
}

/// The job's run time, and the bound every answer must be well under.
const JOB: Duration = Duration::from_secs(1);
const ANSWER: Duration = Duration::from_millis(400);

#[test]
fn five_triggers_during_a_run_give_exactly_one_more_run_with_the_latest_words() {
    let t = Trig::new("1", None);
    let mut answers = Vec::new();
    let (o, took) = t.fire("upstream", "sync:archive:a1 sync:all");
    assert_answer(&o, "started");
    answers.push(took);
    // The four others arrive while the first run goes on.
    t.wait_starts(1);
    for i in 2..=5 {
        let (o, took) = t.fire("upstream", &format!("sync:archive:a{i} sync:all"));
        assert_answer(&o, "queued");
        answers.push(took);
    }
    let during = t.runs();
    assert_eq!(
        during.len(),
        1,
        "a second run started during the first: {during:?}"
    );
    assert!(
        during[0].end.is_none(),
        "the first run ended before the burst was over"
    );
    let ends = t.wait_ends(2, Duration::from_secs(15));
    let runs = t.runs();
    assert_eq!(
        runs.len(),
        2,
        "five triggers in one run give two runs: {runs:?}"
    );
    assert_eq!(runs[0].words, "sync:archive:a1 sync:all");
    assert_eq!(
        runs[1].words, "sync:archive:a5 sync:all",
        "the second run has the latest words"
    );
    let first_end = runs[0].end.expect("the first run ended");
    assert!(
        first_end <= runs[1].start,
        "the runs overlap: the second started {} ms before the first ended",
        (first_end - runs[1].start) / 1_000_000
    );
    for (i, a) in answers.iter().enumerate() {
        assert!(
            *a < ANSWER,
            "trigger {} took {a:?} to answer (the job runs {JOB:?})",
            i + 1
        );
    }

    // The audit log: one started, four queued, with their words; two ends.
    let decisions = t.records("decision");
    let states: Vec<&str> = decisions
        .iter()
        .map(|r| r["trigger"]["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["started", "queued", "queued", "queued", "queued"]);
    for (i, d) in decisions.iter().enumerate() {
        assert_eq!(d["decision"], "allow");
        assert_eq!(d["mode"], "trigger");
        assert_eq!(d["client"], "upstream");
        assert_eq!(d["trigger"]["name"], "mirror");
        let archive = format!("sync:archive:a{}", i + 1);
        assert_eq!(
            d["trigger"]["words"],
            serde_json::json!([archive, "sync:all"])
        );
        assert_eq!(d["argv"][1], archive.as_str());
    }
    let session = |i: usize| decisions[i]["session"].clone();
    assert_eq!(
        ends[0]["session"],
        session(0),
        "the first run is the first trigger's"
    );
    assert_eq!(
        ends[1]["session"],
        session(4),
        "the second run is the last trigger's"
    );
    assert_eq!(
        ends[1]["trigger"]["superseded"],
        serde_json::json!([session(1), session(2), session(3)]),
        "the second run answers the triggers it replaced"
    );
    assert_eq!(ends[1]["trigger"]["superseded_total"], 3);
    assert!(ends[0]["trigger"].get("superseded").is_none());
    for e in &ends {
        assert_eq!(e["mode"], "trigger");
        assert_eq!(e["exit_status"], 0);
        let ms = e["duration_ms"].as_u64().unwrap();
        assert!((1000..5000).contains(&ms), "a one-second run took {ms} ms");
    }
    // Both runs' output went to the trigger's log.
    let log = std::fs::read_to_string(&t.log).unwrap();
    for r in &runs {
        assert!(
            log.contains(&format!("job output from {}", r.pid)),
            "log: {log}"
        );
    }

    // A later trigger starts a third run.
    let t0 = Instant::now();
    while !t.settled("mirror") {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the supervisor did not exit"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let (o, _) = t.fire("upstream", "sync:all");
    assert_answer(&o, "started");
    t.wait_ends(3, Duration::from_secs(15));
    let runs = t.runs();
    assert_eq!(runs.len(), 3);
    assert_eq!(runs[2].words, "sync:all");

    let ms: Vec<String> = answers
        .iter()
        .map(|a| format!("{:.1}", a.as_secs_f64() * 1000.0))
        .collect();
    eprintln!(
        "coalescing: answers {} ms; runs {:?} ms apart; audit:\n{}",
        ms.join(", "),
        (runs[1].start - runs[0].end.unwrap()) / 1_000_000,
        std::fs::read_to_string(&t.w.audit).unwrap()
    );
}

#[test]
fn a_burst_loses_nothing_and_never_overlaps() {
    let t = Trig::new("1", None);
    let mut sessions = Vec::new();
    for i in 1..=8 {
        let (o, _) = t.fire("upstream", &format!("sync:archive:b{i}"));
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        sessions.push(t.w.last_decision()["session"].clone());
    }
    let burst_over = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    // However the burst fell, the last words run last, and every trigger
    // is answered by a run: its own, or the one that replaced it.
    let decisions = t.records("decision");
    let started = decisions
        .iter()
        .filter(|d| d["trigger"]["state"] == "started")
        .count();
    assert_eq!(started, 1, "one supervisor for the whole burst");
    let t0 = Instant::now();
    let ends = loop {
        let ends = t.records("end");
        if ends.iter().any(|e| e["session"] == sessions[7]) {
            break ends;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "the last trigger never ran"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let runs = t.runs();
    // A burst that ended during the first run gives at most two runs (on a
    // very busy machine it may outlast a run, and then give more).
    if runs
        .first()
        .and_then(|r| r.end)
        .is_some_and(|end| burst_over < end)
    {
        assert!(
            runs.len() <= 2,
            "a burst during one run gives at most two: {runs:?}"
        );
    }
    assert_eq!(runs.last().unwrap().words, "sync:archive:b8");
    for pair in runs.windows(2) {
        assert!(
            pair[0].end.unwrap() <= pair[1].start,
            "runs overlap: {runs:?}"
        );
    }
    let mut answered: Vec<serde_json::Value> = Vec::new();
    for e in &ends {
        answered.push(e["session"].clone());
        if let Some(s) = e["trigger"]["superseded"].as_array() {
            answered.extend(s.iter().cloned());
        }
    }
    for s in &sessions {
        assert!(
            answered.contains(s),
            "trigger {s} was answered by no run: {ends:?}"
        );
    }
    assert_eq!(
        answered.len(),
        sessions.len(),
        "a trigger answered twice: {ends:?}"
    );
}

#[test]
fn a_crashed_failed_or_killed_job_blocks_nothing() {
    let t = Trig::new("0", None);
    // The job kills itself.
    let (o, _) = t.fire("upstream", "sync:archive:crash");
    assert_answer(&o, "started");
    let ends = t.wait_ends(1, Duration::from_secs(10));
    assert_eq!(ends[0]["signal"], 9, "{}", ends[0]);
    assert!(ends[0].get("exit_status").is_none());
    // A failing job: its exit status is recorded.
    let (o, _) = t.fire("upstream", "sync:archive:fail");
    assert_answer(&o, "started");
    let ends = t.wait_ends(2, Duration::from_secs(10));
    assert_eq!(ends[1]["exit_status"], 3);
    // A job killed from outside, while a trigger waits behind it: the
    // pending run still runs.
    let (o, _) = t.fire("upstream", "sync:archive:hang");
    assert_answer(&o, "started");
    t.wait_starts(3);
    let (o, _) = t.fire("upstream", "sync:all");
    assert_answer(&o, "queued");
    let hung = t.runs()[2].pid.clone();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(hung.parse().unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let ends = t.wait_ends(4, Duration::from_secs(10));
    assert_eq!(ends[2]["signal"], 9);
    assert_eq!(ends[3]["exit_status"], 0);
    assert_eq!(t.runs()[3].words, "sync:all");
}

/// The supervisor itself killed (say, by an administrator): its job is
/// stopped with it (SIGTERM), nothing stays locked, and the next trigger
/// starts a run of its own.
#[test]
fn a_killed_supervisor_takes_its_job_along_and_blocks_nothing() {
    let t = Trig::new("0", None);
    let (o, _) = t.fire_env(
        "upstream",
        "sync:archive:hang",
        &[
            ("LD_PRELOAD", "/nonexistent/evil.so"),
            ("SSH_AUTH_SOCK", "/tmp/agent"),
        ],
    );
    assert_answer(&o, "started");
    t.wait_starts(1);
    let job: i32 = t.runs()[0].pid.parse().unwrap();
    let supervisor = parent_of(job);
    assert_ne!(supervisor, std::process::id() as i32);
    let cmdline = std::fs::read(format!("/proc/{supervisor}/cmdline")).unwrap();
    assert!(
        String::from_utf8_lossy(&cmdline).contains("trigger-run"),
        "the job's parent is not the supervisor"
    );
    // The supervisor, too, has nothing of the SSH session's environment.
    let environ = std::fs::read(format!("/proc/{supervisor}/environ")).unwrap();
    let mut names: Vec<String> = environ
        .split(|&b| b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v.split(|&b| b == b'=').next().unwrap()).into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["HOME", "PATH"], "the supervisor's environment");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(supervisor),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let t0 = Instant::now();
    while std::path::Path::new(&format!("/proc/{job}")).exists() && !is_zombie(job) {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the job runs on without its supervisor"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let (o, _) = t.fire("upstream", "sync:all");
    assert_answer(&o, "started");
    let ends = t.wait_ends(1, Duration::from_secs(10));
    assert_eq!(ends[0]["exit_status"], 0);
    assert_eq!(t.runs().last().unwrap().words, "sync:all");
}

fn stat_fields(pid: i32) -> Vec<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    s.rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

fn parent_of(pid: i32) -> i32 {
    stat_fields(pid)[1].parse().unwrap()
}

fn is_zombie(pid: i32) -> bool {
    stat_fields(pid).first().is_some_and(|s| s == "Z")
}

#[test]
fn a_refused_word_starts_nothing() {
    let t = Trig::new("0", None);
    for (words, code) in [
        ("sync:all sync:bogus", "trigger_word_refused"),
        ("sync:archive:../etc", "trigger_word_refused"),
        ("sync:all --rsh=sh", "trigger_word_refused"),
        (&"sync:all ".repeat(17), "trigger_too_large"),
    ] {
        let (o, _) = t.fire("upstream", words);
        assert_eq!(o.status.code(), Some(1), "{words}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.starts_with("rsync-gate: denied: ") && err.lines().count() == 1,
            "{words}: {err}"
        );
        let d = t.w.last_decision();
        assert_eq!(d["decision"], "deny");
        assert_eq!(d["reason"]["code"], code);
        assert_eq!(d["mode"], "trigger");
        assert_eq!(d["trigger"]["name"], "mirror");
        assert_eq!(d["trigger"]["state"], "refused");
    }
    let d = t.w.audit_records();
    assert_eq!(
        d[0]["trigger"]["words"],
        serde_json::json!(["sync:all", "sync:bogus"])
    );
    // Too many words: none recorded in the trigger part (the command is).
    assert!(d[3]["trigger"].get("words").is_none());
    std::thread::sleep(Duration::from_millis(300));
    assert!(t.runs().is_empty(), "a refused trigger ran the job");
    assert!(
        !t.w.run.join("triggers/mirror/pending").exists(),
        "a refused trigger left a pending run"
    );
    assert!(t.records("end").is_empty());
}

#[test]
fn the_job_gets_an_environment_built_from_nothing_and_a_session_of_its_own() {
    let t = Trig::new("0", None);
    let (o, _) = t.fire_env(
        "upstream",
        "sync:all",
        &[
            ("LD_PRELOAD", "/nonexistent/evil.so"),
            ("MAILTO", "attacker@example.org"),
            ("JOB_SLEEP", "60"),
            ("SSH_AUTH_SOCK", "/tmp/agent"),
            ("HOME", "/tmp/evil-home"),
        ],
    );
    assert_answer(&o, "started");
    t.wait_ends(1, Duration::from_secs(10));
    let run = &t.runs()[0];
    let env: BTreeMap<String, String> =
        std::fs::read_to_string(t.out.join(format!("env.{}", run.pid)))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    let account = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .unwrap()
        .unwrap();
    let home = account.dir.to_string_lossy().into_owned();
    let mut want: BTreeMap<String, String> = [
        ("PATH", "/usr/bin:/bin"),
        ("HOME", home.as_str()),
        ("USER", account.name.as_str()),
        ("LOGNAME", account.name.as_str()),
        ("JOB_SLEEP", "0"),
        ("MAILTO", "mirror-admin@example.org"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    // What /bin/sh adds by itself.
    for k in ["PWD", "OLDPWD", "SHLVL", "_"] {
        if let Some(v) = env.get(k) {
            want.insert(k.to_string(), v.clone());
        }
    }
    assert_eq!(env, want, "the job's environment");
    // stdin is /dev/null; no descriptor but 0, 1, 2 (and the one ls opens
    // to read the list): none of the gate's, the supervisor's or sshd's.
    let stdin = std::fs::read_to_string(t.out.join(format!("stdin.{}", run.pid))).unwrap();
    assert_eq!(stdin.trim(), "/dev/null");
    let fds: Vec<String> = std::fs::read_to_string(t.out.join(format!("fds.{}", run.pid)))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        fds,
        ["0", "1", "2", "3"],
        "the job's descriptors (3 is ls's own)"
    );
    // Its own process group, in a session that is not ours; cwd = HOME.
    let ids = std::fs::read_to_string(t.out.join(format!("ids.{}", run.pid))).unwrap();
    let mut f = ids.split_whitespace();
    let (pgrp, sid, cwd) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
    assert_eq!(pgrp, run.pid, "the job leads its own process group");
    let our_sid = stat_fields(std::process::id() as i32)[4].clone();
    assert_ne!(sid, our_sid, "the job is in the SSH session's session");
    assert_eq!(Path::new(cwd), Path::new(&home));
}

#[test]
fn a_trigger_without_args_records_words_and_passes_none() {
    let t = Trig::new("0", None);
    let o =
        t.w.serve("plainup", Some(b"sync:archive:debian sync:all"), &[]);
    assert_eq!(stderr(&o), "rsync-gate: trigger 'plain' started\n");
    let d = t.w.last_decision();
    assert_eq!(
        d["trigger"]["words"],
        serde_json::json!(["sync:archive:debian", "sync:all"])
    );
    t.wait_ends(1, Duration::from_secs(10));
    assert_eq!(t.runs()[0].words, "fixed", "the job got the client's words");
}

#[test]
fn no_command_and_true() {
    let t = Trig::new("0", None);
    // `true` probes and runs nothing.
    let o = t.w.serve("upstream", Some(b"true"), &[]);
    assert_eq!(o.status.code(), Some(0));
    assert!(o.stderr.is_empty());
    assert_eq!(t.w.last_decision()["mode"], "probe");
    // No command at all fires the trigger with no words.
    let o = t.w.serve("upstream", None, &[]);
    assert_answer(&o, "started");
    t.wait_ends(1, Duration::from_secs(10));
    assert_eq!(t.runs().len(), 1);
    assert_eq!(t.runs()[0].words, "");
}

#[test]
fn the_timeout_stops_the_job_and_its_children() {
    let t = Trig::new("0", Some("1s"));
    let (o, _) = t.fire("upstream", "sync:archive:hang");
    assert_answer(&o, "started");
    let ends = t.wait_ends(1, Duration::from_secs(20));
    let e = &ends[0];
    assert_eq!(e["trigger"]["timed_out"], true, "{e}");
    assert_eq!(e["signal"], 15, "{e}");
    let ms = e["duration_ms"].as_u64().unwrap();
    assert!(
        (1000..5000).contains(&ms),
        "a 1s timeout stopped the job after {ms} ms"
    );
    // Its `sleep 60` child went with the group.
    let leftovers = std::process::Command::new("pgrep")
        .args(["-f", "^sleep 60$"])
        .output()
        .unwrap();
    let mine: Vec<String> = String::from_utf8_lossy(&leftovers.stdout)
        .lines()
        .filter(|p| {
            std::fs::read_link(format!("/proc/{p}/cwd")).is_ok_and(|c| c == Path::new("/root"))
                && stat_fields(p.parse().unwrap())
                    .get(2)
                    .is_some_and(|g| *g == t.runs()[0].pid)
        })
        .map(str::to_string)
        .collect();
    assert!(
        mine.is_empty(),
        "the job's children outlived the timeout: {mine:?}"
    );
}

#[test]
fn a_missing_job_is_a_check_error_and_an_audited_failure() {
    let w = World::new();
    w.write_policy(
        r#"
[triggers.gone]
command = ["/nonexistent/ftpsync"]
[clients.upstream]
trigger = "gone"
"#,
    );
    let o = std::process::Command::new(common::gate_bin())
        .args(["check", "--policy"])
        .arg(&w.policy)
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0), "check accepted a missing job");
    let err = String::from_utf8_lossy(&o.stdout);
    assert!(err.contains("/nonexistent/ftpsync"), "check: {err}");
    // At run time: answered, then the run's end says why it failed.
    let o = w.serve("upstream", Some(b"sync:all"), &[]);
    assert_eq!(stderr(&o), "rsync-gate: trigger 'gone' started\n");
    let t0 = Instant::now();
    let end = loop {
        if let Some(e) = w.audit_records().into_iter().find(|r| r["event"] == "end") {
            break e;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no end record: the run hangs"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(end["reason"]["code"], "internal", "{end}");
    let detail = end["reason"]["detail"].to_string();
    assert!(detail.contains("cannot run /nonexistent/ftpsync"), "{end}");
}

#[test]
fn explain_says_started_or_queued_with_argv_and_environment() {
    let t = Trig::new("1", None);
    let explain = || {
        let o = std::process::Command::new(common::gate_bin())
            .args(["explain", "--json", "--policy"])
            .arg(&t.w.policy)
            .args([
                "--client",
                "upstream",
                "--connection",
                "127.0.0.1 40000 127.0.0.1 22",
            ])
            .args(["--", "sync:archive:x sync:all"])
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let e = explain();
    assert_eq!(e["mode"], "trigger");
    let job = t.w.root.join("bin/job");
    assert_eq!(
        e["argv"],
        serde_json::json!([job.to_str().unwrap(), "sync:archive:x", "sync:all"])
    );
    let env = e["env"].as_array().unwrap();
    assert!(env.contains(&serde_json::json!("JOB_SLEEP=1")), "{env:?}");
    assert!(
        env.contains(&serde_json::json!("PATH=/usr/bin:/bin")),
        "{env:?}"
    );
    let notes = e["notes"].to_string();
    assert!(notes.contains("would be started now"), "{notes}");
    // explain starts nothing.
    std::thread::sleep(Duration::from_millis(200));
    assert!(t.runs().is_empty());
    // While a run goes on, it would be queued.
    let (o, _) = t.fire("upstream", "sync:all");
    assert_answer(&o, "started");
    t.wait_starts(1);
    let notes = explain()["notes"].to_string();
    assert!(notes.contains("would be queued"), "{notes}");
    t.wait_ends(1, Duration::from_secs(10));
}

#[test]
fn authorized_keys_has_the_trigger_client_line() {
    let t = Trig::new("0", None);
    let o = std::process::Command::new(common::gate_bin())
        .args(["authorized-keys", "--policy"])
        .arg(&t.w.policy)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let line = text
        .lines()
        .find(|l| l.contains("--client upstream"))
        .unwrap_or_else(|| panic!("no line for client upstream:\n{text}"));
    assert!(line.contains(" serve --policy "), "{line}");
    assert!(
        line.starts_with("restrict,from=\"127.0.0.1,192.0.2.50\",command=\""),
        "{line}"
    );
    assert!(line.ends_with(" archive-master"), "{line}");
    assert_eq!(
        text.lines().count(),
        1,
        "only clients with a key get a line:\n{text}"
    );
}
