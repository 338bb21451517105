/* The server: listening sockets, accept, the HTTP phase of a connection (request head, the
 * upgrade handshake or a plain HTTP reply), deadlines and graceful shutdown. */
#include "bridge.h"
#include "group.h"
#include "http_exchange.h"
#include "io_tls.h"
#include "msg_handshake.h"
#include "pmd.h"
#include "pmd_conn.h"
#include "pubsub.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_LISTEN 8

struct wsk_server {
    wsk_ctx ctx;       /* first (tests/fuzz/fuzz_server.c reaches it by a cast) */
    wsk_server_opts o; /* as given; ctx.lim holds the limits the data path reads */
    void *user;
    ev_io listen[MAX_LISTEN];
    int nlisten;
    int paused;      /* listeners stopped: out of descriptors or at max_connections */
    ev_timer tick;   /* deadlines, once a second */
    ev_timer resume; /* retry accepting after EMFILE */
    ev_timer grace;  /* shutdown deadline */
    int shutting_down;
    void (*done)(wsk_server *srv, size_t dropped);
};

void wsk_server_opts_init(wsk_server_opts *o)
{
    memset(o, 0, sizeof *o);
    o->max_payload = 16u << 20;
    o->idle_timeout = 120;
    o->send_pings = 1;
    o->backpressure_limit = 1u << 20;
    o->max_header = 8 * 1024;
    o->max_body = 1u << 20;
    o->handshake_timeout = 10;
    o->close_timeout = 4;
    o->compress_threshold = WSK_COMPRESS_THRESHOLD;
    o->compress_level = WSK_PMD_LEVEL_DEFAULT;
}

static void listeners_set(wsk_server *srv, int on)
{
    if (srv->paused == !on) return;
    srv->paused = !on;
    srv->ctx.stats.accept_paused = (uint64_t)srv->paused;
    for (int i = 0; i < srv->nlisten; i++) {
        if (on)
            ev_io_start(srv->ctx.loop->ev, &srv->listen[i]);
        else
            ev_io_stop(srv->ctx.loop->ev, &srv->listen[i]);
    }
}

static int full(const wsk_server *srv)
{
    return srv->o.max_connections && srv->ctx.nconns >= srv->o.max_connections;
}

/* Whether the listeners must wait: the server is full, or, when it accepts for its group
 * (group_accept.c), every member is. */
static int at_limit(const wsk_server *srv)
{
    return wsk_group_acceptor(srv->ctx.group) ? !wsk_group_room(srv->ctx.group) : full(srv);
}

/* The connection of fd on srv's loop, or NULL with fd closed and *err set. */
static struct wsk_ws *take(wsk_server *srv, int fd, int *err)
{
    struct wsk_ws *c = NULL;
    *err = srv->shutting_down || full(srv) ? WSK_ERR_STATE : 0;
    if (!*err && !(c = wsk_conn_new(&srv->ctx, fd))) *err = WSK_ERR_NOMEM;
    if (!c) {
        close(fd);
        return NULL;
    }
    if (srv->ctx.group) wsk_group_member_state(srv->ctx.group, full(srv), 0);
    return c;
}

int wsk_server_adopt(wsk_server *srv, int fd, const char *peer)
{
    int err;
    struct wsk_ws *c = take(srv, fd, &err);
    if (!c) return err;
    srv->ctx.stats.accepted++;
    if (srv->ctx.tls && wsk_tls_accept(c, peer) < 0) wsk_conn_end(c, WSK_CLOSE_ABNORMAL, NULL);
    return 0;
}

int wsk_server_adopt_request(wsk_server *srv, int fd, const uint8_t *p, size_t n, uint32_t born)
{
    int err;
    struct wsk_ws *c = take(srv, fd, &err);
    if (!c) return err;
    c->handed = 1;
    c->born = born;
    wsk_conn_feed(c, p, n);
    return 0;
}

