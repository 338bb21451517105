/* Unit tests of the HTTP/1.x head parser (lib/parse_http.c). */
#include "parse_http.h"
#include "test.h"

#include <stdint.h>

static int parse_req(const char *s, size_t n, wsk_http_request *req)
{
    size_t scanned = 0;
    return wsk_http_parse_request(guarded(s, n), n, &scanned, req);
}

static int parse_res(const char *s, size_t n, wsk_http_response *res)
{
    size_t scanned = 0;
    return wsk_http_parse_response(guarded(s, n), n, &scanned, res);
}

/* Feeds s as prefixes of growing length, carrying scanned, and returns the first non-zero result
 * (or 0); *at gets the prefix length that produced it.  Also checks that each incomplete call
 * recorded the whole prefix as scanned. */
static int split_req(const char *s, size_t n, size_t *at, int *scan_ok)
{
    wsk_http_request req;
    size_t scanned = 0;
    *scan_ok = 1;
    for (size_t k = 0; k <= n; ++k) {
        int r = wsk_http_parse_request(guarded(s, k), k, &scanned, &req);
        if (r != 0) {
            *at = k;
            return r;
        }
        if (k > 2 && scanned != k) *scan_ok = 0;
    }
    *at = n;
    return 0;
}

static int split_res(const char *s, size_t n, size_t *at)
{
    wsk_http_response res;
    size_t scanned = 0;
    for (size_t k = 0; k <= n; ++k) {
        int r = wsk_http_parse_response(guarded(s, k), k, &scanned, &res);
        if (r != 0) {
            *at = k;
            return r;
        }
    }
    *at = n;
    return 0;
}

static int eq(const char *p, size_t n, const char *s)
{
    return n == strlen(s) && memcmp(p, s, n) == 0;
}

static const char chrome[] =
    "GET /chat?room=1 HTTP/1.1\r\n"
    "Host: example.com:8080\r\n"
    "Connection: Upgrade\r\n"
    "Pragma: no-cache\r\n"
    "Cache-Control: no-cache\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0.0.0\r\n"
    "Upgrade: websocket\r\n"
    "Origin: http://example.com\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Accept-Language: en-US,en;q=0.9\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    "\r\n";

/* Inputs that must be rejected with WSK_ERR_HTTP, each complete. */
static const char *const bad_requests[] = {
    "GET  / HTTP/1.1\r\n\r\n",                          /* two spaces */
    "GET /  HTTP/1.1\r\n\r\n",                          /* two spaces */
    "GET / HTTP/1.1 \r\n\r\n",                          /* trailing space */
    "GET HTTP/1.1\r\n\r\n",                             /* no target */
    "GET / HTTP/2.0\r\n\r\n",                           /* HTTP/2 */
    "GET / HTTP/1.10\r\n\r\n",                          /* two-digit minor */
    "GET / http/1.1\r\n\r\n",                           /* lowercase version */
    "GET / HTTP/1.\r\n\r\n",                            /* no minor */
    "GET / HTTP/1.1\r\r\n\r\n",                         /* CR CR LF */
    "GET / HTTP/1.1\rX: y\r\n\r\n",                     /* bare CR ends a line */
    "G(T / HTTP/1.1\r\n\r\n",                           /* '(' in method */
    "GET /\x01 HTTP/1.1\r\n\r\n",                       /* control in target */
    "GET /\x7f HTTP/1.1\r\n\r\n",                       /* DEL in target */
    "GET /\tx HTTP/1.1\r\n\r\n",                        /* tab in target */
    "\tGET / HTTP/1.1\r\n\r\n",                         /* leading tab */
    " GET / HTTP/1.1\r\n\r\n",                          /* leading space */
    "\r\n\r\nGET / HTTP/1.1\r\n\r\n",                   /* two empty lines first */
    "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n\n", /* TLS ClientHello */
    "GET / HTTP/1.1\r\nHost : x\r\n\r\n",               /* space before colon */
    "GET / HTTP/1.1\r\nHost\t: x\r\n\r\n",              /* tab before colon */
    "GET / HTTP/1.1\r\nHost x\r\n\r\n",                 /* no colon */
    "GET / HTTP/1.1\r\n: x\r\n\r\n",                    /* empty name */
    "GET / HTTP/1.1\r\nX(y): x\r\n\r\n",                /* '(' in name */
    "GET / HTTP/1.1\r\nX\x80: x\r\n\r\n",               /* obs-text in name */
    "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",             /* obs-fold (SP) */
    "GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n",            /* obs-fold (HTAB) */
    "GET / HTTP/1.1\r\n Host: x\r\n\r\n",               /* whitespace after the request line */
    "GET / HTTP/1.1\r\nX: a\x01\r\n\r\n",               /* control character in value */
    "GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n",               /* DEL in value */
    "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",                /* bare CR in value */
    "GET / HTTP/1.1\r\nX: a\r\r\n\r\n",                 /* CR CR LF */
    "GET / HTTP/1.1\r\nX: y\r\n\rZ\n\n",                /* CR then text instead of an empty line */
};

