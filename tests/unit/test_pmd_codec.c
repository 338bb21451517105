/* permessage-deflate codec: RFC 7692 examples, round trips at every window, fragmented input,
 * output limits, corrupt input and interoperability with plain zlib. */
#define ZLIB_CONST
#include "pmd.h"
#include "pmd_data.h"
#include "test.h"

#include <zlib.h>

static int same(const wsk_dbuf *b, const void *p, size_t n)
{
    return b->len == n && (n == 0 || !memcmp(b->p, p, n));
}

static int inflate_all(wsk_pmd_inflater *i, const void *z, size_t n, size_t max, wsk_dbuf *out)
{
    wsk_dbuf_init(out, max);
    return wsk_pmd_inflate(i, z, n, 1, out);
}

static void test_rfc_examples(void)
{
    static const uint8_t hello1[] = {0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00};
    static const uint8_t hello2[] = {0xf2, 0x00, 0x11, 0x00, 0x00};
    static const uint8_t stored[] = {0x00, 0x05, 0x00, 0xfa, 0xff, 0x48,
                                     0x65, 0x6c, 0x6c, 0x6f, 0x00};
    static const uint8_t bfinal[] = {0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00};
    static const uint8_t two[] = {0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff,
                                  0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00};
    static const struct {
        const uint8_t *z;
        size_t n;
        const char *what;
    } t[] = {
        {hello1, sizeof hello1, "7.2.3.1 a compressed text message"},
        {stored, sizeof stored, "7.2.3.3 a block with no compression"},
        {bfinal, sizeof bfinal, "7.2.3.4 a block with BFINAL set"},
        {two, sizeof two, "7.2.3.5 two blocks in one message"},
    };
    wsk_pmd_inflater *inf = wsk_pmd_inflater_new(15, 1);
    int ok = inf != NULL;
    for (size_t k = 0; ok && k < sizeof t / sizeof t[0]; k++) {
        wsk_dbuf o;
        ok &= EXPECT(inflate_all(inf, t[k].z, t[k].n, 100, &o) == 0 && same(&o, "Hello", 5), "%s",
                     t[k].what);
        wsk_dbuf_free(&o);
    }
    CHECK(ok, "RFC 7692 7.2.3 examples inflate to \"Hello\"");
    wsk_dbuf o;
    CHECK(inflate_all(inf, "", 1, 0, &o) == 0 && o.len == 0, "7.2.3.6 the empty message 00");
    CHECK(inflate_all(inf, "", 0, 0, &o) == 0 && o.len == 0,
          "an empty payload is an empty message");
    wsk_pmd_inflater_free(inf);

    /* 7.2.3.2: the second message refers to the first when context is taken over. */
    inf = wsk_pmd_inflater_new(15, 0);
    ok = inflate_all(inf, hello1, sizeof hello1, 100, &o) == 0 && same(&o, "Hello", 5);
    wsk_dbuf_free(&o);
    ok &= inflate_all(inf, hello2, sizeof hello2, 100, &o) == 0 && same(&o, "Hello", 5);
    wsk_dbuf_free(&o);
    CHECK(ok, "7.2.3.2 sharing the LZ77 window across messages");
    /* A block with BFINAL ends zlib's stream; the window still carries into the next message,
     * also when the sender ends a message right after that block. */
    ok = inflate_all(inf, bfinal, sizeof bfinal, 100, &o) == 0 && same(&o, "Hello", 5);
    wsk_dbuf_free(&o);
    ok &= inflate_all(inf, hello2, sizeof hello2, 100, &o) == 0 && same(&o, "Hello", 5);
    wsk_dbuf_free(&o);
    ok &= inflate_all(inf, bfinal, sizeof bfinal - 1, 100, &o) == 0 && same(&o, "Hello", 5);
    wsk_dbuf_free(&o);
    ok &= inflate_all(inf, hello2, sizeof hello2, 100, &o) == 0 && same(&o, "Hello", 5);
    wsk_dbuf_free(&o);
    CHECK(ok, "the window survives a BFINAL block");
    wsk_pmd_inflater_free(inf);

    /* Our deflater produces exactly the RFC's bytes. */
    wsk_pmd_deflater *d = wsk_pmd_deflater_new(15, 8, WSK_PMD_LEVEL_DEFAULT);
    inf = wsk_pmd_inflater_new(15, 0);
    wsk_dbuf z;
    wsk_dbuf_init(&z, 100);
    ok = wsk_pmd_deflate(d, "Hello", 5, 0, &z) == 0 && same(&z, hello1, sizeof hello1);
    ok &= inflate_all(inf, z.p, z.len, 5, &o) == 0;
    wsk_dbuf_free(&o);
    z.len = 0;
    ok &= wsk_pmd_deflate(d, "Hello", 5, 0, &z) == 0 && same(&z, hello2, sizeof hello2);
    ok &= inflate_all(inf, z.p, z.len, 5, &o) == 0;
    wsk_dbuf_free(&o);
    CHECK(ok, "deflating \"Hello\" twice gives the bytes of 7.2.3.1 and 7.2.3.2");
    z.len = 0;
    CHECK(wsk_pmd_deflate(d, "", 0, 0, &z) == 0 && same(&z, "", 1) &&
              inflate_all(inf, z.p, z.len, 0, &o) == 0 && o.len == 0,
          "an empty message deflates to 00 (7.2.3.6)");
    /* Context carries over the empty message; reset_after then starts afresh. */
    ok = 1;
    for (int k = 0; k < 3; k++) {
        z.len = 0;
        ok &= wsk_pmd_deflate(d, "Hello", 5, k == 1, &z) == 0 &&
              (k == 2 ? same(&z, hello1, sizeof hello1) : z.len < 5) &&
              inflate_all(inf, z.p, z.len, 5, &o) == 0 && same(&o, "Hello", 5);
        wsk_dbuf_free(&o);
    }
    CHECK(ok, "context carries over an empty message; reset_after starts afresh");
    wsk_pmd_inflater_free(inf);
    CHECK(wsk_pmd_deflater_messages(d) == 6, "every compressed message is counted");
    wsk_dbuf_free(&z);
    wsk_pmd_deflater_free(d);
}

