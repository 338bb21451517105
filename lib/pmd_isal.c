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
#include <stdlib.h>

#define LEVEL_BUF ISAL_DEF_LVL1_SMALL

struct wsk_pmd_isal_deflater {
    struct isal_zstream zs;
    uint64_t messages;
    uint8_t level_buf[]; /* LEVEL_BUF bytes, igzip's working memory for level 1 */
};

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
    d->zs.level = 1;
    d->zs.level_buf = d->level_buf;
    d->zs.level_buf_size = LEVEL_BUF;
    /* A negotiated window of 2^bits (7.1.2.1, 7.1.2.2) is igzip's hist_bits: no match reaches
     * further back than the peer keeps.  Raw deflate: no header, no checksum. */
    d->zs.hist_bits = (uint16_t)window_bits;
    d->zs.gzip_flag = IGZIP_DEFLATE;
    d->messages = 0;
    return d;
}

void wsk_pmd_isal_deflater_free(wsk_pmd_isal_deflater *d)
{
    free(d);
}

void wsk_pmd_isal_deflater_reset(wsk_pmd_isal_deflater *d)
{
    /* Keeps level, level_buf and hist_bits; drops the history and any pending bits. */
    isal_deflate_reset(&d->zs);
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
    int rc = wsk_pmd_deflate_message(d, deflate_run, in, n, out);
    d->zs.next_in = NULL;
    d->zs.next_out = NULL;
    /* After an error the stream has taken input the peer will never see: start afresh. */
    if (rc < 0 || reset_after) isal_deflate_reset(&d->zs);
    if (rc == 0) d->messages++;
    return rc;
}

/* ----- whole messages without context takeover ------------------------------------------------ */

/* One call of isal_deflate_stateless per message, history-less: every match stays within the
 * message (and within 2^window_bits bytes), which is what no context takeover asks for.  Per
 * call at 1 KiB of JSON-like text it is half of libdeflate's level 6 (whose hash tables are
 * cleared on every call) for 1.5 points of size, at 16 KiB a fifth of it for 3 points
 * (tests/unit/bench_pmd oneshot).  Most of its time on a small message is building the Huffman
 * tables, and on bytes with a flat histogram (random, already compressed) that costs three
 * times as much for nothing: see looks_flat. */
struct wsk_pmd_isal_oneshot {
    struct isal_zstream zs; /* 80 KiB, most of it a buffer the stateless calls leave alone */
    uint64_t messages;
    uint8_t level_buf[]; /* LEVEL_BUF bytes */
};

wsk_pmd_isal_oneshot *wsk_pmd_isal_oneshot_new(void)
{
    wsk_pmd_isal_oneshot *d = malloc(sizeof *d + LEVEL_BUF);
    if (d) d->messages = 0;
    return d;
}

void wsk_pmd_isal_oneshot_free(wsk_pmd_isal_oneshot *d)
{
    free(d);
}

uint64_t wsk_pmd_isal_oneshot_messages(const wsk_pmd_isal_oneshot *d)
{
    return d->messages;
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
    int flat = looks_flat(in, n);
    struct isal_zstream *zs = &d->zs;
    isal_deflate_stateless_init(zs);
    zs->level = flat ? 0 : 1;
    zs->level_buf = flat ? NULL : d->level_buf;
    zs->level_buf_size = flat ? 0 : LEVEL_BUF;
    zs->hist_bits = (uint16_t)window_bits;
    zs->gzip_flag = IGZIP_DEFLATE;
    /* A stream that ends with a BFINAL block: a full flush would end with 00 00 ff ff to remove,
     * but not when igzip falls back to stored blocks, whose data may end with those octets. */
    zs->end_of_stream = 1;
    zs->next_in = (uint8_t *)(uintptr_t)in; /* igzip only reads it */
    zs->avail_in = (uint32_t)n;
    /* With out->max set just under the message's size, a message that does not shrink (not
     * even as stored blocks, which never do) makes igzip stop with STATELESS_OVERFLOW: sent
     * uncompressed. */
    uint32_t room = wsk_pmd_spare(out) - 1; /* the growth above left at least one byte */
    zs->next_out = out->p + out->len;
    zs->avail_out = room;
    int ret = isal_deflate_stateless(zs);
    zs->next_in = NULL;
    zs->next_out = NULL;
    if (ret == STATELESS_OVERFLOW) return WSK_ERR_TOO_BIG;
    if (ret != COMP_OK) return WSK_ERR_DEFLATE;
    size_t k = room - zs->avail_out;
    /* 7.2.3.4: the octet 00 starts an empty stored block after the BFINAL one, which the
     * receiver's 00 00 ff ff completes; it goes in the byte kept out of igzip's room. */
    out->p[out->len + k] = stored;
    out->len += k + 1;
    d->messages++;
    return 0;
}
