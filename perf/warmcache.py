#!/usr/bin/env python3
"""Writes a warm-restart scenario: a gateway config with 40 channels that list no models (all
discovered), and a state dir whose discovery cache holds 85 models per channel (3,400
(channel, model) pairs), as a gateway that ran before would have left it.

Usage: warmcache.py OUT_CONFIG STATE_DIR LISTEN UPSTREAM_PORT

Every provider points at the perf upstream (static nginx): chat requests succeed, and its
`GET /v1/models` answers 404, so the background refresh fails and the cached lists stay in
force — the "providers unreachable" restart the cache exists for. The cache file names follow
the gateway's contract: <channel id>-<16 hex of SHA-256(api key, NUL, base URL)>.tsv.
"""

import hashlib
import os
import sys

CHANNELS = 40
MODELS_PER_CHANNEL = 85
# The model the cold-start probe routes to; present in every channel's list.
PROBE_MODEL = "qwen/qwen3-8b-instruct"
# The cache format's header line (catalog::discovered::to_cache).
CACHE_HEADER = ("# smart-ai-router discovery cache v1: id, context, max output, USD per 1M input,"
                " USD per 1M output, vision, tools, json (- unknown)")


def pool():
    families = [
        ("openai", "gpt-4o", [0]), ("openai", "gpt-4o-mini", [0]), ("openai", "gpt-4.1", [0]),
        ("anthropic", "claude-3.5-sonnet", [0]), ("google", "gemini-2.0-flash", [0]),
        ("meta-llama", "llama-3.1", [8, 70, 405]), ("qwen", "qwen2.5", [7, 14, 32, 72]),
        ("qwen", "qwen3", [14, 30, 32, 235]), ("mistralai", "mistral-small", [24]),
        ("google", "gemma-2", [9, 27]), ("microsoft", "phi-4", [14]),
    ]
    out = []
    for vendor, family, sizes in families:
        for size in sizes:
            base = f"{vendor}/{family}" if size == 0 else f"{vendor}/{family}-{size}b-instruct"
            for variant in ("", ":free", "-2024-08-06", "-128k", ":nitro"):
                out.append(base + variant)
    return out


def main():
    out_config, state_dir, listen, upstream_port = sys.argv[1:5]
    models = pool()
    os.makedirs(os.path.join(state_dir, "discovery"), exist_ok=True)
    lines = [
        "# Warm restart: 40 channels, models only from the discovery cache (perf/warmcache.py).",
        "[server]", f'listen = "{listen}"', "workers = 1", "",
        "[log]", 'level = "warn"', "",
        "[admin]", 'listen = "127.0.0.1:0"', "",
        "[state]", f'dir = "{os.path.abspath(state_dir)}"', "",
    ]
    for c in range(CHANNELS):
        key = f"sk-warm-{c}"
        lines += [
            f"[providers.p{c}]", 'kind = "openai"',
            f'base_url = "http://127.0.0.1:{upstream_port}/v1"', "",
            "[[channels]]", f'id = "ch-{c}"', f'provider = "p{c}"', f'api_key = "{key}"',
            f"priority = {c % 3}", "",
        ]
        chosen = [PROBE_MODEL] + [
            m for m in (models[(c * 7 + k) % len(models)] for k in range(MODELS_PER_CHANNEL * 2))
            if m != PROBE_MODEL
        ]
        chosen = list(dict.fromkeys(chosen))[:MODELS_PER_CHANNEL]
        assert len(chosen) == MODELS_PER_CHANNEL, len(chosen)
        base = f"http://127.0.0.1:{upstream_port}/v1"
        digest = hashlib.sha256(key.encode() + b"\0" + base.encode()).hexdigest()[:16]
        cache = [CACHE_HEADER]
        for m in chosen:
            price_in, price_out = 0.1 * (1 + c % 9), 0.4 * (1 + c % 9)
            cache.append(f"{m}\t131072\t-\t{price_in}\t{price_out}\t-\t-\t-")
        with open(os.path.join(state_dir, "discovery", f"ch-{c}-{digest}.tsv"), "w") as f:
            f.write("\n".join(cache) + "\n")
    with open(out_config, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
