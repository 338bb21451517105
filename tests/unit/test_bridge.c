/* The bridge's API without an engine running: arguments refused (INVAL, URL, STATE), an engine
 * that cannot be reached counted as an outage, publishes that fail visibly while local
 * delivery is unaffected, and the counted publish's callback run once, at once, with "not
 * bridged"; the calls of history in the engine refused or failing at once.
 * tests/integration/test_bridge.py and test_bridge_history.py run real redis-server and
 * nats-server. */
#include "test.h"
#include "wskit.h"

#include <arpa/inet.h>
#include <ev.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

struct counted {
    int calls;
    long local, nodes;
};

static void on_counted(void *arg, long local, long nodes)
{
    struct counted *c = arg;
    c->calls++;
    c->local = local;
    c->nodes = nodes;
}

/* Runs the loop until the bridge has seen an outage (at most 5 s). */
static int wait_outage(struct ev_loop *ev, wsk_server *srv)
{
    wsk_bridge_stats st;
    for (int i = 0; i < 500; i++) {
        if (wsk_server_bridge_stats(srv, &st) == 0 && st.outages) return 1;
        ev_run(ev, EVRUN_NOWAIT);
        usleep(10000);
    }
    return 0;
}

static void test_engine_down(wsk_loop *loop, const char *scheme)
{
    struct ev_loop *ev = wsk_loop_ev(loop);
    wsk_server *srv = wsk_server_new(loop, NULL, NULL, NULL);
    char url[64];
    snprintf(url, sizeof url, "%s://127.0.0.1:%u", scheme, test_free_port());
    const char *urls[] = {url};
    wsk_bridge_stats st;
    CHECK(wsk_server_bridged(srv, "t", 1) == WSK_ERR_STATE, "%s: no bridge yet: STATE", scheme);
    CHECK(wsk_server_bridge_stats(srv, &st) == WSK_ERR_STATE, "%s: stats without a bridge: STATE",
          scheme);
    CHECK(wsk_server_bridge(srv, urls, 1, NULL) == 0, "%s: an unreachable engine is accepted",
          scheme);
    CHECK(wsk_server_bridge(srv, urls, 1, NULL) == WSK_ERR_STATE, "%s: bridged twice: STATE",
          scheme);
    CHECK(wait_outage(ev, srv), "%s: the engine that cannot be reached is an outage", scheme);
    CHECK(wsk_server_bridged(srv, "t", 1) == 0, "%s: a publish to t is not forwarded now", scheme);
    CHECK(wsk_server_publish(srv, "t", 1, "x", 1, WSK_OP_TEXT, 0) == 0,
          "%s: the local publish still works (nobody here)", scheme);
    struct counted c = {0, -9, -9};
    long r = wsk_server_publish_counted(srv, NULL, "t", 1, "x", 1, WSK_OP_TEXT, 0, on_counted, &c);
    CHECK(r == 0 && c.calls == 1 && c.local == 0 && c.nodes == WSK_NODES_NOT_BRIDGED,
          "%s: counted publish: done at once, not bridged (r %ld, calls %d, nodes %ld)", scheme, r,
          c.calls, c.nodes);
    c.calls = 0;
    r = wsk_server_publish_counted(srv, NULL, NULL, 1, "x", 1, WSK_OP_TEXT, 0, on_counted, &c);
    CHECK(r == WSK_ERR_INVAL && c.calls == 1 && c.nodes == WSK_NODES_NOT_BRIDGED,
          "%s: an invalid topic: INVAL, done once, not bridged", scheme);
    CHECK(wsk_server_publish_counted(srv, NULL, "t", 1, "x", 1, WSK_OP_TEXT, 0, NULL, NULL) ==
              WSK_ERR_INVAL,
          "%s: counted publish without done: INVAL", scheme);
    CHECK(wsk_server_bridge_stats(srv, &st) == 0 && st.failed == 2 && st.forwarded == 0 &&
              st.links == 1 && st.links_up == 0 && st.outages == 1,
          "%s: stats: 2 failed, 1 outage, 0 of 1 link up (failed %llu, outages %llu)", scheme,
          (unsigned long long)st.failed, (unsigned long long)st.outages);
    CHECK(wsk_server_bridge_stats(srv, NULL) == WSK_ERR_INVAL, "%s: stats into NULL: INVAL",
          scheme);
    wsk_server_free(srv);
}

