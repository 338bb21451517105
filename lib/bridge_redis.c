/* The Redis engine of the bridge (bridge.h), on hiredis' async API and its libev adapter.
 *
 * Two connections per Redis server: Redis gives a connection that has subscribed nothing but
 * (UN)SUBSCRIBE, so publishes go on `pub` and subscriptions on `sub`.  Each command is
 * appended to hiredis' output buffer and the adapter writes that buffer when the loop next
 * polls: every publish of one loop iteration leaves in one write (a pipeline), and one
 * connection keeps a topic's publishes in order.
 *
 * The link is up once both connections answered a PING (after AUTH and SELECT, whose errors
 * a PING would hit first).  Then the bridge subscribes `sub` to every live topic again, and
 * `pub` writes nothing until `sub` confirms a sync asked after those subscriptions (hold): a
 * publish made meanwhile would reach Redis before the node listens to its channel, and the
 * node's own subscribers, who get a message of the history from its echo, would never hear
 * it.  Losing either drops both and retries after a backoff, 0.1 s
 * doubling to 5 s; the bridge then subscribes every live topic again.  A host name is resolved
 * again before each attempt, on io_resolve.c's thread (hiredis would block the loop in
 * getaddrinfo); hiredis is given the address. */
#include "bridge.h"
#include "bridge_redis_reply.h"
#include "crypto.h"
#include "io_resolve.h"
#include "ptab.h"

#include <arpa/inet.h>
#include <netdb.h>

#include <ev.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wmissing-prototypes"
#include <hiredis/adapters/libev.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#pragma GCC diagnostic pop

#define BACKOFF_MIN 0.1
#define BACKOFF_MAX 5.0
/* Publish bytes Redis has not acknowledged yet, beyond which publishes fail. */
#define INFLIGHT_MAX (8u << 20)
/* PUBLISH commands up to this size are formatted in the engine's own buffer (publish_resp). */
#define RESP_MAX (64u << 10)
#define NSCRIPTS 6
/* How long the time of a cleared retained message stays (RESTORE reads it). */
#define CLEARED_MS "86400000"
/* The channel whose subscription confirms a sync (after the prefix), left at once: no topic
 * has a control character, and nothing is published there. */
#define SYNC_CHAN "\001sync"

struct redis {
    wsk_bridge_link *link;
    struct ev_loop *ev;
    char host[256];
    char addr[INET6_ADDRSTRLEN]; /* host's address, as hiredis is given it */
    wsk_lookup *lookup;          /* resolving host before an attempt */
    unsigned attempts;           /* attempt k uses address k mod count of the name's */
    int port, db;
    char *user; /* Redis 6 ACL user, NULL for "default" */
    char *password;
    redisAsyncContext *pub, *sub;
    wsk_rreply_pool pub_replies, sub_replies; /* their replies' arenas (bridge_redis_reply.h) */
    int ready;                                /* connections that answered their PING: up at 2 */
    int closing; /* close() is freeing the connections: no callback acts */
    ev_timer retry;
    double backoff;
    size_t inflight;  /* publish bytes awaiting Redis's reply */
    ev_prepare flush; /* writes pub's commands once per loop iteration (flush_pub) */
    char *resp;       /* a PUBLISH formatted (publish_resp): RESP_MAX bytes, made at first use */
    /* History (below): the scripts' SHA-1s, and the connection they were loaded on. */
    char sha[NSCRIPTS][41];
    const redisAsyncContext *scripts_on;
    /* Reads of retained messages waiting for `sub` to confirm a sync (rd_retained), oldest
     * first; syncs asked and confirmed on this connection. */
    struct rmark *marks, **marks_end;
    unsigned long syncs, synced;
    unsigned long hold; /* pub writes once sub confirmed this sync (0: nothing held) */
    /* The channels `sub` is subscribed to by name (struct rchan), so that subscribing twice
     * or leaving a channel not held sends nothing: hiredis asserts on an UNSUBSCRIBE reply once
     * the connection holds no channel. */
    wsk_ptab chans;
};

struct rchan {
    size_t n;
    char chan[];
};

/* A read of a retained message: MARK (below) runs once `sub` has confirmed sync number
 * `sync`, so that every subscription asked before is active when the mark is published. */
struct rmark {
    struct rmark *next;
    uint64_t id;
    unsigned long sync;
    size_t n, klen, mlen;
    char *key, *mark; /* in chan[] after the channel */
    char chan[];
};

/* ----- URL ----------------------------------------------------------------------------------- */

/* redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]; HOST may be [IPv6]. */
static int parse_url(struct redis *r, const char *url, char *err, size_t cap)
{
    const char *p = url + strlen("redis://"), *at = strchr(p, '@'), *end;
    r->port = 6379;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (!colon) colon = p - 1; /* "PASSWORD@" alone */
        r->password = strndup(colon + 1, (size_t)(at - colon - 1));
        if (colon > p) r->user = strndup(p, (size_t)(colon - p));
        if (!r->password || (colon > p && !r->user)) return snprintf(err, cap, "out of memory"), -1;
        p = at + 1;
    }
    if (*p == '[') {
        end = strchr(p, ']');
        if (!end) return snprintf(err, cap, "unclosed [ in the host"), -1;
        p++;
    } else {
        end = p + strcspn(p, ":/");
    }
    if (end == p || (size_t)(end - p) >= sizeof r->host)
        return snprintf(err, cap, "no host, or a host too long"), -1;
    memcpy(r->host, p, (size_t)(end - p));
    p = end + (*end == ']');
    char *e;
    if (*p == ':') {
        long port = strtol(p + 1, &e, 10);
        if (e == p + 1 || port < 1 || port > 65535) return snprintf(err, cap, "bad port"), -1;
        r->port = (int)port;
        p = e;
    }
    if (*p == '/' && p[1]) {
        long db = strtol(p + 1, &e, 10);
        if (e == p + 1 || *e || db < 0 || db > 1000000) return snprintf(err, cap, "bad db"), -1;
        r->db = (int)db;
        p = e;
    } else if (*p == '/') {
        p++;
    }
    if (*p)
        return snprintf(err, cap, "unexpected '%s' (redis://[:PASSWORD@]HOST:PORT[/DB])", p), -1;
    return 0;
}

