//! The GenAI client metrics and the metrics provider specs declare. [`points`] says which metric
//! points a finished call produces (a pure function, also used by `specter extract`);
//! [`Instruments`] records them through an OpenTelemetry meter.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter};
use opentelemetry::{Key, KeyValue, StringValue, Value};
use serde::Serialize;
use serde_json::Value as Json;

use super::convert::to_value;
use super::Timings;
use crate::compile::rules::Instrument;
use crate::compile::rules::Operation;
use crate::engine::Record;
use crate::render::dialect::MetricRename;

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

/// The attribute of the token usage histogram that says which tokens.
const TOKEN_TYPE: &str = "gen_ai.token.type";

/// Token usage histogram name.
pub const TOKEN_USAGE: &str = "gen_ai.client.token.usage";
/// Operation duration histogram name.
pub const DURATION: &str = "gen_ai.client.operation.duration";
/// Time to first chunk histogram name.
pub const TIME_TO_FIRST_CHUNK: &str = "gen_ai.client.operation.time_to_first_chunk";
/// Time per output chunk histogram name.
pub const TIME_PER_OUTPUT_CHUNK: &str = "gen_ai.client.operation.time_per_output_chunk";
/// Operation cost histogram name (USD; only calls whose cost is known).
pub const COST: &str = "gen_ai.client.operation.cost";

const COST_BUCKETS: [f64; 12] = [
    0.00001, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0,
];

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

/// The attributes a metric point carries.
enum PointAttributes<'r> {
    /// The bounded span attributes ([`METRIC_ATTRIBUTES`]).
    Base,
    /// The same and `gen_ai.token.type`.
    Tokens(&'static str),
    /// A provider metric's own attribute keys.
    Provider(&'r [String]),
}

/// Decides the metric points of a finished call: name, value and which attributes.
fn each_point<'r>(
    record: &'r Record,
    op: &'r Operation,
    timings: Option<&Timings>,
    mut f: impl FnMut(&'r str, f64, PointAttributes<'r>),
) {
    for (key, token_type) in [
        ("gen_ai.usage.input_tokens", "input"),
        ("gen_ai.usage.output_tokens", "output"),
    ] {
        if let Some(n) = record.attributes.get(key).and_then(Json::as_f64) {
            f(TOKEN_USAGE, n, PointAttributes::Tokens(token_type));
        }
    }
    if let Some(usd) = record
        .attributes
        .get(crate::prices::COST)
        .and_then(Json::as_f64)
    {
        f(COST, usd, PointAttributes::Base);
    }
    if let Some(t) = timings {
        f(DURATION, t.duration.as_secs_f64(), PointAttributes::Base);
        if let Some(ttfc) = t.first_chunk {
            f(
                TIME_TO_FIRST_CHUNK,
                ttfc.as_secs_f64(),
                PointAttributes::Base,
            );
        }
        for gap in &t.chunk_gaps {
            f(
                TIME_PER_OUTPUT_CHUNK,
                gap.as_secs_f64(),
                PointAttributes::Base,
            );
        }
    }
    for (index, value) in &record.metric_values {
        let Some(metric) = op.metrics.get(*index) else {
            continue;
        };
        f(
            &metric.name,
            *value,
            PointAttributes::Provider(&metric.attributes),
        );
    }
}

/// The metric points of a finished call: token usage by type, duration (when timed), stream
/// timings, and the provider's own metrics. Metric attributes are a bounded set: no ids, no content.
pub fn points(record: &Record, op: &Operation, timings: Option<&Timings>) -> Vec<Point> {
    points_renamed(record, op, timings, &[])
}

/// The new name of standard metric `name` for operation `op`, and the attributes its points
/// leave out, when a dialect's metric rename applies.
fn renamed<'a>(
    renames: &'a [MetricRename],
    op: &Operation,
    name: &str,
) -> Option<(&'a str, &'a [String])> {
    renames.iter().find_map(|r| {
        r.renamed(&op.operation_name, name)
            .map(|new| (new, r.drop_attributes.as_slice()))
    })
}

/// [`points`] with the dialects' metric renames applied.
pub fn points_renamed(
    record: &Record,
    op: &Operation,
    timings: Option<&Timings>,
    renames: &[MetricRename],
) -> Vec<Point> {
    let base: BTreeMap<String, Json> = METRIC_ATTRIBUTES
        .iter()
        .filter_map(|k| {
            record
                .attributes
                .get(*k)
                .map(|v| (k.to_string(), v.clone()))
        })
        .collect();
    let mut out = Vec::new();
    each_point(record, op, timings, |name, value, which| {
        let attributes = match which {
            PointAttributes::Base => base.clone(),
            PointAttributes::Tokens(token_type) => {
                let mut attrs = base.clone();
                attrs.insert(TOKEN_TYPE.into(), Json::String(token_type.into()));
                attrs
            }
            PointAttributes::Provider(keys) => keys
                .iter()
                .filter_map(|k| record.attributes.get(k).map(|v| (k.clone(), v.clone())))
                .collect(),
        };
        let (name, attributes) = match renamed(renames, op, name) {
            Some((new, dropped)) => {
                let mut attributes = attributes;
                attributes.retain(|k, _| !dropped.contains(k));
                (new, attributes)
            }
            None => (name, attributes),
        };
        out.push(Point {
            name: name.to_string(),
            value,
            attributes,
        });
    });
    out
}

