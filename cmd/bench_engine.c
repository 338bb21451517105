/* The wsbench engine: worker threads, connections, the handshake, frames in and out, and the
 * main thread's watch over a run.  See bench_engine.h.
 *
 * The per-message work is what decides whether wsbench or the server is measured, so:
 *  - one read(2) per readable event into the thread's buffer; frames are decoded in place
 *    (wsk_frame_decode), and a frame whose payload is in the buffer is handled without copying;
 *  - what is sent comes from prebuilt, already masked frames (bench_scenario.c), so sending a
 *    message is adding its length to a counter;
 *  - one writev(2) per connection per loop turn, from an ev_prepare watcher;
 *  - one clock read per read(2) and per turn, not per message;
 *  - counters are per thread, updated once per read with plain stores. */
#include "bench_engine.h"

#include "mask.h"
#include "msg_handshake.h"
#include "parse_url.h"
#include "pmd.h"
#include "send_frame.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

volatile int wb_interrupted;

/* ----- small utilities --------------------------------------------------------------------- */

uint64_t wb_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void wb_random_bytes(void *p, size_t n)
{
    uint8_t *b = p;
    while (n) {
        ssize_t r = getrandom(b, n, 0);
        if (r <= 0) {
            /* getrandom only fails before the pool is seeded or on EINTR; a benchmark's masks
             * need no secrecy, so fall back to the clock rather than fail. */
            uint64_t x = wb_now() * 0x9E3779B97F4A7C15ull;
            size_t k = n < 8 ? n : 8;
            memcpy(b, &x, k);
            r = (ssize_t)k;
        }
        b += r;
        n -= (size_t)r;
    }
}

/* xorshift64*: fast, and good enough for masking keys of a load generator (RFC 6455 10.3 asks
 * for unpredictable keys to protect intermediaries from cache poisoning by hostile scripts; a
 * benchmark client runs no foreign code). */
uint64_t wb_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

size_t wb_frame_build(uint8_t *out, unsigned op, unsigned rsv, const uint8_t *payload, size_t len,
                      const uint8_t key[4])
{
    size_t h = wsk_frame_header(out, 1, rsv, op, len, key);
    if (len) memcpy(out + h, payload, len);
    wsk_mask(out + h, len, key, 0);
    return h + len;
}

const char *wb_err_name(int e)
{
    static const char *const names[WB_E_COUNT] = {
        [WB_E_CONNECT] = "connect",     [WB_E_TIMEOUT] = "timeout",
        [WB_E_HANDSHAKE] = "handshake", [WB_E_TLS] = "tls",
        [WB_E_PROTOCOL] = "protocol",   [WB_E_CLOSED] = "closed by server",
        [WB_E_RESET] = "reset",         [WB_E_MISMATCH] = "mismatch",
        [WB_E_DEFLATE] = "deflate",     [WB_E_UNCLEAN] = "unclean close",
    };
    return e >= 0 && e < WB_E_COUNT ? names[e] : "?";
}

const char *wb_scenario_name(int s)
{
    static const char *const names[WB_NSCENARIOS] = {"echo", "chat", "pubsub", "connect", "hold"};
    return s >= 0 && s < WB_NSCENARIOS ? names[s] : "?";
}

/* The first error of the run, once it is complete ("" before). */
static const char *first_error(const wb_state *s)
{
    return __atomic_load_n(&s->first_err_set, __ATOMIC_ACQUIRE) == 2 ? s->first_err : "";
}

static int phase_of(const wb_state *s)
{
    return __atomic_load_n(&s->phase, __ATOMIC_ACQUIRE);
}

void wb_wake_main(wb_state *s)
{
    ev_async_send(s->main_ev, &s->main_wake);
}

void wb_wake_workers(wb_state *s, wb_thread *except)
{
    for (unsigned i = 0; i < s->nthreads; i++)
        if (&s->threads[i] != except) ev_async_send(s->threads[i].ev, &s->threads[i].wake);
}

void wb_error(wb_thread *t, int e, const char *fmt, ...)
{
    wb_state *s = t->s;
    wb_add(&t->st.err[e], 1);
    int expected = 0;
    if (__atomic_compare_exchange_n(&s->first_err_set, &expected, 1, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE)) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s->first_err, sizeof s->first_err, fmt, ap);
        va_end(ap);
        __atomic_store_n(&s->first_err_set, 2, __ATOMIC_RELEASE);
    }
}

/* ----- connection lifecycle -------------------------------------------------------------- */

static void on_io(struct ev_loop *ev, ev_io *w, int revents);
static int flush(wb_thread *t, wb_conn *c);

static wb_cold *cold_of(wb_conn *c)
{
    if (!c->cold) {
        c->cold = calloc(1, sizeof *c->cold);
        if (!c->cold) {
            fputs("wsbench: out of memory\n", stderr);
            abort();
        }
    }
    return c->cold;
}

/* Frees the cold state once nothing in it is in use, so idle connections stay small. */
static void cold_trim(wb_conn *c)
{
    wb_cold *k = c->cold;
    if (!k || k->tls || k->inflater || k->ctl_len > k->ctl_off || k->cpay_len ||
        c->state < WB_C_OPEN)
        return;
    free(k->zmsg);
    free(k);
    c->cold = NULL;
}

static void set_events(wb_thread *t, wb_conn *c, int want_write)
{
    if (!!(c->flags & WB_F_WANT_WRITE) == !!want_write) return;
    c->flags ^= WB_F_WANT_WRITE;
    ev_io_stop(t->ev, &c->io);
    ev_io_set(&c->io, c->io.fd, EV_READ | (want_write ? EV_WRITE : 0));
    ev_io_start(t->ev, &c->io);
}

/* The watcher waits for reads only (a flush arms EV_WRITE when the kernel is full). */
static void watch_read(wb_thread *t, wb_conn *c)
{
    ev_io_stop(t->ev, &c->io);
    ev_io_set(&c->io, c->io.fd, EV_READ);
    ev_io_start(t->ev, &c->io);
    c->flags &= ~WB_F_WANT_WRITE;
}

void wb_conn_dirty(wb_thread *t, wb_conn *c)
{
    if (c->flags & WB_F_DIRTY) return;
    c->flags |= WB_F_DIRTY;
    c->dirty_next = t->dirty;
    t->dirty = c;
}

/* Releases the socket and its state; the scenario's ended hook may restart the slot. */
static void conn_end(wb_thread *t, wb_conn *c)
{
    wb_state *s = t->s;
    if (c->state == WB_C_IDLE) return;
    int was_open = c->state >= WB_C_OPEN;
    if (c->state < WB_C_OPEN) {
        t->connecting--;
        wb_atomic_inc(&s->n_settled);
    }
    ev_io_stop(t->ev, &c->io);
    close(c->io.fd);
    c->io.fd = -1;
    if (c->cold) {
        if (c->cold->tls) wb_tls_free(c->cold->tls);
        if (c->cold->inflater) wsk_pmd_inflater_free(c->cold->inflater);
        free(c->cold->zmsg);
        free(c->cold);
        c->cold = NULL;
    }
    c->state = WB_C_IDLE;
    c->flags &= WB_F_DIRTY | WB_F_DONE;
    c->sunsent = c->owed = c->remaining = 0;
    memset(&c->dec, 0, sizeof c->dec);
    t->live--;
    wb_add(&t->st.closed, 1);
    int phase = phase_of(s);
    if (was_open && phase == WB_P_RUN && !s->sc->start_on_run) {
        wb_atomic_inc(&s->n_ended);
        wb_wake_main(s);
    }
    if (s->sc->ended) s->sc->ended(t, c);
    if (t->stopping && !t->live) ev_break(t->ev, EVBREAK_ONE);
}

