#!/usr/bin/env python3
"""Control-plane timings on the warm-restart deployment (40 channels, 3,400 pairs): for N admin
overrides (disable/enable a channel in turn), the catalog rebuild time and the time until every
worker runs the new snapshot, as the gateway reports them in GET /admin/snapshot, and the
admin call's own latency (it answers once every worker has the change).

Usage: control.py BINARY CONFIG WORKERS RUNS OUT_TSV
"""

import json
import socket
import subprocess
import sys
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(port, method, path):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: perf\r\nContent-Length: 0\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if body else None


def main():
    binary, config, workers, runs, out = sys.argv[1:6]
    port, admin = free_port(), free_port()
    proc = subprocess.Popen(
        [binary, "--config", config, "--listen", f"127.0.0.1:{port}", "--workers", workers,
         "--admin-listen", f"127.0.0.1:{admin}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    rows = []
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if call(admin, "GET", "/admin/snapshot")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("admin API did not come up")
            time.sleep(0.01)
        for i in range(int(runs)):
            action = "disable" if i % 2 == 0 else "enable"
            t0 = time.monotonic_ns()
            status, _ = call(admin, "POST", f"/admin/channels/ch-{i % 40}/{action}")
            t1 = time.monotonic_ns()
            if status != 200:
                raise SystemExit(f"admin {action} answered {status}")
            snap = call(admin, "GET", "/admin/snapshot")[1]
            rows.append((i + 1, snap["entries"], snap["build_ms"], snap["propagation_ms"],
                         (t1 - t0) / 1e6))
        # Leave no override behind in the state dir.
        for c in range(40):
            call(admin, "DELETE", f"/admin/channels/ch-{c}/overrides")
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    with open(out, "w") as f:
        f.write("run\tentries\tbuild_ms\tpropagation_ms\tadmin_call_ms\n")
        for r in rows:
            f.write(f"{r[0]}\t{r[1]}\t{r[2]:.3f}\t{r[3]:.3f}\t{r[4]:.3f}\n")


if __name__ == "__main__":
    main()
