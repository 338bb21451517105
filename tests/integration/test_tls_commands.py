#!/usr/bin/python3
"""Every command over wss://: wspub publishing to a TLS broker while wscat subscribes over TLS,
wsbench echo and connect against a TLS echo server, and each client refusing a server whose
certificate it cannot verify (exit status for TLS failures)."""
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wstest import BIN, Server, done, ok, skip  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def run(*args, **kw):
    return subprocess.run([os.path.join(BIN, args[0]), *args[1:]], capture_output=True, text=True,
                          timeout=kw.pop("timeout", 30), **kw)


certs = tempfile.mkdtemp(prefix="wsk-tls-cmds-")
r = subprocess.run([os.path.join(ROOT, "scripts", "mkcerts"), certs], capture_output=True, text=True)
if r.returncode != 0:
    skip("wss:// commands", "scripts/mkcerts failed")
    done()
tls = ["--tls-cert", os.path.join(certs, "server.crt"), "--tls-key", os.path.join(certs, "server.key")]
ca = os.path.join(certs, "ca.crt")

with Server("--pubsub", "-v", *tls) as srv:
    url = f"wss://localhost:{srv.port}"
    sub = subprocess.Popen([os.path.join(BIN, "wscat"), "-c", f"{url}/news", "--ca", ca, "-w", "3"],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    # wsserve logs the open after the subscription: publish only once it is there.
    ok(srv.wait_log(": open") == 1, "a wscat subscriber over wss:// is let in", srv.stderr[-300:])
    r = run("wspub", "-v", "--ca", ca, f"{url}/", "news", "over tls", "second")
    ok(r.returncode == 0 and "1" in r.stdout, "wspub publishes over wss:// and reports receivers",
       f"rc={r.returncode} out={r.stdout!r} err={r.stderr[-300:]!r}")
    try:
        out, err = sub.communicate(timeout=8)
    except subprocess.TimeoutExpired:
        sub.kill()
        out, err = sub.communicate()
    ok(out.splitlines()[:2] == ["over tls", "second"], "a wscat subscriber over wss:// receives them",
       f"{out!r} {err[-200:]!r}")
    r = run("wspub", f"{url}/", "news", "x")
    ok(r.returncode == 6, "wspub without the CA: exit status 6 (certificate)", f"rc={r.returncode} {r.stderr[-200:]!r}")
    r = run("wspub", "-n", f"{url}/", "news", "insecure")
    ok(r.returncode == 0, "wspub -n skips verification", f"rc={r.returncode} {r.stderr[-200:]!r}")

with Server("--echo", *tls) as srv:
    url = f"wss://localhost:{srv.port}/"
    r = run("wsbench", "echo", "-c", "4", "-n", "2000", "-q", "--ca", ca, url, timeout=60)
    ok(r.returncode == 0 and "(2,000 messages received" in r.stdout, "wsbench echo over wss://", f"rc={r.returncode} {r.stdout[-300:]!r} {r.stderr[-300:]!r}")
    r = run("wsbench", "connect", "-c", "2", "-n", "20", "-q", "--ca", ca, url, timeout=60)
    ok(r.returncode == 0, "wsbench connect over wss:// (TLS handshakes)", f"rc={r.returncode} {r.stderr[-300:]!r}")
    r = run("wsbench", "echo", "-c", "1", "-n", "10", "-q", url, timeout=60)
    ok(r.returncode == 2 and "certificate verify failed: unknown issuer" in r.stdout,
       "wsbench without the CA refuses the server, in the library's words",
       f"rc={r.returncode} {r.stdout[-300:]!r}")
    # connect reopens a slot after each failure: -n counts attempts, so with every handshake
    # refused the run still ends, failed.
    r = run("wsbench", "connect", "-c", "2", "-n", "20", "-q", url, timeout=20)
    ok(r.returncode == 2 and "failed: no connection completed" in r.stdout
       and "certificate verify failed" in r.stdout and "errors        20 tls" in r.stdout,
       "wsbench connect whose every handshake is refused ends failed after -n attempts (exit 2, the reason)",
       f"rc={r.returncode} {r.stdout[-300:]!r}")
    # One slot's server refuses it, the other's answers: the run ends too, the refusals counted.
    r = run("wsbench", "connect", "-c", "2", "-n", "20", "-q", "--ca", ca, url, "ws://127.0.0.1:1/", timeout=20)
    ok(r.returncode == 0 and "(10 connections)" in r.stdout and "errors        10 connect" in r.stdout,
       "wsbench connect -n with one slot always refused ends, its failed attempts counted",
       f"rc={r.returncode} {r.stdout[-400:]!r}")

# --cert alone: the key is read from the certificate's file; a file without one is a TLS failure
# that names the missing key, in one line; --key alone is a usage error.
both = os.path.join(certs, "client-both.pem")
with open(both, "w") as f:
    for name in ("client.crt", "client.key"):
        with open(os.path.join(certs, name)) as part:
            f.write(part.read())
crt = os.path.join(certs, "client.crt")
NO_KEY = "key " + crt + ": no private key in the certificate file"
with Server("--echo", *tls, "--tls-client-ca", os.path.join(certs, "client-ca.crt")) as srv:
    url = f"wss://localhost:{srv.port}/"
    r = run("wscat", "-c", url, "--ca", ca, "--cert", both, input="hello\n")
    ok(r.returncode == 0 and r.stdout == "hello\n", "wscat --cert with the key in the same file",
       f"rc={r.returncode} {r.stdout!r} {r.stderr[-300:]!r}")
    # A TLS configuration error is said once, in its own words (no generic line after it).
    bad_ca = os.path.join(certs, "no-such-ca.crt")
    for cmd in (["wscat", "-c", url], ["wspub", url, "news", "x"]):
        r = run(*cmd, "--ca", ca, "--cert", crt, input="")
        ok(r.returncode == 6 and len(r.stderr.splitlines()) == 1 and NO_KEY in r.stderr,
           f"{cmd[0]} --cert of a file without a key: exit 6, the missing key named in one line",
           f"rc={r.returncode} {r.stderr[-300:]!r}")
        r = run(*cmd, "--ca", bad_ca, input="")
        ok(r.returncode == 6 and r.stderr.splitlines() == [f"{cmd[0]}: TLS: CA certificates {bad_ca}: PK - Read/write of file failed"],
           f"{cmd[0]} --ca of a missing file: exit 6, one line naming the file",
           f"rc={r.returncode} {r.stderr[-300:]!r}")
    r = run("wsbench", "echo", "-c", "1", "-n", "5", "-q", "--ca", ca, "--cert", crt, url)
    ok(r.returncode == 2 and NO_KEY in r.stdout, "wsbench --cert of a file without a key: the failed run names the missing key",
       f"rc={r.returncode} {r.stdout[-300:]!r}")
    r = run("wsbench", "echo", "-c", "1", "-n", "5", "-q", "--ca", bad_ca, url)
    ok(r.returncode == 2 and f"failed: TLS: CA certificates {bad_ca}" in r.stdout,
       "wsbench --ca of a missing file: the failed run names the file", f"rc={r.returncode} {r.stdout[-300:]!r}")
    r = run("wsbench", "echo", "-c", "1", "-n", "5", "-q", "--ca", ca, "--cert", both, url)
    ok(r.returncode == 0, "wsbench --cert with the key in the same file", f"rc={r.returncode} {r.stdout[-300:]!r}")
    for cmd in (["wscat", "-c", url], ["wspub", url, "news", "x"], ["wsbench", "echo", url]):
        r = run(*cmd, "--ca", ca, "--key", os.path.join(certs, "client.key"))
        ok(r.returncode == 1 and "--key needs --cert" in r.stderr, f"{cmd[0]} --key without --cert: usage error",
           f"rc={r.returncode} {r.stderr[-300:]!r}")
# wsserve: a certificate without its key (or the reverse) is a usage error naming the other.
for given, missing in (("--tls-cert", "--tls-key"), ("--tls-key", "--tls-cert")):
    r = run("wsserve", "--echo", "-l", "127.0.0.1:0", given, crt, timeout=10)
    ok(r.returncode == 1 and f"wsserve: {given} needs {missing}" in r.stderr,
       f"wsserve {given} without {missing}: usage error naming {missing}",
       f"rc={r.returncode} {r.stderr[-300:]!r}")
shutil.rmtree(certs, ignore_errors=True)
done()
