/* Payload masking: see mask.h.
 *
 * Every payload byte a server receives passes through here, so it works a word at a time:
 * 64-bit XORs from the first byte (unaligned loads cost nothing on the machines this runs on,
 * and most payloads are short, so an alignment prologue would be most of the work), then one
 * 32-bit XOR and at most 3 tail bytes.  The key period (4) divides the word size, so one key
 * widened to 64 bits and rotated to the current offset serves every word.  Loads and stores go
 * through memcpy, which compilers turn into plain (and, in the unrolled loop, vector) moves
 * without aliasing or alignment UB. */
#include "mask.h"

#include <string.h>

static inline void xor_word(uint8_t *p, uint64_t k)
{
    uint64_t w;
    memcpy(&w, p, 8);
    w ^= k;
    memcpy(p, &w, 8);
}

size_t wsk_mask(uint8_t *p, size_t n, const uint8_t key[4], size_t offset)
{
    size_t next = (offset + n) & 3;
    if (n == 0) return next; /* p may then be NULL, and C leaves even NULL + 0 undefined */
    /* The key three times over: rep + o, for any o in 0..3, is the key stream starting at key
     * byte o for the next 8 bytes, which covers the head, the tail and the widened key without
     * depending on byte order or carrying the offset through the byte loops. */
    uint8_t rep[12];
    memcpy(rep, key, 4);
    memcpy(rep + 4, key, 4);
    memcpy(rep + 8, key, 4);

    const uint8_t *k = rep + (offset & 3);
    if (n >= 8) {
        uint64_t kw;
        memcpy(&kw, k, 8);
        /* 64 bytes per iteration: four 128-bit (or two 256-bit) vector XORs once the compiler
         * merges the words, and few loop branches per byte. */
        for (; n >= 64; p += 64, n -= 64) {
            xor_word(p, kw);
            xor_word(p + 8, kw);
            xor_word(p + 16, kw);
            xor_word(p + 24, kw);
            xor_word(p + 32, kw);
            xor_word(p + 40, kw);
            xor_word(p + 48, kw);
            xor_word(p + 56, kw);
        }
        for (; n >= 8; p += 8, n -= 8) xor_word(p, kw);
    }
    if (n >= 4) {
        uint32_t w, kw4;
        memcpy(&w, p, 4);
        memcpy(&kw4, k, 4);
        w ^= kw4;
        memcpy(p, &w, 4);
        p += 4;
        n -= 4;
    }
    for (size_t i = 0; i < n; i++) p[i] ^= k[i];
    return next;
}
