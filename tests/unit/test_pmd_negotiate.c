/* permessage-deflate negotiation: modes, server answers, client offers and validation, and
 * every client configuration against every server configuration. */
#include "pmd.h"
#include "test.h"

enum { DIS = WSK_COMPRESS_DISABLE, SH = WSK_COMPRESS_SHARED, DED = WSK_COMPRESS_DEDICATED };
enum { K3 = WSK_COMPRESS_3KB, K4 = WSK_COMPRESS_4KB, K16 = WSK_COMPRESS_16KB };
enum { K64 = WSK_COMPRESS_64KB, K256 = WSK_COMPRESS_256KB, NMODES = K256 + 1 };

#define MAXV 3

/* Slices for a NULL-terminated list of at most MAXV strings; returns how many. */
static size_t slices(const char *const *v, wsk_pmd_slice *s)
{
    size_t n = 0;
    for (; n < MAXV && v[n]; n++) s[n] = (wsk_pmd_slice){v[n], strlen(v[n])};
    return n;
}

static int server(int c, int d, const char *const *v, wsk_pmd_params *p, char *out)
{
    wsk_pmd_config cfg = {c, d, 0};
    wsk_pmd_slice s[MAXV];
    return wsk_pmd_server_negotiate(&cfg, s, slices(v, s), p, out, WSK_PMD_HEADER_MAX);
}

static int client(int c, int d, const char *const *v, wsk_pmd_params *p)
{
    wsk_pmd_config cfg = {c, d, 0};
    wsk_pmd_slice s[MAXV];
    return wsk_pmd_client_accept(&cfg, s, slices(v, s), p);
}

static void test_modes(void)
{
    static const struct {
        const char *name;
        int mode;
    } t[] = {
        {"disable", DIS},
        {"false", DIS},
        {"shared", SH},
        {"true", SH},
        {"dedicated", DED},
        {"3KB", K3},
        {"4KB", K4},
        {"8KB", WSK_COMPRESS_8KB},
        {"16KB", K16},
        {"32KB", WSK_COMPRESS_32KB},
        {"64kb", K64},
        {"128KB", WSK_COMPRESS_128KB},
        {"256KB", K256},
        {"Shared", SH},
        {"", WSK_ERR_INVAL},
        {"2KB", WSK_ERR_INVAL},
        {"shared ", WSK_ERR_INVAL},
        {"512KB", WSK_ERR_INVAL},
    };
    int ok = 1;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        ok &= EXPECT(wsk_pmd_mode_parse(t[i].name) == t[i].mode, "\"%s\"", t[i].name);
    CHECK(ok, "mode names parse to their modes (Bun's names, true/false, any case)");
    CHECK(wsk_pmd_mode_parse(NULL) == WSK_ERR_INVAL, "NULL mode name is invalid");
    CHECK(!strcmp(wsk_pmd_mode_name(K3), "3KB") && !strcmp(wsk_pmd_mode_name(99), "?"),
          "mode names");

    /* uWebSockets: DEDICATED_COMPRESSOR_3KB = windowBits 9, memLevel 1 ... 256KB = 15, 8. */
    static const int zl[NMODES][2] = {{0, 0},  {15, 8}, {15, 8}, {9, 1},  {9, 2}, {10, 3},
                                      {11, 4}, {12, 5}, {13, 6}, {14, 7}, {15, 8}};
    static const int kb[NMODES] = {0, 0, 0, 3, 4, 8, 16, 32, 64, 128, 256};
    ok = wsk_pmd_mode_zlib(DIS, NULL, NULL) == WSK_ERR_INVAL &&
         wsk_pmd_mode_zlib(NMODES, NULL, NULL) == WSK_ERR_INVAL;
    for (int m = SH; m < NMODES; m++) {
        int w = 0, l = 0;
        ok &= EXPECT(wsk_pmd_mode_zlib(m, &w, &l) == 0 && w == zl[m][0] && l == zl[m][1],
                     "mode %s: %d/%d", wsk_pmd_mode_name(m), w, l);
        /* The name is the memory: 2^(windowBits+2) + 2^(memLevel+9) bytes. */
        ok &= EXPECT(!kb[m] || (1 << (w + 2)) + (1 << (l + 9)) == kb[m] * 1024, "mode %s size",
                     wsk_pmd_mode_name(m));
    }
    CHECK(ok, "modes map to uWebSockets' windowBits/memLevel");
}

