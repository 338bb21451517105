#!/usr/bin/python3
"""wsserve --pubsub --history N with a redis:// --bridge: the history lives in Redis, so that two
nodes number a topic's messages alike and either recovers any client.  A subscriber on node A
killed mid-stream while node B publishes comes back on node B with "since" and gets every
missed message once, in order, then live ones from both nodes, also while publishes go on
during its recovery; a publisher subscribed to its topic does not get its own messages back; a recovery under
a matching pattern delivers each message once;
after FLUSHALL the epoch changes and "recovered": false comes back; with
Redis down, local delivery goes on without offsets, and a restarted Redis starts offsets again.
The same through NATS JetStream: test_bridge_history_nats.py (the scenarios both share are in
tests/lib/history.py)."""
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import websockets

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wstest import (done, Engine, nothing, ok, recv_json, sanitized, Server, skip,  # noqa: E402
                    wait_for, wait_for_async, ws_connect as connect)
from history import (T, across_nodes, introspection, messages, messages_unless_late,  # noqa: E402
                     own_messages, publish, resume, retained, storm, under_pattern)


def node(redis, *extra, url=None):
    # Under make check-threads (WSK_THREADS) each node runs that many threads: loop 0 holds the
    # bridge and the others reach the history and the retained messages in Redis through it.
    s = Server("--pubsub", "-v", *(extra or ("--history", "5000")), "--bridge", url or redis.url)
    s.wait_log("connected")
    return s


def kept(redis, topic):
    """Whether Redis holds a retained message of topic (a clear leaves only its time)."""
    v = redis.command("GET", f"wskit:retained:{topic}")
    return v is not None and len(v) > 14


async def flushed(redis, a, b, epoch):
    """The Redis data goes: a new epoch, and the old position is not recovered."""
    ua, ub = f"ws://127.0.0.1:{a.port}/", f"ws://127.0.0.1:{b.port}/"
    async with connect(ub) as pub, connect(ub) as watch:
        await watch.send(json.dumps({"op": "subscribe", "topic": "feed"}))
        await recv_json(watch)
        ok(wait_for(lambda: "wskit:feed" in redis.channels()), "node B listens again")
        redis.command("FLUSHALL")
        await publish(pub, "feed", "after flush")
        fresh = await messages(watch, 1)
        ok(fresh[-1][0] == "after flush" and fresh[-1][1] == 1 and fresh[-1][2] != epoch,
           "after FLUSHALL the topic starts again at offset 1 with a new epoch", fresh[-1])
        ack, back = await resume(ua, "feed", 132, epoch)
        ok(ack.get("recovered") is False and ack.get("epoch") == fresh[-1][2] and
           ack.get("offset") == 1, "the old epoch is not recovered: \"recovered\": false", ack)
        got = await messages(back, 1)
        ok(got == [fresh[-1]], "... and what the new epoch holds follows", got)
        await back.close()


async def recover_one(url, topic, offset, epoch, late=None):
    """(ack, [first message]) of a subscribe with since, its socket closed after.  With late (a
    time.monotonic() after which what is tested may have expired), an ack heard after late may
    be followed by nothing: [] then.  (The ack follows the node's read of the history.)"""
    ack, ws = await resume(url, topic, offset, epoch)
    acked = time.monotonic()
    try:
        got = await messages_unless_late(ws, 1, acked, late or float("inf"))
    except asyncio.TimeoutError:  # which call, and how far inside its window
        raise AssertionError(f"recovery of {topic} since {offset}: no message {T} s after {ack}, "
                             f"heard {(late or acked) - acked:.3f} s before the window closed")
    await ws.close()
    return ack, got


def log_on_failure(c):
    """Prints node c's log when what runs under it raised (a recovery flaked: what the node did)."""
    for line in c.stderr.splitlines()[-30:]:
        print(f"# node: {line}", flush=True)


