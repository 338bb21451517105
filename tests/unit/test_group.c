/* Server groups: three loops on three threads, one member server each on a port of its own,
 * so the test knows which loop a client lands on.  A publish from a socket on loop 0 reaches
 * the subscribers on loops 1 and 2 exactly once and in order (16 B, 2 KiB and 70 KiB
 * messages, plain and compressed, one per loop turn; then a burst of 16 to 300 B messages with
 * a 2 KiB one every fifth, many per turn: the short ones batched, the long ones shared, between
 * them); counts are the group's; patterns work across loops; wsk_group_call runs on the loop
 * asked for; a socket that subscribes after a publish of another loop was made, while that
 * message is still on its way, does not get it; a shutdown sends 1001 to every client on every
 * loop and wsk_group_run returns; a wsk_group_call made after that is refused and keeps no
 * memory, and wsk_group_call_or_drop's and wsk_group_call_ordered_or_drop's drop runs instead.
 * wsk_group_call_ordered's calls reach their loop between the publishes made around them.
 * The clients are raw sockets on the test's thread; the servers obey their commands
 * (group_cmd.h). */
#include "pmd_conn.h"
#include "test.h"
#include "group_cmd.h"
#include "group_members.h"
#include "rawws.h"
#include "wskit.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <zlib.h>

#define LOOPS 3
#define MAXC  8
#define MSGS  60
#define BURST 600 /* messages of the burst stream */

static const size_t sizes_each[] = {16, 2048, 70000}, sizes_burst[] = {16, 300, 100, 200, 2048};
static const size_t *sizes = sizes_each; /* of the stream under test, nsizes in a cycle */
static unsigned nsizes = 3;
static unsigned streamed; /* messages published by the streams so far */

static wsk_group *grp;
static wsk_server *srv[LOOPS];
static unsigned port[LOOPS];
static atomic_int ran;              /* wsk_group_run returned */
static atomic_int on_thread[LOOPS]; /* wsk_group_call ran on loop i's thread */
static pthread_t loop_thread[LOOPS];
static atomic_long asked;                 /* a count read on a loop by group_ask */
static wsk_ws *_Atomic last_open;         /* the server side of the last socket opened */
static atomic_int holding, release, held; /* test_late_subscriber's hold of loop 1 */

/* ----- the servers ------------------------------------------------------------------------- */

static void note_thread(void *arg, wsk_loop *loop)
{
    unsigned i = (unsigned)(uintptr_t)arg;
    on_thread[i] = wsk_group_loop(grp, i) == loop && pthread_equal(pthread_self(), loop_thread[i]);
}

/* wsk_group_call_or_drop's drop: counts. */
static void count_drop(void *arg)
{
    (*(unsigned *)arg)++;
}

static void mark_thread(void *arg, wsk_loop *loop)
{
    (void)loop;
    loop_thread[(uintptr_t)arg] = pthread_self();
}

/* Reads, on loop 1, the group's subscribers of the topic in arg. */
static void ask_subscribers(void *arg, wsk_loop *loop)
{
    (void)loop;
    atomic_store(&asked, (long)wsk_server_subscribers(srv[1], arg, strlen(arg)));
}

static void ask_reaches(void *arg, wsk_loop *loop)
{
    (void)loop;
    atomic_store(&asked, (long)wsk_server_reaches(srv[2], arg, strlen(arg)));
}

/* Messages loop i's shared deflater compressed (i in arg), read on loop i. */
static void ask_deflated(void *arg, wsk_loop *loop)
{
    (void)arg;
    atomic_store(&asked, (long)wsk_pmd_shared_messages(loop));
}

static void note_open(wsk_ws *ws)
{
    atomic_store(&last_open, ws);
}

/* Holds loop 1 until the test releases it, then subscribes the socket arg to "late". */
static void hold_then_subscribe(void *arg, wsk_loop *loop)
{
    (void)loop;
    atomic_store(&holding, 1);
    SPIN_UNTIL(atomic_load(&release), usleep(1000));
    wsk_subscribe(arg, "late", 4);
    atomic_store(&held, 1);
}

