/* The open-addressing pointer table and SipHash-1-3: see ptab.h. */
#include "ptab.h"
#include "wskit.h"

#include <stdlib.h>
#include <string.h>

#define PTAB_MIN 16

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1, v1 = ROTL(v1, 13), v1 ^= v0, v0 = ROTL(v0, 32);                                  \
        v2 += v3, v3 = ROTL(v3, 16), v3 ^= v2;                                                     \
        v0 += v3, v3 = ROTL(v3, 21), v3 ^= v0;                                                     \
        v2 += v1, v1 = ROTL(v1, 17), v1 ^= v2, v2 = ROTL(v2, 32);                                  \
    } while (0)

/* Words read in host order: the tables need a keyed hash, not portable values. */
uint64_t wsk_siphash13(uint64_t k0, uint64_t k1, const void *data, size_t n)
{
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
    const uint8_t *p = data, *end = p + (n & ~(size_t)7);
    uint64_t m, b = (uint64_t)n << 56;
    for (; p < end; p += 8) {
        memcpy(&m, p, 8);
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    for (unsigned i = 0; i < (n & 7); i++) b |= (uint64_t)p[i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

static int ptab_resize(wsk_ptab *t, size_t cap)
{
    uint64_t *h = malloc(cap * sizeof *h);
    void **v = calloc(cap, sizeof *v);
    if (!h || !v) {
        free(h);
        free(v);
        return WSK_ERR_NOMEM;
    }
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->v[i]) continue;
        size_t j = t->h[i] & (cap - 1);
        while (v[j]) j = (j + 1) & (cap - 1);
        h[j] = t->h[i];
        v[j] = t->v[i];
    }
    free(t->h);
    free(t->v);
    t->h = h;
    t->v = v;
    t->cap = cap;
    return 0;
}

int wsk_ptab_insert(wsk_ptab *t, uint64_t h, void *v)
{
    if ((t->n + 1) * 2 > t->cap && ptab_resize(t, t->cap ? t->cap * 2 : PTAB_MIN) < 0)
        return WSK_ERR_NOMEM;
    size_t mask = t->cap - 1, i = h & mask;
    while (t->v[i]) i = (i + 1) & mask;
    t->h[i] = h;
    t->v[i] = v;
    t->n++;
    return 0;
}

/* The entries after v in its run move back to close the gap wherever their home slot allows. */
void wsk_ptab_remove(wsk_ptab *t, uint64_t h, const void *v)
{
    size_t mask = t->cap - 1, i = h & mask;
    while (t->v[i] != v) i = (i + 1) & mask;
    for (size_t j = (i + 1) & mask; t->v[j]; j = (j + 1) & mask) {
        size_t home = t->h[j] & mask;
        /* j may fill the hole at i unless its home lies cyclically in (i, j]. */
        if (i <= j ? (home <= i || home > j) : (home <= i && home > j)) {
            t->h[i] = t->h[j];
            t->v[i] = t->v[j];
            i = j;
        }
    }
    t->v[i] = NULL;
    t->n--;
    /* Give memory back when most entries are gone; a failed shrink just keeps the table. */
    if (t->cap > PTAB_MIN && t->n * 8 < t->cap) ptab_resize(t, t->cap / 4);
}

void wsk_ptab_free(wsk_ptab *t)
{
    free(t->h);
    free(t->v);
    memset(t, 0, sizeof *t);
}
