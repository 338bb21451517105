/* The bridge between a server's topics and an engine (bridge.h): sharding, the envelope, echo
 * suppression and outage accounting.  Engines are in bridge_<engine>.c. */
#include "bridge.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "group.h"
#include "pubsub.h"

static const wsk_bridge_engine *const engines[] = {&wsk_bridge_redis, &wsk_bridge_nats};

/* The last message number seen from one origin (wsk_bridge_message). */
struct origin {
    uint64_t node, seq;
    uint64_t used; /* the link's clock when last seen: the oldest is replaced */
};

struct wsk_bridge_link {
    struct wsk_bridge *b;
    const wsk_bridge_engine *eng;
    void *e;
    char shown[256];       /* the URL without its user info, for the log */
    _Atomic int up;        /* read by the other members of a group too (wsk_server_bridged) */
    int outage;            /* down since the last time it was up (or since the start) */
    uint64_t outage_fails; /* publishes that failed during this outage */
    int full;              /* the engine refused a publish: logged, until one goes again */
    uint64_t clock;
    struct origin seen[WSK_BRIDGE_ORIGINS];
};

/* A pattern this node holds on the engine (its carrier form, see carrier()).  A topic it
 * matches is not also held by name: the pattern brings its messages, and Redis would count the
 * node twice in PUBLISH's reply. */
struct held {
    struct held *next;
    size_t n;
    char name[];
};

struct wsk_bridge {
    wsk_ctx *ctx;
    struct held *patterns; /* every live pattern, whether the links are up or not */
    uint8_t node[8];
    uint64_t seq; /* the last message number forwarded */
    size_t plen;
    char *chan;          /* prefix + topic: plen + WSK_TOPIC_MAX bytes from birth */
    const char *derived; /* wsk_server_opts.bridge_derived: its topics ride another's channel */
    size_t dlen;         /* its length, 0 for none */
    char *alt;           /* derived + a topic: dlen + WSK_TOPIC_MAX bytes from birth */
    uint8_t *env;        /* the envelope of one publish, grown up to its cap */
    size_t env_cap;      /* allocated */
    wsk_bridge_stats st;
    size_t hdepth; /* history in the engine (wsk_server_bridge_history): 0 when off */
    double httl;
    struct listener *listeners; /* wsk_server_bridge_listen's topics, a list */
    struct mark *marks;         /* wsk_server_retained_read's reads under way, a list */
    struct later *later;        /* retained publishes made while their link was down, a list */
    size_t later_bytes;         /* ... their bytes, at most LATER_MAX */
    unsigned nlinks;
    wsk_bridge_link links[];
};

/* FNV-1a: the shard of a topic must be the same in every process (and every version). */
static wsk_bridge_link *shard(struct wsk_bridge *b, const char *topic, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)topic[i]) * 16777619u;
    return &b->links[h % b->nlinks];
}

/* The channel of topic[0..n): in b->chan, valid until the next call. */
static const char *channel(struct wsk_bridge *b, const char *topic, size_t n)
{
    if (n) memcpy(b->chan + b->plen, topic, n);
    return b->chan;
}

/* The topic whose channel carries topic[0..*n): T for a derived topic (derived + T, with *n
 * made T's length), the topic itself otherwise. */
static const char *carrier(const struct wsk_bridge *b, const char *topic, size_t *n)
{
    if (!b->dlen || *n < b->dlen || memcmp(topic, b->derived, b->dlen)) return topic;
    *n -= b->dlen;
    return topic + b->dlen;
}

/* The local subscribers of the other topic on the channel of carried topic t[0..n): derived + t
 * for t itself, t for derived + t (from: the topic the caller holds, t or derived + t). */
static size_t sibling(struct wsk_bridge *b, const char *from, const char *t, size_t n)
{
    if (!b->dlen) return 0;
    if (from != t) return wsk_server_subscribers(b->ctx->srv, t, n);
    if (n > WSK_TOPIC_MAX - b->dlen) return 0;
    if (n) memcpy(b->alt + b->dlen, t, n);
    return wsk_server_subscribers(b->ctx->srv, b->alt, b->dlen + n);
}

/* A topic the node listens to without a local subscriber (wsk_server_bridge_listen). */
struct listener {
    struct listener *next;
    unsigned count;
    size_t n;
    char t[];
};

static struct listener *listener_of(const struct wsk_bridge *b, const char *t, size_t n)
{
    struct listener *h = b->listeners;
    while (h && (h->n != n || memcmp(h->t, t, n))) h = h->next;
    return h;
}

/* 1 when this node listens on the channel of carried topic t[0..n): t or derived + t has
 * subscribers here, or it is held. */
static int wanted_by_sockets(struct wsk_bridge *b, const char *t, size_t n)
{
    return wsk_server_subscribers(b->ctx->srv, t, n) > 0 || sibling(b, t, t, n) > 0;
}

static int wanted(struct wsk_bridge *b, const char *t, size_t n)
{
    return wanted_by_sockets(b, t, n) || listener_of(b, t, n);
}

/* The pattern of b other than `except` that matches name t[0..n), or NULL. */
static const struct held *covering(const struct wsk_bridge *b, const char *t, size_t n,
                                   const struct held *except)
{
    for (const struct held *h = b->patterns; h; h = h->next)
        if (h != except && wsk_topic_match(h->name, h->n, t, n)) return h;
    return NULL;
}

/* 1 when this node holds carried topic t[0..n) (a name) on the engine by that name: it has
 * subscribers here and none of its patterns covers it. */
static int by_name(struct wsk_bridge *b, const char *t, size_t n)
{
    return wanted(b, t, n) && !covering(b, t, n, NULL);
}

void wsk_bridge_log(wsk_bridge_link *l, int level, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    wsk_log(l->b->ctx->loop, level, "bridge %s: %s", l->shown, msg);
}

/* ----- library side -------------------------------------------------------------------------- */

/* Subscribes link l to (on) or takes it off the pattern channel c[0..n). */
static void pattern_sub(struct wsk_bridge *b, wsk_bridge_link *l, const char *c, size_t n, int on)
{
    if (on)
        l->eng->psubscribe(l->e, c, n, b->plen);
    else
        l->eng->punsubscribe(l->e, c, n, b->plen);
}

/* Pattern p of b came (on) or is going: the live names it matches and no other pattern of b
 * covers leave the engine (on) or come back to it. */
