/* NATS JetStream history for the NATS engine (bridge_nats_js.h).
 *
 * One stream per topic: its sequence IS the topic's offset (monotonic, gapless, the same for
 * every node) with no bookkeeping of ours; the depth and the TTL are the stream's MaxMsgs and
 * MaxAge (per message: a message goes TTL after it was stored, whatever follows it); a topic's
 * history is made, trimmed and lost alone.  One stream over every topic (MaxMsgsPerSubject)
 * would need the topic's offset in a header, set with publish expectations
 * (ExpectLastSubjectSeq) that fail and are retried whenever two nodes publish to a topic at once.
 *
 *  - The stream of channel C is "WSKH_" + C's 64-bit FNV-1a in hex (stream names take no '.',
 *    '*', '>' or space); it stores one subject, "$WSKH." EPOCH "." C (never a channel: a bridge
 *    prefix does not start with '$'), in files (the history outlives a server restart; in
 *    memory with ?storage=memory), and
 *    republishes (RePublish) each message it stores on C itself with its sequence in the
 *    Nats-Sequence header.  So every node subscribed to C, the publishing one included,
 *    delivers the same sequence, each message with its offset (wsk_natsjs_offset).
 *  - EPOCH, 16 random hex digits, is chosen by the node that makes the stream; the others read
 *    it in the stream's subject.  A stream deleted and made again (a server restarted without
 *    its store) has a new one, and a node that still publishes with the old one reaches no
 *    stream: its message is refused (no responders, so not stored), the node finds the stream
 *    again and sends it again.  The publisher writes the epoch into the envelope (bytes
 *    38-53); a topic's appends wait (held, a cap on their bytes) until the node found or made
 *    its stream, after each reconnect too.
 *  - Appends leave with js_PublishMsgAsync from the loop; the server's acks come on NATS'
 *    threads.  A sender waiting for the engine's count hears it (-1: NATS cannot count) with
 *    the ack, once the message is stored: its next publish, through any node, comes after it.
 *    (A retained one: once it is kept as the topic's retained message too: keep_acked.)
 *    A message the server refuses otherwise (or does not ack in time) is logged and lost
 *    (delivered nowhere), as a message whose Redis script fails.
 *  - The JetStream calls that wait for an answer (account info, stream info and creation,
 *    reading a message) run on the link's worker thread, never on the loop, which reads their
 *    answers from the socket.  Finished jobs are queued under a mutex and the loop is woken
 *    through nats_libev.c, as bridge_nats.c does with messages.
 *  - nats-server 2.9 republishes a stream's messages out of order now and then (two publishers
 *    at once: each republishes after storing, outside the stream's lock), so a node delivers a
 *    republished message only after the one before it in the stream (wsk_natsjs_deliver); one
 *    that comes early makes it read the missing ones from the stream at once (fetch_gap), and
 *    waits for them HOLD_MS at most, then goes anyway.
 *  - range reads the stream's state (epoch, first and last sequence), then the messages after
 *    `after` by their sequence (direct get, AllowDirect): one request per message, as
 *    nats-server 2.9 has no batched direct get, but all of a batch sent at once.
 * A server without JetStream (the account info request fails) leaves history node-local,
 * logged once.  The first node to make a topic's stream sets its depth and TTL; a node that
 * finds it with less raises them to its own (stream_raise).  Retained messages: below. */
#include "bridge_nats_js.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define NBUCKETS    256
#define SUBJ_PREFIX "$WSKH."
/* Retained messages: the last message of subject RSUBJ CHANNEL in stream RSTREAM. */
#define RSUBJ   WSK_NATSJS_RSUBJ
#define RSTREAM "WSKR"
#define RDIRECT "$JS.API.DIRECT.GET." RSTREAM
/* Bytes of appends waiting for their stream, beyond which appends fail. */
#define HELD_MAX (8u << 20)
/* Bytes of retained messages waiting for the worker to store them, beyond which they are not
 * kept (counted, and logged): memory stays bounded when JetStream is slower than publishers. */
#define KEEP_MAX (8u << 20)
/* Publishes awaiting the server's ack, beyond which appends fail: under the client's own
 * MaxPending, past which js_PublishMsgAsync would block the loop. */
#define PENDING_MAX  50000
#define PENDING_NATS 65536
#define OUT_MAX      (8u << 20) /* bytes in the client's buffer, as bridge_nats.c */
#define WAIT_MS      2000       /* a JetStream request's answer */
#define ACK_MS       5000       /* an append's ack */
#define PBUCKETS     1024
#define HOLD_MS      100  /* a republished message waiting for the one before it, at most */
#define EARLY_MAX    4096 /* ... and how many of a topic wait at most */
#define FETCH_MAX    64   /* messages of a gap asked for at once (wsk_natsjs_deliver) */
#define SKIP_MAX     16   /* offsets given up on that a topic remembers (they may come late) */

enum { S_NEW, S_MAKING, S_READY };

struct held {
    struct held *next;
    wsk_bridge_count *count;
    size_t len;
    char env[];
};

/* An append whose sender waits for its ack: by the message the client hands back. */
struct waiting {
    struct waiting *next;
    const natsMsg *m;
    wsk_bridge_count *count;
};

/* A topic's stream as this link knows it (the loop's). */
struct jstream {
    struct jstream *next;
    int state;
    char epoch[16];
    struct held *head, *tail; /* appends waiting for S_READY */
    /* Delivery (wsk_natsjs_deliver): the epoch and offset of the last message delivered, and
     * those that came before their turn, in offset order (env's offset digits). */
    char seen[16];
    uint64_t last;
    uint64_t asked;             /* the last offset of a gap asked for */
    uint64_t skipped[SKIP_MAX]; /* offsets delivery went past without them (0: none) */
    struct held *early;
    struct held *marks; /* answers to reads of the retained message, waiting for early */
    size_t nearly;
    double since; /* when the first of them came */
    size_t n;
    char chan[];
};

enum { J_DETECT, J_STREAM, J_RANGE, J_REFUSED, J_ACKED, J_KEEP, J_KEPT, J_UNKEPT, J_RMAKE };

/* Work for the worker, then its result for the loop. */
struct job {
    struct job *next;
    int kind;
    int64_t depth, ttl_ns;   /* J_STREAM */
    wsk_bridge_range *r;     /* J_RANGE */
    wsk_bridge_count *count; /* J_ACKED, J_REFUSED, J_UNKEPT */
    uint64_t after;
    size_t max;
    wsk_bridge_kept *q; /* J_KEPT: nk channels, NUL-separated in chan */
    size_t nk;
    uint64_t *v; /* ... and their figures */
    /* The result: */
    int ok; /* J_DETECT: -1 when the answer is not known (no answer in time) */
    jsCtx *js;
    char epoch[17];
    uint64_t head, first;
    size_t k;
    char **env;
    size_t *lens;
    char why[256];
    size_t n;
    char chan[]; /* NUL-terminated */
};

struct wsk_natsjs {
    wsk_bridge_link *link;
    wsk_natsev *x;
    /* The loop's: */
    int up;       /* the connection is */
    int on;       /* JetStream: 1 yes, 0 no, -1 not known (yet, or since the connection was lost) */
    int known;    /* the last answer (-1: none yet): wsk_natsjs_history */
    int told;     /* the bridge heard "no" (logged once, until the server has JetStream again) */
    char no[256]; /* why not */
    jsCtx *js;    /* the worker's, once it answered */
    natsConnection *nc;
    size_t held;
    int remaking;          /* a J_RMAKE is under way */
    int64_t depth, ttl_ns; /* the last append's, for a stream made again */
    char *scratch;         /* an envelope with its epoch: scap bytes */
    size_t scap;
    struct jstream *streams[NBUCKETS];
    atomic_long pending;
    /* The worker's, and the lists between them under mu: */
    pthread_t worker;
    int running;
    jsCtx *wjs;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct job *todo, *done;
    int quit;
    natsConnection *wnc;               /* under mu */
    size_t keeping;                    /* under mu: J_KEEP's bytes queued (KEEP_MAX) */
    uint64_t unkept;                   /* under mu: retained messages dropped since logged */
    struct waiting *waiting[PBUCKETS]; /* under mu */
    ev_timer hold;                     /* runs while messages wait for their turn */
    size_t nwaiting;                   /* topics with messages waiting */
    jsStorageType storage;             /* of the streams it makes */
    /* Reads of retained messages (wsk_natsjs_retained): their answers come to RINBOX.ID through
     * the channels' message handler, so in their order (the client's one delivery thread). */
    natsMsgHandler on_msg;
    void *closure;
    natsSubscription *rsub;
    char rinbox[64]; /* "_INBOX.NUID." */
    size_t rilen;
    struct rread *reads;
    uint64_t gaps; /* numbers of fetch_gap's requests */
    char subj[sizeof SUBJ_PREFIX + 17 + WSK_BRIDGE_PREFIX_MAX + WSK_TOPIC_MAX];
};

