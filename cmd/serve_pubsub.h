/* wsserve --chat and --pubsub (wsserve(1)): the options, handlers and state of both modes, for
 * cmd/wsserve.c.
 *
 *   --chat     Bun's chat-room benchmark server (bench/websocket-server in Bun's repository):
 *              every connection joins one room named by its ?name=; "ready" once --clients are
 *              in; each message m is published to the room as "NAME: m", the sender included.
 *   --pubsub   a topic broker: a WebSocket to /TOPIC subscribes to TOPIC and publishes what it
 *              sends there; a WebSocket to / speaks the JSON control protocol (jsonproto.h);
 *              POST /publish/TOPIC publishes its body.
 *
 * The state of the mode lives in serve_pubsub.c: one server per process. */
#ifndef WSK_SERVE_PUBSUB_H
#define WSK_SERVE_PUBSUB_H

#include "wskit.h"

#include <getopt.h>

struct chat_opts {
    unsigned clients;        /* --clients N: "ready" once this many are connected; 32 */
    unsigned ready_delay_ms; /* pause before "ready", as Bun's chat server makes; 100 */
    int verbose;             /* log joins, "ready" and leaves on stderr */
};

#define SERVE_MAX_ORIGINS 32

struct pubsub_opts {
    int publish_to_self;                    /* --publish-to-self */
    const char *token;                      /* --token SECRET: publishing needs it */
    const char *token_file;                 /* --token-file FILE: SECRET is its first line */
    int private_topics;                     /* --private: subscribing needs it too */
    const char *origins[SERVE_MAX_ORIGINS]; /* --origin LIST, comma-separated, repeatable */
    size_t norigins;
    unsigned max_subscriptions; /* --max-subscriptions N: topics per connection; 100 */
    int verbose;                /* log refusals on stderr */
};

void serve_chat_opts_init(struct chat_opts *co);
void serve_pubsub_opts_init(struct pubsub_opts *po);

/* The long options of both modes for getopt_long: SERVE_PUBSUB_NOPTS entries (no terminating
 * zero entry), with codes from SERVE_PUBSUB_OPT_BASE up; and the lines for --help. */
#define SERVE_PUBSUB_OPT_BASE 0x5000
#define SERVE_PUBSUB_NOPTS    7
extern const struct option serve_pubsub_longopts[SERVE_PUBSUB_NOPTS];
extern const char serve_pubsub_usage[];
/* Handles option `code` and its argument: 1 when it is one of these (stored in *co or *po), 0
 * when it is not, -1 for a bad value (said on stderr). */
int serve_pubsub_option(int code, const char *arg, struct chat_opts *co, struct pubsub_opts *po);

/* Prepare a mode: set what it needs in *so (publish_to_self) and its handlers in *h (upgrade,
 * open, message, close, request).  Handlers already in h->open, h->close and h->error (logging)
 * keep running, after the mode's own.  The options are copied.  0, or -1 with the reason on
 * stderr (an unreadable token file, ...).  Call before wsk_server_new. */
int serve_chat_setup(wsk_server_opts *so, wsk_handlers *h, const struct chat_opts *co);
int serve_pubsub_setup(wsk_server_opts *so, wsk_handlers *h, const struct pubsub_opts *po);
/* Releases what a setup holds: after wsk_server_free, before wsk_loop_free. */
void serve_pubsub_cleanup(void);

#endif
