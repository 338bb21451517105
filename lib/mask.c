/* Payload masking: see mask.h.
 *
 * Every payload byte a server receives passes through here, so it works a word at a time:
 * 64-bit XORs from the first byte (unaligned loads cost nothing on the machines this runs on,
 * and most payloads are short, so an alignment prologue would be most of the work), then one
 * 32-bit XOR and at most 3 tail bytes.  The key period (4) divides the word size, so one key
 * widened to 64 bits and rotated to the current offset serves every word.  Loads and stores go
 * through memcpy, which compilers turn into plain (and, in the unrolled loop, vector) moves
 * without aliasing or alignment UB.  The bytes unmasked are ORed together on the way (one more
 * vector OR per 64 bytes), so a text payload learns it is all ASCII in the same pass
 * (wsk_unmask_ascii) and its UTF-8 validation need not read it again. */
#include "mask.h"

#include <string.h>

#define HIGH_BITS 0x8080808080808080ull

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

static inline uint64_t xor_block(uint8_t *dst, const uint8_t *src, uint64_t k)
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
    return (w0 ^ k) | (w1 ^ k) | (w2 ^ k) | (w3 ^ k) | (w4 ^ k) | (w5 ^ k) | (w6 ^ k) | (w7 ^ k);
}

/* Whole 64-byte blocks of n; returns how many bytes were done, and ORs into *hi a word with the
 * top bit of a byte set when some byte written had it (text: not all ASCII).  With AVX2 (chosen per
 * call from the CPU model libgcc found at load, as in parse_utf8_simd.c) a block is two 256-bit
 * XORs instead of four 128-bit ones: 64 KiB in place at 88 GB/s instead of 63 (`test_mask --bench`,
 * one loaded 2-core EPYC).  With AVX-512 two blocks are two 512-bit XORs: on a 2-core Xeon
 * (Sapphire Rapids) 64 KiB at 41-45 GB/s instead of 32-36, 1 KiB at 60-75 instead of 38-47.  Only
 * where AVX-512 comes with VBMI2 (Ice Lake and later, Zen 4 and later): the Xeons before those
 * lower the core's clock for a while after 512-bit instructions, which would cost the rest of the
 * loop more than the XORs save.  (Valgrind's CPU has no AVX-512: it runs the AVX2 blocks.) */
static size_t xor_blocks_sse(uint8_t *dst, const uint8_t *src, size_t n, uint64_t k, uint64_t *hi)
{
    size_t i = 0;
    uint64_t acc = 0;
    for (; n - i >= 64; i += 64) acc |= xor_block(dst + i, src + i, k);
    *hi |= acc & HIGH_BITS;
    return i;
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

__attribute__((target("avx2"))) static size_t xor_blocks_avx2(uint8_t *dst, const uint8_t *src,
                                                              size_t n, uint64_t k, uint64_t *hi)
{
    const __m256i kv = _mm256_set1_epi64x((long long)k);
    __m256i acc = _mm256_setzero_si256();
    size_t i = 0;
    for (; n - i >= 64; i += 64) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(const void *)(src + i));
        __m256i b = _mm256_loadu_si256((const __m256i *)(const void *)(src + i + 32));
        a = _mm256_xor_si256(a, kv);
        b = _mm256_xor_si256(b, kv);
        _mm256_storeu_si256((__m256i *)(void *)(dst + i), a);
        _mm256_storeu_si256((__m256i *)(void *)(dst + i + 32), b);
        acc = _mm256_or_si256(acc, _mm256_or_si256(a, b));
    }
    *hi |= _mm256_movemask_epi8(acc) ? HIGH_BITS : 0;
    return i;
}

__attribute__((target("avx512f,avx512bw"))) static size_t
xor_blocks_avx512(uint8_t *dst, const uint8_t *src, size_t n, uint64_t k, uint64_t *hi)
{
    const __m512i kv = _mm512_set1_epi64((long long)k);
    __m512i acc = _mm512_setzero_si512();
    size_t i = 0;
    for (; n - i >= 128; i += 128) {
        __m512i a = _mm512_xor_si512(_mm512_loadu_si512((const void *)(src + i)), kv);
        __m512i b = _mm512_xor_si512(_mm512_loadu_si512((const void *)(src + i + 64)), kv);
        _mm512_storeu_si512((void *)(dst + i), a);
        _mm512_storeu_si512((void *)(dst + i + 64), b);
        acc = _mm512_or_si512(acc, _mm512_or_si512(a, b));
    }
    if (n - i >= 64) {
        __m512i a = _mm512_xor_si512(_mm512_loadu_si512((const void *)(src + i)), kv);
        _mm512_storeu_si512((void *)(dst + i), a);
        acc = _mm512_or_si512(acc, a);
        i += 64;
    }
    *hi |= _mm512_movepi8_mask(acc) ? HIGH_BITS : 0;
    return i;
}

