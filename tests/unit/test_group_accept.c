/* The acceptor mode of a server group (WSK_ACCEPT_ROUND_ROBIN): three loops, member 0 alone
 * listening.  A chain of library clients connects one after the other: the connections open
 * on members 0, 1, 2, 0, 1, 2... exactly, each member counts its own in `accepted`, and none
 * is lost.  Once member 2 has shut down it gets no more: the next ones alternate over 0 and 1.
 * With max_connections 1 each, a full member is skipped, and while every member is full member 0
 * stops accepting until one has room again.  A member that fills up before it learns of a
 * socket on its way closes it: a failed hand-off, counted once (wsk_group_handoffs_failed,
 * wsk_stats.handoffs_failed on the acceptor, the metrics text).
 * Then two TLS members, RR too: the handshakes run on the adopting loop, two each.
 * A TSan target (make tsan): the hand-off crosses threads through the inboxes.
 * Certificates come from scripts/mkcerts (the TLS part is skipped without openssl). */
#include "test.h"
#include "rawws.h"
#include "wskit.h"

#include <pthread.h>
#include <unistd.h>
#include <stdatomic.h>

#define LOOPS  3
#define ROUNDS 4 /* connections per member, each part */
#define MAXSEQ 64

static wsk_group *grp;
static wsk_server *srv[LOOPS];
static atomic_int opened[LOOPS];     /* connections each member opened */
static atomic_int seq[MAXSEQ], nseq; /* the member of each open, in order */
static atomic_int ran;

static void srv_open(wsk_ws *ws)
{
    unsigned i = 0;
    wsk_server_group(wsk_ws_server(ws), &i);
    atomic_fetch_add(&opened[i], 1);
    int k = atomic_fetch_add(&nseq, 1);
    if (k < MAXSEQ) atomic_store(&seq[k], (int)i);
}

static void *run_group(void *arg)
{
    (void)arg;
    wsk_group_run(grp);
    atomic_store(&ran, 1);
    return NULL;
}

static atomic_int shut; /* member 2 began its shutdown */

static void shut_two(void *arg, wsk_loop *loop)
{
    (void)arg;
    (void)loop;
    wsk_server_shutdown(srv[2], 1001, NULL, 0, NULL);
    atomic_store(&shut, 1);
}

/* ----- the clients: one chain, each connection after the previous one closed --------------- */

static wsk_loop *cloop;
static struct ev_loop *cev;
static char url[64], ca[512];
static int done, failed, target;

static void chain_next(void);

static void cl_open(wsk_ws *ws)
{
    wsk_close(ws, 1000, NULL, 0);
}

static void cl_close(wsk_ws *ws, unsigned code, const char *reason, size_t reason_len)
{
    (void)ws;
    (void)reason;
    (void)reason_len;
    if (code != 1000) failed++;
    done++;
    chain_next();
}

static void chain_next(void)
{
    static const wsk_handlers h = {.open = cl_open, .close = cl_close};
    if (done >= target) return;
    wsk_client_opts o;
    wsk_client_opts_init(&o);
    if (*ca) o.tls_ca = ca;
    if (!wsk_connect(cloop, url, &o, &h, NULL, NULL)) done = target, failed++;
}

/* n more connections of the chain, one after the other. */
static void chain(int n)
{
    target = done + n;
    chain_next();
    double until = test_now() + 60; /* bounded, with room for valgrind */
    while (done < target && test_now() < until) ev_run(cev, EVRUN_ONCE);
}

/* Whether seq[from..to) cycles over the members 0..m-1, starting at `first`. */
static int cycles(int from, int to, int m, int first)
{
    for (int k = from; k < to; k++)
        if (atomic_load(&seq[k]) != (first + (k - from)) % m) return 0;
    return 1;
}

