/* Messages for the permessage-deflate tests: random bytes, or text with repeats at varied
 * distances, from a fixed xorshift sequence so that every run is the same. */
#ifndef WSK_TEST_PMD_DATA_H
#define WSK_TEST_PMD_DATA_H

#include <stddef.h>
#include <stdint.h>

static uint64_t rng = 88172645463325252ull;

static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

/* Random bytes, or text-like bytes with many repeats at varied distances. */
static void fill(uint8_t *p, size_t n, int repetitive)
{
    static const char *words[] = {"permessage",
                                  "deflate",
                                  " ",
                                  "window",
                                  "context",
                                  "takeover",
                                  "{\"type\":\"tick\",\"v\":",
                                  "}\n",
                                  "0123",
                                  "websocket"};
    size_t i = 0;
    while (i < n) {
        if (!repetitive) {
            p[i++] = (uint8_t)rnd();
            continue;
        }
        const char *w = words[rnd() % 10];
        for (size_t k = 0; w[k] && i < n; k++) p[i++] = (uint8_t)w[k];
    }
}

#endif
