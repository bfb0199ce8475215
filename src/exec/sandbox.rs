//! Kernel confinement with Landlock.
//!
//! Just before rsync starts, the gate restricts its own filesystem access
//! (and so rsync's, which inherits it) to the granted module roots — read
//! only for pulls, read-write for pushes — plus what rsync needs to run: its
//! binary, shared libraries, and a few name-service and locale files. The
//! path checks decide what rsync is asked to do; the kernel then refuses
//! whatever those checks cannot see (a filter merge file named in-protocol,
//! a race that slipped past the pins).
//!
//! The gate itself only waits and writes to descriptors it already holds
//! (the audit log, syslog) once restricted, which Landlock does not limit.

use std::path::Path;

use landlock::{
    ABI, Access, AccessFs, BitFlags, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
    path_beneath_rules,
};

pub use crate::plan::SandboxPlan;

/// The newest ABI whose rights we handle. (Later ones add restrictions on
/// connecting to UNIX sockets, which name-service lookups need.)
const ABI_HANDLED: ABI = ABI::V8;

/// Trees rsync needs to read (and execute from) to run at all.
pub const SYSTEM_READ_EXEC: &[&str] = &["/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin"];

/// Files rsync reads for names, time and locale.
pub const SYSTEM_READ: &[&str] = &[
    "/etc/ld.so.cache",
    "/etc/ld.so.preload",
    "/etc/nsswitch.conf",
    "/etc/passwd",
    "/etc/group",
    "/etc/localtime",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/resolv.conf",
    "/etc/gai.conf",
    "/etc/locale.alias",
    "/dev/urandom",
    "/dev/random",
];

/// Files rsync may write that are not data: the null device.
pub const SYSTEM_WRITE: &[&str] = &["/dev/null"];

/// What the kernel enforces once the sandbox is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Every requested restriction.
    Full,
    /// A subset (an older Landlock ABI); device and special files are kept
    /// out from the first ABI on.
    Partial,
}

/// Rights in a writable tree: everything but executing and creating
/// device nodes, FIFOs and sockets (granted per tree, below).
fn write_rights() -> BitFlags<AccessFs> {
    AccessFs::from_all(ABI_HANDLED) & !(device_rights() | special_rights() | AccessFs::Execute)
}

/// Creating device nodes.
fn device_rights() -> BitFlags<AccessFs> {
    AccessFs::MakeChar | AccessFs::MakeBlock
}

/// Creating FIFOs and sockets.
fn special_rights() -> BitFlags<AccessFs> {
    AccessFs::MakeFifo | AccessFs::MakeSock
}

fn read_rights() -> BitFlags<AccessFs> {
    AccessFs::ReadFile | AccessFs::ReadDir
}

fn build(plan: &SandboxPlan) -> Result<landlock::RulesetCreated, landlock::RulesetError> {
    let exec = AccessFs::ReadFile | AccessFs::ReadDir | AccessFs::Execute;
    let sys_exec: Vec<&Path> = SYSTEM_READ_EXEC.iter().map(Path::new).collect();
    let sys_read: Vec<&Path> = SYSTEM_READ.iter().map(Path::new).collect();
    let sys_write: Vec<&Path> = SYSTEM_WRITE.iter().map(Path::new).collect();
    Ruleset::default()
        .handle_access(AccessFs::from_all(ABI_HANDLED))?
        .create()?
        .add_rules(path_beneath_rules(&sys_exec, exec))?
        .add_rules(path_beneath_rules(&plan.exec, exec))?
        .add_rules(path_beneath_rules(&sys_read, read_rights()))?
        .add_rules(path_beneath_rules(
            &sys_write,
            read_rights() | AccessFs::WriteFile,
        ))?
        .add_rules(path_beneath_rules(
            &plan.append,
            AccessFs::ReadFile | AccessFs::WriteFile,
        ))?
        .add_rules(path_beneath_rules(&plan.read, read_rights()))?
        .add_rules(path_beneath_rules(
            &plan.write,
            read_rights() | write_rights(),
        ))?
        // Rights add up along a path: these trees are among `write`.
        .add_rules(path_beneath_rules(&plan.devices, device_rights()))?
        .add_rules(path_beneath_rules(&plan.specials, special_rights()))
}

