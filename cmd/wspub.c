/* wspub: publish to a wsserve --pubsub broker from scripts, in the spirit of mosquitto_pub and
 * redis-cli publish.
 *
 * One connection to the broker's JSON control endpoint carries every message as
 * {"op":"publish",...,"id":N}; the broker answers each with an acknowledgement that counts its
 * receivers.  Publishes are pipelined: up to --window of them wait for their acknowledgement at
 * once, and the socket's drain paces the rest, so a large file of lines streams at the speed of
 * the connection, not of a round trip per line.  wspub exits once every message is
 * acknowledged (see the exit statuses in the usage text and man/wspub.1). */
#include "cli.h"
#include "jsonproto.h"
#include "wskit.h"

#include <errno.h>
#include <ev.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROG      "wspub"
#define MAX_INPUT (16u << 20) /* largest message read from stdin or a file: the max payload */

enum exit_status {
    EXIT_OK = 0,
    EXIT_USAGE = 1,
    EXIT_CONNECT = 2,  /* DNS, refused, timed out */
    EXIT_REFUSED = 3,  /* the upgrade was answered with another status than 101 (401, 403) */
    EXIT_REJECTED = 4, /* the broker refused a publish (an error reply), or broke the protocol */
    EXIT_NOBODY = 5,   /* --require-receivers: a message reached nobody */
    EXIT_TLS = 6,      /* TLS or the certificate */
    EXIT_LOST = 7,     /* the connection ended, or went silent, before every acknowledgement */
    EXIT_INTERRUPTED = 130,
};

static const char usage_head[] =
    "usage: wspub [options] URL TOPIC [MESSAGE...]\n"
    "       wspub [options] URL/TOPIC [MESSAGE...]\n"
    "\n"
    "Publishes the MESSAGEs (or what -l, -s or -f read) to TOPIC through the JSON control\n"
    "endpoint of a wsserve --pubsub broker (ws://HOST:PORT/), over one connection, and\n"
    "waits for every acknowledgement.  A URL with a path names the topic, as mosquitto_pub -L\n"
    "does (ws://HOST:PORT/news: topic \"news\", the same URL a subscriber uses); wspub still\n"
    "speaks to the control endpoint at the root.\n"
    "\n"
    "Options:\n";

static const char usage_tail[] =
    "\n"
    "Exit status:\n"
    "  0  every message acknowledged\n"
    "  1  usage error\n"
    "  2  cannot connect\n"
    "  3  the broker refused the connection with an HTTP status (401: a wrong token, or none\n"
    "     for a --private broker; 403: an Origin it does not allow)\n"
    "  4  the broker refused a publish (an error reply: no token where one is needed to\n"
    "     publish, bad topic, ...), a message was not UTF-8, or the server is not a broker\n"
    "  5  --require-receivers and a message reached nobody\n"
    "  6  TLS or certificate failure\n"
    "  7  the connection ended, or acknowledgements stopped for --timeout, before every\n"
    "     message was acknowledged\n"
    "  130  interrupted\n";

enum {
    OPT_TOKEN = 256,
    OPT_TOKEN_FILE,
    OPT_REQUIRE,
    OPT_WINDOW,
    OPT_CONNECT_TIMEOUT,
    OPT_TIMEOUT,
    OPT_REPEAT,
    OPT_RETAIN,
};

static const cli_option options[] = {
    {"lines", 'l', NULL, "one message per line of stdin (empty lines are skipped)"},
    {"stdin", 's', NULL, "all of stdin as one message"},
    {"file", 'f', "FILE", "the contents of FILE as one message"},
    {"binary", 'b', NULL, "publish binary messages (text must be UTF-8 otherwise)"},
    {"retain", OPT_RETAIN, NULL, "the broker keeps the last message for new subscribers"},
    {"repeat", OPT_REPEAT, "N", "publish the messages N times (default 1)"},
    {"interval", 'i', "SECONDS", "pause between two messages"},
    {"token", OPT_TOKEN, "SECRET", "send Authorization: Bearer SECRET"},
    {"token-file", OPT_TOKEN_FILE, "FILE", "the same, SECRET being the first line of FILE"},
    {"header", 'H', "'NAME: VALUE'", "add a request header (repeatable)"},
    {"require-receivers", OPT_REQUIRE, NULL, "exit 5 when a message reached nobody"},
    {"window", OPT_WINDOW, "N", "publishes awaiting acknowledgement at once (default 1000)"},
    {"connect-timeout", OPT_CONNECT_TIMEOUT, "SECONDS", "limit DNS + connect + handshake (10)"},
    {"timeout", OPT_TIMEOUT, "SECONDS", "give up when no acknowledgement comes for this long (10)"},
    {"no-check", 'n', NULL, "do not verify the server's TLS certificate"},
    CLI_TLS_OPTIONS,
    {"quiet", 'q', NULL, "print no error messages"},
    {"verbose", 'v', NULL, "print the receiver count of every message"},
    {"help", 'h', NULL, "this help"},
    {"version", 'V', NULL, "print the version"},
    {NULL, 0, NULL, NULL},
};

