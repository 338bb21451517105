/* The cost of a cross-loop publish, for scripts/bench-threads: CPU time per message per target
 * loop that a server group spends to carry a publish from loop 0 to subscribers on T other
 * loops, against the same subscribers on loop 0 itself (the overhead is the difference).
 *
 *   bench_group [T [MESSAGES]]        (T other loops, 2 by default; 20000 messages)
 *
 * One line per case, stable for scripts:
 *   bench_group size=16 mode=batch targets=2 msgs=20000 cross_ns=... local_ns=... overhead_ns=...
 * cross_ns: CPU of every loop thread (CLOCK_THREAD_CPUTIME_ID, read on each loop) per message
 * per subscriber, the subscribers on other loops; local_ns: the same with them on loop 0;
 * overhead_ns = cross_ns - local_ns: what crossing loops adds, per message per target loop.
 * mode=batch publishes 100 messages per loop turn (one wake-up per target per 100, at most
 * two batches unread), mode=single one message at a time (the next once every subscriber has
 * read it: one wake-up and one write per message).  Then two lines weigh the two ways of handing
 * one message to several loops (group_topics.c): one shared copy with an atomic reference count, or
 * a copy per loop: bench_group share size=16 atomic_ns=... copy_ns=... Each subscriber is a plain
 * socket whose bytes a reader thread counts and drops. */
#include "test.h"
#include "group_cmd.h"
#include "rawws.h"
#include "wskit.h"

#include <pthread.h>

#define MAXT  8
#define BATCH 100

static wsk_group *grp;
static wsk_server *srv[MAXT + 1];
static unsigned nloops;
static atomic_long cpu_ns; /* summed by every loop */
static atomic_int counted;
static atomic_int ran;

struct sub {
    int fd, open, eof;
    uint8_t *buf;
    size_t len, cap;
    long msgs, oks;
};

static long now_thread_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* On every loop: adds -start (arg 0) or +end (arg 1) of its thread's CPU clock. */
static void cpu_mark(void *arg, wsk_loop *loop)
{
    (void)loop;
    long t = now_thread_ns();
    atomic_fetch_add(&cpu_ns, arg ? t : -t);
    atomic_fetch_add(&counted, 1);
}

static void cpu_all(int end)
{
    atomic_store(&counted, 0);
    wsk_group_call(grp, WSK_GROUP_ALL, cpu_mark, (void *)(intptr_t)end);
    SPIN_UNTIL(atomic_load(&counted) == (int)nloops, usleep(100));
}

/* The publisher, on loop 0: `per` messages of `size` bytes in one loop turn, each time the
 * reader asks (so queues stay short: what is measured is the group, not memory growth). */
static struct {
    size_t size, per;
    uint8_t data[16384];
} pub;

static void publish_some(void *arg, wsk_loop *loop)
{
    (void)arg;
    (void)loop;
    for (size_t i = 0; i < pub.per; i++)
        wsk_server_publish(srv[0], "b", 1, pub.data, pub.size, WSK_OP_BINARY, 0);
}

static void read_sub(struct sub *s)
{
    if (!rawws_read(s->fd, &s->buf, &s->len, &s->cap, &s->open, &s->eof)) return;
    size_t hl, off = 0;
    uint64_t n;
    while (rawws_frame(s->buf + off, s->len - off, &hl, &n)) {
        if ((s->buf[off] & 15) == 2) s->msgs++;
        if ((s->buf[off] & 15) == 1) s->oks++;
        off += hl + (size_t)n;
    }
    memmove(s->buf, s->buf + off, s->len - off);
    s->len -= off;
}

static void subscribe(struct sub *s, unsigned loop)
{
    memset(s, 0, sizeof *s);
    if ((s->fd = rawws_connect(wsk_server_port(srv[loop]), "")) < 0) abort();
    SPIN_UNTIL(s->open, (usleep(100), read_sub(s)));
    static const uint8_t cmd[] = {0x81, 0x82, 0, 0, 0, 0, 's', 'b'};
    if (send(s->fd, cmd, sizeof cmd, 0) < 0) abort();
    SPIN_UNTIL(s->oks, (usleep(100), read_sub(s))); /* "ok" */
}

static atomic_long asked;

static void ask(void *arg, wsk_loop *loop)
{
    (void)arg;
    (void)loop;
    atomic_store(&asked, (long)wsk_server_subscribers(srv[0], "b", 1));
}

/* The group's subscribers of "b", read on loop 0. */
static long subscribers(void)
{
    atomic_store(&asked, -1);
    wsk_group_call(grp, 0, ask, NULL);
    SPIN_UNTIL(atomic_load(&asked) >= 0, usleep(100));
    return atomic_load(&asked);
}

/* Publishes msgs messages with subscribers on loops 1..t (cross) or all on loop 0; the loops'
 * CPU per message per subscriber, in ns (-1 when they did not all arrive). */
