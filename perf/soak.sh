#!/usr/bin/env bash
# Soak: JSON and streaming traffic for SOAK_SECONDS (10 minutes by default) through a gateway
# whose model is served by three channels, two of them broken (one answers every request 503,
# one resets every connection), while the config is reloaded every RELOAD_EVERY seconds and the
# 503 upstream is killed and restarted every RESTART_EVERY seconds. Failover must hide all of
# it: the client sees zero errors. Meanwhile the gateway's RSS and descriptors are sampled every
# 5 s; the log must hold no panic. Loopback only; writes perf/results/<date>-<host>-soak.md.
#
#   bash perf/soak.sh                     # 10 minutes
#   SOAK_SECONDS=120 bash perf/soak.sh    # quicker
set -euo pipefail

PERF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$PERF_DIR")

SOAK_SECONDS=${SOAK_SECONDS:-600}
RATE=${RATE:-1000}                 # JSON requests per second
STREAMS=${STREAMS:-200}            # concurrent streams per burst, bursts back to back
RELOAD_EVERY=${RELOAD_EVERY:-30}
RESTART_EVERY=${RESTART_EVERY:-60}
PERF_TIMEOUT=${PERF_TIMEOUT:-$((SOAK_SECONDS + 600))}

if [[ -z ${PERF_GUARDED:-} ]]; then
    export PERF_GUARDED=1
    exec timeout --foreground -k 30 "$PERF_TIMEOUT" bash "$0" "$@"
fi

WORK=$PERF_DIR/work/soak
RESULTS_DIR=$PERF_DIR/results
# shellcheck source=perf/lib.sh
source "$PERF_DIR/lib.sh"
ensure_tools python3 curl

log "cargo build --release (gateway and perf/loadgen.rs)"
(cd "$ROOT" && cargo build --release --bin smart-ai-router --example loadgen 2>"$PERF_DIR/.soak-build.log") \
    || { tail -30 "$PERF_DIR/.soak-build.log" >&2; die "build"; }
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release/smart-ai-router
LOADGEN=$TARGET_DIR/release/examples/loadgen
rm -rf "$WORK"
mkdir -p "$WORK" "$RESULTS_DIR"
mv "$PERF_DIR/.soak-build.log" "$WORK/build.log"

read -r P_OK P_503 P_RST P_GW < <(free_ports 4)

# mock NAME PORT ARGS...: starts a mock upstream; sets MOCK_PID.
mock() {
    "$BIN" mock-upstream --listen "127.0.0.1:$2" "${@:3}" >>"$WORK/$1.log" 2>&1 &
    MOCK_PID=$!
    PIDS+=("$MOCK_PID")
}
mock ok "$P_OK" --latency 5ms --chunks 16 --interval 10ms
mock 503 "$P_503" --status 503
M503=$MOCK_PID
mock rst "$P_RST" --reset

# The model `soak` on three channels; the broken ones rank first (priority), so every request
# meets a failure before failover reaches the healthy one, whenever they are in rotation.
config() { # WEIGHT: changes on every reload so each reload publishes a new snapshot
    cat <<EOF
[server]
listen = "127.0.0.1:$P_GW"
workers = 2

[log]
level = "warn"

[state]
dir = "$WORK/state"

[routing]
cooldown_base = "1s"
cooldown_max = "5s"

[admin]
listen = "127.0.0.1:0"

[providers.ok]
kind = "openai"
base_url = "http://127.0.0.1:$P_OK/v1"

[providers.down]
kind = "openai"
base_url = "http://127.0.0.1:$P_503/v1"

[providers.rst]
kind = "openai"
base_url = "http://127.0.0.1:$P_RST/v1"

[[channels]]
id = "down"
provider = "down"
api_key = "sk-soak"
models = ["soak"]
priority = 10

[[channels]]
id = "rst"
provider = "rst"
api_key = "sk-soak"
models = ["soak"]
priority = 10

[[channels]]
id = "ok"
provider = "ok"
api_key = "sk-soak"
models = ["soak"]
weight = $1
EOF
}
config 1 >"$WORK/gateway.toml"
"$BIN" check --config "$WORK/gateway.toml" >"$WORK/check.txt" || die "config (see $WORK/check.txt)"
"$BIN" --config "$WORK/gateway.toml" >"$WORK/gateway.log" 2>&1 &
GW_PID=$!
PIDS+=("$GW_PID")
printf '%s' '{"model":"soak","messages":[{"role":"user","content":"Say hello"}]}' >"$WORK/json.json"
printf '%s' '{"model":"soak","stream":true,"messages":[{"role":"user","content":"Say hello"}]}' >"$WORK/sse.json"
URL=http://127.0.0.1:$P_GW/v1/chat/completions
for ((i = 0; i < 200; i++)); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 -H 'Content-Type: application/json' \
        --data-binary @"$WORK/json.json" "$URL" || true) == 200 ]] && break
    alive "$GW_PID" || die "gateway exited (see $WORK/gateway.log)"
    sleep 0.05
done

log "soak: ${SOAK_SECONDS}s of $RATE req/s JSON + bursts of $STREAMS streams; reload every ${RELOAD_EVERY}s, upstream restart every ${RESTART_EVERY}s"
"$LOADGEN" rate --url "$URL" --body "$WORK/json.json" --rate "$RATE" --seconds "$SOAK_SECONDS" \
    >"$WORK/json.txt" 2>>"$WORK/loadgen.err" &
JSON_PID=$!
PIDS+=("$JSON_PID")
(
    end=$((SECONDS + SOAK_SECONDS - 5))
    while ((SECONDS < end)); do
        "$LOADGEN" streams --url "$URL" --body "$WORK/sse.json" --streams "$STREAMS" --connect-ms 300 \
            | grep '^LOADGEN ' || true
    done
) >"$WORK/streams.txt" 2>>"$WORK/loadgen.err" &
SSE_PID=$!
PIDS+=("$SSE_PID")

