"""The official OpenAI and Anthropic Python SDKs through `specter serve`.

A mock upstream (mock_upstream.py, a subprocess) replays the recorded fixtures; the gateway (the
real binary, a subprocess) forwards to it and writes its spans to an OTLP JSON-lines file. Each
test makes one SDK call through its own gateway and checks that the SDK got exactly what the
fixture holds, and that the traces file holds exactly one span describing that call. A few tests
use a plain HTTP client instead, to check the bytes and timing on the wire.
"""

from __future__ import annotations

import collections
import gzip
import http.client
import json
import secrets
import time

import pytest

from conftest import (
    FIXTURES,
    attributes,
    load_fixture,
    read_spans,
    sse_data,
    start_gateway,
    wait_for_spans,
)
from mock_upstream import EVENT_PAUSE, sse_events

try:
    import openai
except ImportError as e:  # the test fails (not skips) below
    openai = None
    OPENAI_IMPORT_ERROR = e
try:
    import anthropic
except ImportError as e:
    anthropic = None
    ANTHROPIC_IMPORT_ERROR = e

# A recognisable key that must never reach the traces file or the gateway's stderr.
API_KEY = "sk-test-" + secrets.token_hex(16)

SPAN_KIND_CLIENT = 3
STATUS_CODE_ERROR = 2


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture
def gateway(mock_upstream, tmp_path):
    gw = start_gateway(tmp_path, {"openai": mock_upstream.url, "anthropic": mock_upstream.url})
    yield gw
    gw.stop()


# A missing SDK gives a client of None, and `sdk()` in the test body turns that into a FAILED test
# (failing in the fixture would report an ERROR instead).


@pytest.fixture
def openai_client(gateway):
    if openai is None:
        yield None
        return
    client = openai.OpenAI(api_key=API_KEY, base_url=f"{gateway.url}/openai/v1", max_retries=0, timeout=30)
    yield client
    client.close()


@pytest.fixture
def anthropic_client(gateway):
    if anthropic is None:
        yield None
        return
    client = anthropic.Anthropic(api_key=API_KEY, base_url=f"{gateway.url}/anthropic", max_retries=0, timeout=30)
    yield client
    client.close()


def sdk(client, name: str):
    if client is None:
        error = OPENAI_IMPORT_ERROR if name == "openai" else ANTHROPIC_IMPORT_ERROR
        pytest.fail(f"the {name} SDK is not installed ({error}): pip install -r tests/python/requirements.txt")
    return client


# ---------------------------------------------------------------------------------------------
# Helpers


def last_upstream_request(mock_upstream, path: str) -> dict:
    requests = mock_upstream.requests()
    assert requests, "the mock upstream received no request"
    last = requests[-1]
    assert last["path"] == path, f"the upstream got {last['method']} {last['path']}, expected POST {path}"
    return last


def check_forwarded(request: dict, *, fixture: str, gzipped: bool, model: str) -> None:
    """What the upstream received: the SDK's request, credentials included, and the body the
    fixture answers (gzipped when the SDK accepts gzip, which the SDKs do)."""
    assert request["fixture"] == fixture
    assert request["body"]["model"] == model
    credentials = request["headers"].get("x-api-key", "") + request["headers"].get("authorization", "")
    assert API_KEY in credentials, f"the API key did not reach the upstream: {request['headers']}"
    assert request["gzipped"] is gzipped, f"accept-encoding was {request['headers'].get('accept-encoding')!r}"


def the_only_span(gateway) -> dict:
    """Waits for the span through the periodic flush, stops the gateway (SIGTERM: flush and exit
    0), then reads the file again: it must hold exactly one span, and no trace of the API key."""
    wait_for_spans(gateway.traces, 1)
    code = gateway.stop()
    assert code == 0, f"specter serve exited with {code} on SIGTERM\n{gateway.stderr()}"
    text = gateway.traces.read_text()
    assert API_KEY not in text, "the API key appears in the traces file"
    assert API_KEY not in gateway.stderr(), "the API key appears on the gateway's stderr"
    spans = read_spans(gateway.traces)
    assert len(spans) == 1, f"expected exactly one span, got {[s['name'] for s in spans]}"
    assert "stopped (1 call(s), 1 span(s) ended; 1 span(s) exported, 0 lost to export failures, 0 dropped by a full queue)" in gateway.stderr(), gateway.stderr()
    return spans[0]


