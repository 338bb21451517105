#!/usr/bin/python3
"""wsserve --pubsub --history N with a nats:// --bridge to a nats-server with JetStream: the
history lives in a stream per topic, so that two nodes number a topic's messages alike and
either recovers any client (the scenarios of test_bridge_history.py, shared in
tests/lib/history.py).  A subscriber on node A killed mid-stream while node B publishes comes
back on node B with "since" and gets every missed message once, in order, then live ones from
both nodes; messages the server republishes out of order are delivered in order; a message
whose republish is lost is read from the stream at once, and not delivered twice when it
comes; a stream deleted meanwhile starts a new epoch, through both nodes, losing nothing; the
stream keeps the last N messages, each for TTL seconds, and a node with a deeper --history
raises them; ?storage=memory keeps the streams in memory; with nats-server down, local
delivery goes on without offsets and "recovered": false; a nats-server restarted without its
store starts offsets again with a new epoch, and one restarted without JetStream gets local
delivery without offsets.  Retained messages live in JetStream too, with and without history
(the scenarios of test_bridge_history.py), and "topics" and GET /topics read them and the
history lengths there; without history a retained publish is one JetStream publish, stored as
it is delivered: in order with the node's plain publishes at another node, and kept once
acknowledged, even by a node killed right after (one the stream did not store: "bridged":
false, logged, and the stream made again).  A nats-server without JetStream: history and retained messages stay
node-local, and the node says why, once.  A SIGTERM while a node waits at start for NATS
ends the wait: it exits without listening."""
import asyncio
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wstest import (done, Engine, nothing, ok, recv_json, sanitized, Server, skip,  # noqa: E402
                    wait_for, ws_connect as connect)
from history import (across_nodes, introspection, messages, messages_unless_late,  # noqa: E402
                     own_messages, publish, resume, retained, storm, under_pattern)


def node(nats, *extra):
    s = Server("--pubsub", "-v", *(extra or ("--history", "5000")), "--bridge", nats.url)
    s.wait_log("the server has JetStream")
    return s


