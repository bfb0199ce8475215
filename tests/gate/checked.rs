//! Checked mode (`host:module/path`): the real rsync client through the
//! gate via a shim that plays sshd, asserting resulting trees byte for
//! byte; refusals asserting that nothing on the server changed; and a
//! recording stand-in rsync asserting exactly what the gate runs.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::common::{
    Recorded, World, assert_same_tree, real_rsync, sample_tree, set_mode, snapshot, stderr, tree,
};

/// A world with the usual modules:
/// - `www` (read-only, sample tree, a symlink leading out, a list file),
/// - `backup` (writable, delete allowed),
/// - `up` (writable, no delete),
/// - `drop` (write-only, no overwrite),
/// - `secret` (not granted), and `outside` (not a module).
fn world() -> World {
    let w = World::new();
    let www = w.module_dir("www");
    sample_tree(&www);
    std::fs::write(www.join("list"), "a.txt\nsub/s.txt\n").unwrap();
    let outside = w.root.join("outside");
    std::fs::create_dir(&outside).unwrap();
    set_mode(&outside, 0o755);
    std::fs::write(outside.join("secret.txt"), "top secret\n").unwrap();
    std::os::unix::fs::symlink(&outside, www.join("out")).unwrap();
    std::os::unix::fs::symlink("../../outside/secret.txt", www.join("sub/leak")).unwrap();
    w.module_dir("backup");
    w.module_dir("up");
    w.module_dir("drop");
    let secret = w.module_dir("secret");
    std::fs::write(secret.join("s"), "s").unwrap();
    w.write_policy(
        r#"
[modules.www]
path = "{srv}/www"

[modules.backup]
path = "{srv}/backup"
read_only = false
delete = true

[modules.up]
path = "{srv}/up"
read_only = false

[modules.drop]
path = "{srv}/drop"
read_only = false
write_only = true
overwrite = false

[modules.secret]
path = "{srv}/secret"

[clients.c]
modules = ["www", "backup", "up", "drop"]
"#,
    );
    w
}

/// The real directory of module `m` (or of a path below it).
fn srv(w: &World, m: &str) -> PathBuf {
    w.root.join("srv").join(crate::common::module_dir_name(m))
}

/// A local source tree for pushes.
fn local_src(w: &World) -> PathBuf {
    let src = w.client.join("src");
    std::fs::create_dir_all(&src).unwrap();
    set_mode(&src, 0o755);
    sample_tree(&src);
    src
}

fn ok(w: &World, args: &[&str]) -> std::process::Output {
    let o = w.rsync_as("c", args);
    assert!(o.status.success(), "rsync {args:?} failed: {}", stderr(&o));
    o
}

/// Run a refused invocation: rsync fails, shows the gate's reason, and
/// nothing under srv/ or outside/ changed.
fn refused(w: &World, args: &[&str], message: &str) {
    assert!(!message.is_empty(), "a refusal test names the reason");
    let before = (
        snapshot(&w.root.join("srv")),
        snapshot(&w.root.join("outside")),
    );
    let o = w.rsync_as("c", args);
    assert!(!o.status.success(), "rsync {args:?} unexpectedly succeeded");
    let err = stderr(&o);
    let line = err
        .lines()
        .find(|l| l.starts_with("rsync-gate: denied: "))
        .unwrap_or_else(|| panic!("rsync {args:?}: no denial line in:\n{err}"));
    assert!(
        line.contains(message),
        "rsync {args:?}: expected denial containing {message:?}, got:\n{err}"
    );
    assert_eq!(
        err.matches("rsync-gate: denied:").count(),
        1,
        "one denial line: {err}"
    );
    let after = (
        snapshot(&w.root.join("srv")),
        snapshot(&w.root.join("outside")),
    );
    assert!(before == after, "rsync {args:?} changed the server");
    assert_eq!(w.last_decision()["decision"], "deny");
}

fn dst(w: &World, name: &str) -> String {
    w.client.join(name).to_string_lossy().into_owned()
}

// ---------------------------------------------------------------------------
// Pulls
// ---------------------------------------------------------------------------

#[test]
fn pull_archive() {
    let Some(_) = real_rsync() else { return };
    let w = world();
    ok(&w, &["-a", "h:www/", &format!("{}/", dst(&w, "d"))]);
    assert_same_tree(&srv(&w, "www"), &w.client.join("d"));
}

/// A policy where module `www` is renamed after its directory, as some
/// servers have it.
fn same_named(w: &World) -> &'static str {
    let text = std::fs::read_to_string(&w.policy).unwrap();
    std::fs::write(
        &w.policy,
        text.replace("[modules.www]", "[modules.public-tree]")
            .replace("\"www\", \"backup\"", "\"public-tree\", \"backup\""),
    )
    .unwrap();
    "public-tree"
}

#[test]
fn pull_module_without_slash_is_a_directory_of_that_name() {
    let Some(_) = real_rsync() else { return };
    let w = world();
    // By absolute path the client names the server's directory itself.
    let abs = format!("h:{}", srv(&w, "www").display());
    ok(&w, &["-a", &abs, &format!("{}/", dst(&w, "e"))]);
    assert_same_tree(&srv(&w, "www"), &w.client.join("e/public-tree"));
    // As `host:dir` would: where the module is named like its directory,
    // the client gets a directory of that name.
    let m = same_named(&w);
    ok(
        &w,
        &["-a", &format!("h:{m}"), &format!("{}/", dst(&w, "d"))],
    );
    assert_same_tree(&srv(&w, "www"), &w.client.join("d/public-tree"));
}

#[test]
fn module_root_named_differently_needs_a_trailing_slash() {
    let Some(_) = real_rsync() else { return };
    let w = world();
    refused(
        &w,
        &["-a", "h:www", &format!("{}/", dst(&w, "d"))],
        "path 'www': the module's directory has another name on the server; add a trailing slash",
    );
    refused(
        &w,
        &["-aR", "h:www/sub", &format!("{}/", dst(&w, "d"))],
        "with -R, mark where the transferred path starts with /./",
    );
    ok(&w, &["-a", "h:www/", &format!("{}/", dst(&w, "d"))]);
    assert_same_tree(&srv(&w, "www"), &w.client.join("d"));
    ok(&w, &["-aR", "h:www/./sub", &format!("{}/", dst(&w, "r"))]);
    assert_same_tree(&srv(&w, "www").join("sub"), &w.client.join("r/sub"));
}

#[test]
fn pull_verbose_compressed_with_delete() {
    let Some(_) = real_rsync() else { return };
    let w = world();
    let d = w.client.join("d");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("stale"), "old").unwrap();
    let o = ok(
        &w,
        &["-avz", "--delete", "h:www/", &format!("{}/", d.display())],
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("a.txt"));
    set_mode(&d, 0o755);
    assert_same_tree(&srv(&w, "www"), &d);
}

#[test]
fn pull_hard_links_acls_xattrs() {
    let Some(_) = real_rsync() else { return };
    let w = world();
    let www = srv(&w, "www");
    std::fs::hard_link(www.join("a.txt"), www.join("a-hardlink")).unwrap();
    ok(&w, &["-aHAX", "h:www/", &format!("{}/", dst(&w, "d"))]);
    let d = w.client.join("d");
    assert_same_tree(&www, &d);
    let (x, y) = (
        std::fs::metadata(d.join("a.txt")).unwrap(),
        std::fs::metadata(d.join("a-hardlink")).unwrap(),
    );
    assert_eq!(x.ino(), y.ino(), "-H keeps hard links");
}

