/* wsk_conn_hooks (lib/internal.h): a program that opens and handshakes sockets itself and uses
 * the library's data path for the rest, as wsbench does.  Over a socketpair: every read goes to
 * the receive hook; the fill hook runs before each write and may queue bytes, or end the socket;
 * a failure before open reaches the failed hook; the gone hook runs once per socket; the ctx
 * belongs to the program and outlives its sockets.  With a direct hook, the rest of a large
 * frame is read into the message buffer by the library, direct called before, receive after
 * with the bytes behind the frame. */
#include "test.h"

#include "pair.h"

static wsk_ctx ctx;

static struct {
    size_t received;  /* bytes the receive hook saw in the HTTP phase */
    size_t open_read; /* and in the open phase */
    unsigned directs; /* calls of the direct hook */
    size_t big_len;   /* the last message longer than msg */
    uint32_t sum;     /* and a sum of its bytes */
    unsigned fills, failed, gone, messages;
    int fail_err;
    const char *queue_in_fill; /* bytes the next fill queues */
    int end_in_fill;           /* the next fill ends the socket */
    char msg[16];
    size_t msg_len;
} seen;

static void on_receive(struct wsk_ws *c, uint8_t *p, size_t n)
{
    if (c->state == WSK_ST_HTTP) {
        seen.received += n;
        return;
    }
    seen.open_read += n;
    wsk_msg_receive(c, p, n);
}

static void on_direct(struct wsk_ws *c)
{
    (void)c;
    seen.directs++;
}

static void on_fill(struct wsk_ws *c)
{
    seen.fills++;
    if (seen.queue_in_fill) wsk_queue_write(c, seen.queue_in_fill, strlen(seen.queue_in_fill));
    seen.queue_in_fill = NULL;
    if (seen.end_in_fill) wsk_conn_end(c, WSK_CLOSE_ABNORMAL, NULL);
    seen.end_in_fill = 0;
}

static void on_failed(struct wsk_ws *c, int err, const char *msg)
{
    (void)c;
    (void)msg;
    seen.failed++;
    seen.fail_err = err;
}

static void on_gone(struct wsk_ws *c)
{
    (void)c;
    seen.gone++;
}

static void on_message(wsk_ws *ws, const void *data, size_t len, wsk_opcode op)
{
    (void)ws;
    (void)op;
    seen.messages++;
    if (len > sizeof seen.msg) {
        seen.big_len = len;
        seen.sum = 0;
        for (size_t i = 0; i < len; i++) seen.sum = seen.sum * 31 + ((const uint8_t *)data)[i];
        return;
    }
    seen.msg_len = len;
    memcpy(seen.msg, data, seen.msg_len);
}

static const wsk_conn_hooks hooks = {
    .receive = on_receive, .fill = on_fill, .failed = on_failed, .gone = on_gone};
static const wsk_conn_hooks hooks_direct = {.receive = on_receive,
                                            .direct = on_direct,
                                            .fill = on_fill,
                                            .failed = on_failed,
                                            .gone = on_gone};

/* A server's 100000-byte frame, then "xyz", to an open client socket of ctx with hooks h: the
 * first 100 bytes read on their own, then the rest.  1 when both messages arrived whole. */
static int large_in(const wsk_conn_hooks *h)
{
    enum { LEN = 100000 };
    static uint8_t f[LEN + 32];
    f[0] = 0x82;
    f[1] = 127;
    for (int i = 0; i < 8; i++) f[2 + i] = (uint8_t)((uint64_t)LEN >> (56 - 8 * i));
    uint32_t sum = 0;
    for (size_t i = 0; i < LEN; i++) f[10 + i] = (uint8_t)(i * 13);
    for (size_t i = 0; i < LEN; i++) sum = sum * 31 + f[10 + i];
    memcpy(f + 10 + LEN, "\x82\x03xyz", 5);
    ctx.hooks = h;
    int peer;
    struct wsk_ws *c = pair_conn(&ctx, &peer, 0);
    wsk_conn_open(c, NULL, 0);
    seen.messages = seen.directs = 0;
    seen.open_read = seen.big_len = 0;
    pair_put(peer, f, 100);
    SPIN_UNTIL(pair_unread(c) == 0, pair_turn());
    pair_put(peer, f + 100, LEN - 90 + 5);
    SPIN_UNTIL(seen.messages == 2, pair_turn());
    int ok = seen.messages == 2 && seen.big_len == LEN && seen.sum == sum && seen.msg_len == 3 &&
             !memcmp(seen.msg, "xyz", 3);
    close(peer);
    SPIN_UNTIL(ctx.nconns == 0, pair_turn());
    ctx.hooks = &hooks;
    return ok;
}

