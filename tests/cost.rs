//! The cost of a call: `gen_ai.usage.cost` (USD) and its `.amount`, `.currency` and `.source`,
//! from the bundled price table (converted from genai-prices), a provider's own reported cost, or
//! a user's price file, through `specter::offline::extract` on recorded fixtures and on written
//! exchanges (marked as written). Every expected figure is worked out by hand in its comment:
//! tokens × USD per million tokens / 1e6.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Value};
use specter::harness::cases::read_case;
use specter::offline::{extract, ExtractOptions, Recorded};
use specter::unstable::prices::{load_file, PriceBook};

/// The span attributes `extract` gives for a recorded fixture case (`provider/case`).
fn fixture_attributes(case: &str, options: &ExtractOptions) -> Value {
    let data = read_case(&Path::new("tests/fixtures").join(case)).unwrap();
    let exchange = Recorded {
        request_headers: &[],
        response_headers: &[],
        ..data.recorded()
    };
    let provider = case.split('/').next().unwrap().to_string();
    let options = options.clone().with_provider(Some(provider));
    let catalog = specter::Catalog::bundled().unwrap();
    extract(&catalog, &exchange, &options).unwrap()["span"]["attributes"].clone()
}

/// The span attributes of a written exchange (bodies made up for the test, not recorded).
fn written(url: &str, request: Value, response: Value, options: &ExtractOptions) -> Value {
    let request = request.to_string().into_bytes();
    let response = response.to_string().into_bytes();
    let exchange = Recorded {
        method: "POST",
        url,
        status: 200,
        request: &request,
        response: &response,
        content_type: Some("application/json"),
        request_headers: &[],
        response_headers: &[],
    };
    let catalog = specter::Catalog::bundled().unwrap();
    extract(&catalog, &exchange, options).unwrap()["span"]["attributes"].clone()
}

fn cost(attributes: &Value) -> Option<f64> {
    attributes
        .get("gen_ai.usage.cost")
        .map(|v| v.as_f64().unwrap())
}

fn assert_cost(attributes: &Value, expected: f64, source: &str, what: &str) {
    assert_eq!(cost(attributes), Some(expected), "{what}: {attributes:#}");
    assert_eq!(
        attributes["gen_ai.usage.cost.amount"].as_f64(),
        Some(expected),
        "{what}"
    );
    assert_eq!(attributes["gen_ai.usage.cost.currency"], "USD", "{what}");
    assert_eq!(attributes["gen_ai.usage.cost.source"], source, "{what}");
}

#[test]
fn the_bundled_table_loads_whole() {
    let problems = specter::unstable::prices::check_bundled();
    assert!(problems.is_empty(), "{problems}");
    let book = PriceBook::bundled();
    assert!(book.len() > 1000, "{} entries", book.len());
    assert_eq!(
        book.bundled_version
            .as_deref()
            .map(|v| v.starts_with("genai-prices ")),
        Some(true)
    );
    // Every bundled provider that sells metered tokens has prices; Ollama runs locally, Writer and
    // Hugging Face's router are not in the source table.
    for provider in [
        "openai",
        "anthropic",
        "gemini",
        "vertexai",
        "bedrock",
        "azure_openai",
        "mistral",
        "groq",
        "deepseek",
        "xai",
        "together",
        "fireworks",
        "cerebras",
        "cohere",
        "openrouter",
        "perplexity",
    ] {
        let catalog = specter::Catalog::bundled().unwrap();
        assert!(
            catalog.provider(provider).is_some(),
            "{provider} is bundled"
        );
    }
}