/* The acceptor of a group pauses for the whole group: its figures, not its own. */
static void log_at_limit(wsk_server *srv)
{
    size_t conns, limit;
    unsigned n;
    if (!wsk_group_acceptor(srv->ctx.group)) {
        wsk_log(srv->ctx.loop, WSK_LOG_WARN, "%zu connections: at max_connections, pausing accept",
                srv->ctx.nconns);
        return;
    }
    n = wsk_group_census(srv->ctx.group, &conns, &limit);
    wsk_log(srv->ctx.loop, WSK_LOG_WARN,
            "%zu of %zu connections on %u threads: at max_connections, pausing accept", conns,
            limit, n);
}

/* Accepts until the backlog is empty (bounded per event).  Out of descriptors, libev would
 * report the listener readable forever and the loop would spin (ev.pod, "The special problem of
 * accept()ing when you can't"): stop listening instead and retry in a second, or as soon as a
 * connection closes.  The acceptor of a group hands most sockets to other members' loops
 * (group_accept.c); when every member is full it retries every second, as no other loop's
 * closing socket tells it. */
static void on_accept(struct ev_loop *ev, ev_io *w, int revents)
{
    wsk_server *srv = w->data;
    (void)ev;
    (void)revents;
    for (int i = 0; i < 256 && !srv->shutting_down; i++) {
        if (at_limit(srv)) {
            log_at_limit(srv);
            srv->ctx.stats.accept_limit_pauses++;
            listeners_set(srv, 0);
            if (wsk_group_acceptor(srv->ctx.group)) ev_timer_again(srv->ctx.loop->ev, &srv->resume);
            return;
        }
        int err;
        char peer[64];
        int acceptor = wsk_group_acceptor(srv->ctx.group);
        int fd = wsk_tcp_accept(w->fd, &err, srv->ctx.tls || acceptor ? peer : NULL, sizeof peer);
        if (fd < 0) {
            if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
                wsk_log(srv->ctx.loop, WSK_LOG_WARN, "accept: %s; pausing accept for 1s",
                        strerror(err));
                listeners_set(srv, 0);
                ev_timer_again(srv->ctx.loop->ev, &srv->resume);
            }
            return;
        }
        if (acceptor && wsk_group_handoff(srv->ctx.group, fd, peer)) continue;
        int r = wsk_server_adopt(srv, fd, peer);
        /* The acceptor's own turn, when every member filled up or shut down since the check. */
        if (r < 0 && acceptor) wsk_group_handoff_failed(srv->ctx.group, "no thread has room");
        if (r == WSK_ERR_NOMEM) return;
    }
}

static void on_resume(struct ev_loop *ev, ev_timer *w, int revents)
{
    wsk_server *srv = w->data;
    (void)ev;
    (void)revents;
    int waits = !srv->shutting_down && at_limit(srv);
    if (waits && wsk_group_acceptor(srv->ctx.group)) return; /* again in a second */
    ev_timer_stop(srv->ctx.loop->ev, w);
    if (!waits) listeners_set(srv, 1);
}

static void finish_shutdown(wsk_server *srv, size_t dropped)
{
    void (*done)(wsk_server *, size_t) = srv->done;
    ev_timer_stop(srv->ctx.loop->ev, &srv->grace);
    srv->done = NULL;
    if (done) done(srv, dropped);
}

void wsk_server_conn_gone(wsk_server *srv)
{
    if (srv->ctx.group) wsk_group_member_state(srv->ctx.group, full(srv), srv->shutting_down);
    if (srv->shutting_down) {
        if (srv->ctx.nconns == 0 && srv->done) {
            /* Report from the timer, not from inside whatever handler ended the socket. */
            ev_timer_stop(srv->ctx.loop->ev, &srv->grace);
            ev_timer_set(&srv->grace, 0, 0);
            ev_timer_start(srv->ctx.loop->ev, &srv->grace);
        }
    } else if (srv->paused && !at_limit(srv) && !ev_is_active(&srv->resume)) {
        listeners_set(srv, 1);
    }
}

static void on_tick(struct ev_loop *ev, ev_timer *w, int revents)
{
    wsk_server *srv = w->data;
    (void)ev;
    (void)revents;
    wsk_ctx_sweep(&srv->ctx);
}

