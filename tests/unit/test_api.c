/* What wskit.h promises about arguments and return values: a send returns the payload bytes
 * (Bun's meaning), whatever the framing, masking or compression; every bad argument of every
 * public function is WSK_ERR_INVAL and changes nothing; wsk_close takes only the codes RFC 6455
 * 7.4 lets a peer receive.  A wskit server and a wskit client talk over loopback in one loop. */
#include "test.h"
#include "wskit.h"

#include <arpa/inet.h>
#include <ev.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

static struct ev_loop *ev;
static wsk_ws *server_ws, *client_ws;
static int client_open, client_closes, server_closes, client_messages;
static unsigned client_close_code;
static size_t client_got;

/* Results of calls made inside the handlers, checked afterwards. */
static int up_status, up_proto_bad, up_proto_ok, up_header_bad, up_header_crlf;
static int plain_status_low, plain_status_high, plain_status_ok, plain_proto, plain_body_null;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Runs the loop until cond holds, at most 5 s (the suite also runs under valgrind). */
#define RUN_UNTIL(cond)                                                                            \
    do {                                                                                           \
        double until_ = now_s() + 5;                                                               \
        while (!(cond) && now_s() < until_) {                                                      \
            ev_run(ev, EVRUN_NOWAIT);                                                              \
            usleep(500);                                                                           \
        }                                                                                          \
    } while (0)

static int on_upgrade(wsk_server *srv, const wsk_request *req, wsk_response *res)
{
    (void)srv;
    const char *name, *value;
    size_t nl, vl;
    CHECK(wsk_request_header_at(req, wsk_request_header_count(req), &name, &nl, &value, &vl) ==
              WSK_ERR_INVAL,
          "request header index out of range: WSK_ERR_INVAL");
    CHECK(wsk_request_header_at(req, 0, NULL, &nl, NULL, NULL) == 0 && nl > 0,
          "request header outputs may be NULL");
    char buf[8];
    CHECK(wsk_request_query_param(req, NULL, buf, sizeof buf) == WSK_ERR_INVAL &&
              wsk_request_query_param(req, "x", NULL, 8) == WSK_ERR_INVAL &&
              wsk_request_offers_protocol(req, NULL) == WSK_ERR_INVAL &&
              !wsk_request_header(req, NULL, &nl),
          "query parameter, offered protocol or header named NULL: INVAL (NULL for a header)");
    up_status = wsk_response_set_status(res, 404);
    up_proto_bad = wsk_response_set_protocol(res, "not-offered");
    up_proto_ok = wsk_response_set_protocol(res, "chat");
    up_header_bad = wsk_response_add_header(res, "Bad Name", "x");
    up_header_crlf = wsk_response_add_header(res, "X-Ok", "a\r\nInjected: 1");
    return 0;
}

static void on_request(wsk_server *srv, const wsk_request *req, wsk_response *res)
{
    (void)srv;
    (void)req;
    plain_status_low = wsk_response_set_status(res, 199);
    plain_status_high = wsk_response_set_status(res, 600);
    plain_proto = wsk_response_set_protocol(res, "chat");
    plain_body_null = wsk_response_append_body(res, NULL, 3);
    plain_status_ok = wsk_response_set_status(res, 202);
}

static void on_server_open(wsk_ws *ws)
{
    server_ws = ws;
}

static void on_server_close(wsk_ws *ws, unsigned code, const char *reason, size_t len)
{
    (void)ws;
    (void)code;
    (void)reason;
    (void)len;
    server_closes++;
    server_ws = NULL;
}

static void on_client_open(wsk_ws *ws)
{
    (void)ws;
    client_open = 1;
}

static void on_client_message(wsk_ws *ws, const void *data, size_t len, wsk_opcode op)
{
    (void)ws;
    (void)data;
    (void)op;
    client_messages++;
    client_got += len;
}

static void on_client_close(wsk_ws *ws, unsigned code, const char *reason, size_t len)
{
    (void)ws;
    (void)reason;
    (void)len;
    client_closes++;
    client_close_code = code;
    client_ws = NULL;
}

static void cork_send(wsk_ws *ws, void *arg)
{
    *(long *)arg = wsk_send(ws, "corked", 6, WSK_OP_TEXT, 0);
}

