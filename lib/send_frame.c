/* Frame header encoder: see send_frame.h. */
#include "send_frame.h"

#include <string.h>

size_t wsk_frame_header_size(uint64_t len, int masked)
{
    return 2 + (len < 126 ? 0 : len <= 0xFFFF ? 2 : 8) + (masked ? 4 : 0);
}

size_t wsk_frame_header(uint8_t out[WSK_FRAME_HDR_MAX], int fin, unsigned rsv, unsigned opcode,
                        uint64_t len, const uint8_t *mask)
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
