/* wsk_utf8_validate: a table of sequences checked at every prefix and split, ASCII runs around
 * them, random valid text from an encoder, and random bytes against a slow reference. */
#include "parse_utf8.h"
#include "test.h"
#include "wskit.h"

#include <stdint.h>

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

/* Reference: decodes one character at a time and, after each byte, asks whether any completion
 * of the character so far could still be a valid scalar value in its shortest form.  Returns
 * the index of the first byte after which p is no longer a prefix of UTF-8 (RFC 3629), or -1
 * with *complete telling whether p ends between characters. */
static long ref_first_bad(const uint8_t *p, size_t n, int *complete)
{
    size_t i = 0;
    *complete = 0;
    while (i < n) {
        unsigned b = p[i];
        size_t len;
        uint32_t cp, min;
        if (b < 0x80) {
            i++;
            continue;
        } else if ((b & 0xE0) == 0xC0) {
            len = 2, cp = b & 0x1F, min = 0x80;
        } else if ((b & 0xF0) == 0xE0) {
            len = 3, cp = b & 0x0F, min = 0x800;
        } else if ((b & 0xF8) == 0xF0) {
            len = 4, cp = b & 0x07, min = 0x10000;
        } else {
            return (long)i;
        }
        for (size_t k = 0; k < len; k++) {
            if (k > 0) {
                if (i + k >= n) return -1;
                if ((p[i + k] & 0xC0) != 0x80) return (long)(i + k);
                cp = cp << 6 | (p[i + k] & 0x3F);
            }
            unsigned rest = (unsigned)(len - 1 - k) * 6;
            uint32_t lo = cp << rest, hi = lo | ((1u << rest) - 1);
            if (hi < min || lo > 0x10FFFF || (lo >= 0xD800 && hi <= 0xDFFF)) return (long)(i + k);
        }
        i += len;
    }
    *complete = 1;
    return -1;
}

/* Encodes code point c (not a surrogate, <= 0x10FFFF); returns its length. */
static size_t encode(uint8_t *o, uint32_t c)
{
    if (c < 0x80) {
        o[0] = (uint8_t)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (uint8_t)(0xC0 | c >> 6);
        o[1] = (uint8_t)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (uint8_t)(0xE0 | c >> 12);
        o[1] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
        o[2] = (uint8_t)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | c >> 18);
    o[1] = (uint8_t)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
    o[3] = (uint8_t)(0x80 | (c & 0x3F));
    return 4;
}

/* Result of validating p[0..n) in one call from a fresh state: -1 error, 0 incomplete, 1 ok. */
static int whole(const uint8_t *p, size_t n)
{
    uint32_t st = WSK_UTF8_ACCEPT;
    if (wsk_utf8_validate(&st, p, n) < 0) return -1;
    return st == WSK_UTF8_ACCEPT;
}

/* wsk_utf8_valid_prefix the slow way: one byte at a time, remembering where the last whole
 * character ended before the first refusal. */
static size_t prefix_ref(const uint8_t *p, size_t n)
{
    uint32_t st = WSK_UTF8_ACCEPT;
    size_t end = 0;
    for (size_t i = 0; i < n && wsk_utf8_validate(&st, p + i, 1) == 0; i++)
        if (st == WSK_UTF8_ACCEPT) end = i + 1;
    return end;
}

/* The public whole-buffer forms agree with the incremental validator. */
static int check_public(const uint8_t *p, size_t n, int verdict, const char *what)
{
    int ok = EXPECT(wsk_utf8_valid(p, n) == (verdict == 1), "%s: wsk_utf8_valid", what);
    ok &= EXPECT(wsk_utf8_valid_prefix(p, n) == prefix_ref(p, n), "%s: prefix %zu, want %zu", what,
                 wsk_utf8_valid_prefix(p, n), prefix_ref(p, n));
    return ok;
}

/* Checks p[0..n) whose first invalid byte is `bad` (-1: none) and which ends between characters
 * when `complete`: every prefix fails exactly when it includes byte `bad`; split in two at every
 * position and fed one byte at a time it gives the same answer as in one call. */