/* ----- connections --------------------------------------------------------------------------- */

static void connect_both(struct redis *r);

static void marks_drop(struct redis *r)
{
    while (r->marks) {
        struct rmark *m = r->marks;
        r->marks = m->next;
        free(m);
    }
    r->marks_end = &r->marks;
    r->syncs = r->synced = r->hold = 0;
}

static void marks_run(struct redis *r);
static unsigned long sync_ask(struct redis *r);

/* The slot of channel chan[0..n) (hash h) in r->chans, or SIZE_MAX. */
static size_t chan_slot(const struct redis *r, const char *chan, size_t n, uint64_t h)
{
    const wsk_ptab *t = &r->chans;
    for (size_t i = t->n ? wsk_ptab_home(t, h) : 0; t->n && t->v[i]; i = wsk_ptab_next(t, i)) {
        const struct rchan *c = t->v[i];
        if (t->h[i] == h && c->n == n && !memcmp(c->chan, chan, n)) return i;
    }
    return SIZE_MAX;
}

/* The connection went: it holds no channel. */
static void chans_clear(struct redis *r)
{
    for (size_t i = 0; i < r->chans.cap; i++) free(r->chans.v[i]);
    wsk_ptab_free(&r->chans);
    r->chans = (wsk_ptab){0};
}

/* A connection failed or was lost: drop the other one too and try again after the backoff. */
static void lost(struct redis *r, const redisAsyncContext *ac, const char *why)
{
    if (r->closing) return;
    /* hiredis frees ac itself; the other one goes here, its callbacks silenced. */
    redisAsyncContext *rest[2] = {r->pub == ac ? NULL : r->pub, r->sub == ac ? NULL : r->sub};
    r->pub = r->sub = NULL;
    /* Down before the free: its pending callbacks may publish, and must not reach a NULL pub. */
    r->ready = 0;
    r->inflight = 0;      /* the replies awaited will never come */
    r->scripts_on = NULL; /* a new connection loads them again (a new Redis may not have them) */
    marks_drop(r);        /* the bridge gives up their reads (wsk_bridge_down) */
    chans_clear(r);       /* wsk_bridge_up subscribes again */
    r->closing = 1;
    for (int i = 0; i < 2; i++)
        if (rest[i]) redisAsyncFree(rest[i]);
    r->closing = 0;
    wsk_bridge_down(r->link, why);
    if (!ev_is_active(&r->retry)) {
        ev_timer_set(&r->retry, r->backoff, 0);
        ev_timer_start(r->ev, &r->retry);
        r->backoff = r->backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : r->backoff * 2;
    }
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct redis *r = ac->data;
    /* On failure hiredis frees ac after this returns. */
    if (status != REDIS_OK) lost(r, ac, ac->errstr[0] ? ac->errstr : "connect failed");
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct redis *r = ac->data;
    (void)status;
    lost(r, ac, ac->errstr[0] ? ac->errstr : "connection closed");
}

/* The reply to AUTH, SELECT and PING: an error takes the connection down (hiredis may not be
 * freed from its own callback: it disconnects once this returns). */
static void on_setup(redisAsyncContext *ac, void *reply, void *priv)
{
    struct redis *r = ac->data;
    const redisReply *rep = reply;
    if (!rep || r->closing) return;
    if (rep->type == REDIS_REPLY_ERROR) {
        snprintf(ac->c.errstr, sizeof ac->c.errstr, "%s", rep->str);
        redisAsyncDisconnect(ac);
        return;
    }
    if (priv && ++r->ready == 2) { /* priv: the PING */
        r->backoff = BACKOFF_MIN;
        wsk_bridge_up(r->link);                   /* subscribes sub to the live topics again */
        if (r->ready == 2) r->hold = sync_ask(r); /* and pub waits for them (flush_pub) */
    }
}

static redisAsyncContext *connect_one(struct redis *r, int select)
{
    redisAsyncContext *ac = redisAsyncConnect(r->addr, r->port);
    if (!ac) return NULL;
    if (ac->err) {
        redisAsyncFree(ac);
        return NULL;
    }
    ac->data = r;
    wsk_rreply_attach(ac->c.reader, select ? &r->pub_replies : &r->sub_replies);
    redisLibevAttach(r->ev, ac);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    if (r->user)
        redisAsyncCommand(ac, on_setup, NULL, "AUTH %s %s", r->user, r->password);
    else if (r->password)
        redisAsyncCommand(ac, on_setup, NULL, "AUTH %s", r->password);
    if (select && r->db) redisAsyncCommand(ac, on_setup, NULL, "SELECT %d", r->db);
    redisAsyncCommand(ac, on_setup, r, "PING");
    return ac;
}

/* host resolved (res, or err): connect both connections to one of its addresses, the next one
 * at each attempt ("localhost" may give ::1 first to a Redis that listens on 127.0.0.1 only). */
static void resolved(void *arg, struct addrinfo *res, int err, int sys_err)
{
    struct redis *r = arg;
    (void)sys_err;
    r->lookup = NULL;
    unsigned n = 0, k = r->attempts++;
    for (const struct addrinfo *a = res; a; a = a->ai_next) n++;
    const struct addrinfo *a = res;
    for (unsigned i = 0; n && i < k % n; i++) a = a->ai_next;
    if (!a ||
        getnameinfo(a->ai_addr, a->ai_addrlen, r->addr, sizeof r->addr, NULL, 0, NI_NUMERICHOST)) {
        if (res) freeaddrinfo(res);
        lost(r, NULL, err ? gai_strerror(err) : "cannot resolve the host");
        return;
    }
    freeaddrinfo(res);
    r->ready = 0;
    r->pub = connect_one(r, 1);
    r->sub = r->pub ? connect_one(r, 0) : NULL;
    if (!r->sub) lost(r, NULL, "cannot connect");
}

static void connect_both(struct redis *r)
{
    char port[8];
    struct addrinfo *res = NULL;
    int err = 0;
    snprintf(port, sizeof port, "%d", r->port);
    r->lookup = wsk_lookup_start(r->ev, r->host, port, resolved, r, &res, &err);
    if (!r->lookup) resolved(r, res, err, 0); /* an address, or no thread */
}

