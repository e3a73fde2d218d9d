//! What the integration tests share: the gateway in process (`in_process`) and the
//! `specter serve` binary as a child process (`serve`). Each test crate takes what it needs with
//! `mod common;`. Recorded cases are found and read by `specter::harness::cases`, as
//! `specter test` reads them.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod in_process;
pub mod serve;
