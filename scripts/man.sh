#!/usr/bin/env bash
# Writes the man page smart-ai-router(1), gzipped, from the binary's own --help and --version
# (help2man) plus packaging/man.h2m (files, environment, signals). Used by scripts/install.sh
# and scripts/package.sh, so the .deb and a source install carry the same page.
# Usage: scripts/man.sh BIN OUT.1.gz
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$1" out="$2"
# A reproducible date: the last commit's, else now.
SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git -C "$here" log -1 --format=%ct 2>/dev/null || date +%s)}"
export SOURCE_DATE_EPOCH
tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
help2man --locale=C.UTF-8 --no-info --section=1 --name="OpenAI-compatible LLM gateway" \
    --include="$here/packaging/man.h2m" --output="$tmp" "$bin"
gzip -9n < "$tmp" > "$out"
chmod 0644 "$out"
