/* The broker's per-topic store: see pubsub_store.h.
 *
 * Topics by name in an open-addressing table (the library's, ptab.h) keyed by a SipHash with
 * a random key: clients choose the names. */
#include "pubsub_store.h"
#include "ptab.h"
#include "wskit.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

struct stopic;

/* A message of the history: on its topic's list and on the store's, both oldest first.  Every
 * topic's messages are in the same order on both, so the store's oldest is always the first of
 * its topic: evicting it is a pop at both heads. */
struct hmsg {
    struct hmsg *tnext;         /* the topic's next message */
    struct hmsg *gprev, *gnext; /* the store's */
    struct stopic *t;
    uint64_t offset;
    double at;
    size_t len;
    int binary;
    uint8_t data[];
};

struct stopic {
    uint64_t hash;
    ps_msg *retained;
    struct hmsg *first, *last; /* history */
    size_t hlen;
    uint64_t offset; /* of the last publish recorded */
    uint64_t epoch;
    size_t nlen;
    char name[];
};

struct ps_store {
    wsk_ptab topics; /* struct stopic *, by name */
    uint64_t k0, k1;
    size_t retained_bytes;
    size_t depth;     /* history: messages per topic, 0 when off */
    double ttl;       /* seconds, 0: none */
    size_t max_bytes; /* of all the history's data */
    struct hmsg *oldest, *newest;
    ps_history_stats st;
    uint64_t lives; /* topics given an epoch so far */
};

ps_store *ps_store_new(void)
{
    ps_store *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    uint64_t key[2];
    if (getrandom(key, sizeof key, GRND_NONBLOCK) != (ssize_t)sizeof key) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        key[0] = (uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)s;
        key[1] = (uint64_t)ts.tv_sec;
    }
    s->k0 = key[0];
    s->k1 = key[1];
    return s;
}

void ps_store_free(ps_store *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->topics.cap; i++) {
        struct stopic *t = s->topics.v[i];
        if (!t) continue;
        free(t->retained);
        for (struct hmsg *m = t->first, *next; m; m = next) {
            next = m->tnext;
            free(m);
        }
        free(t);
    }
    wsk_ptab_free(&s->topics);
    free(s);
}

static struct stopic *find(const ps_store *s, const char *name, size_t n, uint64_t h)
{
    const wsk_ptab *tab = &s->topics;
    if (!tab->n) return NULL;
    for (size_t i = wsk_ptab_home(tab, h); tab->v[i]; i = wsk_ptab_next(tab, i)) {
        struct stopic *t = tab->v[i];
        if (tab->h[i] == h && t->nlen == n && !memcmp(t->name, name, n)) return t;
    }
    return NULL;
}

/* A topic that keeps nothing any more goes (and its epoch with it). */
static void settle(ps_store *s, struct stopic *t)
{
    if (t->retained || t->hlen) return;
    wsk_ptab_remove(&s->topics, t->hash, t);
    free(t);
}

/* The topic named topic[0..tlen), made (with a new epoch) when make is set; NULL when it is
 * not there or memory is short. */
static struct stopic *topic_get(ps_store *s, const char *topic, size_t tlen, int make)
{
    uint64_t h = wsk_siphash13(s->k0, s->k1, topic, tlen);
    struct stopic *t = find(s, topic, tlen, h);
    if (t || !make) return t;
    t = calloc(1, sizeof *t + tlen);
    if (!t || wsk_ptab_insert(&s->topics, h, t) < 0) {
        free(t);
        return NULL;
    }
    t->hash = h;
    t->nlen = tlen;
    memcpy(t->name, topic, tlen);
    /* Unpredictable and never repeated within a run: the key is random per run. */
    uint64_t life = ++s->lives;
    t->epoch = wsk_siphash13(s->k1, s->k0, &life, sizeof life);
    return t;
}

int ps_store_retain(ps_store *s, const char *topic, size_t tlen, const void *data, size_t len,
                    int binary)
{
    ps_msg *m = NULL;
    if (len && !(m = malloc(sizeof *m + len))) return -1;
    if (m) {
        m->len = len;
        m->binary = binary;
        memcpy(m->data, data, len);
    }
    struct stopic *t = topic_get(s, topic, tlen, m != NULL);
    if (!t) {
        free(m);
        return m ? -1 : 0;
    }
    if (t->retained) s->retained_bytes -= t->retained->len;
    free(t->retained);
    t->retained = m;
    if (m) s->retained_bytes += len;
    settle(s, t);
    return 0;
}

void ps_store_retained(const ps_store *s, const char *pattern, size_t plen,
                       void (*fn)(void *arg, const char *topic, size_t tlen, const ps_msg *m),
                       void *arg)
{
    if (!wsk_topic_is_pattern(pattern, plen)) {
        const struct stopic *t = find(s, pattern, plen, wsk_siphash13(s->k0, s->k1, pattern, plen));
        if (t && t->retained) fn(arg, t->name, t->nlen, t->retained);
        return;
    }
    for (size_t i = 0; i < s->topics.cap; i++) {
        const struct stopic *t = s->topics.v[i];
        if (t && t->retained && wsk_topic_match(pattern, plen, t->name, t->nlen))
            fn(arg, t->name, t->nlen, t->retained);
    }
}

