#!/usr/bin/python3
"""wsserve --chat, driven the way the client of Bun's chat-room benchmark (bench/websocket-server
in Bun's repository) drives a server: N clients connect with ?name=, each waits for its first
message ("ready"), then every client sends the benchmark's 50-message cycle, round after round,
and every client must receive every message of every client, its own included, as
"NAME: message", each sender's in order.  Also: the default name, "ready" again after a member
leaves and another joins, binary read as UTF-8, --rooms, and the repository's protocol checker and Bun's
own client when they can run here."""
import asyncio
import os
import shutil
import subprocess
import sys

import websockets

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wstest import done, ok, Server, skip  # noqa: E402


T = 5.0
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")

WORDS = ["What is the meaning of life?", "where is the bathroom?", "zoo", "kangaroo", "erlang",
         "elixir", "bun", "mochi", "typescript", "javascript"]
TAIL = ["Hello World! 7", "Hello World! 8", "Hello World! 9"]
CYCLE = (["Hello World!"] + [f"Hello World! {k}" for k in range(1, 10)] + WORDS + TAIL + WORDS +
         TAIL + [WORDS[0]] + TAIL + WORDS)
BASE = ["Alice", "Bob", "Charlie", "David", "Eve", "Frank", "Grace", "Heidi", "Ivan", "Judy",
        "Karl", "Linda", "Mike", "Nancy", "Oscar", "Peggy", "Quentin", "Ruth", "Steve", "Trudy",
        "Ursula", "Victor", "Wendy", "Xavier", "Yvonne", "Zach"]