def check_span(
    span: dict,
    *,
    provider: str,
    request_model: str,
    response_model: str,
    response_id: str,
    input_tokens: int,
    output_tokens: int,
    finish_reasons: list[str],
    stream: bool,
) -> dict:
    a = attributes(span)
    problems = []

    def expect(what, got, wanted):
        if got != wanted:
            problems.append(f"{what}: expected {wanted!r}, got {got!r}")

    expect("span name", span["name"], f"chat {request_model}")
    expect("span kind", span.get("kind"), SPAN_KIND_CLIENT)
    expect("gen_ai.operation.name", a.get("gen_ai.operation.name"), "chat")
    expect("gen_ai.provider.name", a.get("gen_ai.provider.name"), provider)
    expect("gen_ai.request.model", a.get("gen_ai.request.model"), request_model)
    expect("gen_ai.response.model", a.get("gen_ai.response.model"), response_model)
    expect("gen_ai.response.id", a.get("gen_ai.response.id"), response_id)
    expect("gen_ai.usage.input_tokens", a.get("gen_ai.usage.input_tokens"), input_tokens)
    expect("gen_ai.usage.output_tokens", a.get("gen_ai.usage.output_tokens"), output_tokens)
    expect("gen_ai.response.finish_reasons", a.get("gen_ai.response.finish_reasons"), finish_reasons)
    expect("server.address", a.get("server.address"), "127.0.0.1")
    if stream:
        expect("gen_ai.request.stream", a.get("gen_ai.request.stream"), True)
        expect("specter.stream.abandoned", a.get("specter.stream.abandoned"), None)
        if not isinstance(a.get("gen_ai.response.time_to_first_chunk"), float):
            problems.append("gen_ai.response.time_to_first_chunk is missing")
    status = span.get("status") or {}
    if status.get("code") == STATUS_CODE_ERROR:
        problems.append(f"span status is ERROR ({status.get('message')!r}, error.type={a.get('error.type')!r}); expected OK/UNSET")
    assert not problems, f"span {span['name']!r}:\n  " + "\n  ".join(problems)
    return a


def output_parts(a: dict) -> list[dict]:
    messages = json.loads(a["gen_ai.output.messages"])
    return [part for message in messages for part in message["parts"]]


# ---------------------------------------------------------------------------------------------
# OpenAI


def test_openai_chat_plain(gateway, openai_client, mock_upstream):
    openai_client = sdk(openai_client, "openai")
    request = load_fixture("openai/chat_plain", "request.json")
    expected = load_fixture("openai/chat_plain")
    completion = openai_client.chat.completions.create(model=request["model"], messages=request["messages"])

    choice = expected["choices"][0]
    assert completion.id == expected["id"]
    assert completion.model == expected["model"]
    assert completion.choices[0].message.content == choice["message"]["content"]
    assert completion.choices[0].finish_reason == choice["finish_reason"]
    assert completion.usage.prompt_tokens == expected["usage"]["prompt_tokens"]
    assert completion.usage.completion_tokens == expected["usage"]["completion_tokens"]
    assert completion.usage.total_tokens == expected["usage"]["total_tokens"]
    check_forwarded(last_upstream_request(mock_upstream, "/v1/chat/completions"), fixture="openai/chat_plain", gzipped=True, model=request["model"])

    a = check_span(
        the_only_span(gateway),
        provider="openai",
        request_model=request["model"],
        response_model=expected["model"],
        response_id=expected["id"],
        input_tokens=expected["usage"]["prompt_tokens"],
        output_tokens=expected["usage"]["completion_tokens"],
        finish_reasons=[choice["finish_reason"]],
        stream=False,
    )
    assert [p.get("content") for p in output_parts(a) if p["type"] == "text"] == [choice["message"]["content"]]