def streams(nats, what="state"):
    """{stream name: state (or config)} of the server's JetStream (its monitoring port's
    /jsz)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{nats.monitor}/jsz?streams=1&config=1",
                                timeout=5) as r:
        accounts = json.load(r).get("account_details") or []
    return {s["name"]: s[what] for a in accounts for s in a.get("stream_detail") or []}


def nats_send(nats, out, until=b"PONG"):
    """Sends out (NATS protocol) on a connection of its own; the first line starting with
    until, or the payload of a MSG (HMSG: after its headers)."""
    with socket.create_connection(("127.0.0.1", nats.port), timeout=5) as c:
        f = c.makefile("rb")
        f.readline()  # INFO
        c.sendall(b'CONNECT {"verbose":false,"headers":true,"no_responders":true}\r\n' + out +
                  b"PING\r\n")
        while not (line := f.readline()).startswith(until):
            pass
        if not line.startswith((b"MSG", b"HMSG")):
            return line
        body = f.read(int(line.split()[-1]) + 2)[:-2]
        return body[int(line.split()[-2]):] if line.startswith(b"HMSG") else body


def stream_name(chan):
    """The stream of a channel: WSKH_ and its 64-bit FNV-1a in hex."""
    h = 14695981039346656037
    for c in chan.encode():
        h = ((h ^ c) * 1099511628211) % (1 << 64)
    return f"WSKH_{h:016x}"


def delete_stream(nats, name):
    api = b"$JS.API.STREAM.DELETE." + name.encode()
    return json.loads(nats_send(nats, b"SUB _INBOX.del 1\r\nPUB %s _INBOX.del 0\r\n\r\n" % api,
                                b"MSG"))


def retained_env(nats, topic):
    """The envelope the stream of retained messages keeps for topic (b"": none)."""
    body = json.dumps({"last_by_subj": f"$WSKR.wskit:{topic}"}).encode()
    return nats_send(nats, b"SUB _INBOX.k 1\r\nPUB $JS.API.DIRECT.GET.WSKR _INBOX.k %d\r\n"
                     b"%s\r\n" % (len(body), body), b"HMSG")


def kept(nats):
    """kept(topic) of history.retained: whether the stream of retained messages holds one for
    the topic (its envelope has a message: an empty one clears)."""
    def holds(topic):
        env = retained_env(nats, topic)
        return len(env) > (54 if len(env) > 1 and env[1] & 8 else 18)
    return holds


async def newer_kept(nats, a, b):
    """With history, a retained message is stored once its history stream has it, on two nodes
    at once too: one with an offset below the kept one's does not replace it."""
    async with connect(b.url()) as pub:
        await pub.send(json.dumps({"op": "publish", "topic": "cas", "data": "c1", "retain": True,
                                   "id": "c1"}))
        await recv_json(pub)
        ok(wait_for(lambda: kept(nats)("cas")), "a retained message of cas is kept")
        env = retained_env(nats, "cas")
        later = env[:18] + b"%020d" % 99 + env[38:54] + b"later"  # as if from another node
        nats_send(nats, b"PUB $WSKR.wskit:cas %d\r\n%s\r\n" % (len(later), later))
        await pub.send(json.dumps({"op": "publish", "topic": "cas", "data": "c2", "retain": True,
                                   "id": "c2"}))
        await recv_json(pub)
        await pub.send(json.dumps({"op": "topics", "filter": "cas", "id": "t"}))
        m = await recv_json(pub)  # read after the store, by the same worker
        ok(m.get("topics", [{}])[0].get("history") == 2, "c2 is in the history", m)
        ok(retained_env(nats, "cas")[54:] == b"later", "... but offset 99 stays the retained "
           "message (c2's offset is 2)", retained_env(nats, "cas"))
    async with connect(a.url()) as sub:
        await sub.send(json.dumps({"op": "subscribe", "topic": "cas"}))
        await recv_json(sub)
        m = await recv_json(sub)
        ok((m.get("data"), m.get("offset"), m.get("retained")) == ("later", 99, True),
           "... and a new subscriber gets that one", m)


async def one_step(nats, a, b, history):
    """Without history, a retained publish is one JetStream publish to the topic's retained
    subject, which every node listens to next to the topic's channel: the stream stores it as
    the server delivers it.  So the plain and retained publishes of one node reach another in
    the order it made them, and a node killed (SIGKILL) right after acknowledging a burst of
    retained publishes leaves the last one kept: a new subscriber on another node gets it.  With
    history, the acknowledgement waits until the message is kept as the retained one too."""
    how = "with history" if history else "without history"
    k = node(nats, *(() if history else ("--max-subscriptions", "100")))  # the one that dies
    try:
        n = 0 if history else 1000 if sanitized() else 10000
        async with connect(a.url()) as sub, connect(k.url()) as pub:
            await sub.send(json.dumps({"op": "subscribe", "topic": f"mix{n}"}))
            await recv_json(sub)
            ok(wait_for(lambda: nats.subscribers(f"wskit:mix{n}") == 1 and
                        nats.subscribers(f"$WSKR.wskit:mix{n}") == 1),
               f"{how}: a node listens to a topic's channel and its retained subject")
            for i in range(1, n + 1):
                await pub.send(json.dumps({"op": "publish", "topic": f"mix{n}", "data": str(i),
                                           "retain": i % 2 == 0,
                                           **({"id": "end"} if i == n else {})}))
            got = []
            try:
                while len(got) < n:
                    got.append(int((await recv_json(sub)).get("data")))
            except asyncio.TimeoutError:
                pass
            # (Its acknowledgement read, the publisher's socket closes at once.)
            while n and (await recv_json(pub, 10)).get("id") != "end":
                pass
            if n:  # with history, every publish comes in the stream's order anyway
                ok(got == list(range(1, n + 1)), f"{n} plain and retained publishes of one node, "
                   "interleaved, reach another node in order", [x for i, x in enumerate(got)
                                                                if x != i + 1][:5] or len(got))
        async with connect(k.url()) as pub:
            m = 100 if sanitized() else 300
            for i in range(1, m + 1):
                await pub.send(json.dumps({"op": "publish", "topic": f"die{history}",
                                           "data": str(i),
                                           "retain": True, **({"id": "last"} if i == m else {})}))
            while (ack := await recv_json(pub, 10)).get("id") != "last":
                pass
            if "reason" in ack:  # acknowledged late, without JetStream's word: wait for it
                wait_for(lambda: retained_env(nats, f"die{history}").endswith(b"%d" % m))
            ok(ack.get("bridged") is True, f"{how}: the last retained publish is acknowledged "
               "once JetStream stored it", ack)
        k.stop(signal.SIGKILL)
        async with connect(b.url() + f"die{history}") as raw:
            r = await asyncio.wait_for(raw.recv(), 10)
        ok(r == str(m), f"{how}: its node killed right after that acknowledgement, a new "
           "subscriber on another node gets the last retained message", r)
    finally:
        k.stop(signal.SIGKILL)


