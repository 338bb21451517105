#!/usr/bin/python3
"""wsserve --pubsub --threads 2 --bridge redis://: a JSON client that subscribes to two topics
with retained messages in one request gets on each its retained message first; while another
node keeps publishing retained messages to both, such clients get on each topic the retained
message first (a newer one that reached them while the read was on its way goes first
instead: the retained flag travels with each message), then the live ones, in order and none
twice.  While a retained read goes to loop 0 (the bridge's), the socket holds back that topic's
live messages, each topic on its own (the second topic of a request as much as the first);
without, a message loop 0 delivered before it had the read comes again as the retained one (a
raw subscriber queues them instead, and the retained answer drops the retained ones among
them).  A JSON subscribe's acknowledgement goes once every topic of the
request is released: a client that publishes to all of them the moment it has the
acknowledgement gets its own message back on each (--publish-to-self), none skipped by a hold
still up on a later topic.  A client that subscribes and at once publishes a retained message to
the topic (both in one read) gets it back, after the retained one or as it: on the thread that
holds the topic its own publish is newer than the read (it reaches loop 0 behind it) and waits
for the answer (wsk_ws_hold_queue), not left out, or it would be lost (the read then answers
none, the subscriber having it).
Publishers on the subscribers' node (both threads) keep publishing retained messages while JSON
and raw clients subscribe: a JSON subscriber is owed the retained message first (or none, when
a newer one reaches it live), then every message published after its acknowledgement, in each
publisher's order, none twice; a raw one, which has no acknowledgement, every message published
after the first one it got."""
import asyncio
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wstest import (Engine, Server, done, nothing, ok, recv_json, sanitized, skip,  # noqa: E402
                    ws_connect as connect)

T = 10.0
TOPICS = ("ka", "kb")


async def publish_all(pub, n):
    """Retained publishes 1..n to both topics, a short pause every few; then their acks."""
    for i in range(1, n + 1):
        for t in TOPICS:
            await pub.send(json.dumps({"op": "publish", "topic": t, "data": str(i),
                                       "retain": True, "id": f"{t}{i}"}))
        if i % 4 == 0:
            await asyncio.sleep(0.002)
    for _ in range(n * len(TOPICS)):
        await recv_json(pub, T)


async def joiner(url, k, n):
    """Subscribes to both topics in one request (after k short pauses): per topic, the messages
    got as (data, retained), until both topics' last (n) came or T passed."""
    await asyncio.sleep(0.005 * k)
    got = {t: [] for t in TOPICS}
    async with connect(url, T) as ws:
        await ws.send(json.dumps({"op": "subscribe", "topics": list(TOPICS), "id": "s"}))
        try:
            while not all(got[t] and got[t][-1][0] == str(n) for t in TOPICS):
                m = await recv_json(ws, T)
                if m.get("topic") in got:
                    got[m["topic"]].append((m.get("data"), m.get("retained") is True))
        except asyncio.TimeoutError:
            pass
    return got


def wrong(got, n):
    """What is wrong with one joiner's messages of one topic: a retained one after another, a
    duplicate or a message out of order, or the last one missing; None when all is well."""
    if not got:
        return "nothing"
    if any(r for _, r in got[1:]):
        return f"retained after another: {got[:5]}"
    nums = [int(d) for d, _ in got]
    if nums != sorted(set(nums)):
        return f"duplicate or out of order: {got[:8]}"
    if nums[-1] != n:
        return f"ends at {nums[-1]}"
    return None


MANY = tuple(f"m{i}" for i in range(8))


async def own_after_ack(url, k):
    """Subscribes to MANY in one request and, once acknowledged, publishes to each: the topics
    its own message did not come back on within T (none when all is well)."""
    await asyncio.sleep(0.003 * k)
    async with connect(url, T) as ws:
        await ws.send(json.dumps({"op": "subscribe", "topics": list(MANY), "id": "s"}))
        while (await recv_json(ws, T)).get("id") != "s":
            pass
        for t in MANY:
            await ws.send(json.dumps({"op": "publish", "topic": t, "data": f"own{k}"}))
        own = []
        try:
            while len(set(own)) < len(MANY):
                m = await recv_json(ws, T)
                if m.get("data") == f"own{k}":
                    own.append(m["topic"])
        except asyncio.TimeoutError:
            pass
        return sorted(set(MANY) - set(own)) + [f"{t} twice" for t in MANY if own.count(t) > 1]


async def own_retained(url, k):
    """Subscribes to a topic of its own and publishes a retained message to it at once: None
    when it comes back (once), else what came."""
    async with connect(url, T) as ws:
        t = f"own{k}"
        await ws.send(json.dumps({"op": "subscribe", "topic": t, "id": "s"}))
        await ws.send(json.dumps({"op": "publish", "topic": t, "data": "v", "retain": True}))
        got = []
        try:
            while not got or not await nothing(ws, 0.1):
                m = await recv_json(ws, T)
                if m.get("topic") == t and "data" in m:
                    got.append(m["data"])
        except asyncio.TimeoutError:
            pass
        return None if got == ["v"] else got


NEAR = 4  # publishers on the subscribers' node
# Their topic: none of TOPICS, whose last retained messages (no "p:" in them) Redis still holds
# from main's first node, and a joiner that subscribed before the first near publish got.
NEAR_TOPIC = "kn"


async def near_publisher(url, p, n, sent):
    """Retained publishes p:1..p:n to kn (sent[p]: how many went), a pause every four."""
    async with connect(url, T) as ws:
        for i in range(1, n + 1):
            await ws.send(json.dumps({"op": "publish", "topic": NEAR_TOPIC, "data": f"{p}:{i}",
                                      "retain": True, "id": str(i)}))
            sent[p] = i
            if i % 4 == 0:
                for _ in range(4):
                    await recv_json(ws, T)
                await asyncio.sleep(0.002)


