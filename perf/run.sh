#!/usr/bin/env bash
# Performance suite: the gateway against nginx proxy_pass and against the upstream itself, on
# loopback, in one bounded run. See perf/README.md for the method and how to read the results.
#
#   bash perf/run.sh                      # ~4 minutes of measuring after the build
#   ROUNDS=3 DURATION=3 bash perf/run.sh  # quicker, noisier
#   PINNING=unpinned bash perf/run.sh     # nothing under taskset (how most hosts run it)
#   PINNING=both bash perf/run.sh         # the pinned run, then the unpinned one
#   TELEMETRY=on bash perf/run.sh         # every request traced and exported over OTLP/HTTP
#
# Every figure that matters is a ratio against a reference measured in the same run on the same
# box (DESIGN §8): absolute req/s on a shared 2-vCPU VM mean little from one day to the next.
set -euo pipefail

PERF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$PERF_DIR")

ROUNDS=${ROUNDS:-5}             # throughput rounds; each round runs every target at c32 and c256
DURATION=${DURATION:-5}         # seconds per wrk run
LAT_ROUNDS=${LAT_ROUNDS:-5}     # rounds of the one-connection latency runs
LAT_DURATION=${LAT_DURATION:-3} # seconds per latency run: more short rounds beat fewer long
                                # ones against this VM's bursts of jitter
COLD_RUNS=${COLD_RUNS:-10}      # gateway starts for the cold-start median
# Where the static upstream runs: `server` (default) puts it on the proxies' core, so the gateway
# and nginx each share one core with it under identical conditions; `client` moves it next to
# wrk, leaving each proxy a core of its own (fewer context switches; a different baseline).
UPSTREAM_CPU=${UPSTREAM_CPU:-server}
# Idle upstream connections each proxy keeps (nginx `keepalive`, gateway `pool_max_idle`; 64 is
# the gateway's default). Below the client concurrency, both proxies close and reopen upstream
# connections under load: c256 then measures that churn, not steady-state proxying.
UPSTREAM_POOL=${UPSTREAM_POOL:-64}
# The gateway's per-request usage log ([usage] log): on by default, as shipped. USAGE_LOG=false
# measures the proxy without it (daily counters are kept either way).
USAGE_LOG=${USAGE_LOG:-true}
PERF_TIMEOUT=${PERF_TIMEOUT:-900}  # hard ceiling for the whole script, build included
# `pinned` (default): wrk on one CPU, every server on the other, by taskset. `unpinned`: no
# taskset on anything — the scheduler places wrk, nginx and the gateway as it would on a host;
# the gateway's own `pin_workers` is PIN_WORKERS (default true, as shipped). `both`: one run of
# each, two results files.
PINNING=${PINNING:-pinned}
PIN_WORKERS=${PIN_WORKERS:-true}
# TELEMETRY=on: the gateway exports an OTLP span for every request (sample_ratio 1.0, protobuf)
# to the upstream nginx, which answers 200 and discards them; off (default) as shipped.
TELEMETRY=${TELEMETRY:-off}
if [[ $PINNING == both ]]; then
    PINNING=pinned bash "$0" "$@" || exit $?
    exec env PINNING=unpinned bash "$0" "$@"
fi
[[ $PINNING == pinned || $PINNING == unpinned ]] || { echo "PINNING must be pinned, unpinned or both" >&2; exit 1; }

# Overall guard. --foreground keeps Ctrl-C working from a terminal; on expiry only this script
# gets TERM, and its EXIT trap stops everything it started (each wrk has its own timeout too).
if [[ -z ${PERF_GUARDED:-} ]]; then
    export PERF_GUARDED=1
    exec timeout --foreground -k 30 "$PERF_TIMEOUT" bash "$0" "$@"
fi

WORK=$PERF_DIR/work/run    # gitignored: configs, logs, raw wrk output of the last run
DATA=$WORK/data
RESULTS_DIR=$PERF_DIR/results

# shellcheck source=perf/lib.sh
source "$PERF_DIR/lib.sh"

# ---------------------------------------------------------------------------------------------
# 1. Tools (perf/lib.sh: installed from Debian's packages when missing).
ensure_tools wrk nginx python3 curl taskset pgrep

