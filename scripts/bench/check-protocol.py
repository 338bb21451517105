#!/usr/bin/python3
"""Conformance checks for the benchmark servers in this folder (or any server
that claims the same protocol, see PROTOCOL.md), over loopback.

  check-protocol.py echo [--port P]
  check-protocol.py chat [--port P] [--clients N]

echo: each message must come back on its connection, same type and bytes,
in order; pings are answered; the close handshake completes.
chat: the server must have been started with CLIENTS_COUNT=N (default 3):
every client gets "ready" first, then every message of every client, the
sender's own included, as the text "NAME: message", in the order each
sender sent them.

Needs the `websockets` package (Debian: python3-websockets). Every wait is
bounded (5 s). Exit status 0 when every check passed; the last line reads
"N passed, N failed".
"""

import argparse
import asyncio
import os
import sys

import websockets

TIMEOUT = 5.0
results = []


def record(name, ok, detail=""):
    results.append(ok)
    print(f"{'ok  ' if ok else 'FAIL'} {name}{'' if ok else ': ' + detail}")


async def recv(ws):
    return await asyncio.wait_for(ws.recv(), TIMEOUT)


def connect(url):
    return websockets.connect(url, compression=None, max_size=None, open_timeout=TIMEOUT,
                              close_timeout=TIMEOUT, ping_interval=None)


async def check_echo(base):
    async with connect(base + "/") as ws:
        cases = [
            ("short text", "hello"),
            ("short binary", bytes([0, 1, 2, 0xFE, 0xFF])),
            ("empty text", ""),
            ("empty binary", b""),
            ("UTF-8 text", "h\u00e9llo w\u00f6rld \u2713 \U0001F680"),
            ("126..65535 byte text", "x" * 300),
            ("65536+ byte text", "y" * 70000),
            ("1 MiB binary", os.urandom(1 << 20)),
        ]
        for name, msg in cases:
            await ws.send(msg)
            got = await recv(ws)
            same = type(got) is type(msg) and got == msg
            record(f"echo {name}", same, f"sent {type(msg).__name__}[{len(msg)}], got "
                   f"{type(got).__name__}[{len(got)}]")

        sent = [(f"msg {i}" if i % 2 == 0 else f"bin {i}".encode()) for i in range(2000)]
        for m in sent:
            await ws.send(m)
        got = [await recv(ws) for _ in sent]
        bad = [i for i, (a, b) in enumerate(zip(sent, got)) if type(a) is not type(b) or a != b]
        record("echo 2000 pipelined text/binary messages in order", not bad,
               f"first mismatch at {bad[:1]}")

        pong = await ws.ping(b"check")
        try:
            await asyncio.wait_for(pong, TIMEOUT)
            record("ping answered with pong", True)
        except asyncio.TimeoutError:
            record("ping answered with pong", False, "no pong")

        await asyncio.wait_for(ws.close(1000, "bye"), TIMEOUT)
        record("close handshake", ws.close_code == 1000, f"close code {ws.close_code}")

    async with connect(base + "/any/path?x=1") as ws:
        await ws.send("path")
        record("echo on another path", await recv(ws) == "path")


async def check_chat(base, n):
    names = [f"Tester{k}" for k in range(n)]
    clients = []
    for name in names:
        clients.append(await asyncio.wait_for(connect(f"{base}?name={name}").__aenter__(), TIMEOUT))
    try:
        firsts = await asyncio.gather(*(recv(ws) for ws in clients))
        record(f"all {n} clients get \"ready\" first", all(f == "ready" for f in firsts), repr(firsts))

        await clients[0].send("hello")
        got = await asyncio.gather(*(recv(ws) for ws in clients))
        want = f"{names[0]}: hello"
        record("a message reaches every member, the sender too, as 'NAME: message'",
               all(g == want for g in got), f"want {want!r}, got {got!r}")
        record("room messages are text", all(isinstance(g, str) for g in got))

        for k, ws in enumerate(clients):
            await ws.send(f"first from {k}")
            await ws.send(f"second from {k}")
        want_set = sorted(f"{names[k]}: {w} from {k}" for k in range(n) for w in ("first", "second"))
        ok_all = True
        ok_order = True
        for ws in clients:
            got = [await recv(ws) for _ in range(2 * n)]
            ok_all &= sorted(got) == want_set
            for k in range(n):
                a = got.index(f"{names[k]}: first from {k}") if f"{names[k]}: first from {k}" in got else -1
                b = got.index(f"{names[k]}: second from {k}") if f"{names[k]}: second from {k}" in got else -1
                ok_order &= 0 <= a < b
        record("every member gets every member's messages", ok_all)
        record("each sender's messages keep their order", ok_order)

        await clients[-1].send("bin\u00e4r".encode())
        got = await asyncio.gather(*(recv(ws) for ws in clients))
        want = f"{names[-1]}: bin\u00e4r"
        record("a binary message is relayed as UTF-8 text", all(g == want for g in got), repr(got[:1]))
    finally:
        for ws in clients:
            await ws.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", choices=["echo", "chat"])
    ap.add_argument("--host", default="127.0.0.1", choices=["127.0.0.1", "::1"])
    ap.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 4001))
    ap.add_argument("--clients", type=int, default=int(os.environ.get("CLIENTS_COUNT") or 3))
    a = ap.parse_args()
    host = f"[{a.host}]" if ":" in a.host else a.host
    base = f"ws://{host}:{a.port}"
    try:
        if a.kind == "echo":
            asyncio.run(check_echo(base))
        else:
            asyncio.run(check_chat(base, a.clients))
    except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException) as e:
        record(f"{a.kind} run", False, f"{type(e).__name__}: {e}")
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    sys.exit(0 if results and all(results) else 1)


if __name__ == "__main__":
    main()
