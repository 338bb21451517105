#!/usr/bin/python3
"""wsserve --pubsub: raw topic sockets, receiver counts, the sender left out (or not, with
--publish-to-self), topics left on close, the JSON control protocol (malformed JSON and unknown
operations answered, never dropped), many topics and subscribers, and POST /publish with curl."""
import asyncio
import json
import os
import shutil
import subprocess
import sys

import websockets

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wstest import done, nothing, ok, Server, skip  # noqa: E402


T = 5.0  # every wait is bounded


def connect(url, **kw):
    return websockets.connect(url, open_timeout=T, close_timeout=T, ping_interval=None,
                              max_size=None, compression=None, **kw)


async def recv(ws, timeout=T):
    return await asyncio.wait_for(ws.recv(), timeout)


async def recv_json(ws):
    return json.loads(await recv(ws))


async def request(ws, **req):
    await ws.send(json.dumps(req))
    return await recv_json(ws)


def curl(*args, body=None):
    """(HTTP status, parsed JSON body or text) of a curl run; body: bytes to POST."""
    if body is not None:
        args = ("--data-binary", "@-") + args
    r = subprocess.run(["curl", "-s", "-m", "5", "-o", "-", "-w", "\n%{http_code}", *args],
                       input=body if body is not None else b"", capture_output=True, timeout=10)
    r.stdout = r.stdout.decode("utf-8", "replace")
    body, _, status = r.stdout.rpartition("\n")
    try:
        body = json.loads(body)
    except ValueError:
        pass
    return int(status or 0), body


async def wait_receivers(srv, topic, want):
    """Publishes through the server until `want` receivers are counted (closes are async)."""
    got = None
    for _ in range(50):
        st, body = curl("-d", "probe", f"http://127.0.0.1:{srv.port}/publish/{topic}")
        got = body.get("receivers") if isinstance(body, dict) else None
        if got == want:
            return True
        await asyncio.sleep(0.05)
    return got


async def broker(srv):
    base = srv.url()
    async with connect(base + "news") as a1, connect(base + "news") as a2, connect(base) as j:
        r = await request(j, op="subscribe", topic="news", id=1)
        ok(r == {"type": "ack", "op": "subscribe", "id": 1, "topics": ["news"], "subscriptions": 1},
           "JSON subscribe acknowledged", r)

        await a1.send("hello")
        got2 = await recv(a2)
        gotj = await recv_json(j)
        ok(got2 == "hello", "a raw subscriber gets the message as sent", got2)
        ok(gotj == {"type": "message", "topic": "news", "data": "hello"},
           "a JSON subscriber gets it with its topic", gotj)
        ok(await nothing(a1), "the raw sender does not get its own message")

        await a2.send(b"\x00\xffbin")
        got1 = await recv(a1)
        gotj = await recv_json(j)
        ok(got1 == b"\x00\xffbin", "binary stays binary for raw subscribers", got1)
        ok(gotj.get("binary") is True and gotj.get("data") == "AP9iaW4=",
           "and arrives as base64 for JSON ones", gotj)

        r = await request(j, op="publish", topic="news", data="from json", id="p1")
        ok(r == {"type": "ack", "op": "publish", "id": "p1", "topic": "news", "receivers": 2},
           "publish acknowledged with the receiver count, the sender excluded", r)
        ok(await recv(a1) == "from json" and await recv(a2) == "from json",
           "both raw subscribers got it")
        ok(await nothing(j), "the JSON publisher did not get its own message")

        r = await request(j, op="publish", topic="news", data="AAEC", binary=True, id=2)
        ok(r.get("receivers") == 2 and await recv(a1) == b"\x00\x01\x02",
           "binary publish from base64", r)
        await recv(a2)

        r = await request(j, op="publish", topic="empty", data="x", id=3)
        ok(r.get("receivers") == 0, "a topic nobody follows: 0 receivers", r)

        text = 'quote " backslash \\ newline \n tab \t nul \u0000 \u00e9\u4e2d\U0001F600'
        await a1.send(text)
        await recv(a2)
        r = await recv_json(j)
        ok(r.get("data") == text, "control characters and non-ASCII escaped correctly", r)

        # HTTP publish with curl.
        if shutil.which("curl"):
            st, body = curl("-d", "via http", f"http://127.0.0.1:{srv.port}/publish/news")
            ok(st == 200 and body == {"topic": "news", "receivers": 3},
               "POST /publish/news: 200 with 3 receivers", f"{st} {body}")
            ok(await recv(a1) == "via http" and (await recv_json(j))["data"] == "via http",
               "subscribers get the body")
            await recv(a2)
            st, body = curl("-H", "Content-Type: application/octet-stream",
                            f"http://127.0.0.1:{srv.port}/publish/news", body=b"\xff\x00raw")
            ok(st == 200, "an octet-stream body is published as binary", f"{st} {body}")
            ok(await recv(a1) == b"\xff\x00raw", "and arrives as sent")
            await recv(a2)
            await recv(j)
            st, body = curl(f"http://127.0.0.1:{srv.port}/publish/news")
            ok(st == 405, "GET /publish: 405", st)
            st, body = curl("-d", "x", f"http://127.0.0.1:{srv.port}/publish/bad%20topic")
            ok(st == 400 and body.get("error") == "bad_topic", "invalid topic: 400", f"{st} {body}")
            st, body = curl("-d", "x", f"http://127.0.0.1:{srv.port}/elsewhere")
            ok(st == 404, "other paths: 404", st)
            st, body = curl(f"http://127.0.0.1:{srv.port}/publish/news", body=b"\xff\xfe")
            ok(st == 400 and body.get("error") == "bad_request",
               "a text body that is not UTF-8: 400", f"{st} {body}")
        else:
            skip("POST /publish with curl", "curl is not installed")

        # Sockets leave their topics when they close.
        await a2.close()
        got = await wait_receivers(srv, "news", 2) if shutil.which("curl") else True
        ok(got is True, "a closed subscriber is no longer counted", got)

    # Everything closed: the topic is gone.
    async with connect(base) as j:
        r = await request(j, op="publish", topic="news", data="anyone?", id=9)
        ok(r.get("receivers") == 0, "after every subscriber closed: 0 receivers", r)


