/* Deferred HTTP answers (wsk_response_defer, wsk_deferred_respond): answered later (the
 * connection kept alive for the next request, closed after "Connection: close" or a request
 * pipelined behind), the fallback at the timeout, answered before the handler returned, a bad
 * answer, misuse, and a server freed while an answer is awaited.  A blocking socket plays the
 * client; the loop runs between. */
#include "test.h"
#include "wskit.h"

#include <arpa/inet.h>
#include <ev.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

static struct ev_loop *ev;
static wsk_deferred *waiting; /* the last deferral the handler made */
static int twice_null, zero_null, early_result;

static int is(const wsk_request *req, const char *path)
{
    size_t len;
    const char *p = wsk_request_path(req, &len);
    return len == strlen(path) && !memcmp(p, path, len);
}

static void on_request(wsk_server *srv, const wsk_request *req, wsk_response *res)
{
    (void)srv;
    wsk_response_add_header(res, "X-Fallback", "kept");
    if (is(req, "/now")) {
        wsk_response_append_body(res, "now", 3);
        return;
    }
    /* The fallback: what goes if the answer does not come in time. */
    wsk_response_set_status(res, 503);
    wsk_response_append_body(res, "fallback", 8);
    zero_null = wsk_response_defer(res, 0) == NULL;
    waiting = wsk_response_defer(res, is(req, "/slow") ? 0.05 : 30);
    twice_null = wsk_response_defer(res, 1) == NULL;
    if (is(req, "/early")) {
        early_result = wsk_deferred_respond(waiting, 202, "early", 5);
        waiting = NULL;
    }
}

/* Sends a request for path on fd, with the header lines `more` ("" for none); 0 or -1. */
static int send_on(int fd, const char *path, const char *more)
{
    char req[512];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n", path, more);
    return write(fd, req, (size_t)n) == n ? 0 : -1;
}

/* Connects and sends a request for path, keeping the connection alive. */
static int send_request(unsigned port, const char *path)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0 || send_on(fd, path, "") < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Answers the deferral the handler makes next with `body`. */
static void answer_next(const char *body)
{
    SPIN_UNTIL(waiting, ev_run(ev, EVRUN_NOWAIT));
    if (waiting) wsk_deferred_respond(waiting, 200, body, strlen(body));
    waiting = NULL;
}

/* One turn of the loop, then what fd has, appended to buf[0..*got) (NUL-terminated); 0 at EOF. */
static int read_step(int fd, char *buf, size_t cap, size_t *got)
{
    ev_run(ev, EVRUN_NOWAIT);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 1) != 1) return 1;
    ssize_t r = read(fd, buf + *got, cap - 1 - *got);
    if (r <= 0) return 0;
    *got += (size_t)r;
    buf[*got] = 0;
    return 1;
}

/* Runs the loop and reads fd into buf until it holds `until` or the peer closes (5 s at most);
 * the bytes read. */
static size_t read_until(int fd, char *buf, size_t cap, const char *until)
{
    size_t got = 0;
    int open = 1;
    buf[0] = 0;
    SPIN_UNTIL(!open || strstr(buf, until), open = read_step(fd, buf, cap, &got));
    return got;
}

/* 1 when nothing is readable on fd after a few turns of the loop. */
static int silent(int fd)
{
    for (int i = 0; i < 20; i++) {
        ev_run(ev, EVRUN_NOWAIT);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 1) == 1) return 0;
    }
    return 1;
}

