/* The bridge: a server's topics shared with other processes through an engine (Redis, NATS).
 *
 * Two sides.  pubsub.c tells the bridge when a topic gets its first local subscriber and when
 * its last one leaves (wsk_bridge_topic), and hands it every publish after local delivery
 * (wsk_bridge_forward).  Each engine is one file filling one wsk_bridge_engine; it calls back
 * wsk_bridge_up / _down / _message.  bridge.c between them owns the envelope, the node id,
 * sharding over several engine connections and the outage accounting; nothing else in the
 * library includes an engine's headers.  An engine that keeps history (Redis, NATS with
 * JetStream) fills append and range too: the offsets are the engine's, and bridge.c holds the
 * topics a recovery listens to (wsk_server_bridge_listen).
 *
 * Envelope (what goes over the engine, on channel PREFIX + topic):
 *   byte 0      WSK_BRIDGE_MAGIC (a version too: another value is not ours, and is dropped)
 *   byte 1      flags: WSK_BRIDGE_BINARY, WSK_BRIDGE_TO_SELF, WSK_BRIDGE_COMPRESS
 *   bytes 2-9   the origin node id (random per server): a node drops its own echo
 *   bytes 10-17 the message's number at its origin (little-endian, from 1): a node subscribed
 *               to a topic by its name and by patterns gets one copy per subscription from
 *               the engine, back to back, and delivers the first only
 *   bytes 18-   the message
 * With WSK_BRIDGE_HISTORY in the flags (a publish kept in the engine's history)
 * the engine fills 36 more bytes before the message, so that every node reads the same position:
 *   bytes 18-37 the topic's offset, 20 decimal digits
 *   bytes 38-53 the epoch of the topic's history, 16 hex digits
 *   bytes 54-   the message
 * WSK_BRIDGE_RETAIN marks a retained publish (WSK_PUB_RETAINED, handed on to the subscribers'
 * queuing holds on every node); an engine that keeps retained messages also keeps it as the
 * topic's retained message (an empty one clears it).  WSK_BRIDGE_MARK is not a message but the
 * answer to a read of the retained message (wsk_server_retained_read), published on the channel so
 * that it falls in the channel's order: bytes 10-17 are the read's number at its node (the others
 * drop it), bytes 18- the retained envelope as the engine keeps it (none: nothing). */
#ifndef WSK_BRIDGE_H
#define WSK_BRIDGE_H

#include "internal.h"

#define WSK_BRIDGE_MAGIC       0xB2
#define WSK_BRIDGE_HDR         18
#define WSK_BRIDGE_ORIGINS     64 /* origins a link remembers the last message number of */
#define WSK_BRIDGE_BINARY      1
#define WSK_BRIDGE_TO_SELF     2
#define WSK_BRIDGE_COMPRESS    4
#define WSK_BRIDGE_HISTORY     8
#define WSK_BRIDGE_RETAIN      16
#define WSK_BRIDGE_MARK        32
#define WSK_BRIDGE_HDR_HISTORY 54
#define WSK_BRIDGE_PREFIX_MAX  64
#define WSK_BRIDGE_MAX_LINKS   16

/* One engine connection: a shard of the topics (bridge.c's; engines keep the pointer). */
typedef struct wsk_bridge_link wsk_bridge_link;

/* A publish whose sender waits for the engine's count (wsk_server_publish_counted): made by
 * bridge.c, handed to the engine's publish, given back once through wsk_bridge_counted. */
typedef struct wsk_bridge_count {
    size_t len; /* the envelope's bytes (the engine's in-flight accounting) */
    int self;   /* this node's subscriptions the engine counts for the channel (publish) */
    long local; /* local receivers, for done */
    void (*done)(void *arg, long local, long nodes);
    void *arg;
} wsk_bridge_count;

/* A read of a channel's history: made by bridge.c, handed to the engine's
 * range, given back once through wsk_bridge_ranged. */
typedef struct wsk_bridge_range wsk_bridge_range;
/* A read of what the engine keeps of some channels (kept), given back once through
 * wsk_bridge_kept_done. */
typedef struct wsk_bridge_kept wsk_bridge_kept;

