/* permessage-deflate streams with context takeover on Intel ISA-L's igzip (RFC 7692 section
 * 7.2): see pmd.h.  A socket's own deflater keeps its LZ77 window from message to message; igzip
 * level 1 finds the long matches an echo or a feed of similar records has in that window for a
 * fraction of zlib's time (scripts/bench-compress, and tests/unit/bench_pmd for the codecs alone).
 *
 * Memory: the stream (82 KiB: twice the 32 KiB history plus a hash table) and level 1's buffer
 * of 16 Ki tokens (84 KiB) in one allocation.  ISA-L's smallest level-1 buffer (24 KiB) costs a
 * third more time on 16 KiB messages, which then span several blocks. */
#include "pmd.h"

#include <isa-l/igzip_lib.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define LEVEL_BUF ISAL_DEF_LVL1_SMALL

/* A socket's messages of a few KiB go through igzip's level 0 with the fixed Huffman codes of
 * RFC 1951 (3.2.6): level 1 builds codes for every message (a block ends at each sync flush),
 * which is most of its time on small messages, and with the window holding their repeats the
 * fixed codes lose little (1 KiB of JSON-like text: a quarter of the time for a ninth more bytes,
 * an echoed message the same size; 300 bytes: a sixth of the time, no larger).  Longer messages,
 * where the built codes win more (16 KiB: a quarter smaller) and cost less per byte, go through
 * level 1.  The choice follows a moving average of the socket's message sizes, with some
 * hysteresis; changing level starts the stream afresh (igzip keeps each level's hash table
 * apart), which costs the peer nothing but one message's context. */
#define FIXED_BELOW (4 * 1024) /* average under this: level 0 with the fixed codes */
#define LEVEL1_FROM (8 * 1024) /* from this: level 1 */

struct wsk_pmd_isal_deflater {
    struct isal_zstream zs;
    uint64_t messages;
    uint32_t avg;        /* moving average of the message sizes (over about 8) */
    uint8_t level_buf[]; /* LEVEL_BUF bytes, igzip's working memory for level 1 */
};

/* The stream at `level` (0: the fixed codes), after init or a reset. */
static void set_level(wsk_pmd_isal_deflater *d, int level)
{
    d->zs.level = (uint32_t)level;
    d->zs.level_buf = level ? d->level_buf : NULL;
    d->zs.level_buf_size = level ? LEVEL_BUF : 0;
    isal_deflate_set_hufftables(&d->zs, NULL,
                                level ? IGZIP_HUFFTABLE_DEFAULT : IGZIP_HUFFTABLE_STATIC);
}

int wsk_pmd_isal_serves(int mem_level, int level)
{
    return mem_level >= 8 && level >= WSK_PMD_LEVEL_MIN && level <= 6;
}

wsk_pmd_isal_deflater *wsk_pmd_isal_deflater_new(int window_bits)
{
    if (window_bits < 8 || window_bits > 15) return NULL;
    wsk_pmd_isal_deflater *d = malloc(sizeof *d + LEVEL_BUF);
    if (!d) return NULL;
    isal_deflate_init(&d->zs);
    set_level(d, 0);
    /* A negotiated window of 2^bits (7.1.2.1, 7.1.2.2) is igzip's hist_bits: no match reaches
     * further back than the peer keeps.  Raw deflate: no header, no checksum. */
    d->zs.hist_bits = (uint16_t)window_bits;
    d->zs.gzip_flag = IGZIP_DEFLATE;
    d->messages = 0;
    d->avg = 0;
    return d;
}

void wsk_pmd_isal_deflater_free(wsk_pmd_isal_deflater *d)
{
    free(d);
}

void wsk_pmd_isal_deflater_reset(wsk_pmd_isal_deflater *d)
{
    /* Keeps level, level_buf and hist_bits; drops the history and any pending bits.  The codes
     * are set again: a reset is a new stream. */
    isal_deflate_reset(&d->zs);
    set_level(d, (int)d->zs.level);
}

int wsk_pmd_isal_deflater_level(const wsk_pmd_isal_deflater *d)
{
    return (int)d->zs.level;
}

uint64_t wsk_pmd_isal_deflater_messages(const wsk_pmd_isal_deflater *d)
{
    return d->messages;
}

size_t wsk_pmd_isal_deflater_memory(const wsk_pmd_isal_deflater *d)
{
    (void)d;
    return sizeof *d + LEVEL_BUF;
}

