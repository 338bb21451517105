#!/usr/bin/python3
"""Many connections: wsserve --echo holds several thousand concurrent WebSocket connections on
loopback (3000, or $WSK_MANY) and echoes on every one of them, twice; the server's memory per
connection (VmRSS growth / connections) is measured and printed.  The descriptor limit
(RLIMIT_NOFILE) is raised here for the test and the server it starts."""
import os
import resource
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wstest import Raw, Server, accept_key, done, frame, ok, request, skip, sanitized  # noqa: E402

N = int(os.environ.get("WSK_MANY", "3000"))
BATCH = 500
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def open_all(port, n):
    """n upgraded sockets, opened in batches so the listen backlog never overflows."""
    socks = []
    for start in range(0, n, BATCH):
        batch = []
        for _ in range(min(BATCH, n - start)):
            s = Raw(port, handshake=False, timeout=20)
            s.send(request(key=KEY))
            batch.append(s)
        for s in batch:
            status, headers = s.read_head()
            if status != 101 or headers.get("sec-websocket-accept") != accept_key(KEY):
                raise AssertionError((status, headers))
        socks += batch
    return socks


def echo_all(socks, size, tag):
    """Sends a distinct message on every socket, then checks every echo; the count that matched."""
    sent = []
    for i, s in enumerate(socks):
        data = struct.pack("!I", i) + tag + os.urandom(size - 4 - len(tag))
        s.send(frame(2, data))
        sent.append(data)
    good = 0
    for s, data in zip(socks, sent):
        fin, op, p = s.recv_frame()
        good += op == 2 and p == data
    return good


soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
need = 2 * N + 256  # this process's sockets and the server's, which inherits the limit
try:
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, max(hard, need)))
except (ValueError, OSError) as e:
    skip(f"{N} concurrent connections", f"cannot raise RLIMIT_NOFILE to {need}: {e}")
    done()

with Server("--echo", "-q") as srv:
    base = srv.rss()
    socks = []
    try:
        t0 = time.time()
        socks = open_all(srv.port, N)
        t_open = time.time() - t0
        ok(len(socks) == N, f"{N} concurrent connections upgraded", f"{len(socks)}")
        held = srv.rss()  # each 101 was sent after its connection's memory was allocated
        per = (held - base) / N
        print(f"# {N} connections opened in {t_open:.2f}s; server RSS {base // 1024} KiB idle, "
              f"{held // 1024} KiB with {N} open: {per:.0f} bytes per connection", flush=True)
        if sanitized():
            skip("server memory per idle connection under 4 KiB", "RSS is not meaningful under ASan or valgrind")
        else:
            ok(per < 4096, "server memory per idle connection under 4 KiB", f"{per:.0f} bytes")
        t0 = time.time()
        good = echo_all(socks, 64, b"first")
        ok(good == N, f"echo on all {N} connections", f"{good} matched")
        good = echo_all(socks, 4000, b"second")
        ok(good == N, f"second round of 4000-byte messages on all {N} connections",
           f"{good} matched")
        print(f"# two echo rounds on {N} connections in {time.time() - t0:.2f}s", flush=True)
        after = srv.rss()
        print(f"# server RSS after the echoes: {after // 1024} KiB", flush=True)
        closed = 0
        for s in socks:
            s.send(frame(8, struct.pack("!H", 1000)))
        for s in socks:
            fin, op, p = s.recv_frame()
            closed += op == 8 and p[:2] == struct.pack("!H", 1000)
        ok(closed == N, f"close 1000 answered on all {N} connections", f"{closed}")
    except Exception as e:  # noqa: BLE001
        ok(False, f"{N} concurrent connections", repr(e))
    finally:
        for s in socks:
            s.close()
    rc = srv.stop()
ok(rc == 0, "server exits 0 after SIGTERM", f"rc={rc}")
done()
