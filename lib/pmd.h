/* permessage-deflate (RFC 7692): modes, negotiation and the codecs (internal).
 *
 * Pure modules, no sockets and no event loop: pmd_negotiate.c turns Sec-WebSocket-Extensions
 * values into per-connection parameters and the header value to send; two codecs compress and
 * decompress messages under those parameters, one file per library, as uWebSockets splits them:
 *  - pmd_libdeflate.c: whole messages that refer to no earlier one (no context takeover), in one
 *    call each: messages from peers that take no context over, and the loop's compressor at
 *    levels 7..9;
 *  - pmd_isal.c: Intel ISA-L's igzip, the socket's own deflater when it keeps context (levels
 *    1..6 of a "dedicated" or "256KB" compressor): 5 to 30 times faster than zlib's level 6 on
 *    the messages of scripts/bench-compress, in 166 KiB rather than zlib's 262 KiB; and the
 *    loop's one-shot compressor at levels 1..6, at every window (half of libdeflate's level 6
 *    per 1 KiB message, a fifth per 16 KiB: tests/unit/bench_pmd);
 *  - pmd_zlib.c: every inflater that keeps context (zlib's inflate is faster than ISA-L's on
 *    small messages, and its state is half the size), deflaters of the smaller modes (ISA-L's
 *    state alone is 80 KiB) and of levels 7..9 (ISA-L stops at zlib's level 2 or so), there and
 *    in the loop's deflaters for windows under 32 KiB, which libdeflate cannot bound.
 *
 * Memory follows Bun and uWebSockets.  A mode (enum wsk_compress_mode in wskit.h) names what one
 * socket may spend: "3KB" ... "256KB" is a dedicated deflater of 2^(windowBits+2) +
 * 2^(memLevel+9) bytes, "dedicated" is "256KB", and "shared" means compressors owned by the loop
 * and reused for every message, so sockets keep no compression state at all.  A decompressor mode
 * uses the same names; its inflater gets the window of the same-named compressor ("3KB": 512
 * bytes).  The connection creates dedicated objects on the first compressed message, so an idle
 * socket costs a pointer.
 */
#ifndef WSK_PMD_H
#define WSK_PMD_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "buf.h"
#include "wskit.h"

/* Room for any header value written here (offer or response), NUL included. */
#define WSK_PMD_HEADER_MAX 256

/* The loop's shared objects: an inflater with a 32 KiB window (zlib's, for the rare message
 * libdeflate hands back), and at levels 7..9 zlib deflaters of memLevel 8 for windows under
 * 32 KiB. */
#define WSK_PMD_SHARED_BITS 15
#define WSK_PMD_SHARED_MEM  8

/* Compression levels, zlib's scale (libdeflate's 1..9 mean the same trade).  The default was
 * chosen by scripts/bench-compress: see the README. */
#define WSK_PMD_LEVEL_MIN     1
#define WSK_PMD_LEVEL_MAX     9
#define WSK_PMD_LEVEL_DEFAULT 6

/* wsk_pmd_oneshot_inflate: the message is valid so far but goes on past a BFINAL block; inflate
 * it with a zlib inflater instead (a positive value, not an error). */
#define WSK_PMD_USE_ZLIB 1

/* Makes spare room in out for a codec's output, up to `hint` more bytes: 0, WSK_ERR_TOO_BIG
 * when out is at its limit, or WSK_ERR_NOMEM. */
static inline int wsk_pmd_grow(wsk_dbuf *out, size_t hint)
{
    size_t room = out->len < out->max ? out->max - out->len : 0;
    if (!room) return WSK_ERR_TOO_BIG;
    return wsk_dbuf_reserve(out, hint < room ? hint : room);
}

/* The room a codec may write into at out->p + out->len: the spare capacity, never past out->max
 * (the capacity can exceed a limit lowered for one message), at most UINT32_MAX. */
