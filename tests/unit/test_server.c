/* The server API in one process: the upgrade handler (refusal, user data, headers, subprotocol),
 * send return values under backpressure (>0, -1, 0) and drain, cork, close and terminate.  The
 * test drives the loop with EVRUN_NOWAIT while a blocking socket plays the client. */
#include "test.h"
#include "wskit.h"

#include <arpa/inet.h>
#include <ev.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

static struct ev_loop *ev;
static wsk_ws *last_open;
static int opens, drains, closes, messages;
static unsigned close_code;
static char close_reason[64];
static int upgrade_status;

static void spin(int ms)
{
    for (int i = 0; i < ms; i++) {
        ev_run(ev, EVRUN_NOWAIT);
        usleep(1000);
    }
}

static int on_upgrade(wsk_server *srv, const wsk_request *req, wsk_response *res)
{
    (void)srv;
    size_t len;
    const char *path = wsk_request_path(req, &len);
    char name[32];
    if (len == 7 && !memcmp(path, "/refuse", 7)) {
        wsk_response_append_body(res, "go away", 7);
        return 403;
    }
    if (wsk_request_query_param(req, "name", name, sizeof name) >= 0)
        wsk_response_add_header(res, "X-Name", name);
    if (wsk_request_offers_protocol(req, "chat.v2")) wsk_response_set_protocol(res, "chat.v2");
    wsk_response_add_header(res, "Set-Cookie", "session=abc");
    wsk_response_set_data(res, (void *)0x1234);
    return upgrade_status;
}

static void on_open(wsk_ws *ws)
{
    last_open = ws;
    opens++;
}

static void on_message(wsk_ws *ws, const void *data, size_t len, wsk_opcode op)
{
    (void)ws;
    (void)data;
    (void)len;
    (void)op;
    messages++;
}

static void on_drain(wsk_ws *ws)
{
    (void)ws;
    drains++;
}

static void on_close(wsk_ws *ws, unsigned code, const char *reason, size_t len)
{
    (void)ws;
    closes++;
    close_code = code;
    snprintf(close_reason, sizeof close_reason, "%.*s", (int)len, reason);
}

static int client(unsigned port, const char *path, const char *extra, char *resp, size_t cap)
{
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                     "%s\r\n",
                     path, extra);
    return test_exchange(ev, port, req, (size_t)n, "\r\n\r\n", resp, cap);
}

/* True when a read on fd would not block (data, or the peer's FIN). */
static int readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) == 1;
}

/* Reads and discards what is readable on fd. */
static size_t drain_fd(int fd)
{
    char buf[65536];
    size_t total = 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (poll(&p, 1, 0) == 1) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r <= 0) break;
        total += (size_t)r;
    }
    return total;
}

static void cork_fn(wsk_ws *ws, void *arg)
{
    for (int i = 0; i < 3; i++) wsk_send(ws, "abc", 3, WSK_OP_TEXT, 0);
    *(int *)arg = 1;
}

