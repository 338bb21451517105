/* The codecs of permessage-deflate with context takeover, alone: ns per message and compressed
 * size for zlib's deflate (levels 6 and 1) against ISA-L's igzip (levels 0 to 3), one stream
 * over many messages with a sync flush each, and zlib's inflate against ISA-L's on the same
 * stream (each message into a buffer of its own, as a server hands them out).  Messages: 1 KiB
 * and 16 KiB of wsbench's JSON-like text and of random bytes, the same message again and again
 * (what `wsbench echo` sends) or a different one each time.  Not a test: `build/tests/bench_pmd`
 * prints a table; the choices in pmd.h (ISA-L level 1 for deflate, zlib for inflate) come from
 * it.  CPU time of the best of three runs of BENCH_MSGS messages, so a loaded machine spoils
 * less.  `bench_pmd oneshot` prints the same for messages without context takeover (one call
 * per message: the loop's compressor and the inflater of messages from clients that take no
 * context over); `bench_pmd size N LEVEL` the size the loop's compressor makes of N bytes (the
 * 100th time: with the codes it trains, see pmd_isal.c). */
#define ZLIB_CONST
#include "bench_engine.h"
#include "pmd.h"

#include <isa-l/igzip_lib.h>
#include <libdeflate.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#define BENCH_MSGS 400
#define ZMAX       (40 * 1024)

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static uint8_t zout[BENCH_MSGS][ZMAX];
static size_t zlen[BENCH_MSGS];

/* ISA-L at `level` directly (the library's wrapper is level 1 only). */
static size_t isal_level(int level, const uint8_t *in, size_t n)
{
    static const uint32_t bufs[] = {0, ISAL_DEF_LVL1_SMALL, ISAL_DEF_LVL2_SMALL,
                                    ISAL_DEF_LVL3_SMALL};
    struct isal_zstream zs;
    isal_deflate_init(&zs);
    zs.level = (uint32_t)level;
    zs.level_buf = bufs[level] ? malloc(bufs[level]) : NULL;
    zs.level_buf_size = bufs[level];
    zs.flush = SYNC_FLUSH;
    size_t total = 0;
    for (int m = 0; m < BENCH_MSGS; m++) {
        zs.next_in = (uint8_t *)(uintptr_t)(in + (size_t)m * n);
        zs.avail_in = (uint32_t)n;
        zs.next_out = zout[m];
        zs.avail_out = ZMAX;
        isal_deflate(&zs);
        zlen[m] = ZMAX - zs.avail_out - 4;
        total += zlen[m];
    }
    free(zs.level_buf);
    return total;
}

/* 0..1: zlib level 6, 1 (the library's zlib deflater); 2: the library's ISA-L deflater;
 * 3..5: ISA-L levels 0, 2, 3.  Returns the compressed bytes of all messages. */
static size_t deflate_all(int codec, const uint8_t *in, size_t n)
{
    if (codec >= 3) return isal_level(codec == 3 ? 0 : codec - 2, in, n);
    wsk_pmd_deflater *z = codec < 2 ? wsk_pmd_deflater_new(15, 8, codec ? 1 : 6) : NULL;
    wsk_pmd_isal_deflater *i = codec == 2 ? wsk_pmd_isal_deflater_new(15) : NULL;
    size_t total = 0;
    for (int m = 0; m < BENCH_MSGS; m++) {
        wsk_dbuf out = {zout[m], 0, ZMAX, ZMAX, 0};
        const uint8_t *p = in + (size_t)m * n;
        if (z) wsk_pmd_deflate(z, p, n, 0, &out);
        if (i) wsk_pmd_isal_deflate(i, p, n, 0, &out);
        zlen[m] = out.len;
        total += out.len;
    }
    wsk_pmd_deflater_free(z);
    wsk_pmd_isal_deflater_free(i);
    return total;
}

