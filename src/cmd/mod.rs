//! The administrator's commands and their rendering: `check`,
//! `authorized-keys`, `audit`. They read the policy and the log; they never
//! serve a client.

pub mod audit;
pub mod authorized_keys;
pub mod check;
