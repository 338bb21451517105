/* UTF-8 validation: see parse_utf8.h.
 *
 * RFC 6455 8.1 has an endpoint fail the connection on invalid UTF-8 in a text message, and lets
 * it do so as soon as the bytes can no longer be a prefix of valid UTF-8.  An exact automaton
 * does that: it accepts precisely the grammar of RFC 3629 section 4, so the byte that starts an
 * overlong form, a surrogate (U+D800..DFFF), a code point above U+10FFFF or a broken sequence
 * is refused itself, without waiting for the rest of the message.
 *
 * Speed: ASCII, the bulk of most text, skips the automaton 64 bytes at a time with SSE2 (one
 * movemask of four ORed 16-byte loads; SSE2 is part of x86_64) and 16 or 8 at a time in 64-bit
 * words elsewhere (wsk_utf8_validate_portable, which the tests hold the SSE2 path to).  In the
 * automaton, a state is a bit offset and each byte class has one 64-bit row holding, at each
 * state's offset, the 6-bit offset of the next state.  The step is then a shift and a mask: the
 * table lookup depends only on the input byte, so the chain from one byte to the next is two
 * cycles instead of a load.  Text with non-ASCII characters goes 64 bytes at a time through
 * vector table lookups where the CPU has them (parse_utf8_simd.c), which only say whether a
 * chunk is right; the automaton keeps the state across calls and finds the failing byte. */
#include "parse_utf8.h"
#include "wskit.h"

#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Byte classes: the distinctions RFC 3629's grammar makes between bytes. */
enum {
    C_ASC, /* 00..7F */
    C_CLO, /* 80..8F continuation */
    C_CMI, /* 90..9F continuation */
    C_CHI, /* A0..BF continuation */
    C_L2,  /* C2..DF: 2-byte lead */
    C_E0,  /* E0: next byte A0..BF, lower would be overlong */
    C_L3,  /* E1..EC, EE..EF: 3-byte lead */
    C_ED,  /* ED: next byte 80..9F, higher would be a surrogate */
    C_F0,  /* F0: next byte 90..BF, lower would be overlong */
    C_L4,  /* F1..F3: 4-byte lead */
    C_F4,  /* F4: next byte 80..8F, higher would be above U+10FFFF */
    C_BAD, /* C0, C1 (always overlong), F5..FF (above U+10FFFF or not UTF-8) */
    NCLASS
};

/* States, as bit offsets into a row (9 states x 6 bits fit in 64). */
enum {
    S_ACCEPT = WSK_UTF8_ACCEPT, /* between characters */
    S_REJECT = 6,               /* failed; stays failed */
    S_TAIL1 = 12,               /* one more continuation byte, any of 80..BF */
    S_TAIL2 = 18,               /* two more */
    S_TAIL3 = 24,               /* three more */
    S_E0 = 30,                  /* after E0 */
    S_ED = 36,                  /* after ED */
    S_F0 = 42,                  /* after F0 */
    S_F4 = 48,                  /* after F4 */
};

/* A row: where each state goes on a byte of one class (REJECT always stays REJECT). */
#define ROW(acc, t1, t2, t3, e0, ed, f0, f4)                                                       \
    ((uint64_t)(acc) << S_ACCEPT | (uint64_t)S_REJECT << S_REJECT | (uint64_t)(t1) << S_TAIL1 |    \
     (uint64_t)(t2) << S_TAIL2 | (uint64_t)(t3) << S_TAIL3 | (uint64_t)(e0) << S_E0 |              \
     (uint64_t)(ed) << S_ED | (uint64_t)(f0) << S_F0 | (uint64_t)(f4) << S_F4)
#define R S_REJECT

