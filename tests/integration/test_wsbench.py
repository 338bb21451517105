#!/usr/bin/python3
"""wsbench against wsserve --echo (and a small chat server of its own) with tiny loads: the
counts add up, replies are checked, errors are reported by kind, thresholds set the exit
status, the JSON/CSV outputs parse, compare alternates targets, and the chat scenario sends
exactly Bun's benchmark (names, the 50-message cycle, rounds).  Performance is measured by
scripts/bench-*, never here: every run is a fraction of a second, bounded by -n or -d and by a
timeout."""
# tests/run: not with threads (wsbench's own behaviour: the server is not what is tested)
import asyncio
import base64
import hashlib
import json
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wstest import BIN, Raw, Server, accept_key, done, free_port, frame, ok, skip  # noqa: E402

WSBENCH = os.path.join(BIN, "wsbench")
ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
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


class ShortEcho:
    """Echoes the first `n` messages of each connection, then closes it with 1000: a server
    that ends every connection long before the run's -d is over."""

    def __init__(self, n=3):
        self.n = n
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        c.settimeout(5)
        f = c.makefile("rb")
        try:
            lines = []
            while not lines or lines[-1] != b"\r\n":
                lines.append(f.readline())
            key = next(l.split(b":", 1)[1].strip().decode() for l in lines
                       if l.lower().startswith(b"sec-websocket-key:"))
            c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                       f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept_key(key)}\r\n\r\n"
                       ).encode())
            for _ in range(self.n):
                b0, b1 = f.read(2)
                n = b1 & 127
                if n == 126:
                    n = struct.unpack("!H", f.read(2))[0]
                mask = f.read(4)
                data = bytes(x ^ mask[i & 3] for i, x in enumerate(f.read(n)))
                c.sendall(frame(b0 & 15, data, mask=False))
            c.sendall(frame(8, struct.pack("!H", 1000) + b"enough", mask=False))
            while c.recv(4096):
                pass
        except (OSError, ValueError, StopIteration):
            pass
        finally:
            f.close()
            c.close()

    def close(self):
        self.sock.close()


# ----- a chat server (Bun's benchmark protocol, PROTOCOL.md), small and slow but exact --------

class ChatServer:
    """Relays every text message m of member NAME as "NAME: m" to every member; "ready" 100 ms
    after the n-th joins.  Records the names and the first 50 messages of each member.  With
    drop, the first member is disconnected after 100 messages."""

    def __init__(self, n, drop=False):
        self.n = n
        self.drop = drop
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
                    if self.drop and name == "Alice0" and self.counts[name] == 100:
                        break
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


