/* SHA-1 and base64 on mbedTLS: see crypto.h.  Thin wrappers, so that no other file of the
 * library or the commands needs mbedTLS's headers or its buffer contracts. */
#include "crypto.h"
#include "wskit.h"

#include <mbedtls/base64.h>
#include <mbedtls/sha1.h>

void wsk_sha1(const void *a, size_t alen, const void *b, size_t blen, uint8_t out[20])
{
    mbedtls_sha1_context sha;
    mbedtls_sha1_init(&sha);
    /* The software SHA-1 cannot fail; the _ret results carry no information here. */
    (void)mbedtls_sha1_starts_ret(&sha);
    (void)mbedtls_sha1_update_ret(&sha, a, alen);
    (void)mbedtls_sha1_update_ret(&sha, b, blen);
    (void)mbedtls_sha1_finish_ret(&sha, out);
    mbedtls_sha1_free(&sha);
}

size_t wsk_base64_encode(const void *in, size_t n, char *out)
{
    size_t olen = 0;
    /* With WSK_BASE64_SIZE(n) bytes of room mbedTLS cannot run short. */
    (void)mbedtls_base64_encode((unsigned char *)out, WSK_BASE64_SIZE(n), &olen, in, n);
    out[olen] = '\0'; /* mbedTLS writes none for empty input */
    return olen;
}

long wsk_base64_decode(const char *in, size_t n, void *out)
{
    size_t olen = 0;
    /* mbedTLS also skips whitespace and accepts missing padding; the contract is stricter. */
    for (size_t i = 0; i < n; ++i)
        if (in[i] == ' ' || in[i] == '\t' || in[i] == '\r' || in[i] == '\n') return WSK_ERR_INVAL;
    if (n % 4 || mbedtls_base64_decode(out, n / 4 * 3, &olen, (const unsigned char *)in, n) != 0)
        return WSK_ERR_INVAL;
    return (long)olen;
}