/* Inflates the BENCH_MSGS payloads in zout (00 00 ff ff put back) with zlib (the library's
 * inflater) or ISA-L, each into a buffer of its own; 0 when every message came back. */
static int inflate_all(int isal, const uint8_t *in, size_t n)
{
    static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
    wsk_pmd_inflater *z = isal ? NULL : wsk_pmd_inflater_new(15, 0);
    struct inflate_state *st = isal ? malloc(sizeof *st) : NULL;
    if (st) isal_inflate_init(st);
    int bad = 0;
    for (int m = 0; m < BENCH_MSGS && !bad; m++) {
        wsk_dbuf out;
        wsk_dbuf_init(&out, n + 64);
        if (z) {
            bad = wsk_pmd_inflate(z, zout[m], zlen[m], 1, &out) != 0;
        } else {
            wsk_dbuf_reserve(&out, n + 64);
            memcpy(zout[m] + zlen[m], tail, 4);
            st->next_in = zout[m];
            st->avail_in = (uint32_t)zlen[m] + 4;
            st->next_out = out.p;
            st->avail_out = (uint32_t)(n + 64);
            bad = isal_inflate(st) != ISAL_DECOMP_OK || st->avail_in;
            out.len = n + 64 - st->avail_out;
        }
        bad |= out.len != n || memcmp(out.p, in + (size_t)m * n, n) != 0;
        wsk_dbuf_free(&out);
    }
    wsk_pmd_inflater_free(z);
    free(st);
    return bad;
}

/* ----- without context takeover: one call per whole message -------------------------------- */

/* One-shot deflaters: 0..5 libdeflate levels 1..6, 6..9 ISA-L's isal_deflate_stateless at
 * levels 0..3 (with their level buffers), 10 and 11 zlib levels 1 and 6 reset after each
 * message (level 6: what browsers send, and wsbench).  Every
 * message compressed on its own; returns the bytes of all payloads (as sent: BFINAL stream and
 * the octet 00, or a sync flush less its 00 00 ff ff). */
#define ONESHOT_CODECS 12
static size_t oneshot_all(int codec, const uint8_t *in, size_t n)
{
    static const uint32_t bufs[] = {0, ISAL_DEF_LVL1_SMALL, ISAL_DEF_LVL2_SMALL,
                                    ISAL_DEF_LVL3_SMALL};
    struct libdeflate_compressor *ld = codec < 6 ? libdeflate_alloc_compressor(codec + 1) : NULL;
    wsk_pmd_deflater *z = codec >= 10 ? wsk_pmd_deflater_new(15, 8, codec == 10 ? 1 : 6) : NULL;
    int il = codec - 6;
    uint8_t *lbuf = codec >= 6 && codec < 10 && bufs[il] ? malloc(bufs[il]) : NULL;
    size_t total = 0;
    for (int m = 0; m < BENCH_MSGS; m++) {
        const uint8_t *p = in + (size_t)m * n;
        if (ld) {
            zlen[m] = libdeflate_deflate_compress(ld, p, n, zout[m], ZMAX) + 1;
        } else if (z) {
            wsk_dbuf out = {zout[m], 0, ZMAX, ZMAX, 0};
            wsk_pmd_deflate(z, p, n, 1, &out);
            zlen[m] = out.len;
        } else {
            struct isal_zstream zs;
            isal_deflate_stateless_init(&zs);
            zs.level = (uint32_t)il;
            zs.level_buf = lbuf;
            zs.level_buf_size = bufs[il];
            zs.gzip_flag = IGZIP_DEFLATE;
            zs.end_of_stream = 1;
            zs.next_in = (uint8_t *)(uintptr_t)p;
            zs.avail_in = (uint32_t)n;
            zs.next_out = zout[m];
            zs.avail_out = ZMAX;
            isal_deflate_stateless(&zs);
            zlen[m] = ZMAX - zs.avail_out + 1;
        }
        if (!z) zout[m][zlen[m] - 1] = 0x00; /* BFINAL, then 7.2.3.4's 00 */
        total += zlen[m];
    }
    if (ld) libdeflate_free_compressor(ld);
    wsk_pmd_deflater_free(z);
    free(lbuf);
    return total;
}