static void test_basic(void)
{
    wsk_http_request req;
    size_t n = sizeof chrome - 1;
    int r = parse_req(chrome, n, &req);
    CHECK(r == (int)n, "Chrome request parses, length %d", r);
    CHECK(eq(req.method, req.method_len, "GET") && eq(req.target, req.target_len, "/chat?room=1") &&
              req.minor_version == 1,
          "request line");
    CHECK(req.nheaders == 12, "12 headers");
    CHECK(eq(req.headers[0].name, req.headers[0].name_len, "Host") &&
              eq(req.headers[0].value, req.headers[0].value_len, "example.com:8080"),
          "first header");
    CHECK(eq(req.headers[11].value, req.headers[11].value_len,
             "permessage-deflate; client_max_window_bits"),
          "last header");

    /* The body is not part of the head. */
    static const char post[] = "POST /x HTTP/1.0\r\nContent-Length: 4\r\n\r\nbody";
    r = parse_req(post, sizeof post - 1, &req);
    CHECK(r == (int)sizeof post - 5 && req.minor_version == 0, "HTTP/1.0 head before a body");

    /* Bare LF, and LF mixed with CRLF (RFC 9112 2.2). */
    static const char lf[] = "GET / HTTP/1.1\nHost: a\r\nX: b\n\n";
    r = parse_req(lf, sizeof lf - 1, &req);
    CHECK(r == (int)sizeof lf - 1 && req.nheaders == 2 &&
              eq(req.headers[1].value, req.headers[1].value_len, "b"),
          "bare LF line endings");
    static const char lfcr[] = "GET / HTTP/1.1\nHost: a\n\r\n";
    CHECK(parse_req(lfcr, sizeof lfcr - 1, &req) == (int)sizeof lfcr - 1, "LF then CRLF ends");

    /* One empty line before the request line is skipped (RFC 9112 2.2). */
    static const char lead[] = "\r\nGET / HTTP/1.1\r\n\r\n";
    r = parse_req(lead, sizeof lead - 1, &req);
    CHECK(r == (int)sizeof lead - 1 && eq(req.method, req.method_len, "GET") && req.nheaders == 0,
          "leading CRLF skipped");
    static const char leadlf[] = "\nGET / HTTP/1.1\n\n";
    CHECK(parse_req(leadlf, sizeof leadlf - 1, &req) == (int)sizeof leadlf - 1,
          "leading LF skipped");

    /* Values lose surrounding OWS but keep inner whitespace; obs-text is accepted. */
    static const char ows[] =
        "GET / HTTP/1.1\r\nA:\t x  y \t\r\nB:\r\nC:   \r\nD: caf\xc3\xa9\r\n\r\n";
    r = parse_req(ows, sizeof ows - 1, &req);
    CHECK(r > 0 && eq(req.headers[0].value, req.headers[0].value_len, "x  y") &&
              req.headers[1].value_len == 0 && req.headers[2].value_len == 0 &&
              eq(req.headers[3].value, req.headers[3].value_len, "caf\xc3\xa9"),
          "OWS trimmed, empty values, obs-text");

    static const char v12[] = "GET * HTTP/1.2\r\n\r\n";
    r = parse_req(v12, sizeof v12 - 1, &req);
    CHECK(r > 0 && req.minor_version == 1 && eq(req.target, req.target_len, "*"),
          "HTTP/1.2 is handled as 1.1");
    static const char odd[] = "M-SEARCH /\xc3\xa9?a=%20 HTTP/1.1\r\nX-Y_z.1~: v\r\n\r\n";
    CHECK(parse_req(odd, sizeof odd - 1, &req) > 0, "token characters in method and name");

    static const char partial[] = "GET / HTTP/1.1\r\nHost: x\r\n\r";
    CHECK(parse_req(partial, sizeof partial - 1, &req) == 0, "incomplete head needs more");
    CHECK(parse_req("", 0, &req) == 0 && parse_req("\r", 1, &req) == 0 &&
              parse_req("\r\n", 2, &req) == 0,
          "empty and lone empty line need more");
}