/// One recorded fixture per bundled provider with a priced model.
#[test]
fn each_bundled_provider_with_prices_costs_its_fixture() {
    let cases: [(&str, f64, &str); 17] = [
        // gpt-4o-mini $0.15 / $0.60: 12 × 0.15 + 5 × 0.60 = 1.8 + 3.0 = 4.8 → $0.0000048
        ("openai/chat_plain", 0.0000048, "openai"),
        // claude-3-opus $15 / $75: 17 × 15 + 220 × 75 = 255 + 16500 = 16755 → $0.016755
        ("anthropic/messages_plain_gzip", 0.016755, "anthropic"),
        // gemini-2.0-flash $0.10 / $0.40: 45 × 0.1 + 23 × 0.4 = 4.5 + 9.2 = 13.7 → $0.0000137
        ("gemini/generate_content", 0.0000137, "gemini"),
        // gemini-2.5-pro $1.25 / $10 (output 299 includes 294 thinking tokens):
        // 5 × 1.25 + 299 × 10 = 6.25 + 2990 = 2996.25 → $0.00299625
        ("vertexai/generate_content", 0.00299625, "vertexai"),
        // amazon.nova-micro $0.035 / $0.14: 415 × 0.035 + 190 × 0.14 = 14.525 + 26.6 = 41.125
        // → $0.000041125, rounded to a millionth of a cent: $0.00004113
        ("bedrock/converse_tool_use", 0.00004113, "bedrock"),
        // mistral-small-latest $0.15 / $0.60: 96 × 0.15 + 23 × 0.6 = 14.4 + 13.8 = 28.2
        // → $0.0000282
        ("mistral/chat_stream_tool_call", 0.0000282, "mistral"),
        // gpt-35-turbo (gpt-3.5-turbo) $0.50 / $1.50: 15 × 0.5 + 24 × 1.5 = 7.5 + 36 = 43.5
        // → $0.0000435
        ("azure_openai/chat", 0.0000435, "azure_openai"),
        // llama-3.3-70b $0.85 / $1.20: 43 × 0.85 + 9 × 1.2 = 36.55 + 10.8 = 47.35 → $0.00004735
        ("cerebras/chat", 0.00004735, "cerebras"),
        // command-r $0.15 / $0.60: 968 × 0.15 + 83 × 0.6 = 145.2 + 49.8 = 195 → $0.000195
        ("cohere/chat_v2_tool_calls", 0.000195, "cohere"),
        // deepseek-reasoner $0.135 / $0.55 (output 789 includes 415 reasoning):
        // 12 × 0.135 + 789 × 0.55 = 1.62 + 433.95 = 435.57 → $0.00043557
        ("deepseek/chat_reasoning", 0.00043557, "deepseek"),
        // llama-v3p1-8b-instruct $0.20 / $0.20: 15 × 0.2 + 4 × 0.2 = 3.8 → $0.0000038
        ("fireworks/chat", 0.0000038, "fireworks"),
        // llama3-8b-8192 $0.05 / $0.08: 18 × 0.05 + 43 × 0.08 = 0.9 + 3.44 = 4.34 → $0.00000434
        ("groq/chat", 0.00000434, "groq"),
        // mistralai/mistral-small $0.20 / $0.60: 134 × 0.2 + 43 × 0.6 = 26.8 + 25.8 = 52.6
        // → $0.0000526 (this response reports no cost of its own)
        ("openrouter/chat_tool_call", 0.0000526, "openrouter"),
        // sonar $1 / $1 and $12 per thousand requests: 14 × 1 + 40 × 1 = 54 → $0.000054,
        // + $0.012 for the request = $0.012054
        ("perplexity/chat", 0.012054, "perplexity"),
        // Llama-3.3-70B-Instruct-Turbo $0.88 / $0.88: 46 × 0.88 + 45 × 0.88 = 40.48 + 39.6
        // = 80.08 → $0.00008008
        ("together/chat", 0.00008008, "together"),
        // grok-4-1-fast-reasoning $0.20 / cached $0.05 / $0.50, 6 of 32 input tokens cached:
        // 26 × 0.2 + 6 × 0.05 + 103 × 0.5 = 5.2 + 0.3 + 51.5 = 57 → $0.000057
        ("xai/chat", 0.000057, "xai"),
        // claude-3-7-sonnet $3 / 5-minute cache write $3.75 / $15; 1733 of 1754 input tokens
        // written to the cache: 21 × 3 + 1733 × 3.75 + 561 × 15 = 63 + 6498.75 + 8415
        // = 14976.75 → $0.01497675
        (
            "anthropic/messages_system_cache_control",
            0.01497675,
            "anthropic",
        ),
    ];
    let options = ExtractOptions::default();
    for (case, expected, _provider) in cases {
        let attributes = fixture_attributes(case, &options);
        assert_cost(&attributes, expected, "local", case);
    }
}

