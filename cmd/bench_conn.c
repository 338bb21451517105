/* wsbench connections: connect, the opening handshake, and the library's data path for the rest.
 * See bench_engine.h.
 *
 * Each worker thread has a wsk_loop on its libev loop and a wsk_ctx whose hooks (wsk_conn_hooks,
 * lib/internal.h) hand every read to this file.  A connection is a slot (wb_conn: its id, the
 * scenario's state, the data stream) and, from the TCP connect to its end, a library socket
 * (c->ws) that does what it does for wsserve: reads into the loop's buffer, TLS (io_tls.c),
 * frames to whole messages (msg_assemble.c, inflated under permessage-deflate), pongs and the
 * closing handshake, the send queue with one writev per socket per loop turn (send_flush.c).
 *
 * What stays here is what a load generator does its own way:
 *  - the request and the response are built and checked with msg_handshake.c, per slot (chat
 *    names, pubsub topics), without client.c's DNS, redirects and proxies;
 *  - what is sent comes from prebuilt, already masked frames (bench_scenario.c): the scenario
 *    moves frames into the connection's data stream, and the fill hook copies the stream into
 *    the send queue just before the socket is written, and only into an empty queue, so a server
 *    that stops reading finds at most one stream's worth queued;
 *  - one clock read per read(2) (the receive hook), not per message. */
#include "bench_engine.h"

#include "internal.h"
#include "io_tls.h"
#include "mask.h"
#include "msg_handshake.h"
#include "pmd_conn.h"
#include "send_frame.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* permessage-deflate as wsbench asks for it: its own messages compressed each on its own (the
 * pool holds them compressed once), the server's inflated with a window of their own. */
#define WB_COMPRESS   WSK_COMPRESS_SHARED
#define WB_DECOMPRESS WSK_COMPRESS_DEDICATED

size_t wb_frame_build(uint8_t *out, unsigned op, unsigned rsv, const uint8_t *payload, size_t len,
                      const uint8_t key[4])
{
    size_t h = wsk_frame_header(out, 1, rsv, op, len, key);
    wsk_mask_copy(out + h, payload, len, key, 0);
    return h + len;
}

int wb_pmd_offer(char *out, size_t cap)
{
    wsk_pmd_config cfg = {.compress = WB_COMPRESS, .decompress = WB_DECOMPRESS};
    return wsk_pmd_client_offer(&cfg, out, cap);
}

/* The slot of a library socket; NULL once the thread let go of it. */
static wb_conn *conn_of(const struct wsk_ws *ws)
{
    return ws->user;
}

/* ----- ending ------------------------------------------------------------------------------- */

/* The slot's socket is gone (or never came): counts, and the scenario's ended hook, which may
 * restart the slot. */
static void slot_free(wb_thread *t, wb_conn *c)
{
    wb_state *s = t->s;
    int was_open = c->state >= WB_C_OPEN;
    if (!was_open) {
        t->connecting--;
        wb_atomic_inc(&s->n_settled);
        if (!(c->flags & WB_F_UNOPENED)) wb_add(&t->st.unopened, 1);
    }
    c->ws = NULL;
    c->io.fd = -1;
    c->state = WB_C_IDLE;
    c->flags &= WB_F_DONE;
    c->sunsent = c->owed = 0;
    t->live--;
    if (was_open) wb_add(&t->st.ended, 1);
    if (was_open && wb_phase(s) == WB_P_RUN && !s->sc->start_on_run) {
        wb_atomic_inc(&s->n_ended);
        wb_wake_main(s);
    }
    if (s->sc->ended) s->sc->ended(t, c);
    if (t->stopping && !t->live) ev_break(t->ev, EVBREAK_ONE);
}

void wb_conn_end(wb_thread *t, wb_conn *c)
{
    if (c->state == WB_C_IDLE) return;
    /* A connect that fails is counted now, with its error, not when the library lets go of the
     * socket: a report read in between must see both. */
    if (c->state < WB_C_OPEN && !(c->flags & WB_F_UNOPENED)) {
        c->flags |= WB_F_UNOPENED;
        wb_add(&t->st.unopened, 1);
    }
    if (c->ws) {
        c->flags |= WB_F_ENDING;                       /* the close handler has nothing to count */
        wsk_conn_end(c->ws, WSK_CLOSE_ABNORMAL, NULL); /* the gone hook frees the slot */
        return;
    }
    ev_io_stop(t->ev, &c->io);
    close(c->io.fd);
    slot_free(t, c);
}