static int check_seq(const uint8_t *p, size_t n, long bad, int complete, const char *what)
{
    int ok = 1;
    int want = bad >= 0 ? -1 : complete;
    for (size_t k = 0; k <= n; k++) {
        int r = whole(p, k);
        int pre = bad >= 0 && (long)k > bad ? -1 : 0;
        ok &= EXPECT(pre < 0 ? r == -1 : r >= 0, "%s: prefix %zu gives %d", what, k, r);
    }
    ok &= EXPECT(whole(p, n) == want, "%s: whole gives %d, want %d", what, whole(p, n), want);
    for (size_t j = 0; j <= n; j++) {
        uint32_t st = WSK_UTF8_ACCEPT;
        int r1 = wsk_utf8_validate(&st, p, j);
        int r2 = wsk_utf8_validate(&st, p + j, n - j);
        int r = r1 < 0 || r2 < 0 ? -1 : st == WSK_UTF8_ACCEPT;
        ok &= EXPECT(r == want, "%s: split at %zu gives %d", what, j, r);
        ok &= EXPECT(r1 == 0 || (bad >= 0 && (long)j > bad), "%s: split %zu failed early", what, j);
    }
    uint32_t st = WSK_UTF8_ACCEPT;
    long first = -1;
    for (size_t i = 0; i < n && first < 0; i++)
        if (wsk_utf8_validate(&st, p + i, 1) < 0) first = (long)i;
    ok &= EXPECT(first == bad, "%s: byte-wise fails at %ld, want %ld", what, first, bad);
    ok &= check_public(p, n, want, what);
    return ok;
}

struct seq {
    const char *s;
    long bad;     /* index of the first invalid byte, -1 if none */
    int complete; /* 1 when it ends between characters */
};

static const struct seq table[] = {
    /* Valid, at every length and range boundary. */
    {"", -1, 1},
    {"a", -1, 1},
    {"\x7F", -1, 1},                                         /* U+007F */
    {"\xC2\x80", -1, 1},                                     /* U+0080 */
    {"\xDF\xBF", -1, 1},                                     /* U+07FF */
    {"\xE0\xA0\x80", -1, 1},                                 /* U+0800 */
    {"\xED\x9F\xBF", -1, 1},                                 /* U+D7FF */
    {"\xEE\x80\x80", -1, 1},                                 /* U+E000 */
    {"\xEF\xBF\xBD", -1, 1},                                 /* U+FFFD */
    {"\xEF\xBF\xBF", -1, 1},                                 /* U+FFFF */
    {"\xF0\x90\x80\x80", -1, 1},                             /* U+10000 */
    {"\xF4\x8F\xBF\xBF", -1, 1},                             /* U+10FFFF */
    {"\xF3\xBF\xBF\xBF", -1, 1},                             /* U+FFFFF */
    {"\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5", -1, 1}, /* "kosme" in Greek */
    {"\xEF\xBB\xBF", -1, 1},                                 /* BOM */
    /* Truncated: still a prefix of valid UTF-8, but not complete. */
    {"\xC2", -1, 0},
    {"\xE0", -1, 0},
    {"\xE0\xA0", -1, 0},
    {"\xED\x9F", -1, 0},
    {"\xF0\x90\x80", -1, 0},
    {"\xF4\x8F\xBF", -1, 0},
    {"a\xF1", -1, 0},
    /* Overlong forms of every length. */
    {"\xC0\x80", 0, 0},     /* U+0000 in 2 bytes */
    {"\xC1\xBF", 0, 0},     /* U+007F in 2 bytes */
    {"\xE0\x80\x80", 1, 0}, /* U+0000 in 3 bytes */
    {"\xE0\x80", 1, 0},
    {"\xE0\x9F\xBF", 1, 0},             /* U+07FF in 3 bytes */
    {"\xF0\x80\x80\x80", 1, 0},         /* U+0000 in 4 bytes */
    {"\xF0\x8F\xBF\xBF", 1, 0},         /* U+FFFF in 4 bytes */
    {"\xF8\x88\x80\x80\x80", 0, 0},     /* 5-byte form */
    {"\xFC\x84\x80\x80\x80\x80", 0, 0}, /* 6-byte form */
    /* Surrogates, at each edge, and a CESU-8 pair. */
    {"\xED\xA0\x80", 1, 0}, /* U+D800 */
    {"\xED\xA0", 1, 0},
    {"\xED\xAF\xBF", 1, 0}, /* U+DBFF */
    {"\xED\xB0\x80", 1, 0}, /* U+DC00 */
    {"\xED\xBF\xBF", 1, 0}, /* U+DFFF */
    {"\xED\xA0\xBD\xED\xB2\xA9", 1, 0},
    /* Above U+10FFFF. */
    {"\xF4\x90\x80\x80", 1, 0}, /* U+110000 */
    {"\xF4\x90", 1, 0},
    {"\xF4\xBF\xBF\xBF", 1, 0},
    {"\xF5\x80\x80\x80", 0, 0},
    {"\xF7\xBF\xBF\xBF", 0, 0},
    /* Bytes that never occur. */
    {"\xFE", 0, 0},
    {"\xFF", 0, 0},
    {"ab\xFE\xFF", 2, 0},
    /* Stray and missing continuation bytes. */
    {"\x80", 0, 0},
    {"\xBF", 0, 0},
    {"a\x80", 1, 0},
    {"\xC2\x80\x80", 2, 0},
    {"\xC2\x41", 1, 0},
    {"\xC2\xC2\x80", 1, 0},
    {"\xE1\x80\x41", 2, 0},
    {"\xE1\x80\xE1\x80\x80", 2, 0},
    {"\xF1\x80\x80\x41", 3, 0},
    {"\xF1\x80\x80\xF0\x90\x80\x80", 3, 0},
    {"\xDF\xBF\xBF", 2, 0},
    {"\xEF\xBF\xBF\x80", 3, 0},
    {"\xF4\x8F\xBF\xBF\x80", 4, 0},
};

