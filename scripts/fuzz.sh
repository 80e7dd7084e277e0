#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for a bounded time (default 5 s each, about 60 s in
# all; FUZZ_SECONDS_PER_TARGET=N for longer runs; FUZZ_TARGETS="a b" for some targets only).
# Installs cargo-fuzz if missing (`cargo install --locked`, kept in ~/.cargo/bin). Only stable
# Rust exists here: RUSTC_BOOTSTRAP=1 lets it take the sanitizer and coverage flags.
#
# Seeds are read from fuzz/corpus/<t>/ (committed, never written), past crashes from
# fuzz/regressions/<t>/; what the fuzzer finds interesting grows in fuzz/work/corpus/<t>/
# (ignored by git, kept between runs). A crash, leak, timeout or OOM input is copied to
# fuzz/regressions/<t>/ and the script fails: commit it with the fix (tests/fuzz_corpus.rs
# replays it from then on). See fuzz/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

secs=${FUZZ_SECONDS_PER_TARGET:-5}
export RUSTC_BOOTSTRAP=1
target_dir="$root/fuzz/target"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

targets=${FUZZ_TARGETS:-$(cargo fuzz list)}
echo "== building fuzz targets"
cargo fuzz build --target-dir "$target_dir"

failed=()
summary=()
for t in $targets; do
    echo "== fuzzing $t for ${secs} s"
    work="fuzz/work/corpus/$t"
    artifacts="fuzz/artifacts/$t"
    mkdir -p "$work"
    rm -rf "$artifacts"
    dirs=("$work" "fuzz/corpus/$t")
    [ -d "fuzz/regressions/$t" ] && dirs+=("fuzz/regressions/$t")
    log="fuzz/work/$t.log"
    status=0
    cargo fuzz run --target-dir "$target_dir" "$t" "${dirs[@]}" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1 || status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    if [ "$status" -ne 0 ]; then
        tail -40 "$log"
        mkdir -p "fuzz/regressions/$t"
        found=0
        for f in "$artifacts"/*; do
            [ -f "$f" ] || continue
            cp "$f" "fuzz/regressions/$t/"
            echo "   saved fuzz/regressions/$t/$(basename "$f")"
            found=1
        done
        [ "$found" = 1 ] || echo "   (no artifact written; see $log)"
        failed+=("$t")
        summary+=("$t: FAILED after ${execs:-?} executions")
    else
        summary+=("$t: ${execs:-?} executions, no crash")
    fi
done

echo "== fuzz summary (${secs} s per target)"
printf '   %s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzzing found failures in: ${failed[*]}" >&2
    exit 1
fi
