#!/usr/bin/env python3
"""What a hostile client can cost the gateway: three scenarios against one gateway binary.

Usage: abuse.py BINARY [OUT_MD]

1. Memory under unauthenticated uploads: 40 connections each start a 32 MiB upload without a
   valid key. Reported: the gateway's VmRSS before, its peak while the uploads run (sampled every
   5 ms), and after.
2. Budget overshoot: a key whose daily budget allows about 3 streamed requests sends 30 streams
   that decline usage (`stream_options` `{"include_usage": false}`, `{}`, `null`, in turn), one
   every 20 ms. Reported: how many were served.
3. Admin API under idle connections: 500 idle connections to the admin listener (from 50
   loopback source addresses, half silent, half stuck mid-head, re-opened after every call),
   then 50 authorised `GET /metrics`. Reported: answers, failures, latency p50/p99.
4. Memory per in-flight request body: 8 authorised chat requests with 4 MiB bodies at once,
   held 1.5 s by a slow upstream. Reported: peak RSS growth per request.
5. Memory per large answer: 4 requests at once whose upstream answers 60 MiB each. Reported:
   peak RSS growth per answer (the cap on one answer is 64 MiB).

Each scenario gets a fresh gateway. Everything runs on loopback; every process started here is
stopped on exit. The config uses only
keys every build since round 1 understands, so an older binary can be measured the same way.
"""

import hashlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

UPLOAD = 32 << 20
KEY = "sk-perf-budget"
OPEN_KEY = "sk-perf-open"
ADMIN_TOKEN = "perf-admin-token-0123456789"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_http(port, path=b"/health", deadline=10.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.02)
    raise SystemExit(f"port {port} never answered 200")


def request(port, raw, timeout=10.0):
    """Sends one raw request; returns (status, body) of the answer (Content-Length or close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1]) if head else 0
        length = None
        chunked = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            if name.strip().lower() == b"transfer-encoding":
                chunked = True
        while True:
            if length is not None and len(body) >= length:
                break
            if chunked and body.endswith(b"0\r\n\r\n"):
                break
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
        return status, body


def post(path, body, headers=()):
    h = "".join(f"{k}: {v}\r\n" for k, v in headers)
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{h}\r\n"
    ).encode() + body


class Stack:
    def __init__(self, binary):
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="sar-abuse-")
        self.mock_port = free_port()
        self.port = free_port()
        self.admin_port = free_port()
        self.procs = []

    def start(self):
        self.procs.append(
            subprocess.Popen(
                [self.binary, "mock-upstream", "--listen", f"127.0.0.1:{self.mock_port}"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        digest = hashlib.sha256(KEY.encode()).hexdigest()
        open_digest = hashlib.sha256(OPEN_KEY.encode()).hexdigest()
        cfg = f"""
[server]
listen = "127.0.0.1:{self.port}"
workers = 2
pin_workers = false

[admin]
listen = "127.0.0.1:{self.admin_port}"
token = "{ADMIN_TOKEN}"

[discovery]
enabled = false

[health]
enabled = false

[state]
dir = "{self.dir}/state"

[providers.up]
kind = "openai"
base_url = "http://127.0.0.1:{self.mock_port}/v1"

[[channels]]
id = "up-1"
provider = "up"
api_key = "sk-up"
models = ["m"]
pricing = {{ input = 1000.0, output = 1000.0 }}

[providers.slow]
kind = "openai"
base_url = "http://127.0.0.1:{self.mock_port}/v1"
headers = {{ "x-mock-latency-ms" = "1500" }}

[[channels]]
id = "slow-1"
provider = "slow"
api_key = "sk-up"
models = ["slow"]

[providers.huge]
kind = "openai"
base_url = "http://127.0.0.1:{self.mock_port}/v1"
headers = {{ "x-mock-fault" = "huge:62914560" }}

[[channels]]
id = "huge-1"
provider = "huge"
api_key = "sk-up"
models = ["huge"]

[[auth.keys]]
name = "capped"
sha256 = "{digest}"
daily_budget = 0.12

