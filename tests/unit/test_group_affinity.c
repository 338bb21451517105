/* Connection affinity in a server group (wsk_group_set_affinity): two members, each listening
 * on a port of its own, and a function that names the owner from the request's X-Owner header.
 * A connection accepted by member 0 for member 1 opens on member 1, and a frame sent in the
 * same write as its upgrade request reaches member 1's message handler and is answered (the
 * bytes read on member 0 travel with the socket); the other way round too.  The function runs
 * once per connection (the owner does not ask again), a connection it keeps stays, and one
 * whose owner is at max_connections is served where it was accepted.  The group counts each
 * connection accepted once.  One that reaches an owner that filled up on the way is closed and
 * counted as a failed hand-off.  A TSan target (make tsan): the socket crosses threads. */
#include "test.h"
#include "group_members.h"
#include "rawws.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#define LOOPS 2

static wsk_group *grp;
static wsk_server *srv[LOOPS];
static unsigned port[LOOPS];
static atomic_int opened[LOOPS], received[LOOPS], asked, closed;

static int owner(void *user, const wsk_request *req, unsigned thread)
{
    (void)user;
    atomic_fetch_add(&asked, 1);
    size_t len;
    const char *v = wsk_request_header(req, "x-owner", &len);
    if (!v) return -1;
    if (len == 5 && !memcmp(v, "other", 5)) return (int)(LOOPS - 1 - thread);
    return v[0] - '0';
}

static unsigned member_of(wsk_ws *ws)
{
    unsigned i = 0;
    wsk_server_group(wsk_ws_server(ws), &i);
    return i;
}

static void srv_open(wsk_ws *ws)
{
    atomic_fetch_add(&opened[member_of(ws)], 1);
}

static void srv_message(wsk_ws *ws, const void *data, size_t len, wsk_opcode op)
{
    atomic_fetch_add(&received[member_of(ws)], 1);
    wsk_send(ws, data, len, op, 0);
}

static void srv_close(wsk_ws *ws, unsigned code, const char *reason, size_t len)
{
    (void)ws;
    (void)code;
    (void)reason;
    (void)len;
    atomic_fetch_add(&closed, 1);
}

static atomic_int blocked, unblock;

/* On member 0's loop: holds it until the test's clients wait to be accepted and read. */
static void hold(void *arg, wsk_loop *loop)
{
    (void)arg;
    (void)loop;
    atomic_store(&blocked, 1);
    SPIN_UNTIL(atomic_load(&unblock), usleep(1000));
}

static void *run_group(void *arg)
{
    (void)arg;
    wsk_group_run(grp);
    return NULL;
}

/* A client to port[at] with header "X-Owner: own" (none when NULL) and a masked text frame
 * "hello" in the same write as the request: its socket, or -1. */
static int client(unsigned at, const char *own)
{
    char extra[64] = "";
    if (own) snprintf(extra, sizeof extra, "X-Owner: %s\r\n", own);
    uint8_t f[11] = {0x81, 0x80 | 5, 0x37, 0xfa, 0x21, 0x3d};
    for (int i = 0; i < 5; i++) f[6 + i] = (uint8_t) "hello"[i] ^ f[2 + i % 4];
    return rawws_connect_with(port[at], extra, f, sizeof f);
}

/* 1 when "hello" comes back on fd; 0 at EOF (or after 5 s). */
static int echoed(int fd)
{
    if (fd < 0) return 0;
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0, hl = 0;
    uint64_t n = 0;
    int open = 0, eof = 0, got = 0;
    SPIN_UNTIL((got = rawws_read(fd, &buf, &len, &cap, &open, &eof) && open &&
                      rawws_frame(buf, len, &hl, &n)) ||
                   eof,
               usleep(1000));
    got = got && n == 5 && !memcmp(buf + hl, "hello", 5);
    free(buf);
    return got;
}

static int echo_via(unsigned at, const char *own, int *fd)
{
    *fd = client(at, own);
    return echoed(*fd);
}

