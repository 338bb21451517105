/* The NATS engine of the bridge (bridge.h), on the NATS C client driven by the loop through
 * nats_libev.c.
 *
 * One connection per URL list (a cluster's seed URLs: the client fails over between them and
 * resubscribes by itself after a reconnect).  Publishes go into the client's buffer and leave
 * just before the loop polls (SendAsap, and nats_libev.c's flush): all publishes of one loop
 * iteration in one write, in the iteration that made them.
 * The client reads on the loop (nats_libev.c); a filter of ours takes the bridge's messages as
 * they are parsed (take()), so that they never reach the client's delivery threads, and they
 * are handed to the bridge as the read returns.  What the client still runs on its own
 * threads (connection events, replies to inboxes) only queues (a mutex, a list, a cap on the
 * bytes held) and wakes the loop.
 * NATS cannot say how many subscribers a publish reached: counts are -1 (unknown).
 * A connection attempt blocks (TCP connect, the server's INFO, the PONG: up to the client's
 * timeout, 2 s), so the attempts before the first connection run on a thread of ours (the
 * connector); the loop goes on meanwhile.
 * History (append, range) and retained messages (retain, retained, kept) live in JetStream when
 * the server has it: bridge_nats_js.c.  A channel (or pattern) is two subscriptions: its subject
 * and its retained subject ($WSKR. before it), where retained publishes come. */
#include "bridge.h"
#include "bridge_nats_js.h"
#include "nats_libev.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NBUCKETS 1024
#define INBOX    "_INBOX." /* the client's default inbox prefix, which we keep */

/* Exported by libnats 3.4 but declared only in its private headers (conn.h, msg.h, natsp.h):
 * a filter called on every message the connection reads, which may take it (set *msg to NULL),
 * and the message's free without the client's garbage-collector thread. */
typedef void (*nats_msg_filter)(natsConnection *nc, natsMsg **msg, void *closure);
void natsConn_setFilterWithClosure(natsConnection *nc, nats_msg_filter f, void *closure);
void natsMsg_free(void *msg);

/* Bytes of messages from NATS waiting for the loop (with their subjects and list nodes, so that
 * a flood of empty messages is capped too), and of publishes in the client's buffer, beyond
 * which more are dropped: memory stays bounded when one side is slow. */
#define QUEUE_MAX (16u << 20)
#define OUT_MAX   (8u << 20)

/* Between the attempts before the first connection (ours): from RETRY_MS, doubling up to
 * RETRY_MAX_MS, as the Redis engine's backoff, so that a refused node does not flood the server's
 * log; between reconnections (the client's): RETRY_MS. */
#define RETRY_MS     100
#define RETRY_MAX_MS 5000

struct nsub {
    struct nsub *next;
    natsSubscription *sub;
    natsSubscription *rsub; /* its retained subject's (NULL: sub's ">" has it) */
    size_t n;
    char chan[];
};

struct nmsg {
    struct nmsg *next;
    size_t clen, len;
    char data[]; /* the channel, then the message */
};

struct nats {
    wsk_bridge_link *link;
    wsk_natsev x;
    wsk_natsjs *js;
    natsOptions *opts;
    natsConnection *nc; /* the loop's copy of conn, once the connector has connected */
    int up;             /* the loop's view */
    pthread_t connector;
    int connecting; /* connector was started: nt_close joins it */
    struct nsub *subs[NBUCKETS];
    char subj[WSK_BRIDGE_PREFIX_MAX + WSK_TOPIC_MAX + 1]; /* a NUL-terminated subject */
    /* ... and its retained subject (rsubject) */
    char rsubj[sizeof WSK_NATSJS_RSUBJ + WSK_BRIDGE_PREFIX_MAX + WSK_TOPIC_MAX];
    /* Filled by NATS' threads and the connector, under x.mu's sibling: */
    pthread_mutex_t mu;
    natsConnection *conn; /* the connector's, once connected */
    struct nmsg *head, *tail;
    size_t queued;
    uint64_t dropped;
    int went_down, connected, closing;
    int closed;           /* the client's last callback for the connection has run */
    int gave_up;          /* ... and it came before nt_close: the client stopped retrying */
    pthread_cond_t gone;  /* signalled with closed */
    pthread_cond_t retry; /* signalled with closing: the connector stops waiting */
    char why[128];
};

