//! Where a call's span takes its parent from: one function, [`parent_context`], used by every
//! entry of the library ([`super::Instrumentor::instrument`],
//! [`super::Instrumentor::instrument_blocking`], the reqwest middleware and the tower layer).

use opentelemetry::Context;

/// The context a call started now is parented under: the current `tracing` span's
/// OpenTelemetry context when the `tracing` feature is on and that span has one, the current
/// OpenTelemetry [`Context`] otherwise (no `tracing_opentelemetry::OpenTelemetryLayer` in the
/// subscriber, no current `tracing` span, or the feature off).
///
/// `tracing-opentelemetry` (0.32 and later) also makes an entered span's context the current
/// OpenTelemetry context, unless its layer is built `.with_context_activation(false)`; the
/// `tracing` feature makes the parentage hold whatever that setting, and when a `tracing` span is
/// current it wins over an OpenTelemetry context attached inside it.
///
/// Versions that work together with this release (the `tracing` feature depends on
/// `tracing-opentelemetry` 0.34, which is built on `opentelemetry` 0.33):
///
/// | specter | opentelemetry | opentelemetry_sdk | tracing-opentelemetry | tracing |
/// |---------|---------------|-------------------|-----------------------|---------|
/// | 0.1     | 0.33          | 0.33              | 0.34                  | 0.1.35 or later |
///
/// An application whose `tracing-opentelemetry` is built on another `opentelemetry` minor version
/// has two copies of `opentelemetry` whose contexts do not see each other: its `tracing` spans
/// then parent no specter span. Align the versions as in the table.
///
/// ```
/// use opentelemetry::trace::TraceContextExt as _;
///
/// // No span is current: the parent is the (empty) current context.
/// let parent = specter::instrument::parent_context();
/// assert!(!parent.span().span_context().is_valid());
/// ```
pub fn parent_context() -> Context {
    #[cfg(feature = "tracing")]
    if let Some(context) = tracing_parent() {
        return context;
    }
    Context::current()
}

/// The current `tracing` span's OpenTelemetry context, when it has a valid span.
#[cfg(feature = "tracing")]
fn tracing_parent() -> Option<Context> {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    let span = tracing::Span::current();
    if span.is_none() {
        return None;
    }
    let context = span.context();
    context.span().span_context().is_valid().then_some(context)
}
