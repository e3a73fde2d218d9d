//! The gateway's metrics in the Prometheus text exposition format (0.0.4), for `GET /metrics`.
//!
//! [`Scrape::reader`] is a metric reader registered in the meter provider beside the OTLP one,
//! so both see the same instruments, with the same (cumulative) temporality and bucket
//! boundaries. Each [`Scrape::render`] takes an in-memory snapshot of the instruments and encodes
//! it; it never touches the network. Names follow the OpenTelemetry-to-Prometheus rules: the
//! characters Prometheus does not allow (`.`, `-`, ...) become `_`; the unit becomes a suffix
//! (`s` → `_seconds`, `By` → `_bytes`, `1` → `_ratio`; annotations such as `{token}` are
//! dropped); monotonic sums get `_total`; histograms are `_bucket{le=...}`, `_sum` and `_count`;
//! the instrumentation scope is the `otel_scope_name` label; and the resource attributes are the
//! labels of one `target_info` gauge.

use opentelemetry_prometheus::PrometheusExporter;
use prometheus::{Encoder as _, Registry, TextEncoder};

/// The `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// Why the metrics cannot be scraped.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// The reader could not be set up.
    #[error("cannot set up the Prometheus metric reader: {0}")]
    Reader(String),
    /// The snapshot could not be encoded.
    #[error("cannot encode the metrics: {0}")]
    Encode(String),
}

/// The metrics scrape: the registry the reader feeds, encoded on demand.
#[derive(Debug, Clone)]
pub struct Scrape {
    registry: Registry,
}

impl Scrape {
    /// A scrape and the metric reader to register in the meter provider.
    ///
    /// # Errors
    /// When the reader cannot be registered with the scrape's registry.
    pub fn reader() -> Result<(Scrape, PrometheusExporter), ScrapeError> {
        let registry = Registry::new();
        let reader = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .build()
            .map_err(|e| ScrapeError::Reader(e.to_string()))?;
        Ok((Scrape { registry }, reader))
    }

    /// The current values of every instrument, in the text exposition format.
    ///
    /// # Errors
    /// When the snapshot cannot be encoded (a metric family the encoder refuses).
    pub fn render(&self) -> Result<Vec<u8>, ScrapeError> {
        let families = self.registry.gather();
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&families, &mut text)
            .map_err(|e| ScrapeError::Encode(e.to_string()))?;
        Ok(text)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry::KeyValue;
    use opentelemetry_sdk::metrics::SdkMeterProvider;
    use opentelemetry_sdk::Resource;

    use super::*;

    /// A meter provider read by a scrape, with a fixed resource.
    fn provider() -> (SdkMeterProvider, Scrape) {
        let (scrape, reader) = Scrape::reader().unwrap();
        let resource = Resource::builder_empty()
            .with_attribute(KeyValue::new("service.name", "specter"))
            .with_attribute(KeyValue::new("service.instance.id", "i-1"))
            .build();
        let provider = SdkMeterProvider::builder()
            .with_resource(resource)
            .with_reader(reader)
            .build();
        (provider, scrape)
    }

    fn text(scrape: &Scrape) -> String {
        String::from_utf8(scrape.render().unwrap()).unwrap()
    }

