/* permessage-deflate without context takeover on ISA-L's one-shot deflater: every message is
 * inflated by zlib's raw inflate of the negotiated window (2^8 .. 2^15), by a peer that starts
 * afresh per message and by one that keeps its window (a match reaching before the message or
 * past the window shows either way); random, repetitive and flat-but-repeating data (the level 0
 * path), the cap that finds a message that does not shrink, the empty message, 16 MiB; the
 * Huffman codes trained on earlier messages: every window, and traffic they stop fitting. */
#define ZLIB_CONST
#include "pmd.h"
#include "pmd_data.h"
#include "test.h"

#include <stdlib.h>
#include <zlib.h>

/* zlib's raw inflate of one payload with 00 00 ff ff put back, on a fresh stream; the bytes
 * made, or -1.  The stream may end at the message's BFINAL block (7.2.3.4). */
static long peer_inflate(int bits, const uint8_t *z, size_t n, uint8_t *out, size_t cap)
{
    static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
    z_stream zs = {0};
    if (inflateInit2(&zs, -bits) != Z_OK) return -1;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    const uint8_t *parts[2] = {z, tail};
    size_t lens[2] = {n, 4};
    int ret = Z_OK;
    for (int k = 0; k < 2 && ret == Z_OK; k++) {
        zs.next_in = parts[k];
        zs.avail_in = (uInt)lens[k];
        ret = inflate(&zs, Z_SYNC_FLUSH);
    }
    inflateEnd(&zs);
    return ret == Z_OK || ret == Z_STREAM_END ? (long)(cap - zs.avail_out) : -1;
}

/* Every size through the deflater and a peer of window 2^bits: zlib afresh per message, or the
 * library's zlib inflater that keeps its window from message to message (`keep`). */
static int sequence(wsk_pmd_isal_oneshot *d, int bits, int keep, const uint8_t *data)
{
    static const size_t sizes[] = {1, 5, 300, 1024, 1500, 5000, 16384, 70000, 3, 1024};
    static uint8_t back[70000 + 64];
    wsk_pmd_inflater *inf = keep ? wsk_pmd_inflater_new(bits, 0) : NULL;
    int ok = EXPECT(!keep || inf, "inflater %d", bits);
    for (size_t k = 0, off = 0; ok && k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t len = sizes[k];
        const uint8_t *m = data + off % (100000 - 70000);
        off += len;
        wsk_dbuf z, o;
        wsk_dbuf_init(&z, 1 << 20);
        wsk_dbuf_init(&o, sizeof back);
        long got = -2;
        ok = EXPECT(wsk_pmd_isal_oneshot_deflate(d, bits, m, len, &z) == 0, "deflate %zu", len);
        if (ok && keep)
            got = wsk_pmd_inflate(inf, z.p, z.len, 1, &o) == 0 ? (long)o.len : -1;
        else if (ok)
            got = peer_inflate(bits, z.p, z.len, back, sizeof back);
        ok = ok && EXPECT(got == (long)len && !memcmp(keep ? o.p : back, m, len),
                          "window %d keep %d: message %zu of %zu bytes (got %ld)", bits, keep, k,
                          len, got);
        wsk_dbuf_free(&z);
        wsk_dbuf_free(&o);
    }
    wsk_pmd_inflater_free(inf);
    return ok;
}

static void test_round_trips(void)
{
    static uint8_t data[3][100000];
    fill(data[0], sizeof data[0], 0);
    fill(data[1], sizeof data[1], 1);
    /* Flat histogram, yet every 2 KiB repeats: the level 0 path must still find the matches. */
    fill(data[2], 2048, 0);
    for (size_t i = 2048; i < sizeof data[2]; i++) data[2][i] = data[2][i - 2048];
    wsk_pmd_isal_oneshot *d = wsk_pmd_isal_oneshot_new();
    int ok = EXPECT(d != NULL, "new");
    for (int bits = 8; ok && bits <= 15; bits++)
        for (int keep = 0; keep < 2; keep++)
            for (int kind = 0; kind < 3; kind++) ok &= sequence(d, bits, keep, data[kind]);
    CHECK(ok, "ISA-L one-shot deflate, zlib inflate: every window, peer with and without context");
    CHECK(d && wsk_pmd_isal_oneshot_messages(d) == 8 * 2 * 3 * 10, "count");
    wsk_pmd_isal_oneshot_free(d);
}

/* zlib checks a match's distance against the window it has plus the output of the current call
 * only, so inflating one byte of output per call makes it refuse any match that reaches past
 * 2^bits: then every window of 8..14 bits holds every match of a 5000-byte message. */
