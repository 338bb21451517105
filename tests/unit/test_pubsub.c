/* Publish/subscribe in one process: receiver counts, the sender left out (or not, with
 * publish_to_self), copied and shared frames arriving intact, topics left on close and freed
 * when empty, patterns (a socket reached once however many match), a topic held back from one
 * socket (wsk_ws_hold) or queued for it until released (wsk_ws_hold_queue, which knows the
 * retained publishes among what it queued: WSK_PUB_RETAINED), thousands of topics and
 * subscriptions in linear time, and a publish that closes subscribers for backpressure while their
 * close handlers unsubscribe and publish again. The loop runs with EVRUN_NOWAIT; non-blocking
 * sockets play the clients and parse the frames they get. */
#include "pmd_conn.h"
#include "test.h"
#include "rawws.h"
#include "wskit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define MAXC 1100

/* A client: its socket, the bytes not yet parsed, the messages got and the last one. */
struct client {
    int fd;
    int open; /* 101 seen */
    int eof;
    uint8_t *buf;
    size_t len, cap;
    unsigned msgs;
    unsigned last_op;
    int last_rsv1;
    uint8_t *last;
    size_t last_len;
    unsigned close_code; /* of a close frame received */
    char seen[64];       /* the first byte of each message, in order (as many as fit) */
};

static struct ev_loop *ev;
static struct client cl[MAXC];
static wsk_ws *srv_ws[MAXC]; /* server side of client i (same order: one opens at a time) */
static int nopen;
static int closes;

/* Behaviour of the close handler, for the re-entrancy test. */
static wsk_ws *victim;
static int close_publishes;
static int in_publish;  /* the test is inside wsk_server_publish */
static int nested_runs; /* close handlers that published while a publish walked the topic */
static long nested_min; /* the smallest count those nested publishes returned */

static void parse_frames(struct client *c)
{
    size_t hl;
    uint64_t n;
    while (rawws_frame(c->buf, c->len, &hl, &n)) {
        unsigned op = c->buf[0] & 15;
        if (op == 8) {
            c->close_code = n >= 2 ? (unsigned)(c->buf[hl] << 8 | c->buf[hl + 1]) : 1005;
        } else if (op == 1 || op == 2) {
            size_t k = strlen(c->seen);
            if (n && k + 1 < sizeof c->seen) c->seen[k] = (char)c->buf[hl];
            c->msgs++;
            c->last_op = op;
            c->last_rsv1 = !!(c->buf[0] & 0x40);
            free(c->last);
            c->last = malloc(n ? n : 1);
            memcpy(c->last, c->buf + hl, n);
            c->last_len = n;
        }
        memmove(c->buf, c->buf + hl + n, c->len - hl - n);
        c->len -= hl + n;
    }
}

static void read_client(struct client *c)
{
    if (c->fd < 0 || c->eof) return;
    if (rawws_read(c->fd, &c->buf, &c->len, &c->cap, &c->open, &c->eof)) parse_frames(c);
}

/* Runs the loop and reads every client, for ms milliseconds. */
static void spin(int ms, int nclients)
{
    double end = test_now() + ms / 1000.0;
    do {
        ev_run(ev, EVRUN_NOWAIT);
        for (int i = 0; i < nclients; i++) read_client(&cl[i]);
        usleep(500);
    } while (test_now() < end);
}

static void on_open(wsk_ws *ws)
{
    srv_ws[nopen++] = ws;
}

static void on_close(wsk_ws *ws, unsigned code, const char *reason, size_t len)
{
    (void)code;
    (void)reason;
    (void)len;
    closes++;
    /* Any handler may use pub/sub, even one run from inside a publish. */
    if (close_publishes && victim && ws != victim) {
        wsk_unsubscribe(victim, "t", 1);
        long r = wsk_server_publish(wsk_ws_server(ws), "t", 1, "bye", 3, WSK_OP_TEXT, 0);
        if (in_publish) {
            nested_runs++;
            if (r < nested_min) nested_min = r;
        }
        wsk_subscribe(victim, "late", 4);
    }
    for (int i = 0; i < nopen; i++)
        if (srv_ws[i] == ws) srv_ws[i] = NULL;
}

static const char *offer = ""; /* extra request headers */

static void connect_client(int i, unsigned port, int rcvbuf)
{
    struct client *c = &cl[i];
    free(c->buf);
    free(c->last);
    memset(c, 0, sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (rcvbuf) setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0) abort();
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s\r\n",
                     offer);
    if (send(c->fd, req, (size_t)n, 0) != n) abort();
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
}

static void close_client(int i)
{
    close(cl[i].fd);
    cl[i].fd = -1;
}

