/* Messages to framed bytes on the send queue: wsk_send, pings, the close frame.
 *
 * A message is framed straight into the tail block of the socket's queue: the header, then one
 * copy of the payload (masked there for a client, RFC 6455 5.3).  Nothing is written here; the
 * socket is marked dirty and written once at the end of the loop iteration (send_flush.c). */
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
    if (c->ctx->lim.close_on_backpressure_limit) {
        wsk_conn_fail(c, WSK_ERR_POLICY, WSK_CLOSE_POLICY, "backpressure limit reached");
    } else if (!(c->flags & WSK_F_OVERFLOW)) {
        char addr[64];
        c->flags |= WSK_F_OVERFLOW;
        wsk_log(c->ctx->loop, WSK_LOG_INFO, "%s: backpressure limit reached, dropping sends",
                wsk_addr_string(c->io.fd, addr, sizeof addr));
    }
    return 0;
}

/* Queues one frame.  force: control frames we must send (pong, close) skip the backpressure
 * limit. */
long wsk_send_frame(struct wsk_ws *c, unsigned opcode, unsigned rsv, const void *data, size_t len,
                    int force)
{
    if (c->state != WSK_ST_OPEN && !(force && c->state == WSK_ST_CLOSING)) return 0;
    int client = c->ctx->role == WSK_ROLE_CLIENT;
    size_t hl = wsk_frame_header_size(len, client), total = hl + len;

    if (!force && !wsk_send_admit(c, total)) return 0;
    uint8_t *dst = wsk_queue_reserve(c, total);
    if (!dst) return 0;
    uint8_t key[4];
    if (client) mask_key(c->ctx->loop, key);
    wsk_frame_header(dst, 1, rsv, opcode, len, client ? key : NULL);
    if (len) memcpy(dst + hl, data, len);
    if (client) wsk_mask(dst + hl, len, key, 0);
    wsk_queue_commit(c, total);
    wsk_loop_schedule(c->ctx->loop, c);
    if (c->flags & WSK_F_WANT_WRITE) {
        c->flags |= WSK_F_BACKPRESSURE;
        return -1;
    }
    return (long)total;
}

long wsk_send(wsk_ws *ws, const void *data, size_t len, wsk_opcode op, int compress)
{
    if (op != WSK_OP_TEXT && op != WSK_OP_BINARY) return 0;
    if (compress && (ws->flags & WSK_F_PMD) && len >= ws->ctx->lim.compress_threshold)
        return wsk_pmd_conn_send(ws, data, len, op);
    return wsk_send_frame(ws, op, 0, data, len, 0);
}

long wsk_ping(wsk_ws *ws, const void *data, size_t len)
{
    return len > 125 ? 0 : wsk_send_frame(ws, WSK_OP_PING, 0, data, len, 0);
}

long wsk_pong(wsk_ws *ws, const void *data, size_t len)
{
    return len > 125 ? 0 : wsk_send_frame(ws, WSK_OP_PONG, 0, data, len, 0);
}

void wsk_send_close(struct wsk_ws *c, unsigned code, const char *reason, size_t len)
{
    if (c->flags & WSK_F_CLOSE_SENT) return;
    uint8_t payload[125];
    size_t n = wsk_close_build(payload, code, reason, len);
    c->flags |= WSK_F_CLOSE_SENT;
    wsk_send_frame(c, WSK_OP_CLOSE, 0, payload, n, 1);
    if (c->state == WSK_ST_OPEN) {
        c->state = WSK_ST_CLOSING;
        c->stamp = (uint32_t)ev_now(c->ctx->loop->ev);
    }
}

void wsk_close(wsk_ws *ws, unsigned code, const char *reason, size_t len)
{
    if (ws->state != WSK_ST_OPEN) return;
    if (code && !wsk_close_code_valid(code)) code = WSK_CLOSE_NORMAL;
    wsk_send_close(ws, code, reason, reason ? len : 0);
}

void wsk_terminate(wsk_ws *ws)
{
    wsk_conn_end(ws, WSK_CLOSE_ABNORMAL, "terminated");
}

void wsk_cork(wsk_ws *ws, void (*fn)(wsk_ws *ws, void *arg), void *arg)
{
    fn(ws, arg);
    if (ws->state != WSK_ST_DEAD) wsk_flush(ws);
}