async def protocol(srv):
    base = srv.url()
    async with connect(base) as j, connect(base + "t1") as raw:
        for name, msg, code in [
            ("malformed JSON", "{not json", "bad_json"),
            ("truncated JSON", '{"op":"ping"', "bad_json"),
            ("trailing garbage", '{"op":"ping"} x', "bad_json"),
            ("not an object", "[1,2]", "bad_json"),
            ("missing op", '{"topic":"a"}', "bad_request"),
            ("op not a string", '{"op":5}', "bad_request"),
            ("unknown op", '{"op":"frobnicate","id":7}', "unknown_op"),
            ("publish without data", '{"op":"publish","topic":"a","id":7}', "bad_request"),
            ("publish without topic", '{"op":"publish","data":"x"}', "bad_request"),
            ("topic not a string", '{"op":"subscribe","topic":1}', "bad_request"),
            ("topics not an array", '{"op":"subscribe","topics":"a"}', "bad_request"),
            ("invalid topic name", '{"op":"subscribe","topic":"a b"}', "bad_topic"),
            ("topic too long", json.dumps({"op": "subscribe", "topic": "x" * 256}), "bad_topic"),
            ("leading dollar", '{"op":"subscribe","topic":"$a"}', "bad_topic"),
            ("empty token", '{"op":"subscribe","topic":"a..b"}', "bad_topic"),
            ("'>' not last", '{"op":"subscribe","topic":"a.>.b"}', "bad_topic"),
            ("publish to a pattern", '{"op":"publish","topic":"a.*","data":"x"}', "bad_topic"),
            ("bad base64", '{"op":"publish","topic":"a","data":"!!","binary":true}', "bad_request"),
            ("NUL in a string", '{"op":"publish","topic":"a","data":"x\\u0000y"}', "bad_request"),
            ("id of a wrong type", '{"op":"ping","id":[1]}', "bad_request"),
        ]:
            await j.send(msg)
            r = await recv_json(j)
            ok(r.get("type") == "error" and r.get("error") == code and r.get("message"),
               f"{name}: error {code}", r)
        await j.send('{"op":"frobnicate","id":"abc"}')
        r = await recv_json(j)
        ok(r.get("id") == "abc", "errors carry the request's id", r)
        await j.send(b"\x01binary")
        r = await recv_json(j)
        ok(r.get("error") == "bad_request",
           "a binary message on the control socket: an error reply", r)
        r = await request(j, op="ping", id=1)
        ok(r == {"type": "ack", "op": "ping", "id": 1}, "the connection survives every error", r)

        r = await request(j, op="subscribe", topics=["a", "b", "c"], id=2)
        ok(r.get("subscriptions") == 3 and r.get("topics") == ["a", "b", "c"],
           "subscribe to several topics at once", r)
        r = await request(j, op="subscribe", topic="a", id=3)
        ok(r.get("subscriptions") == 3, "subscribing twice counts once", r)
        r = await request(j, op="subscribe", topic="d", id=4)
        ok(r.get("error") == "too_many_subscriptions", "--max-subscriptions 3 enforced", r)
        r = await request(j, op="subscribe", topics=["ok1", "bad topic"], id=5)
        ok(r.get("error") == "bad_topic", "one bad name refuses the whole request", r)
        r = await request(j, op="list", id=6)
        ok(r.get("topics") == ["a", "b", "c"], "list names the subscriptions", r)
        r = await request(j, op="unsubscribe", topics=["b", "zzz"], id=7)
        ok(r.get("subscriptions") == 2, "unsubscribe (an unknown topic is no error)", r)
        r = await request(j, op="publish", topic="t1", data="to raw", id=8)
        ok(r.get("receivers") == 1 and await recv(raw) == "to raw",
           "a JSON socket publishes to raw subscribers", r)

    # A path that is not a valid topic is refused at the upgrade.
    try:
        async with connect(base + "bad%20name"):
            refused = None
    except websockets.exceptions.InvalidStatusCode as e:
        refused = e.status_code
    ok(refused == 400, "WebSocket to an invalid topic path: 400", refused)


