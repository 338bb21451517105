/* Fuzz target: the input is a byte stream from a peer, read in pieces, run through what a
 * connection does with it: frame headers, unmasking, UTF-8 validation of text messages across
 * frames and reads, and close payloads.  Every result is cross-checked against a second way of
 * computing it; any disagreement aborts.
 *
 * Input byte 0 picks the settings:
 *   bits 0-1  role: 0 none, 1 server (masks required), 2 client (masks forbidden), 3 none
 *   bit  2    RSV1 allowed (permessage-deflate negotiated)
 *   bits 3-4  max_payload: no limit, 16, 300 or 70000
 *   bits 5-7  read sizes: all at once, 1, 2, 3, 7 or 64 bytes, or pseudo-random 1-16 or 1-300
 * The remaining bytes are the stream. */
#include "mask.h"
#include "msg_control.h"
#include "parse_frame.h"
#include "parse_utf8.h"
#include "send_frame.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ENSURE(c)                                                                                  \
    do {                                                                                           \
        if (!(c)) abort();                                                                         \
    } while (0)

struct peer {
    const uint8_t *orig; /* the stream as received */
    uint8_t *s;          /* the same bytes, unmasked in place as payloads arrive */
    size_t len;
    unsigned flags, rsv_allowed;
    uint64_t max;

    wsk_frame_dec dec;
    wsk_frame f;
    size_t frame_start; /* stream offset of the current header */
    int in_payload;
    uint64_t left; /* payload bytes of the current frame still to come */
    size_t moff;   /* mask offset into the current payload */
    unsigned msg;  /* opcode of the open data message, 0 when none */
    int compressed;
    uint32_t utf8, utf8_bytewise;
    uint32_t utf8_other[3]; /* the portable automaton, the SSSE3 and the AVX2 checkers */
    uint8_t ctrl[125];
    size_t ctrl_len;
};

static int same_frame(const wsk_frame *a, const wsk_frame *b)
{
    return a->len == b->len && !memcmp(a->mask, b->mask, 4) && a->fin == b->fin &&
           a->rsv == b->rsv && a->opcode == b->opcode && a->masked == b->masked;
}

/* Decodes s[from..to) one byte at a time with a fresh decoder: the first non-zero result. */
static int decode_bytewise(const struct peer *c, size_t from, size_t to, wsk_frame *f, size_t *at)
{
    wsk_frame_dec d = {0};
    for (size_t i = from; i < to; i++) {
        int r = wsk_frame_decode(&d, c->orig + i, 1, c->flags, c->rsv_allowed, c->max, f);
        if (r) {
            *at = i;
            return r;
        }
    }
    *at = to;
    return 0;
}

/* A header was decoded from s[frame_start..frame_start+hlen): check it every other way. */
static void check_header(const struct peer *c, size_t hlen)
{
    const wsk_frame *f = &c->f;
    const uint8_t *h = c->orig + c->frame_start;
    wsk_frame g;
    size_t at;

    /* Byte-wise decoding completes on the same byte with the same fields. */
    ENSURE(decode_bytewise(c, c->frame_start, c->frame_start + hlen, &g, &at) == 1);
    ENSURE(at == c->frame_start + hlen - 1 && same_frame(f, &g));

    /* The fields are what the bytes say, and satisfy every rule the decoder enforces. */
    ENSURE(f->fin == h[0] >> 7 && f->rsv == ((h[0] >> 4) & 7) && f->opcode == (h[0] & 15));
    ENSURE(f->masked == h[1] >> 7);
    ENSURE(f->opcode <= 2 || (f->opcode >= 8 && f->opcode <= 10));
    ENSURE(!(f->masked && (c->flags & WSK_DEC_FORBID_MASK)));
    ENSURE(f->masked || !(c->flags & WSK_DEC_REQUIRE_MASK));
    ENSURE(!(f->len >> 63));
    if (f->opcode & 8)
        ENSURE(f->fin && !f->rsv && f->len <= 125);
    else
        ENSURE(f->len <= c->max && !(f->rsv & ~(f->opcode ? c->rsv_allowed : 0u)));

    /* Re-encoded: the shortest form, which decodes to the same fields, and equals the input
     * whenever the input used the shortest form too. */
    uint8_t out[WSK_FRAME_HDR_MAX];
    size_t m = wsk_frame_header(out, f->fin, f->rsv, f->opcode, f->len, f->masked ? f->mask : NULL);
    ENSURE(m == wsk_frame_header_size(f->len, f->masked) && m <= hlen);
    wsk_frame_dec d = {0};
    ENSURE(wsk_frame_decode(&d, out, m, 0, 7, UINT64_MAX, &g) == (int)m && same_frame(f, &g));
    if (m == hlen) ENSURE(!memcmp(out, h, m));
}

