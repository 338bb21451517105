/* The capped buffers of lib/buf.c: growth stops at max, and a buffer whose max was lowered
 * below what it already holds (the loop's compression scratch buffer, reused for every message
 * with the message's size as its cap) refuses more bytes instead of shrinking under them; the
 * bytes kept in front of a buffer for its owner (pre) move with it as it grows. */
#include "buf.h"
#include "test.h"
#include "wskit.h"

#include <stdlib.h>

static void grows_to_max(void)
{
    wsk_dbuf b;
    wsk_dbuf_init(&b, 1000);
    uint8_t chunk[300] = {0};
    int rc = 0, n = 0;
    while ((rc = wsk_dbuf_append(&b, chunk, sizeof chunk)) == 0) n++;
    CHECK(n == 3 && rc == WSK_ERR_TOO_BIG && b.len == 900 && b.cap <= 1000,
          "appends stop at max (%d appended, len %zu, cap %zu)", n, b.len, b.cap);
    CHECK(wsk_dbuf_reserve(&b, 100) == 0 && wsk_dbuf_reserve(&b, 101) == WSK_ERR_TOO_BIG,
          "reserve: exactly up to max");
    wsk_dbuf_free(&b);
}

static void lowered_max(void)
{
    wsk_dbuf b;
    wsk_dbuf_init(&b, 1 << 20);
    if (wsk_dbuf_reserve(&b, 5000) < 0) abort();
    /* A codec writes up to the capacity, past the lowered max. */
    b.max = 4000;
    memset(b.p, 7, b.cap);
    b.len = b.cap;
    size_t cap = b.cap;
    int rc = wsk_dbuf_reserve(&b, 1);
    CHECK(rc == WSK_ERR_TOO_BIG && b.cap == cap,
          "len past a lowered max: reserve refuses, the buffer keeps its size (rc %d, cap %zu "
          "of %zu)",
          rc, b.cap, cap);
    b.len = 0;
    CHECK(wsk_dbuf_reserve(&b, 4000) == 0 && b.cap == cap &&
              wsk_dbuf_reserve(&b, 4001) == WSK_ERR_TOO_BIG,
          "emptied: room up to the lowered max, within the bytes it has");
    wsk_dbuf_free(&b);
}

static void room_in_front(void)
{
    wsk_dbuf b;
    wsk_dbuf_init(&b, 1 << 20);
    b.pre = 16;
    uint8_t chunk[1000];
    for (size_t i = 0; i < sizeof chunk; i++) chunk[i] = (uint8_t)i;
    if (wsk_dbuf_append(&b, chunk, 10) < 0) abort();
    memset(b.p - 16, 0xA5, 16);
    int ok = 1;
    for (int k = 0; k < 200 && ok; k++) ok = wsk_dbuf_append(&b, chunk, sizeof chunk) == 0;
    int front = 1;
    for (int i = 0; i < 16; i++) front &= b.p[i - 16] == 0xA5;
    CHECK(ok && b.len == 10 + 200 * sizeof chunk && front && !memcmp(b.p + 10, chunk, 1000) &&
              !memcmp(b.p + b.len - 1000, chunk, 1000),
          "16 bytes in front: they and the bytes move together as the buffer grows to %zu", b.cap);
    wsk_dbuf_free(&b); /* valgrind and ASan: the whole allocation, from its start */
    CHECK(!b.p && !b.len && !b.cap && b.pre == 16, "freed, the room in front stays asked for");
    CHECK(wsk_dbuf_append(&b, chunk, 5) == 0 && !memcmp(b.p, chunk, 5), "and it is reusable");
    wsk_dbuf_free(&b);
}

int main(void)
{
    grows_to_max();
    lowered_max();
    room_in_front();
    return TEST_DONE();
}