int wb_conn_fail(wb_thread *t, wb_conn *c, int e, const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    wb_error(t, e, "connection %u: %s", c->id, msg);
    conn_end(t, c);
    return -1;
}

/* Appends one masked control frame to the control queue (written after the data stream). */
static void ctl_queue(wb_thread *t, wb_conn *c, unsigned op, const uint8_t *p, size_t n)
{
    wb_cold *k = cold_of(c);
    if (k->ctl_off == k->ctl_len) k->ctl_off = k->ctl_len = 0;
    if (k->ctl_len + WSK_FRAME_HDR_MAX + n > sizeof k->ctl) return; /* a ping flood: drop */
    uint32_t key = (uint32_t)wb_rand(&t->rng);
    k->ctl_len += wb_frame_build(k->ctl + k->ctl_len, op, 0, p, n, (const uint8_t *)&key);
    wb_conn_dirty(t, c);
}

void wb_conn_close(wb_thread *t, wb_conn *c)
{
    if (c->state < WB_C_OPEN || (c->flags & WB_F_CLOSE_SENT)) return;
    uint8_t code[2] = {1000 >> 8, 1000 & 0xFF};
    ctl_queue(t, c, WSK_OP_CLOSE, code, 2);
    c->flags |= WB_F_CLOSE_SENT;
    c->owed = 0;
    if (c->state == WB_C_OPEN) c->state = WB_C_CLOSING;
}

/* The source address of connection c: spreading connections over 127.0.0.x lifts the limit
 * of one ephemeral port range per destination (about 28,000 on Linux). */
static int bind_source(const wb_state *s, const wb_conn *c, int fd)
{
    if (s->nsrc < 2) return 0;
    int one = 1;
    /* Without this the kernel reserves a port at bind time, for every possible destination,
     * and the range would run out as before. */
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(0x7F000001u + c->id % s->nsrc);
    return bind(fd, (struct sockaddr *)&a, sizeof a);
}

void wb_conn_start(wb_thread *t, wb_conn *c)
{
    wb_state *s = t->s;
    c->t0 = wb_now();
    c->flags &= WB_F_DONE | WB_F_DIRTY; /* a slot restarted in the same turn stays listed */
    c->hlen = 0;
    int fd = socket(s->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        wb_error(t, WB_E_CONNECT, "socket: %s", strerror(errno));
        wb_atomic_inc(&s->n_settled);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ev_io_init(&c->io, on_io, fd, EV_WRITE);
    c->state = WB_C_CONNECTING;
    t->connecting++;
    t->live++;
    if (bind_source(s, c, fd) < 0) {
        wb_conn_fail(t, c, WB_E_CONNECT, "bind to 127.0.0.%u: %s", 1 + c->id % s->nsrc,
                     strerror(errno));
        return;
    }
    if (connect(fd, (struct sockaddr *)&s->addr, s->addrlen) < 0 && errno != EINPROGRESS) {
        wb_conn_fail(t, c, WB_E_CONNECT, "connect to %s:%u: %s", s->host, s->port, strerror(errno));
        return;
    }
    ev_io_start(t->ev, &c->io);
}

/* Starts queued connections while fewer than --connect-concurrency are being set up. */
static void start_more(wb_thread *t)
{
    const wb_state *s = t->s;
    /* Scenarios that open connections during the run do it from their turn hook. */
    if (s->sc->start_on_run) return;
    unsigned limit = s->o->connect_concurrency ? s->o->connect_concurrency : 256;
    while (t->next < t->nconns && t->connecting < limit && !t->stopping)
        wb_conn_start(t, &t->conns[t->next++]);
}

/* ----- the handshake ----------------------------------------------------------------------- */

static int send_request(wb_thread *t, wb_conn *c)
{
    wb_state *s = t->s;
    const wb_opts *o = s->o;
    wb_cold *k = cold_of(c);
    if (wsk_handshake_client_key(k->key) < 0)
        return wb_conn_fail(t, c, WB_E_HANDSHAKE, "no random key");
    char path[1400];
    if (s->sc->path)
        s->sc->path(s, c, path, sizeof path);
    else
        snprintf(path, sizeof path, "%s", s->path);
    int n = wsk_handshake_client_request((char *)k->ctl, sizeof k->ctl, s->host, s->port, s->secure,
                                         path, k->key, o->protos, o->nprotos, o->origin,
                                         s->has_userinfo ? s->userinfo : NULL,
                                         *s->offer ? s->offer : NULL, o->headers, o->nheaders);
    if (n < 0) return wb_conn_fail(t, c, WB_E_HANDSHAKE, "cannot build the request");
    k->ctl_len = (size_t)n;
    k->ctl_off = 0;
    c->state = WB_C_HANDSHAKE;
    watch_read(t, c);
    return flush(t, c);
}

static int frames(wb_thread *t, wb_conn *c, const uint8_t *p, size_t n);

/* Permessage-deflate as the server answered it: sets c->rsv and the inflater. */
static int accept_extensions(wb_thread *t, wb_conn *c, const wsk_http_response *res)
{
    wb_state *s = t->s;
    wsk_pmd_slice v[8];
    size_t nv = 0, from = 0;
    const wsk_http_header *h;
    while (nv < 8 &&
           (h = wsk_http_find(res->headers, res->nheaders, "sec-websocket-extensions", &from))) {
        v[nv].p = h->value;
        v[nv++].len = h->value_len;
    }
    if (!*s->offer) return 0;
    wsk_pmd_config cfg = {
        .compress = WSK_COMPRESS_SHARED, .decompress = WSK_COMPRESS_DEDICATED, .threshold = 0};
    wsk_pmd_params pp;
    if (wsk_pmd_client_accept(&cfg, v, nv, &pp) < 0)
        return wb_conn_fail(t, c, WB_E_HANDSHAKE, "invalid Sec-WebSocket-Extensions answer");
    if (!pp.enabled) return 0;
    c->rsv = WSK_RSV1;
    wb_add(&t->st.deflate, 1);
    c->cold->inflater = wsk_pmd_inflater_new(pp.inflate_bits, pp.inflate_reset);
    if (!c->cold->inflater) return wb_conn_fail(t, c, WB_E_DEFLATE, "no inflater");
    return 0;
}

static int handshake_bytes(wb_thread *t, wb_conn *c, const uint8_t *p, size_t n)
{
    wb_state *s = t->s;
    wb_cold *k = cold_of(c);
    size_t m = sizeof k->head - k->head_len < n ? sizeof k->head - k->head_len : n;
    memcpy(k->head + k->head_len, p, m);
    k->head_len += m;
    wsk_http_response res;
    int r = wsk_http_parse_response((const char *)k->head, k->head_len, &k->head_scanned, &res);
    if (r == 0 && m < n)
        return wb_conn_fail(t, c, WB_E_HANDSHAKE, "response head over %zu bytes", sizeof k->head);
    if (r == 0) return 0;
    if (r < 0) return wb_conn_fail(t, c, WB_E_HANDSHAKE, "malformed HTTP response");
    const char *why = NULL;
    if (wsk_handshake_client_verify(&res, k->key, s->o->protos, s->o->nprotos, *s->offer != 0, NULL,
                                    NULL, &why) < 0) {
        if (res.status != 101)
            return wb_conn_fail(t, c, WB_E_HANDSHAKE, "server answered %d %.*s", res.status,
                                (int)res.reason_len, res.reason);
        return wb_conn_fail(t, c, WB_E_HANDSHAKE, "%s", why ? why : "invalid handshake");
    }
    if (accept_extensions(t, c, &res) < 0) return -1;
    c->state = WB_C_OPEN;
    t->connecting--;
    wb_add(&t->st.opened, 1);
    wb_hist_record(&t->conn, t->now - c->t0);
    wb_atomic_inc(&s->n_open);
    unsigned settled = wb_atomic_inc(&s->n_settled);
    if (settled == s->total) wb_wake_main(s);
    size_t used = (size_t)r, rest = k->head_len - used;
    /* Frames that came with the head (a chat server's "ready") are parsed from a copy: the
     * head buffer goes away with the cold state. */
    uint8_t tail[WB_HEAD_MAX];
    memcpy(tail, k->head + used, rest);
    k->head_len = k->head_scanned = 0;
    if (s->sc->open) s->sc->open(t, c);
    if (c->state != WB_C_OPEN) return -1;
    cold_trim(c);
    start_more(t);
    if (rest && frames(t, c, tail, rest) < 0) return -1;
    if (m < n && c->state >= WB_C_OPEN) return frames(t, c, p + m, n - m);
    return 0;
}

static int tls_step(wb_thread *t, wb_conn *c)
{
    char why[160];
    int want_write = 0;
    int r = wb_tls_handshake(c->cold->tls, &want_write, why, sizeof why);
    if (r < 0) return wb_conn_fail(t, c, WB_E_TLS, "%s", why);
    if (r == 0) {
        set_events(t, c, want_write);
        return 0;
    }
    return send_request(t, c);
}

static int connected(wb_thread *t, wb_conn *c)
{
    wb_state *s = t->s;
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->io.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err)
        return wb_conn_fail(t, c, WB_E_CONNECT, "connect to %s:%u: %s", s->host, s->port,
                            strerror(err));
    if (!s->tls) return send_request(t, c);
    watch_read(t, c);
    c->state = WB_C_TLS;
    cold_of(c)->tls = wb_tls_new(s->tls, c->io.fd);
    if (!c->cold->tls) return wb_conn_fail(t, c, WB_E_TLS, "cannot create a TLS session");
    return tls_step(t, c);
}

