/* Latency histogram: see bench.h. */
#include "bench.h"

#include <string.h>

/* Bucket of v: v itself below 2^SUB; above, the top SUB bits of v after shifting out the rest,
 * offset by the buckets of the smaller powers of two (each power adds 2^(SUB-1) buckets). */
static inline unsigned bucket_of(uint64_t v)
{
    if (v < (1u << WB_HIST_SUB)) return (unsigned)v;
    unsigned shift = (unsigned)(63 - __builtin_clzll(v)) - WB_HIST_SUB + 1;
    return (shift << (WB_HIST_SUB - 1)) + (unsigned)(v >> shift);
}

/* The smallest value of bucket i and its width. */
static void bucket_range(unsigned i, uint64_t *lo, uint64_t *width)
{
    if (i < (1u << WB_HIST_SUB)) {
        *lo = i;
        *width = 1;
        return;
    }
    unsigned shift = (i >> (WB_HIST_SUB - 1)) - 1;
    uint64_t top = i - (shift << (WB_HIST_SUB - 1));
    /* top lies in [2^(SUB-1), 2^SUB) except for the first row; normalise it there. */
    while (top < (1u << (WB_HIST_SUB - 1))) {
        top += 1u << (WB_HIST_SUB - 1);
        shift--;
    }
    *lo = top << shift;
    *width = (uint64_t)1 << shift;
}

void wb_hist_reset(wb_hist *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

void wb_hist_record(wb_hist *h, uint64_t v)
{
    wb_add(&h->b[bucket_of(v)], 1);
    wb_add(&h->count, 1);
    wb_add(&h->sum, v);
    if (v > h->max) __atomic_store_n(&h->max, v, __ATOMIC_RELAXED);
    if (v < h->min) __atomic_store_n(&h->min, v, __ATOMIC_RELAXED);
}

void wb_hist_add(wb_hist *dst, const wb_hist *src)
{
    uint64_t n = wb_get(&src->count);
    if (!n) return;
    dst->count += n;
    dst->sum += wb_get(&src->sum);
    uint64_t mx = wb_get(&src->max), mn = wb_get(&src->min);
    if (mx > dst->max) dst->max = mx;
    if (mn < dst->min) dst->min = mn;
    for (unsigned i = 0; i < WB_HIST_BUCKETS; i++) dst->b[i] += wb_get(&src->b[i]);
}

void wb_hist_sub(wb_hist *dst, const wb_hist *src)
{
    dst->count -= src->count;
    dst->sum -= src->sum;
    for (unsigned i = 0; i < WB_HIST_BUCKETS; i++) dst->b[i] -= src->b[i];
    /* The extremes of the difference are not known exactly: narrow them to the occupied
     * buckets so a max from before the window does not show. */
    if (!dst->count) {
        dst->min = UINT64_MAX;
        dst->max = 0;
        return;
    }
    uint64_t lo, w;
    unsigned first = 0, last = WB_HIST_BUCKETS - 1;
    while (!dst->b[first]) first++;
    while (!dst->b[last]) last--;
    bucket_range(first, &lo, &w);
    if (dst->min < lo) dst->min = lo;
    bucket_range(last, &lo, &w);
    if (dst->max >= lo + w) dst->max = lo + w - 1;
}

uint64_t wb_hist_quantile(const wb_hist *h, double q)
{
    if (!h->count) return 0;
    if (q >= 1) return h->max;
    uint64_t want = (uint64_t)(q * (double)h->count + 0.999999);
    if (want < 1) want = 1;
    if (want > h->count) want = h->count;
    uint64_t seen = 0;
    for (unsigned i = 0; i < WB_HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= want) {
            uint64_t lo, w;
            bucket_range(i, &lo, &w);
            uint64_t v = lo + w / 2;
            if (v < h->min) v = h->min;
            if (v > h->max) v = h->max;
            return v;
        }
    }
    return h->max;
}

double wb_hist_mean(const wb_hist *h)
{
    return h->count ? (double)h->sum / (double)h->count : 0;
}