static void *run_group(void *arg)
{
    (void)arg;
    wsk_group_run(grp);
    atomic_store(&ran, 1);
    return NULL;
}

static void start_group(void)
{
    grp = wsk_group_new(LOOPS, NULL);
    if (!grp) abort();
    wsk_server_opts o;
    wsk_server_opts_init(&o);
    o.compress = o.decompress = WSK_COMPRESS_SHARED;
    o.max_payload = 1 << 20;
    wsk_handlers h = {.open = note_open, .message = cmd_message};
    group_members(grp, &o, &h, srv, port);
    for (unsigned i = 0; i < LOOPS; i++) wsk_group_call(grp, i, mark_thread, (void *)(uintptr_t)i);
    pthread_t t;
    if (pthread_create(&t, NULL, run_group, NULL)) abort();
    pthread_detach(t);
}

/* ----- the clients ------------------------------------------------------------------------- */

struct client {
    int fd, open, eof;
    unsigned loop;
    uint8_t *buf;
    size_t len, cap;
    unsigned oks;        /* "ok" answers */
    unsigned msgs;       /* data messages other than "ok" */
    unsigned bad;        /* messages out of order or damaged */
    unsigned compressed; /* of which had RSV1 */
    unsigned close_code;
    char last[64];  /* the last short message, NUL-terminated */
    char log[1024]; /* the short messages since it was emptied, each followed by a space */
    wsk_ws *ws;     /* its server side (used on its loop only) */
};

static struct client cl[MAXC];

static uint8_t payload_byte(unsigned k, size_t i)
{
    return (uint8_t)(k * 31u + i / 7u);
}

/* RFC 7692 7.2.2: append 00 00 ff ff and inflate raw; the length, or -1. */
static long inflate_msg(const uint8_t *z, size_t n, uint8_t *out, size_t cap)
{
    uint8_t *in = malloc(n + 4);
    memcpy(in, z, n);
    memcpy(in + n, "\x00\x00\xff\xff", 4);
    z_stream s;
    memset(&s, 0, sizeof s);
    long got = -1;
    if (inflateInit2(&s, -15) == Z_OK) {
        s.next_in = in;
        s.avail_in = (uInt)(n + 4);
        s.next_out = out;
        s.avail_out = (uInt)cap;
        int r = inflate(&s, Z_SYNC_FLUSH);
        if (r == Z_OK || r == Z_STREAM_END) got = (long)(cap - s.avail_out);
        inflateEnd(&s);
    }
    free(in);
    return got;
}

/* A message of the ordered stream: the k-th must be sizes[k % nsizes] bytes of payload_byte(k). */
static void check_stream(struct client *c, const uint8_t *p, size_t n)
{
    unsigned k = c->msgs++;
    int ok = n == sizes[k % nsizes];
    for (size_t i = 0; ok && i < n; i++) ok = p[i] == payload_byte(k, i);
    if (!ok) c->bad++;
}

static void parse_frames(struct client *c)
{
    static uint8_t plain[80000];
    size_t hl;
    uint64_t n;
    while (rawws_frame(c->buf, c->len, &hl, &n)) {
        unsigned op = c->buf[0] & 15;
        const uint8_t *p = c->buf + hl;
        size_t len = (size_t)n;
        if (c->buf[0] & 0x40) {
            long r = inflate_msg(p, len, plain, sizeof plain);
            c->compressed++;
            p = plain;
            len = r < 0 ? 0 : (size_t)r;
        }
        if (op == 8) {
            c->close_code = len >= 2 ? (unsigned)(p[0] << 8 | p[1]) : 1005;
            /* Answer the close: the server's closing handshake completes. */
            uint8_t cf[8] = {0x88, 0x82, 0, 0, 0, 0, p[0], p[1]};
            if (send(c->fd, cf, len >= 2 ? 8 : 6, MSG_NOSIGNAL) < 0) c->eof = 1;
        } else if (op == 1 && len == 2 && !memcmp(p, "ok", 2)) {
            c->oks++;
        } else if (op == 1 || op == 2) {
            if (op == 1 && len < sizeof c->last) {
                memcpy(c->last, p, len);
                c->last[len] = 0;
                c->msgs++;
                test_append(c->log, sizeof c->log, "%s ", c->last);
            } else {
                check_stream(c, p, len);
            }
        }
        memmove(c->buf, c->buf + hl + n, c->len - hl - (size_t)n);
        c->len -= hl + (size_t)n;
    }
}

