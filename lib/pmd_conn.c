/* permessage-deflate on a connection: the glue between a socket and the codecs (pmd_libdeflate.c
 * for messages without context takeover, pmd_isal.c and pmd_zlib.c for those with).
 *
 * A socket that negotiated the extension keeps its parameters (8 bytes) and, only when a
 * direction keeps context, its own deflater (ISA-L's, or zlib's for the small modes and levels
 * 7..9: wsk_pmd_isal_serves) or zlib inflater, created on the first compressed message.  Every
 * direction without context takeover uses the loop's objects, whatever the mode: ISA-L's one-shot
 * compressor at levels 1..6 (any window), libdeflate's at 7..9 for messages that fit the window
 * and a zlib deflater per window size under 32 KiB for longer ones, and libdeflate's
 * decompressor.  A message whole in one read is inflated where it lies, the tail libdeflate needs
 * written over the next frame's first bytes and put back; one that ends a read is copied to the
 * loop's scratch buffer, with room for the tail; one that arrives split across reads or frames is
 * gathered first (compressed, so small), and inflated when its last byte arrives.  Without context
 * takeover a message that would not shrink goes uncompressed.
 */
#include "pmd_conn.h"
#include "pmd.h"

#include <stdlib.h>
#include <string.h>

typedef struct pmd_conn {
    wsk_pmd_params params;
    wsk_pmd_deflater *deflater;  /* context takeover: created on first use, zlib's */
    wsk_pmd_isal_deflater *fast; /* or ISA-L's */
    wsk_pmd_inflater *inflater;
    wsk_dbuf gather; /* no context takeover: compressed bytes of a message split across reads,
                      * with WSK_PMD_TAIL_ROOM spare bytes after them */
} pmd_conn;

/* Windows of the loop's zlib deflaters: 9..14 (8 is served by 9, see pmd_zlib.c; 15 never needs
 * zlib, libdeflate's window is 32 KiB). */
#define ZWIN_MIN 9
#define ZWIN_N   (15 - ZWIN_MIN)

/* The loop's scratch copy of a compressed message is kept between messages up to this size. */
#define LEND_KEEP (64 * 1024)

typedef struct pmd_shared {
    wsk_pmd_oneshot_deflater *oneshot[WSK_PMD_LEVEL_MAX]; /* per level (index level - 1) */
    wsk_pmd_deflater *window[WSK_PMD_LEVEL_MAX][ZWIN_N];  /* per level and window size */
    wsk_pmd_isal_oneshot *fast; /* ISA-L's, for the levels it serves, at every window */
    wsk_pmd_oneshot_inflater *inflater;
    wsk_pmd_inflater *zinflater; /* messages that go on past a BFINAL block */
    wsk_dbuf out;      /* compressed output of the message being sent, capped under its size */
    wsk_dbuf lend;     /* a whole compressed message that ended its read, with room for the tail */
    wsk_dbuf inflated; /* a whole received message, inflated for its handler */
} pmd_shared;

int wsk_compress_mode_parse(const char *name)
{
    return wsk_pmd_mode_parse(name);
}

static pmd_shared *shared(wsk_loop *loop)
{
    if (!loop->pmd_shared) {
        pmd_shared *s = calloc(1, sizeof *s);
        if (!s) return NULL;
        wsk_dbuf_init(&s->out, (size_t)1 << 31);
        /* Compressed bytes, which the caller already bounds by the max payload. */
        wsk_dbuf_init(&s->lend, SIZE_MAX);
        loop->pmd_shared = s;
    }
    return loop->pmd_shared;
}

static void config_of(const wsk_ctx *ctx, wsk_pmd_config *cfg)
{
    cfg->compress = ctx->lim.compress;
    cfg->decompress = ctx->lim.decompress;
    cfg->threshold = ctx->lim.compress_threshold;
}

static int level_of(const wsk_ctx *ctx)
{
    int l = ctx->lim.compress_level;
    return l >= WSK_PMD_LEVEL_MIN && l <= WSK_PMD_LEVEL_MAX ? l : WSK_PMD_LEVEL_DEFAULT;
}

