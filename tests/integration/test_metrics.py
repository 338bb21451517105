#!/usr/bin/python3
"""wsserve --metrics and --metrics-path: the text is read by Prometheus's own parser (Debian
python3-prometheus-client), every family has HELP and TYPE, and the counters move as traffic
flows: messages and bytes by type, the size and handshake histograms, close codes both ways,
refused connections by reason (TLS too), pub/sub publishes, deliveries, topics and
subscriptions, compression both ways, the bridge's link, and a slow consumer's backpressure,
drops, queue and 1008 close.  The metrics port answers nothing but /metrics; on the main port
the path is behind the broker's token."""
import asyncio
import os
import shutil
import socket
import ssl
import sys
import urllib.error
import urllib.request

import websockets

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wstest import (Certs, Raw, done, frame, free_port, ok, serve, skip,  # noqa: E402
                    struct_fields, tls_client_ctx)
from wstest import Engine, wait_for  # noqa: E402

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    text_string_to_metric_families = None

T = 5.0  # every wait is bounded


def get(url, headers=None):
    """(status, headers, body text) of a GET."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=T) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def parse(text):
    """{family name: family} and {(sample name, sorted labels): value}, by Prometheus's parser."""
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in fams.values() for s in f.samples}
    return fams, samples


def scrape(url, headers=None):
    st, _, body = get(url, headers)
    return parse(body)[1] if st == 200 else {}


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0)


def connect(url, **kw):
    return websockets.connect(url, open_timeout=T, close_timeout=T, ping_interval=None,
                              max_size=None, compression=None, **kw)


