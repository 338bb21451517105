/* permessage-deflate with context takeover on ISA-L: every message ISA-L deflates is inflated
 * by zlib's raw inflate of the same window (2^8 .. 2^15), one stream over many messages, so a
 * match reaching past the window or into history the peer does not have shows; with and without
 * context takeover, random and repetitive data; empty messages, the output cap, the level map. */
#define ZLIB_CONST
#include "pmd.h"
#include "pmd_data.h"
#include "test.h"

#include <stdlib.h>
#include <zlib.h>

/* zlib's raw inflate of one payload with 00 00 ff ff put back, on a stream that keeps its
 * window between calls; the bytes made, or -1 on error. */
static long peer_inflate(z_stream *zs, const uint8_t *z, size_t n, uint8_t *out, size_t cap)
{
    static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
    zs->next_out = out;
    zs->avail_out = (uInt)cap;
    const uint8_t *parts[2] = {z, tail};
    size_t lens[2] = {n, 4};
    for (int k = 0; k < 2; k++) {
        zs->next_in = parts[k];
        zs->avail_in = (uInt)lens[k];
        int ret = inflate(zs, Z_SYNC_FLUSH);
        if (ret != Z_OK && !(ret == Z_BUF_ERROR && !lens[k])) return -1;
        if (zs->avail_in) return -1;
    }
    return (long)(cap - zs->avail_out);
}

/* Messages of varied sizes through one deflater and one peer inflater of window 2^bits; every
 * third message repeats an earlier one, so later ones match far back into the history.  Returns
 * 1 when all came back, and the compressed bytes of the repeats in *zrep. */
static int sequence(int bits, int reset, const uint8_t *data, size_t *zrep)
{
    static const size_t sizes[] = {0, 1, 5, 300, 1024, 5000, 16384, 70000, 3, 1024, 200, 40000};
    wsk_pmd_isal_deflater *d = wsk_pmd_isal_deflater_new(bits);
    z_stream zs = {0};
    int ok = EXPECT(d && inflateInit2(&zs, -bits) == Z_OK, "new(%d)", bits);
    static uint8_t back[70000 + 64];
    size_t off = 0, n = sizeof sizes / sizeof sizes[0], pos[sizeof sizes / sizeof sizes[0]];
    *zrep = 0;
    for (size_t round = 0; ok && round < 3; round++)
        for (size_t k = 0; ok && k < n; k++) {
            size_t len = sizes[k];
            /* In rounds 1 and 2 the message is the one of round 0: the whole of it is in the
             * window when the window is larger than what came since. */
            if (!round) pos[k] = off % (100000 - 70000);
            const uint8_t *m = data + pos[k];
            wsk_dbuf z;
            wsk_dbuf_init(&z, 1 << 20);
            long got = -2;
            ok = EXPECT(wsk_pmd_isal_deflate(d, m, len, reset, &z) == 0, "deflate %zu", len) &&
                 EXPECT((got = peer_inflate(&zs, z.p, z.len, back, sizeof back)) == (long)len &&
                            !memcmp(back, m, len),
                        "window %d reset %d round %zu: message %zu of %zu bytes (got %ld)", bits,
                        reset, round, k, len, got);
            if (reset) inflateReset(&zs);
            if (round) *zrep += z.len;
            if (!round) off += len;
            wsk_dbuf_free(&z);
        }
    ok &= EXPECT(!d || wsk_pmd_isal_deflater_messages(d) == 3 * n, "count");
    inflateEnd(&zs);
    wsk_pmd_isal_deflater_free(d);
    return ok;
}

static void test_round_trips(void)
{
    static uint8_t data[2][100000];
    fill(data[0], sizeof data[0], 0);
    fill(data[1], sizeof data[1], 1);
    int ok = 1;
    for (int bits = 8; bits <= 15; bits++)
        for (int reset = 0; reset < 2; reset++)
            for (int rep = 0; rep < 2; rep++) {
                size_t zrep;
                ok &= sequence(bits, reset, data[rep], &zrep);
            }
    CHECK(ok, "ISA-L deflate, zlib inflate: every window, with and without context takeover");
}

/* Context takeover pays: a message sent again costs a few bytes with the window holding it,
 * its full size without (random bytes do not shrink on their own). */
static void test_takeover_pays(void)
{
    static uint8_t msg[16384];
    fill(msg, sizeof msg, 0);
    wsk_pmd_isal_deflater *d = wsk_pmd_isal_deflater_new(15);
    wsk_dbuf z;
    wsk_dbuf_init(&z, 1 << 20);
    CHECK(d && wsk_pmd_isal_deflate(d, msg, sizeof msg, 0, &z) == 0 && z.len > sizeof msg,
          "random bytes first: %zu", z.len);
    /* igzip's level-1 hash table has 8 Ki entries, so a 16 KiB message finds its earlier copy
     * over a few sends rather than at once (1 KiB ones at once). */
    for (int k = 0; k < 4; k++) {
        z.len = 0;
        wsk_pmd_isal_deflate(d, msg, sizeof msg, k == 3, &z);
    }
    CHECK(z.len < sizeof msg / 50, "the same bytes again refer to the window: %zu", z.len);
    z.len = 0;
    CHECK(wsk_pmd_isal_deflate(d, msg, sizeof msg, 0, &z) == 0 && z.len > sizeof msg,
          "after reset_after nothing is left to refer to: %zu", z.len);
    wsk_dbuf_free(&z);
    wsk_pmd_isal_deflater_free(d);
}