/* A sequence of messages through one deflater and one inflater. */
static int sequence(int dbits, int mem, int ibits, int reset, const uint8_t *data, size_t *zsum)
{
    static const size_t sizes[] = {0, 1, 5, 300, 300, 5000, 70000, 1000};
    wsk_pmd_deflater *d = wsk_pmd_deflater_new(dbits, mem, WSK_PMD_LEVEL_DEFAULT);
    wsk_pmd_inflater *i = wsk_pmd_inflater_new(ibits, reset);
    int ok = EXPECT(d && i, "new(%d, %d) / new(%d, %d)", dbits, mem, ibits, reset);
    size_t off = 0;
    *zsum = 0;
    for (size_t k = 0; ok && k < sizeof sizes / sizeof sizes[0]; k++) {
        /* The two 300-byte messages are the same bytes. */
        const uint8_t *m = data + (k == 4 ? off - 300 : off);
        wsk_dbuf z, o;
        wsk_dbuf_init(&z, 1 << 20);
        ok = EXPECT(wsk_pmd_deflate(d, m, sizes[k], reset, &z) == 0, "deflate %zu", sizes[k]) &&
             EXPECT(inflate_all(i, z.p, z.len, sizes[k], &o) == 0 && same(&o, m, sizes[k]),
                    "window %d/%d reset %d: message %zu of %zu bytes", dbits, ibits, reset, k,
                    sizes[k]);
        if (k == 4) *zsum = z.len;
        if (k != 4) off += sizes[k];
        wsk_dbuf_free(&z);
        wsk_dbuf_free(&o);
    }
    ok &= EXPECT(!d || wsk_pmd_deflater_messages(d) == sizeof sizes / sizeof sizes[0], "count");
    wsk_pmd_deflater_free(d);
    wsk_pmd_inflater_free(i);
    return ok;
}

