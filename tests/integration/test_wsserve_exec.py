#!/usr/bin/python3
"""wsserve --exec, --dir and --static: a program per connection (lines <-> messages, binary
mode, websocketd's environment, exit codes as close codes, SIGTERM then SIGKILL after the
client goes, stderr in the log, backpressure both ways, many connections, --max-forks, no
zombie), static files without traversal, and the same scripts through Debian's websocketd."""
import os
import resource
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wstest import THREADS, Raw, Server, done, frame, free_port, ok, serve, skip, wait_for  # noqa: E402,E501

TEXT, BINARY, CLOSE = 1, 2, 8
PY = "/usr/bin/python3"
tmp = tempfile.mkdtemp(prefix="wsk-exec-")
# Under valgrind the server's RSS is valgrind's: the memory bounds are checked without it.
RSS_MAX = (1 << 40) if os.environ.get("WSK_VALGRIND") else 64 << 20


def script(name, body):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(body)
    os.chmod(path, 0o755)
    return path


def close_of(payload):
    return (struct.unpack("!H", payload[:2])[0], payload[2:].decode()) if len(payload) >= 2 else (None, "")


def messages(c, limit=1000):
    """Data frames until the close: ([(op, payload)], (code, reason)); (None, '') on EOF."""
    out = []
    try:
        for _ in range(limit):
            fin, op, p = c.recv_frame()
            if op == CLOSE:
                return out, close_of(p)
            out.append((op, p))
    except (EOFError, ConnectionError, socket.timeout):
        pass
    return out, (None, "")


def children(pid):
    """The pids of pid's child processes."""
    kids = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as f:
            kids += [int(k) for k in f.read().split()]
    return kids


