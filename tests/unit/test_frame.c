/* Frame headers: wsk_frame_header / wsk_frame_header_size against wsk_frame_decode, headers fed
 * in every split, each error rule at the earliest byte, and the fast path against the byte-wise
 * path on random headers. */
#include "mask.h"
#include "parse_frame.h"
#include "send_frame.h"
#include "test.h"

#include <stdint.h>

#define NOLIMIT UINT64_MAX

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static int same_frame(const wsk_frame *a, const wsk_frame *b)
{
    return a->len == b->len && !memcmp(a->mask, b->mask, 4) && a->fin == b->fin &&
           a->rsv == b->rsv && a->opcode == b->opcode && a->masked == b->masked;
}

/* Feeds h[0..n) one byte at a time to a fresh decoder.  Returns the first non-zero result and
 * sets *at to the index of the byte that produced it (n and 0 if none did). */
static int feed_bytes(const uint8_t *h, size_t n, unsigned flags, unsigned rsv, uint64_t max,
                      wsk_frame *f, size_t *at)
{
    wsk_frame_dec d = {0};
    for (size_t i = 0; i < n; i++) {
        int r = wsk_frame_decode(&d, h + i, 1, flags, rsv, max, f);
        if (r) {
            *at = i;
            return r;
        }
    }
    *at = n;
    return 0;
}

/* Feeds h[0..k) then h[k..n) to a fresh decoder: the header must complete in exactly one of the
 * calls, using exactly hs bytes overall; returns 1 when it does and fills *f. */
static int feed_split(const uint8_t *h, size_t n, size_t k, size_t hs, uint64_t max, wsk_frame *f)
{
    wsk_frame_dec d = {0};
    int r1 = wsk_frame_decode(&d, h, k, 0, WSK_RSV1 | 2 | 1, max, f);
    if (k >= hs) return r1 == (int)hs;
    if (r1 != 0 || d.have != k) return 0;
    int r2 = wsk_frame_decode(&d, h + k, n - k, 0, WSK_RSV1 | 2 | 1, max, f);
    return r2 == (int)(hs - k) && d.have == 0;
}

/* An error case: header bytes, decoder settings, the error and the index of the first byte that
 * proves it. */
struct bad {
    const char *what;
    uint8_t h[14];
    size_t n;
    unsigned flags, rsv;
    uint64_t max;
    int err;
    size_t at;
};

/* The error must come at byte `at` byte-wise, in one call, and in the call holding byte `at`
 * for every two-piece split. */
static int check_bad(const struct bad *b)
{
    wsk_frame f;
    size_t at;
    int ok = 1;
    int r = feed_bytes(b->h, b->n, b->flags, b->rsv, b->max, &f, &at);
    ok &= EXPECT(r == b->err && at == b->at, "%s: byte-wise %d at %zu", b->what, r, at);
    wsk_frame_dec d = {0};
    r = wsk_frame_decode(&d, b->h, b->n, b->flags, b->rsv, b->max, &f);
    ok &= EXPECT(r == b->err, "%s: whole %d", b->what, r);
    for (size_t k = 1; k < b->n; k++) {
        memset(&d, 0, sizeof d);
        r = wsk_frame_decode(&d, b->h, k, b->flags, b->rsv, b->max, &f);
        if (k > b->at) {
            ok &= EXPECT(r == b->err, "%s: split %zu first %d", b->what, k, r);
            continue;
        }
        ok &= EXPECT(r == 0, "%s: split %zu first %d", b->what, k, r);
        r = wsk_frame_decode(&d, b->h + k, b->n - k, b->flags, b->rsv, b->max, &f);
        ok &= EXPECT(r == b->err, "%s: split %zu second %d", b->what, k, r);
    }
    return ok;
}

/* Decodes h[0..n) in one call and expects success with the given fields. */
static int good(const uint8_t *h, size_t n, unsigned flags, unsigned rsv, uint64_t max,
                wsk_frame *f)
{
    wsk_frame_dec d = {0};
    wsk_frame g;
    size_t at;
    int r = wsk_frame_decode(&d, h, n, flags, rsv, max, f);
    int r2 = feed_bytes(h, n, flags, rsv, max, &g, &at);
    return r == (int)n && r2 == 1 && at == n - 1 && same_frame(f, &g);
}