static void sequences(void)
{
    int bad = 0, ref_bad = 0, padded_bad = 0;
    size_t count = sizeof table / sizeof table[0];
    for (size_t i = 0; i < count; i++) {
        const uint8_t *p = (const uint8_t *)table[i].s;
        size_t n = strlen(table[i].s);
        int complete;
        long r = ref_first_bad(p, n, &complete);
        /* The table and the reference must agree, or one of them is wrong. */
        ref_bad += !EXPECT(r == table[i].bad && (r >= 0 || complete == table[i].complete),
                           "table %zu: reference says %ld", i, r);
        bad += !check_seq(p, n, table[i].bad, table[i].complete, table[i].s);

        /* The same sequence inside ASCII runs of every length up to 40 on each side: moves it
         * across the 8- and 16-byte steps of the ASCII fast path. */
        for (size_t pre = 0; pre <= 40; pre++) {
            uint8_t buf[128];
            size_t post = (pre * 7) % 41;
            memset(buf, 'x', pre);
            memcpy(buf + pre, p, n);
            memset(buf + pre + n, 'y', post);
            size_t m = pre + n + post;
            long want = table[i].bad >= 0 ? table[i].bad + (long)pre : -1;
            /* A truncated sequence followed by ASCII becomes invalid at the first 'y'. */
            if (want < 0 && !table[i].complete && post) want = (long)(pre + n);
            padded_bad += !check_seq(buf, m, want, table[i].complete, table[i].s);
        }
    }
    CHECK(ref_bad == 0, "the reference decoder agrees with the table (%zu sequences)", count);
    CHECK(bad == 0, "table: every prefix, every split, byte-wise: fails exactly at the bad byte; "
                    "wsk_utf8_valid and wsk_utf8_valid_prefix agree");
    CHECK(padded_bad == 0, "table inside ASCII runs of 0..40 bytes");
}

