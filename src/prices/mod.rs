//! Model prices and the cost of a call.
//!
//! This module owns the price tables: the bundled one, converted from pydantic's `genai-prices`
//! (`prices/genai-prices.json`, refreshed by `scripts/refresh-prices.py`), and a user's own price
//! file, whose entries come first. [`PriceBook::record_cost`] turns a finished call's token usage into
//! the `gen_ai.usage.cost*` attributes: a cost the provider reported itself wins (source
//! `provider`); otherwise the first price whose provider and model match (source `local`); a call
//! whose model has no price gets no cost attribute, never zero.

mod file;
mod index;
mod spec;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use serde_json::Value as Json;

pub use file::{check_bundled, load_file, PriceFileError, MAX_PRICE_FILE_BYTES};
pub use spec::{
    MatchSpec, ModelPriceSpec, PriceFile, RateSpec, RatesSpec, TierSpec, TieredSpec, VariantSpec,
};

/// The cost in USD (the attribute Langfuse and others read).
pub const COST: &str = "gen_ai.usage.cost";
/// The same amount.
pub const COST_AMOUNT: &str = "gen_ai.usage.cost.amount";
/// Its currency, `USD`.
pub const COST_CURRENCY: &str = "gen_ai.usage.cost.currency";
/// `provider` (reported by the provider) or `local` (computed from the price tables).
pub const COST_SOURCE: &str = "gen_ai.usage.cost.source";

/// Input tokens written to the cache with a 1-hour lifetime (part of the cache writes).
pub const CACHE_WRITE_1H_TOKENS: &str = "specter.usage.cache_creation_1h.input_tokens";
/// Audio input tokens (part of the input tokens).
pub const AUDIO_INPUT_TOKENS: &str = "specter.usage.audio.input_tokens";
/// Audio output tokens (part of the output tokens).
pub const AUDIO_OUTPUT_TOKENS: &str = "specter.usage.audio.output_tokens";

/// The bundled price table, as converted from `genai-prices`.
pub const BUNDLED: &str = include_str!("../../prices/genai-prices.json");

/// A price, flat or tiered by input tokens (USD per million tokens).
#[derive(Debug, Clone, PartialEq)]
pub enum Rate {
    /// One price.
    Flat(f64),
    /// A base price and `(start, price)` tiers in ascending order.
    Tiered(f64, Vec<(u64, f64)>),
}

impl Rate {
    /// The price for a request with this many input tokens: the highest tier whose start the
    /// input exceeds applies to the whole request.
    pub fn at(&self, input_tokens: f64) -> f64 {
        match self {
            Rate::Flat(p) => *p,
            Rate::Tiered(base, tiers) => tiers
                .iter()
                .rev()
                .find(|(start, _)| input_tokens > *start as f64)
                .map(|(_, p)| *p)
                .unwrap_or(*base),
        }
    }
}

/// Prices by kind of token.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rates {
    /// Input.
    pub input: Option<Rate>,
    /// Output.
    pub output: Option<Rate>,
    /// Cache reads.
    pub cache_read: Option<Rate>,
    /// Cache writes (5 minutes).
    pub cache_write: Option<Rate>,
    /// Cache writes (1 hour).
    pub cache_write_1h: Option<Rate>,
    /// Audio input.
    pub input_audio: Option<Rate>,
    /// Audio input read from the cache.
    pub cache_audio_read: Option<Rate>,
    /// Audio output.
    pub output_audio: Option<Rate>,
    /// Reasoning output, when priced apart.
    pub output_reasoning: Option<Rate>,
    /// A fee per request (USD, not per million tokens).
    pub request: Option<Rate>,
}

impl Rates {
    /// These rates with the ones `over` sets replaced.
    fn overlaid(&self, over: &Rates) -> Rates {
        let pick = |a: &Option<Rate>, b: &Option<Rate>| b.clone().or_else(|| a.clone());
        Rates {
            input: pick(&self.input, &over.input),
            output: pick(&self.output, &over.output),
            cache_read: pick(&self.cache_read, &over.cache_read),
            cache_write: pick(&self.cache_write, &over.cache_write),
            cache_write_1h: pick(&self.cache_write_1h, &over.cache_write_1h),
            input_audio: pick(&self.input_audio, &over.input_audio),
            cache_audio_read: pick(&self.cache_audio_read, &over.cache_audio_read),
            output_audio: pick(&self.output_audio, &over.output_audio),
            output_reasoning: pick(&self.output_reasoning, &over.output_reasoning),
            request: pick(&self.request, &over.request),
        }
    }
}