/* Inflates the one-shot payloads in zout: 0 libdeflate (the library's one-shot inflater),
 * 1 zlib reset after each message, 2 ISA-L's isal_inflate_stateless; 0 when all came back. */
static int oneshot_inflate_all(int codec, const uint8_t *in, size_t n)
{
    static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
    wsk_pmd_oneshot_inflater *ld = codec == 0 ? wsk_pmd_oneshot_inflater_new() : NULL;
    wsk_pmd_inflater *z = codec == 1 ? wsk_pmd_inflater_new(15, 1) : NULL;
    struct inflate_state *st = codec == 2 ? malloc(sizeof *st) : NULL;
    static uint8_t buf[ZMAX];
    int bad = 0;
    for (int m = 0; m < BENCH_MSGS && !bad; m++) {
        wsk_dbuf out = {buf, 0, sizeof buf, sizeof buf, 0};
        if (ld) {
            bad = wsk_pmd_oneshot_inflate(ld, zout[m], zlen[m], &out) != 0;
        } else if (z) {
            bad = wsk_pmd_inflate(z, zout[m], zlen[m], 1, &out) != 0;
        } else {
            isal_inflate_init(st);
            st->crc_flag = ISAL_DEFLATE;
            memcpy(zout[m] + zlen[m], tail, 4);
            st->next_in = zout[m];
            st->avail_in = (uint32_t)zlen[m] + 4;
            st->next_out = buf;
            st->avail_out = sizeof buf;
            int r = isal_inflate_stateless(st);
            bad = r != ISAL_DECOMP_OK && r != ISAL_END_INPUT;
            out.len = sizeof buf - st->avail_out;
        }
        bad |= out.len != n || memcmp(out.p, in + (size_t)m * n, n) != 0;
    }
    wsk_pmd_oneshot_inflater_free(ld);
    wsk_pmd_inflater_free(z);
    free(st);
    return bad;
}

static void oneshot_table(void)
{
    printf("\n| message | one-shot deflate: libdeflate 1..6, isal stateless 0..3, zlib 1, 6 "
           "(ns, size %%) | inflate of libdeflate 6: libdeflate, zlib, isal; of zlib 6: same "
           "(ns) |\n");
    for (size_t n = 1024; n <= 16384; n *= 16)
        for (int random = 0; random < 2; random++) {
            uint8_t *in = malloc(n * BENCH_MSGS);
            if (random)
                wb_random_bytes(in, n * BENCH_MSGS);
            else
                wb_json_like(in, n * BENCH_MSGS);
            printf("| %zu %s |", n, random ? "random" : "json");
            for (int c = 0; c < ONESHOT_CODECS; c++) {
                double best = 1e30;
                size_t total = 0;
                for (int run = 0; run < 3; run++) {
                    double t0 = now_ns();
                    total = oneshot_all(c, in, n);
                    double t = (now_ns() - t0) / BENCH_MSGS;
                    if (t < best) best = t;
                }
                printf(" %.0f %.1f%%", best, 100.0 * (double)total / (double)(n * BENCH_MSGS));
            }
            printf(" |");
            for (int src = 5; src <= 11; src += 6) {
                oneshot_all(src, in, n);
                for (int c = 0; c < 3; c++) {
                    double best = 1e30;
                    int bad = 0;
                    for (int run = 0; run < 3; run++) {
                        double t0 = now_ns();
                        bad |= oneshot_inflate_all(c, in, n);
                        double t = (now_ns() - t0) / BENCH_MSGS;
                        if (t < best) best = t;
                    }
                    printf(bad ? " WRONG" : " %.0f", best);
                }
            }
            printf(" |\n");
            free(in);
        }
}

