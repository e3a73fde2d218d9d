//! Dialects against their projects' own conventions, and the semantic-conventions version switch,
//! on recorded exchanges from `tests/fixtures/` rendered by `specter::offline::extract`.
//!
//! The expected names and values are OpenInference's and AgentOps' own constants, copied here
//! from their definitions:
//! - OpenInference: `python/openinference-semantic-conventions/src/openinference/semconv/trace/
//!   __init__.py` (SpanAttributes, MessageAttributes, MessageContentAttributes,
//!   ToolCallAttributes, ToolAttributes, OpenInferenceSpanKindValues, OpenInferenceMimeTypeValues,
//!   OpenInferenceLLMProviderValues, OpenInferenceLLMSystemValues) and `spec/embedding_spans.md`
//!   of github.com/Arize-ai/openinference;
//! - AgentOps: `agentops/semconv/span_attributes.py` (SpanAttributes), `agentops/semconv/
//!   message.py` (MessageAttributes), `agentops/semconv/enum.py` (LLMRequestTypeValues) of
//!   github.com/AgentOps-AI/agentops.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use serde_json::{json, Value as Json};
use specter::offline::{extract, ExtractOptions, Recorded};
use specter::unstable::render::dialect::{with_stability_opt_in, Dialect};
use specter::Catalog;

use specter::harness::cases::read_case;

/// OpenInference names (semconv/trace/__init__.py).
mod oi {
    pub const SPAN_KIND: &str = "openinference.span.kind"; // SpanAttributes.OPENINFERENCE_SPAN_KIND
    pub const LLM: &str = "LLM"; // OpenInferenceSpanKindValues.LLM
    pub const EMBEDDING: &str = "EMBEDDING"; // OpenInferenceSpanKindValues.EMBEDDING
    pub const PROVIDER: &str = "llm.provider"; // SpanAttributes.LLM_PROVIDER
    pub const SYSTEM: &str = "llm.system"; // SpanAttributes.LLM_SYSTEM
    pub const MODEL_NAME: &str = "llm.model_name"; // SpanAttributes.LLM_MODEL_NAME
    pub const EMBEDDING_MODEL_NAME: &str = "embedding.model_name"; // SpanAttributes.EMBEDDING_MODEL_NAME
    pub const INVOCATION_PARAMETERS: &str = "llm.invocation_parameters"; // SpanAttributes.LLM_INVOCATION_PARAMETERS
    pub const FINISH_REASON: &str = "llm.finish_reason"; // SpanAttributes.LLM_FINISH_REASON
    pub const INPUT_VALUE: &str = "input.value"; // SpanAttributes.INPUT_VALUE
    pub const INPUT_MIME_TYPE: &str = "input.mime_type"; // SpanAttributes.INPUT_MIME_TYPE
    pub const OUTPUT_VALUE: &str = "output.value"; // SpanAttributes.OUTPUT_VALUE
    pub const OUTPUT_MIME_TYPE: &str = "output.mime_type"; // SpanAttributes.OUTPUT_MIME_TYPE
    pub const JSON: &str = "application/json"; // OpenInferenceMimeTypeValues.JSON
    pub const TOKEN_COUNT_PROMPT: &str = "llm.token_count.prompt"; // SpanAttributes.LLM_TOKEN_COUNT_PROMPT
    pub const TOKEN_COUNT_COMPLETION: &str = "llm.token_count.completion"; // SpanAttributes.LLM_TOKEN_COUNT_COMPLETION
    pub const TOKEN_COUNT_TOTAL: &str = "llm.token_count.total"; // SpanAttributes.LLM_TOKEN_COUNT_TOTAL
    pub const CACHE_WRITE: &str = "llm.token_count.prompt_details.cache_write"; // LLM_TOKEN_COUNT_PROMPT_DETAILS_CACHE_WRITE
    pub const PROMPT_AUDIO: &str = "llm.token_count.prompt_details.audio"; // LLM_TOKEN_COUNT_PROMPT_DETAILS_AUDIO
                                                                           // OpenInferenceLLMProviderValues / OpenInferenceLLMSystemValues.
    pub const OPENAI: &str = "openai";
    pub const AWS: &str = "aws";
    pub const GOOGLE: &str = "google";
    pub const ANTHROPIC: &str = "anthropic";
    /// `llm.input_messages.{i}.message.role`: SpanAttributes.LLM_INPUT_MESSAGES + MessageAttributes.MESSAGE_ROLE.
    pub fn input(i: usize, rest: &str) -> String {
        format!("llm.input_messages.{i}.{rest}")
    }
    pub fn output(i: usize, rest: &str) -> String {
        format!("llm.output_messages.{i}.{rest}")
    }
}