size_t ps_store_retained_count(const ps_store *s, size_t *bytes)
{
    size_t n = 0;
    for (size_t i = 0; i < s->topics.cap; i++) {
        const struct stopic *t = s->topics.v[i];
        n += t && t->retained;
    }
    if (bytes) *bytes = s->retained_bytes;
    return n;
}

/* ----- history ------------------------------------------------------------------------------- */

void ps_store_history(ps_store *s, size_t depth, double ttl, size_t max_bytes)
{
    s->depth = depth;
    s->ttl = ttl;
    s->max_bytes = max_bytes;
}

/* Drops the oldest message of t, which is the store's oldest of t's. */
static void pop(ps_store *s, struct stopic *t)
{
    struct hmsg *m = t->first;
    t->first = m->tnext;
    if (!t->first) t->last = NULL;
    t->hlen--;
    if (m->gprev)
        m->gprev->gnext = m->gnext;
    else
        s->oldest = m->gnext;
    if (m->gnext)
        m->gnext->gprev = m->gprev;
    else
        s->newest = m->gprev;
    s->st.messages--;
    s->st.bytes -= m->len;
    if (!t->hlen) s->st.topics--;
    free(m);
    settle(s, t);
}

static void expire(ps_store *s, double now)
{
    while (s->ttl > 0 && s->oldest && now - s->oldest->at > s->ttl) pop(s, s->oldest->t);
}

void ps_store_expire(ps_store *s, double now)
{
    expire(s, now);
}

static void position(const struct stopic *t, ps_pos *pos)
{
    static const char hex[] = "0123456789abcdef";
    pos->offset = t ? t->offset : 0;
    for (int i = 0; i < 16; i++) pos->epoch[i] = t ? hex[(t->epoch >> (60 - 4 * i)) & 15] : '0';
    pos->epoch[16] = '\0';
}

int ps_store_record(ps_store *s, const char *topic, size_t tlen, const void *data, size_t len,
                    int binary, double now, ps_pos *pos)
{
    memset(pos, 0, sizeof *pos);
    if (!s->depth) return 0;
    expire(s, now);
    struct hmsg *m = malloc(sizeof *m + len);
    struct stopic *t = m ? topic_get(s, topic, tlen, 1) : NULL;
    if (!t) {
        free(m);
        return -1;
    }
    *m = (struct hmsg){.t = t, .offset = ++t->offset, .at = now, .len = len, .binary = binary};
    if (len) memcpy(m->data, data, len);
    if (t->last)
        t->last->tnext = m;
    else
        t->first = m;
    t->last = m;
    if (!t->hlen++) s->st.topics++;
    m->gprev = s->newest;
    if (s->newest)
        s->newest->gnext = m;
    else
        s->oldest = m;
    s->newest = m;
    s->st.messages++;
    s->st.bytes += len;
    position(t, pos);
    while (t->hlen > s->depth) pop(s, t);
    /* A message larger than the whole budget stays alone rather than not at all. */
    while (s->st.bytes > s->max_bytes && s->oldest != m) pop(s, s->oldest->t);
    return 0;
}

int ps_store_since(ps_store *s, const char *topic, size_t tlen, const ps_pos *since, double now,
                   uint64_t *from, ps_pos *now_at)
{
    expire(s, now);
    const struct stopic *t = topic_get(s, topic, tlen, 0);
    position(t, now_at);
    /* Offset 0 is a subscriber that saw nothing yet: any epoch will do. */
    int same = since->offset == 0 || (t && !strcmp(since->epoch, now_at->epoch));
    *from = same ? since->offset : 0;
    uint64_t first = t && t->first ? t->first->offset : (t ? t->offset + 1 : 1);
    return same && first <= *from + 1 && *from <= (t ? t->offset : 0);
}

int ps_store_replay(const ps_store *s, const char *topic, size_t tlen, uint64_t after, size_t max,
                    int (*fn)(void *arg, const void *data, size_t len, int binary, uint64_t offset),
                    void *arg)
{
    const struct stopic *t = topic_get((ps_store *)s, topic, tlen, 0);
    const struct hmsg *m = t ? t->first : NULL;
    while (m && m->offset <= after) m = m->tnext;
    for (size_t n = 0; m; m = m->tnext, n++)
        if (n == max || fn(arg, m->data, m->len, m->binary, m->offset)) return 0;
    return 1;
}

void ps_store_position(const ps_store *s, const char *topic, size_t tlen, ps_pos *pos)
{
    position(topic_get((ps_store *)s, topic, tlen, 0), pos);
}

void ps_store_history_stats(const ps_store *s, ps_history_stats *st)
{
    *st = s->st;
}

size_t ps_store_history_len(const ps_store *s, const char *topic, size_t tlen)
{
    const struct stopic *t = topic_get((ps_store *)s, topic, tlen, 0);
    return t ? t->hlen : 0;
}

void ps_store_each(const ps_store *s,
                   void (*fn)(void *arg, const char *topic, size_t tlen, int retained,
                              size_t history),
                   void *arg)
{
    for (size_t i = 0; i < s->topics.cap; i++) {
        const struct stopic *t = s->topics.v[i];
        if (t) fn(arg, t->name, t->nlen, t->retained != NULL, t->hlen);
    }
}

int ps_store_has_retained(const ps_store *s, const char *topic, size_t tlen)
{
    const struct stopic *t = topic_get((ps_store *)s, topic, tlen, 0);
    return t && t->retained;
}
