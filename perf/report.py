#!/usr/bin/env python3
"""Turns the raw data of one perf/run.sh run into perf/results/<date>-<host>.md and prints the
summary table. Usage: report.py DATA_DIR OUT_MD

Exit status 2 when any run saw non-2xx responses or socket errors: a benchmark that served
errors measured something other than what it claims, so the run must not pass silently.
"""

import csv
import json
import os
import re
import statistics
import sys

TARGETS = ("direct", "nginx", "gateway")


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def load(data):
    with open(os.path.join(data, "meta.tsv")) as f:
        meta = dict(line.rstrip("\n").split("\t", 1) for line in f if "\t" in line)
    with open(os.path.join(data, "runs.tsv")) as f:
        runs = list(csv.DictReader(f, delimiter="\t"))
    for r in runs:
        for k, v in r.items():
            if k not in ("phase", "target"):
                r[k] = float(v)
        r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
        r["errors"] = int(
            r["err_connect"] + r["err_read"] + r["err_write"] + r["err_timeout"] + r["err_status"]
        )
    cold = read_cold(os.path.join(data, "coldstart.tsv"))
    warm = read_cold(os.path.join(data, "coldstart_warm.tsv")) if os.path.exists(
        os.path.join(data, "coldstart_warm.tsv")) else []
    control = read_cold(os.path.join(data, "control.tsv")) if os.path.exists(
        os.path.join(data, "control.tsv")) else []
    meta["control"] = control
    return meta, runs, cold + [dict(w, warm=1.0) for w in warm]


def read_cold(path):
    with open(path) as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f, delimiter="\t")]


def cpu_us_per_req(run, who, clk_tck):
    """CPU time the process spent during the run, per request served, in microseconds."""
    ticks = run[{"gateway": "gw_ticks", "nginx": "proxy_ticks", "upstream": "up_ticks"}[who]]
    return ticks * 1e6 / clk_tck / run["requests"] if run["requests"] else float("nan")


def summarise(meta, runs, cold):
    clk = float(meta["clk_tck"])
    tput = [r for r in runs if r["phase"] == "tput"]
    lat = [r for r in runs if r["phase"] == "lat"]
    s = {}
    for conc in (32, 256):
        rows = [r for r in tput if r["conc"] == conc]
        for t in TARGETS:
            s[f"rps_{t}_c{conc}"] = median([r["rps"] for r in rows if r["target"] == t])
        by_round = {}
        for r in rows:
            by_round.setdefault(r["round"], {})[r["target"]] = r
        for ref in ("nginx", "direct"):
            s[f"ratio_{ref}_c{conc}"] = median(
                [b["gateway"]["rps"] / b[ref]["rps"] for b in by_round.values() if len(b) == 3]
            )
        s[f"cpu_gateway_c{conc}"] = median(
            [cpu_us_per_req(r, "gateway", clk) for r in rows if r["target"] == "gateway"]
        )
        s[f"cpu_nginx_c{conc}"] = median(
            [cpu_us_per_req(r, "nginx", clk) for r in rows if r["target"] == "nginx"]
        )
        s[f"cpu_upstream_c{conc}"] = median(
            [cpu_us_per_req(r, "upstream", clk) for r in rows if r["target"] == "direct"]
        )
    for t in TARGETS:
        for p in ("p50", "p99"):
            s[f"{p}_{t}"] = median([r[f"{p}_us"] for r in lat if r["target"] == t])
    # Added latency pairs each proxy with the direct run of the same round, as the throughput
    # ratios do: a burst of VM jitter then moves both sides of a difference, not just one.
    lat_rounds = {}
    for r in lat:
        lat_rounds.setdefault(r["round"], {})[r["target"]] = r
    for p in ("p50", "p99"):
        for t in ("gateway", "nginx"):
            s[f"added_{p}_{t}"] = median(
                [b[t][f"{p}_us"] - b["direct"][f"{p}_us"] for b in lat_rounds.values() if len(b) == 3]
            )
    warm = [c for c in cold if c.get("warm")]
    cold = [c for c in cold if not c.get("warm")]
    s["warm_routed"] = median([c["routed_ms"] for c in warm])
    s["warm_routed_range"] = (min((c["routed_ms"] for c in warm), default=float("nan")),
                              max((c["routed_ms"] for c in warm), default=float("nan")))
    s["cold_health"] = median([c["health_ms"] for c in cold])
    s["cold_routed"] = median([c["routed_ms"] for c in cold])
    s["cold_health_range"] = (min(c["health_ms"] for c in cold), max(c["health_ms"] for c in cold))
    s["cold_routed_range"] = (min(c["routed_ms"] for c in cold), max(c["routed_ms"] for c in cold))
    s["errors"] = {t: sum(r["errors"] for r in runs if r["target"] == t) for t in TARGETS}
    return s