struct regroup {
    struct wsk_bridge *b;
    const struct held *p;
    int on;
};

static void regroup(void *arg, const char *topic, size_t n)
{
    const struct regroup *g = arg;
    struct wsk_bridge *b = g->b;
    size_t cn = n;
    const char *ct = carrier(b, topic, &cn);
    if (ct != topic && wsk_server_subscribers(b->ctx->srv, ct, cn)) return; /* ct's turn */
    if (wsk_topic_is_pattern(ct, cn) || !wsk_topic_match(g->p->name, g->p->n, ct, cn) ||
        !wanted(b, ct, cn) || covering(b, ct, cn, g->p))
        return;
    wsk_bridge_link *l = shard(b, ct, cn);
    if (!l->up) return; /* wsk_bridge_up subscribes what is held by name */
    if (g->on)
        l->eng->unsubscribe(l->e, channel(b, ct, cn), b->plen + cn);
    else
        l->eng->subscribe(l->e, channel(b, ct, cn), b->plen + cn);
}

/* Pattern t[0..n) (carried) on the engine's every link, and the names it covers off them (on);
 * or the names back and the pattern off.  In that order: the engine never drops a message
 * between the two (a copy meanwhile is dropped as one). */
/* regroup for the topics listened to without a local subscriber (wsk_server_bridge_listen):
 * wsk_pubsub_each does the others. */
static void regroup_listeners(struct regroup *g)
{
    for (const struct listener *h = g->b->listeners; h; h = h->next)
        if (!wanted_by_sockets(g->b, h->t, h->n)) regroup(g, h->t, h->n);
}

static void pattern_topic(struct wsk_bridge *b, const char *t, size_t n, int on)
{
    struct held **pp = &b->patterns, *h;
    while (*pp && ((*pp)->n != n || memcmp((*pp)->name, t, n))) pp = &(*pp)->next;
    if (on && !*pp && (h = malloc(sizeof *h + n))) { /* no memory: names stay held, twice counted */
        h->n = n;
        memcpy(h->name, t, n);
        h->next = b->patterns;
        b->patterns = h;
        pp = &b->patterns;
    }
    h = *pp;
    struct regroup g = {b, h, on};
    if (on) {
        for (unsigned i = 0; i < b->nlinks; i++)
            if (b->links[i].up) pattern_sub(b, &b->links[i], channel(b, t, n), b->plen + n, 1);
        if (h) {
            wsk_pubsub_each(b->ctx, regroup, &g);
            regroup_listeners(&g);
        }
        return;
    }
    if (h) {
        *pp = h->next;
        wsk_pubsub_each(b->ctx, regroup, &g); /* h is out of the list: it covers nothing now */
        regroup_listeners(&g);
    }
    for (unsigned i = 0; i < b->nlinks; i++)
        if (b->links[i].up) pattern_sub(b, &b->links[i], channel(b, t, n), b->plen + n, 0);
    free(h);
}

void wsk_bridge_topic(struct wsk_bridge *b, const char *topic, size_t n, int on)
{
    size_t cn = n;
    const char *ct = carrier(b, topic, &cn);
    /* The channel is the other topic's too, or held: subscribed already, or still wanted. */
    if (sibling(b, topic, ct, cn) || listener_of(b, ct, cn)) return;
    if (wsk_topic_is_pattern(ct, cn)) { /* it matches topics of every shard */
        pattern_topic(b, ct, cn, on);
        return;
    }
    if (covering(b, ct, cn, NULL)) return; /* a pattern of this node brings it */
    wsk_bridge_link *l = shard(b, ct, cn);
    if (!l->up) return; /* wsk_bridge_up subscribes the live topics */
    const char *c = channel(b, ct, cn);
    if (on)
        l->eng->subscribe(l->e, c, b->plen + cn);
    else
        l->eng->unsubscribe(l->e, c, b->plen + cn);
}

static int forward_failed(wsk_bridge_link *l, const char *why)
{
    l->b->st.failed++;
    if (!l->up) {
        l->outage_fails++;
    } else if (!l->full) {
        l->full = 1;
        wsk_bridge_log(l, WSK_LOG_WARN, "publishes fail: %s", why);
    }
    return WSK_ERR_IO;
}

/* The envelope of a message in b->env: a header of hdr bytes (WSK_BRIDGE_HDR, or
 * WSK_BRIDGE_HDR_HISTORY with WSK_BRIDGE_HISTORY and the engine's 36 bytes blank), then the
 * message.  0, or -1 when memory is short. */
static int envelope(struct wsk_bridge *b, const void *data, size_t len, unsigned op, int compress,
                    int to_self, size_t hdr)
{
    if (len + hdr > b->env_cap) {
        size_t cap = len + hdr + (len >> 1);
        if (cap > WSK_MESSAGE_MAX + WSK_BRIDGE_HDR_HISTORY)
            cap = WSK_MESSAGE_MAX + WSK_BRIDGE_HDR_HISTORY;
        uint8_t *p = realloc(b->env, cap);
        if (!p) return -1;
        b->env = p;
        b->env_cap = cap;
    }
    b->env[0] = WSK_BRIDGE_MAGIC;
    b->env[1] = (uint8_t)((op == WSK_OP_BINARY ? WSK_BRIDGE_BINARY : 0) |
                          (to_self ? WSK_BRIDGE_TO_SELF : 0) |
                          (compress & WSK_PUB_COMPRESS ? WSK_BRIDGE_COMPRESS : 0) |
                          (compress & WSK_PUB_RETAINED ? WSK_BRIDGE_RETAIN : 0) |
                          (hdr == WSK_BRIDGE_HDR_HISTORY ? WSK_BRIDGE_HISTORY : 0));
    memcpy(b->env + 2, b->node, 8);
    uint64_t seq = ++b->seq;
    for (int i = 0; i < 8; i++) b->env[10 + i] = (uint8_t)(seq >> 8 * i);
    memset(b->env + WSK_BRIDGE_HDR, '0', hdr - WSK_BRIDGE_HDR);
    if (len) memcpy(b->env + hdr, data, len);
    return 0;
}

/* A read of a retained message under way (wsk_server_retained_read). */
struct mark {
    struct mark *next;
    uint64_t id; /* its number, in the mark's envelope */
    wsk_bridge_link *l;
    int superseded; /* a retained publish of the topic was delivered here since */
    void (*done)(void *arg, const wsk_retained *r);
    void *arg;
    size_t n;
    char t[];
};

