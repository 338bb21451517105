#!/usr/bin/python3
"""wsserve --pubsub: a new subscriber gets the topic's retained message first, always.  One
publisher keeps publishing numbered messages (not retained) to a topic that holds a retained
one while JSON and raw (ws://host/topic) clients subscribe: each must get the retained message
first, then the numbers in order with no gap from the first one it got, none twice, up to the
last.  Live messages that reach the socket while the retained read is on its way (through the
engine, or to the first thread) wait for it (wsk_ws_hold_queue).  Cases: one node with a Redis
--bridge (history off and on), a NATS --bridge with JetStream, no bridge with --threads 2, and a
Redis --bridge with --threads 2."""
import asyncio
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wstest import (Engine, Server, done, ok, recv_json, sanitized, skip,  # noqa: E402
                    ws_connect as connect)

T = 10.0
TOPIC = "ord"


class Feed:
    """The publisher's state: the last number it sent once it stopped; the joiners that had a
    live message (it stops once all of them had)."""

    def __init__(self, joiners):
        self.joiners = joiners
        self.live = set()
        self.last = None


async def publisher(url, feed, most):
    """Publishes 1, 2, ... to TOPIC, a short pause every few, until every joiner had a live
    message (or `most`), then one more, the last (feed.last)."""
    async with connect(url, T) as ws:
        i = 0
        while len(feed.live) < feed.joiners and i < most:
            i += 1
            await ws.send(json.dumps({"op": "publish", "topic": TOPIC, "data": str(i)}))
            feed.sent = i
            if i % 8 == 0:
                await asyncio.sleep(0.001)
        i += 1
        await ws.send(json.dumps({"op": "publish", "topic": TOPIC, "data": str(i), "id": "end"}))
        feed.last = i
        while (await recv_json(ws, T)).get("id") != "end":
            pass


async def joiner(url, k, feed):
    """Subscribes after k short pauses (raw when k is odd): the messages it got, as
    (data, retained: JSON's flag, or raw's "r"), until the publisher's last came."""
    await asyncio.sleep(0.003 * k)
    raw = k % 2
    got = []
    try:
        async with connect(url + (TOPIC if raw else ""), T) as ws:
            if not raw:
                await ws.send(json.dumps({"op": "subscribe", "topic": TOPIC, "id": "s"}))
            while feed.last is None or not got or got[-1][0] != str(feed.last):
                m = await asyncio.wait_for(ws.recv(), T)
                if not raw:
                    m = json.loads(m)
                    if m.get("topic") != TOPIC or "data" not in m:
                        continue
                got.append((m, m == "r") if raw else (m["data"], m.get("retained") is True))
                if got[-1][0] != "r":
                    feed.live.add(k)
    except asyncio.TimeoutError:
        got.append(("timeout", False))
    return got


def wrong(got, last):
    """What is wrong with one joiner's messages; None when all is well."""
    if not got or got[0] != ("r", True):
        return f"not the retained message first: {got[:6]}"
    nums = [d for d, _ in got[1:]]
    if not all(d.isdigit() for d in nums):
        return f"not only numbers after it: {got[:6]}"
    nums = [int(d) for d in nums]
    if nums and nums != list(range(nums[0], nums[0] + len(nums))):
        return f"a gap, a duplicate or out of order: {got[:10]}"
    if not nums or nums[-1] != last:
        return f"ends at {nums[-1:]}, not {last}"
    return None


async def race(name, url):
    """Joiners subscribing while the publisher publishes: each gets what it is owed."""
    async with connect(url, T) as ws:  # the retained message, before anyone joins
        await ws.send(json.dumps({"op": "publish", "topic": TOPIC, "data": "r", "retain": True,
                                  "id": "r"}))
        while (await recv_json(ws, T)).get("id") != "r":
            pass
    joiners = 6 if sanitized() else 24
    feed = Feed(joiners)
    res = await asyncio.gather(publisher(url, feed, 3000 if sanitized() else 20000),
                               *(joiner(url, k, feed) for k in range(joiners)))
    res = res[1:]
    bad = [(k, w) for k, got in enumerate(res) for w in [wrong(got, feed.last)] if w]
    ok(not bad, f"{name}: {joiners} JSON and raw clients subscribing while a publisher publishes "
       f"{feed.last} messages: the retained message first, then the rest in order, no gap, "
       "none twice", bad[:3])


async def run(name, *args, wait=None):
    with Server("--pubsub", "-v", *args) as s:
        if wait:
            s.wait_log(wait)
        await race(name, s.url("/"))
        ok(s.stop() == 0 and "Sanitizer" not in s.stderr, f"{name}: the server exits cleanly")


async def main():
    await run("no bridge, --threads 2", "--threads", "2")
    if shutil.which("redis-server"):
        with Engine("redis") as redis:
            await run("Redis bridge", "--bridge", redis.url, wait="connected")
            redis.command("FLUSHALL")
            await run("Redis bridge, --history", "--history", "100", "--bridge", redis.url,
                      wait="connected")
            redis.command("FLUSHALL")
            await run("Redis bridge, --threads 2", "--threads", "2", "--bridge", redis.url,
                      wait="connected")
    else:
        skip("retained order through Redis", "redis-server is not installed")
    if shutil.which("nats-server"):
        store = tempfile.mkdtemp(prefix="wsk-js-")
        try:
            with Engine("nats", extra=["-js", "-sd", store]) as nats:
                await run("NATS bridge with JetStream", "--bridge", nats.url,
                          wait="the server has JetStream")
        finally:
            shutil.rmtree(store, ignore_errors=True)
    else:
        skip("retained order through NATS", "nats-server is not installed")


asyncio.run(main())
done()