/// AgentOps names (agentops/semconv/span_attributes.py, message.py, enum.py).
mod ao {
    pub const SYSTEM: &str = "gen_ai.system"; // SpanAttributes.LLM_SYSTEM
    pub const REQUEST_TYPE: &str = "gen_ai.request.type"; // SpanAttributes.LLM_REQUEST_TYPE
    pub const CHAT: &str = "chat"; // LLMRequestTypeValues.CHAT
    pub const EMBEDDING: &str = "embedding"; // LLMRequestTypeValues.EMBEDDING
    pub const REQUEST_STREAMING: &str = "gen_ai.request.streaming"; // SpanAttributes.LLM_REQUEST_STREAMING
    pub const REQUEST_FUNCTIONS: &str = "gen_ai.request.functions"; // SpanAttributes.LLM_REQUEST_FUNCTIONS
    pub const FINISH_REASON: &str = "gen_ai.response.finish_reason"; // SpanAttributes.LLM_RESPONSE_FINISH_REASON
    pub const PROMPT_TOKENS: &str = "gen_ai.usage.prompt_tokens"; // SpanAttributes.LLM_USAGE_PROMPT_TOKENS
    pub const COMPLETION_TOKENS: &str = "gen_ai.usage.completion_tokens"; // SpanAttributes.LLM_USAGE_COMPLETION_TOKENS
    pub const TOTAL_TOKENS: &str = "gen_ai.usage.total_tokens"; // SpanAttributes.LLM_USAGE_TOTAL_TOKENS
    pub const CACHE_CREATION: &str = "gen_ai.usage.cache_creation_input_tokens"; // LLM_USAGE_CACHE_CREATION_INPUT_TOKENS
    pub const REASONING_TOKENS: &str = "gen_ai.usage.reasoning_tokens"; // SpanAttributes.LLM_USAGE_REASONING_TOKENS
    /// MessageAttributes.PROMPT_* (`gen_ai.prompt.{i}.…`).
    pub fn prompt(i: usize, rest: &str) -> String {
        format!("gen_ai.prompt.{i}.{rest}")
    }
    /// MessageAttributes.COMPLETION_* (`gen_ai.completion.{i}.…`).
    pub fn completion(i: usize, rest: &str) -> String {
        format!("gen_ai.completion.{i}.{rest}")
    }
    /// MessageAttributes.TOOL_CALL_* (`gen_ai.request.tools.{i}.…`).
    pub fn tool(i: usize, rest: &str) -> String {
        format!("gen_ai.request.tools.{i}.{rest}")
    }
}

/// The recorded exchange of `tests/fixtures/<case>` rendered in `dialects`: the span JSON.
fn span_of(case: &str, dialects: Vec<Dialect>) -> Json {
    extracted(case, dialects)["span"].clone()
}

/// The whole `extract` output (span and metric points) of a recorded exchange in `dialects`.
fn extracted(case: &str, dialects: Vec<Dialect>) -> Json {
    let data = read_case(&Path::new("tests/fixtures").join(case)).unwrap();
    let exchange = Recorded {
        request_headers: &[],
        response_headers: &[],
        ..data.recorded()
    };
    let catalog = Catalog::load(&[PathBuf::from("providers")]).unwrap();
    let options = ExtractOptions::default().with_dialects(dialects);
    extract(&catalog, &exchange, &options).unwrap()
}

