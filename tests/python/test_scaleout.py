"""Past one machine: three `specter serve` replicas behind HAProxy, spans into Arize Phoenix.

Each replica is the real binary with its own copy of the bundled provider specs (`--providers`,
through `SPECTER_PROVIDERS`), exporting over OTLP/HTTP to Phoenix (one project per test, named
by the `openinference.project.name` resource attribute) and, beside it, to a traces file of its
own. HAProxy runs `deploy/haproxy.cfg` with the addresses rewritten to loopback ports and the
runtime API socket moved to a temporary directory; it health-checks `GET /healthz` and names the
replica that answered in the `x-served-by` response header. The official OpenAI and Anthropic
SDKs call through HAProxy from several threads (chat and messages, streamed and not) against the
loopback mock upstream, and every answer must be byte for byte what the mock sent.

Phoenix keeps span attributes but not resource attributes (other than the project name), so the
replica of each span in Phoenix is read from the replica's own traces file, which carries the
same resource: its `service.instance.id`.

The tests: plain load; one replica SIGKILLed mid-load; a rolling restart (drain through the
runtime API, in flight 0, SIGTERM, restart, ready); a provider spec change rolled across the
replicas by hot reload. `SPECTER_SCALEOUT_CALLS` sets the number of calls (default 160, about
20 s a test on two cores; the rolling restart and the spec change go on calling until their
steps are done, so they make more).
"""

from __future__ import annotations

import collections
import datetime
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import (
    REPO,
    free_port,
    http_get,
    load_fixture,
    read_spans,
    specter_binary,
    stop,
    wait_http,
)
from mock_upstream import sse_events

try:
    import anthropic
    import httpx
    import openai
except ImportError as e:  # the tests fail (not skip) below
    openai = anthropic = httpx = None
    SDK_IMPORT_ERROR = e

CALLS = int(os.environ.get("SPECTER_SCALEOUT_CALLS", "160"))
WORKERS = 8
REPLICAS = ("specter-1", "specter-2", "specter-3")
API_KEY = "sk-test-" + secrets.token_hex(16)
# Bounds of every wait below.
LOAD_TIMEOUT = 240.0
STEP_TIMEOUT = 30.0
PHOENIX_SPAN_TIMEOUT = 60.0
# The marker attributes the changed provider spec adds, one on each side of a call.
MARK_REQUEST = "specter.rules.revision"
MARK_RESPONSE = "specter.rules.response_revision"

# What each kind of call sends (the fixture's request) and must get back (the mock's bytes).
KINDS = {
    "openai": ("openai/chat_plain", "response.json"),
    "openai-stream": ("openai/chat_stream_include_usage", "response.sse"),
    "anthropic": ("anthropic/messages_plain", "response.json"),
    "anthropic-stream": ("anthropic/messages_stream", "response.sse"),
}


def expected_body(case: str, name: str) -> bytes:
    text = load_fixture(case, name) if name.endswith(".sse") else None
    if text is not None:
        return "".join(sse_events(text)).encode()
    return (REPO / "tests" / "fixtures" / case / name).read_bytes()


# ---------------------------------------------------------------------------------------------
# Replicas