static int attach(struct wsk_ws *c, const wsk_pmd_params *p)
{
    wsk_cold *k = wsk_conn_cold(c);
    pmd_conn *pc = k ? calloc(1, sizeof *pc) : NULL;
    if (!pc) return WSK_ERR_NOMEM;
    pc->params = *p;
    size_t max = c->ctx->lim.max_payload;
    wsk_dbuf_init(&pc->gather, max <= SIZE_MAX - WSK_PMD_TAIL_ROOM ? max + WSK_PMD_TAIL_ROOM : max);
    k->pmd = pc;
    c->flags |= WSK_F_PMD;
    return 0;
}

size_t wsk_pmd_extension_values(const wsk_http_header *h, size_t nh,
                                wsk_pmd_slice out[WSK_PMD_VALUES_MAX])
{
    size_t n = 0, from = 0;
    const wsk_http_header *v;
    while (n < WSK_PMD_VALUES_MAX && (v = wsk_http_find(h, nh, "sec-websocket-extensions", &from)))
        out[n++] = (wsk_pmd_slice){v->value, v->value_len};
    return n;
}

int wsk_pmd_conn_negotiate(struct wsk_ws *c, const wsk_http_request *req, char *out, size_t cap)
{
    wsk_pmd_config cfg;
    config_of(c->ctx, &cfg);
    if (cfg.compress == WSK_COMPRESS_DISABLE && cfg.decompress == WSK_COMPRESS_DISABLE) return 0;
    wsk_pmd_slice vals[WSK_PMD_VALUES_MAX];
    size_t n = wsk_pmd_extension_values(req->headers, req->nheaders, vals);
    if (!n) return 0;
    wsk_pmd_params p;
    if (wsk_pmd_server_negotiate(&cfg, vals, n, &p, out, cap) <= 0) return 0;
    return attach(c, &p) < 0 ? 0 : 1;
}

int wsk_pmd_conn_offer(const wsk_ctx *ctx, char *out, size_t cap)
{
    wsk_pmd_config cfg;
    config_of(ctx, &cfg);
    return wsk_pmd_client_offer(&cfg, out, cap);
}

int wsk_pmd_conn_accept(struct wsk_ws *c, const wsk_http_response *res)
{
    wsk_pmd_config cfg;
    config_of(c->ctx, &cfg);
    wsk_pmd_slice vals[WSK_PMD_VALUES_MAX];
    size_t n = wsk_pmd_extension_values(res->headers, res->nheaders, vals);
    wsk_pmd_params p;
    int r = wsk_pmd_client_accept(&cfg, vals, n, &p);
    if (r < 0) return r;
    return p.enabled ? attach(c, &p) : 0;
}

static wsk_pmd_inflater *inflater_of(pmd_conn *pc)
{
    if (!pc->inflater)
        pc->inflater = wsk_pmd_inflater_new(pc->params.inflate_bits, pc->params.inflate_reset);
    return pc->inflater;
}

/* A whole message from a peer that takes no context over: libdeflate, or zlib for the rare
 * stream that goes on past a BFINAL block. */
static int inflate_whole(pmd_shared *s, uint8_t *p, size_t n, wsk_dbuf *out)
{
    if (!s->inflater && !(s->inflater = wsk_pmd_oneshot_inflater_new())) return WSK_ERR_NOMEM;
    int r = wsk_pmd_oneshot_inflate(s->inflater, p, n, out);
    if (r != WSK_PMD_USE_ZLIB) return r;
    if (!s->zinflater && !(s->zinflater = wsk_pmd_inflater_new(WSK_PMD_SHARED_BITS, 1)))
        return WSK_ERR_NOMEM;
    return wsk_pmd_inflate(s->zinflater, p, n, 1, out);
}

int wsk_pmd_conn_inflate(struct wsk_ws *c, uint8_t *p, size_t n, size_t after, int fin,
                         wsk_dbuf *out)
{
    pmd_conn *pc = c->cold ? c->cold->pmd : NULL;
    if (!pc) return WSK_ERR_PROTOCOL;
    if (!pc->params.inflate_shared) {
        wsk_pmd_inflater *inf = inflater_of(pc);
        return inf ? wsk_pmd_inflate(inf, p, n, fin, out) : WSK_ERR_NOMEM;
    }
    pmd_shared *s = shared(c->ctx->loop);
    if (!s) return WSK_ERR_NOMEM;
    /* One-shot: inflate only whole messages, gathered when they come in pieces. */
    if (fin && !pc->gather.len) {
        if (after >= WSK_PMD_TAIL_ROOM) return inflate_whole(s, p, n, out);
        s->lend.len = 0;
        int r = wsk_dbuf_reserve(&s->lend, n + WSK_PMD_TAIL_ROOM);
        if (r < 0) return r;
        memcpy(s->lend.p, p, n);
        r = inflate_whole(s, s->lend.p, n, out);
        /* Kept for the next message, unless a rare large one would pin its size in the loop. */
        if (s->lend.cap > LEND_KEEP) wsk_dbuf_free(&s->lend);
        return r;
    }
    int r = wsk_dbuf_append(&pc->gather, p, n);
    if (r == 0) r = wsk_dbuf_reserve(&pc->gather, WSK_PMD_TAIL_ROOM);
    if (r < 0 || !fin) return r;
    r = inflate_whole(s, pc->gather.p, pc->gather.len, out);
    wsk_dbuf_free(&pc->gather);
    return r;
}

