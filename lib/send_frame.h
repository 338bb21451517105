/* WebSocket frame header encoder (RFC 6455 section 5.2), internal.  Inline: it runs once per
 * message sent, and the call would cost as much as the work. */
#ifndef WSK_SEND_FRAME_H
#define WSK_SEND_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The longest header: 2 bytes, a 64-bit length and a 4-byte masking key. */
#define WSK_FRAME_HDR_MAX 14

/* Header size for a payload of len bytes, with (masked != 0) or without a mask key: what
 * wsk_frame_header writes for the same arguments. */
static inline size_t wsk_frame_header_size(uint64_t len, int masked)
{
    return 2 + (len < 126 ? 0 : len <= 0xFFFF ? 2 : 8) + (masked ? 4 : 0);
}

/* Writes a frame header into out and returns its length (2..14).  rsv uses the same bits as
 * wsk_frame.rsv; opcode is a wsk_opcode; len must be below 2^63.  mask NULL writes an unmasked
 * header; otherwise the MASK bit and the 4 key bytes copied from mask (the caller masks the
 * payload with wsk_mask).  Uses the shortest length form (RFC 6455 5.2). */
static inline size_t wsk_frame_header(uint8_t out[WSK_FRAME_HDR_MAX], int fin, unsigned rsv,
                                      unsigned opcode, uint64_t len, const uint8_t *mask)
{
    size_t n = 2;

    out[0] = (uint8_t)((fin ? 0x80 : 0) | (rsv & 7) << 4 | (opcode & 0xF));
    /* 5.2: "the minimal number of bytes MUST be used to encode the length". */
    if (len < 126) {
        out[1] = (uint8_t)len;
    } else if (len <= 0xFFFF) {
        out[1] = 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        n = 4;
    } else {
        out[1] = 127;
        for (unsigned i = 0; i < 8; i++) out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
        n = 10;
    }
    if (mask) {
        out[1] |= 0x80;
        memcpy(out + n, mask, 4);
        n += 4;
    }
    return n;
}

#endif
