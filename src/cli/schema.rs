//! `specter schema`: prints the provider JSON Schema.

use std::process::ExitCode;

/// Prints the schema as pretty JSON with a trailing newline.
pub fn run() -> ExitCode {
    match serde_json::to_string_pretty(&specter::spec::provider_schema()) {
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
