/* NATS JetStream history for the NATS engine (bridge_nats_js.c): append and range of bridge.h
 * when the server has JetStream, node-local history (the engine keeps none) when it has not.
 *
 * bridge_nats.c makes one per link and calls it from the loop thread, except
 * wsk_natsjs_offset, which runs on NATS' delivery threads. */
#ifndef WSK_BRIDGE_NATS_JS_H
#define WSK_BRIDGE_NATS_JS_H

#include "bridge.h"
#include "nats_libev.h"

typedef struct wsk_natsjs wsk_natsjs;

/* Its state for link; results come back through x's wake-up (the engine's wake calls
 * wsk_natsjs_wake).  on_msg(closure) is the engine's handler of channel messages: the answers
 * to reads of retained messages come through it too, to wsk_natsjs_deliver, in the channels'
 * order.  memory: the streams it makes are kept in memory (else in files).  NULL when memory
 * is short. */
wsk_natsjs *wsk_natsjs_new(wsk_bridge_link *link, wsk_natsev *x, natsMsgHandler on_msg,
                           void *closure, int memory);
/* The connection nc is up: asks the server whether it has JetStream (logged once when not).
 * Streams known before are checked again: a server restarted may have lost them. */
void wsk_natsjs_up(wsk_natsjs *j, natsConnection *nc);
/* The connection was lost: appends and ranges fail until it is up again. */
void wsk_natsjs_down(wsk_natsjs *j);
/* On the loop thread after each wake-up: hands back what the worker finished. */
void wsk_natsjs_wake(wsk_natsjs *j);
/* After the connection is closed: stops the worker, gives back every range not answered
 * (ok 0) and frees j. */
void wsk_natsjs_free(wsk_natsjs *j);

/* bridge.h's history, for the engine table. */
int wsk_natsjs_history(wsk_natsjs *j);
int wsk_natsjs_append(wsk_natsjs *j, const char *chan, size_t n, size_t plen, const void *msg,
                      size_t len, size_t depth, double ttl, wsk_bridge_count *count);
int wsk_natsjs_range(wsk_natsjs *j, const char *chan, size_t n, uint64_t after, size_t max,
                     wsk_bridge_range *r);
/* The subject of a channel's retained publishes: this, then the channel.  bridge_nats.c
 * subscribes a node to it next to each channel (or pattern) it subscribes to. */
#define WSK_NATSJS_RSUBJ "$WSKR."
/* bridge.h's retained messages.  retain, for a retained publish without history: envelope
 * env[0..len) (copied; an empty message clears) leaves in ONE JetStream publish on channel
 * chan[0..n)'s retained subject, after what the loop sent before it: the stream of retained
 * messages keeps it and every node subscribed there gets it, in the one step; count (or NULL)
 * is given back with JetStream's acknowledgement, and a refusal is counted (wsk_bridge_unkept)
 * and logged.  0; -1 when it cannot go (down, or the queue of acknowledgements awaited is full);
 * 1 when JetStream is not there (nothing sent: the caller publishes it plainly, kept nowhere).
 * With history, append keeps it once stored at its offset.  retained and kept as in bridge.h. */
int wsk_natsjs_retain(wsk_natsjs *j, const char *chan, size_t n, const void *env, size_t len,
                      wsk_bridge_count *count);
int wsk_natsjs_retained(wsk_natsjs *j, const char *chan, size_t n, const void *mark, size_t mlen,
                        uint64_t id);
int wsk_natsjs_kept(wsk_natsjs *j, const char *const *chans, const size_t *lens, size_t k,
                    wsk_bridge_kept *q);

/* On the loop thread, for every message from NATS on subject chan[0..n): hands it to the
 * bridge (wsk_bridge_message), a message republished by a stream in the stream's order, one on
 * a retained subject on its channel. */
void wsk_natsjs_deliver(wsk_natsjs *j, const char *chan, size_t n, const char *env, size_t len);
/* The node subscribed to channel chan[0..n) (after a time without): delivery's position there
 * starts again. */
void wsk_natsjs_listen(wsk_natsjs *j, const char *chan, size_t n);
/* On a delivery thread: when msg is a stored message the server republished (it carries its
 * stream sequence in the Nats-Sequence header) and env[0..len), its copy, an envelope with
 * WSK_BRIDGE_HISTORY, writes the sequence into the envelope's offset (bytes 18-37). */
void wsk_natsjs_offset(natsMsg *msg, char *env, size_t len);

#endif
