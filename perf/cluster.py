#!/usr/bin/env python3
"""Scale-out probe for perf/cluster.sh: two running instances (A, B) sharing one Redis.

Measures, and writes a Markdown report:
  * cooldown propagation: a 429 with Retry-After on A until B's control plane shows the channel
    cooling, and the recovery (DELETE /admin/cooldowns on B) until A shows it healthy;
  * fleet-wide rpm: key `paced` (rpm 600 = 10/s for the fleet) offered 30/s in all, split
    evenly and 80/20 between the instances, after its burst is spent;
  * daily budget overshoot: keys b1..bN (1.0 each, ~0.026 a request) spent by both instances at
    once, a request every 20 ms each, until both refuse;
  * sync cost: CPU of an idle instance with [cluster] against one without, and Redis commands/s.

Standard library only; every loop is bounded by a count and a deadline.
"""

import argparse
import http.client
import json
import socket
import statistics
import threading
import time

BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hello"}]})


class Conn:
    """A keep-alive HTTP/1.1 connection that reconnects once on a dropped socket."""

    def __init__(self, port):
        self.port = port
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def req(self, method, path, body=None, headers=None):
        for attempt in (0, 1):
            try:
                self.c.request(method, path, body=body, headers=headers or {})
                r = self.c.getresponse()
                data = r.read()
                return r.status, data
            except (http.client.HTTPException, OSError):
                self.c.close()
                self.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                if attempt:
                    raise
        raise RuntimeError("unreachable")

    def chat(self, key, extra=None):
        h = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        h.update(extra or {})
        return self.req("POST", "/v1/chat/completions", BODY, h)

    def json(self, method, path):
        s, d = self.req(method, path)
        return s, json.loads(d) if d else None


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def wait_for(pred, timeout, step=0.001):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return False


def channel_state(admin):
    _, ch = admin.json("GET", "/admin/channels/up-1")
    return ch["state"]


def propagation(a, a_admin, b_admin, trials):
    out_ms, back_ms, misses = [], [], 0
    for _ in range(trials):
        s, _ = a.chat("sk-paced", {"x-mock-status": "429", "x-mock-retry-after": "30"})
        t0 = time.monotonic()
        if not wait_for(lambda: channel_state(b_admin) == "cooling", 5):
            misses += 1
            continue
        out_ms.append((time.monotonic() - t0) * 1000)
        # the recovery, the other way round
        wait_for(lambda: channel_state(a_admin) == "cooling", 5)
        b_admin.json("DELETE", "/admin/cooldowns/up-1")
        t1 = time.monotonic()
        if wait_for(lambda: channel_state(a_admin) == "ok", 5):
            back_ms.append((time.monotonic() - t1) * 1000)
        else:
            misses += 1
        wait_for(lambda: channel_state(b_admin) == "ok", 5)
        time.sleep(0.05)
    return out_ms, back_ms, misses


def drain(port, key, limit=5000):
    c = Conn(port)
    for _ in range(limit):
        s, _ = c.chat(key)
        if s == 429:
            return
    raise RuntimeError("the rate limit never refused")


def offered(port, key, rate, seconds, counts):
    """Offers `rate` requests/s on one connection for `seconds`; counts statuses."""
    c = Conn(port)
    start = time.monotonic()
    n = 0
    while True:
        due = start + n / rate
        if due - start >= seconds:
            break
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        s, _ = c.chat(key)
        counts[s] = counts.get(s, 0) + 1
        n += 1


