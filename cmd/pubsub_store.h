/* What the broker of wsserve --pubsub keeps per topic beyond its subscribers: the retained
 * message (MQTT's: the last one published with retain, handed to each new subscriber first).
 * Bytes in, bytes out: no sockets. */
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

#endif
