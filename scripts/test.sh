#!/usr/bin/env bash
# Runs every test of smart-ai-router on a fresh machine: formatting, lints, the Rust unit and
# integration tests (each socket test runs on both the io_uring and the legacy epoll driver),
# the end-to-end tests with the official OpenAI, Anthropic and Agents Python SDKs (installed
# into target/sdk-venv) and the Vercel AI SDK (Node.js, installed into target/sdk-node), the supply-chain check (cargo-deny, offline), the Debian package built from
# the release binary and checked, with the Containerfile linted (scripts/package.sh: cargo-deb,
# lintian, help2man and hadolint are installed there when missing), and a short fuzzing run of
# every cargo-fuzz target (cargo-fuzz and cargo-deny are installed on first use). The cluster
# tests (tests/cluster.rs) start their own redis-server on loopback ports: it is installed here
# from Debian's packages when missing (the packaged service is never started or used). The
# status page is driven in a real headless Chromium (scripts/browser-test.sh installs Debian's
# chromium and websocket-client when missing).
# Needs only the Rust toolchain, gcc and Python 3; everything else is installed here.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }
started=$SECONDS

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "cargo check --no-default-features --all-targets (without the import and cluster features)"
cargo check --no-default-features --all-targets

step "redis-server for the cluster tests"
if ! command -v redis-server >/dev/null && [[ ! -x /usr/bin/redis-server ]]; then
    sudo=()
    [[ $(id -u) == 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update -q >/dev/null
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends redis-server >/dev/null
fi
# The package may start its own service on 6379; the tests never use it, and it is not ours
# to stop. Ours run on free ports without persistence.
"$(command -v redis-server || echo /usr/bin/redis-server)" --version

step "cargo test (unit + integration, both drivers)"
cargo test

step "OpenAI, Anthropic, Agents (Python) and Vercel AI (Node) SDKs end to end"
# `cargo test` built target/debug/smart-ai-router for the integration tests.
bash tests/sdk/run.sh target/debug/smart-ai-router

step "status page in headless Chromium (scripts/browser-test.sh: chromium and websocket-client installed when missing)"
bash scripts/browser-test.sh target/debug/smart-ai-router

step "cargo deny: licenses, duplicate crates, sources (offline)"
bash scripts/deny.sh

step "Debian package from the release binary: dpkg-deb, lintian, systemd-analyze verify; Containerfile: hadolint"
bash scripts/package.sh

step "fuzz every target briefly (~60 s of fuzzing; fuzz/README.md has the long run)"
bash scripts/fuzz.sh

step "all tests passed in $((SECONDS - started)) s"