static void read_client(struct client *c)
{
    if (c->fd < 0 || c->eof) return;
    if (rawws_read(c->fd, &c->buf, &c->len, &c->cap, &c->open, &c->eof)) parse_frames(c);
}

static void spin(void)
{
    struct pollfd p[MAXC];
    for (int i = 0; i < MAXC; i++) p[i] = (struct pollfd){.fd = cl[i].fd, .events = POLLIN};
    poll(p, MAXC, 2);
    for (int i = 0; i < MAXC; i++) read_client(&cl[i]);
}

static int connect_client(int i, unsigned loop)
{
    struct client *c = &cl[i];
    free(c->buf);
    memset(c, 0, sizeof *c);
    c->loop = loop;
    c->fd = rawws_connect(port[loop], "Sec-WebSocket-Extensions: permessage-deflate; "
                                      "client_max_window_bits\r\n");
    if (c->fd < 0) abort();
    SPIN_UNTIL(c->open, spin());
    c->ws = atomic_load(&last_open); /* the open handler ran before the 101 went out */
    return c->open;
}

/* Sends a masked frame (key 0: the payload goes as it is) with opcode op. */
static void send_frame(struct client *c, unsigned op, const void *p, size_t n)
{
    uint8_t h[14];
    size_t hl = 2;
    h[0] = (uint8_t)(0x80 | op);
    if (n < 126) {
        h[1] = (uint8_t)(0x80 | n);
    } else if (n < 65536) {
        h[1] = 0x80 | 126;
        h[2] = (uint8_t)(n >> 8);
        h[3] = (uint8_t)n;
        hl = 4;
    } else {
        h[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++) h[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
        hl = 10;
    }
    memset(h + hl, 0, 4);
    hl += 4;
    uint8_t *f = malloc(hl + n);
    memcpy(f, h, hl);
    if (n) memcpy(f + hl, p, n);
    size_t off = 0;
    double until = test_now() + 5;
    while (off < hl + n && test_now() < until) {
        ssize_t r = send(c->fd, f + off, hl + n - off, MSG_NOSIGNAL);
        if (r > 0)
            off += (size_t)r;
        else
            spin(); /* the server pushes back: read what it sent meanwhile */
    }
    free(f);
}

static void command(int i, const char *cmd)
{
    unsigned oks = cl[i].oks;
    send_frame(&cl[i], 1, cmd, strlen(cmd));
    SPIN_UNTIL(cl[i].oks > oks, spin());
}

static void publish(int i, const char *topic, unsigned op, const void *p, size_t n)
{
    size_t tl = strlen(topic);
    uint8_t *m = malloc(2 + tl + n);
    m[0] = 'p';
    memcpy(m + 1, topic, tl);
    m[1 + tl] = '\n';
    if (n) memcpy(m + 2 + tl, p, n);
    send_frame(&cl[i], op, m, 2 + tl + n);
    free(m);
}

/* Reads count on loop i through wsk_group_call. */
static long ask(unsigned i, void (*fn)(void *, wsk_loop *), const char *topic);

/* Shared-deflater compressions on each loop. */
static void deflations(long out[LOOPS])
{
    for (unsigned i = 0; i < LOOPS; i++) out[i] = ask(i, ask_deflated, NULL);
}

static long ask(unsigned i, void (*fn)(void *, wsk_loop *), const char *topic)
{
    atomic_store(&asked, -1);
    wsk_group_call(grp, i, fn, (void *)topic);
    SPIN_UNTIL(atomic_load(&asked) >= 0, spin());
    return atomic_load(&asked);
}

/* ----- the tests --------------------------------------------------------------------------- */

/* cl[0] publishes on loop 0; cl[1] (loop 0), cl[2], cl[3] (loop 1) and cl[4] (loop 2)
 * subscribe. */
static void test_stream(int compress, const char *topic, int burst)
{
    const char *name = burst ? "burst" : compress ? "compressed" : "plain";
    unsigned msgs = burst ? BURST : MSGS;
    sizes = burst ? sizes_burst : sizes_each;
    nsizes = burst ? 5 : 3;
    atomic_store(&cmd_compress, compress);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "s%s", topic);
    for (int i = 1; i <= 4; i++) command(i, cmd);
    for (int i = 0; i <= 4; i++) cl[i].msgs = cl[i].bad = cl[i].compressed = 0;
    CHECK(ask(1, ask_subscribers, topic) == 4, "%s: a member counts the subscribers of all loops",
          name);

    static uint8_t buf[70000];
    long z0[LOOPS], z1[LOOPS];
    deflations(z0);
    for (unsigned k = 0; k < msgs; k++) {
        size_t n = sizes[k % nsizes];
        for (size_t i = 0; i < n; i++) buf[i] = payload_byte(k, i);
        publish(0, topic, 2, buf, n);
        if (!burst || k % 200 == 199) spin(); /* a burst: the server reads many at a time */
    }
    streamed += msgs;
    SPIN_UNTIL(cl[1].msgs >= msgs && cl[2].msgs >= msgs && cl[3].msgs >= msgs && cl[4].msgs >= msgs,
               spin());
    int good = 1;
    for (int i = 1; i <= 4; i++)
        good &= EXPECT(cl[i].msgs == msgs && !cl[i].bad, "client %d (loop %u): %u msgs, %u bad", i,
                       cl[i].loop, cl[i].msgs, cl[i].bad);
    CHECK(good, "%s: %u messages of %zu to %zu B reach loops 0, 1 and 2 once, in order", name, msgs,
          sizes[0], sizes[nsizes - 1]);
    CHECK(cl[0].msgs == 0, "%s: the publisher does not get its own messages", name);
    CHECK(atomic_load(&cmd_count[0]) == 4, "%s: a publish counts receivers on every loop (%ld)",
          name, atomic_load(&cmd_count[0]));
    deflations(z1);
    if (compress) {
        CHECK(cl[2].compressed >= 2 * MSGS / 3 && cl[4].compressed >= 2 * MSGS / 3,
              "compressed: other loops' subscribers get compressed frames (%u, %u)",
              cl[2].compressed, cl[4].compressed);
        CHECK(z1[0] > z0[0] && z1[1] == z0[1] && z1[2] == z0[2],
              "compressed: the publishing loop compresses once, the others reuse it (%ld %ld %ld)",
              z1[0] - z0[0], z1[1] - z0[1], z1[2] - z0[2]);
    }
    snprintf(cmd, sizeof cmd, "u%s", topic);
    for (int i = 1; i <= 4; i++) command(i, cmd);
    CHECK(ask(1, ask_subscribers, topic) == 0, "%s: unsubscribing on every loop counts 0", name);
}

