#!/usr/bin/python3
"""wsserve --pubsub --history: offsets and epochs in JSON deliveries; a subscriber killed
mid-stream comes back with "since" and gets what it missed, in order, with no gap and no
duplicate, then live messages; a history that no longer reaches back says "recovered": false;
a restarted broker has a new epoch; a recovery under a matching pattern
delivers each message once; 10,000 topics of history stay within --history-memory;
--history N,TTL lets messages go once they are older than TTL."""
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import websockets

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wstest import (BIN, done, nothing, ok, recv_json, rss, sanitized, Server,  # noqa: E402
                    wait_for, ws_connect as connect)
from history import publish, resume  # noqa: E402

T = 5.0


async def killed_mid_stream(srv):
    url = f"ws://127.0.0.1:{srv.port}/"
    async with connect(url) as pub, connect(url) as sub:
        await sub.send(json.dumps({"op": "subscribe", "topic": "feed"}))
        await recv_json(sub)
        for i in range(1, 21):
            await publish(pub, "feed", f"m{i}")
        seen = [await recv_json(sub) for _ in range(10)]
        offs = [m.get("offset") for m in seen]
        ok(offs == list(range(1, 11)), "deliveries carry offsets 1, 2, ...", offs)
        epoch = seen[-1].get("epoch")
        ok(isinstance(epoch, str) and len(epoch) == 16, "... and the epoch", seen[-1])
        sub.transport.abort()  # killed: what was queued for it is lost with it
        for i in range(21, 41):
            await publish(pub, "feed", f"m{i}")
        ack, back = await resume(url, "feed", 10, epoch)
        ok(ack.get("type") == "ack" and ack.get("recovered") is True and
           ack.get("offset") == 40 and ack.get("epoch") == epoch,
           "a subscriber back with since is recovered, told where the topic stands", ack)
        got = [await recv_json(back) for _ in range(30)]
        ok([m.get("offset") for m in got] == list(range(11, 41)) and
           [m.get("data") for m in got] == [f"m{i}" for i in range(11, 41)],
           "it gets 11..40, in order, no gap, no duplicate",
           [m.get("offset") for m in got])
        await publish(pub, "feed", "live")
        m = await recv_json(back)
        ok(m.get("offset") == 41 and m.get("data") == "live", "then live messages", m)
        await back.close()
        ack, again = await resume(url, "feed", 41, epoch)
        ok(ack.get("recovered") is True, "nothing missed is recovered too", ack)
        await publish(pub, "feed", "next")
        ok((await recv_json(again)).get("offset") == 42, "... and the next one comes live")
        await again.close()
        return epoch


async def too_old(srv):
    url = f"ws://127.0.0.1:{srv.port}/"
    async with connect(url) as pub:
        for i in range(1, 21):
            await publish(pub, "short", f"s{i}")
        ack, ws = await resume(url, "short", 0, "")
        ok(ack.get("recovered") is False, "offset 0 with 15 of 20 gone: not recovered", ack)
        got = [await recv_json(ws) for _ in range(5)]
        ok([m.get("offset") for m in got] == [16, 17, 18, 19, 20],
           "... and what the history holds follows", [m.get("offset") for m in got])
        epoch = got[-1].get("epoch")
        await ws.close()
        ack, ws = await resume(url, "short", 3, epoch)
        ok(ack.get("recovered") is False, "since 3, with 16 the oldest kept: not recovered", ack)
        await ws.close()
        ack, ws = await resume(url, "short", 17, epoch)
        ok(ack.get("recovered") is True, "since 17: recovered", ack)
        await ws.close()


async def restarted(srv, epoch):
    url = f"ws://127.0.0.1:{srv.port}/"
    async with connect(url) as pub:
        await publish(pub, "feed", "after restart")
        ack, ws = await resume(url, "feed", 40, epoch)
        ok(ack.get("recovered") is False and ack.get("epoch") != epoch,
           "after a restart the epoch changed: not recovered", ack)
        m = await recv_json(ws)
        ok(m.get("offset") == 1 and m.get("data") == "after restart",
           "the new life of the topic follows", m)
        await ws.close()