typedef struct wsk_bridge_engine {
    const char *scheme; /* the URL scheme it serves: "redis", "nats" */
    /* Starts connecting to url (NUL-terminated) on ev, in the background, reconnecting with
     * backoff whenever the connection is lost, until close.  Returns the engine's state, or
     * NULL with a reason in err[0..cap) (a bad URL, no memory). */
    void *(*open)(wsk_bridge_link *link, struct ev_loop *ev, const char *url, char *err,
                  size_t cap);
    /* Subscribe to / leave channel chan[0..n) (copied).  Called only while up.  0, or <0. */
    int (*subscribe)(void *e, const char *chan, size_t n);
    int (*unsubscribe)(void *e, const char *chan, size_t n);
    /* The same for a pattern: chan[plen..n) is a topic pattern (wsk_topic_is_pattern) after
     * the prefix.  The engine may listen to more than the pattern matches (the node keeps only
     * what its own patterns match); messages come through wsk_bridge_message with the channel
     * they were published on. */
    int (*psubscribe)(void *e, const char *chan, size_t n, size_t plen);
    int (*punsubscribe)(void *e, const char *chan, size_t n, size_t plen);
    /* Queues msg[0..len) (copied) for channel chan; everything queued in one loop iteration
     * leaves in one write.  self: this node's subscriptions that match chan (its name, unless
     * a pattern of the node covers it, and its patterns that match it: an engine that reports
     * receivers, through wsk_bridge_reached, counts them among them).  0, or <0 when it cannot
     * go (down, or the engine's queue is at its cap: memory stays bounded while the engine is
     * slow).  count: NULL, or the sender waits for the engine's count: the engine gives it
     * back through wsk_bridge_counted exactly once when publish returns 0 (with -1 for
     * "unknown" when it cannot count, or loses the connection first); when publish fails it
     * keeps nothing. */
    int (*publish)(void *e, const char *chan, size_t n, const void *msg, size_t len, int self,
                   wsk_bridge_count *count);
    /* Disconnects and frees; no callback runs after it returns. */
    void (*close)(void *e);
    /* History kept by the engine (NULL for an engine that keeps none).  append is publish for
     * an envelope with WSK_BRIDGE_HISTORY (len >= WSK_BRIDGE_HDR_HISTORY): atomically, the
     * engine gives the message the next offset of the channel's history (monotonic, gapless,
     * the same for every node), fills bytes 18-53 with it and the history's epoch (a new one
     * when the history was lost), keeps at least the last depth envelopes (Redis: for ttl
     * seconds after the channel's last append; NATS: each for ttl seconds; 0: no limit) and
     * publishes the envelope on the channel.
     * Same return and count rules as publish.  chan[0..plen) is the prefix. */
    int (*append)(void *e, const char *chan, size_t n, size_t plen, const void *msg, size_t len,
                  size_t depth, double ttl, int self, wsk_bridge_count *count);
    /* Reads the channel's history after offset `after`, at most max envelopes, oldest first,
     * and gives them back once through wsk_bridge_ranged (also when the connection is lost
     * first).  0, or <0 (down) when it cannot ask: then it keeps nothing. */
    int (*range)(void *e, const char *chan, size_t n, size_t plen, uint64_t after, size_t max,
                 wsk_bridge_range *r);
    /* For an engine whose history depends on the server (NATS: JetStream): 1 when append and
     * range work there, 0 when the server keeps none (the node keeps its own), -1 while it is
     * not known (never connected yet).  NULL: always 1. */
    int (*history)(void *e);
    /* Retained messages kept by the engine (NULL for an engine that keeps none).  retain is
     * publish (history 0) or append (history 1, with depth and ttl) for an envelope with
     * WSK_BRIDGE_RETAIN that the engine also keeps, in the same atomic step, as the channel's
     * retained message (keep 1) or whose step clears it (keep 0).  Same return and count
     * rules as publish. */
    int (*retain)(void *e, const char *chan, size_t n, size_t plen, const void *msg, size_t len,
                  int keep, int history, size_t depth, double ttl, int self,
                  wsk_bridge_count *count);
    /* Once every subscription this link asked for so far is active on the engine, publishes
     * on the channel, in one atomic step, mark[0..mlen) (copied) followed by the channel's
     * retained envelope (nothing when none): this node hears it in the channel's order.  0,
     * or <0 (down) when it cannot ask; when it asked but the step failed, or the connection
     * went first, it calls wsk_bridge_mark_failed(link, id) (perhaps also after the mark
     * came: the bridge ignores an id it does not wait for). */
    int (*retained)(void *e, const char *chan, size_t n, size_t plen, const void *mark, size_t mlen,
                    uint64_t id);
    /* What the engine keeps of channels chans[0..k) (lens, each after a prefix of plen bytes):
     * in one round trip, whether each has a retained message and how many messages its
     * history holds; given back once through wsk_bridge_kept_done (also when the connection
     * is lost first).  0, or <0 (down) when it cannot ask: then it keeps nothing.  NULL for an
     * engine that keeps nothing. */
    int (*kept)(void *e, const char *const *chans, const size_t *lens, size_t k, size_t plen,
                wsk_bridge_kept *q);
    /* A retained publish this node made on channel chan[0..n) while the connection was down,
     * age_ms ago: in one atomic step, unless the engine keeps a retained message (or the clear
     * of one) of the channel made later than that by its own clock, the engine keeps
     * env[0..len) (copied, an envelope with WSK_BRIDGE_RETAIN) as the channel's retained
     * message, or clears it (len 0).  Nothing is published: the node's subscribers had it.
     * 0, or <0 (down) when it cannot ask.  NULL for an engine that keeps no retained ones. */
    int (*restore)(void *e, const char *chan, size_t n, size_t plen, const void *env, size_t len,
                   uint64_t age_ms);
} wsk_bridge_engine;