static void fast_path(void)
{
    uint8_t buf[200];
    int bad = 0;
    /* One bad byte at every position of a long ASCII buffer. */
    for (size_t pos = 0; pos < sizeof buf; pos++) {
        memset(buf, 'a', sizeof buf);
        buf[pos] = 0x80 | (uint8_t)(pos & 0x3F);
        uint32_t st = WSK_UTF8_ACCEPT;
        int r1 = wsk_utf8_validate(&st, buf, pos);
        int r2 = wsk_utf8_validate(&st, buf + pos, 1);
        bad += !EXPECT(r1 == 0 && r2 == WSK_ERR_UTF8 && whole(buf, sizeof buf) == -1,
                       "stray byte at %zu", pos);
    }
    CHECK(bad == 0, "a stray continuation byte at every position of 200 ASCII bytes");

    /* A 4-byte character at every position: valid whole and split across the fast path. */
    bad = 0;
    for (size_t pos = 0; pos + 4 <= sizeof buf; pos++) {
        memset(buf, 'a', sizeof buf);
        memcpy(buf + pos, "\xF0\x9F\x98\x80", 4);
        bad += !EXPECT(whole(buf, sizeof buf) == 1, "U+1F600 at %zu", pos);
        uint32_t st = WSK_UTF8_ACCEPT;
        int r = wsk_utf8_validate(&st, buf, pos + 2);
        bad += !EXPECT(r == 0 && st != WSK_UTF8_ACCEPT, "half of U+1F600 at %zu", pos);
        r = wsk_utf8_validate(&st, buf + pos + 2, sizeof buf - pos - 2);
        bad += !EXPECT(r == 0 && st == WSK_UTF8_ACCEPT, "rest of U+1F600 at %zu", pos);
    }
    CHECK(bad == 0, "a 4-byte character at every position, whole and split inside it");

    /* All 128 ASCII values, including NUL and DEL. */
    for (int i = 0; i < 128; i++) buf[i] = (uint8_t)i;
    CHECK(whole(buf, 128) == 1, "every ASCII byte");
}

static void sticky(void)
{
    uint32_t st = WSK_UTF8_ACCEPT;
    int r1 = wsk_utf8_validate(&st, (const uint8_t *)"\xFF", 1);
    int r2 = wsk_utf8_validate(&st, (const uint8_t *)"abc", 3);
    int r3 = wsk_utf8_validate(&st, NULL, 0);
    CHECK(r1 == WSK_ERR_UTF8 && r2 == WSK_ERR_UTF8 && r3 == WSK_ERR_UTF8 && st != WSK_UTF8_ACCEPT,
          "after an error later calls keep failing");
    st = WSK_UTF8_ACCEPT;
    CHECK(wsk_utf8_validate(&st, NULL, 0) == 0 && st == WSK_UTF8_ACCEPT, "n = 0 from ACCEPT");
    st = 0xFFFFFFFF;
    CHECK(wsk_utf8_validate(&st, (const uint8_t *)"a", 1) == WSK_ERR_UTF8,
          "a state it never produced is refused");
}

static void random_valid(void)
{
    uint64_t seed = 7;
    static uint8_t buf[1 << 16];
    int bad = 0;
    for (int round = 0; round < 300; round++) {
        size_t n = 0, chars = (size_t)(rnd(&seed) % 3000);
        int mix = round % 4; /* 0: all ranges, 1: mostly ASCII, 2: 2-3 bytes, 3: astral */
        for (size_t i = 0; i < chars; i++) {
            uint64_t r = rnd(&seed);
            uint32_t c;
            unsigned kind = mix == 1   ? (r % 16 ? 0 : 1 + (r >> 4) % 3)
                            : mix == 2 ? 1 + r % 2
                            : mix == 3 ? 3
                                       : r % 4;
            r >>= 8;
            if (kind == 0)
                c = (uint32_t)(r % 0x80);
            else if (kind == 1)
                c = 0x80 + (uint32_t)(r % (0x800 - 0x80));
            else if (kind == 2)
                c = 0x800 + (uint32_t)(r % (0x10000 - 0x800 - 0x800));
            else
                c = 0x10000 + (uint32_t)(r % 0x100000);
            if (kind == 2 && c >= 0xD800) c += 0x800; /* skip the surrogates */
            n += encode(buf + n, c);
        }
        bad += !EXPECT(whole(buf, n) == 1, "round %d: %zu bytes", round, n);
        /* In random pieces. */
        uint32_t st = WSK_UTF8_ACCEPT;
        int r = 0;
        for (size_t pos = 0; pos < n && r == 0;) {
            size_t piece = 1 + (size_t)(rnd(&seed) % (round & 1 ? 5 : 300));
            if (piece > n - pos) piece = n - pos;
            r = wsk_utf8_validate(&st, buf + pos, piece);
            pos += piece;
        }
        bad += !EXPECT(r == 0 && st == WSK_UTF8_ACCEPT, "round %d in pieces", round);
    }
    CHECK(bad == 0, "random valid text from an encoder, whole and in random pieces");
}

