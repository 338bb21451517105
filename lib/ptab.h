/* An open-addressing table of pointers by 64-bit hash, and the keyed hash for names that peers
 * choose (pubsub.c: topics and memberships; topic_trie.c: the trie's edges). */
#ifndef WSK_PTAB_H
#define WSK_PTAB_H

#include <stddef.h>
#include <stdint.h>

/* Linear probing with backward-shift deletion (no tombstones, so a table that sees endless
 * insert/remove churn never degrades).  Load stays at most 1/2.  A lookup is the caller's loop:
 *   for (size_t i = wsk_ptab_home(t, h); t->v[i]; i = wsk_ptab_next(t, i))
 *       if (t->h[i] == h && <t->v[i] is the one>) ...
 * (none when t->cap is 0: check t->n first). */
typedef struct wsk_ptab {
    uint64_t *h;
    void **v; /* NULL: empty slot */
    size_t cap, n;
} wsk_ptab;

static inline size_t wsk_ptab_home(const wsk_ptab *t, uint64_t h)
{
    return h & (t->cap - 1);
}

static inline size_t wsk_ptab_next(const wsk_ptab *t, size_t i)
{
    return (i + 1) & (t->cap - 1);
}

/* Adds v (not NULL) under h; 0 or WSK_ERR_NOMEM. */
int wsk_ptab_insert(wsk_ptab *t, uint64_t h, void *v);
/* Removes v, present under h; shrinks the table when most of it is empty. */
void wsk_ptab_remove(wsk_ptab *t, uint64_t h, const void *v);
/* Frees the table (not what it points to). */
void wsk_ptab_free(wsk_ptab *t);

/* SipHash-1-3 of p[0..n) with the key (k0, k1): names that clients pick must not be able to
 * collide on purpose and turn every lookup into a scan. */
uint64_t wsk_siphash13(uint64_t k0, uint64_t k1, const void *p, size_t n);

#endif