static size_t xor_blocks(uint8_t *dst, const uint8_t *src, size_t n, uint64_t k, uint64_t *hi)
{
    if (n < 256) return xor_blocks_sse(dst, src, n, k, hi);
    if (__builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vbmi2"))
        return xor_blocks_avx512(dst, src, n, k, hi);
    return __builtin_cpu_supports("avx2") ? xor_blocks_avx2(dst, src, n, k, hi)
                                          : xor_blocks_sse(dst, src, n, k, hi);
}
#else
static size_t xor_blocks(uint8_t *dst, const uint8_t *src, size_t n, uint64_t k, uint64_t *hi)
{
    return xor_blocks_sse(dst, src, n, k, hi);
}
#endif

static inline uint64_t xor_word(uint8_t *dst, const uint8_t *src, uint64_t k)
{
    uint64_t w = load64(src) ^ k;
    store64(dst, w);
    return w;
}

/* wsk_mask_copy, and into *hi the top bits of the bytes written (see xor_blocks).  Inline in each
 * entry point below: most payloads are short, and a call and a stack frame for the key would
 * cost as much as their bytes.  The top bits gather in a local: stores through dst (bytes, which
 * may alias anything) would otherwise make the compiler reload and store *hi around each word. */
static inline size_t mask_copy(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t key[4],
                               size_t offset, uint64_t *hi)
{
    size_t next = (offset + n) & 3;
    if (n == 0) return next; /* p may then be NULL, and C leaves even NULL + 0 undefined */
    /* The key stream from key byte offset & 3 on: the key itself at offset 0 (the start of every
     * frame), else the key three times over, from which rep + o, o in 0..3, is the stream for
     * the next 4 bytes.  Widened to a word of two copies, it reads the same whatever the byte
     * order (two copies of the same 4 bytes read the same from either end). */
    const uint8_t *k = key;
    uint8_t rep[12];
    if (offset & 3) {
        memcpy(rep, key, 4);
        memcpy(rep + 4, key, 4);
        memcpy(rep + 8, key, 4);
        k = rep + (offset & 3);
    }
    uint32_t k4;
    memcpy(&k4, k, 4);
    uint64_t kw = (uint64_t)k4 << 32 | k4, acc = 0;
    /* 64 bytes per iteration (four 128-bit vector XORs once the compiler merges the words, or two
     * 256-bit ones), and few loop branches per byte; a short payload goes straight to the words. */
    if (n >= 64) {
        size_t done = xor_blocks(dst, src, n, kw, &acc);
        dst += done, src += done, n -= done;
    }
    for (; n >= 8; dst += 8, src += 8, n -= 8) acc |= xor_word(dst, src, kw);
    if (n >= 4) {
        uint32_t w;
        memcpy(&w, src, 4);
        w ^= k4;
        memcpy(dst, &w, 4);
        acc |= w;
        dst += 4;
        src += 4;
        n -= 4;
    }
    for (size_t i = 0; i < n; i++) {
        dst[i] = src[i] ^ k[i];
        acc |= dst[i];
    }
    *hi |= acc & HIGH_BITS;
    return next;
}

size_t wsk_mask_copy(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t key[4],
                     size_t offset)
{
    uint64_t hi = 0;
    return mask_copy(dst, src, n, key, offset, &hi);
}

size_t wsk_mask(uint8_t *p, size_t n, const uint8_t key[4], size_t offset)
{
    uint64_t hi = 0;
    return mask_copy(p, p, n, key, offset, &hi);
}

size_t wsk_unmask_ascii(uint8_t *p, size_t n, const uint8_t key[4], size_t offset, int *ascii)
{
    uint64_t hi = 0;
    size_t next = mask_copy(p, p, n, key, offset, &hi);
    *ascii = !hi;
    return next;
}