static size_t bucket(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h % NBUCKETS;
}

static struct nsub **sub_find(struct nats *t, const char *chan, size_t n)
{
    struct nsub **p = &t->subs[bucket(chan, n)];
    while (*p && ((*p)->n != n || memcmp((*p)->chan, chan, n))) p = &(*p)->next;
    return p;
}

static const char *subject(struct nats *t, const char *chan, size_t n)
{
    memcpy(t->subj, chan, n);
    t->subj[n] = 0;
    return t->subj;
}

/* The retained subject of subject subj (bridge_nats_js.h). */
static const char *rsubject(struct nats *t, const char *subj)
{
    snprintf(t->rsubj, sizeof t->rsubj, WSK_NATSJS_RSUBJ "%s", subj);
    return t->rsubj;
}

static void nsub_free(struct nsub *s)
{
    natsSubscription_Destroy(s->sub);
    if (s->rsub) natsSubscription_Destroy(s->rsub);
    free(s);
}

/* ----- NATS' threads ------------------------------------------------------------------------- */

/* Queues a copy of msg for the loop (wsk_natsev_wake: the first of a batch wakes it). */
static void queue_msg(struct nats *t, natsMsg *msg)
{
    const char *subj = natsMsg_GetSubject(msg);
    size_t clen = strlen(subj), len = (size_t)natsMsg_GetDataLength(msg);
    size_t size = sizeof(struct nmsg) + clen + len; /* what the cap counts: all of it */
    struct nmsg *m = malloc(size);
    pthread_mutex_lock(&t->mu);
    if (!m || t->closing || t->queued + size > QUEUE_MAX) {
        t->dropped++;
        free(m);
    } else {
        m->next = NULL;
        m->clen = clen;
        m->len = len;
        memcpy(m->data, subj, clen);
        memcpy(m->data + clen, natsMsg_GetData(msg), len);
        wsk_natsjs_offset(msg, m->data + clen, len);
        /* Only the first message of a batch wakes the loop: on_wake takes the whole list, so
         * one waiting for the loop means a wake-up on its way already. */
        if (t->tail) {
            t->tail->next = m;
        } else {
            t->head = m;
            wsk_natsev_wake(&t->x);
        }
        t->tail = m;
        t->queued += size;
    }
    pthread_mutex_unlock(&t->mu);
}

/* A subscription's handler, on the client's delivery thread: only for what take() leaves. */
static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    queue_msg(closure, msg);
    natsMsg_Destroy(msg);
}

/* Where the client reads (the loop thread, nats_libev.c), before it hands a message to the
 * subscription's delivery thread: the bridge's messages are taken here instead, queued, and
 * delivered as the read returns, so a message wakes no thread (the delivery thread's wake-up
 * and, for the message's free, the client's garbage collector's cost ~40 us each at 10,000
 * messages/s).  Replies to inboxes (JetStream's acks and reads) go on to their subscriptions. */
static void take(natsConnection *nc, natsMsg **msg, void *closure)
{
    (void)nc;
    if (!strncmp(natsMsg_GetSubject(*msg), INBOX, strlen(INBOX))) return;
    queue_msg(closure, *msg);
    natsMsg_free(*msg); /* not yet the subscription's: no collector needed */
    *msg = NULL;
}

static void conn_event(struct nats *t, int up, const char *why)
{
    pthread_mutex_lock(&t->mu);
    if (!up) {
        t->went_down = 1;
        snprintf(t->why, sizeof t->why, "%s", why);
    }
    t->connected = up;
    if (!t->closing) wsk_natsev_wake(&t->x);
    pthread_mutex_unlock(&t->mu);
}

/* The connection's last callback: nt_close waits for it before freeing what the others use.
 * Before nt_close, it means the client gave up reconnecting: it does when a server refuses the
 * credentials twice in a row.  Its reason is then the connection's last error. */
