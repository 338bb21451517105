/* The Redis engine of the bridge (bridge.h), on hiredis' async API and its libev adapter.
 *
 * Two connections per Redis server: Redis gives a connection that has subscribed nothing but
 * (UN)SUBSCRIBE, so publishes go on `pub` and subscriptions on `sub`.  Each command is
 * appended to hiredis' output buffer and the adapter writes that buffer when the loop next
 * polls: every publish of one loop iteration leaves in one write (a pipeline), and one
 * connection keeps a topic's publishes in order.
 *
 * The link is up once both connections answered a PING (after AUTH and SELECT, whose errors
 * a PING would hit first).  Losing either drops both and retries after a backoff, 0.1 s
 * doubling to 5 s; the bridge then subscribes every live topic again.  A host name is resolved
 * again before each attempt, on io_resolve.c's thread (hiredis would block the loop in
 * getaddrinfo); hiredis is given the address. */
#include "bridge.h"
#include "io_resolve.h"

#include <arpa/inet.h>
#include <netdb.h>

#include <ev.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    int ready;   /* connections that answered their PING: up at 2 */
    int closing; /* close() is freeing the connections: no callback acts */
    ev_timer retry;
    double backoff;
    size_t inflight;  /* publish bytes awaiting Redis's reply */
    ev_prepare flush; /* writes pub's commands once per loop iteration (flush_pub) */
    char *resp;       /* a PUBLISH formatted (publish_resp): RESP_MAX bytes, made at first use */
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

/* A connection failed or was lost: drop the other one too and try again after the backoff. */
static void lost(struct redis *r, const redisAsyncContext *ac, const char *why)
{
    if (r->closing) return;
    /* hiredis frees ac itself; the other one goes here, its callbacks silenced. */
    redisAsyncContext *rest[2] = {r->pub == ac ? NULL : r->pub, r->sub == ac ? NULL : r->sub};
    r->pub = r->sub = NULL;
    /* Down before the free: its pending callbacks may publish, and must not reach a NULL pub. */
    r->ready = 0;
    r->inflight = 0; /* the replies awaited will never come */
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
        wsk_bridge_up(r->link);
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
    return chan_cmd(e, "SUBSCRIBE", chan, n);
}

static int rd_unsubscribe(void *e, const char *chan, size_t n)
{
    return chan_cmd(e, "UNSUBSCRIBE", chan, n);
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

/* priv: the message's length, shifted left 8 bits, and the subscriptions of this node that
 * Redis counts (bridge.h's self, at most 255). */
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
    if (r->ready == 2 && r->pub && sdslen(r->pub->c.obuf)) redisAsyncHandleWrite(r->pub);
}

static int rd_publish(void *e, const char *chan, size_t n, const void *msg, size_t len, int self,
                      wsk_bridge_count *count)
{
    struct redis *r = e;
    if (r->ready < 2 || r->inflight + len > INFLIGHT_MAX) return -1;
    void *tag = (void *)(uintptr_t)(len << 8 | (uintptr_t)(self > 255 ? 255 : self));
    int st = count ? publish_resp(r, chan, n, msg, len, on_counted, count)
                   : publish_resp(r, chan, n, msg, len, on_published, tag);
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
    if (r->lookup) wsk_lookup_cancel(r->lookup);
    if (r->pub) redisAsyncFree(r->pub);
    if (r->sub) redisAsyncFree(r->sub);
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

const wsk_bridge_engine wsk_bridge_redis = {
    .scheme = "redis",
    .open = rd_open,
    .subscribe = rd_subscribe,
    .unsubscribe = rd_unsubscribe,
    .psubscribe = rd_psubscribe,
    .punsubscribe = rd_punsubscribe,
    .publish = rd_publish,
    .close = rd_close,
};
