/* Incremental WebSocket frame header decoder (RFC 6455 section 5.2), internal.
 *
 * Bytes arrive in pieces of any size.  The decoder holds at most one partial header and refuses
 * a header as soon as the byte that proves it invalid has arrived, so a peer cannot make the
 * receiver wait (or buffer) for the rest of a frame that will be refused anyway. */
#ifndef WSK_PARSE_FRAME_H
#define WSK_PARSE_FRAME_H

#include "wskit.h"

/* One decoded frame header. */
typedef struct wsk_frame {
    uint64_t len;    /* payload length */
    uint8_t mask[4]; /* masking key (valid when masked, zero otherwise) */
    uint8_t fin;     /* 1 when FIN is set */
    uint8_t rsv;     /* RSV1..RSV3 as bits 0x4, 0x2, 0x1, i.e. (byte0 >> 4) & 7 */
    uint8_t opcode;  /* wsk_opcode */
    uint8_t masked;  /* 1 when the MASK bit is set */
} wsk_frame;

/* Decoder state between calls: zero-initialise; 15 bytes. */
typedef struct wsk_frame_dec {
    uint8_t have;    /* header bytes held in buf */
    uint8_t buf[14]; /* the partial header received so far */
} wsk_frame_dec;

/* Flags for wsk_frame_decode. */
enum {
    WSK_DEC_REQUIRE_MASK = 1, /* server role: client frames must be masked (RFC 6455 5.1) */
    WSK_DEC_FORBID_MASK = 2,  /* client role: server frames must not be masked */
};

/* The RSV1 bit in wsk_frame.rsv and rsv_allowed: "compressed" under permessage-deflate. */
#define WSK_RSV1 0x4

/* Decodes one frame header from in[0..n) (n may be 0; `in` is only read during the call).
 * Returns >0 when the header is complete: the number of bytes of `in` it used (1..14); *f is
 * filled and d is reset for the next frame.  Returns 0 when more bytes are needed: all n bytes
 * were kept in d.  Returns WSK_ERR_PROTOCOL or WSK_ERR_TOO_BIG on a header that must fail the
 * connection, at the first byte that proves it; d is then spent (zero it to reuse it).
 *
 * Checks: reserved opcodes; RSV bits outside rsv_allowed on TEXT/BINARY, any RSV bit on CONT
 * and control frames; control frames with FIN clear or over 125 bytes; the MASK bit against
 * flags; a 64-bit length with its top bit set.  A data frame longer than max_payload is
 * WSK_ERR_TOO_BIG (UINT64_MAX: no limit).  A length in a longer form than needed is accepted. */
int wsk_frame_decode(wsk_frame_dec *d, const uint8_t *in, size_t n, unsigned flags,
                     unsigned rsv_allowed, uint64_t max_payload, wsk_frame *f);

#endif