/* ----- frames in -------------------------------------------------------------------------- */

static int control_frame(wb_thread *t, wb_conn *c, unsigned op, const uint8_t *p, size_t n)
{
    wb_state *s = t->s;
    if (op == WSK_OP_PING) {
        if (!(c->flags & WB_F_CLOSE_SENT)) ctl_queue(t, c, WSK_OP_PONG, p, n);
        return 0;
    }
    if (op != WSK_OP_CLOSE) return 0;
    unsigned code = n >= 2 ? (unsigned)p[0] << 8 | p[1] : 1005;
    if (!(c->flags & WB_F_CLOSE_SENT)) {
        /* The server closes first: echo its code (RFC 6455 5.5.1) and count it when the run
         * did not ask for it. */
        if (phase_of(s) != WB_P_STOP && !s->sc->start_on_run)
            wb_error(t, WB_E_CLOSED, "connection %u: server closed it with %u%s%.*s", c->id, code,
                     n > 2 ? " " : "", n > 2 ? (int)(n - 2) : 0, p + 2);
        uint8_t echo[2] = {(uint8_t)(code >> 8), (uint8_t)code};
        c->flags |= WB_F_CLOSE_SENT;
        c->owed = 0;
        ctl_queue(t, c, WSK_OP_CLOSE, echo, code == 1005 ? 0 : 2);
    }
    /* The server closes TCP first (RFC 6455 7.1.1), so the TIME_WAIT state stays on its side
     * and a client opening thousands of connections does not run out of ports. */
    c->state = WB_C_DRAIN;
    c->t_drain = t->now;
    return 0;
}

static int message_done(wb_thread *t, wb_conn *c, const uint8_t *head, size_t hlen)
{
    wb_state *s = t->s;
    c->flags &= ~WB_F_INMSG;
    if (c->flags & WB_F_ZMSG) {
        c->flags &= ~WB_F_ZMSG;
        head = c->cold->zmsg;
        hlen = c->cold->zmsg_len < WB_HEAD ? c->cold->zmsg_len : WB_HEAD;
        c->msg_len = c->cold->zmsg_len;
        if (s->o->verify && s->sc == &wb_scen_echo &&
            (c->msg_len != s->payload_len || memcmp(c->cold->zmsg, s->payload, c->msg_len)))
            return wb_conn_fail(t, c, WB_E_MISMATCH, "inflated reply differs from the message");
        c->cold->zmsg_len = 0;
    }
    if (!(c->flags & WB_F_HOOK)) return 0;
    return s->sc->message(t, c, c->msg_op, c->msg_len, head, hlen);
}

/* Payload bytes of a compressed message: inflated into the cold buffer. */
static int inflate_chunk(wb_thread *t, wb_conn *c, const uint8_t *p, size_t n, int fin)
{
    wb_cold *k = c->cold;
    wsk_dbuf out = {.p = k->zmsg, .len = k->zmsg_len, .cap = k->zmsg_cap, .max = 1u << 26};
    int r = wsk_pmd_inflate(k->inflater, p, n, fin, &out);
    k->zmsg = out.p;
    k->zmsg_len = out.len;
    k->zmsg_cap = out.cap;
    if (r < 0) return wb_conn_fail(t, c, WB_E_DEFLATE, "%s", wsk_strerror(r));
    return 0;
}

/* Data payload bytes p[0..n) at offset c->msg_len of the message. */
static inline int data_chunk(wb_thread *t, wb_conn *c, const uint8_t *p, size_t n, int last)
{
    const wb_state *s = t->s;
    if (c->flags & WB_F_ZMSG) return inflate_chunk(t, c, p, n, last && c->fin);
    if (s->o->verify && s->payload) {
        if (c->msg_len + n > s->payload_len || memcmp(p, s->payload + c->msg_len, n))
            return wb_conn_fail(t, c, WB_E_MISMATCH, "reply bytes differ from the message");
    }
    if ((c->flags & WB_F_HEAD) && c->hlen < WB_HEAD) {
        size_t room = WB_HEAD - (size_t)c->hlen, k = room < n ? room : n;
        memcpy(c->head + c->hlen, p, k);
        c->hlen = (uint8_t)(c->hlen + k);
    }
    c->msg_len += n;
    return 0;
}

void wb_counts_flush(wb_thread *t)
{
    if (!t->rx_msgs) return;
    wb_add(&t->st.msgs_rx, t->rx_msgs);
    wb_add(&t->st.bytes_rx, t->rx_bytes);
    t->rx_turn += t->rx_msgs;
    t->rx_msgs = t->rx_bytes = 0;
}

