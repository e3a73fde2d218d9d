//! 4. Folding: the rebuilt response does not depend on the split, and holds what was streamed.

use super::*;

pub(crate) fn fold_pieces(
    op: &Operation,
    request: &Json,
    pieces: &[&[u8]],
    cap: usize,
) -> FoldOutcome {
    let stream = op.stream.as_ref().unwrap();
    let mut deframer = Deframer::new(stream.framing);
    let mut folder = Folder::new(cap);
    let mut frames = Vec::new();
    for piece in pieces {
        deframer.push(piece, &mut frames);
        for frame in frames.drain(..) {
            folder.frame(stream, request, &frame);
        }
    }
    deframer.finish(&mut frames);
    for frame in frames.drain(..) {
        folder.frame(stream, request, &frame);
    }
    folder.finish(stream, request)
}

/// Folds `body` whole, cut at `cuts` and byte by byte; all three must agree. Returns the first.
pub(crate) fn fold_every_way(
    op: &Operation,
    request: &Json,
    body: &[u8],
    cuts: &[Index],
) -> Result<FoldOutcome, TestCaseError> {
    let whole = fold_pieces(op, request, &[body], DEFAULT_TEXT_CAP);
    let pieces = split(body, cuts);
    prop_assert_eq!(
        &fold_pieces(op, request, &pieces, DEFAULT_TEXT_CAP),
        &whole,
        "cut at {:?}",
        pieces.iter().map(|p| p.len()).collect::<Vec<_>>()
    );
    let bytewise: Vec<&[u8]> = body.chunks(1).collect();
    prop_assert_eq!(
        &fold_pieces(op, request, &bytewise, DEFAULT_TEXT_CAP),
        &whole,
        "byte by byte"
    );
    Ok(whole)
}

/// Text deltas: printable text, any text, and strings that look like framing.
pub(crate) fn arb_delta() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "\\PC{0,10}",
        1 => any::<String>(),
        1 => select(&["", "\n", "\r\n", "data: [DONE]\n\n", "[DONE]", "\"", "\\", "é😀", "}]"][..])
            .prop_map(str::to_string),
    ]
    .boxed()
}

/// `text` cut into fragments at the given char positions.
pub(crate) fn fragments(text: &str, cuts: &[Index]) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(chars.len() + 1)).collect();
    at.push(0);
    at.push(chars.len());
    at.sort_unstable();
    // Duplicate cut points are kept: they make empty fragments, which must append nothing.
    at.windows(2)
        .map(|w| chars[w[0]..w[1]].iter().collect())
        .collect()
}

#[derive(Debug, Clone)]
pub(crate) struct OpenAiTool {
    index: usize,
    id: Option<String>,
    name: Option<String>,
    args: String,
}

#[derive(Debug, Clone)]
pub(crate) struct OpenAiDelta {
    choice: usize,
    role: Option<String>,
    content: Option<String>,
    tool: Option<OpenAiTool>,
    finish: Option<String>,
}

pub(crate) fn arb_openai_delta() -> BoxedStrategy<OpenAiDelta> {
    let tool = (
        0usize..3,
        prop::option::of("call_[a-z0-9]{1,6}"),
        prop::option::of("[a-z_]{1,8}"),
        arb_delta(),
    )
        .prop_map(|(index, id, name, args)| OpenAiTool {
            index,
            id,
            name,
            args,
        });
    (
        0usize..3,
        prop::option::weighted(
            0.2,
            select(&["assistant", "tool", ""][..]).prop_map(str::to_string),
        ),
        prop::option::of(arb_delta()),
        prop::option::weighted(0.4, tool),
        prop::option::weighted(
            0.15,
            select(&["stop", "length", "tool_calls", "content_filter"][..])
                .prop_map(str::to_string),
        ),
    )
        .prop_map(|(choice, role, content, tool, finish)| OpenAiDelta {
            choice,
            role,
            content,
            tool,
            finish,
        })
        .boxed()
}

