"""The status page in a real headless Chromium, driven over the Chrome DevTools Protocol.

Starts `BINARY mock-upstream` and the gateway (tests/sdk/harness.py) with an admin listener
and token, three channels (two on the mock, one on a dead port so it cools down) and some
traffic; then, in Chromium: loads the page (sent to the sign-in form), signs in with the token,
sees every channel and its state, checks the session cookie is invisible to scripts, clicks
"Disable" on one channel with real mouse events and waits for the page (refreshed by its own
script, no reload) to show it disabled, checks no script error or CSP violation happened,
clears a cooldown, reloads the config and enables the channel again from the page,
checks a narrow window does not scroll sideways, and saves a screenshot to
docs/status-page.png (or the path in $SCREENSHOT).

Usage: python test_status_page.py BINARY   (Chromium from $CHROMIUM, default /usr/bin/chromium)
"""

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import websocket  # websocket-client

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "sdk"))
from harness import Stack, free_port  # noqa: E402

TOKEN = "browser-test-token-0123456789"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENSHOT = os.environ.get(
    "SCREENSHOT", os.path.join(HERE, "..", "..", "docs", "status-page.png")
)
TIMEOUT = 20.0


def config(admin_port, dead_port):
    def make(gw_port, mock_port, state_dir):
        return f"""
[server]
listen = "127.0.0.1:{gw_port}"
workers = 2

[discovery]
enabled = false

[health]
enabled = false

[state]
dir = "{state_dir}"

[admin]
listen = "127.0.0.1:{admin_port}"
token = "{TOKEN}"

[pricing]
currency = "USD"

[routing]
# Long enough that the offline channel is still cooling when the page is looked at.
cooldown_base = "2m"

[providers.openai-main]
kind = "openai"
base_url = "http://127.0.0.1:{mock_port}/v1"

[providers.openai-backup]
kind = "openai"
base_url = "http://127.0.0.1:{mock_port}/v1"

[providers.offline]
kind = "openai"
base_url = "http://127.0.0.1:{dead_port}/v1"

[[channels]]
id = "main"
provider = "openai-main"
api_key = "sk-main-not-shown"
models = ["gpt-4o-mini", "gpt-4o"]
priority = 1
pricing = {{ input = 0.15, output = 0.6 }}

[[channels]]
id = "backup"
provider = "openai-backup"
api_key = "sk-backup-not-shown"
models = ["gpt-4o-mini"]

[[channels]]
id = "offline"
provider = "offline"
api_key = "sk-offline-not-shown"
models = ["local-llama"]
"""

    return make