/* Every frame in p[0..n).  Returns 0, or -1 when the connection was ended. */
static int frames(wb_thread *t, wb_conn *c, const uint8_t *p, size_t n)
{
    int r = 0;
    while (n) {
        if (!c->remaining) {
            wsk_frame f;
            int h = wsk_frame_decode(&c->dec, p, n, WSK_DEC_FORBID_MASK, c->rsv, UINT64_MAX, &f);
            if (h == 0) break;
            if (h < 0) {
                r = wb_conn_fail(t, c, WB_E_PROTOCOL, "invalid frame header from the server");
                break;
            }
            p += h;
            n -= (size_t)h;
            c->op = f.opcode;
            c->fin = f.fin;
            if (f.opcode >= 8) {
                if (f.len <= n) {
                    if (control_frame(t, c, f.opcode, p, (size_t)f.len) < 0) return -1;
                    p += f.len;
                    n -= (size_t)f.len;
                    continue;
                }
                cold_of(c)->cpay_len = 0;
                c->remaining = f.len;
                continue;
            }
            if (f.opcode == WSK_OP_CONT) {
                if (!(c->flags & WB_F_INMSG)) {
                    r = wb_conn_fail(t, c, WB_E_PROTOCOL, "continuation frame with no message");
                    break;
                }
            } else {
                if (c->flags & WB_F_INMSG) {
                    r = wb_conn_fail(t, c, WB_E_PROTOCOL, "new message inside a fragmented one");
                    break;
                }
                c->flags |= WB_F_INMSG;
                c->msg_op = f.opcode;
                c->msg_len = 0;
                c->hlen = 0;
                if (f.rsv & WSK_RSV1) c->flags |= WB_F_ZMSG;
            }
            if (f.len <= n) {
                /* The usual case: the whole payload is in the buffer. */
                size_t len = (size_t)f.len;
                if (c->flags & (WB_F_HEAD | WB_F_ZMSG) || t->s->o->verify) {
                    if (data_chunk(t, c, p, len, 1) < 0) return -1;
                } else {
                    c->msg_len += len;
                }
                if (f.fin) {
                    t->rx_msgs++;
                    t->rx_bytes += c->msg_len;
                    if (!(c->flags & (WB_F_HOOK | WB_F_ZMSG))) {
                        /* Counting is all a chat client does with a message. */
                        c->flags &= ~WB_F_INMSG;
                    } else {
                        const uint8_t *head = c->hlen ? c->head : p;
                        size_t hlen = c->hlen ? c->hlen : (len < WB_HEAD ? len : WB_HEAD);
                        if (message_done(t, c, head, hlen) < 0) {
                            r = -1;
                            break;
                        }
                    }
                }
                p += len;
                n -= len;
                continue;
            }
            c->remaining = f.len;
        }
        /* Inside a payload that continues past this read. */
        size_t k = n < c->remaining ? n : (size_t)c->remaining;
        c->remaining -= k;
        if (c->op >= 8) {
            wb_cold *cd = c->cold;
            memcpy(cd->cpay + cd->cpay_len, p, k);
            cd->cpay_len = (uint8_t)(cd->cpay_len + k);
            p += k;
            n -= k;
            if (!c->remaining) {
                uint8_t len = cd->cpay_len;
                cd->cpay_len = 0;
                if (control_frame(t, c, c->op, cd->cpay, len) < 0) return -1;
            }
            continue;
        }
        if (data_chunk(t, c, p, k, c->remaining == 0) < 0) return -1;
        p += k;
        n -= k;
        if (!c->remaining && c->fin) {
            t->rx_msgs++;
            t->rx_bytes += c->msg_len;
            if (message_done(t, c, c->head, c->hlen) < 0) {
                r = -1;
                break;
            }
        }
    }
    wb_counts_flush(t);
    return r;
}

static void conn_read(wb_thread *t, wb_conn *c)
{
    for (int rounds = 0; rounds < 4; rounds++) {
        long n;
        if (c->cold && c->cold->tls)
            n = wb_tls_read(c->cold->tls, t->rbuf, WB_RBUF);
        else
            n = read(c->io.fd, t->rbuf, WB_RBUF);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) return;
            if (c->state == WB_C_DRAIN || t->stopping) {
                conn_end(t, c);
                return;
            }
            wb_conn_fail(t, c, c->state < WB_C_OPEN ? WB_E_HANDSHAKE : WB_E_RESET, "read: %s",
                         strerror(errno));
            return;
        }
        if (n == 0) {
            if (c->state == WB_C_DRAIN || t->stopping) {
                conn_end(t, c);
                return;
            }
            wb_conn_fail(t, c, c->state < WB_C_OPEN ? WB_E_HANDSHAKE : WB_E_RESET,
                         "the server closed the connection without a close frame");
            return;
        }
        t->now = wb_now();
        int r = c->state == WB_C_HANDSHAKE ? handshake_bytes(t, c, t->rbuf, (size_t)n)
                                           : frames(t, c, t->rbuf, (size_t)n);
        if (r < 0 || c->state == WB_C_IDLE) return;
        /* A TLS session may hold decrypted bytes the socket will not signal again. */
        if (!(c->cold && c->cold->tls && wb_tls_pending(c->cold->tls))) return;
    }
}

/* ----- bytes out ---------------------------------------------------------------------------- */

/* Writes the data stream, then the control queue, in one writev.  Returns 0, or -1 when the
 * connection was ended. */
static int flush(wb_thread *t, wb_conn *c)
{
    const wb_state *s = t->s;
    wb_cold *k = c->cold;
    size_t ctl = k ? k->ctl_len - k->ctl_off : 0;
    if (c->owed && !ctl && !(c->flags & WB_F_CLOSE_SENT) && c->state == WB_C_OPEN && s->sc->fill)
        s->sc->fill(t, c);
    struct iovec iov[3];
    int niov = 0;
    size_t total = 0;
    if (c->sunsent) {
        size_t first = c->ssize - c->soff;
        if (first > c->sunsent) first = (size_t)c->sunsent;
        iov[niov++] = (struct iovec){(void *)(c->sbase + c->soff), first};
        total += first;
        if (first < c->sunsent) {
            iov[niov++] = (struct iovec){(void *)c->sbase, (size_t)c->sunsent - first};
            total += (size_t)c->sunsent - first;
        }
    }
    if (ctl) {
        iov[niov++] = (struct iovec){k->ctl + k->ctl_off, ctl};
        total += ctl;
    }
    if (!niov) {
        set_events(t, c, 0);
        return 0;
    }
    long w = k && k->tls ? wb_tls_writev(k->tls, iov, niov) : writev(c->io.fd, iov, niov);
    if (w < 0) {
        if (errno == EAGAIN || errno == EINTR) {
            set_events(t, c, 1);
            return 0;
        }
        if (c->state >= WB_C_CLOSING || t->stopping) {
            conn_end(t, c);
            return -1;
        }
        return wb_conn_fail(t, c, WB_E_RESET, "write: %s", strerror(errno));
    }
    size_t done = (size_t)w;
    if (c->sunsent) {
        size_t d = done < c->sunsent ? done : (size_t)c->sunsent;
        c->soff = (uint32_t)((c->soff + d) % c->ssize);
        c->sunsent -= d;
        done -= d;
    }
    if (done) k->ctl_off += done;
    set_events(t, c, (size_t)w < total);
    /* Everything went out but more is owed than the stream could hold (large messages): go
     * again in this turn; the kernel's EAGAIN, or the debt running out, ends it. */
    if ((size_t)w == total && c->owed && c->state == WB_C_OPEN && !(c->flags & WB_F_CLOSE_SENT))
        wb_conn_dirty(t, c);
    if (k && k->ctl_off == k->ctl_len && c->state >= WB_C_OPEN) cold_trim(c);
    return 0;
}

