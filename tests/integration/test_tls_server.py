#!/usr/bin/python3
"""wss:// served by wsserve, with Python's websockets (OpenSSL) as the TLS client.

Echo over TLS 1.2 with a modern suite and ALPN http/1.1, by name and by address, large and
many small messages, concurrent clients; an encrypted server key; clients refused for weak
suites or old protocol versions; client certificates required, missing and from another CA;
plaintext HTTP, garbage, a client that connects and leaves, and a stalled handshake each
costing the server one log line and nothing else.  Certificates come from scripts/mkcerts."""
import asyncio
import os
import socket
import ssl
import struct
import subprocess
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from wstest import BIN, Certs, Server, done, ok, sanitized, skip, wait_for  # noqa: E402
from wstest import tls_client_ctx as client_ctx  # noqa: E402

import websockets  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)  # ssl.TLSVersion.TLSv1, TLSv1_1


# Seconds wsserve gives a TLS handshake: under valgrind twenty of them queue up for longer.
HANDSHAKE = 8 if sanitized() else 2


def connect(url, ctx, **kw):
    """websockets.connect over TLS; handshakes queue up behind each other in a server under
    valgrind, so the bound on opening is wider there."""
    return websockets.connect(url, ssl=ctx, open_timeout=40 if sanitized() else 10, **kw)


class TLSServer(Server):
    """wsserve over TLS; the log lines of one peer can be picked out."""

    def url(self, path="/", host="localhost"):
        return f"wss://{host}:{self.port}{path}"

    def peer_lines(self, local_port, needle=None, timeout=4.0, since=0):
        """The log lines about the client whose local port is local_port, from line `since` on
        (an earlier client may have had the same port: a reset leaves no TIME_WAIT); with
        needle, first waits (bounded) until one of them contains it."""
        tag = f"127.0.0.1:{local_port}:"
        if needle:
            wait_for(lambda: any(needle in x for x in self.lines[since:] if tag in x), timeout)
        return [x for x in list(self.lines)[since:] if tag in x]


async def echo_checks(srv, certs):
    ctx = client_ctx(certs)
    async with connect(srv.url(), ctx, max_size=None) as ws:
        sslobj = ws.transport.get_extra_info("ssl_object")
        ok(sslobj.version() == "TLSv1.2", "TLS 1.2 negotiated", sslobj.version())
        cipher = sslobj.cipher()[0]
        ok(cipher.startswith("ECDHE") and ("GCM" in cipher or "CHACHA20" in cipher),
           "an ECDHE + AEAD cipher suite", cipher)
        ok(sslobj.selected_alpn_protocol() == "http/1.1", "ALPN http/1.1",
           str(sslobj.selected_alpn_protocol()))
        await ws.send("hello over TLS")
        ok(await ws.recv() == "hello over TLS", "text echo over wss://")
        data = os.urandom(70000)
        await ws.send(data)
        ok(await ws.recv() == data, "binary echo over wss://")
        big = os.urandom(4 << 20)
        await ws.send(big)
        ok(await ws.recv() == big, "4 MiB echo over wss://")
        for i in range(2000):
            await ws.send(f"small {i}")
        got = [await ws.recv() for _ in range(2000)]
        ok(got == [f"small {i}" for i in range(2000)], "2000 small messages echoed in order")

    async with connect(srv.url(host="127.0.0.1"), ctx) as ws:
        await ws.send("by address")
        ok(await ws.recv() == "by address", "wss://127.0.0.1 (the certificate names the address)")

    async def one(i):
        async with connect(srv.url(), ctx) as ws:
            for j in range(50):
                await ws.send(f"{i}:{j}")
                if await ws.recv() != f"{i}:{j}":
                    return False
            return True

    results = await asyncio.gather(*(one(i) for i in range(20)))
    ok(all(results), "20 concurrent TLS clients, 50 echoes each")


