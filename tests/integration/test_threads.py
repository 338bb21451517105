#!/usr/bin/python3
"""wsserve --threads N: N loops on N threads behave as one server.  A client's thread is read
from -v's open line ("ADDR:PORT: open, thread I"); clients are opened until every thread has
some (the kernel spreads them with SO_REUSEPORT).  A publish from a socket on one thread
reaches the subscribers on every other thread exactly once and in order; the chat room, its
"ready" and the broker's history span the threads; GET /metrics sums them; SIGTERM closes the
clients of every thread with 1001; bad --threads values are usage errors; wsbench -t spreads
its connections evenly over its threads; with --bridge, the acknowledgements of publishes on
every thread count the other nodes, and an outage's failed publishes are counted once each.
--accept one: the first thread deals connections out in turn, N of them land N/2 on each of
2 threads, alternately; --accept reuseport spreads them too; a bad --accept is a usage error;
with --max-connections the first thread's pause warning counts the whole group; --exec-shared's
@ID replies and broadcast lines reach a client of another thread in the order written, and the
restart message after a dead program's last lines; a loop thread's heap starts 16 MiB large.
--chat --rooms N: room K's members live on thread K % 2 (the library's connection affinity,
wsk_group_set_affinity), with either --accept mode, and a line reaches its room only; members
without ?room= fill the rooms in turn, one each; a first frame sent in the same write as the
upgrade request reaches the room although the connection was read on one thread and handed to
another ("handed from thread" at -v); over TLS connections stay where they were accepted."""
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.request

import websockets

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wstest import (BIN, Certs, Engine, Raw, Server, done, frame, free_port, nothing,  # noqa: E402
                    ok, request, run_cmd, sanitized, skip, tls_client_ctx, wait_for)

T = 10.0
OPEN = re.compile(r"127\.0\.0\.1:(\d+): open(?:, protocol \S+)?, thread (\d+)")


def connect(url):
    return websockets.connect(url, open_timeout=T, close_timeout=T, ping_interval=None,
                              max_size=None, compression=None, max_queue=None)


def threads_of(srv):
    """{client port: thread} from the server's open lines so far."""
    return {int(m.group(1)): int(m.group(2)) for line in list(srv.lines)
            for m in [OPEN.search(line)] if m}


def threads_for(srv, ports):
    """The threads of the clients on ports, once their open lines have been read: the server
    writes one before its 101, but the log is read by another thread of this process, which
    may not have read it when the client hears from the server."""
    wait_for(lambda: all(p in threads_of(srv) for p in ports), T)
    by_port = threads_of(srv)
    return [by_port.get(p) for p in ports]


async def spread(srv, url, nthreads, per_thread=2, limit=80):
    """Clients to url until each of nthreads threads has per_thread of them (at most limit):
    a list of (websocket, thread)."""
    clients = []
    while len(clients) < limit:
        ws = await connect(url).__aenter__()
        port = ws.local_address[1]
        wait_for(lambda: port in threads_of(srv), T)
        clients.append((ws, threads_of(srv).get(port)))
        counts = [sum(t == i for _, t in clients) for i in range(nthreads)]
        if min(counts) >= per_thread:
            break
    return clients


async def close_all(clients):
    await asyncio.gather(*(ws.close() for ws, _ in clients), return_exceptions=True)


async def recv_n(ws, n):
    return [await asyncio.wait_for(ws.recv(), T) for _ in range(n)]


def payload(k):
    """Message k: 16 B, 2 KiB or 70 KiB, its number first."""
    size = (16, 2048, 70 * 1024)[k % 3]
    head = f"{k:06d}:"
    return head + "x" * (size - len(head))


