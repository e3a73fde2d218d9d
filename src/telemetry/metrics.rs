//! The GenAI client metrics and the metrics provider specs declare.

use std::collections::HashMap;
use std::sync::Mutex;

use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter};
use opentelemetry::KeyValue;
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
        Instruments {
            meter: meter.clone(),
            token_usage: meter
                .u64_histogram("gen_ai.client.token.usage")
                .with_unit("{token}")
                .with_description("Number of input and output tokens used.")
                .with_boundaries(TOKEN_BUCKETS.to_vec())
                .build(),
            duration: meter
                .f64_histogram("gen_ai.client.operation.duration")
                .with_unit("s")
                .with_description("GenAI operation duration.")
                .with_boundaries(SECONDS_BUCKETS.to_vec())
                .build(),
            time_to_first_chunk: meter
                .f64_histogram("gen_ai.client.operation.time_to_first_chunk")
                .with_unit("s")
                .with_description("Time to receive the first chunk of a streamed response.")
                .with_boundaries(SECONDS_BUCKETS.to_vec())
                .build(),
            time_per_output_chunk: meter
                .f64_histogram("gen_ai.client.operation.time_per_output_chunk")
                .with_unit("s")
                .with_description(
                    "Time between consecutive chunks of a streamed response, after the first.",
                )
                .with_boundaries(SECONDS_BUCKETS.to_vec())
                .build(),
            provider: Mutex::new(HashMap::new()),
        }
    }

    /// Records the metric points of a finished call.
    pub fn record(&self, record: &Record, op: &Operation, timings: &Timings) {
        let base: Vec<KeyValue> = METRIC_ATTRIBUTES
            .iter()
            .filter_map(|k| {
                record
                    .attributes
                    .get(*k)
                    .and_then(to_value)
                    .map(|v| KeyValue::new(*k, v))
            })
            .collect();
        for (key, token_type) in [
            ("gen_ai.usage.input_tokens", "input"),
            ("gen_ai.usage.output_tokens", "output"),
        ] {
            if let Some(n) = record.attributes.get(key).and_then(Json::as_u64) {
                let mut attrs = base.clone();
                attrs.push(KeyValue::new("gen_ai.token.type", token_type));
                self.token_usage.record(n, &attrs);
            }
        }
        self.duration.record(timings.duration.as_secs_f64(), &base);
        if let Some(ttfc) = timings.first_chunk {
            self.time_to_first_chunk.record(ttfc.as_secs_f64(), &base);
        }
        for gap in &timings.chunk_gaps {
            self.time_per_output_chunk.record(gap.as_secs_f64(), &base);
        }
        for (index, value) in &record.metric_values {
            let Some(metric) = op.metrics.get(*index) else {
                continue;
            };
            let attrs: Vec<KeyValue> = metric
                .attributes
                .iter()
                .filter_map(|k| {
                    record
                        .attributes
                        .get(k)
                        .and_then(to_value)
                        .map(|v| KeyValue::new(k.clone(), v))
                })
                .collect();
            let Ok(mut instruments) = self.provider.lock() else {
                continue;
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
                ProviderInstrument::Counter(c) => c.add(*value, &attrs),
                ProviderInstrument::Histogram(h) => h.record(*value, &attrs),
                ProviderInstrument::Gauge(g) => g.record(*value, &attrs),
            }
        }
    }
}