static void on_retry(struct ev_loop *ev, ev_timer *w, int revents)
{
    (void)ev;
    (void)revents;
    connect_both(w->data);
}

/* ----- the engine ---------------------------------------------------------------------------- */

/* Every reply on `sub`: subscribe confirmations, messages and unsubscribe confirmations. */
static void on_sub(redisAsyncContext *ac, void *reply, void *priv)
{
    struct redis *r = priv;
    const redisReply *rep = reply;
    (void)ac;
    if (!rep || r->closing || rep->type != REDIS_REPLY_ARRAY || rep->elements < 3) return;
    const redisReply *kind = rep->element[0], *chan = rep->element[1], *msg = rep->element[2];
    if (kind->type != REDIS_REPLY_STRING || chan->type != REDIS_REPLY_STRING) return;
    /* A pattern's: "pmessage", the pattern, the channel published on, the message. */
    int pm = !strcmp(kind->str, "pmessage") && rep->elements >= 4;
    if (pm) {
        chan = rep->element[2];
        msg = rep->element[3];
    }
    if ((pm || !strcmp(kind->str, "message")) && chan->type == REDIS_REPLY_STRING &&
        msg->type == REDIS_REPLY_STRING) {
        wsk_bridge_message(r->link, chan->str, chan->len, msg->str, msg->len);
    } else if (!strcmp(kind->str, "subscribe") && chan->len > strlen(SYNC_CHAN) &&
               !strcmp(chan->str + chan->len - strlen(SYNC_CHAN), SYNC_CHAN)) {
        r->synced++;
        marks_run(r);
    } else if (!strcmp(kind->str, "unsubscribe") &&
               wsk_bridge_wants(r->link, chan->str, chan->len)) {
        /* The topic came back while UNSUBSCRIBE was on its way.  hiredis releases before
         * 0.14 forget the channel's callback at this confirmation even with a SUBSCRIBE
         * pending; subscribing again costs one idempotent command and covers them. */
        const char *argv[2] = {"SUBSCRIBE", chan->str};
        size_t len[2] = {9, chan->len};
        redisAsyncCommandArgv(r->sub, on_sub, r, 2, argv, len);
    }
}

static int chan_cmd(struct redis *r, const char *cmd, const char *chan, size_t n)
{
    if (r->ready < 2) return -1;
    const char *argv[2] = {cmd, chan};
    size_t len[2] = {strlen(cmd), n};
    return redisAsyncCommandArgv(r->sub, on_sub, r, 2, argv, len) == REDIS_OK ? 0 : -1;
}

static int rd_subscribe(void *e, const char *chan, size_t n)
{
    struct redis *r = e;
    uint64_t h = wsk_siphash13(0, 0, chan, n); /* channels a node asked for: no key needed */
    if (r->ready < 2) return -1;
    if (chan_slot(r, chan, n, h) != SIZE_MAX) return 0;
    struct rchan *c = malloc(sizeof *c + n);
    if (!c || wsk_ptab_insert(&r->chans, h, c) < 0) {
        free(c);
        return -1;
    }
    c->n = n;
    memcpy(c->chan, chan, n);
    return chan_cmd(r, "SUBSCRIBE", chan, n);
}

static int rd_unsubscribe(void *e, const char *chan, size_t n)
{
    struct redis *r = e;
    uint64_t h = wsk_siphash13(0, 0, chan, n);
    size_t i = r->ready < 2 ? SIZE_MAX : chan_slot(r, chan, n, h);
    if (i == SIZE_MAX) return r->ready < 2 ? -1 : 0;
    void *c = r->chans.v[i];
    wsk_ptab_remove(&r->chans, h, c);
    free(c);
    return chan_cmd(r, "UNSUBSCRIBE", chan, n);
}

/* The Redis glob of pattern channel chan[0..n) (the topic pattern from plen on) in out (3n + 8
 * bytes); its length.  Literal bytes are escaped; a wildcard token "*" becomes "[^.]*" and a
 * last ">" "?*": Redis' "*" crosses dots, so both match more than they stand for (the node keeps
 * only what its own patterns match), and they differ, so that two patterns are never one glob
 * (Redis would count them as one subscription, and PUNSUBSCRIBE of either would end both). */
static size_t glob_of(const char *chan, size_t n, size_t plen, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = chan[i];
        int whole =
            i >= plen && (i == plen || chan[i - 1] == '.') && (i + 1 == n || chan[i + 1] == '.');
        if (whole && (ch == '*' || ch == '>')) {
            const char *g = ch == '*' ? "[^.]*" : "?*";
            memcpy(out + o, g, strlen(g));
            o += strlen(g);
            continue;
        }
        if (ch == '*' || ch == '?' || ch == '[' || ch == ']' || ch == '\\') out[o++] = '\\';
        out[o++] = ch;
    }
    return o;
}

static int pattern_cmd(struct redis *r, const char *cmd, const char *chan, size_t n, size_t plen)
{
    char *glob = malloc(3 * n + 8); /* "*." becomes 6 bytes, an escaped byte 2 */
    int st = glob ? chan_cmd(r, cmd, glob, glob_of(chan, n, plen, glob)) : -1;
    free(glob);
    return st;
}

static int rd_psubscribe(void *e, const char *chan, size_t n, size_t plen)
{
    return pattern_cmd(e, "PSUBSCRIBE", chan, n, plen);
}

static int rd_punsubscribe(void *e, const char *chan, size_t n, size_t plen)
{
    return pattern_cmd(e, "PUNSUBSCRIBE", chan, n, plen);
}

/* The tag of an uncounted publish (on_published): the message's length, shifted left 8
 * bits, and the subscriptions of this node that Redis counts (bridge.h's self, at most 255). */
static void *publish_tag(size_t len, int self)
{
    return (void *)(uintptr_t)(len << 8 | (uintptr_t)(self > 255 ? 255 : self));
}

/* priv: publish_tag's. */
static void on_published(redisAsyncContext *ac, void *reply, void *priv)
{
    struct redis *r = ac->data;
    const redisReply *rep = reply;
    uintptr_t tag = (uintptr_t)priv;
    if (!rep || r->closing) return;
    r->inflight -= tag >> 8 <= r->inflight ? tag >> 8 : r->inflight;
    if (rep->type == REDIS_REPLY_INTEGER)
        wsk_bridge_reached(r->link, (long)rep->integer, (int)(tag & 255));
}

