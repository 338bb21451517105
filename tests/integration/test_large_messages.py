#!/usr/bin/python3
"""wsserve --echo with large messages over TCP: frames of 64 KiB to 4 MiB, text and binary, sent
in pieces of uneven sizes (the server reads the rest of each frame straight into its buffer) to a
client whose small receive buffer makes the server's writes partial (the rest is queued); every
echo comes back byte for byte and in order (also when a read brings many frames, whose replies
under 32 KiB leave together), and a message over the limit is still refused at its header."""
import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wstest import Raw, Server, done, frame, ok  # noqa: E402

TEXT, BINARY = 1, 2


def send_in_pieces(c, data, rng):
    """Sends data in pieces of 1 byte to 300 KiB, so frames straddle the server's reads."""
    i = 0
    while i < len(data):
        n = rng.choice((1, 7, 1000, 16384, 65536, 300000))
        c.send(data[i:i + n])
        i += n


rng = random.Random(19)
text = ("héllo wörld ✓ " * 80000).encode()[:1 << 20]
text = text[:len(text.decode("utf-8", "ignore").encode())]  # whole characters only
with Server("--echo") as srv:
    c = Raw(srv.port, rcvbuf=32768, timeout=20)
    cases = [(BINARY, os.urandom(65536)), (BINARY, os.urandom(65536 + 7)),
             (TEXT, text), (BINARY, os.urandom(4 << 20))]
    for op, payload in cases:
        send_in_pieces(c, frame(op, payload), rng)
        fin, got_op, got = c.recv_frame()
        kind = "text" if op == TEXT else "binary"
        if not ok(fin and got_op == op and got == payload,
                  f"{kind} echo of {len(payload)} bytes sent in pieces, read back slowly",
                  f"got op {got_op}, {len(got)} bytes"):
            break

    # Messages of one length in a row: after the first, each read puts the next one's payload
    # straight into the message buffer (the guess); then a shorter one and a small one.
    same = [os.urandom(300000) for _ in range(3)] + [os.urandom(200000), b"small"]
    for p in same:
        c.send(frame(BINARY, p))
    got = [c.recv_frame() for _ in same]
    ok(got == [(True, BINARY, p) for p in same],
       "three 300000-byte messages in a row, then 200000 bytes and 5: echoed in order")

    # A large frame and a small one in one send: both echoed, in order.
    big = os.urandom(200000)
    c.send(frame(BINARY, big) + frame(TEXT, "after"))
    first, second = c.recv_frame(), c.recv_frame()
    ok(first == (True, BINARY, big) and second == (True, TEXT, b"after"),
       "a large frame and a small one after it in the same read: echoed in order")

    # Many frames of 16 to 40 KiB in one send, to a slow reader: the replies to a read's frames
    # under 32 KiB are queued together, the larger ones written at once; all in order.
    sizes = [16384, 20000, 5, 32767, 40000, 16384, 24000, 65536, 16390, 30000] * 3
    msgs = [(TEXT if i % 4 == 2 else BINARY,
             b"x" * n if i % 4 == 2 else os.urandom(n)) for i, n in enumerate(sizes)]
    c.send(b"".join(frame(op, p) for op, p in msgs))
    got = [c.recv_frame() for _ in msgs]
    ok(got == [(True, op, p) for op, p in msgs],
       f"{len(msgs)} frames of 5 B to 64 KiB in one send, read back slowly: echoed in order")

    # Fragments of a large message, each split across reads.
    parts = [os.urandom(100000) for _ in range(3)]
    data = (frame(BINARY, parts[0], fin=False) + frame(0, parts[1], fin=False)
            + frame(0, parts[2]))
    send_in_pieces(c, data, rng)
    ok(c.recv_frame() == (True, BINARY, b"".join(parts)),
       "three large fragments split across reads: one message")
    c.close()

    # The limit still holds at the header: 1009 before any payload.
    c = Raw(srv.port)
    c.send(frame(BINARY, b"", length=(16 << 20) + 1)[:10])
    c.sock.settimeout(5)
    ok(c.recv_close() == 1009, "a header announcing 16 MiB + 1 is refused with 1009 at once")
    c.close()

    # Invalid UTF-8 deep inside a large text message is refused: 1007.
    bad = bytearray(text)
    bad[len(bad) - 1000] = 0xFF
    c = Raw(srv.port, timeout=10)
    send_in_pieces(c, frame(TEXT, bytes(bad)), rng)
    ok(c.recv_close() == 1007, "invalid UTF-8 near the end of 1 MiB of text: 1007")
    c.close()

sys.exit(done())
