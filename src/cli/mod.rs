//! Command-line interface: argument parsing and one file per subcommand.

mod extract;
mod init_provider;
mod list;
mod schema;
mod serve;
mod show;
mod test;
mod validate;
mod view;

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
    /// Run the gateway: an instrumenting reverse proxy for LLM APIs.
    ///
    /// Point an SDK's base URL at http://ADDR:PORT/{provider} (e.g.
    /// http://127.0.0.1:8787/openai/v1); every byte is forwarded to the provider's upstream and
    /// back, and each GenAI call becomes a span and metric points.
    Serve(serve::Args),
    /// Check provider specs and report every problem with its file, line and column.
    ///
    /// The files are checked on top of the bundled providers (`extends` resolves against them; a
    /// file with a bundled provider's id replaces it), unless `--no-bundled`. `TODO` notes left
    /// from `specter init-provider` are reported too.
    ///
    /// Exit status: 0 when every spec is valid, 1 when a spec has problems, 2 when a file cannot
    /// be read.
    Validate(validate::Args),
    /// Print the JSON Schema of provider specs (`schemas/provider.schema.json`), or with
    /// `--config` of the gateway's `specter.yaml` (`schemas/config.schema.json`).
    Schema(schema::Args),
    /// List providers, their operations and routes.
    List(list::Args),
    /// Extract the span specter would emit for one recorded exchange, as JSON.
    ///
    /// Exit status: 0 on success, 1 when no operation matches the method and URL, 2 when a file
    /// cannot be read.
    Extract(extract::Args),
    /// Scaffold a provider spec and its fixture folder, then print the next steps.
    ///
    /// Exit status: 0 when the files were created, 1 when one of them exists already (nothing is
    /// overwritten), 2 for an invalid name, an unknown provider to extend or a file that cannot be
    /// written.
    InitProvider(init_provider::Args),
    /// Replay every recorded case under tests/fixtures through `extract` and compare the output
    /// with its snapshot under tests/snapshots.
    ///
    /// New and changed snapshots are written as `.snap.new` for `--review` or `--accept` (or
    /// `cargo insta review`). Exit status: 0 when every case matches its snapshot, 1 when a case
    /// fails or has a new or changed snapshot, 2 when the fixtures cannot be read.
    Test(test::Args),
    /// Print a provider spec's YAML as it is, to read it or to copy it into a providers directory
    /// (`specter show openai > providers/openai.yaml`).
    ///
    /// Exit status: 0 when the provider exists, 1 when it does not, 2 when a file cannot be read.
    Show(show::Args),
    /// Open the trace viewer over traces files written earlier and print its address.
    ///
    /// The calls, one call's conversation, sessions and traces, and totals by provider and model,
    /// in a browser; `specter serve` serves the same viewer at /-/viewer/ over its own traces
    /// file. Exit status: 0 when stopped, 2 when a file cannot be read or the address is refused.
    View(view::Args),
}

/// Where providers come from: the bundled set, with the specs of a directory or files added.
#[derive(Debug, Clone, clap::Args)]
pub struct ProviderArgs {
    /// Provider spec directory or files (repeatable), added to the bundled providers; a spec with
    /// the id of a bundled provider replaces it.
    #[arg(long = "providers", value_name = "PATH", env = "SPECTER_PROVIDERS")]
    pub providers: Vec<PathBuf>,
    /// Leave the bundled providers out: only the specs of `--providers` are loaded.
    #[arg(long, env = "SPECTER_NO_BUNDLED")]
    pub no_bundled: bool,
}

impl ProviderArgs {
    /// Loads the catalog, printing diagnostics and returning the exit code on failure.
    pub fn catalog(&self) -> Result<specter::Catalog, ExitCode> {
        if self.providers.is_empty() {
            if self.no_bundled {
                return Err(no_providers_without_bundled());
            }
            return specter::Catalog::bundled().map_err(|e| report_load_error(&e));
        }
        let limits = specter::unstable::files::ReadLimits::default();
        let loaded = specter::unstable::catalog::Catalog::load_layered(
            &self.providers,
            &limits,
            !self.no_bundled,
        )
        .map_err(|e| report_load_error(&e))?;
        report_replacements(&loaded.replaced);
        if loaded.catalog.providers().is_empty() {
            eprintln!(
                "error: no provider specs (*.yaml) in {}",
                display_paths(&self.providers)
            );
            eprintln!("help: add provider files, or run without --no-bundled");
            return Err(ExitCode::from(2));
        }
        Ok(loaded.catalog)
    }

