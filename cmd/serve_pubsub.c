/* wsserve --chat and --pubsub: see serve_pubsub.h and wsserve(1).
 *
 * Both modes are thin layers over wsk_subscribe / wsk_publish.  The chat room is the benchmark
 * that matters: a message costs one copy into a stack buffer ("NAME: m") and one wsk_publish,
 * which frames it once and appends the frame to every member's queue.
 *
 * The broker keeps two library topics per topic: T for raw subscribers (a WebSocket to /T),
 * which get each message as it was sent, and "{T" for sockets of the JSON protocol, which get
 * it wrapped in {"type":"message","topic":T,...}.  '{' cannot start a valid topic name, so the
 * two never meet; each wrapping is built once per publish, and only when someone wants it. */
#include "serve_pubsub.h"

#include "jsonproto.h"

#include <ctype.h>
#include <errno.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ROOM         "room"
#define NAME_MAX_LEN 256
#define TOPIC_MAX    128
#define TOKEN_MAX    1024
#define TOPIC_CHARS  "-_.~:/@+="

enum { MODE_NONE, MODE_CHAT, MODE_PUBSUB };

enum {
    OPT_CLIENTS = SERVE_PUBSUB_OPT_BASE,
    OPT_SELF,
    OPT_TOKEN,
    OPT_TOKEN_FILE,
    OPT_PRIVATE,
    OPT_ORIGIN,
    OPT_MAXSUBS,
};

const struct option serve_pubsub_longopts[SERVE_PUBSUB_NOPTS] = {
    {"clients", required_argument, 0, OPT_CLIENTS},
    {"publish-to-self", no_argument, 0, OPT_SELF},
    {"token", required_argument, 0, OPT_TOKEN},
    {"token-file", required_argument, 0, OPT_TOKEN_FILE},
    {"private", no_argument, 0, OPT_PRIVATE},
    {"origin", required_argument, 0, OPT_ORIGIN},
    {"max-subscriptions", required_argument, 0, OPT_MAXSUBS},
};

const char serve_pubsub_usage[] =
    "  --chat                    Bun's chat-room benchmark server: one room, \"NAME: m\" to all\n"
    "      --clients N           members that make the room \"ready\" (default 32)\n"
    "  --pubsub                  topic broker: ws://HOST/TOPIC, JSON protocol on ws://HOST/,\n"
    "                            POST /publish/TOPIC (see wsserve(1))\n"
    "      --publish-to-self     a publisher receives its own messages too\n"
    "      --token SECRET        publishing needs \"Authorization: Bearer SECRET\" or ?token=\n"
    "      --token-file FILE     the same, SECRET being the first line of FILE\n"
    "      --private             subscribing needs the token too\n"
    "      --origin LIST         browser Origins allowed (comma-separated, repeatable)\n"
    "      --max-subscriptions N topics per connection (default 100)\n";

/* A chat member: the name its messages are prefixed with. */
struct member {
    size_t len;
    char name[];
};

/* A broker connection. */
struct client {
    uint8_t json;        /* connected to "/": speaks the JSON protocol */
    uint8_t may_publish; /* showed the token, or none is needed */
    unsigned nsubs;      /* JSON: topics subscribed */
    size_t tlen;
    char topic[]; /* raw: the topic of its path */
};

static struct {
    int mode;
    struct chat_opts chat;
    struct pubsub_opts ps;
    wsk_handlers next; /* the caller's open, close and error */
    char *token;
    size_t token_len;
    /* chat */
    long remaining; /* members still awaited before "ready"; grows again when one leaves */
    wsk_server *srv;
    struct ev_loop *ev;
    ev_timer ready;
} S;

void serve_chat_opts_init(struct chat_opts *co)
{
    memset(co, 0, sizeof *co);
    co->clients = 32;
    co->ready_delay_ms = 100;
}

void serve_pubsub_opts_init(struct pubsub_opts *po)
{
    memset(po, 0, sizeof *po);
    po->max_subscriptions = 100;
}

