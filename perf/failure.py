#!/usr/bin/env python3
"""How the gateway's failure model treats clients when a provider misbehaves, measured from
outside against one gateway binary and its built-in mock (`mock-upstream`).

Usage: failure.py BINARY [ROUNDS] [OUT_MD]

1. Lone channel, one transient 5xx, then 50 concurrent requests: how many succeed (the mock
   fails exactly one request, `x-mock-fail-times: 1`, with a 500, which is not retried on the
   channel). Reported per round and as a median.
2. A 404 "no route" on `POST /v1/responses` (`x-mock-missing-paths`), then a chat request on
   the same channel: the chat status.
3. An upstream 429 with `Retry-After: 2`, then a plain request every 20 ms: the time from the
   429 to the first request the upstream answers again, against the 2 s it asked for. One
   worker here: with several, a worker that has not yet received the cooldown (it travels
   within a tick, 50 ms) may send a request whose success heals it — right for a provider
   that really recovered, but the mock recovers at once, which would measure the tick, not the
   cooldown.

Each round gets a fresh gateway. Everything runs on loopback; every process started here is
stopped on exit.
"""

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from abuse import free_port, post, request, wait_http  # noqa: E402

CHAT = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()


class Stack:
    def __init__(self, binary, workers=2):
        self.binary = binary
        self.workers = workers
        self.dir = tempfile.mkdtemp(prefix="sar-failure-")
        self.mock_port = free_port()
        self.port = free_port()
        self.procs = []

    def start(self):
        self.procs.append(
            subprocess.Popen(
                [self.binary, "mock-upstream", "--listen", f"127.0.0.1:{self.mock_port}"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        cfg = f"""
[server]
listen = "127.0.0.1:{self.port}"
workers = {self.workers}
pin_workers = false

[discovery]
enabled = false

[health]
enabled = false

[state]
dir = "{self.dir}"

[providers.up]
kind = "openai"
base_url = "http://127.0.0.1:{self.mock_port}/v1"
forward_headers = ["x-mock-*"]

[[channels]]
id = "up"
provider = "up"
api_key = "sk-perf"
models = ["m"]
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
        wait_http(self.port)

    def stop(self):
        for p in reversed(self.procs):
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def chat(port, headers=(), path="/v1/chat/completions", body=CHAT):
    status, _ = request(port, post(path, body, headers))
    return status


def concurrent_after_5xx(stack, n=50):
    statuses = []
    lock = threading.Lock()
    start = threading.Barrier(n + 1)

    def one():
        start.wait()
        s = chat(stack.port)
        with lock:
            statuses.append(s)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    # The failing request goes first, so the others meet the cooldown it causes.
    first = chat(
        stack.port,
        [("x-mock-fail-times", "1"), ("x-mock-fail-key", "perf"), ("x-mock-status", "500")],
    )
    start.wait()
    for t in threads:
        t.join()
    return {"first": first, "succeeded": statuses.count(200), "of": n}


def responses_404_then_chat(stack):
    body = json.dumps({"model": "m", "input": "hi"}).encode()
    r404 = chat(stack.port, [("x-mock-missing-paths", "/responses")], "/v1/responses", body)
    return {"responses": r404, "chat_after": chat(stack.port)}


def retry_after_honoured(stack, asked=2.0):
    t0 = time.monotonic()
    first = chat(stack.port, [("x-mock-status", "429"), ("x-mock-retry-after", str(int(asked)))])
    local = 0
    while True:
        s = chat(stack.port)
        if s == 200:
            return {"first": first, "gateway_429s": local, "served_after_s": round(time.monotonic() - t0, 3), "asked_s": asked}
        local += 1
        if time.monotonic() - t0 > asked + 10:
            return {"first": first, "gateway_429s": local, "served_after_s": None, "asked_s": asked}
        time.sleep(0.02)


def main():
    binary = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    out = sys.argv[3] if len(sys.argv) > 3 else None
    results = {"concurrent_after_5xx": [], "responses_404_then_chat": [], "retry_after": []}
    for _ in range(rounds):
        for name, scenario, workers in [
            ("concurrent_after_5xx", concurrent_after_5xx, 2),
            ("responses_404_then_chat", responses_404_then_chat, 2),
            ("retry_after", retry_after_honoured, 1),
        ]:
            stack = Stack(binary, workers)
            try:
                stack.start()
                results[name].append(scenario(stack))
            finally:
                stack.stop()
    ok = [r["succeeded"] for r in results["concurrent_after_5xx"]]
    late = [r["served_after_s"] - r["asked_s"] for r in results["retry_after"] if r["served_after_s"]]
    results["summary"] = {
        "concurrent_after_5xx_median_succeeded": statistics.median(ok),
        "retry_after_median_lateness_s": round(statistics.median(late), 3) if late else None,
        "chat_after_responses_404": sorted({r["chat_after"] for r in results["responses_404_then_chat"]}),
    }
    text = json.dumps(results, indent=2)
    print(text)
    if out:
        with open(out, "a") as f:
            f.write(f"\n## {binary}\n\n```json\n{text}\n```\n")


if __name__ == "__main__":
    main()
