/* The topics of a server group: which loops have subscribers of what, and publishes carried
 * to them.
 *
 * The table holds one entry per topic (or pattern) that some loop has a local topic for, with
 * a subscriber count per loop.  Making and freeing entries (a loop's first subscriber of a
 * topic, its last one leaving) takes the write lock; a subscribe or unsubscribe on a topic the
 * loop has already only moves its own count (a relaxed atomic); a publish takes the read lock
 * to sum, per loop, the counts of the topic and of the patterns that match it.  A loop whose
 * sum is 0 is not woken.
 *
 * A long publish is copied once into one message (topic and payload) shared by every loop it
 * goes to, with an atomic reference count; each loop then frames it for its sockets as a
 * local publish does (a short frame copied to each socket's queue, a long one framed once
 * into a block of that loop, so blocks and their caches never cross threads).  The other way,
 * one copy of the message per loop and no atomic, costs a copy per loop more to save one
 * atomic decrement.  Measured (tests/unit/bench_group.c, "share" lines; a loaded 2-core VM):
 * an atomic decrement on a count another core also decrements, 17-40 ns; a loop's own copy
 * (malloc, memcpy, free), 15-25 ns for 16 B and 310-610 ns for 16 KiB.  Even at 16 B the two
 * are alike, and from a few hundred bytes on the shared copy wins by far.
 *
 * A short publish (topic and payload up to BATCH_COPY_MAX) is copied instead into a batch per
 * target loop: records laid end to end in one allocation that goes to the loop as one item, one
 * malloc and one free per batch rather than per message, the records read in the order they
 * were written (wsserve --chat on 2 threads spent a sixth of its CPU in malloc and free, half
 * of it growing and trimming the heap, when every publish was a message of its own).  A
 * publish the bridge forwards or counts keeps the shared message, which carries that work.
 *
 * Bridge: the bridging member's engine is subscribed to the union of every loop's topics and
 * patterns: the loop that makes or frees an entry tells the bridging
 * loop through its inbox, in the order of the table's changes.  A publish on another loop is
 * also handed to the bridging loop, which forwards it once; a message from the engine is
 * delivered by the bridging loop and handed to the others like a local publish. */
#include "group.h"
#include "bridge.h"
#include "ptab.h"
#include "pubsub.h"
#include "topic_trie.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

struct wsk_gtopic {
    uint64_t hash;
    unsigned holders; /* loops with a local topic of this name (under the write lock) */
    uint8_t pattern;
    size_t len;
    char *name;               /* NUL-terminated, after count[] */
    _Atomic uint32_t count[]; /* subscribers on each loop */
};

struct wsk_gtable {
    pthread_rwlock_t lock;
    wsk_ptab topics;    /* struct wsk_gtopic *, by name */
    wsk_trie *patterns; /* the entries that are patterns */
    uint64_t k0, k1;
    unsigned n;
    /* The number of the last publish handed to other loops: see wsk_group_seq. */
    _Atomic uint64_t seq;
    atomic_uint npatterns; /* pattern entries (written under the write lock) */
};

/* A publish on its way to other loops: one allocation, one item per target loop. */
struct wsk_gmsg {
    atomic_uint refs;
    int forward_to; /* the loop that forwards it to the bridge, -1: none */
    uint64_t seq;   /* its number (wsk_group_seq) */
    unsigned op;
    uint8_t compress, to_self; /* compress: the publish's WSK_PUB_* flags */
    size_t tlen, len;
    const char *topic;
    const uint8_t *data;
    wsk_zmsg z;          /* compressed already by the publishing loop, or z.z NULL */
    struct count *count; /* the publisher waits for the engine's count, or NULL */
    wsk_gitem items[];
};

/* The engine's count for a publish that another loop forwards (wsk_server_publish_counted on
 * a member without the bridge): it rides with the message to the bridging loop, which gives
 * it to the bridge as the publish's done; the answer goes back to the publishing loop as a
 * call in its inbox, batched with that turn's messages, and runs done there. */