/// A regular expression checked when its table is loaded and compiled the first time it is
/// matched: the bundled table holds over a hundred, and compiling them all at start-up took tens
/// of milliseconds and megabytes of automata that most gateways never use.
#[derive(Debug, Clone)]
pub struct LazyRegex {
    source: String,
    compiled: std::sync::OnceLock<Option<regex::Regex>>,
}

impl LazyRegex {
    /// A regular expression whose syntax is valid; the error says what is wrong.
    pub fn new(source: &str) -> Result<LazyRegex, String> {
        regex_syntax::Parser::new()
            .parse(source)
            .map_err(|e| e.to_string())?;
        Ok(LazyRegex {
            source: source.to_string(),
            compiled: std::sync::OnceLock::new(),
        })
    }

    /// Whether `text` matches (never, when the expression is too large to compile).
    pub fn is_match(&self, text: &str) -> bool {
        self.compiled
            .get_or_init(|| regex::Regex::new(&self.source).ok())
            .as_ref()
            .is_some_and(|re| re.is_match(text))
    }
}

/// A compiled match rule on a lower-cased model name.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// Equal.
    Equals(String),
    /// Prefix.
    StartsWith(String),
    /// Suffix.
    EndsWith(String),
    /// Substring.
    Contains(String),
    /// Regular expression.
    Regex(LazyRegex),
    /// Any.
    Or(Vec<Matcher>),
    /// All.
    And(Vec<Matcher>),
    /// Not.
    Not(Box<Matcher>),
}

impl Matcher {
    /// Whether a lower-cased model name matches.
    pub fn matches(&self, model: &str) -> bool {
        match self {
            Matcher::Equals(s) => model == s,
            Matcher::StartsWith(s) => model.starts_with(s.as_str()),
            Matcher::EndsWith(s) => model.ends_with(s.as_str()),
            Matcher::Contains(s) => model.contains(s.as_str()),
            Matcher::Regex(r) => r.is_match(model),
            Matcher::Or(all) => all.iter().any(|m| m.matches(model)),
            Matcher::And(all) => all.iter().all(|m| m.matches(model)),
            Matcher::Not(m) => !m.matches(model),
        }
    }
}

/// One priced model.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Provider id; `None` for any provider.
    pub provider: Option<String>,
    /// Model match rule.
    pub matcher: Matcher,
    /// Prices.
    pub rates: Rates,
    /// Context-dependent prices: conditions and the rates they replace.
    pub variants: Vec<(BTreeMap<String, String>, Rates)>,
}

/// Price tables, user entries first.
#[derive(Debug, Clone, Default)]
pub struct PriceBook {
    entries: Vec<Entry>,
    /// The entries indexed by provider and model, built with the book.
    index: index::Index,
    /// Where the bundled table came from (`genai-prices 0.2.5, 2026-12-06`), when it is included.
    pub bundled_version: Option<String>,
}

/// What a call paid, and how that was known.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    /// USD.
    pub usd: f64,
    /// Reported by the provider (else computed locally).
    pub from_provider: bool,
}

impl PriceBook {
    /// The bundled table, parsed once.
    pub fn bundled() -> Arc<PriceBook> {
        static BOOK: OnceLock<Arc<PriceBook>> = OnceLock::new();
        BOOK.get_or_init(|| Arc::new(file::bundled())).clone()
    }

    /// A book of these entries alone.
    pub fn from_entries(entries: Vec<Entry>) -> PriceBook {
        PriceBook::indexed(entries, None)
    }

    /// A book of these entries, with its index.
    fn indexed(entries: Vec<Entry>, bundled_version: Option<String>) -> PriceBook {
        PriceBook {
            index: index::Index::new(&entries),
            entries,
            bundled_version,
        }
    }

    /// This book's entries in front of `rest`'s.
    pub fn before(mut self, rest: &PriceBook) -> PriceBook {
        self.entries.extend(rest.entries.iter().cloned());
        PriceBook::indexed(self.entries, rest.bundled_version.clone())
    }

