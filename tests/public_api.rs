//! The public API, pinned: every item that specter promises under semver is named here through
//! its stable path, with the signature callers rely on. Removing, renaming or moving one of them,
//! or changing such a signature, breaks this file's build. Internals (reached through
//! `specter::unstable`) are deliberately absent.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::type_complexity
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use opentelemetry::Context;

/// The root of the crate.
#[allow(dead_code)]
mod root {
    use super::*;

    pub type Items = (
        specter::Instrumentor,
        specter::InstrumentorBuilder,
        specter::Options,
        specter::BuildError,
        specter::Call,
        specter::StreamCall,
        specter::InstrumentedStream<()>,
        specter::InstrumentedChunks<()>,
        specter::HttpRequest,
        specter::HttpResponse,
        specter::Catalog,
        specter::LoadError,
        specter::ReadError,
        specter::Diagnostics,
        specter::Diagnostic,
        specter::ContentPolicy,
        specter::Capture,
        specter::CaptureError,
        specter::ContentEnvError,
        specter::Redaction,
    );
    pub type More = (specter::Dialect, specter::DialectError, specter::Telemetry);

    #[cfg(feature = "reqwest")]
    pub type Reqwest = specter::SpecterMiddleware;
    #[cfg(feature = "tower")]
    pub type Tower = (specter::SpecterLayer, specter::SpecterService<()>);
    #[cfg(any(feature = "reqwest", feature = "tower"))]
    pub type Body = specter::InstrumentedBody<String>;

    pub const PARENT: fn() -> Context = specter::parent_context;
    pub const BUILDER: fn() -> specter::InstrumentorBuilder = specter::Instrumentor::builder;
    pub const BUILD: fn(
        specter::InstrumentorBuilder,
    ) -> Result<specter::Instrumentor, specter::BuildError> = specter::InstrumentorBuilder::build;
    pub const START: for<'a, 'b, 'c> fn(
        &'a specter::Instrumentor,
        &'b mut specter::HttpRequest,
        &'c Context,
    ) -> Option<specter::Call> = specter::Instrumentor::start;
    pub const INTO_STREAM: for<'a> fn(
        specter::Call,
        u16,
        &'a [(String, String)],
    ) -> Result<specter::StreamCall, specter::Call> = specter::Call::into_stream;
    pub const FINISH: for<'a, 'b> fn(specter::Call, u16, &'a [(String, String)], &'b [u8]) =
        specter::Call::finish;
    pub const FAIL: for<'a, 'b> fn(specter::Call, &'a str, &'b str) = specter::Call::fail;
    pub const BYTES: for<'a, 'b> fn(&'a mut specter::StreamCall, &'b [u8]) =
        specter::StreamCall::bytes;
    pub const END: fn(specter::StreamCall) = specter::StreamCall::end;
    pub const BUNDLED: fn() -> Result<specter::Catalog, specter::LoadError> =
        specter::Catalog::bundled;
    pub const LOAD: for<'a> fn(&'a [PathBuf]) -> Result<specter::Catalog, specter::LoadError> =
        specter::Catalog::load;
    pub const POLICY_FROM_ENV: fn() -> Result<specter::ContentPolicy, specter::ContentEnvError> =
        specter::ContentPolicy::from_env;
    pub const DIALECT: for<'a> fn(&'a str) -> Result<specter::Dialect, specter::DialectError> =
        specter::Dialect::named;
    pub const TELEMETRY: fn(Vec<specter::Dialect>, specter::ContentPolicy) -> specter::Telemetry =
        specter::Telemetry::global;
    pub const WITH_TELEMETRY: fn(
        specter::InstrumentorBuilder,
        specter::Telemetry,
    ) -> specter::InstrumentorBuilder = specter::InstrumentorBuilder::telemetry;
    pub const OPTIONS: fn(specter::Options, bool) -> specter::Options =
        specter::Options::with_propagate_trace_context;
}

/// The paths of earlier releases under `specter::instrument`.
#[allow(dead_code)]
mod instrument {
    pub type Items = (
        specter::instrument::Instrumentor,
        specter::instrument::InstrumentorBuilder,
        specter::instrument::Options,
        specter::instrument::BuildError,
        specter::instrument::Call,
        specter::instrument::StreamCall,
        specter::instrument::InstrumentedStream<()>,
        specter::instrument::InstrumentedChunks<()>,
        specter::instrument::HttpRequest,
        specter::instrument::HttpResponse,
    );
    pub const PARENT: fn() -> opentelemetry::Context = specter::instrument::parent_context;
    pub const ABANDONED: &str = specter::instrument::ABANDONED;
    pub const LIMITS: (usize, usize) = (
        specter::instrument::DEFAULT_MAX_RESPONSE_BYTES,
        specter::instrument::DEFAULT_MAX_REQUEST_BYTES,
    );
    #[cfg(feature = "reqwest")]
    pub type Reqwest = specter::instrument::middleware::SpecterMiddleware;
    #[cfg(feature = "tower")]
    pub type Tower = (
        specter::instrument::layer::SpecterLayer,
        specter::instrument::SpecterService<()>,
    );
}