fn openinference(case: &str) -> Json {
    span_of(case, vec![Dialect::named("openinference").unwrap()])
}

fn agentops(case: &str) -> Json {
    span_of(case, vec![Dialect::named("agentops").unwrap()])
}

fn latest() -> Vec<Dialect> {
    with_stability_opt_in(vec![Dialect::Semconv], Some("gen_ai_latest_experimental")).unwrap()
}

/// Keys of `span` that start with `prefix`.
fn keys_with(span: &Json, prefix: &str) -> Vec<String> {
    span["attributes"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with(prefix))
        .cloned()
        .collect()
}

fn json_text(value: &Json) -> Json {
    serde_json::from_str(value.as_str().unwrap()).unwrap()
}

#[test]
fn openinference_chat_has_openinference_names_and_values() {
    let span = openinference("openai/chat_plain");
    let a = &span["attributes"];
    assert_eq!(a[oi::SPAN_KIND], oi::LLM);
    assert_eq!(a[oi::PROVIDER], oi::OPENAI);
    assert_eq!(a[oi::SYSTEM], oi::OPENAI);
    // The model that answered (llm.model_name), not the one asked for.
    assert_eq!(a[oi::MODEL_NAME], "gpt-4o-mini-2024-07-18");
    assert_eq!(a[oi::FINISH_REASON], "stop");
    assert_eq!(a[oi::TOKEN_COUNT_PROMPT], 12);
    assert_eq!(a[oi::TOKEN_COUNT_COMPLETION], 5);
    assert_eq!(a[oi::TOKEN_COUNT_TOTAL], 17);
    assert_eq!(
        json_text(&a[oi::INVOCATION_PARAMETERS]),
        json!({"model": "gpt-4o-mini", "stream": false})
    );
    assert_eq!(a[oi::INPUT_MIME_TYPE], oi::JSON);
    assert_eq!(a[oi::OUTPUT_MIME_TYPE], oi::JSON);
    assert_eq!(
        json_text(&a[oi::INPUT_VALUE]),
        json!([{"role": "user", "parts": [{"type": "text", "content": "Say this is a test"}]}])
    );
    assert_eq!(
        json_text(&a[oi::OUTPUT_VALUE])[0]["parts"][0]["content"],
        "This is a test."
    );
    assert_eq!(a[oi::input(0, "message.role")], "user");
    assert_eq!(a[oi::input(0, "message.content")], "Say this is a test");
    // One text part: message.content says it all, message.contents is not repeated.
    assert!(keys_with(&span, &oi::input(0, "message.contents")).is_empty());
    assert_eq!(a[oi::output(0, "message.role")], "assistant");
    assert_eq!(a[oi::output(0, "message.content")], "This is a test.");
    // What OpenInference names is not repeated under the semantic conventions' names.
    for key in [
        "gen_ai.provider.name",
        "gen_ai.request.model",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.response.finish_reasons",
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.usage.audio.input_tokens",
    ] {
        assert!(a.get(key).is_none(), "{key} in {a}");
    }
    // OpenAI reports audio tokens (0 here): OpenInference has a name for them.
    assert_eq!(a[oi::PROMPT_AUDIO], 0);
}

#[test]
fn openinference_streamed_chat() {
    let span = openinference("openai/chat_stream_include_usage");
    let a = &span["attributes"];
    assert_eq!(a[oi::SPAN_KIND], oi::LLM);
    assert_eq!(a[oi::MODEL_NAME], "gpt-4-0613");
    assert_eq!(
        json_text(&a[oi::INVOCATION_PARAMETERS]),
        json!({"model": "gpt-4", "stream": true})
    );
    assert_eq!(a[oi::output(0, "message.content")], "\"This is a test.\"");
    assert_eq!(a[oi::TOKEN_COUNT_TOTAL], 17);
    assert!(a.get("gen_ai.request.stream").is_none());
}

