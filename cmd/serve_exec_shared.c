/* wsserve --exec-shared: one program for every connection (serve.h, wsserve(1)).
 *
 *   program stdout "line"            -> every client (one wsk_server_publish: framed once)
 *   program stdout "TOPIC\tline"     -> with --topics, the clients connected to /TOPIC
 *   program stdout "@ID\tline"       -> client ID only
 *   client ID sends "m"              -> program stdin "ID\tm\n"
 *   client ID joins, leaves          -> with --join-leave, "+ID\tADDRESS\tPATH\n", "-ID\tCODE\n"
 *
 * The program is restarted when it exits, after a backoff that doubles (100 ms to 10 s) while
 * it keeps dying within 10 s of its start; every client is sent --restart-message.  Its stdin
 * is a bounded buffer: past IN_MAX waiting bytes the client that sent is paused (and listed),
 * and the paused clients resume once the program has read half of it.  Broadcast has no stdout
 * backpressure (one slow client must not stall the others): each client's queue is bounded by
 * --backpressure-limit, as for every publish. */
#include "serve.h"
#include "serve_child.h"

#include <errno.h>
#include <ev.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define IN_MAX      (64 * 1024)
#define NBUCKETS    1024
#define NOTICE_ROOM (256 * 1024) /* --join-leave lines past the cap of messages */
#define ALL         "" /* the topic every client is on without --topics, and on / with it */

struct shared_config {
    const char *command;         /* --exec-shared COMMAND, through /bin/sh -c */
    const char *restart_message; /* --restart-message TEXT */
    int topics;                  /* --topics */
    int join_leave;              /* --join-leave */
    struct child_env env;        /* --passenv (NULL: all of wsserve's), --env */
};

/* A client: its id, for "@ID" replies and the "ID\t" prefix. */
struct sclient {
    unsigned long id;
    wsk_ws *ws;
    struct sclient *next;          /* in its bucket */
    struct sclient *pprev, *pnext; /* in s->paused, while paused is set */
    int paused;
    char addr[64]; /* for --join-leave */
    size_t plen;
    char path[]; /* its request's path; --topics: the topic is what follows the "/" */
};

struct shared {
    const struct shared_config *cfg;
    struct serve *sv;
    struct ev_loop *ev;
    pid_t pid; /* 0 while not running */
    int in_fd, out_fd, err_fd;
    struct child_watch exit_w; /* while it runs (serve_reap.c) */
    struct reaper reaper;
    ev_io in_w, out_w, err_w;
    ev_timer restart_t;
    double backoff, started;
    struct pipebuf in;
    struct lines out, errout;
    unsigned long next_id;
    unsigned long dropped; /* messages refused because the program's stdin was full */
    struct sclient *buckets[NBUCKETS];
    struct sclient *pending; /* made by the upgrade handler, taken by the open handler */
    struct sclient *paused;  /* the clients paused for the program's stdin */
    char rbuf[64 * 1024];
};

/* --topics: the topic of c's path ("" for "/"); without --topics always "". */
static size_t topic_of(const struct shared *s, const struct sclient *c, const char **topic)
{
    size_t tlen = s->cfg->topics && c->plen > 1 ? c->plen - 1 : 0;
    *topic = tlen ? c->path + 1 : ALL;
    return tlen;
}

static struct shared *shared_of(wsk_server *srv)
{
    return serve_of(srv)->state;
}

static struct sclient **bucket(struct shared *s, unsigned long id)
{
    return &s->buckets[id % NBUCKETS];
}

/* Every client, oldest bucket entry first.  fn may close (and so free) the client it is given,
 * as a send does under --close-on-backpressure; it adds and removes no other. */
static void each_client(struct shared *s, void (*fn)(struct shared *s, struct sclient *c))
{
    for (size_t i = 0; i < NBUCKETS; i++)
        for (struct sclient *c = s->buckets[i], *next; c; c = next) {
            next = c->next;
            fn(s, c);
        }
}

/* c no longer waits for the program's stdin (resumed, or gone). */
static void unlist_paused(struct shared *s, struct sclient *c)
{
    if (!c->paused) return;
    if (c->pprev)
        c->pprev->pnext = c->pnext;
    else
        s->paused = c->pnext;
    if (c->pnext) c->pnext->pprev = c->pprev;
    c->paused = 0;
}

