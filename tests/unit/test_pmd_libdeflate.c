/* permessage-deflate of whole messages on libdeflate: RFC 7692 examples, round trips against
 * zlib in both directions at every level, the tail (00 after a BFINAL block, 00 00 ff ff put
 * back), messages that do not shrink, the output bound while inflating, corrupt input. */
#define ZLIB_CONST
#include "pmd.h"
#include "pmd_data.h"
#include "test.h"

#include <stdlib.h>
#include <zlib.h>

/* zlib's raw inflate of a payload with 00 00 ff ff put back, window 2^bits; -1 on error. */
static long zlib_inflate(const uint8_t *z, size_t n, int bits, uint8_t *out, size_t cap)
{
    uint8_t *in = malloc(n + 4);
    memcpy(in, z, n);
    memcpy(in + n, "\x00\x00\xff\xff", 4);
    z_stream zs = {0};
    inflateInit2(&zs, -bits);
    zs.next_in = in;
    zs.avail_in = (uInt)(n + 4);
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    int ret = inflate(&zs, Z_SYNC_FLUSH);
    long got = ret == Z_OK || ret == Z_STREAM_END ? (long)(cap - zs.avail_out) : -1;
    inflateEnd(&zs);
    free(in);
    return got;
}

/* zlib's raw deflate with a sync flush, the 00 00 ff ff removed (7.2.1). */
static size_t zlib_deflate(const uint8_t *in, size_t n, int level, uint8_t *out, size_t cap)
{
    z_stream zs = {0};
    deflateInit2(&zs, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
    zs.next_in = in;
    zs.avail_in = (uInt)n;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    deflate(&zs, Z_SYNC_FLUSH);
    size_t k = cap - zs.avail_out;
    deflateEnd(&zs);
    return k - 4;
}

/* The bytes a caller lends after a payload: octets that would not end a DEFLATE stream, so a
 * payload inflates only if the tail is written over them, and must find them back after. */
static const uint8_t lent[WSK_PMD_TAIL_ROOM] = {0xff, 0xee, 0xdd, 0xcc, 0xbb,
                                                0xaa, 0x99, 0x88, 0x77};
static int lent_intact = 1;

/* Inflates z[0..n) from a copy with exactly WSK_PMD_TAIL_ROOM lent bytes after it, in a block of
 * its own (ASan: any byte touched past those faults), and checks the lent bytes came back. */
static int inflate_to(wsk_pmd_oneshot_inflater *i, const void *z, size_t n, size_t max,
                      wsk_dbuf *out)
{
    uint8_t *in = malloc(n + WSK_PMD_TAIL_ROOM);
    if (n) memcpy(in, z, n);
    memcpy(in + n, lent, WSK_PMD_TAIL_ROOM);
    wsk_dbuf_init(out, max);
    int rc = wsk_pmd_oneshot_inflate(i, in, n, out);
    lent_intact &= !memcmp(in + n, lent, WSK_PMD_TAIL_ROOM) && (!n || !memcmp(in, z, n));
    free(in);
    return rc;
}

static int same(const wsk_dbuf *b, const void *p, size_t n)
{
    return b->len == n && (n == 0 || !memcmp(b->p, p, n));
}

static void test_rfc_examples(void)
{
    /* 7.2.3.1, 7.2.3.3, 7.2.3.4 (BFINAL then 00), and BFINAL alone. */
    static const struct {
        const char *z;
        size_t n;
        const char *what;
    } ex[] = {
        {"\xf2\x48\xcd\xc9\xc9\x07\x00", 7, "7.2.3.1 sync-flushed"},
        {"\x00\x05\x00\xfa\xff\x48\x65\x6c\x6c\x6f\x00", 11, "7.2.3.3 stored block"},
        {"\xf3\x48\xcd\xc9\xc9\x07\x00\x00", 8, "7.2.3.4 BFINAL block then 00"},
        {"\xf3\x48\xcd\xc9\xc9\x07\x00", 7, "BFINAL block alone"},
    };
    wsk_pmd_oneshot_inflater *i = wsk_pmd_oneshot_inflater_new();
    for (size_t k = 0; k < sizeof ex / sizeof ex[0]; k++) {
        wsk_dbuf o;
        int rc = inflate_to(i, ex[k].z, ex[k].n, 100, &o);
        CHECK(rc == 0 && same(&o, "Hello", 5), "%s inflates to Hello (rc %d)", ex[k].what, rc);
        wsk_dbuf_free(&o);
    }
    wsk_dbuf o;
    CHECK(inflate_to(i, "\x00", 1, 100, &o) == 0 && o.len == 0,
          "7.2.3.6: the octet 00 is an empty message");
    wsk_dbuf_free(&o);
    CHECK(inflate_to(i, "", 0, 100, &o) == 0 && o.len == 0, "an empty payload is an empty message");
    wsk_dbuf_free(&o);
    CHECK(inflate_to(i, "\x00", 1, 0, &o) == 0 && o.len == 0,
          "an empty message fits in a buffer with no room left");
    wsk_dbuf_free(&o);
    wsk_pmd_oneshot_inflater_free(i);
}

static void test_round_trips(void)
{
    static const size_t sizes[] = {1, 2, 63, 64, 100, 1024, 4096, 16384, 32768, 32769, 100000};
    wsk_pmd_oneshot_inflater *inf = wsk_pmd_oneshot_inflater_new();
    uint8_t *msg = malloc(100000), *z = malloc(200000), *back = malloc(100001);
    int ok_out = 1, ok_in = 1, ok_tail = 1, ok_window = 1;
    for (int level = WSK_PMD_LEVEL_MIN; level <= WSK_PMD_LEVEL_MAX; level++) {
        wsk_pmd_oneshot_deflater *d = wsk_pmd_oneshot_deflater_new(level);
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            for (int rep = 0; rep < 2; rep++) {
                size_t n = sizes[s];
                fill(msg, n, rep);
                wsk_dbuf o;
                wsk_dbuf_init(&o, 2 * n + 64);
                int rc = wsk_pmd_oneshot_deflate(d, msg, n, &o);
                /* Ours, inflated by zlib, which keeps a window of the message's size only. */
                int bits = 8;
                while (bits < 15 && ((size_t)1 << bits) < n) bits++;
                long got = rc == 0 ? zlib_inflate(o.p, o.len, bits, back, n + 1) : -1;
                ok_out &= EXPECT(got == (long)n && !memcmp(back, msg, n),
                                 "level %d, %zu bytes%s: zlib inflates %ld", level, n,
                                 rep ? " of text" : "", got);
                ok_window &= EXPECT(bits == 15 || got == (long)n, "window %d", bits);
                /* 7.2.3.4: the payload ends with the octet 00 after the BFINAL block. */
                ok_tail &= EXPECT(rc == 0 && o.len > 1 && o.p[o.len - 1] == 0, "tail");
                wsk_dbuf_free(&o);
                /* zlib's, inflated by ours. */
                size_t zn = zlib_deflate(msg, n, level, z, 200000);
                rc = inflate_to(inf, z, zn, n, &o);
                ok_in &=
                    EXPECT(rc == 0 && same(&o, msg, n), "level %d, %zu bytes: rc %d", level, n, rc);
                wsk_dbuf_free(&o);
            }
        }
        CHECK(wsk_pmd_oneshot_deflater_messages(d) == 2 * sizeof sizes / sizeof sizes[0],
              "level %d: messages counted", level);
        wsk_pmd_oneshot_deflater_free(d);
    }
    CHECK(ok_out, "one-shot deflate at levels 1..9: zlib inflates every message");
    CHECK(ok_window, "a message no longer than a window inflates within that window");
    CHECK(ok_tail, "every compressed message ends with 00 after its BFINAL block");
    CHECK(ok_in, "one-shot inflate of zlib's sync-flushed messages (tail stripped) at 1..9");
    free(msg);
    free(z);
    free(back);
    wsk_pmd_oneshot_inflater_free(inf);
}

