/* Incremental UTF-8 validation (RFC 3629) for text messages and close reasons, internal. */
#ifndef WSK_PARSE_UTF8_H
#define WSK_PARSE_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* The state before the first byte and after each complete character. */
#define WSK_UTF8_ACCEPT 0

/* Validates p[0..n) continuing from *state (start at WSK_UTF8_ACCEPT) and updates *state.
 * Returns 0 while the bytes so far are a prefix of valid UTF-8, WSK_ERR_UTF8 as soon as they
 * cannot be (the bytes up to the first invalid one already fail; later calls keep failing).
 * A complete message is valid when the call returned 0 and *state == WSK_UTF8_ACCEPT. */
int wsk_utf8_validate(uint32_t *state, const uint8_t *p, size_t n);

/* The same without SSE2 (what other machines run), for the tests to compare the two. */
int wsk_utf8_validate_portable(uint32_t *state, const uint8_t *p, size_t n);

/* wsk_utf8_valid and wsk_utf8_valid_prefix (whole buffers) are public: see wskit.h. */

#endif