def test_openai_chat_stream(gateway, openai_client, mock_upstream):
    openai_client = sdk(openai_client, "openai")
    request = load_fixture("openai/chat_stream_include_usage", "request.json")
    chunks = [json.loads(data) for _, data in sse_data("openai/chat_stream_include_usage") if data != "[DONE]"]
    expected_text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    expected_finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    expected_usage = next(c["usage"] for c in chunks if c.get("usage"))

    stream = openai_client.chat.completions.create(
        model=request["model"], messages=request["messages"], stream=True, stream_options=request["stream_options"]
    )
    text, finish, usage, models, count = [], [], None, set(), 0
    for chunk in stream:  # iterated to its end
        count += 1
        models.add(chunk.model)
        if chunk.choices:
            text.append(chunk.choices[0].delta.content or "")
            if chunk.choices[0].finish_reason:
                finish.append(chunk.choices[0].finish_reason)
        if chunk.usage:
            usage = chunk.usage

    assert count == len(chunks)
    assert "".join(text) == expected_text
    assert finish == expected_finish
    assert models == {chunks[0]["model"]}
    assert usage is not None, "the include_usage chunk did not arrive"
    assert (usage.prompt_tokens, usage.completion_tokens) == (expected_usage["prompt_tokens"], expected_usage["completion_tokens"])
    check_forwarded(last_upstream_request(mock_upstream, "/v1/chat/completions"), fixture="openai/chat_stream_include_usage", gzipped=False, model=request["model"])

    a = check_span(
        the_only_span(gateway),
        provider="openai",
        request_model=request["model"],
        response_model=chunks[0]["model"],
        response_id=chunks[0]["id"],
        input_tokens=expected_usage["prompt_tokens"],
        output_tokens=expected_usage["completion_tokens"],
        finish_reasons=expected_finish,
        stream=True,
    )
    assert [p.get("content") for p in output_parts(a) if p["type"] == "text"] == [expected_text]


def test_openai_chat_tool_calls(gateway, openai_client, mock_upstream):
    openai_client = sdk(openai_client, "openai")
    request = load_fixture("openai/chat_tool_calls", "request.json")
    expected = load_fixture("openai/chat_tool_calls")
    completion = openai_client.chat.completions.create(
        model=request["model"], messages=request["messages"], tools=request["tools"], tool_choice=request["tool_choice"]
    )

    choice = expected["choices"][0]
    expected_calls = [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in choice["message"]["tool_calls"]]
    got_calls = [(c.id, c.function.name, json.loads(c.function.arguments)) for c in completion.choices[0].message.tool_calls]
    assert got_calls == expected_calls
    assert completion.choices[0].message.content is None
    assert completion.choices[0].finish_reason == "tool_calls"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (expected["usage"]["prompt_tokens"], expected["usage"]["completion_tokens"])
    check_forwarded(last_upstream_request(mock_upstream, "/v1/chat/completions"), fixture="openai/chat_tool_calls", gzipped=True, model=request["model"])

    a = check_span(
        the_only_span(gateway),
        provider="openai",
        request_model=request["model"],
        response_model=expected["model"],
        response_id=expected["id"],
        input_tokens=expected["usage"]["prompt_tokens"],
        output_tokens=expected["usage"]["completion_tokens"],
        finish_reasons=["tool_calls"],
        stream=False,
    )
    span_calls = [(p.get("id"), p.get("name"), p.get("arguments")) for p in output_parts(a) if p["type"] == "tool_call"]
    assert span_calls == expected_calls


# ---------------------------------------------------------------------------------------------
# Anthropic