static void pause_client(struct shared *s, struct sclient *c)
{
    if (c->paused) return;
    wsk_ws_pause(c->ws);
    c->paused = 1;
    c->pprev = NULL;
    c->pnext = s->paused;
    if (s->paused) s->paused->pprev = c;
    s->paused = c;
}

/* wsk_ws_resume only re-arms the socket: no handler runs from here. */
static void resume_paused(struct shared *s)
{
    while (s->paused) {
        struct sclient *c = s->paused;
        unlist_paused(s, c);
        wsk_ws_resume(c->ws);
    }
}

static void tell_one(struct shared *s, struct sclient *c)
{
    const char *m = s->cfg->restart_message;
    wsk_send(c->ws, m, strlen(m), WSK_OP_TEXT, 1);
}

/* ----- the program's output ------------------------------------------------------------------- */

/* lines_emit: "@ID\tm" to one client, "TOPIC\tm" (--topics) to a topic, else to everyone. */
static int out_line(void *arg, const char *p, size_t n)
{
    struct shared *s = arg;
    const char *tab = memchr(p, '\t', n);
    if (n > 1 && p[0] == '@' && tab) {
        char *end;
        unsigned long id = strtoul(p + 1, &end, 10);
        if (end != tab) return 1;
        for (struct sclient *c = *bucket(s, id); c; c = c->next)
            if (c->id == id) {
                size_t k = n - (size_t)(tab + 1 - p);
                wsk_send(c->ws, tab + 1, k,
                         wsk_utf8_valid(tab + 1, k) ? WSK_OP_TEXT : WSK_OP_BINARY, 1);
                break;
            }
        return 1;
    }
    const char *topic = ALL;
    size_t tlen = 0;
    if (s->cfg->topics && tab) {
        topic = p;
        tlen = (size_t)(tab - p);
        n -= tlen + 1;
        p = tab + 1;
    }
    wsk_server_publish(s->sv->srv, topic, tlen, p, n,
                       wsk_utf8_valid(p, n) ? WSK_OP_TEXT : WSK_OP_BINARY, 1);
    return 1;
}

static void on_out(struct ev_loop *ev, ev_io *w, int revents)
{
    struct shared *s = w->data;
    (void)ev;
    (void)revents;
    child_read_lines(s->ev, w, &s->out_fd, s->rbuf, sizeof s->rbuf, &s->out, out_line, s);
}

static int err_line(void *arg, const char *p, size_t n)
{
    struct shared *s = arg;
    serve_log(s->sv, "program: %.*s", (int)(n > 900 ? 900 : n), p);
    return 1;
}

static void on_err(struct ev_loop *ev, ev_io *w, int revents)
{
    struct shared *s = w->data;
    (void)ev;
    (void)revents;
    child_read_lines(s->ev, w, &s->err_fd, s->rbuf, sizeof s->rbuf, &s->errout, err_line, s);
}

/* ----- the program's input -------------------------------------------------------------------- */

static void in_write(struct shared *s)
{
    int r = s->in_fd < 0 ? -1 : pipebuf_write(&s->in, s->in_fd);
    if (r < 0) {
        child_stop_io(s->ev, &s->in_w, &s->in_fd);
        pipebuf_free(&s->in);
    } else if (r) {
        ev_io_start(s->ev, &s->in_w);
    } else {
        ev_io_stop(s->ev, &s->in_w);
    }
    if (pipebuf_pending(&s->in) < IN_MAX / 2) resume_paused(s);
}

/* --join-leave: one line for the program that is no client's message.  Not held to the cap of
 * messages (the program would lose track of who is there), only to the buffer's own. */
static void notice(struct shared *s, const char *line, size_t n)
{
    if (!s->cfg->join_leave || s->in_fd < 0) return;
    if (pipebuf_append(&s->in, NULL, 0, line, n, 1) == 0) in_write(s);
}

static void on_in(struct ev_loop *ev, ev_io *w, int revents)
{
    (void)ev;
    (void)revents;
    in_write(w->data);
}

