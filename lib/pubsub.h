/* Topics of a server (internal side of wsk_subscribe / wsk_publish). */
#ifndef WSK_PUBSUB_H
#define WSK_PUBSUB_H

#include "internal.h"

/* Frames up to this size (header + payload) are copied into each subscriber's private tail
 * block; larger ones are framed once into a shared block that every queue points into.  A copy
 * of a short chat line costs less than a queue node, and keeps a queue of many small messages
 * in few segments, so one writev carries them all; a large message is not worth duplicating. */
#define WSK_PUBLISH_COPY_MAX 1024

/* The socket is closing: it leaves all its topics (empty topics are freed).  conn.c calls it
 * before the close handler runs. */
void wsk_pubsub_conn_gone(struct wsk_ws *c);
/* Frees k's holds (wsk_ws_hold), when the socket's cold part goes. */
void wsk_holds_free(wsk_cold *k);
/* A message compressed by a loop's shared deflater at `level`: z[0..len) is the payload of its
 * RSV1 frame (z NULL: not compressed). */
typedef struct wsk_zmsg {
    const uint8_t *z;
    size_t len;
    int level;
} wsk_zmsg;
/* Delivers to the local subscribers of topic[0..n) a publish made on another loop of the
 * server's group (group_topics.c): as wsk_server_publish_local, not counted as a publish here.  z
 * (may be NULL): the publishing loop's compressed payload, sent as it is to the sockets on the
 * shared deflater when the level is this server's.  seq: its number (wsk_group_seq); the
 * subscriptions made after it was numbered do not get it. */
long wsk_pubsub_remote(wsk_ctx *ctx, const char *topic, size_t n, const void *data, size_t len,
                       wsk_opcode op, int compress, const wsk_zmsg *z, uint64_t seq);
/* Calls fn(arg, name, len) for every topic with subscribers, patterns included (in a group,
 * those of every loop); fn must not subscribe or unsubscribe. */
void wsk_pubsub_each(wsk_ctx *ctx, void (*fn)(void *arg, const char *topic, size_t n), void *arg);
/* Frees every topic of a server's ctx (its sockets are gone already). */
void wsk_pubsub_free(wsk_ctx *ctx);

#endif
