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

import importlib.util
import json
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest

from conftest import (
    attributes,
    http_get,
    load_fixture,
    port_is_free,
    free_port,
    read_spans,
    start_gateway,
    stop,
    wait_http,
)

try:
    import openai
except ImportError as e:
    openai = None
    OPENAI_IMPORT_ERROR = e

PHOENIX_START_TIMEOUT = 120.0
PHOENIX_SPAN_TIMEOUT = 30.0
API_KEY = "sk-test-" + secrets.token_hex(16)
RUN = secrets.token_hex(4)


class Phoenix:
    def __init__(self, proc: subprocess.Popen, port: int, grpc_port: int, log):
        self.proc = proc
        self.port = port
        self.grpc_port = grpc_port
        self.log = log

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spans(self, project: str) -> list[dict] | None:
        """The project's spans, or None while Phoenix does not know the project."""
        status, body = http_get(f"{self.url}/v1/projects/{urllib.parse.quote(project, safe='')}/spans?limit=100", timeout=5)
        if status == 404:
            return None
        assert status == 200, f"GET /v1/projects/{project}/spans answered {status}: {body[:500]!r}"
        return json.loads(body)["data"]


class PhoenixUnavailable(Exception):
    pass


def phoenix_command() -> list[str]:
    # Looked up, not imported: importing Phoenix takes ~12 s, and the subprocess does it anyway.
    spec = importlib.util.find_spec("phoenix")
    locations = spec.submodule_search_locations if spec else None
    if not locations or not any((Path(p) / "server" / "main.py").is_file() for p in locations):
        raise PhoenixUnavailable("Arize Phoenix (phoenix.server) is not installed: pip install -r tests/python/requirements.txt")
    # `phoenix serve`, from this Python's environment (the `phoenix` on PATH may be another one).
    return [sys.executable, "-m", "phoenix.server.main", "serve"]


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory):
    """The running Phoenix, or the reason it could not start (the test then FAILS with it; failing
    here would report an ERROR instead)."""
    try:
        command = phoenix_command()
    except PhoenixUnavailable as e:
        yield str(e)
        return
    directory = tmp_path_factory.mktemp("phoenix")
    port = 6006 if port_is_free(6006) else free_port()
    grpc_port = 4317 if port_is_free(4317) else free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PHOENIX_"))}
    env.update(
        PHOENIX_TELEMETRY_ENABLED="false",
        PHOENIX_HOST="127.0.0.1",
        PHOENIX_PORT=str(port),
        PHOENIX_GRPC_PORT=str(grpc_port),
        PHOENIX_WORKING_DIR=str(directory / "working"),
    )
    log_path = directory / "phoenix.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=directory)
    server = Phoenix(proc, port, grpc_port, log_path)
    started = time.monotonic()
    try:
        wait_http(f"{server.url}/healthz", proc, started + PHOENIX_START_TIMEOUT, "phoenix serve", log_path)
        # The gRPC receiver comes up with the HTTP one; make sure it is listening before exporting.
        deadline = time.monotonic() + 30
        while port_is_free(grpc_port):
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail(f"Phoenix's OTLP/gRPC receiver is not listening on {grpc_port}\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
    except pytest.fail.Exception as e:
        stop(proc, timeout=30)
        yield f"Phoenix could not start: {e}"
        return
    print(f"phoenix up in {time.monotonic() - started:.1f} s (http {port}, grpc {grpc_port})")
    yield server
    code = stop(proc, timeout=30)
    assert code in (0, -15), f"phoenix serve exited with {code}\n{log_path.read_text()[-3000:]}"


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
