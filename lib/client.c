/* The client: a connection by URL and the client side of the opening handshake (RFC 6455 4.1).
 *
 * wsk_connect returns at once; the work runs on the loop, one step per event:
 *   start    a 0 s timer, so that no handler runs inside wsk_connect;
 *   resolve  the name, on a thread (io_resolve.c: getaddrinfo blocks), which wakes the loop;
 *            an address resolves at once;
 *   connect  a socket per address in turn (wsk_tcp_connect), without blocking;
 *            EV_WRITE reports the outcome; a refused address falls through to the next one;
 *   proxy    with an HTTP proxy: CONNECT host:port, then its 2xx answer;
 *   upgrade  TLS for wss://, the upgrade request, then the response head (wsk_client_http):
 *            a verified 101 opens the socket (wsk_conn_open), a redirect starts over at the
 *            Location, anything else is a refusal whose status, headers and body go to the
 *            error handler.
 * One ev_timer carries the connect deadline (DNS + TCP + proxy + TLS + handshake); another runs
 * wsk_ctx_sweep once a second for the idle and closing deadlines of the open socket.
 *
 * A client is one connection with a wsk_ctx of its own (the first member of struct wsk_client),
 * so conn.c, msg_assemble.c and send_msg.c serve it unchanged: ctx->lim carries the limits and
 * ctx->role makes them mask what we send and refuse masked frames.  While it connects, the
 * socket's own ev_io watcher runs this file's callback instead of conn.c's (there is nothing to
 * read yet), so connecting costs no extra watcher.  The struct wsk_ws lives from wsk_connect to
 * the end, across redirects: only its fd changes. */
#include "io_resolve.h"
#include "io_tls.h"
#include "pmd.h"
#include "pmd_conn.h"
#include "io_transport.h"
#include "msg_handshake.h"
#include "parse_http.h"
#include "parse_url.h"
#include "url_ref.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define REQUEST_MAX (16 * 1024) /* the upgrade request, custom headers included */
#define BODY_MAX    (64 * 1024) /* body of a refused upgrade kept for the error handler */
#define BODY_WAIT   2.0         /* seconds that body may take after the head */
#define HOST_MAX    256         /* a DNS name is at most 253 bytes */
#define OFFER_MAX   256         /* Sec-WebSocket-Extensions value we offer (WSK_PMD_HEADER_MAX) */

enum phase {
    PH_START,   /* the deferred start: the deadline timer fires at 0 s */
    PH_RESOLVE, /* the name is being resolved on a thread (io_resolve.c) */
    PH_CONNECT, /* TCP connect in progress */
    PH_PROXY,   /* CONNECT sent to the proxy, waiting for its answer */
    PH_UPGRADE, /* upgrade request sent, waiting for the response head */
    PH_BODY,    /* a refusal arrived; reading its body */
    PH_OPEN,    /* 101 verified: conn.c owns the socket */
    PH_FAILED,  /* the failure went to the handlers */
};

typedef struct wsk_client {
    wsk_ctx ctx; /* first: the ctx of a client socket is its wsk_client */
    struct wsk_ws *ws;
    wsk_client_opts o; /* the caller's options, strings copied after the struct */
    ev_timer tick;     /* wsk_ctx_sweep once a second */
    ev_timer deadline; /* PH_START: the start; afterwards: the connect timeout */
    void (*conn_cb)(struct ev_loop *, ev_io *, int); /* conn.c's, restored once connected */
    wsk_lookup *lookup;                              /* PH_RESOLVE */
    struct addrinfo *addrs, *next_addr;
    int connect_errno; /* of the last address tried */
    char *url;         /* the URL connected to (the last redirect's), malloc'd */
    wsk_url u;         /* its parts, pointing into url */
    wsk_url proxy;     /* o.proxy's parts */
    char host[HOST_MAX];
    int same_origin; /* still on the first URL's host and port: o.auth may be sent */
    unsigned redirects;
    uint8_t phase;
    uint8_t reported; /* error and close handlers ran for a failure */
    uint8_t chunked;  /* PH_BODY: the body is chunked (dec decodes it) */
    int status;       /* status of the last response head, 0 before one */
    wsk_http_chunked dec;
    uint64_t body_need; /* PH_BODY, not chunked: bytes to come (UINT64_MAX: until EOF) */
    size_t head_len;    /* PH_BODY: the refusal's head, first in the cold buffer, its body after */
    char key[25];       /* Sec-WebSocket-Key of the request in flight */
    char *request;      /* that request as sent, until the open handler returns */
    size_t request_len;
    /* The response, while the open or error handler runs (NULL otherwise). */
    const wsk_http_response *res;
    const char *res_head;
    size_t res_head_len;
    const uint8_t *body;
    size_t body_len;
    wsk_timing t;
    const char *ptrs[]; /* o.headers and o.protocols, then the bytes of every string */
} wsk_client;

static wsk_client *client_of(const struct wsk_ws *c)
{
    return (wsk_client *)c->ctx;
}

static wsk_client *client_or_null(const wsk_ws *ws)
{
    return ws && ws->ctx->role == WSK_ROLE_CLIENT ? client_of(ws) : NULL;
}

void wsk_client_opts_init(wsk_client_opts *o)
{
    memset(o, 0, sizeof *o);
    o->connect_timeout = 10;
    o->max_redirects = 10;
    o->max_payload = 16u << 20;
    o->backpressure_limit = 1u << 20;
    o->close_timeout = 4;
    o->max_header = 16 * 1024;
}

/* ----- reporting ------------------------------------------------------------------------------ */

