//! The `specter` command: the gateway, and offline commands for spec authors and tests.

use std::process::ExitCode;

mod cli;

fn main() -> ExitCode {
    cli::run()
}
