//! `specter serve`: the instrumenting gateway.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use regex::Regex;
use specter::content::{Capture, ContentPolicy, Redaction};
use specter::dialect::Dialect;
use specter::gateway::{self, ConfigFile, GatewayConfig, Proxy};
use specter::instrument::{Instrumentor, Options};
use specter::telemetry::export::LineSink;
use specter::telemetry::pipeline::{otlp_configured, ExportSettings, OtlpProtocol, Pipeline};
use specter::telemetry::traces_file::Rotation;
use specter::Catalog;

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
    /// Provider spec directory, watched and reloaded on change and on SIGHUP. Default: the bundled
    /// providers.
    #[arg(long, value_name = "DIR", env = "SPECTER_PROVIDERS")]
    providers: Option<PathBuf>,
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
    /// Attribute dialect (repeatable): `otel`, `agentops`, `openinference`.
    #[arg(long = "dialect", value_name = "DIALECT")]
    dialects: Vec<String>,
    /// Accept upstreams at link-local or cloud metadata addresses (169.254.169.254,
    /// metadata.google.internal, ...), which are refused by default: through them the gateway
    /// could hand out the host's cloud credentials.
    #[arg(long, env = "SPECTER_ALLOW_METADATA_UPSTREAM")]
    allow_metadata_upstream: bool,
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
                .map(specter::printable::escape_controls)
                .collect();
            eprintln!("error: {}", lines.join("\n"));
            ExitCode::from(2)
        }
    }
}