static void on_closed(natsConnection *nc, void *closure)
{
    struct nats *t = closure;
    const char *err = NULL;
    natsStatus s = natsConnection_GetLastError(nc, &err);
    pthread_mutex_lock(&t->mu);
    t->closed = 1;
    if (!t->closing) {
        t->gave_up = 1;
        t->connected = 0;
        snprintf(t->why, sizeof t->why, "%s",
                 err && *err    ? err
                 : s != NATS_OK ? natsStatus_GetText(s)
                                : "closed");
        wsk_natsev_wake(&t->x);
    }
    pthread_cond_signal(&t->gone);
    pthread_mutex_unlock(&t->mu);
}

static void on_up(natsConnection *nc, void *closure)
{
    (void)nc;
    conn_event(closure, 1, NULL);
}

static void on_down(natsConnection *nc, void *closure)
{
    const char *err = NULL;
    natsStatus s = natsConnection_GetLastError(nc, &err);
    conn_event(closure, 0,
               err && *err    ? err
               : s != NATS_OK ? natsStatus_GetText(s)
                              : "disconnected");
}

/* ----- the loop ------------------------------------------------------------------------------ */

/* Back from an outage: the client resubscribed what it had, including topics that died
 * meanwhile (the bridge says nothing to a link that is down); leave those. */
static void prune(struct nats *t)
{
    for (size_t i = 0; i < NBUCKETS; i++) {
        for (struct nsub **p = &t->subs[i]; *p;) {
            struct nsub *s = *p;
            if (wsk_bridge_wants(t->link, s->chan, s->n)) {
                p = &s->next;
                continue;
            }
            *p = s->next;
            nsub_free(s);
        }
    }
}

static void on_wake(void *arg)
{
    struct nats *t = arg;
    pthread_mutex_lock(&t->mu);
    struct nmsg *m = t->head;
    t->head = t->tail = NULL;
    t->queued = 0;
    t->nc = t->conn;
    int down = t->went_down, connected = t->connected, gave_up = t->gave_up;
    char why[sizeof t->why];
    memcpy(why, t->why, sizeof why);
    t->went_down = t->gave_up = 0;
    pthread_mutex_unlock(&t->mu);

    if (down || gave_up) { /* logged by the bridge once per outage */
        t->up = 0;
        wsk_natsjs_down(t->js);
        wsk_bridge_down(t->link, why);
    }
    if (gave_up)
        wsk_bridge_log(t->link, WSK_LOG_ERROR,
                       "the NATS client stopped retrying: %s; restart once that is mended", why);
    if (connected && !t->up && t->nc) {
        t->up = 1;
        prune(t);
        wsk_natsjs_up(t->js, t->nc);
        wsk_bridge_up(t->link);
    }
    wsk_natsjs_wake(t->js);
    while (m) {
        struct nmsg *next = m->next;
        if (t->up) wsk_natsjs_deliver(t->js, m->data, m->clen, m->data + m->clen, m->len);
        free(m);
        m = next;
    }
}

/* Subscribes to subj (NUL-terminated) for channel chan[0..n), and to its retained subject,
 * where retained publishes come (bridge_nats_js.c), before any read of the retained message. */
static int sub_add(struct nats *t, const char *chan, size_t n, const char *subj)
{
    struct nsub **p = sub_find(t, chan, n), *s;
    if (*p) return 0;
    if (!(s = malloc(sizeof *s + n))) return -1;
    s->rsub = NULL;
    if (natsConnection_Subscribe(&s->sub, t->nc, subj, on_msg, t) != NATS_OK) {
        wsk_bridge_log(t->link, WSK_LOG_WARN, "cannot subscribe to '%s'", subj);
        free(s);
        return -1;
    }
    if (strcmp(subj, ">") &&
        natsConnection_Subscribe(&s->rsub, t->nc, rsubject(t, subj), on_msg, t) != NATS_OK) {
        wsk_bridge_log(t->link, WSK_LOG_WARN, "cannot subscribe to '%s'", t->rsubj);
        s->rsub = NULL;
        nsub_free(s);
        return -1;
    }
    s->next = NULL;
    s->n = n;
    memcpy(s->chan, chan, n);
    *p = s;
    wsk_natsjs_listen(t->js, chan, n);
    return 0;
}

static int nt_subscribe(void *e, const char *chan, size_t n)
{
    struct nats *t = e;
    return sub_add(t, chan, n, subject(t, chan, n));
}