@dataclass
class Replica:
    """One replica slot (a name and a port) and the processes that served on it, in order."""

    name: str
    port: int
    root: Path
    env: dict
    upstream: str
    procs: list = field(default_factory=list)  # (Popen, directory)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def providers(self) -> Path:
        return self.root / "providers"

    @property
    def proc(self) -> subprocess.Popen:
        return self.procs[-1][0]

    @property
    def directory(self) -> Path:
        return self.procs[-1][1]

    def start(self) -> None:
        directory = self.root / f"process-{len(self.procs) + 1}"
        directory.mkdir()
        args = [str(specter_binary()), "serve", "--traces-file", str(directory / "traces.jsonl")]
        args += ["--upstream", f"openai={self.upstream}", "--upstream", f"anthropic={self.upstream}"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SPECTER_"))}
        env.update(self.env, SPECTER_LISTEN=f"127.0.0.1:{self.port}", SPECTER_PROVIDERS=str(self.providers), SPECTER_QUIET="true")
        stderr = directory / "specter.stderr"
        with open(stderr, "wb") as err:
            proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=directory)
        self.procs.append((proc, directory))
        wait_http(f"{self.url}/healthz", proc, time.monotonic() + STEP_TIMEOUT, f"replica {self.name}", stderr)

    def stderr(self) -> str:
        return (self.directory / "specter.stderr").read_text(errors="replace")

    def in_flight(self) -> int:
        status, body = http_get_json(f"{self.url}/healthz")
        assert status == 200, body
        return json.loads(body)["in_flight"]

    def process_ids(self) -> list[str | None]:
        """The service.instance.id of each process of this slot (None: it exported no span)."""
        ids = []
        for _, directory in self.procs:
            found = {span["_resource"].get("service.instance.id") for span in read_spans(directory / "traces.jsonl")}
            assert len(found) <= 1, f"one process, one id: {found}"
            ids.append(found.pop() if found else None)
        return ids

    def instances(self) -> dict[str, str]:
        """span id -> service.instance.id, over every process of this slot (from the traces files)."""
        out = {}
        for _, directory in self.procs:
            for span in read_spans(directory / "traces.jsonl"):
                out[span["spanId"]] = span["_resource"].get("service.instance.id")
        return out


