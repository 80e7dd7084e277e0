#!/usr/bin/env bash
# Peer gateways against ours: LiteLLM (PyPI), Portkey (npm) and crabllm (crates.io) beside the
# gateway, nginx proxy_pass and the bare upstream, on loopback, on the same box, the same
# static upstream and the same request, in one bounded run. Method and how to read the
# results: perf/peers/README.md.
#
#   bash perf/peers.sh                        # installs (cached), builds, ~4.5 minutes of load
#   PEERS="crabllm" ROUNDS=1 DURATION=2 bash perf/peers.sh   # quick look at one peer
#
# Writes perf/results/<YYYY-MM-DD>-<hostname>-peers.md. Exit status: 0 when every requested
# peer was installed, answered the sanity request and served every timed run without a
# non-2xx or socket error; 2 when the results were written but some peer could not be
# measured cleanly (the results file says which and why); 1 on a setup failure of our own
# side (upstream, nginx, gateway).
set -euo pipefail

PERF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$PERF_DIR")
HERE=$PERF_DIR/peers

ROUNDS=${ROUNDS:-3}             # alternating rounds; each runs every target at every CONNS
DURATION=${DURATION:-5}         # seconds per wrk run
CONNS=${CONNS:-32 256}          # client connections (wrk -c), one run per target per value
PEERS=${PEERS:-crabllm portkey litellm}
WRK_TIMEOUT=${WRK_TIMEOUT:-10}  # wrk --timeout (s): a slower answer counts as a socket error
# Idle upstream connections nginx (`keepalive`) and the gateway (`pool_max_idle`) keep. The
# peers' HTTP clients keep as many idle connections as they opened (no cap by default), so
# the default here is above the largest CONNS: every proxy then reuses its upstream
# connections at c256 instead of our two closing and reopening them (perf/README.md, "Reading
# c256"). UPSTREAM_POOL=64 gives nginx and the gateway their shipped default instead.
UPSTREAM_POOL=${UPSTREAM_POOL:-512}
USAGE_LOG=${USAGE_LOG:-true}    # the gateway's per-request usage log, on as shipped
LITELLM_VERSION=${LITELLM_VERSION:-1.106.12}
PORTKEY_VERSION=${PORTKEY_VERSION:-1.15.2}
CRABLLM_VERSION=${CRABLLM_VERSION:-0.0.25}
PEERS_TIMEOUT=${PEERS_TIMEOUT:-2400}  # hard ceiling for the whole script, installs and build included

if [[ -z ${PEERS_GUARDED:-} ]]; then
    export PEERS_GUARDED=1
    exec timeout --foreground -k 30 "$PEERS_TIMEOUT" bash "$0" "$@"
fi
START_S=$SECONDS

CACHE=$PERF_DIR/work/peers     # gitignored; installs are kept here across runs
WORK=$CACHE/run                # this run's configs, logs and raw output (wiped at each run)
DATA=$WORK/data
RESULTS_DIR=$PERF_DIR/results

# The peers only ever talk to the upstream on 127.0.0.1: no proxy from the environment.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

# Logging, process bookkeeping (everything started, and its descendants, stopped on any exit),
# rendering, nginx start-up and /proc readings: perf/lib.sh, as run.sh and load.sh use them.
PERF_TIMEOUT=$PEERS_TIMEOUT
# shellcheck source=perf/lib.sh
source "$PERF_DIR/lib.sh"

# ---------------------------------------------------------------------------------------------
# 1. Tools from Debian's packages, when missing (as perf/run.sh), plus what the peers need:
# node and npm for Portkey, pkg-config and OpenSSL headers for crabllm's native-tls build.
want_peer() { [[ " $PEERS " == *" $1 "* ]]; }
ensure_tools wrk nginx python3 curl taskset pgrep
need=()
command -v ps >/dev/null || need+=(procps)
if want_peer portkey; then
    command -v node >/dev/null || need+=(nodejs)
    command -v npm >/dev/null || need+=(npm)
