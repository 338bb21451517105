/* A server's metrics: wsk_server_stats copies the counters the data path keeps (metrics.h) and
 * reads the gauges; wsk_stats_format writes them in Prometheus's text exposition format 0.0.4
 * (https://prometheus.io/docs/instrumenting/exposition_formats/): for each family a HELP and a
 * TYPE line, then its samples; counters end in _total, sizes are in bytes. */
#include "group.h"
#include "internal.h"

#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

int wsk_server_stats(const wsk_server *srv, wsk_stats *st, size_t size)
{
    if (!st || size < sizeof st->size) return WSK_ERR_INVAL;
    const wsk_ctx *ctx = wsk_server_ctx(srv);
    wsk_stats s = ctx->stats;
    s.size = size < sizeof s ? size : sizeof s;
    s.sockets = ctx->nconns;
    s.open = ctx->nopen;
    s.topics = wsk_server_topics(srv);
    s.queued_bytes = s.subscriptions = 0;
    for (const struct wsk_ws *c = ctx->conns; c; c = c->next) {
        s.queued_bytes += c->q.bytes;
        s.subscriptions += wsk_ws_subscriptions(c, NULL, NULL);
    }
    wsk_bridge_stats b = {0};
    s.bridged = wsk_server_bridge_stats(srv, &b) == 0;
    s.bridge_links = b.links;
    s.bridge_links_up = b.links_up;
    s.bridge_forwarded = b.forwarded;
    s.bridge_failed = b.failed;
    s.bridge_received = b.received;
    s.bridge_outages = b.outages;
    s.bridge_echoes = b.echoes;
    s.bridge_foreign = b.foreign;
    s.bridge_copies = b.copies;
    s.bridge_remote = b.remote;
    s.handoffs_failed = wsk_group_handoffs_reported(ctx->group);
    memcpy(st, &s, s.size);
    return 0;
}

/* ----- the text format ------------------------------------------------------------------------ */

/* snprintf's contract over a whole document: bytes past cap are counted, not written. */
struct out {
    char *buf;
    size_t cap, len;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = o->len < o->cap ? o->cap - o->len : 0;
    int n = vsnprintf(room ? o->buf + o->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0) o->len += (size_t)n;
}

static void family(struct out *o, const char *name, const char *type, const char *help)
{
    put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample(struct out *o, const char *name, uint64_t v)
{
    put(o, "%s %llu\n", name, (unsigned long long)v);
}

/* One family with a single unlabelled sample. */
static void single(struct out *o, const char *name, const char *type, const char *help, uint64_t v)
{
    family(o, name, type, help);
    sample(o, name, v);
}

/* One family with one label: values[i] under label="names[i]". */
static void labelled(struct out *o, const char *name, const char *type, const char *help,
                     const char *label, const char *const *names, const uint64_t *values, size_t n)
{
    family(o, name, type, help);
    for (size_t i = 0; i < n; i++)
        put(o, "%s{%s=\"%s\"} %llu\n", name, label, names[i], (unsigned long long)values[i]);
}

static const char *const types[] = {"text", "binary"};
static const char *const controls[] = {"close", "ping", "pong"};
static const char *const tls_kinds[] = {"full", "resumed"};
static const char *const refusals[WSK_REFUSED_COUNT] = {
    [WSK_REFUSED_BAD_REQUEST] = "bad_request", [WSK_REFUSED_VERSION] = "version",
    [WSK_REFUSED_HEADER_SIZE] = "header_size", [WSK_REFUSED_HTTP_OTHER] = "http_other",
    [WSK_REFUSED_TIMEOUT] = "timeout",         [WSK_REFUSED_TLS] = "tls",
    [WSK_REFUSED_TLS_CERT] = "tls_cert",       [WSK_REFUSED_UNAUTHORIZED] = "unauthorized",
    [WSK_REFUSED_FORBIDDEN] = "forbidden",     [WSK_REFUSED_LIMIT] = "limit",
    [WSK_REFUSED_HANDLER] = "handler",
};

/* Close codes 1000-1015 by number (those that were seen, and 1000 always), then "other". */
static void close_codes(struct out *o, const char *name, const char *help, const uint64_t *codes)
{
    family(o, name, "counter", help);
    for (unsigned i = 0; i < WSK_STATS_CLOSE_CODES - 1; i++)
        if (codes[i] || i == 0)
            put(o, "%s{code=\"%u\"} %llu\n", name, 1000 + i, (unsigned long long)codes[i]);
    put(o, "%s{code=\"other\"} %llu\n", name, (unsigned long long)codes[WSK_STATS_CLOSE_CODES - 1]);
}

/* A cumulative histogram: buckets[0..n) at most le[0..n), buckets[n] the rest. */
static void histogram(struct out *o, const char *name, const char *help, const double *le,
                      const uint64_t *buckets, size_t n, double sum)
{
    uint64_t acc = 0;
    family(o, name, "histogram", help);
    for (size_t i = 0; i < n; i++) {
        acc += buckets[i];
        put(o, "%s_bucket{le=\"%.10g\"} %llu\n", name, le[i], (unsigned long long)acc);
    }
    acc += buckets[n];
    put(o, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)acc);
    put(o, "%s_sum %.17g\n%s_count %llu\n", name, sum, name, (unsigned long long)acc);
}