/* A retained publish of topic[0..n) reached this node's subscribers: its reads have it. */
static void marks_superseded(struct wsk_bridge *b, const char *topic, size_t n)
{
    for (struct mark *m = b->marks; m; m = m->next)
        if (m->n == n && !memcmp(m->t, topic, n)) m->superseded = 1;
}

/* Takes m off the list and ends it: r (NULL: the engine could not answer), then freed. */
static void mark_end(struct wsk_bridge *b, struct mark *m, const wsk_retained *r)
{
    struct mark **pp = &b->marks;
    while (*pp != m) pp = &(*pp)->next;
    *pp = m->next;
    wsk_server_bridge_listen(b->ctx->srv, m->t, m->n, 0);
    wsk_retained none = {0};
    m->done(m->arg, r ? r : &none);
    free(m);
}

static void retained_later(struct wsk_bridge *b, wsk_bridge_link *l, const char *topic, size_t n,
                           const void *data, size_t len, unsigned op, int compress, int to_self);
static struct wsk_bridge *retains(struct wsk_bridge *b);

/* wsk_bridge_forward without calling done on failure (the caller does). */
static int forward(struct wsk_bridge *b, const char *topic, size_t n, const void *data, size_t len,
                   unsigned op, int compress, int to_self, long local,
                   void (*done)(void *arg, long local, long nodes), void *arg, size_t hdr)
{
    wsk_bridge_link *l = shard(b, topic, n);
    /* A retained publish the engine keeps too, in the same step (an empty one clears it). */
    int keep = (compress & WSK_PUB_RETAINED) && retains(b), r;
    if (!l->up) {
        if (keep && hdr == WSK_BRIDGE_HDR)
            retained_later(b, l, topic, n, data, len, op, compress, to_self);
        return forward_failed(l, "engine down");
    }
    if (envelope(b, data, len, op, compress, to_self, hdr) < 0)
        return forward_failed(l, "out of memory");
    int self = by_name(b, topic, n); /* and its patterns that match: each counts on the engine */
    for (const struct held *h = b->patterns; h; h = h->next)
        self += wsk_topic_match(h->name, h->n, topic, n);
    wsk_bridge_count *cnt = NULL;
    if (done) {
        if (!(cnt = malloc(sizeof *cnt))) return forward_failed(l, "out of memory");
        /* A message of the history reaches this node's subscribers through the engine too:
         * they are among the nodes it counts. */
        *cnt = (wsk_bridge_count){len + hdr, hdr == WSK_BRIDGE_HDR ? self : 0, local, done, arg};
    }
    const char *c = channel(b, topic, n);
    if (keep) {
        r = l->eng->retain(l->e, c, b->plen + n, b->plen, b->env, len + hdr, len > 0,
                           hdr == WSK_BRIDGE_HDR_HISTORY, b->hdepth, b->httl, self, cnt);
        /* Delivered here already (without history): the readers under way have it. */
        if (r == 0 && hdr == WSK_BRIDGE_HDR) marks_superseded(b, topic, n);
    } else if (hdr == WSK_BRIDGE_HDR_HISTORY) {
        r = l->eng->append(l->e, c, b->plen + n, b->plen, b->env, len + hdr, b->hdepth, b->httl,
                           self, cnt);
    } else {
        r = l->eng->publish(l->e, c, b->plen + n, b->env, len + hdr, self, cnt);
    }
    if (r < 0) {
        free(cnt);
        return forward_failed(l, "the engine's queue is full");
    }
    l->full = 0;
    b->st.forwarded++;
    return 0;
}

int wsk_bridge_forward(struct wsk_bridge *b, const char *topic, size_t n, const void *data,
                       size_t len, unsigned op, int compress, int to_self, long local,
                       void (*done)(void *arg, long local, long nodes), void *arg)
{
    size_t cn = n;
    if (carrier(b, topic, &cn) != topic) { /* derived: every node makes its own */
        if (done) done(arg, local, WSK_NODES_NOT_BRIDGED);
        return 0;
    }
    int r =
        forward(b, topic, n, data, len, op, compress, to_self, local, done, arg, WSK_BRIDGE_HDR);
    if (r < 0 && done) done(arg, local, WSK_NODES_NOT_BRIDGED);
    return r;
}

/* ----- engine side --------------------------------------------------------------------------- */

struct resub {
    struct wsk_bridge *b;
    wsk_bridge_link *l;
};

static void resubscribe(void *arg, const char *topic, size_t n)
{
    struct resub *r = arg;
    size_t cn = n;
    const char *ct = carrier(r->b, topic, &cn);
    if (ct != topic && wsk_server_subscribers(r->b->ctx->srv, ct, cn)) return; /* ct's turn */
    if (wsk_topic_is_pattern(ct, cn))
        pattern_sub(r->b, r->l, channel(r->b, ct, cn), r->b->plen + cn, 1);
    else if (shard(r->b, ct, cn) == r->l && !covering(r->b, ct, cn, NULL))
        r->l->eng->subscribe(r->l->e, channel(r->b, ct, cn), r->b->plen + cn);
}

static void retained_restore(wsk_bridge_link *l);
static void later_drop(struct wsk_bridge *b, struct later **pp);

void wsk_bridge_up(wsk_bridge_link *l)
{
    if (l->up) return;
    l->up = 1;
    l->full = 0;
    if (l->outage)
        wsk_bridge_log(l, WSK_LOG_WARN, "connected again; %llu publishes failed meanwhile",
                       (unsigned long long)l->outage_fails);
    else
        wsk_bridge_log(l, WSK_LOG_INFO, "connected");
    l->outage = 0;
    l->outage_fails = 0;
    struct resub r = {l->b, l};
    wsk_pubsub_each(l->b->ctx, resubscribe, &r);
    for (const struct listener *h = l->b->listeners; h; h = h->next)
        if (!wanted_by_sockets(l->b, h->t, h->n) && !covering(l->b, h->t, h->n, NULL) &&
            shard(l->b, h->t, h->n) == l)
            l->eng->subscribe(l->e, channel(l->b, h->t, h->n), l->b->plen + h->n);
    retained_restore(l);
}