int wb_conn_fail(wb_thread *t, wb_conn *c, int e, const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    wb_error(t, e, "connection %u: %s", c->id, msg);
    wb_conn_end(t, c);
    return -1;
}

/* ----- bytes out ---------------------------------------------------------------------------- */

/* sbase[off, off + n) to the send queue: large frames of the thread's pools by reference (no
 * copy of a 16 MiB message per send), the rest copied. */
static int stream_piece(wb_thread *t, wb_conn *c, size_t off, size_t n)
{
    wsk_block *b = t->pool && c->sbase == t->pool->data     ? t->pool
                   : t->zpool && c->sbase == t->zpool->data ? t->zpool
                                                            : NULL;
    if (b && n >= WSK_DIRECT_MIN) return wsk_queue_share(c->ws, b, off, n);
    return wsk_queue_write(c->ws, c->sbase + off, n);
}

/* Queues the stream's unsent frames (they wrap at ssize). */
static int stream_queue(wb_thread *t, wb_conn *c)
{
    size_t first = c->ssize - c->soff;
    if (first > c->sunsent) first = (size_t)c->sunsent;
    int r = stream_piece(t, c, c->soff, first);
    if (!r && first < c->sunsent) r = stream_piece(t, c, 0, (size_t)c->sunsent - first);
    if (r < 0) return wb_conn_fail(t, c, WB_E_RESET, "out of memory for the send queue");
    c->soff = (uint32_t)((c->soff + c->sunsent) % c->ssize);
    c->sunsent = 0;
    return 0;
}

void wb_conn_dirty(wb_thread *t, wb_conn *c)
{
    if (c->ws) wsk_loop_schedule(t->loop, c->ws);
}

/* The library is about to write ws: what the scenario owes joins the stream, the stream joins
 * the queue.  A queue that still holds bytes (the kernel was full) is left alone; the drain
 * handler comes back once it is written. */
static void on_fill(struct wsk_ws *ws)
{
    wb_conn *c = conn_of(ws);
    if (!c || c->state != WB_C_OPEN || (c->flags & WB_F_CLOSE_SENT)) return;
    wb_thread *t = c->t;
    if (ws->q.bytes) {
        if (c->owed || c->sunsent) ws->flags |= WSK_F_BACKPRESSURE;
        return;
    }
    if (c->owed && t->s->sc->fill) t->s->sc->fill(t, c);
    if (!c->sunsent || stream_queue(t, c) < 0) return;
    /* More is owed than the stream holds (large messages): again in this turn, once this write
     * is out; the kernel's EAGAIN, or the debt running out, ends it. */
    if (c->owed) ws->flags |= WSK_F_BACKPRESSURE;
}

static void on_drain(wsk_ws *ws)
{
    wb_conn *c = conn_of(ws);
    if (c && (c->owed || c->sunsent)) wsk_loop_schedule(c->t->loop, ws);
}

void wb_conn_close(wb_thread *t, wb_conn *c)
{
    if (c->state < WB_C_OPEN || (c->flags & WB_F_CLOSE_SENT) || !c->ws) return;
    /* The close frame follows what the stream still holds. */
    if (c->sunsent && stream_queue(t, c) < 0) return;
    c->flags |= WB_F_CLOSE_SENT;
    c->owed = 0;
    wsk_send_close(c->ws, WSK_CLOSE_NORMAL, NULL, 0);
    if (c->state == WB_C_OPEN) c->state = WB_C_CLOSING;
}

/* ----- messages in ---------------------------------------------------------------------------- */

static void handshake_bytes(wb_thread *t, wb_conn *c, uint8_t *p, size_t n);

/* Every read: the handshake's response head, or frames for the library; the clock is read once
 * here for all the messages of the read. */
