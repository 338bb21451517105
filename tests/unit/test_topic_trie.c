/* Topic patterns: a table of matches for wsk_topic_match and the trie, the trie against a
 * brute-force matcher on random patterns and topics (each match reported once, removals
 * included), and the cost of a match with 1 and with 100,000 patterns in the trie. */
#include "test.h"
#include "topic_trie.h"
#include "wskit.h"

#include <stdlib.h>
#include <string.h>

/* ----- the reference: tokens split into arrays, matched by the definition ------------------ */

#define TOK_MAX 16

struct toks {
    size_t n;
    const char *p[TOK_MAX];
    size_t len[TOK_MAX];
};

static void split(const char *s, struct toks *t)
{
    t->n = 0;
    for (;;) {
        const char *dot = strchr(s, '.');
        t->p[t->n] = s;
        t->len[t->n] = dot ? (size_t)(dot - s) : strlen(s);
        t->n++;
        if (!dot) return;
        s = dot + 1;
    }
}

static int tok_is(const struct toks *t, size_t i, const char *s)
{
    return t->len[i] == strlen(s) && !memcmp(t->p[i], s, t->len[i]);
}

static int ref_match(const char *pattern, const char *topic)
{
    struct toks p, t;
    split(pattern, &p);
    split(topic, &t);
    if (topic[0] == '$' && (tok_is(&p, 0, "*") || (p.n == 1 && tok_is(&p, 0, ">")))) return 0;
    for (size_t i = 0; i < p.n; i++) {
        if (i == p.n - 1 && tok_is(&p, i, ">")) return t.n > i;
        if (i >= t.n) return 0;
        if (tok_is(&p, i, "*")) continue;
        if (p.len[i] != t.len[i] || memcmp(p.p[i], t.p[i], p.len[i])) return 0;
    }
    return p.n == t.n;
}

/* ----- the trie's answers, collected -------------------------------------------------------- */

#define NPAT 400

static int hits[NPAT];

static int count_hit(void *arg, void *v)
{
    (void)arg;
    hits[(intptr_t)v - 1]++;
    return 0;
}

static void *val(int i)
{
    return (void *)(intptr_t)(i + 1);
}

static void table(void)
{
    static const struct {
        const char *pattern, *topic;
        int match;
    } cases[] = {
        {"a.b.c", "a.b.c", 1},
        {"a.b.c", "a.b", 0},
        {"a.*.c", "a.b.c", 1},
        {"a.*.c", "a.b.d", 0},
        {"a.*.c", "a.c", 0},
        {"a.*", "a.b.c", 0},
        {"a.>", "a.b.c", 1},
        {"a.>", "a.b", 1},
        {"a.>", "a", 0},
        {">", "a", 1},
        {">", "a.b.c", 1},
        {"*", "a", 1},
        {"*", "a.b", 0},
        {"*.*", "a.b", 1},
        {"orders.*.created", "orders.42.created", 1},
        {"orders.*.created", "orders.42.deleted", 0},
        {"metrics.>", "metrics.cpu.0", 1},
        {"a.b*", "a.bc", 0},     /* "b*" is a literal token */
        {"a.b*", "a.b*", 1},     /* ... that matches itself */
        {"a.>.c", "a.x.c", 0},   /* a '>' that is not last is literal */
        {"a.>.c", "a.>.c", 1},   /* ... likewise */
        {"a.*", "a.*", 1},       /* a topic token "*" is a token like any other */
        {"*", "$sys", 0},        /* MQTT: a leading wildcard skips '$' topics */
        {">", "$sys.x", 0},      /* ... */
        {"$sys.*", "$sys.x", 1}, /* ... which a pattern naming them reaches */
        {"a.*", "a.$x", 1},      /* ... only the first token counts */
        {"a..c", "a..c", 1},     /* empty tokens are tokens */
        {"a.*.c", "a..c", 1},    /* ... that "*" matches */
        {"caf\xc3\xa9.*", "caf\xc3\xa9.cr\xc3\xa8me", 1},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *p = cases[i].pattern, *t = cases[i].topic;
        int want = cases[i].match;
        bad += !EXPECT(wsk_topic_match(p, strlen(p), t, strlen(t)) == want, "%s ~ %s", p, t);
        bad += !EXPECT(ref_match(p, t) == want, "reference: %s ~ %s", p, t);
        if (!wsk_topic_is_pattern(p, strlen(p))) continue;
        wsk_trie *tr = wsk_trie_new(1, 2);
        wsk_trie_add(tr, p, strlen(p), val(0));
        hits[0] = 0;
        size_t calls = wsk_trie_match(tr, t, strlen(t), count_hit, NULL);
        bad += !EXPECT(calls == (size_t)want && hits[0] == want, "trie: %s ~ %s", p, t);
        wsk_trie_free(tr);
    }
    CHECK(bad == 0, "the table of matches (wsk_topic_match, the reference, the trie)");
    CHECK(wsk_topic_is_pattern("a.*", 3) && wsk_topic_is_pattern(">", 1) &&
              !wsk_topic_is_pattern("a.>.b", 5) && !wsk_topic_is_pattern("a*", 2),
          "what is a pattern");
}

