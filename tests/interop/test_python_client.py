#!/usr/bin/python3
"""Interoperability: Python `websockets` (an independent implementation) as the client of
wsserve --echo: messages of every size and type, pings, close codes, subprotocol-less and
compressed or not."""
import asyncio
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wstest import Server, done, ok  # noqa: E402

import websockets  # noqa: E402
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory  # noqa: E402


def connect(url, compression, **kw):
    """compression: None, "deflate", or a server_max_window_bits to offer."""
    if isinstance(compression, int):
        f = ClientPerMessageDeflateFactory(server_max_window_bits=compression,
                                           client_max_window_bits=True)
        return websockets.connect(url, extensions=[f], compression=None, **kw)
    return websockets.connect(url, compression=compression, **kw)


async def run(url, compression):
    tag = f"(compression={compression})"
    async with connect(url, compression, max_size=None) as ws:
        for n in (0, 1, 125, 126, 65535, 65536, 1 << 20):
            data = os.urandom(n)
            await ws.send(data)
            got = await ws.recv()
            if not ok(got == data, f"binary {n} bytes round trip {tag}"):
                break
        text = "Grüße, 世界 🌍 " * 1000
        await ws.send(text)
        ok(await ws.recv() == text, f"text with multi-byte UTF-8 round trip {tag}")
        await ws.send(["frag", "mented", " text"])
        ok(await ws.recv() == "fragmented text", f"fragmented message from the client {tag}")
        pong = await ws.ping(b"abc")
        await asyncio.wait_for(pong, 3)
        ok(True, f"ping answered {tag}")
        for i in range(200):
            await ws.send(f"m{i}")
        got = [await ws.recv() for _ in range(200)]
        ok(got == [f"m{i}" for i in range(200)], f"200 pipelined messages in order {tag}")
    ok(ws.close_code == 1000, f"client close 1000 completes {tag}", str(ws.close_code))

    async with connect(url, compression) as ws:
        await ws.close(4001, "custom")
    ok(ws.close_code == 4001, f"close code 4001 echoed {tag}", str(ws.close_code))


async def negotiated(url, compression="deflate"):
    async with connect(url, compression) as ws:
        return ws.response_headers.get("Sec-WebSocket-Extensions")


with Server("--echo") as srv:
    asyncio.run(run(srv.url(), None))
    asyncio.run(run(srv.url(), "deflate"))
    ok(asyncio.run(negotiated(srv.url())) is None, "no permessage-deflate unless --compress")

for mode in ("shared", "dedicated", "4KB", "64KB"):
    with Server("--echo", f"--compress={mode}") as srv:
        ext = asyncio.run(negotiated(srv.url()))
        ok(ext and ext.startswith("permessage-deflate"), f"--compress={mode} negotiated: {ext}")
        asyncio.run(run(srv.url(), "deflate"))

# Every window a client may ask for is honoured, by the shared compressor too (7.1.2.1).
for mode in ("shared", "dedicated"):
    with Server("--echo", f"--compress={mode}") as srv:
        for bits in range(8, 16):
            ext = asyncio.run(negotiated(srv.url(), bits))
            ok(ext and f"server_max_window_bits={bits}" in ext,
               f"--compress={mode}, server_max_window_bits={bits} accepted: {ext}")
            asyncio.run(run(srv.url(), bits))
done()