async def cross_thread_publish():
    with Server("--pubsub", "--threads", "3", "-v") as srv:
        clients = await spread(srv, srv.url("/news"), 3)
        by = {i: [ws for ws, t in clients if t == i] for i in range(3)}
        ok(all(by[i] for i in range(3)), "clients land on each of 3 threads",
           {i: len(v) for i, v in by.items()})
        pub = by[0][0]
        others = [ws for ws, _ in clients if ws is not pub]
        msgs = [payload(k) for k in range(150)]
        for m in msgs:
            await pub.send(m)
        got = await asyncio.gather(*(recv_n(ws, len(msgs)) for ws in others))
        ok(all(g == msgs for g in got),
           "a publish from thread 0 reaches every subscriber on threads 0, 1 and 2 in order "
           "(16 B, 2 KiB, 70 KiB)", [len(g) for g in got])
        quiet = await asyncio.gather(*(nothing(ws) for ws, _ in clients))
        ok(all(quiet), "... exactly once, and never back to the publisher")
        # Publishers on every thread at once: each one's messages arrive in its own order.
        pubs = [by[i][0] for i in range(3)]
        listener = by[1][-1]
        for k in range(60):
            for i, p in enumerate(pubs):
                await p.send(f"p{i}-{k}")
        got = await recv_n(listener, 60 * 3 - 60 * (listener in pubs))
        for i, p in enumerate(pubs):
            if p is listener:
                continue
            mine = [m for m in got if m.startswith(f"p{i}-")]
            ok(mine == [f"p{i}-{k}" for k in range(60)],
               f"publisher on thread {i}: its 60 messages in order on thread 1", len(mine))
        await close_all(clients)
    ok(srv.proc.returncode == 0, "exits 0 after SIGTERM", srv.proc.returncode)


async def chat_across_threads():
    n = 8
    with Server("--chat", "--clients", str(n), "--threads", "2", "-v") as srv:
        clients = []
        for k in range(n):
            ws = await connect(f"{srv.url()}?name=m{k}").__aenter__()
            clients.append(ws)
        firsts = await asyncio.gather(*(asyncio.wait_for(ws.recv(), T) for ws in clients))
        threads = set(threads_for(srv, [ws.local_address[1] for ws in clients]))
        ok(firsts == ["ready"] * n and threads == {0, 1},
           f"\"ready\" reaches the {n} members on both threads once the room is full",
           (firsts, threads))
        for k, ws in enumerate(clients):
            await ws.send(f"hi {k}")
        got = await asyncio.gather(*(recv_n(ws, n) for ws in clients))
        want = sorted(f"m{k}: hi {k}" for k in range(n))
        ok(all(sorted(g) == want for g in got), "every member gets every line, whatever thread")
        await close_all([(ws, 0) for ws in clients])


def http(url, data=None):
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    with urllib.request.urlopen(req, timeout=T) as r:
        return r.status, r.read().decode()


async def broker_across_threads():
    with Server("--pubsub", "--threads", "2", "--history", "50", "-v") as srv:
        base = f"http://127.0.0.1:{srv.port}"
        # Each POST is a new connection: the kernel spreads them over both threads.
        for k in range(20):
            http(f"{base}/publish/hist", f"m{k}".encode())
        http(f"{base}/publish/kept?retain=1", b"last word")
        clients = await spread(srv, srv.url("/kept"), 2, per_thread=1)
        retained = await asyncio.gather(*(asyncio.wait_for(ws.recv(), T) for ws, _ in clients))
        ok(retained == ["last word"] * len(clients),
           "the retained message reaches raw subscribers on both threads", retained)
        j = await connect(srv.url("/")).__aenter__()
        await j.send(json.dumps({"op": "subscribe", "topic": "hist",
                                 "since": {"offset": 0, "epoch": "0" * 16}}))
        ack = json.loads(await asyncio.wait_for(j.recv(), T))
        msgs = [json.loads(m) for m in await recv_n(j, 20)]
        ok(ack.get("type") == "ack" and [m.get("data") for m in msgs] == [f"m{k}" for k in
                                                                          range(20)]
           and [m.get("offset") for m in msgs] == list(range(1, 21)),
           "the history spans the threads: 20 publishes, offsets 1..20 in order",
           (ack, msgs[:2]))
        status, body = http(f"{base}/topics")
        ok(status == 200 and '"kept"' in body and '"hist"' in body,
           "GET /topics sees the topics of both threads", body[:200])
        await j.close()
        await close_all(clients)