static void round_trips(void)
{
    static const uint64_t lens[] = {0,      1,          125,           126,
                                    127,    65535,      65536,         (uint64_t)1 << 32,
                                    100000, UINT32_MAX, INT64_MAX - 1, INT64_MAX};
    static const unsigned ops[] = {WSK_OP_CONT, WSK_OP_TEXT, WSK_OP_BINARY};
    const uint8_t key[4] = {0xA1, 0x00, 0xFF, 0x5C};
    int bad_size = 0, bad_whole = 0, bad_split = 0, bad_bytes = 0, n = 0;

    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        for (int masked = 0; masked < 2; masked++) {
            for (int v = 0; v < 12; v++) {
                unsigned op = ops[v % 3], fin = (v / 3) & 1, rsv = v / 6 ? WSK_RSV1 : 0;
                if (op == WSK_OP_CONT) rsv = 0;
                uint8_t h[WSK_FRAME_HDR_MAX + 8];
                memset(h, 0xEE, sizeof h);
                size_t hs = wsk_frame_header(h, (int)fin, rsv, op, lens[li], masked ? key : NULL);
                size_t want = 2 + (lens[li] < 126 ? 0 : lens[li] < 65536 ? 2 : 8) + 4 * masked;
                bad_size += !EXPECT(hs == want && wsk_frame_header_size(lens[li], masked) == hs,
                                    "len %llu masked %d: size %zu", (unsigned long long)lens[li],
                                    masked, hs);
                wsk_frame want_f = {.len = lens[li],
                                    .fin = (uint8_t)fin,
                                    .rsv = (uint8_t)rsv,
                                    .opcode = (uint8_t)op,
                                    .masked = (uint8_t)masked};
                if (masked) memcpy(want_f.mask, key, 4);

                /* Whole, with trailing payload bytes that must be left alone. */
                wsk_frame_dec d = {0};
                wsk_frame f;
                int r = wsk_frame_decode(&d, h, sizeof h, 0, WSK_RSV1, NOLIMIT, &f);
                bad_whole += !EXPECT(r == (int)hs && same_frame(&f, &want_f) && d.have == 0,
                                     "len %llu masked %d op %u: %d", (unsigned long long)lens[li],
                                     masked, op, r);
                /* Two pieces at every offset (0 and hs included), then one byte at a time. */
                for (size_t k = 0; k <= hs; k++) {
                    memset(&f, 0, sizeof f);
                    bad_split += !EXPECT(
                        feed_split(h, sizeof h, k, hs, NOLIMIT, &f) && same_frame(&f, &want_f),
                        "len %llu masked %d split %zu", (unsigned long long)lens[li], masked, k);
                }
                size_t at;
                r = feed_bytes(h, hs, 0, WSK_RSV1, NOLIMIT, &f, &at);
                bad_bytes += !EXPECT(r == 1 && at == hs - 1 && same_frame(&f, &want_f),
                                     "len %llu byte-wise", (unsigned long long)lens[li]);
                n++;
            }
        }
    }
    CHECK(bad_size == 0, "header sizes at every length boundary (%d headers)", n);
    CHECK(bad_whole == 0, "round trip in one call, trailing bytes untouched");
    CHECK(bad_split == 0, "round trip split in two at every offset");
    CHECK(bad_bytes == 0, "round trip one byte at a time");
}

static void encodings(void)
{
    uint8_t h[WSK_FRAME_HDR_MAX];
    const uint8_t key[4] = {1, 2, 3, 4};

    size_t n = wsk_frame_header(h, 1, 0, WSK_OP_TEXT, 5, NULL);
    CHECK(n == 2 && h[0] == 0x81 && h[1] == 0x05, "unmasked \"Hello\" header (RFC 6455 5.7)");
    n = wsk_frame_header(h, 1, 0, WSK_OP_TEXT, 5, key);
    CHECK(n == 6 && h[0] == 0x81 && h[1] == 0x85 && !memcmp(h + 2, key, 4), "masked header");
    n = wsk_frame_header(h, 1, 0, WSK_OP_BINARY, 256, NULL);
    CHECK(n == 4 && h[0] == 0x82 && h[1] == 0x7E && h[2] == 0x01 && h[3] == 0x00,
          "256 bytes use the 16-bit form (RFC 6455 5.7)");
    n = wsk_frame_header(h, 1, 0, WSK_OP_BINARY, 65536, NULL);
    CHECK(n == 10 && h[1] == 0x7F && !memcmp(h + 2, "\0\0\0\0\0\1\0\0", 8),
          "65536 bytes use the 64-bit form (RFC 6455 5.7)");
    n = wsk_frame_header(h, 0, WSK_RSV1 | 3, WSK_OP_TEXT, 125, NULL);
    CHECK(n == 2 && h[0] == 0x71 && h[1] == 125, "FIN clear, RSV1..3 set, 125 in 7 bits");
    n = wsk_frame_header(h, 1, 0, WSK_OP_PING, 0, NULL);
    CHECK(n == 2 && h[0] == 0x89 && h[1] == 0, "empty ping");
}