/* A pattern on loop 2; a socket on loop 1 subscribed by name and by pattern gets it once. */
static void test_patterns(void)
{
    atomic_store(&cmd_compress, 0);
    command(4, "sroom.*");
    command(2, "sroom.a");
    command(2, "sroom.>");
    for (int i = 0; i <= 4; i++) cl[i].msgs = 0;
    CHECK(ask(2, ask_reaches, "room.a") == 1 && ask(2, ask_reaches, "hall.a") == 0,
          "patterns: wsk_server_reaches sees the patterns of other loops");
    publish(0, "room.a", 1, "hi", 2);
    SPIN_UNTIL(cl[2].msgs >= 1 && cl[4].msgs >= 1, spin());
    publish(0, "room.b.c", 1, "deep", 4);
    SPIN_UNTIL(cl[2].msgs >= 2, spin());
    publish(0, "room.z", 1, "end", 3); /* cl[2] and cl[4] get it: the last one */
    SPIN_UNTIL(cl[2].msgs >= 3 && cl[4].msgs >= 2, spin());
    CHECK(cl[2].msgs == 3 && !strcmp(cl[2].last, "end"),
          "patterns: a socket on loop 1 matching twice gets each message once (%u)", cl[2].msgs);
    CHECK(cl[4].msgs == 2 && !strcmp(cl[4].last, "end"),
          "patterns: '*' on loop 2 gets room.a and room.z, not room.b.c (%u)", cl[4].msgs);
    CHECK(cl[0].msgs == 0 && cl[1].msgs == 0 && cl[3].msgs == 0,
          "patterns: sockets not subscribed get nothing");
}