def fmt_range(xs, unit):
    if not xs:
        return "not measured"
    return f"**{median(xs):.1f} {unit}** ({min(xs):.1f}–{max(xs):.1f})"


def mib(kib):
    return f"{int(kib) / 1024:.1f} MiB"


def summary_table(meta, s):
    n, nl = meta["rounds"], meta["lat_rounds"]
    rows = [
        ("Metric", "Value"),
        (f"gateway req/s ÷ nginx proxy_pass, c32 (median of {n} per-round ratios)",
         f"**{s['ratio_nginx_c32']:.2f}×**"),
        ("gateway req/s ÷ nginx proxy_pass, c256", f"**{s['ratio_nginx_c256']:.2f}×**"),
        ("gateway req/s ÷ direct upstream, c32", f"{s['ratio_direct_c32']:.2f}×"),
        ("gateway req/s ÷ direct upstream, c256", f"{s['ratio_direct_c256']:.2f}×"),
        ("req/s c32: direct / nginx / gateway (medians)",
         f"{s['rps_direct_c32']:,.0f} / {s['rps_nginx_c32']:,.0f} / {s['rps_gateway_c32']:,.0f}"),
        ("req/s c256: direct / nginx / gateway (medians)",
         f"{s['rps_direct_c256']:,.0f} / {s['rps_nginx_c256']:,.0f} / {s['rps_gateway_c256']:,.0f}"),
        (f"added latency at c1, gateway − direct, p50 / p99 (median of {nl} per-round differences)",
         f"**{s['added_p50_gateway']:.0f} µs / {s['added_p99_gateway']:.0f} µs**"),
        ("added latency at c1, nginx − direct, p50 / p99",
         f"{s['added_p50_nginx']:.0f} µs / {s['added_p99_nginx']:.0f} µs"),
        ("c1 p50 / p99 (medians): direct · nginx · gateway",
         f"{s['p50_direct']:.0f}/{s['p99_direct']:.0f} · {s['p50_nginx']:.0f}/{s['p99_nginx']:.0f}"
         f" · {s['p50_gateway']:.0f}/{s['p99_gateway']:.0f} µs"),
        ("CPU per request, c32: gateway vs nginx proxy worker",
         f"**{s['cpu_gateway_c32']:.1f} µs vs {s['cpu_nginx_c32']:.1f} µs**"),
        ("CPU per request, c256: gateway vs nginx proxy worker",
         f"{s['cpu_gateway_c256']:.1f} µs vs {s['cpu_nginx_c256']:.1f} µs"),
        ("CPU per request of the static upstream itself (c32 / c256)",
         f"{s['cpu_upstream_c32']:.1f} µs / {s['cpu_upstream_c256']:.1f} µs"),
        ("gateway RSS idle, 2 workers (1 s after /health)", mib(meta["rss_idle_2w_kib"])),
        ("gateway RSS idle, 1 worker (before load)", mib(meta["rss_idle_1w_kib"])),
        ("gateway RSS after load, 1 worker (VmRSS / VmHWM peak)",
         f"{mib(meta['rss_loaded_1w_kib'])} / {mib(meta['hwm_loaded_1w_kib'])}"),
        ("exec → first GET /health 200 (median of cold starts, min–max)",
         f"**{s['cold_health']:.1f} ms** ({s['cold_health_range'][0]:.1f}–{s['cold_health_range'][1]:.1f})"),
        ("exec → first routed chat 200",
         f"{s['cold_routed']:.1f} ms ({s['cold_routed_range'][0]:.1f}–{s['cold_routed_range'][1]:.1f})"),
        ("exec → first routed chat 200, warm restart: 40 channels, 3,400 pairs from the discovery cache",
         f"**{s['warm_routed']:.1f} ms** ({s['warm_routed_range'][0]:.1f}–{s['warm_routed_range'][1]:.1f})"),
        ("catalog rebuild, 40 channels / 3,400 pairs (median of admin overrides, min–max)",
         fmt_range([c["build_ms"] for c in meta["control"]], "ms")),
        ("publication → every worker on the new snapshot (tick 50 ms)",
         fmt_range([c["propagation_ms"] for c in meta["control"]], "ms")),
        ("non-2xx + socket errors: direct / nginx / gateway",
         " / ".join(str(s["errors"][t]) for t in TARGETS)),
    ]
    w0 = max(len(r[0]) for r in rows)
    out = [f"| {rows[0][0]:<{w0}} | {rows[0][1]} |", f"|{'-' * (w0 + 2)}|-------|"]
    out += [f"| {a:<{w0}} | {b} |" for a, b in rows[1:]]
    return "\n".join(out)