static void on_io(struct ev_loop *ev, ev_io *w, int revents)
{
    (void)ev;
    wb_conn *c = (wb_conn *)w;
    wb_thread *t = c->t;
    if (c->state == WB_C_CONNECTING) {
        t->now = wb_now();
        connected(t, c);
        return;
    }
    if (c->state == WB_C_TLS) {
        tls_step(t, c);
        return;
    }
    if ((revents & EV_WRITE) && flush(t, c) < 0) return;
    if (revents & EV_READ) conn_read(t, c);
}

/* ----- the worker's loop -------------------------------------------------------------------- */

static void begin_stop(wb_thread *t)
{
    const wb_state *s = t->s;
    if (t->stopping) return;
    t->stopping = 1;
    t->stop_deadline = wb_now() + (uint64_t)(s->o->stop_timeout * 1e9);
    for (unsigned i = 0; i < t->nconns; i++) {
        wb_conn *c = &t->conns[i];
        if (c->state == WB_C_IDLE) continue;
        if (c->state < WB_C_OPEN)
            conn_end(t, c);
        else
            wb_conn_close(t, c);
    }
    if (!t->live) ev_break(t->ev, EVBREAK_ONE);
}

static void on_wake(struct ev_loop *ev, ev_async *w, int revents)
{
    (void)ev;
    (void)revents;
    wb_thread *t = w->data;
    wb_state *s = t->s;
    int phase = phase_of(s);
    if (phase == t->phase_seen && !(phase == WB_P_RUN && s->sc == &wb_scen_chat)) return;
    if (phase == WB_P_STOP) {
        t->phase_seen = phase;
        begin_stop(t);
        return;
    }
    if (phase == WB_P_RUN) {
        int first = t->phase_seen != WB_P_RUN;
        t->phase_seen = phase;
        t->now = wb_now();
        /* Messages before the run (a chat server's "ready") are not part of any round. */
        if (first) t->rx_turn = 0;
        uint64_t round = __atomic_load_n(&s->chat_round, __ATOMIC_ACQUIRE);
        if (first || round != t->round_seen) {
            t->round_seen = round;
            if (s->sc->start) s->sc->start(t);
        }
    }
}

static void on_prepare(struct ev_loop *ev, ev_prepare *w, int revents)
{
    (void)ev;
    (void)revents;
    wb_thread *t = w->data;
    const wb_state *s = t->s;
    t->now = wb_now();
    if (s->sc->turn) s->sc->turn(t);
    wb_conn *c;
    while ((c = t->dirty)) {
        t->dirty = c->dirty_next;
        c->flags &= ~WB_F_DIRTY;
        if (c->state >= WB_C_HANDSHAKE) flush(t, c);
    }
}

/* Every 100 ms: connect and close deadlines. */
static void on_timer(struct ev_loop *ev, ev_timer *w, int revents)
{
    (void)ev;
    (void)revents;
    wb_thread *t = w->data;
    const wb_state *s = t->s;
    uint64_t now = wb_now();
    uint64_t limit = (uint64_t)(s->o->connect_timeout * 1e9);
    if (t->stopping && now >= t->stop_deadline) {
        for (unsigned i = 0; i < t->nconns; i++) {
            wb_conn *c = &t->conns[i];
            if (c->state == WB_C_IDLE) continue;
            if (c->state < WB_C_DRAIN) wb_add(&t->st.err[WB_E_UNCLEAN], 1);
            conn_end(t, c);
        }
        ev_break(t->ev, EVBREAK_ONE);
        return;
    }
    /* Connections that exchanged close frames get one second to see the server's FIN. */
    for (unsigned i = 0; i < t->nconns; i++) {
        wb_conn *c = &t->conns[i];
        if (c->state > WB_C_IDLE && c->state < WB_C_OPEN && now - c->t0 > limit)
            wb_conn_fail(t, c, WB_E_TIMEOUT, "no handshake within %.1f s", s->o->connect_timeout);
        else if (c->state == WB_C_DRAIN && now - c->t_drain > 1000000000u)
            conn_end(t, c);
    }
}

static void on_tfd(struct ev_loop *ev, ev_io *w, int revents)
{
    (void)ev;
    (void)revents;
    wb_thread *t = w->data;
    uint64_t expirations;
    /* Reading only disarms it: the prepare watcher that runs next does the sending. */
    if (read(t->tfd, &expirations, sizeof expirations) < 0) return;
}

void wb_wake_at(wb_thread *t, uint64_t ns)
{
    if (t->tfd < 0) {
        t->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (t->tfd < 0) return;
        /* The default 50 us timer slack would add itself to every latency measured from an
         * intended send time. */
        prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
        ev_io_init(&t->tfd_io, on_tfd, t->tfd, EV_READ);
        t->tfd_io.data = t;
        ev_io_start(t->ev, &t->tfd_io);
    }
    struct itimerspec its = {{0, 0}, {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)}};
    if (!ns) its.it_value.tv_nsec = 1;
    timerfd_settime(t->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void *worker_main(void *arg)
{
    wb_thread *t = arg;
    wb_state *s = t->s;
    start_more(t);
    ev_run(t->ev, 0);
    __atomic_store_n(&t->done, 1, __ATOMIC_RELEASE);
    wb_atomic_inc(&s->threads_done);
    wb_wake_main(s);
    return NULL;
}

/* ----- the run, as the main thread sees it --------------------------------------------------- */

/* The target: URL parts, address, source addresses. */
static int resolve(wb_state *s, const char *url, char *why, size_t cap)
{
    wsk_url u;
    if (wsk_url_parse(url, strlen(url), &u) < 0) {
        snprintf(why, cap, "invalid URL: %s", url);
        return -1;
    }
    if (u.host_len >= sizeof s->host || u.path_len >= sizeof s->path) {
        snprintf(why, cap, "URL too long: %s", url);
        return -1;
    }
    memcpy(s->host, u.host, u.host_len);
    s->host[u.host_len] = 0;
    memcpy(s->path, u.path, u.path_len);
    s->path[u.path_len] = 0;
    s->port = u.port;
    s->secure = u.secure;
    if (u.userinfo) {
        /* Basic auth wants the decoded "user:password"; most benchmark URLs have none. */
        size_t n =
            u.userinfo_len < sizeof s->userinfo - 1 ? u.userinfo_len : sizeof s->userinfo - 1;
        memcpy(s->userinfo, u.userinfo, n);
        s->userinfo[n] = 0;
        s->has_userinfo = 1;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    char port[8];
    snprintf(port, sizeof port, "%u", s->port);
    int r = getaddrinfo(s->host, port, &hints, &ai);
    if (r) {
        snprintf(why, cap, "cannot resolve %s: %s", s->host, gai_strerror(r));
        return -1;
    }
    memcpy(&s->addr, ai->ai_addr, ai->ai_addrlen);
    s->addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);
    unsigned nsrc = s->o->source_ips;
    int loop4 = s->addr.ss_family == AF_INET &&
                (ntohl(((struct sockaddr_in *)&s->addr)->sin_addr.s_addr) >> 24) == 127;
    if (!nsrc && loop4) nsrc = (s->total + 19999) / 20000; /* ~28k ports per source address */
    s->nsrc = loop4 ? nsrc : 0;
    return 0;
}

/* Raises the open-file limit to the hard limit; says so when it is still too low. */
static int raise_nofile(unsigned need, char *why, size_t cap)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) return 0;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need + 32) {
        snprintf(why, cap, "%u connections need %u file descriptors; the limit is %llu", need,
                 need + 32, (unsigned long long)rl.rlim_cur);
        return -1;
    }
    return 0;
}