async def unkept(nats, a):
    """A retained publish the stream does not store (deleted meanwhile) is acknowledged with
    "bridged": false, counted and logged; the node makes the stream again for the next one."""
    delete_stream(nats, "WSKR")
    async with connect(a.url()) as pub:
        await pub.send(json.dumps({"op": "publish", "topic": "gone", "data": "g1", "retain": True,
                                   "id": "g1"}))
        ack = await recv_json(pub, 10)
        ok(ack.get("bridged") is False and a.wait_log("delivered but not kept in JetStream"),
           "a retained publish the stream did not store: \"bridged\": false, and logged",
           (ack, a.lines[-2:]))
        ok(wait_for(lambda: "WSKR" in streams(nats)), "... and the node makes the stream again")
        await pub.send(json.dumps({"op": "publish", "topic": "gone", "data": "g2", "retain": True,
                                   "id": "g2"}))
        ack = await recv_json(pub, 10)
        ok(ack.get("bridged") is True and retained_env(nats, "gone").endswith(b"g2"),
           "... where the next one is kept", ack)


def envelope(origin, off, epoch, data):
    """A history envelope of node origin (message number = off), its offset digits zero."""
    return bytes([0xB2, 8]) + origin + off.to_bytes(8, "little") + b"0" * 20 + \
        epoch.encode() + data.encode()


def republish(nats, chan, msgs, origin=None, epoch="0123456789abcdef"):
    """Publishes on chan what a stream's RePublish sends: each (offset, data) as an envelope
    of another node (message number = offset) with that offset in the Nats-Sequence header."""
    origin = origin or os.urandom(8)
    out = b""
    for off, data in msgs:
        env = envelope(origin, off, epoch, data)
        hdr = f"NATS/1.0\r\nNats-Sequence: {off}\r\n\r\n".encode()
        out += b"HPUB %s %d %d\r\n%s%s\r\n" % (chan.encode(), len(hdr), len(hdr) + len(env),
                                                 hdr, env)
    nats_send(nats, out)


async def out_of_order(nats, a):
    """nats-server 2.9 may republish a stream's messages out of order (two publishers at once):
    a node delivers them in the stream's order, one that comes before its turn waits for the
    one before it (a while at most: then it goes all the same)."""
    async with connect(a.url()) as sub:
        await sub.send(json.dumps({"op": "subscribe", "topic": "ooo"}))
        await recv_json(sub)
        ok(wait_for(lambda: nats.subscribers("wskit:ooo") == 1), "node A listens to ooo")
        republish(nats, "wskit:ooo", [(1, "o1"), (3, "o3"), (4, "o4"), (2, "o2")])
        got = await messages(sub, 4)
        ok([(d, o) for d, o, _ in got] == [("o1", 1), ("o2", 2), ("o3", 3), ("o4", 4)],
           "messages republished as 1, 3, 4, 2 are delivered as 1, 2, 3, 4", got)
        republish(nats, "wskit:ooo", [(6, "o6")])  # 5 never comes
        start = time.monotonic()
        got = await messages(sub, 1)
        ok([(d, o) for d, o, _ in got] == [("o6", 6)] and time.monotonic() - start >= 0.05,
           "one whose predecessor never comes is delivered after a wait", got)