static void test_calls(void)
{
    for (unsigned i = 0; i < LOOPS; i++) wsk_group_call(grp, i, note_thread, (void *)(uintptr_t)i);
    SPIN_UNTIL(on_thread[0] && on_thread[1] && on_thread[2], spin());
    CHECK(on_thread[0] && on_thread[1] && on_thread[2],
          "wsk_group_call runs fn on the thread of the loop asked for");
    CHECK(wsk_group_call(grp, LOOPS, note_thread, NULL) == WSK_ERR_INVAL,
          "wsk_group_call: a loop out of range is WSK_ERR_INVAL");
}

/* cl[2] on loop 1 listens to "late"; loop 1 is held while cl[0] publishes "one" on loop 0, so
 * the message waits for loop 1; then cl[3] subscribes on loop 1, before loop 1 takes it: cl[3]
 * must not get "one" (published before it subscribed), only "two" after. */
static void test_late_subscriber(void)
{
    command(2, "slate");
    for (int i = 0; i <= 4; i++) cl[i].msgs = 0;
    wsk_group_call(grp, 1, hold_then_subscribe, cl[3].ws);
    SPIN_UNTIL(atomic_load(&holding), spin());
    atomic_store(&cmd_count[0], -99);
    publish(0, "late", 1, "one", 3);
    SPIN_UNTIL(atomic_load(&cmd_count[0]) != -99, spin());
    atomic_store(&release, 1);
    SPIN_UNTIL(atomic_load(&held) && cl[2].msgs >= 1, spin());
    publish(0, "late", 1, "two", 3);
    SPIN_UNTIL(cl[2].msgs >= 2 && cl[3].msgs >= 1, spin());
    spin();
    CHECK(atomic_load(&held) && cl[2].msgs == 2 && !strcmp(cl[2].last, "two"),
          "late subscriber: the listener on loop 1 gets both messages (%u)", cl[2].msgs);
    CHECK(cl[3].msgs == 1 && !strcmp(cl[3].last, "two"),
          "late subscriber: a socket that subscribed while \"one\" was on its way to its loop "
          "gets only \"two\" (%u, last \"%s\")",
          cl[3].msgs, cl[3].last);
    command(2, "ulate");
    command(3, "ulate");
}

#define ORDERED 40 /* replies between publishes in test_ordered_calls */

/* On loop 1: the reply arg to client 2. */
static void ordered_reply(void *arg, wsk_loop *loop)
{
    char m[16];
    (void)loop;
    int n = snprintf(m, sizeof m, "r%u", (unsigned)(uintptr_t)arg);
    wsk_send(cl[2].ws, m, (size_t)n, WSK_OP_TEXT, 0);
}

/* On loop 0, in one turn: a publish, a reply for loop 1, a publish... */
static void ordered_burst(void *arg, wsk_loop *loop)
{
    char m[16];
    int r = 0;
    (void)arg;
    for (unsigned k = 0; k <= ORDERED; k++) {
        int n = snprintf(m, sizeof m, "b%u", k);
        wsk_server_publish(srv[0], "ord", 3, m, (size_t)n, WSK_OP_TEXT, 0);
        if (k < ORDERED) r |= wsk_group_call_ordered(loop, 1, ordered_reply, (void *)(uintptr_t)k);
    }
    atomic_store(&asked, r);
}