/* A plain GET; the status of the reply, or -1. */
static int plain_get(unsigned port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    static const char req[] = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        write(fd, req, sizeof req - 1) != (ssize_t)sizeof req - 1) {
        close(fd);
        return -1;
    }
    char resp[512];
    size_t got = 0;
    double until = now_s() + 5;
    while (got < 12 && now_s() < until) {
        ev_run(ev, EVRUN_NOWAIT);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 1) == 1) {
            ssize_t r = read(fd, resp + got, sizeof resp - got);
            if (r <= 0) break;
            got += (size_t)r;
        }
    }
    close(fd);
    return got >= 12 ? atoi(resp + 9) : -1;
}

/* Opens a client socket to the server and waits for both ends. */
static void connect_pair(wsk_loop *loop, unsigned port, const wsk_client_opts *co,
                         const wsk_handlers *ch)
{
    char url[64];
    int err;
    snprintf(url, sizeof url, "ws://127.0.0.1:%u/", port);
    client_open = 0;
    client_ws = wsk_connect(loop, url, co, ch, NULL, &err);
    CHECK(client_ws && err == 0, "connect (%s)", wsk_strerror(err));
    CHECK(wsk_close(client_ws, WSK_CLOSE_NORMAL, NULL, 0) == WSK_ERR_STATE,
          "close while still connecting: WSK_ERR_STATE (terminate is the way out)");
    RUN_UNTIL(client_open && server_ws);
    CHECK(client_open && server_ws, "both ends open");
}

static void test_send_results(wsk_loop *loop)
{
    (void)loop;
    static char big[100000];
    memset(big, 'a', sizeof big);
    CHECK(wsk_send(server_ws, "hello", 5, WSK_OP_TEXT, 0) == 5,
          "send returns the payload bytes, not header + payload");
    CHECK(wsk_send(server_ws, big, 1000, WSK_OP_BINARY, 0) == 1000, "16-bit length: still 1000");
    CHECK(wsk_send(server_ws, big, sizeof big, WSK_OP_BINARY, 0) == (long)sizeof big,
          "64-bit length: still the payload");
    CHECK(wsk_ws_compressed(server_ws) && wsk_send(server_ws, big, 4000, WSK_OP_TEXT, 1) == 4000,
          "compressed send: the payload given, not the deflated frame");
    CHECK(wsk_send(server_ws, "", 0, WSK_OP_TEXT, 0) == 1 &&
              wsk_send(server_ws, NULL, 0, WSK_OP_BINARY, 0) == 1,
          "an empty message that goes out: 1, so success stays > 0");
    CHECK(wsk_send(client_ws, "masked", 6, WSK_OP_TEXT, 0) == 6,
          "client send (masked frame): the payload bytes");
    CHECK(wsk_ping(server_ws, "pp", 2) == 2 && wsk_pong(server_ws, "ppp", 3) == 3 &&
              wsk_ping(client_ws, NULL, 0) == 1,
          "ping and pong return their payload bytes (1 when empty)");
    long corked = 0;
    CHECK(wsk_cork(server_ws, cork_send, &corked) == 0 && corked == 6, "send inside cork: 6");
    size_t want = 5 + 1000 + sizeof big + 4000 + 6;
    RUN_UNTIL(client_got >= want);
    CHECK(client_got == want && client_messages == 7, "the client got them all (%zu of %zu)",
          client_got, want);
}

