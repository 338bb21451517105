#!/usr/bin/python3
"""wsserve --compress against raw frames: RFC 7692 rules on the wire (RSV1 placement, the
stripped 00 00 ff ff tail, fragmented compressed messages, BFINAL blocks), the inflate bound (a
compressed bomb gets 1009 without the server allocating its size), corrupt data (1007), every
server_max_window_bits honoured by the shared compressor, messages that do not shrink sent
uncompressed, fragmented messages through the shared compressor's trained codes, and
--compress-level."""
import os
import random
import sys
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wstest import Raw, Server, describe, done, frame, ok, request, run_cmd, skip  # noqa: E402

TEXT, BINARY, CONT, PING = 1, 2, 0, 9


def deflate(data, wbits=15):
    c = zlib.compressobj(9, zlib.DEFLATED, -wbits)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def inflate(data):
    return zlib.decompressobj(-15).decompress(data + b"\x00\x00\xff\xff")


def finished(data):
    """data as one stream ending with a BFINAL block (RFC 7692 7.2.3.4)."""
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush(zlib.Z_FINISH)


def windowed_inflate(data, bits):
    """Inflates with a window of 2^bits, 64 bytes of output at a time."""
    d = zlib.decompressobj(-bits)
    out, data = [], data + b"\x00\x00\xff\xff"
    while True:
        chunk = d.decompress(data, 64)
        out.append(chunk)
        data = d.unconsumed_tail
        if d.eof or (not chunk and not data):
            return b"".join(out)


def echo(c, payload, rsv=4, op=TEXT):
    """Sends one frame and returns the reply's RSV1 bit and payload."""
    c.send(frame(op, payload, rsv=rsv))
    while len(c.buf) < 2:
        c._fill()
    rsv1 = bool(c.buf[0] & 0x40)
    fin, op, p = c.recv_frame()
    return rsv1, p


def connect(port, offer="permessage-deflate; client_max_window_bits"):
    c = Raw(port, handshake=False)
    c.send(request(extra=f"Sec-WebSocket-Extensions: {offer}\r\n"))
    st, h = c.read_head()
    return c, st, h.get("sec-websocket-extensions", "")


def expect_close(port, data, code, name):
    c, st, ext = connect(port)
    try:
        c.send(data)
        got = c.recv_close()
        ok(got == code, name, f"close {got}")
    except Exception as e:  # noqa: BLE001
        ok(False, name, repr(e))
    c.close()


