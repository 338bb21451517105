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
 * --backpressure-limit, as for every publish.
 *
 * With --threads N the program and its pipes live on loop 0 (all[0]'s struct prog); every loop
 * keeps its own clients.  Its lines reach the other loops through the group's publish (framed
 * once); an ID says its loop (ID % N).  Client messages and --join-leave lines cross to loop 0
 * through its mailbox (a list under a mutex and one wsk_group_call per batch); an "@ID" line
 * waits in the client loop's mailbox, taken by a call that leaves in loop 0's publish batch for
 * that loop (wsk_group_call_ordered), so a client sees the program's lines in the order
 * written.  How many bytes wait for the program is counted in atomics that every loop reads to
 * pause its senders; loop 0 resumes the paused clients of a loop with one call. */
#include "serve.h"
#include "serve_child.h"

#include <errno.h>
#include <ev.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
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

/* One line crossing loops: a client's message or --join-leave line for the program (to loop
 * 0), or an "@ID" reply (to the client's loop). */
enum { NOTE_MESSAGE, NOTE_NOTICE, NOTE_REPLY };
struct note {
    struct note *next;
    int kind;
    unsigned long id;
    size_t n;
    char data[];
};

/* The program, on loop 0: all[0]'s, used on loop 0's thread but for the atomics. */
struct prog {
    pid_t pid; /* 0 while not running */
    int in_fd, out_fd, err_fd;
    struct child_watch exit_w; /* while it runs (serve_reap.c) */
    struct reaper reaper;
    ev_io in_w, out_w, err_w;
    ev_timer restart_t;
    double backoff, started;
    struct pipebuf in;
    struct lines out, errout;
    atomic_size_t in_pending; /* pipebuf_pending(&in), for every loop */
    atomic_size_t posted;     /* bytes of messages in loop 0's mailbox */
    atomic_ulong dropped;     /* messages refused because the program's stdin was full */
    char rbuf[64 * 1024];
};

