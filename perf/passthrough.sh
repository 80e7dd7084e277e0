#!/usr/bin/env bash
# What the same-family passthrough paths cost against the OpenAI byte path, in one bounded run on
# loopback. One static nginx upstream speaks all three wire families; one gateway (--workers 1)
# has a channel of each kind on it; wrk drives four paths through the gateway:
#
#   openai      OpenAI client -> openai channel: relayed byte for byte (the reference)
#   anthropic   Anthropic client (POST /v1/messages) -> anthropic channel: passthrough
#   gemini      Gemini client (POST /v1beta/models/gemini-x:generateContent) -> gemini channel:
#               passthrough
#   translated  OpenAI client asking for claude-x -> anthropic channel: OpenAI -> Anthropic
#               translation both ways (context: what passthrough avoids)
#   responses   OpenAI Responses client (POST /v1/responses) asking for gpt-chat -> an openai
#               channel with `responses = false`: Responses -> chat completions -> Responses
#
# Headline: the gateway's CPU per request on each path ÷ the same on the openai path, per round,
# median over rounds; req/s ratios alongside. Every ratio pairs runs of the same round, seconds
# apart, on the same box (DESIGN §8).
#
#   bash perf/passthrough.sh                      # ~2.5 minutes of measuring after the build
#   ROUNDS=1 DURATION=1 bash perf/passthrough.sh  # smoke run
#
# Exit status: 0; 1 on a setup failure (including a path that does not answer 200 with its
# family's shape before measuring); 2 if any run saw a non-2xx answer or a socket error (the
# results file then carries samples of the failing answers).
set -euo pipefail

PERF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$PERF_DIR")

ROUNDS=${ROUNDS:-5}            # rounds; each runs every path once, rotating which goes first
DURATION=${DURATION:-5}        # seconds per wrk run
CONC=${CONC:-32}               # wrk connections (one thread)
UPSTREAM_POOL=${UPSTREAM_POOL:-64}  # the gateway's pool_max_idle per provider (its default)
USAGE_LOG=${USAGE_LOG:-true}   # [usage] log, on as shipped
BUILD_TRIES=${BUILD_TRIES:-3}  # cargo build attempts, a minute apart
PERF_TIMEOUT=${PERF_TIMEOUT:-900}   # hard ceiling for the whole script, build included

# Overall guard, as in run.sh: on expiry only this script gets TERM, and its EXIT trap stops
# everything it started (each wrk has its own timeout too).
if [[ -z ${PERF_GUARDED:-} ]]; then
    export PERF_GUARDED=1
    exec timeout --foreground -k 30 "$PERF_TIMEOUT" bash "$0" "$@"
fi

WORK=$PERF_DIR/work/passthrough   # gitignored: configs, logs, raw wrk output of the last run
DATA=$WORK/data
RESULTS_DIR=$PERF_DIR/results
PATHS=(openai anthropic gemini translated responses)

# shellcheck source=perf/lib.sh
source "$PERF_DIR/lib.sh"

ensure_tools wrk nginx python3 curl taskset pgrep
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# Others may be mid-edit in src/ on a shared box: a failed build is retried after a minute.
for ((try = 1; ; try++)); do
    log "cargo build --release (try $try of $BUILD_TRIES)"
    (cd "$ROOT" && cargo build --release 2>"$PERF_DIR/.build-passthrough.log") && break
    tail -30 "$PERF_DIR/.build-passthrough.log" >&2
    ((try < BUILD_TRIES)) || { rm -f "$PERF_DIR/.build-passthrough.log"; die "build"; }
    sleep 60
done
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/smart-ai-router
[[ -x $BIN ]] || die "no binary at $BIN"

rm -rf "$WORK"
mkdir -p "$DATA" "$RESULTS_DIR"
mv "$PERF_DIR/.build-passthrough.log" "$WORK/build.log"
# The usage log grows by ~450 bytes per request (a GB or two over a full run): keep its head for
# the record and drop the rest once every process has stopped.
ON_EXIT+=("[[ -d '$WORK/state/usage' ]] && { head -n 200 '$WORK'/state/usage/*.jsonl >'$DATA/usage-head.jsonl' 2>/dev/null; rm -rf '$WORK/state/usage'/*.jsonl; }")

# CPU layout as in run.sh (default UPSTREAM_CPU=server): wrk on the first CPU, the upstream and
# the gateway on the last.
pin_layout
if ((CLIENT_CPU != SERVER_CPU)); then
    PIN_CLIENT=(taskset -c "$CLIENT_CPU")
    PIN_SERVER=(taskset -c "$SERVER_CPU")
    LAYOUT="wrk on CPU $CLIENT_CPU; upstream nginx and gateway on CPU $SERVER_CPU"
