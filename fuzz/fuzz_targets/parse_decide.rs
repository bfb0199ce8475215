//! parse_command + decide over arbitrary bytes as SSH_ORIGINAL_COMMAND,
//! against a fixed in-memory policy (no filesystem). Checks: no panic,
//! determinism, the decision's invariants, and the argv `checked_args`
//! builds for every grant (no refused option, `--` before `.` and paths).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rsync_gate::policy::Policy;

static POLICY: OnceLock<Policy> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let policy = POLICY.get_or_init(rsync_gate_fuzz::lexical_policy);
    if let Err(e) = rsync_gate_fuzz::run_one(policy, None, data) {
        panic!(
            "invariant violated for {:?}: {e}",
            String::from_utf8_lossy(data)
        );
    }
});
