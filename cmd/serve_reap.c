/* How wsserve's program modes reap their programs (serve_child.h): each loop reaps its own
 * programs, and no loop ever waits for a process it did not start.
 *
 * The usual way is a pidfd per program (pidfd_open(2), Linux 5.3), watched by the loop that
 * owns the program and reaped with waitid(P_PIDFD): no SIGCHLD, no libev default loop (whose own
 * SIGCHLD watcher would reap any child), no waitpid(-1) that takes another loop's status.
 * Where pidfd_open fails with ENOSYS (an older kernel, or valgrind 3.19, which does not know
 * the system call) or WSK_NO_PIDFD=1 asks for it (a test hook), a loop with programs polls
 * instead: a timer every REAP_POLL seconds, stopped while the loop has none, that first asks
 * whether any child of the process has exited at all (waitid with WNOWAIT, which reaps
 * nothing) and only then calls waitpid(pid, WNOHANG) for each program of its own.  Both ways end
 * in reaped(): everything after "the program exited" is one path. */
#include "serve_child.h"

#include <errno.h>
#include <ev.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define REAP_POLL 0.01 /* seconds between two looks while a loop has programs (polling) */

int child_pidfd(pid_t pid)
{
    /* The system call itself: glibc has a wrapper only from 2.36. */
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

int child_pidfd_wait(int fd, int *status)
{
    siginfo_t si;
    si.si_pid = 0;
    if (waitid(P_PIDFD, (id_t)fd, &si, WEXITED | WNOHANG) < 0) return -1;
    if (!si.si_pid) return 0; /* WNOHANG: still running */
    /* The wait status waitpid would have given: exit code in bits 8-15, or the signal. */
    if (si.si_code == CLD_EXITED)
        *status = (si.si_status & 0xff) << 8;
    else
        *status = (si.si_status & 0x7f) | (si.si_code == CLD_DUMPED ? 0x80 : 0);
    return 1;
}

static void reaper_poll(struct ev_loop *ev, ev_timer *t, int revents);

const char *reaper_init(struct reaper *r, struct ev_loop *ev)
{
    memset(r, 0, sizeof *r);
    r->ev = ev;
    r->pidfd = 1;
    const char *no = getenv("WSK_NO_PIDFD"), *why = NULL;
    if (no && *no && strcmp(no, "0") != 0) {
        why = "WSK_NO_PIDFD is set";
    } else {
        int fd = child_pidfd(getpid());
        if (fd >= 0)
            close(fd);
        else if (errno == ENOSYS) /* another failure (EMFILE) says nothing about the kernel */
            why = "pidfd_open is not implemented here";
    }
    if (!why) return NULL;
    r->pidfd = 0;
    ev_init(&r->poll, reaper_poll);
    r->poll.repeat = REAP_POLL;
    r->poll.data = r;
    return why;
}

/* w's program exited with wait status st (-1: it could not be reaped, errno in err): w is no
 * longer watched, then its owner hears of it.  The one path after "the program exited". */
static void reaped(struct child_watch *w, int st, int err)
{
    reaper_unwatch(w);
    w->exited(w, st, err);
}

static void on_pidfd(struct ev_loop *ev, ev_io *io, int revents)
{
    struct child_watch *w = io->data;
    int st = 0;
    (void)ev;
    (void)revents;
    int r = child_pidfd_wait(w->pidfd, &st);
    if (r == 0) return; /* not yet */
    reaped(w, r < 0 ? -1 : st, r < 0 ? errno : 0);
}

static void reaper_poll(struct ev_loop *ev, ev_timer *t, int revents)
{
    struct reaper *r = t->data;
    (void)ev;
    (void)revents;
    /* Has any child of the process exited?  WNOWAIT leaves it to be reaped by its owner. */
    siginfo_t si;
    si.si_pid = 0;
    if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && !si.si_pid) return;
    /* First every program of this loop that exited, then their owners: an owner's callback
     * then frees only its own watch, never one still to be looked at. */
    struct child_watch *done = NULL;
    for (struct child_watch *w = r->watching, *next; w; w = next) {
        next = w->next;
        int st = 0;
        pid_t p = waitpid(w->pid, &st, WNOHANG);
        if (p == 0 || (p < 0 && errno == EINTR)) continue;
        w->status = p < 0 ? -1 : st;
        w->err = p < 0 ? errno : 0;
        reaper_unwatch(w);
        w->next = done;
        done = w;
    }
    while (done) {
        struct child_watch *w = done;
        done = w->next;
        w->next = NULL;
        w->exited(w, w->status, w->err);
    }
}

void reaper_watch(struct reaper *r, struct child_watch *w, pid_t pid, int pidfd,
                  child_exited exited)
{
    w->r = r;
    w->pid = pid;
    w->pidfd = pidfd;
    w->exited = exited;
    w->watched = 1;
    if (pidfd >= 0) {
        /* An exit already past makes it readable at once. */
        ev_io_init(&w->io, on_pidfd, pidfd, EV_READ);
        w->io.data = w;
        ev_io_start(r->ev, &w->io);
        return;
    }
    w->prev = NULL;
    w->next = r->watching;
    if (r->watching) r->watching->prev = w;
    r->watching = w;
    if (!ev_is_active(&r->poll)) ev_timer_again(r->ev, &r->poll);
}

void reaper_unwatch(struct child_watch *w)
{
    if (!w->watched) return;
    struct reaper *r = w->r;
    w->watched = 0;
    if (w->pidfd >= 0) {
        ev_io_stop(r->ev, &w->io);
        close(w->pidfd);
        w->pidfd = -1;
        return;
    }
    if (w->prev)
        w->prev->next = w->next;
    else
        r->watching = w->next;
    if (w->next) w->next->prev = w->prev;
    w->prev = w->next = NULL;
    if (!r->watching) ev_timer_stop(r->ev, &r->poll);
}

double child_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void child_kill_reap(pid_t pid)
{
    int st;
    kill(-pid, SIGKILL);
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) continue;
}

void child_reap(pid_t pid, double deadline)
{
    int st;
    /* Bounded: polls every 10 ms until the deadline, then SIGKILL cannot be refused. */
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (child_now() >= deadline) {
            kill(-pid, SIGKILL);
            waitpid(pid, &st, 0);
            return;
        }
        usleep(10000);
    }
}