struct count {
    wsk_gitem item; /* first: the inbox frees the answer as an item */
    wsk_gloop *from;
    wsk_gdone done;
    long local, nodes;
};

struct wsk_gtable *wsk_gtable_new(unsigned n)
{
    struct wsk_gtable *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    uint64_t key[2];
    if (getrandom(key, sizeof key, GRND_NONBLOCK) != (ssize_t)sizeof key) {
        struct timespec ts; /* as pubsub.c: the key need only differ per process */
        clock_gettime(CLOCK_MONOTONIC, &ts);
        key[0] = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ULL ^ (uint64_t)(uintptr_t)t;
        key[1] = (uint64_t)ts.tv_sec;
    }
    t->k0 = key[0];
    t->k1 = key[1];
    t->n = n;
    pthread_rwlock_init(&t->lock, NULL);
    return t;
}

void wsk_gtable_free(struct wsk_gtable *t)
{
    if (!t) return;
    for (size_t i = 0; i < t->topics.cap; i++) free(t->topics.v[i]);
    wsk_ptab_free(&t->topics);
    wsk_trie_free(t->patterns);
    pthread_rwlock_destroy(&t->lock);
    free(t);
}

static wsk_gtopic *find(const struct wsk_gtable *t, const char *name, size_t len, uint64_t h)
{
    const wsk_ptab *p = &t->topics;
    if (!p->n) return NULL;
    for (size_t i = wsk_ptab_home(p, h); p->v[i]; i = wsk_ptab_next(p, i)) {
        wsk_gtopic *gt = p->v[i];
        if (p->h[i] == h && gt->len == len && !memcmp(gt->name, name, len)) return gt;
    }
    return NULL;
}

/* ----- the bridge hears of the union of the loops' topics ----------------------------------- */

struct bridge_note {
    wsk_gitem item; /* first: the inbox frees the note as an item */
    int on;
    size_t len;
    char name[];
};

static void bridge_note_run(void *arg, wsk_loop *loop)
{
    struct bridge_note *b = arg;
    wsk_gloop *l = loop->group;
    wsk_ctx *ctx = l->srv ? wsk_server_ctx(l->srv) : NULL;
    if (ctx && ctx->bridge) wsk_bridge_topic(ctx->bridge, b->name, b->len, b->on);
}

/* Under the write lock, so the bridging loop hears of the changes in the table's order. */
static void bridge_note(wsk_gloop *l, const wsk_gtopic *gt, int on)
{
    if (l->g->bridge < 0) return;
    struct bridge_note *b = calloc(1, sizeof *b + gt->len);
    if (!b) return; /* the engine misses this topic until it reconnects: wsk_pubsub_each */
    b->item.fn = bridge_note_run;
    b->item.arg = b;
    b->on = on;
    b->len = gt->len;
    memcpy(b->name, gt->name, gt->len);
    wsk_group_post(&l->g->l[l->g->bridge], &b->item);
}

/* ----- the table ---------------------------------------------------------------------------- */

wsk_gtopic *wsk_group_topic_made(wsk_gloop *l, const char *name, size_t len, int pattern)
{
    struct wsk_gtable *t = l->g->topics;
    uint64_t h = wsk_siphash13(t->k0, t->k1, name, len);
    pthread_rwlock_wrlock(&t->lock);
    wsk_gtopic *gt = find(t, name, len, h);
    if (gt) {
        gt->holders++;
        pthread_rwlock_unlock(&t->lock);
        return gt;
    }
    size_t counts = t->n * sizeof gt->count[0];
    gt = calloc(1, sizeof *gt + counts + len + 1);
    int r = gt ? wsk_ptab_insert(&t->topics, h, gt) : WSK_ERR_NOMEM;
    if (gt) {
        gt->hash = h;
        gt->len = len;
        gt->name = (char *)gt + sizeof *gt + counts;
        if (len) memcpy(gt->name, name, len);
        gt->pattern = (uint8_t)(pattern != 0);
    }
    if (!r && pattern) {
        if (!t->patterns) t->patterns = wsk_trie_new(t->k0, t->k1);
        r = t->patterns ? wsk_trie_add(t->patterns, gt->name, len, gt) : WSK_ERR_NOMEM;
        if (r < 0) wsk_ptab_remove(&t->topics, h, gt);
    }
    if (r < 0) {
        pthread_rwlock_unlock(&t->lock);
        free(gt);
        return NULL;
    }
    gt->holders = 1;
    if (pattern) atomic_fetch_add_explicit(&t->npatterns, 1, memory_order_release);
    bridge_note(l, gt, 1);
    pthread_rwlock_unlock(&t->lock);
    return gt;
}

