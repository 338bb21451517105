/* Programs started off the event loop (serve_child.h).
 *
 * posix_spawn holds its caller until the child has reached exec (vfork), and on a busy machine
 * a new process can wait milliseconds for a CPU: on the loop, every connection would wait for
 * every spawn before it.  Here SPAWN_THREADS threads take requests from a queue and start one
 * program each; their results go back to the loop through an ev_async, and the loop alone
 * touches anything else. */
#include "serve_child.h"

#include <errno.h>
#include <ev.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>

#define SPAWN_THREADS 4

struct spawner {
    struct ev_loop *ev;
    ev_async done_w;
    spawn_done done;
    void *arg;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct spawn *todo, **todo_tail; /* submitted, not started: oldest first */
    struct spawn *ready;             /* started (or failed), for the loop */
    int stopping;
    int nthreads;
    pthread_t threads[SPAWN_THREADS];
};

static void *spawn_thread(void *arg)
{
    struct spawner *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->todo && !s->stopping) pthread_cond_wait(&s->cv, &s->mu);
        struct spawn *sp = s->todo;
        if (!sp) break; /* stopping and nothing left */
        if (!(s->todo = sp->next)) s->todo_tail = &s->todo;
        pthread_mutex_unlock(&s->mu);
        sp->rc = child_spawn(sp->file, sp->argv, sp->envp, &sp->pid, sp->fds);
        pthread_mutex_lock(&s->mu);
        sp->next = s->ready;
        s->ready = sp;
        ev_async_send(s->ev, &s->done_w);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Hands every result waiting to the loop's callback (on the loop's thread). */
static void deliver(struct spawner *s)
{
    pthread_mutex_lock(&s->mu);
    struct spawn *sp = s->ready;
    s->ready = NULL;
    pthread_mutex_unlock(&s->mu);
    while (sp) {
        struct spawn *next = sp->next;
        s->done(s->arg, sp);
        sp = next;
    }
}

static void on_done(struct ev_loop *ev, ev_async *w, int revents)
{
    (void)ev;
    (void)revents;
    deliver(w->data);
}

struct spawner *spawner_new(struct ev_loop *ev, spawn_done done, void *arg)
{
    struct spawner *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->ev = ev;
    s->done = done;
    s->arg = arg;
    s->todo_tail = &s->todo;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    ev_async_init(&s->done_w, on_done);
    s->done_w.data = s;
    ev_async_start(ev, &s->done_w);
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
    for (struct spawn *sp = s->todo, *next; sp; sp = next) { /* never started */
        next = sp->next;
        sp->rc = ECANCELED;
        sp->next = s->ready;
        s->ready = sp;
    }
    s->todo = NULL;
    s->todo_tail = &s->todo;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < s->nthreads; i++) pthread_join(s->threads[i], NULL);
    deliver(s);
    ev_ref(s->ev);
    ev_async_stop(s->ev, &s->done_w);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}
