/* wsk_mask against a plain byte loop: every length, alignment and key offset, big buffers, and
 * payloads unmasked in random pieces; wsk_mask_copy against wsk_mask in place; wsk_unmask_ascii
 * says ASCII exactly when no unmasked byte has its top bit, wherever the one such byte lies
 * (vector blocks, words, the 4-byte step, the tail bytes). */
#include "mask.h"
#include "test.h"

#include <stdint.h>

static uint64_t rnd(uint64_t *s)
{
    /* xorshift64*: reproducible data without libc's rand state. */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static void fill_random(uint8_t *p, size_t n, uint64_t *s)
{
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(rnd(s) >> 56);
}

static void naive(uint8_t *p, size_t n, const uint8_t key[4], size_t offset)
{
    for (size_t i = 0; i < n; i++) p[i] ^= key[(offset + i) & 3];
}

/* `test_mask --bench`: GB/s of unmasking in place at 1 KiB to 1 MiB (best of 5 rounds of 256 MiB,
 * CPU time of this thread), for the comment in mask.c. */
static void bench(void)
{
    static const size_t sizes[] = {1024, 16384, 65536, 1 << 20};
    const uint8_t key[4] = {1, 2, 3, 4};
    for (size_t z = 0; z < 4; z++) {
        size_t n = sizes[z], reps = ((size_t)256 << 20) / n;
        uint8_t *p = calloc(1, n + 1);
        double best = 1e9;
        for (int round = 0; round < 5; round++) {
            struct timespec t0, t1;
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
            for (size_t i = 0; i < reps; i++) wsk_mask(p + 1, n, key, i);
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
            double t = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
            if (t < best) best = t;
        }
        printf("bench_mask size=%zu %.1f GB/s\n", n, (double)n * (double)reps / best / 1e9);
        free(p);
    }
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--bench")) {
        bench();
        return 0;
    }
    uint64_t seed = 0x9E3779B97F4A7C15ull;
    enum { BIG = 1 << 20 };
    /* 16-aligned, so "alignment" below is the real address modulo 16. */
    static _Alignas(16) uint8_t a[BIG + 64], b[BIG + 64];
    uint8_t key[4];

    /* Every length 0..300 at every alignment 0..15 and key offset 0..7 (offsets >= 4 wrap). */
    int bad = 0, bad_ret = 0;
    for (size_t len = 0; len <= 300; len++) {
        for (size_t align = 0; align < 16; align++) {
            for (size_t off = 0; off < 8; off++) {
                fill_random(key, 4, &seed);
                fill_random(a, 340, &seed);
                memcpy(b, a, 340);
                size_t r = wsk_mask(a + align, len, key, off);
                naive(b + align, len, key, off);
                /* Comparing all 340 bytes also proves nothing outside the range changed. */
                bad += !EXPECT(!memcmp(a, b, 340), "len %zu align %zu off %zu", len, align, off);
                bad_ret += !EXPECT(r == ((off + len) & 3), "len %zu off %zu: ret %zu", len, off, r);
            }
        }
    }
    CHECK(bad == 0, "every length 0..300 x alignment 0..15 x offset 0..7 matches a byte loop");
    CHECK(bad_ret == 0, "returns (offset + n) & 3");

    /* Lengths where the widest blocks (128 bytes with AVX-512) leave a 64-byte block, words and
     * tail bytes, and where they end exactly. */
    static const size_t wide[] = {319, 320, 383, 384, 447, 448, 449, 511, 512, 575};
    bad = 0;
    for (size_t li = 0; li < sizeof wide / sizeof wide[0]; li++)
        for (size_t align = 0; align < 16; align++)
            for (size_t off = 0; off < 8; off++) {
                size_t len = wide[li];
                fill_random(key, 4, &seed);
                fill_random(a, 640, &seed);
                memcpy(b, a, 640);
                size_t r = wsk_mask(a + align, len, key, off);
                naive(b + align, len, key, off);
                bad += !EXPECT(!memcmp(a, b, 640) && r == ((off + len) & 3),
                               "len %zu align %zu "
                               "off %zu",
                               len, align, off);
            }
    CHECK(bad == 0, "lengths 319..575 around the 128- and 64-byte blocks match a byte loop");

    /* Known answer (RFC 6455 5.7: "Hello" masked with 37 fa 21 3d). */
    uint8_t hello[] = {'H', 'e', 'l', 'l', 'o'};
    const uint8_t k57[4] = {0x37, 0xfa, 0x21, 0x3d};
    const uint8_t want57[] = {0x7f, 0x9f, 0x4d, 0x51, 0x58};
    CHECK(wsk_mask(hello, 5, k57, 0) == 1 && !memcmp(hello, want57, 5), "RFC 6455 5.7 example");
    CHECK(wsk_mask(hello, 5, k57, 0) == 1 && !memcmp(hello, "Hello", 5), "masking twice restores");
    CHECK(wsk_mask(NULL, 0, k57, 2) == 2, "n = 0 touches nothing and keeps the offset");

    /* Large buffers at a few alignments and offsets. */
    bad = 0;
    for (size_t align = 0; align < 8; align += 3) {
        for (size_t off = 0; off < 4; off++) {
            size_t len = BIG - align * 7 - off;
            fill_random(key, 4, &seed);
            fill_random(a, BIG + 64, &seed);
            memcpy(b, a, BIG + 64);
            size_t r = wsk_mask(a + align, len, key, off);
            naive(b + align, len, key, off);
            bad += !EXPECT(!memcmp(a, b, BIG + 64) && r == ((off + len) & 3), "big %zu", len);
        }
    }
    CHECK(bad == 0, "1 MiB buffers match a byte loop");

    /* A payload unmasked in random pieces, as it arrives from several reads. */
    bad = 0;
    for (int round = 0; round < 200; round++) {
        size_t len = (size_t)(rnd(&seed) % 5000);
        fill_random(key, 4, &seed);
        fill_random(a, len, &seed);
        memcpy(b, a, len);
        naive(b, len, key, 0);
        size_t pos = 0, off = 0;
        while (pos < len) {
            size_t piece = (size_t)(rnd(&seed) % (round & 1 ? 9 : 700)) + (round & 2 ? 0 : 1);
            if (piece > len - pos) piece = len - pos;
            off = wsk_mask(a + pos, piece, key, off);
            pos += piece;
        }
        bad += !EXPECT(!memcmp(a, b, len) && off == (len & 3), "round %d len %zu", round, len);
    }
    CHECK(bad == 0, "payloads unmasked in random pieces (including empty ones) match");

    /* Copy and mask: every length 0..300, source and destination at every alignment 0..15 and
     * key offset 0..3; the source stays, the bytes around the destination too. */
    bad = 0;
    static _Alignas(16) uint8_t src[340];
    for (size_t len = 0; len <= 300; len++)
        for (size_t sa = 0; sa < 16; sa++)
            for (size_t da = 0; da < 16; da += 1 + (len > 40) * 4)
                for (size_t off = 0; off < 4; off++) {
                    fill_random(key, 4, &seed);
                    fill_random(src, 340, &seed);
                    fill_random(a, 340, &seed);
                    memcpy(b, a, 340);
                    memcpy(b + da, src + sa, len);
                    naive(b + da, len, key, off);
                    uint8_t before[340];
                    memcpy(before, src, 340);
                    size_t r = wsk_mask_copy(a + da, src + sa, len, key, off);
                    bad += !EXPECT(!memcmp(a, b, 340) && !memcmp(src, before, 340) &&
                                       r == ((off + len) & 3),
                                   "copy len %zu src %zu dst %zu off %zu", len, sa, da, off);
                }
    CHECK(bad == 0, "wsk_mask_copy matches a copy then a byte loop, source untouched");

    /* ASCII text masked with a key that has every top bit set, so that only unmasking clears
     * them; then one byte at each position (and only there) unmasks to a non-ASCII byte. */
    bad = 0;
    static const uint8_t hikey[4] = {0x80, 0x81, 0xC2, 0xFF};
    static uint8_t plain[1100], buf[1100];
    for (size_t i = 0; i < sizeof plain; i++) plain[i] = (uint8_t)(rnd(&seed) & 0x7F);
    static const size_t lens[] = {0, 1, 3, 4, 7, 8, 63, 64, 65, 255, 256, 300, 383, 1100};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        size_t len = lens[li];
        for (size_t off = 0; off < 4; off++)
            for (size_t at = 0; at <= len; at++) {
                memcpy(buf, plain, len);
                if (at < len) buf[at] |= 0x80; /* at == len: all ASCII */
                naive(buf, len, hikey, off);
                int ascii = -1;
                size_t r = wsk_unmask_ascii(buf, len, hikey, off, &ascii);
                int ok = r == ((off + len) & 3) && ascii == (at == len) &&
                         (at == len || buf[at] == (plain[at] | 0x80));
                for (size_t i = 0; ok && i < len; i++)
                    ok = buf[i] == (i == at ? plain[i] | 0x80 : plain[i]);
                bad += !EXPECT(ok, "ascii len %zu off %zu byte %zu: %d", len, off, at, ascii);
            }
    }
    CHECK(bad == 0, "wsk_unmask_ascii unmasks and says ASCII exactly when no byte is 0x80 or "
                    "above (lengths 0..1100, a non-ASCII byte at each place)");

    return TEST_DONE();
}
