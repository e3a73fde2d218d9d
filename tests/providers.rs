//! Provider features most likely to break, checked on recorded fixtures with values worked out
//! from the fixture bodies (not from the snapshots): cache tokens, models taken from the URL,
//! provider-specific usage and reasoning fields, streams folded into the non-stream shape, and
//! errors inside a 200 stream.
//!
//! Each test loads the catalog from `providers/` and replays fixtures through
//! `specter::offline::extract` with the method, URL, status, content type and headers of their
//! `meta.yaml`, as `tests/fixtures.rs` does.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;

use serde_json::{json, Value as Json};
use specter::harness::cases::{read_case, CaseData};
use specter::offline::{extract, ExtractOptions};
use specter::Catalog;

/// One recorded exchange of `tests/fixtures/<provider>/<case>/`, read by the case reader of
/// `specter test`.
struct Fixture {
    name: String,
    data: CaseData,
}

impl Fixture {
    fn load(provider: &str, case: &str) -> Fixture {
        let dir = PathBuf::from("tests/fixtures").join(provider).join(case);
        let name = format!("{provider}/{case}");
        let data = read_case(&dir).unwrap_or_else(|e| panic!("{name}: {e}"));
        Fixture { name, data }
    }

    /// The request body as JSON.
    fn request_json(&self) -> Json {
        serde_json::from_slice(&self.data.request).unwrap()
    }

    /// The output of `specter extract` for this exchange with the specs in `providers/`.
    fn extract(&self, catalog: &Catalog) -> Json {
        extract(catalog, &self.data.recorded(), &ExtractOptions::default())
            .unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }
}

fn catalog() -> Catalog {
    Catalog::load(&[PathBuf::from("providers")]).unwrap()
}

/// Replays `tests/fixtures/<provider>/<case>/`.
fn run(catalog: &Catalog, provider: &str, case: &str) -> Json {
    Fixture::load(provider, case).extract(catalog)
}

/// The span attributes of an extraction.
fn attributes(output: &Json) -> &serde_json::Map<String, Json> {
    output["span"]["attributes"].as_object().unwrap()
}

