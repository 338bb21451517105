#!/usr/bin/python3
"""wsserve --pubsub: a new subscriber gets a retained message first, always, then every message
published after it subscribed, in order, none twice.  One publisher keeps publishing numbered
messages to a topic that holds a retained one, every RET-th of them a retained publish itself
("R<n>"), while JSON and raw (ws://host/topic) clients subscribe.  What a subscriber is owed:
JSON, every message published after its acknowledgement; raw, every message published after its
101; first a retained message (the one kept when its read is made or, when a retained publish
reached it while the read was on its way, the first such), then the rest in publish order, none
twice; the retained publishes the one read supersedes (published before the read was made) are
not sent.  So each client's first message must be a retained one, numbered a; what follows must
rise, never hold a twice nor a retained publish older than a, and hold every number published
after the client subscribed (a bound: what the publisher had sent when the acknowledgement, or
the 101, came) except the retained publishes up to a; it ends with the last.  Live messages that
reach the socket while the retained read is on its way (through the engine, or to the first
thread) wait for it (wsk_ws_hold_queue, released with the retained flag of each message in
mind: a retained publish that reached the node meanwhile makes the read answer none, and the
first such goes first), and a raw subscriber under --threads queues what the first thread
delivers before it has the read too (it is owed those; the retained ones among them, which the
read supersedes, are dropped).  Cases: no bridge with --threads 2 (the subscription and its
read of the node's retained message under the store's lock), one node with a Redis --bridge
(history off and on), a Redis --bridge with --threads 2, a NATS --bridge with JetStream, with
and without --threads 2."""
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wstest import (Engine, Server, done, ok, recv_json, sanitized, skip,  # noqa: E402
                    ws_connect as connect)

T = 10.0
TOPIC = "ord"


RET = 5  # every RET-th message is a retained publish


class Feed:
    """The publisher's state: what it sent so far, the last number it sent once it stopped;
    the joiners that had a live message (it stops once all of them had)."""

    def __init__(self, joiners):
        self.joiners = joiners
        self.subscribed = set()
        self.live = set()
        self.sent = 0
        self.last = None


async def publisher(url, feed, most):
    """Publishes 1, 2, ... to TOPIC (every RET-th as a retained publish, "R<n>"), a short pause
    every few, until every joiner had a live message (or `most` more once every joiner has
    subscribed, or 3 T in all), then one more, the last (feed.last, never retained).  Under
    valgrind joiners can take longer to subscribe than a few thousand messages take to send:
    one that subscribes after the last is owed nothing after its retained message.  Every 64th
    publish waits for its acknowledgement, so the publisher stays within 64 messages of the
    server (a slow server, under valgrind, gets no backlog of thousands to deliver)."""
    deadline = time.monotonic() + 3 * T
    async with connect(url, T) as ws:
        i = after = 0
        while len(feed.live) < feed.joiners and after < most and time.monotonic() < deadline:
            after += len(feed.subscribed) == feed.joiners
            i += 1
            kept = i % RET == 0
            pace = i % 64 == 0
            await ws.send(json.dumps({"op": "publish", "topic": TOPIC, "retain": kept,
                                      "data": f"R{i}" if kept else str(i),
                                      **({"id": f"p{i}"} if pace else {})}))
            feed.sent = i
            if pace:
                while (await recv_json(ws, T)).get("id") != f"p{i}":
                    pass
            elif i % 8 == 0:
                await asyncio.sleep(0.001)
        i += 1
        await ws.send(json.dumps({"op": "publish", "topic": TOPIC, "data": str(i), "id": "end"}))
        feed.last = i
        while (await recv_json(ws, T)).get("id") != "end":
            pass


async def joiner(url, k, feed):
    """Subscribes after k short pauses (raw when k is odd): (floor, the messages it got), floor
    what the publisher had sent when it subscribed (JSON: its acknowledgement came; raw: its
    101), each message as its data, until the publisher's last came."""
    await asyncio.sleep(0.003 * k)
    raw = k % 2
    got, floor = [], None
    try:
        async with connect(url + (TOPIC if raw else ""), T) as ws:
            if raw:
                floor = feed.sent
                feed.subscribed.add(k)
            else:
                await ws.send(json.dumps({"op": "subscribe", "topic": TOPIC, "id": "s"}))
            while feed.last is None or not got or got[-1] != str(feed.last):
                m = await asyncio.wait_for(ws.recv(), T)
                if not raw:
                    m = json.loads(m)
                    if m.get("id") == "s" and floor is None:
                        floor = feed.sent
                        feed.subscribed.add(k)
                    if m.get("topic") != TOPIC or "data" not in m:
                        continue
                    m = m["data"]
                got.append(m)
                if m != "r":
                    feed.live.add(k)
    except asyncio.TimeoutError:
        got.append("timeout")
    return floor or 0, got


def number(d):
    """(n, retained) of a message's data: "r" is the retained message from before (0), "R<n>"
    the retained publish n; (None, False) for what is none of ours."""
    if d == "r":
        return 0, True
    if d[:1] == "R" and d[1:].isdigit():
        return int(d[1:]), True
    return (int(d), False) if d.isdigit() else (None, False)


def wrong(floor, got, last):
    """What is wrong with one joiner's messages; None when all is well."""
    msgs = [number(d) for d in got]
    if not msgs or not msgs[0][1]:
        return f"not a retained message first: {got[:6]}"
    if any(n is None for n, _ in msgs):
        return f"not only numbers: {got[:8]}"
    a, rest = msgs[0][0], [n for n, _ in msgs[1:]]
    if rest != sorted(set(rest)) or a in rest:
        return f"out of order, or twice: {got[:10]}"
    stale = [n for n, kept in msgs[1:] if kept and n < a]
    if stale:
        return f"retained publishes older than the first one after it ({stale[:3]}): {got[:10]}"
    have = set(rest)
    missing = [n for n in range(floor + 1, last + 1)
               if n not in have and not (n % RET == 0 and n <= a)]
    if missing:
        return f"subscribed after {floor}, first R{a}: missing {missing[:5]}: {got[:10]}"
    return None if rest and rest[-1] == last else f"ends at {rest[-1:]}, not {last}"


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
    bad = [(k, w) for k, (floor, got) in enumerate(res) for w in [wrong(floor, got, feed.last)]
           if w]
    ok(not bad, f"{name}: {joiners} JSON and raw clients subscribing while a publisher publishes "
       f"{feed.last} messages (every {RET}th retained): a retained message first, then "
       "every message published after the subscription in order, none twice", bad[:3])


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
                await run("NATS bridge with JetStream, --threads 2", "--threads", "2",
                          "--bridge", nats.url, wait="the server has JetStream")
        finally:
            shutil.rmtree(store, ignore_errors=True)
    else:
        skip("retained order through NATS", "nats-server is not installed")


asyncio.run(main())
done()
