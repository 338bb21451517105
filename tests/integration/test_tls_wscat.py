#!/usr/bin/python3
"""wscat as the TLS client of wsserve: wss:// echo by name, IPv4 and IPv6 address; the server
certificate verified by default (the system CA bundle, --ca), with the reason and exit status 6
when it fails (unknown issuer, expired, name mismatch, self-signed); -n/--no-check (and curl's -k/--insecure) with its
warning; client certificates (--cert, --key, --passphrase) for a server that requires them;
and wss:// to a plain ws:// port; a server that stalls the handshake is bounded by
--connect-timeout.  Certificates come from scripts/mkcerts."""
import os
import re
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from wstest import BIN, Certs, Server, done, ok, skip  # noqa: E402

WSCAT = os.path.join(BIN, "wscat")
EXIT_TLS = 6
EXIT_CONNECT = 2  # includes timeouts


def wscat(url, *args, stdin="hello\nworld\n", timeout=20):
    """(exit status, stdout, stderr) of wscat -c url in pipe mode."""
    try:
        p = subprocess.run([WSCAT, "-c", url, *args], input=stdin, capture_output=True,
                           text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        return None, e.stdout or "", e.stderr or ""
    return p.returncode, p.stdout, p.stderr


def wss(srv, host="localhost"):
    h = f"[{host}]" if ":" in host else host
    return f"wss://{h}:{srv.port}/"


def ipv6():
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


def main():
    if not os.access(WSCAT, os.X_OK):
        skip("wscat over wss://", f"{WSCAT} is not built")
        return
    tls = Certs()
    c = tls.path
    servers = []
    try:
        if not tls.ok:
            skip("wscat over wss://", "scripts/mkcerts failed: " + tls.why)
            return
        ca = ["--ca", c("ca.crt")]

        def tls_server(name, *extra, host="127.0.0.1"):
            s = Server("--echo", "--tls-cert", c(name + ".crt"), "--tls-key", c(name + ".key"),
                       *extra, host=host)
            servers.append(s)
            return s

        good = tls_server("server")
        rc, out, err = wscat(wss(good), *ca)
        ok(rc == 0 and out == "hello\nworld\n", "wss:// echo through wscat",
           f"status {rc}, out {out!r}, err {err.strip()!r}")
        line = "x" * (1 << 20)
        rc, out, err = wscat(wss(good), *ca, stdin=line + "\n")
        ok(rc == 0 and out == line + "\n", "a 1 MiB message through wscat over wss://",
           f"status {rc}, {len(out)} bytes, err {err.strip()[-200:]!r}")
        rc, out, err = wscat(wss(good, "127.0.0.1"), *ca)
        ok(rc == 0 and out == "hello\nworld\n", "wss://127.0.0.1: the address is verified",
           f"status {rc}, err {err.strip()!r}")
        if ipv6():
            six = tls_server("server", host="::1")
            rc, out, err = wscat(wss(six, "::1"), *ca)
            ok(rc == 0 and out == "hello\nworld\n", "wss://[::1]: the address is verified",
               f"status {rc}, err {err.strip()!r}")
        else:
            skip("wss://[::1]", "no IPv6 loopback")

        rc, out, err = wscat(wss(good))
        ok(rc == EXIT_TLS and "unknown issuer" in err,
           "verified against the system CA bundle by default: the test CA is unknown",
           f"status {rc}, err {err.strip()!r}")

        for name, url_host, why, what in [
            ("expired", "localhost", "expired", "an expired certificate"),
            ("wronghost", "localhost", "name mismatch", "a certificate for another name"),
            ("wronghost", "127.0.0.1", "name mismatch", "a certificate without the address"),
            ("selfsigned", "localhost", "unknown issuer", "a self-signed certificate"),
        ]:
            srv = tls_server(name)
            rc, out, err = wscat(wss(srv, url_host), *ca)
            ok(rc == EXIT_TLS and "certificate verify failed" in err and why in err and out == "",
               f"{what} is rejected: exit {EXIT_TLS}, '{why}'",
               f"status {rc}, err {err.strip()!r}")
            if name == "selfsigned":
                rc, out, err = wscat(wss(srv, url_host), "-n")
                warned = re.search(r"insecure|not verif|no-check", err, re.I)
                ok(rc == 0 and out == "hello\nworld\n" and warned,
                   "-n: the self-signed server is accepted, with a warning on stderr",
                   f"status {rc}, err {err.strip()!r}")
                for flag in ("-k", "--insecure"):
                    rc, out, err = wscat(wss(srv, url_host), flag)
                    ok(rc == 0 and out == "hello\nworld\n" and "insecure" in err,
                       f"{flag} (curl's name for -n): accepted, with the warning",
                       f"status {rc}, err {err.strip()!r}")
            if name == "expired":
                rc, out, err = wscat(wss(srv, url_host), *ca, "--no-check")
                ok(rc == 0 and out == "hello\nworld\n", "--no-check: the expired one too",
                   f"status {rc}, err {err.strip()!r}")

        auth = tls_server("server", "--tls-client-ca", c("client-ca.crt"))
        rc, out, err = wscat(wss(auth), *ca)
        ok(rc == EXIT_TLS and "client certificate" in err,
           "client certificate required and missing: exit 6, and why",
           f"status {rc}, err {err.strip()!r}")
        rc, out, err = wscat(wss(auth), *ca, "--cert", c("client.crt"), "--key", c("client.key"))
        ok(rc == 0 and out == "hello\nworld\n", "--cert and --key: accepted",
           f"status {rc}, err {err.strip()!r}")
        rc, out, err = wscat(wss(auth), *ca, "--cert", c("client.crt"), "--key",
                             c("client-pass.key"), "--passphrase", "wskit")
        ok(rc == 0 and out == "hello\nworld\n", "an encrypted key with --passphrase",
           f"status {rc}, err {err.strip()!r}")
        rc, out, err = wscat(wss(auth), *ca, "--cert", c("client.crt"), "--key",
                             c("client-pass.key"), "--passphrase", "wrong")
        ok(rc == EXIT_TLS and "password" in err, "a wrong passphrase: exit 6, and why",
           f"status {rc}, err {err.strip()!r}")
        rc, out, err = wscat(wss(auth), *ca, "--cert", c("server.crt"), "--key", c("server.key"))
        ok(rc == EXIT_TLS, "a client certificate from another CA: exit 6",
           f"status {rc}, err {err.strip()!r}")

        plain = Server("--echo")
        servers.append(plain)
        rc, out, err = wscat(wss(plain), *ca)
        ok(rc == EXIT_TLS and "plaintext" in err, "wss:// to a ws:// port: exit 6, and why",
           f"status {rc}, err {err.strip()!r}")

        # A server that accepts and never answers the ClientHello: --connect-timeout bounds it.
        mute = socket.socket()
        mute.bind(("127.0.0.1", 0))
        mute.listen(4)
        try:
            t0 = time.time()
            rc, out, err = wscat(f"wss://localhost:{mute.getsockname()[1]}/", *ca,
                                 "--connect-timeout", "1")
            secs = time.time() - t0
            ok(rc == EXIT_CONNECT and secs < 5,
               f"a server that stalls the TLS handshake: exit {EXIT_CONNECT} after {secs:.1f}s",
               f"status {rc}, err {err.strip()!r}")
        finally:
            mute.close()
    finally:
        for s in servers:
            s.stop()
        tls.remove()


main()
done()
