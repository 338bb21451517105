/* WebSocket URLs: see parse_url.h. */
#include "parse_url.h"

#include <arpa/inet.h>
#include <string.h>

static int is_alpha(unsigned char c)
{
    c |= 0x20;
    return c >= 'a' && c <= 'z';
}

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int is_scheme_char(unsigned char c, int first)
{
    return is_alpha(c) || (!first && (is_digit(c) || c == '+' || c == '-' || c == '.'));
}

/* unreserved / sub-delims / pct-encoded (RFC 3986 3.2.2 reg-name, and 3.2.1 userinfo without
 * ':').  Anything else in a host ('[', ']', '@', '\\', ...) is where URL parsers disagree about
 * which host is meant, the root of many allow-list bypasses, so it is refused. */
static int is_host_char(unsigned char c)
{
    return is_alpha(c) || is_digit(c) || (c && strchr("-._~!$&'()*+,;=%", c));
}

/* Case-insensitive match of s[0..n) against the lowercase NUL-terminated word. */
static int ieq(const char *s, size_t n, const char *word)
{
    size_t i = 0;
    for (; i < n; ++i) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 'A' && c <= 'Z') c |= 0x20;
        if (word[i] == '\0' || c != (unsigned char)word[i]) return 0;
    }
    return word[i] == '\0';
}

/* IPv6 literal (RFC 3986 3.2.2, RFC 4291 2.2), checked by inet_pton on a bounded copy.  Zone
 * identifiers and IPvFuture are not supported. */
static int ipv6_ok(const char *s, size_t n)
{
    char tmp[INET6_ADDRSTRLEN];
    struct in6_addr a;
    if (n == 0 || n >= sizeof tmp) return 0;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    return inet_pton(AF_INET6, tmp, &a) == 1;
}

/* The authority auth[0..end) = [ userinfo "@" ] host [ ":" port ] (RFC 3986 3.2) into u. */
static int authority(const char *auth, const char *end, wsk_url *u)
{
    /* The last '@' ends the userinfo: an '@' cannot be in a host, and splitting at the first
     * would let "ws://a@evil@good" be read two ways. */
    const char *at = NULL;
    for (const char *q = auth; q < end; ++q)
        if (*q == '@') at = q;
    if (at) {
        for (const char *q = auth; q < at; ++q)
            if (*q != ':' && !is_host_char((unsigned char)*q)) return WSK_ERR_URL;
        if (at > auth) {
            u->userinfo = auth;
            u->userinfo_len = (size_t)(at - auth);
        }
        auth = at + 1;
    }

    const char *colon;
    if (auth < end && *auth == '[') {
        const char *close = memchr(auth, ']', (size_t)(end - auth));
        if (!close || !ipv6_ok(auth + 1, (size_t)(close - auth - 1))) return WSK_ERR_URL;
        u->host = auth + 1;
        u->host_len = (size_t)(close - auth - 1);
        u->ipv6 = 1;
        colon = close + 1;
        if (colon < end && *colon != ':') return WSK_ERR_URL;
    } else {
        colon = auth;
        while (colon < end && *colon != ':') ++colon;
        for (const char *q = auth; q < colon; ++q)
            if (!is_host_char((unsigned char)*q)) return WSK_ERR_URL;
        u->host = auth;
        u->host_len = (size_t)(colon - auth);
    }
    if (u->host_len == 0) return WSK_ERR_URL;

    if (colon < end) {
        const char *q = colon + 1;
        unsigned port = 0;
        if (q == end) return WSK_ERR_URL;
        for (; q < end; ++q) {
            if (!is_digit((unsigned char)*q)) return WSK_ERR_URL;
            port = port * 10 + (unsigned)(*q - '0');
            if (port > 65535) return WSK_ERR_URL;
        }
        if (port == 0) return WSK_ERR_URL;
        u->port = port;
    }
    return 0;
}

int wsk_url_parse(const char *s, size_t n, wsk_url *u)
{
    const char *end = s + n;
    memset(u, 0, sizeof *u);

    /* RFC 6455 3: fragments are not allowed in WebSocket URIs.  Spaces and controls are never
     * part of a URI (RFC 3986 2); refusing them here keeps them out of the request line and Host
     * header built from the parts. */
    for (size_t i = 0; i < n; ++i) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c == 0x7f || c == '#') return WSK_ERR_URL;
    }

    /* scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) (RFC 3986 3.1), taken as one only
     * when followed by "://", so "localhost:8080" is a host and port. */
    const char *p = s;
    while (p < end && is_scheme_char((unsigned char)*p, p == s)) ++p;
    if (p > s && end - p >= 3 && memcmp(p, "://", 3) == 0) {
        size_t len = (size_t)(p - s);
        if (ieq(s, len, "wss") || ieq(s, len, "https"))
            u->secure = 1;
        else if (!ieq(s, len, "ws") && !ieq(s, len, "http"))
            return WSK_ERR_URL;
        p += 3;
    } else {
        p = s;
    }
    u->port = u->secure ? 443 : 80;

    /* authority = [ userinfo "@" ] host [ ":" port ], up to the path or query. */
    const char *auth = p;
    while (p < end && *p != '/' && *p != '?') ++p;
    const char *auth_end = p;
    if (authority(auth, auth_end, u) < 0) return WSK_ERR_URL;

    /* RFC 6455 3: the resource name is "/" when the path is empty. */
    if (auth_end == end) {
        u->path = "/";
        u->path_len = 1;
    } else {
        u->path = auth_end;
        u->path_len = (size_t)(end - auth_end);
    }
    return 0;
}

static int hexval(unsigned char c)
{
    if (is_digit(c)) return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

size_t wsk_url_decode(const char *s, size_t n, int plus_space, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; ++i, ++o) {
        unsigned char c = (unsigned char)s[i];
        int hi, lo;
        if (c == '%' && n - i > 2 && (hi = hexval((unsigned char)s[i + 1])) >= 0 &&
            (lo = hexval((unsigned char)s[i + 2])) >= 0) {
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
        } else if (c == '+' && plus_space) {
            c = ' ';
        }
        if (o + 1 < cap) out[o] = (char)c;
    }
    if (cap) out[o < cap ? o : cap - 1] = '\0';
    return o;
}
