/* Connections on socketpairs for the unit tests of the library's internals (conn.c,
 * send_queue.c, send_flush.c): a wsk_ctx with server options but no server, one connection of
 * it on one end of a socketpair, and the test playing the peer on the other end.  Include after
 * test.h, once per test program. */
#ifndef WSK_TEST_PAIR_H
#define WSK_TEST_PAIR_H

#include "internal.h"

#include <ev.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

static struct ev_loop *pair_ev;
static wsk_loop *pair_loop;

/* The loop every pair runs on; errors of the library stay off the TAP output. */
static inline void pair_setup(void)
{
    pair_loop = test_loop(&pair_ev);
}

/* A server-role context with default options and the handlers h (NULL: none). */
static inline void pair_ctx(wsk_ctx *ctx, const wsk_handlers *h)
{
    memset(ctx, 0, sizeof *ctx);
    ctx->loop = pair_loop;
    if (h) ctx->h = *h;
    wsk_server_opts o;
    wsk_server_opts_init(&o);
    wsk_limits_server(&ctx->lim, &o);
    ctx->role = WSK_ROLE_SERVER;
}

/* A connection of ctx in the HTTP phase on a socketpair of `type`; *peer is the other end
 * (non-blocking).  sndbuf > 0 makes the connection's kernel send buffer that small, so that
 * writes come back partial.  SOCK_SEQPACKET keeps the boundaries of writes: each read on either
 * end returns what one write wrote, so a test can count the connection's writes. */
static inline struct wsk_ws *pair_conn_type(wsk_ctx *ctx, int *peer, int sndbuf, int type)
{
    int sv[2];
    if (socketpair(AF_UNIX, type, 0, sv) < 0) abort();
    if (sndbuf > 0) setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    *peer = sv[1];
    struct wsk_ws *c = wsk_conn_new(ctx, sv[0]);
    if (!c) abort();
    return c;
}

/* A connection of ctx in the HTTP phase on a stream socketpair (pair_conn_type). */
static inline struct wsk_ws *pair_conn(wsk_ctx *ctx, int *peer, int sndbuf)
{
    return pair_conn_type(ctx, peer, sndbuf, SOCK_STREAM);
}

/* Bytes the peer sent that c has not read yet. */
static inline int pair_unread(const struct wsk_ws *c)
{
    int n = -1;
    ioctl(c->io.fd, FIONREAD, &n);
    return n;
}

/* Writes all of buf to the peer's end (it fits the kernel's buffer). */
static inline void pair_put(int peer, const void *buf, size_t n)
{
    if (write(peer, buf, n) != (ssize_t)n) abort();
}

/* One turn of the loop without waiting: events, handlers, then the end-of-turn flush. */
static inline void pair_turn(void)
{
    ev_run(pair_ev, EVRUN_NOWAIT);
}

/* Turns the loop and reads the peer's end into buf[*got, cap) until `want` bytes are there or
 * the peer sees EOF (5 s at most); 1 when it saw EOF. */
static inline int pair_read(int peer, uint8_t *buf, size_t cap, size_t *got, size_t want)
{
    int eof = 0;
    SPIN_UNTIL(*got >= want || eof, {
        pair_turn();
        if (*got == cap) break;
        ssize_t r = read(peer, buf + *got, cap - *got);
        if (r > 0) *got += (size_t)r;
        if (r == 0) eof = 1;
        if (r < 0) poll(NULL, 0, 1);
    });
    return eof;
}

/* A masked client frame (key 0, so the payload reads as is) into out; its length. */
static inline size_t pair_frame(uint8_t *out, unsigned fin_op, const void *payload, size_t len)
{
    out[0] = (uint8_t)fin_op;
    out[1] = (uint8_t)(0x80 | len); /* len < 126 */
    memset(out + 2, 0, 4);
    memcpy(out + 6, payload, len);
    return 6 + len;
}

/* Handlers that count: drain and close calls, and the last close code (reset them per test). */
static int pair_drains, pair_closes;
static unsigned pair_close_code;

static inline void pair_on_drain(wsk_ws *ws)
{
    (void)ws;
    pair_drains++;
}

static inline void pair_on_close(wsk_ws *ws, unsigned code, const char *reason, size_t len)
{
    (void)ws;
    (void)reason;
    (void)len;
    pair_closes++;
    pair_close_code = code;
}

/* Byte i of the test pattern: a period (251) that no power-of-two block size divides. */
static inline uint8_t pair_pattern(size_t i)
{
    return (uint8_t)(i * 7 % 251);
}

#endif
