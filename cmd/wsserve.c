/* wsserve: quick WebSocket servers on libwskit.
 *
 *   wsserve --echo                  every message back to its sender, with its type
 *   wsserve --chat / --pubsub       rooms and a topic broker (serve_pubsub.c)
 */
#include "cli.h"
#include "serve_pubsub.h"
#include "wskit.h"

#include <ev.h>
#include <getopt.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LISTEN 8

static const char usage[] =
    "usage: wsserve MODE [options]\n"
    "\n"
    "Modes:\n"
    "  --echo                    send every message back to its sender, with its type\n"
    "%s"
    "\n"
    "Options:\n"
    "  -l, --listen HOST:PORT    address to listen on (repeatable; default 127.0.0.1:8080;\n"
    "                            [::1]:PORT for IPv6, *:PORT for every address)\n"
    "      --max-payload SIZE    largest message accepted, 1009 beyond (default 16M)\n"
    "      --idle-timeout SEC    close sockets idle this long, 0 = never (default 120)\n"
    "      --no-pings            do not ping idle sockets\n"
    "      --backpressure-limit SIZE  bytes queued per socket before sends are dropped (1M)\n"
    "      --close-on-backpressure    close (1008) instead of dropping\n"
    "      --max-connections N   refuse further connections (default: no limit)\n"
    "      --max-header SIZE     request head cap, 431 beyond (default 8K)\n"
    "      --handshake-timeout SEC    deadline for the request head (default 10)\n"
    "      --compress[=MODE]     permessage-deflate: shared (default), dedicated, 3KB..256KB\n"
    "      --tls-cert FILE       serve wss:// with this PEM certificate chain\n"
    "      --tls-key FILE        PEM private key of --tls-cert\n"
    "      --tls-key-password PW password of an encrypted key\n"
    "      --tls-client-ca FILE  require client certificates signed by this CA\n"
    "  -v, --verbose             log every connection and close (twice: debug)\n"
    "  -q, --quiet               log errors only\n"
    "  -h, --help                this help\n"
    "  -V, --version             print the version\n"
    "\n"
    "SIGINT or SIGTERM sends 1001 to every client, waits up to 3s for the closing handshakes and\n"
    "exits 0 (2 when queued data had to be dropped).\n";

struct app {
    wsk_loop *loop;
    wsk_server *srv;
    int verbose;
    int exit_code;
    ev_signal sigint, sigterm;
};

static struct app app;

/* ----- echo ----------------------------------------------------------------------------------- */

static void echo_message(wsk_ws *ws, const void *data, size_t len, wsk_opcode op)
{
    wsk_send(ws, data, len, op, 1);
}

static void log_open(wsk_ws *ws)
{
    char addr[64];
    if (app.verbose)
        fprintf(stderr, "wsserve: %s: open%s%s\n", wsk_ws_remote_address(ws, addr, sizeof addr),
                *wsk_ws_protocol(ws) ? ", protocol " : "", wsk_ws_protocol(ws));
}

static void log_close(wsk_ws *ws, unsigned code, const char *reason, size_t len)
{
    char addr[64];
    if (app.verbose)
        fprintf(stderr, "wsserve: %s: closed %u%s%.*s\n",
                wsk_ws_remote_address(ws, addr, sizeof addr), code, len ? " " : "", (int)len,
                reason);
}

/* A plain GET on the port says what this is and how to connect. */
static void page(wsk_server *srv, const wsk_request *req, wsk_response *res)
{
    size_t plen;
    const char *path = wsk_request_path(req, &plen);
    const char *host = wsk_request_header(req, "host", &plen);
    char body[1024];
    (void)path;
    (void)srv;
    int n = snprintf(body, sizeof body,
                     "wsserve %s: a WebSocket echo server (libwskit).\n"
                     "Connect with a WebSocket client, for example:\n"
                     "  wscat -c ws://%.*s/\n"
                     "Every message is sent back with its type (text or binary).\n",
                     WSK_VERSION, host ? (int)plen : 9, host ? host : "localhost");
    wsk_response_add_header(res, "Content-Type", "text/plain; charset=utf-8");
    wsk_response_append_body(res, body, (size_t)n);
}

/* ----- options ---------------------------------------------------------------------------------
 */

/* A number of seconds or a count that fits an unsigned. */
static int parse_uint(const char *s, unsigned *out)
{
    unsigned long v;
    if (cli_parse_ulong(s, 0, 0xFFFFFFFFul, &v) < 0) return -1;
    *out = (unsigned)v;
    return 0;
}

static void on_signal(struct ev_loop *ev, ev_signal *w, int revents);

