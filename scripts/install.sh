#!/usr/bin/env bash
# Installs smart-ai-router as a systemd service on bare-metal Linux:
#   binary  → $PREFIX/bin/smart-ai-router           (default PREFIX=/usr/local)
#   config  → /etc/smart-ai-router/config.toml     (kept if present; a starter otherwise)
#   keys    → /etc/smart-ai-router/env             (mode 0600; kept if present)
#   unit    → /etc/systemd/system/smart-ai-router.service
# then `systemctl daemon-reload` and, with --enable, `systemctl enable --now`.
#
# Usage: scripts/install.sh [--bin PATH] [--destdir DIR] [--enable] [--no-systemctl]
#   --bin PATH       install this binary instead of building one (cargo build --release)
#   --destdir DIR    stage everything under DIR (packaging, tests); implies --no-systemctl
#   --enable         enable and start the service after installing
#   --no-systemctl   do not call systemctl
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="" destdir="" enable=0 systemctl=1
prefix="${PREFIX:-/usr/local}"
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) bin="$2"; shift 2 ;;
        --destdir) destdir="$2"; systemctl=0; shift 2 ;;
        --enable) enable=1; shift ;;
        --no-systemctl) systemctl=0; shift ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

if [ -z "$bin" ]; then
    echo "building the release binary…"
    (cd "$here" && cargo build --release --locked)
    bin="$here/target/release/smart-ai-router"
fi
[ -x "$bin" ] || { echo "install.sh: $bin is not an executable" >&2; exit 1; }

etc="$destdir/etc/smart-ai-router"
unit_dir="$destdir/etc/systemd/system"
install -d -m 0755 "$destdir$prefix/bin" "$unit_dir"
install -d -m 0750 "$etc"
install -m 0755 "$bin" "$destdir$prefix/bin/smart-ai-router"
# The unit names /usr/local/bin; follow a different prefix.
sed "s#/usr/local/bin/smart-ai-router#$prefix/bin/smart-ai-router#g" \
    "$here/scripts/smart-ai-router.service" > "$unit_dir/smart-ai-router.service"
chmod 0644 "$unit_dir/smart-ai-router.service"

if [ ! -e "$etc/config.toml" ]; then
    cat > "$etc/config.toml" <<'EOF'
# smart-ai-router config: every key with its default and meaning is in configs/example.toml of
# the source tree. Reload after editing: systemctl reload smart-ai-router
[server]
listen = "127.0.0.1:7601"

[admin]
listen = "127.0.0.1:7602"
# token = "${SMART_AI_ROUTER_ADMIN_TOKEN}"   # required for a non-loopback listen

[providers.openai]
kind = "openai"

[[channels]]
id = "openai"
provider = "openai"
api_key = "${OPENAI_API_KEY}"
# models are discovered from the provider; list some to serve them before the first discovery
models = ["gpt-4o-mini"]
EOF
    chmod 0640 "$etc/config.toml"
    echo "wrote a starter $etc/config.toml"
fi
if [ ! -e "$etc/env" ]; then
    umask 077
    cat > "$etc/env" <<'EOF'
# Provider keys for smart-ai-router (KEY=value, one per line). Mode 0600.
# OPENAI_API_KEY=sk-...
EOF
    chmod 0600 "$etc/env"
    echo "wrote $etc/env: put your provider keys there"
fi

if [ "$systemctl" = 1 ]; then
    systemctl daemon-reload
    if [ "$enable" = 1 ]; then
        systemctl enable --now smart-ai-router
        systemctl --no-pager status smart-ai-router || true
    else
        echo "installed; start with: systemctl enable --now smart-ai-router"
    fi
fi
echo "done: $destdir$prefix/bin/smart-ai-router, $unit_dir/smart-ai-router.service, $etc/"
