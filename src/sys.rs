//! The only module allowed `unsafe`: raw descriptor flag changes the safe
//! wrappers cannot express for descriptors we do not own.
#![allow(unsafe_code)]

use std::io;

/// Mark every inherited descriptor above stderr close-on-exec, so nothing
/// the gate was started with leaks into rsync. Descriptors the gate itself
/// opens later are close-on-exec by default; the pins it hands to rsync are
/// opened without the flag on purpose.
pub fn cloexec_inherited() -> io::Result<()> {
    // SAFETY: close_range(2) with CLOSE_RANGE_CLOEXEC only changes
    // descriptor flags in this process; it takes no pointers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r == 0 {
        return Ok(());
    }
    // Older kernels: walk /proc/self/fd.
    let mut fds = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let entry = entry?;
        if let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<libc::c_int>().ok())
            && fd > 2
        {
            fds.push(fd);
        }
    }
    for fd in fds {
        // SAFETY: fcntl(2) F_GETFD/F_SETFD on an integer descriptor takes
        // no pointers; a descriptor that closed meanwhile returns EBADF.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
    Ok(())
}