static void on_grace(struct ev_loop *ev, ev_timer *w, int revents)
{
    wsk_server *srv = w->data;
    size_t dropped = 0;
    (void)ev;
    (void)revents;
    for (struct wsk_ws *c = srv->ctx.conns, *next; c; c = next) {
        next = c->next;
        if (c->q.bytes) dropped++;
        wsk_conn_end(c, WSK_CLOSE_ABNORMAL, "shutdown");
    }
    finish_shutdown(srv, dropped);
}

/* The limits the data path reads, from the server's options. */
void wsk_limits_server(wsk_limits *l, const wsk_server_opts *o)
{
    l->max_payload = o->max_payload;
    l->max_header = o->max_header;
    l->backpressure_limit = o->backpressure_limit;
    l->close_on_backpressure_limit = o->close_on_backpressure_limit;
    l->idle_timeout = o->idle_timeout;
    l->send_pings = o->send_pings;
    l->handshake_timeout = o->handshake_timeout ? o->handshake_timeout : 10;
    l->close_timeout = o->close_timeout ? o->close_timeout : 1;
    l->compress = o->compress;
    l->decompress = o->decompress;
    l->compress_threshold = o->compress_threshold;
    l->compress_level = o->compress_level;
}

wsk_server *wsk_server_new(wsk_loop *loop, const wsk_server_opts *opts, const wsk_handlers *h,
                           void *user)
{
    wsk_server *srv = calloc(1, sizeof *srv);
    if (!srv) return NULL;
    srv->ctx.loop = loop;
    srv->ctx.srv = srv;
    srv->ctx.role = WSK_ROLE_SERVER;
    if (opts)
        srv->o = *opts;
    else
        wsk_server_opts_init(&srv->o);
    if (h) srv->ctx.h = *h;
    srv->user = user;
    if (!wsk_pmd_mode_valid(srv->o.compress) || !wsk_pmd_mode_valid(srv->o.decompress) ||
        srv->o.compress_level < WSK_PMD_LEVEL_MIN || srv->o.compress_level > WSK_PMD_LEVEL_MAX) {
        wsk_log(loop, WSK_LOG_ERROR,
                "compress or decompress is not a wsk_compress_mode, or compress_level not 1..9");
        free(srv);
        return NULL;
    }
    if (srv->o.tls_cert && wsk_tls_server_config(&srv->ctx, &srv->o) < 0) {
        free(srv);
        return NULL;
    }
    wsk_limits_server(&srv->ctx.lim, &srv->o);
    ev_timer_init(&srv->tick, on_tick, 1, 1);
    srv->tick.data = srv;
    ev_timer_start(loop->ev, &srv->tick);
    ev_unref(loop->ev); /* deadlines alone do not keep the loop running */
    ev_init(&srv->resume, on_resume);
    srv->resume.repeat = 1;
    srv->resume.data = srv;
    ev_init(&srv->grace, on_grace);
    srv->grace.data = srv;
    return srv;
}

int wsk_server_listen(wsk_server *srv, const char *host, unsigned port)
{
    int fds[MAX_LISTEN];
    if (port > 65535) return WSK_ERR_INVAL;
    int n = wsk_tcp_listen(host, port, srv->o.reuse_port, fds, MAX_LISTEN - srv->nlisten);
    if (n < 0) return n;
    for (int i = 0; i < n; i++) {
        ev_io *w = &srv->listen[srv->nlisten++];
        ev_io_init(w, on_accept, fds[i], EV_READ);
        w->data = srv;
        if (!srv->paused) ev_io_start(srv->ctx.loop->ev, w);
    }
    return 0;
}

unsigned wsk_server_port(const wsk_server *srv)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (!srv->nlisten || getsockname(srv->listen[0].fd, (struct sockaddr *)&ss, &len) < 0) return 0;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

void *wsk_server_user(const wsk_server *srv)
{
    return srv->user;
}

wsk_loop *wsk_server_loop(const wsk_server *srv)
{
    return srv->ctx.loop;
}

size_t wsk_server_connections(const wsk_server *srv)
{
    return srv->ctx.nopen;
}

wsk_ctx *wsk_server_ctx(const wsk_server *srv)
{
    return (wsk_ctx *)&srv->ctx;
}