def raw_refusal(port, head):
    """Sends one request head on a plain socket; the status line of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=T) as s:
        s.sendall(head.encode())
        return s.recv(200).split(b"\r\n")[0].decode(errors="replace")


def reached(url, name, want, **labels):
    """Waits until the sample is at least want; its value then."""
    return wait_for(lambda: value(scrape(url), name, **labels) >= want and
                    value(scrape(url), name, **labels))


async def echo_traffic(url):
    async with connect(url) as ws:
        for m in ("a", "bb" * 100, "c" * 5000):
            await ws.send(m)
            await asyncio.wait_for(ws.recv(), T)
        for m in (b"\x00\x01", b"\xff" * 300):
            await ws.send(m)
            await asyncio.wait_for(ws.recv(), T)
        await ws.close(4001, "bye")
    async with connect(url) as ws:
        await ws.close(1000)


def echo_cases():
    mport = free_port()
    with serve("--echo", "--metrics", f"127.0.0.1:{mport}") as srv:
        murl = f"http://127.0.0.1:{mport}/metrics"
        st, hdr, text = get(murl)
        ok(st == 200 and hdr.get("Content-Type", "").startswith("text/plain; version=0.0.4"),
           "--metrics: 200, text/plain; version=0.0.4", f"{st} {hdr.get('Content-Type')}")
        fams, before = parse(text)
        ok(all(f.documentation for f in fams.values()) and len(fams) >= 20,
           "every family has HELP text", f"{len(fams)} families")
        types = {n: f.type for n, f in fams.items()}
        ok(types.get("wsk_messages_received") == "counter" and
           types.get("wsk_connections_open") == "gauge" and
           types.get("wsk_message_received_size_bytes") == "histogram" and
           types.get("wsk_handshake_duration_seconds") == "histogram",
           "TYPE counter, gauge, histogram", str(types)[:300])
        ok(all(n.startswith("wsk_") for n in fams), "every name starts with wsk_")

        asyncio.run(echo_traffic(srv.url()))
        after = {}

        def moved():
            # Both connections' counters: with --threads they may be on two threads, and
            # another thread's reach a scrape within STATS_PERIOD.
            after.update(scrape(murl))
            return (value(after, "wsk_close_codes_received_total", code="1000") >= 1 and
                    value(after, "wsk_close_codes_received_total", code="other") >= 1)
        wait_for(moved)
        d = {k: after.get(k, 0) - before.get(k, 0) for k in after}

        def delta(name, **labels):
            return d.get((name, tuple(sorted(labels.items()))), 0)
        ok(delta("wsk_messages_received_total", type="text") == 3 and
           delta("wsk_messages_received_total", type="binary") == 2,
           "messages received by type", str((delta("wsk_messages_received_total", type="text"),
                                             delta("wsk_messages_received_total", type="binary"))))
        ok(delta("wsk_received_bytes_total", type="text") == 1 + 200 + 5000 and
           delta("wsk_received_bytes_total", type="binary") == 302,
           "payload bytes received by type")
        ok(delta("wsk_messages_sent_total", type="text") == 3 and
           delta("wsk_sent_bytes_total", type="binary") == 302, "the echoes, sent")
        ok(delta("wsk_message_received_size_bytes_bucket", le="64") == 2 and
           delta("wsk_message_received_size_bytes_bucket", le="256") == 3 and
           delta("wsk_message_received_size_bytes_bucket", le="16384") == 5 and
           delta("wsk_message_received_size_bytes_count") == 5 and
           delta("wsk_message_received_size_bytes_sum") == 5503,
           "the size histogram")
        ok(delta("wsk_close_codes_received_total", code="other") == 1 and
           delta("wsk_close_codes_sent_total", code="other") == 1 and
           delta("wsk_close_codes_received_total", code="1000") == 1 and
           delta("wsk_close_codes_sent_total", code="1000") == 1,
           "close codes both ways (4001 is other)")
        ok(delta("wsk_connections_upgraded_total") == 2 and
           delta("wsk_connections_accepted_total") >= 2, "accepted and upgraded")
        ok(delta("wsk_handshake_duration_seconds_count") == 2 and
           delta("wsk_handshake_duration_seconds_bucket", le="+Inf") == 2 and
           0 < delta("wsk_handshake_duration_seconds_sum") < 10,
           "the handshake durations (microseconds: not 0 on loopback)",
           str(delta("wsk_handshake_duration_seconds_sum")))

        line = raw_refusal(srv.port, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n")
        ok(" 400 " in line, "an upgrade without a key: 400", line)
        line = raw_refusal(srv.port, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                           "Sec-WebSocket-Version: 8\r\n\r\n")
        ok(" 426 " in line, "version 8: 426", line)
        ok(reached(murl, "wsk_connections_refused_total", 1, reason="bad_request") == 1 and
           reached(murl, "wsk_connections_refused_total", 1, reason="version") == 1,
           "refused connections by reason")

        st, _, body = get(f"http://127.0.0.1:{mport}/other")
        ok(st == 404, "the metrics port has nothing but /metrics", f"{st}")
        line = raw_refusal(mport, "GET /metrics HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n")
        ok(" 404 " in line, "and no WebSocket", line)
        main_text = get(f"http://127.0.0.1:{srv.port}/metrics")[2]
        ok("wsk_" not in main_text, "without --metrics-path the main port does not show them")


async def pubsub_run(srv, murl, headers):
    tok = {"Authorization": "Bearer s3cret"}
    async with connect(srv.url("/news"), extra_headers=tok) as pub, \
            connect(srv.url("/news")) as sub:
        ok(wait_for(lambda: value(scrape(murl, headers), "wsk_subscriptions") == 2),
           "subscriptions gauge: 2")
        ok(value(scrape(murl, headers), "wsk_topics") == 1, "topics gauge: 1")
        await pub.send("hello")
        got = await asyncio.wait_for(sub.recv(), T)
        ok(got == "hello", "the subscriber got the publish", repr(got))
    ok(wait_for(lambda: value(scrape(murl, headers), "wsk_subscriptions") == 0),
       "subscriptions gone with the sockets")


def scraped_when(murl, headers, cond):
    """A scrape for which cond holds, or the last one: with --threads another thread's
    counters reach a scrape within wsserve's STATS_PERIOD (0.25 s)."""
    last = {}

    def probe():
        last.update(scrape(murl, headers))
        return cond(last)
    wait_for(probe)
    return last