fi
if want_peer crabllm; then
    command -v pkg-config >/dev/null || need+=(pkg-config)
    [[ -e /usr/include/openssl/ssl.h ]] || need+=(libssl-dev)
fi
if ((${#need[@]})); then
    log "installing ${need[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
if want_peer litellm && ! python3 -m venv --help >/dev/null 2>&1; then
    log "installing python3-venv"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-venv >/dev/null
fi
# The real interpreter (not a pyenv shim): procs.py runs twice per wrk run.
PY=$(python3 -c 'import sys; print(sys.executable)')

mkdir -p "$CACHE"
rm -rf "$WORK"
mkdir -p "$DATA" "$RESULTS_DIR"

# Peer bookkeeping: PEER_STATUS[name] is "ok" or why the peer is not measured.
declare -A PEER_STATUS PEER_VERSION
for p in $PEERS; do
    case $p in crabllm | portkey | litellm) ;; *) die "unknown peer '$p' (known: crabllm portkey litellm)" ;; esac
    PEER_STATUS[$p]=ok PEER_VERSION[$p]='?'
done
peer_fail() { # NAME WHY
    PEER_STATUS[$1]=$2
    log "PEER FAILED: $1: $2"
}

# ---------------------------------------------------------------------------------------------
# 2. Peer installs, each cached under perf/work/peers/ with a stamp naming the version; a
# stamp for another version reinstalls. A failed install is reported and the run goes on.
# (perf/run.sh wipes perf/work/ as a whole: after it, this script installs again.)
stamp_ok() { [[ -f $CACHE/$1.installed && $(<"$CACHE/$1.installed") == "$2" ]]; }

install_litellm() {
    local venv=$CACHE/litellm-venv
    if stamp_ok litellm "$LITELLM_VERSION"; then return 0; fi
    log "installing LiteLLM $LITELLM_VERSION (pip, venv in $venv)"
    rm -rf "$venv" "$CACHE/litellm.installed"
    python3 -m venv "$venv" || return 1
    timeout 900 "$venv/bin/pip" install -q --disable-pip-version-check "litellm[proxy]==$LITELLM_VERSION" \
        >"$CACHE/litellm-install.log" 2>&1 || { tail -5 "$CACHE/litellm-install.log" >&2; return 1; }
    # LiteLLM releases 1.82.7-1.82.8 and 1.107.0 were malicious uploads that ran code from a .pth
    # file at every interpreter start. Refuse a venv with any .pth besides setuptools' own.
    local pth
    pth=$(find "$venv" -name '*.pth' ! -name 'distutils-precedence.pth' | head -5)
    [[ -z $pth ]] || { log "unexpected .pth files in the LiteLLM venv: $pth"; return 1; }
    echo "$LITELLM_VERSION" >"$CACHE/litellm.installed"
}

install_portkey() {
    local dir=$CACHE/portkey
    if stamp_ok portkey "$PORTKEY_VERSION"; then return 0; fi
    log "installing Portkey gateway $PORTKEY_VERSION (npm, in $dir)"
    rm -rf "$dir" "$CACHE/portkey.installed"
    mkdir -p "$dir"
    # --ignore-scripts: no install hooks run (the package's own postinstall is patch-package,
    # with no patches shipped).
    (cd "$dir" && timeout 600 npm install --no-audit --no-fund --ignore-scripts --no-save \
        "@portkey-ai/gateway@$PORTKEY_VERSION") >"$CACHE/portkey-install.log" 2>&1 \
        || { tail -5 "$CACHE/portkey-install.log" >&2; return 1; }
    [[ -f $dir/node_modules/@portkey-ai/gateway/build/start-server.js ]] || return 1
    echo "$PORTKEY_VERSION" >"$CACHE/portkey.installed"
}

install_crabllm() {
    local root=$CACHE/cargo
    if stamp_ok crabllm "$CRABLLM_VERSION" && [[ -x $root/bin/crabllm ]]; then return 0; fi
    log "installing crabllm $CRABLLM_VERSION (cargo install --locked, in $root; a release build)"
    rm -f "$CACHE/crabllm.installed"
    # Its own target dir (not the caller's CARGO_TARGET_DIR), removed once installed.
    CARGO_TARGET_DIR=$CACHE/crabllm-build timeout 1800 cargo install --locked --force --root "$root" \
        --version "$CRABLLM_VERSION" crabllm >"$CACHE/crabllm-install.log" 2>&1 \
        || { tail -15 "$CACHE/crabllm-install.log" >&2; return 1; }
    rm -rf "$CACHE/crabllm-build"
    echo "$CRABLLM_VERSION" >"$CACHE/crabllm.installed"
}

for p in $PEERS; do
    t0=$SECONDS
    case $p in
    litellm) install_litellm ;;
    portkey) install_portkey ;;
    crabllm) install_crabllm ;;
    esac && ok=1 || ok=0
    if ((ok)); then
        PEER_VERSION[$p]=$(<"$CACHE/$p.installed")
        printf '%s\t%s\n' "$p" $((SECONDS - t0)) >>"$DATA/install_seconds.tsv"
    else
        peer_fail "$p" "install failed (see perf/work/peers/$p-install.log)"
    fi
