//! `specter serve`: the instrumenting gateway.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use specter::unstable::gateway::{
    self, BuildError, Flags, Gateway, GatewayConfig, Settings, StopReport,
};
use specter::unstable::telemetry::export::LineSink;
use specter::unstable::telemetry::pipeline::OtlpProtocol;

/// Arguments of `specter serve`. Flags override the configuration file; every flag can also be
/// set by the environment variable named in its help.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR:PORT", env = "SPECTER_LISTEN")]
    listen: Option<String>,
    /// Allow a non-loopback listen address (the gateway sees every prompt and API key).
    #[arg(long, env = "SPECTER_ALLOW_REMOTE")]
    allow_remote: bool,
    /// Provider spec directory, watched and reloaded on change and on SIGHUP. Its specs are added
    /// to the bundled providers; a spec with a bundled provider's id replaces it. Default: the
    /// bundled providers alone.
    #[arg(long, value_name = "DIR", env = "SPECTER_PROVIDERS")]
    providers: Option<PathBuf>,
    /// Leave the bundled providers out: only the specs of `--providers` are served
    /// (`bundled_providers: false` in the configuration file).
    #[arg(long, env = "SPECTER_NO_BUNDLED")]
    no_bundled: bool,
    /// Replace a provider's upstream base URL, e.g. `openai=http://127.0.0.1:9000` (repeatable).
    #[arg(long = "upstream", value_name = "PROVIDER=URL")]
    upstreams: Vec<String>,
    /// PEM file of extra certificate authorities to trust for HTTPS upstreams (beside the Mozilla
    /// roots), e.g. a private CA in front of a self-hosted model server.
    #[arg(long, value_name = "FILE", env = "SPECTER_UPSTREAM_CA")]
    upstream_ca: Option<PathBuf>,
    /// Re-sign this provider's requests with AWS SigV4 using the gateway's own credentials
    /// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN; region from AWS_REGION or the
    /// upstream host), e.g. `bedrock` (repeatable). Clients then need no AWS credentials, and
    /// anyone who can reach the gateway calls the provider as the gateway.
    #[arg(long = "aws-sign", value_name = "PROVIDER")]
    aws_sign: Vec<String>,
    /// JSON-lines file of finished spans (OTLP JSON encoding). Default `specter-traces.jsonl`.
    #[arg(long, value_name = "PATH", env = "SPECTER_TRACES_FILE")]
    traces_file: Option<PathBuf>,
    /// Do not write the traces file.
    #[arg(long)]
    no_traces_file: bool,
    /// Do not print a line per span on stderr.
    #[arg(long, env = "SPECTER_QUIET")]
    quiet: bool,
    /// Configuration file (schema: schemas/config.schema.json).
    #[arg(long, value_name = "FILE", env = "SPECTER_CONFIG")]
    config: Option<PathBuf>,
    /// Forward without instrumenting (a plain proxy, for comparison).
    #[arg(long)]
    no_instrument: bool,
    /// Add the gateway span's `traceparent` to upstream requests.
    #[arg(long)]
    propagate_trace_context: bool,
    /// Attribute dialect (repeatable): `otel`, `agentops`, `openinference`,
    /// `gen_ai_latest_experimental` (`OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`
    /// chooses it for `otel`).
    #[arg(long = "dialect", value_name = "DIALECT")]
    dialects: Vec<String>,
    /// Accept upstreams at link-local or cloud metadata addresses (169.254.169.254,
    /// metadata.google.internal, ...), which are refused by default: through them the gateway
    /// could hand out the host's cloud credentials.
    #[arg(long, env = "SPECTER_ALLOW_METADATA_UPSTREAM")]
    allow_metadata_upstream: bool,
    /// A price file (YAML or JSON) whose model prices come before the bundled ones (config key
    /// `prices`).
    #[arg(long, value_name = "FILE")]
    prices: Option<std::path::PathBuf>,
    /// Also print debug lines: each method and path that matched no operation of its provider
    /// (forwarded without a span), once; a base URL missing its `/v1` shows up here.
    #[arg(long, short = 'v', env = "SPECTER_VERBOSE")]
    verbose: bool,
}

/// Runs the gateway until SIGINT or SIGTERM.
pub fn run(args: &Args) -> ExitCode {
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Quoted values keep the message's own lines but lose their control characters.
            let message = format!("{e:#}");
            let lines: Vec<_> = message
                .split('\n')
                .map(specter::unstable::printable::escape_controls)
                .collect();
            eprintln!("error: {}", lines.join("\n"));
            ExitCode::from(2)
        }
    }
}

