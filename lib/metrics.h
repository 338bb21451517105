/* The increments of a server's metrics (wsk_stats in wskit.h; metrics.c reads and formats
 * them).  Each is a plain add on the loop that owns the socket: no lock, no allocation.  Every
 * context has the counters (a client's are never read). */
#ifndef WSK_METRICS_H
#define WSK_METRICS_H

#include "wskit.h"

/* A message or a control frame: the slot of its opcode in messages_* or control_* (text 0,
 * binary 1; close 0, ping 1, pong 2). */
static inline unsigned wsk_stats_slot(unsigned op)
{
    return op >= WSK_OP_CLOSE ? (op - WSK_OP_CLOSE) % 3 : (op - 1) & 1;
}

/* A close code sent or received (0: a close frame without one, counted as 1005). */
static inline void wsk_stats_close(uint64_t *codes, unsigned code)
{
    code = code ? code : WSK_CLOSE_NO_STATUS;
    codes[code >= 1000 && code < 1016 ? code - 1000 : WSK_STATS_CLOSE_CODES - 1]++;
}

/* A whole message received: count, bytes, size bucket (64 * 4^i bytes and less). */
static inline void wsk_stats_message_in(wsk_stats *s, unsigned op, size_t len)
{
    unsigned b = 0;
    s->messages_in[wsk_stats_slot(op)]++;
    s->bytes_in[wsk_stats_slot(op)] += len;
    for (size_t top = 64; len > top && b < WSK_STATS_SIZE_BUCKETS; top <<= 2) b++;
    s->size_buckets[b]++;
}

/* A message sent by wsk_send, which returned r (> 0 sent, -1 behind backpressure, 0 dropped). */
static inline long wsk_stats_sent(wsk_stats *s, unsigned op, size_t len, long r)
{
    if (r > 0 || r == -1) {
        s->messages_out[wsk_stats_slot(op)]++;
        s->bytes_out[wsk_stats_slot(op)] += len;
        s->backpressure += r == -1;
    }
    return r;
}

/* Compression: `in` bytes became `out` (inflate or deflate). */
static inline void wsk_stats_compressed(uint64_t *pair, size_t in, size_t out)
{
    pair[0] += in;
    pair[1] += out;
}

/* Handshake bucket bounds, milliseconds (WSK_STATS_HANDSHAKE_BUCKETS). */
#define WSK_STATS_HANDSHAKE_MS                                                                     \
    {                                                                                              \
        1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000                                   \
    }

/* A handshake completed (101 sent) in `us` microseconds. */
static inline void wsk_stats_handshake(wsk_stats *s, uint32_t us)
{
    static const uint32_t top[WSK_STATS_HANDSHAKE_BUCKETS] = WSK_STATS_HANDSHAKE_MS;
    unsigned b = 0;
    while (b < WSK_STATS_HANDSHAKE_BUCKETS && us > top[b] * 1000u) b++;
    s->upgraded++;
    s->handshake_buckets[b]++;
    s->handshake_us += us;
    s->handshake_ms = s->handshake_us / 1000;
}

/* A publish queued for n sockets. */
static inline void wsk_stats_delivered(wsk_stats *s, unsigned op, size_t len, long n)
{
    s->deliveries += (uint64_t)n;
    s->messages_out[wsk_stats_slot(op)] += (uint64_t)n;
    s->bytes_out[wsk_stats_slot(op)] += (uint64_t)n * len;
}

/* An HTTP refusal by status (400, 426, 431 or another the library answered). */
static inline void wsk_stats_refused_http(wsk_stats *s, int status)
{
    s->refused[status == 400   ? WSK_REFUSED_BAD_REQUEST
               : status == 426 ? WSK_REFUSED_VERSION
               : status == 431 ? WSK_REFUSED_HEADER_SIZE
                               : WSK_REFUSED_HTTP_OTHER]++;
}

/* The upgrade handler refused with `status`. */
static inline void wsk_stats_refused_upgrade(wsk_stats *s, int status)
{
    s->refused[status == 401   ? WSK_REFUSED_UNAUTHORIZED
               : status == 403 ? WSK_REFUSED_FORBIDDEN
               : status == 503 ? WSK_REFUSED_LIMIT
                               : WSK_REFUSED_HANDLER]++;
}

#endif