static int parse_count(const char *s, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (end == s || *end || errno || v > 1000000000ul || s[0] == '-') return -1;
    *out = (unsigned)v;
    return 0;
}

int serve_pubsub_option(int code, const char *arg, struct chat_opts *co, struct pubsub_opts *po)
{
    switch (code) {
    case OPT_CLIENTS:
        if (parse_count(arg, &co->clients) < 0 || !co->clients) break;
        return 1;
    case OPT_SELF: po->publish_to_self = 1; return 1;
    case OPT_TOKEN:
        if (!*arg) break;
        po->token = arg;
        return 1;
    case OPT_TOKEN_FILE: po->token_file = arg; return 1;
    case OPT_PRIVATE: po->private_topics = 1; return 1;
    case OPT_ORIGIN:
        if (po->norigins == SERVE_MAX_ORIGINS) break;
        po->origins[po->norigins++] = arg;
        return 1;
    case OPT_MAXSUBS:
        if (parse_count(arg, &po->max_subscriptions) < 0 || !po->max_subscriptions) break;
        return 1;
    default: return 0;
    }
    fprintf(stderr, "wsserve: invalid value for --%s: %s\n",
            serve_pubsub_longopts[code - SERVE_PUBSUB_OPT_BASE].name, arg ? arg : "");
    return -1;
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

static int topic_valid(const char *t, size_t n)
{
    if (!n || n > TOPIC_MAX) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)t[i]) && (!t[i] || !strchr(TOPIC_CHARS, t[i]))) return 0;
    return 1;
}

static const char bad_topic_msg[] = "topic names are 1 to 128 characters from A-Z a-z 0-9 and "
                                    "- _ . ~ : / @ + =";

/* Compares in time that depends only on the length of what was presented, so the time a
 * refusal takes tells nothing about the secret (not even its length). */
static int token_equal(const char *given, size_t n)
{
    unsigned diff = n != S.token_len;
    for (size_t i = 0; i < n; i++) diff |= (uint8_t)given[i] ^ (uint8_t)S.token[i % S.token_len];
    return diff == 0;
}

/* 1: the request shows the right token; 0: it shows none; -1: it shows a wrong one. */
static int token_check(const wsk_request *req)
{
    size_t n;
    const char *auth = wsk_request_header(req, "authorization", &n);
    if (auth && n > 7 && !strncasecmp(auth, "Bearer ", 7)) {
        auth += 7;
        n -= 7;
        while (n && *auth == ' ') auth++, n--;
        return token_equal(auth, n) ? 1 : -1;
    }
    char buf[TOKEN_MAX + 1];
    long q = wsk_request_query_param(req, "token", buf, sizeof buf);
    if (q < 0) return 0;
    if ((size_t)q >= sizeof buf) return -1;
    return token_equal(buf, (size_t)q) ? 1 : -1;
}

/* Browsers always send Origin; other clients usually do not, and are not what the allow list
 * guards against (a page on another site using a visitor's browser).  No list: all allowed. */
static int origin_allowed(const wsk_request *req)
{
    size_t n;
    const char *o = wsk_request_header(req, "origin", &n);
    if (!o || !S.ps.norigins) return 1;
    for (size_t i = 0; i < S.ps.norigins; i++) {
        const char *p = S.ps.origins[i];
        while (*p) {
            while (*p == ',' || *p == ' ') p++;
            size_t l = strcspn(p, ", ");
            if (l && l == n && !strncasecmp(p, o, n)) return 1;
            p += l;
        }
    }
    return 0;
}

static void log_refusal(const wsk_request *req, int status, const char *why)
{
    char addr[64];
    if (S.ps.verbose)
        fprintf(stderr, "wsserve: %s: refused with %d: %s\n",
                wsk_request_remote_address(req, addr, sizeof addr), status, why);
}

/* ----- chat ---------------------------------------------------------------------------------- */