/* NATS wildcards are ours, token for token.  But the prefix and the pattern's first token make
 * one token of the subject ("wskit:*"), unless the prefix ends with '.': a pattern whose first
 * token is a wildcard then listens to every subject (">"), which the node filters. */
static int nt_psubscribe(void *e, const char *chan, size_t n, size_t plen)
{
    struct nats *t = e;
    int glued = plen && chan[plen - 1] != '.';
    int wild_first = plen < n && (chan[plen] == '*' || chan[plen] == '>') &&
                     (plen + 1 == n || chan[plen + 1] == '.');
    return sub_add(t, chan, n, glued && wild_first ? ">" : subject(t, chan, n));
}

static int nt_unsubscribe(void *e, const char *chan, size_t n)
{
    struct nats *t = e;
    struct nsub **p = sub_find(t, chan, n), *s = *p;
    if (!s) return 0;
    *p = s->next;
    nsub_free(s);
    return 0;
}

static int nt_punsubscribe(void *e, const char *chan, size_t n, size_t plen)
{
    (void)plen;
    return nt_unsubscribe(e, chan, n);
}

/* Publishes msg[0..len) on subj (NUL-terminated): publish's rules. */
static int send_plain(struct nats *t, const char *subj, const void *msg, size_t len,
                      wsk_bridge_count *count)
{
    if (!t->up || natsConnection_Buffered(t->nc) + (int)len > (int)OUT_MAX ||
        natsConnection_Publish(t->nc, subj, msg, (int)len) != NATS_OK)
        return -1;
    if (count) wsk_bridge_counted(t->link, count, -1); /* NATS cannot count */
    return 0;
}

static int nt_publish(void *e, const char *chan, size_t n, const void *msg, size_t len, int self,
                      wsk_bridge_count *count)
{
    struct nats *t = e;
    (void)self;
    return send_plain(t, subject(t, chan, n), msg, len, count);
}

static void nt_close(void *e)
{
    struct nats *t = e;
    pthread_mutex_lock(&t->mu);
    t->closing = 1;
    pthread_cond_signal(&t->retry);
    pthread_mutex_unlock(&t->mu);
    if (t->connecting) pthread_join(t->connector, NULL); /* at most one attempt's timeout */
    t->nc = t->conn;
    for (size_t i = 0; i < NBUCKETS; i++) {
        for (struct nsub *s = t->subs[i], *next; s; s = next) {
            next = s->next;
            nsub_free(s);
        }
    }
    if (t->nc) {
        /* The client calls back from its own threads after Destroy returns (disconnected, then
         * closed): wait for the last one, a bounded time, before freeing what they touch. */
        natsConnection_Destroy(t->nc);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 5;
        pthread_mutex_lock(&t->mu);
        while (!t->closed && pthread_cond_timedwait(&t->gone, &t->mu, &until) == 0) continue;
        int closed = t->closed;
        pthread_mutex_unlock(&t->mu);
        /* No closed callback in time: the client's threads may still touch t, so it is left
         * allocated (a bounded leak at shutdown) rather than freed under them. */
        if (!closed) return;
    }
    wsk_natsjs_free(t->js);
    natsOptions_Destroy(t->opts);
    wsk_natsev_stop(&t->x);
    for (struct nmsg *m = t->head, *next; m; m = next) {
        next = m->next;
        free(m);
    }
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->gone);
    pthread_cond_destroy(&t->retry);
    free(t);
}

/* Until the first connection, on its own thread (see the top), with a backoff; the client
 * reconnects by itself after that.  The client's own retry of a failed first connection is not
 * used: it clears the failure's reason as it starts, racing with our read of it, and gives up
 * at once when the server refused the attempt (a wrong token).  Here a failed attempt leaves
 * its reason with the thread that made it, and the outage is reported once, with it. */
