#!/usr/bin/python3
"""wsserve --pubsub introspection: the "topics" request (names, subscriber counts, retained,
history length; a pattern filter and a limit), "presence" (connection ids, addresses and the
?user= given at upgrade), GET /topics and /topics/T with the same data, all behind the token.
With --threads 2 the topics span the threads (presence stays the answering thread's)."""
import asyncio
import json
import os
import re
import subprocess
import sys

import websockets

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wstest import done, ok, Server, wait_for  # noqa: E402

T = 5.0


def get(srv, path, token=None):
    args = ["curl", "-s", "-m", "5", "-w", "\n%{http_code}"]
    if token:
        args += ["-H", f"Authorization: Bearer {token}"]
    r = subprocess.run(args + [f"http://127.0.0.1:{srv.port}{path}"], capture_output=True,
                       timeout=10)
    body, _, status = r.stdout.decode().rpartition("\n")
    try:
        return int(status), json.loads(body)
    except ValueError:
        return int(status or 0), body


async def ask(ws, **req):
    await ws.send(json.dumps(req))
    return json.loads(await asyncio.wait_for(ws.recv(), T))


def thread_of(srv, ws):
    """The server thread of client ws, from -v's open line."""
    pat = re.compile(rf"127\.0\.0\.1:{ws.local_address[1]}: open.*, thread (\d+)")
    wait_for(lambda: any(pat.search(ln) for ln in list(srv.lines)), T)
    return next((m.group(1) for ln in list(srv.lines) for m in [pat.search(ln)] if m), None)


async def apart(srv, url, other, kw):
    """A client to url on another thread than client other, when given (tried a bounded number
    of times)."""
    for _ in range(30):
        ws = await websockets.connect(url, **kw)
        if other is None or thread_of(srv, ws) != thread_of(srv, other):
            return ws
        await ws.close()
    return ws


class Opened:
    """async with for a client that opens = apart(...) makes."""
    def __init__(self, opens):
        self.opens = opens

    async def __aenter__(self):
        self.ws = await self.opens
        return self.ws

    async def __aexit__(self, *exc):
        await self.ws.close()


async def main(threads):
    # presence lists the answering thread's sockets only (wsserve(1)): checked on one thread.
    one = threads == "1"
    with Server("--pubsub", "--token", "k", "--history", "10", "-v", "--threads", threads) as srv:
        base = f"ws://127.0.0.1:{srv.port}"
        kw = dict(open_timeout=T, close_timeout=T, ping_interval=None, compression=None)
        async with websockets.connect(base + "/?user=alice&token=k", **kw) as j, \
                Opened(apart(srv, base + "/news.eu?user=bob", None if one else j, kw)) as raw, \
                websockets.connect(base + "/", **kw) as anon:
            ok(one or thread_of(srv, j) != thread_of(srv, raw),
               "--threads 2: the JSON and the raw subscriber on two threads")
            await ask(j, op="subscribe", topics=["news.eu", "sport"])
            await ask(j, op="publish", topic="news.eu", data="x", retain=True)
            await ask(j, op="publish", topic="weather", data="rain", retain=True)
            await asyncio.wait_for(raw.recv(), T)
            r = await ask(j, op="topics", id=1)
            got = {t["topic"]: t for t in r.get("topics", [])}
            ok(r.get("type") == "ack" and r.get("id") == 1 and r.get("total") == 3,
               f"topics lists every topic once (--threads {threads})", r)
            ok(got.get("news.eu") == {"topic": "news.eu", "subscribers": 2, "retained": True,
                                      "history": 1},
               "raw and JSON subscribers counted together, retained, history", got.get("news.eu"))
            ok(got.get("weather", {}).get("subscribers") == 0 and got["weather"]["retained"],
               "a topic kept for its retained message alone is listed", got.get("weather"))
            r = await ask(j, op="topics", filter="news.>")
            ok([t["topic"] for t in r.get("topics", [])] == ["news.eu"], "a pattern filters", r)
            r = await ask(j, op="topics", limit=1)
            ok(len(r.get("topics", [])) == 1 and r.get("total") == 3, "a limit cuts, total stays", r)
            r = await ask(j, op="presence", topic="news.eu") if one else {}
            people = sorted((p["user"], p["json"]) for p in r.get("connections", []))
            ok(not one or people == [("alice", True), ("bob", False)] and r.get("offset") == 1 and
               all(p["address"].startswith("127.0.0.1:") and p["id"] > 0
                   for p in r["connections"]),
               "presence: ids, addresses, users, and where the topic stands", r)
            r = await ask(anon, op="topics")
            ok(r.get("error") == "forbidden", "without the token: forbidden", r)
            st, body = get(srv, "/topics")
            ok(st == 401, "GET /topics without the token: 401", body)
            st, body = get(srv, "/topics?filter=sport", token="k")
            ok(st == 200 and body.get("topics") == [{"topic": "sport", "subscribers": 1,
                                                    "retained": False, "history": 0}],
               "GET /topics?filter=", body)
            st, body = get(srv, "/topics/news.eu", token="k")
            ok(not one or st == 200 and body.get("subscribers") == 2 and
               len(body.get("connections")) == 2, "GET /topics/T", body)


try:
    asyncio.run(asyncio.wait_for(main("1"), 60))
    asyncio.run(asyncio.wait_for(main("2"), 60))
except Exception as e:  # a hang or a crash is one failure, with its reason
    ok(False, "introspection tests ran to the end", f"{type(e).__name__}: {e}")
done()