const wsk_server_opts *wsk_server_opts_of(const wsk_server *srv)
{
    return &srv->o;
}

static void stop_listening(wsk_server *srv)
{
    listeners_set(srv, 0);
    ev_timer_stop(srv->ctx.loop->ev, &srv->resume);
    for (int i = 0; i < srv->nlisten; i++) close(srv->listen[i].fd);
    srv->nlisten = 0;
}

int wsk_server_shutdown(wsk_server *srv, unsigned code, const char *reason, double grace,
                        void (*done)(wsk_server *srv, size_t dropped))
{
    size_t len = reason ? strlen(reason) : 0;
    if (wsk_close_check(code, reason, len) < 0 || !(grace >= 0)) return WSK_ERR_INVAL;
    if (srv->shutting_down) return WSK_ERR_STATE;
    srv->shutting_down = 1;
    srv->done = done;
    if (srv->ctx.group) wsk_group_member_state(srv->ctx.group, full(srv), 1);
    stop_listening(srv);
    for (struct wsk_ws *c = srv->ctx.conns, *next; c; c = next) {
        next = c->next;
        if (c->state == WSK_ST_OPEN)
            wsk_close(c, code, reason, len);
        else if (c->state == WSK_ST_HTTP)
            wsk_conn_end(c, WSK_CLOSE_ABNORMAL, NULL);
    }
    ev_timer_set(&srv->grace, srv->ctx.nconns ? grace : 0, 0);
    ev_timer_start(srv->ctx.loop->ev, &srv->grace);
    return 0;
}

void wsk_server_free(wsk_server *srv)
{
    if (!srv) return;
    wsk_loop *loop = srv->ctx.loop;
    srv->shutting_down = 1;
    srv->done = NULL;
    if (srv->ctx.group) wsk_group_member_state(srv->ctx.group, full(srv), 1);
    stop_listening(srv);
    /* First: the sockets leaving their topics below need not tell the engine. */
    wsk_bridge_free(srv->ctx.bridge);
    srv->ctx.bridge = NULL;
    while (srv->ctx.conns) wsk_conn_end(srv->ctx.conns, WSK_CLOSE_GOING_AWAY, "server freed");
    wsk_loop_reap(loop);
    ev_timer_stop(loop->ev, &srv->grace);
    ev_ref(loop->ev);
    ev_timer_stop(loop->ev, &srv->tick);
    wsk_pubsub_free(&srv->ctx);
    wsk_tls_ctx_free(&srv->ctx);
    free(srv);
}

/* ----- the HTTP phase of a server connection ------------------------------------------------- */

/* A plain request: the handler answers, or 426 says this is a WebSocket endpoint. */
static void plain_request(struct wsk_ws *c, const wsk_http_request *h, const uint8_t *body,
                          size_t body_len)
{
    struct wsk_request req;
    struct wsk_response res;
    wsk_request_init(&req, h, c->io.fd);
    req.body = body;
    req.body_len = body_len;
    size_t from = 0;
    const wsk_http_header *conn = wsk_http_find(h->headers, h->nheaders, "connection", &from);
    int keepalive = h->minor_version >= 1 &&
                    !(conn && wsk_http_has_token(conn->value, conn->value_len, "close"));
    wsk_response_init(&res, 0);
    if (c->ctx->h.request) {
        c->ctx->h.request(c->ctx->srv, &req, &res);
    } else {
        res.status = 426;
        wsk_response_add_header(&res, "Upgrade", "websocket");
        wsk_response_add_header(&res, "Content-Type", "text/plain; charset=utf-8");
        wsk_response_append_body(&res, "This is a WebSocket endpoint.\n", 30);
    }
    int head_only = wsk_http_ieq(h->method, h->method_len, "HEAD");
    if (res.deferred && wsk_deferred_start(c, &res, keepalive, head_only)) return;
    if (c->state != WSK_ST_HTTP) { /* the handler terminated the connection */
        wsk_response_free(&res);
        return;
    }
    wsk_response_queue(c, &res, keepalive, head_only);
    wsk_response_free(&res);
    if (!keepalive) {
        c->state = WSK_ST_DONE;
        c->flags |= WSK_F_END_AFTER_FLUSH;
    }
    c->stamp = (uint32_t)ev_now(c->ctx->loop->ev);
}