static void test_bad(void)
{
    wsk_http_request req;
    size_t nbad = sizeof bad_requests / sizeof *bad_requests, fails = 0;
    for (size_t i = 0; i < nbad; ++i) {
        const char *s = bad_requests[i];
        int r = parse_req(s, strlen(s), &req);
        if (!EXPECT(r == WSK_ERR_HTTP, "bad request %zu gave %d", i, r)) ++fails;
    }
    CHECK(fails == 0, "%zu malformed requests rejected", nbad);

    /* Fail fast: a TLS handshake or binary noise is refused at its first byte. */
    CHECK(parse_req("\x16", 1, &req) == WSK_ERR_HTTP &&
              parse_req("\r\n\x00", 3, &req) == WSK_ERR_HTTP,
          "non-HTTP refused at the first byte");
}

static void test_limits(void)
{
    wsk_http_request req;
    char buf[4096];
    size_t n = (size_t)snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < WSK_HTTP_MAX_HEADERS; ++i)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "X-%d: %d\r\n", i, i);
    memcpy(buf + n, "\r\n", 2);
    int r = parse_req(buf, n + 2, &req);
    CHECK(r == (int)n + 2 && req.nheaders == WSK_HTTP_MAX_HEADERS &&
              eq(req.headers[63].value, req.headers[63].value_len, "63"),
          "%d headers accepted", WSK_HTTP_MAX_HEADERS);
    n += (size_t)snprintf(buf + n, sizeof buf - n, "X-last: 1\r\n\r\n");
    CHECK(parse_req(buf, n, &req) == WSK_ERR_HEADER_SIZE, "%d headers: WSK_ERR_HEADER_SIZE",
          WSK_HTTP_MAX_HEADERS + 1);

    /* A long value crossing many reads. */
    static char big[40000];
    n = (size_t)snprintf(big, sizeof big, "GET / HTTP/1.1\r\nX: ");
    memset(big + n, 'a', 30000);
    n += 30000;
    memcpy(big + n, "\r\n\r\n", 4);
    n += 4;
    size_t scanned = 0, calls = 0;
    int last = 0;
    for (size_t k = 0; k <= n && last == 0; k += 1000, ++calls)
        last = wsk_http_parse_request(guarded(big, k), k, &scanned, &req);
    if (last == 0) last = wsk_http_parse_request(guarded(big, n), n, &scanned, &req);
    CHECK(last == (int)n && req.headers[0].value_len == 30000, "30000-byte value over %zu reads",
          calls);
}

/* Every input at every split point: the first non-zero result equals the one-shot result, a
 * complete head is reported exactly when its last byte arrives, and no call reads past len
 * (guard page). */
