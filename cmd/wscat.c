/* wscat: the WebSocket endpoint debugger.
 *
 * Connects to a URL (or, with -l, listens for one client after another), prints what arrives and
 * sends what is typed.  Three ways to drive it:
 *   interactive  stdin and stdout are a terminal: line editing and history (libedit), messages
 *                printed above the prompt, colours;
 *   pipe         otherwise: each input line is one message; at the end of input a close 1000,
 *                then the server's close is awaited; stdout carries only received messages;
 *   execute      -x: the given messages are sent once open, then after --wait the close.
 * The exit status says how the connection ended (see the usage text and man/wscat.1). */
#include "cli.h"
#include "topic_tail.h"
#include "wskit.h"

#include <cjson/cJSON.h>
#include <editline/readline.h>
#include <errno.h>
#include <ev.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define PROG       "wscat"
#define LINE_MAX_  (16u << 20) /* longest input line: the default max payload */
#define BODY_SHOWN 1024        /* bytes of a refusal's body printed */

enum exit_status {
    EXIT_NORMAL = 0,   /* closing handshake with 1000, 1001 or no code; or our own close */
    EXIT_USAGE = 1,    /* bad option or URL */
    EXIT_CONNECT = 2,  /* DNS, refused, timed out, proxy, dropped before the server answered */
    EXIT_REFUSED = 3,  /* the server answered the upgrade with a status other than 101 */
    EXIT_PROTOCOL = 4, /* the server broke RFC 6455, or closed with an error code */
    EXIT_ABNORMAL = 5, /* the connection ended without a closing handshake (1006) */
    EXIT_TLS = 6,      /* TLS failed or the certificate did not verify */
    EXIT_INTERRUPTED = 130,
};

static const char usage_head[] =
    "usage: wscat -c URL [options]        connect to a WebSocket server\n"
    "       wscat -l [HOST:]PORT [options]  listen, and talk to the clients that connect\n"
    "\n"
    "Typed (or piped) lines are sent as messages; received messages are printed.  With stdin\n"
    "not a terminal each line is one message, and the end of input closes with 1000.\n"
    "\n"
    "Options:\n";

static const char usage_tail[] =
    "\n"
    "With --slash, lines starting with '/' are commands:\n"
    "  /ping [DATA]  /pong [DATA]  /close [CODE [REASON]]   ('//text' sends '/text')\n"
    "\n"
    "Exit status:\n"
    "  0  normal close (1000, 1001 or none from the server; or our own close answered)\n"
    "  1  usage error (bad option, invalid URL)\n"
    "  2  connection failure (DNS, refused, timeout, proxy)\n"
    "  3  handshake rejected: the server answered with an HTTP status other than 101\n"
    "  4  protocol error: invalid handshake or frames, or a close code such as 1002, 1007,\n"
    "     1009, 1011 or 4xxx\n"
    "  5  abnormal close: the connection ended without a closing handshake (1006)\n"
    "  6  TLS or certificate failure\n"
    "  130 interrupted twice (CTRL+C), or by SIGHUP or SIGQUIT (CTRL+\\)\n";

enum {
    OPT_AUTH = 256,
    OPT_SLASH,
    OPT_NO_COLOR,
    OPT_MAX_REDIRECTS,
    OPT_HOST,
    OPT_PROXY,
    OPT_CONNECT_TIMEOUT,
    OPT_HEX,
    OPT_PING_INTERVAL,
    OPT_JSON,
    OPT_RECONNECT,
    OPT_TIMING,
    OPT_MAX_PAYLOAD,
    OPT_COMPRESS,
    OPT_SUBSCRIBE,
    OPT_SINCE,
    OPT_OFFSET_FILE,
};

static const cli_option options[] = {
    {"connect", 'c', "URL", "connect to a ws:// or wss:// URL"},
    {"listen", 'l', "[HOST:]PORT", "listen on PORT (HOST: 127.0.0.1; '*' for all)"},
    {"header", 'H', "'NAME: VALUE'", "add a request header (repeatable)"},
    {"subprotocol", 's', "PROTO", "offer (or, with -l, accept) a subprotocol (repeatable)"},
    {"origin", 'o', "ORIGIN", "send an Origin header"},
    {"protocol", 'p', "VERSION", "WebSocket protocol version: only 13 (RFC 6455)"},
    {"auth", OPT_AUTH, "USER:PASS", "Basic authentication (else the URL's user info)"},
    {"host", OPT_HOST, "HOST", "send this Host header instead of the URL's"},
    {"wait", 'w', "SECONDS", "stay SECONDS after -x (2) or the end of input (0), then close"},
    {"execute", 'x', "MSG", "send MSG once connected, wait, close (repeatable)"},
    {"binary", 'b', NULL, "send lines and -x messages as binary messages"},
    {"slash", OPT_SLASH, NULL, "enable /ping, /pong and /close"},
    {"show-ping-pong", 'P', NULL, "print received pings and pongs"},
    {"ping-interval", OPT_PING_INTERVAL, "SECONDS", "send a ping this often"},
    {"location", 'L', NULL, "follow redirects (301, 302, 303, 307, 308)"},
    {"max-redirects", OPT_MAX_REDIRECTS, "N", "redirects to follow with -L (default 10)"},
    {"proxy", OPT_PROXY, "URL", "tunnel through an HTTP proxy (CONNECT)"},
    {"connect-timeout", OPT_CONNECT_TIMEOUT, "SECONDS", "limit DNS + connect + handshake (10)"},
    {"max-payload", OPT_MAX_PAYLOAD, "SIZE", "largest message accepted (default 16M)"},
    {"compress", OPT_COMPRESS, "[=MODE]",
     "offer permessage-deflate: shared (default), dedicated, 3KB..256KB"},
    {"reconnect", OPT_RECONNECT, NULL, "reconnect with backoff when the connection ends"},
    {"subscribe", OPT_SUBSCRIBE, "TOPIC",
     "tail a broker topic: \"topic: message\" lines (repeatable)"},
    {"offset-file", OPT_OFFSET_FILE, "FILE",
     "with --subscribe: keep the last offset printed in FILE"},
    {"since", OPT_SINCE, NULL, "with --subscribe: resume after the offsets in --offset-file"},
    {"no-check", 'n', NULL, "do not verify the server's TLS certificate"},
    CLI_TLS_OPTIONS,
    {"hex", OPT_HEX, NULL, "show binary messages in hex"},
    {"timestamps", 'T', NULL, "prefix what is printed with the time"},
    {"json", OPT_JSON, NULL, "one JSON object per event on stdout"},
    {"timing", OPT_TIMING, NULL,
     "print how long DNS, connect, TLS, upgrade and first message took"},
    {"verbose", 'v', NULL, "print the handshake and every control frame"},
    {"no-color", OPT_NO_COLOR, NULL, "no colours (also: NO_COLOR set, or not a terminal)"},
    {"help", 'h', NULL, "this help"},
    {"version", 'V', NULL, "print the version"},
    {NULL, 0, NULL, NULL},
};