void wsk_bridge_down(wsk_bridge_link *l, const char *why)
{
    int was_up = l->up;
    l->up = 0;
    for (struct mark *m = l->b->marks, *next; m; m = next) {
        next = m->next;
        if (m->l == l) mark_end(l->b, m, NULL);
    }
    if (l->outage) return; /* logged once per outage */
    l->outage = 1;
    l->b->st.outages++;
    wsk_bridge_log(l, WSK_LOG_WARN, "%s: %s; local delivery goes on, publishes are not bridged",
                   was_up ? "lost" : "cannot connect", why);
}

/* The topic of a channel of ours, or NULL. */
static const char *topic_of(wsk_bridge_link *l, const char *chan, size_t n, size_t *tlen)
{
    struct wsk_bridge *b = l->b;
    if (n < b->plen || memcmp(chan, b->chan, b->plen) || n - b->plen > WSK_TOPIC_MAX) return NULL;
    *tlen = n - b->plen;
    return chan + b->plen;
}

/* 1 when message seq of origin node came through l already.  The engine hands a node one copy
 * per subscription a publish matches, back to back on the one connection that carries the
 * topic, and an origin's numbers grow: a number not above the last one seen is a copy. */
static int seen_before(wsk_bridge_link *l, uint64_t node, uint64_t seq)
{
    struct origin *o = NULL, *oldest = &l->seen[0];
    for (size_t i = 0; i < WSK_BRIDGE_ORIGINS && !o; i++) {
        if (l->seen[i].used && l->seen[i].node == node) o = &l->seen[i];
        if (l->seen[i].used < oldest->used) oldest = &l->seen[i];
    }
    if (o && seq <= o->seq) return 1;
    if (!o) {
        o = oldest;
        o->node = node;
    }
    o->seq = seq;
    o->used = ++l->clock;
    return 0;
}

/* The header's length of envelope p[0..len), with its history position in *pos (offset 0 for
 * none); 0 when it is not one of ours. */
static size_t envelope_parse(const uint8_t *p, size_t len, wsk_history_pos *pos)
{
    memset(pos, 0, sizeof *pos);
    if (len < WSK_BRIDGE_HDR || p[0] != WSK_BRIDGE_MAGIC) return 0;
    if (!(p[1] & WSK_BRIDGE_HISTORY)) return WSK_BRIDGE_HDR;
    if (len < WSK_BRIDGE_HDR_HISTORY) return 0;
    for (size_t i = WSK_BRIDGE_HDR; i < WSK_BRIDGE_HDR + 20; i++) {
        if (p[i] < '0' || p[i] > '9') return 0;
        pos->offset = pos->offset * 10 + (uint64_t)(p[i] - '0');
    }
    memcpy(pos->epoch, p + WSK_BRIDGE_HDR + 20, 16);
    return pos->offset ? WSK_BRIDGE_HDR_HISTORY : 0;
}

/* The WSK_PUB_* flags of envelope p: compressed, retained. */
static int env_flags(const uint8_t *p)
{
    return (p[1] & WSK_BRIDGE_COMPRESS ? WSK_PUB_COMPRESS : 0) |
           (p[1] & WSK_BRIDGE_RETAIN ? WSK_PUB_RETAINED : 0);
}

/* The mark of a read of this node, env[0..len), came back on the channel: every message
 * published before it has been delivered here. */
static void mark_came(struct wsk_bridge *b, const uint8_t *env, size_t len)
{
    uint64_t id = 0;
    for (int i = 7; i >= 0; i--) id = id << 8 | env[10 + i];
    struct mark *m = b->marks;
    while (m && m->id != id) m = m->next;
    if (!m) return; /* a second copy (a name and a pattern), or failed meanwhile */
    wsk_retained r = {.ok = 1};
    const uint8_t *p = env + WSK_BRIDGE_HDR;
    size_t hdr = len > WSK_BRIDGE_HDR ? envelope_parse(p, len - WSK_BRIDGE_HDR, &r.at) : 0;
    r.op = hdr && p[1] & WSK_BRIDGE_BINARY ? WSK_OP_BINARY : WSK_OP_TEXT;
    if (hdr && !m->superseded &&
        (r.op == WSK_OP_BINARY || wsk_utf8_valid(p + hdr, len - WSK_BRIDGE_HDR - hdr))) {
        r.found = 1;
        r.data = p + hdr;
        r.len = len - WSK_BRIDGE_HDR - hdr;
    }
    mark_end(b, m, &r);
}

void wsk_bridge_mark_failed(wsk_bridge_link *l, uint64_t id)
{
    struct mark *m = l->b->marks;
    while (m && m->id != id) m = m->next;
    if (m) mark_end(l->b, m, NULL);
}

void wsk_bridge_message(wsk_bridge_link *l, const char *chan, size_t n, const void *msg, size_t len)
{
    struct wsk_bridge *b = l->b;
    const uint8_t *p = msg;
    size_t tlen;
    wsk_history_pos at;
    const char *topic = topic_of(l, chan, n, &tlen);
    size_t hdr = topic ? envelope_parse(p, len, &at) : 0;
    if (!hdr) {
        b->st.foreign++;
        return;
    }
    /* A message of the engine's history is delivered here too when it comes back: every node
     * then delivers the same sequence (wsk_server_publish_history). */
    int mine = !memcmp(p + 2, b->node, 8);
    if (p[1] & WSK_BRIDGE_MARK) { /* the answer to a read: its node's only */
        if (mine) mark_came(b, p, len);
        return;
    }
    if (!at.offset && mine) {
        b->st.echoes++;
        return;
    }
    uint64_t node, seq = 0;
    memcpy(&node, p + 2, 8);
    for (int i = 7; i >= 0; i--) seq = seq << 8 | p[10 + i];
    if (seen_before(l, node, seq)) {
        b->st.copies++;
        return;
    }
    wsk_opcode op = p[1] & WSK_BRIDGE_BINARY ? WSK_OP_BINARY : WSK_OP_TEXT;
    size_t mlen = len - hdr;
    if (op == WSK_OP_TEXT && !wsk_utf8_valid(p + hdr, mlen)) {
        b->st.foreign++; /* never put invalid UTF-8 in a text frame, whoever sent it */
        return;
    }
    b->st.received++;
    if (p[1] & WSK_BRIDGE_RETAIN) marks_superseded(b, topic, tlen);
    if (mine) at.mine = seq; /* its publisher may be left out */
    int z = env_flags(p);
    if (b->ctx->h.bridged) /* the application makes the derived forms too */
        b->ctx->h.bridged(b->ctx->srv, topic, tlen, p + hdr, mlen, op, z, at.offset ? &at : NULL);
    else
        wsk_server_publish_local(b->ctx->srv, topic, tlen, p + hdr, mlen, op, z);
}