/* Received sizes (64 * 4^i bytes) and handshake durations (seconds). */
static void histograms(struct out *o, const wsk_stats *st)
{
    static const uint32_t ms[WSK_STATS_HANDSHAKE_BUCKETS] = WSK_STATS_HANDSHAKE_MS;
    double le[WSK_STATS_SIZE_BUCKETS + WSK_STATS_HANDSHAKE_BUCKETS];
    for (unsigned i = 0; i < WSK_STATS_HANDSHAKE_BUCKETS; i++) le[i] = ms[i] / 1e3;
    histogram(o, "wsk_handshake_duration_seconds",
              "Time from accept to the 101 response (TLS included).", le, st->handshake_buckets,
              WSK_STATS_HANDSHAKE_BUCKETS, st->handshake_us / 1e6);
    for (unsigned i = 0; i < WSK_STATS_SIZE_BUCKETS; i++) le[i] = (double)(64ull << (2 * i));
    histogram(o, "wsk_message_received_size_bytes",
              "Sizes of the messages received (payload bytes).", le, st->size_buckets,
              WSK_STATS_SIZE_BUCKETS, (double)(st->bytes_in[0] + st->bytes_in[1]));
}

static void bridge(struct out *o, const wsk_stats *st)
{
    single(o, "wsk_bridge_links", "gauge", "Engine connections of the bridge.", st->bridge_links);
    single(o, "wsk_bridge_links_up", "gauge", "Engine connections up now.", st->bridge_links_up);
    single(o, "wsk_bridge_forwarded_total", "counter", "Publishes handed to the engine.",
           st->bridge_forwarded);
    single(o, "wsk_bridge_failed_total", "counter",
           "Publishes not forwarded: engine down or its queue full.", st->bridge_failed);
    single(o, "wsk_bridge_received_total", "counter", "Messages from other nodes delivered here.",
           st->bridge_received);
    single(o, "wsk_bridge_outages_total", "counter",
           "Times an engine connection was lost or could not be made.", st->bridge_outages);
    single(o, "wsk_bridge_echoes_total", "counter",
           "This node's own messages back from the engine, dropped.", st->bridge_echoes);
    single(o, "wsk_bridge_foreign_total", "counter",
           "Messages on the bridge's channels without its envelope, dropped.", st->bridge_foreign);
    single(o, "wsk_bridge_copies_total", "counter",
           "Second copies of a message (its topic subscribed by name and by patterns), dropped.",
           st->bridge_copies);
    single(o, "wsk_bridge_remote_total", "counter",
           "Other nodes' subscriptions the forwarded publishes reached, as the engine counts.",
           st->bridge_remote);
}

