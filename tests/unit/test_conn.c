/* One connection's life (conn.c) on a socketpair: the open handler before the bytes that came
 * with the handshake, frames read across turns, the closing handshake in both directions with
 * the close handler run exactly once, the server closing TCP first, handlers that close or
 * terminate the socket they are given, failing a connection (in the HTTP phase and when open),
 * the deadlines of wsk_ctx_sweep: handshake, idle ping, idle close and close timeout, and
 * compressed messages inflated in the loop's buffer, with no buffer left on the socket. */
#include "test.h"
#include "pair.h"
#include "pmd_conn.h"

#include <zlib.h>

static char events[512]; /* what the handlers saw, in order */
static int terminate_on_open, send_on_close;
static long send_in_close = 1;

#define note(...) test_append(events, sizeof events, __VA_ARGS__)

static void on_open(wsk_ws *ws)
{
    note("open;");
    if (terminate_on_open) wsk_terminate(ws);
}

static int msg_in_socket; /* the last message was handed out from the socket's own buffer */

static void on_message(wsk_ws *ws, const void *data, size_t len, wsk_opcode op)
{
    msg_in_socket = ws->cold && ws->cold->msg.p && data == ws->cold->msg.p;
    note("msg %d %.*s;", (int)op, (int)len, (const char *)data);
}

static void on_close(wsk_ws *ws, unsigned code, const char *reason, size_t len)
{
    note("close %u %.*s;", code, (int)len, reason);
    if (send_on_close) {
        send_in_close = wsk_send(ws, "late", 4, WSK_OP_TEXT, 0);
        wsk_close(ws, 1000, NULL, 0);
        wsk_terminate(ws);
    }
}

static void on_error(wsk_ws *ws, int err, const char *msg)
{
    (void)ws;
    note("error %d %s;", err, msg);
}

static void reset(void)
{
    events[0] = 0;
    terminate_on_open = send_on_close = 0;
}

static void open_and_read(wsk_ctx *ctx)
{
    int peer;
    struct wsk_ws *c = pair_conn(ctx, &peer, 0);
    CHECK(ctx->nconns == 1 && ctx->conns == c && c->state == WSK_ST_HTTP && !c->cold && !c->q.head,
          "a new connection is listed, in the HTTP phase, with no cold state and no queue");

    /* Frames that came in the same read as the request head. */
    uint8_t rest[64];
    size_t n = pair_frame(rest, 0x81, "hi", 2);
    reset();
    wsk_conn_cold(c);
    wsk_conn_open(c, rest, n);
    CHECK(!strcmp(events, "open;msg 1 hi;") && c->state == WSK_ST_OPEN && ctx->nopen == 1,
          "open runs first, then the frames that came with the handshake (%s)", events);
    CHECK(!c->cold, "an open connection with nothing pending has no cold state");

    /* A frame split across two reads is one message. */
    reset();
    uint8_t f[64];
    n = pair_frame(f, 0x82, "split", 5);
    pair_put(peer, f, 4);
    SPIN_UNTIL(pair_unread(c) == 0, pair_turn());
    CHECK(!events[0] && pair_unread(c) == 0,
          "the first 4 bytes of a frame are read: no message yet");
    pair_put(peer, f + 4, n - 4);
    SPIN_UNTIL(events[0], pair_turn());
    CHECK(!strcmp(events, "msg 2 split;"), "a frame split across reads is one message (%s)",
          events);

    /* The peer closes: we answer, the close handler runs once, and the server closes TCP
     * first (RFC 6455 7.1.1). */
    reset();
    uint8_t close_1000[2] = {0x03, 0xe8};
    n = pair_frame(f, 0x88, close_1000, 2);
    pair_put(peer, f, n);
    uint8_t got[64];
    size_t have = 0;
    int eof = pair_read(peer, got, sizeof got, &have, sizeof got);
    CHECK(!strcmp(events, "close 1000 ;") && have == 4 && got[0] == 0x88 && got[2] == 0x03 &&
              got[3] == 0xe8 && eof,
          "a peer's close 1000: answered, the close handler once, then our EOF (%s)", events);
    CHECK(ctx->nopen == 0, "the connection no longer counts as open");
    close(peer);
    SPIN_UNTIL(ctx->nconns == 0, pair_turn());
    CHECK(ctx->nconns == 0 && !ctx->conns, "and leaves the list");
}

static void peer_vanishes(wsk_ctx *ctx)
{
    int peer;
    struct wsk_ws *c = pair_conn(ctx, &peer, 0);
    wsk_conn_open(c, NULL, 0);
    reset();
    close(peer);
    SPIN_UNTIL(ctx->nconns == 0, pair_turn());
    CHECK(!strcmp(events, "close 1006 connection closed without a close frame;") &&
              ctx->nconns == 0 && ctx->nopen == 0,
          "EOF without a close frame: close handler with 1006 (%s)", events);
}

