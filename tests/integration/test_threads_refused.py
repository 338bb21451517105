#!/usr/bin/python3
"""wsserve --pubsub --threads 2 --history N --bridge redis://: a publish Redis refuses (out of
memory) is delivered on its node and its acknowledgement counts the sockets it reached there;
a refused message that asked for no acknowledgement (a raw publisher's) leaves nothing behind on
its thread, so the answers of the refused HTTP publishes that follow on either thread count
exactly the subscribers."""
import asyncio
import json
import os
import shutil
import sys
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wstest import Engine, Server, done, ok, recv_json, skip, wait_for  # noqa: E402
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


if not shutil.which("redis-server"):
    skip("refused publishes under --threads", "redis-server is not installed")
else:
    asyncio.run(main())
done()