async def gap(nats, a):
    """A message that does not come (its republish lost) while the next one has: the node reads
    it from the stream at once, instead of waiting, and delivers both in order; when it comes
    after all, it is not delivered twice.  The stream here is made by hand, without RePublish,
    holding messages 1 to 4; what the node hears is published on the channel."""
    chan, epoch, origin = "wskit:gap", "0123456789abcdef", os.urandom(8)
    cfg = json.dumps({"name": stream_name(chan), "subjects": [f"$WSKH.{epoch}.{chan}"],
                      "storage": "memory", "allow_direct": True}).encode()
    api = b"$JS.API.STREAM.CREATE." + stream_name(chan).encode()
    out = b"SUB _INBOX.mk 1\r\nPUB %s _INBOX.mk %d\r\n%s\r\n" % (api, len(cfg), cfg)
    reply = json.loads(nats_send(nats, out, b"MSG"))
    ok("error" not in reply, "a stream for gap, made by hand", reply)
    out = b""
    for off in range(1, 5):
        env = envelope(origin, off, epoch, f"g{off}")
        out += b"PUB $WSKH.%s.%s %d\r\n%s\r\n" % (epoch.encode(), chan.encode(), len(env), env)
    nats_send(nats, out)
    async with connect(a.url()) as sub:
        await sub.send(json.dumps({"op": "subscribe", "topic": "gap"}))
        await recv_json(sub)
        ok(wait_for(lambda: nats.subscribers(chan) == 1), "node A listens to gap")
        republish(nats, chan, [(1, "g1")], origin, epoch)
        ok([d for d, _, _ in await messages(sub, 1)] == ["g1"], "message 1 comes")
        start = time.monotonic()
        republish(nats, chan, [(3, "g3")], origin, epoch)  # 2 is lost
        got = await messages(sub, 2)
        took = time.monotonic() - start
        # Without the read, 3 would go alone after 100 ms (2 never republished).
        ok([(d, o) for d, o, _ in got] == [("g2", 2), ("g3", 3)],
           "message 3 without 2: 2 is read from the stream at once, then 3", (got, took))
        republish(nats, chan, [(2, "g2"), (4, "g4")], origin, epoch)  # 2 after all
        got = await messages(sub, 1)
        ok([(d, o) for d, o, _ in got] == [("g4", 4)] and await nothing(sub, 0.2),
           "... and when 2 comes after all, it is not delivered again", got)


async def deleted(nats, a, b, epoch):
    """The topic's stream deleted while the nodes run: the next publishes, through either node,
    start a new epoch at offset 1 (a node that knew the old stream finds the new one and sends
    its message again: none is lost), and the old position is not recovered."""
    reply = delete_stream(nats, stream_name("wskit:feed"))
    ok(reply.get("success") is True, "the stream of feed deleted", reply)
    async with connect(a.url()) as watch, connect(a.url()) as apub, connect(b.url()) as bpub:
        await watch.send(json.dumps({"op": "subscribe", "topic": "feed"}))
        await recv_json(watch)
        ok(wait_for(lambda: nats.subscribers("wskit:feed") == 1), "node A listens to feed")
        await publish(bpub, "feed", "d1")
        await publish(apub, "feed", "d2")
        got = await messages(watch, 2)
        ok([(d, o) for d, o, _ in got] == [("d1", 1), ("d2", 2)] and
           got[0][2] == got[1][2] != epoch, "after the deletion: offsets from 1, a new epoch, "
           "through both nodes", got)
        ack, back = await resume(b.url(), "feed", 132, epoch)
        ok(ack.get("recovered") is False and (ack.get("offset"), ack.get("epoch")) ==
           (2, got[0][2]), "the old epoch is not recovered: \"recovered\": false", ack)
        again = await messages(back, 2)
        ok(again == got, "... and what the new stream holds follows", again)
        await back.close()
    return got[0][2]


