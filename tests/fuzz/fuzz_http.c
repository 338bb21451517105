/* Fuzz target: the request parser fed in two pieces, then the server's handshake check.
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -Ilib tests/fuzz/fuzz_http.c
 *        lib/parse_http.c lib/msg_handshake.c lib/crypto.c -lmbedcrypto */
#include "msg_handshake.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define INSIDE(p, n, buf, len) ((const char *)(p) >= (buf) && (p) + (n) <= (buf) + (len))

static void check_inside(const wsk_http_request *req, const char *buf, size_t len)
{
    if (!INSIDE(req->method, req->method_len, buf, len) ||
        !INSIDE(req->target, req->target_len, buf, len) || req->nheaders > WSK_HTTP_MAX_HEADERS)
        abort();
    for (size_t i = 0; i < req->nheaders; ++i) {
        const wsk_http_header *h = &req->headers[i];
        if (!INSIDE(h->name, h->name_len, buf, len) || !INSIDE(h->value, h->value_len, buf, len) ||
            h->name_len == 0)
            abort();
    }
}

/* A split point that follows the content (FNV-1a), so inputs stay plain HTTP and every mutation
 * moves the split. */
static size_t split_point(const uint8_t *data, size_t size)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < size; ++i) h = (h ^ data[i]) * 16777619u;
    return h % (size + 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t split = split_point(data, size);

    /* Each piece in an allocation of its own exact size, so an over-read is caught. */
    char *first = malloc(split ? split : 1), *whole = malloc(size ? size : 1);
    if (!first || !whole) abort();
    memcpy(first, data, split);
    memcpy(whole, data, size);

    static wsk_http_request req, once;
    size_t scanned = 0, scanned_once = 0;
    const char *buf = first;
    int r = wsk_http_parse_request(first, split, &scanned, &req);
    if (r == 0) {
        buf = whole;
        r = wsk_http_parse_request(whole, size, &scanned, &req);
    }
    /* A result reached early (a complete head, or an error seen in the first bytes) is the
     * result for the whole input too. */
    int r1 = wsk_http_parse_request(whole, size, &scanned_once, &once);
    if (r != r1) abort();
    if (r > 0) {
        if ((size_t)r > size) abort();
        check_inside(&req, buf, (size_t)r);

        const char *key, *why;
        size_t key_len, from = 0;
        int s = wsk_handshake_check(&req, &key, &key_len, &why);
        if (s == 0) {
            char accept[29];
            if (!INSIDE(key, key_len, buf, (size_t)r) || key_len != 24) abort();
            wsk_accept_key(key, key_len, accept);
            if (strlen(accept) != 28) abort();
        } else if (s != WSK_HS_PLAIN && ((s != 400 && s != 426) || !why)) {
            abort();
        }
        for (size_t i = 0; i < req.nheaders; ++i) {
            const wsk_http_header *h = &req.headers[i];
            (void)wsk_http_has_token(h->value, h->value_len, "upgrade");
        }
        const wsk_http_header *h;
        while ((h = wsk_http_find(req.headers, req.nheaders, "connection", &from)))
            if (h < req.headers || h >= req.headers + req.nheaders) abort();
    }
    free(first);
    free(whole);
    return 0;
}
