//! A symlink swapped in after the check (issue 11). The gate checks a path
//! and hands rsync held directories (`/proc/self/fd/N`); whatever rsync is
//! still given by name after that is looked up again when rsync gets to it,
//! and a client that delays the protocol start gives anyone who can put a
//! symlink in the module (a client of a writable module with
//! `munge_links = false`, as module `up` here, or a local user) all the time
//! needed to put one there.
//!
//! Each test runs the real rsync client through the gate. The policy's
//! rsync is a stand-in that holds the protocol start, as such a client
//! would: it waits until the test has swapped a component of the requested
//! path for a symlink leading out of the module, then runs the real rsync
//! with the argv the gate gave it. In `host::` form it is the daemon's hook
//! shell that waits, after the gate's pre-xfer hook has decided. Each runs
//! with the sandbox off and with Landlock: without the sandbox such a swap
//! read and wrote outside the module; with it, rsync still changed the
//! mode and times of an outside directory and listed outside files.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{
    World, gate_bin, install_exec, real_rsync, require_landlock, sample_tree, set_mode, sh_quote,
    snapshot, stderr, tree,
};

/// The outside file: 777 bytes, so a listing of it shows ` 777 `.
fn outside_secret() -> Vec<u8> {
    let mut v = b"TOP SECRET ".repeat(70);
    v.resize(777, b'!');
    v
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Sandbox {
    Off,
    Landlock,
}

/// Who the gate runs as (daemon form: root chroots into the module, an
/// unprivileged account cannot).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum As {
    Root,
    Nobody,
}

const NOBODY: u32 = 65534;

struct Swap {
    w: World,
    /// The stand-in runs the real rsync once this exists.
    go: PathBuf,
    account: As,
}

fn chown(p: &Path, uid: u32) {
    nix::unistd::chown(
        p,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(uid)),
    )
    .unwrap();
}

/// Modules `up` (writable, `munge_links = false`: its clients can store
/// symlinks that work; `sub/secret.txt` is a decoy) and `www` (read-only,
/// the sample tree); `outside/` holds `secret.txt` and `victim/` (mode
/// 0700, times from 2001).
fn swap_world(sandbox: Sandbox, account: As) -> Option<Swap> {
    real_rsync()?;
    if sandbox == Sandbox::Landlock && !require_landlock() {
        return None;
    }
    let mut w = World::new();
    let outside = w.root.join("outside");
    std::fs::create_dir_all(outside.join("victim")).unwrap();
    set_mode(&outside, 0o755);
    set_mode(&outside.join("victim"), 0o700);
    std::fs::write(outside.join("secret.txt"), outside_secret()).unwrap();
    let old = std::time::UNIX_EPOCH + Duration::from_secs(978_307_200);
    std::fs::File::open(outside.join("victim"))
        .unwrap()
        .set_times(
            std::fs::FileTimes::new()
                .set_accessed(old)
                .set_modified(old),
        )
        .unwrap();
    let up = w.module_dir("up");
    std::fs::create_dir(up.join("sub")).unwrap();
    set_mode(&up.join("sub"), 0o755);
    std::fs::write(up.join("sub/secret.txt"), "decoy\n").unwrap();
    sample_tree(&w.module_dir("www"));
    let src = w.client.join("src");
    std::fs::create_dir(&src).unwrap();
    set_mode(&src, 0o755);
    std::fs::write(src.join("payload"), "pushed\n").unwrap();
    if account == As::Nobody {
        // The account owns what it writes; the gate's files stay root's.
        for p in [
            &up,
            &up.join("sub"),
            &up.join("sub/secret.txt"),
            &w.client,
            &src,
        ] {
            chown(p, NOBODY);
        }
        chown(&src.join("payload"), NOBODY);
        std::fs::write(&w.audit, "").unwrap();
        chown(&w.audit, NOBODY);
        set_mode(&w.audit, 0o600);
        let daemon_dir = w.run.join("daemon");
        std::fs::create_dir(&daemon_dir).unwrap();
        chown(&daemon_dir, NOBODY);
        chown(&w.run, NOBODY);
    }
    let go = w.root.join("go");
    let stand_in = w.root.join("bin/held-rsync");
    install_exec(
        &stand_in,
        &format!(
            "#!/bin/sh\n\
             # rsync held at the protocol start until the test says go.\n\
             if [ \"$1\" = --help ]; then exec /usr/bin/rsync --help; fi\n\
             wait_go() {{ while [ ! -e {go} ]; do sleep 0.05; done; }}\n\
             if [ \"$1\" = -c ]; then\n\
             \x20 # The daemon's hook shell: the gate decides, then the transfer waits.\n\
             \x20 {gate} -c \"$2\"; rc=$?\n\
             \x20 case \"$2\" in *pre-xfer*) wait_go ;; esac\n\
             \x20 exit $rc\n\
             fi\n\
             case \" $* \" in\n\
             \x20 *' --daemon '*) RSYNC_SHELL=\"$0\"; export RSYNC_SHELL ;;\n\
             \x20 *) wait_go ;;\n\
             esac\n\
             exec /usr/bin/rsync \"$@\"\n",
            go = sh_quote(go.as_os_str()),
            gate = sh_quote(gate_bin().as_os_str()),
        ),
    );
    w.rsync = stand_in;
    w.sandbox = Some(match sandbox {
        Sandbox::Off => "off",
        Sandbox::Landlock => "required",
    });
    w.write_policy(
        r#"
[modules.up]
path = "{srv}/up"
read_only = false
munge_links = false

[modules.www]
path = "{srv}/www"

[clients.c]
modules = ["up", "www"]
"#,
    );
    Some(Swap { w, go, account })
}

