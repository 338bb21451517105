/* wsserve --chat and --pubsub (serve.h, wsserve(1)).
 *
 *   --chat     Bun's chat-room benchmark server (bench/websocket-server in Bun's repository):
 *              every connection joins one room named by its ?name=; "ready" once --clients are
 *              in; each message m is published to the room as "NAME: m", the sender included.
 *              --rooms N makes N rooms (library topics "room.0" ...): a connection joins the
 *              one its ?room=K names, or room (members so far mod N); "ready" still waits for
 *              --clients in all.
 *              With a bridge the room spans every node: lines cross it, but --clients counts
 *              this node's members and "ready" goes to them only (one per member, however many
 *              nodes).
 *   --pubsub   a topic broker: a WebSocket to /TOPIC subscribes to TOPIC and publishes what it
 *              sends there; a WebSocket to / speaks the JSON control protocol (jsonproto.h);
 *              POST /publish/TOPIC publishes its body.
 *
 * Both modes are thin layers over wsk_subscribe / wsk_publish.  The chat room is the benchmark
 * that matters: a message costs one copy into a stack buffer ("NAME: m") and one wsk_publish,
 * which frames it once and appends the frame to every member's queue.
 *
 * The broker keeps two library topics per topic: T for raw subscribers (a WebSocket to /T),
 * which get each message as it was sent, and "$.T" for sockets of the JSON protocol, which get
 * it wrapped in {"type":"message","topic":T,...}.  A valid topic name cannot start with '$', and
 * the library's patterns that start with a wildcard skip topics that do (MQTT's rule), so the
 * two never meet, patterns included ("$.>" is every JSON topic, ">" every raw one).  Each
 * wrapping is built once per publish, and only when someone wants it: a subscription to T or a
 * pattern that matches it.  Topics are NATS subjects ('.' between tokens, "*" and a last ">"
 * are wildcards in subscriptions) of printable UTF-8.
 *
 * The options of a mode (struct chat_config, struct pubsub_config) are parsed once; the state
 * of one server (struct chat, struct broker) hangs off its struct serve, so that servers never
 * share anything but their options. */
#include "jsonproto.h"
#include "parse_url.h"
#include "pubsub_info.h"
#include "pubsub_store.h"
#include "serve.h"

#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>
#include <errno.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define ROOM         "room"
#define NAME_MAX_LEN 256
#define TOPIC_MAX    255 /* bytes */
#define TOKEN_MAX    1024
#define USER_MAX     64 /* bytes of ?user= kept for presence */
#define MAX_ORIGINS  32
/* Seconds a bridged publish's answer (POST /publish's, a JSON publish's acknowledgement) waits
 * for the engine's count; then it goes with the local receivers and "reason" (JP_LATE): a
 * stalled engine never holds an answer longer. */
#define COUNT_WAIT 1.0
/* Seconds "topics" and "presence" wait for Redis' figures of the topics they list (kept_ask);
 * then they answer with the node's own.  At most KEPT_MAX topics are asked per answer. */
#define KEPT_WAIT 1.0
#define KEPT_MAX  1000

struct chat_config {
    unsigned long clients;   /* --clients N: "ready" once this many are connected; 32 */
    unsigned ready_delay_ms; /* pause before "ready", as Bun's chat server makes; 100 */
    unsigned long rooms;     /* --rooms N: rooms the members are spread over; 1 */
};

struct pubsub_config {
    int publish_to_self;              /* --publish-to-self */
    const char *token;                /* --token SECRET: publishing needs it */
    const char *token_file;           /* --token-file FILE: SECRET is its first line */
    int private_topics;               /* --private: subscribing needs it too */
    const char *origins[MAX_ORIGINS]; /* --origin LIST, comma-separated, repeatable */
    size_t norigins;
    unsigned long max_subscriptions; /* --max-subscriptions N: topics per connection; 100 */
    unsigned long history;           /* --history N[,TTL]: messages kept per topic; 0 */
    double history_ttl;              /* ... and for how long at most (seconds, 0: no limit) */
    size_t history_memory;           /* --history-memory SIZE: all topics together; 64 MiB */
};

struct member;

/* A chat room's part on one server (one per thread with --threads; the room spans them). */
struct chat {
    const struct chat_config *cfg;
    struct serve *sv;
    struct member *members; /* this thread's, for "ready": a publish would cross the bridge */
    /* Members on every thread of this node (all[0]'s counter, the others point at it):
     * "ready" goes out when it reaches --clients; it falls again when one leaves. */
    atomic_long *joined, joined_here;
    struct ev_loop *ev; /* where `ready` runs, once it has */
    ev_timer ready;
    /* --rooms with --threads (plain): members without a room in turn.  all[0]'s `turn` deals
     * them to the threads that own rooms (chat_owner), and each thread's `turn_here` to its own
     * rooms (chat_room). */
    atomic_ulong turn;
    unsigned long turn_here;
};

/* What the brokers of every thread share (--threads): all[0]'s; the others point at it. */
struct broker_home {
    /* Every use of the store, from any thread, holds it; a publish holds it from its record in
     * the history to its delivery, so that a recovery (replay, then subscribe, under it) never
     * falls between the two.  Recursive: a delivery under it may flush a socket whose drain
     * handler goes on with that socket's recovery (broker_drain). */
    pthread_mutex_t lock;
    ps_store *store;          /* retained messages and history */
    atomic_ulong connections; /* numbers given to connections so far (presence ids) */
    /* Decided for loop 0, which holds the bridge, before the loops run (remote_decide), read
     * by every thread: history in the engine (1, -1 not, 0 not known yet: one thread only) and
     * retained messages in the engine (1). */
    atomic_int remote, retains;
};

/* A broker: one per server. */
struct broker {
    const struct pubsub_config *cfg;
    struct serve *sv;
    char *token; /* a copy (the file's line, or --token), wiped when the broker goes */
    size_t token_len;
    struct broker_home *home, home_here;
    struct ev_loop *ev;    /* where `expiry` runs, once it has */
    ev_timer expiry;       /* --history N,TTL: lets old messages go without new traffic */
    int remote;            /* history in the engine: 1, or -1 node-local, 0 not asked yet */
    struct recovery *recs; /* recoveries from the engine's history under way (remote) */
    struct mine *mine;     /* MINE_SLOTS: who published the messages on their way (remote) */
    uint64_t mine_next;    /* another thread than 0: the number of its last publisher kept */
    /* Another thread than 0: the receivers here of the last message the engine refused
     * (msg_there), and its publisher's number here (mine), for that publish's count alone. */
    long unkept;
    uint64_t unkept_slot;
    pi_census *censuses; /* presences asked here, waiting for the other threads */
};

/* A message this node handed to the engine's history from a socket, not back yet.  On loop
 * 0, n is the message's number (wsk_server_publish_history) and ws its publisher there, or
 * `thread` and `slot` say where it is (another thread's publish); on another thread, n is the
 * thread's own number for the publisher, handed to loop 0 as the slot. */
struct mine {
    uint64_t n; /* 0 for a free slot */
    wsk_ws *ws; /* its publisher, left out when it comes back */
    unsigned thread;
    uint64_t slot;
};

/* A chat member: its room's topic, and the name its messages are prefixed with. */
struct member {
    wsk_ws *ws; /* set once in the room (on the chat's list) */
    struct member *prev, *next;
    size_t tlen;
    char topic[sizeof ROOM ".4294967295"];
    size_t len;
    char name[];
};

struct pending;
struct recovery;
struct rread;

/* A broker connection. */
struct client {
    uint8_t json;                /* connected to "/": speaks the JSON protocol */
    uint8_t pattern;             /* raw: its path is a pattern (it only listens) */
    uint8_t may_publish;         /* showed the token, or none is needed */
    unsigned nsubs;              /* JSON: topics subscribed */
    struct pending *pending;     /* JSON publishes awaiting the bridge's count for their ack */
    struct recovery *rec;        /* a subscribe with "since" sending the history */
    struct rread *reads;         /* retained messages asked of the engine (retained_ask) */
    unsigned long id;            /* for presence */
    char user[3 * USER_MAX + 1]; /* ?user= at upgrade, made UTF-8 (presence) */
    size_t tlen;
    char topic[]; /* raw: the topic of its path */
};

static struct chat *chat_of(wsk_server *srv)
{
    return serve_of(srv)->state;
}

static struct broker *broker_of(wsk_server *srv)
{
    return serve_of(srv)->state;
}

/* The store of srv's broker, locked until store_unlock (a lock shared by every thread). */
static ps_store *store_lock(wsk_server *srv)
{
    struct broker_home *h = broker_of(srv)->home;
    pthread_mutex_lock(&h->lock);
    return h->store;
}

static void store_unlock(wsk_server *srv)
{
    pthread_mutex_unlock(&broker_of(srv)->home->lock);
}

/* ----- options ------------------------------------------------------------------------------- */

enum {
    OPT_CLIENTS = 256,
    OPT_ROOMS,
    OPT_SELF,
    OPT_TOKEN,
    OPT_TOKEN_FILE,
    OPT_PRIVATE,
    OPT_ORIGIN,
    OPT_MAXSUBS,
    OPT_HISTORY,
    OPT_HISTORY_MEMORY,
};

static const cli_option chat_options[] = {
    {"clients", OPT_CLIENTS, "N", "members that make the room \"ready\" (default 32)"},
    {"rooms", OPT_ROOMS, "N", "N rooms, joined by ?room=K or in turn (default 1)"},
    {NULL, 0, NULL, NULL},
};

static const cli_option pubsub_options[] = {
    {"publish-to-self", OPT_SELF, NULL, "a publisher receives its own messages too"},
    {"token", OPT_TOKEN, "SECRET", "publishing needs \"Authorization: Bearer SECRET\" or ?token="},
    {"token-file", OPT_TOKEN_FILE, "FILE", "the same, SECRET being the first line of FILE"},
    {"private", OPT_PRIVATE, NULL, "subscribing needs the token too"},
    {"origin", OPT_ORIGIN, "LIST", "browser Origins allowed (comma-separated, repeatable)"},
    {"max-subscriptions", OPT_MAXSUBS, "N", "topics per connection (default 100)"},
    {"history", OPT_HISTORY, "N[,TTL]", "keep the last N messages per topic (for TTL seconds)"},
    {"history-memory", OPT_HISTORY_MEMORY, "SIZE", "history of all topics at most (default 64MB)"},
    {NULL, 0, NULL, NULL},
};

static void chat_config_init(void *config)
{
    struct chat_config *c = config;
    c->clients = 32;
    c->ready_delay_ms = 100;
    c->rooms = 1;
}

static void pubsub_config_init(void *config)
{
    struct pubsub_config *c = config;
    c->max_subscriptions = 100;
    c->history_memory = 64u << 20;
}

static int chat_option(void *config, const cli_option *opt, const char *arg)
{
    struct chat_config *c = config;
    if (opt->key == OPT_ROOMS) return cli_parse_ulong(arg, 1, 1000000ul, &c->rooms);
    return cli_parse_ulong(arg, 1, 1000000000ul, &c->clients);
}

static int pubsub_option(void *config, const cli_option *opt, const char *arg)
{
    struct pubsub_config *c = config;
    switch (opt->key) {
    case OPT_SELF: c->publish_to_self = 1; return 0;
    case OPT_TOKEN: c->token = arg; return *arg ? 0 : -1;
    case OPT_TOKEN_FILE: c->token_file = arg; return 0;
    case OPT_PRIVATE: c->private_topics = 1; return 0;
    case OPT_ORIGIN:
        if (c->norigins == MAX_ORIGINS) return -1;
        c->origins[c->norigins++] = arg;
        return 0;
    case OPT_MAXSUBS: return cli_parse_ulong(arg, 1, 1000000000ul, &c->max_subscriptions);
    case OPT_HISTORY: {
        char n[32];
        size_t l = strcspn(arg, ",");
        if (l >= sizeof n) return -1;
        memcpy(n, arg, l);
        n[l] = '\0';
        if (cli_parse_ulong(n, 1, 1000000ul, &c->history) < 0) return -1;
        return arg[l] ? cli_parse_duration(arg + l + 1, &c->history_ttl) : 0;
    }
    case OPT_HISTORY_MEMORY: return cli_parse_size(arg, &c->history_memory);
    default: return -1;
    }
}

/* ----- helpers ------------------------------------------------------------------------------- */

/* Copies p[0..n) to out as UTF-8, each invalid byte replaced by U+FFFD (as a JavaScript
 * server reads a binary message as text); out must hold 3 * n bytes.  Returns the length. */
static size_t utf8_lossy(const uint8_t *p, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = wsk_utf8_valid_prefix(p + i, n - i);
        memcpy(out + o, p + i, l);
        o += l;
        i += l;
        if (i == n) break;
        memcpy(out + o, "\xEF\xBF\xBD", 3);
        o += 3;
    }
    return o;
}

/* Why t[0..n) is not a valid topic (pattern: a subscription, where wildcards may appear), or
 * NULL when it is.  Names are printable UTF-8 without spaces (they travel in URLs and log
 * lines), do not start with '$' (the JSON subscribers' namespace) and have no empty token. */
static const char *topic_invalid(const char *t, size_t n, int pattern)
{
    if (!n || n > TOPIC_MAX) return "topic names are 1 to 255 bytes";
    if (t[0] == '$') return "topic names may not start with '$'";
    if (!wsk_utf8_valid(t, n)) return "topic names are UTF-8";
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)t[i];
        /* C0 controls, space and DEL; C1 controls are U+0080-U+009F: C2 80 to C2 9F. */
        if (c <= 0x20 || c == 0x7f || (c == 0xc2 && (uint8_t)t[i + 1] < 0xa0))
            return "topic names are printable characters, without spaces";
    }
    for (const char *p = t, *end = t + n;;) {
        const char *dot = memchr(p, '.', (size_t)(end - p)), *e = dot ? dot : end;
        size_t l = (size_t)(e - p);
        if (!l) return "a topic has no empty token (\"a..b\", a '.' at an end)";
        int wild = l == 1 && (*p == '*' || *p == '>');
        if (wild && !pattern) return "'*' and '>' tokens are wildcards: subscribe with them";
        if (wild && *p == '>' && dot) return "'>' is only a wildcard as the last token";
        if (!dot) return NULL;
        p = dot + 1;
    }
}

/* Compares in time that depends only on the length of what was presented, so the time a
 * refusal takes tells nothing about the secret (not even its length). */
static int token_equal(const struct broker *b, const char *given, size_t n)
{
    unsigned diff = n != b->token_len;
    for (size_t i = 0; i < n; i++) diff |= (uint8_t)given[i] ^ (uint8_t)b->token[i % b->token_len];
    return diff == 0;
}

/* 1: the request shows the right token; 0: it shows none; -1: it shows a wrong one. */
static int token_check(const struct broker *b, const wsk_request *req)
{
    size_t n;
    const char *auth = wsk_request_header(req, "authorization", &n);
    if (auth && n > 7 && !strncasecmp(auth, "Bearer ", 7)) {
        auth += 7;
        n -= 7;
        while (n && *auth == ' ') auth++, n--;
        return token_equal(b, auth, n) ? 1 : -1;
    }
    char buf[TOKEN_MAX + 1];
    long q = wsk_request_query_param(req, "token", buf, sizeof buf);
    if (q < 0) return 0;
    if ((size_t)q >= sizeof buf) return -1;
    return token_equal(b, buf, (size_t)q) ? 1 : -1;
}

/* Browsers always send Origin; other clients usually do not, and are not what the allow list
 * guards against (a page on another site using a visitor's browser).  No list: all allowed. */
static int origin_allowed(const struct broker *b, const wsk_request *req)
{
    size_t n;
    const char *o = wsk_request_header(req, "origin", &n);
    if (!o || !b->cfg->norigins) return 1;
    for (size_t i = 0; i < b->cfg->norigins; i++) {
        const char *p = b->cfg->origins[i];
        while (*p) {
            while (*p == ',' || *p == ' ') p++;
            size_t l = strcspn(p, ", ");
            if (l && l == n && !strncasecmp(p, o, n)) return 1;
            p += l;
        }
    }
    return 0;
}

