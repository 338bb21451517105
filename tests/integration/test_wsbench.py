#!/usr/bin/python3
"""wsbench against wsserve --echo (and a small chat server of its own) with tiny loads: the
counts add up, replies are checked, errors are reported by kind, thresholds set the exit
status, the JSON/CSV outputs parse, compare alternates targets, and the chat scenario sends
exactly Bun's benchmark (names, the 50-message cycle, rounds).  Performance is measured by
scripts/bench-*, never here: every run is a fraction of a second, bounded by -n or -d and by a
timeout."""
import asyncio
import base64
import hashlib
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wstest import BIN, Server, done, free_port, ok, skip  # noqa: E402

WSBENCH = os.path.join(BIN, "wsbench")
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def bench(*args, timeout=30):
    """(exit status, stdout, stderr) of one wsbench run."""
    r = subprocess.run([WSBENCH, *args], capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


def bench_json(*args, timeout=30):
    rc, out, err = bench("--json", *args, timeout=timeout)
    try:
        return rc, json.loads(out), err
    except ValueError:
        return rc, None, err + out


def no_errors(j):
    return j is not None and not any(j["errors"].values())


# ----- a chat server (Bun's benchmark protocol, PROTOCOL.md), small and slow but exact --------

class ChatServer:
    """Relays every text message m of member NAME as "NAME: m" to every member; "ready" 100 ms
    after the n-th joins.  Records the names and the first 50 messages of each member."""

    def __init__(self, n):
        self.n = n
        self.port = free_port()
        self.names = []
        self.first = {}
        self.counts = {}
        self.members = []
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self.ready.wait(5):
            raise RuntimeError("chat server did not start")

    def _run(self):
        asyncio.set_event_loop(self.loop)

        async def main():
            self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port)
            self.ready.set()
            await self.server.serve_forever()

        try:
            self.loop.run_until_complete(main())
        except asyncio.CancelledError:
            pass

    @staticmethod
    def _frame(payload, op=1):
        n = len(payload)
        if n < 126:
            return struct.pack("!BB", 0x80 | op, n) + payload
        if n < 65536:
            return struct.pack("!BBH", 0x80 | op, 126, n) + payload
        return struct.pack("!BBQ", 0x80 | op, 127, n) + payload

    async def _client(self, reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        target = lines[0].split()[1]
        name = target.split("name=", 1)[1] if "name=" in target else "?"
        key = next(v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)
                   if k.strip().lower() == "sec-websocket-key")
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        writer.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").encode())
        self.names.append(name)
        self.first[name] = []
        self.counts[name] = 0
        self.members.append(writer)
        if len(self.members) == self.n:
            self.loop.call_later(0.1, lambda: [m.write(self._frame(b"ready"))
                                               for m in self.members])
        try:
            while True:
                b0, b1 = await reader.readexactly(2)
                n = b1 & 127
                if n == 126:
                    n = struct.unpack("!H", await reader.readexactly(2))[0]
                elif n == 127:
                    n = struct.unpack("!Q", await reader.readexactly(8))[0]
                mask = await reader.readexactly(4) if b1 & 0x80 else b"\0\0\0\0"
                data = bytes(c ^ mask[i & 3] for i, c in enumerate(await reader.readexactly(n)))
                op = b0 & 15
                if op == 8:
                    writer.write(self._frame(data[:2], 8))
                    await writer.drain()
                    break
                if op in (1, 2):
                    self.counts[name] += 1
                    if len(self.first[name]) < 50:
                        self.first[name].append(data.decode())
                    out = self._frame(name.encode() + b": " + data)
                    for m in self.members:
                        m.write(out)
                    if self.counts[name] % 200 == 0:
                        await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if writer in self.members:
                self.members.remove(writer)
            writer.close()

    def stop(self):
        self.loop.call_soon_threadsafe(lambda: [t.cancel() for t in asyncio.all_tasks(self.loop)])
        self.thread.join(5)


CYCLE = (["Hello World!"] + [f"Hello World! {k}" for k in range(1, 10)]
         + ["What is the meaning of life?", "where is the bathroom?", "zoo", "kangaroo",
            "erlang", "elixir", "bun", "mochi", "typescript", "javascript"])
T = ["Hello World! 7", "Hello World! 8", "Hello World! 9"]
W = CYCLE[10:20]
CYCLE = CYCLE + T + W + T + ["What is the meaning of life?"] + T + W  # PROTOCOL.md


