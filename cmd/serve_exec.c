/* wsserve --exec and --dir: a program per connection, websocketd's model (serve.h, wsserve(1)).
 *
 * Each WebSocket starts the program with websocketd's CGI-style environment; each line the
 * program writes to stdout is one text message, each message received is one line on its stdin
 * (--binary: raw chunks both ways).  A child is a connection with two pipes (STYLE.md):
 *
 *   socket -> message handler -> stdin buffer -> stdin pipe   (full buffer: wsk_ws_pause)
 *   stdout pipe -> the server's read buffer -> wsk_send       (-1: stop reading until drain)
 *   stderr pipe -> log lines with the peer's address
 *
 * Both directions are bounded: the stdin buffer pauses the socket at IN_MAX bytes (one message
 * may exceed it, up to --max-payload), and stdout is only read while the socket's queue has no
 * backpressure, so a program flooding stdout waits in write(2) instead of growing wsserve.
 * Programs are started by the spawner's threads (serve_spawn.c), so that no connection waits
 * for another's spawn.  Each child is reaped by the loop of its connection, through its pidfd
 * or by polling (serve_reap.c): with --threads every thread starts and reaps its own
 * connections' programs, with spawner threads of its own.  The struct child is freed once both the
 * socket and the process are gone. */
#include "serve.h"
#include "serve_child.h"
#include "serve_exec.h"

#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define IN_MAX (64 * 1024) /* stdin bytes buffered before the socket is paused */

/* One program and its connection. */
struct child {
    struct exec *x;
    struct child *prev, *next; /* x->children */
    wsk_ws *ws;                /* NULL once the socket has closed */
    char **envp;               /* from the upgrade until the spawn */
    char *script;              /* --dir: the program's path, until the spawn */
    char *av[4];               /* sh -c COMMAND, or the --dir program: the spawn's argv */
    struct spawn sp;           /* while x->spawner starts it */
    int spawning;              /* sp is with the spawner: not freed meanwhile */
    pid_t pid;
    int in_fd, out_fd, err_fd; /* -1 once closed */
    struct child_watch exit_w; /* from the spawn until reaped */
    ev_io in_w, out_w, err_w;
    ev_timer kill_t;
    int kills;  /* signals sent after the socket went: SIGTERM, then SIGKILL */
    int reaped; /* the process is gone; status is its wait status */
    int busy;   /* sending its output: a close handler run meanwhile must not free it */
    int status;
    struct pipebuf in;   /* bytes waiting for stdin */
    struct lines out;    /* stdout cut into lines (text mode) */
    struct lines errout; /* stderr cut into lines for the log */
    char addr[64];
};

/* One server's programs. */
struct exec {
    const struct exec_config *cfg;
    struct serve *sv;
    struct ev_loop *ev;
    struct child *children;
    struct child *pending;   /* made by the upgrade handler, taken by the open handler */
    struct spawner *spawner; /* this loop's */
    struct reaper reaper;    /* this loop's */
    /* processes not reaped yet and spawns under way, of every thread (--max-forks): all[0]'s */
    atomic_ulong *running, running_all;
    size_t in_max;        /* each stdin buffer's cap */
    unsigned long serial; /* for UNIQUE_ID */
    char rbuf[64 * 1024]; /* every child's stdout and stderr are read here */
};

static struct exec *exec_of(wsk_server *srv)
{
    return serve_of(srv)->state;
}

/* ----- environment ---------------------------------------------------------------------------- */

/* "1.2.3.4:5" or "[::1]:5" into host and port. */
static void split_addr(const char *a, char *host, size_t cap, const char **port)
{
    const char *colon = strrchr(a, ':');
    size_t n = colon ? (size_t)(colon - a) : strlen(a);
    if (*a == '[' && n >= 2) {
        a++;
        n -= 2;
    }
    snprintf(host, cap, "%.*s", (int)n, a);
    *port = colon ? colon + 1 : "";
}

