//! Who may change a path: the rule OpenSSH's StrictModes and sudo's sudoers
//! checks apply. Every component of a trusted path, symlinks included, must
//! be owned by root or the SSH account and must not be writable by group or
//! others, except a root-owned sticky directory such as `/tmp` (others cannot
//! replace entries in it).
//!
//! Inside an unprivileged user namespace (a rootless container), files owned
//! by someone outside it show as the kernel's overflow uid; when no uid inside
//! the namespace is that uid, nobody inside can act as their owner, and they
//! count as root's ([`root_alias`]).

use std::fs::Metadata;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Most symlinks followed while walking one path.
const MAX_LINKS: usize = 40;

/// The identity map of the initial user namespace, as
/// `/proc/self/uid_map` shows it (fields separated by blanks).
const IDENTITY_UID_MAP: [&str; 3] = ["0", "0", "4294967295"];

/// The uid that counts as root's besides 0, given this process's
/// `/proc/self/uid_map` and `/proc/sys/kernel/overflowuid`: the overflow
/// uid, when the process is in a user namespace other than the initial one
/// and no uid inside it is the overflow uid (so every file showing it is
/// owned by someone outside, whom nobody inside can act as). Otherwise none:
/// in the initial namespace, or where the overflow uid is a real account
/// inside (a container mapping 65536 ids maps `nobody`), the rule stays as
/// it is. Unreadable or malformed input gives none.
pub fn root_alias_from(uid_map: &str, overflow_uid: &str) -> Option<u32> {
    let overflow: u32 = overflow_uid.trim().parse().ok()?;
    let lines: Vec<Vec<&str>> = uid_map
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| !f.is_empty())
        .collect();
    if lines.is_empty() || lines.iter().any(|f| f.len() != 3) {
        return None;
    }
    if lines.len() == 1
        && lines
            .first()
            .is_some_and(|f| f.as_slice() == IDENTITY_UID_MAP)
    {
        return None;
    }
    for f in &lines {
        let (Some(inside), Some(count)) = (
            f.first().and_then(|v| v.parse::<u64>().ok()),
            f.get(2).and_then(|v| v.parse::<u64>().ok()),
        ) else {
            return None;
        };
        if (inside..inside.saturating_add(count)).contains(&u64::from(overflow)) {
            return None;
        }
    }
    Some(overflow)
}

static ALIAS: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();

/// [`root_alias_from`] for this process (read once).
pub fn root_alias() -> Option<u32> {
    *ALIAS.get_or_init(|| {
        let map = std::fs::read_to_string("/proc/self/uid_map").ok()?;
        let overflow = std::fs::read_to_string("/proc/sys/kernel/overflowuid").ok()?;
        root_alias_from(&map, &overflow)
    })
}

/// Take the session's [`root_alias`] instead of reading it: the daemon's
/// hooks run inside the kernel sandbox, where `/proc` is out of reach, and
/// the gate that started the daemon passes what it found. Only the hooks
/// call this (before any trust check); nothing a client sends reaches it.
pub fn adopt_root_alias(alias: Option<u32>) {
    let _ = ALIAS.set(alias);
}

/// Is `owner` root (or [`root_alias`]) or `account`?
pub fn root_or(owner: u32, account: u32) -> bool {
    owner == 0 || owner == account || Some(owner) == root_alias()
}

/// An owner as a message names it: `mirror (uid 999)`, or `uid 999` when
/// no account has that uid (or the account database cannot be read).
pub fn owner_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => format!("{} (uid {uid})", crate::escape::message(u.name.as_bytes())),
        _ => format!("uid {uid}"),
    }
}

fn describe(path: &Path, md: &Metadata, account: u32, alias: Option<u32>) -> Option<String> {
    let mode = md.permissions().mode();
    let owner = if Some(md.uid()) == alias { 0 } else { md.uid() };
    if owner != 0 && owner != account {
        let who = if account == 0 {
            "root"
        } else {
            "root or the account"
        };
        return Some(format!(
            "{} is owned by {}, not {who}",
            path.display(),
            owner_name(owner)
        ));
    }
    let sticky = mode & 0o1000 != 0;
    if md.is_dir() && sticky && owner == 0 {
        return None;
    }
    if !md.file_type().is_symlink() && mode & 0o022 != 0 {
        return Some(format!(
            "{} is writable by {} (mode {:o})",
            path.display(),
            if mode & 0o002 != 0 {
                "others"
            } else {
                "its group"
            },
            mode & 0o7777
        ));
    }
    None
}