static void shared_message(wsk_ws *ws, const void *data, size_t len, wsk_opcode op)
{
    struct shared *s = shared_of(wsk_ws_server(ws));
    struct sclient *c = wsk_ws_data(ws);
    char prefix[32];
    (void)op;
    /* No program (restarting), or a closing socket read for its close frame: dropped. */
    if (!c || s->in_fd < 0) return;
    /* Other clients kept sending while the program read nothing: past 4 * IN_MAX a message is
     * dropped, and the log says so (at 1, 2, 4, 8, ... drops, so a flood cannot flood it). */
    if (pipebuf_pending(&s->in) >= 4 * IN_MAX) {
        unsigned long n = ++s->dropped;
        if (!(n & (n - 1)))
            serve_log(s->sv, "the program is not reading its stdin: %lu message(s) dropped", n);
        return;
    }
    int n = snprintf(prefix, sizeof prefix, "%lu\t", c->id);
    if (pipebuf_append(&s->in, prefix, (size_t)n, data, len, 1) < 0) return;
    in_write(s);
    if (pipebuf_pending(&s->in) >= IN_MAX) pause_client(s, c);
}

/* ----- the program's life --------------------------------------------------------------------- */

static void start(struct shared *s);

static void on_restart(struct ev_loop *ev, ev_timer *w, int revents)
{
    (void)ev;
    (void)revents;
    start(w->data);
}

/* child_exited: the program is gone; it is restarted after the backoff. */
static void on_exit_(struct child_watch *w, int st, int err)
{
    struct shared *s = (struct shared *)((char *)w - offsetof(struct shared, exit_w));
    struct ev_loop *ev = s->ev;
    (void)err;
    if (st < 0) st = 255 << 8;
    s->pid = 0;
    child_stop_io(s->ev, &s->in_w, &s->in_fd);
    pipebuf_free(&s->in);
    resume_paused(s);
    if (WIFSIGNALED(st))
        serve_log(s->sv, "program killed by signal %d; restarting", WTERMSIG(st));
    else
        serve_log(s->sv, "program exited with status %d; restarting", WEXITSTATUS(st));
    each_client(s, tell_one);
    /* A program that keeps dying at once is restarted less and less often. */
    s->backoff = ev_now(ev) - s->started < 10 ? (s->backoff ? s->backoff * 2 : 0.1) : 0.1;
    if (s->backoff > 10) s->backoff = 10;
    ev_timer_set(&s->restart_t, s->backoff, 0);
    ev_timer_start(ev, &s->restart_t);
}

/* --passenv's variables (without it all of wsserve's), then --env's. */
static char **shared_env(const struct shared_config *cfg)
{
    extern char **environ;
    size_t n = 0;
    for (char **e = environ; !cfg->env.passenv && *e; e++) n++;
    struct envb e;
    if (child_envp_begin(&e, &cfg->env, n) < 0) return NULL;
    for (size_t i = 0; i < n; i++) {
        const char *eq = strchr(environ[i], '=');
        char name[256];
        if (!eq || eq - environ[i] >= (long)sizeof name) continue;
        snprintf(name, sizeof name, "%.*s", (int)(eq - environ[i]), environ[i]);
        env_add(&e, name, "%s", eq + 1);
    }
    return child_envp_end(&e, &cfg->env);
}

