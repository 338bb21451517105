/* A URI reference resolved against the URL of a request (RFC 3986 5.2): where a redirect's
 * Location points.  Servers send absolute URLs, "//host/path", "/path", "path" and "?query";
 * the last three are merged with the request's URL and their dot segments removed, so that
 * "../b" from /a/c/d reaches /a/b and never climbs above the root. */
#include "url_ref.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 1 when p[0..n) starts with the NUL-terminated s. */
static int starts(const char *p, size_t n, const char *s)
{
    size_t k = strlen(s);
    return n >= k && !memcmp(p, s, k);
}

/* RFC 3986 5.2.4, step by step on the input p[i..n); the output p[0..o) never overtakes it. */
size_t wsk_url_remove_dots(char *p, size_t n)
{
    size_t i = 0, o = 0;
    while (i < n) {
        size_t left = n - i;
        if (starts(p + i, left, "../")) { /* A */
            i += 3;
        } else if (starts(p + i, left, "./")) {
            i += 2;
        } else if (starts(p + i, left, "/./")) { /* B */
            i += 2;
        } else if (left == 2 && starts(p + i, left, "/.")) {
            p[++i] = '/';
        } else if (starts(p + i, left, "/../") || (left == 3 && starts(p + i, left, "/.."))) {
            /* C: "/../" or a final "/.." becomes "/", and the output loses its last segment
             * with the '/' before it. */
            i += 2;
            if (left == 3)
                p[i] = '/';
            else
                ++i;
            while (o > 0 && p[o - 1] != '/') --o;
            if (o > 0) --o;
        } else if ((left == 1 && p[i] == '.') || (left == 2 && starts(p + i, left, ".."))) {
            i = n; /* D */
        } else {   /* E: the first segment, with its leading '/', moves to the output */
            do p[o++] = p[i++];
            while (i < n && p[i] != '/');
        }
    }
    return o;
}

/* 1 when s[0..n) starts with a URI scheme and ':' (RFC 3986 3.1). */
static int has_scheme(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n &&
           (((s[i] | 0x20) >= 'a' && (s[i] | 0x20) <= 'z') ||
            (i && ((s[i] >= '0' && s[i] <= '9') || s[i] == '+' || s[i] == '-' || s[i] == '.'))))
        ++i;
    return i > 0 && i < n && s[i] == ':';
}

char *wsk_url_resolve_ref(const wsk_url *u, const char *host, const char *ref, size_t n)
{
    const char *scheme = u->secure ? "wss" : "ws";
    size_t dir = 0, cap = n + strlen(host) + u->path_len + 32;
    char *out = malloc(cap);
    if (!out) return NULL;
    if (has_scheme(ref, n)) {
        snprintf(out, cap, "%.*s", (int)n, ref);
        return out;
    }
    if (n >= 2 && ref[0] == '/' && ref[1] == '/') {
        snprintf(out, cap, "%s:%.*s", scheme, (int)n, ref);
        return out;
    }
    int v6 = u->ipv6;
    size_t k = (size_t)snprintf(out, cap, "%s://%s%s%s:%u", scheme, v6 ? "[" : "", host,
                                v6 ? "]" : "", u->port);
    size_t path_at = k;
    if (n && ref[0] == '?') {
        /* A query alone replaces the request's query. */
        while (dir < u->path_len && u->path[dir] != '?') ++dir;
        if (!dir || u->path[0] != '/') out[k++] = '/';
    } else if (n == 0 || ref[0] != '/') {
        /* A relative path replaces the last segment of the request's path (5.2.3). */
        for (size_t i = 0; i < u->path_len && u->path[i] != '?'; ++i)
            if (u->path[i] == '/') dir = i + 1;
        if (!dir) out[k++] = '/';
    }
    int len = snprintf(out + k, cap - k, "%.*s%.*s", (int)dir, u->path, (int)n, ref);
    size_t end = k + (size_t)len, q = path_at;
    while (q < end && out[q] != '?') ++q;
    size_t kept = wsk_url_remove_dots(out + path_at, q - path_at);
    /* The path starts with '/', which C never removes: at least "/" is kept. */
    memmove(out + path_at + kept, out + q, end - q + 1); /* the query and the NUL */
    return out;
}