static void test_empty_and_small(void)
{
    wsk_pmd_oneshot_deflater *d = wsk_pmd_oneshot_deflater_new(6);
    wsk_dbuf o;
    wsk_dbuf_init(&o, 100);
    CHECK(wsk_pmd_oneshot_deflate(d, "", 0, &o) == 0 && o.len == 1 && o.p[0] == 0,
          "7.2.3.6: an empty message compresses to the single octet 00");
    wsk_dbuf_free(&o);
    CHECK(!wsk_pmd_oneshot_deflater_new(0) && !wsk_pmd_oneshot_deflater_new(10),
          "levels outside 1..9 are refused");
    wsk_pmd_oneshot_deflater_free(NULL);
    wsk_pmd_oneshot_inflater_free(NULL);
    wsk_pmd_oneshot_deflater_free(d);

    wsk_pmd_config cfg = {WSK_COMPRESS_SHARED, WSK_COMPRESS_SHARED, 64};
    wsk_pmd_params p = {.enabled = 1, .deflate_bits = 15, .deflate_shared = 1, .deflate_reset = 1};
    CHECK(!wsk_pmd_should_compress(&cfg, &p, 63) && wsk_pmd_should_compress(&cfg, &p, 64),
          "threshold 64: 63 bytes go uncompressed, 64 compressed");
}