impl Swap {
    fn up(&self) -> PathBuf {
        self.w.module_dir("up")
    }

    fn outside(&self) -> PathBuf {
        self.w.root.join("outside")
    }

    fn got(&self) -> String {
        format!("{}/", self.w.client.join("got").display())
    }

    /// Run the real client; once the gate has decided (its decision record
    /// is written before rsync starts, and in `host::` form the hook's
    /// before the transfer), swap, then let rsync go. Returns the client's
    /// output and the decision records of the run.
    fn run(&self, args: &[&str], swap: impl FnOnce(&Swap)) -> (Output, Vec<serde_json::Value>) {
        let decisions = |w: &World| {
            w.audit_records()
                .into_iter()
                .filter(|r| r["event"] == "decision")
                .collect::<Vec<_>>()
        };
        let before = decisions(&self.w).len();
        let daemon = args.iter().any(|a| a.contains("::"));
        let mut cmd = Command::new("/usr/bin/rsync");
        cmd.arg("-e")
            .arg(self.w.shim("c"))
            .args(args)
            .current_dir(&self.w.client)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if self.account == As::Nobody {
            // The client too: the gate inherits the shim's uid, as from sshd.
            cmd.uid(NOBODY).gid(NOBODY);
        }
        let mut child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let new = decisions(&self.w);
            let decided = new
                .get(before..)
                .unwrap_or_default()
                .iter()
                .any(|r| !daemon || r.get("request").is_some());
            if decided || child.try_wait().unwrap().is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "no decision for rsync {args:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        swap(self);
        std::fs::write(&self.go, "").unwrap();
        let out = child.wait_with_output().unwrap();
        std::fs::remove_file(&self.go).unwrap();
        let all = decisions(&self.w);
        (out, all.get(before..).unwrap_or_default().to_vec())
    }
}

/// Replace `dir` (if it exists: the gate may have made it) by a symlink
/// to `target`, as another session of a client of module `up` could.
fn plant(dir: &Path, target: &Path) {
    if dir.exists() {
        let mut held = dir.as_os_str().to_owned();
        held.push(".held");
        std::fs::rename(dir, held).unwrap();
    }
    std::os::unix::fs::symlink(target, dir).unwrap();
}

/// Does any file the client received hold the outside secret?
fn received_secret(s: &Swap) -> bool {
    let secret = outside_secret();
    tree(&s.w.client.join("got"))
        .values()
        .any(|e| matches!(e, crate::common::Entry::File { content, .. } if *content == secret))
}

/// outside/ must be as it was: contents, modes and times.
fn assert_outside_unchanged(s: &Swap, before: &Snapshot, what: &str) {
    let after = snapshot(&s.outside());
    let changed: Vec<_> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .collect();
    assert!(changed.is_empty(), "{what}: outside changed: {changed:?}");
}

type Snapshot = std::collections::BTreeMap<PathBuf, (crate::common::Entry, i64, i64)>;

