#!/usr/bin/python3
"""wsserve: the opening handshake (RFC 6455 4.2), plain HTTP on the WebSocket port, deadlines,
idle pings, IPv6 and graceful shutdown."""
# tests/run: alone (a peer must answer the idle pings in time)
import os
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wstest import Raw, Server, accept_key, done, frame, ok, request  # noqa: E402

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def answer(port, data, timeout=3):
    """Sends raw bytes, returns (status, headers, body)."""
    c = Raw(port, handshake=False, timeout=timeout)
    try:
        c.send(data)
        return c.read_http()
    finally:
        c.close()


def head(method="GET", version="1.1", host="Host: x\r\n", upgrade="Upgrade: websocket\r\n",
         connection="Connection: Upgrade\r\n", key=f"Sec-WebSocket-Key: {KEY}\r\n",
         ver="Sec-WebSocket-Version: 13\r\n", extra=""):
    return (f"{method} / HTTP/{version}\r\n{host}{upgrade}{connection}{key}{ver}{extra}\r\n").encode()


with Server("--echo", "--max-header", "4K", "--handshake-timeout", "2") as srv:
    st, h, _ = answer(srv.port, head())
    ok(st == 101 and h.get("sec-websocket-accept") == accept_key(KEY), "valid upgrade: 101 with the accept key")
    st, h, _ = answer(srv.port, head(upgrade="Upgrade: WebSocket\r\n",
                                     connection="Connection: keep-alive, Upgrade\r\n"))
    ok(st == 101, "Upgrade and Connection tokens compared case-insensitively in lists")
    for name, data, want in [
        ("no Host", head(host=""), 400),
        ("Connection without upgrade", head(connection="Connection: keep-alive\r\n"), 400),
        ("POST", head(method="POST"), 400),
        ("HTTP/1.0", head(version="1.0"), 400),
        ("no key", head(key=""), 400),
        ("key not 16 bytes", head(key="Sec-WebSocket-Key: c2hvcnQ=\r\n"), 400),
        ("malformed request line", b"GET\r\n\r\n", 400),
        ("header line without colon", b"GET / HTTP/1.1\r\nHost x\r\n\r\n", 400),
    ]:
        st, _, body = answer(srv.port, data)
        ok(st == want and body.strip(), f"{name}: {want} with a reason", f"{st} {body!r}")
    st, h, _ = answer(srv.port, head(ver="Sec-WebSocket-Version: 8\r\n"))
    ok(st == 426 and h.get("sec-websocket-version") == "13", "version 8: 426 naming version 13")
    st, h, _ = answer(srv.port, head(ver=""))
    ok(st == 426, "no version: 426")
    st, _, _ = answer(srv.port, head(extra="X-Big: " + "a" * 5000 + "\r\n"))
    ok(st == 431, "header block over --max-header: 431")
    st, _, _ = answer(srv.port, head(extra="".join(f"X-{i}: v\r\n" for i in range(80))))
    ok(st == 431, "too many header fields: 431")

    # A request that arrives one byte at a time.
    c = Raw(srv.port, handshake=False)
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for b in request() + frame(1, "after trickle"):
        c.send(bytes([b]))
    st, h = c.read_head()
    ok(st == 101 and c.recv_frame() == (True, 1, b"after trickle"), "request and frame one byte at a time")
    c.close()
    # Frames pipelined right behind the request, in the same packet.
    c = Raw(srv.port, handshake=False)
    c.send(request() + frame(1, "pipelined"))
    st, h = c.read_head()
    ok(st == 101 and c.recv_frame() == (True, 1, b"pipelined"), "frames in the same read as the request")
    c.close()

    # Plain HTTP: a page that says what this is, keep-alive for several requests.
    c = Raw(srv.port, handshake=False)
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n")
    s1, h1, b1 = c.read_http()
    s2, h2, b2 = c.read_http()
    ok(s1 == 200 and b"WebSocket" in b1 and s2 == 200, "plain GET answered with a page, keep-alive, pipelined")
    c.close()

    # Plain request bodies (RFC 9112 6.3): framed by Content-Length, here in pieces and with a
    # request pipelined right after (read as a request only if the body ended where it should).
    c = Raw(srv.port, handshake=False)
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    data = (b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\nGET / HTTP/1.1"
            b"GET /y HTTP/1.1\r\nHost: a\r\n\r\n")
    for i in range(0, len(data), 7):
        c.send(data[i:i + 7])
    s1, _, _ = c.read_http()
    s2, _, b2 = c.read_http()
    ok(s1 < 400 and s2 == 200 and b"WebSocket" in b2,
       "a Content-Length body in pieces, then a pipelined request", f"{s1} {s2}")
    c.close()
    for name, extra, want in [
        ("Transfer-Encoding", "Transfer-Encoding: chunked\r\n", 411),
        ("a Content-Length that is not a number", "Content-Length: 1x\r\n", 400),
        ("a signed Content-Length", "Content-Length: +1\r\n", 400),
        ("two different Content-Lengths", "Content-Length: 1\r\nContent-Length: 2\r\n", 400),
        ("a Content-Length over max_body", "Content-Length: 99999999999999999999999\r\n", 413),
    ]:
        st, _, body = answer(srv.port, f"POST / HTTP/1.1\r\nHost: a\r\n{extra}\r\n0\r\n\r\n".encode())
        ok(st == want and body.strip(), f"plain request with {name}: {want}", f"{st} {body!r}")

    # The handshake deadline counts from accept: a trickling client is dropped while others
    # are served.
    slow = Raw(srv.port, handshake=False)
    t0 = time.time()
    fast_ok = True
    closed = False
    while time.time() - t0 < 6:
        try:
            slow.send(b"X")
        except OSError:
            closed = True
            break
        c = Raw(srv.port)
        c.send(frame(1, "meanwhile"))
        fast_ok &= c.recv_frame() == (True, 1, b"meanwhile")
        c.close()
        slow.sock.settimeout(0.3)
        try:
            if slow.sock.recv(100) == b"":
                closed = True
                break
        except socket.timeout:
            pass
        except OSError:
            closed = True
            break
    elapsed = time.time() - t0
    ok(closed and 1.5 <= elapsed < 5, f"a trickling request is dropped at the handshake deadline ({elapsed:.1f}s)")
    ok(fast_ok, "other clients are served while one trickles")
    slow.close()