def name_of(k):
    return BASE[k % len(BASE)] + str(k // len(BASE))


def connect(url):
    return websockets.connect(url, open_timeout=T, close_timeout=T, ping_interval=None,
                              max_size=None, compression=None, max_queue=None)


async def recv(ws):
    return await asyncio.wait_for(ws.recv(), T)


async def benchmark_rounds(srv, n, rounds, repeat):
    """The benchmark's protocol with n clients; True or what went wrong."""
    names = [name_of(k) for k in range(n)]
    clients = [await connect(f"{srv.url()}?name={nm}").__aenter__() for nm in names]
    try:
        firsts = await asyncio.gather(*(recv(ws) for ws in clients))
        if any(f != "ready" for f in firsts):
            return f"first messages {firsts!r}"
        batch = CYCLE * repeat
        for r in range(rounds):
            for ws in clients:
                for m in batch:
                    await ws.send(m)

            async def collect(ws):
                return [await recv(ws) for _ in range(n * len(batch))]

            got = await asyncio.gather(*(collect(ws) for ws in clients))
            for k, msgs in enumerate(got):
                for s, nm in enumerate(names):
                    mine = [m for m in msgs if m.startswith(nm + ": ")]
                    if mine != [f"{nm}: {m}" for m in batch]:
                        return (f"round {r}: client {k} got {len(mine)} of {nm}'s, "
                                "out of order or wrong")
        return True
    finally:
        for ws in clients:
            await ws.close()


async def main():
    with Server("--chat", "--clients", "8") as srv:
        r = await benchmark_rounds(srv, 8, 3, 2)
        ok(r is True, "8 clients x 3 rounds of the benchmark's 100 messages: every member gets "
           "every message, in each sender's order, as 'NAME: message'", r)

    with Server("--chat", "--clients", "32") as srv:
        r = await benchmark_rounds(srv, 32, 1, 1)
        ok(r is True, "32 clients (the benchmark's default) x 50 messages", r)

    with Server("--chat", "--clients", "2") as srv:
        a = await connect(srv.url()).__aenter__()
        b = await connect(srv.url("/?name=Bee")).__aenter__()
        ok(await recv(a) == "ready" and await recv(b) == "ready",
           "\"ready\" once --clients 2 are in")
        await a.send("hi")
        got = await recv(b)
        ok(got == "Client #0: hi" and await recv(a) == got,
           "no ?name=: named \"Client #N\" like Bun's server", got)
        await b.send(b"bin\xc3\xa4r \xff")
        got = await recv(a)
        ok(got == "Bee: bin\u00e4r \ufffd" and isinstance(got, str),
           "binary is relayed as UTF-8 text, invalid bytes replaced", repr(got))
        await recv(b)
        await b.close()
        c = await connect(srv.url("/?name=Cee")).__aenter__()
        ok(await recv(c) == "ready" and await recv(a) == "ready",
           "a member leaves, another joins: \"ready\" again")
        await a.close()
        await c.close()
        if shutil.which("curl"):
            out = subprocess.run(["curl", "-s", "-m", "5", f"http://127.0.0.1:{srv.port}/"],
                                 capture_output=True, text=True, timeout=10).stdout
            ok("chat" in out, "a plain GET is answered", out)

    with Server("--chat", "--clients", "4", "--rooms", "2") as srv:
        a, b, c, d = [await connect(srv.url(f"/?name={nm}&room={k % 2}")).__aenter__()
                      for k, nm in enumerate("ABCD")]
        ok(all([await recv(ws) == "ready" for ws in (a, b, c, d)]),
           "--rooms 2: \"ready\" once --clients 4 are in, over both rooms")
        await a.send("1")
        await b.send("2")
        await c.send("3")
        # Room 1's first line came after A's: had it reached b or d, they would see it first.
        got = [sorted([await recv(ws) for _ in range(n)])
               for ws, n in ((a, 2), (b, 1), (c, 2), (d, 1))]
        ok(got == [["A: 1", "C: 3"], ["B: 2"], ["A: 1", "C: 3"], ["B: 2"]],
           "?room=K: a line reaches the members of its room only", got)
        for ws in (a, b, c, d):
            await ws.close()
    with Server("--chat", "--clients", "2", "--rooms", "2") as srv:
        x = await connect(srv.url("/?name=X")).__aenter__()
        y = await connect(srv.url("/?name=Y&room=9")).__aenter__()  # out of range: in turn
        await recv(x)
        await recv(y)
        await x.send("1")
        await y.send("2")
        await x.send("3")
        got = [await recv(x), await recv(x), await recv(y)]
        ok(got == ["X: 1", "X: 3", "Y: 2"],
           "no ?room= (or one out of range): the rooms in turn", got)
        await x.close()
        await y.close()

    checker = os.path.join(ROOT, "scripts", "bench", "check-protocol.py")
    if os.path.exists(checker):
        with Server("--chat", "--clients", "3") as srv:
            r = subprocess.run([sys.executable, checker, "chat", "--port", str(srv.port),
                                "--clients", "3"], capture_output=True, text=True, timeout=60)
            ok(r.returncode == 0, "scripts/bench/check-protocol.py chat passes",
               r.stdout.strip().splitlines()[-1:] if r.stdout else r.stderr[-200:])
    else:
        skip("scripts/bench/check-protocol.py chat", "not in this tree")

    # Bun's own benchmark client, unchanged, where scripts/bench-setup has installed Bun.
    bun = os.path.join(os.environ.get("WSK_BENCH_DIR", "/tmp/wskit-bench"), "bun")
    client = os.path.join(ROOT, "scripts", "bench", "chat-client-bun.js")
    if os.access(bun, os.X_OK) and os.path.exists(client):
        with Server("--chat", "--clients", "16") as srv:
            env = dict(os.environ, SERVER=f"ws://127.0.0.1:{srv.port}", CLIENTS_COUNT="16",
                       RUNS="2")
            try:
                r = subprocess.run([bun, client], env=env, capture_output=True, text=True,
                                   timeout=40)
                rates = [int(line.split()[0]) for line in r.stdout.splitlines()
                         if "messages per second" in line]
                ok(r.returncode == 0 and len(rates) == 2 and sum(rates) > 0,
                   f"Bun's benchmark client runs against --chat ({rates} messages/s)",
                   r.stderr[-300:])
            except subprocess.TimeoutExpired:
                ok(False, "Bun's benchmark client runs against --chat", "timed out")
    else:
        skip("Bun's benchmark client against --chat", "Bun is not installed (scripts/bench-setup)")


try:
    asyncio.run(asyncio.wait_for(main(), 150))
except Exception as e:
    ok(False, "chat tests ran to the end", f"{type(e).__name__}: {e}")
done()
