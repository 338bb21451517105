/* Requests as handlers see them, and the responses they build. */
#include "http_exchange.h"
#include "io_transport.h"
#include "parse_url.h"

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void wsk_request_init(struct wsk_request *r, const wsk_http_request *h, int fd)
{
    memset(r, 0, sizeof *r);
    r->h = h;
    r->fd = fd;
    const char *q = memchr(h->target, '?', h->target_len);
    r->path = h->target;
    r->path_len = q ? (size_t)(q - h->target) : h->target_len;
    r->query = q ? q + 1 : "";
    r->query_len = q ? h->target_len - r->path_len - 1 : 0;
}

const char *wsk_request_method(const wsk_request *req, size_t *len)
{
    if (len) *len = req->h->method_len;
    return req->h->method;
}

const char *wsk_request_path(const wsk_request *req, size_t *len)
{
    if (len) *len = req->path_len;
    return req->path;
}

const char *wsk_request_query(const wsk_request *req, size_t *len)
{
    if (len) *len = req->query_len;
    return req->query;
}

const char *wsk_request_header(const wsk_request *req, const char *name, size_t *len)
{
    size_t from = 0;
    const wsk_http_header *h =
        name ? wsk_http_find(req->h->headers, req->h->nheaders, name, &from) : NULL;
    if (!h) return NULL;
    if (len) *len = h->value_len;
    return h->value;
}

size_t wsk_request_header_count(const wsk_request *req)
{
    return req->h->nheaders;
}

int wsk_request_header_at(const wsk_request *req, size_t i, const char **name, size_t *name_len,
                          const char **value, size_t *value_len)
{
    return wsk_http_header_at(req->h->headers, req->h->nheaders, i, name, name_len, value,
                              value_len);
}

long wsk_request_query_param(const wsk_request *req, const char *name, char *buf, size_t cap)
{
    if (!name || (!buf && cap)) return WSK_ERR_INVAL;
    size_t nlen = strlen(name);
    const char *p = req->query, *end = req->query + req->query_len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pe = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pe - p));
        const char *ke = eq ? eq : pe;
        if ((size_t)(ke - p) == nlen && !memcmp(p, name, nlen)) {
            const char *v = eq ? eq + 1 : pe;
            return (long)wsk_url_decode(v, (size_t)(pe - v), 1, buf, cap);
        }
        p = pe + 1;
    }
    return -1;
}

int wsk_request_offers_protocol(const wsk_request *req, const char *proto)
{
    if (!proto) return WSK_ERR_INVAL;
    size_t from = 0;
    const wsk_http_header *h;
    while (
        (h = wsk_http_find(req->h->headers, req->h->nheaders, "sec-websocket-protocol", &from))) {
        /* Subprotocol names are case-sensitive (RFC 6455 4.1): compare exactly. */
        const char *p = h->value, *end = h->value + h->value_len;
        size_t plen = strlen(proto);
        while (p < end) {
            while (p < end && (*p == ' ' || *p == '\t' || *p == ',')) p++;
            const char *s = p;
            while (p < end && *p != ',' && *p != ' ' && *p != '\t') p++;
            if ((size_t)(p - s) == plen && plen && !memcmp(s, proto, plen)) return 1;
        }
    }
    return 0;
}

const void *wsk_request_body(const wsk_request *req, size_t *len)
{
    if (len) *len = req->body_len;
    return req->body_len ? req->body : NULL;
}

const char *wsk_request_remote_address(const wsk_request *req, char *buf, size_t cap)
{
    return wsk_addr_string(req->fd, buf, cap);
}

/* ----- responses ------------------------------------------------------------------------------ */

void wsk_response_init(struct wsk_response *res, int upgrade)
{
    memset(res, 0, sizeof *res);
    res->status = 200;
    res->upgrade = upgrade;
    wsk_dbuf_init(&res->headers, 16 * 1024);
    wsk_dbuf_init(&res->body, (size_t)1 << 30);
}

void wsk_response_free(struct wsk_response *res)
{
    wsk_dbuf_free(&res->headers);
    wsk_dbuf_free(&res->body);
}

int wsk_response_set_status(wsk_response *res, int status)
{
    /* An upgrade is refused with the upgrade handler's return value. */
    if (res->upgrade) return WSK_ERR_STATE;
    if (status < 200 || status > 599) return WSK_ERR_INVAL;
    res->status = status;
    return 0;
}