void wsk_group_topic_freed(wsk_gloop *l, wsk_gtopic *gt)
{
    struct wsk_gtable *t = l->g->topics;
    pthread_rwlock_wrlock(&t->lock);
    if (--gt->holders) {
        pthread_rwlock_unlock(&t->lock);
        return;
    }
    if (gt->pattern) {
        wsk_trie_remove(t->patterns, gt->name, gt->len);
        atomic_fetch_sub_explicit(&t->npatterns, 1, memory_order_release);
    }
    wsk_ptab_remove(&t->topics, gt->hash, gt);
    bridge_note(l, gt, 0);
    pthread_rwlock_unlock(&t->lock);
    free(gt);
}

void wsk_group_topic_count(wsk_gloop *l, wsk_gtopic *gt, int delta)
{
    atomic_fetch_add_explicit(&gt->count[l->idx], (uint32_t)delta, memory_order_relaxed);
}

/* ----- reading the table -------------------------------------------------------------------- */

struct sum {
    uint32_t *reach; /* per loop */
    unsigned n;
};

static int add_counts(void *arg, void *v)
{
    struct sum *s = arg;
    wsk_gtopic *gt = v;
    for (unsigned j = 0; j < s->n; j++)
        s->reach[j] += atomic_load_explicit(&gt->count[j], memory_order_relaxed);
    return 0;
}

/* reach[j] = loop j's subscribers of topic[0..len), by name and by pattern. */
static void reach_of(const struct wsk_gtable *t, const char *topic, size_t len, uint32_t *reach)
{
    struct sum s = {reach, t->n};
    memset(reach, 0, t->n * sizeof *reach);
    uint64_t h = wsk_siphash13(t->k0, t->k1, topic, len);
    pthread_rwlock_rdlock((pthread_rwlock_t *)&t->lock);
    wsk_gtopic *gt = find(t, topic, len, h);
    if (gt) add_counts(&s, gt);
    if (t->patterns) wsk_trie_match(t->patterns, topic, len, add_counts, &s);
    pthread_rwlock_unlock((pthread_rwlock_t *)&t->lock);
}

/* A publish on a topic its own loop subscribes to (the common case: a chat room) reads the
 * counts straight from the loop's entry: the read lock and the hash of reach_of cost wsserve
 * --chat on 2 threads about 5% of its CPU.  A pattern made meanwhile on another loop races with
 * this publish, which the counts allow (wskit.h). */
int wsk_group_reach_ready(wsk_gloop *l, const wsk_gtopic *gt)
{
    const struct wsk_gtable *t = l->g->topics;
    if (atomic_load_explicit(&((struct wsk_gtable *)t)->npatterns, memory_order_acquire))
        return l->reach_ready = 0;
    for (unsigned j = 0; j < t->n; j++)
        l->reach[j] = atomic_load_explicit(&gt->count[j], memory_order_relaxed);
    return l->reach_ready = 1;
}

