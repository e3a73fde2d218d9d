//! specter: declarative OpenTelemetry instrumentation for LLM provider APIs.
//!
//! Each provider is a YAML spec listing the operations to instrument, JSONPath rules from request
//! and response bodies to span attributes, and how streamed chunks fold into the response. The
//! pipeline:
//!
//! ```text
//! providers/*.yaml ─▶ spec (serde types) ─▶ compile (checked, JSONPaths parsed once) ─▶ Catalog
//! exchange (method, url, headers, bodies) ─▶ Catalog::find ─▶ engine::Exchange ─▶ Record
//! Record ─▶ render (content policy, credentials, dialects) ─▶ telemetry (span + metrics)
//! ```
//!
//! # The public API
//!
//! What this crate promises under semver is small:
//!
//! - [`Instrumentor`] (built by [`InstrumentorBuilder`] from [`Options`], failing with
//!   [`BuildError`]) recognises provider calls and wraps them: [`Instrumentor::instrument`] and
//!   [`Instrumentor::instrument_blocking`] for whole responses ([`HttpRequest`], [`HttpResponse`]),
//!   [`Instrumentor::start`] for a [`Call`] driven by hand, which becomes a [`StreamCall`] for a
//!   stream, or wraps one as an [`InstrumentedStream`] or [`InstrumentedChunks`]. Spans are
//!   parented on [`parent_context`].
//! - The adapters: `SpecterMiddleware` (feature `reqwest`), `SpecterLayer` and `SpecterService`
//!   (feature `tower`), whose response bodies are `InstrumentedBody`.
//! - The providers: [`Catalog`] (bundled, or loaded from spec files; [`LoadError`] with
//!   [`Diagnostics`], each [`Diagnostic`] located in its file).
//! - What is recorded: [`ContentPolicy`] ([`Capture`], [`Redaction`]; [`ContentEnvError`]),
//!   [`Dialect`] ([`DialectError`]), and [`Telemetry`], the tracer and meter spans go to.
//! - The modules [`instrument`] (the same items, at the paths of earlier releases), [`offline`]
//!   (one recorded exchange to its span, as `specter extract` prints it) and [`harness`] (the
//!   fixture runner behind `specter test`).
//!
//! Everything else (the spec compiler, the engine, the gateway behind `specter serve`) is
//! internal. specter's own binary, tests and benches reach it through a hidden `unstable`
//! module, which no release promises anything about.
//!
//! ```
//! let catalog = specter::Catalog::bundled().unwrap();
//! assert!(catalog.provider_ids().any(|id| id == "openai"));
//! ```
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---------|---------|--------------|
//! | `gateway` | yes | `specter serve` and the `specter` binary: the gateway's HTTP server and TLS client, request signing, reloads, the OTLP pipeline and the file exporters |
//! | `instrument` | (always built) | the library: the [`Instrumentor`], the bundled providers, offline extraction ([`offline`]); named for `default-features = false` |
//! | `reqwest` | no | [`SpecterMiddleware`]: `reqwest_middleware::ClientBuilder::new(client).with(instrumentor.middleware())` |
//! | `tower` | no | [`SpecterLayer`]: `instrumentor.layer().layer(service)` for `http` services (hyper, hyper-util) |
//! | `tracing` | no | spans parented under the caller's `tracing` span ([`parent_context`]) |
//!
//! An application that only instruments its own HTTP client depends on
//! `specter = { version = "0.1", default-features = false, features = ["reqwest"] }` (or
//! `"tower"`), which builds no server, no TLS stack of specter's own and no OTLP exporter: spans
//! and metrics go to the application's OpenTelemetry providers (the global ones unless
//! [`InstrumentorBuilder::telemetry`] says otherwise).
//!
//! Versions that work with this release:
//!
//! | specter | opentelemetry | opentelemetry_sdk | tracing-opentelemetry | reqwest | reqwest-middleware | http / http-body | tower-layer / tower-service |
//! |---------|---------------|-------------------|-----------------------|---------|--------------------|------------------|-----------------------------|
//! | 0.1     | 0.33          | 0.33              | 0.34                  | 0.13    | 0.5                | 1 / 1            | 0.3 / 0.3                   |

mod catalog;
mod compile;
mod context;
mod diagnostic;
mod engine;
mod files;
#[cfg(feature = "gateway")]
mod gateway;
pub mod harness;
pub mod instrument;
pub mod offline;
mod prices;
mod printable;
mod render;
mod spec;
mod telemetry;
#[cfg(feature = "gateway")]
mod tls;
#[cfg(feature = "gateway")]
mod viewer;
mod yaml;

pub use catalog::{Catalog, LoadError};
pub use diagnostic::{Diagnostic, Diagnostics};
pub use files::ReadError;
#[cfg(any(feature = "reqwest", feature = "tower"))]
pub use instrument::InstrumentedBody;
#[cfg(feature = "reqwest")]
pub use instrument::SpecterMiddleware;
pub use instrument::{
    parent_context, BuildError, Call, HttpRequest, HttpResponse, InstrumentedChunks,
    InstrumentedStream, Instrumentor, InstrumentorBuilder, Options, StreamCall,
};
#[cfg(feature = "tower")]
pub use instrument::{SpecterLayer, SpecterService};
pub use render::content::{Capture, CaptureError, ContentEnvError, ContentPolicy, Redaction};
pub use render::dialect::{Dialect, DialectError};
pub use telemetry::Telemetry;

pub(crate) use catalog::{CatalogSlot, Match};

/// specter's internals: not covered by semver; for specter's own binary, tests and benches.
///
/// Every module here may change or disappear in any release, patch releases included. Code
/// outside this repository uses the items at the crate root and in [`instrument`],
/// [`offline`] and [`harness`] instead.
#[doc(hidden)]
pub mod unstable {
    /// The compiled provider catalog (see [`crate::Catalog`]), its layering and bundled specs.
    pub mod catalog {
        pub use crate::catalog::*;
    }
    /// Compiling provider specs into checked rules.
    pub mod compile {
        pub use crate::compile::*;
    }
    /// Request headers and baggage entries mapped to span attributes.
    pub mod context {
        pub use crate::context::*;
    }
    /// Located problems in spec files.
    pub mod diagnostic {
        pub use crate::diagnostic::*;
    }
    /// One exchange run through an operation's rules.
    pub mod engine {
        pub use crate::engine::*;
    }
    /// Reading regular files under size caps.
    pub mod files {
        pub use crate::files::*;
    }
    /// `specter serve`.
    #[cfg(feature = "gateway")]
    pub mod gateway {
        pub use crate::gateway::*;
    }
    /// The price table.
    pub mod prices {
        pub use crate::prices::*;
    }
    /// Escaping foreign text in lines meant for people.
    pub mod printable {
        pub use crate::printable::*;
    }
    /// The exported span: content policy, credentials, dialects.
    pub mod render {
        pub use crate::render::*;
    }
    /// The raw provider spec types.
    pub mod spec {
        pub use crate::spec::*;
    }
    /// OpenTelemetry spans and metrics.
    pub mod telemetry {
        pub use crate::telemetry::*;
    }
    /// The one rustls setup.
    #[cfg(feature = "gateway")]
    pub mod tls {
        pub use crate::tls::*;
    }
    /// The trace viewer (`/-/viewer/`, `specter view`).
    #[cfg(feature = "gateway")]
    pub mod viewer {
        pub use crate::viewer::*;
    }
    /// Positioned YAML.
    pub mod yaml {
        pub use crate::yaml::*;
    }
}