/* The decoder failed on a header starting at frame_start with s[..end) received. */
static void check_error(const struct peer *c, int r, size_t end)
{
    wsk_frame g;
    size_t at;
    ENSURE(r == WSK_ERR_PROTOCOL || r == WSK_ERR_TOO_BIG);
    /* Byte-wise decoding fails the same way, on a byte already received. */
    ENSURE(decode_bytewise(c, c->frame_start, end, &g, &at) == r && at < end);
}

static int close_frame(const struct peer *c)
{
    unsigned code;
    const uint8_t *reason;
    size_t rlen;
    int r = wsk_close_parse(c->ctrl, c->ctrl_len, &code, &reason, &rlen);
    if (r == 0) {
        if (c->ctrl_len == 0) {
            ENSURE(code == WSK_CLOSE_NO_STATUS && rlen == 0);
            return -1;
        }
        ENSURE(wsk_close_code_valid(code) && reason == c->ctrl + 2 && rlen == c->ctrl_len - 2);
        uint8_t out[125];
        size_t m = wsk_close_build(out, code, (const char *)reason, rlen);
        ENSURE(m == c->ctrl_len && !memcmp(out, c->ctrl, m));
        return -1;
    }
    /* Recompute the verdict from its parts. */
    uint32_t st = WSK_UTF8_ACCEPT;
    int utf8_ok = c->ctrl_len >= 2 && wsk_utf8_validate(&st, c->ctrl + 2, c->ctrl_len - 2) == 0 &&
                  st == WSK_UTF8_ACCEPT;
    unsigned cc = c->ctrl_len >= 2 ? (unsigned)c->ctrl[0] << 8 | c->ctrl[1] : 0;
    if (c->ctrl_len == 1 || !wsk_close_code_valid(cc))
        ENSURE(r == WSK_ERR_PROTOCOL);
    else
        ENSURE(r == WSK_ERR_UTF8 && !utf8_ok);
    return -1;
}

/* The last payload byte of the current frame arrived (or it had none).  -1 ends the stream. */
static int frame_end(struct peer *c)
{
    c->in_payload = 0;
    if (c->f.opcode == WSK_OP_CLOSE) return close_frame(c);
    if (c->f.opcode & 8) {
        /* Any bytes as a reason: wsk_close_build keeps a prefix that parses back. */
        uint8_t out[125];
        unsigned code, want = 3000 + (unsigned)c->ctrl_len;
        const uint8_t *reason;
        size_t rlen, m = wsk_close_build(out, want, (const char *)c->ctrl, c->ctrl_len);
        ENSURE(m >= 2 && m <= 125 && m - 2 <= c->ctrl_len);
        ENSURE(wsk_close_parse(out, m, &code, &reason, &rlen) == 0 && code == want);
        ENSURE(rlen == m - 2 && !memcmp(reason, c->ctrl, rlen));
        return 0;
    }
    if (c->f.fin) {
        if (c->msg == WSK_OP_TEXT && !c->compressed) {
            ENSURE(c->utf8 == c->utf8_bytewise);
            if (c->utf8 != WSK_UTF8_ACCEPT) return -1; /* ends inside a character: 1007 */
        }
        c->msg = 0;
    }
    return 0;
}

/* Header complete: what a connection checks about the sequence of frames (RFC 6455 5.4). */
static int frame_start(struct peer *c)
{
    const wsk_frame *f = &c->f;
    if (f->opcode & 8) {
        c->ctrl_len = 0;
    } else if (f->opcode == WSK_OP_CONT) {
        if (!c->msg) return -1; /* continuation without a message */
    } else {
        if (c->msg) return -1; /* new message inside a fragmented one */
        c->msg = f->opcode;
        c->compressed = (f->rsv & WSK_RSV1) != 0;
        c->utf8 = c->utf8_bytewise = WSK_UTF8_ACCEPT;
        c->utf8_other[0] = c->utf8_other[1] = c->utf8_other[2] = WSK_UTF8_ACCEPT;
    }
    c->in_payload = 1;
    c->left = f->len;
    c->moff = 0;
    return c->left ? 0 : frame_end(c);
}