static void test_round_trips(void)
{
    static uint8_t data[2][100000];
    fill(data[0], sizeof data[0], 0);
    fill(data[1], sizeof data[1], 1);
    int ok = 1, smaller = 1;
    for (int bits = 8; bits <= 15; bits++)
        for (int reset = 0; reset < 2; reset++)
            for (int rep = 0; rep < 2; rep++) {
                size_t again;
                /* memLevel as the modes use it; 8 is the negotiated window that zlib deflates
                 * with 9 bits, inflated here with a true 256-byte window. */
                int mem = bits <= 9 ? 1 : bits - 7;
                ok &= sequence(bits, mem, bits, reset, data[rep], &again);
                /* A repeated message costs a few bytes when the window holds the first (zlib
                 * reaches back at most window - 262 bytes, so not at 9 bits). */
                if (bits >= 10)
                    smaller &=
                        EXPECT(reset ? again > 100 : again < 20,
                               "window %d reset %d: repeat took %zu bytes", bits, reset, again);
            }
    CHECK(ok, "round trips at windows 8..15, with and without context takeover, random and "
              "repetitive data");
    CHECK(smaller, "context takeover makes a repeated message nearly free, reset does not");

    size_t again;
    CHECK(sequence(WSK_PMD_SHARED_BITS, WSK_PMD_SHARED_MEM, 15, 1, data[1], &again),
          "the shared deflater's parameters");
    CHECK(sequence(10, 3, 15, 0, data[1], &again),
          "a larger inflater window than the deflater's is fine");

    /* 3 MB through 64 KiB pieces. */
    size_t big = 3u << 20;
    uint8_t *m = malloc(big);
    for (size_t k = 0; k < big; k += sizeof data[1])
        memcpy(m + k, data[(k >> 17) & 1], big - k < sizeof data[1] ? big - k : sizeof data[1]);
    wsk_pmd_deflater *d = wsk_pmd_deflater_new(15, 8, WSK_PMD_LEVEL_DEFAULT);
    wsk_pmd_inflater *i = wsk_pmd_inflater_new(15, 0);
    wsk_dbuf z, o;
    wsk_dbuf_init(&z, big * 2);
    wsk_dbuf_init(&o, big);
    ok = wsk_pmd_deflate(d, m, big, 0, &z) == 0;
    for (size_t k = 0; ok && k < z.len; k += 65536)
        ok = wsk_pmd_inflate(i, z.p + k, z.len - k < 65536 ? z.len - k : 65536, k + 65536 >= z.len,
                             &o) == 0;
    CHECK(ok && same(&o, m, big), "3 MiB message inflated in 64 KiB pieces");
    wsk_dbuf_free(&z);
    wsk_dbuf_free(&o);
    wsk_pmd_deflater_free(d);
    wsk_pmd_inflater_free(i);
    free(m);
}

/* Inflates z as chunks ending at the given cut points (ascending, within [0, n]). */
static int pieces(wsk_pmd_inflater *i, const uint8_t *z, size_t n, const size_t *cuts, int ncuts,
                  const char *msg)
{
    wsk_dbuf o;
    wsk_dbuf_init(&o, 1000);
    size_t at = 0;
    int rc = 0;
    for (int k = 0; k < ncuts && rc == 0; k++) {
        rc = wsk_pmd_inflate(i, z + at, cuts[k] - at, 0, &o);
        at = cuts[k];
    }
    if (rc == 0) rc = wsk_pmd_inflate(i, z + at, n - at, 1, &o);
    int ok = rc == 0 && same(&o, msg, strlen(msg));
    wsk_dbuf_free(&o);
    return ok;
}