size_t wsk_group_subscribers(wsk_gloop *l, const char *topic, size_t len)
{
    struct wsk_gtable *t = l->g->topics;
    uint64_t h = wsk_siphash13(t->k0, t->k1, topic, len);
    size_t n = 0;
    pthread_rwlock_rdlock(&t->lock);
    wsk_gtopic *gt = find(t, topic, len, h);
    for (unsigned j = 0; gt && j < t->n; j++)
        n += atomic_load_explicit(&gt->count[j], memory_order_relaxed);
    pthread_rwlock_unlock(&t->lock);
    return n;
}

int wsk_group_reaches(wsk_gloop *l, const char *topic, size_t len)
{
    reach_of(l->g->topics, topic, len, l->reach);
    for (unsigned j = 0; j < l->g->n; j++)
        if (l->reach[j]) return 1;
    return 0;
}

uint64_t wsk_group_seq(wsk_gloop *l)
{
    return atomic_load_explicit(&l->g->topics->seq, memory_order_relaxed);
}

size_t wsk_group_topics(wsk_gloop *l)
{
    struct wsk_gtable *t = l->g->topics;
    pthread_rwlock_rdlock(&t->lock);
    size_t n = t->topics.n;
    pthread_rwlock_unlock(&t->lock);
    return n;
}

void wsk_group_each(wsk_gloop *l, void (*fn)(void *arg, const char *topic, size_t n), void *arg)
{
    struct wsk_gtable *t = l->g->topics;
    pthread_rwlock_rdlock(&t->lock);
    for (size_t i = 0; i < t->topics.cap; i++) {
        const wsk_gtopic *gt = t->topics.v[i];
        if (gt) fn(arg, gt->name, gt->len);
    }
    pthread_rwlock_unlock(&t->lock);
}

void wsk_group_each_topic(wsk_gloop *l,
                          void (*fn)(void *arg, const char *topic, size_t len, size_t subscribers),
                          void *arg)
{
    struct wsk_gtable *t = l->g->topics;
    pthread_rwlock_rdlock(&t->lock);
    for (size_t i = 0; i < t->topics.cap; i++) {
        const wsk_gtopic *gt = t->topics.v[i];
        size_t n = 0;
        for (unsigned j = 0; gt && j < t->n; j++)
            n += atomic_load_explicit(&gt->count[j], memory_order_relaxed);
        if (n) fn(arg, gt->name, gt->len, n); /* 0: its last subscribers are leaving */
    }
    pthread_rwlock_unlock(&t->lock);
}

/* ----- publishing across loops -------------------------------------------------------------- */

#define BATCH_COPY_MAX 512  /* topic + payload bytes copied into a batch; longer: shared */
#define BATCH_BYTES    8192 /* a batch's room for records (one record may make it longer) */

/* A publish's compress argument as it travels: its WSK_PUB_* flags (any odd value compresses). */
static uint8_t pub_flags(int compress)
{
    return (uint8_t)(compress & (WSK_PUB_COMPRESS | WSK_PUB_RETAINED));
}

/* Short publishes for one loop, written in one turn of the publishing loop. */
struct batch {
    wsk_gitem item; /* first: the inbox frees the batch as an item */
    size_t len, cap;
    _Alignas(8) unsigned char rec[];
};

/* One publish in a batch, then its topic, its payload and what the shared deflater made of
 * it, the next record at the next multiple of 8. */
struct rec {
    uint64_t seq; /* its number (wsk_group_seq) */
    uint32_t tlen, len, zlen;
    uint8_t op, compress; /* compress: the publish's WSK_PUB_* flags */
    int zlevel;
};

static size_t rec_size(size_t tlen, size_t len, size_t zlen)
{
    return (sizeof(struct rec) + tlen + len + zlen + 7) & ~(size_t)7;
}

