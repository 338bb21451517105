/* Base64 (wsk_base64_encode/decode) and SHA-1 (wsk_sha1) of lib/crypto.c: the RFC 4648 and
 * RFC 3174 test vectors, the strict decoding contract, and round trips of every length. */
#include "crypto.h"
#include "test.h"
#include "wskit.h"

#include <stdint.h>

static void base64_vectors(void)
{
    /* RFC 4648 section 10. */
    static const char *const v[][2] = {{"", ""},
                                       {"f", "Zg=="},
                                       {"fo", "Zm8="},
                                       {"foo", "Zm9v"},
                                       {"foob", "Zm9vYg=="},
                                       {"fooba", "Zm9vYmE="},
                                       {"foobar", "Zm9vYmFy"}};
    int bad = 0;
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char out[16];
        uint8_t back[16];
        size_t n = strlen(v[i][0]);
        size_t len = wsk_base64_encode(v[i][0], n, out);
        bad += !EXPECT(len == strlen(v[i][1]) && !strcmp(out, v[i][1]), "encode \"%s\": %s",
                       v[i][0], out);
        long d = wsk_base64_decode(v[i][1], strlen(v[i][1]), back);
        bad += !EXPECT(d == (long)n && !memcmp(back, v[i][0], n), "decode %s: %ld", v[i][1], d);
    }
    CHECK(bad == 0, "base64: the RFC 4648 test vectors, both ways");
}

static void base64_strict(void)
{
    static const char *const refused[] = {"Zg",       "Zg=",      "Zm9",  "Zm 9v",     "Zm9v\n",
                                          "Zm9v    ", "  Zm9v  ", "Z!==", "Zg==Zg==x", "===="};
    uint8_t out[16];
    int bad = 0;
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        bad += !EXPECT(wsk_base64_decode(refused[i], strlen(refused[i]), out) == WSK_ERR_INVAL,
                       "\"%s\" accepted", refused[i]);
    CHECK(bad == 0, "base64: unpadded input, whitespace and foreign characters are refused");
}

static void base64_round_trips(void)
{
    uint8_t in[300], back[300];
    char enc[WSK_BASE64_SIZE(300)];
    int bad = 0;
    for (size_t i = 0; i < sizeof in; i++) in[i] = (uint8_t)(i * 151 + 7);
    for (size_t n = 0; n <= sizeof in; n++) {
        memset(enc, '#', sizeof enc);
        size_t len = wsk_base64_encode(in, n, enc);
        bad += !EXPECT(len == (n + 2) / 3 * 4 && enc[len] == '\0' && len + 1 <= WSK_BASE64_SIZE(n),
                       "length %zu", n);
        bad += !EXPECT(wsk_base64_decode(enc, len, back) == (long)n && !memcmp(back, in, n),
                       "round trip %zu", n);
    }
    CHECK(bad == 0, "base64: every length 0..300 encodes into WSK_BASE64_SIZE and decodes back");
}

static int hex_eq(const uint8_t *d, const char *hex)
{
    char s[41];
    for (int i = 0; i < 20; i++) snprintf(s + 2 * i, 3, "%02x", d[i]);
    return !strcmp(s, hex);
}

static void sha1_vectors(void)
{
    uint8_t d[20];
    /* RFC 3174 section 7.3, TEST1 and TEST2, whole and split in two at every point. */
    static const char t1[] = "abc";
    static const char t2[] = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    wsk_sha1(t1, 3, "", 0, d);
    CHECK(hex_eq(d, "a9993e364706816aba3e25717850c26c9cd0d89d"), "sha1: RFC 3174 TEST1");
    int bad = 0;
    for (size_t k = 0; k <= sizeof t2 - 1; k++) {
        wsk_sha1(t2, k, t2 + k, sizeof t2 - 1 - k, d);
        bad += !EXPECT(hex_eq(d, "84983e441c3bd26ebaae4aa1f95129e5e54670f1"), "split at %zu", k);
    }
    CHECK(bad == 0, "sha1: RFC 3174 TEST2, its two parts split at every point");
}

int main(void)
{
    base64_vectors();
    base64_strict();
    base64_round_trips();
    sha1_vectors();
    return TEST_DONE();
}
