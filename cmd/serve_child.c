/* Programs on pipes for wsserve's program modes (serve_child.h). */
#include "serve_child.h"

#include <ev.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* A spawner's thread has a descriptor table of its own (serve_spawn.c), but ThreadSanitizer
 * keeps one per process, by number: a pipe made there under a number that a loop (or another
 * spawner thread) also uses would show as a race on that descriptor, which it is not.  The pipes
 * of a spawn are therefore made and closed by the system calls themselves, which it does not
 * intercept; the descriptors the loop gets (SCM_RIGHTS) are new numbers in the loop's table. */
static int pipe_unseen(int p[2])
{
    return (int)syscall(SYS_pipe2, p, O_CLOEXEC);
}

void child_close_unseen(int fd)
{
    syscall(SYS_close, fd);
}

int child_spawn(const char *file, char *const argv[], char *const envp[], pid_t *pid, int fds[3])
{
    int p[3][2] = {{-1, -1}, {-1, -1}, {-1, -1}}, rc = 0;
    for (int i = 0; i < 3; i++)
        if (pipe_unseen(p[i]) < 0) {
            rc = errno;
            goto out;
        }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[0][0], 0);
    posix_spawn_file_actions_adddup2(&fa, p[1][1], 1);
    posix_spawn_file_actions_adddup2(&fa, p[2][1], 2);
    posix_spawnattr_init(&at);
    /* wsserve ignores SIGPIPE and handles SIGINT/SIGTERM; the program starts with defaults. */
    sigset_t def, none;
    sigemptyset(&def);
    sigaddset(&def, SIGPIPE);
    sigaddset(&def, SIGINT);
    sigaddset(&def, SIGTERM);
    sigemptyset(&none);
    posix_spawnattr_setsigdefault(&at, &def);
    posix_spawnattr_setsigmask(&at, &none);
    /* A process group of its own: the signals that end it reach what it started too (the
     * command of `sh -c`, a pipeline). */
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETPGROUP);
    rc = posix_spawnp(pid, file, &fa, &at, argv, envp ? envp : environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
out:
    for (int i = 0; i < 3; i++) {
        int mine = i == 0 ? 1 : 0; /* wsserve keeps stdin's write end, the others' read ends */
        if (p[i][1 - mine] >= 0) child_close_unseen(p[i][1 - mine]);
        if (rc) {
            if (p[i][mine] >= 0) child_close_unseen(p[i][mine]);
        } else {
            fds[i] = p[i][mine];
            fcntl(fds[i], F_SETFL, O_NONBLOCK);
        }
    }
    return rc;
}

void lines_feed(struct lines *l, const char *p, size_t n, lines_emit emit, void *arg)
{
    while (n) {
        const char *nl = memchr(p, '\n', n);
        size_t take = nl ? (size_t)(nl - p) : n;
        if (!l->len && nl && take <= LINES_MAX) { /* a whole line: from the caller's bytes */
            size_t k = take && p[take - 1] == '\r' ? take - 1 : take;
            p += take + 1;
            n -= take + 1;
            if (!emit(arg, p - take - 1, k)) return;
            continue;
        }
        if (!l->buf && !(l->buf = malloc(LINES_MAX))) return;
        size_t room = LINES_MAX - l->len, k = take < room ? take : room;
        memcpy(l->buf + l->len, p, k);
        l->len += k;
        p += k;
        n -= k;
        if (k < take) { /* over LINES_MAX: this piece now, the rest follows */
            l->len = 0;
            if (!emit(arg, l->buf, LINES_MAX)) return;
        } else if (nl) {
            size_t len = l->len && l->buf[l->len - 1] == '\r' ? l->len - 1 : l->len;
            l->len = 0;
            p++;
            n--;
            if (!emit(arg, l->buf, len)) return;
        }
    }
}

void lines_end(struct lines *l, lines_emit emit, void *arg)
{
    size_t n = l->len;
    l->len = 0;
    if (n) emit(arg, l->buf, n);
}

void lines_free(struct lines *l)
{
    free(l->buf);
    l->buf = NULL;
    l->len = 0;
}

