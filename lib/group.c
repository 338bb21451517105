/* Server groups: n loops, each run by its own thread, talking only through inboxes.
 *
 * Each loop has one inbox (a list that any thread appends to under a mutex held for a few
 * pointer moves) and one ev_async.  A loop's own publishes for loop j wait in its private list
 * out[j] until the end of its turn (wsk_group_flush, from wsk_loop_reap): the whole batch then
 * joins j's inbox in one mutex section and j is woken once, whatever the batch holds.  ev_async
 * itself coalesces: a loop woken twice before it runs drains its inbox once.  A woken loop
 * takes its whole inbox in one mutex section and runs it in order: calls (wsk_group_call) and
 * messages of other loops (group_topics.c).  Nothing but the inboxes is shared, apart from
 * the topic table, which has its own lock (group_topics.c), and the members' TLS configuration,
 * whose changing parts mbedTLS locks (io_tls.h).
 * An inbox has no cap of its own: a loop that publishes faster than another delivers grows
 * that one's inbox; each socket's backpressure limit applies when the message is delivered
 * there.  What a loop that has ended still holds is freed when wsk_group_run returns; what is
 * posted after that is freed at once (refused: no loop will run again). */
#include "group.h"
#include "io_tls.h"

#include <stdlib.h>
#include <string.h>

static void list_append(wsk_glist *dst, wsk_gitem *head, wsk_gitem *tail)
{
    if (dst->tail)
        dst->tail->next = head;
    else
        dst->head = head;
    dst->tail = tail;
}

/* Frees what a list still holds: calls not run, messages not delivered. */
static void list_drop(wsk_gloop *l, wsk_glist *list)
{
    for (wsk_gitem *it = list->head, *next; it; it = next) {
        next = it->next;
        if (it->msg) {
            wsk_gmsg_unref(it->msg);
        } else if (it != &l->shut) {
            if (it->drop) it->drop(it);
            free(it);
        }
    }
    list->head = list->tail = NULL;
}

/* Appends head..tail to dst's inbox and wakes it.  Once wsk_group_run has returned (dst
 * closed) nobody would take them: they are dropped at once, and WSK_ERR_STATE says so. */
static int splice(wsk_gloop *dst, wsk_gitem *head, wsk_gitem *tail)
{
    tail->next = NULL;
    pthread_mutex_lock(&dst->mu);
    int closed = dst->closed;
    if (!closed) list_append(&dst->inbox, head, tail);
    pthread_mutex_unlock(&dst->mu);
    if (closed) {
        wsk_glist refused = {head, tail};
        list_drop(dst, &refused);
        return WSK_ERR_STATE;
    }
    ev_async_send(dst->ev, &dst->wake);
    return 0;
}

int wsk_group_post(wsk_gloop *dst, wsk_gitem *item)
{
    return splice(dst, item, item);
}

void wsk_group_queue(wsk_gloop *l, unsigned j, wsk_gitem *it)
{
    wsk_glist *o = &l->out[j];
    it->next = NULL;
    if (l->g->state == 2) { /* the group ran: no turn ends to carry it */
        wsk_glist refused = {it, it};
        list_drop(l, &refused);
        return;
    }
    if (!o->head) l->outq[l->nout++] = j;
    list_append(o, it, it);
}

void wsk_group_flush(wsk_gloop *l)
{
    for (unsigned k = 0; k < l->nout; k++) {
        wsk_glist *o = &l->out[l->outq[k]];
        splice(&l->g->l[l->outq[k]], o->head, o->tail);
        o->head = o->tail = NULL;
    }
    l->nout = 0;
}

static void on_wake(struct ev_loop *ev, ev_async *w, int revents)
{
    (void)ev;
    (void)revents;
    wsk_gloop *l = w->data;
    pthread_mutex_lock(&l->mu);
    wsk_gitem *it = l->inbox.head;
    l->inbox.head = l->inbox.tail = NULL;
    pthread_mutex_unlock(&l->mu);
    while (it) {
        wsk_gitem *next = it->next;
        if (it->msg) {
            wsk_group_deliver(l, it->msg);
        } else {
            it->fn(it->arg, l->loop);
            if (it != &l->shut) free(it);
        }
        it = next;
    }
}