int main(void)
{
    pair_setup();
    pair_ctx(&ctx, NULL);
    ctx.role = WSK_ROLE_CLIENT;
    ctx.hooks = &hooks;
    ctx.h.message = on_message;

    int peer;
    struct wsk_ws *c = pair_conn(&ctx, &peer, 0);
    static const char head[] = "HTTP/1.1 101 Switching Protocols\r\n\r\n";
    if (write(peer, head, sizeof head - 1) < 0) abort();
    SPIN_UNTIL(seen.received == sizeof head - 1, pair_turn());
    CHECK(seen.received == sizeof head - 1, "the receive hook gets the bytes of the HTTP phase");

    uint8_t buf[64];
    size_t n = 0;
    seen.queue_in_fill = "hello";
    wsk_loop_schedule(pair_loop, c);
    pair_read(peer, buf, sizeof buf, &n, 5);
    CHECK(seen.fills >= 1 && n == 5 && !memcmp(buf, "hello", 5),
          "the fill hook runs before the write, and what it queues is written");

    wsk_conn_open(c, NULL, 0);
    if (write(peer,
              "\x82\x03"
              "abc",
              5) < 0)
        abort();
    SPIN_UNTIL(seen.messages == 1, pair_turn());
    CHECK(seen.messages == 1 && seen.msg_len == 3 && !memcmp(seen.msg, "abc", 3),
          "an open socket's frames reach the message handler through wsk_msg_receive");

    /* The kernel was full (EV_WRITE armed) when the fill hook ends the socket: the flush must
     * not touch the watcher of the closed fd again. */
    c->flags |= WSK_F_WANT_WRITE;
    wsk_conn_io_events(c, EV_READ | EV_WRITE);
    seen.end_in_fill = 1;
    int r = wsk_flush(c);
    CHECK(r < 0 && c->state == WSK_ST_DEAD && !ev_is_active(&c->io),
          "a fill that ends the socket: the flush stops, the watcher stays stopped");
    CHECK(seen.gone == 1, "the gone hook ran once");
    pair_turn(); /* frees c */
    close(peer);

    /* The ctx is the program's: freeing its last socket left it alone. */
    c = pair_conn(&ctx, &peer, 0);
    CHECK(c && ctx.nconns == 1, "a new socket on the same ctx after the last one was freed");
    close(peer);
    SPIN_UNTIL(seen.gone == 2, pair_turn());
    CHECK(seen.failed == 1 && seen.fail_err == WSK_ERR_HANDSHAKE && seen.gone == 2,
          "the peer closing during the handshake: the failed hook, then the gone hook");
    pair_turn();
    CHECK(seen.gone == 2 && ctx.nconns == 0, "each socket is gone once");

    /* The sweep's handshake deadline goes through the same failure path (wsk_conn_failed). */
    ctx.lim.handshake_timeout = 1;
    c = pair_conn(&ctx, &peer, 0);
    c->stamp -= 2;
    wsk_ctx_sweep(&ctx);
    CHECK(seen.failed == 2 && seen.fail_err == WSK_ERR_TIMEOUT && seen.gone == 3,
          "a handshake past its deadline: the failed hook (timeout), then the gone hook");
    pair_turn();
    close(peer);
    CHECK(ctx.nconns == 0, "the timed-out socket is freed");

    /* A server-side hooked socket's large send is queued in the loop's cached blocks (no block
     * of the message's size), and the peer gets it whole. */
    enum { LEN = 100000 };
    static uint8_t payload[LEN], out[LEN + 16];
    for (size_t i = 0; i < LEN; i++) payload[i] = (uint8_t)(i * 7);
    ctx.role = WSK_ROLE_SERVER;
    c = pair_conn(&ctx, &peer, 0);
    wsk_conn_open(c, NULL, 0);
    long sr = wsk_send(c, payload, LEN, WSK_OP_BINARY, 0);
    int cached = 1, segs = 0;
    for (wsk_seg *q = c->q.head; q; q = q->next, segs++) cached &= q->blk->cap == WSK_BLOCK_CACHED;
    CHECK(sr == LEN && cached && segs > 1,
          "a hooked server socket's 100000-byte send: %d cached blocks", segs);
    n = 0;
    pair_read(peer, out, sizeof out, &n, 10 + LEN);
    CHECK(n == 10 + LEN && out[0] == 0x82 && out[1] == 127 && !memcmp(out + 10, payload, LEN),
          "the peer reads the whole frame (%zu bytes)", n);
    close(peer);
    SPIN_UNTIL(ctx.nconns == 0, pair_turn());

    ctx.role = WSK_ROLE_CLIENT;
    int ok = large_in(&hooks);
    CHECK(ok && seen.directs == 0 && seen.open_read == 100000 + 15,
          "without a direct hook, every byte of a large frame goes through receive (%zu)",
          seen.open_read);
    ok = large_in(&hooks_direct);
    CHECK(ok && seen.directs >= 1 && seen.open_read < 1000,
          "with one, the rest of the frame is read into the message buffer by the library "
          "(direct %u times), receive gets %zu bytes (the first read's and those behind), both "
          "messages whole",
          seen.directs, seen.open_read);

    wsk_loop_free(pair_loop);
    return TEST_DONE();
}
