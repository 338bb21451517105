/* wsserve's modes (wsserve(1)).  A mode is one file that fills one serve_mode and one line in
 * the table of cmd/wsserve.c:
 *
 *   serve_echo.c     --echo     every message back to its sender
 *   serve_pubsub.c   --chat     Bun's chat-room benchmark server
 *                    --pubsub   a topic broker
 *   serve_exec.c     --exec     a program per connection, stdin/stdout as messages
 *                    --dir      the same, the program picked by the path in a directory
 *                               (serve_static.c: --static DIR beside them)
 *   serve_exec_shared.c  --exec-shared  one program for every connection
 *   serve_child.c    what the last two share: pipes, lines, a bounded stdin buffer
 *                    (serve_spawn.c: programs started off the loop; serve_reap.c: reaped)
 *
 * wsserve.c parses the options once (the common ones and each mode's own table), then runs one
 * server per struct serve.  Everything a server's handlers need is reached from the server
 * (wsk_server_user) or the socket (wsk_ws_server), never from globals, so that one process can
 * run several servers, one per thread (--threads N: a wsk_group of N loops whose servers share
 * their topics).  A mode's state is per server where it can be; what must span the threads to
 * behave as one server (the chat room's count, the broker's store) is made once by the first
 * server's setup and reached by the others through all[0], under a lock or in atomics. */
#ifndef WSK_SERVE_H
#define WSK_SERVE_H

#include "cli.h"
#include "wskit.h"

struct serve;

typedef struct serve_mode {
    const char *name; /* --NAME selects the mode */
    const char *arg;  /* --NAME's argument in --help ("PROGRAM"), NULL: a bare flag */
    const char *help; /* its line in --help */
    /* A mode that runs with another's options and their values (--dir with --exec's): NULL
     * for a mode of its own. */
    const struct serve_mode *shares;
    const cli_option *options; /* the mode's own options (a table ending with a NULL name), or
                                * NULL; any of them given with another mode is a usage error */
    size_t config_size;        /* the values of those options: a struct of this size ... */
    void (*config_init)(void *config); /* ... filled with the defaults by this (NULL: zeros) */
    /* Stores option `opt` (an entry of `options`) with its argument: 0, or -1 for a bad value
     * (wsserve.c says so). */
    int (*option)(void *config, const cli_option *opt, const char *arg);
    /* The mode flag's argument (NULL for a bare flag) and the operands left after the options
     * (argv[0..argc), what follows "--"; argc may be 0): 0, or -1 with the reason on stderr.
     * NULL: the mode takes no argument and no operand. */
    int (*operands)(void *config, const char *arg, int argc, char **argv);
    /* Prepares one server: creates sv->state from sv->config (which outlives the server), sets
     * what the mode needs in *so and its handlers in *h.  0, or -1 with the reason on stderr (an
     * unreadable token file, two options that exclude each other, ...).  With --threads it runs
     * for all[0] first, then for each later server, on the main thread before any loop runs. */
    int (*setup)(struct serve *sv, wsk_server_opts *so, wsk_handlers *h);
    /* A plain HTTP request: fills `res` and returns its status.  Every mode has one: GET / at
     * least says what the server is and how to connect. */
    int (*request)(struct serve *sv, const wsk_request *req, wsk_response *res);
    /* Releases sv->state: after wsk_server_free, before wsk_loop_free; the last server first,
     * all[0] last (the state the others share goes with it).  NULL: nothing to do. */
    void (*teardown)(struct serve *sv);
    /* 1 when a plain request shows the mode's token (--metrics-path is behind it), else 0.
     * NULL: the mode has no token. */
    int (*authorized)(struct serve *sv, const wsk_request *req);
    /* Once the bridge is made (or not: no --bridge), for all[0] only, on the main thread before
     * any loop runs and before the servers listen: what the mode must learn before it serves.
     * It may run loop 0 a while (the main thread runs it next), never for long.  NULL: nothing. */
    void (*before_listen)(struct serve *sv);
} serve_mode;

extern const serve_mode serve_echo, serve_chat, serve_pubsub, serve_exec, serve_exec_dir,
    serve_exec_shared;