#[test]
fn cached_input_is_paid_at_the_cache_price() {
    // Written exchange. gpt-4o $2.50 / cached $1.25 / $10; 1500 of 2000 prompt tokens cached:
    // 500 × 2.5 + 1500 × 1.25 + 100 × 10 = 1250 + 1875 + 1000 = 4125 → $0.004125
    let attributes = written(
        "https://api.openai.com/v1/chat/completions",
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}),
        json!({
            "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 2000, "completion_tokens": 100,
                      "prompt_tokens_details": {"cached_tokens": 1500}},
        }),
        &ExtractOptions::default(),
    );
    assert_cost(&attributes, 0.004125, "local", "cached input");
}

#[test]
fn cache_writes_for_five_minutes_and_for_one_hour_have_their_own_prices() {
    // Written exchange. claude-sonnet-4-5 below 200k input tokens: $3 input, $3.75 5-minute cache
    // write, $6 1-hour cache write, $15 output. 50 plain + 1000 (5 min) + 2000 (1 h) input:
    // 50 × 3 + 1000 × 3.75 + 2000 × 6 + 100 × 15 = 150 + 3750 + 12000 + 1500 = 17400 → $0.0174
    let attributes = written(
        "https://api.anthropic.com/v1/messages",
        json!({"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}),
        json!({
            "model": "claude-sonnet-4-5-20250929", "type": "message", "role": "assistant",
            "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 50, "cache_read_input_tokens": 0,
                      "cache_creation_input_tokens": 3000,
                      "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000},
                      "output_tokens": 100},
        }),
        &ExtractOptions::default(),
    );
    assert_eq!(
        attributes["specter.usage.cache_creation_1h.input_tokens"],
        2000
    );
    assert_cost(&attributes, 0.0174, "local", "cache writes");
}

#[test]
fn past_the_long_context_threshold_the_whole_request_pays_the_higher_rate() {
    // Written exchange. claude-sonnet-4-5 over 200k input tokens (150000 plain + 50100 cached =
    // 200100): $6 input, $0.60 cache read, $22.50 output for all tokens:
    // 150000 × 6 + 50100 × 0.6 + 1000 × 22.5 = 900000 + 30060 + 22500 = 952560 → $0.95256
    let attributes = written(
        "https://api.anthropic.com/v1/messages",
        json!({"model": "claude-sonnet-4-5", "max_tokens": 1000, "messages": [{"role": "user", "content": "hi"}]}),
        json!({
            "model": "claude-sonnet-4-5", "type": "message", "role": "assistant",
            "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 150000, "cache_read_input_tokens": 50100,
                      "cache_creation_input_tokens": 0, "output_tokens": 1000},
        }),
        &ExtractOptions::default(),
    );
    assert_cost(&attributes, 0.95256, "local", "anthropic long context");

    // Written exchange. gemini-2.5-pro over 200k: $2.50 input, $15 output (thinking included):
    // 250000 × 2.5 + (2000 + 1000) × 15 = 625000 + 45000 = 670000 → $0.67
    let attributes = written(
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:generateContent",
        json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}),
        json!({
            "candidates": [{"content": {"role": "model", "parts": [{"text": "ok"}]}, "finishReason": "STOP"}],
            "modelVersion": "gemini-2.5-pro",
            "usageMetadata": {"promptTokenCount": 250000, "candidatesTokenCount": 2000, "thoughtsTokenCount": 1000},
        }),
        &ExtractOptions::default(),
    );
    assert_cost(&attributes, 0.67, "local", "gemini long context");

    // The same call at 199,000 input tokens stays at the base rates ($1.25 / $10):
    // 199000 × 1.25 + 3000 × 10 = 248750 + 30000 = 278750 → $0.27875
    let attributes = written(
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:generateContent",
        json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}),
        json!({
            "candidates": [{"content": {"role": "model", "parts": [{"text": "ok"}]}, "finishReason": "STOP"}],
            "modelVersion": "gemini-2.5-pro",
            "usageMetadata": {"promptTokenCount": 199000, "candidatesTokenCount": 2000, "thoughtsTokenCount": 1000},
        }),
        &ExtractOptions::default(),
    );
    assert_cost(&attributes, 0.27875, "local", "gemini below the threshold");
}

