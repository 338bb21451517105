/* Unit tests of the opening handshake (lib/msg_handshake.c). */
#include "msg_handshake.h"
#include "test.h"

#include <mbedtls/base64.h>

static const char key[] = "dGhlIHNhbXBsZSBub25jZQ==";
static const char rfc_accept[] = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/* Parses "GET / HTTP/1.1" (or `line`) plus `headers` and classifies it. */
static int classify(const char *line, const char *headers, const char **why, const char **k,
                    size_t *klen)
{
    char buf[2048];
    int n = snprintf(buf, sizeof buf, "%s\r\n%s\r\n", line ? line : "GET /chat HTTP/1.1", headers);
    static wsk_http_request req;
    size_t scanned = 0;
    int r = wsk_http_parse_request(guarded(buf, (size_t)n), (size_t)n, &scanned, &req);
    if (r != n) return -1000 + r;
    const char *kk;
    size_t kl;
    r = wsk_handshake_check(&req, k ? k : &kk, klen ? klen : &kl, why);
    return r;
}

#define HOST "Host: server.example.com\r\n"
#define UPG  "Upgrade: websocket\r\n"
#define CONN "Connection: Upgrade\r\n"
#define KEY  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
#define VER  "Sec-WebSocket-Version: 13\r\n"

static void test_accept(void)
{
    char out[29];
    wsk_accept_key(guarded(key, 24), 24, out);
    CHECK(strcmp(out, rfc_accept) == 0, "RFC 6455 1.3 example: %s", out);
    wsk_accept_key("", 0, out);
    CHECK(strlen(out) == 28, "any key gives 28 characters");
}

static void test_check(void)
{
    const char *why, *k;
    size_t kl;
    int r = classify(NULL, HOST UPG CONN KEY VER "Origin: http://example.com\r\n", &why, &k, &kl);
    CHECK(r == 0 && kl == 24 && memcmp(k, key, 24) == 0 && !why, "RFC 6455 1.3 request accepted");
    r = classify(NULL,
                 HOST
                 "connection: keep-alive, Upgrade\r\nupgrade: WebSocket\r\n"
                 "sec-websocket-key:   dGhlIHNhbXBsZSBub25jZQ==  \r\nsec-websocket-version: 13\r\n",
                 &why, &k, &kl);
    CHECK(r == 0 && kl == 24, "Firefox style: case-insensitive names and token lists");
    r = classify(NULL, HOST "Connection: keep-alive\r\n" UPG "Connection: upgrade\r\n" KEY VER,
                 &why, NULL, NULL);
    CHECK(r == 0, "Connection tokens over two headers");
    r = classify(NULL, HOST "Upgrade: h2c, websocket\r\n" CONN KEY VER, &why, NULL, NULL);
    CHECK(r == 0, "websocket among several Upgrade tokens");

    CHECK(classify(NULL, HOST, &why, NULL, NULL) == WSK_HS_PLAIN && !why, "plain GET");
    CHECK(classify("POST /form HTTP/1.0", "Content-Length: 0\r\n", &why, NULL, NULL) ==
              WSK_HS_PLAIN,
          "plain POST over HTTP/1.0");
    CHECK(classify(NULL, HOST "Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n", &why, NULL,
                   NULL) == WSK_HS_PLAIN,
          "Upgrade: h2c is plain");
    CHECK(classify(NULL, HOST CONN KEY VER, &why, NULL, NULL) == WSK_HS_PLAIN,
          "no Upgrade header is plain");

    struct {
        const char *line, *headers, *what;
        int status;
    } bad[] = {
        {"POST /chat HTTP/1.1", HOST UPG CONN KEY VER, "POST", 400},
        {"get /chat HTTP/1.1", HOST UPG CONN KEY VER, "lowercase get", 400},
        {"GET /chat HTTP/1.0", HOST UPG CONN KEY VER, "HTTP/1.0", 400},
        {NULL, UPG CONN KEY VER, "no Host", 400},
        {NULL, HOST HOST UPG CONN KEY VER, "two Hosts", 400},
        {NULL, HOST UPG KEY VER, "no Connection", 400},
        {NULL, HOST UPG "Connection: keep-alive\r\n" KEY VER, "Connection: keep-alive", 400},
        {NULL, HOST UPG "Connection: upgrade-please\r\n" KEY VER, "Connection: not a token", 400},
        {NULL, HOST UPG CONN VER, "no key", 400},
        {NULL, HOST UPG CONN KEY KEY VER, "two keys", 400},
        {NULL, HOST UPG CONN "Sec-WebSocket-Key: \r\n" VER, "empty key", 400},
        {NULL, HOST UPG CONN "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ\r\n" VER, "no padding",
         400},
        {NULL, HOST UPG CONN "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=\r\n" VER, "one '='", 400},
        {NULL, HOST UPG CONN "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZ===\r\n" VER, "three '='",
         400},
        {NULL, HOST UPG CONN "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j*Q==\r\n" VER, "bad char",
         400},
        {NULL, HOST UPG CONN "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==AAAA\r\n" VER, "20 bytes",
         400},
        {NULL,
         HOST UPG CONN "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n" VER,
         "32 bytes", 400},
        {NULL, HOST UPG CONN "Sec-WebSocket-Key: dGhl IHNhbXBsZSBub25jZQ==\r\n" VER, "space", 400},
        {NULL, HOST UPG CONN KEY, "no version", 426},
        {NULL, HOST UPG CONN KEY "Sec-WebSocket-Version: 8\r\n", "version 8", 426},
        {NULL, HOST UPG CONN KEY "Sec-WebSocket-Version: 13, 8\r\n", "version list", 426},
        {NULL, HOST UPG CONN KEY VER "Sec-WebSocket-Version: 8\r\n", "versions 13 and 8", 426},
        {NULL, HOST UPG CONN KEY "Sec-WebSocket-Version: 013\r\n", "version 013", 426},
        {NULL, HOST UPG CONN KEY "Sec-WebSocket-Version:\r\n", "empty version", 426},
    };
    size_t fails = 0, nb = sizeof bad / sizeof *bad;
    for (size_t i = 0; i < nb; ++i) {
        why = NULL;
        r = classify(bad[i].line, bad[i].headers, &why, &k, &kl);
        if (!EXPECT(r == bad[i].status && why && *why && !strchr(why, '\n') && !k, "%s: %d (%s)",
                    bad[i].what, r, why ? why : "no reason"))
            ++fails;
    }
    CHECK(fails == 0, "%zu refused upgrades give their status and a reason", nb);
}

