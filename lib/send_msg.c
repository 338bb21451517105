/* Messages to framed bytes on the send queue: wsk_send, pings, the close frame.
 *
 * A message is framed straight into the tail block of the socket's queue: the header, then one
 * copy of the payload (masked there for a client, RFC 6455 5.3).  Nothing is written here; the
 * socket is marked dirty and written once at the end of the loop iteration (send_flush.c).
 * A server's large payload (WSK_DIRECT_MIN) is the exception: one that lies in the read being
 * handled is held there and written with the other replies to that read (send_lent.c); else,
 * with nothing queued, it is written at once from the caller's buffer (wsk_flush_direct), unless
 * it is under WSK_BATCH_MAX and answers a frame with more frames behind it in the same read
 * (then the replies to that read leave together at the end of the turn); behind other bytes it
 * is copied in pieces of the loop's cached blocks, so no block of its size is allocated and
 * freed.  A client's large payload goes to cached blocks too, masked in the same pass as the
 * copy, and so does a payload over TLS (mbedTLS encrypts from the queue) or on a socket with
 * hooks (wsbench fills the queue itself) when its frame would not fit in one cached block. */
#include "internal.h"
#include "mask.h"
#include "msg_control.h"
#include "pmd_conn.h"
#include "send_frame.h"

#include <string.h>
#include <sys/random.h>

/* A client's masking key: 4 bytes from a pool refilled from getrandom(2), so keys are
 * unpredictable (RFC 6455 10.3) without a system call per frame. */
static void mask_key(wsk_loop *loop, uint8_t key[4])
{
    if (!loop->client_rng_ready || loop->client_rng_pos + 4 > sizeof loop->client_rng) {
        size_t got = 0;
        while (got < sizeof loop->client_rng) {
            ssize_t r = getrandom(loop->client_rng + got, sizeof loop->client_rng - got, 0);
            if (r > 0) got += (size_t)r;
        }
        loop->client_rng_pos = 0;
        loop->client_rng_ready = 1;
    }
    memcpy(key, loop->client_rng + loop->client_rng_pos, 4);
    loop->client_rng_pos += 4;
}

int wsk_send_refuse(struct wsk_ws *c)
{
    c->ctx->stats.dropped++;
    if (c->ctx->lim.close_on_backpressure_limit) {
        c->ctx->stats.slow_closes++;
        wsk_conn_fail(c, WSK_ERR_POLICY, WSK_CLOSE_POLICY, "backpressure limit reached");
        return 0;
    }
    /* The queue refused with bytes in it (wsk_send_admit): drain says when they are written
     * out, so that what was dropped can be sent again (a sender that saw only 0, never -1,
     * would otherwise wait for nothing). */
    c->flags |= WSK_F_BACKPRESSURE;
    if (!(c->flags & WSK_F_OVERFLOW)) {
        char addr[64];
        c->flags |= WSK_F_OVERFLOW;
        wsk_log(c->ctx->loop, WSK_LOG_INFO, "%s: backpressure limit reached, dropping sends",
                wsk_addr_string(c->io.fd, addr, sizeof addr));
    }
    return 0;
}

/* A frame of `total` bytes joined the queue: it leaves with this iteration's write (total), or
 * waits behind a full kernel buffer (-1, and drain follows). */
static long queued(struct wsk_ws *c, size_t total)
{
    wsk_loop_schedule(c->ctx->loop, c);
    if (c->flags & WSK_F_WANT_WRITE) {
        c->flags |= WSK_F_BACKPRESSURE;
        return -1;
    }
    return (long)total;
}

/* A large frame: written now when `direct` and nothing is queued; otherwise, and always for a
 * client, whose payload is masked while copied, it is queued in pieces of cached blocks. */
static long send_large(struct wsk_ws *c, unsigned opcode, unsigned rsv, const void *data,
                       size_t len, int client, int direct)
{
    uint8_t hdr[WSK_FRAME_HDR_MAX], key[4];
    if (client) mask_key(c->ctx->loop, key);
    size_t hl = wsk_frame_header(hdr, 1, rsv, opcode, len, client ? key : NULL);
    if (direct && !c->q.bytes) return wsk_flush_direct(c, hdr, hl, data, len);
    if (wsk_queue_write(c, hdr, hl) < 0 ||
        wsk_queue_write_masked(c, data, len, client ? key : NULL) < 0) {
        /* The header may be queued without its payload: the stream cannot go on. */
        wsk_conn_failed(c, WSK_ERR_NOMEM, "out of memory");
        return 0;
    }
    return queued(c, hl + len);
}

/* Queues one frame.  force: control frames we must send (pong, close) skip the backpressure
 * limit.  Returns the frame's bytes when it leaves with this iteration's write, -1 behind
 * backpressure, 0 when it was dropped. */