static void on_receive(struct wsk_ws *ws, uint8_t *p, size_t n)
{
    wb_conn *c = conn_of(ws);
    if (!c) return;
    wb_thread *t = c->t;
    t->now = wb_now();
    if (ws->state == WSK_ST_HTTP)
        handshake_bytes(t, c, p, n);
    else if (ws->state == WSK_ST_OPEN || ws->state == WSK_ST_CLOSING)
        wsk_msg_receive(ws, p, n);
    wb_counts_flush(t);
}

/* A read into the rest of a large frame, which the library hands on itself (receive follows with
 * what was read behind it): the clock for the message it may complete. */
static void on_direct(struct wsk_ws *ws)
{
    wb_conn *c = conn_of(ws);
    if (c) c->t->now = wb_now();
}

static void on_message(wsk_ws *ws, const void *data, size_t len, wsk_opcode op)
{
    wb_conn *c = conn_of(ws);
    if (!c) return;
    wb_thread *t = c->t;
    t->rx_msgs++;
    t->rx_bytes += len;
    /* --verify: an echo reply must be the message sent. */
    if (t->verify && (len != t->s->payload_len || memcmp(data, t->s->payload, len))) {
        wb_conn_fail(t, c, WB_E_MISMATCH, "reply differs from the message");
        return;
    }
    if (c->flags & WB_F_HOOK) t->s->sc->message(t, c, op, len, data, len < WB_HEAD ? len : WB_HEAD);
}

/* The server broke the protocol (or its compressed data does not inflate): the library sends
 * the matching close code and ends the socket. */
static void on_error(wsk_ws *ws, int err, const char *msg)
{
    wb_conn *c = conn_of(ws);
    if (!c) return;
    c->flags |= WB_F_FAILED;
    wb_error(c->t, err == WSK_ERR_DEFLATE ? WB_E_DEFLATE : WB_E_PROTOCOL, "connection %u: %s",
             c->id, msg);
}

/* The closing handshake completed (the library echoed the server's close frame), or the socket
 * ended without one (1006). */
static void on_close(wsk_ws *ws, unsigned code, const char *reason, size_t len)
{
    wb_conn *c = conn_of(ws);
    if (!c || (c->flags & (WB_F_ENDING | WB_F_FAILED))) return;
    wb_thread *t = c->t;
    const wb_state *s = t->s;
    if (code == WSK_CLOSE_ABNORMAL) {
        if (!(c->flags & WB_F_CLOSE_SENT) && !t->stopping)
            wb_error(t, WB_E_RESET, "connection %u: %.*s", c->id, (int)len, reason);
        return;
    }
    if (!(c->flags & WB_F_CLOSE_SENT)) {
        /* The server closed first: counted when the run did not ask for it. */
        c->flags |= WB_F_CLOSE_SENT;
        c->owed = 0;
        if (wb_phase(s) != WB_P_STOP && !s->sc->start_on_run)
            wb_error(t, WB_E_CLOSED, "connection %u: server closed it with %u%s%.*s", c->id, code,
                     len ? " " : "", (int)len, reason);
    }
    /* The server closes TCP first (RFC 6455 7.1.1), so the TIME_WAIT state stays on its side
     * and a client opening thousands of connections does not run out of ports. */
    c->state = WB_C_DRAIN;
    c->t_drain = t->now;
}

/* It failed before it opened: TLS (the library's words: "certificate verify failed: unknown
 * issuer ..."), or the server closed during the handshake. */
static void on_failed(struct wsk_ws *ws, int err, const char *msg)
{
    wb_conn *c = conn_of(ws);
    if (!c) return;
    c->flags |= WB_F_FAILED;
    wb_error(c->t,
             err == WSK_ERR_CERT || err == WSK_ERR_TLS ? WB_E_TLS
             : err == WSK_ERR_TIMEOUT                  ? WB_E_TIMEOUT
                                                       : WB_E_HANDSHAKE,
             "connection %u: %s", c->id, msg);
}

static void on_gone(struct wsk_ws *ws)
{
    wb_conn *c = conn_of(ws);
    if (c) slot_free(c->t, c);
}

/* The library opened the socket (handshake_bytes): the scenario's open, then the next queued
 * connections may start. */
static void on_open(wsk_ws *ws)
{
    wb_conn *c = conn_of(ws);
    wb_thread *t = c->t;
    if (t->s->sc->open) t->s->sc->open(t, c);
    if (c->state == WB_C_OPEN) wb_conns_start(t);
}