/* The output never passes out->max: WSK_ERR_TOO_BIG, out as it was, and the stream starts
 * afresh (the next message refers to nothing the peer did not get). */
static void test_limits(void)
{
    static uint8_t msg[4096];
    fill(msg, sizeof msg, 0);
    wsk_pmd_isal_deflater *d = wsk_pmd_isal_deflater_new(15);
    z_stream zs = {0};
    inflateInit2(&zs, -15);
    static uint8_t back[8192];
    wsk_dbuf z;
    wsk_dbuf_init(&z, 1 << 20);
    CHECK(wsk_pmd_isal_deflate(d, msg, 100, 0, &z) == 0 &&
              peer_inflate(&zs, z.p, z.len, back, sizeof back) == 100,
          "a first message the peer gets");
    /* A capacity past the limit, as a scratch buffer reused with a lower max has. */
    wsk_dbuf_free(&z);
    wsk_dbuf_init(&z, 1 << 20);
    wsk_dbuf_reserve(&z, 2 * sizeof msg);
    z.max = sizeof msg - 100 - 1;
    CHECK(wsk_pmd_isal_deflate(d, msg + 100, sizeof msg - 100, 0, &z) == WSK_ERR_TOO_BIG &&
              z.len == 0,
          "random bytes do not fit under their own size: %zu", z.len);
    z.max = 1 << 20;
    CHECK(wsk_pmd_isal_deflate(d, msg, 100, 0, &z) == 0 &&
              peer_inflate(&zs, z.p, z.len, back, sizeof back) == 100 && !memcmp(back, msg, 100),
          "after the failure the stream still inflates on the peer's side");
    z.len = 0;
    CHECK(wsk_pmd_isal_deflate(d, "", 0, 0, &z) == 0 && z.len == 1 && z.p[0] == 0 &&
              peer_inflate(&zs, z.p, z.len, back, sizeof back) == 0,
          "an empty message is the octet 00 (7.2.3.6)");
    wsk_dbuf_free(&z);
    inflateEnd(&zs);
    wsk_pmd_isal_deflater_free(d);
}

static void test_new_and_levels(void)
{
    CHECK(!wsk_pmd_isal_deflater_new(7) && !wsk_pmd_isal_deflater_new(16), "windows 8..15 only");
    wsk_pmd_isal_deflater *d = wsk_pmd_isal_deflater_new(15);
    size_t mem = d ? wsk_pmd_isal_deflater_memory(d) : 0;
    CHECK(mem > 100000 && mem < 200000, "memory %zu", mem);
    wsk_pmd_isal_deflater_free(d);
    CHECK(wsk_pmd_isal_serves(8, 1) && wsk_pmd_isal_serves(8, 6) && !wsk_pmd_isal_serves(8, 7) &&
              !wsk_pmd_isal_serves(7, 6),
          "levels 1..6 of the 256 KiB modes go to ISA-L, the rest to zlib");
}

/* Small messages take level 0 with the fixed codes, long ones level 1, by the socket's average
 * size: 40 of 1 KiB, 40 of 16 KiB, 40 of 1 KiB again, and random bytes, through one stream with
 * context takeover, each inflated by a peer that keeps its window too (a change of level starts
 * the stream afresh, which the peer must not notice); the fixed codes shrink text and grow random
 * bytes by under 9%. */
static void test_levels_follow_sizes(void)
{
    static uint8_t text[200000], back[20000];
    fill(text, sizeof text, 1);
    wsk_pmd_isal_deflater *d = wsk_pmd_isal_deflater_new(15);
    z_stream zs = {0};
    inflateInit2(&zs, -15);
    wsk_dbuf z;
    wsk_dbuf_init(&z, 1 << 20);
    static const size_t sizes[] = {1024, 16384, 1024, 1000};
    int ok = d != NULL, levels[4] = {-1, -1, -1, -1};
    size_t off = 0, zsum[4] = {0};
    for (int phase = 0; ok && phase < 4; phase++) {
        if (phase == 3) fill(text, sizes[3] * 40, 0); /* random bytes */
        for (int k = 0; ok && k < 40; k++, off += 997) {
            size_t n = sizes[phase];
            const uint8_t *m = phase == 3 ? text + (size_t)k * n : text + off % (sizeof text - n);
            z.len = 0;
            ok = EXPECT(wsk_pmd_isal_deflate(d, m, n, 0, &z) == 0 &&
                            peer_inflate(&zs, z.p, z.len, back, sizeof back) == (long)n &&
                            !memcmp(back, m, n),
                        "phase %d message %d (%zu bytes)", phase, k, n);
            zsum[phase] += z.len;
        }
        levels[phase] = d ? wsk_pmd_isal_deflater_level(d) : -1;
    }
    CHECK(ok, "1 KiB, 16 KiB, 1 KiB text and random bytes through one stream, each inflated back");
    CHECK(levels[0] == 0 && levels[1] == 1 && levels[2] == 0 && levels[3] == 0,
          "levels by size: %d %d %d %d", levels[0], levels[1], levels[2], levels[3]);
    CHECK(zsum[0] < 40 * 1024 / 3 && zsum[3] < 40 * 1000 * 109 / 100,
          "fixed codes: text shrinks (%zu of 40 KiB), random bytes grow by under 9%% (%zu)",
          zsum[0], zsum[3]);
    wsk_dbuf_free(&z);
    inflateEnd(&zs);
    wsk_pmd_isal_deflater_free(d);
}

int main(void)
{
    test_round_trips();
    test_levels_follow_sizes();
    test_takeover_pays();
    test_limits();
    test_new_and_levels();
    return TEST_DONE();
}
