/* TLS for server and client sockets, on mbedTLS (internal).  io_tls.c is the only file that
 * includes mbedTLS headers.
 *
 * Once a socket has a session (flag WSK_F_TLS), wsk_io_read/wsk_io_writev/wsk_io_release hand it
 * to wsk_tls_read/wsk_tls_writev/wsk_tls_release (io_transport.h), which run the handshake
 * first, without blocking: the rest of the library sees only plaintext.  Writes queued during
 * the handshake wait for its end (wsk_send reports them as queued, -1).  The configuration in
 * ctx->tls is shared by the sockets of a server or of a client; free it after them. */
#ifndef WSK_IO_TLS_H
#define WSK_IO_TLS_H

#include "internal.h"

/* Loads the server's certificate chain, key (ctx->o.tls_key_password for an encrypted one) and
 * optional client CA (ctx->o.tls_*) into ctx->tls: TLS 1.2 and up, ECDHE with AES-GCM or
 * ChaCha20-Poly1305, ALPN http/1.1, client certificates required when tls_client_ca is set.
 * 0, or WSK_ERR_TLS with the reason logged (WSK_LOG_ERROR). */
int wsk_tls_server_config(wsk_ctx *ctx);
/* Starts the server side of a TLS session on an accepted connection (sets WSK_F_TLS).  The
 * handshake runs within the connection's reads and counts against handshake_timeout; a failed
 * one is logged in one line (`peer`: the address from wsk_tcp_accept, and the reason) and ends
 * the connection.  0, or WSK_ERR_NOMEM. */
int wsk_tls_accept(struct wsk_ws *c, const char *peer);
/* Client: loads the CA bundle (o->tls_ca, else the system's), the client certificate and key
 * into ctx->tls; o->tls_insecure skips verification (and logs a warning).  0, or WSK_ERR_TLS
 * with the reason logged (WSK_LOG_ERROR). */
int wsk_tls_client_config(wsk_ctx *ctx, const wsk_client_opts *o);
/* Client: starts TLS on a socket that is connected or connecting (sets WSK_F_TLS), with SNI
 * (unless host is an address) and verification of the certificate against `host` (a name, or
 * an IPv4/IPv6 address with or without brackets).  The handshake starts once the socket is
 * writable and runs inside wsk_io_read/wsk_io_writev.  A failure calls wsk_client_failed(c,
 * WSK_ERR_CERT, "certificate verify failed: <why>") when the certificate did not verify (why:
 * expired, unknown issuer, name mismatch, ...) or wsk_client_failed(c, WSK_ERR_TLS, "TLS
 * handshake failed: <why>") otherwise, then ends the connection.  0, WSK_ERR_NOMEM or
 * WSK_ERR_TLS. */
int wsk_tls_connect(struct wsk_ws *c, const char *host);
/* ev_time() when c's TLS handshake completed; 0 while it runs, and for plain sockets. */
double wsk_tls_handshake_end(struct wsk_ws *c);
/* Frees ctx->tls (after every socket of ctx is released). */
void wsk_tls_ctx_free(wsk_ctx *ctx);

#endif
