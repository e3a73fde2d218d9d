//! specter: declarative OpenTelemetry instrumentation for LLM provider APIs.
//!
//! Each provider is a YAML spec (see [`spec`]) listing the operations to instrument, JSONPath
//! rules from request and response bodies to span attributes, and how streamed chunks fold into
//! the response. The pipeline:
//!
//! ```text
//! providers/*.yaml ─▶ spec (serde types) ─▶ compile (checked, JSONPaths parsed once) ─▶ Catalog
//! exchange (method, url, headers, bodies) ─▶ Catalog::find ─▶ engine::extract ─▶ Record
//! Record ─▶ dialect (semconv / agentops / openinference attributes) ─▶ telemetry (span + metrics)
//! ```
//!
//! ```
//! let catalog = specter::Catalog::bundled().unwrap();
//! assert!(catalog.provider("openai").is_some());
//! ```

pub mod bundled;
pub mod catalog;
pub mod compile;
pub mod diagnostic;
pub mod engine;
pub mod files;
pub mod gateway;
pub mod instrument;
pub mod offline;
pub mod printable;
pub mod render;
pub mod spec;
pub mod stall;
pub mod telemetry;
pub mod tls;
pub mod upstream_check;
pub mod yaml;

pub use catalog::{Catalog, CatalogSlot, LoadError, Match};
pub use diagnostic::{Diagnostic, Diagnostics};
