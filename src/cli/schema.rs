//! `specter schema`: prints the provider (or gateway configuration, or dialect file) JSON Schema.

use std::process::ExitCode;

/// Arguments of `specter schema`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the schema of the gateway's configuration file instead.
    #[arg(long)]
    config: bool,
    /// Print the schema of dialect files (`dialects/*.yaml`) instead.
    #[arg(long, conflicts_with = "config")]
    dialect: bool,
}

/// Prints the schema as pretty JSON with a trailing newline.
pub fn run(args: &Args) -> ExitCode {
    let schema = if args.dialect {
        specter::unstable::render::dialect::dialect_schema()
    } else if args.config {
        specter::unstable::gateway::config_schema()
    } else {
        specter::unstable::spec::provider_schema()
    };
    match serde_json::to_string_pretty(&schema) {
        Ok(text) => super::emit(&format!("{text}\n")),
        Err(e) => {
            eprintln!("error: cannot render the schema: {e}");
            ExitCode::from(2)
        }
    }
}
