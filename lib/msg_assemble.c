/* Frames to messages: the WebSocket phase of a read.
 *
 * The bytes of a read are in the loop's shared buffer.  Headers are decoded incrementally
 * (parse_frame.c keeps at most 14 bytes between reads), payloads are unmasked in place a word at
 * a time, and a message whose frame arrived whole in this read is handed to the message handler
 * where it lies: no copy, no allocation.  Only a message split across reads or frames is
 * gathered in the socket's cold buffer, whose cap is the max payload; once a large frame's
 * header is in, the buffer takes its whole announced length and the rest of the frame is read
 * straight into it (wsk_msg_direct), so its bytes are copied once, by the kernel; after a message
 * of one frame of WSK_GUESS_MIN bytes or more, the next read guesses another of its length and
 * puts its payload there too (wsk_msg_guess).  Text is validated as it arrives so invalid UTF-8
 * fails the connection at the first bad byte (RFC 6455 8.1). */
#include "internal.h"
#include "mask.h"
#include "msg_control.h"
#include "parse_utf8.h"
#include "pmd_conn.h"
#include "send_frame.h"

#include <string.h>

static int fail(struct wsk_ws *c, int err, const char *msg)
{
    unsigned code = err == WSK_ERR_UTF8 || err == WSK_ERR_DEFLATE ? WSK_CLOSE_INVALID_DATA
                    : err == WSK_ERR_TOO_BIG                      ? WSK_CLOSE_TOO_BIG
                    : err == WSK_ERR_NOMEM                        ? WSK_CLOSE_INTERNAL
                                                                  : WSK_CLOSE_PROTOCOL;
    wsk_conn_fail(c, err, code, msg);
    return err;
}

static int alive(const struct wsk_ws *c)
{
    return c->state == WSK_ST_OPEN || c->state == WSK_ST_CLOSING;
}

/* Names the rule a rejected header broke, from its first two bytes, for the log line. */
static const char *header_error(const struct wsk_ws *c, const uint8_t *p, size_t n, int err)
{
    if (err == WSK_ERR_TOO_BIG) return "frame larger than the max payload";
    uint8_t b0 = c->dec.have ? c->dec.buf[0] : p[0];
    uint8_t b1 = c->dec.have > 1 ? c->dec.buf[1] : n > (size_t)!c->dec.have ? p[!c->dec.have] : 0;
    unsigned op = b0 & 15;
    if ((op >= 3 && op <= 7) || op >= 11) return "reserved opcode";
    if (b0 & 0x70) return "reserved bits set without an extension that defines them";
    if ((op & 8) && !(b0 & 0x80)) return "fragmented control frame";
    if ((op & 8) && (b1 & 127) > 125) return "control frame longer than 125 bytes";
    if (c->ctx->role == WSK_ROLE_SERVER && !(b1 & 0x80)) return "unmasked frame from a client";
    if (c->ctx->role == WSK_ROLE_CLIENT && (b1 & 0x80)) return "masked frame from a server";
    return "invalid frame header";
}

/* A frame header arrived: check it against the message being assembled (RFC 6455 5.4). */
static int frame_begin(struct wsk_ws *c, const wsk_frame *f)
{
    c->frame_op = f->opcode;
    c->frame_fin = f->fin;
    c->remaining = f->len;
    c->mask_off = 0;
    memcpy(c->mask, f->mask, 4);
    if (f->opcode & 8) return 0;
    if (f->opcode == WSK_OP_CONT) {
        if (!(c->flags & WSK_F_FRAGMENTED))
            return fail(c, WSK_ERR_PROTOCOL, "continuation frame without a message to continue");
    } else {
        if (c->flags & WSK_F_FRAGMENTED)
            return fail(c, WSK_ERR_PROTOCOL, "new message inside an unfinished fragmented one");
        c->msg_op = f->opcode;
        c->utf8 = WSK_UTF8_ACCEPT;
        c->flags &= ~WSK_F_MSG_COMPRESSED;
        if (f->rsv & WSK_RSV1) c->flags |= WSK_F_MSG_COMPRESSED;
        if (!f->fin) c->flags |= WSK_F_FRAGMENTED;
    }
    /* The declared length proves the limit is crossed: fail now, before any payload. */
    size_t have = c->cold ? c->cold->msg.len : 0;
    if (!(c->flags & WSK_F_MSG_COMPRESSED) && f->len > c->ctx->lim.max_payload - have)
        return fail(c, WSK_ERR_TOO_BIG, "message larger than the max payload");
    return 0;
}

