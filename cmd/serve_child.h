/* What wsserve's program modes share (serve_exec.c, serve_exec_shared.c): starting a program on
 * three pipes (also from other threads, serve_spawn.c), cutting its output into lines and buffering
 * its input.  The modes own the watchers; child_stop_io only stops one and closes its pipe. */
#ifndef WSK_SERVE_CHILD_H
#define WSK_SERVE_CHILD_H

#include <stdatomic.h>
#include <stddef.h>
#include <sys/types.h>

#include <ev.h>

/* Stops the watcher w of pipe *fd on ev, closes the pipe and sets *fd to -1; nothing when *fd
 * is already -1. */
void child_stop_io(struct ev_loop *ev, struct ev_io *w, int *fd);

/* Reaping (serve_reap.c): each loop reaps the programs it started, and only those: through a
 * pidfd per program (pidfd_open(2), Linux 5.3) where the kernel has it, else by polling them
 * with waitpid(pid, WNOHANG) while the loop has any (valgrind 3.19 has no pidfd_open; the
 * environment variable WSK_NO_PIDFD=1 asks for polling, a test hook).  No SIGCHLD, no libev
 * default loop, no waitpid(-1): wsserve's loops are never libev's default loop, whose own
 * SIGCHLD watcher reaps any child. */
struct child_watch;
/* w's program is gone: st is its wait status as waitpid(2) gives it, or -1 when it could not be
 * reaped (errno value err).  w is no longer watched; the owner may free it. */
typedef void (*child_exited)(struct child_watch *w, int st, int err);
/* One loop's reaper: a member of the mode's per-loop state, used on that loop's thread. */
struct reaper {
    struct ev_loop *ev;
    int pidfd;                    /* 1: programs are watched through pidfds; 0: polled */
    ev_timer poll;                /* polling: runs while `watching` has entries */
    struct child_watch *watching; /* polling: the programs of this loop not reaped yet */
};
/* One program watched: a member of its owner's struct, which outlives the watch. */
struct child_watch {
    struct reaper *r;
    ev_io io; /* on the pidfd */
    pid_t pid;
    int pidfd; /* -1 when polled */
    int watched, status, err;
    struct child_watch *prev, *next; /* polling: in r->watching */
    child_exited exited;
};
/* Sets r up for loop ev and decides how it reaps: NULL for pidfds, else why it polls (no
 * pidfd_open, or WSK_NO_PIDFD), for the log. */
const char *reaper_init(struct reaper *r, struct ev_loop *ev);
/* Watches pid, whose pidfd (ownership passes to the watch) is `pidfd` when r->pidfd, else -1:
 * exited(w, ...) runs on r's loop once it is gone, however soon that is. */
void reaper_watch(struct reaper *r, struct child_watch *w, pid_t pid, int pidfd,
                  child_exited exited);
/* Stops watching (closes the pidfd; the program is then the caller's to reap, child_reap);
 * nothing when w is not watched. */
void reaper_unwatch(struct child_watch *w);
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

/* close(2) by the system call itself, unseen by ThreadSanitizer: for the descriptors of a spawner
 * thread's own table (serve_child.c says why). */
void child_close_unseen(int fd);

/* The same, off the loop's thread (serve_spawn.c): posix_spawn holds its caller until the child
 * has reached exec.  A request is submitted on the loop's thread, and done(arg, sp) is called
 * there once it has run, with sp->rc, sp->pid and sp->fds set as child_spawn sets them.  file,
 * argv and envp must stay valid until then.  The program may have exited before done is
 * called: with pidfds (want_pidfd), its pidfd, opened by the spawner's thread right after the
 * spawn, keeps its status until the loop reaps it; polled, it stays a zombie until then. */
struct spawn {
    struct spawn *next; /* the spawner's */
    const char *file;
    char *const *argv;
    char *const *envp;
    pid_t pid;
    int fds[3];
    int pidfd; /* the caller's to close; -1 without want_pidfd */
    int rc;
    /* Set (release) by the spawner's thread once it is done with file, argv and envp, read
     * (acquire) by the loop before done: the order the result's socket gives, said in a way
     * ThreadSanitizer sees (it does not follow sendmsg to recvmsg). */
    atomic_int ran;
};
typedef void (*spawn_done)(void *arg, struct spawn *sp);
struct spawner;
/* want_pidfd: each program's pidfd comes with its pipes (reaper.pidfd).  NULL when no thread
 * could start. */
struct spawner *spawner_new(struct ev_loop *ev, int want_pidfd, spawn_done done, void *arg);
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
/* The same, cut into lines for emit (lines_feed; at EOF lines_end): 0 at EOF, -1 when there
 * is nothing to read now, else 1. */
int child_read_lines(struct ev_loop *ev, struct ev_io *w, int *fd, char *buf, size_t cap,
                     struct lines *l, lines_emit emit, void *arg);

#endif
