#!/usr/bin/python3
"""Many connections: wsserve --echo holds several thousand concurrent WebSocket connections on
loopback (3000, or $WSK_MANY) and echoes on every one of them, twice; the server's memory per
connection (VmRSS growth / connections) is measured and printed.  The descriptor limit
(RLIMIT_NOFILE) is raised here for the test and the server it starts."""
import os
import resource
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wstest import BIN, Server, accept_key, done, ok, request, skip, sanitized, mask  # noqa: E402

N = int(os.environ.get("WSK_MANY", "3000"))
BATCH = 500
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def wsframe(op, payload):
    n = len(payload)
    hdr = struct.pack("!BB", 0x80 | op, 0x80 | n) if n < 126 else struct.pack(
        "!BBH", 0x80 | op, 0x80 | 126, n)
    key = os.urandom(4)
    return hdr + key + mask(payload, key)


def recv_exact(s, n, buf):
    while len(buf) < n:
        chunk = s.recv(65536)
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def read_frame(s):
    """One unmasked server frame: (opcode, payload)."""
    b = recv_exact(s, 2, b"")
    n, off = b[1] & 127, 2
    if n == 126:
        b = recv_exact(s, 4, b)
        n, off = struct.unpack("!H", b[2:4])[0], 4
    b = recv_exact(s, off + n, b)
    return b[0] & 15, b[off:off + n]


def read_head(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def open_all(port, n):
    """n upgraded sockets, opened in batches so the listen backlog never overflows."""
    socks = []
    for start in range(0, n, BATCH):
        batch = []
        for _ in range(min(BATCH, n - start)):
            s = socket.socket()
            s.settimeout(20)
            s.connect(("127.0.0.1", port))
            s.sendall(request(key=KEY))
            batch.append(s)
        for s in batch:
            head = read_head(s)
            if not head.startswith(b"HTTP/1.1 101") or accept_key(KEY).encode() not in head:
                raise AssertionError(head[:80])
        socks += batch
    return socks


def echo_all(socks, size, tag):
    """Sends a distinct message on every socket, then checks every echo; the count that matched."""
    sent = []
    for i, s in enumerate(socks):
        data = struct.pack("!I", i) + tag + os.urandom(size - 4 - len(tag))
        s.sendall(wsframe(2, data))
        sent.append(data)
    good = 0
    for s, data in zip(socks, sent):
        op, p = read_frame(s)
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
    time.sleep(0.1)
    base = rss(srv.proc.pid)
    socks = []
    try:
        t0 = time.time()
        socks = open_all(srv.port, N)
        t_open = time.time() - t0
        ok(len(socks) == N, f"{N} concurrent connections upgraded", f"{len(socks)}")
        time.sleep(0.2)
        held = rss(srv.proc.pid)
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
        after = rss(srv.proc.pid)
        print(f"# server RSS after the echoes: {after // 1024} KiB", flush=True)
        closed = 0
        for s in socks:
            s.sendall(wsframe(8, struct.pack("!H", 1000)))
        for s in socks:
            op, p = read_frame(s)
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