struct options {
    const char *url, *listen;
    const char **headers, **protocols, **execute, **subscribe;
    size_t nheaders, nprotocols, nexecute, nsubscribe;
    const char *offset_file;
    int since;
    const char *origin, *auth, *host, *proxy;
    cli_tls tls;
    double wait, connect_timeout, ping_interval;
    int wait_given;
    unsigned long max_redirects;
    size_t max_payload;
    int compress;
    int show_ping_pong, slash, no_color, location, binary, hex, timestamps, json;
    int reconnect, timing, verbose;
};

struct app {
    struct options o;
    wsk_loop *loop;
    struct ev_loop *ev;
    wsk_ws *ws;      /* the client connection, NULL between connections */
    wsk_server *srv; /* -l */
    wsk_ws **peers;  /* -l: open client sockets */
    size_t npeers, peers_cap;
    int interactive; /* line editing on the terminal */
    int rl_on;       /* the libedit callback interface is installed */
    int in_line;     /* a typed line is being handled: libedit has moved below it already */
    int color_out, color_err;
    int exit_code;
    int status;   /* exit status of the current connection, -1 while unknown */
    int opened;   /* the current connection completed the handshake */
    int closing;  /* we started the closing handshake */
    int quitting; /* the user asked to end: no reconnect */
    int input_eof;
    int input_paused; /* backpressure: waiting for drain */
    int finished;
    unsigned interrupts;
    double first_msg;             /* ev_time() of the first message of the connection, 0 before */
    double backoff;               /* --reconnect: the next delay */
    wsk_tls_session *tls_session; /* --reconnect: resumed by the next connection */
    ev_io input;
    ev_timer hold;       /* -x: the wait before closing */
    ev_timer close_wait; /* bound on the closing handshake */
    ev_timer pinger;     /* --ping-interval */
    ev_timer retry;      /* --reconnect */
    ev_signal sigint, sigterm, sighup, sigquit;
    topic_tail *tail; /* --subscribe */
    char *line;       /* pipe mode: a partial input line */
    size_t line_len, line_cap;
};

static struct app app;

static void connect_now(void);
static void input_start(void);
static void input_stop(void);
static void finish(int status);

/* -l: the server's shutdown is over (every client gone). */
static void srv_done(wsk_server *srv, size_t dropped)
{
    (void)srv;
    (void)dropped;
    finish(EXIT_NORMAL);
}

/* ----- output ---------------------------------------------------------------------------------
 * While line editing is on, whatever is printed first erases the prompt line and then has libedit
 * redraw the prompt and what was being typed, so messages appear above the prompt. */

static void out_begin(void)
{
    if (app.rl_on && !app.in_line) {
        /* The attributes are reset first, so the erased line is not painted in a colour. */
        fputs(app.color_out ? "\r\033[0m\033[K" : "\r\033[K", stdout);
        fflush(stdout);
    }
}

static void out_end(void)
{
    fflush(stdout);
    fflush(stderr);
    if (app.rl_on && !app.in_line) rl_forced_update_display();
}

static void stamp(FILE *f, int color)
{
    char buf[16];
    if (!app.o.timestamps) return;
    fprintf(f, "%s[%s]%s ", cli_color(color, CLI_DIM), cli_clock(ev_time(), buf, sizeof buf),
            cli_color(color, CLI_RESET));
}

/* One diagnostic line on stderr in colour c. */
static void __attribute__((format(printf, 2, 3))) diag(enum cli_color c, const char *fmt, ...)
{
    va_list ap;
    int on = app.color_err;
    out_begin();
    stamp(stderr, on);
    fputs(cli_color(on, c), stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", cli_color(on, CLI_RESET));
    out_end();
}

/* An error line: "wscat: ..." in red. */
#define fail_line(...) diag(CLI_RED, PROG ": " __VA_ARGS__)

/* Prints a raw HTTP head line by line after `prefix` ("> " or "< "), curl -v style. */
static void print_head(const char *prefix, const char *p, size_t n)
{
    int on = app.color_err;
    out_begin();
    while (n) {
        const char *nl = memchr(p, '\n', n);
        size_t len = nl ? (size_t)(nl - p) + 1 : n, text = len;
        while (text && (p[text - 1] == '\n' || p[text - 1] == '\r')) --text;
        if (text) {
            stamp(stderr, on);
            fprintf(stderr, "%s%s%.*s%s\n", cli_color(on, CLI_DIM), prefix, (int)text, p,
                    cli_color(on, CLI_RESET));
        }
        p += len;
        n -= len;
    }
    out_end();
}

/* Printable text for a control frame payload or a reason: shown as is when it is UTF-8
 * without control characters, in hex otherwise. */
static void describe_payload(char *out, size_t cap, const void *data, size_t len)
{
    const unsigned char *p = data;
    int plain = wsk_utf8_valid(data, len);
    for (size_t i = 0; plain && i < len; ++i)
        if (p[i] < 0x20 || p[i] == 0x7f) plain = 0;
    if (!len)
        snprintf(out, cap, "(empty)");
    else if (plain)
        snprintf(out, cap, "\"%.*s\"", (int)len, (const char *)data);
    else {
        size_t o = (size_t)snprintf(out, cap, "0x");
        for (size_t i = 0; i < len && o + 3 < cap; ++i)
            o += (size_t)snprintf(out + o, cap - o, "%02x", p[i]);
    }
}

/* ----- JSON events ---------------------------------------------------------------------------- */

static cJSON *event_new(const char *type)
{
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "type", type);
    /* Milliseconds, so the number prints short and exact. */
    cJSON_AddNumberToObject(e, "time", round(ev_time() * 1000) / 1000);
    return e;
}

/* Adds data under `key` as a string when it is UTF-8 text, else as base64 with `flag`: true. */
static void event_data(cJSON *e, const char *key, const char *flag, const void *data, size_t len,
                       int binary)
{
    if (!binary && wsk_utf8_valid(data, len)) {
        char *s = malloc(len + 1);
        if (!s) return;
        memcpy(s, data, len);
        s[len] = '\0';
        /* A NUL inside text would cut the string: such text goes as base64. */
        if (strlen(s) == len) {
            cJSON_AddStringToObject(e, key, s);
            free(s);
            return;
        }
        free(s);
    }
    char *b = malloc(WSK_BASE64_SIZE(len));
    if (!b) return;
    wsk_base64_encode(data, len, b);
    cJSON_AddStringToObject(e, key, b);
    cJSON_AddBoolToObject(e, flag, 1);
    free(b);
}