/// Walk `path` from `/`, following symlinks, and check every directory,
/// symlink and the final object: each must be owned by root or `account`
/// (pass 0 to allow root alone). Returns the real path on success, or a
/// description of the first violation.
pub fn check_path(path: &Path, account: u32) -> Result<PathBuf, String> {
    check_path_with(path, account, root_alias())
}

/// [`check_path`], with `alias` (see [`root_alias`]) counting as root.
fn check_path_with(path: &Path, account: u32, alias: Option<u32>) -> Result<PathBuf, String> {
    if !path.is_absolute() {
        return Err(format!("{} is not absolute", path.display()));
    }
    let mut cur = PathBuf::from("/");
    let root_md = std::fs::metadata(&cur).map_err(|e| format!("/: {e}"))?;
    if let Some(why) = describe(&cur, &root_md, account, alias) {
        return Err(why);
    }
    let mut pending: Vec<PathBuf> = path
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(PathBuf::from(n)),
            Component::ParentDir => Some(PathBuf::from("..")),
            _ => None,
        })
        .collect();
    let mut links = 0;
    while let Some(comp) = pending.pop() {
        if comp.as_os_str() == ".." {
            cur.pop();
            continue;
        }
        let next = cur.join(&comp);
        let md =
            std::fs::symlink_metadata(&next).map_err(|e| format!("{}: {e}", next.display()))?;
        if let Some(why) = describe(&next, &md, account, alias) {
            return Err(why);
        }
        if md.file_type().is_symlink() {
            links += 1;
            if links > MAX_LINKS {
                return Err(format!("{}: too many symlinks", path.display()));
            }
            let target =
                std::fs::read_link(&next).map_err(|e| format!("{}: {e}", next.display()))?;
            if target.is_absolute() {
                cur = PathBuf::from("/");
            }
            for c in target.components().rev() {
                match c {
                    Component::Normal(n) => pending.push(PathBuf::from(n)),
                    Component::ParentDir => pending.push(PathBuf::from("..")),
                    _ => {}
                }
            }
        } else {
            cur = next;
        }
    }
    Ok(cur)
}

/// A directory the gate keeps its own files in (`lock_dir`, the audit log's
/// directory): [`check_path`] for every component, and the directory itself
/// writable by its owner alone. A sticky directory writable by others (such
/// as `/tmp`) is fine above it, but not as it: anyone could create the names
/// the gate is about to use (a link, a file of their own). Returns the real
/// path.
pub fn check_private_dir(path: &Path, account: u32) -> Result<PathBuf, String> {
    let real = check_path(path, account)?;
    let md = std::fs::symlink_metadata(&real).map_err(|e| format!("{}: {e}", real.display()))?;
    if !md.is_dir() {
        return Err(format!("{} is not a directory", path.display()));
    }
    let mode = md.permissions().mode();
    if mode & 0o022 != 0 {
        return Err(format!(
            "{} is writable by {} (mode {:o}); it must be writable by its owner alone",
            path.display(),
            if mode & 0o002 != 0 {
                "others"
            } else {
                "its group"
            },
            mode & 0o7777
        ));
    }
    Ok(real)
}

/// [`check_private_dir`], creating the directory (and missing ones above
/// it) with `mode` first when it does not exist.
pub fn ensure_private_dir(path: &Path, account: u32, mode: u32) -> Result<PathBuf, String> {
    use std::os::unix::fs::DirBuilderExt;
    if std::fs::symlink_metadata(path).is_err() {
        match std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(path)
        {
            // A recursive create succeeds where the directory exists by
            // now (made by a parallel session); anything else in the way
            // is an error.
            Ok(()) => {}
            Err(e) => return Err(format!("cannot create {}: {e}", path.display())),
        }
    }
    check_private_dir(path, account)
}

