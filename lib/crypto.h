/* The hash and encoding the handshake needs, on mbedTLS (internal).  crypto.c and io_tls.c are
 * the only files that include mbedTLS headers; base64 is public (wsk_base64_encode/decode in
 * wskit.h) for the commands. */
#ifndef WSK_CRYPTO_H
#define WSK_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

/* SHA-1 (RFC 3174) of a[0..alen) followed by b[0..blen) into out. */
void wsk_sha1(const void *a, size_t alen, const void *b, size_t blen, uint8_t out[20]);

#endif