/* n payload bytes at s[pos..pos+n) of the current frame. */
static int payload(struct peer *c, size_t pos, size_t n)
{
    uint8_t *p = c->s + pos;
    if (c->f.masked) {
        size_t off = wsk_mask(p, n, c->f.mask, c->moff);
        ENSURE(off == ((c->moff + n) & 3));
        for (size_t i = 0; i < n; i++)
            ENSURE(p[i] == (c->orig[pos + i] ^ c->f.mask[(c->moff + i) & 3]));
        c->moff = off;
    } else {
        ENSURE(wsk_mask(p, 0, c->f.mask, c->moff) == c->moff);
    }
    if (c->f.opcode & 8) {
        ENSURE(c->ctrl_len + n <= sizeof c->ctrl);
        memcpy(c->ctrl + c->ctrl_len, p, n);
        c->ctrl_len += n;
    } else if (c->msg == WSK_OP_TEXT && !c->compressed) {
        int r = wsk_utf8_validate(&c->utf8, p, n);
        int rb = 0;
        for (size_t i = 0; i < n && rb == 0; i++)
            rb = wsk_utf8_validate(&c->utf8_bytewise, p + i, 1);
        ENSURE(r == rb && (r == 0 || r == WSK_ERR_UTF8));
        /* Every vector path this CPU has gives the automaton's result and state. */
        ENSURE(wsk_utf8_validate_portable(&c->utf8_other[0], p, n) == r &&
               c->utf8_other[0] == c->utf8);
        static const int isa[] = {WSK_UTF8_SSSE3, WSK_UTF8_AVX2};
        for (int k = 0; k < 2; k++) {
            wsk_utf8_chunks_fn *fn = wsk_utf8_chunks(isa[k]);
            if (fn)
                ENSURE(wsk_utf8_validate_with(&c->utf8_other[k + 1], p, n, fn) == r &&
                       c->utf8_other[k + 1] == c->utf8);
        }
        if (r) return -1;
        ENSURE(c->utf8 == c->utf8_bytewise);
    }
    c->left -= n;
    return c->left ? 0 : frame_end(c);
}

/* One read: s[pos..pos+n).  -1 when the connection would close. */
static int on_read(struct peer *c, size_t pos, size_t n)
{
    while (n) {
        if (c->in_payload) {
            size_t k = c->left < n ? (size_t)c->left : n;
            if (payload(c, pos, k) < 0) return -1;
            pos += k, n -= k;
            continue;
        }
        size_t had = c->dec.have;
        if (had == 0) c->frame_start = pos;
        int r =
            wsk_frame_decode(&c->dec, c->orig + pos, n, c->flags, c->rsv_allowed, c->max, &c->f);
        if (r < 0) {
            check_error(c, r, pos + n);
            return -1;
        }
        if (r == 0) {
            ENSURE(c->dec.have == had + n && c->dec.have < WSK_FRAME_HDR_MAX);
            return 0;
        }
        ENSURE((size_t)r <= n && c->dec.have == 0);
        check_header(c, had + (size_t)r);
        pos += (size_t)r, n -= (size_t)r;
        if (frame_start(c) < 0) return -1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint64_t maxes[] = {UINT64_MAX, 16, 300, 70000};
    static const size_t reads[] = {0, 1, 2, 3, 7, 64};
    if (size < 1) return 0;

    struct peer c;
    memset(&c, 0, sizeof c);
    unsigned cfg = data[0];
    c.flags = (cfg & 3) == 3 ? 0 : cfg & 3;
    c.rsv_allowed = cfg & 4 ? WSK_RSV1 : 0;
    c.max = maxes[(cfg >> 3) & 3];
    c.orig = data + 1;
    c.len = size - 1;
    c.s = malloc(c.len ? c.len : 1);
    if (!c.s) return 0;
    memcpy(c.s, c.orig, c.len);

    unsigned mode = cfg >> 5;
    uint32_t rng = (uint32_t)size * 2654435761u;
    for (size_t pos = 0; pos < c.len;) {
        size_t n;
        if (mode < 6) {
            n = reads[mode] ? reads[mode] : c.len;
        } else {
            rng = rng * 1103515245u + 12345u;
            n = 1 + (rng >> 16) % (mode == 6 ? 16 : 300);
        }
        if (n > c.len - pos) n = c.len - pos;
        if (on_read(&c, pos, n) < 0) break;
        pos += n;
    }
    free(c.s);
    return 0;
}