#[test]
fn pull_wildcards_and_spaces_and_several_sources() {
    let Some(_) = real_rsync() else { return };
    let w = world();
    ok(&w, &["-a", "h:www/*.txt", &format!("{}/", dst(&w, "g"))]);
    let names: Vec<_> = tree(&w.client.join("g")).into_keys().collect();
    assert_eq!(names, [PathBuf::from("a.txt"), PathBuf::from("b.txt")]);

    ok(
        &w,
        &["-a", "h:www/dir with space/", &format!("{}/", dst(&w, "s"))],
    );
    assert_same_tree(&srv(&w, "www").join("dir with space"), &w.client.join("s"));

    ok(
        &w,
        &[
            "-a",
            "h:www/semi;colon",
            "h:www/it's",
            "h:www/$(id)",
            &format!("{}/", dst(&w, "m")),
        ],
    );
    let names: Vec<_> = tree(&w.client.join("m")).into_keys().collect();
    assert_eq!(names.len(), 3, "{names:?}");

    ok(
        &w,
        &[
            "-a",
            "h:www/a.txt",
            ":www/sub",
            &format!("{}/", dst(&w, "two")),
        ],
    );
    assert!(w.client.join("two/a.txt").is_file());
    assert_same_tree(&srv(&w, "www").join("sub"), &w.client.join("two/sub"));
}

#[test]
fn pull_relative_with_marker() {
    let Some(_) = real_rsync() else { return };
    let w = world();
    ok(
        &w,
        &["-aR", "h:www/sub/./deeper", &format!("{}/", dst(&w, "r"))],
    );
    assert_same_tree(
        &srv(&w, "www").join("sub/deeper"),
        &w.client.join("r/deeper"),
    );
    // `/./.`: from the marker on, the directory's contents.
    ok(
        &w,
        &["-aR", "h:www/sub/./.", &format!("{}/", dst(&w, "r3"))],
    );
    assert_same_tree(&srv(&w, "www").join("sub"), &w.client.join("r3"));
    // Without a marker the whole path travels, module name included: where
    // the module is named like its directory.
    let m = same_named(&w);
    ok(
        &w,
        &[
            "-aR",
            &format!("h:{m}/sub/deeper"),
            &format!("{}/", dst(&w, "r2")),
        ],
    );
    assert_same_tree(
        &srv(&w, "www").join("sub/deeper"),
        &w.client.join("r2/public-tree/sub/deeper"),
    );
}

#[test]
fn pull_files_from_local_and_remote_lists() {
    let Some(_) = real_rsync() else { return };
    let w = world();
    let list = w.client.join("list");
    std::fs::write(&list, "a.txt\nsub/s.txt\n").unwrap();
    ok(
        &w,
        &[
            "-a",
            &format!("--files-from={}", list.display()),
            "h:www/",
            &format!("{}/", dst(&w, "l")),
        ],
    );
    let got: Vec<_> = tree(&w.client.join("l")).into_keys().collect();
    assert_eq!(
        got,
        [
            PathBuf::from("a.txt"),
            PathBuf::from("sub"),
            PathBuf::from("sub/s.txt")
        ]
    );
    ok(
        &w,
        &[
            "-a",
            "--files-from=:www/list",
            "h:www/",
            &format!("{}/", dst(&w, "rl")),
        ],
    );
    let got: Vec<_> = tree(&w.client.join("rl")).into_keys().collect();
    assert_eq!(
        got,
        [
            PathBuf::from("a.txt"),
            PathBuf::from("sub"),
            PathBuf::from("sub/s.txt")
        ]
    );
}

#[test]
fn pull_list_only() {
    let Some(_) = real_rsync() else { return };
    let w = world();
    let o = ok(&w, &["--list-only", "h:www/"]);
    let out = String::from_utf8_lossy(&o.stdout);
    for name in ["a.txt", "sub", "dir with space", "link-to-a"] {
        assert!(out.contains(name), "{name} missing from listing:\n{out}");
    }
    assert!(
        !out.contains("proc"),
        "the listing must not show gate internals:\n{out}"
    );
}

#[test]
fn pull_absolute_path_inside_a_module() {
    let Some(_) = real_rsync() else { return };
    let w = world();
    let src = format!("h:{}/sub/", srv(&w, "www").display());
    ok(&w, &["-a", &src, &format!("{}/", dst(&w, "abs"))]);
    assert_same_tree(&srv(&w, "www").join("sub"), &w.client.join("abs"));
}

#[test]
fn pull_symlinks_inside_the_module_are_sent_as_links() {
    let Some(_) = real_rsync() else { return };
    let w = world();
    // The leaf is a link leading out: sent as the link, never its target.
    ok(&w, &["-a", "h:www/sub/leak", &format!("{}/", dst(&w, "k"))]);
    let t = tree(&w.client.join("k"));
    assert_eq!(
        t.get(Path::new("leak")),
        Some(&crate::common::Entry::Symlink {
            target: "../../outside/secret.txt".into()
        })
    );
}

// ---------------------------------------------------------------------------
// Pushes
// ---------------------------------------------------------------------------

#[test]
fn push_archive_and_delete_where_allowed() {
    let Some(_) = real_rsync() else { return };
    let w = world();
    let src = local_src(&w);
    let bk = srv(&w, "backup").join("cur");
    std::fs::create_dir(&bk).unwrap();
    set_mode(&bk, 0o755);
    std::fs::write(bk.join("extraneous"), "x").unwrap();
    ok(
        &w,
        &[
            "-a",
            "--delete",
            &format!("{}/", src.display()),
            "h:backup/cur/",
        ],
    );
    // Symlinks are munged in writable modules (munge_links defaults to on).
    let mut want = tree(&src);
    for v in want.values_mut() {
        if let crate::common::Entry::Symlink { target } = v {
            *target = PathBuf::from("/rsyncd-munged/").join(&*target);
        }
    }
    assert_eq!(tree(&bk), want);
    assert!(!bk.join("extraneous").exists());
}

#[test]
fn push_without_munging_when_the_policy_says_so() {
    let Some(_) = real_rsync() else { return };
    let w = world();
    let text = std::fs::read_to_string(&w.policy).unwrap();
    std::fs::write(
        &w.policy,
        text.replace(
            "[modules.up]\npath",
            "[modules.up]\nmunge_links = false\npath",
        ),
    )
    .unwrap();
    let src = local_src(&w);
    ok(&w, &["-a", &format!("{}/", src.display()), "h:up/"]);
    assert_same_tree(&src, &srv(&w, "up"));
}

#[test]
fn push_link_dest_snapshots() {
    let Some(_) = real_rsync() else { return };
    let w = world();
    let src = local_src(&w);
    // First run: no previous snapshot yet.
    ok(
        &w,
        &[
            "-a",
            "--link-dest=../prev",
            &format!("{}/", src.display()),
            "h:backup/prev/",
        ],
    );
    // Second run links unchanged files to the previous snapshot.
    ok(
        &w,
        &[
            "-a",
            "--link-dest=../prev",
            &format!("{}/", src.display()),
            "h:backup/cur/",
        ],
    );
    let bk = srv(&w, "backup");
    let a = std::fs::metadata(bk.join("prev/a.txt")).unwrap();
    let b = std::fs::metadata(bk.join("cur/a.txt")).unwrap();
    assert_eq!(a.ino(), b.ino(), "unchanged files are hard-linked");
    assert_eq!(tree(&bk.join("prev")), tree(&bk.join("cur")));
    // An absolute --link-dest inside the module works too.
    let abs = format!("--link-dest={}/prev", bk.display());
    ok(
        &w,
        &["-a", &abs, &format!("{}/", src.display()), "h:backup/cur2/"],
    );
    let c = std::fs::metadata(bk.join("cur2/a.txt")).unwrap();
    assert_eq!(a.ino(), c.ino());
}

#[test]
fn push_mkpath_and_partial_dir() {
    let Some(_) = real_rsync() else { return };
    let w = world();
    let src = local_src(&w);
    ok(
        &w,
        &[
            "-a",
            "--mkpath",
            &format!("{}/", src.display()),
            "h:up/new/deep/path/",
        ],
    );
    assert!(srv(&w, "up").join("new/deep/path/a.txt").is_file());
    ok(
        &w,
        &[
            "-a",
            "--partial-dir=.rsync-partial",
            &format!("{}/", src.display()),
            "h:up/p/",
        ],
    );
    assert!(srv(&w, "up").join("p/sub/deeper/d.bin").is_file());
}

