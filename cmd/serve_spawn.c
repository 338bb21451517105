/* Programs started off the event loop (serve_child.h).
 *
 * posix_spawn holds its caller until the child has reached exec (vfork), and on a busy machine
 * a new process can wait milliseconds for a CPU: on the loop, every connection would wait for
 * every spawn before it.  Here SPAWN_THREADS threads take requests from a queue and start one
 * program each; their results go back to the loop over a socket, and the loop alone touches
 * anything else.
 *
 * Each thread has a table of file descriptors of its own (unshare(CLONE_FILES)), holding only
 * its end of that socket and the pipes of the program it is starting; the pipes' wsserve ends
 * reach the loop with the result (SCM_RIGHTS).  A child made by clone gets a copy of its
 * parent's table and keeps it until exec.  Cloned from the loop's table, every child would
 * copy every socket and pipe of every connection (O(connections) per spawn), and while it
 * holds them a descriptor the loop closes stays open: libev's epoll set keeps it registered,
 * and the first event on it (a client's FIN) makes libev rebuild the whole epoll set, one
 * epoll_ctl per descriptor, again O(connections) (ev_epoll.c, "spurious notification").
 *
 * The hand-off is said to ThreadSanitizer too (struct spawn's `ran`), and the threads make and
 * close their pipes unseen by it (child_close_unseen): see serve_child.c.
 *
 * The thread also opens the program's pidfd right after the spawn and sends it with the pipes:
 * the loop reaps the program through it (serve_reap.c), however soon the program exits.  A loop
 * that polls its programs instead (no pidfd_open) gets the three pipes alone. */
#include "serve_child.h"

#include <errno.h>
#include <ev.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SPAWN_THREADS 4
#define NFDS          4 /* stdin, stdout, stderr, pidfd */

struct spawner {
    struct ev_loop *ev;
    ev_io done_w; /* the loop's end of socks: results */
    int socks[2]; /* [0] the loop's, [1] the threads' */
    spawn_done done;
    void *arg;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct spawn *todo, **todo_tail; /* submitted, not started: oldest first */
    int stopping;
    int want_pidfd; /* a pidfd with each program's pipes */
    int nthreads;
    pthread_t threads[SPAWN_THREADS];
};

/* One result on the socket; a started program's three pipes and pidfd ride along (SCM_RIGHTS). */
struct result {
    struct spawn *sp;
    pid_t pid;
    int rc;
};
union fds_cmsg {
    char buf[CMSG_SPACE(NFDS * sizeof(int))];
    struct cmsghdr align;
};

static void send_result(int sock, struct spawn *sp, int rc, pid_t pid, const int fds[NFDS],
                        int nfds)
{
    struct result r = {sp, pid, rc};
    struct iovec iov = {&r, sizeof r};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    union fds_cmsg u;
    memset(&u, 0, sizeof u);
    if (!rc) {
        m.msg_control = u.buf;
        m.msg_controllen = sizeof u.buf;
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
        m.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
    }
    ssize_t n;
    while ((n = sendmsg(sock, &m, MSG_NOSIGNAL)) < 0 && errno == EINTR) continue;
    if (n < 0 && !rc) { /* the pipes cannot reach the loop: the program goes, the error comes */
        r.rc = errno;
        child_kill_reap(pid);
        m.msg_control = NULL;
        m.msg_controllen = 0;
        while (sendmsg(sock, &m, MSG_NOSIGNAL) < 0 && errno == EINTR) continue;
    }
    if (!rc)
        for (int i = 0; i < nfds; i++) child_close_unseen(fds[i]); /* the loop has its own now */
}

