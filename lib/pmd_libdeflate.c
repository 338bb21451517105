/* permessage-deflate of whole messages without context takeover, on libdeflate (RFC 7692
 * section 7.2): see pmd.h.  libdeflate works on a whole buffer at once, which is all a message
 * that refers to no earlier one needs, and is several times faster than zlib's streams. */
#include "pmd.h"

#include <libdeflate.h>
#include <stdlib.h>
#include <string.h>

/* The four octets the sender removed (7.2.2), then an empty stored block with BFINAL set, which
 * ends the stream where libdeflate wants one to end: it inflates only up to a BFINAL block. */
static const uint8_t tail[] = {0x00, 0x00, 0xff, 0xff, 0x01, 0x00, 0x00, 0xff, 0xff};

/* First guess of the inflated size, as a multiple of the compressed size; the output then
 * grows fourfold per retry, up to out->max. */
#define GUESS_RATIO 8

struct wsk_pmd_oneshot_deflater {
    struct libdeflate_compressor *c;
    uint64_t messages;
};

struct wsk_pmd_oneshot_inflater {
    struct libdeflate_decompressor *d;
    wsk_dbuf in; /* the message with the tail after it: libdeflate reads one contiguous input */
};

/* ----- deflate ------------------------------------------------------------------------------- */

wsk_pmd_oneshot_deflater *wsk_pmd_oneshot_deflater_new(int level)
{
    if (level < 1 || level > 9) return NULL;
    wsk_pmd_oneshot_deflater *d = malloc(sizeof *d);
    if (!d) return NULL;
    d->messages = 0;
    d->c = libdeflate_alloc_compressor(level);
    if (!d->c) {
        free(d);
        return NULL;
    }
    return d;
}

void wsk_pmd_oneshot_deflater_free(wsk_pmd_oneshot_deflater *d)
{
    if (!d) return;
    libdeflate_free_compressor(d->c);
    free(d);
}

uint64_t wsk_pmd_oneshot_deflater_messages(const wsk_pmd_oneshot_deflater *d)
{
    return d->messages;
}

int wsk_pmd_oneshot_deflate(wsk_pmd_oneshot_deflater *d, const void *in, size_t n, wsk_dbuf *out)
{
    static const uint8_t stored = 0x00;
    if (n == 0) {
        /* 7.2.3.6: an empty message is the single octet 00. */
        int rc = wsk_dbuf_append(out, &stored, 1);
        if (rc == 0) d->messages++;
        return rc;
    }
    if (out->len >= out->max) return WSK_ERR_TOO_BIG;
    size_t room = out->max - out->len, bound = libdeflate_deflate_compress_bound(d->c, n) + 1;
    int rc = wsk_dbuf_reserve(out, bound < room ? bound : room);
    if (rc < 0) return rc;
    room = (bound < room ? bound : room) - 1;
    /* libdeflate returns 0 when the output does not fit in `room`: with out->max set just under
     * the message's size, that is how a message that does not shrink is found. */
    size_t k = room ? libdeflate_deflate_compress(d->c, in, n, out->p + out->len, room) : 0;
    if (!k) return WSK_ERR_TOO_BIG;
    /* The stream ends with a BFINAL block.  7.2.3.4: the octet 00 starts an empty stored block
     * after it, which the receiver's 00 00 ff ff completes, as in the section's example. */
    out->p[out->len + k] = stored;
    out->len += k + 1;
    d->messages++;
    return 0;
}

/* ----- inflate ------------------------------------------------------------------------------- */

wsk_pmd_oneshot_inflater *wsk_pmd_oneshot_inflater_new(void)
{
    wsk_pmd_oneshot_inflater *i = malloc(sizeof *i);
    if (!i) return NULL;
    i->d = libdeflate_alloc_decompressor();
    if (!i->d) {
        free(i);
        return NULL;
    }
    /* The copy is of compressed bytes, which the caller already bounds by the max payload. */
    wsk_dbuf_init(&i->in, SIZE_MAX);
    return i;
}

void wsk_pmd_oneshot_inflater_free(wsk_pmd_oneshot_inflater *i)
{
    if (!i) return;
    libdeflate_free_decompressor(i->d);
    wsk_dbuf_free(&i->in);
    free(i);
}

/* 1 when the input libdeflate left unread is none (it stopped at our BFINAL block) or, after a
 * BFINAL block of the sender's, only what 7.2.3.4 puts after one: nothing, or the octet 00 that
 * opens an empty stored block; then our tail.  Anything else means the message goes on past
 * the sender's BFINAL block (7.2.1 allows it), which only a streaming inflater follows. */
static int only_tail_left(const uint8_t *p, size_t left)
{
    if (left == 0 || left == sizeof tail) return 1;
    return left == sizeof tail + 1 && p[0] == 0x00 && memcmp(p + 1, tail, 4) == 0;
}

int wsk_pmd_oneshot_inflate(wsk_pmd_oneshot_inflater *i, const uint8_t *in, size_t n, wsk_dbuf *out)
{
    /* An empty payload is taken as an empty message, as zlib-based peers do. */
    if (n == 0) return 0;
    i->in.len = 0;
    int rc = wsk_dbuf_reserve(&i->in, n + sizeof tail);
    if (rc < 0) return rc;
    memcpy(i->in.p, in, n);
    memcpy(i->in.p + n, tail, sizeof tail);
    size_t total = n + sizeof tail;

    /* A full buffer may still take an empty message. */
    size_t max_room = out->len < out->max ? out->max - out->len : 0, room = out->cap - out->len;
    size_t guess = n <= (SIZE_MAX - 256) / GUESS_RATIO ? n * GUESS_RATIO + 256 : SIZE_MAX;
    if (room < guess) room = guess;
    for (;;) {
        if (room > max_room) room = max_room;
        rc = wsk_dbuf_reserve(out, room);
        if (rc < 0) return rc;
        uint8_t none;
        size_t used = 0, made = 0;
        enum libdeflate_result r = libdeflate_deflate_decompress_ex(
            i->d, i->in.p, total, room ? out->p + out->len : &none, room, &used, &made);
        if (r == LIBDEFLATE_SUCCESS) {
            if (!only_tail_left(i->in.p + used, total - used)) return WSK_PMD_USE_ZLIB;
            out->len += made;
            return 0;
        }
        /* The output limit is the max payload: past it, 1009 whatever the ratio. */
        if (r != LIBDEFLATE_INSUFFICIENT_SPACE) return WSK_ERR_DEFLATE;
        if (room == max_room) return WSK_ERR_TOO_BIG;
        room = room <= max_room / 4 ? room * 4 : max_room;
    }
}