# ---------------------------------------------------------------------------------------------
# 2. Build.
log "cargo build --release"
(cd "$ROOT" && cargo build --release 2>"$PERF_DIR/.build.log") || { tail -30 "$PERF_DIR/.build.log" >&2; die "build"; }
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/smart-ai-router
[[ -x $BIN ]] || die "no binary at $BIN"

rm -rf "$WORK"
mkdir -p "$DATA" "$RESULTS_DIR"
mv "$PERF_DIR/.build.log" "$WORK/build.log"

# ---------------------------------------------------------------------------------------------
# CPU layout: wrk (and the cold-start poller) on the first CPU of our affinity mask, every server
# on the last. Client and servers then never fight over one core, and the gateway and nginx
# each get the same single core, shared with the upstream exactly as the other is. With a
# single CPU nothing is pinned (and the results say so).
pin_layout
if [[ $PINNING == unpinned ]]; then
    PIN_CLIENT=()
    PIN_SERVER=()
    PIN_UPSTREAM=()
    LAYOUT="unpinned: no taskset on wrk, nginx or the gateway; gateway pin_workers = $PIN_WORKERS (cold starts still place the gateway on CPU $SERVER_CPU)"
elif ((CLIENT_CPU != SERVER_CPU)); then
    PIN_CLIENT=(taskset -c "$CLIENT_CPU")
    PIN_SERVER=(taskset -c "$SERVER_CPU")
    if [[ $UPSTREAM_CPU == client ]]; then
        PIN_UPSTREAM=("${PIN_CLIENT[@]}")
        LAYOUT="wrk and upstream nginx on CPU $CLIENT_CPU; nginx proxy and gateway on CPU $SERVER_CPU"
    else
        PIN_UPSTREAM=("${PIN_SERVER[@]}")
        LAYOUT="wrk on CPU $CLIENT_CPU; upstream nginx, nginx proxy and gateway on CPU $SERVER_CPU"
    fi
else
    PIN_CLIENT=()
    PIN_SERVER=()
    PIN_UPSTREAM=()
    LAYOUT="single CPU: nothing pinned"
fi

# Four distinct free loopback ports, picked by the kernel (held open together so they differ).
read -r P_UP P_PROXY P_GW P_GW2 < <(free_ports 4)

# ---------------------------------------------------------------------------------------------
# Helpers.
# http_status METHOD URL: status code, 000 when nothing answers.
http_status() {
    if [[ $1 == POST ]]; then
        curl -s -o /dev/null -w '%{http_code}' --max-time 2 -H 'Content-Type: application/json' \
            --data-binary @"$WORK/request.json" "$2" || true
    else
        curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$2" || true
    fi
}

# wait_200 PID METHOD URL: until URL answers 200, failing fast if PID died.
wait_200() {
    local i
    for ((i = 0; i < 200; i++)); do
        alive "$1" || die "process $1 exited before $3 answered (see $WORK/*.log)"
        [[ $(http_status "$2" "$3") == 200 ]] && return 0
        sleep 0.05
    done
    die "$3 did not answer 200 within 10 s"
}

BUSY_BEFORE=$(busy_pct)
((BUSY_BEFORE < 10)) || log "WARNING: the box is ${BUSY_BEFORE}% busy before we start: expect noisy figures"

