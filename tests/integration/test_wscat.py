#!/usr/bin/python3
"""wscat end to end: pipe mode, -x, --json, --hex, -v, --timing, --slash against `wsserve --echo`;
exit statuses against small hand-written servers that refuse, send garbage, close with error
codes or drop the connection; --proxy through an HTTP CONNECT proxy; --reconnect; -l.

Prints TAP lines.  Everything runs on 127.0.0.1 with ports picked by the kernel; every wait is
bounded and every process and thread started here is stopped before exit."""

import base64
import json
import os
import queue
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

BIN = os.environ.get("WSK_BIN", os.path.join(os.path.dirname(__file__), "..", "..", "bin"))
WSCAT = os.path.join(BIN, "wscat")
WSSERVE = os.path.join(BIN, "wsserve")

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wstest import Server, accept_key, describe, failures, free_port, run_cmd, skip  # noqa: E402
from wstest import wait_for as wait_until  # noqa: E402
from wstest import ok as check  # noqa: E402


def wscat(*args, stdin=b"", timeout=10, env=None):
    return run_cmd("wscat", *args, stdin=stdin, timeout=timeout, env=env)


# ----- a raw server with scripted behaviour ---------------------------------------------------

def read_head(c):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = c.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def accept_value(head):
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"sec-websocket-key:"):
            return accept_key(line.split(b":", 1)[1].strip().decode()).encode()
    return b""


def switching(head, extra=b""):
    return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept_value(head) + b"\r\n" + extra + b"\r\n")


def read_frame(c):
    """One client frame (masked): (opcode, payload), or None at EOF."""
    def exact(k):
        b = b""
        while len(b) < k:
            chunk = c.recv(k - len(b))
            if not chunk:
                return None
            b += chunk
        return b
    h = exact(2)
    if h is None:
        return None
    op, ln = h[0] & 15, h[1] & 127
    if ln == 126:
        ln = struct.unpack("!H", exact(2))[0]
    elif ln == 127:
        ln = struct.unpack("!Q", exact(8))[0]
    mask = exact(4) if h[1] & 128 else b"\0\0\0\0"
    data = exact(ln) or b""
    return op, bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def close_frame(code, reason=b""):
    payload = struct.pack("!H", code) + reason
    return bytes([0x88, len(payload)]) + payload


class RawServer:
    """Listens on 127.0.0.1:0 and runs behave(conn, request_head) for every connection."""

    def __init__(self, behave):
        self.behave = behave
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.stopping = False
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        while not self.stopping:
            r, _, _ = select.select([self.sock], [], [], 0.02)
            if not r:
                continue
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        try:
            c.settimeout(10)
            self.behave(c, read_head(c))
        except OSError:
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def stop(self):
        self.stopping = True
        self.thread.join(2)
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


def drain(c, seconds=5):
    end = time.monotonic() + seconds
    c.settimeout(0.2)
    while time.monotonic() < end:
        try:
            if not c.recv(4096):
                return
        except socket.timeout:
            continue


def answer_then_close(c, head, frames):
    """Upgrades, sends frames, then answers a close with a close and closes."""
    c.sendall(switching(head) + frames)
    while True:
        f = read_frame(c)
        if f is None:
            return
        if f[0] == 8:
            c.sendall(close_frame(1000))
            return


# ----- an HTTP CONNECT proxy -----------------------------------------------------------------

class Proxy:
    def __init__(self, refuse=False):
        self.refuse = refuse
        self.requests = []
        self.server = RawServer(self.tunnel)
        self.port = self.server.port

    def tunnel(self, c, head):
        line = head.split(b"\r\n", 1)[0].decode()
        self.requests.append(head.decode(errors="replace"))
        if self.refuse:
            c.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        host, port = line.split()[1].rsplit(":", 1)
        up = socket.create_connection((host.strip("[]"), int(port)), timeout=5)
        c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        socks = [c, up]
        try:
            while True:
                r, _, _ = select.select(socks, [], [], 5)
                if not r:
                    return
                for s in r:
                    data = s.recv(65536)
                    if not data:
                        return
                    (up if s is c else c).sendall(data)
        finally:
            up.close()

    def stop(self):
        self.server.stop()