#define PMD  "permessage-deflate"
#define SNCT "; server_no_context_takeover"
#define CNCT "; client_no_context_takeover"

static void test_server(void)
{
    static const struct {
        int c, d;
        const char *v[MAXV + 1];
        const char *want; /* NULL: declined */
        const char *what;
    } t[] = {
        /* shared: always server_no_context_takeover and client_no_context_takeover */
        {SH, SH, {PMD "; client_max_window_bits"}, PMD SNCT CNCT, "shared, browser offer"},
        {SH, SH, {PMD}, PMD SNCT CNCT, "shared, bare offer"},
        {SH, SH, {PMD SNCT CNCT}, PMD SNCT CNCT, "shared, both no_context_takeover"},
        {SH,
         SH,
         {PMD "; server_max_window_bits=15"},
         PMD SNCT CNCT "; server_max_window_bits=15",
         "shared, server_max_window_bits=15 answered"},
        {SH,
         SH,
         {PMD "; server_max_window_bits=10"},
         PMD SNCT CNCT "; server_max_window_bits=10",
         "shared lowers its window: the loop keeps a compressor per window"},
        {SH,
         SH,
         {PMD "; server_max_window_bits=8, " PMD},
         PMD SNCT CNCT "; server_max_window_bits=8",
         "shared takes the first offer, even with the smallest window"},
        /* dedicated (256KB) */
        {DED, DED, {PMD "; client_max_window_bits"}, PMD, "dedicated, browser offer"},
        {DED, DED, {PMD}, PMD, "dedicated, bare offer"},
        {DED, DED, {PMD SNCT}, PMD SNCT, "dedicated, server_no_context_takeover echoed"},
        {DED, DED, {PMD CNCT}, PMD CNCT, "dedicated, client_no_context_takeover echoed"},
        {DED,
         DED,
         {PMD "; server_max_window_bits=10; client_max_window_bits=12"},
         PMD "; server_max_window_bits=10",
         "dedicated, smaller server window honoured"},
        {DED,
         DED,
         {PMD "; server_max_window_bits=8"},
         PMD "; server_max_window_bits=8",
         "dedicated, server window 8"},
        /* small dedicated windows */
        {K3,
         K3,
         {PMD "; client_max_window_bits"},
         PMD "; server_max_window_bits=9; client_max_window_bits=9",
         "3KB, browser offer"},
        {K3,
         K3,
         {PMD},
         PMD CNCT "; server_max_window_bits=9",
         "3KB, no client_max_window_bits: shared inflater and client_no_context_takeover"},
        {K3,
         K3,
         {PMD "; server_max_window_bits=8; client_max_window_bits=8"},
         PMD "; server_max_window_bits=8; client_max_window_bits=8",
         "3KB, windows of 8"},
        {K64,
         K16,
         {PMD "; client_max_window_bits"},
         PMD "; server_max_window_bits=13; client_max_window_bits=11",
         "64KB/16KB"},
        {K64,
         K16,
         {PMD "; server_max_window_bits=15; client_max_window_bits=15"},
         PMD "; server_max_window_bits=13; client_max_window_bits=11",
         "offered 15s lowered"},
        {K64,
         K16,
         {PMD "; client_max_window_bits=10"},
         PMD "; server_max_window_bits=13; client_max_window_bits=10",
         "client's own 10 kept"},
        /* one direction disabled */
        {DIS,
         SH,
         {PMD SNCT "; server_max_window_bits=9"},
         PMD SNCT CNCT "; server_max_window_bits=9",
         "compressor off: offer echoed"},
        {DED, DIS, {PMD}, PMD CNCT, "decompressor off acts as shared"},
        {DIS, DIS, {PMD}, NULL, "both off: never"},
        /* invalid offers are declined, valid ones after them taken */
        {DED, DED, {PMD "; foo"}, NULL, "unknown parameter"},
        {DED, DED, {PMD SNCT SNCT}, NULL, "duplicated parameter"},
        {DED,
         DED,
         {PMD "; client_max_window_bits; client_max_window_bits=10"},
         NULL,
         "duplicated client_max_window_bits"},
        {DED, DED, {PMD "; server_max_window_bits"}, NULL, "server_max_window_bits needs a value"},
        {DED, DED, {PMD "; server_max_window_bits=16"}, NULL, "window 16"},
        {DED, DED, {PMD "; server_max_window_bits=7"}, NULL, "window 7"},
        {DED, DED, {PMD "; server_max_window_bits=010"}, NULL, "leading zero"},
        {DED, DED, {PMD "; client_max_window_bits=abc"}, NULL, "not a number"},
        {DED, DED, {PMD "; server_no_context_takeover=1"}, NULL, "value on a flag"},
        {DED,
         DED,
         {PMD "; foo, " PMD "; server_max_window_bits=12"},
         PMD "; server_max_window_bits=12",
         "invalid first offer skipped"},
        /* syntax */
        {DED,
         DED,
         {PMD "; server_max_window_bits=\"10\""},
         PMD "; server_max_window_bits=10",
         "quoted value"},
        {DED,
         DED,
         {PMD "; server_max_window_bits=\"1\\1\""},
         PMD "; server_max_window_bits=11",
         "quoted value with an escape"},
        {DED, DED, {PMD "; server_max_window_bits=\"\""}, NULL, "empty quoted value"},
        {DED, DED, {PMD "; server_max_window_bits=\"10"}, NULL, "unterminated quote"},
        {DED,
         DED,
         {"PerMessage-Deflate; Server_Max_Window_Bits=11"},
         PMD "; server_max_window_bits=11",
         "names are case-insensitive"},
        {DED,
         DED,
         {" \t" PMD " ;server_max_window_bits = 12 ,"},
         PMD "; server_max_window_bits=12",
         "whitespace around everything"},
        {DED,
         DED,
         {", ,x-webkit-deflate-frame; no_context_takeover, " PMD SNCT},
         PMD SNCT,
         "empty elements and another extension first"},
        {DED, DED, {PMD ";"}, NULL, "empty parameter"},
        {DED, DED, {PMD "; a=b c"}, NULL, "junk after a value"},
        {DED, DED, {PMD "-x"}, NULL, "another name"},
        {DED, DED, {"\x01\xff" PMD}, NULL, "binary junk"},
        {DED, DED, {PMD "; s\"x, " PMD}, NULL, "a syntax error ends the header value"},
        /* several headers */
        {DED,
         DED,
         {"x-foo", PMD "; foo=1, " PMD SNCT, PMD},
         PMD SNCT,
         "second header's second offer"},
        {DED, DED, {PMD "; foo=\"1", PMD CNCT}, PMD CNCT, "broken header, next one read"},
        {DED, DED, {"", NULL}, NULL, "empty header"},
    };
    int ok = 1;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        wsk_pmd_params p;
        char out[WSK_PMD_HEADER_MAX];
        int n = server(t[i].c, t[i].d, t[i].v, &p, out);
        if (t[i].want)
            ok &= EXPECT(n == (int)strlen(t[i].want) && !strcmp(out, t[i].want) && p.enabled,
                         "%s: got %d \"%s\"", t[i].what, n, out);
        else
            ok &= EXPECT(n == 0 && !out[0] && !p.enabled, "%s: got %d \"%s\"", t[i].what, n, out);
    }
    CHECK(ok, "server answers (%zu offers)", sizeof t / sizeof t[0]);

    /* What the answers mean for the connection. */
    wsk_pmd_params p;
    char out[WSK_PMD_HEADER_MAX];
    server(SH, SH, (const char *[]){PMD, NULL}, &p, out);
    CHECK(p.enabled && p.deflate_bits == 15 && p.deflate_mem == 8 && p.deflate_reset &&
              p.deflate_shared && p.inflate_bits == 15 && p.inflate_reset && p.inflate_shared,
          "shared/shared: both loop objects, reset after every message");
    server(DED, DED, (const char *[]){PMD "; client_max_window_bits", NULL}, &p, out);
    CHECK(p.deflate_bits == 15 && !p.deflate_reset && !p.deflate_shared && p.inflate_bits == 15 &&
              !p.inflate_reset && !p.inflate_shared,
          "dedicated: own objects keeping context");
    server(DED, DED, (const char *[]){PMD SNCT CNCT, NULL}, &p, out);
    CHECK(p.deflate_reset && p.deflate_shared && p.inflate_reset && p.inflate_shared,
          "dedicated without context takeover uses the loop's objects");
    server(K3, K3, (const char *[]){PMD "; server_max_window_bits=8; client_max_window_bits", NULL},
           &p, out);
    CHECK(p.deflate_bits == 8 && p.deflate_mem == 1 && p.inflate_bits == 9 && !p.inflate_shared,
          "3KB with a window of 8: deflate 8, memLevel 1, inflate 9");
    server(K3, SH, (const char *[]){PMD SNCT, NULL}, &p, out);
    CHECK(p.deflate_bits == 9 && p.deflate_reset && p.deflate_shared,
          "small window without context takeover uses the loop's compressors");
    server(DIS, SH, (const char *[]){PMD, NULL}, &p, out);
    CHECK(p.enabled && p.deflate_bits == 0 && !wsk_pmd_should_compress(&(wsk_pmd_config){0}, &p, 9),
          "compressor off: negotiated, never compresses");
    server(DED, DED, (const char *[]){PMD, NULL}, &p, out);
    wsk_pmd_config thr = {DED, DED, 64};
    CHECK(!wsk_pmd_should_compress(&thr, &p, 63) && wsk_pmd_should_compress(&thr, &p, 64),
          "threshold: shorter messages go uncompressed");

    wsk_pmd_config cfg = {DED, DED, 0};
    wsk_pmd_slice s = {PMD SNCT CNCT "; server_max_window_bits=10", 0};
    s.len = strlen(s.p);
    CHECK(wsk_pmd_server_negotiate(&cfg, &s, 1, &p, out, 20) == WSK_ERR_INVAL && !p.enabled,
          "too small an output buffer is an error");
    cfg.compress = 42;
    CHECK(wsk_pmd_server_negotiate(&cfg, &s, 1, &p, out, sizeof out) == WSK_ERR_INVAL,
          "out-of-range mode is an error");
    cfg.compress = DED;
    s.p = NULL;
    CHECK(wsk_pmd_server_negotiate(&cfg, &s, 1, &p, out, sizeof out) == 0 &&
              wsk_pmd_server_negotiate(&cfg, NULL, 0, &p, out, sizeof out) == 0,
          "no header at all: nothing negotiated");
}

