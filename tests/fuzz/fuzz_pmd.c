/* Fuzz target for permessage-deflate: negotiation and the codec.
 *
 * Input layout: byte 0 picks the compressor and decompressor modes, byte 1 the length of a
 * header slice, byte 2 the inflater's window and reset mode, byte 3 seeds the chunking.  The
 * header slice (cut in two values) is negotiated as a server and validated as a client; the rest
 * is inflated in random chunks with a small output limit, then compressed (zlib's deflater and
 * ISA-L's) and inflated back, which must give the same bytes.  The libdeflate path gets the same:
 * the rest inflated whole by the one-shot inflater (whatever it accepts, zlib's streaming inflater
 * must read the same, or refuse for one of libdeflate's leniencies: pmd.h), and one-shot
 * compressed at a level from byte 2, then inflated back by both inflaters; ISA-L's one-shot
 * deflater (the loop's at levels 1..6) the same, at the window from byte 2, fresh and once its
 * Huffman codes are trained on the input.
 *
 * Build: clang -fsanitize=fuzzer,address,undefined -Ilib tests/fuzz/fuzz_pmd.c
 *        lib/pmd_negotiate.c lib/pmd_zlib.c lib/pmd_libdeflate.c lib/pmd_isal.c lib/buf.c -lz
 *        -ldeflate -lisal */
#include "pmd.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NMODES (WSK_COMPRESS_256KB + 1)

static uint32_t next(uint32_t *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 16;
}

static void check_params(const wsk_pmd_params *p)
{
    if (!p->enabled) {
        static const wsk_pmd_params zero;
        if (memcmp(p, &zero, sizeof zero)) abort();
        return;
    }
    if (p->deflate_bits && (p->deflate_bits < 8 || p->deflate_bits > 15)) abort();
    if (p->deflate_bits && (p->deflate_mem < 1 || p->deflate_mem > 9)) abort();
    if (p->inflate_bits < 8 || p->inflate_bits > 15) abort();
    if (p->deflate_shared && !p->deflate_reset) abort();
    if (p->inflate_shared && !p->inflate_reset) abort();
}

static void negotiate(const wsk_pmd_config *cfg, const uint8_t *h, size_t n, size_t cut)
{
    wsk_pmd_slice v[2] = {{(const char *)h, cut}, {(const char *)h + cut, n - cut}};
    wsk_pmd_params p;
    char out[WSK_PMD_HEADER_MAX];
    int r = wsk_pmd_server_negotiate(cfg, v, 2, &p, out, sizeof out);
    if (r < 0 || (size_t)r >= sizeof out || strlen(out) != (size_t)r || (r > 0) != p.enabled)
        abort();
    check_params(&p);
    /* Whatever was accepted, the answer is itself well formed. */
    if (r > 0) {
        wsk_pmd_slice s = {out, (size_t)r};
        wsk_pmd_params q;
        wsk_pmd_config any = {WSK_COMPRESS_DEDICATED, WSK_COMPRESS_DEDICATED, 0};
        int a = wsk_pmd_client_accept(&any, &s, 1, &q);
        if (a != 0 && a != WSK_ERR_HANDSHAKE) abort();
    }
    int a = wsk_pmd_client_accept(cfg, v, 2, &p);
    if (a != 0 && a != WSK_ERR_HANDSHAKE) abort();
    check_params(&p);
}

/* Inflates in[0..n) as messages of random chunks; errors just start the next message. */
static void inflate_junk(wsk_pmd_inflater *inf, const uint8_t *in, size_t n, size_t max,
                         uint32_t *seed)
{
    wsk_dbuf out;
    wsk_dbuf_init(&out, max);
    size_t at = 0;
    while (at < n) {
        size_t k = 1 + next(seed) % 64;
        if (k > n - at) k = n - at;
        int fin = at + k == n || next(seed) % 4 == 0;
        int rc = wsk_pmd_inflate(inf, in + at, k, fin, &out);
        if (rc != 0 && rc != WSK_ERR_TOO_BIG && rc != WSK_ERR_DEFLATE) abort();
        if (out.len > max || out.cap > max) abort();
        if (rc || fin) out.len = 0;
        at += k;
    }
    wsk_dbuf_free(&out);
}

