/* Bytes out: one writev per socket per loop iteration.
 *
 * Called for every dirty socket at the end of the iteration (io_loop.c) and when EV_WRITE
 * reports room in the kernel buffer.  Writes first and watches for writability only while bytes
 * remain (STYLE: never poll for EV_WRITE on a socket with nothing to send).  A socket writes at
 * most WSK_WRITE_MAX bytes per iteration so one fast reader cannot starve the others.
 *
 * A large message sent on a socket with nothing queued does not wait for the end of the
 * iteration (wsk_flush_direct): header and payload go to the kernel at once from where they lie,
 * and only what the kernel did not take is copied to the queue; when the payload lies in the
 * socket's own message buffer (an echo), not even that: the queue takes a reference to the
 * buffer (wsk_msg_block).  Batching buys nothing for one big message, and the copy it saves is
 * the message. */
#include "internal.h"
#include "io_transport.h"

#include <errno.h>
#include <sys/socket.h>

static void want_write(struct wsk_ws *c, int on)
{
    if (!!(c->flags & WSK_F_WANT_WRITE) == on) return;
    c->flags ^= WSK_F_WANT_WRITE;
    wsk_conn_io_events(c, on ? EV_READ | EV_WRITE : EV_READ);
}

long wsk_flush_iov(struct wsk_ws *c, const struct iovec *iov, int n, size_t total)
{
    long w = wsk_io_writev(c, iov, n);
    size_t took = w > 0 ? (size_t)w : 0;
    if (took == total) return (long)total;
    const wsk_dbuf *m = c->cold ? &c->cold->msg : NULL;
    for (int i = 0; i < n; i++) {
        size_t skip = took < iov[i].iov_len ? took : iov[i].iov_len;
        took -= skip;
        const uint8_t *p = (const uint8_t *)iov[i].iov_base + skip;
        size_t len = iov[i].iov_len - skip;
        /* A large rest in the socket's message buffer: a reference to it, not a copy. */
        wsk_block *b =
            len >= WSK_SHARE_MIN && m && wsk_within(p, len, m->p, m->cap) ? wsk_msg_block(c) : NULL;
        int r = b ? wsk_queue_share(c, b, (size_t)(p - b->data), len) : wsk_queue_write(c, p, len);
        if (r < 0) {
            /* Part of the frames may be on the wire already: the stream cannot go on. */
            wsk_conn_failed(c, WSK_ERR_NOMEM, "out of memory");
            return 0;
        }
    }
    if (w < 0 && w != WSK_ERR_AGAIN) {
        /* The flush at the end of the iteration meets the error again and ends the socket. */
        wsk_loop_schedule(c->ctx->loop, c);
        return (long)total;
    }
    want_write(c, 1);
    c->flags |= WSK_F_BACKPRESSURE;
    return -1;
}

long wsk_flush_direct(struct wsk_ws *c, const uint8_t *hdr, size_t hl, const uint8_t *data,
                      size_t len)
{
    struct iovec iov[2] = {{(void *)hdr, hl}, {(void *)data, len}};
    return wsk_flush_iov(c, iov, 2, hl + len);
}

int wsk_flush(struct wsk_ws *c)
{
    if (c->state == WSK_ST_DEAD) return WSK_ERR_CLOSED;
    wsk_lent_settle(c);
    if (c->ctx->hooks) {
        c->ctx->hooks->fill(c);
        if (c->state == WSK_ST_DEAD) return WSK_ERR_CLOSED;
    }
    if (c->q.bytes) {
        struct iovec iov[WSK_IOV_MAX];
        int n = wsk_queue_iov(c, iov, WSK_IOV_MAX);
        long w = wsk_io_writev(c, iov, n);
        if (w < 0) {
            if (w != WSK_ERR_AGAIN) {
                wsk_conn_failed(c, w, "write failed");
                return WSK_ERR_IO;
            }
            w = 0;
        }
        wsk_queue_consume(c, (size_t)w);
        if (c->q.bytes) {
            want_write(c, 1);
            return 0;
        }
    }
    want_write(c, 0);
    if (c->flags & WSK_F_END_AFTER_FLUSH) {
        /* Closing with unread input sends a reset, which may destroy the close frame or error
         * reply before the peer reads it (a browser still sending a message over the limit
         * reports 1006): stop writing and drain the peer until its EOF or close_timeout. */
        if ((c->flags & WSK_F_LINGER) && !(c->flags & WSK_F_TLS) &&
            shutdown(c->io.fd, SHUT_WR) == 0) {
            c->flags &= ~(WSK_F_END_AFTER_FLUSH | WSK_F_LINGER);
            return 0;
        }
        wsk_conn_end(c, WSK_CLOSE_ABNORMAL, NULL);
        return WSK_ERR_CLOSED;
    }
    if (c->flags & WSK_F_BACKPRESSURE) {
        c->flags &= ~WSK_F_BACKPRESSURE;
        if (c->ctx->h.drain && c->state == WSK_ST_OPEN) c->ctx->h.drain(c);
    }
    return 0;
}
