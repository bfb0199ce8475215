use super::*;

#[test]
fn system_errors_are_said_once() {
    assert_eq!(
        without_errno("x (Permission denied (os error 13)): y (os error 2)"),
        "x (Permission denied): y"
    );
    assert_eq!(without_errno("a (os error x) b"), "a (os error x) b");
    assert_eq!(without_errno("tail (os error "), "tail (os error ");
}

#[test]
fn fixes_name_the_first_component_that_breaks_the_rule() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let base = std::fs::canonicalize(d.path()).unwrap();
    let set = |p: &Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    };
    set(&base, 0o755);
    let a = base.join("a");
    let b = a.join("b");
    std::fs::create_dir_all(&b).unwrap();
    set(&a, 0o775);
    set(&b, 0o755);
    let me = nix::unistd::geteuid().as_raw();
    assert_eq!(
        trust_fix(&b, me, "me:me", true),
        Some(format!("chmod go-w {}", a.display()))
    );
    set(&a, 0o755);
    assert_eq!(trust_fix(&b, me, "me:me", true), None);
    // A sticky directory is fine above, not as the private directory.
    set(&b, 0o1777);
    assert_eq!(
        trust_fix(&b, me, "me:me", true),
        Some(format!("chmod go-w {}", b.display()))
    );
    if me == 0 {
        assert_eq!(trust_fix(&b, me, "me:me", false), None);
        nix::unistd::chown(&b, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        assert_eq!(
            trust_fix(&b, me, "mirror:mirror", false),
            Some(format!("chown mirror:mirror {}", b.display()))
        );
        nix::unistd::chown(&a, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        assert_eq!(
            trust_fix(&b, me, "mirror:mirror", false),
            Some(format!("chown root:root {}", a.display()))
        );
    }
}

#[test]
fn specials_without_the_sandbox_is_a_warning() {
    let warned = |sandbox: &str| {
        let text = format!(
            "[gate]\nsandbox = \"{sandbox}\"\n[modules.a]\npath = \"/nonexistent-a\"\nread_only = false\nspecials = true\n[clients.c]\nmodules = [\"a\"]\n"
        );
        let p = policy::load_text(Path::new("/p.toml"), &text).unwrap();
        general(&p, Path::new("/usr/local/bin/rsync-gate"), &[])
            .findings
            .iter()
            .any(|f| !f.error && f.text.contains("specials = true with sandbox = \"off\""))
    };
    assert!(warned("off"));
    assert!(!warned("best-effort"));
}