static void event_peer(cJSON *e, wsk_ws *ws)
{
    char addr[64];
    if (app.srv) cJSON_AddStringToObject(e, "peer", wsk_ws_remote_address(ws, addr, sizeof addr));
}

static void event_emit(cJSON *e)
{
    char *s = cJSON_PrintUnformatted(e);
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
        fflush(stdout);
        free(s);
    }
    cJSON_Delete(e);
}

/* ----- exit statuses -------------------------------------------------------------------------- */

static int status_of_error(int err, int http_status)
{
    switch (err) {
    case WSK_ERR_DNS:
    case WSK_ERR_CONNECT:
    case WSK_ERR_TIMEOUT: return app.opened ? EXIT_ABNORMAL : EXIT_CONNECT;
    case WSK_ERR_TLS:
    case WSK_ERR_CERT: return EXIT_TLS;
    case WSK_ERR_HANDSHAKE:
        return http_status >= 100 && http_status != 101 ? EXIT_REFUSED : EXIT_PROTOCOL;
    case WSK_ERR_IO:
    case WSK_ERR_CLOSED: return app.opened ? EXIT_ABNORMAL : EXIT_CONNECT;
    default: return EXIT_PROTOCOL; /* the peer broke the protocol or a limit */
    }
}

/* RFC 6455 7.4.1: 1000 and 1001 end a connection normally, 1005 means the close carried no
 * code; 1006 means there was no closing handshake at all. */
static int status_of_close(unsigned code)
{
    if (code == WSK_CLOSE_ABNORMAL) return EXIT_ABNORMAL;
    if (app.closing || code == WSK_CLOSE_NORMAL || code == WSK_CLOSE_GOING_AWAY ||
        code == WSK_CLOSE_NO_STATUS)
        return EXIT_NORMAL;
    return EXIT_PROTOCOL;
}

static const char *error_kind(int status)
{
    switch (status) {
    case EXIT_CONNECT: return "connect";
    case EXIT_REFUSED: return "handshake";
    case EXIT_TLS: return "tls";
    case EXIT_ABNORMAL: return "abnormal";
    default: return "protocol";
    }
}

/* ----- sending -------------------------------------------------------------------------------- */

static void send_message(wsk_ws *ws, const char *data, size_t len)
{
    long r = wsk_send(ws, data, len, app.o.binary ? WSK_OP_BINARY : WSK_OP_TEXT,
                      app.o.compress != WSK_COMPRESS_DISABLE);
    if (r == 0) fail_line("message dropped: the connection is closing or its send queue is full");
    /* Backpressure: stop reading input until the queue drains (the drain handler). */
    if (r < 0 && !app.interactive) {
        app.input_paused = 1;
        input_stop();
    }
}

/* How long the server's close frame is awaited after ours: --wait, at least 1 s (-w 0 means
 * "close at once", not "give up at once"). */
static double close_bound(void)
{
    return app.o.wait > 1 ? app.o.wait : 1;
}

/* Starts the closing handshake and bounds the wait for the peer's close frame.  0, or
 * WSK_ERR_INVAL (nothing done) for a code or reason wsk_close refuses. */
static int start_close(unsigned code, const char *reason)
{
    if (!app.ws || wsk_ws_ready_state(app.ws) != WSK_OPEN) return 0;
    size_t len = reason ? strlen(reason) : 0;
    if (wsk_close(app.ws, code, reason, len) < 0) return WSK_ERR_INVAL;
    app.closing = 1;
    if (app.o.verbose) diag(CLI_YELLOW, "> close %u%s%s", code, len ? " " : "", len ? reason : "");
    ev_timer_stop(app.ev, &app.hold);
    ev_timer_set(&app.close_wait, close_bound(), 0);
    ev_timer_start(app.ev, &app.close_wait);
    if (!app.interactive) input_stop();
    return 0;
}

static wsk_ws *target(void)
{
    if (app.srv) return app.npeers ? app.peers[app.npeers - 1] : NULL;
    return app.ws && wsk_ws_ready_state(app.ws) == WSK_OPEN ? app.ws : NULL;
}

/* Sends to the connection, or with -l to every client. */
static void send_line(const char *p, size_t n)
{
    if (app.srv) {
        for (size_t i = 0; i < app.npeers; ++i) send_message(app.peers[i], p, n);
        if (!app.npeers) fail_line("no client connected");
        return;
    }
    if (!target()) {
        fail_line("not connected");
        return;
    }
    send_message(app.ws, p, n);
}

/* --slash: /ping, /pong, /close.  Returns 0 when the line is not a command. */
static int slash_command(const char *line)
{
    if (!app.o.slash || line[0] != '/' || line[1] == '/') return 0;
    const char *cmd = line + 1, *arg = strchr(cmd, ' ');
    size_t clen = arg ? (size_t)(arg - cmd) : strlen(cmd);
    arg = arg ? arg + 1 : "";
    wsk_ws *ws = target();
    if (clen == 4 && (!memcmp(cmd, "ping", 4) || !memcmp(cmd, "pong", 4))) {
        size_t len = strlen(arg);
        if (len > 125) {
            fail_line("control frame payloads are at most 125 bytes");
        } else if (!ws) {
            fail_line("not connected");
        } else {
            if (cmd[1] == 'i')
                wsk_ping(ws, arg, len);
            else
                wsk_pong(ws, arg, len);
            if (app.o.verbose) diag(CLI_YELLOW, "> %.4s %s", cmd, arg);
        }
    } else if (clen == 5 && !memcmp(cmd, "close", 5)) {
        unsigned long code = WSK_CLOSE_NORMAL;
        char num[8] = "";
        const char *reason = NULL;
        if (*arg) {
            size_t k = strcspn(arg, " ");
            if (k < sizeof num) memcpy(num, arg, k), num[k] = '\0';
            if (k >= sizeof num || cli_parse_ulong(num, 0, 65535, &code) < 0 ||
                !wsk_close_code_valid((unsigned)code)) {
                fail_line("invalid close code: 1000-1003, 1007-1014 or 3000-4999");
                return 1;
            }
            reason = arg[k] ? arg + k + 1 : NULL;
            if (reason && strlen(reason) > 123) {
                fail_line("close reasons are at most 123 bytes");
                return 1;
            }
        }
        int r = 0;
        if (!ws)
            fail_line("not connected");
        else if (app.srv)
            r = wsk_close(ws, (unsigned)code, reason, reason ? strlen(reason) : 0);
        else if ((r = start_close((unsigned)code, reason)) == 0)
            app.quitting = 1;
        if (r < 0) fail_line("close reasons are UTF-8");
    } else {
        fail_line("unknown command /%.*s (/ping, /pong, /close; '//' sends a '/')", (int)clen, cmd);
    }
    return 1;
}

