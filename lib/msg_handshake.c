/* The WebSocket opening handshake: see msg_handshake.h. */
#include "msg_handshake.h"
#include "crypto.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

/* RFC 6455 1.3: the GUID appended to the key before hashing. */
static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

void wsk_accept_key(const char *key, size_t key_len, char out[29])
{
    uint8_t digest[20];
    wsk_sha1(key, key_len, ws_guid, sizeof ws_guid - 1, digest);
    wsk_base64_encode(digest, sizeof digest, out);
}

static int is_b64(unsigned char c)
{
    unsigned char l = c | 0x20;
    return (l >= 'a' && l <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/* RFC 6455 4.2.1 item 5: the key is the base64 of 16 bytes, so exactly 22 characters and "==". */
static int key_ok(const char *k, size_t n)
{
    if (n != 24 || k[22] != '=' || k[23] != '=') return 0;
    for (size_t i = 0; i < 22; ++i)
        if (!is_b64((unsigned char)k[i])) return 0;
    return 1;
}

/* 1 when some header `name` holds `token` in its list (the lists of repeated headers combine,
 * RFC 9110 5.3). */
static int any_has_token(const wsk_http_header *h, size_t n, const char *name, const char *token)
{
    size_t i = 0;
    const wsk_http_header *f;
    while ((f = wsk_http_find(h, n, name, &i)))
        if (wsk_http_has_token(f->value, f->value_len, token)) return 1;
    return 0;
}

/* Number of headers named `name`, and the first in *first. */
static size_t count(const wsk_http_header *h, size_t n, const char *name,
                    const wsk_http_header **first)
{
    size_t i = 0, c = 0;
    const wsk_http_header *f;
    *first = NULL;
    while ((f = wsk_http_find(h, n, name, &i))) {
        if (c++ == 0) *first = f;
    }
    return c;
}

int wsk_handshake_check(const wsk_http_request *req, const char **key, size_t *key_len,
                        const char **why)
{
    const wsk_http_header *h = req->headers, *f;
    size_t n = req->nheaders;
    *key = NULL;
    *key_len = 0;
    *why = NULL;

    /* Any other Upgrade (h2c, ...) may be ignored by a server (RFC 9110 7.8). */
    if (!any_has_token(h, n, "Upgrade", "websocket")) return WSK_HS_PLAIN;

    /* RFC 6455 4.2.1 items 1-6.  Methods are case-sensitive (RFC 9110 9.1). */
    if (req->method_len != 3 || memcmp(req->method, "GET", 3) != 0) {
        *why = "WebSocket upgrade with a method other than GET";
        return 400;
    }
    if (req->minor_version < 1) {
        *why = "WebSocket upgrade needs HTTP/1.1";
        return 400;
    }
    /* RFC 9112 3.2: a server MUST answer 400 to a request with no Host or more than one. */
    size_t hosts = count(h, n, "Host", &f);
    if (hosts != 1) {
        *why = hosts ? "more than one Host header" : "missing Host header";
        return 400;
    }
    if (!any_has_token(h, n, "Connection", "upgrade")) {
        *why = "Connection header does not include upgrade";
        return 400;
    }
    /* Two keys would leave it to chance which one the Accept answers. */
    size_t keys = count(h, n, "Sec-WebSocket-Key", &f);
    if (keys != 1) {
        *why = keys ? "more than one Sec-WebSocket-Key" : "missing Sec-WebSocket-Key";
        return 400;
    }
    if (!key_ok(f->value, f->value_len)) {
        *why = "Sec-WebSocket-Key is not base64 of 16 bytes";
        return 400;
    }
    /* RFC 6455 4.4: an unsupported version gets 426 and the versions we speak, so the client
     * may retry with one of them. */
    size_t i = 0, versions = 0;
    const wsk_http_header *v;
    while ((v = wsk_http_find(h, n, "Sec-WebSocket-Version", &i))) {
        ++versions;
        if (v->value_len != 2 || memcmp(v->value, "13", 2) != 0) {
            *why = "unsupported Sec-WebSocket-Version";
            return 426;
        }
    }
    if (versions == 0) {
        *why = "missing Sec-WebSocket-Version";
        return 426;
    }
    *key = f->value;
    *key_len = f->value_len;
    return 0;
}

int wsk_handshake_client_key(char out[25])
{
    unsigned char raw[16];
    size_t got = 0;
    while (got < sizeof raw) {
        ssize_t r = getrandom(raw + got, sizeof raw - got, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            return WSK_ERR_IO;
        }
        got += (size_t)r;
    }
    wsk_base64_encode(raw, sizeof raw, out);
    return 0;
}

/* Output cursor: stops at the first write that would not leave room for the final NUL. */
struct writer {
    char *p;
    size_t cap, len;
    int bad;
};

static void put(struct writer *w, const char *s, size_t n)
{
    if (w->bad || n >= w->cap - w->len) {
        w->bad = 1;
        return;
    }
    memcpy(w->p + w->len, s, n);
    w->len += n;
}

static void puts_s(struct writer *w, const char *s)
{
    put(w, s, strlen(s));
}

static void header(struct writer *w, const char *name, const char *value)
{
    puts_s(w, name);
    put(w, ": ", 2);
    puts_s(w, value);
    put(w, "\r\n", 2);
}

/* CR or LF in a value would end the header early and let the rest of the string inject headers
 * (or a whole request) of its choosing. */
static int has_crlf(const char *s)
{
    return strpbrk(s, "\r\n") != NULL;
}

/* Length of the name of an extra "Name: value" line, or 0 when it is not "token:" followed by a
 * value without CR or LF. */
static size_t extra_name_len(const char *line)
{
    const char *colon = strchr(line, ':');
    if (!colon || has_crlf(colon) || !wsk_http_is_token(line, (size_t)(colon - line))) return 0;
    return (size_t)(colon - line);
}

/* 1 when one of the user's lines replaces the generated header `name`. */
static int replaced(const char *const *extra, size_t nextra, const char *name)
{
    for (size_t i = 0; i < nextra; ++i)
        if (wsk_http_ieq(extra[i], extra_name_len(extra[i]), name)) return 1;
    return 0;
}

int wsk_handshake_client_request(char *out, size_t cap, const char *host, unsigned port, int secure,
                                 const char *path, const char *key, const char *const *protos,
                                 size_t nprotos, const char *origin, const char *userinfo,
                                 const char *extensions, const char *const *extra, size_t nextra)
{
    if (!host || !key || has_crlf(host) || has_crlf(key) || port > 65535) return WSK_ERR_INVAL;
    if ((origin && has_crlf(origin)) || (extensions && has_crlf(extensions))) return WSK_ERR_INVAL;
    for (size_t i = 0; i < nprotos; ++i)
        if (!wsk_http_is_token(protos[i], strlen(protos[i]))) return WSK_ERR_INVAL;
    for (size_t i = 0; i < nextra; ++i)
        if (extra_name_len(extra[i]) == 0) return WSK_ERR_INVAL;
    if (!path || *path == '\0') path = "/";
    /* A space or control character would split the request line (RFC 9112 3). */
    for (const char *p = path; *p; ++p)
        if ((unsigned char)*p <= ' ' || *p == 0x7f) return WSK_ERR_INVAL;

    struct writer w = {out, cap, 0, 0};
    put(&w, "GET ", 4);
    if (*path != '/') put(&w, "/", 1); /* RFC 6455 3: the resource name starts with "/" */
    puts_s(&w, path);
    put(&w, " HTTP/1.1\r\n", 11);
    if (!replaced(extra, nextra, "Host")) {
        /* RFC 9110 7.2 and RFC 3986 3.2.2: an IPv6 literal goes in brackets, and the port is
         * left out when it is the scheme's default. */
        int bracket = strchr(host, ':') && host[0] != '[';
        put(&w, "Host: ", 6);
        if (bracket) put(&w, "[", 1);
        puts_s(&w, host);
        if (bracket) put(&w, "]", 1);
        if (port && port != (secure ? 443u : 80u)) {
            char num[8];
            int k = snprintf(num, sizeof num, ":%u", port);
            put(&w, num, (size_t)k);
        }
        put(&w, "\r\n", 2);
    }
    if (!replaced(extra, nextra, "Upgrade")) header(&w, "Upgrade", "websocket");
    if (!replaced(extra, nextra, "Connection")) header(&w, "Connection", "Upgrade");
    if (!replaced(extra, nextra, "Sec-WebSocket-Key")) header(&w, "Sec-WebSocket-Key", key);
    if (!replaced(extra, nextra, "Sec-WebSocket-Version"))
        header(&w, "Sec-WebSocket-Version", "13");
    if (nprotos && !replaced(extra, nextra, "Sec-WebSocket-Protocol")) {
        puts_s(&w, "Sec-WebSocket-Protocol: ");
        for (size_t i = 0; i < nprotos; ++i) {
            if (i) put(&w, ", ", 2);
            puts_s(&w, protos[i]);
        }
        put(&w, "\r\n", 2);
    }
    if (origin && !replaced(extra, nextra, "Origin")) header(&w, "Origin", origin);
    if (userinfo && !replaced(extra, nextra, "Authorization")) {
        /* RFC 7617: Basic credentials are base64("user:pass"); encoded in place. */
        puts_s(&w, "Authorization: Basic ");
        size_t len = strlen(userinfo);
        if (w.bad || WSK_BASE64_SIZE(len) > cap - w.len)
            w.bad = 1;
        else
            w.len += wsk_base64_encode(userinfo, len, out + w.len);
        put(&w, "\r\n", 2);
    }
    if (extensions && !replaced(extra, nextra, "Sec-WebSocket-Extensions"))
        header(&w, "Sec-WebSocket-Extensions", extensions);
    for (size_t i = 0; i < nextra; ++i) {
        puts_s(&w, extra[i]);
        put(&w, "\r\n", 2);
    }
    put(&w, "\r\n", 2);
    if (w.bad || w.len > INT_MAX) return WSK_ERR_INVAL;
    out[w.len] = '\0';
    return (int)w.len;
}

/* A static reason for a status other than 101, naming the common ones. */
static const char *status_why(int status)
{
#define ANSWER(n)                                                                                  \
    {                                                                                              \
        n, "server answered " #n " instead of 101"                                                 \
    }
    static const struct {
        int status;
        const char *why;
    } answers[] = {
        ANSWER(200), ANSWER(204), ANSWER(301), ANSWER(302), ANSWER(303), ANSWER(304), ANSWER(307),
        ANSWER(308), ANSWER(400), ANSWER(401), ANSWER(403), ANSWER(404), ANSWER(405), ANSWER(406),
        ANSWER(407), ANSWER(408), ANSWER(409), ANSWER(410), ANSWER(426), ANSWER(429), ANSWER(431),
        ANSWER(500), ANSWER(501), ANSWER(502), ANSWER(503), ANSWER(504), ANSWER(505),
    };
#undef ANSWER
    static const char *const by_class[] = {
        "server answered an invalid status instead of 101",
        "server answered a 1xx status other than 101",
        "server answered a 2xx status instead of 101",
        "server answered a 3xx redirect instead of 101",
        "server answered a 4xx client error instead of 101",
        "server answered a 5xx server error instead of 101",
    };
    for (size_t i = 0; i < sizeof answers / sizeof *answers; ++i)
        if (answers[i].status == status) return answers[i].why;
    int c = status / 100;
    return by_class[c >= 1 && c <= 5 ? c : 0];
}

int wsk_handshake_client_verify(const wsk_http_response *res, const char *key,
                                const char *const *protos, size_t nprotos, int extensions_offered,
                                const char **proto, size_t *proto_len, const char **why)
{
    const wsk_http_header *h = res->headers, *f;
    size_t n = res->nheaders;
    if (proto) *proto = NULL;
    if (proto_len) *proto_len = 0;
    *why = NULL;

#define FAIL(reason)                                                                               \
    do {                                                                                           \
        *why = reason;                                                                             \
        return WSK_ERR_HANDSHAKE;                                                                  \
    } while (0)

    /* RFC 6455 4.1, the client's checks of the server's handshake, in order. */
    if (res->status != 101) FAIL(status_why(res->status));
    size_t c = count(h, n, "Upgrade", &f);
    if (c == 0) FAIL("missing Upgrade header");
    if (c > 1 || !wsk_http_ieq(f->value, f->value_len, "websocket"))
        FAIL("Upgrade is not websocket");
    if (!any_has_token(h, n, "Connection", "upgrade"))
        FAIL("Connection header does not include upgrade");
    c = count(h, n, "Sec-WebSocket-Accept", &f);
    if (c == 0) FAIL("missing Sec-WebSocket-Accept");
    char want[29];
    wsk_accept_key(key, strlen(key), want);
    if (c > 1 || f->value_len != 28 || memcmp(f->value, want, 28) != 0)
        FAIL("Sec-WebSocket-Accept does not match");
    if (!extensions_offered && count(h, n, "Sec-WebSocket-Extensions", &f) > 0)
        FAIL("server chose an extension that was not offered");
    c = count(h, n, "Sec-WebSocket-Protocol", &f);
    if (c > 1) FAIL("more than one Sec-WebSocket-Protocol");
    if (c == 1) {
        size_t i = 0;
        while (i < nprotos && !(strlen(protos[i]) == f->value_len &&
                                memcmp(protos[i], f->value, f->value_len) == 0))
            ++i;
        if (i == nprotos) FAIL("server chose a subprotocol that was not offered");
        if (proto) *proto = f->value;
        if (proto_len) *proto_len = f->value_len;
    }
#undef FAIL
    return 0;
}