static void test_splits(void)
{
    const char *inputs[64];
    size_t ni = 0, fails = 0;
    inputs[ni++] = chrome;
    inputs[ni++] = "GET / HTTP/1.1\nHost: a\r\nX: b\n\n";
    inputs[ni++] = "GET / HTTP/1.1\nHost: a\n\r\n";
    inputs[ni++] = "\r\nGET / HTTP/1.1\r\n\r\n";
    inputs[ni++] = "\nGET / HTTP/1.1\n\nBODY";
    inputs[ni++] = "GET / HTTP/1.1\r\nX: a\r\n\r\n\r\n";
    for (size_t i = 0; i < sizeof bad_requests / sizeof *bad_requests; ++i)
        inputs[ni++] = bad_requests[i];
    for (size_t i = 0; i < ni; ++i) {
        wsk_http_request req;
        size_t n = strlen(inputs[i]), at;
        int scan_ok, whole = parse_req(inputs[i], n, &req);
        int r = split_req(inputs[i], n, &at, &scan_ok);
        if (!EXPECT(r == whole && (r <= 0 || at == (size_t)r) && scan_ok,
                    "input %zu: split %d at %zu, whole %d", i, r, at, whole))
            ++fails;
    }
    CHECK(fails == 0, "%zu requests at every split point", ni);

    static const char *const responses[] = {
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
        "HTTP/1.1 200\n\n",
        "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\nxyz",
        "HTTP/1.1 20 OK\r\n\r\n",
        "SSH-2.0-OpenSSH_9.2\r\n",
        "HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n",
    };
    fails = 0;
    size_t nr = sizeof responses / sizeof *responses;
    for (size_t i = 0; i < nr; ++i) {
        wsk_http_response res;
        size_t n = strlen(responses[i]), at;
        int whole = parse_res(responses[i], n, &res);
        int r = split_res(responses[i], n, &at);
        if (!EXPECT(r == whole && (r <= 0 || at == (size_t)r), "response %zu: %d at %zu vs %d", i,
                    r, at, whole))
            ++fails;
    }
    CHECK(fails == 0, "%zu responses at every split point", nr);
}

/* Random heads built from the characters that matter to the parser, each fed at every split
 * point and compared with a one-shot parse. */
static void test_random(void)
{
    static const char alphabet[] = "GET /HTP1.0:\r\n\t\r\n\x01\x80"
                                   "az-";
    uint32_t seed = 12345;
    size_t fails = 0, complete = 0, cases = 3000;
    for (size_t c = 0; c < cases; ++c) {
        char buf[96];
        size_t n = 0;
        if (c % 2)
            n = (size_t)snprintf(buf, sizeof buf,
                                 c % 4 == 1 ? "GET / HTTP/1.1\r\n" : "HTTP/1.1 101 x\n");
        while (n < 40 + c % 50) {
            seed = seed * 1103515245u + 12345u;
            buf[n++] = alphabet[(seed >> 16) % (sizeof alphabet - 1)];
        }
        size_t at;
        int scan_ok, whole;
        int r;
        if (c % 4 == 3) {
            wsk_http_response res;
            whole = parse_res(buf, n, &res);
            r = split_res(buf, n, &at);
        } else {
            wsk_http_request req;
            whole = parse_req(buf, n, &req);
            r = split_req(buf, n, &at, &scan_ok);
        }
        complete += whole > 0;
        if (!EXPECT(r == whole, "random case %zu: %d vs %d", c, r, whole)) ++fails;
    }
    CHECK(fails == 0, "%zu random heads agree split and whole (%zu complete)", cases, complete);
}

static void test_response(void)
{
    wsk_http_response res;
    static const char ok[] = "HTTP/1.1 101 Switching Protocols\r\n"
                             "Upgrade: websocket\r\n"
                             "Connection: Upgrade\r\n"
                             "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    int r = parse_res(ok, sizeof ok - 1, &res);
    CHECK(r == (int)sizeof ok - 1 && res.status == 101 && res.minor_version == 1 &&
              eq(res.reason, res.reason_len, "Switching Protocols") && res.nheaders == 3,
          "101 response");
    CHECK(parse_res("HTTP/1.1 200\r\n\r\n", 16, &res) == 16 && res.status == 200 &&
              res.reason_len == 0,
          "status line without a reason or its space");
    CHECK(parse_res("HTTP/1.0 404 \n\n", 15, &res) == 15 && res.status == 404 &&
              res.minor_version == 0 && res.reason_len == 0,
          "empty reason, bare LF");

    static const char *const bad[] = {
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1  200 OK\r\n\r\n",
        "HTTP/1.1 2x0 OK\r\n\r\n",
        "HTTP/2 200\r\n\r\n",
        "ICY 200 OK\r\n\r\n",
        "HTTP/1.1 200 O\x01K\r\n\r\n",
        "HTTP/1.1 200 OK\r\nA : b\r\n\r\n",
        "HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n",
        "HTTP/1.1 200 OK\r\nA: \x00\r\n\r\n",
        "HTTP/1.1\r\n\r\n",
    };
    size_t fails = 0, nb = sizeof bad / sizeof *bad;
    for (size_t i = 0; i < nb; ++i) {
        /* Lengths up to the end of the first "\r\n\r\n" (some contain NUL). */
        const char *e = NULL;
        for (const char *p = bad[i]; !e; ++p)
            if (memcmp(p, "\r\n\r\n", 4) == 0) e = p + 4;
        r = parse_res(bad[i], (size_t)(e - bad[i]), &res);
        if (!EXPECT(r == WSK_ERR_HTTP, "bad response %zu: %d", i, r)) ++fails;
    }
    CHECK(fails == 0, "%zu malformed responses rejected", nb);
    CHECK(parse_res("S", 1, &res) == WSK_ERR_HTTP && parse_res("HTTP", 4, &res) == 0,
          "non-HTTP response refused at the first byte");
}