SAMPLES=$WORK/samples.tsv
printf 't_s\trss_kib\tfds\n' >"$SAMPLES"
start=$SECONDS reloads=0 restarts=0 weight=1
next_reload=$RELOAD_EVERY next_restart=$RESTART_EVERY
while alive "$JSON_PID"; do
    t=$((SECONDS - start))
    printf '%s\t%s\t%s\n' "$t" "$(rss_kib "$GW_PID" VmRSS)" \
        "$(find "/proc/$GW_PID/fd" -mindepth 1 -maxdepth 1 | wc -l)" >>"$SAMPLES"
    if ((t >= next_reload)); then
        weight=$((weight % 3 + 1))
        config "$weight" >"$WORK/gateway.toml.tmp" && mv "$WORK/gateway.toml.tmp" "$WORK/gateway.toml"
        kill -HUP "$GW_PID"
        reloads=$((reloads + 1))
        next_reload=$((next_reload + RELOAD_EVERY))
    fi
    if ((t >= next_restart)); then
        kill -KILL "$M503" 2>/dev/null || true
        wait "$M503" 2>/dev/null || true
        mock 503 "$P_503" --status 503
        M503=$MOCK_PID
        restarts=$((restarts + 1))
        next_restart=$((next_restart + RESTART_EVERY))
    fi
    alive "$GW_PID" || die "the gateway died (see $WORK/gateway.log)"
    sleep 5
done
wait "$JSON_PID" || true
wait "$SSE_PID" || true
sleep 2
RSS_END=$(rss_kib "$GW_PID" VmRSS)
FDS_END=$(find "/proc/$GW_PID/fd" -mindepth 1 -maxdepth 1 | wc -l)
PANICS=$(grep -c -i 'panick' "$WORK/gateway.log" || true)

OUT=$RESULTS_DIR/$(date '+%Y-%m-%d')-$(hostname)-soak.md
rc=0
python3 - "$WORK" "$OUT" "$SOAK_SECONDS" "$RATE" "$STREAMS" "$reloads" "$restarts" "$RSS_END" "$FDS_END" "$PANICS" \
    "$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)" <<'PY' || rc=$?
import sys, statistics
work, out, secs, rate, streams, reloads, restarts, rss_end, fds_end, panics, commit = sys.argv[1:]
def fields(line):
    d = {}
    for kv in line.split()[1:]:
        k, _, v = kv.partition("=")
        try:
            d[k] = float(v)
        except ValueError:
            d[k] = v
    return d
json = [fields(l) for l in open(f"{work}/json.txt") if l.startswith("LOADGEN ")]
bursts = [fields(l) for l in open(f"{work}/streams.txt") if l.startswith("LOADGEN ")]
errs = ("non2xx", "err_connect", "err_io", "err_closed", "err_malformed", "err_timeout")
json_errors = sum(int(sum(j.get(k, 0) for k in errs)) for j in json)
stream_errors = sum(int(sum(b.get(k, 0) for k in errs)) for b in bursts)
stalls = sum(int(b.get("stalls", 0)) for b in bursts)
samples = [l.rstrip("\n").split("\t") for l in open(f"{work}/samples.tsv")][1:]
pts = [(float(t), float(r)) for t, r, _ in samples]
fds = [int(f) for _, _, f in samples]
half = [p for p in pts if p[0] >= pts[-1][0] / 2] if pts else []
def slope(p):
    if len(p) < 3:
        return float("nan")
    mt = sum(t for t, _ in p) / len(p); my = sum(y for _, y in p) / len(p)
    den = sum((t - mt) ** 2 for t, _ in p)
    return 60 * sum((t - mt) * (y - my) for t, y in p) / den if den else float("nan")
lines = [
    f"# Soak — commit {commit}", "",
    f"`bash perf/soak.sh` with SOAK_SECONDS={secs}: {rate} req/s JSON plus back-to-back bursts of {streams} streams "
    "through a gateway (2 workers) whose model has three channels: one answering 503, one resetting every "
    "connection (both ranked first), one healthy. Config reloaded every RELOAD_EVERY s (a weight changes), "
    "the 503 upstream killed and restarted every RESTART_EVERY s.", "",
    "| figure | value |", "|---|---:|",
    f"| JSON requests completed | {int(json[0]['completed']) if json else 0} |",
    f"| JSON p50 / p99 | {json[0]['p50_us']/1e3:.2f} / {json[0]['p99_us']/1e3:.2f} ms |" if json else "| JSON | none |",
    f"| stream bursts / streams complete | {len(bursts)} / {sum(int(b['complete']) for b in bursts)} |",
    f"| client errors (JSON + streams) | {json_errors + stream_errors} |",
    f"| stream stalls | {stalls} |",
    f"| reloads / upstream restarts | {reloads} / {restarts} |",
    f"| panics in the gateway log | {panics} |",
    f"| RSS first / max / last sample; after | {pts[0][1]:.0f} / {max(r for _, r in pts):.0f} / {pts[-1][1]:.0f}; {rss_end} KiB |" if pts else "",
    f"| RSS slope over the second half | {slope(half):+.1f} KiB/min |",
    f"| descriptors min / max; after | {min(fds)} / {max(fds)}; {fds_end} |" if fds else "",
    "", "## Samples", "", "```", open(f"{work}/samples.tsv").read().rstrip(), "```", "",
]
open(out, "w").write("\n".join(lines))
print("\n".join(lines[:16]))
bad = json_errors + stream_errors + int(panics)
sys.exit(2 if bad else 0)
PY
log "results: $OUT"
exit "$rc"
