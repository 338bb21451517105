#!/usr/bin/python3
"""wscat --compress against a Python `websockets` server (compression on by default there):
the extension is negotiated with every client mode, messages round-trip compressed, and the
server side sees what was offered."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wstest import BIN, PyServer, done, ok  # noqa: E402

seen = {}


async def handler(ws, path=None):
    seen["ext"] = ws.request_headers.get("Sec-WebSocket-Extensions")
    seen["answer"] = ws.response_headers.get("Sec-WebSocket-Extensions")
    async for m in ws:
        await ws.send(m)


srv = PyServer(handler)
port = srv.port
lines = ["x" * 2000, "y" * 100 + "z" * 100, "short"]
for mode in ("shared", "dedicated", "4KB"):
    seen.clear()
    r = subprocess.run([os.path.join(BIN, "wscat"), "-c", f"ws://127.0.0.1:{port}/", f"--compress={mode}", "-w", "0.3"],
                       input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=20)
    ok(r.returncode == 0 and r.stdout.split("\n")[:3] == lines, f"wscat --compress={mode}: messages round-trip",
       f"rc={r.returncode} {r.stderr[-300:]}")
    ok((seen.get("answer") or "").startswith("permessage-deflate"),
       f"wscat --compress={mode}: negotiated (offer {seen.get('ext')!r}, answer {seen.get('answer')!r})")
seen.clear()
r = subprocess.run([os.path.join(BIN, "wscat"), "-c", f"ws://127.0.0.1:{port}/", "-x", "plain"],
                   capture_output=True, text=True, timeout=20)
ok(r.returncode == 0 and seen.get("ext") is None and r.stdout.strip() == "plain",
   "without --compress nothing is offered")
srv.stop()
done()
