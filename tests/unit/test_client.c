/* The client side of the opening handshake (client.c) against a server played by this test on
 * a loopback listener: the request as sent, a 101 read one byte at a time, frames that arrive
 * with the 101, an invalid accept key or subprotocol, refusals with a plain and a chunked body,
 * a server that hangs up before or inside its answer, a response head over max_header,
 * garbage, a redirect followed to the same listener, masking of what the client sends, and a
 * masked frame from the server. */
#include "test.h"
#include "internal.h"
#include "msg_handshake.h"

#include <arpa/inet.h>
#include <ev.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

static struct ev_loop *ev;
static wsk_loop *loop;
static int lfd;
static unsigned port;

/* What the handlers saw. */
static char events[1024];
static int opened, errors, closes, last_err, status_at_open, status_at_error;
static unsigned close_code;
static char proto_at_open[32], header_at_open[64], body_at_error[128], url_at_open[128];

#define note(...) test_append(events, sizeof events, __VA_ARGS__)

static void on_open(wsk_ws *ws)
{
    size_t len = 0;
    const char *x = wsk_client_header(ws, "X-Extra", &len);
    opened++;
    status_at_open = wsk_client_status(ws);
    snprintf(proto_at_open, sizeof proto_at_open, "%s", wsk_ws_protocol(ws));
    snprintf(header_at_open, sizeof header_at_open, "%.*s", x ? (int)len : 0, x ? x : "");
    snprintf(url_at_open, sizeof url_at_open, "%s", wsk_client_url(ws));
    note("open;");
}

static void on_message(wsk_ws *ws, const void *data, size_t len, wsk_opcode op)
{
    (void)ws;
    note("msg %d %.*s;", (int)op, (int)len, (const char *)data);
}

static void on_error(wsk_ws *ws, int err, const char *msg)
{
    size_t len = 0;
    const char *body = wsk_client_response_body(ws, &len);
    errors++;
    last_err = err;
    status_at_error = wsk_client_status(ws);
    snprintf(body_at_error, sizeof body_at_error, "%.*s", body ? (int)len : 0, body ? body : "");
    note("error %s;", msg);
}

static void on_close(wsk_ws *ws, unsigned code, const char *reason, size_t len)
{
    (void)ws;
    note("close %u %.*s;", code, (int)len, reason);
    close_code = code;
    closes++;
}

static const wsk_handlers handlers = {
    .open = on_open, .message = on_message, .error = on_error, .close = on_close};

static void turn(void)
{
    ev_run(ev, EVRUN_NOWAIT);
    poll(NULL, 0, 1);
}

/* A client of ws://127.0.0.1:port/path with the given options (NULL: defaults). */
static wsk_ws *connect_to(const char *path, const wsk_client_opts *o)
{
    char url[128];
    snprintf(url, sizeof url, "ws://127.0.0.1:%u%s", port, path);
    events[0] = 0;
    opened = errors = closes = 0;
    last_err = status_at_open = status_at_error = 0;
    close_code = 0;
    int err = 0;
    wsk_ws *ws = wsk_connect(loop, url, o, &handlers, NULL, &err);
    if (!ws) printf("# wsk_connect: %d\n", err);
    return ws;
}