def state(pid):
    """The one-letter state of a process (Z: zombie), None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


count = script("count.sh", "#!/bin/sh\nfor i in 1 2 3; do echo $i; done\n")
fail = script("fail.sh", "#!/bin/sh\necho bye\nexit 3\n")
env = script("env.sh", "#!/bin/sh\nenv\n")
noterm = script("noterm.py", f"#!{PY}\nimport os, signal, time\n"
                "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                "print(os.getpid(), flush=True)\n"
                "while True:\n    time.sleep(0.05)\n")

# ----- lines and messages, exit codes, stderr --------------------------------------------------
with serve("--exec", "echo started >&2; cat") as srv:
    c = Raw(srv.port)
    c.send(frame(TEXT, b"hello"))
    fin, op, p = c.recv_frame()
    ok(op == TEXT and p == b"hello", "--exec cat: a message comes back as a line", repr(p))
    c.send(frame(TEXT, b"two\nlines"))
    got = [c.recv_frame()[2] for _ in range(2)]
    ok(got == [b"two", b"lines"], "a message with a newline is two lines, two messages", repr(got))
    ok(srv.wait_log("started") == 1 and srv.count("127.0.0.1:") >= 1,
       "stderr lines are logged with the peer's address", srv.stderr)
    c.send(frame(CLOSE, struct.pack("!H", 1000)))
    c.close()

with serve("--", count) as srv:
    c = Raw(srv.port)
    msgs, (code, reason) = messages(c)
    ok([p for _, p in msgs] == [b"1", b"2", b"3"], "-- PROGRAM: each stdout line is a message",
       repr(msgs))
    ok(code == 1000 and reason == "program exited", "exit status 0: close 1000", f"{code} {reason}")
    c.close()

with serve("--exec", fail) as srv:
    c = Raw(srv.port)
    msgs, (code, reason) = messages(c)
    ok(msgs == [(TEXT, b"bye")] and code == 1011 and "status 3" in reason,
       "exit status 3: the output, then 1011 with the status", f"{msgs} {code} {reason}")
    c.close()

# Programs start off the loop and may exit before the loop learns their pid: every exit is
# still seen (a lost one would leave its connection open).
with serve("--", fail) as srv:
    conns = [Raw(srv.port) for _ in range(40)]
    ends = [messages(c) for c in conns]
    good = sum(m == [(TEXT, b"bye")] and e[0] == 1011 and "status 3" in e[1] for m, e in ends)
    ok(good == len(conns), "40 programs that exit at once: every connection closes with 1011",
       f"{good}: {ends[:3]}")
    for c in conns:
        c.close()

with serve("--", os.path.join(tmp, "no-such-program")) as srv:
    c = Raw(srv.port)
    msgs, (code, reason) = messages(c)
    # Under valgrind, posix_spawn cannot share memory with its child (CLONE_VM), so a failed
    # exec is no longer reported to the parent: the child exits 127, as sh's would.
    spawn_failed = reason == "cannot start the program" and srv.wait_log("cannot start")
    exec_failed = os.environ.get("WSK_VALGRIND") and reason == "program exited with status 127"
    ok(code == 1011 and (spawn_failed or exec_failed),
       "a program that cannot start: 1011, and the log says why", f"{code} {reason}")
    c.close()

with serve("--exec", "kill -9 $$") as srv:
    c = Raw(srv.port)
    msgs, (code, reason) = messages(c)
    ok(code == 1011 and "signal 9" in reason, "killed by a signal: 1011 says which", f"{code} {reason}")
    c.close()

with serve("--exec", "printf 'crlf\\r\\n'; head -c 100000 /dev/zero | tr '\\0' a; echo; "
           "printf 'no newline'") as srv:
    c = Raw(srv.port)
    msgs, (code, _) = messages(c)
    ok([len(p) for _, p in msgs] == [4, 65536, 100000 - 65536, 10] and msgs[0][1] == b"crlf" and
       msgs[-1][1] == b"no newline" and code == 1000,
       "CRLF ends a line; a line over 64 KiB goes in pieces; the last line needs no newline",
       repr([len(p) for _, p in msgs]))
    c.close()

with serve("--binary", "--", "cat") as srv:
    c = Raw(srv.port)
    data = bytes(range(256)) + b"\n\0"
    c.send(frame(BINARY, data))
    got = b""
    while len(got) < len(data):
        fin, op, p = c.recv_frame()
        ok(op == BINARY, "--binary: stdout chunks are binary messages") if not got else None
        got += p
    ok(got == data, "--binary: raw bytes both ways, no newline added", repr(got[:20]))
    c.close()

# ----- environment ------------------------------------------------------------------------------
os.environ["WSK_PASSED"] = "yes"
os.environ["WSK_HIDDEN"] = "no"
with serve("--passenv", "PATH,WSK_PASSED", "--env", "GREETING=hi there", "--", env) as srv:
    c = Raw(srv.port, path="/a/b?x=1&y=%20")
    msgs, _ = messages(c)
    e = dict(p.decode().split("=", 1) for _, p in msgs if b"=" in p)
    want = {"REMOTE_ADDR": "127.0.0.1", "SERVER_PORT": str(srv.port), "REQUEST_METHOD": "GET",
            "QUERY_STRING": "x=1&y=%20", "REQUEST_URI": "/a/b?x=1&y=%20", "SCRIPT_NAME": "/",
            "PATH_INFO": "/a/b", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_UPGRADE": "websocket",
            "GATEWAY_INTERFACE": "websocketd-CGI/0.1", "WSK_PASSED": "yes", "GREETING": "hi there"}
    bad = {k: (v, e.get(k)) for k, v in want.items() if e.get(k) != v}
    ok(not bad, "the CGI-style environment, --passenv and --env", repr(bad))
    ok("WSK_HIDDEN" not in e and "REMOTE_PORT" in e and "UNIQUE_ID" in e and "HTTPS" not in e,
       "variables not passed on stay out; REMOTE_PORT and UNIQUE_ID are set", repr(sorted(e)))
    c.close()

# ----- the client goes: stdin closed, SIGTERM, SIGKILL; no zombie ------------------------------
with serve("--close-grace", "200ms", "--", noterm) as srv:
    c = Raw(srv.port)
    pid = int(c.recv_frame()[2])
    ok(state(pid) not in (None, "Z"), "the program runs while its client is there")
    c.close()
    gone = wait_for(lambda: state(pid) is None, 5)
    ok(gone, "a program ignoring SIGTERM is killed (SIGKILL after --close-grace) and reaped",
       f"state {state(pid)}")

with serve("--close-grace", "100ms", "--exec", "sleep 30; echo never") as srv:
    c = Raw(srv.port)
    kids = wait_for(lambda: children(srv.proc.pid), 5)
    grand = wait_for(lambda: kids and children(kids[0]), 5) or []
    c.close()
    # The grandchild is reparented once the shell dies: a zombie until its new parent reaps it.
    ok(grand and wait_for(lambda: all(state(p) in (None, "Z") for p in kids + grand), 5),
       "SIGTERM reaches the program's own children too (its process group)",
       f"{[(p, state(p)) for p in kids + grand]}")

# ----- backpressure both ways -------------------------------------------------------------------
with serve("--exec", "yes 0123456789012345678901234567890123456789") as srv:
    c = Raw(srv.port, rcvbuf=4096)  # and never reads
    kids = wait_for(lambda: children(srv.proc.pid), 5)
    yes = kids[0] if kids else None

    def blocked():
        # The program sleeps in write(2) once wsserve stops reading its stdout.
        return yes and state(yes) == "S"
    ok(wait_for(lambda: blocked() and blocked(), 10), "a program flooding stdout is blocked",
       f"state {state(yes)}")
    r1 = srv.rss()
    ok(r1 < RSS_MAX, f"and wsserve stays small ({r1 >> 20} MiB)")
    c.close()

with serve("--exec", "sleep 30") as srv:
    c = Raw(srv.port)
    c.sock.setblocking(False)
    sent, blocked, pending = 0, False, b""
    msg = frame(TEXT, b"x" * 1023)
    while sent < 64 << 20:  # bounded: 64 MiB at most
        pending = pending or msg
        try:
            n = c.sock.send(pending)
            sent, pending = sent + n, pending[n:]
        except BlockingIOError:
            # Room again within 0.5 s means wsserve still reads; none, that it paused.
            if not select.select([], [c.sock], [], 0.5)[1]:
                blocked = True
                break
    ok(blocked and sent < 32 << 20,
       f"a program that never reads stdin stops wsserve reading the socket ({sent >> 10} KiB in)")
    ok(srv.rss() < RSS_MAX, f"wsserve stays small ({srv.rss() >> 20} MiB)")
    # A reset reaches a paused socket (a FIN would wait behind the unsent data).
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
    ok(wait_for(lambda: not children(srv.proc.pid), 5), "a paused client that resets is noticed, "
       "and its program goes", srv.stderr)

# ----- many connections, --max-forks ------------------------------------------------------------
# 1,000 connections, each with its program (200 under valgrind, which runs each far slower): the
# server holds four descriptors per connection and this process one, under a limit that the
# server inherits.
N = 200 if os.environ.get("WSK_VALGRIND") else 1000
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
need = 5 * N + 256
try:
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, max(hard, need)))
except (ValueError, OSError):
    N = max(50, (soft - 256) // 5)
with serve("--exec", "cat") as srv:
    conns = [Raw(srv.port) for _ in range(N)]
    for i, c in enumerate(conns):
        c.send(frame(TEXT, b"n%d" % i))
    good = sum(c.recv_frame()[2] == b"n%d" % i for i, c in enumerate(conns))
    ok(good == N and len(children(srv.proc.pid)) == N, f"{N} connections, a program each ({good})")
    # Programs are cloned by threads with a table of descriptors of their own: a clone copies
    # none of the N sockets and 3 N pipes, and holds none open past the loop's close.
    tables = sorted(len(os.listdir(f"/proc/{srv.proc.pid}/task/{t}/fd"))
                    for t in os.listdir(f"/proc/{srv.proc.pid}/task"))
    ok(tables[0] < 16 and tables[-1] > 4 * N,
       "the threads that start programs hold none of the connections' descriptors", str(tables))
    for c in conns:
        c.close()
    ok(wait_for(lambda: not children(srv.proc.pid), 30), "every program reaped once they closed",
       f"{len(children(srv.proc.pid))} left")

# --threads 2: each thread starts the programs of its own connections and reaps them through
# their pidfds on its own loop (the open line of -v names the thread).  Every program answers
# once and exits with status 3: both threads see each exit and its status, and none is left.
def on_both_threads(srv, least=8, path="/"):
    """Connections to a wsserve -v --threads 2 until both threads have some (60 at most, least
    at least): (conns, {thread: [conns]}), the thread read from each one's open line."""
    conns, threads = [], {}
    while len(conns) < 60 and len(threads) < 2 or len(conns) < least:
        c = Raw(srv.port, path=path)
        conns.append(c)
        peer = "127.0.0.1:%d:" % c.sock.getsockname()[1]
        srv.wait_log("open", peer)
        for t in ("0", "1"):
            if srv.count(", thread " + t, peer):
                threads.setdefault(t, []).append(c)
    return conns, threads