static void random_bytes(void)
{
    uint64_t seed = 99;
    static const uint8_t interesting[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF,
                                          0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1, 0xEC, 0xED, 0xEE,
                                          0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xF8, 0xFE, 0xFF};
    int bad = 0, valid = 0, invalid = 0;
    for (int round = 0; round < 200000; round++) {
        uint8_t buf[40];
        size_t n = (size_t)(rnd(&seed) % sizeof buf);
        for (size_t i = 0; i < n; i++) {
            uint64_t r = rnd(&seed);
            /* Mostly continuation bytes, so that long valid runs happen too. */
            if (r % 3 == 0)
                buf[i] = interesting[(r >> 8) % sizeof interesting];
            else if (r % 3 == 1)
                buf[i] = (uint8_t)(0x80 | ((r >> 8) & 0x3F));
            else
                buf[i] = (uint8_t)(r >> 8);
        }
        int complete;
        long want = ref_first_bad(buf, n, &complete);
        int got = whole(buf, n);
        int ok =
            EXPECT(got == (want >= 0 ? -1 : complete), "round %d: %d vs ref %ld", round, got, want);
        if (want >= 0) {
            ok &= EXPECT(whole(buf, (size_t)want) >= 0 && whole(buf, (size_t)want + 1) == -1,
                         "round %d: first bad byte %ld", round, want);
            invalid++;
        } else {
            valid++;
        }
        /* Split at a random point. */
        size_t j = n ? (size_t)(rnd(&seed) % (n + 1)) : 0;
        uint32_t st = WSK_UTF8_ACCEPT;
        int r = wsk_utf8_validate(&st, buf, j);
        if (r == 0) r = wsk_utf8_validate(&st, buf + j, n - j);
        ok &= EXPECT((r < 0 ? -1 : st == WSK_UTF8_ACCEPT) == got, "round %d split %zu", round, j);
        ok &= check_public(buf, n, got, "random");
        bad += !ok;
        if (bad > 5) break;
    }
    CHECK(bad == 0 && valid > 1000 && invalid > 1000,
          "random bytes agree with the reference decoder (%d valid, %d invalid)", valid, invalid);
}

/* Every string of 1 to 3 bytes, and every 4-byte string whose last two bytes come from the
 * values where the grammar changes: the verdict (invalid, incomplete, complete) matches the
 * reference.  Together with the shorter strings this pins the failing byte as well. */
static void exhaustive(void)
{
    static const uint8_t edge[] = {0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF,
                                   0xC0, 0xC2, 0xDF, 0xE0, 0xED, 0xF0, 0xF4, 0xFF};
    long bad = 0, count = 0;
    for (uint32_t v = 0; v < (1u << 24) + (1u << 16) + (1u << 8); v++) {
        uint8_t b[3];
        size_t n = v < 256 ? 1 : v < 256 + 65536 ? 2 : 3;
        uint32_t x = n == 1 ? v : n == 2 ? v - 256 : v - 256 - 65536;
        for (size_t i = 0; i < n; i++) b[i] = (uint8_t)(x >> (8 * i));
        int complete;
        long ref = ref_first_bad(b, n, &complete);
        bad += !EXPECT(whole(b, n) == (ref >= 0 ? -1 : complete), "%zu bytes %06x", n, x);
        count++;
        if (bad > 5) break;
    }
    for (uint32_t v = 0; v < (1u << 16) * 256; v++) {
        uint8_t b[4] = {(uint8_t)(v >> 16), (uint8_t)(v >> 8), edge[(v >> 4) & 15], edge[v & 15]};
        int complete;
        long ref = ref_first_bad(b, 4, &complete);
        bad += !EXPECT(whole(b, 4) == (ref >= 0 ? -1 : complete), "4 bytes %08x", v);
        count++;
        if (bad > 5) break;
    }
    CHECK(bad == 0, "exhaustive: %ld short strings match the reference", count);
}

