/* Large messages on a socketpair: a frame longer than WSK_DIRECT_MIN split at every header byte
 * and at payload boundaries around the direct-read threshold is one message, whose rest was read
 * straight into the buffer of the announced length (and the bytes after it into the shared
 * buffer); that buffer stays for the next message until two sweeps find it unused; text split
 * inside UTF-8 sequences still validates, and fails at a bad byte or at ASCII after a lead byte; a
 * large send with nothing queued is written at once, a partial write leaves only the rest queued
 * (in cached blocks) with drain to follow, and behind queued bytes it keeps its order; replies
 * under WSK_BATCH_MAX to frames that arrived in one read leave together, in order, in one write
 * (counted on a SOCK_SEQPACKET pair): held where they lie when their payload is in the loop's
 * buffer, within the backpressure limit (a pong between them writes the held ones first), and so is
 * the reply to a frame whose rest was read in place, where it lies, until its buffer takes another
 * message's bytes; the unsent rest of such a reply is queued by reference to that buffer, and the
 * next message goes to another while the queue holds it. */
#include "test.h"
#include "pair.h"

#define BIG 40000 /* > WSK_DIRECT_MIN, < 64 KiB: the 16-bit length form */

static uint8_t got[2 * BIG];
static size_t got_len;
static int got_op, messages;
/* Where the first message of a test lay, and its bytes. */
static const void *first_at;
static uint8_t first[2 * BIG];
static size_t first_len;
/* With echo set, each message goes back, and queued[i] is what the queue held after the i-th,
 * held[i] how many replies the loop held for the end of the read (send_lent.c). */
static int echo;
static size_t queued[8];
static unsigned held[8];

static void on_message(wsk_ws *ws, const void *data, size_t len, wsk_opcode op)
{
    if (echo) {
        wsk_send(ws, data, len, op, 0);
        if (messages < 8) queued[messages] = ws->q.bytes;
        if (messages < 8) held[messages] = ws->ctx->loop->lent.n;
    }
    if (!messages) first_at = data;
    if (!messages) first_len = len <= sizeof first ? len : 0;
    if (!messages) memcpy(first, data, first_len);
    messages++;
    got_op = op;
    got_len = len <= sizeof got ? len : 0;
    memcpy(got, data, got_len);
}

/* Text: "é" (2 bytes) and "€" (3 bytes) in turn, so that most splits cut a sequence. */
static void text_pattern(uint8_t *p, size_t n)
{
    static const uint8_t seq[5] = {0xC3, 0xA9, 0xE2, 0x82, 0xAC};
    for (size_t i = 0; i < n; i++) p[i] = seq[i % 5];
}

/* A masked client frame of payload[0..len) (16-bit length form under 64 KiB, else 64-bit) into
 * out; its length. */
static size_t big_frame(uint8_t *out, unsigned fin_op, const uint8_t *payload, size_t len)
{
    static const uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
    size_t hl = len < 65536 ? 4 : 10;
    out[0] = (uint8_t)fin_op;
    out[1] = 0x80 | (len < 65536 ? 126 : 127);
    for (size_t i = 2; i < hl; i++) out[i] = (uint8_t)(len >> (8 * (hl - 1 - i)));
    memcpy(out + hl, key, 4);
    for (size_t i = 0; i < len; i++) out[hl + 4 + i] = payload[i] ^ key[i & 3];
    return hl + 4 + len;
}

static struct wsk_ws *open_conn(wsk_ctx *ctx, int *peer, int sndbuf)
{
    struct wsk_ws *c = pair_conn(ctx, peer, sndbuf);
    wsk_conn_open(c, NULL, 0);
    return c;
}

static void reset(void)
{
    messages = pair_drains = pair_closes = 0;
    got_len = 0;
    pair_close_code = 0;
}

/* Sends f[0..n) in two writes split at k, the first read before the second is written; 1 when
 * the rest of the frame was to be read in place after the first part (*direct). */
static void put_split(struct wsk_ws *c, int peer, const uint8_t *f, size_t n, size_t k, int *direct)
{
    size_t cap = 0;
    pair_put(peer, f, k);
    SPIN_UNTIL(pair_unread(c) == 0, pair_turn());
    *direct = wsk_msg_direct(c, &cap) != NULL;
    pair_put(peer, f + k, n - k);
}