static void test_fragments(void)
{
    const char *msg = "Hello, hello, hello wonderful world of permessage-deflate, hello!";
    wsk_pmd_deflater *d = wsk_pmd_deflater_new(15, 8, WSK_PMD_LEVEL_DEFAULT);
    wsk_dbuf z1, z2;
    wsk_dbuf_init(&z1, 1000);
    wsk_dbuf_init(&z2, 1000);
    wsk_pmd_deflate(d, msg, strlen(msg), 0, &z1);
    wsk_pmd_deflate(d, msg, strlen(msg), 0, &z2); /* refers to the first */
    wsk_pmd_deflater_free(d);

    int ok = 1;
    wsk_pmd_inflater *i = wsk_pmd_inflater_new(15, 1);
    for (size_t a = 0; a <= z1.len; a++) {
        size_t cut[1] = {a};
        ok &= EXPECT(pieces(i, z1.p, z1.len, cut, 1, msg), "split at %zu", a);
    }
    CHECK(ok, "a %zu-byte message split at every point", z1.len);
    ok = 1;
    for (size_t a = 0; a <= z1.len; a++)
        for (size_t b = a; b <= z1.len; b++) {
            size_t cut[2] = {a, b};
            ok &= EXPECT(pieces(i, z1.p, z1.len, cut, 2, msg), "split at %zu and %zu", a, b);
        }
    CHECK(ok, "split at every pair of points (empty pieces included)");
    size_t bytes[1000];
    for (size_t k = 0; k < z1.len; k++) bytes[k] = k;
    CHECK(pieces(i, z1.p, z1.len, bytes, (int)z1.len, msg), "one byte at a time");
    wsk_pmd_inflater_free(i);

    /* With context takeover each split of the second message relies on the first. */
    ok = 1;
    for (size_t a = 0; a <= z2.len; a++) {
        i = wsk_pmd_inflater_new(15, 0);
        size_t c1[1] = {z1.len / 2}, c2[1] = {a};
        ok &= EXPECT(pieces(i, z1.p, z1.len, c1, 1, msg) && pieces(i, z2.p, z2.len, c2, 1, msg),
                     "second message split at %zu", a);
        wsk_pmd_inflater_free(i);
    }
    CHECK(ok, "the message that refers to the previous one, split at every point");

    i = wsk_pmd_inflater_new(15, 1);
    wsk_dbuf o;
    wsk_dbuf_init(&o, 1000);
    ok = !wsk_pmd_inflater_busy(i) && wsk_pmd_inflate(i, z1.p, 3, 0, &o) == 0 &&
         wsk_pmd_inflater_busy(i) && wsk_pmd_inflate(i, z1.p + 3, z1.len - 3, 1, &o) == 0 &&
         !wsk_pmd_inflater_busy(i);
    CHECK(ok, "busy while a message is open");
    wsk_pmd_inflate(i, z1.p, 3, 0, &o);
    wsk_pmd_inflater_reset(i);
    o.len = 0;
    CHECK(!wsk_pmd_inflater_busy(i) && wsk_pmd_inflate(i, z1.p, z1.len, 1, &o) == 0 &&
              same(&o, msg, strlen(msg)),
          "reset abandons an open message");
    o.len = 0;
    CHECK(wsk_pmd_inflate(i, NULL, 0, 0, &o) == 0 && !wsk_pmd_inflater_busy(i) &&
              wsk_pmd_inflate(i, NULL, 0, 1, &o) == 0 && o.len == 0,
          "empty fragments open nothing");
    wsk_dbuf_free(&o);
    wsk_pmd_inflater_free(i);
    wsk_dbuf_free(&z1);
    wsk_dbuf_free(&z2);
}