/* websocketd's CGI-style variables (its lib/env.go), the --passenv ones and --env. */
static char **build_env(struct exec *x, const wsk_request *req, const char *script_name,
                        const char *path_info, const char *script_path)
{
    size_t nh = wsk_request_header_count(req);
    struct envb e;
    if (child_envp_begin(&e, &x->cfg->env, 40 + nh) < 0) return NULL;
    char addr[64], host[64], sname[256];
    const char *port;
    split_addr(wsk_request_remote_address(req, addr, sizeof addr), host, sizeof host, &port);
    size_t hl = 0, ml, pl, ql;
    const char *h = wsk_request_header(req, "host", &hl);
    const char *method = wsk_request_method(req, &ml);
    const char *path = wsk_request_path(req, &pl);
    const char *query = wsk_request_query(req, &ql);
    /* SERVER_NAME is the Host header without its port, as websocketd reports it. */
    snprintf(sname, sizeof sname, "%.*s", (int)(hl < 255 ? hl : 255), h ? h : "");
    char *c = strrchr(sname, ':');
    if (c && !strchr(c, ']')) *c = 0;
    env_add(&e, "REMOTE_ADDR", "%s", host);
    env_add(&e, "REMOTE_HOST", "%s", host);
    env_add(&e, "REMOTE_PORT", "%s", port);
    env_add(&e, "SERVER_NAME", "%s", *sname ? sname : "127.0.0.1");
    env_add(&e, "SERVER_PORT", "%u", x->sv->port);
    env_add(&e, "SERVER_PROTOCOL", "HTTP/1.1");
    env_add(&e, "SERVER_SOFTWARE", "wsserve/%s", WSK_VERSION);
    env_add(&e, "GATEWAY_INTERFACE", "websocketd-CGI/0.1");
    env_add(&e, "REQUEST_METHOD", "%.*s", (int)ml, method);
    env_add(&e, "SCRIPT_NAME", "%s", script_name);
    env_add(&e, "PATH_INFO", "%s", path_info);
    env_add(&e, "PATH_TRANSLATED", "%s", script_path);
    env_add(&e, "QUERY_STRING", "%.*s", (int)ql, query);
    env_add(&e, "REQUEST_URI", "%.*s%s%.*s", (int)pl, path, ql ? "?" : "", (int)ql, query);
    if (x->sv->tls) env_add(&e, "HTTPS", "on");
    env_add(&e, "UNIQUE_ID", "%lx%04lx", (unsigned long)getpid(), ++x->serial);
    /* CGI names websocketd sets and leaves empty: scripts may read them. */
    static const char *const empty[] = {"AUTH_TYPE", "CONTENT_LENGTH", "CONTENT_TYPE",
                                        "REMOTE_IDENT", "REMOTE_USER"};
    for (size_t i = 0; i < sizeof empty / sizeof empty[0]; i++) env_add(&e, empty[i], "%s", "");
    for (size_t i = 0; i < nh; i++) {
        const char *n, *v;
        size_t nl, vl;
        char name[128] = "HTTP_";
        wsk_request_header_at(req, i, &n, &nl, &v, &vl);
        if (nl > sizeof name - 6) continue;
        for (size_t k = 0; k < nl; k++)
            name[5 + k] = n[k] == '-' ? '_' : (char)(n[k] >= 'a' && n[k] <= 'z' ? n[k] - 32 : n[k]);
        name[5 + nl] = 0;
        env_add(&e, name, "%.*s", (int)vl, v);
    }
    return child_envp_end(&e, &x->cfg->env);
}

/* ----- the child's lifetime ------------------------------------------------------------------- */

/* Frees c once neither its socket nor its process is left. */
static void child_release(struct child *c)
{
    struct exec *x = c->x;
    if (c->ws || !c->reaped || c->busy || c->spawning) return;
    child_stop_io(x->ev, &c->in_w, &c->in_fd);
    child_stop_io(x->ev, &c->out_w, &c->out_fd);
    child_stop_io(x->ev, &c->err_w, &c->err_fd);
    reaper_unwatch(&c->exit_w);
    ev_timer_stop(x->ev, &c->kill_t);
    if (c->prev)
        c->prev->next = c->next;
    else
        x->children = c->next;
    if (c->next) c->next->prev = c->prev;
    env_free(c->envp);
    free(c->script);
    pipebuf_free(&c->in);
    lines_free(&c->out);
    lines_free(&c->errout);
    free(c);
}