/* Compresses msg three times (each referring to the last unless reset), with zlib's deflater or
 * (isal) ISA-L's, and inflates each in random chunks: the bytes must come back. */
static void round_trip(int bits, int mem, int reset, int isal, const uint8_t *msg, size_t n,
                       uint32_t *seed)
{
    wsk_pmd_deflater *d = isal ? NULL : wsk_pmd_deflater_new(bits, mem, WSK_PMD_LEVEL_DEFAULT);
    wsk_pmd_isal_deflater *i = isal ? wsk_pmd_isal_deflater_new(bits) : NULL;
    wsk_pmd_inflater *inf = wsk_pmd_inflater_new(bits, reset);
    if ((!d && !i) || !inf) abort();
    for (int round = 0; round < 3; round++) {
        wsk_dbuf z, out;
        wsk_dbuf_init(&z, 2 * n + 64);
        wsk_dbuf_init(&out, n);
        int rc =
            i ? wsk_pmd_isal_deflate(i, msg, n, reset, &z) : wsk_pmd_deflate(d, msg, n, reset, &z);
        if (rc != 0) abort();
        size_t at = 0;
        do {
            size_t k = next(seed) % (z.len + 1 - at);
            if (wsk_pmd_inflate(inf, z.p + at, k, at + k == z.len, &out) != 0) abort();
            at += k;
        } while (at < z.len || wsk_pmd_inflater_busy(inf));
        if (out.len != n || (n && memcmp(out.p, msg, n))) abort();
        wsk_dbuf_free(&z);
        wsk_dbuf_free(&out);
    }
    if ((i ? wsk_pmd_isal_deflater_messages(i) : wsk_pmd_deflater_messages(d)) != 3) abort();
    wsk_pmd_deflater_free(d);
    wsk_pmd_isal_deflater_free(i);
    wsk_pmd_inflater_free(inf);
}

/* Why zlib refuses the raw DEFLATE in[0..n) followed by the 00 00 ff ff tail (one of its static
 * messages), or NULL when it reads it. */
static const char *zlib_refusal(const uint8_t *in, size_t n)
{
    static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, -15) != Z_OK) abort();
    uint8_t out[4096];
    const char *refused = NULL;
    for (int part = 0; part < 2 && !refused; part++) {
        z.next_in = (Bytef *)(part ? tail : in);
        z.avail_in = (uInt)(part ? sizeof tail : n);
        while (z.avail_in && !refused) {
            z.next_out = out;
            z.avail_out = sizeof out;
            int rc = inflate(&z, Z_SYNC_FLUSH);
            if (rc == Z_STREAM_END) break;
            if (rc != Z_OK && rc != Z_BUF_ERROR) refused = z.msg ? z.msg : "?";
        }
    }
    inflateEnd(&z);
    return refused;
}

/* What libdeflate reads where zlib refuses (pmd.h, "Leniency"): a reserved or unused code, more
 * code lengths than DEFLATE has symbols, an incomplete code of one codeword. */
static int lenient(const char *why)
{
    static const char *const known[] = {
        "invalid literal/length code",         "invalid distance code",
        "too many length or distance symbols", "invalid code lengths set",
        "invalid literal/lengths set",         "invalid distances set"};
    for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
        if (!strcmp(why, known[k])) return 1;
    return 0;
}

/* One-shot inflate of junk: no crash, the cap holds, and a message it accepts is one zlib's
 * streaming inflater (no context takeover) reads the same, or refuses for one of libdeflate's
 * known leniencies. */