struct options {
    const char *url, *topic, *file, *token, *token_file;
    cli_tls tls;
    const char **headers; /* -H, then Authorization */
    size_t nheaders;
    char **messages; /* operands after TOPIC */
    size_t nmessages;
    int lines, whole_stdin, binary, retain, require, quiet, verbose;
    unsigned long repeat, window;
    double interval, connect_timeout, timeout;
};

static struct {
    struct options o;
    wsk_loop *loop;
    struct ev_loop *ev;
    wsk_ws *ws;
    int opened, closing, status;
    /* The messages: the operands, or the one read by -s / -f (fixed), or lines (streamed). */
    char *whole;
    size_t whole_len;
    size_t next_msg;     /* fixed: index of the next message */
    unsigned long round; /* fixed: repetitions done */
    char *in;            /* -l: bytes read and not yet published */
    size_t in_len, in_cap, in_off;
    int in_eof, in_watching;
    unsigned long lineno;
    /* Flow. */
    unsigned long sent, acked, inflight, refused, nobody;
    int drain_wait; /* a send met backpressure: wait for drain */
    ev_io input;
    ev_timer pace;       /* --interval */
    ev_timer silence;    /* --timeout: acknowledgements stopped coming */
    ev_timer close_wait; /* bound on the closing handshake */
    ev_signal sigint, sigterm;
    double t0;
} app;

static void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void warn(const char *fmt, ...)
{
    if (app.o.quiet) return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s: %s\n", PROG, line);
}

static void finish(int status)
{
    if (app.status < 0 || (app.status == EXIT_OK && status != EXIT_OK)) app.status = status;
    ev_break(app.ev, EVBREAK_ALL);
}

/* ----- the messages -------------------------------------------------------------------------- */

static int source_done(void)
{
    if (app.o.lines) return app.in_eof && app.in_off == app.in_len;
    return app.round >= app.o.repeat;
}

/* The next message to publish, NULL when there is none yet (or any more). */
static const char *next_message(size_t *len)
{
    if (app.o.lines) {
        for (;;) {
            size_t avail = app.in_len - app.in_off;
            if (!avail) return NULL;
            char *p = app.in + app.in_off;
            char *nl = memchr(p, '\n', avail);
            size_t n = nl ? (size_t)(nl - p) : avail;
            if (!nl && !app.in_eof) return NULL; /* a partial line: wait for the rest */
            app.in_off += nl ? n + 1 : n;
            app.lineno++;
            if (n && p[n - 1] == '\r') n--;
            if (!n) continue; /* like mosquitto_pub -l: blank lines are not sent */
            *len = n;
            return p;
        }
    }
    if (app.round >= app.o.repeat) return NULL;
    const char *m;
    if (app.whole || !app.o.nmessages) {
        m = app.whole ? app.whole : "";
        *len = app.whole_len;
        app.round++;
    } else {
        m = app.o.messages[app.next_msg];
        *len = strlen(m);
        if (++app.next_msg == app.o.nmessages) {
            app.next_msg = 0;
            app.round++;
        }
    }
    return m;
}

static void input_watch(int on)
{
    if (!app.o.lines || app.in_eof || app.in_watching == on) return;
    app.in_watching = on;
    if (on)
        ev_io_start(app.ev, &app.input);
    else
        ev_io_stop(app.ev, &app.input);
}

static void pump(void);
static void maybe_close(void);