/* The program is done with the socket: it exited and its stdout is read to the end.  1000 for
 * exit status 0, else 1011 with the reason. */
static void child_finish(struct child *c)
{
    if (!c->ws || !c->reaped || c->out_fd >= 0) return;
    char reason[64];
    int st = c->status;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
        wsk_close(c->ws, WSK_CLOSE_NORMAL, "program exited", 14);
        return;
    }
    int n = WIFSIGNALED(st)
                ? snprintf(reason, sizeof reason, "program killed by signal %d", WTERMSIG(st))
                : snprintf(reason, sizeof reason, "program exited with status %d", WEXITSTATUS(st));
    wsk_close(c->ws, WSK_CLOSE_INTERNAL, reason, (size_t)n);
}

/* child_exited: c's program is gone (maybe before its spawn's result came). */
static void child_reaped(struct child_watch *w, int st, int err)
{
    struct child *c = (struct child *)((char *)w - offsetof(struct child, exit_w));
    struct exec *x = c->x;
    if (st < 0) { /* not ours to wait for any more: nothing left to watch */
        serve_log(x->sv, "%s: cannot reap the program: %s", c->addr, strerror(err));
        st = 255 << 8;
    }
    c->reaped = 1;
    c->status = st;
    (*x->running)--;
    ev_timer_stop(x->ev, &c->kill_t);
    /* A program that exited no longer reads its stdin. */
    child_stop_io(x->ev, &c->in_w, &c->in_fd);
    pipebuf_free(&c->in);
    if (c->ws) wsk_ws_resume(c->ws);
    child_finish(c);
    child_release(c);
}

/* The socket is gone and the program still runs: SIGTERM after --close-grace, SIGKILL after
 * another. */
static void on_kill(struct ev_loop *ev, ev_timer *w, int revents)
{
    struct child *c = w->data;
    (void)revents;
    if (c->reaped) return;
    kill(-c->pid, c->kills++ ? SIGKILL : SIGTERM); /* its process group */
    if (c->kills < 2) {
        w->repeat = c->x->cfg->close_grace;
        ev_timer_again(ev, w);
    }
}

/* ----- stdin ---------------------------------------------------------------------------------- */

static void stdin_write(struct child *c)
{
    int r = pipebuf_write(&c->in, c->in_fd);
    if (r < 0) /* EPIPE: the program closed its stdin; what it would have read is lost */
        child_stop_io(c->x->ev, &c->in_w, &c->in_fd);
    else if (r)
        ev_io_start(c->x->ev, &c->in_w);
    else
        ev_io_stop(c->x->ev, &c->in_w);
    /* The socket is read again once the program has taken what was waiting. */
    if (c->ws && pipebuf_pending(&c->in) < IN_MAX / 2) wsk_ws_resume(c->ws);
}

static void on_stdin(struct ev_loop *ev, ev_io *w, int revents)
{
    (void)ev;
    (void)revents;
    stdin_write(w->data);
}

static void exec_message(wsk_ws *ws, const void *data, size_t len, wsk_opcode op)
{
    struct child *c = wsk_ws_data(ws);
    (void)op;
    /* The program no longer reads: dropped, as websocketd.  One still starting gets it once
     * it runs. */
    if (!c || (c->in_fd < 0 && !c->spawning)) return;
    /* A closing socket is read for its close frame even when the program takes nothing: what
     * does not fit is dropped, so the buffer stays bounded. */
    if (pipebuf_pending(&c->in) >= 4 * IN_MAX) return;
    if (pipebuf_append(&c->in, NULL, 0, data, len, !c->x->cfg->binary) < 0) {
        wsk_close(ws, WSK_CLOSE_INTERNAL, "out of memory", 13);
        return;
    }
    if (!c->spawning) stdin_write(c);
    /* Bounded: past IN_MAX unwritten bytes the socket waits, and TCP slows the client. */
    if (pipebuf_pending(&c->in) >= IN_MAX) wsk_ws_pause(ws);
}