static void test_helpers(void)
{
    wsk_http_request req;
    static const char s[] = "GET / HTTP/1.1\r\nConnection: keep-alive\r\nhost: a\r\n"
                            "CONNECTION: Upgrade\r\nX: y\r\n\r\n";
    int r = parse_req(s, sizeof s - 1, &req);
    size_t from = 0;
    const wsk_http_header *a = wsk_http_find(req.headers, req.nheaders, "connection", &from);
    const wsk_http_header *b = wsk_http_find(req.headers, req.nheaders, "connection", &from);
    const wsk_http_header *c = wsk_http_find(req.headers, req.nheaders, "connection", &from);
    CHECK(r > 0 && a == &req.headers[0] && b == &req.headers[2] && !c && from == req.nheaders,
          "wsk_http_find visits each match, case-insensitively");
    from = 0;
    CHECK(wsk_http_find(req.headers, req.nheaders, "Host", &from) == &req.headers[1] &&
              !wsk_http_find(req.headers, req.nheaders, "Hos", &(size_t){0}) &&
              !wsk_http_find(req.headers, 0, "Host", &(size_t){0}),
          "wsk_http_find exact names only");

    struct {
        const char *list, *token;
        int want;
    } cases[] = {
        {"keep-alive, Upgrade", "upgrade", 1},
        {"Upgrade", "upgrade", 1},
        {"UPGRADE", "upgrade", 1},
        {" \t upgrade \t ", "upgrade", 1},
        {",,, ,upgrade,", "upgrade", 1},
        {"keep-alive,upgrade", "upgrade", 1},
        {"upgrade-insecure-requests", "upgrade", 0},
        {"upgrad", "upgrade", 0},
        {"xupgrade", "upgrade", 0},
        {"keep-alive", "upgrade", 0},
        {"", "upgrade", 0},
        {"up grade", "upgrade", 0},
        {"websocket/13, h2c", "websocket", 0},
        {"h2c, WebSocket", "websocket", 1},
    };
    size_t fails = 0, nc = sizeof cases / sizeof *cases;
    for (size_t i = 0; i < nc; ++i) {
        size_t n = strlen(cases[i].list);
        int got = wsk_http_has_token(guarded(cases[i].list, n), n, cases[i].token);
        if (!EXPECT(got == cases[i].want, "has_token(\"%s\", %s) = %d", cases[i].list,
                    cases[i].token, got))
            ++fails;
    }
    CHECK(fails == 0, "wsk_http_has_token: %zu lists", nc);

    CHECK(wsk_http_ieq(guarded("WebSocket", 9), 9, "websocket") &&
              !wsk_http_ieq(guarded("websocke", 8), 8, "websocket") &&
              !wsk_http_ieq(guarded("websockets", 10), 10, "websocket") &&
              wsk_http_ieq(guarded("", 0), 0, "") && !wsk_http_ieq("[", 1, "{"),
          "wsk_http_ieq");
    CHECK(wsk_http_is_token("x-Y_1!", 6) && !wsk_http_is_token("", 0) &&
              !wsk_http_is_token("a b", 3) && !wsk_http_is_token("a,b", 3) &&
              !wsk_http_is_token("\x80", 1),
          "wsk_http_is_token");
}

/* ----- bodies -------------------------------------------------------------------------------- */