fn last_code(d: &[serde_json::Value]) -> String {
    d.last()
        .and_then(|r| r["reason"]["code"].as_str())
        .unwrap_or("(allowed)")
        .to_string()
}

fn src(s: &Swap) -> String {
    format!("{}/", s.w.client.join("src").display())
}

// ---------------------------------------------------------------------------
// host:path
// ---------------------------------------------------------------------------

/// A pull of a path that does not exist (`up/nothere/secret.txt`), whose
/// missing directory becomes a link to outside/ while rsync is held.
/// Without the sandbox rsync read the outside file; with it, a listing
/// still showed the file (Landlock does not cover stat). The gate refuses
/// what does not exist.
fn pull_of_a_missing_path(sandbox: Sandbox) {
    let Some(s) = swap_world(sandbox, As::Root) else {
        return;
    };
    let got = s.got();
    let args: Vec<&str> = match sandbox {
        Sandbox::Off => vec!["-a", "h:up/nothere/secret.txt", &got],
        Sandbox::Landlock => vec!["--list-only", "h:up/nothere/secret.txt"],
    };
    let outside = s.outside();
    let (out, d) = s.run(&args, |s| plant(&s.up().join("nothere"), &outside));
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(!received_secret(&s), "the outside file was read");
    assert!(
        !listing.contains(" 777 "),
        "the outside file was listed:\n{listing}"
    );
    assert_eq!(last_code(&d), "not_found", "{}", stderr(&out));
}

#[test]
fn pull_of_a_missing_path_sandbox_off() {
    pull_of_a_missing_path(Sandbox::Off);
}

#[test]
fn pull_of_a_missing_path_landlock() {
    pull_of_a_missing_path(Sandbox::Landlock);
}

/// A push into directories that do not exist yet (`--mkpath`,
/// `up/new/sub/`), `new` becoming a link to outside/ while rsync is held:
/// rsync wrote outside. The gate now creates and holds them before rsync
/// starts, and the files land in the directory it made.
fn push_into_missing_directories(sandbox: Sandbox) {
    let Some(s) = swap_world(sandbox, As::Root) else {
        return;
    };
    let before = snapshot(&s.outside());
    let outside = s.outside();
    let (out, d) = s.run(&["-a", "--mkpath", &src(&s), "h:up/new/sub/"], |s| {
        plant(&s.up().join("new"), &outside)
    });
    assert_outside_unchanged(&s, &before, "push");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(last_code(&d), "(allowed)");
    assert_eq!(
        std::fs::read(s.up().join("new.held/sub/payload")).unwrap(),
        b"pushed\n",
        "the push went to the directory the gate made"
    );
}

#[test]
fn push_into_missing_directories_sandbox_off() {
    push_into_missing_directories(Sandbox::Off);
}

#[test]
fn push_into_missing_directories_landlock() {
    push_into_missing_directories(Sandbox::Landlock);
}

/// A push of a directory's contents into one that does not exist yet
/// (`up/new/`), which becomes a link to outside/victim while rsync is held.
/// With the sandbox, rsync (unable to write there) still set the outside
/// directory's mode and times from the pushed directory's (Landlock does
/// not cover chmod, chown or utime); without it, it also wrote there.
fn push_keeps_outside_attributes(sandbox: Sandbox) {
    let Some(s) = swap_world(sandbox, As::Root) else {
        return;
    };
    let before = snapshot(&s.outside());
    let victim = s.outside().join("victim");
    let (out, d) = s.run(&["-a", &src(&s), "h:up/new/"], |s| {
        plant(&s.up().join("new"), &victim)
    });
    let md = std::fs::metadata(&victim).unwrap();
    assert_eq!(
        (md.mode() & 0o7777, md.mtime()),
        (0o700, 978_307_200),
        "the outside directory's mode or times changed"
    );
    assert_outside_unchanged(&s, &before, "push");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(last_code(&d), "(allowed)");
    assert!(s.up().join("new.held/payload").is_file());
}

#[test]
fn push_keeps_outside_attributes_sandbox_off() {
    push_keeps_outside_attributes(Sandbox::Off);
}

#[test]
fn push_keeps_outside_attributes_landlock() {
    push_keeps_outside_attributes(Sandbox::Landlock);
}

