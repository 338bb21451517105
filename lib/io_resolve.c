/* Name resolution on a thread, so that the loop runs on while DNS takes its time (and the
 * connect timeout, which counts DNS, can fire).
 *
 * A lookup is shared by two owners: the loop (until the callback runs or the lookup is
 * cancelled) and the thread (until getaddrinfo returns).  `mu` guards the hand-over; whoever
 * leaves last frees the lookup.  The thread touches the loop only through ev_async_send, and
 * only while the loop still wants the answer. */
#include "io_resolve.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct wsk_lookup {
    ev_async wake; /* first: the watcher's callback finds its lookup */
    struct ev_loop *ev;
    wsk_lookup_cb cb;
    void *arg;
    pthread_mutex_t mu;
    int done;      /* the thread has finished: res, err and sys_err are set */
    int abandoned; /* the loop no longer wants the answer: the thread frees the lookup */
    struct addrinfo *res;
    int err, sys_err;
    char *host, *port; /* in the same allocation */
};

static const struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};

static void lookup_free(wsk_lookup *l)
{
    pthread_mutex_destroy(&l->mu);
    free(l);
}

static void *run(void *p)
{
    wsk_lookup *l = p;
    struct addrinfo *res = NULL;
    int err = getaddrinfo(l->host, l->port, &hints, &res);
    int sys_err = errno;
    pthread_mutex_lock(&l->mu);
    if (l->abandoned) {
        pthread_mutex_unlock(&l->mu);
        if (res) freeaddrinfo(res);
        lookup_free(l);
        return NULL;
    }
    l->res = err ? NULL : res;
    l->err = err;
    l->sys_err = sys_err;
    l->done = 1;
    ev_async_send(l->ev, &l->wake);
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static void on_wake(struct ev_loop *ev, ev_async *w, int revents)
{
    wsk_lookup *l = (wsk_lookup *)w;
    (void)revents;
    pthread_mutex_lock(&l->mu);
    int done = l->done;
    pthread_mutex_unlock(&l->mu);
    if (!done) return;
    ev_async_stop(ev, w);
    wsk_lookup_cb cb = l->cb;
    void *arg = l->arg;
    struct addrinfo *res = l->res;
    int err = l->err, sys_err = l->sys_err;
    lookup_free(l);
    cb(arg, res, err, sys_err);
}

wsk_lookup *wsk_lookup_start(struct ev_loop *ev, const char *host, const char *port,
                             wsk_lookup_cb cb, void *arg, struct addrinfo **res, int *err)
{
    struct addrinfo numeric = hints;
    numeric.ai_flags = AI_NUMERICHOST;
    *res = NULL;
    *err = getaddrinfo(host, port, &numeric, res);
    if (*err != EAI_NONAME) return NULL; /* an address, resolved (or refused) at once */
    *res = NULL;
    size_t hl = strlen(host) + 1, pl = strlen(port) + 1;
    wsk_lookup *l = calloc(1, sizeof *l + hl + pl);
    if (!l) {
        errno = ENOMEM;
        *err = EAI_SYSTEM;
        return NULL;
    }
    l->host = memcpy((char *)(l + 1), host, hl);
    l->port = memcpy(l->host + hl, port, pl);
    l->ev = ev;
    l->cb = cb;
    l->arg = arg;
    pthread_mutex_init(&l->mu, NULL);
    ev_async_init(&l->wake, on_wake);
    ev_async_start(ev, &l->wake);
    pthread_attr_t a;
    pthread_t t;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    int r = pthread_create(&t, &a, run, l);
    pthread_attr_destroy(&a);
    if (r != 0) {
        ev_async_stop(ev, &l->wake);
        lookup_free(l);
        errno = r;
        *err = EAI_SYSTEM;
        return NULL;
    }
    *err = 0;
    return l;
}

void wsk_lookup_cancel(wsk_lookup *l)
{
    if (!l) return;
    pthread_mutex_lock(&l->mu);
    ev_async_stop(l->ev, &l->wake);
    if (!l->done) {
        l->abandoned = 1; /* the thread frees it */
        pthread_mutex_unlock(&l->mu);
        return;
    }
    pthread_mutex_unlock(&l->mu);
    if (l->res) freeaddrinfo(l->res);
    lookup_free(l);
}
