/* permessage-deflate negotiation (RFC 7692 sections 5 and 7.1): see pmd.h. */
#include "pmd.h"

#include <stdio.h>
#include <string.h>

/* Per mode: name, zlib windowBits and memLevel.  The sizes are uWebSockets'
 * DEDICATED_COMPRESSOR_* values (2^(windowBits+2) + 2^(memLevel+9) bytes); "shared" describes
 * the loop's objects, which use the full window. */
static const struct {
    const char *name;
    uint8_t bits, mem;
} modes[] = {
    [WSK_COMPRESS_DISABLE] = {"disable", 0, 0},
    [WSK_COMPRESS_SHARED] = {"shared", 15, 8},
    [WSK_COMPRESS_DEDICATED] = {"dedicated", 15, 8},
    [WSK_COMPRESS_3KB] = {"3KB", 9, 1},
    [WSK_COMPRESS_4KB] = {"4KB", 9, 2},
    [WSK_COMPRESS_8KB] = {"8KB", 10, 3},
    [WSK_COMPRESS_16KB] = {"16KB", 11, 4},
    [WSK_COMPRESS_32KB] = {"32KB", 12, 5},
    [WSK_COMPRESS_64KB] = {"64KB", 13, 6},
    [WSK_COMPRESS_128KB] = {"128KB", 14, 7},
    [WSK_COMPRESS_256KB] = {"256KB", 15, 8},
};
#define NMODES ((int)(sizeof modes / sizeof modes[0]))

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* Case-insensitive equality of s[0..n) and the NUL-terminated lowercase or mixed `lit`. */
static int ieq(const char *s, size_t n, const char *lit)
{
    size_t i = 0;
    for (; i < n && lit[i]; i++)
        if (lower((unsigned char)s[i]) != lower((unsigned char)lit[i])) return 0;
    return i == n && !lit[i];
}

int wsk_pmd_mode_parse(const char *name)
{
    if (!name) return WSK_ERR_INVAL;
    size_t n = strlen(name);
    if (ieq(name, n, "false")) return WSK_COMPRESS_DISABLE;
    if (ieq(name, n, "true")) return WSK_COMPRESS_SHARED;
    for (int m = 0; m < NMODES; m++)
        if (ieq(name, n, modes[m].name)) return m;
    return WSK_ERR_INVAL;
}

const char *wsk_pmd_mode_name(int mode)
{
    return mode >= 0 && mode < NMODES ? modes[mode].name : "?";
}

int wsk_pmd_mode_zlib(int mode, int *window_bits, int *mem_level)
{
    if (mode <= WSK_COMPRESS_DISABLE || mode >= NMODES) return WSK_ERR_INVAL;
    if (window_bits) *window_bits = modes[mode].bits;
    if (mem_level) *mem_level = modes[mode].mem;
    return 0;
}

/* ----- Sec-WebSocket-Extensions syntax (RFC 6455 section 9.1) ------------------------------- */

/* The parameters of one permessage-deflate element.  Window values: 0 absent, 8..15 given; for
 * client_max_window_bits, 1 means present without a value. */
typedef struct pmd_ext {
    uint8_t snct, cnct, smwb, cmwb;
    uint8_t bad; /* unknown, repeated or ill-valued parameter (RFC 7692 section 7) */
} pmd_ext;

typedef struct cursor {
    const char *s;
    size_t len, pos;
} cursor;

static int is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return 1;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static void skip_ows(cursor *c)
{
    while (c->pos < c->len && (c->s[c->pos] == ' ' || c->s[c->pos] == '\t')) c->pos++;
}

/* A token at the cursor: its length (0 when there is none). */
static size_t token(cursor *c)
{
    size_t start = c->pos;
    while (c->pos < c->len && is_tchar((unsigned char)c->s[c->pos])) c->pos++;
    return c->pos - start;
}

/* A parameter value, token or quoted-string, unescaped into v[0..cap).  Returns its length,
 * cap + 1 when it is longer than cap (no valid value is), -1 on a syntax error. */
static long value(cursor *c, char *v, size_t cap)
{
    size_t n = 0;
    if (c->pos < c->len && c->s[c->pos] == '"') {
        for (c->pos++;; c->pos++) {
            if (c->pos >= c->len) return -1;
            unsigned char ch = (unsigned char)c->s[c->pos];
            if (ch == '"') break;
            if (ch == '\\') {
                if (++c->pos >= c->len) return -1;
                ch = (unsigned char)c->s[c->pos];
            }
            if ((ch < 0x20 && ch != '\t') || ch == 0x7f) return -1;
            if (n < cap) v[n] = (char)ch;
            if (n <= cap) n++;
        }
        c->pos++;
        /* RFC 6455 section 9.1: once unquoted, the value must still be a token. */
        for (size_t i = 0; i < n && i < cap; i++)
            if (!is_tchar((unsigned char)v[i])) return (long)cap + 1;
        return n ? (long)n : (long)cap + 1;
    }
    size_t start = c->pos, k = token(c);
    if (!k) return -1;
    for (size_t i = 0; i < k && i < cap; i++) v[i] = c->s[start + i];
    return k > cap ? (long)cap + 1 : (long)k;
}