# ----- wsserve -------------------------------------------------------------------------------

# ----- the tests -----------------------------------------------------------------------------

def test_usage():
    r = wscat("--no-such-option")
    check(r[0] == 1 and "--help" in r[2], "an unknown option is a usage error (1)", describe(r))
    r = wscat()
    check(r[0] == 1, "no URL is a usage error (1)", describe(r))
    r = wscat("-c", "ws://exa mple/")
    check(r[0] == 1 and "invalid URL" in r[2] and r[2].count("\n") == 1,
          "an invalid URL: one line, status 1", describe(r))
    r = wscat("-c", "ftp://127.0.0.1/")
    check(r[0] == 1, "an unsupported scheme is refused (1)", describe(r))
    r = wscat("-c", "ws://127.0.0.1:1/", "-H", "no colon here")
    check(r[0] == 1 and "-H" in r[2], "a malformed -H header is refused (1)", describe(r))
    r = wscat("-c", "wss://127.0.0.1:1/", "--key", "client.key")
    check(r[0] == 1 and "--key needs --cert" in r[2], "--key without --cert is a usage error (1), "
          "as in wspub and wsbench (--cert alone: the key is in its file)", describe(r))
    r = wscat("--version")
    check(r[0] == 0 and re.match(r"wscat \d+\.\d+\.\d+", r[1]), "--version", describe(r))
    r = wscat("--help")
    check(r[0] == 0 and "Exit status" in r[1] and "--json" in r[1], "--help lists options and "
          "exit statuses", describe(r))


def test_refused():
    port = free_port()
    r = wscat("-c", "ws://127.0.0.1:%d/" % port, stdin=b"hi\n")
    check(r[0] == 2 and "refused" in r[2] and r[2].count("\n") == 1 and r[1] == "",
          "a refused connection: one line, status 2", describe(r))