wsk_group *wsk_group_new(unsigned n, struct ev_loop *ev0)
{
    if (!n) return NULL;
    wsk_group *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->n = n;
    g->ev0 = ev0;
    g->bridge = -1;
    pthread_mutex_init(&g->shut_mu, NULL);
    g->l = calloc(n, sizeof *g->l);
    g->topics = wsk_gtable_new(n);
    if (!g->l || !g->topics) {
        wsk_group_free(g);
        return NULL;
    }
    for (unsigned i = 0; i < n; i++) {
        wsk_gloop *l = &g->l[i];
        l->g = g;
        l->idx = i;
        pthread_mutex_init(&l->mu, NULL);
        pthread_mutex_init(&l->stats_mu, NULL);
        atomic_flag_clear(&l->shut_sent);
        l->ev = i == 0 && ev0 ? ev0 : ev_loop_new(0);
        l->loop = l->ev ? wsk_loop_new(l->ev) : NULL;
        l->out = calloc(n, sizeof *l->out);
        l->outq = calloc(n, sizeof *l->outq);
        l->reach = calloc(n, sizeof *l->reach);
        if (!l->loop || !l->out || !l->outq || !l->reach) {
            g->n = i + 1; /* wsk_group_free frees loops 0..i */
            wsk_group_free(g);
            return NULL;
        }
        l->loop->group = l;
        ev_async_init(&l->wake, on_wake);
        l->wake.data = l;
        ev_async_start(l->ev, &l->wake);
        ev_unref(l->ev); /* the inbox alone does not keep a loop running */
    }
    return g;
}

size_t wsk_group_dropped(const wsk_group *g)
{
    return atomic_load(&((wsk_group *)g)->dropped);
}

unsigned wsk_group_size(const wsk_group *g)
{
    return g->n;
}

wsk_loop *wsk_group_loop(wsk_group *g, unsigned i)
{
    return i < g->n ? g->l[i].loop : NULL;
}

int wsk_group_add(wsk_group *g, wsk_server *srv)
{
    wsk_ctx *ctx = wsk_server_ctx(srv);
    for (unsigned i = 0; i < g->n; i++) {
        wsk_gloop *l = &g->l[i];
        if (l->loop != ctx->loop) continue;
        if (l->srv || ctx->group || g->state) return WSK_ERR_STATE;
        l->srv = srv;
        ctx->group = l;
        /* A client lands on any thread: one set of TLS ticket keys and session cache. */
        for (unsigned k = 0; k < g->n; k++)
            if (k != i && g->l[k].srv && wsk_tls_server_share(ctx, wsk_server_ctx(g->l[k].srv)))
                break;
        return 0;
    }
    return WSK_ERR_INVAL;
}

wsk_group *wsk_server_group(const wsk_server *srv, unsigned *index)
{
    const wsk_gloop *l = wsk_server_ctx(srv)->group;
    if (index) *index = l ? l->idx : 0;
    return l ? l->g : NULL;
}

static void *run_loop(void *arg)
{
    wsk_gloop *l = arg;
    ev_run(l->ev, 0);
    return NULL;
}

