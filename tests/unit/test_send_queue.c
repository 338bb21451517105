/* The send queue (send_queue.c) and its flush (send_flush.c) on a socketpair: small sends share
 * the private tail block, shared blocks are referenced and released, writev gets one iovec per
 * segment and at most WSK_WRITE_MAX bytes, partial writes keep the rest queued and watch for
 * writability, the backpressure limit admits, drops or closes with 1008, drain fires once
 * the queue is written, and the loop's block cache keeps what a busy turn uses (no block
 * allocated per turn in a steady echo) and gives back what an idle period did not. */
#include "test.h"
#include "pair.h"

/* Queues n bytes of the pattern from offset `from`, in pieces of at most `piece`. */
static void queue_pattern(struct wsk_ws *c, size_t from, size_t n, size_t piece)
{
    for (size_t done = 0; done < n;) {
        size_t k = n - done < piece ? n - done : piece;
        uint8_t *p = wsk_queue_reserve(c, k);
        if (!p) abort();
        for (size_t i = 0; i < k; i++) p[i] = pair_pattern(from + done + i);
        wsk_queue_commit(c, k);
        done += k;
    }
}

static void segments(wsk_ctx *ctx)
{
    int peer;
    struct wsk_ws *c = pair_conn(ctx, &peer, 0);
    CHECK(!c->q.head && !c->q.tail && c->q.bytes == 0, "an empty queue owns no memory");

    uint8_t *a = wsk_queue_reserve(c, 100);
    memset(a, 'a', 100);
    wsk_queue_commit(c, 100);
    uint8_t *b = wsk_queue_reserve(c, 200);
    memset(b, 'b', 200);
    wsk_queue_commit(c, 200);
    CHECK(b == a + 100 && c->q.head == c->q.tail && c->q.head->len == 300 && c->q.bytes == 300,
          "small sends are appended to the private tail block");

    size_t room = c->q.tail->blk->cap - c->q.tail->blk->len;
    uint8_t *d = wsk_queue_reserve(c, room + 1);
    memset(d, 'c', room + 1);
    wsk_queue_commit(c, room + 1);
    CHECK(c->q.head->next == c->q.tail && c->q.tail->len == room + 1 &&
              c->q.bytes == 300 + room + 1,
          "a send that does not fit the tail block starts a new one");

    wsk_block *s = wsk_block_new(pair_loop, 5000);
    memset(s->data, 's', 5000);
    s->len = 5000;
    CHECK(wsk_queue_share(c, s, 1000, 3000) == 0 && s->refs == 2 && c->q.tail->blk == s &&
              c->q.bytes == 3300 + room + 1,
          "a shared block is referenced by the queue, not copied");
    uint8_t *e = wsk_queue_reserve(c, 10);
    CHECK(e && (e < s->data || e >= s->data + s->cap) && c->q.tail->blk != s,
          "bytes queued after a shared segment go to a private block");
    memset(e, 'e', 10);
    wsk_queue_commit(c, 10);

    struct iovec iov[8];
    int n = wsk_queue_iov(c, iov, 8);
    CHECK(n == 4 && iov[0].iov_len == 300 && iov[1].iov_len == room + 1 &&
              iov[2].iov_base == s->data + 1000 && iov[2].iov_len == 3000 && iov[3].iov_len == 10,
          "one iovec per segment, in order (%d)", n);
    CHECK(wsk_queue_iov(c, iov, 2) == 2, "at most the number asked for");

    size_t total = c->q.bytes;
    wsk_queue_consume(c, 50);
    CHECK(c->q.head->off == 50 && c->q.head->len == 250 && c->q.bytes == total - 50 &&
              wsk_queue_iov(c, iov, 8) == 4 && iov[0].iov_base == a + 50,
          "a partial write moves the start of the first segment");
    wsk_queue_consume(c, 250 + room + 1 + 10);
    CHECK(c->q.head->blk == s && c->q.head->off == 1010 && c->q.head->len == 2990 && s->refs == 2,
          "consumed segments are released; the next one starts where the write stopped");
    wsk_queue_consume(c, 2990);
    CHECK(s->refs == 1 && c->q.head == c->q.tail && c->q.bytes == 10,
          "a written shared segment gives its reference back");
    wsk_queue_consume(c, 10);
    CHECK(!c->q.head && !c->q.tail && c->q.bytes == 0, "a written queue owns no memory again");
    wsk_block_unref(pair_loop, s);

    /* One socket writes at most WSK_WRITE_MAX per turn, so one fast reader cannot starve the
     * others: the iovecs stop once that much is gathered. */
    wsk_block *big = wsk_block_new(pair_loop, 600 * 1024);
    big->len = big->cap;
    for (int i = 0; i < 3; i++) wsk_queue_share(c, big, 0, big->len);
    n = wsk_queue_iov(c, iov, 8);
    CHECK(n == 2 && big->refs == 4, "the iovecs of one write stop at WSK_WRITE_MAX (%d)", n);
    wsk_queue_clear(c);
    CHECK(big->refs == 1 && !c->q.head && c->q.bytes == 0, "clear releases every segment");
    wsk_block_unref(pair_loop, big);
    wsk_conn_end(c, WSK_CLOSE_ABNORMAL, NULL);
    close(peer);
}

