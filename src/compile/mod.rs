//! Compiling provider specs into rules.
//!
//! This module owns the *compiled* family: `load` reads provider files and checks them (YAML,
//! JSON Schema, `extends`, then every JSONPath, template, route and rule), reporting all problems
//! of a run at once as [`crate::Diagnostics`]; [`rules`] holds the compiled types the engine runs.
//! Nothing here runs per request.

mod kinds;
mod known;
mod load;
mod lower;
mod merge;
mod path;
mod placeholders;
pub mod reads;
mod route;
pub mod rules;
mod schema_check;
mod target;

pub use known::{is_credential_header, is_credential_query};
pub use load::{compile_sources, Source};
pub use path::JsonPath;
pub(crate) use path::{member, member_mut};
pub use placeholders::scaffold_placeholders;
pub use route::{parse_template, RouteIndex, RouteMatch};