def test_anthropic_message_plain(gateway, anthropic_client, mock_upstream):
    anthropic_client = sdk(anthropic_client, "anthropic")
    request = load_fixture("anthropic/messages_plain", "request.json")
    expected = load_fixture("anthropic/messages_plain")
    message = anthropic_client.messages.create(**request)

    assert message.id == expected["id"]
    assert message.model == expected["model"]
    assert [(b.type, b.text) for b in message.content] == [(b["type"], b["text"]) for b in expected["content"]]
    assert message.stop_reason == expected["stop_reason"]
    assert (message.usage.input_tokens, message.usage.output_tokens) == (expected["usage"]["input_tokens"], expected["usage"]["output_tokens"])
    check_forwarded(last_upstream_request(mock_upstream, "/v1/messages"), fixture="anthropic/messages_plain", gzipped=True, model=request["model"])

    a = check_span(
        the_only_span(gateway),
        provider="anthropic",
        request_model=request["model"],
        response_model=expected["model"],
        response_id=expected["id"],
        input_tokens=expected["usage"]["input_tokens"],
        output_tokens=expected["usage"]["output_tokens"],
        finish_reasons=[expected["stop_reason"]],
        stream=False,
    )
    assert a.get("gen_ai.request.max_tokens") == request["max_tokens"]
    assert [p.get("content") for p in output_parts(a) if p["type"] == "text"] == [expected["content"][0]["text"]]


def test_anthropic_message_stream(gateway, anthropic_client, mock_upstream):
    anthropic_client = sdk(anthropic_client, "anthropic")
    request = load_fixture("anthropic/messages_stream", "request.json")
    events = [(event, json.loads(data)) for event, data in sse_data("anthropic/messages_stream")]
    start = next(d["message"] for e, d in events if e == "message_start")
    delta = next(d for e, d in events if e == "message_delta")
    expected_text = "".join(d["delta"]["text"] for e, d in events if e == "content_block_delta")

    params = {k: v for k, v in request.items() if k != "stream"}
    pieces = []
    with anthropic_client.messages.stream(**params) as stream:
        for text in stream.text_stream:  # iterated to its end
            pieces.append(text)
        final = stream.get_final_message()

    assert "".join(pieces) == expected_text
    assert final.id == start["id"]
    assert final.model == start["model"]
    assert final.stop_reason == delta["delta"]["stop_reason"]
    assert [(b.type, b.text) for b in final.content] == [("text", expected_text)]
    assert final.usage.input_tokens == start["usage"]["input_tokens"]
    assert final.usage.output_tokens == delta["usage"]["output_tokens"]
    check_forwarded(last_upstream_request(mock_upstream, "/v1/messages"), fixture="anthropic/messages_stream", gzipped=False, model=request["model"])

    a = check_span(
        the_only_span(gateway),
        provider="anthropic",
        request_model=request["model"],
        response_model=start["model"],
        response_id=start["id"],
        input_tokens=start["usage"]["input_tokens"],
        output_tokens=delta["usage"]["output_tokens"],
        finish_reasons=[delta["delta"]["stop_reason"]],
        stream=True,
    )
    assert [p.get("content") for p in output_parts(a) if p["type"] == "text"] == [expected_text]


def test_anthropic_tool_use(gateway, anthropic_client, mock_upstream):
    anthropic_client = sdk(anthropic_client, "anthropic")
    request = load_fixture("anthropic/messages_tool_use", "request.json")
    expected = load_fixture("anthropic/messages_tool_use")
    message = anthropic_client.messages.create(**request)

    expected_uses = [(b["id"], b["name"], b["input"]) for b in expected["content"] if b["type"] == "tool_use"]
    assert [(b.id, b.name, b.input) for b in message.content if b.type == "tool_use"] == expected_uses
    assert [b.text for b in message.content if b.type == "text"] == [b["text"] for b in expected["content"] if b["type"] == "text"]
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (expected["usage"]["input_tokens"], expected["usage"]["output_tokens"])
    check_forwarded(last_upstream_request(mock_upstream, "/v1/messages"), fixture="anthropic/messages_tool_use", gzipped=True, model=request["model"])

    a = check_span(
        the_only_span(gateway),
        provider="anthropic",
        request_model=request["model"],
        response_model=expected["model"],
        response_id=expected["id"],
        input_tokens=expected["usage"]["input_tokens"],
        output_tokens=expected["usage"]["output_tokens"],
        finish_reasons=["tool_use"],
        stream=False,
    )
    span_calls = [(p.get("id"), p.get("name"), p.get("arguments")) for p in output_parts(a) if p["type"] == "tool_call"]
    assert span_calls == expected_uses


