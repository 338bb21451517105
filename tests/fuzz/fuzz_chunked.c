/* Fuzz target: the chunked body decoder (wsk_http_chunked_decode) and Content-Length.  Any
 * bytes as a chunked body, decoded whole and in three pieces at content-derived points: the
 * same data, the same verdict and the same bytes after the body either way; the data never
 * longer than the input.  Each piece lies in an allocation of its own exact size.
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -Ilib tests/fuzz/fuzz_chunked.c
 *        lib/parse_http.c */
#include "parse_http.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct run {
    uint8_t *data; /* decoded data, then the bytes after the body */
    size_t len, rest;
    long r;
};

/* Decodes data[0..size) in pieces ending at cuts[0], cuts[1], size. */
static void decode(const uint8_t *data, size_t size, const size_t cuts[2], struct run *o)
{
    wsk_http_chunked d;
    memset(&d, 0, sizeof d);
    o->data = malloc(size + 1);
    o->len = o->rest = 0;
    o->r = WSK_HTTP_PARTIAL;
    size_t from = 0;
    for (int i = 0; i < 3 && o->r == WSK_HTTP_PARTIAL; ++i) {
        size_t to = i < 2 ? cuts[i] : size, n = to - from;
        uint8_t *piece = malloc(n ? n : 1);
        if (!piece || !o->data) abort();
        memcpy(piece, data + from, n);
        size_t len = n;
        o->r = wsk_http_chunked_decode(&d, piece, &len);
        if (len > n) abort();
        if (o->r >= 0 && (size_t)o->r > n - len) abort();
        memcpy(o->data + o->len, piece, len);
        o->len += len;
        if (o->r >= 0) {
            /* What followed the body: left in the piece, then what was not fed. */
            memcpy(o->data + o->len, piece + len, (size_t)o->r);
            memcpy(o->data + o->len + o->r, data + to, size - to);
            o->rest = (size_t)o->r + size - to;
        }
        free(piece);
        from = to;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < size; ++i) h = (h ^ data[i]) * 16777619u;
    size_t a = h % (size + 1), b = (h >> 16) % (size + 1);
    size_t whole_cuts[2] = {size, size}, cuts[2] = {a < b ? a : b, a < b ? b : a};
    struct run w, s;
    decode(data, size, whole_cuts, &w);
    decode(data, size, cuts, &s);
    int done_w = w.r >= 0, done_s = s.r >= 0;
    if (done_w != done_s || (!done_w && w.r != s.r) || w.len != s.len || w.rest != s.rest ||
        memcmp(w.data, s.data, w.len + w.rest) != 0 || w.len + w.rest > size)
        abort();
    free(w.data);
    free(s.data);

    /* The same bytes as one Content-Length value: a number only when all digits. */
    wsk_http_header hd = {"Content-Length", 14, (const char *)data, size};
    uint64_t len = 0;
    int r = wsk_http_content_length(&hd, 1, &len);
    int digits = size > 0;
    for (size_t i = 0; i < size; ++i) digits &= data[i] >= '0' && data[i] <= '9';
    if (r != (digits ? 1 : WSK_ERR_HTTP)) abort();
    return 0;
}
