/* Fuzz target: the whole server receive path.  The input is what a client sends, delivered in
 * pieces over a socketpair to a connection of a real wsk_server on a real libev loop: request
 * head, handshake and extension negotiation, plain HTTP, frames, unmasking, UTF-8, close
 * handling, permessage-deflate, handlers that echo, publish, close or terminate mid-read,
 * backpressure, and the end of the connection at EOF.  What the server writes back is checked:
 * HTTP responses, then (after a 101) well-formed unmasked server frames with valid close codes
 * and nothing after the close frame.  Every connection must be gone once the client's EOF has
 * been read.
 *
 * Input byte 0 picks the server (one per setting, created on first use):
 *   bits 0-1  compression: off, shared, dedicated, 4KB
 *   bit  2    max_payload 1000 (else 70000)
 *   bit  3    backpressure_limit 2048 with close_on_backpressure_limit (else 1 MiB, drop)
 *   bit  4    max_header 256 (else 8 KiB)
 * Input byte 1 picks the handlers' behaviour and the read sizes:
 *   bits 0-2  piece sizes: all at once, 1, 2, 3, 7 or 64 bytes, pseudo-random 1-16 or 1-300
 *   bit  3    the upgrade handler refuses with 403
 *   bit  4    messages are also published to topic "t" (each socket subscribes on open)
 *   bit  5    a message starting with 'c' makes the handler close (4000), 'k' terminate
 *   bit  6    the client stops reading (the server's replies pile up in the socketpair)
 * The remaining bytes are the stream. */
#include "internal.h"
#include "msg_control.h"
#include "parse_frame.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ENSURE(c)                                                                                  \
    do {                                                                                           \
        if (!(c)) abort();                                                                         \
    } while (0)

#define OUT_MAX (1u << 20) /* server output kept for checking; the rest is only counted */

static wsk_loop *loop;
static wsk_server *servers[32];
static unsigned behaviour;

static struct {
    uint8_t buf[OUT_MAX];
    size_t len;
    int truncated;
} out;

/* ----- handlers ------------------------------------------------------------------------------ */

static int on_upgrade(wsk_server *srv, const wsk_request *req, wsk_response *res)
{
    (void)srv;
    if (behaviour & 8) return 403;
    if (wsk_request_offers_protocol(req, "chat")) wsk_response_set_protocol(res, "chat");
    wsk_response_add_header(res, "X-Fuzz", "1");
    return 0;
}

static void on_open(wsk_ws *ws)
{
    if (behaviour & 16) wsk_subscribe(ws, "t", 1);
}

static void on_message(wsk_ws *ws, const void *data, size_t len, wsk_opcode op)
{
    const uint8_t *p = data;
    if ((behaviour & 32) && len && p[0] == 'k') {
        wsk_terminate(ws);
        return;
    }
    if ((behaviour & 32) && len && p[0] == 'c') {
        wsk_close(ws, 4000, "bye", 3);
        return;
    }
    wsk_send(ws, data, len, op, 1);
    if (behaviour & 16) wsk_server_publish(wsk_ws_server(ws), "t", 1, data, len, op, 1);
}

static void on_request(wsk_server *srv, const wsk_request *req, wsk_response *res)
{
    size_t n;
    const void *body = wsk_request_body(req, &n);
    (void)srv;
    wsk_response_set_status(res, 200);
    wsk_response_append_body(res, body ? body : "", n);
}

static void on_ping(wsk_ws *ws, const void *data, size_t len)
{
    if (len && ((const uint8_t *)data)[0] == 'p') wsk_ping(ws, data, len);
}

static void quiet_log(void *arg, int level, const char *msg)
{
    (void)arg;
    (void)level;
    (void)msg;
}

static wsk_server *server_for(unsigned cfg)
{
    cfg &= 31;
    if (servers[cfg]) return servers[cfg];
    static const int modes[] = {WSK_COMPRESS_DISABLE, WSK_COMPRESS_SHARED, WSK_COMPRESS_DEDICATED,
                                WSK_COMPRESS_4KB};
    wsk_server_opts o;
    wsk_server_opts_init(&o);
    o.compress = o.decompress = modes[cfg & 3];
    o.max_payload = (cfg & 4) ? 1000 : 70000;
    if (cfg & 8) {
        o.backpressure_limit = 2048;
        o.close_on_backpressure_limit = 1;
    }
    o.max_header = (cfg & 16) ? 256 : 8192;
    o.max_body = 4096;
    wsk_handlers h = {.upgrade = on_upgrade,
                      .open = on_open,
                      .message = on_message,
                      .request = on_request,
                      .ping = on_ping};
    servers[cfg] = wsk_server_new(loop, &o, &h, NULL);
    ENSURE(servers[cfg]);
    return servers[cfg];
}

/* ----- the client's side of the socketpair ---------------------------------------------------- */