async def expired(srv, ttl):
    """--history N,TTL: what is younger than TTL is recovered; once it is older, a subscriber
    back with since is told it was not recovered, and the topic starts a new life."""
    url = f"ws://127.0.0.1:{srv.port}/"
    async with connect(url) as pub:
        start = time.monotonic()
        await publish(pub, "ttl", "e1")
        await publish(pub, "ttl", "e2")
        ack, ws = await resume(url, "ttl", 0, "")
        got = [await recv_json(ws) for _ in range(2)]
        young = time.monotonic() - start < ttl  # a slow machine may miss this window
        ok(not young or (ack.get("recovered") is True and
                         [m.get("data") for m in got] == ["e1", "e2"]),
           "younger than the TTL: recovered", ack)
        epoch = got[-1].get("epoch")
        await ws.close()

        async def gone():
            ack, ws = await resume(url, "ttl", 1, epoch)
            await ws.close()
            return ack.get("recovered") is False

        # Waits for the condition (a resume that is not recovered), a bounded number of tries.
        until = time.monotonic() + ttl + 10
        while not await gone() and time.monotonic() < until:
            await asyncio.sleep(0.05)
        ok(time.monotonic() - start >= ttl and await gone(),
           "older than the TTL: not recovered (and not before the TTL)")
        await publish(pub, "ttl", "fresh")
        ack, ws = await resume(url, "ttl", 0, "")
        m = await recv_json(ws)
        ok(m.get("data") == "fresh" and m.get("offset") == 1 and m.get("epoch") != epoch and
           await nothing(ws), "the expired messages are not replayed; the topic starts anew", m)
        await ws.close()

        # Nothing published or resumed any more: the history still expires (on a timer).
        start = time.monotonic()
        await publish(pub, "idle", "i1")
        kept = await idle_history(pub)
        ok(time.monotonic() - start >= ttl or kept == 1, "a message kept on a quiet topic", kept)
        until = time.monotonic() + ttl + 10
        while await idle_history(pub) and time.monotonic() < until:
            await asyncio.sleep(0.05)
        ok(await idle_history(pub) == 0,
           "a quiet topic's history goes once older than the TTL, with no traffic to trigger it")


async def idle_history(pub):
    """The history length of topic "idle", from the topics op (which expires nothing)."""
    await pub.send(json.dumps({"op": "topics", "id": "t"}))
    while (r := await recv_json(pub)).get("id") != "t":
        pass
    return sum(t.get("history", 0) for t in r.get("topics", []) if t.get("topic") == "idle")


async def big_recovery(srv):
    """A recovery larger than a socket's backpressure limit (1 MiB) is paced by drain, and a
    message published while it is under way comes after it, once."""
    url = f"ws://127.0.0.1:{srv.port}/"
    body = "y" * 300
    async with connect(url) as pub:
        for i in range(5000):
            await pub.send(json.dumps({"op": "publish", "topic": "big", "data": body}))
        await publish(pub, "big", "last of the history")
        ack, ws = await resume(url, "big", 0, "")
        ok(ack.get("recovered") is True and ack.get("offset") == 5001, "5,001 to recover", ack)
        await publish(pub, "big", "published during the recovery")
        offs = [(await recv_json(ws)).get("offset") for _ in range(5002)]
        ok(offs == list(range(1, 5003)), "1.5 MB recovered in order, then the new one, once",
           [o for i, o in enumerate(offs) if o != i + 1][:5])
        await publish(pub, "big", "live")
        ok((await recv_json(ws)).get("data") == "live", "then live")
        await ws.close()


