//! The `host::` pre-xfer hook's parser: `request::inband::parse` + decide
//! over arbitrary in-band argument lists (as the daemon hands them to the
//! hook in `RSYNC_ARG0..N`), against the fixed in-memory policy. Checks: no
//! panic, determinism, rsync's reading of options after the `.`, paths
//! inside the module, and the grant's invariants (`check_inband`).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rsync_gate::policy::Policy;

static POLICY: OnceLock<Policy> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let policy = POLICY.get_or_init(rsync_gate_fuzz::lexical_policy);
    if let Err(e) = rsync_gate_fuzz::run_inband(policy, data) {
        panic!(
            "invariant violated for {:?}: {e}",
            String::from_utf8_lossy(data)
        );
    }
});