static int total(atomic_int *a)
{
    return atomic_load(&a[0]) + atomic_load(&a[1]);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    grp = wsk_group_new(LOOPS, NULL);
    if (!grp) abort();
    wsk_server_opts o;
    wsk_server_opts_init(&o);
    o.max_connections = 3;
    static const wsk_handlers h = {.open = srv_open, .message = srv_message, .close = srv_close};
    group_members(grp, &o, &h, srv, port);
    CHECK(wsk_group_set_affinity(grp, owner, NULL) == 0, "the affinity function is set");
    pthread_t th;
    if (pthread_create(&th, NULL, run_group, NULL)) abort();

    int fd[5];
    CHECK(echo_via(0, "1", &fd[0]), "accepted by member 0 for member 1: the pipelined frame "
                                    "is answered");
    CHECK(atomic_load(&opened[1]) == 1 && atomic_load(&received[1]) == 1 && total(opened) == 1 &&
              total(received) == 1,
          "it opened on member 1, whose handler got the frame (%d/%d opened, %d/%d received)",
          atomic_load(&opened[0]), atomic_load(&opened[1]), atomic_load(&received[0]),
          atomic_load(&received[1]));
    CHECK(echo_via(1, "0", &fd[1]) && atomic_load(&opened[0]) == 1 &&
              atomic_load(&received[0]) == 1,
          "accepted by member 1 for member 0: opened and answered there");
    int before = atomic_load(&asked);
    CHECK(echo_via(0, "other", &fd[2]) && atomic_load(&opened[1]) == 2 &&
              atomic_load(&asked) == before + 1,
          "handed once: the owner does not ask again (%d calls)", atomic_load(&asked) - before);
    CHECK(echo_via(1, NULL, &fd[3]) && atomic_load(&opened[1]) == 3,
          "a connection the function keeps stays where it was accepted");
    CHECK(echo_via(0, "1", &fd[4]) && atomic_load(&opened[0]) == 2 && atomic_load(&opened[1]) == 3,
          "the owner at max_connections: served where it was accepted (%d, %d)",
          atomic_load(&opened[0]), atomic_load(&opened[1]));
    wsk_stats st;
    SPIN_UNTIL(wsk_group_stats(grp, &st, sizeof st) == 0 && st.accepted == 5, usleep(10000));
    CHECK(st.accepted == 5 && st.handoffs_failed == 0 && wsk_group_handoffs_failed(grp) == 0,
          "the group counts 5 connections accepted, none failed (%llu, %llu)",
          (unsigned long long)st.accepted, (unsigned long long)st.handoffs_failed);

    /* Member 1 at 2 of 3, member 0 at none: two clients for member 1 wait while member 0 is
     * held, so it reads both in one turn, while member 1 is not full yet, and hands both; member
     * 1 adopts the first and, full now, closes the second: a failed hand-off. */
    close(fd[0]);
    close(fd[1]);
    close(fd[4]);
    SPIN_UNTIL(atomic_load(&closed) == 3, usleep(1000));
    if (wsk_group_call(grp, 0, hold, NULL) < 0) abort();
    SPIN_UNTIL(atomic_load(&blocked), usleep(1000));
    int late[2] = {client(0, "1"), client(0, "1")};
    atomic_store(&unblock, 1);
    int echoes = echoed(late[0]) + echoed(late[1]);
    SPIN_UNTIL(wsk_group_handoffs_failed(grp) == 1, usleep(1000));
    CHECK(echoes == 1 && wsk_group_handoffs_failed(grp) == 1 && atomic_load(&opened[1]) == 4,
          "the owner filled up on the way: one adopted, one closed and counted (%d echoed, %zu "
          "failed)",
          echoes, wsk_group_handoffs_failed(grp));
    for (int i = 0; i < 2; i++)
        if (late[i] >= 0) close(late[i]);
    close(fd[2]);
    close(fd[3]);
    wsk_group_shutdown(grp, 1001, NULL, 0);
    pthread_join(th, NULL);
    CHECK(wsk_group_set_affinity(grp, NULL, NULL) == WSK_ERR_STATE, "not once the group ran");
    for (unsigned i = 0; i < LOOPS; i++) wsk_server_free(srv[i]);
    wsk_group_free(grp);
    return TEST_DONE();
}
