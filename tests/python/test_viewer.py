"""The trace viewer in a real browser: headless Chromium (Debian's `chromium`, driven by
Playwright for Python) against `specter serve`, after calls made with the official OpenAI SDK
through it (a plain chat and a streamed tool-call chat, some with a session header).

Checks that the call list shows each call's model, tokens and status; that opening the streamed
tool-call conversation shows the tool's name and arguments; that filtering by session narrows
the list; that the totals match the calls made; that hostile span text stays text; and that a
new call appears in the open list without a reload. Saves a screenshot of each view to the
test's tmp dir (and to docs/viewer/ with SPECTER_SCREENSHOTS=docs).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import FIXTURES, start_gateway
from mock_upstream import Handler, MockUpstream

try:
    import openai
except ImportError as e:  # the test fails (not skips) below
    openai = None
    OPENAI_IMPORT_ERROR = e
try:
    from playwright.sync_api import sync_playwright
except ImportError as e:
    sync_playwright = None
    PLAYWRIGHT_IMPORT_ERROR = e

CHROMIUM = "/usr/bin/chromium"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "viewer"
HOSTILE = "<img src=x onerror=\"window.__owned=1\"><script>window.__owned=2</script> hello"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
        },
    }
]


class ToolStreamHandler(Handler):
    """The mock upstream, answering a streamed chat with tools with the recorded streamed tool
    call (the mock alone answers every stream with plain text)."""

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        if isinstance(body, dict) and body.get("stream") is True and body.get("tools"):
            self._record(body, "openai/chat_stream_tool_calls", False)
            self._send_sse((FIXTURES / "openai" / "chat_stream_tool_calls" / "response.sse").read_text())
            return
        self.rfile = io.BytesIO(raw)
        super().do_POST()


@pytest.fixture
def upstream():
    server = MockUpstream()
    server.RequestHandlerClass = ToolStreamHandler
    server.start()
    yield server
    server.stop()


def api(base: str, path: str) -> dict:
    with urllib.request.urlopen(f"{base}/-/viewer/api/{path}", timeout=5) as r:
        return json.loads(r.read())


def wait_for_calls(base: str, count: int, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        page = api(base, "calls")
        if page["total"] >= count or time.monotonic() > deadline:
            return page
        time.sleep(0.1)


def shoot(page, name: str, tmp_path: Path) -> None:
    """Saves a screenshot to the test's tmp dir, and to docs/viewer/ (the README's pictures)
    when SPECTER_SCREENSHOTS=docs is set, so that an ordinary run leaves the checkout as it was."""
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("SPECTER_SCREENSHOTS") == "docs":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS / f"{name}.png")


def wait_rows(page, count: int, timeout: float = 15.0) -> None:
    """Waits (bounded) until the call list shows `count` rows. Polled from Python: the page's
    Content-Security-Policy forbids the string evaluation `wait_for_function` uses."""
    deadline = time.monotonic() + timeout
    while page.locator("tr.call").count() != count:
        assert time.monotonic() < deadline, f"{page.locator('tr.call').count()} rows, not {count}"
        page.wait_for_timeout(100)


def make_calls(base: str) -> None:
    client = openai.OpenAI(base_url=f"{base}/openai/v1", api_key="sk-test-viewer", max_retries=0)
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": HOSTILE}],
        extra_headers={"X-Specter-Session-Id": "session-a"},
    )
    stream = client.chat.completions.create(
        model="gpt-3.5-turbo",
        messages=[{"role": "user", "content": "What is the weather in San Francisco?"}],
        tools=TOOLS,
        stream=True,
        extra_headers={"X-Specter-Session-Id": "session-b"},
    )
    arguments = "".join(
        (c.choices[0].delta.tool_calls or [None])[0].function.arguments or ""
        for c in stream
        if c.choices and c.choices[0].delta.tool_calls
    )
    assert json.loads(arguments) == {"location": "San Francisco, CA"}
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "again"}])


def test_the_viewer_shows_the_calls_made_through_the_gateway(upstream, tmp_path):
    if openai is None:
        pytest.fail(f"the openai package is not installed: {OPENAI_IMPORT_ERROR}")
    if sync_playwright is None:
        pytest.fail(f"the playwright package is not installed: {PLAYWRIGHT_IMPORT_ERROR}")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    gw = start_gateway(tmp_path, {"openai": upstream.url})
    try:
        make_calls(gw.url)
        listed = wait_for_calls(gw.url, 3)
        assert listed["total"] == 3, listed
        calls = {c["request_model"] + ("/stream" if c["streamed"] else ""): c for c in listed["calls"]}
        tool_call = calls["gpt-3.5-turbo/stream"]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1500, "height": 900})
            try:
                check_views(page, gw.url, listed, tool_call, tmp_path)
            finally:
                browser.close()
    finally:
        gw.stop()


def check_views(page, base: str, listed: dict, tool_call: dict, tmp_path: Path) -> None:
    # The call list: each call's model, tokens and status.
    page.goto(f"{base}/-/viewer/")
    rows = page.locator("tr.call")
    rows.nth(2).wait_for(timeout=10_000)
    assert rows.count() == 3
    for call in listed["calls"]:
        row = page.locator(f'tr.call[data-span="{call["span_id"]}"]')
        assert call["request_model"] in row.locator("td.model").inner_text()
        if call["response_model"]:
            assert call["response_model"] in row.locator("td.model").inner_text()
        assert row.locator("td.status").inner_text().startswith("ok")
        expected_input = "–" if call["input_tokens"] is None else f'{call["input_tokens"]:,}'
        assert row.locator("td.input").inner_text() == expected_input
    plain = [c for c in listed["calls"] if c["session"] == "session-a"][0]
    plain_row = page.locator(f'tr.call[data-span="{plain["span_id"]}"]')
    assert plain_row.locator("td.input").inner_text() == "12"
    assert plain_row.locator("td.output").inner_text() == "5"
    shoot(page, "calls", tmp_path)

    # The hostile call: its text shown as text, no script run.
    page.goto(f'{base}/-/viewer/#/call/{plain["trace_id"]}/{plain["span_id"]}')
    page.get_by_text("hello", exact=False).first.wait_for(timeout=10_000)
    assert HOSTILE in page.locator("main").inner_text()
    assert page.evaluate("window.__owned") is None
    assert page.locator("main img").count() == 0

    # The streamed tool-call conversation: the tool's name and its arguments.
    page.goto(f"{base}/-/viewer/")
    page.locator(f'tr.call[data-span="{tool_call["span_id"]}"]').click()
    page.locator(".tool-call .name").first.wait_for(timeout=10_000)
    assert page.locator(".tool-call .name").first.inner_text() == "get_current_weather"
    arguments = json.loads(page.locator(".tool-call pre.arguments").first.inner_text())
    assert arguments == {"location": "San Francisco, CA"}
    assert f'#/call/{tool_call["trace_id"]}/{tool_call["span_id"]}' in page.url
    shoot(page, "call", tmp_path)

    # Filtering by session narrows the list.
    page.goto(f"{base}/-/viewer/#/calls")
    page.locator("tr.call").nth(2).wait_for(timeout=10_000)
    page.fill("#f-session", "session-a")
    page.press("#f-session", "Enter")
    wait_rows(page, 1)
    assert page.locator("tr.call td.session").inner_text() == "session-a"
    assert page.locator("#total").inner_text() == "1 calls"
    shoot(page, "calls-session", tmp_path)

    # Sessions: two groups, one call each, with a timeline.
    page.goto(f"{base}/-/viewer/#/groups")
    page.locator("tr.group").nth(1).wait_for(timeout=10_000)
    assert page.locator("tr.group").count() == 2
    page.locator("tr.group").first.click()
    page.locator("svg.timeline rect").first.wait_for(timeout=10_000)
    shoot(page, "sessions", tmp_path)

    # Totals match the calls made.
    page.goto(f"{base}/-/viewer/#/totals")
    page.locator("#total-calls").wait_for(timeout=10_000)
    assert page.locator("#total-calls").inner_text() == "3"
    input_total = sum(c["input_tokens"] or 0 for c in listed["calls"])
    output_total = sum(c["output_tokens"] or 0 for c in listed["calls"])
    assert page.locator("#total-input").inner_text() == f"{input_total:,}"
    assert page.locator("#total-output").inner_text() == f"{output_total:,}"
    by_model = page.locator("table.totals td.calls")
    assert sum(int(by_model.nth(i).inner_text()) for i in range(by_model.count())) == 3
    shoot(page, "totals", tmp_path)

    # A new call shows up in the open list without a reload.
    page.goto(f"{base}/-/viewer/#/calls")
    page.locator("tr.call").nth(2).wait_for(timeout=10_000)
    client = openai.OpenAI(base_url=f"{base}/openai/v1", api_key="sk-test-viewer", max_retries=0)
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "live"}])
    wait_rows(page, 4)
    assert "gpt-4o →" in page.locator("tr.call td.model").first.inner_text()