static void chat_ready(struct ev_loop *ev, ev_timer *w, int revents)
{
    (void)ev;
    (void)w;
    (void)revents;
    long n = wsk_server_publish(S.srv, ROOM, 4, "ready", 5, WSK_OP_TEXT, 0);
    if (S.chat.verbose) fprintf(stderr, "wsserve: \"ready\" sent to %ld clients\n", n);
}

static int chat_upgrade(wsk_server *srv, const wsk_request *req, wsk_response *res)
{
    char raw[NAME_MAX_LEN + 1];
    long n = wsk_request_query_param(req, "name", raw, sizeof raw);
    size_t len = n > 0 ? ((size_t)n < sizeof raw ? (size_t)n : sizeof raw - 1) : 0;
    if (!len)
        len = (size_t)snprintf(raw, sizeof raw, "Client #%ld", (long)S.chat.clients - S.remaining);
    /* The name goes into text frames: keep it UTF-8 whatever the query held. */
    struct member *m = malloc(sizeof *m + 3 * len);
    if (!m) return 503;
    m->len = utf8_lossy((const uint8_t *)raw, len, m->name);
    wsk_response_set_data(res, m);
    if (!S.srv) {
        S.srv = srv;
        S.ev = wsk_loop_ev(wsk_server_loop(srv));
        ev_init(&S.ready, chat_ready);
    }
    return 0;
}

static void chat_open(wsk_ws *ws)
{
    struct member *m = wsk_ws_data(ws);
    if (wsk_subscribe(ws, ROOM, 4) < 0) {
        wsk_close(ws, WSK_CLOSE_INTERNAL, "out of memory", 13);
        return;
    }
    S.remaining--;
    if (S.chat.verbose)
        fprintf(stderr, "wsserve: %.*s connected (%ld remain)\n", (int)m->len, m->name,
                S.remaining);
    if (S.remaining == 0) {
        ev_timer_stop(S.ev, &S.ready);
        ev_timer_set(&S.ready, S.chat.ready_delay_ms / 1000.0, 0);
        ev_timer_start(S.ev, &S.ready);
    }
    if (S.next.open) S.next.open(ws);
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
    wsk_publish(ws, ROOM, 4, buf, n, WSK_OP_TEXT, 0);
    if (buf != stack) free(buf);
}

static void chat_close(wsk_ws *ws, unsigned code, const char *reason, size_t len)
{
    struct member *m = wsk_ws_data(ws);
    S.remaining++;
    if (S.chat.verbose)
        fprintf(stderr, "wsserve: %.*s left (%ld remain)\n", m ? (int)m->len : 0, m ? m->name : "",
                S.remaining);
    if (S.next.close) S.next.close(ws, code, reason, len);
    free(m);
    wsk_ws_set_data(ws, NULL);
}

static void chat_request(wsk_server *srv, const wsk_request *req, wsk_response *res)
{
    char body[256];
    (void)req;
    int n = snprintf(body, sizeof body,
                     "wsserve --chat: %zu of %u members connected.\n"
                     "Join with a WebSocket to ws://HOST:PORT/?name=NAME\n",
                     wsk_server_connections(srv), S.chat.clients);
    wsk_response_add_header(res, "Content-Type", "text/plain; charset=utf-8");
    wsk_response_append_body(res, body, (size_t)n);
}

int serve_chat_setup(wsk_server_opts *so, wsk_handlers *h, const struct chat_opts *co)
{
    S.mode = MODE_CHAT;
    S.chat = *co;
    S.remaining = co->clients;
    S.next = *h;
    so->publish_to_self = 1; /* the sender sees its own line, as in Bun's server */
    h->upgrade = chat_upgrade;
    h->open = chat_open;
    h->message = chat_message;
    h->close = chat_close;
    h->request = chat_request;
    return 0;
}

/* ----- broker -------------------------------------------------------------------------------- */

/* Publishes to raw subscribers of topic and, wrapped, to JSON ones; from NULL: the server.
 * Returns the receivers. */