static void test_bad_arguments(wsk_server *srv, unsigned port)
{
    static const int bad_ops[] = {WSK_OP_CONT, WSK_OP_CLOSE, WSK_OP_PING, WSK_OP_PONG, 3, 0xB};
    int all = 1;
    for (size_t i = 0; i < sizeof bad_ops / sizeof bad_ops[0]; i++)
        all &= EXPECT(wsk_send(server_ws, "x", 1, (wsk_opcode)bad_ops[i], 0) == WSK_ERR_INVAL,
                      "op %d", bad_ops[i]) &&
               EXPECT(wsk_publish(server_ws, "t", 1, "x", 1, (wsk_opcode)bad_ops[i], 0) ==
                          WSK_ERR_INVAL,
                      "publish op %d", bad_ops[i]) &&
               EXPECT(wsk_server_publish(srv, "t", 1, "x", 1, (wsk_opcode)bad_ops[i], 0) ==
                          WSK_ERR_INVAL,
                      "server publish op %d", bad_ops[i]);
    CHECK(all, "send, publish and server publish: any opcode but text and binary is INVAL");
    CHECK(wsk_send(server_ws, NULL, 5, WSK_OP_TEXT, 0) == WSK_ERR_INVAL &&
              wsk_publish(server_ws, "t", 1, NULL, 5, WSK_OP_TEXT, 0) == WSK_ERR_INVAL,
          "data NULL with a length: INVAL");
    CHECK(wsk_send(server_ws, "x", (size_t)WSK_MESSAGE_MAX + 1, WSK_OP_BINARY, 0) ==
                  WSK_ERR_INVAL &&
              wsk_server_publish(srv, "t", 1, "x", (size_t)WSK_MESSAGE_MAX + 1, WSK_OP_BINARY, 0) ==
                  WSK_ERR_INVAL,
          "a message over WSK_MESSAGE_MAX: INVAL (before reading it)");
    static char p126[126];
    CHECK(wsk_ping(server_ws, p126, 126) == WSK_ERR_INVAL &&
              wsk_pong(server_ws, p126, 126) == WSK_ERR_INVAL &&
              wsk_ping(server_ws, NULL, 1) == WSK_ERR_INVAL,
          "control payload over 125 bytes, or NULL with a length: INVAL");
    CHECK(wsk_ping(server_ws, p126, 125) == 125, "125 bytes is a valid ping");
    CHECK(wsk_cork(server_ws, NULL, NULL) == WSK_ERR_INVAL, "cork without a function: INVAL");

    CHECK(wsk_subscribe(server_ws, NULL, 3) == WSK_ERR_INVAL &&
              wsk_unsubscribe(server_ws, NULL, 3) == WSK_ERR_INVAL &&
              wsk_ws_subscribed(server_ws, NULL, 3) == WSK_ERR_INVAL &&
              wsk_publish(server_ws, NULL, 3, "x", 1, WSK_OP_TEXT, 0) == WSK_ERR_INVAL,
          "topic NULL with a length: INVAL for subscribe, unsubscribe, subscribed, publish");
    static char long_topic[WSK_TOPIC_MAX + 1];
    CHECK(wsk_subscribe(server_ws, long_topic, sizeof long_topic) == WSK_ERR_INVAL &&
              wsk_unsubscribe(server_ws, long_topic, sizeof long_topic) == WSK_ERR_INVAL &&
              wsk_ws_subscribed(server_ws, long_topic, sizeof long_topic) == WSK_ERR_INVAL &&
              wsk_server_publish(srv, long_topic, sizeof long_topic, "x", 1, WSK_OP_TEXT, 0) ==
                  WSK_ERR_INVAL,
          "a topic over WSK_TOPIC_MAX: INVAL");
    CHECK(wsk_subscribe(server_ws, long_topic, WSK_TOPIC_MAX) == 1 &&
              wsk_ws_subscriptions(server_ws, NULL, NULL) == 1,
          "nothing was subscribed by the refused calls; WSK_TOPIC_MAX bytes is valid");
    CHECK(wsk_subscribe(client_ws, "t", 1) == WSK_ERR_STATE &&
              wsk_publish(client_ws, "t", 1, "x", 1, WSK_OP_TEXT, 0) == WSK_ERR_STATE &&
              wsk_unsubscribe(client_ws, "t", 1) == 0,
          "pub/sub on a client socket: STATE, and it is never subscribed");

    CHECK(wsk_server_listen(srv, "127.0.0.1", 65536) == WSK_ERR_INVAL, "port 65536: INVAL");
    CHECK(wsk_compress_mode_parse(NULL) == WSK_ERR_INVAL &&
              wsk_compress_mode_parse("9KB") == WSK_ERR_INVAL &&
              wsk_compress_mode_parse("dedicated") == WSK_COMPRESS_DEDICATED,
          "compress mode names");
    int err = 0;
    CHECK(!wsk_connect(wsk_server_loop(srv), NULL, NULL, NULL, NULL, &err) && err == WSK_ERR_INVAL,
          "connect without a URL: INVAL");
    wsk_client_opts co;
    wsk_client_opts_init(&co);
    co.compress = WSK_COMPRESS_256KB + 1;
    err = 0;
    CHECK(!wsk_connect(wsk_server_loop(srv), "ws://127.0.0.1:1/", &co, NULL, NULL, &err) &&
              err == WSK_ERR_INVAL,
          "connect with a compress mode that does not exist: INVAL (%d)", err);
    wsk_server_opts so;
    wsk_server_opts_init(&so);
    so.decompress = -1;
    CHECK(!wsk_server_new(wsk_server_loop(srv), &so, NULL, NULL),
          "a server with a compress mode that does not exist: NULL");
    const char *name, *value;
    size_t nl, vl;
    CHECK(wsk_client_header_at(client_ws, 1000, &name, &nl, &value, &vl) == WSK_ERR_INVAL &&
              wsk_client_header_at(server_ws, 0, &name, &nl, &value, &vl) == WSK_ERR_INVAL,
          "client header index out of range, or asked of a server socket: INVAL");

    CHECK(up_status == WSK_ERR_STATE, "set_status in an upgrade handler: STATE (%d)", up_status);
    CHECK(up_proto_bad == WSK_ERR_INVAL && up_proto_ok == 0 &&
              !strcmp(wsk_ws_protocol(server_ws), "chat") &&
              !strcmp(wsk_ws_protocol(client_ws), "chat"),
          "set_protocol: INVAL for a protocol not offered, 0 for one offered, and it is used");
    CHECK(up_header_bad == WSK_ERR_INVAL && up_header_crlf == WSK_ERR_INVAL,
          "add_header: INVAL for a name that is not a token or a value with CR/LF");
    CHECK(plain_get(port) == 202, "plain request answered with the status set last");
    CHECK(plain_status_low == WSK_ERR_INVAL && plain_status_high == WSK_ERR_INVAL &&
              plain_status_ok == 0,
          "set_status: 200-599 only");
    CHECK(plain_proto == WSK_ERR_STATE && plain_body_null == WSK_ERR_INVAL,
          "set_protocol on a plain request: STATE; append_body(NULL, 3): INVAL");
}