/* clang-format off */
static const uint64_t rows[NCLASS] = {
    /*            ACCEPT    TAIL1     TAIL2    TAIL3    E0       ED       F0       F4 */
    [C_ASC] = ROW(S_ACCEPT, R,        R,       R,       R,       R,       R,       R),
    [C_CLO] = ROW(R,        S_ACCEPT, S_TAIL1, S_TAIL2, R,       S_TAIL1, R,       S_TAIL2),
    [C_CMI] = ROW(R,        S_ACCEPT, S_TAIL1, S_TAIL2, R,       S_TAIL1, S_TAIL2, R),
    [C_CHI] = ROW(R,        S_ACCEPT, S_TAIL1, S_TAIL2, S_TAIL1, R,       S_TAIL2, R),
    [C_L2]  = ROW(S_TAIL1,  R,        R,       R,       R,       R,       R,       R),
    [C_E0]  = ROW(S_E0,     R,        R,       R,       R,       R,       R,       R),
    [C_L3]  = ROW(S_TAIL2,  R,        R,       R,       R,       R,       R,       R),
    [C_ED]  = ROW(S_ED,     R,        R,       R,       R,       R,       R,       R),
    [C_F0]  = ROW(S_F0,     R,        R,       R,       R,       R,       R,       R),
    [C_L4]  = ROW(S_TAIL3,  R,        R,       R,       R,       R,       R,       R),
    [C_F4]  = ROW(S_F4,     R,        R,       R,       R,       R,       R,       R),
    [C_BAD] = ROW(R,        R,        R,       R,       R,       R,       R,       R),
};

#define X8(c) c, c, c, c, c, c, c, c
#define X16(c) X8(c), X8(c)
static const uint8_t byte_class[256] = {
    X16(C_ASC), X16(C_ASC), X16(C_ASC), X16(C_ASC), /* 00..3F */
    X16(C_ASC), X16(C_ASC), X16(C_ASC), X16(C_ASC), /* 40..7F */
    X16(C_CLO), X16(C_CMI), X16(C_CHI), X16(C_CHI), /* 80..BF */
    C_BAD, C_BAD, C_L2, C_L2, C_L2, C_L2, C_L2, C_L2, X8(C_L2), X16(C_L2), /* C0..DF */
    C_E0, C_L3, C_L3, C_L3, C_L3, C_L3, C_L3, C_L3,                        /* E0..E7 */
    C_L3, C_L3, C_L3, C_L3, C_L3, C_ED, C_L3, C_L3,                        /* E8..EF */
    C_F0, C_L4, C_L4, C_L4, C_F4, C_BAD, C_BAD, C_BAD, X8(C_BAD),          /* F0..FF */
};
/* clang-format on */
#undef R
#undef X8
#undef X16

#define HIGH_BITS 0x8080808080808080ull

