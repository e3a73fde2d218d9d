#!/usr/bin/env bash
# End-to-end tests of `specter serve` with the official OpenAI and Anthropic Python SDKs, with
# Arize Phoenix as an OTLP backend (gRPC and HTTP/protobuf), and of its trace viewer in Chromium.
# Run from anywhere:
#   bash tests/python/run.sh [pytest args...]
# Installs tests/python/requirements.txt when its packages are not importable, and haproxy and
# chromium (apt-get) when they are missing, builds the debug binary when it is missing (in
# CARGO_TARGET_DIR, default target/; SPECTER_BIN overrides the binary), and exits with pytest's
# status.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
start=$(date +%s)
PYTHON=${PYTHON:-python3}

# Importable? (Checked without importing: importing Phoenix alone takes ~12 s.)
if ! "$PYTHON" - >/dev/null 2>&1 <<'PY'
import importlib.util, pathlib, sys
missing = [m for m in ("openai", "anthropic", "pytest", "phoenix", "yaml", "playwright") if importlib.util.find_spec(m) is None]
if not (pathlib.Path(sys.executable).parent / "hadolint").exists():
    missing.append("hadolint")
if not missing:
    phoenix = importlib.util.find_spec("phoenix").submodule_search_locations
    if not any((pathlib.Path(p) / "server" / "main.py").is_file() for p in phoenix):
        missing.append("phoenix.server")
sys.exit(1 if missing else 0)
PY
then
    echo "run.sh: installing tests/python/requirements.txt" >&2
    if ! out=$("$PYTHON" -m pip install -q -r tests/python/requirements.txt 2>&1); then
        if grep -q externally-managed-environment <<<"$out"; then
            # A distribution's Python (PEP 668): these are test-only packages, install them anyway.
            PIP_BREAK_SYSTEM_PACKAGES=1 "$PYTHON" -m pip install -q -r tests/python/requirements.txt
        else
            echo "$out" >&2
            exit 1
        fi
    fi
fi

# HAProxy, the load balancer of the scale-out tests (Debian's package).
if ! command -v haproxy >/dev/null 2>&1; then
    echo "run.sh: installing haproxy" >&2
    if ! apt-get install -y -q haproxy >/dev/null 2>&1; then
        apt-get update -q >/dev/null
        apt-get install -y -q haproxy >/dev/null
    fi
fi

# Chromium, the browser of the trace viewer tests (Debian's package; Playwright drives it, no
# `playwright install`).
if [[ ! -x /usr/bin/chromium ]]; then
    echo "run.sh: installing chromium" >&2
    if ! apt-get install -y -q chromium >/dev/null 2>&1; then
        apt-get update -q >/dev/null
        apt-get install -y -q chromium >/dev/null
    fi
fi

# The binary under test: SPECTER_BIN, else the debug build in CARGO_TARGET_DIR (default target/).
if [[ -z "${SPECTER_BIN:-}" ]]; then
    export SPECTER_BIN="${CARGO_TARGET_DIR:-target}/debug/specter"
    if [[ ! -x "$SPECTER_BIN" ]]; then
        echo "run.sh: building $SPECTER_BIN" >&2
        cargo build --bin specter
    fi
fi
# Absolute, because some tests start the gateway in a directory of its own.
SPECTER_BIN=$(realpath "$SPECTER_BIN")

status=0
"$PYTHON" -m pytest -q -s tests/python "$@" || status=$?
echo "run.sh: finished in $(( $(date +%s) - start )) s with status $status" >&2
exit $status
