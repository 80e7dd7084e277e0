#!/usr/bin/env bash
# Sustained load, many streams, and a memory soak: the gateway against nginx proxy_pass and
# against the upstream itself, on loopback, with perf/loadgen.rs as the client. See
# perf/README.md ("load.sh") for the method and how to read the results.
#
#   bash perf/load.sh                                   # ~12 minutes after the build
#   RATES="5000" STREAMS="1000" SOAK_SECONDS=60 bash perf/load.sh   # quicker
#
# Layout on two CPUs: the load generator and both mock upstreams on the first CPU, the proxy
# under test (gateway or nginx, one worker each) alone on the last, so what the proxy adds is not
# hidden behind a client fighting it for a core.
set -euo pipefail

PERF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$PERF_DIR")

RATES=${RATES:-"5000 20000"}       # open-loop request rates (req/s)
RATE_SECONDS=${RATE_SECONDS:-10}   # seconds per rate run
RATE_ROUNDS=${RATE_ROUNDS:-3}      # rounds per rate, targets rotated
UPSTREAM_LATENCY=${UPSTREAM_LATENCY:-20ms}
STREAMS=${STREAMS:-"200 1000 8000"}  # concurrent SSE streams
STREAM_ROUNDS=${STREAM_ROUNDS:-2}
STREAM_EVENTS=${STREAM_EVENTS:-64} # content events per stream (the mock adds role, finish, [DONE])
STREAM_INTERVAL=${STREAM_INTERVAL:-20ms}
SOAK_SECONDS=${SOAK_SECONDS:-300}  # memory soak: JSON at SOAK_RATE plus repeated stream bursts
SOAK_RATE=${SOAK_RATE:-2000}
SOAK_STREAMS=${SOAK_STREAMS:-500}
USAGE_LOG=${USAGE_LOG:-true}
PERF_TIMEOUT=${PERF_TIMEOUT:-2400}

if [[ -z ${PERF_GUARDED:-} ]]; then
    export PERF_GUARDED=1
    exec timeout --foreground -k 30 "$PERF_TIMEOUT" bash "$0" "$@"
fi

WORK=$PERF_DIR/work/load   # gitignored
DATA=$WORK/data
RESULTS_DIR=$PERF_DIR/results

# shellcheck source=perf/lib.sh
source "$PERF_DIR/lib.sh"

ensure_tools nginx python3 curl taskset pgrep

log "cargo build --release (gateway and perf/loadgen.rs)"
(cd "$ROOT" && cargo build --release --bin smart-ai-router --example loadgen 2>"$PERF_DIR/.load-build.log") \
    || { tail -30 "$PERF_DIR/.load-build.log" >&2; die "build"; }
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release/smart-ai-router
LOADGEN=$TARGET_DIR/release/examples/loadgen
[[ -x $BIN && -x $LOADGEN ]] || die "no binaries under $TARGET_DIR/release"

rm -rf "$WORK"
mkdir -p "$DATA" "$RESULTS_DIR"
mv "$PERF_DIR/.load-build.log" "$WORK/build.log"

pin_layout
if ((CLIENT_CPU != SERVER_CPU)); then
    PIN_CLIENT=(taskset -c "$CLIENT_CPU")
    PIN_SERVER=(taskset -c "$SERVER_CPU")
    LAYOUT="loadgen and mock upstreams on CPU $CLIENT_CPU; the proxy under test alone on CPU $SERVER_CPU"
else
    PIN_CLIENT=()
    PIN_SERVER=()
    LAYOUT="single CPU: nothing pinned"
fi
read -r P_JSON P_SSE P_NGX P_NGX_SSE P_GW < <(free_ports 5)