static void test_client_offer(void)
{
    static const struct {
        int c, d;
        const char *want;
    } t[] = {
        {DED, DED, PMD "; client_max_window_bits"},
        {SH, SH, PMD SNCT CNCT},
        {K3, K3,
         PMD "; server_max_window_bits=9; client_max_window_bits=9, " PMD SNCT
             "; client_max_window_bits=9"},
        {K256, K64,
         PMD "; server_max_window_bits=13; client_max_window_bits, " PMD SNCT
             "; client_max_window_bits"},
        {DIS, DED, PMD CNCT},
        {DED, DIS, PMD SNCT "; client_max_window_bits"},
        {DIS, DIS, ""},
    };
    int ok = 1;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        wsk_pmd_config cfg = {t[i].c, t[i].d, 0};
        char out[WSK_PMD_HEADER_MAX];
        int n = wsk_pmd_client_offer(&cfg, out, sizeof out);
        ok &= EXPECT(n == (int)strlen(t[i].want) && !strcmp(out, t[i].want), "%s/%s: \"%s\"",
                     wsk_pmd_mode_name(t[i].c), wsk_pmd_mode_name(t[i].d), out);
    }
    CHECK(ok, "client offers");
    char small[8];
    CHECK(wsk_pmd_client_offer(&(wsk_pmd_config){DED, DED, 0}, small, sizeof small) ==
              WSK_ERR_INVAL,
          "client offer: too small a buffer");
}