    /// The number of priced models.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the book prices nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The first entry for this provider and model (compared without regard to case).
    pub fn find(&self, provider: &str, model: &str) -> Option<&Entry> {
        self.index
            .find(provider, model)
            .and_then(|i| self.entries.get(i))
    }

    /// Sets the cost attributes of a finished call from its attributes: the provider's own
    /// `gen_ai.usage.cost` when a rule recorded one, else the price of its model. Nothing is set
    /// when neither is known.
    /// `first`, when given, is used before the book (a provider spec's own prices).
    pub fn record_cost(
        &self,
        provider: &str,
        attributes: &mut BTreeMap<String, Json>,
        first: Option<&Rates>,
    ) {
        let reported = attributes
            .get(COST)
            .and_then(Json::as_f64)
            .filter(|v| v.is_finite() && *v >= 0.0);
        let cost = match reported {
            Some(usd) => Some(Cost {
                usd,
                from_provider: true,
            }),
            None => {
                attributes.remove(COST);
                let local = match first {
                    Some(rates) => Usage::of(attributes).and_then(|u| cost_of(rates, &u)),
                    None => self.local_cost(provider, attributes),
                };
                local.map(|usd| Cost {
                    usd,
                    from_provider: false,
                })
            }
        };
        if let Some(cost) = cost {
            set_cost(attributes, cost);
        }
    }

    /// The cost of a call from the tables, when its model is priced and its tokens are known.
    pub fn local_cost(&self, provider: &str, attributes: &BTreeMap<String, Json>) -> Option<f64> {
        let model = ["gen_ai.response.model", "gen_ai.request.model"]
            .iter()
            .find_map(|k| attributes.get(*k).and_then(Json::as_str))?;
        let entry = self.find(provider, model)?;
        let rates = entry.rates_for(attributes);
        cost_of(&rates, &Usage::of(attributes)?)
    }
}

impl Entry {
    /// The rates for a call: the base rates with the first variant whose conditions hold laid
    /// over them.
    fn rates_for(&self, attributes: &BTreeMap<String, Json>) -> Cow<'_, Rates> {
        if self.variants.is_empty() {
            return Cow::Borrowed(&self.rates);
        }
        let tier = service_tier(attributes);
        let variant = self.variants.iter().find(|(when, _)| {
            when.iter()
                .all(|(k, v)| k == "service_tier" && tier == Some(v.as_str()))
        });
        match variant {
            Some((_, over)) => Cow::Owned(self.rates.overlaid(over)),
            None => Cow::Borrowed(&self.rates),
        }
    }
}

/// The service tier of a call: the response's when it says, else the request's (the first
/// attribute whose key ends in `.response.service_tier`, else in `.request.service_tier`), read
/// in one pass over the attributes.
fn service_tier(attributes: &BTreeMap<String, Json>) -> Option<&str> {
    let mut response: Option<&Json> = None;
    let mut request: Option<&Json> = None;
    for (key, value) in attributes {
        if !key.ends_with(".service_tier") {
            continue;
        }
        if response.is_none() && key.ends_with(".response.service_tier") {
            response = Some(value);
        } else if request.is_none() && key.ends_with(".request.service_tier") {
            request = Some(value);
        }
    }
    response
        .and_then(Json::as_str)
        .or_else(|| request.and_then(Json::as_str))
}

/// The attributes whose keys start with `prefix`, in key order (one descent of the map).
fn with_prefix<'a>(
    attributes: &'a BTreeMap<String, Json>,
    prefix: &'a str,
) -> impl Iterator<Item = (&'a String, &'a Json)> {
    use std::ops::Bound;
    attributes
        .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
        .take_while(move |(k, _)| k.starts_with(prefix))
}

/// The token counts of a call.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// All input tokens (cached and audio included).
    pub input: f64,
    /// All output tokens (reasoning and audio included).
    pub output: f64,
    /// Input tokens read from the cache.
    pub cache_read: f64,
    /// Input tokens written to the cache (both lifetimes).
    pub cache_write: f64,
    /// Of those, written for 1 hour.
    pub cache_write_1h: f64,
    /// Audio input tokens.
    pub input_audio: f64,
    /// Audio output tokens.
    pub output_audio: f64,
    /// Reasoning output tokens.
    pub reasoning: f64,
}