static double run_case(unsigned t, long msgs, size_t size, size_t per, int cross)
{
    struct sub subs[MAXT];
    for (unsigned i = 0; i < t; i++) subscribe(&subs[i], cross ? i + 1 : 0);
    pub.size = size;
    pub.per = per;
    atomic_store(&cpu_ns, 0);
    cpu_all(0);
    long sent = 0;
    double until = test_now() + 60;
    for (;;) {
        long least = msgs;
        for (unsigned i = 0; i < t; i++)
            if (subs[i].msgs < least) least = subs[i].msgs;
        /* At most two batches in flight (one message in single mode). */
        while (sent < msgs && sent - least < (long)(per > 1 ? 2 * per : 1)) {
            wsk_group_call(grp, 0, publish_some, NULL);
            sent += (long)per;
        }
        int done = 1;
        struct pollfd p[MAXT];
        for (unsigned i = 0; i < t; i++) p[i] = (struct pollfd){.fd = subs[i].fd, .events = POLLIN};
        poll(p, t, 10);
        for (unsigned i = 0; i < t; i++) {
            read_sub(&subs[i]);
            done &= subs[i].msgs >= msgs;
        }
        if (done || test_now() > until) break;
    }
    cpu_all(1);
    int all = 1;
    for (unsigned i = 0; i < t; i++) {
        all &= subs[i].msgs == msgs;
        close(subs[i].fd);
        free(subs[i].buf);
    }
    /* Wait until the servers saw the clients go (the next case counts its own). */
    SPIN_UNTIL(subscribers() == 0, usleep(1000));
    return all ? (double)atomic_load(&cpu_ns) / ((double)msgs * t) : -1;
}

/* ----- sharing one copy across threads, or copying per loop --------------------------------- */

static atomic_uint shared_refs;
static atomic_int go;

static void *dec_thread(void *arg)
{
    long n = (long)(intptr_t)arg;
    while (!atomic_load(&go)) {
    }
    for (long i = 0; i < n; i++) atomic_fetch_sub_explicit(&shared_refs, 1, memory_order_acq_rel);
    return NULL;
}

/* ns per loop of the two ways: the atomic decrement each loop makes on a count that another
 * thread also decrements (its cache line moves between cores), and a loop's own copy. */
static void share_or_copy(size_t size)
{
    const long n = 2000000;
    atomic_store(&shared_refs, (unsigned)(2 * n));
    atomic_store(&go, 0);
    pthread_t th;
    pthread_create(&th, NULL, dec_thread, (void *)(intptr_t)n);
    double t0 = test_now();
    atomic_store(&go, 1);
    for (long i = 0; i < n; i++) atomic_fetch_sub_explicit(&shared_refs, 1, memory_order_acq_rel);
    pthread_join(th, NULL);
    double atomic_ns = (test_now() - t0) * 1e9 / (double)n;

    const long m = size > 1024 ? 200000 : 2000000;
    static uint8_t src[16384];
    volatile uint8_t sink = 0;
    t0 = test_now();
    for (long i = 0; i < m; i++) {
        uint8_t *p = malloc(size);
        memcpy(p, src, size);
        sink ^= p[size - 1];
        free(p);
    }
    double copy_ns = (test_now() - t0) * 1e9 / (double)m;
    (void)sink;
    printf("bench_group share size=%zu atomic_ns=%.1f copy_ns=%.1f\n", size, atomic_ns, copy_ns);
}

static void *run_group(void *arg)
{
    (void)arg;
    wsk_group_run(grp);
    atomic_store(&ran, 1);
    return NULL;
}

static void shut(void *arg, wsk_loop *loop)
{
    (void)arg;
    (void)loop;
    wsk_group_shutdown(grp, 1001, NULL, 0);
}

int main(int argc, char **argv)
{
    unsigned t = argc > 1 ? (unsigned)atoi(argv[1]) : 2;
    long msgs = argc > 2 ? atol(argv[2]) : 20000;
    if (t < 1 || t > MAXT || msgs < 1) {
        fprintf(stderr, "usage: bench_group [TARGETS 1..%d [MESSAGES]]\n", MAXT);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    nloops = t + 1;
    grp = wsk_group_new(nloops, NULL);
    wsk_handlers h = {.message = cmd_message};
    wsk_server_opts o;
    wsk_server_opts_init(&o);
    o.backpressure_limit = (size_t)msgs * 1100; /* the publisher does not wait for readers */
    for (unsigned i = 0; i < nloops; i++) {
        wsk_loop_set_log(wsk_group_loop(grp, i), WSK_LOG_ERROR, NULL, NULL);
        srv[i] = wsk_server_new(wsk_group_loop(grp, i), &o, &h, NULL);
        if (!srv[i] || wsk_server_listen(srv[i], "127.0.0.1", 0) < 0 || wsk_group_add(grp, srv[i]))
            abort();
    }
    pthread_t g;
    pthread_create(&g, NULL, run_group, NULL);
    memset(pub.data, 'x', sizeof pub.data);

    static const size_t sizes[2] = {16, 1024};
    for (int s = 0; s < 2; s++) {
        for (int mode = 0; mode < 2; mode++) {
            size_t per = mode ? 1 : BATCH;
            long n = mode ? msgs / 10 : msgs; /* a message at a time is slow: fewer */
            double cross = run_case(t, n, sizes[s], per, 1);
            double local = run_case(t, n, sizes[s], per, 0);
            printf("bench_group size=%zu mode=%s targets=%u msgs=%ld cross_ns=%.0f local_ns=%.0f "
                   "overhead_ns=%.0f\n",
                   sizes[s], mode ? "single" : "batch", t, n, cross, local, cross - local);
            fflush(stdout);
        }
    }
    share_or_copy(16);
    share_or_copy(16384);

    wsk_group_call(grp, 0, shut, NULL);
    SPIN_UNTIL(atomic_load(&ran), usleep(1000));
    if (!atomic_load(&ran)) return 1;
    pthread_join(g, NULL);
    for (unsigned i = 0; i < nloops; i++) wsk_server_free(srv[i]);
    wsk_group_free(grp);
    (void)test_n; /* test.h's checks are not used: this program only measures */
    return TEST_DONE();
}