/* -l: stdin is readable.  What is read waits in app.in; reading pauses while 1 MiB waits. */
static void on_input(struct ev_loop *ev, ev_io *w, int revents)
{
    (void)ev;
    (void)w;
    (void)revents;
    if (app.in_off && app.in_cap - app.in_len < 65536) { /* drop what was published */
        memmove(app.in, app.in + app.in_off, app.in_len - app.in_off);
        app.in_len -= app.in_off;
        app.in_off = 0;
    }
    if (app.in_cap - app.in_len < 65536) {
        if (app.in_len > MAX_INPUT) {
            warn("line %lu is longer than %u bytes", app.lineno + 1, MAX_INPUT);
            finish(EXIT_USAGE);
            return;
        }
        size_t cap = app.in_cap ? app.in_cap * 2 : 256 * 1024;
        char *p = realloc(app.in, cap);
        if (!p) {
            warn("out of memory");
            finish(EXIT_USAGE);
            return;
        }
        app.in = p;
        app.in_cap = cap;
    }
    ssize_t r = read(STDIN_FILENO, app.in + app.in_len, app.in_cap - app.in_len);
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (r <= 0) {
        if (r < 0) warn("reading stdin: %s", strerror(errno));
        input_watch(0);
        app.in_eof = 1;
    } else {
        app.in_len += (size_t)r;
    }
    if (app.in_len - app.in_off >= (1u << 20)) input_watch(0);
    pump();
    maybe_close();
}

/* ----- publishing ---------------------------------------------------------------------------- */

static void start_close(void)
{
    if (app.closing || !app.ws) return;
    app.closing = 1;
    wsk_close(app.ws, WSK_CLOSE_NORMAL, NULL, 0);
    ev_timer_set(&app.close_wait, 3, 0);
    ev_timer_start(app.ev, &app.close_wait);
}

static void maybe_close(void)
{
    if (app.opened && source_done() && !app.inflight) start_close();
}

/* Publishes while the window, the socket and --interval allow. */
static void pump(void)
{
    while (app.ws && app.opened && !app.closing && !app.drain_wait && app.inflight < app.o.window &&
           !ev_is_active(&app.pace)) {
        size_t len;
        const char *m = next_message(&len);
        if (!m) break;
        if (!app.o.binary && !wsk_utf8_valid(m, len)) {
            if (app.o.lines)
                warn("line %lu is not UTF-8 text (use --binary): skipped", app.lineno);
            else
                warn("a message is not UTF-8 text (use --binary): skipped");
            app.refused++;
            continue;
        }
        size_t n;
        char *req = jp_publish_request(app.o.topic, strlen(app.o.topic), m, len, app.o.binary,
                                       app.o.retain, app.sent + 1, &n);
        if (!req) {
            warn("out of memory");
            finish(EXIT_LOST);
            return;
        }
        long r = wsk_send(app.ws, req, n, WSK_OP_TEXT, 1);
        free(req);
        if (r == 0) {
            warn("the connection is gone");
            finish(EXIT_LOST);
            return;
        }
        app.sent++;
        if (!app.inflight++) ev_timer_again(app.ev, &app.silence);
        if (r < 0) app.drain_wait = 1;
        if (app.o.interval > 0) {
            ev_timer_set(&app.pace, app.o.interval, 0);
            ev_timer_start(app.ev, &app.pace);
        }
    }
    /* Keep reading lines only while there is room to publish them. */
    input_watch(app.opened && !app.closing && app.in_len - app.in_off < (1u << 20));
}

static void on_pace(struct ev_loop *ev, ev_timer *w, int revents)
{
    (void)ev;
    (void)w;
    (void)revents;
    pump();
    maybe_close();
}

static void on_silence(struct ev_loop *ev, ev_timer *w, int revents)
{
    (void)ev;
    (void)revents;
    ev_timer_stop(app.ev, w);
    if (!app.inflight) return;
    warn("no acknowledgement for %gs (%lu of %lu messages acknowledged)", app.o.timeout, app.acked,
         app.sent);
    finish(EXIT_LOST);
}

static void on_close_wait(struct ev_loop *ev, ev_timer *w, int revents)
{
    (void)ev;
    (void)w;
    (void)revents;
    if (app.ws) wsk_terminate(app.ws);
}

/* ----- the connection ------------------------------------------------------------------------ */

static void on_open(wsk_ws *ws)
{
    (void)ws;
    app.opened = 1;
    pump();
    maybe_close();
}

