/* What wsserve's program modes share (serve_exec.c, serve_exec_shared.c): starting a program on
 * three pipes (also from other threads, serve_spawn.c), cutting its output into lines and buffering
 * its input.  The modes own the watchers; child_stop_io only stops one and closes its pipe. */
#ifndef WSK_SERVE_CHILD_H
#define WSK_SERVE_CHILD_H

#include <stddef.h>
#include <sys/types.h>

struct ev_loop;
struct ev_io;

/* Stops the watcher w of pipe *fd on ev, closes the pipe and sets *fd to -1; nothing when *fd
 * is already -1. */
void child_stop_io(struct ev_loop *ev, struct ev_io *w, int *fd);

/* Reaping: each program is watched through its pidfd (pidfd_open(2), Linux 5.3) by the loop that
 * owns its connection, and reaped with waitid(P_PIDFD): no SIGCHLD, no libev default loop, no
 * waitpid(-1) that scans every child, and no status taken by another loop's reaper.  wsserve's
 * loops are therefore never libev's default loop, whose own SIGCHLD watcher reaps any child. */
/* 0 when this kernel has pidfd_open, else -1 with the reason on stderr: the program modes need
 * it (Debian 12's kernel and newer have it) and refuse to start without it. */
int child_pidfd_check(void);
/* A pidfd for pid (close-on-exec; readable once the process has exited), or -1 and errno. */
int child_pidfd(pid_t pid);
/* Reaps the process of pidfd fd if it has exited: 1 with *status as waitpid(2) gives it, 0 while
 * it runs, -1 on an error (errno). */
int child_pidfd_wait(int fd, int *status);

/* Starts file (searched in PATH unless it has a '/') with argv and envp (NULL: wsserve's own),
 * its stdin, stdout and stderr on pipes whose other ends, non-blocking and close-on-exec, go to
 * fds[0..2]; SIGPIPE, SIGINT and SIGTERM back to their defaults, no signal blocked, and in a
 * process group of its own (kill(-pid, ...) signals it and what it started).  0, or an errno
 * value. */
int child_spawn(const char *file, char *const argv[], char *const envp[], pid_t *pid, int fds[3]);

/* The same, off the loop's thread (serve_spawn.c): posix_spawn holds its caller until the child
 * has reached exec.  A request is submitted on the loop's thread, and done(arg, sp) is called
 * there once it has run, with sp->rc, sp->pid and sp->fds set as child_spawn sets them.  file,
 * argv and envp must stay valid until then.  The program may have exited before done is
 * called: its pidfd, opened by the spawner's thread right after the spawn, keeps its status
 * until the loop reaps it. */
struct spawn {
    struct spawn *next; /* the spawner's */
    const char *file;
    char *const *argv;
    char *const *envp;
    pid_t pid;
    int fds[3];
    int pidfd; /* the caller's to close */
    int rc;
};
typedef void (*spawn_done)(void *arg, struct spawn *sp);
struct spawner;
/* NULL when no thread could start. */
struct spawner *spawner_new(struct ev_loop *ev, spawn_done done, void *arg);
void spawner_submit(struct spawner *s, struct spawn *sp);
/* Requests not started yet get rc ECANCELED; every request is given to done before it
 * returns. */
void spawner_free(struct spawner *s);

/* Waits for pid (its group already sent SIGTERM) until `deadline` (a CLOCK_MONOTONIC time in
 * seconds, see child_now), then SIGKILLs its group and reaps it: for wsserve's exit, once the loop
 * has stopped. */
void child_reap(pid_t pid, double deadline);
double child_now(void);
/* A program that cannot be watched or handed over: SIGKILL to its group, and reaped at once
 * (SIGKILL cannot be refused, so the wait is short). */
void child_kill_reap(pid_t pid);

/* A program's environment: the variables of wsserve's named by --passenv, the mode's own, then
 * each --env NAME=VALUE (the program modes share these options). */
#define CHILD_MAX_ENV 64
struct child_env {
    const char *passenv;            /* names and commas, kept in argv; NULL: none */
    const char *env[CHILD_MAX_ENV]; /* --env NAME=VALUE, kept in argv */
    size_t nenv;
};
/* --passenv LIST and --env NAME=VALUE: 0, or -1 when malformed (or one --env too many). */
int child_env_passenv(struct child_env *ce, const char *arg);
int child_env_set(struct child_env *ce, const char *arg);
/* An envp being built: child_envp_begin allocates room for `extra` of the mode's variables and
 * adds the --passenv ones, env_add adds one (an entry that does not fit is left out),
 * child_envp_end adds the --env ones and returns the malloc'd array (NULL: out of memory), for
 * env_free. */
struct envb {
    char **v;
    size_t n, cap;
};
int child_envp_begin(struct envb *e, const struct child_env *ce, size_t extra);
void env_add(struct envb *e, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
char **child_envp_end(struct envb *e, const struct child_env *ce);
void env_free(char **v);

/* Output cut into lines: a line cut by the end of a read waits in buf (malloc'd on first use,
 * at most LINES_MAX bytes); a longer line is emitted in pieces of that size.  emit gets a line
 * without its "\n" or "\r\n" and returns 0 to stop (the rest of the read is dropped). */
#define LINES_MAX (64 * 1024)
typedef int (*lines_emit)(void *arg, const char *p, size_t n);
struct lines {
    char *buf;
    size_t len;
};
void lines_feed(struct lines *l, const char *p, size_t n, lines_emit emit, void *arg);
/* EOF: the unfinished line, if any, is emitted. */
void lines_end(struct lines *l, lines_emit emit, void *arg);
void lines_free(struct lines *l);

/* Bytes waiting for a program's stdin, p[off, len).  The buffer grows to what one append
 * needs, never past max (set by its owner before the first append); the caller keeps well
 * below it by pausing its sources at pipebuf_pending. */
struct pipebuf {
    char *p;
    size_t off, len, cap, max;
};
/* Appends prefix[0..plen), data[0..n) and, when newline, "\n": 0, or -1 when that would pass
 * max (nothing appended) or out of memory. */
int pipebuf_append(struct pipebuf *b, const char *prefix, size_t plen, const void *data, size_t n,
                   int newline);
/* Writes what it can to fd (non-blocking): 1 when bytes remain, 0 when all is written, -1 when
 * the program closed its stdin (EPIPE and other errors; the buffer is emptied). */
int pipebuf_write(struct pipebuf *b, int fd);
static inline size_t pipebuf_pending(const struct pipebuf *b)
{
    return b->len - b->off;
}
void pipebuf_free(struct pipebuf *b);

/* One read of a program's pipe *fd (watched by w on ev) into buf[0..cap): the byte count; 0
 * at EOF or on an error, after which the watcher is stopped and the pipe closed; -1 when there
 * is nothing to read now. */
long child_read(struct ev_loop *ev, struct ev_io *w, int *fd, char *buf, size_t cap);
/* The same, cut into lines for emit (lines_feed; at EOF lines_end): 0 at EOF, else 1. */
int child_read_lines(struct ev_loop *ev, struct ev_io *w, int *fd, char *buf, size_t cap,
                     struct lines *l, lines_emit emit, void *arg);

#endif