[[auth.keys]]
name = "open"
sha256 = "{open_digest}"
"""
        path = os.path.join(self.dir, "config.toml")
        with open(path, "w") as f:
            f.write(cfg)
        wait_http(self.mock_port, b"/v1/models")
        gw = subprocess.Popen(
            [self.binary, "--config", path],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.procs.append(gw)
        self.pid = gw.pid
        wait_http(self.port)
        time.sleep(0.5)

    def stop(self):
        for p in reversed(self.procs):
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def uploads(stack):
    before = rss_kib(stack.pid)
    peak = [before]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_kib(stack.pid))
            time.sleep(0.005)

    def upload(i):
        try:
            with socket.create_connection(("127.0.0.1", stack.port), timeout=5) as s:
                key = "Authorization: Bearer sk-wrong\r\n" if i % 2 else ""
                s.sendall(
                    (
                        f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n{key}"
                        f"Content-Length: {UPLOAD}\r\n\r\n"
                    ).encode()
                )
                chunk = b" " * 65536
                for _ in range(UPLOAD // len(chunk)):
                    s.sendall(chunk)
                s.recv(4096)
        except OSError:
            pass

    sampler = threading.Thread(target=sample)
    sampler.start()
    t0 = time.monotonic()
    clients = [threading.Thread(target=upload, args=(i,)) for i in range(40)]
    for c in clients:
        c.start()
    for c in clients:
        c.join()
    took = time.monotonic() - t0
    time.sleep(0.3)
    done.set()
    sampler.join()
    after = rss_kib(stack.pid)
    return {"rss_before_mib": before / 1024, "rss_peak_mib": peak[0] / 1024,
            "rss_after_mib": after / 1024, "seconds": took}


def concurrent_rss(stack, n, body, expect):
    """Peak RSS growth (KiB) while `n` clients send `body` at once; every answer must be
    `expect`."""
    before = rss_kib(stack.pid)
    peak = [before]
    done = threading.Event()
    statuses = []

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_kib(stack.pid))
            time.sleep(0.002)

    def one():
        raw = post("/v1/chat/completions", body, [("Authorization", f"Bearer {OPEN_KEY}")])
        try:
            statuses.append(request(stack.port, raw, timeout=30)[0])
        except OSError:
            statuses.append(0)

    sampler = threading.Thread(target=sample)
    sampler.start()
    clients = [threading.Thread(target=one) for _ in range(n)]
    for c in clients:
        c.start()
    for c in clients:
        c.join()
    done.set()
    sampler.join()
    ok = sum(1 for s in statuses if s == expect)
    return before, peak[0], ok


def inflight(stack):
    pad = "x" * (4 << 20)
    body = ('{"model":"slow","messages":[{"role":"user","content":"' + pad + '"}]}').encode()
    before, peak, ok = concurrent_rss(stack, 8, body, 200)
    return {"requests": 8, "body_mib": 4, "served": ok,
            "rss_peak_growth_mib": (peak - before) / 1024,
            "per_request_mib": (peak - before) / 1024 / 8}


def huge(stack):
    body = b'{"model":"huge","messages":[{"role":"user","content":"hi"}]}'
    before, peak, ok = concurrent_rss(stack, 4, body, 200)
    return {"answers": 4, "answer_mib": 60, "served": ok,
            "rss_peak_growth_mib": (peak - before) / 1024,
            "per_answer_mib": (peak - before) / 1024 / 4}


def budget(stack):
    declines = [
        '"stream_options":{"include_usage":false},',
        '"stream_options":{},',
        '"stream_options":null,',
    ]
    served = refused = other = 0
    for i in range(30):
        body = (
            '{"model":"m","stream":true,' + declines[i % 3]
            + '"messages":[{"role":"user","content":"hello"}]}'
        ).encode()
        status, _ = request(
            stack.port,
            post("/v1/chat/completions", body, [("Authorization", f"Bearer {KEY}")]),
        )
        if status == 200:
            served += 1
        elif status == 429:
            refused += 1
        else:
            other += 1
        time.sleep(0.02)
    return {"served": served, "refused_429": refused, "other": other}


def admin(stack):
    idle = []

    def crowd():
        for s in idle:
            s.close()
        idle.clear()
        for i in range(500):
            try:
                s = socket.socket()
                s.bind((f"127.0.0.{2 + i % 50}", 0))
                s.settimeout(1)
                s.connect(("127.0.0.1", stack.admin_port))
                if i % 2:
                    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: adm")
                idle.append(s)
            except OSError:
                pass

    crowd()
    times, failed = [], 0
    raw = (
        f"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    for _ in range(50):
        t0 = time.monotonic()
        try:
            status, _ = request(stack.admin_port, raw, timeout=5)
        except OSError:
            status = 0
        dt = (time.monotonic() - t0) * 1000
        if status == 200:
            times.append(dt)
        else:
            failed += 1
        crowd()
    for s in idle:
        s.close()
    times.sort()
    pct = lambda p: times[min(len(times) - 1, int(p * len(times)))] if times else None
    return {"answered": len(times), "failed": failed,
            "p50_ms": pct(0.5), "p99_ms": pct(0.99)}


def main():
    binary = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) > 2 else None
    results = {}
    # Each scenario on a fresh gateway: memory one left behind must not count in the next.
    for name, scenario in [
        ("uploads", uploads),
        ("inflight_bodies", inflight),
        ("large_answers", huge),
        ("budget", budget),
        ("admin", admin),
    ]:
        stack = Stack(binary)
        try:
            stack.start()
            results[name] = scenario(stack)
        finally:
            stack.stop()
    text = json.dumps(results, indent=2)
    print(text)
    if out:
        with open(out, "a") as f:
            f.write(f"\n## {binary}\n\n```json\n{text}\n```\n")


if __name__ == "__main__":
    main()