static int deliver(struct wsk_ws *c, const uint8_t *data, size_t len)
{
    if (c->msg_op == WSK_OP_TEXT && c->utf8 != WSK_UTF8_ACCEPT)
        return fail(c, WSK_ERR_UTF8, "text message ends inside a UTF-8 sequence");
    c->flags &= ~(WSK_F_FRAGMENTED | WSK_F_MSG_COMPRESSED);
    wsk_stats_message_in(&c->ctx->stats, c->msg_op, len);
    if (c->ctx->h.message) c->ctx->h.message(c, data, len, (wsk_opcode)c->msg_op);
    return alive(c) ? 0 : WSK_ERR_CLOSED;
}

static int on_close_frame(struct wsk_ws *c, const uint8_t *p, size_t n)
{
    unsigned code;
    const uint8_t *reason;
    size_t rlen;
    int r = wsk_close_parse(p, n, &code, &reason, &rlen);
    if (r == WSK_ERR_UTF8) return fail(c, r, "close reason is not valid UTF-8");
    if (r < 0)
        return fail(c, r, n == 1 ? "close frame with a 1-byte payload" : "invalid close code");
    wsk_stats_close(c->ctx->stats.close_received, code);
    /* RFC 6455 5.5.1: answer with a close frame, echoing the code; a server echoes the reason
     * too, as websocat and ws clients expect (it was checked above: UTF-8, at most 123 bytes). */
    if (!(c->flags & WSK_F_CLOSE_SENT)) {
        size_t echo = c->ctx->role == WSK_ROLE_SERVER ? rlen : 0;
        wsk_send_close(c, code == WSK_CLOSE_NO_STATUS ? 0 : code, (const char *)reason, echo);
    }
    wsk_conn_closed(c, code, (const char *)reason, rlen);
    return WSK_ERR_CLOSED;
}

static int on_control(struct wsk_ws *c, const uint8_t *p, size_t n)
{
    const wsk_handlers *h = &c->ctx->h;
    c->ctx->stats.control_in[wsk_stats_slot(c->frame_op)]++;
    switch (c->frame_op) {
    case WSK_OP_PING:
        if (c->state == WSK_ST_OPEN) wsk_send_frame(c, WSK_OP_PONG, 0, p, n, 1);
        if (h->ping) h->ping(c, p, n);
        break;
    case WSK_OP_PONG:
        if (h->pong) h->pong(c, p, n);
        break;
    default: return on_close_frame(c, p, n);
    }
    return alive(c) ? 0 : WSK_ERR_CLOSED;
}

/* The wsk_block in front of k's message buffer (conn.c gives it msg.pre bytes). */
static wsk_block *msg_blk(const wsk_cold *k)
{
    return (wsk_block *)(void *)(k->msg.p - k->msg.pre);
}

/* 1 while the send queue holds k's message buffer besides k. */
static int msg_queued(const wsk_cold *k)
{
    return k->msg_lent && msg_blk(k)->refs > 1;
}

void wsk_msg_buffer_free(wsk_cold *k)
{
    if (msg_queued(k)) {
        msg_blk(k)->refs--; /* the queue frees it */
        k->msg.p = NULL;
        k->msg.len = k->msg.cap = 0;
    } else {
        wsk_dbuf_free(&k->msg);
    }
    k->msg_lent = 0;
}

