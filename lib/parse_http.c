/* HTTP/1.x message heads: see parse_http.h.
 *
 * A head is parsed in two steps.  While it is incomplete, only the end of the head (the first
 * empty line) is searched for, and only in bytes that earlier calls have not seen, so a head
 * arriving a byte at a time costs linear time.  Once it is complete it is parsed in one pass.
 * Every loop is bounded by the end of the head, itself at most len. */
#include "parse_http.h"

#include <limits.h>
#include <string.h>

/* tchar (RFC 9110 5.6.2): the characters of a method or a field name. */
static int is_tchar(unsigned char c)
{
    unsigned char l = c | 0x20;
    if ((l >= 'a' && l <= 'z') || (c >= '0' && c <= '9') || c == '-') return 1;
    return c != 0 && strchr("!#$%&'*+.^_`|~", c) != NULL;
}

/* field-vchar, SP and HTAB (RFC 9110 5.5), obs-text included.  NUL, CR, LF and the other
 * controls are refused: a CR or LF that survived into a value could be replayed into another
 * message (response splitting), and RFC 9110 5.5 requires rejecting them. */
static int is_field_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? c | 0x20 : c;
}

/* Consumes a line ending: CRLF, or a bare LF (RFC 9112 2.2).  A bare CR is invalid there. */
static int eol(const char **pp, const char *end)
{
    const char *p = *pp;
    if (p < end && *p == '\r') ++p;
    if (p >= end || *p != '\n') return 0;
    *pp = p + 1;
    return 1;
}

/* Length of the head (through its empty line) in buf[0..len), or 0 if not there yet.  The head
 * ends at the first LF followed by LF or CRLF.  The search resumes 3 bytes before where the last
 * one stopped, so an ending split across calls ("\n" | "\r\n") is still seen. */
static size_t head_end(const char *buf, size_t len, size_t from, size_t *scanned)
{
    size_t i = *scanned <= len && *scanned > 3 ? *scanned - 3 : 0;
    if (i < from) i = from;
    while (i < len) {
        const char *nl = memchr(buf + i, '\n', len - i);
        if (!nl) break;
        size_t k = (size_t)(nl - buf);
        if (k + 1 < len && buf[k + 1] == '\n') return k + 2;
        if (k + 2 < len && buf[k + 1] == '\r' && buf[k + 2] == '\n') return k + 3;
        i = k + 1;
    }
    *scanned = len;
    return 0;
}

/* "HTTP/1.x".  A later minor version than 1 is handled as 1.1 (RFC 9110 2.5). */
static int version(const char **pp, const char *end, int *minor)
{
    const char *p = *pp;
    if (end - p < 8 || memcmp(p, "HTTP/1.", 7) != 0 || p[7] < '0' || p[7] > '9') return 0;
    *minor = p[7] == '0' ? 0 : 1;
    *pp = p + 8;
    return 1;
}

/* Header lines up to and including the empty line that ends the head. */
static int headers(const char *p, const char *end, wsk_http_header *h, size_t *nh)
{
    size_t n = 0;
    for (;;) {
        if (p < end && (*p == '\r' || *p == '\n')) {
            if (!eol(&p, end)) return WSK_ERR_HTTP;
            *nh = n;
            return 0;
        }
        /* A line starting with SP or HTAB is obs-fold (or whitespace after the start line);
         * RFC 9112 5.2 and 2.2 let a server reject both, and it does: folding has been used to
         * hide headers from one parser but not another.  It fails here as an empty name, as does
         * whitespace before the colon (RFC 9112 5.1, request smuggling). */
        const char *name = p;
        while (p < end && is_tchar((unsigned char)*p)) ++p;
        if (p == name || p >= end || *p != ':') return WSK_ERR_HTTP;
        size_t name_len = (size_t)(p - name);
        ++p;
        while (p < end && is_ows(*p)) ++p;
        const char *value = p;
        while (p < end && is_field_char((unsigned char)*p)) ++p;
        const char *vend = p;
        while (vend > value && is_ows(vend[-1])) --vend;
        if (!eol(&p, end)) return WSK_ERR_HTTP;
        if (n == WSK_HTTP_MAX_HEADERS) return WSK_ERR_HEADER_SIZE;
        h[n].name = name;
        h[n].name_len = name_len;
        h[n].value = value;
        h[n].value_len = (size_t)(vend - value);
        ++n;
    }
}