static void split_everywhere(wsk_ctx *ctx)
{
    static uint8_t payload[BIG], f[BIG + 64];
    for (size_t i = 0; i < BIG; i++) payload[i] = pair_pattern(i);
    size_t n = big_frame(f, 0x82, payload, BIG);
    int peer;
    struct wsk_ws *c = open_conn(ctx, &peer, 0);

    /* Every header byte, the first payload bytes, around the threshold (the rest just above
     * and just below WSK_DIRECT_MIN), a stride through the payload, and the last bytes. */
    size_t splits[200], ns = 0;
    for (size_t k = 1; k <= 24; k++) splits[ns++] = k;
    for (size_t d = 0; d < 4; d++) {
        splits[ns++] = n - WSK_DIRECT_MIN - 2 + d;
    }
    for (size_t k = 100; k < n; k += 997) splits[ns++] = k;
    for (size_t k = n - 5; k < n; k++) splits[ns++] = k;

    int ok = 1, directs = 0;
    for (size_t s = 0; s < ns; s++) {
        size_t k = splits[s];
        int direct;
        reset();
        put_split(c, peer, f, n, k, &direct);
        SPIN_UNTIL(messages, pair_turn());
        directs += direct;
        size_t rest = n - k;
        ok &= EXPECT(direct == (k >= 8 && rest >= WSK_DIRECT_MIN), "split at %zu: direct read %d",
                     k, direct);
        ok &= EXPECT(messages == 1 && got_op == WSK_OP_BINARY && got_len == BIG &&
                         !memcmp(got, payload, BIG),
                     "split at %zu: %d messages of %zu bytes", k, messages, got_len);
    }
    CHECK(ok && directs > 20,
          "a %d-byte frame split at %zu places is one message each time; %d of them read the "
          "rest in place",
          BIG, ns, directs);
    CHECK(c->cold && c->cold->msg.p && !c->cold->msg.len && c->cold->msg.cap >= BIG,
          "the message buffer stays, empty, for the next large message");
    wsk_ctx_sweep(ctx);
    CHECK(c->cold && c->cold->msg.p, "one sweep later it is still there");
    wsk_ctx_sweep(ctx);
    CHECK(!c->cold, "unused for two sweeps, it goes (with the cold state)");

    /* The frame, then a small one in the same write: the readv puts the rest of the first in
     * place and the second in the shared buffer. */
    reset();
    static uint8_t two[BIG + 128];
    memcpy(two, f, n);
    size_t m = n + pair_frame(two + n, 0x81, "after", 5);
    int direct;
    put_split(c, peer, two, m, 100, &direct);
    SPIN_UNTIL(messages == 2, pair_turn());
    CHECK(direct && messages == 2 && got_len == 5 && !memcmp(got, "after", 5),
          "the frame after a directly read one is read in the same readv (%d messages)", messages);

    /* Three writes: the direct read takes the middle part, and the rest still lands in place. */
    reset();
    pair_put(peer, f, 1000);
    SPIN_UNTIL(pair_unread(c) == 0, pair_turn());
    pair_put(peer, f + 1000, 5000);
    SPIN_UNTIL(pair_unread(c) == 0, pair_turn());
    size_t cap = 0;
    int still = wsk_msg_direct(c, &cap) != NULL && cap == n - 6000;
    pair_put(peer, f + 6000, n - 6000);
    SPIN_UNTIL(messages, pair_turn());
    CHECK(still && messages == 1 && got_len == BIG && !memcmp(got, payload, BIG),
          "a frame in three reads: the second and third land in place");

    /* Two fragments, each large: one message. */
    reset();
    static uint8_t frag[2 * BIG + 64];
    size_t k1 = big_frame(frag, 0x02, payload, BIG);
    size_t k2 = big_frame(frag + k1, 0x80, payload, BIG);
    put_split(c, peer, frag, k1 + k2, k1 + 100, &direct);
    SPIN_UNTIL(messages, pair_turn());
    CHECK(direct && messages == 1 && got_len == 2 * BIG && !memcmp(got, payload, BIG) &&
              !memcmp(got + BIG, payload, BIG),
          "two large fragments: the second read in place, one message of %zu bytes", got_len);
    close(peer);
    SPIN_UNTIL(ctx->nconns == 0, pair_turn());
}

