/* permessage-deflate streams with context takeover on Intel ISA-L's igzip (RFC 7692 section
 * 7.2): see pmd.h.  A socket's own deflater keeps its LZ77 window from message to message; igzip
 * level 1 finds the long matches an echo or a feed of similar records has in that window for a
 * fraction of zlib's time (scripts/bench-compress, and tests/unit/bench_pmd for the codecs alone).
 *
 * Memory: the stream (82 KiB: twice the 32 KiB history plus a hash table) and level 1's buffer
 * of 16 Ki tokens (84 KiB) in one allocation.  ISA-L's smallest level-1 buffer (24 KiB) costs a
 * third more time on 16 KiB messages, which then span several blocks. */
#include "pmd.h"

#include <isa-l/igzip_lib.h>
#include <stdlib.h>

#define LEVEL_BUF ISAL_DEF_LVL1_SMALL

struct wsk_pmd_isal_deflater {
    struct isal_zstream zs;
    uint64_t messages;
    uint8_t level_buf[]; /* LEVEL_BUF bytes, igzip's working memory for level 1 */
};

int wsk_pmd_isal_serves(int mem_level, int level)
{
    return mem_level >= 8 && level >= WSK_PMD_LEVEL_MIN && level <= 6;
}

wsk_pmd_isal_deflater *wsk_pmd_isal_deflater_new(int window_bits)
{
    if (window_bits < 8 || window_bits > 15) return NULL;
    wsk_pmd_isal_deflater *d = malloc(sizeof *d + LEVEL_BUF);
    if (!d) return NULL;
    isal_deflate_init(&d->zs);
    d->zs.level = 1;
    d->zs.level_buf = d->level_buf;
    d->zs.level_buf_size = LEVEL_BUF;
    /* A negotiated window of 2^bits (7.1.2.1, 7.1.2.2) is igzip's hist_bits: no match reaches
     * further back than the peer keeps.  Raw deflate: no header, no checksum. */
    d->zs.hist_bits = (uint16_t)window_bits;
    d->zs.gzip_flag = IGZIP_DEFLATE;
    d->messages = 0;
    return d;
}

void wsk_pmd_isal_deflater_free(wsk_pmd_isal_deflater *d)
{
    free(d);
}

void wsk_pmd_isal_deflater_reset(wsk_pmd_isal_deflater *d)
{
    /* Keeps level, level_buf and hist_bits; drops the history and any pending bits. */
    isal_deflate_reset(&d->zs);
}

uint64_t wsk_pmd_isal_deflater_messages(const wsk_pmd_isal_deflater *d)
{
    return d->messages;
}

size_t wsk_pmd_isal_deflater_memory(const wsk_pmd_isal_deflater *d)
{
    (void)d;
    return sizeof *d + LEVEL_BUF;
}

/* A wsk_pmd_run_fn: deflates in[0..n), appending everything igzip emits. */
static int deflate_run(void *deflater, const uint8_t *in, uint32_t n, int last, wsk_dbuf *out)
{
    struct isal_zstream *zs = &((wsk_pmd_isal_deflater *)deflater)->zs;
    zs->next_in = (uint8_t *)(uintptr_t)in; /* igzip only reads it */
    zs->avail_in = n;
    /* A sync flush keeps the history for the next message (a full flush would drop it). */
    zs->flush = last ? SYNC_FLUSH : NO_FLUSH;
    for (;;) {
        if (!wsk_pmd_spare(out)) {
            int rc = wsk_pmd_grow(out, n / 2 + 64);
            if (rc < 0) return rc;
        }
        uint32_t room = wsk_pmd_spare(out);
        zs->next_out = out->p + out->len;
        zs->avail_out = room;
        int ret = isal_deflate(zs);
        out->len += room - zs->avail_out;
        if (ret != COMP_OK) return WSK_ERR_DEFLATE;
        /* As zlib: everything is out (the flush included) once igzip has taken all input and
         * stopped short of the space given. */
        if (zs->avail_in == 0 && zs->avail_out > 0) return 0;
    }
}

int wsk_pmd_isal_deflate(wsk_pmd_isal_deflater *d, const void *in, size_t n, int reset_after,
                         wsk_dbuf *out)
{
    int rc = wsk_pmd_deflate_message(d, deflate_run, in, n, out);
    d->zs.next_in = NULL;
    d->zs.next_out = NULL;
    /* After an error the stream has taken input the peer will never see: start afresh. */
    if (rc < 0 || reset_after) isal_deflate_reset(&d->zs);
    if (rc == 0) d->messages++;
    return rc;
}