async def json_op(ws, **op):
    await ws.send(json.dumps(op))


async def recovery_race():
    """A subscriber that resumes with "since" on one thread while a publisher on the other
    publishes without pause: each recovery replays the history, subscribes, then gets live
    messages, and the offsets it sees over many rounds run 1, 2, 3, ... with no gap and no
    duplicate.  A listener on the recovering thread keeps the publishes flowing to it, so a
    message already in the history may still be on its way there when the subscriber
    subscribes: it must not get it twice."""
    with Server("--pubsub", "--threads", "2", "--history", "100000", "-v") as srv:
        clients = await spread(srv, srv.url("/"), 2, per_thread=2)
        here = [ws for ws, t in clients if t == 0]
        pubs = await spread(srv, srv.url("/race"), 2, per_thread=1)
        pub = next(ws for ws, t in pubs if t == 1)
        rec, listener = here[0], here[1]
        await json_op(listener, op="subscribe", topic="race")
        ok(json.loads(await asyncio.wait_for(listener.recv(), T)).get("type") == "ack",
           "a listener on thread 0 subscribes")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # Bounded in time; under valgrind or ASan the server is slower: longer, fewer rounds.
        slow = sanitized()
        deadline = loop.time() + (15 if slow else 5)
        heard = [0]

        async def publish():
            # Paced by the listener (never more than 200 ahead), so a round's backlog is small.
            for k in range(40000):
                if stop.is_set() or loop.time() > deadline:
                    break
                await pub.send(f"r{k}")
                while k - heard[0] > 200 and not stop.is_set():
                    await asyncio.sleep(0.001)
            stop.set()

        async def drain():
            while not stop.is_set():
                try:
                    await asyncio.wait_for(listener.recv(), 0.2)
                    heard[0] += 1
                except asyncio.TimeoutError:
                    pass

        async def next_msg():
            """rec's next message; None once the publisher stopped and nothing comes."""
            while True:
                try:
                    return json.loads(await asyncio.wait_for(rec.recv(), 0.5))
                except asyncio.TimeoutError:
                    if stop.is_set():
                        return None
        tasks = [asyncio.create_task(publish()), asyncio.create_task(drain())]
        seen, last, epoch, rounds, bad = [], 0, "0" * 16, 0, None

        def take(m, what):
            nonlocal last, epoch, bad
            off = m.get("offset")
            if m.get("type") != "message" or off != last + 1:
                bad = (f"round {rounds}, {what}: offset {off} after {last}", m, seen[-5:])
                return False
            last, epoch = off, m.get("epoch")
            seen.append(off)
            return True
        while rounds < 500 and not stop.is_set() and bad is None:
            rounds += 1
            await json_op(rec, op="subscribe", topic="race",
                          since={"offset": last, "epoch": epoch})
            after_ack = 0
            while after_ack < 20 and bad is None:
                m = await next_msg()
                if m is None:
                    break
                if m.get("type") == "ack":
                    after_ack = 1
                elif take(m, "subscribed") and after_ack:
                    after_ack += 1
            await json_op(rec, op="unsubscribe", topic="race")
            while bad is None:
                m = await next_msg()
                if m is None or m.get("type") == "ack":
                    break
                take(m, "unsubscribing")
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        ok(bad is None and rounds >= (3 if slow else 10) and last > 100,
           f"{rounds} recoveries on thread 0 while thread 1 publishes: offsets 1..{last}, "
           "no duplicate, no gap", bad)
        await close_all(clients + pubs)


