"""Shared by the tests of history in a bridge's engine (test_bridge_history.py: Redis;
test_bridge_history_nats.py: NATS JetStream): JSON publishes, deliveries with their offsets,
subscribes with "since", and the scenarios both engines must pass the same way."""
import asyncio
import json
import os
import signal
import subprocess
import time

import websockets

from wstest import nothing, ok, recv_json, wait_for, ws_connect

T = 5.0


def connect(url):
    """A client of the scenarios: the messages it leaves unread (acknowledgements of publishes
    without an id, a stream it does not follow to the end) do not stall its close for T."""
    return ws_connect(url, max_queue=None)


async def publish(pub, topic, data, n=[0]):
    """Publishes through a JSON socket and waits for its acknowledgement."""
    n[0] += 1
    i = n[0]  # its own: publishes on other sockets may go on meanwhile
    await pub.send(json.dumps({"op": "publish", "topic": topic, "data": data, "id": i}))
    while (await recv_json(pub)).get("id") != i:
        pass


async def drain(ws):
    """Reads ws until it closes."""
    try:
        async for _ in ws:
            pass
    except websockets.ConnectionClosed:
        pass


async def messages(ws, n):
    """The next n deliveries of ws as (data, offset, epoch)."""
    got = []
    while len(got) < n:
        m = await recv_json(ws)
        if m.get("type") == "message":
            got.append((m.get("data"), m.get("offset"), m.get("epoch")))
    return got


async def messages_unless_late(ws, n, acked, late):
    """messages(ws, n); but when the acknowledgement that came before them was heard at acked
    (a time.monotonic()) after late, when what they are may have expired, those that came
    within the wait (a slow machine missed the window; the caller checks nothing then)."""
    got = []
    try:
        while len(got) < n:
            got += await messages(ws, 1)
    except asyncio.TimeoutError:
        if acked < late:
            raise
    return got


async def resume(url, topic, offset, epoch):
    """(ack, socket) of a subscribe with since."""
    ws = await connect(url).__aenter__()
    await ws.send(json.dumps({"op": "subscribe", "topic": topic,
                              "since": {"offset": offset, "epoch": epoch}}))
    return await recv_json(ws), ws


async def across_nodes(a, b, listening):
    """Two nodes: a subscriber on node A killed mid-stream while node B publishes comes back on
    node B with "since" and gets every missed message once, in order, then live ones from both
    nodes; then a client recovers on node A while both nodes publish.  listening() waits until
    both nodes listen to the topic on the engine.  The topic's epoch."""
    ua, ub = f"ws://127.0.0.1:{a.port}/", f"ws://127.0.0.1:{b.port}/"
    async with connect(ub) as pub, connect(ua) as apub, connect(ua) as sub, \
            connect(ub) as watch:
        for ws in (sub, watch):
            await ws.send(json.dumps({"op": "subscribe", "topic": "feed"}))
            await recv_json(ws)
        ok(listening(), "both nodes listen to the topic on the engine")
        for i in range(1, 21):
            await publish(pub, "feed", f"m{i}")
        seen = await messages(sub, 10)
        ok([o for _, o, _ in seen] == list(range(1, 11)) and len({e for _, _, e in seen}) == 1,
           "node A delivers node B's messages with offsets 1, 2, ... from the engine", seen)
        epoch = seen[-1][2]
        on_b = await messages(watch, 20)
        ok(on_b == [(f"m{i}", i, epoch) for i in range(1, 21)],
           "node B delivers its own messages with the same offsets and epoch", on_b[:3])
        sub.transport.abort()  # killed mid-stream: 11..20 were sent to it, maybe not read
        for i in range(21, 31):
            await publish(pub, "feed", f"m{i}")
        ack, back = await resume(ub, "feed", 10, epoch)
        ok(ack.get("recovered") is True and ack.get("offset") == 30 and ack.get("epoch") == epoch,
           "back on node B, the engine's history reaches back to offset 10", ack)
        got = await messages(back, 20)
        ok(got == [(f"m{i}", i, epoch) for i in range(11, 31)],
           "... it gets 11 to 30 once, in order, with their offsets", got[:3])
        await publish(pub, "feed", "m31")
        await publish(apub, "feed", "m32")
        got = await messages(back, 2)
        ok(got == [("m31", 31, epoch), ("m32", 32, epoch)] and await nothing(back, 0.3),
           "... then live ones from both nodes, once", got)
        await back.close()

        # Publishes from both nodes go on while a client recovers on node A.
        ack, back = await resume(ua, "feed", 0, epoch)
        ok(ack.get("recovered") is True, "offset 0 recovers the whole history", ack)

        async def more():
            for i in range(33, 133):
                await publish(pub if i % 2 else apub, "feed", f"m{i}")
        task = asyncio.create_task(more())
        got = await messages(back, 132)
        await task
        offs = [o for _, o, _ in got]
        ok(offs == list(range(1, 133)) and [d for d, _, _ in got] == [f"m{i}" for i in offs],
           "publishes during a recovery: every message once, in order, then live",
           [o for i, o in enumerate(offs) if o != i + 1][:5])
        ok(await nothing(back, 0.3), "... and nothing more")
        await back.close()
        got = await messages(watch, 112)  # read, so that the socket closes at once
        ok(got == [(f"m{i}", i, epoch) for i in range(21, 133)],
           "node B's subscriber got every message once, in order", got[:3])
    return epoch