static long broker_publish(wsk_server *srv, wsk_ws *from, const char *topic, size_t tlen,
                           const void *data, size_t len, int binary)
{
    wsk_opcode op = binary ? WSK_OP_BINARY : WSK_OP_TEXT;
    long total = 0, r;
    r = from ? wsk_publish(from, topic, tlen, data, len, op, 1)
             : wsk_server_publish(srv, topic, tlen, data, len, op, 1);
    if (r > 0) total += r;

    char jt[TOPIC_MAX + 1];
    jt[0] = '{';
    memcpy(jt + 1, topic, tlen);
    if (!wsk_server_subscribers(srv, jt, tlen + 1)) return total;
    size_t elen;
    char *env = jp_delivery(topic, tlen, data, len, binary, &elen);
    if (!env) return total;
    r = from ? wsk_publish(from, jt, tlen + 1, env, elen, WSK_OP_TEXT, 1)
             : wsk_server_publish(srv, jt, tlen + 1, env, elen, WSK_OP_TEXT, 1);
    if (r > 0) total += r;
    free(env);
    return total;
}

static int broker_upgrade(wsk_server *srv, const wsk_request *req, wsk_response *res)
{
    (void)srv;
    if (!origin_allowed(req)) {
        log_refusal(req, 403, "origin not allowed");
        wsk_response_append_body(res, "origin not allowed\n", 19);
        return 403;
    }
    int tok = S.token ? token_check(req) : 1;
    if (tok < 0 || (!tok && S.ps.private_topics)) {
        log_refusal(req, 401, tok < 0 ? "wrong token" : "no token");
        wsk_response_add_header(res, "WWW-Authenticate", "Bearer");
        wsk_response_append_body(res, "a valid token is required\n", 26);
        return 401;
    }
    size_t plen;
    const char *path = wsk_request_path(req, &plen);
    int json = plen <= 1;
    size_t tlen = json ? 0 : plen - 1;
    if (!json && !topic_valid(path + 1, tlen)) {
        log_refusal(req, 400, "invalid topic");
        wsk_response_append_body(res, bad_topic_msg, sizeof bad_topic_msg - 1);
        wsk_response_append_body(res, "\n", 1);
        return 400;
    }
    struct client *cl = calloc(1, sizeof *cl + tlen + 1);
    if (!cl) return 503;
    cl->json = (uint8_t)json;
    cl->may_publish = tok > 0;
    cl->tlen = tlen;
    if (tlen) memcpy(cl->topic, path + 1, tlen);
    wsk_response_set_data(res, cl);
    return 0;
}

static void broker_open(wsk_ws *ws)
{
    struct client *cl = wsk_ws_data(ws);
    if (!cl->json && wsk_subscribe(ws, cl->topic, cl->tlen) < 0) {
        wsk_close(ws, WSK_CLOSE_INTERNAL, "cannot subscribe", 16);
        return;
    }
    if (S.next.open) S.next.open(ws);
}

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
    if (len && topic[0] == '{') {
        lc->t[lc->n].name = topic + 1; /* valid until the socket unsubscribes */
        lc->t[lc->n].len = len - 1;
        lc->n++;
    }
}

