//! Non-root worlds: `serve` as a dedicated non-root SSH account (created by
//! the test, removed after), in both request forms, with the ownership half
//! of the trust rules, and behind the real sshd.