async def presence_across_threads():
    """presence and GET /topics/T list the subscribers of every thread, whichever thread
    answers, and GET /topics/T keeps its connection alive; GET /topics counts them all."""
    with Server("--pubsub", "--threads", "2", "-v") as srv:
        raw = await spread(srv, srv.url("/room?user=r"), 2, per_thread=2)
        askers = await spread(srv, srv.url("/?user=j"), 2, per_thread=1)
        for ws, _ in askers:
            await json_op(ws, op="subscribe", topic="room")
            await asyncio.wait_for(ws.recv(), T)
        ports = {ws.local_address[1] for ws, _ in raw + askers}
        threads = {t for _, t in raw + askers}
        answers = {}
        for ws, t in askers:
            await json_op(ws, op="presence", topic="room", id=t)
            answers[t] = json.loads(await asyncio.wait_for(ws.recv(), T))
        for t, a in sorted(answers.items()):
            got = {int(c["address"].rsplit(":", 1)[1]) for c in a.get("connections", [])}
            ok(threads == {0, 1} and got == ports and a.get("subscribers") == len(ports) and
               a.get("threads") == {"of": 2, "answered": 2} and "partial" not in a,
               f"presence asked on thread {t} lists the {len(ports)} subscribers of both "
               "threads", (a, sorted(ports)))
        json_users = sorted(c["user"] for a in answers.values() for c in a["connections"]
                            if c.get("json"))
        ok(json_users == ["j"] * len(askers) * len(answers),
           "... JSON ones marked, with their user", json_users)
        base = f"http://127.0.0.1:{srv.port}"
        # Each GET is a new connection: the kernel spreads them over both threads.
        pages = [json.loads(http(f"{base}/topics/room")[1]) for _ in range(6)]
        ok(all({int(c["address"].rsplit(":", 1)[1]) for c in p.get("connections", [])} == ports
               and p.get("threads") == {"of": 2, "answered": 2} for p in pages),
           "GET /topics/room lists the subscribers of both threads, whichever answers",
           pages[0])
        # Two on one keep-alive connection: the census answer (deferred) leaves it open, as an
        # immediate answer does; a third with Connection: close gets it closed after.
        c = Raw(srv.port, handshake=False, timeout=T)
        kept = []
        try:
            for close in ("", "Connection: close\r\n"):
                c.send(f"GET /topics/room HTTP/1.1\r\nHost: x\r\n{close}\r\n".encode())
                st, hdr, body = c.read_http()
                kept.append((st, hdr.get("connection"), json.loads(body).get("threads")))
            c._fill()
            kept.append(("open after close", c.buf))
        except (EOFError, OSError) as e:
            kept.append("closed" if isinstance(e, EOFError) else repr(e))
        c.sock.close()
        both = {"of": 2, "answered": 2}
        ok(kept == [(200, "keep-alive", both), (200, "close", both), "closed"],
           "two GET /topics/room on one connection: kept alive after the census answer, "
           "closed after the one that asked", kept)
        _, body = http(f"{base}/topics")
        room = next((e for e in json.loads(body).get("topics", []) if e["topic"] == "room"), {})
        ok(room.get("subscribers") == len(ports),
           f"GET /topics counts the {len(ports)} subscribers of both threads", body)
        await close_all(raw + askers)


async def json_publish(ws, topic, data):
    await ws.send(json.dumps({"op": "publish", "topic": topic, "data": data}))
    return json.loads(await asyncio.wait_for(ws.recv(), T))


async def bridge_across_threads():
    """Node A (--threads 2) and node B on one Redis: JSON publishes from clients on both of A's
    threads reach B, and each ack counts B (one other node), as the bridging thread's do."""
    with Engine() as redis:
        with Server("--pubsub", "--threads", "2", "-v", "--bridge", redis.url) as a, \
                Server("--pubsub", "-v", "--bridge", redis.url) as b:
            a.wait_log("connected")
            b.wait_log("connected")
            far = await connect(b.url("/k")).__aenter__()
            ok(wait_for(lambda: "wskit:k" in redis.channels(), T), "B's topic is on Redis",
               redis.channels())
            clients = await spread(a, a.url("/"), 2, per_thread=1)
            acks, got = [], []
            for i, (ws, t) in enumerate(clients):
                acks.append((t, await json_publish(ws, "k", f"m{i}")))
                got.append(await asyncio.wait_for(far.recv(), T))
            ok(got == [f"m{i}" for i in range(len(clients))],
               "JSON publishes from both threads of A reach B", got)
            ok({t for t, _ in acks} == {0, 1} and
               all(k.get("bridged") is True and k.get("nodes") == 1 for _, k in acks),
               "... and every ack, on either thread, counts B as one other node", acks)
            base = f"http://127.0.0.1:{a.port}"
            answers = [json.loads(http(f"{base}/publish/k", b"post")[1]) for _ in range(6)]
            for _ in answers:
                await asyncio.wait_for(far.recv(), T)
            ok(all(r.get("nodes") == 1 for r in answers),
               "POST /publish answers count B on whichever thread answers", answers)

            redis.stop()
            a.wait_log("lost")
            acks = [(t, await json_publish(ws, "k", "during")) for ws, t in clients]
            ok(all(k.get("bridged") is False for _, k in acks),
               "engine down: the acks of both threads say not bridged", acks)
            redis.start()
            ok(a.wait_log("connected again", timeout=15) == 1, "A reconnects once",
               a.stderr[-1000:])
            ok(a.count(f"{len(clients)} publishes failed") == 1,
               f"the outage's {len(clients)} failed publishes, from both threads, are counted",
               a.stderr[-1000:])
            await far.close()
            await close_all(clients)


