#!/usr/bin/env bash
# Installs smart-ai-router as a systemd service on bare-metal Linux from a source checkout (the
# .deb, `scripts/package.sh`, is the packaged way; both install the same files from packaging/):
#   binary  → $PREFIX/bin/smart-ai-router            (default PREFIX=/usr/local)
#   config  → /etc/smart-ai-router/config.toml      (packaging/config.toml; kept if present)
#   keys    → /etc/smart-ai-router/env              (packaging/env, mode 0600; kept if present)
#   unit    → /etc/systemd/system/smart-ai-router.service  (packaging/, /usr/bin → $PREFIX/bin)
#   man     → $PREFIX/share/man/man1/smart-ai-router.1.gz  (from --help, when help2man exists)
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
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
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
# The service runs as a DynamicUser, and ConfigurationDirectory= leaves /etc/smart-ai-router
# root-owned: the directory and config.toml must be readable by others (they hold no secret;
# keys live in the root-only env file, which systemd reads before dropping privileges).
install -d -m 0755 "$destdir$prefix/bin" "$unit_dir" "$etc"
install -m 0755 "$bin" "$destdir$prefix/bin/smart-ai-router"
# The unit names /usr/bin (the .deb's path); follow a different prefix.
sed "s#/usr/bin/smart-ai-router#$prefix/bin/smart-ai-router#g" \
    "$here/packaging/smart-ai-router.service" > "$unit_dir/smart-ai-router.service"
chmod 0644 "$unit_dir/smart-ai-router.service"

if [ ! -e "$etc/config.toml" ]; then
    install -m 0644 "$here/packaging/config.toml" "$etc/config.toml"
    echo "wrote the starter $etc/config.toml"
elif [ "$(( $(stat -c '%#a' "$etc/config.toml") & 04 ))" = 0 ]; then
    echo "warning: $etc/config.toml is not readable by others, so the service's dynamic user" \
         "cannot read it: move any key in it to $etc/env, then chmod 0644 $etc/config.toml" >&2
fi
if [ ! -e "$etc/env" ]; then
    install -m 0600 "$here/packaging/env" "$etc/env"
    echo "wrote $etc/env: put your provider keys there"
fi

if command -v help2man >/dev/null; then
    install -d -m 0755 "$destdir$prefix/share/man/man1"
    bash "$here/scripts/man.sh" "$bin" "$destdir$prefix/share/man/man1/smart-ai-router.1.gz"
else
    echo "help2man not found: no man page installed (smart-ai-router --help has the same text)"
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