impl Usage {
    /// The usage recorded in a call's attributes; `None` when neither input nor output tokens
    /// are known.
    /// The keys are read in two ranges of the map (`gen_ai.usage.*`, `specter.usage.*`) rather
    /// than looked up one by one.
    pub fn of(attributes: &BTreeMap<String, Json>) -> Option<Usage> {
        let mut input = None;
        let mut output = None;
        let mut usage = Usage::default();
        let counts = with_prefix(attributes, "gen_ai.usage.")
            .chain(with_prefix(attributes, "specter.usage."))
            .filter_map(|(k, v)| Some((k.as_str(), v.as_f64()?.max(0.0))));
        for (key, n) in counts {
            match key {
                "gen_ai.usage.input_tokens" => input = Some(n),
                "gen_ai.usage.output_tokens" => output = Some(n),
                "gen_ai.usage.cache_read.input_tokens" => usage.cache_read = n,
                "gen_ai.usage.cache_creation.input_tokens" => usage.cache_write = n,
                "gen_ai.usage.reasoning.output_tokens" => usage.reasoning = n,
                CACHE_WRITE_1H_TOKENS => usage.cache_write_1h = n,
                AUDIO_INPUT_TOKENS => usage.input_audio = n,
                AUDIO_OUTPUT_TOKENS => usage.output_audio = n,
                _ => {}
            }
        }
        if input.is_none() && output.is_none() {
            return None;
        }
        usage.input = input.unwrap_or(0.0);
        usage.output = output.unwrap_or(0.0);
        Some(usage)
    }
}

/// The cost in USD of this usage at these rates, rounded to a millionth of a cent; `None` when
/// tokens of a kind have no price to be paid at.
pub fn cost_of(rates: &Rates, usage: &Usage) -> Option<f64> {
    let at = |rate: Option<&Rate>| rate.map(|r| r.at(usage.input));
    let input = at(rates.input.as_ref());
    let output = at(rates.output.as_ref());
    let mut usd = 0.0;
    let mut pay = |tokens: f64, price: Option<f64>| -> Option<()> {
        if tokens > 0.0 {
            usd += tokens * price?;
        }
        Some(())
    };
    // Input: the parts priced apart come out of the plain input tokens.
    let cache_read = usage.cache_read.min(usage.input);
    let cache_write = usage.cache_write.min(usage.input - cache_read);
    let write_1h = usage.cache_write_1h.min(cache_write);
    let audio_in = usage
        .input_audio
        .min(usage.input - cache_read - cache_write);
    let plain_in = usage.input - cache_read - cache_write - audio_in;
    let write_5m_price = at(rates.cache_write.as_ref()).or(input);
    pay(plain_in, input)?;
    pay(cache_read, at(rates.cache_read.as_ref()).or(input))?;
    pay(cache_write - write_1h, write_5m_price)?;
    pay(
        write_1h,
        at(rates.cache_write_1h.as_ref()).or(write_5m_price),
    )?;
    // Audio is priced apart wherever it is sold; a table without an audio price for the model
    // cannot price audio tokens, and the call gets no cost rather than a text-priced one.
    pay(audio_in, at(rates.input_audio.as_ref()))?;
    // Output: audio and (when priced apart) reasoning come out of the plain output tokens.
    let audio_out = usage.output_audio.min(usage.output);
    let reasoning_price = at(rates.output_reasoning.as_ref());
    let reasoning = if reasoning_price.is_some() {
        usage.reasoning.min(usage.output - audio_out)
    } else {
        0.0
    };
    pay(usage.output - audio_out - reasoning, output)?;
    pay(audio_out, at(rates.output_audio.as_ref()))?;
    pay(reasoning, reasoning_price)?;
    let fee = rates.request.as_ref().map_or(0.0, |r| r.at(usage.input));
    let usd = usd / 1e6 + fee;
    Some((usd * 1e8).round() / 1e8)
}

/// Sets the cost attributes.
pub fn set_cost(attributes: &mut BTreeMap<String, Json>, cost: Cost) {
    let Some(amount) = serde_json::Number::from_f64(cost.usd).map(Json::Number) else {
        return;
    };
    attributes.insert(COST.into(), amount.clone());
    attributes.insert(COST_AMOUNT.into(), amount);
    attributes.insert(COST_CURRENCY.into(), Json::String("USD".into()));
    let source = if cost.from_provider {
        "provider"
    } else {
        "local"
    };
    attributes.insert(COST_SOURCE.into(), Json::String(source.into()));
}