static const wsk_conn_hooks hooks = {
    .receive = on_receive,
    .direct = on_direct,
    .fill = on_fill,
    .failed = on_failed,
    .gone = on_gone,
};

static const wsk_handlers handlers = {
    .open = on_open,
    .message = on_message,
    .close = on_close,
    .drain = on_drain,
    .error = on_error,
};

/* ----- the handshake ------------------------------------------------------------------------ */

static int send_request(wb_thread *t, wb_conn *c)
{
    wb_state *s = t->s;
    const wb_opts *o = s->o;
    const wb_dest *d = WB_DEST(s, c);
    if (wsk_handshake_client_key(c->key) < 0)
        return wb_conn_fail(t, c, WB_E_HANDSHAKE, "no random key");
    char path[1400], req[WB_REQUEST_MAX];
    if (s->sc->path)
        s->sc->path(s, c, path, sizeof path);
    else
        snprintf(path, sizeof path, "%s", d->path);
    int n = wsk_handshake_client_request(req, sizeof req, d->host, d->port, d->secure, path, c->key,
                                         o->protos, o->nprotos, o->origin,
                                         d->has_userinfo ? d->userinfo : NULL,
                                         *s->offer ? s->offer : NULL, o->headers, o->nheaders);
    if (n < 0) return wb_conn_fail(t, c, WB_E_HANDSHAKE, "cannot build the request");
    if (wsk_queue_write(c->ws, req, (size_t)n) < 0)
        return wb_conn_fail(t, c, WB_E_HANDSHAKE, "out of memory");
    wsk_loop_schedule(t->loop, c->ws);
    return 0;
}

/* The response passed: counts, then the library's open (the open handler, then the frames that
 * came with the head: rest, then more). */
static void opened(wb_thread *t, wb_conn *c, uint8_t *rest, size_t n, uint8_t *more, size_t m)
{
    wb_state *s = t->s;
    struct wsk_ws *ws = c->ws;
    c->rsv = (ws->flags & WSK_F_PMD) ? WSK_RSV1 : 0;
    if (c->rsv) wb_add(&t->st.deflate, 1);
    if (wsk_tls_resumed(ws)) wb_add(&t->st.tls_resumed, 1);
    c->state = WB_C_OPEN;
    t->connecting--;
    wb_add(&t->st.opened, 1);
    wb_hist_record(&t->conn, t->now - c->t0);
    wb_atomic_inc(&s->n_open);
    if (wb_atomic_inc(&s->n_settled) == s->total) wb_wake_main(s);
    wsk_conn_open(ws, rest, n);
    if (m && c->ws == ws && (ws->state == WSK_ST_OPEN || ws->state == WSK_ST_CLOSING))
        wsk_msg_receive(ws, more, m);
}

/* The response head: parsed where it lies when one read holds it, else gathered in the
 * socket's cold buffer (at most WB_HEAD_MAX bytes). */
static void handshake_bytes(wb_thread *t, wb_conn *c, uint8_t *p, size_t n)
{
    const wb_state *s = t->s;
    wsk_cold *k = wsk_conn_cold(c->ws);
    if (!k) {
        wb_conn_fail(t, c, WB_E_HANDSHAKE, "out of memory");
        return;
    }
    uint8_t *head = p;
    size_t len = n, took = n;
    if (k->head.len) {
        size_t room = k->head.max - k->head.len;
        took = n < room ? n : room;
        if (wsk_dbuf_append(&k->head, p, took) < 0) {
            wb_conn_fail(t, c, WB_E_HANDSHAKE, "out of memory");
            return;
        }
        head = k->head.p;
        len = k->head.len;
    }
    wsk_http_response res;
    int r = wsk_http_parse_response((const char *)head, len, &k->scanned, &res);
    if (r < 0) {
        wb_conn_fail(t, c, WB_E_HANDSHAKE, "malformed HTTP response");
        return;
    }
    if (r == 0) {
        if (len >= k->head.max)
            wb_conn_fail(t, c, WB_E_HANDSHAKE, "response head over %zu bytes", k->head.max);
        else if (head == p && wsk_dbuf_append(&k->head, p, n) < 0)
            wb_conn_fail(t, c, WB_E_HANDSHAKE, "out of memory");
        return;
    }
    const char *why = NULL;
    if (wsk_handshake_client_verify(&res, c->key, s->o->protos, s->o->nprotos, *s->offer != 0, NULL,
                                    NULL, &why) < 0) {
        if (res.status != 101)
            wb_conn_fail(t, c, WB_E_HANDSHAKE, "server answered %d %.*s", res.status,
                         (int)res.reason_len, res.reason);
        else
            wb_conn_fail(t, c, WB_E_HANDSHAKE, "%s", why ? why : "invalid handshake");
        return;
    }
    if (*s->offer && wsk_pmd_conn_accept(c->ws, &res) < 0) {
        wb_conn_fail(t, c, WB_E_HANDSHAKE, "invalid Sec-WebSocket-Extensions answer");
        return;
    }
    opened(t, c, head + r, len - (size_t)r, p + took, n - took);
}

