/* Close frame payloads (RFC 6455 sections 5.5.1 and 7.4), internal. */
#ifndef WSK_MSG_CONTROL_H
#define WSK_MSG_CONTROL_H

#include <stddef.h>
#include <stdint.h>

#include "wskit.h" /* wsk_close_code_valid */

/* Parses a received close payload p[0..n).  Empty: *code = 1005 (no status), *reason_len = 0.
 * One byte, more than 125 bytes, or a code wsk_close_code_valid refuses: WSK_ERR_PROTOCOL.  A
 * reason that is not UTF-8: WSK_ERR_UTF8.  On success *reason points into p (it borrows p's
 * storage) and is not NUL-terminated; on error the outputs are not written. */
int wsk_close_parse(const uint8_t *p, size_t n, unsigned *code, const uint8_t **reason,
                    size_t *reason_len);

/* Builds a close payload in out: the code (big-endian), then reason[0..len) cut to fit 125
 * bytes on a UTF-8 character boundary (a reason that is not UTF-8 is also cut before its first
 * invalid byte).  code 0 builds an empty payload.  Returns its length.  The caller passes a
 * code accepted by wsk_close_code_valid; reason may be NULL when len is 0. */
size_t wsk_close_build(uint8_t out[125], unsigned code, const char *reason, size_t len);

#endif