/* ----- random patterns against the reference ------------------------------------------------ */

static const char *const alphabet[] = {"a", "b", "c", "", "*", ">", "$x", "*"};

static void random_name(char *out, int pattern)
{
    int n = 1 + rand() % 4;
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        const char *t = alphabet[rand() % (pattern ? 8 : 4 + (rand() % 8 == 0) * 3)];
        if (i) strcat(out, ".");
        strcat(out, t);
    }
}

static void random_patterns(void)
{
    static char pats[NPAT][64];
    static int in[NPAT];
    wsk_trie *tr = wsk_trie_new(7, 9);
    int npat = 0, bad = 0;
    while (npat < NPAT) {
        char p[64];
        random_name(p, 1);
        if (!wsk_topic_is_pattern(p, strlen(p))) continue;
        int dup = 0;
        for (int i = 0; i < npat; i++) dup |= !strcmp(pats[i], p);
        if (dup) continue;
        strcpy(pats[npat], p);
        in[npat] = wsk_trie_add(tr, p, strlen(p), val(npat)) == 0;
        bad += !EXPECT(in[npat], "added %s", p);
        npat++;
    }
    long checked = 0, matched = 0;
    for (int round = 0; round < 2; round++) {
        for (int k = 0; k < 3000; k++) {
            char t[64];
            random_name(t, 0);
            memset(hits, 0, sizeof hits);
            wsk_trie_match(tr, t, strlen(t), count_hit, NULL);
            for (int i = 0; i < npat; i++) {
                int want = in[i] && ref_match(pats[i], t);
                bad += !EXPECT(hits[i] == want, "%s ~ %s: reported %d times, want %d", pats[i], t,
                               hits[i], want);
                bad += !EXPECT(wsk_topic_match(pats[i], strlen(pats[i]), t, strlen(t)) ==
                                   ref_match(pats[i], t),
                               "wsk_topic_match %s ~ %s", pats[i], t);
                matched += want;
                checked++;
            }
            if (bad > 10) break;
        }
        /* Then half of them go: the trie prunes its nodes and must still agree. */
        for (int i = 0; i < npat; i += 2) {
            wsk_trie_remove(tr, pats[i], strlen(pats[i]));
            in[i] = 0;
        }
    }
    CHECK(bad == 0 && matched > 1000,
          "%ld (pattern, topic) pairs agree with the reference, %ld match", checked, matched);
    for (int i = 1; i < npat; i += 2) wsk_trie_remove(tr, pats[i], strlen(pats[i]));
    CHECK(wsk_trie_size(tr) == 0, "every pattern removed");
    wsk_trie_free(tr);
}

/* ----- the cost with 100,000 patterns -------------------------------------------------------- */

static int count_only(void *arg, void *v)
{
    (void)v;
    ++*(long *)arg;
    return 0;
}

static double match_cost(wsk_trie *tr, long *found)
{
    char t[64];
    int rounds = 200000;
    double t0 = test_now();
    for (int i = 0; i < rounds; i++) {
        int n = snprintf(t, sizeof t, "dev.%d.temp", i % 100000);
        wsk_trie_match(tr, t, (size_t)n, count_only, found);
    }
    return (test_now() - t0) / rounds * 1e9;
}

static void many_patterns(void)
{
    wsk_trie *tr = wsk_trie_new(3, 4);
    long found = 0;
    wsk_trie_add(tr, "dev.*.temp", 10, val(0));
    double one = match_cost(tr, &found);
    int bad = !EXPECT(found == 200000, "%ld", found);
    char p[64];
    for (int i = 1; i < 100000; i++) {
        int n = snprintf(p, sizeof p, "dev.%d.%s", i, i % 2 ? "*" : ">");
        bad += !EXPECT(wsk_trie_add(tr, p, (size_t)n, val(i)) == 0, "%s", p);
    }
    found = 0;
    double many = match_cost(tr, &found);
    /* Each topic dev.N.temp matches dev.*.temp and dev.N.* or dev.N.>: two each, but dev.0.temp
     * (asked twice) has no pattern of its own. */
    bad += !EXPECT(found == 400000 - 2, "%ld", found);
    CHECK(bad == 0 && wsk_trie_size(tr) == 100000, "100,000 patterns, each topic finds its two");
    printf("# match: %.0f ns with 1 pattern, %.0f ns with 100,000 (%.1fx)\n", one, many,
           many / one);
    wsk_trie_free(tr);
}

int main(void)
{
    table();
    random_patterns();
    many_patterns();
    return TEST_DONE();
}
