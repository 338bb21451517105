/* permessage-deflate streams on zlib (RFC 7692 section 7.2), for context takeover: see pmd.h. */
#define ZLIB_CONST
#include "pmd.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* Every message ends with an empty stored block; its last four octets are not sent (7.2.1). */
static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};

/* Inflated output grows in steps of at least this much (the buffer grows geometrically). */
#define STEP 4096

struct wsk_pmd_deflater {
    z_stream zs;
    size_t mem; /* bytes zlib holds */
    uint64_t messages;
};

struct wsk_pmd_inflater {
    z_stream zs;
    size_t mem;
    uint8_t reset;    /* reset after every message */
    uint8_t busy;     /* payload of an unfinished message is inside */
    uint8_t boundary; /* the last inflate call stopped between DEFLATE blocks */
    uint8_t ended;    /* a BFINAL block ended exactly where the last chunk did */
};

/* zlib allocations go through these so that each object can report what it holds; the size
 * sits in front of the block. */
static voidpf counted_alloc(voidpf opaque, uInt items, uInt size)
{
    if (size && items > (SIZE_MAX - sizeof(max_align_t)) / size) return Z_NULL;
    size_t n = (size_t)items * size;
    max_align_t *h = malloc(sizeof *h + n);
    if (!h) return Z_NULL;
    *(size_t *)(void *)h = n;
    *(size_t *)opaque += n;
    return h + 1;
}

static void counted_free(voidpf opaque, voidpf p)
{
    if (!p) return;
    max_align_t *h = (max_align_t *)p - 1;
    *(size_t *)opaque -= *(size_t *)(void *)h;
    free(h);
}

static void stream_init(z_stream *zs, size_t *mem)
{
    memset(zs, 0, sizeof *zs);
    zs->zalloc = counted_alloc;
    zs->zfree = counted_free;
    zs->opaque = mem;
}

/* ----- deflate ------------------------------------------------------------------------------- */

wsk_pmd_deflater *wsk_pmd_deflater_new(int window_bits, int mem_level, int level)
{
    if (window_bits < 8 || window_bits > 15 || mem_level < 1 || mem_level > 9) return NULL;
    if (level < WSK_PMD_LEVEL_MIN || level > WSK_PMD_LEVEL_MAX) return NULL;
    /* A negotiated 8 (RFC 7692 7.1.2.1, 7.1.2.2) bounds the LZ77 window this side compresses
     * with: no match may reach back more than 256 bytes, since the peer may keep only that much.
     * zlib refuses windowBits 8 for raw deflate, but it never emits a distance beyond its window
     * size minus MIN_LOOKAHEAD (262), which with windowBits 9 is 250 bytes: a 9-bit deflater
     * produces a stream that a 256-byte window inflates, so it honours the negotiated 8. */
    if (window_bits == 8) window_bits = 9;
    wsk_pmd_deflater *d = malloc(sizeof *d);
    if (!d) return NULL;
    d->mem = 0;
    d->messages = 0;
    stream_init(&d->zs, &d->mem);
    if (deflateInit2(&d->zs, level, Z_DEFLATED, -window_bits, mem_level, Z_DEFAULT_STRATEGY) !=
        Z_OK) {
        free(d);
        return NULL;
    }
    return d;
}

void wsk_pmd_deflater_free(wsk_pmd_deflater *d)
{
    if (!d) return;
    deflateEnd(&d->zs);
    free(d);
}

void wsk_pmd_deflater_reset(wsk_pmd_deflater *d)
{
    deflateReset(&d->zs);
}

uint64_t wsk_pmd_deflater_messages(const wsk_pmd_deflater *d)
{
    return d->messages;
}

size_t wsk_pmd_deflater_memory(const wsk_pmd_deflater *d)
{
    return sizeof *d + d->mem;
}

/* A wsk_pmd_run_fn: deflates in[0..n), appending everything zlib emits. */
static int deflate_run(void *deflater, const uint8_t *in, uint32_t n, int last, wsk_dbuf *out)
{
    z_stream *zs = &((wsk_pmd_deflater *)deflater)->zs;
    zs->next_in = in;
    zs->avail_in = n;
    for (;;) {
        if (!wsk_pmd_spare(out)) {
            int rc = wsk_pmd_grow(out, n / 2 + 64);
            if (rc < 0) return rc;
        }
        uInt room = wsk_pmd_spare(out);
        zs->next_out = out->p + out->len;
        zs->avail_out = room;
        int ret = deflate(zs, last ? Z_SYNC_FLUSH : Z_NO_FLUSH);
        out->len += room - zs->avail_out;
        if (ret == Z_STREAM_ERROR) return WSK_ERR_DEFLATE;
        /* zlib is done once it has taken all input and stopped short of the space given. */
        if (zs->avail_in == 0 && zs->avail_out > 0) return 0;
    }
}

int wsk_pmd_deflate(wsk_pmd_deflater *d, const void *in, size_t n, int reset_after, wsk_dbuf *out)
{
    int rc = wsk_pmd_deflate_message(d, deflate_run, in, n, out);
    d->zs.next_in = NULL;
    d->zs.next_out = NULL;
    /* After an error the stream has taken input the peer will never see; starting afresh is
     * always valid, later messages just refer to nothing before this point. */
    if (rc < 0 || reset_after) deflateReset(&d->zs);
    if (rc == 0) d->messages++;
    return rc;
}

/* ----- inflate ------------------------------------------------------------------------------- */

