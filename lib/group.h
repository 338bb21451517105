/* Server groups (internal side of wsk_group_*): n loops on n threads sharing their topics.
 *
 * group.c runs the loops and carries work between them: each loop has an inbox (a list under
 * a short mutex section) and an ev_async that wakes it.  group_topics.c keeps the group-wide
 * topic table (which loops have subscribers of what) and hands publishes to the loops that
 * need them.  pubsub.c calls the hooks below where a topic is made or freed, where its
 * subscriber count changes and where a publish has been delivered locally. */
#ifndef WSK_GROUP_H
#define WSK_GROUP_H

#include "internal.h"

#include <pthread.h>
#include <stdatomic.h>

/* A topic (or pattern) of the group table: which loops have a local topic of that name, and
 * how many subscribers each has.  count[i] is written by loop i only (relaxed atomics): read
 * by any loop's publish to know whom to wake. */
typedef struct wsk_gtopic wsk_gtopic;
struct wsk_zmsg; /* pubsub.h */

/* One queued cross-loop message (group_topics.c) or call (group.c) in a loop's inbox. */
typedef struct wsk_gitem {
    struct wsk_gitem *next;
    void (*fn)(void *arg, wsk_loop *loop); /* a call; NULL: the message `msg` */
    void *arg;
    struct wsk_gmsg *msg;
    /* A call that holds something (an accepted socket, group_accept.c; the arg of
     * wsk_group_call_or_drop or wsk_group_call_ordered_or_drop): what to do with it when the
     * call is dropped unrun (its loop has ended).  NULL for the others. */
    void (*drop)(struct wsk_gitem *it);
    void (*arg_drop)(void *arg); /* the _or_drop calls' drop: run by `drop` */
} wsk_gitem;

/* A list of items, oldest first. */
typedef struct wsk_glist {
    wsk_gitem *head, *tail;
} wsk_glist;

/* One loop of a group: ctx->group of its member server. */
typedef struct wsk_gloop {
    struct wsk_group *g;
    unsigned idx;
    wsk_loop *loop;
    wsk_server *srv; /* the member, NULL until wsk_group_add */
    struct ev_loop *ev;
    pthread_t thread; /* loops 1..n-1, while the group runs */
    ev_async wake;
    wsk_gitem shut;        /* wsk_group_shutdown's call, made without allocating */
    atomic_flag shut_sent; /* shut is queued already */
    /* The inbox: any thread appends under mu, the loop takes the whole list when woken. */
    pthread_mutex_t mu;
    wsk_glist inbox;
    int closed; /* under mu: wsk_group_run returned, the inbox takes nothing more */
    /* This loop's thread only: messages for loop j wait in out[j] until the end of the loop
     * turn (wsk_group_flush), which moves each list to its inbox and wakes it once. */
    wsk_glist *out;
    unsigned *outq; /* indexes j of the non-empty out[j], nout of them */
    unsigned nout;
    uint32_t *reach; /* scratch of a publish: subscribers per loop */
    int reach_ready; /* reach holds the next wsk_group_publish's (wsk_group_reach_ready) */
    /* The member's wsk_server_stats, copied by its loop every second and when it drained, for
     * wsk_group_stats from any thread (group_stats.c). */
    ev_timer stats_timer;
    pthread_mutex_t stats_mu;
    wsk_stats stats;
    int has_stats;
    /* Acceptor mode (group_accept.c): set by this loop's thread, read by the acceptor's. */
    atomic_int gone;     /* the member shut down or was freed: it takes no more sockets */
    atomic_int full;     /* the member is at its max_connections */
    atomic_size_t conns; /* the member's connections as of its last change */
    int held;            /* this loop's thread: the wake-up keeps the loop running (no listener) */
} wsk_gloop;

struct wsk_group {
    unsigned n;
    wsk_gloop *l;        /* n loops */
    struct ev_loop *ev0; /* the caller's loop 0, or NULL when the group made it */
    int state;           /* 0 new, 1 running, 2 ran */
    int bridge;          /* the index of the bridging member, -1 when none (set by run) */
    pthread_mutex_t shut_mu;
    unsigned shut_code;
    double shut_grace;
    char shut_reason[124];
    atomic_size_t dropped;     /* wsk_group_dropped */
    struct wsk_gtable *topics; /* group_topics.c */
    unsigned accept;           /* WSK_ACCEPT_REUSEPORT or WSK_ACCEPT_ROUND_ROBIN */
    unsigned next;             /* the acceptor's thread only: the member the next socket goes to */
    atomic_size_t handoff_failed; /* sockets closed because their hand-off failed */
    wsk_affinity_fn affinity;     /* wsk_group_set_affinity (group_affinity.c), or NULL */
    void *affinity_user;
};