void wsk_bridge_unkept(wsk_bridge_link *l, const char *chan, size_t n, const uint8_t *env,
                       size_t len, wsk_bridge_count *c)
{
    struct wsk_bridge *b = l->b;
    size_t tlen;
    const char *topic = topic_of(l, chan, n, &tlen);
    b->st.failed++;
    if (b->st.forwarded) b->st.forwarded--;
    if (topic && len >= WSK_BRIDGE_HDR_HISTORY && env[1] & WSK_BRIDGE_HISTORY) {
        /* Delivered nowhere yet: here, as when the engine is down, with its publisher known. */
        wsk_history_pos at = {0};
        for (int i = 7; i >= 0; i--) at.mine = at.mine << 8 | env[10 + i];
        wsk_opcode op = env[1] & WSK_BRIDGE_BINARY ? WSK_OP_BINARY : WSK_OP_TEXT;
        const uint8_t *m = env + WSK_BRIDGE_HDR_HISTORY;
        size_t mlen = len - WSK_BRIDGE_HDR_HISTORY;
        int z = env_flags(env);
        long got = b->ctx->h.bridged
                       ? b->ctx->h.bridged(b->ctx->srv, topic, tlen, m, mlen, op, z, &at)
                       : wsk_server_publish_local(b->ctx->srv, topic, tlen, m, mlen, op, z);
        /* Its publisher's acknowledgement counts the sockets it reached here after all. */
        if (c && got > 0) c->local += got;
    }
    if (c) {
        c->done(c->arg, c->local, WSK_NODES_NOT_BRIDGED);
        free(c);
    }
}

void wsk_bridge_reached(wsk_bridge_link *l, long n, int self)
{
    if (n - self > 0) l->b->st.remote += (uint64_t)(n - self);
}

void wsk_bridge_counted(wsk_bridge_link *l, wsk_bridge_count *c, long n)
{
    if (n >= 0) wsk_bridge_reached(l, n, c->self);
    c->done(c->arg, c->local, n < 0 ? WSK_NODES_UNKNOWN : n - c->self);
    free(c);
}

const char *wsk_bridge_prefix(const wsk_bridge_link *l, size_t *plen)
{
    *plen = l->b->plen;
    return l->b->chan;
}

int wsk_bridge_wants(wsk_bridge_link *l, const char *chan, size_t n)
{
    size_t tlen;
    const char *topic = topic_of(l, chan, n, &tlen);
    if (!topic) return 0;
    return wsk_topic_is_pattern(topic, tlen) ? wanted(l->b, topic, tlen)
                                             : by_name(l->b, topic, tlen);
}

/* ----- the public calls ---------------------------------------------------------------------- */

/* url without "user:password@", into out. */
static void url_shown(const char *url, char *out, size_t cap)
{
    const char *s = strstr(url, "://"), *at = s ? strchr(s + 3, '@') : NULL;
    if (at)
        snprintf(out, cap, "%.*s%s", (int)(s + 3 - url), url, at + 1);
    else
        snprintf(out, cap, "%s", url);
}

static const wsk_bridge_engine *engine_of(const char *url)
{
    for (size_t i = 0; i < sizeof engines / sizeof engines[0]; i++) {
        size_t n = strlen(engines[i]->scheme);
        if (!strncmp(url, engines[i]->scheme, n) && !strncmp(url + n, "://", 3)) return engines[i];
    }
    return NULL;
}

void wsk_bridge_free(struct wsk_bridge *b)
{
    if (!b) return;
    for (unsigned i = 0; i < b->nlinks; i++)
        if (b->links[i].e) b->links[i].eng->close(b->links[i].e);
    while (b->marks) { /* their done without the engine: no listen to end */
        struct mark *m = b->marks;
        b->marks = m->next;
        m->done(m->arg, &(wsk_retained){0});
        free(m);
    }
    for (struct listener *h = b->listeners, *next; h; h = next) {
        next = h->next;
        free(h);
    }
    while (b->patterns) {
        struct held *h = b->patterns;
        b->patterns = h->next;
        free(h);
    }
    while (b->later) later_drop(b, &b->later);
    free(b->chan);
    free(b->alt);
    free(b->env);
    free(b);
}