fn serve(args: &Args) -> anyhow::Result<()> {
    // First, so that everything opened later counts against the raised limit.
    let fd_limit = gateway::raise_fd_limit();
    let console = LineSink::new(|line| eprintln!("specter: {line}"));
    let settings = Settings::resolve(&flags(args), fd_limit.map(|l| l.soft), console)?;
    let fd_allowed = settings.fd_allowed;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // The gRPC exporter and the reload watcher bind to the runtime they are created in.
    let gateway = {
        let _entered = runtime.enter();
        Gateway::build(settings, Arc::new(report_reload)).map_err(build_error)?
    };
    super::report_replacements(gateway.replaced());
    if args.verbose {
        gateway.report_unmatched(Arc::new(report_unmatched));
    }
    if let (Some(path), 1..) = (
        &gateway.outputs().traces_file,
        gateway.traces_file_repaired(),
    ) {
        eprintln!(
            "specter: cut a torn last line ({}) from {}",
            super::count(
                usize::try_from(gateway.traces_file_repaired()).unwrap_or(usize::MAX),
                "byte",
                "bytes"
            ),
            path.display()
        );
    }
    runtime.block_on(async {
        let listener = gateway.bind().await?;
        let address = listener.local_addr()?;
        print_start(&gateway, address, fd_limit, fd_allowed);
        if gateway.outputs().traces_file.is_some() && gateway.config().viewer_max_calls > 0 {
            eprintln!("specter: trace viewer at http://{address}/-/viewer/");
        }
        gateway.serve(listener, gateway::shutdown_signal()).await;
        anyhow::Ok(())
    })?;
    let report = gateway.stop();
    eprintln!("specter: stopped ({})", stop_line(&report));
    for line in usage_lines(&report.calls.usage()) {
        eprintln!("specter: {line}");
    }
    Ok(())
}

/// The command-line values as the settings take them.
fn flags(args: &Args) -> Flags {
    Flags {
        listen: args.listen.clone(),
        allow_remote: args.allow_remote,
        providers: args.providers.clone(),
        no_bundled: args.no_bundled,
        upstreams: args.upstreams.clone(),
        upstream_ca: args.upstream_ca.clone(),
        aws_sign: args.aws_sign.clone(),
        traces_file: args.traces_file.clone(),
        no_traces_file: args.no_traces_file,
        quiet: args.quiet,
        config: args.config.clone(),
        no_instrument: args.no_instrument,
        propagate_trace_context: args.propagate_trace_context,
        dialects: args.dialects.clone(),
        allow_metadata_upstream: args.allow_metadata_upstream,
        prices: args.prices.clone(),
    }
}

/// A build error, with the help a providers directory that cannot be loaded needs.
fn build_error(error: BuildError) -> anyhow::Error {
    match error {
        BuildError::Catalog(specter::LoadError::Invalid(diags)) => anyhow::anyhow!(
            "{diags}\nthe provider specs have problems; fix them or run without --providers"
        ),
        BuildError::Catalog(specter::LoadError::File(e)) => {
            anyhow::anyhow!("{e}\n  help: {}", super::file_help(&e))
        }
        BuildError::Catalog(e) => anyhow::anyhow!("{e}"),
        BuildError::NoProviders(dir) => anyhow::anyhow!(
            "{}\n  help: {}",
            BuildError::NoProviders(dir.clone()),
            match dir {
                Some(_) => "add provider specs to the directory, or drop --no-bundled (`bundled_providers: false`)",
                None => "pass a providers directory with --providers, or drop --no-bundled (`bundled_providers: false`)",
            }
        ),
        other => other.into(),
    }
}

/// The start-up lines: where the gateway listens and where spans go, its limits, re-signing,
/// how to point an SDK at it, and where to scrape the metrics.
fn print_start(
    gateway: &Gateway,
    address: SocketAddr,
    fd_limit: Option<gateway::FdLimit>,
    fd_allowed: usize,
) {
    let config = gateway.config();
    let outputs = gateway.outputs();
    let mut to = Vec::new();
    if let Some(protocol) = outputs.otlp {
        to.push(format!(
            "OTLP ({})",
            if protocol == OtlpProtocol::Grpc {
                "grpc"
            } else {
                "http/protobuf"
            }
        ));
    }
    if outputs.console {
        to.push("stderr".into());
    }
    if let Some(path) = &outputs.traces_file {
        to.push(path.display().to_string());
    }
    let where_to = if to.is_empty() {
        "nowhere".to_string()
    } else {
        to.join(", ")
    };
    eprintln!(
        "specter: listening on http://{address} ({}, instrumentation {}; spans to {where_to})",
        super::count(gateway.providers(), "provider", "providers"),
        if config.instrument { "on" } else { "off" },
    );
    eprintln!("specter: {}", limits_line(fd_limit, config));
    if config.max_connections > fd_allowed {
        eprintln!("specter: warning: max_connections {} is more than the {fd_allowed} the open-file limit allows; past that, new connections wait until descriptors free up", config.max_connections);
    }
    for (id, signing) in &config.aws_signing {
        eprintln!(
            "specter: re-signing `{id}` requests with AWS SigV4 for service `{}` in {}",
            signing.service, signing.region
        );
    }
    eprintln!("specter: {}", sdk_hint(gateway.provider_ids(), address));
    if config.metrics_endpoint {
        eprintln!("specter: Prometheus metrics at http://{address}/metrics");
    }
}