# ---------------------------------------------------------------------------------------------
# 3. Static upstream.
BODY=$(<"$PERF_DIR/chat_completion.json")
[[ $BODY != *[\'\$\\]* ]] || die "chat_completion.json must not contain ' \$ or \\ (nginx string)"
printf '%s' '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}' >"$WORK/request.json"

render "$PERF_DIR/nginx/upstream.conf.tmpl" "$WORK/upstream.conf" WORK="$WORK" PORT="$P_UP" BODY="$BODY"
start_nginx upstream "$WORK/upstream.conf" "${PIN_UPSTREAM[@]}"
UP_PID=$NGINX_PID UP_W=$NGINX_WORKER
URL_DIRECT=http://127.0.0.1:$P_UP/v1/chat/completions
wait_200 "$UP_PID" POST "$URL_DIRECT"

# 4. nginx reverse proxy.
render "$PERF_DIR/nginx/proxy.conf.tmpl" "$WORK/proxy.conf" WORK="$WORK" PORT="$P_PROXY" UPSTREAM_PORT="$P_UP" \
    POOL="$UPSTREAM_POOL"
start_nginx proxy "$WORK/proxy.conf" "${PIN_SERVER[@]}"
PX_PID=$NGINX_PID PX_W=$NGINX_WORKER
URL_NGINX=http://127.0.0.1:$P_PROXY/v1/chat/completions
wait_200 "$PX_PID" POST "$URL_NGINX"

TELEMETRY_TOML=""
if [[ $TELEMETRY == on ]]; then
    TELEMETRY_TOML=$(printf '[telemetry]\notlp_endpoint = "http://127.0.0.1:%s"\nsample_ratio = 1.0' "$P_UP")
fi
# 5. The gateway, one worker, pinned by taskset; its own pin_workers then pins the worker
# thread inside that one-CPU mask.
rm -rf "$WORK/state-1" "$WORK/state-2"
render "$PERF_DIR/gateway.toml.tmpl" "$WORK/gateway-1.toml" LISTEN="127.0.0.1:$P_GW" WORKERS=1 \
    UPSTREAM_PORT="$P_UP" POOL="$UPSTREAM_POOL" STATE="$WORK/state-1" USAGE_LOG="$USAGE_LOG" \
    PIN_WORKERS="$PIN_WORKERS" TELEMETRY="$TELEMETRY_TOML"
"$BIN" check --config "$WORK/gateway-1.toml" >"$WORK/gateway-check.txt" || die "gateway config (see $WORK/gateway-check.txt)"
"${PIN_SERVER[@]}" "$BIN" --config "$WORK/gateway-1.toml" --workers 1 >"$WORK/gateway-1.log" 2>&1 &
GW_PID=$!
PIDS+=("$GW_PID")
URL_GW=http://127.0.0.1:$P_GW/v1/chat/completions
wait_200 "$GW_PID" GET "http://127.0.0.1:$P_GW/health"
wait_200 "$GW_PID" POST "$URL_GW"
curl -s "http://127.0.0.1:$P_GW/health" >"$DATA/health.json"

# Sanity: every target answers the chat request with a chat.completion before we time anything.
# The exchanges are kept for the results file (what the gateway adds or strips is visible there).
for t in direct nginx gateway; do
    case $t in direct) u=$URL_DIRECT ;; nginx) u=$URL_NGINX ;; gateway) u=$URL_GW ;; esac
    curl -sS -i --max-time 5 -H 'Content-Type: application/json' --data-binary @"$WORK/request.json" "$u" \
        | tr -d '\r' >"$DATA/sample-$t.txt"
    head -1 "$DATA/sample-$t.txt" | grep -q ' 200' || die "$t: $(head -1 "$DATA/sample-$t.txt")"
    grep -q '"chat.completion"' "$DATA/sample-$t.txt" || die "$t: body is not a chat.completion"
done

sleep 1
GW_RSS_IDLE1=$(rss_kib "$GW_PID" VmRSS)

# ---------------------------------------------------------------------------------------------
# 6-8. Load. One wrk thread on its own core outruns one proxy core by far; only the direct runs
# come near wrk's own limit (so "÷ direct" is, if anything, flattering to the gateway).
# Each run records the CPU ticks the gateway, the proxy worker and the upstream worker spent
# during it, so CPU per request comes from the same runs as the throughput.
RUNS=$DATA/runs.tsv
printf 'phase\tround\tconc\ttarget\trequests\tduration_us\tbytes\terr_connect\terr_read\terr_write\terr_timeout\terr_status\tp50_us\tp90_us\tp99_us\tp999_us\tmean_us\tmax_us\tgw_ticks\tproxy_ticks\tup_ticks\n' >"$RUNS"

