/* TLS for server and client sockets, on mbedTLS (internal).  io_tls.c is the only file that
 * includes mbedTLS headers. */
#ifndef WSK_IO_TLS_H
#define WSK_IO_TLS_H

#include "internal.h"

/* Loads the server's certificate, key and optional client CA (ctx->o.tls_*) into ctx->tls.
 * 0, or WSK_ERR_TLS with the reason logged. */
int wsk_tls_server_config(wsk_ctx *ctx);
/* Starts the server side of a TLS session on an accepted connection (flag WSK_F_TLS). */
int wsk_tls_accept(struct wsk_ws *c);
/* Client: loads the CA bundle (o->tls_ca, else the system's), the client certificate and key
 * into ctx->tls.  0, or WSK_ERR_TLS with the reason logged. */
int wsk_tls_client_config(wsk_ctx *ctx, const wsk_client_opts *o);
/* Client: starts TLS on a connected socket (flag WSK_F_TLS), with SNI and name verification
 * against `host`.  The handshake runs inside wsk_io_read/wsk_io_writev; a verification failure
 * calls wsk_client_failed(c, WSK_ERR_CERT, reason) and ends the connection. */
int wsk_tls_connect(struct wsk_ws *c, const char *host);
/* Frees ctx->tls. */
void wsk_tls_ctx_free(wsk_ctx *ctx);

#endif