int wsk_group_run(wsk_group *g)
{
    if (g->state) return WSK_ERR_STATE;
    g->state = 1;
    for (unsigned i = 0; i < g->n; i++)
        if (g->l[i].srv && wsk_server_ctx(g->l[i].srv)->bridge && g->bridge < 0) g->bridge = (int)i;
    for (unsigned i = 0; i < g->n; i++) wsk_group_stats_start(&g->l[i]);
    wsk_group_accept_start(g);
    int r = 0;
    unsigned started = 1;
    for (; started < g->n; started++) {
        if (pthread_create(&g->l[started].thread, NULL, run_loop, &g->l[started])) {
            wsk_log(g->l[0].loop, WSK_LOG_ERROR, "group: cannot start thread %u", started);
            wsk_group_shutdown(g, WSK_CLOSE_INTERNAL, "cannot start", 0);
            r = WSK_ERR_NOMEM;
            break;
        }
    }
    ev_run(g->l[0].ev, 0);
    for (unsigned i = 1; i < started; i++) pthread_join(g->l[i].thread, NULL);
    g->state = 2;
    /* What other loops sent to a loop after it ended: nobody is left to take it; from now on
     * the inbox refuses what comes (splice). */
    for (unsigned i = 0; i < g->n; i++) {
        /* Under the lock: a loop that ended early may be posted to until the others end, and
         * wsk_group_call may be called from any thread. */
        pthread_mutex_lock(&g->l[i].mu);
        g->l[i].closed = 1;
        wsk_glist left = g->l[i].inbox;
        g->l[i].inbox.head = g->l[i].inbox.tail = NULL;
        pthread_mutex_unlock(&g->l[i].mu);
        list_drop(&g->l[i], &left);
        for (unsigned j = 0; j < g->n; j++) list_drop(&g->l[i], &g->l[i].out[j]);
        g->l[i].nout = 0;
    }
    return r;
}

/* A wsk_group_call_or_drop that will not run: its arg goes back through the caller's drop. */
static void call_dropped(wsk_gitem *it)
{
    it->arg_drop(it->arg);
}

/* wsk_group_call, and wsk_group_call_or_drop with drop set. */
static int call(wsk_group *g, unsigned i, void (*fn)(void *arg, wsk_loop *loop),
                void (*drop)(void *arg), void *arg)
{
    if (!fn || (i != WSK_GROUP_ALL && i >= g->n)) return WSK_ERR_INVAL;
    unsigned from = i == WSK_GROUP_ALL ? 0 : i, to = i == WSK_GROUP_ALL ? g->n : i + 1;
    wsk_gitem *items = NULL;
    int r = 0;
    for (unsigned k = from; k < to; k++) { /* all or nothing: allocate first */
        wsk_gitem *it = calloc(1, sizeof *it);
        if (!it) {
            while (items) {
                wsk_gitem *next = items->next;
                free(items);
                items = next;
            }
            for (unsigned d = from; drop && d < to; d++) drop(arg);
            return WSK_ERR_NOMEM;
        }
        it->fn = fn;
        it->arg = arg;
        it->arg_drop = drop;
        it->drop = drop ? call_dropped : NULL;
        it->next = items;
        items = it;
    }
    for (unsigned k = from; k < to; k++) {
        wsk_gitem *it = items;
        items = it->next;
        if (wsk_group_post(&g->l[k], it) < 0) r = WSK_ERR_STATE; /* the group ran: freed */
    }
    return r;
}

int wsk_group_call(wsk_group *g, unsigned i, void (*fn)(void *arg, wsk_loop *loop), void *arg)
{
    return call(g, i, fn, NULL, arg);
}

int wsk_group_call_or_drop(wsk_group *g, unsigned i, void (*fn)(void *arg, wsk_loop *loop),
                           void (*drop)(void *arg), void *arg)
{
    if (!drop) return WSK_ERR_INVAL;
    return call(g, i, fn, drop, arg);
}

/* wsk_group_call_ordered, and wsk_group_call_ordered_or_drop with drop set. */
static int call_ordered(wsk_loop *from, unsigned i, void (*fn)(void *arg, wsk_loop *loop),
                        void (*drop)(void *arg), void *arg)
{
    wsk_gloop *l = from ? from->group : NULL;
    if (!l || !fn || i >= l->g->n) return WSK_ERR_INVAL;
    wsk_gitem *it = l->g->state == 2 ? NULL : calloc(1, sizeof *it);
    if (!it) {
        if (drop) drop(arg);
        return l->g->state == 2 ? WSK_ERR_STATE : WSK_ERR_NOMEM;
    }
    it->fn = fn;
    it->arg = arg;
    it->arg_drop = drop;
    it->drop = drop ? call_dropped : NULL;
    /* In out[i], behind this turn's publishes for i so far: a batch of short ones is closed by
     * it (group_topics.c's batch_add starts a new one after anything else).  Loop i ended
     * first: it waits in i's inbox, dropped when wsk_group_run returns (list_drop). */
    wsk_group_queue(l, i, it);
    return 0;
}