async def bulk(a):
    """Raw publishes of 10 MB in all through the history in Redis (more than the 8 MiB the
    bridge lets wait for Redis' answers) all arrive: each answer gives its bytes back."""
    url = f"ws://127.0.0.1:{a.port}/"
    async with connect(url + "bulk") as raw, connect(url) as sub, connect(url) as jp:
        await sub.send(json.dumps({"op": "subscribe", "topic": "bulk"}))
        await recv_json(sub)
        got = []
        for i in range(0, 160, 8):  # paced, and read as it goes (no backpressure drops)
            for k in range(i, i + 8):
                await raw.send(f"{k:05d}" + "b" * 65536)
            await publish(jp, "bulk", "mark")
            got += [d[:5] for d, _, _ in await messages(sub, 9) if d != "mark"]
        ok(got == [f"{i:05d}" for i in range(160)], "10 MB of raw publishes through Redis all arrive",
           got[-3:])


async def leave(redis, a):
    """A client that goes in the middle of its recovery: the node stops listening to the topic
    once nobody needs it (the hold of a recovery ends with it)."""
    for _ in range(5):
        ack, ws = await resume(f"ws://127.0.0.1:{a.port}/", "storm", 0, "")
        ws.transport.abort()
        await asyncio.sleep(0)  # the loop closes the socket (wait_for below blocks it)
    ok(wait_for(lambda: "wskit:storm" not in redis.channels()),
       "recoveries cut short leave no subscription on Redis behind", redis.channels())


async def covered(redis, a, b):
    """A recovery on node A of a topic that a pattern of node A covers: the node listens through
    the pattern (not by name), and when the pattern's subscriber leaves meanwhile, by name."""
    ua, ub = f"ws://127.0.0.1:{a.port}/", f"ws://127.0.0.1:{b.port}/"
    async with connect(ub) as pub:
        await publish(pub, "cov.x", "c1")
        pat = await connect(a.url("/cov.*")).__aenter__()
        ok(wait_for(lambda: "wskit:cov.x" not in redis.channels() and
                    redis.command("PUBSUB", "NUMPAT") >= 1), "node A holds cov.* by pattern")
        ack, ws = await resume(ua, "cov.x", 0, "")
        got = await messages(ws, 1)
        ok(not redis.channels() or "wskit:cov.x" not in redis.channels(),
           "a covered topic is not subscribed by name for the recovery", redis.channels())
        await pat.close()
        ok(wait_for(lambda: "wskit:cov.x" in redis.channels()),
           "... and is, by name, once the pattern goes", redis.channels())
        await publish(pub, "cov.x", "c2")
        got += await messages(ws, 1)
        ok([(d, o) for d, o, _ in got] == [("c1", 1), ("c2", 2)], "the recovery goes live", got)
        await ws.close()


async def ttl(redis):
    """--history N,TTL with Redis: the history lives TTL seconds after the topic's last publish;
    then it is gone, and the next life has a new epoch."""
    c = node(redis, "--history", "100,1")
    try:
        url = f"ws://127.0.0.1:{c.port}/"
        async with connect(url) as pub:
            start = time.monotonic()
            await publish(pub, "t", "t1")
            ack, got = await recover_one(url, "t", 0, "", late=start + 1)
            young = time.monotonic() - start < 1  # a slow machine may miss this window
            ok(not young or (ack.get("recovered") is True and got[0][:2] == ("t1", 1)),
               "younger than the TTL: recovered", ack)
            gone = await wait_for_async(lambda: not redis.command("EXISTS", "wskit:history:t"), 10)
            ok(gone and time.monotonic() - start >= 0.9, "the stream goes once older than the TTL")
            ack, ws = await resume(url, "t", 1, got[0][2] if got else "")
            await ws.close()
            ok(ack.get("recovered") is False and ack.get("offset") == 0,
               "... and the position is not recovered", ack)
    except BaseException:
        log_on_failure(c)
        raise
    finally:
        c.stop()


