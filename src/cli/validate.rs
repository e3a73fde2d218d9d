//! `specter validate`: checks provider specs.

use std::path::PathBuf;
use std::process::ExitCode;

use specter::unstable::catalog::{layer_on_bundled, read_sources, Layered};

/// Arguments of `specter validate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Provider files or directories. Default: `providers`.
    #[arg(value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Check the files on their own: `extends` does not resolve against the bundled providers.
    #[arg(long, env = "SPECTER_NO_BUNDLED")]
    no_bundled: bool,
}

/// Validates and reports. The files are compiled on top of the bundled providers (so `extends`
/// resolves against them, and a file with a bundled id replaces it); every problem of every file
/// is reported, together with the scaffold placeholders left in them.
pub fn run(args: &Args) -> ExitCode {
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from("providers")]
    } else {
        args.paths.clone()
    };
    let local = match read_sources(&paths) {
        Ok(sources) => sources,
        Err(e) => return super::report_load_error(&e),
    };
    if local.is_empty() {
        eprintln!(
            "error: no provider files (*.yaml) found in {}",
            super::display_paths(&paths)
        );
        eprintln!("help: pass a providers directory or YAML files");
        return ExitCode::from(2);
    }
    let files: Vec<String> = local.iter().map(|s| s.name.clone()).collect();
    let mut placeholders = Vec::new();
    for source in &local {
        placeholders.extend(specter::unstable::compile::scaffold_placeholders(source));
    }
    let layered = if args.no_bundled {
        Layered {
            sources: local,
            replaced: Vec::new(),
        }
    } else {
        layer_on_bundled(local)
    };
    super::report_replacements(&layered.replaced);
    let (providers, mut diags) = specter::unstable::compile::compile_sources(&layered.sources);
    for warning in
        specter::unstable::gateway::upstream_check::metadata_warnings(&providers, &layered.sources)
    {
        eprintln!("warning: {warning}");
    }
    diags.0.extend(placeholders);
    diags.0.sort();
    diags.0.dedup();
    if !diags.is_empty() {
        return super::report_load_error(&specter::LoadError::Invalid(diags));
    }
    let own: Vec<_> = providers
        .iter()
        .filter(|p| files.contains(&p.file))
        .collect();
    let operations: usize = own.iter().map(|p| p.operations.len()).sum();
    super::emit(&format!(
        "ok: {}, {} in {}\n",
        super::count(own.len(), "provider", "providers"),
        super::count(operations, "operation", "operations"),
        super::count(files.len(), "file", "files"),
    ))
}