static void on_message(wsk_ws *ws, const void *data, size_t len, wsk_opcode op)
{
    (void)ws;
    jp_reply r;
    if (op != WSK_OP_TEXT || jp_parse_reply(data, len, &r) < 0) {
        warn("the broker sent something that is not JSON: is %s a wsserve --pubsub control "
             "endpoint?",
             app.o.url);
        finish(EXIT_REJECTED);
        return;
    }
    /* wspub subscribes to nothing: a broker sends it acknowledgements and errors only.  Anything
     * else (our own request echoed back, say) means the server is no broker; waiting for an
     * acknowledgement would only end in --timeout. */
    if (r.type != JP_R_ACK && r.type != JP_R_ERROR) {
        warn("%s is not a wsserve --pubsub broker: its first reply was %.*s%s", app.o.url,
             (int)(len > 80 ? 80 : len), (const char *)data, len > 80 ? "..." : "");
        finish(EXIT_REJECTED);
        return;
    }
    if (r.type == JP_R_ACK && strcmp(r.op, "publish")) return;
    if (!app.inflight) return;
    app.inflight--;
    app.acked++;
    ev_timer_again(app.ev, &app.silence);
    if (r.type == JP_R_ERROR) {
        app.refused++;
        warn("message %s refused: %s: %s", r.id[0] ? r.id : "?", r.error, r.message);
    } else {
        /* Through a bridge, subscribers on other nodes count too; an engine that cannot count
         * them (NATS: "bridged" without "nodes") may have reached some. */
        if (r.receivers == 0 && r.nodes <= 0 && !(r.bridged == 1 && r.nodes < 0)) app.nobody++;
        if (app.o.verbose && r.nodes >= 0)
            printf("%s: %ld receiver%s, %ld on other nodes\n", r.id, r.receivers,
                   r.receivers == 1 ? "" : "s", r.nodes);
        else if (app.o.verbose)
            printf("%s: %ld receiver%s\n", r.id, r.receivers, r.receivers == 1 ? "" : "s");
    }
    pump();
    maybe_close();
}

static void on_drain(wsk_ws *ws)
{
    (void)ws;
    app.drain_wait = 0;
    pump();
    maybe_close();
}

static void on_error(wsk_ws *ws, int err, const char *msg)
{
    int http = wsk_client_status(ws);
    switch (err) {
    case WSK_ERR_TLS:
    case WSK_ERR_CERT: app.status = EXIT_TLS; break;
    case WSK_ERR_HANDSHAKE:
        app.status = http >= 100 && http != 101 ? EXIT_REFUSED : EXIT_REJECTED;
        break;
    case WSK_ERR_DNS:
    case WSK_ERR_CONNECT:
    case WSK_ERR_TIMEOUT: app.status = app.opened ? EXIT_LOST : EXIT_CONNECT; break;
    default: app.status = app.opened ? EXIT_LOST : EXIT_CONNECT; break;
    }
    size_t blen = 0;
    const char *body = wsk_client_response_body(ws, &blen);
    while (blen && (body[blen - 1] == '\n' || body[blen - 1] == '\r')) blen--;
    if (app.status == EXIT_REFUSED && body && blen && wsk_utf8_valid(body, blen))
        warn("%s: %.*s", msg, (int)(blen > 200 ? 200 : blen), body);
    else
        warn("%s", msg);
}

static void on_close(wsk_ws *ws, unsigned code, const char *reason, size_t len)
{
    (void)ws;
    app.ws = NULL;
    ev_timer_stop(app.ev, &app.close_wait);
    if (app.status >= 0) { /* the error handler said it */
        finish(app.status);
        return;
    }
    if (!app.opened) {
        finish(EXIT_CONNECT);
        return;
    }
    if (app.inflight || !source_done()) {
        warn("the connection closed (%u%s%.*s) with %lu of %lu messages acknowledged", code,
             len ? ": " : "", (int)len, reason, app.acked, app.sent);
        finish(EXIT_LOST);
        return;
    }
    if (!app.refused && app.o.require && app.nobody)
        warn("--require-receivers: %lu of %lu message%s reached no subscriber", app.nobody,
             app.acked, app.acked == 1 ? "" : "s");
    finish(app.refused ? EXIT_REJECTED : app.o.require && app.nobody ? EXIT_NOBODY : EXIT_OK);
}

static const wsk_handlers handlers = {
    .open = on_open,
    .message = on_message,
    .drain = on_drain,
    .error = on_error,
    .close = on_close,
};

static void on_signal(struct ev_loop *ev, ev_signal *w, int revents)
{
    (void)ev;
    (void)w;
    (void)revents;
    app.status = EXIT_INTERRUPTED;
    ev_break(app.ev, EVBREAK_ALL);
}

static void on_log(void *arg, int level, const char *msg)
{
    (void)arg;
    if (level <= WSK_LOG_ERROR) warn("%s", msg);
}

/* ----- options ------------------------------------------------------------------------------- */

