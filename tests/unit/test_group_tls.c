/* TLS in a server group: the members that load the same certificate share one configuration
 * (ticket keys, session cache), so a session made on one loop's thread resumes on another's.
 * Two members listen on one port (reuse_port: the kernel picks the loop, as with wsserve
 * --threads); two chains of library clients connect there one after the other, each chain
 * offering the session of its connection before, both chains at once so that the two loops
 * run handshakes on the shared configuration at the same time (a TSan target: make tsan).
 * Members with another certificate or a client CA keep their own configuration.
 * Certificates come from scripts/mkcerts (the test is skipped without openssl). */
#include "internal.h"
#include "test.h"
#include "wskit.h"

#include <pthread.h>
#include <stdatomic.h>

#define MEMBERS 4 /* 0 and 1 share a port and a certificate; 2: another certificate; 3: a CA */
#define CHAINS  2
#define ROUNDS  16 /* connections per chain */

static char dir[256];
static wsk_group *grp;
static wsk_server *srv[MEMBERS];
static atomic_int opened[MEMBERS]; /* connections each member opened */
static atomic_int ran;

static const char *path(const char *name)
{
    static char buf[8][512];
    static int i;
    i = (i + 1) % 8;
    snprintf(buf[i], sizeof buf[i], "%s/%s", dir, name);
    return buf[i];
}

static void srv_open(wsk_ws *ws)
{
    unsigned i = 0;
    wsk_server_group(wsk_ws_server(ws), &i);
    atomic_fetch_add(&opened[i], 1);
}

static void *run_group(void *arg)
{
    (void)arg;
    wsk_group_run(grp);
    atomic_store(&ran, 1);
    return NULL;
}

/* ----- the clients ------------------------------------------------------------------------- */

struct chain {
    wsk_tls_session *ts;
    int done, resumed, failed;
};

static struct chain chains[CHAINS];
static wsk_loop *cloop;
static char url[64];
static char ca[512];

static void chain_next(struct chain *ch);

static void cl_open(wsk_ws *ws)
{
    struct chain *ch = wsk_ws_data(ws);
    ch->resumed += wsk_tls_resumed(ws);
    wsk_close(ws, 1000, NULL, 0);
}

static void cl_close(wsk_ws *ws, unsigned code, const char *reason, size_t reason_len)
{
    (void)reason;
    (void)reason_len;
    struct chain *ch = wsk_ws_data(ws);
    if (code != 1000) ch->failed++;
    ch->done++;
    chain_next(ch);
}

static void chain_next(struct chain *ch)
{
    static const wsk_handlers h = {.open = cl_open, .close = cl_close};
    if (ch->done == ROUNDS) return;
    wsk_client_opts o;
    wsk_client_opts_init(&o);
    o.tls_ca = ca;
    o.tls_session = ch->ts;
    if (!wsk_connect(cloop, url, &o, &h, ch, NULL)) ch->done = ROUNDS, ch->failed++;
}

static int chains_done(void)
{
    for (int i = 0; i < CHAINS; i++)
        if (chains[i].done < ROUNDS) return 0;
    return 1;
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/wskit-test-group-tls-%d", (int)getpid());
    char cmd[600];
    snprintf(cmd, sizeof cmd, "scripts/mkcerts %s >/dev/null 2>&1", dir);
    if (system(cmd) != 0) {
        printf("ok 1 - TLS in a group # SKIP scripts/mkcerts failed (openssl missing?)\n");
        return 0;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct ev_loop *ev;
    cloop = test_loop(&ev);
    grp = wsk_group_new(MEMBERS, NULL);
    if (!grp) abort();
    snprintf(ca, sizeof ca, "%s", path("ca.crt"));
    static const char *certs[MEMBERS][3] = {
        {"server.crt", "server.key", NULL},
        {"server.crt", "server.key", NULL},
        {"wronghost.crt", "wronghost.key", NULL},
        {"server.crt", "server.key", "client-ca.crt"},
    };
    wsk_handlers h = {.open = srv_open};
    unsigned port = 0;
    for (unsigned i = 0; i < MEMBERS; i++) {
        wsk_server_opts o;
        wsk_server_opts_init(&o);
        o.tls_cert = path(certs[i][0]);
        o.tls_key = path(certs[i][1]);
        o.tls_client_ca = certs[i][2] ? path(certs[i][2]) : NULL;
        o.reuse_port = 1;
        wsk_loop *loop = wsk_group_loop(grp, i);
        wsk_loop_set_log(loop, WSK_LOG_ERROR, NULL, NULL);
        srv[i] = wsk_server_new(loop, &o, &h, NULL);
        if (!srv[i] || wsk_server_listen(srv[i], "127.0.0.1", i < 2 ? port : 0) < 0 ||
            wsk_group_add(grp, srv[i]) < 0)
            abort();
        if (i == 0) port = wsk_server_port(srv[0]);
    }
    void *t0 = wsk_server_ctx(srv[0])->tls;
    CHECK(t0 && wsk_server_ctx(srv[1])->tls == t0,
          "two members with the same certificate share one TLS configuration");
    CHECK(wsk_server_ctx(srv[2])->tls != t0 && wsk_server_ctx(srv[3])->tls != t0,
          "members with another certificate or a client CA keep their own");

    pthread_t th;
    if (pthread_create(&th, NULL, run_group, NULL)) abort();
    snprintf(url, sizeof url, "wss://localhost:%u/", port);
    for (int i = 0; i < CHAINS; i++) {
        chains[i].ts = wsk_tls_session_new();
        if (!chains[i].ts) abort();
        chain_next(&chains[i]);
    }
    double until = test_now() + 120; /* bounded, with room for valgrind */
    while (!chains_done() && test_now() < until) ev_run(ev, EVRUN_ONCE);
    int resumed = 0, failed = 0;
    for (int i = 0; i < CHAINS; i++) {
        resumed += chains[i].resumed;
        failed += chains[i].failed;
    }
    CHECK(chains_done() && failed == 0, "%d connections in %d chains (%d failed)", CHAINS * ROUNDS,
          CHAINS, failed);
    CHECK(atomic_load(&opened[0]) > 0 && atomic_load(&opened[1]) > 0,
          "the kernel spread them over both members (%d and %d)", atomic_load(&opened[0]),
          atomic_load(&opened[1]));
    CHECK(resumed == CHAINS * (ROUNDS - 1),
          "every connection after a chain's first resumed, whichever loop took it (%d of %d)",
          resumed, CHAINS * (ROUNDS - 1));

    wsk_group_shutdown(grp, 1001, NULL, 0);
    pthread_join(th, NULL);
    CHECK(atomic_load(&ran), "the group stopped");
    /* The member that made the shared configuration goes first: the other still holds it. */
    for (unsigned i = 0; i < MEMBERS; i++) wsk_server_free(srv[i]);
    wsk_group_free(grp);
    for (int i = 0; i < CHAINS; i++) wsk_tls_session_free(chains[i].ts);
    wsk_loop_free(cloop);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) printf("# could not remove %s\n", dir);
    return TEST_DONE();
}