/* ----- stdout and stderr ---------------------------------------------------------------------- */

/* One message from the program: a line (text mode) or a chunk (--binary).  A line that is not
 * UTF-8 cannot be a text message (the client would fail the connection, 1007): it goes binary. */
static void send_out(struct child *c, const char *p, size_t n)
{
    wsk_opcode op = c->x->cfg->binary || !wsk_utf8_valid(p, n) ? WSK_OP_BINARY : WSK_OP_TEXT;
    if (wsk_send(c->ws, p, n, op, 1) == -1) ev_io_stop(c->x->ev, &c->out_w); /* until drain */
}

/* lines_emit: one line of a program in text mode; 0 once its socket is gone. */
static int send_line(void *arg, const char *p, size_t n)
{
    struct child *c = arg;
    if (c->ws) send_out(c, p, n);
    return c->ws != NULL;
}

static void on_stdout(struct ev_loop *ev, ev_io *w, int revents)
{
    struct child *c = w->data;
    struct exec *x = c->x;
    (void)ev;
    (void)revents;
    long n = child_read(x->ev, &c->out_w, &c->out_fd, x->rbuf, sizeof x->rbuf);
    if (n < 0) return;
    if (n == 0) {    /* EOF: the last unfinished line is a message too */
        c->busy = 1; /* as below: its send may close the socket */
        lines_end(&c->out, send_line, c);
        c->busy = 0;
        child_finish(c);
        child_release(c);
        return;
    }
    if (!c->ws) return; /* the client is gone: read and dropped, so the program is not stuck */
    c->busy = 1;        /* a send may close the socket (--close-on-backpressure) */
    if (x->cfg->binary)
        send_out(c, x->rbuf, (size_t)n);
    else
        lines_feed(&c->out, x->rbuf, (size_t)n, send_line, c);
    c->busy = 0;
    child_release(c);
}

static void exec_drain(wsk_ws *ws)
{
    struct child *c = wsk_ws_data(ws);
    if (c && c->out_fd >= 0) ev_io_start(c->x->ev, &c->out_w);
}

/* lines_emit: a line of the program's stderr, logged with the client's address. */
static int log_line(void *arg, const char *p, size_t n)
{
    struct child *c = arg;
    serve_log(c->x->sv, "%s: %.*s", c->addr, (int)(n > 900 ? 900 : n), p);
    return 1;
}

static void on_stderr(struct ev_loop *ev, ev_io *w, int revents)
{
    struct child *c = w->data;
    struct exec *x = c->x;
    (void)ev;
    (void)revents;
    if (child_read_lines(x->ev, w, &c->err_fd, x->rbuf, sizeof x->rbuf, &c->errout, log_line, c) ==
        0)
        child_release(c);
}

/* The client is gone and the program runs: EOF on its stdin, then SIGTERM and SIGKILL if it
 * stays. */
static void child_orphaned(struct child *c)
{
    struct exec *x = c->x;
    child_stop_io(x->ev, &c->in_w, &c->in_fd);
    pipebuf_free(&c->in);
    if (c->reaped) return;
    ev_timer_init(&c->kill_t, on_kill, x->cfg->close_grace, 0.);
    c->kill_t.data = c;
    ev_timer_start(x->ev, &c->kill_t);
    if (c->out_fd >= 0) ev_io_start(x->ev, &c->out_w); /* keep draining its output */
}