/* A snapshot of all workers. */
typedef struct snap {
    uint64_t at;
    wb_counters c;
    wb_hist lat, conn;
    double cpu[WB_MAX_THREADS];
    double user, sys;
    double server;
} snap;

static double cpu_of(clockid_t id)
{
    struct timespec ts;
    if (clock_gettime(id, &ts) < 0) return 0;
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* utime + stime of a process, in seconds; < 0 when unknown. */
static double proc_cpu(int pid)
{
    if (pid <= 0) return -1;
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    /* The command name may hold spaces and parentheses: fields count from the last ')'. */
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    unsigned long long ut = 0, st = 0;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void take(wb_state *s, snap *sn, int hist)
{
    memset(&sn->c, 0, sizeof sn->c);
    if (hist) {
        wb_hist_reset(&sn->lat);
        wb_hist_reset(&sn->conn);
    }
    sn->at = wb_now();
    for (unsigned i = 0; i < s->nthreads; i++) {
        wb_thread *t = &s->threads[i];
        const uint64_t *src = (const uint64_t *)&t->st;
        uint64_t *dst = (uint64_t *)&sn->c;
        for (size_t j = 0; j < sizeof sn->c / sizeof(uint64_t); j++) dst[j] += wb_get(&src[j]);
        if (hist) {
            wb_hist_add(&sn->lat, &t->lat);
            wb_hist_add(&sn->conn, &t->conn);
        }
        sn->cpu[i] = cpu_of(t->cpu_clock);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    sn->user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    sn->sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    sn->server = proc_cpu(s->o->pid);
}

/* The main thread's view of a run. */
typedef struct watch {
    wb_state *s;
    wb_result *res;
    ev_timer poll, tick, rounds, end;
    uint64_t connect_deadline, t_measure, t_end;
    int measuring, ended, failed;
    int lost; /* chat: a client was lost; the figures stand, the exit status says so */
    snap base, prev, cur;
    uint64_t prev_lat_count;
    wb_hist prev_lat;
    unsigned seconds;
    int status_shown;
    unsigned polls;
} watch;

static void broadcast(wb_state *s, int phase)
{
    __atomic_store_n(&s->phase, phase, __ATOMIC_RELEASE);
    wb_wake_workers(s, NULL);
}

static void status_clear(watch *w)
{
    if (w->status_shown) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        w->status_shown = 0;
    }
}

static void check(watch *w);

static void on_end(struct ev_loop *ev, ev_timer *tw, int revents)
{
    (void)ev;
    (void)revents;
    check(tw->data);
}

static void begin_measure(watch *w)
{
    take(w->s, &w->base, 1);
    w->prev = w->base;
    w->prev_lat = w->base.lat;
    w->measuring = 1;
    w->t_measure = w->base.at;
    if (w->s->o->duration > 0) {
        w->t_end = w->t_measure + (uint64_t)(w->s->o->duration * 1e9);
        /* The 50 ms poll would end the run up to 50 ms late; this timer ends it on time. */
        ev_timer_init(&w->end, on_end, w->s->o->duration, 0);
        w->end.data = w;
        ev_timer_start(w->s->main_ev, &w->end);
    }
}

static wb_second second_push(watch *w, double wall);

/* The end of the measured time: the result is taken now; the workers then close. */
static void end_run(watch *w)
{
    wb_state *s = w->s;
    wb_result *r = w->res;
    if (w->ended) return;
    w->ended = 1;
    if (w->measuring) {
        take(s, &w->cur, 1);
        r->seconds = (double)(w->cur.at - w->base.at) / 1e9;
        const uint64_t *a = (const uint64_t *)&w->cur.c, *b = (const uint64_t *)&w->base.c;
        uint64_t *d = (uint64_t *)&r->c;
        for (size_t j = 0; j < sizeof r->c / sizeof(uint64_t); j++) d[j] = a[j] - b[j];
        r->lat = w->cur.lat;
        wb_hist_sub(&r->lat, &w->base.lat);
        r->cpu_user = w->cur.user - w->base.user;
        r->cpu_sys = w->cur.sys - w->base.sys;
        double wall = r->seconds > 0 ? r->seconds : 1;
        for (unsigned i = 0; i < s->nthreads; i++) {
            double b2 = (w->cur.cpu[i] - w->base.cpu[i]) / wall;
            if (b2 > r->busy_max) r->busy_max = b2;
        }
        r->server_cpu =
            w->cur.server >= 0 && w->base.server >= 0 ? w->cur.server - w->base.server : -1;
        r->ok = 1;
        /* The series' last row: what the measured time holds after the last tick (all of
         * it when the run ends before its first).  A sliver is a tick that beat this timer. */
        double rest = (double)(w->cur.at - w->prev.at) / 1e9;
        if (rest >= 0.05) second_push(w, rest);
    }
    status_clear(w);
    broadcast(s, WB_P_STOP);
    ev_timer_stop(s->main_ev, &w->tick);
    ev_timer_stop(s->main_ev, &w->rounds);
    ev_timer_stop(s->main_ev, &w->end);
}

static void series_push(wb_result *r, const wb_second *sec)
{
    if (r->nseries == r->cap_series) {
        size_t cap = r->cap_series ? r->cap_series * 2 : 64;
        wb_second *n = realloc(r->series, cap * sizeof *n);
        if (!n) return;
        r->series = n;
        r->cap_series = cap;
    }
    r->series[r->nseries++] = *sec;
}

/* Adds a row to the series, from the snapshots prev to cur (wall seconds apart); returns it. */
static wb_second second_push(watch *w, double wall)
{
    wb_state *s = w->s;
    uint64_t msgs = w->cur.c.msgs_rx - w->prev.c.msgs_rx;
    if (s->sc == &wb_scen_connect) msgs = w->cur.c.opened - w->prev.c.opened;
    double busy = 0;
    for (unsigned i = 0; i < s->nthreads; i++) {
        double b = (w->cur.cpu[i] - w->prev.cpu[i]) / wall;
        if (b > busy) busy = b;
    }
    if (busy > w->res->busy_sec_max) w->res->busy_sec_max = busy;
    wb_hist win = w->cur.lat;
    wb_hist_sub(&win, &w->prev_lat);
    uint64_t errs = 0, errs_before = 0;
    for (int e = 0; e < WB_E_COUNT; e++) {
        errs += w->cur.c.err[e];
        errs_before += w->prev.c.err[e];
    }
    wb_second sec = {.msgs = msgs,
                     .bytes = w->cur.c.bytes_rx - w->prev.c.bytes_rx,
                     .errors = errs - errs_before,
                     .p50 = wb_hist_quantile(&win, .5),
                     .p99 = wb_hist_quantile(&win, .99),
                     .max = win.count ? win.max : 0,
                     .busy = busy};
    series_push(w->res, &sec);
    return sec;
}

/* Once a second from the start of the run phase: the per-second figures. */
static void on_tick(struct ev_loop *ev, ev_timer *tw, int revents)
{
    (void)ev;
    (void)revents;
    watch *w = tw->data;
    wb_state *s = w->s;
    const wb_opts *o = s->o;
    w->seconds++;
    if (!w->measuring) {
        if (wb_now() >= w->t_measure) begin_measure(w);
        return;
    }
    take(s, &w->cur, 1);
    double wall = (double)(w->cur.at - w->prev.at) / 1e9;
    if (wall <= 0) wall = 1;
    wb_second sec = second_push(w, wall);
    uint64_t msgs = sec.msgs, errs = 0;
    for (int e = 0; e < WB_E_COUNT; e++) errs += w->cur.c.err[e];
    if (s->sc == &wb_scen_chat && !o->quiet && !o->json && !o->compare) {
        status_clear(w);
        /* Bun's client prints exactly this line each second. */
        printf("%llu messages per second (%u clients x %u msg, min delay: %ums)\n",
               (unsigned long long)msgs, s->total, s->batch_msgs, o->round_delay_ms);
        fflush(stdout);
    }
    if (o->status) {
        char a[32], b[32], lat[48] = "";
        if (sec.max)
            snprintf(lat, sizeof lat, "  p99 %s", wb_fmt_time(b, sizeof b, (double)sec.p99));
        unsigned open = (unsigned)(w->cur.c.opened - w->cur.c.closed);
        fprintf(stderr, "\r\033[K%4us  %s %s/s  %.1f MB/s%s  %u conns  %llu errors  cpu %.0f%%",
                w->seconds, wb_fmt_count(a, sizeof a, (uint64_t)((double)msgs / wall)),
                s->sc == &wb_scen_connect ? "conn" : "msg",
                (double)(w->cur.c.bytes_rx - w->prev.c.bytes_rx) / wall / 1e6, lat, open,
                (unsigned long long)errs, sec.busy * 100);
        fflush(stderr);
        w->status_shown = 1;
    }
    w->prev = w->cur;
    w->prev_lat = w->cur.lat;
}

/* --round-delay: Bun's client looks for a finished round on a fixed interval. */
static void on_rounds(struct ev_loop *ev, ev_timer *tw, int revents)
{
    (void)ev;
    (void)revents;
    watch *w = tw->data;
    wb_state *s = w->s;
    if (!__atomic_exchange_n(&s->round_done, 0, __ATOMIC_ACQ_REL)) return;
    if (s->max_rounds && __atomic_load_n(&s->chat_round, __ATOMIC_ACQUIRE) >= s->max_rounds) {
        end_run(w);
        return;
    }
    __atomic_add_fetch(&s->chat_remaining, (int64_t)s->per_round, __ATOMIC_ACQ_REL);
    __atomic_store_n(&s->round_t0, wb_now(), __ATOMIC_RELEASE);
    __atomic_add_fetch(&s->chat_round, 1, __ATOMIC_ACQ_REL);
    wb_wake_workers(s, NULL);
}

static void start_run(watch *w)
{
    wb_state *s = w->s;
    const wb_opts *o = s->o;
    s->t_run = wb_now();
    w->t_measure = s->t_run + (uint64_t)(o->warmup * 1e9);
    if (o->warmup <= 0) begin_measure(w);
    if (s->sc == &wb_scen_chat) {
        __atomic_store_n(&s->chat_remaining, (int64_t)s->per_round, __ATOMIC_RELEASE);
        __atomic_store_n(&s->round_t0, s->t_run, __ATOMIC_RELEASE);
        __atomic_store_n(&s->chat_round, 1, __ATOMIC_RELEASE);
        if (o->round_delay_ms) {
            ev_timer_init(&w->rounds, on_rounds, o->round_delay_ms / 1e3, o->round_delay_ms / 1e3);
            w->rounds.data = w;
            ev_timer_start(s->main_ev, &w->rounds);
        }
    }
    if (s->sc == &wb_scen_hold && !o->json && !o->compare) {
        printf("holding %u of %u connections\n", wb_atomic_get(&s->n_open), s->total);
        fflush(stdout);
    }
    ev_timer_init(&w->tick, on_tick, 1.0, 1.0);
    w->tick.data = w;
    ev_timer_start(s->main_ev, &w->tick);
    broadcast(s, WB_P_RUN);
}

static void check(watch *w)
{
    wb_state *s = w->s;
    const wb_opts *o = s->o;
    uint64_t now = wb_now();
    if (w->ended) {
        if (wb_atomic_get(&s->threads_done) == s->nthreads) ev_break(s->main_ev, EVBREAK_ALL);
        return;
    }
    if (*s->stop) {
        end_run(w);
        return;
    }
    int phase = phase_of(s);
    if (phase == WB_P_CONNECT) {
        unsigned settled = wb_atomic_get(&s->n_settled), open = wb_atomic_get(&s->n_open);
        int timed_out = now >= w->connect_deadline;
        if (s->sc->wait_first_message) {
            if (wb_atomic_get(&s->n_ready) == s->total) {
                start_run(w);
            } else if (timed_out || (settled == s->total && open < s->total)) {
                snprintf(w->res->fail, sizeof w->res->fail,
                         "%u of %u clients connected, %u got their first message within %.0f s%s%s",
                         open, s->total, wb_atomic_get(&s->n_ready), o->connect_timeout,
                         *first_error(s) ? ": " : "", first_error(s));
                w->failed = 1;
                end_run(w);
            }
            return;
        }
        if (settled == s->total || timed_out) {
            if (!open) {
                snprintf(w->res->fail, sizeof w->res->fail, "no connection opened%s%s",
                         *first_error(s) ? ": " : "", first_error(s));
                w->failed = 1;
                end_run(w);
                return;
            }
            start_run(w);
        }
        return;
    }
    if (phase != WB_P_RUN) return;
    if (!w->measuring && now >= w->t_measure) begin_measure(w);
    if (w->t_end && now >= w->t_end) {
        end_run(w);
        return;
    }
    unsigned open = wb_atomic_get(&s->n_open), ended = wb_atomic_get(&s->n_ended);
    if (s->sc == &wb_scen_chat && ended) {
        snprintf(w->res->fail, sizeof w->res->fail,
                 "a client's connection ended during the run%s%s", *first_error(s) ? ": " : "",
                 first_error(s));
        w->lost = 1;
        end_run(w);
        return;
    }
    if (!s->sc->start_on_run && open && ended >= open) {
        end_run(w);
        return;
    }
    /* -n: every connection (connect: every slot) reached its share. */
    unsigned need = s->sc->start_on_run || s->sc == &wb_scen_chat ? s->total : open - ended;
    if (o->count && wb_atomic_get(&s->n_done) >= need) end_run(w);
}

static void on_main_wake(struct ev_loop *ev, ev_async *aw, int revents)
{
    (void)ev;
    (void)revents;
    check(aw->data);
}

static void on_poll(struct ev_loop *ev, ev_timer *tw, int revents)
{
    (void)ev;
    (void)revents;
    watch *w = tw->data;
    check(w);
    if (!w->ended && w->s->o->status && phase_of(w->s) == WB_P_CONNECT && ++w->polls % 5 == 0) {
        fprintf(stderr, "\r\033[Kconnecting: %u of %u open", wb_atomic_get(&w->s->n_open),
                w->s->total);
        fflush(stderr);
        w->status_shown = 1;
    }
}

static const wb_scen *scen_of(int id)
{
    switch (id) {
    case WB_CHAT: return &wb_scen_chat;
    case WB_PUBSUB: return &wb_scen_pubsub;
    case WB_CONNECT: return &wb_scen_connect;
    case WB_HOLD: return &wb_scen_hold;
    default: return &wb_scen_echo;
    }
}

static int threads_init(wb_state *s, unsigned nthreads, char *why, size_t cap)
{
    s->threads = calloc(nthreads, sizeof *s->threads);
    if (!s->threads) goto nomem;
    s->nthreads = nthreads;
    uint64_t seed;
    wb_random_bytes(&seed, sizeof seed);
    for (unsigned i = 0; i < nthreads; i++) {
        wb_thread *t = &s->threads[i];
        t->s = s;
        t->idx = i;
        t->tfd = -1;
        t->rng = (seed ^ (0x9E3779B97F4A7C15ull * (i + 1))) | 1;
        t->nconns = s->total / nthreads + (i < s->total % nthreads);
        t->conns = calloc(t->nconns ? t->nconns : 1, sizeof *t->conns);
        t->rbuf = malloc(WB_RBUF);
        t->open = calloc(t->nconns ? t->nconns : 1, sizeof *t->open);
        t->ev = ev_loop_new(EVFLAG_AUTO);
        if (!t->conns || !t->rbuf || !t->open || !t->ev) goto nomem;
        for (unsigned j = 0; j < t->nconns; j++) {
            wb_conn *c = &t->conns[j];
            c->t = t;
            c->id = i + j * nthreads;
            c->io.fd = -1;
        }
        wb_hist_reset(&t->lat);
        wb_hist_reset(&t->conn);
        ev_prepare_init(&t->prep, on_prepare);
        t->prep.data = t;
        ev_prepare_start(t->ev, &t->prep);
        ev_async_init(&t->wake, on_wake);
        t->wake.data = t;
        ev_async_start(t->ev, &t->wake);
        ev_timer_init(&t->timer, on_timer, 0.1, 0.1);
        t->timer.data = t;
        ev_timer_start(t->ev, &t->timer);
    }
    return 0;
nomem:
    snprintf(why, cap, "out of memory");
    return -1;
}

static void threads_free(wb_state *s)
{
    for (unsigned i = 0; i < s->nthreads; i++) {
        wb_thread *t = &s->threads[i];
        for (unsigned j = 0; j < t->nconns; j++) {
            wb_conn *c = &t->conns[j];
            if (c->io.fd >= 0) close(c->io.fd);
            if (c->cold) {
                if (c->cold->tls) wb_tls_free(c->cold->tls);
                if (c->cold->inflater) wsk_pmd_inflater_free(c->cold->inflater);
                free(c->cold->zmsg);
                free(c->cold);
            }
            free(c->ring);
            free(c->own);
        }
        if (t->tfd >= 0) close(t->tfd);
        if (t->ev) ev_loop_destroy(t->ev);
        free(t->conns);
        free(t->rbuf);
        free(t->open);
    }
    free(s->threads);
}

int wb_run(const wb_opts *o, const char *url, wb_result *res, volatile int *stop)
{
    wb_state *s = calloc(1, sizeof *s);
    watch *w = calloc(1, sizeof *w);
    int rc = -1;
    if (!s || !w) {
        snprintf(res->fail, sizeof res->fail, "out of memory");
        free(s);
        free(w);
        return -1;
    }
    snprintf(res->url, sizeof res->url, "%s", url);
    res->scenario = o->scenario;
    res->server_cpu = -1;
    wb_hist_reset(&res->lat);
    wb_hist_reset(&res->conn);
    s->o = o;
    s->sc = scen_of(o->scenario);
    s->stop = stop;
    s->total = o->conns;
    res->conns_wanted = s->total;
    unsigned nthreads = o->threads ? o->threads : 1;
    if (nthreads > s->total && s->total) nthreads = s->total;
    if (nthreads > WB_MAX_THREADS) nthreads = WB_MAX_THREADS;
    res->threads = nthreads;
    if (resolve(s, url, res->fail, sizeof res->fail) < 0) goto out;
    if (raise_nofile(s->total, res->fail, sizeof res->fail) < 0) goto out;
    if (s->secure) {
        s->tls = wb_tls_conf_new(o, s->host, res->fail, sizeof res->fail);
        if (!s->tls) goto out;
    }
    if (o->compress) {
        wsk_pmd_config cfg = {.compress = WSK_COMPRESS_SHARED,
                              .decompress = WSK_COMPRESS_DEDICATED};
        if (wsk_pmd_client_offer(&cfg, s->offer, sizeof s->offer) < 0) s->offer[0] = 0;
    }
    if (s->sc->setup && s->sc->setup(s, res->fail, sizeof res->fail) < 0) goto out;
    if (threads_init(s, nthreads, res->fail, sizeof res->fail) < 0) goto out_scen;

    s->main_ev = ev_loop_new(EVFLAG_AUTO);
    if (!s->main_ev) {
        snprintf(res->fail, sizeof res->fail, "no event loop");
        goto out_threads;
    }
    w->s = s;
    w->res = res;
    w->connect_deadline = wb_now() + (uint64_t)(o->connect_timeout * 1e9);
    ev_async_init(&s->main_wake, on_main_wake);
    s->main_wake.data = w;
    ev_async_start(s->main_ev, &s->main_wake);
    ev_timer_init(&w->poll, on_poll, 0.05, 0.05);
    w->poll.data = w;
    ev_timer_start(s->main_ev, &w->poll);

    unsigned started = 0;
    for (unsigned i = 0; i < nthreads; i++) {
        wb_thread *t = &s->threads[i];
        if (pthread_create(&t->tid, NULL, worker_main, t) != 0) {
            snprintf(res->fail, sizeof res->fail, "cannot start thread %u", i);
            break;
        }
        pthread_getcpuclockid(t->tid, &t->cpu_clock);
        started++;
    }
    if (started == nthreads) {
        if (s->sc->start_on_run) start_run(w);
        ev_run(s->main_ev, 0);
    } else {
        broadcast(s, WB_P_STOP);
    }
    for (unsigned i = 0; i < started; i++) pthread_join(s->threads[i].tid, NULL);
    status_clear(w);

    /* Connection counts and errors cover the whole run, the stop included. */
    wb_counters all = {0};
    wb_hist conn;
    wb_hist_reset(&conn);
    for (unsigned i = 0; i < s->nthreads; i++) {
        const uint64_t *a = (const uint64_t *)&s->threads[i].st;
        uint64_t *d = (uint64_t *)&all;
        for (size_t j = 0; j < sizeof all / sizeof(uint64_t); j++) d[j] += a[j];
        wb_hist_add(&conn, &s->threads[i].conn);
    }
    res->opened_all = all.opened;
    res->c.deflate = all.deflate;
    memcpy(res->c.err, all.err, sizeof all.err);
    res->conn = conn;
    res->conns_open = s->n_open;
    if (*first_error(s) && !res->fail[0])
        snprintf(res->fail, sizeof res->fail, "%s", first_error(s));
    rc = res->ok && !w->failed && !w->lost ? 0 : -1;
    if (w->failed) res->ok = 0;
    ev_loop_destroy(s->main_ev);
out_threads:
    threads_free(s);
out_scen:
    if (s->sc->teardown) s->sc->teardown(s);
out:
    if (s->tls) wb_tls_conf_free(s->tls);
    free(s);
    free(w);
    return rc;
}

void wb_result_free(wb_result *r)
{
    free(r->series);
    r->series = NULL;
    r->nseries = r->cap_series = 0;
}

double wb_rate(const wb_result *r)
{
    if (r->seconds <= 0) return 0;
    if (r->scenario == WB_CONNECT) return (double)r->c.opened / r->seconds;
    return (double)r->c.msgs_rx / r->seconds;
}

double wb_saturated(const wb_result *r)
{
    return r->busy_max >= 0.9 ? r->busy_max : 0;
}
