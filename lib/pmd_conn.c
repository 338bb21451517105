/* permessage-deflate on a connection: the glue between a socket and the codec (pmd_codec.c).
 *
 * A socket that negotiated the extension keeps its parameters (8 bytes) and, only in dedicated
 * modes, its own deflater or inflater, created on the first compressed message.  Shared modes
 * use the loop's objects, reset after each message, so such sockets hold no zlib state at all.
 * The shared inflater takes one message at a time: a compressed message that arrives whole is
 * inflated at once; one split across reads or frames is gathered first (compressed, so small),
 * and inflated when its last byte arrives. */
#include "pmd_conn.h"
#include "pmd.h"

#include <stdlib.h>
#include <string.h>

typedef struct pmd_conn {
    wsk_pmd_params params;
    wsk_pmd_deflater *deflater; /* dedicated modes, created on first use */
    wsk_pmd_inflater *inflater;
    wsk_dbuf gather; /* shared inflater: compressed bytes of a message split across reads */
} pmd_conn;

typedef struct pmd_shared {
    wsk_pmd_deflater *deflater;
    wsk_pmd_inflater *inflater;
    wsk_dbuf out; /* compressed output of the message being sent */
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

static int attach(struct wsk_ws *c, const wsk_pmd_params *p)
{
    wsk_cold *k = wsk_conn_cold(c);
    pmd_conn *pc = k ? calloc(1, sizeof *pc) : NULL;
    if (!pc) return WSK_ERR_NOMEM;
    pc->params = *p;
    wsk_dbuf_init(&pc->gather, c->ctx->lim.max_payload);
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

static wsk_pmd_inflater *inflater_of(struct wsk_ws *c, pmd_conn *pc)
{
    if (pc->params.inflate_shared) {
        pmd_shared *s = shared(c->ctx->loop);
        if (s && !s->inflater) s->inflater = wsk_pmd_inflater_new(WSK_PMD_SHARED_BITS, 1);
        return s ? s->inflater : NULL;
    }
    if (!pc->inflater)
        pc->inflater = wsk_pmd_inflater_new(pc->params.inflate_bits, pc->params.inflate_reset);
    return pc->inflater;
}

int wsk_pmd_conn_inflate(struct wsk_ws *c, const uint8_t *p, size_t n, int fin, wsk_dbuf *out)
{
    pmd_conn *pc = c->cold ? c->cold->pmd : NULL;
    if (!pc) return WSK_ERR_PROTOCOL;
    wsk_pmd_inflater *inf = inflater_of(c, pc);
    if (!inf) return WSK_ERR_NOMEM;
    if (!pc->params.inflate_shared) return wsk_pmd_inflate(inf, p, n, fin, out);
    /* Shared: inflate only whole messages, so another socket's message never interleaves. */
    if (!fin || pc->gather.len) {
        int r = wsk_dbuf_append(&pc->gather, p, n);
        if (r < 0) return r;
        if (!fin) return 0;
        r = wsk_pmd_inflate(inf, pc->gather.p, pc->gather.len, 1, out);
        wsk_dbuf_free(&pc->gather);
        return r;
    }
    return wsk_pmd_inflate(inf, p, n, 1, out);
}

/* Compresses a message with the socket's deflater (or the loop's) into the loop's scratch
 * buffer; returns it, or NULL when the message must go uncompressed. */
static const wsk_dbuf *deflate_msg(struct wsk_ws *c, pmd_conn *pc, const void *data, size_t len)
{
    pmd_shared *s = shared(c->ctx->loop);
    if (!s || !pc->params.deflate_bits) return NULL;
    wsk_pmd_deflater *d;
    if (pc->params.deflate_shared) {
        if (!s->deflater)
            s->deflater = wsk_pmd_deflater_new(WSK_PMD_SHARED_BITS, WSK_PMD_SHARED_MEM);
        d = s->deflater;
    } else {
        if (!pc->deflater)
            pc->deflater = wsk_pmd_deflater_new(pc->params.deflate_bits, pc->params.deflate_mem);
        d = pc->deflater;
    }
    if (!d) return NULL;
    s->out.len = 0;
    int reset = pc->params.deflate_shared || pc->params.deflate_reset;
    return wsk_pmd_deflate(d, data, len, reset, &s->out) < 0 ? NULL : &s->out;
}

long wsk_pmd_conn_send(struct wsk_ws *c, const void *data, size_t len, unsigned op)
{
    pmd_conn *pc = c->cold ? c->cold->pmd : NULL;
    const wsk_dbuf *z = pc ? deflate_msg(c, pc, data, len) : NULL;
    if (!z) return wsk_send_frame(c, op, 0, data, len, 0);
    wsk_stats_compressed(c->ctx->stats.deflate, len, z->len);
    return wsk_send_frame(c, op, WSK_RSV1, z->p, z->len, 0);
}

const void *wsk_pmd_shared_compress(wsk_loop *loop, const void *data, size_t len, size_t *out_len)
{
    pmd_shared *s = shared(loop);
    if (!s) return NULL;
    if (!s->deflater) s->deflater = wsk_pmd_deflater_new(WSK_PMD_SHARED_BITS, WSK_PMD_SHARED_MEM);
    if (!s->deflater) return NULL;
    s->out.len = 0;
    if (wsk_pmd_deflate(s->deflater, data, len, 1, &s->out) < 0) return NULL;
    *out_len = s->out.len;
    return s->out.p;
}

int wsk_pmd_conn_shares_deflater(const struct wsk_ws *c)
{
    const pmd_conn *pc = c->cold ? c->cold->pmd : NULL;
    return pc && pc->params.deflate_bits && pc->params.deflate_shared;
}

uint64_t wsk_pmd_shared_messages(const wsk_loop *loop)
{
    const pmd_shared *s = loop->pmd_shared;
    return s && s->deflater ? wsk_pmd_deflater_messages(s->deflater) : 0;
}

void wsk_pmd_conn_free(struct wsk_ws *c)
{
    pmd_conn *pc = c->cold ? c->cold->pmd : NULL;
    if (!pc) return;
    wsk_pmd_deflater_free(pc->deflater);
    wsk_pmd_inflater_free(pc->inflater);
    wsk_dbuf_free(&pc->gather);
    free(pc);
    c->cold->pmd = NULL;
}

void wsk_pmd_loop_free(wsk_loop *loop)
{
    pmd_shared *s = loop->pmd_shared;
    if (!s) return;
    wsk_pmd_deflater_free(s->deflater);
    wsk_pmd_inflater_free(s->inflater);
    wsk_dbuf_free(&s->out);
    free(s);
    loop->pmd_shared = NULL;
}