async def bounds(nats):
    """--history 5,1: the stream keeps the last 5 messages, each for 1 second."""
    c = node(nats, "--history", "5,1")
    try:
        url = c.url()
        async with connect(url) as pub:
            start = time.monotonic()
            for i in range(1, 11):
                await publish(pub, "bounded", f"b{i}")
            ack, ws = await resume(url, "bounded", 0, "")
            # A slow machine may miss this window: the messages expire from start + 1.
            got = await messages_unless_late(ws, 5, time.monotonic(), start + 1)
            await ws.close()
            young = time.monotonic() - start < 1
            ok(not young or (ack.get("recovered") is False and ack.get("offset") == 10 and
                             [(d, o) for d, o, _ in got] == [(f"b{i}", i) for i in range(6, 11)]),
               "depth 5: offsets 6 to 10 kept, 1 to 5 told lost (\"recovered\": false)",
               (ack, got))
            epoch = ack.get("epoch")
            ok(wait_for(lambda: any(s["messages"] == 0 and s["last_seq"] == 10
                                    for s in streams(nats).values()), 10) and
               time.monotonic() - start >= 0.9, "the messages go once older than the TTL")
            ack, ws = await resume(url, "bounded", 7, epoch)
            await ws.close()
            ok(ack.get("recovered") is False and ack.get("offset") == 10,
               "... then a position before them is not recovered", ack)
            ack, ws = await resume(url, "bounded", 10, epoch)
            ok(ack.get("recovered") is True and await nothing(ws, 0.2),
               "... and one after the last message is (nothing was missed)", ack)
            await ws.close()
    finally:
        ok(c.stop() == 0, "the bounded node exits cleanly")


async def raised(nats):
    """A node with a deeper --history and no TTL finds the stream of "bounded" (5 messages, 1
    second) and raises it to its own, saying so with both values; ?storage=memory in its URL
    makes the streams it makes in memory."""
    d = Server("--pubsub", "-v", "--history", "20", "--bridge", nats.url + "?storage=memory")
    try:
        d.wait_log("the server has JetStream")
        async with connect(d.url()) as pub:
            await publish(pub, "bounded", "deeper")
            await publish(pub, "in-memory", "m")
        cfg = streams(nats, "config")
        got = {c["subjects"][0].split(".", 2)[-1]: (c["max_msgs"], c["max_age"], c["storage"])
               for c in cfg.values() if c["name"].startswith("WSKH_")}
        ok(got.get("wskit:bounded") == (20, 0, "file"),
           "a deeper --history without TTL raises the stream's depth and TTL", got)
        ok(d.wait_log("raised from 5 messages, TTL 1s, to this node's 20, 0s") == 1,
           "... and says so, with both values", d.lines[-4:])
        ok(got.get("wskit:in-memory") == (20, 0, "memory"),
           "?storage=memory: the streams a node makes are in memory", got)
    finally:
        ok(d.stop() == 0, "the deeper node exits cleanly")


