//! `cargo run --example gen-docs -- DIR`: write the manual pages, the shell
//! completions and the shipped policy the Debian package installs into DIR
//! (tools/build-deb uses target/pkg, where Cargo.toml's
//! `[package.metadata.deb]` assets expect them). See tools/docs/mod.rs.

#[path = "docs/mod.rs"]
mod docs;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [dir] = args.as_slice() else {
        let _ = writeln!(std::io::stderr(), "usage: gen-docs DIR");
        return ExitCode::from(2);
    };
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    match docs::write_all(repo, dir) {
        Ok(files) => {
            for f in files {
                let _ = writeln!(std::io::stderr(), "wrote {}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "gen-docs: {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}