/* On the target loop: every record delivered in order, then the inbox frees the batch. */
static void batch_run(void *arg, wsk_loop *loop)
{
    struct batch *b = arg;
    wsk_gloop *l = loop->group;
    wsk_ctx *ctx = l->srv ? wsk_server_ctx(l->srv) : NULL;
    for (size_t off = 0; ctx && off < b->len;) {
        const struct rec *r = (const struct rec *)(b->rec + off);
        const char *topic = (const char *)(r + 1);
        const uint8_t *data = (const uint8_t *)topic + r->tlen;
        wsk_zmsg z = {r->zlen ? data + r->len : NULL, r->zlen, r->zlevel};
        wsk_pubsub_remote(ctx, topic, r->tlen, data, r->len, r->op, r->compress, &z, r->seq);
        off += rec_size(r->tlen, r->len, r->zlen);
    }
}

/* Appends a record to l's batch for loop j (a new batch when its last one is full or
 * something else was queued after it): 0, or WSK_ERR_NOMEM. */
static int batch_add(wsk_gloop *l, unsigned j, uint64_t seq, const char *topic, size_t tlen,
                     const void *data, size_t len, unsigned op, int compress, const wsk_zmsg *z,
                     size_t zlen)
{
    size_t need = rec_size(tlen, len, zlen);
    wsk_gitem *tail = l->out[j].tail;
    struct batch *b = tail && tail->fn == batch_run ? tail->arg : NULL;
    if (!b || b->cap - b->len < need) {
        size_t cap = need > BATCH_BYTES ? need : BATCH_BYTES;
        b = malloc(sizeof *b + cap);
        if (!b) return WSK_ERR_NOMEM;
        b->item.fn = batch_run;
        b->item.arg = b;
        b->item.msg = NULL;
        b->len = 0;
        b->cap = cap;
        wsk_group_queue(l, j, &b->item);
    }
    struct rec *r = (struct rec *)(b->rec + b->len);
    *r = (struct rec){seq,         (uint32_t)tlen,      (uint32_t)len,   (uint32_t)zlen,
                      (uint8_t)op, pub_flags(compress), z ? z->level : 0};
    char *p = (char *)(r + 1);
    if (tlen) memcpy(p, topic, tlen);
    if (len) memcpy(p + tlen, data, len);
    if (zlen) memcpy(p + tlen + len, z->z, zlen);
    b->len += need;
    return 0;
}

static long group_publish(wsk_gloop *l, const char *topic, size_t tlen, const void *data,
                          size_t len, unsigned op, int compress, const wsk_zmsg *z, int to_self,
                          int forward, long here, wsk_gdone *done)
{
    wsk_group *g = l->g;
    int fwd = forward && g->bridge >= 0 && (unsigned)g->bridge != l->idx ? g->bridge : -1;
    int ready = l->reach_ready;
    l->reach_ready = 0;
    if (g->n == 1) return 0;
    uint32_t *reach = l->reach;
    if (!ready) reach_of(g->topics, topic, tlen, reach);
    reach[l->idx] = 0; /* delivered already */
    unsigned targets = 0;
    long total = 0;
    for (unsigned j = 0; j < g->n; j++) {
        total += reach[j];
        targets += reach[j] || (int)j == fwd;
    }
    if (!targets) return 0;

    size_t zlen = z && z->z ? z->len : 0;
    /* Relaxed is enough: a subscription ordered before this publish (by the application's
     * lock, say) read a smaller number, one ordered after it reads this one or a later. */
    uint64_t seq = atomic_fetch_add_explicit(&g->topics->seq, 1, memory_order_relaxed) + 1;
    if (fwd < 0 && tlen + len + zlen <= BATCH_COPY_MAX) {
        for (unsigned j = 0; j < g->n; j++)
            if (reach[j] && batch_add(l, j, seq, topic, tlen, data, len, op, compress, z, zlen) < 0)
                return WSK_ERR_NOMEM; /* the loops before j have it: as a socket's full queue */
        return total;
    }
    struct wsk_gmsg *m = malloc(sizeof *m + targets * sizeof m->items[0] + tlen + len + zlen);
    if (!m) return WSK_ERR_NOMEM;
    atomic_init(&m->refs, targets);
    m->seq = seq;
    m->count = NULL;
    if (done && done->fn && fwd >= 0 && (m->count = calloc(1, sizeof *m->count))) {
        m->count->from = l;
        m->count->done = *done;
    }
    m->forward_to = fwd;
    m->op = op;
    m->compress = pub_flags(compress);
    m->to_self = (uint8_t)(to_self != 0);
    m->tlen = tlen;
    m->len = len;
    char *p = (char *)&m->items[targets];
    if (tlen) memcpy(p, topic, tlen);
    if (len) memcpy(p + tlen, data, len);
    m->topic = p;
    m->data = (const uint8_t *)p + tlen;
    m->z = (wsk_zmsg){NULL, 0, z ? z->level : 0};
    if (zlen) {
        memcpy(p + tlen + len, z->z, zlen);
        m->z.z = (const uint8_t *)p + tlen + len;
        m->z.len = zlen;
    }
    unsigned k = 0;
    for (unsigned j = 0; j < g->n; j++) {
        if (!reach[j] && (int)j != fwd) continue;
        wsk_gitem *it = &m->items[k++];
        it->fn = NULL;
        it->arg = NULL;
        it->msg = m;
        wsk_group_queue(l, j, it);
    }
    if (m->count) {
        m->count->local = here + total;
        done->fn = NULL; /* the bridging loop's now */
    }
    return total;
}