long wsk_send_frame(struct wsk_ws *c, unsigned opcode, unsigned rsv, const void *data, size_t len,
                    int force)
{
    if (c->state != WSK_ST_OPEN && !(force && c->state == WSK_ST_CLOSING)) return 0;
    int client = c->ctx->role == WSK_ROLE_CLIENT;
    size_t hl = wsk_frame_header_size(len, client), total = hl + len;

    if (!force && !wsk_send_admit(c, total)) return 0;
    /* A large reply from the read being handled waits for its end, where it lies. */
    if (len >= WSK_DIRECT_MIN && wsk_lent_hold(c, opcode, rsv, data, len)) return (long)total;
    wsk_lent_settle(c);
    /* A plain server socket writes from the caller's buffer; TLS and hooks need the queue.  A
     * reply of less than WSK_BATCH_MAX with another frame behind its message in this read is
     * copied instead: the replies to a read's frames then leave in one write at the end of the
     * turn, and a copy of 16 KiB costs less than a sendmsg per reply (echo at 16 KiB, 4 frames a
     * read: about 6 instead of 8.5 us of server CPU per message; at 32 KiB it was a wash). */
    int direct = !client && !c->ctx->hooks && !(c->flags & WSK_F_TLS) &&
                 !(len < WSK_BATCH_MAX && c->ctx->loop->more_input == c);
    if (len >= WSK_DIRECT_MIN && (client || direct || total > WSK_BLOCK_CACHED))
        return send_large(c, opcode, rsv, data, len, client, direct);
    uint8_t *dst = wsk_queue_reserve(c, total);
    if (!dst) return 0;
    uint8_t key[4];
    if (client) mask_key(c->ctx->loop, key);
    wsk_frame_header(dst, 1, rsv, opcode, len, client ? key : NULL);
    if (len) memcpy(dst + hl, data, len);
    if (client) wsk_mask(dst + hl, len, key, 0);
    wsk_queue_commit(c, total);
    if (opcode >= WSK_OP_CLOSE) c->ctx->stats.control_out[wsk_stats_slot(opcode)]++;
    return queued(c, total);
}

/* Bun's meaning of a send's result (wskit.h): the payload bytes of a message that leaves with
 * this iteration's write (1 for an empty one, so that success is always > 0), -1 behind
 * backpressure, 0 dropped.  `queued` is what wsk_send_frame returned. */
static long sent(long queued, size_t len)
{
    return queued > 0 ? (len ? (long)len : 1) : queued;
}

long wsk_send(wsk_ws *ws, const void *data, size_t len, wsk_opcode op, int compress)
{
    if (!wsk_message_ok(data, len, op)) return WSK_ERR_INVAL;
    long r = compress && (ws->flags & WSK_F_PMD) && len >= ws->ctx->lim.compress_threshold
                 ? wsk_pmd_conn_send(ws, data, len, op)
                 : wsk_send_frame(ws, op, 0, data, len, 0);
    return sent(wsk_stats_sent(&ws->ctx->stats, op, len, r), len);
}

/* RFC 6455 5.5: a control frame carries at most 125 bytes. */
static long send_control(wsk_ws *ws, unsigned op, const void *data, size_t len)
{
    if (len > 125 || (!data && len)) return WSK_ERR_INVAL;
    return sent(wsk_send_frame(ws, op, 0, data, len, 0), len);
}

long wsk_ping(wsk_ws *ws, const void *data, size_t len)
{
    return send_control(ws, WSK_OP_PING, data, len);
}

long wsk_pong(wsk_ws *ws, const void *data, size_t len)
{
    return send_control(ws, WSK_OP_PONG, data, len);
}

void wsk_send_close(struct wsk_ws *c, unsigned code, const char *reason, size_t len)
{
    if (c->flags & WSK_F_CLOSE_SENT) return;
    uint8_t payload[125];
    size_t n = wsk_close_build(payload, code, reason, len);
    c->flags |= WSK_F_CLOSE_SENT;
    wsk_stats_close(c->ctx->stats.close_sent, code);
    /* The closing handshake needs the peer's close frame: a paused socket reads again. */
    wsk_conn_resume(c);
    wsk_send_frame(c, WSK_OP_CLOSE, 0, payload, n, 1);
    if (c->state == WSK_ST_OPEN) {
        c->state = WSK_ST_CLOSING;
        c->stamp = (uint32_t)ev_now(c->ctx->loop->ev);
    }
}

int wsk_close_check(unsigned code, const char *reason, size_t len)
{
    /* 7.4: only codes a peer may receive; 5.5.1: a reason follows a code and the payload of
     * a control frame is at most 125 bytes; the reason is UTF-8, or the peer fails us (1007). */
    if (code ? !wsk_close_code_valid(code) : len != 0) return WSK_ERR_INVAL;
    if (len > 123 || (!reason && len)) return WSK_ERR_INVAL;
    return len && !wsk_utf8_valid(reason, len) ? WSK_ERR_INVAL : 0;
}

int wsk_close(wsk_ws *ws, unsigned code, const char *reason, size_t len)
{
    int err = wsk_close_check(code, reason, len);
    if (err) return err;
    if (ws->state == WSK_ST_HTTP) return WSK_ERR_STATE;
    if (ws->state == WSK_ST_OPEN) wsk_send_close(ws, code, reason, len);
    return 0;
}

void wsk_terminate(wsk_ws *ws)
{
    wsk_conn_end(ws, WSK_CLOSE_ABNORMAL, "terminated");
}

int wsk_cork(wsk_ws *ws, void (*fn)(wsk_ws *ws, void *arg), void *arg)
{
    if (!fn) return WSK_ERR_INVAL;
    fn(ws, arg);
    if (ws->state != WSK_ST_DEAD) wsk_flush(ws);
    return 0;
}