static void *connector(void *arg)
{
    struct nats *t = arg;
    for (long wait_ms = RETRY_MS;;) {
        natsConnection *nc = NULL;
        natsStatus s = natsConnection_Connect(&nc, t->opts);
        if (s == NATS_OK) {
            natsConn_setFilterWithClosure(nc, take, t); /* before any subscription */
            pthread_mutex_lock(&t->mu);
            t->conn = nc;
            pthread_mutex_unlock(&t->mu);
            conn_event(t, 1, NULL);
            return NULL;
        }
        if (wait_ms == RETRY_MS) { /* the first failure: the outage, with its reason */
            const char *why = nats_GetLastError(NULL), *at = why ? strstr(why, "): ") : NULL;
            if (why && *why == '(' && at) why = at + 3; /* "(conn.c:1905): " is the client's */
            conn_event(t, 0, why && *why ? why : natsStatus_GetText(s));
        }
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += wait_ms * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        pthread_mutex_lock(&t->mu);
        while (!t->closing && pthread_cond_timedwait(&t->retry, &t->mu, &until) == 0) continue;
        int closing = t->closing;
        pthread_mutex_unlock(&t->mu);
        if (closing) return NULL;
        wait_ms = wait_ms * 2 < RETRY_MAX_MS ? wait_ms * 2 : RETRY_MAX_MS;
    }
}

#define MAX_SEEDS 16

/* nats://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...]: the seed URLs, NUL-terminated in out, in
 * seeds[]; an item without a scheme gets this one's (and its user info).  Their number, or -1
 * for an empty item, too many or too long. */
static int servers(const char *url, char *out, size_t cap, const char **seeds)
{
    const char *rest = url + strlen("nats://"), *at = strchr(rest, '@'), *comma = strchr(rest, ',');
    size_t pre = at && (!comma || at < comma) ? (size_t)(at + 1 - url) : strlen("nats://");
    size_t o = 0;
    int k = 0;
    for (const char *p = url; *p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        int schemed = n >= 7 && !strncmp(p, "nats://", 7);
        const char *host = schemed ? p + 7 : p, *ui = memchr(host, '@', n - (size_t)(host - p));
        if (ui) host = ui + 1;
        if (host == p + n || k == MAX_SEEDS) return -1; /* no host, or too many */
        int w = snprintf(out + o, cap - o, "%.*s%.*s", schemed ? 0 : (int)pre, url, (int)n, p);
        if (w < 0 || (size_t)w >= cap - o) return -1;
        seeds[k++] = out + o;
        o += (size_t)w + 1;
        p += n + (end != NULL);
    }
    return k;
}

/* The URL without its query in out; ?storage=memory (or file, the default): where JetStream
 * keeps the streams the node makes (bridge_nats_js.c).  0, or -1 for another parameter. */
static int js_params(const char *url, char *out, size_t cap, int *memory)
{
    const char *q = strchr(url, '?');
    size_t n = q ? (size_t)(q - url) : strlen(url);
    if (n >= cap) return -1;
    memcpy(out, url, n);
    out[n] = 0;
    if (!q) return 0;
    if (!strcmp(q, "?storage=memory")) *memory = 1;
    return *memory || !strcmp(q, "?storage=file") ? 0 : -1;
}

