//! The whole checked pipeline against a real directory tree: parse,
//! decide, confine (without creating anything) and the exec plan. Checks
//! everything `parse_decide` does, and that every path the argv names lies
//! inside the granted module's real root once each `/proc/self/fd/N` is
//! mapped back to the directory it pins.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rsync_gate_fuzz::Tree;

static TREE: OnceLock<Tree> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let tree = TREE.get_or_init(Tree::get);
    if let Err(e) = rsync_gate_fuzz::run_one(&tree.policy, Some(tree), data) {
        panic!(
            "invariant violated for {:?}: {e}",
            String::from_utf8_lossy(data)
        );
    }
});
