/* Churn against a server group: 100 client threads, each with a loop of its own, connect to a
 * 4-loop group listening on one port with SO_REUSEPORT, and round after round subscribe,
 * publish, unsubscribe and disconnect (a close handshake or an abrupt terminate), while the
 * other threads' publishes cross loops.  Bounded: ROUNDS rounds per thread, and a deadline.
 * Afterwards the group's table is empty again, a shutdown ends the group, and ASan or TSan
 * (make tsan) have nothing to report.  The servers obey group_cmd.h. */
#include "test.h"
#include "group_cmd.h"
#include "wskit.h"

#include <pthread.h>

#define LOOPS   4
#define THREADS 100
#define ROUNDS  10

static wsk_group *grp;
static wsk_server *srv[LOOPS];
static unsigned port;
static atomic_int ran;
static atomic_long received, rounds_done, failures;
static atomic_long asked = -1;
static double deadline;

struct cli {
    unsigned id;
    int round, step, closed;
    char topic[16];
    struct ev_loop *ev;
    wsk_loop *loop;
    ev_timer guard;
};

static void send_cmd(wsk_ws *ws, char c, const char *topic, const char *payload)
{
    char m[64];
    int n =
        snprintf(m, sizeof m, "%c%s%s%s", c, topic, payload ? "\n" : "", payload ? payload : "");
    wsk_send(ws, m, (size_t)n, WSK_OP_TEXT, 0);
}

static void c_open(wsk_ws *ws)
{
    struct cli *c = wsk_ws_data(ws);
    c->step = 0;
    send_cmd(ws, 's', c->topic, NULL);
}

static void c_message(wsk_ws *ws, const void *data, size_t len, wsk_opcode op)
{
    (void)op;
    struct cli *c = wsk_ws_data(ws);
    if (len != 2 || memcmp(data, "ok", 2)) {
        atomic_fetch_add(&received, 1);
        return;
    }
    if (c->step++ == 0) { /* subscribed: publish, then leave */
        send_cmd(ws, 'p', c->topic, "churn");
        send_cmd(ws, 'u', c->topic, NULL);
    } else if ((c->id + (unsigned)c->round) % 2) {
        wsk_close(ws, 1000, NULL, 0);
    } else {
        wsk_terminate(ws);
    }
}

static void c_error(wsk_ws *ws, int err, const char *msg)
{
    (void)ws;
    (void)err;
    (void)msg;
    atomic_fetch_add(&failures, 1);
}

static void c_close(wsk_ws *ws, unsigned code, const char *reason, size_t len)
{
    (void)code;
    (void)reason;
    (void)len;
    struct cli *c = wsk_ws_data(ws);
    c->closed = 1;
    ev_timer_stop(c->ev, &c->guard);
}

static void on_guard(struct ev_loop *ev, ev_timer *w, int revents)
{
    (void)revents;
    (void)w;
    ev_break(ev, EVBREAK_ALL); /* the deadline: the loop is abandoned */
}

static void *client_thread(void *arg)
{
    struct cli *c = arg;
    c->ev = ev_loop_new(0);
    c->loop = wsk_loop_new(c->ev);
    wsk_loop_set_log(c->loop, WSK_LOG_ERROR, NULL, NULL);
    /* Topics shared by several threads (c.0 .. c.7), and every fifth thread on a pattern. */
    snprintf(c->topic, sizeof c->topic, c->id % 5 ? "c.%u" : "c.*", c->id % 8);
    char url[64];
    snprintf(url, sizeof url, "ws://127.0.0.1:%u/", port);
    wsk_handlers h = {.open = c_open, .message = c_message, .error = c_error, .close = c_close};
    for (c->round = 0; c->round < ROUNDS && test_now() < deadline; c->round++) {
        int err;
        c->closed = 0;
        if (!wsk_connect(c->loop, url, NULL, &h, c, &err)) break;
        ev_timer_init(&c->guard, on_guard, deadline - test_now(), 0);
        ev_timer_start(c->ev, &c->guard);
        ev_run(c->ev, 0);
        if (!c->closed) break;
        atomic_fetch_add(&rounds_done, 1);
    }
    ev_timer_stop(c->ev, &c->guard);
    wsk_loop_free(c->loop);
    ev_loop_destroy(c->ev);
    return NULL;
}

static void *run_group(void *arg)
{
    (void)arg;
    wsk_group_run(grp);
    atomic_store(&ran, 1);
    return NULL;
}

static void ask_topics(void *arg, wsk_loop *loop)
{
    (void)arg;
    (void)loop;
    atomic_store(&asked, (long)wsk_server_topics(srv[3]));
}

static void shut(void *arg, wsk_loop *loop)
{
    (void)arg;
    (void)loop;
    wsk_group_shutdown(grp, 1001, NULL, 1);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    grp = wsk_group_new(LOOPS, NULL);
    if (!grp) abort();
    wsk_server_opts o;
    wsk_server_opts_init(&o);
    o.reuse_port = 1;
    wsk_handlers h = {.message = cmd_message};
    for (unsigned i = 0; i < LOOPS; i++) {
        wsk_loop_set_log(wsk_group_loop(grp, i), WSK_LOG_ERROR, NULL, NULL);
        srv[i] = wsk_server_new(wsk_group_loop(grp, i), &o, &h, NULL);
        if (!srv[i] || wsk_server_listen(srv[i], "127.0.0.1", port) < 0) abort();
        port = wsk_server_port(srv[i]);
        if (wsk_group_add(grp, srv[i]) < 0) abort();
    }
    pthread_t g;
    if (pthread_create(&g, NULL, run_group, NULL)) abort();

    deadline = test_now() + 60;
    static struct cli cl[THREADS];
    static pthread_t th[THREADS];
    for (unsigned i = 0; i < THREADS; i++) {
        cl[i].id = i;
        if (pthread_create(&th[i], NULL, client_thread, &cl[i])) abort();
    }
    for (unsigned i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    CHECK(atomic_load(&rounds_done) == THREADS * ROUNDS,
          "%d threads x %d rounds of subscribe, publish, unsubscribe, disconnect (%ld done)",
          THREADS, ROUNDS, atomic_load(&rounds_done));
    CHECK(atomic_load(&failures) == 0, "no client failed (%ld)", atomic_load(&failures));
    printf("# %ld messages crossed to subscribers\n", atomic_load(&received));

    wsk_group_call(grp, 3, ask_topics, NULL);
    SPIN_UNTIL(atomic_load(&asked) >= 0, usleep(1000));
    CHECK(atomic_load(&asked) == 0, "every topic left: the group's table is empty (%ld)",
          atomic_load(&asked));
    wsk_group_call(grp, 0, shut, NULL);
    SPIN_UNTIL(atomic_load(&ran), usleep(1000));
    CHECK(atomic_load(&ran), "shutdown: wsk_group_run returns");
    if (!atomic_load(&ran)) return TEST_DONE(); /* a loop hangs: nothing can be freed */
    pthread_join(g, NULL);
    for (unsigned i = 0; i < LOOPS; i++) wsk_server_free(srv[i]);
    wsk_group_free(grp);
    return TEST_DONE();
}