#[test]
fn openinference_tool_call_flattens_calls_and_tools() {
    let span = openinference("openai/chat_tool_calls");
    let a = &span["attributes"];
    assert_eq!(a[oi::FINISH_REASON], "tool_calls");
    // The system instructions are the first input message.
    assert_eq!(a[oi::input(0, "message.role")], "system");
    assert_eq!(a[oi::input(1, "message.role")], "user");
    let call = |j: usize, rest: &str| {
        a[oi::output(0, &format!("message.tool_calls.{j}.tool_call.{rest}"))].clone()
    };
    assert_eq!(call(0, "id"), "call_JpNb8OiAkbIbHzDggfpdDHpi");
    assert_eq!(call(0, "function.name"), "get_current_weather");
    assert_eq!(
        json_text(&call(0, "function.arguments")),
        json!({"location": "Seattle, WA"})
    );
    assert_eq!(
        json_text(&call(1, "function.arguments")),
        json!({"location": "San Francisco, CA"})
    );
    // llm.tools.{i}.tool.json_schema (SpanAttributes.LLM_TOOLS + ToolAttributes.TOOL_JSON_SCHEMA).
    let schema = json_text(&a["llm.tools.0.tool.json_schema"]);
    assert_eq!(schema["name"], "get_current_weather");
    assert_eq!(schema["parameters"]["required"], json!(["location"]));
    assert!(a.get("gen_ai.tool.definitions").is_none());
}

#[test]
fn openinference_embeddings_is_an_embedding_span_without_llm_provider() {
    let span = openinference("openai/embeddings");
    let a = &span["attributes"];
    assert_eq!(a[oi::SPAN_KIND], oi::EMBEDDING);
    assert_eq!(a[oi::EMBEDDING_MODEL_NAME], "text-embedding-3-small");
    assert_eq!(a[oi::TOKEN_COUNT_PROMPT], 6);
    assert_eq!(a[oi::TOKEN_COUNT_TOTAL], 6);
    assert_eq!(
        json_text(&a["embedding.invocation_parameters"]),
        json!({"model": "text-embedding-3-small"})
    );
    // spec/embedding_spans.md: llm.system and llm.provider are not used on embedding spans.
    for key in [
        oi::PROVIDER,
        oi::SYSTEM,
        oi::MODEL_NAME,
        oi::INVOCATION_PARAMETERS,
    ] {
        assert!(a.get(key).is_none(), "{key}");
    }
    // No vectors or texts are captured.
    assert!(keys_with(&span, "embedding.embeddings").is_empty());
}

#[test]
fn openinference_provider_and_system_values_are_openinferences_own() {
    // AWS Bedrock: llm.provider `aws`; no well-known llm.system for a Titan model.
    let bedrock = openinference("bedrock/converse");
    assert_eq!(bedrock["attributes"][oi::PROVIDER], oi::AWS);
    assert!(bedrock["attributes"].get(oi::SYSTEM).is_none());
    assert_eq!(
        json_text(&bedrock["attributes"][oi::INVOCATION_PARAMETERS]),
        json!({"model": "amazon.titan-text-lite-v1", "temperature": 0.8, "max_tokens": 10, "top_p": 1.0, "stop": ["|"]})
    );
    assert_eq!(bedrock["attributes"][oi::FINISH_REASON], "max_tokens");
    // The Gemini API: llm.provider `google`.
    let gemini = openinference("gemini/generate_content");
    assert_eq!(gemini["attributes"][oi::PROVIDER], oi::GOOGLE);
    assert_eq!(gemini["attributes"][oi::SPAN_KIND], oi::LLM);
    // Anthropic: both `anthropic`; cache writes under prompt_details.cache_write.
    let anthropic = openinference("anthropic/messages_system_cache_control");
    assert_eq!(anthropic["attributes"][oi::PROVIDER], oi::ANTHROPIC);
    assert_eq!(anthropic["attributes"][oi::SYSTEM], oi::ANTHROPIC);
    assert_eq!(anthropic["attributes"][oi::CACHE_WRITE], 1733);
}

