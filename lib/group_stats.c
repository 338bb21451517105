/* The figures of a server group: each loop copies its member's wsk_server_stats into a slot of
 * its own every second, under a mutex only wsk_group_stats also takes, so any thread can sum
 * them without stopping a loop or waiting for one (a loop that waited for another could wait
 * forever: the other may be waiting for it). */
#include "group.h"

#include <stddef.h>
#include <string.h>

#define WSK_STATS_EVERY 1.0 /* seconds between copies */

void wsk_group_stats_take(wsk_gloop *l)
{
    if (!l->srv) return;
    wsk_stats st;
    wsk_server_stats(l->srv, &st, sizeof st);
    pthread_mutex_lock(&l->stats_mu);
    l->stats = st;
    l->has_stats = 1;
    pthread_mutex_unlock(&l->stats_mu);
}

static void on_stats_timer(struct ev_loop *ev, ev_timer *w, int revents)
{
    (void)ev;
    (void)revents;
    wsk_group_stats_take(w->data);
}

void wsk_group_stats_start(wsk_gloop *l)
{
    ev_timer_init(&l->stats_timer, on_stats_timer, 0, WSK_STATS_EVERY);
    l->stats_timer.data = l;
    ev_timer_start(l->ev, &l->stats_timer);
    ev_unref(l->ev); /* the copies alone do not keep a loop running */
}

/* The counters: every field from `accepted` to the end is a uint64_t. */
static void add_counters(wsk_stats *sum, const wsk_stats *st)
{
    size_t from = offsetof(wsk_stats, accepted), n = (sizeof *st - from) / sizeof(uint64_t);
    uint64_t a[sizeof *st / sizeof(uint64_t) + 1], b[sizeof *st / sizeof(uint64_t) + 1];
    memcpy(a, (const char *)sum + from, n * sizeof *a);
    memcpy(b, (const char *)st + from, n * sizeof *b);
    for (size_t i = 0; i < n; i++) a[i] += b[i];
    memcpy((char *)sum + from, a, n * sizeof *a);
}
_Static_assert((sizeof(wsk_stats) - offsetof(wsk_stats, accepted)) % sizeof(uint64_t) == 0,
               "wsk_stats ends in uint64_t counters");

int wsk_group_stats(wsk_group *g, wsk_stats *st, size_t size)
{
    if (!st || size < sizeof st->size) return WSK_ERR_INVAL;
    wsk_stats sum;
    memset(&sum, 0, sizeof sum);
    for (unsigned i = 0; i < g->n; i++) {
        wsk_gloop *l = &g->l[i];
        pthread_mutex_lock(&l->stats_mu);
        wsk_stats s = l->stats;
        int has = l->has_stats;
        pthread_mutex_unlock(&l->stats_mu);
        if (!has) continue;
        sum.sockets += s.sockets;
        sum.open += s.open;
        sum.queued_bytes += s.queued_bytes;
        sum.subscriptions += s.subscriptions;
        sum.topics = s.topics; /* the group's already */
        if (s.bridged) {
            sum.bridged = 1;
            sum.bridge_links = s.bridge_links;
            sum.bridge_links_up = s.bridge_links_up;
            sum.bridge_forwarded = s.bridge_forwarded;
            sum.bridge_failed = s.bridge_failed;
            sum.bridge_received = s.bridge_received;
            sum.bridge_outages = s.bridge_outages;
        }
        add_counters(&sum, &s);
    }
    sum.handoffs_failed = wsk_group_handoffs_failed(g); /* now, not a second ago */
    sum.size = size < sizeof sum ? size : sizeof sum;
    memcpy(st, &sum, sum.size);
    return 0;
}