/* A wsk_pmd_run_fn: deflates in[0..n), appending everything igzip emits. */
static int deflate_run(void *deflater, const uint8_t *in, uint32_t n, int last, wsk_dbuf *out)
{
    struct isal_zstream *zs = &((wsk_pmd_isal_deflater *)deflater)->zs;
    zs->next_in = (uint8_t *)(uintptr_t)in; /* igzip only reads it */
    zs->avail_in = n;
    /* A sync flush keeps the history for the next message (a full flush would drop it). */
    zs->flush = last ? SYNC_FLUSH : NO_FLUSH;
    for (;;) {
        if (!wsk_pmd_spare(out)) {
            int rc = wsk_pmd_grow(out, n / 2 + 64);
            if (rc < 0) return rc;
        }
        uint32_t room = wsk_pmd_spare(out);
        zs->next_out = out->p + out->len;
        zs->avail_out = room;
        int ret = isal_deflate(zs);
        out->len += room - zs->avail_out;
        if (ret != COMP_OK) return WSK_ERR_DEFLATE;
        /* As zlib: everything is out (the flush included) once igzip has taken all input and
         * stopped short of the space given. */
        if (zs->avail_in == 0 && zs->avail_out > 0) return 0;
    }
}

int wsk_pmd_isal_deflate(wsk_pmd_isal_deflater *d, const void *in, size_t n, int reset_after,
                         wsk_dbuf *out)
{
    uint32_t size = n < (1u << 24) ? (uint32_t)n : 1u << 24;
    d->avg = d->avg - d->avg / 8 + size / 8;
    int level = d->avg >= LEVEL1_FROM ? 1 : d->avg < FIXED_BELOW ? 0 : (int)d->zs.level;
    if (level != (int)d->zs.level) {
        isal_deflate_reset(&d->zs);
        set_level(d, level);
    }
    int rc = wsk_pmd_deflate_message(d, deflate_run, in, n, out);
    d->zs.next_in = NULL;
    d->zs.next_out = NULL;
    /* After an error the stream has taken input the peer will never see: start afresh. */
    if (rc < 0 || reset_after) wsk_pmd_isal_deflater_reset(d);
    if (rc == 0) d->messages++;
    return rc;
}

/* ----- whole messages without context takeover ------------------------------------------------ */

/* One call of isal_deflate_stateless per message, history-less: every match stays within the
 * message (and within 2^window_bits bytes), which is what no context takeover asks for.  Per
 * call at 1 KiB of JSON-like text it is half of libdeflate's level 6 (whose hash tables are
 * cleared on every call) for 1.5 points of size, at 16 KiB a fifth of it for 3 points
 * (tests/unit/bench_pmd oneshot).  Most of its time on a small message is building the Huffman
 * tables: on bytes with a flat histogram (random, already compressed) that is three times the
 * cost for nothing (see looks_flat), and on a server's other messages, which mostly look alike,
 * it is done again for codes that barely change: see the trained table below. */
struct wsk_pmd_isal_oneshot {
    struct isal_zstream zs;     /* 80 KiB, most of it a buffer the stateless calls leave alone */
    uint64_t messages, trained; /* compressed, and of those with the trained table */
    /* The trained table: Huffman codes built from the histogram of sampled messages, with which
     * level 0 (one pass, no table to build) compresses the messages in between at a quarter of
     * level 1's time (1 KiB of JSON-like text: 1.0 us against 4.3, 9% larger).  A sample is
     * compressed at level 1 as before, its symbols added to the histogram, and its size with the
     * table measured too (into probe): the table is used while its sizes stay within 1/8 of
     * level 1's over the samples, so traffic it does not fit (tiny messages, where the table's
     * block header weighs, or a change of content) goes back to level 1 by itself. */
    struct isal_huff_histogram hist; /* symbols of the samples since the last build */
    struct isal_hufftables table;
    uint32_t samples;          /* taken since the table was last built */
    uint32_t until_sample;     /* eligible messages to go before the next sample */
    uint32_t rng;              /* spaces the samples */
    uint64_t size_l1, size_tt; /* sizes of the recent samples: level 1, and with the table */
    int have_table, use_table;
    uint8_t *probe;      /* PROBE_MAX bytes, on the first sample with a table */
    uint8_t level_buf[]; /* LEVEL_BUF bytes */
};

/* Samples: every message until TRAIN_FIRST have been taken, then one in SAMPLE_EVERY on average;
 * the table is rebuilt from the histogram every REBUILD_EVERY samples (2048 messages), the
 * histogram halved so that it follows the traffic as it changes.  Messages over PROBE_MAX (a sample
 * costs a second deflate into probe) and flat ones are never sampled. */
#define TRAIN_FIRST   8
#define SAMPLE_EVERY  32
#define REBUILD_EVERY 64
#define PROBE_MAX     (16 * 1024)

