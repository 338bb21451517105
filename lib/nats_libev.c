/* The libev adapter of the NATS client (nats_libev.h). */
#include "nats_libev.h"

/* On the loop thread: the watcher as wanted. */
static void apply(wsk_natsev *x)
{
    pthread_mutex_lock(&x->mu);
    int fd = x->fd, events = (x->want_read ? EV_READ : 0) | (x->want_write ? EV_WRITE : 0);
    unsigned gen = x->gen;
    x->cur_nc = x->nc;
    pthread_mutex_unlock(&x->mu);
    if (fd < 0) events = 0;
    if (fd == x->cur_fd && events == x->cur_events && gen == x->cur_gen) return;
    ev_io_stop(x->ev, &x->io);
    /* The same socket with other events (the write interest coming and going within one loop
     * iteration, flush()): ev_io_modify, so that libev compares what it is told at the poll
     * with what the kernel has and makes no system call when they are the same. */
    if (fd == x->cur_fd && gen == x->cur_gen)
        ev_io_modify(&x->io, events);
    else
        ev_io_set(&x->io, fd, events);
    x->cur_fd = fd;
    x->cur_events = events;
    x->cur_gen = gen;
    if (events) ev_io_start(x->ev, &x->io);
}

static void on_io(struct ev_loop *ev, ev_io *w, int revents)
{
    wsk_natsev *x = w->data;
    (void)ev;
    if (revents & EV_ERROR) return; /* a socket NATS closed under us: the next attach replaces it */
    if (revents & EV_READ) {
        x->reading = 1;
        natsConnection_ProcessReadEvent(x->cur_nc);
        x->reading = 0;
    }
    if ((revents & EV_WRITE) && x->cur_fd >= 0) natsConnection_ProcessWriteEvent(x->cur_nc);
    /* Last: the engine's wake may free x (a handler that closes the server). */
    if (x->woken) {
        x->woken = 0;
        x->wake(x->arg);
    }
}

/* Just before the loop polls: what the client buffered during this iteration (with SendAsap it
 * asks for the write interest at its first publish) leaves in one write, and the interest
 * comes and goes within the iteration.  What the socket does not take waits for the watcher. */
static void flush(struct ev_loop *ev, ev_prepare *w, int revents)
{
    wsk_natsev *x = w->data;
    (void)ev;
    (void)revents;
    if (x->cur_fd >= 0 && (x->cur_events & EV_WRITE)) natsConnection_ProcessWriteEvent(x->cur_nc);
}

static void on_async(struct ev_loop *ev, ev_async *w, int revents)
{
    wsk_natsev *x = w->data;
    (void)ev;
    (void)revents;
    apply(x);
    x->wake(x->arg);
}

void wsk_natsev_init(wsk_natsev *x, struct ev_loop *ev, void (*wake)(void *arg), void *arg)
{
    x->ev = ev;
    x->loop_thread = pthread_self();
    pthread_mutex_init(&x->mu, NULL);
    x->fd = x->cur_fd = -1;
    x->nc = x->cur_nc = NULL;
    x->gen = x->cur_gen = 0;
    x->want_read = x->want_write = x->cur_events = 0;
    x->wake = wake;
    x->arg = arg;
    x->reading = x->woken = 0;
    ev_init(&x->io, on_io);
    x->io.data = x;
    ev_async_init(&x->async, on_async);
    x->async.data = x;
    ev_async_start(ev, &x->async);
    ev_unref(ev); /* the wake-up alone does not keep the loop running */
    ev_prepare_init(&x->flush, flush);
    x->flush.data = x;
    ev_prepare_start(ev, &x->flush);
    ev_unref(ev); /* nor does the flush */
}

void wsk_natsev_stop(wsk_natsev *x)
{
    ev_io_stop(x->ev, &x->io);
    ev_ref(x->ev);
    ev_async_stop(x->ev, &x->async);
    ev_ref(x->ev);
    ev_prepare_stop(x->ev, &x->flush);
    pthread_mutex_destroy(&x->mu);
}

void wsk_natsev_wake(wsk_natsev *x)
{
    if (pthread_equal(pthread_self(), x->loop_thread) && x->reading)
        x->woken = 1;
    else
        ev_async_send(x->ev, &x->async);
}

/* A hook changed the wanted state: apply it now on the loop thread, else wake the loop. */
static natsStatus changed(wsk_natsev *x)
{
    if (pthread_equal(pthread_self(), x->loop_thread))
        apply(x);
    else
        ev_async_send(x->ev, &x->async);
    return NATS_OK;
}

natsStatus wsk_natsev_attach(void **userData, void *loop, natsConnection *nc, natsSock socket)
{
    wsk_natsev *x = loop;
    pthread_mutex_lock(&x->mu);
    x->nc = nc;
    x->fd = socket;
    x->gen++;
    x->want_read = 1; /* as the libevent adapter: reading starts at attach */
    x->want_write = 0;
    pthread_mutex_unlock(&x->mu);
    *userData = x;
    return changed(x);
}

natsStatus wsk_natsev_read(void *userData, bool add)
{
    wsk_natsev *x = userData;
    pthread_mutex_lock(&x->mu);
    x->want_read = add;
    pthread_mutex_unlock(&x->mu);
    return changed(x);
}

natsStatus wsk_natsev_write(void *userData, bool add)
{
    wsk_natsev *x = userData;
    pthread_mutex_lock(&x->mu);
    x->want_write = add;
    pthread_mutex_unlock(&x->mu);
    return changed(x);
}

natsStatus wsk_natsev_detach(void *userData)
{
    wsk_natsev *x = userData;
    pthread_mutex_lock(&x->mu);
    x->fd = -1;
    x->want_read = x->want_write = 0;
    pthread_mutex_unlock(&x->mu);
    return changed(x);
}