static void test_args(wsk_loop *loop)
{
    wsk_server *srv = wsk_server_new(loop, NULL, NULL, NULL);
    const char *one[] = {"redis://127.0.0.1:1"};
    const char *many[17];
    for (int i = 0; i < 17; i++) many[i] = one[0];
    char prefix[80];
    memset(prefix, 'p', sizeof prefix - 1);
    prefix[sizeof prefix - 1] = 0;
    CHECK(wsk_server_bridge(srv, NULL, 1, NULL) == WSK_ERR_INVAL, "no URL list: INVAL");
    CHECK(wsk_server_bridge(srv, one, 0, NULL) == WSK_ERR_INVAL, "no URL: INVAL");
    CHECK(wsk_server_bridge(srv, many, 17, NULL) == WSK_ERR_INVAL, "17 URLs: INVAL");
    CHECK(wsk_server_bridge(srv, one, 1, prefix) == WSK_ERR_INVAL, "a 79-byte prefix: INVAL");
    const char *bad[][2] = {
        {"http://127.0.0.1:1", NULL},
        {"redis://", NULL},
        {"redis://127.0.0.1:99999", NULL},
        {"redis://127.0.0.1:1/x", NULL},
        {"redis://[::1", NULL},
        {"nats://", NULL},
        {"redis://127.0.0.1:1", "nats://127.0.0.1:1"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t n = bad[i][1] ? 2 : 1;
        CHECK(wsk_server_bridge(srv, bad[i], n, NULL) == WSK_ERR_URL, "refused: %s%s%s", bad[i][0],
              n == 2 ? " with " : "", n == 2 ? bad[i][1] : "");
    }
    CHECK(wsk_server_bridged(srv, "t", 1) == WSK_ERR_STATE, "after refusals: still no bridge");
    wsk_server_free(srv);
}

static void on_batch(void *arg, const wsk_history_batch *b)
{
    (void)b;
    ++*(int *)arg;
}

/* History in the engine: an engine that keeps it (Redis) takes it, NATS not before its server
 * said whether it has JetStream (tests/integration/test_bridge_history_nats.py); with the engine
 * down, publishes and reads fail at once (counted), and holds are counted calls. */
static void test_history(wsk_loop *loop, const char *scheme)
{
    struct ev_loop *ev = wsk_loop_ev(loop);
    wsk_server *srv = wsk_server_new(loop, NULL, NULL, NULL);
    char url[64];
    snprintf(url, sizeof url, "%s://127.0.0.1:%u", scheme, test_free_port());
    const char *urls[] = {url};
    int redis = scheme[0] == 'r', calls = 0;
    CHECK(wsk_server_bridge_history(srv, 10, 0) == WSK_ERR_STATE, "%s: history, no bridge: STATE",
          scheme);
    CHECK(wsk_server_bridge_listen(srv, "t", 1, 1) == WSK_ERR_STATE, "%s: listen, no bridge",
          scheme);
    CHECK(wsk_server_bridge(srv, urls, 1, NULL) == 0 && wait_outage(ev, srv), "%s: bridged, down",
          scheme);
    CHECK(wsk_server_publish_history(srv, "t", 1, "x", 1, WSK_OP_TEXT, 0, NULL, NULL) ==
              WSK_ERR_STATE,
          "%s: publish_history before bridge_history: STATE", scheme);
    CHECK(wsk_server_bridge_history(srv, 0, 0) == WSK_ERR_INVAL, "%s: depth 0: INVAL", scheme);
    CHECK(wsk_server_bridge_history(srv, 10, 1.5) == (redis ? 0 : WSK_ERR_IO),
          "%s: history in the engine: %s", scheme,
          redis ? "on" : "IO (never connected: JetStream or not is not known yet)");
    if (redis) {
        wsk_bridge_stats st;
        CHECK(wsk_server_publish_history(srv, "t", 1, "x", 1, WSK_OP_TEXT, 0, NULL, NULL) ==
                      WSK_ERR_IO &&
                  wsk_server_bridge_stats(srv, &st) == 0 && st.failed == 1,
              "redis down: publish_history fails (IO), counted");
        CHECK(wsk_server_publish_history(srv, "t.*", 3, "x", 1, WSK_OP_TEXT, 0, NULL, NULL) ==
                  WSK_ERR_INVAL,
              "publish_history to a pattern: INVAL");
        CHECK(wsk_server_history_read(srv, "t", 1, 0, 10, on_batch, &calls) == WSK_ERR_IO &&
                  calls == 0,
              "redis down: a read fails at once (IO), done not called");
        CHECK(wsk_server_history_read(srv, "t", 1, 0, 0, on_batch, &calls) == WSK_ERR_INVAL,
              "a read of 0 messages: INVAL");
    }
    CHECK(wsk_server_bridge_listen(srv, "t.>", 3, 1) == WSK_ERR_INVAL, "%s: listen to a pattern",
          scheme);
    CHECK(wsk_server_bridge_listen(srv, "t", 1, 1) == 0 &&
              wsk_server_bridge_listen(srv, "t", 1, 1) == 0 &&
              wsk_server_bridge_listen(srv, "t", 1, 0) == 0 &&
              wsk_server_bridge_listen(srv, "t", 1, 0) == 0 &&
              wsk_server_bridge_listen(srv, "t", 1, 0) == WSK_ERR_INVAL,
          "%s: holds are counted; one too many ends: INVAL", scheme);
    CHECK(wsk_server_bridge_listen(srv, "u", 1, 1) == 0, "%s: a hold left at free", scheme);
    wsk_server_free(srv); /* frees it (valgrind and ASan say so) */
}

int main(void)
{
    wsk_loop *loop = wsk_loop_new(ev_default_loop(0));
    wsk_loop_set_log(loop, WSK_LOG_ERROR, NULL, NULL);
    test_args(loop);
    test_engine_down(loop, "redis");
    test_engine_down(loop, "nats");
    test_history(loop, "redis");
    test_history(loop, "nats");
    wsk_loop_free(loop);
    return TEST_DONE();
}