wsk_dbuf *wsk_pmd_conn_scratch(struct wsk_ws *c)
{
    pmd_shared *s = shared(c->ctx->loop);
    if (!s) return NULL;
    s->inflated.len = 0;
    s->inflated.max = c->ctx->lim.max_payload;
    return &s->inflated;
}

void wsk_pmd_scratch_done(wsk_dbuf *b)
{
    /* Kept for the next message, unless a rare large one would pin its size in the loop. */
    b->len = 0;
    if (b->cap > LEND_KEEP) wsk_dbuf_free(b);
}

/* Compresses a message that refers to no earlier one with the loop's objects at `level`, for a
 * peer whose window is 2^bits, into s->out (already emptied and capped): ISA-L's one-shot
 * deflater at levels 1..6, which bounds its matches by the window; libdeflate at 7..9, whose
 * matches stay within the message, so any window holds a message no longer than itself, and
 * zlib for longer ones. */
static int deflate_shared(pmd_shared *s, int level, int bits, const void *data, size_t len)
{
    if (wsk_pmd_isal_serves(WSK_PMD_SHARED_MEM, level)) {
        if (!s->fast && !(s->fast = wsk_pmd_isal_oneshot_new())) return WSK_ERR_NOMEM;
        return wsk_pmd_isal_oneshot_deflate(s->fast, bits, data, len, &s->out);
    }
    if (bits >= 15 || len <= (size_t)1 << bits) {
        wsk_pmd_oneshot_deflater **d = &s->oneshot[level - 1];
        if (!*d && !(*d = wsk_pmd_oneshot_deflater_new(level))) return WSK_ERR_NOMEM;
        return wsk_pmd_oneshot_deflate(*d, data, len, &s->out);
    }
    if (bits < ZWIN_MIN) bits = ZWIN_MIN;
    wsk_pmd_deflater **z = &s->window[level - 1][bits - ZWIN_MIN];
    if (!*z && !(*z = wsk_pmd_deflater_new(bits, WSK_PMD_SHARED_MEM, level))) return WSK_ERR_NOMEM;
    return wsk_pmd_deflate(*z, data, len, 1, &s->out);
}

/* Compresses a message with the socket's own deflater, created on first use.  On failure the
 * deflater starts afresh, which is always valid for the peer. */
static int deflate_own(pmd_conn *pc, int level, const void *data, size_t len, wsk_dbuf *out)
{
    const wsk_pmd_params *p = &pc->params;
    if (wsk_pmd_isal_serves(p->deflate_mem, level)) {
        if (!pc->fast && !(pc->fast = wsk_pmd_isal_deflater_new(p->deflate_bits)))
            return WSK_ERR_NOMEM;
        return wsk_pmd_isal_deflate(pc->fast, data, len, p->deflate_reset, out);
    }
    if (!pc->deflater &&
        !(pc->deflater = wsk_pmd_deflater_new(p->deflate_bits, p->deflate_mem, level)))
        return WSK_ERR_NOMEM;
    return wsk_pmd_deflate(pc->deflater, data, len, p->deflate_reset, out);
}

/* Compresses a message with the socket's deflater (or the loop's) into the loop's scratch
 * buffer; returns it, or NULL when the message must go uncompressed: compression failed, or,
 * without context takeover, it would not shrink (the cap makes the codecs stop at the first
 * byte that proves it).  A deflater that keeps context sends every message compressed: one sent
 * plainly would have to leave its window (a reset), and the next messages would lose what they
 * match in it (an echo of repeated random bytes then costs a full deflate each: 3.5x the CPU). */
