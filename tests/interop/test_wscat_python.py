#!/usr/bin/python3
"""wscat against the Python `websockets` server (Debian's python3-websockets): what the server
observes of wscat's handshake (custom headers, Origin, Basic auth from --auth and from the URL,
--host, path and query, subprotocol negotiation), redirects with and without -L, a refused
handshake, close codes chosen by the server, and IPv6.

Prints TAP lines.  The server runs in a thread of this process on 127.0.0.1 (and ::1) with a port
picked by the kernel; every wait is bounded."""

import base64
import http
import json
import os
import sys

import websockets

BIN = os.environ.get("WSK_BIN", os.path.join(os.path.dirname(__file__), "..", "..", "bin"))
WSCAT = os.path.join(BIN, "wscat")

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wstest import PyServer, describe, failures, run_cmd, skip  # noqa: E402
from wstest import ok as check  # noqa: E402


def wscat(*args, stdin=b"", timeout=10, env=None):
    return run_cmd("wscat", *args, stdin=stdin, timeout=timeout, env=env)


class Server(PyServer):
    """The websockets server, recording every request it sees."""

    def __init__(self, host="127.0.0.1"):
        self.requests = []   # (path, headers) in arrival order
        self.opened = []     # (path, negotiated subprotocol)
        super().__init__(self.handler, host, process_request=self.process_request,
                         subprotocols=["chat.v2", "chat"])

    async def process_request(self, path, headers):
        self.requests.append((path, headers))
        if path.startswith("/redirect-abs"):
            return (http.HTTPStatus.FOUND, [("Location", self.url("/echo?from=abs"))], b"")
        if path.startswith("/r/redirect-rel"):
            return (http.HTTPStatus.TEMPORARY_REDIRECT, [("Location", "echo?from=rel")], b"")
        if path.startswith("/a/b/redirect-up"):
            return (http.HTTPStatus.FOUND, [("Location", "../../echo?from=up")], b"")
        if path.startswith("/loop"):
            return (http.HTTPStatus.FOUND, [("Location", "/loop")], b"")
        if path.startswith("/forbidden"):
            return (http.HTTPStatus.FORBIDDEN, [("Content-Type", "text/plain")],
                    b"go away: no token\n")
        return None

    async def handler(self, ws, path):
        self.opened.append((path, ws.subprotocol))
        try:
            if path.startswith("/close4000"):
                await ws.close(4000, "application says no")
            elif path.startswith("/close1001"):
                await ws.close(1001, "restarting")
            else:
                async for m in ws:
                    await ws.send(m)
        except websockets.ConnectionClosed:
            pass

    def header(self, i, name):
        return self.requests[i][1].get(name) if i < len(self.requests) else None


def test_headers(s):
    s.requests.clear()
    r = wscat("-c", s.url("/echo?x=1&y=two"), "-H", "X-Test: yes", "-H", "X-Other:  2 ",
              "-o", "https://origin.example", "--auth", "user:pa:ss", "-x", "hi", "-w", "0.3")
    ok = r[0] == 0 and r[1] == "hi\n" and len(s.requests) == 1
    path = s.requests[0][0] if s.requests else None
    check(ok and path == "/echo?x=1&y=two", "the server sees the path and query", describe(r))
    check(ok and s.header(0, "X-Test") == "yes" and s.header(0, "X-Other") == "2",
          "-H headers reach the server", describe(r))
    check(ok and s.header(0, "Origin") == "https://origin.example", "-o sends Origin",
          describe(r))
    check(ok and s.header(0, "Authorization") == "Basic " + base64.b64encode(b"user:pa:ss")
          .decode(), "--auth sends Basic credentials", describe(r))
    check(ok and s.header(0, "Host") == "127.0.0.1:%d" % s.port and
          s.header(0, "Sec-WebSocket-Version") == "13" and len(s.header(0, "Sec-WebSocket-Key")
                                                                or "") == 24,
          "Host, version and a 16-byte key", describe(r))

    s.requests.clear()
    r = wscat("-c", s.url("/echo").replace("ws://", "ws://alice:s%40cret@"), "-x", "u", "-w",
              "0.3")
    check(r[0] == 0 and s.header(0, "Authorization") == "Basic " +
          base64.b64encode(b"alice:s@cret").decode(),
          "user info in the URL becomes (percent-decoded) Basic credentials", describe(r))

    s.requests.clear()
    r = wscat("-c", s.url("/echo"), "--host", "example.test:8080", "-x", "h", "-w", "0.3")
    check(r[0] == 0 and s.header(0, "Host") == "example.test:8080", "--host replaces Host",
          describe(r))

    keys = set()
    for _ in range(3):
        s.requests.clear()
        wscat("-c", s.url("/echo"), "-x", "k", "-w", "0")
        keys.add(s.header(0, "Sec-WebSocket-Key"))
    check(len(keys) == 3, "a fresh Sec-WebSocket-Key each time", repr(keys))


