/* hiredis reply objects from one arena per connection, for the Redis engine (bridge_redis.c).
 *
 * hiredis 0.14 builds each reply with malloc: a message from a subscription is an array of
 * three strings, eight allocations and eight frees (a fifth of a receiving node's CPU at
 * 200,000 messages/s).  It has no allocator hooks, but its reader takes a table of object
 * constructors: these build the reply in a bump arena, and freeing the reply empties it.
 * That holds because hiredis builds one reply at a time per connection and frees it (after its
 * callback) before it parses the next.  What does not fit in the arena is malloc'd and freed
 * with the reply. */
#ifndef WSK_BRIDGE_REDIS_REPLY_H
#define WSK_BRIDGE_REDIS_REPLY_H

#include <stddef.h>

#define WSK_RREPLY_ARENA (16u << 10) /* a connection's arena, allocated at its first reply */

typedef struct wsk_rreply_pool {
    char *base;
    size_t used;
    struct wsk_rreply_big *bigs; /* what did not fit, freed with the reply */
} wsk_rreply_pool;

/* Has hiredis' reader `reader` (a redisReader *: ac->c.reader) build its replies in p, which
 * must outlive the reader: hiredis frees a reply it was building when the reader goes. */
void wsk_rreply_attach(void *reader, wsk_rreply_pool *p);
/* Frees p's memory (after its readers are gone); p may be attached again. */
void wsk_rreply_free(wsk_rreply_pool *p);

#endif
