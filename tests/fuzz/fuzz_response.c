/* Fuzz target: the response parser fed in two pieces, then the client's handshake verification.
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -Ilib tests/fuzz/fuzz_response.c
 *        lib/parse_http.c lib/msg_handshake.c -lmbedcrypto */
#include "msg_handshake.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define INSIDE(p, n, buf, len) ((const char *)(p) >= (buf) && (p) + (n) <= (buf) + (len))

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint32_t hash = 2166136261u;
    for (size_t i = 0; i < size; ++i) hash = (hash ^ data[i]) * 16777619u;
    /* The split point and whether extensions were offered follow the content (FNV-1a), so
     * inputs stay plain HTTP and every mutation moves them. */
    size_t split = hash % (size + 1);
    int ext = (hash >> 31) & 1;

    char *first = malloc(split ? split : 1), *whole = malloc(size ? size : 1);
    if (!first || !whole) abort();
    memcpy(first, data, split);
    memcpy(whole, data, size);

    static wsk_http_response res, once;
    size_t scanned = 0, scanned_once = 0;
    const char *buf = first;
    int r = wsk_http_parse_response(first, split, &scanned, &res);
    if (r == 0) {
        buf = whole;
        r = wsk_http_parse_response(whole, size, &scanned, &res);
    }
    /* A result reached early is the result for the whole input too. */
    int r1 = wsk_http_parse_response(whole, size, &scanned_once, &once);
    if (r != r1) abort();
    if (r > 0) {
        if ((size_t)r > size || res.nheaders > WSK_HTTP_MAX_HEADERS || res.status < 0 ||
            res.status > 999 || !INSIDE(res.reason, res.reason_len, buf, (size_t)r))
            abort();
        for (size_t i = 0; i < res.nheaders; ++i) {
            const wsk_http_header *h = &res.headers[i];
            if (!INSIDE(h->name, h->name_len, buf, (size_t)r) ||
                !INSIDE(h->value, h->value_len, buf, (size_t)r))
                abort();
        }
        static const char *const protos[] = {"chat", "superchat"};
        const char *proto, *why;
        size_t proto_len;
        int v = wsk_handshake_client_verify(&res, "dGhlIHNhbXBsZSBub25jZQ==", protos, 2, ext,
                                            &proto, &proto_len, &why);
        if (v == 0 && proto && !INSIDE(proto, proto_len, buf, (size_t)r)) abort();
        if (v != 0 && (v != WSK_ERR_HANDSHAKE || !why || proto)) abort();
    }
    free(first);
    free(whole);
    return 0;
}