pub(crate) fn openai_chunk(d: &OpenAiDelta) -> Json {
    let mut delta = Map::new();
    if let Some(role) = &d.role {
        delta.insert("role".into(), json!(role));
    }
    delta.insert(
        "content".into(),
        d.content.clone().map_or(Json::Null, Json::String),
    );
    if let Some(t) = &d.tool {
        let mut call = Map::new();
        call.insert("index".into(), json!(t.index));
        if let Some(id) = &t.id {
            call.insert("id".into(), json!(id));
            call.insert("type".into(), json!("function"));
        }
        let mut function = Map::new();
        if let Some(name) = &t.name {
            function.insert("name".into(), json!(name));
        }
        function.insert("arguments".into(), json!(t.args));
        call.insert("function".into(), Json::Object(function));
        delta.insert("tool_calls".into(), json!([call]));
    }
    json!({
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini",
        "system_fingerprint": "fp_1",
        "choices": [{"index": d.choice, "delta": delta, "logprobs": null, "finish_reason": d.finish}],
    })
}

pub(crate) fn sse_body(chunks: &[(Option<&str>, Json)], eol: &str, done: Option<&str>) -> Vec<u8> {
    let mut text = String::new();
    for (event, chunk) in chunks {
        if let Some(e) = event {
            text.push_str(&format!("event: {e}{eol}"));
        }
        text.push_str(&format!(
            "data: {}{eol}{eol}",
            serde_json::to_string(chunk).unwrap()
        ));
    }
    if let Some(done) = done {
        text.push_str(&format!("data: {done}{eol}{eol}"));
    }
    text.into_bytes()
}