wsk_pmd_inflater *wsk_pmd_inflater_new(int window_bits, int reset_each)
{
    if (window_bits < 8 || window_bits > 15) return NULL;
    wsk_pmd_inflater *i = malloc(sizeof *i);
    if (!i) return NULL;
    i->mem = 0;
    i->reset = reset_each != 0;
    i->busy = 0;
    i->boundary = 1;
    i->ended = 0;
    stream_init(&i->zs, &i->mem);
    if (inflateInit2(&i->zs, -window_bits) != Z_OK) {
        free(i);
        return NULL;
    }
    return i;
}

void wsk_pmd_inflater_free(wsk_pmd_inflater *i)
{
    if (!i) return;
    inflateEnd(&i->zs);
    free(i);
}

void wsk_pmd_inflater_reset(wsk_pmd_inflater *i)
{
    inflateReset(&i->zs);
    i->busy = 0;
    i->boundary = 1;
    i->ended = 0;
}

int wsk_pmd_inflater_busy(const wsk_pmd_inflater *i)
{
    return i->busy;
}

size_t wsk_pmd_inflater_memory(const wsk_pmd_inflater *i)
{
    return sizeof *i + i->mem;
}

/* A block with BFINAL set ends zlib's stream, yet 7.2.1 lets further blocks follow it (after
 * padding to a byte boundary), and they and later messages still refer to the same LZ77 window
 * (7.2.3.4).  Start a new stream that has the old window as its dictionary. */
static int restart(wsk_pmd_inflater *i)
{
    uInt have = 0;
    inflateGetDictionary(&i->zs, NULL, &have);
    Bytef *dict = NULL;
    if (have) {
        dict = malloc(have);
        if (!dict) return WSK_ERR_NOMEM;
        inflateGetDictionary(&i->zs, dict, &have);
    }
    int ret = inflateReset(&i->zs);
    if (ret == Z_OK && have) ret = inflateSetDictionary(&i->zs, dict, have);
    free(dict);
    return ret == Z_OK ? 0 : ret == Z_MEM_ERROR ? WSK_ERR_NOMEM : WSK_ERR_DEFLATE;
}

/* Inflates in[0..n) (n <= UINT_MAX) into out, never past out->max: when out is full a
 * one-byte probe finds out whether zlib has more to give. */
static int inflate_run(wsk_pmd_inflater *i, const uint8_t *in, uInt n, int flush, wsk_dbuf *out)
{
    z_stream *zs = &i->zs;
    zs->next_in = in;
    zs->avail_in = n;
    i->ended = 0;
    for (;;) {
        uint8_t probe = 0;
        if (!wsk_pmd_spare(out) && out->len < out->max) {
            int rc = wsk_pmd_grow(out, STEP);
            if (rc < 0) return rc;
        }
        uInt room = wsk_pmd_spare(out);
        zs->next_out = room ? out->p + out->len : &probe;
        zs->avail_out = room ? room : 1;
        uInt in0 = zs->avail_in, out0 = zs->avail_out;
        int ret = inflate(zs, flush);
        uInt made = out0 - zs->avail_out;
        if (!room && made) return WSK_ERR_TOO_BIG;
        if (room) out->len += made;
        if (ret == Z_STREAM_END) {
            int rc = restart(i);
            if (rc < 0) return rc;
            i->boundary = 1;
            if (zs->avail_in > 0) continue;
            i->ended = 1;
            return 0;
        }
        if (ret != Z_OK && ret != Z_BUF_ERROR)
            return ret == Z_MEM_ERROR ? WSK_ERR_NOMEM : WSK_ERR_DEFLATE;
        /* Under Z_BLOCK, zlib reports (bit 128) that it stopped right after a block. */
        i->boundary = (zs->data_type & 128) != 0;
        if (zs->avail_in == 0 && zs->avail_out > 0) return 0;
        if (!made && zs->avail_in == in0 && zs->avail_out > 0) return WSK_ERR_DEFLATE;
    }
}

int wsk_pmd_inflate(wsk_pmd_inflater *i, const uint8_t *in, size_t n, int fin, wsk_dbuf *out)
{
    int rc = 0;
    /* An empty payload is taken as an empty message, as zlib-based peers do, although 7.2.3.6
     * has a compressed empty message be the octet 00. */
    if (!i->busy && !n && fin) return 0;
    if (n) i->busy = 1;
    while (n > 0 && rc == 0) {
        uInt k = n > UINT_MAX ? UINT_MAX : (uInt)n;
        rc = inflate_run(i, in, k, Z_SYNC_FLUSH, out);
        in += k;
        n -= k;
    }
    if (rc == 0 && fin) {
        /* 7.2.2: put back the four octets the sender removed.  They complete the empty stored
         * block that ends every message (7.2.1), so zlib must then stand between blocks;
         * Z_BLOCK makes it stop there and say so.  A message whose data ends with a BFINAL
         * block (7.2.3.4) is complete as it is: zlib then needs no tail. */
        if (!i->ended) rc = inflate_run(i, tail, sizeof tail, Z_BLOCK, out);
        if (rc == 0 && !i->boundary) rc = WSK_ERR_DEFLATE;
        if (rc == 0) {
            i->ended = 0;
            i->busy = 0;
            if (i->reset) inflateReset(&i->zs);
        }
    }
    i->zs.next_in = NULL;
    i->zs.next_out = NULL;
    if (rc < 0) wsk_pmd_inflater_reset(i);
    return rc;
}