extern const wsk_bridge_engine wsk_bridge_redis, wsk_bridge_nats;

/* ----- engine -> bridge ---------------------------------------------------------------------- */

/* The link is connected and ready: the bridge subscribes it to every live topic of its shard. */
void wsk_bridge_up(wsk_bridge_link *l);
/* The link was lost or could not connect (why: NUL-terminated); logged once per outage. */
void wsk_bridge_down(wsk_bridge_link *l, const char *why);
/* A message on channel chan[0..n) (the channel it was published on, also when a pattern
 * subscription brought it): delivered to local subscribers (or to the bridged handler) unless
 * it is our own echo or a copy of a message this link brought already. */
void wsk_bridge_message(wsk_bridge_link *l, const char *chan, size_t n, const void *msg,
                        size_t len);
/* The engine says how many subscriptions a publish reached (Redis: PUBLISH's reply); self as
 * given to publish. */
void wsk_bridge_reached(wsk_bridge_link *l, long n, int self);
/* The engine's count of a publish that carried one: n subscriptions (self included), or -1
 * when it cannot be known.  Runs the sender's done and frees c. */
void wsk_bridge_counted(wsk_bridge_link *l, wsk_bridge_count *c, long n);
/* The engine's answer to range: ok 0 when it could not read (down); else the history's epoch
 * (16 hex digits; "" when the channel has none), the channel's last offset, the oldest offset
 * the history holds (0: none) and env[0..k) with lens[0..k), envelopes as append published
 * them, valid during the call.  Runs the reader's callback and frees r. */
void wsk_bridge_ranged(wsk_bridge_link *l, wsk_bridge_range *r, int ok, const char *epoch,
                       uint64_t head, uint64_t first, const char *const *env, const size_t *lens,
                       size_t k);
/* The engine refused to keep the envelope env[0..len) (a copy) that publish or append took for
 * channel chan[0..n) (its script failed): counted as failed; a message of the history is
 * delivered here, without an offset; c (NULL or the sender's count) hears
 * WSK_NODES_NOT_BRIDGED, and is freed. */
void wsk_bridge_unkept(wsk_bridge_link *l, const char *chan, size_t n, const uint8_t *env,
                       size_t len, wsk_bridge_count *c);
/* The engine's answer to kept: v[2i] nonzero when channel i has a retained message, v[2i + 1]
 * the messages its history holds (nv values); v NULL when it could not read.  Frees q. */
void wsk_bridge_kept_done(wsk_bridge_link *l, wsk_bridge_kept *q, const uint64_t *v, size_t nv);
/* The read of a retained message numbered id (the engine's retained) will not come back. */
void wsk_bridge_mark_failed(wsk_bridge_link *l, uint64_t id);
/* 1 when channel chan[0..n) is one this node holds now: a pattern with local subscribers, or
 * a name with local subscribers that none of the node's patterns covers (a node does not
 * subscribe by name to what its own pattern brings: Redis would count it twice). */
int wsk_bridge_wants(wsk_bridge_link *l, const char *chan, size_t n);
/* The prefix of every channel of the link's bridge: *plen bytes, valid while the bridge lives. */
const char *wsk_bridge_prefix(const wsk_bridge_link *l, size_t *plen);
/* The loop's log, prefixed with the link's URL (without its password). */
void wsk_bridge_log(wsk_bridge_link *l, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ----- library -> bridge --------------------------------------------------------------------- */

/* topic[0..n) got its first local subscriber (on 1) or lost its last one (on 0). */
void wsk_bridge_topic(struct wsk_bridge *b, const char *topic, size_t n, int on);
/* Forwards a publish, already delivered locally to `local` sockets, to the other nodes.  compress
 * holds the publish's WSK_PUB_* flags: with WSK_PUB_RETAINED the envelope says so and, when the
 * engine keeps retained messages, the engine keeps it as the topic's retained message (an empty
 * one clears it).  With done, done(arg, local, nodes) runs exactly once (see
 * wsk_server_publish_counted), perhaps before this returns.  0, or <0 when it could not be
 * forwarded (counted in the stats). */
int wsk_bridge_forward(struct wsk_bridge *b, const char *topic, size_t n, const void *data,
                       size_t len, unsigned op, int compress, int to_self, long local,
                       void (*done)(void *arg, long local, long nodes), void *arg);
void wsk_bridge_free(struct wsk_bridge *b);

#endif