/// Could whoever writes in the real directory `root` change where `path`
/// (which need not exist yet) leads? True when `path` resolves to `root` or
/// below it, and also when resolving it passes through an entry strictly
/// below `root` on the way: a symlink there (which the writer could
/// replace) or a directory there. Symlinks are followed as the kernel
/// follows them; missing components are taken as they are spelled. A loop
/// counts as inside (fail closed).
pub fn is_within(path: &Path, root: &Path) -> bool {
    let mut cur = PathBuf::from("/");
    let mut pending: Vec<std::ffi::OsString> = path
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut links = 0;
    while let Some(comp) = pending.pop() {
        if comp == ".." {
            cur.pop();
            continue;
        }
        let next = cur.join(&comp);
        if next.starts_with(root) && next != root {
            return true;
        }
        match std::fs::symlink_metadata(&next) {
            Ok(md) if md.file_type().is_symlink() => {
                links += 1;
                let Ok(target) = std::fs::read_link(&next) else {
                    return true;
                };
                if links > MAX_LINKS {
                    return true;
                }
                if target.is_absolute() {
                    cur = PathBuf::from("/");
                }
                for c in target.components().rev() {
                    match c {
                        Component::Normal(n) => pending.push(n.to_os_string()),
                        Component::ParentDir => pending.push("..".into()),
                        _ => {}
                    }
                }
            }
            _ => cur = next,
        }
    }
    cur.starts_with(root)
}