#[test]
fn drop_box_uploads_but_never_replaces() {
    let Some(_) = real_rsync() else { return };
    let w = world();
    let src = w.client.join("dropsrc");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("report.txt"), "v1").unwrap();
    ok(&w, &["-r", &format!("{}/", src.display()), "h:drop/"]);
    assert_eq!(
        std::fs::read(srv(&w, "drop").join("report.txt")).unwrap(),
        b"v1"
    );
    std::fs::write(src.join("report.txt"), "v2 - longer").unwrap();
    ok(&w, &["-r", &format!("{}/", src.display()), "h:drop/"]);
    assert_eq!(
        std::fs::read(srv(&w, "drop").join("report.txt")).unwrap(),
        b"v1"
    );
    refused(
        &w,
        &["-r", "h:drop/", &format!("{}/", dst(&w, "x"))],
        "module 'drop' is write-only",
    );
    refused(
        &w,
        &["--list-only", "h:drop/"],
        "module 'drop' is write-only",
    );
    refused(
        &w,
        &["-r", "--delete", &format!("{}/", src.display()), "h:drop/"],
        "option --delete is not allowed in module 'drop' (delete = false)",
    );
    refused(
        &w,
        &["-rb", &format!("{}/", src.display()), "h:drop/"],
        "option --backup (-b) is not allowed in module 'drop' (overwrite = false)",
    );
}

// ---------------------------------------------------------------------------
// Refusals
// ---------------------------------------------------------------------------

#[test]
fn refuses_pushes_into_read_only_modules() {
    let Some(_) = real_rsync() else { return };
    let w = world();
    let src = local_src(&w);
    refused(
        &w,
        &["-a", &format!("{}/", src.display()), "h:www/"],
        "module 'www' is read-only",
    );
    let d = w.last_decision();
    assert_eq!(d["reason"]["code"], "read_only");
    assert_eq!(d["mode"], "receiver");
    assert_eq!(d["modules"], serde_json::json!(["www"]));
    refused(
        &w,
        &["-a", "-n", &format!("{}/", src.display()), "h:www/x/"],
        "module 'www' is read-only",
    );
}

#[test]
fn refuses_delete_where_not_allowed() {
    let Some(_) = real_rsync() else { return };
    let w = world();
    let src = local_src(&w);
    std::fs::write(srv(&w, "up").join("keep"), "k").unwrap();
    refused(
        &w,
        &["-a", "--delete", &format!("{}/", src.display()), "h:up/"],
        "option --delete is not allowed in module 'up' (delete = false)",
    );
    refused(
        &w,
        &[
            "-a",
            "--remove-source-files",
            "h:www/a.txt",
            &format!("{}/", dst(&w, "x")),
        ],
        "option --remove-source-files is not allowed in module 'www'",
    );
}

#[test]
fn refuses_dot_dot_and_symlinks_leading_out() {
    let Some(_) = real_rsync() else { return };
    let w = world();
    let d = format!("{}/", dst(&w, "x"));
    for p in [
        "h:www/../outside/",
        "h:www/sub/../../outside/secret.txt",
        "h:www/..",
        "h:www/out/",
        "h:www/out/secret.txt",
    ] {
        refused(&w, &["-a", p, &d], "leads outside its module");
    }
    // Through a symlink that leads out of a writable module.
    std::os::unix::fs::symlink(w.root.join("outside"), srv(&w, "backup").join("evil")).unwrap();
    let src = local_src(&w);
    refused(
        &w,
        &["-a", &format!("{}/", src.display()), "h:backup/evil/"],
        "leads outside its module",
    );
    refused(
        &w,
        &["-a", &format!("{}/", src.display()), "h:backup/evil/sub/"],
        "leads outside its module",
    );
    refused(
        &w,
        &[
            "-a",
            "--link-dest=../../../outside",
            &format!("{}/", src.display()),
            "h:backup/cur/",
        ],
        "leads outside its module",
    );
    refused(
        &w,
        &[
            "-a",
            "--link-dest=../evil",
            &format!("{}/", src.display()),
            "h:backup/cur/",
        ],
        "leads outside its module",
    );
    assert!(!w.client.join("x").exists());
}

#[test]
fn refuses_modules_not_granted_and_paths_outside_modules() {
    let Some(_) = real_rsync() else { return };
    let w = world();
    let d = format!("{}/", dst(&w, "x"));
    refused(
        &w,
        &["-a", "h:secret/", &d],
        "no module 'secret' is available to this key",
    );
    refused(
        &w,
        &["-a", "h:nope/", &d],
        "no module 'nope' is available to this key",
    );
    let abs = format!("h:{}/", srv(&w, "secret").display());
    refused(
        &w,
        &["-a", &abs, &d],
        "is not inside any module available to this key",
    );
    refused(
        &w,
        &["-a", "h:/etc/passwd", &d],
        "is not inside any module available to this key",
    );
    refused(
        &w,
        &["-a", "h:~/x", &d],
        "home-directory paths are not supported",
    );
    refused(&w, &["-a", "h:", &d], "does not start with a module name");
}

#[test]
fn refuses_smuggled_options() {
    let Some(_) = real_rsync() else { return };
    let w = world();
    let marker = w.root.join("pwned");
    let d = format!("{}/", dst(&w, "x"));
    let table: &[(Vec<String>, &str)] = &[
        (
            vec![format!("-M--log-file={}", marker.display())],
            "option --log-file is not allowed",
        ),
        (
            vec!["-M--copy-as=root".into()],
            "option --copy-as is not allowed",
        ),
        (
            vec!["-M--no-munge-links".into()],
            "option --no-munge-links is not allowed",
        ),
        (
            vec!["-M--debug=ALL".into()],
            "option --debug is not allowed",
        ),
        (
            vec!["-M--insecure-links".into()],
            "option --insecure-links is not allowed",
        ),
        (
            vec!["-M--confine-root=/".into()],
            "option --confine-root is not allowed",
        ),
        (
            vec!["-M--config=/etc/passwd".into()],
            "option --config is not allowed",
        ),
        (
            vec![format!("-M--write-batch={}", marker.display())],
            "option --write-batch is not allowed",
        ),
        (vec!["-M--rsh=sh".into()], "option --rsh is not allowed"),
        (
            vec!["-M--copy-devices".into()],
            "option --copy-devices is not allowed in module 'www'",
        ),
        (
            vec!["-L".into()],
            "option --copy-links (-L) is not allowed in module 'www'",
        ),
        (
            vec!["--copy-unsafe-links".into()],
            "option --copy-unsafe-links is not allowed",
        ),
        (vec!["-M--frobnicate".into()], "unknown option --frobnicate"),
        (
            vec![format!("--rsync-path=touch {} ; rsync", marker.display())],
            "unparsable command: shell operator ';'",
        ),
        // Options before --server are read with the table, like the rest.
        (
            vec![format!(
                "--rsync-path=rsync --log-file={}",
                marker.display()
            )],
            "option --log-file is not allowed",
        ),
        (
            vec!["--rsync-path=sh -c id".into()],
            "only rsync may be run with this key",
        ),
        (
            vec!["--rsync-path=sudo rsync".into()],
            "only rsync may be run with this key (got 'sudo')",
        ),
        // A priority prefix may only lower the priority.
        (
            vec!["--rsync-path=nice -n -5 rsync".into()],
            "priority prefix refused: nice -5 would raise the priority",
        ),
        (
            vec!["--rsync-path=nice -n 19 sh -c rsync".into()],
            "priority prefix refused",
        ),
        (
            vec!["-s".into(), "-M--log-file=/tmp/x".into()],
            "option --log-file is not allowed",
        ),
    ];
    for (opts, message) in table {
        let mut args: Vec<&str> = vec!["-a"];
        args.extend(opts.iter().map(String::as_str));
        args.push("h:www/");
        args.push(&d);
        refused(&w, &args, message);
        assert!(!marker.exists(), "{opts:?} created the marker");
    }
}