static void ended_twice(wsk_ctx *ctx)
{
    int peer;
    struct wsk_ws *c = pair_conn(ctx, &peer, 0);
    wsk_conn_open(c, NULL, 0);
    reset();
    wsk_conn_end(c, WSK_CLOSE_ABNORMAL, "first");
    wsk_conn_end(c, WSK_CLOSE_ABNORMAL, "second");
    CHECK(!strcmp(events, "close 1006 first;") && ctx->nconns == 0 && c->state == WSK_ST_DEAD,
          "ending twice runs the close handler once and unlists once (%s)", events);
    char b;
    CHECK(read(peer, &b, 1) == 0, "the fd is closed at once");
    pair_turn(); /* frees c */
    close(peer);
}

static void handlers_that_end(wsk_ctx *ctx)
{
    int peer;
    struct wsk_ws *c = pair_conn(ctx, &peer, 0);
    uint8_t rest[64];
    size_t n = pair_frame(rest, 0x81, "lost", 4);
    reset();
    terminate_on_open = 1;
    wsk_conn_open(c, rest, n);
    CHECK(!strcmp(events, "open;close 1006 terminated;") && c->state == WSK_ST_DEAD &&
              ctx->nconns == 0,
          "an open handler that terminates: no message after it, close once (%s)", events);
    pair_turn();
    close(peer);

    c = pair_conn(ctx, &peer, 0);
    reset();
    wsk_conn_open(c, NULL, 0);
    events[0] = 0;
    send_on_close = 1;
    uint8_t f[64];
    uint8_t close_4000[2] = {0x0f, 0xa0};
    n = pair_frame(f, 0x88, close_4000, 2);
    pair_put(peer, f, n);
    SPIN_UNTIL(ctx->nconns == 0, pair_turn());
    CHECK(!strcmp(events, "close 4000 ;") && send_in_close <= 0 && ctx->nconns == 0,
          "a close handler that sends, closes and terminates: the send is dropped, close runs "
          "once (%s)",
          events);
    close(peer);
}

static void failing(wsk_ctx *ctx)
{
    int peer;
    struct wsk_ws *c = pair_conn(ctx, &peer, 0);
    reset();
    wsk_conn_fail(c, WSK_ERR_HTTP, 400, "bad request head");
    uint8_t got[128];
    size_t have = 0;
    int eof = pair_read(peer, got, sizeof got, &have, sizeof got);
    CHECK(eof && have == 0 && !events[0],
          "failing in the HTTP phase: no handler, no frame, the connection ends (%s)", events);
    close(peer);
    SPIN_UNTIL(ctx->nconns == 0, pair_turn());

    c = pair_conn(ctx, &peer, 0);
    wsk_conn_open(c, NULL, 0);
    reset();
    wsk_conn_fail(c, WSK_ERR_PROTOCOL, WSK_CLOSE_PROTOCOL, "reserved bits set");
    char want[128];
    snprintf(want, sizeof want, "error %d reserved bits set;close 1002 reserved bits set;",
             WSK_ERR_PROTOCOL);
    CHECK(!strcmp(events, want),
          "failing an open connection: error handler, then close with the code (%s)", events);
    have = 0;
    eof = pair_read(peer, got, sizeof got, &have, sizeof got);
    CHECK(eof && have == 4 + 17 && got[0] == 0x88 && got[2] == 0x03 && got[3] == 0xea &&
              !memcmp(got + 4, "reserved bits set", 17),
          "the peer gets close 1002 with the reason, then EOF (%zu bytes)", have);
    size_t before = strlen(events);
    wsk_conn_fail(c, WSK_ERR_PROTOCOL, WSK_CLOSE_PROTOCOL, "again");
    CHECK(strlen(events) == before, "failing it again does nothing");
    close(peer);
    SPIN_UNTIL(ctx->nconns == 0, pair_turn());
    CHECK(ctx->nconns == 0, "it ends once the peer closes too");
}

/* Moves c's last activity `secs` seconds into the past and runs the deadlines. */
static void age(wsk_ctx *ctx, struct wsk_ws *c, unsigned secs)
{
    ev_now_update(pair_ev);
    c->stamp = (uint32_t)ev_now(pair_ev) - secs;
    wsk_ctx_sweep(ctx);
    pair_turn();
}

