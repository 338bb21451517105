/* Capped growable buffers: see buf.h. */
#include "buf.h"
#include "wskit.h"

#include <stdlib.h>
#include <string.h>

int wsk_dbuf_reserve(wsk_dbuf *b, size_t extra)
{
    /* len may be past max already: a scratch buffer reused with a lower max, which a codec
     * filled up to its capacity.  Nothing more fits then (and the buffer never shrinks). */
    if (b->len > b->max || extra > b->max - b->len) return WSK_ERR_TOO_BIG;
    size_t need = b->len + extra;
    if (need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > b->max) cap = b->max;
    if (cap > SIZE_MAX - b->pre) return WSK_ERR_NOMEM;
    uint8_t *p = realloc(b->p ? b->p - b->pre : NULL, b->pre + cap);
    if (!p) return WSK_ERR_NOMEM;
    b->p = p + b->pre;
    b->cap = cap;
    return 0;
}

int wsk_dbuf_append(wsk_dbuf *b, const void *data, size_t n)
{
    int r = wsk_dbuf_reserve(b, n);
    if (r < 0) return r;
    if (n) memcpy(b->p + b->len, data, n);
    b->len += n;
    return 0;
}

void wsk_dbuf_free(wsk_dbuf *b)
{
    if (b->p) free(b->p - b->pre);
    b->p = NULL;
    b->len = b->cap = 0;
}