with serve("-v", "--threads", "2", "--exec", "read l; echo \"got $l\"; exit 3") as srv:
    conns, threads = on_both_threads(srv)
    ok(sorted(threads) == ["0", "1"], "--threads 2: connections on both threads",
       str({t: len(cs) for t, cs in threads.items()}))
    for i, c in enumerate(conns):
        c.send(frame(TEXT, b"x%d" % i))
    res = {t: [messages(c) for c in cs] for t, cs in threads.items()}
    good = {t: sum(m == ([(TEXT, b"got x%d" % conns.index(c))],
                         (1011, "program exited with status 3"))
                   for c, m in zip(threads[t], ms)) for t, ms in res.items()}
    ok(all(good[t] == len(threads[t]) for t in threads),
       "--threads 2: each thread runs its connections' programs and sees their exit status",
       str(good) + " " + str(res))
    for c in conns:
        c.close()
    ok(wait_for(lambda: not children(srv.proc.pid), 10), "--threads 2: every program reaped",
       str([(k, state(k)) for k in children(srv.proc.pid)]))

# Without pidfd_open (valgrind 3.19; WSK_NO_PIDFD=1 asks for it, a test hook) each loop polls
# its own programs: with --threads 2 every exit is still seen with its status, on both threads,
# and none is left; the shared program is restarted after a crash.
os.environ["WSK_NO_PIDFD"] = "1"
try:
    with serve("-v", "--threads", "2", "--", fail) as srv:
        ok(srv.wait_log("reaped by polling (WSK_NO_PIDFD") == 1,
           "WSK_NO_PIDFD=1: the log says the programs are polled", srv.stderr)
        conns = [Raw(srv.port) for _ in range(30)]
        ends = [messages(c) for c in conns]
        good = sum(m == [(TEXT, b"bye")] and e == (1011, "program exited with status 3")
                   for m, e in ends)
        ok(good == len(conns), "polled: every program's exit and status reach its connection",
           f"{good}: {ends[:3]}")
        ok(srv.count(", thread 0") and srv.count(", thread 1"), "polled: on both threads",
           srv.stderr[-2000:])
        for c in conns:
            c.close()
        ok(wait_for(lambda: not children(srv.proc.pid), 10), "polled: every program reaped",
           str([(k, state(k)) for k in children(srv.proc.pid)]))
    with serve("--exec-shared", "read l; echo bye; exit 1", "--restart-message", "again") as srv:
        a = Raw(srv.port)
        a.send(frame(TEXT, b"x"))
        got = [a.recv_frame()[2] for _ in range(2)]
        ok(got == [b"bye", b"again"], "polled: the shared program's exit is seen, clients told",
           repr(got))
        ok(srv.wait_log("program restarted, pid") == 1, "polled: and it is restarted")
        a.close()
