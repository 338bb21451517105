#!/usr/bin/python3
"""wsserve --pubsub: wildcard subscriptions (raw paths and JSON, each message once however many
patterns match, the concrete topic in JSON deliveries, '$' and '>' rules, UTF-8 names) and
retained messages (JSON, HTTP ?retain=1 and wspub --retain; handed first to new subscribers,
every matching one to a pattern, cleared by an empty retained publish).  An absence is shown by
a sentinel published after it arriving next, never by a pause."""
import asyncio
import json
import os
import subprocess
import sys
import urllib.parse

import websockets

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wstest import THREADS, BIN, done, ok, Server, ws_connect as connect  # noqa: E402

T = 5.0


async def recv(ws):
    return await asyncio.wait_for(ws.recv(), T)


async def recv_json(ws):
    return json.loads(await recv(ws))


def post(srv, topic, body, query=""):
    r = subprocess.run(["curl", "-s", "-m", "5", "--data-binary", "@-",
                        f"http://127.0.0.1:{srv.port}/publish/{urllib.parse.quote(topic)}{query}"],
                       input=body, capture_output=True, timeout=10)
    try:
        return json.loads(r.stdout)
    except ValueError:
        return r.stdout


async def subscribe(j, *topics):
    await j.send(json.dumps({"op": "subscribe", "topics": list(topics)}))
    return await recv_json(j)


async def wildcards(srv):
    ws = f"ws://127.0.0.1:{srv.port}"
    async with connect(ws + "/orders.*.created") as raw, connect(ws + "/") as j, \
            connect(ws + "/metrics.>") as deep:
        a = await subscribe(j, "orders.*.created", "orders.>", "orders.7.created")
        ok(a.get("type") == "ack" and a.get("subscriptions") == 3, "JSON subscribes to patterns", a)
        r = post(srv, "orders.7.created", b"seven")
        # With --threads, a socket on another thread counts once per matching subscription (a
        # group's counts, lib/wskit.h); it still gets the message once (below).
        n = r.get("receivers") if isinstance(r, dict) else None
        ok(n == 2 or (THREADS and n in (2, 3, 4)), "a publish counts each socket once", r)
        ok(await recv(raw) == "seven", "a raw pattern subscriber gets the message")
        m = await recv_json(j)
        ok(m.get("topic") == "orders.7.created" and m.get("data") == "seven",
           "a JSON delivery carries the concrete topic", m)
        post(srv, "orders.8.deleted", b"eight")
        post(srv, "orders.9.created", b"sentinel")
        m = await recv_json(j)
        ok(m.get("data") == "eight", "'>' matches what '*' does not", m)
        m = await recv_json(j)
        ok(m.get("data") == "sentinel", "three matching subscriptions: one delivery", m)
        ok(await recv(raw) == "sentinel", "'*' is one token: orders.8.deleted not delivered")
        post(srv, "metrics", b"no")
        post(srv, "metrics.cpu.0", b"yes")
        ok(await recv(deep) == "yes", "'>' needs at least one token")

        async with connect(ws + "/>") as everything:
            ok((await subscribe(j, ">")).get("subscriptions") == 4, "JSON subscribes to '>'")
            post(srv, "a", b"one")
            ok(await recv(everything) == "one", "a raw '>' gets every topic")
            ok((await recv_json(j)).get("topic") == "a", "a JSON '>' too")
            post(srv, "b", b"two")
            ok(await recv(everything) == "two", "... and no JSON envelope (the '$' namespace)")
            ok((await recv_json(j)).get("topic") == "b", "(JSON)")
            await j.send(json.dumps({"op": "unsubscribe", "topic": ">"}))
            ok((await recv_json(j)).get("subscriptions") == 3, "JSON leaves '>'")

        async with connect(ws + "/orders.*.created") as pub:
            await pub.send("to a pattern?")
            try:
                await recv(pub)
            except websockets.ConnectionClosed as e:
                ok(e.rcvd and e.rcvd.code == 1008, "a raw pattern socket cannot publish", e)

        name = "caf\u00e9.cr\u00e8me"
        async with connect(ws + "/" + urllib.parse.quote(name)) as u:
            r = post(srv, name, "br\u00fbl\u00e9e".encode())
            ok(isinstance(r, dict) and r.get("receivers") == 1 and r.get("topic") == name,
               "UTF-8 topic names, percent-encoded in paths", r)
            ok(await recv(u) == "br\u00fbl\u00e9e", "... delivered")
        for bad in ["a b", "$x", "a..b", "x" * 256, "a.>.b", "tab\there"]:
            try:
                async with connect(ws + "/" + urllib.parse.quote(bad)):
                    ok(False, f"path topic {bad[:20]!r} refused")
            except websockets.InvalidHandshake as e:  # its name and fields vary by version
                ok("400" in str(e), f"path topic {bad[:20]!r} refused with 400", e)


async def retained(srv):
    ws = f"ws://127.0.0.1:{srv.port}"
    async with connect(ws + "/") as j:
        await j.send(json.dumps({"op": "publish", "topic": "state.a", "data": "A1", "retain": True,
                                 "id": 1}))
        ok((await recv_json(j)).get("type") == "ack", "a retained JSON publish is acknowledged")
        await j.send(json.dumps({"op": "publish", "topic": "state.a", "data": "A2", "retain": True,
                                 "id": 2}))
        await recv_json(j)
    r = post(srv, "state.b", b"\x00B", "?retain=1&binary=1")
    ok(isinstance(r, dict) and r.get("topic") == "state.b", "POST ?retain=1", r)
    wspub = subprocess.run([os.path.join(BIN, "wspub"), "--retain", ws + "/", "other.c", "C"],
                           capture_output=True, timeout=10)
    ok(wspub.returncode == 0, "wspub --retain", wspub.stderr)

    async with connect(ws + "/state.a") as raw:
        ok(await recv(raw) == "A2", "a new raw subscriber gets the last retained message first")
        post(srv, "state.a", b"live")
        ok(await recv(raw) == "live", "then live messages")
    async with connect(ws + "/") as j:
        a = await subscribe(j, "state.*", "other.c")
        ok(a.get("type") == "ack", "the acknowledgement comes first", a)
        got = {}
        for _ in range(3):
            m = await recv_json(j)
            got[m.get("topic")] = m
        ok(set(got) == {"state.a", "state.b", "other.c"} and
           all(m.get("retained") is True for m in got.values()),
           "a pattern gets every matching retained topic, marked retained", got)
        ok(got.get("state.b", {}).get("binary") is True and got["state.b"].get("data") == "AEI=",
           "binary stays binary", got.get("state.b"))
        ok(got.get("state.a", {}).get("data") == "A2", "a plain publish does not replace it")
    post(srv, "state.a", b"", "?retain=1")
    async with connect(ws + "/") as j:
        await subscribe(j, "state.a", "state.b")
        m = await recv_json(j)
        ok(m.get("topic") == "state.b", "an empty retained publish clears the topic's message", m)


async def main():
    with Server("--pubsub") as srv:
        await wildcards(srv)
        await retained(srv)


try:
    asyncio.run(asyncio.wait_for(main(), 120))
except Exception as e:  # a hang or a crash is one failure, with its reason
    ok(False, "pattern and retain tests ran to the end", f"{type(e).__name__}: {e}")
done()