else
    PIN_CLIENT=()
    PIN_SERVER=()
    LAYOUT="single CPU: nothing pinned"
fi

read -r P_UP P_GW < <(free_ports 2)

# ---------------------------------------------------------------------------------------------
# Requests and canned answers. The request bodies are the ones passthrough-post.lua sends.
req_body() {
    case $1 in
        openai) printf '%s' '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}' ;;
        anthropic) printf '%s' '{"model":"claude-x","max_tokens":64,"messages":[{"role":"user","content":"Say hello"}]}' ;;
        gemini) printf '%s' '{"contents":[{"role":"user","parts":[{"text":"Say hello"}]}]}' ;;
        translated) printf '%s' '{"model":"claude-x","messages":[{"role":"user","content":"Say hello"}]}' ;;
        responses) printf '%s' '{"model":"gpt-chat","input":"Say hello"}' ;;
    esac
}
req_path() {
    case $1 in
        openai | translated) echo /v1/chat/completions ;;
        anthropic) echo /v1/messages ;;
        gemini) echo /v1beta/models/gemini-x:generateContent ;;
        responses) echo /v1/responses ;;
    esac
}
req_headers() {   # extra client headers, one curl -H argument per line
    [[ $1 == anthropic ]] && echo 'anthropic-version: 2023-06-01'
    return 0
}
# The upstream endpoint each path reaches, and which canned answer comes back.
up_family() { case $1 in openai | responses) echo openai ;; anthropic | translated) echo anthropic ;; gemini) echo gemini ;; esac; }

