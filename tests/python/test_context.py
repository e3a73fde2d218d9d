"""Request context through `specter serve` with the official SDKs: headers the SDKs send
(`default_headers`, `extra_headers`), W3C baggage and request body fields (`user`, `metadata`)
become span attributes; the headers that exist only for specter (and, with the Helicone example
configuration, Helicone's) never reach the upstream; the cost of the call is on the span."""

from __future__ import annotations

import secrets

import pytest

from conftest import REPO, attributes, read_spans, start_gateway, wait_for_spans

try:
    import openai
except ImportError:  # the test fails (not skips) below
    openai = None
try:
    import anthropic
except ImportError:
    anthropic = None

API_KEY = "sk-test-" + secrets.token_hex(16)


def the_span(gateway) -> dict:
    wait_for_spans(gateway.traces, 1)
    assert gateway.stop() == 0, gateway.stderr()
    assert API_KEY not in gateway.traces.read_text(), "the API key appears in the traces file"
    spans = read_spans(gateway.traces)
    assert len(spans) == 1, [s["name"] for s in spans]
    return attributes(spans[0])


def upstream_headers(mock_upstream) -> dict:
    requests = mock_upstream.requests()
    assert requests, "the mock upstream received no request"
    return requests[-1]["headers"]


def test_openai_sdk_headers_baggage_and_body_fields(mock_upstream, tmp_path):
    if openai is None:
        pytest.fail("the openai SDK is not installed: pip install -r tests/python/requirements.txt")
    gateway = start_gateway(tmp_path, {"openai": mock_upstream.url})
    client = openai.OpenAI(
        api_key=API_KEY,
        base_url=f"{gateway.url}/openai/v1",
        max_retries=0,
        timeout=30,
        default_headers={"X-Specter-Session-Id": "py-session-1", "X-Specter-Property-Team": "search"},
    )
    try:
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Say this is a test"}],
            user="py-user-1",
            metadata={"Tenant": "acme"},
            extra_headers={"baggage": "gen_ai.conversation.id=py-conv%201,gen_ai.agent.name=planner"},
        )
    finally:
        client.close()
    a = the_span(gateway)
    assert a["session.id"] == "py-session-1"
    assert a["user.id"] == "py-user-1"
    assert a["gen_ai.conversation.id"] == "py-conv 1"
    assert a["gen_ai.agent.name"] == "planner"
    assert a["specter.property.team"] == "search"
    assert a["specter.property.tenant"] == "acme"
    # gpt-4o-mini $0.15 / $0.60 per million: 12 × 0.15 + 5 × 0.60 = 4.8 → $0.0000048
    assert a["gen_ai.usage.cost"] == pytest.approx(0.0000048, abs=1e-12)
    assert a["gen_ai.usage.cost.currency"] == "USD"
    assert a["gen_ai.usage.cost.source"] == "local"
    headers = upstream_headers(mock_upstream)
    assert not [k for k in headers if k.startswith("x-specter-")], headers
    assert "gen_ai.conversation.id" in headers["baggage"]
    assert headers["authorization"] == f"Bearer {API_KEY}"


def test_anthropic_sdk_with_the_helicone_example(mock_upstream, tmp_path):
    if anthropic is None:
        pytest.fail("the anthropic SDK is not installed: pip install -r tests/python/requirements.txt")
    gateway = start_gateway(
        tmp_path,
        {"anthropic": mock_upstream.url},
        extra_args=["--config", str(REPO / "examples" / "helicone-context.yaml")],
    )
    client = anthropic.Anthropic(
        api_key=API_KEY,
        base_url=f"{gateway.url}/anthropic",
        max_retries=0,
        timeout=30,
        default_headers={"Helicone-Session-Id": "h-session-9", "Helicone-Property-Environment": "qa"},
    )
    try:
        client.messages.create(
            model="claude-sonnet-4-6",
            max_tokens=64,
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            metadata={"user_id": "py-user-2"},
        )
    finally:
        client.close()
    a = the_span(gateway)
    assert a["session.id"] == "h-session-9"
    assert a["specter.property.environment"] == "qa"
    assert a["user.id"] == "py-user-2"
    # claude-sonnet-4-6 $3 / $15 per million: 14 × 3 + 11 × 15 = 42 + 165 = 207 → $0.000207
    assert a["gen_ai.usage.cost"] == pytest.approx(0.000207, abs=1e-12)
    headers = upstream_headers(mock_upstream)
    assert not [k for k in headers if k.startswith("helicone-")], headers
    assert headers["x-api-key"] == API_KEY
