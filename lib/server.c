/* The server: listening sockets, accept, the HTTP phase of a connection (request head, the
 * upgrade handshake or a plain HTTP reply), deadlines and graceful shutdown. */
#include "http_exchange.h"
#include "io_tls.h"
#include "msg_handshake.h"
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
    wsk_ctx ctx;
    void *user;
    ev_io listen[MAX_LISTEN];
    int nlisten;
    int paused;      /* listeners stopped: out of descriptors or at max_connections */
    ev_timer tick;   /* deadlines, once a second */
    ev_timer resume; /* retry accepting after EMFILE */
    ev_timer grace;  /* shutdown deadline */
    int shutting_down;
    void (*done)(wsk_server *srv, size_t dropped);
    void *pubsub; /* topics (pubsub.c) */
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
    o->compress_threshold = 64;
}

static void listeners_set(wsk_server *srv, int on)
{
    if (srv->paused == !on) return;
    srv->paused = !on;
    for (int i = 0; i < srv->nlisten; i++) {
        if (on)
            ev_io_start(srv->ctx.loop->ev, &srv->listen[i]);
        else
            ev_io_stop(srv->ctx.loop->ev, &srv->listen[i]);
    }
}

static int at_limit(const wsk_server *srv)
{
    return srv->ctx.o.max_connections && srv->ctx.nconns >= srv->ctx.o.max_connections;
}

/* Accepts until the backlog is empty (bounded per event).  Out of descriptors, libev would
 * report the listener readable forever and the loop would spin (ev.pod, "The special problem of
 * accept()ing when you can't"): stop listening instead and retry in a second, or as soon as a
 * connection closes. */
static void on_accept(struct ev_loop *ev, ev_io *w, int revents)
{
    wsk_server *srv = w->data;
    (void)ev;
    (void)revents;
    for (int i = 0; i < 256 && !srv->shutting_down; i++) {
        if (at_limit(srv)) {
            wsk_log(srv->ctx.loop, WSK_LOG_WARN,
                    "%zu connections: at max_connections, pausing accept", srv->ctx.nconns);
            listeners_set(srv, 0);
            return;
        }
        int err;
        char peer[64];
        int fd = wsk_tcp_accept(w->fd, &err, srv->ctx.tls ? peer : NULL, sizeof peer);
        if (fd < 0) {
            if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
                wsk_log(srv->ctx.loop, WSK_LOG_WARN, "accept: %s; pausing accept for 1s",
                        strerror(err));
                listeners_set(srv, 0);
                ev_timer_again(srv->ctx.loop->ev, &srv->resume);
            }
            return;
        }
        struct wsk_ws *c = wsk_conn_new(&srv->ctx, fd);
        if (!c) {
            close(fd);
            return;
        }
        if (srv->ctx.tls && wsk_tls_accept(c, peer) < 0) wsk_conn_end(c, WSK_CLOSE_ABNORMAL, NULL);
    }
}

