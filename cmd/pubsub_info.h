/* What wsserve --pubsub tells about its topics: the "topics" and "presence" requests of the
 * control protocol and GET /topics, /topics/TOPIC.  Gathers from the library (subscribers) and
 * the store (retained messages, history); jsonproto.c writes the JSON. */
#ifndef WSK_PUBSUB_INFO_H
#define WSK_PUBSUB_INFO_H

#include "jsonproto.h"
#include "pubsub_store.h"
#include "wskit.h"

/* The library topics of JSON subscribers to T are JSON_NS + T (serve_pubsub.c says why). */
#define JSON_NS     "$."
#define JSON_NS_LEN 2

/* The topics (with subscribers or something kept) that filter[0..flen) matches (a pattern or a
 * name; flen 0: all), sorted by name, at most limit of them (0: no limit), as jp_topics_reply
 * builds them.  NULL when memory is short. */
char *pi_topics(wsk_server *srv, const ps_store *st, const char *id, int http, const char *filter,
                size_t flen, size_t limit, size_t *len);
/* One topic and its subscribers, as jp_presence_reply builds them; who(ws, p) fills the id,
 * address (valid until the next call) and user of a subscriber. */
char *pi_presence(wsk_server *srv, const ps_store *st, const char *id, int http, const char *topic,
                  size_t tlen, void (*who)(wsk_ws *ws, jp_presence *p), size_t *len);

#endif
