#!/usr/bin/python3
"""Interoperability: headless Chromium's own WebSocket object as a client of wsserve --echo:
text, binary, 1 MiB messages, close 4000 round trip, the server's 1009 and 1001, with and
without --compress (Chromium always offers permessage-deflate; client_max_window_bits).

Chromium (Debian package `chromium`, or $WSK_CHROMIUM) runs headless with a fresh profile and
is driven over its DevTools protocol (a small client on Python websockets): each case is one
Runtime.evaluate of an async function in an about:blank page.  Without Chromium every case is
skipped.  Test names start with a matrix tag read by scripts/interop-matrix."""
import asyncio
import os
import signal
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import wstest  # noqa: E402
from wstest import BIN, Server, done, ok, skip, serve  # noqa: E402
from chromium import Browser, find  # noqa: E402

PEER = "Chromium"
DIRECTION = "browser → wsserve"

# The page-side helpers: a socket whose messages and close wait in queues, every wait bounded.
JS_LIB = r"""
window.wsk = {
  open(url) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      ws.binaryType = 'arraybuffer';
      const c = { ws, msgs: [], waiters: [], closed: null };
      const wake = () => { const w = c.waiters; c.waiters = []; w.forEach((f) => f()); };
      const timer = setTimeout(() => reject(new Error('open timed out')), 10000);
      ws.onopen = () => { clearTimeout(timer); resolve(c); };
      ws.onmessage = (e) => { c.msgs.push(e.data); wake(); };
      ws.onclose = (e) => {
        clearTimeout(timer);
        c.closed = { code: e.code, reason: e.reason, clean: e.wasClean };
        wake();
        reject(new Error('closed before open: ' + e.code));
      };
      c.wait = (pick, what) => new Promise((res, rej) => {
        const t = setTimeout(() => rej(new Error('timed out waiting for ' + what)), 10000);
        const attempt = () => {
          const v = pick();
          if (v !== undefined) { clearTimeout(t); res(v); }
          else if (c.closed && what !== 'close') {
            clearTimeout(t); rej(new Error('closed (' + c.closed.code + ') waiting for ' + what));
          } else c.waiters.push(attempt);
        };
        attempt();
      });
      c.next = () => c.wait(() => c.msgs.length ? c.msgs.shift() : undefined, 'a message');
      c.close = () => c.wait(() => c.closed || undefined, 'close');
    });
  },
  random(n) {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i += 65536) crypto.getRandomValues(b.subarray(i, Math.min(n, i + 65536)));
    return b;
  },
  same(a, b) {
    if (typeof a === 'string' || typeof b === 'string') return a === b;
    const x = new Uint8Array(a), y = new Uint8Array(b);
    if (x.length !== y.length) return false;
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
    return true;
  },
};
"""

# Each case: an async function body with `url` and `check(name, ok, detail)` in scope.
JS_ECHO = r"""
const c = await wsk.open(url);
check('negotiated: ' + (c.ws.extensions || 'none'), expectExt ? c.ws.extensions.startsWith('permessage-deflate')
      : c.ws.extensions === '', c.ws.extensions);
const round = async (name, data) => {
  c.ws.send(data);
  const got = await c.next();
  check(name, wsk.same(got, data instanceof Uint8Array ? data.buffer : data),
        (typeof got === 'string' ? 'text of ' : 'binary of ') + (got.length ?? got.byteLength));
};
await round('text with multi-byte UTF-8 round trip', 'Grüße, 世界 🌍 '.repeat(1000));
for (const n of [0, 1, 125, 126, 65535, 65536]) await round(`binary ${n} bytes round trip`, wsk.random(n));
await round('binary 1 MiB (random) round trip', wsk.random(1 << 20));
await round('binary 1 MiB (compressible) round trip', new TextEncoder().encode('wskit '.repeat(174763)).slice(0, 1 << 20));
await round('text 1 MiB round trip', 'ab€'.repeat(1 << 18).slice(0, 1 << 20));
for (let i = 0; i < 200; i++) c.ws.send('m' + i);
const got = [];
for (let i = 0; i < 200; i++) got.push(await c.next());
check('200 pipelined messages in order', got.every((s, i) => s === 'm' + i), got.slice(0, 3).join());
c.ws.close(4000, 'bye');
const cl = await c.close();
check('close code 4000 round trip', cl.code === 4000 && cl.clean, `${cl.code} clean=${cl.clean}`);
const c2 = await wsk.open(url);
c2.ws.close(1000);
const cl2 = await c2.close();
check('close 1000 completes', cl2.code === 1000 && cl2.clean, `${cl2.code} clean=${cl2.clean}`);
"""