long wsk_stats_format(const wsk_stats *st, char *buf, size_t cap)
{
    if (!st || st->size != sizeof *st || (!buf && cap)) return WSK_ERR_INVAL;
    struct out o = {buf, cap, 0};
    if (cap) buf[0] = 0;
    single(&o, "wsk_connections", "gauge", "Connections in any phase (HTTP, open, closing).",
           st->sockets);
    single(&o, "wsk_connections_open", "gauge", "Open WebSocket connections.", st->open);
    single(&o, "wsk_connections_accepted_total", "counter", "TCP connections accepted.",
           st->accepted);
    single(&o, "wsk_connections_upgraded_total", "counter", "WebSocket handshakes completed.",
           st->upgraded);
    labelled(&o, "wsk_connections_refused_total", "counter",
             "Connections that did not become WebSockets, by reason.", "reason", refusals,
             st->refused, WSK_REFUSED_COUNT);
    single(&o, "wsk_accept_limit_pauses_total", "counter",
           "Times accepting stopped with max_connections open: new connections then wait in the "
           "listen backlog, unanswered, instead of being refused.",
           st->accept_limit_pauses);
    single(&o, "wsk_accept_paused", "gauge",
           "1 while the server accepts no connection (at max_connections, or out of file "
           "descriptors).",
           st->accept_paused);
    single(&o, "wsk_accept_handoffs_failed_total", "counter",
           "Connections accepted for another thread (wsserve --threads, --accept one) and "
           "closed because the hand-off failed.",
           st->handoffs_failed);
    uint64_t tls[2] = {st->tls_handshakes - st->tls_resumed, st->tls_resumed};
    labelled(&o, "wsk_tls_handshakes_total", "counter", "TLS handshakes completed.", "kind",
             tls_kinds, tls, 2);
    labelled(&o, "wsk_messages_received_total", "counter", "Messages received, by type.", "type",
             types, st->messages_in, 2);
    labelled(&o, "wsk_received_bytes_total", "counter",
             "Payload bytes of the messages received (after inflating), by type.", "type", types,
             st->bytes_in, 2);
    labelled(&o, "wsk_messages_sent_total", "counter",
             "Messages sent (a publish counts once per receiving socket), by type.", "type", types,
             st->messages_out, 2);
    labelled(&o, "wsk_sent_bytes_total", "counter",
             "Payload bytes of the messages sent (before compressing), by type.", "type", types,
             st->bytes_out, 2);
    histograms(&o, st);
    labelled(&o, "wsk_control_frames_received_total", "counter", "Control frames received.", "type",
             controls, st->control_in, 3);
    labelled(&o, "wsk_control_frames_sent_total", "counter", "Control frames sent.", "type",
             controls, st->control_out, 3);
    single(&o, "wsk_inflate_input_bytes_total", "counter", "Compressed payload bytes received.",
           st->inflate[0]);
    single(&o, "wsk_inflate_output_bytes_total", "counter",
           "What the compressed payloads received inflated to.", st->inflate[1]);
    single(&o, "wsk_deflate_input_bytes_total", "counter",
           "Payload bytes of the messages sent compressed.", st->deflate[0]);
    single(&o, "wsk_deflate_output_bytes_total", "counter", "What they were compressed to.",
           st->deflate[1]);
    close_codes(&o, "wsk_close_codes_sent_total", "Close frames sent, by code.", st->close_sent);
    close_codes(&o, "wsk_close_codes_received_total", "Close frames received, by code.",
                st->close_received);
    single(&o, "wsk_backpressure_total", "counter",
           "Messages queued behind data the peer had not read yet.", st->backpressure);
    single(&o, "wsk_dropped_messages_total", "counter",
           "Messages dropped at the backpressure limit.", st->dropped);
    single(&o, "wsk_slow_consumer_closes_total", "counter",
           "Sockets closed with 1008 at the backpressure limit.", st->slow_closes);
    single(&o, "wsk_send_queue_bytes", "gauge", "Bytes waiting in the send queues.",
           st->queued_bytes);
    single(&o, "wsk_topics", "gauge", "Topics with at least one subscriber.", st->topics);
    single(&o, "wsk_subscriptions", "gauge", "Subscriptions (socket, topic).", st->subscriptions);
    single(&o, "wsk_publishes_total", "counter", "Publishes.", st->publishes);
    single(&o, "wsk_deliveries_total", "counter", "Sockets the publishes were queued for.",
           st->deliveries);
    if (st->bridged) bridge(&o, st);
    return o.len > (size_t)LONG_MAX ? WSK_ERR_NOMEM : (long)o.len;
}
