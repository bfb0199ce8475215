//! Integration tests: the real rsync client through the gate (via a shim
//! that plays sshd, and behind a real sshd), and a recording stand-in rsync
//! to assert exactly what the gate runs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice
)]

mod audit;
mod check;
mod checked;
mod clients;
mod common;
mod corpus;
mod daemon;
mod docs;
mod dropbox;
mod examples;
mod filelog;
mod ftpsync;
#[path = "../../tools/docs/mod.rs"]
mod gendocs;
mod hardening;
mod import;
mod index;
mod installed;
mod journald;
mod learn;
mod messages;
mod nonroot;
#[path = "../oracle/mod.rs"]
mod oracle;
mod props;
mod sshd;
mod swap;
mod trace;
mod triggers;