static void log_refusal(const struct broker *b, const wsk_request *req, int status, const char *why)
{
    char addr[64];
    if (b->sv->verbose)
        serve_log(b->sv, "%s: refused with %d: %s",
                  wsk_request_remote_address(req, addr, sizeof addr), status, why);
}

/* ----- chat ---------------------------------------------------------------------------------- */

static void chat_ready(struct ev_loop *ev, ev_timer *w, int revents)
{
    (void)ev;
    (void)revents;
    struct chat *c = w->data;
    long n = 0;
    for (struct member *m = c->members, *next; m; m = next) {
        next = m->next; /* a send may close m's socket (its close handler frees m) */
        n += wsk_send(m->ws, "ready", 5, WSK_OP_TEXT, 0) != 0;
    }
    if (c->sv->verbose) serve_log(c->sv, "\"ready\" sent to %ld clients", n);
}

/* On a thread's own loop: its members get "ready" after the delay Bun's server makes. */
static void ready_soon(void *arg, wsk_loop *loop)
{
    struct chat *c = arg;
    c->ev = wsk_loop_ev(loop);
    ev_timer_stop(c->ev, &c->ready);
    ev_timer_set(&c->ready, c->cfg->ready_delay_ms / 1000.0, 0);
    ev_timer_start(c->ev, &c->ready);
}

/* The room is full: "ready" on every thread, each to its own members. */
static void room_ready(struct chat *c)
{
    struct serve *sv = c->sv;
    for (unsigned i = 0; i < sv->threads; i++)
        if (i == sv->thread)
            ready_soon(c, wsk_server_loop(sv->srv));
        else if (wsk_group_call(sv->group, i, ready_soon, sv->all[i].state) < 0)
            serve_log(sv, "out of memory: thread %u's members get no \"ready\"", i);
}

/* Members still awaited before "ready" (negative: more than --clients came). */
static long chat_remaining(const struct chat *c)
{
    return (long)c->cfg->clients - atomic_load(c->joined);
}

/* Room affinity (--rooms with --threads, plain connections): room K's members live on thread
 * K % threads, so that a line published to a room is delivered on the loop that read it and
 * never crosses loops.  The room's thread of a connection, from any thread (the library runs
 * this where the connection was accepted, once its upgrade request is read): ?room=K's, or for
 * a member without one the next thread in turn among those that own rooms, whose chat_room
 * then gives it the next of its own rooms in turn; c is all[0]'s chat. */
static int chat_owner(void *user, const wsk_request *req, unsigned thread)
{
    struct chat *c = user;
    unsigned long rooms = c->cfg->rooms, threads = c->sv->threads, room;
    char k[16];
    (void)thread;
    if (wsk_request_query_param(req, "room", k, sizeof k) > 0 &&
        cli_parse_ulong(k, 0, rooms - 1, &room) == 0)
        return (int)(room % threads);
    return (int)(atomic_fetch_add(&c->turn, 1) % (rooms < threads ? rooms : threads));
}

/* The room of a member whose ?room= is missing or out of range: the rooms in turn.  With
 * affinity each thread deals its own rooms (thread, thread + threads, ...) in turn: as
 * chat_owner deals the members to the threads in turn, n members still fill rooms 0..n-1
 * once each when --threads divides --rooms.  Otherwise (one thread, TLS, a thread that owns
 * no room) the members so far, mod --rooms. */
static unsigned long chat_room(struct chat *c)
{
    const struct serve *sv = c->sv;
    unsigned long rooms = c->cfg->rooms, threads = sv->threads, t = sv->thread;
    if (threads == 1 || sv->tls || t >= rooms) return (unsigned long)atomic_load(c->joined) % rooms;
    unsigned long owned = (rooms - t + threads - 1) / threads;
    return t + threads * (c->turn_here++ % owned);
}

static int chat_upgrade(wsk_server *srv, const wsk_request *req, wsk_response *res)
{
    struct chat *c = chat_of(srv);
    char raw[NAME_MAX_LEN + 1];
    long n = wsk_request_query_param(req, "name", raw, sizeof raw);
    size_t len = n > 0 ? ((size_t)n < sizeof raw ? (size_t)n : sizeof raw - 1) : 0;
    if (!len) len = (size_t)snprintf(raw, sizeof raw, "Client #%ld", atomic_load(c->joined));
    /* The name goes into text frames: keep it UTF-8 whatever the query held. */
    struct member *m = calloc(1, sizeof *m + 3 * len);
    if (!m) return 503;
    m->len = utf8_lossy((const uint8_t *)raw, len, m->name);
    if (c->cfg->rooms == 1) {
        memcpy(m->topic, ROOM, m->tlen = strlen(ROOM));
    } else {
        char k[16];
        unsigned long room;
        if (wsk_request_query_param(req, "room", k, sizeof k) <= 0 ||
            cli_parse_ulong(k, 0, c->cfg->rooms - 1, &room) < 0)
            room = chat_room(c);
        m->tlen = (size_t)snprintf(m->topic, sizeof m->topic, ROOM ".%lu", room);
    }
    wsk_response_set_data(res, m);
    return 0;
}

static void chat_open(wsk_ws *ws)
{
    struct chat *c = chat_of(wsk_ws_server(ws));
    struct member *m = wsk_ws_data(ws);
    if (wsk_subscribe(ws, m->topic, m->tlen) < 0) {
        wsk_close(ws, WSK_CLOSE_INTERNAL, "out of memory", 13);
        return;
    }
    m->ws = ws;
    m->next = c->members;
    if (c->members) c->members->prev = m;
    c->members = m;
    long remaining = (long)c->cfg->clients - (atomic_fetch_add(c->joined, 1) + 1);
    if (c->sv->verbose)
        serve_log(c->sv, "%.*s connected (%ld remain)", (int)m->len, m->name, remaining);
    if (remaining == 0) room_ready(c);
}

static void chat_message(wsk_ws *ws, const void *data, size_t len, wsk_opcode op)
{
    const struct member *m = wsk_ws_data(ws);
    char stack[16384], *buf = stack;
    size_t need = m->len + 2 + (op == WSK_OP_BINARY ? 3 * len : len);
    if (need > sizeof stack && !(buf = malloc(need))) return;
    memcpy(buf, m->name, m->len);
    buf[m->len] = ':';
    buf[m->len + 1] = ' ';
    size_t n = m->len + 2;
    if (op == WSK_OP_BINARY) {
        n += utf8_lossy(data, len, buf + n);
    } else {
        memcpy(buf + n, data, len);
        n += len;
    }
    wsk_publish(ws, m->topic, m->tlen, buf, n, WSK_OP_TEXT, 0);
    if (buf != stack) free(buf);
}

static void chat_close(wsk_ws *ws, unsigned code, const char *reason, size_t len)
{
    struct chat *c = chat_of(wsk_ws_server(ws));
    struct member *m = wsk_ws_data(ws);
    (void)code;
    (void)reason;
    (void)len;
    if (m && m->ws) {
        if (m->prev)
            m->prev->next = m->next;
        else
            c->members = m->next;
        if (m->next) m->next->prev = m->prev;
        atomic_fetch_sub(c->joined, 1);
    }
    if (c->sv->verbose)
        serve_log(c->sv, "%.*s left (%ld remain)", m ? (int)m->len : 0, m ? m->name : "",
                  chat_remaining(c));
    free(m);
    wsk_ws_set_data(ws, NULL);
}

static int chat_page(struct serve *sv, const wsk_request *req, wsk_response *res)
{
    if (serve_console(sv, req, res)) return 200;
    const struct chat *c = sv->state;
    char url[300], body[512];
    snprintf(body, sizeof body,
             "wsserve --chat: %ld of %lu members connected.\n"
             "Join with a WebSocket to %s/?name=NAME, for example:\n"
             "  wscat -c '%s/?name=alice'\n",
             atomic_load(c->joined), c->cfg->clients, serve_base_url(sv, req, 0, url, sizeof url),
             url);
    return serve_text(res, 200, body);
}

static int chat_setup(struct serve *sv, wsk_server_opts *so, wsk_handlers *h)
{
    struct chat *c = calloc(1, sizeof *c);
    if (!c) return -1;
    c->cfg = sv->config;
    c->sv = sv;
    atomic_init(&c->joined_here, 0);
    c->joined = sv->thread ? ((struct chat *)sv->all[0].state)->joined : &c->joined_here;
    ev_init(&c->ready, chat_ready);
    c->ready.data = c;
    sv->state = c;
    so->publish_to_self = 1; /* the sender sees its own line, as in Bun's server */
    atomic_init(&c->turn, 0);
    /* Each room on its thread (TLS connections stay where they were accepted: the library's
     * rule, and chat_room's for their rooms in turn). */
    if (sv->group && !sv->thread && c->cfg->rooms > 1)
        wsk_group_set_affinity(sv->group, chat_owner, c); /* before the group runs: 0 */
    h->upgrade = chat_upgrade;
    h->open = chat_open;
    h->message = chat_message;
    h->close = chat_close;
    return 0;
}

static void chat_teardown(struct serve *sv)
{
    struct chat *c = sv->state;
    if (c && c->ev) ev_timer_stop(c->ev, &c->ready);
    free(c);
    sv->state = NULL;
}

const serve_mode serve_chat = {
    .name = "chat",
    .help = "Bun's chat-room benchmark server: \"NAME: m\" to the room (--rooms: several)",
    .options = chat_options,
    .config_size = sizeof(struct chat_config),
    .config_init = chat_config_init,
    .option = chat_option,
    .setup = chat_setup,
    .request = chat_page,
    .teardown = chat_teardown,
};

/* ----- broker -------------------------------------------------------------------------------- */

/* A JSON publish on a bridged server: its acknowledgement waits for the engine's count of the
 * other nodes that listen to the topic (the engine carries T only; each node wraps it for its
 * JSON subscribers itself: broker_bridged), COUNT_WAIT at most (`late`).  A presence waits for
 * every thread's subscribers (pi_census_start).  On the client's list until the count or the
 * census comes, also when the acknowledgement went without the count; a client that closes
 * first leaves it orphaned (ws NULL), freed when the count or the census comes. */
struct pending {
    wsk_ws *ws;
    wsk_deferred *http; /* POST /publish, GET /topics/T: the HTTP answer, instead of ws's */
    wsk_server *srv;    /* presence: where the answer is made */
    struct pending *prev, *next;
    long local, nodes; /* local receivers of both forms; nodes, JP_UNBRIDGED or JP_UNCOUNTED */
    long got;          /* JSON: the local receivers, for an acknowledgement without the count */
    uint8_t busy;      /* JSON: broker_publish has not returned (the count may come inside) */
    uint8_t counted;   /* the count came */
    uint8_t acked;     /* JSON: the acknowledgement went without the count */
    uint8_t kept_from; /* presence: kept holds Redis' retained flag (1), and history (2) */
    wsk_topic_kept kept;
    struct ev_loop *ev;
    ev_timer late; /* JSON: COUNT_WAIT from the publish, while the count has not come */
    size_t tlen;
    char topic[TOPIC_MAX];
    char id[JP_ID_MAX + 1];
};

static void pending_link(struct client *cl, struct pending *p)
{
    p->prev = NULL;
    p->next = cl->pending;
    if (cl->pending) cl->pending->prev = p;
    cl->pending = p;
}

static void pending_unlink(struct client *cl, struct pending *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        cl->pending = p->next;
    if (p->next) p->next->prev = p->prev;
}

static void send_reply(wsk_ws *ws, char *text, size_t len);
static int remote_history(struct broker *b);
static void remote_live(wsk_server *srv, const char *topic, size_t tlen, const wsk_history_pos *at);
static int relay_publish(wsk_server *srv, wsk_ws *from, const char *topic, size_t tlen,
                         const void *data, size_t len, int binary, int retained, struct pending *p);
static long remote_deliver(wsk_server *srv, const char *topic, size_t tlen, const void *data,
                           size_t len, wsk_opcode op, int compress, const wsk_history_pos *at);
static int retained_read(wsk_server *srv, const char *topic, size_t tlen, struct rread *rr);
static int retained_holds(wsk_server *srv);
static void mine_keep(struct broker *b, struct mine m);

/* A deferred answer to POST /publish: JSON text s[0..n) (malloc'd, or NULL), with a newline. */
static void http_answer(wsk_deferred *d, char *s, size_t n)
{
    char *t = s ? realloc(s, n + 2) : NULL;
    if (t) t[n++] = '\n';
    wsk_deferred_respond(d, t ? 200 : 500, t, t ? n : 0);
    free(t ? t : s);
}

/* A JSON publish's count came (p->counted): its acknowledgement, unless it went already. */
static void pending_done(struct pending *p)
{
    if (p->ev) ev_timer_stop(p->ev, &p->late);
    if (p->ws) {
        size_t n;
        char *s =
            p->acked ? NULL : jp_ack_publish(p->id, p->topic, p->tlen, p->local, p->nodes, &n);
        pending_unlink(wsk_ws_data(p->ws), p);
        if (!p->acked) send_reply(p->ws, s, n);
    }
    free(p);
}

static void pending_count(void *arg, long local, long nodes)
{
    struct pending *p = arg;
    if (local > 0) p->local += local; /* the raw form's; the JSON form's is in already */
    p->nodes = nodes == WSK_NODES_NOT_BRIDGED ? JP_UNBRIDGED
               : nodes == WSK_NODES_UNKNOWN   ? JP_UNCOUNTED
                                              : nodes;
    p->counted = 1;
    if (p->http) {
        size_t n = 0;
        char *s = jp_http_published(p->topic, p->tlen, p->local, p->nodes, &n);
        http_answer(p->http, s, n);
        free(p);
    } else if (!p->busy) {
        pending_done(p);
    }
}

/* COUNT_WAIT passed without the engine's count: the acknowledgement goes without it. */
static void pending_late(struct ev_loop *ev, ev_timer *w, int revents)
{
    struct pending *p = w->data;
    (void)ev;
    (void)revents;
    p->acked = 1;
    if (p->ws) {
        size_t n;
        char *s = jp_ack_publish(p->id, p->topic, p->tlen, p->got, JP_LATE, &n);
        send_reply(p->ws, s, n);
    }
}

/* The WSK_PUB_* flags of a publish of ours: compressed, and retained or not (flags: a message's
 * own, of which only WSK_PUB_RETAINED counts). */
static int pub_flags(int flags)
{
    return WSK_PUB_COMPRESS | (flags & WSK_PUB_RETAINED);
}

/* One publish: counted when p is not NULL (pending_count runs for it).  A retained one is
 * kept in the engine too when it keeps them (Redis: wsk_server_publish_retained), else here
 * only (retain()). */
static long publish_one(wsk_server *srv, wsk_ws *from, const char *topic, size_t tlen,
                        const void *data, size_t len, wsk_opcode op, int retained,
                        struct pending *p)
{
    long r = retained ? wsk_server_publish_retained(srv, from, topic, tlen, data, len, op, 1, 0,
                                                    p ? pending_count : NULL, p)
                      : WSK_ERR_STATE;
    if (r != WSK_ERR_STATE && r != WSK_ERR_INVAL) return r;
    int z = pub_flags(retained ? WSK_PUB_RETAINED : 0); /* the subscribers' holds know it */
    if (p)
        return wsk_server_publish_counted(srv, from, topic, tlen, data, len, op, z, pending_count,
                                          p);
    return from ? wsk_publish(from, topic, tlen, data, len, op, z)
                : wsk_server_publish(srv, topic, tlen, data, len, op, z);
}

/* The library topic of JSON subscribers to topic[0..n) (a name or a pattern) in out, which
 * holds JSON_NS_LEN + TOPIC_MAX bytes; returns its length. */
static size_t json_topic(char *out, const char *topic, size_t n)
{
    memcpy(out, JSON_NS, JSON_NS_LEN);
    memcpy(out + JSON_NS_LEN, topic, n);
    return JSON_NS_LEN + n;
}

/* Seconds on the monotonic clock: the age of history. */
static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void history_expiry(struct ev_loop *ev, ev_timer *w, int revents)
{
    (void)ev;
    (void)revents;
    wsk_server *srv = ((struct broker *)w->data)->sv->srv;
    ps_store_expire(store_lock(srv), now()); /* each thread's timer: the store is shared */
    store_unlock(srv);
}