/* `bench_pmd size N LEVEL`: the payload the loop's compressor sends for N bytes of wsbench's
 * JSON-like text at --compress-level LEVEL, as "bytes (percent)" (scripts/bench-compress). */
static int size_line(size_t n, int level)
{
    uint8_t *in = malloc(n ? n : 1);
    wsk_dbuf out;
    wsk_dbuf_init(&out, 2 * n + 64);
    wb_json_like(in, n);
    wsk_pmd_isal_oneshot *i = wsk_pmd_isal_serves(8, level) ? wsk_pmd_isal_oneshot_new() : NULL;
    wsk_pmd_oneshot_deflater *d = i ? NULL : wsk_pmd_oneshot_deflater_new(level);
    /* The size of the 100th time, as an echo server sends it once its ISA-L deflater has trained
     * its codes on the earlier ones. */
    int rc = 0;
    for (int m = 0; m < 100 && rc == 0; m++) {
        out.len = 0;
        rc = i   ? wsk_pmd_isal_oneshot_deflate(i, 15, in, n, &out)
             : d ? wsk_pmd_oneshot_deflate(d, in, n, &out)
                 : WSK_ERR_INVAL;
    }
    if (rc == 0) printf("%zu bytes (%.1f%%)\n", out.len, 100.0 * (double)out.len / (double)n);
    wsk_pmd_isal_oneshot_free(i);
    wsk_pmd_oneshot_deflater_free(d);
    wsk_dbuf_free(&out);
    free(in);
    return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "oneshot")) {
        oneshot_table();
        return 0;
    }
    if (argc == 4 && !strcmp(argv[1], "size"))
        return size_line((size_t)strtoul(argv[2], NULL, 10), atoi(argv[3]));
    static const char *const codecs[] = {"zlib 6", "zlib 1", "isal 1",
                                         "isal 0", "isal 2", "isal 3"};
    printf(
        "| message | deflate: %s, %s, %s, %s, %s, %s (ns, size %%) | inflate zlib, isal (ns) |\n",
        codecs[0], codecs[1], codecs[2], codecs[3], codecs[4], codecs[5]);
    for (size_t n = 1024; n <= 16384; n *= 16)
        for (int random = 0; random < 2; random++)
            for (int vary = 0; vary < 2; vary++) {
                /* Varied: consecutive slices of one long stream of records or random bytes;
                 * same: the first slice again and again. */
                uint8_t *in = malloc(n * BENCH_MSGS);
                if (random)
                    wb_random_bytes(in, n * BENCH_MSGS);
                else
                    wb_json_like(in, n * BENCH_MSGS);
                for (int m = 1; m < BENCH_MSGS && !vary; m++) memcpy(in + (size_t)m * n, in, n);
                printf("| %zu %s %s |", n, random ? "random" : "json", vary ? "varied" : "same");
                for (int c = 0; c < 6; c++) {
                    double best = 1e30;
                    size_t total = 0;
                    for (int run = 0; run < 3; run++) {
                        double t0 = now_ns();
                        total = deflate_all(c, in, n);
                        double t = (now_ns() - t0) / BENCH_MSGS;
                        if (t < best) best = t;
                    }
                    printf(" %.0f %.1f%%", best, 100.0 * (double)total / (double)(n * BENCH_MSGS));
                }
                deflate_all(0, in, n);
                printf(" |");
                for (int isal = 0; isal < 2; isal++) {
                    double best = 1e30;
                    int bad = 0;
                    for (int run = 0; run < 3; run++) {
                        double t0 = now_ns();
                        bad |= inflate_all(isal, in, n);
                        double t = (now_ns() - t0) / BENCH_MSGS;
                        if (t < best) best = t;
                    }
                    printf(bad ? " WRONG" : " %.0f", best);
                }
                printf(" |\n");
                free(in);
            }
    oneshot_table();
    return 0;
}
