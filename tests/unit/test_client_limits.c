/* A client's limits are its own: wsk_client_opts fill the limits the shared data path reads
 * (not a server's defaults), and a server's options do not reach its clients.  A server and a
 * client of the library run in one loop, driven until a condition holds (bounded in time). */
#include "test.h"
#include "wskit.h"

#include <ev.h>
#include <signal.h>
#include <time.h>

static struct ev_loop *ev;
static wsk_ws *srv_ws;
static int cl_open, cl_err, cl_closed, cl_msgs;
static unsigned cl_code;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Runs the loop until cond holds or 5 s pass. */
#define WAIT_FOR(cond)                                                                             \
    do {                                                                                           \
        double until_ = now_s() + 5;                                                               \
        while (!(cond) && now_s() < until_) ev_run(ev, EVRUN_ONCE | EVRUN_NOWAIT);                 \
    } while (0)

static void srv_open(wsk_ws *ws)
{
    srv_ws = ws;
}

static void cl_on_open(wsk_ws *ws)
{
    (void)ws;
    cl_open++;
}

static void cl_on_message(wsk_ws *ws, const void *data, size_t len, wsk_opcode op)
{
    (void)ws;
    (void)data;
    (void)len;
    (void)op;
    cl_msgs++;
}

static void cl_on_error(wsk_ws *ws, int err, const char *msg)
{
    (void)ws;
    (void)msg;
    cl_err = err;
}

static void cl_on_close(wsk_ws *ws, unsigned code, const char *reason, size_t len)
{
    (void)ws;
    (void)reason;
    (void)len;
    cl_code = code;
    cl_closed++;
}

/* Connects a client with max_payload `max` (0: the default) and waits until both sides are open. */
static wsk_ws *connect_client(wsk_loop *loop, unsigned port, size_t max)
{
    static const wsk_handlers h = {
        .open = cl_on_open, .message = cl_on_message, .error = cl_on_error, .close = cl_on_close};
    wsk_client_opts o;
    char url[64];
    int err;
    wsk_client_opts_init(&o);
    o.max_payload = max;
    snprintf(url, sizeof url, "ws://127.0.0.1:%u/", port);
    cl_open = cl_err = cl_closed = cl_msgs = 0;
    srv_ws = NULL;
    wsk_ws *c = wsk_connect(loop, url, &o, &h, NULL, &err);
    WAIT_FOR(cl_open && srv_ws);
    return c;
}

int main(void)
{
    wsk_loop *loop = test_loop(&ev);
    /* A server whose own limit (64 bytes) is far below what its clients accept. */
    wsk_server_opts so;
    wsk_server_opts_init(&so);
    so.max_payload = 64;
    wsk_handlers sh = {.open = srv_open};
    wsk_server *srv = wsk_server_new(loop, &so, &sh, NULL);
    if (!srv || wsk_server_listen(srv, "127.0.0.1", 0) < 0) return 1;
    unsigned port = wsk_server_port(srv);
    static char big[4096];
    memset(big, 'x', sizeof big);

    /* The client's max_payload (1000) is what its socket enforces: 1000 bytes pass, 1001 fail
     * with 1009 on the client side. */
    connect_client(loop, port, 1000);
    CHECK(cl_open == 1 && srv_ws, "a client connects");
    if (!srv_ws) return TEST_DONE();
    wsk_send(srv_ws, big, 1000, WSK_OP_BINARY, 0);
    WAIT_FOR(cl_msgs == 1);
    CHECK(cl_msgs == 1 && !cl_closed, "a message at the client's max_payload arrives");
    wsk_send(srv_ws, big, 1001, WSK_OP_BINARY, 0);
    WAIT_FOR(cl_closed);
    CHECK(cl_err == WSK_ERR_TOO_BIG && cl_code == 1009 && cl_msgs == 1,
          "one byte over the client's max_payload: WSK_ERR_TOO_BIG and 1009 (err %d, code %u)",
          cl_err, cl_code);

    /* The server's limit (64) is not its clients': a client with the default (16 MiB) takes
     * 4 KiB. */
    connect_client(loop, port, 0);
    if (srv_ws) wsk_send(srv_ws, big, sizeof big, WSK_OP_BINARY, 0);
    WAIT_FOR(cl_msgs == 1 || cl_closed);
    CHECK(cl_msgs == 1 && !cl_closed,
          "a client's default max_payload is its own, not the server's");

    wsk_server_free(srv);
    WAIT_FOR(cl_closed);
    wsk_loop_free(loop);
    return TEST_DONE();
}