/* ----- connect ------------------------------------------------------------------------------ */

/* --tls-resume: the slot offers the session of its previous connection (a failure to keep one
 * only costs a full handshake). */
static void resume_tls(const wb_dest *d, wb_conn *c)
{
    char server[300];
    if (!c->tls) c->tls = wsk_tls_session_new();
    snprintf(server, sizeof server, "%s:%u", d->host, d->port);
    wsk_tls_session_use(c->ws, c->tls, server);
}

static void connected(wb_thread *t, wb_conn *c)
{
    const wb_dest *d = WB_DEST(t->s, c);
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->io.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
        wb_conn_fail(t, c, WB_E_CONNECT, "connect to %s:%u: %s", d->host, d->port, strerror(err));
        return;
    }
    ev_io_stop(t->ev, &c->io);
    c->ws = wsk_conn_new(t->ctx, c->io.fd);
    if (!c->ws) {
        wb_conn_fail(t, c, WB_E_CONNECT, "out of memory");
        return;
    }
    c->ws->user = c;
    c->state = WB_C_HANDSHAKE;
    if (d->secure && wsk_tls_connect(c->ws, d->host) < 0) {
        wb_conn_fail(t, c, WB_E_TLS, "cannot create a TLS session");
        return;
    }
    if (d->secure && t->s->o->tls_resume) resume_tls(d, c);
    send_request(t, c);
}

static void on_connect(struct ev_loop *ev, ev_io *w, int revents)
{
    (void)ev;
    (void)revents;
    wb_conn *c = (wb_conn *)w;
    c->t->now = wb_now();
    connected(c->t, c);
}

/* The source address of connection c into a, or NULL for any: spreading connections over
 * 127.0.0.x lifts the limit of one ephemeral port range per destination (about 28,000 on
 * Linux). */
static const struct sockaddr *source_of(const wb_state *s, const wb_conn *c, struct sockaddr_in *a)
{
    if (s->nsrc < 2) return NULL;
    *a = (struct sockaddr_in){.sin_family = AF_INET};
    a->sin_addr.s_addr = htonl(0x7F000001u + c->id % s->nsrc);
    return (const struct sockaddr *)a;
}

void wb_conn_start(wb_thread *t, wb_conn *c)
{
    wb_state *s = t->s;
    const wb_dest *d = WB_DEST(s, c);
    c->t0 = wb_now();
    c->flags &= WB_F_DONE;
    struct sockaddr_in a;
    const struct sockaddr *from = source_of(s, c, &a);
    int err, fd = wsk_tcp_connect((const struct sockaddr *)&d->addr, d->addrlen, from,
                                  from ? sizeof a : 0, &err);
    if (fd < 0) {
        char src[32] = "";
        if (from) snprintf(src, sizeof src, " from 127.0.0.%u", 1 + c->id % s->nsrc);
        wb_error(t, WB_E_CONNECT, "connection %u: connect to %s:%u%s: %s", c->id, d->host, d->port,
                 src, strerror(err));
        wb_atomic_inc(&s->n_settled);
        return;
    }
    ev_io_init(&c->io, on_connect, fd, EV_WRITE);
    c->state = WB_C_CONNECTING;
    t->connecting++;
    t->live++;
    ev_io_start(t->ev, &c->io);
}