/* subscribe / unsubscribe every topic of rq, all or nothing as far as names and limits go. */
static void json_subscribe(wsk_ws *ws, struct client *cl, const jp_request *rq)
{
    char jt[TOPIC_MAX + 1];
    size_t fresh = 0;
    jt[0] = '{';
    for (size_t i = 0; i < rq->ntopics; i++) {
        const struct jp_topic *t = &rq->topics[i];
        if (!topic_valid(t->name, t->len)) {
            char msg[sizeof bad_topic_msg + 160];
            snprintf(msg, sizeof msg, "\"%.128s\": %s", t->name, bad_topic_msg);
            send_error(ws, rq->id, JP_ETOPIC, msg);
            return;
        }
        memcpy(jt + 1, t->name, t->len);
        fresh += !wsk_ws_subscribed(ws, jt, t->len + 1);
    }
    if (rq->op == JP_SUBSCRIBE && cl->nsubs + fresh > S.ps.max_subscriptions) {
        char msg[96];
        snprintf(msg, sizeof msg, "at most %u topics per connection", S.ps.max_subscriptions);
        send_error(ws, rq->id, JP_ELIMIT, msg);
        return;
    }
    for (size_t i = 0; i < rq->ntopics; i++) {
        memcpy(jt + 1, rq->topics[i].name, rq->topics[i].len);
        if (rq->op == JP_SUBSCRIBE) {
            int r = wsk_subscribe(ws, jt, rq->topics[i].len + 1);
            if (r < 0) {
                send_error(ws, rq->id, JP_ENOMEM, "cannot subscribe");
                return;
            }
            cl->nsubs += (unsigned)r;
        } else {
            cl->nsubs -= (unsigned)wsk_unsubscribe(ws, jt, rq->topics[i].len + 1);
        }
    }
    size_t len;
    char *s = jp_ack_topics(rq->op, rq->id, rq->topics, rq->ntopics, cl->nsubs, &len);
    send_reply(ws, s, len);
}

static void json_request(wsk_ws *ws, struct client *cl, const void *data, size_t len)
{
    jp_request rq;
    int r = jp_parse(data, len, S.ps.max_subscriptions, &rq);
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
        if (!cl->may_publish) {
            send_error(ws, rq.id, JP_EFORBIDDEN, "publishing requires the token");
        } else if (!topic_valid(t->name, t->len)) {
            send_error(ws, rq.id, JP_ETOPIC, bad_topic_msg);
        } else if (!rq.binary && !wsk_utf8_valid(rq.data, rq.len)) {
            send_error(ws, rq.id, JP_EBADREQ, "\"data\" is not valid UTF-8");
        } else {
            long got =
                broker_publish(wsk_ws_server(ws), ws, t->name, t->len, rq.data, rq.len, rq.binary);
            s = jp_ack_publish(rq.id, t->name, t->len, got, &n);
            send_reply(ws, s, n);
        }
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
    broker_publish(wsk_ws_server(ws), ws, cl->topic, cl->tlen, data, len, op == WSK_OP_BINARY);
}

static void broker_close(wsk_ws *ws, unsigned code, const char *reason, size_t len)
{
    if (S.next.close) S.next.close(ws, code, reason, len);
    free(wsk_ws_data(ws));
    wsk_ws_set_data(ws, NULL);
}

static void http_json(wsk_response *res, int status, char *body, size_t len)
{
    wsk_response_set_status(res, status);
    wsk_response_add_header(res, "Content-Type", "application/json");
    if (body) {
        wsk_response_append_body(res, body, len);
        wsk_response_append_body(res, "\n", 1);
    }
    free(body);
}

static void http_error(wsk_response *res, int status, const char *code, const char *msg)
{
    size_t len;
    char *s = jp_http_error(code, msg, &len);
    http_json(res, status, s, len);
}

static const char broker_page[] =
    "wsserve --pubsub: a publish/subscribe broker (libwskit).\n"
    "  ws://HOST/TOPIC         subscribe to TOPIC; what you send is published to it\n"
    "  ws://HOST/              the JSON control protocol (see wsserve(1))\n"
    "  POST /publish/TOPIC     publish the request body: curl -d 'hello' "
    "http://HOST/publish/TOPIC\n";