async def near_joiner(url, k, n, sent):
    """Subscribes to kn (raw when k is odd): the messages got as (publisher, number, retained)
    until every publisher's last came, and sent as it stood when the subscription took effect
    for the client (the acknowledgement; raw: the first message)."""
    await asyncio.sleep(0.004 * k)
    raw = k % 2
    got, mark = [], None
    async with connect(url + (NEAR_TOPIC if raw else ""), T) as ws:
        if not raw:
            await ws.send(json.dumps({"op": "subscribe", "topic": NEAR_TOPIC, "id": "s"}))
        try:
            while not all(any(g[:2] == (p, n) for g in got) for p in range(NEAR)):
                m = await asyncio.wait_for(ws.recv(), T) if raw else await recv_json(ws, T)
                if not raw and m.get("id") == "s":
                    mark = list(sent)
                    continue
                d = m if raw else m.get("data")
                p, i = map(int, d.split(":"))
                got.append((p, i, not raw and m.get("retained") is True))
                if raw and mark is None:
                    mark = list(sent)
        except asyncio.TimeoutError:
            pass
    return got, mark or [0] * NEAR


def near_wrong(got, mark, n):
    if any(r for _, _, r in got[1:]):
        return f"retained after another: {got[:5]}"
    for p in range(NEAR):
        s = [i for q, i, _ in got if q == p]
        if s != sorted(set(s)):
            return f"publisher {p}: duplicate or out of order {s[:8]}"
        missing = sorted(set(range(mark[p] + 1, n + 1)) - set(s))
        if missing:
            return f"publisher {p}: {missing[:6]} missing (owed after {mark[p]})"
    return None


async def acknowledged(redis):
    with Server("--pubsub", "--threads", "2", "--publish-to-self", "-v", "--bridge",
                redis.url) as a:
        a.wait_log("connected")
        async with connect(a.url("/"), T) as pub:
            for t in MANY:
                await pub.send(json.dumps({"op": "publish", "topic": t, "data": "r",
                                           "retain": True, "id": t}))
                await recv_json(pub, T)
        n = 6 if sanitized() else 24
        res = await asyncio.gather(*(own_after_ack(a.url("/"), k) for k in range(n)))
        bad = [(k, r) for k, r in enumerate(res) if r]
        ok(not bad, f"{n} clients each subscribing to {len(MANY)} retained topics at once and "
           "publishing to all of them once acknowledged get their own message back on each, "
           "once", bad[:4])
        res = await asyncio.gather(*(own_retained(a.url("/"), k) for k in range(n)))
        bad = [(k, r) for k, r in enumerate(res) if r is not None]
        ok(not bad, f"{n} clients each subscribing to a topic and publishing a retained message "
           "to it at once get it back once, on either thread", bad[:4])
        n, joiners = (30, 6) if sanitized() else (80, 16)
        sent = [0] * NEAR
        res = await asyncio.gather(*(near_publisher(a.url("/"), p, n, sent) for p in range(NEAR)),
                                   *(near_joiner(a.url("/"), k, n, sent) for k in range(joiners)))
        bad = [(k, w) for k, (got, mark) in enumerate(res[NEAR:])
               for w in [near_wrong(got, mark, n)] if w]
        ok(not bad, f"{joiners} JSON and raw clients subscribing while {NEAR} publishers on their "
           "node publish retained messages: each gets what it is owed, in order, none twice",
           bad[:4])
        ok(a.stop() == 0 and "Sanitizer" not in a.stderr, "the node exits cleanly")


async def main():
    n, joiners = (60, 6) if sanitized() else (200, 32)  # valgrind: fewer
    with Engine("redis") as redis:
        # The subscribers on node A's two threads, the publisher on node B: A's live messages
        # all come through Redis to its loop 0, in the order its retained reads are made in.
        with Server("--pubsub", "--threads", "2", "-v", "--bridge", redis.url) as a, \
                Server("--pubsub", "-v", "--bridge", redis.url) as b:
            a.wait_log("connected")
            b.wait_log("connected")
            url = a.url("/")
            async with connect(b.url("/"), T) as pub:
                for t in TOPICS:  # both topics hold a retained message before anyone joins
                    await pub.send(json.dumps({"op": "publish", "topic": t, "data": "0",
                                               "retain": True, "id": t}))
                    await recv_json(pub, T)
                quiet = await joiner(url, 0, 0)
                ok(all(quiet[t] == [("0", True)] for t in TOPICS),
                   "a client subscribing to two retained topics at once gets both retained "
                   "messages", quiet)
                res = await asyncio.gather(publish_all(pub, n),
                                           *(joiner(url, k, n) for k in range(joiners)))
            bad = [(k, t, w) for k, got in enumerate(res[1:]) for t in TOPICS
                   for w in [wrong(got[t], n)] if w]
            ok(not bad, f"{joiners} clients subscribing to two retained topics at once under "
               "--threads 2, while another node publishes to both: on each topic the retained "
               "message first (or none), then live ones in order, none twice", bad[:4])
            codes = [a.stop(), b.stop()]
            ok(codes == [0, 0] and not any("Sanitizer" in s.stderr for s in (a, b)),
               "both nodes exit cleanly", codes)
        await acknowledged(redis)


if not shutil.which("redis-server"):
    skip("retained reads under --threads", "redis-server is not installed (scripts/install-deps)")
else:
    asyncio.run(main())
done()