finally:
    del os.environ["WSK_NO_PIDFD"]


def pipes(pid):
    """How many of pid's descriptors are pipes or pidfds, what a program holds in wsserve.
    Sockets and files are left out: with --threads the connection wait_ready made may still be
    open on a loop that has only just started, and a log line may be reading the time zone."""
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        n += target.startswith("pipe:") or "pidfd" in target
    return n


# A program whose pipes do not all fit in wsserve's descriptor table (RLIMIT_NOFILE): its client
# is told, no descriptor stays behind, the program goes.  The limits from one with room for the
# socket only to one with room for all are tried (none, one or two of the pipes fit).
refused, leaks = [], []
# valgrind takes descriptors of its own from under the limit: the search is its, not wsserve's.
for nofile in range(9, 9 if os.environ.get("WSK_VALGRIND") else 40):
    try:
        srv = Server("--exec", "cat", nofile=nofile)
    except RuntimeError:
        continue  # no room to start at all (--threads N takes more descriptors)
    try:
        base = pipes(srv.proc.pid)
        try:
            c = Raw(srv.port, timeout=3)
            c.send(frame(TEXT, b"x"))
            msgs, (code, reason) = messages(c, 5)
            c.close()
        except (OSError, EOFError):
            continue  # no room for the socket either
        if msgs == [(TEXT, b"x")]:
            break  # room for all
        if code == 1011 and reason == "cannot start the program":
            refused.append(nofile)
            if not (wait_for(lambda: pipes(srv.proc.pid) == base, 5)
                    and wait_for(lambda: not children(srv.proc.pid), 5)):
                leaks.append(nofile)
    finally:
        srv.stop()
