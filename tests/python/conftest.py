"""Shared helpers of the Python end-to-end tests: the specter binary, the mock upstream, the
gateway as a subprocess, and reading its OTLP JSON-lines traces file."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
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
    # Absolute, because some tests start the gateway in a directory of its own.
    path = Path(os.environ.get("SPECTER_BIN", REPO / "target" / "debug" / "specter")).absolute()
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
    extra_args: list[str] | None = None,
) -> Gateway:
    port = free_port()
    args = [str(specter_binary()), "serve", "--listen", f"127.0.0.1:{port}"]
    args += extra_args or []
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


# ---------------------------------------------------------------------------------------------
# Arize Phoenix as the OTLP backend (one for the whole session: its start-up takes ~15 s)

PHOENIX_START_TIMEOUT = 120.0


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

    def all_spans(self, project: str) -> list[dict]:
        """Every span of the project (paged by Phoenix's cursor; bounded), [] while it is unknown."""
        spans: list[dict] = []
        cursor = None
        for _ in range(1000):
            query = "limit=1000" + (f"&cursor={urllib.parse.quote(cursor, safe='')}" if cursor else "")
            status, body = http_get(f"{self.url}/v1/projects/{urllib.parse.quote(project, safe='')}/spans?{query}", timeout=10)
            if status == 404:
                return []
            assert status == 200, f"GET /v1/projects/{project}/spans answered {status}: {body[:500]!r}"
            page = json.loads(body)
            spans += page["data"]
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return spans


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


@pytest.fixture(scope="session")
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