/* A group of n members made with options o (the last one with `last`, when not NULL). */
static void start(unsigned n, const wsk_server_opts *o, const wsk_server_opts *last)
{
    grp = wsk_group_new(n, NULL);
    if (!grp) abort();
    CHECK(wsk_group_accept(grp) == WSK_ACCEPT_REUSEPORT, "a new group: SO_REUSEPORT mode");
    CHECK(wsk_group_set_accept(grp, 7) == WSK_ERR_INVAL, "an unknown mode is refused");
    CHECK(wsk_group_set_accept(grp, WSK_ACCEPT_ROUND_ROBIN) == 0 &&
              wsk_group_accept(grp) == WSK_ACCEPT_ROUND_ROBIN,
          "round-robin mode set");
    static const wsk_handlers h = {.open = srv_open};
    for (unsigned i = 0; i < n; i++) {
        wsk_loop *loop = wsk_group_loop(grp, i);
        wsk_loop_set_log(loop, WSK_LOG_ERROR, NULL, NULL);
        srv[i] = wsk_server_new(loop, i == n - 1 && last ? last : o, &h, NULL);
        if (!srv[i] || (i == 0 && wsk_server_listen(srv[i], "127.0.0.1", 0) < 0) ||
            wsk_group_add(grp, srv[i]) < 0)
            abort();
    }
    for (unsigned i = 0; i < LOOPS; i++) atomic_store(&opened[i], 0);
    atomic_store(&nseq, 0);
    done = failed = 0;
    atomic_store(&ran, 0);
}

/* Ends the group, which had `failed` hand-offs fail. */
static void stop(unsigned n, pthread_t th, size_t failed_handoffs)
{
    wsk_group_shutdown(grp, 1001, NULL, 0);
    pthread_join(th, NULL);
    CHECK(atomic_load(&ran), "the group stopped");
    CHECK(wsk_group_handoffs_failed(grp) == failed_handoffs, "%zu hand-offs failed (%zu)",
          failed_handoffs, wsk_group_handoffs_failed(grp));
    for (unsigned i = 0; i < n; i++) wsk_server_free(srv[i]);
    wsk_group_free(grp);
}

static void test_plain(void)
{
    wsk_server_opts o;
    wsk_server_opts_init(&o);
    start(LOOPS, &o, NULL);
    snprintf(url, sizeof url, "ws://127.0.0.1:%u/", wsk_server_port(srv[0]));
    CHECK(wsk_group_set_accept(grp, WSK_ACCEPT_REUSEPORT) == 0 &&
              wsk_group_set_accept(grp, WSK_ACCEPT_ROUND_ROBIN) == 0,
          "the mode may change until the group runs");
    pthread_t th;
    if (pthread_create(&th, NULL, run_group, NULL)) abort();
    chain(LOOPS * ROUNDS);
    CHECK(done == LOOPS * ROUNDS && failed == 0, "%d connections through member 0 (%d failed)",
          done, failed);
    CHECK(atomic_load(&opened[0]) == ROUNDS && atomic_load(&opened[1]) == ROUNDS &&
              atomic_load(&opened[2]) == ROUNDS,
          "each member opened exactly %d (%d, %d, %d)", ROUNDS, atomic_load(&opened[0]),
          atomic_load(&opened[1]), atomic_load(&opened[2]));
    CHECK(atomic_load(&nseq) == LOOPS * ROUNDS && cycles(0, LOOPS * ROUNDS, LOOPS, 0),
          "in turn: 0, 1, 2, 0, 1, 2...");
    CHECK(wsk_group_set_accept(grp, WSK_ACCEPT_REUSEPORT) == WSK_ERR_STATE,
          "the mode is fixed once the group runs");

    /* Member 2 shuts down: it takes no more sockets. */
    if (wsk_group_call(grp, 2, shut_two, NULL) < 0) abort();
    SPIN_UNTIL(atomic_load(&shut), usleep(1000));
    chain(2 * ROUNDS);
    int from = LOOPS * ROUNDS;
    CHECK(done == from + 2 * ROUNDS && failed == 0, "%d more connections (%d failed)", 2 * ROUNDS,
          failed);
    CHECK(atomic_load(&opened[2]) == ROUNDS, "none of them on the member that shut down (%d)",
          atomic_load(&opened[2]) - ROUNDS);
    CHECK(atomic_load(&opened[0]) == 2 * ROUNDS && atomic_load(&opened[1]) == 2 * ROUNDS &&
              cycles(from, from + 2 * ROUNDS, 2, 0),
          "they alternate over members 0 and 1 (%d, %d)", atomic_load(&opened[0]),
          atomic_load(&opened[1]));
    stop(LOOPS, th, 0);
}