/* The same for a publish whose sender waits for the count.  hiredis calls every callback
 * pending when a connection goes, with no reply: the sender then hears -1. */
static void on_counted(redisAsyncContext *ac, void *reply, void *priv)
{
    struct redis *r = ac->data;
    const redisReply *rep = reply;
    wsk_bridge_count *c = priv;
    if (rep) r->inflight -= c->len <= r->inflight ? c->len : r->inflight;
    wsk_bridge_counted(r->link, c,
                       rep && rep->type == REDIS_REPLY_INTEGER ? (long)rep->integer : -1);
}

/* Decimal digits of v at p; how many. */
static size_t put_u64(char *p, uint64_t v)
{
    char t[20];
    size_t n = 0;
    do t[n++] = (char)('0' + v % 10);
    while (v /= 10);
    for (size_t i = 0; i < n; i++) p[i] = t[n - 1 - i];
    return n;
}

/* Queues PUBLISH chan msg.  A small one is formatted as RESP in r->resp, reused (what
 * redisAsyncCommandArgv would do in a buffer allocated, sized in a first pass and freed per
 * command: a cost per message); a large one goes through hiredis' formatting. */
static int publish_resp(struct redis *r, const char *chan, size_t n, const void *msg, size_t len,
                        redisCallbackFn *fn, void *priv)
{
    if (n + len + 80 > RESP_MAX || (!r->resp && !(r->resp = malloc(RESP_MAX)))) {
        const char *argv[3] = {"PUBLISH", chan, msg};
        size_t alen[3] = {7, n, len};
        return redisAsyncCommandArgv(r->pub, fn, priv, 3, argv, alen);
    }
    char *p = r->resp;
    memcpy(p, "*3\r\n$7\r\nPUBLISH\r\n$", 18);
    p += 18;
    p += put_u64(p, n);
    memcpy(p, "\r\n", 2);
    memcpy(p + 2, chan, n);
    p += 2 + n;
    memcpy(p, "\r\n$", 3);
    p += 3;
    p += put_u64(p, len);
    memcpy(p, "\r\n", 2);
    if (len) memcpy(p + 2, msg, len);
    p += 2 + len;
    memcpy(p, "\r\n", 2);
    p += 2;
    return redisAsyncFormattedCommand(r->pub, fn, priv, r->resp, (size_t)(p - r->resp));
}

/* hiredis' libev adapter writes a connection when the loop reports it writable: a write
 * watcher started per loop iteration with a publish, one more poll, and epoll_ctl calls to add
 * and drop the interest.  Written here instead, just before the loop polls, every publish of
 * the iteration leaves in one write and the watcher's start and stop fall in one iteration,
 * which libev turns into no system call at all.  What the socket does not take waits for the
 * watcher as before. */
static void flush_pub(struct ev_loop *ev, ev_prepare *w, int revents)
{
    struct redis *r = w->data;
    (void)ev;
    (void)revents;
    if (r->ready < 2 || !r->pub || !sdslen(r->pub->c.obuf)) return;
    if (r->hold > r->synced) /* sub is not listening yet: the adapter must not write either */
        r->pub->ev.delWrite(r->pub->ev.data);
    else
        redisAsyncHandleWrite(r->pub);
}

static int rd_publish(void *e, const char *chan, size_t n, const void *msg, size_t len, int self,
                      wsk_bridge_count *count)
{
    struct redis *r = e;
    if (r->ready < 2 || r->inflight + len > INFLIGHT_MAX) return -1;
    int st = count ? publish_resp(r, chan, n, msg, len, on_counted, count)
                   : publish_resp(r, chan, n, msg, len, on_published, publish_tag(len, self));
    if (st != REDIS_OK) return -1;
    r->inflight += len;
    return 0;
}

static void rd_close(void *e)
{
    struct redis *r = e;
    r->closing = 1;
    ev_timer_stop(r->ev, &r->retry);
    ev_ref(r->ev);
    ev_prepare_stop(r->ev, &r->flush);
    free(r->resp);
    marks_drop(r);
    chans_clear(r);
    if (r->lookup) wsk_lookup_cancel(r->lookup);
    if (r->pub) redisAsyncFree(r->pub);
    if (r->sub) redisAsyncFree(r->sub);
    wsk_rreply_free(&r->pub_replies);
    wsk_rreply_free(&r->sub_replies);
    free(r->user);
    free(r->password);
    free(r);
}

static void *rd_open(wsk_bridge_link *link, struct ev_loop *ev, const char *url, char *err,
                     size_t cap)
{
    struct redis *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, cap, "out of memory");
        return NULL;
    }
    r->link = link;
    r->ev = ev;
    r->backoff = BACKOFF_MIN;
    r->marks_end = &r->marks;
    ev_init(&r->retry, on_retry);
    r->retry.data = r;
    ev_prepare_init(&r->flush, flush_pub);
    r->flush.data = r;
    if (parse_url(r, url, err, cap) < 0) {
        free(r->user);
        free(r->password);
        free(r);
        return NULL;
    }
    ev_prepare_start(ev, &r->flush);
    ev_unref(ev); /* the connections keep the loop running, not this */
    connect_both(r);
    return r;
}

