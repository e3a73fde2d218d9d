//! Gateway configuration: the `specter.yaml` file (schema in `schemas/config.schema.json`),
//! overridden by command-line flags and environment variables.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The `specter.yaml` file. Every key is optional; flags override it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "specter gateway configuration")]
pub struct ConfigFile {
    /// Address to listen on. Default `127.0.0.1:8787`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "127.0.0.1:8787"))]
    pub listen: Option<String>,
    /// Allow listening on a non-loopback address (the gateway sees every prompt and API key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub allow_remote: Option<bool>,
    /// Provider spec directory, watched for changes. Its specs are added to the bundled providers
    /// (a spec with a bundled provider's id replaces it). Default: the bundled providers alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub providers: Option<PathBuf>,
    /// Load the bundled providers under those of `providers`; `false` loads that directory alone.
    /// Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = true))]
    pub bundled_providers: Option<bool>,
    /// Upstream base URL per provider id, replacing the provider's own (an Azure resource, a local
    /// Ollama or vLLM, a test server).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub upstreams: BTreeMap<String, String>,
    /// JSON-lines file of finished spans in the OTLP JSON encoding, written when no OTLP endpoint
    /// is configured. Default `specter-traces.jsonl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "specter-traces.jsonl"))]
    pub traces_file: Option<PathBuf>,
    /// Size in bytes past which the traces file is rotated (renamed `NAME.1.EXT`, older ones
    /// shifted up); 0 never rotates. Default 104857600 (100 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 104857600))]
    pub traces_file_max_bytes: Option<u64>,
    /// Rotated traces files kept (`NAME.1.EXT` the newest); older ones are deleted. 0 keeps none:
    /// the file starts over when full. Default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 5))]
    pub traces_file_max_files: Option<u32>,
    /// Print one line per finished span on stderr. Default: on when no OTLP endpoint is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console: Option<bool>,
    /// Largest request body accepted, in bytes. Default 33554432 (32 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 33554432))]
    pub max_request_bytes: Option<usize>,
    /// Largest response body kept for the response rules, in bytes (the client always gets all
    /// of it). Default 8388608 (8 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 8388608))]
    pub max_response_bytes: Option<usize>,
    /// Time to connect to an upstream. Default 10000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 10000))]
    pub connect_timeout_ms: Option<u64>,
    /// Time to wait for the upstream's response headers. Default 600000 (LLM calls are slow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 600000))]
    pub response_timeout_ms: Option<u64>,
    /// Time a client gets to send its whole request body. Default 60000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 60000))]
    pub request_body_timeout_ms: Option<u64>,
    /// Longest silence within a response body before it is ended as a timeout. Default 300000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 300000))]
    pub idle_timeout_ms: Option<u64>,
    /// Time in-flight requests get to finish on shutdown. Default 10000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 10000))]
    pub shutdown_grace_ms: Option<u64>,
    /// Most client connections served at once. Past it, new connections get a 503 (`/healthz`
    /// still answers) up to a small overflow allowance, then wait in the listen backlog; open
    /// connections are unaffected. The effective cap is also bounded by the open-file limit
    /// (two descriptors per connection: client and upstream). Default 10000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 10000))]
    pub max_connections: Option<usize>,
    /// Time a client gets to send a complete HTTP/1 request head, counted from the head's first
    /// byte (for a new connection, from its opening). Default 10000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 10000))]
    pub header_read_timeout_ms: Option<u64>,
    /// How long a client connection with no request in progress and nothing received is kept
    /// open. Default 60000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 60000))]
    pub keep_alive_timeout_ms: Option<u64>,
    /// Interval of HTTP/2 PING frames on client connections, to find dead peers. Default 20000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 20000))]
    pub http2_keep_alive_interval_ms: Option<u64>,
    /// Time an HTTP/2 PING may go unanswered before its connection is closed. Default 20000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 20000))]
    pub http2_keep_alive_timeout_ms: Option<u64>,
    /// Most concurrent streams on one HTTP/2 client connection. Default 256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 256))]
    pub http2_max_concurrent_streams: Option<u32>,
    /// Request body bytes held across all requests at once, from the body's arrival until its
    /// response is done. An instrumented call counts its body three times (the body, its parsed
    /// form and the message text kept for its span). A request that would pass the budget is
    /// answered 503 (`overloaded`, with `Retry-After`). Default 268435456 (256 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 268435456))]
    pub max_buffered_request_bytes: Option<usize>,
    /// Add the gateway span's W3C `traceparent` to upstream requests. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub propagate_trace_context: Option<bool>,
    /// Instrument traffic; `false` makes a plain proxy (for comparison). Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = true))]
    pub instrument: Option<bool>,
    /// Attribute dialects: `otel`, `agentops`, `openinference`, `gen_ai_latest_experimental`.
    /// Default `[otel]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = ["otel"]))]
    pub dialects: Option<Vec<String>>,
    /// Message content capture: `true`/`false` or `NO_CONTENT`, `SPAN_ONLY`, `EVENT_ONLY`,
    /// `SPAN_AND_EVENT`. Default: `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`, else
    /// `SPAN_ONLY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture_content: Option<String>,
    /// Longest content string kept, in characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_content_length: Option<usize>,
    /// PEM file of extra certificate authorities trusted for HTTPS upstreams, beside the Mozilla
    /// roots (a private CA in front of a self-hosted model server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_ca_file: Option<PathBuf>,
    /// Providers whose requests the gateway re-signs with AWS SigV4 using its own credentials
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`), e.g.
    /// `[bedrock]`. Anyone who can reach the gateway then calls the provider as the gateway.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aws_sign: Vec<String>,
    /// Redactions applied to every content value before export.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redact: Vec<RedactSpec>,
    /// Largest provider spec file read, in bytes; a bigger one is refused (at start-up and on
    /// reload) without being read. Default 4194304 (4 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 4194304))]
    pub max_spec_file_bytes: Option<u64>,
    /// Largest sum of the provider spec files of the directory, in bytes. Default 67108864
    /// (64 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 67108864))]
    pub max_spec_total_bytes: Option<u64>,
    /// Accept upstreams at link-local or cloud metadata addresses (169.254.0.0/16, fe80::/10,
    /// fd00:ec2::254, 100.100.100.200, metadata.google.internal, ...), from provider specs or
    /// `upstreams`. Default false: the gateway refuses to start with one, and a reload that adds
    /// one is rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub allow_metadata_upstreams: Option<bool>,
    /// Request context recorded on spans: request headers and W3C `baggage` entries mapped to
    /// attributes (`session.id`, `user.id`, ...), and the specter-only headers kept from the
    /// upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<crate::context::ContextSpec>,
    /// A price file (YAML or JSON, the format of `prices/genai-prices.json`) whose model prices
    /// come before the bundled ones. `--prices` wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prices: Option<PathBuf>,
    /// Answer `GET /metrics` on the listen address with the gateway's metrics in the Prometheus
    /// text format (the instruments exported over OTLP, cumulative); this reserves the provider id
    /// `metrics`. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = true))]
    pub metrics_endpoint: Option<bool>,
    /// Calls the trace viewer (`/-/viewer/`) keeps indexed from the traces file, the oldest
    /// dropped first (about 120 bytes each); 0 turns the viewer off. Default 100000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 100000))]
    pub viewer_max_calls: Option<usize>,
}

/// One redaction rule.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedactSpec {
    /// Regular expression.
    pub pattern: String,
    /// Replacement (`$1` for groups). Default `[REDACTED]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replacement: Option<String>,
}

