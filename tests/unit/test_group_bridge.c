/* A server group behind one bridge: node A is a 2-loop group whose member 0 bridges, node B a
 * 1-loop group with a bridge of its own, both on a real redis-server (skipped when there is
 * none).  The engine is subscribed to the union of A's loops' topics, once; a message
 * published on B reaches A's subscribers on both loops once, in order; a publish on A's loop 1
 * (not the bridging one) reaches B once and A's loop 0 once; when the last subscriber of A
 * leaves, A leaves the channel.  B's loop 0 is libev's default loop, which outlives B.  The servers
 * obey group_cmd.h; the clients are raw sockets. */
#include "test.h"
#include "group_cmd.h"
#include "rawws.h"
#include "wskit.h"

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <sys/wait.h>

struct node {
    wsk_group *g;
    unsigned n;
    wsk_server *srv[2];
    atomic_int ran;
    pthread_t th;
};

static struct node A, B;

struct client {
    int fd, open, eof;
    uint8_t *buf;
    size_t len, cap;
    unsigned oks, msgs, bad;
};

static struct client cl[3]; /* 0: A loop 0, 1: A loop 1, 2: B */

static void read_client(struct client *c)
{
    if (c->fd < 0 || c->eof) return;
    if (!rawws_read(c->fd, &c->buf, &c->len, &c->cap, &c->open, &c->eof)) return;
    size_t hl, off = 0;
    uint64_t n;
    while (rawws_frame(c->buf + off, c->len - off, &hl, &n)) {
        const char *p = (const char *)c->buf + off + hl;
        if (n == 2 && !memcmp(p, "ok", 2)) {
            c->oks++;
        } else if ((c->buf[off] & 15) == 1) {
            char want[16];
            int wl = snprintf(want, sizeof want, "m%u", c->msgs++);
            if ((uint64_t)wl != n || memcmp(p, want, (size_t)wl)) c->bad++;
        }
        off += hl + (size_t)n;
    }
    memmove(c->buf, c->buf + off, c->len - off);
    c->len -= off;
}

static void spin(void)
{
    usleep(1000);
    for (int i = 0; i < 3; i++) read_client(&cl[i]);
}

static void send_text(struct client *c, const char *s)
{
    size_t n = strlen(s);
    uint8_t f[128] = {0x81, (uint8_t)(0x80 | n), 0, 0, 0, 0};
    memcpy(f + 6, s, n);
    if (send(c->fd, f, 6 + n, MSG_NOSIGNAL) != (ssize_t)(6 + n)) abort();
}

static void command(int i, const char *cmd)
{
    unsigned oks = cl[i].oks;
    send_text(&cl[i], cmd);
    SPIN_UNTIL(cl[i].oks > oks, spin());
}

static void open_client(int i, wsk_server *srv)
{
    struct client *c = &cl[i];
    if ((c->fd = rawws_connect(wsk_server_port(srv), "")) < 0) abort();
    SPIN_UNTIL(c->open, spin());
}

static void *run_node(void *arg)
{
    struct node *nd = arg;
    wsk_group_run(nd->g);
    atomic_store(&nd->ran, 1);
    return NULL;
}

/* ev0: the caller's loop 0 (NULL: the group makes its own). */
static void start_node(struct node *nd, unsigned n, const char *url, struct ev_loop *ev0)
{
    nd->n = n;
    nd->g = wsk_group_new(n, ev0);
    wsk_handlers h = {.message = cmd_message};
    for (unsigned i = 0; i < n; i++) {
        wsk_loop *loop = wsk_group_loop(nd->g, i);
        wsk_loop_set_log(loop, WSK_LOG_ERROR, NULL, NULL);
        nd->srv[i] = wsk_server_new(loop, NULL, &h, NULL);
        if (!nd->srv[i] || wsk_server_listen(nd->srv[i], "127.0.0.1", 0) < 0 ||
            wsk_group_add(nd->g, nd->srv[i]) < 0)
            abort();
    }
    if (wsk_server_bridge(nd->srv[0], &url, 1, "wskit:") < 0) abort();
    if (pthread_create(&nd->th, NULL, run_node, nd)) abort();
}

static void shut(void *arg, wsk_loop *loop)
{
    (void)loop;
    wsk_group_shutdown(arg, 1001, NULL, 0.5);
}

static void stop_node(struct node *nd)
{
    wsk_group_call(nd->g, 0, shut, nd->g);
    SPIN_UNTIL(atomic_load(&nd->ran), spin());
    CHECK(atomic_load(&nd->ran), "a shutdown ends a bridged group (the engine connection open)");
    if (!atomic_load(&nd->ran)) return;
    pthread_join(nd->th, NULL);
    for (unsigned i = 0; i < nd->n; i++) wsk_server_free(nd->srv[i]);
    wsk_group_free(nd->g);
}