int wsk_server_bridge(wsk_server *srv, const char *const *urls, size_t nurls, const char *prefix)
{
    wsk_ctx *ctx = wsk_server_ctx(srv);
    if (!prefix) prefix = "wskit:";
    size_t plen = strlen(prefix);
    const char *derived = wsk_server_opts_of(srv)->bridge_derived;
    size_t dlen = derived ? strlen(derived) : 0;
    if (!urls || !nurls || nurls > WSK_BRIDGE_MAX_LINKS || plen > WSK_BRIDGE_PREFIX_MAX ||
        dlen > WSK_BRIDGE_PREFIX_MAX)
        return WSK_ERR_INVAL;
    if (ctx->bridge) return WSK_ERR_STATE;
    const wsk_bridge_engine *eng = NULL;
    for (size_t i = 0; i < nurls; i++) {
        const wsk_bridge_engine *e = urls[i] ? engine_of(urls[i]) : NULL;
        if (!e || (eng && e != eng)) return WSK_ERR_URL; /* unknown, or engines mixed */
        eng = e;
    }
    struct wsk_bridge *b = calloc(1, sizeof *b + nurls * sizeof b->links[0]);
    if (!b || !(b->chan = malloc(plen + WSK_TOPIC_MAX + 1)) ||
        !(b->alt = malloc(dlen + WSK_TOPIC_MAX + 1))) {
        if (b) free(b->chan);
        free(b);
        return WSK_ERR_NOMEM;
    }
    b->ctx = ctx;
    b->plen = plen;
    memcpy(b->chan, prefix, plen);
    b->derived = derived;
    b->dlen = dlen;
    if (dlen) memcpy(b->alt, derived, dlen);
    if (getrandom(b->node, sizeof b->node, GRND_NONBLOCK) != (ssize_t)sizeof b->node) {
        /* Early boot: the clock and an address still tell two processes apart. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = (uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec << 30 ^ (uint64_t)(uintptr_t)b;
        memcpy(b->node, &x, 8);
    }
    b->nlinks = (unsigned)nurls;
    for (size_t i = 0; i < nurls; i++) {
        wsk_bridge_link *l = &b->links[i];
        char err[256] = "";
        l->b = b;
        l->eng = eng;
        url_shown(urls[i], l->shown, sizeof l->shown);
        l->e = eng->open(l, ctx->loop->ev, urls[i], err, sizeof err);
        if (!l->e) {
            wsk_log(ctx->loop, WSK_LOG_ERROR, "bridge %s: %s", l->shown, err);
            wsk_bridge_free(b);
            return WSK_ERR_URL;
        }
    }
    ctx->bridge = b;
    return 0;
}

int wsk_server_bridged(const wsk_server *srv, const char *topic, size_t len)
{
    const wsk_ctx *ctx = wsk_server_ctx(srv);
    /* In a group the bridging member's links: set before the loops started, never changed. */
    struct wsk_bridge *b = ctx->bridge ? ctx->bridge : wsk_group_bridge(ctx->group);
    if (!b) return WSK_ERR_STATE;
    if ((!topic && len) || len > WSK_TOPIC_MAX) return WSK_ERR_INVAL;
    if (!topic) topic = "";
    size_t cn = len;
    if (carrier(b, topic, &cn) != topic) return 0; /* derived: never forwarded */
    return shard(b, topic, len)->up;
}

int wsk_server_bridge_stats(const wsk_server *srv, wsk_bridge_stats *st)
{
    struct wsk_bridge *b = wsk_server_ctx(srv)->bridge;
    if (!st) return WSK_ERR_INVAL;
    if (!b) return WSK_ERR_STATE;
    *st = b->st;
    st->links = b->nlinks;
    st->links_up = 0;
    for (unsigned i = 0; i < b->nlinks; i++) st->links_up += (unsigned)b->links[i].up;
    return 0;
}

/* ----- history in the engine ----------------------------------------------------------------- */

struct wsk_bridge_range {
    uint64_t after;
    void (*done)(void *arg, const wsk_history_batch *b);
    void *arg;
};

/* The bridge of srv when history in the engine may be used there, else NULL. */
static struct wsk_bridge *history_bridge(wsk_server *srv)
{
    struct wsk_bridge *b = wsk_server_ctx(srv)->bridge;
    return b && b->hdepth ? b : NULL;
}

static int history_topic(const char *topic, size_t tlen)
{
    return topic && tlen && tlen <= WSK_TOPIC_MAX && !wsk_topic_is_pattern(topic, tlen);
}

int wsk_server_bridge_history(wsk_server *srv, size_t depth, double ttl)
{
    struct wsk_bridge *b = wsk_server_ctx(srv)->bridge;
    if (!b || !b->links[0].eng->append || !b->links[0].eng->range) return WSK_ERR_STATE;
    if (!depth || !(ttl >= 0)) return WSK_ERR_INVAL;
    int unknown = 0; /* every link's server must keep it */
    for (unsigned i = 0; b->links[0].eng->history && i < b->nlinks; i++) {
        int h = b->links[0].eng->history(b->links[i].e);
        if (!h) return WSK_ERR_STATE;
        unknown |= h < 0;
    }
    if (unknown) return WSK_ERR_IO;
    b->hdepth = depth;
    b->httl = ttl;
    return 0;
}

long wsk_server_publish_history(wsk_server *srv, const char *topic, size_t tlen, const void *data,
                                size_t len, wsk_opcode op, int compress,
                                void (*done)(void *arg, long local, long nodes), void *arg)
{
    struct wsk_bridge *b = history_bridge(srv);
    if (!b) return WSK_ERR_STATE;
    size_t cn = tlen;
    if (!history_topic(topic, tlen) || carrier(b, topic, &cn) != topic ||
        (op != WSK_OP_TEXT && op != WSK_OP_BINARY) || (len && !data) || len > WSK_MESSAGE_MAX)
        return WSK_ERR_INVAL;
    int r =
        forward(b, topic, tlen, data, len, op, compress, 0, 0, done, arg, WSK_BRIDGE_HDR_HISTORY);
    return r < 0 ? r : (long)b->seq; /* the envelope's number (envelope()) */
}

int wsk_server_history_read(wsk_server *srv, const char *topic, size_t tlen, uint64_t after,
                            size_t max, void (*done)(void *arg, const wsk_history_batch *b),
                            void *arg)
{
    struct wsk_bridge *b = history_bridge(srv);
    if (!b) return WSK_ERR_STATE;
    if (!history_topic(topic, tlen) || !max || max > 10000 || !done) return WSK_ERR_INVAL;
    wsk_bridge_link *l = shard(b, topic, tlen);
    if (!l->up) return WSK_ERR_IO;
    wsk_bridge_range *r = malloc(sizeof *r);
    if (!r) return WSK_ERR_NOMEM;
    *r = (wsk_bridge_range){after, done, arg};
    if (l->eng->range(l->e, channel(b, topic, tlen), b->plen + tlen, b->plen, after, max, r) < 0) {
        free(r);
        return WSK_ERR_IO;
    }
    /* The engine keeps r until wsk_bridge_ranged frees it. */
    // cppcheck-suppress memleak
    return 0;
}

void wsk_bridge_ranged(wsk_bridge_link *l, wsk_bridge_range *r, int ok, const char *epoch,
                       uint64_t head, uint64_t first, const char *const *env, const size_t *lens,
                       size_t k)
{
    (void)l;
    wsk_history_batch hb = {.ok = ok, .head.offset = head, .first = first};
    wsk_history_msg *m = k ? malloc(k * sizeof *m) : NULL;
    if (k && !m) hb.ok = 0; /* the reader reads again, or gives up */
    if (ok && epoch) snprintf(hb.head.epoch, sizeof hb.head.epoch, "%.16s", epoch);
    for (size_t i = 0; m && i < k; i++) {
        wsk_history_pos at;
        const uint8_t *p = (const uint8_t *)env[i];
        size_t hdr = envelope_parse(p, lens[i], &at);
        if (!hdr || at.offset <= r->after) continue; /* not ours: never in our streams */
        m[hb.n++] = (wsk_history_msg){at.offset, p + hdr, lens[i] - hdr,
                                      p[1] & WSK_BRIDGE_BINARY ? WSK_OP_BINARY : WSK_OP_TEXT};
    }
    hb.m = m;
    r->done(r->arg, &hb);
    free(m);
    free(r);
}

int wsk_server_bridge_listen(wsk_server *srv, const char *topic, size_t tlen, int on)
{
    struct wsk_bridge *b = wsk_server_ctx(srv)->bridge;
    if (!b) return WSK_ERR_STATE;
    if (!history_topic(topic, tlen)) return WSK_ERR_INVAL;
    struct listener *h = listener_of(b, topic, tlen), **pp;
    if (!on && !h) return WSK_ERR_INVAL;
    if (h) {
        h->count += on ? 1 : -1u;
        if (h->count) return 0;
        for (pp = &b->listeners; *pp != h; pp = &(*pp)->next)
            ;
        *pp = h->next;
        free(h);
    } else {
        if (!(h = malloc(sizeof *h + tlen))) return WSK_ERR_NOMEM;
        *h = (struct listener){b->listeners, 1, tlen};
        memcpy(h->t, topic, tlen);
        b->listeners = h;
    }
    wsk_bridge_link *l = shard(b, topic, tlen);
    /* Subscribed already (or still wanted) when a socket listens, or a pattern of this node
     * brings it: nothing to do.  But in a group the counts run ahead of the topics the bridging
     * loop was told of (a loop's new topic comes at the end of its turn, finds this listener
     * and leaves the channel to it): the first listener subscribes whatever they say (both
     * engines take a second subscription to a channel as the one they have). */
    int ahead = on && b->ctx->group;
    if (l->up && (ahead || !wanted_by_sockets(b, topic, tlen)) && !covering(b, topic, tlen, NULL)) {
        const char *c = channel(b, topic, tlen);
        if (on)
            l->eng->subscribe(l->e, c, b->plen + tlen);
        else
            l->eng->unsubscribe(l->e, c, b->plen + tlen);
    }
    return 0;
}

/* ----- retained messages in the engine -------------------------------------------------------- */

/* b when its engine may keep retained messages, else NULL. */
static struct wsk_bridge *retains(struct wsk_bridge *b)
{
    return b && b->links[0].eng->retain && b->links[0].eng->retained ? b : NULL;
}

/* The bridge of srv when the engine may keep its retained messages, else NULL (in a group,
 * on the bridging member only). */
static struct wsk_bridge *retain_bridge(wsk_server *srv)
{
    return retains(wsk_server_ctx(srv)->bridge);
}

long wsk_server_publish_retained(wsk_server *srv, wsk_ws *from, const char *topic, size_t tlen,
                                 const void *data, size_t len, wsk_opcode op, int compress,
                                 int history, void (*done)(void *arg, long local, long nodes),
                                 void *arg)
{
    struct wsk_bridge *b = retain_bridge(srv);
    /* Another member of a group: its publish carries the flag to the bridging loop, which
     * forwards it (the history is the bridging member's own). */
    if (!b && !history) b = retains(wsk_group_bridge(wsk_server_ctx(srv)->group));
    if (!b || (history && !b->hdepth)) return WSK_ERR_STATE;
    size_t cn = tlen;
    if (!history_topic(topic, tlen) || carrier(b, topic, &cn) != topic) return WSK_ERR_INVAL;
    compress |= WSK_PUB_RETAINED;
    return history
               ? wsk_server_publish_history(srv, topic, tlen, data, len, op, compress, done, arg)
           : done ? wsk_server_publish_counted(srv, from, topic, tlen, data, len, op, compress,
                                               done, arg)
           : from ? wsk_publish(from, topic, tlen, data, len, op, compress)
                  : wsk_server_publish(srv, topic, tlen, data, len, op, compress);
}

int wsk_server_retained_read(wsk_server *srv, const char *topic, size_t tlen,
                             void (*done)(void *arg, const wsk_retained *r), void *arg)
{
    struct wsk_bridge *b = retain_bridge(srv);
    if (!b) return WSK_ERR_STATE;
    size_t cn = tlen;
    if (!history_topic(topic, tlen) || carrier(b, topic, &cn) != topic || !done)
        return WSK_ERR_INVAL;
    wsk_bridge_link *l = shard(b, topic, tlen);
    if (!l->up) return WSK_ERR_IO;
    struct mark *m = malloc(sizeof *m + tlen);
    /* The node listens to the channel until the mark is back: it comes through there. */
    if (!m || wsk_server_bridge_listen(srv, topic, tlen, 1) < 0) {
        free(m);
        return WSK_ERR_NOMEM;
    }
    *m = (struct mark){b->marks, ++b->seq, l, 0, done, arg, tlen};
    memcpy(m->t, topic, tlen);
    uint8_t mk[WSK_BRIDGE_HDR] = {WSK_BRIDGE_MAGIC, WSK_BRIDGE_MARK};
    memcpy(mk + 2, b->node, 8);
    for (int i = 0; i < 8; i++) mk[10 + i] = (uint8_t)(m->id >> 8 * i);
    if (l->eng->retained(l->e, channel(b, topic, tlen), b->plen + tlen, b->plen, mk, sizeof mk,
                         m->id) < 0) {
        wsk_server_bridge_listen(srv, topic, tlen, 0);
        free(m);
        return WSK_ERR_IO;
    }
    b->marks = m;
    return 0;
}

/* A wsk_server_kept_read under way: one part per engine connection asked. */
struct kept_read {
    unsigned parts; /* answers awaited */
    int failed;
    void (*done)(void *arg, const wsk_topic_kept *k);
    void *arg;
    wsk_topic_kept k[];
};

struct wsk_bridge_kept {
    struct kept_read *q;
    size_t k;
    size_t idx[]; /* the read's topics this part asked for */
};

static void kept_part_done(struct kept_read *q)
{
    if (--q->parts) return;
    q->done(q->arg, q->failed ? NULL : q->k);
    free(q);
}

void wsk_bridge_kept_done(wsk_bridge_link *l, wsk_bridge_kept *part, const uint64_t *v, size_t nv)
{
    (void)l;
    struct kept_read *q = part->q;
    if (!v || nv != 2 * part->k) q->failed = 1;
    for (size_t i = 0; !q->failed && i < part->k; i++)
        q->k[part->idx[i]] = (wsk_topic_kept){v[2 * i] != 0, v[2 * i + 1]};
    free(part);
    kept_part_done(q);
}

/* Asks link l for the topics of q that are its (idx[0..k) of topics), channels made in buf. */
static int kept_ask(struct wsk_bridge *b, wsk_bridge_link *l, struct kept_read *q,
                    const char *const *topics, const size_t *lens, const size_t *idx, size_t k)
{
    wsk_bridge_kept *part = malloc(sizeof *part + k * sizeof part->idx[0]);
    const char **chans = malloc(k * sizeof *chans);
    size_t *clens = malloc(k * sizeof *clens), total = 0;
    for (size_t i = 0; i < k; i++) total += b->plen + lens[idx[i]];
    char *buf = malloc(total + 1);
    int r = -1;
    if (part && chans && clens && buf) {
        char *p = buf;
        for (size_t i = 0; i < k; i++) {
            memcpy(p, b->chan, b->plen);
            memcpy(p + b->plen, topics[idx[i]], lens[idx[i]]);
            chans[i] = p;
            clens[i] = b->plen + lens[idx[i]];
            p += clens[i];
            part->idx[i] = idx[i];
        }
        part->q = q;
        part->k = k;
        r = l->eng->kept(l->e, chans, clens, k, b->plen, part);
    }
    if (r < 0) free(part); /* else the engine keeps it until wsk_bridge_kept_done */
    free(chans);
    free(clens);
    free(buf);
    return r;
}

int wsk_server_kept_read(wsk_server *srv, const char *const *topics, const size_t *lens, size_t n,
                         void (*done)(void *arg, const wsk_topic_kept *k), void *arg)
{
    struct wsk_bridge *b = retain_bridge(srv);
    if (!b || !b->links[0].eng->kept) return WSK_ERR_STATE;
    if (!topics || !lens || !n || n > 10000 || !done) return WSK_ERR_INVAL;
    for (size_t i = 0; i < n; i++) {
        size_t cn = lens[i];
        if (!history_topic(topics[i], lens[i]) || carrier(b, topics[i], &cn) != topics[i])
            return WSK_ERR_INVAL;
        if (!shard(b, topics[i], lens[i])->up) return WSK_ERR_IO;
    }
    struct kept_read *q = calloc(1, sizeof *q + n * sizeof q->k[0]);
    size_t *idx = malloc(n * sizeof *idx);
    if (!q || !idx) {
        free(q);
        free(idx);
        return WSK_ERR_NOMEM;
    }
    q->done = done;
    q->arg = arg;
    q->parts = 1; /* until every part is asked */
    unsigned asked = 0;
    for (unsigned li = 0; li < b->nlinks; li++) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (shard(b, topics[i], lens[i]) == &b->links[li]) idx[k++] = i;
        if (!k) continue;
        if (kept_ask(b, &b->links[li], q, topics, lens, idx, k) < 0) {
            q->failed = 1;
        } else {
            q->parts++;
            asked++;
        }
    }
    free(idx);
    if (!asked) {
        free(q);
        return WSK_ERR_IO;
    }
    kept_part_done(q); /* the answers come later: never from here */
    return 0;
}

