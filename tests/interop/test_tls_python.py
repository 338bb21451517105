#!/usr/bin/python3
"""Interoperability over TLS with Python `websockets` on OpenSSL: as the TLS client of wsserve,
and as the TLS server that wscat connects to.  wscat sends SNI for a name (none for an
address) and ALPN http/1.1, verifies the server's certificate (rejecting an expired one, one
for another name and a self-signed one, exit status 6), and presents a client certificate when
the server requires one.  Test names start with the interop matrix tag
"[peer | direction | compression | transport]".  Certificates come from scripts/mkcerts."""
import asyncio
import os
import ssl
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from wstest import BIN, Certs, PyServer, Server, done, ok, skip, tls_client_ctx  # noqa: E402

import websockets  # noqa: E402

PEER = "Python websockets"
WSCAT = os.path.join(BIN, "wscat")
EXIT_TLS = 6


def tag(direction):
    return f"[{PEER} | {direction} | off | wss://]"


class TLSEcho(PyServer):
    """A websockets echo server with TLS; what each handshake saw (SNI, ALPN, version, client
    certificate) lands in self.seen."""

    def __init__(self, certs, name, client_ca=None, cipher=None):
        self.seen = []
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        if cipher:
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            ctx.set_ciphers(cipher)
        ctx.load_cert_chain(os.path.join(certs, name + ".crt"), os.path.join(certs, name + ".key"))
        ctx.set_alpn_protocols(["http/1.1"])
        self.sni = []
        ctx.sni_callback = lambda sock, server_name, c: self.sni.append(server_name)
        if client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(os.path.join(certs, client_ca))
        super().__init__(self._echo, ssl=ctx, max_size=None)
        if self.error:
            raise RuntimeError(f"the Python server did not start: {self.error}")

    async def _echo(self, ws, path=None):
        sslobj = ws.transport.get_extra_info("ssl_object")
        peer = sslobj.getpeercert() if sslobj else None
        cn = None
        if peer:
            cn = dict(x[0] for x in peer.get("subject", ())).get("commonName")
        self.seen.append({"version": sslobj.version(), "alpn": sslobj.selected_alpn_protocol(),
                          "client_cn": cn, "cipher": sslobj.cipher()[0]})
        async for msg in ws:
            await ws.send(msg)


def wscat(url, *args, msgs=("hello", "world"), timeout=20):
    """(exit status, stdout, stderr) of wscat -c url sending msgs with -x and closing a second
    later: websockets drops the echoes still to be sent once it has read a close, so piped
    lines (sent with the close right behind) would race."""
    for m in msgs:
        args = (*args, "-x", m)
    try:
        p = subprocess.run([WSCAT, "-c", url, *args, "-w", "1"], input="", capture_output=True,
                           text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        return None, e.stdout or "", e.stderr or ""
    return p.returncode, p.stdout, p.stderr


# The AEAD suites of TLS 1.2 that wsserve and wscat seal with ipsec-mb (io_tls_records.c).
SUITES = ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
          "ECDHE-ECDSA-CHACHA20-POLY1305")


async def python_suites(srv, certs):
    """Each suite in turn: messages on each side of a record's 16 KiB, and 1 MiB."""
    d = "websockets client → wsserve"
    for suite in SUITES:
        ctx = tls_client_ctx(certs)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(suite)
        async with websockets.connect(f"wss://localhost:{srv.port}/", ssl=ctx,
                                      max_size=None) as ws:
            got = ws.transport.get_extra_info("ssl_object").cipher()[0]
            sizes = (0, 1, 16383, 16384, 16385, 1 << 20)
            same = True
            for n in sizes:
                data = os.urandom(n)
                await ws.send(data)
                same = same and await ws.recv() == data
            ok(got == suite and same, f"{tag(d)} {suite}: binary {sizes} echoed", got)


async def python_client(srv, certs):
    ctx = tls_client_ctx(certs)
    async with websockets.connect(f"wss://localhost:{srv.port}/", ssl=ctx, max_size=None) as ws:
        for n in (0, 125, 126, 65536, 1 << 20):
            data = os.urandom(n)
            await ws.send(data)
            name = f"{tag('websockets client → wsserve')} binary {n}"
            if not ok(await ws.recv() == data, name):
                break
        await ws.send("Grüße 🌍")
        ok(await ws.recv() == "Grüße 🌍", f"{tag('websockets client → wsserve')} text")
        pong = await ws.ping(b"tls")
        await asyncio.wait_for(pong, 3)
        ok(True, f"{tag('websockets client → wsserve')} ping answered")
    ok(ws.close_code == 1000, f"{tag('websockets client → wsserve')} close 1000",
       str(ws.close_code))