static uint64_t fnv64(const char *s, size_t n)
{
    uint64_t h = 14695981039346656037u;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211u;
    return h;
}

/* The offset digits of an envelope (bytes 18-37). */
static void put_offset(char *env, uint64_t seq)
{
    for (int i = 19; i >= 0; i--, seq /= 10) env[WSK_BRIDGE_HDR + i] = (char)('0' + seq % 10);
}

static int history_envelope(const char *env, size_t len)
{
    return len >= WSK_BRIDGE_HDR_HISTORY && (uint8_t)env[0] == WSK_BRIDGE_MAGIC &&
           (env[1] & WSK_BRIDGE_HISTORY);
}

void wsk_natsjs_offset(natsMsg *msg, char *env, size_t len)
{
    const char *v = NULL;
    /* A read's answer (_INBOX.): the sequence is its retained stream's, not the offset. */
    if (!history_envelope(env, len) || !strncmp(natsMsg_GetSubject(msg), "_INBOX.", 7) ||
        natsMsgHeader_Get(msg, "Nats-Sequence", &v) != NATS_OK || !v)
        return;
    char *end;
    unsigned long long seq = strtoull(v, &end, 10);
    if (end != v && !*end) put_offset(env, seq);
}

static struct job *job_new(int kind, const char *chan, size_t n)
{
    struct job *jb = calloc(1, sizeof *jb + n + 1);
    if (!jb) return NULL;
    jb->kind = kind;
    jb->n = n;
    memcpy(jb->chan, chan, n);
    return jb;
}