static void shutdown_done(wsk_server *srv, size_t dropped)
{
    (void)srv;
    if (dropped) {
        fprintf(stderr, "wsserve: %zu connection(s) still had unsent data at exit\n", dropped);
        app.exit_code = 2;
    }
    ev_break(wsk_loop_ev(app.loop), EVBREAK_ALL);
}

static void on_signal(struct ev_loop *ev, ev_signal *w, int revents)
{
    (void)ev;
    (void)revents;
    static int again;
    if (again++) { /* a second signal: stop now */
        ev_break(wsk_loop_ev(app.loop), EVBREAK_ALL);
        return;
    }
    if (app.verbose) fprintf(stderr, "wsserve: signal %d, closing connections\n", w->signum);
    wsk_server_shutdown(app.srv, WSK_CLOSE_GOING_AWAY, "server shutting down", 3.0, shutdown_done);
}

static void log_line(void *arg, int level, const char *msg)
{
    (void)arg;
    (void)level;
    fprintf(stderr, "wsserve: %s\n", msg);
}

enum {
    O_ECHO = 256,
    O_CHAT,
    O_PUBSUB,
    O_MAXPAYLOAD,
    O_IDLE,
    O_NOPINGS,
    O_BPLIMIT,
    O_BPCLOSE,
    O_MAXCONN,
    O_MAXHEADER,
    O_HSTIMEOUT,
    O_COMPRESS,
    O_CERT,
    O_KEY,
    O_KEYPW,
    O_CLIENTCA,
};

static const struct option base_options[] = {
    {"echo", no_argument, 0, O_ECHO},
    {"chat", no_argument, 0, O_CHAT},
    {"pubsub", no_argument, 0, O_PUBSUB},
    {"listen", required_argument, 0, 'l'},
    {"max-payload", required_argument, 0, O_MAXPAYLOAD},
    {"idle-timeout", required_argument, 0, O_IDLE},
    {"no-pings", no_argument, 0, O_NOPINGS},
    {"backpressure-limit", required_argument, 0, O_BPLIMIT},
    {"close-on-backpressure", no_argument, 0, O_BPCLOSE},
    {"max-connections", required_argument, 0, O_MAXCONN},
    {"max-header", required_argument, 0, O_MAXHEADER},
    {"handshake-timeout", required_argument, 0, O_HSTIMEOUT},
    {"compress", optional_argument, 0, O_COMPRESS},
    {"tls-cert", required_argument, 0, O_CERT},
    {"tls-key", required_argument, 0, O_KEY},
    {"tls-key-password", required_argument, 0, O_KEYPW},
    {"tls-client-ca", required_argument, 0, O_CLIENTCA},
    {"verbose", no_argument, 0, 'v'},
    {"quiet", no_argument, 0, 'q'},
    {"help", no_argument, 0, 'h'},
    {"version", no_argument, 0, 'V'},
};
#define NBASE (sizeof base_options / sizeof base_options[0])

/* One option of wsserve's own: 1 when handled, -1 for a bad value. */
static int server_option(int c, const char *arg, wsk_server_opts *so)
{
    switch (c) {
    case O_MAXPAYLOAD:
        return cli_parse_size(arg, &so->max_payload) < 0 || !so->max_payload ? -1 : 1;
    case O_IDLE: return parse_uint(arg, &so->idle_timeout) < 0 ? -1 : 1;
    case O_NOPINGS: so->send_pings = 0; return 1;
    case O_BPLIMIT: return cli_parse_size(arg, &so->backpressure_limit) < 0 ? -1 : 1;
    case O_BPCLOSE: so->close_on_backpressure_limit = 1; return 1;
    case O_MAXCONN: return cli_parse_size(arg, &so->max_connections) < 0 ? -1 : 1;
    case O_MAXHEADER:
        return cli_parse_size(arg, &so->max_header) < 0 || so->max_header < 64 ? -1 : 1;
    case O_HSTIMEOUT: return parse_uint(arg, &so->handshake_timeout) < 0 ? -1 : 1;
    case O_COMPRESS:
        so->compress = so->decompress = wsk_compress_mode_parse(arg ? arg : "shared");
        return so->compress < 0 ? -1 : 1;
    case O_CERT: so->tls_cert = arg; return 1;
    case O_KEY: so->tls_key = arg; return 1;
    case O_KEYPW: so->tls_key_password = arg; return 1;
    case O_CLIENTCA: so->tls_client_ca = arg; return 1;
    default: return 0;
    }
}