/* With a TTL, history expires on a timer too (started at the first publish, when the loop is
 * known), so that a topic nobody publishes to lets its old messages and their memory go: every
 * quarter of the TTL (from 50 ms to a minute), so a message outlives it by a quarter at most.
 * The timer does not keep the loop running. */
static void history_expiry_start(struct broker *b)
{
    double ttl = b->cfg->history_ttl, every = ttl / 4;
    if (!(ttl > 0) || !b->cfg->history || b->ev) return;
    every = every < 0.05 ? 0.05 : every > 60 ? 60 : every;
    b->ev = wsk_loop_ev(wsk_server_loop(b->sv->srv));
    ev_timer_init(&b->expiry, history_expiry, every, every);
    b->expiry.data = b;
    ev_timer_start(b->ev, &b->expiry);
    ev_unref(b->ev);
}

/* Keeps (or clears, when empty) the retained message of a topic about to be published. */
static int retain(wsk_server *srv, const char *topic, size_t tlen, const void *data, size_t len,
                  int binary)
{
    int r = ps_store_retain(store_lock(srv), topic, tlen, data, len, binary);
    store_unlock(srv);
    return r;
}

/* The JSON form of a message, to this node's JSON subscribers of topic (the library never
 * forwards it: JSON_NS is the server's bridge_derived); built only when one wants it.  flags:
 * the message's WSK_PUB_RETAINED. */
static long publish_json(wsk_server *srv, wsk_ws *from, const char *topic, size_t tlen,
                         const void *data, size_t len, int binary, const char *extra, int here,
                         int flags)
{
    int z = pub_flags(flags);
    char jt[JSON_NS_LEN + TOPIC_MAX];
    size_t jl = json_topic(jt, topic, tlen), elen;
    char *env = wsk_server_reaches(srv, jt, jl)
                    ? jp_delivery_with(topic, tlen, data, len, binary, extra, &elen)
                    : NULL;
    if (!env) return 0;
    long r = here   ? (from ? wsk_publish_here(from, jt, jl, env, elen, WSK_OP_TEXT, z)
                            : wsk_server_publish_here(srv, jt, jl, env, elen, WSK_OP_TEXT, z))
             : from ? wsk_publish(from, jt, jl, env, elen, WSK_OP_TEXT, z)
                    : wsk_server_publish_local(srv, jt, jl, env, elen, WSK_OP_TEXT, z);
    free(env);
    return r > 0 ? r : 0;
}

/* Publishes to raw subscribers of topic, here and on the other nodes, and wrapped to JSON ones
 * here; from NULL: the server.  Returns the receivers here.  With p, pending_count runs for it
 * once, with p->local set first. */
static long broker_publish_node(wsk_server *srv, wsk_ws *from, const char *topic, size_t tlen,
                                const void *data, size_t len, int binary, int retained,
                                struct pending *p);

static long broker_publish(wsk_server *srv, wsk_ws *from, const char *topic, size_t tlen,
                           const void *data, size_t len, int binary, int retained,
                           struct pending *p)
{
    wsk_opcode op = binary ? WSK_OP_BINARY : WSK_OP_TEXT;
    /* Delivered here too when the engine hands it back with its offset: broker_bridged.  With
     * the engine down, it goes as below, without an offset. */
    if (remote_history(broker_of(srv))) {
        if (p) p->local = 0;
        if (serve_of(srv)->thread) /* loop 0 hands it to the engine */
            return relay_publish(srv, from, topic, tlen, data, len, binary, retained, p) < 0
                       ? broker_publish_node(srv, from, topic, tlen, data, len, binary, retained, p)
                       : 0;
        long n = retained ? wsk_server_publish_retained(srv, from, topic, tlen, data, len, op, 1, 1,
                                                        p ? pending_count : NULL, p)
                          : wsk_server_publish_history(srv, topic, tlen, data, len, op, 1,
                                                       p ? pending_count : NULL, p);
        if (n > 0) {
            if (from) mine_keep(broker_of(srv), (struct mine){(uint64_t)n, from, 0, 0});
            return 0;
        }
    }
    return broker_publish_node(srv, from, topic, tlen, data, len, binary, retained, p);
}

/* broker_publish without the engine's history: delivered at once, kept in this node's history
 * when it keeps one. */
static long broker_publish_node(wsk_server *srv, wsk_ws *from, const char *topic, size_t tlen,
                                const void *data, size_t len, int binary, int retained,
                                struct pending *p)
{
    wsk_opcode op = binary ? WSK_OP_BINARY : WSK_OP_TEXT;
    ps_pos pos;
    char extra[64] = "";
    /* A message history could not keep is still delivered: live subscribers lose nothing. */
    ps_store_record(store_lock(srv), topic, tlen, data, len, binary, now(), &pos);
    history_expiry_start(broker_of(srv));
    if (pos.offset)
        snprintf(extra, sizeof extra, ",\"offset\":%llu,\"epoch\":\"%s\"",
                 (unsigned long long)pos.offset, pos.epoch);
    /* The JSON form first: the raw publish's count may come back at once (no bridge, NATS) and
     * the acknowledgement must hold both forms' receivers. */
    long total = publish_json(srv, from, topic, tlen, data, len, binary, extra, 0,
                              retained ? WSK_PUB_RETAINED : 0);
    if (p) p->local = total;
    long r = publish_one(srv, from, topic, tlen, data, len, op, retained, p);
    /* Held until the message is out: threads deliver in the order of their offsets. */
    store_unlock(srv);
    return total + (r > 0 ? r : 0);
}

/* A message from another node (or, with history in the engine, from any node, this one too,
 * then without its publisher, as when delivered at once): to the raw subscribers here and,
 * wrapped, to the JSON ones.  Without history in the engine it carries no offset: the history
 * of a node holds what was published through it.  Returns the sockets it reached here. */
static long broker_bridged(wsk_server *srv, const char *topic, size_t tlen, const void *data,
                           size_t len, wsk_opcode op, int compress, const wsk_history_pos *at)
{
    if (at && remote_history(broker_of(srv)))
        return remote_deliver(srv, topic, tlen, data, len, op, compress, at);
    long r = wsk_server_publish_local(srv, topic, tlen, data, len, op, compress);
    return (r > 0 ? r : 0) +
           publish_json(srv, NULL, topic, tlen, data, len, op == WSK_OP_BINARY, "", 0, compress);
}

/* A message of the engine's history on this thread's subscribers (from: its publisher here, left
 * out, or NULL), or on every thread's from here when `spread`.  Offset 0: Redis refused to keep
 * it (out of memory): delivered without one, as when Redis is down. */
static long remote_here(wsk_server *srv, wsk_ws *from, const char *topic, size_t tlen,
                        const void *data, size_t len, wsk_opcode op, int compress,
                        const wsk_history_pos *at, int spread)
{
    char extra[64] = "";
    if (at->offset) {
        snprintf(extra, sizeof extra, ",\"offset\":%llu,\"epoch\":\"%s\"",
                 (unsigned long long)at->offset, at->epoch);
        remote_live(srv, topic, tlen, at); /* before: a recovery that goes live gets this one */
    }
    long r = spread ? (from ? wsk_publish_local(from, topic, tlen, data, len, op, compress)
                            : wsk_server_publish_local(srv, topic, tlen, data, len, op, compress))
             : from ? wsk_publish_here(from, topic, tlen, data, len, op, compress)
                    : wsk_server_publish_here(srv, topic, tlen, data, len, op, compress);
    return (r > 0 ? r : 0) + publish_json(srv, from, topic, tlen, data, len, op == WSK_OP_BINARY,
                                          extra, !spread, compress);
}

/* The topic of a request's path after skip bytes ("/", "/publish/"), percent-decoded into out
 * (TOPIC_MAX + 2 bytes; a longer one is cut to TOPIC_MAX + 1 bytes, which no check accepts). */
static void path_rest(const wsk_request *req, size_t skip, char *out, size_t *len)
{
    size_t plen;
    const char *path = wsk_request_path(req, &plen);
    *len = plen > skip ? wsk_url_decode(path + skip, plen - skip, 0, out, TOPIC_MAX + 2) : 0;
    if (*len > TOPIC_MAX + 1) *len = TOPIC_MAX + 1;
}

/* 1 for "/" (the JSON protocol); 0 with the topic of the path in out[0..*len). */
static int path_topic(const wsk_request *req, char *out, size_t *len)
{
    path_rest(req, 1, out, len);
    return *len == 0;
}

static int broker_upgrade(wsk_server *srv, const wsk_request *req, wsk_response *res)
{
    const struct broker *b = broker_of(srv);
    if (!origin_allowed(b, req)) {
        log_refusal(b, req, 403, "origin not allowed");
        wsk_response_append_body(res, "origin not allowed\n", 19);
        return 403;
    }
    int tok = b->token ? token_check(b, req) : 1;
    if (tok < 0 || (!tok && b->cfg->private_topics)) {
        log_refusal(b, req, 401, tok < 0 ? "wrong token" : "no token");
        wsk_response_add_header(res, "WWW-Authenticate", "Bearer");
        wsk_response_append_body(res, "a valid token is required\n", 26);
        return 401;
    }
    char topic[TOPIC_MAX + 2];
    size_t tlen;
    int json = path_topic(req, topic, &tlen);
    const char *why = json ? NULL : topic_invalid(topic, tlen, 1);
    if (why) {
        log_refusal(b, req, 400, "invalid topic");
        wsk_response_append_body(res, why, strlen(why));
        wsk_response_append_body(res, "\n", 1);
        return 400;
    }
    struct client *cl = calloc(1, sizeof *cl + tlen + 1);
    if (!cl) return 503;
    cl->json = (uint8_t)json;
    cl->pattern = !json && wsk_topic_is_pattern(topic, tlen);
    cl->may_publish = tok > 0;
    cl->id = atomic_fetch_add(&broker_of(srv)->home->connections, 1) + 1;
    char user[USER_MAX + 1];
    long ul = wsk_request_query_param(req, "user", user, sizeof user);
    if (ul > 0)
        cl->user[utf8_lossy((const uint8_t *)user, (size_t)ul < USER_MAX ? (size_t)ul : USER_MAX,
                            cl->user)] = '\0';
    cl->tlen = tlen;
    if (tlen) memcpy(cl->topic, topic, tlen);
    wsk_response_set_data(res, cl);
    return 0;
}

/* A raw subscriber gets a retained message as it was published. */
static void send_retained_raw(void *arg, const char *topic, size_t tlen, const ps_msg *m)
{
    (void)topic;
    (void)tlen;
    wsk_send(arg, m->data, m->len, m->binary ? WSK_OP_BINARY : WSK_OP_TEXT, 1);
}

/* A JSON one gets it wrapped, with "retained":true. */
static void send_retained_json(void *arg, const char *topic, size_t tlen, const ps_msg *m)
{
    size_t n;
    char *s = jp_delivery_with(topic, tlen, m->data, m->len, m->binary, ",\"retained\":true", &n);
    if (s) wsk_send(arg, s, n, WSK_OP_TEXT, 1);
    free(s);
}

/* The retained messages of what ws just subscribed to, topic[0..tlen) (a name or a pattern), as
 * this node keeps them: before anything live, since nothing else runs between the subscription
 * and these sends.  With --threads, the subscription and this read hold the store's lock, as a
 * retained publish does from its keeping here to its hand-over to the other loops (JSON
 * publish, POST /publish): one kept before is read here and, still on its way to this loop,
 * kept from the new subscription (numbered before it: wsk_group_seq), so it does not come
 * twice; one kept after comes live, after this one. */
static void retained_here(wsk_ws *ws, int json, const char *topic, size_t tlen)
{
    ps_store_retained(store_lock(wsk_ws_server(ws)), topic, tlen,
                      json ? send_retained_json : send_retained_raw, ws);
    store_unlock(wsk_ws_server(ws));
}

/* A JSON subscribe's acknowledgement, shared by the reads of its topics: with --threads it goes
 * when the last of their holds ends (retained_release), so that no topic of the request is
 * still held once the client has it: a message published after it reaches the client on every
 * topic of the request. */
struct sub_ack {
    unsigned waits; /* holds under way, and the subscribe handler's own until it returns */
    size_t len;
    char *text; /* malloc'd */
};

/* One wait of a ends: at the last, the acknowledgement goes to ws (NULL: gone) and a is freed. */
static void sub_ack_end(wsk_ws *ws, struct sub_ack *a)
{
    if (!a || --a->waits) return;
    if (ws)
        send_reply(ws, a->text, a->len);
    else
        free(a->text);
    free(a);
}

/* A retained message asked of the engine for a subscription of ws (wsk_server_retained_read):
 * on the client's list until it comes; ws NULL once the client closed (then freed when it
 * comes, or when the call that carries it is dropped at shutdown: rread_free). */
struct rread {
    wsk_ws *ws;
    struct rread *prev, *next;
    int json;
    /* With --threads: loop 0 has not had the read yet (retained_release): the socket leaves
     * out the topic's messages loop 0 delivers meanwhile, and the acknowledgement waits. */
    int held;
    /* The socket holds the topic (rread_hold) until the answer is sent; from the time loop 0
     * has the read, it queues the topic's messages: the retained message comes first, then
     * they do, in order, then live ones. */
    int queued;
    /* A JSON subscribe's acknowledgement while this read's hold holds it back (one wait of it):
     * sent when the request's last hold ends, so that what the client publishes once it has it
     * reaches it. */
    struct sub_ack *ack;
    size_t tlen;
    char topic[];
};

/* rr's wait on its acknowledgement ends (the acknowledgement goes with the last). */
static void rread_ack(struct rread *rr)
{
    sub_ack_end(rr->ws, rr->ack);
    rr->ack = NULL;
}

/* rr, whose answer will not come (its client gone: the loops ended first). */
static void rread_free(struct rread *rr)
{
    rread_ack(rr);
    free(rr);
}

static void rread_unlink(struct client *cl, struct rread *rr)
{
    if (rr->prev)
        rr->prev->next = rr->next;
    else
        cl->reads = rr->next;
    if (rr->next) rr->next->prev = rr->prev;
}

/* The engine's answer: its retained message (with its offset, with history in the engine), or
 * none, or, when it could not answer, this node's.  Then what the socket queued meanwhile: the
 * retained publishes among it that the answer supersedes are dropped, or, when the answer is
 * none, the first of them goes first (rread_unhold). */
static void rread_unhold(struct rread *rr, int how);
static void retained_came(void *arg, const wsk_retained *r)
{
    struct rread *rr = arg;
    wsk_ws *ws = rr->ws;
    rread_ack(rr);
    if (ws) rread_unlink(wsk_ws_data(ws), rr);
    if (ws && !r->ok) {
        retained_here(ws, rr->json, rr->topic, rr->tlen);
    } else if (ws && r->found && !rr->json) {
        wsk_send(ws, r->data, r->len, r->op, 1);
    } else if (ws && r->found) {
        char extra[96] = ",\"retained\":true";
        if (r->at.offset)
            snprintf(extra, sizeof extra, ",\"retained\":true,\"offset\":%llu,\"epoch\":\"%s\"",
                     (unsigned long long)r->at.offset, r->at.epoch);
        size_t n;
        char *s = jp_delivery_with(rr->topic, rr->tlen, r->data, r->len, r->op == WSK_OP_BINARY,
                                   extra, &n);
        send_reply(ws, s, n);
    }
    rread_unhold(rr, !r->ok ? 0 : r->found ? WSK_HOLD_SENT : WSK_HOLD_FIRST);
    free(rr);
}

/* ws subscribed to topic[0..tlen): its retained message comes first, after the acknowledgement
 * ack (a JSON subscribe's, or NULL), which this read holds back while its hold lasts.  With a
 * Redis bridge it is the one Redis keeps, asked for now (a pattern's: those this node keeps);
 * without, or Redis down, this node's, at once. */