/// A push to a name that is not a directory yet (`up/newname`: the
/// transfer decides whether it becomes a file or a directory, so the gate
/// cannot make it): rsync looks that name up again, and in `up` its clients
/// can store a link there. Refused, saying how to push instead; that way
/// holds against the same swap.
fn push_to_a_name_where_links_can_be_planted(sandbox: Sandbox) {
    let Some(s) = swap_world(sandbox, As::Root) else {
        return;
    };
    let before = snapshot(&s.outside());
    let victim = s.outside().join("victim");
    let (out, d) = s.run(&["-a", &src(&s), "h:up/newname"], |s| {
        plant(&s.up().join("newname"), &victim)
    });
    assert_outside_unchanged(&s, &before, "push to a name");
    assert_eq!(last_code(&d), "swappable_path", "{d:?}");
    let err = stderr(&out);
    assert!(
        err.contains(
            "rsync-gate: denied: path 'up/newname' could be swapped for a symlink after the check"
        ) && err.contains("end the destination with '/'"),
        "{err}"
    );
    std::fs::remove_file(s.up().join("newname")).unwrap();
    let (out, _) = s.run(&["-a", &src(&s), "h:up/newname/"], |s| {
        plant(&s.up().join("newname"), &victim)
    });
    assert!(out.status.success(), "{}", stderr(&out));
    assert_outside_unchanged(&s, &before, "push to a directory");
    assert!(s.up().join("newname.held/payload").is_file());
}

#[test]
fn push_to_a_name_where_links_can_be_planted_sandbox_off() {
    push_to_a_name_where_links_can_be_planted(Sandbox::Off);
}

#[test]
fn push_to_a_name_where_links_can_be_planted_landlock() {
    push_to_a_name_where_links_can_be_planted(Sandbox::Landlock);
}

/// `-R`: rsync walks every directory after the `/./` marker by name (and
/// sends it as a directory even where it is a link), so the gate can hold
/// only the anchor. `up/sub` becoming a link to outside/ while rsync is
/// held: without the sandbox rsync sent the outside file, with it a
/// listing showed it. In a module whose clients can store links such a
/// pull is refused, in each spelling (an absolute path is anchored at `/`);
/// with the marker just before the last name nothing is walked, and the
/// same swap changes nothing.
fn relative_pull_through_a_swapped_directory(sandbox: Sandbox) {
    for form in ["up/./sub/secret.txt", "ABS/sub/secret.txt", "up/./sub/"] {
        let Some(s) = swap_world(sandbox, As::Root) else {
            return;
        };
        let path = format!("h:{}", form.replace("ABS", &s.up().display().to_string()));
        let got = s.got();
        let args: Vec<&str> = match sandbox {
            Sandbox::Off => vec!["-aR", &path, &got],
            Sandbox::Landlock => vec!["--list-only", "-R", &path],
        };
        let outside = s.outside();
        let (out, d) = s.run(&args, |s| plant(&s.up().join("sub"), &outside));
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(!received_secret(&s), "{form}: the outside file was read");
        assert!(
            !listing.contains(" 777 "),
            "{form}: the outside file was listed:\n{listing}"
        );
        assert_eq!(last_code(&d), "swappable_path", "{form}: {d:?}");
        assert!(
            stderr(&out).contains("put the /./ marker just before the last component"),
            "{form}: {}",
            stderr(&out)
        );
    }
    let Some(s) = swap_world(sandbox, As::Root) else {
        return;
    };
    let got = s.got();
    let outside = s.outside();
    let (out, d) = s.run(&["-aR", "h:up/sub/./secret.txt", &got], |s| {
        plant(&s.up().join("sub"), &outside)
    });
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(last_code(&d), "(allowed)");
    assert_eq!(
        std::fs::read(s.w.client.join("got/secret.txt")).unwrap(),
        b"decoy\n"
    );
}

#[test]
fn relative_pull_through_a_swapped_directory_sandbox_off() {
    relative_pull_through_a_swapped_directory(Sandbox::Off);
}

#[test]
fn relative_pull_through_a_swapped_directory_landlock() {
    relative_pull_through_a_swapped_directory(Sandbox::Landlock);
}

// ---------------------------------------------------------------------------
// host::module
// ---------------------------------------------------------------------------