static void start(struct shared *s)
{
    char *sh[] = {"sh", "-c", (char *)s->cfg->command, NULL};
    int fds[3];
    s->started = ev_now(s->ev);
    /* The last run's pipes are closed; output it left unread is dropped with them. */
    child_stop_io(s->ev, &s->out_w, &s->out_fd);
    child_stop_io(s->ev, &s->err_w, &s->err_fd);
    lines_free(&s->out);
    lines_free(&s->errout);
    char **envp = shared_env(s->cfg);
    int rc = envp ? child_spawn("/bin/sh", sh, envp, &s->pid, fds) : ENOMEM;
    env_free(envp);
    int pidfd = -1;
    if (!rc && s->reaper.pidfd &&
        (pidfd = child_pidfd(s->pid)) < 0) { /* EMFILE: no way to watch it */
        rc = errno;
        child_kill_reap(s->pid);
        for (int i = 0; i < 3; i++) close(fds[i]);
    }
    if (rc) {
        serve_log(s->sv, "cannot start the program: %s", strerror(rc));
        s->pid = 0;
        s->backoff = 10;
        ev_timer_set(&s->restart_t, s->backoff, 0);
        ev_timer_start(s->ev, &s->restart_t);
        return;
    }
    s->in_fd = fds[0];
    s->out_fd = fds[1];
    s->err_fd = fds[2];
    ev_io_init(&s->in_w, on_in, s->in_fd, EV_WRITE);
    ev_io_init(&s->out_w, on_out, s->out_fd, EV_READ);
    ev_io_init(&s->err_w, on_err, s->err_fd, EV_READ);
    s->in_w.data = s->out_w.data = s->err_w.data = s;
    ev_io_start(s->ev, &s->out_w);
    ev_io_start(s->ev, &s->err_w);
    if (s->backoff) serve_log(s->sv, "program restarted, pid %ld", (long)s->pid);
    reaper_watch(&s->reaper, &s->exit_w, s->pid, pidfd, on_exit_);
}

/* ----- clients -------------------------------------------------------------------------------- */

static int shared_upgrade(wsk_server *srv, const wsk_request *req, wsk_response *res)
{
    struct shared *s = shared_of(srv);
    size_t plen;
    const char *path = wsk_request_path(req, &plen);
    free(s->pending); /* the last accepted upgrade never opened */
    /* --topics: /TOPIC subscribes to TOPIC, / to the lines without a topic. */
    if (s->cfg->topics && plen > WSK_TOPIC_MAX + 1) return 414;
    if (plen > 4096) return 414;
    struct sclient *c = calloc(1, sizeof *c + plen);
    s->pending = c;
    if (!c) return 503;
    memcpy(c->path, path, plen);
    c->plen = plen;
    wsk_request_remote_address(req, c->addr, sizeof c->addr);
    wsk_response_set_data(res, c);
    return 0;
}

static void shared_open(wsk_ws *ws)
{
    struct shared *s = shared_of(wsk_ws_server(ws));
    struct sclient *c = wsk_ws_data(ws);
    if (!c || c != s->pending) return;
    s->pending = NULL;
    c->id = ++s->next_id;
    c->ws = ws;
    c->next = *bucket(s, c->id);
    *bucket(s, c->id) = c;
    const char *topic;
    size_t tlen = topic_of(s, c, &topic);
    wsk_subscribe(ws, topic, tlen);
    char line[4200];
    int n = snprintf(line, sizeof line, "+%lu\t%s\t%.*s", c->id, c->addr, (int)c->plen, c->path);
    notice(s, line, (size_t)n);
}