/// The JSON Schema of `specter.yaml`.
pub fn config_schema() -> serde_json::Value {
    schemars::schema_for!(ConfigFile).to_value()
}

/// Why a configuration file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Unreadable file.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Not a regular file, or larger than 1 MiB.
    #[error(transparent)]
    File(#[from] crate::files::ReadError),
    /// Invalid content (quoted content with its control characters escaped).
    #[error("{}:{line}:{col}: {}", path.display(), crate::printable::escape_controls(message))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Line.
        line: usize,
        /// Column.
        col: usize,
        /// What is wrong.
        message: String,
    },
}

impl ConfigFile {
    /// Reads a configuration file: a regular file of at most 1 MiB.
    pub fn read(path: &std::path::Path) -> Result<ConfigFile, ConfigError> {
        let text = crate::files::read_text(path, crate::files::MAX_CONFIG_FILE_BYTES)?;
        let invalid = |line, col, message| ConfigError::Invalid {
            path: path.into(),
            line,
            col,
            message,
        };
        let doc =
            crate::yaml::parse(&text).map_err(|e| invalid(e.pos.line, e.pos.col, e.message))?;
        if doc.value.is_null() {
            return Ok(ConfigFile::default());
        }
        serde_json::from_value(doc.value.clone()).map_err(|e| {
            // serde's message names the key; point at the top of the file when no node matches.
            let message = e.to_string();
            let key = message.split('`').nth(1).unwrap_or_default();
            let pos = doc
                .exact_position(&format!("/{key}"))
                .unwrap_or(crate::yaml::Pos { line: 1, col: 1 });
            invalid(pos.line, pos.col, message)
        })
    }
}

