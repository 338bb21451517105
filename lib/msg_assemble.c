/* Frames to messages: the WebSocket phase of a read.
 *
 * The bytes of a read are in the loop's shared buffer.  Headers are decoded incrementally
 * (parse_frame.c keeps at most 14 bytes between reads), payloads are unmasked in place a word at
 * a time, and a message whose frame arrived whole in this read is handed to the message handler
 * where it lies: no copy, no allocation.  Only a message split across reads or frames is
 * gathered in the socket's cold buffer, whose cap is the max payload; once a large frame's
 * header is in, the buffer takes its whole announced length and the rest of the frame is read
 * straight into it (wsk_msg_direct), so its bytes are copied once, by the kernel.  Text is
 * validated as it arrives so invalid UTF-8 fails the connection at the first bad byte (RFC
 * 6455 8.1). */
#include "internal.h"
#include "mask.h"
#include "msg_control.h"
#include "parse_utf8.h"
#include "pmd_conn.h"

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

/* The message gathered in the cold buffer is complete: to the handler.  A small buffer goes;
 * a large one stays for the next message (the sweep frees it when the socket stops sending
 * large messages): allocating and freeing one per message makes malloc give the top of the heap
 * back to the kernel after each message and take it again for the next, and every page then
 * returns zero-filled through a page fault, which at 16 KiB to 1 MiB costs more than the copy
 * the direct read saves. */
static int deliver_assembled(struct wsk_ws *c)
{
    wsk_cold *k = c->cold;
    int r = deliver(c, k->msg.p ? k->msg.p : (const uint8_t *)"", k->msg.len);
    if (c->state != WSK_ST_DEAD && c->cold) {
        k = c->cold;
        k->msg.len = 0;
        k->msg_idle = 0;
        if (k->msg.cap < WSK_DIRECT_MIN) wsk_dbuf_free(&k->msg);
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
        wsk_lent_settle_msg(c);
        wsk_cold *k = wsk_conn_cold(c);
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
        wsk_lent_settle_msg(c);
        wsk_cold *k = wsk_conn_cold(c);
        if (!k) return fail(c, WSK_ERR_NOMEM, "out of memory");
        /* Kept bytes too small for this message: a new buffer, not a copy of nothing. */
        if (!k->msg.len && k->msg.cap < n + c->remaining) wsk_dbuf_free(&k->msg);
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

int wsk_msg_receive(struct wsk_ws *c, uint8_t *p, size_t n)
{
    const wsk_ctx *ctx = c->ctx;
    unsigned dflags = ctx->role == WSK_ROLE_SERVER ? WSK_DEC_REQUIRE_MASK : WSK_DEC_FORBID_MASK;
    unsigned rsv = (c->flags & WSK_F_PMD) ? WSK_RSV1 : 0;
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
            if (masked) wsk_mask(payload, len, p + 2, 0);
            c->msg_op = p[0] & 0xF;
            c->utf8 = WSK_UTF8_ACCEPT;
            p += hl + len;
            n -= hl + len;
            if (c->msg_op == WSK_OP_TEXT && wsk_utf8_validate(&c->utf8, payload, len) < 0)
                return fail(c, WSK_ERR_UTF8, "text message is not valid UTF-8");
            if (deliver(c, payload, len) < 0) return WSK_ERR_CLOSED;
            continue;
        }
        int whole = 0;
        if (!(c->flags & WSK_F_PAYLOAD)) {
            wsk_frame f;
            int r = wsk_frame_decode(&c->dec, p, n, dflags, rsv, ctx->lim.max_payload, &f);
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
