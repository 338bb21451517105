/* Connection affinity in a server group (wsk_group_set_affinity): a plain connection whose
 * upgrade request has been read on the member that accepted it goes to the member the
 * application's function names, the one that owns what the request asks for (a chat room, say),
 * so that the messages of one room stay on one loop instead of crossing loops both ways.
 *
 * The request is parsed where it was read; the function sees it there.  The fd and a copy of
 * every byte read so far (the request, and any frame pipelined behind it) go to the owner
 * through its inbox (group.c) with the turn's other calls for it, and the owner handles them
 * as if it had read them itself (wsk_server_adopt_request): its max_connections, handlers,
 * upgrade, metrics.  It does not hand the connection on again.  TLS connections stay where
 * they were accepted: the handshake's state lives in that thread's mbedTLS context, which no
 * other loop may take over.  A connection that cannot go (the owner full or gone, no memory)
 * is served where it is; one that left but could not be adopted there (the owner filled up or
 * shut down on the way, or its loop ended first) is closed, counted and logged like
 * group_accept.c's failed hand-offs.
 * The socket stays in the first loop's epoll set after it left: libev does not tell epoll when
 * a watcher stops (it assumes the fd is being closed), and removes an fd only when an event
 * comes for it that no watcher wants.  So the first loop wakes once more for a handed socket,
 * when the socket next becomes readable, and removes it then (epoll_ctl DEL of its number).
 * The kernel keys that entry on the open socket: the DEL removes it, or, when the owner has
 * closed the socket meanwhile (which removed the entry) and the number was reused, finds no
 * entry of the first loop's for the new socket (a socket that loop registers under the number
 * can only be registered by that loop's own thread, which is busy with the DEL), and libev
 * rebuilds its epoll set. */
#include "group.h"
#include "http_exchange.h"

#include <stdlib.h>
#include <string.h>

/* A connection on its way: the hand-off first, so freeing its item frees it all. */
struct carried {
    wsk_handoff h;
    uint32_t born;
    size_t n;
    uint8_t bytes[]; /* what the first member read */
};

int wsk_group_set_affinity(wsk_group *g, wsk_affinity_fn fn, void *user)
{
    if (g->state) return WSK_ERR_STATE;
    g->affinity = fn;
    g->affinity_user = user;
    return 0;
}

/* On the owner's loop. */
static void adopt(void *arg, wsk_loop *loop)
{
    struct carried *m = arg;
    wsk_handoff_adopted(
        loop->group, wsk_server_adopt_request(loop->group->srv, m->h.fd, m->bytes, m->n, m->born));
}

int wsk_group_affinity(struct wsk_ws *c, const wsk_http_request *h, const uint8_t *p, size_t n)
{
    wsk_gloop *l = c->ctx->group;
    /* Replies queued (a plain request answered before the upgrade) would be lost with c. */
    if (!l || !l->g->affinity || c->ctx->tls || c->handed || c->q.bytes || n > WSK_RBUF_SIZE)
        return 0;
    struct wsk_request req;
    wsk_request_init(&req, h, c->io.fd);
    int k = l->g->affinity(l->g->affinity_user, &req, l->idx);
    if (k < 0 || (unsigned)k >= l->g->n || (unsigned)k == l->idx || !wsk_group_takes(&l->g->l[k]))
        return 0;
    struct carried *m = malloc(sizeof *m + n);
    if (!m) return 0;
    m->born = c->born;
    m->n = n;
    memcpy(m->bytes, p, n);                   /* before c goes: p may be its cold buffer */
    if (l->loop->log_level >= WSK_LOG_INFO) { /* the address costs a system call */
        char addr[64];
        wsk_log(l->loop, WSK_LOG_INFO, "%s: handed from thread %u to thread %d",
                wsk_addr_string(c->io.fd, addr, sizeof addr), l->idx, k);
    }
    wsk_handoff_init(&m->h, &l->g->l[k], wsk_conn_detach(c), adopt);
    wsk_group_queue(l, (unsigned)k, &m->h.it); /* with the turn's other calls for k: one wake-up */
    return 1;
}