static void test_close_codes(void)
{
    static const unsigned bad[] = {1, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535};
    int all = 1;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        all &= EXPECT(wsk_close(server_ws, bad[i], NULL, 0) == WSK_ERR_INVAL, "code %u", bad[i]);
    CHECK(all, "close codes a peer may not receive: INVAL");
    static char r124[124];
    memset(r124, 'r', sizeof r124);
    CHECK(wsk_close(server_ws, 4000, r124, 124) == WSK_ERR_INVAL, "a 124-byte reason: INVAL");
    CHECK(wsk_close(server_ws, 4000, "\xff", 1) == WSK_ERR_INVAL &&
              wsk_close(server_ws, 4000, "\xc3", 1) == WSK_ERR_INVAL,
          "a reason that is not UTF-8 (or cut inside a character): INVAL");
    CHECK(wsk_close(server_ws, 0, "why", 3) == WSK_ERR_INVAL &&
              wsk_close(server_ws, 4000, NULL, 3) == WSK_ERR_INVAL,
          "a reason without a code, or NULL with a length: INVAL");
    CHECK(wsk_ws_ready_state(server_ws) == WSK_OPEN, "refused closes left the socket open");
    CHECK(wsk_send(server_ws, "still", 5, WSK_OP_TEXT, 0) == 5, "and it still sends");

    CHECK(wsk_close(server_ws, 4000, r124, 123) == 0 &&
              wsk_ws_ready_state(server_ws) == WSK_CLOSING,
          "code 4000 with a 123-byte reason: the closing handshake starts");
    CHECK(wsk_close(server_ws, 1000, NULL, 0) == 0, "closing again: 0, nothing sent twice");
    CHECK(wsk_send(server_ws, "late", 4, WSK_OP_TEXT, 0) == 0, "send while closing: dropped (0)");
    RUN_UNTIL(client_closes && server_closes);
    CHECK(client_closes == 1 && client_close_code == 4000 && server_closes == 1,
          "the peer saw code 4000 (%u)", client_close_code);
}

/* The versions line names every library, with the version each reports at run time. */
static void test_versions(void)
{
    char v[256], want[64], small[8];
    long n = wsk_versions(v, sizeof v);
    CHECK(n > 0 && (size_t)n == strlen(v), "wsk_versions: %s", v);
    snprintf(want, sizeof want, "libev %d.%d,", ev_version_major(), ev_version_minor());
    CHECK(strstr(v, "wskit " WSK_VERSION ", ") && strstr(v, want), "wsk_versions: wskit, libev");
    snprintf(want, sizeof want, "zlib %s,", zlibVersion());
    CHECK(strstr(v, want) && strstr(v, "libdeflate 1.") && strstr(v, "ISA-L 2.") &&
              strstr(v, "mbedTLS 2.") && strstr(v, "ipsec-mb 1."),
          "wsk_versions: zlib (%s), libdeflate, ISA-L, mbedTLS, ipsec-mb", zlibVersion());
    CHECK(wsk_versions(NULL, 0) == n && wsk_versions(small, sizeof small) == n &&
              strlen(small) == sizeof small - 1,
          "wsk_versions: measures with no buffer, cuts at a small one");
}

