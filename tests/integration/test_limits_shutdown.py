#!/usr/bin/python3
"""Graceful shutdown under load: 40 clients are receiving a stream of echoes when wsserve gets
SIGTERM.  Every client gets close 1001 after the data queued before it, the server exits within
its 3 s grace with status 0; and with status 2 (and a line saying so) when one more client had
stopped reading, so that its queued data had to be dropped."""
import os
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wstest import Raw, Server, done, frame, ok, wait_for  # noqa: E402

TEXT, BINARY, CLOSE = 1, 2, 8
CLIENTS = 40


def all_read(sink):
    """True when the server has read everything the sink sent: none of it waits in the sink's
    send queue or the server's receive queue (ss)."""
    port = sink.sock.getsockname()[1]
    out = subprocess.run(["ss", "-tnH", "state", "established",
                          f"( sport = :{port} or dport = :{port} )"],
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        recv_q, send_q, local, peer = line.split()[:4]
        if (local.endswith(f":{port}") and int(send_q)) or (peer.endswith(f":{port}") and
                                                              int(recv_q)):
            return False
    return bool(out)


def streamer(port, results, progress, i, stop_sending):
    """Keeps 8 messages in flight and checks every echo, in order, until the server's close:
    results[i] = (close code, echoes received in order, echoes out of order); progress[i] counts
    the echoes so far."""
    try:
        c = Raw(port, timeout=10)
        sent, good, bad = 0, 0, 0
        for _ in range(8):
            c.send(frame(BINARY, struct.pack("!I", sent) + b"d" * 4092))
            sent += 1
        while True:
            fin, op, p = c.recv_frame()
            if op == CLOSE:
                code = struct.unpack("!H", p[:2])[0] if len(p) >= 2 else None
                c.send(frame(CLOSE, p[:2]))
                results[i] = (code, good, bad, c.eof(5))
                c.close()
                return
            if p[:4] == struct.pack("!I", good):
                good += 1
            else:
                bad += 1
            progress[i] += 1
            if not stop_sending.is_set():
                try:
                    c.send(frame(BINARY, struct.pack("!I", sent) + b"d" * 4092))
                    sent += 1
                except OSError:
                    pass
    except Exception as e:  # noqa: BLE001
        results[i] = repr(e)


def run(slow):
    name = "with a client that stopped reading" if slow else "all clients reading"
    srv = Server("--echo")
    port = srv.port
    results, progress = [None] * CLIENTS, [0] * CLIENTS
    stop_sending = threading.Event()
    threads = [threading.Thread(target=streamer, args=(port, results, progress, i, stop_sending))
               for i in range(CLIENTS)]
    for t in threads:
        t.start()
    sink = None
    if slow:
        sink = Raw(port, rcvbuf=4096, timeout=10)
        big = frame(BINARY, b"s" * 65536)
        for _ in range(128):  # 8 MiB of echoes it will not read
            sink.send(big)
    # Every client has echoes on the way when the signal comes, and the server has read all
    # the echo requests of the client that does not read (their echoes fill its queue).
    streaming = wait_for(lambda: all(n >= 16 for n in progress), 10)
    ok(streaming, f"SIGTERM under load ({name}): all {CLIENTS} clients receive echoes first",
       str(progress))
    if sink:
        ok(wait_for(lambda: all_read(sink), 10),
           "SIGTERM: the server has read what the client that does not read sent")
    t0 = time.time()
    rc = srv.stop(timeout=10)
    took = time.time() - t0
    err = srv.stderr
    stop_sending.set()
    for t in threads:
        t.join(10)
    if sink:
        sink.close()
    codes = [r[0] if isinstance(r, tuple) else r for r in results]
    ok(all(c == 1001 for c in codes), f"SIGTERM under load ({name}): every client gets 1001",
       str(codes[:5]))
    ok(all(isinstance(r, tuple) and r[1] > 0 and r[2] == 0 for r in results),
       f"SIGTERM under load ({name}): echoes queued before the close arrive, in order",
       str(results[:3]))
    ok(all(isinstance(r, tuple) and r[3] for r in results),
       f"SIGTERM under load ({name}): the server closes TCP after the closing handshake")
    if slow:
        ok(rc == 2, "SIGTERM: exit status 2 when queued data had to be dropped",
           f"rc={rc}")
        ok("1 connection(s) still had unsent data" in err, "SIGTERM: the drop is reported once",
           err.strip()[-200:])
        ok(2.5 < took < 5, "SIGTERM: the client that does not read is given the 3 s grace",
           f"{took:.1f}s")
    else:
        ok(rc == 0, "SIGTERM: exit status 0 when everything was delivered",
           f"rc={rc}")
        ok(took < 2.5, "SIGTERM: the server exits as soon as every client has closed",
           f"{took:.1f}s")


run(False)
run(True)
done()