done

# ---------------------------------------------------------------------------------------------
# 3. Our gateway, built as perf/run.sh builds it.
log "cargo build --release"
(cd "$ROOT" && cargo build --release 2>"$WORK/build.log") || { tail -30 "$WORK/build.log" >&2; die "build"; }
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/smart-ai-router
[[ -x $BIN ]] || die "no binary at $BIN"

# ---------------------------------------------------------------------------------------------
# CPU layout as in perf/run.sh (its default UPSTREAM_CPU=server): wrk on the first CPU of our
# mask; the upstream and every proxy, ours and the peers, on the last.
pin_layout
if ((CLIENT_CPU != SERVER_CPU)); then
    PIN_CLIENT=(taskset -c "$CLIENT_CPU")
    PIN_SERVER=(taskset -c "$SERVER_CPU")
    LAYOUT="wrk on CPU $CLIENT_CPU; upstream nginx and every proxy (nginx, gateway, peers) on CPU $SERVER_CPU"
else
    PIN_CLIENT=()
    PIN_SERVER=()
    LAYOUT="single CPU: nothing pinned"
fi

read -r P_UP P_PROXY P_GW P_CRAB P_PORTKEY P_LITELLM < <(free_ports 6)

# Per-target URL and extra request headers (curl and wrk both take -H "Name: value").
declare -A URL
declare -A HDRS   # newline-separated header lines
hdr_args() { # TARGET -> H_ARGS
    H_ARGS=()
    local h
    while IFS= read -r h; do
        if [[ -n $h ]]; then H_ARGS+=(-H "$h"); fi
    done <<<"${HDRS[$1]:-}"
}

http_status() { # TARGET [MAX_TIME]
    hdr_args "$1"
    curl -s -o /dev/null -w '%{http_code}' --max-time "${2:-2}" -H 'Content-Type: application/json' \
        "${H_ARGS[@]}" --data-binary @"$WORK/request.json" "${URL[$1]}" || true
}

# wait_up TARGET PID SECONDS: until the target answers the chat request 200; false if the
# process died or the time ran out.
wait_up() {
    local t0=$SECONDS
    while ((SECONDS - t0 < $3)); do
        alive "$2" || { log "$1: process $2 exited (see $WORK/$1.log)"; return 1; }
        [[ $(http_status "$1" 5) == 200 ]] && return 0
        sleep 0.2
    done
    log "$1: no 200 within $3 s (last status $(http_status "$1" 5); see $WORK/$1.log)"
    return 1
}

# sanity TARGET: a 200 chat.completion carrying the upstream's canned content, kept for the
# results file; false otherwise.
CANNED='Hello! How can I help you today?'
sanity() {
    hdr_args "$1"
    curl -sS -i --max-time 30 -H 'Content-Type: application/json' "${H_ARGS[@]}" \
        --data-binary @"$WORK/request.json" "${URL[$1]}" 2>&1 | tr -d '\r' >"$DATA/sample-$1.txt" || true
    head -1 "$DATA/sample-$1.txt" | grep -q '^HTTP/[0-9.]* 200' \
        || { log "$1 answered: $(head -1 "$DATA/sample-$1.txt")"; return 1; }
    grep -q '"chat.completion"' "$DATA/sample-$1.txt" || { log "$1: body is not a chat.completion"; return 1; }
    grep -qF "$CANNED" "$DATA/sample-$1.txt" || { log "$1: body lacks the upstream's content"; return 1; }
}