int main(void)
{
    wsk_loop *loop = test_loop(&ev);
    wsk_server_opts o;
    wsk_server_opts_init(&o);
    CHECK(o.max_payload == 16u << 20 && o.idle_timeout == 120 && o.send_pings == 1 &&
              o.backpressure_limit == 1u << 20 && !o.close_on_backpressure_limit,
          "defaults follow Bun's (16 MiB, 120 s, pings, 1 MiB backpressure)");
    o.backpressure_limit = 256 * 1024;
    wsk_handlers h = {.upgrade = on_upgrade,
                      .open = on_open,
                      .message = on_message,
                      .drain = on_drain,
                      .close = on_close};
    wsk_server *srv = wsk_server_new(loop, &o, &h, (void *)0x99);
    CHECK(srv && wsk_server_listen(srv, "127.0.0.1", 0) == 0 && wsk_server_port(srv) > 0,
          "listen on port 0 picks a port");
    CHECK(wsk_server_user(srv) == (void *)0x99, "server user pointer");
    unsigned port = wsk_server_port(srv);

    char resp[4096];
    int fd = client(port, "/refuse", "", resp, sizeof resp);
    CHECK(!strncmp(resp, "HTTP/1.1 403", 12) && opens == 0, "upgrade handler refuses with 403");
    close(fd);

    fd = client(port, "/room?name=al%20ice", "Sec-WebSocket-Protocol: chat.v1, chat.v2\r\n", resp,
                sizeof resp);
    CHECK(!strncmp(resp, "HTTP/1.1 101", 12) && opens == 1, "upgrade accepted");
    CHECK(strstr(resp, "X-Name: al ice\r\n") && strstr(resp, "Set-Cookie: session=abc\r\n"),
          "query parameter decoded, extra response headers sent");
    CHECK(strstr(resp, "Sec-WebSocket-Protocol: chat.v2\r\n") &&
              !strcmp(wsk_ws_protocol(last_open), "chat.v2"),
          "subprotocol chosen from the offer");
    CHECK(wsk_ws_data(last_open) == (void *)0x1234, "user data attached at upgrade");
    CHECK(wsk_ws_ready_state(last_open) == WSK_OPEN && wsk_server_connections(srv) == 1,
          "ready state and connection count");
    char addr[64];
    CHECK(!strncmp(wsk_ws_remote_address(last_open, addr, sizeof addr), "127.0.0.1:", 10),
          "remote address %s", addr);

    /* Backpressure: the client does not read.  Sends are accepted (> 0) until the kernel
     * buffers are full, then queued (-1), then dropped (0) at the limit. */
    wsk_ws *ws = last_open;
    static char big[16384];
    long r = wsk_send(ws, big, sizeof big, WSK_OP_BINARY, 0);
    CHECK(r == (long)sizeof big, "send returns the payload bytes, as Bun (%ld)", r);
    int saw_queued = 0, saw_dropped = 0;
    for (int i = 0; i < 2000 && !saw_dropped; i++) {
        r = wsk_send(ws, big, sizeof big, WSK_OP_BINARY, 0);
        if (r == -1) saw_queued = 1;
        if (r == 0) saw_dropped = 1;
        spin(1);
    }
    CHECK(saw_queued, "send returns -1 once the peer stops reading");
    CHECK(saw_dropped && wsk_ws_buffered(ws) <= o.backpressure_limit,
          "send returns 0 at the backpressure limit; queue %zu <= limit", wsk_ws_buffered(ws));
    CHECK(drains == 0, "no drain while the queue is full");
    for (int i = 0; i < 5000 && drains == 0; i++) {
        drain_fd(fd);
        spin(1);
    }
    CHECK(drains == 1 && wsk_ws_buffered(ws) == 0,
          "drain fires once the queue is written (%d, %zu)", drains, wsk_ws_buffered(ws));
    drain_fd(fd);

    int corked = 0;
    wsk_cork(ws, cork_fn, &corked);
    size_t got = 0;
    SPIN_UNTIL(got >= 15, got += drain_fd(fd); spin(1));
    CHECK(corked && got == 15, "cork: three sends written at once (%zu bytes)", got);

    wsk_close(ws, 4000, "bye now", 7);
    CHECK(wsk_ws_ready_state(ws) == WSK_CLOSING, "close starts the closing handshake");
    unsigned char cl[64];
    SPIN_UNTIL(readable(fd), spin(1));
    ssize_t n = read(fd, cl, sizeof cl);
    CHECK(n == 11 && cl[0] == 0x88 && cl[2] == 0x0f && cl[3] == 0xa0 &&
              !memcmp(cl + 4, "bye now", 7),
          "close frame with code 4000 and reason");
    unsigned char reply[] = {0x88, 0x82, 1, 2, 3, 4, 0x0f ^ 1, 0xa0 ^ 2};
    CHECK(write(fd, reply, sizeof reply) == (ssize_t)sizeof reply, "client answers the close");
    SPIN_UNTIL(closes == 1 && readable(fd), spin(1));
    CHECK(closes == 1 && close_code == 4000, "close handler gets the peer's code (%u)", close_code);
    CHECK(read(fd, cl, sizeof cl) == 0, "server closed TCP after the handshake");
    close(fd);

    fd = client(port, "/", "", resp, sizeof resp);
    ws = last_open;
    wsk_terminate(ws);
    SPIN_UNTIL(closes == 2 && readable(fd), spin(1));
    CHECK(closes == 2 && close_code == 1006, "terminate: close handler with 1006");
    CHECK(read(fd, cl, sizeof cl) == 0, "terminate drops the connection");
    close(fd);

    upgrade_status = 0;
    fd = client(port, "/", "", resp, sizeof resp);
    unsigned char hello[] = {0x81, 0x85, 0, 0, 0, 0, 'h', 'e', 'l', 'l', 'o'};
    CHECK(write(fd, hello, sizeof hello) == (ssize_t)sizeof hello, "message sent");
    SPIN_UNTIL(messages == 1, spin(1));
    CHECK(messages == 1, "message handler called");

    /* Pause: what the client sends waits in the kernel until resume. */
    ws = last_open;
    wsk_ws_pause(ws);
    CHECK(wsk_ws_paused(ws), "pause: the socket says it is paused");
    CHECK(write(fd, hello, sizeof hello) == (ssize_t)sizeof hello, "message sent while paused");
    spin(50);
    CHECK(messages == 1, "no message is read while paused (%d)", messages);
    wsk_ws_resume(ws);
    SPIN_UNTIL(messages == 2, spin(1));
    CHECK(messages == 2 && !wsk_ws_paused(ws), "resume reads the waiting message");
    wsk_ws_pause(ws);
    wsk_close(ws, 1000, NULL, 0);
    CHECK(!wsk_ws_paused(ws), "closing reads again, for the peer's close frame");
    wsk_server_free(srv);
    CHECK(closes == 3, "freeing the server closes its sockets");
    close(fd);
    wsk_loop_free(loop);
    return TEST_DONE();
}