/* One server and its mode.  Owned by main; with --threads, one per loop, each used only on its
 * loop's thread once the group runs. */
struct serve {
    const serve_mode *mode;
    const void *config;  /* the mode's options, shared by every server of the mode */
    void *state;         /* the mode's own, from setup to teardown */
    wsk_loop *loop;      /* the loop the server runs on: set before setup */
    wsk_server *srv;     /* set once the server exists: after setup */
    wsk_handlers mode_h; /* the mode's handlers, which wsserve.c's logging ones wrap */
    int tls;             /* serving wss://: the pages say wss:// and https:// */
    int verbose;         /* -v: an access-log line per request and upgrade, opens, closes */
    int stamps;          /* prefix log lines with an ISO-8601 time (stderr is no terminal) */
    int exit_code;       /* 2 when data had to be dropped at shutdown */
    int stopping;        /* all[0]'s: a signal came before listening (a start-up wait ends) */
    int no_console;      /* --no-console: browsers get the text page too */

    /* --metrics-path: the metrics at this path of the main port (NULL: not there) */
    const char *metrics_path;

    /* --threads: every server of the process is all[0..threads), this one all[thread], each on
     * loop `thread` of `group` (NULL with one thread: threads is 1, all is this one). */
    unsigned thread, threads;
    struct serve *all;
    wsk_group *group;
    struct stats_share *stats_share; /* serve_metrics.c's, all[0]'s: serve_stats_start */
    int bridged;                     /* --bridge: on all[0]'s server, for the whole process */
    /* The first --listen port, set before the loops run: with --accept one only all[0] listens,
     * and wsk_server_port of another thread's server is 0. */
    unsigned port;
};

/* The server's struct serve, from a handler. */
static inline struct serve *serve_of(wsk_server *srv)
{
    return wsk_server_user(srv);
}

/* "wsserve: " and the formatted line on stderr, after the time when sv->stamps: one write, so
 * that the lines of several threads never interleave. */
void serve_log(const struct serve *sv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The base URL a client of this request reaches the server at: "ws://HOST" (the Host header
 * the client sent, which has the port, or the listening address without one), "wss://HOST"
 * over TLS; "http"/"https" when `http`.  Returns buf. */
const char *serve_base_url(const struct serve *sv, const wsk_request *req, int http, char *buf,
                           size_t cap);

/* A text/plain body (NUL-terminated, as snprintf leaves it even when cut short); returns
 * status, for a request handler to return. */
int serve_text(wsk_response *res, int status, const char *body);

/* serve_console.c: a browser's GET / (Accept: text/html) gets the console page, unless
 * --no-console: 200 with the page in res, or 0 (res untouched) for any other request.  Each
 * mode's page calls it first. */
int serve_console(struct serve *sv, const wsk_request *req, wsk_response *res);

/* serve_metrics.c: the metrics of the whole process in *st: this server's, plus with --threads
 * the other threads' as they copied them last (every STATS_PERIOD, once serve_stats_start ran:
 * a loop's counters are read on its own thread only). */
void serve_stats(struct serve *sv, wsk_stats *st);
/* With --threads, on each server from all[0] on, before the group runs: each thread copies
 * its counters for the others every STATS_PERIOD.  0, or -1 when memory is short. */
int serve_stats_start(struct serve *sv);
/* Before sv's teardown, after the loops ended; all[0]'s last (it frees what they share). */
void serve_stats_stop(struct serve *sv);
#define STATS_PERIOD 0.25 /* seconds */
/* serve_metrics.c: the metrics at sv->metrics_path: the status (200; 401 without the mode's
 * token), or 0 (res untouched) for another path or without --metrics-path. */
int serve_metrics_request(struct serve *sv, const wsk_request *req, wsk_response *res);
/* A server on sv's loop that answers GET /metrics with sv's metrics on [HOST:]PORT (HOST
 * defaults to 127.0.0.1), 404 elsewhere, and logs its URL unless quiet; the caller frees it
 * (wsk_server_free) before sv's.  NULL with the reason on stderr. */
wsk_server *serve_metrics_listen(struct serve *sv, const char *hostport, int quiet);

#endif