/* Clients that stay open (a raw socket each, the upgrade answered): n of them. */
static int held_open(int *fd, int n, unsigned port)
{
    int got = 0;
    for (int i = 0; i < n; i++) {
        fd[i] = rawws_connect(port, "");
        got += fd[i] >= 0;
    }
    return got;
}

static int opened_total(void)
{
    return atomic_load(&opened[0]) + atomic_load(&opened[1]);
}

/* max_connections 1 on each of 2 members: the second socket goes to member 1 whatever the
 * turn, a third waits in the backlog while both are full (member 0 stops accepting), and is
 * taken once a socket closes on either member. */
static void test_limits(void)
{
    wsk_server_opts o;
    wsk_server_opts_init(&o);
    o.max_connections = 1;
    start(2, &o, NULL);
    unsigned port = wsk_server_port(srv[0]);
    pthread_t th;
    if (pthread_create(&th, NULL, run_group, NULL)) abort();
    int fd[3];
    CHECK(held_open(fd, 2, port) == 2, "two clients upgraded");
    SPIN_UNTIL(opened_total() == 2, usleep(1000));
    CHECK(atomic_load(&opened[0]) == 1 && atomic_load(&opened[1]) == 1,
          "max_connections 1 each: one on each member (%d, %d)", atomic_load(&opened[0]),
          atomic_load(&opened[1]));
    CHECK((fd[2] = rawws_connect(port, "")) >= 0, "a third client connects and asks");
    usleep(50000); /* time to be wrongly taken: a check that it was not, nothing waits on it */
    CHECK(opened_total() == 2, "while both are full it waits (%d open)", opened_total());
    close(fd[1]); /* on member 1 */
    SPIN_UNTIL(opened_total() == 3, usleep(1000));
    CHECK(atomic_load(&opened[1]) == 2 && atomic_load(&opened[0]) == 1,
          "once member 1 has room it gets the waiting one (%d, %d)", atomic_load(&opened[0]),
          atomic_load(&opened[1]));
    close(fd[0]);
    close(fd[2]);
    stop(2, th, 0);
}

static atomic_int blocked, unblock;
static wsk_stats member_st[2];
static atomic_int nstats;

/* On each member's loop: its own wsk_server_stats. */
static void take_stats(void *arg, wsk_loop *loop)
{
    (void)arg;
    for (unsigned i = 0; i < 2; i++)
        if (wsk_server_loop(srv[i]) == loop)
            wsk_server_stats(srv[i], &member_st[i], sizeof *member_st);
    atomic_fetch_add(&nstats, 1);
}

/* On member 0's loop: holds the acceptor until the test's clients wait in the backlog. */
static void hold_acceptor(void *arg, wsk_loop *loop)
{
    (void)arg;
    (void)loop;
    atomic_store(&blocked, 1);
    SPIN_UNTIL(atomic_load(&unblock), usleep(1000));
}

/* Member 1 has room for one connection, and learns that it is full only when it adopts one:
 * four clients accepted in one turn go to members 0, 1, 0, 1, and member 1 closes the second
 * it gets.  That failed hand-off is counted once, in the group's figures and in its
 * acceptor's wsk_server_stats, so the metrics text shows it. */