async def restarted(nats, a, epoch):
    """nats-server killed: local delivery without offsets and "recovered": false; back without
    its store: the topic starts again at offset 1 with a new epoch."""
    nats.stop()
    ok(a.wait_log("lost") >= 1, "node A sees nats-server go")
    ack, back = await resume(a.url(), "feed", 2, epoch)
    ok(ack.get("recovered") is False, "nats-server down: \"recovered\": false", ack)
    async with connect(a.url()) as pub:
        await publish(pub, "feed", "local")
        m = await recv_json(back)
        ok(m.get("data") == "local" and "offset" not in m,
           "... and local delivery goes on, without offsets", m)
        store = tempfile.mkdtemp(prefix="wsk-js-")
        nats.extra = ["-js", "-sd", store]  # a new store: the streams are gone
        nats.start()
        ok(a.wait_log("the server has JetStream", n=2) >= 2,
           "node A reconnects and finds JetStream", a.lines[-6:])
        await publish(pub, "feed", "again")
        m = await recv_json(back)
        fresh = (m.get("offset"), m.get("epoch"))
        ok(m.get("data") == "again" and fresh[0] == 1 and len(fresh[1]) == 16 and
           fresh[1] != epoch, "the stream made again: offset 1, a new epoch", m)
    await back.close()
    ack, back = await resume(a.url(), "feed", 2, epoch)
    ok(ack.get("recovered") is False and (ack.get("offset"), ack.get("epoch")) == fresh,
       "the old epoch is not recovered: \"recovered\": false", ack)
    got = await messages(back, 1)
    ok(got == [("again", 1, fresh[1])], "... and what the new stream holds follows", got)
    await back.close()
    shutil.rmtree(store, ignore_errors=True)

    # Back without JetStream: publishes are delivered on their node, without offsets.
    nats.stop()
    nats.extra = []
    nats.start()
    ok(a.wait_log("history publishes are delivered here only") == 1,
       "node A warns that the server has no JetStream any more", a.lines[-3:])
    ack, back = await resume(a.url(), "feed", 1, fresh[1])
    ok(ack.get("recovered") is False, "without JetStream: \"recovered\": false", ack)
    async with connect(a.url()) as pub:
        await publish(pub, "feed", "no js")
        m = await recv_json(back)
        ok(m.get("data") == "no js" and "offset" not in m, "... and local delivery, without "
           "offsets", m)
    await back.close()


async def threaded(nats, a):
    """A node with --threads 2 (whatever WSK_THREADS says) waits before it listens until NATS says
    it has JetStream, so its history is there from the first message: a publisher on one thread,
    subscribed itself, gets none of its messages back; subscribers on both threads get each once,
    in order, with the stream's offsets; the topic's stream holds them; a recovery on either
    thread of the node, and one on node a, reads them from the stream."""
    t = node(nats, "--history", "5000", "--threads", "2")
    try:
        # Under valgrind NATS may not answer within the node's wait: then no check can hold.
        local = t.count("history stays node-local: the bridge could not say")
        ok(not local or sanitized(), "the threads did not settle for node-local history",
           t.lines[-4:])
        if local:
            return
        # The node deals connections to its threads in turn: pub and sub2 on one, sub1 on the other.
        async with connect(t.url()) as pub, connect(t.url()) as sub1, connect(t.url()) as sub2:
            for ws in (pub, sub1, sub2):
                await ws.send(json.dumps({"op": "subscribe", "topic": "thr"}))
                await recv_json(ws)
            ok(wait_for(lambda: nats.subscribers("wskit:thr") == 1), "node T listens to thr")
            for i in range(1, 4):
                await publish(pub, "thr", f"t{i}")
            got = [await messages(ws, 3) for ws in (sub1, sub2)]
            ok(got[0] == got[1] and [(d, o) for d, o, _ in got[0]] == [("t1", 1), ("t2", 2),
                                                                     ("t3", 3)],
               "subscribers on both threads get every message once, in order, with its offset",
               got)
            ok(await nothing(pub, 0.1), "... and the publisher none of its own")
        st = streams(nats).get(stream_name("wskit:thr"))
        ok(st is not None and st["last_seq"] == 3, "the topic's stream in JetStream holds them", st)
        epoch = got[0][0][2]
        for url in (t.url(), t.url(), a.url()):  # both threads of node T, then node A
            ack, ws = await resume(url, "thr", 1, epoch)
            again = await messages(ws, 2) if ack.get("recovered") else []
            await ws.close()
            ok(ack.get("recovered") is True and again == got[0][1:],
               "a recovery on either thread, or on another node, reads the stream", (ack, again))
    finally:
        ok(t.stop() == 0, "the node with two threads exits cleanly")