static void retained_ask(wsk_ws *ws, struct client *cl, int json, const char *topic, size_t tlen,
                         struct sub_ack *ack)
{
    struct rread *rr = wsk_topic_is_pattern(topic, tlen) ? NULL : malloc(sizeof *rr + tlen);
    if (rr) {
        if (ack) ack->waits++;
        *rr = (struct rread){.ws = ws, .next = cl->reads, .json = json, .ack = ack, .tlen = tlen};
        memcpy(rr->topic, topic, tlen);
        if (retained_read(wsk_ws_server(ws), topic, tlen, rr) == 0) {
            if (cl->reads) cl->reads->prev = rr;
            cl->reads = rr;
            return;
        }
        rread_free(rr);
    }
    retained_here(ws, json, topic, tlen);
}

static void broker_open(wsk_ws *ws)
{
    struct client *cl = wsk_ws_data(ws);
    if (cl->json) return;
    wsk_server *srv = wsk_ws_server(ws);
    store_lock(srv); /* the subscription and its read in one step (retained_here) */
    if (wsk_subscribe(ws, cl->topic, cl->tlen) < 0)
        wsk_close(ws, WSK_CLOSE_INTERNAL, "cannot subscribe", 16);
    else
        retained_ask(ws, cl, 0, cl->topic, cl->tlen, NULL);
    store_unlock(srv);
}

/* Sends text[0..len) (malloc'd, or NULL: nothing) and frees it. */
static void send_reply(wsk_ws *ws, char *text, size_t len)
{
    if (text) wsk_send(ws, text, len, WSK_OP_TEXT, 1);
    free(text);
}

static void send_error(wsk_ws *ws, const char *id, int err, const char *msg)
{
    size_t len;
    char *s = jp_error(id, err, msg, &len);
    send_reply(ws, s, len);
}

struct list_ctx {
    struct jp_topic *t;
    size_t n;
};

static void list_one(void *arg, const char *topic, size_t len)
{
    struct list_ctx *lc = arg;
    if (len >= JSON_NS_LEN && !memcmp(topic, JSON_NS, JSON_NS_LEN)) {
        lc->t[lc->n].name = topic + JSON_NS_LEN; /* valid until the socket unsubscribes */
        lc->t[lc->n].len = len - JSON_NS_LEN;
        lc->n++;
    }
}

/* A subscribe with "since" under way: the socket gets the history after `after`, a batch at a
 * time, and is subscribed when it has all of it (client.rec). */
struct recovery {
    uint64_t after;         /* the last offset sent */
    int stop;               /* a send met backpressure (the drain handler resumes) or was dropped */
    int told;               /* the client knows the history does not reach back to after + 1 */
    int stepping;           /* recovery_step is writing a batch: a drain meanwhile only says so */
    int drained;            /* ... in drained */
    char id[JP_ID_MAX + 1]; /* of the subscribe */
    char epoch[17];
    /* From the engine's history (remote_recover) only: */
    int remote;
    wsk_ws *ws;                   /* NULL once it closed: freed when its read comes back */
    struct recovery *prev, *next; /* on the broker's recs */
    int acked, reading;           /* the acknowledgement went; a read is under way */
    uint64_t live;                /* the last offset this node delivered live meanwhile */
    uint64_t since;               /* the offset the client gave */
    char since_epoch[17];
    size_t tlen;
    char topic[TOPIC_MAX];
};

#define REPLAY_BATCH 64 /* messages written in one go */

/* While ws recovers topic[0..n), the topic's live messages are held back from it whichever of
 * its subscriptions they would reach it through (a pattern that matches the topic): they are
 * in the history it is sent, and come once, in order (recovery_unhold when it subscribes).
 * The hold is the topic's alone: the socket's other topics keep theirs (retained_read). */
static int recovery_hold(wsk_ws *ws, const char *topic, size_t n)
{
    char jt[JSON_NS_LEN + TOPIC_MAX];
    return wsk_ws_hold(ws, jt, json_topic(jt, topic, n));
}

static void recovery_unhold(wsk_ws *ws, const char *topic, size_t n)
{
    char jt[JSON_NS_LEN + TOPIC_MAX];
    wsk_ws_hold_end_topic(ws, jt, json_topic(jt, topic, n));
}

static int replay_one(void *arg, const void *data, size_t len, int binary, uint64_t offset)
{
    wsk_ws *ws = arg;
    struct recovery *rc = ((struct client *)wsk_ws_data(ws))->rec;
    char extra[64];
    size_t n;
    snprintf(extra, sizeof extra, ",\"offset\":%llu,\"epoch\":\"%s\"", (unsigned long long)offset,
             rc->epoch);
    char *s = jp_delivery_with(rc->topic, rc->tlen, data, len, binary, extra, &n);
    long r = s ? wsk_send(ws, s, n, WSK_OP_TEXT, 1) : 0;
    free(s);
    if (r != 0) { /* queued, maybe behind unread data (-1) */
        rc->after = offset;
        rc->told = 0;
    }
    rc->stop = r <= 0;
    return rc->stop;
}

/* While a recovery waited for the client to read, the history may have let go messages it
 * had still to send (a publisher faster than this client overran --history N, the TTL, the
 * memory cap): the client is told as at the start, with a "recovered":false acknowledgement
 * and where the topic stands, then gets what is left; never a silent gap. */
static void replay_lost(wsk_ws *ws, struct client *cl, struct recovery *rc, ps_store *st)
{
    ps_pos since = {.offset = rc->after}, at;
    memcpy(since.epoch, rc->epoch, sizeof since.epoch);
    uint64_t from;
    if (ps_store_since(st, rc->topic, rc->tlen, &since, now(), &from, &at) || rc->told) return;
    rc->after = from;
    rc->told = 1;
    memcpy(rc->epoch, at.epoch, sizeof rc->epoch);
    struct jp_topic t = {rc->topic, rc->tlen};
    size_t len;
    char *s = jp_ack_recovery(rc->id, &t, cl->nsubs + 1, 0, at.epoch, (unsigned long long)at.offset,
                              &len);
    send_reply(ws, s, len);
}

static void replay_batch(wsk_ws *ws, void *arg)
{
    struct client *cl = wsk_ws_data(ws);
    /* The caller holds the store's lock. */
    ps_store *st = broker_of(wsk_ws_server(ws))->home->store;
    replay_lost(ws, cl, cl->rec, st);
    *(int *)arg = ps_store_replay(st, cl->rec->topic, cl->rec->tlen, cl->rec->after, REPLAY_BATCH,
                                  replay_one, ws);
}

/* Sends the history a batch at a time, each written at once (wsk_cork), until a send meets
 * backpressure (the drain handler calls this again) or the history is all sent: then the
 * socket subscribes, in the same turn, so the next publish reaches it live and nothing falls
 * in between.  Messages published meanwhile join the history and are replayed too.
 * With --threads, the last batch and the subscription hold the store's lock, as a publish does
 * from its record to its hand-over to the other loops: a message recorded before is replayed
 * and, if it is still on its way to this loop, the library keeps it from the new subscription
 * (it was numbered before it: wsk_group_seq), so it is not delivered twice; a message recorded
 * after finds the subscription counted and comes live, so none is missed. */
static void recovery_step(wsk_ws *ws)
{
    wsk_server *srv = wsk_ws_server(ws);
    for (;;) {
        int done = 0;
        /* A batch and, after the last one, the subscription under the store's lock: no
         * publish of another thread records a message in between (broker_publish). */
        store_lock(srv);
        struct recovery *rc = ((struct client *)wsk_ws_data(ws))->rec;
        rc->stepping = 1;
        rc->drained = 0;
        wsk_cork(ws, replay_batch, &done);
        if (wsk_ws_ready_state(ws) != WSK_OPEN) { /* closed: the close handler freed it */
            store_unlock(srv);
            return;
        }
        struct client *cl = wsk_ws_data(ws);
        rc->stepping = 0;
        if (done) {
            char jt[JSON_NS_LEN + TOPIC_MAX];
            int r = wsk_subscribe(ws, jt, json_topic(jt, rc->topic, rc->tlen));
            recovery_unhold(ws, rc->topic, rc->tlen);
            store_unlock(srv);
            if (r < 0) wsk_close(ws, WSK_CLOSE_INTERNAL, "cannot subscribe", 16);
            if (r > 0) cl->nsubs++;
            free(rc);
            cl->rec = NULL;
            return;
        }
        store_unlock(srv);
        if (rc->stop && !rc->drained) return;
    }
}

/* ----- history in the engine ----------------------------------------------------------------
 *
 * With a Redis --bridge, or a NATS one whose server has JetStream, and --history on one thread,
 * the history lives in the engine (wsk_server_bridge_history; bridge_redis.c and
 * bridge_nats_js.c have the layouts): every node numbers a topic's messages alike and any node
 * can recover any client.
 *  - A publish goes to the engine first (broker_publish), which gives it the topic's next
 *    offset, keeps it and publishes it; every node, this one included, delivers it when it
 *    comes back (broker_bridged), so every node delivers the same sequence, each message with
 *    its offset and epoch.  The engine down: delivered here at once, without an offset (the
 *    bridge counts the failure).
 *  - Its publisher is left out, as when delivered at once (unless --publish-to-self): the node
 *    remembers which socket published each message it sent (mine_keep, by the number its
 *    envelope carries) and the message comes back with that number (wsk_history_pos.mine).
 *  - A subscribe with "since" (remote_recover): the node listens to the topic's channel first
 *    (wsk_server_bridge_listen), then reads the history after the client's offset, a batch at a
 *    time, and sends it; the acknowledgement goes with the first batch.  The socket subscribes
 *    when a live message carries the offset right after the last one sent (remote_live): that
 *    message reaches it live, and so do all later ones: no gap, no duplicate, order kept.  A
 *    live message further ahead means some passed while reading: it reads again from its last
 *    offset.  The engine cannot be asked: "recovered": false, and the socket subscribes at once.
 */

#define REMOTE_BATCH 256 /* messages read from the engine at once */
/* Messages on their way through the engine whose publisher is remembered: one more socket's
 * publish overwrites the slot of the one MINE_SLOTS before it, whose publisher then gets it
 * back (only when that many are in flight, far beyond what one round trip holds). */
#define MINE_SLOTS 1024

static void mine_keep(struct broker *b, struct mine m)
{
    if (b->mine) b->mine[m.n % MINE_SLOTS] = m;
}

/* Message n of this node (or publisher n of another thread), forgotten: its publisher, ws
 * NULL and thread 0 when none is known (gone). */
static struct mine mine_take(struct broker *b, uint64_t n)
{
    struct mine *m = b->mine ? &b->mine[n % MINE_SLOTS] : NULL, got = {0};
    if (!m || m->n != n) return got;
    got = *m;
    *m = (struct mine){0};
    return got;
}

/* ws closes: the messages it published come back to everyone. */
static void mine_forget(struct broker *b, const wsk_ws *ws)
{
    for (size_t i = 0; b->mine && i < MINE_SLOTS; i++)
        if (b->mine[i].ws == ws) b->mine[i] = (struct mine){0};
}

/* Whether the engine keeps the history: 0 (it does: turned on), WSK_ERR_IO while it cannot say
 * yet (NATS not connected), another error when it keeps none.  Loop 0 only. */
static int remote_ask(struct broker *b)
{
    return b->cfg->history
               ? wsk_server_bridge_history(b->sv->srv, b->cfg->history, b->cfg->history_ttl)
               : WSK_ERR_STATE;
}

/* The one place that decides whether the history is the engine's (remote_ask's answer). */
static int remote_history(struct broker *b)
{
    struct broker_home *h = b->home;
    if (!b->remote && !b->sv->thread && !atomic_load(&h->remote)) {
        /* The bridge is made after the servers (wsserve.c).  On one thread: asked at the first
         * use, and again at the next while the engine cannot say yet.  With --threads only loop
         * 0 holds the bridge, and it decides before the loops run (remote_decide): the threads
         * must agree from their first message, so an engine that still cannot say then (NATS
         * unreachable at start) keeps the history node-local. */
        int r = remote_ask(b);
        if (r == 0) {
            ps_store_history(store_lock(b->sv->srv), 0, 0, 0); /* the node keeps none of its own */
            store_unlock(b->sv->srv);
        }
        atomic_store(&h->remote, r == 0 ? 1 : r == WSK_ERR_IO && b->sv->threads == 1 ? 0 : -1);
    }
    if (!b->remote && (b->remote = atomic_load(&h->remote)) > 0)
        b->mine = calloc(MINE_SLOTS, sizeof *b->mine); /* none: publishers get theirs */
    return b->remote > 0;
}

/* How long a node with --threads waits at start for NATS to say whether it has JetStream. */
#define REMOTE_WAIT 10.0

static void remote_waited(struct ev_loop *ev, ev_timer *w, int revents)
{
    (void)ev;
    (void)w;
    (void)revents; /* a non-repeating timer: no longer active, which ends the wait */
}

/* Runs loop 0 (before the loops run) until the engine can say whether it keeps the history:
 * NATS connected and asked about JetStream, or its first attempt failed (unreachable: the
 * bridge logged why), or REMOTE_WAIT passed, or a signal came (sv->stopping). */
static void remote_wait(struct broker *b)
{
    struct ev_loop *ev = wsk_loop_ev(b->sv->loop);
    ev_tstamp start = ev_time();
    ev_timer limit;
    ev_timer_init(&limit, remote_waited, REMOTE_WAIT, 0);
    ev_timer_start(ev, &limit);
    wsk_bridge_stats st = {0};
    while (ev_is_active(&limit) && !b->sv->stopping && remote_ask(b) == WSK_ERR_IO &&
           !(wsk_server_bridge_stats(b->sv->srv, &st) == 0 && st.outages))
        ev_run(ev, EVRUN_ONCE);
    ev_timer_stop(ev, &limit);
    if (b->sv->stopping) return; /* a signal: wsserve stops without listening */
    if (remote_ask(b) == WSK_ERR_IO)
        serve_log(b->sv,
                  "history stays node-local: the bridge could not say at start whether its "
                  "engine keeps history (%s), and the threads must agree from the start",
                  st.outages ? "unreachable" : "no answer in time");
    else if (b->sv->verbose)
        serve_log(b->sv, "the bridge said whether its engine keeps history after %.3f s",
                  ev_time() - start);
}

/* 1 when the bridge's engine keeps retained messages: wsk_server_retained_read answers
 * WSK_ERR_STATE before its other checks when none does, so an empty topic asks only that. */
static int engine_retains(wsk_server *srv)
{
    return wsk_server_retained_read(srv, "", 0, NULL, NULL) != WSK_ERR_STATE;
}

/* On loop 0's thread before the loops run, once the bridge is made (wsserve.c): whether the
 * engine keeps history and retained messages, for every thread. */
static void remote_decide(struct serve *sv)
{
    struct broker *b = sv->state;
    if (sv->threads == 1) return; /* decided at the first use */
    if (sv->bridged && b->cfg->history) remote_wait(b);
    atomic_store(&b->home->retains, engine_retains(b->sv->srv));
    remote_history(b);
}

static void remote_read(struct recovery *rc);
static void remote_batch(void *arg, const wsk_history_batch *hb);

/* ----- threads: the engine's calls made on loop 0 -------------------------------------------
 *
 * With --threads the bridge is loop 0's, and only there may the calls of the engine's history
 * and retained messages be made.  Another thread hands them to loop 0 and gets the answers
 * back, each way with wsk_group_call_ordered, so that they keep their order with the messages
 * loop 0 hands to that thread:
 *  - a publish of thread k goes to loop 0 with its publisher's number on k (struct mine); loop
 *    0 keeps which thread and number its message stands for; the engine's count goes back to
 *    k; a publish the engine cannot take goes back to k, which delivers it without an offset;
 *  - a message of the engine's history is handed by loop 0 to every other thread (one copy
 *    they share) and delivered on each to its own subscribers (remote_here), its publisher
 *    left out on its thread, after the recoveries there saw it (remote_live), as on one thread;
 *  - a recovery's listen and reads, a retained read and a read of what the engine keeps go to
 *    loop 0, and their answers come back after the messages loop 0 delivered before them.
 *    Loop 0's own go the same way, to itself: a topic a loop subscribes to reaches the bridge
 *    at the end of its turn, and a read must come after it (answers to loop 0 go at once);
 *  - while a retained read is on its way to loop 0, the socket holds its topic (wsk_ws_hold,
 *    one hold per topic: a client that subscribes to several at once holds each):
 *    what loop 0 delivered before it has the read came before the retained message it answers,
 *    and is left out (a raw subscriber, owed it, queues it: the answer drops the retained
 *    publishes among it); loop 0 tells the socket's thread, in order, when it has the read, and
 *    from then on the topic's messages wait (wsk_ws_hold_queue) until the answer came and the
 *    retained message went: they follow it, in order (the first retained publish among them
 *    first when the answer is none: it is newer than the read).
 * A call that finds its loop ended is not run: what it carried is freed as wsk_group_run
 * returns (relay). */