static void test_client_accept(void)
{
    enum { BAD = WSK_ERR_HANDSHAKE };
    static const struct {
        int c, d;
        const char *v[MAXV + 1];
        int rc;
        int enabled, dbits, dreset, ibits, ireset; /* expected params when rc == 0 */
        const char *what;
    } t[] = {
        /* dedicated offered "permessage-deflate; client_max_window_bits" */
        {DED, DED, {PMD}, 0, 1, 15, 0, 15, 0, "plain acceptance"},
        {DED, DED, {PMD SNCT}, 0, 1, 15, 0, 15, 1, "server_no_context_takeover"},
        {DED, DED, {PMD CNCT}, 0, 1, 15, 1, 15, 0, "client_no_context_takeover"},
        {DED, DED, {PMD "; client_max_window_bits=10"}, 0, 1, 10, 0, 15, 0, "client window 10"},
        {DED, DED, {PMD "; server_max_window_bits=12"}, 0, 1, 15, 0, 12, 0, "server window 12"},
        {DED, DED, {PMD "; server_max_window_bits=\"8\""}, 0, 1, 15, 0, 8, 0, "quoted 8"},
        {DED, DED, {"PERMESSAGE-DEFLATE"}, 0, 1, 15, 0, 15, 0, "case"},
        {DED, DED, {""}, 0, 0, 0, 0, 0, 0, "empty: not negotiated"},
        {DED, DED, {NULL}, 0, 0, 0, 0, 0, 0, "no header: not negotiated"},
        {DED, DED, {PMD "; client_max_window_bits"}, BAD, 0, 0, 0, 0, 0, "valueless client window"},
        {DED, DED, {PMD "; server_max_window_bits=16"}, BAD, 0, 0, 0, 0, 0, "server window 16"},
        {DED, DED, {PMD "; client_max_window_bits=16"}, BAD, 0, 0, 0, 0, 0, "client window 7"},
        {DED, DED, {PMD "; foo"}, BAD, 0, 0, 0, 0, 0, "unknown parameter"},
        {DED, DED, {PMD CNCT CNCT}, BAD, 0, 0, 0, 0, 0, "duplicated parameter"},
        {DED, DED, {PMD ", " PMD}, BAD, 0, 0, 0, 0, 0, "two elements"},
        {DED, DED, {PMD, PMD}, BAD, 0, 0, 0, 0, 0, "two headers"},
        {DED, DED, {"x-foo"}, BAD, 0, 0, 0, 0, 0, "extension not offered"},
        {DED, DED, {PMD "; server_max_window_bits=\"9"}, BAD, 0, 0, 0, 0, 0, "malformed"},
        /* shared offered "permessage-deflate; server_no_context_takeover; client_no_..." */
        {SH, SH, {PMD SNCT}, 0, 1, 15, 1, 15, 1, "shared accepted"},
        {SH, SH, {PMD}, BAD, 0, 0, 0, 0, 0, "requested server_no_context_takeover missing"},
        {SH,
         SH,
         {PMD SNCT "; client_max_window_bits=10"},
         BAD,
         0,
         0,
         0,
         0,
         0,
         "client_max_window_bits not offered"},
        /* 3KB offered "...; server_max_window_bits=9; client_max_window_bits=9" */
        {K3, K3, {PMD "; server_max_window_bits=9"}, 0, 1, 9, 0, 9, 0, "3KB accepted"},
        {K3,
         K3,
         {PMD "; server_max_window_bits=8; client_max_window_bits=8"},
         0,
         1,
         8,
         0,
         8,
         0,
         "3KB lowered to 8"},
        {K3, K3, {PMD}, BAD, 0, 0, 0, 0, 0, "requested server window missing"},
        {K3, K3, {PMD SNCT}, 0, 1, 9, 0, 15, 1, "3KB fallback offer accepted"},
        {K3, K3, {PMD SNCT "; client_max_window_bits=8"}, 0, 1, 8, 0, 15, 1, "fallback, window 8"},
        {K3,
         K3,
         {PMD SNCT "; server_max_window_bits=12"},
         0,
         1,
         9,
         0,
         15,
         1,
         "fallback, any server window"},
        {K3, K3, {PMD "; server_max_window_bits=10"}, BAD, 0, 0, 0, 0, 0, "server window raised"},
        {K3,
         K3,
         {PMD "; server_max_window_bits=9; client_max_window_bits=10"},
         BAD,
         0,
         0,
         0,
         0,
         0,
         "client window raised"},
        /* nothing offered */
        {DIS, DIS, {PMD}, BAD, 0, 0, 0, 0, 0, "answer to no offer"},
        {DIS, DED, {PMD CNCT}, 0, 1, 0, 0, 15, 0, "compressor off: never compresses"},
    };
    int ok = 1;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        wsk_pmd_params p;
        int rc = client(t[i].c, t[i].d, t[i].v, &p);
        ok &= EXPECT(rc == t[i].rc && p.enabled == t[i].enabled &&
                         (rc || !p.enabled ||
                          (p.deflate_bits == t[i].dbits && p.deflate_reset == t[i].dreset &&
                           p.inflate_bits == t[i].ibits && p.inflate_reset == t[i].ireset)),
                     "%s: rc %d enabled %d deflate %d/%d inflate %d/%d", t[i].what, rc, p.enabled,
                     p.deflate_bits, p.deflate_reset, p.inflate_bits, p.inflate_reset);
    }
    CHECK(ok, "client validation of responses (%zu responses)", sizeof t / sizeof t[0]);
}