static void handle_line(char *line, size_t len)
{
    if (len && line[len - 1] == '\r') line[--len] = '\0';
    if (slash_command(line)) return;
    if (app.o.slash && line[0] == '/' && line[1] == '/') ++line, --len;
    send_line(line, len);
}

/* ----- input ---------------------------------------------------------------------------------- */

static void input_ended(void)
{
    app.input_eof = 1;
    input_stop();
    if (app.srv) {
        app.quitting = 1;
        wsk_server_shutdown(app.srv, WSK_CLOSE_GOING_AWAY, "input ended", 2, srv_done);
        return;
    }
    if (app.o.nexecute) return;
    app.quitting = 1;
    /* Replies to the last lines may still be on their way (a server that answers
     * asynchronously stops answering once our close arrives): -w keeps listening first. */
    if (app.o.wait_given && app.o.wait > 0 && app.ws) {
        ev_timer_set(&app.hold, app.o.wait, 0);
        ev_timer_start(app.ev, &app.hold);
    } else {
        start_close(WSK_CLOSE_NORMAL, NULL);
    }
}

static char prompt[32];

static void on_rl_line(char *line)
{
    if (!line) {
        input_ended();
        return;
    }
    if (*line) add_history(line);
    /* libedit has printed the newline: what the line prints goes below it, and the prompt is
     * drawn once afterwards (a redraw now would repeat the line just typed). */
    app.in_line = 1;
    handle_line(line, strlen(line));
    app.in_line = 0;
    free(line);
    /* libedit leaves its callback mode (and raw mode) when it hands over a line, until the next
     * read; installing again now starts the next line at once: an empty line buffer, the
     * prompt drawn, and keys read one at a time so messages can arrive while one types. */
    if (app.rl_on) rl_callback_handler_install(prompt, on_rl_line);
}

/* Pipe mode: every complete line of what arrived is one message. */
static void read_lines(void)
{
    char buf[65536];
    ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) {
        if (app.line_len) { /* a last line without a newline */
            app.line[app.line_len] = '\0';
            handle_line(app.line, app.line_len);
            app.line_len = 0;
        }
        input_ended();
        return;
    }
    const char *p = buf, *end = buf + n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t take = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (app.line_len + take + 1 > app.line_cap) {
            size_t cap = app.line_cap ? app.line_cap : 4096;
            while (cap < app.line_len + take + 1) cap *= 2;
            char *q = cap <= LINE_MAX_ + 1 ? realloc(app.line, cap) : NULL;
            if (!q) {
                fail_line("input line longer than %u bytes", LINE_MAX_);
                app.line_len = 0;
                input_ended();
                return;
            }
            app.line = q;
            app.line_cap = cap;
        }
        memcpy(app.line + app.line_len, p, take);
        app.line_len += take;
        p += take;
        if (!nl) break;
        ++p;
        app.line[app.line_len] = '\0';
        handle_line(app.line, app.line_len);
        app.line_len = 0;
        if (app.finished || app.input_eof) return;
    }
}

static void on_input(struct ev_loop *ev, ev_io *w, int revents)
{
    (void)ev;
    (void)w;
    (void)revents;
    if (app.interactive)
        rl_callback_read_char();
    else
        read_lines();
}

static void rl_setup(void)
{
    if (app.rl_on) return;
    rl_catch_signals = 0;
    rl_catch_sigwinch = 1;
    /* \1 and \2 bracket the colour codes so libedit does not count them as columns.  libedit
     * prints such a sequence with the character after it, so the reset goes before the space:
     * at the very end of the prompt it would never be printed, and typed text would be green. */
    snprintf(prompt, sizeof prompt, "%s>%s ", app.color_out ? "\1\033[32m\2" : "",
             app.color_out ? "\1\033[0m\2" : "");
    using_history();
    rl_callback_handler_install(prompt, on_rl_line);
    app.rl_on = 1;
}

static void rl_teardown(void)
{
    if (!app.rl_on) return;
    /* Whatever runs in this terminal next starts with the default attributes. */
    fputs(app.color_out ? "\r\033[0m\033[K" : "\r\033[K", stdout);
    fflush(stdout);
    app.rl_on = 0;
    rl_callback_handler_remove();
}

static void input_start(void)
{
    if (app.o.nexecute || app.input_eof || app.finished || app.input_paused) return;
    if (app.interactive) rl_setup();
    if (!ev_is_active(&app.input)) ev_io_start(app.ev, &app.input);
}

static void input_stop(void)
{
    /* Line editing stays on between connections: typing then gets "not connected". */
    if (!app.interactive || app.input_eof || app.finished) ev_io_stop(app.ev, &app.input);
}

/* ----- the end -------------------------------------------------------------------------------- */

/* Stops everything of ours; the loop ends once the library has finished with its sockets. */
static void finish(int status)
{
    if (app.finished) return;
    app.finished = 1;
    app.exit_code = status;
    rl_teardown();
    ev_io_stop(app.ev, &app.input);
    ev_timer_stop(app.ev, &app.hold);
    ev_timer_stop(app.ev, &app.close_wait);
    ev_timer_stop(app.ev, &app.pinger);
    ev_timer_stop(app.ev, &app.retry);
    ev_signal_stop(app.ev, &app.sigint);
    ev_signal_stop(app.ev, &app.sigterm);
    ev_signal_stop(app.ev, &app.sighup);
    ev_signal_stop(app.ev, &app.sigquit);
}

static void on_retry(struct ev_loop *ev, ev_timer *w, int revents)
{
    (void)ev;
    (void)w;
    (void)revents;
    connect_now();
}

/* The first CTRL+C (or SIGTERM) closes gracefully; a second one, or one with nothing to close,
 * ends at once, as do SIGHUP and SIGQUIT (CTRL+\).  Either way the terminal gets its settings
 * and colours back (finish). */
