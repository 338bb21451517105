#!/usr/bin/python3
"""wsserve's command line and what it says: one grammar for sizes and durations, a flag that does
nothing in the chosen mode refused, pages on the port whose commands work as printed, and the
access log of -v (ISO-8601 timestamps when stderr is not a terminal)."""
import os
import pty
import re
import select
import shlex
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wstest import BIN, Raw, Server, describe, done, frame, free_port, ok, run_cmd  # noqa: E402

SECRET = "pagesecret"


def get(port, path="/", host=None):
    """A plain GET: (status, body as text)."""
    c = Raw(port, handshake=False)
    try:
        c.send(f"GET {path} HTTP/1.1\r\nHost: {host or f'127.0.0.1:{port}'}\r\n\r\n".encode())
        st, _, body = c.read_http()
        return st, body.decode()
    finally:
        c.close()


def commands(page, prog):
    """The example command lines of a page that start with prog, as argument lists."""
    return [shlex.split(line.strip()) for line in page.splitlines()
            if line.strip().startswith(prog + " ")]


# ----- one grammar for sizes and durations ---------------------------------------------------
for args in (["--idle-timeout", "2m"], ["--handshake-timeout", "500ms"],
             ["--max-payload", "64KiB"], ["--backpressure-limit", "2M"], ["--max-header", "16k"]):
    try:
        with Server("--echo", *args) as srv:
            c = Raw(srv.port)
            c.send(frame(1, "grammar"))
            good = c.recv_frame() == (True, 1, b"grammar")
            c.close()
    except RuntimeError as e:
        good = False, str(e)
    ok(good is True, f"{' '.join(args)} is accepted (sizes and durations as in every command)",
       repr(good))
for args in (["--idle-timeout", "2x"], ["--max-payload", "12Q"], ["--clients", "0", "--chat"]):
    r = run_cmd("wsserve", "--echo" if "--chat" not in args else "--chat",
                *[a for a in args if a != "--chat"], timeout=5)
    ok(r[0] == 1 and "invalid value for --" + args[0].lstrip("-") in r[2],
       f"{' '.join(args)}: usage error naming the option", describe(r))

# ----- a flag that does nothing in the mode is an error --------------------------------------
for args, needle in [
    (["--echo", "--token", "x"], "--token is an option of --pubsub"),
    (["--chat", "--private"], "--private is an option of --pubsub"),
    (["--pubsub", "--clients", "3"], "--clients is an option of --chat"),
    (["--clients", "3", "--echo"], "--clients is an option of --chat"),
    (["--echo", "--tls-client-ca", "ca.pem"], "--tls-client-ca does nothing without --tls-cert"),
    (["--echo", "--chat"], "choose one mode"),
    (["--max-payload", "1M"], "choose a mode"),
    (["--echo", "--binary"], "--binary is an option of --exec"),
    (["--exec", "cat", "--", "tac"], "not both"),
    (["--echo", "--", "cat"], "unexpected argument 'cat'"),
    (["--dir", "/nonexistent/dir"], "--dir needs a directory"),
]:
    r = run_cmd("wsserve", *args, "--listen", "127.0.0.1:0", timeout=5)
    ok(r[0] == 1 and needle in r[2] and "wsserve --help" in r[2],
       f"wsserve {' '.join(args)}: exit 1, '{needle}'", describe(r))

# ----- --help: every mode with its own options under it --------------------------------------
r = run_cmd("wsserve", "--help")
modes = re.findall(r"^  --([\w-]+) ", r[1], re.M)
ok(r[0] == 0 and modes == ["echo", "chat", "pubsub", "exec", "dir", "exec-shared"], "--help lists the modes", r[1][:600])
chat_part = r[1][r[1].index("  --chat"):r[1].index("  --pubsub")]
ok("--clients" in chat_part and "--token" not in chat_part,
   "--help shows each mode's options under it", chat_part)

# ----- pages whose commands work as printed --------------------------------------------------
with Server("--echo") as srv:
    st, page = get(srv.port)
    cmds = commands(page, "wscat")
    ok(st == 200 and cmds and cmds[0][-1] == f"ws://127.0.0.1:{srv.port}/",
       "echo page: wscat -c with the address the client used", page)
    if cmds:
        r = run_cmd("wscat", *cmds[0][1:], "-x", "page hello", timeout=10)
        ok(r[0] == 0 and "page hello" in r[1], "echo page: its wscat command works", describe(r))