/* Opens n clients (one at a time, so srv_ws[i] belongs to cl[i]). */
static int open_clients(int n, unsigned port, int rcvbuf)
{
    nopen = 0;
    for (int i = 0; i < n; i++) {
        connect_client(i, port, rcvbuf);
        SPIN_UNTIL(nopen == i + 1 && cl[i].open, spin(1, i + 1));
        if (nopen != i + 1) return 0;
    }
    return 1;
}

static void close_all(int n)
{
    for (int i = 0; i < n; i++)
        if (cl[i].fd >= 0) close_client(i);
}

static unsigned total_msgs(int from, int to)
{
    unsigned t = 0;
    for (int i = from; i < to; i++) t += cl[i].msgs;
    return t;
}

static wsk_server *server(wsk_loop *loop, int to_self, size_t bp_limit, int bp_close,
                          unsigned *port)
{
    wsk_server_opts o;
    wsk_server_opts_init(&o);
    o.publish_to_self = to_self;
    if (bp_limit) o.backpressure_limit = bp_limit;
    o.close_on_backpressure_limit = bp_close;
    o.idle_timeout = 0; /* a slow run (valgrind) must not lose sockets to idle pings */
    wsk_handlers h = {.open = on_open, .close = on_close};
    wsk_server *srv = wsk_server_new(loop, &o, &h, NULL);
    if (!srv || wsk_server_listen(srv, "127.0.0.1", 0) < 0) abort();
    *port = wsk_server_port(srv);
    return srv;
}

static void collect(void *arg, const char *topic, size_t len)
{
    char *out = arg;
    strncat(out, topic, len);
    strcat(out, ",");
}

static void test_basics(wsk_loop *loop)
{
    unsigned port;
    wsk_server *srv = server(loop, 0, 0, 0, &port);
    CHECK(open_clients(3, port, 0), "3 clients open");
    wsk_ws *a = srv_ws[0], *b = srv_ws[1], *c = srv_ws[2];

    CHECK(wsk_subscribe(a, "news", 4) == 1, "subscribe returns 1");
    CHECK(wsk_subscribe(a, "news", 4) == 0, "subscribing again returns 0");
    CHECK(wsk_subscribe(b, "news", 4) == 1 && wsk_subscribe(c, "news", 4) == 1,
          "two more subscribers");
    CHECK(wsk_subscribe(a, "sport", 5) == 1 && wsk_subscribe(a, "", 0) == 1,
          "other topics, the empty name included");
    CHECK(wsk_ws_subscribed(a, NULL, 0) && wsk_subscribe(b, NULL, 3) == WSK_ERR_INVAL,
          "NULL names the empty topic; NULL with a length is refused");
    CHECK(wsk_ws_subscribed(a, "news", 4) && !wsk_ws_subscribed(a, "new", 3) &&
              !wsk_ws_subscribed(b, "sport", 5),
          "is_subscribed");
    char list[128] = "";
    CHECK(wsk_ws_subscriptions(a, collect, list) == 3 && !strcmp(list, "news,sport,,"),
          "subscriptions in order: %s", list);
    CHECK(wsk_ws_subscriptions(c, NULL, NULL) == 1, "subscriptions counts without a callback");
    CHECK(wsk_server_topics(srv) == 3 && wsk_server_subscribers(srv, "news", 4) == 3,
          "3 topics, 3 subscribers of news");
    CHECK(wsk_subscribe(a, "x", WSK_TOPIC_MAX + 1) == WSK_ERR_INVAL, "topic too long refused");

    CHECK(wsk_publish(a, "news", 4, "hello", 5, WSK_OP_TEXT, 0) == 2,
          "publish from a socket reaches the 2 others");
    SPIN_UNTIL(cl[1].msgs == 1 && cl[2].msgs == 1, spin(1, 3));
    CHECK(cl[0].msgs == 0 && cl[1].msgs == 1 && cl[2].msgs == 1 && cl[1].last_len == 5 &&
              !memcmp(cl[1].last, "hello", 5) && cl[1].last_op == 1,
          "the sender is left out; the others get the text");
    CHECK(wsk_server_publish(srv, "news", 4, "\x00\x01", 2, WSK_OP_BINARY, 0) == 3,
          "server publish reaches all 3");
    SPIN_UNTIL(total_msgs(0, 3) == 5, spin(1, 3));
    /* A "hello" sent to the sender would have arrived before this on the same connection. */
    CHECK(cl[0].msgs == 1 && cl[0].last_op == 2 && cl[0].last_len == 2,
          "binary arrives, and it is the sender's first message");
    CHECK(wsk_publish(b, "sport", 5, "goal", 4, WSK_OP_TEXT, 0) == 1,
          "a non-subscriber may publish");
    CHECK(wsk_publish(a, "nobody", 6, "x", 1, WSK_OP_TEXT, 0) == 0, "no topic: 0 receivers");
    CHECK(wsk_publish(a, "news", 4, "x", 1, WSK_OP_PING, 0) == WSK_ERR_INVAL,
          "control opcodes refused");
    SPIN_UNTIL(cl[0].msgs == 2, spin(1, 3));
    CHECK(cl[0].msgs == 2 && cl[0].last_len == 4, "the publisher's message reached the subscriber");

    /* Larger than a copied frame: one shared block queued to every subscriber. */
    size_t big = 100000;
    uint8_t *payload = malloc(big);
    for (size_t i = 0; i < big; i++) payload[i] = (uint8_t)(i * 7);
    unsigned before = total_msgs(0, 3);
    CHECK(wsk_server_publish(srv, "news", 4, payload, big, WSK_OP_BINARY, 0) == 3 &&
              wsk_server_publish(srv, "news", 4, payload, 3000, WSK_OP_BINARY, 0) == 3,
          "100 kB and 3 kB messages queued to 3");
    SPIN_UNTIL(total_msgs(0, 3) == before + 6, spin(1, 3));
    int same = 1;
    for (int i = 0; i < 3; i++)
        same &= cl[i].last_len == 3000 && !memcmp(cl[i].last, payload, 3000);
    CHECK(total_msgs(0, 3) == before + 6 && same,
          "shared frames arrive intact (%u of %u, lens %zu %zu %zu)", total_msgs(0, 3) - before, 6u,
          cl[0].last_len, cl[1].last_len, cl[2].last_len);
    free(payload);

    CHECK(wsk_unsubscribe(b, "news", 4) == 1 && wsk_unsubscribe(b, "news", 4) == 0,
          "unsubscribe returns 1 then 0");
    CHECK(wsk_server_subscribers(srv, "news", 4) == 2, "2 subscribers left");
    CHECK(wsk_unsubscribe(a, "sport", 5) == 1 && wsk_server_topics(srv) == 2,
          "the last unsubscribe frees the topic");

    close_client(0);
    SPIN_UNTIL(closes == 1, spin(1, 3));
    CHECK(wsk_server_subscribers(srv, "news", 4) == 1 && wsk_server_topics(srv) == 1,
          "a closed socket left its topics (news: 1, empty name freed)");
    close_all(3);
    SPIN_UNTIL(closes == 3, spin(1, 3));
    CHECK(wsk_server_topics(srv) == 0, "no topic left once every socket closed");
    wsk_server_free(srv);
    closes = 0;
}