static void on_signal(struct ev_loop *ev, ev_signal *w, int revents)
{
    (void)ev;
    (void)revents;
    app.quitting = 1;
    if (w->signum == SIGHUP || w->signum == SIGQUIT) app.interrupts++;
    if (++app.interrupts == 1) {
        if (app.srv) {
            wsk_server_shutdown(app.srv, WSK_CLOSE_GOING_AWAY, "interrupted", 2, srv_done);
            if (!app.interactive) ev_io_stop(app.ev, &app.input);
            return;
        }
        if (app.ws && wsk_ws_ready_state(app.ws) == WSK_OPEN) {
            start_close(WSK_CLOSE_NORMAL, NULL);
            return;
        }
    }
    wsk_ws *ws = app.ws;
    finish(EXIT_INTERRUPTED);
    if (ws) wsk_terminate(ws);
    if (app.srv) {
        wsk_server_free(app.srv);
        app.srv = NULL;
    }
}

/* ----- client handlers ------------------------------------------------------------------------ */

static void print_message(wsk_ws *ws, const void *data, size_t len, wsk_opcode op)
{
    int on = app.color_out;
    if (app.o.json) {
        cJSON *e = event_new("message");
        event_peer(e, ws);
        event_data(e, "data", "binary", data, len, op == WSK_OP_BINARY);
        event_emit(e);
        return;
    }
    out_begin();
    stamp(stdout, on);
    if (app.interactive) {
        fprintf(stdout, "%s< ", cli_color(on, CLI_CYAN));
        if (op == WSK_OP_BINARY) {
            fprintf(stdout, "binary message, %zu bytes%s\n", len, cli_color(on, CLI_RESET));
            cli_hexdump(stdout, data, len, "  ");
        } else {
            fwrite(data, 1, len, stdout);
            fprintf(stdout, "%s\n", cli_color(on, CLI_RESET));
        }
    } else {
        /* stdout carries the messages alone, one a line. */
        if (op == WSK_OP_BINARY && app.o.hex)
            cli_hex(stdout, data, len);
        else
            fwrite(data, 1, len, stdout);
        fputc('\n', stdout);
    }
    out_end();
}

static void on_message(wsk_ws *ws, const void *data, size_t len, wsk_opcode op)
{
    if (!app.first_msg) app.first_msg = ev_time();
    char warn[256];
    if (!app.tail || op != WSK_OP_TEXT || app.o.json)
        print_message(ws, data, len, op);
    else if (tail_message(app.tail, data, len, stdout, warn, sizeof warn))
        diag(CLI_YELLOW, "%s", warn);
}

/* --subscribe: a request of the broker's protocol. */
static void send_request(void *arg, const char *text, size_t len)
{
    wsk_send(arg, text, len, WSK_OP_TEXT, 0);
}

static void print_control(wsk_ws *ws, const char *what, const void *data, size_t len)
{
    char text[300];
    if (!app.o.show_ping_pong && !app.o.verbose) return;
    if (app.o.json) {
        cJSON *e = event_new(what);
        event_peer(e, ws);
        event_data(e, "data", "binary", data, len, 0);
        event_emit(e);
        return;
    }
    describe_payload(text, sizeof text, data, len);
    diag(CLI_YELLOW, "< %s %s", what, text);
}

static void on_ping(wsk_ws *ws, const void *data, size_t len)
{
    print_control(ws, "ping", data, len);
    if (app.o.verbose && !app.o.json) diag(CLI_YELLOW, "> pong (automatic answer)");
}

static void on_pong(wsk_ws *ws, const void *data, size_t len)
{
    print_control(ws, "pong", data, len);
}

static void on_drain(wsk_ws *ws)
{
    (void)ws;
    if (!app.input_paused) return;
    app.input_paused = 0;
    if (!app.closing) input_start();
}

static void on_hold(struct ev_loop *ev, ev_timer *w, int revents)
{
    (void)ev;
    (void)w;
    (void)revents;
    start_close(WSK_CLOSE_NORMAL, NULL);
}

static void on_close_wait(struct ev_loop *ev, ev_timer *w, int revents)
{
    (void)ev;
    (void)w;
    (void)revents;
    if (!app.ws) return;
    fail_line("no close frame from the server within %gs", close_bound());
    wsk_terminate(app.ws);
}

static void on_pinger(struct ev_loop *ev, ev_timer *w, int revents)
{
    (void)ev;
    (void)w;
    (void)revents;
    if (!target()) return;
    wsk_ping(app.ws, NULL, 0);
    if (app.o.verbose) diag(CLI_YELLOW, "> ping");
}

static void print_handshake(wsk_ws *ws)
{
    size_t n;
    const char *p = wsk_client_request_head(ws, &n);
    if (p) print_head("> ", p, n);
    p = wsk_client_response_head(ws, &n);
    if (p) print_head("< ", p, n);
}

static void on_open(wsk_ws *ws)
{
    const char *proto = wsk_ws_protocol(ws);
    app.opened = 1;
    app.backoff = 0;
    if (app.o.verbose && !app.o.json) print_handshake(ws);
    if (app.o.json) {
        cJSON *e = event_new("open");
        cJSON_AddStringToObject(e, "url", wsk_client_url(ws));
        cJSON_AddNumberToObject(e, "status", wsk_client_status(ws));
        cJSON_AddStringToObject(e, "protocol", proto);
        event_emit(e);
    } else if (app.interactive || app.o.verbose) {
        diag(CLI_GREEN, "Connected%s%s%s (press CTRL+C to quit)", *proto ? ", subprotocol " : "",
             proto, wsk_tls_resumed(ws) ? ", TLS session resumed" : "");
    }
    if (app.tail) tail_subscribe(app.tail, send_request, ws);
    for (size_t i = 0; i < app.o.nexecute; ++i)
        send_message(ws, app.o.execute[i], strlen(app.o.execute[i]));
    if (app.o.nexecute) {
        ev_timer_set(&app.hold, app.o.wait, 0);
        ev_timer_start(app.ev, &app.hold);
    }
    if (app.o.ping_interval > 0) {
        ev_timer_set(&app.pinger, app.o.ping_interval, app.o.ping_interval);
        ev_timer_start(app.ev, &app.pinger);
    }
    input_start();
}

/* The body of a refused upgrade usually says why: shown as text a line at a time (a hex dump
 * when it is not UTF-8), its first BODY_SHOWN bytes only, since an HTML error page or a file
 * served by mistake would bury the error line. */
static void print_body(const char *p, size_t len)
{
    while (len && (p[len - 1] == '\n' || p[len - 1] == '\r')) --len;
    size_t n = len > BODY_SHOWN ? BODY_SHOWN : len;
    /* Not inside a UTF-8 sequence: back to the start of the character cut. */
    if (n < len)
        while (n && ((unsigned char)p[n] & 0xc0) == 0x80) --n;
    if (!wsk_utf8_valid(p, n)) {
        out_begin();
        cli_hexdump(stderr, p, n, "  ");
        out_end();
    } else {
        print_head("  ", p, n);
    }
    if (n < len) diag(CLI_DIM, "  ... %zu more bytes", len - n);
}