def main():
    if not os.access(WSBENCH, os.X_OK):
        skip("wsbench", "not built")
        return

    with Server("--echo") as srv:
        url = srv.url()
        rc, j, err = bench_json("-n", "400", "-c", "4", "-w", "8", url)
        ok(rc == 0 and j and j["ok"], "echo -n 400: runs", err)
        ok(j and j["messages"]["received"] == 400 and j["messages"]["sent"] == 400,
           "echo -n 400: exactly 400 sent and received", j and j["messages"])
        ok(j and j["latency_ns"]["count"] == 400 and j["latency_ns"]["p50"] > 0,
           "every reply is timed", j and j["latency_ns"])
        ok(no_errors(j) and j["connections"]["opened"] == 4, "4 connections, no errors",
           j and (j["errors"], j["connections"]))

        rc, j, err = bench_json("-n", "200", "-c", "2", "-w", "4", "-s", "3000", "--binary",
                                "--verify", url)
        ok(rc == 0 and no_errors(j) and j["messages"]["received"] == 200,
           "3000-byte binary messages (16-bit lengths), every byte verified", err)

        rc, j, err = bench_json("-n", "20", "-c", "2", "-w", "2", "-s", "200k", "--verify", url)
        ok(rc == 0 and no_errors(j) and j["messages"]["bytes_received"] == 20 * 200 * 1024,
           "200 KiB text messages (64-bit lengths, payloads across reads), verified", err)

        rc, j, err = bench_json("-d", "0.5", "-c", "4", "--rate", "2000", url)
        ok(rc == 0 and no_errors(j) and 600 <= j["messages"]["received"] <= 1200
           and j["latency_ns"]["count"] == j["messages"]["received"],
           "open loop --rate 2000 for 0.5 s: about 1000 timed replies",
           j and j["messages"]["received"])

        rc, out, err = bench("-n", "100", "-c", "2", "--threshold", "errors<1",
                             "--threshold", "p99<10s", url)
        ok(rc == 0 and "FAILED" not in out, "thresholds that hold: exit status 0", out + err)
        rc, out, err = bench("-n", "100", "-c", "2", "--threshold", "p99<1ns", url)
        ok(rc == 3 and "FAILED" in out, "a threshold that fails: exit status 3", (rc, out))
        rc, out, err = bench("-n", "10", "--threshold", "p99<<5", url)
        ok(rc == 1, "a malformed threshold is a usage error", (rc, err))

        with tempfile.TemporaryDirectory() as tmp:
            csv = os.path.join(tmp, "series.csv")
            rc, out, err = bench("-d", "1.3", "-c", "2", "--csv", csv, url)
            rows = open(csv).read().splitlines() if os.path.exists(csv) else []
            ok(rc == 0 and rows and rows[0].startswith("second,messages") and len(rows) >= 2
               and "throughput" in out, "--csv writes the per-second series", rows or err)

        rc, j, err = bench_json("compare", "-d", "0.3", "--rounds", "2", "--pause", "0",
                                "-c", "2", f"one={url}", f"two={url}")
        ok(rc == 0 and isinstance(j, list) and [r["label"] for r in j] == ["one", "two"] * 2
           and all(r["ok"] for r in j), "compare: 2 rounds of 2 targets, in turn", err)
        rc, out, err = bench("compare", "-d", "0.3", "--rounds", "1", "--pause", "0", "-c", "2",
                             f"one={url}", f"two={url}")
        ok(rc == 0 and "median" in out and "1.00x" in out and "round 1/1" in err,
           "compare prints a table with medians and ratios", out + err)

        rc, j, err = bench_json("connect", "-n", "30", "-c", "3", url)
        ok(rc == 0 and no_errors(j) and j["connections"]["handshakes"] >= 30
           and j["cycle_ns"]["count"] >= 30, "connect -n 30: 30 handshakes, each timed", err)

        rc, j, err = bench_json("hold", "-c", "50", "-d", "0.3", url)
        ok(rc == 0 and j and j["connections"]["opened"] == 50 and no_errors(j),
           "hold -c 50: 50 connections held", err)

        rc, j, err = bench_json("-n", "50", "-c", "2", "--compress", "--verify", url)
        ok(rc == 0 and no_errors(j) and j["messages"]["received"] == 50
           and j["connections"]["deflate"] == 0,
           "--compress against a server without compression: plain messages, verified", err)

    with Server("--echo", "--compress") as srv:
        rc, j, err = bench_json("-n", "200", "-c", "2", "-w", "4", "-s", "2k", "--compress",
                                "--verify", srv.url())
        ok(rc == 0 and no_errors(j) and j["messages"]["received"] == 200
           and j["connections"]["deflate"] == 2,
           "--compress against wsserve --echo --compress: negotiated, replies inflate to the "
           "message", err or j["connections"])

    port = free_port()
    rc, out, err = bench("-n", "10", "-c", "2", "--connect-timeout", "2",
                         f"ws://127.0.0.1:{port}/")
    ok(rc == 2 and "connect" in out and "refused" in out.lower(),
       "nothing listening: exit status 2, the reason by kind", (rc, out))

    # A server that refuses the upgrade.
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)

    def refuse():
        for _ in range(2):
            try:
                c, _ = lsock.accept()
            except OSError:
                return
            c.settimeout(2)
            try:
                c.recv(4096)
                c.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            except OSError:
                pass
            c.close()

    th = threading.Thread(target=refuse, daemon=True)
    th.start()
    rc, j, err = bench_json("-n", "10", "-c", "2", f"ws://127.0.0.1:{lsock.getsockname()[1]}/")
    ok(rc == 2 and j and j["errors"]["handshake"] == 2 and "404" in j.get("error", ""),
       "an upgrade answered 404: handshake errors, with the status", j)
    lsock.close()

    # A server that answers the first message with `reply`: a wrong echo of the right length
    # (only --verify sees it), or text that is not UTF-8 (a protocol error).
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)

    def answer(reply):
        try:
            c, _ = lsock.accept()
        except OSError:
            return
        c.settimeout(5)
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                head += c.recv(4096)
            key = [ln.split(b":", 1)[1].strip() for ln in head.split(b"\r\n")
                   if ln.lower().startswith(b"sec-websocket-key:")][0]
            accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
            c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            c.recv(4096)
            c.sendall(reply)
            while c.recv(4096):
                pass
        except OSError:
            pass
        c.close()

    for args, reply, kind, want, name in (
            (["--verify"], b"\x81\x10" + b"x" * 16, "mismatch", 1,
             "--verify: a reply with other bytes is a mismatch"),
            ([], b"\x81\x10" + b"x" * 16, "mismatch", 0,
             "without --verify the bytes are not compared"),
            ([], b"\x81\x10" + b"\xff" * 16, "protocol", 1,
             "a text reply that is not UTF-8 is a protocol error")):
        th = threading.Thread(target=answer, args=(reply,), daemon=True)
        th.start()
        rc, j, err = bench_json("-n", "1", "-c", "1", *args,
                                f"ws://127.0.0.1:{lsock.getsockname()[1]}/")
        th.join(10)
        ok(j is not None and j["errors"][kind] == want
           and (not want or j.get("first_error", "")), name, j or err)
    lsock.close()

    modes = subprocess.run([os.path.join(BIN, "wsserve"), "--help"], capture_output=True,
                           text=True, timeout=10).stdout
    if "--chat" in modes:
        with Server("--chat", "--clients", "4") as srv:
            rc, j, err = bench_json("chat", "-c", "4", "-n", str(2 * 4 * 1600 * 4), srv.url())
            ok(rc == 0 and no_errors(j) and j["messages"]["rounds"] == 2
               and j["messages"]["received"] == 2 * 4 * 1600 * 4,
               "chat against wsserve --chat --clients 4: two whole rounds", err or j)
    else:
        skip("chat against wsserve --chat", "this wsserve has no --chat")
    if "--pubsub" in modes:
        with Server("--pubsub") as srv:
            rc, j, err = bench_json("pubsub", "--publishers", "2", "--subscribers", "4",
                                    "--topics", "2", "--rate", "2000", "-d", "0.5", srv.url())
            # Each publish reaches the 2 subscribers of its topic: about 2 x 1000 deliveries.
            ok(rc == 0 and no_errors(j) and 1400 <= j["messages"]["received"] <= 2600
               and j["latency_ns"]["count"] == j["messages"]["received"],
               "pubsub against wsserve --pubsub: deliveries timed end to end",
               err or j["messages"])
    else:
        skip("pubsub against wsserve --pubsub", "this wsserve has no --pubsub")

    # Bun's chat benchmark, against the small server above: 3 clients, one round.
    chat = ChatServer(3)
    try:
        rc, j, err = bench_json("chat", "-c", "3", "-n", "14400", chat_url(chat.port),
                                timeout=60)
        ok(rc == 0 and j and j["ok"] and j["messages"]["rounds"] == 1,
           "chat -c 3 -n 14400: one round", err)
        ok(j and j["messages"]["received"] == 3 * 1600 * 3,
           "a round is 3 x 1600 messages received by each of the 3 clients",
           j and j["messages"]["received"])
        ok(sorted(chat.names) == ["Alice0", "Bob0", "Charlie0"],
           "clients are named ?name=Alice0, Bob0, Charlie0", chat.names)
        ok(all(chat.first[n] == CYCLE for n in chat.names),
           "each client sends the benchmark's 50-message cycle, in order",
           {n: chat.first[n][:3] for n in chat.names})
        ok(all(chat.counts[n] == 1600 for n in chat.names), "and 1600 messages a round",
           chat.counts)
    finally:
        chat.stop()

    chat = ChatServer(4)
    try:
        rc, j, err = bench_json("chat", "-c", "3", "--connect-timeout", "1", "-n", "100",
                                chat_url(chat.port), timeout=30)
        ok(rc == 2 and j and not j["ok"] and "first message" in j.get("error", ""),
           "chat with fewer clients than the room waits for: fails after --connect-timeout",
           j and j.get("error"))
    finally:
        chat.stop()


def chat_url(port):
    return f"ws://127.0.0.1:{port}/"


try:
    main()
except Exception as e:  # a crash is one failure, not a silent stop
    ok(False, "wsbench tests ran to the end", f"{type(e).__name__}: {e}")
done()