static void test_client_key(void)
{
    char a[25], b[25];
    unsigned char raw[20];
    size_t olen = 0;
    int ra = wsk_handshake_client_key(a), rb = wsk_handshake_client_key(b);
    int dec = mbedtls_base64_decode(raw, sizeof raw, &olen, (const unsigned char *)a, strlen(a));
    CHECK(ra == 0 && rb == 0 && strlen(a) == 24 && dec == 0 && olen == 16 && strcmp(a, b) != 0,
          "client key: base64 of 16 random bytes (%s)", a);
}

/* Builds a request, parses it back and classifies it. */
static int roundtrip(const char *out, int n, wsk_http_request *req)
{
    size_t scanned = 0;
    const char *k, *why;
    size_t kl;
    if (n <= 0 || wsk_http_parse_request(guarded(out, (size_t)n), (size_t)n, &scanned, req) != n)
        return -1;
    return wsk_handshake_check(req, &k, &kl, &why);
}

/* The value of the only header `name` in req, or NULL when there is none or more than one. */
static const char *value_of(const wsk_http_request *req, const char *name)
{
    static char v[256];
    size_t from = 0;
    const wsk_http_header *h = wsk_http_find(req->headers, req->nheaders, name, &from);
    if (!h || wsk_http_find(req->headers, req->nheaders, name, &from)) return NULL;
    snprintf(v, sizeof v, "%.*s", (int)h->value_len, h->value);
    return v;
}

/* 1 when req has exactly one header `name` and its value is `want`. */
static int has(const wsk_http_request *req, const char *name, const char *want)
{
    const char *v = value_of(req, name);
    return v && strcmp(v, want) == 0;
}

