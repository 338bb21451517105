#!/usr/bin/python3
"""wsserve's console page (cmd/console.html) in headless Chromium: served to a browser's GET /
in --echo and --pubsub, loads without console errors, connects, sends text and JSON and shows
the echoes; on the broker it subscribes, receives a publish from another client, publishes
and shows the receiver count; in --chat it gets "ready", its line reaches another member and
that member's answer shows; with --exec cat it shows the line cat writes back.  A screenshot of each page goes to a temporary folder whose path
is printed (not committed).  Without Chromium the cases are skipped.  Plain clients keep the
text page, and --no-console gives browsers the text page too."""
import asyncio
import os
import sys
import tempfile
import urllib.request

import websockets

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from wstest import done, ok, serve, skip  # noqa: E402
from chromium import Browser, find  # noqa: E402

T = 10.0  # every wait is bounded

# In the page: waitFor(cond, what) polls cond() until it is true, at most 10 s.
JS_WAIT = r"""
window.waitFor = (cond, what) => new Promise((res, rej) => {
  const end = Date.now() + 10000;
  const poll = () => {
    let v;
    try { v = cond(); } catch (e) { v = false; }
    if (v) res(v);
    else if (Date.now() > end) rej(new Error('timed out waiting for ' + what));
    else setTimeout(poll, 20);
  };
  poll();
});
window.logText = () => document.getElementById('log').innerText;
window.cell = (topic, i) => {
  const tr = document.querySelector(`#topics tr[data-topic="${topic}"]`);
  return tr ? tr.children[i].textContent : '';
};
"""

JS_ECHO = r"""
check('the page shows the mode', document.getElementById('mode').textContent === '--echo',
      document.getElementById('mode').textContent);
document.getElementById('connect').click();
await waitFor(() => document.getElementById('state').textContent === 'open', 'open');
check('connects', true, '');
document.getElementById('msg').value = 'hello console';
document.getElementById('send').click();
await waitFor(() => logText().includes('←hello console'), 'the echo');
check('sends and shows the echo, with its direction', /→hello console[\s\S]*←hello console/.test(logText()),
      logText().slice(-200));
check('log lines carry a timestamp', /\d\d:\d\d:\d\d\.\d{3}/.test(logText()), '');
document.getElementById('kind').value = 'json';
document.getElementById('msg').value = '{ "a" : [1, 2] }';
document.getElementById('send').click();
await waitFor(() => logText().includes('←{"a":[1,2]}'), 'the JSON echo');
check('JSON is checked and sent compact', true, '');
document.getElementById('kind').value = 'binary';
document.getElementById('msg').value = '01 ff 7a';
document.getElementById('send').click();
await waitFor(() => logText().includes('←binary 01 ff 7a'), 'the binary echo');
check('binary from hex, echoed', true, '');
document.getElementById('code').value = '4001';
document.getElementById('reason').value = 'done here';
document.getElementById('disconnect').click();
await waitFor(() => logText().includes('closed 4001'), 'the close');
check('closes with the code and reason given (the server echoes the code)',
      logText().includes('closing with 4001 done here'), logText().slice(-200));
"""

JS_PUBSUB = r"""
check('the topics panel is shown', !document.getElementById('pubsub').classList.contains('hidden'), '');
document.getElementById('connect').click();
await waitFor(() => document.getElementById('state').textContent === 'open', 'open');
document.getElementById('topic').value = 'news';
document.getElementById('subscribe').click();
await waitFor(() => cell('news', 1) === 'yes', 'the subscription');
check('subscribes', true, '');
await waitFor(() => cell('news', 3) === '1', 'the subscriber count');
check('shows the topic\'s subscribers: 1', true, '');
window.subscribed = true;
"""

JS_PUBSUB_GOT = r"""
await waitFor(() => cell('news', 3) === '2', 'the live subscriber count');
check('the subscriber count follows: 2 with another client', true, '');
await waitFor(() => cell('news', 2) === '1', 'the publish');
check('receives a publish and counts it', logText().includes('from another client'), logText().slice(-200));
document.getElementById('pubdata').value = 'from the console';
document.getElementById('publish').click();
await waitFor(() => cell('news', 4) === '1', 'the receiver count');
check('publishes; the ack\'s receiver count is shown', true, '');
document.getElementById('ping').click();
await waitFor(() => logText().includes('ping answered'), 'the ping');
check('ping (the broker\'s JSON ping) answered', true, '');
document.getElementById('unsubscribe').click();
await waitFor(() => cell('news', 1) === 'no', 'the unsubscription');
check('unsubscribes', true, '');
"""

# --chat --clients 1: the page is the one member the room waits for, so "ready" comes back.
JS_CHAT = r"""
check('the page shows the mode', document.getElementById('mode').textContent === '--chat',
      document.getElementById('mode').textContent);
document.getElementById('connect').click();
await waitFor(() => document.getElementById('state').textContent === 'open', 'open');
check('connects', true, '');
await waitFor(() => logText().includes('←ready'), 'ready');
check('the room says ready', true, '');
window.chatJoined = true;
"""

# Another member has joined: the page's line goes to it, and its line comes back to the page.
JS_CHAT_REPLY = r"""
document.getElementById('msg').value = 'hello chat';
document.getElementById('send').click();
await waitFor(() => logText().includes(': hi console'), 'the other member\'s line');
check('sends, and shows the other member\'s reply', /→hello chat[\s\S]*←[^\n]*: hi console/.test(logText()),
      logText().slice(-200));
"""