# measure PHASE ROUND CONC TARGET SECONDS
measure() {
    local phase=$1 round=$2 conc=$3 target=$4 secs=$5 url raw line
    case $target in direct) url=$URL_DIRECT ;; nginx) url=$URL_NGINX ;; gateway) url=$URL_GW ;; esac
    raw=$DATA/wrk-$phase-r$round-c$conc-$target.txt
    local g0 p0 u0 g1 p1 u1
    g0=$(cpu_ticks "$GW_PID"); p0=$(cpu_ticks "$PX_W"); u0=$(cpu_ticks "$UP_W")
    timeout -k 5 $((secs + 30)) "${PIN_CLIENT[@]}" wrk -t1 -c"$conc" -d"${secs}s" --timeout 5s --latency \
        -s "$PERF_DIR/post.lua" "$url" >"$raw" 2>&1 || die "wrk failed on $target (see $raw)"
    g1=$(cpu_ticks "$GW_PID"); p1=$(cpu_ticks "$PX_W"); u1=$(cpu_ticks "$UP_W")
    line=$(grep '^PERF ' "$raw" | tail -1) || die "no PERF line in $raw"
    line=${line#PERF }
    # "k=v k=v ..." -> tab-separated values, in post.lua's fixed order.
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$phase" "$round" "$conc" "$target" \
        "$(sed -E 's/[a-z_0-9]+=//g; s/ /\t/g' <<<"$line")" $((g1 - g0)) $((p1 - p0)) $((u1 - u0)) >>"$RUNS"
    local req rps st
    req=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$line")
    st=$(sed -E 's/.*err_status=([0-9]+).*/\1/' <<<"$line")
    rps=$(awk -v r="$req" -v d="$(sed -E 's/.*duration_us=([0-9]+).*/\1/' <<<"$line")" 'BEGIN { printf "%.0f", r / (d / 1e6) }')
    log "$(printf '%-7s r%s c%-3s %-7s %8s req/s  non-2xx=%s' "$phase" "$round" "$conc" "$target" "$rps" "$st")"
    sleep 0.5   # let sockets of the last run close before the next one starts
}

TARGETS=(direct nginx gateway)
log "warm-up"
for t in "${TARGETS[@]}"; do measure warmup 0 32 "$t" 1; done

log "throughput: $ROUNDS rounds x {c32,c256} x {direct,nginx,gateway}, ${DURATION}s each"
for ((r = 1; r <= ROUNDS; r++)); do
    for conc in 32 256; do
        # Rotate which target goes first so drift (thermal, noisy neighbours) spreads evenly.
        for ((k = 0; k < 3; k++)); do
            measure tput "$r" "$conc" "${TARGETS[(r - 1 + k) % 3]}" "$DURATION"
        done
    done
done

log "latency at one connection: $LAT_ROUNDS rounds, ${LAT_DURATION}s each"
for ((r = 1; r <= LAT_ROUNDS; r++)); do
    for ((k = 0; k < 3; k++)); do
        measure lat "$r" 1 "${TARGETS[(r - 1 + k) % 3]}" "$LAT_DURATION"
    done
done

BUSY_AFTER=$(busy_pct)   # our servers are idle again here
((BUSY_AFTER < 10)) || log "WARNING: the box is ${BUSY_AFTER}% busy with our servers idle: expect noisy figures"

# If anything answered non-2xx, capture what it was while the setup is still up.
if awk -F'\t' 'NR > 1 && $4 == "gateway" && $12 > 0 { bad = 1 } END { exit !bad }' "$RUNS"; then
    log "gateway returned non-2xx under load: capturing samples"
    timeout -k 5 30 "${PIN_CLIENT[@]}" wrk -t1 -c256 -d3s -s "$PERF_DIR/capture.lua" "$URL_GW" \
        >"$DATA/gateway-errors.txt" 2>&1 || true
fi

# ---------------------------------------------------------------------------------------------
# 9. Memory: the loaded 1-worker gateway, then a fresh idle 2-worker instance (the default shape
# on this 2-core box: one worker per core, not pinned by taskset).
sleep 1
GW_RSS_LOADED=$(rss_kib "$GW_PID" VmRSS)
GW_HWM_LOADED=$(rss_kib "$GW_PID" VmHWM)

render "$PERF_DIR/gateway.toml.tmpl" "$WORK/gateway-2.toml" LISTEN="127.0.0.1:$P_GW2" WORKERS=2 \
    UPSTREAM_PORT="$P_UP" POOL="$UPSTREAM_POOL" STATE="$WORK/state-2" USAGE_LOG="$USAGE_LOG" \
    PIN_WORKERS="$PIN_WORKERS" TELEMETRY="$TELEMETRY_TOML"
"$BIN" --config "$WORK/gateway-2.toml" --workers 2 >"$WORK/gateway-2.log" 2>&1 &
GW2_PID=$!
PIDS+=("$GW2_PID")
wait_200 "$GW2_PID" GET "http://127.0.0.1:$P_GW2/health"
sleep 1
GW_RSS_IDLE2=$(rss_kib "$GW2_PID" VmRSS)
kill -TERM "$GW2_PID"; wait "$GW2_PID" 2>/dev/null || true