def test_subprotocols(s):
    s.opened.clear()
    s.requests.clear()
    r = wscat("-c", s.url("/echo"), "-s", "nope", "-s", "chat", "--json", "-x", "p", "-w", "0.3")
    events = [json.loads(line) for line in r[1].splitlines()] if r[0] == 0 else []
    check(s.header(0, "Sec-WebSocket-Protocol") == "nope, chat",
          "-s offers every subprotocol in order", describe(r))
    check(events and events[0]["type"] == "open" and events[0]["protocol"] == "chat"
          and s.opened and s.opened[0][1] == "chat",
          "the subprotocol the server chose is reported", describe(r))
    s.opened.clear()
    r = wscat("-c", s.url("/echo"), "-s", "nope", "-x", "p", "-w", "0.3")
    check(r[0] == 0 and s.opened and s.opened[0][1] is None,
          "no common subprotocol: the connection still opens without one", describe(r))


def test_redirects(s):
    r = wscat("-c", s.url("/redirect-abs"), stdin=b"x\n")
    check(r[0] == 3 and "302" in r[2] and "Location: " + s.url("/echo?from=abs") in r[2],
          "a redirect without -L: status 3, the Location shown", describe(r))
    s.requests.clear()
    r = wscat("-L", "-c", s.url("/redirect-abs"), "--auth", "a:b", "-w", "0.3",
              stdin=b"followed\n")
    paths = [p for p, _ in s.requests]
    check(r[0] == 0 and r[1] == "followed\n" and paths == ["/redirect-abs", "/echo?from=abs"],
          "-L follows an absolute Location", describe(r) + "\n%r" % paths)
    check(s.header(1, "Authorization") is not None, "credentials follow a redirect to the "
          "same host", describe(r))
    s.requests.clear()
    r = wscat("-L", "-c", s.url("/r/redirect-rel"), "-w", "0.3", stdin=b"relative\n")
    paths = [p for p, _ in s.requests]
    check(r[0] == 0 and r[1] == "relative\n" and paths == ["/r/redirect-rel", "/r/echo?from=rel"],
          "-L resolves a relative Location against the request path", describe(r) + "\n%r"
          % paths)
    s.requests.clear()
    r = wscat("-L", "-c", s.url("/a/b/redirect-up"), "-w", "0.3", stdin=b"up\n")
    paths = [p for p, _ in s.requests]
    check(r[0] == 0 and r[1] == "up\n" and paths == ["/a/b/redirect-up", "/echo?from=up"],
          "-L: a relative Location with ../ is normalised (RFC 3986 5.2.4)",
          describe(r) + "\n%r" % paths)
    s.requests.clear()
    r = wscat("-L", "--max-redirects", "2", "-c", s.url("/loop"), stdin=b"x\n")
    check(r[0] == 3 and "too many redirects" in r[2] and len(s.requests) == 3,
          "--max-redirects bounds a redirect loop", describe(r) + "\n%d requests"
          % len(s.requests))


def test_refusal(s):
    r = wscat("-c", s.url("/forbidden"), stdin=b"x\n")
    check(r[0] == 3 and "403 Forbidden" in r[2] and "go away: no token" in r[2] and r[1] == "",
          "a refused handshake: status 3 with the HTTP status and body", describe(r))
    r = wscat("-c", s.url("/forbidden"), "--json", stdin=b"x\n")
    events = [json.loads(line) for line in r[1].splitlines()] if r[1] else []
    check(r[0] == 3 and events and events[0]["type"] == "error" and events[0]["status"] == 403
          and events[0]["error"] == "handshake" and "go away" in events[0].get("body", ""),
          "--json reports the refusal with status and body", describe(r))


def test_closes(s):
    r = wscat("-c", s.url("/close4000"), stdin=None)
    check(r[0] == 4 and "4000" in r[2] and "application says no" in r[2],
          "the server closes with 4000: status 4", describe(r))
    r = wscat("-c", s.url("/close1001"), stdin=None)
    check(r[0] == 0, "the server closes with 1001: status 0", describe(r))
    r = wscat("-c", s.url("/echo"), "-w", "0.5", stdin=b"one\ntwo\n")
    check(r[0] == 0 and r[1] == "one\ntwo\n",
          "-w keeps listening after the end of input for an asynchronous server", describe(r))


def test_ipv6():
    try:
        s = Server("::1")
    except OSError as e:
        skip("IPv6 literal URL", "no ::1: %s" % e)
        return
    if s.error is not None:
        skip("IPv6 literal URL", "no ::1: %s" % s.error)
        return
    try:
        r = wscat("-c", s.url("/echo"), "-x", "six", "-w", "0.3")
        check(r[0] == 0 and r[1] == "six\n" and s.header(0, "Host") == "[::1]:%d" % s.port,
              "an IPv6 literal in brackets (and the Host header keeps them)", describe(r))
    finally:
        s.stop()


def main():
    if not os.access(WSCAT, os.X_OK):
        print("not ok 1 - %s is not built" % WSCAT)
        return 1
    s = Server()
    if s.error is not None:
        print("not ok 1 - the websockets server starts: %s" % s.error)
        return 1
    try:
        test_headers(s)
        test_subprotocols(s)
        test_redirects(s)
        test_refusal(s)
        test_closes(s)
    finally:
        s.stop()
    test_ipv6()
    return 1 if failures() else 0


if __name__ == "__main__":
    sys.exit(main())