/* The chunk checkers this CPU has, each with its name (NULL: the SSE2 ASCII skip alone). */
struct checker {
    const char *name;
    wsk_utf8_chunks_fn *fn;
};

static size_t checkers(struct checker *out)
{
    size_t k = 0;
    out[k++] = (struct checker){"sse2", NULL};
    if (wsk_utf8_chunks(WSK_UTF8_SSSE3))
        out[k++] = (struct checker){"ssse3", wsk_utf8_chunks(WSK_UTF8_SSSE3)};
    if (wsk_utf8_chunks(WSK_UTF8_AVX2))
        out[k++] = (struct checker){"avx2", wsk_utf8_chunks(WSK_UTF8_AVX2)};
    if (wsk_utf8_chunks(WSK_UTF8_AVX512))
        out[k++] = (struct checker){"avx512", wsk_utf8_chunks(WSK_UTF8_AVX512)};
    return k;
}

/* A checker and the portable automaton over p[0..n) in the same random pieces (one piece
 * mostly, so that the vector path sees long inputs): 1 when every call agrees on the result and
 * the state, and wsk_utf8_validate itself agrees on the whole. */
static int same_verdicts(const uint8_t *p, size_t n, wsk_utf8_chunks_fn *fn, uint64_t *seed)
{
    uint32_t sf = WSK_UTF8_ACCEPT, sp = WSK_UTF8_ACCEPT, sd = WSK_UTF8_ACCEPT;
    for (size_t at = 0; at < n;) {
        size_t k = rnd(seed) % 4 ? n - at : 1 + rnd(seed) % (n - at);
        int rf = wsk_utf8_validate_with(&sf, p + at, k, fn);
        int rp = wsk_utf8_validate_portable(&sp, p + at, k);
        if (rf != rp || sf != sp) return 0;
        at += k;
    }
    int rd = wsk_utf8_validate(&sd, p, n);
    uint32_t sp1 = WSK_UTF8_ACCEPT;
    int rp1 = wsk_utf8_validate_portable(&sp1, p, n);
    return rd == rp1 && sd == sp1;
}

/* Sequences to plant in text: valid ones, every truncation of 2- to 4-byte characters,
 * overlongs, surrogates, code points above U+10FFFF and bytes that never occur. */
static const struct {
    const char *b;
    size_t n;
} odd[] = {
    {"\xC3\xA9", 2},
    {"\xE2\x82\xAC", 3},
    {"\xF0\x9F\x98\x80", 4}, /* valid */
    {"\xDF\xBF", 2},
    {"\xED\x9F\xBF", 3},
    {"\xEE\x80\x80", 3},
    {"\xF4\x8F\xBF\xBF", 4},
    {"\xF0\x90\x80\x80", 4},
    {"\xE0\xA0\x80", 3},
    {"\xC3", 1},
    {"\xE2", 1},
    {"\xE2\x82", 2}, /* truncated */
    {"\xF0", 1},
    {"\xF0\x9F", 2},
    {"\xF0\x9F\x98", 3},
    {"\xC0\xAF", 2},
    {"\xC1\xBF", 2},
    {"\xE0\x80\xAF", 3}, /* overlong */
    {"\xE0\x9F\xBF", 3},
    {"\xF0\x80\x80\xAF", 4},
    {"\xF0\x8F\xBF\xBF", 4},
    {"\xED\xA0\x80", 3},
    {"\xED\xBF\xBF", 3},
    {"\xED\xA0\xBD\xED\xB2\xA9", 6}, /* surrogates */
    {"\xF4\x90\x80\x80", 4},
    {"\xF5\x80\x80\x80", 4},
    {"\xF7\xBF\xBF\xBF", 4}, /* too large */
    {"\x80", 1},
    {"\xBF", 1},
    {"\xFE", 1}, /* never occur, stray */
    {"\xFF", 1},
    {"\xC2\x80\x80", 3},
    {"\xF8\x88\x80\x80\x80", 5},
};
#define NODD (sizeof odd / sizeof odd[0])

/* Random text: ASCII with `high` of 1024 bytes starting a sequence from odd[] (valid ones only
 * when `valid`) or, now and then, a random byte from 80..FF. */
