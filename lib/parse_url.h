/* WebSocket URLs (RFC 6455 section 3, RFC 3986) (internal).  The parser does no I/O and no
 * allocation; the parts it returns point into the caller's string. */
#ifndef WSK_PARSE_URL_H
#define WSK_PARSE_URL_H

#include <stddef.h>

#include "wskit.h"

typedef struct wsk_url {
    int secure;       /* wss:// or https:// */
    const char *host; /* IPv6 literals without the brackets */
    size_t host_len;
    int ipv6;      /* host was a bracketed IPv6 literal */
    unsigned port; /* explicit, or 80 / 443 by scheme */
    /* Path and query: a static "/" when the URL has none; "?q" when it has a query but no path
     * (wsk_handshake_client_request puts the "/" in front). */
    const char *path;
    size_t path_len;
    const char *userinfo; /* "user:pass" before '@' (still percent-encoded), or NULL */
    size_t userinfo_len;
} wsk_url;

/* Parses s[0..n) as a ws://, wss://, http:// or https:// URL (scheme case-insensitive); a URL
 * without a scheme ("localhost:8080/x") is taken as ws://.  Returns 0, or WSK_ERR_URL for:
 * unknown schemes, an empty host, a port that is not 1..65535 (an empty one included), a
 * fragment (#, RFC 6455 3), spaces or control characters, unbalanced brackets, a bracketed
 * host that is not an IPv6 address, or other characters RFC 3986 does not allow in a host.
 * Pointers point into s (except the static "/" path). */
int wsk_url_parse(const char *s, size_t n, wsk_url *u);

/* Percent-decodes s[0..n) (RFC 3986 2.1) into out, NUL-terminated and cut to cap - 1 bytes
 * (nothing is written when cap is 0); returns the full decoded length, which is at most n.  A
 * '%' not followed by two hex digits stays as it is.  With plus_space, '+' decodes to a space,
 * as in the form-encoded query strings of HTML (application/x-www-form-urlencoded). */
size_t wsk_url_decode(const char *s, size_t n, int plus_space, char *out, size_t cap);

#endif