OPENAI_BODY=$(<"$PERF_DIR/chat_completion.json")
# A non-streamed Claude answer as the API sends it today: cache reads and writes in `usage`
# (with the per-TTL `cache_creation` breakdown), `service_tier`.
ANTHROPIC_BODY='{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"Hello! How can I help you today?"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":9,"cache_creation_input_tokens":512,"cache_read_input_tokens":2048,"cache_creation":{"ephemeral_5m_input_tokens":512,"ephemeral_1h_input_tokens":0},"output_tokens":12,"service_tier":"standard"}}'
# A non-streamed Gemini 2.x answer: one candidate, usageMetadata with an implicit-cache hit and
# the per-modality details, modelVersion and responseId.
GEMINI_BODY='{"candidates":[{"content":{"parts":[{"text":"Hello! How can I help you today?"}],"role":"model"},"finishReason":"STOP","avgLogprobs":-0.0213498}],"usageMetadata":{"promptTokenCount":2052,"candidatesTokenCount":9,"totalTokenCount":2061,"cachedContentTokenCount":2048,"promptTokensDetails":[{"modality":"TEXT","tokenCount":2052}],"cacheTokensDetails":[{"modality":"TEXT","tokenCount":2048}],"candidatesTokensDetails":[{"modality":"TEXT","tokenCount":9}]},"modelVersion":"gemini-x","responseId":"Xk9TaPzUJ6SxnvgPo8qYuAs"}'
for f in openai anthropic gemini; do
    v=${f^^}_BODY
    [[ ${!v} != *[\'\$\\]* ]] || die "$f canned body must not contain ' \$ or \\ (nginx string)"
    printf '%s' "${!v}" >"$WORK/upstream-$f.json"
done

# http_status PATH URL: status of the path's request at URL, 000 when nothing answers.
http_status() {
    local h=() l
    while IFS= read -r l; do [[ -n $l ]] && h+=(-H "$l"); done < <(req_headers "$1")
    curl -s -o /dev/null -w '%{http_code}' --max-time 2 -H 'Content-Type: application/json' "${h[@]}" \
        --data-binary "$(req_body "$1")" "$2" || true
}
# wait_200 PID PATH URL: until URL answers 200, failing fast if PID died.
wait_200() {
    local i
    for ((i = 0; i < 200; i++)); do
        alive "$1" || die "process $1 exited before $3 answered (see $WORK/*.log)"
        if [[ $2 == GET ]]; then
            [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$3" || true) == 200 ]] && return 0
        else
            [[ $(http_status "$2" "$3") == 200 ]] && return 0
        fi
        sleep 0.05
    done
    die "$3 did not answer 200 within 10 s"
}

BUSY_BEFORE=$(busy_pct)
((BUSY_BEFORE < 10)) || log "WARNING: the box is ${BUSY_BEFORE}% busy before we start (load $LOAD_START): expect noisy figures"

# ---------------------------------------------------------------------------------------------
# Static upstream.
render "$PERF_DIR/nginx/passthrough-upstream.conf.tmpl" "$WORK/upstream.conf" WORK="$WORK" PORT="$P_UP" \
    OPENAI_BODY="$OPENAI_BODY" ANTHROPIC_BODY="$ANTHROPIC_BODY" GEMINI_BODY="$GEMINI_BODY"
start_nginx upstream "$WORK/upstream.conf" "${PIN_SERVER[@]}"
UP_PID=$NGINX_PID UP_W=$NGINX_WORKER
UP=http://127.0.0.1:$P_UP
wait_200 "$UP_PID" openai "$UP/v1/chat/completions"
wait_200 "$UP_PID" anthropic "$UP/v1/messages"
wait_200 "$UP_PID" gemini "$UP/v1beta/models/gemini-x:generateContent"

# ---------------------------------------------------------------------------------------------
# The gateway: one worker, pinned by taskset; discovery and health probes off (nothing but the
# measured requests reaches the upstream); usage log as shipped. Every channel states its price
# (a loopback base_url counts as a local, free provider, so gpt-4o-mini's bundled list price would
# not apply and the reference would price nothing): every path prices its usage.
mkdir -p "$WORK/state"
cat >"$WORK/gateway.toml" <<EOF
[server]
listen = "127.0.0.1:$P_GW"
workers = 1

[log]
level = "warn"

[state]
dir = "$WORK/state"

[usage]
log = $USAGE_LOG

[discovery]
enabled = false

[health]
enabled = false

[admin]
listen = "127.0.0.1:0"

[providers.oai]
kind = "openai"
base_url = "$UP/v1"
pool_max_idle = $UPSTREAM_POOL

[providers.oaichat]
kind = "openai"
base_url = "$UP/v1"
responses = false
pool_max_idle = $UPSTREAM_POOL

[providers.anth]
kind = "anthropic"
base_url = "$UP/v1"
pool_max_idle = $UPSTREAM_POOL

[providers.gem]
kind = "gemini"
base_url = "$UP/v1beta"
pool_max_idle = $UPSTREAM_POOL

[[channels]]
id = "oai-1"
provider = "oai"
api_key = "sk-bench"
models = ["gpt-4o-mini"]
pricing = { input = 0.15, output = 0.6, cached = 0.075, currency = "USD" }

[[channels]]
id = "oaichat-1"
provider = "oaichat"
api_key = "sk-bench"
models = ["gpt-chat"]
pricing = { input = 0.15, output = 0.6, cached = 0.075, currency = "USD" }

[[channels]]
id = "anth-1"
provider = "anth"
api_key = "sk-ant-bench"
models = ["claude-x"]
pricing = { input = 3.0, output = 15.0, cached = 0.3, cache_write = 3.75, currency = "USD" }

[[channels]]
id = "gem-1"
provider = "gem"
api_key = "AIza-bench"
models = ["gemini-x"]
pricing = { input = 0.3, output = 2.5, cached = 0.075, currency = "USD" }
EOF
"$BIN" check --config "$WORK/gateway.toml" >"$WORK/gateway-check.txt" 2>&1 || die "gateway config (see $WORK/gateway-check.txt)"
"${PIN_SERVER[@]}" "$BIN" --config "$WORK/gateway.toml" --workers 1 >"$WORK/gateway.log" 2>&1 &
GW_PID=$!
PIDS+=("$GW_PID")
GW=http://127.0.0.1:$P_GW
wait_200 "$GW_PID" GET "$GW/health"
curl -s "$GW/health" >"$DATA/health.json"
url_of() { echo "$GW$(req_path "$1")"; }

# ---------------------------------------------------------------------------------------------
# Sanity, before anything is timed: every path answers 200 with its family's shape (a failure
# here is the gateway's, and stops the run with the exchange on screen). The exchanges, direct
# and through the gateway, are kept for the results file, with whether the passthrough answers
# are the upstream's bytes.
exchange() {   # exchange PATH BASE OUT: headers in OUT.h, body in OUT.b
    local h=() l
    while IFS= read -r l; do [[ -n $l ]] && h+=(-H "$l"); done < <(req_headers "$1")
    curl -sS --max-time 5 -D "$3.h" -o "$3.b" -H 'Content-Type: application/json' "${h[@]}" \
        --data-binary "$(req_body "$1")" "$2$(req_path "$1")" || true
    tr -d '\r' <"$3.h" >"$3.h.tmp" && mv "$3.h.tmp" "$3.h"
}
for p in "${PATHS[@]}"; do
    # Let the gateway's pool wait out wait_200's exchanges; each path is tried a few times so a
    # first-connection effect cannot hide or fake a failure.
    for i in 1 2 3; do exchange "$p" "$GW" "$DATA/sample-$p"; done
    exchange "$p" "$UP" "$DATA/direct-$p"
    if ! python3 - "$p" "$DATA/sample-$p" "$WORK/upstream-$(up_family "$p").json" >"$DATA/sanity-$p.txt" 2>&1 <<'PY'
import json, sys
path, base, canned = sys.argv[1:4]
head = open(base + ".h").read().split("\n")
body = open(base + ".b", "rb").read()
status = head[0].split()[1] if head and len(head[0].split()) > 1 else "none"
problems = []
if status != "200":
    problems.append(f"status {status}")
try:
    v = json.loads(body)
except ValueError as e:
    v = None
    problems.append(f"body is not JSON ({e})")
def need(cond, what):
    if not cond:
        problems.append(what)
if isinstance(v, dict):
    if path in ("openai", "translated"):
        need(v.get("object") == "chat.completion", "object is not chat.completion")
        ch = v.get("choices") or [{}]
        need(bool((ch[0].get("message") or {}).get("content")), "no choices[0].message.content")
        need(isinstance((v.get("usage") or {}).get("prompt_tokens"), int), "no usage.prompt_tokens")
    elif path == "responses":
        need(v.get("object") == "response", "object is not response")
        need(v.get("status") == "completed", "status is not completed")
        need(bool(v.get("output_text")), "no output_text")
        need(isinstance((v.get("usage") or {}).get("input_tokens"), int), "no usage.input_tokens")
    elif path == "anthropic":
        need(v.get("type") == "message", "type is not message")
        c = v.get("content") or [{}]
        need(c[0].get("type") == "text" and bool(c[0].get("text")), "no content[0] text block")
        u = v.get("usage") or {}
        need("cache_read_input_tokens" in u and "cache_creation_input_tokens" in u, "usage lacks the cache fields")
    elif path == "gemini":
        c = v.get("candidates") or [{}]
        parts = (c[0].get("content") or {}).get("parts") or [{}]
        need(bool(parts[0].get("text")), "no candidates[0].content.parts[0].text")
        need(isinstance((v.get("usageMetadata") or {}).get("totalTokenCount"), int), "no usageMetadata")
elif v is not None:
    problems.append("body is not a JSON object")
same = body == open(canned, "rb").read()
print(f"status={status} shape={'ok' if not problems else 'BAD: ' + '; '.join(problems)} "
      f"body_bytes={len(body)} identical_to_upstream_answer={'yes' if same else 'no'}")
sys.exit(1 if problems else 0)
PY
    then
        log "sanity: $p ($(req_path "$p")) through the gateway:"
        cat "$DATA/sanity-$p.txt" "$DATA/sample-$p.h" "$DATA/sample-$p.b" >&2
        echo >&2
        die "the $p path does not answer 200 with the expected shape (gateway bug?)"
    fi
    log "sanity: $p $(<"$DATA/sanity-$p.txt")"
    if [[ $p != translated && $p != responses ]] && grep -q 'identical_to_upstream_answer=no' "$DATA/sanity-$p.txt"; then
        log "NOTE: the $p answer is not the upstream's bytes (see $DATA/sample-$p.b)"
    fi
done

# The usage records of the sanity exchanges: each path priced with its native usage.
if [[ $USAGE_LOG == true ]]; then
    for ((i = 0; i < 40; i++)); do
        n=$(cat "$WORK"/state/usage/*.jsonl 2>/dev/null | wc -l)
        ((n >= 3 * ${#PATHS[@]})) && break
        sleep 0.05
    done
    cat "$WORK"/state/usage/*.jsonl >"$DATA/usage-sanity.jsonl" 2>/dev/null || true
fi

# ---------------------------------------------------------------------------------------------
# Load.
RUNS=$DATA/runs.tsv
printf 'phase\tround\tpath\trequests\tduration_us\tbytes\terr_connect\terr_read\terr_write\terr_timeout\terr_status\tp50_us\tp90_us\tp99_us\tp999_us\tmean_us\tmax_us\tgw_ticks\tup_ticks\n' >"$RUNS"

# measure PHASE ROUND PATH SECONDS
measure() {
    local phase=$1 round=$2 p=$3 secs=$4 raw line g0 u0 g1 u1
    raw=$DATA/wrk-$phase-r$round-$p.txt
    g0=$(cpu_ticks "$GW_PID"); u0=$(cpu_ticks "$UP_W")
    timeout -k 5 $((secs + 30)) "${PIN_CLIENT[@]}" wrk -t1 -c"$CONC" -d"${secs}s" --timeout 5s --latency \
        -s "$PERF_DIR/passthrough-post.lua" "$(url_of "$p")" -- "$p" >"$raw" 2>&1 || die "wrk failed on $p (see $raw)"
    g1=$(cpu_ticks "$GW_PID"); u1=$(cpu_ticks "$UP_W")
    line=$(grep '^PERF ' "$raw" | tail -1) || die "no PERF line in $raw"
    line=${line#PERF }
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$phase" "$round" "$p" \
        "$(sed -E 's/[a-z_0-9]+=//g; s/ /\t/g' <<<"$line")" $((g1 - g0)) $((u1 - u0)) >>"$RUNS"
    local req st errs rps
    req=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$line")
    st=$(sed -E 's/.*err_status=([0-9]+).*/\1/' <<<"$line")
    errs=$(sed -E 's/.*err_connect=([0-9]+) err_read=([0-9]+) err_write=([0-9]+) err_timeout=([0-9]+).*/\1+\2+\3+\4/' <<<"$line")
    rps=$(awk -v r="$req" -v d="$(sed -E 's/.*duration_us=([0-9]+).*/\1/' <<<"$line")" 'BEGIN { printf "%.0f", r / (d / 1e6) }')
    log "$(printf '%-6s r%s %-10s %7s req/s  %6.1f us CPU/req  non-2xx=%s socket errors=%s' "$phase" "$round" "$p" \
        "$rps" "$(awk -v t=$((g1 - g0)) -v r="$req" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", r ? t * 1e6 / hz / r : 0 }')" \
        "$st" "$((errs))")"
    if ((st > 0 || errs > 0)); then
        log "LOUD: $p answered $st non-2xx and had $((errs)) socket errors in this run (see $raw)"
    fi
    sleep 0.5   # let sockets of the last run close before the next one starts
}

log "warm-up"
for p in "${PATHS[@]}"; do measure warmup 0 "$p" 1; done

log "throughput: $ROUNDS rounds x {${PATHS[*]}}, wrk -t1 -c$CONC -d${DURATION}s each"
for ((r = 1; r <= ROUNDS; r++)); do
    for ((k = 0; k < ${#PATHS[@]}; k++)); do
        measure tput "$r" "${PATHS[(r - 1 + k) % ${#PATHS[@]}]}" "$DURATION"
    done
done

BUSY_AFTER=$(busy_pct)   # our servers are idle again here
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
((BUSY_AFTER < 10)) || log "WARNING: the box is ${BUSY_AFTER}% busy with our servers idle (load $LOAD_END): expect noisy figures"

# Any non-2xx or socket error: capture what the failing path answered while everything is up.
BAD=$(awk -F'\t' 'NR > 1 && ($7 + $8 + $9 + $10 + $11) > 0 { print $3 }' "$RUNS" | sort -u)
for p in $BAD; do
    log "LOUD: $p saw non-2xx answers or socket errors under load: capturing samples"
    timeout -k 5 30 "${PIN_CLIENT[@]}" wrk -t1 -c"$CONC" -d3s -s "$PERF_DIR/passthrough-post.lua" \
        "$(url_of "$p")" -- "$p" capture >"$DATA/errors-$p.txt" 2>&1 || true
done
GW_LOG_PANICS=$(grep -ci 'panic' "$WORK/gateway.log" || true)

# ---------------------------------------------------------------------------------------------
# Report.
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null | tr '\n' ' ' || true)
{
    printf 'date\t%s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    printf 'host\t%s\n' "$(hostname)"
    printf 'cpu_model\t%s\n' "$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
    printf 'cpus\t%s\n' "$(nproc) (lscpu: $(lscpu | sed -n 's/^Core(s) per socket: *//p') cores/socket, $(lscpu | sed -n 's/^Thread(s) per core: *//p') threads/core)"
    printf 'kernel\t%s\n' "$(uname -r)"
    printf 'memory\t%s\n' "$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    printf 'nginx\t%s\n' "$("$NGINX" -v 2>&1)"
    printf 'wrk\t%s\n' "$(wrk --version 2>&1 | head -1 | sed 's/ Copyright.*//')"
    printf 'gateway\t%s\n' "$("$BIN" version 2>&1 | head -1)"
    printf 'binary\t%s (built %s)\n' "$BIN" "$(date -u -r "$BIN" '+%Y-%m-%d %H:%M:%S UTC')"
    printf 'commit\t%s\n' "$COMMIT"
    printf 'dirty\t%s\n' "$DIRTY"
    printf 'rustc\t%s\n' "$(rustc --version)"
    printf 'layout\t%s\n' "$LAYOUT"
    printf 'clk_tck\t%s\n' "$(getconf CLK_TCK)"
    printf 'rounds\t%s\n' "$ROUNDS"
    printf 'duration\t%s\n' "$DURATION"
    printf 'conc\t%s\n' "$CONC"
    printf 'upstream_pool\t%s\n' "$UPSTREAM_POOL"
    printf 'usage_log\t%s\n' "$USAGE_LOG"
    printf 'load_start\t%s\n' "$LOAD_START"
    printf 'load_end\t%s\n' "$LOAD_END"
    printf 'busy\t%s%% before the servers started, %s%% after the load (our servers idle)\n' "$BUSY_BEFORE" "$BUSY_AFTER"
    printf 'panics\t%s\n' "$GW_LOG_PANICS"
} >"$DATA/meta.tsv"

OUT=$RESULTS_DIR/$(date '+%Y-%m-%d')-$(hostname)-passthrough.md
rc=0
python3 - "$DATA" "$OUT" "$PERF_DIR" <<'PY' || rc=$?
import csv, json, os, statistics, sys

data, out, perf_dir = sys.argv[1:4]
meta = dict(l.rstrip("\n").split("\t", 1) for l in open(os.path.join(data, "meta.tsv")) if "\t" in l)
hz = int(meta["clk_tck"])
runs = list(csv.DictReader(open(os.path.join(data, "runs.tsv")), delimiter="\t"))
PATHS = ["openai", "anthropic", "gemini", "translated", "responses"]
DESC = {
    "openai": "OpenAI client → openai channel, bytes relayed (reference)",
    "anthropic": "Anthropic client (`/v1/messages`) → anthropic channel, passthrough",
    "gemini": "Gemini client (`:generateContent`) → gemini channel, passthrough",
    "translated": "OpenAI client → anthropic channel, translated both ways",
    "responses": "Responses client (`/v1/responses`) → openai channel without the API, translated to chat and back",
}
for r in runs:
    req = int(r["requests"])
    r["rps"] = req / (int(r["duration_us"]) / 1e6)
    r["gw_us"] = int(r["gw_ticks"]) * 1e6 / hz / req if req else float("nan")
    r["up_us"] = int(r["up_ticks"]) * 1e6 / hz / req if req else float("nan")
    r["p50_us_n"] = int(r["p50_us"])
    r["p99_us_n"] = int(r["p99_us"])
    r["errs"] = sum(int(r[k]) for k in ("err_connect", "err_read", "err_write", "err_timeout", "err_status"))
tput = [r for r in runs if r["phase"] == "tput"]
rounds = sorted({int(r["round"]) for r in tput})
by = {(int(r["round"]), r["path"]): r for r in tput}
med = statistics.median

def m(path, key):
    xs = [by[(k, path)][key] for k in rounds if (k, path) in by]
    return med(xs) if xs else float("nan")

def ratio(path, key):
    xs = [by[(k, path)][key] / by[(k, "openai")][key] for k in rounds
          if (k, path) in by and (k, "openai") in by and by[(k, "openai")][key]]
    return (med(xs), min(xs), max(xs)) if xs else (float("nan"),) * 3

bad = [r for r in runs if r["errs"]]
L = []
w = L.append
w(f"# Passthrough paths vs the OpenAI byte path — {meta['date'][:10]}, {meta['host']}")
w("")
w("`bash perf/passthrough.sh`: one gateway (`--workers 1`), one static nginx upstream speaking the "
  "three wire families, four request paths through the gateway. Every ratio pairs runs of the "
  "same round (seconds apart) on the same box, median over rounds.")
w("")
w("## Machine")
w("")
for k, label in [("cpus", "CPUs (nproc)"), ("cpu_model", "CPU model"), ("kernel", "kernel"), ("memory", "memory"),
                 ("commit", "commit"), ("dirty", "uncommitted changes in src/ at build time"),
                 ("binary", "binary"), ("gateway", "gateway"), ("rustc", "rustc"), ("nginx", "nginx"), ("wrk", "wrk"),
                 ("layout", "CPU layout"), ("load_start", "load average at start (1/5/15 min)"),
                 ("load_end", "load average at end (1/5/15 min)"), ("busy", "box busy"),
                 ("panics", "lines mentioning 'panic' in the gateway's log")]:
    v = meta.get(k, "")
    if k == "dirty":
        v = f"`{v.strip()}`" if v.strip() else "none"
    w(f"- {label}: {v}")
w(f"- runs: {meta['rounds']} rounds × 4 paths, `wrk -t1 -c{meta['conc']} -d{meta['duration']}s` each, "
  f"order rotated each round; gateway pool_max_idle {meta['upstream_pool']}; usage log {meta['usage_log']}")
w("")
w("## Summary")
w("")
if bad:
    w(f"**{len(bad)} run(s) saw non-2xx answers or socket errors: those figures measure something else "
      "(samples below).**")
    w("")
w("| path | what | req/s (median) | gateway CPU µs/req (median) | **CPU µs/req ÷ openai** (median of rounds, min–max) | req/s ÷ openai (median, min–max) | p50 / p99 µs (median) | upstream CPU µs/req |")
w("|---|---|---:|---:|---:|---:|---:|---:|")
for p in PATHS:
    c = ratio(p, "gw_us"); q = ratio(p, "rps")
    cr = "1 (reference)" if p == "openai" else f"**{c[0]:.3f}×** ({c[1]:.3f}–{c[2]:.3f})"
    qr = "1 (reference)" if p == "openai" else f"{q[0]:.3f}× ({q[1]:.3f}–{q[2]:.3f})"
    w(f"| {p} | {DESC[p]} | {m(p, 'rps'):,.0f} | {m(p, 'gw_us'):.2f} | {cr} | {qr} | "
      f"{m(p, 'p50_us_n'):,.0f} / {m(p, 'p99_us_n'):,.0f} | {m(p, 'up_us'):.2f} |")
w("")
w("Per-round ratios (gateway CPU µs/req ÷ openai's; req/s ÷ openai's in brackets):")
w("")
w("| round | order | " + " | ".join(p for p in PATHS if p != "openai") + " |")
w("|---|---|" + "---:|" * (len(PATHS) - 1))
for k in rounds:
    order = " → ".join(r["path"] for r in tput if int(r["round"]) == k)
    cells = []
    for p in PATHS[1:]:
        a, o = by.get((k, p)), by.get((k, "openai"))
        cells.append(f"{a['gw_us'] / o['gw_us']:.3f} ({a['rps'] / o['rps']:.3f})" if a and o else "—")
    w(f"| {k} | {order} | " + " | ".join(cells) + " |")
w("")
w("## Method")
w("")
w("- **Upstream**: nginx, one worker (`perf/nginx/passthrough-upstream.conf.tmpl`), `return 200` of a "
  "canned answer per family: `POST /v1/chat/completions` → `perf/chat_completion.json`; `POST /v1/messages` "
  "→ an Anthropic `message` whose `usage` has `cache_read_input_tokens`/`cache_creation_input_tokens` (and "
  "the `cache_creation` breakdown); `POST /v1beta/models/gemini-x:generateContent` → a Gemini "
  "`GenerateContentResponse` with `usageMetadata` (including `cachedContentTokenCount`). Bodies below.")
w("- **Gateway**: `--workers 1`, `[usage] log = true` (as shipped), `[discovery]` and `[health]` off, "
  "providers `openai` (`/v1`), `anthropic` (`/v1`) and `gemini` (`/v1beta`) on that upstream, one channel "
  "each: gpt-4o-mini, claude-x and gemini-x, each with a configured price (cache prices included; "
  "a loopback upstream would otherwise count as a free local provider).")
w("- **Paths** (`perf/passthrough-post.lua`, one script for all, no `response()` hook): "
  "`openai` = post.lua's request; `anthropic` = `POST /v1/messages` "
  "`{\"model\":\"claude-x\",\"max_tokens\":64,…}` + `anthropic-version: 2023-06-01`; `gemini` = "
  "`POST /v1beta/models/gemini-x:generateContent` `{\"contents\":[…]}`; `translated` = `POST "
  "/v1/chat/completions` `{\"model\":\"claude-x\",…}`.")
w("- **Sanity** before timing: each path through the gateway answers 200 with its family's shape "
  "(chat.completion with content and usage; Anthropic `message` with a text block and the cache usage "
  "fields; Gemini candidate text and `usageMetadata`), else the run stops. Whether a passthrough answer is "
  "the upstream's bytes is recorded (not enforced).")
w(f"- **Load**: a 1 s warm-up per path, then {meta['rounds']} rounds; each round runs every path "
  f"once (`wrk -t1 -c{meta['conc']} -d{meta['duration']}s --timeout 5s`), rotating which path goes first. "
  "Every run's non-2xx count and socket errors are kept; any makes the script exit 2.")
w("- **CPU per request**: utime+stime of the whole gateway process (every thread, the usage-log writer "
  "included) from `/proc/PID/stat` before and after each run, ÷ the requests wrk counted; the same for the "
  "upstream's worker. One tick = " + f"{1e6 / hz:,.0f} µs.")
w("- **Layout**: " + meta["layout"] + " (as `perf/run.sh`).")
w("")
w("## Sanity exchanges (through the gateway)")
w("")
for p in PATHS:
    s = open(os.path.join(data, f"sanity-{p}.txt")).read().strip()
    h = open(os.path.join(data, f"sample-{p}.h")).read().strip()
    b = open(os.path.join(data, f"sample-{p}.b"), errors="replace").read()
    w(f"### {p}: {s}")
    w("")
    w("```")
    w(h)
    w("")
    w(b)
    w("```")
    w("")
w("Upstream's canned answers (what the gateway received):")
w("")
for f in ("anthropic", "gemini"):
    w(f"- {f}: `{open(os.path.join(os.path.dirname(data), f'upstream-{f}.json')).read()}`")
w("- openai: `perf/chat_completion.json`")
w("")
up = os.path.join(data, "usage-sanity.jsonl")
if os.path.exists(up) and os.path.getsize(up):
    w("Usage records of the sanity exchanges (first record per endpoint/model; fields: endpoint, model, "
      "prompt, completion, cached, cache_write, estimated, cost, status):")
    w("")
    w("| endpoint | model | prompt | completion | cached | cache_write | estimated | cost | status |")
    w("|---|---|---:|---:|---:|---:|---|---:|---:|")
    seen = set()
    for line in open(up):
        try:
            u = json.loads(line)
        except ValueError:
            continue
        key = (u.get("endpoint"), u.get("model"))
        if key in seen:
            continue
        seen.add(key)
        w("| " + " | ".join(str(u.get(k)) for k in ("endpoint", "model", "prompt_tokens", "completion_tokens",
          "cached_tokens", "cache_write_tokens", "usage_estimated", "cost", "status")) + " |")
    w("")
w("## Every run")
w("")
w("| phase | round | path | requests | req/s | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | errors (conn/read/write/timeout/status) | gateway ticks | gateway CPU µs/req | upstream CPU µs/req |")
w("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|")
for r in runs:
    e = "/".join(r[k] for k in ("err_connect", "err_read", "err_write", "err_timeout", "err_status"))
    w(f"| {r['phase']} | {r['round']} | {r['path']} | {int(r['requests']):,} | {r['rps']:,.0f} | {int(r['p50_us']):,} | "
      f"{int(r['p90_us']):,} | {int(r['p99_us']):,} | {int(r['p999_us']):,} | {int(r['max_us']):,} | {e} | "
      f"{r['gw_ticks']} | {r['gw_us']:.2f} | {r['up_us']:.2f} |")
w("")
if bad:
    w("## Failing answers (capture runs)")
    w("")
    for p in sorted({r["path"] for r in bad}):
        f = os.path.join(data, f"errors-{p}.txt")
        w(f"### {p}")
        w("")
        w("```")
        w(open(f, errors="replace").read()[:6000] if os.path.exists(f) else "(no capture)")
        w("```")
        w("")
open(out, "w").write("\n".join(L) + "\n")

# Printed summary.
print()
print(f"{'path':<11} {'req/s':>9} {'CPU us/req':>11} {'CPU / openai':>13} {'req/s / openai':>15} {'p50 us':>7} {'p99 us':>7}")
for p in PATHS:
    c = ratio(p, "gw_us")[0]; q = ratio(p, "rps")[0]
    print(f"{p:<11} {m(p, 'rps'):>9,.0f} {m(p, 'gw_us'):>11.2f} {c:>12.3f}x {q:>14.3f}x {m(p, 'p50_us_n'):>7,.0f} {m(p, 'p99_us_n'):>7,.0f}")
print()
sys.exit(2 if bad else 0)
PY
log "results: $OUT"
((rc == 0)) || log "LOUD: non-2xx answers or socket errors were seen: see the results file"
exit "$rc"