def main():
    tls = Certs()
    certs, c = tls.dir, tls.path
    try:
        if not tls.ok:
            skip(tag("both"), "scripts/mkcerts failed: " + tls.why)
            return

        with Server("--echo", "--tls-cert", c("server.crt"), "--tls-key", c("server.key")) as srv:
            asyncio.run(python_client(srv, certs))
            asyncio.run(python_suites(srv, certs))

        d = "wscat → websockets server"
        if not os.access(WSCAT, os.X_OK):
            skip(tag(d), f"{WSCAT} is not built")
            return
        ca = ["--ca", c("ca.crt")]
        py = TLSEcho(certs, "server")
        try:
            rc, out, err = wscat(f"wss://localhost:{py.port}/", *ca)
            ok(rc == 0 and out == "hello\nworld\n", f"{tag(d)} echo",
               f"status {rc}, err {err.strip()!r}")
            seen = py.seen[-1] if py.seen else {}
            ok(seen.get("version") == "TLSv1.2", f"{tag(d)} TLS 1.2", repr(seen))
            ok(seen.get("alpn") == "http/1.1", f"{tag(d)} ALPN http/1.1", repr(seen))
            ok(py.sni[-1:] == ["localhost"], f"{tag(d)} SNI from the URL", repr(py.sni))
            big = os.urandom(60000).hex()  # one argument: below the kernel's 128 KiB limit
            rc, out, err = wscat(f"wss://localhost:{py.port}/", *ca, msgs=(big,))
            ok(rc == 0 and out == big + "\n", f"{tag(d)} 120 KB message",
               f"status {rc}, {len(out)} bytes")
            rc, out, err = wscat(f"wss://127.0.0.1:{py.port}/", *ca)
            ok(rc == 0 and py.sni[-1:] == [None], f"{tag(d)} an address: verified, no SNI",
               f"status {rc}, SNI {py.sni!r}, err {err.strip()!r}")
        finally:
            py.stop()

        # The same suites the other way: wscat seals and opens with ipsec-mb, OpenSSL serves.
        lines = ("x", "a" * 16383, "b" * 16384, "c" * 16385, os.urandom(60000).hex())
        for suite in SUITES:
            py = TLSEcho(certs, "server", cipher=suite)
            try:
                rc, out, err = wscat(f"wss://localhost:{py.port}/", *ca, msgs=lines)
                seen = py.seen[-1] if py.seen else {}
                ok(rc == 0 and out == "\n".join(lines) + "\n" and seen.get("cipher") == suite,
                   f"{tag(d)} {suite}: 1, 16383, 16384, 16385 and 120000 bytes echoed",
                   f"status {rc}, {len(out)} bytes, seen {seen!r}, err {err.strip()!r}")
            finally:
                py.stop()

        for name, why in [("expired", "expired"), ("wronghost", "name mismatch"),
                          ("selfsigned", "unknown issuer")]:
            py = TLSEcho(certs, name)
            try:
                rc, out, err = wscat(f"wss://localhost:{py.port}/", *ca)
                ok(rc == EXIT_TLS and why in err and not py.seen,
                   f"{tag(d)} {name} certificate rejected: exit 6, '{why}'",
                   f"status {rc}, err {err.strip()!r}")
                if name == "selfsigned":
                    rc, out, err = wscat(f"wss://localhost:{py.port}/", "-n")
                    ok(rc == 0 and out == "hello\nworld\n", f"{tag(d)} -n accepts it",
                       f"status {rc}, err {err.strip()!r}")
            finally:
                py.stop()

        py = TLSEcho(certs, "server", client_ca="client-ca.crt")
        try:
            rc, out, err = wscat(f"wss://localhost:{py.port}/", *ca)
            ok(rc == EXIT_TLS, f"{tag(d)} client certificate required, none given: exit 6",
               f"status {rc}, err {err.strip()!r}")
            rc, out, err = wscat(f"wss://localhost:{py.port}/", *ca, "--cert", c("client.crt"),
                                 "--key", c("client-pass.key"), "--passphrase", "wskit")
            seen = py.seen[-1] if py.seen else {}
            ok(rc == 0 and out == "hello\nworld\n" and seen.get("client_cn") == "wskit test client",
               f"{tag(d)} client certificate presented and accepted",
               f"status {rc}, seen {seen!r}, err {err.strip()!r}")
        finally:
            py.stop()
    finally:
        tls.remove()


main()
done()