static int content_length(const char *const *values, size_t n, uint64_t *len)
{
    wsk_http_header h[4];
    for (size_t i = 0; i < n; ++i)
        h[i] = (wsk_http_header){"Content-Length", 14, values[i], strlen(values[i])};
    h[n] = (wsk_http_header){"Host", 4, "x", 1};
    return wsk_http_content_length(h, n + 1, len);
}

static void test_content_length(void)
{
    static const struct {
        const char *v[2];
        size_t n;
        int r;
        uint64_t len;
    } cases[] = {
        {{"0"}, 1, 1, 0},
        {{"42"}, 1, 1, 42},
        {{"00042"}, 1, 1, 42},
        {{"18446744073709551615"}, 1, 1, UINT64_MAX},
        {{"18446744073709551616"}, 1, 1, UINT64_MAX},
        {{"99999999999999999999999999"}, 1, 1, UINT64_MAX},
        {{"42", "42"}, 2, 1, 42},
        {{"42", "43"}, 2, WSK_ERR_HTTP, 0},
        {{""}, 1, WSK_ERR_HTTP, 0},
        {{"+1"}, 1, WSK_ERR_HTTP, 0},
        {{"-1"}, 1, WSK_ERR_HTTP, 0},
        {{"1 2"}, 1, WSK_ERR_HTTP, 0},
        {{"42, 42"}, 1, WSK_ERR_HTTP, 0},
        {{"0x10"}, 1, WSK_ERR_HTTP, 0},
        {{"", ""}, 0, 0, 7},
    };
    size_t fails = 0, nc = sizeof cases / sizeof *cases;
    for (size_t i = 0; i < nc; ++i) {
        uint64_t len = 7;
        int r = content_length(cases[i].v, cases[i].n, &len);
        uint64_t want = cases[i].r == 1 ? cases[i].len : 7;
        if (!EXPECT(r == cases[i].r && len == want, "case %zu (%s): %d, %llu", i, cases[i].v[0], r,
                    (unsigned long long)len))
            ++fails;
    }
    CHECK(fails == 0,
          "wsk_http_content_length: %zu header sets (absent, equal and differing "
          "duplicates, signs, lists, overflow)",
          nc);
}

/* The result of feeding body[0..n) to a fresh chunked decoder in pieces ending at the offsets
 * cuts[0..ncut) (then at n), until it returns something else than WSK_HTTP_PARTIAL: the data,
 * the last return value, and the bytes after the body. */
struct dechunk {
    char data[256];
    size_t len;
    char rest[64];
    size_t rest_len;
    long r;
};

static void dechunk(const char *body, size_t n, const size_t *cuts, size_t ncut, struct dechunk *o)
{
    wsk_http_chunked d;
    size_t from = 0;
    memset(&d, 0, sizeof d);
    memset(o, 0, sizeof *o);
    o->r = WSK_HTTP_PARTIAL;
    for (size_t i = 0; i <= ncut && o->r == WSK_HTTP_PARTIAL; ++i) {
        size_t to = i < ncut ? cuts[i] : n, len = to - from;
        uint8_t *g = (uint8_t *)guarded(body + from, len);
        o->r = wsk_http_chunked_decode(&d, g, &len);
        if (len > sizeof o->data - o->len) abort();
        memcpy(o->data + o->len, g, len);
        o->len += len;
        if (o->r >= 0) {
            /* What followed the body: left after the data, then the pieces not fed. */
            if ((size_t)o->r + (n - to) > sizeof o->rest) abort();
            memcpy(o->rest, g + len, (size_t)o->r);
            memcpy(o->rest + o->r, body + to, n - to);
            o->rest_len = (size_t)o->r + (n - to);
        }
        from = to;
    }
}