static void test_limits(void)
{
    /* 10 MB of zeros: about 10 KB compressed. */
    size_t n = 10u << 20;
    uint8_t *zeros = calloc(1, n);
    wsk_pmd_deflater *d = wsk_pmd_deflater_new(15, 8, WSK_PMD_LEVEL_DEFAULT);
    wsk_dbuf z;
    wsk_dbuf_init(&z, n);
    int rc = wsk_pmd_deflate(d, zeros, n, 1, &z);
    CHECK(rc == 0 && z.len < 12000, "10 MiB of zeros deflate to %zu bytes", z.len);

    wsk_pmd_inflater *i = wsk_pmd_inflater_new(15, 0);
    wsk_dbuf o;
    wsk_dbuf_init(&o, 1u << 20);
    rc = wsk_pmd_inflate(i, z.p, z.len, 1, &o);
    CHECK(rc == WSK_ERR_TOO_BIG && o.len == 1u << 20 && o.cap <= 1u << 20,
          "bomb stopped at the 1 MiB limit (len %zu, allocated %zu)", o.len, o.cap);
    CHECK(wsk_pmd_inflater_memory(i) < 48 * 1024, "inflater holds %zu bytes",
          wsk_pmd_inflater_memory(i));
    CHECK(!wsk_pmd_inflater_busy(i), "an error resets the inflater");
    wsk_dbuf_free(&o);

    /* In 1 KiB chunks, a 64 KiB limit: the first chunk past it fails, nothing more is held. */
    wsk_dbuf_init(&o, 65536);
    rc = 0;
    size_t at = 0;
    for (; rc == 0 && at < z.len; at += 1024)
        rc = wsk_pmd_inflate(i, z.p + at, z.len - at < 1024 ? z.len - at : 1024, 0, &o);
    CHECK(rc == WSK_ERR_TOO_BIG && at == 1024 && o.cap <= 65536,
          "chunked bomb stopped in its first chunk (allocated %zu)", o.cap);
    wsk_dbuf_free(&o);
    wsk_dbuf_free(&z);

    /* Exactly at the limit, and one byte short of it. */
    uint8_t msg[5000];
    fill(msg, sizeof msg, 1);
    wsk_dbuf_init(&z, 1 << 16);
    wsk_pmd_deflate(d, msg, sizeof msg, 1, &z);
    int ok = inflate_all(i, z.p, z.len, sizeof msg, &o) == 0 && same(&o, msg, sizeof msg);
    wsk_dbuf_free(&o);
    CHECK(ok, "a message exactly as large as the limit");
    rc = inflate_all(i, z.p, z.len, sizeof msg - 1, &o);
    CHECK(rc == WSK_ERR_TOO_BIG && o.len == sizeof msg - 1, "one byte over the limit");
    wsk_dbuf_free(&o);
    CHECK(inflate_all(i, z.p, z.len, sizeof msg, &o) == 0 && same(&o, msg, sizeof msg),
          "the inflater works again after an error");
    wsk_dbuf_free(&o);
    wsk_dbuf_free(&z);

    /* The deflater's own limit: out is left as it was and later messages still work. */
    fill(msg, sizeof msg, 0);
    wsk_dbuf_init(&z, 1000);
    wsk_dbuf_append(&z, "abc", 3);
    rc = wsk_pmd_deflate(d, msg, sizeof msg, 0, &z);
    uint64_t count = wsk_pmd_deflater_messages(d);
    CHECK(rc == WSK_ERR_TOO_BIG && z.len == 3, "deflate past out->max fails and leaves out alone");
    z.len = 0;
    ok = wsk_pmd_deflate(d, msg, 500, 0, &z) == 0 && wsk_pmd_deflater_messages(d) == count + 1;
    wsk_pmd_inflater_reset(i);
    ok &= inflate_all(i, z.p, z.len, 500, &o) == 0 && same(&o, msg, 500);
    CHECK(ok, "deflating works after a failure");
    wsk_dbuf_free(&o);
    wsk_dbuf_free(&z);
    wsk_pmd_inflater_free(i);
    wsk_pmd_deflater_free(d);
    free(zeros);
}