static void job_queue(wsk_natsjs *j, struct job *jb)
{
    pthread_mutex_lock(&j->mu);
    struct job **p = &j->todo;
    while (*p) p = &(*p)->next;
    *p = jb;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

static void job_free(struct job *jb)
{
    for (size_t i = 0; i < jb->k; i++) free(jb->env[i]);
    free(jb->env);
    free(jb->lens);
    free(jb->v);
    free(jb);
}

/* A J_KEEP of env[0..len) (a copy) for channel chan[0..n); NULL when memory is short. */
static struct job *keep_job(const char *chan, size_t n, const char *env, size_t len)
{
    struct job *jb = job_new(J_KEEP, chan, n);
    if (!jb || !(jb->env = malloc(sizeof *jb->env)) || !(jb->lens = malloc(sizeof *jb->lens)) ||
        !(jb->env[0] = malloc(len))) {
        if (jb) job_free(jb);
        return NULL;
    }
    memcpy(jb->env[0], env, len);
    jb->lens[0] = len;
    jb->k = 1;
    return jb;
}

/* Queues J_KEEP jb (its env[0]) within KEEP_MAX; else frees it.  From any thread. */
static void keep_queue(wsk_natsjs *j, struct job *jb)
{
    pthread_mutex_lock(&j->mu);
    int room = j->keeping + jb->lens[0] <= KEEP_MAX;
    if (room) j->keeping += jb->lens[0];
    j->unkept += !room && !jb->count;
    if (!room && jb->count) { /* its sender waits: the loop says it and gives the count back */
        snprintf(jb->why, sizeof jb->why, "retained message not kept: %u MiB wait already",
                 KEEP_MAX >> 20);
        jb->next = j->done;
        j->done = jb;
        if (!j->quit) wsk_natsev_wake(j->x);
    }
    pthread_mutex_unlock(&j->mu);
    if (room) job_queue(j, jb);
    if (!room && !jb->count) job_free(jb);
}

/* The offset of history envelope env[0..len) (0: none: not republished by a stream). */
static uint64_t offset_of(const char *env, size_t len)
{
    uint64_t v = 0;
    if (!history_envelope(env, len)) return 0;
    for (size_t i = WSK_BRIDGE_HDR; i < WSK_BRIDGE_HDR + 20; i++) {
        if (env[i] < '0' || env[i] > '9') return 0;
        v = v * 10 + (uint64_t)(env[i] - '0');
    }
    return v;
}

/* ----- the worker ---------------------------------------------------------------------------- */

static void job_fail(struct job *jb, const char *what, natsStatus s, jsErrCode jerr)
{
    jb->ok = 0;
    snprintf(jb->why, sizeof jb->why, "%s: %s (%d)", what, natsStatus_GetText(s), (int)jerr);
}

/* 1 when the stream's config stores one subject, the subject of jb's channel with an epoch:
 * that epoch in jb->epoch. */
static int stream_epoch(const jsStreamInfo *si, struct job *jb)
{
    const char *subj = si->Config && si->Config->SubjectsLen == 1 ? si->Config->Subjects[0] : "";
    size_t skip = strlen(SUBJ_PREFIX);
    if (strncmp(subj, SUBJ_PREFIX, skip) || strlen(subj) != skip + 17 + jb->n ||
        subj[skip + 16] != '.' || strcmp(subj + skip + 17, jb->chan))
        return 0;
    for (size_t i = 0; i < 16; i++)
        if (!strchr("0123456789abcdef", subj[skip + i]) || !subj[skip + i]) return 0;
    memcpy(jb->epoch, subj + skip, 16);
    jb->epoch[16] = 0;
    return 1;
}

/* A node with a deeper history (or a longer TTL: 0 is none) than the stream of jb's channel
 * holds raises the stream's to its own: the first node to make it does not fix them.  Said at
 * -v (jb->why, jb->ok 2); a failure is a warning (jb->ok 3), the stream stays as it is. */
static void stream_raise(jsCtx *js, struct job *jb, jsStreamInfo **si)
{
    jsStreamConfig c = *(*si)->Config;
    int64_t age = c.MaxAge;
    int deeper = c.MaxMsgs > 0 && jb->depth > c.MaxMsgs;
    int longer = age > 0 && (jb->ttl_ns == 0 || jb->ttl_ns > age);
    if (!deeper && !longer) return;
    long long d0 = c.MaxMsgs;
    if (deeper) c.MaxMsgs = jb->depth;
    if (longer) c.MaxAge = jb->ttl_ns;
    jsStreamInfo *up = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_UpdateStream(&up, js, &c, NULL, &jerr);
    /* Both figures named: the operator sees which node asked for what. */
    snprintf(jb->why, sizeof jb->why,
             "'%.40s': %s from %lld messages, TTL %gs, to this node's %lld, %gs (--history)%s%.40s",
             jb->chan, s == NATS_OK ? "raised" : "cannot raise the stream", d0, (double)age / 1e9,
             (long long)c.MaxMsgs, (double)c.MaxAge / 1e9, s == NATS_OK ? "" : ": ",
             s == NATS_OK ? "" : natsStatus_GetText(s));
    jb->ok = s == NATS_OK ? 2 : 3;
    if (s != NATS_OK) return;
    jsStreamInfo_Destroy(*si);
    *si = up;
}

/* The stream of jb's channel, found or made with its config: NULL with jb->why. */
static jsStreamInfo *stream_of(wsk_natsjs *j, jsCtx *js, struct job *jb, int make)
{
    char name[24], *subj = malloc(sizeof SUBJ_PREFIX + 17 + jb->n), desc[64];
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    if (!subj) return job_fail(jb, "stream", NATS_NO_MEMORY, 0), NULL;
    snprintf(name, sizeof name, "WSKH_%016llx", (unsigned long long)fnv64(jb->chan, jb->n));
    natsStatus s = js_GetStreamInfo(&si, js, name, NULL, &jerr);
    if (make && (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr)) {
        uint64_t x;
        if (getrandom(&x, sizeof x, GRND_NONBLOCK) != (ssize_t)sizeof x) {
            struct timespec ts; /* early boot: the clock and the job tell lives apart */
            clock_gettime(CLOCK_REALTIME, &ts);
            x = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15u ^ (uint64_t)ts.tv_sec ^ (uintptr_t)jb;
        }
        snprintf(subj, sizeof SUBJ_PREFIX + 17 + jb->n, SUBJ_PREFIX "%016llx.%s",
                 (unsigned long long)x, jb->chan);
        jsStreamConfig c;
        jsRePublish rp;
        const char *subjects[1] = {subj};
        jsStreamConfig_Init(&c);
        jsRePublish_Init(&rp);
        rp.Source = subj;
        rp.Destination = jb->chan;
        snprintf(desc, sizeof desc, "wskit history of %.40s", jb->chan);
        c.Name = name;
        c.Description = desc;
        c.Subjects = subjects;
        c.SubjectsLen = 1;
        c.MaxMsgs = jb->depth;
        c.MaxAge = jb->ttl_ns;
        c.Storage = j->storage;
        c.AllowDirect = true;
        c.RePublish = &rp;
        jerr = 0;
        s = js_AddStream(&si, js, &c, NULL, &jerr);
        if (s != NATS_OK && jerr == JSStreamNameExistErr) /* another node made it first */
            s = js_GetStreamInfo(&si, js, name, NULL, &jerr);
    }
    if (s == NATS_OK && !stream_epoch(si, jb)) {
        snprintf(jb->why, sizeof jb->why, "stream %s stores other subjects", name);
        jsStreamInfo_Destroy(si);
        si = NULL;
        jb->ok = 0;
    } else if (s != NATS_OK && (make || (s != NATS_NOT_FOUND && jerr != JSStreamNotFoundErr))) {
        job_fail(jb, name, s, jerr);
    } else if (s == NATS_OK) {
        jb->ok = 1;
        if (make) stream_raise(js, jb, &si);
    } else {
        jb->ok = 1; /* no stream: no history yet */
    }
    free(subj);
    return si;
}

/* The stored messages after jb->after, at most jb->max, with their offsets and epoch filled.
 * One direct get request per message, all sent at once with replies to one inbox of ours
 * (REPLY.SEQ), then their answers collected: one round trip for the batch, where libnats'
 * js_DirectGetMsg would wait for each (and cost the loop ~0.1 ms of CPU per message). */
static void range_read(natsConnection *nc, struct job *jb, jsStreamInfo *si)
{
    uint64_t first = si->State.Msgs ? si->State.FirstSeq : 0, last = si->State.LastSeq;
    uint64_t from = jb->after + 1 > first ? jb->after + 1 : first;
    uint64_t to = last - jb->after > jb->max ? jb->after + jb->max : last;
    jb->head = last;
    jb->first = first;
    if (!first || from > to) return;
    size_t cap = (size_t)(to - from + 1);
    natsInbox *inbox = NULL;
    natsSubscription *sub = NULL;
    char api[64], wild[80], reply[112], body[48];
    jb->env = calloc(cap, sizeof *jb->env);
    jb->lens = calloc(cap, sizeof *jb->lens);
    natsStatus s = jb->env && jb->lens ? natsInbox_Create(&inbox) : NATS_NO_MEMORY;
    if (s == NATS_OK) {
        snprintf(api, sizeof api, "$JS.API.DIRECT.GET.WSKH_%016llx",
                 (unsigned long long)fnv64(jb->chan, jb->n));
        snprintf(wild, sizeof wild, "%s.*", inbox);
        s = natsConnection_SubscribeSync(&sub, nc, wild);
    }
    for (uint64_t seq = from; s == NATS_OK && seq <= to; seq++) {
        snprintf(reply, sizeof reply, "%s.%llu", inbox, (unsigned long long)seq);
        int n = snprintf(body, sizeof body, "{\"seq\":%llu}", (unsigned long long)seq);
        s = natsConnection_PublishRequest(nc, api, reply, body, n);
    }
    size_t got = 0;
    while (s == NATS_OK && got < cap) {
        natsMsg *m = NULL;
        const char *r, *v;
        if ((s = natsSubscription_NextMsg(&m, sub, WAIT_MS)) != NATS_OK) break;
        got++;
        r = strrchr(natsMsg_GetSubject(m), '.');
        uint64_t seq = r ? strtoull(r + 1, NULL, 10) : 0;
        /* Without Nats-Sequence: 404, gone meanwhile (its age): the reader sees the gap. */
        size_t len = (size_t)natsMsg_GetDataLength(m), i = (size_t)(seq - from);
        if (seq >= from && seq <= to && !jb->env[i] &&
            natsMsgHeader_Get(m, "Nats-Sequence", &v) == NATS_OK) {
            if (!(jb->env[i] = malloc(len ? len : 1))) s = NATS_NO_MEMORY;
            if (s == NATS_OK) memcpy(jb->env[i], natsMsg_GetData(m), len);
            jb->lens[i] = len;
        }
        natsMsg_Destroy(m);
    }
    natsSubscription_Destroy(sub);
    natsInbox_Destroy(inbox);
    if (s != NATS_OK) return job_fail(jb, "direct get", s, 0);
    for (size_t i = 0; i < cap; i++) { /* in order, without the gaps */
        char *e = jb->env[i];
        if (!e) continue;
        if (history_envelope(e, jb->lens[i])) {
            put_offset(e, from + i);
            memcpy(e + WSK_BRIDGE_HDR + 20, jb->epoch, 16);
        }
        jb->env[jb->k] = e;
        jb->lens[jb->k++] = jb->lens[i];
    }
}

/* The body of a direct get of the last message of channel chan[0..n)'s retained subject; its
 * length, or 0 when it does not fit in cap. */
static size_t last_of(char *body, size_t cap, const char *chan, size_t n)
{
    size_t o = (size_t)snprintf(body, cap, "{\"last_by_subj\":\"" RSUBJ);
    for (size_t i = 0; i < n && o + 2 < cap; i++) { /* a topic may hold '"' or '\\' */
        if (chan[i] == '"' || chan[i] == '\\') body[o++] = '\\';
        body[o++] = chan[i];
    }
    if (o + 3 > cap) return 0;
    memcpy(body + o, "\"}", 3);
    return o + 2;
}

/* 1 when env[0..len), as the retained stream keeps it, holds a message (an empty one clears). */
static int retained_holds(const char *env, size_t len)
{
    if (len < WSK_BRIDGE_HDR || (uint8_t)env[0] != WSK_BRIDGE_MAGIC) return 0;
    return len > (env[1] & WSK_BRIDGE_HISTORY ? WSK_BRIDGE_HDR_HISTORY : WSK_BRIDGE_HDR);
}

/* Makes the stream of retained messages (another node may have): one subject per channel, its
 * last message kept.  One stream for all, so that a read of a channel without one is answered
 * (404) where a direct get to a missing stream is not. */
static natsStatus retained_make(wsk_natsjs *j, jsErrCode *jerr)
{
    jsStreamConfig c;
    const char *subjects[1] = {RSUBJ ">"};
    jsStreamInfo *si = NULL;
    jsStreamConfig_Init(&c);
    c.Name = RSTREAM;
    c.Description = "wskit retained messages";
    c.Subjects = subjects;
    c.SubjectsLen = 1;
    c.MaxMsgsPerSubject = 1;
    c.Storage = j->storage;
    c.AllowDirect = true;
    natsStatus s = js_AddStream(&si, j->wjs, &c, NULL, jerr);
    jsStreamInfo_Destroy(si);
    return s != NATS_OK && *jerr == JSStreamNameExistErr ? NATS_OK : s;
}

/* A history envelope kept as channel chan[0..n)'s retained message (subject subj) only when
 * the one kept there is older: read, compared, then stored on the condition that the subject's
 * last message is still the one read (ExpectLastSubjectSeq), read again when another node's
 * came between.  Acks, so these stores, come in a stream's order on each node only: two nodes
 * storing at once would otherwise leave whichever came last. */
static natsStatus keep_newer(wsk_natsjs *j, natsConnection *nc, struct job *jb, const char *subj,
                             jsErrCode *jerr)
{
    char body[WSK_BRIDGE_PREFIX_MAX + WSK_TOPIC_MAX * 2 + 40];
    size_t blen = last_of(body, sizeof body, jb->chan, jb->n);
    const char *env = jb->env[0];
    natsStatus s = NATS_ERR;
    for (int tries = 0; tries < 8; tries++) {
        natsMsg *m = NULL;
        const char *v = NULL, *old;
        uint64_t seq = 0;
        s = natsConnection_Request(&m, nc, RDIRECT, body, (int)blen, WAIT_MS);
        if (s != NATS_OK) return s;
        old = natsMsg_GetData(m);
        size_t olen = (size_t)natsMsg_GetDataLength(m);
        if (natsMsgHeader_Get(m, "Nats-Sequence", &v) == NATS_OK && v) seq = strtoull(v, NULL, 10);
        int newer = history_envelope(old, olen) &&
                    !memcmp(old + WSK_BRIDGE_HDR + 20, env + WSK_BRIDGE_HDR + 20, 16) &&
                    offset_of(old, olen) >= offset_of(env, jb->lens[0]);
        natsMsg_Destroy(m);
        if (newer) return NATS_OK; /* a later one is kept already */
        jsPubOptions o;
        jsPubOptions_Init(&o);
        o.ExpectLastSubjectSeq = seq; /* 0 (none yet): no condition */
        jsPubAck *pa = NULL;
        *jerr = 0;
        s = js_Publish(&pa, j->wjs, subj, env, (int)jb->lens[0], &o, jerr);
        jsPubAck_Destroy(pa);
        if (*jerr != JSStreamWrongLastSequenceErr) return s;
    }
    return s;
}

/* J_KEEP: env[0], a history envelope, becomes the retained message of jb's channel, stored
 * before the worker's next job, unless a later one is kept. */
static void keep_run(wsk_natsjs *j, natsConnection *nc, struct job *jb)
{
    char *subj = malloc(sizeof RSUBJ + jb->n);
    jsErrCode jerr = 0;
    if (!subj) return job_fail(jb, "retained", NATS_NO_MEMORY, 0);
    snprintf(subj, sizeof RSUBJ + jb->n, RSUBJ "%s", jb->chan);
    natsStatus s = keep_newer(j, nc, jb, subj, &jerr);
    /* No stream (deleted meanwhile): a direct get has no answer, a publish none either when
     * nodes listen to the subject (else no responders). */
    if ((s == NATS_NO_RESPONDERS || s == NATS_TIMEOUT) && retained_make(j, &jerr) == NATS_OK)
        s = keep_newer(j, nc, jb, subj, &jerr);
    free(subj);
    if (s != NATS_OK) return job_fail(jb, "retained message not kept", s, jerr);
    jb->ok = 1;
}

/* J_KEPT: for each of jb's channels, whether the stream of retained messages holds one for it
 * and how many its history stream holds (0 without one). */
static void kept_run(wsk_natsjs *j, natsConnection *nc, struct job *jb)
{
    char name[24], body[WSK_BRIDGE_PREFIX_MAX + WSK_TOPIC_MAX * 2 + 40];
    const char *chan = jb->chan;
    jb->ok = (jb->v = calloc(2 * jb->nk, sizeof *jb->v)) != NULL;
    for (size_t i = 0; jb->ok && i < jb->nk; chan += strlen(chan) + 1, i++) {
        size_t n = strlen(chan), blen = last_of(body, sizeof body, chan, n);
        natsMsg *m = NULL;
        jsStreamInfo *si = NULL;
        jsErrCode jerr = 0;
        natsStatus s = natsConnection_Request(&m, nc, RDIRECT, body, (int)blen, WAIT_MS);
        if (s == NATS_OK)
            jb->v[2 * i] =
                (uint64_t)retained_holds(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m));
        natsMsg_Destroy(m);
        if (s != NATS_OK && s != NATS_NO_RESPONDERS) { /* no stream: none */
            jb->ok = 0;
            break;
        }
        snprintf(name, sizeof name, "WSKH_%016llx", (unsigned long long)fnv64(chan, n));
        s = js_GetStreamInfo(&si, j->wjs, name, NULL, &jerr);
        if (s == NATS_OK) jb->v[2 * i + 1] = si->State.Msgs;
        jsStreamInfo_Destroy(si);
        if (s != NATS_OK && s != NATS_NOT_FOUND && jerr != JSStreamNotFoundErr) jb->ok = 0;
    }
}

