/* One connection from accept (or connect) to free.
 *
 * A read lands in the loop's shared buffer and goes to the phase the connection is in: the HTTP
 * phase (server.c reads a request head, client.c a response head) or the WebSocket phase
 * (msg_assemble.c).  Inside a large frame, the read lands in that frame's own buffer first.  Ending
 * a connection closes the fd at once but frees the struct only at the end of the loop iteration
 * (io_loop.c), so a handler that ends a socket never leaves a dangling pointer in the code that
 * called it. */
#include "internal.h"
#include "http_exchange.h"
#include "io_transport.h"
#include "pmd_conn.h"
#include "pubsub.h"

#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void on_io(struct ev_loop *ev, ev_io *w, int revents);

struct wsk_ws *wsk_conn_new(wsk_ctx *ctx, int fd)
{
    struct wsk_ws *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->ctx = ctx;
    c->stamp = (uint32_t)ev_now(ctx->loop->ev);
    c->born = wsk_us();
    ev_io_init(&c->io, on_io, fd, EV_READ);
    ev_io_start(ctx->loop->ev, &c->io);
    c->next = ctx->conns;
    if (ctx->conns) ctx->conns->prev = c;
    ctx->conns = c;
    ctx->nconns++;
    return c;
}

void wsk_conn_io_events(struct wsk_ws *c, int events)
{
    struct ev_loop *ev = c->ctx->loop->ev;
    /* A paused socket keeps EV_READ off whatever its writer wants. */
    if (c->flags & WSK_F_PAUSED) events &= ~EV_READ;
    ev_io_stop(ev, &c->io);
    ev_io_set(&c->io, c->io.fd, events);
    if (events) ev_io_start(ev, &c->io);
}

void wsk_conn_resume(struct wsk_ws *c)
{
    if (!(c->flags & WSK_F_PAUSED)) return;
    c->flags &= ~WSK_F_PAUSED;
    if (c->state == WSK_ST_DEAD) return;
    wsk_conn_io_events(c, (c->io.events & EV_WRITE) | EV_READ);
    /* TLS may hold decrypted input that no readiness event will announce again. */
    ev_feed_event(c->ctx->loop->ev, &c->io, EV_READ);
}

wsk_cold *wsk_conn_cold(struct wsk_ws *c)
{
    if (c->cold) return c->cold;
    wsk_cold *k = calloc(1, sizeof *k);
    if (!k) return NULL;
    wsk_dbuf_init(&k->head, c->ctx->lim.max_header);
    wsk_dbuf_init(&k->msg, c->ctx->lim.max_payload);
    k->msg.pre = sizeof(wsk_block); /* room to lend it to the send queue (wsk_msg_block) */
    c->cold = k;
    return k;
}

void wsk_conn_cold_trim(struct wsk_ws *c)
{
    wsk_cold *k = c->cold;
    if (!k || k->head.p || k->msg.p || k->ctl_len || k->protocol || k->pmd || k->tls || k->client ||
        k->subs || k->holds)
        return;
    free(k);
    c->cold = NULL;
}

int wsk_conn_save_head(struct wsk_ws *c, const uint8_t *p, size_t n, size_t max)
{
    wsk_cold *k = wsk_conn_cold(c);
    if (!k) return WSK_ERR_NOMEM;
    k->head.max = max;
    return p == k->head.p ? 0 : wsk_dbuf_append(&k->head, p, n);
}

static void cold_free(struct wsk_ws *c)
{
    wsk_cold *k = c->cold;
    if (!k) return;
    wsk_dbuf_free(&k->head);
    wsk_msg_buffer_free(k);
    free(k->protocol);
    wsk_holds_free(k);
    wsk_pmd_conn_free(c);
    free(k);
    c->cold = NULL;
}

void wsk_conn_closed(struct wsk_ws *c, unsigned code, const char *reason, size_t len)
{
    if (c->state == WSK_ST_OPEN || c->state == WSK_ST_CLOSING) {
        c->state = WSK_ST_DONE;
        c->ctx->nopen--;
        wsk_pubsub_conn_gone(c);
        if (c->ctx->h.close) c->ctx->h.close(c, code, reason ? reason : "", len);
    }
    if (c->state == WSK_ST_DEAD) return;
    c->state = WSK_ST_DONE;
    c->stamp = (uint32_t)ev_now(c->ctx->loop->ev);
    /* RFC 6455 7.1.1: the server closes TCP first; a client waits for it (close_timeout). */
    if (c->ctx->role == WSK_ROLE_SERVER) c->flags |= WSK_F_END_AFTER_FLUSH;
    wsk_loop_schedule(c->ctx->loop, c);
}

