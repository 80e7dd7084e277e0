#!/usr/bin/env bash
# Prints the module graph of src/: every top-level module's layer and rank, and the edges
# between modules (`from → to`; `!` marks an edge that runs up or across a layer, which
# tests/layers.rs refuses). The layer table lives in tests/layers.rs (and lib.rs says why).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test -q --test layers -- --ignored --nocapture print_edges 2>/dev/null | grep -v '^test \|^running\|^$\|test result'