/* The URL without user info, for log lines: credentials never reach a log. */
static const char *where(const wsk_client *cl, char *buf, size_t cap)
{
    const wsk_url *u = &cl->u;
    int v6 = u->ipv6;
    snprintf(buf, cap, "%s://%s%.*s%s:%u%s%.*s", u->secure ? "wss" : "ws", v6 ? "[" : "",
             (int)u->host_len, u->host, v6 ? "]" : "", u->port, u->path[0] == '/' ? "" : "/",
             (int)(u->path_len < 200 ? u->path_len : 200), u->path);
    return buf;
}

/* Seconds since the attempt began: above 0, since 0 means "not reached" in wsk_client_timing. */
static double elapsed(const wsk_client *cl, double now)
{
    double d = now - cl->t.start;
    return d > 0 ? d : 1e-9;
}

/* The end of the TLS handshake, once the transport has one. */
static void tls_timing(wsk_client *cl)
{
    double end = cl->t.tls < 0 ? wsk_tls_handshake_end(cl->ws) : 0;
    if (end > 0) cl->t.tls = elapsed(cl, end);
}

/* The connection failed before it opened: the error handler, then close with 1006, once. */
static void report(wsk_client *cl, int err, const char *msg)
{
    struct wsk_ws *c = cl->ws;
    char w[HOST_MAX + 224];
    if (cl->reported) return;
    cl->reported = 1;
    /* A request still wholly queued never left (TLS failed first): it is not shown as sent. */
    if (cl->phase == PH_UPGRADE && cl->request && c->q.bytes >= cl->request_len) {
        free(cl->request);
        cl->request = NULL;
    }
    tls_timing(cl);
    cl->phase = PH_FAILED;
    ev_timer_stop(cl->ctx.loop->ev, &cl->deadline);
    /* The error handler says it; the log line repeats it only for debugging. */
    wsk_log(cl->ctx.loop, WSK_LOG_DEBUG, "%s: %s", where(cl, w, sizeof w), msg);
    if (cl->ctx.h.error) cl->ctx.h.error(c, err, msg);
    if (cl->ctx.h.close) cl->ctx.h.close(c, WSK_CLOSE_ABNORMAL, msg, strlen(msg));
}

static void fail(wsk_client *cl, int err, const char *msg)
{
    report(cl, err, msg);
    wsk_conn_end(cl->ws, WSK_CLOSE_ABNORMAL, msg);
}

/* ----- options and URLs ----------------------------------------------------------------------- */