static void fill(uint8_t *p, size_t len, unsigned high, int valid, uint64_t *seed)
{
    for (size_t i = 0; i < len;) {
        if (rnd(seed) % 1024 >= high) {
            p[i++] = (uint8_t)(rnd(seed) % 128);
        } else if (!valid && rnd(seed) % 8 == 0) {
            p[i++] = (uint8_t)(0x80 + rnd(seed) % 128);
        } else {
            size_t k = rnd(seed) % (valid ? 9 : NODD);
            for (size_t j = 0; j < odd[k].n && i < len; j++) p[i++] = (uint8_t)odd[k].b[j];
        }
    }
}

/* The vector paths (SSSE3, AVX2, and the SSE2 ASCII skip alone) against the portable
 * automaton: text of every length 0..200 at every alignment to 32, ASCII or valid non-ASCII, with
 * each sequence of odd[] planted at a random position; each sequence at every position of
 * 130-byte text; then random mixtures from all-ASCII to no ASCII, up to 4 KiB.  Whole and in
 * random pieces, result and state. */
static void fast_vs_portable(void)
{
    static uint8_t buf[4096 + 64];
    static const unsigned high_per_1024[] = {0, 1, 10, 100, 340, 512, 1024};
    struct checker ck[4];
    size_t nck = checkers(ck);
    uint64_t seed = 42;
    for (size_t c = 0; c < nck; c++) {
        long cases = 0, bad = 0;
        for (size_t len = 0; len <= 200 && bad < 5; len++)
            for (size_t align = 0; align < 32; align++)
                for (size_t o = 0; o < NODD; o++) {
                    uint8_t *p = buf + align;
                    fill(p, len, o % 2 ? 0 : 400, 1, &seed);
                    size_t at = len >= odd[o].n ? rnd(&seed) % (len - odd[o].n + 1) : 0;
                    memcpy(p + at, odd[o].b, len >= odd[o].n ? odd[o].n : len);
                    bad +=
                        !EXPECT(same_verdicts(p, len, ck[c].fn, &seed),
                                "%s: len %zu align %zu, %zu at %zu", ck[c].name, len, align, o, at);
                    cases++;
                }
        for (size_t o = 0; o < NODD && bad < 5; o++)
            for (size_t at = 0; at + odd[o].n <= 130; at++)
                for (size_t align = 0; align < 4; align++) {
                    uint8_t *p = buf + align;
                    fill(p, 130, align % 2 ? 0 : 400, 1, &seed);
                    memcpy(p + at, odd[o].b, odd[o].n);
                    bad += !EXPECT(same_verdicts(p, 130, ck[c].fn, &seed), "%s: %zu at %zu",
                                   ck[c].name, o, at);
                    cases++;
                }
        for (int r = 0; r < 20000 && bad < 5; r++) {
            size_t len = rnd(&seed) % 4097, align = rnd(&seed) % 32;
            unsigned high = high_per_1024[rnd(&seed) % 7];
            fill(buf + align, len, high, r % 3 != 0, &seed);
            bad += !EXPECT(same_verdicts(buf + align, len, ck[c].fn, &seed),
                           "%s: random %d, %zu bytes", ck[c].name, r, len);
            cases++;
        }
        CHECK(bad == 0, "%s: agrees with the portable automaton on %ld inputs, in pieces too",
              ck[c].name, cases);
    }
}

/* Every string of 1 or 2 bytes and every 3- and 4-byte string whose last bytes come from the
 * values where the grammar changes, placed at each offset of a 64-byte step inside valid text with
 * non-ASCII characters (so the vector checks see it in every lane position): each checker agrees
 * with the portable automaton. */