static void test_corrupt(void)
{
    static const struct {
        const char *z;
        size_t n;
        const char *what;
    } t[] = {
        {"\xff\xff\xff\xff", 4, "reserved block type"},
        {"\x00\x05\x00\x00\x00hello\x00", 11, "stored block with a bad length check"},
        {"\xf3\x48\xcd\xc9\xc9\x07\x00\x00\x00", 9, "junk after the final empty block"},
        {"\xf2\x48\xcd", 3, "message cut inside a block"},
        {"\xf2\x48\xcd\xc9\xc9\x07", 6, "message cut before its last octet"},
    };
    wsk_pmd_inflater *i = wsk_pmd_inflater_new(15, 0);
    int ok = 1;
    for (size_t k = 0; k < sizeof t / sizeof t[0]; k++) {
        wsk_dbuf o;
        int rc = inflate_all(i, t[k].z, t[k].n, 1000, &o);
        ok &= EXPECT(rc == WSK_ERR_DEFLATE, "%s: %d", t[k].what, rc);
        wsk_dbuf_free(&o);
    }
    CHECK(ok, "corrupt messages give WSK_ERR_DEFLATE");

    /* A peer that uses more window than it announced. */
    uint8_t msg[6000];
    fill(msg, 3000, 0);
    memcpy(msg + 3000, msg, 3000);
    wsk_pmd_deflater *d = wsk_pmd_deflater_new(15, 8, WSK_PMD_LEVEL_DEFAULT);
    wsk_pmd_inflater *small = wsk_pmd_inflater_new(9, 1);
    wsk_dbuf z, o;
    wsk_dbuf_init(&z, 1 << 16);
    wsk_pmd_deflate(d, msg, sizeof msg, 1, &z);
    CHECK(inflate_all(small, z.p, z.len, sizeof msg, &o) == WSK_ERR_DEFLATE,
          "a distance beyond the negotiated window");
    wsk_dbuf_free(&o);
    CHECK(inflate_all(i, z.p, z.len, sizeof msg, &o) == 0 && same(&o, msg, sizeof msg),
          "the inflater recovers from errors");
    wsk_dbuf_free(&o);

    /* Random junk never crashes; a random stream rarely inflates but must not loop. */
    int errors = 0;
    for (int k = 0; k < 2000; k++) {
        uint8_t junk[64];
        fill(junk, sizeof junk, 0);
        wsk_dbuf_init(&o, 4096);
        errors += wsk_pmd_inflate(small, junk, 1 + rnd() % sizeof junk, 1, &o) < 0;
        wsk_dbuf_free(&o);
    }
    CHECK(errors > 1900, "random payloads are refused (%d of 2000)", errors);
    wsk_dbuf_free(&z);
    wsk_pmd_deflater_free(d);
    wsk_pmd_inflater_free(small);
    wsk_pmd_inflater_free(i);
}