static void test_to_self(wsk_loop *loop)
{
    unsigned port;
    wsk_server *srv = server(loop, 1, 0, 0, &port);
    CHECK(open_clients(2, port, 0), "2 clients open");
    wsk_subscribe(srv_ws[0], "room", 4);
    wsk_subscribe(srv_ws[1], "room", 4);
    CHECK(wsk_publish(srv_ws[0], "room", 4, "me too", 6, WSK_OP_TEXT, 0) == 2,
          "publish_to_self: the sender counts");
    SPIN_UNTIL(total_msgs(0, 2) == 2, spin(1, 2));
    CHECK(cl[0].msgs == 1 && cl[1].msgs == 1, "and receives its message");
    /* Freed with subscribed sockets: they leave their topics as the server ends them. */
    wsk_server_free(srv);
    CHECK(closes == 2, "freeing the server with subscribers closes them (%d)", closes);
    close_all(2);
    closes = 0;
}

/* Patterns: a socket whose name and patterns all match gets a publish once; the counts,
 * lookups and the '$' rule as wskit.h says. */
static void test_patterns(wsk_loop *loop)
{
    unsigned port;
    wsk_server *srv = server(loop, 0, 0, 0, &port);
    CHECK(open_clients(2, port, 0), "2 clients open");
    wsk_ws *a = srv_ws[0], *b = srv_ws[1];
    CHECK(wsk_subscribe(a, "o.7.new", 7) == 1 && wsk_subscribe(a, "o.*.new", 7) == 1 &&
              wsk_subscribe(a, "o.>", 3) == 1 && wsk_subscribe(b, ">", 1) == 1,
          "a name and two patterns on one socket, '>' on another");
    CHECK(wsk_server_subscribers(srv, "o.*.new", 7) == 1 && wsk_server_reaches(srv, "o.8.x", 5) &&
              !wsk_server_reaches(srv, "$sys", 4),
          "subscribers by name; reaches through patterns, not into '$' topics");
    CHECK(wsk_server_publish(srv, "o.7.new", 7, "one", 3, WSK_OP_TEXT, 0) == 2,
          "three matching subscriptions count one socket once");
    CHECK(wsk_server_publish(srv, "o.8.old", 7, "two", 3, WSK_OP_TEXT, 0) == 2 &&
              wsk_server_publish(srv, "$sys", 4, "no", 2, WSK_OP_TEXT, 0) == 0,
          "'>' matches o.8.old; nothing matches $sys");
    SPIN_UNTIL(total_msgs(0, 2) == 4, spin(1, 2));
    CHECK(cl[0].msgs == 2 && cl[1].msgs == 2 && cl[0].last_len == 3 &&
              !memcmp(cl[0].last, "two", 3),
          "each socket got each message once");
    char deep[2 * WSK_PATTERN_TOKENS + 2];
    for (int i = 0; i <= WSK_PATTERN_TOKENS; i++) memcpy(deep + 2 * i, "*.", 2);
    CHECK(wsk_subscribe(a, deep, 2 * WSK_PATTERN_TOKENS + 1) == WSK_ERR_INVAL &&
              wsk_subscribe(a, deep, 2 * WSK_PATTERN_TOKENS - 1) == 1,
          "a pattern of WSK_PATTERN_TOKENS tokens, not one more");
    CHECK(wsk_unsubscribe(a, "o.*.new", 7) == 1 && wsk_unsubscribe(b, ">", 1) == 1 &&
              wsk_server_publish(srv, "o.9.new", 7, "x", 1, WSK_OP_TEXT, 0) == 1 &&
              !wsk_server_reaches(srv, "p", 1),
          "unsubscribed patterns match no more");
    close_all(2);
    SPIN_UNTIL(closes == 2, spin(1, 2));
    CHECK(wsk_server_topics(srv) == 0, "patterns freed with their sockets");
    wsk_server_free(srv);
    closes = 0;
}