BUSY_BEFORE=$(busy_pct)
((BUSY_BEFORE < 10)) || log "WARNING: the box is ${BUSY_BEFORE}% busy before we start: expect noisy figures"

# ---------------------------------------------------------------------------------------------
# 4. Upstream, nginx proxy and gateway: perf/run.sh's templates and shapes, unchanged.
BODY=$(<"$PERF_DIR/chat_completion.json")
[[ $BODY != *[\'\$\\]* ]] || die "chat_completion.json must not contain ' \$ or \\ (nginx string)"
printf '%s' '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}' >"$WORK/request.json"
grep -qF "$CANNED" "$PERF_DIR/chat_completion.json" || die "chat_completion.json lacks '$CANNED'"

declare -A SPID   # target -> the server process whose tree is timed
render "$PERF_DIR/nginx/upstream.conf.tmpl" "$WORK/upstream.conf" WORK="$WORK" PORT="$P_UP" BODY="$BODY"
start_nginx upstream "$WORK/upstream.conf" "${PIN_SERVER[@]}"
SPID[direct]=$NGINX_PID
URL[direct]=http://127.0.0.1:$P_UP/v1/chat/completions
wait_up direct "${SPID[direct]}" 10 || die "upstream"

render "$PERF_DIR/nginx/proxy.conf.tmpl" "$WORK/proxy.conf" WORK="$WORK" PORT="$P_PROXY" UPSTREAM_PORT="$P_UP" \
    POOL="$UPSTREAM_POOL"
start_nginx proxy "$WORK/proxy.conf" "${PIN_SERVER[@]}"
SPID[nginx]=$NGINX_PID
URL[nginx]=http://127.0.0.1:$P_PROXY/v1/chat/completions
wait_up nginx "${SPID[nginx]}" 10 || die "nginx proxy"

render "$PERF_DIR/gateway.toml.tmpl" "$WORK/gateway.toml" LISTEN="127.0.0.1:$P_GW" WORKERS=1 \
    UPSTREAM_PORT="$P_UP" POOL="$UPSTREAM_POOL" STATE="$WORK/gateway-state" USAGE_LOG="$USAGE_LOG" \
    PIN_WORKERS=true TELEMETRY=""
"$BIN" check --config "$WORK/gateway.toml" >"$WORK/gateway-check.txt" || die "gateway config (see $WORK/gateway-check.txt)"
"${PIN_SERVER[@]}" "$BIN" --config "$WORK/gateway.toml" --workers 1 >"$WORK/gateway.log" 2>&1 &
SPID[gateway]=$!
PIDS+=("${SPID[gateway]}")
URL[gateway]=http://127.0.0.1:$P_GW/v1/chat/completions
wait_up gateway "${SPID[gateway]}" 10 || die "gateway"

TARGETS=(direct nginx gateway)
for t in "${TARGETS[@]}"; do sanity "$t" || die "$t failed the sanity request (see $DATA/sample-$t.txt)"; done

# ---------------------------------------------------------------------------------------------
# 5. The peers, each pinned to the server CPU like every proxy here, one worker where the
# peer has such a setting. A peer that does not come up or fails the sanity request is
# reported and left out of the timed runs.
start_peer() { # NAME: sets SPID/URL/HDRS, returns false when it does not answer
    local p=$1 log=$WORK/$1.log
    case $p in
    crabllm)
        render "$HERE/crabllm.toml.tmpl" "$WORK/crabllm.toml" LISTEN="127.0.0.1:$P_CRAB" UPSTREAM_PORT="$P_UP"
        # #[tokio::main]: a multi-thread runtime, one worker thread per CPU it may use. taskset
        # gives it one CPU and TOKIO_WORKER_THREADS=1 says so explicitly.
        TOKIO_WORKER_THREADS=1 RUST_LOG=warn "${PIN_SERVER[@]}" "$CACHE/cargo/bin/crabllm" serve \
            --config "$WORK/crabllm.toml" >"$log" 2>&1 &
        SPID[$p]=$!
        URL[$p]=http://127.0.0.1:$P_CRAB/v1/chat/completions
        ;;
    portkey)
        # One node process (no cluster mode in start-server.js). The provider and its base URL
        # travel in Portkey's request headers; 127.0.0.1 is in its default TRUSTED_CUSTOM_HOSTS.
        NODE_ENV=production "${PIN_SERVER[@]}" node --require "$HERE/loopback.cjs" \
            "$CACHE/portkey/node_modules/@portkey-ai/gateway/build/start-server.js" \
            --port="$P_PORTKEY" --headless >"$log" 2>&1 &
        SPID[$p]=$!
        URL[$p]=http://127.0.0.1:$P_PORTKEY/v1/chat/completions
        HDRS[$p]=$(printf '%s\n' 'x-portkey-provider: openai' \
            "x-portkey-custom-host: http://127.0.0.1:$P_UP/v1" 'Authorization: Bearer sk-bench')
        ;;
    litellm)
        render "$HERE/litellm.yaml.tmpl" "$WORK/litellm.yaml" UPSTREAM_PORT="$P_UP"
        # One uvicorn worker in the CLI's own process. The model cost map is read from the
        # package (no fetch at start), telemetry off, logs at ERROR (no access log line).
        # The proxy refuses to start without a master key: a fresh random one per run, which
        # every request then carries (checked in memory: there is no database).
        local key
        key=sk-$("$PY" -c 'import secrets; print(secrets.token_hex(32))')
        LITELLM_MASTER_KEY=$key LITELLM_LOG=ERROR LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_TELEMETRY=False \
            "${PIN_SERVER[@]}" "$CACHE/litellm-venv/bin/litellm" --config "$WORK/litellm.yaml" \
            --host 127.0.0.1 --port "$P_LITELLM" --num_workers 1 >"$log" 2>&1 &
        SPID[$p]=$!
        URL[$p]=http://127.0.0.1:$P_LITELLM/v1/chat/completions
        HDRS[$p]="Authorization: Bearer $key"
        ;;
    esac
    PIDS+=("${SPID[$p]}")
    wait_up "$p" "${SPID[$p]}" 240   # LiteLLM takes 10-40 s to import and start
}