/// A metric attribute value; text is reference-counted, so the token points' copies of the
/// attribute list share it.
fn shared_value(value: &Json) -> Option<Value> {
    match value {
        Json::String(s) => Some(Value::String(StringValue::from(Arc::<str>::from(
            s.as_str(),
        )))),
        other => to_value(other),
    }
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
    cost: Histogram<f64>,
    context_keys: Vec<String>,
    provider: Mutex<HashMap<String, ProviderInstrument>>,
    renames: Vec<MetricRename>,
    renamed: Mutex<HashMap<String, Histogram<f64>>>,
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
            cost: meter
                .f64_histogram(COST)
                .with_unit("{USD}")
                .with_description("Cost of a GenAI operation in US dollars, when known.")
                .with_boundaries(COST_BUCKETS.to_vec())
                .build(),
            context_keys: Vec::new(),
            provider: Mutex::new(HashMap::new()),
            renames: Vec::new(),
            renamed: Mutex::new(HashMap::new()),
        }
    }

    /// Records standard metrics under other names where these (the dialects') renames say so.
    pub fn with_metric_renames(mut self, renames: Vec<MetricRename>) -> Instruments {
        self.renames = renames;
        self
    }

    /// Records a point of standard metric `standard` under its new name `name`, on a histogram
    /// with the standard metric's unit and buckets.
    fn record_renamed(&self, standard: &str, name: &str, value: f64, attrs: &[KeyValue]) {
        let Ok(mut instruments) = self.renamed.lock() else {
            return;
        };
        let histogram = instruments.entry(name.to_string()).or_insert_with(|| {
            let (unit, buckets): (&str, &[f64]) = match standard {
                TOKEN_USAGE => ("{token}", &TOKEN_BUCKETS),
                COST => ("{USD}", &COST_BUCKETS),
                _ => ("s", &SECONDS_BUCKETS),
            };
            self.meter
                .f64_histogram(name.to_string())
                .with_unit(unit.to_string())
                .with_boundaries(buckets.to_vec())
                .build()
        });
        histogram.record(value, attrs);
    }

    /// Also copies these (bounded) request context attributes onto the standard metrics.
    pub fn with_context_attributes(mut self, keys: Vec<String>) -> Instruments {
        self.context_keys = keys;
        self
    }

    /// Records the metric points of a finished call (the points [`points`] lists, with the
    /// attribute lists built once per call and static keys).
    pub fn record(&self, record: &Record, op: &Operation, timings: &Timings) {
        let mut base: Vec<KeyValue> = METRIC_ATTRIBUTES
            .iter()
            .filter_map(|k| {
                let value = shared_value(record.attributes.get(*k)?)?;
                Some(KeyValue::new(Key::from_static_str(k), value))
            })
            .collect();
        for key in &self.context_keys {
            if let Some(value) = record.attributes.get(key).and_then(shared_value) {
                base.push(KeyValue::new(key.clone(), value));
            }
        }
        // In key order, as the attribute maps of `points` are.
        base.sort_by(|a, b| a.key.as_str().cmp(b.key.as_str()));
        each_point(record, op, Some(timings), |name, value, which| {
            let owned;
            let attrs: &[KeyValue] = match which {
                PointAttributes::Base => &base,
                PointAttributes::Tokens(token_type) => {
                    let mut attrs = Vec::with_capacity(base.len() + 1);
                    attrs.extend_from_slice(&base);
                    let at = attrs.partition_point(|kv| kv.key.as_str() < TOKEN_TYPE);
                    attrs.insert(
                        at,
                        KeyValue::new(Key::from_static_str(TOKEN_TYPE), token_type),
                    );
                    owned = attrs;
                    &owned
                }
                PointAttributes::Provider(keys) => {
                    let mut keys: Vec<&String> = keys.iter().collect();
                    keys.sort();
                    keys.dedup();
                    owned = keys
                        .into_iter()
                        .filter_map(|k| {
                            let value = to_value(record.attributes.get(k)?)?;
                            Some(KeyValue::new(k.clone(), value))
                        })
                        .collect();
                    &owned
                }
            };
            if let Some((new, dropped)) = renamed(&self.renames, op, name) {
                let kept: Vec<KeyValue> = attrs
                    .iter()
                    .filter(|kv| !dropped.iter().any(|d| d == kv.key.as_str()))
                    .cloned()
                    .collect();
                self.record_renamed(name, new, value, &kept);
                return;
            }
            match name {
                TOKEN_USAGE => self.token_usage.record(value as u64, attrs),
                DURATION => self.duration.record(value, attrs),
                TIME_TO_FIRST_CHUNK => self.time_to_first_chunk.record(value, attrs),
                TIME_PER_OUTPUT_CHUNK => self.time_per_output_chunk.record(value, attrs),
                COST => self.cost.record(value, attrs),
                name => self.record_provider(op, name, value, attrs),
            }
        });
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