static void test_client_request(void)
{
    char out[1024];
    static wsk_http_request req;
    int n = wsk_handshake_client_request(out, sizeof out, "server.example.com", 80, 0, "/chat", key,
                                         NULL, 0, NULL, NULL, NULL, NULL, 0);
    static const char want[] = "GET /chat HTTP/1.1\r\n"
                               "Host: server.example.com\r\n"
                               "Upgrade: websocket\r\n"
                               "Connection: Upgrade\r\n"
                               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                               "Sec-WebSocket-Version: 13\r\n"
                               "\r\n";
    CHECK(n == (int)sizeof want - 1 && strcmp(out, want) == 0, "minimal request, exact bytes");
    CHECK(roundtrip(out, n, &req) == 0, "minimal request passes the server's check");

    const char *protos[] = {"chat", "superchat"};
    const char *extra[] = {"X-Trace: 1", "Cookie: a=b; c=d"};
    n = wsk_handshake_client_request(out, sizeof out, "::1", 8443, 1, "/a?b=c", key, protos, 2,
                                     "https://example.com", "user:pass",
                                     "permessage-deflate; client_max_window_bits", extra, 2);
    int r = roundtrip(out, n, &req);
    CHECK(r == 0 && strncmp(out, "GET /a?b=c HTTP/1.1\r\n", 21) == 0 &&
              has(&req, "Host", "[::1]:8443") &&
              has(&req, "Sec-WebSocket-Protocol", "chat, superchat") &&
              has(&req, "Origin", "https://example.com") &&
              has(&req, "Authorization", "Basic dXNlcjpwYXNz") &&
              has(&req, "Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits") &&
              has(&req, "X-Trace", "1") && has(&req, "Cookie", "a=b; c=d"),
          "full request: IPv6 host, protocols, origin, basic auth, extensions, extra lines");

    struct {
        const char *host;
        unsigned port;
        int secure;
        const char *want;
    } hosts[] = {
        {"h", 80, 0, "h"},
        {"h", 443, 1, "h"},
        {"h", 443, 0, "h:443"},
        {"h", 80, 1, "h:80"},
        {"h", 0, 1, "h"},
        {"h", 65535, 0, "h:65535"},
        {"::1", 80, 0, "[::1]"},
        {"[::1]", 81, 0, "[::1]:81"},
        {"10.0.0.1", 8080, 0, "10.0.0.1:8080"},
    };
    size_t fails = 0, nh = sizeof hosts / sizeof *hosts;
    for (size_t i = 0; i < nh; ++i) {
        n = wsk_handshake_client_request(out, sizeof out, hosts[i].host, hosts[i].port,
                                         hosts[i].secure, "/", key, NULL, 0, NULL, NULL, NULL, NULL,
                                         0);
        const char *got = roundtrip(out, n, &req) == 0 ? value_of(&req, "Host") : NULL;
        if (!EXPECT(got && !strcmp(got, hosts[i].want), "host %s port %u: %s", hosts[i].host,
                    hosts[i].port, got ? got : "(failed)"))
            ++fails;
    }
    CHECK(fails == 0, "%zu Host headers: default ports left out, IPv6 in brackets", nh);

    n = wsk_handshake_client_request(out, sizeof out, "h", 80, 0, NULL, key, NULL, 0, NULL, NULL,
                                     NULL, NULL, 0);
    CHECK(n > 0 && !strncmp(out, "GET / HTTP/1.1\r\n", 16), "NULL path is /");
    n = wsk_handshake_client_request(out, sizeof out, "h", 80, 0, "?x=1", key, NULL, 0, NULL, NULL,
                                     NULL, NULL, 0);
    int m = wsk_handshake_client_request(out + 512, 512, "h", 80, 0, "chat", key, NULL, 0, NULL,
                                         NULL, NULL, NULL, 0);
    CHECK(n > 0 && !strncmp(out, "GET /?x=1 HTTP/1.1\r\n", 20) && m > 0 &&
              !strncmp(out + 512, "GET /chat HTTP/1.1\r\n", 20),
          "a path not starting with / gets one");

    const char *over[] = {"Host: other.example:9", "origin: http://o.example", "X-A: b"};
    n = wsk_handshake_client_request(out, sizeof out, "h", 80, 0, "/", key, NULL, 0,
                                     "http://generated", NULL, NULL, over, 3);
    r = roundtrip(out, n, &req);
    CHECK(r == 0 && has(&req, "Host", "other.example:9") && has(&req, "Origin", "http://o.example"),
          "user Host and Origin replace the generated ones");

    /* Every capacity below the needed one fails cleanly; the needed one (with the NUL) works. */
    int need = wsk_handshake_client_request(out, sizeof out, "::1", 8443, 1, "/a?b=c", key, protos,
                                            2, "https://example.com", "user:pass",
                                            "permessage-deflate", extra, 2);
    fails = 0;
    for (int cap = 0; cap <= need; ++cap) { // need bytes leave no room for the NUL
        char *dst = guarded("", 0) - cap;   /* ends at the guard page */
        r = wsk_handshake_client_request(dst, (size_t)cap, "::1", 8443, 1, "/a?b=c", key, protos, 2,
                                         "https://example.com", "user:pass", "permessage-deflate",
                                         extra, 2);
        if (!EXPECT(r == WSK_ERR_INVAL, "cap %d: %d", cap, r)) ++fails;
    }
    char *dst = guarded("", 0) - (need + 1);
    r = wsk_handshake_client_request(dst, (size_t)need + 1, "::1", 8443, 1, "/a?b=c", key, protos,
                                     2, "https://example.com", "user:pass", "permessage-deflate",
                                     extra, 2);
    CHECK(fails == 0 && r == need && dst[need] == '\0',
          "capacities 0..%d refused, %d (length + NUL) accepted", need, need + 1);

    struct {
        const char *host, *path, *origin, *ext, *extra, *proto, *what;
    } bad[] = {
        {"h\r\nX: y", "/", NULL, NULL, NULL, NULL, "CRLF in host"},
        {"h", "/a b", NULL, NULL, NULL, NULL, "space in path"},
        {"h", "/a\r\nX: y", NULL, NULL, NULL, NULL, "CRLF in path"},
        {"h", "/", "http://o\r\nX: y", NULL, NULL, NULL, "CRLF in origin"},
        {"h", "/", "http://o\n", NULL, NULL, NULL, "LF in origin"},
        {"h", "/", NULL, "permessage-deflate\r\n", NULL, NULL, "CRLF in extensions"},
        {"h", "/", NULL, NULL, "X: a\r\nY: b", NULL, "CRLF in an extra line"},
        {"h", "/", NULL, NULL, "no colon", NULL, "extra line without a colon"},
        {"h", "/", NULL, NULL, ": v", NULL, "extra line without a name"},
        {"h", "/", NULL, NULL, "Bad Name: v", NULL, "extra line with a space in its name"},
        {"h", "/", NULL, NULL, NULL, "a b", "protocol with a space"},
        {"h", "/", NULL, NULL, NULL, "a,b", "protocol with a comma"},
        {"h", "/", NULL, NULL, NULL, "", "empty protocol"},
        {NULL, "/", NULL, NULL, NULL, NULL, "no host"},
    };
    fails = 0;
    size_t nbad = sizeof bad / sizeof *bad;
    for (size_t i = 0; i < nbad; ++i) {
        const char *ex[] = {bad[i].extra}, *pr[] = {bad[i].proto};
        r = wsk_handshake_client_request(out, sizeof out, bad[i].host, 80, 0, bad[i].path, key, pr,
                                         bad[i].proto ? 1 : 0, bad[i].origin, NULL, bad[i].ext, ex,
                                         bad[i].extra ? 1 : 0);
        if (!EXPECT(r == WSK_ERR_INVAL, "%s: %d", bad[i].what, r)) ++fails;
    }
    r = wsk_handshake_client_request(out, sizeof out, "h", 65536, 0, "/", key, NULL, 0, NULL, NULL,
                                     NULL, NULL, 0);
    CHECK(fails == 0 && r == WSK_ERR_INVAL, "%zu header injections and bad arguments refused",
          nbad + 1);
}