/* fn(arg) on loop `to`, in order with what srv's loop hands it; frees arg (a malloc'd block)
 * instead when it cannot go, now or when loop `to` ended first (as wsk_group_run returns). */
static int relay_or(wsk_server *srv, unsigned to, void (*fn)(void *arg, wsk_loop *loop),
                    void (*drop)(void *arg), void *arg);
static int relay(wsk_server *srv, unsigned to, void (*fn)(void *arg, wsk_loop *loop), void *arg)
{
    return relay_or(srv, to, fn, free, arg);
}

/* relay for an arg that holds more than its block: drop(arg) frees it all instead. */
static int relay_or(wsk_server *srv, unsigned to, void (*fn)(void *arg, wsk_loop *loop),
                    void (*drop)(void *arg), void *arg)
{
    int r = wsk_group_call_ordered_or_drop(wsk_server_loop(srv), to, fn, drop, arg);
    if (r == WSK_ERR_INVAL) drop(arg); /* not queued, not dropped */
    return r;
}

/* On loop 0: fn(arg) on thread `to` with what loop 0 delivered before; at once when `to` is
 * loop 0 itself, whose own deliveries do not wait for the end of its turn.  drop(arg) frees
 * arg and what it owns instead when thread `to` ended first. */
static void answer(struct serve *to, void (*fn)(void *arg, wsk_loop *loop), void (*drop)(void *arg),
                   void *arg)
{
    if (to->thread)
        relay_or(to->all[0].srv, to->thread, fn, drop, arg);
    else
        fn(arg, to->loop);
}

/* A publish of another thread than 0, on its way to the engine through loop 0. */
struct relay_pub {
    struct serve *sv;  /* the publishing thread's */
    uint64_t slot;     /* its publisher's number there (mine), 0: none */
    struct pending *p; /* counted: its acknowledgement, there */
    int sent;          /* it left for loop 0: p is the relay's from then on (pub_dropped) */
    long local, nodes;
    int retained, binary;
    size_t tlen, len;
    char topic[TOPIC_MAX];
    uint8_t data[];
};

/* p (NULL: nothing), whose answer will not come: its loop ended first (as wsk_group_run
 * returns, when a call that carries it is dropped). */
static void pending_drop(struct pending *p)
{
    if (p && p->ev) ev_timer_stop(p->ev, &p->late);
    if (p && p->http) wsk_deferred_respond(p->http, 500, NULL, 0); /* too late: only frees */
    if (p && p->ws) pending_unlink(wsk_ws_data(p->ws), p);
    free(p);
}

/* A relay of the publish that will not run (a loop ended first, as wsk_group_run returns, or
 * refused): its acknowledgement's pending goes with it once it left (no socket is left to
 * answer, their loops have ended); before, relay_publish's caller answers it. */
static void pub_dropped(void *arg)
{
    struct relay_pub *rp = arg;
    if (rp->sent) pending_drop(rp->p);
    free(rp);
}

static void pub_count_back(void *arg, wsk_loop *loop)
{
    struct relay_pub *rp = arg;
    struct broker *b = broker_of(rp->sv->srv);
    (void)loop;
    /* Refused: delivered from here just before (msg_there).  Only its own: a refused message
     * whose count never came (no acknowledgement asked) leaves nothing to another's. */
    if (rp->nodes == WSK_NODES_NOT_BRIDGED && rp->slot && rp->slot == b->unkept_slot) {
        rp->local += b->unkept;
        b->unkept = 0;
        b->unkept_slot = 0;
    }
    pending_count(rp->p, rp->local, rp->nodes);
    free(rp);
}

static void pub_counted(void *arg, long local, long nodes)
{
    struct relay_pub *rp = arg;
    rp->local = local;
    rp->nodes = nodes;
    relay_or(rp->sv->all[0].srv, rp->sv->thread, pub_count_back, pub_dropped, rp);
}

/* The engine could not take it: delivered on its thread without an offset. */
static void pub_failed_back(void *arg, wsk_loop *loop)
{
    struct relay_pub *rp = arg;
    (void)loop;
    wsk_server *srv = rp->sv->srv;
    wsk_ws *from = rp->slot ? mine_take(broker_of(srv), rp->slot).ws : NULL;
    broker_publish_node(srv, from, rp->topic, rp->tlen, rp->data, rp->len, rp->binary, rp->retained,
                        rp->p);
    free(rp);
}

static void pub_there(void *arg, wsk_loop *loop)
{
    struct relay_pub *rp = arg;
    wsk_server *srv = rp->sv->all[0].srv;
    wsk_opcode op = rp->binary ? WSK_OP_BINARY : WSK_OP_TEXT;
    void (*done)(void *, long, long) = rp->p ? pub_counted : NULL;
    (void)loop;
    long n = rp->retained ? wsk_server_publish_retained(srv, NULL, rp->topic, rp->tlen, rp->data,
                                                        rp->len, op, 1, 1, done, rp)
                          : wsk_server_publish_history(srv, rp->topic, rp->tlen, rp->data, rp->len,
                                                       op, 1, done, rp);
    if (n <= 0) {
        relay_or(srv, rp->sv->thread, pub_failed_back, pub_dropped, rp);
        return;
    }
    if (rp->slot)
        mine_keep(broker_of(srv), (struct mine){(uint64_t)n, NULL, rp->sv->thread, rp->slot});
    if (!rp->p) free(rp); /* else pub_counted has it */
}

/* broker_publish on another thread than 0: 0 when it went to loop 0, <0 when it did not. */
static int relay_publish(wsk_server *srv, wsk_ws *from, const char *topic, size_t tlen,
                         const void *data, size_t len, int binary, int retained, struct pending *p)
{
    struct broker *b = broker_of(srv);
    struct relay_pub *rp = malloc(sizeof *rp + len);
    if (!rp || tlen > TOPIC_MAX) {
        free(rp);
        return WSK_ERR_NOMEM;
    }
    *rp = (struct relay_pub){.sv = serve_of(srv),
                             .p = p,
                             .retained = retained,
                             .binary = binary,
                             .tlen = tlen,
                             .len = len};
    memcpy(rp->topic, topic, tlen);
    if (len) memcpy(rp->data, data, len);
    if (from) {
        rp->slot = ++b->mine_next;
        mine_keep(b, (struct mine){rp->slot, from, rp->sv->thread, rp->slot});
    }
    int r = relay_or(srv, 0, pub_there, pub_dropped, rp);
    /* From here on, a drop takes p along.  Without p, loop 0 may have freed rp already. */
    if (r == 0 && p) rp->sent = 1;
    return r;
}

/* A message of the engine's history for the threads other than 0: one copy shared by all of
 * them (an atomic count of the threads still to deliver it), each thread's part in its item.
 * Copying it per thread costs a malloc and a copy of the message per thread instead, and
 * the count's decrement is as cheap as a small copy (lib/group_topics.c has the figures). */
struct relay_msg;
struct relay_item {
    struct relay_msg *m;
    struct serve *sv; /* the thread's */
    uint64_t mine;    /* its publisher's number there (wsk_history_pos.mine), 0: none */
};
struct relay_msg {
    atomic_uint refs;
    wsk_history_pos at;
    wsk_opcode op;
    int compress, spread;
    size_t tlen, len;
    const uint8_t *data; /* after the items */
    char topic[TOPIC_MAX];
    struct relay_item items[];
};

static void msg_unref(struct relay_msg *m)
{
    if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1) free(m);
}

static void msg_there(void *arg, wsk_loop *loop)
{
    struct relay_item *it = arg;
    struct relay_msg *m = it->m;
    (void)loop;
    wsk_server *srv = it->sv->srv;
    wsk_history_pos at = m->at;
    at.mine = it->mine;
    wsk_ws *from = at.mine ? mine_take(broker_of(srv), at.mine).ws : NULL;
    long n = remote_here(srv, from, m->topic, m->tlen, m->data, m->len, m->op, m->compress, &at,
                         m->spread);
    if (m->spread) { /* its publisher's count comes next (pub_count_back) */
        broker_of(srv)->unkept = n;
        broker_of(srv)->unkept_slot = at.mine; /* this thread's publisher */
    }
    msg_unref(m);
}

/* A thread's part of a message whose loop ended first (dropped as wsk_group_run returns). */
static void msg_dropped(void *arg)
{
    msg_unref(((struct relay_item *)arg)->m);
}

/* The bridged handler's message of the engine's history, on loop 0: to every thread. */
static long remote_deliver(wsk_server *srv, const char *topic, size_t tlen, const void *data,
                           size_t len, wsk_opcode op, int compress, const wsk_history_pos *at)
{
    struct broker *b = broker_of(srv);
    struct mine mine = at->mine ? mine_take(b, at->mine) : (struct mine){0};
    /* Refused by the engine (offset 0): this node's subscribers get it as a local publish of
     * its publisher's thread, whose acknowledgement counts them (pub_count_back). */
    int spread = !at->offset;
    unsigned k = spread ? mine.thread != 0 : b->sv->threads - 1; /* the threads it goes to */
    struct relay_msg *m = k && tlen <= TOPIC_MAX ? malloc(sizeof *m + k * sizeof *m->items + len)
                                                 : NULL; /* none: as a socket's full queue */
    if (m) {
        *m = (struct relay_msg){.at = *at,
                                .op = op,
                                .compress = compress,
                                .spread = spread,
                                .tlen = tlen,
                                .len = len,
                                .data = (const uint8_t *)&m->items[k]};
        atomic_init(&m->refs, k);
        memcpy(m->topic, topic, tlen);
        if (len) memcpy((uint8_t *)&m->items[k], data, len);
    }
    for (unsigned i = 1, j = 0; m && i < b->sv->threads; i++) {
        if (spread && mine.thread != i) continue;
        m->items[j] = (struct relay_item){m, &b->sv->all[i], mine.thread == i ? mine.slot : 0};
        relay_or(srv, i, msg_there, msg_dropped, &m->items[j++]);
    }
    if (spread && mine.thread) return 0;
    return remote_here(srv, mine.thread ? NULL : mine.ws, topic, tlen, data, len, op, compress, at,
                       spread);
}

/* A recovery's listen (on 1, or its end) on loop 0. */
struct relay_listen {
    wsk_server *srv0;
    int on;
    size_t tlen;
    char topic[TOPIC_MAX];
};

static void listen_there(void *arg, wsk_loop *loop)
{
    struct relay_listen *rl = arg;
    (void)loop;
    wsk_server_bridge_listen(rl->srv0, rl->topic, rl->tlen, rl->on);
    free(rl);
}

/* wsk_server_bridge_listen from any thread. */
static int remote_listen(wsk_server *srv, const char *topic, size_t tlen, int on)
{
    if (serve_of(srv)->threads == 1) return wsk_server_bridge_listen(srv, topic, tlen, on);
    struct relay_listen *rl = tlen <= TOPIC_MAX ? malloc(sizeof *rl) : NULL;
    if (!rl) return WSK_ERR_NOMEM;
    *rl = (struct relay_listen){.srv0 = serve_of(srv)->all[0].srv, .on = on, .tlen = tlen};
    memcpy(rl->topic, topic, tlen);
    return relay(srv, 0, listen_there, rl);
}

/* A read of the history for a recovery of another thread; the batch, copied, comes back. */
struct relay_read {
    struct serve *sv; /* the recovery's thread */
    struct recovery *rc;
    uint64_t after;
    size_t tlen;
    char topic[TOPIC_MAX];
};

struct relay_batch {
    struct recovery *rc;
    wsk_history_batch hb;
    wsk_history_msg m[]; /* then their bytes */
};

static void batch_back(void *arg, wsk_loop *loop)
{
    struct relay_batch *rb = arg;
    (void)loop;
    remote_batch(rb->rc, &rb->hb);
    free(rb);
}

/* A recovery whose read will not come back (dropped at shutdown): its client closed, so it
 * waits for nothing else (remote_end); one whose client is there (a relay refused at once)
 * stays the caller's. */
static void recovery_dropped(struct recovery *rc)
{
    if (!rc->ws) free(rc);
}

static void batch_dropped(void *arg)
{
    recovery_dropped(((struct relay_batch *)arg)->rc);
    free(arg);
}

static void read_done(void *arg, const wsk_history_batch *hb)
{
    struct relay_read *rr = arg;
    size_t bytes = 0;
    for (size_t i = 0; i < hb->n; i++) bytes += hb->m[i].len;
    struct relay_batch *rb = malloc(sizeof *rb + hb->n * sizeof rb->m[0] + bytes);
    if (!rb && (rb = malloc(sizeof *rb))) /* no room: the recovery hears the engine failed */
        rb->hb = (wsk_history_batch){0};
    else if (rb) {
        rb->hb = *hb;
        rb->hb.m = rb->m;
        uint8_t *p = (uint8_t *)&rb->m[hb->n];
        for (size_t i = 0; i < hb->n; i++) {
            rb->m[i] = hb->m[i];
            rb->m[i].data = p;
            if (hb->m[i].len) memcpy(p, hb->m[i].data, hb->m[i].len);
            p += hb->m[i].len;
        }
    }
    if (rb) {
        rb->rc = rr->rc;
        answer(rr->sv, batch_back, batch_dropped, rb);
    }
    free(rr);
}

static void read_there(void *arg, wsk_loop *loop)
{
    struct relay_read *rr = arg;
    (void)loop;
    if (wsk_server_history_read(rr->sv->all[0].srv, rr->topic, rr->tlen, rr->after, REMOTE_BATCH,
                                read_done, rr) < 0)
        read_done(rr, &(wsk_history_batch){0});
}

static void read_dropped(void *arg)
{
    recovery_dropped(((struct relay_read *)arg)->rc);
    free(arg);
}

/* wsk_server_history_read for rc from any thread (remote_batch answers). */
static int history_read(wsk_server *srv, struct recovery *rc)
{
    if (serve_of(srv)->threads == 1)
        return wsk_server_history_read(srv, rc->topic, rc->tlen, rc->after, REMOTE_BATCH,
                                       remote_batch, rc);
    struct relay_read *rr = malloc(sizeof *rr);
    if (!rr) return WSK_ERR_NOMEM;
    *rr = (struct relay_read){.sv = serve_of(srv), .rc = rc, .after = rc->after, .tlen = rc->tlen};
    memcpy(rr->topic, rc->topic, rc->tlen);
    return relay_or(srv, 0, read_there, read_dropped, rr);
}

/* A retained read for another thread; the answer, copied, comes back. */
struct relay_retained {
    struct serve *sv;
    struct rread *rr;
    int held; /* rr->held when it left */
    wsk_retained r;
    uint8_t data[];
};

/* Whether cl recovers rr's topic (its hold is the recovery's then). */
static int recovering(const struct client *cl, const struct rread *rr)
{
    return cl->rec && rr->json && cl->rec->tlen == rr->tlen &&
           !memcmp(cl->rec->topic, rr->topic, rr->tlen);
}

/* The hold's topic: rr's own, or its JSON form (jt). */
static const char *rread_topic(const struct rread *rr, char *jt, size_t *len)
{
    *len = rr->json ? json_topic(jt, rr->topic, rr->tlen) : rr->tlen;
    return rr->json ? jt : rr->topic;
}

/* The socket holds rr's topic until the answer is sent (not one a recovery holds: that hold is
 * the recovery's, whose replay has them): queues every message of it (HOLD_QUEUE), queues its
 * own loop's and leaves out those of the others (HOLD_OWN), or leaves out all (HOLD_SKIP).  Held
 * anew as a queue when loop 0 has the read (retained_release), the queue marks what it holds as
 * older than the read: its retained publishes are superseded by a retained answer. */