/* spawn_done: the spawner started c's program, or could not. */
static void spawned(void *arg, struct spawn *sp)
{
    struct exec *x = arg;
    struct child *c = (struct child *)((char *)sp - offsetof(struct child, sp));
    c->spawning = 0;
    env_free(c->envp);
    c->envp = NULL;
    if (sp->rc) {
        if (sp->rc != ECANCELED)
            serve_log(x->sv, "%s: cannot start the program: %s", c->addr, strerror(sp->rc));
        (*x->running)--;
        c->reaped = 1; /* nothing to wait for */
        if (c->ws)     /* its close handler frees c */
            wsk_close(c->ws, WSK_CLOSE_INTERNAL, "cannot start the program", 24);
        else
            child_release(c);
        return;
    }
    c->pid = sp->pid;
    c->in_fd = sp->fds[0];
    c->out_fd = sp->fds[1];
    c->err_fd = sp->fds[2];
    ev_io_init(&c->in_w, on_stdin, c->in_fd, EV_WRITE);
    ev_io_init(&c->out_w, on_stdout, c->out_fd, EV_READ);
    ev_io_init(&c->err_w, on_stderr, c->err_fd, EV_READ);
    c->in_w.data = c->out_w.data = c->err_w.data = c;
    ev_io_start(x->ev, &c->out_w);
    ev_io_start(x->ev, &c->err_w);
    reaper_watch(&x->reaper, &c->exit_w, c->pid, sp->pidfd, child_reaped);
    if (c->ws && pipebuf_pending(&c->in)) stdin_write(c); /* what came while it started */
    if (!c->ws) child_orphaned(c);
}

static void exec_open(wsk_ws *ws)
{
    struct exec *x = exec_of(wsk_ws_server(ws));
    struct child *c = wsk_ws_data(ws);
    if (!c || c != x->pending) return;
    const struct exec_config *cfg = x->cfg;
    x->pending = NULL;
    c->ws = ws;
    c->next = x->children;
    if (x->children) x->children->prev = c;
    x->children = c;
    if (c->script) {
        c->av[0] = c->script;
        c->sp.file = c->script;
        c->sp.argv = c->av;
    } else if (cfg->command) {
        c->av[0] = "sh";
        c->av[1] = "-c";
        c->av[2] = (char *)cfg->command;
        c->sp.file = "/bin/sh";
        c->sp.argv = c->av;
    } else {
        c->sp.file = cfg->argv[0];
        c->sp.argv = cfg->argv;
    }
    c->sp.envp = c->envp;
    c->spawning = 1;
    (*x->running)++;
    spawner_submit(x->spawner, &c->sp);
}

static void exec_close(wsk_ws *ws, unsigned code, const char *reason, size_t len)
{
    struct child *c = wsk_ws_data(ws);
    (void)code;
    (void)reason;
    (void)len;
    if (!c) return;
    wsk_ws_set_data(ws, NULL);
    c->ws = NULL;
    if (!c->spawning) child_orphaned(c);
    child_release(c);
}

/* --dir: the first path segment names an executable of DIR; the rest is PATH_INFO.  The
 * program's path (malloc'd) or NULL: no such program. */