N_RACES = 100  # subscribes acknowledged, then a publish each


async def unreachable():
    """A node with --threads 2 whose NATS cannot be reached at start does not wait out the limit
    before it listens: its history is node-local, and it says so once.  A JSON subscribe's
    acknowledgement comes once the subscription takes every message (the engine's retained read
    under way holds back the topic's messages): what the client publishes once it has it
    reaches it, whichever thread publishes it."""
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    n = Server("--pubsub", "--history", "10", "--bridge", f"nats://127.0.0.1:{port}",
               "--threads", "2", "--max-subscriptions", str(N_RACES + 1))
    try:
        ok(n.wait_log("history stays node-local: the bridge could not say at start") == 1 and
           (time.monotonic() - start < 8 or sanitized()), "NATS unreachable at start: node-local history, said "
           "once, without waiting out the limit", (n.lines[-4:], time.monotonic() - start))
        # The node deals connections to its threads in turn: sub and pub on different ones.
        async with connect(n.url()) as sub, connect(n.url()) as pub:
            seen = []

            async def subscribe(topic):
                await sub.send(json.dumps({"op": "subscribe", "topic": topic, "id": topic}))
                while (m := await recv_json(sub)).get("id") != topic:
                    seen.append(m.get("data"))

            await subscribe("u-end")
            for i in range(N_RACES):
                await subscribe(f"u{i}")
                await publish(pub, f"u{i}", f"m{i}")
            await publish(pub, "u-end", "end")
            while (m := await recv_json(sub)).get("data") != "end":
                seen.append(m.get("data"))
            want = [f"m{i}" for i in range(N_RACES)]
            ok(seen == want, "each message published once the subscribe was acknowledged reaches "
               "the subscriber, in order", [m for m in want if m not in seen] or seen)
    finally:
        ok(n.stop() == 0, "the unbridged node exits cleanly")