if os.environ.get("WSK_VALGRIND"):
    skip("no room for a program's pipes", "descriptor limits under valgrind are valgrind's")
else:
    ok(len(refused) >= 3 and not leaks,
       "no room for a program's pipes: 1011, and no descriptor or program stays behind",
       f"refused at {refused}, left something at {leaks}")

with serve("--max-forks", "2", "--exec", "cat") as srv:
    a, b = Raw(srv.port), Raw(srv.port)
    c = Raw(srv.port, handshake=False)
    from wstest import request  # noqa: E402
    c.send(request())
    st, h, body = c.read_http()
    ok(st == 503, "--max-forks 2: the third upgrade gets 503", str(st))
    # The programs start just after the handshakes (off the loop), and count from the upgrade.
    wait_for(lambda: len(children(srv.proc.pid)) == 2, 5)
    a.close()
    ok(wait_for(lambda: len(children(srv.proc.pid)) == 1, 5), "a slot frees when a program ends")
    d = Raw(srv.port)
    d.send(frame(TEXT, b"ok"))
    ok(d.recv_frame()[2] == b"ok", "and the next connection gets a program")
    for x in (b, c, d):
        x.close()

# ----- --dir and --static -----------------------------------------------------------------------
progs = os.path.join(tmp, "progs")
os.mkdir(progs)
shutil.copy(count, os.path.join(progs, "count"))
shutil.copy(env, os.path.join(progs, "env"))
site = os.path.join(tmp, "site")
os.makedirs(os.path.join(site, "sub"))
with open(os.path.join(site, "index.html"), "w") as f:
    f.write("<p>home</p>")
with open(os.path.join(site, "app.js"), "w") as f:
    f.write("let x = 1;")
with open(os.path.join(tmp, "secret.txt"), "w") as f:
    f.write("secret")
os.symlink(os.path.join(tmp, "secret.txt"), os.path.join(site, "out"))
os.symlink(os.path.join(site, "app.js"), os.path.join(site, "in.js"))
os.makedirs(os.path.join(site, "leak"))
os.symlink(os.path.join(tmp, "secret.txt"), os.path.join(site, "leak", "index.html"))