def chat(base, model):
    body = json.dumps(
        {"model": model, "messages": [{"role": "user", "content": "hello"}]}
    ).encode()
    req = urllib.request.Request(
        f"{base}/v1/chat/completions",
        data=body,
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


class Browser:
    """Headless Chromium and one page target over CDP."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="sar-chromium-")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                f"--user-data-dir={self.dir}",
                f"--remote-debugging-port={self.port}",
                "--window-size=1280,1000",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.dir, "chromium.log"), "wb"),
        )
        ws_url = self._page_target()
        self.ws = websocket.create_connection(ws_url, timeout=TIMEOUT, suppress_origin=True)
        self.next_id = 0
        self.events = []
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.cmd(f"{domain}.enable")

    def _page_target(self):
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited {self.proc.returncode}: {self.log()}")
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.port}/json/list", timeout=1
                ) as r:
                    targets = json.load(r)
                for t in targets:
                    if t.get("type") == "page":
                        return t["webSocketDebuggerUrl"]
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"no page target from chromium: {self.log()}")

    def log(self):
        try:
            with open(os.path.join(self.dir, "chromium.log"), errors="replace") as f:
                return f.read()[-3000:]
        except OSError as e:
            return str(e)

    def cmd(self, method, **params):
        self.next_id += 1
        me = self.next_id
        self.ws.send(json.dumps({"id": me, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == me:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def eval(self, expr):
        r = self.cmd("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait(self, expr, what):
        deadline = time.monotonic() + TIMEOUT
        last = None
        while time.monotonic() < deadline:
            try:
                last = self.eval(expr)
                if last:
                    return last
            except RuntimeError as e:  # navigation in progress
                last = str(e)
            time.sleep(0.1)
        try:
            where = self.eval("location.href + ' | ' + document.body.innerText.slice(0, 300)")
        except RuntimeError as e:
            where = str(e)
        raise AssertionError(f"timed out waiting for {what} (last: {last!r}; page: {where})")

    def click(self, selector):
        """A real mouse click in the middle of the element."""
        rect = self.eval(
            f"(function(){{var e=document.querySelector({json.dumps(selector)});"
            "if(!e)return null;e.scrollIntoView({block:'center'});"
            "var r=e.getBoundingClientRect();return {x:r.x+r.width/2,y:r.y+r.height/2};})()"
        )
        assert rect, f"no element {selector}"
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.cmd(
                "Input.dispatchMouseEvent",
                type=kind,
                x=rect["x"],
                y=rect["y"],
                button="left",
                clickCount=1,
            )

    def problems(self):
        """Script exceptions, console errors and CSP violations seen so far."""
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.append(json.dumps(p.get("exceptionDetails", {}))[:400])
            elif m == "Runtime.consoleAPICalled" and p.get("type") == "error":
                out.append(json.dumps(p.get("args", []))[:400])
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                entry = p["entry"]
                # A 401 from the page's first unauthenticated load is expected.
                if entry.get("source") == "network":
                    continue
                out.append(entry.get("text", "")[:400])
        return out

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def rows(b):
    return b.eval(
        "Array.from(document.querySelectorAll('tr[data-channel]'))"
        ".map(function(r){return [r.dataset.channel, r.dataset.state]})"
    )


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/debug/smart-ai-router"
    admin_port, dead_port = free_port(), free_port()
    stack = Stack(binary, ["gpt-4o-mini", "gpt-4o"], config(admin_port, dead_port), "sar-browser-")
    browser = None
    try:
        stack.start()
        for model in ["gpt-4o-mini"] * 6 + ["gpt-4o"] * 3:
            assert chat(stack.base_url, model) == 200
        assert chat(stack.base_url, "local-llama") >= 500  # offline cools down
        browser = Browser()
        admin = f"http://127.0.0.1:{admin_port}"

        # Not signed in: the page sends the browser to the sign-in form.
        browser.cmd("Page.navigate", url=f"{admin}/")
        browser.wait(
            "location.pathname === '/login' && document.readyState === 'complete' "
            "&& !!document.getElementById('token')",
            "the sign-in form",
        )
        browser.eval(f"document.getElementById('token').value = {json.dumps(TOKEN)}")
        browser.click("form[action='/login'] button[type=submit]")
        browser.wait(
            "location.pathname === '/' && document.readyState === 'complete' "
            "&& document.querySelectorAll('tr[data-channel]').length === 3",
            "the status page with three channels",
        )
        print("signed in; channels:", rows(browser))
        states = dict(rows(browser))
        assert states == {"main": "ok", "backup": "ok", "offline": "cooling"}, states
        assert "until" in browser.eval(
            "document.querySelector('tr[data-channel=offline] td.state').textContent"
        ), "cooling says until when"
        assert "sar_admin_session" not in browser.eval("document.cookie"), "cookie is HttpOnly"
        assert TOKEN not in browser.eval("document.documentElement.outerHTML")
        assert TOKEN not in browser.eval("location.href")

        # The script refreshes the figures without reloading the page.
        browser.eval("window.__marker = 1")
        browser.wait(
            "document.querySelector('#meta').textContent.indexOf('updated') >= 0 "
            "&& window.__marker === 1 && "
            "document.querySelector('tr[data-channel=main] td[data-label=\"1 min\"]')"
            ".textContent.indexOf('0.00 req/s') < 0",
            "the main channel's live req/s",
        )

        # Click "Disable" on backup; the row turns disabled with no reload.
        browser.click("button[data-action=disable][data-channel=backup]")
        browser.wait(
            "(document.querySelector('tr[data-channel=backup]')||{dataset:{}}).dataset.state === 'disabled'",
            "backup shown disabled",
        )
        flash = browser.wait(
            "(function(){var f=document.getElementById('flash');"
            "return f && f.textContent.indexOf('disabled') >= 0 ? f.textContent : null})()",
            "the action's result shown",
        )
        assert browser.eval("window.__marker") == 1, "the page was not reloaded"
        print("after disable:", rows(browser), "| flash:", flash.strip()[:120])
        assert dict(rows(browser))["backup"] == "disabled"
        assert browser.eval(
            "!!document.querySelector('button[data-action=enable][data-channel=backup]')"
        ), "the button now offers Enable"

        problems = browser.problems()
        assert not problems, f"script errors or CSP violations: {problems}"

        # Screenshot of the whole page at desktop width.
        height = browser.eval("Math.ceil(document.documentElement.scrollHeight)")
        browser.cmd(
            "Emulation.setDeviceMetricsOverride",
            width=1280,
            height=min(int(height), 2400),
            deviceScaleFactor=1,
            mobile=False,
        )
        time.sleep(0.3)
        shot = browser.cmd("Page.captureScreenshot", format="png")
        os.makedirs(os.path.dirname(os.path.abspath(SCREENSHOT)), exist_ok=True)
        with open(SCREENSHOT, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        print(f"screenshot: {os.path.abspath(SCREENSHOT)}")

        # The other buttons call their admin endpoints and say what they did.
        browser.click("button[data-action=clear][data-channel=offline]")
        browser.wait(
            "document.getElementById('flash').textContent.indexOf('cleared') >= 0 "
            "&& document.querySelector('tr[data-channel=offline]').dataset.state === 'ok'",
            "offline's cooldown cleared",
        )
        browser.click("button[data-action=reload]")
        browser.wait(
            "document.getElementById('flash').textContent.indexOf('config reloaded') >= 0 "
            "&& document.getElementById('system').textContent.indexOf('applied') >= 0",
            "the reload answered and listed",
        )
        browser.click("button[data-action=enable][data-channel=backup]")
        browser.wait(
            "document.querySelector('tr[data-channel=backup]').dataset.state === 'ok'",
            "backup enabled again",
        )
        problems = browser.problems()
        assert not problems, f"script errors or CSP violations: {problems}"

        # A narrow window: no sideways scrolling.
        browser.cmd(
            "Emulation.setDeviceMetricsOverride",
            width=400,
            height=800,
            deviceScaleFactor=1,
            mobile=True,
        )
        time.sleep(0.3)
        widths = browser.eval(
            "[document.documentElement.scrollWidth, window.innerWidth]"
        )
        assert widths[0] <= widths[1] + 1, f"narrow window scrolls sideways: {widths}"
        print("1 passed, 0 failed")
        return 0
    except Exception as e:
        print(f"browser test failed: {e}", file=sys.stderr)
        if browser:
            print(f"--- chromium log ---\n{browser.log()}", file=sys.stderr)
        print(stack.report(), file=sys.stderr)
        print("0 passed, 1 failed")
        return 1
    finally:
        if browser:
            browser.close()
        stack.cleanup()


if __name__ == "__main__":
    sys.exit(main())
