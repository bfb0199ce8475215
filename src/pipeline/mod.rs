//! The pipeline that joins the stages, and its three users: `serve` (the
//! forced command), `explain` (the same decision, nothing run) and the
//! daemon's hooks (each in-band request of a `host::module` session). All
//! three go through [`evaluate`], the one front half.

pub mod daemon_log;
pub mod evaluate;
pub mod explain;
pub mod filelog;
pub mod hook;
pub mod serve;
pub mod session;
pub mod triggers;