static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure);

static void run(wsk_natsjs *j, natsConnection *nc, struct job *jb)
{
    if (jb->kind == J_DETECT) {
        if (!j->wjs) {
            jsOptions o;
            jsOptions_Init(&o);
            o.Wait = WAIT_MS;
            o.PublishAsync.MaxPending = PENDING_NATS;
            o.PublishAsync.AckHandler = on_ack;
            o.PublishAsync.AckHandlerClosure = j;
            natsStatus s = natsConnection_JetStream(&j->wjs, nc, &o);
            if (s != NATS_OK) return job_fail(jb, "JetStream context", s, 0);
        }
        jsAccountInfo *ai = NULL;
        jsErrCode jerr = 0;
        natsStatus s = js_GetAccountInfo(&ai, j->wjs, NULL, &jerr);
        jsAccountInfo_Destroy(ai);
        jb->js = j->wjs;
        jsErrCode rerr = 0; /* failing, it is made again at the first retained publish */
        if (s == NATS_OK) retained_make(j, &rerr);
        if (s == NATS_OK)
            jb->ok = 1;
        else
            job_fail(jb, "account info", s, jerr);
        if (s == NATS_TIMEOUT || s == NATS_CONNECTION_CLOSED || s == NATS_CONNECTION_DISCONNECTED)
            jb->ok = -1;
        return;
    }
    if (!j->wjs) return job_fail(jb, "JetStream", NATS_ERR, 0);
    if (jb->kind == J_KEEP) return keep_run(j, nc, jb);
    if (jb->kind == J_RMAKE) {
        jsErrCode jerr = 0;
        natsStatus s = retained_make(j, &jerr);
        if (s != NATS_OK) return job_fail(jb, "stream " RSTREAM, s, jerr);
        jb->ok = 1;
        return;
    }
    if (jb->kind == J_KEPT) return kept_run(j, nc, jb);
    jsStreamInfo *si = stream_of(j, j->wjs, jb, jb->kind == J_STREAM);
    if (si && jb->kind == J_RANGE) range_read(nc, jb, si);
    jsStreamInfo_Destroy(si);
}