def get(port, path):
    c = Raw(port, handshake=False)
    c.send(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    try:
        return c.read_http()
    finally:
        c.close()


with serve("--dir", progs, "--static", site) as srv:
    c = Raw(srv.port, path="/count")
    msgs, (code, _) = messages(c)
    ok([p for _, p in msgs] == [b"1", b"2", b"3"] and code == 1000, "--dir: the path picks the program")
    c.close()
    c = Raw(srv.port, path="/env/extra?q=1")
    msgs, _ = messages(c)
    e = dict(p.decode().split("=", 1) for _, p in msgs if b"=" in p)
    ok(e.get("SCRIPT_NAME") == "/env" and e.get("PATH_INFO") == "/extra",
       "--dir: SCRIPT_NAME is the program, PATH_INFO the rest", f"{e.get('SCRIPT_NAME')} {e.get('PATH_INFO')}")
    c.close()
    c = Raw(srv.port, handshake=False)
    from wstest import request  # noqa: E402,F811
    c.send(request(path="/nothing"))
    ok(c.read_http()[0] == 404, "--dir: no such program, 404")
    c.close()
    st, h, body = get(srv.port, "/")
    ok(st == 200 and body == b"<p>home</p>" and h["content-type"].startswith("text/html"),
       "--static: / is index.html, as text/html", f"{st} {h}")
    st, h, body = get(srv.port, "/app.js")
    ok(st == 200 and h["content-type"].startswith("text/javascript"), "--static: Content-Type by extension")
    st, _, body = get(srv.port, "/in.js")
    ok(st == 200 and body == b"let x = 1;", "--static: a symlink inside DIR is followed")
    for path in ["/../secret.txt", "/%2e%2e/secret.txt", "/sub/%2E%2E/%2e%2e/secret.txt",
                 "/..%2fsecret.txt", "/out", "/sub/../../secret.txt", "/%00"]:
        st, _, body = get(srv.port, path)
        ok(st == 404 and b"secret" not in body, f"--static: {path} stays inside DIR ({st})")
    st, _, _ = get(srv.port, "/sub/")
    ok(st == 403, f"--static: no directory listing without --listing ({st})")
    st, _, body = get(srv.port, "/leak/")
    ok(st != 200 and b"secret" not in body,
       f"--static: an index.html that links out of DIR is not served ({st})")

with serve("--dir", progs, "--static", site, "--listing") as srv:
    st, _, body = get(srv.port, "/sub/")
    ok(st == 200 and b"<ul>" in body, "--static --listing: a directory is listed")

# ----- --exec-shared ----------------------------------------------------------------------------
hub = script("hub.py", f"#!{PY}\nimport sys\n"
             "for line in sys.stdin:\n"
             "    cid, msg = line.rstrip('\\n').split('\\t', 1)\n"
             "    if msg == 'crash':\n"
             "        sys.exit(1)\n"
             "    print(f'@{cid}\\techo {msg}', flush=True)\n"
             "    print(f'news\\t{cid} said {msg}', flush=True)\n")


def text(c):
    fin, op, p = c.recv_frame()
    return p.decode()


with serve("--exec-shared", hub, "--restart-message", "be right back") as srv:
    a = Raw(srv.port)
    b = Raw(srv.port)
    a.send(frame(TEXT, b"x"))
    got_a = {text(a), text(a)}
    # IDs count connections from 1; with --threads N (WSK_THREADS) ID % N is the thread.
    ida = ([m.split("\t")[1].split()[0] for m in got_a if m.startswith("news\t")] or ["?"])[0]
    ok(got_a == {"echo x", f"news\t{ida} said x"} and (ida == "1" or THREADS and ida.isdigit()),
       "--exec-shared: ID<TAB>message in, @ID reply to the sender only, other lines to everyone",
       repr(got_a))
    ok(text(b) == f"news\t{ida} said x", "the other client gets the broadcast line only")
    b.send(frame(TEXT, b"crash"))
    ok(text(a) == "be right back" and text(b) == "be right back",
       "the program died: every client is told (--restart-message)")
    ok(srv.wait_log("program restarted, pid") == 1, "the restart is logged")
    a.send(frame(TEXT, b"y"))
    got = [text(a), text(a)]
    ok(set(got) == {"echo y", f"news\t{ida} said y"} and text(b) == f"news\t{ida} said y",
       "the restarted program reads the clients and reaches them", repr(got))
    for c in (a, b):
        c.close()

with serve("--exec-shared", hub, "--topics") as srv:
    a = Raw(srv.port, path="/news")
    b = Raw(srv.port)
    b.send(frame(TEXT, b"z"))
    got = text(a)
    ok(got.endswith(" said z") and got.split()[0].isdigit(),
       "--topics: TOPIC<TAB>line goes to the clients of /TOPIC", got)
    ok(text(b) == "echo z", "and not to the others (the sender got its @ID reply)")
    for c in (a, b):
        c.close()
    pid = srv.proc.pid
    kids = children(pid)
    srv.stop()
    ok(kids and all(state(k) is None for k in kids), "the shared program goes with wsserve")

# A shared program that does not read: the sender is paused past 64 KiB, and resumed once the
# program reads again; every message then arrives, none dropped.
go = os.path.join(tmp, "go")
slow = script("slow.py", f"#!{PY}\nimport os, sys, time\n"
              f"while not os.path.exists({go!r}):\n    time.sleep(0.02)\n"
              "n = 0\n"
              "for line in sys.stdin:\n"
              "    n += 1\n"
              "    if n % 100 == 0:\n"
              "        print(f'got {n}', flush=True)\n")
with serve("--exec-shared", slow) as srv:
    a = Raw(srv.port)
    for i in range(300):
        a.send(frame(TEXT, b"m" * 1000))
    with open(go, "w"):
        pass
    a.sock.settimeout(10)
    got = []
    try:
        while len(got) < 3:
            got.append(text(a))
    except (socket.timeout, EOFError, ConnectionError):
        pass
    ok(got == ["got 100", "got 200", "got 300"],
       "--exec-shared: a sender paused at the stdin cap is resumed; all 300 arrive", repr(got))
    ok(srv.count("dropped") == 0, "and none was dropped", srv.stderr)
    a.close()

# --passenv and --env as for --exec; --join-leave: who comes and goes, on the program's stdin.
roster = script("roster.py", f"#!{PY}\nimport os, sys\n"
                "for line in sys.stdin:\n"
                "    line = line.rstrip('\\n')\n"
                "    if line.endswith('\\tenv'):\n"
                "        v = [os.environ.get(k, '-') for k in ('FOO', 'HOME', 'WSK_BIN')]\n"
                "        print('env ' + ' '.join(v), flush=True)\n"
                "    else:\n"
                "        print('got ' + line, flush=True)\n")
os.environ["HOME"] = os.environ.get("HOME") or "/root"
with serve("--exec-shared", roster, "--passenv", "PATH,HOME", "--env", "FOO=bar",
           "--join-leave") as srv:
    a = Raw(srv.port, path="/room")
    got = text(a).split("\t")
    ok(got[0].startswith("got +") and got[0][5:].isdigit() and got[1].startswith("127.0.0.1:")
       and got[2] == "/room",
       "--join-leave: +ID<TAB>ADDRESS<TAB>PATH when a client joins", repr(got))
    a.send(frame(TEXT, b"env"))
    env_line = text(a)
    ok(env_line == f"env bar {os.environ['HOME']} -",
       "--exec-shared --passenv, --env: those variables, not the others", env_line)
    b = Raw(srv.port)
    joined = text(a).split("\t")[0]
    ok(joined.startswith("got +") and joined != got[0], "a second client joins", joined)
    b.send(frame(CLOSE, struct.pack("!H", 1000)))
    ok(text(a) == f"got -{joined[5:]}\t1000", "-ID<TAB>CODE when it leaves")
    b.close()
    a.close()

# --exec-shared --threads 2: the program lives on the first thread; clients of both threads
# reach it (ID<TAB>message), get its broadcast lines and their own @ID replies, are told of a
# restart and reach the restarted program.


def frames_until(c, pred=lambda m: False, most=500):
    """Text frames of c until one satisfies pred (included), at most `most`, or a timeout."""
    out = []
    try:
        while len(out) < most:
            out.append(text(c))
            if pred(out[-1]):
                break
    except (socket.timeout, EOFError, ConnectionError):
        pass
    return out


with serve("-v", "--threads", "2", "--exec-shared", hub, "--restart-message", "again") as srv:
    conns, threads = on_both_threads(srv, least=4)
    ok(sorted(threads) == ["0", "1"], "--exec-shared --threads 2: connections on both threads",
       str({t: len(cs) for t, cs in threads.items()}))
    for i, c in enumerate(conns):
        c.send(frame(TEXT, b"m%d" % i))
    n = len(conns)
    got = [sorted(frames_until(c, most=n + 1)) for c in conns]
    ids = [sorted(m.split("\t")[1].split()[0] for m in g if m.startswith("news\t"))
           for g in got]
    own = [[m for m in g if m.startswith("echo ")] for g in got]
    ok(all(o == ["echo m%d" % i] for i, o in enumerate(own)),
       "--threads 2: each client, on either thread, gets its own @ID reply only", repr(own[:4]))
    ok(all(len(set(x)) == n and x == ids[0] for x in ids),
       "--threads 2: every client gets every client's broadcast line, ids unique", repr(ids[:2]))
    t0 = {int(i) % 2 for i in ids[0]}
    ok(t0 == {0, 1}, "--threads 2: an ID says its thread (ID % 2)", repr(ids[0]))
    threads["1"][0].send(frame(TEXT, b"crash"))
    told = [frames_until(c, lambda m: m == "again")[-1:] for c in conns]
    ok(told == [["again"]] * n, "--threads 2: the restart message reaches the clients of both "
       "threads", repr(told[:4]))
    ok(srv.wait_log("program restarted, pid") == 1, "--threads 2: the program is restarted")
    for t, c in (("0", threads["0"][0]), ("1", threads["1"][0])):
        c.send(frame(TEXT, b"after" + t.encode()))
        g = frames_until(c, lambda m: m.startswith("echo "))
        ok(g[-1:] == ["echo after" + t], f"--threads 2: a client of thread {t} reaches the "
           "restarted program and gets its reply", repr(g[-3:]))
    for c in conns:
        c.close()

# Senders on both threads paused at the stdin cap while the program reads nothing (the second
# thread's through the counts every thread reads) are all resumed once it reads: none dropped.
go2 = os.path.join(tmp, "go2")
slow2 = script("slow2.py", open(slow).read().replace(repr(go), repr(go2)))
with serve("-v", "--threads", "2", "--exec-shared", slow2) as srv:
    conns, threads = on_both_threads(srv, least=2)
    senders = [threads["0"][0], threads["1"][0]] if len(threads) == 2 else conns[:2]
    for c in senders:
        for i in range(150):
            c.send(frame(TEXT, b"m" * 1000))
    with open(go2, "w"):
        pass
    for c in senders:
        c.sock.settimeout(10)
    got = [frames_until(c, lambda m: m == "got 300", most=3) for c in senders]
    ok(got == [["got 100", "got 200", "got 300"]] * 2,
       "--threads 2: senders of both threads paused at the stdin cap are resumed; all arrive",
       repr(got))
    ok(srv.count("dropped") == 0, "--threads 2: none dropped", srv.stderr[-1500:])
    for c in conns:
        c.close()

with serve("-v", "--threads", "2", "--exec-shared", hub, "--topics") as srv:
    subs, sthreads = on_both_threads(srv, least=4, path="/news")
    b = Raw(srv.port)
    b.send(frame(TEXT, b"z"))
    got = [(frames_until(c, most=1) or ["-"])[0] for c in subs]
    ok(sorted(sthreads) == ["0", "1"] and all(g.endswith(" said z") for g in got),
       "--exec-shared --topics --threads 2: TOPIC<TAB>line reaches /TOPIC on both threads",
       repr(got[:4]))
    ok(text(b) == "echo z", "and the sender its reply")
    for c in subs + [b]:
        c.close()

# ----- the same scripts through websocketd ------------------------------------------------------
WSD = shutil.which("websocketd")
if not WSD:
    skip("websocketd comparison", "websocketd is not installed (scripts/install-deps)")
else:
    def through_websocketd(prog, path="/", send=None):
        port = free_port()
        p = subprocess.Popen([WSD, "--port", str(port), "--address", "127.0.0.1", prog],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            def up():
                try:
                    socket.create_connection(("127.0.0.1", port), 0.2).close()
                    return True
                except OSError:
                    return False
            wait_for(up, 10)
            return talk(port, path, send)
        finally:
            p.terminate()
            p.wait(10)

    def talk(port, path, send):
        c = Raw(port, path=path)
        if send:
            c.send(frame(TEXT, send))
            c.sock.settimeout(2)
            got = [c.recv_frame()[2]]
            c.close()
            return got, None
        msgs, (code, _) = messages(c)
        c.close()
        return [p for _, p in msgs], code

    for name, prog, send in [("counting", count, None), ("cat", shutil.which("cat"), b"hi")]:
        theirs, _ = through_websocketd(prog, send=send)
        with serve("--", prog) as srv:
            ours, _ = talk(srv.port, "/", send)
        ok(ours == theirs, f"websocketd and wsserve send the same for {name}", f"{ours} vs {theirs}")
    theirs, _ = through_websocketd(env, "/p?q=1")
    with serve("--", env) as srv:
        ours, _ = talk(srv.port, "/p?q=1", None)
    # LD_LIBRARY_PATH is passed on by both when set: under valgrind, wsserve's has it.
    names = lambda msgs: {p.split(b"=", 1)[0].decode() for p in msgs  # noqa: E731
                          if b"=" in p and not p.startswith(b"LD_LIBRARY_PATH=")}
    ok(names(theirs) - names(ours) == set(), "every variable websocketd sets, wsserve sets",
       repr(names(theirs) - names(ours)))
    ok(names(ours) - names(theirs) <= {"HTTP_HOST"},
       "wsserve's extra variables are the documented ones (HTTP_HOST)", repr(names(ours) - names(theirs)))

shutil.rmtree(tmp, ignore_errors=True)
done()