static void *nt_open(wsk_bridge_link *link, struct ev_loop *ev, const char *url, char *err,
                     size_t cap)
{
    struct nats *t = calloc(1, sizeof *t);
    char list[4096], bare[4096];
    const char *seeds[MAX_SEEDS];
    int memory = 0;
    int nseeds = t && js_params(url, bare, sizeof bare, &memory) == 0
                     ? servers(bare, list, sizeof list, seeds)
                     : -1;
    if (!t || nseeds < 0) {
        snprintf(err, cap,
                 t ? "bad URL (nats://[USER:PASS@]HOST:PORT[,HOST:PORT...][?storage=memory])"
                   : "out of memory");
        free(t);
        return NULL;
    }
    t->link = link;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->gone, NULL);
    pthread_cond_init(&t->retry, NULL);
    wsk_natsev_init(&t->x, ev, on_wake, t);
    t->js = wsk_natsjs_new(link, &t->x, on_msg, t, memory);
    natsStatus s = t->js ? natsOptions_Create(&t->opts) : NATS_NO_MEMORY;
    if (s == NATS_OK) s = natsOptions_SetServers(t->opts, seeds, nseeds);
    if (s == NATS_OK)
        s = natsOptions_SetEventLoop(t->opts, &t->x, wsk_natsev_attach, wsk_natsev_read,
                                     wsk_natsev_write, wsk_natsev_detach);
    /* Reconnect for ever, 100 ms apart; subscriptions share the client's delivery threads
     * instead of one thread each; our own publishes are not sent back to us.  SendAsap: no
     * flusher thread, which waits 1 ms for more before each write (the loop writes instead,
     * once per iteration: nats_libev.h). */
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(t->opts, -1);
    if (s == NATS_OK) s = natsOptions_SetReconnectWait(t->opts, RETRY_MS);
    if (s == NATS_OK) s = natsOptions_UseGlobalMessageDelivery(t->opts, true);
    if (s == NATS_OK) s = natsOptions_SetNoEcho(t->opts, true);
    if (s == NATS_OK) s = natsOptions_SetFailRequestsOnDisconnect(t->opts, true); /* JetStream's */
    if (s == NATS_OK) s = natsOptions_SetSendAsap(t->opts, true);
    if (s == NATS_OK) s = natsOptions_SetDisconnectedCB(t->opts, on_down, t);
    if (s == NATS_OK) s = natsOptions_SetReconnectedCB(t->opts, on_up, t);
    if (s == NATS_OK) s = natsOptions_SetClosedCB(t->opts, on_closed, t);
    if (s == NATS_OK && pthread_create(&t->connector, NULL, connector, t) != 0) s = NATS_NO_MEMORY;
    if (s != NATS_OK) {
        snprintf(err, cap, "%s", natsStatus_GetText(s));
        nt_close(t);
        return NULL;
    }
    t->connecting = 1;
    return t;
}

static int nt_append(void *e, const char *chan, size_t n, size_t plen, const void *msg, size_t len,
                     size_t depth, double ttl, int self, wsk_bridge_count *count)
{
    (void)self;
    return wsk_natsjs_append(((struct nats *)e)->js, chan, n, plen, msg, len, depth, ttl, count);
}

static int nt_range(void *e, const char *chan, size_t n, size_t plen, uint64_t after, size_t max,
                    wsk_bridge_range *r)
{
    (void)plen;
    return wsk_natsjs_range(((struct nats *)e)->js, chan, n, after, max, r);
}

static int nt_history(void *e)
{
    return wsk_natsjs_history(((struct nats *)e)->js);
}

/* Without history: one JetStream publish on the channel's retained subject, which stores it
 * and reaches every node (bridge_nats_js.c); with it, appended, and kept once stored.  Without
 * JetStream, only published there: each node keeps its own. */
static int nt_retain(void *e, const char *chan, size_t n, size_t plen, const void *msg, size_t len,
                     int keep, int history, size_t depth, double ttl, int self,
                     wsk_bridge_count *count)
{
    struct nats *t = e;
    (void)keep; /* the envelope's message says: an empty one clears */
    if (history) return nt_append(e, chan, n, plen, msg, len, depth, ttl, self, count);
    int r = wsk_natsjs_retain(t->js, chan, n, msg, len, count);
    return r <= 0 ? r : send_plain(t, rsubject(t, subject(t, chan, n)), msg, len, count);
}

static int nt_retained(void *e, const char *chan, size_t n, size_t plen, const void *mark,
                       size_t mlen, uint64_t id)
{
    (void)plen;
    return wsk_natsjs_retained(((struct nats *)e)->js, chan, n, mark, mlen, id);
}

static int nt_kept(void *e, const char *const *chans, const size_t *lens, size_t k, size_t plen,
                   wsk_bridge_kept *q)
{
    (void)plen;
    return wsk_natsjs_kept(((struct nats *)e)->js, chans, lens, k, q);
}

const wsk_bridge_engine wsk_bridge_nats = {
    .scheme = "nats",
    .open = nt_open,
    .subscribe = nt_subscribe,
    .unsubscribe = nt_unsubscribe,
    .psubscribe = nt_psubscribe,
    .punsubscribe = nt_punsubscribe,
    .publish = nt_publish,
    .close = nt_close,
    .append = nt_append,
    .range = nt_range,
    .history = nt_history,
    .retain = nt_retain,
    .retained = nt_retained,
    .kept = nt_kept,
};