# Loopback packets queue in a per-CPU backlog of net.core.netdev_max_backlog (1000 by default);
# thousands of streams emitting at once overflow it, the kernel drops, and TCP retransmits after
# 200 ms or more: every target then shows 200 ms gaps that measure the sysctl, not the proxy.
# Raised for the run (when we may) and restored on exit; the results record both values.
BACKLOG_FILE=/proc/sys/net/core/netdev_max_backlog
BACKLOG_WAS=$(cat "$BACKLOG_FILE" 2>/dev/null || echo unknown)
BACKLOG_RUN=$BACKLOG_WAS
if [[ $BACKLOG_WAS =~ ^[0-9]+$ ]] && ((BACKLOG_WAS < 65536)) && { echo 65536 >"$BACKLOG_FILE"; } 2>/dev/null; then
    BACKLOG_RUN=65536
    ON_EXIT+=("echo $BACKLOG_WAS >$BACKLOG_FILE")
fi

BUSY_BEFORE=$(busy_pct)
((BUSY_BEFORE < 10)) || log "WARNING: the box is ${BUSY_BEFORE}% busy before we start: expect noisy figures"

# ---------------------------------------------------------------------------------------------
# Upstreams: the crate's own mock (monoio, one thread each), on the client's CPU.
start_mock() { # NAME PORT ARGS...: sets MOCK_PID
    "${PIN_CLIENT[@]}" "$BIN" mock-upstream --listen "127.0.0.1:$2" "${@:3}" >"$WORK/$1.log" 2>&1 &
    MOCK_PID=$!
    PIDS+=("$MOCK_PID")
}
start_mock mock-json "$P_JSON" --latency "$UPSTREAM_LATENCY"
MOCK_JSON=$MOCK_PID
start_mock mock-sse "$P_SSE" --chunks "$STREAM_EVENTS" --interval "$STREAM_INTERVAL"
MOCK_SSE=$MOCK_PID

printf '%s' '{"model":"bench-json","messages":[{"role":"user","content":"Say hello"}]}' >"$WORK/json.json"
printf '%s' '{"model":"bench-sse","stream":true,"messages":[{"role":"user","content":"Say hello"}]}' >"$WORK/sse.json"

# wait_post PID URL BODY: until a POST answers 200.
wait_post() {
    local i
    for ((i = 0; i < 200; i++)); do
        alive "$1" || die "process $1 exited before $2 answered (see $WORK/*.log)"
        [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 -H 'Content-Type: application/json' \
            --data-binary @"$3" "$2" || true) == 200 ]] && return 0
        sleep 0.05
    done
    die "$2 did not answer 200 within 10 s"
}

render "$PERF_DIR/nginx/load-proxy.conf.tmpl" "$WORK/load-proxy.conf" WORK="$WORK" PORT="$P_NGX" \
    SSE_PORT="$P_NGX_SSE" JSON_UP="$P_JSON" SSE_UP="$P_SSE"
start_nginx loadproxy "$WORK/load-proxy.conf" "${PIN_SERVER[@]}"
NGX_W=$NGINX_WORKER

render "$PERF_DIR/load-gateway.toml.tmpl" "$WORK/gateway.toml" LISTEN="127.0.0.1:$P_GW" \
    JSON_UP="$P_JSON" SSE_UP="$P_SSE" STATE="$WORK/state" USAGE_LOG="$USAGE_LOG"
"$BIN" check --config "$WORK/gateway.toml" >"$WORK/gateway-check.txt" || die "gateway config (see $WORK/gateway-check.txt)"
"${PIN_SERVER[@]}" "$BIN" --config "$WORK/gateway.toml" --workers 1 >"$WORK/gateway.log" 2>&1 &
GW_PID=$!
PIDS+=("$GW_PID")

# url KIND TARGET: where a target answers JSON (json) or streams (sse).
url() {
    case $1:$2 in
        json:direct) echo "http://127.0.0.1:$P_JSON/v1/chat/completions" ;;
        json:nginx) echo "http://127.0.0.1:$P_NGX/v1/chat/completions" ;;
        sse:direct) echo "http://127.0.0.1:$P_SSE/v1/chat/completions" ;;
        sse:nginx) echo "http://127.0.0.1:$P_NGX_SSE/v1/chat/completions" ;;
        *:gateway) echo "http://127.0.0.1:$P_GW/v1/chat/completions" ;;
    esac
}
# server_pid TARGET: the process whose CPU and memory a run reads (direct: the mock itself).
server_pid() {
    case $1 in direct) echo "${2:-$MOCK_JSON}" ;; nginx) echo "$NGX_W" ;; gateway) echo "$GW_PID" ;; esac
}