/* ----- history ------------------------------------------------------------------------------ *
 *
 * A topic's history is a stream, PREFIX "history:" TOPIC, and a hash, PREFIX "head:" TOPIC, with
 * the topic's last offset and the epoch of its history.  Each is changed by a Lua script only,
 * which Redis runs atomically:
 *  - APPEND gives the message the next offset (HINCRBY), stores the envelope with the offset and
 *    epoch in it under stream ID 0-OFFSET (explicit IDs: the stream's order is the offsets',
 *    so XTRIM MINID cannot go by time) with Redis' time in ms (field t), trims the stream to
 *    the depth (XADD MAXLEN), and with a TTL notes it in the hash, XDELs the entries older than
 *    it from the stream's head (64 at most per publish), sets it on both keys (PEXPIRE: a topic
 *    nobody publishes to lets its history go) and PUBLISHes that same envelope.  A
 *    hash that is gone (expired, FLUSHALL, Redis restarted without persistence) starts a new
 *    life: the node's fresh random epoch, the offsets from 1, the stream emptied.
 *  - RANGE answers the epoch, the last offset, the oldest entry's ID and the entries after an
 *    offset, at one instant, leaving out the entries older than the TTL (not trimmed yet), so
 *    that a recovery whose first wanted message expired hears "recovered": false.
 *  - APPEND with a retained publish also SETs the envelope (offset and epoch in it) as the
 *    topic's retained message, PREFIX "retained:" TOPIC, after "t" and the Redis time in ms
 *    (13 digits); an empty one leaves the time alone, for a day (CLEARED_MS).  RETAIN does the
 *    same with PUBLISH alone, without history.  A message has no TTL (MQTT's).
 *  - MARK publishes a read's mark followed by the retained envelope (rd_retained).
 *  - KEPT reads whether the retained key holds a message and XLEN of the stream of some
 *    topics (rd_kept).
 *  - RESTORE writes a retained publish this node made while Redis was down (rd_restore), as
 *    made age ms ago, unless the key holds a later time: another node's, made meanwhile.
 * The PUBLISH comes from the script, so the live messages on the channel are in the offsets'
 * order for every subscriber.  The scripts go by their SHA-1 (EVALSHA), loaded once per
 * connection (SCRIPT LOAD, queued ahead of the first EVALSHA on the same connection).  A
 * message whose script fails (Redis out of memory, its scripts flushed) is logged and handed
 * back to the bridge (a copy is kept while the script is on its way: struct scripted), which
 * delivers it on this node without an offset and counts it as failed. */

enum { APPEND, RANGE, RETAIN, MARK, KEPT, RESTORE };
static const char *const scripts[NSCRIPTS] = {
    /* APPEND: KEYS head, stream, retained; ARGV channel, envelope, depth, ttl in ms (0: none),
     * epoch, retain (0: no, 1: keep, 2: clear), how long a clear's time stays */
    "local ep = redis.call('HGET', KEYS[1], 'epoch')\n"
    "if not ep then\n"
    "  ep = ARGV[5]\n"
    "  redis.call('DEL', KEYS[2])\n"
    "  redis.call('HSET', KEYS[1], 'epoch', ep)\n"
    "end\n"
    "local off = redis.call('HINCRBY', KEYS[1], 'offset', 1)\n"
    "local env = string.sub(ARGV[2], 1, 18) .. string.format('%020d', off) .. ep ..\n"
    "  string.sub(ARGV[2], 55)\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], string.format('0-%d', off), 'e', env,\n"
    "  't', now)\n"
    "if ARGV[4] ~= '0' then\n"
    "  redis.call('HSET', KEYS[1], 'ttl', ARGV[4])\n"
    "  local cut = now - tonumber(ARGV[4])\n"
    "  for _, e in ipairs(redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 64)) do\n"
    "    if not e[2][4] or tonumber(e[2][4]) >= cut then break end\n"
    "    redis.call('XDEL', KEYS[2], e[1])\n"
    "  end\n"
    "  redis.call('PEXPIRE', KEYS[1], ARGV[4])\n"
    "  redis.call('PEXPIRE', KEYS[2], ARGV[4])\n"
    "else\n"
    "  redis.call('HDEL', KEYS[1], 'ttl')\n"
    "end\n"
    "local at = 't' .. string.format('%013d', now)\n"
    "if ARGV[6] == '1' then redis.call('SET', KEYS[3], at .. env) end\n"
    "if ARGV[6] == '2' then redis.call('SET', KEYS[3], at, 'PX', ARGV[7]) end\n"
    "return redis.call('PUBLISH', ARGV[1], env)\n",
    /* RANGE: KEYS head, stream; ARGV after, max.  Entries older than the head's ttl are
     * skipped: the first one kept is the oldest younger one. */
    "local h = redis.call('HMGET', KEYS[1], 'epoch', 'offset', 'ttl')\n"
    "if not h[1] then return {'', 0, '', {}} end\n"
    "local cut = nil\n"
    "if h[3] then\n"
    "  local t = redis.call('TIME')\n"
    "  cut = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(h[3])\n"
    "end\n"
    "local function young(e)\n"
    "  return not cut or not e[2][4] or tonumber(e[2][4]) >= cut\n"
    "end\n"
    "local f, from = '', '-'\n"
    "while f == '' do\n"
    "  local b = redis.call('XRANGE', KEYS[2], from, '+', 'COUNT', 64)\n"
    "  for _, e in ipairs(b) do\n"
    "    if young(e) then f = e[1] break end\n"
    "  end\n"
    "  if #b < 64 then break end\n"
    "  from = '(' .. b[#b][1]\n"
    "end\n"
    "local r = {}\n"
    "for _, e in ipairs(redis.call('XRANGE', KEYS[2], '(0-' .. ARGV[1], '+', 'COUNT', ARGV[2])) "
    "do\n"
    "  if young(e) then r[#r + 1] = e end\n"
    "end\n"
    "return {h[1], tonumber(h[2]), f, r}\n",
    /* RETAIN: KEYS retained; ARGV channel, envelope, keep (1) or clear (2), how long a
     * clear's time stays */
    "local t = redis.call('TIME')\n"
    "local at = 't' .. string.format('%013d', tonumber(t[1]) * 1000 +\n"
    "  math.floor(tonumber(t[2]) / 1000))\n"
    "if ARGV[3] == '1' then redis.call('SET', KEYS[1], at .. ARGV[2])\n"
    "else redis.call('SET', KEYS[1], at, 'PX', ARGV[4]) end\n"
    "return redis.call('PUBLISH', ARGV[1], ARGV[2])\n",
    /* MARK: KEYS retained; ARGV channel, mark */
    "local v = redis.call('GET', KEYS[1]) or ''\n"
    "if string.byte(v, 1) == 116 then v = string.sub(v, 15) end\n"
    "redis.call('PUBLISH', ARGV[1], ARGV[2] .. v)\n"
    "return 1\n",
    /* KEPT: KEYS retained and stream of each topic; {holds a message, XLEN, ...} */
    "local out = {}\n"
    "for i = 1, #KEYS, 2 do\n"
    "  out[#out + 1] = redis.call('STRLEN', KEYS[i]) > 14 and 1 or 0\n"
    "  out[#out + 1] = redis.call('XLEN', KEYS[i + 1])\n"
    "end\n"
    "return out\n",
    /* RESTORE: KEYS retained; ARGV envelope ('': a clear), age in ms, how long a clear's time
     * stays.  1 when written, 0 when a later one is there. */
    "local t = redis.call('TIME')\n"
    "local at = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[2])\n"
    "local v = redis.call('GET', KEYS[1])\n"
    "if v and string.byte(v, 1) == 116 and tonumber(string.sub(v, 2, 14)) > at then\n"
    "  return 0\n"
    "end\n"
    "if ARGV[1] == '' then\n"
    "  redis.call('SET', KEYS[1], 't' .. string.format('%013d', at), 'PX', ARGV[3])\n"
    "else\n"
    "  redis.call('SET', KEYS[1], 't' .. string.format('%013d', at) .. ARGV[1])\n"
    "end\n"
    "return 1\n",
};