/* Each error code has its own line of text; anything else is "unknown error". */
static void test_strerror(void)
{
    static const int codes[] = {
        WSK_OK,          WSK_ERR_PROTOCOL, WSK_ERR_UTF8,        WSK_ERR_TOO_BIG,   WSK_ERR_POLICY,
        WSK_ERR_DEFLATE, WSK_ERR_HTTP,     WSK_ERR_HEADER_SIZE, WSK_ERR_HANDSHAKE, WSK_ERR_URL,
        WSK_ERR_NOMEM,   WSK_ERR_INVAL,    WSK_ERR_STATE,       WSK_ERR_IO,        WSK_ERR_CLOSED,
        WSK_ERR_TIMEOUT, WSK_ERR_DNS,      WSK_ERR_CONNECT,     WSK_ERR_TLS,       WSK_ERR_CERT};
    size_t n = sizeof codes / sizeof codes[0], distinct = 1;
    for (size_t i = 0; i < n; i++) {
        const char *s = wsk_strerror(codes[i]);
        distinct &= EXPECT(s && *s && strcmp(s, "unknown error"), "code %d", codes[i]);
        for (size_t j = 0; j < i; j++)
            distinct &= EXPECT(strcmp(s, wsk_strerror(codes[j])), "%d and %d", codes[i], codes[j]);
    }
    CHECK(distinct, "wsk_strerror: a distinct text for each of the %zu codes", n);
    CHECK(!strcmp(wsk_strerror(-999), "unknown error") && !strcmp(wsk_strerror(7), "unknown error"),
          "wsk_strerror: \"unknown error\" for a value that is not a code");
}

static void shutdown_done(wsk_server *srv, size_t dropped)
{
    (void)srv;
    (void)dropped;
}

/* A server that compresses from 16 bytes on, listening on a free loopback port. */
static wsk_server *serve(wsk_loop *loop)
{
    wsk_server_opts o;
    wsk_server_opts_init(&o);
    o.compress = WSK_COMPRESS_SHARED;
    o.compress_threshold = 16;
    wsk_handlers sh = {.upgrade = on_upgrade,
                       .request = on_request,
                       .open = on_server_open,
                       .close = on_server_close};
    wsk_server *srv = wsk_server_new(loop, &o, &sh, NULL);
    CHECK(srv && wsk_server_listen(srv, "127.0.0.1", 0) == 0, "server listens");
    return srv;
}

int main(void)
{
    wsk_loop *loop = test_loop(&ev);
    test_strerror();
    test_versions();
    wsk_server *srv = serve(loop);
    unsigned port = wsk_server_port(srv);

    wsk_client_opts co;
    wsk_client_opts_init(&co);
    co.compress = WSK_COMPRESS_SHARED;
    static const char *const protos[] = {"chat"};
    co.protocols = protos;
    co.nprotocols = 1;
    wsk_handlers ch = {
        .open = on_client_open, .message = on_client_message, .close = on_client_close};

    connect_pair(loop, port, &co, &ch);
    test_send_results(loop);
    test_bad_arguments(srv, port);
    test_close_codes();

    connect_pair(loop, port, &co, &ch);
    CHECK(wsk_server_shutdown(srv, 1005, NULL, 1, shutdown_done) == WSK_ERR_INVAL &&
              wsk_server_shutdown(srv, 1001, "\xff", 1, shutdown_done) == WSK_ERR_INVAL &&
              wsk_server_shutdown(srv, 1001, NULL, -1, shutdown_done) == WSK_ERR_INVAL,
          "shutdown with a code or reason close refuses, or a negative grace: INVAL");
    CHECK(server_ws && wsk_ws_ready_state(server_ws) == WSK_OPEN, "and nothing was closed");
    CHECK(wsk_server_shutdown(srv, 1001, "bye", 1, shutdown_done) == 0 &&
              wsk_server_shutdown(srv, 1001, "bye", 1, shutdown_done) == WSK_ERR_STATE,
          "shutdown: 0, then STATE while it is under way");
    RUN_UNTIL(client_closes == 2);
    CHECK(client_closes == 2 && client_close_code == 1001, "the client saw 1001 (%u)",
          client_close_code);

    wsk_server_free(srv);
    wsk_loop_free(loop);
    return TEST_DONE();
}