/* What we send, decoded by plain zlib; what plain zlib sends, decoded by us. */
static void test_zlib_interop(void)
{
    uint8_t msg[3][4000];
    for (int k = 0; k < 3; k++) fill(msg[k], sizeof msg[k], k != 1);

    wsk_pmd_deflater *d = wsk_pmd_deflater_new(12, 5, WSK_PMD_LEVEL_DEFAULT);
    z_stream inf;
    memset(&inf, 0, sizeof inf);
    int ok = inflateInit2(&inf, -15) == Z_OK;
    for (int k = 0; ok && k < 3; k++) {
        wsk_dbuf z;
        wsk_dbuf_init(&z, 1 << 16);
        ok = wsk_pmd_deflate(d, msg[k], sizeof msg[k], 0, &z) == 0 &&
             wsk_dbuf_append(&z, "\x00\x00\xff\xff", 4) == 0;
        uint8_t out[5000];
        inf.next_in = z.p;
        inf.avail_in = (uInt)z.len;
        inf.next_out = out;
        inf.avail_out = sizeof out;
        int ret = inflate(&inf, Z_SYNC_FLUSH);
        ok &= (ret == Z_OK || ret == Z_BUF_ERROR) && inf.avail_in == 0 &&
              sizeof out - inf.avail_out == sizeof msg[k] && !memcmp(out, msg[k], sizeof msg[k]);
        wsk_dbuf_free(&z);
    }
    inflateEnd(&inf);
    wsk_pmd_deflater_free(d);
    CHECK(ok, "zlib's raw inflate decodes our messages (context taken over)");

    z_stream def;
    memset(&def, 0, sizeof def);
    ok = deflateInit2(&def, 9, Z_DEFLATED, -11, 9, Z_DEFAULT_STRATEGY) == Z_OK;
    wsk_pmd_inflater *i = wsk_pmd_inflater_new(11, 0);
    for (int k = 0; ok && k < 3; k++) {
        uint8_t z[5000];
        def.next_in = msg[k];
        def.avail_in = sizeof msg[k];
        def.next_out = z;
        def.avail_out = sizeof z;
        ok = deflate(&def, Z_SYNC_FLUSH) == Z_OK && def.avail_in == 0;
        size_t zn = sizeof z - def.avail_out - 4;
        wsk_dbuf o;
        ok &= inflate_all(i, z, zn, sizeof msg[k], &o) == 0 && same(&o, msg[k], sizeof msg[k]);
        wsk_dbuf_free(&o);
    }
    deflateEnd(&def);
    wsk_pmd_inflater_free(i);
    CHECK(ok, "we decode zlib's raw deflate at another level, window and memLevel");
}

/* One shared deflater and inflater serve many sockets that take no context over. */
static void test_shared(void)
{
    uint8_t msg[2000];
    fill(msg, sizeof msg, 1);
    wsk_pmd_deflater *shared =
        wsk_pmd_deflater_new(WSK_PMD_SHARED_BITS, WSK_PMD_SHARED_MEM, WSK_PMD_LEVEL_DEFAULT);
    wsk_pmd_inflater *inf = wsk_pmd_inflater_new(WSK_PMD_SHARED_BITS, 1);
    wsk_dbuf first, again;
    wsk_dbuf_init(&first, 1 << 16);
    wsk_dbuf_init(&again, 1 << 16);
    wsk_pmd_deflate(shared, msg, sizeof msg, 1, &first);
    int ok = 1;
    for (int s = 0; s < 10; s++) {
        /* Each peer got the same bytes; a broadcast compresses once and sends them all. */
        wsk_dbuf o;
        ok &=
            inflate_all(inf, first.p, first.len, sizeof msg, &o) == 0 && same(&o, msg, sizeof msg);
        wsk_dbuf_free(&o);
    }
    wsk_pmd_deflate(shared, msg, sizeof msg, 1, &again);
    CHECK(ok && wsk_pmd_deflater_messages(shared) == 2 && again.len == first.len &&
              !memcmp(again.p, first.p, first.len),
          "a reset deflater gives identical bytes every time; the counter shows each compression");

    /* Messages from many peers' own deflaters, one after another, through the one inflater. */
    ok = 1;
    for (int s = 0; s < 8; s++) {
        wsk_pmd_deflater *peer = wsk_pmd_deflater_new(9 + s % 7, 1 + s, WSK_PMD_LEVEL_DEFAULT);
        for (int k = 0; k < 3; k++) {
            wsk_dbuf z, o;
            wsk_dbuf_init(&z, 1 << 16);
            ok &= wsk_pmd_deflate(peer, msg + k * 100, 1000, 1, &z) == 0 &&
                  inflate_all(inf, z.p, z.len, 1000, &o) == 0 && same(&o, msg + k * 100, 1000);
            wsk_dbuf_free(&z);
            wsk_dbuf_free(&o);
        }
        wsk_pmd_deflater_free(peer);
    }
    CHECK(ok, "the shared inflater takes messages from many peers in turn");
    wsk_dbuf_free(&first);
    wsk_dbuf_free(&again);
    wsk_pmd_deflater_free(shared);
    wsk_pmd_inflater_free(inf);
}

