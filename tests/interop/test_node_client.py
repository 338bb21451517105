#!/usr/bin/python3
"""Interoperability: Node's `ws` (an independent implementation) as the client of wsserve --echo:
text, binary at the length boundaries, 1 MiB, fragmented messages, ping, close codes 1000,
4000, 1007, 1009 and 1001 (shutdown), with permessage-deflate off, and on against
--compress=shared, dedicated and 4KB with each parameter ws can offer.

ws is installed by scripts/install-node-deps into a scratch folder outside the repository
($WSK_NODE_DIR, default /tmp/wskit-node); without node or npm every case is skipped.
Test names start with a matrix tag, "[peer | direction | compression | transport]", that
scripts/interop-matrix reads."""
import json
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import wstest  # noqa: E402
from wstest import Server, done, ok, skip, serve  # noqa: E402

SCRIPT = os.path.join(HERE, "node", "ws_client.js")
INSTALL = os.path.join(HERE, "..", "..", "scripts", "install-node-deps")
PEER = "Node ws"
DIRECTION = "ws client → wsserve"

# What ws offers for each perMessageDeflate setting (threshold 0: every message compressed).
OFFERS = [
    ("default offer", {"threshold": 0}),
    ("serverNoContextTakeover", {"threshold": 0, "serverNoContextTakeover": True}),
    ("clientNoContextTakeover", {"threshold": 0, "clientNoContextTakeover": True}),
    ("clientMaxWindowBits=10", {"threshold": 0, "clientMaxWindowBits": 10}),
] + [(f"serverMaxWindowBits={b}", {"threshold": 0, "serverMaxWindowBits": b}) for b in range(8, 16)]


def tag(compression):
    return f"[{PEER} | {DIRECTION} | {compression} | ws://]"


def node_modules():
    """The folder holding ws, or (None, why)."""
    try:
        r = subprocess.run([INSTALL], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, str(e)
    if r.returncode != 0:
        return None, (r.stderr.strip().splitlines() or ["install-node-deps failed"])[-1]
    return r.stdout.strip().splitlines()[-1], ""


def start_node(scenario, url, opts):
    env = dict(os.environ, NODE_PATH=NODE_PATH)
    return subprocess.Popen(["node", SCRIPT, scenario, url, json.dumps(opts)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def report(proc, prefix, timeout=60):
    """Turns the script's JSON lines into TAP lines; returns the negotiated extension."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        ok(False, f"{prefix} node finished in time")
    ext, checks = None, 0
    for line in out.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if "ext" in obj and ext is None:
            ext = obj["ext"]
        if "check" in obj:
            checks += 1
            ok(obj["ok"], f"{prefix} {obj['check']}", obj["detail"])
    if not checks:
        ok(False, f"{prefix} node ran its checks", err.strip()[-300:])
    return ext


def run_node(scenario, url, opts, prefix):
    return report(start_node(scenario, url, opts), prefix)


def run_nodes(runs, at_once=4):
    """run_node for each (scenario, url, opts, prefix) of runs, at_once clients at a time (each
    on its own connection: node's start-up is most of a run's time); their results in order."""
    exts = []
    for i in range(0, len(runs), at_once):
        batch = [(start_node(sc, url, opts), prefix)
                 for sc, url, opts, prefix in runs[i:i + at_once]]
        exts += [report(proc, prefix) for proc, prefix in batch]
    return exts


def params(ext):
    """The parameters of a permessage-deflate response: {name: value or True}."""
    out = {}
    for p in (ext or "").split(";")[1:]:
        k, _, v = p.strip().partition("=")
        out[k] = int(v.strip('"')) if v else True
    return out


def check_answer(prefix, name, offer, ext):
    """RFC 7692 section 7: what the response must say about what ws offered."""
    p = params(ext)
    ok(bool(ext) and ext.startswith("permessage-deflate"), f"{prefix} negotiated: {ext}", ext)
    if offer.get("serverMaxWindowBits"):
        # Every mode, shared included, honours any window (RFC 7692 7.1.2.1).
        ok(p.get("server_max_window_bits", 99) <= offer["serverMaxWindowBits"],
           f"{prefix} server_max_window_bits honoured", ext)
    if offer.get("serverNoContextTakeover"):
        ok(p.get("server_no_context_takeover") is True,
           f"{prefix} server_no_context_takeover answered", ext)
    if offer.get("clientMaxWindowBits"):
        ok(p.get("client_max_window_bits", 0) <= offer["clientMaxWindowBits"],
           f"{prefix} client_max_window_bits at most the offered value", ext)


def goaway(prefix, *args):
    """A connected client gets 1001 when the server is stopped, and the server exits 0."""
    srv = Server("--echo", *args)
    try:
        proc = start_node("goaway", srv.url(), {"pmd": bool(args)})
        end = time.time() + 10
        line = ""
        while time.time() < end and "ready" not in line:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
        srv.proc.send_signal(signal.SIGTERM)
        report(proc, prefix)
    finally:
        rc = srv.stop()
    ok(rc == 0, f"{prefix} server exits 0 after SIGTERM", f"rc={rc}")


NODE_PATH, why = node_modules()
if not NODE_PATH:
    skip(f"{tag('off')} Node ws client", why)
    done()

with serve("--echo") as srv:
    ext = run_node("echo", srv.url(), {"pmd": False}, tag("off") + " no offer:")
    ok(ext == "", f"{tag('off')} no extension negotiated", ext)
    ext = run_node("echo", srv.url(), {"pmd": {"threshold": 0}}, tag("off") + " offer declined:")
    ok(ext == "", f"{tag('off')} no permessage-deflate unless --compress", ext)
    run_node("badutf8", srv.url(), {}, tag("off"))
with serve("--echo", "--max-payload", "64K") as srv:
    run_node("toobig", srv.url(), {"size": 100000}, tag("off"))
goaway(tag("off"))

for mode in ("shared", "dedicated", "4KB"):
    t = tag(f"--compress={mode}")
    with serve("--echo", f"--compress={mode}") as srv:
        runs = [("echo", srv.url(), {"pmd": offer}, f"{t} {name}:") for name, offer in OFFERS]
        runs.append(("badutf8", srv.url(), {"pmd": {"threshold": 0}}, f"{t} compressed:"))
        for (name, offer), run, ext in zip(OFFERS, runs, run_nodes(runs)):
            check_answer(run[3], name, offer, ext)
    with serve("--echo", f"--compress={mode}", "--max-payload", "64K") as srv:
        # 1 MiB of one repeated byte deflates to about 1 KiB: the limit applies to the inflated
        # size, so the server must stop inflating at 64 KiB and close with 1009.
        run_node("toobig", srv.url(), {"pmd": {"threshold": 0}, "size": 1 << 20},
                 f"{t} compressed:")
    goaway(t, f"--compress={mode}")
done()
