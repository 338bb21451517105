/* Incremental HTTP/1.x message-head parser (RFC 9110, RFC 9112) (internal).
 *
 * The parsers do no I/O and no allocation: they read the caller's bytes and return pointers into
 * them, so a parsed head is valid only while the caller keeps those bytes unchanged.  They never
 * read past the length they are given. */
#ifndef WSK_PARSE_HTTP_H
#define WSK_PARSE_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "wskit.h"

#define WSK_HTTP_MAX_HEADERS 64

/* One header field; neither name nor value is NUL-terminated. */
typedef struct wsk_http_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} wsk_http_header;

typedef struct wsk_http_request {
    const char *method;
    size_t method_len;
    const char *target; /* request-target as sent (path and query) */
    size_t target_len;
    int minor_version; /* 0 or 1 for HTTP/1.0, HTTP/1.1 */
    size_t nheaders;
    wsk_http_header headers[WSK_HTTP_MAX_HEADERS]; /* values without leading/trailing OWS */
} wsk_http_request;

typedef struct wsk_http_response {
    int minor_version;  /* 0 or 1 */
    int status;         /* 000..999 */
    const char *reason; /* may be empty */
    size_t reason_len;
    size_t nheaders;
    wsk_http_header headers[WSK_HTTP_MAX_HEADERS];
} wsk_http_response;

/* Parses a request head held in buf[0..len), which may be incomplete.  *scanned (start at 0)
 * records how far earlier calls looked for the end of the head, so bytes arriving in pieces are
 * not rescanned; keep it while the same head grows and reset it to 0 for the next message.
 * Returns the length of the head including its final empty line when complete (> 0; the body, if
 * any, follows); 0 when more bytes are needed; WSK_ERR_HTTP on malformed input (bad request line,
 * bad token characters in a method or header name, a control character in a value, whitespace
 * before a colon, obs-fold); WSK_ERR_HEADER_SIZE when there are more than WSK_HTTP_MAX_HEADERS
 * headers.  Lines may end in CRLF or a bare LF; one empty line before the request line is
 * skipped; HTTP/1.2 and later minor versions are reported as 1.  All pointers point into buf. */
int wsk_http_parse_request(const char *buf, size_t len, size_t *scanned, wsk_http_request *req);

/* The same for a response head (status line "HTTP/1.x NNN reason"; the reason may be empty and
 * its leading space absent).  All pointers point into buf. */
int wsk_http_parse_response(const char *buf, size_t len, size_t *scanned, wsk_http_response *res);

/* First header named `name` (case-insensitive) at or after index *from (start 0); sets *from past
 * it so repeated calls visit every header of that name; NULL when no more.  The result points
 * into h. */
const wsk_http_header *wsk_http_find(const wsk_http_header *h, size_t n, const char *name,
                                     size_t *from);

/* Header i of h[0..n): its name and value into the out-parameters that are not NULL (pointers
 * into h's bytes); WSK_ERR_INVAL when i >= n.  What wsk_request_header_at and
 * wsk_client_header_at return. */
int wsk_http_header_at(const wsk_http_header *h, size_t n, size_t i, const char **name,
                       size_t *name_len, const char **value, size_t *value_len);

/* 1 when the comma-separated token list value[0..len) contains `token`, compared
 * case-insensitively, with optional whitespace around elements (RFC 9110 5.6.1)
 * ("keep-alive, Upgrade" contains "upgrade"); 0 otherwise. */
int wsk_http_has_token(const char *value, size_t len, const char *token);

/* 1 when s[0..n) is a token (RFC 9110 5.6.2: one or more tchar), 0 otherwise. */
int wsk_http_is_token(const char *s, size_t n);

/* Case-insensitive (ASCII) equality of a[0..alen) and the NUL-terminated b: 1 or 0. */
int wsk_http_ieq(const char *a, size_t alen, const char *b);

/* ----- bodies (RFC 9112 6) ----- */

/* The Content-Length of a message with headers h[0..n) (RFC 9110 8.6): 1 with *len set when
 * the header is there, 0 when it is not, WSK_ERR_HTTP when a value is not a plain decimal
 * number or two values differ (RFC 9112 6.3: such framing is invalid; each reading of it is a
 * way to smuggle a request past another parser).  A number beyond UINT64_MAX reads as
 * UINT64_MAX, so the caller's size limit refuses it. */
int wsk_http_content_length(const wsk_http_header *h, size_t n, uint64_t *len);

/* A chunked body decoder (RFC 9112 7.1): zero it before the first byte of the body. */
typedef struct wsk_http_chunked {
    uint64_t left;  /* data bytes left in the current chunk, or the size being read */
    uint8_t state;  /* where in the grammar the last byte left the decoder */
    uint8_t digits; /* hex digits of the size read so far */
} wsk_http_chunked;

#define WSK_HTTP_PARTIAL (-1002) /* wsk_http_chunked_decode: the body goes on */

/* Decodes the next bytes of a chunked body, buf[0..*len), in place: the data bytes move to the
 * front of buf and *len becomes their number.  The decoder keeps every partial size line,
 * extension or CRLF in *d, so each byte is fed once, in pieces of any size.  Returns
 * WSK_HTTP_PARTIAL while the body goes on; once the last chunk and the trailer section (read
 * and dropped) are complete, the number of bytes that followed the body in buf, moved to
 * buf[*len...]; WSK_ERR_HTTP for malformed input (no size digits, a size over 64 bits, a chunk
 * not followed by CRLF), after which *d stays failed. */
long wsk_http_chunked_decode(wsk_http_chunked *d, uint8_t *buf, size_t *len);

#endif
