//! `specter validate`: checks provider specs.

use std::path::PathBuf;
use std::process::ExitCode;

use specter::catalog::read_sources;

/// Arguments of `specter validate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Provider files or directories. Default: `providers`.
    #[arg(value_name = "PATH")]
    paths: Vec<PathBuf>,
}

/// Validates and reports.
pub fn run(args: &Args) -> ExitCode {
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from("providers")]
    } else {
        args.paths.clone()
    };
    let sources = match read_sources(&paths) {
        Ok(sources) => sources,
        Err(e) => return super::report_load_error(&e),
    };
    if sources.is_empty() {
        eprintln!(
            "error: no provider files (*.yaml) found in {}",
            display(&paths)
        );
        eprintln!("help: pass a providers directory or YAML files");
        return ExitCode::from(2);
    }
    let (providers, diags) = specter::compile::compile_sources(&sources);
    for warning in specter::gateway::upstream_check::metadata_warnings(&providers, &sources) {
        eprintln!("warning: {warning}");
    }
    let compiled = if diags.is_empty() {
        Ok(specter::Catalog::from_providers(providers))
    } else {
        Err(diags)
    };
    match compiled {
        Ok(catalog) => {
            let operations: usize = catalog.providers().iter().map(|p| p.operations.len()).sum();
            println!(
                "ok: {} provider(s), {} operation(s) in {} file(s)",
                catalog.providers().len(),
                operations,
                sources.len()
            );
            ExitCode::SUCCESS
        }
        Err(diags) => super::report_load_error(&specter::LoadError::Invalid(diags)),
    }
}

fn display(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