def raw_probe(srv, data, timeout=5.0):
    """Sends data to the TLS port; (closed by the server?, local port, seconds until closed).
    srv.probe_from is the first log line that can be about this probe."""
    srv.probe_from = len(srv.lines)
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=timeout)
    port = s.getsockname()[1]
    t0 = time.time()
    closed = False
    try:
        if data:
            s.sendall(data)
        while True:
            if not s.recv(4096):
                closed = True
                break
    except (ConnectionResetError, BrokenPipeError):
        closed = True
    except socket.timeout:
        pass
    s.close()
    return closed, port, time.time() - t0


def tls_probe(srv, configure):
    """A TLS handshake with a context set up by configure(ctx); (error or None, local port)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    configure(ctx)
    srv.probe_from = len(srv.lines)
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    port = s.getsockname()[1]
    try:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            t.do_handshake()
        return None, port
    except (ssl.SSLError, OSError) as e:
        return e, port
    finally:
        s.close()


def page_checks(srv, certs):
    """The page a browser gets at https://HOST:PORT/ tells it to connect with wss://."""
    ctx = client_ctx(certs)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            t.sendall(f"GET / HTTP/1.1\r\nHost: localhost:{srv.port}\r\n"
                      "Connection: close\r\n\r\n".encode())
            data = b""
            while True:
                chunk = t.recv(4096)
                if not chunk:
                    break
                data += chunk
    page = data.decode(errors="replace")
    ok(page.startswith("HTTP/1.1 200") and f"wscat -c wss://localhost:{srv.port}/" in page and
       "ws://" not in page, "the page served over TLS suggests wss://", page)


def one_line(srv, port, needle, what):
    lines = srv.peer_lines(port, needle=needle, since=srv.probe_from)
    ok(len(lines) == 1 and needle in lines[0], f"{what}: one log line", repr(lines))


