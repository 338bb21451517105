#!/usr/bin/python3
"""wsserve --echo against raw, hand-crafted frames: one check per rule of RFC 6455 that the
server role must enforce (section numbers in the names)."""
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wstest import Raw, Server, close_payload, done, frame, ok  # noqa: E402

TEXT, BINARY, CLOSE, PING, PONG, CONT = 1, 2, 8, 9, 10, 0


def expect_close(srv, data, code, name, handshake=True, whole=True):
    """Sends data on a fresh connection; the server must answer close `code` and close TCP.
    whole=False: data is only the start of a frame, and the close must come within 2 s without
    the rest of it (then TCP's close is not checked)."""
    c = Raw(srv.port)
    try:
        c.send(data)
        if not whole:
            c.sock.settimeout(2)
        got = c.recv_close()
        ok(got == code and (not whole or c.eof()), name, f"close code {got}")
    except Exception as e:  # noqa: BLE001
        ok(False, name, repr(e))
    finally:
        c.close()


def echo(c, op, payload):
    c.send(frame(op, payload))
    return c.recv_frame()


with Server("--echo", "--max-payload", "1M") as srv:
    c = Raw(srv.port)
    for n in (0, 1, 125, 126, 127, 65535, 65536, 200000):
        data = os.urandom(n)
        fin, op, p = echo(c, BINARY, data)
        if not ok(fin and op == BINARY and p == data, f"binary echo of {n} bytes (5.2 lengths)"):
            break
    fin, op, p = echo(c, TEXT, "héllo wörld ✓")
    ok(op == TEXT and p.decode() == "héllo wörld ✓", "text echo keeps its type")

    # 5.4: fragments with a control frame in between; 5.5.2: pong echoes the ping payload.
    c.send(frame(TEXT, "frag", fin=False) + frame(PING, b"in-between") + frame(CONT, "ment", fin=False)
           + frame(CONT, "ed"))
    f1 = c.recv_frame()
    f2 = c.recv_frame()
    ok(f1 == (True, PONG, b"in-between"), "ping inside a fragmented message answered with its payload")
    ok(f2 == (True, TEXT, b"fragmented"), "fragmented message reassembled")

    # 5.5.3: an unsolicited pong is ignored.
    c.send(frame(PONG, b"unsolicited") + frame(TEXT, "after"))
    ok(c.recv_frame() == (True, TEXT, b"after"), "unsolicited pong ignored")

    # Everything split into single bytes: the parser is incremental.
    data = frame(TEXT, "x" * 300) + frame(BINARY, b"\x00" * 70000) + frame(PING, b"p")
    for i in range(0, len(data), 997):
        c.send(data[i:i + 997])
        time.sleep(0.0005) if i % 20000 == 0 else None
    ok(c.recv_frame() == (True, TEXT, b"x" * 300) and c.recv_frame()[2] == b"\x00" * 70000
       and c.recv_frame() == (True, PONG, b"p"), "frames split across many reads")
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    small = frame(TEXT, "byte by byte")
    for b in small:
        c.send(bytes([b]))
    ok(c.recv_frame() == (True, TEXT, b"byte by byte"), "a frame sent one byte at a time")

    # UTF-8 split across fragments at every position of a 4-byte character.
    s = "a€😀b".encode()
    good = True
    for cut in range(1, len(s)):
        c.send(frame(TEXT, s[:cut], fin=False) + frame(CONT, s[cut:]))
        good &= c.recv_frame() == (True, TEXT, s)
    ok(good, "UTF-8 split across fragments at every byte is accepted")

    # 5.5.1 / 7.4: closing handshake echoes the code (and the reason, as websocat and ws clients
    # expect), then the server closes TCP.
    c.send(frame(CLOSE, close_payload(1000, b"bye")))
    fin, op, p = c.recv_frame()
    ok(op == CLOSE and p == close_payload(1000, b"bye"), "close 1000 echoed with its reason", repr(p))
    ok(c.eof(), "server closes TCP after the closing handshake")
    c.close()

    c = Raw(srv.port)
    c.send(frame(CLOSE, b""))
    fin, op, p = c.recv_frame()
    ok(op == CLOSE and p == b"" and c.eof(), "empty close answered with an empty close")
    c.close()
    c = Raw(srv.port)
    reason = "fin \u00e9t\u00e9 ".encode() * 10 + b"z" * 23  # 123 bytes: the most a reason may have
    c.send(frame(CLOSE, close_payload(4321, reason)))
    fin, op, p = c.recv_frame()
    ok(op == CLOSE and p == close_payload(4321, reason),
       "application close code (4000-4999) echoed with a 123-byte UTF-8 reason", repr(p))
    c.close()

    # 7.4.1 / 7.4.2: invalid close codes and a 1-byte close payload: 1002.
    for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535):
        expect_close(srv, frame(CLOSE, close_payload(code)), 1002, f"close code {code} is a protocol error")
    expect_close(srv, frame(CLOSE, b"\x03"), 1002, "1-byte close payload is a protocol error")
    expect_close(srv, frame(CLOSE, close_payload(1000, b"\xff\xfe")), 1007, "close reason not UTF-8: 1007")

    # 5.2: reserved bits without an extension, reserved opcodes.
    for rsv in (1, 2, 4):
        expect_close(srv, frame(TEXT, "x", rsv=rsv), 1002, f"RSV bits {rsv:03b} without an extension: 1002")
    for op in (3, 7, 0xB, 0xF):
        expect_close(srv, frame(op, "x"), 1002, f"reserved opcode {op:#x}: 1002")
    # 5.5: control frames may not be fragmented nor exceed 125 bytes.
    expect_close(srv, frame(PING, b"x", fin=False), 1002, "fragmented ping: 1002")
    expect_close(srv, frame(PING, b"x" * 126), 1002, "ping of 126 bytes: 1002")
    expect_close(srv, frame(CLOSE, close_payload(1000, b"r" * 124)), 1002, "close of 126 bytes: 1002")
    # 5.1: a client must mask.
    expect_close(srv, frame(TEXT, "x", mask=False), 1002, "unmasked client frame: 1002")
    # 5.4: continuation without a start, a new message inside a fragmented one.
    expect_close(srv, frame(CONT, "x"), 1002, "continuation without a message: 1002")
    expect_close(srv, frame(TEXT, "a", fin=False) + frame(TEXT, "b"), 1002,
                 "new message inside an unfinished one: 1002")
    expect_close(srv, frame(TEXT, "a", fin=False) + frame(BINARY, "b", fin=False), 1002,
                 "new binary message inside an unfinished text one: 1002")

    # 8.1: invalid UTF-8: 1007, failing on the invalid prefix without waiting for the rest.
    for bad in (b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xff", b"ok\xe2\x82"):
        expect_close(srv, frame(TEXT, bad), 1007, f"invalid UTF-8 {bad!r}: 1007")
    expect_close(srv, frame(TEXT, "valid", fin=False) + frame(CONT, b"\xed\xa0\x80"), 1007,
                 "invalid UTF-8 in a continuation: 1007")
    hdr = frame(TEXT, b"\xf4\x90" + b"a" * 998)[:2 + 2 + 4 + 2]  # header + key + 2 bad bytes
    expect_close(srv, hdr, 1007, "invalid UTF-8 fails at the bad prefix, before the frame ends",
                 whole=False)

    # 1009: a declared length over --max-payload fails at once, without the payload.
    expect_close(srv, frame(BINARY, b"", length=2 * 1024 * 1024)[:10], 1009,
                 "frame over the max payload: 1009 from its header alone", whole=False)
    chunk = b"z" * 600000
    expect_close(srv, frame(BINARY, chunk, fin=False) + frame(CONT, chunk), 1009,
                 "fragmented message over the max payload: 1009")

    # The server keeps serving after all of that.
    c = Raw(srv.port)
    ok(echo(c, TEXT, "still here") == (True, TEXT, b"still here"), "server still serves")
    c.close()
    rc = srv.stop()
    ok(rc == 0, "exit status 0 after SIGTERM", f"rc={rc}")
    ok("Segmentation" not in srv.stderr and "ERROR: AddressSanitizer" not in srv.stderr,
       "no crash report in the server log", srv.stderr[-500:])
    ok("unmasked frame from a client (closing with 1002)" in srv.stderr,
       "one clear log line per protocol error", srv.stderr[-300:])

done()