/* wsk_ws_hold keeps a topic from a socket through its name and its patterns until
 * wsk_ws_hold_end; wsk_publish_local leaves its sender out as wsk_publish does; a socket holds
 * several topics at once, each ended or released on its own, WSK_HOLD_MAX at most. */
static void test_hold(wsk_loop *loop)
{
    unsigned port;
    wsk_server *srv = server(loop, 0, 0, 0, &port);
    CHECK(open_clients(2, port, 0), "2 clients open");
    wsk_ws *a = srv_ws[0], *b = srv_ws[1];
    CHECK(wsk_subscribe(a, "o.>", 3) == 1 && wsk_subscribe(b, "o.a", 3) == 1, "a: o.>, b: o.a");
    CHECK(wsk_ws_hold(a, "o.*", 3) == WSK_ERR_INVAL && wsk_ws_hold(a, "o.a", 3) == 0,
          "a holds o.a (a pattern is refused)");
    CHECK(wsk_server_publish(srv, "o.a", 3, "1", 1, WSK_OP_TEXT, 0) == 1 &&
              wsk_server_publish(srv, "o.b", 3, "2", 1, WSK_OP_TEXT, 0) == 1,
          "held: o.a reaches b only, through a's pattern too; o.b still reaches a");
    CHECK(wsk_subscribe(a, "o.a", 3) == 1 &&
              wsk_server_publish(srv, "o.a", 3, "3", 1, WSK_OP_TEXT, 0) == 1,
          "... and through a's name");
    wsk_ws_hold_end(a);
    CHECK(wsk_server_publish(srv, "o.a", 3, "4", 1, WSK_OP_TEXT, 0) == 2, "the hold ended");
    SPIN_UNTIL(cl[0].msgs == 2 && cl[1].msgs == 3, spin(1, 2));
    CHECK(cl[0].msgs == 2 && cl[1].msgs == 3 && cl[0].last_len == 1 && cl[0].last[0] == '4',
          "a got o.b's and the last o.a, once");
    CHECK(wsk_publish_local(b, "o.a", 3, "5", 1, WSK_OP_TEXT, 0) == 1,
          "publish_local leaves its sender out");
    SPIN_UNTIL(cl[0].msgs == 3, spin(1, 2));
    CHECK(cl[0].msgs == 3 && cl[1].msgs == 3, "only a got it");
    CHECK(wsk_ws_hold(a, "o.a", 3) == 0 && wsk_ws_hold(a, "o.b", 3) == 0 &&
              wsk_server_publish(srv, "o.a", 3, "6", 1, WSK_OP_TEXT, 0) == 1 &&
              wsk_server_publish(srv, "o.b", 3, "7", 1, WSK_OP_TEXT, 0) == 0,
          "a holds o.a and o.b at once: neither reaches it");
    wsk_ws_hold_end_topic(a, "o.a", 3);
    CHECK(wsk_server_publish(srv, "o.a", 3, "8", 1, WSK_OP_TEXT, 0) == 2 &&
              wsk_server_publish(srv, "o.b", 3, "9", 1, WSK_OP_TEXT, 0) == 0,
          "wsk_ws_hold_end_topic(o.a): o.a reaches a again, o.b stays held");
    wsk_ws_hold_release_topic(a, "o.b", 3, 0);
    CHECK(wsk_server_publish(srv, "o.b", 3, "A", 1, WSK_OP_TEXT, 0) == 1,
          "wsk_ws_hold_release_topic(o.b): o.b too");
    SPIN_UNTIL(cl[0].msgs == 5 && cl[1].msgs == 5, spin(1, 2));
    CHECK(cl[0].msgs == 5 && cl[1].msgs == 5 && cl[0].last[0] == 'A',
          "a got 8 and A, b 6 and 8 (%u, %u)", cl[0].msgs, cl[1].msgs);
    char h[16];
    int held = 0;
    for (int i = 0; i <= WSK_HOLD_MAX; i++)
        held += wsk_ws_hold(a, h, (size_t)snprintf(h, sizeof h, "h.%d", i)) == 0;
    wsk_ws_hold_end_topic(a, "h.3", 3);
    int again = wsk_ws_hold(a, h, (size_t)snprintf(h, sizeof h, "h.%d", WSK_HOLD_MAX));
    wsk_ws_hold_release(a);
    CHECK(held == WSK_HOLD_MAX && again == 0 &&
              wsk_server_publish(srv, "o.b", 3, "B", 1, WSK_OP_TEXT, 0) == 1,
          "%d topics held at most (WSK_HOLD_MAX: %d), one more once one ended; all released", held,
          WSK_HOLD_MAX);
    SPIN_UNTIL(cl[0].msgs == 6, spin(1, 2));
    close_all(2);
    SPIN_UNTIL(closes == 2, spin(1, 2));
    wsk_server_free(srv);
    closes = 0;
}

