"""Headless Chromium driven over its DevTools protocol, for the tests that need a browser
(tests/interop/test_chromium.py, test_console.py).  Chromium is the Debian package `chromium`
or $WSK_CHROMIUM; find() says where, or None.  Events the page reports (console messages,
uncaught exceptions, log entries) are kept in Browser.events once enable_events() ran."""
import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request

import websockets

from wstest import ok

TIMEOUT = 30


def find():
    return (os.environ.get("WSK_CHROMIUM") or shutil.which("chromium") or
            shutil.which("chromium-browser"))


class Browser:
    """Headless Chromium with a fresh profile; one page driven over the DevTools protocol."""

    def __init__(self, exe):
        self.dir = tempfile.mkdtemp(prefix="wsk-chromium-")
        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-extensions", "--disable-default-apps", "--mute-audio",
             f"--user-data-dir={self.dir}", "--remote-debugging-address=127.0.0.1",
             "--remote-debugging-port=0", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        self.ws = None
        self.ids = 0
        self.events = []

    def page_url(self, timeout=20.0):
        """The DevTools WebSocket URL of the first page, once Chromium listens."""
        path = os.path.join(self.dir, "DevToolsActivePort")
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with status {self.proc.returncode}")
            try:
                with open(path) as f:
                    port = int(f.readline())
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                    for t in json.load(r):
                        if t.get("type") == "page":
                            return t["webSocketDebuggerUrl"]
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        raise RuntimeError("chromium's DevTools endpoint did not come up")

    async def connect(self, prelude=None):
        """Attaches to the page; runs the JavaScript prelude there (helpers), when given."""
        self.ws = await websockets.connect(self.page_url(), max_size=None, open_timeout=10)
        if prelude:
            await self.evaluate(prelude, raw=True)

    async def enable_events(self):
        """From now on, console calls, exceptions and log entries go to self.events."""
        await self.call("Runtime.enable")
        await self.call("Log.enable")
        await self.call("Page.enable")

    def errors(self):
        """The page's console errors and uncaught exceptions so far, as text."""
        out = []
        for m in self.events:
            p = m.get("params", {})
            if m["method"] == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.append(d.get("exception", {}).get("description") or d.get("text", "exception"))
            elif m["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description", "")))
                                    for a in p.get("args", [])))
            elif m["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append(p["entry"].get("text", ""))
        return out

    async def navigate(self, url):
        """Loads url in the page and waits for its load event (bounded)."""
        await self.call("Page.navigate", url=url)
        end = time.monotonic() + TIMEOUT
        while not any(m["method"] == "Page.loadEventFired" for m in self.events):
            if time.monotonic() > end:
                raise RuntimeError("the page did not load")
            await self._next_event(end - time.monotonic())

    async def screenshot(self, path):
        r = await self.call("Page.captureScreenshot", format="png")
        with open(path, "wb") as f:
            f.write(base64.b64decode(r["data"]))

    async def _next_event(self, timeout):
        """Reads one DevTools message: an answer is returned, an event kept in self.events."""
        msg = json.loads(await asyncio.wait_for(self.ws.recv(), max(timeout, 0.01)))
        if "method" in msg:
            self.events.append(msg)
        return msg

    async def call(self, method, **params):
        self.ids += 1
        my = self.ids
        await self.ws.send(json.dumps({"id": my, "method": method, "params": params}))
        while True:
            msg = await self._next_event(TIMEOUT + 5)
            if msg.get("id") == my:
                if "error" in msg:
                    raise RuntimeError(msg["error"].get("message"))
                return msg["result"]

    async def evaluate(self, body, raw=False, **args):
        """Runs body as an async function with args; returns the checks it made."""
        if raw:
            expr = body
        else:
            decl = "".join(f"const {k} = {json.dumps(v)};\n" for k, v in args.items())
            expr = ("(async () => { const results = [];\n"
                    "const check = (name, ok, detail) => results.push({name, ok: !!ok, detail: String(detail)});\n"
                    f"try {{\n{decl}{body}\n}} catch (e) {{ check('case completes', false, e.message); }}\n"
                    "return results; })()")
        r = await self.call("Runtime.evaluate", expression=expr, awaitPromise=True,
                            returnByValue=True, timeout=TIMEOUT * 1000)
        if "exceptionDetails" in r:
            raise RuntimeError(r["exceptionDetails"].get("text", "exception"))
        return r["result"].get("value")

    async def run(self, prefix, body, **args):
        try:
            results = await self.evaluate(body, **args)
        except Exception as e:  # noqa: BLE001
            ok(False, f"{prefix} case ran", repr(e))
            return
        for r in results or []:
            ok(r["ok"], f"{prefix} {r['name']}", r["detail"])
        if not results:
            ok(False, f"{prefix} case made its checks")

    def stop(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
