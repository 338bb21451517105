/* UTF-8 checks of whole 64-byte chunks with vector table lookups: see parse_utf8.h.
 *
 * The method is the "lookup" algorithm of John Keiser and Daniel Lemire ("Validating UTF-8 in
 * less than one instruction per byte", Software: Practice and Experience 51(5), 2021), written
 * here from the paper's description.  Every error RFC 3629 can show in two adjacent bytes is a
 * function of three nibbles: the high and the low nibble of the first byte and the high nibble of
 * the second.  Three 16-entry tables map a nibble to a byte of error bits, one bit per kind of
 * error, built so that the AND of the three entries is non-zero exactly when the pair is wrong;
 * pshufb looks up 16 nibbles at once (32 with AVX2).  What needs a third byte (the third and
 * fourth bytes of a character must be continuations, and nothing else may be) comes from
 * comparing the bytes two and three back with E0 and F0 (a saturating subtract).
 *
 * These functions only say how many whole chunks pass.  parse_utf8.c runs its exact automaton on
 * the rest: from the start of a character cut by the end of what passed, and from there through
 * a chunk that failed, so every result and state is the automaton's own.
 *
 * The vector unit is chosen per call by __builtin_cpu_supports, which reads the CPU model that
 * libgcc's (or compiler-rt's) own constructor found once at load time: the library keeps no state
 * for it (no global pointer to set, no constructor of its own), valgrind and the sanitizers need
 * no ifunc support, and the cost, a load and a test, is paid once per piece of text validated,
 * not per byte.  AVX2 takes 32 bytes a step where SSSE3 takes 16: on 64 KiB of text with a third
 * of its bytes non-ASCII, 17.6 GB/s against 8.2 for SSSE3 and 1.3 for the automaton alone
 * (memcpy: 77), 15.3 against 7.0 at 1 MiB (`test_utf8 --bench`, a loaded 2-core AMD EPYC).
 * AVX-512 takes 64, where the CPU has VBMI2 too (as for unmasking, mask.c: the CPUs whose clock
 * does not drop after 512-bit instructions): 13.3 GB/s against 9.7 for AVX2 at 64 KiB, 13.6
 * against 9.7 at 1 MiB (memcpy: 32 and 20; a 2-core Intel Xeon, Sapphire Rapids). */
#include "parse_utf8.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

/* Error bits, one per kind of wrong pair (first byte, second byte). */
enum {
    TOO_SHORT = 0x01,  /* a lead byte not followed by a continuation */
    TOO_LONG = 0x02,   /* a continuation after an ASCII byte */
    OVERLONG_3 = 0x04, /* E0 80..9F */
    TOO_LARGE = 0x08,  /* F4 90..BF, F5..FF 90..BF: above U+10FFFF */
    SURROGATE = 0x10,  /* ED A0..BF: U+D800..DFFF */
    OVERLONG_2 = 0x20, /* C0 or C1 before a continuation */
    F_80 = 0x40,       /* F0 80..8F (overlong) and F5..FF 80..8F (too large) */
    TWO_CONTS = 0x80,  /* two continuations: wrong unless a 3- or 4-byte lead came before */
};
#define ALL_LOW   (TOO_SHORT | TOO_LONG | TWO_CONTS) /* the kinds that ignore the low nibble */
#define CONT_HIGH (TOO_LONG | TWO_CONTS | OVERLONG_2)

/* clang-format off */
/* By the high nibble of the first byte. */
#define BYTE1_HIGH                                                                                 \
    TOO_LONG, TOO_LONG, TOO_LONG, TOO_LONG, TOO_LONG, TOO_LONG, TOO_LONG, TOO_LONG,                \
    TWO_CONTS, TWO_CONTS, TWO_CONTS, TWO_CONTS,                                                    \
    TOO_SHORT | OVERLONG_2, TOO_SHORT, TOO_SHORT | OVERLONG_3 | SURROGATE,                          \
    TOO_SHORT | TOO_LARGE | F_80