/* Subscribers of channel ch on redis (PUBSUB NUMSUB), or -1. */
static long numsub(redisContext *r, const char *ch)
{
    redisReply *rep = redisCommand(r, "PUBSUB NUMSUB %s", ch);
    long n = -1;
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2)
        n = (long)rep->element[1]->integer;
    freeReplyObject(rep);
    return n;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (access("/usr/bin/redis-server", X_OK) && access("/usr/local/bin/redis-server", X_OK)) {
        printf("ok 1 # SKIP no redis-server\n");
        return 0;
    }
    unsigned port = test_free_port();
    char ps[16];
    snprintf(ps, sizeof ps, "%u", port);
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        execlp("redis-server", "redis-server", "--port", ps, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", (char *)NULL);
        _exit(127);
    }
    redisContext *r = NULL;
    SPIN_UNTIL(r && !r->err, {
        if (r) redisFree(r);
        usleep(20000);
        r = redisConnect("127.0.0.1", (int)port);
    });
    CHECK(r && !r->err, "redis-server runs on port %u", port);

    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%u", port);
    start_node(&A, 2, url, NULL);
    start_node(&B, 1, url, ev_default_loop(0)); /* B's loop 0 is libev's default loop */
    CHECK(wsk_loop_ev(wsk_group_loop(B.g, 0)) == ev_default_loop(0),
          "a group's loop 0 can be the caller's (libev's default loop)");
    for (int i = 0; i < 3; i++) cl[i].fd = -1;
    open_client(0, A.srv[0]);
    open_client(1, A.srv[1]);
    open_client(2, B.srv[0]);

    command(0, "snews");
    command(1, "snews");
    command(2, "snews");
    SPIN_UNTIL(numsub(r, "wskit:news") == 2, usleep(20000));
    CHECK(numsub(r, "wskit:news") == 2,
          "the engine has one subscription per node: A's two loops share one");

    /* B publishes: both loops of A get it once, in order. */
    char m[32];
    for (int k = 0; k < 20; k++) {
        snprintf(m, sizeof m, "pnews\nm%d", k);
        send_text(&cl[2], m);
    }
    SPIN_UNTIL(cl[0].msgs >= 20 && cl[1].msgs >= 20, spin());
    CHECK(cl[0].msgs == 20 && cl[1].msgs == 20 && !cl[0].bad && !cl[1].bad,
          "from B: A's loops 0 (bridging) and 1 get each message once, in order (%u, %u)",
          cl[0].msgs, cl[1].msgs);

    /* A's loop 1 publishes: B once (forwarded once, by loop 0), A's loop 0 once. */
    for (int i = 0; i < 3; i++) cl[i].msgs = cl[i].bad = 0;
    for (int k = 0; k < 20; k++) {
        snprintf(m, sizeof m, "pnews\nm%d", k);
        send_text(&cl[1], m);
    }
    SPIN_UNTIL(cl[0].msgs >= 20 && cl[2].msgs >= 20, spin());
    for (int i = 0; i < 20; i++) spin(); /* a duplicate would arrive meanwhile */
    CHECK(cl[2].msgs == 20 && !cl[2].bad,
          "from A's loop 1: B gets each message once, in order (%u, %u bad)", cl[2].msgs,
          cl[2].bad);
    CHECK(cl[0].msgs == 20 && !cl[0].bad && cl[1].msgs == 0,
          "from A's loop 1: A's loop 0 gets each once, the publisher none (%u, %u)", cl[0].msgs,
          cl[1].msgs);

    /* The union: A stays on the channel until its last loop's subscriber leaves. */
    command(0, "unews");
    for (int i = 0; i < 20; i++) spin();
    CHECK(numsub(r, "wskit:news") == 2, "one loop of A left: A is still on the channel");
    command(1, "unews");
    SPIN_UNTIL(numsub(r, "wskit:news") == 1, usleep(20000));
    CHECK(numsub(r, "wskit:news") == 1, "A's last subscriber left: A left the channel");

    stop_node(&A);
    stop_node(&B);
    /* The caller's loop outlives the group, and runs again. */
    ev_run(ev_default_loop(0), EVRUN_NOWAIT);
    for (int i = 0; i < 3; i++) {
        close(cl[i].fd);
        free(cl[i].buf);
    }
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    redisFree(r);
    return TEST_DONE();
}