static void oneshot_junk(const uint8_t *in, size_t n, size_t max)
{
    wsk_pmd_oneshot_inflater *one = wsk_pmd_oneshot_inflater_new();
    wsk_pmd_inflater *z = wsk_pmd_inflater_new(15, 1);
    if (!one || !z) abort();
    wsk_dbuf a, b;
    wsk_dbuf_init(&a, max);
    wsk_dbuf_init(&b, max);
    /* A copy with the room the inflater borrows for its tail after it. */
    uint8_t *lend = malloc(n + WSK_PMD_TAIL_ROOM);
    if (!lend) abort();
    if (n) memcpy(lend, in, n);
    memset(lend + n, 0xa5, WSK_PMD_TAIL_ROOM);
    int rc = wsk_pmd_oneshot_inflate(one, lend, n, &a);
    for (size_t k = 0; k < WSK_PMD_TAIL_ROOM; k++)
        if (lend[n + k] != 0xa5) abort();
    free(lend);
    if (rc != 0 && rc != WSK_ERR_TOO_BIG && rc != WSK_ERR_DEFLATE && rc != WSK_PMD_USE_ZLIB)
        abort();
    if (a.len > max || a.cap > max) abort();
    if (rc == WSK_PMD_USE_ZLIB && a.len) abort();
    if (rc == 0) {
        if (wsk_pmd_inflate(z, in, n, 1, &b) != 0) { /* zlib refuses it: why must be known */
            const char *why = zlib_refusal(in, n);
            if (!why || !lenient(why)) abort();
        } else if (a.len != b.len || (a.len && memcmp(a.p, b.p, a.len))) {
            abort();
        }
    }
    wsk_dbuf_free(&a);
    wsk_dbuf_free(&b);
    wsk_pmd_oneshot_inflater_free(one);
    wsk_pmd_inflater_free(z);
}

/* One-shot deflate of msg into c: libdeflate's at `level`, or with isal_bits ISA-L's at that
 * window. */
static int oneshot_deflate(wsk_pmd_oneshot_deflater *d, wsk_pmd_isal_oneshot *i, int isal_bits,
                           const uint8_t *msg, size_t n, wsk_dbuf *c)
{
    return i ? wsk_pmd_isal_oneshot_deflate(i, isal_bits, msg, n, c)
             : wsk_pmd_oneshot_deflate(d, msg, n, c);
}

/* One-shot deflate of msg (libdeflate at `level`, or when isal_bits is not 0 ISA-L's at that
 * window: `isal`, or a fresh one when NULL), inflated back by the one-shot inflater and, in
 * random chunks, by zlib's with the smallest window that holds the message (ISA-L's: the window
 * it was given). */