static void errors(void)
{
    enum {
        P = WSK_ERR_PROTOCOL,
        BIG = WSK_ERR_TOO_BIG,
        REQ = WSK_DEC_REQUIRE_MASK,
        FORBID = WSK_DEC_FORBID_MASK
    };
    /* clang-format off */
    const struct bad cases[] = {
        /* what, header, its length, flags, rsv_allowed, max_payload, error, failing byte */
        {"RSV2 without extension",   {0xA1, 0x00}, 2, 0, WSK_RSV1, NOLIMIT, P, 0},
        {"RSV3 without extension",   {0x91, 0x00}, 2, 0, WSK_RSV1, NOLIMIT, P, 0},
        {"RSV1 not negotiated",      {0xC1, 0x00}, 2, 0, 0, NOLIMIT, P, 0},
        {"RSV1 on CONT",             {0xC0, 0x00}, 2, 0, WSK_RSV1, NOLIMIT, P, 0},
        {"RSV1 on PING",             {0xC9, 0x00}, 2, 0, WSK_RSV1, NOLIMIT, P, 0},
        {"RSV2 on CLOSE",            {0xA8, 0x00}, 2, 0, 7, NOLIMIT, P, 0},
        {"fragmented CLOSE",         {0x08, 0x00}, 2, 0, 0, NOLIMIT, P, 0},
        {"fragmented PING",          {0x09, 0x00}, 2, 0, 0, NOLIMIT, P, 0},
        {"fragmented PONG",          {0x0A, 0x00}, 2, 0, 0, NOLIMIT, P, 0},
        {"PING of 126 bytes",        {0x89, 0x7E, 0, 126}, 4, 0, 0, NOLIMIT, P, 1},
        {"CLOSE with 64-bit length", {0x88, 0x7F, 0, 0, 0, 0, 0, 0, 0, 1}, 10, 0, 0, NOLIMIT, P, 1},
        {"unmasked frame to server", {0x81, 0x00}, 2, REQ, 0, NOLIMIT, P, 1},
        {"masked frame to client",   {0x81, 0x80, 1, 2, 3, 4}, 6, FORBID, 0, NOLIMIT, P, 1},
        {"64-bit length, MSB set",   {0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0}, 10, 0, 0, NOLIMIT, P, 2},
        {"7-bit length over max",    {0x82, 100}, 2, 0, 0, 99, BIG, 1},
        {"data over max 0",          {0x80, 1}, 2, 0, 0, 0, BIG, 1},
        {"16-bit over max, low byte",  {0x82, 0x7E, 0x01, 0x2C}, 4, 0, 0, 299, BIG, 3},
        {"16-bit over max, high byte", {0x82, 0x7E, 0x02, 0x00}, 4, 0, 0, 0x1FF, BIG, 2},
        {"2^40 over 2^20 at byte 5", {0x82, 0x7F, 0, 0, 0, 1, 0, 0, 0, 0}, 10, 0, 0, 1 << 20, BIG, 5},
        {"64-bit one over max",      {0x82, 0x7F, 0, 0, 0, 1, 0, 0, 0, 1}, 10, 0, 0, 1ull << 32,
                                     BIG, 9},
        {"over max, with a mask",    {0x82, 0xFF, 0, 0, 0, 1, 0, 0, 0, 1, 9, 9, 9, 9}, 14, 0, 0,
                                     1000, BIG, 5},
        {"opcode before mask",       {0x83, 0x00}, 2, REQ, 0, NOLIMIT, P, 0},
    };
    /* clang-format on */
    int bad = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) bad += !check_bad(&cases[i]);
    CHECK(bad == 0, "%zu error rules fail at their earliest byte in every split",
          sizeof cases / sizeof cases[0]);

    /* Every reserved opcode, with and without FIN, masked or not. */
    bad = 0;
    for (unsigned op = 0; op < 16; op++) {
        if (op <= 2 || (op >= 8 && op <= 10)) continue;
        for (unsigned b0 = op; b0 < 0x100; b0 += 0x80) {
            struct bad b = {.what = "reserved opcode",
                            .h = {(uint8_t)b0},
                            .n = 2,
                            .rsv = 7,
                            .max = NOLIMIT,
                            .err = WSK_ERR_PROTOCOL};
            bad += !check_bad(&b);
        }
    }
    CHECK(bad == 0, "reserved opcodes 0x3-0x7 and 0xB-0xF fail at byte 0");
}