static void drain(int fd)
{
    uint8_t tmp[65536];
    for (;;) {
        ssize_t n = recv(fd, tmp, sizeof tmp, MSG_DONTWAIT);
        if (n <= 0) return;
        size_t room = OUT_MAX - out.len, k = (size_t)n < room ? (size_t)n : room;
        memcpy(out.buf + out.len, tmp, k);
        out.len += k;
        if (k < (size_t)n) out.truncated = 1;
    }
}

/* Two turns of the loop: the first reads what was written, the second's prepare watcher
 * flushes the replies (and reads what a handler's close left to read). */
static void turn(int fd, int reading)
{
    ev_run(wsk_loop_ev(loop), EVRUN_NOWAIT);
    ev_run(wsk_loop_ev(loop), EVRUN_NOWAIT);
    if (reading) drain(fd);
}

/* The next piece size.  After MAX_PIECES pieces the rest goes at once: split points matter
 * where headers are, and a byte at a time through 64 KiB would cost a million system calls. */
#define MAX_PIECES 400
static size_t piece(unsigned mode, uint32_t *rng, unsigned n)
{
    static const size_t fixed[] = {SIZE_MAX, 1, 2, 3, 7, 64};
    if (n >= MAX_PIECES) return SIZE_MAX;
    if (mode < 6) return fixed[mode];
    *rng = *rng * 1103515245u + 12345u;
    return 1 + (*rng >> 16) % (mode == 6 ? 16 : 300);
}

/* ----- what the server wrote ----------------------------------------------------------------- */

/* The length of an HTTP response head at p (through the empty line), 0 when incomplete. */
static size_t head_len(const uint8_t *p, size_t n)
{
    for (size_t i = 3; i < n; i++)
        if (p[i] == '\n' && p[i - 1] == '\r' && p[i - 2] == '\n' && p[i - 3] == '\r') return i + 1;
    return 0;
}

static void check_frames(const uint8_t *p, size_t n, unsigned rsv)
{
    wsk_frame_dec d = {0};
    int closed = 0;
    while (n) {
        wsk_frame f;
        int r = wsk_frame_decode(&d, p, n, WSK_DEC_FORBID_MASK, rsv, UINT64_MAX, &f);
        ENSURE(r >= 0);
        if (r == 0) return; /* a frame cut by the end of the kept output */
        p += r;
        n -= (size_t)r;
        ENSURE(!closed); /* nothing follows a close frame */
        if (f.len > n) return;
        if (f.opcode == WSK_OP_CLOSE) {
            unsigned code;
            const uint8_t *reason;
            size_t rlen;
            ENSURE(wsk_close_parse(p, (size_t)f.len, &code, &reason, &rlen) == 0);
            closed = 1;
        }
        p += f.len;
        n -= (size_t)f.len;
    }
}

static void check_output(int pmd_on)
{
    const uint8_t *p = out.buf;
    size_t n = out.len;
    if (!n) return;
    ENSURE(n >= 12 && !memcmp(p, "HTTP/1.1 ", 9));
    if (memcmp(p + 9, "101", 3)) return; /* refused, or plain HTTP responses */
    size_t h = head_len(p, n);
    if (!h) {
        ENSURE(out.truncated);
        return;
    }
    check_frames(p + h, n - h, pmd_on ? WSK_RSV1 : 0);
}

/* ----- one input ------------------------------------------------------------------------------ */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    if (!loop) {
        loop = wsk_loop_new(NULL);
        ENSURE(loop);
        wsk_loop_set_log(loop, WSK_LOG_DEBUG, quiet_log, NULL);
    }
    unsigned cfg = data[0];
    wsk_server *srv = server_for(cfg);
    wsk_ctx *ctx = wsk_server_ctx(srv);
    behaviour = data[1];
    unsigned mode = behaviour & 7;
    int reading = !(behaviour & 64);
    uint32_t rng = (uint32_t)size;
    data += 2;
    size -= 2;
    out.len = 0;
    out.truncated = 0;

    int sv[2];
    ENSURE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    ENSURE(wsk_conn_new(ctx, sv[0]));

    /* Each piece is written, then the loop runs until the server has read it: the server reads
     * the stream with exactly these splits. */
    size_t off = 0;
    for (unsigned n = 0; off < size && ctx->nconns; n++) {
        size_t k = piece(mode, &rng, n);
        if (k > size - off) k = size - off;
        ssize_t w = send(sv[1], data + off, k, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno != EAGAIN) break; /* the server closed its end */
        if (w > 0) off += (size_t)w;
        turn(sv[1], reading);
        if (w < 0 && !reading) break; /* both directions full: the client gives up */
    }

    /* The client's EOF: every connection must end once the server has read it. */
    shutdown(sv[1], SHUT_WR);
    for (int i = 0; i < 256 && ctx->nconns; i++) turn(sv[1], 1);
    ENSURE(ctx->nconns == 0);
    turn(sv[1], 1);
    close(sv[1]);
    check_output(cfg & 3);
    return 0;
}