def listen_to_broadcast():
    """wsbench listen: clients that only receive what a program behind wsserve --exec-shared
    broadcasts (bounded: 2,000 lines at most, every 2 ms); lines that start with their send time
    (16 hex digits of CLOCK_MONOTONIC in ns) are timed."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write("import sys, time\n"
                "for i in range(2000):\n"
                "    t = f'{time.monotonic_ns():016x}' if i % 2 else 'untimed'\n"
                "    print(t + ' tick', flush=True)\n"
                "    time.sleep(0.002)\n")
    try:
        with Server("--exec-shared", f"/usr/bin/python3 {f.name}") as srv:
            # The program broadcasts once Python has started: a first line before measuring.
            first = Raw(srv.port, timeout=30)
            first.recv_frame()
            first.close()
            rc, j, err = bench_json("listen", "-c", "20", "-d", "0.5", srv.url())
            got = j and j["messages"]["received"]
            ok(rc == 0 and no_errors(j) and got and j["messages"]["sent"] == 0,
               "listen -c 20: broadcast messages received, none sent", err)
            ok(j and 0 < j["latency_ns"]["count"] < got,
               "the messages that carry their send time are timed, the others counted",
               j and (got, j["latency_ns"]))
    finally:
        os.unlink(f.name)


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

        # --utf8: text in several scripts that the server (which validates UTF-8) accepts whole,
        # cut at a length that falls inside a 4-byte character of the word list.
        rc, j, err = bench_json("-n", "20", "-c", "2", "-w", "2", "-s", "100018", "--utf8",
                                "--verify", url)
        ok(rc == 0 and no_errors(j) and j["messages"]["bytes_received"] == 20 * 100018,
           "--utf8: 100018-byte text messages with non-ASCII characters, accepted and verified",
           err)

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
        ran = [ln.split()[2] for ln in err.splitlines() if ln.startswith("round ")]
        ok(ran == ["one", "two", "two", "one"], "... the second round in reverse order", err)
        rc, j, err = bench_json("compare", "-d", "0.5", "--rounds", "1", "--pause", "0", "-c", "2",
                                "--pid", str(srv.proc.pid), f"one={url}")
        m = j[0].get("machine", {}) if rc == 0 and j else {}
        shares = [m.get(k, -1) for k in ("idle", "steal", "others")]
        ok(all(0 <= x <= 1 for x in shares) and sum(shares) <= 1.01 and shares[0] < 1,
           "compare --pid: where the machine's CPU time went in each round", (m, err))
        ok(re.search(r"round 1/1  one .* msg/s  server \d+%, idle \d+%, stolen [\d.]+%, "
                     r"others \d+%", err), "... also at the end of the round's line", err)
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

        rc, out, err = bench("hold", "-c", "5", "-d", "0.3", url)
        ok(rc == 0 and "5 of 5 open, 0 closed during the hold\n" in out,
           "hold: the summary counts the connections open and closed", out + err)
        with Server("--echo", "--max-connections", "3", "--threads", "1") as capped:  # one loop: exactly 3
            rc, out, err = bench("hold", "-c", "5", "-d", "0.3", "--connect-timeout", "0.5",
                                 capped.url())
            ok(rc == 0 and "3 of 5 open, 0 closed during the hold, 2 never opened" in out,
               "hold: connections that never opened are not counted as closed", out + err)

        rc, j, err = bench_json("listen", "-c", "4", "-d", "0.3", url)
        ok(rc == 2 and j and j["messages"]["received"] == 0,
           "listen against a server that sends nothing: nothing measured, exit status 2", err)
        listen_to_broadcast()

        rc, j, err = bench_json("-n", "50", "-c", "2", "--compress", "--verify", url)
        ok(rc == 0 and no_errors(j) and j["messages"]["received"] == 50
           and j["connections"]["deflate"] == 0,
           "--compress against a server without compression: plain messages, verified", err)

        options_and_outputs(url)

    verdicts()
    tls_flags()

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

    # A server that answers the first message (32 bytes) with reply(payload): the right head and
    # a wrong tail (the first-reply check compares the head, only --verify the rest), or text
    # that is not UTF-8 (a protocol error).
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
            frame = b""
            while len(frame) < 6 or len(frame) < 6 + (frame[1] & 0x7F):
                frame += c.recv(4096)
            mask, n = frame[2:6], frame[1] & 0x7F
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(frame[6:6 + n]))
            c.sendall(reply(payload))
            while c.recv(4096):
                pass
        except OSError:
            pass
        c.close()

    def wrong_tail(p):
        return b"\x81\x20" + p[:16] + b"x" * 16

    for args, reply, kind, want, name in (
            (["--verify"], wrong_tail, "mismatch", 1,
             "--verify: a reply with other bytes is a mismatch"),
            ([], wrong_tail, "mismatch", 0,
             "without --verify the bytes past the first reply's head are not compared"),
            ([], lambda p: b"\x81\x20" + b"\xff" * 32, "protocol", 1,
             "a text reply that is not UTF-8 is a protocol error")):
        th = threading.Thread(target=answer, args=(reply,), daemon=True)
        th.start()
        rc, j, err = bench_json("-n", "1", "-c", "1", "-s", "32", *args,
                                f"ws://127.0.0.1:{lsock.getsockname()[1]}/")
        th.join(10)
        said = j and (j.get("first_error") or j.get("error")) or ""
        ok(j is not None and j["errors"][kind] == want and (not want or said), name, j or err)
    lsock.close()

    modes = subprocess.run([os.path.join(BIN, "wsserve"), "--help"], capture_output=True,
                           text=True, timeout=10).stdout
    if "--chat" in modes:
        with Server("--chat", "--clients", "4") as srv:
            rc, j, err = bench_json("chat", "-c", "4", "-n", str(2 * 4 * 1600 * 4), srv.url())
            ok(rc == 0 and no_errors(j) and j["messages"]["rounds"] == 2
               and j["messages"]["received"] == 2 * 4 * 1600 * 4,
               "chat against wsserve --chat --clients 4: two whole rounds", err or j)
        # Two rooms of 2: a round is 2 x (2 x 1600 x 2) deliveries, not 4 x 1600 x 4.
        with Server("--chat", "--clients", "4", "--rooms", "2") as srv:
            rc, j, err = bench_json("chat", "-c", "4", "--rooms", "2", "-n", str(2 * 12800),
                                    srv.url())
            ok(rc == 0 and no_errors(j) and j["messages"]["rounds"] == 2
               and j["messages"]["received"] == 2 * 12800,
               "chat --rooms 2 against wsserve --chat --rooms 2: two whole rounds", err or j)
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
        with Server("--pubsub", "-v") as srv:
            rc, j, err = bench_json("pubsub", "--patterns", "--publishers", "2", "--subscribers",
                                    "4", "--topics", "2", "--rate", "2000", "-d", "0.5", srv.url())
            ok(rc == 0 and no_errors(j) and 1400 <= j["messages"]["received"] <= 2600 and
               srv.count("/wsbench.1.*") == 2 and srv.count("/wsbench.1.m") == 1,
               "pubsub --patterns: subscribers listen by pattern, the deliveries are the same",
               err or (j["messages"], srv.stderr[-800:]))
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

    chat_lost()

    chat = ChatServer(4)
    try:
        rc, j, err = bench_json("chat", "-c", "3", "--connect-timeout", "1", "-n", "100",
                                chat_url(chat.port), timeout=30)
        ok(rc == 2 and j and not j["ok"] and "first message" in j.get("error", ""),
           "chat with fewer clients than the room waits for: fails after --connect-timeout",
           j and j.get("error"))
        ok(j and "wsserve --chat --clients N must match -c N" in j.get("error", ""),
           "and says what the server probably waits for", j and j.get("error"))
    finally:
        chat.stop()


def verdicts():
    """Runs that measured nothing fail: exit status 2, "ok": false, one line that says why."""
    with Server("--pubsub") as broker, Server("--echo") as echo:
        rc, out, err = bench("-c", "8", "-w", "4", "-d", "2", broker.url())
        ok(rc == 2 and f"the server at {broker.url()} does not echo: first reply was text" in out,
           "echo against a broker: exit status 2, 'the server at URL does not echo'", (rc, out))
        rc, j, err = bench_json("-c", "2", "-d", "2", broker.url())
        ok(rc == 2 and j and j["ok"] is False and "does not echo" in j.get("error", "")
           and "does not echo" in err, "the same with --json: \"ok\": false, the reason on stderr",
           (rc, j and j.get("error"), err))

        rc, out, err = bench("compare", "-d", "0.3", "--rounds", "3", "--pause", "0", "-c", "2",
                             f"good={echo.url()}", f"bad={broker.url()}")
        ok(rc == 2 and err.count("round 3/3  good") == 1 and "bad" not in err.split("round 1/3")[-1]
           .split("\n", 2)[-1] and "bad failed in round 1: the server at" in out,
           "compare: a target that failed is not run again; the table says why", (rc, out, err))

    with Server("--pubsub", "--token", "s3cret") as broker:
        rc, j, err = bench_json("pubsub", "-c", "2", "-d", "0.5", broker.url())
        ok(rc == 2 and j and j["ok"] is False and "1008" in j.get("error", "")
           and "token" in j.get("error", ""),
           "pubsub against a broker that wants a token: fails with the server's 1008 reason",
           (rc, j and j.get("error")))

    short = ShortEcho(3)
    try:
        rc, j, err = bench_json("-c", "2", "-d", "3", f"ws://127.0.0.1:{short.port}/", timeout=20)
        ok(rc == 2 and j and j["ok"] is False and j["seconds"] < 2
           and "ended after" in j.get("error", "") and "1000" in j.get("error", ""),
           "connections that all end before -d: the run fails, with the close that ended them",
           (rc, j and (j.get("error"), j["seconds"])))
    finally:
        short.close()


def options_and_outputs(url):
    """One option grammar with the other commands; CSV rows for every measured second."""
    rc, out, err = bench("--help")
    ok(rc == 0 and all(o in out for o in ("--stop-timeout", "--connect-concurrency",
                                          "--passphrase", "--no-check", "--insecure")),
       "--help lists every option", out)
    rc, j, err = bench_json("-d", "300ms", "-s", "1KiB", "-c", "1", "--warmup", "0.1s", url)
    ok(rc == 0 and j and j["messages"]["bytes_received"] == 1024 * j["messages"]["received"]
       and 0.25 < j["seconds"] < 1.5, "-d 300ms -s 1KiB --warmup 0.1s: cli.c's grammar", err)
    for args, said, why in (
            (["-n", "1k"], "whole number", "a count is a whole number"),
            (["chat", "--round-delay", "64"], "at most 60s", "--round-delay is a time (64 is 64 s)"),
            (["-n", url], "--no-check", "-n is the message count, with a hint about --no-check"),
            (["--json", "--csv", "-"], "share stdout", "--json and --csv - would share stdout"),
            (["--rounds", "2"], "compare", "--rounds without compare"),
            (["compare", "--csv", "x.csv"], "one run", "--csv with compare"),
            (["--topics", "2"], "pubsub", "--topics outside pubsub"),
            (["--patterns"], "pubsub", "--patterns outside pubsub"),
            (["--round-delay", "64ms"], "chat", "--round-delay outside chat")):
        rc, out, err = bench(*args, url)
        ok(rc == 1 and said in err and "Try 'wsbench --help'" in err, f"usage error: {why}",
           (rc, err))

    rc, out, err = bench("-d", "1", "-c", "2", "-q", "--csv", "-", url)
    rows = out.splitlines()
    ok(rc == 0 and len(rows) == 2 and rows[0].startswith("second,") and rows[1].startswith("1,"),
       "-d 1 --csv -: the header and the one measured second", out)
    ok("throughput" in err and "throughput" not in out,
       "--csv -: the summary goes to stderr", (out, err))
    rc, out, err = bench("-d", "2", "-c", "2", "-q", "--csv", "-", url)
    rows = out.splitlines()
    ok(rc == 0 and [r.split(",")[0] for r in rows[1:]] == ["1", "2"],
       "-d 2 --csv -: two rows, the last second included", out)


def tls_flags():
    """wscat's TLS flags: --ca --cert --key --passphrase, --no-check and -k."""
    with tempfile.TemporaryDirectory() as certs:
        r = subprocess.run([os.path.join(ROOT, "scripts", "mkcerts"), certs],
                           capture_output=True, text=True)
        if r.returncode:
            skip("wsbench TLS flags", "scripts/mkcerts failed")
            return
        c = lambda name: os.path.join(certs, name)  # noqa: E731
        with Server("--echo", "--tls-cert", c("server.crt"), "--tls-key", c("server.key"),
                    "--tls-client-ca", c("client-ca.crt")) as srv:
            url = f"wss://localhost:{srv.port}/"
            rc, j, err = bench_json("-n", "20", "-c", "1", "--ca", c("ca.crt"), "--cert",
                                    c("client.crt"), "--key", c("client-pass.key"),
                                    "--passphrase", "wskit", url)
            ok(rc == 0 and no_errors(j) and j["messages"]["received"] == 20,
               "--cert with an encrypted --key and its --passphrase", err or j)
            rc, j, err = bench_json("-n", "20", "-c", "1", "--ca", c("ca.crt"), "--cert",
                                    c("client.crt"), "--key", c("client-pass.key"), url)
            ok(rc == 2 and j and j["ok"] is False, "the same key without --passphrase: fails",
               (rc, j and j.get("error")))
        with Server("--echo", "--tls-cert", c("selfsigned.crt"), "--tls-key",
                    c("selfsigned.key")) as srv:
            url = f"wss://127.0.0.1:{srv.port}/"
            for flag in ("--no-check", "-k", "--insecure"):
                rc, j, err = bench_json("-n", "20", "-c", "1", flag, url)
                ok(rc == 0 and no_errors(j), f"{flag}: a self-signed server is accepted", err)
            rc, j, err = bench_json("-n", "20", "-c", "1", url)
            ok(rc == 2 and j and j["ok"] is False, "without them it is refused", (rc, j))


def chat_lost():
    chat = ChatServer(2, drop=True)
    try:
        rc, j, err = bench_json("chat", "-c", "2", "-d", "3", chat_url(chat.port), timeout=30)
        ok(rc == 2 and j and j["ok"] is False and "ended during the run" in j.get("error", ""),
           "chat: a client lost during the run fails it, \"ok\": false", (rc, j and j.get("error")))
    finally:
        chat.stop()


def chat_url(port):
    return f"ws://127.0.0.1:{port}/"


try:
    main()
except Exception as e:  # a crash is one failure, not a silent stop
    ok(False, "wsbench tests ran to the end", f"{type(e).__name__}: {e}")
done()