/* An upgrade request: the upgrade handler decides, then the 101 (RFC 6455 4.2.2). */
static void upgrade_request(struct wsk_ws *c, const wsk_http_request *h, const char *key,
                            size_t key_len, uint8_t *rest, size_t rest_len)
{
    struct wsk_request req;
    struct wsk_response res;
    wsk_request_init(&req, h, c->io.fd);
    wsk_response_init(&res, 1);
    res.status = 101;
    res.req = &req;
    if (c->ctx->h.upgrade) {
        int st = c->ctx->h.upgrade(c->ctx->srv, &req, &res);
        if (c->state != WSK_ST_HTTP) goto out;
        if (st >= 400) {
            char addr[64];
            res.status = st;
            wsk_stats_refused_upgrade(&c->ctx->stats, st);
            wsk_log(c->ctx->loop, WSK_LOG_INFO, "%s: upgrade refused with %d",
                    wsk_addr_string(c->io.fd, addr, sizeof addr), st);
            wsk_response_queue(c, &res, 0, 0);
            c->state = WSK_ST_DONE;
            c->flags |= WSK_F_END_AFTER_FLUSH;
            goto out;
        }
    }
    if (res.protocol[0] && !wsk_request_offers_protocol(&req, res.protocol)) {
        wsk_http_refuse(c, 500, "the server chose a subprotocol the client did not offer", NULL);
        goto out;
    }
    char accept[29], ext[256];
    wsk_accept_key(key, key_len, accept);
    int pmd = wsk_pmd_conn_negotiate(c, h, ext, sizeof ext);
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s%s%s%s%s%s",
                     accept, res.protocol[0] ? "Sec-WebSocket-Protocol: " : "", res.protocol,
                     res.protocol[0] ? "\r\n" : "", pmd > 0 ? "Sec-WebSocket-Extensions: " : "",
                     pmd > 0 ? ext : "", pmd > 0 ? "\r\n" : "");
    size_t total = (size_t)n + res.headers.len + 2;
    uint8_t *dst = wsk_queue_reserve(c, total);
    if (!dst) {
        wsk_conn_end(c, WSK_CLOSE_ABNORMAL, NULL);
        goto out;
    }
    memcpy(dst, head, (size_t)n);
    if (res.headers.len) memcpy(dst + n, res.headers.p, res.headers.len);
    memcpy(dst + n + res.headers.len, "\r\n", 2);
    wsk_queue_commit(c, total);
    wsk_loop_schedule(c->ctx->loop, c);
    if (res.protocol[0]) {
        wsk_cold *k = wsk_conn_cold(c);
        if (k) k->protocol = strdup(res.protocol);
    }
    c->user = res.data;
    wsk_response_free(&res);
    wsk_stats_handshake(&c->ctx->stats, wsk_us() - c->born);
    wsk_conn_open(c, rest, rest_len);
    return;
out:
    wsk_response_free(&res);
}

/* The length of a plain request's body, from Content-Length (0 without one), into *len; or -1
 * after refusing the request: 411 for Transfer-Encoding (chunked request bodies are not
 * accepted), 400 for an invalid Content-Length, 413 beyond max_body. */
static int request_body_length(struct wsk_ws *c, const wsk_http_request *h, size_t *len)
{
    size_t from = 0;
    uint64_t v = 0;
    if (wsk_http_find(h->headers, h->nheaders, "transfer-encoding", &from)) {
        wsk_http_refuse(c, 411, "send the body with a Content-Length", NULL);
        return -1;
    }
    if (wsk_http_content_length(h->headers, h->nheaders, &v) < 0) {
        wsk_http_refuse(c, 400, "invalid Content-Length", NULL);
        return -1;
    }
    if (v > c->ctx->srv->o.max_body) {
        wsk_http_refuse(c, 413, "request body too large", NULL);
        return -1;
    }
    *len = (size_t)v;
    return 0;
}

