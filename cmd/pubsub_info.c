/* The broker's introspection: see pubsub_info.h. */
#include "pubsub_info.h"

#include <stdlib.h>
#include <string.h>

struct gather {
    jp_topic_info *t;
    size_t n, cap;
    const char *filter;
    size_t flen;
    int nomem;
};

/* Adds one entry (merged with equal names after sorting); the name is copied. */
static void add(struct gather *g, const char *name, size_t len, size_t subs, int retained,
                size_t history)
{
    if (g->nomem || (g->flen && !wsk_topic_match(g->filter, g->flen, name, len))) return;
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 64;
        jp_topic_info *t = realloc(g->t, cap * sizeof *t);
        if (!t) {
            g->nomem = 1;
            return;
        }
        g->t = t;
        g->cap = cap;
    }
    jp_topic_info *e = &g->t[g->n];
    e->name = strndup(name, len);
    if (!e->name) {
        g->nomem = 1;
        return;
    }
    e->len = len;
    e->subscribers = subs;
    e->retained = retained;
    e->history = history;
    g->n++;
}

static void from_library(void *arg, const char *topic, size_t len, size_t subscribers)
{
    if (len >= JSON_NS_LEN && !memcmp(topic, JSON_NS, JSON_NS_LEN))
        add(arg, topic + JSON_NS_LEN, len - JSON_NS_LEN, subscribers, 0, 0);
    else
        add(arg, topic, len, subscribers, 0, 0);
}

static void from_store(void *arg, const char *topic, size_t len, int retained, size_t history)
{
    add(arg, topic, len, 0, retained, history);
}

static int by_name(const void *a, const void *b)
{
    const jp_topic_info *x = a, *y = b;
    int c = memcmp(x->name, y->name, x->len < y->len ? x->len : y->len);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* Sorts and merges the entries of one name (raw, JSON, store); returns how many are left. */
static size_t merge(struct gather *g)
{
    if (!g->n) return 0;
    qsort(g->t, g->n, sizeof *g->t, by_name);
    size_t j = 0;
    for (size_t i = 1; i < g->n; i++) {
        jp_topic_info *a = &g->t[j], *b = &g->t[i];
        if (!by_name(a, b)) {
            a->subscribers += b->subscribers;
            a->retained |= b->retained;
            a->history += b->history;
            free((char *)b->name);
        } else {
            g->t[++j] = *b;
        }
    }
    return j + 1;
}

static void gather_free(struct gather *g, size_t n)
{
    for (size_t i = 0; i < n; i++) free((char *)g->t[i].name);
    free(g->t);
}

char *pi_topics(wsk_server *srv, const ps_store *st, const char *id, int http, const char *filter,
                size_t flen, size_t limit, size_t *len)
{
    struct gather g = {.filter = filter, .flen = flen};
    wsk_server_each_topic(srv, from_library, &g);
    ps_store_each(st, from_store, &g);
    size_t n = merge(&g);
    jp_kept kept;
    ps_history_stats h;
    ps_store_history_stats(st, &h);
    kept.retained = ps_store_retained_count(st, &kept.retained_bytes);
    kept.history_topics = h.topics;
    kept.history_messages = h.messages;
    kept.history_bytes = h.bytes;
    char *s = g.nomem
                  ? NULL
                  : jp_topics_reply(id, http, g.t, limit && limit < n ? limit : n, n, &kept, len);
    gather_free(&g, g.nomem ? g.n : n);
    return s;
}

struct people {
    jp_presence *p;
    char (*addr)[64];
    size_t n;
    int json;
    void (*who)(wsk_ws *ws, jp_presence *p);
};

static void person(void *arg, wsk_ws *ws)
{
    struct people *pp = arg;
    jp_presence *p = &pp->p[pp->n];
    pp->who(ws, p);
    p->address = wsk_ws_remote_address(ws, pp->addr[pp->n], sizeof pp->addr[pp->n]);
    p->json = pp->json;
    pp->n++;
}

char *pi_presence(wsk_server *srv, const ps_store *st, const char *id, int http, const char *topic,
                  size_t tlen, void (*who)(wsk_ws *ws, jp_presence *p), size_t *len)
{
    char jt[JSON_NS_LEN + 256];
    if (tlen > sizeof jt - JSON_NS_LEN) return NULL;
    memcpy(jt, JSON_NS, JSON_NS_LEN);
    memcpy(jt + JSON_NS_LEN, topic, tlen);
    size_t raw = wsk_server_subscribers(srv, topic, tlen);
    size_t json = wsk_server_subscribers(srv, jt, JSON_NS_LEN + tlen);
    struct people pp = {calloc(raw + json + 1, sizeof *pp.p), calloc(raw + json + 1, 64), 0, 0,
                        who};
    char *s = NULL;
    if (pp.p && pp.addr) {
        wsk_server_each_subscriber(srv, topic, tlen, person, &pp);
        pp.json = 1;
        wsk_server_each_subscriber(srv, jt, JSON_NS_LEN + tlen, person, &pp);
        ps_pos pos;
        ps_store_position(st, topic, tlen, &pos);
        jp_topic_info t = {topic, tlen, pp.n, ps_store_has_retained(st, topic, tlen),
                           ps_store_history_len(st, topic, tlen)};
        s = jp_presence_reply(id, http, &t, pp.p, pp.n, pos.offset, pos.epoch, len);
    }
    free(pp.p);
    free(pp.addr);
    return s;
}
