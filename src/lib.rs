//! specter: declarative OpenTelemetry instrumentation for LLM provider APIs.
//!
//! Each provider is a YAML spec (see [`spec`]) listing the operations to instrument, JSONPath
//! rules from request and response bodies to span attributes, and how streamed chunks fold into
//! the response. The pipeline:
//!
//! ```text
//! providers/*.yaml ─▶ spec (serde types) ─▶ compile (checked, JSONPaths parsed once) ─▶ Catalog
//! exchange (method, url, headers, bodies) ─▶ Catalog::find ─▶ engine::Exchange ─▶ Record
//! Record ─▶ render (content policy, credentials, dialects) ─▶ telemetry (span + metrics)
//! ```
//!
//! The modules by layer: the raw spec types ([`spec`]); reading them ([`files`]: regular files
//! under size caps, [`yaml`]: positioned YAML, [`diagnostic`]: located problems); compiling them
//! ([`compile`]) into a [`Catalog`] ([`catalog`]); the runtime ([`engine`]: one exchange,
//! [`render`]: the exported span, [`telemetry`]: OpenTelemetry); its three entries
//! ([`instrument`]: the library, `gateway`: `specter serve`, [`offline`]: recorded exchanges).
//! Two small modules serve several layers and so sit at the root: `tls` (the one rustls setup,
//! for upstreams and collectors alike) and [`printable`] (escaping foreign text in lines meant
//! for people).
//!
//! ```
//! let catalog = specter::Catalog::bundled().unwrap();
//! assert!(catalog.provider("openai").is_some());
//! ```
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---------|---------|--------------|
//! | `gateway` | yes | `specter serve` and the `specter` binary: the gateway's HTTP server and TLS client, request signing, reloads, the OTLP pipeline and the file exporters (`gateway`, `tls`, `telemetry::pipeline`, `telemetry::export`, `telemetry::traces_file`) |
//! | `instrument` | (always built) | the library: the [`instrument::Instrumentor`], the bundled providers, offline extraction ([`offline`]); named for `default-features = false` |
//! | `reqwest` | no | [`SpecterMiddleware`]: `reqwest_middleware::ClientBuilder::new(client).with(instrumentor.middleware())` |
//! | `tower` | no | [`SpecterLayer`]: `instrumentor.layer().layer(service)` for `http` services (hyper, hyper-util) |
//! | `tracing` | no | spans parented under the caller's `tracing` span ([`instrument::parent_context`]) |
//!
//! An application that only instruments its own HTTP client depends on
//! `specter = { version = "0.1", default-features = false, features = ["reqwest"] }` (or
//! `"tower"`), which builds no server, no TLS stack of specter's own and no OTLP exporter: spans
//! and metrics go to the application's OpenTelemetry providers (the global ones unless
//! [`instrument::InstrumentorBuilder::telemetry`] says otherwise).
//!
//! Versions that work with this release:
//!
//! | specter | opentelemetry | opentelemetry_sdk | tracing-opentelemetry | reqwest | reqwest-middleware | http / http-body | tower-layer / tower-service |
//! |---------|---------------|-------------------|-----------------------|---------|--------------------|------------------|-----------------------------|
//! | 0.1     | 0.33          | 0.33              | 0.34                  | 0.13    | 0.5                | 1 / 1            | 0.3 / 0.3                   |

pub mod catalog;
pub mod compile;
pub mod context;
pub mod diagnostic;
pub mod engine;
pub mod files;
#[cfg(feature = "gateway")]
pub mod gateway;
pub mod harness;
pub mod instrument;
pub mod offline;
pub mod prices;
pub mod printable;
pub mod render;
pub mod spec;
pub mod telemetry;
#[cfg(feature = "gateway")]
pub mod tls;
#[cfg(feature = "gateway")]
pub mod viewer;
pub mod yaml;

pub use catalog::{Catalog, CatalogSlot, LoadError, Match};
pub use diagnostic::{Diagnostic, Diagnostics};
#[cfg(feature = "tower")]
pub use instrument::SpecterLayer;
#[cfg(feature = "reqwest")]
pub use instrument::SpecterMiddleware;
