"""Shared helpers of the Python end-to-end tests: the specter binary, the mock upstream, the
gateway as a subprocess, and reading its OTLP JSON-lines traces file."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
FIXTURES = REPO / "tests" / "fixtures"
# Flush interval of the gateway's batch span processors is ~200 ms: poll for this long at most.
SPAN_WAIT = 8.0


def specter_binary() -> Path:
    path = Path(os.environ.get("SPECTER_BIN", REPO / "target" / "debug" / "specter"))
    if not path.is_file():
        pytest.fail(f"the specter binary {path} does not exist: run `cargo build` (tests/python/run.sh does)")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As servers do, so that connections of an earlier run in TIME_WAIT do not count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
        return True


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - loopback only
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_http(url: str, proc: subprocess.Popen, deadline: float, what: str, log: Path | None = None) -> None:
    """Waits until `url` answers 200, failing if `proc` exits or the deadline passes."""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-4000:] if log and log.exists() else ""
            pytest.fail(f"{what} exited with {proc.returncode} before answering {url}\n{tail}")
        try:
            status, _ = http_get(url, timeout=1.0)
            if status == 200:
                return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-4000:] if log and log.exists() else ""
    pytest.fail(f"{what} did not answer {url} in time\n{tail}")


def stop(proc: subprocess.Popen, timeout: float = 15.0) -> int:
    """SIGTERM, then wait; SIGKILL only if it does not stop (and report that)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
            return -9
    return proc.returncode


# ---------------------------------------------------------------------------------------------
# The mock upstream (a subprocess running mock_upstream.py)


@dataclass
class Mock:
    proc: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def mock_upstream(tmp_path_factory) -> Mock:
    directory = tmp_path_factory.mktemp("mock")
    log = directory / "requests.jsonl"
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "mock_upstream.py"), "--log", str(log)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    line = proc.stdout.readline().strip()
    if not line.isdigit():
        proc.kill()
        pytest.fail(f"the mock upstream did not start: {line!r}")
    mock = Mock(proc=proc, port=int(line), log=log)
    wait_http(f"{mock.url}/healthz", proc, time.monotonic() + 10, "the mock upstream")
    yield mock
    stop(proc)


# ---------------------------------------------------------------------------------------------
# The gateway


@dataclass
class Gateway:
    proc: subprocess.Popen
    port: int
    traces: Path | None
    stderr_path: Path
    returncode: int | None = None
    env: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> int:
        if self.returncode is None:
            self.returncode = stop(self.proc)
        return self.returncode

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


def start_gateway(
    directory: Path,
    upstreams: dict[str, str],
    traces: bool = True,
    extra_env: dict[str, str] | None = None,
    quiet: bool = True,
) -> Gateway:
    port = free_port()
    args = [str(specter_binary()), "serve", "--listen", f"127.0.0.1:{port}"]
    for provider, url in upstreams.items():
        args += ["--upstream", f"{provider}={url}"]
    traces_path = directory / "traces.jsonl" if traces else None
    if traces_path:
        args += ["--traces-file", str(traces_path)]
    if quiet:
        args.append("--quiet")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SPECTER_"))}
    env.update(extra_env or {})
    stderr_path = directory / "specter.stderr"
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=directory)
    gateway = Gateway(proc=proc, port=port, traces=traces_path, stderr_path=stderr_path, env=extra_env or {})
    wait_http(f"{gateway.url}/healthz", proc, time.monotonic() + 30, "specter serve", stderr_path)
    return gateway


# ---------------------------------------------------------------------------------------------
# OTLP JSON


def otlp_value(value: dict):
    """Decodes an OTLP JSON AnyValue."""
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "arrayValue" in value:
        return [otlp_value(v) for v in value["arrayValue"].get("values", [])]
    if "kvlistValue" in value:
        return {kv["key"]: otlp_value(kv["value"]) for kv in value["kvlistValue"].get("values", [])}
    if "bytesValue" in value:
        return value["bytesValue"]
    return None


def read_spans(path: Path) -> list[dict]:
    """Every span of an OTLP JSON-lines file, each with its resource attributes under `_resource`."""
    if not path.exists():
        return []
    spans = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        request = json.loads(line)
        for resource_spans in request.get("resourceSpans", []):
            resource = {kv["key"]: otlp_value(kv["value"]) for kv in resource_spans.get("resource", {}).get("attributes", [])}
            for scope_spans in resource_spans.get("scopeSpans", []):
                for span in scope_spans.get("spans", []):
                    spans.append(dict(span, _resource=resource, _scope=scope_spans.get("scope", {})))
    return spans


def attributes(span: dict) -> dict:
    """A span's attributes as a dict. A key given twice must carry the same value both times (that
    keys are given once is checked by its own test)."""
    out: dict = {}
    for kv in span.get("attributes", []):
        value = otlp_value(kv["value"])
        if kv["key"] in out:
            assert out[kv["key"]] == value, f"attribute {kv['key']} given twice with different values: {out[kv['key']]!r} and {value!r}"
        out[kv["key"]] = value
    return out


def wait_for_spans(path: Path, count: int, timeout: float = SPAN_WAIT) -> list[dict]:
    """Polls the traces file until it holds at least `count` spans."""
    deadline = time.monotonic() + timeout
    spans: list[dict] = []
    while time.monotonic() < deadline:
        spans = read_spans(path)
        if len(spans) >= count:
            return spans
        time.sleep(0.05)
    pytest.fail(f"{path} holds {len(spans)} span(s) after {timeout} s, expected {count}")


def load_fixture(case: str, name: str = "response.json"):
    text = (FIXTURES / case / name).read_text()
    return json.loads(text) if name.endswith(".json") else text


def sse_data(case: str) -> list[tuple[str | None, str]]:
    """(event, data) pairs of a fixture's response.sse."""
    events = []
    for block in load_fixture(case, "response.sse").replace("\r\n", "\n").split("\n\n"):
        event, data = None, []
        for line in block.splitlines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        if data:
            events.append((event, "\n".join(data)))
    return events
