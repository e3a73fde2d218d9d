//! `specter extract`: one recorded exchange → the span and metric points specter would emit, as
//! JSON. A stable interface for scripts and spec authors.

use std::path::PathBuf;
use std::process::ExitCode;

use specter::offline::{extract, ExtractError, ExtractOptions, Recorded};
use specter::render::content::{Capture, ContentPolicy};
use specter::render::dialect::Dialect;

/// Arguments of `specter extract`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// HTTP method of the request.
    #[arg(long, default_value = "POST")]
    method: String,
    /// Full URL of the request, e.g. `https://api.openai.com/v1/chat/completions`.
    #[arg(long)]
    url: String,
    /// HTTP status of the response.
    #[arg(long, default_value_t = 200)]
    status: u16,
    /// File holding the request body.
    #[arg(long, value_name = "FILE")]
    request: Option<PathBuf>,
    /// File holding the response body as received.
    #[arg(long, value_name = "FILE")]
    response: Option<PathBuf>,
    /// Content type of the response (`text/event-stream`, `application/x-ndjson`,
    /// `application/vnd.amazon.eventstream`, `application/json`). Default: a stream when the
    /// operation's `stream.when` holds on the request.
    #[arg(long, value_name = "TYPE")]
    content_type: Option<String>,
    /// A request header, `Name: value` (repeatable).
    #[arg(long = "header", value_name = "HEADER")]
    headers: Vec<String>,
    /// A response header, `Name: value` (repeatable).
    #[arg(long = "response-header", value_name = "HEADER")]
    response_headers: Vec<String>,
    /// Attribute dialect (repeatable to emit several): `otel` (the GenAI semantic conventions),
    /// `agentops`, `openinference`.
    #[arg(long = "dialect", value_name = "DIALECT", default_value = "otel")]
    dialects: Vec<String>,
    /// Leave message content out of the span.
    #[arg(long)]
    no_content: bool,
    /// A price file (YAML or JSON) whose model prices come before the bundled ones.
    #[arg(long, value_name = "FILE")]
    prices: Option<PathBuf>,
    #[command(flatten)]
    providers: super::ProviderArgs,
}

/// Extracts and prints.
pub fn run(args: &Args) -> ExitCode {
    let catalog = match args.providers.catalog() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let read = |path: &Option<PathBuf>| -> Result<Vec<u8>, ExitCode> {
        match path {
            None => Ok(Vec::new()),
            Some(p) => std::fs::read(p).map_err(|e| {
                eprintln!("error: cannot read {}: {e}", p.display());
                ExitCode::from(2)
            }),
        }
    };
    let (request, response) = match (read(&args.request), read(&args.response)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    let (Some(request_headers), Some(response_headers)) = (
        parse_headers(&args.headers),
        parse_headers(&args.response_headers),
    ) else {
        eprintln!("error: a header must be written `Name: value`");
        return ExitCode::from(2);
    };
    let exchange = Recorded {
        method: &args.method,
        url: &args.url,
        status: args.status,
        request: &request,
        response: &response,
        content_type: args.content_type.as_deref(),
        request_headers: &request_headers,
        response_headers: &response_headers,
    };
    let mut dialects = Vec::new();
    for name in &args.dialects {
        match Dialect::named(name) {
            Ok(d) => dialects.push(d),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let mut content = ContentPolicy::default();
    if args.no_content {
        content.capture = Capture::NoContent;
    }
    let prices = match &args.prices {
        None => specter::prices::PriceBook::bundled(),
        Some(path) => match specter::prices::load_file(path) {
            Ok(book) => std::sync::Arc::new(book.before(&specter::prices::PriceBook::bundled())),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let options = ExtractOptions {
        dialects,
        content,
        provider: None,
        prices,
        ..ExtractOptions::default()
    };
    let output = match extract(&catalog, &exchange, &options) {
        Ok(output) => output,
        Err(e @ ExtractError::BadUrl(_)) => {
            eprintln!("error: {e}");
            eprintln!("help: pass the URL the request was sent to, e.g. https://api.openai.com/v1/chat/completions");
            return ExitCode::from(2);
        }
        Err(e @ ExtractError::NoMatch { .. }) => {
            eprintln!("error: {e}");
            eprintln!("help: `specter list` shows the routes of every provider");
            return ExitCode::from(1);
        }
    };
    match serde_json::to_string_pretty(&output) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn parse_headers(raw: &[String]) -> Option<Vec<(String, String)>> {
    raw.iter()
        .map(|h| {
            h.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}