/* Reads a whole file (or stdin for NULL) into *out; -1 with a message. */
static int slurp(const char *path, char **out, size_t *len)
{
    FILE *f = path ? fopen(path, "rb") : stdin;
    if (!f) {
        warn("%s: %s", path, strerror(errno));
        return -1;
    }
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0 || n > MAX_INPUT) break;
        if (n == cap) {
            char *p = realloc(buf, cap * 2);
            if (!p) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = p;
            cap *= 2;
        }
    }
    int bad = !buf || ferror(f) || n > MAX_INPUT;
    if (bad)
        warn("%s: %s", path ? path : "stdin",
             !buf            ? "out of memory"
             : n > MAX_INPUT ? "larger than 16 MiB"
                             : strerror(errno));
    if (path) fclose(f);
    if (bad) {
        free(buf);
        return -1;
    }
    *out = buf;
    *len = n;
    return 0;
}

/* A URL with a path names the topic, as mosquitto_pub -L does, and a subscriber's URL works as
 * it is: the connection goes to the control endpoint at the root (any other path is a raw
 * topic socket, to which a JSON request would be just a message for the subscribers).  Sets
 * o->url to the root (malloc'd in *root) and o->topic; 0 when the URL has no path. */
static int topic_from_url(struct options *o, char **root)
{
    const char *host = strstr(o->url, "://"); /* the scheme may be left out: ws:// */
    const char *slash = strchr(host ? host + 3 : o->url, '/');
    if (!slash || !slash[1]) return 0;
    if (strpbrk(slash, "?#"))
        cli_usage_error(PROG, "the URL's path names the topic: no '?' or '#' in it: %s", o->url);
    *root = strndup(o->url, (size_t)(slash - o->url) + 1);
    if (!*root) cli_usage_error(PROG, "out of memory");
    o->topic = slash + 1;
    o->url = *root;
    return 1;
}

static void parse_options(int argc, char **argv, char **root)
{
    struct options *o = &app.o;
    o->repeat = 1;
    o->window = 1000;
    o->connect_timeout = 10;
    o->timeout = 10;
    o->headers = calloc((size_t)argc + 1, sizeof *o->headers);
    if (!o->headers) exit(EXIT_USAGE);
    const char *arg;
    int c;
    while ((c = cli_next_option(argc, argv, options, &arg)) != -1) {
        unsigned long v;
        switch (c) {
        case 'l': o->lines = 1; break;
        case 's': o->whole_stdin = 1; break;
        case 'f': o->file = arg; break;
        case 'b': o->binary = 1; break;
        case OPT_RETAIN: o->retain = 1; break;
        case OPT_REPEAT:
            if (cli_parse_ulong(arg, 1, 1000000000ul, &v) < 0)
                cli_usage_error(PROG, "--repeat takes a count from 1: %s", arg);
            o->repeat = v;
            break;
        case 'i':
            if (cli_parse_duration(arg, &o->interval) < 0)
                cli_usage_error(PROG, "--interval takes seconds: %s", arg);
            break;
        case OPT_TOKEN: o->token = arg; break;
        case OPT_TOKEN_FILE: o->token_file = arg; break;
        case 'H':
            if (!strchr(arg, ':')) cli_usage_error(PROG, "-H takes 'Name: value': %s", arg);
            o->headers[o->nheaders++] = arg;
            break;
        case OPT_REQUIRE: o->require = 1; break;
        case OPT_WINDOW:
            if (cli_parse_ulong(arg, 1, 1000000ul, &v) < 0)
                cli_usage_error(PROG, "--window takes a count from 1: %s", arg);
            o->window = v;
            break;
        case OPT_CONNECT_TIMEOUT:
            if (cli_parse_duration(arg, &o->connect_timeout) < 0 || o->connect_timeout <= 0)
                cli_usage_error(PROG, "--connect-timeout takes seconds: %s", arg);
            break;
        case OPT_TIMEOUT:
            if (cli_parse_duration(arg, &o->timeout) < 0 || o->timeout <= 0)
                cli_usage_error(PROG, "--timeout takes seconds: %s", arg);
            break;
        case 'n': o->tls.no_check = 1; break;
        case 'q': o->quiet = 1; break;
        case 'v': o->verbose = 1; break;
        case 'h':
            fputs(usage_head, stdout);
            cli_print_options(stdout, options);
            fputs(usage_tail, stdout);
            exit(EXIT_OK);
        case 'V': cli_print_version(stdout, PROG); exit(EXIT_OK);
        default:
            if (!cli_tls_option(c, arg, &o->tls)) cli_usage_error(PROG, "unknown option");
        }
    }
    if (argc - optind < 1) cli_usage_error(PROG, "give the broker's URL and a TOPIC");
    o->url = argv[optind++];
    if (!topic_from_url(o, root)) {
        if (argc - optind < 1) cli_usage_error(PROG, "give the broker's URL and a TOPIC");
        o->topic = argv[optind++];
    }
    o->messages = argv + optind;
    o->nmessages = (size_t)(argc - optind);
    int sources = (o->nmessages > 0) + o->lines + o->whole_stdin + (o->file != NULL);
    if (sources > 1)
        cli_usage_error(PROG, "give messages as arguments, or -l, -s or -f: one of them");
    if (!sources) cli_usage_error(PROG, "nothing to publish: give a MESSAGE, or -l, -s or -f");
    if (o->lines && o->repeat > 1) cli_usage_error(PROG, "--repeat does not go with -l");
    if (!*o->topic) cli_usage_error(PROG, "the TOPIC is empty");
    if (o->token && o->token_file) cli_usage_error(PROG, "give --token or --token-file, not both");
    cli_tls_check(PROG, &o->tls);
}

