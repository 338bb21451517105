/* The send queue of one socket: a list of segments, each a run of bytes in a block.
 *
 * Small sends are copied into the private block at the tail (one memcpy, no allocation while
 * the block has room).  A message published to many sockets is framed once into a shared block
 * and each socket's queue gets a segment that points into it (wsk_queue_share), so a further
 * subscriber costs one small node, not a copy.  The queue allocates nothing while it is empty:
 * an idle socket owns no send memory. */
#include "internal.h"
#include "mask.h"

#include <stdlib.h>
#include <string.h>

static wsk_seg *seg_new(wsk_block *b, size_t off, size_t len)
{
    wsk_seg *s = malloc(sizeof *s);
    if (!s) return NULL;
    s->next = NULL;
    s->blk = b;
    s->off = (uint32_t)off;
    s->len = (uint32_t)len;
    return s;
}

static void seg_append(wsk_queue *q, wsk_seg *s)
{
    if (q->tail)
        q->tail->next = s;
    else
        q->head = s;
    q->tail = s;
}

uint8_t *wsk_queue_reserve_block(struct wsk_ws *c, size_t n)
{
    wsk_block *b = wsk_block_new(c->ctx->loop, n);
    if (!b) return NULL;
    wsk_seg *s = seg_new(b, 0, 0);
    if (!s) {
        wsk_block_unref(c->ctx->loop, b);
        return NULL;
    }
    seg_append(&c->q, s);
    return b->data;
}

/* Pieces of at most a default block, so the blocks come from the loop's cache and go back. */
int wsk_queue_write_masked(struct wsk_ws *c, const void *p, size_t n, const uint8_t key[4])
{
    const uint8_t *src = p;
    size_t off = 0;
    while (n) {
        size_t k = n < WSK_BLOCK_SIZE ? n : WSK_BLOCK_SIZE;
        uint8_t *dst = wsk_queue_reserve(c, k);
        if (!dst) return WSK_ERR_NOMEM;
        if (key)
            off = wsk_mask_copy(dst, src, k, key, off);
        else
            memcpy(dst, src, k);
        wsk_queue_commit(c, k);
        src += k;
        n -= k;
    }
    return 0;
}

int wsk_queue_write(struct wsk_ws *c, const void *p, size_t n)
{
    return wsk_queue_write_masked(c, p, n, NULL);
}

int wsk_queue_share(struct wsk_ws *c, wsk_block *b, size_t off, size_t len)
{
    wsk_seg *s = seg_new(b, off, len);
    if (!s) return WSK_ERR_NOMEM;
    b->refs++;
    seg_append(&c->q, s);
    c->q.bytes += len;
    return 0;
}

int wsk_queue_iov(struct wsk_ws *c, struct iovec *iov, int max)
{
    int n = 0;
    size_t total = 0;
    for (wsk_seg *s = c->q.head; s && n < max && total < WSK_WRITE_MAX; s = s->next) {
        if (!s->len) continue;
        iov[n].iov_base = s->blk->data + s->off;
        iov[n].iov_len = s->len;
        total += s->len;
        n++;
    }
    return n;
}

void wsk_queue_consume(struct wsk_ws *c, size_t n)
{
    wsk_queue *q = &c->q;
    q->bytes -= n;
    while (q->head) {
        wsk_seg *s = q->head;
        if (n < s->len) {
            s->off += (uint32_t)n;
            s->len -= (uint32_t)n;
            return;
        }
        n -= s->len;
        q->head = s->next;
        if (!q->head) q->tail = NULL;
        wsk_block_unref(c->ctx->loop, s->blk);
        free(s);
    }
}

void wsk_queue_clear(struct wsk_ws *c)
{
    wsk_seg *s = c->q.head;
    while (s) {
        wsk_seg *next = s->next;
        wsk_block_unref(c->ctx->loop, s->blk);
        free(s);
        s = next;
    }
    c->q.head = c->q.tail = NULL;
    c->q.bytes = 0;
}
