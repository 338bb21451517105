/* Replies lent from the receive buffer: large frames whose payload lies in the loop's buffer,
 * held until the end of the read that brought them and written then, all in one writev.
 *
 * A server that answers each large frame where it lies (an echo, a relay back to the sender)
 * would otherwise make one sendmsg per reply, or copy the reply into its queue so that the
 * replies to one read leave together.  Held here, the payloads are neither copied nor written
 * one by one: the frames' headers are kept in the loop, their payloads stay where the read put
 * them, and conn.c writes them before the next read reuses the buffer (64 KiB echo, 2 frames a
 * read: one sendmsg instead of two).  Only what the kernel does not take is copied, to the
 * queue, as wsk_flush_direct does for one frame.  A message whose frame spanned reads lies in the
 * socket's message buffer (its end read there directly, msg_assemble.c): its reply is held there
 * too, with the replies to the frames read behind it, and written before that buffer takes the
 * bytes of another message (wsk_lent_settle_msg); what the kernel does not take of it is not
 * copied but queued by reference to that buffer (wsk_msg_block), which the next message then
 * leaves to the queue (16 MiB echo: 12 of the 16 MiB were copied before).
 *
 * Order: frames are held only while the socket's queue is empty, and any other frame for the
 * socket (a small reply, a pong, a close, a publish, a payload from elsewhere) first writes the
 * held ones (wsk_lent_settle), so nothing overtakes them.  Memory: the held bytes stay within
 * the backpressure limit, so what a partial write leaves in the queue does too. */
#include "internal.h"
#include "send_frame.h"

#include <stdint.h>

void wsk_lent_begin(struct wsk_ws *c)
{
    wsk_loop *loop = c->ctx->loop;
    int plain = c->ctx->role == WSK_ROLE_SERVER && !c->ctx->hooks && !(c->flags & WSK_F_TLS) &&
                (c->state == WSK_ST_OPEN || c->state == WSK_ST_CLOSING);
    loop->lent.c = plain ? c : NULL;
}

int wsk_lent_hold(struct wsk_ws *c, unsigned opcode, unsigned rsv, const void *data, size_t len)
{
    wsk_loop *loop = c->ctx->loop;
    wsk_lent *l = &loop->lent;
    size_t hl = wsk_frame_header_size(len, 0);
    if (l->c != c || c->q.bytes || l->n == WSK_LENT_MAX ||
        l->bytes + hl + len > c->ctx->lim.backpressure_limit)
        return 0;
    int from_msg = c->cold && wsk_within(data, len, c->cold->msg.p, c->cold->msg.cap);
    if (!from_msg && !wsk_within(data, len, loop->rbuf, WSK_RBUF_SIZE)) return 0;
    l->from_msg |= from_msg;
    uint8_t *h = l->hdr[l->n];
    wsk_frame_header(h, 1, rsv, opcode, len, NULL);
    l->iov[2 * l->n] = (struct iovec){h, hl};
    l->iov[2 * l->n + 1] = (struct iovec){(void *)data, len};
    l->n++;
    l->bytes += hl + len;
    return 1;
}

void wsk_lent_flush(wsk_loop *loop)
{
    wsk_lent *l = &loop->lent;
    unsigned n = l->n;
    size_t bytes = l->bytes;
    l->n = 0;
    l->bytes = 0;
    l->from_msg = 0;
    if (n && l->c->state != WSK_ST_DEAD) wsk_flush_iov(l->c, l->iov, (int)(2 * n), bytes);
}

void wsk_lent_end(wsk_loop *loop)
{
    if (loop->lent.n) wsk_lent_flush(loop);
    loop->lent.c = NULL;
}