JS_EXEC = r"""
check('the page shows the mode', document.getElementById('mode').textContent === '--exec',
      document.getElementById('mode').textContent);
document.getElementById('connect').click();
await waitFor(() => document.getElementById('state').textContent === 'open', 'open');
check('connects', true, '');
document.getElementById('msg').value = 'hello cat';
document.getElementById('send').click();
await waitFor(() => logText().includes('←hello cat'), 'cat\'s line');
check('sends a line, shows the line cat wrote back', /→hello cat[\s\S]*←hello cat/.test(logText()),
      logText().slice(-200));
"""


def get(url, accept):
    req = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(req, timeout=T) as r:
        return r.headers.get("Content-Type", ""), r.read().decode()


def plain_cases():
    with serve("--echo") as srv:
        http = f"http://127.0.0.1:{srv.port}/"
        ctype, body = get(http, "text/html,application/xhtml+xml,*/*;q=0.8")
        ok(ctype.startswith("text/html") and "<html" in body, "a browser's GET / gets the page",
           ctype)
        ok(len(body.encode()) < 30 * 1024, "the page is under 30 KB", f"{len(body)} bytes")
        ok("src=\"http" not in body and "href=\"http" not in body and "@import" not in body,
           "no external assets")
        ok('data-mode="echo"' in body, "the mode is filled in")
        ctype, body = get(http, "*/*")
        ok(ctype.startswith("text/plain") and "echo server" in body, "curl keeps the text page",
           ctype)
        ctype, _ = get(http + "other", "text/html")
        ok(ctype.startswith("text/plain"), "only / is the console")
    with serve("--echo", "--no-console") as srv:
        ctype, _ = get(f"http://127.0.0.1:{srv.port}/", "text/html")
        ok(ctype.startswith("text/plain"), "--no-console: browsers get the text page", ctype)


async def publish_when_subscribed(b, url):
    async with websockets.connect(url, open_timeout=T, close_timeout=T) as pub:
        await pub.send("from another client")
        await b.run("console --pubsub:", JS_PUBSUB_GOT)


async def chat_member(b, url):
    """Joins the room after the page, answers the page's line."""
    async with websockets.connect(url + "?name=py", open_timeout=T, close_timeout=T) as ws:
        page_side = asyncio.ensure_future(b.run("console --chat:", JS_CHAT_REPLY))
        line = ""
        while not line.endswith(": hello chat"):
            line = await asyncio.wait_for(ws.recv(), T)
        ok(True, "console --chat: the page's line reached another member", line)
        await ws.send("hi console")
        await asyncio.wait_for(page_side, T)


async def page(b, label, url, shot, *cases):
    """Loads the page at url, runs the cases (JS strings, or coroutines after them), shoots it
    and checks for console errors."""
    b.events.clear()
    await b.navigate(url)
    await b.evaluate(JS_WAIT, raw=True)
    for c in cases:
        if isinstance(c, str):
            await b.run(f"console {label}:", c)
        else:
            await c
    await b.screenshot(shot)
    errs = b.errors()
    ok(not errs, f"console {label}: no console errors", "; ".join(errs)[:300])


async def browser_cases(b, shots):
    await b.connect()
    await b.enable_events()
    await b.call("Emulation.setDeviceMetricsOverride", width=1200, height=760,
                 deviceScaleFactor=1, mobile=False)
    with serve("--echo") as srv:
        await b.navigate(f"http://127.0.0.1:{srv.port}/")
        await b.evaluate(JS_WAIT, raw=True)
        await b.run("console --echo:", JS_ECHO)
        await b.screenshot(os.path.join(shots, "console-echo.png"))
        errs = b.errors()
        ok(not errs, "console --echo: no console errors", "; ".join(errs)[:300])
    # One thread even under WSK_THREADS: the page's live count comes from "topics", which with
    # --threads sees the answering thread's subscriptions only (wsserve(1)).
    with serve("--pubsub", "--threads", "1") as srv:
        b.events.clear()
        await b.navigate(f"http://127.0.0.1:{srv.port}/")
        await b.evaluate(JS_WAIT, raw=True)
        await b.run("console --pubsub:", JS_PUBSUB)
        await publish_when_subscribed(b, srv.url("/news"))
        await b.screenshot(os.path.join(shots, "console-pubsub.png"))
        errs = b.errors()
        ok(not errs, "console --pubsub: no console errors", "; ".join(errs)[:300])
    with serve("--chat", "--clients", "1") as srv:
        await page(b, "--chat", f"http://127.0.0.1:{srv.port}/",
                   os.path.join(shots, "console-chat.png"), JS_CHAT, chat_member(b, srv.url()))
    with serve("--exec", "cat") as srv:
        await page(b, "--exec", f"http://127.0.0.1:{srv.port}/",
                   os.path.join(shots, "console-exec.png"), JS_EXEC)
    await b.ws.close()


plain_cases()
exe = find()
if not exe:
    skip("console in Chromium", "chromium is not installed (apt-get install chromium)")
    done()
shots = tempfile.mkdtemp(prefix="wsk-console-")
browser = Browser(exe)
try:
    asyncio.run(browser_cases(browser, shots))
    ok(os.path.getsize(os.path.join(shots, "console-pubsub.png")) > 1000, "screenshots written",
       shots)
    print(f"# screenshots in {shots}", flush=True)
except Exception as e:  # noqa: BLE001
    ok(False, "console in Chromium driven over DevTools", repr(e))
finally:
    browser.stop()
done()