with Server("--echo", "--idle-timeout", "2") as srv:
    c = Raw(srv.port)
    t0 = time.time()
    c.sock.settimeout(5)
    fin, op, p = c.recv_frame()
    t1 = time.time() - t0
    ok(op == 9 and 0.5 <= t1 <= 2.5, f"idle socket pinged at half the idle timeout ({t1:.1f}s)")
    code = c.recv_close()
    t2 = time.time() - t0
    ok(code == 1001 and t2 <= 4.5 and c.eof(), f"silent socket closed with 1001 at the idle timeout ({t2:.1f}s)")
    c.close()
    c = Raw(srv.port)
    alive = True
    for _ in range(4):  # a client that answers pings stays
        c.sock.settimeout(3)
        fin, op, p = c.recv_frame()
        if op == 9:
            c.send(frame(10, p))
        else:
            alive = False
    c.send(frame(1, "still"))
    ok(alive and c.recv_frame() == (True, 1, b"still"), "a socket that answers pings is kept")
    c.close()

try:
    with Server("--echo", host="::1") as srv6:
        c = Raw(srv6.port, host="::1")
        c.send(frame(1, "v6"))
        ok(c.recv_frame() == (True, 1, b"v6"), "IPv6 listen address [::1]")
        c.close()
except (OSError, RuntimeError) as e:
    ok(False, "IPv6 listen address [::1]", repr(e))

# SIGINT: every client gets 1001, the server waits for the closing handshakes and exits 0.
srv = Server("--echo", "-v")
clients = [Raw(srv.port) for _ in range(5)]
srv.proc.send_signal(signal.SIGINT)
codes = [c.recv_close() for c in clients]
for c in clients:
    c.send(frame(8, b"\x03\xe9"))
rc = srv.stop(timeout=5)
ok(codes == [1001] * 5, "SIGINT sends 1001 to every client", repr(codes))
ok(rc == 0, "exit status 0 after a clean shutdown", f"rc={rc}")
ok(srv.stderr.count("closed 1001") == 5, "-v logs one line per close with its code", srv.stderr[-400:])
done()
