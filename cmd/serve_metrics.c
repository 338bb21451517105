/* wsserve's metrics (serve.h): the server's wsk_stats in Prometheus's text format, on a
 * listener of their own (--metrics [HOST:]PORT, so they never reach the public port by
 * accident) or at a path of the main port (--metrics-path PATH, behind the token when the mode
 * has one). */
#include "cli.h"
#include "serve.h"

#include <errno.h>
#include <ev.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What the threads' servers share for the metrics: each thread's counters as it copied them
 * last, under the lock. */
struct stats_share {
    pthread_mutex_t lock;
    struct stats_slot {
        ev_timer tick; /* on the slot's loop: copies its counters */
        struct serve *sv;
        wsk_stats st;
    } slot[];
};

/* The counters from `accepted` on are all uint64_t (wskit.h adds fields only at the end). */
_Static_assert((sizeof(wsk_stats) - offsetof(wsk_stats, accepted)) % sizeof(uint64_t) == 0,
               "wsk_stats ends with uint64_t counters");

static void stats_add(wsk_stats *sum, const wsk_stats *st)
{
    sum->sockets += st->sockets;
    sum->open += st->open;
    sum->queued_bytes += st->queued_bytes;
    sum->topics += st->topics; /* serve_stats asks the group instead */
    sum->subscriptions += st->subscriptions;
    sum->bridged |= st->bridged; /* one server bridges the process */
    sum->bridge_links += st->bridge_links;
    sum->bridge_links_up += st->bridge_links_up;
    sum->bridge_forwarded += st->bridge_forwarded;
    sum->bridge_failed += st->bridge_failed;
    sum->bridge_received += st->bridge_received;
    sum->bridge_outages += st->bridge_outages;
    uint64_t *d = &sum->accepted;
    const uint64_t *a = &st->accepted;
    for (size_t i = 0; i < (sizeof *st - offsetof(wsk_stats, accepted)) / sizeof *a; i++)
        d[i] += a[i];
}

static void stats_tick(struct ev_loop *ev, ev_timer *w, int revents)
{
    struct stats_slot *slot = w->data;
    struct stats_share *sh = slot->sv->stats_share;
    wsk_stats st;
    (void)ev;
    (void)revents;
    wsk_server_stats(slot->sv->srv, &st, sizeof st);
    pthread_mutex_lock(&sh->lock);
    slot->st = st;
    pthread_mutex_unlock(&sh->lock);
}

int serve_stats_start(struct serve *sv)
{
    if (!sv->thread) {
        struct stats_share *sh = calloc(1, sizeof *sh + sv->threads * sizeof(struct stats_slot));
        if (!sh) return -1;
        pthread_mutex_init(&sh->lock, NULL);
        sv->stats_share = sh;
    } else {
        sv->stats_share = sv->all[0].stats_share;
    }
    struct stats_slot *slot = &sv->stats_share->slot[sv->thread];
    slot->sv = sv;
    wsk_server_stats(sv->srv, &slot->st, sizeof slot->st);
    ev_timer_init(&slot->tick, stats_tick, STATS_PERIOD, STATS_PERIOD);
    slot->tick.data = slot;
    ev_timer_start(wsk_loop_ev(wsk_server_loop(sv->srv)), &slot->tick);
    ev_unref(wsk_loop_ev(wsk_server_loop(sv->srv))); /* it alone keeps no loop running */
    return 0;
}

void serve_stats_stop(struct serve *sv)
{
    struct stats_share *sh = sv->stats_share;
    if (!sh) return;
    struct stats_slot *slot = &sh->slot[sv->thread];
    if (slot->sv) {
        struct ev_loop *ev = wsk_loop_ev(wsk_server_loop(sv->srv));
        ev_ref(ev);
        ev_timer_stop(ev, &slot->tick);
    }
    sv->stats_share = NULL;
    if (!sv->thread) {
        pthread_mutex_destroy(&sh->lock);
        free(sh);
    }
}