async def metrics_sum():
    mport = free_port()
    with Server("--echo", "--threads", "2", "-v", "--metrics", str(mport)) as srv:
        clients = await spread(srv, srv.url(), 2)

        def open_gauge():
            _, body = http(f"http://127.0.0.1:{mport}/metrics")
            m = re.search(r"^wsk_connections_open (\d+)", body, re.M)
            return int(m.group(1)) if m else None
        n = wait_for(lambda: open_gauge() == len(clients), T) and open_gauge()
        ok(n == len(clients), f"/metrics sums the threads: {len(clients)} open", n)
        _, body = http(f"http://127.0.0.1:{mport}/metrics")
        ok(re.search(r"^wsk_accept_handoffs_failed_total 0$", body, re.M),
           "... and counts the failed hand-offs of --accept one (none here)")
        await close_all(clients)


async def sigterm_every_thread():
    srv = Server("--echo", "--threads", "3", "-v")
    try:
        clients = await spread(srv, srv.url(), 3, per_thread=1)
        srv.proc.send_signal(15)
        codes = []
        for ws, _ in clients:
            try:
                await asyncio.wait_for(ws.wait_closed(), T)
            except asyncio.TimeoutError:
                pass
            codes.append(ws.close_code)
        ok(codes == [1001] * len(clients),
           f"SIGTERM: the {len(clients)} clients of 3 threads all get 1001", codes)
    finally:
        rc = srv.stop()
    ok(rc == 0, "... and wsserve exits 0", rc)


# For each client that joins, a broadcast, an @ID reply to that client, a broadcast... in one
# write, and an @ID "end" after them.
ORDER_PROG = """import sys
for line in sys.stdin:
    if line.startswith("+"):
        i = line[1:].split("\\t", 1)[0]
        out = [f"b{i}.{k}\\n@{i}\\tr{i}.{k}\\n" for k in range(300)]
        sys.stdout.write("".join(out) + f"b{i}.300\\n@{i}\\tend\\n")
        sys.stdout.flush()
"""


