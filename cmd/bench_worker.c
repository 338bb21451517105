/* wsbench worker threads: each runs one libev loop with its share of the connections
 * (bench_conn.c), the scenario's turn before each flush, the deadlines (connect, close, stop),
 * and the open-loop timer.  See bench_engine.h; the main thread's side is bench_run.c.
 *
 * The per-message work is what decides whether wsbench or the server is measured, so:
 *  - one clock read per read(2) and per turn, not per message;
 *  - counters are per thread, updated once per read with plain stores, and read by the main
 *    thread with atomic loads once a second. */
#include "bench_engine.h"

#include "internal.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

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

void wb_counts_flush(wb_thread *t)
{
    if (!t->rx_msgs) return;
    wb_add(&t->st.msgs_rx, t->rx_msgs);
    wb_add(&t->st.bytes_rx, t->rx_bytes);
    t->rx_turn += t->rx_msgs;
    t->rx_msgs = t->rx_bytes = 0;
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
            wb_conn_end(t, c);
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
    int phase = wb_phase(s);
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

/* The end of a loop turn: the scenario's turn, then this turn's writes (the library's own
 * flush watcher may run before this one). */
static void on_prepare(struct ev_loop *ev, ev_prepare *w, int revents)
{
    (void)ev;
    (void)revents;
    wb_thread *t = w->data;
    const wb_state *s = t->s;
    t->now = wb_now();
    if (s->sc->turn) s->sc->turn(t);
    wsk_loop_reap(t->loop);
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
            wb_conn_end(t, c);
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
            wb_conn_end(t, c);
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

void *wb_worker_main(void *arg)
{
    wb_thread *t = arg;
    wb_state *s = t->s;
    wb_conns_start(t);
    ev_run(t->ev, 0);
    __atomic_store_n(&t->done, 1, __ATOMIC_RELEASE);
    wb_atomic_inc(&s->threads_done);
    wb_wake_main(s);
    return NULL;
}

/* ----- threads ------------------------------------------------------------------------------ */

int wb_threads_init(wb_state *s, unsigned nthreads, char *why, size_t cap)
{
    s->threads = calloc(nthreads, sizeof *s->threads);
    if (!s->threads) goto nomem;
    uint64_t seed;
    wb_random_bytes(&seed, sizeof seed);
    for (unsigned i = 0; i < nthreads; i++) {
        wb_thread *t = &s->threads[i];
        s->nthreads = i + 1; /* wb_threads_free frees this one too, should it fail halfway */
        t->s = s;
        t->idx = i;
        t->tfd = -1;
        t->rng = (seed ^ (0x9E3779B97F4A7C15ull * (i + 1))) | 1;
        t->nconns = s->total / nthreads + (i < s->total % nthreads);
        t->conns = calloc(t->nconns ? t->nconns : 1, sizeof *t->conns);
        t->open = calloc(t->nconns ? t->nconns : 1, sizeof *t->open);
        t->ev = ev_loop_new(EVFLAG_AUTO);
        if (!t->conns || !t->open || !t->ev) goto nomem;
        for (unsigned j = 0; j < t->nconns; j++) {
            wb_conn *c = &t->conns[j];
            c->t = t;
            c->id = i + j * nthreads;
            c->io.fd = -1;
        }
        if (wb_thread_conns_init(t, why, cap) < 0) return -1;
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

void wb_threads_free(wb_state *s)
{
    for (unsigned i = 0; i < s->nthreads; i++) {
        wb_thread *t = &s->threads[i];
        if (t->conns) wb_thread_conns_free(t);
        for (unsigned j = 0; j < t->nconns && t->conns; j++) {
            free(t->conns[j].ring);
            free(t->conns[j].own);
            wsk_tls_session_free(t->conns[j].tls);
        }
        if (t->tfd >= 0) close(t->tfd);
        if (t->ev) ev_loop_destroy(t->ev);
        free(t->conns);
        free(t->open);
    }
    free(s->threads);
}