int wsk_group_call_ordered(wsk_loop *from, unsigned i, void (*fn)(void *arg, wsk_loop *loop),
                           void *arg)
{
    return call_ordered(from, i, fn, NULL, arg);
}

int wsk_group_call_ordered_or_drop(wsk_loop *from, unsigned i,
                                   void (*fn)(void *arg, wsk_loop *loop), void (*drop)(void *arg),
                                   void *arg)
{
    if (!drop) return WSK_ERR_INVAL;
    return call_ordered(from, i, fn, drop, arg);
}

/* A member drained: its loop ends, whatever else still watches there (a bridge's engine
 * connection, the program's signal watchers). */
static void shut_done(wsk_server *srv, size_t dropped)
{
    wsk_gloop *l = wsk_server_ctx(srv)->group;
    atomic_fetch_add(&l->g->dropped, dropped);
    wsk_group_stats_take(l); /* the final figures */
    ev_break(l->ev, EVBREAK_ALL);
}

static void shut_one(void *arg, wsk_loop *loop)
{
    wsk_group *g = arg;
    wsk_gloop *l = loop->group;
    pthread_mutex_lock(&g->shut_mu);
    unsigned code = g->shut_code;
    double grace = g->shut_grace;
    char reason[sizeof g->shut_reason];
    memcpy(reason, g->shut_reason, sizeof reason);
    pthread_mutex_unlock(&g->shut_mu);
    if (l->srv) wsk_server_shutdown(l->srv, code, reason, grace, shut_done);
}

void wsk_group_shutdown(wsk_group *g, unsigned code, const char *reason, double grace)
{
    pthread_mutex_lock(&g->shut_mu);
    g->shut_code = code;
    g->shut_grace = grace;
    size_t full = reason ? strlen(reason) : 0, n = full;
    if (n > sizeof g->shut_reason - 1) n = sizeof g->shut_reason - 1;
    /* Cut at a character's start: reason[n], the first byte left out, is not inside one. */
    while (n && n < full && ((unsigned char)reason[n] & 0xC0) == 0x80) n--;
    if (n) memcpy(g->shut_reason, reason, n);
    g->shut_reason[n] = 0;
    pthread_mutex_unlock(&g->shut_mu);
    for (unsigned i = 0; i < g->n; i++) {
        wsk_gloop *l = &g->l[i];
        if (atomic_flag_test_and_set(&l->shut_sent)) continue; /* once per loop */
        l->shut.fn = shut_one;
        l->shut.arg = g;
        l->shut.msg = NULL;
        wsk_group_post(l, &l->shut);
    }
}

void wsk_group_free(wsk_group *g)
{
    if (!g) return;
    for (unsigned i = 0; g->l && i < g->n; i++) {
        wsk_gloop *l = &g->l[i];
        if (l->loop) {
            list_drop(l, &l->inbox);
            for (unsigned j = 0; l->out && j < g->n; j++) list_drop(l, &l->out[j]);
            if (ev_is_active(&l->wake)) {
                if (!l->held) ev_ref(l->ev);
                ev_async_stop(l->ev, &l->wake);
            }
            if (ev_is_active(&l->stats_timer)) {
                ev_ref(l->ev);
                ev_timer_stop(l->ev, &l->stats_timer);
            }
            wsk_loop_free(l->loop);
        }
        if (l->ev && l->ev != g->ev0) ev_loop_destroy(l->ev);
        pthread_mutex_destroy(&l->mu);
        pthread_mutex_destroy(&l->stats_mu);
        free(l->out);
        free(l->outq);
        free(l->reach);
    }
    wsk_gtable_free(g->topics);
    pthread_mutex_destroy(&g->shut_mu);
    free(g->l);
    free(g);
}