static void oneshot_round_trip(int level, int isal_bits, wsk_pmd_isal_oneshot *isal,
                               const uint8_t *msg, size_t n, uint32_t *seed)
{
    wsk_pmd_oneshot_deflater *d = isal_bits ? NULL : wsk_pmd_oneshot_deflater_new(level);
    wsk_pmd_isal_oneshot *i = isal_bits && !isal ? wsk_pmd_isal_oneshot_new() : isal;
    wsk_pmd_oneshot_inflater *one = wsk_pmd_oneshot_inflater_new();
    int bits = 8;
    while (bits < 15 && ((size_t)1 << bits) < n) bits++;
    if (isal_bits) bits = isal_bits;
    wsk_pmd_inflater *z = wsk_pmd_inflater_new(bits, 1);
    if ((!d && !i) || !one || !z) abort();
    wsk_dbuf c, a, b;
    wsk_dbuf_init(&c, n + n / 8 + 64 + WSK_PMD_TAIL_ROOM);
    wsk_dbuf_init(&a, n);
    wsk_dbuf_init(&b, n);
    if (oneshot_deflate(d, i, isal_bits, msg, n, &c) != 0) abort();
    if (wsk_dbuf_reserve(&c, WSK_PMD_TAIL_ROOM) != 0) abort();
    if (wsk_pmd_oneshot_inflate(one, c.p, c.len, &a) != 0) abort();
    if (a.len != n || (n && memcmp(a.p, msg, n))) abort();
    size_t at = 0;
    do {
        size_t k = next(seed) % (c.len + 1 - at);
        if (wsk_pmd_inflate(z, c.p + at, k, at + k == c.len, &b) != 0) abort();
        at += k;
    } while (at < c.len || wsk_pmd_inflater_busy(z));
    if (b.len != n || (n && memcmp(b.p, msg, n))) abort();
    /* Capped under the message's size: compressed and shorter, or refused with out untouched. */
    wsk_dbuf_free(&c);
    wsk_dbuf_init(&c, n ? n - 1 : 0);
    int rc = oneshot_deflate(d, i, isal_bits, msg, n, &c);
    if (n && !(rc == 0 ? c.len < n : rc == WSK_ERR_TOO_BIG && c.len == 0)) abort();
    wsk_dbuf_free(&c);
    wsk_dbuf_free(&a);
    wsk_dbuf_free(&b);
    wsk_pmd_oneshot_deflater_free(d);
    if (i != isal) wsk_pmd_isal_oneshot_free(i);
    wsk_pmd_oneshot_inflater_free(one);
    wsk_pmd_inflater_free(z);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4) return 0;
    wsk_pmd_config cfg = {data[0] % NMODES, (data[0] >> 4) % NMODES, 0};
    size_t hlen = data[1] < size - 4 ? data[1] : size - 4;
    int bits = 8 + (data[2] & 7), reset = (data[2] >> 3) & 1, mem = 1 + (data[2] >> 4) % 9;
    uint32_t seed = data[3];
    const uint8_t *h = data + 4, *rest = h + hlen;
    size_t nrest = size - 4 - hlen;

    negotiate(&cfg, h, hlen, hlen ? seed % (hlen + 1) : 0);

    /* Our own offer is always answerable by any server configuration. */
    char offer[WSK_PMD_HEADER_MAX], resp[WSK_PMD_HEADER_MAX];
    wsk_pmd_config srv = {seed % NMODES, (seed >> 4) % NMODES, 0};
    int n = wsk_pmd_client_offer(&cfg, offer, sizeof offer);
    wsk_pmd_slice so = {offer, n > 0 ? (size_t)n : 0};
    wsk_pmd_params sp, cp;
    int r = wsk_pmd_server_negotiate(&srv, &so, 1, &sp, resp, sizeof resp);
    wsk_pmd_slice sr = {resp, r > 0 ? (size_t)r : 0};
    if (n < 0 || r < 0 || wsk_pmd_client_accept(&cfg, &sr, r > 0, &cp) != 0) abort();

    wsk_pmd_inflater *inf = wsk_pmd_inflater_new(bits, reset);
    if (!inf) abort();
    inflate_junk(inf, rest, nrest, 1 + (seed * 61) % 4096, &seed);
    wsk_pmd_inflater_free(inf);

    round_trip(bits, mem, reset, 0, rest, nrest, &seed);
    round_trip(bits, mem, reset, 1, rest, nrest, &seed); /* ISA-L's, level 0 or 1 by the size */
    oneshot_junk(rest, nrest, 1 + (seed * 61) % 4096);
    oneshot_round_trip(1 + data[2] % 9, 0, NULL, rest, nrest, &seed);
    oneshot_round_trip(0, bits, NULL, rest, nrest, &seed);
    /* ISA-L's again, one deflater over 10 messages, two compressions each: its first 16 samples
     * train Huffman codes on these bytes, with which the last messages are compressed. */
    wsk_pmd_isal_oneshot *trained = wsk_pmd_isal_oneshot_new();
    if (!trained) abort();
    for (int k = 0; k < 10; k++) oneshot_round_trip(0, bits, trained, rest, nrest, &seed);
    wsk_pmd_isal_oneshot_free(trained);
    return 0;
}