def test_echo(port):
    url = "ws://127.0.0.1:%d/" % port
    r = wscat("-c", url, stdin=b"hello\nworld\n\nlast line without newline")
    check(r[0] == 0 and r[1] == "hello\nworld\n\nlast line without newline\n" and r[2] == "",
          "pipe mode: each line one message, echoed on stdout, status 0", describe(r))
    r = wscat("-c", url, stdin=b"")
    check(r[0] == 0 and r[1] == "", "empty input: close 1000, status 0", describe(r))
    big = "x" * 200000
    r = wscat("-c", url, stdin=(big + "\n").encode())
    check(r[0] == 0 and r[1] == big + "\n", "a 200 kB line goes out as one message", describe(r)[:300])
    r = wscat("-c", url, stdin=b"crlf\r\n")
    check(r[0] == 0 and r[1] == "crlf\n", "CR LF line ends are stripped", describe(r))
    r = wscat("-c", url, "-x", "one", "-x", "two", "-w", "0.2")
    check(r[0] == 0 and r[1] == "one\ntwo\n", "-x sends each message, waits, closes", describe(r))
    r = wscat("-c", url, "-b", "--hex", stdin=b"AB\n")
    check(r[0] == 0 and r[1] == "4142\n", "-b sends binary, --hex shows it in hex", describe(r))
    r = wscat("-c", url, "-b", stdin=b"raw\n")
    check(r[0] == 0 and r[1] == "raw\n", "binary messages are written raw without --hex",
          describe(r))
    r = wscat("-c", url, "--json", "-x", "caf\u00e9", "-w", "0.1")
    events = [json.loads(line) for line in r[1].splitlines()] if r[0] == 0 else []
    types = [e.get("type") for e in events]
    check(types == ["open", "message", "close"] and events[1]["data"] == "caf\u00e9"
          and events[2]["code"] == 1000 and all("time" in e for e in events)
          and events[0]["status"] == 101,
          "--json: open, message, close objects with times", describe(r))
    r = wscat("-c", url, "--json", "-b", "-x", "bin", "-w", "0.1")
    events = [json.loads(line) for line in r[1].splitlines()] if r[0] == 0 else []
    check(len(events) == 3 and events[1].get("binary") is True
          and base64.b64decode(events[1]["data"]) == b"bin",
          "--json: binary messages as base64", describe(r))
    r = wscat("-c", url, "-v", "-x", "v", "-w", "0.1")
    check(r[0] == 0 and r[1] == "v\n" and "> GET / HTTP/1.1" in r[2]
          and "< HTTP/1.1 101 Switching Protocols" in r[2] and "Sec-WebSocket-Accept" in r[2]
          and "> close 1000" in r[2],
          "-v: the handshake and control frames on stderr, messages alone on stdout", describe(r))
    r = wscat("-c", url, "--timing", "-x", "t", "-w", "0")
    check(r[0] == 0 and all(k in r[2] for k in ("time_namelookup", "time_connect",
                                                  "time_upgrade", "time_firstmessage",
                                                  "time_total")),
          "--timing prints the phases", describe(r))
    r = wscat("-c", url, "-T", "-x", "stamped", "-w", "0")
    check(r[0] == 0 and re.fullmatch(r"\[\d\d:\d\d:\d\d\.\d\d\d\] stamped\n", r[1]),
          "-T prefixes messages with the time", describe(r))
    r = wscat("-c", url, "--slash", "-P", stdin=b"/ping abc\n//literal\n", timeout=10)
    check(r[0] == 0 and '< pong "abc"' in r[2] and r[1] == "/literal\n",
          "--slash: /ping gets a pong (-P shows it); // sends a literal /", describe(r))
    r = wscat("-c", url, "--slash", stdin=b"/close 4001 done\nnot sent\n")
    check(r[0] == 0 and r[1] == "", "/close CODE REASON closes; our own close exits 0",
          describe(r))
    r = wscat("-c", url, "--slash", stdin=b"/close 1006\n")
    check("invalid close code" in r[2], "/close refuses codes that may not be sent", describe(r))
    r = wscat("-c", url, "--slash", stdin=b"/close 4001 \xff\n")
    check("close reasons are UTF-8" in r[2], "/close refuses a reason that is not UTF-8",
          describe(r))
    r = wscat("-c", url, "--ping-interval", "0.1", "-v", "-x", "p", "-w", "0.35")
    check(r[0] == 0 and r[2].count("< pong") >= 2, "--ping-interval pings (pongs seen with -v)",
          describe(r))
    env = dict(os.environ, NO_COLOR="1")
    r = wscat("-c", url, "-v", "-x", "c", "-w", "0", env=env)
    check(r[0] == 0 and "\x1b[" not in r[1] + r[2], "no colours when not a terminal",
          describe(r))