/* Parses a response made of a status line and headers, then verifies it. */
static int verify(const char *status_line, const char *headers, const char *const *protos,
                  size_t nprotos, int ext, const char **proto, size_t *plen, const char **why)
{
    char buf[2048];
    int n = snprintf(buf, sizeof buf, "%s\r\n%s\r\n", status_line, headers);
    static wsk_http_response res;
    size_t scanned = 0;
    int r = wsk_http_parse_response(guarded(buf, (size_t)n), (size_t)n, &scanned, &res);
    if (r != n) return -1000 + r;
    return wsk_handshake_client_verify(&res, key, protos, nprotos, ext, proto, plen, why);
}

#define S101  "HTTP/1.1 101 Switching Protocols"
#define RUPG  "Upgrade: websocket\r\n"
#define RCONN "Connection: Upgrade\r\n"
#define RACC  "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"

static void test_client_verify(void)
{
    const char *why = "x", *proto = "x";
    size_t plen = 9;
    const char *protos[] = {"chat", "superchat"};
    int r = verify(S101, RUPG RCONN RACC, NULL, 0, 0, &proto, &plen, &why);
    CHECK(r == 0 && !why && !proto && plen == 0, "RFC 6455 1.3 response accepted");
    r = verify(S101,
               "upgrade: WebSocket\r\nconnection: keep-alive, upgrade\r\n"
               "sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
               "Sec-WebSocket-Protocol: superchat\r\n"
               "Sec-WebSocket-Extensions: permessage-deflate\r\n",
               protos, 2, 1, &proto, &plen, &why);
    CHECK(r == 0 && plen == 9 && !memcmp(proto, "superchat", 9),
          "chosen subprotocol and offered extension");
    r = verify(S101, RUPG RCONN RACC, protos, 2, 1, NULL, NULL, &why);
    CHECK(r == 0, "no subprotocol chosen, proto pointers may be NULL");

    r = verify("HTTP/1.1 200 OK", "Content-Length: 0\r\n", NULL, 0, 0, NULL, NULL, &why);
    CHECK(r == WSK_ERR_HANDSHAKE && !strcmp(why, "server answered 200 instead of 101"), "200: %s",
          why);
    r = verify("HTTP/1.1 299 Odd", "", NULL, 0, 0, NULL, NULL, &why);
    CHECK(r == WSK_ERR_HANDSHAKE && strstr(why, "2xx"), "299: %s", why);
    r = verify("HTTP/1.1 999 Odd", "", NULL, 0, 0, NULL, NULL, &why);
    CHECK(r == WSK_ERR_HANDSHAKE && strstr(why, "invalid"), "999: %s", why);

    struct {
        const char *headers;
        int ext;
        size_t nprotos;
        const char *why;
    } bad[] = {
        {RCONN RACC, 0, 0, "missing Upgrade header"},
        {"Upgrade: websocket2\r\n" RCONN RACC, 0, 0, "Upgrade is not websocket"},
        {"Upgrade: h2c, websocket\r\n" RCONN RACC, 0, 0, "Upgrade is not websocket"},
        {RUPG RUPG RCONN RACC, 0, 0, "Upgrade is not websocket"},
        {RUPG RACC, 0, 0, "Connection header does not include upgrade"},
        {RUPG "Connection: keep-alive\r\n" RACC, 0, 0,
         "Connection header does not include upgrade"},
        {RUPG RCONN, 0, 0, "missing Sec-WebSocket-Accept"},
        {RUPG RCONN "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo\r\n", 0, 0,
         "Sec-WebSocket-Accept does not match"},
        {RUPG RCONN "Sec-WebSocket-Accept: S3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", 0, 0,
         "Sec-WebSocket-Accept does not match"},
        {RUPG RCONN "Sec-WebSocket-Accept: dGhlIHNhbXBsZSBub25jZQ==\r\n", 0, 0,
         "Sec-WebSocket-Accept does not match"},
        {RUPG RCONN RACC RACC, 0, 0, "Sec-WebSocket-Accept does not match"},
        {RUPG RCONN RACC "Sec-WebSocket-Extensions: permessage-deflate\r\n", 0, 0,
         "server chose an extension that was not offered"},
        {RUPG RCONN RACC "Sec-WebSocket-Protocol: chat\r\n", 0, 0,
         "server chose a subprotocol that was not offered"},
        {RUPG RCONN RACC "Sec-WebSocket-Protocol: Chat\r\n", 0, 2,
         "server chose a subprotocol that was not offered"},
        {RUPG RCONN RACC "Sec-WebSocket-Protocol: chat, superchat\r\n", 0, 2,
         "server chose a subprotocol that was not offered"},
        {RUPG RCONN RACC "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: chat\r\n", 0, 2,
         "more than one Sec-WebSocket-Protocol"},
    };
    size_t fails = 0, nb = sizeof bad / sizeof *bad;
    for (size_t i = 0; i < nb; ++i) {
        proto = "x";
        r = verify(S101, bad[i].headers, protos, bad[i].nprotos, bad[i].ext, &proto, &plen, &why);
        if (!EXPECT(r == WSK_ERR_HANDSHAKE && why && !strcmp(why, bad[i].why) && !proto,
                    "case %zu: %d %s", i, r, why ? why : "(none)"))
            ++fails;
    }
    CHECK(fails == 0, "%zu bad responses refused with their reason", nb);
}

int main(void)
{
    test_accept();
    test_check();
    test_client_key();
    test_client_request();
    test_client_verify();
    return TEST_DONE();
}
