/* wsserve's modes (cmd/serve.h) without wsserve: two brokers and two chat rooms in one process,
 * on one loop, each with its own options and state, as threads will run them.  A mode that kept
 * anything in globals would mix the second server's token, room or counts into the first. */
#include "serve.h"
#include "test.h"

#include <arpa/inet.h>
#include <ev.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

static struct ev_loop *ev;

/* A plain request answered by the mode, as wsserve.c does. */
static void on_request(wsk_server *srv, const wsk_request *req, wsk_response *res)
{
    struct serve *sv = serve_of(srv);
    wsk_response_set_status(res, sv->mode->request(sv, req, res));
}

/* Sends `head` and reads the answer into resp until it holds `until` (test_exchange). */
static int exchange(unsigned port, const char *head, const char *until, char *resp, size_t cap)
{
    return test_exchange(ev, port, head, strlen(head), until, resp, cap);
}

static int upgrade_status(unsigned port, const char *target)
{
    char head[512], resp[4096];
    snprintf(head, sizeof head,
             "GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
             target);
    int fd = exchange(port, head, "\r\n\r\n", resp, sizeof resp);
    if (fd < 0) return -1;
    close(fd);
    return !strncmp(resp, "HTTP/1.1 ", 9) ? atoi(resp + 9) : 0;
}

/* The answer to GET / (the page), up to its line that counts members. */
static void page(unsigned port, char *resp, size_t cap)
{
    int fd = exchange(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "connected", resp, cap);
    if (fd >= 0) close(fd);
}

/* Sets option `name` of mode m in config, as wsserve.c does from the command line. */
static int set(const serve_mode *m, void *config, const char *name, const char *arg)
{
    for (const cli_option *o = m->options; o && o->name; o++)
        if (!strcmp(o->name, name)) return m->option(config, o, arg);
    return -1;
}

struct one {
    struct serve sv;
    void *config;
};

static int start(struct one *s, wsk_loop *loop, const serve_mode *m)
{
    wsk_server_opts so;
    wsk_server_opts_init(&so);
    s->sv.mode = m;
    s->sv.config = s->config;
    s->sv.loop = loop;
    if (m->setup(&s->sv, &so, &s->sv.mode_h) < 0) return -1;
    wsk_handlers h = s->sv.mode_h;
    h.request = on_request;
    s->sv.srv = wsk_server_new(loop, &so, &h, &s->sv);
    return s->sv.srv && wsk_server_listen(s->sv.srv, "127.0.0.1", 0) == 0 ? 0 : -1;
}

static void stop(struct one *s)
{
    wsk_server_free(s->sv.srv);
    s->sv.mode->teardown(&s->sv);
    free(s->config);
}

static void *new_config(const serve_mode *m)
{
    void *c = calloc(1, m->config_size);
    if (c && m->config_init) m->config_init(c);
    return c;
}

int main(void)
{
    wsk_loop *loop = test_loop(&ev);

    /* Two private brokers, each with its own token. */
    struct one a = {.config = new_config(&serve_pubsub)}, b = {.config = new_config(&serve_pubsub)};
    CHECK(set(&serve_pubsub, a.config, "token", "alpha") == 0 &&
              set(&serve_pubsub, a.config, "private", NULL) == 0 &&
              set(&serve_pubsub, b.config, "token", "bravo") == 0 &&
              set(&serve_pubsub, b.config, "private", NULL) == 0,
          "broker options set through the mode's table");
    CHECK(start(&a, loop, &serve_pubsub) == 0 && start(&b, loop, &serve_pubsub) == 0,
          "two brokers in one process");
    unsigned pa = wsk_server_port(a.sv.srv), pb = wsk_server_port(b.sv.srv);
    CHECK(upgrade_status(pa, "/news?token=alpha") == 101, "broker A takes its own token");
    CHECK(upgrade_status(pb, "/news?token=bravo") == 101, "broker B takes its own token");
    CHECK(upgrade_status(pa, "/news?token=bravo") == 401, "broker A refuses B's token");
    CHECK(upgrade_status(pb, "/news?token=alpha") == 401, "broker B refuses A's token");

    /* Two chat rooms: the pages count each room's own members. */
    struct one c = {.config = new_config(&serve_chat)}, d = {.config = new_config(&serve_chat)};
    CHECK(set(&serve_chat, c.config, "clients", "3") == 0 &&
              set(&serve_chat, d.config, "clients", "7") == 0 &&
              set(&serve_chat, d.config, "clients", "0") < 0,
          "chat options set through the mode's table, 0 clients refused");
    CHECK(start(&c, loop, &serve_chat) == 0 && start(&d, loop, &serve_chat) == 0,
          "two chat rooms in one process");
    char pc[2048] = "", pd[2048] = "";
    page(wsk_server_port(c.sv.srv), pc, sizeof pc);
    page(wsk_server_port(d.sv.srv), pd, sizeof pd);
    CHECK(strstr(pc, "0 of 3 members") && strstr(pd, "0 of 7 members"),
          "each room's page counts its own members");

    stop(&a);
    stop(&b);
    stop(&c);
    stop(&d);
    wsk_loop_free(loop);
    return TEST_DONE();
}