wsk_block *wsk_msg_block(struct wsk_ws *c)
{
    wsk_cold *k = c->cold;
    /* A block of the cached size would go to the loop's cache when the queue frees it. */
    if (k->msg.cap == WSK_BLOCK_CACHED) return NULL;
    wsk_block *b = msg_blk(k);
    if (!k->msg_lent) b->refs = 1;
    k->msg_lent = 1;
    /* Full: the queue never appends to it (wsk_queue_reserve). */
    b->len = b->cap = (uint32_t)k->msg.cap;
    return b;
}

/* Before c's message buffer takes new bytes: the replies held from it are written first, and a
 * buffer whose bytes the send queue still holds is left to the queue.  c's cold state, or NULL
 * without memory for it. */
static wsk_cold *msg_writable(struct wsk_ws *c)
{
    wsk_lent_settle_msg(c);
    wsk_cold *k = wsk_conn_cold(c);
    if (k && msg_queued(k)) wsk_msg_buffer_free(k);
    return k;
}

/* The message gathered in the cold buffer is complete: to the handler.  A small buffer goes;
 * a large one stays for the next message (the sweep frees it when the socket stops sending
 * large messages): allocating and freeing one per message makes malloc give the top of the heap
 * back to the kernel after each message and take it again for the next, and every page then
 * returns zero-filled through a page fault, which at 16 KiB to 1 MiB costs more than the copy
 * the direct read saves. */
static int deliver_assembled(struct wsk_ws *c)
{
    wsk_cold *k = c->cold;
    /* A message of one large frame as it came: the next read expects another of its length. */
    int one = c->frame_op != WSK_OP_CONT && !(c->flags & WSK_F_MSG_COMPRESSED);
    size_t guess_min = c->ctx->lim.guess_min ? c->ctx->lim.guess_min : WSK_GUESS_MIN;
    k->msg_guess = one && k->msg.len >= guess_min ? k->msg.len : 0;
    int r = deliver(c, k->msg.p ? k->msg.p : (const uint8_t *)"", k->msg.len);
    if (c->state != WSK_ST_DEAD && c->cold) {
        k = c->cold;
        k->msg.len = 0;
        k->msg_idle = 0;
        if (k->msg.cap < WSK_DIRECT_MIN) wsk_msg_buffer_free(k);
        wsk_conn_cold_trim(c);
    }
    return r;
}

/* 1 when p[0..n), the next bytes of c's message, may follow what came before: not text, or
 * text whose validation goes on.  ascii: unmasking found every byte ASCII, so text between
 * characters stays between characters without a second pass over the bytes. */
static int text_ok(struct wsk_ws *c, const uint8_t *p, size_t n, int ascii)
{
    return c->msg_op != WSK_OP_TEXT || (ascii && c->utf8 == WSK_UTF8_ACCEPT) ||
           wsk_utf8_validate(&c->utf8, p, n) >= 0;
}

/* Payload bytes of a data frame: p[0..n), the last ones of the frame when c->remaining is 0;
 * p[n..n + after) are the rest of the read, lent to the inflater for its tail; ascii: as in
 * text_ok. */