static void on_error(wsk_ws *ws, int err, const char *msg)
{
    int http = wsk_client_status(ws);
    size_t blen = 0;
    const void *body = wsk_client_response_body(ws, &blen);
    app.status = status_of_error(err, http);
    if (app.o.verbose && !app.o.json && !app.opened) print_handshake(ws);
    if (app.o.json) {
        cJSON *e = event_new("error");
        cJSON_AddStringToObject(e, "error", error_kind(app.status));
        cJSON_AddStringToObject(e, "message", msg);
        if (http) cJSON_AddNumberToObject(e, "status", http);
        if (body) event_data(e, "body", "body_binary", body, blen, 0);
        event_emit(e);
    }
    fail_line("%s", msg);
    if (body && blen && !app.o.json) print_body(body, blen);
}

/* One --timing value: seconds, or why there is none (a step not reached reads 0, an unfinished
 * TLS handshake -1). */
static const char *timing_text(char *buf, size_t cap, double v, const char *none)
{
    if (v > 0)
        snprintf(buf, cap, "%.6fs", v);
    else
        snprintf(buf, cap, "%s", v < 0 ? "(not completed)" : none);
    return buf;
}

static void timing_json(cJSON *e, const char *key, double v)
{
    if (v > 0)
        cJSON_AddNumberToObject(e, key, v);
    else
        cJSON_AddNullToObject(e, key);
}

static void print_timing(wsk_ws *ws)
{
    wsk_timing t;
    double now = ev_time();
    wsk_client_timing(ws, &t);
    const char *url = wsk_client_url(ws);
    int tls = url && !strncasecmp(url, "wss:", 4);
    double first = app.first_msg ? app.first_msg - t.start : 0;
    if (app.o.json) {
        cJSON *e = event_new("timing");
        timing_json(e, "dns", t.dns);
        timing_json(e, "connect", t.connect);
        timing_json(e, "tls", t.tls);
        timing_json(e, "upgrade", t.upgrade);
        timing_json(e, "first_message", first);
        cJSON_AddNumberToObject(e, "total", now - t.start);
        cJSON_AddNumberToObject(e, "redirects", t.redirects);
        event_emit(e);
        return;
    }
    char b[5][24];
    diag(CLI_DIM,
         "     time_namelookup:  %s\n        time_connect:  %s\n     time_appconnect:  %s\n"
         "        time_upgrade:  %s\n   time_firstmessage:  %s\n          time_total:  "
         "%.6fs\n       num_redirects:  %u",
         timing_text(b[0], sizeof b[0], t.dns, "(not reached)"),
         timing_text(b[1], sizeof b[1], t.connect, "(not reached)"),
         timing_text(b[2], sizeof b[2], t.tls, tls ? "(not reached)" : "(no TLS)"),
         timing_text(b[3], sizeof b[3], t.upgrade, "(not reached)"),
         timing_text(b[4], sizeof b[4], first, "(no message)"), now - t.start, t.redirects);
}

static void on_close(wsk_ws *ws, unsigned code, const char *reason, size_t len)
{
    if (app.status < 0) app.status = app.opened ? status_of_close(code) : EXIT_CONNECT;
    if (app.o.json) {
        cJSON *e = event_new("close");
        cJSON_AddNumberToObject(e, "code", code);
        char *r = strndup(reason, len);
        cJSON_AddStringToObject(e, "reason", r ? r : "");
        free(r);
        event_emit(e);
    } else if (app.opened) {
        /* Quiet in pipe mode when all went well: stdout and stderr stay the script's. */
        if (app.interactive || app.o.verbose || app.status != EXIT_NORMAL)
            diag(app.status == EXIT_NORMAL ? CLI_GREEN : CLI_RED,
                 "Disconnected (code: %u, reason: \"%.*s\")", code, (int)len, reason);
    }
    if (app.o.timing) print_timing(ws);
    ev_timer_stop(app.ev, &app.hold);
    ev_timer_stop(app.ev, &app.close_wait);
    ev_timer_stop(app.ev, &app.pinger);
    app.ws = NULL;
    if (app.finished) return;
    app.exit_code = app.status;
    if (app.o.reconnect && !app.quitting && !app.input_eof) {
        app.backoff = app.backoff ? fmin(app.backoff * 2, 30) : 0.5;
        if (!app.o.json) diag(CLI_YELLOW, "reconnecting in %.1fs", app.backoff);
        if (!app.interactive) ev_io_stop(app.ev, &app.input);
        ev_timer_set(&app.retry, app.backoff, 0);
        ev_timer_start(app.ev, &app.retry);
        return;
    }
    finish(app.status);
}

static const wsk_handlers client_handlers = {
    .open = on_open,
    .message = on_message,
    .close = on_close,
    .drain = on_drain,
    .error = on_error,
    .ping = on_ping,
    .pong = on_pong,
};

static void on_log(void *arg, int level, const char *msg)
{
    (void)arg;
    /* Failures reach the error handlers, which say it once; the library's own lines (a
     * protocol error's log line repeats what the error handler gets) are for -v, except
     * errors such as an unreadable CA file, which nothing else reports. */
    if (level <= WSK_LOG_ERROR || app.o.verbose) diag(CLI_DIM, "%s: %s", PROG, msg);
}

static void connect_now(void)
{
    wsk_client_opts co;
    int err;
    wsk_client_opts_init(&co);
    co.headers = app.o.headers;
    co.nheaders = app.o.nheaders;
    co.protocols = app.o.protocols;
    co.nprotocols = app.o.nprotocols;
    co.origin = app.o.origin;
    co.auth = app.o.auth;
    co.host = app.o.host;
    co.proxy = app.o.proxy;
    co.connect_timeout = (unsigned)ceil(app.o.connect_timeout);
    co.follow_redirects = app.o.location;
    co.max_redirects = (unsigned)app.o.max_redirects;
    co.max_payload = app.o.max_payload;
    co.compress = app.o.compress;
    /* The closing handshake is bounded by close_wait (--wait); the library's close timeout,
     * in whole seconds, only bounds the wait for the server to close TCP after it. */
    co.close_timeout = (unsigned)ceil(close_bound()) + 1;
    cli_tls_client_opts(&app.o.tls, &co);
    /* A reconnection resumes the last TLS session: no key exchange, no certificate to check. */
    if (app.o.reconnect && !app.tls_session) app.tls_session = wsk_tls_session_new();
    co.tls_session = app.tls_session;
    app.opened = 0;
    app.closing = 0;
    app.status = -1;
    app.first_msg = 0;
    app.ws = wsk_connect(app.loop, app.o.url, &co, &client_handlers, NULL, &err);
    if (app.ws) return;
    if (err == WSK_ERR_URL)
        fail_line("invalid URL '%s' (ws://HOST[:PORT][/PATH] or wss://...)%s", app.o.url,
                  app.o.proxy ? " or proxy URL (http://HOST:PORT)" : "");
    else if (err == WSK_ERR_INVAL)
        fail_line("invalid request: a -H header is not 'Name: value', or a -s subprotocol is "
                  "not a token");
    else
        fail_line("cannot connect: %s", wsk_strerror(err));
    finish(err == WSK_ERR_URL || err == WSK_ERR_INVAL ? EXIT_USAGE : EXIT_CONNECT);
}