wsk_pmd_isal_oneshot *wsk_pmd_isal_oneshot_new(void)
{
    wsk_pmd_isal_oneshot *d = malloc(sizeof *d + LEVEL_BUF);
    if (!d) return NULL;
    memset(d, 0, offsetof(wsk_pmd_isal_oneshot, level_buf));
    d->rng = 2463534242u;
    return d;
}

void wsk_pmd_isal_oneshot_free(wsk_pmd_isal_oneshot *d)
{
    if (d) free(d->probe);
    free(d);
}

uint64_t wsk_pmd_isal_oneshot_messages(const wsk_pmd_isal_oneshot *d)
{
    return d->messages;
}

uint64_t wsk_pmd_isal_oneshot_trained(const wsk_pmd_isal_oneshot *d)
{
    return d->trained;
}

/* 1 when the bytes of in[0..n) are spread so evenly that Huffman codes cannot shrink them by
 * more than a few percent: over k bytes of the first KiB (the head tells as well as the whole,
 * at a twentieth of a codec's time), sum(c * (c - 1)), an unbiased estimate of
 * k * (k - 1) * sum(p^2), is under k * (k - 1) / 2^7.5: a Renyi entropy over 7.5 bits per byte
 * (random bytes are near k * (k - 1) / 256, text several times more).  Only matches can then
 * make the message smaller, and ISA-L's level 0, with fixed codes, finds them at a fifth of the
 * cost of level 1, which spends most of its time on a flat message building Huffman tables for
 * nothing.  Messages under 128 bytes are never judged flat (too few bytes to tell). */
static int looks_flat(const uint8_t *in, size_t n)
{
    if (n < 128) return 0;
    /* Every third byte once there are enough: a histogram costs a few cycles per byte (text
     * repeats bytes, and each count waits for the last), and 3 is prime to the periods of
     * binary records (2, 4, 8), whose constant bytes then still show. */
    size_t span = n < 1024 ? n : 1024, step = span >= 3 * 128 ? 3 : 1;
    uint32_t k = 0;
    uint16_t count[256] = {0};
    for (size_t i = 0; i < span; i += step, k++) count[in[i]]++;
    uint32_t sum = 0;
    for (int b = 0; b < 256; b++) sum += (uint32_t)count[b] * (count[b] - 1u);
    /* sum < k (k - 1) / 181 (2^7.5 = 181.02) */
    return sum * 181 < k * (k - 1);
}

/* One isal_deflate_stateless call: in[0..n) into out[0..cap) at `level` (0: with `table`, or the
 * default codes when NULL; 1: level 1 in level_buf), no match reaching past 2^bits bytes, ending
 * with a BFINAL block.  The bytes made; -1 when they do not fit in cap, -2 on another error. */
static long stateless(wsk_pmd_isal_oneshot *d, int level, struct isal_hufftables *table, int bits,
                      const uint8_t *in, uint32_t n, uint8_t *out, uint32_t cap)
{
    struct isal_zstream *zs = &d->zs;
    isal_deflate_stateless_init(zs); /* the default codes again */
    zs->level = (uint32_t)level;
    zs->level_buf = level ? d->level_buf : NULL;
    zs->level_buf_size = level ? LEVEL_BUF : 0;
    if (table) isal_deflate_set_hufftables(zs, table, IGZIP_HUFFTABLE_CUSTOM);
    zs->hist_bits = (uint16_t)bits;
    zs->gzip_flag = IGZIP_DEFLATE;
    /* A stream that ends with a BFINAL block: a full flush would end with 00 00 ff ff to remove,
     * but not when igzip falls back to stored blocks, whose data may end with those octets. */
    zs->end_of_stream = 1;
    zs->next_in = (uint8_t *)(uintptr_t)in; /* igzip only reads it */
    zs->avail_in = n;
    zs->next_out = out;
    zs->avail_out = cap;
    int ret = isal_deflate_stateless(zs);
    zs->next_in = NULL;
    zs->next_out = NULL;
    if (ret == STATELESS_OVERFLOW) return -1;
    return ret == COMP_OK ? (long)(cap - zs->avail_out) : -2;
}

/* 1 when in[0..n) is due to be a sample (see the trained table); otherwise counts it. */
static int sample_due(wsk_pmd_isal_oneshot *d, size_t n)
{
    if (n > PROBE_MAX) return 0;
    if (d->until_sample) {
        d->until_sample--;
        return 0;
    }
    return 1;
}

/* A sample in[0..n), which level 1 made into `made` bytes (-1: did not shrink): its symbols to
 * the histogram, its size with the table to the sums; the table rebuilt when it is time. */
