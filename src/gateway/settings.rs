//! The gateway's settings resolved once: command-line values, the environment and the
//! `specter.yaml` file give one [`Settings`] (the [`GatewayConfig`], where spans go, the
//! attribute dialects and the content policy). Flags win over the file; the file over the
//! defaults, which live in the configuration types.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use regex::Regex;

use super::config::{ConfigError, ConfigFile, GatewayConfig};
use crate::files::ReadLimits;
use crate::render::content::{Capture, CaptureError, ContentEnvError, ContentPolicy, Redaction};
use crate::render::dialect::{Dialect, DialectError};
use crate::telemetry::export::LineSink;
use crate::telemetry::pipeline::{otlp_configured, ExportSettings, OtlpProtocol};
use crate::telemetry::traces_file::Rotation;

/// The traces file written when neither a flag nor the file names one.
const DEFAULT_TRACES_FILE: &str = "specter-traces.jsonl";

/// Spans queued for export by default: more than the SDK's 2048, since a gateway ends many spans
/// at once (`OTEL_BSP_MAX_QUEUE_SIZE` sets it).
const DEFAULT_MAX_QUEUE: usize = 8192;

/// The values given on the command line (or by their environment variables), as parsed.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// `--listen`.
    pub listen: Option<String>,
    /// `--allow-remote`.
    pub allow_remote: bool,
    /// `--providers`.
    pub providers: Option<PathBuf>,
    /// `--no-bundled`.
    pub no_bundled: bool,
    /// `--upstream PROVIDER=URL`, in order.
    pub upstreams: Vec<String>,
    /// `--upstream-ca`.
    pub upstream_ca: Option<PathBuf>,
    /// `--aws-sign`.
    pub aws_sign: Vec<String>,
    /// `--traces-file`.
    pub traces_file: Option<PathBuf>,
    /// `--no-traces-file`.
    pub no_traces_file: bool,
    /// `--quiet`.
    pub quiet: bool,
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--no-instrument`.
    pub no_instrument: bool,
    /// `--propagate-trace-context`.
    pub propagate_trace_context: bool,
    /// `--dialect`, in order.
    pub dialects: Vec<String>,
    /// `--allow-metadata-upstream`.
    pub allow_metadata_upstream: bool,
    /// `--prices`.
    pub prices: Option<PathBuf>,
}

/// Everything the gateway is built from.
#[derive(Debug)]
pub struct Settings {
    /// The gateway's own configuration.
    pub gateway: GatewayConfig,
    /// Where spans go.
    pub export: ExportSettings,
    /// Attribute dialects.
    pub dialects: Vec<Dialect>,
    /// Message content policy.
    pub content: ContentPolicy,
    /// Size caps of the provider spec files.
    pub spec_limits: ReadLimits,
    /// Accept upstreams at link-local or cloud metadata addresses.
    pub allow_metadata_upstreams: bool,
    /// Providers whose requests are re-signed with AWS SigV4.
    pub aws_sign: Vec<String>,
    /// Client connections the open-file limit allows.
    pub fd_allowed: usize,
}

/// Why the settings cannot be resolved.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The configuration file cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The listen address is not an address.
    #[error("`{listen}` is not an ADDR:PORT listen address (e.g. 127.0.0.1:8787)")]
    Listen {
        /// What was given.
        listen: String,
        /// Why it is not an address.
        source: std::net::AddrParseError,
    },
    /// A non-loopback listen address without `allow_remote`.
    #[error("refusing to listen on {0}: the gateway sees every prompt and API key; pass --allow-remote to listen beyond loopback")]
    Remote(SocketAddr),
    /// An `--upstream` value without `=`.
    #[error("--upstream takes PROVIDER=URL, e.g. openai=http://127.0.0.1:9000 (got `{0}`)")]
    UpstreamFlag(String),
    /// An upstream that is not an http(s) URL.
    #[error("the upstream of `{provider}` must be an http(s) URL, got `{url}`")]
    UpstreamScheme {
        /// The provider id.
        provider: String,
        /// The URL given.
        url: String,
    },
    /// The extra certificate authorities cannot be read.
    #[error(transparent)]
    UpstreamCa(#[from] crate::tls::TlsError),
    /// The OTLP protocol variable names no protocol.
    #[error("{0}")]
    Otlp(String),
    /// An unknown dialect.
    #[error(transparent)]
    Dialect(#[from] DialectError),
    /// The content capture variable is not a capture value.
    #[error(transparent)]
    ContentEnv(#[from] ContentEnvError),
    /// `capture_content` is not a capture value.
    #[error("capture_content in the configuration file")]
    Capture(#[source] CaptureError),
    /// A redaction pattern is not a regular expression.
    #[error("redact pattern `{pattern}`")]
    Redact {
        /// The pattern.
        pattern: String,
        /// Why it is not one.
        source: regex::Error,
    },
    /// The `context` section cannot be used.
    #[error(transparent)]
    Context(#[from] crate::context::ContextError),
    /// The price file cannot be used.
    #[error(transparent)]
    Prices(#[from] crate::prices::PriceFileError),
}

impl Settings {
    /// Resolves `flags`, the environment and the configuration file they name. `fd_soft_limit`
    /// is the open-file limit in force (it bounds the default connection cap); `console` receives
    /// the per-span lines when they are on.
    pub fn resolve(
        flags: &Flags,
        fd_soft_limit: Option<u64>,
        console: LineSink,
    ) -> Result<Settings, SettingsError> {
        let file = match &flags.config {
            Some(path) => ConfigFile::read(path)?,
            None => ConfigFile::default(),
        };
        let mut gateway = GatewayConfig::default();
        listen(flags, &file, &mut gateway)?;
        upstreams(flags, &file, &mut gateway)?;
        if let Some(path) = flags
            .upstream_ca
            .as_ref()
            .or(file.upstream_ca_file.as_ref())
        {
            gateway.upstream_ca = crate::tls::read_ca_file(path)?;
        }
        file_limits(&file, &mut gateway);
        // A cap set in the configuration is taken as it is; the default one is bounded by what
        // the open-file limit allows.
        let fd_allowed = super::connection_cap(usize::MAX, fd_soft_limit);
        gateway.max_connections = file
            .max_connections
            .unwrap_or(gateway.max_connections.min(fd_allowed));
        gateway.propagate_trace_context =
            flags.propagate_trace_context || file.propagate_trace_context == Some(true);
        gateway.instrument = !flags.no_instrument && file.instrument != Some(false);
        gateway.metrics_endpoint = file.metrics_endpoint != Some(false);
        if let Some(max) = file.viewer_max_calls {
            gateway.viewer_max_calls = max;
        }
        context_and_prices(flags, &file, &mut gateway)?;
        let spec_limits = ReadLimits {
            max_file_bytes: file
                .max_spec_file_bytes
                .unwrap_or(crate::files::DEFAULT_MAX_SPEC_FILE_BYTES),
            max_total_bytes: file
                .max_spec_total_bytes
                .unwrap_or(crate::files::DEFAULT_MAX_SPEC_TOTAL_BYTES),
        };
        let aws_sign = if flags.aws_sign.is_empty() {
            file.aws_sign.clone()
        } else {
            flags.aws_sign.clone()
        };
        Ok(Settings {
            export: export(flags, &file, console, gateway.metrics_endpoint)?,
            dialects: dialects(flags, &file)?,
            content: content(&file)?,
            spec_limits,
            allow_metadata_upstreams: flags.allow_metadata_upstream
                || file.allow_metadata_upstreams == Some(true),
            aws_sign,
            fd_allowed,
            gateway,
        })
    }
}

/// The request context rules and the price book (the user's price file before the bundled one).
fn context_and_prices(
    flags: &Flags,
    file: &ConfigFile,
    gateway: &mut GatewayConfig,
) -> Result<(), SettingsError> {
    if let Some(spec) = &file.context {
        gateway.context = std::sync::Arc::new(crate::context::ContextRules::from_spec(spec)?);
    }
    if let Some(path) = flags.prices.as_ref().or(file.prices.as_ref()) {
        let bundled = crate::prices::PriceBook::bundled();
        gateway.prices = std::sync::Arc::new(crate::prices::load_file(path)?.before(&bundled));
    }
    Ok(())
}

/// The listen address, refused beyond loopback unless allowed.
fn listen(
    flags: &Flags,
    file: &ConfigFile,
    gateway: &mut GatewayConfig,
) -> Result<(), SettingsError> {
    if let Some(listen) = flags.listen.clone().or(file.listen.clone()) {
        gateway.listen = listen
            .parse::<SocketAddr>()
            .map_err(|source| SettingsError::Listen { listen, source })?;
    }
    let remote_allowed = flags.allow_remote || file.allow_remote == Some(true);
    if !(gateway.listen.ip().is_loopback() || remote_allowed) {
        return Err(SettingsError::Remote(gateway.listen));
    }
    Ok(())
}

/// The provider directory and the upstream overrides (flags after the file's).
fn upstreams(
    flags: &Flags,
    file: &ConfigFile,
    gateway: &mut GatewayConfig,
) -> Result<(), SettingsError> {
    gateway.providers = flags.providers.clone().or(file.providers.clone());
    gateway.bundled_providers = !flags.no_bundled && file.bundled_providers != Some(false);
    gateway.upstreams = file.upstreams.clone();
    for pair in &flags.upstreams {
        let Some((provider, url)) = pair.split_once('=') else {
            return Err(SettingsError::UpstreamFlag(pair.clone()));
        };
        gateway
            .upstreams
            .insert(provider.to_string(), url.to_string());
    }
    for (provider, url) in &gateway.upstreams {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(SettingsError::UpstreamScheme {
                provider: provider.clone(),
                url: url.clone(),
            });
        }
    }
    Ok(())
}

/// The sizes and timeouts the file sets.
fn file_limits(file: &ConfigFile, config: &mut GatewayConfig) {
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
}

/// Where spans go: OTLP when its endpoint is set, and then the embedded outputs only when asked
/// for; otherwise the traces file and the console lines.
fn export(
    flags: &Flags,
    file: &ConfigFile,
    console: LineSink,
    metrics_endpoint: bool,
) -> Result<ExportSettings, SettingsError> {
    let otlp = if otlp_configured() {
        Some(OtlpProtocol::from_env().map_err(SettingsError::Otlp)?)
    } else {
        None
    };
    let named = flags.traces_file.clone().or(file.traces_file.clone());
    let traces_file = if flags.no_traces_file || (otlp.is_some() && named.is_none()) {
        None
    } else {
        named.or(Some(PathBuf::from(DEFAULT_TRACES_FILE)))
    };
    let console_on = !flags.quiet && file.console.unwrap_or(otlp.is_none());
    Ok(ExportSettings {
        otlp,
        console: console_on.then_some(console),
        traces_file,
        traces_file_rotation: Rotation::configured(
            file.traces_file_max_bytes,
            file.traces_file_max_files,
        ),
        max_queue: std::env::var("OTEL_BSP_MAX_QUEUE_SIZE")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(DEFAULT_MAX_QUEUE),
        metrics_endpoint,
    })
}

/// The attribute dialects (flags, else the file, else `otel`), with the environment's
/// semantic-conventions stability opt-in (`OTEL_SEMCONV_STABILITY_OPT_IN`) applied.
fn dialects(flags: &Flags, file: &ConfigFile) -> Result<Vec<Dialect>, SettingsError> {
    let names = if flags.dialects.is_empty() {
        file.dialects.clone().unwrap_or_else(|| vec!["otel".into()])
    } else {
        flags.dialects.clone()
    };
    let dialects = names
        .iter()
        .map(|n| Dialect::named(n))
        .collect::<Result<Vec<_>, _>>()?;
    let opt_in = std::env::var(crate::render::dialect::STABILITY_OPT_IN_ENV).ok();
    Ok(crate::render::dialect::with_stability_opt_in(
        dialects,
        opt_in.as_deref(),
    )?)
}

/// The content policy: the environment's, with the file's capture, length and redactions.
fn content(file: &ConfigFile) -> Result<ContentPolicy, SettingsError> {
    let mut content = ContentPolicy::from_env()?;
    if let Some(capture) = &file.capture_content {
        content.capture = capture.parse::<Capture>().map_err(SettingsError::Capture)?;
    }
    content.max_length = file.max_content_length;
    for r in &file.redact {
        let pattern = Regex::new(&r.pattern).map_err(|source| SettingsError::Redact {
            pattern: r.pattern.clone(),
            source,
        })?;
        content.redactions.push(Redaction {
            pattern,
            replacement: r.replacement.clone().unwrap_or_else(|| "[REDACTED]".into()),
        });
    }
    Ok(content)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    fn quiet() -> Flags {
        Flags {
            quiet: true,
            no_traces_file: true,
            ..Flags::default()
        }
    }

    fn resolve(flags: &Flags) -> Result<Settings, SettingsError> {
        Settings::resolve(flags, Some(1 << 20), LineSink::new(|_| {}))
    }

    #[test]
    fn bundled_providers_are_on_unless_the_flag_or_the_file_turns_them_off() {
        assert!(resolve(&quiet()).unwrap().gateway.bundled_providers);
        let off = Flags {
            no_bundled: true,
            ..quiet()
        };
        assert!(!resolve(&off).unwrap().gateway.bundled_providers);
        let path = std::env::temp_dir().join(format!(
            "specter-settings-{}-bundled.yaml",
            std::process::id()
        ));
        std::fs::write(&path, "bundled_providers: false\n").unwrap();
        let from_file = Flags {
            config: Some(path.clone()),
            ..quiet()
        };
        let settings = resolve(&from_file).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(!settings.gateway.bundled_providers);
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_the_defaults() {
        let path = std::env::temp_dir().join(format!(
            "specter-settings-{}-flags-win.yaml",
            std::process::id()
        ));
        std::fs::write(
            &path,
            "listen: 127.0.0.1:9000\nidle_timeout_ms: 1500\nupstreams:\n  openai: http://127.0.0.1:1\n  anthropic: http://127.0.0.1:2\ndialects: [agentops]\n",
        )
        .unwrap();
        let flags = Flags {
            config: Some(path),
            listen: Some("127.0.0.1:9001".into()),
            upstreams: vec!["openai=http://127.0.0.1:3".into()],
            ..quiet()
        };
        let settings = resolve(&flags).unwrap();
        std::fs::remove_file(flags.config.as_ref().unwrap()).unwrap();
        let gateway = &settings.gateway;
        assert_eq!(gateway.listen.to_string(), "127.0.0.1:9001");
        assert_eq!(gateway.idle_timeout, Duration::from_millis(1500));
        assert_eq!(gateway.response_timeout, Duration::from_secs(600));
        assert_eq!(gateway.upstreams["openai"], "http://127.0.0.1:3");
        assert_eq!(gateway.upstreams["anthropic"], "http://127.0.0.1:2");
        assert_eq!(settings.dialects, vec![Dialect::named("agentops").unwrap()]);
        assert!(settings.export.console.is_none());
        assert_eq!(settings.export.traces_file, None);
    }

    #[test]
    fn the_default_traces_file_and_console_are_on_without_otlp_settings() {
        let settings = resolve(&Flags::default());
        // Without an OTLP endpoint in the environment (the test process sets none).
        if otlp_configured() {
            return;
        }
        let export = settings.unwrap().export;
        assert_eq!(
            export.traces_file,
            Some(PathBuf::from("specter-traces.jsonl"))
        );
        assert!(export.console.is_some());
        assert_eq!(export.max_queue, DEFAULT_MAX_QUEUE);
    }

    #[test]
    fn bad_values_are_refused_with_their_messages() {
        let refused = |flags: Flags| resolve(&flags).unwrap_err().to_string();
        assert_eq!(
            refused(Flags {
                listen: Some("0.0.0.0:8787".into()),
                ..quiet()
            }),
            "refusing to listen on 0.0.0.0:8787: the gateway sees every prompt and API key; pass --allow-remote to listen beyond loopback"
        );
        assert_eq!(
            refused(Flags {
                listen: Some("localhost".into()),
                ..quiet()
            }),
            "`localhost` is not an ADDR:PORT listen address (e.g. 127.0.0.1:8787)"
        );
        assert_eq!(
            refused(Flags {
                upstreams: vec!["openai".into()],
                ..quiet()
            }),
            "--upstream takes PROVIDER=URL, e.g. openai=http://127.0.0.1:9000 (got `openai`)"
        );
        assert_eq!(
            refused(Flags {
                upstreams: vec!["openai=ftp://x".into()],
                ..quiet()
            }),
            "the upstream of `openai` must be an http(s) URL, got `ftp://x`"
        );
    }

    #[test]
    fn the_default_connection_cap_is_bounded_by_the_open_file_limit() {
        let few = Settings::resolve(&quiet(), Some(64), LineSink::new(|_| {})).unwrap();
        assert_eq!((few.fd_allowed, few.gateway.max_connections), (1, 1));
        let many = resolve(&quiet()).unwrap();
        assert_eq!(many.gateway.max_connections, 10_000);
    }
}
