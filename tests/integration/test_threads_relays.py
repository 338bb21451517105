#!/usr/bin/python3
"""wsserve --pubsub --threads 2 --history N --bridge redis://, where the other threads hand their
publishes to loop 0 (the bridge's) and get their counts back.  A publish Redis refuses (out of
memory) is delivered on its node and its acknowledgement counts the sockets it reached there;
a refused message that asked for no acknowledgement (a raw publisher's) leaves nothing behind on
its thread, so the answers of the refused HTTP publishes that follow on either thread count
exactly the subscribers.  A SIGTERM while JSON clients on both threads publish without pause:
the broker exits cleanly (the publishes on their way to a loop that ended first go with their
acknowledgements; this run reaches that window only at times).  A SIGTERM while clients keep
asking for what goes through loop 0 and comes back (retained reads of the topics they
subscribe to, "topics" and "presence" with Redis' figures, recoveries with "since"): each call
dropped at shutdown frees what it carries (under scripts/valgrind-tests a leak fails the exit
status; the window is reached most runs there, at times only without valgrind)."""
import asyncio
import json
import os
import shutil
import sys
import urllib.request

import websockets

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wstest import (Engine, Server, done, ok, recv_json, sanitized, skip,  # noqa: E402
                    wait_for)
from wstest import ws_connect as connect  # noqa: E402

T = 10.0


def post(url, data):
    req = urllib.request.Request(url, data=data, method="POST")
    with urllib.request.urlopen(req, timeout=T) as r:
        return json.loads(r.read().decode())


async def main():
    with Engine("redis") as redis:
        with Server("--pubsub", "--threads", "2", "-v", "--history", "100", "--bridge",
                    redis.url) as srv:
            srv.wait_log("connected")
            async with connect(srv.url("/"), T) as sub:
                await sub.send(json.dumps({"op": "subscribe", "topic": "oom"}))
                await recv_json(sub, T)
                # Raw publishers, one a thread (connections are dealt in turn): each listens too.
                raws = [await connect(srv.url("/oom"), T).__aenter__() for _ in range(2)]
                ok(wait_for(lambda: redis.subscribers("wskit:oom") == 1), "the node listens")
                redis.command("CONFIG", "SET", "maxmemory", "1")
                try:
                    for k, ws in enumerate(raws):
                        await ws.send(f"raw{k}")
                    got = sorted([(await recv_json(sub, T)).get("data") for _ in raws])
                    base = f"http://127.0.0.1:{srv.port}/publish/oom"
                    # Each POST is a new connection: dealt to both threads in turn.
                    answers = [post(base, f"http{k}".encode()) for k in range(4)]
                finally:
                    redis.command("CONFIG", "SET", "maxmemory", "0")
                ok(got == ["raw0", "raw1"], "the raw publishers' refused messages are delivered",
                   got)
                want = 1 + len(raws)
                ok(all(a.get("bridged") is False and a.get("receivers") == want
                       for a in answers),
                   f"refused HTTP publishes on both threads count their {want} receivers, nothing "
                   "left by the raw publishers' refused messages", answers)
                for ws in raws:
                    await ws.close()
            ok(srv.stop() == 0, "the broker exits cleanly")
        await shutdown_while_publishing(redis)
        await shutdown_while_asking(redis)


async def shutdown_while_publishing(redis):
    with Server("--pubsub", "--threads", "2", "-v", "--history", "100", "--bridge",
                redis.url) as srv:
        srv.wait_log("connected")
        sent = [0]

        async def publisher():
            # The acknowledgements are left unread: the broker's threads fall behind, and loop 0
            # (with fewer sockets left to drain) may end while the others still relay to it.
            try:
                async with connect(srv.url("/"), T) as ws:
                    for i in range(20000):  # bounded: the SIGTERM comes long before
                        await ws.send(json.dumps({"op": "publish", "topic": "s", "data": str(i),
                                                  "id": str(i)}))
                        sent[0] += 1
                        if i % 16 == 0:
                            await asyncio.sleep(0)
            except websockets.exceptions.ConnectionClosed:
                pass

        tasks = [asyncio.create_task(publisher()) for _ in range(4)]
        while sent[0] < 8000 and not all(t.done() for t in tasks):
            await asyncio.sleep(0.01)
        code = srv.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), T * (4 if sanitized() else 1))
        ok(code == 0 and "Sanitizer" not in srv.stderr,
           f"SIGTERM while 4 clients publish ({sent[0]} publishes sent by then): the broker "
           "exits cleanly", (code, srv.stderr[-500:]))


async def shutdown_while_asking(redis):
    with Server("--pubsub", "--threads", "2", "-v", "--history", "100", "--bridge",
                redis.url) as srv:
        srv.wait_log("connected")
        sent = [0]

        async def asker(k):
            # Nothing read back: the threads fall behind, and the calls to loop 0 and their
            # answers are still on their way when the loops end.
            try:
                async with connect(srv.url("/"), T) as ws:
                    for i in range(5000):  # bounded: the SIGTERM comes long before
                        t = f"q{k}.{i % 50}"
                        for op in ({"op": "publish", "topic": t, "data": "x", "retain": True},
                                   {"op": "subscribe", "topic": t}, {"op": "topics"},
                                   {"op": "presence", "topic": t},
                                   {"op": "unsubscribe", "topic": t}):
                            await ws.send(json.dumps(op))
                        if i % 7 == 0:
                            await ws.send(json.dumps({"op": "subscribe", "topic": f"r{k}.{i}",
                                                      "since": {"offset": 0, "epoch": "0"}}))
                        sent[0] += 1
                        if i % 8 == 0:
                            await asyncio.sleep(0)
            except websockets.exceptions.ConnectionClosed:
                pass

        tasks = [asyncio.create_task(asker(k)) for k in range(8)]
        goal = 800 if sanitized() else 3000
        while sent[0] < goal and not all(t.done() for t in tasks):
            await asyncio.sleep(0.01)
        code = srv.stop(timeout=60)
        await asyncio.wait_for(asyncio.gather(*tasks), T * (4 if sanitized() else 1))
        # 2: the clients read nothing, so some replies may still wait unsent at exit (wsserve(1)).
        ok(code in (0, 2) and "Sanitizer" not in srv.stderr,
           f"SIGTERM while 8 clients ask for retained messages, topics, presence and recoveries "
           f"({sent[0]} rounds sent by then): the broker exits cleanly", (code, srv.stderr[-500:]))


if not shutil.which("redis-server"):
    skip("relays under --threads", "redis-server is not installed")
else:
    asyncio.run(main())
done()