static char *dir_script(const char *dir, const char *path, size_t plen, size_t *seg)
{
    const char *p = path + 1, *end = path + plen;
    const char *slash = memchr(p, '/', (size_t)(end - p));
    size_t n = slash ? (size_t)(slash - p) : (size_t)(end - p);
    *seg = n + 1;
    /* One plain name: no "..", no hidden file, no escape of any kind. */
    if (!n || n > 255 || *p == '.') return NULL;
    for (size_t i = 0; i < n; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", p[i]))
            return NULL;
    char *full = malloc(strlen(dir) + n + 2);
    if (!full) return NULL;
    sprintf(full, "%s/%.*s", dir, (int)n, p);
    struct stat st;
    if (stat(full, &st) < 0 || !S_ISREG(st.st_mode) || access(full, X_OK) < 0) {
        free(full);
        return NULL;
    }
    return full;
}

static int exec_upgrade(wsk_server *srv, const wsk_request *req, wsk_response *res)
{
    struct exec *x = exec_of(srv);
    const struct exec_config *cfg = x->cfg;
    if (x->pending) { /* the last accepted upgrade never opened */
        env_free(x->pending->envp);
        free(x->pending->script);
        free(x->pending);
        x->pending = NULL;
    }
    if (cfg->max_forks && *x->running >= cfg->max_forks) {
        wsk_response_append_body(res, "too many programs running\n", 26);
        return 503;
    }
    size_t plen, seg = 0;
    const char *path = wsk_request_path(req, &plen);
    char *script = NULL;
    if (cfg->dir && !(script = dir_script(cfg->dir, path, plen, &seg))) return 404;
    struct child *c = calloc(1, sizeof *c);
    if (!c) {
        free(script);
        return 503;
    }
    c->x = x;
    c->script = script;
    c->in_fd = c->out_fd = c->err_fd = -1;
    c->in.max = x->in_max;
    wsk_request_remote_address(req, c->addr, sizeof c->addr);
    /* As websocketd: --exec is the script "/" and the whole path its PATH_INFO; --dir's
     * script is the first segment, the rest PATH_INFO. */
    char sname[300], info[4096];
    snprintf(sname, sizeof sname, "%.*s", (int)(script ? seg : 1), script ? path : "/");
    snprintf(info, sizeof info, "%.*s", (int)(plen - seg), path + seg);
    c->envp = build_env(x, req, sname, info, script ? script : info);
    if (!c->envp) {
        free(script);
        free(c);
        return 503;
    }
    x->pending = c;
    wsk_response_set_data(res, c);
    return 0;
}

/* ----- the mode ------------------------------------------------------------------------------- */

static int exec_setup(struct serve *sv, wsk_server_opts *so, wsk_handlers *h)
{
    const struct exec_config *cfg = sv->config;
    if (!cfg->command && !cfg->argv && !cfg->dir) {
        fprintf(stderr, "wsserve: --exec needs a program: --exec 'COMMAND' or -- PROGRAM ARGS\n");
        return -1;
    }
    struct exec *x = calloc(1, sizeof *x);
    if (!x) return -1;
    x->cfg = cfg;
    x->sv = sv;
    /* exec_message drops past 4 * IN_MAX: one message more, and its newline, fit. */
    x->in_max = 4 * IN_MAX + so->max_payload + 1;
    x->ev = wsk_loop_ev(sv->loop); /* this server's: its programs are started and reaped here */
    atomic_init(&x->running_all, 0);
    x->running = sv->thread ? &((struct exec *)sv->all[0].state)->running_all : &x->running_all;
    const char *why = reaper_init(&x->reaper, x->ev);
    if (why && !sv->thread && sv->verbose)
        serve_log(sv, "programs are reaped by polling (%s)", why);
    if (!(x->spawner = spawner_new(x->ev, x->reaper.pidfd, spawned, x))) {
        free(x);
        return -1;
    }
    sv->state = x;
    h->upgrade = exec_upgrade;
    h->open = exec_open;
    h->message = exec_message;
    h->drain = exec_drain;
    h->close = exec_close;
    return 0;
}

/* After wsk_server_free (every socket closed): the programs still running get SIGTERM, then
 * SIGKILL after --close-grace, and are reaped here, so that none outlives wsserve. */
static void exec_teardown(struct serve *sv)
{
    struct exec *x = sv->state;
    if (!x) return;
    spawner_free(x->spawner); /* every program started has its pid now */
    for (struct child *c = x->children; c; c = c->next)
        if (!c->reaped && c->pid > 0) kill(-c->pid, SIGTERM);
    double deadline = child_now() + x->cfg->close_grace;
    while (x->children) {
        struct child *c = x->children;
        reaper_unwatch(&c->exit_w);
        if (!c->reaped && c->pid > 0) child_reap(c->pid, deadline);
        c->reaped = 1;
        c->ws = NULL;
        child_release(c);
    }
    if (x->pending) {
        env_free(x->pending->envp);
        free(x->pending->script);
        free(x->pending);
    }
    free(x);
    sv->state = NULL;
}

/* ----- options -------------------------------------------------------------------------------- */

enum {
    OPT_BINARY = 256,
    OPT_PASSENV,
    OPT_ENV,
    OPT_MAXFORKS,
    OPT_GRACE,
    OPT_STATIC,
    OPT_LISTING,
};

static const cli_option exec_options[] = {
    {"binary", OPT_BINARY, NULL, "raw stdout chunks as binary messages, raw messages to stdin"},
    {"passenv", OPT_PASSENV, "NAME,...", "variables passed on (default PATH,LD_LIBRARY_PATH)"},
    {"env", OPT_ENV, "NAME=VALUE", "set a variable for the program, repeatable"},
    {"max-forks", OPT_MAXFORKS, "N", "programs running at once, 503 beyond (default: no limit)"},
    {"close-grace", OPT_GRACE, "DURATION",
     "client gone: SIGTERM after this, SIGKILL after 2x (1s)"},
    {"static", OPT_STATIC, "DIR", "serve the files of DIR to plain GETs"},
    {"listing", OPT_LISTING, NULL, "with --static: list directories without index.html"},
    {NULL, 0, NULL, NULL},
};

static void exec_config_init(void *config)
{
    struct exec_config *c = config;
    c->env.passenv = "PATH,LD_LIBRARY_PATH";
    c->close_grace = 1.0;
}

static int exec_option(void *config, const cli_option *opt, const char *arg)
{
    struct exec_config *c = config;
    switch (opt->key) {
    case OPT_BINARY: c->binary = 1; return 0;
    case OPT_LISTING: c->listing = 1; return 0;
    case OPT_STATIC: c->static_dir = arg; return 0;
    case OPT_GRACE: return cli_parse_duration(arg, &c->close_grace);
    case OPT_MAXFORKS: return cli_parse_ulong(arg, 1, 1000000, &c->max_forks);
    case OPT_ENV: return child_env_set(&c->env, arg);
    case OPT_PASSENV: return child_env_passenv(&c->env, arg);
    default: return -1;
    }
}

/* --exec 'COMMAND', or `-- PROGRAM ARGS...`, not both. */
static int exec_operands(void *config, const char *arg, int argc, char **argv)
{
    struct exec_config *c = config;
    if (arg && argc) {
        fprintf(stderr, "wsserve: --exec 'COMMAND' or -- PROGRAM ARGS..., not both\n");
        return -1;
    }
    if (arg && !*arg) return -1;
    c->command = arg;
    c->argv = argc ? argv : NULL;
    return 0;
}

static int dir_operands(void *config, const char *arg, int argc, char **argv)
{
    struct exec_config *c = config;
    (void)argv;
    struct stat st;
    if (argc || !arg || stat(arg, &st) < 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "wsserve: --dir needs a directory\n");
        return -1;
    }
    c->dir = arg;
    return 0;
}