/* A queuing hold: what it kept comes after what the application sent meanwhile, in order, once
 * released; past the backpressure limit the socket is closed (1008), not left with a gap. */
static void test_hold_queue(wsk_loop *loop)
{
    unsigned port;
    wsk_server *srv = server(loop, 0, 4096, 0, &port);
    CHECK(open_clients(2, port, 0), "2 clients open");
    wsk_ws *a = srv_ws[0], *b = srv_ws[1];
    memset(cl[0].seen, 0, sizeof cl[0].seen);
    cl[0].close_code = 0;
    CHECK(wsk_subscribe(a, "q.a", 3) == 1 && wsk_subscribe(a, "q.>", 3) == 1 &&
              wsk_subscribe(b, "q.a", 3) == 1,
          "a: q.a and q.>, b: q.a");
    CHECK(wsk_ws_hold_queue(a, "q.*", 3, 0) == WSK_ERR_INVAL &&
              wsk_ws_hold_queue(a, "q.a", 3, 0) == 0,
          "a queues q.a (a pattern is refused)");
    long n = wsk_server_publish(srv, "q.a", 3, "1", 1, WSK_OP_TEXT, 0);
    n += wsk_server_publish(srv, "q.a", 3, "2", 1, WSK_OP_TEXT, 0);
    n += wsk_server_publish(srv, "q.b", 3, "x", 1, WSK_OP_TEXT, 0);
    CHECK(n == 5, "queued messages count as reaching a, once (%ld)", n);
    SPIN_UNTIL(cl[0].msgs == 1 && cl[1].msgs == 2, spin(1, 2));
    CHECK(!strcmp(cl[0].seen, "x") && cl[1].msgs == 2, "a got only q.b's meanwhile (%s)",
          cl[0].seen);
    wsk_send(a, "r", 1, WSK_OP_TEXT, 0);
    CHECK(wsk_server_publish(srv, "q.a", 3, "3", 1, WSK_OP_TEXT, 0) == 2, "one more, queued");
    wsk_ws_hold_release_topic(a, "q.a", 3, 0);
    CHECK(wsk_server_publish(srv, "q.a", 3, "4", 1, WSK_OP_TEXT, 0) == 2, "released: live again");
    SPIN_UNTIL(cl[0].msgs == 6, spin(1, 2));
    CHECK(!strcmp(cl[0].seen, "xr1234"),
          "a got what the application sent, then the queue in order, then live (%s)", cl[0].seen);
    CHECK(wsk_ws_hold(a, "q.a", 3) == 0 && wsk_ws_hold_queue(a, "q.a", 3, WSK_HOLD_GROUP) == 0 &&
              wsk_server_publish(srv, "q.a", 3, "5", 1, WSK_OP_TEXT, 0) == 2,
          "held anew as a queue (WSK_HOLD_GROUP: this loop's own are queued outside a group)");
    wsk_ws_hold_end(a);
    SPIN_UNTIL(cl[0].msgs == 7, spin(1, 2));
    CHECK(!strcmp(cl[0].seen, "xr12345"), "ending a queuing hold releases it (%s)", cl[0].seen);
    static char big[3000];
    memset(big, 'b', sizeof big);
    CHECK(wsk_ws_hold_queue(a, "q.a", 3, 0) == 0 &&
              wsk_server_publish(srv, "q.a", 3, big, sizeof big, WSK_OP_TEXT, 0) == 2,
          "a large message queued");
    CHECK(wsk_server_publish(srv, "q.a", 3, big, sizeof big, WSK_OP_TEXT, 0) == 1,
          "a second would cross the backpressure limit: not queued");
    SPIN_UNTIL(cl[0].close_code == 1008 && closes == 1, spin(1, 2));
    CHECK(cl[0].close_code == 1008 && closes == 1 && cl[0].msgs == 7,
          "a is closed with 1008, nothing of the queue sent (%u)", cl[0].close_code);
    close_all(2);
    SPIN_UNTIL(closes == 2, spin(1, 2));
    wsk_server_free(srv);
    closes = 0;
}

