#!/usr/bin/python3
"""wscat against a Node `ws` server: plain, and with permessage-deflate configured with each of
ws's parameters (serverNoContextTakeover, clientNoContextTakeover, serverMaxWindowBits,
clientMaxWindowBits), for wscat's shared, dedicated and 4KB compressor modes.  ws comes from
scripts/install-node-deps; without node, npm or the registry every case is skipped."""
import json
import os
import select
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wstest import BIN, done, free_port, ok, skip  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
dep = subprocess.run([os.path.join(ROOT, "scripts", "install-node-deps")], capture_output=True, text=True)
if dep.returncode != 0:
    skip("[Node ws | wscat → ws server | permessage-deflate | ws://] all cases", dep.stderr.strip()[-200:])
    done()
env = dict(os.environ, NODE_PATH=dep.stdout.strip())

CONFIGS = [
    ("off", False),
    ("defaults", True),
    ("serverNoContextTakeover", {"serverNoContextTakeover": True, "threshold": 0}),
    ("clientNoContextTakeover", {"clientNoContextTakeover": True, "threshold": 0}),
    ("serverMaxWindowBits=10", {"serverMaxWindowBits": 10, "threshold": 0}),
    # ws answers 400 to offers without client_max_window_bits when this is set (its policy, not
    # RFC 7692's), so only the modes whose offer carries that parameter are tried against it.
    ("clientMaxWindowBits=9", {"clientMaxWindowBits": 9, "threshold": 0}),
]
OFFERS_CLIENT_BITS = ("dedicated", "4KB")


def line(proc, timeout=5.0):
    """The server's next stdout line, or "" after timeout."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline().strip() if ready else ""

LINES = ["x" * 3000, "compress me " * 40, "é ü ✓ 😀 " * 30, "short"]

for label, pmd in CONFIGS:
    port = free_port()
    srv = subprocess.Popen(["node", os.path.join(HERE, "node", "ws_server.js"), str(port), json.dumps(pmd)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        first = line(srv)
        if not first.startswith("listening"):
            ok(False, f"[Node ws | wscat → ws server | {label} | ws://] server starts", srv.stderr.read()[-300:])
            continue
        modes = ("none",) if pmd is False else ("shared", "dedicated", "4KB")
        if isinstance(pmd, dict) and "clientMaxWindowBits" in pmd:
            modes = OFFERS_CLIENT_BITS
        for mode in modes:
            args = [os.path.join(BIN, "wscat"), "-c", f"ws://127.0.0.1:{port}/", "-w", "0.3"]
            if mode != "none":
                args.append(f"--compress={mode}")
            r = subprocess.run(args, input="\n".join(LINES) + "\n", capture_output=True, text=True, timeout=20)
            ext = line(srv)
            tag = f"[Node ws | wscat → ws server | {'off' if pmd is False else 'ws ' + label} | ws://]"
            negotiated = ext.startswith("extensions permessage-deflate")
            ok(r.returncode == 0 and r.stdout.split("\n")[:len(LINES)] == LINES and
               (negotiated or pmd is False or mode == "none"),
               f"{tag} wscat --compress={mode}: messages round-trip ({ext})",
               f"rc={r.returncode} {r.stderr[-300:]!r}")
    finally:
        srv.kill()
        srv.wait()
done()
