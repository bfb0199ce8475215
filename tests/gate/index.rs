//! The compiled index (`check --compile`): serve uses it when it is
//! current and root's, and otherwise parses the TOML, saying so at `-v`;
//! `check` warns of an index serve will not use. A stale, untrusted or
//! corrupt index never grants more than the policy.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use rsync_gate::policy::{self, index};

use crate::common::{self, World};
use crate::nonroot::{self, TestAccount};

const PULL: &[u8] = b"rsync --server --sender -logDtpre.iLsfxCIvu . www/";

fn policy_text(extra_client: bool) -> String {
    let mut s =
        String::from("[modules.www]\npath = \"{srv}/www\"\n\n[clients.c]\nmodules = [\"www\"]\n");
    if extra_client {
        s.push_str("\n[clients.extra]\nmodules = [\"www\"]\n");
    }
    s
}

fn gate(args: &[&str], policy: &Path) -> Output {
    Command::new(common::gate_bin())
        .args(args)
        .arg("--policy")
        .arg(policy)
        .stdin(Stdio::null())
        .output()
        .expect("run the gate")
}

fn compile(w: &World) -> Output {
    let out = gate(&["check", "--account", "root", "--compile"], &w.policy);
    assert!(
        out.status.success(),
        "check --compile: {}{}",
        String::from_utf8_lossy(&out.stdout),
        common::stderr(&out)
    );
    out
}

/// `serve -v` for `client`: its output and the decision it recorded.
fn serve_v(w: &World, client: &str) -> (Output, serde_json::Value) {
    let out = Command::new(common::gate_bin())
        .args(["-v", "serve", "--policy"])
        .arg(&w.policy)
        .args(["--client", client])
        .env_clear()
        .env("SSH_CONNECTION", "127.0.0.1 40000 127.0.0.1 22")
        .env(
            "SSH_ORIGINAL_COMMAND",
            std::str::from_utf8(PULL).expect("ascii"),
        )
        .current_dir(&w.client)
        .stdin(Stdio::null())
        .output()
        .expect("run serve");
    (out, w.last_decision())
}

fn world() -> World {
    let w = World::new();
    common::sample_tree(&w.module_dir("www"));
    w
}

#[test]
fn serve_uses_a_current_index_and_check_reports_it() {
    let w = world();
    w.write_policy(&policy_text(false));
    let out = compile(&w);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("wrote ") && said.contains("1 clients"),
        "{said}"
    );
    assert!(index::index_path(&w.policy).exists());
    let (out, d) = serve_v(&w, "c");
    let err = common::stderr(&out);
    assert!(err.contains("from the compiled index"), "{err}");
    assert_eq!(d["decision"], "allow", "{d}");
    // Without -v the gate says nothing of it.
    let out = w.serve("c", Some(PULL), &[]);
    assert!(
        !common::stderr(&out).contains("index"),
        "{}",
        common::stderr(&out)
    );
    assert_eq!(w.last_decision()["decision"], "allow");
    // check has nothing to warn of.
    let out = gate(&["check", "--account", "root"], &w.policy);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("compiled index"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A client removed from the policy after the index was written: the
/// stale index is not used, and the client is refused.
#[test]
fn a_stale_index_is_not_used() {
    let w = world();
    w.write_policy(&policy_text(true));
    compile(&w);
    let (_, d) = serve_v(&w, "extra");
    assert_eq!(d["decision"], "allow", "{d}");
    std::thread::sleep(std::time::Duration::from_millis(20));
    w.write_policy(&policy_text(false));
    let (out, d) = serve_v(&w, "extra");
    let err = common::stderr(&out);
    assert!(err.contains("is not used (it is stale"), "{err}");
    assert_eq!(d["decision"], "deny", "{d}");
    assert_eq!(d["reason"]["code"], "unknown_client", "{d}");
    let out = gate(&["check", "--account", "root"], &w.policy);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("warning: the compiled index") && said.contains("check --compile"),
        "{said}"
    );
    assert!(out.status.success(), "a stale index is a warning: {said}");
}

