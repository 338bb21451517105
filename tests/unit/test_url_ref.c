/* Unit tests of reference resolution for redirects (lib/url_ref.c): the examples of RFC 3986
 * 5.4 against a ws:// base, and remove_dot_segments (5.2.4) on its own. */
#include "test.h"
#include "url_ref.h"

static const char base[] = "ws://a/b/c/d;p?q";

static const struct {
    const char *ref, *want;
} refs[] = {
    /* 5.4.1 normal examples (the base's port is written out) */
    {"g", "ws://a:80/b/c/g"},
    {"./g", "ws://a:80/b/c/g"},
    {"g/", "ws://a:80/b/c/g/"},
    {"/g", "ws://a:80/g"},
    {"//g", "ws://g"},
    {"?y", "ws://a:80/b/c/d;p?y"},
    {"g?y", "ws://a:80/b/c/g?y"},
    {";x", "ws://a:80/b/c/;x"},
    {"g;x", "ws://a:80/b/c/g;x"},
    {".", "ws://a:80/b/c/"},
    {"./", "ws://a:80/b/c/"},
    {"..", "ws://a:80/b/"},
    {"../", "ws://a:80/b/"},
    {"../g", "ws://a:80/b/g"},
    {"../..", "ws://a:80/"},
    {"../../", "ws://a:80/"},
    {"../../g", "ws://a:80/g"},
    /* 5.4.2 abnormal examples: never above the root */
    {"../../../g", "ws://a:80/g"},
    {"../../../../g", "ws://a:80/g"},
    {"/./g", "ws://a:80/g"},
    {"/../g", "ws://a:80/g"},
    {"g.", "ws://a:80/b/c/g."},
    {".g", "ws://a:80/b/c/.g"},
    {"g..", "ws://a:80/b/c/g.."},
    {"..g", "ws://a:80/b/c/..g"},
    {"./../g", "ws://a:80/b/g"},
    {"./g/.", "ws://a:80/b/c/g/"},
    {"g/./h", "ws://a:80/b/c/g/h"},
    {"g/../h", "ws://a:80/b/c/h"},
    {"g;x=1/./y", "ws://a:80/b/c/g;x=1/y"},
    {"g;x=1/../y", "ws://a:80/b/c/y"},
    {"g?y/./x", "ws://a:80/b/c/g?y/./x"}, /* the query is not a path */
    {"g?y/../x", "ws://a:80/b/c/g?y/../x"},
    /* with a scheme: as given */
    {"wss://other:8443/x", "wss://other:8443/x"},
};

static const struct {
    const char *in, *want;
} dots[] = {
    {"/a/b/c/./../../g", "/a/g"}, /* RFC 3986 5.2.4's own examples */
    {"mid/content=5/../6", "mid/6"},
    {"/", "/"},
    {"/..", "/"},
    {"/.", "/"},
    {"/a/..", "/"},
    {"/a/../", "/"},
    {"/a/./b/../../c/", "/c/"},
    {"..", ""},
    {"", ""},
};

int main(void)
{
    wsk_url u;
    int parsed = wsk_url_parse(base, sizeof base - 1, &u) == 0;
    CHECK(parsed, "the base URL parses");
    if (!parsed) return TEST_DONE();
    char host[8];
    memcpy(host, u.host, u.host_len);
    host[u.host_len] = '\0';
    for (size_t i = 0; i < sizeof refs / sizeof *refs; ++i) {
        size_t n = strlen(refs[i].ref);
        char *got = wsk_url_resolve_ref(&u, host, guarded(refs[i].ref, n), n);
        CHECK(got && !strcmp(got, refs[i].want), "\"%s\" -> %s (got %s)", refs[i].ref, refs[i].want,
              got ? got : "NULL");
        free(got);
    }
    for (size_t i = 0; i < sizeof dots / sizeof *dots; ++i) {
        size_t n = strlen(dots[i].in);
        char *p = guarded(dots[i].in, n);
        size_t k = wsk_url_remove_dots(p, n);
        CHECK(k == strlen(dots[i].want) && !memcmp(p, dots[i].want, k),
              "remove_dot_segments(\"%s\") = \"%s\" (got \"%.*s\")", dots[i].in, dots[i].want,
              (int)k, p);
    }
    return TEST_DONE();
}