/* Key PREFIX KIND TOPIC of channel chan[0..n) (prefix chan[0..plen)) in out (n + 9 bytes at
 * most: KIND is "head:", "history:" or "retained:"); its length. */
static size_t topic_key(const char *chan, size_t n, size_t plen, const char *kind, char *out)
{
    size_t k = strlen(kind);
    memcpy(out, chan, plen);
    memcpy(out + plen, kind, k);
    memcpy(out + plen + k, chan + plen, n - plen);
    return n + k;
}

/* The keys of channel chan[0..n): head and stream in out (n + 8 bytes each). */
static void history_keys(const char *chan, size_t n, size_t plen, char *head, size_t *hlen,
                         char *stream, size_t *slen)
{
    *hlen = topic_key(chan, n, plen, "head:", head);
    *slen = topic_key(chan, n, plen, "history:", stream);
}

/* Queues script i by its SHA-1 with argc arguments after the script's name (the keys' count
 * first); the scripts are loaded first on a new connection. */
static int eval_script(struct redis *r, int i, int argc, const char **argv, size_t *len,
                       redisCallbackFn *fn, void *priv)
{
    for (int k = 0; k < NSCRIPTS && !r->sha[k][0]; k++) {
        static const char hex[] = "0123456789abcdef";
        uint8_t d[20];
        wsk_sha1(scripts[k], strlen(scripts[k]), "", 0, d);
        for (int j = 0; j < 20; j++) {
            r->sha[k][2 * j] = hex[d[j] >> 4];
            r->sha[k][2 * j + 1] = hex[d[j] & 15];
        }
    }
    if (r->scripts_on != r->pub) {
        for (int k = 0; k < NSCRIPTS; k++) {
            const char *load[3] = {"SCRIPT", "LOAD", scripts[k]};
            size_t ll[3] = {6, 4, strlen(scripts[k])};
            if (redisAsyncCommandArgv(r->pub, NULL, NULL, 3, load, ll) != REDIS_OK) return -1;
        }
        r->scripts_on = r->pub;
    }
    argv[0] = "EVALSHA";
    len[0] = 7;
    argv[1] = r->sha[i];
    len[1] = 40;
    return redisAsyncCommandArgv(r->pub, fn, priv, argc + 2, argv, len) == REDIS_OK ? 0 : -1;
}

/* A script's error reply: logged; NOSCRIPT (Redis lost its scripts) loads them again. */
static void script_error(struct redis *r, const redisReply *rep)
{
    if (!rep || rep->type != REDIS_REPLY_ERROR) return;
    if (!strncmp(rep->str, "NOSCRIPT", 8)) r->scripts_on = NULL;
    wsk_bridge_log(r->link, WSK_LOG_WARN, "history: %s", rep->str);
}

/* A script that publishes an envelope, on its way: a copy of the channel and envelope, which
 * go back to the bridge when the script fails (wsk_bridge_unkept). */
struct scripted {
    wsk_bridge_count *count; /* the sender's, or NULL */
    int self;
    size_t n, len;
    uint8_t data[]; /* channel, then envelope */
};

static void on_scripted(redisAsyncContext *ac, void *reply, void *priv)
{
    struct redis *r = ac->data;
    const redisReply *rep = reply;
    struct scripted *sp = priv;
    if (rep) r->inflight -= sp->len <= r->inflight ? sp->len : r->inflight;
    if (!r->closing) script_error(r, rep);
    if (rep && rep->type == REDIS_REPLY_ERROR && !r->closing)
        wsk_bridge_unkept(r->link, (const char *)sp->data, sp->n, sp->data + sp->n, sp->len,
                          sp->count);
    else if (sp->count)
        wsk_bridge_counted(r->link, sp->count,
                           rep && rep->type == REDIS_REPLY_INTEGER ? (long)rep->integer : -1);
    else if (rep && rep->type == REDIS_REPLY_INTEGER && !r->closing)
        wsk_bridge_reached(r->link, (long)rep->integer, sp->self);
    free(sp);
}

/* Script i that publishes envelope msg[0..len) on chan[0..n), counted in flight as rd_publish
 * does. */
static int eval_publish(struct redis *r, int i, int argc, const char **argv, size_t *alen,
                        const char *chan, size_t n, const void *msg, size_t len, int self,
                        wsk_bridge_count *count)
{
    struct scripted *sp = malloc(sizeof *sp + n + len);
    if (!sp) return -1;
    *sp = (struct scripted){count, self > 255 ? 255 : self, n, len};
    memcpy(sp->data, chan, n);
    memcpy(sp->data + n, msg, len);
    if (eval_script(r, i, argc, argv, alen, on_scripted, sp) < 0) {
        free(sp);
        return -1;
    }
    r->inflight += len;
    return 0;
}

