//! The GenAI client metrics and the metrics provider specs declare. [`points`] says which metric
//! points a finished call produces (a pure function, also used by `specter extract`);
//! [`Instruments`] records them through an OpenTelemetry meter.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter};
use opentelemetry::KeyValue;
use serde::Serialize;
use serde_json::Value as Json;

use super::convert::to_value;
use super::Timings;
use crate::compile::rules::Operation;
use crate::engine::Record;
use crate::spec::Instrument;

const TOKEN_BUCKETS: [f64; 14] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];
const SECONDS_BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];

/// Attributes copied from a span onto the standard metrics: a bounded set.
const METRIC_ATTRIBUTES: [&str; 7] = [
    "gen_ai.operation.name",
    "gen_ai.provider.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "server.address",
    "server.port",
    "error.type",
];

/// Token usage histogram name.
pub const TOKEN_USAGE: &str = "gen_ai.client.token.usage";
/// Operation duration histogram name.
pub const DURATION: &str = "gen_ai.client.operation.duration";
/// Time to first chunk histogram name.
pub const TIME_TO_FIRST_CHUNK: &str = "gen_ai.client.operation.time_to_first_chunk";
/// Time per output chunk histogram name.
pub const TIME_PER_OUTPUT_CHUNK: &str = "gen_ai.client.operation.time_per_output_chunk";

/// One metric point of a finished call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// Metric name.
    pub name: String,
    /// The value.
    pub value: f64,
    /// Its attributes.
    pub attributes: BTreeMap<String, Json>,
}

/// The metric points of a finished call: token usage by type, duration (when timed), stream
/// timings, and the provider's own metrics. Metric attributes are a bounded set: no ids, no content.
pub fn points(record: &Record, op: &Operation, timings: Option<&Timings>) -> Vec<Point> {
    let base: BTreeMap<String, Json> = METRIC_ATTRIBUTES
        .iter()
        .filter_map(|k| {
            record
                .attributes
                .get(*k)
                .map(|v| (k.to_string(), v.clone()))
        })
        .collect();
    let point = |name: &str, value: f64, attributes: BTreeMap<String, Json>| Point {
        name: name.to_string(),
        value,
        attributes,
    };
    let mut out = Vec::new();
    for (key, token_type) in [
        ("gen_ai.usage.input_tokens", "input"),
        ("gen_ai.usage.output_tokens", "output"),
    ] {
        if let Some(n) = record.attributes.get(key).and_then(Json::as_f64) {
            let mut attrs = base.clone();
            attrs.insert("gen_ai.token.type".into(), Json::String(token_type.into()));
            out.push(point(TOKEN_USAGE, n, attrs));
        }
    }
    if let Some(t) = timings {
        out.push(point(DURATION, t.duration.as_secs_f64(), base.clone()));
        if let Some(ttfc) = t.first_chunk {
            out.push(point(TIME_TO_FIRST_CHUNK, ttfc.as_secs_f64(), base.clone()));
        }
        for gap in &t.chunk_gaps {
            out.push(point(
                TIME_PER_OUTPUT_CHUNK,
                gap.as_secs_f64(),
                base.clone(),
            ));
        }
    }
    for (index, value) in &record.metric_values {
        let Some(metric) = op.metrics.get(*index) else {
            continue;
        };
        let attrs = metric
            .attributes
            .iter()
            .filter_map(|k| record.attributes.get(k).map(|v| (k.clone(), v.clone())))
            .collect();
        out.push(point(&metric.name, *value, attrs));
    }
    out
}

enum ProviderInstrument {
    Counter(Counter<f64>),
    Histogram(Histogram<f64>),
    Gauge(Gauge<f64>),
}

/// The metric instruments.
pub struct Instruments {
    meter: Meter,
    token_usage: Histogram<u64>,
    duration: Histogram<f64>,
    time_to_first_chunk: Histogram<f64>,
    time_per_output_chunk: Histogram<f64>,
    provider: Mutex<HashMap<String, ProviderInstrument>>,
}

impl Instruments {
    /// Creates the standard instruments on a meter.
    pub fn new(meter: &Meter) -> Instruments {
        let seconds = |name: &'static str, description: &'static str| {
            meter
                .f64_histogram(name)
                .with_unit("s")
                .with_description(description)
                .with_boundaries(SECONDS_BUCKETS.to_vec())
                .build()
        };
        Instruments {
            meter: meter.clone(),
            token_usage: meter
                .u64_histogram(TOKEN_USAGE)
                .with_unit("{token}")
                .with_description("Number of input and output tokens used.")
                .with_boundaries(TOKEN_BUCKETS.to_vec())
                .build(),
            duration: seconds(DURATION, "GenAI operation duration."),
            time_to_first_chunk: seconds(
                TIME_TO_FIRST_CHUNK,
                "Time to receive the first chunk of a streamed response.",
            ),
            time_per_output_chunk: seconds(
                TIME_PER_OUTPUT_CHUNK,
                "Time between consecutive chunks of a streamed response, after the first.",
            ),
            provider: Mutex::new(HashMap::new()),
        }
    }

    /// Records the metric points of a finished call.
    pub fn record(&self, record: &Record, op: &Operation, timings: &Timings) {
        for point in points(record, op, Some(timings)) {
            let attrs: Vec<KeyValue> = point
                .attributes
                .iter()
                .filter_map(|(k, v)| to_value(v).map(|v| KeyValue::new(k.clone(), v)))
                .collect();
            match point.name.as_str() {
                TOKEN_USAGE => self.token_usage.record(point.value as u64, &attrs),
                DURATION => self.duration.record(point.value, &attrs),
                TIME_TO_FIRST_CHUNK => self.time_to_first_chunk.record(point.value, &attrs),
                TIME_PER_OUTPUT_CHUNK => self.time_per_output_chunk.record(point.value, &attrs),
                name => self.record_provider(op, name, point.value, &attrs),
            }
        }
    }

    fn record_provider(&self, op: &Operation, name: &str, value: f64, attrs: &[KeyValue]) {
        let Some(metric) = op.metrics.iter().find(|m| m.name == name) else {
            return;
        };
        let Ok(mut instruments) = self.provider.lock() else {
            return;
        };
        let instrument = instruments.entry(metric.name.clone()).or_insert_with(|| {
            let unit = metric.unit.clone().unwrap_or_default();
            let description = metric.description.clone().unwrap_or_default();
            match metric.instrument {
                Instrument::Counter => ProviderInstrument::Counter(
                    self.meter
                        .f64_counter(metric.name.clone())
                        .with_unit(unit)
                        .with_description(description)
                        .build(),
                ),
                Instrument::Gauge => ProviderInstrument::Gauge(
                    self.meter
                        .f64_gauge(metric.name.clone())
                        .with_unit(unit)
                        .with_description(description)
                        .build(),
                ),
                Instrument::Histogram => {
                    let mut builder = self
                        .meter
                        .f64_histogram(metric.name.clone())
                        .with_unit(unit)
                        .with_description(description);
                    if let Some(buckets) = &metric.buckets {
                        builder = builder.with_boundaries(buckets.clone());
                    }
                    ProviderInstrument::Histogram(builder.build())
                }
            }
        });
        match instrument {
            ProviderInstrument::Counter(c) => c.add(value, attrs),
            ProviderInstrument::Histogram(h) => h.record(value, attrs),
            ProviderInstrument::Gauge(g) => g.record(value, attrs),
        }
    }
}