static int on_data(struct wsk_ws *c, uint8_t *p, size_t n, size_t after, int whole, int ascii)
{
    int last = c->remaining == 0;
    int end = last && c->frame_fin;
    int text = c->msg_op == WSK_OP_TEXT;

    if (c->flags & WSK_F_MSG_COMPRESSED) {
        wsk_cold *k = msg_writable(c);
        if (!k) return fail(c, WSK_ERR_NOMEM, "out of memory");
        /* A message that inflates whole, nothing of it gathered yet, goes to the loop's buffer
         * rather than a socket's: no allocation per message. */
        wsk_dbuf *out = end && !k->msg.len ? wsk_pmd_conn_scratch(c) : &k->msg;
        if (!out) return fail(c, WSK_ERR_NOMEM, "out of memory");
        size_t before = out->len;
        int r = wsk_pmd_conn_inflate(c, p, n, after, end, out);
        if (r < 0)
            return fail(c, r,
                        r == WSK_ERR_TOO_BIG ? "message inflates past the max payload"
                                             : "compressed data does not inflate");
        wsk_stats_compressed(c->ctx->stats.inflate, n, out->len - before);
        /* A fragment may inflate to nothing yet, with msg.p still NULL. */
        if (text && out->len > before &&
            wsk_utf8_validate(&c->utf8, out->p + before, out->len - before) < 0)
            return fail(c, WSK_ERR_UTF8, "text message is not valid UTF-8");
        if (out != &k->msg) {
            r = deliver(c, out->p ? out->p : (const uint8_t *)"", out->len);
            wsk_pmd_scratch_done(out);
            return r;
        }
    } else {
        if (!text_ok(c, p, n, ascii))
            return fail(c, WSK_ERR_UTF8, "text message is not valid UTF-8");
        /* The common case: a whole unfragmented message in this read, handed over in place. */
        if (whole && end && !(c->cold && c->cold->msg.len)) return deliver(c, p, n);
        /* A reply held from the message buffer leaves before the buffer is written again. */
        wsk_cold *k = msg_writable(c);
        if (!k) return fail(c, WSK_ERR_NOMEM, "out of memory");
        /* Kept bytes too small for this message: a new buffer, not a copy of nothing. */
        if (!k->msg.len && k->msg.cap < n + c->remaining) wsk_msg_buffer_free(k);
        int r = wsk_dbuf_reserve(&k->msg, n + c->remaining);
        if (r < 0)
            return fail(c, r,
                        r == WSK_ERR_TOO_BIG ? "message larger than the max payload"
                                             : "out of memory");
        wsk_dbuf_append(&k->msg, p, n);
    }
    return end ? deliver_assembled(c) : 0;
}

/* Payload bytes of a control frame: handled in place when the frame is whole in this read,
 * else gathered (at most 125 bytes) in the cold state. */
static int on_control_data(struct wsk_ws *c, const uint8_t *p, size_t n, int whole)
{
    if (whole) return on_control(c, p, n);
    wsk_cold *k = wsk_conn_cold(c);
    if (!k) return fail(c, WSK_ERR_NOMEM, "out of memory");
    memcpy(k->ctl + k->ctl_len, p, n);
    k->ctl_len = (uint8_t)(k->ctl_len + n);
    if (c->remaining) return 0;
    uint8_t buf[125];
    size_t len = k->ctl_len;
    memcpy(buf, k->ctl, len);
    k->ctl_len = 0;
    wsk_conn_cold_trim(c);
    return on_control(c, buf, len);
}

/* A large payload goes straight to its place: on_data reserved the whole announced length in
 * the cold buffer when the frame began, so the rest of the frame is read there (conn.c) instead
 * of into the loop's buffer and copied, and unmasked and validated where it lands. */
uint8_t *wsk_msg_direct(struct wsk_ws *c, size_t *cap)
{
    if (!(c->flags & WSK_F_PAYLOAD) || (c->frame_op & 8) || (c->flags & WSK_F_MSG_COMPRESSED) ||
        c->remaining < WSK_DIRECT_MIN || !c->cold)
        return NULL;
    wsk_dbuf *m = &c->cold->msg;
    if (m->cap - m->len < c->remaining) return NULL;
    *cap = (size_t)c->remaining;
    return m->p + m->len;
}

int wsk_msg_direct_received(struct wsk_ws *c, size_t n, size_t after)
{
    wsk_dbuf *m = &c->cold->msg;
    uint8_t *p = m->p + m->len;
    int ascii = 0;
    if (c->ctx->role == WSK_ROLE_SERVER)
        c->mask_off = (uint8_t)wsk_unmask_ascii(p, n, c->mask, c->mask_off, &ascii);
    m->len += n;
    c->remaining -= n;
    if (!text_ok(c, p, n, ascii)) return fail(c, WSK_ERR_UTF8, "text message is not valid UTF-8");
    if (c->remaining) return 0;
    c->flags &= ~WSK_F_PAYLOAD;
    if (!c->frame_fin) return 0;
    /* Frames read behind this one: its reply waits to leave with theirs, as in wsk_msg_receive. */
    c->ctx->loop->more_input = after ? c : NULL;
    int r = deliver_assembled(c);
    c->ctx->loop->more_input = NULL;
    return r;
}