int wsk_response_add_header(wsk_response *res, const char *name, const char *value)
{
    /* A name that is not a token, or CR/LF in the value, would let the caller's data split
     * the head into headers of its own (response splitting). */
    if (!name || !value || !wsk_http_is_token(name, strlen(name)) || strpbrk(value, "\r\n"))
        return WSK_ERR_INVAL;
    size_t nlen = strlen(name), vlen = strlen(value);
    int r = wsk_dbuf_reserve(&res->headers, nlen + vlen + 4);
    if (r < 0) return r;
    wsk_dbuf_append(&res->headers, name, nlen);
    wsk_dbuf_append(&res->headers, ": ", 2);
    wsk_dbuf_append(&res->headers, value, vlen);
    wsk_dbuf_append(&res->headers, "\r\n", 2);
    return 0;
}

int wsk_response_append_body(wsk_response *res, const void *data, size_t len)
{
    if (!data && len) return WSK_ERR_INVAL;
    return wsk_dbuf_append(&res->body, data, len);
}

void wsk_response_set_data(wsk_response *res, void *data)
{
    res->data = data;
}

int wsk_response_set_protocol(wsk_response *res, const char *proto)
{
    if (!res->upgrade || !res->req) return WSK_ERR_STATE;
    /* RFC 6455 4.2.2: the server selects one of the values the client offered. */
    if (!proto || strlen(proto) >= sizeof res->protocol ||
        !wsk_request_offers_protocol(res->req, proto))
        return WSK_ERR_INVAL;
    strcpy(res->protocol, proto);
    return 0;
}

const char *wsk_http_reason(int status)
{
    switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return status < 400 ? "OK" : "Error";
    }
}

/* ----- deferred responses -------------------------------------------------------------------- */

enum {
    D_HANDLER, /* deferred inside the request handler, which has not returned yet */
    D_EARLY,   /* ... and answered before it returned: sent as an ordinary response */
    D_WAITING, /* the connection waits for the answer (c) */
    D_DONE,    /* answered, timed out or gone: wsk_deferred_respond only frees */
};

struct wsk_deferred {
    int state;
    struct wsk_ws *c; /* D_WAITING: the connection */
    struct ev_loop *ev;
    ev_timer timer;
    int head_only;
    int keepalive;           /* the answer leaves the connection open for the next request */
    struct wsk_response res; /* D_EARLY: the answer (status 0: none); D_WAITING: the fallback */
};

wsk_deferred *wsk_response_defer(wsk_response *res, double timeout)
{
    if (res->upgrade || res->deferred || !(timeout > 0)) return NULL;
    wsk_deferred *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    wsk_response_init(&d->res, 0);
    d->res.status = 0;
    ev_timer_init(&d->timer, NULL, timeout, 0);
    d->timer.data = d;
    res->deferred = d;
    return d;
}

/* Sends d->res and reads the next request, as after an immediate answer; or, without
 * keep-alive, ends the connection once it is written. */
static void deferred_send(wsk_deferred *d)
{
    struct wsk_ws *c = d->c;
    d->state = D_DONE;
    d->c = NULL;
    c->user = NULL;
    ev_timer_stop(d->ev, &d->timer);
    wsk_response_queue(c, &d->res, d->keepalive, d->head_only);
    c->stamp = (uint32_t)ev_now(d->ev);
    if (!d->keepalive) {
        c->state = WSK_ST_DONE; /* what the client sends from now on is read and dropped */
        c->flags |= WSK_F_END_AFTER_FLUSH | WSK_F_LINGER;
    }
    wsk_conn_resume(c); /* the loop reads again: not from inside the caller's respond */
}

static void deferred_timeout(struct ev_loop *ev, ev_timer *w, int revents)
{
    (void)ev;
    (void)revents;
    deferred_send(w->data);
}

/* Replaces the status and body of r: 0, or WSK_ERR_NOMEM with r unchanged. */
static int answer(struct wsk_response *r, int status, const void *body, size_t len)
{
    wsk_dbuf b;
    wsk_dbuf_init(&b, r->body.max);
    if (wsk_dbuf_append(&b, body, len) < 0) return WSK_ERR_NOMEM;
    wsk_dbuf_free(&r->body);
    r->body = b;
    r->status = status;
    return 0;
}