# ---------------------------------------------------------------------------------------------
# 10. Cold start: spawn -> first /health 200, and -> first routed chat 200; then the same from a
#     warm discovery cache of 3,400 pairs.
log "cold start: $COLD_RUNS starts"
timeout -k 5 120 python3 "$PERF_DIR/coldstart.py" "$BIN" "$WORK/gateway-1.toml" "$COLD_RUNS" \
    "$CLIENT_CPU" "$SERVER_CPU" "$DATA/coldstart.tsv" || die "cold start"
# Warm restart: 40 channels whose 3,400 (channel, model) pairs come only from the discovery
# cache in the state dir; providers answer /models with 404, so the cache is what serves.
python3 "$PERF_DIR/warmcache.py" "$WORK/gateway-warm.toml" "$WORK/warm-state" "127.0.0.1:0" "$P_UP" \
    || die "warm cache"
log "warm restart from the discovery cache: $COLD_RUNS starts"
timeout -k 5 120 python3 "$PERF_DIR/coldstart.py" "$BIN" "$WORK/gateway-warm.toml" "$COLD_RUNS" \
    "$CLIENT_CPU" "$SERVER_CPU" "$DATA/coldstart_warm.tsv" "qwen/qwen3-8b-instruct" || die "warm start"
log "control plane: 20 admin overrides on the 3,400-pair deployment (2 workers)"
timeout -k 5 120 python3 "$PERF_DIR/control.py" "$BIN" "$WORK/gateway-warm.toml" 2 20 "$DATA/control.tsv" \
    || die "control plane"

# ---------------------------------------------------------------------------------------------
# 11. Report.
{
    printf 'date\t%s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    printf 'host\t%s\n' "$(hostname)"
    printf 'cpu_model\t%s\n' "$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
    printf 'cpus\t%s\n' "$(nproc) (lscpu: $(lscpu | sed -n 's/^Core(s) per socket: *//p') cores/socket, $(lscpu | sed -n 's/^Thread(s) per core: *//p') threads/core)"
    printf 'kernel\t%s\n' "$(uname -r)"
    printf 'memory\t%s\n' "$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    printf 'nginx\t%s\n' "$("$NGINX" -v 2>&1)"
    printf 'wrk\t%s\n' "$(wrk --version 2>&1 | head -1 | sed 's/ Copyright.*//')"
    printf 'gateway\t%s\n' "$("$BIN" version)"
    printf 'commit\t%s\n' "$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$(cd "$ROOT" && [[ -n $(git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]] && echo ' (+ uncommitted changes in src/)')"
    printf 'rustc\t%s\n' "$(rustc --version)"
    printf 'layout\t%s\n' "$LAYOUT"
    printf 'clk_tck\t%s\n' "$(getconf CLK_TCK)"
    printf 'rounds\t%s\n' "$ROUNDS"
    printf 'lat_rounds\t%s\n' "$LAT_ROUNDS"
    printf 'lat_duration\t%s\n' "$LAT_DURATION"
    printf 'duration\t%s\n' "$DURATION"
    printf 'upstream_pool\t%s\n' "$UPSTREAM_POOL"
    printf 'usage_log\t%s\n' "$USAGE_LOG"
    printf 'telemetry\t%s\n' "$TELEMETRY"
    printf 'busy\t%s%% before the run, %s%% after the load phases (our servers idle)\n' "$BUSY_BEFORE" "$BUSY_AFTER"
    printf 'rss_idle_1w_kib\t%s\n' "$GW_RSS_IDLE1"
    printf 'rss_loaded_1w_kib\t%s\n' "$GW_RSS_LOADED"
    printf 'hwm_loaded_1w_kib\t%s\n' "$GW_HWM_LOADED"
    printf 'rss_idle_2w_kib\t%s\n' "$GW_RSS_IDLE2"
} >"$DATA/meta.tsv"

MODE=""
[[ $PINNING == unpinned ]] && MODE+="-unpinned-pw-$PIN_WORKERS"
[[ $TELEMETRY == on ]] && MODE+="-telemetry"
OUT=$RESULTS_DIR/$(date '+%Y-%m-%d')-$(hostname)$MODE.md
rc=0
python3 "$PERF_DIR/report.py" "$DATA" "$OUT" || rc=$?
log "results: $OUT"
((rc == 0)) || log "non-2xx responses or socket errors were seen: see the results file"
exit "$rc"
