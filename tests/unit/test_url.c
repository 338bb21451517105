/* Unit tests of the WebSocket URL parser (lib/parse_url.c). */
#include "parse_url.h"
#include "test.h"

static int eq(const char *p, size_t n, const char *s)
{
    if (!s) return p == NULL && n == 0;
    return p && n == strlen(s) && memcmp(p, s, n) == 0;
}

/* Parses s (without its NUL, right before the guard page) into *u. */
static int parse(const char *s, wsk_url *u)
{
    size_t n = strlen(s);
    return wsk_url_parse(guarded(s, n), n, u);
}

static const struct good {
    const char *url;
    int secure;
    const char *host;
    int ipv6;
    unsigned port;
    const char *path, *userinfo;
} good[] = {
    {"ws://example.com", 0, "example.com", 0, 80, "/", NULL},
    {"ws://example.com/", 0, "example.com", 0, 80, "/", NULL},
    {"wss://example.com/chat", 1, "example.com", 0, 443, "/chat", NULL},
    {"WSS://Example.COM:8443/a/b?c=d&e=%20", 1, "Example.COM", 0, 8443, "/a/b?c=d&e=%20", NULL},
    {"http://h:1/", 0, "h", 0, 1, "/", NULL},
    {"HTTPS://h", 1, "h", 0, 443, "/", NULL},
    {"ws://h:65535", 0, "h", 0, 65535, "/", NULL},
    {"ws://h:0080/x", 0, "h", 0, 80, "/x", NULL},
    {"ws://h?x=1", 0, "h", 0, 80, "?x=1", NULL},
    {"ws://h/?x=/y:z@w", 0, "h", 0, 80, "/?x=/y:z@w", NULL},
    {"ws://[::1]", 0, "::1", 1, 80, "/", NULL},
    {"wss://[2001:db8::7]:9000/p", 1, "2001:db8::7", 1, 9000, "/p", NULL},
    {"ws://[::ffff:192.0.2.1]/", 0, "::ffff:192.0.2.1", 1, 80, "/", NULL},
    {"ws://192.0.2.1:81", 0, "192.0.2.1", 0, 81, "/", NULL},
    {"ws://user:pass@h/x", 0, "h", 0, 80, "/x", "user:pass"},
    {"wss://user@[::1]:5/", 1, "::1", 1, 5, "/", "user"},
    {"ws://a%40b:p%3Aw@h", 0, "h", 0, 80, "/", "a%40b:p%3Aw"},
    {"ws://@h", 0, "h", 0, 80, "/", NULL},
    {"localhost:8080/x", 0, "localhost", 0, 8080, "/x", NULL},
    {"localhost", 0, "localhost", 0, 80, "/", NULL},
    {"example.com/path", 0, "example.com", 0, 80, "/path", NULL},
    {"[::1]:9", 0, "::1", 1, 9, "/", NULL},
    {"ws://my_host-1.example~x", 0, "my_host-1.example~x", 0, 80, "/", NULL},
    {"ws://h/caf\xc3\xa9", 0, "h", 0, 80, "/caf\xc3\xa9", NULL},
};

static const char *const bad[] = {
    "",
    "ws://",
    "ws:///path",
    "ws://:80",
    "ws://:80/",
    "ftp://h",
    "wsx://h",
    "w s://h",
    "ws://h:0",
    "ws://h:65536",
    "ws://h:99999999999999999999",
    "ws://h:",
    "ws://h:/x",
    "ws://h:8a",
    "ws://h:-1",
    "ws://h:80:81",
    "ws://h#frag",
    "ws://h/p#frag",
    "ws://h/#",
    "ws://h/a b",
    "ws://h /",
    " ws://h",
    "ws://h\t/",
    "ws://h/\x01",
    "ws://h/\x7f",
    "ws://h/\r\nX: y",
    "ws://[::1",
    "ws://[::1/x]",
    "ws://::1]",
    "ws://::1",
    "ws://h]",
    "ws://[h]",
    "ws://[]",
    "ws://[::1]x",
    "ws://[::1]:",
    "ws://[::1]:0",
    "ws://[fe80::1%25eth0]",
    "ws://[v1.x]",
    "ws://[1:2:3:4:5:6:7:8:9]",
    "ws://[::1][::2]",
    "ws://a[b",
    "ws://a\\b",
    "ws://h\xc3\xa9",
    "ws://u[s]@h",
    "ws://u^@h",
    "ws://@",
    "ws://u@",
    "ws://u@:80",
    "//h/x",
    ":80",
    "ws:h",
};

