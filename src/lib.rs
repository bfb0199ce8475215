//! rsync-gate: a forced-command gatekeeper for rsync over SSH.
//!
//! ```text
//!  sshd: SSH_ORIGINAL_COMMAND, SSH_CONNECTION
//!    │
//!    ▼
//!  pipeline::serve ── one line per stage ───────────────────────────────────────┐
//!    │ inputs    host (account, gate binary, rsync caps, Landlock), request::conn │
//!    │ policy    index::load_session (compiled, else load_checked), AuditLog      │
//!    │ request   request::parse_command, request::secluded (-s, after admission)  │
//!    │ evaluate  pipeline::evaluate ─ decide ─ confine ─ plan  (pure but confine) │
//!    │ prepare   exec::prepare: files, directories, connection slot, Landlock    │
//!    │ audit     pipeline::session: the allow record (or every refusal)          │
//!    │ run       exec::run: spawn rsync, forward signals, wait; the end record    │
//!    │           (pipeline::filelog: a record per file, as rsync logs it)        │
//!    └─────────────────────────────────────────────────────────────────────────┘
//!  pipeline::explain   the same evaluate, nothing prepared or run; with
//!                      --trace its rules as applied (decide::trace)
//!  pipeline::hook      a daemon session's in-band requests: request::inband,
//!                      the same evaluate, an audit line, a veto on stdout
//!  cmd::*              check, authorized-keys, audit review, learn, import
//! ```
//!
//! Dependencies point down: `main` → `pipeline`, `cmd` → `exec`, `plan` →
//! `confine` → `decide` → `policy`, `request` → `deny`, `escape`. The
//! request parser knows nothing of the policy; the exec stage sees only the
//! plan.

pub mod audit;
pub mod cli;
pub mod cmd;
pub mod confine;
pub mod decide;
pub mod deny;
pub mod escape;
pub mod exec;
pub mod glob;
pub mod host;
pub mod pipeline;
pub mod plan;
pub mod policy;
pub mod request;
pub(crate) mod sys;
pub mod trust;