void serve_stats(struct serve *sv, wsk_stats *st)
{
    struct stats_share *sh = sv->stats_share;
    wsk_server_stats(sv->srv, st, sizeof *st);
    if (!sh) return;
    pthread_mutex_lock(&sh->lock);
    for (unsigned i = 0; i < sv->threads; i++)
        if (i != sv->thread) stats_add(st, &sh->slot[i].st);
    pthread_mutex_unlock(&sh->lock);
    st->topics = wsk_server_topics(sv->srv); /* the group's: one topic on two threads is one */
}

/* The metrics of the process as the body of res: 200, or 500 when memory is short. */
static int metrics_body(struct serve *sv, wsk_response *res)
{
    wsk_stats st;
    serve_stats(sv, &st);
    long n = wsk_stats_format(&st, NULL, 0);
    char *text = n > 0 ? malloc((size_t)n + 1) : NULL;
    if (!text) return serve_text(res, 500, "out of memory\n");
    wsk_stats_format(&st, text, (size_t)n + 1);
    /* The content type Prometheus asks for with the text format, version 0.0.4. */
    wsk_response_add_header(res, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    int r = wsk_response_append_body(res, text, (size_t)n);
    free(text);
    return r < 0 ? 500 : 200;
}

static int path_is(const wsk_request *req, const char *want)
{
    size_t n;
    const char *p = wsk_request_path(req, &n);
    return n == strlen(want) && !memcmp(p, want, n);
}

int serve_metrics_request(struct serve *sv, const wsk_request *req, wsk_response *res)
{
    if (!sv->metrics_path || !path_is(req, sv->metrics_path)) return 0;
    if (sv->mode->authorized && !sv->mode->authorized(sv, req)) {
        wsk_response_add_header(res, "WWW-Authenticate", "Bearer");
        return serve_text(res, 401, "the metrics need the token\n");
    }
    return metrics_body(sv, res);
}

/* ----- the listener of --metrics ------------------------------------------------------------- */

static int metrics_only(wsk_server *msrv, const wsk_request *req, wsk_response *res)
{
    struct serve *sv = wsk_server_user(msrv);
    if (!path_is(req, "/metrics")) return serve_text(res, 404, "only /metrics here\n");
    return metrics_body(sv, res);
}

static void metrics_request(wsk_server *msrv, const wsk_request *req, wsk_response *res)
{
    wsk_response_set_status(res, metrics_only(msrv, req, res));
}

/* No WebSocket on the metrics port. */
static int metrics_upgrade(wsk_server *msrv, const wsk_request *req, wsk_response *res)
{
    (void)msrv;
    (void)req;
    wsk_response_append_body(res, "only /metrics here\n", 19);
    return 404;
}

wsk_server *serve_metrics_listen(struct serve *sv, const char *hostport, int quiet)
{
    char host[256];
    unsigned port;
    if (cli_parse_hostport(hostport, host, sizeof host, &port) < 0) {
        fprintf(stderr, "wsserve: invalid --metrics address '%s' ([HOST:]PORT)\n", hostport);
        return NULL;
    }
    wsk_server_opts o;
    wsk_server_opts_init(&o);
    o.max_connections = 64; /* scrapers, not clients */
    o.idle_timeout = 30;
    wsk_handlers h = {.upgrade = metrics_upgrade, .request = metrics_request};
    wsk_server *m = wsk_server_new(wsk_server_loop(sv->srv), &o, &h, sv);
    if (!m) return NULL;
    int r = wsk_server_listen(m, host, port);
    if (r < 0) {
        fprintf(stderr, "wsserve: cannot listen on %s for --metrics: %s\n", hostport,
                r == WSK_ERR_DNS ? "unknown host" : strerror(errno));
        wsk_server_free(m);
        return NULL;
    }
    int v6 = strchr(host, ':') != NULL;
    if (!quiet)
        serve_log(sv, "metrics at http://%s%s%s:%u/metrics", v6 ? "[" : "",
                  *host ? host : "127.0.0.1", v6 ? "]" : "", wsk_server_port(m));
    return m;
}