/* A frame of BIG bytes whose rest is read in place: c then guesses the next one (its
 * msg_guess); 1 when it arrived whole and c guesses. */
static int arm_guess(struct wsk_ws *c, int peer, const uint8_t *f, size_t n)
{
    int direct;
    reset();
    put_split(c, peer, f, n, 100, &direct);
    SPIN_UNTIL(messages, pair_turn());
    return direct && messages == 1 && got_len == BIG && c->cold && c->cold->msg_guess == BIG;
}

/* By default only a message of WSK_GUESS_MIN bytes or more makes the next read guess: a BIG one,
 * read in place all the same, does not. */
static void unguessed(wsk_ctx *ctx)
{
    static uint8_t payload[BIG], f[BIG + 16];
    for (size_t i = 0; i < BIG; i++) payload[i] = pair_pattern(i);
    size_t n = big_frame(f, 0x82, payload, BIG), min = ctx->lim.guess_min;
    int peer, direct;
    struct wsk_ws *c = open_conn(ctx, &peer, 0);
    ctx->lim.guess_min = 0;
    reset();
    put_split(c, peer, f, n, 100, &direct);
    SPIN_UNTIL(messages, pair_turn());
    CHECK(direct && messages == 1 && got_len == BIG && c->cold && c->cold->msg_guess == 0,
          "a frame of %d bytes (< WSK_GUESS_MIN) read in place: the next read guesses nothing",
          BIG);
    ctx->lim.guess_min = min;
    close(peer);
    SPIN_UNTIL(ctx->nconns == 0, pair_turn());
}

/* in[0..n) in one write: 1 when it made `count` messages, the first first_len bytes long and
 * equal to p, the last equal to last[0..last_len). */
static int one_write(struct wsk_ws *c, int peer, const uint8_t *in, size_t n, int count,
                     const uint8_t *p, size_t len, const void *last, size_t last_len)
{
    (void)c;
    reset();
    pair_put(peer, in, n);
    SPIN_UNTIL(messages >= count, pair_turn());
    return messages == count && first_len == len && !memcmp(first, p, len) && got_len == last_len &&
           !memcmp(got, last, last_len);
}

/* After a message of one large frame, the next read puts a frame of the same length straight
 * into the message buffer (wsk_msg_guess): handed over from there, and what follows it read
 * into the shared buffer behind the header.  A wrong guess (a small frame, a ping, a shorter
 * frame with another behind it) leaves the bytes in the order they came and they take the
 * general path; a longer frame still lands in place; invalid UTF-8 where it landed, and a header
 * that breaks a rule, fail the connection as they would otherwise. */