static void test_objects(void)
{
    CHECK(!wsk_pmd_deflater_new(7, 1, WSK_PMD_LEVEL_DEFAULT) &&
              !wsk_pmd_deflater_new(16, 8, WSK_PMD_LEVEL_DEFAULT) &&
              !wsk_pmd_deflater_new(15, 0, WSK_PMD_LEVEL_DEFAULT) &&
              !wsk_pmd_deflater_new(15, 10, WSK_PMD_LEVEL_DEFAULT) && !wsk_pmd_inflater_new(7, 0) &&
              !wsk_pmd_inflater_new(16, 0),
          "out-of-range windows and memLevels are refused");
    wsk_pmd_deflater_free(NULL);
    wsk_pmd_inflater_free(NULL);

    /* A mode's deflater holds about what its name says (plus zlib's state, under 8 KiB). */
    int ok = 1;
    for (int m = WSK_COMPRESS_3KB; m <= WSK_COMPRESS_256KB; m++) {
        int w, l;
        wsk_pmd_mode_zlib(m, &w, &l);
        wsk_pmd_deflater *d = wsk_pmd_deflater_new(w, l, WSK_PMD_LEVEL_DEFAULT);
        size_t have = wsk_pmd_deflater_memory(d), name = (1u << (w + 2)) + (1u << (l + 9));
        ok &= EXPECT(have >= name && have <= name + 8192, "%s: %zu bytes", wsk_pmd_mode_name(m),
                     have);
        wsk_pmd_deflater_free(d);
    }
    CHECK(ok, "deflater memory follows the mode (3KB ... 256KB)");

    wsk_pmd_inflater *i = wsk_pmd_inflater_new(9, 0);
    size_t before = wsk_pmd_inflater_memory(i);
    wsk_dbuf o;
    CHECK(inflate_all(i, "\xf2\x48\xcd\xc9\xc9\x07\x00", 7, 10, &o) == 0 &&
              wsk_pmd_inflater_memory(i) <= before + 512 + 64 && before < 8192,
          "a 9-bit inflater holds %zu bytes, then its 512-byte window", before);
    wsk_dbuf_free(&o);
    wsk_pmd_inflater_free(i);
}

/* A scratch buffer reused with a limit under its capacity (the loop's, capped under each
 * message's size): the output stops at the limit, not at the capacity, so a message that does
 * not shrink is found and goes uncompressed. */
static void test_cap_under_capacity(void)
{
    static uint8_t noise[4096];
    fill(noise, sizeof noise, 0);
    wsk_pmd_deflater *d = wsk_pmd_deflater_new(12, 5, WSK_PMD_LEVEL_DEFAULT);
    wsk_dbuf z;
    wsk_dbuf_init(&z, 1 << 20);
    wsk_dbuf_reserve(&z, 2 * sizeof noise);
    z.max = sizeof noise - 1;
    CHECK(d && wsk_pmd_deflate(d, noise, sizeof noise, 1, &z) == WSK_ERR_TOO_BIG && z.len == 0,
          "random bytes stop at the limit (%zu of capacity %zu)", z.len, z.cap);
    wsk_dbuf_free(&z);
    wsk_pmd_deflater_free(d);
}

int main(void)
{
    test_cap_under_capacity();
    test_rfc_examples();
    test_round_trips();
    test_fragments();
    test_limits();
    test_corrupt();
    test_zlib_interop();
    test_shared();
    test_objects();
    return TEST_DONE();
}
