/* Unit tests of name resolution off the loop (lib/io_resolve.c) and of the client's connect
 * timeout counting DNS (lib/client.c).
 *
 * A resolver that hangs is hard to get on loopback, so this program brings its own: it defines
 * getaddrinfo, which the library's references resolve to (the executable's definition comes
 * before libc's).  The name "slow.test" blocks until the test releases it; everything else goes
 * to the real getaddrinfo. */
#include "io_resolve.h"
#include "test.h"
#include "wskit.h"

#include <dlfcn.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int released; /* under mu: slow lookups may return */
static atomic_int slow_calls, slow_returns;

int getaddrinfo(const char *host, const char *port, const struct addrinfo *hints,
                struct addrinfo **res)
{
    static int (*real)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
    if (host && !strcmp(host, "slow.test") && !(hints && hints->ai_flags & AI_NUMERICHOST)) {
        struct timespec end;
        clock_gettime(CLOCK_REALTIME, &end);
        end.tv_sec += 10; /* bounded, whatever the test does */
        atomic_fetch_add(&slow_calls, 1);
        pthread_mutex_lock(&mu);
        while (!released && pthread_cond_timedwait(&cv, &mu, &end) == 0) {
        }
        pthread_mutex_unlock(&mu);
        atomic_fetch_add(&slow_returns, 1);
        return EAI_NONAME;
    }
    if (!real) *(void **)&real = dlsym(RTLD_NEXT, "getaddrinfo");
    return real(host, port, hints, res);
}

static void release(void)
{
    pthread_mutex_lock(&mu);
    released = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Runs the loop until *flag or `seconds` pass. */
static void run_until(struct ev_loop *ev, const int *flag, double seconds)
{
    double end = now() + seconds;
    while (!*flag && now() < end) ev_run(ev, EVRUN_ONCE);
}

/* Waits (without the loop) until the slow lookups in flight have returned. */
static int threads_done(double seconds)
{
    double end = now() + seconds;
    while (atomic_load(&slow_returns) < atomic_load(&slow_calls) && now() < end) {
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    return atomic_load(&slow_returns) == atomic_load(&slow_calls);
}

struct outcome {
    int done, err;
    struct addrinfo *res;
};

static void got(void *arg, struct addrinfo *res, int err, int sys_err)
{
    struct outcome *o = arg;
    (void)sys_err;
    o->done = 1;
    o->err = err;
    o->res = res;
}

static int ticks;
static void on_tick(struct ev_loop *ev, ev_timer *w, int revents)
{
    (void)ev;
    (void)w;
    (void)revents;
    ++ticks;
}

static void lookups(struct ev_loop *ev)
{
    struct outcome o = {0};
    struct addrinfo *res;
    int err;

    wsk_lookup *l = wsk_lookup_start(ev, "127.0.0.1", "80", got, &o, &res, &err);
    CHECK(!l && !err && res && res->ai_family == AF_INET && atomic_load(&slow_calls) == 0,
          "an address resolves at once, without a thread");
    if (res) freeaddrinfo(res);

    /* While the name hangs, the loop runs: a 10 ms timer keeps firing. */
    ev_timer tick;
    ev_timer_init(&tick, on_tick, 0.01, 0.01);
    ev_timer_start(ev, &tick);
    l = wsk_lookup_start(ev, "slow.test", "80", got, &o, &res, &err);
    CHECK(l != NULL && !err, "a name is looked up on a thread");
    int five = 0;
    double end = now() + 5;
    while (ticks < 5 && now() < end) ev_run(ev, EVRUN_ONCE);
    five = ticks >= 5;
    CHECK(five && !o.done && atomic_load(&slow_returns) == 0,
          "the loop runs while the name is being resolved (%d timer ticks)", ticks);
    ev_timer_stop(ev, &tick);
    release();
    run_until(ev, &o.done, 5);
    CHECK(o.done && o.err == EAI_NONAME && !o.res, "the answer comes back on the loop");

    /* Cancelled: the callback never runs, the thread ends on its own. */
    pthread_mutex_lock(&mu);
    released = 0;
    pthread_mutex_unlock(&mu);
    struct outcome c = {0};
    int calls = atomic_load(&slow_calls);
    l = wsk_lookup_start(ev, "slow.test", "80", got, &c, &res, &err);
    end = now() + 5;
    while (atomic_load(&slow_calls) == calls && now() < end) ev_run(ev, EVRUN_NOWAIT);
    wsk_lookup_cancel(l);
    release();
    int ended = threads_done(5);
    ev_run(ev, EVRUN_NOWAIT);
    CHECK(l && ended && !c.done, "a cancelled lookup: no callback, the thread ends alone");
}

struct client_result {
    int done, err;
    char msg[200];
};

static void on_error(wsk_ws *ws, int err, const char *msg)
{
    struct client_result *r = wsk_ws_data(ws);
    r->err = err;
    snprintf(r->msg, sizeof r->msg, "%s", msg);
}

static void on_close(wsk_ws *ws, unsigned code, const char *reason, size_t len)
{
    struct client_result *r = wsk_ws_data(ws);
    (void)code;
    (void)reason;
    (void)len;
    r->done++;
}

static void connect_timeout(void)
{
    wsk_loop *loop = wsk_loop_new(NULL);
    struct ev_loop *ev = wsk_loop_ev(loop);
    wsk_client_opts o;
    wsk_client_opts_init(&o);
    o.connect_timeout = 1;
    wsk_handlers h = {.error = on_error, .close = on_close};
    struct client_result r = {0};
    pthread_mutex_lock(&mu);
    released = 0;
    pthread_mutex_unlock(&mu);
    double t0 = now();
    wsk_ws *ws = wsk_connect(loop, "ws://slow.test:1/", &o, &h, &r, NULL);
    run_until(ev, &r.done, 5);
    double dt = now() - t0;
    CHECK(ws && r.done && r.err == WSK_ERR_TIMEOUT && strstr(r.msg, "resolving slow.test") &&
              dt >= 0.9 && dt < 3,
          "--connect-timeout counts DNS: a hanging name fails after 1 s (%.2f s: %s)", dt, r.msg);
    release();
    CHECK(threads_done(5), "the abandoned lookup's thread ends once the name returns");

    /* Terminated while the name is being resolved: the close handler once, nothing after. */
    pthread_mutex_lock(&mu);
    released = 0;
    pthread_mutex_unlock(&mu);
    struct client_result t = {0};
    int calls = atomic_load(&slow_calls);
    ws = wsk_connect(loop, "ws://slow.test:1/", &o, &h, &t, NULL);
    double end = now() + 5;
    while (atomic_load(&slow_calls) == calls && now() < end) ev_run(ev, EVRUN_NOWAIT);
    wsk_terminate(ws);
    release();
    int ended = threads_done(5);
    for (int i = 0; i < 5; ++i) ev_run(ev, EVRUN_NOWAIT);
    CHECK(ended && t.done == 1 && t.err == 0,
          "wsk_terminate while resolving: closed once, the lookup's answer ignored");
    wsk_loop_free(loop);
}

int main(void)
{
    struct ev_loop *ev = ev_loop_new(0);
    lookups(ev);
    ev_loop_destroy(ev);
    connect_timeout();
    return TEST_DONE();
}
