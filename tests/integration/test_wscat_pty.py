#!/usr/bin/python3
"""wscat's interactive mode, driven through a pseudo-terminal (tmux) and checked on the screen:
the prompt, typed lines sent and echoed, a message arriving while a line is being typed printed
above the prompt without disturbing the typed text, history, /ping, colours (and none with
NO_COLOR), typed text in the default colour, --slash errors below the typed line, CTRL+D and
CTRL+C, and the terminal settings and colour restored at exit.

Prints TAP lines.  The WebSocket server is Python's `websockets` in a thread of this process on
127.0.0.1; tmux runs on a private socket that is killed at the end."""

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import websockets

BIN = os.environ.get("WSK_BIN", os.path.join(os.path.dirname(__file__), "..", "..", "bin"))
WSCAT = os.path.abspath(os.path.join(BIN, "wscat"))

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wstest import PyServer, failures  # noqa: E402
from wstest import ok as check  # noqa: E402


async def echo_later(ws, path):
    """Echo; on /later it also sends "surprise" 0.8 s after the connection opens."""
    async def later():
        await asyncio.sleep(0.8)
        await ws.send("surprise")
    task = asyncio.ensure_future(later()) if path == "/later" else None
    try:
        async for m in ws:
            await ws.send(m)
    except websockets.ConnectionClosed:
        pass
    if task:
        task.cancel()


class Tmux:
    def __init__(self, tmp):
        self.sock = os.path.join(tmp, "tmux.sock")

    def run(self, *args):
        return subprocess.run(["tmux", "-S", self.sock, *args], capture_output=True, timeout=10)

    def start(self, name, command):
        self.run("new-session", "-d", "-s", name, "-x", "80", "-y", "24", command)

    def keys(self, name, *keys, literal=False):
        self.run("send-keys", "-t", name, *(["-l"] if literal else []), *keys)

    def screen(self, name, escapes=False):
        out = self.run("capture-pane", "-p", *(["-e"] if escapes else []), "-t", name).stdout
        return out.decode(errors="replace")

    def wait(self, name, pred, seconds=5):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            s = self.screen(name)
            if pred(s):
                return True, s
            time.sleep(0.05)
        return False, self.screen(name)

    def kill(self):
        self.run("kill-server")


def lines(screen):
    return [l.rstrip() for l in screen.splitlines() if l.strip()]


SGR = re.compile(r"\x1b\[([0-9;]*)m")


def plain_at(escaped, pattern):
    """True when the text matched by the group of `pattern` (a regex; its first match) on a
    screen captured with escapes is drawn in the default colour: the last SGR sequence before
    it resets the foreground (or there is none)."""
    m = re.search(pattern, escaped)
    if not m:
        return False
    last = [m.group(1) for m in SGR.finditer(escaped, 0, m.start(1))]
    return not last or last[-1] in ("", "0", "39")


def interrupted(tmux, tmp, name, url, key):
    """wscat in colour, a line half typed, then `key`: (exited, screen, screen with escapes,
    terminal settings the same after as before)."""
    before, after = os.path.join(tmp, "before-" + name), os.path.join(tmp, "after-" + name)
    tmux.start(name, "stty -g > %s; env -u NO_COLOR TERM=screen %s -c %s/echo; echo EXIT=$?; "
               "stty -g > %s; sleep 30" % (before, WSCAT, url, after))
    tmux.wait(name, lambda s: "Connected" in s and ">" in s)
    tmux.keys(name, "half", literal=True)
    tmux.wait(name, lambda s: "> half" in s)
    tmux.keys(name, key)
    ok, s = tmux.wait(name, lambda s: "EXIT=" in s)
    col = tmux.screen(name, escapes=True)
    done, _ = tmux.wait(name, lambda s: os.path.exists(after) and os.path.getsize(after) > 0, 3)
    return ok, s, col, done and open(before).read() == open(after).read()


