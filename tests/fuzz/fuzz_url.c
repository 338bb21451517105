/* Fuzz target: the URL parser, and the request a client builds from what it returns, which the
 * server's parser and handshake check must accept.
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -Ilib tests/fuzz/fuzz_url.c
 *        lib/parse_url.c lib/parse_http.c lib/msg_handshake.c -lmbedcrypto */
#include "msg_handshake.h"
#include "parse_url.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define INSIDE(p, n, buf, len) ((const char *)(p) >= (buf) && (p) + (n) <= (buf) + (len))

/* A NUL-terminated copy of p[0..n) (the parts are not NUL-terminated). */
static char *dup_part(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (!s) abort();
    if (n) memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size ? size : 1);
    if (!s) abort();
    memcpy(s, data, size);
    wsk_url u;
    int r = wsk_url_parse(s, size, &u);
    if (r != 0) {
        if (r != WSK_ERR_URL) abort();
        free(s);
        return 0;
    }
    if (!INSIDE(u.host, u.host_len, s, size) || u.host_len == 0 || u.port < 1 || u.port > 65535 ||
        (u.userinfo && !INSIDE(u.userinfo, u.userinfo_len, s, size)) || u.path_len == 0 ||
        (!INSIDE(u.path, u.path_len, s, size) && !(u.path_len == 1 && u.path[0] == '/')))
        abort();

    char *host = dup_part(u.host, u.host_len), *path = dup_part(u.path, u.path_len);
    char *user = u.userinfo ? dup_part(u.userinfo, u.userinfo_len) : NULL;
    size_t cap = 512 + 2 * size;
    char *req_buf = malloc(cap);
    if (!req_buf) abort();
    int n = wsk_handshake_client_request(req_buf, cap, host, u.port, u.secure, path,
                                         "dGhlIHNhbXBsZSBub25jZQ==", NULL, 0, NULL, user, NULL,
                                         NULL, 0);
    if (n <= 0) abort();
    static wsk_http_request req;
    size_t scanned = 0;
    const char *key, *why;
    size_t key_len;
    if (wsk_http_parse_request(req_buf, (size_t)n, &scanned, &req) != n ||
        wsk_handshake_check(&req, &key, &key_len, &why) != 0)
        abort();
    free(req_buf);
    free(host);
    free(path);
    free(user);
    free(s);
    return 0;
}