/* wsk_group_call_ordered: the replies reach loop 1 between the publishes made around them,
 * all in one batch (wsk_group_call would post each at once, ahead of the batch). */
static void test_ordered_calls(void)
{
    command(2, "sord");
    cl[2].log[0] = 0;
    unsigned msgs = cl[2].msgs;
    atomic_store(&asked, -1);
    wsk_group_call(grp, 0, ordered_burst, NULL);
    SPIN_UNTIL(cl[2].msgs == msgs + 2 * ORDERED + 1, spin());
    char want[1024] = "";
    for (unsigned k = 0; k < ORDERED; k++) test_append(want, sizeof want, "b%u r%u ", k, k);
    test_append(want, sizeof want, "b%u ", ORDERED);
    CHECK(atomic_load(&asked) == 0 && !strcmp(cl[2].log, want),
          "wsk_group_call_ordered: publish, call, publish... reach loop 1 in that order (%.40s...)",
          cl[2].log);
    CHECK(wsk_group_call_ordered(wsk_group_loop(grp, 0), LOOPS, ordered_reply, NULL) ==
                  WSK_ERR_INVAL &&
              wsk_group_call_ordered(wsk_group_loop(grp, 0), 1, NULL, NULL) == WSK_ERR_INVAL &&
              wsk_group_call_ordered(NULL, 1, ordered_reply, NULL) == WSK_ERR_INVAL,
          "wsk_group_call_ordered: a loop out of range, no fn or no loop: WSK_ERR_INVAL");
    command(2, "uord");
}

/* On loop 1: a message for loop 1's subscribers only, from the server then from cl[2]. */
static void publish_on_one(void *arg, wsk_loop *loop)
{
    (void)arg;
    (void)loop;
    long a = wsk_server_publish_here(srv[1], "here", 4, "a", 1, WSK_OP_TEXT, 0);
    long b = wsk_publish_here(cl[2].ws, "here", 4, "b", 1, WSK_OP_TEXT, 0);
    atomic_store(&asked, a * 10 + b);
}

/* Holds loop 1: cl[3] holds "rel" until the test lets go, then releases it (arg NULL) or
 * ends it (wsk_ws_hold_end) while a message of loop 0 waits for loop 1. */
static void hold_then_release(void *arg, wsk_loop *loop)
{
    (void)loop;
    wsk_ws_hold(cl[3].ws, "rel", 3);
    atomic_store(&holding, 1);
    SPIN_UNTIL(atomic_load(&release), usleep(1000));
    if (arg)
        wsk_ws_hold_end(cl[3].ws);
    else
        wsk_ws_hold_release(cl[3].ws);
    atomic_store(&held, 1);
}

/* wsk_ws_hold_release: a message another loop published while the socket held the topic, still
 * on its way at the release, is delivered (wsk_ws_hold_end would keep it back). */
static void test_hold_release(void)
{
    command(3, "srel");
    cl[3].log[0] = 0;
    atomic_store(&holding, 0);
    atomic_store(&release, 0);
    atomic_store(&held, 0);
    wsk_group_call(grp, 1, hold_then_release, NULL);
    SPIN_UNTIL(atomic_load(&holding), spin());
    atomic_store(&cmd_count[0], -99);
    publish(0, "rel", 1, "one", 3); /* on its way to loop 1, which is busy */
    SPIN_UNTIL(atomic_load(&cmd_count[0]) != -99, spin());
    atomic_store(&release, 1);
    SPIN_UNTIL(atomic_load(&held), spin());
    publish(0, "rel", 1, "two", 3);
    SPIN_UNTIL(strstr(cl[3].log, "two"), spin());
    CHECK(!strcmp(cl[3].log, "one two "),
          "hold_release: what another loop published before the release reaches it (%s)",
          cl[3].log);
    command(3, "urel");
}

/* On loop 1: cl[3] holds "grp" for other loops' messages only, and loop 1 publishes to it
 * (arg NULL); or the hold is released (arg set). */
