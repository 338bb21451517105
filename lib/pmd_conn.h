/* permessage-deflate on a connection: negotiation during the handshake, compressing sends and
 * inflating received messages, with the loop's shared or the socket's own (de)compressor
 * (internal; the codec itself is pmd_codec.c). */
#ifndef WSK_PMD_CONN_H
#define WSK_PMD_CONN_H

#include "internal.h"
#include "parse_http.h"

/* Server: answers the request's Sec-WebSocket-Extensions offers per ctx->o.compress and
 * ctx->o.decompress.  Returns 1 and writes the response value into out when permessage-deflate
 * was accepted (the socket gets WSK_F_PMD), 0 when it was not. */
int wsk_pmd_conn_negotiate(struct wsk_ws *c, const wsk_http_request *req, char *out, size_t cap);
/* Inflates one payload chunk of a compressed message into out (bounded by out->max); fin on
 * the message's last chunk.  0, WSK_ERR_TOO_BIG, WSK_ERR_DEFLATE or WSK_ERR_NOMEM. */
int wsk_pmd_conn_inflate(struct wsk_ws *c, const uint8_t *p, size_t n, int fin, wsk_dbuf *out);
/* Compresses and queues a message (RSV1 set); return value as wsk_send. */
long wsk_pmd_conn_send(struct wsk_ws *c, const void *data, size_t len, unsigned op);
/* Frees the socket's compression state. */
void wsk_pmd_conn_free(struct wsk_ws *c);
/* Frees the loop's shared compressors. */
void wsk_pmd_loop_free(wsk_loop *loop);

#endif
