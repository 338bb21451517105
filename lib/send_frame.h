/* WebSocket frame header encoder (RFC 6455 section 5.2), internal. */
#ifndef WSK_SEND_FRAME_H
#define WSK_SEND_FRAME_H

#include <stddef.h>
#include <stdint.h>

/* The longest header: 2 bytes, a 64-bit length and a 4-byte masking key. */
#define WSK_FRAME_HDR_MAX 14

/* Header size for a payload of len bytes, with (masked != 0) or without a mask key: what
 * wsk_frame_header writes for the same arguments. */
size_t wsk_frame_header_size(uint64_t len, int masked);

/* Writes a frame header into out and returns its length (2..14).  rsv uses the same bits as
 * wsk_frame.rsv; opcode is a wsk_opcode; len must be below 2^63.  mask NULL writes an unmasked
 * header; otherwise the MASK bit and the 4 key bytes copied from mask (the caller masks the
 * payload with wsk_mask).  Uses the shortest length form (RFC 6455 5.2). */
size_t wsk_frame_header(uint8_t out[WSK_FRAME_HDR_MAX], int fin, unsigned rsv, unsigned opcode,
                        uint64_t len, const uint8_t *mask);

#endif
