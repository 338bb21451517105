/* Fuzz target: the request parser fed in two pieces, then the server's handshake check.
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -Ilib tests/fuzz/fuzz_http.c
 *        lib/parse_http.c lib/msg_handshake.c lib/crypto.c -lmbedcrypto */
#include "msg_handshake.h"

#include "fuzz_split.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int parse(const char *buf, size_t len, size_t *scanned, void *out)
{
    return wsk_http_parse_request(buf, len, scanned, out);
}

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_split pieces;
    fuzz_split_init(&pieces, data, size);

    static wsk_http_request req, once;
    const char *buf;
    int r = fuzz_parse_split(&pieces, size, parse, &req, &once, &buf);
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
    fuzz_split_free(&pieces);
    return 0;
}
