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

/* The same without SSE2 nor the vector lookups (what other machines run), for the tests to
 * compare them. */
int wsk_utf8_validate_portable(uint32_t *state, const uint8_t *p, size_t n);

/* Checks whole 64-byte chunks of p[0..n), which starts between characters, with vector table
 * lookups (parse_utf8_simd.c): returns how many bytes (a multiple of 64) passed.  Within them
 * every pair and triple of bytes is right; a character cut at the end is not checked.  A chunk
 * that fails is not counted, so the bytes from the returned offset on need the automaton. */
typedef size_t wsk_utf8_chunks_fn(const uint8_t *p, size_t n);

/* The chunk checker for a vector unit (WSK_UTF8_BEST: the widest this CPU has), or NULL when the
 * CPU or the build has none of them. */
enum { WSK_UTF8_BEST, WSK_UTF8_SSSE3, WSK_UTF8_AVX2, WSK_UTF8_AVX512 };
wsk_utf8_chunks_fn *wsk_utf8_chunks(int isa);

/* wsk_utf8_validate with a given chunk checker (NULL: none), for the tests and benches. */
int wsk_utf8_validate_with(uint32_t *state, const uint8_t *p, size_t n, wsk_utf8_chunks_fn *chunks);

/* wsk_utf8_valid and wsk_utf8_valid_prefix (whole buffers) are public: see wskit.h. */

#endif