    /// The sample lines (no comments) of `name`.
    fn samples<'t>(text: &'t str, name: &str) -> Vec<&'t str> {
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .collect()
    }

    #[test]
    fn a_seconds_histogram_has_the_unit_suffix_its_buckets_sum_and_count() {
        let (provider, scrape) = provider();
        let histogram = provider
            .meter("specter")
            .f64_histogram("gen_ai.client.operation.duration")
            .with_unit("s")
            .with_description("GenAI operation duration.")
            .with_boundaries(vec![0.01, 0.02, 0.04])
            .build();
        let attrs = [KeyValue::new("gen_ai.operation.name", "chat")];
        histogram.record(0.015, &attrs);
        histogram.record(0.03, &attrs);
        histogram.record(0.5, &attrs);
        let text = text(&scrape);
        let name = "gen_ai_client_operation_duration_seconds";
        assert!(
            text.contains(&format!("# HELP {name} GenAI operation duration.\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("# TYPE {name} histogram\n")),
            "{text}"
        );
        let labels = r#"gen_ai_operation_name="chat",otel_scope_name="specter""#;
        assert_eq!(
            samples(&text, &format!("{name}_bucket")),
            [
                format!(r#"{name}_bucket{{{labels},le="0.01"}} 0"#),
                format!(r#"{name}_bucket{{{labels},le="0.02"}} 1"#),
                format!(r#"{name}_bucket{{{labels},le="0.04"}} 2"#),
                format!(r#"{name}_bucket{{{labels},le="+Inf"}} 3"#),
            ],
            "{text}"
        );
        assert_eq!(
            samples(&text, &format!("{name}_sum")),
            [format!("{name}_sum{{{labels}}} 0.545")]
        );
        assert_eq!(
            samples(&text, &format!("{name}_count")),
            [format!("{name}_count{{{labels}}} 3")]
        );
    }

    #[test]
    fn annotation_units_are_dropped_counters_get_total_and_other_units_their_word() {
        let (provider, scrape) = provider();
        let meter = provider.meter("specter");
        meter
            .u64_histogram("gen_ai.client.token.usage")
            .with_unit("{token}")
            .build()
            .record(12, &[]);
        meter
            .f64_counter("acme.requests")
            .with_unit("{request}")
            .build()
            .add(3.0, &[]);
        meter
            .f64_counter("acme.egress")
            .with_unit("By")
            .build()
            .add(2048.0, &[]);
        meter
            .f64_gauge("acme.queue-depth")
            .with_unit("1")
            .build()
            .record(0.25, &[]);
        let text = text(&scrape);
        for (name, kind) in [
            ("gen_ai_client_token_usage", "histogram"),
            ("acme_requests_total", "counter"),
            ("acme_egress_bytes_total", "counter"),
            ("acme_queue_depth_ratio", "gauge"),
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} {kind}\n")),
                "{name}: {text}"
            );
        }
        assert_eq!(
            samples(&text, "acme_requests_total"),
            [r#"acme_requests_total{otel_scope_name="specter"} 3"#]
        );
        assert_eq!(
            samples(&text, "acme_egress_bytes_total"),
            [r#"acme_egress_bytes_total{otel_scope_name="specter"} 2048"#]
        );
        assert_eq!(
            samples(&text, "acme_queue_depth_ratio"),
            [r#"acme_queue_depth_ratio{otel_scope_name="specter"} 0.25"#]
        );
        assert_eq!(
            samples(&text, "gen_ai_client_token_usage_count"),
            [r#"gen_ai_client_token_usage_count{otel_scope_name="specter"} 1"#]
        );
    }

    #[test]
    fn label_values_escape_quotes_backslashes_and_newlines() {
        let (provider, scrape) = provider();
        provider
            .meter("specter")
            .f64_counter("acme.calls")
            .build()
            .add(1.0, &[KeyValue::new("gen_ai.request.model", "a\"b\\c\nd")]);
        let text = text(&scrape);
        assert_eq!(
            samples(&text, "acme_calls_total"),
            [r#"acme_calls_total{gen_ai_request_model="a\"b\\c\nd",otel_scope_name="specter"} 1"#],
            "{text}"
        );
        assert!(!text.contains("c\nd"), "no raw newline in a value: {text}");
    }

    #[test]
    fn the_resource_is_the_target_info_gauge() {
        let (provider, scrape) = provider();
        provider
            .meter("specter")
            .f64_counter("acme.calls")
            .build()
            .add(1.0, &[]);
        let text = text(&scrape);
        assert!(text.contains("# TYPE target_info gauge\n"), "{text}");
        assert_eq!(
            samples(&text, "target_info"),
            [r#"target_info{service_instance_id="i-1",service_name="specter"} 1"#],
            "{text}"
        );
    }

    #[test]
    fn nothing_recorded_yet_is_the_target_info_alone() {
        let (_provider, scrape) = provider();
        let text = text(&scrape);
        let names: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next())
            .collect();
        assert_eq!(names, ["target_info"], "{text}");
    }
}
