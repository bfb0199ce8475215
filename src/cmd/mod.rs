//! The administrator's commands and their rendering: `check`,
//! `authorized-keys`, `audit`, `import`. They read the policy, the log, or
//! (`import`) an rsyncd.conf or authorized_keys file; they never serve a
//! client. `check` also acts as the SSH account (in a child process) to try
//! what `serve` will do, writing nothing.

pub mod audit;
pub mod authorized_keys;
pub mod check;
pub mod import;