static void guessed(wsk_ctx *ctx)
{
    static uint8_t payload[2 * BIG], f[2 * BIG + 256], in[2 * BIG + 256];
    for (size_t i = 0; i < 2 * BIG; i++) payload[i] = pair_pattern(i * 3);
    size_t n = big_frame(f, 0x82, payload, BIG);
    int peer;
    struct wsk_ws *c = open_conn(ctx, &peer, 0);
    CHECK(arm_guess(c, peer, f, n), "a frame read in place: the next read guesses %d bytes", BIG);

    memcpy(in, f, n);
    size_t m = n + pair_frame(in + n, 0x81, "after", 5);
    int ok = one_write(c, peer, in, m, 2, payload, BIG, "after", 5);
    CHECK(ok && first_at == c->cold->msg.p && c->cold->msg_guess == BIG,
          "guessed right: the payload is handed over in the message buffer, the frame behind "
          "it too (%d messages)",
          messages);

    ok = arm_guess(c, peer, f, n);
    m = pair_frame(in, 0x82, "small", 5);
    ok &= one_write(c, peer, in, m, 1, (const uint8_t *)"small", 5, "small", 5);
    CHECK(ok && c->cold->msg_guess == 0, "a small frame instead: one message, guessing ends");

    ok = arm_guess(c, peer, f, n);
    static const uint8_t ping[10] = {0x89, 0x84, 0, 0, 0, 0, 'p', 'i', 'n', 'g'};
    memcpy(in, ping, sizeof ping);
    memcpy(in + sizeof ping, f, n);
    ok &= one_write(c, peer, in, sizeof ping + n, 1, payload, BIG, payload, BIG);
    CHECK(ok && c->cold->msg_guess == 0, "a ping before the frame: both read in order");

    ok = arm_guess(c, peer, f, n);
    m = big_frame(in, 0x82, payload, BIG - 1000);
    m += pair_frame(in + m, 0x81, "after", 5);
    ok &= one_write(c, peer, in, m, 2, payload, BIG - 1000, "after", 5);
    CHECK(ok && c->cold->msg_guess == 0, "a shorter frame and one behind it: both whole");

    ok = arm_guess(c, peer, f, n);
    m = big_frame(in, 0x82, payload, BIG + 1000);
    ok &= one_write(c, peer, in, m, 1, payload, BIG + 1000, payload, BIG + 1000);
    CHECK(ok && first_at == c->cold->msg.p && c->cold->msg_guess == BIG + 1000,
          "a longer frame: it lands in place, the buffer grows");

    ok = arm_guess(c, peer, f, n);
    memset(payload, 'a', BIG);
    payload[BIG / 2] = 0xFF;
    m = big_frame(in, 0x81, payload, BIG);
    reset();
    pair_put(peer, in, m);
    SPIN_UNTIL(pair_closes, pair_turn());
    CHECK(ok && messages == 0 && pair_closes == 1 && pair_close_code == WSK_CLOSE_INVALID_DATA,
          "text of the guessed length with a bad byte where it landed in place: close %u",
          pair_close_code);
    close(peer);
    SPIN_UNTIL(ctx->nconns == 0, pair_turn());

    c = open_conn(ctx, &peer, 0);
    ok = arm_guess(c, peer, f, n);
    memcpy(in, f, n);
    in[0] = 0xC2; /* RSV1 without permessage-deflate */
    reset();
    pair_put(peer, in, n);
    SPIN_UNTIL(pair_closes, pair_turn());
    CHECK(ok && messages == 0 && pair_closes == 1 && pair_close_code == WSK_CLOSE_PROTOCOL,
          "a header with a reserved bit where the guess expected one: close %u", pair_close_code);
    close(peer);
    SPIN_UNTIL(ctx->nconns == 0, pair_turn());
}

static void text(wsk_ctx *ctx)
{
    static uint8_t payload[BIG], f[BIG + 64];
    text_pattern(payload, BIG);
    size_t n = big_frame(f, 0x81, payload, BIG);
    int peer;
    struct wsk_ws *c = open_conn(ctx, &peer, 0);
    int ok = 1;
    for (size_t k = 8; k < 8 + 5; k++) {
        int direct;
        reset();
        put_split(c, peer, f, n, k + 500, &direct);
        SPIN_UNTIL(messages, pair_turn());
        ok &= EXPECT(direct && messages == 1 && got_op == WSK_OP_TEXT && got_len == BIG &&
                         !memcmp(got, payload, BIG),
                     "text split at %zu", k + 500);
    }
    CHECK(ok, "large text split inside each byte of a UTF-8 sequence is read in place, whole");

    /* A bad byte in the part read in place fails the connection with 1007. */
    reset();
    payload[BIG - 100] = 0xFF;
    n = big_frame(f, 0x81, payload, BIG);
    int direct;
    put_split(c, peer, f, n, 500, &direct);
    SPIN_UNTIL(pair_closes, pair_turn());
    CHECK(direct && messages == 0 && pair_closes == 1 && pair_close_code == WSK_CLOSE_INVALID_DATA,
          "invalid UTF-8 in the part read in place: no message, close %u", pair_close_code);
    close(peer);
    SPIN_UNTIL(ctx->nconns == 0, pair_turn());

    /* A fragment ends after a lead byte and the next fragment is all ASCII: that it unmasked
     * to ASCII does not spare it the validator, whose sequence is still open (the third
     * fragment's continuation byte would otherwise close the sequence, and the message pass). */
    c = open_conn(ctx, &peer, 0);
    reset();
    memset(payload, 'a', 3000);
    payload[999] = 0xC3;
    payload[2000] = 0xA9;
    n = big_frame(f, 0x01, payload, 1000);
    n += big_frame(f + n, 0x00, payload + 1000, 1000);
    n += big_frame(f + n, 0x80, payload + 2000, 1000);
    pair_put(peer, f, n);
    SPIN_UNTIL(pair_closes, pair_turn());
    CHECK(messages == 0 && pair_closes == 1 && pair_close_code == WSK_CLOSE_INVALID_DATA,
          "a 2-byte sequence left open by a fragment, an ASCII fragment after it: no message, "
          "close %u",
          pair_close_code);
    close(peer);
    SPIN_UNTIL(ctx->nconns == 0, pair_turn());
}