/* Publishes to "k" each character of s: an upper-case one as a retained publish. */
static void publish_k(wsk_server *srv, const char *s)
{
    for (; *s; s++)
        wsk_server_publish(srv, "k", 1, s, 1, WSK_OP_TEXT,
                           *s >= 'A' && *s <= 'Z' ? WSK_PUB_RETAINED : 0);
}

/* A queuing hold knows the retained publishes it queued (WSK_PUB_RETAINED), and releases them
 * so that a retained message comes first and none twice: with WSK_HOLD_FIRST (the application
 * sent none) the first one goes first, then the rest in order; with WSK_HOLD_SENT (the
 * application sent the one of the point the hold was made anew) those queued before that point
 * are dropped and the later ones stay, in order; with 0 all go as they are. */
static void test_hold_retained(wsk_loop *loop)
{
    /* Published before and after the hold is made anew; the application sends "S" (the answer,
     * D or newer) before a release with WSK_HOLD_SENT. */
    static const struct {
        const char *before, *after;
        int flags;
        const char *want, *what;
    } rounds[] = {
        {"12A3B4", "", WSK_HOLD_FIRST, "A123B4", "the first retained publish first, then in order"},
        {"5C6D", "7E8", WSK_HOLD_SENT, "S567E8", "those before the point dropped, the later kept"},
        {"9F", "", 0, "9F", "the queue as it stands"},
    };
    unsigned port;
    wsk_server *srv = server(loop, 0, 0, 0, &port);
    CHECK(open_clients(1, port, 0), "1 client open");
    wsk_ws *a = srv_ws[0];
    CHECK(wsk_subscribe(a, "k", 1) == 1, "a subscribes to k");
    for (size_t i = 0; i < sizeof rounds / sizeof rounds[0]; i++) {
        memset(cl[0].seen, 0, sizeof cl[0].seen);
        cl[0].msgs = 0;
        CHECK(wsk_ws_hold_queue(a, "k", 1, 0) == 0, "a queues k");
        publish_k(srv, rounds[i].before);
        if (*rounds[i].after && wsk_ws_hold_queue(a, "k", 1, 0) == 0) /* the read's point */
            publish_k(srv, rounds[i].after);
        if (rounds[i].flags & WSK_HOLD_SENT) wsk_send(a, "S", 1, WSK_OP_TEXT, 0);
        wsk_ws_hold_release_topic(a, "k", 1, rounds[i].flags);
        SPIN_UNTIL(cl[0].msgs == strlen(rounds[i].want), spin(1, 1));
        CHECK(!strcmp(cl[0].seen, rounds[i].want), "release flags %d: %s (%s)", rounds[i].flags,
              rounds[i].what, cl[0].seen);
    }
    close_all(1);
    SPIN_UNTIL(closes == 1, spin(1, 1));
    wsk_server_free(srv);
    closes = 0;
}

/* Subscribes n sockets to k topics each out of ntopics; returns the seconds it took. */
static double subscribe_many(int n, int k, int ntopics)
{
    char name[32];
    double t0 = test_now();
    for (int i = 0; i < n; i++)
        for (int j = 0; j < k; j++) {
            int len = snprintf(name, sizeof name, "topic/%d", (i * 7919 + j) % ntopics);
            if (wsk_subscribe(srv_ws[i], name, (size_t)len) < 0) abort();
        }
    return test_now() - t0;
}

