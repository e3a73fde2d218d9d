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
//! ([`instrument`]: the library, [`gateway`]: `specter serve`, [`offline`]: recorded exchanges).
//! Two small modules serve several layers and so sit at the root: [`tls`] (the one rustls setup,
//! for upstreams and collectors alike) and [`printable`] (escaping foreign text in lines meant
//! for people).
//!
//! ```
//! let catalog = specter::Catalog::bundled().unwrap();
//! assert!(catalog.provider("openai").is_some());
//! ```

pub mod catalog;
pub mod compile;
pub mod context;
pub mod diagnostic;
pub mod engine;
pub mod files;
pub mod gateway;
pub mod instrument;
pub mod offline;
pub mod prices;
pub mod printable;
pub mod render;
pub mod spec;
pub mod telemetry;
pub mod tls;
pub mod yaml;

pub use catalog::{Catalog, CatalogSlot, LoadError, Match};
pub use diagnostic::{Diagnostic, Diagnostics};