/* group.c */
/* Appends item to loop dst's inbox and wakes it (from any thread): 0; or, once wsk_group_run
 * has returned, drops item at once (as an undelivered one: its drop, freed) and returns
 * WSK_ERR_STATE. */
int wsk_group_post(wsk_gloop *dst, wsk_gitem *item);
/* On l's thread: queues item it for loop j, to leave at the end of l's turn with the rest of
 * the batch for j (wsk_group_flush); once wsk_group_run has returned, drops it at once. */
void wsk_group_queue(wsk_gloop *l, unsigned j, wsk_gitem *it);
/* The end of loop turn of l's thread (wsk_loop_reap): hands each waiting list to its loop. */
void wsk_group_flush(wsk_gloop *l);

/* group_accept.c: the acceptor mode, one member accepts and hands sockets round-robin. */
/* Whether l's member accepts for the whole group (loop 0 in WSK_ACCEPT_ROUND_ROBIN mode). */
int wsk_group_acceptor(const wsk_gloop *l);
/* On the acceptor's thread, a socket it just accepted (peer: its address, or NULL): 1 when it
 * went to another member's loop (or its hand-off failed: closed, counted and logged), 0 when
 * it is the acceptor's own to take (wsk_server_adopt). */
int wsk_group_handoff(wsk_gloop *l, int fd, const char *peer);
/* wsk_group_run, before the loops run: in acceptor mode, the members without a listener keep
 * their loops running (until they shut down) for the sockets to come. */
void wsk_group_accept_start(wsk_group *g);
/* Whether l's member takes sockets now: it has not gone and is not full. */
int wsk_group_takes(const wsk_gloop *l);
/* Whether some member that has not gone takes sockets now (none full). */
int wsk_group_room(const wsk_gloop *l);
/* The acceptor's view of the members (their counts as of their last change): *conns their
 * connections, *limit the sum of their max_connections (0 when one has none); returns how many
 * members there are. */
unsigned wsk_group_census(const wsk_gloop *l, size_t *conns, size_t *limit);
/* On l's thread: its member is full (at max_connections) or not, gone (shut down) or not; its
 * connection count changed. */
void wsk_group_member_state(wsk_gloop *l, int full, int gone);
/* A socket on its way to another member's loop (group_accept.c, group_affinity.c), first in
 * the struct that carries it: freeing its item frees it all. */
typedef struct wsk_handoff {
    wsk_gitem it;
    wsk_gloop *to;
    int fd;
} wsk_handoff;
/* Makes h a call of fn(h, loop) for loop `to` (queue h->it there); when that loop ends before
 * running it, fd is closed and the failed hand-off counted and logged. */
void wsk_handoff_init(wsk_handoff *h, wsk_gloop *to, int fd, void (*fn)(void *h, wsk_loop *loop));
/* On l's thread, r the outcome of its adopting a handed socket: a failure (fd closed) is
 * counted and logged. */
void wsk_handoff_adopted(wsk_gloop *l, int r);
/* A socket that could not be handed over, closed: counts and logs it once. */
void wsk_group_handoff_failed(wsk_gloop *l, const char *why);
/* wsk_stats.handoffs_failed of l's member (l NULL: none): the group's count on member 0, 0 on
 * the others. */
uint64_t wsk_group_handoffs_reported(const wsk_gloop *l);

/* group_affinity.c: a connection goes to the member that owns its request. */
struct wsk_http_request;
/* On the thread of c, a plain server connection whose upgrade request h (parsed from p[0..n),
 * which hold it and what was read behind it) is complete: 1 when the group's affinity function
 * gave it to another member (c is ended here, its fd and a copy of the bytes on their way), 0
 * when c stays (no function, TLS, handed once already, replies queued, the other member full or
 * gone, or no memory: served here all the same). */
int wsk_group_affinity(struct wsk_ws *c, const struct wsk_http_request *h, const uint8_t *p,
                       size_t n);