static void deadlines(wsk_ctx *ctx)
{
    ctx->lim.handshake_timeout = 10;
    ctx->lim.idle_timeout = 10;
    ctx->lim.send_pings = 1;
    ctx->lim.close_timeout = 4;
    int peer;
    struct wsk_ws *c = pair_conn(ctx, &peer, 0);
    age(ctx, c, 9);
    CHECK(ctx->nconns == 1, "a request head 9 s late is still waited for");
    age(ctx, c, 10);
    CHECK(ctx->nconns == 0, "at 10 s the handshake deadline ends the connection");
    close(peer);

    c = pair_conn(ctx, &peer, 0);
    wsk_conn_open(c, NULL, 0);
    reset();
    age(ctx, c, 4);
    uint8_t got[64], none;
    size_t have = 0;
    CHECK(read(peer, &none, 1) < 0 && !(c->flags & WSK_F_PINGED), "idle 4 s of 10: nothing");
    age(ctx, c, 5);
    pair_read(peer, got, sizeof got, &have, 2);
    CHECK(have == 2 && got[0] == 0x89 && got[1] == 0 && (c->flags & WSK_F_PINGED),
          "idle at half the idle timeout: one ping");
    age(ctx, c, 6);
    have = 0;
    CHECK(read(peer, &none, 1) < 0, "one ping, not one per sweep");
    age(ctx, c, 10);
    int eof = pair_read(peer, got, sizeof got, &have, sizeof got);
    CHECK(!strcmp(events, "close 1006 idle timeout;") && have >= 4 && got[0] == 0x88 &&
              got[2] == 0x03 && got[3] == 0xe9 && eof,
          "idle for the whole timeout: close 1001 to the peer, 1006 to the handler (%s)", events);
    close(peer);
    SPIN_UNTIL(ctx->nconns == 0, pair_turn());

    c = pair_conn(ctx, &peer, 0);
    wsk_conn_open(c, NULL, 0);
    wsk_close(c, 1000, NULL, 0);
    pair_turn();
    age(ctx, c, 3);
    CHECK(ctx->nconns == 1 && c->state == WSK_ST_CLOSING,
          "a close answered within 4 s is waited for");
    reset();
    age(ctx, c, 4);
    CHECK(ctx->nconns == 0 && !strcmp(events, "close 1006 close timed out;"),
          "unanswered for close_timeout: the connection ends (%s)", events);
    close(peer);
}

/* Compressed messages, with a shared (no context takeover) and a dedicated inflater: each
 * inflates into the loop's buffer and reaches the handler, and the socket keeps no message
 * buffer after it (no allocation per message). */
static void compressed(wsk_ctx *ctx, int mode, const char *offer)
{
    int peer;
    ctx->lim.compress = ctx->lim.decompress = mode;
    struct wsk_ws *c = pair_conn(ctx, &peer, 0);
    wsk_http_request req = {.nheaders = 1};
    req.headers[0] = (wsk_http_header){"Sec-WebSocket-Extensions", 24, offer, strlen(offer)};
    char ext[WSK_PMD_HEADER_MAX];
    CHECK(wsk_pmd_conn_negotiate(c, &req, ext, sizeof ext) == 1, "%s: negotiated (%s)", offer, ext);
    wsk_conn_open(c, NULL, 0);
    z_stream zs = {0};
    deflateInit2(&zs, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
    for (int k = 0; k < 3; k++) {
        /* The same text each time: with context takeover the later ones refer to the first. */
        uint8_t z[100], f[128];
        zs.next_in = (Bytef *)"hello hello hello";
        zs.avail_in = 17;
        zs.next_out = z;
        zs.avail_out = sizeof z;
        deflate(&zs, Z_SYNC_FLUSH);
        if (strstr(offer, "client_no_context_takeover")) deflateReset(&zs);
        size_t n = pair_frame(f, 0xC1, z, sizeof z - zs.avail_out - 4);
        reset();
        pair_put(peer, f, n);
        SPIN_UNTIL(events[0], pair_turn());
        CHECK(!strcmp(events, "msg 1 hello hello hello;") && !msg_in_socket &&
                  (!c->cold || !c->cold->msg.p),
              "%s: message %d inflated in the loop's buffer, none on the socket (%s)", offer, k,
              events);
    }
    deflateEnd(&zs);
    close(peer);
    SPIN_UNTIL(ctx->nconns == 0, pair_turn());
    ctx->lim.compress = ctx->lim.decompress = WSK_COMPRESS_DISABLE;
}

int main(void)
{
    pair_setup();
    wsk_handlers h = {.open = on_open, .message = on_message, .close = on_close, .error = on_error};
    wsk_ctx ctx;
    pair_ctx(&ctx, &h);
    open_and_read(&ctx);
    peer_vanishes(&ctx);
    ended_twice(&ctx);
    handlers_that_end(&ctx);
    failing(&ctx);
    deadlines(&ctx);
    compressed(&ctx, WSK_COMPRESS_SHARED, "permessage-deflate; client_no_context_takeover");
    compressed(&ctx, WSK_COMPRESS_DEDICATED, "permessage-deflate");
    pair_turn();
    wsk_loop_free(pair_loop);
    return TEST_DONE();
}
