//! Who may change a path: the rule OpenSSH's StrictModes and sudo's sudoers
//! checks apply. Every component of a trusted path, symlinks included, must
//! be owned by root or the SSH account and must not be writable by group or
//! others, except a root-owned sticky directory such as `/tmp` (others cannot
//! replace entries in it).

use std::fs::Metadata;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Most symlinks followed while walking one path.
const MAX_LINKS: usize = 40;

fn describe(path: &Path, md: &Metadata, account: u32) -> Option<String> {
    let mode = md.permissions().mode();
    let owner = md.uid();
    if owner != 0 && owner != account {
        let who = if account == 0 {
            "root"
        } else {
            "root or the account"
        };
        return Some(format!(
            "{} is owned by uid {owner}, not {who}",
            path.display()
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
    if !path.is_absolute() {
        return Err(format!("{} is not absolute", path.display()));
    }
    let mut cur = PathBuf::from("/");
    let root_md = std::fs::metadata(&cur).map_err(|e| format!("/: {e}"))?;
    if let Some(why) = describe(&cur, &root_md, account) {
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
        if let Some(why) = describe(&next, &md, account) {
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

/// Is `path` (which need not exist yet) at or below the real directory
/// `root`? The nearest existing ancestor is resolved.
pub fn is_within(path: &Path, root: &Path) -> bool {
    let mut probe = path.to_path_buf();
    let mut tail = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(&probe) {
            let full = tail
                .iter()
                .rev()
                .fold(real, |acc: PathBuf, c: &std::ffi::OsString| acc.join(c));
            return full.starts_with(root);
        }
        match (
            probe.file_name().map(ToOwned::to_owned),
            probe.parent().map(Path::to_path_buf),
        ) {
            (Some(name), Some(parent)) => {
                tail.push(name);
                probe = parent;
            }
            _ => return path.starts_with(root),
        }
    }
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