/// Apply the sandbox to this process (and so to everything it starts).
/// Anything less than an enforced ruleset is an error: the plan was made
/// on the kernel's word that it has Landlock.
pub fn apply(plan: &SandboxPlan) -> Result<Status, String> {
    let created = build(plan).map_err(|e| format!("cannot build the Landlock ruleset: {e}"))?;
    let status = created
        .restrict_self()
        .map_err(|e| format!("cannot apply the Landlock ruleset: {e}"))?;
    match status.ruleset {
        RulesetStatus::FullyEnforced => Ok(Status::Full),
        RulesetStatus::PartiallyEnforced => Ok(Status::Partial),
        RulesetStatus::NotEnforced => Err("the kernel does not enforce Landlock".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn rights_for_writable_trees() {
        let w = write_rights();
        assert!(w.contains(
            AccessFs::WriteFile | AccessFs::MakeReg | AccessFs::RemoveFile | AccessFs::Refer
        ));
        for node in [
            AccessFs::MakeChar,
            AccessFs::MakeBlock,
            AccessFs::MakeFifo,
            AccessFs::MakeSock,
        ] {
            assert!(!w.contains(node), "{node:?}");
        }
        assert!(!w.contains(AccessFs::Execute));
        assert_eq!(device_rights(), AccessFs::MakeChar | AccessFs::MakeBlock);
        assert_eq!(special_rights(), AccessFs::MakeFifo | AccessFs::MakeSock);
    }

    /// The sandbox applies to the calling process, so exercise it in a
    /// child: the test binary re-runs itself with a marker variable.
    #[test]
    fn kernel_refuses_what_the_plan_does_not_grant() {
        if std::env::var_os("RSYNC_GATE_SANDBOX_CHILD").is_some() {
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let inside = d.path().join("inside");
        let outside = d.path().join("outside");
        std::fs::create_dir(&inside).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(inside.join("ok"), "ok").unwrap();
        std::fs::write(outside.join("secret"), "s").unwrap();
        for sub in ["pipes", "plain", "logs"] {
            std::fs::create_dir(d.path().join(sub)).unwrap();
        }
        std::fs::write(d.path().join("logs/audit.jsonl"), "first\n").unwrap();
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "exec::sandbox::tests::sandboxed_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("RSYNC_GATE_SANDBOX_CHILD", d.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        assert!(
            text.contains("CHILD-CHECKED"),
            "the child did not run its checks: {text}"
        );
    }

    #[test]
    fn sandboxed_child() {
        let Some(base) = std::env::var_os("RSYNC_GATE_SANDBOX_CHILD") else {
            return;
        };
        let base = std::path::PathBuf::from(base);
        let inside = base.join("inside");
        let (pipes, plain) = (base.join("pipes"), base.join("plain"));
        let log = base.join("logs/audit.jsonl");
        let plan = SandboxPlan {
            read: vec![inside.clone()],
            write: vec![pipes.clone(), plain.clone()],
            specials: vec![pipes.clone()],
            append: vec![log.clone()],
            ..Default::default()
        };
        if crate::sys::landlock_abi().is_none() {
            eprintln!("CHILD-CHECKED (no Landlock on this kernel)");
            return;
        }
        apply(&plan).unwrap();
        assert_eq!(std::fs::read_to_string(inside.join("ok")).unwrap(), "ok");
        let e = std::fs::read_to_string(base.join("outside/secret")).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);
        let e = std::fs::write(inside.join("new"), "x").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);
        // Writable trees: files everywhere; FIFOs and sockets only where
        // the plan lists them; device nodes nowhere.
        use nix::sys::stat::{Mode, SFlag, makedev, mknod};
        let fifo = |dir: &std::path::Path| nix::unistd::mkfifo(&dir.join("fifo"), Mode::S_IRWXU);
        let sock = |dir: &std::path::Path| std::os::unix::net::UnixListener::bind(dir.join("sock"));
        let dev = |dir: &std::path::Path| {
            mknod(
                &dir.join("null"),
                SFlag::S_IFCHR,
                Mode::S_IRWXU,
                makedev(1, 3),
            )
        };
        std::fs::write(plain.join("f"), "x").unwrap();
        std::fs::write(pipes.join("f"), "x").unwrap();
        // And read there, files and directories.
        assert_eq!(std::fs::read_to_string(plain.join("f")).unwrap(), "x");
        assert_eq!(std::fs::read_dir(&plain).unwrap().count(), 1);
        fifo(&pipes).unwrap();
        sock(&pipes).unwrap();
        assert_eq!(fifo(&plain).unwrap_err(), nix::errno::Errno::EACCES);
        assert_eq!(
            sock(&plain).unwrap_err().kind(),
            std::io::ErrorKind::PermissionDenied
        );
        assert!(dev(&pipes).is_err());
        assert!(dev(&plain).is_err());
        assert!(!pipes.join("null").exists() && !plain.join("null").exists());
        // A file to append to: written and read, nothing made beside it.
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
            f.write_all(b"second\n").unwrap();
        }
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "first\nsecond\n");
        let e = std::fs::write(base.join("logs/other"), "x").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);
        // Executing system binaries still works.
        assert!(Command::new("/bin/true").status().unwrap().success());
        eprintln!("CHILD-CHECKED");
    }
}
