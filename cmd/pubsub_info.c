/* The broker's introspection: see pubsub_info.h. */
#include "pubsub_info.h"

#include <ev.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
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

struct pi_list {
    struct gather g;
    size_t n, shown; /* topics after merging, and those listed */
};

pi_list *pi_list_make(wsk_server *srv, const ps_store *st, const char *filter, size_t flen,
                      size_t limit)
{
    pi_list *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->g = (struct gather){.filter = filter, .flen = flen};
    wsk_server_each_topic(srv, from_library, &l->g);
    ps_store_each(st, from_store, &l->g);
    l->g.filter = NULL; /* the caller's */
    if (l->g.nomem) {
        gather_free(&l->g, l->g.n);
        free(l);
        return NULL;
    }
    l->n = merge(&l->g);
    l->shown = limit && limit < l->n ? limit : l->n;
    return l;
}

jp_topic_info *pi_list_topics(pi_list *l, size_t *shown)
{
    *shown = l->shown;
    return l->g.t;
}

char *pi_list_reply(const pi_list *l, const ps_store *st, const char *id, int http, size_t *len)
{
    jp_kept kept;
    ps_history_stats h;
    ps_store_history_stats(st, &h);
    kept.retained = ps_store_retained_count(st, &kept.retained_bytes);
    kept.history_topics = h.topics;
    kept.history_messages = h.messages;
    kept.history_bytes = h.bytes;
    return jp_topics_reply(id, http, l->g.t, l->shown, l->n, &kept, len);
}

void pi_list_free(pi_list *l)
{
    if (!l) return;
    gather_free(&l->g, l->n);
    free(l);
}

char *pi_topics(wsk_server *srv, const ps_store *st, const char *id, int http, const char *filter,
                size_t flen, size_t limit, size_t *len)
{
    pi_list *l = pi_list_make(srv, st, filter, flen, limit);
    char *s = l ? pi_list_reply(l, st, id, http, len) : NULL;
    pi_list_free(l);
    return s;
}

/* ----- presence: a census of every thread ---------------------------------------------------- */

/* One subscriber, copied on its own thread. */
struct person {
    unsigned long id;
    int json;
    char address[64];
    char user[200]; /* the broker keeps at most 192 bytes */
};

struct pi_census {
    /* Set by the starting thread before any other sees the census, then read only. */
    wsk_server *srv; /* the asking member (its loop answers) */
    wsk_group *g;
    unsigned home; /* srv's index in g */
    pi_members m;
    void (*done)(void *arg, pi_census *c);
    void *arg;
    size_t tlen;
    char topic[256];
    /* Every thread adds its people under mu. */
    pthread_mutex_t mu;
    struct person *p;
    size_t n, cap;
    int nomem;
    unsigned answered; /* members counted, the asking one included */
    /* The asking loop's only. */
    int kept;     /* pi_census_kept: 1, and 2 with the history length */
    int retained; /* ... its figures */
    uint64_t history;
    struct ev_loop *ev;
    ev_timer wait;
    int finished;
    pi_census *prev, *next; /* on *m.live until finished */
    /* One for the asking loop until done ran, one per member asked until its answer came
     * back: a call to a loop that ended first gives its reference back through its drop
     * (wsk_group_call_or_drop), when wsk_group_run returns. */
    atomic_uint refs;
};

static void census_unref(pi_census *c)
{
    if (atomic_fetch_sub(&c->refs, 1) > 1) return;
    pthread_mutex_destroy(&c->mu);
    free(c->p);
    free(c);
}

/* A call that carried a reference will not run (its loop ended first): the reference goes. */
static void census_drop(void *arg)
{
    census_unref(arg);
}

struct counting {
    pi_census *c;
    int json;
};

/* On the subscriber's thread (c->mu held). */
static void count_one(void *arg, wsk_ws *ws)
{
    struct counting *k = arg;
    pi_census *c = k->c;
    if (c->nomem) return;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        struct person *p = realloc(c->p, cap * sizeof *p);
        if (!p) {
            c->nomem = 1;
            return;
        }
        c->p = p;
        c->cap = cap;
    }
    struct person *e = &c->p[c->n++];
    jp_presence jp = {0};
    c->m.who(ws, &jp);
    e->id = jp.id;
    e->json = k->json;
    snprintf(e->user, sizeof e->user, "%s", jp.user ? jp.user : "");
    wsk_ws_remote_address(ws, e->address, sizeof e->address);
}

/* Member srv's subscribers of the topic, raw and JSON, on srv's thread. */
static void count_member(pi_census *c, wsk_server *srv)
{
    char jt[JSON_NS_LEN + sizeof c->topic];
    memcpy(jt, JSON_NS, JSON_NS_LEN);
    memcpy(jt + JSON_NS_LEN, c->topic, c->tlen);
    pthread_mutex_lock(&c->mu);
    struct counting k = {c, 0};
    wsk_server_each_subscriber(srv, c->topic, c->tlen, count_one, &k);
    k.json = 1;
    wsk_server_each_subscriber(srv, jt, JSON_NS_LEN + c->tlen, count_one, &k);
    c->answered++;
    pthread_mutex_unlock(&c->mu);
}

