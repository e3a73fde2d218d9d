//! Property tests (proptest) for everything that reads untrusted input:
//!
//! 1. the spec loader (`Catalog::from_sources`) on arbitrary text, generated YAML documents and
//!    bundled provider specs with keys deleted, types swapped and random JSONPaths, templates and
//!    targets: it never panics, and every diagnostic names a given file at a line and column ≥ 1;
//! 2. offline extraction through every operation of every bundled provider with arbitrary JSON
//!    bodies, arbitrary stream chunks in the operation's framing, and recorded exchanges with
//!    random types swapped in: never a panic, always `Ok` for a URL that matches;
//! 3. the stream deframers on arbitrary bytes: the frames do not depend on how the input is split,
//!    and generated well-formed streams give exactly the frames they were built from;
//! 4. folding generated OpenAI, Anthropic, Bedrock and Gemini streams: the rebuilt response does
//!    not depend on the split, and holds exactly the generated deltas (text, tool arguments, stop
//!    reasons, usage);
//! 5. bounded memory: multi-megabyte deltas fold to text capped at the folder's cap, reported as
//!    truncated; array indexes are capped.
//!
//! Also: small parsers (URLs, route templates, JSONPaths, dialect files) and the route lookup.
//!
//! Case counts keep the file well under two minutes in a debug build; `PROPTEST_CASES=N` sets every
//! property's count (see `fuzz/README.md`). Failures are not persisted to files: proptest prints
//! the minimal failing input.
//!
//! One module a topic: `shared` (configuration and generators), `loader`, `extraction`,
//! `parsers`, `deframing`, `folding`, `memory`.
//!
//! Tests marked `#[ignore = "known bug: ..."]` reproduce bugs found by these properties that are
//! not fixed yet; they pass once the bug is fixed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use base64::Engine as _;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::{Config, TestCaseError};
use serde_json::{json, Map, Number, Value as Json};
use specter::offline::{extract, ExtractOptions, Recorded, DEFAULT_TEXT_CAP};
use specter::unstable::compile::rules::{Framing, PayloadEncoding};
use specter::unstable::compile::rules::{Operation, Piece, Provider, Route, Stream};
use specter::unstable::compile::{parse_template, JsonPath, Source};
use specter::unstable::engine::stream::{
    encode_event_message, Deframer, FoldOutcome, Folder, Frame,
};
use specter::unstable::engine::HttpTarget;
use specter::unstable::render::content::{Capture, ContentPolicy, Redaction};
use specter::Catalog;
use specter::Dialect;
use std::sync::{Arc, OnceLock};

mod deframing;
mod extraction;
mod folding;
mod loader;
mod memory;
mod parsers;
mod shared;

use deframing::*;
use extraction::*;
use folding::*;
use loader::*;
use shared::*;
