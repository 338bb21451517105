/* Growable byte buffers with a cap fixed at birth (internal).
 *
 * A wsk_dbuf owns its bytes (malloc'd, freed by wsk_dbuf_free), and `pre` bytes in front of them
 * in the same allocation, for a header of its owner's (the socket's message buffer, lent to the
 * send queue as a wsk_block: msg_assemble.c).  It starts empty and unallocated,
 * so an idle owner costs only the struct.  Growth stops at `max`: the first byte that would
 * cross it is refused with WSK_ERR_TOO_BIG, so a peer can never make it larger than its limit. */
#ifndef WSK_BUF_H
#define WSK_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct wsk_dbuf {
    uint8_t *p; /* bytes, NULL until the first append */
    size_t len; /* bytes in use */
    size_t cap; /* bytes allocated */
    size_t max; /* hard limit on len */
    size_t pre; /* bytes allocated before p for the owner's use (0 unless the owner sets it) */
} wsk_dbuf;

/* An empty buffer that may grow to `max` bytes. */
static inline void wsk_dbuf_init(wsk_dbuf *b, size_t max)
{
    b->p = NULL;
    b->len = b->cap = 0;
    b->max = max;
    b->pre = 0;
}

/* Makes room for `extra` more bytes: 0, WSK_ERR_TOO_BIG past max, or WSK_ERR_NOMEM. */
int wsk_dbuf_reserve(wsk_dbuf *b, size_t extra);

/* Appends n bytes: 0 or as wsk_dbuf_reserve. */
int wsk_dbuf_append(wsk_dbuf *b, const void *data, size_t n);

/* Releases the bytes; the buffer is empty (same max) and can be reused. */
void wsk_dbuf_free(wsk_dbuf *b);

#endif
