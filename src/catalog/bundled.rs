//! The provider specs embedded in the binary, so specter works without a `providers/` directory.
//! The list is generated at build time from `providers/*.yaml` (see `build.rs`), in name order;
//! a test checks that it matches the directory.

/// File name and text of every bundled provider, in file name order.
pub const PROVIDERS: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/bundled_providers.rs"));