# ---------------------------------------------------------------------------------------------
# The spans' shape


def test_span_attribute_keys_are_unique(gateway, openai_client, anthropic_client):
    """OTLP: "Attribute keys MUST be unique (it is not allowed to have more than one attribute with
    the same key)"."""
    openai_client = sdk(openai_client, "openai")
    anthropic_client = sdk(anthropic_client, "anthropic")
    request = load_fixture("openai/chat_plain", "request.json")
    openai_client.chat.completions.create(model=request["model"], messages=request["messages"])
    request = load_fixture("anthropic/messages_plain", "request.json")
    anthropic_client.messages.create(**request)
    wait_for_spans(gateway.traces, 2)
    assert gateway.stop() == 0
    duplicated = {}
    for span in read_spans(gateway.traces):
        counts = collections.Counter(kv["key"] for kv in span["attributes"])
        twice = sorted(k for k, n in counts.items() if n > 1)
        if twice:
            duplicated[span["name"]] = twice
    assert not duplicated, f"attribute keys given more than once: {duplicated}"


# ---------------------------------------------------------------------------------------------
# The bytes on the wire (a plain HTTP client, whose timing is its own: the SDKs' first-use
# initialisation can hold a stream long enough for the next events to arrive together)


@pytest.mark.parametrize(
    "path, case",
    [("/openai/v1/chat/completions", "openai/chat_stream_include_usage"), ("/anthropic/v1/messages", "anthropic/messages_stream")],
)
def test_streams_pass_event_by_event_and_unchanged(gateway, path, case):
    body = (FIXTURES / case / "request.json").read_bytes()
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    connection.request("POST", path, body, {"content-type": "application/json", "authorization": f"Bearer {API_KEY}", "x-api-key": API_KEY})
    response = connection.getresponse()
    assert response.status == 200
    assert response.getheader("content-type", "").startswith("text/event-stream")
    received, reads, first, last = b"", 0, None, None
    while piece := response.read1(65536):
        now = time.monotonic()
        first = first or now
        last = now
        reads += 1
        received += piece
    connection.close()
    expected = (FIXTURES / case / "response.sse").read_text()
    assert received.decode() == "".join(sse_events(expected)), "the stream was changed on its way"
    events = len(sse_events(expected))
    # The mock sends an event every EVENT_PAUSE: a buffering gateway would deliver them in one go.
    assert reads >= events // 2, f"{events} events arrived in {reads} reads"
    assert last - first >= (events - 1) * EVENT_PAUSE * 0.5, f"{events} events arrived within {last - first:.3f} s"
    span = the_only_span(gateway)
    assert attributes(span).get("specter.stream.chunks", 0) > 0


@pytest.mark.parametrize(
    "path, case, usage",
    [
        ("/openai/v1/chat/completions", "openai/chat_plain", ("prompt_tokens", "completion_tokens")),
        ("/anthropic/v1/messages", "anthropic/messages_plain", ("input_tokens", "output_tokens")),
    ],
)
def test_gzip_reaches_the_client_compressed_and_the_span_decoded(gateway, path, case, usage):
    body = (FIXTURES / case / "request.json").read_bytes()
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    connection.request("POST", path, body, {"content-type": "application/json", "accept-encoding": "gzip", "x-api-key": API_KEY})
    response = connection.getresponse()
    raw = response.read()
    connection.close()
    assert response.status == 200
    assert response.getheader("content-encoding") == "gzip"
    assert gzip.decompress(raw) == (FIXTURES / case / "response.json").read_bytes()
    expected = load_fixture(case)
    a = attributes(the_only_span(gateway))
    assert (a.get("gen_ai.usage.input_tokens"), a.get("gen_ai.usage.output_tokens")) == (expected["usage"][usage[0]], expected["usage"][usage[1]])
    assert a.get("gen_ai.response.id") == expected["id"]
