/* Publish/subscribe: the topics of a server and the sockets subscribed to them.
 *
 * Three structures, each O(1) per operation, so thousands of topics and tens of thousands of
 * subscriptions cost nothing quadratic:
 *  - the topics, in an open-addressing table keyed by name.  The hash is keyed SipHash-1-3 with
 *    a random key per server: clients name the topics, and must not be able to pick names that
 *    collide and turn every lookup into a scan;
 *  - each topic's subscribers, a dense array that a publish walks;
 *  - one membership node per (topic, socket): on the socket's list (c->cold->subs, for
 *    wsk_ws_subscriptions and for leaving every topic at close) and in a second table keyed by the
 *    pair (wsk_ws_subscribed, a repeated subscribe).  The node knows its slot in the topic's
 *    array, so leaving a topic is a swap with the last subscriber.
 *
 * A publish frames the message once.  Short frames are copied into each subscriber's queue,
 * longer ones are queued by reference to one shared block (see WSK_PUBLISH_COPY_MAX).  With
 * compression, sockets on the loop's shared deflater get one frame compressed once; sockets
 * with their own deflater (context takeover) compress their own copy.  Each subscriber gets
 * the backpressure rule of wsk_send, and that rule may close a socket, running its close
 * handler, in the middle of the walk; the handler may unsubscribe, subscribe and publish
 * again.  So while a publish walks a topic (t->busy), leaving only blanks the slot and
 * joining appends; the array is compacted, or the topic freed, when the last walk ends. */
#include "pubsub.h"
#include "ptab.h"
#include "topic_trie.h"
#include "bridge.h"
#include "group.h"
#include "pmd_conn.h"
#include "send_frame.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

struct member;

struct slot {
    struct wsk_ws *ws; /* NULL: left during a publish, removed when the walk ends */
    struct member *m;
};

struct topic {
    uint64_t hash;
    struct slot *subs;
    uint32_t len, cap; /* slots used (blanks included), allocated */
    uint32_t live;     /* subscribers: slots whose ws is set */
    uint32_t busy;     /* publishes walking subs right now */
    uint8_t pattern;   /* in ps->patterns (topic_trie.h) */
    wsk_gtopic *gt;    /* in a server group: the group's entry for this name (group.h) */
    uint64_t after;    /* the largest member->after so far: later messages skip no one */
    size_t name_len;
    char name[]; /* NUL-terminated for wsk_ws_subscriptions */
};

struct member {
    struct topic *t;
    struct wsk_ws *ws;
    struct member *prev, *next; /* the socket's subscriptions: a circular list */
    uint64_t hash;              /* of (t, ws), in the membership table */
    uint32_t idx;               /* slot in t->subs */
    /* In a group: wsk_group_seq when it subscribed.  A message of another loop numbered up to
     * it was published before the subscription and may still arrive: it is not for this one
     * (it would be twice for a subscriber that got it some other way meanwhile, as the
     * history of wsserve's broker; and without, the subscription would depend on how late
     * the other loop's batch comes). */
    uint64_t after;
};

/* A server's topics: wsk_ctx.pubsub. */
typedef struct wsk_pubsub {
    wsk_ptab topics;    /* struct topic *, by name (patterns included) */
    wsk_ptab members;   /* struct member *, by (topic, socket) */
    wsk_trie *patterns; /* the topics that are patterns, by token */
    uint64_t k0, k1;    /* hash key */
    uint64_t mark;      /* the last publish that gathered its sockets (struct gather) */
    wsk_ctx *ctx;       /* the server: its bridge hears of topics made and freed */
} pubsub;

static uint64_t name_hash(const pubsub *ps, const char *name, size_t n)
{
    return wsk_siphash13(ps->k0, ps->k1, name, n);
}