/* One negotiation: ccfg's offer, scfg's answer to it, and ccfg's verdict on the answer. */
struct nego {
    char offer[WSK_PMD_HEADER_MAX], resp[WSK_PMD_HEADER_MAX];
    int n, r, a; /* offer length, answer length (0: declined), client's verdict (0: accepted) */
    wsk_pmd_params cp, sp;
};

static void negotiate(wsk_pmd_config ccfg, wsk_pmd_config scfg, struct nego *g)
{
    g->n = wsk_pmd_client_offer(&ccfg, g->offer, sizeof g->offer);
    wsk_pmd_slice s = {g->offer, (size_t)g->n};
    g->r = wsk_pmd_server_negotiate(&scfg, &s, g->n > 0, &g->sp, g->resp, sizeof g->resp);
    wsk_pmd_slice rs = {g->resp, (size_t)(g->r > 0 ? g->r : 0)};
    g->a = wsk_pmd_client_accept(&ccfg, &rs, g->r > 0, &g->cp);
}

/* Every client configuration's offer against every server configuration: when the server
 * accepts, the client accepts its answer and each side's compressor fits the other's
 * decompressor. */
static void test_all_pairs(void)
{
    int ok = 1, accepted = 0, declined = 0;
    for (int cc = 0; cc < NMODES; cc++)
        for (int cd = 0; cd < NMODES; cd++)
            for (int sc = 0; sc < NMODES; sc++)
                for (int sd = 0; sd < NMODES; sd++) {
                    struct nego g;
                    negotiate((wsk_pmd_config){cc, cd, 0}, (wsk_pmd_config){sc, sd, 0}, &g);
                    const wsk_pmd_params cp = g.cp, sp = g.sp;
                    const char *offer = g.offer, *resp = g.resp;
                    int n = g.n, r = g.r, a = g.a;
                    int both = (cc || cd) && (sc || sd);
                    accepted += r > 0;
                    declined += both && r == 0;
                    ok &= EXPECT(n >= 0 && r >= 0 && a == 0 && (r > 0) == cp.enabled &&
                                     (r > 0) == sp.enabled && (!both || r > 0),
                                 "%d/%d vs %d/%d: offer \"%s\" answer \"%s\" -> %d", cc, cd, sc, sd,
                                 offer, resp, a);
                    if (r <= 0) continue;
                    /* What one side sends the other must be able to take. */
                    ok &=
                        EXPECT(!cp.deflate_bits || cp.deflate_bits <= sp.inflate_bits,
                               "client window %d > server's %d", cp.deflate_bits, sp.inflate_bits);
                    ok &=
                        EXPECT(!sp.deflate_bits || sp.deflate_bits <= cp.inflate_bits,
                               "server window %d > client's %d", sp.deflate_bits, cp.inflate_bits);
                    ok &= EXPECT(!sp.inflate_reset || !cp.deflate_bits || cp.deflate_reset,
                                 "server resets, client keeps context: %s", resp);
                    ok &= EXPECT(!cp.inflate_reset || !sp.deflate_bits || sp.deflate_reset,
                                 "client resets, server keeps context: %s", resp);
                    ok &= EXPECT(!sp.inflate_shared || sp.inflate_reset, "shared keeps context");
                    ok &= EXPECT(!sp.deflate_shared || (sp.deflate_reset && sp.deflate_bits),
                                 "shared deflater misused");
                    /* A mode's memory is not exceeded: own deflaters use at most its window. */
                    int w = 15;
                    if (sc) wsk_pmd_mode_zlib(sc, &w, NULL);
                    ok &= EXPECT(sp.deflate_bits <= w, "server deflater beyond its mode");
                    if (sd >= K3 && !sp.inflate_shared) {
                        wsk_pmd_mode_zlib(sd, &w, NULL);
                        ok &= EXPECT(sp.inflate_bits <= w, "server inflater beyond its mode");
                    }
                }
    CHECK(ok, "all %d client/server configuration pairs agree (%d accepted, %d declined)",
          NMODES * NMODES * NMODES * NMODES, accepted, declined);
}