static void shared_close(wsk_ws *ws, unsigned code, const char *reason, size_t len)
{
    struct shared *s = shared_of(wsk_ws_server(ws));
    struct sclient *c = wsk_ws_data(ws);
    (void)reason;
    (void)len;
    if (!c) return;
    unlist_paused(s, c);
    char line[64];
    int n = snprintf(line, sizeof line, "-%lu\t%u", c->id, code);
    notice(s, line, (size_t)n);
    for (struct sclient **p = bucket(s, c->id); *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    free(c);
}

/* ----- the mode ------------------------------------------------------------------------------- */

static int shared_setup(struct serve *sv, wsk_server_opts *so, wsk_handlers *h)
{
    const struct shared_config *cfg = sv->config;
    struct shared *s = calloc(1, sizeof *s);
    if (!s) return -1;
    s->cfg = cfg;
    s->sv = sv;
    s->ev = wsk_loop_ev(sv->loop);
    s->in_fd = s->out_fd = s->err_fd = -1;
    const char *why = reaper_init(&s->reaper, s->ev);
    if (why && sv->verbose) serve_log(sv, "the program is reaped by polling (%s)", why);
    /* The cap of messages, the largest one with its prefix, and room for --join-leave's lines
     * (kept even when messages are dropped). */
    s->in.max = 4 * IN_MAX + so->max_payload + 32 + NOTICE_ROOM;
    ev_init(&s->restart_t, on_restart);
    s->restart_t.data = s;
    sv->state = s;
    h->upgrade = shared_upgrade;
    h->open = shared_open;
    h->message = shared_message;
    h->close = shared_close;
    /* The program starts with the loop: the server exists by then (setup runs before). */
    ev_timer_set(&s->restart_t, 0, 0);
    ev_timer_start(s->ev, &s->restart_t);
    return 0;
}

static void shared_teardown(struct serve *sv)
{
    struct shared *s = sv->state;
    if (!s) return;
    ev_timer_stop(s->ev, &s->restart_t);
    if (s->pid > 0) {
        reaper_unwatch(&s->exit_w);
        kill(-s->pid, SIGTERM);
        child_reap(s->pid, child_now() + 1.0);
    }
    child_stop_io(s->ev, &s->in_w, &s->in_fd);
    child_stop_io(s->ev, &s->out_w, &s->out_fd);
    child_stop_io(s->ev, &s->err_w, &s->err_fd);
    pipebuf_free(&s->in);
    lines_free(&s->out);
    lines_free(&s->errout);
    free(s->pending);
    free(s);
    sv->state = NULL;
}

static int shared_page(struct serve *sv, const wsk_request *req, wsk_response *res)
{
    if (serve_console(sv, req, res)) return 200;
    const struct shared_config *cfg = sv->config;
    char url[300], body[1024];
    snprintf(body, sizeof body,
             "wsserve %s: every WebSocket shares one program, %s.\n"
             "Connect with a WebSocket client, for example:\n"
             "  wscat -c %s/\n"
             "Its output lines reach every client; messages reach it as ID<TAB>message.\n",
             WSK_VERSION, cfg->command, serve_base_url(sv, req, 0, url, sizeof url));
    return serve_text(res, 200, body);
}

enum { OPT_RESTART_MSG = 256, OPT_TOPICS, OPT_JOIN_LEAVE, OPT_SHARED_PASSENV, OPT_SHARED_ENV };

static const cli_option shared_options[] = {
    {"restart-message", OPT_RESTART_MSG, "TEXT",
     "told to every client when the program died (\"program restarted\")"},
    {"topics", OPT_TOPICS, NULL, "TOPIC<TAB>line goes to the clients of /TOPIC"},
    {"join-leave", OPT_JOIN_LEAVE, NULL, "tell the program +ID<TAB>ADDRESS<TAB>PATH, -ID<TAB>CODE"},
    {"passenv", OPT_SHARED_PASSENV, "NAME,...", "only these variables passed on (default: all)"},
    {"env", OPT_SHARED_ENV, "NAME=VALUE", "set a variable for the program, repeatable"},
    {NULL, 0, NULL, NULL},
};

static void shared_config_init(void *config)
{
    struct shared_config *c = config;
    c->restart_message = "program restarted";
}

static int shared_option(void *config, const cli_option *opt, const char *arg)
{
    struct shared_config *c = config;
    switch (opt->key) {
    case OPT_RESTART_MSG:
        if (!wsk_utf8_valid(arg, strlen(arg))) return -1;
        c->restart_message = arg;
        return 0;
    case OPT_TOPICS: c->topics = 1; return 0;
    case OPT_JOIN_LEAVE: c->join_leave = 1; return 0;
    case OPT_SHARED_PASSENV: return child_env_passenv(&c->env, arg);
    case OPT_SHARED_ENV: return child_env_set(&c->env, arg);
    default: return -1;
    }
}

static int shared_operands(void *config, const char *arg, int argc, char **argv)
{
    struct shared_config *c = config;
    (void)argv;
    if (argc || !arg || !*arg) return -1;
    c->command = arg;
    return 0;
}

const serve_mode serve_exec_shared = {
    .name = "exec-shared",
    /* One program for every connection: its pipes live on one loop, and the connections of
     * other threads would need every line handed across (wsk_group_call). */
    .single_thread = 1,
    .arg = "COMMAND",
    .help = "one program for all: lines to every client, ID<TAB>message in",
    .options = shared_options,
    .config_size = sizeof(struct shared_config),
    .config_init = shared_config_init,
    .option = shared_option,
    .operands = shared_operands,
    .setup = shared_setup,
    .request = shared_page,
    .teardown = shared_teardown,
};
