#!/usr/bin/env bash
# Supply-chain check of Cargo.lock with cargo-deny (deny.toml): licenses, bans (duplicate
# crates, wildcards) and sources (crates.io only). Offline: the advisory database cannot be
# fetched on our machines, so `advisories` is not run here (see deny.toml).
# Installs cargo-deny if missing (`cargo install --locked`, kept in ~/.cargo/bin; a few
# minutes of build the first time).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deny --version >/dev/null 2>&1; then
    echo "== installing cargo-deny"
    cargo install cargo-deny --locked
fi
# Cargo.lock is committed and is what the manifest resolves to (`--locked` fails otherwise);
# fetching the crates it names (from crates.io) lets the check below run offline.
git ls-files --error-unmatch Cargo.lock >/dev/null
cargo fetch --locked --quiet
cargo deny --offline --locked check bans licenses sources