with Server("--echo", "--compress", "--max-payload", "1M") as srv:
    c, st, ext = connect(srv.port)
    ok(st == 101 and ext.startswith("permessage-deflate") and "server_no_context_takeover" in ext,
       f"shared compressor answers server_no_context_takeover: {ext}")
    msg = b"hello compressed world " * 50
    c.close()

    # Read the reply with its RSV bits.
    c, st, ext = connect(srv.port)
    c.send(frame(TEXT, deflate(msg), rsv=4))
    while len(c.buf) < 2:
        c._fill()
    rsv1 = bool(c.buf[0] & 0x40)
    fin, op, p = c.recv_frame()
    ok(rsv1 and op == TEXT and inflate(p) == msg, "compressed text echoed compressed (RSV1, tail stripped)")
    # Fragmented compressed message: RSV1 on the first frame only.
    z = deflate(msg * 3)
    c.send(frame(TEXT, z[:10], fin=False, rsv=4) + frame(PING, b"x") + frame(CONT, z[10:20], fin=False)
           + frame(CONT, z[20:]))
    fin, op, p = c.recv_frame()
    ok(op == 10 and p == b"x", "ping inside a fragmented compressed message answered")
    fin, op, p = c.recv_frame()
    ok(op == TEXT and inflate(p) == msg * 3, "fragmented compressed message reassembled and inflated")
    c.send(frame(BINARY, b"short uncompressed"))
    fin, op, p = c.recv_frame()
    ok(op == BINARY and p == b"short uncompressed", "uncompressed message on a compressed connection")
    c.close()

    expect_close(srv.port, frame(PING, b"x", rsv=4), 1002, "RSV1 on a control frame: 1002")
    expect_close(srv.port, frame(TEXT, deflate(b"ab")[:1], fin=False, rsv=4) + frame(CONT, b"x", rsv=4),
                 1002, "RSV1 on a continuation frame: 1002")
    expect_close(srv.port, frame(BINARY, b"\xff\xff\xff\xff garbage", rsv=4), 1007,
                 "compressed data that does not inflate: 1007")
    expect_close(srv.port, frame(TEXT, deflate("bad \xed\xa0\x80 text".encode("latin-1")), rsv=4), 1007,
                 "compressed text that inflates to invalid UTF-8: 1007")
    bomb = deflate(b"\0" * (64 << 20))
    ok(len(bomb) < 100000, f"a {len(bomb)}-byte bomb of 64 MiB")
    expect_close(srv.port, frame(BINARY, bomb, rsv=4), 1009, "compressed bomb stops at the max payload: 1009")
    c = Raw(srv.port)
    c.send(frame(TEXT, "still here"))
    ok(c.recv_frame() == (True, TEXT, b"still here"), "server still serves after the bomb")
    c.close()
    rss = 0
    with open(f"/proc/{srv.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                rss = int(line.split()[1])
    if os.environ.get("WSK_VALGRIND"):
        skip("server peak RSS after the bomb", "under valgrind RSS is valgrind's own")
    else:
        ok(0 < rss < 48 * 1024, f"server peak RSS {rss} KiB: the 64 MiB bomb was never inflated whole")

    c, st, ext = connect(srv.port, offer="permessage-deflate; unknown_param")
    ok(st == 101 and ext == "", "an offer with an unknown parameter is declined, not fatal")
    c.close()
    c, st, ext = connect(srv.port, offer="x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=10, permessage-deflate")
    ok(st == 101 and ext == "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
       "server_max_window_bits=10", f"shared compressor takes the first offer, with its window: {ext}")
    c.close()

    # Every window a client may ask for (7.1.2.1) is honoured in shared mode.  Each message
    # repeats a block just longer than the window, so a compressor with a larger window would
    # refer further back than allowed, which an inflater with exactly that window rejects ("too
    # far back") when it must rely on its window: its output is taken 64 bytes at a time.
    rnd = random.Random(7)
    good = []
    for bits in range(8, 16):
        block = bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz0123456789 ") for _ in range((1 << bits) + 100))
        for msg in (block * 3, block[:200]):
            c, st, ext = connect(srv.port, offer=f"permessage-deflate; server_max_window_bits={bits}")
            try:
                rsv1, p = echo(c, deflate(msg, max(bits, 9)))
                good.append((bits, len(msg), st == 101 and f"server_max_window_bits={bits}" in ext
                             and rsv1 and windowed_inflate(p, bits) == msg))
            except (zlib.error, OSError, ValueError) as e:
                good.append((bits, len(msg), repr(e)))
            c.close()
    ok(all(g is True for _, _, g in good),
       "shared mode: every server_max_window_bits 8..15 accepted and honoured", repr(good))

    # Per message: short ones, and ones that would not shrink, go out uncompressed (RSV1 clear).
    c, st, ext = connect(srv.port)
    noise = os.urandom(1000)
    rsv1, p = echo(c, deflate(noise), op=BINARY)
    ok(not rsv1 and p == noise, "incompressible 1000 bytes echoed uncompressed", f"rsv1={rsv1} {len(p)}")
    # From 1 KiB, bytes with a flat histogram take igzip's level 0: random ones still go out
    # plain, random ones that repeat still shrink.
    noise = os.urandom(16384)
    rsv1, p = echo(c, deflate(noise), op=BINARY)
    ok(not rsv1 and p == noise, "incompressible 16 KiB echoed uncompressed", f"rsv1={rsv1} {len(p)}")
    twice = noise[:2048] * 2
    rsv1, p = echo(c, deflate(twice), op=BINARY)
    ok(rsv1 and len(p) < 3072 and inflate(p) == twice, "random 2 KiB sent twice echoed compressed",
       f"rsv1={rsv1} {len(p)}")
    rsv1, p = echo(c, deflate(b"a" * 40))
    ok(not rsv1 and p == b"a" * 40, "40 bytes (under the 64-byte threshold) echoed uncompressed")
    rsv1, p = echo(c, deflate(b"b" * 64))
    ok(rsv1 and inflate(p) == b"b" * 64, "64 compressible bytes echoed compressed")
    # Messages that end with a BFINAL block: alone, with the 00 of 7.2.3.4 after it, and with
    # more blocks after it (7.2.1), which the one-shot inflater hands to zlib.
    forms = {"BFINAL": finished(msg), "BFINAL + 00": finished(msg) + b"\x00",
             "BFINAL + more blocks": finished(msg) + deflate(b"the rest")}
    for name, z in forms.items():
        want = msg + (b"the rest" if "more" in name else b"")
        rsv1, p = echo(c, z)
        ok(inflate(p) == want, f"client message ending with {name} inflated")
    c.close()

# Frames back to back in one write: the server inflates each compressed payload in place, its
# tail written over the next frame's first bytes, which must be intact when that frame is read:
# a short frame right after one (8 bytes, less than the tail: gathered), and a ping.
with Server("--echo", "--compress") as srv:
    c, st, ext = connect(srv.port)
    msgs = [b"first %d " % i * 40 for i in range(4)]
    batch = [frame(TEXT, deflate(msgs[0]), rsv=4), frame(TEXT, deflate(msgs[1]), rsv=4),
             frame(TEXT, b"xy"), frame(TEXT, deflate(msgs[2]), rsv=4), frame(PING, b"p"),
             frame(TEXT, deflate(msgs[3]), rsv=4)]
    c.send(b"".join(batch))
    got = []
    try:
        for _ in range(len(batch)):
            while len(c.buf) < 2:
                c._fill()
            rsv1 = bool(c.buf[0] & 0x40)
            fin, op, p = c.recv_frame()
            got.append((op, inflate(p) if rsv1 else p))
    except Exception as e:  # noqa: BLE001
        got.append(repr(e))
    want = [(TEXT, msgs[0]), (TEXT, msgs[1]), (TEXT, b"xy"), (TEXT, msgs[2]), (10, b"p"),
            (TEXT, msgs[3])]
    ok(got == want, "compressed frames back to back in one write: each echoed, the next intact",
       repr(got)[:300])
    c.close()

# --compress-level: both ends of the scale work; the smaller level gives no smaller output.
sizes = {}
text = b"".join(b'{"id":%d,"name":"user%d","tags":["a","b"],"score":%d.5}' % (i, i % 97, i * 7 % 1000)
                for i in range(300))
for level in ("1", "9"):
    with Server("--echo", "--compress", "--compress-level", level) as srv:
        c, st, ext = connect(srv.port)
        rsv1, p = echo(c, deflate(text))
        ok(rsv1 and inflate(p) == text, f"--compress-level {level}: {len(text)} bytes of JSON -> {len(p)}")
        sizes[level] = len(p)
        c.close()
ok(sizes["9"] <= sizes["1"], f"level 9 compresses at least as well as level 1: {sizes}")
r = run_cmd("wsserve", "--echo", "--compress", "--compress-level", "10", timeout=5)
ok(r[0] == 1 and "invalid value for --compress-level" in r[2], "--compress-level 10: usage error",
   describe(r))

with Server("--echo") as srv:
    c, st, ext = connect(srv.port)
    ok(st == 101 and ext == "", "without --compress the extension is not accepted")
    c.send(frame(TEXT, deflate(b"x"), rsv=4))
    ok(c.recv_close() == 1002, "RSV1 without the extension: 1002")
    c.close()

# The shared compressor trains Huffman codes on a sample of its messages and then compresses
# with them: 90 JSON-like messages of varied sizes, each sent in 1 to 4 fragments (a ping
# between two of them now and then), at windows 2^15 and 2^9; every reply, compressed or not,
# comes back byte-exact (inflated 64 bytes at a time, so a match past the window shows).
def json_like(rng, n):
    recs = []
    while sum(map(len, recs)) < n:
        recs.append(b'{"id":%d,"user":"%s","score":%d.%02d,"online":%s},' % (
            rng.randrange(1, 10**6), rng.choice([b"alice", b"bob", b"carol", b"dave"]),
            rng.randrange(1000), rng.randrange(100), rng.choice([b"true", b"false"])))
    return b"".join(recs)[:n]


with Server("--echo", "--compress") as srv:
    rng = random.Random(7692)
    for bits in (15, 9):
        offer = "permessage-deflate" + ("; server_max_window_bits=9" if bits == 9 else "")
        c, st, ext = connect(srv.port, offer)
        good, bad = 0, []
        for i in range(90):
            m = json_like(rng, rng.choice([300, 1024, 1024, 2000, 5000]))
            z = deflate(m)
            cuts = sorted(rng.sample(range(1, len(z)), rng.randrange(0, 4)))
            parts = [z[a:b] for a, b in zip([0] + cuts, cuts + [len(z)])]
            wire = b""
            for k, part in enumerate(parts):
                last = k == len(parts) - 1
                wire += frame(TEXT if k == 0 else CONT, part, fin=last, rsv=4 if k == 0 else 0)
                if k == 0 and not last and i % 5 == 0:
                    wire += frame(PING, b"p")
            c.send(wire)
            fin, op, p = c.recv_frame()
            if op == 10:
                fin, op, p = c.recv_frame()
            try:
                back = windowed_inflate(p, bits) if p != m else m
            except zlib.error as e:
                back = repr(e).encode()
            if back == m:
                good += 1
            else:
                bad.append((i, len(m), len(p)))
        ok(st == 101 and good == 90, f"window {bits}: 90 fragmented messages echoed byte-exact",
           f"{ext} {bad[:3]}")
        c.close()

with Server("--echo", "--compress=dedicated") as srv:
    c, st, ext = connect(srv.port)
    ok(st == 101 and ext == "permessage-deflate", f"dedicated compressor keeps context: {ext}")
    # With context takeover the client's second message may refer to the first.
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    dec = zlib.decompressobj(-15)
    good = True
    for i in range(5):
        m = b"repeated payload with context %d " % (i % 2) * 20
        z = comp.compress(m) + comp.flush(zlib.Z_SYNC_FLUSH)
        c.send(frame(TEXT, z[:-4], rsv=4))
        fin, op, p = c.recv_frame()
        good &= dec.decompress(p + b"\x00\x00\xff\xff") == m
    ok(good, "context takeover in both directions over 5 messages")
    # With context kept, even a message that does not shrink goes compressed: its repeat then
    # refers to it.
    noise = os.urandom(1000)
    replies = []
    for i in range(2):
        z = comp.compress(noise) + comp.flush(zlib.Z_SYNC_FLUSH)
        rsv1, p = echo(c, z[:-4], op=BINARY)
        replies.append((rsv1, len(p), dec.decompress(p + b"\x00\x00\xff\xff") == noise))
    ok(replies[0][0] and replies[0][2] and replies[1][0] and replies[1][2] and replies[1][1] < 100,
       "dedicated: random bytes go compressed, so their repeat shrinks to a reference", repr(replies))
    c.close()
done()
