/* wsbench's latency histogram (cmd/bench_hist.c): bucket bounds, quantiles, and the percentile
 * spectrum of --percentiles row for row against HdrHistogram's own output; a window between two
 * snapshots that disagree on a count. */
#include "bench.h"
#include "test.h"

#include <math.h>

/* HdrHistogram 2.2.2 (Java), Histogram(1, 3600e9, 2), outputPercentileDistribution(out, 5, 1.0)
 * of the values recorded by record_reference(): value, percentile, total count.  Below 128
 * both histograms hold exact values, so every row must match. */
static const char reference[] = "1 0.000000000000 191\n"
                                "2 0.100000000000 372\n"
                                "3 0.200000000000 1044\n"
                                "3 0.300000000000 1044\n"
                                "5 0.400000000000 1361\n"
                                "7 0.500000000000 1643\n"
                                "8 0.550000000000 1772\n"
                                "9 0.600000000000 1893\n"
                                "11 0.650000000000 2112\n"
                                "12 0.700000000000 2211\n"
                                "14 0.750000000000 2388\n"
                                "15 0.775000000000 2467\n"
                                "16 0.800000000000 2540\n"
                                "17 0.825000000000 2607\n"
                                "18 0.850000000000 2668\n"
                                "19 0.875000000000 2724\n"
                                "20 0.887500000000 2775\n"
                                "21 0.900000000000 2821\n"
                                "22 0.912500000000 2862\n"
                                "23 0.925000000000 2899\n"
                                "24 0.937500000000 2932\n"
                                "24 0.943750000000 2932\n"
                                "25 0.950000000000 2961\n"
                                "26 0.956250000000 2986\n"
                                "26 0.962500000000 2986\n"
                                "27 0.968750000000 3008\n"
                                "28 0.971875000000 3027\n"
                                "28 0.975000000000 3027\n"
                                "29 0.978125000000 3043\n"
                                "29 0.981250000000 3043\n"
                                "30 0.984375000000 3056\n"
                                "31 0.985937500000 3067\n"
                                "31 0.987500000000 3067\n"
                                "32 0.989062500000 3076\n"
                                "32 0.990625000000 3076\n"
                                "33 0.992187500000 3083\n"
                                "33 0.992968750000 3083\n"
                                "33 0.993750000000 3083\n"
                                "34 0.994531250000 3088\n"
                                "34 0.995312500000 3088\n"
                                "35 0.996093750000 3092\n"
                                "35 0.996484375000 3092\n"
                                "35 0.996875000000 3092\n"
                                "36 0.997265625000 3095\n"
                                "36 0.997656250000 3095\n"
                                "36 0.998046875000 3095\n"
                                "37 0.998242187500 3097\n"
                                "37 0.998437500000 3097\n"
                                "37 0.998632812500 3097\n"
                                "38 0.998828125000 3098\n"
                                "38 0.999023437500 3098\n"
                                "39 0.999121093750 3099\n"
                                "39 0.999218750000 3099\n"
                                "39 0.999316406250 3099\n"
                                "40 0.999414062500 3100\n"
                                "40 0.999511718750 3100\n"
                                "40 0.999560546875 3100\n"
                                "40 0.999609375000 3100\n"
                                "40 0.999658203125 3100\n"
                                "100 0.999707031250 3101\n"
                                "100 1.000000000000 3101\n";

static void record_reference(wb_hist *h)
{
    wb_hist_reset(h);
    for (uint64_t v = 1; v <= 40; v++) {
        uint64_t n = 1 + (40 - v) * (40 - v) / 8 + (v == 3 ? 500 : 0);
        for (uint64_t i = 0; i < n; i++) wb_hist_record(h, v);
    }
    wb_hist_record(h, 100);
}