def rate_window(a, b, split, seconds, total_rate=30.0):
    # spend the burst through both, then offer the split for `seconds`
    ts = [threading.Thread(target=drain, args=(p, "sk-paced")) for p in (a, b)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    ca, cb = {}, {}
    ts = [
        threading.Thread(target=offered, args=(a, "sk-paced", total_rate * split, seconds, ca)),
        threading.Thread(target=offered, args=(b, "sk-paced", total_rate * (1 - split), seconds, cb)),
    ]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    elapsed = time.monotonic() - t0
    admitted = ca.get(200, 0) + cb.get(200, 0)
    other = sum(v for k, v in list(ca.items()) + list(cb.items()) if k not in (200, 429))
    return admitted / elapsed, ca.get(200, 0), cb.get(200, 0), other


def budget(a, b, a_admin, key):
    admitted = [0, 0]
    errors = []

    def spend(i, port):
        c = Conn(port)
        for _ in range(500):
            s, d = c.chat(key)
            if s == 429:
                return
            if s != 200:
                errors.append(s)
                return
            admitted[i] += 1
            time.sleep(0.02)

    ts = [threading.Thread(target=spend, args=(i, p)) for i, p in enumerate((a, b))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    time.sleep(0.5)  # the last counts reach Redis
    name = key[3:]
    _, u = a_admin.json("GET", "/admin/usage?scope=fleet&group_by=key")
    cost = next((g["cost"] for g in u["groups"] if g["key"] == name), 0.0)
    n = sum(admitted)
    per = cost / n if n else float("nan")
    return n, cost, (cost - 1.0) / per if n else float("nan"), errors


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, clock ticks at 100 Hz


def redis_ops(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    s.sendall(b"INFO stats\r\n")
    data = b""
    while b"instantaneous_ops_per_sec" not in data or not data.endswith(b"\r\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    for line in data.decode().splitlines():
        if line.startswith("total_commands_processed:"):
            return int(line.split(":")[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    for k in ("a", "a-admin", "b", "b-admin", "redis", "trials", "rpm-seconds", "budget-trials",
              "pid-a", "pid-solo"):
        ap.add_argument("--" + k, type=int, required=True)
    ap.add_argument("--sync", required=True)
    ap.add_argument("--out", required=True)
    o = ap.parse_args()
    a, b = Conn(o.a), Conn(o.b)
    a_admin, b_admin = Conn(o.a_admin), Conn(o.b_admin)
    # both in the fleet
    wait_for(lambda: len(a_admin.json("GET", "/admin/cluster")[1]["instances"]) == 2, 10, 0.05)
    lines = []

    # 1. sync cost while idle (before any traffic)
    c0, s0, r0 = cpu_seconds(o.pid_a), cpu_seconds(o.pid_solo), redis_ops(o.redis)
    time.sleep(10)
    c1, s1, r1 = cpu_seconds(o.pid_a), cpu_seconds(o.pid_solo), redis_ops(o.redis)
    _, info = a_admin.json("GET", "/admin/cluster")

    # 2. propagation
    out_ms, back_ms, misses = propagation(a, a_admin, b_admin, o.trials)

    # 3. rate shares
    even = rate_window(o.a, o.b, 0.5, o.rpm_seconds)
    skew = rate_window(o.a, o.b, 0.8, o.rpm_seconds)

    # 4. budgets
    budgets = [budget(o.a, o.b, a_admin, f"sk-b{i}") for i in range(1, o.budget_trials + 1)]

    lines.append("## Cooldown propagation\n")
    lines.append(f"{o.trials} trials; time from A's 429 answer until B's control plane shows the "
                 "channel cooling (B's workers follow within one tick, 50 ms), and from "
                 "`DELETE /admin/cooldowns/up-1` on B until A shows it healthy.\n")
    lines.append("| direction | p50 ms | p90 ms | max ms | trials |")
    lines.append("|---|---|---|---|---|")
    for name, xs in (("cooldown A → B", out_ms), ("recovery B → A", back_ms)):
        lines.append(f"| {name} | {pct(xs, 50):.1f} | {pct(xs, 90):.1f} | "
                     f"{max(xs) if xs else float('nan'):.1f} | {len(xs)} |")
    if misses:
        lines.append(f"\n{misses} trial(s) did not propagate within 5 s.")
    lines.append("\n## Fleet-wide rate limit\n")
    lines.append(f"Key `paced`, `rpm = 600` (10/s for the fleet), burst spent first; then 30/s "
                 f"offered for {o.rpm_seconds} s, split between the instances.\n")
    lines.append("| split A/B | admitted/s | error vs 10/s | admitted on A | on B | other statuses |")
    lines.append("|---|---|---|---|---|---|")
    for name, (rate, na, nb, other) in (("50/50", even), ("80/20", skew)):
        lines.append(f"| {name} | {rate:.2f} | {100 * (rate / 10 - 1):+.1f} % | {na} | {nb} | {other} |")
    lines.append("\n## Daily budget spent by both instances at once\n")
    lines.append("Keys `b1`…: `daily_budget = 1.0` (~0.026 a request), a request every 20 ms "
                 "on each instance until both refuse; the fleet's spend from "
                 "`/admin/usage?scope=fleet`.\n")
    lines.append("| trial | admitted | fleet spend | over the budget, in requests | other statuses |")
    lines.append("|---|---|---|---|---|")
    for i, (n, cost, over, errs) in enumerate(budgets, 1):
        lines.append(f"| {i} | {n} | {cost:.4f} | {over:+.2f} | {errs or '-'} |")
    lines.append("\n## What the sync costs\n")
    lines.append(f"Idle for 10 s (no traffic): instance with `[cluster]` "
                 f"{100 * (c1 - c0) / 10:.2f} % of a CPU, the same config alone "
                 f"{100 * (s1 - s0) / 10:.2f} %; Redis served {(r1 - r0) / 10:.0f} commands/s "
                 f"for both instances; last round trip {info['last_round_ms']:.2f} ms "
                 f"(sync every {o.sync}).")
    with open(o.out, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