/// The settled gateway configuration.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Provider directory (`None`: bundled).
    pub providers: Option<PathBuf>,
    /// Whether the bundled providers are loaded under those of the directory.
    pub bundled_providers: bool,
    /// Upstream overrides.
    pub upstreams: BTreeMap<String, String>,
    /// Request body limit.
    pub max_request_bytes: usize,
    /// Response bytes kept for rules.
    pub max_response_bytes: usize,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Response header timeout.
    pub response_timeout: Duration,
    /// Body idle timeout.
    pub idle_timeout: Duration,
    /// Request body deadline.
    pub request_body_timeout: Duration,
    /// Shutdown grace period.
    pub shutdown_grace: Duration,
    /// Most client connections served at once (before the open-file limit is applied).
    pub max_connections: usize,
    /// HTTP/1 request head deadline.
    pub header_read_timeout: Duration,
    /// Idle client connection lifetime.
    pub keep_alive_timeout: Duration,
    /// HTTP/2 PING interval.
    pub http2_keep_alive_interval: Duration,
    /// HTTP/2 PING answer deadline.
    pub http2_keep_alive_timeout: Duration,
    /// HTTP/2 streams per connection.
    pub http2_max_concurrent_streams: u32,
    /// Request body bytes buffered at once across requests.
    pub max_buffered_request_bytes: usize,
    /// Inject `traceparent` upstream.
    pub propagate_trace_context: bool,
    /// Instrument traffic.
    pub instrument: bool,
    /// Extra certificate authorities for HTTPS upstreams.
    pub upstream_ca: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// SigV4 re-signing per provider id.
    pub aws_signing: BTreeMap<String, super::sign::AwsSigning>,
    /// Request context mapping and the headers kept from the upstream.
    pub context: std::sync::Arc<crate::context::ContextRules>,
    /// Model prices.
    pub prices: std::sync::Arc<crate::prices::PriceBook>,
    /// Answer `GET /metrics`.
    pub metrics_endpoint: bool,
    /// Calls the trace viewer keeps indexed; 0 turns it off.
    pub viewer_max_calls: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
            providers: None,
            bundled_providers: true,
            upstreams: BTreeMap::new(),
            max_request_bytes: 32 << 20,
            max_response_bytes: 8 << 20,
            connect_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(600),
            idle_timeout: Duration::from_secs(300),
            request_body_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(10),
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(60),
            http2_keep_alive_interval: Duration::from_secs(20),
            http2_keep_alive_timeout: Duration::from_secs(20),
            http2_max_concurrent_streams: 256,
            max_buffered_request_bytes: 256 << 20,
            propagate_trace_context: false,
            instrument: true,
            upstream_ca: Vec::new(),
            aws_signing: BTreeMap::new(),
            context: std::sync::Arc::new(crate::context::ContextRules::default()),
            prices: crate::prices::PriceBook::bundled(),
            metrics_endpoint: true,
            viewer_max_calls: crate::viewer::Limits::DEFAULT_MAX_CALLS,
        }
    }
}

#[cfg(test)]
mod schema_defaults {
    use super::*;
    use crate::files::{DEFAULT_MAX_SPEC_FILE_BYTES, DEFAULT_MAX_SPEC_TOTAL_BYTES};
    use crate::telemetry::traces_file::Rotation;

    fn default_of(schema: &serde_json::Value, key: &str) -> serde_json::Value {
        schema["properties"][key]["default"].clone()
    }

    fn ms(d: Duration) -> serde_json::Value {
        serde_json::json!(d.as_millis())
    }

    #[test]
    fn the_schema_shows_the_defaults_the_gateway_uses() {
        let schema = config_schema();
        let config = GatewayConfig::default();
        let expected = [
            ("listen", serde_json::json!(config.listen.to_string())),
            (
                "max_request_bytes",
                serde_json::json!(config.max_request_bytes),
            ),
            (
                "max_response_bytes",
                serde_json::json!(config.max_response_bytes),
            ),
            ("connect_timeout_ms", ms(config.connect_timeout)),
            ("response_timeout_ms", ms(config.response_timeout)),
            ("request_body_timeout_ms", ms(config.request_body_timeout)),
            ("idle_timeout_ms", ms(config.idle_timeout)),
            ("shutdown_grace_ms", ms(config.shutdown_grace)),
            ("max_connections", serde_json::json!(config.max_connections)),
            ("header_read_timeout_ms", ms(config.header_read_timeout)),
            ("keep_alive_timeout_ms", ms(config.keep_alive_timeout)),
            (
                "http2_keep_alive_interval_ms",
                ms(config.http2_keep_alive_interval),
            ),
            (
                "http2_keep_alive_timeout_ms",
                ms(config.http2_keep_alive_timeout),
            ),
            (
                "http2_max_concurrent_streams",
                serde_json::json!(config.http2_max_concurrent_streams),
            ),
            (
                "max_buffered_request_bytes",
                serde_json::json!(config.max_buffered_request_bytes),
            ),
            (
                "propagate_trace_context",
                serde_json::json!(config.propagate_trace_context),
            ),
            ("instrument", serde_json::json!(config.instrument)),
            (
                "traces_file_max_bytes",
                serde_json::json!(Rotation::DEFAULT_MAX_BYTES),
            ),
            (
                "traces_file_max_files",
                serde_json::json!(Rotation::DEFAULT_MAX_FILES),
            ),
            (
                "max_spec_file_bytes",
                serde_json::json!(DEFAULT_MAX_SPEC_FILE_BYTES),
            ),
            (
                "max_spec_total_bytes",
                serde_json::json!(DEFAULT_MAX_SPEC_TOTAL_BYTES),
            ),
            (
                "metrics_endpoint",
                serde_json::json!(config.metrics_endpoint),
            ),
            (
                "viewer_max_calls",
                serde_json::json!(config.viewer_max_calls),
            ),
        ];
        for (key, value) in expected {
            assert_eq!(default_of(&schema, key), value, "{key}");
        }
    }
}