/* Capped just under the message's size, the compressor says when a message does not shrink. */
static void test_not_smaller(void)
{
    wsk_pmd_oneshot_deflater *d = wsk_pmd_oneshot_deflater_new(6);
    uint8_t msg[2000];
    int ok = 1;
    for (size_t n = 1; n <= sizeof msg; n += 37) {
        fill(msg, n, 0);
        wsk_dbuf o;
        wsk_dbuf_init(&o, n - 1);
        int rc = wsk_pmd_oneshot_deflate(d, msg, n, &o);
        ok &= EXPECT(rc == WSK_ERR_TOO_BIG && o.len == 0, "%zu random bytes: rc %d", n, rc);
        wsk_dbuf_free(&o);
    }
    CHECK(ok, "random bytes do not shrink: WSK_ERR_TOO_BIG with the output untouched");
    fill(msg, sizeof msg, 1);
    wsk_dbuf o;
    wsk_dbuf_init(&o, sizeof msg - 1);
    CHECK(wsk_pmd_oneshot_deflate(d, msg, sizeof msg, &o) == 0 && o.len < sizeof msg / 2,
          "2000 bytes of text shrink to %zu under the same cap", o.len);
    /* libdeflate 1.14 wants a few spare bytes at the end of its output (8 or 9): a cap of the
     * payload's size plus 16 is enough, one byte under the payload never. */
    size_t need = o.len;
    wsk_dbuf_free(&o);
    wsk_dbuf_init(&o, need + 16);
    int fits = wsk_pmd_oneshot_deflate(d, msg, sizeof msg, &o);
    wsk_dbuf_free(&o);
    wsk_dbuf_init(&o, need - 1);
    CHECK(fits == 0 && wsk_pmd_oneshot_deflate(d, msg, sizeof msg, &o) == WSK_ERR_TOO_BIG,
          "a cap of the payload's %zu bytes + 16 fits, one under it does not", need);
    wsk_dbuf_free(&o);
    wsk_pmd_oneshot_deflater_free(d);
}