async def ttl_each(redis):
    """--history N,TTL with Redis applies the TTL to each message: one older than the TTL is not
    recovered while a younger one of the same topic is, and a recovery whose first wanted
    message expired hears "recovered": false."""
    c = node(redis, "--history", "100,2")
    try:
        url = f"ws://127.0.0.1:{c.port}/"
        async with connect(url) as pub:
            sent = time.monotonic()
            await publish(pub, "te", "old")
            start = time.monotonic()  # acknowledged: Redis has it, as of this time or before
            await asyncio.sleep(1.2)  # the TTL's time passing is what is tested
            await publish(pub, "te", "young")
            # The topic's history lives 2 s after "old" reached Redis (after sent): a "young"
            # that came later (a loaded machine) starts a new life, at offset 1.
            if time.monotonic() - sent >= 2.0:
                skip("the TTL applies to each message", "the second publish came too late")
                return
            await asyncio.sleep(max(0.0, start + 2.1 - time.monotonic()))
            # A slow machine may miss this window: the younger one expires too from start + 3.2.
            ack, got = await recover_one(url, "te", 0, "", late=start + 3.1)
            ack2, got2 = await recover_one(url, "te", 1, got[0][2] if got else "",
                                           late=start + 3.1)
            inside = time.monotonic() - start < 3.1
            ok(not inside or (ack.get("recovered") is False and got[0][:2] == ("young", 2)),
               "the TTL applies to each message: the older one expired, the younger one is kept",
               (ack, got))
            ok(not inside or (ack2.get("recovered") is True and got2[0][:2] == ("young", 2)),
               "... and a recovery after the expired one is whole", (ack2, got2))
            await publish(pub, "te", "third")
            ok(not inside or
               await wait_for_async(lambda: redis.command("XLEN", "wskit:history:te") == 2),
               "a publish trims the expired entries from Redis",
               redis.command("XLEN", "wskit:history:te"))
    except BaseException:
        log_on_failure(c)
        raise
    finally:
        c.stop()


async def overrun(redis):
    """A client that reads slower than the topic's history is trimmed (--history 1000, the
    recovery stalled by its full queue while 1,000 more are published) is told with a second
    "recovered": false, then gets the rest in order: never a silent gap."""
    c = node(redis, "--history", "1000")
    try:
        url = f"ws://127.0.0.1:{c.port}/"
        big = "x" * 8000
        async with connect(url) as pub:
            for _ in range(1000):
                await publish(pub, "o", big)
            # A small receive buffer: the recovery soon waits for the client to read.
            raw = socket.socket()
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            raw.connect(("127.0.0.1", c.port))
            ws = await websockets.connect(url, sock=raw, max_queue=1, max_size=None,
                                          ping_interval=None, compression=None)
            await ws.send(json.dumps({"op": "subscribe", "topic": "o",
                                      "since": {"offset": 0, "epoch": ""}}))
            ack = await recv_json(ws)
            for _ in range(1000):  # ws reads nothing meanwhile: the recovery waits for it
                await publish(pub, "o", big)
            last, told, again, bad = 0, 0, 0, []
            while last < 2000:
                m = await recv_json(ws)
                if m.get("type") == "ack":
                    told += m.get("recovered") is False
                    again += m.get("recovered") is False
                else:
                    if m.get("offset") != last + 1 and not told:
                        bad.append((last, m.get("offset")))
                    last, told = m.get("offset"), 0
            await ws.close()
            ok(ack.get("recovered") is True and again and not bad and last == 2000,
               "an overrun recovery says \"recovered\": false again before a gap", (again, bad[:3]))
    finally:
        c.stop()


async def oom(redis, b):
    """A message whose script Redis refuses (out of memory) is delivered on its node without an
    offset, counted as a failed bridged publish, and its acknowledgement says "bridged": false;
    the other node gets nothing of it, and the next message continues the offsets."""
    c = node(redis, "--history", "100", "--metrics-path", "/metrics")

    def failed():
        # With --threads the figures are the threads' snapshots: the bridge's shows once
        # loop 0's first one is taken.
        got = []

        def once():
            r = subprocess.run(["curl", "-s", "-m", "5", f"http://127.0.0.1:{c.port}/metrics"],
                               capture_output=True, timeout=10)
            got[:] = [int(x.split()[1]) for x in r.stdout.decode().splitlines()
                      if x.startswith("wsk_bridge_failed_total ")]
            return got
        return wait_for(once) and got[0]
    try:
        uc, ub = f"ws://127.0.0.1:{c.port}/", f"ws://127.0.0.1:{b.port}/"
        async with connect(uc) as pub, connect(uc) as here, connect(ub) as there:
            for ws in (here, there):
                await ws.send(json.dumps({"op": "subscribe", "topic": "oom"}))
                await recv_json(ws)
            ok(wait_for(lambda: redis.subscribers("wskit:oom") == 2), "both nodes listen")
            await publish(pub, "oom", "before")
            first = (await messages(here, 1))[0]
            await messages(there, 1)
            before = failed()
            redis.command("CONFIG", "SET", "maxmemory", "1")
            try:
                await pub.send(json.dumps({"op": "publish", "topic": "oom", "data": "refused",
                                           "id": "o"}))
                ack = await recv_json(pub)
                while ack.get("id") != "o":
                    ack = await recv_json(pub)
                m = await recv_json(here)
            finally:
                redis.command("CONFIG", "SET", "maxmemory", "0")
            ok(ack.get("bridged") is False and ack.get("receivers") == 1,
               "a publish Redis refuses: \"bridged\": false, and its one receiver here", ack)
            ok(m.get("data") == "refused" and "offset" not in m,
               "... delivered on its node without an offset", m)
            ok(wait_for(lambda: failed() == before + 1), "... counted as a failed bridged publish",
               (before, failed()))
            ok(await nothing(there, 0.3), "... and not on the other node")
            await publish(pub, "oom", "after")
            got = await messages(here, 1) + await messages(there, 1)
            ok([(d, o) for d, o, _ in got] == [("after", first[1] + 1)] * 2,
               "the next message continues the offsets on both nodes", got)
    finally:
        c.stop()