#[test]
fn reasoning_tokens_priced_apart_pay_their_own_price() {
    // Written exchange. perplexity/sonar-deep-research on OpenRouter: $2 input, $8 output, $3
    // reasoning; 600 of 1000 output tokens are reasoning (no cost reported by the response):
    // 100 × 2 + 400 × 8 + 600 × 3 = 200 + 3200 + 1800 = 5200 → $0.0052
    let attributes = written(
        "https://openrouter.ai/api/v1/chat/completions",
        json!({"model": "perplexity/sonar-deep-research", "messages": [{"role": "user", "content": "hi"}]}),
        json!({
            "model": "perplexity/sonar-deep-research",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 1000,
                      "completion_tokens_details": {"reasoning_tokens": 600}},
        }),
        &ExtractOptions::default(),
    );
    assert_cost(&attributes, 0.0052, "local", "reasoning priced apart");
}

#[test]
fn audio_tokens_pay_audio_prices_or_the_call_has_no_cost() {
    // Written exchange. gpt-realtime $4 text in, $32 audio in, $16 text out, $64 audio out;
    // 400 of 1000 input and 300 of 500 output tokens are audio:
    // 600 × 4 + 400 × 32 + 200 × 16 + 300 × 64 = 2400 + 12800 + 3200 + 19200 = 37600 → $0.0376
    let usage = json!({"prompt_tokens": 1000, "completion_tokens": 500,
                       "prompt_tokens_details": {"audio_tokens": 400},
                       "completion_tokens_details": {"audio_tokens": 300}});
    let response = |model: &str| {
        json!({
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": usage,
        })
    };
    let attributes = written(
        "https://api.openai.com/v1/chat/completions",
        json!({"model": "gpt-realtime", "messages": [{"role": "user", "content": "hi"}]}),
        response("gpt-realtime"),
        &ExtractOptions::default(),
    );
    assert_cost(&attributes, 0.0376, "local", "audio");
    // gpt-4o-audio-preview has text prices only in the table: audio tokens cannot be priced, so
    // no cost rather than a text-priced one.
    let attributes = written(
        "https://api.openai.com/v1/chat/completions",
        json!({"model": "gpt-4o-audio-preview", "messages": [{"role": "user", "content": "hi"}]}),
        response("gpt-4o-audio-preview"),
        &ExtractOptions::default(),
    );
    assert_eq!(cost(&attributes), None, "{attributes:#}");
}

#[test]
fn a_cost_the_provider_reports_wins_and_says_so() {
    // Recorded OpenRouter stream whose last chunk carries `usage.cost: 0.000669`. The local price
    // (claude-sonnet-4.5, $3 / $15: 43 × 3 + 36 × 15 = 669 → $0.000669) happens to agree; the
    // written exchange below shows the provider's figure wins where they differ.
    let attributes = fixture_attributes("openrouter/chat_stream", &ExtractOptions::default());
    assert_cost(&attributes, 0.000669, "provider", "openrouter stream");

    // Written exchange: mistralai/mistral-small would cost 134 × 0.2 + 43 × 0.6 = 52.6 →
    // $0.0000526 locally; the response says $0.5.
    let attributes = written(
        "https://openrouter.ai/api/v1/chat/completions",
        json!({"model": "mistralai/mistral-small", "messages": [{"role": "user", "content": "hi"}]}),
        json!({
            "model": "mistralai/mistral-small",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 134, "completion_tokens": 43, "cost": 0.5},
        }),
        &ExtractOptions::default(),
    );
    assert_cost(&attributes, 0.5, "provider", "reported cost");
}

#[test]
fn an_unpriced_model_gets_no_cost_attribute_at_all() {
    // Recorded Ollama call (a local model: no price anywhere).
    let attributes = fixture_attributes("ollama/chat", &ExtractOptions::default());
    assert!(attributes.get("gen_ai.usage.input_tokens").is_some());
    for key in [
        "gen_ai.usage.cost",
        "gen_ai.usage.cost.amount",
        "gen_ai.usage.cost.currency",
        "gen_ai.usage.cost.source",
    ] {
        assert!(attributes.get(key).is_none(), "{key}: {attributes:#}");
    }
    // Written exchange: a model no table knows, at a priced provider.
    let attributes = written(
        "https://api.openai.com/v1/chat/completions",
        json!({"model": "my-own-model", "messages": [{"role": "user", "content": "hi"}]}),
        json!({
            "model": "my-own-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5},
        }),
        &ExtractOptions::default(),
    );
    assert_eq!(cost(&attributes), None);
}