static void partial_writes(wsk_ctx *ctx)
{
    int peer;
    struct wsk_ws *c = pair_conn(ctx, &peer, 4096);
    enum { TOTAL = 256 * 1024 };
    queue_pattern(c, 0, TOTAL, 1000);
    int r = wsk_flush(c);
    CHECK(r == 0 && c->q.bytes > 0 && c->q.bytes < TOTAL && (c->flags & WSK_F_WANT_WRITE),
          "a partial write keeps the rest queued and watches for writability (%zu left)",
          c->q.bytes);
    static uint8_t got[TOTAL];
    size_t n = 0;
    pair_read(peer, got, sizeof got, &n, TOTAL);
    int same = n == TOTAL;
    for (size_t i = 0; same && i < n; i++) same = got[i] == pair_pattern(i);
    CHECK(same, "the rest is written as the peer reads, every byte once and in order (%zu)", n);
    SPIN_UNTIL(!(c->flags & WSK_F_WANT_WRITE), pair_turn());
    CHECK(c->q.bytes == 0 && !c->q.head && !(c->flags & WSK_F_WANT_WRITE),
          "once written, the queue is empty and writability is no longer watched");
    wsk_conn_end(c, WSK_CLOSE_ABNORMAL, NULL);
    close(peer);
}

static void backpressure(wsk_ctx *ctx)
{
    int peer;
    ctx->lim.backpressure_limit = 4096;
    struct wsk_ws *c = pair_conn(ctx, &peer, 4096);
    wsk_conn_open(c, NULL, 0);
    CHECK(wsk_send_admit(c, 100000), "an empty queue admits a message over the limit");
    queue_pattern(c, 0, 3000, 3000);
    CHECK(wsk_send_admit(c, 1096), "a message that keeps the queue within the limit is admitted");
    CHECK(!wsk_send_admit(c, 1097) && (c->flags & WSK_F_OVERFLOW) && c->state == WSK_ST_OPEN,
          "past the limit a message is dropped; the socket stays open");
    c->flags |= WSK_F_BACKPRESSURE;
    wsk_loop_schedule(pair_loop, c);
    static uint8_t got[4096];
    size_t n = 0;
    pair_read(peer, got, sizeof got, &n, 3000);
    SPIN_UNTIL(pair_drains == 1, pair_turn());
    CHECK(n == 3000 && pair_drains == 1 && !(c->flags & WSK_F_BACKPRESSURE),
          "drain runs once when the queue is written (%d)", pair_drains);
    pair_turn();
    CHECK(pair_drains == 1, "and not again");
    wsk_conn_end(c, WSK_CLOSE_ABNORMAL, NULL);
    close(peer);
    pair_turn();

    /* close_on_backpressure_limit: 1008, after the bytes queued before it. */
    ctx->lim.close_on_backpressure_limit = 1;
    pair_closes = 0;
    c = pair_conn(ctx, &peer, 4096);
    wsk_conn_open(c, NULL, 0);
    queue_pattern(c, 0, 3000, 3000);
    CHECK(!wsk_send_admit(c, 2000) && pair_closes == 1 && pair_close_code == WSK_CLOSE_POLICY &&
              c->state == WSK_ST_DONE,
          "close_on_backpressure_limit: the close handler gets 1008 (%u)", pair_close_code);
    n = 0;
    int eof = pair_read(peer, got, sizeof got, &n, sizeof got);
    CHECK(eof && n >= 3004 && got[3000] == 0x88 && got[3002] == 0x03 && got[3003] == 0xf0,
          "the peer gets the queued bytes, then close 1008, then EOF (%zu bytes)", n);
    close(peer);
    SPIN_UNTIL(ctx->nconns == 0, pair_turn());
    CHECK(ctx->nconns == 0, "the connection is gone once the peer closed too");
}