void wsk_conn_end(struct wsk_ws *c, unsigned code, const char *reason)
{
    if (c->state == WSK_ST_DEAD) return;
    wsk_ctx *ctx = c->ctx;
    if (c->state == WSK_ST_OPEN || c->state == WSK_ST_CLOSING)
        wsk_conn_closed(c, code, reason, reason ? strlen(reason) : 0);
    /* Paused in the HTTP phase: a server's request whose answer was deferred. */
    if (c->state == WSK_ST_HTTP && (c->flags & WSK_F_PAUSED)) wsk_deferred_gone(c);
    c->state = WSK_ST_DEAD;
    ev_io_stop(ctx->loop->ev, &c->io);
    wsk_io_release(c);
    if (c->io.fd >= 0) close(c->io.fd); /* -1: wsk_conn_detach took it */
    wsk_queue_clear(c);
    cold_free(c);
    if (c->prev)
        c->prev->next = c->next;
    else
        ctx->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    ctx->nconns--;
    wsk_loop_schedule(ctx->loop, c);
    if (ctx->srv) wsk_server_conn_gone(ctx->srv);
    if (ctx->hooks) ctx->hooks->gone(c);
}

int wsk_conn_detach(struct wsk_ws *c)
{
    int fd = c->io.fd;
    ev_io_stop(c->ctx->loop->ev, &c->io);
    c->io.fd = -1;
    wsk_conn_end(c, WSK_CLOSE_ABNORMAL, NULL);
    return fd;
}

void wsk_conn_free(struct wsk_ws *c)
{
    /* A wsk_connect client's ctx lives as long as its one connection. */
    if (c->ctx->role == WSK_ROLE_CLIENT && !c->ctx->hooks && c->ctx->nconns == 0)
        wsk_ctx_release(c->ctx);
    free(c);
}

void wsk_conn_fail(struct wsk_ws *c, int err, unsigned code, const char *msg)
{
    char addr[64];
    if (c->state == WSK_ST_DEAD || c->state == WSK_ST_DONE) return;
    wsk_log(c->ctx->loop, WSK_LOG_WARN, "%s: %s (closing with %u)",
            wsk_addr_string(c->io.fd, addr, sizeof addr), msg, code);
    if (c->ctx->h.error && c->state != WSK_ST_HTTP) c->ctx->h.error(c, err, msg);
    if (c->state == WSK_ST_OPEN || c->state == WSK_ST_CLOSING) {
        wsk_send_close(c, code, msg, strlen(msg));
        wsk_conn_closed(c, code, msg, strlen(msg));
    }
    /* RFC 6455 7.1.7: failing the connection closes it, whichever side we are. */
    c->flags |= WSK_F_END_AFTER_FLUSH;
    if (c->ctx->role == WSK_ROLE_SERVER) c->flags |= WSK_F_LINGER;
    wsk_loop_schedule(c->ctx->loop, c);
}

void wsk_conn_open(struct wsk_ws *c, uint8_t *rest, size_t n)
{
    c->state = WSK_ST_OPEN;
    c->ctx->nopen++;
    c->stamp = (uint32_t)ev_now(c->ctx->loop->ev);
    if (c->ctx->h.open) c->ctx->h.open(c);
    if (n && (c->state == WSK_ST_OPEN || c->state == WSK_ST_CLOSING)) wsk_msg_receive(c, rest, n);
    if (c->state != WSK_ST_DEAD && c->cold) {
        wsk_dbuf_free(&c->cold->head);
        wsk_conn_cold_trim(c);
    }
}

void wsk_conn_failed(struct wsk_ws *c, long err, const char *what)
{
    int tls = err == WSK_ERR_TLS || err == WSK_ERR_CERT;
    const char *why = tls ? wsk_io_failure(c) : err == WSK_ERR_EOF ? "connection closed" : what;
    /* Neither the transport nor the sweep knows roles: the owner of a socket still in its
     * handshake hears why it failed (wsbench's hooks, or a wsk_connect client). */
    if (c->state == WSK_ST_HTTP && (c->ctx->hooks || c->ctx->role == WSK_ROLE_CLIENT)) {
        int e = tls || err == WSK_ERR_TIMEOUT ? (int)err : WSK_ERR_HANDSHAKE;
        const char *msg = e == WSK_ERR_HANDSHAKE ? "connection closed during the handshake" : why;
        if (c->ctx->hooks)
            c->ctx->hooks->failed(c, e, msg);
        else
            wsk_client_failed(c, e, msg);
    }
    wsk_conn_end(c, WSK_CLOSE_ABNORMAL,
                 err == WSK_ERR_EOF ? "connection closed without a close frame" : why);
}

