/* Topic patterns, NATS style, in a token trie (pubsub.c: wildcard subscriptions).
 *
 * A topic is a byte string split into tokens at '.' (empty tokens are tokens too).  In a
 * pattern, a token "*" matches exactly one token and a last token ">" matches one or more
 * trailing tokens; every other token matches itself byte for byte.  As MQTT does for "$SYS", a
 * pattern that starts with a wildcard does not match a topic whose first byte is '$': such
 * topics are a namespace of their own (wsserve's broker keeps its JSON subscribers there).
 *
 * The trie has one node per distinct token prefix of its patterns and one hash table for all
 * its edges, keyed by (parent, token).  A match follows, at each node, the topic's token, "*"
 * and ">": its cost grows with the topic's tokens and the patterns that match, not with the
 * number of patterns. */
#ifndef WSK_TOPIC_TRIE_H
#define WSK_TOPIC_TRIE_H

#include <stddef.h>
#include <stdint.h>

#include "wskit.h" /* WSK_PATTERN_TOKENS: the match recurses once per token */

typedef struct wsk_trie wsk_trie;

/* An empty trie whose edge hash is keyed with (k0, k1); NULL when memory is short. */
wsk_trie *wsk_trie_new(uint64_t k0, uint64_t k1);
/* Frees the trie (not the values). */
void wsk_trie_free(wsk_trie *t);
/* Adds pattern p[0..n), not already in the trie, with its value v (not NULL).  0,
 * WSK_ERR_INVAL (more than WSK_PATTERN_TOKENS tokens) or WSK_ERR_NOMEM (nothing added). */
int wsk_trie_add(wsk_trie *t, const char *p, size_t n, void *v);
/* Removes pattern p[0..n), which is in the trie. */
void wsk_trie_remove(wsk_trie *t, const char *p, size_t n);
/* Patterns in the trie. */
size_t wsk_trie_size(const wsk_trie *t);
/* Calls fn(arg, v) once for the value of every pattern that matches topic[0..n), in no
 * particular order, until fn returns nonzero.  Returns how many calls were made.  fn must not
 * change the trie. */
size_t wsk_trie_match(const wsk_trie *t, const char *topic, size_t n, int (*fn)(void *arg, void *v),
                      void *arg);

#endif
