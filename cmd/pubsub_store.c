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

struct stopic {
    uint64_t hash;
    ps_msg *retained;
    size_t nlen;
    char name[];
};

struct ps_store {
    wsk_ptab topics; /* struct stopic *, by name */
    uint64_t k0, k1;
    size_t retained_bytes;
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
        if (t) free(t->retained);
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

/* A topic that keeps nothing any more goes. */
static void settle(ps_store *s, struct stopic *t)
{
    if (t->retained) return;
    wsk_ptab_remove(&s->topics, t->hash, t);
    free(t);
}

int ps_store_retain(ps_store *s, const char *topic, size_t tlen, const void *data, size_t len,
                    int binary)
{
    uint64_t h = wsk_siphash13(s->k0, s->k1, topic, tlen);
    struct stopic *t = find(s, topic, tlen, h);
    ps_msg *m = NULL;
    if (len && !(m = malloc(sizeof *m + len))) return -1;
    if (m) {
        m->len = len;
        m->binary = binary;
        memcpy(m->data, data, len);
    }
    if (!t) {
        if (!m) return 0;
        t = calloc(1, sizeof *t + tlen);
        if (!t || wsk_ptab_insert(&s->topics, h, t) < 0) {
            free(t);
            free(m);
            return -1;
        }
        t->hash = h;
        t->nlen = tlen;
        memcpy(t->name, topic, tlen);
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
