/* Close payloads: which codes may be sent, parsing received payloads, and building payloads
 * with reasons cut on a character boundary. */
#include "msg_control.h"
#include "parse_utf8.h"
#include "test.h"
#include "wskit.h"

static int utf8_ok(const uint8_t *p, size_t n)
{
    uint32_t st = WSK_UTF8_ACCEPT;
    return wsk_utf8_validate(&st, p, n) == 0 && st == WSK_UTF8_ACCEPT;
}

/* The rule written out as a list of ranges, to compare with over the whole 16-bit space. */
static int code_ok_ref(unsigned c)
{
    static const unsigned ranges[][2] = {{1000, 1003}, {1007, 1014}, {3000, 4999}};
    for (size_t i = 0; i < 3; i++)
        if (c >= ranges[i][0] && c <= ranges[i][1]) return 1;
    return 0;
}

static void codes(void)
{
    CHECK(wsk_close_code_valid(1000) && wsk_close_code_valid(1001) && wsk_close_code_valid(1002) &&
              wsk_close_code_valid(1003),
          "1000-1003 valid");
    CHECK(!wsk_close_code_valid(1004) && !wsk_close_code_valid(1005) && !wsk_close_code_valid(1006),
          "1004 (reserved), 1005 and 1006 (local only) invalid");
    CHECK(wsk_close_code_valid(1007) && wsk_close_code_valid(1011) && wsk_close_code_valid(1014),
          "1007-1014 valid");
    CHECK(!wsk_close_code_valid(1015) && !wsk_close_code_valid(1016) && !wsk_close_code_valid(2999),
          "1015 (TLS, local only) and 1016-2999 invalid");
    CHECK(!wsk_close_code_valid(0) && !wsk_close_code_valid(999), "0-999 invalid");
    CHECK(wsk_close_code_valid(3000) && wsk_close_code_valid(3999) && wsk_close_code_valid(4000) &&
              wsk_close_code_valid(4999),
          "3000-4999 valid");
    CHECK(!wsk_close_code_valid(5000) && !wsk_close_code_valid(65535) &&
              !wsk_close_code_valid(65536 + 1000) && !wsk_close_code_valid(~0u),
          ">= 5000 invalid, including values that alias valid ones modulo 2^16");
    int bad = 0;
    for (unsigned c = 0; c < 70000; c++)
        bad += !EXPECT(wsk_close_code_valid(c) == code_ok_ref(c), "code %u", c);
    CHECK(bad == 0, "every code 0..69999 matches the list of ranges");
}

static void parse(void)
{
    unsigned code = 1;
    const uint8_t *reason = (const uint8_t *)"x";
    size_t rlen = 9;
    const uint8_t empty[1] = {0};

    CHECK(wsk_close_parse(empty, 0, &code, &reason, &rlen) == 0 && code == 1005 && rlen == 0,
          "empty payload: 1005, no reason");
    CHECK(wsk_close_parse(NULL, 0, &code, &reason, &rlen) == 0 && code == 1005 && rlen == 0,
          "empty payload with p NULL");
    CHECK(wsk_close_parse((const uint8_t *)"\x03", 1, &code, &reason, &rlen) == WSK_ERR_PROTOCOL,
          "one byte: protocol error");

    const uint8_t normal[] = {0x03, 0xE8};
    CHECK(wsk_close_parse(normal, 2, &code, &reason, &rlen) == 0 && code == 1000 && rlen == 0 &&
              reason == normal + 2,
          "1000 without reason");
    const uint8_t withr[] = "\x0F\xA0hello";
    CHECK(wsk_close_parse(withr, 7, &code, &reason, &rlen) == 0 && code == 4000 && rlen == 5 &&
              reason == withr + 2,
          "4000 with reason, reason points into p");
    const uint8_t utf[] = "\x03\xE9\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5";
    CHECK(wsk_close_parse(utf, sizeof utf - 1, &code, &reason, &rlen) == 0 && code == 1001 &&
              rlen == 11,
          "UTF-8 reason");

    /* Codes through parse: the same rule as wsk_close_code_valid for every 16-bit value. */
    int bad = 0;
    for (unsigned c = 0; c < 65536; c++) {
        uint8_t p[2] = {(uint8_t)(c >> 8), (uint8_t)c};
        int r = wsk_close_parse(p, 2, &code, &reason, &rlen);
        bad += !EXPECT(code_ok_ref(c) ? r == 0 && code == c : r == WSK_ERR_PROTOCOL, "code %u: %d",
                       c, r);
    }
    CHECK(bad == 0, "every 16-bit code: valid ones parse, the rest are protocol errors");

    const uint8_t badutf[] = "\x03\xE8\xCE\xBA\xFF";
    CHECK(wsk_close_parse(badutf, 5, &code, &reason, &rlen) == WSK_ERR_UTF8,
          "invalid UTF-8 reason: UTF-8 error");
    const uint8_t cut[] = "\x03\xE8\xCE";
    CHECK(wsk_close_parse(cut, 3, &code, &reason, &rlen) == WSK_ERR_UTF8,
          "reason ending inside a character: UTF-8 error");
    const uint8_t surrogate[] = "\x03\xE8\xED\xA0\x80";
    CHECK(wsk_close_parse(surrogate, 5, &code, &reason, &rlen) == WSK_ERR_UTF8,
          "surrogate in reason: UTF-8 error");
    const uint8_t both[] = "\x03\xED\xFF";
    CHECK(wsk_close_parse(both, 3, &code, &reason, &rlen) == WSK_ERR_PROTOCOL,
          "invalid code and invalid reason: the code is reported");

    uint8_t big[126];
    big[0] = 0x03, big[1] = 0xE8;
    memset(big + 2, 'a', sizeof big - 2);
    CHECK(wsk_close_parse(big, 125, &code, &reason, &rlen) == 0 && rlen == 123,
          "125 bytes: 123-byte reason");
    CHECK(wsk_close_parse(big, 126, &code, &reason, &rlen) == WSK_ERR_PROTOCOL,
          "126 bytes: over the control frame limit");

    code = 7, rlen = 7, reason = NULL;
    int r = wsk_close_parse((const uint8_t *)"\x03\xEE", 2, &code, &reason, &rlen);
    CHECK(r == WSK_ERR_PROTOCOL && code == 7 && rlen == 7 && reason == NULL,
          "outputs untouched on error");
}