static void test_limits(void)
{
    /* 64 MiB of zeros in a few tens of KiB: inflating stops at the cap, never allocates past it. */
    size_t big = (size_t)64 << 20;
    uint8_t *zeros = calloc(1, big), *z = malloc(1 << 20);
    size_t zn = zlib_deflate(zeros, big, 9, z, 1 << 20);
    free(zeros);
    wsk_pmd_oneshot_inflater *i = wsk_pmd_oneshot_inflater_new();
    wsk_dbuf o;
    int rc = inflate_to(i, z, zn, 1 << 20, &o);
    CHECK(rc == WSK_ERR_TOO_BIG && o.cap <= (1u << 20),
          "a %zu-byte bomb of 64 MiB: 1009 at a 1 MiB cap (buffer %zu)", zn, o.cap);
    wsk_dbuf_free(&o);

    /* The bound is exact: a message of n bytes inflates at cap n, not at n - 1. */
    uint8_t msg[5000];
    fill(msg, sizeof msg, 1);
    zn = zlib_deflate(msg, sizeof msg, 6, z, 1 << 20);
    int at = inflate_to(i, z, zn, sizeof msg, &o);
    int fits = at == 0 && same(&o, msg, sizeof msg);
    wsk_dbuf_free(&o);
    rc = inflate_to(i, z, zn, sizeof msg - 1, &o);
    CHECK(fits && rc == WSK_ERR_TOO_BIG, "5000 bytes inflate at a cap of 5000, not 4999");
    wsk_dbuf_free(&o);

    /* The output grows from a guess: a message inflating 1000-fold still comes out whole. */
    static uint8_t runs[1 << 20];
    zn = zlib_deflate(runs, sizeof runs, 9, z, 1 << 20);
    rc = inflate_to(i, z, zn, 16 << 20, &o);
    CHECK(rc == 0 && same(&o, runs, sizeof runs), "1 MiB from %zu bytes: the output grew", zn);
    wsk_dbuf_free(&o);
    free(z);
    wsk_pmd_oneshot_inflater_free(i);
}

static void test_corrupt(void)
{
    wsk_pmd_oneshot_inflater *i = wsk_pmd_oneshot_inflater_new();
    wsk_dbuf o;
    CHECK(inflate_to(i, "\xff\xff\xff\xff garbage", 12, 1000, &o) == WSK_ERR_DEFLATE,
          "garbage does not inflate");
    wsk_dbuf_free(&o);

    uint8_t msg[3000], z[4000];
    fill(msg, sizeof msg, 1);
    size_t zn = zlib_deflate(msg, sizeof msg, 6, z, sizeof z);
    CHECK(inflate_to(i, z, zn / 2, 10000, &o) == WSK_ERR_DEFLATE,
          "a message cut in the middle of a block does not inflate");
    wsk_dbuf_free(&o);

    /* 7.2.1 lets blocks follow a BFINAL block; the one-shot inflater hands such a message on. */
    static const uint8_t more[] = {0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00,
                                   0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00};
    int rc = inflate_to(i, more, sizeof more, 100, &o);
    CHECK(rc == WSK_PMD_USE_ZLIB && o.len == 0,
          "blocks after a BFINAL block: WSK_PMD_USE_ZLIB, nothing written (rc %d)", rc);
    wsk_pmd_inflater *zi = wsk_pmd_inflater_new(15, 1);
    CHECK(wsk_pmd_inflate(zi, more, sizeof more, 1, &o) == 0 && same(&o, "HelloHello", 10),
          "... and zlib's streaming inflater reads it whole");
    wsk_pmd_inflater_free(zi);
    wsk_dbuf_free(&o);
    /* BFINAL, then 00 and something other than the rest of an empty stored block. */
    static const uint8_t junk[] = {0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00, 0x01};
    CHECK(inflate_to(i, junk, sizeof junk, 100, &o) == WSK_PMD_USE_ZLIB,
          "bytes after BFINAL + 00 are not taken as the tail");
    wsk_dbuf_free(&o);
    wsk_pmd_oneshot_inflater_free(i);
}

