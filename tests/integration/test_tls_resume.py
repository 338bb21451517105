#!/usr/bin/python3
"""TLS session resumption, both sides.  wsserve resumes a session from its ticket (RFC 5077) and,
for a client that sends no ticket, from its session ID cache: `openssl s_client -sess_out` then
`-sess_in` reports "Reused" and the server's debug log says "resumed".  A tampered ticket costs
a full handshake, not the connection.  The library's client resumes: wscat --reconnect (-v says
so) and wsbench --tls-resume (each slot after its first connection; none without the option).
With --threads 2 the threads share their ticket keys and session cache: a session made on one
thread resumes on the other.  Certificates come from scripts/mkcerts."""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from wstest import BIN, Certs, Server, done, ok, run_cmd, sanitized, skip, wait_for  # noqa: E402

RESUMED = ", resumed"  # wsserve -vv: "PEER: TLSv1.2, SUITE, resumed"
OPEN_THREAD = re.compile(r": open(?:, protocol \S+)?, thread (\d+)")
TIMEOUT = 40 if sanitized() else 10


def s_client(port, *args):
    """openssl s_client to port with args; (status, output)."""
    try:
        p = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                            "-servername", "localhost", *args], input=b"", capture_output=True,
                           timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return None, ""
    return p.returncode, p.stdout.decode(errors="replace")


def tampered(path):
    """A copy of the saved session whose ticket has one byte changed: s_client -sess_out writes
    PEM, and the ticket is the long octet string near its end (the session is re-encoded with
    openssl sess_id, which does not check the ticket)."""
    der = subprocess.run(["openssl", "sess_id", "-in", path, "-outform", "DER"],
                         capture_output=True).stdout
    b = bytearray(der)
    b[-40] ^= 0xFF  # inside the ticket, which is the last long field of the session
    out = path + ".bad"
    p = subprocess.run(["openssl", "sess_id", "-inform", "DER", "-out", out], input=bytes(b),
                       capture_output=True)
    return out if p.returncode == 0 else None


def openssl_checks(srv, work):
    for name, extra in (("session ticket", []), ("session ID cache", ["-no_ticket"])):
        sess = os.path.join(work, name.replace(" ", "_"))
        before = srv.count(RESUMED)
        st, out = s_client(srv.port, "-sess_out", sess, *extra)
        ok(st == 0 and "New, TLSv1.2" in out, f"{name}: the first handshake is a full one", out)
        if not extra:
            ok("session ticket lifetime hint: 3600" in out, "the server issues a ticket", out)
        st, out = s_client(srv.port, "-sess_in", sess, *extra)
        ok(st == 0 and "Reused, TLSv1.2" in out, f"{name}: openssl s_client -sess_in: Reused",
           out)
        ok(srv.wait_log(RESUMED, n=before + 1) == before + 1,
           f"{name}: the server logs the resumption", srv.stderr[-2000:])
    sess = os.path.join(work, "session_ticket")
    bad = tampered(sess)
    if not bad:
        skip("a tampered ticket", "openssl sess_id cannot rewrite the session")
        return
    before = srv.count(RESUMED)
    st, out = s_client(srv.port, "-sess_in", bad)
    ok(st == 0 and "New, TLSv1.2" in out and srv.count(RESUMED) == before,
       "a tampered ticket gets a full handshake", out)


def wscat_checks(certs):
    # The server drops idle connections quickly, so that wscat reconnects on its own.
    with Server("--echo", "-vv", "--idle-timeout", "300ms", "--no-pings",
                "--tls-cert", certs.path("server.crt"), "--tls-key", certs.path("server.key")) as srv:
        p = subprocess.Popen([os.path.join(BIN, "wscat"), "-c", f"wss://localhost:{srv.port}/",
                              "--ca", certs.path("ca.crt"), "--reconnect", "-v", "-x", "hi",
                              "-w", "60"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        try:
            got = srv.wait_log(RESUMED, n=2, timeout=TIMEOUT)
        finally:
            p.send_signal(signal.SIGINT)
            try:
                out, err = p.communicate(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                p.kill()
                out, err = p.communicate()
        ok(got >= 2, "wscat --reconnect resumes the TLS session of the connection before",
           srv.stderr[-2000:] + "\nwscat: " + err[-2000:])
        ok("TLS session resumed" in err and err.count("Connected") > err.count("resumed"),
           "wscat -v says which connections resumed (not the first)", err[-2000:])


def wsbench_checks(certs):
    with Server("--echo", "-vv", "--tls-cert", certs.path("server.crt"),
                "--tls-key", certs.path("server.key")) as srv:
        url = f"wss://localhost:{srv.port}/"
        common = ["connect", "-c", "2", "-n", "12", "-d", "20s", "--ca", certs.path("ca.crt"),
                  "-q", url]
        r = run_cmd("wsbench", *common, timeout=60)
        full = srv.count("TLSv1.2")
        ok(r[0] == 0 and full == 12 and srv.count(RESUMED) == 0,
           "wsbench connect: a full TLS handshake per connection by default",
           f"status {r[0]}, {full} handshakes, {srv.count(RESUMED)} resumed\n{r[2][-1500:]}")
        r = run_cmd("wsbench", "--tls-resume", *common, timeout=60)
        resumed = srv.wait_log(RESUMED, n=10)
        ok(r[0] == 0 and resumed == 10,
           "wsbench --tls-resume: every connection after each slot's first resumes",
           f"status {r[0]}, {resumed} resumed\n{r[2][-1500:]}\n{srv.stderr[-1500:]}")
        ok("TLS session resumed on 10 of 12" in r[1], "wsbench counts the resumed handshakes",
           r[1][-1500:])


def threads_checks(certs):
    """A client lands on whichever thread the kernel picks (SO_REUSEPORT): each connection after
    a slot's first resumes only when every thread can open the tickets of the others (without
    sharing, about half of them did)."""
    with Server("--echo", "-vv", "--threads", "2", "--tls-cert", certs.path("server.crt"),
                "--tls-key", certs.path("server.key")) as srv:
        n, c = 60, 2
        r = run_cmd("wsbench", "connect", "--tls-resume", "-c", str(c), "-n", str(n), "-d", "30s",
                    "--ca", certs.path("ca.crt"), "-q", f"wss://localhost:{srv.port}/",
                    timeout=90)
        resumed = srv.wait_log(RESUMED, n=n - c)
        threads = {m.group(1) for line in list(srv.lines) for m in [OPEN_THREAD.search(line)] if m}
        ok(r[0] == 0 and threads == {"0", "1"},
           "wsbench --tls-resume against --threads 2: connections on both threads",
           f"status {r[0]}, threads {threads}\n{r[2][-1500:]}")
        ok(resumed >= n - c - 2,
           f"--threads 2: nearly every connection after each slot's first resumes ({resumed} "
           f"of {n - c})", srv.stderr[-1500:])


def main():
    certs = Certs()
    work = tempfile.mkdtemp(prefix="wskit-resume-")
    try:
        if not certs.ok:
            skip("TLS session resumption", "scripts/mkcerts failed: " + certs.why)
            return
        if shutil.which("openssl"):
            with Server("--echo", "-vv", "--tls-cert", certs.path("server.crt"),
                        "--tls-key", certs.path("server.key")) as srv:
                openssl_checks(srv, work)
        else:
            skip("openssl s_client resumes", "no openssl")
        wscat_checks(certs)
        wsbench_checks(certs)
        threads_checks(certs)
    finally:
        certs.remove()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
    done()
