//! The fuzz targets' fixtures and invariants: the project's one security
//! oracle, `tests/oracle/mod.rs`, which the property tests use too.

#[path = "../../tests/oracle/mod.rs"]
mod oracle;

pub use oracle::*;