async def own_messages(ua, ub, ready):
    """A publisher subscribed to its own topic gets none of its messages back (raw or JSON), as
    when history stays node-local; another subscriber on its node and one on node ub get every
    message once, in order, the JSON ones with the same offsets."""
    # With --threads 2 the node deals connections to its threads in turn: the spare one puts
    # the two publishers on different threads, so one is on a thread that does not hold the bridge.
    async with connect(ua + "own") as raw, connect(ua + "own") as rawsub, connect(ua) as spare, \
            connect(ua) as jpub, connect(ua) as jsub, connect(ub) as far:
        for ws in (jpub, jsub, far):
            await ws.send(json.dumps({"op": "subscribe", "topic": "own"}))
            await recv_json(ws)
        ok(ready(), "every node listens to the topic")
        for i in range(1, 6):
            await raw.send(f"r{i}")
        got = [await asyncio.wait_for(rawsub.recv(), T) for _ in range(5)]
        back = []
        for i in range(6, 11):
            await jpub.send(json.dumps({"op": "publish", "topic": "own", "data": f"j{i}",
                                        "id": i}))
            while True:
                m = await recv_json(jpub)
                if m.get("id") == i:
                    break
                back.append(m)
        got += [await asyncio.wait_for(rawsub.recv(), T) for _ in range(5)]
        want = [f"r{i}" for i in range(1, 6)] + [f"j{i}" for i in range(6, 11)]
        ok(got == want, "another raw subscriber on the publishers' node gets every message", got)
        mine, theirs = await messages(jsub, 10), await messages(far, 10)
        offs = [o for _, o, _ in mine]
        ok([d for d, _, _ in mine] == want and offs == list(range(offs[0], offs[0] + 10)) and
           theirs == mine, "JSON subscribers on both nodes: every message once, in order, with "
           "the same offsets", (mine[:2], theirs[:2]))
        rawgot = [await asyncio.wait_for(raw.recv(), T) for _ in range(5)]
        ok(rawgot == want[5:] and await nothing(raw, 0.3),
           "a raw publisher gets the others' messages, not its own", rawgot)
        back = [m.get("data") for m in back if m.get("type") == "message"]
        ok(back == want[:5] and await nothing(jpub, 0.1),
           "a JSON publisher gets the others' messages, not its own", back)


async def storm(a, b, n=1500, clients=8):
    """Both nodes publish n messages each as fast as raw sockets send them while clients
    recover from offset 0 on node A, one after another: each gets 1 .. 2n, once, in order."""
    ua = f"ws://127.0.0.1:{a.port}/"

    async def blast(srv, tag):
        async with connect(f"ws://127.0.0.1:{srv.port}/storm") as raw:
            # The other node's messages reach it: read, so that it closes at once.
            reader = asyncio.create_task(drain(raw))
            for i in range(n):  # paced: the recoveries happen during the storm
                await raw.send(f"{tag}{i}")
                if i % 10 == 0:
                    await asyncio.sleep(0.002)
        await reader

    async def recoverer(k):
        await asyncio.sleep(0.05 * k)
        ack, ws = await resume(ua, "storm", 0, "")
        try:
            got = [o for _, o, _ in await messages(ws, 2 * n)]
        except asyncio.TimeoutError:
            got = None
        await ws.close()
        return ack.get("recovered"), got

    results = await asyncio.gather(blast(a, "a"), blast(b, "b"),
                                   *(recoverer(k) for k in range(clients)))
    bad = [(k, r[0], r[1] if r[1] is None else
            [o for i, o in enumerate(r[1]) if o != i + 1][:3])
           for k, r in enumerate(results[2:]) if r != (True, list(range(1, 2 * n + 1)))]
    ok(not bad, f"{clients} recoveries during a storm of publishes on both nodes: every "
       "message once, in order", bad)