fn serve(args: &Args) -> anyhow::Result<()> {
    // First, so that everything opened later counts against the raised limit.
    let fd_limit = gateway::raise_fd_limit();
    let file = match &args.config {
        Some(path) => ConfigFile::read(path)?,
        None => ConfigFile::default(),
    };
    let mut config = GatewayConfig::default();
    let listen = args.listen.clone().or(file.listen.clone());
    if let Some(listen) = listen {
        config.listen = listen.parse::<SocketAddr>().with_context(|| {
            format!("`{listen}` is not an ADDR:PORT listen address (e.g. 127.0.0.1:8787)")
        })?;
    }
    let remote_allowed = args.allow_remote || file.allow_remote == Some(true);
    if !(config.listen.ip().is_loopback() || remote_allowed) {
        bail!(
            "refusing to listen on {}: the gateway sees every prompt and API key; pass --allow-remote to listen beyond loopback",
            config.listen
        );
    }
    config.providers = args.providers.clone().or(file.providers.clone());
    config.upstreams = file.upstreams.clone();
    for pair in &args.upstreams {
        let Some((provider, url)) = pair.split_once('=') else {
            bail!(
                "--upstream takes PROVIDER=URL, e.g. openai=http://127.0.0.1:9000 (got `{pair}`)"
            );
        };
        config
            .upstreams
            .insert(provider.to_string(), url.to_string());
    }
    for (provider, url) in &config.upstreams {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!("the upstream of `{provider}` must be an http(s) URL, got `{url}`");
        }
    }
    if let Some(path) = args.upstream_ca.as_ref().or(file.upstream_ca_file.as_ref()) {
        config.upstream_ca = specter::tls::read_ca_file(path)?;
    }
    let ms = |v: Option<u64>, default: Duration| v.map(Duration::from_millis).unwrap_or(default);
    config.max_request_bytes = file.max_request_bytes.unwrap_or(config.max_request_bytes);
    config.max_response_bytes = file.max_response_bytes.unwrap_or(config.max_response_bytes);
    config.connect_timeout = ms(file.connect_timeout_ms, config.connect_timeout);
    config.response_timeout = ms(file.response_timeout_ms, config.response_timeout);
    config.idle_timeout = ms(file.idle_timeout_ms, config.idle_timeout);
    config.request_body_timeout = ms(file.request_body_timeout_ms, config.request_body_timeout);
    config.shutdown_grace = ms(file.shutdown_grace_ms, config.shutdown_grace);
    config.header_read_timeout = ms(file.header_read_timeout_ms, config.header_read_timeout);
    config.keep_alive_timeout = ms(file.keep_alive_timeout_ms, config.keep_alive_timeout);
    config.http2_keep_alive_interval = ms(
        file.http2_keep_alive_interval_ms,
        config.http2_keep_alive_interval,
    );
    config.http2_keep_alive_timeout = ms(
        file.http2_keep_alive_timeout_ms,
        config.http2_keep_alive_timeout,
    );
    config.http2_max_concurrent_streams = file
        .http2_max_concurrent_streams
        .unwrap_or(config.http2_max_concurrent_streams);
    config.max_buffered_request_bytes = file
        .max_buffered_request_bytes
        .unwrap_or(config.max_buffered_request_bytes);
    // A cap set in the configuration is taken as it is; the default one is bounded by what the
    // open-file limit allows.
    let fd_allowed = gateway::connection_cap(usize::MAX, fd_limit.map(|l| l.soft));
    config.max_connections = file
        .max_connections
        .unwrap_or(config.max_connections.min(fd_allowed));
    config.propagate_trace_context =
        args.propagate_trace_context || file.propagate_trace_context == Some(true);
    config.instrument = !args.no_instrument && file.instrument != Some(false);

    let limits = specter::files::ReadLimits {
        max_file_bytes: file
            .max_spec_file_bytes
            .unwrap_or(specter::files::DEFAULT_MAX_SPEC_FILE_BYTES),
        max_total_bytes: file
            .max_spec_total_bytes
            .unwrap_or(specter::files::DEFAULT_MAX_SPEC_TOTAL_BYTES),
    };
    let allow_metadata =
        args.allow_metadata_upstream || file.allow_metadata_upstreams == Some(true);
    let catalog = match &config.providers {
        Some(dir) => Catalog::load_within(std::slice::from_ref(dir), &limits),
        None => Catalog::bundled(),
    };
    let catalog = match catalog {
        Ok(c) => c,
        Err(specter::LoadError::Invalid(diags)) => {
            bail!("{diags}\nthe provider specs have problems; fix them or run without --providers")
        }
        Err(specter::LoadError::File(e)) => bail!("{e}\n  help: {}", super::file_help(&e)),
        Err(e) => bail!("{e}"),
    };
    for provider in config.upstreams.keys() {
        if catalog.provider(provider).is_none() {
            bail!("--upstream names `{provider}`, which is not a loaded provider (see `specter list`)");
        }
    }
    specter::upstream_check::refuse_metadata_upstreams(
        &catalog,
        &config.upstreams,
        allow_metadata,
    )?;

    let signed = if args.aws_sign.is_empty() {
        &file.aws_sign
    } else {
        &args.aws_sign
    };
    for provider_id in signed {
        let Some(provider) = catalog.provider(provider_id) else {
            bail!("--aws-sign names `{provider_id}`, which is not a loaded provider (see `specter list`)");
        };
        let base = config
            .upstreams
            .get(provider_id)
            .cloned()
            .or_else(|| provider.base_url.clone())
            .unwrap_or_default();
        let signing = gateway::sign::AwsSigning::from_env(
            provider_id,
            provider.aws_service.as_deref(),
            &base,
        )?;
        config.aws_signing.insert(provider_id.clone(), signing);
    }

    let traces_file = if args.no_traces_file {
        None
    } else {
        args.traces_file
            .clone()
            .or(file.traces_file.clone())
            .or(Some(PathBuf::from("specter-traces.jsonl")))
    };
    let otlp = if otlp_configured() {
        Some(OtlpProtocol::from_env().map_err(anyhow::Error::msg)?)
    } else {
        None
    };
    // With an OTLP endpoint the embedded outputs are off unless asked for.
    let traces_file = if otlp.is_some() && args.traces_file.is_none() && file.traces_file.is_none()
    {
        None
    } else {
        traces_file
    };
    let console_default = otlp.is_none();
    let settings = ExportSettings {
        otlp,
        console: (!args.quiet && file.console.unwrap_or(console_default))
            .then(|| LineSink::new(|line| eprintln!("specter: {line}"))),
        traces_file: traces_file.clone(),
        traces_file_rotation: Rotation::configured(
            file.traces_file_max_bytes,
            file.traces_file_max_files,
        ),
        // The standard batch processor variable; a larger default than the SDK's 2048, since a
        // gateway ends many spans at once.
        max_queue: std::env::var("OTEL_BSP_MAX_QUEUE_SIZE")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(8192),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // The gRPC exporter binds to the runtime it is created in.
    let pipeline = {
        let _entered = runtime.enter();
        Pipeline::start(&settings)?
    };
    if let (Some(path), 1..) = (&traces_file, pipeline.traces_file_repaired) {
        eprintln!(
            "specter: cut a torn last line ({} bytes) from {}",
            pipeline.traces_file_repaired,
            path.display()
        );
    }

    let names = if args.dialects.is_empty() {
        file.dialects.clone().unwrap_or_else(|| vec!["otel".into()])
    } else {
        args.dialects.clone()
    };
    let dialects = names
        .iter()
        .map(|n| Dialect::named(n))
        .collect::<Result<Vec<_>, _>>()?;
    let mut content = ContentPolicy::from_env()?;
    if let Some(capture) = &file.capture_content {
        content.capture = capture
            .parse::<Capture>()
            .context("capture_content in the configuration file")?;
    }
    content.max_length = file.max_content_length;
    for r in &file.redact {
        let pattern =
            Regex::new(&r.pattern).with_context(|| format!("redact pattern `{}`", r.pattern))?;
        content.redactions.push(Redaction {
            pattern,
            replacement: r.replacement.clone().unwrap_or_else(|| "[REDACTED]".into()),
        });
    }
    let slot = specter::CatalogSlot::new(catalog.clone());
    let instrumentor = if config.instrument {
        let telemetry = pipeline.telemetry(dialects, content);
        Some(
            Instrumentor::builder()
                .catalog_slot(slot.clone())
                .telemetry(telemetry)
                .options(Options::default())
                .build()?,
        )
    } else {
        None
    };

    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let address = listener.local_addr()?;
        let _watch = match &config.providers {
            Some(dir) => {
                let settings = gateway::ReloadSettings { limits, upstreams: config.upstreams.clone(), allow_metadata_upstreams: allow_metadata, report: Arc::new(report_reload) };
                Some(gateway::watch_providers(dir.clone(), slot.clone(), settings)?)
            }
            None => None,
        };
        let client = gateway::upstream_client(&config)?;
        let proxy = Arc::new(Proxy::new(config.clone(), instrumentor, slot, client));
        let mut outputs = Vec::new();
        if let Some(protocol) = settings.otlp {
            outputs.push(format!("OTLP ({})", if protocol == OtlpProtocol::Grpc { "grpc" } else { "http/protobuf" }));
        }
        if settings.console.is_some() {
            outputs.push("stderr".into());
        }
        if let Some(path) = &traces_file {
            outputs.push(path.display().to_string());
        }
        let where_to = if outputs.is_empty() { "nowhere".to_string() } else { outputs.join(", ") };
        eprintln!(
            "specter: listening on http://{address} ({} providers, instrumentation {}; spans to {where_to})",
            catalog.providers().len(),
            if config.instrument { "on" } else { "off" },
        );
        eprintln!("specter: {}", limits_line(fd_limit, &config));
        if config.max_connections > fd_allowed {
            eprintln!("specter: warning: max_connections {} is more than the {fd_allowed} the open-file limit allows; past that, new connections wait until descriptors free up", config.max_connections);
        }
        for (id, signing) in &config.aws_signing {
            eprintln!("specter: re-signing `{id}` requests with AWS SigV4 for service `{}` in {}", signing.service, signing.region);
        }
        eprintln!("specter: point an SDK at http://{address}/<provider>, e.g. OPENAI_BASE_URL=http://{address}/openai/v1");
        gateway::serve(listener, proxy, gateway::shutdown_signal()).await;
        anyhow::Ok(())
    })?;
    pipeline.shutdown();
    let mut summary = Vec::new();
    if settings.otlp.is_some() {
        summary.push(format!("OTLP: {}", pipeline.otlp_stats.summary()));
    }
    if traces_file.is_some() {
        summary.push(format!("file: {}", pipeline.file_stats.summary()));
    }
    if settings.console.is_some() {
        summary.push(format!("stderr: {}", pipeline.console_stats.summary()));
    }
    let summary = match summary.as_slice() {
        // One output: the short form scripts read.
        [one] => one
            .split_once(": ")
            .map_or(one.clone(), |(_, rest)| rest.to_string()),
        _ => summary.join("; "),
    };
    eprintln!(
        "specter: stopped ({}; {summary})",
        calls_summary(&pipeline.calls)
    );
    Ok(())
}

/// `N call(s), N span(s) ended`, and the calls whose span never ended when there are any.
fn calls_summary(calls: &specter::telemetry::CallCounts) -> String {
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
            "specter: reloaded {providers} provider(s) from {} in {elapsed:?}",
            printable(&dir)
        ),
        gateway::ReloadEvent::Rejected { dir, error } => eprintln!(
            // Diagnostics escape the file content they quote.
            "specter: rejected the change to {}; the previous rules stay active:\n{error}",
            printable(&dir)
        ),
    }
}

/// A path as a line of text, control characters escaped.
fn printable(path: &std::path::Path) -> String {
    specter::printable::escape_controls(&path.display().to_string()).into_owned()
}
