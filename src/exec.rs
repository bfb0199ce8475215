//! Running the plan: a clean environment, only the planned descriptors,
//! stdin/stdout/stderr passed straight through, spawn and wait.

use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::plan::ExecPlan;

/// How the child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub duration: Duration,
}

impl Outcome {
    /// The gate's own exit status: the child's, or 128 + signal.
    pub fn exit_code(&self) -> u8 {
        match (self.code, self.signal) {
            (Some(c), _) => u8::try_from(c).unwrap_or(1),
            (None, Some(s)) => u8::try_from(128 + s).unwrap_or(255),
            _ => 1,
        }
    }
}

/// Build the command without running it.
pub fn command(plan: &ExecPlan) -> Command {
    let mut cmd = Command::new(&plan.program);
    cmd.arg0(&plan.arg0)
        .args(&plan.args)
        .env_clear()
        .envs(plan.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&plan.cwd)
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    cmd
}

/// Spawn the plan and wait for it.
pub fn spawn_and_wait(plan: ExecPlan) -> io::Result<Outcome> {
    let mut cmd = command(&plan);
    let start = Instant::now();
    let mut child = cmd.spawn()?;
    // The child has its own copies of the pinned descriptors now.
    drop(plan.keep_fds);
    if let Err(e) = crate::sys::forward_signals_to(child.id()) {
        tracing::warn!("cannot forward signals to rsync: {e}");
    }
    let status = child.wait()?;
    Ok(Outcome {
        code: status.code(),
        signal: status.signal(),
        duration: start.elapsed(),
    })
}