async def under_pattern(srv):
    """A client subscribed to orders.> recovers orders.a (a recovery paced by drain) while both
    topics go on: each message reaches it once, orders.a's in order with their offsets."""
    url = f"ws://127.0.0.1:{srv.port}/"
    body = "p" * 2000  # 10 MB: more than the kernel's buffers take at once
    raw = socket.socket()  # a small receive buffer: the recovery soon waits for the client
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(("127.0.0.1", srv.port))
    async with connect(url) as pub, websockets.connect(
            url, sock=raw, max_queue=1, max_size=None, open_timeout=T, close_timeout=T,
            ping_interval=None, compression=None) as ws:
        for i in range(1, 5001):
            await pub.send(json.dumps({"op": "publish", "topic": "orders.a", "data": f"{i}{body}"}))
        await publish(pub, "orders.a", f"5001{body}")
        await ws.send(json.dumps({"op": "subscribe", "topic": "orders.>"}))
        await recv_json(ws)
        await ws.send(json.dumps({"op": "subscribe", "topic": "orders.a",
                                  "since": {"offset": 0, "epoch": ""}}))
        ack = await recv_json(ws)
        ok(ack.get("recovered") is True and ack.get("offset") == 5001, "5,001 to recover", ack)
        for i in range(5002, 5022):  # while the recovery waits for the client to read
            await publish(pub, "orders.a", f"{i}{body}")
            await publish(pub, "orders.b", f"b{i}")
        got = []
        while sum(m.get("topic") == "orders.a" for m in got) < 5021:
            got.append(await recv_json(ws))
        a = [(m.get("offset"), m.get("data")) for m in got if m.get("topic") == "orders.a"]
        ok(a == [(i, f"{i}{body}") for i in range(1, 5022)],
           "a recovery under a matching pattern: each message once, in order",
           [(i, o) for i, (o, _) in enumerate(a) if o != i + 1][:5])
        await publish(pub, "orders.a", "live")
        m = await recv_json(ws)
        while m.get("topic") == "orders.b":
            m = await recv_json(ws)
        ok(m.get("data") == "live" and m.get("offset") == 5022 and await nothing(ws, 0.3),
           "then live, once", (m.get("topic"), m.get("offset"), m.get("data", "")[:8]))


async def overrun(srv):
    """A recovery that waits for a client that does not read while a publisher overruns
    --history 20: the messages the history let go before they were sent are not skipped
    silently: a second acknowledgement says "recovered": false and where the topic stands, what
    is left follows, then live messages."""
    url = f"ws://127.0.0.1:{srv.port}/"
    post = f"http://127.0.0.1:{srv.port}/publish/over"
    for i in range(20):  # 10 MB: more than the socket's backpressure limit and buffers hold
        urllib.request.urlopen(urllib.request.Request(post, data=b"z" * (512 * 1024)),
                               timeout=T).read()
    async with websockets.connect(url, open_timeout=T, close_timeout=T, ping_interval=None,
                                  max_size=None, compression=None, max_queue=1) as ws:
        await ws.send(json.dumps({"op": "subscribe", "topic": "over",
                                  "since": {"offset": 0, "epoch": ""}}))
        first = await recv_json(ws)
        for i in range(30):
            urllib.request.urlopen(urllib.request.Request(post, data=f"s{i}".encode()),
                                   timeout=T).read()
        seen, last, told, silent = [], 0, False, []
        while last < 50:
            m = await recv_json(ws)
            if m.get("type") == "ack":
                told = told or m.get("recovered") is False
                seen.append(("ack", m.get("recovered"), m.get("offset")))
                continue
            off = m.get("offset")
            if off != last + 1 and not (seen and seen[-1][0] == "ack"):
                silent.append((last, off))
            seen.append(("msg", off))
            last = off
        ok(first.get("recovered") is True and told and not silent and
           seen[-20:] == [("msg", o) for o in range(31, 51)],
           "history overrun during a recovery: told \"recovered\": false, then 31..50",
           (first, silent, seen[:3], seen[-22:-19]))
        urllib.request.urlopen(urllib.request.Request(post, data=b"live"), timeout=T).read()
        m = await recv_json(ws)
        ok(m.get("offset") == 51 and m.get("data") == "live", "then live messages", m)


