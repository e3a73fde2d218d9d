//! `specter extract`: one recorded exchange → the span and metric points specter would emit, as
//! JSON. A stable interface for scripts and spec authors. The exchange comes from the options, or
//! from a case folder's `meta.yaml` (`--case`), read as `specter test` reads it.

use std::path::PathBuf;
use std::process::ExitCode;

use specter::harness::cases::read_case;
use specter::offline::{extract_with, ExtractError, ExtractOptions, MatchedBy, Recorded};
use specter::Dialect;
use specter::{Capture, ContentPolicy};

/// Arguments of `specter extract`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A recorded case folder (`tests/fixtures/<provider>/<case>`): the method, URL, status,
    /// content type, headers and body files are read from its `meta.yaml`.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["url", "method", "status", "request", "response", "content_type", "headers", "response_headers"])]
    case: Option<PathBuf>,
    /// Match the exchange against this provider's operations only, whatever the URL's host.
    #[arg(long = "provider", value_name = "NAME")]
    provider: Option<String>,
    /// HTTP method of the request.
    #[arg(long, default_value = "POST")]
    method: String,
    /// Full URL of the request, e.g. `https://api.openai.com/v1/chat/completions`.
    #[arg(long, required_unless_present = "case")]
    url: Option<String>,
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
    /// `agentops`, `openinference`, `gen_ai_latest_experimental` (the newest GenAI conventions,
    /// also chosen for `otel` by `OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`).
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
    let owned = match owned_exchange(args) {
        Ok(owned) => owned,
        Err(code) => return code,
    };
    let exchange = owned.recorded();
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
    let opt_in = std::env::var(specter::unstable::render::dialect::STABILITY_OPT_IN_ENV).ok();
    let dialects = match specter::unstable::render::dialect::with_stability_opt_in(
        dialects,
        opt_in.as_deref(),
    ) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut content = ContentPolicy::default();
    if args.no_content {
        content.capture = Capture::NoContent;
    }
    let prices = match &args.prices {
        None => specter::unstable::prices::PriceBook::bundled(),
        Some(path) => match specter::unstable::prices::load_file(path) {
            Ok(book) => {
                std::sync::Arc::new(book.before(&specter::unstable::prices::PriceBook::bundled()))
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let options = ExtractOptions::default()
        .with_dialects(dialects)
        .with_content(content)
        .with_provider(args.provider.clone())
        .with_prices(prices);
    if let Some(provider) = &args.provider {
        if catalog.provider(provider).is_none() {
            eprintln!("error: no provider `{provider}`");
            eprintln!("help: `specter list` shows the providers");
            return ExitCode::from(2);
        }
    }
    let output = match extract_with(&catalog, &exchange, &options) {
        Ok(extracted) => {
            if extracted.matched_by == MatchedBy::Path {
                eprintln!(
                    "note: no provider claims the host of {}; matched `{}` by the path alone",
                    exchange.url,
                    extracted
                        .output
                        .get("provider")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or_default()
                );
            }
            extracted.output
        }
        Err(e @ ExtractError::BadUrl(_)) => {
            eprintln!("error: {e}");
            eprintln!("help: pass the URL the request was sent to, e.g. https://api.openai.com/v1/chat/completions");
            return ExitCode::from(2);
        }
        Err(ExtractError::Ambiguous {
            method,
            host,
            path,
            candidates,
        }) => {
            eprintln!("error: no provider claims the host `{host}`, and {method} {path} is a route of several providers:");
            for id in &candidates {
                eprintln!("  {id}");
            }
            let example = candidates.first().map_or("NAME", String::as_str);
            eprintln!("help: name the provider with `--provider {example}`");
            return ExitCode::from(1);
        }
        Err(e @ ExtractError::NoMatch { .. }) => {
            eprintln!("error: {e}");
            eprintln!("help: `specter list` shows the routes of every provider");
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    match serde_json::to_string_pretty(&output) {
        Ok(text) => super::emit(&format!("{text}\n")),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// An exchange with owned parts, from the options or from a case's `meta.yaml`.
struct OwnedExchange {
    method: String,
    url: String,
    status: u16,
    request: Vec<u8>,
    response: Vec<u8>,
    content_type: Option<String>,
    request_headers: Vec<(String, String)>,
    response_headers: Vec<(String, String)>,
}

impl OwnedExchange {
    fn recorded(&self) -> Recorded<'_> {
        Recorded {
            method: &self.method,
            url: &self.url,
            status: self.status,
            request: &self.request,
            response: &self.response,
            content_type: self.content_type.as_deref(),
            request_headers: &self.request_headers,
            response_headers: &self.response_headers,
        }
    }
}

/// The exchange to extract: `--case`, else the options.
fn owned_exchange(args: &Args) -> Result<OwnedExchange, ExitCode> {
    match &args.case {
        Some(dir) => case_exchange(dir),
        None => option_exchange(args),
    }
}

/// The exchange recorded in a case folder.
fn case_exchange(dir: &std::path::Path) -> Result<OwnedExchange, ExitCode> {
    let data = read_case(dir).map_err(|e| {
        eprintln!("error: {e}");
        eprintln!("help: `specter init-provider` writes a meta.yaml template with every key");
        ExitCode::from(2)
    })?;
    Ok(OwnedExchange {
        method: data.method,
        url: data.url,
        status: data.status,
        request: data.request,
        response: data.response,
        content_type: data.content_type,
        request_headers: data.request_headers,
        response_headers: data.response_headers,
    })
}

/// The exchange given by `--url`, `--method`, `--status`, the body files and headers.
fn option_exchange(args: &Args) -> Result<OwnedExchange, ExitCode> {
    let read = |path: &Option<PathBuf>| -> Result<Vec<u8>, ExitCode> {
        match path {
            None => Ok(Vec::new()),
            Some(p) => std::fs::read(p).map_err(|e| {
                eprintln!("error: cannot read {}: {e}", p.display());
                ExitCode::from(2)
            }),
        }
    };
    let request = read(&args.request)?;
    let response = read(&args.response)?;
    let (Some(request_headers), Some(response_headers)) = (
        parse_headers(&args.headers),
        parse_headers(&args.response_headers),
    ) else {
        eprintln!("error: a header must be written `Name: value`");
        return Err(ExitCode::from(2));
    };
    Ok(OwnedExchange {
        method: args.method.clone(),
        url: args.url.clone().unwrap_or_default(),
        status: args.status,
        request,
        response,
        content_type: args.content_type.clone(),
        request_headers,
        response_headers,
    })
}

fn parse_headers(raw: &[String]) -> Option<Vec<(String, String)>> {
    raw.iter()
        .map(|h| {
            h.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}