void wb_conns_start(wb_thread *t)
{
    const wb_state *s = t->s;
    /* Scenarios that open connections during the run do it from their turn hook. */
    if (s->sc->start_on_run) return;
    unsigned limit = s->o->connect_concurrency ? s->o->connect_concurrency : 256;
    while (t->next < t->nconns && t->connecting < limit && !t->stopping)
        wb_conn_start(t, &t->conns[t->next++]);
}

/* ----- a thread's loop and sockets ------------------------------------------------------------ */

/* The library's log lines: the last one is kept, not printed (the run's failures come with their
 * reasons, a TLS configuration error's included). */
static void keep_log(void *arg, int level, const char *msg)
{
    wb_thread *t = arg;
    (void)level;
    snprintf(t->log, sizeof t->log, "%s", msg);
}

/* A copy of pool[0..size) in a send block of the thread's loop: larger than the loop's cached
 * blocks, so that the last reference frees it (wsk_block_unref). */
static wsk_block *pool_block(wb_thread *t, const uint8_t *pool, size_t size)
{
    size_t cap = size > WSK_BLOCK_CACHED ? size : WSK_BLOCK_CACHED + 1;
    wsk_block *b = wsk_block_new(t->loop, cap);
    if (!b) return NULL;
    memcpy(b->data, pool, size);
    b->len = b->cap; /* full: no queue appends to it */
    return b;
}

int wb_thread_conns_init(wb_thread *t, char *why, size_t cap)
{
    const wb_state *s = t->s;
    const wb_opts *o = s->o;
    t->loop = wsk_loop_new(t->ev);
    t->ctx = calloc(1, sizeof *t->ctx);
    if (!t->loop || !t->ctx) {
        snprintf(why, cap, "out of memory");
        return -1;
    }
    if ((s->pool && !(t->pool = pool_block(t, s->pool, s->pool_size))) ||
        (s->zpool && !(t->zpool = pool_block(t, s->zpool, s->zpool_size)))) {
        snprintf(why, cap, "out of memory for the message pool");
        return -1;
    }
    wsk_loop_set_log(t->loop, WSK_LOG_ERROR, keep_log, t);
    t->verify = o->verify && (s->sc == &wb_scen_echo || s->sc == &wb_scen_connect);
    wsk_ctx *x = t->ctx;
    x->loop = t->loop;
    x->role = WSK_ROLE_CLIENT;
    x->h = handlers;
    x->hooks = &hooks;
    /* The limits the library's data path reads.  Deadlines are bench_worker.c's own: no sweep
     * runs on this ctx, so its timeouts stay 0. */
    wsk_limits *l = &x->lim;
    l->max_header = WB_HEAD_MAX;
    /* Replies as large as the messages sent, and room for what a server may add. */
    l->max_payload = (o->size > (1u << 26) ? o->size : (1u << 26)) + 1024;
    l->backpressure_limit = 1u << 20;
    l->compress = WB_COMPRESS;
    l->decompress = WB_DECOMPRESS;
    l->compress_threshold = 0;
    if (!s->secure) return 0;
    wsk_client_opts co;
    wsk_client_opts_init(&co);
    cli_tls_client_opts(&o->tls, &co);
    return wsk_tls_client_config(x, &co, why, cap) < 0 ? -1 : 0;
}

void wb_thread_conns_free(wb_thread *t)
{
    for (unsigned j = 0; j < t->nconns; j++) {
        wb_conn *c = &t->conns[j];
        if (c->ws) {
            c->ws->user = NULL; /* no handler may count this end */
            wsk_conn_end(c->ws, WSK_CLOSE_ABNORMAL, NULL);
            c->ws = NULL;
        } else if (c->state == WB_C_CONNECTING) {
            close(c->io.fd);
        }
    }
    /* The queues of the ended sockets hold the rest of the references to the pools. */
    if (t->pool) wsk_block_unref(t->loop, t->pool);
    if (t->zpool) wsk_block_unref(t->loop, t->zpool);
    if (t->loop) wsk_loop_free(t->loop); /* frees the ended sockets */
    if (t->ctx) wsk_tls_ctx_free(t->ctx);
    free(t->ctx);
}