async def retained_later(redis, b):
    """Retained publishes node C makes while its Redis connection is down (its user disabled;
    node B stays connected) go to Redis when C is back, unless node B's retained publish (or
    clear) of the topic came later."""
    redis.command("ACL", "SETUSER", "late", "on", ">pw", "~*", "&*", "+@all")
    c = node(redis, url=f"redis://late:pw@127.0.0.1:{redis.port}")
    try:
        uc, ub = f"ws://127.0.0.1:{c.port}/", f"ws://127.0.0.1:{b.port}/"
        redis.command("ACL", "SETUSER", "late", "off")
        redis.command("CLIENT", "KILL", "USER", "late")
        ok(c.wait_log("lost") >= 1, "node C loses Redis, node B keeps it")
        async with connect(uc) as pc, connect(ub) as pb:
            for ws, topic, data in ((pc, "rl1", "c1"), (pc, "rl2", "c2"), (pc, "rl3", "c3"),
                                    (pc, "rl4", "c4"), (pc, "rl4", ""), (None, 0, 0),
                                    (pb, "rl2", "b2"), (pb, "rl3", "")):
                if not ws:  # later by more than the restore takes to reach Redis: that
                    await asyncio.sleep(0.3)  # time is what is compared
                    continue
                await ws.send(json.dumps({"op": "publish", "topic": topic, "data": data,
                                          "retain": True, "id": "l"}))
                await recv_json(ws)
            redis.command("ACL", "SETUSER", "late", "on")
            ok(c.wait_log("connected again") >= 1, "node C is back")
            ok(wait_for(lambda: kept(redis, "rl1")), "a retained publish made while down goes to "
               "Redis when the connection is back")
            got = {}
            for topic in ("rl1", "rl2", "rl3", "rl4"):
                async with connect(ub + topic) as raw:
                    try:
                        got[topic] = await asyncio.wait_for(raw.recv(), 0.3)
                    except asyncio.TimeoutError:
                        got[topic] = None
            ok(got == {"rl1": "c1", "rl2": "b2", "rl3": None, "rl4": None},
               "... a subscriber on another node gets it; one published or cleared later on "
               "another node stays; a clear made while down clears", got)
    finally:
        c.stop()


async def resubscribed(redis):
    """Publishes made while a node subscribes its topics again, Redis just back, reach the node's
    own subscribers (who hear a message of the history through its echo): the node writes no
    publish before Redis confirmed those subscriptions.  1,000 topics make that window wide."""
    c = node(redis, "--history", "100", "--max-subscriptions", "2000")
    try:
        async with connect(c.url()) as sub, connect(c.url()) as pub:
            for i in range(1000):
                await sub.send(json.dumps({"op": "subscribe", "topic": f"rs{i}"}))
            for _ in range(1000):
                await recv_json(sub)
            redis.stop()
            c.wait_log("lost")
            redis.start()
            sent, bridged, until = 0, 0, time.monotonic() + 20
            while bridged < 50 and sent < 20000 and time.monotonic() < until:
                sent += 1
                await pub.send(json.dumps({"op": "publish", "topic": "rs999", "data": f"p{sent}",
                                           "id": sent}))
                bridged += (await recv_json(pub)).get("bridged") is True
            got = []
            try:
                while len(got) < sent:
                    got += [d for d, _, _ in await messages(sub, 1)]
            except asyncio.TimeoutError:
                pass
            lost = sorted(set(f"p{i}" for i in range(1, sent + 1)) - set(got))
            ok(bridged == 50 and not lost, "publishes made as the node resubscribes after an "
               "outage all reach its own subscribers", (sent, bridged, lost[:5]))
    finally:
        c.stop()