with Server("--chat", "--clients", "2") as srv:
    st, page = get(srv.port, host=f"localhost:{srv.port}")
    ok(st == 200 and f"ws://localhost:{srv.port}/?name=" in page and "HOST" not in page,
       "chat page: the real host and port", page)

with Server("--pubsub", "--token", SECRET) as srv:
    st, page = get(srv.port)
    base = f"127.0.0.1:{srv.port}"
    ok(st == 200 and "HOST" not in page and f"ws://{base}/" in page and SECRET not in page,
       "broker page: real scheme, host and port; the secret not shown", page)
    curls = commands(page, "curl")
    ok(curls and "Authorization: Bearer TOKEN" in curls[0] and
       curls[0][-1] == f"http://{base}/publish/news", "broker page: curl with the auth header",
       page)
    if curls:
        argv = [a.replace("TOKEN", SECRET) for a in curls[0]]
        p = subprocess.run(argv[:1] + ["-s", "-m", "5"] + argv[1:], capture_output=True,
                           text=True, timeout=10, stdin=subprocess.DEVNULL)
        ok(p.returncode == 0 and '"receivers"' in p.stdout,
           "broker page: its curl command publishes (TOKEN filled in)", p.stdout + p.stderr)
    pubs = commands(page, "wspub")
    if pubs:
        argv = [a.replace("TOKEN", SECRET) for a in pubs[0]]
        r = run_cmd("wspub", *argv[1:], timeout=10)
        ok(r[0] == 0, "broker page: its wspub command publishes (TOKEN filled in)", describe(r))
    else:
        ok(False, "broker page: a wspub command", page)

with Server("--pubsub", "--token", SECRET, "--private") as srv:
    st, page = get(srv.port)
    wscats = commands(page, "wscat")
    ok(wscats and "Authorization: Bearer TOKEN" in wscats[0],
       "private broker page: subscribing shows the auth header too", page)

# ----- the access log of -v ------------------------------------------------------------------
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
srv = Server("--pubsub", "-v", "--token", SECRET)
get(srv.port, "/?token=" + SECRET)
get(srv.port, "/nothing")
c = Raw(srv.port, handshake=False)
c.send(b"GET /news HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
       b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
c.read_head()
c.close()
c = Raw(srv.port, handshake=False)
c.send(f"GET /news?token=zzwrongzz HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
       f"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
       f"Sec-WebSocket-Version: 13\r\n\r\n".encode())
c.read_http()
c.close()
srv.stop()
log = srv.stderr
for what, pattern in [
    ("a plain request", r'"GET /" 200$'),
    ("a 404", r'"GET /nothing" 404$'),
    ("an upgrade", r'"GET /news" 101 websocket$'),
    ("a refused upgrade", r'"GET /news" 401 \(upgrade refused\)$'),
]:
    ok(re.search(rf"^{STAMP} wsserve: 127\.0\.0\.1:\d+: {pattern}", log, re.M),
       f"-v: an access-log line with an ISO-8601 time for {what}", log[-1500:])
ok(SECRET not in log and "zzwrongzz" not in log, "the access log leaves out the query (tokens)",
   log[-800:])
ok(all(re.match(STAMP, line) for line in log.splitlines() if line),
   "every log line starts with the time when stderr is not a terminal", log[-800:])

# On a terminal the lines go without the time, as a person reads them.
master, slave = pty.openpty()
port = free_port()
p = subprocess.Popen([os.path.join(BIN, "wsserve"), "--echo", "-v", "--listen",
                      f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=slave,
                     stdin=subprocess.DEVNULL)
os.close(slave)
seen = b""
end = time.monotonic() + 10
while b"\n" not in seen and time.monotonic() < end:
    if select.select([master], [], [], 0.5)[0]:
        try:
            seen += os.read(master, 4096)
        except OSError:
            break
p.terminate()
p.wait(timeout=5)
os.close(master)
ok(seen.startswith(b"wsserve: listening on"), "log lines on a terminal start with 'wsserve:'",
   repr(seen))
done()
