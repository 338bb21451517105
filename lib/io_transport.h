/* Bytes in and out of a connection's socket, plain TCP or TLS (internal).
 *
 * conn.c and send_flush.c call only these; io_tcp.c implements them for plain sockets and
 * hands TLS sockets to io_tls.c, the only file that knows mbedTLS. */
#ifndef WSK_IO_TRANSPORT_H
#define WSK_IO_TRANSPORT_H

#include "internal.h"

#define WSK_ERR_AGAIN (-1000) /* internal: would block */
#define WSK_ERR_EOF   (-1001) /* internal: the peer closed its side */

/* Reads up to cap bytes: > 0 bytes read, WSK_ERR_AGAIN, WSK_ERR_EOF, WSK_ERR_IO, or (TLS)
 * WSK_ERR_TLS / WSK_ERR_CERT when the handshake failed (wsk_io_failure says why). */
long wsk_io_read(struct wsk_ws *c, uint8_t *buf, size_t cap);
/* As wsk_io_read, filling iov[0..n) in order (TLS fills only iov[0]): bytes read in all. */
long wsk_io_readv(struct wsk_ws *c, const struct iovec *iov, int n);
/* Writes what it can of iov[0..n): bytes written (>= 0), WSK_ERR_AGAIN, WSK_ERR_IO, or as
 * wsk_io_read for a failed TLS handshake.  Never raises SIGPIPE. */
long wsk_io_writev(struct wsk_ws *c, const struct iovec *iov, int n);
/* Releases the transport state of c (TLS session) before the fd is closed. */
void wsk_io_release(struct wsk_ws *c);
/* Why the last read or write failed with WSK_ERR_TLS or WSK_ERR_CERT; valid until release. */
const char *wsk_io_failure(struct wsk_ws *c);

/* io_tls.c */
long wsk_tls_read(struct wsk_ws *c, uint8_t *buf, size_t cap);
long wsk_tls_writev(struct wsk_ws *c, const struct iovec *iov, int n);
void wsk_tls_release(struct wsk_ws *c);
const char *wsk_tls_failure(struct wsk_ws *c);

#endif