/* By the low nibble of the first byte. */
#define BYTE1_LOW                                                                                  \
    ALL_LOW | OVERLONG_2 | OVERLONG_3 | F_80, ALL_LOW | OVERLONG_2, ALL_LOW, ALL_LOW,               \
    ALL_LOW | TOO_LARGE, ALL_LOW | TOO_LARGE | F_80, ALL_LOW | TOO_LARGE | F_80,                     \
    ALL_LOW | TOO_LARGE | F_80, ALL_LOW | TOO_LARGE | F_80, ALL_LOW | TOO_LARGE | F_80,              \
    ALL_LOW | TOO_LARGE | F_80, ALL_LOW | TOO_LARGE | F_80, ALL_LOW | TOO_LARGE | F_80,              \
    ALL_LOW | TOO_LARGE | F_80 | SURROGATE, ALL_LOW | TOO_LARGE | F_80, ALL_LOW | TOO_LARGE | F_80
/* By the high nibble of the second byte. */
#define BYTE2_HIGH                                                                                 \
    TOO_SHORT, TOO_SHORT, TOO_SHORT, TOO_SHORT, TOO_SHORT, TOO_SHORT, TOO_SHORT, TOO_SHORT,        \
    CONT_HIGH | OVERLONG_3 | F_80, CONT_HIGH | OVERLONG_3 | TOO_LARGE,                              \
    CONT_HIGH | SURROGATE | TOO_LARGE, CONT_HIGH | SURROGATE | TOO_LARGE,                            \
    TOO_SHORT, TOO_SHORT, TOO_SHORT, TOO_SHORT
/* The last three bytes of a vector may not hold a lead byte whose character goes on (the
 * SSSE3 code takes the last 16). */
#define LAST_MAX32                                                                                 \
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, \
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xEF, 0xDF, 0xBF
/* Each table four times, for the four lanes of an AVX-512 register (AVX2 and SSSE3 load the
 * first two and the first one). */
static const uint8_t byte1_high[64] = {BYTE1_HIGH, BYTE1_HIGH, BYTE1_HIGH, BYTE1_HIGH};
static const uint8_t byte1_low[64] = {BYTE1_LOW, BYTE1_LOW, BYTE1_LOW, BYTE1_LOW};
static const uint8_t byte2_high[64] = {BYTE2_HIGH, BYTE2_HIGH, BYTE2_HIGH, BYTE2_HIGH};
static const uint8_t last_max[64] = {
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    LAST_MAX32};
/* clang-format on */

/* ---- SSSE3: 16 bytes a step ---- */

#define TARGET_SSSE3 __attribute__((target("ssse3")))

static inline TARGET_SSSE3 __m128i load16(const uint8_t *p)
{
    return _mm_loadu_si128((const __m128i *)(const void *)p);
}

/* The error bits of the 16 bytes of cur, the 16 bytes before it being prev. */
static inline TARGET_SSSE3 __m128i check16(__m128i prev, __m128i cur)
{
    const __m128i b1h = load16(byte1_high), b1l = load16(byte1_low);
    const __m128i b2h = load16(byte2_high), low = _mm_set1_epi8(0x0F);
    __m128i prev1 = _mm_alignr_epi8(cur, prev, 15);
    __m128i e = _mm_shuffle_epi8(b1h, _mm_and_si128(_mm_srli_epi16(prev1, 4), low));
    e = _mm_and_si128(e, _mm_shuffle_epi8(b1l, _mm_and_si128(prev1, low)));
    e = _mm_and_si128(e, _mm_shuffle_epi8(b2h, _mm_and_si128(_mm_srli_epi16(cur, 4), low)));
    /* Bit 7 set where the byte two back is E0 or more or the byte three back F0 or more. */
    __m128i third = _mm_subs_epu8(_mm_alignr_epi8(cur, prev, 14), _mm_set1_epi8(0xE0 - 0x80));
    __m128i fourth = _mm_subs_epu8(_mm_alignr_epi8(cur, prev, 13), _mm_set1_epi8(0xF0 - 0x80));
    __m128i must_cont = _mm_and_si128(_mm_or_si128(third, fourth), _mm_set1_epi8((char)0x80));
    return _mm_xor_si128(e, must_cont);
}

