"""`specter serve` exporting over OTLP (gRPC and HTTP/protobuf) to a real Arize Phoenix.

Phoenix runs as a subprocess on 127.0.0.1 (HTTP and OTLP/HTTP on 6006, OTLP/gRPC on 4317; other
free ports when those are taken). For each protocol the gateway runs with the standard
`OTEL_EXPORTER_OTLP_*` variables and its own `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES`;
the resource attribute `openinference.project.name` puts its spans in a Phoenix project of their
own, so each protocol's span is told apart by where Phoenix files it. One OpenAI chat goes
through the gateway, the gateway is stopped with SIGTERM (which flushes), and Phoenix's REST API
(`GET /v1/projects/{project}/spans`) must then return that span with its GenAI attributes.
"""

from __future__ import annotations

import json
import re
import secrets
import time

import pytest

from conftest import (
    attributes,
    load_fixture,
    read_spans,
    start_gateway,
)

try:
    import openai
except ImportError as e:
    openai = None
    OPENAI_IMPORT_ERROR = e

PHOENIX_SPAN_TIMEOUT = 30.0
API_KEY = "sk-test-" + secrets.token_hex(16)
RUN = secrets.token_hex(4)


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_phoenix_receives_the_gateways_span(protocol, phoenix, mock_upstream, tmp_path):
    if isinstance(phoenix, str):
        pytest.fail(phoenix)
    if openai is None:
        pytest.fail(f"the openai SDK is not installed ({OPENAI_IMPORT_ERROR}): pip install -r tests/python/requirements.txt")
    tag = "grpc" if protocol == "grpc" else "http"
    project = f"specter-{tag}-{RUN}"
    service = f"specter-e2e-{tag}"
    endpoint = f"http://127.0.0.1:{phoenix.grpc_port if protocol == 'grpc' else phoenix.port}"
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_SERVICE_NAME": service,
        "OTEL_RESOURCE_ATTRIBUTES": f"openinference.project.name={project},specter.test.protocol={tag}",
    }
    # The traces file is kept alongside the OTLP export, to know which span Phoenix must show.
    gateway = start_gateway(tmp_path, {"openai": mock_upstream.url}, extra_env=env, quiet=False)
    try:
        assert f"spans to OTLP ({protocol})" in gateway.stderr(), gateway.stderr()
        request = load_fixture("openai/chat_plain", "request.json")
        expected = load_fixture("openai/chat_plain")
        client = openai.OpenAI(api_key=API_KEY, base_url=f"{gateway.url}/openai/v1", max_retries=0, timeout=30)
        completion = client.chat.completions.create(model=request["model"], messages=request["messages"])
        client.close()
        assert completion.choices[0].message.content == expected["choices"][0]["message"]["content"]
    finally:
        code = gateway.stop()  # SIGTERM flushes the OTLP exporter
    assert code == 0, f"specter serve exited with {code}\n{gateway.stderr()}"
    # (With a traces file beside OTLP, the count covers both exporters: one span reads "2 span(s)".)
    # Both outputs report apart: OTLP delivered the span, and so did the local file.
    assert re.search(
        r"stopped \(1 call\(s\), 1 span\(s\) ended; OTLP: 1 span\(s\) exported, 0 lost to export failures, 0 dropped by a full queue; "
        r"file: 1 span\(s\) exported, 0 lost to export failures, 0 dropped by a full queue\)",
        gateway.stderr(),
    ), gateway.stderr()

    local = read_spans(gateway.traces)
    assert len(local) == 1
    assert local[0]["_resource"].get("service.name") == service
    assert local[0]["_resource"].get("openinference.project.name") == project
    trace_id, span_id = local[0]["traceId"], local[0]["spanId"]

    deadline = time.monotonic() + PHOENIX_SPAN_TIMEOUT
    spans = None
    while time.monotonic() < deadline:
        spans = phoenix.spans(project)
        if spans:
            break
        time.sleep(0.25)
    if not spans:
        default = phoenix.spans("default") or []
        pytest.fail(
            f"Phoenix has no span in project {project!r} after {PHOENIX_SPAN_TIMEOUT} s "
            f"(project known: {spans is not None}; spans in 'default': {[s['name'] for s in default]})\n"
            + phoenix.log.read_text()[-3000:]
        )
    assert len(spans) == 1, f"expected one span in {project}, got {[s['name'] for s in spans]}"
    span = spans[0]
    a = span["attributes"]
    usage = expected["usage"]
    assert span["name"] == f"chat {request['model']}"
    assert span["context"] == {"trace_id": trace_id, "span_id": span_id}
    assert span["parent_id"] is None
    assert span["status_code"] != "ERROR", span["status_message"]
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == request["model"]
    assert a["gen_ai.response.model"] == expected["model"]
    assert a["gen_ai.response.id"] == expected["id"]
    assert a["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert a["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert a["gen_ai.response.finish_reasons"] == [expected["choices"][0]["finish_reason"]]
    # Phoenix maps the GenAI attributes onto its own (OpenInference) ones, which its UI shows.
    assert span["span_kind"] == "LLM"
    assert a.get("llm.token_count.prompt") == usage["prompt_tokens"]
    assert a.get("llm.token_count.completion") == usage["completion_tokens"]
    assert API_KEY not in json.dumps(span)
    # Everything the file exporter recorded reached Phoenix with the same value.
    for key, value in attributes(local[0]).items():
        assert a.get(key) == value, f"{key}: file has {value!r}, Phoenix has {a.get(key)!r}"


def test_phoenix_reads_the_openinference_dialect(phoenix, mock_upstream, tmp_path):
    """With `--dialect openinference` alone, Phoenix gets OpenInference's own names and values:
    it files the span as an LLM span with its model, provider, token counts, invocation
    parameters and messages, and no GenAI semconv name the dialect replaces reaches it."""
    if isinstance(phoenix, str):
        pytest.fail(phoenix)
    if openai is None:
        pytest.fail(f"the openai SDK is not installed ({OPENAI_IMPORT_ERROR}): pip install -r tests/python/requirements.txt")
    project = f"specter-openinference-{RUN}"
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{phoenix.port}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_SERVICE_NAME": "specter-e2e-openinference",
        "OTEL_RESOURCE_ATTRIBUTES": f"openinference.project.name={project}",
    }
    gateway = start_gateway(
        tmp_path, {"openai": mock_upstream.url}, extra_env=env, extra_args=["--dialect", "openinference"]
    )
    try:
        request = load_fixture("openai/chat_tool_calls", "request.json")
        expected = load_fixture("openai/chat_tool_calls")
        client = openai.OpenAI(api_key=API_KEY, base_url=f"{gateway.url}/openai/v1", max_retries=0, timeout=30)
        completion = client.chat.completions.create(
            model=request["model"], messages=request["messages"], tools=request["tools"]
        )
        client.close()
        call = expected["choices"][0]["message"]["tool_calls"][0]
        assert completion.choices[0].message.tool_calls[0].function.name == call["function"]["name"]
    finally:
        code = gateway.stop()
    assert code == 0, f"specter serve exited with {code}\n{gateway.stderr()}"

    deadline = time.monotonic() + PHOENIX_SPAN_TIMEOUT
    spans = None
    while time.monotonic() < deadline:
        spans = phoenix.spans(project)
        if spans:
            break
        time.sleep(0.25)
    assert spans and len(spans) == 1, f"expected one span in {project}, got {spans!r}"
    span = spans[0]
    a = span["attributes"]
    usage = expected["usage"]
    # The gateway sends `openinference.span.kind`, which Phoenix files as the span's kind.
    local = read_spans(gateway.traces)
    assert len(local) == 1
    assert attributes(local[0])["openinference.span.kind"] == "LLM"
    assert span["span_kind"] == "LLM"
    assert json.loads(a["llm.invocation_parameters"]) == {"model": request["model"]}
    assert a["llm.finish_reason"] == "tool_calls"
    assert a["llm.provider"] == "openai"
    assert a["llm.system"] == "openai"
    assert a["llm.model_name"] == expected["model"]
    assert a["llm.token_count.prompt"] == usage["prompt_tokens"]
    assert a["llm.token_count.completion"] == usage["completion_tokens"]
    assert a["llm.token_count.total"] == usage["total_tokens"]
    assert a["input.mime_type"] == "application/json"
    assert a["output.mime_type"] == "application/json"
    first = request["messages"][0]
    assert a["llm.input_messages.0.message.role"] == first["role"]
    assert a["llm.input_messages.0.message.content"] == first["content"]
    out = "llm.output_messages.0.message.tool_calls.0.tool_call."
    assert a[out + "function.name"] == call["function"]["name"]
    assert json.loads(a[out + "function.arguments"]) == json.loads(call["function"]["arguments"])
    assert json.loads(a["llm.tools.0.tool.json_schema"])["name"] == request["tools"][0]["function"]["name"]
    # The dialect replaces these semconv names: Phoenix gets them under OpenInference's only.
    for key in ("gen_ai.provider.name", "gen_ai.request.model", "gen_ai.usage.input_tokens"):
        assert key not in a, key
    assert API_KEY not in json.dumps(span)
