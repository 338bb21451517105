/* TLS for server and client sockets, on mbedTLS (internal).  io_tls.c is the only file that
 * includes mbedTLS's TLS headers; crypto.c wraps its SHA-1 and base64 for the handshake and the
 * commands (wsk_base64_encode/decode), so no other file of lib/ or cmd/ includes mbedTLS.
 *
 * Once a socket has a session (flag WSK_F_TLS), wsk_io_read/wsk_io_writev/wsk_io_release hand it
 * to wsk_tls_read/wsk_tls_writev/wsk_tls_release (io_transport.h), which run the handshake
 * first, without blocking: the rest of the library sees only plaintext.  Writes queued during
 * the handshake wait for its end (wsk_send reports them as queued, -1).  The configuration in
 * ctx->tls is shared by the sockets of a server or of a client, and by the members of a server
 * group that load the same certificate (wsk_tls_server_share): the mbedTLS parts that change
 * after it is made (DRBG, ticket keys, session cache) take mbedTLS's own locks
 * (MBEDTLS_THREADING_C).  Each context frees its reference after its sockets. */
#ifndef WSK_IO_TLS_H
#define WSK_IO_TLS_H

#include "internal.h"

/* Loads the server's certificate chain, key (o->tls_key_password for an encrypted one) and
 * optional client CA (o->tls_*) into ctx->tls: TLS 1.2 and up, ECDHE with AES-GCM or
 * ChaCha20-Poly1305, ALPN http/1.1, client certificates required when tls_client_ca is set;
 * sessions resume by ticket (the key replaced hourly by mbedTLS as tickets are made or read: no
 * timer, no tie to ctx->loop) or from a session ID cache.  0, or WSK_ERR_TLS with the reason
 * logged (WSK_LOG_ERROR). */
int wsk_tls_server_config(wsk_ctx *ctx, const wsk_server_opts *o);
/* Server groups (wsk_group_add): when the servers of `to` and `from` load the same certificate
 * chain and client CA and `to` has no socket yet, `to` drops its configuration and takes a
 * reference to from's: one set of ticket keys and one session cache, so a session made on one
 * member's thread resumes on any other's; an RSA key gains a copy for `to`'s thread (mbedTLS
 * signs with one key one signature at a time).  From the thread that makes the group, before it
 * runs; either context may be freed first.  1 when shared, else 0. */
int wsk_tls_server_share(wsk_ctx *to, wsk_ctx *from);

/* The version of the mbedTLS library loaded, as "2.28.3", into out[0..18). */
void wsk_tls_version(char out[18]);
/* Starts the server side of a TLS session on an accepted connection (sets WSK_F_TLS).  The
 * handshake runs within the connection's reads and counts against handshake_timeout; a failed
 * one is logged in one line (`peer`: the address from wsk_tcp_accept, and the reason) and fails
 * that read (WSK_ERR_TLS).  0, or WSK_ERR_NOMEM. */
int wsk_tls_accept(struct wsk_ws *c, const char *peer);
/* Client: loads the CA bundle (o->tls_ca, else the system's), the client certificate and key
 * into ctx->tls; o->tls_insecure skips verification (and logs a warning).  0, or WSK_ERR_TLS
 * with the reason, "TLS: ...", in why[0..cap) (not logged: the client's error handler says it,
 * once). */
int wsk_tls_client_config(wsk_ctx *ctx, const wsk_client_opts *o, char *why, size_t cap);
/* Client: starts TLS on a socket that is connected or connecting (sets WSK_F_TLS), with SNI
 * (unless host is an address) and verification of the certificate against `host` (a name, or
 * an IPv4/IPv6 address with or without brackets).  The handshake starts once the socket is
 * writable and runs inside wsk_io_read/wsk_io_writev, which return WSK_ERR_CERT when the
 * certificate did not verify or WSK_ERR_TLS for any other failure; wsk_tls_failure says why.
 * The transport knows nothing of clients: conn.c (wsk_conn_failed) ends the connection and
 * tells its owner (client.c, or wsbench's hooks).  0, WSK_ERR_NOMEM or WSK_ERR_TLS. */
int wsk_tls_connect(struct wsk_ws *c, const char *host);
/* Client: offers the session kept in ts when it was made with `server` ("host:port"), and keeps
 * this connection's session in ts once its handshake is over (ts must outlive the handshake).
 * Call after wsk_tls_connect.  1 when a session is offered, else 0. */
int wsk_tls_session_use(struct wsk_ws *c, wsk_tls_session *ts, const char *server);
/* wsk_tls_failure (io_transport.h): why c's handshake failed, "certificate verify failed: <why>"
 * (expired, unknown issuer, name mismatch, ...) or "TLS handshake failed: <why>". */
/* ev_time() when c's TLS handshake completed; 0 while it runs, and for plain sockets. */
double wsk_tls_handshake_end(struct wsk_ws *c);
/* Who seals c's records once its handshake is over: "ipsec-mb" (io_tls_records.c) or "mbedTLS"
 * (the suite is not one ipsec-mb has, or WSK_TLS_RECORDS=mbedtls); NULL before, and for plain
 * sockets.  A static string. */
const char *wsk_tls_records(struct wsk_ws *c);
/* Drops ctx's reference to ctx->tls, the last one frees it (after every socket of ctx is
 * released). */
void wsk_tls_ctx_free(wsk_ctx *ctx);

#endif