static inline TARGET_SSSE3 int any16(__m128i v)
{
    return _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_setzero_si128())) != 0xFFFF;
}

static TARGET_SSSE3 size_t chunks_ssse3(const uint8_t *p, size_t n)
{
    __m128i prev = _mm_setzero_si128(), cut = _mm_setzero_si128();
    const __m128i max = load16(last_max + 48);
    size_t i = 0;
    for (; n - i >= 64; i += 64) {
        __m128i a = load16(p + i), b = load16(p + i + 16);
        __m128i c = load16(p + i + 32), d = load16(p + i + 48);
        if (!_mm_movemask_epi8(_mm_or_si128(_mm_or_si128(a, b), _mm_or_si128(c, d)))) {
            /* All ASCII: right unless the chunk before ended inside a character. */
            if (any16(cut)) break;
            prev = d;
            continue;
        }
        __m128i e = _mm_or_si128(_mm_or_si128(check16(prev, a), check16(a, b)),
                                 _mm_or_si128(check16(b, c), check16(c, d)));
        if (any16(e)) break;
        prev = d;
        cut = _mm_subs_epu8(d, max);
    }
    return i;
}

/* ---- AVX2: 32 bytes a step ---- */

#define TARGET_AVX2 __attribute__((target("avx2")))

static inline TARGET_AVX2 __m256i load32(const uint8_t *p)
{
    return _mm256_loadu_si256((const __m256i *)(const void *)p);
}

/* check16 on 32 bytes: the in-lane shifts see the previous lane through a permute. */
static inline TARGET_AVX2 __m256i check32(__m256i prev, __m256i cur)
{
    const __m256i b1h = load32(byte1_high), b1l = load32(byte1_low);
    const __m256i b2h = load32(byte2_high), low = _mm256_set1_epi8(0x0F);
    __m256i before = _mm256_permute2x128_si256(prev, cur, 0x21); /* prev's high lane, cur's low */
    __m256i prev1 = _mm256_alignr_epi8(cur, before, 15);
    __m256i e = _mm256_shuffle_epi8(b1h, _mm256_and_si256(_mm256_srli_epi16(prev1, 4), low));
    e = _mm256_and_si256(e, _mm256_shuffle_epi8(b1l, _mm256_and_si256(prev1, low)));
    e = _mm256_and_si256(
        e, _mm256_shuffle_epi8(b2h, _mm256_and_si256(_mm256_srli_epi16(cur, 4), low)));
    __m256i third =
        _mm256_subs_epu8(_mm256_alignr_epi8(cur, before, 14), _mm256_set1_epi8(0xE0 - 0x80));
    __m256i fourth =
        _mm256_subs_epu8(_mm256_alignr_epi8(cur, before, 13), _mm256_set1_epi8(0xF0 - 0x80));
    __m256i must_cont =
        _mm256_and_si256(_mm256_or_si256(third, fourth), _mm256_set1_epi8((char)0x80));
    return _mm256_xor_si256(e, must_cont);
}

static TARGET_AVX2 size_t chunks_avx2(const uint8_t *p, size_t n)
{
    __m256i prev = _mm256_setzero_si256(), cut = _mm256_setzero_si256();
    const __m256i max = load32(last_max + 32);
    size_t i = 0;
    for (; n - i >= 64; i += 64) {
        __m256i a = load32(p + i), b = load32(p + i + 32);
        if (!_mm256_movemask_epi8(_mm256_or_si256(a, b))) {
            if (!_mm256_testz_si256(cut, cut)) break;
            prev = b;
            continue;
        }
        __m256i e = _mm256_or_si256(check32(prev, a), check32(a, b));
        if (!_mm256_testz_si256(e, e)) break;
        prev = b;
        cut = _mm256_subs_epu8(b, max);
    }
    return i;
}