#[test]
fn openinference_reasoning_is_a_reasoning_content_part() {
    let span = openinference("anthropic/messages_thinking");
    let a = &span["attributes"];
    assert_eq!(
        a[oi::output(0, "message.contents.0.message_content.type")],
        "reasoning"
    );
    assert!(a[oi::output(0, "message.contents.0.message_content.text")]
        .as_str()
        .unwrap()
        .starts_with("Let me count the number of times the letter 'r'"));
    assert_eq!(
        a[oi::output(0, "message.contents.1.message_content.type")],
        "text"
    );
    assert_eq!(
        a[oi::output(0, "message.contents.1.message_content.text")],
        a[oi::output(0, "message.content")]
    );
}

#[test]
fn agentops_chat_has_agentops_names() {
    let span = agentops("openai/chat_plain");
    let a = &span["attributes"];
    assert_eq!(a[ao::SYSTEM], "openai");
    assert_eq!(a[ao::REQUEST_TYPE], ao::CHAT);
    assert_eq!(a[ao::PROMPT_TOKENS], 12);
    assert_eq!(a[ao::COMPLETION_TOKENS], 5);
    assert_eq!(a[ao::TOTAL_TOKENS], 17);
    assert_eq!(a[ao::FINISH_REASON], "stop");
    assert_eq!(a[ao::REQUEST_STREAMING], false);
    assert_eq!(a[ao::prompt(0, "role")], "user");
    assert_eq!(a[ao::prompt(0, "content")], "Say this is a test");
    assert_eq!(a[ao::completion(0, "content")], "This is a test.");
    assert_eq!(a[ao::completion(0, "finish_reason")], "stop");
    // Shared with the semantic conventions, so kept.
    assert_eq!(a["gen_ai.request.model"], "gpt-4o-mini");
    assert_eq!(
        a["gen_ai.response.id"],
        "chatcmpl-ASYMQRl3A3DXL9FWCK9tnGRcKIO7q"
    );
    for key in [
        "gen_ai.provider.name",
        "gen_ai.usage.input_tokens",
        "gen_ai.request.stream",
        "gen_ai.input.messages",
        "gen_ai.usage.audio.input_tokens",
    ] {
        assert!(a.get(key).is_none(), "{key}");
    }
}

#[test]
fn agentops_streamed_chat() {
    let span = agentops("openai/chat_stream_include_usage");
    let a = &span["attributes"];
    assert_eq!(a[ao::REQUEST_STREAMING], true);
    assert_eq!(a[ao::completion(0, "content")], "\"This is a test.\"");
    assert_eq!(a[ao::TOTAL_TOKENS], 17);
}

#[test]
fn agentops_tool_call_has_request_tools_and_functions() {
    let span = agentops("openai/chat_tool_calls");
    let a = &span["attributes"];
    assert_eq!(a[ao::tool(0, "name")], "get_current_weather");
    assert_eq!(a[ao::tool(0, "type")], "function");
    assert_eq!(
        a[ao::tool(0, "description")],
        "Get the current weather in a given location"
    );
    assert_eq!(
        json_text(&a[ao::tool(0, "arguments")])["required"],
        json!(["location"])
    );
    assert_eq!(
        json_text(&a[ao::REQUEST_FUNCTIONS]),
        json!(["get_current_weather"])
    );
    assert_eq!(
        a[ao::completion(0, "tool_calls.1.id")],
        "call_vaFQc3zK6hHTRZKXRI5Eo2cJ"
    );
    assert_eq!(
        a[ao::completion(0, "tool_calls.1.name")],
        "get_current_weather"
    );
    assert_eq!(a[ao::prompt(0, "role")], "system");
}

