//! `specter show`: prints one provider spec's YAML as it is.

use std::process::ExitCode;

/// Arguments of `specter show`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Provider id, e.g. `openai`.
    #[arg(value_name = "NAME")]
    name: String,
    #[command(flatten)]
    providers: super::ProviderArgs,
}

/// Prints the spec in force for the provider: a local file with `--providers`, else the bundled
/// one.
pub fn run(args: &Args) -> ExitCode {
    let layered = match args.providers.sources() {
        Ok(layered) => layered,
        Err(code) => return code,
    };
    // With several local files of one id, the last one read is the one shown; the compiler
    // reports the duplicate.
    let found = layered
        .sources
        .iter()
        .rev()
        .find(|s| specter::unstable::catalog::source_id(s) == args.name);
    match found {
        Some(source) => {
            let mut text = source.text.clone();
            if !text.ends_with('\n') {
                text.push('\n');
            }
            super::emit(&text)
        }
        None => {
            let mut known: Vec<&str> = layered
                .sources
                .iter()
                .map(specter::unstable::catalog::source_id)
                .collect();
            known.sort_unstable();
            known.dedup();
            let name = specter::unstable::printable::escape_controls(&args.name);
            eprintln!("error: no provider `{name}`");
            if let Some(best) =
                specter::unstable::diagnostic::did_you_mean(&args.name, known.iter().copied())
            {
                eprintln!("help: did you mean `{best}`?");
            }
            eprintln!("known providers: {}", known.join(", "));
            ExitCode::from(1)
        }
    }
}