/// Does the directory `root` (a real path) contain `home`'s `.ssh` or dot
/// files, i.e. is `home` (or its `.ssh`, wherever it really lives) at or
/// below `root`?
pub fn contains_home(root: &Path, home: &Path) -> bool {
    let real_home = std::fs::canonicalize(home).unwrap_or_else(|_| home.to_path_buf());
    if real_home.starts_with(root) || home.starts_with(root) {
        return true;
    }
    match std::fs::canonicalize(home.join(".ssh")) {
        Ok(ssh) => ssh.starts_with(root),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn uid() -> u32 {
        nix::unistd::geteuid().as_raw()
    }

    fn set_mode(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn owners_are_named() {
        assert_eq!(owner_name(0), "root (uid 0)");
        // No account has this uid.
        assert_eq!(owner_name(4_000_000_123), "uid 4000000123");
        assert!(owner_name(65534).ends_with("(uid 65534)"));
        if uid() != 0 {
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, "").unwrap();
        set_mode(&f, 0o644);
        nix::unistd::chown(&f, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        let md = std::fs::symlink_metadata(&f).unwrap();
        assert_eq!(
            describe(&f, &md, 0, None),
            Some(format!(
                "{} is owned by {}, not root",
                f.display(),
                owner_name(65534)
            ))
        );
    }

    #[test]
    fn accepts_private_trees_under_tmp() {
        let d = tempfile::tempdir().unwrap();
        let sub = d.path().join("a/b");
        std::fs::create_dir_all(&sub).unwrap();
        set_mode(&d.path().join("a"), 0o755);
        set_mode(&sub, 0o755);
        assert_eq!(
            check_path(&sub, uid()).unwrap(),
            std::fs::canonicalize(&sub).unwrap()
        );
    }

    #[test]
    fn refuses_group_or_world_writable_components() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        std::fs::create_dir(&a).unwrap();
        std::fs::create_dir(a.join("b")).unwrap();
        set_mode(&a, 0o775);
        let e = check_path(&a.join("b"), uid()).unwrap_err();
        assert!(e.contains("writable by its group"), "{e}");
        set_mode(&a, 0o757);
        let e = check_path(&a.join("b"), uid()).unwrap_err();
        assert!(e.contains("writable by others"), "{e}");
        // World-writable *and* sticky but not root-owned is still refused
        // only when not owned by root; as root the sticky rule applies.
        set_mode(&a, 0o1777);
        let r = check_path(&a.join("b"), uid());
        assert_eq!(r.is_ok(), uid() == 0, "{r:?}");
    }

    #[test]
    fn follows_symlinks_and_checks_their_targets() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("real");
        std::fs::create_dir(&real).unwrap();
        set_mode(&real, 0o755);
        let open = d.path().join("open");
        std::fs::create_dir(&open).unwrap();
        set_mode(&open, 0o777);
        std::fs::create_dir(open.join("x")).unwrap();
        symlink(&real, d.path().join("good")).unwrap();
        symlink(open.join("x"), d.path().join("bad")).unwrap();
        assert_eq!(
            check_path(&d.path().join("good"), uid()).unwrap(),
            std::fs::canonicalize(&real).unwrap()
        );
        assert!(check_path(&d.path().join("bad"), uid()).is_err());
        assert!(check_path(&d.path().join("missing"), uid()).is_err());
    }

    #[test]
    fn root_only_when_asked() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("policy.toml");
        std::fs::write(&f, "").unwrap();
        set_mode(&f, 0o644);
        let r = check_path(&f, 0);
        assert_eq!(r.is_ok(), uid() == 0, "{r:?}");
        set_mode(&f, 0o664);
        assert!(
            check_path(&f, 0)
                .unwrap_err()
                .contains("writable by its group")
        );
    }

    #[test]
    fn within() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        std::fs::create_dir(root.join("m")).unwrap();
        assert!(is_within(&root.join("m/not/yet/there"), &root.join("m")));
        assert!(!is_within(&root.join("other/x"), &root.join("m")));
        symlink(root.join("m"), root.join("alias")).unwrap();
        assert!(is_within(&root.join("alias/log"), &root.join("m")));
    }

    #[test]
    fn within_follows_every_link_on_the_way() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        let m = root.join("m");
        let bin = root.join("usr/bin");
        std::fs::create_dir_all(&m).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("gate"), "").unwrap();
        // /opt/gate -> m/link -> usr/bin: the binary lies outside m, but a
        // writer in m can replace m/link and so what /opt/gate names.
        symlink(&bin, m.join("link")).unwrap();
        std::fs::create_dir(root.join("opt")).unwrap();
        symlink(m.join("link"), root.join("opt/bin")).unwrap();
        assert!(is_within(&root.join("opt/bin/gate"), &m));
        assert!(!is_within(&bin.join("gate"), &m));
        // Passing through the module root itself (its name lives above it)
        // and leaving by `..` is not inside.
        symlink("../usr/bin", root.join("opt/up")).unwrap();
        symlink(root.join("m/../usr/bin"), root.join("opt/via")).unwrap();
        assert!(!is_within(&root.join("opt/via/gate"), &m));
        // A directory below the root, left again by `..`, is inside: its
        // name is the writer's.
        std::fs::create_dir(m.join("d")).unwrap();
        symlink(root.join("m/d/../../usr/bin"), root.join("opt/through")).unwrap();
        assert!(is_within(&root.join("opt/through/gate"), &m));
        // The root itself and everything below it.
        assert!(is_within(&m, &m));
        assert!(is_within(&m.join("missing/file"), &m));
        // A loop fails closed.
        symlink("loop", root.join("loop")).unwrap();
        assert!(is_within(&root.join("loop/x"), &m));
    }

    #[test]
    fn private_directories_are_their_owners_alone() {
        let d = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(d.path()).unwrap();
        let dir = base.join("run");
        assert!(check_private_dir(&dir, uid()).is_err(), "missing");
        assert_eq!(ensure_private_dir(&dir, uid(), 0o755).unwrap(), dir);
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o022,
            0
        );
        assert_eq!(check_private_dir(&dir, uid()).unwrap(), dir);
        // Sticky and writable by others: fine above, not as the directory.
        set_mode(&dir, 0o1777);
        let e = check_private_dir(&dir, uid()).unwrap_err();
        assert!(e.contains("writable by others"), "{e}");
        assert!(ensure_private_dir(&dir, uid(), 0o755).is_err());
        set_mode(&dir, 0o775);
        assert!(check_private_dir(&dir, uid()).is_err());
        set_mode(&dir, 0o755);
        std::fs::write(base.join("file"), "").unwrap();
        set_mode(&base.join("file"), 0o644);
        let e = check_private_dir(&base.join("file"), uid()).unwrap_err();
        assert!(e.contains("not a directory"), "{e}");
        // A link to a private directory is judged by where it leads.
        symlink(&dir, base.join("alias")).unwrap();
        assert_eq!(check_private_dir(&base.join("alias"), uid()).unwrap(), dir);
    }

    #[test]
    fn the_overflow_uid_is_roots_only_where_nobody_inside_has_it() {
        let identity = "         0          0 4294967295\n";
        assert_eq!(root_alias_from(identity, "65534\n"), None);
        // `unshare -U -r`: only root mapped; 65534 is nobody's inside.
        assert_eq!(
            root_alias_from("         0          0          1\n", "65534\n"),
            Some(65534)
        );
        // A rootless container mapping 65536 ids maps 65534 (`nobody`): a
        // real account inside, so nothing changes.
        assert_eq!(root_alias_from("0 1000 1\n1 100000 65536\n", "65534"), None);
        assert_eq!(
            root_alias_from("0 1000 1\n1 100000 1000\n", "65534"),
            Some(65534)
        );
        // The range ends before the overflow uid.
        assert_eq!(root_alias_from("0 100000 65534\n", "65534"), Some(65534));
        assert_eq!(root_alias_from("0 100000 65535\n", "65534"), None);
        // Unreadable or odd input changes nothing.
        for (map, ov) in [
            ("", "65534"),
            ("0 0\n", "65534"),
            ("0 0 x\n", "65534"),
            ("0 1000 1\n", ""),
            ("0 1000 1\n", "-1"),
        ] {
            assert_eq!(root_alias_from(map, ov), None, "{map:?} {ov:?}");
        }
    }

    #[test]
    fn an_aliased_owner_counts_as_root() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("policy.toml");
        std::fs::write(&f, "").unwrap();
        set_mode(&f, 0o644);
        let owner = std::fs::metadata(&f).unwrap().uid();
        let dir_owner = std::fs::metadata(d.path()).unwrap().uid();
        // As the test's own uid: the file's owner aliased to root passes
        // the root-only rule wherever the rest of the path is root's.
        let alias = Some(owner);
        let walked = check_path_with(&f, 0, alias);
        let above_ok = dir_owner == 0 || dir_owner == owner;
        assert_eq!(walked.is_ok(), above_ok, "{walked:?}");
        let md = std::fs::metadata(&f).unwrap();
        assert_eq!(describe(&f, &md, 0, alias), None);
        if owner != 0 {
            assert!(describe(&f, &md, 0, None).is_some());
            assert!(describe(&f, &md, 0, Some(owner + 1)).is_some());
        }
        // The alias never excuses a mode.
        set_mode(&f, 0o666);
        let md = std::fs::metadata(&f).unwrap();
        assert!(describe(&f, &md, 0, alias).is_some());
    }

    /// A file owned by neither root nor the account the checks are made
    /// for: as root, one given to an unused uid; otherwise the test's own.
    fn foreign_file(d: &Path) -> (PathBuf, u32) {
        use std::os::unix::fs::MetadataExt;
        let f = d.join("foreign");
        std::fs::write(&f, "").unwrap();
        set_mode(&f, 0o644);
        if uid() == 0 {
            std::os::unix::fs::chown(&f, Some(4_000_000_123), None).unwrap();
        }
        let owner = std::fs::metadata(&f).unwrap().uid();
        assert_ne!(owner, 0);
        (f, owner)
    }

    #[test]
    fn owners_other_than_root_and_the_account_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let (f, owner) = foreign_file(d.path());
        let md = std::fs::symlink_metadata(&f).unwrap();
        let other = owner.wrapping_add(1);
        assert_eq!(
            describe(&f, &md, other, None),
            Some(format!(
                "{} is owned by {}, not root or the account",
                f.display(),
                owner_name(owner)
            ))
        );
        assert_eq!(
            describe(&f, &md, 0, None),
            Some(format!(
                "{} is owned by {}, not root",
                f.display(),
                owner_name(owner)
            ))
        );
        // The account's own file, and one whose owner is root's alias.
        assert_eq!(describe(&f, &md, owner, None), None);
        assert_eq!(describe(&f, &md, other, Some(owner)), None);
        // root_or: root, the account, nobody else (no alias outside a user
        // namespace, where the tests run).
        assert_eq!(root_alias(), None);
        assert!(root_or(0, 999));
        assert!(root_or(999, 999));
        assert!(!root_or(1000, 999));
        assert!(!root_or(1, 999));
        assert!(!root_or(65534, 999));
    }

    #[test]
    fn the_identity_map_has_no_alias_even_for_the_last_uid() {
        // 0..4294967295 leaves out 4294967295 itself: only the identity
        // rule says there is no alias.
        assert_eq!(root_alias_from("0 0 4294967295\n", "4294967295"), None);
        assert_eq!(
            root_alias_from("0 0 4294967294\n", "4294967295"),
            Some(4294967295)
        );
    }

    #[test]
    fn dot_dot_is_walked_as_the_kernel_walks_it() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        for sub in ["x", "y"] {
            std::fs::create_dir(root.join(sub)).unwrap();
            set_mode(&root.join(sub), 0o755);
        }
        // In the path itself and in a link's target.
        assert_eq!(
            check_path(&root.join("x/../y"), uid()).unwrap(),
            root.join("y")
        );
        symlink("../y", root.join("x/up")).unwrap();
        assert_eq!(
            check_path(&root.join("x/up"), uid()).unwrap(),
            root.join("y")
        );
        // Leaving a module by `..` is not inside it.
        assert!(!is_within(&root.join("x/../y/f"), &root.join("x")));
        assert!(is_within(&root.join("y/../x/f"), &root.join("x")));
    }

    #[test]
    fn at_most_forty_links_are_followed() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        std::fs::create_dir(root.join("end")).unwrap();
        set_mode(&root.join("end"), 0o755);
        // l0 -> end, l1 -> l0, ...: walking lN follows N + 1 links.
        symlink(root.join("end"), root.join("l0")).unwrap();
        for i in 1..=MAX_LINKS {
            symlink(root.join(format!("l{}", i - 1)), root.join(format!("l{i}"))).unwrap();
        }
        let last_ok = root.join(format!("l{}", MAX_LINKS - 1));
        assert_eq!(check_path(&last_ok, uid()).unwrap(), root.join("end"));
        let e = check_path(&root.join(format!("l{MAX_LINKS}")), uid()).unwrap_err();
        assert!(e.ends_with(": too many symlinks"), "{e}");
        // A loop ends the same way.
        symlink("b", root.join("a")).unwrap();
        symlink("a", root.join("b")).unwrap();
        let e = check_path(&root.join("a"), uid()).unwrap_err();
        assert!(e.ends_with(": too many symlinks"), "{e}");
    }

    #[test]
    fn a_private_directory_that_cannot_be_made_says_so() {
        let d = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(d.path()).unwrap();
        std::fs::write(base.join("file"), "").unwrap();
        set_mode(&base.join("file"), 0o644);
        let e = ensure_private_dir(&base.join("file/run"), uid(), 0o755).unwrap_err();
        assert_eq!(
            e,
            format!(
                "cannot create {}: Not a directory (os error 20)",
                base.join("file/run").display()
            )
        );
    }

    #[test]
    fn within_fails_closed_past_forty_links() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        std::fs::create_dir(root.join("m")).unwrap();
        std::fs::create_dir(root.join("out")).unwrap();
        // l0 -> out, l1 -> l0, ...: lN is N + 1 links from `out`, which is
        // not inside m; one link too many counts as inside.
        symlink(root.join("out"), root.join("l0")).unwrap();
        for i in 1..=MAX_LINKS {
            symlink(root.join(format!("l{}", i - 1)), root.join(format!("l{i}"))).unwrap();
        }
        let m = root.join("m");
        assert!(!is_within(&root.join(format!("l{}/f", MAX_LINKS - 1)), &m));
        assert!(is_within(&root.join(format!("l{MAX_LINKS}/f")), &m));
    }

    #[test]
    fn a_home_spelled_outside_but_lying_inside_is_contained() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        let module = root.join("srv");
        std::fs::create_dir_all(module.join("u")).unwrap();
        symlink(module.join("u"), root.join("home")).unwrap();
        assert!(contains_home(&module, &root.join("home")));
        // And one spelled inside that leads out is contained too (its name
        // is the module's).
        std::fs::create_dir(root.join("elsewhere")).unwrap();
        symlink(root.join("elsewhere"), module.join("away")).unwrap();
        assert!(contains_home(&module, &module.join("away")));
    }

    #[test]
    fn home_containment() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        let home = root.join("home/u");
        std::fs::create_dir_all(&home).unwrap();
        assert!(contains_home(&root, &home));
        assert!(contains_home(&root.join("home"), &home));
        assert!(contains_home(&home, &home));
        let other = root.join("srv");
        std::fs::create_dir(&other).unwrap();
        assert!(!contains_home(&other, &home));
        // ~/.ssh symlinked into the module counts.
        std::fs::create_dir(other.join("keys")).unwrap();
        symlink(other.join("keys"), home.join(".ssh")).unwrap();
        assert!(contains_home(&other, &home));
    }
}