static void exhaustive_vectors(void)
{
    static const uint8_t edge[] = {0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF,
                                   0xC0, 0xC2, 0xDF, 0xE0, 0xED, 0xF0, 0xF4, 0xFF};
    struct checker ck[4];
    size_t nck = checkers(ck);
    uint64_t seed = 5;
    uint8_t base[160], buf[160];
    fill(base, sizeof base, 300, 1, &seed);
    for (size_t c = 1; c < nck; c++) {
        long bad = 0, count = 0;
        for (uint32_t v = 0; v < 256 + 65536 + (1u << 20) && bad < 5; v++) {
            uint8_t b[4];
            size_t n;
            if (v < 256) {
                n = 1, b[0] = (uint8_t)v;
            } else if (v < 256 + 65536) {
                n = 2, b[0] = (uint8_t)(v - 256), b[1] = (uint8_t)((v - 256) >> 8);
            } else {
                uint32_t x = v - 256 - 65536; /* the length, three edge values, a lead */
                n = 3 + (x & 1);
                b[0] = (uint8_t)(0x80 + (x >> 13)), b[1] = edge[(x >> 1) & 15];
                b[2] = edge[(x >> 5) & 15], b[3] = edge[(x >> 9) & 15];
            }
            size_t at = 60 + (size_t)(v % 40);
            memcpy(buf, base, sizeof buf);
            memcpy(buf + at, b, n);
            uint32_t sf = WSK_UTF8_ACCEPT, sp = WSK_UTF8_ACCEPT;
            int rf = wsk_utf8_validate_with(&sf, buf, sizeof buf, ck[c].fn);
            int rp = wsk_utf8_validate_portable(&sp, buf, sizeof buf);
            bad += !EXPECT(rf == rp && sf == sp, "%s: %zu bytes %02x %02x %02x %02x at %zu",
                           ck[c].name, n, b[0], b[1], b[2], b[3], at);
            count++;
        }
        CHECK(bad == 0, "%s: %ld short strings planted in text agree with the portable automaton",
              ck[c].name, count);
    }
}

/* `test_utf8 --bench`: GB/s of each path over valid text of 64 KiB and 1 MiB with a third of
 * its bytes in non-ASCII characters (2- to 4-byte), and of ASCII text, next to memcpy of the
 * same bytes; best of 5 rounds of about 64 MiB each (CPU time of this thread). */
static double thread_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void bench(void)
{
    static const size_t sizes[] = {64 << 10, 1 << 20};
    struct checker ck[4];
    size_t nck = checkers(ck);
    uint64_t seed = 1;
    for (size_t z = 0; z < 2; z++)
        for (int ascii = 0; ascii < 2; ascii++) {
            size_t n = sizes[z], reps = ((size_t)64 << 20) / n;
            uint8_t *src = malloc(n), *dst = malloc(n);
            /* 1 in 7 characters non-ASCII of 3 bytes on average: about 1/3 of the bytes. */
            fill(src, n, ascii ? 0 : 150, 1, &seed);
            while (n && (src[n - 1] & 0xC0) == 0x80) src[--n] = 'x';
            if (n && src[n - 1] >= 0xC0) src[n - 1] = 'x';
            size_t high = 0;
            for (size_t i = 0; i < n; i++) high += src[i] >= 0x80;
            printf("bench_utf8 size=%zu non_ascii=%.0f%%", n, 100.0 * (double)high / (double)n);
            for (size_t c = 0; c <= nck + 1; c++) {
                double best = 1e9;
                for (int round = 0; round < 5; round++) {
                    double t = thread_s();
                    for (size_t r = 0; r < reps; r++) {
                        if (c == nck + 1) {
                            memcpy(dst, src, n);
                            __asm__ volatile("" : : "r"(dst) : "memory");
                        } else {
                            uint32_t st = WSK_UTF8_ACCEPT;
                            int v = c == nck ? wsk_utf8_validate_portable(&st, src, n)
                                             : wsk_utf8_validate_with(&st, src, n, ck[c].fn);
                            if (v || st) abort();
                        }
                    }
                    t = thread_s() - t;
                    if (t < best) best = t;
                }
                printf(" %s=%.2f",
                       c == nck + 1 ? "memcpy"
                       : c == nck   ? "portable"
                                    : ck[c].name,
                       (double)n * (double)reps / best / 1e9);
            }
            printf(" GB/s\n");
            free(src);
            free(dst);
        }
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--bench")) {
        bench();
        return 0;
    }
    fast_vs_portable();
    exhaustive_vectors();
    sequences();
    exhaustive();
    fast_path();
    sticky();
    random_valid();
    random_bytes();
    return TEST_DONE();
}