/* One loop's server: its clients, and its mailbox. */
struct shared {
    const struct shared_config *cfg;
    struct serve *sv;
    struct ev_loop *ev;
    struct prog *p; /* all[0]'s */
    unsigned long next_id;
    struct sclient *buckets[NBUCKETS];
    struct sclient *pending; /* made by the upgrade handler, taken by the open handler */
    struct sclient *paused;  /* the clients paused for the program's stdin */
    atomic_int has_paused;   /* set by this loop, taken by loop 0 when it resumes them */
    pthread_mutex_t mu;      /* the mailbox: notes posted by other loops */
    struct note *mail, **mail_tail;
    int woken; /* a call to take the mail is on its way */
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

/* Loop t's (loop 0's: the program's). */
static struct shared *loop_shared(const struct shared *s, unsigned t)
{
    return s->sv->all[t].state;
}

static struct sclient **bucket(struct shared *s, unsigned long id)
{
    return &s->buckets[(id / s->sv->threads) % NBUCKETS];
}

/* Every client of this loop, oldest bucket entry first.  fn may close (and so free) the client
 * it is given, as a send does under --close-on-backpressure; it adds and removes no other. */
static void each_client(struct shared *s, void (*fn)(struct shared *s, struct sclient *c))
{
    for (size_t i = 0; i < NBUCKETS; i++)
        for (struct sclient *c = s->buckets[i], *next; c; c = next) {
            next = c->next;
            fn(s, c);
        }
}

/* fn(loop t's shared, loop) on every loop: at once on loop 0 (the caller's), on the others
 * after the lines loop 0 published before (in its batch for that loop). */
static void each_loop(struct shared *s0, void (*fn)(void *arg, wsk_loop *loop))
{
    for (unsigned t = 1; t < s0->sv->threads; t++)
        wsk_group_call_ordered(s0->sv->loop, t, fn, loop_shared(s0, t));
    fn(s0, s0->sv->loop);
}

/* ----- pausing clients for the program's stdin ------------------------------------------------ */

/* Bytes waiting for the program: in its stdin buffer and on their way to it. */
static size_t backlog(const struct prog *p)
{
    return atomic_load(&p->in_pending) + atomic_load(&p->posted);
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

/* wsk_ws_resume only re-arms the socket: no handler runs from here. */
static void resume_paused(struct shared *s)
{
    while (s->paused) {
        struct sclient *c = s->paused;
        unlist_paused(s, c);
        wsk_ws_resume(c->ws);
    }
}

static void resume_call(void *arg, wsk_loop *loop)
{
    (void)loop;
    resume_paused(arg);
}

/* After c's message: past IN_MAX waiting bytes c is paused.  The flag is set before the second
 * look and loop 0 lowers the count before it takes the flag (resume_all): either loop 0 sees
 * the flag or this loop sees the lower count, so no client stays paused. */
static void maybe_pause(struct shared *s, struct sclient *c)
{
    if (c->paused || backlog(s->p) < IN_MAX) return;
    wsk_ws_pause(c->ws);
    c->paused = 1;
    c->pprev = NULL;
    c->pnext = s->paused;
    if (s->paused) s->paused->pprev = c;
    s->paused = c;
    atomic_store(&s->has_paused, 1);
    if (backlog(s->p) < IN_MAX / 2) resume_paused(s);
}

/* On loop 0: every loop's paused clients are read again. */
static void resume_all(struct shared *s0)
{
    resume_paused(s0);
    for (unsigned t = 1; t < s0->sv->threads; t++) {
        struct shared *s = loop_shared(s0, t);
        if (atomic_exchange(&s->has_paused, 0) &&
            wsk_group_call(s0->sv->group, t, resume_call, s) < 0)
            atomic_store(&s->has_paused, 1); /* out of memory: the next resume tries again */
    }
}

/* ----- the mailboxes -------------------------------------------------------------------------- */

static void take_mail(void *arg, wsk_loop *loop);

static struct note *note_new(int kind, unsigned long id, const char *data, size_t n)
{
    struct note *m = malloc(sizeof *m + n);
    if (!m) return NULL;
    m->next = NULL;
    m->kind = kind;
    m->id = id;
    m->n = n;
    memcpy(m->data, data, n);
    return m;
}

/* Appends m to d's mailbox: whether a call to take it must be made (none on its way; a reply
 * has a call of its own). */
static int mail_append(struct shared *d, struct note *m)
{
    pthread_mutex_lock(&d->mu);
    *d->mail_tail = m;
    d->mail_tail = &m->next;
    int wake = !d->woken;
    if (m->kind != NOTE_REPLY) d->woken = 1;
    pthread_mutex_unlock(&d->mu);
    return wake;
}

/* A client's message or --join-leave line for loop 0 (the program's), from this loop's
 * thread; one wake-up per batch. */
static void post(struct shared *s, unsigned to, int kind, unsigned long id, const char *data,
                 size_t n)
{
    struct shared *d = loop_shared(s, to);
    struct note *m = note_new(kind, id, data, n);
    if (!m) return; /* dropped, as a message past the cap */
    if (kind == NOTE_MESSAGE) atomic_fetch_add(&s->p->posted, n);
    int wake = mail_append(d, m);
    if (wake && wsk_group_call(s->sv->group, to, take_mail, d) < 0) {
        pthread_mutex_lock(&d->mu);
        d->woken = 0; /* out of memory: the next post wakes it */
        pthread_mutex_unlock(&d->mu);
    }
}

static void free_notes(struct note *m)
{
    for (struct note *next; m; m = next) {
        next = m->next;
        free(m);
    }
}

static void prog_message(struct shared *s0, unsigned long id, const char *data, size_t n);
static void prog_notice(struct shared *s0, const char *line, size_t n);
static void reply(struct shared *s, unsigned long id, const char *p, size_t n);

/* On a client's loop: the oldest "@ID" reply in its mailbox.  Loop 0 leaves one note per call
 * (post_reply), and the calls arrive in the order they were made, so each takes its own. */
static void take_reply(void *arg, wsk_loop *loop)
{
    struct shared *s = arg;
    (void)loop;
    pthread_mutex_lock(&s->mu);
    struct note *m = s->mail;
    if (m && !(s->mail = m->next)) s->mail_tail = &s->mail;
    pthread_mutex_unlock(&s->mu);
    if (!m) return;
    reply(s, m->id, m->data, m->n);
    free(m);
}

/* On loop 0: "@ID" for a client of loop t, as a call in loop 0's batch for t
 * (wsk_group_call_ordered), so it reaches the client between the lines published before and
 * after it.  A call dropped unrun (loop t ended) leaves its note to shared_teardown. */
static void post_reply(struct shared *s0, unsigned t, unsigned long id, const char *data, size_t n)
{
    struct shared *d = loop_shared(s0, t);
    struct note *m = note_new(NOTE_REPLY, id, data, n);
    if (!m) return; /* dropped, as a message past the cap */
    if (wsk_group_call_ordered(s0->sv->loop, t, take_reply, d) < 0) {
        free(m);
        return;
    }
    mail_append(d, m); /* before the call can run: it leaves at the end of this turn */
}

/* On loop 0: every note posted so far, in order. */
static void take_mail(void *arg, wsk_loop *loop)
{
    struct shared *s = arg;
    (void)loop;
    pthread_mutex_lock(&s->mu);
    struct note *m = s->mail;
    s->mail = NULL;
    s->mail_tail = &s->mail;
    s->woken = 0;
    pthread_mutex_unlock(&s->mu);
    for (struct note *it = m; it; it = it->next) {
        if (it->kind == NOTE_MESSAGE) {
            atomic_fetch_sub(&s->p->posted, it->n);
            prog_message(s, it->id, it->data, it->n);
        } else {
            prog_notice(s, it->data, it->n);
        }
    }
    free_notes(m);
}

/* ----- the program's output (loop 0) ---------------------------------------------------------- */

/* "@ID\tm" to client ID of this loop (dropped when there is none). */
static void reply(struct shared *s, unsigned long id, const char *p, size_t n)
{
    for (struct sclient *c = *bucket(s, id); c; c = c->next)
        if (c->id == id) {
            wsk_send(c->ws, p, n, wsk_utf8_valid(p, n) ? WSK_OP_TEXT : WSK_OP_BINARY, 1);
            return;
        }
}

/* lines_emit: "@ID\tm" to one client, "TOPIC\tm" (--topics) to a topic, else to everyone. */
static int out_line(void *arg, const char *p, size_t n)
{
    struct shared *s = arg;
    const char *tab = memchr(p, '\t', n);
    if (n > 1 && p[0] == '@' && tab) {
        char *end;
        unsigned long id = strtoul(p + 1, &end, 10);
        if (end != tab) return 1;
        const char *m = tab + 1;
        size_t k = n - (size_t)(m - p);
        unsigned t = (unsigned)(id % s->sv->threads);
        if (t)
            post_reply(s, t, id, m, k);
        else
            reply(s, id, m, k);
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

/* One read of the program's stdout: 0 at EOF, -1 when there is nothing now, else 1. */
static int read_out(struct shared *s0)
{
    struct prog *p = s0->p;
    return child_read_lines(s0->ev, &p->out_w, &p->out_fd, p->rbuf, sizeof p->rbuf, &p->out,
                            out_line, s0);
}

static void on_out(struct ev_loop *ev, ev_io *w, int revents)
{
    (void)ev;
    (void)revents;
    read_out(w->data);
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
    child_read_lines(s->ev, w, &s->p->err_fd, s->p->rbuf, sizeof s->p->rbuf, &s->p->errout,
                     err_line, s);
}

/* ----- the program's input (loop 0) ----------------------------------------------------------- */

static void in_write(struct shared *s0)
{
    struct prog *p = s0->p;
    int r = p->in_fd < 0 ? -1 : pipebuf_write(&p->in, p->in_fd);
    if (r < 0) {
        child_stop_io(s0->ev, &p->in_w, &p->in_fd);
        pipebuf_free(&p->in);
    } else if (r) {
        ev_io_start(s0->ev, &p->in_w);
    } else {
        ev_io_stop(s0->ev, &p->in_w);
    }
    atomic_store(&p->in_pending, pipebuf_pending(&p->in));
    if (pipebuf_pending(&p->in) < IN_MAX / 2) resume_all(s0);
}

/* --join-leave: one line for the program that is no client's message.  Not held to the cap of
 * messages (the program would lose track of who is there), only to the buffer's own. */
static void prog_notice(struct shared *s0, const char *line, size_t n)
{
    if (s0->p->in_fd < 0) return;
    if (pipebuf_append(&s0->p->in, NULL, 0, line, n, 1) == 0) in_write(s0);
}

/* Client id's message for the program's stdin. */
static void prog_message(struct shared *s0, unsigned long id, const char *data, size_t n)
{
    char prefix[32];
    if (s0->p->in_fd < 0) return; /* no program (restarting): dropped */
    int k = snprintf(prefix, sizeof prefix, "%lu\t", id);
    if (pipebuf_append(&s0->p->in, prefix, (size_t)k, data, n, 1) < 0) return;
    in_write(s0);
}

static void on_in(struct ev_loop *ev, ev_io *w, int revents)
{
    (void)ev;
    (void)revents;
    in_write(w->data);
}

/* --join-leave's line, from the client's loop. */
static void notice(struct shared *s, const char *line, size_t n)
{
    if (!s->cfg->join_leave) return;
    if (s->sv->thread)
        post(s, 0, NOTE_NOTICE, 0, line, n);
    else
        prog_notice(s, line, n);
}

static void shared_message(wsk_ws *ws, const void *data, size_t len, wsk_opcode op)
{
    struct shared *s = shared_of(wsk_ws_server(ws));
    struct sclient *c = wsk_ws_data(ws);
    (void)op;
    /* A closing socket read for its close frame: dropped. */
    if (!c) return;
    /* Other clients kept sending while the program read nothing: past 4 * IN_MAX a message is
     * dropped, and the log says so (at 1, 2, 4, 8, ... drops, so a flood cannot flood it). */
    if (backlog(s->p) >= 4 * IN_MAX) {
        unsigned long n = atomic_fetch_add(&s->p->dropped, 1) + 1;
        if (!(n & (n - 1)))
            serve_log(s->sv, "the program is not reading its stdin: %lu message(s) dropped", n);
        return;
    }
    if (s->sv->thread)
        post(s, 0, NOTE_MESSAGE, c->id, data, len);
    else
        prog_message(s, c->id, data, len);
    maybe_pause(s, c);
}

/* ----- the program's life (loop 0) ------------------------------------------------------------ */

static void start(struct shared *s0);

static void on_restart(struct ev_loop *ev, ev_timer *w, int revents)
{
    (void)ev;
    (void)revents;
    start(w->data);
}

static void tell_one(struct shared *s, struct sclient *c)
{
    const char *m = s->cfg->restart_message;
    wsk_send(c->ws, m, strlen(m), WSK_OP_TEXT, 1);
}

static void tell_call(void *arg, wsk_loop *loop)
{
    (void)loop;
    each_client(arg, tell_one);
}

/* child_exited: the program is gone; it is restarted after the backoff. */
static void on_exit_(struct child_watch *w, int st, int err)
{
    struct prog *p = (struct prog *)((char *)w - offsetof(struct prog, exit_w));
    struct shared *s0 = p->restart_t.data;
    struct ev_loop *ev = s0->ev;
    (void)err;
    if (st < 0) st = 255 << 8;
    p->pid = 0;
    /* What it wrote before it went comes before the restart message (up to 1 MiB: what is
     * left, from what it started, is read as it comes). */
    for (int i = 0; i < 16 && read_out(s0) > 0; i++) continue;
    child_stop_io(ev, &p->in_w, &p->in_fd);
    pipebuf_free(&p->in);
    atomic_store(&p->in_pending, 0);
    resume_all(s0);
    if (WIFSIGNALED(st))
        serve_log(s0->sv, "program killed by signal %d; restarting", WTERMSIG(st));
    else
        serve_log(s0->sv, "program exited with status %d; restarting", WEXITSTATUS(st));
    each_loop(s0, tell_call);
    /* A program that keeps dying at once is restarted less and less often. */
    p->backoff = ev_now(ev) - p->started < 10 ? (p->backoff ? p->backoff * 2 : 0.1) : 0.1;
    if (p->backoff > 10) p->backoff = 10;
    ev_timer_set(&p->restart_t, p->backoff, 0);
    ev_timer_start(ev, &p->restart_t);
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

static void start(struct shared *s0)
{
    struct prog *p = s0->p;
    char *sh[] = {"sh", "-c", (char *)s0->cfg->command, NULL};
    int fds[3];
    p->started = ev_now(s0->ev);
    /* The last run's pipes are closed; output it left unread is dropped with them. */
    child_stop_io(s0->ev, &p->out_w, &p->out_fd);
    child_stop_io(s0->ev, &p->err_w, &p->err_fd);
    lines_free(&p->out);
    lines_free(&p->errout);
    char **envp = shared_env(s0->cfg);
    int rc = envp ? child_spawn("/bin/sh", sh, envp, &p->pid, fds) : ENOMEM;
    env_free(envp);
    int pidfd = -1;
    if (!rc && p->reaper.pidfd && (pidfd = child_pidfd(p->pid)) < 0) { /* EMFILE */
        rc = errno;
        child_kill_reap(p->pid);
        for (int i = 0; i < 3; i++) close(fds[i]);
    }
    if (rc) {
        serve_log(s0->sv, "cannot start the program: %s", strerror(rc));
        p->pid = 0;
        p->backoff = 10;
        ev_timer_set(&p->restart_t, p->backoff, 0);
        ev_timer_start(s0->ev, &p->restart_t);
        return;
    }
    p->in_fd = fds[0];
    p->out_fd = fds[1];
    p->err_fd = fds[2];
    ev_io_init(&p->in_w, on_in, p->in_fd, EV_WRITE);
    ev_io_init(&p->out_w, on_out, p->out_fd, EV_READ);
    ev_io_init(&p->err_w, on_err, p->err_fd, EV_READ);
    p->in_w.data = p->out_w.data = p->err_w.data = s0;
    ev_io_start(s0->ev, &p->out_w);
    ev_io_start(s0->ev, &p->err_w);
    if (p->backoff) serve_log(s0->sv, "program restarted, pid %ld", (long)p->pid);
    reaper_watch(&p->reaper, &p->exit_w, p->pid, pidfd, on_exit_);
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
    /* Unique across the loops, and says its loop: ID % threads (1, 2, 3, ... with one). */
    c->id = ++s->next_id * s->sv->threads + s->sv->thread;
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
    for (struct sclient **pp = bucket(s, c->id); *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    free(c);
}

/* ----- the mode ------------------------------------------------------------------------------- */

/* all[0]'s: the program, started with the loop. */
static struct prog *prog_new(struct shared *s0, const wsk_server_opts *so)
{
    struct prog *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->in_fd = p->out_fd = p->err_fd = -1;
    const char *why = reaper_init(&p->reaper, s0->ev);
    if (why && s0->sv->verbose) serve_log(s0->sv, "the program is reaped by polling (%s)", why);
    /* The cap of messages, the largest one with its prefix, and room for --join-leave's lines
     * (kept even when messages are dropped). */
    p->in.max = 4 * IN_MAX + so->max_payload + 32 + NOTICE_ROOM;
    ev_init(&p->restart_t, on_restart);
    p->restart_t.data = s0;
    /* The program starts with the loop: the server exists by then (setup runs before). */
    ev_timer_set(&p->restart_t, 0, 0);
    ev_timer_start(s0->ev, &p->restart_t);
    return p;
}

static void prog_free(struct shared *s0)
{
    struct prog *p = s0->p;
    ev_timer_stop(s0->ev, &p->restart_t);
    if (p->pid > 0) {
        reaper_unwatch(&p->exit_w);
        kill(-p->pid, SIGTERM);
        child_reap(p->pid, child_now() + 1.0);
    }
    child_stop_io(s0->ev, &p->in_w, &p->in_fd);
    child_stop_io(s0->ev, &p->out_w, &p->out_fd);
    child_stop_io(s0->ev, &p->err_w, &p->err_fd);
    pipebuf_free(&p->in);
    lines_free(&p->out);
    lines_free(&p->errout);
    free(p);
}

static int shared_setup(struct serve *sv, wsk_server_opts *so, wsk_handlers *h)
{
    const struct shared_config *cfg = sv->config;
    struct shared *s = calloc(1, sizeof *s);
    if (!s) return -1;
    s->cfg = cfg;
    s->sv = sv;
    s->ev = wsk_loop_ev(sv->loop);
    s->mail_tail = &s->mail;
    pthread_mutex_init(&s->mu, NULL);
    atomic_init(&s->has_paused, 0);
    s->p = sv->thread ? ((struct shared *)sv->all[0].state)->p : prog_new(s, so);
    if (!s->p) {
        pthread_mutex_destroy(&s->mu);
        free(s);
        return -1;
    }
    sv->state = s;
    h->upgrade = shared_upgrade;
    h->open = shared_open;
    h->message = shared_message;
    h->close = shared_close;
    return 0;
}

/* After every loop ended; all[0]'s last, with the program. */
static void shared_teardown(struct serve *sv)
{
    struct shared *s = sv->state;
    if (!s) return;
    if (!sv->thread) prog_free(s);
    free_notes(s->mail); /* posted after this loop ended */
    pthread_mutex_destroy(&s->mu);
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