/// The daemon form resolves the in-band paths itself, after the pre-xfer
/// hook has checked them, so the gate has nothing to hold. The same swaps,
/// with absolute and relative link targets, land nowhere outside: as root
/// rsync chroots into the module (the link resolves inside it); as an
/// unprivileged account it cannot, and rsync 3.5's own resolver refuses
/// links leading above the module root (this part holds without the
/// gate's help). The hook refuses what checked mode refuses.
#[test]
fn daemon_mode_swaps_stay_inside_the_module() {
    for account in [As::Root, As::Nobody] {
        for sandbox in [Sandbox::Off, Sandbox::Landlock] {
            for relative in [false, true] {
                let Some(s) = swap_world(sandbox, account) else {
                    return;
                };
                let what = format!("{account:?} {sandbox:?} relative links {relative}");
                // Links planted in up/ (srv/incoming): ../../outside is it.
                let outside = s.outside();
                let target = |p: &str| {
                    if relative {
                        PathBuf::from("../../outside").join(p)
                    } else {
                        outside.join(p)
                    }
                };
                let before = snapshot(&outside);
                // (-rlpt: -a's -D needs the sandbox in this form.)
                let (out, d) = s.run(&["-rlpt", "--mkpath", &src(&s), "h::up/new/sub/"], |s| {
                    plant(&s.up().join("new"), &target(""))
                });
                assert_outside_unchanged(&s, &before, &what);
                assert_eq!(last_code(&d), "(allowed)", "{what}: {}", stderr(&out));
                let (out, d) = s.run(&["-rlpt", &src(&s), "h::up/new2/"], |s| {
                    plant(&s.up().join("new2"), &target("victim"))
                });
                assert_outside_unchanged(&s, &before, &what);
                assert_eq!(last_code(&d), "(allowed)", "{what}: {}", stderr(&out));
                let got = s.got();
                let (out, d) = s.run(&["-a", "h::up/nothere/secret.txt", &got], |s| {
                    plant(&s.up().join("nothere"), &target(""))
                });
                assert!(!received_secret(&s), "{what}: the outside file was read");
                assert_eq!(last_code(&d), "not_found", "{what}: {}", stderr(&out));
                let (out, d) = s.run(&["-aR", "h::up/./sub/secret.txt", &got], |s| {
                    plant(&s.up().join("sub"), &target(""))
                });
                assert!(!received_secret(&s), "{what}: the outside file was read");
                assert_eq!(last_code(&d), "swappable_path", "{what}: {}", stderr(&out));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// --files-from without --confine-root
// ---------------------------------------------------------------------------

/// The names of a `--files-from` list are rsync's alone to resolve, and
/// they follow links in the module: no race is needed for `sub2/x` to
/// reach outside/ through a link `sub2`. rsync 3.5's `--confine-root`
/// refuses that; the kernel sandbox does not stop rsync listing the file
/// (only reading it), so an rsync without `--confine-root` is refused even
/// with the sandbox.
#[test]
fn files_from_needs_confine_root_even_with_the_sandbox() {
    if real_rsync().is_none() || !require_landlock() {
        return;
    }
    let mut w = World::new();
    let outside = w.root.join("outside");
    std::fs::create_dir(&outside).unwrap();
    set_mode(&outside, 0o755);
    std::fs::write(outside.join("secret.txt"), outside_secret()).unwrap();
    let www = w.module_dir("www");
    std::os::unix::fs::symlink(&outside, www.join("sub2")).unwrap();
    // An rsync older than 3.5, as the gate's probe sees it.
    let old = w.root.join("bin/rsync-without-confine-root");
    install_exec(
        &old,
        "#!/bin/sh\nif [ \"$1\" = --help ]; then /usr/bin/rsync --help | grep -v confine-root; exit 0; fi\n\
         exec /usr/bin/rsync \"$@\"\n",
    );
    w.rsync = old;
    w.sandbox = Some("required");
    w.write_policy("[modules.www]\npath = \"{srv}/www\"\n[clients.c]\nmodules = [\"www\"]\n");
    let list = w.client.join("list");
    std::fs::write(&list, "sub2/secret.txt\n").unwrap();
    let got = format!("{}/", w.client.join("got").display());
    let out = w.rsync_as(
        "c",
        &[
            "-av",
            &format!("--files-from={}", list.display()),
            "h:www/",
            &got,
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("total size is 777"),
        "the outside file was listed:\n{text}"
    );
    assert_eq!(
        w.last_decision()["reason"]["code"],
        "files_from_unconfined",
        "{}",
        stderr(&out)
    );
}