/* The tail goes into the bytes the caller lends after the payload, and they come back. */
static void test_tail_in_place(void)
{
    wsk_pmd_oneshot_inflater *i = wsk_pmd_oneshot_inflater_new();
    uint8_t msg[3000], z[4000];
    fill(msg, sizeof msg, 1);
    size_t zn = zlib_deflate(msg, sizeof msg, 6, z, sizeof z);
    /* Two frames back to back in one read: the first payload's tail is written over the second
     * frame's first bytes, which must be intact for it. */
    uint8_t *read = malloc(2 * zn + WSK_PMD_TAIL_ROOM);
    memcpy(read, z, zn);
    memcpy(read + zn, z, zn);
    memcpy(read + 2 * zn, lent, WSK_PMD_TAIL_ROOM);
    wsk_dbuf a, b;
    wsk_dbuf_init(&a, sizeof msg);
    wsk_dbuf_init(&b, sizeof msg);
    int ra = wsk_pmd_oneshot_inflate(i, read, zn, &a);
    int rb = wsk_pmd_oneshot_inflate(i, read + zn, zn, &b);
    CHECK(ra == 0 && rb == 0 && same(&a, msg, sizeof msg) && same(&b, msg, sizeof msg),
          "two payloads back to back inflate in place, the first lending its tail room");
    CHECK(!memcmp(read, z, zn) && !memcmp(read + zn, z, zn) &&
              !memcmp(read + 2 * zn, lent, WSK_PMD_TAIL_ROOM),
          "the bytes under the tail are put back");
    free(read);
    wsk_dbuf_free(&a);
    wsk_dbuf_free(&b);
    CHECK(lent_intact, "every inflate of this test put the lent bytes back");
    wsk_pmd_oneshot_inflater_free(i);
}

/* The output is sized from the last message's ratio; a message that inflates past that guess
 * is inflated again into geometrically larger room, and sets the guess for the next one. */
static void test_retry(void)
{
    wsk_pmd_oneshot_inflater *i = wsk_pmd_oneshot_inflater_new();
    static uint8_t noise[4096], zeros[1 << 20];
    static uint8_t z[1 << 20];
    fill(noise, sizeof noise, 0);
    wsk_dbuf o;
    size_t zn = zlib_deflate(noise, sizeof noise, 6, z, sizeof z);
    CHECK(inflate_to(i, z, zn, 1 << 24, &o) == 0 && same(&o, noise, sizeof noise) &&
              wsk_pmd_oneshot_inflater_retries(i) == 0,
          "random bytes (ratio about 1) fit the first guess");
    wsk_dbuf_free(&o);
    zn = zlib_deflate(zeros, sizeof zeros, 9, z, sizeof z);
    int rc = inflate_to(i, z, zn, 1 << 24, &o);
    uint64_t tries = wsk_pmd_oneshot_inflater_retries(i);
    /* From a guess of about 1.1 times ~1 KiB, doubling reaches 1 MiB in 10 or 11 steps. */
    CHECK(rc == 0 && same(&o, zeros, sizeof zeros) && tries >= 1 && tries <= 12,
          "1 MiB from %zu bytes after a ratio of 1: whole, after %llu retries", zn,
          (unsigned long long)tries);
    wsk_dbuf_free(&o);
    rc = inflate_to(i, z, zn, 1 << 24, &o);
    CHECK(rc == 0 && same(&o, zeros, sizeof zeros) && wsk_pmd_oneshot_inflater_retries(i) == tries,
          "the same message again fits the guess its ratio set: no retry");
    wsk_dbuf_free(&o);
    /* Back to small: the last ratio of about 1000 must not make the guess exceed the cap. */
    zn = zlib_deflate(noise, sizeof noise, 6, z, sizeof z);
    CHECK(inflate_to(i, z, zn, sizeof noise, &o) == 0 && same(&o, noise, sizeof noise) &&
              o.cap <= sizeof noise,
          "a guess past the cap is clamped to it (buffer %zu)", o.cap);
    wsk_dbuf_free(&o);
    wsk_pmd_oneshot_inflater_free(i);
}

int main(void)
{
    test_tail_in_place();
    test_retry();
    test_rfc_examples();
    test_round_trips();
    test_empty_and_small();
    test_not_smaller();
    test_limits();
    test_corrupt();
    CHECK(lent_intact, "every inflate put back the bytes lent after its payload");
    return TEST_DONE();
}