/* Decodes the next frame header of c from p[0..n) with d's state: wsk_frame_decode under c's
 * rules (its role's masking, RSV1 under permessage-deflate, the max payload). */
static int header_decode(const struct wsk_ws *c, wsk_frame_dec *d, const uint8_t *p, size_t n,
                         wsk_frame *f)
{
    unsigned dflags = c->ctx->role == WSK_ROLE_SERVER ? WSK_DEC_REQUIRE_MASK : WSK_DEC_FORBID_MASK;
    unsigned rsv = (c->flags & WSK_F_PMD) ? WSK_RSV1 : 0;
    return wsk_frame_decode(d, p, n, dflags, rsv, c->ctx->lim.max_payload, f);
}

/* The first read of a message usually lands in the loop's buffer, and a large frame's bytes in
 * it would be copied to the message buffer (the rest is read there directly, wsk_msg_direct).
 * A socket that just sent one large frame usually sends another of the same length (an echo, a
 * stream of large messages): its next read is split so that, if it does, the header lands in
 * the loop's buffer and the payload where it belongs, and what follows behind the header.  A
 * wrong guess costs a copy of what landed in the message buffer back into the loop's buffer,
 * the copy the right guess saves, and ends the guessing until the next large frame. */
int wsk_msg_guess(struct wsk_ws *c, struct iovec iov[3])
{
    wsk_cold *k = c->cold;
    if (!k || !k->msg_guess || !k->msg.p || k->msg.len || c->dec.have ||
        (c->flags & (WSK_F_PAYLOAD | WSK_F_FRAGMENTED | WSK_F_TLS)))
        return 0;
    /* The queue still sends the last reply from the buffer: this message goes the general way. */
    if (msg_queued(k)) return 0;
    uint8_t *rbuf = c->ctx->loop->rbuf;
    size_t hl = wsk_frame_header_size(k->msg_guess, c->ctx->role == WSK_ROLE_SERVER);
    size_t len = k->msg_guess < k->msg.cap ? k->msg_guess : k->msg.cap;
    if (len > WSK_RBUF_SIZE - hl) len = WSK_RBUF_SIZE - hl;
    iov[0] = (struct iovec){rbuf, hl};
    iov[1] = (struct iovec){k->msg.p, len};
    iov[2] = (struct iovec){rbuf + hl, WSK_RBUF_SIZE - hl - len};
    return 1;
}

int wsk_msg_guessed(struct wsk_ws *c, const struct iovec iov[3], size_t n)
{
    wsk_cold *k = c->cold;
    uint8_t *rbuf = iov[0].iov_base;
    size_t hl = iov[0].iov_len;
    size_t m = n > hl ? n - hl : 0;
    if (m > iov[1].iov_len) m = iov[1].iov_len;
    size_t rest = n > hl + m ? n - hl - m : 0;
    if (!m) return wsk_msg_receive(c, rbuf, n); /* a header at most: all in the loop's buffer */
    wsk_frame f;
    wsk_frame_dec d = {0};
    /* Right: a valid header of exactly the guessed size, for a new uncompressed data frame that
     * takes every byte read into the message buffer.  Anything else (a control frame, a
     * continuation, an invalid header) takes the general path, where the same rules apply. */
    if (header_decode(c, &d, rbuf, hl, &f) == (int)hl &&
        (f.opcode == WSK_OP_TEXT || f.opcode == WSK_OP_BINARY) && !(f.rsv & WSK_RSV1) &&
        f.len >= m && f.len >= WSK_DIRECT_MIN) {
        int r = frame_begin(c, &f);
        if (r < 0) return r;
        c->flags |= WSK_F_PAYLOAD;
        /* A longer frame than the last: the buffer grows, keeping the bytes read into it. */
        if ((r = wsk_dbuf_reserve(&k->msg, f.len)) < 0)
            return fail(c, r,
                        r == WSK_ERR_TOO_BIG ? "message larger than the max payload"
                                             : "out of memory");
        if ((r = wsk_msg_direct_received(c, m, rest)) < 0 || !rest) return r;
        return wsk_msg_receive(c, rbuf + hl, rest);
    }
    /* Wrong: the bytes go back in the order they came, as a plain read would have left them. */
    k->msg_guess = 0;
    memmove(rbuf + hl + m, rbuf + hl, rest);
    memcpy(rbuf + hl, k->msg.p, m);
    return wsk_msg_receive(c, rbuf, n);
}