int wsk_deferred_start(struct wsk_ws *c, struct wsk_response *res, int keepalive, int head_only)
{
    wsk_deferred *d = res->deferred;
    res->deferred = NULL;
    if (d->state == D_EARLY) {
        if (d->res.status) {
            wsk_dbuf t = res->body;
            res->body = d->res.body;
            d->res.body = t;
            res->status = d->res.status;
        }
        wsk_response_free(&d->res);
        free(d);
        return 0;
    }
    if (c->state != WSK_ST_HTTP) { /* the handler ended the connection */
        d->state = D_DONE;
        return 0;
    }
    wsk_response_free(&d->res);
    d->res = *res;
    d->state = D_WAITING;
    d->c = c;
    d->ev = c->ctx->loop->ev;
    d->head_only = head_only;
    d->keepalive = keepalive;
    c->user = d; /* unused in the HTTP phase: wsk_deferred_gone finds d there */
    /* Nothing is read meanwhile: a request behind this one would be answered before it. */
    c->flags |= WSK_F_PAUSED;
    wsk_conn_io_events(c, c->io.events & EV_WRITE);
    c->stamp = (uint32_t)ev_now(d->ev);
    ev_set_cb(&d->timer, deferred_timeout);
    ev_timer_start(d->ev, &d->timer);
    return 1;
}

void wsk_deferred_pipelined(struct wsk_ws *c)
{
    wsk_deferred *d = c->user;
    if (d) d->keepalive = 0;
}

void wsk_deferred_gone(struct wsk_ws *c)
{
    wsk_deferred *d = c->user;
    if (!d) return;
    c->user = NULL;
    d->c = NULL;
    d->state = D_DONE;
    ev_timer_stop(d->ev, &d->timer);
}

int wsk_deferred_respond(wsk_deferred *d, int status, const void *body, size_t len)
{
    if (!d || d->state == D_EARLY) return WSK_ERR_INVAL;
    int bad = status < 200 || status > 599 || (!body && len);
    int r = bad ? WSK_ERR_INVAL : d->state == D_DONE ? 0 : 1;
    if (d->state == D_HANDLER) { /* wsk_deferred_start sends it and frees d */
        d->state = D_EARLY;
        if (!bad && answer(&d->res, status, body, len) < 0) r = WSK_ERR_NOMEM;
        return r;
    }
    if (d->state == D_WAITING) {
        if (!bad && answer(&d->res, status, body, len) < 0) r = WSK_ERR_NOMEM;
        deferred_send(d);
    }
    wsk_response_free(&d->res);
    free(d);
    return r;
}

int wsk_response_queue(struct wsk_ws *c, const struct wsk_response *res, int keepalive,
                       int head_only)
{
    char line[160];
    int n = snprintf(line, sizeof line, "HTTP/1.1 %d %s\r\n", res->status,
                     wsk_http_reason(res->status));
    size_t blen = res->body.len;
    char tail[96];
    int t = snprintf(tail, sizeof tail, "Content-Length: %zu\r\nConnection: %s\r\n\r\n", blen,
                     keepalive ? "keep-alive" : "close");
    size_t total = (size_t)n + res->headers.len + (size_t)t + (head_only ? 0 : blen);
    uint8_t *dst = wsk_queue_reserve(c, total);
    if (!dst) return WSK_ERR_NOMEM;
    uint8_t *p = dst;
    memcpy(p, line, (size_t)n), p += n;
    if (res->headers.len) memcpy(p, res->headers.p, res->headers.len), p += res->headers.len;
    memcpy(p, tail, (size_t)t), p += t;
    if (!head_only && blen) memcpy(p, res->body.p, blen);
    wsk_queue_commit(c, total);
    wsk_loop_schedule(c->ctx->loop, c);
    return 0;
}

void wsk_http_refuse(struct wsk_ws *c, int status, const char *why, const char *extra)
{
    char addr[64];
    struct wsk_response res;
    wsk_stats_refused_http(&c->ctx->stats, status);
    wsk_log(c->ctx->loop, WSK_LOG_INFO, "%s: %d %s: %s",
            wsk_addr_string(c->io.fd, addr, sizeof addr), status, wsk_http_reason(status), why);
    wsk_response_init(&res, 0);
    res.status = status;
    wsk_response_add_header(&res, "Content-Type", "text/plain; charset=utf-8");
    if (extra) wsk_dbuf_append(&res.headers, extra, strlen(extra));
    wsk_dbuf_append(&res.body, why, strlen(why));
    wsk_dbuf_append(&res.body, "\n", 1);
    wsk_response_queue(c, &res, 0, 0);
    wsk_response_free(&res);
    c->state = WSK_ST_DONE; /* what the client sends from now on is read and dropped */
    c->stamp = (uint32_t)ev_now(c->ctx->loop->ev);
    c->flags |= WSK_F_END_AFTER_FLUSH | WSK_F_LINGER;
}
