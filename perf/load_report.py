#!/usr/bin/env python3
"""Turns the raw data of one perf/load.sh run into perf/results/<date>-<host>-load.md and prints
the summary. Usage: load_report.py DATA_DIR OUT_MD

Exit status 2 when the gateway answered anything but 2xx or dropped a connection in any run:
such a run measured something other than what it claims.
"""

import csv
import os
import statistics
import sys

TARGETS = ("direct", "nginx", "gateway")
ERRORS = ("non2xx", "err_connect", "err_io", "err_closed", "err_malformed", "err_timeout")


def med(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def fields(line):
    out = {}
    for kv in line.split():
        k, _, v = kv.partition("=")
        try:
            out[k] = float(v)
        except ValueError:
            out[k] = v
    return out


def load(data):
    with open(os.path.join(data, "meta.tsv")) as f:
        meta = dict(line.rstrip("\n").split("\t", 1) for line in f if "\t" in line)
    runs = []
    with open(os.path.join(data, "runs.tsv")) as f:
        for r in csv.DictReader(f, delimiter="\t"):
            row = fields(r["line"])
            row.update(phase=r["phase"], round=int(r["round"]), size=int(r["size"]), target=r["target"],
                       ticks=float(r["server_ticks"]), rss_after=float(r["server_rss_after_kib"] or "nan"))
            row["errors"] = int(sum(row.get(k, 0) for k in ERRORS))
            runs.append(row)
    soak = []
    with open(os.path.join(data, "soak.tsv")) as f:
        for r in csv.DictReader(f, delimiter="\t"):
            soak.append({k: float(v) for k, v in r.items() if v})
    return meta, runs, soak


def slope_per_min(points):
    """Least-squares slope of (t seconds, y) in y per minute."""
    if len(points) < 3:
        return float("nan")
    n = len(points)
    mt = sum(t for t, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    return 60 * sum((t - mt) * (y - my) for t, y in points) / den if den else float("nan")


def per_round_delta(runs, key, target):
    """Median over rounds of target's `key` minus direct's `key` in the same round."""
    by_round = {}
    for r in runs:
        by_round.setdefault(r["round"], {})[r["target"]] = r.get(key, float("nan"))
    return med([v[target] - v["direct"] for v in by_round.values() if target in v and "direct" in v])


def summarise(meta, runs, soak):
    clk = float(meta["clk_tck"])
    lines = []
    rate_sizes = sorted({r["size"] for r in runs if r["phase"] == "rate"})
    if rate_sizes:
        lines += ["## Fixed rate (open loop) against a %s upstream" % meta["upstream_latency"], "",
                  "Latency from each request's *scheduled* send time (no coordinated omission); medians "
                  "over rounds. `added` = target minus direct in the same round.", "",
                  "| rate | target | achieved req/s | p50 ms | p99 ms | p99.9 ms | max ms | added p50 µs | "
                  "added p99 µs | server CPU µs/req | errors |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for size in rate_sizes:
            rs = [r for r in runs if r["phase"] == "rate" and r["size"] == size]
            for t in TARGETS:
                tr = [r for r in rs if r["target"] == t]
                if not tr:
                    continue
                cpu = med([r["ticks"] * 1e6 / clk / r["completed"] for r in tr if r["completed"]])
                add50 = per_round_delta(rs, "p50_us", t) if t != "direct" else float("nan")
                add99 = per_round_delta(rs, "p99_us", t) if t != "direct" else float("nan")
                lines.append("| %d | %s | %.0f | %.2f | %.2f | %.2f | %.2f | %s | %s | %.1f | %d |" % (
                    size, t, med([r["achieved_rps"] for r in tr]), med([r["p50_us"] for r in tr]) / 1e3,
                    med([r["p99_us"] for r in tr]) / 1e3, med([r["p999_us"] for r in tr]) / 1e3,
                    med([r["max_us"] for r in tr]) / 1e3,
                    "—" if add50 != add50 else "%+.0f" % add50, "—" if add99 != add99 else "%+.0f" % add99,
                    cpu, sum(r["errors"] for r in tr)))
        lines.append("")
    stream_sizes = sorted({r["size"] for r in runs if r["phase"] == "streams"})
    if stream_sizes:
        lines += ["## Concurrent SSE streams (%s content events, %s apart)" % (
            meta["stream_events"], meta["stream_interval"]), "",
                  "TTFT: request sent → first event. Gap: time between consecutive events as the client "
                  "read them. RSS/stream: (server RSS at peak − before) ÷ streams (direct: the mock's). "
                  "Stalls: a gap over 1 s or a stream without `[DONE]`. Medians over rounds.", "",
                  "| streams | target | complete | stalls | TTFT p50 ms | TTFT p99 ms | gap p50 ms | gap p99 ms | "
                  "gap p99.9 ms | added gap p99 ms | added TTFT p99 ms | RSS/stream KiB | server CPU µs/event | errors |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for size in stream_sizes:
            rs = [r for r in runs if r["phase"] == "streams" and r["size"] == size]
            for t in TARGETS:
                tr = [r for r in rs if r["target"] == t]
                if not tr:
                    continue
                addg = per_round_delta(rs, "gap_p99_us", t) if t != "direct" else float("nan")
                addt = per_round_delta(rs, "ttft_p99_us", t) if t != "direct" else float("nan")
                per = med([(r["rss_peak_kib"] - r["rss_base_kib"]) / size for r in tr])
                cpu = med([r["ticks"] * 1e6 / clk / r["events"] for r in tr if r["events"]])
                lines.append("| %d | %s | %.0f | %.0f | %.1f | %.1f | %.1f | %.1f | %.1f | %s | %s | %.1f | %.1f | %d |" % (
                    size, t, med([r["complete"] for r in tr]), med([r["stalls"] for r in tr]),
                    med([r["ttft_p50_us"] for r in tr]) / 1e3, med([r["ttft_p99_us"] for r in tr]) / 1e3,
                    med([r["gap_p50_us"] for r in tr]) / 1e3, med([r["gap_p99_us"] for r in tr]) / 1e3,
                    med([r["gap_p999_us"] for r in tr]) / 1e3,
                    "—" if addg != addg else "%+.2f" % (addg / 1e3), "—" if addt != addt else "%+.2f" % (addt / 1e3),
                    per, cpu, sum(r["errors"] for r in tr)))
        lines.append("")
    if soak:
        half = [(s["t_s"], s["rss_kib"]) for s in soak if s["t_s"] >= soak[-1]["t_s"] / 2]
        fds = [s["fds"] for s in soak]
        lines += ["## Soak (%s s: %s req/s JSON plus back-to-back bursts of %s streams)" % (
            meta["soak_seconds"], meta["soak_rate"], meta["soak_streams"]), "",
                  "| gateway | value |", "|---|---:|",
                  "| RSS idle before any load | %s KiB |" % meta["rss_idle_kib"],
                  "| RSS after the rate and stream runs | %s KiB |" % meta["rss_after_load_kib"],
                  "| RSS during soak: first / max / last sample | %.0f / %.0f / %.0f KiB |" % (
                      soak[0]["rss_kib"], max(s["rss_kib"] for s in soak), soak[-1]["rss_kib"]),
                  "| RSS slope over the second half | %+.1f KiB/min |" % slope_per_min(half),
                  "| RSS after the soak | %s KiB |" % meta["rss_after_soak_kib"],
                  "| open descriptors during soak: min / max; after | %.0f / %.0f; %s |" % (
                      min(fds), max(fds), meta["fds_after_soak"]),
                  ""]
    return lines


def soak_loads(data):
    out = []
    p = os.path.join(data, "soak-json.txt")
    if os.path.exists(p):
        for line in open(p):
            if line.startswith("LOADGEN "):
                out.append(("json", fields(line[8:])))
    p = os.path.join(data, "soak-streams.txt")
    if os.path.exists(p):
        for line in open(p):
            if line.startswith("LOADGEN "):
                out.append(("streams", fields(line[8:])))
    return out


def main():
    data, out = sys.argv[1], sys.argv[2]
    meta, runs, soak = load(data)
    summary = summarise(meta, runs, soak)
    loads = soak_loads(data)
    soak_errors = sum(int(sum(f.get(k, 0) for k in ERRORS)) for _, f in loads)
    bursts = [f for kind, f in loads if kind == "streams"]
    json_soak = [f for kind, f in loads if kind == "json"]
    if loads:
        summary += ["Soak traffic: %s JSON requests (p99 %.2f ms), %d stream bursts, %d streams complete, "
                    "%d stalls; errors %d." % (
                        int(json_soak[0]["completed"]) if json_soak else 0,
                        json_soak[0]["p99_us"] / 1e3 if json_soak else float("nan"),
                        len(bursts), sum(int(f["complete"]) for f in bursts),
                        sum(int(f["stalls"]) for f in bursts), soak_errors), ""]
    head = ["# Load, streams and soak — %s" % meta["date"], "",
            "`bash perf/load.sh` (perf/README.md explains the method).", "",
            "| | |", "|---|---|"] + ["| %s | %s |" % (k, v) for k, v in meta.items()
                                     if not k.startswith(("rss_", "fds_", "nginx_rss"))] + [""]
    raw = ["## Raw runs", "", "```"]
    with open(os.path.join(data, "runs.tsv")) as f:
        raw += [line.rstrip("\n") for line in f]
    raw += ["```", "", "## Soak samples", "", "```"]
    with open(os.path.join(data, "soak.tsv")) as f:
        raw += [line.rstrip("\n") for line in f]
    raw += ["```", ""]
    with open(out, "w") as f:
        f.write("\n".join(head + summary + raw))
    print("\n".join(summary))
    bad = sum(r["errors"] for r in runs if r["target"] == "gateway") + soak_errors
    if bad:
        print("gateway errors: %d (see %s)" % (bad, out), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
