#!/usr/bin/env python3
"""Turns the raw data of one perf/peers.sh run into perf/results/<date>-<host>-peers.md and
prints the summary. Usage: report.py DATA_DIR OUT_MD

A target x concurrency whose timed runs saw any non-2xx answer or socket error gets no
figure in the summary (its raw rows stay, marked): a run that served errors measured
something else. Exit status 2 when that happened anywhere or a requested peer could not be
measured at all; 0 otherwise.
"""

import csv
import glob
import os
import statistics
import sys

OURS = ("direct", "nginx", "gateway")
ORDER = ("direct", "nginx", "gateway", "crabllm", "portkey", "litellm")
# The targets: the gateway's req/s over each peer's, on the same box and upstream.
CLAIMS = {"crabllm": 5, "portkey": 50, "litellm": 300}
LABEL = {
    "direct": "direct (static upstream, no proxy)",
    "nginx": "nginx proxy_pass",
    "gateway": "smart-ai-router (1 worker)",
    "crabllm": "crabllm",
    "portkey": "Portkey gateway",
    "litellm": "LiteLLM proxy",
}


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def read_tsv(path):
    with open(path) as f:
        return list(csv.DictReader(f, delimiter="\t"))


def load(data):
    with open(os.path.join(data, "meta.tsv")) as f:
        meta = dict(line.rstrip("\n").split("\t", 1) for line in f if "\t" in line)
    runs = read_tsv(os.path.join(data, "runs.tsv"))
    for r in runs:
        for k, v in list(r.items()):
            if k not in ("phase", "target", "other_detail"):
                r[k] = float(v)
        r["rps"] = r["requests"] / (r["duration_us"] / 1e6) if r["duration_us"] else 0.0
        r["errors"] = int(sum(r[k] for k in r if k.startswith("err_")))
        if not r["requests"]:
            r["errors"] += 1  # nothing answered within the run: no figure either
    peers = read_tsv(os.path.join(data, "peers.tsv"))
    mem = {}
    mem_path = os.path.join(data, "mem.tsv")
    if os.path.exists(mem_path):
        with open(mem_path) as f:
            for line in f:
                v = line.split()
                if len(v) == 7:
                    mem[v[0]] = [int(x) for x in v[1:]]
    return meta, runs, peers, mem


def fmt_int(x):
    return "–" if x != x else f"{x:,.0f}"


def fmt(x, nd=1):
    return "–" if x != x else f"{x:,.{nd}f}"


def summarise(meta, runs):
    clk = float(meta["clk_tck"])
    tput = [r for r in runs if r["phase"] == "tput"]
    concs = sorted({int(r["conc"]) for r in tput})
    targets = [t for t in ORDER if any(r["target"] == t for r in runs)]
    cells = {}
    for c in concs:
        rows = [r for r in tput if r["conc"] == c]
        by_round = {}
        for r in rows:
            by_round.setdefault(r["round"], {})[r["target"]] = r
        for t in targets:
            mine = [r for r in rows if r["target"] == t]
            if not mine:
                continue
            errs = sum(r["errors"] for r in mine)
            cell = {
                "runs": len(mine),
                "errors": errs,
                "valid": errs == 0,
                "rps": median([r["rps"] for r in mine]),
                "cpu": median([r["target_ticks"] * 1e6 / clk / r["requests"] for r in mine if r["requests"]]),
                "up_cpu": median([r["up_ticks"] * 1e6 / clk / r["requests"] for r in mine if r["requests"]]),
                "p50": median([r["p50_us"] for r in mine]),
                "p99": median([r["p99_us"] for r in mine]),
                "other": max(r["other_ticks"] for r in mine),
                "settle": max(r["settle_s"] for r in mine),
            }
            # Median of per-round ratios: each pairs runs seconds apart, so drift cancels.
            cell["gw_over"] = median([b["gateway"]["rps"] / b[t]["rps"] for b in by_round.values()
                                      if t in b and "gateway" in b and b[t]["rps"] > 0])
            cell["over_nginx"] = median([b[t]["rps"] / b["nginx"]["rps"] for b in by_round.values()
                                         if t in b and "nginx" in b and b["nginx"]["rps"] > 0])
            cells[(t, c)] = cell
    return concs, targets, cells


def pair_ok(cells, t, c):
    return cells.get((t, c), {}).get("valid") and cells.get(("gateway", c), {}).get("valid")