/* APPEND, keeping or clearing the retained message too (keep "1" or "2") or not ("0"). */
static int append_cmd(struct redis *r, const char *chan, size_t n, size_t plen, const void *msg,
                      size_t len, size_t depth, double ttl, int self, wsk_bridge_count *count,
                      const char *keep)
{
    if (r->ready < 2 || r->inflight + len > INFLIGHT_MAX) return -1;
    char *keys = malloc(3 * n + 32), sdepth[24], sttl[24], epoch[17];
    if (!keys) return -1;
    uint64_t x;
    if (getrandom(&x, sizeof x, GRND_NONBLOCK) != (ssize_t)sizeof x) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        x = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15u ^ (uint64_t)ts.tv_sec ^ r->inflight;
    }
    snprintf(epoch, sizeof epoch, "%016llx", (unsigned long long)x);
    snprintf(sdepth, sizeof sdepth, "%zu", depth);
    snprintf(sttl, sizeof sttl, "%.0f", ttl * 1000);
    const char *argv[13] = {NULL, NULL,   "3",  keys,  keys + n + 8, keys + 2 * n + 16, chan,
                            msg,  sdepth, sttl, epoch, keep,         CLEARED_MS};
    size_t alen[13] = {
        0, 0, 1, 0, 0, 0, n, len, strlen(sdepth), strlen(sttl), 16, 1, strlen(CLEARED_MS)};
    history_keys(chan, n, plen, keys, &alen[3], keys + n + 8, &alen[4]);
    alen[5] = topic_key(chan, n, plen, "retained:", keys + 2 * n + 16);
    int st = eval_publish(r, APPEND, 11, argv, alen, chan, n, msg, len, self, count);
    free(keys);
    return st;
}

static int rd_append(void *e, const char *chan, size_t n, size_t plen, const void *msg, size_t len,
                     size_t depth, double ttl, int self, wsk_bridge_count *count)
{
    return append_cmd(e, chan, n, plen, msg, len, depth, ttl, self, count, "0");
}

static int rd_retain(void *e, const char *chan, size_t n, size_t plen, const void *msg, size_t len,
                     int keep, int history, size_t depth, double ttl, int self,
                     wsk_bridge_count *count)
{
    struct redis *r = e;
    const char *k = keep ? "1" : "2";
    if (history) return append_cmd(r, chan, n, plen, msg, len, depth, ttl, self, count, k);
    if (r->ready < 2 || r->inflight + len > INFLIGHT_MAX) return -1;
    char *key = malloc(n + 16);
    if (!key) return -1;
    const char *argv[8] = {NULL, NULL, "1", key, chan, msg, k, CLEARED_MS};
    size_t alen[8] = {0, 0,   1, topic_key(chan, n, plen, "retained:", key),
                      n, len, 1, strlen(CLEARED_MS)};
    int st = eval_publish(r, RETAIN, 6, argv, alen, chan, n, msg, len, self, count);
    free(key);
    return st;
}

/* MARK's reply: an error (or none: the connection went) and the read will not come back. */
static void on_marked(redisAsyncContext *ac, void *reply, void *priv)
{
    struct redis *r = ac->data;
    const redisReply *rep = reply;
    if (r->closing) return;
    script_error(r, rep);
    if (!rep || rep->type == REDIS_REPLY_ERROR)
        wsk_bridge_mark_failed(r->link, (uint64_t)(uintptr_t)priv);
}

/* The reads whose sync `sub` confirmed: their MARK goes. */
static void marks_run(struct redis *r)
{
    while (r->marks && r->marks->sync <= r->synced) {
        struct rmark *m = r->marks;
        if (!(r->marks = m->next)) r->marks_end = &r->marks;
        const char *argv[6] = {NULL, NULL, "1", m->key, m->chan, m->mark};
        size_t alen[6] = {0, 0, 1, m->klen, m->n, m->mlen};
        if (eval_script(r, MARK, 4, argv, alen, on_marked, (void *)(uintptr_t)m->id) < 0)
            wsk_bridge_mark_failed(r->link, m->id);
        free(m);
    }
}

/* Asks `sub` for a sync (the subscription of PREFIX SYNC_CHAN, left at once: its confirmation
 * is all it is for, and PUBSUB CHANNELS does not keep it): once r->synced reaches the number
 * returned, Redis has run every command `sub` was given before.  0 when it cannot ask. */
static unsigned long sync_ask(struct redis *r)
{
    size_t plen;
    const char *prefix = wsk_bridge_prefix(r->link, &plen);
    char sync[WSK_BRIDGE_PREFIX_MAX + sizeof SYNC_CHAN];
    memcpy(sync, prefix, plen);
    memcpy(sync + plen, SYNC_CHAN, strlen(SYNC_CHAN));
    const char *argv[2] = {"SUBSCRIBE", sync}, *unsub[2] = {"UNSUBSCRIBE", sync};
    size_t alen[2] = {9, plen + strlen(SYNC_CHAN)}, ulen[2] = {11, alen[1]};
    if (redisAsyncCommandArgv(r->sub, on_sub, r, 2, argv, alen) != REDIS_OK) return 0;
    redisAsyncCommandArgv(r->sub, on_sub, r, 2, unsub, ulen);
    return ++r->syncs; /* its confirmation comes, whatever follows (synced never runs ahead) */
}

static int rd_retained(void *e, const char *chan, size_t n, size_t plen, const void *mark,
                       size_t mlen, uint64_t id)
{
    struct redis *r = e;
    (void)plen; /* the bridge's prefix, as sync_ask finds it */
    if (r->ready < 2) return -1;
    struct rmark *m = malloc(sizeof *m + 2 * n + 16 + mlen);
    if (!m) return -1;
    if (!sync_ask(r)) {
        free(m);
        return -1;
    }
    *m = (struct rmark){NULL, id, r->syncs, n, 0, mlen, NULL, NULL};
    memcpy(m->chan, chan, n);
    m->key = m->chan + n;
    m->klen = topic_key(chan, n, plen, "retained:", m->key);
    m->mark = m->key + m->klen;
    memcpy(m->mark, mark, mlen);
    *r->marks_end = m;
    r->marks_end = &m->next;
    return 0;
}

/* The offset of stream ID "0-OFFSET", 0 for another. */
static uint64_t id_offset(const redisReply *id)
{
    if (id->type != REDIS_REPLY_STRING || id->len < 3 || memcmp(id->str, "0-", 2)) return 0;
    return strtoull(id->str + 2, NULL, 10);
}

