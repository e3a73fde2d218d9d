//! The provider specs embedded in the binary, so specter works without a `providers/` directory.
//! A test checks that this list matches the directory.

/// File name and text of every bundled provider.
pub const PROVIDERS: &[(&str, &str)] = &[("openai.yaml", include_str!("../providers/openai.yaml"))];