static void test_handoff_failed(void)
{
    wsk_server_opts o;
    wsk_server_opts_init(&o);
    wsk_server_opts one = o;
    one.max_connections = 1;
    start(2, &o, &one);
    unsigned port = wsk_server_port(srv[0]);
    atomic_store(&blocked, 0);
    atomic_store(&unblock, 0);
    pthread_t th;
    if (pthread_create(&th, NULL, run_group, NULL)) abort();
    if (wsk_group_call(grp, 0, hold_acceptor, NULL) < 0) abort();
    SPIN_UNTIL(atomic_load(&blocked), usleep(1000));
    int fd[4];
    CHECK(held_open(fd, 4, port) == 4, "four clients connect while the acceptor is busy");
    atomic_store(&unblock, 1);
    SPIN_UNTIL(wsk_group_handoffs_failed(grp) == 1 && opened_total() == 3, usleep(1000));
    CHECK(atomic_load(&opened[0]) == 2 && atomic_load(&opened[1]) == 1 &&
              wsk_group_handoffs_failed(grp) == 1,
          "member 1 took one and closed the other (%d, %d open, %zu failed)",
          atomic_load(&opened[0]), atomic_load(&opened[1]), wsk_group_handoffs_failed(grp));
    wsk_stats st;
    char text[16384];
    CHECK(wsk_group_stats(grp, &st, sizeof st) == 0 && st.handoffs_failed == 1 &&
              wsk_stats_format(&st, text, sizeof text) > 0 &&
              strstr(text, "\nwsk_accept_handoffs_failed_total 1\n"),
          "wsk_group_stats and its metrics text count it (%llu)",
          (unsigned long long)st.handoffs_failed);
    if (wsk_group_call(grp, WSK_GROUP_ALL, take_stats, NULL) < 0) abort();
    SPIN_UNTIL(atomic_load(&nstats) == 2, usleep(1000));
    CHECK(atomic_load(&nstats) == 2 && member_st[0].handoffs_failed == 1 &&
              member_st[1].handoffs_failed == 0,
          "wsk_server_stats: the acceptor reports it, the other member 0 (%llu, %llu)",
          (unsigned long long)member_st[0].handoffs_failed,
          (unsigned long long)member_st[1].handoffs_failed);
    for (int i = 0; i < 4; i++) close(fd[i]);
    stop(2, th, 1);
}

static void test_tls(void)
{
    char dir[256], cmd[600];
    snprintf(dir, sizeof dir, "/tmp/wskit-test-group-accept-%d", (int)getpid());
    snprintf(cmd, sizeof cmd, "scripts/mkcerts %s >/dev/null 2>&1", dir);
    if (system(cmd) != 0) {
        printf("ok %d - TLS round-robin # SKIP scripts/mkcerts failed (openssl missing?)\n",
               ++test_n);
        return;
    }
    char cert[512], key[512];
    snprintf(cert, sizeof cert, "%s/server.crt", dir);
    snprintf(key, sizeof key, "%s/server.key", dir);
    snprintf(ca, sizeof ca, "%s/ca.crt", dir);
    wsk_server_opts o;
    wsk_server_opts_init(&o);
    o.tls_cert = cert;
    o.tls_key = key;
    start(2, &o, NULL);
    snprintf(url, sizeof url, "wss://localhost:%u/", wsk_server_port(srv[0]));
    pthread_t th;
    if (pthread_create(&th, NULL, run_group, NULL)) abort();
    chain(2 * ROUNDS);
    CHECK(done == 2 * ROUNDS && failed == 0, "TLS: %d connections (%d failed)", done, failed);
    CHECK(atomic_load(&opened[0]) == ROUNDS && atomic_load(&opened[1]) == ROUNDS &&
              cycles(0, 2 * ROUNDS, 2, 0),
          "TLS: the handshakes ran on both members in turn (%d, %d)", atomic_load(&opened[0]),
          atomic_load(&opened[1]));
    stop(2, th, 0);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) printf("# could not remove %s\n", dir);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    cloop = test_loop(&cev);
    test_plain();
    test_limits();
    test_handoff_failed();
    test_tls();
    wsk_loop_free(cloop);
    return TEST_DONE();
}