/* group_stats.c */
/* Starts loop l's stats snapshots (wsk_group_run, before the loops run). */
void wsk_group_stats_start(wsk_gloop *l);
/* Copies l's member's stats now (on l's thread). */
void wsk_group_stats_take(wsk_gloop *l);

/* group_topics.c */
struct wsk_gtable *wsk_gtable_new(unsigned n);
void wsk_gtable_free(struct wsk_gtable *t);
/* Loop l made its local topic name[0..len) (a pattern when `pattern`): the group entry, or
 * NULL when memory is short. */
wsk_gtopic *wsk_group_topic_made(wsk_gloop *l, const char *name, size_t len, int pattern);
/* Loop l freed its local topic of entry gt. */
void wsk_group_topic_freed(wsk_gloop *l, wsk_gtopic *gt);
/* Loop l's subscriber count of gt changes by delta. */
void wsk_group_topic_count(wsk_gloop *l, wsk_gtopic *gt, int delta);
/* After a publish reached l's local subscribers: hands it to every other loop with
 * subscribers (and to the bridging member when `forward`), with z, what l's shared deflater
 * made of it (z->z NULL: nothing).  Returns the subscribers counted on
 * other loops, or WSK_ERR_NOMEM. */
long wsk_group_publish(wsk_gloop *l, const char *topic, size_t tlen, const void *data, size_t len,
                       unsigned op, int compress, const struct wsk_zmsg *z, int to_self,
                       int forward);
/* Before l delivers a publish to its own subscribers of a topic, gt its entry: reads the other
 * loops' counts of gt for the wsk_group_publish of that topic that follows on l, without the
 * table's lock or a hash, when the group has no patterns (gt stays while l subscribes to it).
 * 1 when it did; l->reach_ready = 0 withdraws it. */
int wsk_group_reach_ready(wsk_gloop *l, const wsk_gtopic *gt);
/* A publish's wish for the engine's count (wsk_server_publish_counted): fn(arg, local, nodes)
 * to run once on the publishing loop. */
typedef struct wsk_gdone {
    void (*fn)(void *arg, long local, long nodes);
    void *arg;
} wsk_gdone;
/* The same as wsk_group_publish, for a publish that delivered `here` sockets on l and waits
 * for the engine's count (done): when the bridge is another loop's, that loop forwards the
 * publish with the request and done->fn runs later on l (with local: here plus the other
 * loops' count), and done->fn is set NULL; otherwise it is left to the caller. */
long wsk_group_publish_counted(wsk_gloop *l, const char *topic, size_t tlen, const void *data,
                               size_t len, unsigned op, int compress, const struct wsk_zmsg *z,
                               int to_self, long here, wsk_gdone *done);
/* The bridge of l's group (the bridging member's), or NULL: l NULL, or no bridge. */
struct wsk_bridge *wsk_group_bridge(const wsk_gloop *l);
/* The number of the last publish handed to other loops (one counter for the group, taken by
 * each such publish): a subscription made now remembers it, and a message of another loop
 * that arrives later with a number up to it (published before the subscription, still on its
 * way) is not delivered to that subscription (pubsub.c). */
uint64_t wsk_group_seq(wsk_gloop *l);
/* A message from another loop, on this loop's thread: local delivery, the bridge. */
void wsk_group_deliver(wsk_gloop *l, struct wsk_gmsg *m);
/* Drops a reference to m (the last frees it). */
void wsk_gmsg_unref(struct wsk_gmsg *m);
/* The whole group's answers to wsk_server_subscribers / _reaches / _topics. */
size_t wsk_group_subscribers(wsk_gloop *l, const char *topic, size_t len);
int wsk_group_reaches(wsk_gloop *l, const char *topic, size_t len);
size_t wsk_group_topics(wsk_gloop *l);
/* wsk_server_each_topic over the group's topics: subscribers summed over the loops, as each
 * last counted them; fn runs under the table's read lock. */
void wsk_group_each_topic(wsk_gloop *l,
                          void (*fn)(void *arg, const char *topic, size_t len, size_t subscribers),
                          void *arg);
/* wsk_pubsub_each over the group's topics (patterns left out). */
void wsk_group_each(wsk_gloop *l, void (*fn)(void *arg, const char *topic, size_t n), void *arg);

#endif
