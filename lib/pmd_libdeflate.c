/* permessage-deflate of whole messages without context takeover, on libdeflate (RFC 7692
 * section 7.2): see pmd.h.  libdeflate works on a whole buffer at once, which is all a message
 * that refers to no earlier one needs, and is several times faster than zlib's streams. */
#include "pmd.h"

#include <libdeflate.h>
#include <stdlib.h>
#include <string.h>

/* The four octets the sender removed (7.2.2), then an empty stored block with BFINAL set, which
 * ends the stream where libdeflate wants one to end (it inflates only up to a BFINAL block).  A
 * stored block needs no Huffman tables: an empty final block with fixed codes is 3 octets
 * shorter, but after a sender's dynamic block libdeflate must then rebuild its fixed-code tables,
 * 11,000 more instructions per message (callgrind, 1 KiB from zlib's sync flush). */
static const uint8_t tail[WSK_PMD_TAIL_ROOM] = {0x00, 0x00, 0xff, 0xff, 0x01,
                                                0x00, 0x00, 0xff, 0xff};

/* The first guess of a message's inflated size is the compressed size times the last message's
 * ratio, in 1/RATIO_ONE steps, plus a margin; a wrong guess costs a second inflate from the
 * start (libdeflate cannot resume), so the output then doubles per retry, up to out->max. */
#define RATIO_ONE    16
#define RATIO_FIRST  (8 * RATIO_ONE) /* before any message: 8 to 1 */
#define RATIO_MAX    (1024 * RATIO_ONE)
#define GUESS_MARGIN 256

struct wsk_pmd_oneshot_deflater {
    struct libdeflate_compressor *c;
    uint64_t messages;
};

struct wsk_pmd_oneshot_inflater {
    struct libdeflate_decompressor *d;
    size_t ratio;     /* the last message's inflated / compressed size, times RATIO_ONE */
    uint64_t retries; /* inflates run again with a larger output */
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
    i->ratio = RATIO_FIRST;
    i->retries = 0;
    return i;
}

void wsk_pmd_oneshot_inflater_free(wsk_pmd_oneshot_inflater *i)
{
    if (!i) return;
    libdeflate_free_decompressor(i->d);
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

uint64_t wsk_pmd_oneshot_inflater_retries(const wsk_pmd_oneshot_inflater *i)
{
    return i->retries;
}

/* The first output size to try for a payload of n bytes: what the last message's ratio
 * predicts, with a margin. */
static size_t first_guess(const wsk_pmd_oneshot_inflater *i, size_t n)
{
    if (n > (SIZE_MAX - GUESS_MARGIN) / i->ratio) return SIZE_MAX;
    return n * i->ratio / RATIO_ONE + n / 8 + GUESS_MARGIN;
}

/* libdeflate over in[0..total) into out, trying larger outputs until the message fits. */
static int inflate_grow(wsk_pmd_oneshot_inflater *i, const uint8_t *in, size_t n, size_t total,
                        wsk_dbuf *out)
{
    /* A full buffer may still take an empty message. */
    size_t max_room = out->len < out->max ? out->max - out->len : 0, room = out->cap - out->len;
    size_t guess = first_guess(i, n);
    if (room < guess) room = guess;
    for (;;) {
        if (room > max_room) room = max_room;
        int rc = wsk_dbuf_reserve(out, room);
        if (rc < 0) return rc;
        uint8_t none;
        size_t used = 0, made = 0;
        enum libdeflate_result r = libdeflate_deflate_decompress_ex(
            i->d, in, total, room ? out->p + out->len : &none, room, &used, &made);
        if (r == LIBDEFLATE_SUCCESS) {
            if (!only_tail_left(in + used, total - used)) return WSK_PMD_USE_ZLIB;
            out->len += made;
            size_t ratio = made / n < RATIO_MAX / RATIO_ONE ? made * RATIO_ONE / n : RATIO_MAX;
            i->ratio = ratio ? ratio : 1;
            return 0;
        }
        /* The output limit is the max payload: past it, 1009 whatever the ratio. */
        if (r != LIBDEFLATE_INSUFFICIENT_SPACE) return WSK_ERR_DEFLATE;
        if (room == max_room) return WSK_ERR_TOO_BIG;
        i->retries++;
        room = room <= max_room / 2 ? room * 2 : max_room;
    }
}

int wsk_pmd_oneshot_inflate(wsk_pmd_oneshot_inflater *i, uint8_t *in, size_t n, wsk_dbuf *out)
{
    /* An empty payload is taken as an empty message, as zlib-based peers do. */
    if (n == 0) return 0;
    /* The tail goes where the caller left room for it, and what was there comes back. */
    uint8_t saved[WSK_PMD_TAIL_ROOM];
    memcpy(saved, in + n, sizeof saved);
    memcpy(in + n, tail, sizeof tail);
    int rc = inflate_grow(i, in, n, n + sizeof tail, out);
    memcpy(in + n, saved, sizeof saved);
    return rc;
}