def exec_shared_order():
    """--exec-shared --threads 2: an @ID reply to a client of the other thread between two
    broadcast lines reaches it between them (the reply leaves in the broadcasts' batch)."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(ORDER_PROG)
    try:
        with Server("--exec-shared", f"/usr/bin/python3 {f.name}", "--join-leave",
                    "--threads", "2") as srv:
            clients = [Raw(srv.port, timeout=T) for _ in range(2)]
            seen = {}
            for c in clients:
                got = []
                while not got or got[-1] != "end":
                    got.append(c.recv_frame()[2].decode())
                i = next((m[1:].split(".")[0] for m in got if m.startswith("r")), "?")
                mine = [m for m in got if m.startswith((f"b{i}.", f"r{i}.")) or m == "end"]
                want = [x for k in range(300) for x in (f"b{i}.{k}", f"r{i}.{k}")]
                seen[i] = mine == want + [f"b{i}.300", "end"] or mine[:8]
            threads = {int(i) % 2 for i in seen if i.isdigit()}
            ok(threads == {0, 1} and all(v is True for v in seen.values()),
               "--exec-shared --threads 2: broadcast, @ID reply, broadcast... reach a client "
               "of either thread in the order written", seen)
            for c in clients:
                c.sock.close()
    finally:
        os.unlink(f.name)


# Once a client of each thread has joined (an even ID and an odd one; the client of thread 1
# may be the first, and a client that opens after the program died is owed none of its lines):
# 600 KB of lines to everyone into a pipe made large enough to hold them, then exit at once:
# wsserve, reading 64 KiB at a time, sees the exit with lines still to read, which it reads
# before it tells the clients.
DYING_LINES = 15000
DYING_PROG = """import fcntl, os, sys
joined = set()
for line in sys.stdin:
    if line.startswith("+"):
        joined.add(int(line[1:].split("\\t", 1)[0]) % 2)
    if joined == {0, 1}:
        try:
            fcntl.fcntl(1, 1031, 1 << 20)  # F_SETPIPE_SZ
        except OSError:
            pass
        sys.stdout.write("".join(f"x{k:<38}\\n" for k in range(LINES)))
        sys.stdout.flush()
        os._exit(1)
""".replace("LINES", str(DYING_LINES))


def exec_shared_restart_order():
    """--exec-shared --threads 2: the lines a program wrote before it died reach a client of
    either thread before the restart message.  The program writes them once both clients have
    joined (their join lines say they are subscribed), whichever thread's client opened first."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(DYING_PROG)
    try:
        with Server("--exec-shared", f"/usr/bin/python3 {f.name}", "--join-leave",
                    "--threads", "2", "--restart-message", "again") as srv:
            clients = [Raw(srv.port, timeout=T) for _ in range(2)]
            seen = []
            for c in clients:
                got = []
                while not got or got[-1] != "again":
                    got.append(c.recv_frame()[2].decode())
                want = [f"x{k:<38}" for k in range(DYING_LINES)] + ["again"]
                seen.append(got == want or (len(got), got.index("again")))
            ok(seen == [True, True], "--exec-shared --threads 2: a dead program's last lines "
               "reach the clients of both threads before the restart message", seen)
            for c in clients:
                c.sock.close()
    finally:
        os.unlink(f.name)


def max_connections_group():
    """--accept one with --max-connections: the first thread pauses for the whole group, and
    its warning says the group's connections and limit, not its own."""
    with Server("--echo", "--threads", "2", "--max-connections", "4") as srv:
        held = [Raw(srv.port, timeout=T) for _ in range(4)]
        extra = Raw(srv.port, handshake=False, timeout=T)
        extra.send(request())
        line = "4 of 4 connections on 2 threads: at max_connections, pausing accept"
        ok(wait_for(lambda: srv.count(line) >= 1, T) and not srv.count(" 2 connections: at max"),
           "--max-connections 4 on 2 threads: the pause's warning counts the group",
           [ln for ln in srv.lines if "max_connections" in ln])
        for c in held + [extra]:
            c.sock.close()


def usage_errors():
    for bad in ("0", "-1", "1000", "x", ""):
        rc, out, err, _ = run_cmd("wsserve", "--echo", "--threads", bad)
        ok(rc == 1 and "threads" in err, f"--threads '{bad}' is a usage error", (rc, err))
    for bad in ("two", ""):
        rc, out, err, _ = run_cmd("wsserve", "--echo", "--accept", bad)
        ok(rc == 1 and "accept" in err, f"--accept '{bad}' is a usage error", (rc, err))


