#!/usr/bin/env python3
"""Instruction counts of the `specter serve` gateway per proxied call, under callgrind.

Runs a mock OpenAI upstream (the recorded `chat_plain` response) and the gateway under
`valgrind --tool=callgrind` on 127.0.0.1, sends `--warmup` calls, zeroes the counters, sends
`--requests` calls one after the other on one keep-alive connection, dumps the counters and stops
the gateway. The dump holds only the measured calls, so its total over `--requests` is the
gateway's instructions per call (its idle runtime wake-ups included).

    scripts/callgrind-gateway.py --specter target/release/specter --out /tmp/cg.instr \
        [--requests 1000] [--warmup 100] [--capture on|off] [-- EXTRA SERVE ARGS]

`--no-instrument`, `--no-traces-file`, `--quiet` and so on go after `--`. Every loop is bounded in
count and time; nothing leaves loopback.
"""

import argparse
import http.client
import http.server
import os
import pathlib
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "openai" / "chat_plain"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mock(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    body = (FIXTURE / "response.json").read_bytes()

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        self.rfile.read(length)
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


def wait_listening(port, deadline):
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            return
        except OSError:
            time.sleep(0.2)
    sys.exit("the gateway did not answer /healthz in time")


def send(conn, request, count):
    for _ in range(count):
        conn.request(
            "POST",
            "/openai/v1/chat/completions",
            body=request,
            headers={"content-type": "application/json", "authorization": "Bearer test"},
        )
        response = conn.getresponse()
        data = response.read()
        if response.status != 200 or len(data) != len(Mock.body):
            sys.exit(f"bad answer: {response.status} {len(data)} bytes")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--specter", default=str(ROOT / "target" / "release" / "specter"))
    parser.add_argument("--out", required=True)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument(
        "--capture", choices=["on", "off"], default="on",
        help="message content capture (OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT)",
    )
    parser.add_argument("serve_args", nargs="*")
    args = parser.parse_args()
    # The gateway runs in a directory of its own: a relative path must not depend on it.
    args.specter = os.path.abspath(args.specter)
    if not os.access(args.specter, os.X_OK):
        sys.exit(f"{args.specter}: not an executable (build it: cargo build --release --bin specter)")

    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Mock)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="specter-callgrind-")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SPECTER_"))}
    env["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = (
        "SPAN_ONLY" if args.capture == "on" else "false"
    )
    gateway = subprocess.Popen(
        [
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={args.out}",
            args.specter, "serve", "--listen", f"127.0.0.1:{port}",
            "--upstream", f"openai=http://127.0.0.1:{upstream.server_address[1]}",
            *args.serve_args,
        ],
        cwd=workdir, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(workdir, "stderr.log"), "wb"),
    )
    try:
        wait_listening(port, time.monotonic() + 120)
        request = (FIXTURE / "request.json").read_bytes()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        send(conn, request, args.warmup)
        time.sleep(1.0)  # the last spans finish on their own task
        subprocess.run(["callgrind_control", "-z", str(gateway.pid)], check=True,
                       stdout=subprocess.DEVNULL, timeout=60)
        send(conn, request, args.requests)
        time.sleep(1.0)
        subprocess.run(["callgrind_control", "-d", str(gateway.pid)], check=True,
                       stdout=subprocess.DEVNULL, timeout=60)
    finally:
        gateway.terminate()
        gateway.wait(timeout=60)
        upstream.shutdown()
    for dump in sorted(pathlib.Path(args.out).parent.glob(pathlib.Path(args.out).name + ".*")):
        text = dump.read_text(errors="replace")
        match = re.search(r"^summary: (\d+)", text, re.M)
        if match and re.search(r"^desc: Trigger: .*dump", text, re.M):
            total = int(match.group(1))
            print(f"{dump}: {total} instructions, {total / args.requests:.0f} per call")
    print(f"stderr of the gateway: {os.path.join(workdir, 'stderr.log')}")


if __name__ == "__main__":
    main()
