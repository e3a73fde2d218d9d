"""A mock OpenAI / Anthropic upstream that replays the recorded fixtures (stdlib only).

POST /v1/chat/completions
    "stream": true  -> openai/chat_stream_include_usage/response.sse (SSE, event by event)
    "tools" present -> openai/chat_tool_calls/response.json
    otherwise       -> openai/chat_plain/response.json
POST /v1/messages
    "stream": true  -> anthropic/messages_stream/response.sse (SSE, event by event)
    "tools" present -> anthropic/messages_tool_use/response.json
    otherwise       -> anthropic/messages_plain/response.json

Non-streamed bodies are gzipped (with `content-encoding: gzip`) when the client accepts gzip.
Every request is recorded (method, path, lower-cased headers, JSON body, fixture answered, whether
gzipped) in `MockUpstream.requests` and, with `--log FILE`, as one JSON line in FILE.

Run standalone: `python3 tests/python/mock_upstream.py [--port N] [--log FILE]`; it prints the port it
listens on as its first line.
"""

from __future__ import annotations

import argparse
import gzip
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

# (path, kind) -> (fixture directory, file)
ROUTES = {
    ("/v1/chat/completions", "stream"): ("openai/chat_stream_include_usage", "response.sse"),
    ("/v1/chat/completions", "tools"): ("openai/chat_tool_calls", "response.json"),
    ("/v1/chat/completions", "plain"): ("openai/chat_plain", "response.json"),
    ("/v1/messages", "stream"): ("anthropic/messages_stream", "response.sse"),
    ("/v1/messages", "tools"): ("anthropic/messages_tool_use", "response.json"),
    ("/v1/messages", "plain"): ("anthropic/messages_plain", "response.json"),
}

# Pause between two SSE events, so the stream really arrives in pieces.
EVENT_PAUSE = 0.02


def fixture_path(case: str, name: str) -> Path:
    return FIXTURES / case / name


def sse_events(text: str) -> list[str]:
    """Splits an SSE body into events, each keeping its terminating blank line."""
    text = text.replace("\r\n", "\n")
    events = []
    for block in text.split("\n\n"):
        if block.strip():
            events.append(block.strip("\n") + "\n\n")
    return events


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mock-upstream/1"

    def log_message(self, format, *args):  # noqa: A002 - keep the test output quiet
        pass

    def _send_json(self, status: int, body: bytes, accept_gzip: bool) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        if accept_gzip:
            body = gzip.compress(body)
            self.send_header("content-encoding", "gzip")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _send_sse(self, text: str) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        for i, event in enumerate(sse_events(text)):
            if i:
                time.sleep(EVENT_PAUSE)
            data = event.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        # The end of the body comes a moment after the last event, as it can from a real upstream
        # (a separate TCP segment): a client may well have closed its side by then.
        time.sleep(EVENT_PAUSE)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def do_GET(self):  # noqa: N802
        if self.path == "/healthz":
            self._send_json(200, b'{"ok":true}', False)
        else:
            self._send_json(404, b'{"error":{"message":"not found"}}', False)

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        path = self.path.split("?", 1)[0]
        accept = self.headers.get("accept-encoding", "")
        accept_gzip = any(p.split(";")[0].strip().lower() == "gzip" for p in accept.split(","))
        if not isinstance(body, dict):
            self._record(body, None, False)
            self._send_json(400, b'{"error":{"message":"the body is not a JSON object"}}', False)
            return
        kind = "stream" if body.get("stream") is True else "tools" if body.get("tools") else "plain"
        route = ROUTES.get((path, kind))
        if route is None:
            self._record(body, None, False)
            self._send_json(404, b'{"error":{"message":"no such route in the mock"}}', False)
            return
        self._record(body, route[0], accept_gzip and kind != "stream")
        data = fixture_path(*route).read_bytes()
        if kind == "stream":
            self._send_sse(data.decode())
        else:
            self._send_json(200, data, accept_gzip)

    def _record(self, body, fixture: str | None, gzipped: bool) -> None:
        self.server.record(  # type: ignore[attr-defined]
            {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body,
                "fixture": fixture,
                "gzipped": gzipped,
            }
        )


class MockUpstream(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address=("127.0.0.1", 0), log: str | None = None):
        super().__init__(address, Handler)
        self.log = log
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def record(self, request: dict) -> None:
        with self._lock:
            self.requests.append(request)
            if self.log:
                with open(self.log, "a", encoding="utf-8") as f:
                    f.write(json.dumps(request) + "\n")

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "MockUpstream":
        self._thread = threading.Thread(target=self.serve_forever, name="mock-upstream", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread:
            self._thread.join(timeout=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free one)")
    parser.add_argument("--log", help="append each request as a JSON line to this file")
    args = parser.parse_args()
    server = MockUpstream(("127.0.0.1", args.port), log=args.log)
    # The parent reads the port from this first line.
    print(server.port, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
