#!/usr/bin/env bash
# Scale-out measurements ([cluster], README "Scale-out"): two gateway instances (release build)
# sharing one redis-server, a mock upstream, all on loopback. Measures how fast a cooldown and
# a recovery cross the fleet, how close a fleet-wide rpm holds to its rate (even and 80/20
# traffic splits), how far two instances spending one daily budget at once overshoot it, and
# what the sync costs an idle instance (CPU) and Redis (commands/s).
#
#   bash perf/cluster.sh                          # ~4 minutes after the build
#   TRIALS=10 RPM_SECONDS=20 bash perf/cluster.sh # quicker, noisier
#
# Writes perf/results/<date>-<host>-cluster.md. Bounded: every loop has a count and a deadline.
set -euo pipefail

PERF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$PERF_DIR")

TRIALS=${TRIALS:-30}            # cooldown propagation trials
RPM_SECONDS=${RPM_SECONDS:-60}  # seconds per rate-limit window
BUDGET_TRIALS=${BUDGET_TRIALS:-5}
SYNC=${SYNC:-100ms}             # [cluster] sync_interval (the default)
PERF_TIMEOUT=${PERF_TIMEOUT:-900}

if [[ -z ${PERF_GUARDED:-} ]]; then
    export PERF_GUARDED=1
    exec timeout --foreground -k 30 "$PERF_TIMEOUT" bash "$0" "$@"
fi

WORK=$PERF_DIR/work/cluster
RESULTS_DIR=$PERF_DIR/results
# shellcheck source=perf/lib.sh
source "$PERF_DIR/lib.sh"

ensure_tools python3 curl redis-server

log "cargo build --release"
(cd "$ROOT" && cargo build --release 2>"$PERF_DIR/.build-cluster.log") || { tail -30 "$PERF_DIR/.build-cluster.log" >&2; die "build"; }
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/smart-ai-router
[[ -x $BIN ]] || die "no binary at $BIN"
rm -rf "$WORK"
mkdir -p "$WORK" "$RESULTS_DIR"
mv "$PERF_DIR/.build-cluster.log" "$WORK/build.log"

read -r P_REDIS P_MOCK P_A P_B P_AA P_BA P_SOLO P_SOLOA < <(free_ports 8)

REDIS=$(command -v redis-server || echo /usr/bin/redis-server)
"$REDIS" --port "$P_REDIS" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" \
    --loglevel warning >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
"$BIN" mock-upstream --listen "127.0.0.1:$P_MOCK" --workers 1 >"$WORK/mock.log" 2>&1 &
PIDS+=($!)

# Keys: `paced` with rpm 600 (10/s for the fleet); b1..bN with a daily budget of 1.0 each.
key_sha() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
keys_toml() {
    printf '[[auth.keys]]\nname = "paced"\nsha256 = "%s"\nrpm = 600\n\n' "$(key_sha sk-paced)"
    for ((i = 1; i <= BUDGET_TRIALS; i++)); do
        printf '[[auth.keys]]\nname = "b%d"\nsha256 = "%s"\ndaily_budget = 1.0\n\n' "$i" "$(key_sha "sk-b$i")"
    done
}

# instance NAME PORT ADMIN_PORT [cluster]: writes $WORK/NAME.toml.
instance() {
    mkdir -p "$WORK/$1-state"
    {
        printf '[server]\nlisten = "127.0.0.1:%s"\nworkers = 2\n\n' "$2"
        printf '[admin]\nlisten = "127.0.0.1:%s"\n\n' "$3"
        printf '[state]\ndir = "%s"\n\n[discovery]\nenabled = false\n\n[health]\nenabled = false\n\n' "$WORK/$1-state"
        printf '[providers.up]\nkind = "openai"\nbase_url = "http://127.0.0.1:%s/v1"\nforward_headers = ["x-mock-*"]\n\n' "$P_MOCK"
        printf '[[channels]]\nid = "up-1"\nprovider = "up"\napi_key = "sk-up"\nmodels = ["m"]\n'
        printf 'pricing = { input = 1000.0, output = 1000.0 }\n\n'
        keys_toml
        if [[ ${4:-} == cluster ]]; then
            printf '[cluster]\nredis = "redis://127.0.0.1:%s/0"\ninstance_id = "%s"\nsync_interval = "%s"\n' \
                "$P_REDIS" "$1" "$SYNC"
        fi
    } >"$WORK/$1.toml"
    "$BIN" check --config "$WORK/$1.toml" >"$WORK/$1-check.txt" || die "config $1 (see $WORK/$1-check.txt)"
}
instance gw-a "$P_A" "$P_AA" cluster
instance gw-b "$P_B" "$P_BA" cluster
instance solo "$P_SOLO" "$P_SOLOA"
for n in gw-a gw-b solo; do
    "$BIN" --config "$WORK/$n.toml" >"$WORK/$n.log" 2>&1 &
    PIDS+=($!)
    eval "PID_${n//-/_}=$!"
done
for p in "$P_A" "$P_B" "$P_SOLO"; do
    for ((i = 0; i < 100; i++)); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$p/health") == 200 ]] && break
        sleep 0.1
    done
done

log "measuring (propagation, rate shares, budgets, sync cost)"
python3 "$PERF_DIR/cluster.py" \
    --a "$P_A" --a-admin "$P_AA" --b "$P_B" --b-admin "$P_BA" \
    --redis "$P_REDIS" --trials "$TRIALS" --rpm-seconds "$RPM_SECONDS" \
    --budget-trials "$BUDGET_TRIALS" --sync "$SYNC" \
    --pid-a "$PID_gw_a" --pid-solo "$PID_solo" --out "$WORK/report.md"

OUT=$RESULTS_DIR/$(date -u +%F)-$(hostname -s 2>/dev/null || echo host)-cluster.md
{
    printf '# Scale-out measurements, %s\n\n' "$(date -u '+%F %H:%M UTC')"
    printf 'Machine: %s, %s CPUs, %s. Gateway %s; %s.\n\n' \
        "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)" "$(nproc)" \
        "$(awk '/MemTotal/ {printf "%.0f GiB RAM", $2/1048576}' /proc/meminfo)" \
        "$("$BIN" version 2>/dev/null | head -1)" "$("$REDIS" --version | cut -d' ' -f1-3)"
    printf 'Two instances (2 workers each, default 50 ms tick), one redis-server, a mock upstream, on loopback; `sync_interval = %s`. Command: `bash perf/cluster.sh`.\n\n' "$SYNC"
    cat "$WORK/report.md"
} >"$OUT"
log "wrote $OUT"
cat "$OUT"
