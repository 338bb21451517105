/* What the broker of wsserve --pubsub keeps per topic beyond its subscribers: the retained
 * message (MQTT's: the last one published with retain, handed to each new subscriber first) and
 * the history (the last messages, each with the topic's offset, for subscribers that come back).
 * Bytes in, bytes out: no sockets.
 *
 * Offsets count a topic's publishes from 1.  The epoch names one life of a topic's history: a
 * topic whose history went entirely (expired, evicted, the broker restarted) starts again with
 * a new epoch, so an (offset, epoch) pair a client kept can always be told apart from a new
 * life's. */
#ifndef WSK_PUBSUB_STORE_H
#define WSK_PUBSUB_STORE_H

#include <stddef.h>
#include <stdint.h>

typedef struct ps_store ps_store;

/* A kept message; owned by the store, valid until the next change of its topic. */
typedef struct ps_msg {
    size_t len;
    int binary;
    uint8_t data[];
} ps_msg;

/* An empty store; NULL when memory is short. */
ps_store *ps_store_new(void);
void ps_store_free(ps_store *s);
/* Keeps data[0..len) (copied) as the retained message of topic[0..tlen); len 0 clears it (MQTT:
 * an empty retained publish).  0, or -1 when memory is short (the old message stays). */
int ps_store_retain(ps_store *s, const char *topic, size_t tlen, const void *data, size_t len,
                    int binary);
/* Calls fn(arg, topic, tlen, msg) for the retained message of every topic that pattern[0..plen)
 * matches (wsk_topic_match; a plain name: its own), in no particular order.  A pattern scans
 * every retained topic.  fn must not change the store. */
void ps_store_retained(const ps_store *s, const char *pattern, size_t plen,
                       void (*fn)(void *arg, const char *topic, size_t tlen, const ps_msg *m),
                       void *arg);
/* Topics with a retained message, and the bytes they hold. */
size_t ps_store_retained_count(const ps_store *s, size_t *bytes);

/* Turns history on: the last `depth` messages per topic, each for at most ttl seconds (0: no
 * limit), all topics together at most max_bytes of message data (the oldest messages go first,
 * whatever their topic). */
void ps_store_history(ps_store *s, size_t depth, double ttl, size_t max_bytes);
/* The place of a message in a topic's history. */
typedef struct ps_pos {
    uint64_t offset; /* 0: history is off */
    char epoch[17];  /* 16 hex digits */
} ps_pos;
/* Records a publish to topic[0..tlen) at time now (seconds) and says where it went in *pos;
 * 0, or -1 when memory is short (not recorded; *pos zeroed).  With history off: 0, *pos zeroed. */
int ps_store_record(ps_store *s, const char *topic, size_t tlen, const void *data, size_t len,
                    int binary, double now, ps_pos *pos);
/* Lets the messages older than the TTL go, at time now (seconds); record and since do it too. */
void ps_store_expire(ps_store *s, double now);
/* A subscriber that saw topic[0..tlen) up to `since` (offset 0: nothing yet, any epoch):
 * returns 1 when the history holds every later message, 0 when it does not reach back that
 * far (another epoch, messages after since already gone).  *from is the offset to replay after
 * (since's, or 0 for another epoch: all the history holds); *now_at is where the topic stands
 * (offset 0 and epoch "000..." for a topic that keeps nothing). */
int ps_store_since(ps_store *s, const char *topic, size_t tlen, const ps_pos *since, double now,
                   uint64_t *from, ps_pos *now_at);
/* Calls fn(arg, data, len, binary, offset) for the messages of topic[0..tlen) after offset
 * `after`, oldest first, at most max of them, until fn returns nonzero.  Returns 1 when fn saw
 * the last one the history holds (or there was none), 0 when it stopped before.  fn must not
 * change the store. */
int ps_store_replay(const ps_store *s, const char *topic, size_t tlen, uint64_t after, size_t max,
                    int (*fn)(void *arg, const void *data, size_t len, int binary, uint64_t offset),
                    void *arg);
/* Where topic[0..tlen) stands (offset 0 when it has no history). */
void ps_store_position(const ps_store *s, const char *topic, size_t tlen, ps_pos *pos);
/* What the history holds now. */
typedef struct ps_history_stats {
    size_t topics, messages, bytes;
} ps_history_stats;
void ps_store_history_stats(const ps_store *s, ps_history_stats *st);
/* Calls fn(arg, topic, tlen, retained, history) for every topic the store keeps something of
 * (history: messages kept), in no particular order; fn must not change the store. */
void ps_store_each(const ps_store *s,
                   void (*fn)(void *arg, const char *topic, size_t tlen, int retained,
                              size_t history),
                   void *arg);
/* 1 when topic[0..tlen) has a retained message. */
int ps_store_has_retained(const ps_store *s, const char *topic, size_t tlen);
/* Messages in the history of topic[0..tlen). */
size_t ps_store_history_len(const ps_store *s, const char *topic, size_t tlen);

#endif