/* The head of the request at p[0..n): its length, with *h parsed; or 0 when it is incomplete
 * (kept in the cold buffer) or was refused (431 beyond max_header, 400 malformed). */
static size_t request_head(struct wsk_ws *c, const uint8_t *p, size_t n, wsk_http_request *h)
{
    size_t max = c->ctx->lim.max_header;
    wsk_cold *k = c->cold;
    size_t scanned = k && p == k->head.p ? k->scanned : 0;
    int r = wsk_http_parse_request((const char *)p, n, &scanned, h);
    if (r == 0) {
        if (n > max || wsk_conn_save_head(c, p, n, max) < 0)
            wsk_http_refuse(c, 431, "request head too large", NULL);
        else
            c->cold->scanned = scanned;
        return 0;
    }
    if (r < 0)
        wsk_http_refuse(
            c, r == WSK_ERR_HEADER_SIZE ? 431 : 400,
            r == WSK_ERR_HEADER_SIZE ? "too many header fields" : "malformed HTTP request", NULL);
    else if ((size_t)r > max)
        wsk_http_refuse(c, 431, "request head too large", NULL);
    return r > 0 && (size_t)r <= max ? (size_t)r : 0;
}

/* One request from p[0..n), dispatched: an upgrade, a refusal, or a plain request answered.
 * Returns the bytes of the answered plain request (head and body); 0 when the request needs
 * more bytes (kept in the cold buffer) or the connection left the HTTP phase. */
static size_t one_request(struct wsk_ws *c, uint8_t *p, size_t n)
{
    const wsk_limits *l = &c->ctx->lim;
    wsk_http_request h;
    size_t head_len = request_head(c, p, n, &h), body_len;
    if (!head_len) return 0;
    const char *key = NULL, *why = NULL;
    size_t key_len = 0;
    int kind = wsk_handshake_check(&h, &key, &key_len, &why);
    if (kind == 0) {
        /* Another member of the group may be this connection's owner: it gets p[0..n). */
        if (wsk_group_affinity(c, &h, p, n)) return 0;
        upgrade_request(c, &h, key, key_len, p + head_len, n - head_len);
        return 0;
    }
    if (kind != WSK_HS_PLAIN) {
        wsk_http_refuse(c, kind, why,
                        kind == 426 ? "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n" : NULL);
        return 0;
    }
    if (request_body_length(c, &h, &body_len) < 0) return 0;
    if (n - head_len < body_len) {
        if (wsk_conn_save_head(c, p, n, l->max_header + c->ctx->srv->o.max_body) < 0) {
            wsk_http_refuse(c, 500, "out of memory", NULL);
        } else {
            c->cold->body_need = body_len;
            c->cold->scanned = head_len; /* the head is found again without a rescan */
        }
        return 0;
    }
    plain_request(c, &h, p + head_len, body_len);
    return head_len + body_len;
}

void wsk_server_http(struct wsk_ws *c, uint8_t *p, size_t n)
{
    wsk_cold *k = c->cold;
    int in_cold = k && k->head.len;
    if (in_cold) {
        if (wsk_dbuf_append(&k->head, p, n) < 0) {
            wsk_http_refuse(c, k->body_need ? 413 : 431,
                            k->body_need ? "request body too large" : "request head too large",
                            NULL);
            return;
        }
        p = k->head.p;
        n = k->head.len;
    }
    while (n && c->state == WSK_ST_HTTP && !(c->flags & WSK_F_PAUSED)) {
        size_t used = one_request(c, p, n);
        if (!used) return;
        p += used;
        n -= used;
        /* Paused: the answer was deferred; requests read behind it are not kept for later. */
        if (n && (c->flags & WSK_F_PAUSED) && c->state == WSK_ST_HTTP) wsk_deferred_pipelined(c);
        if (in_cold) {
            /* Pipelined requests: move what follows to the front of the buffer. */
            memmove(k->head.p, p, n);
            k->head.len = n;
            k->scanned = 0;
            k->body_need = 0;
            k->head.max = c->ctx->lim.max_header;
            p = k->head.p;
            if (!n) {
                wsk_dbuf_free(&k->head);
                wsk_conn_cold_trim(c);
                return;
            }
        }
    }
}
