/* Frame header decoder: see parse_frame.h.
 *
 * Two paths share the same checks in the same order: a fast one that decodes straight from the
 * caller's buffer when a whole header is there (the usual case), and a byte-wise one that
 * copies into the 14-byte state when a header straddles reads and checks each byte on arrival. */
#include "parse_frame.h"

#include <string.h>

/* Opcodes defined by RFC 6455 5.2: 0x0-0x2 and 0x8-0xA.  The others are reserved for
 * extensions; none is negotiated here, so receiving one "MUST _Fail the WebSocket
 * Connection_" (5.2). */
#define KNOWN_OPCODES 0x0707u

/* Extended payload length bytes announced by byte 1 (5.2: 126 -> 16 bits, 127 -> 64 bits). */
static inline unsigned ext_bytes(unsigned b1)
{
    unsigned len7 = b1 & 0x7F;
    return len7 < 126 ? 0 : len7 == 126 ? 2 : 8;
}

/* Whole header size announced by byte 1. */
static inline unsigned header_size(unsigned b1)
{
    return 2 + ext_bytes(b1) + (b1 >> 7) * 4;
}

static inline int check_byte0(unsigned b0, unsigned rsv_allowed)
{
    unsigned op = b0 & 0xF, rsv = (b0 >> 4) & 7;

    if (!((KNOWN_OPCODES >> op) & 1)) return WSK_ERR_PROTOCOL;
    if (op & 8) {
        /* 5.5: control frames are never fragmented.  No extension gives control frames RSV
         * meaning; permessage-deflate in particular sets RSV1 only on data (RFC 7692 6.1). */
        if (!(b0 & 0x80) || rsv) return WSK_ERR_PROTOCOL;
        return 0;
    }
    /* 5.2: a non-zero RSV bit without a negotiated meaning fails the connection.  RFC 7692 6.1:
     * RSV1 marks the first frame of a compressed message, so on CONT it is an error too. */
    if (rsv & ~(op == WSK_OP_CONT ? 0u : rsv_allowed)) return WSK_ERR_PROTOCOL;
    return 0;
}

static inline int check_byte1(unsigned b0, unsigned b1, unsigned flags, uint64_t max_payload)
{
    unsigned len7 = b1 & 0x7F;

    /* 5.1: a server closes on an unmasked client frame, a client on a masked server frame. */
    if ((b1 & 0x80) ? (flags & WSK_DEC_FORBID_MASK) : (flags & WSK_DEC_REQUIRE_MASK))
        return WSK_ERR_PROTOCOL;
    /* 5.5: control payloads are at most 125 bytes, so only the 7-bit form is legal. */
    if (b0 & 8) return len7 > 125 ? WSK_ERR_PROTOCOL : 0;
    if (len7 < 126 && len7 > max_payload) return WSK_ERR_TOO_BIG;
    return 0;
}

/* Checks extended length byte h[i] (2 <= i < 2 + ext) once h[2..i] have arrived.  Those bytes
 * are the high part of the length, so the frame is known to be too big as soon as that part
 * alone exceeds max_payload: a peer announcing 2^40 bytes is refused at the first length byte
 * that shows it, without waiting for the remaining ones. */
static int check_len_byte(const uint8_t *h, unsigned i, unsigned ext, uint64_t max_payload)
{
    /* 5.2: "the most significant bit MUST be 0" in the 64-bit form. */
    if (ext == 8 && i == 2 && (h[2] & 0x80)) return WSK_ERR_PROTOCOL;
    uint64_t high = 0;
    for (unsigned j = 2; j <= i; j++) high = high << 8 | h[j];
    if (high > max_payload >> (8 * (2 + ext - 1 - i))) return WSK_ERR_TOO_BIG;
    return 0;
}

/* Payload length of a complete header (network byte order, 5.2). */
static inline uint64_t payload_len(const uint8_t *h, unsigned ext)
{
    uint64_t len = h[1] & 0x7F;
    if (ext) {
        len = 0;
        for (unsigned j = 0; j < ext; j++) len = len << 8 | h[2 + j];
    }
    return len;
}

static void fill(wsk_frame *f, const uint8_t *h, unsigned ext, uint64_t len)
{
    f->len = len;
    f->fin = h[0] >> 7;
    f->rsv = (h[0] >> 4) & 7;
    f->opcode = h[0] & 0xF;
    f->masked = h[1] >> 7;
    if (f->masked)
        memcpy(f->mask, h + 2 + ext, 4);
    else
        memset(f->mask, 0, 4);
}

int wsk_frame_decode(wsk_frame_dec *d, const uint8_t *in, size_t n, unsigned flags,
                     unsigned rsv_allowed, uint64_t max_payload, wsk_frame *f)
{
    if (d->have == 0 && n >= 2 && n >= header_size(in[1])) {
        int r = check_byte0(in[0], rsv_allowed);
        if (!r) r = check_byte1(in[0], in[1], flags, max_payload);
        if (r) return r;
        unsigned ext = ext_bytes(in[1]);
        uint64_t len = payload_len(in, ext);
        /* Only data frames reach here with ext != 0: check_byte1 refused longer control
         * frames, and shorter data frames were held to max_payload there. */
        if (ext == 8 && (len >> 63)) return WSK_ERR_PROTOCOL;
        if (ext && len > max_payload) return WSK_ERR_TOO_BIG;
        fill(f, in, ext, len);
        return (int)header_size(in[1]);
    }

    for (size_t used = 0; used < n;) {
        unsigned i = d->have;
        /* have < header_size() <= 14 here: a complete header returns below and resets it. */
        d->buf[d->have++] = in[used++];
        int r = 0;
        if (i == 0)
            r = check_byte0(d->buf[0], rsv_allowed);
        else if (i == 1)
            r = check_byte1(d->buf[0], d->buf[1], flags, max_payload);
        else if (i < 2 + ext_bytes(d->buf[1]))
            r = check_len_byte(d->buf, i, ext_bytes(d->buf[1]), max_payload);
        if (r) return r;
        if (i >= 1 && d->have == header_size(d->buf[1])) {
            unsigned ext = ext_bytes(d->buf[1]);
            fill(f, d->buf, ext, payload_len(d->buf, ext));
            d->have = 0;
            return (int)used;
        }
    }
    return 0;
}
