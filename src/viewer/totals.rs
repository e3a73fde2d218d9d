//! Totals by provider and model (calls, tokens, cost, error rate, duration and time to first
//! chunk percentiles, cache-hit ratio) and a series over time, computed from the index rows in
//! one pass.

use std::collections::HashMap;

use super::index::{opt_count, Filter, Index, Row, PROVIDER, REQUEST_MODEL, RESPONSE_MODEL};

/// Points of the series over time.
pub const BUCKETS: usize = 48;

#[derive(Debug, Default)]
struct Total {
    calls: u64,
    errors: u64,
    input: u64,
    output: u64,
    cached: u64,
    reasoning: u64,
    cost: f64,
    durations: Vec<f32>,
    ttfcs: Vec<f32>,
}

impl Total {
    fn add(&mut self, r: &Row) {
        self.calls += 1;
        self.errors += u64::from(r.error);
        let [input, output, cached, reasoning] =
            r.tokens.map(|t| u64::from(opt_count(t).unwrap_or(0)));
        self.input += input;
        self.output += output;
        self.cached += cached;
        self.reasoning += reasoning;
        if !r.cost.is_nan() {
            self.cost += r.cost;
        }
        self.durations.push(r.duration_ms);
        if !r.ttfc_ms.is_nan() {
            self.ttfcs.push(r.ttfc_ms);
        }
    }

    fn json(mut self, provider: &str, model: &str) -> serde_json::Value {
        #[allow(clippy::cast_precision_loss)]
        let ratio = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
        serde_json::json!({
            "provider": provider,
            "model": model,
            "calls": self.calls,
            "errors": self.errors,
            "error_rate": ratio(self.errors, self.calls),
            "input_tokens": self.input,
            "output_tokens": self.output,
            "cached_tokens": self.cached,
            "reasoning_tokens": self.reasoning,
            "cache_hit_ratio": ratio(self.cached, self.input),
            "cost": self.cost,
            "duration_p50_ms": percentile(&mut self.durations, 0.50),
            "duration_p95_ms": percentile(&mut self.durations, 0.95),
            "ttfc_p50_ms": percentile(&mut self.ttfcs, 0.50),
            "ttfc_p95_ms": percentile(&mut self.ttfcs, 0.95),
        })
    }
}

/// The nearest-rank percentile `p` (0 to 1) of `values`, reordering them.
pub fn percentile(values: &mut [f32], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((p * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
    let (_, value, _) = values.select_nth_unstable_by(rank, f32::total_cmp);
    Some(f64::from(*value))
}

#[derive(Debug, Default, Clone, serde::Serialize)]
struct Bucket {
    start_ms: u64,
    calls: u64,
    errors: u64,
    tokens: u64,
    cost: f64,
}

impl Index {
    /// Totals of the calls matching `filter` by provider and model (the responded model, else
    /// the requested one), the totals of them all, and a series of [`BUCKETS`] points over their
    /// time span.
    pub fn totals(&self, filter: &Filter) -> serde_json::Value {
        let mut groups: HashMap<(u32, u32), Total> = HashMap::new();
        let mut all = Total::default();
        let (mut first, mut last) = (u64::MAX, 0u64);
        for r in self.matching(filter) {
            let model = match r.strings[RESPONSE_MODEL] {
                0 => r.strings[REQUEST_MODEL],
                id => id,
            };
            groups
                .entry((r.strings[PROVIDER], model))
                .or_default()
                .add(r);
            all.add(r);
            first = first.min(r.start_ns);
            last = last.max(r.start_ns);
        }
        let series = if all.calls == 0 {
            Vec::new()
        } else {
            self.series(filter, first, last)
        };
        let mut rows: Vec<((u32, u32), Total)> = groups.into_iter().collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.1.calls));
        let rows: Vec<serde_json::Value> = rows
            .into_iter()
            .map(|((p, m), t)| t.json(self.strings.get(p), self.strings.get(m)))
            .collect();
        serde_json::json!({
            "all": all.json("", ""),
            "by_model": rows,
            "series": series,
            "indexed": self.indexed(),
        })
    }

    fn series(&self, filter: &Filter, first: u64, last: u64) -> Vec<Bucket> {
        let width = ((last - first) / BUCKETS as u64).max(1);
        let mut buckets: Vec<Bucket> = (0..BUCKETS as u64)
            .map(|i| Bucket {
                start_ms: (first + i * width) / 1_000_000,
                ..Bucket::default()
            })
            .collect();
        for r in self.matching(filter) {
            let i = usize::try_from((r.start_ns - first) / width)
                .unwrap_or(BUCKETS)
                .min(BUCKETS - 1);
            if let Some(b) = buckets.get_mut(i) {
                b.calls += 1;
                b.errors += u64::from(r.error);
                b.tokens += u64::from(opt_count(r.tokens[0]).unwrap_or(0))
                    + u64::from(opt_count(r.tokens[1]).unwrap_or(0));
                if !r.cost.is_nan() {
                    b.cost += r.cost;
                }
            }
        }
        buckets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<f32> = (1..=100).map(|i| i as f32).collect();
        assert_eq!(percentile(&mut v, 0.5), Some(50.0));
        assert_eq!(percentile(&mut v, 0.95), Some(95.0));
        assert_eq!(percentile(&mut [], 0.5), None);
        assert_eq!(percentile(&mut [7.0], 0.95), Some(7.0));
    }
}