static void broker_request(wsk_server *srv, const wsk_request *req, wsk_response *res)
{
    size_t plen, mlen, clen = 0, blen = 0;
    const char *path = wsk_request_path(req, &plen);
    const char *method = wsk_request_method(req, &mlen);
    static const char prefix[] = "/publish/";
    if (!origin_allowed(req)) {
        log_refusal(req, 403, "origin not allowed");
        http_error(res, 403, "forbidden", "origin not allowed");
        return;
    }
    if (plen < sizeof prefix - 1 || memcmp(path, prefix, sizeof prefix - 1)) {
        if (plen == 1 && ((mlen == 3 && !memcmp(method, "GET", 3)) ||
                          (mlen == 4 && !memcmp(method, "HEAD", 4)))) {
            wsk_response_add_header(res, "Content-Type", "text/plain; charset=utf-8");
            wsk_response_append_body(res, broker_page, sizeof broker_page - 1);
        } else {
            http_error(res, 404, "not_found",
                       "POST /publish/TOPIC publishes; ws://HOST/TOPIC "
                       "subscribes");
        }
        return;
    }
    if (mlen != 4 || memcmp(method, "POST", 4)) {
        wsk_response_add_header(res, "Allow", "POST");
        http_error(res, 405, "method_not_allowed", "publish with POST");
        return;
    }
    if (S.token && token_check(req) <= 0) {
        log_refusal(req, 401, "publish without a valid token");
        wsk_response_add_header(res, "WWW-Authenticate", "Bearer");
        http_error(res, 401, "unauthorized", "publishing requires the token");
        return;
    }
    const char *topic = path + sizeof prefix - 1;
    size_t tlen = plen - (sizeof prefix - 1);
    if (!topic_valid(topic, tlen)) {
        http_error(res, 400, "bad_topic", bad_topic_msg);
        return;
    }
    const void *body = wsk_request_body(req, &blen);
    const char *ct = wsk_request_header(req, "content-type", &clen);
    char flag[8];
    int binary = (ct && clen >= 24 && !strncasecmp(ct, "application/octet-stream", 24)) ||
                 wsk_request_query_param(req, "binary", flag, sizeof flag) >= 0;
    if (!binary && !wsk_utf8_valid(body, blen)) {
        http_error(res, 400, "bad_request",
                   "the body is not UTF-8 text: send binary with Content-Type: "
                   "application/octet-stream");
        return;
    }
    long got = broker_publish(srv, NULL, topic, tlen, body ? body : "", blen, binary);
    size_t len;
    char *s = jp_http_published(topic, tlen, got, &len);
    http_json(res, s ? 200 : 500, s, len);
}

static int read_token_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "wsserve: --token-file %s: %s\n", path, strerror(errno));
        return -1;
    }
    char line[TOKEN_MAX + 2];
    int ok = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    size_t n = ok ? strcspn(line, "\r\n") : 0;
    if (!n || n > TOKEN_MAX) {
        fprintf(stderr,
                "wsserve: --token-file %s: the first line must hold the token "
                "(1 to %d bytes)\n",
                path, TOKEN_MAX);
        return -1;
    }
    S.token = strndup(line, n);
    memset(line, 0, sizeof line);
    return S.token ? 0 : -1;
}

int serve_pubsub_setup(wsk_server_opts *so, wsk_handlers *h, const struct pubsub_opts *po)
{
    S.mode = MODE_PUBSUB;
    S.ps = *po;
    S.next = *h;
    if (po->token_file && po->token) {
        fprintf(stderr, "wsserve: give --token or --token-file, not both\n");
        return -1;
    }
    if (po->token_file && read_token_file(po->token_file) < 0) return -1;
    if (po->token) {
        if (strlen(po->token) > TOKEN_MAX) {
            fprintf(stderr, "wsserve: --token: at most %d bytes\n", TOKEN_MAX);
            return -1;
        }
        S.token = strdup(po->token);
        if (!S.token) return -1;
    }
    if (po->private_topics && !S.token) {
        fprintf(stderr, "wsserve: --private needs --token or --token-file\n");
        return -1;
    }
    S.token_len = S.token ? strlen(S.token) : 0;
    so->publish_to_self = po->publish_to_self;
    h->upgrade = broker_upgrade;
    h->open = broker_open;
    h->message = broker_message;
    h->close = broker_close;
    h->request = broker_request;
    return 0;
}

void serve_pubsub_cleanup(void)
{
    if (S.ev) ev_timer_stop(S.ev, &S.ready);
    if (S.token) {
        memset(S.token, 0, S.token_len);
        free(S.token);
    }
    memset(&S, 0, sizeof S);
}