def main():
    if not os.access(WSCAT, os.X_OK):
        print("not ok 1 - %s is not built" % WSCAT)
        return 1
    if not shutil.which("tmux"):
        print("ok 1 - interactive mode # SKIP tmux is not installed")
        return 0
    server = PyServer(echo_later)
    tmp = tempfile.mkdtemp(prefix="wscat-pty-")
    tmux = Tmux(tmp)
    url = "ws://127.0.0.1:%d" % server.port
    try:
        before, after = os.path.join(tmp, "before"), os.path.join(tmp, "after")
        tmux.start("a", "stty -g > %s; env -u NO_COLOR TERM=screen %s -c %s/later --slash -P; "
                   "echo EXIT=$?; stty -g > %s; sleep 30" % (before, WSCAT, url, after))
        ok, s = tmux.wait("a", lambda s: "Connected" in s and ">" in s)
        check(ok and lines(s)[-1] == ">", "connects and shows the prompt", s)

        tmux.keys("a", "partial", literal=True)
        ok, s = tmux.wait("a", lambda s: "< surprise" in s)
        ls = lines(s)
        check(ok and ls[-1] == "> partial" and ls[-2] == "< surprise",
              "a message arriving while typing is printed above the prompt, the typed text kept",
              s)

        tmux.keys("a", " input", literal=True)
        tmux.keys("a", "Enter")
        ok, s = tmux.wait("a", lambda s: "< partial input" in s)
        ls = lines(s)
        check(ok and "> partial input" in ls and ls[-1] == ">",
              "Enter sends the whole line; the echo is printed and a fresh prompt follows", s)

        col = tmux.screen("a", escapes=True)
        echo_line = [l for l in col.splitlines() if "partial input" in l and "<" in l]
        check(echo_line and "\x1b[" in echo_line[0], "received messages are coloured on a "
              "terminal", repr(echo_line))

        col = tmux.screen("a", escapes=True)
        typed = r"(>)(?:\x1b\[[0-9;]*m)* (partial input)"
        check(not plain_at(col, typed) and plain_at(col, typed.replace("(>)", ">")),
              "the prompt is coloured, the typed text is not", repr(col))

        tmux.keys("a", "/nosuch", literal=True)
        tmux.keys("a", "Enter")
        ok, s = tmux.wait("a", lambda s: "unknown command /nosuch" in s)
        ls = lines(s)
        check(ok and ls[-3] == "> /nosuch" and ls[-2].startswith("wscat: unknown")
              and ls[-1] == ">", "--slash: an unknown command is reported below the line typed "
              "and one fresh prompt follows", s)

        tmux.keys("a", "Up")
        tmux.keys("a", "Up")
        ok, s = tmux.wait("a", lambda s: lines(s)[-1] == "> partial input")
        check(ok, "Up recalls the previous line from the history", s)
        tmux.keys("a", "C-u")
        tmux.keys("a", "/ping hey", literal=True)
        tmux.keys("a", "Enter")
        ok, s = tmux.wait("a", lambda s: '< pong "hey"' in s)
        check(ok, "--slash: /ping shows the pong (-P)", s)

        tmux.keys("a", "C-d")
        ok, s = tmux.wait("a", lambda s: "EXIT=" in s)
        check(ok and "EXIT=0" in s and "Disconnected (code: 1000" in s,
              "CTRL+D closes with 1000 and exits 0", s)
        col = tmux.screen("a", escapes=True)
        check(plain_at(col, "(EXIT=)"), "after CTRL+D the terminal is back to its default colour",
              repr(col))
        ok, _ = tmux.wait("a", lambda s: os.path.exists(after) and os.path.getsize(after) > 0, 3)
        same = ok and open(before).read() == open(after).read()
        check(same, "the terminal settings are restored at exit")

        tmux.start("b", "NO_COLOR=1 %s -c %s/echo; echo EXIT=$?; sleep 30" % (WSCAT, url))
        ok, s = tmux.wait("b", lambda s: "Connected" in s)
        tmux.keys("b", "plain", literal=True)
        tmux.keys("b", "Enter")
        ok, s = tmux.wait("b", lambda s: "< plain" in s)
        col = tmux.screen("b", escapes=True)
        check(ok and "\x1b[3" not in col and "\x1b[0m" not in col,
              "NO_COLOR: no colours", repr(col))
        tmux.keys("b", "C-c")
        ok, s = tmux.wait("b", lambda s: "EXIT=" in s)
        check(ok and "EXIT=0" in s, "CTRL+C closes gracefully and exits 0", s)

        for name, key, status, what in (("c", "C-c", 0, "CTRL+C closes gracefully"),
                                        ("d", "C-\\", 130, "CTRL+\\ (SIGQUIT) ends at once")):
            ok, s, col, same = interrupted(tmux, tmp, name, url, key)
            check(ok and "EXIT=%d" % status in s and "\x1b[3" in col
                  and plain_at(col, "(EXIT=)") and same,
                  "%s (%d); the terminal's settings and default colour are back" % (what, status),
                  repr(col))
    finally:
        tmux.kill()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failures() else 0


if __name__ == "__main__":
    sys.exit(main())