def signal_at_start():
    """A SIGTERM while a node with --threads waits at start for NATS to say whether it has
    JetStream (a server that answers PING and never the JetStream API) ends the wait: the node
    exits cleanly, without listening."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    asked = threading.Event()

    def fake_nats():
        try:
            serve_fake(*silent.accept())
        except OSError:
            pass  # the node went (a reset), or the test closed the socket

    def serve_fake(c, _):
        with c:
            c.sendall(b'INFO {"server_id":"fake","version":"2.9.11","proto":1,'
                      b'"max_payload":1048576,"headers":true,"jetstream":true}\r\n')
            buf = b""
            while d := c.recv(65536):
                buf += d
                if b"$JS.API.INFO" in buf:
                    asked.set()
                for _ in range(buf.count(b"PING\r\n")):
                    c.sendall(b"PONG\r\n")
                buf = buf[buf.rfind(b"\n") + 1:]

    threading.Thread(target=fake_nats, daemon=True).start()
    n = Server("--pubsub", "-v", "--history", "10", "--threads", "2", "--bridge",
               f"nats://127.0.0.1:{silent.getsockname()[1]}", wait=False)
    try:
        ok(wait_for(asked.is_set, 10), "the node asks its NATS about JetStream at start")
        code = n.stop()
        ok(code == 0 and not n.count("listening on"), "a SIGTERM during the start-up wait ends "
           "it: the node exits cleanly without listening", (code, n.lines[-3:]))
    finally:
        n.stop()
        silent.close()


async def no_jetstream():
    """A nats-server without JetStream: history stays node-local (a node's own messages carry
    its offsets, another node's none), and each node says why, once."""
    with Engine("nats") as nats:
        a, b = (Server("--pubsub", "-v", "--history", "100", "--bridge", nats.url)
                for _ in range(2))
        try:
            for s in (a, b):
                # (With --threads the warning below comes at start too: not counted here.)
                ok(s.wait_log(f"{nats.url}: the server has no JetStream") == 1,
                   "the node sees that the server has no JetStream", s.lines[-3:])
            async with connect(a.url()) as sub, connect(a.url()) as apub, \
                    connect(b.url()) as bpub:
                await sub.send(json.dumps({"op": "subscribe", "topic": "n"}))
                await recv_json(sub)
                ok(wait_for(lambda: "wskit:n" in nats.channels()), "the topic is on NATS")
                await publish(bpub, "n", "from b")
                await publish(apub, "n", "from a")
                got = sorted(await messages(sub, 2))
                ok(got[1] == ("from b", None, None) and got[0][:2] == ("from a", 1),
                   "without JetStream: history is node-local (another node's message has no "
                   "offset)", got)
                await publish(apub, "n", "again")
                said = "history stays node-local: the server has no JetStream"
                wait_for(lambda: all(s.count(said) for s in (a, b)))  # logs are read meanwhile
                ok([s.count(said) for s in (a, b)] == [1, 1], "... and each node says so once, a warning",
                   [s.lines[-2:] for s in (a, b)])
                await bpub.send(json.dumps({"op": "publish", "topic": "kept", "data": "on b",
                                            "retain": True, "id": "k"}))
                await recv_json(bpub)
                async with connect(b.url() + "kept") as here, connect(a.url() + "kept") as there:
                    r = await asyncio.wait_for(here.recv(), 5)
                    ok(r == "on b" and await nothing(there, 0.2), "without JetStream: a retained "
                       "message stays on its node (a subscriber there gets it, one on another "
                       "node none)", r)
        finally:
            codes = [s.stop() for s in (a, b)]
        ok(codes == [0, 0], "both nodes exit cleanly", codes)


async def main():
    store = tempfile.mkdtemp(prefix="wsk-js-")
    try:
        with Engine("nats", extra=["-js", "-sd", store]) as nats:
            a, b = (node(nats, "--max-subscriptions", "100") for _ in range(2))
            try:
                await retained(nats, a, b, False, kept(nats))
                await introspection(nats, a, b, False, kept(nats))
                await one_step(nats, a, b, False)
                await unkept(nats, a)
            finally:
                codes = [s.stop() for s in (a, b)]
            ok(codes == [0, 0], "both nodes without history exit cleanly", codes)
            delete_stream(nats, "WSKR")  # the racing joiners start from none again
            a, b = node(nats), node(nats)
            try:
                epoch = await across_nodes(a, b, lambda: wait_for(
                    lambda: nats.subscribers("wskit:feed") == 2))
                st = [v for k, v in streams(nats).items() if k.startswith("WSKH_")]
                ok(len(st) == 1 and st[0]["first_seq"] == 1 and st[0]["last_seq"] == 132,
                   "one stream holds the topic's 132 messages", st)
                await own_messages(a.url(), b.url(), lambda: wait_for(
                    lambda: nats.subscribers("wskit:own") == 2))
                await storm(a, b, *((100, 2) if sanitized() else (300, 4)))
                await under_pattern(a, b)
                await retained(nats, a, b, True, kept(nats))
                await introspection(nats, a, b, True, kept(nats))
                await newer_kept(nats, a, b)
                await one_step(nats, a, b, True)
                await out_of_order(nats, a)
                await gap(nats, a)
                epoch = await deleted(nats, a, b, epoch)
                await bounds(nats)
                await raised(nats)
                await threaded(nats, a)
                await restarted(nats, a, epoch)
            finally:
                codes = [s.stop() for s in (a, b)]
            ok(codes == [0, 0] and not any("Sanitizer" in s.stderr for s in (a, b)),
               "both nodes exit cleanly", codes)
    finally:
        shutil.rmtree(store, ignore_errors=True)
    await no_jetstream()
    await unreachable()
    signal_at_start()


if not shutil.which("nats-server"):
    skip("history through NATS JetStream", "nats-server is not installed (scripts/install-deps)")
else:
    asyncio.run(main())
done()