#[test]
fn agentops_embeddings_and_reasoning() {
    let embeddings = agentops("openai/embeddings");
    assert_eq!(embeddings["attributes"][ao::REQUEST_TYPE], ao::EMBEDDING);
    assert_eq!(embeddings["attributes"][ao::PROMPT_TOKENS], 6);
    let thinking = agentops("anthropic/messages_thinking");
    let a = &thinking["attributes"];
    assert!(a[ao::completion(0, "reasoning")]
        .as_str()
        .unwrap()
        .starts_with("Let me count"));
    assert!(!a[ao::completion(0, "content")]
        .as_str()
        .unwrap()
        .starts_with("Let me count"));
    assert_eq!(a[ao::CACHE_CREATION], 0);
    assert!(a.get(ao::REASONING_TOKENS).is_none());
}

#[test]
fn version_switch_renames_cache_writes() {
    let default = span_of(
        "anthropic/messages_system_cache_control",
        vec![Dialect::Semconv],
    );
    let newest = span_of("anthropic/messages_system_cache_control", latest());
    assert_eq!(
        default["attributes"]["gen_ai.usage.cache_creation.input_tokens"],
        1733
    );
    assert!(default["attributes"]
        .get("gen_ai.usage.cache_write.input_tokens")
        .is_none());
    assert_eq!(
        newest["attributes"]["gen_ai.usage.cache_write.input_tokens"],
        1733
    );
    assert!(newest["attributes"]
        .get("gen_ai.usage.cache_creation.input_tokens")
        .is_none());
    // Everything else is the same, messages included.
    let mut rest = newest["attributes"].as_object().unwrap().clone();
    rest.remove("gen_ai.usage.cache_write.input_tokens");
    let mut expected = default["attributes"].as_object().unwrap().clone();
    expected.remove("gen_ai.usage.cache_creation.input_tokens");
    assert_eq!(rest, expected);
}

#[test]
fn version_switch_adds_modality_token_counts() {
    // OpenAI: prompt_tokens_details.audio_tokens / completion_tokens_details.audio_tokens (0 here).
    let default = span_of("openai/chat_plain", vec![Dialect::Semconv]);
    let newest = span_of("openai/chat_plain", latest());
    assert!(keys_with(&default, "gen_ai.usage.audio").is_empty());
    assert_eq!(newest["attributes"]["gen_ai.usage.audio.input_tokens"], 0);
    assert_eq!(newest["attributes"]["gen_ai.usage.audio.output_tokens"], 0);
    assert_eq!(
        newest["attributes"]["gen_ai.usage.cache_read.input_tokens"],
        0
    );
    // Gemini: usageMetadata.promptTokensDetails[] by modality.
    let default = span_of(
        "gemini/stream_generate_content_thinking",
        vec![Dialect::Semconv],
    );
    let newest = span_of("gemini/stream_generate_content_thinking", latest());
    assert!(keys_with(&default, "gen_ai.usage.text").is_empty());
    assert_eq!(newest["attributes"]["gen_ai.usage.text.input_tokens"], 11);
}