    /// The provider sources in force (bundled ones not replaced, then local ones), without
    /// compiling them.
    pub fn sources(&self) -> Result<specter::unstable::catalog::Layered, ExitCode> {
        if self.providers.is_empty() && self.no_bundled {
            return Err(no_providers_without_bundled());
        }
        let local = if self.providers.is_empty() {
            Vec::new()
        } else {
            specter::unstable::catalog::read_sources(&self.providers)
                .map_err(|e| report_load_error(&e))?
        };
        if self.no_bundled {
            return Ok(specter::unstable::catalog::Layered {
                sources: local,
                replaced: Vec::new(),
            });
        }
        Ok(specter::unstable::catalog::layer_on_bundled(local))
    }
}

fn no_providers_without_bundled() -> ExitCode {
    eprintln!("error: --no-bundled leaves no providers without --providers");
    eprintln!("help: pass a providers directory with --providers, or drop --no-bundled");
    ExitCode::from(2)
}

/// Says which bundled providers local files replaced; a file identical to the bundled one (a copy
/// of the bundled directory) changes nothing and is not mentioned.
pub fn report_replacements(replaced: &[specter::unstable::catalog::Replacement]) {
    for r in replaced.iter().filter(|r| !r.identical) {
        eprintln!(
            "specter: {} replaces the bundled provider {}",
            specter::unstable::printable::escape_controls(&r.file),
            r.id
        );
    }
}

/// Paths joined for a message.
pub fn display_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `1 provider`, `2 providers`.
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Writes `text` to standard output: success, or exit status 2 after saying why it could not be
/// written. A reader that stops early (`specter list | head`) is not an error: the rest is
/// dropped.
pub fn emit(text: &str) -> ExitCode {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("error: cannot write to standard output: {e}");
            ExitCode::from(2)
        }
        _ => ExitCode::SUCCESS,
    }
}

/// Prints a load error and returns the matching exit code (1 invalid, 2 unreadable).
pub fn report_load_error(error: &specter::LoadError) -> ExitCode {
    match error {
        specter::LoadError::Invalid(diags) => {
            eprintln!("{diags}");
            eprintln!(
                "error: {} in provider specs",
                count(diags.len(), "problem", "problems")
            );
            ExitCode::from(1)
        }
        specter::LoadError::Io { .. } => {
            eprintln!("error: {error}");
            eprintln!("help: pass an existing providers directory or YAML file");
            ExitCode::from(2)
        }
        specter::LoadError::File(e) => {
            eprintln!("error: {error}");
            eprintln!("help: {}", file_help(e));
            ExitCode::from(2)
        }
        _ => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

/// How to get past a refused provider file.
pub fn file_help(error: &specter::unstable::files::ReadError) -> &'static str {
    use specter::unstable::files::ReadError;
    match error {
        ReadError::NotRegular { .. } => {
            "provider specs must be regular files (or symbolic links to them); remove or rename it"
        }
        ReadError::TooLarge { .. } => {
            "provider specs are small; `specter serve` reads bigger ones with `max_spec_file_bytes` in its configuration file"
        }
        ReadError::TotalTooLarge { .. } => {
            "`specter serve` reads more with `max_spec_total_bytes` in its configuration file"
        }
        ReadError::Io { .. } => "pass an existing providers directory or YAML file",
    }
}

/// Parses arguments and runs the command.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::run(&args),
        Command::Validate(args) => validate::run(&args),
        Command::Schema(args) => schema::run(&args),
        Command::List(args) => list::run(&args),
        Command::Extract(args) => extract::run(&args),
        Command::InitProvider(args) => init_provider::run(&args),
        Command::Test(args) => test::run(&args),
        Command::Show(args) => show::run(&args),
        Command::View(args) => view::run(&args),
    }
}