long wsk_group_publish(wsk_gloop *l, const char *topic, size_t tlen, const void *data, size_t len,
                       unsigned op, int compress, const wsk_zmsg *z, int to_self, int forward)
{
    return group_publish(l, topic, tlen, data, len, op, compress, z, to_self, forward, 0, NULL);
}

long wsk_group_publish_counted(wsk_gloop *l, const char *topic, size_t tlen, const void *data,
                               size_t len, unsigned op, int compress, const wsk_zmsg *z,
                               int to_self, long here, wsk_gdone *done)
{
    return group_publish(l, topic, tlen, data, len, op, compress, z, to_self, 1, here, done);
}

void wsk_gmsg_unref(struct wsk_gmsg *m)
{
    if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) > 1) return;
    free(m->count); /* the group stopped before the bridging loop took it: done never runs */
    free(m);
}

/* The publisher's loop: the engine's answer. */
static void count_run(void *arg, wsk_loop *loop)
{
    (void)loop;
    struct count *c = arg;
    c->done.fn(c->done.arg, c->local, c->nodes);
}

/* The bridging loop: the engine answered (or the publish failed), sent back with this turn. */
static void count_back(void *arg, long local, long nodes)
{
    struct count *c = arg;
    c->local = local;
    c->nodes = nodes;
    c->item.fn = count_run;
    c->item.arg = c;
    c->item.msg = NULL;
    wsk_gloop *bl = &c->from->g->l[c->from->g->bridge];
    wsk_group_queue(bl, c->from->idx, &c->item);
}

struct wsk_bridge *wsk_group_bridge(const wsk_gloop *l)
{
    const wsk_group *g = l ? l->g : NULL;
    const wsk_server *srv = g && g->bridge >= 0 ? g->l[g->bridge].srv : NULL;
    return srv ? wsk_server_ctx(srv)->bridge : NULL;
}

void wsk_group_deliver(wsk_gloop *l, struct wsk_gmsg *m)
{
    wsk_ctx *ctx = l->srv ? wsk_server_ctx(l->srv) : NULL;
    if (ctx) {
        long n = wsk_pubsub_remote(ctx, m->topic, m->tlen, m->data, m->len, m->op, m->compress,
                                   &m->z, m->seq);
        struct count *c = m->forward_to == (int)l->idx ? m->count : NULL;
        if (m->forward_to == (int)l->idx && ctx->bridge) {
            m->count = NULL;
            wsk_bridge_forward(ctx->bridge, m->topic, m->tlen, m->data, m->len, m->op, m->compress,
                               m->to_self, c ? c->local : n, c ? count_back : NULL, c);
        }
    }
    wsk_gmsg_unref(m);
}