static void accepted(void)
{
    wsk_frame f;
    uint8_t h[] = {0xC1, 0x00};
    CHECK(good(h, 2, 0, WSK_RSV1, NOLIMIT, &f) && f.rsv == WSK_RSV1 && f.opcode == WSK_OP_TEXT,
          "RSV1 on TEXT when allowed, reported as 0x4");
    uint8_t hb[] = {0xC2, 0x00};
    CHECK(good(hb, 2, 0, WSK_RSV1, NOLIMIT, &f) && f.rsv == WSK_RSV1, "RSV1 on BINARY");
    uint8_t hall[] = {0xF2, 0x00};
    CHECK(good(hall, 2, 0, 7, NOLIMIT, &f) && f.rsv == 7, "all RSV bits when all are allowed");
    uint8_t ping[] = {0x89, 125};
    CHECK(good(ping, 2, 0, 0, 0, &f) && f.len == 125 && f.opcode == WSK_OP_PING,
          "PING of 125 bytes; max_payload does not apply to control frames");
    uint8_t atmax[] = {0x82, 0x7F, 0, 0, 0, 1, 0, 0, 0, 0};
    CHECK(good(atmax, 10, 0, 0, (uint64_t)1 << 32, &f) && f.len == (uint64_t)1 << 32,
          "length equal to max_payload");
    uint8_t big[] = {0x82, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
    CHECK(good(big, 10, 0, 0, NOLIMIT, &f) && f.len == INT64_MAX, "2^63-1 without a limit");
    uint8_t m[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d};
    CHECK(good(m, 6, WSK_DEC_REQUIRE_MASK, 0, NOLIMIT, &f) && f.masked &&
              !memcmp(f.mask, "\x37\xfa\x21\x3d", 4) && f.len == 5,
          "masked frame to a server (RFC 6455 5.7)");
    uint8_t u[] = {0x81, 0x05};
    CHECK(good(u, 2, WSK_DEC_FORBID_MASK, 0, NOLIMIT, &f) && !f.masked &&
              !memcmp(f.mask, "\0\0\0\0", 4),
          "unmasked frame to a client; mask reads as zero");
    CHECK(good(m, 6, 0, 0, NOLIMIT, &f) && good(u, 2, 0, 0, NOLIMIT, &f),
          "flags 0 accept both masked and unmasked");
    uint8_t longform[] = {0x82, 0x7E, 0x00, 0x05};
    CHECK(good(longform, 4, 0, 0, NOLIMIT, &f) && f.len == 5,
          "a length in a longer form than needed is accepted");

    /* n = 0 leaves the decoder as it is, fresh or holding part of a header. */
    wsk_frame_dec d = {0};
    int r0 = wsk_frame_decode(&d, NULL, 0, 0, 0, NOLIMIT, &f);
    int r1 = wsk_frame_decode(&d, m, 3, 0, 0, NOLIMIT, &f);
    int r2 = wsk_frame_decode(&d, m + 3, 0, 0, 0, NOLIMIT, &f);
    int r3 = wsk_frame_decode(&d, m + 3, 3, 0, 0, NOLIMIT, &f);
    CHECK(r0 == 0 && r1 == 0 && r2 == 0 && r3 == 3 && f.len == 5 && d.have == 0,
          "n = 0 is a no-op");

    /* Back-to-back headers: each call stops at the end of its header. */
    uint8_t s[] = {0x01, 0x00, 0x89, 0x00, 0x80, 0x7E, 0x00, 0x00, 0x88, 0x00};
    int rs[5];
    wsk_frame fs[4];
    memset(&d, 0, sizeof d);
    rs[0] = wsk_frame_decode(&d, s, sizeof s, 0, 0, NOLIMIT, &fs[0]);
    rs[1] = wsk_frame_decode(&d, s + 2, 1, 0, 0, NOLIMIT, &fs[1]);
    rs[2] = wsk_frame_decode(&d, s + 3, sizeof s - 3, 0, 0, NOLIMIT, &fs[1]);
    rs[3] = wsk_frame_decode(&d, s + 4, sizeof s - 4, 0, 0, NOLIMIT, &fs[2]);
    rs[4] = wsk_frame_decode(&d, s + 8, sizeof s - 8, 0, 0, NOLIMIT, &fs[3]);
    CHECK(rs[0] == 2 && rs[1] == 0 && rs[2] == 1 && rs[3] == 4 && rs[4] == 2 &&
              fs[0].opcode == WSK_OP_TEXT && !fs[0].fin && fs[1].opcode == WSK_OP_PING &&
              fs[2].opcode == WSK_OP_CONT && fs[2].fin && fs[3].opcode == WSK_OP_CLOSE,
          "consecutive headers, one split, each call uses only its header");
}

/* Random headers under random settings: one call (the fast path) and byte-wise (the slow path)
 * must agree on the result and the fields. */
static void fast_equals_slow(void)
{
    uint64_t seed = 42;
    static const uint64_t maxes[] = {0, 1, 125, 126, 300, 65535, 65536, (uint64_t)1 << 40, NOLIMIT};
    int bad = 0, complete = 0, errs = 0;

    for (int iter = 0; iter < 300000; iter++) {
        uint8_t h[14 + 4];
        for (size_t i = 0; i < sizeof h; i++) h[i] = (uint8_t)(rnd(&seed) >> 56);
        uint64_t r = rnd(&seed);
        /* Bias towards valid headers so both outcomes are well covered. */
        if (r & 1) h[0] = (uint8_t)((h[0] & 0xF0) | (r >> 1) % 3);
        if (r & 2) h[0] &= 0x8F;
        if (r & 4) h[1] = (uint8_t)((h[1] & 0x80) | (126 + ((r >> 3) & 1)));
        if (r & 0x10) h[2] &= 0x7F;
        if (r & 0x20) memset(h + 2, 0, (r >> 6) % 8);
        unsigned flags = (unsigned)(r >> 10) % 3;
        unsigned rsv = (unsigned)(r >> 12) & 7;
        uint64_t max = maxes[(r >> 15) % (sizeof maxes / sizeof maxes[0])];
        size_t n = 2 + (size_t)(r >> 20) % 17;

        wsk_frame_dec d = {0};
        wsk_frame f1, f2;
        memset(&f1, 0, sizeof f1);
        memset(&f2, 0, sizeof f2);
        int r1 = wsk_frame_decode(&d, h, n, flags, rsv, max, &f1);
        size_t at;
        int r2 = feed_bytes(h, n, flags, rsv, max, &f2, &at);
        if (r2 == 1) r2 = (int)at + 1; /* bytes used overall */
        int ok = r1 == r2 && (r1 <= 0 || same_frame(&f1, &f2));
        if (r1 == 0) ok &= d.have == n;
        complete += r1 > 0;
        errs += r1 < 0;
        bad += !EXPECT(ok, "iter %d: fast %d slow %d", iter, r1, r2);
        if (bad > 5) break;
    }
    CHECK(bad == 0 && complete > 10000 && errs > 10000,
          "fast path equals byte-wise path on random headers (%d complete, %d errors)", complete,
          errs);
}

/* A masked client frame end to end: header, then the payload unmasked in two reads. */
static void frame_with_payload(void)
{
    const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    uint8_t wire[WSK_FRAME_HDR_MAX + 300];
    uint8_t payload[300];
    for (size_t i = 0; i < sizeof payload; i++) payload[i] = (uint8_t)(i * 7);
    size_t hs = wsk_frame_header(wire, 1, 0, WSK_OP_BINARY, sizeof payload, key);
    memcpy(wire + hs, payload, sizeof payload);
    wsk_mask(wire + hs, sizeof payload, key, 0);

    wsk_frame_dec d = {0};
    wsk_frame f;
    int r = wsk_frame_decode(&d, wire, 3, WSK_DEC_REQUIRE_MASK, 0, 1000, &f);
    int r2 = wsk_frame_decode(&d, wire + 3, hs + 100 - 3, WSK_DEC_REQUIRE_MASK, 0, 1000, &f);
    size_t off = 0;
    if (r2 > 0) {
        off = wsk_mask(wire + hs, 97, f.mask, off);
        off = wsk_mask(wire + hs + 97, f.len - 97, f.mask, off);
    }
    CHECK(r == 0 && r2 == (int)hs - 3 && f.len == 300 && off == 0 &&
              !memcmp(wire + hs, payload, sizeof payload),
          "masked 300-byte frame decoded and unmasked in pieces");
}

int main(void)
{
    encodings();
    round_trips();
    errors();
    accepted();
    fast_equals_slow();
    frame_with_payload();
    return TEST_DONE();
}