/// A message attribute (`gen_ai.output.messages`, ...), parsed from its JSON text.
fn messages(output: &Json, key: &str) -> Json {
    let text = output["span"]["attributes"][key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {output:#}"));
    serde_json::from_str(text).unwrap()
}

/// The keys of the `gen_ai.usage.*` attributes.
/// The token count keys (the cost attributes left out).
fn usage_keys(output: &Json) -> Vec<&str> {
    attributes(output)
        .keys()
        .map(String::as_str)
        .filter(|k| k.starts_with("gen_ai.usage.") && !k.starts_with("gen_ai.usage.cost"))
        .collect()
}

#[test]
fn anthropic_cache_tokens_are_included_in_input_tokens() {
    let catalog = catalog();

    // usage: input_tokens 4, cache_read_input_tokens 1163, cache_creation_input_tokens 0,
    // output_tokens 202.
    let read = run(&catalog, "anthropic", "messages_prompt_cache_read");
    let a = attributes(&read);
    assert_eq!(a["gen_ai.usage.input_tokens"], 1167);
    assert_eq!(a["gen_ai.usage.cache_read.input_tokens"], 1163);
    assert_eq!(a["gen_ai.usage.cache_creation.input_tokens"], 0);
    assert_eq!(a["gen_ai.usage.output_tokens"], 202);
    assert_eq!(a["gen_ai.response.id"], "msg_01YGB3PuEANUSkLuzemhtNVF");
    assert_eq!(a["gen_ai.response.model"], "claude-3-5-sonnet-20240620");

    // usage: input_tokens 21, cache_creation_input_tokens 1733, cache_read_input_tokens 0,
    // output_tokens 561; the cache_control sits on the second system block.
    let created = run(&catalog, "anthropic", "messages_system_cache_control");
    let a = attributes(&created);
    assert_eq!(a["gen_ai.usage.input_tokens"], 1754);
    assert_eq!(a["gen_ai.usage.cache_creation.input_tokens"], 1733);
    assert_eq!(a["gen_ai.usage.cache_read.input_tokens"], 0);
    assert_eq!(a["gen_ai.usage.output_tokens"], 561);
    assert_eq!(a["gen_ai.request.model"], "claude-3-7-sonnet-20250219");
    assert_eq!(a["gen_ai.request.max_tokens"], 2048);
    let system = messages(&created, "gen_ai.system_instructions");
    let system = system.as_array().unwrap();
    assert_eq!(system.len(), 2, "both system blocks: {system:?}");
    assert_eq!(
        system[0],
        json!({"type": "text", "content": "You are an AI assistant tasked with analyzing literary works.\n"})
    );
    assert!(system[1]["content"]
        .as_str()
        .unwrap()
        .starts_with("Full Text of Novel <Pride and Prejudice>"));
}

#[test]
fn gemini_model_comes_from_the_path() {
    let catalog = catalog();
    let mut fixture = Fixture::load("gemini", "generate_content");
    assert_eq!(
        fixture.request_json().get("model"),
        None,
        "the body names no model"
    );
    let output = fixture.extract(&catalog);
    let a = attributes(&output);
    assert_eq!(output["span"]["name"], "generate_content gemini-2.0-flash");
    assert_eq!(a["gen_ai.request.model"], "gemini-2.0-flash");
    assert_eq!(a["gen_ai.provider.name"], "gcp.gemini");
    assert_eq!(a["gen_ai.operation.name"], "generate_content");
    assert_eq!(a["gen_ai.response.model"], "gemini-2.0-flash");
    assert_eq!(a["gen_ai.response.id"], "hNcEarPuMNa3qtsP7MHt4As");
    assert_eq!(a["gen_ai.usage.input_tokens"], 45);
    assert_eq!(a["gen_ai.usage.output_tokens"], 23);
    assert_eq!(a["gen_ai.response.finish_reasons"], json!(["STOP"]));

    // Another version prefix and model, and a tuned model: still read from the path.
    fixture.data.url =
        "https://generativelanguage.googleapis.com/v1/models/gemini-1.5-pro-002:generateContent"
            .into();
    let output = fixture.extract(&catalog);
    assert_eq!(
        output["span"]["name"],
        "generate_content gemini-1.5-pro-002"
    );
    assert_eq!(
        attributes(&output)["gen_ai.request.model"],
        "gemini-1.5-pro-002"
    );
    fixture.data.url =
        "https://generativelanguage.googleapis.com/v1beta/tunedModels/my-tuned-model:generateContent"
            .into();
    let output = fixture.extract(&catalog);
    assert_eq!(
        attributes(&output)["gen_ai.request.model"],
        "my-tuned-model"
    );
}

#[test]
fn bedrock_percent_encoded_model_ids_are_decoded() {
    let catalog = catalog();
    let fixture = Fixture::load("bedrock", "converse_tool_use");
    assert!(fixture
        .data
        .url
        .contains("/model/amazon.nova-micro-v1%3A0/converse"));
    let output = fixture.extract(&catalog);
    let a = attributes(&output);
    assert_eq!(output["operation"], "converse");
    assert_eq!(output["span"]["name"], "chat amazon.nova-micro-v1:0");
    assert_eq!(a["gen_ai.request.model"], "amazon.nova-micro-v1:0");
    assert_eq!(a["gen_ai.provider.name"], "aws.bedrock");
    assert_eq!(a["gen_ai.usage.input_tokens"], 415);
    assert_eq!(a["gen_ai.usage.output_tokens"], 190);
    assert_eq!(a["gen_ai.response.finish_reasons"], json!(["tool_use"]));
    let metric_models: Vec<&Json> = output["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["attributes"]["gen_ai.request.model"])
        .collect();
    assert!(!metric_models.is_empty());
    assert!(
        metric_models.iter().all(|m| *m == "amazon.nova-micro-v1:0"),
        "{metric_models:?}"
    );
}

#[test]
fn azure_deployment_path_gives_the_model() {
    let catalog = catalog();
    let mut fixture = Fixture::load("azure_openai", "chat");
    assert!(fixture
        .data
        .url
        .contains("/openai/deployments/openllmetry-testing/chat/completions"));

    // The recorded body names the deployment as its model too.
    let output = fixture.extract(&catalog);
    let a = attributes(&output);
    assert_eq!(a["gen_ai.provider.name"], "azure.ai.openai");
    assert_eq!(a["gen_ai.request.model"], "openllmetry-testing");
    assert_eq!(a["gen_ai.response.model"], "gpt-35-turbo");
    assert_eq!(
        a["gen_ai.response.id"],
        "chatcmpl-9HpbZPf84KZFiQG6fdY0KVtIwHyIa"
    );
    assert_eq!(a["gen_ai.usage.input_tokens"], 15);
    assert_eq!(a["gen_ai.usage.output_tokens"], 24);

    // Without `model` in the body, the deployment of the path is the model.
    let mut body = fixture.request_json();
    body.as_object_mut().unwrap().remove("model");
    fixture.data.request = serde_json::to_vec(&body).unwrap();
    let output = fixture.extract(&catalog);
    let a = attributes(&output);
    assert_eq!(output["span"]["name"], "chat openllmetry-testing");
    assert_eq!(a["gen_ai.request.model"], "openllmetry-testing");
    assert_eq!(a["gen_ai.provider.name"], "azure.ai.openai");

    // When the body names a model, it wins over the deployment (`test-deployment`).
    let embeddings = run(&catalog, "azure_openai", "embeddings");
    assert_eq!(attributes(&embeddings)["gen_ai.request.model"], "embedding");
}

#[test]
fn groq_usage_comes_from_x_groq() {
    let catalog = catalog();
    let fixture = Fixture::load("groq", "chat_stream");
    let body = String::from_utf8(fixture.data.response.clone()).unwrap();
    // The only usage object of the stream is the one under `x_groq` in the last chunk.
    assert_eq!(body.matches("\"usage\"").count(), 1);
    assert!(body.contains("\"x_groq\":{\"id\":\"req_01jmefve36eajb6c1x6k8ppv5m\",\"usage\""));
    let output = fixture.extract(&catalog);
    let a = attributes(&output);
    // x_groq.usage: prompt_tokens 18, completion_tokens 73, total_tokens 91.
    assert_eq!(a["gen_ai.usage.input_tokens"], 18);
    assert_eq!(a["gen_ai.usage.output_tokens"], 73);
    assert_eq!(
        usage_keys(&output),
        vec!["gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"]
    );
    assert_eq!(a["gen_ai.response.model"], "llama3-8b-8192");
    assert_eq!(
        a["gen_ai.response.id"],
        "chatcmpl-532a6640-2e18-4a4c-8406-8437a857ce48"
    );
    assert_eq!(a["gen_ai.response.finish_reasons"], json!(["stop"]));
    let token_metrics: Vec<(Json, Json)> = output["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["name"] == "gen_ai.client.token.usage")
        .map(|m| {
            (
                m["attributes"]["gen_ai.token.type"].clone(),
                m["value"].clone(),
            )
        })
        .collect();
    assert_eq!(
        token_metrics,
        vec![
            (json!("input"), json!(18.0)),
            (json!("output"), json!(73.0))
        ]
    );
}

#[test]
fn deepseek_reasoning_content_is_a_reasoning_part() {
    let catalog = catalog();

    let output = run(&catalog, "deepseek", "chat_reasoning");
    let a = attributes(&output);
    assert_eq!(a["gen_ai.usage.input_tokens"], 12);
    assert_eq!(a["gen_ai.usage.output_tokens"], 789);
    assert_eq!(a["gen_ai.usage.reasoning.output_tokens"], 415);
    assert_eq!(a["gen_ai.usage.cache_read.input_tokens"], 0);
    let out = messages(&output, "gen_ai.output.messages");
    let parts = out[0]["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 2, "{parts:?}");
    assert_eq!(parts[0]["type"], "reasoning");
    assert_eq!(
        parts[0]["content"],
        "Okay, the user is asking how to cross the street. Let me think about how to approach this. First, I need to make sure I cover all the essential steps clearly. Maybe start with finding a safe place to cross. Crosswalks and intersections are important here. I should mention looking for traffic lights or pedestrian signals.\n\nWait, what about places without crosswalks? Maybe advise them to choose a well-lit area with a clear view of traffic. Then, checking both directions for cars. But in some countries, traffic is on the left, so I should mention looking left and right, then left again, or something like that. Wait, maybe just say look both ways multiple times to be safe.\n\nOh, and making eye contact with drivers if possible. That's a good point. Also, stay visible, maybe avoid distractions like phones. Don't forget to walk, not run, and keep looking while crossing. What about if there's a button to press at the crosswalk? Maybe include that step. Also, explain different signals like the walking person and the hand signal. Maybe warn against crossing on a red hand or don't walk signal.\n\nWhat about situations where there's no traffic light? Like a stop sign? The pedestrian has the right of way there, but still need to be cautious. Also, remind them to watch for turning vehicles, even if they have the right of way. Maybe add something about using pedestrian bridges or tunnels if available. Oh, and be extra careful at night or in bad weather. Wear reflective clothing if possible.\n\nI should structure this step by step. Start with finding a safe spot, checking signals, looking both ways, making eye contact, staying focused, walking straight across, and continuing to look. Maybe include additional tips like using pedestrian infrastructure, being cautious at night, and following local laws. Also, emphasize not assuming drivers see you. Did I miss anything? Maybe jaywalking? Advise against it. Alright, I think that covers the basics. Need to present it clearly and concisely."
    );
    assert_eq!(parts[1]["type"], "text");
    let text = parts[1]["content"].as_str().unwrap();
    assert_eq!(text.chars().count(), 1568);
    assert!(text.starts_with("Crossing the street safely involves careful observation and "));
    assert!(text.ends_with("afety over speed, and stay alert until you've fully crossed."));
    assert_eq!(out[0]["finish_reason"], "stop");

    // The stream: 198 `delta.reasoning_content` pieces, then the answer.
    let output = run(&catalog, "deepseek", "chat_stream_reasoning");
    let a = attributes(&output);
    assert_eq!(a["gen_ai.request.stream"], true);
    assert_eq!(
        a["gen_ai.response.id"],
        "33be18fc-3842-486c-8c29-dd8e578f7f20"
    );
    assert_eq!(a["gen_ai.response.model"], "deepseek-reasoner");
    assert_eq!(a["gen_ai.usage.input_tokens"], 6);
    assert_eq!(a["gen_ai.usage.output_tokens"], 212);
    assert_eq!(a["gen_ai.usage.reasoning.output_tokens"], 198);
    assert_eq!(
        messages(&output, "gen_ai.output.messages"),
        json!([{
            "role": "assistant",
            "parts": [
                {"type": "reasoning", "content": "Hmm, the user just said \"Hello\". It's a simple greeting but I wonder if there's more to it.  \n\nThe message is very brief, so I don't have much context to work with. Maybe they're just testing if I'm responsive, or perhaps they're new to chatting with AI.  \n\nI should keep my reply warm and inviting to encourage further conversation. A smiley face would help make it friendly. Since they didn't specify a need, I'll leave it open-ended by asking how I can help them today.  \n\nThe tone should be cheerful but professional - not too stiff, not too casual. \"Hello there!\" feels right for a start. Adding \"What can I do for you today?\" turns it into an invitation rather than just mirroring their greeting.  \n\nI'll avoid assumptions about their gender, location, or intent since there's zero information. If they're just being polite, they might not reply further - and that's okay too."},
                {"type": "text", "content": "Hello there! 😊 How can I help you today?"}
            ],
            "finish_reason": "stop"
        }])
    );
}

#[test]
fn bedrock_converse_stream_matches_converse_shape() {
    let catalog = catalog();

    // The same request (titan-text-lite, "Say this is a test", maxTokens 10), answered once as
    // JSON and once as an event stream.
    let plain = run(&catalog, "bedrock", "converse");
    let stream = run(&catalog, "bedrock", "converse_stream");
    assert_eq!(plain["operation"], "converse");
    assert_eq!(stream["operation"], "converse_stream");
    // The GenAI attributes agree; a stream adds what it held (`specter.stream.*`).
    let keys = |o: &Json| -> Vec<String> {
        attributes(o)
            .keys()
            .filter(|k| !k.starts_with("specter."))
            .cloned()
            .collect()
    };
    assert_eq!(keys(&plain), keys(&stream));
    assert_eq!(attributes(&stream)["specter.stream.chunks"], 5);
    for (output, text) in [
        (&plain, "Hi, how can I help you"),
        (&stream, "I am here and ready to assist"),
    ] {
        let a = attributes(output);
        assert_eq!(a["gen_ai.request.model"], "amazon.titan-text-lite-v1");
        assert_eq!(a["gen_ai.request.max_tokens"], 10);
        assert_eq!(a["gen_ai.request.temperature"], 0.8);
        assert_eq!(a["gen_ai.request.top_p"], 1.0);
        assert_eq!(a["gen_ai.request.stop_sequences"], json!(["|"]));
        assert_eq!(a["gen_ai.usage.input_tokens"], 8);
        assert_eq!(a["gen_ai.usage.output_tokens"], 10);
        assert_eq!(a["gen_ai.response.finish_reasons"], json!(["max_tokens"]));
        assert_eq!(
            messages(output, "gen_ai.output.messages"),
            json!([{"role": "assistant", "parts": [{"type": "text", "content": text}],
                    "finish_reason": "length"}])
        );
    }

    // Tool use: text, then two tool calls whose `input` arrives as JSON text in the stream and
    // must be parsed like the object of the non-streamed answer.
    let plain = run(&catalog, "bedrock", "converse_tool_use");
    let stream = run(&catalog, "bedrock", "converse_stream_tool_use");
    assert_eq!(keys(&plain), keys(&stream));
    assert_eq!(attributes(&stream)["gen_ai.usage.input_tokens"], 415);
    assert_eq!(attributes(&stream)["gen_ai.usage.output_tokens"], 202);
    assert_eq!(
        attributes(&stream)["gen_ai.response.finish_reasons"],
        json!(["tool_use"])
    );
    assert_eq!(
        messages(&stream, "gen_ai.output.messages"),
        json!([{
            "role": "assistant",
            "parts": [
                {"type": "text", "content": "<thinking> The User has asked for the current weather in two different cities: Seattle and San Francisco. To provide this information, I will use the `get_current_weather` tool for each city. I need to call the tool twice, once for each city.</thinking>\n"},
                {"type": "tool_call", "id": "tooluse_JZ11QcxSQ3m3xacMQKVIKw", "name": "get_current_weather",
                 "arguments": {"location": "Seattle"}},
                {"type": "tool_call", "id": "tooluse_-hxBEEwGRc-VQqC2i7SFqg", "name": "get_current_weather",
                 "arguments": {"location": "San Francisco"}}
            ],
            "finish_reason": "tool_call"
        }])
    );
    assert_eq!(
        messages(&plain, "gen_ai.output.messages"),
        json!([{
            "role": "assistant",
            "parts": [
                {"type": "text", "content": "<thinking> To provide the weather information for both Seattle and San Francisco, I will use the `get_current_weather` tool for each city. I will start with Seattle and then proceed with San Francisco.</thinking>\n"},
                {"type": "tool_call", "id": "tooluse_tggNKJbGSrm48inRqf3Rvw", "name": "get_current_weather",
                 "arguments": {"location": "Seattle"}},
                {"type": "tool_call", "id": "tooluse_bRV9WIcFSxyrLY6-MVkZRA", "name": "get_current_weather",
                 "arguments": {"location": "San Francisco"}}
            ],
            "finish_reason": "tool_call"
        }])
    );
}

#[test]
fn anthropic_stream_tool_arguments_are_parsed() {
    let catalog = catalog();
    let output = run(&catalog, "anthropic", "messages_stream_tool_use");
    let a = attributes(&output);
    assert_eq!(a["gen_ai.response.id"], "msg_01JqiwuyYfmoZBJx1GLkqxLf");
    assert_eq!(a["gen_ai.response.model"], "claude-sonnet-4-6");
    // message_start: input 721, no cache; message_delta: output_tokens 113.
    assert_eq!(a["gen_ai.usage.input_tokens"], 721);
    assert_eq!(a["gen_ai.usage.output_tokens"], 113);
    assert_eq!(a["gen_ai.response.finish_reasons"], json!(["tool_use"]));
    // The arguments came as 12 `input_json_delta` pieces; they are objects, not text.
    assert_eq!(
        messages(&output, "gen_ai.output.messages"),
        json!([{
            "role": "assistant",
            "parts": [
                {"type": "text", "content": "I'll check both the current weather and time in New York simultaneously right away!"},
                {"type": "tool_call", "id": "toolu_01Mo5Ee5Yb7vrzaxSNS5DVuP", "name": "get_weather",
                 "arguments": {"location": "New York, NY"}},
                {"type": "tool_call", "id": "toolu_01GDAGw1KUdi1DCPPprMKGHR", "name": "get_time",
                 "arguments": {"timezone": "America/New_York"}}
            ],
            "finish_reason": "tool_call"
        }])
    );
}

#[test]
fn openai_stream_usage_needs_include_usage() {
    let catalog = catalog();

    // No `stream_options.include_usage`: no chunk carries usage, so no token attribute or
    // metric is invented.
    let fixture = Fixture::load("openai", "chat_stream_no_usage");
    assert_eq!(fixture.request_json().get("stream_options"), None);
    let output = fixture.extract(&catalog);
    let a = attributes(&output);
    assert_eq!(usage_keys(&output), Vec::<&str>::new());
    assert!(
        !output["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "gen_ai.client.token.usage"),
        "{:#}",
        output["metrics"]
    );
    assert_eq!(
        a["gen_ai.response.id"],
        "chatcmpl-908MECg5dMyTTbJEltubwQXeeWlBA"
    );
    assert_eq!(a["gen_ai.response.model"], "gpt-3.5-turbo-0125");
    assert_eq!(a["gen_ai.response.finish_reasons"], json!(["stop"]));
    assert_eq!(
        messages(&output, "gen_ai.output.messages"),
        json!([{"role": "assistant", "parts": [{"type": "text",
            "content": "Why did the opentelemetry developer go broke? \nBecause they kept trying to trace their steps back too far!"}],
            "finish_reason": "stop"}])
    );

    // With it, the last chunk's usage is read.
    let output = run(&catalog, "openai", "chat_stream_include_usage");
    let a = attributes(&output);
    assert_eq!(a["gen_ai.usage.input_tokens"], 12);
    assert_eq!(a["gen_ai.usage.output_tokens"], 5);
    assert_eq!(a["gen_ai.usage.cache_read.input_tokens"], 0);
    assert_eq!(a["gen_ai.usage.reasoning.output_tokens"], 0);
    assert_eq!(a["gen_ai.response.model"], "gpt-4-0613");
    assert_eq!(
        messages(&output, "gen_ai.output.messages"),
        json!([{"role": "assistant", "parts": [{"type": "text", "content": "\"This is a test.\""}],
            "finish_reason": "stop"}])
    );
}

#[test]
fn errors_inside_a_200_stream_mark_the_span() {
    let catalog = catalog();

    // OpenRouter: a chunk carrying `error: {code: 400, message: "Token limit reached"}` (and
    // the usage), then `[DONE]`.
    let output = run(&catalog, "openrouter", "chat_stream_midstream_error");
    let a = attributes(&output);
    assert_eq!(
        output["span"]["status"],
        json!({"code": "error", "message": "Token limit reached"})
    );
    assert_eq!(a["error.type"], "400");
    assert_eq!(
        output["span"]["events"],
        json!([{"name": "exception", "attributes": {
            "exception.type": "400", "exception.message": "Token limit reached"}}])
    );
    assert_eq!(
        a["gen_ai.response.id"],
        "gen-1762179802-UN8pkJI4AGZvryk0kFnb"
    );
    assert_eq!(a["gen_ai.usage.input_tokens"], 43);
    assert_eq!(a["gen_ai.usage.output_tokens"], 10);
    assert_eq!(a["gen_ai.usage.reasoning.output_tokens"], 11);
    // Two chunks say `finish_reason: length`; the error chunk's `null` does not erase it.
    assert_eq!(a["gen_ai.response.finish_reasons"], json!(["length"]));
    assert_eq!(
        messages(&output, "gen_ai.output.messages")[0]["parts"],
        json!([{"type": "reasoning", "content": "We need to respond to a greeting. The user"}])
    );

    // Groq: an `event: error` frame with `error.code: tool_use_failed` and no `[DONE]`.
    let output = run(&catalog, "groq", "chat_stream_midstream_error");
    let a = attributes(&output);
    let message = "Tool call validation failed: tool call validation failed: parameters for tool get_something_by_name did not match schema: errors: [missing properties: 'name', additionalProperties 'invalid_param' not allowed]";
    assert_eq!(
        output["span"]["status"],
        json!({"code": "error", "message": message})
    );
    assert_eq!(a["error.type"], "tool_use_failed");
    assert_eq!(
        output["span"]["events"],
        json!([{"name": "exception", "attributes": {
            "exception.type": "tool_use_failed", "exception.message": message}}])
    );
    assert_eq!(a["gen_ai.response.model"], "openai/gpt-oss-120b");
    // The stream stopped before any finish reason or usage.
    assert_eq!(a.get("gen_ai.response.finish_reasons"), None);
    assert_eq!(usage_keys(&output), Vec::<&str>::new());
    assert_eq!(
        messages(&output, "gen_ai.output.messages")[0]["parts"],
        json!([{"type": "reasoning", "content": "We need to call the tool with invalid parameters first, then second call with valid args. The user wants us to test error handling. So first call should have wrong parameters (e.g., missing required \"name\" or extra param). The tool expects only \"name\". If we send extra property, that might cause error. Or missing \"name\". We'll do a call with missing name: {}. Then second call with name: \"test\". Let's do that."}])
    );
}

#[test]
fn openai_responses_finish_reasons_come_from_status_and_output_items() {
    let catalog = catalog();
    // (case, what the body says, the finish reason it means)
    let cases = [
        // status completed, one `message` output item.
        ("responses_plain", "stop"),
        // status completed, a `reasoning` item then a `message` item.
        ("responses_reasoning", "stop"),
        // status completed, two `function_call` items.
        ("responses_tool_call", "tool_call"),
        // the final `response.completed` event: status completed, one `message` item.
        ("responses_stream", "stop"),
        // the final `response.completed` event: status completed, one `function_call` item.
        ("responses_stream_tool_call", "tool_call"),
        // the final `response.incomplete` event: incomplete_details.reason max_output_tokens.
        ("responses_stream_incomplete", "length"),
    ];
    for (case, reason) in cases {
        let output = run(&catalog, "openai", case);
        assert_eq!(
            attributes(&output)["gen_ai.response.finish_reasons"],
            json!([reason]),
            "{case}"
        );
        assert_eq!(
            messages(&output, "gen_ai.output.messages")[0]["finish_reason"],
            reason,
            "{case}"
        );
    }
    let output = run(&catalog, "openai", "responses_stream_incomplete");
    assert_eq!(
        messages(&output, "gen_ai.output.messages")[0]["parts"],
        json!([{"type": "text", "content": "Waves fold into foam,\nsalt wind carries gull cries\ntide pulls the moon"}])
    );
    assert_eq!(output["stream"]["completed"], true);
}

/// The text of a Gemini SSE body's parts, reasoning (`thought: true`) and answer apart, in order.
fn gemini_texts(body: &[u8]) -> (String, String) {
    let (mut thoughts, mut answer) = (String::new(), String::new());
    for line in std::str::from_utf8(body).unwrap().lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        let chunk: Json = serde_json::from_str(data).unwrap();
        for part in chunk["candidates"][0]["content"]["parts"]
            .as_array()
            .unwrap()
        {
            let text = part["text"].as_str().unwrap();
            if part["thought"] == true {
                thoughts.push_str(text);
            } else {
                answer.push_str(text);
            }
        }
    }
    (thoughts, answer)
}

#[test]
fn gemini_and_vertex_streams_keep_thoughts_apart_from_the_answer() {
    let catalog = catalog();
    let mut fixture = Fixture::load("gemini", "stream_generate_content_thinking");
    // Two chunks with `thought: true`, then 30 answer chunks without the flag; the last one is
    // an empty text part with a `thoughtSignature`.
    let (thoughts, answer) = gemini_texts(&fixture.data.response);
    assert!(thoughts.starts_with("**Defining the Narrative Parameters**"));
    assert!(answer.starts_with("Here is a cozy, calming bedtime story"));
    let expected = json!([{
        "role": "assistant",
        "parts": [
            {"type": "reasoning", "content": thoughts},
            {"type": "text", "content": answer}
        ],
        "finish_reason": "stop"
    }]);
    let output = fixture.extract(&catalog);
    assert_eq!(messages(&output, "gen_ai.output.messages"), expected);
    let a = attributes(&output);
    // usageMetadata of the last chunk: candidates 703 + thoughts 713.
    assert_eq!(a["gen_ai.usage.output_tokens"], 1416);
    assert_eq!(a["gen_ai.usage.reasoning.output_tokens"], 713);

    // The same chunks from Vertex AI, whose spec inherits the stream fold.
    fixture.data.url = "https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse".into();
    let output = fixture.extract(&catalog);
    assert_eq!(output["provider"], "vertexai");
    assert_eq!(messages(&output, "gen_ai.output.messages"), expected);
}

#[test]
fn bedrock_converse_reads_every_content_block() {
    let catalog = catalog();

    // The user's prompt is only `guardContent` blocks; the system prompt is a text block, a
    // `guardContent` block and a `cachePoint`.
    let output = run(&catalog, "bedrock", "converse_guard_content");
    assert_eq!(
        messages(&output, "gen_ai.input.messages"),
        json!([{"role": "user", "parts": [
            {"type": "text", "content": "The 2025 handbook grants 25 vacation days per year to full-time staff."},
            {"type": "text", "content": "How many vacation days do full-time staff get?"}
        ]}])
    );
    assert_eq!(
        messages(&output, "gen_ai.system_instructions"),
        json!([
            {"type": "text", "content": "Answer only from the handbook."},
            {"type": "text", "content": "Never disclose salaries."}
        ])
    );

    // Every documented block type, in block order; `cachePoint` holds no content, and a block
    // type no rule reads (`searchResult`) stays visible with its type.
    let fixture = Fixture::load("bedrock", "converse_content_blocks");
    let request = fixture.request_json();
    let first = &request["messages"][0]["content"];
    let output = fixture.extract(&catalog);
    assert_eq!(
        messages(&output, "gen_ai.input.messages"),
        json!([
            {"role": "user", "parts": [
                {"type": "text", "content": "Compare the chart, the report and the clip."},
                {"type": "blob", "modality": "image", "mime_type": "image/png",
                 "content": first[1]["image"]["source"]["bytes"]},
                {"type": "blob", "mime_type": "application/pdf",
                 "content": first[2]["document"]["source"]["bytes"]},
                {"type": "uri", "modality": "video", "mime_type": "video/mp4",
                 "uri": "s3://media-bucket/clips/q3.mp4"}
            ]},
            {"role": "assistant", "parts": [
                {"type": "reasoning", "content": "I need the latest figures first."},
                {"type": "reasoningContent"},
                {"type": "tool_call", "id": "tooluse_q3Figures01", "name": "get_figures",
                 "arguments": {"quarter": "Q3"}}
            ]},
            {"role": "user", "parts": [
                {"type": "tool_call_response", "id": "tooluse_q3Figures01",
                 "response": [{"json": {"revenue": 1_200_000, "growth": 0.08}}]},
                {"type": "searchResult"}
            ]}
        ])
    );

    // InvokeModel with a Nova body shares the image rule: the same image block, the same blob.
    let mut nova = Fixture::load("bedrock", "invoke_model_nova");
    let mut body = nova.request_json();
    body["messages"][0]["content"]
        .as_array_mut()
        .unwrap()
        .push(first[1].clone());
    nova.data.request = serde_json::to_vec(&body).unwrap();
    let output = nova.extract(&catalog);
    assert_eq!(
        messages(&output, "gen_ai.input.messages")[0]["parts"][1],
        json!({"type": "blob", "modality": "image", "mime_type": "image/png",
               "content": first[1]["image"]["source"]["bytes"]})
    );
}

#[test]
fn openai_inline_data_url_images_are_blobs() {
    let catalog = catalog();
    let fixture = Fixture::load("openai", "chat_image_data_url");
    let request = fixture.request_json();
    let url = request["messages"][0]["content"][1]["image_url"]["url"]
        .as_str()
        .unwrap();
    let data = url.strip_prefix("data:image/png;base64,").unwrap();
    let output = fixture.extract(&catalog);
    assert_eq!(
        messages(&output, "gen_ai.input.messages"),
        json!([{"role": "user", "parts": [
            {"type": "text", "content": "Which of these two images is brighter?"},
            {"type": "blob", "modality": "image", "mime_type": "image/png", "content": data},
            {"type": "uri", "modality": "image",
             "uri": "https://upload.wikimedia.org/wikipedia/commons/4/47/PNG_transparency_demonstration_1.png"}
        ]}])
    );
}

#[test]
fn mistral_embeddings_record_the_response_id() {
    let catalog = catalog();
    let output = run(&catalog, "mistral", "embeddings");
    let a = attributes(&output);
    assert_eq!(a["gen_ai.response.id"], "cc93a06d10244e07a4b2604c20855c61");
    assert_eq!(a["gen_ai.operation.name"], "embeddings");
    // OpenAI's embeddings reply has no id: none is invented.
    let output = run(&catalog, "openai", "embeddings");
    assert_eq!(attributes(&output).get("gen_ai.response.id"), None);
}

#[test]
fn a_message_rule_selecting_null_or_text_gives_no_message() {
    let catalog = catalog();
    // Cohere's 400 reply: `message` is the error text, not a message object.
    let mut fixture = Fixture::load("cohere", "chat_v2_error_400");
    let output = fixture.extract(&catalog);
    assert_eq!(output["span"]["status"]["code"], "error");
    assert_eq!(attributes(&output).get("gen_ai.output.messages"), None);
    // `message: null` and no `message` at all read the same: no message.
    for body in [
        json!({"id": "3f6c2a1e", "message": null, "finish_reason": "ERROR"}),
        json!({"id": "3f6c2a1e", "finish_reason": "ERROR"}),
    ] {
        fixture.data.status = 200;
        fixture.data.response = serde_json::to_vec(&body).unwrap();
        let output = fixture.extract(&catalog);
        assert_eq!(
            attributes(&output).get("gen_ai.output.messages"),
            None,
            "{body}"
        );
        assert_eq!(attributes(&output)["gen_ai.response.id"], "3f6c2a1e");
    }
}