/* ----- retained publishes made while the engine was down ----------------------------------------
 *
 * A retained publish (wsk_server_publish_retained, without history) whose link is down reaches
 * this node's subscribers only, and the node keeps it as the topic's retained message.  The
 * bridge keeps its envelope too, the last one per topic, and when the link is back hands it to
 * the engine's restore before anything else goes on that connection: the engine keeps it,
 * unless another node's retained publish (or clear) of the topic reached it later than this one
 * was made (both by the engine's clock: the age of this one is what goes), so the newest
 * retained publish anywhere wins, as when every node is connected. */

#define LATER_MAX (8u << 20) /* bytes kept for the engine, all topics together */

struct later {
    struct later *next;
    wsk_bridge_link *l;
    struct timespec at; /* when it was published (monotonic) */
    int keep;           /* 1: a message; 0: a clear */
    size_t n, len;      /* the topic's bytes and the envelope's */
    uint8_t data[];     /* topic, then envelope */
};

static void later_drop(struct wsk_bridge *b, struct later **pp)
{
    struct later *w = *pp;
    *pp = w->next;
    b->later_bytes -= w->n + w->len;
    free(w);
}

static void retained_later(struct wsk_bridge *b, wsk_bridge_link *l, const char *topic, size_t n,
                           const void *data, size_t len, unsigned op, int compress, int to_self)
{
    if (!l->eng->restore) return;
    struct later **pp = &b->later;
    while (*pp && ((*pp)->n != n || memcmp((*pp)->data, topic, n))) pp = &(*pp)->next;
    if (*pp) later_drop(b, pp); /* this one is newer */
    struct later *w = NULL;
    if (b->later_bytes + n + len + WSK_BRIDGE_HDR <= LATER_MAX &&
        envelope(b, data, len, op, compress, to_self, WSK_BRIDGE_HDR) == 0)
        w = malloc(sizeof *w + n + len + WSK_BRIDGE_HDR);
    if (!w) {
        wsk_bridge_log(l, WSK_LOG_WARN,
                       "a retained publish made while down stays on this node: "
                       "no room to keep it for the engine");
        return;
    }
    *w = (struct later){b->later, l, {0, 0}, len > 0, n, len + WSK_BRIDGE_HDR};
    clock_gettime(CLOCK_MONOTONIC, &w->at);
    if (n) memcpy(w->data, topic, n);
    memcpy(w->data + n, b->env, w->len);
    b->later = w;
    b->later_bytes += n + w->len;
}

/* l is up again: its topics' retained publishes made meanwhile go to the engine. */
static void retained_restore(wsk_bridge_link *l)
{
    struct wsk_bridge *b = l->b;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    for (struct later **pp = &b->later; *pp;) {
        struct later *w = *pp;
        if (w->l != l) {
            pp = &w->next;
            continue;
        }
        int64_t ms =
            (int64_t)(now.tv_sec - w->at.tv_sec) * 1000 + (now.tv_nsec - w->at.tv_nsec) / 1000000;
        if (l->eng->restore(l->e, channel(b, (const char *)w->data, w->n), b->plen + w->n, b->plen,
                            w->data + w->n, w->keep ? w->len : 0, ms > 0 ? (uint64_t)ms : 0) < 0)
            wsk_bridge_log(l, WSK_LOG_WARN,
                           "a retained publish made while down stays on this "
                           "node: the engine cannot take it");
        later_drop(b, pp);
    }
}