int pipebuf_append(struct pipebuf *b, const char *prefix, size_t plen, const void *data, size_t n,
                   int newline)
{
    if (b->off) { /* the unwritten rest to the front first */
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
    }
    size_t need = b->len + plen + n + (size_t)newline;
    if (need > b->max) return -1;
    if (need > b->cap) {
        size_t cap = need < 64 * 1024 ? 64 * 1024 : need;
        char *q = realloc(b->p, cap);
        if (!q) return -1;
        b->p = q;
        b->cap = cap;
    }
    if (plen) memcpy(b->p + b->len, prefix, plen);
    if (n) memcpy(b->p + b->len + plen, data, n);
    b->len += plen + n;
    if (newline) b->p[b->len++] = '\n';
    return 0;
}

int pipebuf_write(struct pipebuf *b, int fd)
{
    while (b->off < b->len) {
        ssize_t w = write(fd, b->p + b->off, b->len - b->off);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) return 1;
        if (w < 0) {
            b->off = b->len = 0;
            return -1;
        }
        b->off += (size_t)w;
    }
    b->off = b->len = 0;
    return 0;
}

void pipebuf_free(struct pipebuf *b)
{
    free(b->p);
    b->p = NULL;
    b->off = b->len = b->cap = 0;
}

long child_read(struct ev_loop *ev, struct ev_io *w, int *fd, char *buf, size_t cap)
{
    ssize_t n = read(*fd, buf, cap);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return -1;
    if (n <= 0) {
        child_stop_io(ev, w, fd);
        return 0;
    }
    return (long)n;
}

int child_read_lines(struct ev_loop *ev, struct ev_io *w, int *fd, char *buf, size_t cap,
                     struct lines *l, lines_emit emit, void *arg)
{
    long n = child_read(ev, w, fd, buf, cap);
    if (n < 0) return -1;
    if (n > 0) lines_feed(l, buf, (size_t)n, emit, arg);
    if (n) return 1;
    lines_end(l, emit, arg);
    return 0;
}

void child_stop_io(struct ev_loop *ev, struct ev_io *w, int *fd)
{
    if (*fd < 0) return;
    ev_io_stop(ev, w);
    close(*fd);
    *fd = -1;
}

/* ----- environment ---------------------------------------------------------------------------- */

static const char name_chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_";

int child_env_passenv(struct child_env *ce, const char *arg)
{
    /* Names and commas only; the list stays in argv and is split when a program starts. */
    if (!*arg) return -1;
    for (const char *q = arg; *q; q++)
        if (*q != ',' && !strchr(name_chars, *q)) return -1;
    ce->passenv = arg;
    return 0;
}

int child_env_set(struct child_env *ce, const char *arg)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg || strspn(arg, name_chars) != (size_t)(eq - arg)) return -1;
    if (ce->nenv == CHILD_MAX_ENV) return -1;
    ce->env[ce->nenv++] = arg;
    return 0;
}

void env_add(struct envb *e, const char *name, const char *fmt, ...)
{
    if (!e->v || e->n + 1 >= e->cap) return; /* sized for every entry: not reached */
    char val[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(val, sizeof val, fmt, ap);
    va_end(ap);
    size_t nl = strlen(name), vl = strlen(val);
    char *s = malloc(nl + vl + 2);
    if (!s) return;
    memcpy(s, name, nl);
    s[nl] = '=';
    memcpy(s + nl + 1, val, vl + 1);
    e->v[e->n++] = s;
    e->v[e->n] = NULL;
}

int child_envp_begin(struct envb *e, const struct child_env *ce, size_t extra)
{
    size_t npass = 1;
    for (const char *q = ce->passenv; q && *q; q++) npass += *q == ',';
    e->n = 0;
    e->cap = extra + npass + ce->nenv + 1;
    if (!(e->v = calloc(e->cap, sizeof *e->v))) return -1;
    for (const char *q = ce->passenv; q && *q;) {
        size_t n = strcspn(q, ",");
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(n < 255 ? n : 255), q);
        const char *v = *name ? getenv(name) : NULL;
        if (v) env_add(e, name, "%s", v);
        q += n + (q[n] == ',');
    }
    return 0;
}

char **child_envp_end(struct envb *e, const struct child_env *ce)
{
    for (size_t i = 0; i < ce->nenv; i++) {
        const char *eq = strchr(ce->env[i], '=');
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(eq - ce->env[i]), ce->env[i]);
        env_add(e, name, "%s", eq + 1);
    }
    return e->v;
}

void env_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++) free(v[i]);
    free(v);
}
