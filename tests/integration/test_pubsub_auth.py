#!/usr/bin/python3
"""wsserve --pubsub access control: --token (Bearer header or ?token=) for publishing,
--token-file, --private for subscribing too, and the --origin allow list, over WebSocket and
POST /publish with curl."""
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile

import websockets

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wstest import BIN, done, free_port, ok, Server, skip  # noqa: E402


T = 5.0
SECRET = "s3cr3t-token"


def connect(url, **kw):
    return websockets.connect(url, open_timeout=T, close_timeout=T, ping_interval=None,
                              compression=None, **kw)


async def recv_json(ws):
    return json.loads(await asyncio.wait_for(ws.recv(), T))


async def request(ws, **req):
    await ws.send(json.dumps(req))
    return await recv_json(ws)


async def status_of(url, **kw):
    """101, or the status a refused upgrade answered with."""
    try:
        async with connect(url, **kw):
            return 101
    except websockets.exceptions.InvalidStatusCode as e:
        return e.status_code


def curl(*args):
    r = subprocess.run(["curl", "-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}", *args],
                       capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
    return int(r.stdout or 0)


async def token_mode(srv):
    base = srv.url()
    ok(await status_of(base + "news") == 101, "--token: subscribing without a token is allowed")
    ok(await status_of(base + "news?token=wrong") == 401, "a wrong ?token= is refused with 401")
    ok(await status_of(base + "news", extra_headers={"Authorization": "Bearer nope"}) == 401,
       "a wrong Bearer token is refused with 401")
    ok(await status_of(base + f"news?token={SECRET}") == 101, "the right ?token= is accepted")

    async with connect(base + "news") as sub, connect(base) as anon, \
            connect(base, extra_headers={"Authorization": f"Bearer {SECRET}"}) as auth:
        r = await request(anon, op="publish", topic="news", data="x", id=1)
        ok(r.get("type") == "error" and r.get("error") == "forbidden",
           "JSON publish without the token: a forbidden error", r)
        r = await request(anon, op="ping", id=2)
        ok(r.get("type") == "ack", "and the connection stays open", r)
        r = await request(anon, op="subscribe", topic="news", id=3)
        ok(r.get("type") == "ack", "subscribing needs no token without --private", r)
        r = await request(auth, op="publish", topic="news", data="hi", id=4)
        ok(r.get("receivers") == 2, "publish with the Bearer token reaches 2", r)
        ok(await asyncio.wait_for(sub.recv(), T) == "hi", "the raw subscriber got it")
        await recv_json(anon)

        # A raw socket without the token has no channel for an error: its close frame says it.
        await sub.send("not allowed")
        try:
            await asyncio.wait_for(sub.recv(), T)
            code = None
        except websockets.exceptions.ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd else None
        ok(code == 1008, "a raw publish without the token: closed with 1008", code)

    async with connect(base + f"news?token={SECRET}") as pub, connect(base + "news") as sub:
        await pub.send("allowed")
        ok(await asyncio.wait_for(sub.recv(), T) == "allowed",
           "a raw publisher with ?token= publishes")

    if shutil.which("curl"):
        url = f"http://127.0.0.1:{srv.port}/publish/news"
        ok(curl("-d", "x", url) == 401, "POST without a token: 401")
        ok(curl("-d", "x", "-H", "Authorization: Bearer wrong", url) == 401, "wrong Bearer: 401")
        ok(curl("-d", "x", "-H", "Authorization: Bearer " + SECRET[:-1], url) == 401,
           "a prefix of the token: 401")
        ok(curl("-d", "x", "-H", "Authorization: Bearer " + SECRET + "x", url) == 401,
           "the token plus one character: 401")
        ok(curl("-d", "x", "-H", f"Authorization: Bearer {SECRET}", url) == 200,
           "right Bearer: 200")
        ok(curl("-d", "x", f"{url}?token={SECRET}") == 200, "right ?token=: 200")
    else:
        skip("POST /publish with a token", "curl is not installed")


async def private_mode(srv):
    base = srv.url()
    ok(await status_of(base + "news") == 401, "--private: subscribing without the token: 401")
    ok(await status_of(base) == 401, "--private: the control socket too")
    ok(await status_of(base + f"news?token={SECRET}") == 101, "--private with the token: 101")


async def origin_mode(srv):
    base = srv.url()
    ok(await status_of(base + "t", origin="https://evil.example") == 403,
       "--origin: a foreign Origin is refused with 403")
    ok(await status_of(base + "t", origin="https://good.example") == 101, "a listed Origin: 101")
    ok(await status_of(base + "t", origin="http://localhost:8000") == 101,
       "a second listed Origin (comma-separated): 101")
    ok(await status_of(base + "t", origin="https://good.example.evil") == 403,
       "an Origin that only starts with a listed one: 403")
    ok(await status_of(base + "t") == 101, "no Origin (not a browser): 101")
    if shutil.which("curl"):
        url = f"http://127.0.0.1:{srv.port}/publish/t"
        ok(curl("-d", "x", "-H", "Origin: https://evil.example", url) == 403,
           "POST from a foreign Origin: 403")
        ok(curl("-d", "x", "-H", "Origin: https://good.example", url) == 200,
           "POST from a listed Origin: 200")


def refuses(*args):
    """wsserve exits non-zero at once for these options."""
    r = subprocess.run([os.path.join(BIN, "wsserve"), *args, "--listen",
                        f"127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=10)
    return r.returncode != 0 and r.stderr.strip() != ""


async def main():
    with Server("--pubsub", "--token", SECRET) as srv:
        await token_mode(srv)
    with tempfile.NamedTemporaryFile("w", suffix=".token") as f:
        f.write(SECRET + "\n")
        f.flush()
        with Server("--pubsub", "--token-file", f.name, "--private") as srv:
            await private_mode(srv)
    with Server("--pubsub", "--origin", "https://good.example, http://localhost:8000") as srv:
        await origin_mode(srv)
    ok(refuses("--pubsub", "--private"), "--private without a token is refused")
    ok(refuses("--pubsub", "--token-file", "/nonexistent/token"), "an unreadable --token-file")
    ok(refuses("--pubsub", "--token", "a", "--token-file", "/dev/null"),
       "--token with --token-file")


try:
    asyncio.run(asyncio.wait_for(main(), 120))
except Exception as e:
    ok(False, "auth tests ran to the end", f"{type(e).__name__}: {e}")
done()