/* ---- AVX-512: 64 bytes a step ---- */

#define TARGET_AVX512 __attribute__((target("avx512f,avx512bw")))

static inline TARGET_AVX512 __m512i load64(const uint8_t *p)
{
    return _mm512_loadu_si512((const void *)p);
}

/* check32 on 64 bytes: each lane sees the lane before it (the last of prev for the first). */
static inline TARGET_AVX512 __m512i check64(__m512i prev, __m512i cur)
{
    const __m512i b1h = load64(byte1_high), b1l = load64(byte1_low);
    const __m512i b2h = load64(byte2_high), low = _mm512_set1_epi8(0x0F);
    __m512i before = _mm512_alignr_epi64(cur, prev, 6); /* prev's lane 3, cur's lanes 0..2 */
    __m512i prev1 = _mm512_alignr_epi8(cur, before, 15);
    __m512i e = _mm512_shuffle_epi8(b1h, _mm512_and_si512(_mm512_srli_epi16(prev1, 4), low));
    e = _mm512_and_si512(e, _mm512_shuffle_epi8(b1l, _mm512_and_si512(prev1, low)));
    e = _mm512_and_si512(
        e, _mm512_shuffle_epi8(b2h, _mm512_and_si512(_mm512_srli_epi16(cur, 4), low)));
    __m512i third =
        _mm512_subs_epu8(_mm512_alignr_epi8(cur, before, 14), _mm512_set1_epi8(0xE0 - 0x80));
    __m512i fourth =
        _mm512_subs_epu8(_mm512_alignr_epi8(cur, before, 13), _mm512_set1_epi8(0xF0 - 0x80));
    __m512i must_cont =
        _mm512_and_si512(_mm512_or_si512(third, fourth), _mm512_set1_epi8((char)0x80));
    return _mm512_xor_si512(e, must_cont);
}

static TARGET_AVX512 size_t chunks_avx512(const uint8_t *p, size_t n)
{
    __m512i prev = _mm512_setzero_si512(), cut = _mm512_setzero_si512();
    const __m512i max = load64(last_max);
    size_t i = 0;
    for (; n - i >= 64; i += 64) {
        __m512i a = load64(p + i);
        if (!_mm512_movepi8_mask(a)) {
            if (_mm512_test_epi8_mask(cut, cut)) break;
            prev = a;
            continue;
        }
        __m512i e = check64(prev, a);
        if (_mm512_test_epi8_mask(e, e)) break;
        prev = a;
        cut = _mm512_subs_epu8(a, max);
    }
    return i;
}

wsk_utf8_chunks_fn *wsk_utf8_chunks(int isa)
{
    /* As for unmasking (mask.c): AVX-512 where the CPU has VBMI2 too (Ice Lake, Zen 4 and later),
     * whose clock does not drop after 512-bit instructions as older Xeons' did. */
    if ((isa == WSK_UTF8_AVX512 || isa == WSK_UTF8_BEST) && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vbmi2"))
        return chunks_avx512;
    if ((isa == WSK_UTF8_AVX2 || isa == WSK_UTF8_BEST) && __builtin_cpu_supports("avx2"))
        return chunks_avx2;
    if ((isa == WSK_UTF8_SSSE3 || isa == WSK_UTF8_BEST) && __builtin_cpu_supports("ssse3"))
        return chunks_ssse3;
    return NULL;
}

#else

wsk_utf8_chunks_fn *wsk_utf8_chunks(int isa)
{
    (void)isa;
    return NULL;
}

#endif