static void *work(void *arg)
{
    wsk_natsjs *j = arg;
    pthread_mutex_lock(&j->mu);
    for (;;) {
        while (!j->todo && !j->quit) pthread_cond_wait(&j->cv, &j->mu);
        if (j->quit) break;
        struct job *jb = j->todo;
        j->todo = jb->next;
        natsConnection *nc = j->wnc;
        pthread_mutex_unlock(&j->mu);
        run(j, nc, jb);
        pthread_mutex_lock(&j->mu);
        if (jb->kind == J_KEEP) j->keeping -= jb->lens[0];
        jb->next = j->done; /* reversed: the loop puts them back in order */
        j->done = jb;
        wsk_natsev_wake(j->x);
    }
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

/* A NATS thread: the server's answer to an append.  A refusal (the stream is gone, JetStream
 * is off) goes to the loop, which checks the topic's stream again. */
static struct waiting **waiting_find(wsk_natsjs *j, const natsMsg *m)
{
    struct waiting **p = &j->waiting[((uintptr_t)m >> 4) % PBUCKETS];
    while (*p && (*p)->m != m) p = &(*p)->next;
    return p;
}

/* A NATS thread: a retained publish of the history stored at its offset becomes the topic's
 * retained message, with that offset (J_KEEP, for the worker, which keeps it only over an
 * older one: keep_newer).  Its sender (w: NULL, or the one waiting for its count) hears the
 * count once it is kept: 1 when the job took w's count. */
static int keep_acked(wsk_natsjs *j, natsMsg *msg, const jsPubAck *pa, const char *subj, size_t n,
                      size_t skip, struct waiting *w)
{
    const char *env = natsMsg_GetData(msg);
    size_t len = (size_t)natsMsg_GetDataLength(msg);
    if (!pa || n <= skip || !history_envelope(env, len) || !(env[1] & WSK_BRIDGE_RETAIN)) return 0;
    struct job *jb = keep_job(subj + skip, n - skip, env, len);
    if (!jb) return 0;
    put_offset(jb->env[0], pa->Sequence);
    jb->count = w ? w->count : NULL;
    keep_queue(j, jb);
    return w != NULL;
}

static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    wsk_natsjs *j = closure;
    (void)js;
    atomic_fetch_sub(&j->pending, 1);
    pthread_mutex_lock(&j->mu);
    struct waiting **p = waiting_find(j, msg), *w = *p;
    if (w) *p = w->next;
    pthread_mutex_unlock(&j->mu);
    const char *subj = natsMsg_GetSubject(msg);
    size_t n = subj ? strlen(subj) : 0;
    /* A retained publish (wsk_natsjs_retain), or an append: the channel after the epoch. */
    int retained = n > strlen(RSUBJ) && !strncmp(subj, RSUBJ, strlen(RSUBJ));
    size_t skip = retained ? strlen(RSUBJ) : strlen(SUBJ_PREFIX) + 17;
    int refused = !pa && pae && n > skip;
    if (!retained && keep_acked(j, msg, pa, subj, n, skip, w)) {
        free(w);
        w = NULL;
    }
    struct job *jb = refused || w ? calloc(1, sizeof *jb + (refused ? n - skip : 0) + 1) : NULL;
    if (jb) {
        jb->kind = !refused ? J_ACKED : retained ? J_UNKEPT : J_REFUSED;
        jb->count = w ? w->count : NULL;
        if (refused) {
            jb->n = n - skip;
            memcpy(jb->chan, subj + skip, jb->n);
            snprintf(jb->why, sizeof jb->why, "%s",
                     pae->ErrText && *pae->ErrText ? pae->ErrText : natsStatus_GetText(pae->Err));
        }
        /* No stream took it (deleted, or made again with another epoch): not stored, so it goes
         * again once the stream is found or made (wsk_natsjs_wake).  A retained one not kept
         * goes to the bridge, which counts it. */
        size_t len = (size_t)natsMsg_GetDataLength(msg);
        int copy =
            jb->kind == J_UNKEPT || (jb->kind == J_REFUSED && pae->Err == NATS_NO_RESPONDERS);
        if (copy && (jb->env = malloc(sizeof *jb->env)) && (jb->lens = malloc(sizeof *jb->lens)) &&
            (jb->env[0] = malloc(len ? len : 1))) {
            memcpy(jb->env[0], natsMsg_GetData(msg), len);
            jb->lens[0] = len;
            jb->k = 1;
        }
        pthread_mutex_lock(&j->mu);
        jb->next = j->done;
        j->done = jb;
        if (!j->quit) wsk_natsev_wake(j->x);
        pthread_mutex_unlock(&j->mu);
    } else if (w) { /* no memory: the count is lost with the sender's ack, not the message */
        w->count = NULL;
    }
    free(w);
    natsMsg_Destroy(msg);
}

/* ----- the loop ------------------------------------------------------------------------------ */

static struct jstream **stream_find(wsk_natsjs *j, const char *chan, size_t n)
{
    struct jstream **p = &j->streams[fnv64(chan, n) % NBUCKETS];
    while (*p && ((*p)->n != n || memcmp((*p)->chan, chan, n))) p = &(*p)->next;
    return p;
}

/* Queues env[0..len) with JetStream on subject j->subj; count (or NULL) is given back with the
 * server's ack (on_ack).  0, or -1 (nothing sent). */
static int js_send(wsk_natsjs *j, const char *env, size_t len, wsk_bridge_count *count)
{
    if (atomic_load(&j->pending) >= PENDING_MAX ||
        natsConnection_Buffered(j->nc) + (int)len > (int)OUT_MAX)
        return -1;
    natsMsg *m = NULL;
    struct waiting *w = count ? malloc(sizeof *w) : NULL;
    jsPubOptions o;
    jsPubOptions_Init(&o);
    o.MaxWait = ACK_MS; /* then the ack handler hears a timeout */
    natsStatus st = count && !w ? NATS_NO_MEMORY : natsMsg_Create(&m, j->subj, NULL, env, (int)len);
    if (st == NATS_OK && w) { /* before the ack can come */
        *w = (struct waiting){NULL, m, count};
        pthread_mutex_lock(&j->mu);
        struct waiting **p = waiting_find(j, m);
        *p = w;
        pthread_mutex_unlock(&j->mu);
    }
    atomic_fetch_add(&j->pending, 1);
    const natsMsg *sent = m;
    if (st == NATS_OK) st = js_PublishMsgAsync(j->js, &m, &o);
    natsMsg_Destroy(m); /* NULL when the client took it */
    if (st == NATS_OK) return 0;
    atomic_fetch_sub(&j->pending, 1);
    if (w && sent) {
        pthread_mutex_lock(&j->mu);
        struct waiting **p = waiting_find(j, sent);
        if (*p == w) *p = w->next;
        pthread_mutex_unlock(&j->mu);
    }
    free(w);
    return -1;
}

/* Queues env[0..len) for s's stream with s's epoch in it; count (or NULL) is given back with
 * the server's ack.  0, or -1 (nothing kept). */
static int publish(wsk_natsjs *j, const struct jstream *s, const char *env, size_t len,
                   wsk_bridge_count *count)
{
    if (!j->up || j->on != 1) return -1;
    if (len > j->scap) {
        char *p = realloc(j->scratch, len);
        if (!p) return -1;
        j->scratch = p;
        j->scap = len;
    }
    memcpy(j->scratch, env, len);
    memcpy(j->scratch + WSK_BRIDGE_HDR + 20, s->epoch, 16);
    size_t skip = strlen(SUBJ_PREFIX);
    memcpy(j->subj, SUBJ_PREFIX, skip);
    memcpy(j->subj + skip, s->epoch, 16);
    j->subj[skip + 16] = '.';
    memcpy(j->subj + skip + 17, s->chan, s->n);
    j->subj[skip + 17 + s->n] = 0;
    return js_send(j, j->scratch, len, count);
}

/* s's held appends: published (ok), or lost. */
static void release(wsk_natsjs *j, struct jstream *s, int ok)
{
    size_t lost = 0;
    for (struct held *h = s->head, *next; h; h = next) {
        next = h->next;
        if (!ok || publish(j, s, h->env, h->len, h->count) < 0) {
            lost++;
            if (h->count) wsk_bridge_counted(j->link, h->count, -1);
        }
        j->held -= h->len;
        free(h);
    }
    s->head = s->tail = NULL;
    if (lost)
        wsk_bridge_log(j->link, WSK_LOG_WARN, "history: %zu messages of '%.*s' lost", lost,
                       (int)s->n, s->chan);
}

/* Keeps env[0..len) (and count) for s until its stream is found or made, which is asked for
 * now when it is not under way.  0, or -1 (nothing kept). */
static int hold(wsk_natsjs *j, struct jstream *s, const char *env, size_t len,
                wsk_bridge_count *count)
{
    struct job *jb = s->state != S_MAKING ? job_new(J_STREAM, s->chan, s->n) : NULL;
    struct held *h = j->held + len <= HELD_MAX ? malloc(sizeof *h + len) : NULL;
    if (!h || (s->state != S_MAKING && !jb)) {
        free(h);
        free(jb);
        return -1;
    }
    h->next = NULL;
    h->count = count;
    h->len = len;
    memcpy(h->env, env, len);
    if (s->tail)
        s->tail->next = h;
    else
        s->head = h;
    s->tail = h;
    j->held += len;
    if (jb) {
        jb->depth = j->depth;
        jb->ttl_ns = j->ttl_ns;
        s->state = S_MAKING;
        job_queue(j, jb);
    }
    return 0;
}

int wsk_natsjs_append(wsk_natsjs *j, const char *chan, size_t n, size_t plen, const void *msg,
                      size_t len, size_t depth, double ttl, wsk_bridge_count *count)
{
    (void)plen;
    if (!j->up || j->on != 1 || len < WSK_BRIDGE_HDR_HISTORY) return -1;
    struct jstream **p = stream_find(j, chan, n), *s = *p;
    if (!s) {
        if (!(s = calloc(1, sizeof *s + n))) return -1;
        s->n = n;
        memcpy(s->chan, chan, n);
        *p = s;
    }
    j->depth = depth > INT64_MAX ? INT64_MAX : (int64_t)depth;
    j->ttl_ns = (int64_t)(ttl * 1e9);
    return s->state == S_READY ? publish(j, s, msg, len, count) : hold(j, s, msg, len, count);
}