def test_statuses():
    def served(behave, *args, stdin=b"hi\n", timeout=10):
        s = RawServer(behave)
        try:
            return wscat("-c", "ws://127.0.0.1:%d/" % s.port, *args, stdin=stdin,
                         timeout=timeout)
        finally:
            s.stop()

    r = served(lambda c, h: c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                      b"Content-Length: 13\r\n\r\nnot a socket\n"))
    check(r[0] == 3 and "200 OK" in r[2] and "not a socket" in r[2] and r[1] == "",
          "200 instead of 101: status and body on stderr, status 3", describe(r))

    def refuse_chunked(c, h):
        c.sendall(b"HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"4\r\nwho \r\n8\r\nare you?\r\n0\r\n\r\n")
        drain(c)
    r = served(refuse_chunked)
    check(r[0] == 3 and "401" in r[2] and "who are you?" in r[2],
          "a chunked refusal body is decoded", describe(r))

    def trickle(c, data, step):
        # Separate segments, so that the client reads the body in pieces (coalesced reads
        # would still pass, covering less).
        for i in range(0, len(data), step):
            time.sleep(0.005)
            c.sendall(data[i:i + step])

    def refuse_chunked_pieces(c, h):
        c.sendall(b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n6\r")
        trickle(c, b"\nnot yo\r\n9;x=1\r\nu, go awa\r\n1\r\ny\r\n0\r\nX-T: 1\r\n\r\n", 3)
        drain(c)
    r = served(refuse_chunked_pieces)
    check(r[0] == 3 and "403" in r[2] and "not you, go away" in r[2] and "X-T" not in r[2],
          "a chunked refusal body arriving in pieces is decoded across reads", describe(r))

    def refuse_length_pieces(c, h):
        c.sendall(b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 16\r\n\r\nslow")
        trickle(c, b" down please, NOT BODY", 5)
        drain(c)
    r = served(refuse_length_pieces)
    check(r[0] == 3 and "slow down please" in r[2] and "NOT BODY" not in r[2],
          "a refusal body in pieces ends at its Content-Length", describe(r))

    page = b"".join(b"<p>line %04d of a long error page</p>\n" % i for i in range(400))
    r = served(lambda c, h: c.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n"
                                      % len(page) + page))
    shown = page.rstrip(b"\n")
    check(r[0] == 3 and "line 0000" in r[2] and "line 0399" not in r[2]
          and "... %d more bytes" % (len(shown) - 1024) in r[2] and len(r[2]) < 2000,
          "a long refusal body: its first 1024 bytes, then how many more", describe(r)[:600])

    def refuse_eof(c, h):
        c.sendall(b"HTTP/1.0 503 Service Unavailable\r\n\r\ntry later\n")
    r = served(refuse_eof)
    check(r[0] == 3 and "503" in r[2] and "try later" in r[2],
          "a refusal body that ends with the connection", describe(r))

    r = served(lambda c, h: (c.sendall(b"\x00\x01 garbage \xff\r\n\r\n"), drain(c)))
    check(r[0] == 4 and r[2].count("\n") == 1, "garbage instead of HTTP: one line, status 4",
          describe(r))
    r = served(lambda c, h: (c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket"
                                       b"\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "
                                       b"AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n"), drain(c)))
    check(r[0] == 4 and "Sec-WebSocket-Accept" in r[2], "a wrong Sec-WebSocket-Accept: status 4",
          describe(r))
    r = served(lambda c, h: (c.sendall(switching(h, b"Sec-WebSocket-Extensions: x-foo\r\n")),
                             drain(c)))
    check(r[0] == 4 and "extension" in r[2], "an extension we did not offer: status 4",
          describe(r))
    r = served(lambda c, h: (c.sendall(switching(h, b"Sec-WebSocket-Protocol: other\r\n")),
                             drain(c)), "-s", "mine")
    check(r[0] == 4 and "subprotocol" in r[2], "a subprotocol we did not offer: status 4",
          describe(r))
    r = served(lambda c, h: (c.sendall(switching(h) + b"\x81\x82\0\0\0\0hi"), drain(c)))
    check(r[0] == 4 and "masked" in r[2], "a masked frame from the server: status 4", describe(r))
    r = served(lambda c, h: answer_then_close(c, h, b"\x81\x02hi" + close_frame(1011, b"oops")))
    check(r[0] == 4 and r[1] == "hi\n" and "1011" in r[2] and "oops" in r[2],
          "the server closes with 1011: status 4, code and reason shown", describe(r))
    r = served(lambda c, h: answer_then_close(c, h, close_frame(1001, b"bye")), stdin=None)
    check(r[0] == 0, "the server closes with 1001: status 0", describe(r))

    def drop(c, h):
        c.sendall(switching(h) + b"\x81\x02hi")
        time.sleep(0.2)
        c.shutdown(socket.SHUT_RDWR)
    r = served(drop, stdin=None, timeout=10)
    check(r[0] == 5 and "1006" in r[2], "dropped without a close frame: status 5", describe(r))

    def no_close(c, h):
        c.sendall(switching(h))
        drain(c, 8)
    r = served(no_close, "-w", "0.5")
    check(r[0] == 5 and r[3] < 5 and "no close frame" in r[2],
          "a server that never answers our close: status 5, bounded", describe(r))

    r = served(lambda c, h: drain(c, 8), "--connect-timeout", "0.5")
    check(r[0] == 2 and r[3] < 4 and "after" in r[2],
          "no answer to the upgrade: --connect-timeout, status 2", describe(r))
    r = served(lambda c, h: None)
    check(r[0] == 2 and "before the server answered" in r[2],
          "the server hangs up at once: status 2", describe(r))


def test_verbose_failures(port):
    """-v and --timing say what happened, once and in order; steps never reached say so."""
    r = wscat("-v", "--timing", "-c", "wss://127.0.0.1:%d/" % port)
    check(r[0] == 6 and r[2].count("TLS handshake failed") == 1 and "> GET" not in r[2]
          and re.search(r"time_upgrade:\s+\(not reached\)", r[2])
          and re.search(r"time_appconnect:\s+\(not completed\)", r[2])
          and "0.000000s" not in r[2],
          "-v over TLS to a plain port: the error once, no request that was never sent, "
          "unreached steps say so", describe(r))
    r = wscat("-v", "--timing", "-c", "ws://127.0.0.1:%d/" % free_port())
    check(r[0] == 2 and r[2].count("refused") == 1
          and re.search(r"time_connect:\s+\(not reached\)", r[2])
          and re.search(r"time_appconnect:\s+\(no TLS\)", r[2]) and "0.000000s" not in r[2],
          "-v --timing, connection refused: the error once, unreached steps say so", describe(r))
    r = wscat("--json", "--timing", "-c", "ws://127.0.0.1:%d/" % free_port())
    ev = [json.loads(line) for line in r[1].splitlines() if line.startswith("{")]
    t = [e for e in ev if e.get("type") == "timing"]
    check(t and t[0]["connect"] is None and t[0]["upgrade"] is None and t[0]["dns"] > 0,
          "--json --timing: null for the steps not reached", describe(r))

    def refuse(c, head):
        c.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\nnope")
    s = RawServer(refuse)
    try:
        r = wscat("-v", "-c", "ws://127.0.0.1:%d/" % s.port)
    finally:
        s.stop()
    at = [r[2].find(x) for x in ("wscat: connected to 127.0.0.1:", "> GET / HTTP/1.1",
                                 "< HTTP/1.1 403", "wscat: server answered")]
    check(r[0] == 3 and -1 not in at and at == sorted(at)
          and r[2].count("server answered 403") == 1,
          "-v, a refusal: connected, request, response, then the error, once", describe(r))


def test_proxy(port):
    p = Proxy()
    try:
        r = wscat("--proxy", "http://u:p@127.0.0.1:%d" % p.port, "-c",
                  "ws://127.0.0.1:%d/via" % port, stdin=b"tunnelled\n")
        head = p.requests[0] if p.requests else ""
        check(r[0] == 0 and r[1] == "tunnelled\n"
              and head.startswith("CONNECT 127.0.0.1:%d HTTP/1.1\r\n" % port)
              and "Proxy-Authorization: Basic " + base64.b64encode(b"u:p").decode() in head,
              "--proxy tunnels through HTTP CONNECT (with the proxy URL's credentials)",
              describe(r) + "\n" + head)
    finally:
        p.stop()
    p = Proxy()
    try:
        user, pw = "u" * 200, "p%40" * 100  # 400 bytes in the URL, 300 decoded ("p@" ...)
        r = wscat("--proxy", "http://%s:%s@127.0.0.1:%d" % (user, pw, p.port), "-c",
                  "ws://127.0.0.1:%d/" % port, stdin=b"long\n")
        head = p.requests[0] if p.requests else ""
        want = base64.b64encode(("%s:%s" % (user, "p@" * 100)).encode()).decode()
        check(r[0] == 0 and r[1] == "long\n" and "Proxy-Authorization: Basic " + want in head,
              "--proxy: credentials over 255 bytes are sent whole", describe(r) + "\n" + head)
    finally:
        p.stop()
    p = Proxy(refuse=True)
    try:
        r = wscat("--proxy", "http://127.0.0.1:%d" % p.port, "-c", "ws://127.0.0.1:%d/" % port,
                  stdin=b"x\n")
        check(r[0] == 2 and "proxy refused CONNECT" in r[2], "a proxy refusal: status 2",
              describe(r))
    finally:
        p.stop()


def test_reconnect():
    seen = []

    def once(c, h):
        c.sendall(switching(h))
        f = read_frame(c)
        if f:
            seen.append(f[1])
        c.sendall(close_frame(1000, b"come again"))
        c.settimeout(1)
        read_frame(c)  # the client's answer; then the server closes first (RFC 6455 7.1.1)
    s = RawServer(once)
    p = subprocess.Popen([WSCAT, "-c", "ws://127.0.0.1:%d/" % s.port, "-x", "again",
                          "--reconnect", "-w", "5"], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_until(lambda: len(seen) >= 3, 6)
    p.send_signal(signal.SIGINT)
    try:
        out, err = p.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    s.stop()
    check(len(seen) >= 3 and all(m == b"again" for m in seen) and b"reconnecting in" in err,
          "--reconnect reconnects with backoff and sends -x again", "seen %r\nstderr %r"
          % (seen, err))


def test_listen():
    p = subprocess.Popen([WSCAT, "-l", "127.0.0.1:0", "-v"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(("out", l)) for l in p.stdout], daemon=True).start()
    threading.Thread(target=lambda: [lines.put(("err", l)) for l in p.stderr], daemon=True).start()

    def wait_for(pattern, seconds=15):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                src, line = lines.get(timeout=0.1)
            except queue.Empty:
                continue
            m = re.search(pattern, line.decode(errors="replace"))
            if m:
                return src, m
        return None, None

    ok = False
    detail = ""
    try:
        _, m = wait_for(r"Listening on port (\d+)")
        if not m:
            detail = "no listening line"
            raise RuntimeError
        c = socket.create_connection(("127.0.0.1", int(m.group(1))), timeout=5)
        key = base64.b64encode(os.urandom(16))
        c.sendall(b"GET /l HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + b"\r\n\r\n")
        head = read_head(c)
        mask = b"\x01\x02\x03\x04"
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(b"from client"))
        c.sendall(b"\x81\x8b" + mask + payload)
        src, m = wait_for(r"^from client$")
        p.stdin.write(b"from wscat\n")
        p.stdin.flush()
        c.settimeout(5)
        frame = c.recv(64)
        p.stdin.close()
        rest = c.recv(64)
        ok = (head.startswith(b"HTTP/1.1 101") and src == "out"
              and frame == b"\x81\x0afrom wscat" and rest[:1] == b"\x88"
              and struct.unpack("!H", rest[2:4])[0] == 1001)
        detail = "head %r frame %r close %r" % (head[:40], frame, rest)
        c.close()
        p.wait(timeout=5)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        detail += " %r" % e
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    check(ok and p.returncode == 0, "-l: prints what a client sends, sends it typed lines, "
          "closes with 1001 at the end of input", detail)


def main():
    if not os.access(WSCAT, os.X_OK):
        print("not ok 1 - %s is not built" % WSCAT)
        return 1
    test_usage()
    test_refused()
    test_statuses()
    test_reconnect()
    test_listen()
    if not os.access(WSSERVE, os.X_OK):
        skip("wscat against wsserve --echo", "bin/wsserve is not built")
        return 1 if failures() else 0
    with Server("--echo") as srv:
        test_echo(srv.port)
        test_proxy(srv.port)
        test_verbose_failures(srv.port)
    return 1 if failures() else 0


if __name__ == "__main__":
    sys.exit(main())