def write(meta, runs, peers, mem, concs, targets, cells, data, out):
    clk = float(meta["clk_tck"])
    status = {p["peer"]: p for p in peers}
    L = []
    w = L.append
    w(f"# Peer gateways — {meta['date']} — {meta['host']}")
    w("")
    w("Produced by `bash perf/peers.sh` (method: `perf/peers/README.md`). Every target ran on this")
    w("box, in this run, against the same static upstream, with the same request and CPU layout;")
    w("ratios pair runs of the same round.")
    w("")
    w("## Machine and versions")
    w("")
    w(f"- CPU: {meta['cpu_model']}, {meta['cpus']}; memory {meta['memory']}; kernel {meta['kernel']}; {meta['os']}")
    w(f"- {meta['nginx']}; {meta['wrk']}")
    w(f"- {meta['gateway']} at commit {meta['commit']}; {meta['rustc']}")
    for p in peers:
        extra = ""
        if p["peer"] == "crabllm":
            extra = f" (`{meta['crabllm_bin']}`)"
        elif p["peer"] == "litellm":
            extra = f" ({meta['python']})"
        elif p["peer"] == "portkey":
            extra = f" (node {meta['node']})"
        w(f"- {LABEL[p['peer']]}: {p['version']}{extra} — {'measured' if p['status'] == 'ok' else '**NOT MEASURED: ' + p['status'] + '**'}")
    w(f"- pinning: {meta['layout']}")
    w(f"- CPU in use by anything while our servers were idle: {meta['busy']}")
    w(f"- wrk: `-t1`, {meta['duration']} s per run, {meta['rounds']} rounds at c{{{meta['conns'].replace(' ', ', ')}}}, "
      f"`--timeout {meta['wrk_timeout']}s`; targets rotate their order every round")
    w(f"- idle upstream connections kept by nginx (`keepalive`) and the gateway (`pool_max_idle`): "
      f"{meta['upstream_pool']}; the peers keep their clients' defaults")
    w(f"- gateway usage log (`[usage] log`, one JSON line per request): {meta['usage_log']}")
    w("")

    w("## Summary")
    w("")
    w("Median req/s over the rounds; **gateway ÷ target** is the median of the per-round ratios.")
    w("CPU µs/req is the target's whole process tree (every process and thread) over the requests")
    w("wrk counted; for `direct` it is the upstream itself. A cell with any non-2xx answer or socket")
    w("error in its runs has no figure. **CPU ÷ gateway's** is the target's median CPU per request")
    w("over the gateway's: the cost of the proxy alone, which the shared server core (the upstream")
    w("runs there too) compresses in the req/s ratios (perf/peers/README.md, \"How to read\").")
    w("")
    w("| conc | target | req/s | gateway ÷ target | target ÷ nginx | CPU µs/req | CPU ÷ gateway's | upstream CPU µs/req | p50 / p99 ms | errors |")
    w("|---|---|---|---|---|---|---|---|---|---|")
    for c in concs:
        for t in targets:
            cell = cells.get((t, c))
            if not cell:
                continue
            ok = cell["valid"]
            gw = cells.get(("gateway", c), {})
            ratio = "–" if t == "gateway" or not (ok and gw.get("valid")) else (
                f"**{cell['gw_over']:,.2f}×**" if t in CLAIMS else f"{cell['gw_over']:,.2f}×")
            over_ng = "–" if t == "nginx" else (f"{cell['over_nginx']:.3f}×" if ok else "–")
            cpu_x = "–" if t in ("gateway", "direct") or not (ok and gw.get("valid")) else f"{cell['cpu'] / gw['cpu']:,.1f}×"
            w(f"| c{c} | {LABEL[t]} | {fmt_int(cell['rps']) if ok else 'INVALID'} | {ratio} | {over_ng} | "
              f"{fmt(cell['cpu']) if ok else '–'} | {cpu_x} | {fmt(cell['up_cpu']) if ok and t != 'direct' else '–'} | "
              f"{fmt(cell['p50'] / 1000, 2) if ok else '–'} / {fmt(cell['p99'] / 1000, 2) if ok else '–'} | "
              f"{cell['errors']} in {cell['runs']} runs |")
    w("")

    w("## The issue's targets")
    w("")
    w("| claim | " + " | ".join(f"c{c}" for c in concs) + " |")
    w("|---|" + "---|" * len(concs))
    for p, need in CLAIMS.items():
        if p not in status:
            continue
        row = []
        for c in concs:
            if status[p]["status"] != "ok":
                row.append("not measured")
            elif pair_ok(cells, p, c):
                got = cells[(p, c)]["gw_over"]
                row.append(f"{got:,.2f}× — {'met' if got >= need else '**not met**'}")
            else:
                row.append("no valid figure (errors)")
        w(f"| gateway ≥ {need}× {LABEL[p]} | " + " | ".join(row) + " |")
    w("")

    w("## Memory")
    w("")
    w("Sum over the target's process tree: VmRSS 1 s after it first answered (idle), VmRSS after")
    w("all the load, and the sum of the processes' VmHWM (peak RSS). Shared pages count once per")
    w("process that maps them. For `direct` and `nginx` the tree is the nginx master and its worker.")
    w("")
    w("| target | processes | RSS idle MiB | RSS after load MiB | peak MiB |")
    w("|---|---|---|---|---|")
    for t in targets:
        if t in mem:
            n0, rss0, _h0, n1, rss1, hwm1 = mem[t]
            w(f"| {LABEL[t]} | {n1} | {rss0 / 1024:.1f} | {rss1 / 1024:.1f} | {hwm1 / 1024:.1f} |")
    w("")

    w("## Checks")
    w("")
    def worst_other(t):
        rs = [r for r in runs if r["target"] == t and r["phase"] == "tput"]
        if not rs:
            return f"{t} –"
        r = max(rs, key=lambda r: r["other_ticks"])
        detail = r.get("other_detail", "-")
        return f"{t} {r['other_ticks'] * 1000 / clk:.0f} ms" + (f" ({detail}, ticks)" if detail not in ("-", "", None) else "")

    w("- **other servers' CPU during a run**: every live server's ticks are read around each run; the")
    w("  largest sum over the servers that were *not* targeted (nor the upstream), per target: " +
      ", ".join(worst_other(t) for t in targets) + " (per run, against runs of " + meta["duration"] + " s).")
    w("- **settle**: seconds the target kept working after wrk stopped, longest per target: " + ", ".join(
        f"{t} {max((r['settle_s'] for r in runs if r['target'] == t), default=0):.1f} s" for t in targets) + ".")
    idle_path = os.path.join(data, "idle.tsv")
    if os.path.exists(idle_path):
        with open(idle_path) as f:
            idle = [line.split() for line in f if line.strip()]
        w("- **idle CPU**: what each server's tree spent over " + (idle[0][2] if idle else "5") +
          " s with no load, before the warm-up: " + ", ".join(
              f"{t} {int(ticks) * 1000 / clk:.0f} ms" for t, ticks, _secs in idle) + ".")
    warm_err = [r for r in runs if r["phase"] == "warmup" and r["errors"]]
    if warm_err:
        w("- warm-up runs with errors (not counted): " + ", ".join(
            f"{r['target']} ({r['errors']})" for r in warm_err) + ".")
    w("")

    w("## Every run")
    w("")
    w("| phase | round | conc | target | req/s | p50 µs | p99 µs | max µs | errors (conn/read/write/timeout/status) | CPU µs/req | upstream CPU µs/req | others' ticks | settle s |")
    w("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        mark = "" if not r["errors"] else " INVALID"
        cpu = r["target_ticks"] * 1e6 / clk / r["requests"] if r["requests"] else float("nan")
        up = r["up_ticks"] * 1e6 / clk / r["requests"] if r["requests"] else float("nan")
        w(f"| {r['phase']} | {r['round']:.0f} | {r['conc']:.0f} | {r['target']}{mark} | {fmt_int(r['rps'])} | "
          f"{r['p50_us']:.0f} | {r['p99_us']:.0f} | {r['max_us']:.0f} | "
          f"{r['err_connect']:.0f}/{r['err_read']:.0f}/{r['err_write']:.0f}/{r['err_timeout']:.0f}/{r['err_status']:.0f} | "
          f"{fmt(cpu)} | {fmt(up) if r['target'] != 'direct' else '–'} | {r['other_ticks']:.0f} | {r['settle_s']:.1f} |")
    w("")

    w("## Raw data")
    w("")
    for name in ("runs.tsv", "mem.tsv", "idle.tsv", "peers.tsv", "install_seconds.tsv"):
        path = os.path.join(data, name)
        if os.path.exists(path):
            w(f"`{name}`" + (" (target, idle: procs rss_kib hwm_kib, after load: procs rss_kib hwm_kib)"
                              if name == "mem.tsv" else " (target, ticks, seconds)" if name == "idle.tsv" else ""))
            w("")
            w("```tsv")
            with open(path) as f:
                w(f.read().rstrip("\n"))
            w("```")
            w("")

    w("## What each target answered (sanity request, before any timing)")
    w("")
    for path in sorted(glob.glob(os.path.join(data, "sample-*.txt")),
                       key=lambda p: ORDER.index(os.path.basename(p)[7:-4])
                       if os.path.basename(p)[7:-4] in ORDER else 99):
        t = os.path.basename(path)[7:-4]
        with open(path, errors="replace") as f:
            text = f.read()
        if len(text) > 2000:
            text = text[:2000] + "\n… (cut)"
        w(f"`{t}`:")
        w("")
        w("```http")
        w(text.rstrip("\n"))
        w("```")
        w("")

    with open(out, "w") as f:
        f.write("\n".join(L))


def main():
    data, out = sys.argv[1], sys.argv[2]
    meta, runs, peers, mem = load(data)
    concs, targets, cells = summarise(meta, runs)
    write(meta, runs, peers, mem, concs, targets, cells, data, out)
    # Printed summary.
    for c in concs:
        for t in targets:
            cell = cells.get((t, c))
            if not cell:
                continue
            ratio = f"  gateway ÷ {t} = {cell['gw_over']:.2f}×" if t != "gateway" and pair_ok(cells, t, c) else ""
            print(f"c{c:<4} {t:<8} {fmt_int(cell['rps']) if cell['valid'] else 'INVALID':>10} req/s"
                  f"  CPU {fmt(cell['cpu'])} µs/req{ratio}")
    bad = any(p["status"] != "ok" for p in peers) or any(not cell["valid"] for cell in cells.values())
    sys.exit(2 if bad else 0)


if __name__ == "__main__":
    main()