static void learn(wsk_pmd_isal_oneshot *d, int bits, const uint8_t *in, uint32_t n, long made)
{
    isal_update_histogram((uint8_t *)(uintptr_t)in, (int)n, &d->hist); /* only reads it */
    if (d->have_table && (d->probe || (d->probe = malloc(PROBE_MAX)))) {
        long t = stateless(d, 0, &d->table, bits, in, n, d->probe, n < PROBE_MAX ? n : PROBE_MAX);
        /* Moving sums over the last 8 samples or so: a change of traffic shows within a few
         * samples. */
        d->size_l1 += (made < 0 ? n : (uint64_t)made) - d->size_l1 / 8;
        d->size_tt += (t < 0 ? n : (uint64_t)t) - d->size_tt / 8;
        d->use_table = d->size_tt * 8 <= d->size_l1 * 9;
    }
    if (++d->samples < (d->have_table ? REBUILD_EVERY : TRAIN_FIRST)) return;
    d->samples = 0;
    if (isal_create_hufftables(&d->table, &d->hist) == 0) d->have_table = 1;
    for (int s = 0; s < ISAL_DEF_LIT_LEN_SYMBOLS; s++) d->hist.lit_len_histogram[s] /= 2;
    for (int s = 0; s < ISAL_DEF_DIST_SYMBOLS; s++) d->hist.dist_histogram[s] /= 2;
}

int wsk_pmd_isal_oneshot_deflate(wsk_pmd_isal_oneshot *d, int window_bits, const void *in, size_t n,
                                 wsk_dbuf *out)
{
    static const uint8_t stored = 0x00;
    if (n == 0) {
        /* 7.2.3.6: an empty message is the single octet 00. */
        int rc = wsk_dbuf_append(out, &stored, 1);
        if (rc == 0) d->messages++;
        return rc;
    }
    if (window_bits < 8 || window_bits > 15) return WSK_ERR_INVAL;
    if (n > UINT32_MAX) return WSK_ERR_TOO_BIG; /* one call takes at most 4 GiB */
    /* Room for the worst case, stored blocks (5 bytes of header per 64 KiB), and the flush. */
    int rc = wsk_pmd_grow(out, n + (n >> 12) + 64);
    if (rc < 0) return rc;
    /* With out->max set just under the message's size, a message that does not shrink (not
     * even as stored blocks, which never do) makes igzip stop with STATELESS_OVERFLOW: sent
     * uncompressed. */
    uint32_t room = wsk_pmd_spare(out) - 1; /* the growth above left at least one byte */
    uint8_t *at = out->p + out->len;
    long k;
    int due = sample_due(d, n);
    if (!due && d->use_table) {
        /* No histogram test: a flat message costs level 0 the same with these codes as with
         * the default ones, and does not shrink with either. */
        k = stateless(d, 0, &d->table, window_bits, in, (uint32_t)n, at, room);
        if (k >= 0) d->trained++;
        /* Codes that do not fit this message (their block header alone is some 80 bytes): level
         * 1 may still shrink it, unless its bytes are flat. */
        else if (k == -1 && !looks_flat(in, n))
            k = stateless(d, 1, NULL, window_bits, in, (uint32_t)n, at, room);
    } else if (looks_flat(in, n)) {
        k = stateless(d, 0, NULL, window_bits, in, (uint32_t)n, at, room); /* a sample waits */
    } else if (due) {
        k = stateless(d, 1, NULL, window_bits, in, (uint32_t)n, at, room);
        if (k >= -1) learn(d, window_bits, in, (uint32_t)n, k);
        /* The next sample: at once while the codes are new (a build resets the count), then
         * 16..47 messages on (xorshift32), so that a period in the traffic (sizes, kinds of
         * message) cannot line up with the samples. */
        d->rng ^= d->rng << 13, d->rng ^= d->rng >> 17, d->rng ^= d->rng << 5;
        d->until_sample = d->samples < TRAIN_FIRST ? 0 : SAMPLE_EVERY / 2 + d->rng % SAMPLE_EVERY;
    } else {
        k = stateless(d, 1, NULL, window_bits, in, (uint32_t)n, at, room);
    }
    if (k == -1) return WSK_ERR_TOO_BIG;
    if (k < 0) return WSK_ERR_DEFLATE;
    /* 7.2.3.4: the octet 00 starts an empty stored block after the BFINAL one, which the
     * receiver's 00 00 ff ff completes; it goes in the byte kept out of igzip's room. */
    at[k] = stored;
    out->len += (size_t)k + 1;
    d->messages++;
    return 0;
}
