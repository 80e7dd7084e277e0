#!/usr/bin/env bash
# End-to-end test of the gateway with the official OpenAI Python SDK.
# Usage: tests/sdk/run.sh [BINARY] [unittest args...]   (default BINARY: target/debug/smart-ai-router)
set -euo pipefail

BINARY=""
# A BINARY given on the command line is relative to the caller's directory.
if [[ $# -gt 0 ]]; then
    BINARY="$(realpath -m -- "$1")"
    shift
fi
cd "$(dirname "$0")/../.."
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

PYTHON="${PYTHON:-python3}"
VENV=target/sdk-venv
if [[ ! -x "$VENV/bin/python" ]]; then
    echo "creating venv $VENV" >&2
    "$PYTHON" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import openai' >/dev/null 2>&1; then
    echo "installing openai into $VENV" >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check 'openai>=1.50,<3'
fi

exec "$VENV/bin/python" tests/sdk/test_openai_sdk.py "$BINARY" "$@"
