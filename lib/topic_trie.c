/* The token trie of topic patterns: see topic_trie.h. */
#include "topic_trie.h"
#include "ptab.h"
#include "wskit.h"

#include <stdlib.h>
#include <string.h>

struct tnode {
    struct tnode *parent; /* NULL: the root */
    void *v;              /* the pattern that ends here, or NULL */
    uint64_t hash;        /* of the edge (parent, tok) in the table */
    uint32_t kids;        /* children: the node is freed when it has none and no value */
    uint32_t len;
    char tok[];
};

struct wsk_trie {
    wsk_ptab edges; /* struct tnode *, by (parent, token) */
    uint64_t k0, k1;
    size_t n; /* patterns */
    struct tnode root;
};

/* The end of the token that starts at p (the next '.', or end). */
static const char *token_end(const char *p, const char *end)
{
    const char *dot = p < end ? memchr(p, '.', (size_t)(end - p)) : NULL;
    return dot ? dot : end;
}

static int is_tok(const char *p, size_t n, char c)
{
    return n == 1 && p[0] == c;
}

int wsk_topic_is_pattern(const char *t, size_t n)
{
    const char *p = t, *end = t + n;
    for (;;) {
        const char *e = token_end(p, end);
        if (is_tok(p, (size_t)(e - p), '*')) return 1;
        if (e == end) return is_tok(p, (size_t)(e - p), '>');
        p = e + 1;
    }
}

/* The parent's address is mixed into the key: the same token under two parents lands apart. */
static uint64_t edge_hash(const wsk_trie *t, const struct tnode *parent, const char *tok, size_t n)
{
    return wsk_siphash13(t->k0 ^ ((uint64_t)(uintptr_t)parent * 0x9E3779B97F4A7C15ULL), t->k1, tok,
                         n);
}

static struct tnode *child(const wsk_trie *t, const struct tnode *parent, const char *tok, size_t n)
{
    const wsk_ptab *e = &t->edges;
    if (!e->n || !parent->kids) return NULL;
    uint64_t h = edge_hash(t, parent, tok, n);
    for (size_t i = wsk_ptab_home(e, h); e->v[i]; i = wsk_ptab_next(e, i)) {
        struct tnode *c = e->v[i];
        if (e->h[i] == h && c->parent == parent && c->len == n && !memcmp(c->tok, tok, n)) return c;
    }
    return NULL;
}

wsk_trie *wsk_trie_new(uint64_t k0, uint64_t k1)
{
    wsk_trie *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->k0 = k0;
    t->k1 = k1;
    return t;
}

void wsk_trie_free(wsk_trie *t)
{
    if (!t) return;
    for (size_t i = 0; i < t->edges.cap; i++) free(t->edges.v[i]);
    wsk_ptab_free(&t->edges);
    free(t);
}

/* Frees n and the ancestors that it alone kept alive. */
static void prune(wsk_trie *t, struct tnode *n)
{
    while (n->parent && !n->v && !n->kids) {
        struct tnode *up = n->parent;
        wsk_ptab_remove(&t->edges, n->hash, n);
        up->kids--;
        free(n);
        n = up;
    }
}

int wsk_trie_add(wsk_trie *t, const char *p, size_t len, void *v)
{
    const char *end = p + len, *q = p;
    size_t tokens = 1;
    for (const char *e; (e = token_end(q, end)) != end; q = e + 1) tokens++;
    if (tokens > WSK_PATTERN_TOKENS) return WSK_ERR_INVAL;
    struct tnode *n = &t->root;
    for (;;) {
        const char *e = token_end(p, end);
        size_t tl = (size_t)(e - p);
        struct tnode *c = child(t, n, p, tl);
        if (!c) {
            c = malloc(sizeof *c + tl);
            if (!c) goto nomem;
            *c = (struct tnode){.parent = n, .hash = edge_hash(t, n, p, tl), .len = (uint32_t)tl};
            memcpy(c->tok, p, tl);
            if (wsk_ptab_insert(&t->edges, c->hash, c) < 0) {
                free(c);
                goto nomem;
            }
            n->kids++;
        }
        n = c;
        if (e == end) break;
        p = e + 1;
    }
    n->v = v;
    t->n++;
    return 0;
nomem:
    prune(t, n);
    return WSK_ERR_NOMEM;
}

void wsk_trie_remove(wsk_trie *t, const char *p, size_t len)
{
    const char *end = p + len;
    struct tnode *n = &t->root;
    for (;;) {
        const char *e = token_end(p, end);
        if (!(n = child(t, n, p, (size_t)(e - p)))) return;
        if (e == end) break;
        p = e + 1;
    }
    if (!n->v) return;
    n->v = NULL;
    t->n--;
    prune(t, n);
}

size_t wsk_trie_size(const wsk_trie *t)
{
    return t->n;
}

struct walk {
    const wsk_trie *t;
    const char *end;
    int (*fn)(void *arg, void *v);
    void *arg;
    size_t calls;
    int stop;
};

static void report(struct walk *w, void *v)
{
    if (!v || w->stop) return;
    w->calls++;
    w->stop = w->fn(w->arg, v);
}

/* The patterns below n that match the tokens from p on (p > end: none left).  The recursion
 * goes no deeper than the trie, at most WSK_PATTERN_TOKENS. */
static void walk(struct walk *w, const struct tnode *n, const char *p)
{
    if (w->stop) return;
    if (p > w->end) {
        report(w, n->v);
        return;
    }
    const char *e = token_end(p, w->end);
    size_t tl = (size_t)(e - p);
    const char *next = e + 1; /* past end when this was the last token */
    /* MQTT 4.7.2: a leading wildcard does not match a topic that starts with '$'. */
    int wild = n->parent || p == w->end || *p != '$';
    const struct tnode *c = child(w->t, n, p, tl);
    if (c) walk(w, c, next);
    /* A topic token that is itself "*" or ">" already took the branch above: the wildcard
     * branches would reach the same nodes and report them twice. */
    if (wild && !is_tok(p, tl, '*') && (c = child(w->t, n, "*", 1))) walk(w, c, next);
    if (wild && !(is_tok(p, tl, '>') && next > w->end) && (c = child(w->t, n, ">", 1)))
        report(w, c->v);
}

size_t wsk_trie_match(const wsk_trie *t, const char *topic, size_t n, int (*fn)(void *arg, void *v),
                      void *arg)
{
    struct walk w = {t, topic + n, fn, arg, 0, 0};
    if (t->n) walk(&w, &t->root, topic);
    return w.calls;
}

int wsk_topic_match(const char *pattern, size_t plen, const char *topic, size_t tlen)
{
    const char *p = pattern, *pend = pattern + plen, *t = topic, *tend = topic + tlen;
    if (!pattern || !topic) return 0;
    if (tlen && *t == '$' && plen && (*p == '*' || *p == '>') && (plen == 1 || p[1] == '.'))
        return 0; /* the '$' rule */
    for (;;) {
        const char *pe = token_end(p, pend), *te = token_end(t, tend);
        size_t pl = (size_t)(pe - p), tl = (size_t)(te - t);
        if (pe == pend && is_tok(p, pl, '>')) return 1;
        if (!is_tok(p, pl, '*') && (pl != tl || memcmp(p, t, pl))) return 0;
        if (pe == pend || te == tend) return pe == pend && te == tend;
        p = pe + 1;
        t = te + 1;
    }
}