async def many(srv):
    """50 JSON sockets x 40 of 500 topics, 100 raw sockets on 10 topics; every topic published
    once, and the receiver counts add up."""
    base = srv.url()
    jsocks = [await connect(base).__aenter__() for _ in range(50)]
    raws = [await connect(base + f"topic{k % 10}").__aenter__() for k in range(100)]
    try:
        expected = {f"topic{t}": 0 for t in range(500)}
        for k in range(100):
            expected[f"topic{k % 10}"] += 1
        for i, ws in enumerate(jsocks):
            topics = [f"topic{(i * 37 + n * 11) % 500}" for n in range(40)]
            r = await request(ws, op="subscribe", topics=topics, id=i)
            for t in set(topics):
                expected[t] += 1
            assert r.get("type") == "ack", r
        pub = await connect(base).__aenter__()
        total = 0
        for t in expected:
            await pub.send(json.dumps({"op": "publish", "topic": t, "data": t, "id": t}))
        wrong = []
        for _ in expected:
            r = await recv_json(pub)
            total += r["receivers"]
            if r["receivers"] != expected[r["topic"]]:
                wrong.append(r)
        ok(not wrong and total == sum(expected.values()),
           f"500 topics published: {total} receivers, each count right", wrong[:3])
        counts = []
        for ws in jsocks:
            n = 0
            while n < 40:
                try:
                    await asyncio.wait_for(ws.recv(), 2)
                    n += 1
                except asyncio.TimeoutError:
                    break
            counts.append(n)
        ok(sum(counts) == sum(expected.values()) - 100, "every JSON subscriber got its deliveries",
           sum(counts))
        await pub.close()
    finally:
        for ws in jsocks + raws:
            await ws.close()


async def to_self(srv):
    base = srv.url()
    async with connect(base + "room") as a, connect(base + "room") as b, connect(base) as j:
        await request(j, op="subscribe", topic="room")
        await a.send("mine")
        ok(await recv(a) == "mine" and await recv(b) == "mine",
           "--publish-to-self: the raw sender gets its own message")
        await recv(j)
        r = await request(j, op="publish", topic="room", data="all", id=1)
        if r.get("type") == "message":  # our own delivery may come before the ack
            r = await recv_json(j)
        ok(r.get("receivers") == 3, "and the JSON publisher counts itself", r)


async def main():
    with Server("--pubsub") as srv:
        await broker(srv)
    with Server("--pubsub", "--max-subscriptions", "3") as srv:
        await protocol(srv)
    with Server("--pubsub", "--max-subscriptions", "1000") as srv:
        await many(srv)
    with Server("--pubsub", "--publish-to-self") as srv:
        await to_self(srv)


try:
    asyncio.run(asyncio.wait_for(main(), 120))
except Exception as e:  # a hang or a crash is one failure, with its reason
    ok(False, "pubsub tests ran to the end", f"{type(e).__name__}: {e}")
done()