int wsk_http_parse_request(const char *buf, size_t len, size_t *scanned, wsk_http_request *req)
{
    /* RFC 9112 2.2: a server SHOULD ignore at least one empty line before the request line (some
     * clients send CRLF after a POST body). */
    size_t skip = 0;
    if (len >= 1 && buf[0] == '\n')
        skip = 1;
    else if (len >= 2 && buf[0] == '\r' && buf[1] == '\n')
        skip = 2;
    else if (len == 1 && buf[0] == '\r')
        return 0;
    if (skip == len) return 0;
    /* Fail fast on what cannot be HTTP (a TLS ClientHello on a plain port, binary noise) instead
     * of waiting for an empty line that will never come. */
    if (!is_tchar((unsigned char)buf[skip])) return WSK_ERR_HTTP;

    size_t n = head_end(buf, len, skip, scanned);
    if (n == 0) return 0;
    if (n > INT_MAX) return WSK_ERR_HEADER_SIZE;
    const char *p = buf + skip, *end = buf + n;

    /* request-line = method SP request-target SP HTTP-version (RFC 9112 3).  Exactly one SP
     * between parts: lenient splitting on runs of whitespace is what lets two parsers disagree
     * on where the target ends. */
    req->method = p;
    while (p < end && is_tchar((unsigned char)*p)) ++p;
    req->method_len = (size_t)(p - req->method);
    if (p >= end || *p != ' ') return WSK_ERR_HTTP;
    req->target = ++p;
    while (p < end && (unsigned char)*p > ' ' && *p != 0x7f) ++p;
    req->target_len = (size_t)(p - req->target);
    if (req->target_len == 0 || p >= end || *p != ' ') return WSK_ERR_HTTP;
    ++p;
    if (!version(&p, end, &req->minor_version) || !eol(&p, end)) return WSK_ERR_HTTP;

    int r = headers(p, end, req->headers, &req->nheaders);
    return r < 0 ? r : (int)n;
}

int wsk_http_parse_response(const char *buf, size_t len, size_t *scanned, wsk_http_response *res)
{
    /* Fail fast on a peer that is not speaking HTTP at all. */
    if (len == 0) return 0;
    if (memcmp(buf, "HTTP/", len < 5 ? len : 5) != 0) return WSK_ERR_HTTP;

    size_t n = head_end(buf, len, 0, scanned);
    if (n == 0) return 0;
    if (n > INT_MAX) return WSK_ERR_HEADER_SIZE;
    const char *p = buf, *end = buf + n;

    /* status-line = HTTP-version SP status-code SP [ reason-phrase ] (RFC 9112 4); the second
     * SP is also accepted missing when the reason is empty, as some servers send it. */
    if (!version(&p, end, &res->minor_version)) return WSK_ERR_HTTP;
    if (end - p < 4 || p[0] != ' ') return WSK_ERR_HTTP;
    int status = 0;
    for (int i = 1; i <= 3; ++i) {
        if (p[i] < '0' || p[i] > '9') return WSK_ERR_HTTP;
        status = status * 10 + (p[i] - '0');
    }
    res->status = status;
    p += 4;
    if (p < end && *p == ' ')
        ++p;
    else if (p < end && *p != '\r' && *p != '\n')
        return WSK_ERR_HTTP;
    res->reason = p;
    while (p < end && is_field_char((unsigned char)*p)) ++p;
    res->reason_len = (size_t)(p - res->reason);
    if (!eol(&p, end)) return WSK_ERR_HTTP;

    int r = headers(p, end, res->headers, &res->nheaders);
    return r < 0 ? r : (int)n;
}

int wsk_http_is_token(const char *s, size_t n)
{
    for (size_t i = 0; i < n; ++i)
        if (!is_tchar((unsigned char)s[i])) return 0;
    return n > 0;
}

int wsk_http_ieq(const char *a, size_t alen, const char *b)
{
    for (size_t i = 0; i < alen; ++i)
        if (b[i] == '\0' || lower((unsigned char)a[i]) != lower((unsigned char)b[i])) return 0;
    return b[alen] == '\0';
}

const wsk_http_header *wsk_http_find(const wsk_http_header *h, size_t n, const char *name,
                                     size_t *from)
{
    for (size_t i = *from; i < n; ++i) {
        if (wsk_http_ieq(h[i].name, h[i].name_len, name)) {
            *from = i + 1;
            return &h[i];
        }
    }
    *from = n;
    return NULL;
}

int wsk_http_header_at(const wsk_http_header *h, size_t n, size_t i, const char **name,
                       size_t *name_len, const char **value, size_t *value_len)
{
    if (i >= n) return WSK_ERR_INVAL;
    if (name) *name = h[i].name;
    if (name_len) *name_len = h[i].name_len;
    if (value) *value = h[i].value;
    if (value_len) *value_len = h[i].value_len;
    return 0;
}