for t in direct nginx gateway; do
    wait_post "$(server_pid "$t")" "$(url json "$t")" "$WORK/json.json"
    wait_post "$(server_pid "$t" "$MOCK_SSE")" "$(url sse "$t")" "$WORK/sse.json"
done
sleep 1
RSS_IDLE=$(rss_kib "$GW_PID" VmRSS)
NGX_RSS_IDLE=$(rss_kib "$NGX_W" VmRSS)

RUNS=$DATA/runs.tsv
printf 'phase\tround\tsize\ttarget\tserver_ticks\tserver_rss_after_kib\tline\n' >"$RUNS"

# run PHASE ROUND SIZE TARGET ARGS...: one loadgen run, with the server's CPU ticks around it.
run() {
    local phase=$1 round=$2 size=$3 target=$4 pid line t0 t1
    pid=$(server_pid "$target" "$([[ $phase == streams ]] && echo "$MOCK_SSE")")
    t0=$(cpu_ticks "$pid")
    line=$(timeout -k 5 300 "${PIN_CLIENT[@]}" "$LOADGEN" "${@:5}" --pid "$pid" 2>>"$WORK/loadgen.err" \
        | grep '^LOADGEN ') || die "loadgen failed ($phase $size $target; see $WORK/loadgen.err)"
    t1=$(cpu_ticks "$pid")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$phase" "$round" "$size" "$target" $((t1 - t0)) \
        "$(rss_kib "$pid" VmRSS)" "${line#LOADGEN }" >>"$RUNS"
    log "$(printf '%-7s r%s %5s %-7s %s' "$phase" "$round" "$size" "$target" \
        "$(grep -oE '(achieved_rps|p50_us|p99_us|complete|stalls|gap_p99_us|ttft_p99_us|rss_peak_kib)=[0-9.]+' <<<"$line" | tr '\n' ' ')")"
    sleep 1
}

TARGETS=(direct nginx gateway)
# ---------------------------------------------------------------------------------------------
# 1. Open-loop fixed rate against the 20 ms upstream.
log "fixed rate: {$RATES} req/s x $RATE_ROUNDS rounds x {direct,nginx,gateway}, ${RATE_SECONDS}s each"
for rate in $RATES; do
    for ((r = 1; r <= RATE_ROUNDS; r++)); do
        for ((k = 0; k < 3; k++)); do
            t=${TARGETS[(r - 1 + k) % 3]}
            run rate "$r" "$rate" "$t" rate --url "$(url json "$t")" --body "$WORK/json.json" \
                --rate "$rate" --seconds "$RATE_SECONDS"
        done
    done
done

# ---------------------------------------------------------------------------------------------
# 2. Concurrent paced SSE streams.
log "streams: {$STREAMS} concurrent x $STREAM_ROUNDS rounds x {direct,nginx,gateway}"
for n in $STREAMS; do
    for ((r = 1; r <= STREAM_ROUNDS; r++)); do
        for ((k = 0; k < 3; k++)); do
            t=${TARGETS[(r - 1 + k) % 3]}
            run streams "$r" "$n" "$t" streams --url "$(url sse "$t")" --body "$WORK/sse.json" --streams "$n"
        done
    done
done
RSS_AFTER_LOAD=$(rss_kib "$GW_PID" VmRSS)

# ---------------------------------------------------------------------------------------------
# 3. Soak: JSON at a fixed rate for the whole time, plus bursts of streams back to back; the
# gateway's RSS and open descriptors sampled every 5 s.
log "soak: ${SOAK_SECONDS}s of ${SOAK_RATE} req/s JSON + bursts of $SOAK_STREAMS streams"
SOAK=$DATA/soak.tsv
printf 't_s\trss_kib\tfds\n' >"$SOAK"
"${PIN_CLIENT[@]}" "$LOADGEN" rate --url "$(url json gateway)" --body "$WORK/json.json" --rate "$SOAK_RATE" \
    --seconds "$SOAK_SECONDS" >"$DATA/soak-json.txt" 2>>"$WORK/loadgen.err" &
SOAK_JSON=$!
PIDS+=("$SOAK_JSON")
(
    end=$((SECONDS + SOAK_SECONDS - 5))
    while ((SECONDS < end)); do
        "${PIN_CLIENT[@]}" "$LOADGEN" streams --url "$(url sse gateway)" --body "$WORK/sse.json" \
            --streams "$SOAK_STREAMS" --connect-ms 500 | grep '^LOADGEN ' || true
    done
) >"$DATA/soak-streams.txt" 2>>"$WORK/loadgen.err" &
SOAK_SSE=$!
PIDS+=("$SOAK_SSE")
start=$SECONDS
while alive "$SOAK_JSON"; do
    printf '%s\t%s\t%s\n' $((SECONDS - start)) "$(rss_kib "$GW_PID" VmRSS)" \
        "$(find "/proc/$GW_PID/fd" -mindepth 1 -maxdepth 1 | wc -l)" >>"$SOAK"
    sleep 5
done
wait "$SOAK_JSON" || die "soak JSON load failed"
wait "$SOAK_SSE" || true
sleep 2
RSS_AFTER_SOAK=$(rss_kib "$GW_PID" VmRSS)
FDS_AFTER_SOAK=$(find "/proc/$GW_PID/fd" -mindepth 1 -maxdepth 1 | wc -l)
alive "$GW_PID" || die "the gateway died during the soak (see $WORK/gateway.log)"

BUSY_AFTER=$(busy_pct)

{
    printf 'date\t%s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    printf 'host\t%s\n' "$(hostname)"
    printf 'cpu_model\t%s\n' "$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
    printf 'cpus\t%s\n' "$(nproc)"
    printf 'kernel\t%s\n' "$(uname -r)"
    printf 'memory\t%s\n' "$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    printf 'nofile\t%s\n' "$(ulimit -Hn)"
    printf 'netdev_max_backlog\t%s during the run (%s before)\n' "$BACKLOG_RUN" "$BACKLOG_WAS"
    printf 'nginx\t%s\n' "$("$NGINX" -v 2>&1)"
    printf 'gateway\t%s\n' "$("$BIN" version)"
    printf 'commit\t%s\n' "$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$(cd "$ROOT" && [[ -n $(git status --porcelain -- src perf/loadgen.rs Cargo.toml 2>/dev/null) ]] && echo ' (+ uncommitted changes)')"
    printf 'layout\t%s\n' "$LAYOUT"
    printf 'clk_tck\t%s\n' "$(getconf CLK_TCK)"
    printf 'upstream_latency\t%s\n' "$UPSTREAM_LATENCY"
    printf 'rate_seconds\t%s\n' "$RATE_SECONDS"
    printf 'stream_events\t%s\n' "$STREAM_EVENTS"
    printf 'stream_interval\t%s\n' "$STREAM_INTERVAL"
    printf 'usage_log\t%s\n' "$USAGE_LOG"
    printf 'busy\t%s%% before, %s%% after (our servers idle)\n' "$BUSY_BEFORE" "$BUSY_AFTER"
    printf 'rss_idle_kib\t%s\n' "$RSS_IDLE"
    printf 'nginx_rss_idle_kib\t%s\n' "$NGX_RSS_IDLE"
    printf 'rss_after_load_kib\t%s\n' "$RSS_AFTER_LOAD"
    printf 'rss_after_soak_kib\t%s\n' "$RSS_AFTER_SOAK"
    printf 'fds_after_soak\t%s\n' "$FDS_AFTER_SOAK"
    printf 'soak_seconds\t%s\n' "$SOAK_SECONDS"
    printf 'soak_rate\t%s\n' "$SOAK_RATE"
    printf 'soak_streams\t%s\n' "$SOAK_STREAMS"
} >"$DATA/meta.tsv"

OUT=$RESULTS_DIR/$(date '+%Y-%m-%d')-$(hostname)-load.md
rc=0
python3 "$PERF_DIR/load_report.py" "$DATA" "$OUT" || rc=$?
log "results: $OUT"
exit "$rc"