int main(int argc, char **argv)
{
    struct option opts[NBASE + SERVE_PUBSUB_NOPTS + 1];
    memcpy(opts, base_options, sizeof base_options);
    memcpy(opts + NBASE, serve_pubsub_longopts, sizeof serve_pubsub_longopts);
    memset(&opts[NBASE + SERVE_PUBSUB_NOPTS], 0, sizeof opts[0]);

    wsk_server_opts so;
    wsk_server_opts_init(&so);
    struct chat_opts co;
    struct pubsub_opts po;
    serve_chat_opts_init(&co);
    serve_pubsub_opts_init(&po);
    const char *listen[MAX_LISTEN];
    int nlisten = 0, mode = 0, quiet = 0, c, idx;

    while ((c = getopt_long(argc, argv, "l:vqhV", opts, &idx)) != -1) {
        int r = 1;
        switch (c) {
        case O_ECHO:
        case O_CHAT:
        case O_PUBSUB:
            if (mode && mode != c) cli_usage_error("wsserve", "choose one mode");
            mode = c;
            break;
        case 'l':
            if (nlisten < MAX_LISTEN)
                listen[nlisten++] = optarg;
            else
                cli_usage_error("wsserve", "at most %d --listen", MAX_LISTEN);
            break;
        case 'v': app.verbose++; break;
        case 'q': quiet = 1; break;
        case 'h': printf(usage, serve_pubsub_usage); return 0;
        case 'V': cli_print_version(stdout, "wsserve"); return 0;
        case '?': fprintf(stderr, "Try 'wsserve --help'.\n"); return 1;
        default:
            r = server_option(c, optarg, &so);
            if (r == 0) r = serve_pubsub_option(c, optarg, &co, &po);
            if (r == 0) return 1;
            break;
        }
        if (r < 0)
            cli_usage_error("wsserve", "invalid value for --%s: '%s'", opts[idx].name,
                            optarg ? optarg : "");
    }
    if (optind < argc) cli_usage_error("wsserve", "unexpected argument '%s'", argv[optind]);
    if (!mode) cli_usage_error("wsserve", "choose a mode: --echo, --chat or --pubsub");
    if (!!so.tls_cert != !!so.tls_key)
        cli_usage_error("wsserve", "--tls-cert and --tls-key go together");

    wsk_handlers h = {.open = log_open, .close = log_close};
    if (mode == O_CHAT) {
        co.verbose = app.verbose;
        if (serve_chat_setup(&so, &h, &co) < 0) return 1;
    } else if (mode == O_PUBSUB) {
        po.verbose = app.verbose;
        if (serve_pubsub_setup(&so, &h, &po) < 0) return 1;
    } else {
        h.message = echo_message;
        h.request = page;
    }
    const char *mode_name = mode == O_CHAT ? "chat" : mode == O_PUBSUB ? "pubsub" : "echo";

    signal(SIGPIPE, SIG_IGN);
    app.loop = wsk_loop_new(NULL);
    if (!app.loop) return 1;
    wsk_loop_set_log(app.loop,
                     quiet             ? WSK_LOG_ERROR
                     : app.verbose > 1 ? WSK_LOG_DEBUG
                     : app.verbose     ? WSK_LOG_INFO
                                       : WSK_LOG_WARN,
                     log_line, NULL);
    app.srv = wsk_server_new(app.loop, &so, &h, NULL);
    if (!app.srv) {
        fprintf(stderr, "wsserve: cannot start the server\n");
        return 1;
    }
    if (!nlisten) listen[nlisten++] = "127.0.0.1:8080";
    for (int i = 0; i < nlisten; i++) {
        char host[256];
        unsigned port;
        if (cli_parse_hostport(listen[i], host, sizeof host, &port) < 0)
            cli_usage_error("wsserve", "invalid --listen address '%s' (HOST:PORT)", listen[i]);
        int r = wsk_server_listen(app.srv, host, port);
        if (r < 0) {
            fprintf(stderr, "wsserve: cannot listen on %s: %s\n", listen[i],
                    r == WSK_ERR_DNS ? "unknown host" : strerror(errno));
            return 1;
        }
        if (!quiet) {
            int v6 = strchr(host, ':') != NULL;
            fprintf(stderr, "wsserve: listening on %s://%s%s%s:%u/ (%s)\n",
                    so.tls_cert ? "wss" : "ws", v6 ? "[" : "", *host ? host : "127.0.0.1",
                    v6 ? "]" : "", port ? port : wsk_server_port(app.srv), mode_name);
        }
    }
    ev_signal_init(&app.sigint, on_signal, SIGINT);
    ev_signal_init(&app.sigterm, on_signal, SIGTERM);
    ev_signal_start(wsk_loop_ev(app.loop), &app.sigint);
    ev_signal_start(wsk_loop_ev(app.loop), &app.sigterm);
    ev_run(wsk_loop_ev(app.loop), 0);
    wsk_server_free(app.srv);
    serve_pubsub_cleanup();
    wsk_loop_free(app.loop);
    return app.exit_code;
}
