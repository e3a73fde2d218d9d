//! Command-line interface: argument parsing and one file per subcommand.

mod extract;
mod list;
mod schema;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Declarative OpenTelemetry instrumentation for LLM provider APIs.
///
/// Provider specs (YAML) describe how each provider's HTTP traffic becomes GenAI spans and
/// metrics. Without `--providers`, the providers bundled with specter are used.
#[derive(Debug, Parser)]
#[command(name = "specter", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check provider specs and report every problem with its file, line and column.
    ///
    /// Exit status: 0 when every spec is valid, 1 when a spec has problems, 2 when a file cannot
    /// be read.
    Validate(validate::Args),
    /// Print the JSON Schema of provider specs (the committed `schemas/provider.schema.json`).
    Schema,
    /// List providers, their operations and routes.
    List(list::Args),
    /// Extract the span specter would emit for one recorded exchange, as JSON.
    ///
    /// Exit status: 0 on success, 1 when no operation matches the method and URL, 2 when a file
    /// cannot be read.
    Extract(extract::Args),
}

/// Where providers come from: a directory or files, or the bundled set.
#[derive(Debug, Clone, clap::Args)]
pub struct ProviderArgs {
    /// Provider spec directory or files (repeatable). Default: the bundled providers.
    #[arg(long = "providers", value_name = "PATH", env = "SPECTER_PROVIDERS")]
    pub providers: Vec<PathBuf>,
}

impl ProviderArgs {
    /// Loads the catalog, printing diagnostics and returning the exit code on failure.
    pub fn catalog(&self) -> Result<specter::Catalog, ExitCode> {
        let loaded = if self.providers.is_empty() {
            specter::Catalog::bundled()
        } else {
            specter::Catalog::load(&self.providers)
        };
        loaded.map_err(|e| report_load_error(&e))
    }
}

/// Prints a load error and returns the matching exit code (1 invalid, 2 unreadable).
pub fn report_load_error(error: &specter::LoadError) -> ExitCode {
    match error {
        specter::LoadError::Invalid(diags) => {
            eprintln!("{diags}");
            eprintln!("error: {} problem(s) in provider specs", diags.len());
            ExitCode::from(1)
        }
        specter::LoadError::Io { .. } => {
            eprintln!("error: {error}");
            eprintln!("help: pass an existing providers directory or YAML file");
            ExitCode::from(2)
        }
    }
}

/// Parses arguments and runs the command.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Schema => schema::run(),
        Command::List(args) => list::run(&args),
        Command::Extract(args) => extract::run(&args),
    }
}