def bad_clients(srv):
    closed, port, _ = raw_probe(srv, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    ok(closed, "plaintext HTTP to the TLS port: connection closed")
    one_line(srv, port, "TLS handshake failed: plaintext HTTP on a TLS port", "plaintext HTTP")

    closed, port, _ = raw_probe(srv, b"\x07" + os.urandom(500))
    ok(closed, "garbage to the TLS port: connection closed")
    one_line(srv, port, "TLS handshake failed: not TLS", "garbage")

    closed, port, _ = raw_probe(srv, b"")
    lines = srv.peer_lines(port, needle="TLS handshake failed")
    ok(len(lines) <= 1, "a client that connects and leaves: at most one log line", repr(lines))

    # A client that resets the connection before the server reads its bytes: the address is
    # gone from the socket by the time the failure is logged, and the line still names it.
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    port = s.getsockname()[1]
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.sendall(b"\x07" + os.urandom(100))
    s.close()
    lines = srv.peer_lines(port, needle="TLS handshake failed")
    ok(len(lines) == 1 and "TLS handshake failed" in lines[0],
       "a client that resets: the log line names its address",
       repr([x for x in srv.lines if "TLS handshake failed" in x][-3:]))

    # The first bytes of a ClientHello record, then silence: --handshake-timeout HANDSHAKE.
    closed, port, secs = raw_probe(srv, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc",
                                   timeout=HANDSHAKE + 6)
    ok(closed and secs < HANDSHAKE + 2.5, f"stalled handshake closed by the deadline ({secs:.1f}s)")
    one_line(srv, port, "handshake timed out", "stalled handshake")

    def weak(ctx):
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers("ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:AES128-SHA:AES256-SHA")
    err, port = tls_probe(srv, weak)
    ok(err is not None, "a client with only CBC suites is refused", str(err))
    one_line(srv, port, "no cipher suite in common", "weak suites")

    for version, name in ((ssl.TLSVersion.TLSv1, "TLS 1.0"), (ssl.TLSVersion.TLSv1_1, "TLS 1.1")):
        def old(ctx, version=version):
            ctx.minimum_version = version
            ctx.maximum_version = version
            ctx.set_ciphers("ALL:@SECLEVEL=0")
        err, port = tls_probe(srv, old)
        if err is not None and ("NO_PROTOCOLS_AVAILABLE" in str(err) or "no protocols" in str(err)):
            skip(f"a {name} client is refused", f"this OpenSSL cannot offer {name}")
        else:
            ok(err is not None, f"a {name} client is refused", str(err))
            one_line(srv, port, "protocol version not supported", name)


async def refused(srv, ctx, what, reason):
    """A client the server must turn away during the TLS handshake.  A dead server refuses
    every client too, so the check also wants the server's log line saying why, and the
    server still running."""
    before = len(srv.lines)
    try:
        async with connect(srv.url(), ctx) as ws:
            await ws.send(what)
            await ws.recv()
        ok(False, f"{what}: refused", "the server accepted it")
        return
    except (ssl.SSLError, OSError, websockets.exceptions.WebSocketException) as e:
        err = e
    logged = wait_for(lambda: [x for x in srv.lines[before:] if reason in x])
    alive = srv.proc.poll() is None
    ok(logged and alive and not isinstance(err, ConnectionRefusedError),
       f"{what}: refused ({type(err).__name__}), the log says {reason!r}",
       f"{err!r}\nserver {'running' if alive else 'exited'}\nlog: {srv.lines[before:]!r}")


async def client_cert_checks(srv, certs):
    await refused(srv, client_ctx(certs), "no client certificate", "the client sent no certificate")
    ctx = client_ctx(certs, "client.crt", "client-pass.key", "wskit")
    async with connect(srv.url(), ctx) as ws:
        await ws.send("with cert")
        ok(await ws.recv() == "with cert", "client certificate (encrypted key) accepted: echo")
    await refused(srv, client_ctx(certs, "server.crt", "server.key"),
                  "a client certificate from another CA",
                  "client certificate verify failed: unknown issuer")


def main():
    tls = Certs()
    certs, c = tls.dir, tls.path
    try:
        if not tls.ok:
            skip("wss:// tests", "scripts/mkcerts failed: " + tls.why)
            return

        # The deadline counts whole seconds from the accept: 2 leaves the good clients at least
        # one second, and ends a stalled one within three.
        srv = TLSServer("--echo", "-v", "--handshake-timeout", str(HANDSHAKE), "--tls-cert",
                        c("server.crt"),
                        "--tls-key", c("server-pass.key"), "--tls-key-password", "wskit")
        try:
            asyncio.run(echo_checks(srv, certs))
            page_checks(srv, certs)
            bad_clients(srv)
            asyncio.run(echo_checks_after(srv, certs))
        finally:
            rc = srv.stop()
        ok(rc == 0, "wsserve exits 0 on SIGTERM", f"status {rc}")

        srv = TLSServer("--echo", "-v", "--tls-cert", c("server.crt"), "--tls-key", c("server.key"),
                        "--tls-client-ca", c("client-ca.crt"))
        try:
            asyncio.run(client_cert_checks(srv, certs))
        finally:
            srv.stop()

        for args, why, what in [
            (["--tls-key", c("server-pass.key")], "password", "an encrypted key without password"),
            (["--tls-key", c("client.key")], "does not match", "a key that does not match"),
            (["--tls-key", c("server.key"), "--tls-client-ca", c("missing.crt")], "missing.crt",
             "a missing client CA file"),
        ]:
            p = subprocess.run([os.path.join(BIN, "wsserve"), "--echo", "--listen", "127.0.0.1:0",
                                "--tls-cert", c("server.crt"), *args],
                               capture_output=True, text=True, timeout=10)
            ok(p.returncode != 0 and why in p.stderr, f"wsserve refuses {what}", p.stderr.strip())
    finally:
        tls.remove()


async def echo_checks_after(srv, certs):
    async with connect(srv.url(), client_ctx(certs)) as ws:
        await ws.send("still here")
        ok(await ws.recv() == "still here", "the server still serves after the bad clients")


main()
done()