/* Reads everything the peer gets until `want` bytes or 5 s. */
static size_t drain_peer(int peer, uint8_t *buf, size_t cap, size_t want)
{
    size_t have = 0;
    pair_read(peer, buf, cap, &have, want);
    return have;
}

static int check_frame(const uint8_t *p, size_t len, const uint8_t *payload)
{
    return p[0] == 0x82 && p[1] == 127 && p[8] == (uint8_t)(len >> 8) && p[9] == (uint8_t)len &&
           !memcmp(p + 10, payload, len);
}

static void sends(wsk_ctx *ctx)
{
    enum { LEN = 300000 };
    static uint8_t payload[LEN], out[2 * LEN];
    for (size_t i = 0; i < LEN; i++) payload[i] = pair_pattern(i);
    int peer;

    /* Room in the kernel: written during the call, nothing queued. */
    struct wsk_ws *c = open_conn(ctx, &peer, 0);
    int big = 1 << 20;
    setsockopt(c->io.fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    reset();
    long r = wsk_send(c, payload, 20000, WSK_OP_BINARY, 0);
    CHECK(r == 20000 && c->q.bytes == 0 && !c->q.head,
          "a 20000-byte send with room in the kernel is written at once (%ld), nothing queued", r);
    size_t have = drain_peer(peer, out, sizeof out, 4 + 20000);
    CHECK(have == 4 + 20000 && out[0] == 0x82 && out[1] == 126 && !memcmp(out + 4, payload, 20000),
          "and arrives whole");
    close(peer);
    SPIN_UNTIL(ctx->nconns == 0, pair_turn());

    /* A small kernel buffer: the write is partial, the rest waits in cached blocks. */
    c = open_conn(ctx, &peer, 4096);
    reset();
    r = wsk_send(c, payload, LEN, WSK_OP_BINARY, 0);
    int cached = 1;
    for (wsk_seg *s = c->q.head; s; s = s->next) cached &= s->blk->cap == WSK_BLOCK_CACHED;
    CHECK(r == -1 && c->q.bytes > 0 && c->q.bytes < 10 + LEN && (c->flags & WSK_F_WANT_WRITE) &&
              cached,
          "a partial write: -1, only the rest (%zu bytes) queued in cached blocks, EV_WRITE on",
          c->q.bytes);
    have = drain_peer(peer, out, sizeof out, 10 + LEN);
    SPIN_UNTIL(pair_drains, pair_turn());
    CHECK(have == 10 + LEN && check_frame(out, LEN, payload) && pair_drains == 1 && c->q.bytes == 0,
          "the peer gets the frame whole (%zu bytes), then drain once", have);

    /* Behind queued bytes: queued in order, nothing written before the end of the turn. */
    reset();
    CHECK(wsk_send(c, "tiny", 4, WSK_OP_TEXT, 0) > 0 && c->q.bytes == 6, "a small send queues");
    r = wsk_send(c, payload, LEN, WSK_OP_BINARY, 0);
    cached = 1;
    for (wsk_seg *s = c->q.head; s; s = s->next) cached &= s->blk->cap == WSK_BLOCK_CACHED;
    CHECK(r > 0 && c->q.bytes == 6 + 10 + LEN && cached,
          "a large send behind it is queued in cached blocks (%zu bytes)", c->q.bytes);
    have = drain_peer(peer, out, sizeof out, 6 + 10 + LEN);
    CHECK(have == 6 + 10 + LEN && !memcmp(out, "\x81\x04tiny", 6) &&
              check_frame(out + 6, LEN, payload),
          "both arrive, in order (%zu bytes)", have);
    close(peer);
    SPIN_UNTIL(ctx->nconns == 0, pair_turn());
}

/* The reply to a message read into the message buffer, partly written: the queue takes the
 * rest by reference to that buffer, not a copy (wsk_msg_block).  The next message, arriving
 * while the queue still holds it, goes to another buffer (a guess of its length included), and
 * both replies arrive whole and in order; once the queue is done with a buffer, the next
 * message is read into it again.  `limit`: the backpressure limit, above the reply's size (it is
 * held for the end of the read, send_lent.c) or below it (written at once, wsk_flush_direct). */
static void shared_rest(wsk_ctx *ctx, size_t limit)
{
    enum { LEN = 150000 };
    static uint8_t a[LEN], b[LEN], fa[LEN + 16], fb[LEN + 16], out[2 * LEN + 64];
    for (size_t i = 0; i < LEN; i++) a[i] = pair_pattern(i);
    for (size_t i = 0; i < LEN; i++) b[i] = pair_pattern(i + 3);
    size_t na = big_frame(fa, 0x82, a, LEN), nb = big_frame(fb, 0x82, b, LEN);
    int peer, direct;
    struct wsk_ws *c = open_conn(ctx, &peer, 4096);
    size_t old_limit = ctx->lim.backpressure_limit;
    ctx->lim.backpressure_limit = limit;
    echo = 1;
    reset();
    put_split(c, peer, fa, na, 100, &direct);
    SPIN_UNTIL(messages, pair_turn());
    const uint8_t *buf = c->cold ? c->cold->msg.p : NULL;
    int shared = 0, copied = 0;
    for (wsk_seg *s = c->q.head; s; s = s->next) {
        shared += buf && s->blk->data == buf;
        copied += s->blk->cap == WSK_BLOCK_CACHED;
    }
    CHECK(direct && messages == 1 && held[0] == (limit > LEN) && c->q.bytes > 0 && shared == 1 &&
              !copied,
          "backpressure limit %zu: a partial write of a reply from the message buffer (%s): the "
          "rest (%zu bytes) is queued by reference to it, nothing copied",
          limit, held[0] ? "held for the end of the read" : "written at once", c->q.bytes);

    put_split(c, peer, fb, nb, 100, &direct);
    SPIN_UNTIL(messages == 2, pair_turn());
    CHECK(direct && messages == 2 && c->cold && c->cold->msg.p != buf,
          "the next message, with the queue still holding the buffer, is read into another");
    /* Under the lower limit the second reply is refused (the queue holds more than the limit). */
    int replies = limit > LEN ? 2 : 1;
    size_t have = drain_peer(peer, out, sizeof out, (size_t)replies * (10 + LEN));
    CHECK(have == (size_t)replies * (10 + LEN) && check_frame(out, LEN, a) &&
              (replies == 1 || check_frame(out + 10 + LEN, LEN, b)),
          "%s (%zu bytes)",
          replies == 2 ? "both replies arrive whole, in order" : "the first reply arrives whole",
          have);
    SPIN_UNTIL(c->q.bytes == 0, pair_turn());

    /* Nothing queued now: the next message reuses the buffer, and its reply leaves from it. */
    buf = c->cold->msg.p;
    reset();
    put_split(c, peer, fa, na, 100, &direct);
    SPIN_UNTIL(messages, pair_turn());
    CHECK(messages == 1 && c->cold && c->cold->msg.p == buf,
          "with the queue done with it, the next message is read into the same buffer");
    have = drain_peer(peer, out, sizeof out, 10 + LEN);
    CHECK(have == 10 + LEN && check_frame(out, LEN, a), "and its reply arrives whole");
    echo = 0;
    ctx->lim.backpressure_limit = old_limit;
    close(peer);
    SPIN_UNTIL(ctx->nconns == 0, pair_turn());
}

/* Echo replies to `count` frames of `len` bytes that the peer writes at once, with a ping
 * after the first when `ping`, or with the first `ahead` bytes of the first frame in a write of
 * their own, read before the rest is written (the rest of that frame is then read in place,
 * wsk_msg_direct; *direct says it was), and the last `back` bytes in a write of their own,
 * once the others were read.  The pair is SOCK_SEQPACKET, where each read returns
 * what one write wrote: *writes counts the connection's writes of the replies.  1 when the peer
 * read back the payloads in order, a frame each (and the pong after the first). */
static int echo_read(wsk_ctx *ctx, size_t len, int count, size_t ahead, size_t back, int ping,
                     int *direct, int *writes)
{
    enum { MAX = 4 * 40000 };
    static uint8_t in[MAX + 64], payload[MAX], out[MAX + 64];
    static const uint8_t ping_frame[10] = {0x89, 0x84, 0, 0, 0, 0, 'p', 'i', 'n', 'g'};
    int peer;
    struct wsk_ws *c = pair_conn_type(ctx, &peer, 0, SOCK_SEQPACKET);
    wsk_conn_open(c, NULL, 0);
    int big = 1 << 20;
    setsockopt(c->io.fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    reset();
    echo = 1;
    size_t n = 0, hl = len < 65536 ? 4 : 10, cap = 0, pong = ping ? 6 : 0;
    for (int k = 0; k < count; k++) {
        for (size_t i = 0; i < len; i++) payload[k * len + i] = pair_pattern(i + (size_t)k * 7);
        n += big_frame(in + n, 0x82, payload + k * len, len);
        if (k == 0 && ping) memcpy(in + n, ping_frame, sizeof ping_frame);
        if (k == 0 && ping) n += sizeof ping_frame;
    }
    *direct = 0;
    if (ahead) {
        pair_put(peer, in, ahead);
        SPIN_UNTIL(pair_unread(c) == 0, pair_turn());
        *direct = wsk_msg_direct(c, &cap) != NULL;
    }
    pair_put(peer, in + ahead, n - ahead - back);
    if (back) {
        SPIN_UNTIL(pair_unread(c) == 0, pair_turn());
        pair_put(peer, in + n - back, back);
    }
    size_t want = (hl + len) * (size_t)count + pong, have = 0;
    *writes = 0;
    SPIN_UNTIL(have >= want, {
        pair_turn();
        ssize_t r = read(peer, out + have, sizeof out - have);
        if (r > 0) have += (size_t)r;
        if (r > 0) ++*writes;
        if (r <= 0) poll(NULL, 0, 1);
    });
    int ok = have == want && messages == count;
    for (int k = 0; ok && k < count; k++) {
        const uint8_t *f = out + (size_t)k * (hl + len) + (k ? pong : 0);
        ok = f[0] == 0x82 && !memcmp(f + hl, payload + k * len, len);
    }
    if (ok && ping) ok = !memcmp(out + hl + len, "\x8a\x04ping", 6);
    echo = 0;
    close(peer);
    SPIN_UNTIL(ctx->nconns == 0, pair_turn());
    return ok;
}

static void batched_replies(wsk_ctx *ctx)
{
    enum { LEN = 20000 }; /* from WSK_DIRECT_MIN to WSK_BATCH_MAX */
    int direct, writes;
    int ok = echo_read(ctx, LEN, 4, 0, 0, 0, &direct, &writes);
    CHECK(ok && !queued[3] && held[0] == 1 && held[1] == 2 && held[2] == 3 && held[3] == 4 &&
              writes == 1,
          "replies to 4 frames of %d bytes in one read are held where they lie (%u, %u, %u, %u, "
          "nothing queued) and arrive whole, in order, in %d write",
          LEN, held[0], held[1], held[2], held[3], writes);
    ok = echo_read(ctx, 40000, 2, 0, 0, 0, &direct, &writes);
    CHECK(ok && held[1] == 2 && writes == 1, "so are 2 replies of 40000 bytes (%d write)", writes);
    /* What is held stays within the backpressure limit: the third reply writes the two held. */
    size_t limit = ctx->lim.backpressure_limit;
    ctx->lim.backpressure_limit = 50000;
    ok = echo_read(ctx, LEN, 4, 0, 0, 0, &direct, &writes);
    ctx->lim.backpressure_limit = limit;
    CHECK(ok && held[1] == 2 && !held[2] && queued[2] == 4 + LEN && writes == 2,
          "with a backpressure limit of 50000 bytes, 2 replies of %d are held, the third writes "
          "them and is queued (%u, %zu bytes; %d writes)",
          LEN, held[2], queued[2], writes);
    /* A pong goes after the reply held before it: that one is written first. */
    ok = echo_read(ctx, LEN, 2, 0, 0, 1, &direct, &writes);
    CHECK(ok && held[0] == 1 && held[1] == 0 && writes == 2,
          "a ping between 2 frames: reply, pong, reply, in order (%d writes)", writes);
    /* The read that ends a frame read in place carries 2 more frames: one write for the 3, the
     * first reply held in the frame's own buffer, the others in the loop's. */
    ok = echo_read(ctx, LEN, 3, 8 + 1000, 0, 0, &direct, &writes);
    CHECK(ok && direct && held[0] == 1 && held[2] == 3 && !queued[2] && writes == 1,
          "a frame's rest read in place with 2 frames behind it: the 3 replies are held (%u, %u, "
          "nothing queued) and leave in %d write",
          held[0], held[2], writes);
    ok = echo_read(ctx, 40000, 2, 8 + 1000, 0, 0, &direct, &writes);
    CHECK(ok && direct && held[1] == 2 && writes == 1,
          "so are the replies to 2 frames of 40000 bytes, the first read in place (%d write)",
          writes);
    /* The read ends inside a third frame, gathered in the buffer the first reply lies in: that
     * reply and the one held behind it are written before the buffer takes the third's bytes. */
    ok = echo_read(ctx, 40000, 3, 8 + 1000, 30000, 0, &direct, &writes);
    CHECK(ok && direct && held[1] == 2 && writes == 2,
          "3 frames of 40000 bytes, the first read in place, the read ending inside the third: "
          "the replies arrive intact, in order (%d writes)",
          writes);
    ok = echo_read(ctx, LEN, 1, 8 + 1000, 0, 0, &direct, &writes);
    CHECK(ok && direct && queued[0] == 0 && writes == 1,
          "with nothing behind the frame read in place, its reply is one write, nothing queued "
          "(%zu)",
          queued[0]);
}

/* A client's large send: masked while copied into cached blocks (no block of the message's size),
 * one frame whose payload the peer unmasks to the original. */
static void client_sends(wsk_ctx *ctx)
{
    enum { LEN = 100000 };
    static uint8_t payload[LEN], out[LEN + 64];
    for (size_t i = 0; i < LEN; i++) payload[i] = pair_pattern(i);
    int peer;
    ctx->role = WSK_ROLE_CLIENT;
    struct wsk_ws *c = open_conn(ctx, &peer, 0);
    reset();
    long r = wsk_send(c, payload, LEN, WSK_OP_BINARY, 0);
    int cached = 1, segs = 0;
    for (wsk_seg *s = c->q.head; s; s = s->next, segs++) cached &= s->blk->cap == WSK_BLOCK_CACHED;
    CHECK(r == LEN && c->q.bytes == 14 + LEN && cached && segs > 1,
          "a client's 100000-byte send is queued masked in %d cached blocks", segs);
    size_t have = drain_peer(peer, out, sizeof out, 14 + LEN);
    uint8_t *key = out + 10;
    for (size_t i = 0; i < LEN && have == 14 + LEN; i++) out[14 + i] ^= key[i & 3];
    CHECK(have == 14 + LEN && out[0] == 0x82 && out[1] == (0x80 | 127) &&
              !memcmp(out + 14, payload, LEN),
          "the peer gets one masked frame that unmasks to the payload (%zu bytes)", have);
    close(peer);
    SPIN_UNTIL(ctx->nconns == 0, pair_turn());
    ctx->role = WSK_ROLE_SERVER;
}

int main(void)
{
    pair_setup();
    wsk_handlers h = {.message = on_message, .drain = pair_on_drain, .close = pair_on_close};
    wsk_ctx ctx;
    pair_ctx(&ctx, &h);
    /* The guess of the next frame from WSK_DIRECT_MIN on, not WSK_GUESS_MIN: BIG frames arm it,
     * and the socketpair's buffers stay small (unguessed() checks the default). */
    ctx.lim.guess_min = WSK_DIRECT_MIN;
    split_everywhere(&ctx);
    unguessed(&ctx);
    guessed(&ctx);
    text(&ctx);
    sends(&ctx);
    shared_rest(&ctx, 1 << 20);
    shared_rest(&ctx, 100000);
    batched_replies(&ctx);
    client_sends(&ctx);
    pair_turn();
    wsk_loop_free(pair_loop);
    return TEST_DONE();
}