/* The bytes of a read in the loop's buffer, by the socket's phase. */
static void handle_read(struct wsk_ws *c, size_t n)
{
    uint8_t *rbuf = c->ctx->loop->rbuf;
    switch (c->state) {
    case WSK_ST_HTTP:
        if (c->ctx->role == WSK_ROLE_SERVER)
            wsk_server_http(c, rbuf, n);
        else
            wsk_client_http(c, rbuf, n);
        break;
    case WSK_ST_OPEN:
    case WSK_ST_CLOSING: wsk_msg_receive(c, rbuf, n); break;
    default: break; /* closing: what the peer still sends is read and dropped */
    }
}

static void on_readable(struct wsk_ws *c)
{
    wsk_loop *loop = c->ctx->loop;
    /* Inside a large frame, the read goes to the frame's own buffer first (msg_assemble.c), and
     * what follows the frame to the shared buffer, in one readv.  Between large messages, the
     * next one's payload is guessed into its place (wsk_msg_guess). */
    size_t cap = 0;
    const wsk_conn_hooks *hooks = c->ctx->hooks;
    int ws = c->state == WSK_ST_OPEN || c->state == WSK_ST_CLOSING;
    uint8_t *dst = ws && (!hooks || hooks->direct) ? wsk_msg_direct(c, &cap) : NULL;
    struct iovec iov[3] = {{dst, cap}, {loop->rbuf, WSK_RBUF_SIZE}};
    int guess = ws && !hooks && !dst && wsk_msg_guess(c, iov);
    long n = dst     ? wsk_io_readv(c, iov, 2)
             : guess ? wsk_io_readv(c, iov, 3)
                     : wsk_io_read(c, loop->rbuf, WSK_RBUF_SIZE);
    if (n == WSK_ERR_AGAIN) return;
    if (n < 0) {
        wsk_conn_failed(c, n, "read failed");
        return;
    }
    /* What a closed socket still reads does not postpone its close_timeout. */
    if (c->state == WSK_ST_OPEN || c->state == WSK_ST_CLOSING)
        c->stamp = (uint32_t)ev_now(loop->ev);
    c->flags &= ~WSK_F_PINGED;
    /* Large replies to this read's frames may point into it: written before the next read. */
    wsk_lent_begin(c);
    if (dst) {
        size_t direct = (size_t)n < cap ? (size_t)n : cap, behind = (size_t)n - direct;
        if (hooks) hooks->direct(c);
        if (wsk_msg_direct_received(c, direct, behind) == 0) {
            if (hooks)
                hooks->receive(c, loop->rbuf, behind);
            else if (behind)
                wsk_msg_receive(c, loop->rbuf, behind);
        }
    } else if (guess) {
        wsk_msg_guessed(c, iov, (size_t)n);
    } else if (hooks) {
        hooks->receive(c, loop->rbuf, (size_t)n);
    } else {
        handle_read(c, (size_t)n);
    }
    wsk_lent_end(loop);
}

void wsk_conn_feed(struct wsk_ws *c, const uint8_t *p, size_t n)
{
    wsk_loop *loop = c->ctx->loop;
    memcpy(loop->rbuf, p, n);
    wsk_lent_begin(c);
    handle_read(c, n);
    wsk_lent_end(loop);
}

static void on_io(struct ev_loop *ev, ev_io *w, int revents)
{
    struct wsk_ws *c = (struct wsk_ws *)w;
    (void)ev;
    if ((revents & EV_WRITE) && wsk_flush(c) < 0) return;
    if ((revents & EV_READ) && !(c->flags & WSK_F_PAUSED) && c->state != WSK_ST_DEAD)
        on_readable(c);
}

/* A paused socket's peer may have gone: no read will see the EOF or the reset, so the sweep asks
 * the kernel (a FIN queued behind data the peer could not send is not seen: the idle timeout
 * ends that one).  1 when the connection was ended. */
static int paused_gone(struct wsk_ws *c)
{
    struct pollfd p = {.fd = c->io.fd, .events = POLLRDHUP};
    if (poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR))) {
        wsk_conn_end(c, WSK_CLOSE_ABNORMAL, "connection closed while paused");
        return 1;
    }
    return 0;
}

/* A large message buffer kept after its message (msg_assemble.c) and unused for two sweeps. */
static void msg_buffer_sweep(struct wsk_ws *c)
{
    wsk_cold *k = c->cold;
    if (!k || !k->msg.p || k->msg.len || (c->flags & WSK_F_PAYLOAD) || k->msg_idle++ < 1) return;
    wsk_msg_buffer_free(k);
    wsk_conn_cold_trim(c);
}

