"""The processes an SDK test drives: `BINARY mock-upstream` and the gateway in front of it, on
free loopback ports, always stopped at exit. On failure, `Stack.report()` gives the tails of
both stderr logs. Shared by the SDK suites under tests/sdk/."""

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

DEFAULT_BINARY = "target/debug/smart-ai-router"
STARTUP_TIMEOUT = 30.0


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path, n=60):
    try:
        with open(path, "r", errors="replace") as f:
            lines = f.readlines()
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    return "".join(lines[-n:])


def family_config(gw_port, mock_port, state_dir, families):
    """One provider and one channel per entry of `families` (name -> (kind, base path on the
    mock, model, channel id[, extra provider TOML])), all on the mock; no discovery or probes,
    so each channel serves exactly its configured model."""
    parts = [
        f'[server]\nlisten = "127.0.0.1:{gw_port}"\nworkers = 2\n',
        "[discovery]\nenabled = false\n",
        "[health]\nenabled = false\n",
        f'[state]\ndir = "{state_dir}"\n',
    ]
    for name, (kind, path, model, channel, *rest) in families.items():
        extra = rest[0] if rest else ""
        parts.append(
            f'[providers.{name}]\nkind = "{kind}"\n'
            f'base_url = "http://127.0.0.1:{mock_port}{path}"\n'
            # the mock's x-mock-* knobs are client headers beyond the allow-list
            'forward_headers = ["x-mock-*"]\n'
            f"{extra}"
        )
        parts.append(
            f'[[channels]]\nid = "{channel}"\nprovider = "{name}"\n'
            f'api_key = "key-{name}"\nmodels = ["{model}"]\n'
        )
    return "\n".join(parts)


class Stack:
    """The mock upstream (serving `models`) and the gateway (configured by
    `config(gw_port, mock_port, state_dir)`), as subprocesses."""

    def __init__(self, binary, models, config, prefix="sar-sdk-"):
        self.binary = os.path.abspath(binary)
        self.models = models
        self.config = config
        self.tmp = tempfile.mkdtemp(prefix=prefix)
        self.procs = {}  # name -> (Popen, stdout path, stderr path)
        self.mock_port = None
        self.gw_port = None

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.gw_port}"

    def _spawn(self, name, argv):
        out = os.path.join(self.tmp, f"{name}.stdout")
        err = os.path.join(self.tmp, f"{name}.stderr")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": self.tmp}
        with open(out, "wb") as fo, open(err, "wb") as fe:
            p = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=fo, stderr=fe, env=env, cwd=self.tmp
            )
        self.procs[name] = (p, out, err)

    def _fail_start(self, name, why):
        _, out, err = self.procs[name]
        msg = (
            f"{name} did not start: {why}\n"
            f"--- {name} stdout ---\n{tail(out)}\n--- {name} stderr ---\n{tail(err)}"
        )
        self.stop()
        raise RuntimeError(msg)

    def _wait_port(self, name, port, ready):
        p = self.procs[name][0]
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if p.poll() is not None:
                self._fail_start(name, f"exited with code {p.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    pass
            except OSError:
                time.sleep(0.05)
                continue
            if ready():
                return
            time.sleep(0.05)
        self._fail_start(name, f"port {port} not ready after {STARTUP_TIMEOUT}s")

    def start(self):
        if not os.path.isfile(self.binary):
            raise RuntimeError(f"binary not found: {self.binary}")
        self.mock_port = free_port()
        self._spawn(
            "mock",
            [
                self.binary,
                "mock-upstream",
                "--listen",
                f"127.0.0.1:{self.mock_port}",
                "--models",
                ",".join(self.models),
                "--chunks",
                "5",
            ],
        )
        mock_out = self.procs["mock"][1]

        def mock_announced():
            with open(mock_out, "r", errors="replace") as f:
                return f"listening on http://127.0.0.1:{self.mock_port}" in f.read()

        self._wait_port("mock", self.mock_port, mock_announced)

        self.gw_port = free_port()
        cfg = os.path.join(self.tmp, "gateway.toml")
        with open(cfg, "w") as f:
            f.write(self.config(self.gw_port, self.mock_port, os.path.join(self.tmp, "state")))
        self._spawn("gateway", [self.binary, "--config", cfg])

        def healthy():
            try:
                with urllib.request.urlopen(f"{self.base_url}/health", timeout=2) as r:
                    return r.status == 200
            except (urllib.error.URLError, OSError):
                return False

        self._wait_port("gateway", self.gw_port, healthy)

    def stop(self):
        for p, _, _ in self.procs.values():
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=5)

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def report(self):
        parts = []
        for name in ("gateway", "mock"):
            if name in self.procs:
                p, _, err = self.procs[name]
                state = "running" if p.poll() is None else f"exited {p.returncode}"
                parts.append(f"--- {name} stderr tail ({state}) ---\n{tail(err)}")
        return "\n".join(parts)