enum { HOLD_QUEUE, HOLD_OWN, HOLD_SKIP };
static void rread_hold(struct rread *rr, int how)
{
    char jt[JSON_NS_LEN + TOPIC_MAX];
    size_t jl;
    const char *t = rread_topic(rr, jt, &jl);
    if (recovering(wsk_ws_data(rr->ws), rr)) return;
    rr->queued = (how == HOLD_SKIP ? wsk_ws_hold(rr->ws, t, jl)
                                   : wsk_ws_hold_queue(rr->ws, t, jl,
                                                       how == HOLD_OWN ? WSK_HOLD_GROUP : 0)) == 0;
}

/* The retained message went (how: WSK_HOLD_SENT), or none will (WSK_HOLD_FIRST; 0: the node's
 * own went, the engine could not answer): what the socket queued meanwhile follows it, in the
 * order wsk_ws_hold_release_topic gives it (a retained message first, none twice). */
static void rread_unhold(struct rread *rr, int how)
{
    if (!rr->queued) return;
    rr->queued = 0;
    if (!rr->ws || recovering(wsk_ws_data(rr->ws), rr)) return; /* the recovery's hold now */
    char jt[JSON_NS_LEN + TOPIC_MAX];
    size_t jl;
    const char *t = rread_topic(rr, jt, &jl);
    wsk_ws_hold_release_topic(rr->ws, t, jl, how);
}

/* Loop 0 has the read: what it delivered before, left out, came before the retained message in
 * the topic's order (the retained one is that or a later one); what it delivers from here on
 * waits for the answer.  The acknowledgement goes: a message the client publishes once it has
 * it comes after the retained message, queued until that is sent. */
static void retained_release(struct rread *rr)
{
    if (!rr->held) return;
    rr->held = 0;
    rread_ack(rr);
    if (rr->queued && rr->ws) rread_hold(rr, HOLD_QUEUE); /* what its own loop queued stays */
}

struct relay_release {
    struct rread *rr;
};

static void release_back(void *arg, wsk_loop *loop)
{
    (void)loop;
    retained_release(((struct relay_release *)arg)->rr);
    free(arg);
}

/* A retained read or its answer dropped at shutdown: rr goes with it once its client closed
 * (one refused at once stays retained_ask's). */
static void retained_dropped(void *arg)
{
    struct relay_retained *x = arg;
    if (!x->rr->ws) rread_free(x->rr);
    free(x);
}

static void retained_back(void *arg, wsk_loop *loop)
{
    struct relay_retained *x = arg;
    (void)loop;
    retained_release(x->rr);
    x->r.data = x->data;
    retained_came(x->rr, &x->r);
    free(x);
}

static void retained_done(void *arg, const wsk_retained *r)
{
    struct relay_retained *q = arg;
    struct relay_retained *x = malloc(sizeof *x + r->len);
    if (!x) {
        x = q; /* the read's own: "could not answer", and the node's goes */
        x->r = (wsk_retained){0};
        q = NULL;
    } else {
        *x = (struct relay_retained){q->sv, q->rr, 0, *r};
        if (r->len) memcpy(x->data, r->data, r->len);
    }
    answer(x->sv, retained_back, retained_dropped, x);
    free(q);
}

static void retained_there(void *arg, wsk_loop *loop)
{
    struct relay_retained *q = arg;
    struct relay_release *rl = q->held ? malloc(sizeof *rl) : NULL;
    (void)loop;
    if (rl) { /* ahead of the answer; without it the answer releases */
        rl->rr = q->rr;
        answer(q->sv, release_back, free, rl); /* rr goes with the answer */
    }
    if (wsk_server_retained_read(q->sv->all[0].srv, q->rr->topic, q->rr->tlen, retained_done, q) <
        0)
        retained_done(q, &(wsk_retained){0});
}

/* 1 when a subscriber of srv holds its topics while their retained reads go to loop 0. */
static int retained_holds(wsk_server *srv)
{
    return serve_of(srv)->threads > 1 && atomic_load(&broker_of(srv)->home->retains);
}

/* wsk_server_retained_read for rr from any thread (retained_came answers). */
static int retained_read(wsk_server *srv, const char *topic, size_t tlen, struct rread *rr)
{
    struct serve *sv = serve_of(srv);
    if (sv->threads == 1) {
        rread_ack(rr);
        if (!engine_retains(srv)) return WSK_ERR_STATE; /* this node's, at once */
        rread_hold(rr, HOLD_QUEUE); /* the read is made now: every later message waits */
        int r = wsk_server_retained_read(srv, topic, tlen, retained_came, rr);
        if (r < 0) rread_unhold(rr, 0);
        return r;
    }
    if (!retained_holds(srv)) return WSK_ERR_STATE;
    struct relay_retained *q = malloc(sizeof *q);
    if (!q) return WSK_ERR_NOMEM;
    *q = (struct relay_retained){sv, rr, 0, {0}};
    /* The socket subscribed already: until loop 0 has the read, what it delivers of the topic
     * is left out (each topic on its own), and so is the subscribe's acknowledgement; from then
     * until the answer is sent, every message of the topic waits (retained_release).  Without
     * the engine's history, what a thread other than 0 publishes is delivered there at once and
     * reaches loop 0 behind the read: newer than the retained message, it waits from the start
     * (left out, it would be lost: a retained one makes the read answer none, the subscriber
     * having it).  Loop 0's own reach the engine before its read (made at the end of its turn),
     * and the other threads' reach here as loop 0 hands them over: left out.  With the engine's
     * history every message comes from loop 0, in order with the read: all left out.  A raw
     * subscriber is owed every message published after its 101, those left out so far too: it
     * queues them all, and when loop 0 has the read they are marked as older than it, so that
     * a retained answer drops the retained publishes among them (it is that one or a later
     * one) and the others follow it. */
    rread_hold(rr, !rr->json                                       ? HOLD_QUEUE
                   : sv->thread && !remote_history(broker_of(srv)) ? HOLD_OWN
                                                                   : HOLD_SKIP);
    if (rr->queued)
        rr->held = q->held = 1;
    else
        rread_ack(rr);
    int r = relay_or(srv, 0, retained_there, retained_dropped, q);
    if (r < 0) {
        retained_release(rr);
        rread_unhold(rr, 0);
    }
    return r;
}

/* Takes rc off the broker's list, the hold on its topic ended. */
static void remote_unlink(wsk_server *srv, struct recovery *rc)
{
    struct broker *b = broker_of(srv);
    if (rc->prev)
        rc->prev->next = rc->next;
    else
        b->recs = rc->next;
    if (rc->next) rc->next->prev = rc->prev;
    remote_listen(srv, rc->topic, rc->tlen, 0);
}

static void remote_free(wsk_server *srv, struct recovery *rc)
{
    remote_unlink(srv, rc);
    free(rc);
}

/* The socket closed: rc goes now, or with its read when one is under way (off the list now). */
static void remote_end(wsk_server *srv, struct recovery *rc)
{
    if (!rc->reading) {
        remote_free(srv, rc);
        return;
    }
    remote_unlink(srv, rc);
    rc->ws = NULL;
}

/* The socket subscribes: live messages reach it from now on. */
static void remote_go_live(struct recovery *rc)
{
    wsk_ws *ws = rc->ws;
    struct client *cl = wsk_ws_data(ws);
    char jt[JSON_NS_LEN + TOPIC_MAX];
    int r = wsk_subscribe(ws, jt, json_topic(jt, rc->topic, rc->tlen));
    recovery_unhold(ws, rc->topic, rc->tlen);
    cl->rec = NULL;
    remote_free(wsk_ws_server(ws), rc);
    if (r > 0) cl->nsubs++;
    if (r < 0) wsk_close(ws, WSK_CLOSE_INTERNAL, "cannot subscribe", 16);
}

static void remote_ack(struct recovery *rc, int recovered, const wsk_history_pos *head)
{
    struct jp_topic t = {rc->topic, rc->tlen};
    size_t len;
    char *s = jp_ack_recovery(rc->id, &t, ((struct client *)wsk_ws_data(rc->ws))->nsubs + 1,
                              recovered, head->epoch[0] ? head->epoch : "0000000000000000",
                              (unsigned long long)head->offset, &len);
    rc->acked = 1;
    send_reply(rc->ws, s, len);
}

/* Sends the batch's messages after rc->after until one meets backpressure. */
static void remote_send(wsk_ws *ws, void *arg)
{
    const wsk_history_batch *hb = arg;
    struct recovery *rc = ((struct client *)wsk_ws_data(ws))->rec;
    for (size_t i = 0; i < hb->n && !rc->stop; i++)
        if (hb->m[i].offset > rc->after)
            replay_one(ws, hb->m[i].data, hb->m[i].len, hb->m[i].op == WSK_OP_BINARY,
                       hb->m[i].offset);
}

static void remote_batch(void *arg, const wsk_history_batch *hb)
{
    struct recovery *rc = arg;
    if (!rc->ws) { /* closed meanwhile: already off the list */
        free(rc);
        return;
    }
    wsk_ws *ws = rc->ws;
    if (!hb->ok) { /* the engine cannot be asked: live messages at least */
        rc->reading = 0;
        if (!rc->acked) remote_ack(rc, 0, &(wsk_history_pos){.offset = 0});
        remote_go_live(rc);
        return;
    }
    if (!rc->acked) {
        /* As ps_store_since: offset 0 takes any epoch; another epoch replays all it holds. */
        int same = rc->since == 0 || !strcmp(rc->since_epoch, hb->head.epoch);
        uint64_t from = same ? rc->since : 0;
        uint64_t first = hb->first ? hb->first : hb->head.offset + 1;
        memcpy(rc->epoch, hb->head.epoch, sizeof rc->epoch);
        remote_ack(rc, same && first <= from + 1 && from <= hb->head.offset, &hb->head);
        if (from != rc->after) { /* read from the start of this epoch instead */
            rc->after = from;
            rc->reading = 0;
            remote_read(rc);
            return;
        }
    } else if (strcmp(hb->head.epoch, rc->epoch)) { /* the history started again meanwhile */
        memcpy(rc->epoch, hb->head.epoch, sizeof rc->epoch);
        rc->after = 0;
        remote_ack(rc, 0, &hb->head);
        rc->reading = 0;
        remote_read(rc);
        return;
    } else if ((hb->n ? hb->m[0].offset : hb->head.offset + 1) > rc->after + 1) {
        remote_ack(rc, 0, &hb->head); /* overrun by the history: told, never a silent gap */
    }
    rc->stop = 0;
    rc->drained = 0;
    wsk_cork(ws, remote_send, (void *)hb); /* its flush may drain the queue: rc->drained */
    rc->reading = 0;
    if (!rc->ws) { /* a send closed it: its close handler left rc to us */
        free(rc);
        return;
    }
    if (wsk_ws_ready_state(ws) != WSK_OPEN || (rc->stop && !rc->drained))
        return; /* the drain handler resumes */
    /* More to read, or live messages passed while reading: read again.  Else the socket goes
     * live with the next message (remote_live). */
    if (rc->after < hb->head.offset || rc->live > rc->after) remote_read(rc);
}

static void remote_read(struct recovery *rc)
{
    wsk_server *srv = wsk_ws_server(rc->ws);
    rc->reading = 1;
    if (history_read(srv, rc) < 0) {
        rc->reading = 0;
        if (!rc->acked) remote_ack(rc, 0, &(wsk_history_pos){.offset = 0});
        remote_go_live(rc);
    }
}

/* The drain handler: the socket takes more (from within remote_batch's cork: it goes on). */
static void remote_resume(struct recovery *rc)
{
    if (rc->reading)
        rc->drained = 1;
    else if (rc->stop) {
        rc->stop = 0;
        remote_read(rc);
    }
}

static void remote_recover(wsk_ws *ws, struct client *cl, const jp_request *rq)
{
    const struct jp_topic *t = &rq->topics[0];
    struct broker *b = broker_of(wsk_ws_server(ws));
    struct recovery *rc = calloc(1, sizeof *rc);
    if (!rc || recovery_hold(ws, t->name, t->len) < 0 ||
        remote_listen(wsk_ws_server(ws), t->name, t->len, 1) < 0) {
        recovery_unhold(ws, t->name, t->len);
        free(rc);
        send_error(ws, rq->id, JP_ENOMEM, "out of memory");
        return;
    }
    rc->remote = 1;
    rc->ws = ws;
    rc->after = rc->since = rq->since_offset;
    memcpy(rc->since_epoch, rq->since_epoch, sizeof rc->since_epoch);
    memcpy(rc->id, rq->id, sizeof rc->id);
    rc->tlen = t->len;
    memcpy(rc->topic, t->name, t->len);
    rc->next = b->recs;
    if (b->recs) b->recs->prev = rc;
    b->recs = rc;
    cl->rec = rc;
    remote_read(rc);
}

/* A message of topic[0..tlen) at `at`, about to be delivered here: the recoveries of the topic
 * that sent everything before it go live; those it shows a gap to read again. */
static void remote_live(wsk_server *srv, const char *topic, size_t tlen, const wsk_history_pos *at)
{
    for (struct recovery *rc = broker_of(srv)->recs, *next; rc; rc = next) {
        next = rc->next;
        if (!rc->ws || rc->tlen != tlen || memcmp(rc->topic, topic, tlen)) continue;
        if (at->offset > rc->live) rc->live = at->offset;
        if (rc->reading || rc->stop || !rc->acked) continue;
        /* Another epoch: the history started again; the client sees it in the messages. */
        if (strcmp(at->epoch, rc->epoch) || at->offset == rc->after + 1)
            remote_go_live(rc);
        else if (at->offset > rc->after + 1)
            remote_read(rc);
    }
}

/* The queue that pushed back was written out: the recovery goes on.  The flush at the end of
 * a batch's cork may come here from within recovery_step, which then goes on itself. */
static void broker_drain(wsk_ws *ws)
{
    struct client *cl = wsk_ws_data(ws);
    if (cl && cl->rec && cl->rec->remote)
        remote_resume(cl->rec);
    else if (cl && cl->rec && cl->rec->stepping)
        cl->rec->drained = 1;
    else if (cl && cl->rec)
        recovery_step(ws);
}

/* A subscribe with "since": the acknowledgement says whether the history reaches back that far
 * and where the topic stands, then come the messages after the offset, oldest first (all the
 * history holds when it does not reach back), then live ones, with no gap and no duplicate. */
static void recover(wsk_ws *ws, struct client *cl, const jp_request *rq)
{
    const struct jp_topic *t = &rq->topics[0];
    ps_pos since = {.offset = rq->since_offset}, at;
    memcpy(since.epoch, rq->since_epoch, sizeof since.epoch);
    if (remote_history(broker_of(wsk_ws_server(ws)))) {
        remote_recover(ws, cl, rq);
        return;
    }
    uint64_t from;
    struct recovery *rc = calloc(1, sizeof *rc);
    if (!rc || recovery_hold(ws, t->name, t->len) < 0) { /* before: what follows is replayed */
        free(rc);
        send_error(ws, rq->id, JP_ENOMEM, "out of memory");
        return;
    }
    int recovered =
        ps_store_since(store_lock(wsk_ws_server(ws)), t->name, t->len, &since, now(), &from, &at);
    store_unlock(wsk_ws_server(ws));
    rc->after = from;
    rc->told = !recovered;
    memcpy(rc->id, rq->id, sizeof rc->id);
    memcpy(rc->epoch, at.epoch, sizeof rc->epoch);
    rc->tlen = t->len;
    memcpy(rc->topic, t->name, t->len);
    cl->rec = rc;
    size_t len;
    char *s = jp_ack_recovery(rq->id, t, cl->nsubs + 1, recovered, at.epoch,
                              (unsigned long long)at.offset, &len);
    send_reply(ws, s, len);
    recovery_step(ws);
}

static void json_subscribe_locked(wsk_ws *ws, struct client *cl, const jp_request *rq);