static void test_window_bound(void)
{
    static uint8_t msg[5000], back[5000];
    static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
    fill(msg, sizeof msg, 1);
    wsk_pmd_isal_oneshot *d = wsk_pmd_isal_oneshot_new();
    int ok = 1;
    for (int bits = 8; ok && bits < 15; bits++) {
        wsk_dbuf z;
        wsk_dbuf_init(&z, 1 << 16);
        ok = EXPECT(wsk_pmd_isal_oneshot_deflate(d, bits, msg, sizeof msg, &z) == 0 &&
                        wsk_dbuf_append(&z, tail, 4) == 0,
                    "deflate, window %d", bits);
        z_stream zs = {0};
        ok = ok && EXPECT(inflateInit2(&zs, -bits) == Z_OK, "inflateInit2");
        zs.next_in = z.p;
        zs.avail_in = (uInt)z.len;
        int ret = Z_OK;
        size_t made = 0;
        while (ok && ret == Z_OK && made < sizeof msg) {
            zs.next_out = back + made;
            zs.avail_out = 1;
            ret = inflate(&zs, Z_SYNC_FLUSH);
            made += 1 - zs.avail_out;
        }
        ok = ok && EXPECT((ret == Z_OK || ret == Z_STREAM_END) && made == sizeof msg &&
                              !memcmp(back, msg, sizeof msg),
                          "window %d: inflated one byte at a time (%s, %zu bytes)", bits,
                          zs.msg ? zs.msg : "", made);
        inflateEnd(&zs);
        wsk_dbuf_free(&z);
    }
    CHECK(ok, "no match reaches past the window it was given (8..14 bits)");
    wsk_pmd_isal_oneshot_free(d);
}

/* The cap just under the message finds one that does not shrink, leaving out as it was; a flat
 * message that repeats itself shrinks. */
static void test_cap(void)
{
    static uint8_t msg[16384];
    fill(msg, sizeof msg, 0);
    wsk_pmd_isal_oneshot *d = wsk_pmd_isal_oneshot_new();
    wsk_dbuf z;
    wsk_dbuf_init(&z, 1 << 20);
    for (size_t n = 64; n <= sizeof msg; n *= 4) {
        z.len = 0;
        z.max = n - 1;
        CHECK(wsk_pmd_isal_oneshot_deflate(d, 15, msg, n, &z) == WSK_ERR_TOO_BIG && z.len == 0,
              "%zu random bytes do not shrink: too big, nothing appended", n);
    }
    /* Base64 of random bytes: 64 symbols, 6 bits each, which Huffman codes shrink by a fifth;
     * its histogram must not pass for flat (fixed codes would not shrink it). */
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint8_t text[1000];
    for (size_t i = 0; i < sizeof text; i++) text[i] = (uint8_t)b64[msg[i] % 64];
    for (size_t n = 256; n <= sizeof text; n *= 2) {
        z.len = 0;
        z.max = n - 1;
        CHECK(wsk_pmd_isal_oneshot_deflate(d, 15, text, n, &z) == 0 && z.len < n * 9 / 10,
              "%zu bytes of base64 shrink (%zu bytes)", n, z.len);
    }
    memcpy(msg + 8192, msg, 8192);
    z.len = 0;
    z.max = sizeof msg - 1;
    CHECK(wsk_pmd_isal_oneshot_deflate(d, 15, msg, sizeof msg, &z) == 0 &&
              z.len < sizeof msg * 3 / 4,
          "random bytes repeated once shrink (%zu bytes)", z.len);
    z.len = 3;
    z.max = 1 << 20;
    CHECK(wsk_pmd_isal_oneshot_deflate(d, 15, "", 0, &z) == 0 && z.len == 4 && z.p[3] == 0,
          "an empty message is the octet 00 (7.2.3.6), appended");
    CHECK(wsk_pmd_isal_oneshot_deflate(d, 7, msg, 10, &z) == WSK_ERR_INVAL &&
              wsk_pmd_isal_oneshot_deflate(d, 16, msg, 10, &z) == WSK_ERR_INVAL,
          "windows 8..15 only");
    wsk_dbuf_free(&z);
    wsk_pmd_isal_oneshot_free(d);
}

/* A 16 MiB message, text and random, comes back whole through zlib. */
static void test_16mib(void)
{
    size_t n = 16u << 20;
    uint8_t *m = malloc(n), *back = malloc(n + 64);
    wsk_pmd_isal_oneshot *d = wsk_pmd_isal_oneshot_new();
    for (int rep = 0; rep < 2 && m && back && d; rep++) {
        fill(m, n, rep);
        wsk_dbuf z;
        wsk_dbuf_init(&z, n + (n >> 10));
        int rc = wsk_pmd_isal_oneshot_deflate(d, 15, m, n, &z);
        long got = rc == 0 ? peer_inflate(15, z.p, z.len, back, n + 64) : -2;
        CHECK(rc == 0 && got == (long)n && !memcmp(back, m, n), "16 MiB %s: %ld back (%zu sent)",
              rep ? "text" : "random", got, z.len);
        wsk_dbuf_free(&z);
    }
    wsk_pmd_isal_oneshot_free(d);
    free(m);
    free(back);
}