#[test]
fn refuses_old_args_shell_metacharacters() {
    let Some(_) = real_rsync() else { return };
    let w = world();
    let marker = w.root.join("pwned");
    let d = format!("{}/", dst(&w, "x"));
    let bad = format!("h:www/a.txt;touch {}", marker.display());
    refused(&w, &["-a", "--old-args", &bad, &d], "shell operator ';'");
    let bad = format!("h:www/$(touch {})", marker.display());
    refused(&w, &["-a", "--old-args", &bad, &d], "shell expansion");
    assert!(!marker.exists());
}

#[test]
fn old_args_plain_words_still_work() {
    let Some(_) = real_rsync() else { return };
    let w = world();
    ok(
        &w,
        &[
            "-a",
            "--old-args",
            "h:www/a.txt www/b.txt",
            &format!("{}/", dst(&w, "o")),
        ],
    );
    let names: Vec<_> = tree(&w.client.join("o")).into_keys().collect();
    assert_eq!(names, [PathBuf::from("a.txt"), PathBuf::from("b.txt")]);
}

// ---------------------------------------------------------------------------
// Exactly what runs (recording stand-in rsync)
// ---------------------------------------------------------------------------

fn recorder_world() -> (World, PathBuf) {
    let mut w = world();
    let out = w.use_recorder();
    let text = std::fs::read_to_string(&w.policy).unwrap();
    w.write_policy(&text[text.find("[modules.www]").unwrap()..]);
    (w, out)
}

/// The recorder's own script descriptor is not something the gate passed.
fn inherited_fds(r: &Recorded) -> Vec<(u32, String)> {
    r.fds
        .iter()
        .filter(|(_, t)| !t.contains("recorder-rsync"))
        .map(|(n, t)| (*n, t.clone()))
        .collect()
}

