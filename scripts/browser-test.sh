#!/usr/bin/env bash
# The status page in a real headless Chromium (tests/browser/test_status_page.py): sign in,
# see the channels, click "Disable", see the state change, save docs/status-page.png.
# Installs what it needs when missing: Debian's chromium (apt-get), and websocket-client (the
# Chrome DevTools Protocol is spoken over one websocket) into target/browser-venv.
# Usage: scripts/browser-test.sh [BINARY]   (default target/debug/smart-ai-router, built if missing)
set -euo pipefail

BINARY=""
if [[ $# -gt 0 ]]; then
    BINARY="$(realpath -m -- "$1")"
    shift
fi
cd "$(dirname "$0")/.."
BINARY="${BINARY:-target/debug/smart-ai-router}"

if [[ ! -x "$BINARY" ]]; then
    if [[ "$BINARY" == "target/debug/smart-ai-router" ]]; then
        echo "building $BINARY" >&2
        cargo build
    else
        echo "error: binary not found: $BINARY" >&2
        exit 1
    fi
fi

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x "$CHROMIUM" ]]; then
    echo "installing Debian's chromium" >&2
    sudo=()
    [[ $(id -u) == 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update -q >/dev/null
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null
fi
"$CHROMIUM" --version 2>/dev/null || true

PYTHON="${PYTHON:-python3}"
VENV=target/browser-venv
if [[ ! -x "$VENV/bin/python" ]]; then
    echo "creating venv $VENV" >&2
    "$PYTHON" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import websocket" >/dev/null 2>&1; then
    echo "installing websocket-client into $VENV" >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check 'websocket-client>=1.6,<2'
fi

CHROMIUM="$CHROMIUM" exec "$VENV/bin/python" tests/browser/test_status_page.py "$BINARY" "$@"