/* A plain request: --static's files, else a page that says what this is. */
static int exec_page(struct serve *sv, const wsk_request *req, wsk_response *res)
{
    const struct exec_config *cfg = sv->config;
    int st = serve_static(cfg->static_dir, cfg->listing, req, res);
    if (st) return st;
    if (serve_console(sv, req, res)) return 200;
    char url[300], body[1024];
    snprintf(body, sizeof body,
             "wsserve %s: every WebSocket runs %s%s%s.\n"
             "Connect with a WebSocket client, for example:\n"
             "  wscat -c %s/%s\n"
             "Lines the program writes are messages; messages are lines on its stdin.\n",
             WSK_VERSION, cfg->dir ? "a program of " : "",
             cfg->dir       ? cfg->dir
             : cfg->command ? cfg->command
                            : cfg->argv[0],
             cfg->dir ? " named by the path" : "", serve_base_url(sv, req, 0, url, sizeof url),
             cfg->dir ? "PROGRAM" : "");
    return serve_text(res, 200, body);
}

const serve_mode serve_exec = {
    .name = "exec",
    .arg = "COMMAND",
    .help = "a program per connection: stdout lines out, messages to stdin",
    .options = exec_options,
    .config_size = sizeof(struct exec_config),
    .config_init = exec_config_init,
    .option = exec_option,
    .operands = exec_operands,
    .setup = exec_setup,
    .request = exec_page,
    .teardown = exec_teardown,
};

const serve_mode serve_exec_dir = {
    .name = "dir",
    .arg = "DIR",
    .help = "as --exec, running the program of DIR that the path names",
    .shares = &serve_exec,
    .operands = dir_operands,
    .setup = exec_setup,
    .request = exec_page,
    .teardown = exec_teardown,
};