#[test]
fn runs_a_canonical_argv_with_a_clean_environment() {
    let (w, out) = recorder_world();
    let o = w.serve(
        "c",
        Some(b"rsync --server --sender -vlogDtpre.iLsfxCIvu . www/sub/s.txt www/a.txt"),
        &[
            ("LD_PRELOAD", ""),
            ("RSYNC_RSH", "evil"),
            ("RSYNC_CONNECT_PROG", "evil"),
            ("REMOTE_HOST", "10.9.9.9"),
            ("BASH_ENV", "/tmp/evil"),
            ("ENV", "/tmp/evil"),
            ("OPENSSL_CONF", "/tmp/evil"),
            ("HOME", "/root"),
            ("CVSIGNORE", "*"),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stdout.is_empty(), "the gate never writes to stdout");
    let r = Recorded::read(&out).expect("recorder ran");
    let www = srv(&w, "www");
    // argv[0] is the stand-in script's own name as /bin/sh reports it.
    // Both paths are handed over through held directories.
    assert_eq!(
        r.argv_pinned()[1..],
        [
            "--server".to_string(),
            "--sender".into(),
            "-vlogDtpre.iLsfxCIvu".into(),
            format!("--confine-root={}", www.display()),
            "--".into(),
            ".".into(),
            format!("<fd:{}/sub>/s.txt", www.display()),
            format!("<fd:{}>/a.txt", www.display()),
        ]
    );
    assert!(r.argv[7].starts_with("/proc/self/fd/"), "{:?}", r.argv);
    let mut env = r.env.clone();
    env.retain(|e| !e.starts_with("PWD=") && !e.starts_with("SHLVL=") && !e.starts_with("_="));
    env.sort();
    let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .unwrap()
        .unwrap()
        .name;
    assert_eq!(
        env,
        [
            "HOME=/nonexistent".to_string(),
            format!("LOGNAME={user}"),
            "PATH=/usr/bin:/bin".into(),
            "SSH_CONNECTION=127.0.0.1 40000 127.0.0.1 22".into(),
            format!("USER={user}"),
        ]
    );
    assert_eq!(r.cwd, www.display().to_string());
}

#[test]
fn passes_only_the_pinned_descriptors() {
    let (w, out) = recorder_world();
    // Start the gate with a stray descriptor 7 open, as a careless parent
    // might; it must not reach rsync.
    let wrapper = w.root.join("bin/with-fd7");
    crate::common::install_exec(
        &wrapper,
        &format!(
            "#!/bin/sh\nexec 7</etc/hostname\nexec {} \"$@\"\n",
            crate::common::gate_bin().display()
        ),
    );
    let o = std::process::Command::new(&wrapper)
        .args(["serve", "--policy"])
        .arg(&w.policy)
        .args(["--client", "c"])
        .env_clear()
        .env(
            "SSH_ORIGINAL_COMMAND",
            "rsync --server -logDtpre.iLsfxCIvu --link-dest ../prev . backup/cur/",
        )
        .env("SSH_CONNECTION", "127.0.0.1 1 127.0.0.1 22")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let r = Recorded::read(&out).unwrap();
    let fds = inherited_fds(&r);
    let bk = srv(&w, "backup");
    let targets: Vec<&str> = fds.iter().map(|(_, t)| t.as_str()).collect();
    assert!(
        !targets.contains(&"/etc/hostname"),
        "stray descriptor leaked: {fds:?}"
    );
    // 0, 1, 2, the pinned module root and the destination the gate made.
    assert_eq!(fds.len(), 5, "{fds:?}");
    assert!(targets.contains(&bk.to_str().unwrap()), "{fds:?}");
    assert!(
        targets.contains(&bk.join("cur").to_str().unwrap()),
        "{fds:?}"
    );
}

#[test]
fn link_dest_is_pinned_and_missing_basis_is_dropped() {
    let (w, out) = recorder_world();
    let bk = srv(&w, "backup");
    std::fs::create_dir(bk.join("prev")).unwrap();
    let o = w.serve(
        "c",
        Some(b"rsync --server -logDtpre.iLsfxCIvu --link-dest ../prev --link-dest ../older . backup/cur/"),
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let r = Recorded::read(&out).unwrap();
    let argv = r.argv_pinned();
    // The basis by descriptor, never by name.
    assert!(
        argv.contains(&format!("--link-dest=<fd:{}/prev>", bk.display())),
        "{argv:?}"
    );
    assert!(
        r.argv
            .iter()
            .any(|a| a.starts_with("--link-dest=/proc/self/fd/")),
        "{:?}",
        r.argv
    );
    assert!(!argv.iter().any(|a| a.contains("older")), "{argv:?}");
    // The missing destination is created and held before rsync starts.
    assert_eq!(
        argv.last().unwrap(),
        &format!("<fd:{}>/", bk.join("cur").display())
    );
    for want in [
        "--drop-D",
        "--munge-links",
        &format!("--confine-root={}", bk.display()),
    ] {
        assert!(argv.iter().any(|a| a == want), "{want} missing: {argv:?}");
    }
    let d = w.last_decision();
    assert!(d["notes"].to_string().contains("does not exist yet"), "{d}");
}

#[test]
fn no_overwrite_adds_ignore_existing() {
    let (w, out) = recorder_world();
    let o = w.serve("c", Some(b"rsync --server -rte.iLsfxCIvu . drop/"), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let argv = Recorded::read(&out).unwrap().argv_pinned();
    assert!(argv.contains(&"--ignore-existing".to_string()), "{argv:?}");
}

#[test]
fn refusals_never_run_rsync() {
    let (w, out) = recorder_world();
    for (cmd, code) in [
        (&b"rsync --server . www/"[..], "read_only"),
        (
            b"rsync --server --sender --log-file=/tmp/x . www/",
            "option_refused",
        ),
        (b"rsync --server --sender . www/../x", "escapes_module"),
        (b"id", "command_not_allowed"),
        (b"rsync --server --sender . secret/", "module_not_available"),
    ] {
        let o = w.serve("c", Some(cmd), &[]);
        assert!(!o.status.success());
        assert!(o.stdout.is_empty());
        let err = stderr(&o);
        assert!(err.starts_with("rsync-gate: denied: "), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert_eq!(w.last_decision()["reason"]["code"], code, "{err}");
        assert!(
            Recorded::read(&out).is_none(),
            "rsync ran for {:?}",
            String::from_utf8_lossy(cmd)
        );
    }
}

// ---------------------------------------------------------------------------
// Policy, audit and probes
// ---------------------------------------------------------------------------

#[test]
fn probe_true_succeeds_and_interactive_is_refused() {
    let (w, _) = recorder_world();
    let o = w.serve("c", Some(b"true"), &[]);
    assert!(o.status.success());
    assert!(o.stdout.is_empty() && o.stderr.is_empty());
    assert_eq!(w.last_decision()["mode"], "probe");
    let o = w.serve("c", None, &[]);
    assert!(!o.status.success());
    assert_eq!(
        stderr(&o),
        "rsync-gate: denied: interactive sessions are not allowed; this key only runs rsync\n"
    );
    assert_eq!(w.last_decision()["reason"]["code"], "no_command");
}

#[test]
fn broken_or_missing_policy_refuses_naming_file_and_line() {
    let (w, out) = recorder_world();
    std::fs::write(
        &w.policy,
        "[modules.www]\npath = \"/srv\"\nfrobnicate = 1\n",
    )
    .unwrap();
    let o = w.serve("c", Some(b"rsync --server --sender . www/"), &[]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.starts_with(&format!(
            "rsync-gate: denied: the server's policy is invalid: {}:3:1: unknown field `frobnicate`",
            w.policy.display()
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1);
    std::fs::remove_file(&w.policy).unwrap();
    let o = w.serve("c", Some(b"rsync --server --sender . www/"), &[]);
    assert!(stderr(&o).contains("cannot read"), "{}", stderr(&o));
    assert!(Recorded::read(&out).is_none());
}

#[test]
fn unwritable_audit_log_fails_closed() {
    let (w, out) = recorder_world();
    // A directory where the log file should be: opening it for append fails.
    std::fs::create_dir(&w.audit).unwrap();
    let o = w.serve("c", Some(b"rsync --server --sender -r . www/"), &[]);
    assert!(!o.status.success());
    assert_eq!(
        stderr(&o),
        "rsync-gate: denied: the audit log cannot be written, so nothing may run\n"
    );
    assert!(
        Recorded::read(&out).is_none(),
        "rsync must not run without an audit record"
    );
}

#[test]
fn audit_records_each_decision_and_session_end() {
    let Some(_) = real_rsync() else { return };
    let w = world();
    ok(&w, &["-a", "h:www/a.txt", &format!("{}/", dst(&w, "d"))]);
    let recs = w.audit_records();
    let decision = &recs[recs.len() - 2];
    let end = &recs[recs.len() - 1];
    assert_eq!(decision["event"], "decision");
    assert_eq!(decision["client"], "c");
    assert_eq!(decision["source"]["addr"], "127.0.0.1");
    assert_eq!(decision["source"]["port"], 40000);
    assert_eq!(decision["decision"], "allow");
    assert_eq!(decision["mode"], "sender");
    assert_eq!(decision["modules"], serde_json::json!(["www"]));
    assert_eq!(
        decision["command"],
        "rsync --server --sender -logDtpre.iLsfxCIvu . www/a.txt"
    );
    assert!(decision["argv"][0] == "rsync" && decision["argv"].as_array().unwrap().len() > 4);
    assert!(decision["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(end["event"], "end");
    assert_eq!(end["session"], decision["session"]);
    assert_eq!(end["exit_status"], 0);
    assert!(end["duration_ms"].is_u64());

    // Control bytes in a command are escaped, never raw.
    w.serve("c", Some(b"rsync --server --sender . www/\x1b[2J\x07"), &[]);
    assert_eq!(
        w.last_decision()["command"],
        "rsync --server --sender . www/\\u{1b}[2J\\u{7}"
    );
    let raw = std::fs::read(&w.audit).unwrap();
    assert!(
        !raw.contains(&0x1b) && !raw.contains(&0x07),
        "raw control bytes in the audit log"
    );
    let last = w.last_decision();
    assert!(
        last["command"]
            .as_str()
            .unwrap()
            .contains("\\u{1b}[2J\\u{7}"),
        "{last}"
    );
}

#[test]
fn source_address_restrictions() {
    let Some(_) = real_rsync() else { return };
    let w = world();
    let text = std::fs::read_to_string(&w.policy).unwrap();
    let body = &text[text.find("[modules.www]").unwrap()..];
    w.write_policy(&format!(
        "{body}\n[clients.fenced]\nmodules = [\"www\"]\nfrom = [\"192.0.2.0/24\", \"2001:db8::/32\"]\n"
    ));
    let d = format!("{}/", dst(&w, "f"));
    for (addr, allowed) in [
        ("192.0.2.7", true),
        ("::ffff:192.0.2.7", true),
        ("2001:db8::1", true),
        ("192.0.3.7", false),
        ("127.0.0.1", false),
    ] {
        let shim = w.shim_from("fenced", addr);
        let o = std::process::Command::new("/usr/bin/rsync")
            .arg("-e")
            .arg(&shim)
            .args(["-a", "h:www/a.txt", &d])
            .output()
            .unwrap();
        assert_eq!(o.status.success(), allowed, "{addr}: {}", stderr(&o));
        if !allowed {
            assert!(
                stderr(&o).contains(&format!("connections from {addr} are not allowed")),
                "{}",
                stderr(&o)
            );
        }
    }
    // Without SSH_CONNECTION a restricted client is refused.
    let o = std::process::Command::new(crate::common::gate_bin())
        .args(["serve", "--policy"])
        .arg(&w.policy)
        .args(["--client", "fenced"])
        .env_clear()
        .env("SSH_ORIGINAL_COMMAND", "true")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert_eq!(
        stderr(&o),
        "rsync-gate: denied: the client address is unknown, and this key is restricted by address\n"
    );
    assert_eq!(w.last_decision()["reason"]["code"], "no_source_address");
}

#[test]
fn max_connections_limits_concurrent_sessions() {
    let mut w = world();
    // A stand-in rsync that holds its session open until told to finish.
    let release = w.root.join("release");
    let started = w.root.join("started");
    let slow = w.root.join("bin/slow-rsync");
    crate::common::install_exec(
        &slow,
        &format!(
            "#!/bin/sh\nif [ \"$1\" = --help ]; then exec /usr/bin/rsync --help; fi\n: > {s}\n\
             i=0; while [ ! -e {r} ] && [ $i -lt 300 ]; do sleep 0.05; i=$((i+1)); done\nexit 0\n",
            s = crate::common::sh_quote(started.as_os_str()),
            r = crate::common::sh_quote(release.as_os_str()),
        ),
    );
    w.rsync = slow;
    w.sandbox = Some("off");
    w.write_policy(
        "[modules.www]\npath = \"{srv}/www\"\nmax_connections = 1\n[clients.c]\nmodules = [\"www\"]\n",
    );
    let spawn_first = |w: &World| {
        std::process::Command::new(crate::common::gate_bin())
            .args(["serve", "--policy"])
            .arg(&w.policy)
            .args(["--client", "c"])
            .env_clear()
            .env("SSH_ORIGINAL_COMMAND", "rsync --server --sender -r . www/")
            .env("SSH_CONNECTION", "127.0.0.1 1 127.0.0.1 22")
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let wait_started = || {
        for _ in 0..200 {
            if started.exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!("the first session never started");
    };
    let mut first = spawn_first(&w);
    wait_started();
    let o = w.serve("c", Some(b"rsync --server --sender -r . www/"), &[]);
    assert!(!o.status.success());
    assert_eq!(
        stderr(&o),
        "rsync-gate: denied: module 'www' is at its connection limit; try again later\n"
    );
    assert_eq!(w.last_decision()["reason"]["code"], "busy");
    std::fs::write(&release, "").unwrap();
    assert!(first.wait().unwrap().success());

    // With wait_for_slot, a second session waits for the first to finish.
    std::fs::remove_file(&release).unwrap();
    std::fs::remove_file(&started).unwrap();
    let text = std::fs::read_to_string(&w.policy).unwrap();
    std::fs::write(
        &w.policy,
        text.replace("[gate]\n", "[gate]\nwait_for_slot = \"20s\"\n"),
    )
    .unwrap();
    let mut first = spawn_first(&w);
    wait_started();
    let release2 = release.clone();
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        std::fs::write(&release2, "").unwrap();
    });
    let o = w.serve("c", Some(b"rsync --server --sender -r . www/"), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    releaser.join().unwrap();
    assert!(first.wait().unwrap().success());
}

// ---------------------------------------------------------------------------
// Secluded args (-s): read from stdin, checked, passed in argv
// ---------------------------------------------------------------------------

#[test]
fn secluded_pulls_and_pushes() {
    let Some(_) = real_rsync() else { return };
    let w = world();
    ok(&w, &["-as", "h:www/", &format!("{}/", dst(&w, "s"))]);
    assert_same_tree(&srv(&w, "www"), &w.client.join("s"));
    // Wildcards are expanded (and confined) by the gate, as rsync's own
    // server would expand them in this mode.
    ok(&w, &["-as", "h:www/*.txt", &format!("{}/", dst(&w, "g"))]);
    let names: Vec<_> = tree(&w.client.join("g")).into_keys().collect();
    assert_eq!(names, [PathBuf::from("a.txt"), PathBuf::from("b.txt")]);
    // Awkward names travel untouched, and shell syntax is data.
    let src = w.client.join("odd");
    std::fs::create_dir(&src).unwrap();
    set_mode(&src, 0o755);
    for name in [
        "a;b",
        "$(id)",
        "`x`",
        "tab\there",
        "new\nline?",
        "back\\slash",
    ] {
        std::fs::write(src.join(name), name).unwrap();
    }
    ok(
        &w,
        &["-as", &format!("{}/", src.display()), "h:up/odd dir/"],
    );
    assert_same_tree(&src, &srv(&w, "up").join("odd dir"));
    // The same options are refused as without -s.
    refused(
        &w,
        &["-as", "--delete", &format!("{}/", src.display()), "h:up/"],
        "option --delete is not allowed in module 'up' (delete = false)",
    );
    refused(
        &w,
        &["-as", &format!("{}/", src.display()), "h:www/"],
        "module 'www' is read-only",
    );
    refused(
        &w,
        &["-as", "h:www/../outside/", &format!("{}/", dst(&w, "x"))],
        "leads outside",
    );
    let d = w.last_decision();
    assert!(
        d["command"]
            .as_str()
            .unwrap()
            .contains("<stdin: rsync . www/../outside/>"),
        "{d}"
    );
}

#[test]
fn secluded_args_reach_rsync_in_argv_without_s() {
    let (w, out) = recorder_world();
    let o = w.serve_with_stdin(
        "c",
        Some(b"rsync --server -slogDtpre.iLsfxCIvu"),
        &[],
        b"rsync\0--link-dest\0../prev\0.\0backup/a b;c/\0\0PROTOCOL",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let argv = Recorded::read(&out).unwrap().argv_pinned();
    let bk = srv(&w, "backup");
    assert_eq!(argv[2], "-logDtpre.iLsfxCIvu", "no 's' left: {argv:?}");
    assert_eq!(
        argv.last().unwrap(),
        &format!("<fd:{}>/", bk.join("a b;c").display())
    );
    // A malformed list is refused and nothing runs.
    std::fs::remove_file(out.join("argv")).unwrap();
    let o = w.serve_with_stdin(
        "c",
        Some(b"rsync --server -slogDtpre.iLsfxCIvu"),
        &[],
        b"rsync\0.\0x",
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).starts_with("rsync-gate: denied: malformed secluded arguments: "),
        "{}",
        stderr(&o)
    );
    assert!(Recorded::read(&out).is_none());
}

// ---------------------------------------------------------------------------
// Kernel sandbox (Landlock)
// ---------------------------------------------------------------------------

#[test]
fn sandbox_is_applied_by_default_and_recorded() {
    let Some(_) = real_rsync() else { return };
    let mut w = world();
    if crate::common::require_landlock() {
        ok(&w, &["-a", "h:www/", &format!("{}/", dst(&w, "d"))]);
        assert_same_tree(&srv(&w, "www"), &w.client.join("d"));
        let d = w.last_decision();
        assert_eq!(d["sandbox"], "applied", "{d}");
        assert!(
            d["notes"]
                .to_string()
                .contains("sandbox (best-effort): read-only"),
            "{d}"
        );
    }
    // On a kernel without Landlock (the gate's test switch), best-effort
    // runs rsync unconfined and says so.
    w.no_landlock = true;
    ok(&w, &["-a", "h:www/", &format!("{}/", dst(&w, "e"))]);
    assert_same_tree(&srv(&w, "www"), &w.client.join("e"));
    let d = w.last_decision();
    assert_eq!(d["sandbox"], "unsupported by the kernel", "{d}");
    assert!(!d["notes"].to_string().contains("sandbox ("), "{d}");
}

/// A stand-in rsync that reports what the kernel lets it do: it runs the
/// real rsync (and cat/sh) directly against paths inside and outside the
/// granted module, and prints one line per attempt on stdout.
fn probe_world(sandbox: &'static str) -> World {
    let mut w = world();
    let probe = w.root.join("bin/probe-rsync");
    let q = |p: PathBuf| crate::common::sh_quote(p.as_os_str());
    std::fs::write(srv(&w, "up").join("a.txt"), "a").unwrap();
    crate::common::install_exec(
        &probe,
        &format!(
            "#!/bin/sh\nif [ \"$1\" = --help ]; then exec /usr/bin/rsync --help; fi\n\
             t() {{ l=$1; shift; if \"$@\" >/dev/null 2>&1; then echo \"ok: $l\"; else echo \"refused: $l\"; fi; }}\n\
             t rsync-list-outside /usr/bin/rsync --list-only {outside}/\n\
             t rsync-list-other-module /usr/bin/rsync --list-only {secret}/\n\
             t rsync-list-module /usr/bin/rsync --list-only {up}/\n\
             t rsync-copy-in-module /usr/bin/rsync {up}/a.txt {up}/copy.txt\n\
             t rsync-copy-out /usr/bin/rsync {up}/a.txt {outside}/copy.txt\n\
             t cat-outside cat {outside}/secret.txt\n\
             t write-outside sh -c ': > {outside_raw}/new'\n\
             exit 0\n",
            outside = q(w.root.join("outside")),
            outside_raw = w.root.join("outside").display(),
            secret = q(srv(&w, "secret")),
            up = q(srv(&w, "up")),
        ),
    );
    w.rsync = probe;
    w.sandbox = Some(sandbox);
    let text = std::fs::read_to_string(&w.policy).unwrap();
    w.write_policy(&text[text.find("[modules.www]").unwrap()..]);
    w
}

/// The kernel refuses what no path check sees: the rsync the gate runs,
/// pointed directly at paths outside the granted module.
#[test]
fn kernel_confines_the_rsync_it_runs() {
    let Some(_) = real_rsync() else { return };
    if !crate::common::require_landlock() {
        return;
    }
    let w = probe_world("required");
    // A pull from `up`: the module is readable, nothing else is.
    let o = w.serve("c", Some(b"rsync --server --sender -r . up/"), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "refused: rsync-list-outside\nrefused: rsync-list-other-module\nok: rsync-list-module\n\
         refused: rsync-copy-in-module\nrefused: rsync-copy-out\nrefused: cat-outside\nrefused: write-outside\n"
    );
    assert_eq!(w.last_decision()["sandbox"], "applied");
    // A push into `up`: the module becomes writable; still nothing outside.
    let o = w.serve("c", Some(b"rsync --server -r . up/"), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "refused: rsync-list-outside\nrefused: rsync-list-other-module\nok: rsync-list-module\n\
         ok: rsync-copy-in-module\nrefused: rsync-copy-out\nrefused: cat-outside\nrefused: write-outside\n"
    );
    assert!(srv(&w, "up").join("copy.txt").is_file());
    assert!(!w.root.join("outside/copy.txt").exists() && !w.root.join("outside/new").exists());
    // With the sandbox off the same stand-in reaches everything: the
    // refusals above are the kernel's, not the file modes'.
    let w = probe_world("off");
    let o = w.serve("c", Some(b"rsync --server --sender -r . up/"), &[]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "ok: rsync-list-outside\nok: rsync-list-other-module\nok: rsync-list-module\n\
         ok: rsync-copy-in-module\nok: rsync-copy-out\nok: cat-outside\nok: write-outside\n"
    );
}

#[test]
fn required_sandbox_refuses_when_it_cannot_apply() {
    // With Landlock, "required" runs; without it, it refuses and runs
    // nothing.
    let Some(_) = real_rsync() else { return };
    let mut w = world();
    w.sandbox = Some("required");
    let text = std::fs::read_to_string(&w.policy).unwrap();
    w.write_policy(&text[text.find("[modules.www]").unwrap()..]);
    if crate::common::require_landlock() {
        ok(&w, &["-a", "h:www/", &format!("{}/", dst(&w, "d"))]);
        assert_eq!(w.last_decision()["sandbox"], "applied");
    }
    w.no_landlock = true;
    refused(
        &w,
        &["-a", "h:www/", &format!("{}/", dst(&w, "e"))],
        "rsync-gate: denied: the required sandbox is unavailable: the kernel does not offer Landlock",
    );
    assert_eq!(w.last_decision()["reason"]["code"], "sandbox_unavailable");
    assert!(!w.client.join("e").exists());
}

// ---------------------------------------------------------------------------
// The gate's own files must be safe from the SSH account
// ---------------------------------------------------------------------------

#[test]
fn refuses_a_policy_the_account_could_modify() {
    let (w, out) = recorder_world();
    let cmd = Some(&b"rsync --server --sender -r . www/"[..]);
    // Group-writable policy file.
    set_mode(&w.policy, 0o664);
    let o = w.serve("c", cmd, &[]);
    assert!(
        stderr(&o).starts_with("rsync-gate: denied: the server's policy file is unsafe: "),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("writable by its group"),
        "{}",
        stderr(&o)
    );
    set_mode(&w.policy, 0o644);
    // Owned by someone other than root (the account could be that user).
    nix::unistd::chown(&w.policy, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    let o = w.serve("c", cmd, &[]);
    assert!(
        stderr(&o).contains("is owned by uid 65534, not root"),
        "{}",
        stderr(&o)
    );
    nix::unistd::chown(&w.policy, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
    // A world-writable directory above it.
    set_mode(&w.root, 0o777);
    let o = w.serve("c", cmd, &[]);
    assert!(stderr(&o).contains("writable by others"), "{}", stderr(&o));
    set_mode(&w.root, 0o755);
    assert!(Recorded::read(&out).is_none(), "nothing ran");
    let o = w.serve("c", cmd, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn refuses_an_audit_log_directory_the_account_could_modify() {
    let (w, out) = recorder_world();
    set_mode(&w.root.join("log"), 0o775);
    let o = w.serve("c", Some(b"rsync --server --sender -r . www/"), &[]);
    assert_eq!(
        stderr(&o),
        "rsync-gate: denied: the audit log cannot be written, so nothing may run\n"
    );
    assert!(Recorded::read(&out).is_none());
    set_mode(&w.root.join("log"), 0o755);
    // A world-writable log file is refused too.
    std::fs::write(&w.audit, "").unwrap();
    set_mode(&w.audit, 0o666);
    let o = w.serve("c", Some(b"rsync --server --sender -r . www/"), &[]);
    assert_eq!(
        stderr(&o),
        "rsync-gate: denied: the audit log cannot be written, so nothing may run\n"
    );
    assert_eq!(std::fs::read(&w.audit).unwrap(), b"", "nothing recorded");
    assert!(Recorded::read(&out).is_none());
}

#[test]
fn refuses_writable_modules_holding_the_gates_files() {
    let (w, out) = recorder_world();
    // A writable module whose root contains the audit log.
    let text = std::fs::read_to_string(&w.policy).unwrap();
    let body = &text[text.find("[modules.www]").unwrap()..];
    w.write_policy(&format!(
        "{body}\n[modules.everything]\npath = \"{}\"\nread_only = false\n[clients.greedy]\nmodules = [\"everything\"]\n",
        w.root.display()
    ));
    let o = w.serve("greedy", Some(b"rsync --server -r . everything/srv/"), &[]);
    assert!(
        stderr(&o).starts_with("rsync-gate: denied: module 'everything' is not safe to serve"),
        "{}",
        stderr(&o)
    );
    let d = w.last_decision();
    assert!(
        d["reason"]["detail"]
            .as_str()
            .unwrap()
            .contains("gate's own file"),
        "{d}"
    );
    assert!(Recorded::read(&out).is_none());
}

// ---------------------------------------------------------------------------
// Administrator commands
// ---------------------------------------------------------------------------

fn gate_cmd(args: &[&str], cwd: &Path) -> std::process::Output {
    std::process::Command::new(crate::common::gate_bin())
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

#[test]
fn relative_policy_paths_are_made_absolute() {
    let w = world();
    let text = std::fs::read_to_string(&w.policy).unwrap();
    std::fs::write(
        &w.policy,
        text + "\n[clients.keyed]\nmodules = [\"www\"]\nkey = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIByjXTZyhMNg4FJ507SAZ4IU8ihtGHkvqwZqcfdhmePz k@x\"\n",
    )
    .unwrap();
    let o = gate_cmd(&["check", "--policy", "policy.toml"], &w.root);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!out.contains("not absolute"), "{out}");
    assert!(o.status.success(), "{out}");
    let o = gate_cmd(&["authorized-keys", "--policy", "policy.toml"], &w.root);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&format!(
            "serve --policy {} --client keyed",
            w.policy.display()
        )),
        "{out}"
    );
}

#[test]
fn check_judges_as_the_named_account() {
    let w = world();
    // A writable module owned by the (non-root) SSH account.
    nix::unistd::chown(
        &srv(&w, "up"),
        Some(nix::unistd::Uid::from_raw(65534)),
        None,
    )
    .unwrap();
    let o = gate_cmd(&["check", "--policy", &w.policy.to_string_lossy()], &w.root);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        !o.status.success(),
        "as root, nobody's module is foreign: {out}"
    );
    assert!(out.contains("owned by uid 65534"), "{out}");
    // The lock dir must belong to the account for it to write there.
    nix::unistd::chown(&w.run, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    let o = gate_cmd(
        &[
            "check",
            "--policy",
            &w.policy.to_string_lossy(),
            "--account",
            "nobody",
        ],
        &w.root,
    );
    let out = String::from_utf8_lossy(&o.stdout);
    // (nobody's login shell, nologin, and a log it cannot write are
    // errors too: tests/gate/check.rs.)
    assert!(!out.contains("owned by uid 65534"), "{out}");
    assert!(!out.contains("lock_dir"), "{out}");
    nix::unistd::chown(&w.run, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
    let o = gate_cmd(
        &[
            "check",
            "--policy",
            &w.policy.to_string_lossy(),
            "--account",
            "nobody",
        ],
        &w.root,
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!o.status.success());
    assert!(out.contains("cannot write its lock files"), "{out}");
    let o = gate_cmd(
        &[
            "check",
            "--policy",
            &w.policy.to_string_lossy(),
            "--account",
            "no-such-user",
        ],
        &w.root,
    );
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn no_overwrite_refuses_what_would_leave_partial_files() {
    let Some(_) = real_rsync() else { return };
    let w = world();
    let src = local_src(&w);
    for opt in ["-P", "--partial", "--inplace", "--append"] {
        refused(
            &w,
            &["-r", opt, &format!("{}/", src.display()), "h:drop/"],
            "is not allowed in module 'drop' (overwrite = false)",
        );
    }
}

#[test]
fn audit_output_cut_short_by_the_reader_is_not_an_error() {
    let (w, _) = recorder_world();
    for _ in 0..400 {
        w.serve("c", Some(b"id"), &[]);
    }
    let o = std::process::Command::new("/bin/bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; {} audit --log {} --json | head -n 1 > /dev/null",
            crate::common::gate_bin().display(),
            w.audit.display()
        ))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
}

/// An rsync without --confine-root and --drop-D (before 3.5; simulated by
/// a wrapper that hides them from the gate's --help probe): serve keeps
/// working on the gate's own checks; pushes that could create device or
/// special files are accepted only under the kernel sandbox, and refused
/// without it; check warns.
#[test]
fn older_rsync_keeps_working_with_the_gates_own_checks() {
    let Some(_) = real_rsync() else { return };
    let mut w = world();
    let old = w.root.join("bin/rsync-3.4");
    crate::common::install_exec(
        &old,
        "#!/bin/sh\nif [ \"$1\" = --help ]; then /usr/bin/rsync --help | grep -v -e --confine-root -e --drop-D; exit 0; fi\n\
         exec /usr/bin/rsync \"$@\"\n",
    );
    w.rsync = old;
    let text = std::fs::read_to_string(&w.policy).unwrap();
    w.write_policy(&text[text.find("[modules.www]").unwrap()..]);
    ok(&w, &["-a", "h:www/", &format!("{}/", dst(&w, "d"))]);
    assert_same_tree(&srv(&w, "www"), &w.client.join("d"));
    let argv = w.last_decision()["argv"].to_string();
    assert!(
        !argv.contains("--confine-root") && !argv.contains("--drop-D"),
        "{argv}"
    );
    let src = local_src(&w);
    if crate::common::require_landlock() {
        ok(&w, &["-a", &format!("{}/", src.display()), "h:up/"]);
        assert_eq!(w.last_decision()["sandbox"], "applied");
    }
    let text = std::fs::read_to_string(&w.policy).unwrap();
    w.sandbox = Some("off");
    w.write_policy(&text[text.find("[modules.www]").unwrap()..]);
    refused(
        &w,
        &["-a", &format!("{}/", src.display()), "h:up/"],
        "no --drop-D and no kernel sandbox is active",
    );
    assert_eq!(w.last_decision()["reason"]["code"], "nodes_unconfined");
    ok(&w, &["-rlt", &format!("{}/", src.display()), "h:up/"]);
    let o = gate_cmd(&["check", "--policy", &w.policy.to_string_lossy()], &w.root);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("has no --confine-root (rsync < 3.5)"), "{out}");
    assert!(out.contains("has no --drop-D"), "{out}");
}

/// Every pull shape against module `www`, whose directory on the server is
/// `srv/public-tree`, through the gate (module form, or absolute paths) and
/// with plain rsync over a shell (absolute paths): the trees are identical
/// byte for byte, and none is empty.
#[test]
fn pull_shapes_match_plain_rsync_over_a_shell() {
    let Some(_) = real_rsync() else { return };
    let w = world();
    let m = srv(&w, "www").to_string_lossy().into_owned();
    assert!(m.ends_with("/public-tree"), "{m}");
    let local_list = w.client.join("local-list");
    std::fs::write(&local_list, "a.txt\nsub/s.txt\nsub/deeper/d.bin\n").unwrap();
    let ll = format!("--files-from={}", local_list.display());
    let sub_list = w.client.join("sub-list");
    std::fs::write(&sub_list, "s.txt\ndeeper\n").unwrap();
    let sl = format!("--files-from={}", sub_list.display());
    // (name, rsync arguments before the sources, gate sources, plain sources)
    type Shape<'a> = (&'a str, Vec<String>, Vec<String>, Vec<String>);
    let shapes: Vec<Shape> = vec![
        (
            "contents",
            vec!["-a".into()],
            vec!["h:www/".into()],
            vec![format!("h:{m}/")],
        ),
        (
            "subdir",
            vec!["-a".into()],
            vec!["h:www/sub".into()],
            vec![format!("h:{m}/sub")],
        ),
        (
            "subdir contents",
            vec!["-a".into()],
            vec!["h:www/sub/".into()],
            vec![format!("h:{m}/sub/")],
        ),
        (
            "-R /./",
            vec!["-aR".into()],
            vec!["h:www/./sub".into()],
            vec![format!("h:{m}/./sub")],
        ),
        (
            "-R inner /./",
            vec!["-aR".into()],
            vec!["h:www/sub/./deeper".into()],
            vec![format!("h:{m}/sub/./deeper")],
        ),
        (
            "-R /./.",
            vec!["-aR".into()],
            vec!["h:www/sub/./.".into()],
            vec![format!("h:{m}/sub/./.")],
        ),
        (
            "-R root /./.",
            vec!["-aR".into()],
            vec!["h:www/./.".into()],
            vec![format!("h:{m}/./.")],
        ),
        (
            "-R several",
            vec!["-aR".into()],
            vec!["h:www/./sub/deeper".into(), "h:www/./a.txt".into()],
            vec![format!("h:{m}/./sub/deeper"), format!("h:{m}/./a.txt")],
        ),
        (
            "files-from local",
            vec!["-a".into(), ll.clone()],
            vec!["h:www/".into()],
            vec![format!("h:{m}/")],
        ),
        (
            "files-from local, no slash",
            vec!["-a".into(), ll.clone()],
            vec!["h:www".into()],
            vec![format!("h:{m}")],
        ),
        (
            "files-from local -r",
            vec!["-ar".into(), sl],
            vec!["h:www/sub/".into()],
            vec![format!("h:{m}/sub/")],
        ),
        (
            "files-from remote",
            vec!["-a".into(), "--files-from=:www/list".into()],
            vec!["h:www/".into()],
            vec![format!("h:{m}/")],
        ),
        (
            "wildcards",
            vec!["-a".into()],
            vec!["h:www/*.txt".into()],
            vec![format!("h:{m}/*.txt")],
        ),
        (
            "wildcard directories",
            vec!["-a".into()],
            vec!["h:www/s*/".into()],
            vec![format!("h:{m}/s*/")],
        ),
        (
            "several sources",
            vec!["-a".into()],
            vec![
                "h:www/a.txt".into(),
                "h:www/sub".into(),
                "h:www/dir with space".into(),
            ],
            vec![
                format!("h:{m}/a.txt"),
                format!("h:{m}/sub"),
                format!("h:{m}/dir with space"),
            ],
        ),
        (
            "absolute",
            vec!["-a".into()],
            vec![format!("h:{m}/sub")],
            vec![format!("h:{m}/sub")],
        ),
        (
            "absolute -R",
            vec!["-aR".into()],
            vec![format!("h:{m}/sub/deeper")],
            vec![format!("h:{m}/sub/deeper")],
        ),
        (
            "absolute -R /./",
            vec!["-aR".into()],
            vec![format!("h:{m}/sub/./deeper")],
            vec![format!("h:{m}/sub/./deeper")],
        ),
    ];
    for (i, (name, opts, gate_src, plain_src)) in shapes.iter().enumerate() {
        // The remote list names its files in the client's own spelling.
        let (gate_dst, plain_dst) = (dst(&w, &format!("g{i}")), dst(&w, &format!("p{i}")));
        let mut gate_args: Vec<&str> = opts.iter().map(String::as_str).collect();
        gate_args.extend(gate_src.iter().map(String::as_str));
        gate_args.push(&gate_dst);
        let mut plain_args: Vec<String> = opts.clone();
        for o in &mut plain_args {
            if o == "--files-from=:www/list" {
                *o = format!("--files-from=:{m}/list");
            }
        }
        plain_args.extend(plain_src.iter().cloned());
        plain_args.push(plain_dst.clone());
        let plain_args: Vec<&str> = plain_args.iter().map(String::as_str).collect();
        let g = w.rsync_as("c", &gate_args);
        assert!(
            g.status.success(),
            "{name}: through the gate: {}",
            stderr(&g)
        );
        let p = w.rsync_plain(&plain_args);
        assert!(p.status.success(), "{name}: plain rsync: {}", stderr(&p));
        assert!(
            !tree(Path::new(&gate_dst)).is_empty(),
            "{name}: nothing was transferred"
        );
        assert_same_tree(Path::new(&gate_dst), Path::new(&plain_dst));
    }
}