/* Compresses m[0..n) with d and with a fresh deflater (level 1: a fresh one has no trained
 * codes), checks that zlib inflates d's back to m at window 2^bits, and adds both sizes. */
static int trained_round_trip(wsk_pmd_isal_oneshot *d, int bits, const uint8_t *m, size_t n,
                              size_t *sum, size_t *sum_fresh)
{
    static uint8_t back[16384 + 64];
    wsk_pmd_isal_oneshot *f = wsk_pmd_isal_oneshot_new();
    wsk_dbuf z, zf;
    wsk_dbuf_init(&z, 1 << 16);
    wsk_dbuf_init(&zf, 1 << 16);
    int ok = EXPECT(f && wsk_pmd_isal_oneshot_deflate(d, bits, m, n, &z) == 0 &&
                        wsk_pmd_isal_oneshot_deflate(f, bits, m, n, &zf) == 0,
                    "deflate %zu", n);
    long got = ok ? peer_inflate(bits, z.p, z.len, back, sizeof back) : -2;
    ok = ok && EXPECT(got == (long)n && !memcmp(back, m, n), "window %d: %zu bytes (got %ld)", bits,
                      n, got);
    *sum += z.len;
    *sum_fresh += zf.len;
    wsk_dbuf_free(&z);
    wsk_dbuf_free(&zf);
    wsk_pmd_isal_oneshot_free(f);
    return ok;
}

/* Text messages of varied sizes train the codes, which then compress most of them, at every
 * window, and inflate back; text of other bytes (the same words moved to the upper half of the
 * byte range), which the codes do not fit, goes back to level 1 by itself: over the whole run
 * the output stays within 1/8 of level 1's alone. */
static void test_trained(void)
{
    static const size_t sizes[] = {300, 1024, 700, 2000, 5000, 16384, 1024};
    static uint8_t text[2][100000];
    fill(text[0], sizeof text[0], 1);
    for (size_t i = 0; i < sizeof text[1]; i++) text[1][i] = (uint8_t)(text[0][i] | 0x80);
    wsk_pmd_isal_oneshot *d = wsk_pmd_isal_oneshot_new();
    int ok = EXPECT(d != NULL, "new");
    uint64_t trained[2] = {0, 0};
    for (int kind = 0; ok && kind < 2; kind++) {
        size_t sum = 0, sum_fresh = 0;
        uint64_t before = wsk_pmd_isal_oneshot_trained(d);
        for (unsigned k = 0; ok && k < 640; k++) {
            size_t n = sizes[k % 7], off = (k * 7919u) % (sizeof text[0] - n);
            ok = trained_round_trip(d, 8 + (int)(k % 8), text[kind] + off, n, &sum, &sum_fresh);
        }
        trained[kind] = wsk_pmd_isal_oneshot_trained(d) - before;
        ok = ok && EXPECT(sum * 8 <= sum_fresh * 9, "%s: %zu bytes, level 1 alone %zu",
                          kind ? "other bytes" : "text", sum, sum_fresh);
    }
    CHECK(ok, "trained codes: every message inflates back, within 1/8 of level 1's size");
    CHECK(trained[0] > 400, "the codes compressed most text messages (%llu of 640)",
          (unsigned long long)trained[0]);
    wsk_pmd_isal_oneshot_free(d);
    /* Codes trained on text, then letters and digits in random order, which they fit badly:
     * level 1 still shrinks them, and they go out compressed. */
    d = wsk_pmd_isal_oneshot_new();
    static const char alnum[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    uint8_t odd[200];
    for (size_t i = 0; i < sizeof odd; i++) odd[i] = (uint8_t)alnum[rnd() % 36];
    wsk_dbuf z;
    wsk_dbuf_init(&z, 1 << 16);
    for (int k = 0; d && k < 40; k++) {
        z.len = 0;
        ok = EXPECT(wsk_pmd_isal_oneshot_deflate(d, 15, text[0] + 64 * k, 1024, &z) == 0, "text");
    }
    uint64_t before = d ? wsk_pmd_isal_oneshot_trained(d) : 0;
    z.len = 0;
    z.max = sizeof odd - 1;
    int rc = d ? wsk_pmd_isal_oneshot_deflate(d, 15, odd, sizeof odd, &z) : -1;
    CHECK(ok && before > 0 && rc == 0 && z.len < sizeof odd,
          "200 random letters and digits shrink after the codes (%d, %zu bytes)", rc, z.len);
    wsk_dbuf_free(&z);
    wsk_pmd_isal_oneshot_free(d);
}

int main(void)
{
    test_round_trips();
    test_window_bound();
    test_cap();
    test_16mib();
    test_trained();
    return TEST_DONE();
}