def http_get_json(url: str) -> tuple[int, bytes]:
    import urllib.request

    request = urllib.request.Request(url, headers={"accept": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as r:  # noqa: S310 - loopback only
        return r.status, r.read()


# ---------------------------------------------------------------------------------------------
# HAProxy


class HAProxy:
    def __init__(self, directory: Path, replicas: list[Replica]):
        self.port = free_port()
        self.socket = directory / "admin.sock"
        self.log = directory / "haproxy.log"
        config = (REPO / "deploy" / "haproxy.cfg").read_text()
        config = config.replace("bind :8787", f"bind 127.0.0.1:{self.port}")
        config = config.replace("/var/lib/haproxy/admin.sock", str(self.socket))
        for replica in replicas:
            config, n = re.subn(rf"server {replica.name} {replica.name}:8787", f"server {replica.name} 127.0.0.1:{replica.port}", config)
            assert n == 1, f"deploy/haproxy.cfg has no line `server {replica.name} {replica.name}:8787`"
        assert "bind 127.0.0.1:" in config and "admin.sock" in config
        self.config = directory / "haproxy.cfg"
        self.config.write_text(config)
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(self.config)], stdout=log, stderr=subprocess.STDOUT)
        wait_http(f"{self.url}/healthz", self.proc, time.monotonic() + STEP_TIMEOUT, "haproxy", self.log)
        for replica in replicas:
            self.wait_status(replica.name, "UP")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self, line: str) -> str:
        """One command of HAProxy's runtime API (the unix stats socket)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(self.socket))
            s.sendall(line.encode() + b"\n")
            chunks = []
            for _ in range(10_000):
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def stat(self, server: str) -> dict:
        lines = self.command("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        for line in lines[1:]:
            row = dict(zip(header, line.split(",")))
            if row.get("pxname") == "specter" and row.get("svname") == server:
                return row
        pytest.fail(f"HAProxy does not show server {server}")

    def wait_status(self, server: str, prefix: str) -> None:
        deadline = time.monotonic() + STEP_TIMEOUT
        while time.monotonic() < deadline:
            if self.stat(server)["status"].startswith(prefix):
                return
            time.sleep(0.1)
        pytest.fail(f"HAProxy's server {server} is {self.stat(server)['status']}, not {prefix}\n{self.log.read_text()[-3000:]}")


# ---------------------------------------------------------------------------------------------
# The load


@dataclass
class Call:
    kind: str
    issued: float  # wall clock, seconds
    server: str | None = None
    cause: str | None = None  # None: answered, byte for byte


class Load:
    """`calls` SDK calls (the kinds in turn) from WORKERS threads through `url`; open-ended, the
    calls go on until `finish` (at least `calls`, at most four times as many)."""

    def __init__(self, url: str, calls: int, open_ended: bool = False):
        self.calls = calls
        self.cap = calls * 4 if open_ended else calls
        self.results: list[Call] = []
        self.lock = threading.Lock()
        self.next = 0
        self.stopped = threading.Event()
        self.openai = openai.OpenAI(api_key=API_KEY, base_url=f"{url}/openai/v1", max_retries=0, timeout=30)
        self.anthropic = anthropic.Anthropic(api_key=API_KEY, base_url=f"{url}/anthropic", max_retries=0, timeout=30)
        self.expected = {kind: expected_body(*fixture) for kind, fixture in KINDS.items()}
        self.requests = {kind: load_fixture(fixture[0], "request.json") for kind, fixture in KINDS.items()}
        self.threads = [threading.Thread(target=self.worker, daemon=True) for _ in range(WORKERS)]
        self.deadline = time.monotonic() + LOAD_TIMEOUT

    def __enter__(self) -> "Load":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        for t in self.threads:
            t.join(timeout=60)
        self.openai.close()
        self.anthropic.close()

    def done(self) -> int:
        with self.lock:
            return len(self.results)

    def wait_done(self, count: int) -> None:
        """Waits (bounded) until `count` calls have finished."""
        while self.done() < min(count, self.cap) and time.monotonic() < self.deadline:
            time.sleep(0.05)
        assert self.done() >= min(count, self.cap), f"{self.done()} call(s) done, expected {count}"

    def finish(self) -> list[Call]:
        self.wait_done(self.calls)
        self.__exit__()
        assert not any(t.is_alive() for t in self.threads), "a load thread did not finish"
        return self.results

    def worker(self) -> None:
        kinds = list(KINDS)
        while not self.stopped.is_set() and time.monotonic() < self.deadline:
            with self.lock:
                if self.next >= self.cap:
                    return
                index = self.next
                self.next += 1
            call = Call(kinds[index % len(kinds)], time.time())
            try:
                body, call.server = self.one(call.kind)
                if body != self.expected[call.kind]:
                    call.cause = "answer differs from the upstream's bytes"
            except Exception as e:  # noqa: BLE001 - every failure is counted by its cause
                response = getattr(e, "response", None)
                call.server = getattr(e, "served_by", None) or (response.headers.get("x-served-by") if response is not None else None)
                status = getattr(e, "status_code", None)
                inner = e.__cause__ or e.__context__
                call.cause = type(e).__name__ + (f" {status}" if status else "") + (f" ({type(inner).__name__}: {str(inner)[:80]})" if inner else f" ({str(e)[:80]})")
            with self.lock:
                self.results.append(call)

    def one(self, kind: str) -> tuple[bytes, str | None]:
        request = dict(self.requests[kind])
        if kind == "openai":
            raw = self.openai.chat.completions.with_raw_response.create(**request)
            completion = raw.parse()
            assert completion.choices[0].message.content
            return raw.http_response.content, raw.headers.get("x-served-by")
        if kind == "anthropic":
            raw = self.anthropic.messages.with_raw_response.create(**request)
            message = raw.parse()
            assert message.content[0].text
            return raw.http_response.content, raw.headers.get("x-served-by")
        api = self.openai.chat.completions if kind == "openai-stream" else self.anthropic.messages
        with api.with_streaming_response.create(**request) as response:
            server = response.headers.get("x-served-by")
            try:
                return b"".join(response.iter_bytes()), server
            except Exception as e:
                e.served_by = server  # type: ignore[attr-defined]
                raise


def causes(calls: list[Call]) -> dict[str, int]:
    return dict(collections.Counter(c.cause for c in calls if c.cause))


# ---------------------------------------------------------------------------------------------
# The fleet


class Fleet:
    def __init__(self, directory: Path, phoenix, upstream: str, name: str):
        self.project = f"specter-scaleout-{name}-{secrets.token_hex(3)}"
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{phoenix.port}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_SERVICE_NAME": "specter-gateway",
            "OTEL_RESOURCE_ATTRIBUTES": f"openinference.project.name={self.project}",
        }
        self.phoenix = phoenix
        self.replicas = []
        for replica_name in REPLICAS:
            root = directory / replica_name
            root.mkdir()
            shutil.copytree(REPO / "providers", root / "providers")
            self.replicas.append(Replica(replica_name, free_port(), root, env, upstream))
        self.haproxy = None
        try:
            for replica in self.replicas:
                replica.start()
            self.haproxy = HAProxy(directory, self.replicas)
        except BaseException:
            self.close()
            raise

    def replica(self, name: str) -> Replica:
        return next(r for r in self.replicas if r.name == name)

    def stop_replicas(self) -> dict[str, int]:
        """SIGTERM (which flushes the exporters) to every replica still running."""
        return {r.name: stop(r.proc) for r in self.replicas if r.proc.poll() is None}

    def close(self) -> None:
        if self.haproxy:
            stop(self.haproxy.proc)
        for replica in self.replicas:
            for proc, _ in replica.procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=5)

    def instance_of(self) -> dict[str, tuple[str, str]]:
        """span id -> (replica name, service.instance.id)."""
        return {span: (r.name, instance) for r in self.replicas for span, instance in r.instances().items()}

    def backend_spans(self, expected: int) -> list[dict]:
        """The project's spans in Phoenix once it holds `expected` (bounded), and a moment later
        (so that a surplus shows)."""
        deadline = time.monotonic() + PHOENIX_SPAN_TIMEOUT
        spans: list[dict] = []
        while time.monotonic() < deadline:
            spans = self.phoenix.all_spans(self.project)
            if len(spans) >= expected:
                break
            time.sleep(0.25)
        time.sleep(1.0)
        return self.phoenix.all_spans(self.project)


@pytest.fixture
def fleet(request, phoenix, mock_upstream, tmp_path):
    if isinstance(phoenix, str):
        pytest.fail(phoenix)
    if openai is None:
        pytest.fail(f"the SDKs are not installed ({SDK_IMPORT_ERROR}): pip install -r tests/python/requirements.txt")
    if shutil.which("haproxy") is None:
        pytest.fail("haproxy is not on PATH (tests/python/run.sh installs it with apt-get)")
    fleet = Fleet(tmp_path, phoenix, mock_upstream.url, request.node.name.removeprefix("test_")[:24])
    yield fleet
    fleet.close()


def report(title: str, calls: list[Call], spans: list[dict], owners: dict) -> None:
    served = collections.Counter(c.server for c in calls if c.cause is None)
    by_instance = collections.Counter(owners.get(s["context"]["span_id"], ("?", "?")) for s in spans)
    print(f"\n{title}: {len(calls)} call(s), {len(spans)} span(s) in Phoenix, failed by cause {causes(calls)}")
    print(f"  answered by replica: {dict(sorted(served.items(), key=str))}")
    for (name, instance), n in sorted(by_instance.items()):
        print(f"  spans of {name} (service.instance.id {instance}): {n}")


def span_owners(fleet: Fleet, spans: list[dict]) -> dict[str, tuple[str, str]]:
    owners = fleet.instance_of()
    uuid = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
    for _, instance in owners.values():
        assert instance and uuid.match(instance), f"service.instance.id {instance!r} is not a UUID v4"
    return owners


# ---------------------------------------------------------------------------------------------
# The tests


def test_three_replicas_behind_haproxy_answer_every_call_and_export_every_span(fleet):
    with Load(fleet.haproxy.url, CALLS) as load:
        calls = load.finish()
    codes = fleet.stop_replicas()
    assert codes == {name: 0 for name in REPLICAS}, codes
    spans = fleet.backend_spans(len(calls))
    owners = span_owners(fleet, spans)
    report("steady load", calls, spans, owners)

    assert len(calls) == CALLS
    assert causes(calls) == {}, "every call answered with the upstream's bytes"
    served = collections.Counter(c.server for c in calls)
    assert set(served) == set(REPLICAS), f"every replica served: {served}"
    assert len(spans) == len(calls), "one span in the backend per call"
    assert len({s["context"]["span_id"] for s in spans}) == len(spans)
    instances = {owners[s["context"]["span_id"]] for s in spans}
    assert len({i for _, i in instances}) == len(REPLICAS), f"three processes, three ids: {instances}"
    spans_by_replica = collections.Counter(owners[s["context"]["span_id"]][0] for s in spans)
    assert spans_by_replica == served, "each replica's spans are its calls"
    for span in spans:
        assert span["status_code"] != "ERROR", span
        assert span["attributes"]["gen_ai.provider.name"] in ("openai", "anthropic")
        assert API_KEY not in json.dumps(span)


def test_a_replica_killed_mid_load_loses_no_other_replicas_span(fleet):
    victim = fleet.replica("specter-2")
    survivors = [r.name for r in fleet.replicas if r is not victim]
    with Load(fleet.haproxy.url, CALLS) as load:
        load.wait_done(CALLS // 3)
        # Kill while calls are in flight on the victim (bounded: up to STEP_TIMEOUT).
        deadline = time.monotonic() + STEP_TIMEOUT
        while victim.in_flight() == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        killed_at, killed_wall = load.done(), time.time()
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(timeout=10)
        fleet.haproxy.wait_status(victim.name, "DOWN")
        calls = load.finish()
    codes = fleet.stop_replicas()
    assert codes == {name: 0 for name in survivors}, codes
    answered = [c for c in calls if c.cause is None]
    from_survivors = collections.Counter(c.server for c in answered if c.server in survivors)
    spans = fleet.backend_spans(sum(from_survivors.values()))
    owners = span_owners(fleet, spans)
    report(f"{victim.name} SIGKILLed after {killed_at} call(s)", calls, spans, owners)

    failed = [c for c in calls if c.cause]
    assert len(calls) == CALLS
    assert len(failed) <= WORKERS, f"only calls in flight on the victim fail: {causes(calls)}"
    assert all(c.server in (None, victim.name) for c in failed), [(c.server, c.cause) for c in failed]
    assert not any(c.cause == "answer differs from the upstream's bytes" for c in calls)
    after = [c for c in answered if c.issued > killed_wall]
    assert after and all(c.server in survivors for c in after), "the survivors carried the load"
    spans_by_replica = collections.Counter(owners.get(s["context"]["span_id"], (victim.name, ""))[0] for s in spans)
    for name in survivors:
        assert spans_by_replica[name] == from_survivors[name], f"{name}: every call has its span in the backend"
    assert spans_by_replica[victim.name] <= sum(1 for c in calls if c.server == victim.name)


def test_a_rolling_restart_through_haproxy_fails_no_call(fleet):
    restarted = []
    with Load(fleet.haproxy.url, CALLS, open_ended=True) as load:
        for replica in fleet.replicas:
            load.wait_done(load.done() + CALLS // 8)
            fleet.haproxy.command(f"set server specter/{replica.name} state drain")
            deadline = time.monotonic() + STEP_TIMEOUT
            while (replica.in_flight() or int(fleet.haproxy.stat(replica.name)["scur"])) and time.monotonic() < deadline:
                time.sleep(0.02)
            assert replica.in_flight() == 0, f"{replica.name} drained"
            assert stop(replica.proc) == 0, replica.stderr()
            replica.start()
            fleet.haproxy.command(f"set server specter/{replica.name} state ready")
            fleet.haproxy.wait_status(replica.name, "UP")
            restarted.append((replica.name, load.done()))
        load.wait_done(load.done() + CALLS // 8)
        calls = load.finish()
    codes = fleet.stop_replicas()
    assert codes == {name: 0 for name in REPLICAS}, codes
    spans = fleet.backend_spans(len(calls))
    owners = span_owners(fleet, spans)
    report(f"rolling restart (replica, calls done when it was back): {restarted}", calls, spans, owners)

    assert len(calls) >= CALLS
    assert causes(calls) == {}, "no call fails during a rolling restart"
    assert len(spans) == len(calls), "one span in the backend per call"
    # Each process names itself: a restarted replica's spans carry another id than before.
    per_process = [ids for r in fleet.replicas for ids in r.process_ids()]
    assert len(per_process) == 2 * len(REPLICAS)
    named = [i for i in per_process if i]
    assert len(set(named)) == len(named), f"one id per process: {per_process}"
    instances = {owners[s["context"]["span_id"]][1] for s in spans}
    assert len(instances) > len(REPLICAS), f"restarted processes served calls under their own id: {instances}"


def changed_spec(text: str) -> str:
    """The spec with a marker attribute added on the request side and on the response side of
    every operation."""
    text, requests = re.subn(r"(?m)^(    request:\n      attributes:\n)", rf'\1        {MARK_REQUEST}: {{ const: "2" }}\n', text)
    text, responses = re.subn(r"(?m)^(    response:\n      attributes:\n)", rf'\1        {MARK_RESPONSE}: {{ const: "2" }}\n', text)
    assert requests and responses
    return text


def test_a_spec_change_rolled_across_replicas_gives_each_call_one_version(fleet):
    seen: dict[str, float] = {}
    with Load(fleet.haproxy.url, CALLS, open_ended=True) as load:
        for replica in fleet.replicas:
            load.wait_done(load.done() + CALLS // 6)
            for name in ("openai.yaml", "anthropic.yaml"):
                path = replica.providers / name
                staged = replica.providers / f".{name}.new"
                staged.write_text(changed_spec(path.read_text()))
                os.replace(staged, path)
            reload_both(replica)
            seen[replica.name] = time.time()
        load.wait_done(load.done() + CALLS // 6)
        calls = load.finish()
    codes = fleet.stop_replicas()
    assert codes == {name: 0 for name in REPLICAS}, codes
    spans = fleet.backend_spans(len(calls))
    owners = span_owners(fleet, spans)
    shapes = collections.Counter((MARK_REQUEST in s["attributes"], MARK_RESPONSE in s["attributes"]) for s in spans)
    report(f"spec change rolled across replicas; shapes (request mark, response mark): {dict(shapes)}", calls, spans, owners)

    assert causes(calls) == {}, "no call fails while the rules change"
    assert len(spans) == len(calls) >= CALLS
    assert set(shapes) == {(False, False), (True, True)}, f"old or new, never a mix: {shapes}"
    for span in spans:
        name = owners[span["context"]["span_id"]][0]
        started = datetime.datetime.fromisoformat(span["start_time"]).timestamp()
        if started > seen[name]:
            assert span["attributes"].get(MARK_REQUEST) == "2", f"{name} started a call after its reload with the old rules: {span}"


def reload_both(replica: Replica) -> None:
    """Waits until the replica runs the changed rules of both files: the watcher's reloads (one
    or two, for the two writes) settle, then SIGHUP makes it re-read the directory as it is now
    and its "reloaded" line is awaited."""
    deadline = time.monotonic() + STEP_TIMEOUT
    last, quiet_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        text = replica.stderr()
        assert "rejected the change" not in text, text
        count = text.count("specter: reloaded")
        if count != last:
            last, quiet_since = count, time.monotonic()
        elif time.monotonic() - quiet_since > 1.0:
            break
        time.sleep(0.05)
    replica.proc.send_signal(signal.SIGHUP)
    while time.monotonic() < deadline:
        if replica.stderr().count("specter: reloaded") > last:
            return
        time.sleep(0.05)
    pytest.fail(f"{replica.name} did not reload on SIGHUP\n{replica.stderr()}")