def pubsub_cases():
    with serve("--pubsub", "--token", "s3cret", "--origin", "http://good.example",
               "--metrics-path", "/metrics") as srv:
        murl = f"http://127.0.0.1:{srv.port}/metrics"
        st, hdr, _ = get(murl)
        ok(st == 401 and hdr.get("WWW-Authenticate") == "Bearer",
           "--metrics-path: 401 without the token", f"{st}")
        st, _, _ = get(murl, {"Authorization": "Bearer wrong"})
        ok(st == 401, "401 with a wrong token", f"{st}")
        headers = {"Authorization": "Bearer s3cret"}
        st, _, text = get(murl, headers)
        ok(st == 200 and "wsk_publishes_total" in text, "200 with the token", f"{st}")
        before = scrape(murl, headers)
        asyncio.run(pubsub_run(srv, murl, headers))
        after = scraped_when(murl, headers, lambda m: value(m, "wsk_publishes_total") -
                             value(before, "wsk_publishes_total") == 1)
        ok(value(after, "wsk_publishes_total") - value(before, "wsk_publishes_total") == 1 and
           value(after, "wsk_deliveries_total") - value(before, "wsk_deliveries_total") == 1,
           "one publish, one delivery (the sender left out)")
        req = urllib.request.Request(f"http://127.0.0.1:{srv.port}/publish/nobody", data=b"x",
                                     headers=headers)
        with urllib.request.urlopen(req, timeout=T) as r:
            r.read()
        later = scraped_when(murl, headers, lambda m: value(m, "wsk_publishes_total") -
                             value(after, "wsk_publishes_total") == 1)
        ok(value(later, "wsk_publishes_total") - value(after, "wsk_publishes_total") == 1 and
           value(later, "wsk_deliveries_total") == value(after, "wsk_deliveries_total"),
           "a publish to a topic without subscribers counts, with no delivery")

        async def evil():
            try:
                async with connect(srv.url("/news"), origin="http://evil.example"):
                    return "open"
            except websockets.exceptions.InvalidStatusCode as e:
                return e.status_code
        r = asyncio.run(evil())
        ok(r == 403, "a foreign Origin: 403", str(r))
        ok(wait_for(lambda: value(scrape(murl, headers), "wsk_connections_refused_total",
                                  reason="forbidden") == 1),
           "counted as refused: forbidden")


async def tls_traffic(url, certs):
    async with connect(url, ssl=tls_client_ctx(certs)) as ws:
        await ws.send("over TLS")
        await asyncio.wait_for(ws.recv(), T)