int main(int argc, char **argv)
{
    char *root = NULL;
    app.status = -1;
    parse_options(argc, argv, &root);
    struct options *o = &app.o;

    if (o->whole_stdin || o->file) {
        if (slurp(o->file, &app.whole, &app.whole_len) < 0) return EXIT_USAGE;
    }
    char token[4096], *auth = NULL;
    if (o->token_file &&
        cli_read_secret(PROG, "token-file", o->token_file, token, sizeof token) < 0)
        return EXIT_USAGE;
    const char *secret = o->token_file ? token : o->token;
    if (secret) {
        size_t n = strlen(secret) + 32;
        auth = malloc(n);
        if (!auth) return EXIT_USAGE;
        snprintf(auth, n, "Authorization: Bearer %s", secret);
        o->headers[o->nheaders++] = auth;
    }
    memset(token, 0, sizeof token);

    signal(SIGPIPE, SIG_IGN);
    app.ev = ev_default_loop(0);
    app.loop = wsk_loop_new(app.ev);
    if (!app.ev || !app.loop) return EXIT_CONNECT;
    wsk_loop_set_log(app.loop, WSK_LOG_ERROR, on_log, NULL);

    ev_io_init(&app.input, on_input, STDIN_FILENO, EV_READ);
    ev_init(&app.pace, on_pace);
    ev_init(&app.silence, on_silence);
    app.silence.repeat = o->timeout;
    ev_init(&app.close_wait, on_close_wait);
    ev_signal_init(&app.sigint, on_signal, SIGINT);
    ev_signal_init(&app.sigterm, on_signal, SIGTERM);
    ev_signal_start(app.ev, &app.sigint);
    ev_signal_start(app.ev, &app.sigterm);

    wsk_client_opts co;
    wsk_client_opts_init(&co);
    co.headers = o->headers;
    co.nheaders = o->nheaders;
    co.connect_timeout = (unsigned)ceil(o->connect_timeout);
    cli_tls_client_opts(&o->tls, &co);
    int err;
    app.t0 = ev_time();
    app.ws = wsk_connect(app.loop, o->url, &co, &handlers, NULL, &err);
    if (!app.ws) {
        if (err == WSK_ERR_URL)
            warn("invalid URL '%s' (ws://HOST[:PORT][/PATH] or wss://...)", o->url);
        else
            warn("cannot connect: %s", wsk_strerror(err));
        return err == WSK_ERR_URL || err == WSK_ERR_INVAL ? EXIT_USAGE : EXIT_CONNECT;
    }
    ev_run(app.ev, 0);

    if (app.ws) wsk_terminate(app.ws); /* interrupted, or gave up: no closing handshake */
    ev_run(app.ev, EVRUN_NOWAIT);
    wsk_loop_free(app.loop);
    if (app.o.verbose && app.status == EXIT_OK) {
        double dt = ev_time() - app.t0;
        fprintf(stderr, "%s: %lu message%s acknowledged in %.3fs (%.0f/s)\n", PROG, app.acked,
                app.acked == 1 ? "" : "s", dt, dt > 0 ? app.acked / dt : 0.0);
    }
    free(app.whole);
    free(app.in);
    free(auth);
    free(root);
    free(o->headers);
    fflush(stdout);
    return app.status < 0 ? EXIT_LOST : app.status;
}