static void hold_group_on_one(void *arg, wsk_loop *loop)
{
    (void)loop;
    if (arg) {
        wsk_ws_hold_release(cl[3].ws);
    } else {
        wsk_ws_hold_group(cl[3].ws, "grp", 3);
        wsk_server_publish_here(srv[1], "grp", 3, "mine", 4, WSK_OP_TEXT, 0);
    }
    atomic_store(&held, 1);
}

/* wsk_ws_hold_group: the socket's own loop's messages pass, another loop's are held back until
 * the release. */
static void test_hold_group(void)
{
    command(3, "sgrp");
    command(3, "sgrq");
    cl[3].log[0] = 0;
    atomic_store(&held, 0);
    wsk_group_call(grp, 1, hold_group_on_one, NULL);
    SPIN_UNTIL(atomic_load(&held), spin());
    publish(0, "grp", 1, "other", 5);
    publish(0, "grq", 1, "mark", 4); /* after "other" on loop 1 */
    SPIN_UNTIL(strstr(cl[3].log, "mark"), spin());
    atomic_store(&held, 0);
    wsk_group_call(grp, 1, hold_group_on_one, "release");
    SPIN_UNTIL(atomic_load(&held), spin());
    publish(0, "grp", 1, "after", 5);
    SPIN_UNTIL(strstr(cl[3].log, "after"), spin());
    CHECK(!strcmp(cl[3].log, "mine mark after "),
          "hold_group: the own loop's message passes, another loop's is held until the "
          "release (%s)",
          cl[3].log);
    command(3, "ugrp");
    command(3, "ugrq");
}

/* wsk_server_publish_here and wsk_publish_here reach the calling loop's subscribers only. */
static void test_here(void)
{
    static const int subs[] = {1, 2, 3, 4}; /* loops 0, 1, 1, 2 */
    for (int i = 0; i < 4; i++) {
        command(subs[i], "shere");
        cl[subs[i]].log[0] = 0;
    }
    atomic_store(&asked, -1);
    wsk_group_call(grp, 1, publish_on_one, NULL);
    SPIN_UNTIL(atomic_load(&asked) >= 0, spin());
    publish(0, "here", 1, "end", 3); /* after them on loop 1; the only one elsewhere */
    SPIN_UNTIL(strstr(cl[1].log, "end") && strstr(cl[2].log, "end") && strstr(cl[3].log, "end") &&
                   strstr(cl[4].log, "end"),
               spin());
    CHECK(atomic_load(&asked) == 21 && !strcmp(cl[2].log, "a end ") &&
              !strcmp(cl[3].log, "a b end ") && !strcmp(cl[1].log, "end ") &&
              !strcmp(cl[4].log, "end "),
          "publish_here: loop 1's subscribers only, its sender left out (%ld; %s| %s| %s| %s)",
          atomic_load(&asked), cl[1].log, cl[2].log, cl[3].log, cl[4].log);
    for (int i = 0; i < 4; i++) command(subs[i], "uhere");
}

static void shut(void *arg, wsk_loop *loop)
{
    (void)arg;
    (void)loop;
    wsk_group_shutdown(grp, 1001, "going away", 2);
}

/* The members' figures, summed from this thread (copied by each loop every second). */
static void test_stats(void)
{
    wsk_stats st;
    memset(&st, 0, sizeof st);
    SPIN_UNTIL(wsk_group_stats(grp, &st, sizeof st) == 0 && st.publishes == streamed + 3 &&
                   st.open == 6 && st.deliveries == 4 * streamed + 5,
               usleep(20000));
    CHECK(st.publishes == streamed + 3 && st.open == 6 && st.deliveries == 4 * streamed + 5,
          "wsk_group_stats sums the members: %llu publishes, %llu open, %llu deliveries",
          (unsigned long long)st.publishes, (unsigned long long)st.open,
          (unsigned long long)st.deliveries);
}