/* The server's end of the client's next connection (non-blocking), or -1. */
static int accept_one(void)
{
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    SPIN_UNTIL(poll(&p, 1, 0) == 1, turn());
    int fd = accept(lfd, NULL, NULL);
    if (fd >= 0) fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

/* Reads the request head into buf (NUL-terminated); its length, 0 if none came in 5 s. */
static size_t read_request(int fd, char *buf, size_t cap)
{
    size_t got = 0;
    buf[0] = 0;
    SPIN_UNTIL(strstr(buf, "\r\n\r\n"), {
        turn();
        ssize_t r = read(fd, buf + got, cap - 1 - got);
        if (r > 0) got += (size_t)r;
        buf[got] = 0;
    });
    return strstr(buf, "\r\n\r\n") ? got : 0;
}

/* The value of header `name` in a request head (copied into out), or "" when absent. */
static const char *header_of(const char *head, const char *name, char *out, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\r\n%s: ", name);
    const char *p = strstr(head, pat);
    out[0] = 0;
    if (p) {
        p += strlen(pat);
        size_t n = strcspn(p, "\r");
        snprintf(out, cap, "%.*s", (int)(n < cap ? n : cap - 1), p);
    }
    return out;
}

/* A 101 answering the request in `req`, with extra header lines (each ending in CRLF). */
static int switching(const char *req, const char *extra, char *out, size_t cap)
{
    char key[64], accept[29];
    header_of(req, "Sec-WebSocket-Key", key, sizeof key);
    wsk_accept_key(key, strlen(key), accept);
    return snprintf(out, cap,
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s\r\n",
                    accept, extra);
}

static void put(int fd, const void *p, size_t n)
{
    if (write(fd, p, n) != (ssize_t)n) printf("# short write to the client\n");
}

/* Accepts the next connection, reads its request, answers with `answer` (len bytes) and runs
 * the loop until the client opens or fails.  The server's end, or -1. */
static int answer(const void *ans, size_t len, char *req, size_t cap)
{
    int fd = accept_one();
    if (fd < 0 || !read_request(fd, req, cap)) return fd;
    put(fd, ans, len);
    SPIN_UNTIL(opened || closes, turn());
    return fd;
}

static void request_and_byte_by_byte(void)
{
    static const char *const extra[] = {"X-A: b"};
    static const char *const protos[] = {"chat", "superchat"};
    wsk_client_opts o;
    wsk_client_opts_init(&o);
    o.headers = extra;
    o.nheaders = 1;
    o.protocols = protos;
    o.nprotocols = 2;
    wsk_ws *ws = connect_to("/room?x=1", &o);
    int fd = accept_one();
    char req[4096], v[64], host[64];
    CHECK(ws && fd >= 0 && read_request(fd, req, sizeof req), "the client connects and sends a "
                                                              "request");
    snprintf(host, sizeof host, "127.0.0.1:%u", port);
    CHECK(!strncmp(req, "GET /room?x=1 HTTP/1.1\r\n", 24) &&
              !strcmp(header_of(req, "Host", v, sizeof v), host) &&
              !strcasecmp(header_of(req, "Upgrade", v, sizeof v), "websocket") &&
              !strcmp(header_of(req, "Sec-WebSocket-Version", v, sizeof v), "13"),
          "GET with the path and query, Host with the port, Upgrade, version 13");
    CHECK(strlen(header_of(req, "Sec-WebSocket-Key", v, sizeof v)) == 24 && v[22] == '=' &&
              v[23] == '=',
          "a 16-byte key in base64 (%s)", v);
    CHECK(!strcmp(header_of(req, "Sec-WebSocket-Protocol", v, sizeof v), "chat, superchat") &&
              !strcmp(header_of(req, "X-A", v, sizeof v), "b"),
          "the subprotocols offered and the extra header");
    size_t rlen = 0;
    CHECK(wsk_client_request_head(ws, &rlen) && rlen == strlen(req),
          "the request head as sent is kept for diagnostics");

    char resp[512];
    int n =
        switching(req, "Sec-WebSocket-Protocol: superchat\r\nX-Extra: yes\r\n", resp, sizeof resp);
    int early = 0;
    for (int i = 0; i < n; i++) {
        put(fd, resp + i, 1);
        for (int k = 0; k < 3; k++) turn();
        if (i < n - 1) early |= opened;
    }
    SPIN_UNTIL(opened, turn());
    CHECK(!early && opened == 1 && !errors, "a 101 arriving one byte at a time opens once, at "
                                            "its last byte");
    CHECK(status_at_open == 101 && !strcmp(proto_at_open, "superchat") &&
              !strcmp(header_at_open, "yes"),
          "the open handler sees the status, the chosen subprotocol and the response headers");

    /* What the client sends is masked (RFC 6455 5.3). */
    wsk_send(ws, "abc", 3, WSK_OP_TEXT, 0);
    uint8_t f[64];
    size_t got = 0;
    SPIN_UNTIL(got >= 9, {
        turn();
        ssize_t r = read(fd, f + got, sizeof f - got);
        if (r > 0) got += (size_t)r;
    });
    uint8_t plain[3] = {0};
    for (int i = 0; i < 3 && got >= 9; i++) plain[i] = f[6 + i] ^ f[2 + i];
    CHECK(got == 9 && f[0] == 0x81 && f[1] == 0x83 && !memcmp(plain, "abc", 3),
          "a client frame is masked, and unmasks to the message");

    /* A masked frame from the server fails the connection with 1002. */
    static const uint8_t masked[] = {0x81, 0x82, 1, 2, 3, 4, 'h' ^ 1, 'i' ^ 2};
    put(fd, masked, sizeof masked);
    got = 0;
    int eof = 0;
    SPIN_UNTIL(closes || eof, {
        turn();
        ssize_t r = read(fd, f + got, sizeof f - got);
        if (r > 0) got += (size_t)r;
        if (r == 0) eof = 1;
    });
    SPIN_UNTIL(closes, turn());
    CHECK(last_err == WSK_ERR_PROTOCOL && closes == 1 && close_code == 1002,
          "a masked frame from the server: protocol error, close 1002 (%s)", events);
    close(fd);
    SPIN_UNTIL(loop->dirty == NULL, turn());
}

static void frames_with_the_101(void)
{
    wsk_ws *ws = connect_to("/", NULL);
    int fd = accept_one();
    char req[4096], resp[512];
    read_request(fd, req, sizeof req);
    int n = switching(req, "", resp, sizeof resp);
    memcpy(resp + n, "\x81\x05hello\x82\x01!", 10);
    put(fd, resp, (size_t)n + 10);
    SPIN_UNTIL(strstr(events, "msg 2"), turn());
    CHECK(ws && !strcmp(events, "open;msg 1 hello;msg 2 !;"),
          "frames in the same read as the 101 arrive after open, in order (%s)", events);
    wsk_terminate(ws);
    close(fd);
    turn();
}

/* A connection answered with `ans`: the error handler's code and the events. */
static void refused_with(const char *what, const char *ans, int want_err, int want_status,
                         const char *want_body)
{
    char req[4096];
    wsk_ws *ws = connect_to("/", NULL);
    int fd = answer(ans, strlen(ans), req, sizeof req);
    if (fd >= 0) close(fd);
    SPIN_UNTIL(closes, turn());
    CHECK(ws && !opened && errors == 1 && last_err == want_err && closes == 1 &&
              close_code == 1006 && status_at_error == want_status &&
              (!want_body || !strcmp(body_at_error, want_body)),
          "%s: error %d, status %d, body \"%s\", then close 1006 (%s)", what, last_err,
          status_at_error, body_at_error, events);
}

static void refusals(void)
{
    char req[4096];
    wsk_ws *ws = connect_to("/", NULL);
    int fd = accept_one();
    read_request(fd, req, sizeof req);
    char bad[512];
    int n = switching(req, "", bad, sizeof bad);
    char *acc = strstr(bad, "Accept: ");
    acc[8] = acc[8] == 'A' ? 'B' : 'A';
    put(fd, bad, (size_t)n);
    SPIN_UNTIL(closes, turn());
    CHECK(ws && !opened && last_err == WSK_ERR_HANDSHAKE && closes == 1 && close_code == 1006,
          "a wrong Sec-WebSocket-Accept fails the handshake (%s)", events);
    close(fd);

    ws = connect_to("/", NULL);
    fd = accept_one();
    read_request(fd, req, sizeof req);
    n = switching(req, "Sec-WebSocket-Protocol: chat\r\n", bad, sizeof bad);
    put(fd, bad, (size_t)n);
    SPIN_UNTIL(closes, turn());
    CHECK(ws && !opened && last_err == WSK_ERR_HANDSHAKE,
          "a subprotocol the client did not offer fails the handshake (%s)", events);
    close(fd);

    refused_with("403 with a body", "HTTP/1.1 403 Forbidden\r\nContent-Length: 7\r\n\r\ngo away",
                 WSK_ERR_HANDSHAKE, 403, "go away");
    refused_with("403 with a chunked body",
                 "HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "3\r\ngo \r\n4\r\naway\r\n0\r\n\r\n",
                 WSK_ERR_HANDSHAKE, 403, "go away");
    refused_with("a 200 whose body ends with the connection",
                 "HTTP/1.1 200 OK\r\n\r\nnot a websocket", WSK_ERR_HANDSHAKE, 200,
                 "not a websocket");
    refused_with("a hang-up before any answer", "", WSK_ERR_CONNECT, 0, NULL);
    refused_with("a hang-up inside the response head", "HTTP/1.1 101 Switching", WSK_ERR_HTTP, 0,
                 NULL);
    refused_with("garbage instead of HTTP", "SSH-2.0-OpenSSH_9.2\r\n\r\n", WSK_ERR_HTTP, 0, NULL);

    wsk_client_opts o;
    wsk_client_opts_init(&o);
    o.max_header = 1024;
    ws = connect_to("/", &o);
    fd = accept_one();
    read_request(fd, req, sizeof req);
    static char big[4096];
    n = snprintf(big, sizeof big, "HTTP/1.1 101 Switching Protocols\r\nX-Pad: ");
    memset(big + n, 'p', 2000);
    put(fd, big, (size_t)n + 2000);
    SPIN_UNTIL(closes, turn());
    CHECK(ws && !opened && last_err == WSK_ERR_HEADER_SIZE,
          "a response head over max_header fails at once (%s)", events);
    close(fd);
}

static void redirect(void)
{
    wsk_client_opts o;
    wsk_client_opts_init(&o);
    o.follow_redirects = 1;
    char req[4096], resp[512];
    wsk_ws *ws = connect_to("/old", &o);
    int fd = accept_one();
    read_request(fd, req, sizeof req);
    static const char moved[] =
        "HTTP/1.1 302 Found\r\nLocation: /new?y=2\r\nContent-Length: 0\r\n\r\n";
    put(fd, moved, sizeof moved - 1);
    int fd2 = accept_one();
    read_request(fd2, req, sizeof req);
    CHECK(!strncmp(req, "GET /new?y=2 HTTP/1.1\r\n", 23),
          "a 302 is followed: the next request asks for the Location");
    int n = switching(req, "", resp, sizeof resp);
    put(fd2, resp, (size_t)n);
    SPIN_UNTIL(opened || closes, turn());
    char want[128];
    snprintf(want, sizeof want, "ws://127.0.0.1:%u/new?y=2", port);
    CHECK(ws && opened == 1 && !errors && !strcmp(url_at_open, want),
          "and opens there; the client's URL is the new one (%s)", url_at_open);
    wsk_terminate(ws);
    close(fd);
    close(fd2);
    turn();
}

int main(void)
{
    loop = test_loop(&ev);
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 8) < 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &alen) < 0)
        return 1;
    port = ntohs(a.sin_port);

    request_and_byte_by_byte();
    frames_with_the_101();
    refusals();
    redirect();
    for (int i = 0; i < 5; i++) turn();
    close(lfd);
    wsk_loop_free(loop);
    return TEST_DONE();
}