static const wsk_dbuf *deflate_msg(struct wsk_ws *c, pmd_conn *pc, const void *data, size_t len)
{
    pmd_shared *s = shared(c->ctx->loop);
    if (!s || !pc->params.deflate_bits || !len) return NULL;
    int level = level_of(c->ctx), rc;
    s->out.len = 0;
    if (pc->params.deflate_shared) {
        s->out.max = len - 1;
        rc = deflate_shared(s, level, pc->params.deflate_bits, data, len);
    } else {
        s->out.max = (size_t)1 << 31;
        rc = deflate_own(pc, level, data, len, &s->out);
    }
    return rc < 0 ? NULL : &s->out;
}

long wsk_pmd_conn_send(struct wsk_ws *c, const void *data, size_t len, unsigned op)
{
    pmd_conn *pc = c->cold ? c->cold->pmd : NULL;
    const wsk_dbuf *z = pc ? deflate_msg(c, pc, data, len) : NULL;
    if (!z) return wsk_send_frame(c, op, 0, data, len, 0);
    wsk_stats_compressed(c->ctx->stats.deflate, len, z->len);
    return wsk_send_frame(c, op, WSK_RSV1, z->p, z->len, 0);
}

int wsk_pmd_shared_compress(struct wsk_ws *c, const void *data, size_t len, const void **z,
                            size_t *zlen)
{
    pmd_shared *s = shared(c->ctx->loop);
    if (!s) return WSK_ERR_NOMEM;
    if (!len) return 0;
    s->out.len = 0;
    s->out.max = len - 1;
    int rc = deflate_shared(s, level_of(c->ctx), 15, data, len);
    if (rc == WSK_ERR_TOO_BIG) return 0;
    if (rc < 0) return rc;
    /* Counted here, once per compression, however many sockets then share the frame. */
    wsk_stats_compressed(c->ctx->stats.deflate, len, s->out.len);
    *z = s->out.p;
    *zlen = s->out.len;
    return 1;
}

int wsk_pmd_conn_shares_deflater(const struct wsk_ws *c, size_t len)
{
    const pmd_conn *pc = c->cold ? c->cold->pmd : NULL;
    if (!pc || !pc->params.deflate_bits || !pc->params.deflate_shared) return 0;
    return pc->params.deflate_bits >= 15 || len <= (size_t)1 << pc->params.deflate_bits;
}

uint64_t wsk_pmd_shared_messages(const wsk_loop *loop)
{
    const pmd_shared *s = loop->pmd_shared;
    uint64_t n = 0;
    for (int l = 0; s && l < WSK_PMD_LEVEL_MAX; l++) {
        if (s->oneshot[l]) n += wsk_pmd_oneshot_deflater_messages(s->oneshot[l]);
        for (int w = 0; w < ZWIN_N; w++)
            if (s->window[l][w]) n += wsk_pmd_deflater_messages(s->window[l][w]);
    }
    if (s && s->fast) n += wsk_pmd_isal_oneshot_messages(s->fast);
    return n;
}

void wsk_pmd_conn_free(struct wsk_ws *c)
{
    pmd_conn *pc = c->cold ? c->cold->pmd : NULL;
    if (!pc) return;
    wsk_pmd_deflater_free(pc->deflater);
    wsk_pmd_isal_deflater_free(pc->fast);
    wsk_pmd_inflater_free(pc->inflater);
    wsk_dbuf_free(&pc->gather);
    free(pc);
    c->cold->pmd = NULL;
}

void wsk_pmd_loop_free(wsk_loop *loop)
{
    pmd_shared *s = loop->pmd_shared;
    if (!s) return;
    for (int l = 0; l < WSK_PMD_LEVEL_MAX; l++) {
        wsk_pmd_oneshot_deflater_free(s->oneshot[l]);
        for (int w = 0; w < ZWIN_N; w++) wsk_pmd_deflater_free(s->window[l][w]);
    }
    wsk_pmd_isal_oneshot_free(s->fast);
    wsk_pmd_oneshot_inflater_free(s->inflater);
    wsk_pmd_inflater_free(s->zinflater);
    wsk_dbuf_free(&s->out);
    wsk_dbuf_free(&s->lend);
    wsk_dbuf_free(&s->inflated);
    free(s);
    loop->pmd_shared = NULL;
}
