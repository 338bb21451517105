/* TLS in a server group: the members that load the same certificate share one configuration
 * (ticket keys, session cache), so a session made on one loop's thread resumes on another's.
 * Two members listen on one port (reuse_port: the kernel picks the loop, as with wsserve
 * --threads); two chains of library clients connect there one after the other, each chain
 * offering the session of its connection before, both chains at once so that the two loops
 * run handshakes on the shared configuration at the same time (a TSan target: make tsan).
 * Members with another certificate or a client CA keep their own configuration.  Two more
 * members do the same on a second port with an RSA certificate, whose key each thread signs
 * with through a copy of its own (io_tls.c, rsa_sign).
 * Certificates come from scripts/mkcerts (the test is skipped without openssl). */
#include "internal.h"
#include "test.h"
#include "wskit.h"

#include <pthread.h>
#include <stdatomic.h>

/* 0 and 1 share a port and a certificate; 2: another certificate; 3: a CA; 4 and 5 share a
 * second port and an RSA certificate. */
#define MEMBERS 6
#define CHAINS  4  /* 0 and 1 to the first port, 2 and 3 to the second */
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
    const char *url;
    int done, resumed, failed;
};

static struct chain chains[CHAINS];
static wsk_loop *cloop;
static char url[2][64];
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
    if (!wsk_connect(cloop, ch->url, &o, &h, ch, NULL)) ch->done = ROUNDS, ch->failed++;
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
    snprintf(cmd, sizeof cmd, "scripts/mkcerts --rsa %s >/dev/null 2>&1", dir);
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
        {"server.crt", "server.key", NULL},         {"server.crt", "server.key", NULL},
        {"wronghost.crt", "wronghost.key", NULL},   {"server.crt", "server.key", "client-ca.crt"},
        {"server-rsa.crt", "server-rsa.key", NULL}, {"server-rsa.crt", "server-rsa.key", NULL},
    };
    wsk_handlers h = {.open = srv_open};
    unsigned port[2] = {0, 0};
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
        unsigned *p = i < 2 ? &port[0] : i >= 4 ? &port[1] : NULL;
        if (!srv[i] || wsk_server_listen(srv[i], "127.0.0.1", p ? *p : 0) < 0 ||
            wsk_group_add(grp, srv[i]) < 0)
            abort();
        if (p && !*p) *p = wsk_server_port(srv[i]);
    }
    void *t0 = wsk_server_ctx(srv[0])->tls;
    CHECK(t0 && wsk_server_ctx(srv[1])->tls == t0,
          "two members with the same certificate share one TLS configuration");
    CHECK(wsk_server_ctx(srv[2])->tls != t0 && wsk_server_ctx(srv[3])->tls != t0,
          "members with another certificate or a client CA keep their own");
    void *t4 = wsk_server_ctx(srv[4])->tls;
    CHECK(t4 && t4 != t0 && wsk_server_ctx(srv[5])->tls == t4,
          "two members with the same RSA certificate share one TLS configuration");

    pthread_t th;
    if (pthread_create(&th, NULL, run_group, NULL)) abort();
    for (int i = 0; i < 2; i++) snprintf(url[i], sizeof url[i], "wss://localhost:%u/", port[i]);
    for (int i = 0; i < CHAINS; i++) {
        chains[i].url = url[i / 2];
        chains[i].ts = wsk_tls_session_new();
        if (!chains[i].ts) abort();
        chain_next(&chains[i]);
    }
    double until = test_now() + 120; /* bounded, with room for valgrind */
    while (!chains_done() && test_now() < until) ev_run(ev, EVRUN_ONCE);
    for (int k = 0; k < 2; k++) {
        const char *what = k ? "RSA" : "EC";
        int resumed = 0, failed = 0, a = k ? 4 : 0;
        for (int i = 2 * k; i < 2 * k + 2; i++) {
            resumed += chains[i].resumed;
            failed += chains[i].failed;
        }
        CHECK(chains[2 * k].done == ROUNDS && chains[2 * k + 1].done == ROUNDS && failed == 0,
              "%s: %d connections in 2 chains (%d failed)", what, 2 * ROUNDS, failed);
        CHECK(atomic_load(&opened[a]) > 0 && atomic_load(&opened[a + 1]) > 0,
              "%s: the kernel spread them over both members (%d and %d)", what,
              atomic_load(&opened[a]), atomic_load(&opened[a + 1]));
        CHECK(resumed == 2 * (ROUNDS - 1),
              "%s: every connection after a chain's first resumed, whichever loop took it "
              "(%d of %d)",
              what, resumed, 2 * (ROUNDS - 1));
    }

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