static void on_resume(struct ev_loop *ev, ev_timer *w, int revents)
{
    wsk_server *srv = w->data;
    (void)ev;
    (void)revents;
    ev_timer_stop(srv->ctx.loop->ev, w);
    if (!srv->shutting_down && !at_limit(srv)) listeners_set(srv, 1);
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

wsk_server *wsk_server_new(wsk_loop *loop, const wsk_server_opts *opts, const wsk_handlers *h,
                           void *user)
{
    wsk_server *srv = calloc(1, sizeof *srv);
    if (!srv) return NULL;
    srv->ctx.loop = loop;
    srv->ctx.srv = srv;
    srv->ctx.role = WSK_ROLE_SERVER;
    if (opts)
        srv->ctx.o = *opts;
    else
        wsk_server_opts_init(&srv->ctx.o);
    if (h) srv->ctx.h = *h;
    srv->user = user;
    if (srv->ctx.o.tls_cert && wsk_tls_server_config(&srv->ctx) < 0) {
        free(srv);
        return NULL;
    }
    if (!srv->ctx.o.close_timeout) srv->ctx.o.close_timeout = 1;
    if (!srv->ctx.o.handshake_timeout) srv->ctx.o.handshake_timeout = 10;
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
    int n = wsk_tcp_listen(host, port, fds, MAX_LISTEN - srv->nlisten);
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

void **wsk_server_pubsub(wsk_server *srv)
{
    return &srv->pubsub;
}

const wsk_server_opts *wsk_server_opts_of(const wsk_server *srv)
{
    return &srv->ctx.o;
}

static void stop_listening(wsk_server *srv)
{
    listeners_set(srv, 0);
    ev_timer_stop(srv->ctx.loop->ev, &srv->resume);
    for (int i = 0; i < srv->nlisten; i++) close(srv->listen[i].fd);
    srv->nlisten = 0;
}

void wsk_server_shutdown(wsk_server *srv, unsigned code, const char *reason, double grace,
                         void (*done)(wsk_server *srv, size_t dropped))
{
    if (srv->shutting_down) return;
    srv->shutting_down = 1;
    srv->done = done;
    stop_listening(srv);
    for (struct wsk_ws *c = srv->ctx.conns, *next; c; c = next) {
        next = c->next;
        if (c->state == WSK_ST_OPEN)
            wsk_close(c, code, reason, reason ? strlen(reason) : 0);
        else if (c->state == WSK_ST_HTTP)
            wsk_conn_end(c, WSK_CLOSE_ABNORMAL, NULL);
    }
    ev_timer_set(&srv->grace, srv->ctx.nconns ? grace : 0, 0);
    ev_timer_start(srv->ctx.loop->ev, &srv->grace);
}

void wsk_server_free(wsk_server *srv)
{
    if (!srv) return;
    wsk_loop *loop = srv->ctx.loop;
    srv->shutting_down = 1;
    srv->done = NULL;
    stop_listening(srv);
    while (srv->ctx.conns) wsk_conn_end(srv->ctx.conns, WSK_CLOSE_GOING_AWAY, "server freed");
    wsk_loop_reap(loop);
    ev_timer_stop(loop->ev, &srv->grace);
    ev_ref(loop->ev);
    ev_timer_stop(loop->ev, &srv->tick);
    wsk_pubsub_server_free(srv);
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
        wsk_response_header(&res, "Upgrade", "websocket");
        wsk_response_header(&res, "Content-Type", "text/plain; charset=utf-8");
        wsk_response_body(&res, "This is a WebSocket endpoint.\n", 30);
    }
    if (c->state != WSK_ST_HTTP) { /* the handler terminated the connection */
        wsk_response_free(&res);
        return;
    }
    wsk_response_queue(c, &res, keepalive, wsk_http_ieq(h->method, h->method_len, "HEAD"));
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
    if (c->ctx->h.upgrade) {
        int st = c->ctx->h.upgrade(c->ctx->srv, &req, &res);
        if (c->state != WSK_ST_HTTP) goto out;
        if (st >= 400) {
            char addr[64];
            res.status = st;
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
    wsk_conn_open(c, rest, rest_len);
    return;
out:
    wsk_response_free(&res);
}

/* Keeps bytes of an unfinished head in the cold buffer (a copy is made only when a head
 * arrives in pieces). */
static int keep(struct wsk_ws *c, const uint8_t *p, size_t n, int in_cold)
{
    if (in_cold) return 0;
    wsk_cold *k = wsk_conn_cold(c);
    if (!k) return WSK_ERR_NOMEM;
    return wsk_dbuf_append(&k->head, p, n);
}

void wsk_server_http(struct wsk_ws *c, uint8_t *p, size_t n)
{
    const wsk_server_opts *o = &c->ctx->o;
    wsk_cold *k = c->cold;
    int in_cold = k && k->head.len;
    if (in_cold) {
        int r = wsk_dbuf_append(&k->head, p, n);
        if (r < 0) {
            wsk_http_refuse(c, k->body_need ? 413 : 431,
                            k->body_need ? "request body too large" : "request head too large",
                            NULL);
            return;
        }
        p = k->head.p;
        n = k->head.len;
    }
    while (n && c->state == WSK_ST_HTTP) {
        wsk_http_request h;
        size_t scanned = in_cold ? k->scanned : 0;
        int r = wsk_http_parse_request((const char *)p, n, &scanned, &h);
        if (r == 0) {
            if (n > o->max_header) {
                wsk_http_refuse(c, 431, "request head too large", NULL);
                return;
            }
            if (keep(c, p, n, in_cold) < 0)
                wsk_http_refuse(c, 431, "request head too large", NULL);
            else
                c->cold->scanned = scanned;
            return;
        }
        if (r < 0) {
            wsk_http_refuse(c, r == WSK_ERR_HEADER_SIZE ? 431 : 400,
                            r == WSK_ERR_HEADER_SIZE ? "too many header fields"
                                                     : "malformed HTTP request",
                            NULL);
            return;
        }
        size_t head_len = (size_t)r;
        if (head_len > o->max_header) {
            wsk_http_refuse(c, 431, "request head too large", NULL);
            return;
        }
        const char *key = NULL, *why = NULL;
        size_t key_len = 0;
        int kind = wsk_handshake_check(&h, &key, &key_len, &why);
        if (kind == 0) {
            upgrade_request(c, &h, key, key_len, p + head_len, n - head_len);
            return;
        }
        if (kind != WSK_HS_PLAIN) {
            wsk_http_refuse(c, kind, why,
                            kind == 426 ? "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n"
                                        : NULL);
            return;
        }
        /* A plain request: its body by Content-Length; chunked bodies are not accepted. */
        size_t from = 0, body_len = 0;
        const wsk_http_header *te =
            wsk_http_find(h.headers, h.nheaders, "transfer-encoding", &from);
        if (te) {
            wsk_http_refuse(c, 411, "send the body with a Content-Length", NULL);
            return;
        }
        from = 0;
        const wsk_http_header *cl = wsk_http_find(h.headers, h.nheaders, "content-length", &from);
        if (cl) {
            char num[24];
            char *end;
            size_t l = cl->value_len < sizeof num - 1 ? cl->value_len : sizeof num - 1;
            memcpy(num, cl->value, l);
            num[l] = 0;
            unsigned long long v = strtoull(num, &end, 10);
            if (!l || *end || num[0] == '-' || num[0] == '+') {
                wsk_http_refuse(c, 400, "invalid Content-Length", NULL);
                return;
            }
            if (v > o->max_body) {
                wsk_http_refuse(c, 413, "request body too large", NULL);
                return;
            }
            body_len = (size_t)v;
        }
        if (n - head_len < body_len) {
            if (keep(c, p, n, in_cold) < 0) {
                wsk_http_refuse(c, 500, "out of memory", NULL);
                return;
            }
            c->cold->head.max = o->max_header + o->max_body;
            c->cold->body_need = body_len;
            c->cold->scanned = scanned;
            return;
        }
        plain_request(c, &h, p + head_len, body_len);
        p += head_len + body_len;
        n -= head_len + body_len;
        if (in_cold) {
            /* Pipelined requests: move what follows to the front of the buffer. */
            memmove(k->head.p, p, n);
            k->head.len = n;
            k->scanned = 0;
            k->body_need = 0;
            k->head.max = o->max_header;
            p = k->head.p;
            if (!n) {
                wsk_dbuf_free(&k->head);
                wsk_conn_cold_trim(c);
                return;
            }
        }
    }
}
