/* The NATS client's libev adapter (lib/nats_libev.c) without a NATS server: hooks called from
 * another thread reach the loop through its wake-up, and a detach and an attach merged into one
 * wake-up re-arm the watcher even when the new socket has the old one's fd number (the kernel
 * hands out the lowest free number: a reconnect often gets the same one). */
#include "nats_libev.h"
#include "test.h"

#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

struct probe {
    wsk_natsev x;
    void *ud;
    int reads, wakes;
    int old_fd, new_fd, peer; /* the reconnect's sockets */
};

/* Stands in for on_io, which would hand the event to the NATS client. */
static void on_readable(struct ev_loop *ev, ev_io *w, int revents)
{
    struct probe *p = (struct probe *)((char *)w - offsetof(struct probe, x.io));
    char b[16];
    (void)ev;
    if (revents & EV_READ && read(w->fd, b, sizeof b) > 0) p->reads++;
}

static void on_wake(void *arg)
{
    ((struct probe *)arg)->wakes++;
}

/* What NATS' reconnect thread does: the old socket goes, a new one comes, two hooks in a row. */
static void *reconnect(void *arg)
{
    struct probe *p = arg;
    int sv[2];
    wsk_natsev_detach(p->ud);
    close(p->old_fd);
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) return NULL;
    p->new_fd = sv[0];
    p->peer = sv[1];
    wsk_natsev_attach(&p->ud, &p->x, NULL, p->new_fd);
    return NULL;
}

int main(void)
{
    struct ev_loop *ev = ev_loop_new(EVBACKEND_EPOLL);
    struct probe p = {.new_fd = -1, .peer = -1};
    int sv[2];
    CHECK(ev && socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "a loop and a socket");
    wsk_natsev_init(&p.x, ev, on_wake, &p);
    ev_set_cb(&p.x.io, on_readable);
    p.old_fd = sv[0];
    CHECK(wsk_natsev_attach(&p.ud, &p.x, NULL, p.old_fd) == NATS_OK, "attach on the loop thread");
    CHECK(write(sv[1], "a", 1) == 1, "write");
    SPIN_UNTIL(p.reads == 1, ev_run(ev, EVRUN_ONCE));
    CHECK(p.reads == 1, "the first socket's bytes are read");
    close(sv[1]);

    pthread_t t;
    CHECK(pthread_create(&t, NULL, reconnect, &p) == 0 && pthread_join(t, NULL) == 0,
          "detach and attach from another thread");
    CHECK(p.new_fd == p.old_fd, "the new socket has the old fd number (%d, %d)", p.new_fd,
          p.old_fd);
    SPIN_UNTIL(p.wakes > 0, ev_run(ev, EVRUN_ONCE));
    CHECK(p.wakes > 0, "the hooks woke the loop");
    CHECK(write(p.peer, "b", 1) == 1, "write");
    SPIN_UNTIL(p.reads == 2, ev_run(ev, EVRUN_NOWAIT));
    CHECK(p.reads == 2, "the new socket with the same fd number is watched");

    wsk_natsev_detach(p.ud);
    wsk_natsev_stop(&p.x);
    close(p.new_fd);
    close(p.peer);
    ev_loop_destroy(ev);
    return TEST_DONE();
}