/* RANGE's reply: {epoch, offset, first ID, {{ID, {"e", envelope}}, ...}}. */
static void on_ranged(redisAsyncContext *ac, void *reply, void *priv)
{
    struct redis *r = ac->data;
    const redisReply *rep = reply;
    if (rep && !r->closing) script_error(r, rep);
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 4 ||
        rep->element[0]->type != REDIS_REPLY_STRING ||
        rep->element[1]->type != REDIS_REPLY_INTEGER ||
        rep->element[3]->type != REDIS_REPLY_ARRAY) {
        wsk_bridge_ranged(r->link, priv, 0, NULL, 0, 0, NULL, NULL, 0);
        return;
    }
    const redisReply *es = rep->element[3];
    const char **env = es->elements ? malloc(es->elements * sizeof *env) : NULL;
    size_t *lens = es->elements ? malloc(es->elements * sizeof *lens) : NULL, k = 0;
    for (size_t i = 0; env && lens && i < es->elements; i++) {
        const redisReply *en = es->element[i], *fv;
        if (en->type != REDIS_REPLY_ARRAY || en->elements != 2 ||
            (fv = en->element[1])->type != REDIS_REPLY_ARRAY || fv->elements < 2 ||
            fv->element[1]->type != REDIS_REPLY_STRING)
            continue;
        env[k] = fv->element[1]->str;
        lens[k++] = fv->element[1]->len;
    }
    int ok = !es->elements || (env && lens);
    wsk_bridge_ranged(r->link, priv, ok, rep->element[0]->str, (uint64_t)rep->element[1]->integer,
                      id_offset(rep->element[2]), env, lens, k);
    free(env);
    free(lens);
}

static int rd_range(void *e, const char *chan, size_t n, size_t plen, uint64_t after, size_t max,
                    wsk_bridge_range *rg)
{
    struct redis *r = e;
    if (r->ready < 2) return -1;
    char *keys = malloc(2 * n + 16), safter[24], smax[24];
    if (!keys) return -1;
    snprintf(safter, sizeof safter, "%llu", (unsigned long long)after);
    snprintf(smax, sizeof smax, "%zu", max);
    const char *argv[7] = {NULL, NULL, "2", keys, keys + n + 8, safter, smax};
    size_t alen[7] = {0, 0, 1, 0, 0, strlen(safter), strlen(smax)};
    history_keys(chan, n, plen, keys, &alen[3], keys + n + 8, &alen[4]);
    int st = eval_script(r, RANGE, 5, argv, alen, on_ranged, rg);
    free(keys);
    return st;
}

/* KEPT's reply: 2 integers per topic. */
static void on_kept(redisAsyncContext *ac, void *reply, void *priv)
{
    struct redis *r = ac->data;
    const redisReply *rep = reply;
    uint64_t *v = NULL;
    if (rep && !r->closing) script_error(r, rep);
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements &&
        (v = malloc(rep->elements * sizeof *v))) {
        for (size_t i = 0; i < rep->elements; i++)
            v[i] = rep->element[i]->type == REDIS_REPLY_INTEGER && rep->element[i]->integer > 0
                       ? (uint64_t)rep->element[i]->integer
                       : 0;
    }
    wsk_bridge_kept_done(r->link, priv, v, v ? rep->elements : 0);
    free(v);
}

static int rd_kept(void *e, const char *const *chans, const size_t *lens, size_t k, size_t plen,
                   wsk_bridge_kept *q)
{
    struct redis *r = e;
    if (r->ready < 2) return -1;
    size_t total = 0;
    for (size_t i = 0; i < k; i++) total += 2 * lens[i] + 24;
    const char **argv = malloc((3 + 2 * k) * sizeof *argv);
    size_t *alen = malloc((3 + 2 * k) * sizeof *alen);
    char *keys = malloc(total), nkeys[24];
    int st = -1;
    if (argv && alen && keys) {
        snprintf(nkeys, sizeof nkeys, "%zu", 2 * k);
        argv[2] = nkeys;
        alen[2] = strlen(nkeys);
        char *p = keys;
        for (size_t i = 0; i < k; i++) {
            argv[3 + 2 * i] = p;
            p += alen[3 + 2 * i] = topic_key(chans[i], lens[i], plen, "retained:", p);
            argv[4 + 2 * i] = p;
            p += alen[4 + 2 * i] = topic_key(chans[i], lens[i], plen, "history:", p);
        }
        st = eval_script(r, KEPT, (int)(1 + 2 * k), argv, alen, on_kept, q);
    }
    free(argv);
    free(alen);
    free(keys);
    return st;
}

/* RESTORE's reply: logged when it failed or found a later message. */
static void on_restored(redisAsyncContext *ac, void *reply, void *priv)
{
    struct redis *r = ac->data;
    const redisReply *rep = reply;
    (void)priv;
    if (r->closing) return;
    script_error(r, rep);
    if (rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 0)
        wsk_bridge_log(r->link, WSK_LOG_INFO,
                       "a retained publish made while down was not written: a later one is there");
}

static int rd_restore(void *e, const char *chan, size_t n, size_t plen, const void *env, size_t len,
                      uint64_t age_ms)
{
    struct redis *r = e;
    if (r->ready < 2) return -1;
    char *key = malloc(n + 16), age[24];
    if (!key) return -1;
    snprintf(age, sizeof age, "%llu", (unsigned long long)age_ms);
    const char *argv[7] = {NULL, NULL, "1", key, len ? env : "", age, CLEARED_MS};
    size_t alen[7] = {
        0, 0, 1, topic_key(chan, n, plen, "retained:", key), len, strlen(age), strlen(CLEARED_MS)};
    int st = eval_script(r, RESTORE, 5, argv, alen, on_restored, NULL);
    free(key);
    return st;
}

const wsk_bridge_engine wsk_bridge_redis = {
    .scheme = "redis",
    .open = rd_open,
    .subscribe = rd_subscribe,
    .unsubscribe = rd_unsubscribe,
    .psubscribe = rd_psubscribe,
    .punsubscribe = rd_punsubscribe,
    .publish = rd_publish,
    .close = rd_close,
    .append = rd_append,
    .range = rd_range,
    .retain = rd_retain,
    .retained = rd_retained,
    .kept = rd_kept,
    .restore = rd_restore,
};