static void test_shutdown(void)
{
    wsk_group_call(grp, 0, shut, NULL); /* as a signal watcher on loop 0 would */
    SPIN_UNTIL(atomic_load(&ran), spin());
    int all = 1;
    for (int i = 0; i <= 5; i++)
        all &= EXPECT(cl[i].close_code == 1001, "client %d (loop %u): close %u", i, cl[i].loop,
                      cl[i].close_code);
    CHECK(all, "shutdown: every client on every loop gets 1001");
    CHECK(atomic_load(&ran), "shutdown: wsk_group_run returns once every loop drained");
    unsigned idx = 9;
    CHECK(wsk_server_group(srv[2], &idx) == grp && idx == 2, "wsk_server_group: group and index");
    /* Nothing will run a call made now: refused, and nothing of it kept until wsk_group_free.
     * The allocation count is the process's: the clients' threads may allocate meanwhile, so
     * the least growth of three rounds is what counts (what the calls kept shows in each). */
    int refused = 0;
    ssize_t grew = SSIZE_MAX;
    for (int round = 0; round < 3; round++) {
        size_t before = test_allocated();
        for (int i = 0; i < 1000; i++)
            refused +=
                wsk_group_call(grp, i % 2 ? WSK_GROUP_ALL : 1, note_thread, NULL) == WSK_ERR_STATE;
        size_t after = test_allocated();
        if ((ssize_t)(after - before) < grew) grew = (ssize_t)(after - before);
    }
    wsk_group_shutdown(grp, 1001, NULL, 0);
    refused +=
        wsk_group_call_ordered(wsk_group_loop(grp, 0), 1, note_thread, NULL) == WSK_ERR_STATE;
    CHECK(refused == 3001 && grew <= 4096,
          "after wsk_group_run returned: wsk_group_call is refused and keeps nothing (%d refused, "
          "%zd bytes more allocated)",
          refused, grew);
    unsigned drops = 0;
    int r = wsk_group_call_or_drop(grp, WSK_GROUP_ALL, note_thread, count_drop, &drops);
    CHECK(r == WSK_ERR_STATE && drops == LOOPS,
          "wsk_group_call_or_drop refused: its drop ran once per loop, before it returned (%u)",
          drops);
    drops = 0;
    r = wsk_group_call_ordered_or_drop(wsk_group_loop(grp, 0), 1, note_thread, count_drop, &drops);
    int inval = wsk_group_call_ordered_or_drop(wsk_group_loop(grp, 0), 1, note_thread, NULL,
                                               &drops) == WSK_ERR_INVAL &&
                wsk_group_call_ordered_or_drop(wsk_group_loop(grp, 0), LOOPS, note_thread,
                                               count_drop, &drops) == WSK_ERR_INVAL;
    CHECK(r == WSK_ERR_STATE && drops == 1 && inval,
          "wsk_group_call_ordered_or_drop refused: its drop ran once, before it returned (%u); "
          "no drop or a loop out of range: WSK_ERR_INVAL, nothing ran",
          drops);
    for (unsigned i = 0; i < LOOPS; i++) wsk_server_free(srv[i]);
    wsk_group_free(grp);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    for (int i = 0; i < MAXC; i++) cl[i].fd = -1;
    start_group();
    CHECK(wsk_group_size(grp) == LOOPS && wsk_group_loop(grp, LOOPS) == NULL,
          "wsk_group_size and wsk_group_loop");
    static const unsigned at[6] = {0, 0, 1, 1, 2, 2};
    int opened = 1;
    for (int i = 0; i < 6; i++) opened &= connect_client(i, at[i]);
    CHECK(opened, "6 clients open, 2 on each loop");
    test_calls();
    test_stream(0, "t", 0);
    test_stream(1, "z", 0);
    test_stream(0, "b", 1);
    test_patterns();
    test_stats();
    test_ordered_calls();
    test_here();
    test_late_subscriber();
    test_hold_release();
    test_hold_group();
    test_shutdown();
    for (int i = 0; i < MAXC; i++) {
        if (cl[i].fd >= 0) close(cl[i].fd);
        free(cl[i].buf);
    }
    return TEST_DONE();
}
