/* Close frame payloads: see msg_control.h. */
#include "msg_control.h"
#include "wskit.h"

#include <string.h>

/* A control frame payload is at most 125 bytes (RFC 6455 5.5); the code takes 2 of them. */
#define CLOSE_MAX  125
#define REASON_MAX (CLOSE_MAX - 2)

int wsk_close_code_valid(unsigned code)
{
    /* 7.4.2: 3000-3999 are registered for libraries and frameworks, 4000-4999 are private. */
    if (code >= 3000) return code <= 4999;
    /* 7.4.1: 1004 is reserved; 1005, 1006 and 1015 only report local conditions and "MUST NOT
     * be set as a status code in a Close control frame".  1012-1014 were registered with IANA
     * later.  0-999 and the rest of 1000-2999 have no meaning a peer may send. */
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014);
}

int wsk_close_parse(const uint8_t *p, size_t n, unsigned *code, const uint8_t **reason,
                    size_t *reason_len)
{
    if (n == 0) {
        /* 7.1.5: a close frame without a code is reported as 1005. */
        *code = WSK_CLOSE_NO_STATUS;
        *reason = p;
        *reason_len = 0;
        return 0;
    }
    /* 5.5.1: a body starts with a 2-byte code; 5.5: at most 125 bytes (the frame decoder
     * enforces this already; the check keeps this function safe on its own). */
    if (n == 1 || n > CLOSE_MAX) return WSK_ERR_PROTOCOL;
    unsigned c = (unsigned)p[0] << 8 | p[1];
    if (!wsk_close_code_valid(c)) return WSK_ERR_PROTOCOL;
    /* 5.5.1: the reason is UTF-8; 8.1: invalid UTF-8 fails the connection (1007). */
    if (!wsk_utf8_valid(p + 2, n - 2)) return WSK_ERR_UTF8;
    *code = c;
    *reason = p + 2;
    *reason_len = n - 2;
    return 0;
}

size_t wsk_close_build(uint8_t out[125], unsigned code, const char *reason, size_t len)
{
    if (code == 0) return 0;
    out[0] = (uint8_t)(code >> 8);
    out[1] = (uint8_t)code;
    /* Keep the longest run of whole, valid characters that fits.  A reason cut inside a
     * character, or one that is not UTF-8 at all, would make the peer fail the connection with
     * 1007 (8.1) instead of closing with our code. */
    size_t keep = wsk_utf8_valid_prefix(reason, len < REASON_MAX ? len : REASON_MAX);
    if (keep) memcpy(out + 2, reason, keep);
    return 2 + keep;
}