/* RFC 7692 section 7.1.2: a decimal 8..15 without leading zeroes.  0 when invalid. */
static uint8_t window_value(const char *v, long n)
{
    if (n == 1 && (v[0] == '8' || v[0] == '9')) return (uint8_t)(v[0] - '0');
    if (n == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5') return (uint8_t)(10 + v[1] - '0');
    return 0;
}

/* Records one parameter of a permessage-deflate element. */
static void ext_param(pmd_ext *e, const char *name, size_t nlen, const char *v, long vlen)
{
    uint8_t *slot;
    int valued; /* 1 value required, 0 forbidden, -1 optional */
    if (ieq(name, nlen, "server_no_context_takeover")) {
        slot = &e->snct, valued = 0;
    } else if (ieq(name, nlen, "client_no_context_takeover")) {
        slot = &e->cnct, valued = 0;
    } else if (ieq(name, nlen, "server_max_window_bits")) {
        slot = &e->smwb, valued = 1;
    } else if (ieq(name, nlen, "client_max_window_bits")) {
        slot = &e->cmwb, valued = -1;
    } else {
        e->bad = 1;
        return;
    }
    if (*slot || (vlen < 0 && valued == 1) || (vlen >= 0 && valued == 0)) {
        e->bad = 1;
        return;
    }
    *slot = vlen < 0 ? 1 : window_value(v, vlen);
    if (!*slot) e->bad = 1;
}

/* Parses the next element of an extension list.  Returns 1 with *is_pmd and *e set (e only for
 * permessage-deflate), 0 at the end of the list, -1 on a syntax error.  Empty list elements are
 * skipped (RFC 9110 section 5.6.1). */
static int next_element(cursor *c, int *is_pmd, pmd_ext *e)
{
    for (;;) {
        skip_ows(c);
        if (c->pos >= c->len) return 0;
        if (c->s[c->pos] != ',') break;
        c->pos++;
    }
    size_t start = c->pos, k = token(c);
    if (!k) return -1;
    *is_pmd = ieq(c->s + start, k, "permessage-deflate");
    memset(e, 0, sizeof *e);
    for (;;) {
        skip_ows(c);
        if (c->pos >= c->len) return 1;
        if (c->s[c->pos] == ',') {
            c->pos++;
            return 1;
        }
        if (c->s[c->pos] != ';') return -1;
        c->pos++;
        skip_ows(c);
        const char *name = c->s + c->pos;
        size_t nlen = token(c);
        if (!nlen) return -1;
        skip_ows(c);
        char v[3];
        long vlen = -1;
        if (c->pos < c->len && c->s[c->pos] == '=') {
            c->pos++;
            skip_ows(c);
            vlen = value(c, v, sizeof v);
            if (vlen < 0) return -1;
        }
        if (*is_pmd) ext_param(e, name, nlen, v, vlen);
    }
}

/* ----- building header values --------------------------------------------------------------- */

typedef struct answer {
    uint8_t snct, cnct, smwb, cmwb; /* cmwb: 1 means without a value (offers only) */
} answer;

static int write_value(const answer *a, char *out, size_t cap)
{
    char buf[WSK_PMD_HEADER_MAX];
    int n = snprintf(buf, sizeof buf, "permessage-deflate%s%s",
                     a->snct ? "; server_no_context_takeover" : "",
                     a->cnct ? "; client_no_context_takeover" : "");
    if (a->smwb)
        n += snprintf(buf + n, sizeof buf - (size_t)n, "; server_max_window_bits=%d", a->smwb);
    if (a->cmwb == 1)
        n += snprintf(buf + n, sizeof buf - (size_t)n, "; client_max_window_bits");
    else if (a->cmwb)
        n += snprintf(buf + n, sizeof buf - (size_t)n, "; client_max_window_bits=%d", a->cmwb);
    if ((size_t)n >= cap) return WSK_ERR_INVAL;
    memcpy(out, buf, (size_t)n + 1);
    return n;
}

int wsk_pmd_mode_valid(int m)
{
    return m >= 0 && m < NMODES;
}

/* The decompressor mode in force: a disabled one beside an enabled compressor acts as shared. */
static int inflate_mode(const wsk_pmd_config *cfg)
{
    return cfg->decompress == WSK_COMPRESS_DISABLE ? WSK_COMPRESS_SHARED : cfg->decompress;
}

/* Fills the compressor half of *p. */
static void set_deflate(wsk_pmd_params *p, int bits, int mem, int reset)
{
    p->deflate_bits = (uint8_t)bits;
    p->deflate_mem = (uint8_t)mem;
    p->deflate_reset = (uint8_t)reset;
    /* Without context takeover nothing has to survive a message, so the loop's compressors
     * serve as well as a socket's own, at any window (the loop keeps one per window size). */
    p->deflate_shared = (uint8_t)(bits && reset);
}

/* ----- server ------------------------------------------------------------------------------- */

/* Decides on one valid offer: fills *p and *a, or returns 0 to decline it. */
static int server_pick(const wsk_pmd_config *cfg, const pmd_ext *o, wsk_pmd_params *p, answer *a)
{
    memset(p, 0, sizeof *p);
    memset(a, 0, sizeof *a);

    /* Our messages.  Section 7.1.1.1: an offered server_no_context_takeover must be answered;
     * section 7.1.2.1: an offered server_max_window_bits must be answered with the same or a
     * smaller value, and the server may send one that was not offered. */
    int bits = 15, mem = 8;
    if (cfg->compress == WSK_COMPRESS_DISABLE) {
        /* We never compress, so any limit holds: echo what the offer requires. */
        a->snct = o->snct;
        a->smwb = o->smwb;
    } else {
        wsk_pmd_mode_zlib(cfg->compress, &bits, &mem);
        int reset = cfg->compress == WSK_COMPRESS_SHARED || o->snct;
        /* The loop's compressors honour any window too (see set_deflate). */
        if (o->smwb && o->smwb < bits) bits = o->smwb;
        a->snct = (uint8_t)reset;
        if (o->smwb || bits < 15) a->smwb = (uint8_t)bits;
        set_deflate(p, bits, mem, reset);
    }

    /* The client's messages.  Section 7.1.1.2: the server may ask for client_no_context_takeover
     * whether or not it was offered; section 7.1.2.2: client_max_window_bits may be answered
     * only when offered, with at most the offered value. */
    int imode = inflate_mode(cfg), ibits = 15;
    if (imode != WSK_COMPRESS_SHARED) wsk_pmd_mode_zlib(imode, &ibits, NULL);
    int shared = imode == WSK_COMPRESS_SHARED || o->cnct;
    if (!shared && ibits < 15) {
        if (o->cmwb) {
            if (o->cmwb > 1 && o->cmwb < ibits) ibits = o->cmwb;
            a->cmwb = (uint8_t)ibits;
        } else {
            /* A client that cannot bound its window gets the loop's full-window inflater and
             * no context takeover, so the socket's memory stays within its mode. */
            shared = 1;
        }
    }
    if (shared) {
        a->cnct = 1;
        ibits = WSK_PMD_SHARED_BITS;
    }
    p->inflate_bits = (uint8_t)ibits;
    p->inflate_reset = p->inflate_shared = (uint8_t)shared;
    p->enabled = 1;
    return 1;
}

int wsk_pmd_server_negotiate(const wsk_pmd_config *cfg, const wsk_pmd_slice *values, size_t n,
                             wsk_pmd_params *params, char *out, size_t cap)
{
    memset(params, 0, sizeof *params);
    if (!cap) return WSK_ERR_INVAL;
    out[0] = 0;
    if (!wsk_pmd_mode_valid(cfg->compress) || !wsk_pmd_mode_valid(cfg->decompress))
        return WSK_ERR_INVAL;
    if (cfg->compress == WSK_COMPRESS_DISABLE && cfg->decompress == WSK_COMPRESS_DISABLE) return 0;

    for (size_t i = 0; i < n; i++) {
        cursor c = {values[i].p, values[i].p ? values[i].len : 0, 0};
        int is_pmd, r;
        pmd_ext e;
        /* Section 5: offers are in the client's order of preference; take the first we can.
         * A syntax error leaves the rest of this value unreadable, so it is skipped. */
        while ((r = next_element(&c, &is_pmd, &e)) > 0) {
            answer a;
            if (!is_pmd || e.bad || !server_pick(cfg, &e, params, &a)) continue;
            int len = write_value(&a, out, cap);
            if (len < 0) memset(params, 0, sizeof *params);
            return len;
        }
    }
    memset(params, 0, sizeof *params);
    return 0;
}

/* ----- client ------------------------------------------------------------------------------- */

/* The offers wsk_pmd_client_offer makes for cfg, in order of preference: returns how many. */
static int client_offers(const wsk_pmd_config *cfg, answer a[2])
{
    memset(a, 0, 2 * sizeof *a);
    int imode = inflate_mode(cfg), bits = 15;
    /* Our shared inflater resets after every message: the server must too (7.1.1.1).  A small
     * dedicated one bounds the server's window (7.1.2.1). */
    if (imode == WSK_COMPRESS_SHARED) {
        a->snct = 1;
    } else {
        wsk_pmd_mode_zlib(imode, &bits, NULL);
        if (bits < 15) a->smwb = (uint8_t)bits;
    }
    /* A shared (or absent) deflater keeps no context: say so (7.1.1.2), and offer no
     * client_max_window_bits, which it could not honour.  A dedicated one accepts a limit
     * and announces its own (7.1.2.2). */
    if (cfg->compress == WSK_COMPRESS_DISABLE || cfg->compress == WSK_COMPRESS_SHARED) {
        a->cnct = 1;
    } else {
        wsk_pmd_mode_zlib(cfg->compress, &bits, NULL);
        a->cmwb = (uint8_t)(bits < 15 ? bits : 1);
    }
    if (!a->smwb) return 1;
    /* A server whose window is fixed (a shared compressor) must decline a smaller one, so a
     * second offer falls back to the loop's full-window inflater without context takeover. */
    a[1] = a[0];
    a[1].smwb = 0;
    a[1].snct = 1;
    return 2;
}

int wsk_pmd_client_offer(const wsk_pmd_config *cfg, char *out, size_t cap)
{
    if (!cap) return WSK_ERR_INVAL;
    out[0] = 0;
    if (!wsk_pmd_mode_valid(cfg->compress) || !wsk_pmd_mode_valid(cfg->decompress))
        return WSK_ERR_INVAL;
    if (cfg->compress == WSK_COMPRESS_DISABLE && cfg->decompress == WSK_COMPRESS_DISABLE) return 0;
    answer a[2];
    int k = client_offers(cfg, a), n = write_value(&a[0], out, cap);
    if (n < 0 || k == 1) return n;
    if (cap - (size_t)n < 3) return WSK_ERR_INVAL;
    int m = write_value(&a[1], out + n + 2, cap - (size_t)n - 2);
    if (m < 0) {
        out[0] = 0;
        return m;
    }
    memcpy(out + n, ", ", 2);
    return n + 2 + m;
}

/* 1 when the response parameters r may answer the offer `off`.  RFC 7692 section 5: a response
 * must not carry a parameter the offer rules out.  7.1.2.2: client_max_window_bits needs a
 * value in a response, only if offered, at most the offered value.  7.1.1.1, 7.1.2.1: requested
 * server limits must be answered. */
static int answers(const pmd_ext *r, const answer *off)
{
    if (r->cmwb && (r->cmwb == 1 || !off->cmwb || (off->cmwb > 1 && r->cmwb > off->cmwb))) return 0;
    if (off->snct && !r->snct) return 0;
    return !off->smwb || (r->smwb && r->smwb <= off->smwb);
}

int wsk_pmd_client_accept(const wsk_pmd_config *cfg, const wsk_pmd_slice *values, size_t n,
                          wsk_pmd_params *params)
{
    memset(params, 0, sizeof *params);
    if (!wsk_pmd_mode_valid(cfg->compress) || !wsk_pmd_mode_valid(cfg->decompress))
        return WSK_ERR_INVAL;

    pmd_ext r = {0};
    int count = 0;
    for (size_t i = 0; i < n; i++) {
        cursor c = {values[i].p, values[i].p ? values[i].len : 0, 0};
        int is_pmd, k;
        pmd_ext e;
        while ((k = next_element(&c, &is_pmd, &e)) > 0) {
            /* RFC 6455 section 4.1: only extensions we offered, and only one of ours. */
            if (!is_pmd || ++count > 1) return WSK_ERR_HANDSHAKE;
            r = e;
        }
        if (k < 0) return WSK_ERR_HANDSHAKE;
    }
    if (!count) return 0;
    if (cfg->compress == WSK_COMPRESS_DISABLE && cfg->decompress == WSK_COMPRESS_DISABLE)
        return WSK_ERR_HANDSHAKE;

    answer off[2];
    int k = client_offers(cfg, off);
    if (r.bad || !(answers(&r, &off[0]) || (k > 1 && answers(&r, &off[1]))))
        return WSK_ERR_HANDSHAKE;

    if (cfg->compress != WSK_COMPRESS_DISABLE) {
        int bits = 15, mem = 8;
        wsk_pmd_mode_zlib(cfg->compress, &bits, &mem);
        if (r.cmwb && r.cmwb < bits) bits = r.cmwb;
        set_deflate(params, bits, mem, off[0].cnct || r.cnct);
    }
    int shared = r.snct != 0;
    params->inflate_bits = (uint8_t)(shared ? WSK_PMD_SHARED_BITS : r.smwb ? r.smwb : 15);
    params->inflate_reset = params->inflate_shared = (uint8_t)shared;
    params->enabled = 1;
    return 0;
}
