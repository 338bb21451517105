/* permessage-deflate on a connection: negotiation during the handshake, compressing sends and
 * inflating received messages, with the loop's shared or the socket's own (de)compressor
 * (internal; the codecs are pmd_libdeflate.c and pmd_zlib.c). */
#ifndef WSK_PMD_CONN_H
#define WSK_PMD_CONN_H

#include "internal.h"
#include "parse_http.h"
#include "pmd.h"

/* Sec-WebSocket-Extensions lines a handshake reads: an offer of 16 lines is already absurd. */
#define WSK_PMD_VALUES_MAX 16
/* Gathers the values of every Sec-WebSocket-Extensions header among h[0..nh) into out, in
 * order (RFC 7230 3.2.2: several lines are one comma-separated list); returns how many (at most
 * WSK_PMD_VALUES_MAX; later lines are ignored).  The slices point into the headers' bytes. */
size_t wsk_pmd_extension_values(const wsk_http_header *h, size_t nh,
                                wsk_pmd_slice out[WSK_PMD_VALUES_MAX]);
/* Server: answers the request's Sec-WebSocket-Extensions offers per ctx->lim.compress and
 * ctx->lim.decompress.  Returns 1 and writes the response value into out when permessage-deflate
 * was accepted (the socket gets WSK_F_PMD), 0 when it was not. */
int wsk_pmd_conn_negotiate(struct wsk_ws *c, const wsk_http_request *req, char *out, size_t cap);
/* Inflates one payload chunk p[0..n) of a compressed message into out (bounded by out->max);
 * fin on the message's last chunk.  p[n..n + after) are bytes the caller can lend (the rest of
 * the read): a message that fits in one chunk with WSK_PMD_TAIL_ROOM of them after it is
 * inflated in place, and they are as they were on return.  0, WSK_ERR_TOO_BIG, WSK_ERR_DEFLATE
 * or WSK_ERR_NOMEM. */
int wsk_pmd_conn_inflate(struct wsk_ws *c, uint8_t *p, size_t n, size_t after, int fin,
                         wsk_dbuf *out);
/* The loop's buffer for a whole message inflated and handed to its handler (uWebSockets keeps
 * one per loop too), emptied, its limit the max payload of c's server or client; NULL when out of
 * memory.  Valid until the next call on this loop: give it back with wsk_pmd_scratch_done once
 * the handler returned, which frees it when a large message grew it past 64 KiB. */
wsk_dbuf *wsk_pmd_conn_scratch(struct wsk_ws *c);
void wsk_pmd_scratch_done(wsk_dbuf *b);
/* Compresses and queues a message (RSV1 set); return value as wsk_send_frame. */
long wsk_pmd_conn_send(struct wsk_ws *c, const void *data, size_t len, unsigned op);
/* Client: the Sec-WebSocket-Extensions offer for ctx->lim.compress/decompress into out; returns its
 * length, 0 when nothing is offered. */
int wsk_pmd_conn_offer(const wsk_ctx *ctx, char *out, size_t cap);
/* Client: validates the server's answer to that offer; 0 (the socket gets WSK_F_PMD when the
 * extension was accepted) or WSK_ERR_HANDSHAKE: the client must fail the connection. */
int wsk_pmd_conn_accept(struct wsk_ws *c, const wsk_http_response *res);
/* 1 when the socket compresses a message of len bytes with the loop's one-shot compressor (no
 * context takeover, the message fits its window): a message published to many such sockets of
 * one server is compressed once, by wsk_pmd_shared_compress. */
int wsk_pmd_conn_shares_deflater(const struct wsk_ws *c, size_t len);
/* Compresses one message as the loop's one-shot compressor does for c (its server's level).
 * Returns 1 with *z, *zlen the payload to send with RSV1 (valid until the next compression on
 * this loop), counted once in the server's deflate stats; 0 when the message would not shrink:
 * send it uncompressed; or a WSK_ERR_*. */
int wsk_pmd_shared_compress(struct wsk_ws *c, const void *data, size_t len, const void **z,
                            size_t *zlen);
/* Messages the loop's shared deflater has compressed (for tests). */
uint64_t wsk_pmd_shared_messages(const wsk_loop *loop);
/* Frees the socket's compression state. */
void wsk_pmd_conn_free(struct wsk_ws *c);
/* Frees the loop's shared compressors. */
void wsk_pmd_loop_free(wsk_loop *loop);

#endif
