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

/* Eight words from src, XORed with k, to dst: all loads before any store, so dst == src (in
 * place) is fine and the compiler may turn the block into vector moves either way. */
static inline uint64_t load64(const uint8_t *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

static inline void store64(uint8_t *p, uint64_t w)
{
    memcpy(p, &w, 8);
}

static inline void xor_block(uint8_t *dst, const uint8_t *src, uint64_t k)
{
    uint64_t w0 = load64(src), w1 = load64(src + 8), w2 = load64(src + 16), w3 = load64(src + 24),
             w4 = load64(src + 32), w5 = load64(src + 40), w6 = load64(src + 48),
             w7 = load64(src + 56);
    store64(dst, w0 ^ k);
    store64(dst + 8, w1 ^ k);
    store64(dst + 16, w2 ^ k);
    store64(dst + 24, w3 ^ k);
    store64(dst + 32, w4 ^ k);
    store64(dst + 40, w5 ^ k);
    store64(dst + 48, w6 ^ k);
    store64(dst + 56, w7 ^ k);
}

/* Whole 64-byte blocks of n; returns how many bytes were done.  With AVX2 (chosen per call from
 * the CPU model libgcc found at load, as in parse_utf8_simd.c) a block is two 256-bit XORs
 * instead of four 128-bit ones: 64 KiB in place at 88 GB/s instead of 63 (`test_mask --bench`,
 * one loaded 2-core EPYC). */
static size_t xor_blocks_sse(uint8_t *dst, const uint8_t *src, size_t n, uint64_t k)
{
    size_t i = 0;
    for (; n - i >= 64; i += 64) xor_block(dst + i, src + i, k);
    return i;
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

__attribute__((target("avx2"))) static size_t xor_blocks_avx2(uint8_t *dst, const uint8_t *src,
                                                              size_t n, uint64_t k)
{
    const __m256i kv = _mm256_set1_epi64x((long long)k);
    size_t i = 0;
    for (; n - i >= 64; i += 64) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(const void *)(src + i));
        __m256i b = _mm256_loadu_si256((const __m256i *)(const void *)(src + i + 32));
        _mm256_storeu_si256((__m256i *)(void *)(dst + i), _mm256_xor_si256(a, kv));
        _mm256_storeu_si256((__m256i *)(void *)(dst + i + 32), _mm256_xor_si256(b, kv));
    }
    return i;
}

static size_t xor_blocks(uint8_t *dst, const uint8_t *src, size_t n, uint64_t k)
{
    return n >= 256 && __builtin_cpu_supports("avx2") ? xor_blocks_avx2(dst, src, n, k)
                                                      : xor_blocks_sse(dst, src, n, k);
}
#else
static size_t xor_blocks(uint8_t *dst, const uint8_t *src, size_t n, uint64_t k)
{
    return xor_blocks_sse(dst, src, n, k);
}
#endif

static inline void xor_word(uint8_t *dst, const uint8_t *src, uint64_t k)
{
    store64(dst, load64(src) ^ k);
}

size_t wsk_mask_copy(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t key[4],
                     size_t offset)
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
        /* 64 bytes per iteration (four 128-bit vector XORs once the compiler merges the words,
         * or two 256-bit ones), and few loop branches per byte. */
        size_t done = xor_blocks(dst, src, n, kw);
        dst += done, src += done, n -= done;
        for (; n >= 8; dst += 8, src += 8, n -= 8) xor_word(dst, src, kw);
    }
    if (n >= 4) {
        uint32_t w, kw4;
        memcpy(&w, src, 4);
        memcpy(&kw4, k, 4);
        w ^= kw4;
        memcpy(dst, &w, 4);
        dst += 4;
        src += 4;
        n -= 4;
    }
    for (size_t i = 0; i < n; i++) dst[i] = src[i] ^ k[i];
    return next;
}

size_t wsk_mask(uint8_t *p, size_t n, const uint8_t key[4], size_t offset)
{
    return wsk_mask_copy(p, p, n, key, offset);
}