/* Deadlines, checked once a second for every connection of a server or client (one timer per
 * server, none per socket): the handshake deadline counts from accept, not from the last byte,
 * so a client trickling its request cannot hold a slot; idle sockets get a ping at half the idle
 * timeout and are dropped at the full timeout; a closing handshake gets close_timeout. */
void wsk_ctx_sweep(wsk_ctx *ctx)
{
    uint32_t now = (uint32_t)ev_now(ctx->loop->ev);
    const wsk_limits *o = &ctx->lim;
    struct wsk_ws *c = ctx->conns, *next;
    for (; c; c = next) {
        next = c->next;
        uint32_t idle = now - c->stamp;
        switch (c->state) {
        case WSK_ST_HTTP:
            /* A deferred answer has its own deadline (http_exchange.c); its client may leave. */
            if (c->flags & WSK_F_PAUSED) {
                paused_gone(c);
                break;
            }
            /* A client's deadline is its own timer (handshake_timeout 0). */
            if (o->handshake_timeout && idle >= o->handshake_timeout) {
                char addr[64];
                wsk_log(ctx->loop, WSK_LOG_INFO, "%s: handshake timed out after %us",
                        wsk_addr_string(c->io.fd, addr, sizeof addr), o->handshake_timeout);
                ctx->stats.refused[WSK_REFUSED_TIMEOUT]++;
                wsk_conn_failed(c, WSK_ERR_TIMEOUT, "handshake timed out");
            }
            break;
        case WSK_ST_OPEN:
            msg_buffer_sweep(c);
            if ((c->flags & WSK_F_PAUSED) && paused_gone(c)) break;
            if (!o->idle_timeout) break;
            if (idle >= o->idle_timeout) {
                char addr[64];
                wsk_log(ctx->loop, WSK_LOG_INFO, "%s: idle for %us, closing",
                        wsk_addr_string(c->io.fd, addr, sizeof addr), idle);
                wsk_send_close(c, WSK_CLOSE_GOING_AWAY, "idle timeout", 12);
                wsk_conn_closed(c, WSK_CLOSE_ABNORMAL, "idle timeout", 12);
                c->flags |= WSK_F_END_AFTER_FLUSH;
            } else if (o->send_pings && idle >= (o->idle_timeout + 1) / 2 &&
                       !(c->flags & WSK_F_PINGED)) {
                c->flags |= WSK_F_PINGED;
                wsk_send_frame(c, WSK_OP_PING, 0, NULL, 0, 1);
            }
            break;
        case WSK_ST_CLOSING:
        case WSK_ST_DONE:
            if (idle >= o->close_timeout) wsk_conn_end(c, WSK_CLOSE_ABNORMAL, "close timed out");
            break;
        default: break;
        }
    }
}

/* ----- public accessors --------------------------------------------------------------------- */

void *wsk_ws_data(const wsk_ws *ws)
{
    return ws->user;
}

void wsk_ws_set_data(wsk_ws *ws, void *data)
{
    ws->user = data;
}

int wsk_ws_ready_state(const wsk_ws *ws)
{
    switch (ws->state) {
    case WSK_ST_HTTP: return WSK_CONNECTING;
    case WSK_ST_OPEN: return WSK_OPEN;
    case WSK_ST_CLOSING: return WSK_CLOSING;
    default: return WSK_CLOSED;
    }
}

size_t wsk_ws_buffered(const wsk_ws *ws)
{
    return ws->q.bytes;
}

void wsk_ws_pause(wsk_ws *ws)
{
    if (ws->state != WSK_ST_OPEN || (ws->flags & WSK_F_PAUSED)) return;
    ws->flags |= WSK_F_PAUSED;
    wsk_conn_io_events(ws, ws->io.events & EV_WRITE);
}

void wsk_ws_resume(wsk_ws *ws)
{
    wsk_conn_resume(ws);
}

int wsk_ws_paused(const wsk_ws *ws)
{
    return !!(ws->flags & WSK_F_PAUSED);
}

const char *wsk_ws_protocol(const wsk_ws *ws)
{
    return ws->cold && ws->cold->protocol ? ws->cold->protocol : "";
}

int wsk_ws_compressed(const wsk_ws *ws)
{
    return !!(ws->flags & WSK_F_PMD);
}

wsk_server *wsk_ws_server(const wsk_ws *ws)
{
    return ws->ctx->srv;
}

const char *wsk_ws_remote_address(const wsk_ws *ws, char *buf, size_t cap)
{
    return wsk_addr_string(ws->io.fd, buf, cap);
}