int wsk_natsjs_range(wsk_natsjs *j, const char *chan, size_t n, uint64_t after, size_t max,
                     wsk_bridge_range *r)
{
    if (!j->up || j->on != 1) return -1;
    struct job *jb = job_new(J_RANGE, chan, n);
    if (!jb) return -1;
    jb->r = r;
    jb->after = after;
    jb->max = max;
    job_queue(j, jb);
    return 0;
}

/* ----- retained messages ----------------------------------------------------------------------
 *
 * A topic's retained message is the last message of subject RSUBJ CHANNEL in stream RSTREAM
 * (MaxMsgsPerSubject 1; an empty message clears it).  Every node subscribes to that subject
 * next to the channel (bridge_nats.c).  Without history, a retained publish is ONE JetStream
 * publish there (wsk_natsjs_retain): the server hands it, in the one pass over the subject's
 * subscriptions, to the stream and to every node subscribed (nats-server 2.9.10 to 2.9.15, not
 * clustered, store a client's message inline, and the stream's "$WSKR.>" comes before a node's
 * "$WSKR.CHANNEL" in that pass: stored before delivered; later ones store it just after, on
 * the stream's goroutine, or once the replicas have it); and the messages of one
 * connection reach another in the order they were sent, whatever their subjects, so a node gets
 * it between the plain publishes its publisher made before and after it.  Its ack says whether
 * it was stored (on_ack: J_UNKEPT when not).  With history, the history stream's ack stores it
 * with its offset (keep_acked): two steps still, as one publish cannot reach two streams (their
 * subjects may not overlap); its sender hears the count once the second is done.  A read
 * (wsk_natsjs_retained) is a direct get of the last message sent after the node's subscriptions on
 * the same connection: the server makes them active first, and the answer comes through the
 * channels' delivery thread, so after every message the node got before the server answered. */

/* A read of a channel's retained message, until its answer (or WAIT_MS). */
struct rread {
    struct rread *next;
    wsk_natsjs *j;
    ev_timer late;
    uint64_t id;
    uint64_t seq; /* not 0: not a read but a message of a gap (fetch_gap), its offset */
    size_t n, mlen;
    char data[]; /* the channel, then the mark */
};

int wsk_natsjs_retain(wsk_natsjs *j, const char *chan, size_t n, const void *env, size_t len,
                      wsk_bridge_count *count)
{
    size_t rs = strlen(RSUBJ);
    /* Just reconnected (on -1) to a server that had JetStream: its ack will say. */
    if (!j->up || !j->js || (j->on != 1 && (j->on != -1 || j->known != 1))) return 1;
    if (rs + n >= sizeof j->subj) return -1;
    memcpy(j->subj, RSUBJ, rs);
    memcpy(j->subj + rs, chan, n);
    j->subj[rs + n] = 0;
    return js_send(j, env, len, count);
}

static void rread_end(wsk_natsjs *j, struct rread *rr)
{
    struct rread **p = &j->reads;
    while (*p != rr) p = &(*p)->next;
    *p = rr->next;
    ev_timer_stop(j->x->ev, &rr->late);
    free(rr);
}

static void rread_late(struct ev_loop *ev, ev_timer *w, int revents)
{
    struct rread *rr = w->data;
    (void)ev;
    (void)revents;
    wsk_natsjs *j = rr->j;
    uint64_t id = rr->id, seq = rr->seq;
    rread_end(j, rr);
    if (!seq) wsk_bridge_mark_failed(j->link, id); /* a gap's: the hold gives up on it */
}

int wsk_natsjs_retained(wsk_natsjs *j, const char *chan, size_t n, const void *mark, size_t mlen,
                        uint64_t id)
{
    char reply[96], body[WSK_BRIDGE_PREFIX_MAX + WSK_TOPIC_MAX * 2 + 40];
    size_t blen = last_of(body, sizeof body, chan, n);
    if (!j->up || j->on != 1 || !j->rsub || !blen) return -1;
    struct rread *rr = malloc(sizeof *rr + n + mlen);
    if (!rr) return -1;
    snprintf(reply, sizeof reply, "%s%llu", j->rinbox, (unsigned long long)id);
    if (natsConnection_PublishRequest(j->nc, RDIRECT, reply, body, (int)blen) != NATS_OK) {
        free(rr);
        return -1;
    }
    *rr = (struct rread){j->reads, j, {0}, id, 0, n, mlen};
    memcpy(rr->data, chan, n);
    memcpy(rr->data + n, mark, mlen);
    ev_timer_init(&rr->late, rread_late, WAIT_MS / 1e3, 0);
    rr->late.data = rr;
    ev_timer_start(j->x->ev, &rr->late);
    j->reads = rr;
    return 0;
}

static void marks_deliver(wsk_natsjs *j, struct jstream *s);
static void ordered(wsk_natsjs *j, struct jstream *s, const char *env, size_t len, uint64_t off);

/* s waits for the messages before offset off: asks its stream for them at once (a direct get
 * each, FETCH_MAX at most, those not asked yet), their answers coming in the channel's order
 * too (fetched).  Whichever comes first, the republished copy or the stored one, is delivered;
 * the other is a copy.  A message the stream does not answer for is given up after HOLD_MS. */
static void fetch_gap(wsk_natsjs *j, struct jstream *s, uint64_t off)
{
    uint64_t from = (s->asked > s->last ? s->asked : s->last) + 1;
    uint64_t to = off - 1 - from >= FETCH_MAX ? from + FETCH_MAX - 1 : off - 1;
    char api[64], reply[96], body[48];
    if (!j->up || !j->rsub || from >= off) return;
    snprintf(api, sizeof api, "$JS.API.DIRECT.GET.WSKH_%016llx",
             (unsigned long long)fnv64(s->chan, s->n));
    for (uint64_t seq = from; seq <= to; seq++) {
        struct rread *rr = malloc(sizeof *rr + s->n);
        if (!rr) return;
        *rr = (struct rread){j->reads, j, {0}, ++j->gaps, seq, s->n, 0};
        memcpy(rr->data, s->chan, s->n);
        snprintf(reply, sizeof reply, "%sg%llu", j->rinbox, (unsigned long long)rr->id);
        int blen = snprintf(body, sizeof body, "{\"seq\":%llu}", (unsigned long long)seq);
        if (natsConnection_PublishRequest(j->nc, api, reply, body, blen) != NATS_OK) {
            free(rr);
            return;
        }
        ev_timer_init(&rr->late, rread_late, WAIT_MS / 1e3, 0);
        rr->late.data = rr;
        ev_timer_start(j->x->ev, &rr->late);
        j->reads = rr;
        s->asked = seq;
    }
}

/* The stream's answer for a message of a gap: env[0..len), the message as stored (its offset
 * filled in here), or not one (404: gone, or never there). */
static void fetched(wsk_natsjs *j, struct rread *rr, const char *env, size_t len)
{
    struct jstream *s = *stream_find(j, rr->data, rr->n);
    char *copy = s && history_envelope(env, len) && rr->seq > s->last &&
                         !memcmp(env + WSK_BRIDGE_HDR + 20, s->seen, 16)
                     ? malloc(len)
                     : NULL;
    uint64_t seq = rr->seq;
    rread_end(j, rr);
    if (!copy) return;
    memcpy(copy, env, len);
    put_offset(copy, seq);
    ordered(j, s, copy, len, seq);
    free(copy);
}

/* The answer to read RINBOX.ID, reply[0..n): the server's env[0..len) (the retained envelope,
 * or nothing: none, or no stream) goes to the bridge after the read's mark, once the channel's
 * messages that came before it were delivered (those waiting for their turn too). */