async def accept_modes():
    n = 8
    for how in ("one", "reuseport"):
        with Server("--echo", "--threads", "2", "--accept", how, "-v") as srv:
            order = []
            for _ in range(n):  # one after the other: each lands before the next connects
                async with connect(srv.url()) as ws:
                    port = ws.local_address[1]
                    wait_for(lambda: port in threads_of(srv), T)
                    order.append(threads_of(srv).get(port))
                    await ws.send("x")
                    await asyncio.wait_for(ws.recv(), T)
            counts = [order.count(i) for i in range(2)]
            if how == "one":
                # Server() may have probed the port: the first one may be either thread's.
                ok(counts == [n // 2, n // 2] and all(a != b for a, b in zip(order, order[1:])),
                   f"--accept one: {n} connections alternate over the 2 threads, {n // 2} each",
                   order)
            else:
                ok(sum(counts) == n and None not in order,
                   f"--accept reuseport: {n} connections served ({counts[0]} and {counts[1]})",
                   order)


def threads_auto():
    cpus = os.sysconf("SC_NPROCESSORS_ONLN")
    with Server("--echo", "--threads", "auto") as srv:
        srv.wait_log("listening on")
        line = next((ln for ln in srv.lines if "listening on" in ln), "")
        want = f", {cpus} threads)" if cpus > 1 else "(echo)"
        ok(want in line, f"--threads auto: one thread per online CPU ({cpus})", line)


def wsbench_spread():
    with Server("--echo", "--threads", "2", "-v") as srv:
        r = subprocess.run([os.path.join(BIN, "wsbench"), "--json", "-t", "3", "-c", "10", "-n",
                            "200", srv.url()], capture_output=True, text=True, timeout=60)
        try:
            j = json.loads(r.stdout)
        except ValueError:
            j = {}
        by = j.get("connections", {}).get("handshakes_by_thread")
        ok(by == [4, 3, 3], "wsbench -t 3 -c 10: 4, 3 and 3 connections per thread",
           (by, r.stderr[-300:]))
        wait_for(lambda: len(threads_of(srv)) >= 10, T)  # the log reader has the 10 open lines
        threads = set(threads_of(srv).values())
        if threads != {0, 1} and sanitized():
            # Under valgrind the second thread may not listen yet when wsbench connects.
            skip("... which land on both of the server's threads", f"{threads} under valgrind")
        else:
            ok(threads == {0, 1}, "... which land on both of the server's threads", threads)


async def thread_heaps():
    """A loop thread's glibc arena starts with 16 MiB of heap ready (wsserve's M_TOP_PAD), so
    that a load's first second does not grow it one mprotect per allocation: its heap (an
    anonymous mapping aligned to 64 MiB, glibc's HEAP_MAX_SIZE) is readable and writable that
    far once the thread has allocated."""
    if sanitized():
        skip("a loop thread's heap starts at 16 MiB", "not glibc's allocator here")
        return
    with Server("--echo", "--threads", "2", "-v") as srv:
        clients = await spread(srv, srv.url(), 2, per_thread=1)
        for ws, _ in clients:
            await ws.send("x" * 1000)
            await ws.recv()
        heaps = []
        with open(f"/proc/{srv.proc.pid}/maps") as f:
            for line in f:
                fields = line.split()
                lo, hi = (int(x, 16) for x in fields[0].split("-"))
                if fields[1] == "rw-p" and len(fields) == 5 and lo % (64 << 20) == 0:
                    heaps.append(hi - lo)
        await close_all(clients)
        ok(any(h >= 16 << 20 for h in heaps),
           "--threads 2: the second thread's heap is ready for 16 MiB at once",
           [f"{h >> 10} KiB" for h in heaps])


async def rooms_on_threads(accept):
    n, rooms = 8, 4
    with Server("--chat", "--clients", str(n), "--rooms", str(rooms), "--threads", "2",
                "--accept", accept, "-v") as srv:
        members = [await connect(srv.url(f"/?name=M{k}&room={k % rooms}")).__aenter__()
                   for k in range(n)]
        firsts = [(await recv_n(ws, 1))[0] for ws in members]
        ok(firsts == ["ready"] * n, f"--accept {accept}: \"ready\" to the {n} members", firsts)
        got = threads_for(srv, [ws.local_address[1] for ws in members])
        want = [(k % rooms) % 2 for k in range(n)]
        ok(got == want, f"--accept {accept}: room K's members all on thread K % 2", (got, want))
        for k, ws in enumerate(members):
            await ws.send(f"hi {k}")
        lines = [sorted(await recv_n(ws, 2)) for ws in members]
        want = [sorted([f"M{j}: hi {j}" for j in range(n) if j % rooms == k % rooms])
                for k in range(n)]
        ok(lines == want, f"--accept {accept}: each line reaches its room's members only", lines)
        for ws in members:
            await ws.close()


async def rooms_in_turn():
    with Server("--chat", "--clients", "4", "--rooms", "4", "--threads", "2", "-v") as srv:
        members = [await connect(srv.url(f"/?name=N{k}")).__aenter__() for k in range(4)]
        for ws in members:
            await recv_n(ws, 1)  # "ready"
        threads = sorted(threads_for(srv, [ws.local_address[1] for ws in members]))
        ok(threads == [0, 0, 1, 1], "no ?room=: the rooms in turn, two on each thread", threads)
        # Alone in its room, a member's next line is its own; a member sharing a room would
        # see the other's "1" before its own "2".
        for k, ws in enumerate(members):
            await ws.send("1")
            await ws.send("2")
        got = [await recv_n(ws, 2) for ws in members]
        ok(got == [[f"N{k}: 1", f"N{k}: 2"] for k in range(4)],
           "no ?room=: four members, four rooms, one each", got)
        for ws in members:
            await ws.close()


async def rooms_tls():
    certs = Certs()
    if not certs.ok:
        skip("TLS: rooms without affinity", certs.why)
        return
    ctx = tls_client_ctx(certs.dir)
    tls = ["--tls-cert", certs.path("server.crt"), "--tls-key", certs.path("server.key")]
    with Server("--chat", "--clients", "4", "--rooms", "2", "--threads", "2", "-v", *tls) as srv:
        members = [await websockets.connect(
            f"wss://localhost:{srv.port}/?name=S{k}&room={k % 2}", ssl=ctx,
            open_timeout=40 if sanitized() else T, ping_interval=None).__aenter__()
            for k in range(4)]
        for ws in members:
            await recv_n(ws, 1)  # "ready"
        for k, ws in enumerate(members):
            await ws.send(f"hi {k}")
        lines = [sorted(await recv_n(ws, 2)) for ws in members]
        want = [sorted([f"S{j}: hi {j}" for j in range(4) if j % 2 == k % 2]) for k in range(4)]
        ok(lines == want and srv.count("handed from thread") == 0,
           "TLS: connections stay on the thread that accepted them, the rooms still right",
           (lines, srv.count("handed from thread")))
        for ws in members:
            await ws.close()
    certs.remove()


def pipelined():
    with Server("--chat", "--clients", "100", "--rooms", "2", "--threads", "2",
                "--accept", "one", "-v") as srv:
        raws = []
        for k, room in enumerate([0, 1, 1, 0]):
            r = Raw(srv.port, handshake=False, timeout=T)
            r.send(request(path=f"/?name=P{k}&room={room}") + frame(1, f"first {k}"))
            raws.append(r)
        got = []
        for k, r in enumerate(raws):
            status, _ = r.read_head()
            _, op, payload = r.recv_frame()
            got.append((status, op, payload.decode()))
        ok(got == [(101, 1, f"P{k}: first {k}") for k in range(4)],
           "a frame pipelined behind the upgrade request is not lost", got)
        # Accepted in turn on threads a, b, a, b: rooms 0, 1, 1, 0 cross at least twice.
        handed = srv.wait_log("handed from thread", n=2)
        ok(handed >= 2, "connections were read on one thread and handed to another",
           srv.stderr[-2000:])
        for r in raws:
            r.sock.close()


async def main():
    usage_errors()
    threads_auto()
    await accept_modes()
    max_connections_group()
    exec_shared_order()
    exec_shared_restart_order()
    await cross_thread_publish()
    await chat_across_threads()
    await broker_across_threads()
    await recovery_race()
    await presence_across_threads()
    await bridge_across_threads()
    await metrics_sum()
    await sigterm_every_thread()
    wsbench_spread()
    await thread_heaps()
    await rooms_on_threads("one")
    await rooms_on_threads("reuseport")
    await rooms_in_turn()
    await rooms_tls()
    pipelined()


asyncio.run(main())
done()