for p in $PEERS; do
    [[ ${PEER_STATUS[$p]} == ok ]] || continue
    log "starting $p ${PEER_VERSION[$p]}"
    if ! start_peer "$p"; then
        peer_fail "$p" "did not answer the chat request with 200 (log: perf/work/peers/run/$p.log)"
        kill -TERM "${SPID[$p]}" 2>/dev/null || true
        continue
    fi
    if ! sanity "$p"; then
        peer_fail "$p" "sanity request: $(head -1 "$DATA/sample-$p.txt") (not a 200 chat.completion with the upstream's content)"
        kill -TERM "${SPID[$p]}" 2>/dev/null || true
        continue
    fi
    TARGETS+=("$p")
done

sleep 1
declare -A MEM_IDLE
for t in "${TARGETS[@]}"; do MEM_IDLE[$t]=$("$PY" "$HERE/procs.py" mem "${SPID[$t]}"); done

# What each server burns with no load at all (background tasks, timers, GC): over 5 s.
IDLE_ROOTS=()
for t in "${TARGETS[@]}"; do IDLE_ROOTS+=("${SPID[$t]}"); done
read -r -a idle0 < <("$PY" "$HERE/procs.py" ticks "${IDLE_ROOTS[@]}")
sleep 5
read -r -a idle1 < <("$PY" "$HERE/procs.py" ticks "${IDLE_ROOTS[@]}")
for i in "${!TARGETS[@]}"; do printf '%s\t%s\t5\n' "${TARGETS[i]}" $((idle1[i] - idle0[i])); done >"$DATA/idle.tsv"