/* subscribe / unsubscribe every topic of rq, all or nothing as far as names and limits go. */
static void json_subscribe(wsk_ws *ws, struct client *cl, const jp_request *rq)
{
    unsigned long max = broker_of(wsk_ws_server(ws))->cfg->max_subscriptions;
    char jt[JSON_NS_LEN + TOPIC_MAX];
    size_t fresh = 0;
    for (size_t i = 0; i < rq->ntopics; i++) {
        const struct jp_topic *t = &rq->topics[i];
        const char *why = topic_invalid(t->name, t->len, 1);
        if (!why && rq->has_since && wsk_topic_is_pattern(t->name, t->len))
            why = "\"since\" takes a topic, not a pattern";
        if (!why && rq->has_since && rq->op != JP_SUBSCRIBE) why = "\"since\" is for subscribe";
        if (why) {
            char msg[400];
            snprintf(msg, sizeof msg, "\"%.255s\": %s", t->name, why);
            send_error(ws, rq->id, JP_ETOPIC, msg);
            return;
        }
        fresh += !wsk_ws_subscribed(ws, jt, json_topic(jt, t->name, t->len));
    }
    if (rq->op == JP_SUBSCRIBE && cl->nsubs + fresh > max) {
        char msg[96];
        snprintf(msg, sizeof msg, "at most %lu topics per connection", max);
        send_error(ws, rq->id, JP_ELIMIT, msg);
        return;
    }
    if (rq->has_since) {
        if (cl->rec)
            send_error(ws, rq->id, JP_EBADREQ, "one recovery at a time: wait for its messages");
        else if (!fresh)
            send_error(ws, rq->id, JP_EBADREQ, "already subscribed: unsubscribe, then resume");
        else
            recover(ws, cl, rq);
        return;
    }
    store_lock(wsk_ws_server(ws)); /* the subscriptions and their reads in one step */
    json_subscribe_locked(ws, cl, rq);
    store_unlock(wsk_ws_server(ws));
}

/* json_subscribe's subscribe or unsubscribe (no "since"), checked, under the store's lock
 * (retained_here). */
static void json_subscribe_locked(wsk_ws *ws, struct client *cl, const jp_request *rq)
{
    char jt[JSON_NS_LEN + TOPIC_MAX];
    for (size_t i = 0; i < rq->ntopics; i++) {
        size_t jl = json_topic(jt, rq->topics[i].name, rq->topics[i].len);
        if (rq->op == JP_SUBSCRIBE) {
            int r = wsk_subscribe(ws, jt, jl);
            if (r < 0) {
                send_error(ws, rq->id, JP_ENOMEM, "cannot subscribe");
                return;
            }
            cl->nsubs += (unsigned)r;
        } else {
            cl->nsubs -= (unsigned)wsk_unsubscribe(ws, jt, jl);
        }
    }
    size_t len;
    char *s = jp_ack_topics(rq->op, rq->id, rq->topics, rq->ntopics, cl->nsubs, &len);
    if (rq->op != JP_SUBSCRIBE || !rq->ntopics) {
        send_reply(ws, s, len);
        return;
    }
    /* The retained messages come right after the acknowledgement, which waits for the holds
     * of all the topics (struct sub_ack); a subscriber that holds none has it at once. */
    struct sub_ack *a = retained_holds(wsk_ws_server(ws)) ? malloc(sizeof *a) : NULL;
    if (a)
        *a = (struct sub_ack){1, len, s};
    else
        send_reply(ws, s, len);
    for (size_t i = 0; i < rq->ntopics; i++)
        retained_ask(ws, cl, 1, rq->topics[i].name, rq->topics[i].len, a);
    sub_ack_end(ws, a);
}

/* Presence: what the broker knows of a subscriber. */
static void who(wsk_ws *ws, jp_presence *p)
{
    const struct client *cl = wsk_ws_data(ws);
    p->id = cl ? cl->id : 0;
    p->user = cl ? cl->user : "";
}

static wsk_server *member_of(void *arg, unsigned i)
{
    const struct serve *all = arg;
    return all[i].srv;
}

/* Every thread answered (or the wait is over): the reply goes to whoever asked, if still
 * there. */
/* An introspection answer s[0..n) (NULL: out of memory) to p's asker, if still there; frees p. */
static void pending_answer(struct pending *p, char *s, size_t n)
{
    if (p->http) {
        http_answer(p->http, s, n);
    } else if (p->ws) {
        pending_unlink(wsk_ws_data(p->ws), p);
        if (s)
            send_reply(p->ws, s, n);
        else
            send_error(p->ws, p->id, JP_ENOMEM, "out of memory");
    } else {
        free(s);
    }
    free(p);
}

/* The census's answer; c NULL: this thread ended first (pubsub_teardown), nobody waits. */
static void presence_done(void *arg, pi_census *c)
{
    struct pending *p = arg;
    size_t n = 0;
    char *s = NULL;
    if (c && p->kept_from) pi_census_kept(c, p->kept.retained, p->kept_from > 1, p->kept.history);
    if (c && (p->http || p->ws)) {
        s = pi_census_reply(c, store_lock(p->srv), p->id, p->http != NULL, &n);
        store_unlock(p->srv);
    }
    pending_answer(p, s, n);
}

/* The census of p's topic (p->srv, its ws or http set); -1 when memory is short. */
static int census_begin(struct pending *p)
{
    struct serve *sv = serve_of(p->srv);
    pi_members m = {member_of, sv->all, sv->threads, who, &broker_of(p->srv)->censuses};
    return pi_census_start(p->srv, &m, p->topic, p->tlen, presence_done, p);
}

/* An introspection answer waiting for Redis' figures (wsk_server_kept_read): "topics" (l set)
 * or a presence (l NULL).  Answered with the node's own figures when they are KEPT_WAIT late. */
struct kept_wait {
    struct pending *p; /* whom to answer; NULL once answered */
    pi_list *l;
    struct ev_loop *ev;
    ev_timer late;
    size_t k;
    size_t idx[]; /* topics: the listed topics asked for, by their place in the list */
};

/* The answer, with Redis' figures k (NULL: the node's own). */
static void kept_go(struct kept_wait *w, const wsk_topic_kept *k)
{
    struct pending *p = w->p;
    int remote = remote_history(broker_of(p->srv));
    w->p = NULL;
    if (!w->l) { /* a presence: now the census */
        if (k) {
            p->kept = k[0];
            p->kept_from = remote ? 2 : 1;
        }
        if (census_begin(p) < 0) pending_answer(p, NULL, 0);
        return;
    }
    size_t shown, n = 0;
    jp_topic_info *t = pi_list_topics(w->l, &shown);
    for (size_t i = 0; k && i < w->k; i++) {
        t[w->idx[i]].retained = k[i].retained;
        if (remote) t[w->idx[i]].history = (size_t)k[i].history;
    }
    char *s = NULL;
    if (p->http || p->ws) {
        s = pi_list_reply(w->l, store_lock(p->srv), p->id, p->http != NULL, &n);
        store_unlock(p->srv);
    }
    pending_answer(p, s, n);
}

static void kept_came(void *arg, const wsk_topic_kept *k)
{
    struct kept_wait *w = arg;
    ev_timer_stop(w->ev, &w->late);
    if (w->p) kept_go(w, k);
    pi_list_free(w->l);
    free(w);
}

static void kept_late(struct ev_loop *ev, ev_timer *t, int revents)
{
    (void)ev;
    (void)revents;
    kept_go(t->data, NULL); /* kept_came frees w when Redis answers at last */
}

/* A read of what the engine keeps for another thread: its topics, then the answer, back. */
struct relay_kept {
    struct serve *sv;
    struct kept_wait *w;
    int ok;
    size_t k;
    char *names[KEPT_MAX];
    size_t lens[KEPT_MAX];
    wsk_topic_kept got[KEPT_MAX];
    char bytes[];
};

/* A read of what the engine keeps, or its answer, dropped at shutdown: its wait goes with it
 * once asked (w->ev set as kept_read returned; a read refused at once stays kept_ask's). */
static void kept_dropped(void *arg)
{
    struct relay_kept *q = arg;
    struct kept_wait *w = q->w;
    if (w->ev) {
        ev_timer_stop(w->ev, &w->late);
        pending_drop(w->p);
        pi_list_free(w->l);
        free(w);
    }
    free(q);
}

static void kept_back(void *arg, wsk_loop *loop)
{
    struct relay_kept *q = arg;
    (void)loop;
    kept_came(q->w, q->ok ? q->got : NULL);
    free(q);
}

static void kept_done(void *arg, const wsk_topic_kept *k)
{
    struct relay_kept *q = arg;
    q->ok = k != NULL;
    if (k) memcpy(q->got, k, q->k * sizeof *k);
    answer(q->sv, kept_back, kept_dropped, q);
}

static void kept_there(void *arg, wsk_loop *loop)
{
    struct relay_kept *q = arg;
    (void)loop;
    if (wsk_server_kept_read(q->sv->all[0].srv, (const char *const *)q->names, q->lens, q->k,
                             kept_done, q) < 0)
        kept_done(q, NULL);
}

/* wsk_server_kept_read for w from any thread (kept_came answers). */
static int kept_read(wsk_server *srv, struct kept_wait *w, const char **names, const size_t *lens)
{
    struct serve *sv = serve_of(srv);
    if (sv->threads == 1) return wsk_server_kept_read(srv, names, lens, w->k, kept_came, w);
    size_t bytes = 0;
    for (size_t i = 0; i < w->k; i++) bytes += lens[i];
    struct relay_kept *q = w->k <= KEPT_MAX && atomic_load(&broker_of(srv)->home->retains)
                               ? malloc(sizeof *q + bytes)
                               : NULL;
    if (!q) return WSK_ERR_STATE;
    q->sv = sv;
    q->w = w;
    q->k = w->k;
    char *p = q->bytes;
    for (size_t i = 0; i < w->k; i++) {
        q->names[i] = p;
        q->lens[i] = lens[i];
        memcpy(p, names[i], lens[i]);
        p += lens[i];
    }
    return relay_or(srv, 0, kept_there, kept_dropped, q);
}

/* Asks Redis for w's topics names[0..w->k) (lens); 1 when asked (kept_came answers). */
static int kept_ask(struct kept_wait *w, const char **names, const size_t *lens)
{
    wsk_server *srv = w->p->srv;
    if (kept_read(srv, w, names, lens) < 0) return 0;
    w->ev = wsk_loop_ev(wsk_server_loop(srv));
    ev_timer_init(&w->late, kept_late, KEPT_WAIT, 0);
    w->late.data = w;
    ev_timer_start(w->ev, &w->late);
    return 1;
}

/* Starts the presence of topic for p (ws's, or an HTTP request's): with a Redis bridge its
 * retained flag (and history length, with the history in Redis) are Redis', asked first; then
 * the census of every thread.  -1 when memory is short. */
static int presence_start(struct serve *sv, struct pending *p, const char *topic, size_t tlen)
{
    p->srv = sv->srv;
    p->tlen = tlen < sizeof p->topic ? tlen : sizeof p->topic;
    memcpy(p->topic, topic, p->tlen);
    const char *name = p->topic;
    struct kept_wait *w = calloc(1, sizeof *w);
    if (w) *w = (struct kept_wait){.p = p, .k = 1};
    if (w && kept_ask(w, &name, &p->tlen)) return 0;
    free(w);
    return census_begin(p);
}

/* "topics" for p (its ws or http, id and srv set): with a Redis bridge, the retained flags (and,
 * with the history in Redis, the history lengths) of the topics listed (KEPT_MAX at most) are
 * Redis', read in one round trip, and p is answered then (1); otherwise nothing is asked (0: the
 * caller answers at once, with *s the answer, or NULL when memory is short). */
static int topics_start(struct pending *p, const char *filter, size_t flen, size_t limit, char **s,
                        size_t *len)
{
    wsk_server *srv = p->srv;
    pi_list *l = pi_list_make(srv, store_lock(srv), filter, flen, limit);
    store_unlock(srv);
    size_t shown = 0, k = 0;
    jp_topic_info *t = l ? pi_list_topics(l, &shown) : NULL;
    if (shown > KEPT_MAX) shown = KEPT_MAX;
    struct kept_wait *w = l ? calloc(1, sizeof *w + shown * sizeof w->idx[0]) : NULL;
    const char **names = w ? malloc((shown + 1) * sizeof *names) : NULL;
    size_t *lens = names ? malloc((shown + 1) * sizeof *lens) : NULL;
    for (size_t i = 0; lens && i < shown; i++) {
        if (wsk_topic_is_pattern(t[i].name, t[i].len)) continue;
        names[k] = t[i].name;
        lens[k] = t[i].len;
        w->idx[k++] = i;
    }
    int asked = 0;
    if (k && lens) {
        w->p = p;
        w->l = l;
        w->k = k;
        asked = kept_ask(w, names, lens);
    }
    free(names);
    free(lens);
    if (asked) return 1;
    free(w);
    *s = NULL;
    if (l) {
        *s = pi_list_reply(l, store_lock(srv), p->id, p->http != NULL, len);
        store_unlock(srv);
    }
    pi_list_free(l);
    return 0;
}

/* {"op":"presence"}: answered once every thread told its subscribers. */
static void presence_ask(wsk_ws *ws, struct client *cl, const jp_request *rq)
{
    const char *why = topic_invalid(rq->topics[0].name, rq->topics[0].len, 1);
    if (why) {
        send_error(ws, rq->id, JP_ETOPIC, why);
        return;
    }
    struct pending *p = calloc(1, sizeof *p);
    if (!p) {
        send_error(ws, rq->id, JP_ENOMEM, "out of memory");
        return;
    }
    p->ws = ws;
    memcpy(p->id, rq->id, sizeof p->id);
    pending_link(cl, p);
    if (presence_start(serve_of(wsk_ws_server(ws)), p, rq->topics[0].name, rq->topics[0].len) < 0) {
        pending_unlink(cl, p);
        free(p);
        send_error(ws, rq->id, JP_ENOMEM, "out of memory");
    }
}

/* A JSON publish, checked: published, and acknowledged now or once the engine counted it. */
static void json_publish(wsk_ws *ws, struct client *cl, const jp_request *rq)
{
    const struct jp_topic *t = &rq->topics[0];
    wsk_server *srv = wsk_ws_server(ws);
    struct pending *p = NULL;
    if (wsk_server_bridged(srv, t->name, t->len) >= 0 && (p = calloc(1, sizeof *p))) {
        *p = (struct pending){.ws = ws, .tlen = t->len};
        memcpy(p->topic, t->name, t->len);
        memcpy(p->id, rq->id, sizeof p->id);
        pending_link(cl, p);
        p->busy = 1;
        p->got =
            broker_publish(srv, ws, t->name, t->len, rq->data, rq->len, rq->binary, rq->retain, p);
        p->busy = 0;
        if (p->counted) {
            pending_done(p);
        } else {
            p->ev = wsk_loop_ev(wsk_server_loop(srv));
            ev_timer_init(&p->late, pending_late, COUNT_WAIT, 0);
            p->late.data = p;
            ev_timer_start(p->ev, &p->late);
        }
        return;
    }
    size_t n;
    long got =
        broker_publish(srv, ws, t->name, t->len, rq->data, rq->len, rq->binary, rq->retain, NULL);
    char *s = jp_ack_publish(rq->id, t->name, t->len, got, JP_NO_BRIDGE, &n);
    send_reply(ws, s, n);
}

