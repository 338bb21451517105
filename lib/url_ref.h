/* A URI reference resolved against the URL of a request (RFC 3986 5.2), for redirects
 * (internal).  No I/O. */
#ifndef WSK_URL_REF_H
#define WSK_URL_REF_H

#include <stddef.h>

#include "parse_url.h"

/* Removes the "." and ".." segments of the path p[0..n) in place (RFC 3986 5.2.4
 * remove_dot_segments); returns the new length.  No query: the caller splits it off. */
size_t wsk_url_remove_dots(char *p, size_t n);

/* The absolute URL that ref[0..n) (a Location value) names relative to `base`, whose host,
 * without brackets, is `host`: a URL with a scheme as it is, "//host/..." with base's scheme,
 * "/path", "path" or "?query" against base, dot segments removed.  Malloc'd; NULL when out of
 * memory. */
char *wsk_url_resolve_ref(const wsk_url *base, const char *host, const char *ref, size_t n);

#endif
