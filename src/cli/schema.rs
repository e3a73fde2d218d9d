//! `specter schema`: prints the provider (or gateway configuration) JSON Schema.

use std::process::ExitCode;

/// Arguments of `specter schema`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the schema of the gateway's configuration file instead.
    #[arg(long)]
    config: bool,
}

/// Prints the schema as pretty JSON with a trailing newline.
pub fn run(args: &Args) -> ExitCode {
    let schema = if args.config {
        specter::gateway::config_schema()
    } else {
        specter::spec::provider_schema()
    };
    match serde_json::to_string_pretty(&schema) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot render the schema: {e}");
            ExitCode::from(2)
        }
    }
}