def tls_cases():
    tls = Certs()
    try:
        if not tls.ok:
            skip("metrics over TLS", "scripts/mkcerts failed: " + tls.why)
            return
        mport = free_port()
        with serve("--echo", "--tls-cert", tls.path("server.crt"), "--tls-key",
                   tls.path("server.key"), "--metrics", f"127.0.0.1:{mport}") as srv:
            murl = f"http://127.0.0.1:{mport}/metrics"
            base = scrape(murl)
            asyncio.run(tls_traffic(f"wss://localhost:{srv.port}/", tls.dir))
            ok(wait_for(lambda: value(scrape(murl), "wsk_tls_handshakes_total", kind="full") -
                        value(base, "wsk_tls_handshakes_total", kind="full") == 1),
               "a full TLS handshake counted")
            ctx = tls_client_ctx(tls.dir)
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # the session is ready at once
            with ctx.wrap_socket(socket.create_connection(("127.0.0.1", srv.port), timeout=T),
                                 server_hostname="localhost") as first:
                session = first.session
            with ctx.wrap_socket(socket.create_connection(("127.0.0.1", srv.port), timeout=T),
                                 server_hostname="localhost", session=session) as again:
                reused = again.session_reused
            ok(reused and wait_for(lambda: value(scrape(murl), "wsk_tls_handshakes_total",
                                                 kind="resumed") == 1),
               "a resumed TLS handshake counted", f"reused={reused}")
            line = raw_refusal(srv.port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            ok(not line.startswith("HTTP/1.1 200"), "plain HTTP on the TLS port fails", line)
            ok(wait_for(lambda: value(scrape(murl), "wsk_connections_refused_total",
                                      reason="tls") - value(base, "wsk_connections_refused_total",
                                                            reason="tls") == 1),
               "counted as refused: tls")
    finally:
        tls.remove()


async def compressed_traffic(url):
    async with websockets.connect(url, open_timeout=T, close_timeout=T, ping_interval=None,
                                  compression="deflate") as ws:
        await ws.send("wskit " * 1000)
        await asyncio.wait_for(ws.recv(), T)


def compression_cases():
    mport = free_port()
    with serve("--echo", "--compress", "--metrics", f"127.0.0.1:{mport}") as srv:
        murl = f"http://127.0.0.1:{mport}/metrics"
        asyncio.run(compressed_traffic(srv.url()))
        m = {}
        wait_for(lambda: m.update(scrape(murl)) or value(m, "wsk_deflate_output_bytes_total") > 0)
        ok(value(m, "wsk_inflate_output_bytes_total") == 6000 and
           0 < value(m, "wsk_inflate_input_bytes_total") < 1000,
           "compressed bytes received, before and after inflating",
           f'{value(m, "wsk_inflate_input_bytes_total")} -> '
           f'{value(m, "wsk_inflate_output_bytes_total")}')
        ok(value(m, "wsk_deflate_input_bytes_total") == 6000 and
           0 < value(m, "wsk_deflate_output_bytes_total") < 1000,
           "compressed bytes sent, before and after deflating",
           f'{value(m, "wsk_deflate_input_bytes_total")} -> '
           f'{value(m, "wsk_deflate_output_bytes_total")}')


async def compressed_publish(url):
    async with websockets.connect(url, open_timeout=T, close_timeout=T, ping_interval=None,
                                  compression="deflate") as a, \
            websockets.connect(url, open_timeout=T, close_timeout=T, ping_interval=None,
                               compression="deflate") as b, \
            connect(url) as pub:
        await pub.send("wskit " * 1000)
        for ws in (a, b):
            await asyncio.wait_for(ws.recv(), T)


def compressed_publish_cases():
    mport = free_port()
    with serve("--pubsub", "--compress", "--metrics", f"127.0.0.1:{mport}") as srv:
        murl = f"http://127.0.0.1:{mport}/metrics"
        asyncio.run(compressed_publish(srv.url("/news")))
        m = {}
        wait_for(lambda: m.update(scrape(murl)) or value(m, "wsk_deliveries_total") == 2)
        ok(value(m, "wsk_deflate_input_bytes_total") == 6000 and
           0 < value(m, "wsk_deflate_output_bytes_total") < 1000,
           "a publish compressed once for two subscribers: counted once, before and after",
           f'{value(m, "wsk_deflate_input_bytes_total")} -> '
           f'{value(m, "wsk_deflate_output_bytes_total")}')


async def limit_run(url, murl):
    base = value(scrape(murl), "wsk_connections_accepted_total")  # the readiness probe
    async with connect(url) as a, connect(url) as b:
        ok(wait_for(lambda: value(scrape(murl), "wsk_accept_paused") == 1),
           "--max-connections 2, two open: accepting paused (gauge 1)")
        third = asyncio.ensure_future(connect(url).__aenter__())
        done_, _ = await asyncio.wait({third}, timeout=0.5)
        ok(not done_, "a third connection waits in the backlog, unanswered")
        m = scrape(murl)
        pauses = value(m, "wsk_accept_limit_pauses_total")
        ok(pauses >= 1 and value(m, "wsk_connections_accepted_total") - base == 2,
           "the pause at the limit counted, two accepted", str(
               (value(m, "wsk_accept_limit_pauses_total"),
                value(m, "wsk_connections_accepted_total") - base)))
        await a.close()
        c = await asyncio.wait_for(third, T)
        ok(c.open, "one closed: the third is accepted")
        ok(wait_for(lambda: value(scrape(murl), "wsk_accept_limit_pauses_total") > pauses),
           "at the limit again with the third: another pause counted")
        await c.close()
        del b


def limit_cases():
    mport = free_port()
    # One thread even under WSK_THREADS: the counts below are of one server's pauses.
    with serve("--echo", "--max-connections", "2", "--threads", "1", "--metrics",
               f"127.0.0.1:{mport}") as srv:
        murl = f"http://127.0.0.1:{mport}/metrics"
        ok(value(scrape(murl), "wsk_accept_paused") == 0 and
           value(scrape(murl), "wsk_accept_limit_pauses_total") == 0,
           "no connection yet: accepting, no pause counted")
        asyncio.run(limit_run(srv.url(), murl))
        ok(wait_for(lambda: value(scrape(murl), "wsk_accept_paused") == 0),
           "all closed: accepting again (gauge 0)")


def bridge_cases():
    if not shutil.which("redis-server"):
        skip("metrics of the bridge", "redis-server is not installed")
        return
    mport = free_port()
    with Engine("redis") as redis, serve("--pubsub", "--bridge", redis.url, "--metrics",
                                         f"127.0.0.1:{mport}"):
        murl = f"http://127.0.0.1:{mport}/metrics"
        ok(wait_for(lambda: value(scrape(murl), "wsk_bridge_links_up") == 1),
           "bridged: the engine link is up")
        fams, _ = parse(get(murl)[2])
        fields = struct_fields("wsk_bridge_stats")
        missing = [f for f in fields
                   if f"wsk_bridge_{f}" not in fams and f"wsk_bridge_{f}_total" not in fams]
        ok(fields and not missing and all(fams[n].documentation for n in fams
                                          if n.startswith("wsk_bridge_")),
           "every counter of wsk_bridge_stats is a bridge family with HELP text",
           f"missing: {missing}")
        redis.stop()
        ok(wait_for(lambda: value(scrape(murl), "wsk_bridge_links_up") == 0 and
                    value(scrape(murl), "wsk_bridge_outages_total") >= 1),
           "the engine gone: the link down, an outage counted")


def flood(port, megabytes):
    """A client that sends 1 KiB echo requests and reads nothing (a 4 KiB receive buffer)."""
    c = Raw(port, rcvbuf=4096)
    c.sock.settimeout(20)
    msg = frame(2, b"s" * 1024) * 64
    try:
        for _ in range(megabytes * 16):
            c.send(msg)
    except OSError:
        pass  # closed under us with --close-on-backpressure
    return c


def slow_consumer_cases():
    for close in (False, True):
        mport = free_port()
        name = "--close-on-backpressure" if close else "drop"
        args = ["--echo", "--backpressure-limit", "1M", "--metrics", f"127.0.0.1:{mport}"]
        with serve(*args + (["--close-on-backpressure"] if close else [])) as srv:
            murl = f"http://127.0.0.1:{mport}/metrics"
            c = flood(srv.port, 32)
            if close:
                ok(wait_for(lambda: value(scrape(murl), "wsk_slow_consumer_closes_total") == 1),
                   f"{name}: the slow consumer's close counted")
                m = scrape(murl)
                ok(value(m, "wsk_close_codes_sent_total", code="1008") == 1,
                   f"{name}: close code 1008 sent, counted")
            else:
                ok(wait_for(lambda: value(scrape(murl), "wsk_dropped_messages_total") > 0),
                   f"{name}: dropped messages counted")
                ok(wait_for(lambda: value(scrape(murl), "wsk_backpressure_total") > 0),
                   f"{name}: sends queued behind unread data counted")
                ok(value(scrape(murl), "wsk_slow_consumer_closes_total") == 0,
                   f"{name}: nobody closed")
                ok(wait_for(lambda: 0 < value(scrape(murl), "wsk_send_queue_bytes") <= 1 << 20),
                   f"{name}: the send-queue gauge holds the capped queue",
                   str(value(scrape(murl), "wsk_send_queue_bytes")))
            c.sock.close()


if text_string_to_metric_families is None:
    skip("metrics", "python3-prometheus-client is not installed (scripts/install-deps)")
else:
    echo_cases()
    pubsub_cases()
    tls_cases()
    compression_cases()
    compressed_publish_cases()
    limit_cases()
    bridge_cases()
    slow_consumer_cases()
done()