async def engine_down(redis, a):
    redis.stop()
    ok(a.wait_log("lost") >= 1, "node A sees Redis go")
    ack, back = await resume(f"ws://127.0.0.1:{a.port}/", "feed", 1, "0123456789abcdef")
    ok(ack.get("recovered") is False, "Redis down: \"recovered\": false", ack)
    async with connect(f"ws://127.0.0.1:{a.port}/") as pub:
        await publish(pub, "feed", "local")
        m = await recv_json(back)
        ok(m.get("data") == "local" and "offset" not in m,
           "... and local delivery goes on, without offsets", m)
        await pub.send(json.dumps({"op": "publish", "topic": "down", "data": "kept here",
                                   "retain": True}))
        await recv_json(pub)
        async with connect(f"ws://127.0.0.1:{a.port}/down") as raw:
            r = await asyncio.wait_for(raw.recv(), T)
            ok(r == "kept here", "... and a retained message is kept on the node", r)
        redis.start()  # empty: a new life for every topic, and no scripts loaded
        ok(a.wait_log("connected again") >= 1, "node A reconnects to the new Redis")
        await publish(pub, "feed", "again")
        m = await recv_json(back)
        ok(m.get("data") == "again" and m.get("offset") == 1 and len(m.get("epoch", "")) == 16,
           "a Redis restarted without its data: offsets start again at 1", m)
    await back.close()


async def main():
    with Engine("redis") as redis:
        def kept_here(topic):
            return kept(redis, topic)

        a, b = node(redis, "--max-subscriptions", "100"), node(redis, "--max-subscriptions", "100")
        try:
            await retained(redis, a, b, False, kept_here)
            await introspection(redis, a, b, False)
        finally:
            for s in (a, b):
                s.stop()
        redis.command("FLUSHALL")
        a, b = node(redis), node(redis)
        try:
            epoch = await across_nodes(a, b, lambda: wait_for(
                lambda: redis.subscribers("wskit:feed") == 2))
            await flushed(redis, a, b, epoch)
            await retained(redis, a, b, True, kept_here)
            await introspection(redis, a, b, True)
            ua, ub = (f"ws://127.0.0.1:{s.port}/" for s in (a, b))
            await own_messages(ua, ub, lambda: wait_for(
                lambda: redis.subscribers("wskit:own") == 2))
            await storm(a, b, *((300, 4) if sanitized() else ()))  # valgrind: fewer
            await bulk(a)
            await leave(redis, a)
            await covered(redis, a, b)
            await under_pattern(a, b)
            # Each on a node of its own, with topics of its own: side by side (under valgrind
            # one after the other, each slow enough on its own).
            if sanitized():
                for case in (ttl, ttl_each, overrun):
                    await case(redis)
            else:
                await asyncio.gather(ttl(redis), ttl_each(redis), overrun(redis))
            await oom(redis, b)  # Redis out of memory meanwhile: alone
            await retained_later(redis, b)
            await engine_down(redis, a)
            await resubscribed(redis)
        finally:
            codes = [s.stop() for s in (a, b)]
        ok(codes == [0, 0] and not any("Sanitizer" in s.stderr for s in (a, b)),
           "both nodes exit cleanly", codes)
    local = Server("--pubsub", "--history", "100")  # no bridge: history stays node-local
    try:
        url = f"ws://127.0.0.1:{local.port}/"
        await own_messages(url, url, lambda: True)
    finally:
        ok(local.stop() == 0, "the node-local broker exits cleanly")


if not shutil.which("redis-server"):
    skip("history through Redis", "redis-server is not installed (scripts/install-deps)")
else:
    asyncio.run(main())
done()