def runs_table(runs, meta):
    clk = float(meta["clk_tck"])
    head = (
        "| phase | round | conc | target | req/s | p50 µs | p99 µs | p99.9 µs | max µs | errors"
        " (conn/read/write/timeout/status) | CPU µs/req (proxy) | CPU µs/req (upstream) |"
    )
    out = [head, "|" + "---|" * 12]
    for r in runs:
        who = {"gateway": "gateway", "nginx": "nginx"}.get(r["target"])
        own = f"{cpu_us_per_req(r, who, clk):.1f}" if who else "–"
        errs = "/".join(
            str(int(r[k])) for k in ("err_connect", "err_read", "err_write", "err_timeout", "err_status")
        )
        out.append(
            f"| {r['phase']} | {int(r['round'])} | {int(r['conc'])} | {r['target']} | {r['rps']:,.0f}"
            f" | {r['p50_us']:.0f} | {r['p99_us']:.0f} | {r['p999_us']:.0f} | {r['max_us']:.0f}"
            f" | {errs} | {own} | {cpu_us_per_req(r, 'upstream', clk):.1f} |"
        )
    return "\n".join(out)


def read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def main():
    data, out = sys.argv[1:3]
    meta, runs, cold = load(data)
    s = summarise(meta, runs, cold)
    table = summary_table(meta, s)
    health = read(os.path.join(data, "health.json"))
    try:
        driver = json.loads(health)["driver"] if health else "unknown"
    except (ValueError, KeyError):
        driver = "unknown"

    busy = [int(x) for x in re.findall(r"(\d+)%", meta["busy"])]
    noisy = any(b >= 10 for b in busy)
    md = [
        f"# Gateway performance — {meta['date']} — {meta['host']}",
        "",
        "Produced by `bash perf/run.sh` (method: `perf/README.md`). Ratios are measured in this run,",
        "on this box, against references running under the same conditions.",
        "",
        "## Machine and versions",
        "",
        f"- CPU: {meta['cpu_model']}, {meta['cpus']}",
        f"- kernel {meta['kernel']}, memory {meta['memory']}",
        f"- {meta['nginx']}; {meta['wrk']}",
        f"- {meta['gateway']} at commit {meta['commit']}, I/O driver `{driver}`; {meta['rustc']}",
        f"- pinning: {meta['layout']}",
        f"- CPU in use by anything while our servers were idle: {meta['busy']}"
        + (" — something else shared the box: trust the ratios, not the absolutes" if noisy else ""),
        f"- wrk: `-t1`, {meta['duration']} s per run, {meta['rounds']} rounds at c32 and c256,"
        f" {meta['lat_rounds']} rounds of {meta['lat_duration']} s at c1; targets rotate their order"
        " every round",
        f"- idle upstream connections kept by each proxy: {meta['upstream_pool']} (nginx `keepalive`,"
        " gateway `pool_max_idle`); below the client concurrency both proxies reopen upstream"
        " connections under load",
        f"- gateway usage log (`[usage] log`, one JSON line per request): {meta.get('usage_log', 'true')}",
        f"- telemetry (`[telemetry]`, every request's spans exported over OTLP/HTTP to the upstream nginx): {meta.get('telemetry', 'off')}",
        "",
        "## Summary",
        "",
        table,
        "",
    ]
    bad = {t: n for t, n in s["errors"].items() if n}
    if bad:
        md += [
            "**Errors were seen** (non-2xx responses or socket errors): "
            + ", ".join(f"{t}: {n}" for t, n in bad.items())
            + ". The figures above are not trustworthy until this is explained.",
            "",
        ]
        cap = read(os.path.join(data, "gateway-errors.txt"))
        if cap:
            md += ["Samples of the gateway's failing responses:", "", "```", cap[:4000], "```", ""]
    md += [
        "## Every run",
        "",
        "CPU µs/req (proxy) is the gateway process (all threads) for gateway runs and the nginx",
        "proxy worker for nginx runs; CPU µs/req (upstream) is the static nginx upstream's worker.",
        "Warm-up runs (1 s) are listed but excluded from the summary.",
        "",
        runs_table(runs, meta),
        "",
        "## Cold starts",
        "",
        "| start | run | exec → /health 200 (ms) | exec → routed chat 200 (ms) |",
        "|---|---|---|---|",
    ]
    md += [
        f"| {'warm cache, 3,400 pairs' if c.get('warm') else '1 channel'} | {int(c['run'])}"
        f" | {c['health_ms']:.2f} | {c['routed_ms']:.2f} |"
        for c in cold
    ]
    md += [
        "",
        "## Gateway at start",
        "",
        "```",
        health or "(no /health captured)",
        "```",
        "",
        "Sample exchange through the gateway:",
        "",
        "```",
        read(os.path.join(data, "sample-gateway.txt")) or "",
        "```",
        "",
    ]
    with open(out, "w") as f:
        f.write("\n".join(md))
    print(table)
    if bad:
        print("ERRORS SEEN: " + ", ".join(f"{t}: {n}" for t, n in bad.items()))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