static inline uint64_t load64(const uint8_t *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

/* The first non-ASCII byte of p[i, n), or n: 16 bytes a test, then 8, then one load that
 * overlaps what was checked (short messages mostly end there), then bytes. */
static inline size_t ascii_end_words(const uint8_t *p, size_t i, size_t n)
{
    while (n - i >= 16 && !((load64(p + i) | load64(p + i + 8)) & HIGH_BITS)) i += 16;
    if (n - i >= 8 && !(load64(p + i) & HIGH_BITS)) i += 8;
    if (n - i < 8 && n >= 8 && !(load64(p + n - 8) & HIGH_BITS)) return n;
    while (i < n && p[i] < 0x80) i++;
    return i;
}

#if defined(__SSE2__)
static inline __m128i load128(const uint8_t *p)
{
    return _mm_loadu_si128((const __m128i *)(const void *)p);
}

/* The same with SSE2: 64 bytes a test, then 16, where the movemask also says which byte. */
static inline size_t ascii_end_fast(const uint8_t *p, size_t i, size_t n)
{
    for (; n - i >= 64; i += 64) {
        __m128i a = _mm_or_si128(load128(p + i), load128(p + i + 16));
        __m128i b = _mm_or_si128(load128(p + i + 32), load128(p + i + 48));
        if (_mm_movemask_epi8(_mm_or_si128(a, b))) break;
    }
    for (; n - i >= 16; i += 16) {
        unsigned m = (unsigned)_mm_movemask_epi8(load128(p + i));
        if (m) return i + (size_t)__builtin_ctz(m);
    }
    return ascii_end_words(p, i, n);
}
#else
static inline size_t ascii_end_fast(const uint8_t *p, size_t i, size_t n)
{
    return ascii_end_words(p, i, n);
}
#endif

/* Where the automaton restarts after chunks [lo, b) passed: the lead byte of a character that
 * the end cuts (the checker does not look past b), or b when none is cut. */
static inline size_t char_start(const uint8_t *p, size_t lo, size_t b)
{
    if (b - lo >= 1 && p[b - 1] >= 0xC0) return b - 1;
    if (b - lo >= 2 && p[b - 2] >= 0xE0) return b - 2;
    if (b - lo >= 3 && p[b - 3] >= 0xF0) return b - 3;
    return b;
}

/* The automaton, with one of the two ASCII skips (inlined into each caller below).  With a
 * chunk checker, non-ASCII text of 64 bytes or more goes to it first; the automaton takes what
 * is left, and the bytes of a chunk that failed (to find the first wrong byte exactly). */
static inline int validate(uint32_t *state, const uint8_t *p, size_t n, int fast,
                           wsk_utf8_chunks_fn *chunks)
{
    uint64_t s = *state;
    size_t i = 0;

    /* A failed state stays failed; one this function never produced is refused too. */
    if (s == S_REJECT || s > S_F4 || s % 6) return WSK_ERR_UTF8;
    while (i < n) {
        if (s == S_ACCEPT) {
            i = fast ? ascii_end_fast(p, i, n) : ascii_end_words(p, i, n);
            if (i == n) break;
            if (chunks && n - i >= 64) {
                size_t b = i + chunks(p + i, n - i);
                if (n - b >= 64) chunks = NULL; /* a chunk failed: the automaton finds where */
                i = char_start(p, i, b);
                continue;
            }
        }
        /* Non-ASCII text: stay in the automaton until it is between characters with an ASCII
         * byte next, so text in other scripts does not pay for ASCII checks per character. */
        do {
            s = (rows[byte_class[p[i++]]] >> s) & 63;
            if (s == S_REJECT) {
                *state = S_REJECT;
                return WSK_ERR_UTF8;
            }
        } while (i < n && (s != S_ACCEPT || p[i] >= 0x80));
    }
    *state = (uint32_t)s;
    return 0;
}

static inline uint32_t load32(const uint8_t *p)
{
    uint32_t w;
    memcpy(&w, p, 4);
    return w;
}

/* 1 when p[0..n), n <= 32, is all ASCII: a few overlapping word loads, no loop. */
static inline int ascii_short(const uint8_t *p, size_t n)
{
    if (n >= 16)
        return !((load64(p) | load64(p + 8) | load64(p + n - 16) | load64(p + n - 8)) & HIGH_BITS);
    if (n >= 8) return !((load64(p) | load64(p + n - 8)) & HIGH_BITS);
    if (n >= 4) return !((load32(p) | load32(p + n - 4)) & 0x80808080u);
    uint8_t b = 0;
    for (size_t i = 0; i < n; i++) b |= p[i];
    return b < 0x80;
}

int wsk_utf8_validate(uint32_t *state, const uint8_t *p, size_t n)
{
    /* A short ASCII piece between characters, the text of most small messages: settled here
     * without the automaton's entry checks.  Only 64 bytes or more can use the vector chunk
     * checker, so shorter text does not ask which one the CPU has. */
    if (*state == S_ACCEPT && n <= 32 && ascii_short(p, n)) return 0;
    return validate(state, p, n, 1, n >= 64 ? wsk_utf8_chunks(WSK_UTF8_BEST) : NULL);
}

int wsk_utf8_validate_with(uint32_t *state, const uint8_t *p, size_t n, wsk_utf8_chunks_fn *chunks)
{
    return validate(state, p, n, 1, chunks);
}

int wsk_utf8_validate_portable(uint32_t *state, const uint8_t *p, size_t n)
{
    return validate(state, p, n, 0, NULL);
}

int wsk_utf8_valid(const void *p, size_t n)
{
    uint32_t s = WSK_UTF8_ACCEPT;
    return wsk_utf8_validate(&s, p, n) == 0 && s == WSK_UTF8_ACCEPT;
}

size_t wsk_utf8_valid_prefix(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t s = S_ACCEPT;
    size_t i = 0, whole = 0;
    while (i < n) {
        if (s == S_ACCEPT) {
            while (n - i >= 8 && !(load64(b + i) & HIGH_BITS)) i += 8;
            while (i < n && b[i] < 0x80) i++;
            whole = i;
            if (i == n) break;
        }
        s = (rows[byte_class[b[i++]]] >> s) & 63;
        if (s == S_REJECT) break;
        if (s == S_ACCEPT) whole = i;
    }
    return whole;
}