/* ----- listen mode ---------------------------------------------------------------------------- */

static int srv_upgrade(wsk_server *srv, const wsk_request *req, wsk_response *res)
{
    (void)srv;
    if (app.o.verbose && !app.o.json) {
        size_t n = wsk_request_header_count(req), ml, pl;
        const char *m = wsk_request_method(req, &ml), *p = wsk_request_path(req, &pl);
        diag(CLI_DIM, "< %.*s %.*s", (int)ml, m, (int)pl, p);
        for (size_t i = 0; i < n; ++i) {
            const char *name, *value;
            size_t nl, vl;
            if (wsk_request_header_at(req, i, &name, &nl, &value, &vl) == 0)
                diag(CLI_DIM, "< %.*s: %.*s", (int)nl, name, (int)vl, value);
        }
    }
    for (size_t i = 0; i < app.o.nprotocols; ++i) {
        if (wsk_request_offers_protocol(req, app.o.protocols[i])) {
            wsk_response_set_protocol(res, app.o.protocols[i]);
            break;
        }
    }
    return 0;
}

static void srv_open(wsk_ws *ws)
{
    char addr[64];
    if (app.npeers == app.peers_cap) {
        size_t cap = app.peers_cap ? app.peers_cap * 2 : 8;
        wsk_ws **p = realloc(app.peers, cap * sizeof *p);
        if (!p) {
            wsk_close(ws, WSK_CLOSE_INTERNAL, "out of memory", 13);
            return;
        }
        app.peers = p;
        app.peers_cap = cap;
    }
    app.peers[app.npeers++] = ws;
    if (app.o.json) {
        cJSON *e = event_new("open");
        event_peer(e, ws);
        cJSON_AddStringToObject(e, "protocol", wsk_ws_protocol(ws));
        event_emit(e);
    } else {
        diag(CLI_GREEN, "Client connected from %s", wsk_ws_remote_address(ws, addr, sizeof addr));
    }
    input_start();
}

static void srv_close(wsk_ws *ws, unsigned code, const char *reason, size_t len)
{
    char addr[64];
    for (size_t i = 0; i < app.npeers; ++i) {
        if (app.peers[i] == ws) {
            memmove(app.peers + i, app.peers + i + 1, (app.npeers - i - 1) * sizeof *app.peers);
            app.npeers--;
            break;
        }
    }
    if (app.o.json) {
        cJSON *e = event_new("close");
        event_peer(e, ws);
        cJSON_AddNumberToObject(e, "code", code);
        char *r = strndup(reason, len);
        cJSON_AddStringToObject(e, "reason", r ? r : "");
        free(r);
        event_emit(e);
    } else {
        diag(CLI_YELLOW, "Client %s disconnected (code: %u, reason: \"%.*s\")",
             wsk_ws_remote_address(ws, addr, sizeof addr), code, (int)len, reason);
    }
    if (!app.npeers && !app.interactive) ev_io_stop(app.ev, &app.input);
}

static void srv_error(wsk_ws *ws, int err, const char *msg)
{
    char addr[64];
    (void)err;
    fail_line("%s: %s", wsk_ws_remote_address(ws, addr, sizeof addr), msg);
}

static const wsk_handlers server_handlers = {
    .upgrade = srv_upgrade,
    .open = srv_open,
    .message = on_message,
    .close = srv_close,
    .drain = on_drain,
    .error = srv_error,
    .ping = on_ping,
    .pong = on_pong,
};

static int listen_now(void)
{
    char host[256];
    unsigned port;
    if (cli_parse_hostport(app.o.listen, host, sizeof host, &port) < 0)
        cli_usage_error(PROG, "invalid listen address '%s' ([HOST:]PORT)", app.o.listen);
    wsk_server_opts so;
    wsk_server_opts_init(&so);
    so.idle_timeout = 0; /* a debugging listener keeps quiet clients */
    so.max_payload = app.o.max_payload;
    so.compress = so.decompress = app.o.compress;
    app.srv = wsk_server_new(app.loop, &so, &server_handlers, NULL);
    if (!app.srv || wsk_server_listen(app.srv, *host ? host : "127.0.0.1", port) < 0) {
        fail_line("cannot listen on %s: %s", app.o.listen, strerror(errno));
        return EXIT_CONNECT;
    }
    if (!app.o.json && (app.interactive || app.o.verbose))
        diag(CLI_GREEN, "Listening on port %u (press CTRL+C to quit)", wsk_server_port(app.srv));
    return 0;
}

/* ----- options -------------------------------------------------------------------------------- */