static const struct chunked_case {
    const char *body;
    long r; /* WSK_ERR_HTTP, WSK_HTTP_PARTIAL, or the bytes after the body */
    const char *data;
} chunked_cases[] = {
    {"0\r\n\r\n", 0, ""},
    {"5\r\nhello\r\n0\r\n\r\n", 0, "hello"},
    {"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET / HTTP/1.1", 14, "hello world"},
    {"A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n", 0, "0123456789abcdefghij"},
    {"5;name=value;x\r\nhello\r\n0;last\r\n\r\n", 0, "hello"},
    {"5 ;ext\r\nhello\r\n0\r\n\r\n", 0, "hello"},
    {"5\nhello\n0\n\n", 0, "hello"},
    {"0005\r\nhe\r\nl\r\n0\r\n\r\n", 0, "he\r\nl"},
    {"5\r\nhello\r\n0\r\nExpires: never\r\nX-A: b\r\n\r\nx", 1, "hello"},
    {"000000000000000000003\r\nabc\r\n0\r\n\r\n", 0, "abc"},
    {"5\r\nhel", WSK_HTTP_PARTIAL, "hel"},
    {"5\r\nhello\r\n0\r\n", WSK_HTTP_PARTIAL, "hello"},
    {"5\r\nhello\r\n0\r\nTrailer: x\r\n", WSK_HTTP_PARTIAL, "hello"},
    {"\r\n", WSK_ERR_HTTP, ""},
    {"g\r\n", WSK_ERR_HTTP, ""},
    {";x\r\n", WSK_ERR_HTTP, ""},
    {"5\r\nhelloX\r\n", WSK_ERR_HTTP, "hello"},
    {"5\r\nhello\rX", WSK_ERR_HTTP, "hello"},
    {"5\rX", WSK_ERR_HTTP, ""},
    {"5\r\nhello\r\n0\r\n\rX", WSK_ERR_HTTP, "hello"},
    {"10000000000000000\r\n", WSK_ERR_HTTP, ""},
    {"ffffffffffffffff\r\nab", WSK_HTTP_PARTIAL, "ab"},
};

static int dechunk_ok(const struct chunked_case *c, const struct dechunk *o)
{
    size_t n = strlen(c->body), want = strlen(c->data);
    size_t after = c->r > 0 ? (size_t)c->r : 0;
    return (o->r >= 0 ? c->r >= 0 : o->r == c->r) && o->len == want &&
           !memcmp(o->data, c->data, want) &&
           (c->r < 0 || (o->rest_len == after && !memcmp(o->rest, c->body + n - after, after)));
}

/* Every case whole, split in two at every point, split in three at every pair of points, and
 * one byte at a time: the same data, the same end, the same bytes left over. */
static void test_chunked(void)
{
    size_t fails = 0, runs = 0, nc = sizeof chunked_cases / sizeof *chunked_cases;
    for (size_t i = 0; i < nc; ++i) {
        const struct chunked_case *c = &chunked_cases[i];
        size_t n = strlen(c->body);
        struct dechunk o;
        size_t cuts[64];
        dechunk(c->body, n, NULL, 0, &o);
        runs++;
        if (!EXPECT(dechunk_ok(c, &o), "case %zu whole: %ld, %zu data bytes", i, o.r, o.len)) {
            ++fails;
            continue;
        }
        for (size_t a = 0; a <= n; ++a) {
            for (size_t b = a; b <= n; ++b, ++runs) {
                cuts[0] = a;
                cuts[1] = b;
                dechunk(c->body, n, cuts, 2, &o);
                if (!EXPECT(dechunk_ok(c, &o), "case %zu cut at %zu, %zu: %ld", i, a, b, o.r))
                    ++fails;
            }
        }
        for (size_t k = 0; k < n && k < 64; ++k) cuts[k] = k + 1;
        dechunk(c->body, n, cuts, n < 64 ? n : 64, &o);
        runs++;
        if (!EXPECT(dechunk_ok(c, &o), "case %zu byte by byte: %ld", i, o.r)) ++fails;
    }
    CHECK(fails == 0, "wsk_http_chunked_decode: %zu bodies, %zu runs at every split point", nc,
          runs);

    /* A failed or finished decoder stays so. */
    wsk_http_chunked d = {0};
    uint8_t b[16];
    size_t len = 3;
    memcpy(b, "x\r\n", 3);
    long r1 = wsk_http_chunked_decode(&d, b, &len);
    len = 5;
    memcpy(b, "0\r\n\r\n", 5);
    long r2 = wsk_http_chunked_decode(&d, b, &len);
    CHECK(r1 == WSK_ERR_HTTP && r2 == WSK_ERR_HTTP && len == 0, "a failed decoder stays failed");
}

int main(void)
{
    test_basic();
    test_bad();
    test_limits();
    test_splits();
    test_random();
    test_response();
    test_helpers();
    test_content_length();
    test_chunked();
    return TEST_DONE();
}
