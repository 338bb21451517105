/* The Redis engine's reply arena (lib/bridge_redis_reply.c) under hiredis' own reader: replies
 * fed at every split point and one byte at a time come out as hiredis' default constructors
 * build them (a subscription's message, nested arrays, integers, nil, errors, a string larger
 * than the arena), and each free empties the arena for the next. */
#include "bridge_redis_reply.h"
#include "test.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include <hiredis/hiredis.h>
#include <hiredis/read.h>
#pragma GCC diagnostic pop

/* 1 when a (built by the arena) and b (by hiredis' defaults) are the same reply. */
static int same(const redisReply *a, const redisReply *b)
{
    if (a->type != b->type) return 0;
    switch (a->type) {
    case REDIS_REPLY_INTEGER: return a->integer == b->integer;
    case REDIS_REPLY_NIL: return 1;
    case REDIS_REPLY_ARRAY:
        if (a->elements != b->elements) return 0;
        for (size_t i = 0; i < a->elements; i++)
            if (!same(a->element[i], b->element[i])) return 0;
        return 1;
    default: return a->len == b->len && !memcmp(a->str, b->str, a->len) && !a->str[a->len];
    }
}

/* Feeds s[0..n) in pieces of `step` bytes after a first one of `split`; the replies, compared
 * with hiredis' own, counted in *got. */
static int feed(redisReader *ours, redisReader *ref, wsk_rreply_pool *p, const char *s, size_t n,
                size_t split, size_t step, int *got)
{
    int ok = 1;
    for (size_t at = 0; at < n;) {
        size_t k = at == 0 && split ? split : step;
        if (k > n - at) k = n - at;
        redisReaderFeed(ours, s + at, k);
        redisReaderFeed(ref, s + at, k);
        at += k;
        for (;;) {
            void *a = NULL, *b = NULL;
            if (redisReaderGetReply(ours, &a) != REDIS_OK ||
                redisReaderGetReply(ref, &b) != REDIS_OK)
                return 0;
            if (!a || !b) {
                ok &= EXPECT(!a && !b, "both readers have a reply, or neither");
                if (a) ours->fn->freeObject(a);
                if (b) freeReplyObject(b);
                break;
            }
            ok &= EXPECT(same(a, b), "reply %d as hiredis builds it", *got);
            ours->fn->freeObject(a);
            freeReplyObject(b);
            ok &= EXPECT(p->used == 0 && !p->bigs, "the arena empty after reply %d", *got);
            (*got)++;
        }
    }
    return ok;
}

int main(void)
{
    static char big[40000];
    char stream[48000];
    memset(big, 'x', sizeof big);
    int n = snprintf(stream, sizeof stream,
                     "*3\r\n$7\r\nmessage\r\n$11\r\nwskit:news!\r\n$5\r\nhello\r\n"
                     ":42\r\n$-1\r\n*-1\r\n*0\r\n-ERR no such thing\r\n+OK\r\n"
                     "*2\r\n*2\r\n:1\r\n$0\r\n\r\n*1\r\n$3\r\nabc\r\n"
                     "*4\r\n$8\r\npmessage\r\n$7\r\nwskit:*\r\n$10\r\nwskit:news\r\n$%zu\r\n",
                     sizeof big);
    memcpy(stream + n, big, sizeof big);
    n += (int)sizeof big;
    memcpy(stream + n, "\r\n:7\r\n", 6);
    n += 6;
    const int replies = 10;

    wsk_rreply_pool p = {0};
    int all = 1, got = 0;
    /* Every split point of the stream's first 200 bytes (its small replies), then the rest. */
    for (size_t split = 1; split < 200; split++) {
        redisReader *ours = redisReaderCreate(), *ref = redisReaderCreate();
        wsk_rreply_attach(ours, &p);
        got = 0;
        all &= feed(ours, ref, &p, stream, (size_t)n, split, (size_t)n, &got);
        all &= EXPECT(got == replies, "split at %zu: %d replies", split, got);
        redisReaderFree(ours);
        redisReaderFree(ref);
    }
    CHECK(all, "replies split at every point of the first 200 bytes come out as hiredis' own");

    redisReader *ours = redisReaderCreate(), *ref = redisReaderCreate();
    wsk_rreply_attach(ours, &p);
    got = 0;
    int ok = feed(ours, ref, &p, stream, (size_t)n, 0, 1, &got);
    CHECK(ok && got == replies, "... and fed one byte at a time (%d replies)", got);
    redisReaderFree(ours);
    redisReaderFree(ref);

    /* A reader freed while it builds a reply (the connection lost mid-reply) frees it. */
    ours = redisReaderCreate();
    wsk_rreply_attach(ours, &p);
    static const char half[] = "*3\r\n$7\r\nmessage\r\n$3\r\nabc\r\n$40000\r\nxx";
    redisReaderFeed(ours, half, sizeof half - 1);
    void *none = NULL;
    redisReaderGetReply(ours, &none);
    CHECK(none == NULL && p.used > 0, "a reply half read holds the arena");
    redisReaderFree(ours);
    CHECK(p.used == 0 && !p.bigs, "... and the reader's free empties it");
    wsk_rreply_free(&p);
    CHECK(!p.base, "the arena freed");
    return TEST_DONE();
}
