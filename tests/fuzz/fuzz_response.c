/* Fuzz target: the response parser fed in two pieces, then the client's handshake verification.
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -Ilib tests/fuzz/fuzz_response.c
 *        lib/parse_http.c lib/msg_handshake.c -lmbedcrypto */
#include "msg_handshake.h"

#include "fuzz_split.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int parse(const char *buf, size_t len, size_t *scanned, void *out)
{
    return wsk_http_parse_response(buf, len, scanned, out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The split point and whether extensions were offered follow the content. */
    struct fuzz_split pieces;
    fuzz_split_init(&pieces, data, size);
    int ext = (pieces.hash >> 31) & 1;

    static wsk_http_response res, once;
    const char *buf;
    int r = fuzz_parse_split(&pieces, size, parse, &res, &once, &buf);
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
    fuzz_split_free(&pieces);
    return 0;
}