static void test_spectrum(void)
{
    static wb_hist h;
    static wb_pct p[WB_PCT_MAX];
    record_reference(&h);
    size_t n = wb_hist_spectrum(&h, 5, p, WB_PCT_MAX), row = 0;
    int same = 1;
    const char *s = reference;
    for (; *s; row++) {
        unsigned long long value, total;
        double pct;
        int used = 0;
        if (sscanf(s, "%llu %lf %llu\n%n", &value, &pct, &total, &used) != 3 || !used) break;
        s += used;
        same &= row < n && EXPECT(p[row].value == value && fabs(p[row].pct - pct) < 1e-11 &&
                                      p[row].total == total,
                                  "row %zu: %llu %.12f %llu, reference %llu %.12f %llu", row,
                                  (unsigned long long)p[row].value, p[row].pct,
                                  (unsigned long long)p[row].total, value, pct, total);
    }
    CHECK(same && row == n && row > 50, "the spectrum is HdrHistogram's, row for row (%zu rows)",
          n);
    CHECK(fabs(wb_hist_mean(&h) - 9.33) < 0.005 && fabs(wb_hist_stddev(&h) - 7.82) < 0.005,
          "mean and standard deviation as HdrHistogram's footer says");

    wb_hist empty;
    wb_hist_reset(&empty);
    CHECK(wb_hist_spectrum(&empty, 5, p, WB_PCT_MAX) == 0, "an empty histogram has no rows");
    CHECK(wb_hist_spectrum(&h, 5, p, 3) == 3 && p[2].pct == 1 && p[2].value == 100,
          "a short array still ends on the 100%% row");

    /* Large values: each row is within 1/64 of the values at its level, and nothing goes
     * down. */
    static wb_hist big;
    wb_hist_reset(&big);
    for (uint64_t v = 1000; v < 100000000; v = v * 21 / 20) wb_hist_record(&big, v);
    n = wb_hist_spectrum(&big, 5, p, WB_PCT_MAX);
    int mono =
        n > 10 && p[n - 1].pct == 1 && p[n - 1].value == big.max && p[n - 1].total == big.count;
    for (size_t i = 1; i < n; i++)
        mono &= EXPECT(p[i].value >= p[i - 1].value && p[i].pct > p[i - 1].pct &&
                           p[i].total >= p[i - 1].total,
                       "row %zu", i);
    CHECK(mono, "values from 1 us to 100 ms: %zu rows that never go down, the last the max", n);
}

static void test_quantiles(void)
{
    static wb_hist h;
    wb_hist_reset(&h);
    for (uint64_t v = 1; v <= 100; v++) wb_hist_record(&h, v);
    CHECK(wb_hist_quantile(&h, .5) == 50 && wb_hist_quantile(&h, .99) == 99 &&
              wb_hist_quantile(&h, 1) == 100,
          "exact below 128: p50 50, p99 99, max 100");
    wb_hist_record(&h, 1000000);
    uint64_t q = wb_hist_quantile(&h, 1);
    CHECK(q == 1000000, "the max is exact at any size");
    int close = 1;
    for (uint64_t v = 200; v < (1ull << 40); v = v * 3 + 7) {
        wb_hist one;
        wb_hist_reset(&one);
        wb_hist_record(&one, v);
        wb_hist_record(&one, v * 2);
        uint64_t got = wb_hist_quantile(&one, .5);
        close &= EXPECT(fabs((double)got - (double)v) <= (double)v / 64, "%llu -> %llu",
                        (unsigned long long)v, (unsigned long long)got);
    }
    CHECK(close, "any value is known to within 1/64");
}

/* A window between two snapshots taken while a thread recorded: the first has a value's bucket
 * but not its count, so the difference has a count and no occupied bucket. */
static void test_torn_window(void)
{
    static wb_hist before, after;
    wb_hist_reset(&before);
    for (uint64_t v = 1; v <= 10; v++) wb_hist_record(&before, v * 1000);
    after = before;
    before.count--;
    before.sum -= 10000;
    wb_hist_sub(&after, &before);
    CHECK(after.count == 0 && after.sum == 0 && wb_hist_quantile(&after, .5) == 0,
          "a window with a count but no occupied bucket is empty (count %llu)",
          (unsigned long long)after.count);
}

int main(void)
{
    test_spectrum();
    test_quantiles();
    test_torn_window();
    return TEST_DONE();
}