async def under_pattern(a, b):
    """A client on node A subscribed to ord.> recovers ord.a from Redis while node B goes on
    publishing to ord.a and ord.b: each message reaches it once, ord.a's in order."""
    ua, ub = f"ws://127.0.0.1:{a.port}/", f"ws://127.0.0.1:{b.port}/"
    async with connect(ub) as pub, connect(ua) as ws:
        for i in range(1, 1001):
            await pub.send(json.dumps({"op": "publish", "topic": "ord.a", "data": f"a{i}"}))
        await publish(pub, "ord.a", "a1001")
        await ws.send(json.dumps({"op": "subscribe", "topic": "ord.>"}))
        await recv_json(ws)
        await ws.send(json.dumps({"op": "subscribe", "topic": "ord.a",
                                  "since": {"offset": 0, "epoch": ""}}))
        # The recovery is under way before more is published: a message that reached the node
        # first would come through ord.> at once (with --threads its thread may take it before
        # the subscribe), and again in the history.
        ack = await recv_json(ws)
        ok(ack.get("type") == "ack" and ack.get("recovered") is True, "the recovery starts", ack)

        async def more():  # during the recovery's reads from Redis
            for i in range(1002, 1042):
                await publish(pub, "ord.a", f"a{i}")
                await publish(pub, "ord.b", f"b{i}")
        task = asyncio.create_task(more())
        got = []
        while sum(m.get("topic") == "ord.a" for m in got) < 1041:
            m = await recv_json(ws)
            if m.get("type") == "message":
                got.append(m)
        await task
        seen = [(m.get("offset"), m.get("data")) for m in got if m.get("topic") == "ord.a"]
        ok(seen == [(i, f"a{i}") for i in range(1, 1042)],
           "a recovery from Redis under a matching pattern: each message once, in order",
           [(i, o) for i, (o, _) in enumerate(seen) if o != i + 1][:5])
        await publish(pub, "ord.a", "live")
        m = await recv_json(ws)
        while m.get("topic") == "ord.b":
            m = await recv_json(ws)
        ok(m.get("data") == "live" and m.get("offset") == 1042, "then live, once",
           (m.get("data"), m.get("offset")))
        ok(await nothing(ws, 0.3), "... and nothing more")


async def retained(engine, a, b, history, kept):
    """A retained publish on node B is kept in the engine (kept(topic): 1 when the engine holds
    a retained message of topic): a new subscriber on node A (JSON or raw)
    gets it first (with its offset when the history is in the engine), then live messages, never
    twice; an empty retained publish clears it; subscribers that race retained publishes get an
    increasing sequence without duplicates."""
    ua, ub = f"ws://127.0.0.1:{a.port}/", f"ws://127.0.0.1:{b.port}/"
    how = "with history" if history else "without history"
    async with connect(ub) as pub:
        await pub.send(json.dumps({"op": "publish", "topic": "ret", "data": "r1", "retain": True,
                                   "id": "x"}))
        await recv_json(pub)
        ok(wait_for(lambda: kept("ret")), f"{how}: a retained publish is kept in the engine")
        async with connect(ua) as js, connect(ua + "ret") as raw:
            await js.send(json.dumps({"op": "subscribe", "topic": "ret"}))
            ack = await recv_json(js)
            m = await recv_json(js)
            ok(ack.get("type") == "ack" and m.get("data") == "r1" and m.get("retained") is True
               and (m.get("offset") == 1 if history else "offset" not in m),
               f"{how}: a JSON subscriber on another node gets it first", m)
            r = await asyncio.wait_for(raw.recv(), T)
            ok(r == "r1", f"{how}: so does a raw one", r)
            await publish(pub, "ret", "m2")
            m = await recv_json(js)
            r = await asyncio.wait_for(raw.recv(), T)
            ok(m.get("data") == "m2" and r == "m2" and await nothing(js, 0.2) and
               await nothing(raw, 0.1), f"{how}: then live messages, once", (m, r))
        await pub.send(json.dumps({"op": "publish", "topic": "ret", "data": "", "retain": True}))
        await recv_json(pub)
        ok(wait_for(lambda: not kept("ret")),
           f"{how}: an empty retained publish clears it in the engine")
        async with connect(ua + "ret") as raw:
            ok(await nothing(raw, 0.3), f"{how}: ... and a new subscriber gets none")

        async def churn():
            for i in range(200):
                await pub.send(json.dumps({"op": "publish", "topic": "race", "data": str(i),
                                           "retain": True, "id": f"c{i}"}))
                if i % 5 == 0:
                    await asyncio.sleep(0.002)
            acks = set()  # read, so that the socket closes at once
            while len(acks) < 200:
                acks.add((await recv_json(pub)).get("id"))

        async def joiner(k):
            await asyncio.sleep(0.01 * k)
            async with connect(ua + "race") as w:
                got = []
                try:
                    while not got or got[-1] != "199":
                        got.append(await asyncio.wait_for(w.recv(), T))
                except asyncio.TimeoutError:
                    pass
                return got
        res = await asyncio.gather(churn(), *(joiner(k) for k in range(10)))
        bad = [g for g in res[1:] if not g or g[-1] != "199" or
               [int(x) for x in g] != sorted(set(int(x) for x in g))]
        ok(not bad, f"{how}: subscribers racing retained publishes: increasing, no duplicate",
           [g[:5] for g in bad][:3])