static void build(void)
{
    uint8_t out[125 + 8];
    const char *r;
    unsigned code;
    const uint8_t *reason;
    size_t rlen;

    memset(out, 0xEE, sizeof out);
    CHECK(wsk_close_build(out, 0, "ignored", 7) == 0 && out[0] == 0xEE, "code 0: empty payload");
    CHECK(wsk_close_build(out, 1000, NULL, 0) == 2 && out[0] == 0x03 && out[1] == 0xE8,
          "1000, no reason");
    CHECK(wsk_close_build(out, 4999, "bye", 3) == 5 && out[0] == 0x13 && out[1] == 0x87 &&
              !memcmp(out + 2, "bye", 3),
          "4999 with a reason");

    char longr[300];
    memset(longr, 'a', sizeof longr);
    memset(out, 0xEE, sizeof out);
    size_t n = wsk_close_build(out, 1001, longr, 123);
    CHECK(n == 125 && out[124] == 'a', "123-byte reason fits exactly");
    memset(out, 0xEE, sizeof out);
    n = wsk_close_build(out, 1001, longr, sizeof longr);
    CHECK(n == 125 && out[125] == 0xEE, "ASCII reason cut to 123 bytes, nothing written past 125");

    /* A character of each length straddling the 123-byte limit at each offset: the cut lands
     * before it, and the payload always parses back. */
    static const char *chars[] = {"\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80"};
    int bad = 0;
    for (size_t c = 0; c < 3; c++) {
        size_t clen = c + 2;
        for (size_t start = 115; start <= 123; start++) {
            memset(longr, 'a', sizeof longr);
            memcpy(longr + start, chars[c], clen);
            n = wsk_close_build(out, 1000, longr, start + clen + 10);
            size_t want = start + clen <= 123 ? 123 : start;
            bad += !EXPECT(n == 2 + want, "char %zu at %zu: %zu", clen, start, n);
            int p = wsk_close_parse(out, n, &code, &reason, &rlen);
            bad += !EXPECT(p == 0 && code == 1000 && rlen == n - 2, "char %zu at %zu", clen, start);
        }
    }
    /* Reasons made only of multi-byte characters, of every length up to 300 bytes. */
    for (size_t c = 0; c < 3; c++) {
        size_t clen = c + 2;
        for (size_t len = 0; len + clen <= sizeof longr; len += clen) {
            for (size_t i = 0; i < len; i += clen) memcpy(longr + i, chars[c], clen);
            n = wsk_close_build(out, 3000, longr, len);
            size_t want = len <= 123 ? len : 123 / clen * clen;
            int p = wsk_close_parse(out, n, &code, &reason, &rlen);
            bad += !EXPECT(n == 2 + want && p == 0 && code == 3000 && utf8_ok(out + 2, n - 2) &&
                               !memcmp(out + 2, longr, want),
                           "len %zu of %zu-byte chars: %zu", len, clen, n);
        }
    }
    CHECK(bad == 0, "long reasons are cut on a character boundary and parse back");

    /* Reasons that are not UTF-8 are cut before the first invalid byte. */
    static const struct {
        const char *in;
        size_t keep;
    } invalid[] = {
        {"ab\xFF"
         "cd",
         2},
        {"ab\xE2\x82", 2},
        {"\xC0\xAF", 0},
        {"ok\xED\xA0\x80", 2},
        {"\xE2\x82\xAC\x80", 3},
    };
    bad = 0;
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        n = wsk_close_build(out, 1000, invalid[i].in, strlen(invalid[i].in));
        bad += !EXPECT(n == 2 + invalid[i].keep && !memcmp(out + 2, invalid[i].in, n - 2) &&
                           wsk_close_parse(out, n, &code, &reason, &rlen) == 0,
                       "invalid reason %zu: %zu", i, n);
    }
    CHECK(bad == 0, "reasons that are not UTF-8 are cut before the first invalid byte");

    r = "\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5";
    n = wsk_close_build(out, 1011, r, strlen(r));
    CHECK(wsk_close_parse(out, n, &code, &reason, &rlen) == 0 && code == 1011 &&
              rlen == strlen(r) && !memcmp(reason, r, rlen),
          "build then parse round trip");
}

int main(void)
{
    codes();
    parse();
    build();
    return TEST_DONE();
}
