/* What wsserve --pubsub tells about its topics: the "topics" and "presence" requests of the
 * control protocol and GET /topics, /topics/TOPIC.  Gathers from the library (subscribers) and
 * the store (retained messages, history); jsonproto.c writes the JSON.  The topics and their
 * counts are the whole group's at once (the library's table); the connections of a topic
 * belong each to its thread, so presence asks every thread (a census). */
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
/* The same in steps, for an answer that waits for figures from elsewhere (Redis): the topics
 * gathered (NULL when memory is short); those listed, whose retained flags and history lengths
 * the caller may change (valid until pi_list_free); the reply. */
typedef struct pi_list pi_list;
pi_list *pi_list_make(wsk_server *srv, const ps_store *st, const char *filter, size_t flen,
                      size_t limit);
jp_topic_info *pi_list_topics(pi_list *l, size_t *shown);
char *pi_list_reply(const pi_list *l, const ps_store *st, const char *id, int http, size_t *len);
void pi_list_free(pi_list *l);

/* Seconds a census waits for the other threads before answering with what arrived. */
#define PI_CENSUS_WAIT 1.0

/* The subscribers of one topic (by its name, raw and JSON), gathered from every thread. */
typedef struct pi_census pi_census;
/* How a census reaches the threads: member(arg, i) is the server of thread i (of `threads`);
 * who(ws, p) fills the id and user of a subscriber (p->user copied at once); live is the
 * asking member's list of censuses not yet done (its thread's; starts NULL), for pi_census_end. */
typedef struct pi_members {
    wsk_server *(*member)(void *arg, unsigned i);
    void *arg;
    unsigned threads;
    void (*who)(wsk_ws *ws, jp_presence *p);
    pi_census **live;
} pi_members;
/* Starts the census of topic[0..tlen) (at most 255 bytes) from srv (a member, on its loop):
 * srv's own subscribers at once, the other members' through wsk_group_call_or_drop on their
 * loops.  done(arg, c) runs exactly once: on srv's loop, when every member answered or
 * PI_CENSUS_WAIT seconds passed (a member whose loop has ended or is slow: what arrived),
 * possibly before this returns (one thread); or, when srv's loop ended before that (a
 * shutdown), with c NULL from pi_census_end.  c is valid during the call only.  0, or -1 when
 * memory is short (done never runs). */
int pi_census_start(wsk_server *srv, const pi_members *m, const char *topic, size_t tlen,
                    void (*done)(void *arg, pi_census *c), void *arg);
/* After wsk_group_run returned (no loop runs), before the loops are freed: the censuses still
 * on *live (their asking loop ended first) end: done(arg, NULL) for each, and what is left of
 * them is freed. */
void pi_census_end(pi_census **live);
/* The census's topic and subscribers as jp_presence_reply builds them, sorted by connection
 * id, with the threads that answered when there are several; st for the topic's figures.
 * NULL when memory is short. */
char *pi_census_reply(pi_census *c, const ps_store *st, const char *id, int http, size_t *len);
/* The topic's retained flag (and, with history set, its history length) as another store keeps
 * them (Redis), for pi_census_reply instead of st's. */
void pi_census_kept(pi_census *c, int retained, int with_history, uint64_t history);

#endif