#[test]
fn version_switch_adds_the_operation_exception_event() {
    let default = span_of("openai/chat_error_404_model", vec![Dialect::Semconv]);
    let newest = span_of("openai/chat_error_404_model", latest());
    let names = |span: &Json| -> Vec<String> {
        span["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&default), ["exception"]);
    assert_eq!(
        names(&newest),
        ["exception", "gen_ai.client.operation.exception"]
    );
    let event = &newest["events"][1]["attributes"];
    assert_eq!(event["exception.type"], "model_not_found");
    assert_eq!(
        event["exception.message"],
        "The model `this-model-does-not-exist` does not exist or you do not have access to it."
    );
}

#[test]
fn reading_a_stored_response_back_is_fetch_response_with_no_token_usage() {
    // GET /v1/responses/{id} returns the stored response (usage 22 in / 6 out): the answer, model
    // and finish reason are recorded, the tokens are not (the creating call reported them).
    for dialects in [vec![Dialect::Semconv], latest()] {
        let span = span_of("openai/responses_retrieve", dialects);
        let a = &span["attributes"];
        assert_eq!(span["name"], "fetch_response");
        assert_eq!(a["gen_ai.operation.name"], "fetch_response");
        assert_eq!(
            a["gen_ai.response.id"],
            "resp_0f4faba17dcd0f1e0069e2f3e4907881909179832ba1237025"
        );
        assert_eq!(a["gen_ai.response.model"], "gpt-4o-mini-2024-07-18");
        assert_eq!(a["gen_ai.response.finish_reasons"], json!(["stop"]));
        assert!(a["gen_ai.output.messages"]
            .as_str()
            .unwrap()
            .contains("This is a test."));
        assert!(keys_with(&span, "gen_ai.usage").is_empty(), "{a}");
    }
}

#[test]
fn version_switch_gives_embeddings_metrics_of_their_own() {
    let names = |output: &Json| -> Vec<String> {
        output["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap().to_string())
            .collect()
    };
    let default = extracted("openai/embeddings", vec![Dialect::Semconv]);
    assert_eq!(
        names(&default),
        ["gen_ai.client.token.usage", "gen_ai.client.operation.cost"]
    );
    assert_eq!(
        default["metrics"][0]["attributes"]["gen_ai.token.type"],
        "input"
    );
    let newest = extracted("openai/embeddings", latest());
    assert_eq!(
        names(&newest),
        [
            "gen_ai.client.embeddings.operation.input_tokens",
            "gen_ai.client.operation.cost"
        ]
    );
    assert_eq!(newest["metrics"][0]["value"], 6.0);
    assert!(newest["metrics"][0]["attributes"]
        .get("gen_ai.token.type")
        .is_none());
    // Chat keeps the standard names under the switch.
    let chat = extracted("openai/chat_plain", latest());
    assert_eq!(names(&chat)[0], "gen_ai.client.token.usage");
}

#[test]
fn the_opt_in_list_is_comma_separated_and_leaves_other_dialects() {
    let openinference = Dialect::named("openinference").unwrap();
    let latest_dialect = Dialect::named("gen_ai_latest_experimental").unwrap();
    assert_eq!(
        with_stability_opt_in(
            vec![Dialect::Semconv, openinference.clone()],
            Some("database , gen_ai_latest_experimental")
        )
        .unwrap(),
        vec![latest_dialect, openinference.clone()]
    );
    for setting in [
        None,
        Some(""),
        Some("gen_ai"),
        Some("gen_ai_latest_experimental_x"),
    ] {
        assert_eq!(
            with_stability_opt_in(vec![Dialect::Semconv], setting).unwrap(),
            vec![Dialect::Semconv],
            "{setting:?}"
        );
    }
}

#[test]
fn content_on_events_only_keeps_flattened_messages_off_the_span() {
    let dir = Path::new("tests/fixtures/openai/chat_plain");
    let request = std::fs::read(dir.join("request.json")).unwrap();
    let response = std::fs::read(dir.join("response.json")).unwrap();
    let exchange = Recorded {
        method: "POST",
        url: "https://api.openai.com/v1/chat/completions",
        status: 200,
        request: &request,
        response: &response,
        content_type: Some("application/json"),
        request_headers: &[],
        response_headers: &[],
    };
    let catalog = Catalog::load(&[PathBuf::from("providers")]).unwrap();
    let options = ExtractOptions::default()
        .with_dialects(vec![Dialect::named("openinference").unwrap()])
        .with_content(specter::ContentPolicy::default().with_capture(specter::Capture::EventOnly));
    let span = extract(&catalog, &exchange, &options).unwrap()["span"].clone();
    assert!(keys_with(&span, "llm.input_messages").is_empty());
    assert!(span["attributes"].get(oi::INPUT_VALUE).is_none());
    assert!(span["attributes"].get(oi::INPUT_MIME_TYPE).is_none());
    assert_eq!(span["attributes"][oi::TOKEN_COUNT_PROMPT], 12);
}

#[test]
fn dialect_files_are_checked_with_positions() {
    let err = Dialect::parse("x", "id: x\nrenmae: {}\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("2:1"), "{err}");
    let err = Dialect::parse(
        "x",
        "id: x\nderived:\n  - key: a\n    value: 1\n  - key: b\n    from: [c]\n    json: { d: e }\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("5:5") && err.contains("exactly one source"),
        "{err}"
    );
}

#[test]
fn committed_dialect_schema_matches_the_types() {
    let generated =
        serde_json::to_string_pretty(&specter::unstable::render::dialect::dialect_schema())
            .unwrap()
            + "\n";
    let committed = std::fs::read_to_string("schemas/dialect.schema.json").unwrap();
    assert!(
        generated == committed,
        "schemas/dialect.schema.json is stale: run `cargo run -- schema --dialect > schemas/dialect.schema.json`"
    );
}

#[test]
fn keep_semconv_adds_a_dialects_keys_to_the_semantic_conventions() {
    let both = Dialect::parse(
        "both",
        "id: both\nkeep_semconv: true\nrename:\n  gen_ai.provider.name: llm.provider\nderived:\n  - key: llm.system\n    from: [gen_ai.provider.name]\n    values: { aws.bedrock: aws }\n",
    )
    .unwrap();
    let span = span_of("bedrock/converse", vec![both]);
    let a = &span["attributes"];
    assert_eq!(a["gen_ai.provider.name"], "aws.bedrock");
    assert_eq!(a["llm.provider"], "aws.bedrock");
    assert_eq!(a["llm.system"], "aws");
    assert_eq!(a["gen_ai.usage.input_tokens"], 8);
    assert!(a["gen_ai.input.messages"].is_string());
    // What the default rendering has, this one has too.
    let default = span_of("bedrock/converse", vec![Dialect::Semconv]);
    for (key, value) in default["attributes"].as_object().unwrap() {
        assert_eq!(&a[key], value, "{key}");
    }
}

fn specter_extract(case: &str, envs: &[(&str, &str)], extra: &[&str]) -> Json {
    let dir = format!("tests/fixtures/{case}");
    let data = read_case(Path::new(&dir)).unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_specter"));
    command
        .args([
            "extract",
            "--url",
            &data.url,
            "--status",
            &data.status.to_string(),
            "--request",
            &format!("{dir}/request.json"),
            "--response",
            &data.response_path.display().to_string(),
        ])
        .args(extra)
        .env_remove("SPECTER_PROVIDERS")
        .env_remove("OTEL_SEMCONV_STABILITY_OPT_IN");
    for (k, v) in envs {
        command.env(k, v);
    }
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn specter_extract_honours_the_stability_opt_in() {
    let case = "anthropic/messages_system_cache_control";
    let default = specter_extract(case, &[], &[]);
    assert_eq!(
        default["span"]["attributes"]["gen_ai.usage.cache_creation.input_tokens"],
        1733
    );
    let newest = specter_extract(
        case,
        &[(
            "OTEL_SEMCONV_STABILITY_OPT_IN",
            "gen_ai_latest_experimental",
        )],
        &[],
    );
    assert_eq!(
        newest["span"]["attributes"]["gen_ai.usage.cache_write.input_tokens"],
        1733
    );
    assert!(newest["span"]["attributes"]
        .get("gen_ai.usage.cache_creation.input_tokens")
        .is_none());
    // The same by name.
    let named = specter_extract(case, &[], &["--dialect", "gen_ai_latest_experimental"]);
    assert_eq!(named["span"], newest["span"]);
    // The opt-in replaces the default names only: OpenInference stays OpenInference.
    let openinference = specter_extract(
        case,
        &[(
            "OTEL_SEMCONV_STABILITY_OPT_IN",
            "gen_ai_latest_experimental",
        )],
        &["--dialect", "openinference"],
    );
    assert_eq!(openinference["span"]["attributes"][oi::CACHE_WRITE], 1733);
    assert!(openinference["span"]["attributes"]
        .get("gen_ai.usage.cache_write.input_tokens")
        .is_none());
}

#[test]
fn specter_schema_prints_the_dialect_schema() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_specter"))
        .args(["schema", "--dialect"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        std::fs::read_to_string("schemas/dialect.schema.json").unwrap()
    );
}
