#!/usr/bin/env bash
# End-to-end tests of the gateway with the official OpenAI, Anthropic and Google GenAI Python
# SDKs, the OpenAI Agents SDK and the Vercel AI SDK (Node.js, from tests/sdk/node/package-lock.json).
# Usage: tests/sdk/run.sh [BINARY] [unittest args...]   (default BINARY: target/debug/smart-ai-router)
# Every suite always runs (each starts its own mock and gateway); the exit status is non-zero
# when any fails. unittest args (e.g. -k NAME) are passed to each.
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
# Each SDK is installed only when missing, so reruns are offline and quick.
install() { # MODULE PIN
    if ! "$VENV/bin/python" -c "import $1" >/dev/null 2>&1; then
        echo "installing $1 into $VENV" >&2
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$2"
    fi
}
install openai 'openai>=1.50,<3'
# Recent enough that messages.count_tokens is out of beta (client.messages, not client.beta).
install anthropic 'anthropic>=0.50,<1'
# google-genai with its default api_version (v1) is what the Gemini ingress on /v1 is for.
install google.genai 'google-genai>=1.40,<4'
install agents 'openai-agents>=0.3,<1'

# The Vercel AI SDK, with the machine's Node.js, into target/sdk-node (reinstalled when the
# lock file changes).
NODE_DIR=target/sdk-node
if ! command -v node >/dev/null; then
    echo "error: node is needed for the Vercel AI SDK tests (Node.js 18 or newer)" >&2
    exit 1
fi
if ! cmp -s tests/sdk/node/package-lock.json "$NODE_DIR/package-lock.json" 2>/dev/null \
    || [[ ! -d "$NODE_DIR/node_modules" ]]; then
    echo "installing the Vercel AI SDK into $NODE_DIR" >&2
    mkdir -p "$NODE_DIR"
    cp tests/sdk/node/package.json tests/sdk/node/package-lock.json "$NODE_DIR/"
    (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error)
fi
export NODE_MODULES="$PWD/$NODE_DIR/node_modules"

failed=()
"$VENV/bin/python" tests/sdk/test_openai_sdk.py "$BINARY" "$@" || failed+=(openai)
"$VENV/bin/python" tests/sdk/test_anthropic_sdk.py "$BINARY" "$@" || failed+=(anthropic)
"$VENV/bin/python" tests/sdk/test_genai_sdk.py "$BINARY" "$@" || failed+=(genai)
"$VENV/bin/python" tests/sdk/test_responses_sdk.py "$BINARY" "$@" || failed+=(responses)
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "SDK end-to-end tests failed: ${failed[*]}" >&2
    exit 1
fi