static inline uint32_t wsk_pmd_spare(const wsk_dbuf *out)
{
    size_t end = out->cap < out->max ? out->cap : out->max;
    size_t n = end > out->len ? end - out->len : 0;
    return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

/* A sync-flushed message in out[start..len) ends with 00 00 ff ff (7.2.1): removes them and
 * returns 0, or WSK_ERR_DEFLATE when they are not there. */
static inline int wsk_pmd_strip_tail(wsk_dbuf *out, size_t start)
{
    static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
    if (out->len - start < 4 || memcmp(out->p + out->len - 4, tail, 4) != 0) return WSK_ERR_DEFLATE;
    out->len -= 4;
    return 0;
}

/* Pushes one piece in[0..n) of a message through a streaming deflater, appending its output to
 * out; `last` on the message's last piece, which ends with a sync flush.  0 or a WSK_ERR_*. */
typedef int (*wsk_pmd_run_fn)(void *deflater, const uint8_t *in, uint32_t n, int last,
                              wsk_dbuf *out);

/* One message through a streaming deflater (pmd_zlib.c, pmd_isal.c) as RFC 7692 7.2.1 frames
 * it: pieces of at most UINT32_MAX bytes to run(), the last one sync-flushed so that the message
 * ends on a byte boundary with an empty stored block, whose 00 00 ff ff is then removed.  An
 * empty message is the single octet 00 (7.2.3.6): a deflater would emit nothing when the last
 * message already flushed.  0, or a WSK_ERR_* with out as it was (the caller then resets the
 * deflater, which has taken input the peer will never see). */
static inline int wsk_pmd_deflate_message(void *deflater, wsk_pmd_run_fn run, const void *in,
                                          size_t n, wsk_dbuf *out)
{
    static const uint8_t stored = 0x00;
    if (n == 0) return wsk_dbuf_append(out, &stored, 1);
    size_t start = out->len;
    const uint8_t *p = in;
    int rc = 0;
    while (n > 0 && rc == 0) {
        uint32_t k = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
        n -= k;
        rc = run(deflater, p, k, n == 0, out);
        p += k;
    }
    if (rc == 0) rc = wsk_pmd_strip_tail(out, start);
    if (rc < 0) out->len = start;
    return rc;
}

/* ----- modes ---------------------------------------------------------------------------------- */

/* The wsk_compress_mode named by `name`, compared case-insensitively: "disable" (or "false"),
 * "shared" (or "true"), "dedicated", "3KB", "4KB", "8KB", "16KB", "32KB", "64KB", "128KB",
 * "256KB".  WSK_ERR_INVAL for NULL or any other string. */
int wsk_pmd_mode_parse(const char *name);

/* 1 when mode is a wsk_compress_mode (WSK_COMPRESS_DISABLE included), else 0. */
int wsk_pmd_mode_valid(int mode);

/* The canonical name of a mode ("disable", "shared", "3KB", ...); "?" when out of range.
 * Static storage. */
const char *wsk_pmd_mode_name(int mode);

/* zlib parameters of a mode, as uWebSockets maps them: 3KB 9/1, 4KB 9/2, 8KB 10/3, 16KB 11/4,
 * 32KB 12/5, 64KB 13/6, 128KB 14/7, 256KB and dedicated 15/8, shared 15/8 (the loop's objects).
 * Stores windowBits and memLevel through the pointers that are not NULL; 0, or WSK_ERR_INVAL for
 * WSK_COMPRESS_DISABLE and out-of-range values. */
int wsk_pmd_mode_zlib(int mode, int *window_bits, int *mem_level);

/* ----- configuration and negotiated parameters ------------------------------------------------ */

/* What one side (a server, or a client) wants.  Both modes WSK_COMPRESS_DISABLE: the extension
 * is never offered nor accepted.  A disabled decompressor with an enabled compressor acts as
 * "shared": once the extension is in use the peer may compress, and RFC 7692 has no way to
 * accept compressed messages in one direction only. */
typedef struct wsk_pmd_config {
    int compress;     /* wsk_compress_mode for messages this side sends */
    int decompress;   /* wsk_compress_mode for messages this side receives */
    size_t threshold; /* messages shorter than this are sent uncompressed */
} wsk_pmd_config;

/* The outcome of a negotiation, kept per connection (8 bytes).  All zero: not negotiated.
 * "deflate" is the direction this side sends, "inflate" the direction it receives.
 *  - deflate_bits 0: this side never compresses (its compressor is disabled).
 *  - *_shared: use the loop's shared objects rather than one of the socket's own.  Set
 *    whenever that direction takes no context over, in shared and dedicated modes alike, at any
 *    window: a per-socket object is only worth its memory when it keeps context.  The loop
 *    deflates with libdeflate every message that fits in 2^deflate_bits bytes (no match can then
 *    reach further back than the window) and longer ones with a deflater of that window (ISA-L
 *    or zlib), one per window size in use; it inflates with libdeflate.
 *  - otherwise create the socket's own objects on first use: wsk_pmd_deflater_new(deflate_bits,
 *    deflate_mem) and wsk_pmd_inflater_new(inflate_bits, inflate_reset). */
typedef struct wsk_pmd_params {
    uint8_t enabled;        /* permessage-deflate is in use on this connection */
    uint8_t deflate_bits;   /* LZ77 window the messages we send may use, 8..15 (0: never) */
    uint8_t deflate_mem;    /* zlib memLevel for our own deflater, 1..9 */
    uint8_t deflate_reset;  /* no context takeover: pass reset_after = 1 to wsk_pmd_deflate */
    uint8_t deflate_shared; /* compress with the loop's shared deflater */
    uint8_t inflate_bits;   /* LZ77 window the peer's messages use, 8..15 */
    uint8_t inflate_reset;  /* the peer takes no context over: fresh inflater per message */
    uint8_t inflate_shared; /* decompress with the loop's shared inflater */
} wsk_pmd_params;

/* One header value; the bytes need not be NUL-terminated. */
typedef struct wsk_pmd_slice {
    const char *p;
    size_t len;
} wsk_pmd_slice;

/* 1 when a message of len bytes goes out compressed on a connection with `p` (negotiated, this
 * side compresses, len >= cfg->threshold); 0 otherwise. */
static inline int wsk_pmd_should_compress(const wsk_pmd_config *cfg, const wsk_pmd_params *p,
                                          size_t len)
{
    return p->enabled && p->deflate_bits && len >= cfg->threshold;
}

/* ----- negotiation (pmd_negotiate.c) ---------------------------------------------------------- */

/* Server: reads every Sec-WebSocket-Extensions value of a request (values[0..n), in order; each
 * a comma-separated list of offers with ';' parameters, token or quoted values, names compared
 * case-insensitively) and accepts the first permessage-deflate offer this configuration can
 * honour (RFC 7692 section 5).  Offers with an unknown, duplicated or invalid parameter are
 * declined; a syntax error ends that header value.  On acceptance fills *params and writes the
 * response value ("permessage-deflate; ...", NUL-terminated) into out[0..cap) and returns its
 * length (> 0).  Returns 0 when nothing is accepted (*params zeroed, out ""), WSK_ERR_INVAL when
 * a mode is out of range or cap is too small (WSK_PMD_HEADER_MAX always suffices).  Reads the
 * values only during the call. */
int wsk_pmd_server_negotiate(const wsk_pmd_config *cfg, const wsk_pmd_slice *values, size_t n,
                             wsk_pmd_params *params, char *out, size_t cap);

/* Client: writes the offer for `cfg` into out[0..cap), NUL-terminated, e.g.
 * "permessage-deflate; client_max_window_bits" for dedicated/dedicated.  A small dedicated
 * decompressor asks for server_max_window_bits and adds a second offer that falls back to the
 * shared inflater, for servers that cannot lower their window.  Returns the length, 0 when cfg
 * offers nothing (both modes disabled; out ""), WSK_ERR_INVAL as above. */
int wsk_pmd_client_offer(const wsk_pmd_config *cfg, char *out, size_t cap);

/* Client: validates the server's Sec-WebSocket-Extensions values (values[0..n)) against the
 * offers wsk_pmd_client_offer made for the same cfg.  No element at all: returns 0 with *params
 * zeroed (not negotiated).  Exactly one permessage-deflate element whose parameters are allowed
 * in a response, in range, not repeated and consistent with one of the offers: fills *params and
 * returns 0.  Anything else (a malformed value, another extension, a second element, a
 * parameter we did not offer or that breaks our offer) returns WSK_ERR_HANDSHAKE: the client
 * must fail the connection (RFC 7692 section 5, RFC 6455 sections 4.1 and 9.1).  Reads the
 * values only during the call. */
int wsk_pmd_client_accept(const wsk_pmd_config *cfg, const wsk_pmd_slice *values, size_t n,
                          wsk_pmd_params *params);

/* ----- streaming codec with context takeover (pmd_zlib.c) ------------------------------------ */

/* Buffers: `out` is always the caller's wsk_dbuf; these functions only append to it, growing it
 * within out->max, and keep no pointer to it or to `in` once they return. */
typedef struct wsk_pmd_deflater wsk_pmd_deflater;
typedef struct wsk_pmd_inflater wsk_pmd_inflater;

/* A raw-deflate compressor with an LZ77 window of 2^window_bits bytes (8..15), zlib memLevel
 * mem_level (1..9) and level (WSK_PMD_LEVEL_MIN..MAX).  NULL on bad arguments or out of memory.
 * Free with wsk_pmd_deflater_free. */
wsk_pmd_deflater *wsk_pmd_deflater_new(int window_bits, int mem_level, int level);
void wsk_pmd_deflater_free(wsk_pmd_deflater *d);

/* Compresses the whole message in[0..n) and appends the payload to send to `out` (the deflate
 * data with its final 00 00 ff ff removed, RFC 7692 section 7.2.1; an empty message gives the
 * single byte 00).  reset_after: drop the context once done (no context takeover).  Returns 0,
 * WSK_ERR_TOO_BIG when the compressed bytes, with the 4 removed at the end, do not fit in
 * out->max, WSK_ERR_NOMEM, or WSK_ERR_DEFLATE.  On error out is as it was and the deflater is
 * reset, which is always safe: the peer just sees later messages refer to no earlier one.  Only
 * reads `in` during the call. */
int wsk_pmd_deflate(wsk_pmd_deflater *d, const void *in, size_t n, int reset_after, wsk_dbuf *out);

/* Forgets the context: the next message refers to no earlier one. */
void wsk_pmd_deflater_reset(wsk_pmd_deflater *d);

/* Messages compressed so far (successful wsk_pmd_deflate calls). */
uint64_t wsk_pmd_deflater_messages(const wsk_pmd_deflater *d);

/* Bytes of heap this deflater holds (the object and zlib's state). */
size_t wsk_pmd_deflater_memory(const wsk_pmd_deflater *d);

/* A raw-inflate decompressor for a peer whose LZ77 window is 2^window_bits bytes (8..15).
 * reset_each: the peer takes no context over, so every message starts afresh (always 1 for the
 * loop's shared inflater).  NULL on bad arguments or out of memory. */
wsk_pmd_inflater *wsk_pmd_inflater_new(int window_bits, int reset_each);
void wsk_pmd_inflater_free(wsk_pmd_inflater *i);

/* Decompresses one payload chunk of a compressed message and appends the bytes to `out`.  Call
 * it for every frame payload, or any piece of one, in order; fin marks the message's last chunk
 * (the 00 00 ff ff tail is then appended, section 7.2.2).  `out` never grows past out->max: the
 * moment one more byte would be needed it returns WSK_ERR_TOO_BIG, whatever the compression
 * ratio.  Data that does not inflate, or a message that does not end on a DEFLATE block
 * boundary, returns WSK_ERR_DEFLATE.  On any error the message is void (out holds part of it)
 * and the inflater is reset, ready for another message.  Returns 0 or WSK_ERR_TOO_BIG,
 * WSK_ERR_DEFLATE, WSK_ERR_NOMEM.  Only reads `in` during the call.
 * A shared inflater holds one message at a time: feed it a message's chunks without
 * interleaving another message (for a fragmented message, inflate with the socket's own
 * inflater or gather the payload first); wsk_pmd_inflater_busy tells whether one is open. */
int wsk_pmd_inflate(wsk_pmd_inflater *i, const uint8_t *in, size_t n, int fin, wsk_dbuf *out);

/* Abandons any message in progress and forgets the context. */
void wsk_pmd_inflater_reset(wsk_pmd_inflater *i);

/* 1 while a message is open (payload was given, its fin not yet), 0 otherwise. */
int wsk_pmd_inflater_busy(const wsk_pmd_inflater *i);

/* Bytes of heap this inflater holds (the object and zlib's state and window). */
size_t wsk_pmd_inflater_memory(const wsk_pmd_inflater *i);

/* ----- streaming deflate with context takeover on ISA-L (pmd_isal.c) ------------------------- */

/* 1 when a socket's own deflater of this zlib memLevel and level is an ISA-L one: memLevel 8 or
 * more (the "dedicated" and "256KB" modes, whose budget holds ISA-L's 166 KiB) and levels 1..6,
 * which all map to ISA-L's level 1 (its levels 2 and 3 were no smaller on the README's data, and
 * level 3 costs twice the time), or 0 with fixed codes for small messages; 0: use
 * wsk_pmd_deflater_new (zlib).  The loop's compressor asks with WSK_PMD_SHARED_MEM: levels 1..6 are
 * ISA-L's one-shot deflater, 7..9 libdeflate. */
int wsk_pmd_isal_serves(int mem_level, int level);

/* A raw-deflate compressor with an LZ77 window of 2^window_bits bytes (8..15): ISA-L level 0 with
 * the fixed Huffman codes while the messages average a few KiB, level 1 for longer ones.
 * NULL on bad arguments or out of memory.  Free with wsk_pmd_isal_deflater_free. */
typedef struct wsk_pmd_isal_deflater wsk_pmd_isal_deflater;
wsk_pmd_isal_deflater *wsk_pmd_isal_deflater_new(int window_bits);
void wsk_pmd_isal_deflater_free(wsk_pmd_isal_deflater *d);

/* As wsk_pmd_deflate, same contract: the payload to send (00 00 ff ff removed; an empty message
 * is the octet 00) appended to out within out->max; on error out is as it was and the context is
 * dropped. */
int wsk_pmd_isal_deflate(wsk_pmd_isal_deflater *d, const void *in, size_t n, int reset_after,
                         wsk_dbuf *out);

/* Forgets the context; messages compressed so far; bytes of heap held. */
void wsk_pmd_isal_deflater_reset(wsk_pmd_isal_deflater *d);
/* igzip's level the next message starts from: 0 (fixed codes) while the socket's messages
 * average under 4 KiB, 1 from 8 KiB (pmd_isal.c; for tests). */
int wsk_pmd_isal_deflater_level(const wsk_pmd_isal_deflater *d);
uint64_t wsk_pmd_isal_deflater_messages(const wsk_pmd_isal_deflater *d);
size_t wsk_pmd_isal_deflater_memory(const wsk_pmd_isal_deflater *d);

/* ----- whole messages without context takeover on ISA-L (pmd_isal.c) ------------------------- */

/* The loop's compressor for messages that refer to no earlier one, at levels 1..6
 * (wsk_pmd_isal_serves): ISA-L's isal_deflate_stateless at its level 1, or level 0 for bytes
 * whose histogram is flat, and level 0 with Huffman codes trained on a sample of the earlier
 * messages while those stay within 1/8 of level 1's size (pmd_isal.c).  About 190 KiB (ISA-L's
 * stream, level 1's buffer, the training's histogram and table), and 16 KiB more once trained.
 * NULL when out of memory. */
typedef struct wsk_pmd_isal_oneshot wsk_pmd_isal_oneshot;
wsk_pmd_isal_oneshot *wsk_pmd_isal_oneshot_new(void);
void wsk_pmd_isal_oneshot_free(wsk_pmd_isal_oneshot *d);

/* Compresses the whole message in[0..n), referring to nothing before it nor further back than
 * 2^window_bits bytes (8..15), and appends the payload to send: a stream that ends with a BFINAL
 * block followed by the octet 00 (7.2.3.4); an empty message gives the single octet 00.  Returns 0,
 * WSK_ERR_TOO_BIG when the payload would not fit in out->max (out as it was: set out->max under
 * n to learn that a message does not shrink, at no extra cost) or n is over 4 GiB, WSK_ERR_INVAL
 * for a bad window, WSK_ERR_NOMEM or WSK_ERR_DEFLATE.  Only reads `in` during the call. */
int wsk_pmd_isal_oneshot_deflate(wsk_pmd_isal_oneshot *d, int window_bits, const void *in, size_t n,
                                 wsk_dbuf *out);

/* Messages compressed so far. */
uint64_t wsk_pmd_isal_oneshot_messages(const wsk_pmd_isal_oneshot *d);

/* Of those, the messages compressed with the trained codes (for tests and benchmarks). */
uint64_t wsk_pmd_isal_oneshot_trained(const wsk_pmd_isal_oneshot *d);

/* ----- whole messages without context takeover (pmd_libdeflate.c) ---------------------------- */

/* Buffers as above: `out` is the caller's and only appended to, within out->max. */
typedef struct wsk_pmd_oneshot_deflater wsk_pmd_oneshot_deflater;
typedef struct wsk_pmd_oneshot_inflater wsk_pmd_oneshot_inflater;

/* A one-shot raw-deflate compressor at `level` (WSK_PMD_LEVEL_MIN..MAX).  Its matches reach at
 * most 32 KiB back, and never before the start of the message.  NULL on a bad level or out of
 * memory. */
wsk_pmd_oneshot_deflater *wsk_pmd_oneshot_deflater_new(int level);
void wsk_pmd_oneshot_deflater_free(wsk_pmd_oneshot_deflater *d);

/* Compresses the whole message in[0..n), referring to nothing before it, and appends the
 * payload to send: a stream that ends with a BFINAL block followed by the octet 00 (RFC 7692
 * 7.2.3.4); an empty message gives the single octet 00.  Returns 0, WSK_ERR_TOO_BIG when the
 * payload would not fit in out->max (out as it was: set out->max under n to learn that a message
 * does not shrink, at no extra cost; libdeflate 1.14 wants 8 or 9 spare bytes, so a payload
 * within 16 bytes of the cap may count as not fitting), or WSK_ERR_NOMEM.  Only reads `in` during
 * the call. */
int wsk_pmd_oneshot_deflate(wsk_pmd_oneshot_deflater *d, const void *in, size_t n, wsk_dbuf *out);

/* Messages compressed so far. */
uint64_t wsk_pmd_oneshot_deflater_messages(const wsk_pmd_oneshot_deflater *d);

/* A one-shot raw-inflate decompressor, for peers that take no context over (any window: the
 * inflater keeps none).  NULL when out of memory. */
wsk_pmd_oneshot_inflater *wsk_pmd_oneshot_inflater_new(void);
void wsk_pmd_oneshot_inflater_free(wsk_pmd_oneshot_inflater *i);

/* Bytes past a payload that wsk_pmd_oneshot_inflate borrows for the tail it appends: 00 00 ff ff
 * and an empty final stored block. */
#define WSK_PMD_TAIL_ROOM 9

/* Decompresses the whole payload in[0..n) of one compressed message (the 00 00 ff ff tail is
 * appended here, 7.2.2) and appends the bytes to `out`, never past out->max: WSK_ERR_TOO_BIG
 * then, whatever the compression ratio.  in[n..n + WSK_PMD_TAIL_ROOM) must be writable: the tail
 * is written there, in place, and what was there is put back before the call returns.  The
 * output is first sized from the last message's ratio; a message that inflates past that guess
 * is inflated again into twice the room (wsk_pmd_oneshot_inflater_retries counts those).
 * Returns 0; WSK_ERR_DEFLATE for data that does not inflate or a message that does not end on a
 * block boundary; WSK_ERR_NOMEM; or WSK_PMD_USE_ZLIB when the message continues after a BFINAL
 * block (out is unchanged: inflate it with a fresh zlib inflater).  An empty payload is an empty
 * message.  On an error out may hold part of the message.  Keeps no pointer to `in`.
 * Leniency: libdeflate reads some invalid DEFLATE that zlib refuses (WSK_ERR_DEFLATE there):
 * the reserved length symbols 286 and 287 (as 285, length 258) and distance symbols 30 and 31
 * (as 29's range), up to 288 and 32 code lengths where DEFLATE has 286 and 30 symbols, and a code
 * of one codeword (the precode's too) whose unused codeword is sent (as the one).  No compressor
 * makes these; the message is then what libdeflate makes of them.  fuzz_pmd checks that nothing
 * else differs from zlib. */
int wsk_pmd_oneshot_inflate(wsk_pmd_oneshot_inflater *i, uint8_t *in, size_t n, wsk_dbuf *out);

/* Inflates run again because the message did not fit the first output size (for tests). */
uint64_t wsk_pmd_oneshot_inflater_retries(const wsk_pmd_oneshot_inflater *i);

#endif
