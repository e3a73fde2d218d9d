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
mod yaml;

pub use catalog::{Catalog, LoadError};
pub use diagnostic::{Diagnostic, Diagnostics};
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
    /// Positioned YAML.
    pub mod yaml {
        pub use crate::yaml::*;
    }
}
