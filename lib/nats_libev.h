/* A libev adapter for the NATS C client's event-loop hooks (natsOptions_SetEventLoop), in the
 * shape of the client's own adapters/libevent.h: attach, read add/remove, write add/remove,
 * detach.
 *
 * One difference: libev is not thread-safe, and the NATS client calls these hooks from its own
 * threads too (attach after a reconnect runs on its reconnect thread).  So a hook records the
 * wanted state under a mutex and wakes the loop (ev_async); the loop thread applies it.  On the
 * loop thread itself the hook applies it at once.  The same wake-up serves the engine, which
 * queues messages and connection events from NATS' threads: `wake` runs on the loop thread
 * after each wake-up.
 *
 * Writes: with natsOptions_SetSendAsap the client asks for the write interest at the first
 * publish of a loop iteration instead of waking its flusher thread (which waits 1 ms for more);
 * a prepare watcher here writes the buffer just before the loop polls: every publish of the
 * iteration in one write, no wait, no extra poll. */
#ifndef WSK_NATS_LIBEV_H
#define WSK_NATS_LIBEV_H

#include <ev.h>
#include <nats/nats.h>
#include <pthread.h>

typedef struct wsk_natsev {
    struct ev_loop *ev;
    pthread_t loop_thread;
    ev_io io;
    ev_async async;
    ev_prepare flush; /* writes the client's buffer once per loop iteration */
    pthread_mutex_t mu;
    /* Wanted (under mu) and applied (loop thread) state of the socket's watcher.  gen counts
     * attaches: a detach and an attach that merge into one wake-up may bring back the same fd
     * number for a new socket, which libev must be told about all the same. */
    natsConnection *nc;
    int fd, want_read, want_write;
    unsigned gen;
    natsConnection *cur_nc; /* what on_io drives: read on the loop thread only */
    int cur_fd, cur_events;
    unsigned cur_gen;
    void (*wake)(void *arg); /* the engine's part of a wake-up */
    void *arg;
    int reading; /* on_io is in the client's read: a wake-up there runs once it returns */
    int woken;
} wsk_natsev;

/* Prepares x on ev (the caller's loop thread is the one that runs ev): wake(arg) runs on it after
 * each wsk_natsev_wake.  Pass x as the `loop` of natsOptions_SetEventLoop with the four hooks. */
void wsk_natsev_init(wsk_natsev *x, struct ev_loop *ev, void (*wake)(void *arg), void *arg);
/* Stops the watchers (after the connection is destroyed). */
void wsk_natsev_stop(wsk_natsev *x);
/* From any thread: have the loop run wake(arg) soon.  From the loop thread inside the client's
 * read (a message filter of the engine's), wake(arg) runs as the read returns, with no
 * system call. */
void wsk_natsev_wake(wsk_natsev *x);

natsStatus wsk_natsev_attach(void **userData, void *loop, natsConnection *nc, natsSock socket);
natsStatus wsk_natsev_read(void *userData, bool add);
natsStatus wsk_natsev_write(void *userData, bool add);
natsStatus wsk_natsev_detach(void *userData);

#endif
