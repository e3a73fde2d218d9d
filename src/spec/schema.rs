//! The JSON Schema of provider specs, generated from the spec types.

use super::ProviderSpec;

/// The JSON Schema of a provider YAML file, as committed in `schemas/provider.schema.json`.
///
/// ```
/// let schema = specter::unstable::spec::provider_schema();
/// assert_eq!(schema["title"], "specter provider spec");
/// ```
pub fn provider_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(ProviderSpec);
    schema.to_value()
}