/// Offline extraction.
#[allow(dead_code)]
mod offline {
    use specter::offline::{ExtractError, ExtractOptions, Extracted, MatchedBy, Recorded};

    pub type Items<'a> = (
        ExtractError,
        ExtractOptions,
        Extracted,
        MatchedBy,
        Recorded<'a>,
    );
    pub const EXTRACT: for<'a, 'b, 'c, 'd> fn(
        &'a specter::Catalog,
        &'b Recorded<'d>,
        &'c ExtractOptions,
    ) -> Result<serde_json::Value, ExtractError> = specter::offline::extract;
    pub const EXTRACT_WITH: for<'a, 'b, 'c, 'd> fn(
        &'a specter::Catalog,
        &'b Recorded<'d>,
        &'c ExtractOptions,
    ) -> Result<Extracted, ExtractError> = specter::offline::extract_with;
    pub const TEXT_CAP: usize = specter::offline::DEFAULT_TEXT_CAP;
}

/// The fixture harness behind `specter test`.
#[allow(dead_code)]
mod harness {
    use super::*;
    use specter::harness::{
        cases, snapshot, Case, CaseData, CaseError, CaseProblem, CaseResult, HarnessError, Outcome,
        Report, RunOptions, Snapshot, Update,
    };

    pub type Items = (
        Case,
        CaseData,
        CaseError,
        CaseProblem,
        CaseResult,
        HarnessError,
        Outcome,
        Report,
        RunOptions,
        Snapshot,
        Update,
        snapshot::DiffKind,
        snapshot::DiffLine,
    );
    pub const RUN: for<'a, 'b> fn(
        &'a specter::Catalog,
        &'b RunOptions,
    ) -> Result<Report, HarnessError> = specter::harness::run_cases;
    pub const READ_CASE: for<'a> fn(&'a Path) -> Result<CaseData, CaseError> = cases::read_case;
    pub const NEW: fn(PathBuf, PathBuf) -> RunOptions = RunOptions::new;
}

#[test]
fn the_facade_builds_and_records_a_call_through_stable_paths_only() {
    let catalog = specter::Catalog::bundled().unwrap();
    assert!(catalog.provider_ids().any(|id| id == "openai"));
    assert!(catalog.operation_ids("openai").unwrap().contains(&"chat"));
    let instrumentor = specter::Instrumentor::builder()
        .catalog(catalog)
        .dialects(vec![specter::Dialect::Semconv])
        .content(specter::ContentPolicy::default().with_capture(specter::Capture::NoContent))
        .options(specter::Options::default().with_max_stream_text(1024))
        .build()
        .unwrap();
    let mut request = specter::HttpRequest {
        method: "POST".into(),
        url: "https://api.openai.com/v1/chat/completions".into(),
        headers: vec![],
        body: br#"{"model": "gpt-4o-mini", "messages": []}"#.to_vec(),
    };
    let call = (root::START)(&instrumentor, &mut request, &(root::PARENT)()).unwrap();
    assert_eq!(call.provider(), Some("openai"));
    assert_eq!(call.operation(), Some("chat"));
    (root::FINISH)(
        call,
        200,
        &[],
        br#"{"model": "gpt-4o-mini", "choices": []}"#,
    );
}

#[test]
fn offline_extraction_and_the_harness_answer_through_stable_paths() {
    let catalog = Arc::new((root::BUNDLED)().unwrap());
    let case = (harness::READ_CASE)(Path::new("tests/fixtures/openai/chat_plain")).unwrap();
    let options = specter::offline::ExtractOptions::default().with_provider(Some("openai".into()));
    let extracted = (offline::EXTRACT_WITH)(&catalog, &case.recorded(), &options).unwrap();
    assert_eq!(extracted.matched_by, specter::offline::MatchedBy::Provider);
    assert_eq!(extracted.output["provider"], "openai");
    let missing = (harness::NEW)("/no/such/fixtures".into(), "/no/such/snapshots".into());
    assert!(matches!(
        (harness::RUN)(&catalog, &missing),
        Err(specter::harness::HarnessError::Fixtures(_))
    ));
}