static size_t str_size(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

static const char *str_copy(char **dst, const char *s)
{
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *r = memcpy(*dst, s, n);
    *dst += n;
    return r;
}

/* One allocation holds the client, the pointer arrays and every string of the options, so the
 * caller's strings may go away as soon as wsk_connect returns.  A Host option becomes one more
 * custom header, which the request builder lets replace the generated one. */
static wsk_client *client_new(const wsk_client_opts *opts)
{
    const wsk_client_opts *o = opts;
    size_t nptr = o->nheaders + (o->host ? 1 : 0) + o->nprotocols, bytes = 0;
    for (size_t i = 0; i < o->nheaders; ++i) bytes += str_size(o->headers[i]);
    for (size_t i = 0; i < o->nprotocols; ++i) bytes += str_size(o->protocols[i]);
    bytes += o->host ? strlen("Host: ") + strlen(o->host) + 1 : 0;
    bytes += str_size(o->origin) + str_size(o->auth) + str_size(o->proxy) + str_size(o->tls_ca) +
             str_size(o->tls_cert) + str_size(o->tls_key) + str_size(o->tls_key_password);
    wsk_client *cl = calloc(1, sizeof *cl + nptr * sizeof(char *) + bytes);
    if (!cl) return NULL;
    cl->o = *o;
    const char **hdrs = cl->ptrs, **protos = cl->ptrs + o->nheaders + (o->host ? 1 : 0);
    char *s = (char *)(cl->ptrs + nptr);
    for (size_t i = 0; i < o->nheaders; ++i)
        hdrs[i] = str_copy(&s, o->headers[i] ? o->headers[i] : "");
    if (o->host) {
        hdrs[o->nheaders] = s;
        s += sprintf(s, "Host: %s", o->host) + 1;
    }
    for (size_t i = 0; i < o->nprotocols; ++i)
        protos[i] = str_copy(&s, o->protocols[i] ? o->protocols[i] : "");
    cl->o.headers = hdrs;
    cl->o.nheaders = o->nheaders + (o->host ? 1 : 0);
    cl->o.protocols = protos;
    cl->o.origin = str_copy(&s, o->origin);
    cl->o.auth = str_copy(&s, o->auth);
    cl->o.host = NULL; /* now one of the headers */
    cl->o.proxy = str_copy(&s, o->proxy);
    cl->o.tls_ca = str_copy(&s, o->tls_ca);
    cl->o.tls_cert = str_copy(&s, o->tls_cert);
    cl->o.tls_key = str_copy(&s, o->tls_key);
    cl->o.tls_key_password = str_copy(&s, o->tls_key_password);
    return cl;
}

/* Makes s[0..n) the URL to connect to (taking a copy).  0 or WSK_ERR_URL / WSK_ERR_NOMEM. */
static int set_url(wsk_client *cl, const char *s, size_t n)
{
    wsk_url u;
    char *copy = malloc(n + 1);
    if (!copy) return WSK_ERR_NOMEM;
    memcpy(copy, s, n);
    copy[n] = '\0';
    if (wsk_url_parse(copy, n, &u) < 0 || u.host_len >= HOST_MAX) {
        free(copy);
        return WSK_ERR_URL;
    }
    free(cl->url);
    cl->url = copy;
    cl->u = u;
    memcpy(cl->host, u.host, u.host_len);
    cl->host[u.host_len] = '\0';
    return 0;
}

/* The Sec-WebSocket-Extensions value to offer (RFC 7692 5) for ctx->lim.compress, "" for none;
 * returns its length. */
static int offer_extensions(const wsk_client *cl, char *out, size_t cap)
{
    int n = wsk_pmd_conn_offer(&cl->ctx, out, cap);
    if (n <= 0) out[0] = '\0';
    return n;
}

/* Writes the upgrade request (RFC 6455 4.1) with `key` into out.  Its length, or WSK_ERR_INVAL
 * (a header with CR or LF, a protocol that is not a token, too large) or WSK_ERR_NOMEM. */
static int build_request(const wsk_client *cl, char *out, size_t cap, const char *key)
{
    const wsk_client_opts *o = &cl->o;
    char ext[OFFER_MAX];
    const char *auth = cl->same_origin ? o->auth : NULL;
    char *userinfo = NULL;
    /* Basic credentials: the option, else the URL's user info (RFC 7617; percent-decoded,
     * RFC 3986 3.2.1).  The option goes only to the host it was given for. */
    if (!auth && cl->u.userinfo) {
        if (!(userinfo = malloc(cl->u.userinfo_len + 1))) return WSK_ERR_NOMEM;
        wsk_url_decode(cl->u.userinfo, cl->u.userinfo_len, 0, userinfo, cl->u.userinfo_len + 1);
        auth = userinfo;
    }
    /* The path runs to the end of the URL (a fragment is refused), so it is NUL-terminated. */
    int n = wsk_handshake_client_request(out, cap, cl->host, cl->u.port, cl->u.secure, cl->u.path,
                                         key, o->protocols, o->nprotocols, o->origin, auth,
                                         offer_extensions(cl, ext, sizeof ext) > 0 ? ext : NULL,
                                         o->headers, o->nheaders);
    free(userinfo);
    return n;
}

/* ----- the steps of a connection -------------------------------------------------------------- */

static void on_connect(struct ev_loop *ev, ev_io *w, int revents);

static void arm_deadline(wsk_client *cl, double after)
{
    struct ev_loop *ev = cl->ctx.loop->ev;
    ev_timer_stop(ev, &cl->deadline);
    ev_timer_set(&cl->deadline, after, 0);
    ev_timer_start(ev, &cl->deadline);
}

static int queue_bytes(struct wsk_ws *c, const void *p, size_t n)
{
    uint8_t *dst = wsk_queue_reserve(c, n);
    if (!dst) return WSK_ERR_NOMEM;
    memcpy(dst, p, n);
    wsk_queue_commit(c, n);
    wsk_loop_schedule(c->ctx->loop, c);
    return 0;
}

/* Drops a head kept across reads. */
static void drop_head(struct wsk_ws *c)
{
    if (!c->cold) return;
    wsk_dbuf_free(&c->cold->head);
    c->cold->head.max = c->ctx->lim.max_header;
    c->cold->scanned = 0;
    wsk_conn_cold_trim(c);
}

static int start_tls(wsk_client *cl)
{
    char why[400];
    if (!cl->ctx.tls && wsk_tls_client_config(&cl->ctx, &cl->o, why, sizeof why) < 0) {
        fail(cl, WSK_ERR_TLS, why);
        return -1;
    }
    int r = wsk_tls_connect(cl->ws, cl->host);
    if (r < 0) {
        fail(cl, r == WSK_ERR_CERT ? r : WSK_ERR_TLS, "TLS session could not start");
        return -1;
    }
    if (cl->o.tls_session) {
        char server[300];
        snprintf(server, sizeof server, "%s:%u", cl->host, cl->u.port);
        wsk_tls_session_use(cl->ws, cl->o.tls_session, server);
    }
    /* The handshake runs inside the transport's reads and writes; its end is read from the
     * transport once the server has answered the upgrade. */
    cl->t.tls = -1;
    return 0;
}

static void send_upgrade(wsk_client *cl)
{
    struct wsk_ws *c = cl->ws;
    if (cl->u.secure && start_tls(cl) < 0) return;
    if (wsk_handshake_client_key(cl->key) < 0) {
        fail(cl, WSK_ERR_IO, "no random bytes for Sec-WebSocket-Key");
        return;
    }
    free(cl->request);
    cl->request = malloc(REQUEST_MAX);
    int n = cl->request ? build_request(cl, cl->request, REQUEST_MAX, cl->key) : WSK_ERR_NOMEM;
    if (n < 0 || queue_bytes(c, cl->request, (size_t)n) < 0) {
        fail(cl, n == WSK_ERR_INVAL ? n : WSK_ERR_NOMEM,
             n == WSK_ERR_INVAL ? "upgrade request too large" : "out of memory");
        return;
    }
    cl->request_len = (size_t)n;
    cl->phase = PH_UPGRADE;
    c->stamp = (uint32_t)ev_now(cl->ctx.loop->ev);
}

/* RFC 9110 9.3.6: a tunnel through an HTTP proxy, with Basic credentials (RFC 7617) from the
 * proxy URL, of any length. */
static void send_connect(wsk_client *cl)
{
    const wsk_url *p = &cl->proxy;
    char hostport[HOST_MAX + 16];
    int v6 = cl->u.ipv6;
    snprintf(hostport, sizeof hostport, "%s%s%s:%u", v6 ? "[" : "", cl->host, v6 ? "]" : "",
             cl->u.port);
    size_t ulen = p->userinfo ? p->userinfo_len : 0, b64 = WSK_BASE64_SIZE(ulen), olen = 0;
    size_t cap = 2 * sizeof hostport + b64 + 96;
    char *plain = malloc(ulen + 1), *auth = malloc(b64), *req = malloc(cap);
    int n = -1;
    if (plain && auth && req) {
        if (ulen) {
            size_t plen = wsk_url_decode(p->userinfo, ulen, 0, plain, ulen + 1);
            olen = wsk_base64_encode(plain, plen, auth);
        }
        auth[olen] = '\0';
        n = snprintf(req, cap, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s%s%s\r\n", hostport, hostport,
                     olen ? "Proxy-Authorization: Basic " : "", auth, olen ? "\r\n" : "");
    }
    int r = n < 0 || (size_t)n >= cap ? WSK_ERR_NOMEM : queue_bytes(cl->ws, req, (size_t)n);
    free(plain);
    free(auth);
    free(req);
    if (r < 0) {
        fail(cl, WSK_ERR_NOMEM, "out of memory");
        return;
    }
    cl->phase = PH_PROXY;
}

static void connected(wsk_client *cl)
{
    struct wsk_ws *c = cl->ws;
    struct ev_loop *ev = cl->ctx.loop->ev;
    char addr[64];
    cl->t.connect = elapsed(cl, ev_time());
    /* Progress for verbose callers (wscat -v), in the order it happens. */
    wsk_log(cl->ctx.loop, WSK_LOG_INFO, "connected to %s%s", cl->o.proxy ? "proxy " : "",
            wsk_addr_string(c->io.fd, addr, sizeof addr));
    freeaddrinfo(cl->addrs);
    cl->addrs = cl->next_addr = NULL;
    ev_io_stop(ev, &c->io);
    ev_set_cb(&c->io, cl->conn_cb);
    ev_io_set(&c->io, c->io.fd, EV_READ);
    ev_io_start(ev, &c->io);
    if (cl->o.proxy)
        send_connect(cl);
    else
        send_upgrade(cl);
}

/* The host connected to first: the proxy's, when there is one. */
static const wsk_url *first_hop(const wsk_client *cl)
{
    return cl->o.proxy ? &cl->proxy : &cl->u;
}

/* Connects to the next address of the name; the socket replaces the connection's fd. */
static void try_connect(wsk_client *cl)
{
    struct wsk_ws *c = cl->ws;
    struct ev_loop *ev = cl->ctx.loop->ev;
    for (struct addrinfo *ai; (ai = cl->next_addr);) {
        int e;
        cl->next_addr = ai->ai_next;
        int fd = wsk_tcp_connect(ai->ai_addr, ai->ai_addrlen, NULL, 0, &e);
        if (fd < 0) {
            cl->connect_errno = e;
            continue;
        }
        ev_io_stop(ev, &c->io);
        close(c->io.fd);
        ev_set_cb(&c->io, on_connect);
        ev_io_set(&c->io, fd, EV_WRITE);
        if (e == 0)
            connected(cl);
        else
            ev_io_start(ev, &c->io);
        return;
    }
    const wsk_url *to = first_hop(cl);
    char msg[HOST_MAX + 128];
    snprintf(msg, sizeof msg, "cannot connect to %s%.*s port %u: %s", cl->o.proxy ? "proxy " : "",
             (int)to->host_len, to->host, to->port, strerror(cl->connect_errno));
    fail(cl, WSK_ERR_CONNECT, msg);
}

static void on_connect(struct ev_loop *ev, ev_io *w, int revents)
{
    wsk_client *cl = client_of((struct wsk_ws *)w);
    int e = 0;
    socklen_t len = sizeof e;
    (void)ev;
    (void)revents;
    if (getsockopt(w->fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0) e = errno;
    if (e == EINPROGRESS || e == EALREADY) return;
    if (e) {
        cl->connect_errno = e;
        try_connect(cl);
        return;
    }
    connected(cl);
}

/* The name resolved: connect to its addresses in turn. */
static void resolved(void *arg, struct addrinfo *res, int r, int sys_err)
{
    wsk_client *cl = arg;
    const wsk_url *to = first_hop(cl);
    char msg[HOST_MAX + 96];
    cl->lookup = NULL;
    if (cl->phase != PH_RESOLVE || cl->ws->state == WSK_ST_DEAD) {
        /* Terminated while the thread worked; the socket is freed at the end of this turn. */
        if (res) freeaddrinfo(res);
        return;
    }
    cl->t.dns = elapsed(cl, ev_time());
    if (r != 0) {
        snprintf(msg, sizeof msg, "cannot resolve %.*s: %s", (int)to->host_len, to->host,
                 r == EAI_SYSTEM ? strerror(sys_err) : gai_strerror(r));
        fail(cl, WSK_ERR_DNS, msg);
        return;
    }
    cl->addrs = cl->next_addr = res;
    cl->connect_errno = ECONNREFUSED;
    cl->phase = PH_CONNECT;
    try_connect(cl);
}

/* Resolves the name (of the proxy, when there is one) without blocking the loop, then
 * connects.  The connect timeout counts from here, DNS included. */
static void begin_attempt(wsk_client *cl)
{
    const wsk_url *to = first_hop(cl);
    char host[HOST_MAX], port[8];
    struct addrinfo *res;
    int r;

    memset(&cl->t, 0, sizeof cl->t);
    cl->t.start = ev_time();
    cl->t.redirects = cl->redirects;
    cl->phase = PH_RESOLVE;
    if (cl->o.connect_timeout > 0) arm_deadline(cl, cl->o.connect_timeout);
    memcpy(host, to->host, to->host_len);
    host[to->host_len] = '\0';
    snprintf(port, sizeof port, "%u", to->port);
    cl->lookup = wsk_lookup_start(cl->ctx.loop->ev, host, port, resolved, cl, &res, &r);
    if (!cl->lookup) resolved(cl, res, r, errno); /* an address, or no thread */
}

static void on_deadline(struct ev_loop *ev, ev_timer *w, int revents)
{
    wsk_client *cl = w->data;
    static const char *const what[] = {
        [PH_CONNECT] = "connecting timed out",
        [PH_PROXY] = "no answer from the proxy",
        [PH_UPGRADE] = "no response to the upgrade request",
    };
    char msg[HOST_MAX + 96];
    const wsk_url *to = first_hop(cl);
    (void)ev;
    (void)revents;
    switch (cl->phase) {
    case PH_START: begin_attempt(cl); break;
    case PH_RESOLVE:
        /* The thread cannot be stopped inside getaddrinfo; it is left to finish alone. */
        wsk_lookup_cancel(cl->lookup);
        cl->lookup = NULL;
        snprintf(msg, sizeof msg, "resolving %.*s timed out after %us", (int)to->host_len, to->host,
                 cl->o.connect_timeout);
        fail(cl, WSK_ERR_TIMEOUT, msg);
        break;
    case PH_CONNECT:
    case PH_PROXY:
    case PH_UPGRADE:
        snprintf(msg, sizeof msg, "%s after %us", what[cl->phase], cl->o.connect_timeout);
        fail(cl, WSK_ERR_TIMEOUT, msg);
        break;
    case PH_BODY:
        /* The refusal is reported with as much of its body as arrived. */
        wsk_client_failed(cl->ws, WSK_ERR_TIMEOUT, "the refusal's body did not end");
        wsk_conn_end(cl->ws, WSK_CLOSE_ABNORMAL, NULL);
        break;
    default: break;
    }
}

static void on_tick(struct ev_loop *ev, ev_timer *w, int revents)
{
    (void)ev;
    (void)revents;
    wsk_ctx_sweep(w->data);
}

/* The ctx of a client: the limits conn.c and the send path read, from the client's options. */
static void ctx_init(wsk_ctx *ctx, wsk_loop *loop, const wsk_client_opts *o, const wsk_handlers *h)
{
    wsk_limits *l = &ctx->lim;
    ctx->loop = loop;
    ctx->role = WSK_ROLE_CLIENT;
    if (h) ctx->h = *h;
    l->max_payload = o->max_payload ? o->max_payload : 16u << 20;
    l->max_header = o->max_header ? o->max_header : 16 * 1024;
    l->backpressure_limit = o->backpressure_limit ? o->backpressure_limit : 1u << 20;
    l->idle_timeout = o->idle_timeout;
    l->send_pings = o->send_pings;
    /* The connect deadline is this file's timer, to the millisecond: the sweep's second-grained
     * handshake deadline stays off (0). */
    l->close_timeout = o->close_timeout ? o->close_timeout : 1;
    l->compress = o->compress;
    l->decompress = o->compress;
    l->compress_threshold = WSK_COMPRESS_THRESHOLD;
}

/* Checks what the caller controls: the URL, the proxy URL, and that the request can be built
 * (no CR or LF in a header, protocols that are tokens).  0, WSK_ERR_URL or WSK_ERR_INVAL. */
static int check_args(wsk_client *cl, const char *url)
{
    if (!wsk_pmd_mode_valid(cl->o.compress)) return WSK_ERR_INVAL;
    int r = set_url(cl, url, strlen(url));
    if (r < 0) return r;
    /* An https proxy would need TLS inside TLS; only http:// proxies are supported. */
    if (cl->o.proxy && (wsk_url_parse(cl->o.proxy, strlen(cl->o.proxy), &cl->proxy) < 0 ||
                        cl->proxy.secure || cl->proxy.host_len >= HOST_MAX))
        return WSK_ERR_URL;
    char *probe = malloc(REQUEST_MAX);
    if (!probe) return WSK_ERR_NOMEM;
    r = build_request(cl, probe, REQUEST_MAX, "AAAAAAAAAAAAAAAAAAAAAA==");
    free(probe);
    return r < 0 ? r : 0;
}

wsk_ws *wsk_connect(wsk_loop *loop, const char *url, const wsk_client_opts *opts,
                    const wsk_handlers *h, void *user, int *err)
{
    wsk_client_opts defaults;
    int dummy;
    if (!err) err = &dummy;
    if (!opts) {
        wsk_client_opts_init(&defaults);
        opts = &defaults;
    }
    if (!loop || !url) {
        *err = WSK_ERR_INVAL;
        return NULL;
    }
    wsk_client *cl = client_new(opts);
    if (!cl) {
        *err = WSK_ERR_NOMEM;
        return NULL;
    }
    cl->same_origin = 1;
    ctx_init(&cl->ctx, loop, opts, h);
    int r = check_args(cl, url);
    /* The socket exists from the start so the wsk_ws has a valid fd for libev; it is replaced
     * by one of the right family once the name is resolved. */
    int fd = r ? -1 : socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (!r && fd < 0) r = WSK_ERR_IO;
    struct wsk_ws *c = r ? NULL : wsk_conn_new(&cl->ctx, fd);
    if (!r && !c) r = WSK_ERR_NOMEM;
    if (r) {
        if (fd >= 0) close(fd);
        free(cl->url);
        free(cl);
        *err = r;
        return NULL;
    }
    cl->ws = c;
    c->user = user;
    ev_io_stop(loop->ev, &c->io);
    cl->conn_cb = ev_cb(&c->io);
    ev_set_cb(&c->io, on_connect);
    ev_timer_init(&cl->tick, on_tick, 1, 1);
    cl->tick.data = &cl->ctx;
    ev_timer_start(loop->ev, &cl->tick);
    ev_unref(loop->ev); /* deadlines alone do not keep the loop running */
    ev_init(&cl->deadline, on_deadline);
    cl->deadline.data = cl;
    arm_deadline(cl, 0);
    *err = 0;
    return c;
}

/* ----- the response --------------------------------------------------------------------------- */

static int is_redirect(int status)
{
    return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

/* A redirect the caller asked to follow: a new connection to the Location, on the same socket
 * object. */
static void follow(wsk_client *cl, const wsk_http_response *res)
{
    struct wsk_ws *c = cl->ws;
    size_t from = 0;
    char msg[160];
    const wsk_http_header *loc = wsk_http_find(res->headers, res->nheaders, "location", &from);
    if (!loc || !loc->value_len) {
        fail(cl, WSK_ERR_HANDSHAKE, "redirect without a Location");
        return;
    }
    if (cl->redirects >= cl->o.max_redirects) {
        snprintf(msg, sizeof msg, "too many redirects (more than %u)", cl->o.max_redirects);
        fail(cl, WSK_ERR_HANDSHAKE, msg);
        return;
    }
    char *next = wsk_url_resolve_ref(&cl->u, cl->host, loc->value, loc->value_len);
    char old_host[HOST_MAX], w[HOST_MAX + 224];
    unsigned old_port = cl->u.port;
    int old_secure = cl->u.secure;
    memcpy(old_host, cl->host, sizeof old_host);
    int r = next ? set_url(cl, next, strlen(next)) : WSK_ERR_NOMEM;
    free(next);
    if (r < 0) {
        snprintf(msg, sizeof msg, "%s: %.*s",
                 r == WSK_ERR_URL ? "invalid redirect" : "out of memory",
                 (int)(loc->value_len < 100 ? loc->value_len : 100), loc->value);
        fail(cl, r == WSK_ERR_URL ? WSK_ERR_HANDSHAKE : r, msg);
        return;
    }
    /* Credentials given for one host are not handed to another (as curl does). */
    if (old_port != cl->u.port || old_secure != cl->u.secure || strcasecmp(old_host, cl->host))
        cl->same_origin = 0;
    cl->redirects++;
    wsk_log(cl->ctx.loop, WSK_LOG_INFO, "%d redirect to %s", res->status, where(cl, w, sizeof w));
    ev_io_stop(cl->ctx.loop->ev, &c->io);
    wsk_io_release(c);
    c->flags &= (uint16_t) ~(WSK_F_TLS | WSK_F_WANT_WRITE | WSK_F_END_AFTER_FLUSH |
                             WSK_F_BACKPRESSURE | WSK_F_OVERFLOW);
    wsk_queue_clear(c);
    drop_head(c);
    shutdown(c->io.fd, SHUT_RDWR); /* closed when the next socket replaces it */
    free(cl->request);
    cl->request = NULL;
    cl->status = 0;
    cl->res = NULL;
    cl->phase = PH_START;
    arm_deadline(cl, 0);
}

/* A response other than a 101 we accept: reported with its status, headers and body. */
static void refused(wsk_client *cl, const wsk_http_response *res, uint8_t *body, size_t n)
{
    char msg[256];
    size_t from = 0;
    const wsk_http_header *loc = wsk_http_find(res->headers, res->nheaders, "location", &from);
    int rl = (int)(res->reason_len < 64 ? res->reason_len : 64);
    int k = snprintf(msg, sizeof msg, "server answered %d%s%.*s instead of 101 Switching Protocols",
                     res->status, rl ? " " : "", rl, res->reason);
    if (loc && is_redirect(res->status))
        snprintf(msg + k, sizeof msg - (size_t)k, " (Location: %.*s)",
                 (int)(loc->value_len < 100 ? loc->value_len : 100), loc->value);
    cl->body = body;
    cl->body_len = n;
    report(cl, WSK_ERR_HANDSHAKE, msg);
    cl->body = NULL;
    cl->body_len = 0;
}

/* Reports the refusal kept in the cold buffer: its head, then as much of its body as came.  0
 * when there is none. */
static int refused_kept(wsk_client *cl)
{
    wsk_cold *k = cl->ws->cold;
    wsk_http_response res;
    size_t scanned = 0;
    if (cl->phase != PH_BODY || !k ||
        wsk_http_parse_response((const char *)k->head.p, cl->head_len, &scanned, &res) <= 0)
        return 0;
    cl->res = &res;
    cl->res_head = (const char *)k->head.p;
    cl->res_head_len = cl->head_len;
    refused(cl, &res, k->head.p + cl->head_len, k->head.len - cl->head_len);
    cl->res = NULL;
    cl->res_head = NULL;
    return 1;
}

/* How the body of a refusal is framed (RFC 9112 6.3): chunked, or body_need bytes. */
static void body_framing(wsk_client *cl, const wsk_http_response *res)
{
    size_t from = 0;
    uint64_t len;
    int st = res->status;
    memset(&cl->dec, 0, sizeof cl->dec);
    cl->chunked = 0;
    cl->body_need = UINT64_MAX;
    if (st / 100 == 1 || st == 204 || st == 304) {
        cl->body_need = 0;
        return;
    }
    const wsk_http_header *te =
        wsk_http_find(res->headers, res->nheaders, "transfer-encoding", &from);
    if (te)
        cl->chunked = (uint8_t)wsk_http_has_token(te->value, te->value_len, "chunked");
    else if (wsk_http_content_length(res->headers, res->nheaders, &len) > 0)
        cl->body_need = len;
}

/* Takes the next bytes of a refusal's body, p[0..*n), decoding a chunked one in place; *n
 * becomes the bytes of data.  1 when the body is complete (or its chunked framing broke: what
 * came is reported), 0 when more is to come. */
static int body_take(wsk_client *cl, uint8_t *p, size_t *n)
{
    if (cl->chunked) return wsk_http_chunked_decode(&cl->dec, p, n) != WSK_HTTP_PARTIAL;
    if (*n >= cl->body_need) {
        *n = (size_t)cl->body_need;
        return 1;
    }
    if (cl->body_need != UINT64_MAX) cl->body_need -= *n;
    return 0;
}

/* A refusal's head in p[0..head_len), the first bytes of its body after it, up to n (cut short
 * when `full`).  Reported at once when the body is complete; otherwise the head and the decoded
 * body wait in the cold buffer for the rest, for BODY_WAIT at most (the answer is known; only
 * the explanation is missing). */
static void refusal(wsk_client *cl, const wsk_http_response *res, uint8_t *p, size_t head_len,
                    size_t n, int full)
{
    struct wsk_ws *c = cl->ws;
    size_t blen = n - head_len;
    body_framing(cl, res);
    int done = body_take(cl, p + head_len, &blen) || full;
    if (!done && blen < BODY_MAX) {
        if (wsk_conn_save_head(c, p, head_len + blen, head_len + BODY_MAX) < 0) {
            fail(cl, WSK_ERR_NOMEM, "out of memory");
            return;
        }
        c->cold->head.len = head_len + blen; /* drops the encoding a chunked body had */
        cl->head_len = head_len;
        cl->phase = PH_BODY;
        arm_deadline(cl, BODY_WAIT);
        return;
    }
    refused(cl, res, p + head_len, blen < BODY_MAX ? blen : BODY_MAX);
    wsk_conn_end(c, WSK_CLOSE_ABNORMAL, NULL);
}

/* More of a kept refusal's body: decoded in place, added after what came before (up to
 * BODY_MAX), reported once complete. */
static void refusal_more(wsk_client *cl, uint8_t *p, size_t n)
{
    wsk_cold *k = cl->ws->cold;
    int done = body_take(cl, p, &n);
    size_t room = cl->head_len + BODY_MAX - k->head.len;
    if (n >= room) {
        n = room;
        done = 1;
    }
    if (wsk_dbuf_append(&k->head, p, n) < 0) {
        fail(cl, WSK_ERR_NOMEM, "out of memory");
        return;
    }
    if (done) {
        refused_kept(cl);
        wsk_conn_end(cl->ws, WSK_CLOSE_ABNORMAL, NULL);
    }
}

/* The server accepted: verify its 101 (RFC 6455 4.1) and open. */
static void accept_101(wsk_client *cl, const wsk_http_response *res, uint8_t *rest, size_t n)
{
    struct wsk_ws *c = cl->ws;
    const wsk_client_opts *o = &cl->o;
    const char *proto, *why;
    size_t plen;
    char ext[OFFER_MAX];
    cl->t.upgrade = elapsed(cl, ev_time());
    tls_timing(cl);
    int offered = offer_extensions(cl, ext, sizeof ext) > 0;
    if (wsk_handshake_client_verify(res, cl->key, o->protocols, o->nprotocols, offered, &proto,
                                    &plen, &why) < 0) {
        fail(cl, WSK_ERR_HANDSHAKE, why);
        return;
    }
    /* RFC 7692 5: an extension answer that does not fit our offer fails the connection. */
    if (offered && wsk_pmd_conn_accept(c, res) < 0) {
        fail(cl, WSK_ERR_HANDSHAKE, "server answered an invalid permessage-deflate response");
        return;
    }
    if (proto) {
        wsk_cold *k = wsk_conn_cold(c);
        if (!k || !(k->protocol = strndup(proto, plen))) {
            fail(cl, WSK_ERR_NOMEM, "out of memory");
            return;
        }
    }
    ev_timer_stop(cl->ctx.loop->ev, &cl->deadline);
    cl->phase = PH_OPEN;
    wsk_conn_open(c, rest, n);
    free(cl->request);
    cl->request = NULL;
}

static void proxy_answered(wsk_client *cl, const wsk_http_response *res, size_t head_len, size_t n)
{
    char msg[160];
    if (res->status / 100 != 2) {
        snprintf(msg, sizeof msg, "proxy refused CONNECT with %d %.*s", res->status,
                 (int)(res->reason_len < 64 ? res->reason_len : 64), res->reason);
        fail(cl, WSK_ERR_CONNECT, msg);
        return;
    }
    /* The server cannot have spoken before our request: such bytes are not the tunnel's. */
    if (n > head_len) {
        fail(cl, WSK_ERR_HTTP, "proxy sent bytes after its answer to CONNECT");
        return;
    }
    drop_head(cl->ws);
    cl->status = 0;
    send_upgrade(cl);
}

void wsk_client_http(struct wsk_ws *c, uint8_t *p, size_t n)
{
    wsk_client *cl = client_of(c);
    wsk_cold *k = c->cold;
    size_t max_head = c->ctx->lim.max_header;
    int in_cold = k && k->head.len, full = 0;
    if (cl->phase == PH_BODY) {
        refusal_more(cl, p, n);
        return;
    }
    if (cl->phase != PH_PROXY && cl->phase != PH_UPGRADE) return;
    if (in_cold) {
        size_t room = k->head.max - k->head.len;
        if (n >= room) {
            full = 1;
            n = room;
        }
        if (wsk_dbuf_append(&k->head, p, n) < 0) {
            fail(cl, WSK_ERR_NOMEM, "out of memory");
            return;
        }
        p = k->head.p;
        n = k->head.len;
    }
    wsk_http_response res;
    size_t scanned = in_cold ? k->scanned : 0;
    int r = wsk_http_parse_response((const char *)p, n, &scanned, &res);
    if (r == 0) {
        if (full || n >= max_head)
            fail(cl, WSK_ERR_HEADER_SIZE, "response head too large");
        else if (wsk_conn_save_head(c, p, n, max_head) < 0)
            fail(cl, WSK_ERR_NOMEM, "out of memory");
        else
            c->cold->scanned = scanned;
        return;
    }
    if (r < 0 || (size_t)r > max_head) {
        fail(cl, r == WSK_ERR_HTTP ? r : WSK_ERR_HEADER_SIZE,
             r == WSK_ERR_HTTP ? "malformed HTTP response (is it a WebSocket server?)"
                               : "response head too large");
        return;
    }
    size_t head_len = (size_t)r;
    cl->status = res.status;
    cl->res = &res;
    cl->res_head = (const char *)p;
    cl->res_head_len = head_len;
    if (cl->phase == PH_PROXY)
        proxy_answered(cl, &res, head_len, n);
    else if (res.status == 101)
        accept_101(cl, &res, p + head_len, n - head_len);
    else if (is_redirect(res.status) && cl->o.follow_redirects)
        follow(cl, &res);
    else
        refusal(cl, &res, p, head_len, n, full);
    cl->res = NULL;
    cl->res_head = NULL;
}

void wsk_client_failed(struct wsk_ws *c, int err, const char *msg)
{
    wsk_client *cl = client_of(c);
    wsk_cold *k = c->cold;
    if (cl->reported || cl->phase == PH_OPEN) return;
    /* A refusal whose body ends with the connection (or its deadline). */
    if (refused_kept(cl)) return;
    /* conn.c reports any read failure of the HTTP phase as a handshake error; say which. */
    if (err == WSK_ERR_HANDSHAKE && (cl->phase == PH_UPGRADE || cl->phase == PH_PROXY)) {
        if (k && k->head.len) {
            err = WSK_ERR_HTTP;
            msg = "connection closed inside the response head";
        } else {
            err = WSK_ERR_CONNECT;
            msg = cl->phase == PH_PROXY ? "proxy closed the connection"
                                        : "connection closed before the server answered";
        }
    }
    report(cl, err, msg);
}

void wsk_ctx_release(wsk_ctx *ctx)
{
    wsk_client *cl = (wsk_client *)ctx;
    struct ev_loop *ev = ctx->loop->ev;
    if (!cl->reported && cl->phase != PH_OPEN) {
        /* Ended in the handshake without a report (wsk_terminate, a failed write): the close
         * handler still runs, once. */
        static const char why[] = "connection ended during the handshake";
        cl->reported = 1;
        if (ctx->h.close) ctx->h.close(cl->ws, WSK_CLOSE_ABNORMAL, why, sizeof why - 1);
    }
    ev_ref(ev);
    ev_timer_stop(ev, &cl->tick);
    ev_timer_stop(ev, &cl->deadline);
    wsk_lookup_cancel(cl->lookup);
    if (cl->addrs) freeaddrinfo(cl->addrs);
    wsk_tls_ctx_free(ctx);
    free(cl->request);
    free(cl->url);
    free(cl);
}

/* ----- accessors ------------------------------------------------------------------------------ */

int wsk_client_status(const wsk_ws *ws)
{
    const wsk_client *cl = client_or_null(ws);
    return cl ? cl->status : 0;
}

size_t wsk_client_header_count(const wsk_ws *ws)
{
    const wsk_client *cl = client_or_null(ws);
    return cl && cl->res ? cl->res->nheaders : 0;
}

int wsk_client_header_at(const wsk_ws *ws, size_t i, const char **name, size_t *name_len,
                         const char **value, size_t *value_len)
{
    const wsk_client *cl = client_or_null(ws);
    if (!cl || !cl->res) return WSK_ERR_INVAL;
    return wsk_http_header_at(cl->res->headers, cl->res->nheaders, i, name, name_len, value,
                              value_len);
}

const char *wsk_client_header(const wsk_ws *ws, const char *name, size_t *len)
{
    const wsk_client *cl = client_or_null(ws);
    size_t from = 0;
    const wsk_http_header *h = cl && cl->res && name
                                   ? wsk_http_find(cl->res->headers, cl->res->nheaders, name, &from)
                                   : NULL;
    if (len) *len = h ? h->value_len : 0;
    return h ? h->value : NULL;
}

const char *wsk_client_response_head(const wsk_ws *ws, size_t *len)
{
    const wsk_client *cl = client_or_null(ws);
    const char *p = cl ? cl->res_head : NULL;
    if (len) *len = p ? cl->res_head_len : 0;
    return p;
}

const void *wsk_client_response_body(const wsk_ws *ws, size_t *len)
{
    const wsk_client *cl = client_or_null(ws);
    const void *p = cl && cl->res ? cl->body : NULL;
    if (len) *len = p ? cl->body_len : 0;
    return p;
}

const char *wsk_client_request_head(const wsk_ws *ws, size_t *len)
{
    const wsk_client *cl = client_or_null(ws);
    const char *p = cl ? cl->request : NULL;
    if (len) *len = p ? cl->request_len : 0;
    return p;
}

const char *wsk_client_url(const wsk_ws *ws)
{
    const wsk_client *cl = client_or_null(ws);
    return cl ? cl->url : NULL;
}

void wsk_client_timing(const wsk_ws *ws, wsk_timing *t)
{
    const wsk_client *cl = client_or_null(ws);
    if (cl)
        *t = cl->t;
    else
        memset(t, 0, sizeof *t);
}
