#!/usr/bin/python3
"""wspub end to end against wsserve --pubsub: messages from arguments, from a shell pipeline
(-l), all of stdin (-s), a file (-f, --binary), --repeat with --interval, the receiver count
(-v), --require-receivers, a topic URL, a server that is no broker, tokens, refusals and their
exit statuses, -k, and a large stream of lines over one connection."""
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wstest import BIN, done, free_port, ok, Raw, request, Server, sanitized, skip  # noqa: E402


WSPUB = os.path.join(BIN, "wspub")


def sh(cmd, timeout=30):
    """Runs a shell pipeline with WSPUB set; (status, stdout, stderr)."""
    r = subprocess.run(["bash", "-c", cmd], env=dict(os.environ, WSPUB=WSPUB), capture_output=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


def subscriber(srv, topic):
    c = Raw(srv.port, handshake=False)
    c.send(request(path="/" + topic))
    status, _ = c.read_head()
    assert status == 101, status
    return c


def frames(c, n):
    out = []
    for _ in range(n):
        fin, op, payload = c.recv_frame()
        out.append((op, payload))
    return out


if not os.access(WSPUB, os.X_OK):
    ok(False, "wspub is built", WSPUB)
    done()

with Server("--pubsub") as srv:
    url = srv.url()
    sub = subscriber(srv, "news")
    st, out, err = sh(f'"$WSPUB" -v {url} news one "two words" three')
    got = frames(sub, 3)
    ok(st == 0 and [p for _, p in got] == [b"one", b"two words", b"three"],
       "messages from arguments, in order, exit 0", f"{st} {err} {got}")
    ok(out.splitlines() == ["1: 1 receiver", "2: 1 receiver", "3: 1 receiver"],
       "-v prints the receiver count of each message", out)

    st, out, err = sh(f'seq 1 5000 | "$WSPUB" -l {url} news')
    got = frames(sub, 5000)
    ok(st == 0 and [p for _, p in got] == [str(i).encode() for i in range(1, 5001)],
       "seq 1 5000 | wspub -l: 5000 messages in order", f"{st} {err}")

    st, out, err = sh(f'printf "a\\n\\nb\\r\\nc" | "$WSPUB" -l {url} news')
    got = frames(sub, 3)
    ok(st == 0 and [p for _, p in got] == [b"a", b"b", b"c"],
       "-l skips blank lines, strips CR, sends a last line without newline", f"{got}")

    st, out, err = sh(f'printf "line 1\\nline 2\\n" | "$WSPUB" -s {url} news')
    got = frames(sub, 1)
    ok(st == 0 and got == [(1, b"line 1\nline 2\n")], "-s: all of stdin as one text message", got)

    with tempfile.NamedTemporaryFile(delete=False) as f:
        blob = bytes(range(256)) * 40
        f.write(blob)
    st, out, err = sh(f'"$WSPUB" --binary -f {f.name} {url} news')
    got = frames(sub, 1)
    ok(st == 0 and got == [(2, blob)], "-f FILE --binary: the file as one binary message",
       f"{st} {err}")
    st, out, err = sh(f'"$WSPUB" -f {f.name} {url} news')
    ok(st == 4 and "UTF-8" in err, "a binary file without --binary is refused (exit 4)",
       f"{st} {err}")
    os.unlink(f.name)

    t0 = time.time()
    st, out, err = sh(f'"$WSPUB" --repeat 3 --interval 0.1 {url} news tick tock')
    dt = time.time() - t0
    got = frames(sub, 6)
    ok(st == 0 and [p for _, p in got] == [b"tick", b"tock"] * 3 and dt >= 0.45,
       f"--repeat 3 --interval 0.1: 6 messages over {dt:.2f}s", f"{st} {err}")

    st, out, err = sh(f'"$WSPUB" {url} nobody-here hello')
    ok(st == 0, "a message nobody receives: exit 0", f"{st} {err}")
    st, out, err = sh(f'"$WSPUB" --require-receivers {url} nobody-here hello')
    ok(st == 5 and "reached no subscriber" in err,
       "--require-receivers when nobody received it: exit 5, saying why", f"{st} {err}")

    # The subscriber's URL works for publishing (mosquitto_pub -L): the path names the topic,
    # and the publish goes through the control endpoint, not to the subscribers as raw JSON.
    st, out, err = sh(f'"$WSPUB" -v {srv.url("/news")} "via topic URL" second')
    got = frames(sub, 2)
    ok(st == 0 and [p for _, p in got] == [b"via topic URL", b"second"]
       and out.splitlines() == ["1: 1 receiver", "2: 1 receiver"],
       "URL/TOPIC: the path is the topic, the operands are messages", f"{st} {err} {got}")
    st, out, err = sh(f'"$WSPUB" 127.0.0.1:{srv.port}/news "no scheme"')
    ok(st == 0 and frames(sub, 1) == [(1, b"no scheme")], "HOST:PORT/TOPIC without a scheme too",
       f"{st} {err}")
    st, out, err = sh(f'"$WSPUB" "{srv.url("/news?x=1")}" hi')
    ok(st == 1 and "names the topic" in err, "a topic URL with a query is a usage error",
       f"{st} {err}")
    st, out, err = sh(f'"$WSPUB" -r 2 {url} news x')
    ok(st == 1, "-r is not an option (mosquitto_pub users read it as retain): usage error",
       f"{st} {err}")
    st, out, err = sh(f'"$WSPUB" --repeat 2 {url} news rep')
    ok(st == 0 and frames(sub, 2) == [(1, b"rep")] * 2, "--repeat 2", f"{st} {err}")
    st, out, err = sh(f'"$WSPUB" --require-receivers {url} news hello')
    ok(st == 0 and frames(sub, 1) == [(1, b"hello")], "--require-receivers with a subscriber: 0")

    st, out, err = sh(f'"$WSPUB" {url} "bad topic" x')
    ok(st == 4 and "bad_topic" in err, "an invalid topic: refused, exit 4", f"{st} {err}")
    st, out, err = sh(f'"$WSPUB" -q {url} "bad topic" x')
    ok(st == 4 and err == "", "-q: the same without a word", err)
    st, out, err = sh(f'printf "ok\\n\\xff\\xfe\\n" | "$WSPUB" -l {url} news')
    ok(st == 4 and frames(sub, 1) == [(1, b"ok")], "a line that is not UTF-8 is skipped, exit 4",
       f"{st} {err}")

    # A large file of lines over one connection: pipelined, not a round trip per line.
    n = 200000
    with tempfile.NamedTemporaryFile("w", delete=False) as f:
        for i in range(n):
            f.write(f"line {i} of a large file with a little payload\n")
    t0 = time.time()
    st, out, err = sh(f'cat {f.name} | "$WSPUB" -l {url} bulk', timeout=120)
    dt = time.time() - t0
    os.unlink(f.name)
    # 30 s is a bound on pipelining (a round trip per line takes minutes); valgrind's server is
    # slower still, and its bound only keeps the test finite.
    bound = 100 if sanitized() else 30
    ok(st == 0 and dt < bound, f"{n} lines streamed and acknowledged in {dt:.2f}s "
       f"({n / dt:.0f} messages/s)", f"{st} {err}")
    sub.close()

    st, out, err = sh(f'"$WSPUB" ws://127.0.0.1:{free_port()}/ news x')
    ok(st == 2, "nothing listening: exit 2", f"{st} {err}")
    st, out, err = sh(f'"$WSPUB" {url}')
    ok(st == 1, "no TOPIC: usage error, exit 1", st)
    st, out, err = sh(f'"$WSPUB" {url} news')
    ok(st == 1, "nothing to publish: exit 1", st)

# Not a broker: the first reply says so, long before --timeout.
with Server("--echo") as srv:
    t0 = time.time()
    st, out, err = sh(f'"$WSPUB" --timeout 30 {srv.url()} news x')
    dt = time.time() - t0
    ok(st == 4 and "not a wsserve --pubsub broker" in err and dt < 10,
       f"an echo server: exit 4 at its first reply ({dt:.2f}s), saying it is no broker",
       f"{st} {err}")

st, out, err = sh('"$WSPUB" --help')
help3 = [l for l in out.splitlines() if l.strip().startswith("3 ")]
help4 = [l for l in out.splitlines() if l.strip().startswith("4 ")]
ok(st == 0 and help3 and "401" in help3[0] and "wrong token" in help3[0] and help4
   and "publish" in help4[0], "--help: 3 for a refused upgrade (401), 4 for a refused publish",
   out)

with Server("--pubsub", "--token", "tok3n") as srv:
    url = srv.url()
    st, out, err = sh(f'"$WSPUB" {url} news x')
    ok(st == 4 and "forbidden" in err, "--token on the broker, none given: refused, exit 4",
       f"{st} {err}")
    st, out, err = sh(f'"$WSPUB" --token tok3n {url} news x')
    ok(st == 0, "--token: exit 0", f"{st} {err}")
    st, out, err = sh(f'"$WSPUB" -H "Authorization: Bearer tok3n" {url} news x')
    ok(st == 0, "-H Authorization: exit 0", f"{st} {err}")
    st, out, err = sh(f'"$WSPUB" --token wrong {url} news x')
    ok(st == 3 and "401" in err, "a wrong token: the upgrade is refused, exit 3", f"{st} {err}")
    with tempfile.NamedTemporaryFile("w", suffix=".tok") as f:
        f.write("tok3n\n")
        f.flush()
        st, out, err = sh(f'"$WSPUB" --token-file {f.name} {url} news x')
        ok(st == 0, "--token-file: exit 0", f"{st} {err}")
    with tempfile.NamedTemporaryFile("w", suffix=".tok") as f:
        f.write("\ntok3n\n")
        f.flush()
        st, out, err = sh(f'"$WSPUB" --token-file {f.name} {url} news x')
        ok(st == 1 and f"--token-file {f.name}: the first line must hold the secret" in err,
           "--token-file whose first line is empty: a usage error naming the file", f"{st} {err}")

with Server("--pubsub", "--token", "tok3n", "--private") as srv:
    st, out, err = sh(f'"$WSPUB" {srv.url()} news x')
    ok(st == 3, "--private broker without a token: exit 3", f"{st} {err}")

# wss://: the TLS flags, with certificates from scripts/mkcerts.
certs = tempfile.mkdtemp(prefix="wskit-wspub-")
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
r = subprocess.run([os.path.join(root, "scripts", "mkcerts"), certs], capture_output=True,
                   text=True, timeout=60)
if r.returncode == 0:
    c = lambda name: os.path.join(certs, name)  # noqa: E731
    with Server("--pubsub", "--tls-cert", c("server.crt"), "--tls-key", c("server.key")) as srv:
        url = f"wss://localhost:{srv.port}/"
        st, out, err = sh(f'"$WSPUB" -v --ca {c("ca.crt")} {url} news over-tls')
        ok(st == 0 and out.strip() == "1: 0 receivers", "wss:// with --ca: exit 0", f"{st} {err}")
        st, out, err = sh(f'"$WSPUB" {url} news x')
        ok(st == 6, "wss:// with a certificate the system does not trust: exit 6", f"{st} {err}")
        st, out, err = sh(f'"$WSPUB" -n {url} news x')
        ok(st == 0, "-n skips the verification", f"{st} {err}")
        st, out, err = sh(f'"$WSPUB" -k {url} news x')
        ok(st == 0, "-k (curl's name) too", f"{st} {err}")
        st, out, err = sh(f'"$WSPUB" --insecure {url} news x')
        ok(st == 0, "--insecure too", f"{st} {err}")
else:
    skip("wspub over wss://", "scripts/mkcerts failed: " + r.stderr.strip()[-200:])
subprocess.run(["rm", "-rf", certs])

done()
