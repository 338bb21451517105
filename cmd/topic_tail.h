/* wscat --subscribe: a reliable tail of broker topics (wsserve --pubsub's JSON protocol).  It
 * subscribes, prints each delivery as "topic: message", remembers the last offset and epoch of
 * every topic it printed (in --offset-file, rewritten after each message) and, when it
 * subscribes again (--since at start, and after every reconnect), asks for what came after.
 * Bytes in, text out: the socket stays wscat's. */
#ifndef WSK_TOPIC_TAIL_H
#define WSK_TOPIC_TAIL_H

#include <stddef.h>
#include <stdio.h>

typedef struct topic_tail topic_tail;

/* A tail of topics[0..n) (kept by reference).  offset_file: NULL for none; since: resume from
 * it now (a missing file is an empty one).  NULL with *err set when the file cannot be read
 * or memory is short. */
topic_tail *tail_new(const char *const *topics, size_t n, const char *offset_file, int since,
                     const char **err);
void tail_free(topic_tail *t);
/* The subscribe requests for a new connection: send(arg, text, len) for each topic, with
 * "since" where the tail knows a position (resume set, or this run printed from the topic). */
void tail_subscribe(topic_tail *t, void (*send)(void *arg, const char *text, size_t len),
                    void *arg);
/* A text message from the broker: a delivery is printed to out ("topic: message" and a
 * newline) and its position saved; an error reply or a subscription that could not recover
 * everything is described in warn (returns 1); anything else is ignored (0). */
int tail_message(topic_tail *t, const void *msg, size_t len, FILE *out, char *warn, size_t cap);

#endif
