//! `check --compile`: write the compiled index ([`crate::policy::index`])
//! and read it back; and, without `--compile`, a warning when an index
//! is there that `serve` will not use.

use std::path::Path;

use super::Report;
use crate::cmd::authorized_keys;
use crate::policy::Policy;
use crate::policy::index::{self, Index, Unusable};

/// Write the index of `p` (valid, just checked) next to it, then read
/// every client back through it and compare with the policy: an index that
/// would answer differently is an error, and is removed. Returns the line
/// saying what was written.
pub fn compile(p: &Policy) -> Result<String, String> {
    let keys = authorized_keys::key_table(p);
    let bytes = index::build(p, &keys)?;
    let path = index::write(&p.source, &bytes).map_err(|e| {
        format!(
            "cannot write {}: {e}",
            index::index_path(&p.source).display()
        )
    })?;
    let fail = |e: String| {
        let _ = std::fs::remove_file(&path);
        Err(format!("{e}; {} removed", path.display()))
    };
    let ix = match Index::open(&p.source) {
        Ok(ix) => ix,
        Err(why @ Unusable::Untrusted(_)) => {
            return Ok(format!(
                "wrote {}, but serve will not use it: {why} (run rsync-gate check --compile as root)",
                path.display()
            ));
        }
        Err(why) => return fail(format!("the index just written does not read back: {why}")),
    };
    // Every client read back: O(n log n), not O(n) per client.
    let base = index::expected_base(p);
    for name in p.clients.keys() {
        match ix.policy_for(name) {
            Ok(got) if got == index::expected_from(&base, p, name) => {}
            Ok(_) => return fail(format!("the index answers differently for client '{name}'")),
            Err(why) => return fail(format!("client '{name}' does not read back: {why}")),
        }
    }
    for (fp, name) in &keys {
        match ix.clients_with_key(fp) {
            Ok(names) if names.contains(name) => {}
            _ => return fail(format!("the key of client '{name}' does not read back")),
        }
    }
    Ok(format!(
        "wrote {} ({} clients, {} modules, {} keys, {} bytes)",
        path.display(),
        p.clients.len(),
        p.modules.len(),
        keys.len(),
        bytes.len()
    ))
}

/// A warning when the policy has a compiled index `serve` will not use.
pub fn stale(policy: &Path) -> Report {
    let mut r = Report::default();
    match Index::open(policy) {
        Ok(_) => r.fact("index", index::index_path(policy).display().to_string()),
        Err(Unusable::Missing) => {}
        Err(why) => r.warning(
            format!(
                "the compiled index {} is not used, so serve parses the whole policy on every connection: {why}",
                index::index_path(policy).display()
            ),
            "rsync-gate check --compile (as root, after every edit)".to_string(),
        ),
    }
    r
}