static void test_many(wsk_loop *loop)
{
    unsigned port;
    wsk_server *srv = server(loop, 0, 0, 0, &port);
    int n = 1000, opened = open_clients(n, port, 0);
    CHECK(opened, "%d clients open", n);
    if (!opened) {
        wsk_server_free(srv);
        return;
    }

    /* One socket in 40000 topics: the per-socket side must not be a scan. */
    double t_small = test_now();
    char name[32];
    for (int j = 0; j < 5000; j++) {
        int len = snprintf(name, sizeof name, "solo/%d", j);
        wsk_subscribe(srv_ws[0], name, (size_t)len);
    }
    t_small = test_now() - t_small;
    double t_big = test_now();
    for (int j = 5000; j < 40000; j++) {
        int len = snprintf(name, sizeof name, "solo/%d", j);
        wsk_subscribe(srv_ws[0], name, (size_t)len);
    }
    t_big = test_now() - t_big;
    CHECK(wsk_ws_subscriptions(srv_ws[0], NULL, NULL) == 40000 && wsk_server_topics(srv) == 40000,
          "one socket, 40000 topics");
    CHECK(t_big < 20 * t_small + 0.05, "7x the subscriptions in ~7x the time (%.3fs, %.3fs)",
          t_small, t_big);
    CHECK(wsk_ws_subscribed(srv_ws[0], "solo/39999", 10) &&
              !wsk_ws_subscribed(srv_ws[1], "solo/1", 6),
          "lookups in a big table");

    /* 1000 sockets x 50 of 2000 topics = 50000 memberships. */
    double t = subscribe_many(n, 50, 2000);
    CHECK(wsk_server_topics(srv) == 42000, "2000 shared topics more (%zu)", wsk_server_topics(srv));
    size_t members = 0;
    for (int j = 0; j < 2000; j++) {
        int len = snprintf(name, sizeof name, "topic/%d", j);
        members += wsk_server_subscribers(srv, name, (size_t)len);
    }
    CHECK(members == 50000, "50000 memberships (%zu) in %.3fs", members, t);
    long got = wsk_server_publish(srv, "topic/0", 7, "fanout", 6, WSK_OP_TEXT, 0);
    CHECK(got == (long)wsk_server_subscribers(srv, "topic/0", 7) && got > 0,
          "a publish reaches every subscriber (%ld)", got);
    SPIN_UNTIL(total_msgs(0, n) == (unsigned)got, spin(1, n));
    CHECK(total_msgs(0, n) == (unsigned)got, "and each one gets it");

    double tc = test_now();
    close_all(n);
    SPIN_UNTIL(closes == n, spin(1, n));
    tc = test_now() - tc;
    CHECK(closes == n && wsk_server_topics(srv) == 0,
          "%d closes leave 90000 memberships and free 42000 topics (%.3fs)", closes, tc);
    wsk_server_free(srv);
    closes = 0;
}

/* Subscribers that do not read, close_on_backpressure_limit: publishes close them in the middle
 * of the walk, and each close handler unsubscribes another socket, publishes to the same topic
 * and subscribes again: the walk must survive all of it. */
static void test_backpressure(wsk_loop *loop)
{
    unsigned port;
    wsk_server *srv = server(loop, 0, 64 * 1024, 1, &port);
    int n = 6;
    CHECK(open_clients(n, port, 4096), "%d clients with small receive buffers", n);
    for (int i = 0; i < n; i++) wsk_subscribe(srv_ws[i], "t", 1);
    victim = srv_ws[n - 1];
    close_publishes = 1;
    nested_runs = 0;
    nested_min = LONG_MAX;
    static uint8_t big[32 * 1024];
    long r = 0;
    int rounds = 0;
    /* Nobody reads: the kernel buffers fill, then the queues pass 64 kB. */
    for (; rounds < 2000 && closes < n - 1; rounds++) {
        in_publish = 1;
        r = wsk_server_publish(srv, "t", 1, big, sizeof big, WSK_OP_BINARY, 0);
        in_publish = 0;
        ev_run(ev, EVRUN_NOWAIT);
    }
    CHECK(closes >= n - 1, "slow subscribers closed with 1008 (%d closes after %d publishes)",
          closes, rounds);
    CHECK(!wsk_ws_subscribed(victim, "t", 1) && nested_runs > 0 && nested_min >= 0,
          "close handlers unsubscribed and published inside the walk (%d nested publishes, "
          "least count %ld)",
          nested_runs, nested_min);
    CHECK(wsk_server_subscribers(srv, "t", 1) == 0 && wsk_server_topics(srv) == 1,
          "topic t gone; late remains");
    close_publishes = 0;
    victim = NULL;
    for (int i = 0; i < n; i++) read_client(&cl[i]);
    close_all(n);
    SPIN_UNTIL(closes == n, spin(1, n));
    CHECK(wsk_server_topics(srv) == 0, "all topics freed");
    wsk_server_free(srv);
    closes = 0;

    /* The dropping policy: publishes past the limit are not counted. */
    srv = server(loop, 0, 64 * 1024, 0, &port);
    CHECK(open_clients(2, port, 4096), "2 clients");
    wsk_subscribe(srv_ws[0], "t", 1);
    wsk_subscribe(srv_ws[1], "t", 1);
    int dropped = 0;
    for (int i = 0; i < 400; i++) {
        r = wsk_server_publish(srv, "t", 1, big, sizeof big, WSK_OP_BINARY, 0);
        dropped += r < 2;
        ev_run(ev, EVRUN_NOWAIT);
    }
    CHECK(dropped > 0 && closes == 0, "past the limit a subscriber is skipped, not closed (%d)",
          dropped);
    close_all(2);
    SPIN_UNTIL(closes == 2, spin(1, 2));
    wsk_server_free(srv);
    closes = 0;
}