fn scratch_file(name: &str, text: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "cost-{}-{}",
        std::process::id(),
        name
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("prices.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_user_price_file_overrides_and_extends_the_tables() {
    let path = scratch_file(
        "user",
        "models:\n\
         \x20 - provider: openai\n\
         \x20   model: gpt-4o-mini*\n\
         \x20   prices: { input: 1, output: 2 }\n\
         \x20 - provider: openai\n\
         \x20   model: my-own-model\n\
         \x20   prices: { input: 10, output: 20 }\n\
         \x20   variants:\n\
         \x20     - when: { service_tier: flex }\n\
         \x20       prices: { input: 5, output: 10 }\n",
    );
    let book = load_file(&path).unwrap().before(&PriceBook::bundled());
    let options = ExtractOptions::default().with_prices(Arc::new(book));
    // The recorded gpt-4o-mini call at the user's $1 / $2 instead of $0.15 / $0.60:
    // 12 × 1 + 5 × 2 = 22 → $0.000022
    let attributes = fixture_attributes("openai/chat_plain", &options);
    assert_cost(&attributes, 0.000022, "local", "user override");
    // A model only the user's file prices, $10 / $20: 10 × 10 + 5 × 20 = 200 → $0.0002
    let request = json!({"model": "my-own-model", "messages": [{"role": "user", "content": "hi"}]});
    let response = |tier: &str| {
        json!({
            "model": "my-own-model", "service_tier": tier,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5},
        })
    };
    let url = "https://api.openai.com/v1/chat/completions";
    let attributes = written(url, request.clone(), response("default"), &options);
    assert_cost(&attributes, 0.0002, "local", "user model");
    // The flex tier the response reports, $5 / $10: 10 × 5 + 5 × 10 = 100 → $0.0001
    let attributes = written(url, request, response("flex"), &options);
    assert_cost(&attributes, 0.0001, "local", "user model, flex tier");
    // Models the user's file does not name keep the bundled prices: claude-3-opus as above.
    let attributes = fixture_attributes("anthropic/messages_plain_gzip", &options);
    assert_cost(
        &attributes,
        0.016755,
        "local",
        "bundled behind the user's file",
    );
}

#[test]
fn a_bad_price_file_is_refused_with_located_problems() {
    let path = scratch_file(
        "bad",
        "models:\n\
         \x20 - provider: openai\n\
         \x20   model: gpt-4o\n\
         \x20   prices: { input: -1, output: 2 }\n\
         \x20 - provider: openai\n\
         \x20   prices: { input: 1 }\n\
         \x20 - model: x\n\
         \x20   prices: { inptu: 1 }\n",
    );
    let error = load_file(&path).unwrap_err().to_string();
    let file = path.display();
    assert!(
        error.contains(&format!(
            "{file}:4:15: models.0.prices.input: prices must be finite and not negative"
        )),
        "{error}"
    );
    assert!(
        error.contains(&format!(
            "{file}:5:5: models.1: `model` or `match` is required"
        )),
        "{error}"
    );
    assert!(
        error.contains(&format!(
            "{file}:8:15: models.2.prices.inptu: unknown field `inptu`"
        )),
        "{error}"
    );
}

#[test]
fn specter_extract_takes_a_price_file_and_request_headers() {
    let path = scratch_file(
        "extract",
        "models:\n  - model: gpt-4o-mini*\n    prices: { input: 1, output: 2 }\n",
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_specter"))
        .args([
            "extract",
            "--url",
            "https://api.openai.com/v1/chat/completions",
            "--request",
            "tests/fixtures/openai/chat_plain/request.json",
            "--response",
            "tests/fixtures/openai/chat_plain/response.json",
            "--header",
            "X-Specter-Session-Id: offline-session",
            "--header",
            "baggage: user.id=offline-user",
            "--prices",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out: Value = serde_json::from_slice(&output.stdout).unwrap();
    let attributes = &out["span"]["attributes"];
    // 12 × 1 + 5 × 2 = 22 → $0.000022
    assert_cost(attributes, 0.000022, "local", "extract --prices");
    assert_eq!(attributes["session.id"], "offline-session");
    assert_eq!(attributes["user.id"], "offline-user");
    // The cost histogram point.
    let cost_point = out["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "gen_ai.client.operation.cost")
        .unwrap();
    assert_eq!(cost_point["value"].as_f64(), Some(0.000022));
    assert!(cost_point["attributes"].get("session.id").is_none());
}