static void rread_answer(wsk_natsjs *j, const char *reply, size_t n, const char *env, size_t len)
{
    uint64_t id = 0;
    int gap = n > j->rilen && reply[j->rilen] == 'g';
    for (size_t i = j->rilen + (size_t)gap; i < n && reply[i] >= '0' && reply[i] <= '9'; i++)
        id = id * 10 + (uint64_t)(reply[i] - '0');
    struct rread *rr = j->reads;
    while (rr && (rr->id != id || !rr->seq != !gap)) rr = rr->next;
    if (!rr) return; /* late: the bridge heard it failed */
    if (gap) {
        fetched(j, rr, env, len);
        return;
    }
    size_t keep = retained_holds(env, len) ? len : 0;
    struct held *h = malloc(sizeof *h + rr->mlen + keep);
    struct jstream **p = stream_find(j, rr->data, rr->n), *s = *p;
    if (h && !s && (s = calloc(1, sizeof *s + rr->n))) {
        s->n = rr->n;
        memcpy(s->chan, rr->data, rr->n);
        *p = s;
    }
    if (!h || !s) {
        free(h);
        rread_late(j->x->ev, &rr->late, 0);
        return;
    }
    h->count = NULL;
    h->len = rr->mlen + keep;
    memcpy(h->env, rr->data + rr->n, rr->mlen);
    memcpy(h->env + rr->mlen, env, keep);
    struct held **tail = &s->marks;
    while (*tail) tail = &(*tail)->next;
    h->next = NULL;
    *tail = h;
    rread_end(j, rr);
    if (!s->early) marks_deliver(j, s);
}

int wsk_natsjs_kept(wsk_natsjs *j, const char *const *chans, const size_t *lens, size_t k,
                    wsk_bridge_kept *q)
{
    size_t total = 0;
    for (size_t i = 0; i < k; i++) total += lens[i] + 1;
    if (!j->up || j->on != 1 || !k) return -1;
    struct job *jb = calloc(1, sizeof *jb + total + 1);
    if (!jb) return -1;
    jb->kind = J_KEPT;
    for (size_t i = 0, o = 0; i < k; o += lens[i++] + 1) memcpy(jb->chan + o, chans[i], lens[i]);
    jb->q = q;
    jb->nk = k;
    job_queue(j, jb);
    return 0;
}

int wsk_natsjs_history(wsk_natsjs *j)
{
    if (!j->known && !j->told) {
        j->told = 1;
        wsk_bridge_log(j->link, WSK_LOG_WARN,
                       "history stays node-local: the server has no JetStream (%s)", j->no);
    }
    return j->known;
}

/* The worker's answer to J_DETECT. */
static void detected(wsk_natsjs *j, const struct job *jb)
{
    if (jb->js) j->js = jb->js;
    if (jb->ok < 0) { /* no answer in time: ask again while up */
        if (j->up) {
            struct job *again = job_new(J_DETECT, "", 0);
            if (again) job_queue(j, again);
        }
        return;
    }
    /* Said at -v once per connection; a "no" is a warning when history is asked for, or when
     * the server had JetStream before (a restart without it): history publishes fail then. */
    if (jb->ok && j->on != 1)
        wsk_bridge_log(j->link, WSK_LOG_INFO, "the server has JetStream: history goes there");
    else if (!jb->ok && j->known != 0)
        wsk_bridge_log(j->link, j->known == 1 ? WSK_LOG_WARN : WSK_LOG_INFO,
                       "the server has no JetStream (%s)%s", jb->why,
                       j->known == 1 ? ": history publishes are delivered here only" : "");
    if (jb->ok) j->told = 0;
    snprintf(j->no, sizeof j->no, "%s", jb->why);
    j->known = jb->ok;
    if (j->up) j->on = jb->ok;
}

void wsk_natsjs_wake(wsk_natsjs *j)
{
    pthread_mutex_lock(&j->mu);
    struct job *jb = j->done, *in_order = NULL;
    uint64_t unkept = j->unkept, refused = 0;
    char last[200] = "";
    j->done = NULL;
    j->unkept = 0;
    pthread_mutex_unlock(&j->mu);
    if (unkept)
        wsk_bridge_log(j->link, WSK_LOG_WARN,
                       "%llu retained messages not kept: JetStream stores them slower than "
                       "they come (%u MiB wait at most)",
                       (unsigned long long)unkept, KEEP_MAX >> 20);
    while (jb) {
        struct job *next = jb->next;
        jb->next = in_order;
        in_order = jb;
        jb = next;
    }
    for (jb = in_order; jb; jb = in_order) {
        in_order = jb->next;
        struct jstream *s =
            jb->kind == J_STREAM || jb->kind == J_REFUSED ? *stream_find(j, jb->chan, jb->n) : NULL;
        if (jb->kind == J_DETECT) {
            detected(j, jb);
        } else if (jb->kind == J_RANGE) {
            wsk_bridge_ranged(j->link, jb->r, jb->ok, jb->epoch, jb->head, jb->first,
                              (const char *const *)jb->env, jb->lens, jb->k);
        } else if (jb->kind == J_KEPT) {
            wsk_bridge_kept_done(j->link, jb->q, jb->ok ? jb->v : NULL, 2 * jb->nk);
        } else if (jb->kind == J_KEEP && !jb->ok) {
            wsk_bridge_log(j->link, WSK_LOG_WARN, "'%s': %s", jb->chan, jb->why);
        } else if (jb->kind == J_UNKEPT) { /* delivered, not stored: counted as failed */
            wsk_bridge_unkept(j->link, jb->chan, jb->n, jb->k ? (uint8_t *)jb->env[0] : NULL,
                              jb->k ? jb->lens[0] : 0, jb->count);
            jb->count = NULL;
            snprintf(last, sizeof last, "'%.60s': %.120s", jb->chan, jb->why);
            refused++;
        } else if (jb->kind == J_RMAKE) {
            j->remaking = 0;
            if (!jb->ok) wsk_bridge_log(j->link, WSK_LOG_WARN, "retained messages: %s", jb->why);
        } else if (s && jb->kind == J_STREAM && s->state == S_MAKING) {
            if (jb->ok != 1)
                wsk_bridge_log(j->link, jb->ok == 2 ? WSK_LOG_INFO : WSK_LOG_WARN, "history: %s",
                               jb->why);
            memcpy(s->epoch, jb->epoch, 16);
            s->state = jb->ok ? S_READY : S_NEW;
            release(j, s, jb->ok);
        } else if (s && jb->kind == J_REFUSED) {
            if (s->state == S_READY) /* its stream is checked again */
                wsk_bridge_log(j->link, WSK_LOG_WARN, "history: a message of '%s' refused: %s%s",
                               jb->chan, jb->why, jb->k ? " (sent again)" : " (lost)");
            if (s->state == S_READY) s->state = S_NEW;
            if (jb->k && hold(j, s, jb->env[0], jb->lens[0], jb->count) == 0) jb->count = NULL;
        }
        if (jb->count) wsk_bridge_counted(j->link, jb->count, -1); /* NATS cannot count */
        job_free(jb);
    }
    if (!refused) return;
    /* Once per wake-up: a stream deleted under a storm of retained publishes says it once. */
    wsk_bridge_log(j->link, WSK_LOG_WARN,
                   "%llu retained messages delivered but not kept in JetStream (the last: %s)",
                   (unsigned long long)refused, last);
    /* The stream may be gone (deleted): made again, once at a time, for the next ones. */
    struct job *make = !j->remaking && j->up ? job_new(J_RMAKE, "", 0) : NULL;
    if (make) {
        j->remaking = 1;
        job_queue(j, make);
    }
}

/* ----- delivery in the stream's order ------------------------------------------------------- */

static void deliver_one(wsk_natsjs *j, struct jstream *s, const char *env, size_t len)
{
    uint64_t off = offset_of(env, len);
    /* Past a gap given up on: its messages may still come, late (the last SKIP_MAX of them). */
    for (uint64_t o = s->last && off > s->last + SKIP_MAX ? off - SKIP_MAX : s->last + 1;
         s->last && o < off; o++)
        s->skipped[o % SKIP_MAX] = o;
    if (off > s->last) s->last = off;
    wsk_bridge_message(j->link, s->chan, s->n, env, len);
}

/* Delivers s's early messages that are next in turn, or all of them (all). */
static void deliver_early(wsk_natsjs *j, struct jstream *s, int all)
{
    while (s->early && (all || offset_of(s->early->env, s->early->len) <= s->last + 1)) {
        struct held *h = s->early;
        s->early = h->next;
        s->nearly--;
        deliver_one(j, s, h->env, h->len);
        free(h);
    }
    if (!s->early && s->since) {
        s->since = 0;
        j->nwaiting--;
    }
    if (!s->early) marks_deliver(j, s);
}

/* The answers to reads of s's retained message, in their order, once no message of s waits
 * for its turn (rread_answer). */