int main(void)
{
    wsk_loop *loop = test_loop(&ev);
    wsk_handlers h = {.request = on_request};
    wsk_server *srv = wsk_server_new(loop, NULL, &h, NULL);
    CHECK(srv && wsk_server_listen(srv, "127.0.0.1", 0) == 0, "server listens");
    unsigned port = wsk_server_port(srv);
    char buf[4096];

    /* Answered later. */
    int fd = send_request(port, "/later");
    SPIN_UNTIL(waiting, ev_run(ev, EVRUN_NOWAIT));
    CHECK(waiting && zero_null && twice_null,
          "defer: a handle; NULL for a timeout of 0 and for a second call");
    CHECK(silent(fd), "nothing is sent when the handler returns");
    wsk_deferred *d = waiting;
    waiting = NULL;
    CHECK(wsk_deferred_respond(d, 201, "done", 4) == 1, "respond in time: 1");
    read_until(fd, buf, sizeof buf, "done");
    CHECK(!strncmp(buf, "HTTP/1.1 201 ", 13) && strstr(buf, "X-Fallback: kept\r\n") &&
              strstr(buf, "Connection: keep-alive\r\n") && strstr(buf, "\r\n\r\ndone"),
          "the answer's status and body, the fallback's headers, Connection: keep-alive");
    CHECK(send_on(fd, "/now", "") == 0 && read_until(fd, buf, sizeof buf, "now") &&
              !strncmp(buf, "HTTP/1.1 200 ", 13) && strstr(buf, "\r\n\r\nnow"),
          "... and the connection serves the next request");
    CHECK(send_on(fd, "/again", "") == 0, "a second deferred request on it");
    answer_next("second");
    read_until(fd, buf, sizeof buf, "second");
    CHECK(strstr(buf, "Connection: keep-alive\r\n") && strstr(buf, "\r\n\r\nsecond"),
          "... answered later too, kept alive");
    CHECK(send_on(fd, "/last", "Connection: close\r\n") == 0, "then one with Connection: close");
    answer_next("last");
    read_until(fd, buf, sizeof buf, "last");
    CHECK(strstr(buf, "Connection: close\r\n") && strstr(buf, "\r\n\r\nlast"),
          "... answered with Connection: close");
    CHECK(read_until(fd, buf, sizeof buf, "\x01") == 0, "... and the connection closes");
    close(fd);

    /* A request pipelined behind a deferred one is not answered: the connection closes. */
    fd = send_request(port, "/first");
    CHECK(send_on(fd, "/now", "") == 0, "a request pipelined behind a deferred one");
    answer_next("first");
    size_t got = read_until(fd, buf, sizeof buf, "\x01");
    CHECK(got && strstr(buf, "Connection: close\r\n") && strstr(buf, "\r\n\r\nfirst") &&
              !strstr(buf, "\r\n\r\nnow"),
          "the deferred answer says Connection: close, the pipelined request gets nothing");
    close(fd);

    /* The timeout: the fallback goes, and a late answer only frees. */
    fd = send_request(port, "/slow");
    read_until(fd, buf, sizeof buf, "fallback");
    CHECK(!strncmp(buf, "HTTP/1.1 503 ", 13) && strstr(buf, "\r\n\r\nfallback"),
          "no answer within the timeout: the fallback is sent");
    CHECK(waiting && wsk_deferred_respond(waiting, 200, "late", 4) == 0,
          "an answer after the timeout: 0 (too late)");
    waiting = NULL;
    close(fd);

    /* Answered before the handler returned: an ordinary response, kept alive. */
    fd = send_request(port, "/early");
    read_until(fd, buf, sizeof buf, "early");
    CHECK(early_result == 1 && !strncmp(buf, "HTTP/1.1 202 ", 13) &&
              strstr(buf, "Connection: keep-alive\r\n") && strstr(buf, "\r\n\r\nearly"),
          "answered inside the handler: sent at once, as an ordinary response");
    close(fd);

    /* A bad answer: INVAL, and the fallback goes. */
    fd = send_request(port, "/bad");
    SPIN_UNTIL(waiting, ev_run(ev, EVRUN_NOWAIT));
    CHECK(waiting && wsk_deferred_respond(waiting, 99, "x", 1) == WSK_ERR_INVAL,
          "a status out of range: INVAL");
    waiting = NULL;
    read_until(fd, buf, sizeof buf, "fallback");
    CHECK(!strncmp(buf, "HTTP/1.1 503 ", 13), "... and the fallback is sent");
    close(fd);
    CHECK(wsk_deferred_respond(NULL, 200, "", 0) == WSK_ERR_INVAL, "respond(NULL): INVAL");

    /* The server goes while an answer is awaited: the handle stays valid until answered. */
    fd = send_request(port, "/orphan");
    SPIN_UNTIL(waiting, ev_run(ev, EVRUN_NOWAIT));
    CHECK(waiting != NULL, "a deferral awaits its answer");
    wsk_server_free(srv);
    CHECK(wsk_deferred_respond(waiting, 200, "late", 4) == 0,
          "the server was freed: respond says 0 and frees");
    close(fd);
    wsk_loop_free(loop);
    return TEST_DONE();
}