def stopped(pid):
    """1 when process pid is stopped (its threads too: SIGSTOP takes a moment on a busy
    machine)."""
    states = []
    for t in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{t}/stat") as f:
            states.append(f.read().rsplit(")", 1)[1].split()[0])
    return all(s == "T" for s in states)


def http_json(srv, path):
    r = subprocess.run(["curl", "-s", "-m", "5", f"http://127.0.0.1:{srv.port}{path}"],
                       capture_output=True, timeout=10)
    try:
        return json.loads(r.stdout)
    except ValueError:
        return r.stdout


async def introspection(engine, a, b, history, kept=None):
    """topics (JSON and GET /topics) and presence (GET /topics/T) on node A show what the engine
    keeps of a topic published on node B: its retained flag and, with the history in the engine,
    its length; the engine stalled, the node's own figures.  kept (as for retained): the engine
    keeps a retained message a moment after delivering it (NATS: once stored), so wait for it."""
    how = "with history" if history else "without history"
    ua, ub = f"ws://127.0.0.1:{a.port}/", f"ws://127.0.0.1:{b.port}/"
    async with connect(ub) as pub, connect(ua) as sub:
        await sub.send(json.dumps({"op": "subscribe", "topic": "intro"}))
        await recv_json(sub)
        ok(wait_for(lambda: engine.subscribers("wskit:intro") == 1), f"{how}: node A listens")
        for i in range(6):
            await publish(pub, "intro", f"i{i}")
        await pub.send(json.dumps({"op": "publish", "topic": "intro", "data": "last",
                                   "retain": True, "id": "r"}))
        await recv_json(pub)
        await messages(sub, 7)
        ok(not kept or wait_for(lambda: kept("intro")), f"{how}: the retained message is kept")
        want = {"topic": "intro", "subscribers": 1, "retained": True, "history": 7 if history else 0}
        await sub.send(json.dumps({"op": "topics", "filter": "intro", "id": "t"}))
        m = await recv_json(sub)
        got = {k: v for k, v in (m.get("topics") or [{}])[0].items() if k in want}
        ok(got == want, f"{how}: \"topics\" on another node shows what the engine keeps", m)
        body = http_json(a, "/topics?filter=intro")
        got = {k: v for k, v in (body.get("topics") or [{}])[0].items() if k in want} \
            if isinstance(body, dict) else body
        ok(got == want, f"{how}: so does GET /topics", body)
        body = http_json(a, "/topics/intro")
        got = {k: body.get(k) for k in ("retained", "history")} if isinstance(body, dict) else body
        ok(got == {"retained": True, "history": want["history"]},
           f"{how}: and GET /topics/T", body)
        if history:  # a stalled engine: the node's own figures, within a second or so
            engine.proc.send_signal(signal.SIGSTOP)
            try:
                ok(wait_for(lambda: stopped(engine.proc.pid)), "the engine is stopped")
                t0 = time.monotonic()
                await sub.send(json.dumps({"op": "topics", "filter": "intro", "id": "s"}))
                body = asyncio.get_running_loop().run_in_executor(None, http_json, a,
                                                                  "/topics/intro")
                m = await recv_json(sub)  # both waiting at once: a second each at most
                body = await body
            finally:
                engine.proc.send_signal(signal.SIGCONT)
            ok(m.get("id") == "s" and m["topics"][0].get("history") == 0 and
               isinstance(body, dict) and body.get("history") == 0 and
               time.monotonic() - t0 < 4.5, "the engine stalled: \"topics\" and GET /topics/T "
               "answer with the node's own figures", (m, body))