static void parse_options(int argc, char **argv, struct options *o)
{
    const char *arg;
    int c;
    size_t max = (size_t)argc;
    o->headers = calloc(max, sizeof *o->headers);
    o->protocols = calloc(max, sizeof *o->protocols);
    o->execute = calloc(max, sizeof *o->execute);
    o->subscribe = calloc(max, sizeof *o->subscribe);
    if (!o->headers || !o->protocols || !o->execute || !o->subscribe)
        cli_usage_error(PROG, "out of memory");
    o->wait = 2;
    o->connect_timeout = 10;
    o->max_redirects = 10;
    o->max_payload = 16u << 20;
    while ((c = cli_next_option(argc, argv, options, &arg)) != -1) {
        switch (c) {
        case 'c': o->url = arg; break;
        case 'l': o->listen = arg; break;
        case 'H': o->headers[o->nheaders++] = arg; break;
        case 's': o->protocols[o->nprotocols++] = arg; break;
        case 'o': o->origin = arg; break;
        case 'p':
            /* npm wscat's option; versions before 13 are drafts nobody serves any more. */
            if (strcmp(arg, "13"))
                cli_usage_error(PROG, "protocol version %s: only 13 (RFC 6455) is supported", arg);
            break;
        case OPT_AUTH: o->auth = arg; break;
        case OPT_HOST: o->host = arg; break;
        case 'w':
            if (cli_parse_duration(arg, &o->wait) < 0)
                cli_usage_error(PROG, "invalid --wait '%s' (seconds)", arg);
            o->wait_given = 1;
            break;
        case 'x': o->execute[o->nexecute++] = arg; break;
        case OPT_SUBSCRIBE: o->subscribe[o->nsubscribe++] = arg; break;
        case OPT_OFFSET_FILE: o->offset_file = arg; break;
        case OPT_SINCE: o->since = 1; break;
        case 'b': o->binary = 1; break;
        case OPT_SLASH: o->slash = 1; break;
        case 'P': o->show_ping_pong = 1; break;
        case OPT_PING_INTERVAL:
            if (cli_parse_duration(arg, &o->ping_interval) < 0 || o->ping_interval <= 0)
                cli_usage_error(PROG, "invalid --ping-interval '%s' (seconds)", arg);
            break;
        case 'L': o->location = 1; break;
        case OPT_MAX_REDIRECTS:
            if (cli_parse_ulong(arg, 0, 1000, &o->max_redirects) < 0)
                cli_usage_error(PROG, "invalid --max-redirects '%s'", arg);
            break;
        case OPT_PROXY: o->proxy = arg; break;
        case OPT_CONNECT_TIMEOUT:
            if (cli_parse_duration(arg, &o->connect_timeout) < 0 || o->connect_timeout <= 0)
                cli_usage_error(PROG, "invalid --connect-timeout '%s' (seconds)", arg);
            break;
        case OPT_MAX_PAYLOAD:
            if (cli_parse_size(arg, &o->max_payload) < 0 || !o->max_payload)
                cli_usage_error(PROG, "invalid --max-payload '%s'", arg);
            break;
        case OPT_COMPRESS:
            if ((o->compress = wsk_compress_mode_parse(arg ? arg : "shared")) < 0)
                cli_usage_error(PROG, "invalid --compress mode '%s'", arg);
            break;
        case OPT_RECONNECT: o->reconnect = 1; break;
        case 'n': o->tls.no_check = 1; break;
        case OPT_HEX: o->hex = 1; break;
        case 'T': o->timestamps = 1; break;
        case OPT_JSON: o->json = 1; break;
        case OPT_TIMING: o->timing = 1; break;
        case 'v': o->verbose = 1; break;
        case OPT_NO_COLOR: o->no_color = 1; break;
        case 'h':
            fputs(usage_head, stdout);
            cli_print_options(stdout, options);
            fputs(usage_tail, stdout);
            exit(0);
        case 'V': cli_print_version(stdout, PROG); exit(0);
        default:
            if (cli_tls_option(c, arg, &o->tls)) break;
            fprintf(stderr, "Try '%s --help'.\n", PROG);
            exit(EXIT_USAGE);
        }
    }
    if (optind < argc && !o->url && !o->listen) o->url = argv[optind++];
    if (optind < argc) cli_usage_error(PROG, "unexpected argument '%s'", argv[optind]);
    if (!o->url && !o->listen)
        cli_usage_error(PROG, "give a URL to connect to (-c) or a port (-l)");
    if (o->url && o->listen) cli_usage_error(PROG, "-c and -l exclude each other");
    if (o->listen && (o->nexecute || o->reconnect || o->nsubscribe))
        cli_usage_error(PROG, "-x, --reconnect and --subscribe need -c");
    if ((o->since || o->offset_file) && !o->nsubscribe)
        cli_usage_error(PROG, "--since and --offset-file go with --subscribe");
    if (o->since && !o->offset_file) cli_usage_error(PROG, "--since reads --offset-file");
    cli_tls_check(PROG, &o->tls);
}

int main(int argc, char **argv)
{
    struct options *o = &app.o;
    parse_options(argc, argv, o);
    /* Line editing needs a terminal on both sides; JSON and -x are for scripts. */
    app.interactive = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO) && !o->json && !o->nexecute;
    app.color_out = cli_color_wanted(stdout, o->no_color);
    app.color_err = cli_color_wanted(stderr, o->no_color);
    app.status = -1;
    const char *err = NULL;
    if (o->nsubscribe &&
        !(app.tail = tail_new(o->subscribe, o->nsubscribe, o->offset_file, o->since, &err))) {
        fail_line("--offset-file %s: %s", o->offset_file ? o->offset_file : "", err);
        return CLI_EXIT_USAGE;
    }
    app.loop = wsk_loop_new(NULL);
    if (!app.loop) {
        fail_line("cannot create the event loop");
        return EXIT_CONNECT;
    }
    app.ev = wsk_loop_ev(app.loop);
    wsk_loop_set_log(app.loop, o->verbose ? WSK_LOG_INFO : WSK_LOG_WARN, on_log, NULL);
    ev_io_init(&app.input, on_input, STDIN_FILENO, EV_READ);
    ev_init(&app.hold, on_hold);
    ev_init(&app.close_wait, on_close_wait);
    ev_init(&app.pinger, on_pinger);
    ev_init(&app.retry, on_retry);
    ev_signal_init(&app.sigint, on_signal, SIGINT);
    ev_signal_init(&app.sigterm, on_signal, SIGTERM);
    ev_signal_init(&app.sighup, on_signal, SIGHUP);
    ev_signal_init(&app.sigquit, on_signal, SIGQUIT);
    ev_signal_start(app.ev, &app.sigint);
    ev_signal_start(app.ev, &app.sigterm);
    ev_signal_start(app.ev, &app.sighup);
    ev_signal_start(app.ev, &app.sigquit);

    if (o->listen) {
        int r = listen_now();
        if (r)
            finish(r);
        else if (app.interactive)
            rl_setup();
    } else {
        if (o->tls.no_check && !strncasecmp(o->url, "wss:", 4))
            diag(CLI_YELLOW,
                 "%s: warning: -n/-k: the server's certificate is not verified, so "
                 "anyone on the path can impersonate it (insecure)",
                 PROG);
        connect_now();
    }
    if (!app.finished) ev_run(app.ev, 0);
    if (app.srv) {
        /* Shut down (end of input or a signal): the sockets are gone or are dropped now. */
        finish(app.exit_code);
        wsk_server_free(app.srv);
        app.srv = NULL;
    }
    rl_teardown();
    wsk_loop_free(app.loop);
    wsk_tls_session_free(app.tls_session);
    free(app.line);
    free(app.peers);
    free(o->headers);
    free(o->protocols);
    free(o->execute);
    return app.exit_code;
}