proptest! {
    #![proptest_config(config(512))]

    /// OpenAI chat chunks: content deltas, tool-call fragments, finish reasons and usage fold
    /// into the choices of a non-streamed response, the same however the bytes are split.
    #[test]
    fn openai_chat_stream_folds_to_its_deltas(
        deltas in prop::collection::vec(arb_openai_delta(), 0..12),
        usage in prop::option::of((0u32..100_000, 0u32..100_000)),
        ending in 0usize..3,
        cuts in prop::collection::vec(any::<Index>(), 0..24),
    ) {
        let op = op("openai/chat");
        let request = json!({"model": "gpt-4o-mini", "stream": true, "messages": []});
        let mut chunks: Vec<(Option<&str>, Json)> = deltas.iter().map(|d| (None, openai_chunk(d))).collect();
        if let Some((p, c)) = usage {
            chunks.push((None, json!({"id": "chatcmpl-1", "model": "gpt-4o-mini", "choices": [],
                "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}})));
        }
        let body = sse_body(&chunks, ["\n", "\r\n", "\r"][ending], Some("[DONE]"));
        let outcome = fold_every_way(&op, &request, &body, &cuts)?;
        prop_assert!(outcome.done);
        prop_assert_eq!(outcome.chunks, chunks.len() as u64);
        prop_assert_eq!(outcome.skipped, 0);
        prop_assert!(!outcome.truncated);
        let r = &outcome.response;
        if !chunks.is_empty() {
            prop_assert_eq!(&r["id"], &json!("chatcmpl-1"));
            prop_assert_eq!(&r["model"], &json!("gpt-4o-mini"));
        }
        let choices = deltas.iter().map(|d| d.choice + 1).max().unwrap_or(0);
        for c in 0..choices {
            let mine: Vec<&OpenAiDelta> = deltas.iter().filter(|d| d.choice == c).collect();
            let choice = &r["choices"][c];
            if mine.is_empty() {
                prop_assert!(choice.is_null(), "choice {} never streamed: {}", c, choice);
                continue;
            }
            prop_assert_eq!(&choice["index"], &json!(c));
            let contents: Vec<&str> = mine.iter().filter_map(|d| d.content.as_deref()).collect();
            let expected = if contents.is_empty() { Json::Null } else { json!(contents.concat()) };
            prop_assert_eq!(&choice["message"]["content"], &expected, "choice {} content", c);
            let role = mine.iter().find_map(|d| d.role.clone()).map_or(Json::Null, Json::String);
            prop_assert_eq!(&choice["message"]["role"], &role);
            let finish = mine.iter().rev().find_map(|d| d.finish.clone()).map_or(Json::Null, Json::String);
            prop_assert_eq!(&choice["finish_reason"], &finish);
            for t in 0..3 {
                let calls: Vec<&OpenAiTool> = mine.iter().filter_map(|d| d.tool.as_ref()).filter(|x| x.index == t).collect();
                let slot = &choice["message"]["tool_calls"][t];
                if calls.is_empty() {
                    prop_assert!(slot.is_null());
                    continue;
                }
                let args: String = calls.iter().map(|x| x.args.as_str()).collect();
                prop_assert_eq!(&slot["function"]["arguments"], &json!(args), "choice {} tool {}", c, t);
                let id = calls.iter().find_map(|x| x.id.clone()).map_or(Json::Null, Json::String);
                prop_assert_eq!(&slot["id"], &id);
                let name = calls.iter().find_map(|x| x.name.clone()).map_or(Json::Null, Json::String);
                prop_assert_eq!(&slot["function"]["name"], &name);
            }
        }
        match usage {
            Some((p, c)) => prop_assert_eq!(&r["usage"], &json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c})),
            None => prop_assert!(r["usage"].is_null()),
        }

        // End to end: the span's finish reasons are those of the choices, in index order.
        let exchange = Exchange {
            method: "POST".into(),
            url: "https://api.openai.com/v1/chat/completions".into(),
            status: 200,
            request: serde_json::to_vec(&request).unwrap(),
            response: body,
            content_type: Some("text/event-stream".into()),
            response_headers: vec![],
        };
        let out = run_extract(&exchange, &ExtractOptions::default(), "openai")?;
        let finishes: Vec<Json> = (0..choices)
            .filter_map(|c| deltas.iter().rev().filter(|d| d.choice == c).find_map(|d| d.finish.clone()))
            .map(Json::String)
            .collect();
        let attribute = &out["span"]["attributes"]["gen_ai.response.finish_reasons"];
        if finishes.is_empty() {
            prop_assert!(attribute.is_null(), "{}", attribute);
        } else {
            prop_assert_eq!(attribute, &Json::Array(finishes));
        }
        if chunks.is_empty() {
            prop_assert!(out["stream"].is_null(), "{}", out["stream"]);
        } else {
            prop_assert_eq!(&out["stream"]["chunks"], &json!(chunks.len()));
            prop_assert_eq!(&out["stream"]["completed"], &json!(true));
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Block {
    Text(Vec<String>),
    Thinking(Vec<String>, String),
    Tool {
        id: String,
        name: String,
        input: Json,
        cuts: Vec<Index>,
    },
}

pub(crate) fn arb_block() -> BoxedStrategy<Block> {
    prop_oneof![
        3 => prop::collection::vec(arb_delta(), 1..6).prop_map(Block::Text),
        1 => (prop::collection::vec(arb_delta(), 1..4), "[A-Za-z0-9+/=]{0,12}")
            .prop_map(|(t, s)| Block::Thinking(t, s)),
        2 => ("toolu_[a-z0-9]{1,6}", "[a-z_]{1,8}", arb_exact_object(), prop::collection::vec(any::<Index>(), 0..6))
            .prop_map(|(id, name, input, cuts)| Block::Tool { id, name, input, cuts }),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(config(384))]

    /// Anthropic message events: text, thinking and `input_json_delta` fragments rebuild the
    /// content blocks of a non-streamed Message (tool input parsed back to the object sent).
    #[test]
    fn anthropic_stream_folds_to_its_blocks(
        blocks in prop::collection::vec(arb_block(), 0..5),
        pings in prop::collection::vec(any::<bool>(), 8),
        stop in select(&["end_turn", "max_tokens", "tool_use", "stop_sequence"][..]),
        tokens in (0u32..100_000, 0u32..100_000),
        crlf in any::<bool>(),
        cuts in prop::collection::vec(any::<Index>(), 0..24),
    ) {
        let op = op("anthropic/messages");
        let request = json!({"model": "claude-x", "stream": true, "messages": []});
        let mut events: Vec<Json> = vec![json!({"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [], "stop_reason": null, "usage": {"input_tokens": tokens.0, "output_tokens": 1}}})];
        let mut expected = Vec::new();
        for (i, block) in blocks.iter().enumerate() {
            if pings[i % pings.len()] {
                events.push(json!({"type": "ping"}));
            }
            let (start, deltas, rebuilt): (Json, Vec<Json>, Json) = match block {
                Block::Text(parts) => (
                    json!({"type": "text", "text": ""}),
                    parts.iter().map(|t| json!({"type": "text_delta", "text": t})).collect(),
                    json!({"type": "text", "text": parts.concat()}),
                ),
                Block::Thinking(parts, signature) => {
                    let mut d: Vec<Json> = parts.iter().map(|t| json!({"type": "thinking_delta", "thinking": t})).collect();
                    d.push(json!({"type": "signature_delta", "signature": signature}));
                    (
                        json!({"type": "thinking", "thinking": "", "signature": ""}),
                        d,
                        json!({"type": "thinking", "thinking": parts.concat(), "signature": signature}),
                    )
                }
                Block::Tool { id, name, input, cuts } => {
                    let text = serde_json::to_string(input).unwrap();
                    (
                        json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                        fragments(&text, cuts).into_iter().map(|f| json!({"type": "input_json_delta", "partial_json": f})).collect(),
                        json!({"type": "tool_use", "id": id, "name": name, "input": input}),
                    )
                }
            };
            events.push(json!({"type": "content_block_start", "index": i, "content_block": start}));
            for d in deltas {
                events.push(json!({"type": "content_block_delta", "index": i, "delta": d}));
            }
            events.push(json!({"type": "content_block_stop", "index": i}));
            expected.push(rebuilt);
        }
        events.push(json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": tokens.1}}));
        events.push(json!({"type": "message_stop"}));
        let chunks: Vec<(Option<&str>, Json)> = events.iter().map(|e| (e["type"].as_str(), e.clone())).collect();
        let body = sse_body(&chunks, if crlf { "\r\n" } else { "\n" }, None);
        let outcome = fold_every_way(&op, &request, &body, &cuts)?;
        prop_assert!(outcome.done);
        prop_assert_eq!(outcome.skipped, 0);
        let r = &outcome.response;
        if expected.is_empty() {
            // A stream without content blocks leaves `content` out (a non-streamed Message has
            // `content: []`); the response rules treat both alike.
            prop_assert!(r["content"].is_null(), "{}", r["content"]);
        } else {
            prop_assert_eq!(&r["content"], &Json::Array(expected.clone()));
        }
        prop_assert_eq!(&r["id"], &json!("msg_1"));
        prop_assert_eq!(&r["role"], &json!("assistant"));
        prop_assert_eq!(&r["stop_reason"], &json!(stop));
        prop_assert_eq!(&r["usage"], &json!({"input_tokens": tokens.0, "output_tokens": tokens.1}));
    }

    /// Bedrock ConverseStream (AWS event stream): text and tool-input fragments rebuild the
    /// Converse response.
    #[test]
    fn bedrock_converse_stream_folds_to_its_blocks(
        blocks in prop::collection::vec(arb_block().prop_filter("text or tool", |b| !matches!(b, Block::Thinking(..))), 0..5),
        stop in select(&["end_turn", "max_tokens", "tool_use"][..]),
        tokens in (0u32..100_000, 0u32..100_000),
        cuts in prop::collection::vec(any::<Index>(), 0..24),
    ) {
        let op = op("bedrock/converse_stream");
        let request = json!({"messages": []});
        let mut events: Vec<(&str, Json)> = vec![("messageStart", json!({"role": "assistant"}))];
        let mut expected = Vec::new();
        for (i, block) in blocks.iter().enumerate() {
            match block {
                Block::Text(parts) => {
                    for t in parts {
                        events.push(("contentBlockDelta", json!({"contentBlockIndex": i, "delta": {"text": t}})));
                    }
                    expected.push(json!({"text": parts.concat()}));
                }
                Block::Tool { id, name, input, cuts } => {
                    events.push(("contentBlockStart", json!({"contentBlockIndex": i, "start": {"toolUse": {"toolUseId": id, "name": name}}})));
                    let text = serde_json::to_string(input).unwrap();
                    for f in fragments(&text, cuts) {
                        events.push(("contentBlockDelta", json!({"contentBlockIndex": i, "delta": {"toolUse": {"input": f}}})));
                    }
                    expected.push(json!({"toolUse": {"toolUseId": id, "name": name, "input": input}}));
                }
                Block::Thinking(..) => unreachable!(),
            }
            events.push(("contentBlockStop", json!({"contentBlockIndex": i})));
        }
        events.push(("messageStop", json!({"stopReason": stop})));
        let usage = json!({"inputTokens": tokens.0, "outputTokens": tokens.1, "totalTokens": tokens.0 + tokens.1});
        events.push(("metadata", json!({"usage": usage, "metrics": {"latencyMs": 12}})));
        let body: Vec<u8> = events
            .iter()
            .flat_map(|(name, payload)| encode_event_message(
                &[(":event-type", name), (":content-type", "application/json"), (":message-type", "event")],
                &serde_json::to_vec(payload).unwrap(),
            ))
            .collect();
        let outcome = fold_every_way(&op, &request, &body, &cuts)?;
        prop_assert!(outcome.done);
        prop_assert_eq!(outcome.chunks, events.len() as u64);
        let r = &outcome.response;
        prop_assert_eq!(&r["output"]["message"]["role"], &json!("assistant"));
        let content = &r["output"]["message"]["content"];
        if expected.is_empty() {
            prop_assert!(content.is_null(), "{}", content);
        } else {
            prop_assert_eq!(content, &Json::Array(expected));
        }
        prop_assert_eq!(&r["stopReason"], &json!(stop));
        prop_assert_eq!(&r["usage"], &usage);
    }

    /// Gemini chunks (as SSE, and as one streamed JSON array): consecutive text parts coalesce
    /// into one part holding the concatenated text.
    #[test]
    fn gemini_stream_folds_to_its_text(
        deltas in prop::collection::vec((arb_delta(), any::<bool>()), 1..10),
        finish in select(&["STOP", "MAX_TOKENS", "SAFETY"][..]),
        as_array in any::<bool>(),
        cuts in prop::collection::vec(any::<Index>(), 0..24),
    ) {
        let op = op(if as_array { "gemini/stream_generate_content_json" } else { "gemini/stream_generate_content" });
        let request = json!({"contents": []});
        let last = deltas.len() - 1;
        let chunks: Vec<Json> = deltas
            .iter()
            .enumerate()
            .map(|(i, (text, with_index))| {
                let mut candidate = json!({"content": {"role": "model", "parts": [{"text": text}]}});
                if *with_index {
                    candidate["index"] = json!(0);
                }
                let mut chunk = json!({"candidates": [candidate], "modelVersion": "gemini-x", "responseId": "r1"});
                if i == last {
                    chunk["candidates"][0]["finishReason"] = json!(finish);
                    chunk["usageMetadata"] = json!({"promptTokenCount": 3, "candidatesTokenCount": 5});
                }
                chunk
            })
            .collect();
        let body = if as_array {
            serde_json::to_vec_pretty(&chunks).unwrap()
        } else {
            let c: Vec<(Option<&str>, Json)> = chunks.iter().map(|c| (None, c.clone())).collect();
            sse_body(&c, "\r\n", None)
        };
        let outcome = fold_every_way(&op, &request, &body, &cuts)?;
        prop_assert_eq!(outcome.chunks, chunks.len() as u64);
        let r = &outcome.response;
        let text: String = deltas.iter().map(|(t, _)| t.as_str()).collect();
        prop_assert_eq!(&r["candidates"][0]["content"]["parts"], &json!([{"text": text}]));
        prop_assert_eq!(&r["candidates"][0]["content"]["role"], &json!("model"));
        prop_assert_eq!(&r["candidates"][0]["finishReason"], &json!(finish));
        prop_assert_eq!(&r["usageMetadata"]["candidatesTokenCount"], &json!(5));
        prop_assert_eq!(&r["modelVersion"], &json!("gemini-x"));
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Bounded memory