async def bounded(srv):
    url = f"ws://127.0.0.1:{srv.port}/"
    before = rss(srv.proc.pid)
    body = "x" * 2000
    async with connect(url) as pub:
        for k in range(2):
            for i in range(10000):
                await pub.send(json.dumps({"op": "publish", "topic": f"t.{i}", "data": body}))
            await publish(pub, "t.end", "flush")
        await pub.send(json.dumps({"op": "topics", "limit": 1}))
        kept = (await recv_json(pub)).get("kept", {})
    ok(0 < kept.get("history_bytes", 0) <= 2 << 20 and kept.get("history_topics", 0) >= 1000 and
       kept.get("history_messages", 0) <= kept.get("history_bytes", 0) // 2000 + 1,
       "40 MB published to 10,000 topics: the history holds at most its 2 MiB", kept)
    grown = rss(srv.proc.pid) - before
    if not sanitized():  # ASan and valgrind keep freed memory on purpose
        ok(grown < 24 << 20, "... and the broker's memory stays near that",
           f"RSS grew {grown >> 20} MiB")


async def wscat_tail(srv):
    """wscat --subscribe --offset-file --since killed (SIGKILL) while the stream goes on, and
    started again, prints every message exactly once, in order."""
    url = f"ws://127.0.0.1:{srv.port}/"
    with tempfile.TemporaryDirectory() as d:
        pos = os.path.join(d, "pos")
        outs = []

        def tail():
            out = open(os.path.join(d, f"out{len(outs)}"), "w+b")
            outs.append(out)
            return subprocess.Popen([os.path.join(BIN, "wscat"), "-c", url, "--subscribe", "tail",
                                     "--offset-file", pos, "--since", "-w", "30"],
                                    stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.DEVNULL)

        def lines():
            return b"".join(open(o.name, "rb").read() for o in outs).decode().splitlines()

        async with connect(url) as pub:
            w = tail()
            topics = f"http://127.0.0.1:{srv.port}/topics/tail"
            ok(wait_for(lambda: json.load(urllib.request.urlopen(topics, timeout=5))
                        .get("subscribers") == 1), "wscat --subscribe subscribed")
            for i in range(1, 31):
                await publish(pub, "tail", f"t{i}")
            # Killed between two messages: one printed but not yet saved would be printed again
            # (a tail is at least once; see wscat(1)).
            ok(wait_for(lambda: len(lines()) >= 30), "the tail prints", lines()[-3:])
            w.send_signal(signal.SIGKILL)
            w.wait(10)
            for i in range(31, 61):
                await publish(pub, "tail", f"t{i}")
            w = tail()
            ok(wait_for(lambda: len(lines()) >= 60), "the tail started again catches up",
               len(lines()))
            await publish(pub, "tail", "t61")
            ok(wait_for(lambda: len(lines()) >= 61), "then prints live messages")
            w.terminate()
            w.wait(10)
        want = [f"tail: t{i}" for i in range(1, 62)]
        ok(lines() == want, "every message printed once, in order, across the kill",
           [x for x in lines() if x not in want][:5] or len(lines()))


async def main():
    args = ("--pubsub", "--history", "100")
    port = None
    with Server(*args) as srv:
        port = srv.port
        epoch = await killed_mid_stream(srv)
        await wscat_tail(srv)
    with Server(*args, port=port) as srv:
        await restarted(srv, epoch)
    with Server("--pubsub", "--history", "5") as srv:
        await too_old(srv)
    with Server("--pubsub", "--history", "100,1") as srv:
        await expired(srv, 1.0)
    with Server("--pubsub", "--history", "10000") as srv:
        await big_recovery(srv)
        await under_pattern(srv)
    with Server("--pubsub", "--history", "10", "--history-memory", "2MB") as srv:
        await bounded(srv)
    with Server("--pubsub", "--history", "20") as srv:
        await overrun(srv)


try:
    asyncio.run(asyncio.wait_for(main(), 180))
except Exception as e:  # a hang or a crash is one failure, with its reason
    ok(False, "history tests ran to the end", f"{type(e).__name__}: {e}")
done()
