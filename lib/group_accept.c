/* The acceptor mode of a server group (WSK_ACCEPT_ROUND_ROBIN): member 0 alone listens; each
 * socket it accepts goes to the next member in turn, through that loop's inbox (group.c) as a
 * call that makes the member adopt it (wsk_server_adopt, the same function its own accept would
 * run), so the socket gets that member's limits, TLS handshake, handlers and metrics.  The
 * sockets of one turn of the acceptor's loop for one member leave together, with one wake-up.
 * The acceptor serves its own turn itself.  A member that has shut down (gone) or is at its
 * max_connections (full) is skipped; both flags are the member's word as of its last change, so
 * a socket may still reach a member that just became full or gone: the member closes it, and
 * it counts as a failed hand-off, like one whose call could not be queued or whose loop ended
 * before running it. */
#include "group.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One socket on its way: the hand-off first, so freeing its item frees it all. */
struct handoff {
    wsk_handoff h;
    char peer[64];
};

int wsk_group_set_accept(wsk_group *g, unsigned mode)
{
    if (mode != WSK_ACCEPT_REUSEPORT && mode != WSK_ACCEPT_ROUND_ROBIN) return WSK_ERR_INVAL;
    if (g->state) return WSK_ERR_STATE;
    g->accept = mode;
    return 0;
}

unsigned wsk_group_accept(const wsk_group *g)
{
    return g->accept;
}

int wsk_group_acceptor(const wsk_gloop *l)
{
    return l && l->idx == 0 && l->g->accept == WSK_ACCEPT_ROUND_ROBIN && l->g->n > 1;
}

void wsk_group_handoff_failed(wsk_gloop *l, const char *why)
{
    atomic_fetch_add(&l->g->handoff_failed, 1);
    wsk_log(l->loop, WSK_LOG_WARN, "thread %u: a handed-over connection closed: %s", l->idx, why);
}

size_t wsk_group_handoffs_failed(const wsk_group *g)
{
    return atomic_load(&((wsk_group *)g)->handoff_failed);
}

uint64_t wsk_group_handoffs_reported(const wsk_gloop *l)
{
    return l && l->idx == 0 ? wsk_group_handoffs_failed(l->g) : 0;
}

void wsk_group_accept_start(wsk_group *g)
{
    if (g->accept != WSK_ACCEPT_ROUND_ROBIN) return;
    for (unsigned i = 1; i < g->n; i++) {
        if (!g->l[i].srv) continue;
        g->l[i].held = 1;
        ev_ref(g->l[i].ev);
    }
}

void wsk_group_member_state(wsk_gloop *l, int full, int gone)
{
    atomic_store_explicit(&l->full, full, memory_order_relaxed);
    atomic_store_explicit(&l->conns, l->srv ? wsk_server_ctx(l->srv)->nconns : 0,
                          memory_order_relaxed);
    if (!gone) return;
    atomic_store(&l->gone, 1);
    if (l->held) { /* its connections (or its shutdown's timer) keep it running from now */
        l->held = 0;
        ev_unref(l->ev);
    }
}

int wsk_group_takes(const wsk_gloop *l)
{
    return l->srv && !atomic_load(&l->gone) &&
           !atomic_load_explicit(&l->full, memory_order_relaxed);
}

unsigned wsk_group_census(const wsk_gloop *l, size_t *conns, size_t *limit)
{
    unsigned members = 0;
    int unlimited = 0;
    *conns = *limit = 0;
    for (unsigned i = 0; i < l->g->n; i++) {
        const wsk_gloop *m = &l->g->l[i];
        if (!m->srv) continue;
        members++;
        *conns += atomic_load_explicit(&((wsk_gloop *)m)->conns, memory_order_relaxed);
        size_t max = wsk_server_opts_of(m->srv)->max_connections; /* fixed: read anywhere */
        unlimited |= !max;
        *limit += max;
    }
    if (unlimited) *limit = 0;
    return members;
}

int wsk_group_room(const wsk_gloop *l)
{
    for (unsigned i = 0; i < l->g->n; i++)
        if (wsk_group_takes(&l->g->l[i])) return 1;
    return 0;
}

void wsk_handoff_adopted(wsk_gloop *l, int r)
{
    if (r < 0)
        wsk_group_handoff_failed(l, r == WSK_ERR_STATE ? "shutting down or at max_connections"
                                                       : "out of memory");
}

/* Its loop ended before running the call (group.c's list_drop, once every loop stopped). */
static void handoff_drop(wsk_gitem *it)
{
    wsk_handoff *h = (wsk_handoff *)it;
    close(h->fd);
    wsk_group_handoff_failed(h->to, "its thread had ended");
}

void wsk_handoff_init(wsk_handoff *h, wsk_gloop *to, int fd, void (*fn)(void *h, wsk_loop *loop))
{
    memset(&h->it, 0, sizeof h->it);
    h->it.fn = fn;
    h->it.arg = h;
    h->it.drop = handoff_drop;
    h->to = to;
    h->fd = fd;
}

/* On the adopting loop. */
static void adopt(void *arg, wsk_loop *loop)
{
    struct handoff *h = arg;
    wsk_handoff_adopted(loop->group, wsk_server_adopt(loop->group->srv, h->h.fd, h->peer));
}

int wsk_group_handoff(wsk_gloop *l, int fd, const char *peer)
{
    wsk_group *g = l->g;
    unsigned k = g->next;
    for (unsigned tries = 0; tries < g->n && !wsk_group_takes(&g->l[k]); tries++)
        k = (k + 1) % g->n;
    g->next = (k + 1) % g->n;
    if (k == l->idx) return 0; /* its own turn (or nobody else takes it: the limits decide) */
    struct handoff *h = calloc(1, sizeof *h);
    if (!h) {
        close(fd);
        wsk_group_handoff_failed(l, "out of memory");
        return 1;
    }
    wsk_handoff_init(&h->h, &g->l[k], fd, adopt);
    if (peer) snprintf(h->peer, sizeof h->peer, "%s", peer);
    wsk_group_queue(l, k, &h->h.it); /* with the turn's other sockets for k: one wake-up */
    return 1;
}
