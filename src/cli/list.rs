//! `specter list`: providers, operations and routes as a table or JSON.

use std::process::ExitCode;

use serde_json::json;

/// Output format.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Table,
    Json,
}

/// Arguments of `specter list`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    providers: super::ProviderArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

/// Lists the catalog.
pub fn run(args: &Args) -> ExitCode {
    let catalog = match args.providers.catalog() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut rows = Vec::new();
    for provider in catalog.providers() {
        for op in &provider.operations {
            let routes: Vec<String> = op
                .routes
                .iter()
                .map(|r| {
                    let query: Vec<String> =
                        r.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    if query.is_empty() {
                        format!("{} {}", r.method, r.template.source)
                    } else {
                        format!("{} {}?{}", r.method, r.template.source, query.join("&"))
                    }
                })
                .collect();
            let stream = op
                .stream
                .as_ref()
                .map(|s| s.framing.spec_name().to_string());
            rows.push((provider.clone(), op.clone(), routes, stream));
        }
    }
    match args.format {
        Format::Json => {
            let items: Vec<serde_json::Value> = rows
                .iter()
                .map(|(p, op, routes, stream)| {
                    json!({
                        "provider": &*p.id,
                        "provider_name": &*p.provider_name,
                        "operation": &*op.id,
                        "operation_name": &*op.operation_name,
                        "routes": routes,
                        "stream": stream,
                        "upstream": p.base_url,
                    })
                })
                .collect();
            match serde_json::to_string_pretty(&items) {
                Ok(text) => super::emit(&format!("{text}\n")),
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Format::Table => {
            let header = (
                "PROVIDER",
                "OPERATION",
                "GEN_AI OPERATION",
                "STREAM",
                "ROUTES",
            );
            let w0 = rows
                .iter()
                .map(|r| r.0.id.len())
                .max()
                .unwrap_or(0)
                .max(header.0.len());
            let w1 = rows
                .iter()
                .map(|r| r.1.id.len())
                .max()
                .unwrap_or(0)
                .max(header.1.len());
            let w2 = rows
                .iter()
                .map(|r| r.1.operation_name.len())
                .max()
                .unwrap_or(0)
                .max(header.2.len());
            let w3 = header.3.len().max(15);
            let mut table = format!(
                "{:w0$}  {:w1$}  {:w2$}  {:w3$}  {}\n",
                header.0, header.1, header.2, header.3, header.4
            );
            for (p, op, routes, stream) in &rows {
                let stream = stream.clone().unwrap_or_else(|| "-".into());
                table.push_str(&format!(
                    "{:w0$}  {:w1$}  {:w2$}  {:w3$}  {}\n",
                    p.id,
                    op.id,
                    op.operation_name,
                    stream,
                    routes.join(", ")
                ));
            }
            super::emit(&table)
        }
    }
}
