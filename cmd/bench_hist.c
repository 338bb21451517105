/* Latency histogram: see bench.h. */
#include "bench.h"

#include <math.h>
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
     * buckets so a max from before the window does not show.  The snapshots are taken while
     * the threads record (a bucket, then the count), so a window's count may be off by the
     * values recorded as it was taken: one with a count but no occupied bucket is empty. */
    unsigned first = 0, last = WB_HIST_BUCKETS - 1;
    while (first < WB_HIST_BUCKETS && !dst->b[first]) first++;
    if (!dst->count || first == WB_HIST_BUCKETS) {
        dst->count = dst->sum = 0;
        dst->min = UINT64_MAX;
        dst->max = 0;
        return;
    }
    uint64_t lo, w;
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

double wb_hist_stddev(const wb_hist *h)
{
    if (!h->count) return 0;
    double mean = wb_hist_mean(h), sq = 0;
    for (unsigned i = 0; i < WB_HIST_BUCKETS; i++) {
        if (!h->b[i]) continue;
        uint64_t lo, w;
        bucket_range(i, &lo, &w);
        double d = (double)(lo + w / 2) - mean;
        sq += d * d * (double)h->b[i];
    }
    return sqrt(sq / (double)h->count);
}

/* HdrHistogram's PercentileIterator: the level to reach starts at 0 and moves by 100 / (ticks *
 * 2^(halvings + 1)) percent, where halvings counts how often the distance to 100% has been
 * halved; every bucket that reaches the level gives a row (several rows when it crosses several
 * levels), the bucket of the last value gives one, and a last row says 100%. */
size_t wb_hist_spectrum(const wb_hist *h, unsigned ticks, wb_pct *out, size_t cap)
{
    size_t n = 0;
    if (!h->count || !cap) return 0;
    double level = 0;
    uint64_t total = 0, value = 0;
    for (unsigned i = 0; i < WB_HIST_BUCKETS && total < h->count; i++) {
        if (!h->b[i]) continue;
        total += h->b[i];
        uint64_t lo, w;
        bucket_range(i, &lo, &w);
        value = lo + w - 1; /* HdrHistogram reports a bucket by its highest equivalent value */
        if (value > h->max) value = h->max;
        if (value < h->min) value = h->min;
        while (n < cap - 1 && 100.0 * (double)total / (double)h->count >= level) {
            out[n++] = (wb_pct){.value = value, .total = total, .pct = level / 100};
            double halvings = floor(log2(100.0 / (100.0 - level)));
            level += 100.0 / ((double)ticks * pow(2, halvings + 1));
            if (total == h->count) break; /* the last bucket: one row, then the 100% row */
        }
    }
    out[n++] = (wb_pct){.value = value, .total = total, .pct = 1};
    return n;
}