JS_TOOBIG = r"""
const c = await wsk.open(url);
c.ws.send(new TextEncoder().encode('x'.repeat(1 << 20)));
const cl = await c.close();
check('1 MiB message over --max-payload 64K: server closes with 1009', cl.code === 1009,
      `${cl.code} ${cl.reason}`);
"""

# Opens a socket and leaves it open; the second part, after SIGTERM, waits for its close.
JS_GOAWAY_OPEN = r"""
window.goaway = await wsk.open(url);
check('connected before the shutdown', true, '');
"""
JS_GOAWAY_WAIT = r"""
const cl = await window.goaway.close();
check('server shutdown closes with 1001', cl.code === 1001 && cl.clean, `${cl.code} ${cl.reason}`);
"""


# wsserve --pubsub: two sockets on the raw topic /news and one speaking the JSON protocol on /.
JS_PUBSUB = r"""
const a = await wsk.open(base + 'news'), b = await wsk.open(base + 'news');
a.ws.send('hello subscribers');
check('text published on /news reaches the other subscriber', (await b.next()) === 'hello subscribers', '');
const big = wsk.random(1 << 20);
a.ws.send(big);
check('binary 1 MiB published reaches the other subscriber', wsk.same(await b.next(), big.buffer), '');
const j = await wsk.open(base);
j.ws.send(JSON.stringify({ op: 'subscribe', topic: 'news', id: 1 }));
const ack = JSON.parse(await j.next());
check('JSON subscribe acknowledged', ack.type === 'ack' && ack.id === 1, JSON.stringify(ack));
a.ws.send('to both kinds');
const m = JSON.parse(await j.next());
check('a raw publish reaches a JSON subscriber wrapped', m.type === 'message' && m.topic === 'news' &&
      m.data === 'to both kinds', JSON.stringify(m).slice(0, 80));
check('and the raw subscriber as it was sent', (await b.next()) === 'to both kinds', '');
j.ws.send(JSON.stringify({ op: 'publish', topic: 'news', data: 'from JSON', id: 2 }));
check('a JSON publish reaches the raw subscribers', (await b.next()) === 'from JSON' &&
      (await a.next()) === 'from JSON', '');
check('the publisher does not get its own raw messages', a.msgs.length === 0, a.msgs.length);
a.ws.close(4000, 'bye');
const cl = await a.close();
check('close code 4000 round trip', cl.code === 4000 && cl.clean, `${cl.code} clean=${cl.clean}`);
j.ws.close(1000);
b.ws.close(1000);
await j.close();
await b.close();
"""


def tag(compression, direction=DIRECTION):
    return f"[{PEER} | {direction} | {compression} | ws://]"


async def main(b):
    await b.connect(JS_LIB)
    for mode in (None, "shared", "dedicated", "4KB"):
        args = [f"--compress={mode}"] if mode else []
        comp = f"--compress={mode}" if mode else "off"
        t = tag(comp)
        with serve("--echo", *args) as srv:
            await b.run(t, JS_ECHO, url=srv.url(), expectExt=bool(mode))
        with serve("--echo", "--max-payload", "64K", *args) as srv:
            await b.run(t, JS_TOOBIG, url=srv.url())
        srv = Server("--echo", *args)
        try:
            await b.run(t, JS_GOAWAY_OPEN, url=srv.url())
            srv.proc.send_signal(signal.SIGTERM)
            await b.run(t, JS_GOAWAY_WAIT)
        finally:
            rc = srv.stop()
        ok(rc == 0, f"{t} server exits 0 after SIGTERM", f"rc={rc}")
        if PUBSUB:
            with serve("--pubsub", *args) as srv:
                await b.run(tag(comp, "browser → wsserve --pubsub"), JS_PUBSUB, base=srv.url())
        else:
            skip(f"{tag(comp, 'browser → wsserve --pubsub')} topics", "wsserve has no --pubsub")
    await b.ws.close()


PUBSUB = "--pubsub" in subprocess.run([os.path.join(BIN, "wsserve"), "--help"],
                                      capture_output=True, text=True, timeout=10).stdout
exe = find()
if not exe:
    skip(f"{tag('off')} Chromium WebSocket", "chromium is not installed (apt-get install chromium)")
    done()
browser = Browser(exe)
try:
    asyncio.run(main(browser))
except Exception as e:  # noqa: BLE001
    ok(False, f"{tag('off')} Chromium driven over DevTools", repr(e))
finally:
    browser.stop()
done()