/* RFC 7692 7.2.2: append 00 00 ff ff and inflate raw. */
static int inflated_equals(const uint8_t *z, size_t n, const void *want, size_t wlen)
{
    uint8_t in[4096], out[4096];
    if (n + 4 > sizeof in) return 0;
    memcpy(in, z, n);
    memcpy(in + n, "\x00\x00\xff\xff", 4);
    z_stream s;
    memset(&s, 0, sizeof s);
    if (inflateInit2(&s, -15) != Z_OK) return 0;
    s.next_in = in;
    s.avail_in = (uInt)(n + 4);
    s.next_out = out;
    s.avail_out = sizeof out;
    int r = inflate(&s, Z_SYNC_FLUSH);
    size_t got = sizeof out - s.avail_out;
    inflateEnd(&s);
    return (r == Z_OK || r == Z_STREAM_END) && got == wlen && !memcmp(out, want, wlen);
}

/* Shared deflater: one compression for every subscriber; dedicated: one each, still right. */
static void test_compressed(wsk_loop *loop, int mode)
{
    const char *name = mode == WSK_COMPRESS_SHARED ? "shared" : "dedicated";
    wsk_server_opts o;
    wsk_server_opts_init(&o);
    o.compress = o.decompress = mode;
    wsk_handlers h = {.open = on_open, .close = on_close};
    wsk_server *srv = wsk_server_new(loop, &o, &h, NULL);
    if (!srv || wsk_server_listen(srv, "127.0.0.1", 0) < 0) abort();
    offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
    CHECK(open_clients(4, wsk_server_port(srv), 0), "%s: 4 clients negotiate permessage-deflate",
          name);
    offer = "";
    int pmd = 0;
    for (int i = 0; i < 4; i++) {
        pmd += wsk_ws_compressed(srv_ws[i]);
        wsk_subscribe(srv_ws[i], "z", 1);
    }
    CHECK(pmd == 4, "%s: compression on every socket (%d)", name, pmd);
    char text[300];
    for (size_t i = 0; i < sizeof text; i++) text[i] = "abcabcabd"[i % 9];
    uint64_t before = wsk_pmd_shared_messages(loop);
    long got = wsk_server_publish(srv, "z", 1, text, sizeof text, WSK_OP_TEXT, 1);
    uint64_t compressions = wsk_pmd_shared_messages(loop) - before;
    CHECK(got == 4, "%s: compressed publish queued for 4", name);
    CHECK(compressions == (mode == WSK_COMPRESS_SHARED ? 1u : 0u),
          "%s: the shared deflater ran %llu time(s)", name, (unsigned long long)compressions);
    SPIN_UNTIL(total_msgs(0, 4) == 4, spin(1, 4));
    int good = 0;
    for (int i = 0; i < 4; i++)
        good += cl[i].msgs == 1 && cl[i].last_rsv1 && cl[i].last_len < sizeof text &&
                inflated_equals(cl[i].last, cl[i].last_len, text, sizeof text);
    CHECK(good == 4, "%s: every subscriber gets an RSV1 frame that inflates to the message (%d)",
          name, good);
    CHECK(wsk_server_publish(srv, "z", 1, "short", 5, WSK_OP_TEXT, 1) == 4, "%s: short message",
          name);
    SPIN_UNTIL(total_msgs(0, 4) == 8, spin(1, 4));
    good = 0;
    for (int i = 0; i < 4; i++) good += !cl[i].last_rsv1 && cl[i].last_len == 5;
    CHECK(good == 4, "%s: under the threshold it goes uncompressed", name);
    close_all(4);
    SPIN_UNTIL(closes == 4, spin(1, 4));
    wsk_server_free(srv);
    closes = 0;
}

int main(void)
{
    wsk_loop *loop = test_loop(&ev);
    for (int i = 0; i < MAXC; i++) cl[i].fd = -1;
    test_basics(loop);
    test_to_self(loop);
    test_patterns(loop);
    test_hold(loop);
    test_hold_queue(loop);
    test_hold_retained(loop);
    test_many(loop);
    test_backpressure(loop);
    test_compressed(loop, WSK_COMPRESS_SHARED);
    test_compressed(loop, WSK_COMPRESS_DEDICATED);
    for (int i = 0; i < MAXC; i++) {
        free(cl[i].buf);
        free(cl[i].last);
    }
    wsk_loop_free(loop);
    return TEST_DONE();
}