# ---------------------------------------------------------------------------------------------
# 6. Load. Every live server's process tree is sampled before and after each run: the target's
# ticks give its CPU per request, the upstream's show what it cost there, and the sum over the
# servers that were not targeted must stay near zero (an idle peer stealing the shared core
# would show here). After each run the target gets up to 20 s to finish requests the client
# left in flight (a slow peer keeps working after wrk stops) before the next run starts.
RUNS=$DATA/runs.tsv
printf 'phase\tround\tconc\ttarget\trequests\tduration_us\tbytes\terr_connect\terr_read\terr_write\terr_timeout\terr_status\tp50_us\tp90_us\tp99_us\tp999_us\tmean_us\tmax_us\ttarget_ticks\tup_ticks\tother_ticks\tsettle_s\tother_detail\n' >"$RUNS"

measure() { # PHASE ROUND CONC TARGET SECONDS
    local phase=$1 round=$2 conc=$3 target=$4 secs=$5 raw line t i
    raw=$DATA/wrk-$phase-r$round-c$conc-$target.txt
    local roots=() before after
    for t in "${TARGETS[@]}"; do roots+=("${SPID[$t]}"); done
    read -r -a before < <("$PY" "$HERE/procs.py" ticks "${roots[@]}")
    hdr_args "$target"
    timeout -k 5 $((secs + WRK_TIMEOUT + 30)) "${PIN_CLIENT[@]}" wrk -t1 -c"$conc" -d"${secs}s" \
        --timeout "${WRK_TIMEOUT}s" --latency "${H_ARGS[@]}" -s "$PERF_DIR/post.lua" "${URL[$target]}" \
        >"$raw" 2>&1 || die "wrk failed on $target (see $raw)"
    read -r -a after < <("$PY" "$HERE/procs.py" ticks "${roots[@]}")
    local tt=0 ut=0 ot=0 d od=
    for i in "${!TARGETS[@]}"; do
        d=$((after[i] - before[i]))
        if [[ ${TARGETS[i]} == "$target" ]]; then tt=$d
        elif [[ ${TARGETS[i]} == direct ]]; then ut=$d
        else
            ot=$((ot + d))
            if ((d > 0)); then od+=${od:+,}${TARGETS[i]}:$d; fi
        fi
    done
    [[ $target == direct ]] && ut=$tt
    local settle
    settle=$("$PY" "$HERE/procs.py" settle 20 "${SPID[$target]}")
    line=$(grep '^PERF ' "$raw" | tail -1) || die "no PERF line in $raw"
    line=${line#PERF }
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$phase" "$round" "$conc" "$target" \
        "$(sed -E 's/[a-z_0-9]+=//g; s/ /\t/g' <<<"$line")" "$tt" "$ut" "$ot" "$settle" "${od:--}" >>"$RUNS"
    local req dur st errs rps
    req=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$line")
    dur=$(sed -E 's/.*duration_us=([0-9]+).*/\1/' <<<"$line")
    st=$(sed -E 's/.*err_status=([0-9]+).*/\1/' <<<"$line")
    errs=$(awk '{ s = 0; for (i = 1; i <= NF; i++) if ($i ~ /^err_/) { split($i, kv, "="); s += kv[2] } print s }' <<<"$line")
    rps=$(awk -v r="$req" -v d="$dur" 'BEGIN { printf "%.0f", r / (d / 1e6) }')
    log "$(printf '%-6s r%s c%-3s %-8s %8s req/s  non-2xx=%s errors=%s settle=%ss' "$phase" "$round" "$conc" "$target" "$rps" "$st" "$errs" "$settle")"
    sleep 0.5
}

log "warm-up: 2 s per target at c32"
for t in "${TARGETS[@]}"; do measure warmup 0 32 "$t" 2; done

n=${#TARGETS[@]}
log "throughput: $ROUNDS rounds x {$CONNS} x {${TARGETS[*]}}, ${DURATION}s each"
for ((r = 1; r <= ROUNDS; r++)); do
    for conc in $CONNS; do
        # Rotate which target goes first so drift (noisy neighbours) spreads evenly.
        for ((k = 0; k < n; k++)); do
            measure tput "$r" "$conc" "${TARGETS[(r - 1 + k) % n]}" "$DURATION"
        done
    done
done

BUSY_AFTER=$(busy_pct)
((BUSY_AFTER < 10)) || log "WARNING: the box is ${BUSY_AFTER}% busy with our servers idle: expect noisy figures"

sleep 1
: >"$DATA/mem.tsv"
for t in "${TARGETS[@]}"; do
    printf '%s\t%s\t%s\n' "$t" "${MEM_IDLE[$t]}" "$("$PY" "$HERE/procs.py" mem "${SPID[$t]}")" | tr ' ' '\t' >>"$DATA/mem.tsv"
done

# ---------------------------------------------------------------------------------------------
# 7. Report.
crab_v=   # the binary has no --version; cargo's install record names it
if [[ -x $CACHE/cargo/bin/crabllm ]]; then crab_v=$(cargo install --list --root "$CACHE/cargo" 2>/dev/null | head -1 | tr -d ':'); fi
{
    printf 'date\t%s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    printf 'host\t%s\n' "$(hostname)"
    printf 'cpu_model\t%s\n' "$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
    printf 'cpus\t%s\n' "$(nproc) (lscpu: $(lscpu | sed -n 's/^Core(s) per socket: *//p') cores/socket, $(lscpu | sed -n 's/^Thread(s) per core: *//p') threads/core)"
    printf 'kernel\t%s\n' "$(uname -r)"
    printf 'memory\t%s\n' "$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    printf 'os\t%s\n' "$(sed -n 's/^PRETTY_NAME="\?\([^"]*\)"\?$/\1/p' /etc/os-release)"
    printf 'nginx\t%s\n' "$("$NGINX" -v 2>&1)"
    printf 'wrk\t%s\n' "$(wrk --version 2>&1 | head -1 | sed 's/ Copyright.*//')"
    printf 'gateway\t%s\n' "$("$BIN" version)"
    printf 'commit\t%s\n' "$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$(cd "$ROOT" && [[ -n $(git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]] && echo ' (+ uncommitted changes in src/)')"
    printf 'rustc\t%s\n' "$(rustc --version)"
    printf 'python\t%s\n' "$(python3 --version 2>&1)"
    printf 'node\t%s\n' "$(node --version 2>/dev/null || echo 'not installed')"
    printf 'crabllm_bin\t%s\n' "${crab_v:-not installed}"
    printf 'layout\t%s\n' "$LAYOUT"
    printf 'clk_tck\t%s\n' "$(getconf CLK_TCK)"
    printf 'rounds\t%s\n' "$ROUNDS"
    printf 'duration\t%s\n' "$DURATION"
    printf 'conns\t%s\n' "$CONNS"
    printf 'wrk_timeout\t%s\n' "$WRK_TIMEOUT"
    printf 'upstream_pool\t%s\n' "$UPSTREAM_POOL"
    printf 'usage_log\t%s\n' "$USAGE_LOG"
    printf 'busy\t%s%% before the run, %s%% after the load phases (our servers idle)\n' "$BUSY_BEFORE" "$BUSY_AFTER"
    printf 'wall_s\t%s\n' $((SECONDS - START_S))
} >"$DATA/meta.tsv"
{
    printf 'peer\tversion\tstatus\n'
    for p in $PEERS; do printf '%s\t%s\t%s\n' "$p" "${PEER_VERSION[$p]}" "${PEER_STATUS[$p]}"; done
} >"$DATA/peers.tsv"

OUT=$RESULTS_DIR/$(date '+%Y-%m-%d')-$(hostname)-peers.md
rc=0
"$PY" "$HERE/report.py" "$DATA" "$OUT" || rc=$?
log "results: $OUT (wall time $((SECONDS - START_S)) s)"
((rc == 0)) || log "some peer could not be measured cleanly: see the results file"
exit "$rc"