static void marks_deliver(wsk_natsjs *j, struct jstream *s)
{
    while (s->marks) {
        struct held *h = s->marks;
        s->marks = h->next;
        wsk_bridge_message(j->link, s->chan, s->n, h->env, h->len);
        free(h);
    }
}

static void on_hold(struct ev_loop *ev, ev_timer *w, int revents)
{
    wsk_natsjs *j = w->data;
    (void)revents;
    double now = ev_now(ev);
    for (size_t i = 0; i < NBUCKETS && j->nwaiting; i++)
        for (struct jstream *s = j->streams[i]; s; s = s->next)
            if (s->since && now - s->since >= HOLD_MS / 1e3) deliver_early(j, s, 1);
    if (!j->nwaiting) ev_timer_stop(ev, w);
}

void wsk_natsjs_deliver(wsk_natsjs *j, const char *chan, size_t n, const char *env, size_t len)
{
    if (j->rilen && n > j->rilen && !memcmp(chan, j->rinbox, j->rilen)) {
        rread_answer(j, chan, n, env, len);
        return;
    }
    size_t rs = strlen(RSUBJ);
    if (n > rs && !memcmp(chan, RSUBJ, rs)) {
        /* A retained publish, on its channel.  A history envelope there is not one but its
         * store (keep_newer): it came republished on the channel, with its offset. */
        if (!history_envelope(env, len)) wsk_bridge_message(j->link, chan + rs, n - rs, env, len);
        return;
    }
    uint64_t off = offset_of(env, len);
    struct jstream **p = off ? stream_find(j, chan, n) : NULL, *s = p ? *p : NULL;
    if (p && !s && (s = calloc(1, sizeof *s + n))) {
        s->n = n;
        memcpy(s->chan, chan, n);
        *p = s;
    }
    if (!s) {
        wsk_bridge_message(j->link, chan, n, env, len);
        return;
    }
    const char *epoch = env + WSK_BRIDGE_HDR + 20;
    if (memcmp(s->seen, epoch, 16)) { /* a new life of the stream (or the first message) */
        deliver_early(j, s, 1);
        memcpy(s->seen, epoch, 16);
        s->last = s->asked = 0;
        memset(s->skipped, 0, sizeof s->skipped);
    }
    ordered(j, s, env, len, off);
}

/* env[0..len), the message of s at offset off (republished, or read for a gap), delivered in
 * its turn: at once when it is, held when it is early (its gap asked for), dropped when it
 * came already (a gap's message comes twice: republished and read). */
static void ordered(wsk_natsjs *j, struct jstream *s, const char *env, size_t len, uint64_t off)
{
    if (s->last && off <= s->last) { /* late: goes only when delivery went past it */
        if (s->skipped[off % SKIP_MAX] != off) return;
        s->skipped[off % SKIP_MAX] = 0;
        wsk_bridge_message(j->link, s->chan, s->n, env, len);
        return;
    }
    if (!s->last || off == s->last + 1) { /* its turn */
        deliver_one(j, s, env, len);
        deliver_early(j, s, 0);
        return;
    }
    struct held *h = malloc(sizeof *h + len), **q = &s->early;
    if (!h) {
        deliver_one(j, s, env, len);
        return;
    }
    while (*q && offset_of((*q)->env, (*q)->len) < off) q = &(*q)->next;
    if (*q && offset_of((*q)->env, (*q)->len) == off) { /* waiting already */
        free(h);
        return;
    }
    h->count = NULL;
    h->len = len;
    memcpy(h->env, env, len);
    h->next = *q;
    *q = h;
    if (!s->since) {
        s->since = ev_now(j->x->ev);
        if (!j->nwaiting++) ev_timer_again(j->x->ev, &j->hold);
    }
    if (++s->nearly > EARLY_MAX) deliver_early(j, s, 1);
    fetch_gap(j, s, off);
}

/* The node listens to channel chan[0..n) again: the first message it hears there sets the
 * topic's position (those published meanwhile are not a gap). */
void wsk_natsjs_listen(wsk_natsjs *j, const char *chan, size_t n)
{
    struct jstream *s = *stream_find(j, chan, n);
    if (s && !s->early) s->last = s->asked = 0;
}

void wsk_natsjs_up(wsk_natsjs *j, natsConnection *nc)
{
    j->up = 1;
    j->nc = nc;
    pthread_mutex_lock(&j->mu);
    j->wnc = nc;
    pthread_mutex_unlock(&j->mu);
    for (size_t i = 0; i < NBUCKETS; i++)
        for (struct jstream *s = j->streams[i]; s; s = s->next)
            if (s->state == S_READY) s->state = S_NEW;
    struct job *jb = job_new(J_DETECT, "", 0);
    if (jb) job_queue(j, jb);
    natsInbox *inbox = NULL; /* the client subscribes it again after each reconnect */
    if (!j->rsub && natsInbox_Create(&inbox) == NATS_OK) {
        char wild[sizeof j->rinbox + 1];
        snprintf(j->rinbox, sizeof j->rinbox, "%s.", inbox);
        snprintf(wild, sizeof wild, "%s*", j->rinbox);
        if (natsConnection_Subscribe(&j->rsub, nc, wild, j->on_msg, j->closure) == NATS_OK)
            j->rilen = strlen(j->rinbox);
    }
    natsInbox_Destroy(inbox);
}

void wsk_natsjs_down(wsk_natsjs *j)
{
    j->up = 0;
    j->on = -1;
}

wsk_natsjs *wsk_natsjs_new(wsk_bridge_link *link, wsk_natsev *x, natsMsgHandler on_msg,
                           void *closure, int memory)
{
    wsk_natsjs *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->link = link;
    j->x = x;
    j->on_msg = on_msg;
    j->closure = closure;
    j->storage = memory ? js_MemoryStorage : js_FileStorage;
    j->on = j->known = -1;
    atomic_init(&j->pending, 0);
    ev_init(&j->hold, on_hold);
    j->hold.repeat = HOLD_MS / 2e3;
    j->hold.data = j;
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    if (pthread_create(&j->worker, NULL, work, j) != 0) {
        pthread_mutex_destroy(&j->mu);
        pthread_cond_destroy(&j->cv);
        free(j);
        return NULL;
    }
    j->running = 1;
    return j;
}

void wsk_natsjs_free(wsk_natsjs *j)
{
    if (!j) return;
    pthread_mutex_lock(&j->mu);
    j->quit = 1;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
    if (j->running) pthread_join(j->worker, NULL);
    if (j->wjs) jsCtx_Destroy(j->wjs); /* the acks still awaited are not */
    /* Every range not answered yet is, now: the reader hears ok 0. */
    struct job *lists[2] = {j->todo, j->done};
    for (int i = 0; i < 2; i++) {
        for (struct job *jb = lists[i], *next; jb; jb = next) {
            next = jb->next;
            if (jb->kind == J_RANGE)
                wsk_bridge_ranged(j->link, jb->r, 0, NULL, 0, 0, NULL, NULL, 0);
            if (jb->kind == J_KEPT) wsk_bridge_kept_done(j->link, jb->q, NULL, 0);
            if (jb->count) wsk_bridge_counted(j->link, jb->count, -1);
            job_free(jb);
        }
    }
    for (size_t i = 0; i < PBUCKETS; i++) { /* no ack came: the senders hear -1 all the same */
        for (struct waiting *w = j->waiting[i], *next; w; w = next) {
            next = w->next;
            wsk_bridge_counted(j->link, w->count, -1);
            free(w);
        }
        j->waiting[i] = NULL;
    }
    ev_timer_stop(j->x->ev, &j->hold);
    while (j->reads) rread_end(j, j->reads); /* the bridge gives up its marks itself */
    natsSubscription_Destroy(j->rsub);
    for (size_t i = 0; i < NBUCKETS; i++) {
        for (struct jstream *s = j->streams[i], *next; s; s = next) {
            next = s->next;
            for (struct held *h = s->head, *hn; h; h = hn) {
                hn = h->next;
                if (h->count) wsk_bridge_counted(j->link, h->count, -1);
                free(h);
            }
            for (struct held *h = s->early, *hn; h; h = hn) {
                hn = h->next;
                free(h);
            }
            for (struct held *h = s->marks, *hn; h; h = hn) {
                hn = h->next;
                free(h);
            }
            free(s);
        }
    }
    free(j->scratch);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}
