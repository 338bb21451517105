/* Fuzz target: the JSON control protocol of wsserve --pubsub (cmd/jsonproto.c).  Any bytes as a
 * request: parsed or refused with a named error, never a crash; an accepted request's replies
 * must be JSON objects again, its id echoed.  The same bytes as a delivery's topic and data,
 * and through base64 and back.
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -Ilib tests/fuzz/fuzz_jsonproto.c
 *        cmd/jsonproto.c lib/*.c -lev -lmbedtls -lmbedx509 -lmbedcrypto -lz -lcjson -lhiredis
 *        -lnats -pthread -lm */
#include "../../cmd/jsonproto.h"
#include "wskit.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A reply must parse as a JSON object carrying `id` when there was one. */
static void check_reply(char *s, size_t len, const char *id)
{
    jp_reply r;
    if (!s) return; /* out of memory */
    if (strlen(s) != len || jp_parse_reply(s, len, &r) != JP_OK) abort();
    if (*id && strcmp(r.id, id)) abort();
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly `size` bytes, so reading past the end is caught. */
    uint8_t *msg = malloc(size ? size : 1);
    if (!msg) return 0;
    if (size) memcpy(msg, data, size);

    jp_request rq;
    size_t len;
    int r = jp_parse(msg, size, 16, &rq);
    if (r < 0) {
        if (r < JP_ENOMEM || !rq.why[0]) abort();
        check_reply(jp_error(rq.id, r, rq.why, &len), len, rq.id);
    } else {
        if (rq.op < JP_SUBSCRIBE || rq.op > JP_OP_LAST) abort();
        if (rq.op == JP_PUBLISH && (rq.ntopics != 1 || (!rq.data && rq.len))) abort();
        if ((rq.op == JP_SUBSCRIBE || rq.op == JP_UNSUBSCRIBE) && (!rq.ntopics || rq.ntopics > 16))
            abort();
        for (size_t i = 0; i < rq.ntopics; i++)
            if (strlen(rq.topics[i].name) != rq.topics[i].len) abort();
        if (rq.op == JP_PUBLISH) {
            const struct jp_topic *t = &rq.topics[0];
            check_reply(jp_ack_publish(rq.id, t->name, t->len, 3, 1, &len), len, rq.id);
            /* What a client (wspub) would send for the same publish parses back to it. */
            char *pr =
                jp_publish_request(t->name, t->len, rq.data, rq.len, rq.binary, rq.retain, 7, &len);
            if (pr) {
                jp_request again;
                if (jp_parse(pr, len, 16, &again) != JP_OK || again.op != JP_PUBLISH ||
                    strcmp(again.id, "7") || again.len != rq.len || again.binary != rq.binary ||
                    again.retain != rq.retain || strcmp(again.topics[0].name, t->name) ||
                    (rq.len && memcmp(again.data, rq.data, rq.len)))
                    abort();
                jp_request_free(&again);
                free(pr);
            }
            char *d = jp_delivery(t->name, t->len, rq.data, rq.len, rq.binary, &len);
            jp_request back;
            if (d && jp_parse(d, len, 16, &back) == JP_EBADJSON) abort();
            if (d) jp_request_free(&back);
            free(d);
        } else if (rq.op == JP_PING) {
            check_reply(jp_ack_ping(rq.id, &len), len, rq.id);
        } else {
            check_reply(jp_ack_topics(rq.op, rq.id, rq.topics, rq.ntopics, 5, &len), len, rq.id);
        }
    }
    jp_request_free(&rq);

    /* The raw bytes as a delivery (text: any bytes escape) and through base64. */
    size_t half = size / 2;
    char *d = jp_delivery((const char *)msg, half, msg + half, size - half, size & 1, &len);
    if (d) {
        jp_request back;
        if (jp_parse(d, len, 16, &back) == JP_EBADJSON) abort();
        jp_request_free(&back);
        free(d);
    }
    char *b = malloc((size + 2) / 3 * 4 + 1);
    uint8_t *round = malloc(size + 3);
    if (b && round) {
        size_t bl = wsk_base64_encode(msg, size, b);
        if (wsk_base64_decode(b, bl, round) != (long)size || (size && memcmp(round, msg, size)))
            abort();
        jp_reply rep;
        jp_parse_reply(msg, size, &rep);
    }
    free(b);
    free(round);
    free(msg);
    return 0;
}
