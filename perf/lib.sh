#!/usr/bin/env bash
# Shared by the perf/*.sh scripts (sourced, not run): logging, the bookkeeping that stops
# every process a script started on any exit, template rendering, nginx start-up, and the /proc
# readings (CPU ticks, RSS, how busy the box is). The caller sets WORK before start_nginx.

log() { printf '[perf %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# Process bookkeeping: everything started here, and everything those processes started (nginx
# workers, a peer's worker processes), is stopped on any exit, success or not.
PIDS=()          # processes we started: TERM first so they shut their children down cleanly
ON_EXIT=()       # commands run last (e.g. restoring a sysctl a script raised)

# alive PID: running, not merely an unreaped zombie (an orphaned nginx worker can linger as one).
alive() {
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    s=${s##*) }
    [[ ${s:0:1} != Z ]]
}

# descendants PID: every live process under PID.
descendants() {
    ps -e -o pid= -o ppid= | awk -v root="$1" '
        { kids[$2] = kids[$2] " " $1 }
        END { n = split(kids[root], q, " "); for (i = 1; i <= n; i++) { print q[i]; m = split(kids[q[i]], r, " "); for (j = 1; j <= m; j++) q[++n] = r[j] } }'
}

# shellcheck disable=SC2317  # reached through the trap only
cleanup() {
    local rc=$? pid any i all=()
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        alive "$pid" || continue
        all+=("$pid")
        mapfile -t -O "${#all[@]}" all < <(descendants "$pid")
    done
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for ((i = 0; i < 50; i++)); do
        any=0
        for pid in "${all[@]}"; do alive "$pid" && any=1; done
        ((any)) || break
        sleep 0.1
    done
    for pid in "${all[@]}"; do
        if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
    done
    wait 2>/dev/null || true
    for i in "${ON_EXIT[@]}"; do eval "$i" || true; done
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated (overall timeout of ${PERF_TIMEOUT:-?}s?)"; exit 143' TERM

shopt -u patsub_replacement 2>/dev/null || true   # keep '&' literal in template values

# render TEMPLATE OUT KEY=VALUE...: fill @KEY@ placeholders.
render() {
    local text kv
    text=$(<"$1")
    for kv in "${@:3}"; do text=${text//@${kv%%=*}@/${kv#*=}}; done
    printf '%s\n' "$text" >"$2"
}

# start_nginx NAME CONF PIN...: nginx in the foreground of a background job, own prefix and error log
# (-e, so it never opens /var/log/nginx even before reading CONF). Sets NGINX_PID and, once it
# answers, NGINX_WORKER (the single worker: the process whose CPU we time).
start_nginx() {
    local dir=$WORK/$1 i
    mkdir -p "$dir"
    "$NGINX" -t -q -p "$dir" -c "$2" -e "$dir/error.log" || die "nginx config $2"
    "${@:3}" "$NGINX" -p "$dir" -c "$2" -e "$dir/error.log" >"$dir/stdout.log" 2>&1 &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
    NGINX_WORKER=
    for ((i = 0; i < 100; i++)); do
        NGINX_WORKER=$(pgrep -P "$NGINX_PID" | head -1 || true)
        [[ -n $NGINX_WORKER ]] && break
        sleep 0.05
    done
    [[ -n $NGINX_WORKER ]] || die "no nginx worker under $NGINX_PID (see $dir/error.log)"
}

# cpu_ticks PID: utime + stime of the whole process (all threads), in clock ticks.
cpu_ticks() {
    local s
    s=$(<"/proc/$1/stat")
    s=${s##*) }          # drop "pid (comm) ": comm may hold spaces
    # shellcheck disable=SC2086
    set -- $s            # now $1 is field 3 (state): utime is field 14, stime 15
    echo $((${12} + ${13}))
}

# busy_pct: share of all CPUs in use over one second, by anyone. Taken while our own servers
# are idle, it shows whether something else (a build, another test run) shares the box: the
# ratios survive moderate noise, absolute figures do not.
busy_pct() {
    local a b
    read -r -a a < <(grep '^cpu ' /proc/stat)
    sleep 1
    read -r -a b < <(grep '^cpu ' /proc/stat)
    # fields: user nice system idle iowait irq softirq steal
    local busy=$(((b[1] + b[2] + b[3] + b[6] + b[7] + b[8]) - (a[1] + a[2] + a[3] + a[6] + a[7] + a[8])))
    local idle=$(((b[4] + b[5]) - (a[4] + a[5])))
    echo $((100 * busy / (busy + idle > 0 ? busy + idle : 1)))
}

# rss_kib PID FIELD: VmRSS / VmHWM in KiB.
rss_kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }


# ensure_tools COMMAND...: installs the Debian packages behind any missing COMMAND. Installed
# here, never assumed: a fresh machine has none of them. `nginx` rather than `nginx-light`: on
# Debian 12 the light package is only nginx plus the echo module. Debian's policy-rc.d on this
# image keeps the packaged service from starting; ours run with their own prefix and never read
# /etc/nginx.
ensure_tools() {
    local need=() c
    for c in "$@"; do
        case $c in
            nginx) command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need+=(nginx) ;;
            taskset) command -v taskset >/dev/null || need+=(util-linux) ;;
            pgrep) command -v pgrep >/dev/null || need+=(procps) ;;
            *) command -v "$c" >/dev/null || need+=("$c") ;;
        esac
    done
    if ((${#need[@]})); then
        log "installing ${need[*]}"
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
    fi
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
}

# pin_layout: CLIENT_CPU and SERVER_CPU, the first and last CPU of our affinity mask.
# shellcheck disable=SC2034  # read by the scripts that source this file
pin_layout() {
    read -r CLIENT_CPU SERVER_CPU < <(python3 -c 'import os; c = sorted(os.sched_getaffinity(0)); print(c[0], c[-1])')
}

# free_ports N: N distinct free loopback ports, picked by the kernel (held open together).
free_ports() {
    python3 -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in ss))' "$1"
}