int wsk_msg_receive(struct wsk_ws *c, uint8_t *p, size_t n)
{
    const wsk_ctx *ctx = c->ctx;
    int masked = ctx->role == WSK_ROLE_SERVER;
    /* The short header of a small frame: 2 bytes, and the masking key from a client. */
    size_t hl = masked ? 6 : 2;
    uint8_t mask_bit = masked ? 0x80 : 0;

    while (n && alive(c)) {
        /* The common case, decoded here without the general machinery: a whole, small,
         * unfragmented text or binary frame (byte 0 is 0x81 or 0x82: FIN, no RSV bit), masked
         * from a client and unmasked from a server, with nothing in progress.  Every other frame
         * takes the general path below, which applies the same rules. */
        if (n >= hl && !(c->flags & (WSK_F_PAYLOAD | WSK_F_FRAGMENTED)) && !c->dec.have &&
            (p[0] == 0x81 || p[0] == 0x82) && (p[1] & 0x80) == mask_bit && (p[1] & 0x7F) <= 125 &&
            n >= hl + (size_t)(p[1] & 0x7F) && (p[1] & 0x7F) <= ctx->lim.max_payload) {
            size_t len = p[1] & 0x7F;
            uint8_t *payload = p + hl;
            int ascii = 0;
            if (masked) wsk_unmask_ascii(payload, len, p + 2, 0, &ascii);
            c->msg_op = p[0] & 0xF;
            c->utf8 = WSK_UTF8_ACCEPT;
            p += hl + len;
            n -= hl + len;
            if (!text_ok(c, payload, len, ascii))
                return fail(c, WSK_ERR_UTF8, "text message is not valid UTF-8");
            if (deliver(c, payload, len) < 0) return WSK_ERR_CLOSED;
            continue;
        }
        int whole = 0;
        if (!(c->flags & WSK_F_PAYLOAD)) {
            wsk_frame f;
            int r = header_decode(c, &c->dec, p, n, &f);
            if (r < 0) return fail(c, r, header_error(c, p, n, r));
            if (r == 0) return 0;
            p += r;
            n -= (size_t)r;
            if ((r = frame_begin(c, &f)) < 0) return r;
            c->flags |= WSK_F_PAYLOAD;
            whole = f.len <= n;
        }
        size_t take = c->remaining < n ? (size_t)c->remaining : n;
        int ascii = 0;
        if (masked) c->mask_off = (uint8_t)wsk_unmask_ascii(p, take, c->mask, c->mask_off, &ascii);
        c->remaining -= take;
        if (c->remaining == 0) c->flags &= ~WSK_F_PAYLOAD;
        /* Another frame waits behind this one: what its handler sends can leave with the
         * replies to the next ones in one write (send_msg.c). */
        ctx->loop->more_input = n > take ? c : NULL;
        int r = (c->frame_op & 8) ? on_control_data(c, p, take, whole)
                                  : on_data(c, p, take, n - take, whole, ascii);
        ctx->loop->more_input = NULL;
        if (r < 0) return r;
        p += take;
        n -= take;
    }
    return alive(c) ? 0 : WSK_ERR_CLOSED;
}