static void test_good(void)
{
    size_t fails = 0, n = sizeof good / sizeof *good;
    for (size_t i = 0; i < n; ++i) {
        const struct good *g = &good[i];
        wsk_url u;
        int r = parse(g->url, &u);
        if (!EXPECT(r == 0 && u.secure == g->secure && eq(u.host, u.host_len, g->host) &&
                        u.ipv6 == g->ipv6 && u.port == g->port && eq(u.path, u.path_len, g->path) &&
                        eq(u.userinfo, u.userinfo_len, g->userinfo),
                    "%s: r=%d secure=%d host=%.*s port=%u path=%.*s", g->url, r, u.secure,
                    (int)u.host_len, u.host ? u.host : "", u.port, (int)u.path_len,
                    u.path ? u.path : ""))
            ++fails;
    }
    CHECK(fails == 0, "%zu valid URLs parse to their parts", n);

    wsk_url u;
    const char *s = "ws://h:9/p";
    char *g = guarded(s, strlen(s));
    CHECK(wsk_url_parse(g, strlen(s), &u) == 0 && u.host == g + 5 && u.path == g + 8,
          "parts point into the input");
    CHECK(wsk_url_parse("ws://h/p\0x", 10, &u) == WSK_ERR_URL, "NUL inside the length refused");
    CHECK(wsk_url_parse("ws://h/pq", 8, &u) == 0 && u.path_len == 2, "only n bytes are read");
}

static void test_bad(void)
{
    size_t fails = 0, n = sizeof bad / sizeof *bad;
    for (size_t i = 0; i < n; ++i) {
        wsk_url u;
        int r = parse(bad[i], &u);
        if (!EXPECT(r == WSK_ERR_URL, "\"%s\" gave %d", bad[i], r)) ++fails;
    }
    CHECK(fails == 0, "%zu invalid URLs refused", n);
}

/* Every prefix of every URL, placed before the guard page: no over-read, and a result that is
 * either WSK_ERR_URL or a parse whose parts lie inside the prefix. */
static void test_prefixes(void)
{
    size_t fails = 0, count = 0;
    for (int set = 0; set < 2; ++set) {
        size_t n = set ? sizeof bad / sizeof *bad : sizeof good / sizeof *good;
        for (size_t i = 0; i < n; ++i) {
            const char *s = set ? bad[i] : good[i].url;
            for (size_t k = 0; k <= strlen(s); ++k, ++count) {
                wsk_url u;
                char *g = guarded(s, k);
                int r = wsk_url_parse(g, k, &u);
                int inside =
                    r != 0 ||
                    (u.host >= g && u.host + u.host_len <= g + k && u.host_len > 0 &&
                     (u.path_len == 1 || (u.path >= g && u.path + u.path_len <= g + k)) &&
                     (!u.userinfo || (u.userinfo >= g && u.userinfo + u.userinfo_len <= g + k)));
                if (!EXPECT((r == 0 || r == WSK_ERR_URL) && inside, "%.*s: %d", (int)k, s, r))
                    ++fails;
            }
        }
    }
    CHECK(fails == 0, "%zu prefixes parse within bounds", count);
}

/* wsk_url_decode: RFC 3986 2.1 escapes in either case, broken escapes kept, '+' only when asked,
 * the full length whatever the room, and a cut that never writes past cap. */
static void test_decode(void)
{
    static const struct {
        const char *in;
        int plus;
        const char *out;
    } cases[] = {
        {"", 0, ""},
        {"abc", 0, "abc"},
        {"a%20b", 0, "a b"},
        {"%41%6a%6A%4a", 0, "AjjJ"},
        {"us%3Ar:p%40ss", 0, "us:r:p@ss"},
        {"a+b", 0, "a+b"},
        {"a+b%2B", 1, "a b+"},
        {"%", 0, "%"},
        {"%4", 0, "%4"},
        {"%4g", 0, "%4g"},
        {"%%41", 0, "%A"},
        {"x%4", 1, "x%4"},
        {"100%", 1, "100%"},
    };
    size_t fails = 0, nc = sizeof cases / sizeof *cases;
    for (size_t i = 0; i < nc; ++i) {
        size_t n = strlen(cases[i].in), want = strlen(cases[i].out);
        char out[32];
        size_t got = wsk_url_decode(guarded(cases[i].in, n), n, cases[i].plus, out, sizeof out);
        if (!EXPECT(got == want && !strcmp(out, cases[i].out), "\"%s\" -> \"%s\" (%zu)",
                    cases[i].in, out, got))
            ++fails;
        /* Every smaller room: the same length, a NUL-terminated prefix, nothing past cap. */
        for (size_t cap = 0; cap <= want + 1; ++cap) {
            char small[32];
            memset(small, '#', sizeof small);
            got = wsk_url_decode(cases[i].in, n, cases[i].plus, small, cap);
            size_t keep = cap ? (want < cap - 1 ? want : cap - 1) : 0;
            int ok = got == want && small[cap] == '#' &&
                     (!cap || (small[keep] == '\0' && !memcmp(small, cases[i].out, keep)));
            if (!EXPECT(ok, "\"%s\" into %zu bytes", cases[i].in, cap)) ++fails;
        }
    }
    CHECK(fails == 0, "wsk_url_decode: %zu strings, into every room from 0 up", nc);
}

int main(void)
{
    test_good();
    test_bad();
    test_prefixes();
    test_decode();
    return TEST_DONE();
}