static void json_request(wsk_ws *ws, struct client *cl, const void *data, size_t len)
{
    jp_request rq;
    const struct broker *b = broker_of(wsk_ws_server(ws));
    int r = jp_parse(data, len, (size_t)b->cfg->max_subscriptions, &rq);
    if (r < 0) {
        send_error(ws, rq.id, r, rq.why);
        jp_request_free(&rq);
        return;
    }
    size_t n;
    char *s = NULL;
    switch (rq.op) {
    case JP_SUBSCRIBE:
    case JP_UNSUBSCRIBE: json_subscribe(ws, cl, &rq); break;
    case JP_PUBLISH: {
        const struct jp_topic *t = &rq.topics[0];
        const char *why = topic_invalid(t->name, t->len, 0);
        wsk_server *srv = wsk_ws_server(ws);
        if (!cl->may_publish) {
            send_error(ws, rq.id, JP_EFORBIDDEN, "publishing requires the token");
        } else if (why) {
            send_error(ws, rq.id, JP_ETOPIC, why);
        } else if (!rq.binary && !wsk_utf8_valid(rq.data, rq.len)) {
            send_error(ws, rq.id, JP_EBADREQ, "\"data\" is not valid UTF-8");
        } else {
            store_lock(srv); /* kept and published in one step (retained_here) */
            if (rq.retain && retain(srv, t->name, t->len, rq.data, rq.len, rq.binary) < 0)
                send_error(ws, rq.id, JP_ENOMEM, "out of memory");
            else
                json_publish(ws, cl, &rq);
            store_unlock(srv);
        }
        break;
    }
    case JP_TOPICS:
    case JP_PRESENCE: {
        if (b->token && !cl->may_publish) {
            send_error(ws, rq.id, JP_EFORBIDDEN, "introspection requires the token");
            break;
        }
        if (rq.op == JP_PRESENCE) {
            presence_ask(ws, cl, &rq);
            break;
        }
        struct pending *p = calloc(1, sizeof *p);
        if (p) {
            p->ws = ws;
            p->srv = wsk_ws_server(ws);
            memcpy(p->id, rq.id, sizeof p->id);
            pending_link(cl, p);
            if (topics_start(p, rq.filter, rq.filter ? strlen(rq.filter) : 0, rq.limit, &s, &n))
                break;
            pending_unlink(cl, p);
            free(p);
        }
        if (s)
            send_reply(ws, s, n);
        else
            send_error(ws, rq.id, JP_ENOMEM, "out of memory");
        break;
    }
    case JP_LIST: {
        struct list_ctx lc = {malloc((cl->nsubs + 1) * sizeof *lc.t), 0};
        if (!lc.t) {
            send_error(ws, rq.id, JP_ENOMEM, "out of memory");
            break;
        }
        wsk_ws_subscriptions(ws, list_one, &lc);
        s = jp_ack_topics(JP_LIST, rq.id, lc.t, lc.n, cl->nsubs, &n);
        send_reply(ws, s, n);
        free(lc.t);
        break;
    }
    default:
        s = jp_ack_ping(rq.id, &n);
        send_reply(ws, s, n);
        break;
    }
    jp_request_free(&rq);
}

static void broker_message(wsk_ws *ws, const void *data, size_t len, wsk_opcode op)
{
    struct client *cl = wsk_ws_data(ws);
    if (cl->json) {
        if (op != WSK_OP_TEXT)
            send_error(ws, "", JP_EBADREQ, "the control protocol speaks JSON in text messages");
        else
            json_request(ws, cl, data, len);
        return;
    }
    /* A raw socket has no channel for a refusal other than its close frame. */
    if (!cl->may_publish) {
        wsk_close(ws, WSK_CLOSE_POLICY, "publishing requires the token", 29);
        return;
    }
    if (cl->pattern) {
        wsk_close(ws, WSK_CLOSE_POLICY, "a pattern cannot be published to", 32);
        return;
    }
    broker_publish(wsk_ws_server(ws), ws, cl->topic, cl->tlen, data, len, op == WSK_OP_BINARY, 0,
                   NULL);
}

static void broker_close(wsk_ws *ws, unsigned code, const char *reason, size_t len)
{
    (void)code;
    (void)reason;
    (void)len;
    struct client *cl = wsk_ws_data(ws);
    for (struct pending *p = cl ? cl->pending : NULL; p; p = p->next) p->ws = NULL;
    for (struct rread *rr = cl ? cl->reads : NULL; rr; rr = rr->next) rr->ws = NULL;
    if (cl && cl->rec && cl->rec->remote)
        remote_end(wsk_ws_server(ws), cl->rec);
    else if (cl)
        free(cl->rec);
    mine_forget(broker_of(wsk_ws_server(ws)), ws);
    free(cl);
    wsk_ws_set_data(ws, NULL);
}

/* The helpers below answer a plain request and return its status. */
static int http_json(wsk_response *res, int status, char *body, size_t len)
{
    wsk_response_set_status(res, status);
    wsk_response_add_header(res, "Content-Type", "application/json");
    if (body) {
        wsk_response_append_body(res, body, len);
        wsk_response_append_body(res, "\n", 1);
    }
    free(body);
    return status;
}

static int http_error(wsk_response *res, int status, const char *code, const char *msg)
{
    size_t len;
    char *s = jp_http_error(code, msg, &len);
    return http_json(res, status, s, len);
}

/* GET / says what this is, with commands that work as printed: the scheme and address the
 * client used, and the token where one is needed (as a placeholder: the page is public). */
static int broker_page(struct serve *sv, const wsk_request *req, wsk_response *res)
{
    if (serve_console(sv, req, res)) return 200;
    const struct broker *b = sv->state;
    char ws[300], http[300], body[4096];
    const char *auth = b->token ? "-H 'Authorization: Bearer TOKEN' " : "";
    const char *sub_auth = b->cfg->private_topics ? auth : "";
    serve_base_url(sv, req, 0, ws, sizeof ws);
    serve_base_url(sv, req, 1, http, sizeof http);
    snprintf(body, sizeof body,
             "wsserve --pubsub: a publish/subscribe broker (libwskit).\n"
             "  %s/TOPIC    subscribe to TOPIC; what you send is published to it\n"
             "  %s/         the JSON control protocol (see wsserve(1))\n"
             "  POST %s/publish/TOPIC    publish the request body\n"
             "%s"
             "For example:\n"
             "  wscat %s-c %s/news\n"
             "  curl %s-d hello %s/publish/news\n"
             "  wspub %s%s/ news hello\n",
             ws, ws, http,
             !b->token                ? ""
             : b->cfg->private_topics ? "Publishing and subscribing need the token "
                                        "(TOKEN below: the broker's --token).\n"
                                      : "Publishing needs the token (TOKEN below: the "
                                        "broker's --token).\n",
             sub_auth, ws, auth, http, b->token ? "--token TOKEN " : "", ws);
    return serve_text(res, 200, body);
}

static int broker_authorized(struct serve *sv, const wsk_request *req)
{
    const struct broker *b = sv->state;
    return !b->token || token_check(b, req) > 0;
}

/* 0 when the request has the method and shows the token (when there is one); otherwise the
 * status of the refusal it was answered with.  what: "publishing", ... for the messages. */
static int http_allowed(const struct broker *b, const wsk_request *req, wsk_response *res,
                        const char *method, const char *what)
{
    size_t mlen;
    const char *m = wsk_request_method(req, &mlen);
    char msg[80];
    if (mlen != strlen(method) || memcmp(m, method, mlen)) {
        wsk_response_add_header(res, "Allow", method);
        snprintf(msg, sizeof msg, "%s takes %s", what, method);
        return http_error(res, 405, "method_not_allowed", msg);
    }
    if (b->token && token_check(b, req) <= 0) {
        snprintf(msg, sizeof msg, "%s without a valid token", what);
        log_refusal(b, req, 401, msg);
        wsk_response_add_header(res, "WWW-Authenticate", "Bearer");
        snprintf(msg, sizeof msg, "%s requires the token", what);
        return http_error(res, 401, "unauthorized", msg);
    }
    return 0;
}

/* GET /topics[?filter=P&limit=N] and GET /topics/TOPIC: what "topics" and "presence" say. */
static int topics_page(struct serve *sv, const wsk_request *req, wsk_response *res, int one)
{
    const struct broker *b = sv->state;
    size_t n = 0;
    int refused = http_allowed(b, req, res, "GET", "introspection");
    if (refused) return refused;
    char topic[TOPIC_MAX + 2], filter[TOPIC_MAX + 2] = "", num[16];
    size_t tlen;
    char *s;
    if (one) {
        path_rest(req, 8, topic, &tlen);
        const char *why = topic_invalid(topic, tlen, 0);
        if (why) return http_error(res, 400, "bad_topic", why);
        /* Answered when every thread has told (wsk_response_defer; the answer may come before
         * this returns); what res holds is the fallback, if the census never ends. */
        struct pending *p = calloc(1, sizeof *p);
        if (p && (p->http = wsk_response_defer(res, KEPT_WAIT + PI_CENSUS_WAIT + 1)) &&
            presence_start(sv, p, topic, tlen) == 0)
            return http_error(res, 503, "unavailable", "the threads did not answer in time");
        if (p && p->http) wsk_deferred_respond(p->http, 500, NULL, 0);
        free(p);
        return http_error(res, 500, "internal", "out of memory");
    } else {
        long f = wsk_request_query_param(req, "filter", filter, sizeof filter);
        unsigned long limit = 0;
        if (wsk_request_query_param(req, "limit", num, sizeof num) >= 0 &&
            cli_parse_ulong(num, 1, 1000000000ul, &limit) < 0)
            return http_error(res, 400, "bad_request", "limit is a number from 1");
        /* Answered when Redis has told, or at once (wsk_response_defer; the answer may come
         * before this returns); what res holds is the fallback, if Redis is slow. */
        struct pending *p = calloc(1, sizeof *p);
        if (p && (p->http = wsk_response_defer(res, KEPT_WAIT + 1))) {
            p->srv = sv->srv;
            if (!topics_start(p, filter, f > 0 ? strlen(filter) : 0, limit, &s, &n)) {
                http_answer(p->http, s, n);
                free(p);
            }
            return http_error(res, 503, "unavailable", "Redis did not answer in time");
        }
        free(p);
        s = pi_topics(sv->srv, store_lock(sv->srv), NULL, 1, filter, f > 0 ? strlen(filter) : 0,
                      limit, &n);
        store_unlock(sv->srv);
    }
    return http_json(res, s ? 200 : 500, s, n);
}

static int broker_request(struct serve *sv, const wsk_request *req, wsk_response *res)
{
    const struct broker *b = sv->state;
    size_t plen, mlen, clen = 0, blen = 0;
    const char *path = wsk_request_path(req, &plen);
    const char *method = wsk_request_method(req, &mlen);
    static const char prefix[] = "/publish/";
    if (!origin_allowed(b, req)) {
        log_refusal(b, req, 403, "origin not allowed");
        return http_error(res, 403, "forbidden", "origin not allowed");
    }
    if (plen >= 7 && !memcmp(path, "/topics", 7) && (plen == 7 || path[7] == '/'))
        return topics_page(sv, req, res, plen > 8);
    if (plen < sizeof prefix - 1 || memcmp(path, prefix, sizeof prefix - 1)) {
        if (plen == 1 &&
            ((mlen == 3 && !memcmp(method, "GET", 3)) || (mlen == 4 && !memcmp(method, "HEAD", 4))))
            return broker_page(sv, req, res);
        return http_error(res, 404, "not_found",
                          "POST /publish/TOPIC publishes; a WebSocket to /TOPIC subscribes");
    }
    int refused = http_allowed(b, req, res, "POST", "publishing");
    if (refused) return refused;
    char topic[TOPIC_MAX + 2], flag[8];
    size_t tlen;
    path_rest(req, sizeof prefix - 1, topic, &tlen);
    const char *why = topic_invalid(topic, tlen, 0);
    if (why) return http_error(res, 400, "bad_topic", why);
    const void *body = wsk_request_body(req, &blen);
    const char *ct = wsk_request_header(req, "content-type", &clen);
    int binary = (ct && clen >= 24 && !strncasecmp(ct, "application/octet-stream", 24)) ||
                 wsk_request_query_param(req, "binary", flag, sizeof flag) >= 0;
    if (!binary && !wsk_utf8_valid(body, blen))
        return http_error(res, 400, "bad_request",
                          "the body is not UTF-8 text: send binary with Content-Type: "
                          "application/octet-stream");
    long r = wsk_request_query_param(req, "retain", flag, sizeof flag);
    int retained = r >= 0 && strcmp(flag, "0");
    store_lock(sv->srv); /* kept and published in one step (retained_here) */
    if (retained && retain(sv->srv, topic, tlen, body, blen, binary) < 0) {
        store_unlock(sv->srv);
        return http_error(res, 500, "internal", "out of memory");
    }
    /* With the engine up, the answer waits for its count of the other nodes (deferred); the
     * response built below is the fallback, if the count is not there in time. */
    int up = wsk_server_bridged(sv->srv, topic, tlen); /* the group's bridge, with --threads */
    struct pending *p = up == 1 ? calloc(1, sizeof *p) : NULL;
    if (p && !(p->http = wsk_response_defer(res, COUNT_WAIT))) {
        free(p);
        p = NULL;
    }
    if (p) {
        p->tlen = tlen;
        memcpy(p->topic, topic, tlen);
    }
    long got =
        broker_publish(sv->srv, NULL, topic, tlen, body ? body : "", blen, binary, retained, p);
    store_unlock(sv->srv);
    size_t len;
    char *s = jp_http_published(topic, tlen, got,
                                up < 0 ? JP_NO_BRIDGE
                                : p    ? JP_LATE /* the fallback: sent when the count is late */
                                : up   ? JP_UNCOUNTED
                                       : JP_UNBRIDGED,
                                &len);
    return http_json(res, s ? 200 : 500, s, len);
}

/* The first line of the file: a copy in *token. */
static int read_token_file(const char *path, char **token)
{
    char line[TOKEN_MAX + 1];
    long n = cli_read_secret("wsserve", "token-file", path, line, sizeof line);
    *token = n > 0 ? strndup(line, (size_t)n) : NULL;
    memset(line, 0, sizeof line);
    return *token ? 0 : -1;
}

static void pubsub_teardown(struct serve *sv)
{
    struct broker *b = sv->state;
    if (b) pi_census_end(&b->censuses); /* the loops ran: presences this thread left waiting */
    if (b && b->token) {
        memset(b->token, 0, b->token_len);
        free(b->token);
    }
    if (b && b->ev) {
        ev_ref(b->ev);
        ev_timer_stop(b->ev, &b->expiry);
    }
    if (b && b->home == &b->home_here) { /* all[0]'s, the last to go */
        ps_store_free(b->home_here.store);
        pthread_mutex_destroy(&b->home_here.lock);
    }
    if (b) free(b->mine);
    free(b);
    sv->state = NULL;
}

static int pubsub_setup(struct serve *sv, wsk_server_opts *so, wsk_handlers *h)
{
    const struct pubsub_config *cfg = sv->config;
    if (cfg->token_file && cfg->token) {
        fprintf(stderr, "wsserve: give --token or --token-file, not both\n");
        return -1;
    }
    if (cfg->private_topics && !cfg->token && !cfg->token_file) {
        fprintf(stderr, "wsserve: --private needs --token or --token-file\n");
        return -1;
    }
    if (cfg->token && strlen(cfg->token) > TOKEN_MAX) {
        fprintf(stderr, "wsserve: --token: at most %d bytes\n", TOKEN_MAX);
        return -1;
    }
    struct broker *b = calloc(1, sizeof *b);
    if (!b) return -1;
    b->cfg = cfg;
    b->sv = sv;
    sv->state = b;
    if (sv->thread) {
        b->home = ((struct broker *)sv->all[0].state)->home;
    } else {
        b->home = &b->home_here;
        pthread_mutexattr_t a;
        pthread_mutexattr_init(&a);
        pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
        pthread_mutex_init(&b->home_here.lock, &a);
        pthread_mutexattr_destroy(&a);
        atomic_init(&b->home_here.connections, 0);
        if (!(b->home_here.store = ps_store_new())) goto fail;
        ps_store_history(b->home_here.store, cfg->history, cfg->history_ttl, cfg->history_memory);
    }
    if (cfg->token_file && read_token_file(cfg->token_file, &b->token) < 0) goto fail;
    if (cfg->token && !(b->token = strdup(cfg->token))) goto fail;
    b->token_len = b->token ? strlen(b->token) : 0;
    so->publish_to_self = cfg->publish_to_self;
    so->bridge_derived = JSON_NS;
    h->bridged = broker_bridged;
    h->upgrade = broker_upgrade;
    h->open = broker_open;
    h->message = broker_message;
    h->close = broker_close;
    h->drain = broker_drain;
    return 0;
fail:
    pubsub_teardown(sv);
    return -1;
}

const serve_mode serve_pubsub = {
    .name = "pubsub",
    .help = "a topic broker: ws://HOST/TOPIC, JSON on /, POST /publish/TOPIC",
    .options = pubsub_options,
    .config_size = sizeof(struct pubsub_config),
    .config_init = pubsub_config_init,
    .option = pubsub_option,
    .setup = pubsub_setup,
    .request = broker_request,
    .teardown = pubsub_teardown,
    .authorized = broker_authorized,
    .before_listen = remote_decide,
};