/* Done runs, with c (NULL: the asking loop ended first, pi_census_end), and the asking loop's
 * reference goes. */
static void census_finish(pi_census *c, int ended)
{
    if (c->finished) return;
    c->finished = 1;
    if (c->ev) ev_timer_stop(c->ev, &c->wait);
    if (c->prev)
        c->prev->next = c->next;
    else if (c->m.live)
        *c->m.live = c->next;
    if (c->next) c->next->prev = c->prev;
    c->done(c->arg, ended ? NULL : c);
    census_unref(c);
}

void pi_census_end(pi_census **live)
{
    while (*live) census_finish(*live, 1); /* unlinks it */
}

static void census_timeout(struct ev_loop *ev, ev_timer *w, int revents)
{
    (void)ev;
    (void)revents;
    census_finish(w->data, 0);
}

/* Back on the asking loop: one more member answered. */
static void census_back(void *arg, wsk_loop *loop)
{
    (void)loop;
    pi_census *c = arg;
    pthread_mutex_lock(&c->mu);
    int all = c->answered == c->m.threads;
    pthread_mutex_unlock(&c->mu);
    if (all) census_finish(c, 0);
    census_unref(c);
}

/* On an asked member's loop. */
static void census_visit(void *arg, wsk_loop *loop)
{
    pi_census *c = arg;
    for (unsigned i = 0; i < c->m.threads; i++) {
        wsk_server *srv = c->m.member(c->m.arg, i);
        if (i != c->home && srv && wsk_server_loop(srv) == loop) count_member(c, srv);
    }
    /* Its reference goes with the answer (or with its drop, if the asking loop has ended). */
    wsk_group_call_or_drop(c->g, c->home, census_back, census_drop, c);
}

int pi_census_start(wsk_server *srv, const pi_members *m, const char *topic, size_t tlen,
                    void (*done)(void *arg, pi_census *c), void *arg)
{
    pi_census *c = calloc(1, sizeof *c);
    if (!c || tlen > sizeof c->topic) {
        free(c);
        return -1;
    }
    c->srv = srv;
    c->g = wsk_server_group(srv, &c->home);
    c->m = *m;
    if (!c->g) c->m.threads = 1;
    c->done = done;
    c->arg = arg;
    c->tlen = tlen;
    memcpy(c->topic, topic, tlen);
    pthread_mutex_init(&c->mu, NULL);
    atomic_init(&c->refs, 1);
    count_member(c, srv);
    if (c->m.threads > 1) {
        c->ev = wsk_loop_ev(wsk_server_loop(srv));
        ev_timer_init(&c->wait, census_timeout, PI_CENSUS_WAIT, 0);
        c->wait.data = c;
        ev_timer_start(c->ev, &c->wait);
        if (c->m.live) { /* until it finishes, or its loop ends first (pi_census_end) */
            c->next = *c->m.live;
            if (c->next) c->next->prev = c;
            *c->m.live = c;
        }
    }
    for (unsigned i = 0; i < c->m.threads; i++) {
        if (i == c->home) continue;
        atomic_fetch_add(&c->refs, 1); /* back through census_back or census_drop */
        wsk_group_call_or_drop(c->g, i, census_visit, census_drop, c);
    }
    if (c->m.threads == 1) census_finish(c, 0);
    return 0;
}

static int by_id(const void *a, const void *b)
{
    const struct person *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

char *pi_census_reply(pi_census *c, const ps_store *st, const char *id, int http, size_t *len)
{
    pthread_mutex_lock(&c->mu); /* a late member may still be adding */
    char *s = NULL;
    jp_presence *p = c->nomem ? NULL : calloc(c->n + 1, sizeof *p);
    if (p) {
        if (c->n) qsort(c->p, c->n, sizeof *c->p, by_id);
        for (size_t i = 0; i < c->n; i++)
            p[i] = (jp_presence){c->p[i].id, c->p[i].address, c->p[i].user, c->p[i].json};
        ps_pos pos;
        ps_store_position(st, c->topic, c->tlen, &pos);
        jp_topic_info t = {c->topic, c->tlen, c->n, ps_store_has_retained(st, c->topic, c->tlen),
                           ps_store_history_len(st, c->topic, c->tlen)};
        if (c->kept) t.retained = c->retained;
        if (c->kept > 1) t.history = (size_t)c->history;
        s = jp_presence_reply(id, http, &t, p, c->n, pos.offset, pos.epoch, c->m.threads,
                              c->answered, len);
    }
    pthread_mutex_unlock(&c->mu);
    free(p);
    return s;
}

void pi_census_kept(pi_census *c, int retained, int with_history, uint64_t history)
{
    c->kept = with_history ? 2 : 1;
    c->retained = retained;
    c->history = history;
}
