#!/usr/bin/env python3
"""Cold start: time from spawning the gateway to its first `GET /health` 200, and to its first
routed `POST /v1/chat/completions` 200 (which also opens the first upstream connection).

Usage: coldstart.py BINARY CONFIG RUNS CLIENT_CPU SERVER_CPU OUT_TSV [MODEL]
(MODEL, default gpt-4o-mini: the model the routed request asks for.)

Plain sockets rather than curl: spawning curl per poll costs more than the thing measured.
The poller spins on CLIENT_CPU while the gateway starts pinned to SERVER_CPU, so the busy loop
does not steal the core the gateway boots on. Each start gets a fresh port (no SO_REUSEPORT
sharing with a previous instance that is still exiting).
"""

import os
import socket
import subprocess
import sys
import time

BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}'
DEADLINE_S = 10.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status_of(port, request):
    """Status code of one request on a fresh connection, or None if nothing answers yet."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(request)
            head = b""
            while b"\r\n" not in head:
                chunk = s.recv(4096)
                if not chunk:
                    return None
                head += chunk
            return int(head.split(b" ", 2)[1])
    except (OSError, ValueError, IndexError):
        return None


def wait_for(port, request, t0):
    while time.monotonic_ns() - t0 < DEADLINE_S * 1e9:
        if status_of(port, request) == 200:
            return time.monotonic_ns()
    raise SystemExit(f"no 200 within {DEADLINE_S}s on port {port}")


def main():
    binary, config, runs, client_cpu, server_cpu, out = sys.argv[1:7]
    model = sys.argv[7] if len(sys.argv) > 7 else "gpt-4o-mini"
    body = BODY.replace(b"gpt-4o-mini", model.encode())
    client_cpu, server_cpu = int(client_cpu), int(server_cpu)
    health = b"GET /health HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    chat = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )
    rows = []
    for i in range(int(runs)):
        port = free_port()
        # The child inherits this affinity at spawn; switch back right after, so no preexec_fn
        # (which would force a slow fork) sits inside the measured interval.
        os.sched_setaffinity(0, {server_cpu})
        t0 = time.monotonic_ns()
        proc = subprocess.Popen(
            [binary, "--config", config, "--listen", f"127.0.0.1:{port}", "--workers", "1"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.sched_setaffinity(0, {client_cpu})
        try:
            t_health = wait_for(port, health, t0)
            t_routed = wait_for(port, chat, t0)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        rows.append((i + 1, (t_health - t0) / 1e6, (t_routed - t0) / 1e6))
    with open(out, "w") as f:
        f.write("run\thealth_ms\trouted_ms\n")
        for r in rows:
            f.write(f"{r[0]}\t{r[1]:.3f}\t{r[2]:.3f}\n")


if __name__ == "__main__":
    main()