/// How to point an SDK at the gateway, with an example among the providers loaded.
fn sdk_hint(ids: &[String], address: SocketAddr) -> String {
    let example = if ids.iter().any(|id| id == "openai") {
        format!(", e.g. OPENAI_BASE_URL=http://{address}/openai/v1")
    } else {
        ids.first()
            .map(|id| format!(", e.g. http://{address}/{id}"))
            .unwrap_or_default()
    };
    format!("point an SDK at http://{address}/<provider>{example}")
}

/// What the stop line reports: the calls, and what each output exported.
fn stop_line(report: &StopReport) -> String {
    let mut summary = Vec::new();
    if report.outputs.otlp.is_some() {
        summary.push(format!("OTLP: {}", report.otlp));
    }
    if report.outputs.traces_file.is_some() {
        summary.push(format!("file: {}", report.file));
    }
    if report.outputs.console {
        summary.push(format!("stderr: {}", report.console));
    }
    let summary = match summary.as_slice() {
        // One output: the short form scripts read.
        [one] => one
            .split_once(": ")
            .map_or(one.clone(), |(_, rest)| rest.to_string()),
        _ => summary.join("; "),
    };
    format!("{}; {summary}", calls_summary(&report.calls))
}

/// One line per provider and model: calls, tokens and cost (`openai gpt-4o-mini: 3 call(s),
/// in=120 out=45, $0.000123`), model names escaped.
fn usage_lines(rows: &[specter::unstable::telemetry::UsageRow]) -> Vec<String> {
    rows.iter()
        .map(|row| {
            let mut line = format!(
                "{} {}: {} call(s), in={} out={}",
                row.provider, row.model, row.calls, row.input_tokens, row.output_tokens
            );
            if row.unpriced < row.calls {
                line.push_str(&format!(
                    ", ${}",
                    specter::unstable::telemetry::export::format_usd(row.cost)
                ));
            }
            if row.unpriced > 0 && row.unpriced < row.calls {
                line.push_str(&format!(" ({} call(s) without a price)", row.unpriced));
            }
            specter::unstable::printable::escape_controls(&line).into_owned()
        })
        .collect()
}

/// `N call(s), N span(s) ended`, and the calls whose span never ended when there are any.
fn calls_summary(calls: &specter::unstable::telemetry::CallCounts) -> String {
    let (started, ended) = (calls.started(), calls.ended());
    let mut text = format!("{started} call(s), {ended} span(s) ended");
    if started > ended {
        text.push_str(&format!(", {} without an ended span", started - ended));
    }
    text
}

/// The start-up line on descriptors, connections and buffered bytes.
fn limits_line(fd_limit: Option<gateway::FdLimit>, config: &GatewayConfig) -> String {
    let files = match fd_limit {
        Some(l) if l.soft > l.before => {
            format!("open-file limit {} (raised from {})", l.soft, l.before)
        }
        Some(l) => format!("open-file limit {}", l.soft),
        None => "open-file limit unknown".to_string(),
    };
    format!(
        "{files}; up to {} client connections at once; {} MiB of request bodies buffered at once",
        config.max_connections,
        config.max_buffered_request_bytes >> 20
    )
}

/// Prints a reload outcome.
fn report_reload(event: gateway::ReloadEvent) {
    match event {
        gateway::ReloadEvent::Started { dir } => {
            eprintln!("specter: reloading the providers of {}", printable(&dir));
        }
        gateway::ReloadEvent::Reloaded {
            dir,
            providers,
            elapsed,
        } => eprintln!(
            "specter: reloaded {} from {} in {elapsed:?}",
            super::count(providers, "provider", "providers"),
            printable(&dir)
        ),
        gateway::ReloadEvent::Rejected { dir, error } => eprintln!(
            // Diagnostics escape the file content they quote.
            "specter: rejected the change to {}; the previous rules stay active:\n{error}",
            printable(&dir)
        ),
    }
}

/// Prints a route that matched no operation (once per route, at most
/// `specter::unstable::gateway::unmatched::MAX_REMEMBERED` of them).
fn report_unmatched(route: gateway::unmatched::Unmatched) {
    let path = specter::unstable::printable::escape_controls(&route.path);
    eprintln!(
        "specter: debug: {} /{}{path} matches no operation of `{}`; forwarded without a span (is a path prefix such as /v1 missing from the base URL?)",
        route.method, route.provider, route.provider
    );
}

/// A path as a line of text, control characters escaped.
fn printable(path: &std::path::Path) -> String {
    specter::unstable::printable::escape_controls(&path.display().to_string()).into_owned()
}