static void *spawn_thread(void *arg)
{
    struct spawner *s = arg;
    int sock = s->socks[1];
    /* Its own table, with nothing of the loop's but the socket.  Should unshare fail, it
     * works on the loop's table as before: the same results, only dearer. */
    if (unshare(CLONE_FILES) == 0) {
        if (sock > 3) close_range(3, (unsigned)sock - 1, 0);
        close_range((unsigned)sock + 1, ~0U, 0);
    }
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->todo && !s->stopping) pthread_cond_wait(&s->cv, &s->mu);
        struct spawn *sp = s->todo;
        if (!sp) break; /* stopping and nothing left */
        if (!(s->todo = sp->next)) s->todo_tail = &s->todo;
        pthread_mutex_unlock(&s->mu);
        pid_t pid = 0;
        int fds[NFDS];
        int rc = child_spawn(sp->file, sp->argv, sp->envp, &pid, fds);
        if (!rc && s->want_pidfd &&
            (fds[3] = child_pidfd(pid)) < 0) { /* EMFILE: no way to watch it */
            rc = errno;
            child_kill_reap(pid);
            for (int i = 0; i < 3; i++) child_close_unseen(fds[i]);
        }
        atomic_store_explicit(&sp->ran, 1, memory_order_release);
        send_result(sock, sp, rc, pid, fds, s->want_pidfd ? NFDS : 3);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Hands every result waiting on the socket to the loop's callback (on the loop's thread). */
static void deliver(struct spawner *s)
{
    for (;;) {
        struct result r;
        union fds_cmsg u;
        struct iovec iov = {&r, sizeof r};
        struct msghdr m = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
        ssize_t n = recvmsg(s->socks[0], &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR) continue;
        if (n != (ssize_t)sizeof r) return; /* EAGAIN: none left */
        struct spawn *sp = r.sp;
        (void)atomic_load_explicit(&sp->ran, memory_order_acquire);
        sp->rc = r.rc;
        sp->pid = r.pid;
        sp->pidfd = -1;
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        int got[NFDS], ngot = 0;
        if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            ngot = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            if (ngot > NFDS) ngot = NFDS;
            memcpy(got, CMSG_DATA(c), (size_t)ngot * sizeof(int));
        }
        if (!sp->rc && ngot == (s->want_pidfd ? NFDS : 3)) {
            memcpy(sp->fds, got, sizeof sp->fds);
            sp->pidfd = s->want_pidfd ? got[3] : -1;
        } else if (!sp->rc) { /* MSG_CTRUNC: no room in the loop's table for them all */
            for (int i = 0; i < ngot; i++) close(got[i]);
            sp->rc = EMFILE;
            child_kill_reap(r.pid);
        }
        s->done(s->arg, sp);
    }
}

static void on_done(struct ev_loop *ev, ev_io *w, int revents)
{
    (void)ev;
    (void)revents;
    deliver(w->data);
}

struct spawner *spawner_new(struct ev_loop *ev, int want_pidfd, spawn_done done, void *arg)
{
    struct spawner *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    /* SEQPACKET: one result a message, with its descriptors. */
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, s->socks) < 0) {
        free(s);
        return NULL;
    }
    s->ev = ev;
    s->want_pidfd = want_pidfd;
    s->done = done;
    s->arg = arg;
    s->todo_tail = &s->todo;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    ev_io_init(&s->done_w, on_done, s->socks[0], EV_READ);
    s->done_w.data = s;
    ev_io_start(ev, &s->done_w);
    ev_unref(ev); /* the watcher alone does not keep the loop running */
    /* The threads take no signal: wsserve's handlers run on the loop's thread. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (int i = 0; i < SPAWN_THREADS; i++)
        if (!pthread_create(&s->threads[s->nthreads], NULL, spawn_thread, s)) s->nthreads++;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!s->nthreads) {
        spawner_free(s);
        return NULL;
    }
    return s;
}

void spawner_submit(struct spawner *s, struct spawn *sp)
{
    sp->next = NULL;
    pthread_mutex_lock(&s->mu);
    *s->todo_tail = sp;
    s->todo_tail = &sp->next;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void spawner_free(struct spawner *s)
{
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    struct spawn *cancelled = s->todo; /* never started */
    s->todo = NULL;
    s->todo_tail = &s->todo;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    /* At most one result a thread is still to come, and the socket holds them all. */
    for (int i = 0; i < s->nthreads; i++) pthread_join(s->threads[i], NULL);
    deliver(s);
    for (struct spawn *sp = cancelled, *next; sp; sp = next) {
        next = sp->next;
        sp->rc = ECANCELED;
        s->done(s->arg, sp);
    }
    ev_ref(s->ev);
    ev_io_stop(s->ev, &s->done_w);
    close(s->socks[0]);
    close(s->socks[1]);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}