/* Pointers are not chosen by peers: a strong mix of the pair is enough. */
static uint64_t pair_hash(const pubsub *ps, const struct topic *t, const struct wsk_ws *ws)
{
    uint64_t x = ((uint64_t)(uintptr_t)t * 0x9E3779B97F4A7C15ULL) ^ (uint64_t)(uintptr_t)ws;
    x ^= ps->k0;
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ULL;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

/* ----- lookups ------------------------------------------------------------------------------- */

/* A topic argument: NULL stands for the empty name; 0, or -1 for NULL with a length or a name
 * over WSK_TOPIC_MAX. */
static int topic_arg(const char **topic, size_t len)
{
    if (!*topic) {
        if (len) return -1;
        *topic = "";
    }
    return len > WSK_TOPIC_MAX ? -1 : 0;
}

static pubsub *ps_of(const wsk_server *srv)
{
    return wsk_server_ctx(srv)->pubsub;
}

static pubsub *ps_make(wsk_ctx *ctx)
{
    pubsub *ps = ctx->pubsub;
    if (ps) return ps;
    ps = calloc(1, sizeof *ps);
    if (!ps) return NULL;
    uint64_t key[2];
    if (getrandom(key, sizeof key, GRND_NONBLOCK) != (ssize_t)sizeof key) {
        /* No entropy yet (early boot): a key from the clock and addresses still differs per
         * process, which is all the table needs to resist precomputed collisions. */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        key[0] = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ULL ^ (uint64_t)(uintptr_t)ps;
        key[1] = (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)ctx;
    }
    ps->k0 = key[0];
    ps->k1 = key[1];
    ps->ctx = ctx;
    ctx->pubsub = ps;
    return ps;
}

static struct topic *topic_find(const pubsub *ps, const char *name, size_t len, uint64_t h)
{
    const wsk_ptab *t = &ps->topics;
    if (!t->n) return NULL;
    size_t mask = t->cap - 1;
    for (size_t i = h & mask; t->v[i]; i = (i + 1) & mask) {
        struct topic *tp = t->v[i];
        if (t->h[i] == h && tp->name_len == len && !memcmp(tp->name, name, len)) return tp;
    }
    return NULL;
}

static struct member *member_find(const pubsub *ps, const struct topic *tp, const struct wsk_ws *ws)
{
    const wsk_ptab *t = &ps->members;
    if (!t->n) return NULL;
    uint64_t h = pair_hash(ps, tp, ws);
    size_t mask = t->cap - 1;
    for (size_t i = h & mask; t->v[i]; i = (i + 1) & mask) {
        struct member *m = t->v[i];
        if (m->t == tp && m->ws == ws) return m;
    }
    return NULL;
}

/* The membership of ws in the topic named topic[0..len) (checked by topic_arg), or NULL. */
static struct member *lookup(const wsk_ws *ws, const char *topic, size_t len)
{
    const pubsub *ps = ws->ctx->pubsub;
    if (!ps) return NULL;
    struct topic *tp = topic_find(ps, topic, len, name_hash(ps, topic, len));
    return tp ? member_find(ps, tp, ws) : NULL;
}

/* ----- topics and memberships ---------------------------------------------------------------- */

static void topic_free(pubsub *ps, struct topic *tp)
{
    if (tp->gt) wsk_group_topic_freed(ps->ctx->group, tp->gt);
    if (tp->pattern) wsk_trie_remove(ps->patterns, tp->name, tp->name_len);
    wsk_ptab_remove(&ps->topics, tp->hash, tp);
    free(tp->subs);
    free(tp);
}

/* After the last walk of a topic: drop the blanks left by sockets that left meanwhile, or the
 * topic itself when nobody is left. */
static void topic_settle(pubsub *ps, struct topic *tp)
{
    if (tp->busy) return;
    if (!tp->live) {
        /* The lifecycle hook: the last local subscriber left. */
        if (ps->ctx->bridge && !ps->ctx->group)
            wsk_bridge_topic(ps->ctx->bridge, tp->name, tp->name_len, 0);
        topic_free(ps, tp);
        return;
    }
    if (tp->len == tp->live) return;
    uint32_t j = 0;
    for (uint32_t i = 0; i < tp->len; i++) {
        if (!tp->subs[i].ws) continue;
        tp->subs[j] = tp->subs[i];
        tp->subs[j].m->idx = j;
        j++;
    }
    tp->len = j;
}

static void member_unlink(struct wsk_ws *c, struct member *m)
{
    struct member **head = (struct member **)&c->cold->subs;
    if (m->next == m) {
        *head = NULL;
        return;
    }
    m->prev->next = m->next;
    m->next->prev = m->prev;
    if (*head == m) *head = m->next;
}

static void member_drop(pubsub *ps, struct member *m)
{
    struct topic *tp = m->t;
    wsk_ptab_remove(&ps->members, m->hash, m);
    member_unlink(m->ws, m);
    if (tp->busy) {
        tp->subs[m->idx].ws = NULL;
        tp->subs[m->idx].m = NULL;
    } else {
        uint32_t last = --tp->len;
        if (m->idx != last) {
            tp->subs[m->idx] = tp->subs[last];
            tp->subs[m->idx].m->idx = m->idx;
        }
        /* Shrink a topic that lost most of its crowd. */
        if (tp->cap > 16 && tp->len * 4 < tp->cap) {
            struct slot *s = realloc(tp->subs, (tp->cap / 2) * sizeof *s);
            if (s) {
                tp->subs = s;
                tp->cap /= 2;
            }
        }
    }
    tp->live--;
    if (tp->gt) wsk_group_topic_count(ps->ctx->group, tp->gt, -1);
    free(m);
    topic_settle(ps, tp);
}

int wsk_subscribe(wsk_ws *ws, const char *topic, size_t len)
{
    if (!ws->ctx->srv || ws->state != WSK_ST_OPEN) return WSK_ERR_STATE;
    if (topic_arg(&topic, len) < 0) return WSK_ERR_INVAL;
    pubsub *ps = ps_make(ws->ctx);
    wsk_cold *k = wsk_conn_cold(ws);
    if (!ps || !k) return WSK_ERR_NOMEM;

    uint64_t h = name_hash(ps, topic, len);
    struct topic *tp = topic_find(ps, topic, len, h);
    if (tp && member_find(ps, tp, ws)) return 0;
    int made = 0;
    if (!tp) {
        tp = calloc(1, sizeof *tp + len + 1);
        if (!tp) return WSK_ERR_NOMEM;
        tp->hash = h;
        tp->name_len = len;
        if (len) memcpy(tp->name, topic, len);
        int r = wsk_ptab_insert(&ps->topics, h, tp);
        if (!r && wsk_topic_is_pattern(topic, len)) {
            if (!ps->patterns) ps->patterns = wsk_trie_new(ps->k0, ps->k1);
            r = ps->patterns ? wsk_trie_add(ps->patterns, tp->name, len, tp) : WSK_ERR_NOMEM;
            if (r < 0) wsk_ptab_remove(&ps->topics, h, tp);
            tp->pattern = !r;
        }
        if (r < 0) {
            free(tp);
            return r;
        }
        /* The group hook: the group's table hears of the topic (group_topics.c). */
        if (ws->ctx->group &&
            !(tp->gt = wsk_group_topic_made(ws->ctx->group, tp->name, len, tp->pattern))) {
            topic_free(ps, tp);
            return WSK_ERR_NOMEM;
        }
        made = 1;
    }
    struct member *m = malloc(sizeof *m);
    if (m && tp->len == tp->cap) {
        uint32_t cap = tp->cap ? tp->cap * 2 : 4;
        struct slot *s = cap > tp->cap ? realloc(tp->subs, cap * sizeof *s) : NULL;
        if (s) {
            tp->subs = s;
            tp->cap = cap;
        }
    }
    if (m) m->hash = pair_hash(ps, tp, ws);
    if (!m || tp->len == tp->cap || wsk_ptab_insert(&ps->members, m->hash, m) < 0) {
        free(m);
        if (made) topic_free(ps, tp);
        return WSK_ERR_NOMEM;
    }
    m->t = tp;
    m->ws = ws;
    m->after = ws->ctx->group ? wsk_group_seq(ws->ctx->group) : 0;
    if (m->after > tp->after) tp->after = m->after;
    m->idx = tp->len;
    tp->subs[tp->len].ws = ws;
    tp->subs[tp->len].m = m;
    tp->len++;
    tp->live++;
    if (tp->gt) wsk_group_topic_count(ws->ctx->group, tp->gt, 1);

    struct member *head = k->subs;
    if (head) { /* append: wsk_ws_subscriptions lists the oldest first */
        m->next = head;
        m->prev = head->prev;
        head->prev->next = m;
        head->prev = m;
    } else {
        m->next = m->prev = m;
        k->subs = m;
    }
    /* The lifecycle hook: the first local subscriber arrived (of a name or a pattern).  In a
     * group, the group's topic table tells the bridging member (group_topics.c). */
    if (made && ws->ctx->bridge && !ws->ctx->group)
        wsk_bridge_topic(ws->ctx->bridge, tp->name, len, 1);
    return 1;
}

int wsk_unsubscribe(wsk_ws *ws, const char *topic, size_t len)
{
    if (topic_arg(&topic, len) < 0) return WSK_ERR_INVAL;
    struct member *m = lookup(ws, topic, len);
    if (!m) return 0;
    member_drop(ws->ctx->pubsub, m);
    return 1;
}

int wsk_ws_subscribed(const wsk_ws *ws, const char *topic, size_t len)
{
    if (topic_arg(&topic, len) < 0) return WSK_ERR_INVAL;
    return lookup(ws, topic, len) != NULL;
}

size_t wsk_ws_subscriptions(const wsk_ws *ws, void (*fn)(void *arg, const char *topic, size_t len),
                            void *arg)
{
    const struct member *head = ws->cold ? ws->cold->subs : NULL, *m = head;
    size_t n = 0;
    if (!head) return 0;
    do {
        if (fn) fn(arg, m->t->name, m->t->name_len);
        n++;
        m = m->next;
    } while (m != head);
    return n;
}

/* A message a queuing hold keeps for its socket (wsk_ws_hold_queue): its payload, copied. */
struct held_msg {
    struct held_msg *next;
    size_t len;
    unsigned op;
    uint8_t compress;
    uint8_t retained; /* a retained publish (WSK_PUB_RETAINED) */
    uint8_t early;    /* queued before the hold was last made anew (the read's point) */
    uint8_t data[];
};

/* One held topic of a socket (wsk_ws_hold): its messages skip the socket while `until` is
 * UINT64_MAX, then (wsk_ws_hold_end) those of other loops numbered up to it.  A queuing hold
 * (wsk_ws_hold_queue) keeps every one of them instead, in order, until it ends. */
struct wsk_hold {
    struct wsk_hold *next;
    uint64_t until;
    int group; /* wsk_ws_hold_group: this loop's own messages pass */
    int queue; /* wsk_ws_hold_queue: its messages wait in q */
    struct held_msg *q, **qtail;
    size_t qbytes; /* the payloads in q: counted against the socket's backpressure limit */
    size_t len;
    char topic[];
};

/* The hold of topic[0..len) in k, through the link that points to it (NULL: none). */
static struct wsk_hold **hold_find(wsk_cold *k, const char *topic, size_t len)
{
    struct wsk_hold **at = &k->holds;
    for (; *at; at = &(*at)->next)
        if ((*at)->len == len && !memcmp((*at)->topic, topic, len)) return at;
    return NULL;
}

static void held_free(struct held_msg *m)
{
    while (m) {
        struct held_msg *next = m->next;
        free(m);
        m = next;
    }
}

/* The retained publish of queue q that goes first (wsk_ws_hold_release_topic's flags): with
 * WSK_HOLD_FIRST, the first one queued; none otherwise. */
static struct held_msg *held_first(struct held_msg *q, int flags)
{
    struct held_msg *m = flags & WSK_HOLD_FIRST ? q : NULL;
    while (m && !m->retained) m = m->next;
    return m;
}

/* Unlinks and frees the hold *at (the flag goes with the last one), then sends what it queued,
 * in order (as wsk_ws_hold_release_topic's flags say): behind whatever the application sent
 * meanwhile, ahead of every later message.  A send may close ws (its backpressure rule): the
 * rest is freed then. */
static void hold_drop(wsk_ws *ws, struct wsk_hold **at, int flags)
{
    struct wsk_hold *h = *at;
    struct held_msg *q = h->q, *first = held_first(q, flags);
    *at = h->next;
    free(h);
    if (!--ws->cold->nholds) {
        ws->flags &= (uint16_t)~WSK_F_HOLD;
        wsk_conn_cold_trim(ws);
    }
    if (first) wsk_send(ws, first->data, first->len, (wsk_opcode)first->op, first->compress);
    for (struct held_msg *m = q; m && ws->state == WSK_ST_OPEN; m = m->next) {
        /* Superseded: a retained publish from before the read whose answer went. */
        int old = m->retained && m->early && (flags & WSK_HOLD_SENT);
        if (m != first && !old) wsk_send(ws, m->data, m->len, (wsk_opcode)m->op, m->compress);
    }
    held_free(q);
}

void wsk_holds_free(wsk_cold *k)
{
    while (k->holds) {
        struct wsk_hold *h = k->holds;
        k->holds = h->next;
        held_free(h->q);
        free(h);
    }
    k->nholds = 0;
}

/* wsk_ws_hold (kind 0), wsk_ws_hold_group (1) and wsk_ws_hold_queue (2, plus 1 with group). */
static int hold(wsk_ws *ws, const char *topic, size_t len, int kind)
{
    if (!ws->ctx->srv) return WSK_ERR_STATE;
    if (topic_arg(&topic, len) < 0 || wsk_topic_is_pattern(topic, len)) return WSK_ERR_INVAL;
    wsk_cold *k = wsk_conn_cold(ws);
    if (!k) return WSK_ERR_NOMEM;
    struct wsk_hold **at = hold_find(k, topic, len);
    if (at) { /* held already: held anew */
        struct wsk_hold *h = *at;
        h->until = UINT64_MAX;
        h->group = kind & 1;
        h->queue = (kind & 2) != 0;
        for (struct held_msg *m = h->q; m; m = m->next) m->early = 1;
        if (!h->queue) { /* what a queue kept, the application now sends */
            held_free(h->q);
            h->q = NULL;
            h->qtail = &h->q;
            h->qbytes = 0;
        }
        return 0;
    }
    if (k->nholds == WSK_HOLD_MAX) { /* the oldest ended hold makes room, as a new one would */
        struct wsk_hold **old = NULL;
        for (at = &k->holds; *at; at = &(*at)->next)
            if ((*at)->until != UINT64_MAX) old = at;
        if (!old) return WSK_ERR_STATE;
        hold_drop(ws, old, 0);
    }
    struct wsk_hold *h = malloc(sizeof *h + len);
    if (!h) return WSK_ERR_NOMEM;
    *h = (struct wsk_hold){k->holds, UINT64_MAX, kind & 1, (kind & 2) != 0, NULL, NULL, 0, len};
    h->qtail = &h->q;
    if (len) memcpy(h->topic, topic, len);
    k->holds = h;
    k->nholds++;
    ws->flags |= WSK_F_HOLD;
    return 0;
}

int wsk_ws_hold(wsk_ws *ws, const char *topic, size_t len)
{
    return hold(ws, topic, len, 0);
}

int wsk_ws_hold_group(wsk_ws *ws, const char *topic, size_t len)
{
    return hold(ws, topic, len, 1);
}

int wsk_ws_hold_queue(wsk_ws *ws, const char *topic, size_t len, int flags)
{
    return hold(ws, topic, len, 2 | (flags & WSK_HOLD_GROUP));
}

void wsk_ws_hold_end(wsk_ws *ws)
{
    if (!(ws->flags & WSK_F_HOLD)) return;
    uint64_t until = ws->ctx->group ? wsk_group_seq(ws->ctx->group) : 0;
    if (!until) {
        wsk_ws_hold_release(ws);
        return;
    }
    /* A queuing hold ends as it is released: it let nothing pass. */
    for (struct wsk_hold **at = &ws->cold->holds; *at;) {
        if ((*at)->queue) {
            hold_drop(ws, at, 0);
            if (!(ws->flags & WSK_F_HOLD)) return;
            continue;
        }
        (*at)->until = until;
        at = &(*at)->next;
    }
}

void wsk_ws_hold_release(wsk_ws *ws)
{
    while (ws->flags & WSK_F_HOLD) hold_drop(ws, &ws->cold->holds, 0);
}

void wsk_ws_hold_end_topic(wsk_ws *ws, const char *topic, size_t len)
{
    struct wsk_hold **at = ws->flags & WSK_F_HOLD ? hold_find(ws->cold, topic, len) : NULL;
    if (!at) return;
    /* Messages of other loops numbered up to now may be on their way still (the application
     * sent them itself): the hold stays for them, at the cost of a compare per message. */
    (*at)->until = ws->ctx->group && !(*at)->queue ? wsk_group_seq(ws->ctx->group) : 0;
    if (!(*at)->until) hold_drop(ws, at, 0);
}

void wsk_ws_hold_release_topic(wsk_ws *ws, const char *topic, size_t len, int flags)
{
    struct wsk_hold **at = ws->flags & WSK_F_HOLD ? hold_find(ws->cold, topic, len) : NULL;
    if (at) hold_drop(ws, at, flags);
}

void wsk_pubsub_conn_gone(struct wsk_ws *c)
{
    if (!c->ctx->pubsub || !c->cold || !c->cold->subs) return;
    pubsub *ps = c->ctx->pubsub;
    while (c->cold->subs) member_drop(ps, c->cold->subs);
}

void wsk_pubsub_free(wsk_ctx *ctx)
{
    pubsub *ps = ctx->pubsub;
    if (!ps) return;
    /* Every socket has left already (wsk_server_free ends them first); this only guards
     * against a topic kept by a walk that never finished. */
    for (size_t i = 0; i < ps->members.cap; i++) free(ps->members.v[i]);
    for (size_t i = 0; i < ps->topics.cap; i++) {
        struct topic *tp = ps->topics.v[i];
        if (tp && tp->gt) wsk_group_topic_freed(ctx->group, tp->gt);
        if (tp) free(tp->subs);
        free(tp);
    }
    wsk_ptab_free(&ps->members);
    wsk_ptab_free(&ps->topics);
    wsk_trie_free(ps->patterns);
    free(ps);
    ctx->pubsub = NULL;
}

size_t wsk_server_subscribers(const wsk_server *srv, const char *topic, size_t len)
{
    const pubsub *ps = ps_of(srv);
    if (topic_arg(&topic, len) < 0) return 0;
    if (wsk_server_ctx(srv)->group)
        return wsk_group_subscribers(wsk_server_ctx(srv)->group, topic, len);
    if (!ps) return 0;
    const struct topic *tp = topic_find(ps, topic, len, name_hash(ps, topic, len));
    return tp ? tp->live : 0;
}

static int found(void *arg, void *v)
{
    return *(int *)arg = ((const struct topic *)v)->live > 0;
}

int wsk_server_reaches(const wsk_server *srv, const char *topic, size_t len)
{
    const pubsub *ps = ps_of(srv);
    if (topic_arg(&topic, len) < 0) return 0;
    if (wsk_server_ctx(srv)->group)
        return wsk_group_reaches(wsk_server_ctx(srv)->group, topic, len);
    if (!ps) return 0;
    const struct topic *tp = topic_find(ps, topic, len, name_hash(ps, topic, len));
    if (tp && tp->live) return 1;
    int any = 0;
    if (ps->patterns) wsk_trie_match(ps->patterns, topic, len, found, &any);
    return any;
}

size_t wsk_server_topics(const wsk_server *srv)
{
    if (wsk_server_ctx(srv)->group) return wsk_group_topics(wsk_server_ctx(srv)->group);
    const pubsub *ps = ps_of(srv);
    return ps ? ps->topics.n : 0;
}

/* ----- publishing ---------------------------------------------------------------------------- */

/* One message on its way to a topic's subscribers, framed once. */
struct pub {
    wsk_loop *loop;
    const void *data;
    size_t len;
    unsigned op;
    int compress;
    int retained;      /* WSK_PUB_RETAINED (for a queuing hold) */
    uint64_t seq;      /* another loop's publish: its number (wsk_group_seq); 0: this loop's */
    const char *topic; /* its topic (for wsk_ws_hold) */
    size_t topic_len;
    size_t total;        /* frame bytes: header + payload */
    wsk_block *shared;   /* total > WSK_PUBLISH_COPY_MAX: the frame, once */
    wsk_block *deflated; /* the frame compressed by the shared deflater */
    int deflate_failed;
    /* A publish from another loop of a group that compressed it already (with the same
     * level): the payload for RSV1, used instead of compressing again.  NULL otherwise. */
    const uint8_t *zin;
    size_t zin_len;
    size_t zhl;                          /* deflated: its frame header's bytes */
    uint8_t frame[WSK_PUBLISH_COPY_MAX]; /* otherwise: the frame, copied to each queue */
};

/* The publication framed once, for every socket that takes it uncompressed: a short frame
 * was built in p->frame; a long one goes into a shared block, made at the first subscriber. */
static wsk_block *plain_frame(struct pub *p)
{
    if (p->total <= WSK_PUBLISH_COPY_MAX || p->shared) return p->shared;
    p->shared = wsk_block_new(p->loop, p->total);
    if (!p->shared) return NULL;
    size_t hl = wsk_frame_header(p->shared->data, 1, 0, p->op, p->len, NULL);
    if (p->len) memcpy(p->shared->data + hl, p->data, p->len);
    p->shared->len = (uint32_t)p->total;
    return p->shared;
}

/* "Compressed once when shared": sockets that compress with the loop's one-shot compressor take
 * no context over, so the same compressed frame is right for all of them.  It is made at the
 * first such subscriber; NULL when the message does not shrink or compression failed: such
 * sockets then all take it uncompressed. */
static wsk_block *deflated_frame(struct pub *p, struct wsk_ws *c)
{
    if (p->deflated || p->deflate_failed) return p->deflated;
    size_t zlen = p->zin_len, total;
    const void *z = p->zin;
    wsk_block *b = NULL;
    if ((z || wsk_pmd_shared_compress(c, p->data, p->len, &z, &zlen) > 0) &&
        zlen <= UINT32_MAX - sizeof *b - WSK_FRAME_HDR_MAX) {
        total = wsk_frame_header_size(zlen, 0) + zlen;
        b = wsk_block_new(p->loop, total);
    }
    if (!b) {
        p->deflate_failed = 1;
        return NULL;
    }
    size_t hl = wsk_frame_header(b->data, 1, WSK_RSV1, p->op, zlen, NULL);
    memcpy(b->data + hl, z, zlen); /* z lives only until the next compression on this loop */
    b->len = (uint32_t)total;
    p->deflated = b;
    p->zhl = hl;
    return b;
}

/* Appends a frame to c's queue: short ones copied into its private tail block, long ones by
 * reference to the block b that holds them.  1 when queued. */
static int enqueue(struct wsk_ws *c, wsk_block *b, const uint8_t *bytes, size_t n)
{
    if (n > WSK_PUBLISH_COPY_MAX) return wsk_queue_share(c, b, 0, n) == 0;
    uint8_t *dst = wsk_queue_reserve(c, n);
    if (!dst) return 0;
    memcpy(dst, bytes, n);
    wsk_queue_commit(c, n);
    return 1;
}

/* How c's holds take p (wsk_ws_hold): 0 delivered, 1 left out, 2 queued in *h. */
static int held(const struct wsk_ws *c, const struct pub *p, struct wsk_hold **h)
{
    for (*h = c->cold->holds; *h; *h = (*h)->next) {
        const struct wsk_hold *x = *h;
        if (x->len != p->topic_len || memcmp(x->topic, p->topic, p->topic_len)) continue;
        if (x->queue) return x->group && p->seq ? 1 : 2;
        return (x->until == UINT64_MAX && (p->seq || !x->group)) || (p->seq && p->seq <= x->until);
    }
    return 0;
}

/* p joins the queue of c's hold h (wsk_ws_hold_queue); 1 when it did.  The queue counts against
 * c's backpressure limit with c's send queue: past it, c is closed (1008, logged) rather than
 * left with a gap it would not know of. */
static int hold_queue(struct wsk_ws *c, struct wsk_hold *h, const struct pub *p)
{
    int over = c->q.bytes + h->qbytes + p->len > c->ctx->lim.backpressure_limit;
    struct held_msg *m = over ? NULL : malloc(sizeof *m + p->len);
    if (!m) {
        c->ctx->stats.dropped++;
        wsk_conn_fail(c, WSK_ERR_POLICY, WSK_CLOSE_POLICY,
                      over ? "messages held for a subscription over the backpressure limit"
                           : "out of memory holding messages for a subscription");
        return 0;
    }
    *m = (struct held_msg){NULL, p->len, p->op, (uint8_t)p->compress, (uint8_t)p->retained, 0};
    if (p->len) memcpy(m->data, p->data, p->len);
    *h->qtail = m;
    h->qtail = &m->next;
    h->qbytes += p->len;
    return 1;
}

/* Queues the publication on one socket under its backpressure policy; 1 when it was queued. */
static int deliver(struct wsk_ws *c, struct pub *p)
{
    if (c->state != WSK_ST_OPEN) return 0;
    struct wsk_hold *h;
    int how = c->flags & WSK_F_HOLD ? held(c, p, &h) : 0;
    if (how) return how == 2 ? hold_queue(c, h, p) : 0;
    wsk_block *b;
    size_t n;
    int z = p->compress && (c->flags & WSK_F_PMD) && p->len >= c->ctx->lim.compress_threshold;
    /* A socket with its own deflater keeps context: it compresses its own copy. */
    if (z && !wsk_pmd_conn_shares_deflater(c, p->len))
        return wsk_pmd_conn_send(c, p->data, p->len, p->op) != 0;
    if (z && (b = deflated_frame(p, c))) {
        n = b->len;
    } else {
        b = plain_frame(p);
        n = p->total;
        if (!b && n > WSK_PUBLISH_COPY_MAX) return 0;
    }
    wsk_lent_settle(c);
    if (!wsk_send_admit(c, n) || !enqueue(c, b, b ? b->data : p->frame, n)) return 0;
    /* Queued behind bytes the peer has not read: drain tells the application when it has. */
    if (c->flags & WSK_F_WANT_WRITE) {
        c->flags |= WSK_F_BACKPRESSURE;
        c->ctx->stats.backpressure++;
    } else if (c->q.bytes >= c->ctx->lim.backpressure_limit / 2) {
        /* A burst of publishes within one loop turn (every member of a room sending at once)
         * would otherwise pile up until the end-of-turn flush and hit the limit although the
         * peer reads fine: write now while the kernel takes it. */
        wsk_flush(c);
        return 1;
    }
    wsk_loop_schedule(c->ctx->loop, c);
    return 1;
}

/* The topics a publish reaches: its own name and the patterns that match it. */
struct reach {
    struct topic *stack[16], **t;
    size_t n, cap;
    int nomem;
};

static int reach_add(void *arg, void *v)
{
    struct reach *r = arg;
    struct topic *tp = v;
    if (!tp->live) return 0;
    if (r->n == r->cap) {
        size_t cap = r->cap * 2;
        struct topic **t =
            r->t == r->stack ? malloc(cap * sizeof *t) : realloc(r->t, cap * sizeof *t);
        if (!t) return r->nomem = 1;
        if (r->t == r->stack) memcpy(t, r->stack, sizeof r->stack);
        r->t = t;
        r->cap = cap;
    }
    r->t[r->n++] = tp;
    return 0;
}

static void reach_find(const pubsub *ps, const char *topic, size_t len, struct reach *r)
{
    r->t = r->stack;
    r->n = r->nomem = 0;
    r->cap = sizeof r->stack / sizeof *r->stack;
    struct topic *tp = topic_find(ps, topic, len, name_hash(ps, topic, len));
    if (tp) reach_add(r, tp);
    if (ps->patterns) wsk_trie_match(ps->patterns, topic, len, reach_add, r);
}

static void reach_free(struct reach *r)
{
    if (r->t != r->stack) free(r->t);
}

/* flags: a publish's WSK_PUB_* (its compress argument). */
static void pub_init(struct pub *p, wsk_loop *loop, const void *data, size_t len, wsk_opcode op,
                     int flags)
{
    p->loop = loop;
    p->data = data;
    p->len = len;
    p->op = op;
    p->compress = flags & WSK_PUB_COMPRESS;
    p->retained = (flags & WSK_PUB_RETAINED) != 0;
    p->seq = 0;
    p->total = wsk_frame_header_size(len, 0) + len;
    p->shared = p->deflated = NULL;
    p->deflate_failed = 0;
    p->zin = NULL;
    p->zin_len = 0;
}

/* Frames a short publication into p->frame (a long one is framed at its first subscriber). */
static void pub_frame(struct pub *p)
{
    if (p->total > WSK_PUBLISH_COPY_MAX) return;
    size_t hl = wsk_frame_header(p->frame, 1, 0, p->op, p->len, NULL);
    if (p->len) memcpy(p->frame + hl, p->data, p->len);
}

static void pub_release(struct pub *p)
{
    if (p->shared) wsk_block_unref(p->loop, p->shared);
    if (p->deflated) wsk_block_unref(p->loop, p->deflated);
}

/* 1 when some subscription of tp is younger than p, a message from another loop (member
 * ->after): one compare per topic, the members are looked at only then. */
static int fenced(const struct topic *tp, const struct pub *p)
{
    return p->seq && p->seq <= tp->after;
}

/* One topic: its subscribers in place. */
static long publish_topic(pubsub *ps, struct topic *tp, const struct wsk_ws *skip, struct pub *p)
{
    long n = 0;
    int fence = fenced(tp, p);
    tp->busy++;
    /* Sockets that subscribe during this walk are appended past `end` and do not get it. */
    for (uint32_t i = 0, end = tp->len; i < end; i++) {
        struct wsk_ws *c = tp->subs[i].ws;
        if (c && c != skip && !(fence && tp->subs[i].m->after >= p->seq)) n += deliver(c, p);
    }
    tp->busy--;
    topic_settle(ps, tp);
    return n;
}

/* Several topics (the name and matching patterns, or several patterns): a socket subscribed to
 * more than one of them gets the message once.  The sockets are gathered first, each marked
 * with this publish's number, and delivered to after: delivering runs handlers, which may
 * publish again (a new number) or leave topics.  A gathered socket stays allocated until the
 * loop's next safe point whatever the handlers do; one that closed meanwhile is skipped by
 * deliver, one that only unsubscribed still gets this message. */
static long publish_many(pubsub *ps, const struct reach *r, const struct wsk_ws *skip,
                         struct pub *p)
{
    size_t most = 0, k = 0;
    for (size_t i = 0; i < r->n; i++) most += r->t[i]->live;
    struct wsk_ws *stack[64], **socks = most <= 64 ? stack : malloc(most * sizeof *socks);
    if (!socks) return WSK_ERR_NOMEM;
    uint64_t mark = ++ps->mark;
    for (size_t i = 0; i < r->n; i++) {
        const struct topic *tp = r->t[i];
        int fence = fenced(tp, p);
        for (uint32_t j = 0; j < tp->len; j++) {
            struct wsk_ws *c = tp->subs[j].ws;
            if (!c || c == skip || c->cold->pmark == mark) continue;
            if (fence && tp->subs[j].m->after >= p->seq) continue; /* another may take it */
            c->cold->pmark = mark;
            socks[k++] = c;
        }
    }
    long n = 0;
    for (size_t i = 0; i < k; i++) n += deliver(socks[i], p);
    if (socks != stack) free(socks);
    return n;
}

/* Delivery to the local subscribers (the arguments checked).  ahead: a group publish of the
 * same topic follows (wsk_group_reach_ready). */
static long publish_here(wsk_ctx *ctx, const struct wsk_ws *skip, const char *topic,
                         size_t topic_len, struct pub *p, int ahead)
{
    pubsub *ps = ctx->pubsub;
    if (!ps) return 0;
    struct reach r;
    reach_find(ps, topic, topic_len, &r);
    if (r.nomem) {
        reach_free(&r);
        return WSK_ERR_NOMEM;
    }
    if (!r.n) return 0;
    /* Before delivering, while the topic surely stands: delivery may run handlers. */
    if (ahead && ctx->group && !r.t[0]->pattern && r.t[0]->gt)
        wsk_group_reach_ready(ctx->group, r.t[0]->gt);

    p->topic = topic;
    p->topic_len = topic_len;
    pub_frame(p);
    long n = r.n == 1 ? publish_topic(ps, r.t[0], skip, p) : publish_many(ps, &r, skip, p);
    wsk_stats_delivered(&ctx->stats, p->op, p->len, n);
    reach_free(&r);
    return n;
}

/* A publish made here: the local subscribers at once, then, in a group, the other loops' ones
 * unless `here` (forward: and the bridging member, which forwards it to other nodes, and takes
 * done when it is another loop's: done->fn NULL then). */
static long publish(wsk_ctx *ctx, const struct wsk_ws *skip, const char *topic, size_t topic_len,
                    const void *data, size_t len, wsk_opcode op, int compress, int to_self,
                    int forward, wsk_gdone *done, int here)
{
    if (!wsk_message_ok(data, len, op) || topic_arg(&topic, topic_len) < 0) return WSK_ERR_INVAL;
    ctx->stats.publishes++;
    struct pub p;
    pub_init(&p, ctx->loop, data, len, op, compress);
    /* Each publish starts without counts read ahead: a flag left by one that failed, or by the
     * publish of a handler that this one's delivery ran, is not for this one. */
    if (ctx->group) ctx->group->reach_ready = 0;
    wsk_gloop *group = here ? NULL : ctx->group;
    long n = publish_here(ctx, skip, topic, topic_len, &p, group != NULL);
    if (n >= 0 && group) {
        /* What the shared deflater made here goes along: the other loops need not compress. */
        wsk_zmsg z = {NULL, 0, ctx->lim.compress_level};
        if (p.deflated) {
            z.z = p.deflated->data + p.zhl;
            z.len = p.deflated->len - p.zhl;
        }
        long others = done && done->fn
                          ? wsk_group_publish_counted(ctx->group, topic, topic_len, data, len, op,
                                                      compress, &z, to_self, n, done)
                          : wsk_group_publish(ctx->group, topic, topic_len, data, len, op, compress,
                                              &z, to_self, forward);
        if (others > 0) n += others;
    }
    pub_release(&p);
    return n;
}

/* Local delivery at once, then the bridge forwards it once to the other nodes. */
static long publish_all(wsk_ctx *ctx, const struct wsk_ws *from, const char *topic,
                        size_t topic_len, const void *data, size_t len, wsk_opcode op, int compress,
                        void (*done)(void *arg, long local, long nodes), void *arg)
{
    int to_self = !from || wsk_server_opts_of(ctx->srv)->publish_to_self;
    wsk_gdone d = {done, arg}; /* in a group whose bridge is another loop's, that loop's job */
    long n = publish(ctx, to_self ? NULL : from, topic, topic_len, data, len, op, compress, to_self,
                     1, &d, 0);
    if (n >= 0 && ctx->bridge)
        wsk_bridge_forward(ctx->bridge, topic ? topic : "", topic_len, data, len, op, compress,
                           to_self, n, done, arg);
    else if (d.fn)
        d.fn(arg, n, WSK_NODES_NOT_BRIDGED);
    return n;
}

long wsk_publish(wsk_ws *from, const char *topic, size_t topic_len, const void *data, size_t len,
                 wsk_opcode op, int compress)
{
    if (!from->ctx->srv) return WSK_ERR_STATE;
    return publish_all(from->ctx, from, topic, topic_len, data, len, op, compress, NULL, NULL);
}

long wsk_server_publish(wsk_server *srv, const char *topic, size_t topic_len, const void *data,
                        size_t len, wsk_opcode op, int compress)
{
    return publish_all(wsk_server_ctx(srv), NULL, topic, topic_len, data, len, op, compress, NULL,
                       NULL);
}

long wsk_server_publish_counted(wsk_server *srv, wsk_ws *from, const char *topic, size_t topic_len,
                                const void *data, size_t len, wsk_opcode op, int compress,
                                void (*done)(void *arg, long local, long nodes), void *arg)
{
    if (!done || (from && from->ctx != wsk_server_ctx(srv))) return WSK_ERR_INVAL;
    return publish_all(wsk_server_ctx(srv), from, topic, topic_len, data, len, op, compress, done,
                       arg);
}

long wsk_server_publish_local(wsk_server *srv, const char *topic, size_t topic_len,
                              const void *data, size_t len, wsk_opcode op, int compress)
{
    return publish(wsk_server_ctx(srv), NULL, topic, topic_len, data, len, op, compress, 1, 0, NULL,
                   0);
}

/* A local publish from `from` (NULL: the server's): only this loop's when `here`. */
static long publish_from(wsk_ws *from, const char *topic, size_t topic_len, const void *data,
                         size_t len, wsk_opcode op, int compress, int here)
{
    if (!from->ctx->srv) return WSK_ERR_STATE;
    int to_self = wsk_server_opts_of(from->ctx->srv)->publish_to_self;
    return publish(from->ctx, to_self ? NULL : from, topic, topic_len, data, len, op, compress,
                   to_self, 0, NULL, here);
}

long wsk_publish_local(wsk_ws *from, const char *topic, size_t topic_len, const void *data,
                       size_t len, wsk_opcode op, int compress)
{
    return publish_from(from, topic, topic_len, data, len, op, compress, 0);
}

long wsk_server_publish_here(wsk_server *srv, const char *topic, size_t topic_len, const void *data,
                             size_t len, wsk_opcode op, int compress)
{
    return publish(wsk_server_ctx(srv), NULL, topic, topic_len, data, len, op, compress, 1, 0, NULL,
                   1);
}

long wsk_publish_here(wsk_ws *from, const char *topic, size_t topic_len, const void *data,
                      size_t len, wsk_opcode op, int compress)
{
    return publish_from(from, topic, topic_len, data, len, op, compress, 1);
}

long wsk_pubsub_remote(wsk_ctx *ctx, const char *topic, size_t n, const void *data, size_t len,
                       wsk_opcode op, int compress, const wsk_zmsg *z, uint64_t seq)
{
    struct pub p;
    pub_init(&p, ctx->loop, data, len, op, compress);
    p.seq = seq;
    if (z && z->z && z->level == ctx->lim.compress_level) {
        p.zin = z->z;
        p.zin_len = z->len;
    }
    long r = publish_here(ctx, NULL, topic, n, &p, 0);
    pub_release(&p);
    return r;
}

void wsk_pubsub_each(wsk_ctx *ctx, void (*fn)(void *arg, const char *topic, size_t n), void *arg)
{
    const pubsub *ps = ctx->pubsub;
    if (ctx->group) {
        wsk_group_each(ctx->group, fn, arg);
        return;
    }
    if (!ps) return;
    for (size_t i = 0; i < ps->topics.cap; i++) {
        const struct topic *tp = ps->topics.v[i];
        if (tp && tp->live) fn(arg, tp->name, tp->name_len);
    }
}

void wsk_server_each_topic(const wsk_server *srv,
                           void (*fn)(void *arg, const char *topic, size_t len, size_t subscribers),
                           void *arg)
{
    if (wsk_server_ctx(srv)->group) {
        wsk_group_each_topic(wsk_server_ctx(srv)->group, fn, arg);
        return;
    }
    const pubsub *ps = ps_of(srv);
    for (size_t i = 0; ps && i < ps->topics.cap; i++) {
        const struct topic *tp = ps->topics.v[i];
        if (tp && tp->live) fn(arg, tp->name, tp->name_len, tp->live);
    }
}

size_t wsk_server_each_subscriber(const wsk_server *srv, const char *topic, size_t len,
                                  void (*fn)(void *arg, wsk_ws *ws), void *arg)
{
    const pubsub *ps = ps_of(srv);
    if (!ps || topic_arg(&topic, len) < 0) return 0;
    const struct topic *tp = topic_find(ps, topic, len, name_hash(ps, topic, len));
    size_t n = 0;
    for (uint32_t i = 0; tp && i < tp->len; i++) {
        if (!tp->subs[i].ws) continue;
        if (fn) fn(arg, tp->subs[i].ws);
        n++;
    }
    return n;
}