/// An index that says more than the policy (a client the policy does not
/// have), current in every other way, but written by a non-root account:
/// not used. The same index owned by root would be used, which is what
/// makes the trust check the thing under test.
#[test]
fn an_index_written_by_another_account_is_not_used() {
    if !nonroot::prerequisites() {
        return;
    }
    let w = world();
    w.write_policy(&policy_text(false));
    let mut generous = policy::load(&w.policy, &policy::PlainReader).expect("load");
    let mut extra = generous.clients["c"].clone();
    extra.name = "extra".into();
    generous.clients.insert("extra".into(), extra);
    let bytes = index::build(&generous, &[]).expect("build");
    let path = index::index_path(&w.policy);
    std::fs::write(&path, &bytes).expect("write index");
    common::set_mode(&path, 0o644);
    let homes = tempfile::tempdir().expect("tempdir");
    let account = TestAccount::create(homes.path());
    account.chown(&path);

    let (out, d) = serve_v(&w, "extra");
    let err = common::stderr(&out);
    assert!(err.contains("is not used (it is not trusted"), "{err}");
    assert_eq!(d["reason"]["code"], "unknown_client", "{d}");
    let out = gate(&["check", "--account", "root"], &w.policy);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("not trusted"), "{said}");

    // Root's, the same bytes would be believed.
    std::os::unix::fs::chown(&path, Some(0), Some(0)).expect("chown");
    let (_, d) = serve_v(&w, "extra");
    assert_eq!(d["decision"], "allow", "{d}");
}

/// Truncated, or with bytes flipped where they change what it says: not
/// used, and serve decides from the TOML.
#[test]
fn a_corrupt_index_is_not_used() {
    let w = world();
    w.write_policy(&policy_text(false));
    compile(&w);
    let path = index::index_path(&w.policy);
    let good = std::fs::read(&path).expect("read index");
    let p = policy::load(&w.policy, &policy::PlainReader).expect("load");
    let www = p.modules["www"].clone();
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        ("empty".into(), Vec::new()),
        ("cut in its header".into(), good[..40].to_vec()),
        (
            "cut short by one byte".into(),
            good[..good.len() - 1].to_vec(),
        ),
    ];
    // The module's path, and client c's module list, rewritten in place.
    for (what, from, to) in [
        ("module path", www.path.to_string_lossy().into_owned(), {
            let mut s = www.path.to_string_lossy().into_owned();
            s.pop();
            s.push('X');
            s
        }),
        ("client's module", "www".to_string(), "wwx".to_string()),
    ] {
        let at = good
            .windows(from.len())
            .rposition(|win| win == from.as_bytes())
            .expect("found in the index");
        let mut b = good.clone();
        b[at..at + to.len()].copy_from_slice(to.as_bytes());
        cases.push((what.to_string(), b));
    }
    let mut flipped = good.clone();
    let last = flipped.len() - 3;
    flipped[last] ^= 0x20;
    cases.push(("a flipped byte".into(), flipped));
    for (what, bytes) in cases {
        std::fs::write(&path, &bytes).expect("write index");
        let (out, d) = serve_v(&w, "c");
        let err = common::stderr(&out);
        assert!(err.contains("is not used (it is corrupt"), "{what}: {err}");
        assert_eq!(
            d["decision"], "allow",
            "{what}: the TOML still grants c: {d}"
        );
        let (_, d) = serve_v(&w, "nobody");
        assert_eq!(d["reason"]["code"], "unknown_client", "{what}: {d}");
    }
}

/// `--for-sshd` given twice (clap collects four values) prints nothing and
/// fails: it never falls through to every client's line, which would let
/// any key of the policy log in as any account.
#[test]
fn for_sshd_given_twice_prints_nothing() {
    let w = world();
    let (_, public) = {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("k");
        let st = Command::new("/usr/bin/ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .expect("ssh-keygen");
        assert!(st.success());
        let public = std::fs::read_to_string(key.with_extension("pub")).expect("read .pub");
        (dir, public.trim().to_string())
    };
    w.write_policy(&format!(
        "account = \"root\"\n\n[modules.www]\npath = \"{{srv}}/www\"\n\n\
         [clients.c]\nmodules = [\"www\"]\nkey = \"{public}\"\n"
    ));
    compile(&w);
    // Once, with an unknown fingerprint: nothing, and success.
    let fp = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let once = gate(&["authorized-keys", "--for-sshd", "root", fp], &w.policy);
    assert!(once.status.success(), "{}", common::stderr(&once));
    assert!(once.stdout.is_empty());
    // Twice: refused, nothing printed.
    let twice = gate(
        &[
            "authorized-keys",
            "--for-sshd",
            "root",
            fp,
            "--for-sshd",
            "mirror",
            fp,
        ],
        &w.policy,
    );
    assert!(!twice.status.success());
    assert!(
        twice.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&twice.stdout)
    );
    assert!(
        common::stderr(&twice).contains("--for-sshd takes USER FINGERPRINT, once"),
        "{}",
        common::stderr(&twice)
    );
}