/* An echo server's turn: 64 sockets with 32 replies of 1 KiB each queued, about 200 blocks,
 * then the end-of-turn flush and the peers reading.  A cache smaller than one turn's use frees
 * blocks every turn and mallocs them again the next: glibc then trims and regrows the heap
 * (brk and fresh pages) every turn, a 1 KiB echo at 4 times the CPU per message. */
static void block_cache(wsk_ctx *ctx)
{
    enum { SOCKS = 64, REPLIES = 32, REPLY = 1030 };
    int peers[SOCKS];
    struct wsk_ws *c[SOCKS];
    for (int i = 0; i < SOCKS; i++) c[i] = pair_conn(ctx, &peers[i], 0);
    static uint8_t got[REPLIES * REPLY];
    uint64_t malloced[4];
    int all = 1;
    for (int turn = 0; turn < 4; turn++) {
        for (int i = 0; i < SOCKS; i++) {
            for (int k = 0; k < REPLIES; k++) queue_pattern(c[i], (size_t)k * REPLY, REPLY, REPLY);
            wsk_loop_schedule(pair_loop, c[i]);
        }
        malloced[turn] = pair_loop->blocks_malloced;
        /* No trim at the end of the last turn, however slow the machine: its peak is checked. */
        if (turn == 3) pair_loop->blocks_trim_ms = wsk_ms(pair_loop);
        pair_turn();
        for (int i = 0; i < SOCKS; i++) {
            size_t n = 0;
            pair_read(peers[i], got, sizeof got, &n, sizeof got);
            all &= n == sizeof got && got[REPLY] == pair_pattern(REPLY);
        }
    }
    unsigned used = pair_loop->blocks_peak;
    CHECK(all && used > WSK_BLOCK_CACHE && pair_loop->blocks_out == 0,
          "64 sockets x 32 KiB of replies use %u blocks in a turn, all back after the flush", used);
    CHECK(malloced[3] == malloced[1] && pair_loop->nfree_blocks >= used,
          "from the second turn on, no block is allocated: the cache keeps the %u (%llu, %llu)",
          used, (unsigned long long)malloced[1], (unsigned long long)malloced[3]);

    /* A period without traffic: the cache gives back what the last period did not use. */
    pair_loop->blocks_trim_ms = wsk_ms(pair_loop) - WSK_BLOCK_TRIM_MS;
    wsk_loop_reap(pair_loop);
    CHECK(pair_loop->nfree_blocks == used, "the first trim keeps the busy period's %u blocks (%u)",
          used, pair_loop->nfree_blocks);
    pair_loop->blocks_trim_ms = wsk_ms(pair_loop) - WSK_BLOCK_TRIM_MS;
    wsk_loop_reap(pair_loop);
    CHECK(pair_loop->nfree_blocks == WSK_BLOCK_CACHE,
          "a period later, only WSK_BLOCK_CACHE stay (%u)", pair_loop->nfree_blocks);
    for (int i = 0; i < SOCKS; i++) {
        wsk_conn_end(c[i], WSK_CLOSE_ABNORMAL, NULL);
        close(peers[i]);
    }
    pair_turn();
}

int main(void)
{
    pair_setup();
    wsk_handlers h = {.drain = pair_on_drain, .close = pair_on_close};
    wsk_ctx ctx;
    pair_ctx(&ctx, &h);
    segments(&ctx);
    partial_writes(&ctx);
    backpressure(&ctx);
    block_cache(&ctx);
    pair_turn();
    wsk_loop_free(pair_loop);
    return TEST_DONE();
}