int wsk_http_has_token(const char *value, size_t len, const char *token)
{
    /* #element lists (RFC 9110 5.6.1): elements separated by commas with optional whitespace;
     * empty elements ("a, , b") are allowed and skipped. */
    const char *p = value, *end = value + len;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *e = comma ? comma : end;
        const char *s = p;
        while (s < e && is_ows(*s)) ++s;
        const char *t = e;
        while (t > s && is_ows(t[-1])) --t;
        if (wsk_http_ieq(s, (size_t)(t - s), token)) return 1;
        p = comma ? comma + 1 : end;
    }
    return 0;
}

/* ----- bodies --------------------------------------------------------------------------------- */

int wsk_http_content_length(const wsk_http_header *h, size_t n, uint64_t *len)
{
    size_t from = 0;
    int found = 0;
    uint64_t first = 0;
    for (const wsk_http_header *f; (f = wsk_http_find(h, n, "content-length", &from));) {
        /* 1*DIGIT (RFC 9110 8.6): no sign, no list, no whitespace inside. */
        uint64_t v = 0;
        if (!f->value_len) return WSK_ERR_HTTP;
        for (size_t i = 0; i < f->value_len; ++i) {
            unsigned d = (unsigned char)f->value[i] - '0';
            if (d > 9) return WSK_ERR_HTTP;
            v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
        }
        if (found && v != first) return WSK_ERR_HTTP;
        first = v;
        found = 1;
    }
    if (found) *len = first;
    return found;
}

static int hex_digit(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The decoder's states: each names what the next byte may be. */
enum {
    CH_SIZE = 0, /* hex digits of a chunk size */
    CH_EXT,      /* chunk extensions, up to the LF of the size line (RFC 9112 7.1.1) */
    CH_SIZE_LF,  /* the LF after the size line's CR */
    CH_DATA,     /* chunk data: d->left bytes */
    CH_DATA_CR,  /* the CRLF after the data */
    CH_DATA_LF,  /* its LF */
    CH_TRAILER,  /* the start of a trailer line, or of the final empty line (7.1.2) */
    CH_TRAILER_LINE,
    CH_END_LF, /* the LF of the final empty line */
    CH_DONE,
    CH_FAILED,
};

/* A size line ended: data follows, or the trailer section after the last chunk. */
static void size_line_end(wsk_http_chunked *d)
{
    d->digits = 0;
    d->state = d->left ? CH_DATA : CH_TRAILER;
}

/* One byte of the grammar outside chunk data: the next state, or CH_FAILED. */
static int chunked_step(wsk_http_chunked *d, unsigned char c)
{
    int v;
    switch (d->state) {
    case CH_SIZE:
        if ((v = hex_digit(c)) >= 0) {
            if (d->left >> 60) return CH_FAILED; /* a 17th significant digit */
            d->left = d->left << 4 | (uint64_t)v;
            d->digits = 1;
            return CH_SIZE;
        }
        if (!d->digits) return CH_FAILED;
        if (c == ';' || c == ' ' || c == '\t') return CH_EXT;
        if (c == '\r') return CH_SIZE_LF;
        if (c != '\n') return CH_FAILED;
        size_line_end(d);
        return d->state;
    case CH_EXT:
    case CH_SIZE_LF:
        if (c == '\n') {
            size_line_end(d);
            return d->state;
        }
        return d->state == CH_EXT ? CH_EXT : CH_FAILED;
    case CH_DATA_CR:
        if (c == '\r') return CH_DATA_LF;
        return c == '\n' ? CH_SIZE : CH_FAILED;
    case CH_DATA_LF: return c == '\n' ? CH_SIZE : CH_FAILED;
    case CH_TRAILER:
        if (c == '\r') return CH_END_LF;
        return c == '\n' ? CH_DONE : CH_TRAILER_LINE;
    case CH_TRAILER_LINE: return c == '\n' ? CH_TRAILER : CH_TRAILER_LINE;
    case CH_END_LF: return c == '\n' ? CH_DONE : CH_FAILED;
    default: return CH_FAILED;
    }
}

long wsk_http_chunked_decode(wsk_http_chunked *d, uint8_t *buf, size_t *len)
{
    size_t n = *len, i = 0, o = 0;
    while (i < n && d->state != CH_DONE && d->state != CH_FAILED) {
        if (d->state == CH_DATA) {
            /* The output never overtakes the input: o <= i. */
            size_t take = d->left < n - i ? (size_t)d->left : n - i;
            memmove(buf + o, buf + i, take);
            o += take;
            i += take;
            d->left -= take;
            if (!d->left) d->state = CH_DATA_CR;
            continue;
        }
        d->state = (uint8_t)chunked_step(d, buf[i++]);
    }
    *len = o;
    if (d->state == CH_FAILED) return WSK_ERR_HTTP;
    if (d->state != CH_DONE) return WSK_HTTP_PARTIAL;
    memmove(buf + o, buf + i, n - i);
    return (long)(n - i);
}