/* Messages both ways under the parameters negotiated for each pair of modes, several messages
 * per direction so that context takeover (or its absence) matters. */
static int exchange(const wsk_pmd_params *tx, const wsk_pmd_params *rx, const uint8_t *msg,
                    size_t len)
{
    if (!tx->deflate_bits) return 1;
    /* The loop's compressors honour the negotiated window too (pmd_conn.c). */
    wsk_pmd_deflater *d = wsk_pmd_deflater_new(
        tx->deflate_bits, tx->deflate_shared ? WSK_PMD_SHARED_MEM : tx->deflate_mem,
        WSK_PMD_LEVEL_DEFAULT);
    wsk_pmd_inflater *i = rx->inflate_shared
                              ? wsk_pmd_inflater_new(WSK_PMD_SHARED_BITS, 1)
                              : wsk_pmd_inflater_new(rx->inflate_bits, rx->inflate_reset);
    int ok = d && i;
    for (int k = 0; ok && k < 3; k++) {
        wsk_dbuf z, o;
        wsk_dbuf_init(&z, 1 << 20);
        wsk_dbuf_init(&o, 1 << 20);
        ok = wsk_pmd_deflate(d, msg, len, tx->deflate_reset, &z) == 0 &&
             wsk_pmd_inflate(i, z.p, z.len, 1, &o) == 0 && o.len == len && !memcmp(o.p, msg, len);
        wsk_dbuf_free(&z);
        wsk_dbuf_free(&o);
    }
    wsk_pmd_deflater_free(d);
    wsk_pmd_inflater_free(i);
    return ok;
}

static void test_pair_traffic(void)
{
    static uint8_t msg[3000];
    uint32_t x = 1;
    for (size_t k = 0; k < sizeof msg; k++) {
        x = x * 1103515245 + 12345;
        msg[k] = (uint8_t)("abcdefgh"[(x >> 16) % 8]);
    }
    int ok = 1;
    for (int c = 0; c < NMODES; c++)
        for (int s = 0; s < NMODES; s++) {
            struct nego g;
            negotiate((wsk_pmd_config){c, c, 0}, (wsk_pmd_config){s, s, 0}, &g);
            if (g.r <= 0) continue;
            ok &= EXPECT(g.a == 0, "accept %s", g.resp);
            ok &= EXPECT(exchange(&g.cp, &g.sp, msg, sizeof msg), "client to server, %s", g.resp);
            ok &= EXPECT(exchange(&g.sp, &g.cp, msg, sizeof msg), "server to client, %s", g.resp);
        }
    CHECK(ok, "messages flow both ways under every negotiated pair of modes");
}

int main(void)
{
    test_modes();
    test_server();
    test_client_offer();
    test_client_accept();
    test_all_pairs();
    test_pair_traffic();
    return TEST_DONE();
}
