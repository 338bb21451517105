/* wsserve: quick WebSocket servers on libwskit (wsserve(1)).
 *
 * This file parses the options, wraps the chosen mode's handlers with the log lines of -v and
 * runs the server until a signal.  The modes are in serve_*.c, one serve_mode each (serve.h);
 * a new mode is one file and one line in `modes` below. */
#include "cli.h"
#include "serve.h"
#include "wskit.h"

#include <errno.h>
#include <ev.h>
#include <malloc.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROG        "wsserve"
#define MAX_LISTEN  8
#define MAX_BRIDGE  16
#define MAX_THREADS 256
/* --accept without the option: see scripts/bench-threads and the README for why. */
#define DEFAULT_ACCEPT WSK_ACCEPT_ROUND_ROBIN

static const serve_mode *const modes[] = {&serve_echo, &serve_chat,     &serve_pubsub,
                                          &serve_exec, &serve_exec_dir, &serve_exec_shared};
#define NMODES (sizeof modes / sizeof modes[0])

enum {
    O_MODE = 256,
    O_MAXPAYLOAD,
    O_IDLE,
    O_NOPINGS,
    O_BPLIMIT,
    O_BPCLOSE,
    O_MAXCONN,
    O_MAXHEADER,
    O_HSTIMEOUT,
    O_COMPRESS,
    O_COMPRESSLEVEL,
    O_CERT,
    O_KEY,
    O_KEYPW,
    O_CLIENTCA,
    O_REUSEPORT,
    O_BRIDGE,
    O_BRIDGEPREFIX,
    O_BRIDGESECRET,
    O_METRICS,
    O_METRICSPATH,
    O_NOCONSOLE,
    O_THREADS,
    O_ACCEPT,
};

/* The options of every mode; each mode adds its own (serve_mode.options). */
static const cli_option options[] = {
    {"listen", 'l', "HOST:PORT", "listen here, repeatable (127.0.0.1:8080; [::1]:PORT; *:PORT)"},
    {"max-payload", O_MAXPAYLOAD, "SIZE", "largest message accepted, 1009 beyond (default 16M)"},
    {"idle-timeout", O_IDLE, "DURATION", "close sockets idle this long, 0 = never (default 120s)"},
    {"no-pings", O_NOPINGS, NULL, "do not ping idle sockets"},
    {"backpressure-limit", O_BPLIMIT, "SIZE",
     "bytes queued per socket before sends are dropped (1M)"},
    {"close-on-backpressure", O_BPCLOSE, NULL, "close (1008) instead of dropping"},
    {"max-connections", O_MAXCONN, "N", "refuse further connections (default: no limit)"},
    {"reuseport", O_REUSEPORT, NULL, "SO_REUSEPORT: processes with it share the --listen port"},
    {"bridge", O_BRIDGE, "URL", "share topics with other nodes through this engine (below)"},
    {"bridge-prefix", O_BRIDGEPREFIX, "P", "engine channel names are P + topic (default wskit:)"},
    {"bridge-token-file", O_BRIDGESECRET, "FILE",
     "the engine's NATS token or Redis password: FILE's first line"},
    {"max-header", O_MAXHEADER, "SIZE", "request head cap, 431 beyond (default 8K)"},
    {"handshake-timeout", O_HSTIMEOUT, "DURATION", "deadline for the request head (default 10s)"},
    {"compress", O_COMPRESS, "[=MODE]",
     "permessage-deflate: shared (default), dedicated, 3KB..256KB"},
    {"compress-level", O_COMPRESSLEVEL, "N", "deflate level 1 (fastest) .. 9 (smallest); 6"},
    {"tls-cert", O_CERT, "FILE", "serve wss:// with this PEM certificate chain"},
    {"tls-key", O_KEY, "FILE", "PEM private key of --tls-cert"},
    {"tls-key-password", O_KEYPW, "PW", "password of an encrypted key"},
    {"tls-client-ca", O_CLIENTCA, "FILE", "require client certificates signed by this CA"},
    {"metrics", O_METRICS, "[HOST:]PORT", "Prometheus metrics at /metrics on this listener"},
    {"metrics-path", O_METRICSPATH, "PATH", "the metrics at PATH of the main port (token guarded)"},
    {"no-console", O_NOCONSOLE, NULL, "browsers get the text page, not the console page"},
    {"threads", O_THREADS, "N", "N loops on N threads, one server (default 1; auto: the CPUs)"},
    {"accept", O_ACCEPT, "HOW",
     "with --threads: one (default; one accepts, deals round-robin) or reuseport"},
    {"verbose", 'v', NULL, "log every request, upgrade, connection and close (twice: debug)"},
    {"quiet", 'q', NULL, "log errors only"},
    {"help", 'h', NULL, "this help"},
    {"version", 'V', NULL, "print the version"},
    {NULL, 0, NULL, NULL},
};

static const char usage_tail[] =
    "\n"
    "Sizes: 16, 64K, 64KiB, 16M.  Durations: 500ms, 10s, 2m (whole seconds, rounded up).\n"
    "Engines: redis://[:PASSWORD@]HOST:PORT[/DB] (repeat --bridge to shard topics over several),\n"
    "nats://[USER:PASSWORD@|TOKEN@]HOST:PORT[,HOST:PORT...][?storage=memory] (a cluster's seed\n"
    "URLs; storage: where JetStream keeps the streams a node makes, file by default).\n"
    "SIGINT or SIGTERM sends 1001 to every client, waits up to 3s for the closing handshakes and\n"
    "exits 0 (2 when queued data had to be dropped).\n";

static void usage(void)
{
    printf("usage: wsserve MODE [options]\n"
           "       wsserve [options] -- PROGRAM [ARGS...]   (--exec without a shell)\n\nModes:\n");
    for (size_t i = 0; i < NMODES; i++) {
        char flag[48];
        snprintf(flag, sizeof flag, "--%s%s%s", modes[i]->name, modes[i]->arg ? " " : "",
                 modes[i]->arg ? modes[i]->arg : "");
        printf("  %-27s %s\n", flag, modes[i]->help);
        if (modes[i]->options) cli_print_options(stdout, modes[i]->options);
    }
    printf("\nOptions:\n");
    cli_print_options(stdout, options);
    fputs(usage_tail, stdout);
}

/* ----- logging: the handlers of -v around the mode's ------------------------------------------ */

/* One line per request: the path without its query, which may hold a ?token=. */
static void access_log(const struct serve *sv, const wsk_request *req, int status, int upgrade)
{
    char addr[64];
    size_t mlen, plen;
    const char *method = wsk_request_method(req, &mlen);
    const char *path = wsk_request_path(req, &plen);
    serve_log(sv, "%s: \"%.*s %.*s\" %d%s", wsk_request_remote_address(req, addr, sizeof addr),
              (int)mlen, method, (int)(plen > 512 ? 512 : plen), path, status,
              !upgrade        ? ""
              : status == 101 ? " websocket"
                              : " (upgrade refused)");
}

static int on_upgrade(wsk_server *srv, const wsk_request *req, wsk_response *res)
{
    struct serve *sv = serve_of(srv);
    int st = sv->mode_h.upgrade ? sv->mode_h.upgrade(srv, req, res) : 0;
    if (sv->verbose) access_log(sv, req, st ? st : 101, 1);
    return st;
}

static void on_request(wsk_server *srv, const wsk_request *req, wsk_response *res)
{
    struct serve *sv = serve_of(srv);
    int st = serve_metrics_request(sv, req, res);
    if (!st) st = sv->mode->request(sv, req, res);
    wsk_response_set_status(res, st);
    if (sv->verbose) access_log(sv, req, st, 0);
}

static void on_open(wsk_ws *ws)
{
    struct serve *sv = serve_of(wsk_ws_server(ws));
    char addr[64];
    char thread[24] = "";
    /* Which thread a client landed on, with --threads: tests and benchmarks count them. */
    if (sv->threads > 1) snprintf(thread, sizeof thread, ", thread %u", sv->thread);
    if (sv->verbose)
        serve_log(sv, "%s: open%s%s%s", wsk_ws_remote_address(ws, addr, sizeof addr),
                  *wsk_ws_protocol(ws) ? ", protocol " : "", wsk_ws_protocol(ws), thread);
    if (sv->mode_h.open) sv->mode_h.open(ws);
}

static void on_close(wsk_ws *ws, unsigned code, const char *reason, size_t len)
{
    struct serve *sv = serve_of(wsk_ws_server(ws));
    char addr[64];
    if (sv->verbose)
        serve_log(sv, "%s: closed %u%s%.*s", wsk_ws_remote_address(ws, addr, sizeof addr), code,
                  len ? " " : "", (int)len, reason);
    if (sv->mode_h.close) sv->mode_h.close(ws, code, reason, len);
}

static void log_line(void *arg, int level, const char *msg)
{
    (void)level;
    serve_log(arg, "%s", msg);
}

/* ----- options -------------------------------------------------------------------------------- */

/* What the command line asks for. */
struct config {
    const serve_mode *mode;
    size_t mode_index;                    /* in modes[] */
    void *mode_config[NMODES];            /* each mode's option values */
    const cli_option *mode_given[NMODES]; /* the first option of each mode on the line */
    const char *mode_arg;                 /* the mode flag's argument */
    wsk_server_opts so;
    const char *listen[MAX_LISTEN];
    int nlisten, verbose, quiet;
    const char *bridge[MAX_BRIDGE], *bridge_prefix, *bridge_secret;
    int nbridge;
    const char *metrics, *metrics_path;
    int no_console;
    unsigned threads; /* --threads: servers, each on its own loop and thread */
    unsigned accept;  /* --accept: WSK_ACCEPT_ROUND_ROBIN or WSK_ACCEPT_REUSEPORT */
};

/* Whole seconds, rounded up (the library's timers count seconds). */
static int parse_seconds(const char *s, unsigned *out)
{
    double v;
    if (cli_parse_duration(s, &v) < 0 || v > 4e9) return -1;
    *out = (unsigned)ceil(v);
    return 0;
}

/* --threads N (1 to MAX_THREADS) or "auto": the CPUs online. */
static int parse_threads(const char *s, unsigned *out)
{
    unsigned long n;
    if (!strcmp(s, "auto")) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n = cpus < 1 ? 1 : cpus > MAX_THREADS ? MAX_THREADS : (unsigned long)cpus;
    } else if (cli_parse_ulong(s, 1, MAX_THREADS, &n) < 0) {
        return -1;
    }
    *out = (unsigned)n;
    return 0;
}

/* One common option: 0, or -1 for a bad value. */
static int server_option(struct config *c, int key, const char *arg)
{
    wsk_server_opts *so = &c->so;
    switch (key) {
    case 'l':
        if (c->nlisten == MAX_LISTEN) cli_usage_error(PROG, "at most %d --listen", MAX_LISTEN);
        c->listen[c->nlisten++] = arg;
        return 0;
    case 'v': c->verbose++; return 0;
    case 'q': c->quiet = 1; return 0;
    case O_MAXPAYLOAD:
        return cli_parse_size(arg, &so->max_payload) < 0 || !so->max_payload ? -1 : 0;
    case O_IDLE: return parse_seconds(arg, &so->idle_timeout);
    case O_NOPINGS: so->send_pings = 0; return 0;
    case O_BPLIMIT: return cli_parse_size(arg, &so->backpressure_limit);
    case O_BPCLOSE: so->close_on_backpressure_limit = 1; return 0;
    case O_MAXCONN: return cli_parse_size(arg, &so->max_connections);
    case O_REUSEPORT: so->reuse_port = 1; return 0;
    case O_BRIDGE:
        if (c->nbridge == MAX_BRIDGE) cli_usage_error(PROG, "at most %d --bridge", MAX_BRIDGE);
        /* hiredis 0.14 (Debian's) has no TLS: say so, rather than "invalid URL" at start. */
        if (!strncmp(arg, "rediss://", 9))
            cli_usage_error(PROG, "--bridge rediss://: Redis over TLS is not supported (this "
                                  "hiredis has no TLS); reach it through a TLS tunnel as redis://");
        if (strncmp(arg, "redis://", 8) && strncmp(arg, "nats://", 7))
            cli_usage_error(PROG, "--bridge takes redis://... or nats://... URLs");
        c->bridge[c->nbridge++] = arg;
        return 0;
    case O_BRIDGEPREFIX: c->bridge_prefix = arg; return strlen(arg) > 64 ? -1 : 0;
    case O_BRIDGESECRET: c->bridge_secret = arg; return 0;
    case O_METRICS: c->metrics = arg; return 0;
    case O_METRICSPATH: c->metrics_path = arg; return *arg == '/' ? 0 : -1;
    case O_NOCONSOLE: c->no_console = 1; return 0;
    case O_THREADS: return parse_threads(arg, &c->threads);
    case O_ACCEPT:
        if (!strcmp(arg, "one"))
            c->accept = WSK_ACCEPT_ROUND_ROBIN;
        else if (!strcmp(arg, "reuseport"))
            c->accept = WSK_ACCEPT_REUSEPORT;
        else
            return -1;
        return 0;
    case O_MAXHEADER:
        return cli_parse_size(arg, &so->max_header) < 0 || so->max_header < 64 ? -1 : 0;
    case O_HSTIMEOUT: return parse_seconds(arg, &so->handshake_timeout);
    case O_COMPRESS:
        so->compress = so->decompress = wsk_compress_mode_parse(arg ? arg : "shared");
        return so->compress < 0 ? -1 : 0;
    case O_COMPRESSLEVEL: {
        unsigned long n;
        if (cli_parse_ulong(arg, 1, 9, &n) < 0) return -1;
        so->compress_level = (int)n;
        return 0;
    }
    case O_CERT: so->tls_cert = arg; return 0;
    case O_KEY: so->tls_key = arg; return 0;
    case O_KEYPW: so->tls_key_password = arg; return 0;
    case O_CLIENTCA: so->tls_client_ca = arg; return 0;
    default: return -1;
    }
}

/* The mode whose own table holds opt, or -1 for a common option. */
static int owner_of(const cli_option *opt)
{
    for (size_t i = 0; i < NMODES; i++)
        for (const cli_option *o = modes[i]->options; o && o->name; o++)
            if (o == opt) return (int)i;
    return -1;
}

/* The entry of mode m's own table named like opt, or NULL. */
static const cli_option *named_in(const serve_mode *m, const cli_option *opt)
{
    for (const cli_option *o = m->options; o && o->name; o++)
        if (!strcmp(o->name, opt->name)) return o;
    return NULL;
}

/* The mode opt selects, or -1 when it is no mode flag. */
static int mode_flag(const cli_option *mode_flags, const cli_option *opt)
{
    for (size_t i = 0; i < NMODES; i++)
        if (opt == &mode_flags[i]) return (int)i;
    return -1;
}

static void parse(int argc, char **argv, struct config *c)
{
    cli_option mode_flags[NMODES + 1];
    const cli_option *tables[NMODES + 3];
    size_t nt = 0;
    tables[nt++] = options;
    tables[nt++] = mode_flags;
    for (size_t i = 0; i < NMODES; i++) {
        const serve_mode *m = modes[i];
        mode_flags[i] = (cli_option){m->name, O_MODE, m->arg, m->help};
        if (m->options) tables[nt++] = m->options;
        c->mode_config[i] = calloc(1, m->config_size ? m->config_size : 1);
        if (!c->mode_config[i]) exit(1);
        if (m->config_init) m->config_init(c->mode_config[i]);
    }
    mode_flags[NMODES] = (cli_option){NULL, 0, NULL, NULL};
    tables[nt] = NULL;

    const cli_option *opt;
    const char *arg;
    int key;
    /* Mode options wait for the mode: a name several modes have (--passenv, --env) is the
     * chosen mode's, wherever it stands on the line. */
    struct {
        const cli_option *opt;
        const char *arg;
    } *given = calloc((size_t)argc + 1, sizeof *given);
    size_t ngiven = 0;
    if (!given) exit(1);
    while ((key = cli_next_option_in(argc, argv, tables, &opt, &arg)) != -1) {
        if (key == '?') {
            fprintf(stderr, "Try 'wsserve --help'.\n");
            exit(CLI_EXIT_USAGE);
        }
        if (key == 'h') {
            usage();
            exit(0);
        }
        if (key == 'V') {
            cli_print_version(stdout, PROG);
            exit(0);
        }
        /* Keys repeat across the tables: the entry says which table an option is from. */
        int r = 0, i = owner_of(opt), m = mode_flag(mode_flags, opt);
        if (m >= 0) {
            if (c->mode && c->mode != modes[m])
                cli_usage_error(PROG, "choose one mode: --%s or --%s", c->mode->name,
                                modes[m]->name);
            c->mode = modes[m];
            c->mode_index = (size_t)m;
            c->mode_arg = arg;
        } else if (i >= 0) {
            given[ngiven].opt = opt;
            given[ngiven++].arg = arg;
        } else {
            r = server_option(c, key, arg);
        }
        if (r < 0) cli_usage_error(PROG, "invalid value for --%s: '%s'", opt->name, arg ? arg : "");
    }
    /* Operands alone are websocketd's command line: `wsserve -- PROGRAM ARGS...`. */
    const serve_mode *implied = optind < argc && !c->mode ? &serve_exec : NULL;
    if (!c->mode && !implied)
        cli_usage_error(PROG, "choose a mode: --echo, --chat, --pubsub or --exec");
    if (implied || c->mode->shares)
        for (size_t i = 0; i < NMODES; i++)
            if (modes[i] == (implied ? implied : c->mode->shares)) c->mode_index = i;
    if (implied) c->mode = implied;
    for (size_t k = 0; k < ngiven; k++) {
        const cli_option *o = given[k].opt, *mine = named_in(modes[c->mode_index], o);
        int i = mine ? (int)c->mode_index : owner_of(o);
        if (mine) o = mine;
        if (!c->mode_given[i]) c->mode_given[i] = o;
        if (modes[i]->option(c->mode_config[i], o, given[k].arg) < 0)
            cli_usage_error(PROG, "invalid value for --%s: '%s'", o->name,
                            given[k].arg ? given[k].arg : "");
    }
    free(given);
    if (c->mode->operands) {
        if (c->mode->operands(c->mode_config[c->mode_index], c->mode_arg, argc - optind,
                              argv + optind) < 0)
            cli_usage_error(PROG, "invalid arguments for --%s", c->mode->name);
    } else if (optind < argc) {
        cli_usage_error(PROG, "unexpected argument '%s'", argv[optind]);
    }
    /* A flag that would do nothing is a mistake the user wants to hear about. */
    for (size_t i = 0; i < NMODES; i++)
        if (c->mode_given[i] && modes[i] != c->mode && modes[i] != c->mode->shares)
            cli_usage_error(PROG, "--%s is an option of --%s: it does nothing with --%s",
                            c->mode_given[i]->name, modes[i]->name, c->mode->name);
    const wsk_server_opts *so = &c->so;
    if (!!so->tls_cert != !!so->tls_key)
        cli_usage_error(PROG,
                        so->tls_cert ? "--tls-cert needs --tls-key" : "--tls-key needs --tls-cert");
    if (!so->tls_cert && (so->tls_key_password || so->tls_client_ca))
        cli_usage_error(PROG, "--%s does nothing without --tls-cert",
                        so->tls_key_password ? "tls-key-password" : "tls-client-ca");
    if (c->verbose && c->quiet) cli_usage_error(PROG, "-v and -q exclude each other");
    if ((c->bridge_prefix || c->bridge_secret) && !c->nbridge)
        cli_usage_error(PROG, "--%s needs --bridge",
                        c->bridge_prefix ? "bridge-prefix" : "bridge-token-file");
}

/* --bridge-token-file: the secret goes into each URL that has no user info of its own, as a
 * NATS token (nats://SECRET@...) or a Redis password (redis://:SECRET@...), so that it never
 * shows in argv.  urls[] are malloc'd; 0, or -1 after saying why. */
static int bridge_secret(const struct config *c, char **urls)
{
    char secret[1025];
    long n = cli_read_secret(PROG, "bridge-token-file", c->bridge_secret, secret, sizeof secret);
    /* The URL parsers split user info at these, and do not percent-decode. */
    if (n > 0 && secret[strcspn(secret, "@:/,%?# \t")]) {
        fprintf(stderr, PROG ": --bridge-token-file: the secret cannot hold @:/,%%?# or blanks\n");
        n = -1;
    }
    for (int i = 0; n > 0 && i < c->nbridge; i++) {
        const char *u = c->bridge[i], *rest = strstr(u, "://");
        rest = rest ? rest + 3 : u;
        size_t auth = strcspn(rest, "/,"), len = strlen(u) + (size_t)n + 3;
        int redis = !strncmp(u, "redis", 5);
        if (!(urls[i] = malloc(len)))
            n = -1;
        else if (memchr(rest, '@', auth))
            snprintf(urls[i], len, "%s", u);
        else
            snprintf(urls[i], len, "%.*s%s%s@%s", (int)(rest - u), u, redis ? ":" : "", secret,
                     rest);
    }
    memset(secret, 0, sizeof secret);
    return n > 0 ? 0 : -1;
}

/* ----- running -------------------------------------------------------------------------------- */

/* The process: its servers (one per loop and thread with --threads), the group that runs them
 * and the signals that stop them.  On main's stack. */
struct proc {
    struct serve *sv; /* sv[0..n) */
    unsigned n;
    wsk_group *group;   /* n > 1: the loops, run by wsk_group_run */
    wsk_loop *loop;     /* n == 1: the one loop, on ev */
    struct ev_loop *ev; /* n == 1 */
    ev_signal sigint, sigterm;
    int signals;
    int listening; /* the signals close the clients from then on */
};

static wsk_loop *loop_of(const struct proc *p, unsigned i)
{
    return p->group ? wsk_group_loop(p->group, i) : p->loop;
}

static void shutdown_done(wsk_server *srv, size_t dropped)
{
    struct serve *sv = serve_of(srv);
    if (dropped) {
        serve_log(sv, "%zu connection(s) still had unsent data at exit", dropped);
        sv->exit_code = 2;
    }
    ev_break(wsk_loop_ev(wsk_server_loop(srv)), EVBREAK_ALL);
}

/* On a server's own loop: 1001 to its clients, then its loop ends once they are gone. */
static void begin_shutdown(void *arg, wsk_loop *loop)
{
    struct serve *sv = arg;
    (void)loop;
    wsk_server_shutdown(sv->srv, WSK_CLOSE_GOING_AWAY, "server shutting down", 3.0, shutdown_done);
}

static void stop_now(void *arg, wsk_loop *loop)
{
    (void)arg;
    ev_break(wsk_loop_ev(loop), EVBREAK_ALL);
}

/* fn(sv[i], its loop) on every server's loop, from loop 0's thread: loop 0 at once, the
 * others through the group (each server's calls stay on its own thread). */
static void on_every_loop(struct proc *p, void (*fn)(void *arg, wsk_loop *loop))
{
    for (unsigned i = 1; i < p->n; i++)
        if (wsk_group_call(p->group, i, fn, &p->sv[i]) < 0)
            serve_log(&p->sv[i], "out of memory: thread %u cannot be told to stop", i);
    fn(&p->sv[0], loop_of(p, 0));
}

static void on_signal(struct ev_loop *ev, ev_signal *w, int revents)
{
    struct proc *p = w->data;
    (void)ev;
    (void)revents;
    if (!p->listening) { /* during a start-up wait (a mode's before_listen): never listen */
        p->sv->stopping = 1;
        p->signals++;
        return;
    }
    if (p->signals++) { /* a second signal: stop now */
        on_every_loop(p, stop_now);
        return;
    }
    if (p->sv->verbose) serve_log(p->sv, "signal %d, closing connections", w->signum);
    on_every_loop(p, begin_shutdown);
}

/* Listens on every --listen address: 0, or -1 with the reason on stderr.  With --accept
 * reuseport the servers of the other threads listen on the ports the first one got
 * (SO_REUSEPORT: the kernel spreads the connections over them); with --accept one only the first
 * one listens and deals the sockets out (group_accept.c).  Only the first one logs. */
static int listen_all(struct serve *sv, const struct config *c, unsigned *ports)
{
    const char *def = "127.0.0.1:8080";
    const char *const *addrs = c->nlisten ? c->listen : &def;
    for (int i = 0; i < (c->nlisten ? c->nlisten : 1); i++) {
        char host[256];
        unsigned port;
        if (cli_parse_hostport(addrs[i], host, sizeof host, &port) < 0)
            cli_usage_error(PROG, "invalid --listen address '%s' (HOST:PORT)", addrs[i]);
        if (sv->thread) port = ports[i];
        int r = wsk_server_listen(sv->srv, host, port);
        if (r < 0) {
            fprintf(stderr, "wsserve: cannot listen on %s: %s\n", addrs[i],
                    r == WSK_ERR_DNS ? "unknown host" : strerror(errno));
            return -1;
        }
        if (!port) port = wsk_server_port(sv->srv);
        ports[i] = port;
        if (!c->quiet && !sv->thread) {
            char threads[32] = "";
            int v6 = strchr(host, ':') != NULL;
            if (sv->threads > 1) snprintf(threads, sizeof threads, ", %u threads", sv->threads);
            serve_log(sv, "listening on %s://%s%s%s:%u/ (%s%s)", sv->tls ? "wss" : "ws",
                      v6 ? "[" : "", *host ? host : "127.0.0.1", v6 ? "]" : "", port,
                      sv->mode->name, threads);
        }
    }
    return 0;
}

/* The bridge of the process, on the first server only (it carries every thread's topics):
 * 0, or -1 with the reason on stderr. */
static int bridge(struct serve *sv, const struct config *c)
{
    char *secret_urls[MAX_BRIDGE] = {0};
    const char *const *urls = c->bridge_secret ? (const char *const *)secret_urls : c->bridge;
    int bridged = c->bridge_secret ? bridge_secret(c, secret_urls) : 0;
    if (!bridged && c->nbridge &&
        (bridged = wsk_server_bridge(sv->srv, urls, (size_t)c->nbridge, c->bridge_prefix)) < 0)
        fprintf(stderr, "wsserve: cannot bridge: the --bridge URLs are invalid or mixed\n");
    for (int i = 0; i < c->nbridge; i++) {
        if (secret_urls[i]) memset(secret_urls[i], 0, strlen(secret_urls[i]));
        free(secret_urls[i]);
    }
    sv->bridged = c->nbridge > 0 && bridged >= 0;
    return bridged < 0 ? -1 : 0;
}

/* Every field of wsk_bridge_stats, by name, for the summary at exit. */
// clang-format off
#define BRIDGE_FIELD(f) {#f, offsetof(wsk_bridge_stats, f), sizeof(((wsk_bridge_stats *)0)->f)}
// clang-format on
static const struct {
    const char *name;
    size_t off, size;
} bridge_fields[] = {
    BRIDGE_FIELD(forwarded), BRIDGE_FIELD(failed),   BRIDGE_FIELD(received), BRIDGE_FIELD(echoes),
    BRIDGE_FIELD(foreign),   BRIDGE_FIELD(copies),   BRIDGE_FIELD(outages),  BRIDGE_FIELD(remote),
    BRIDGE_FIELD(links),     BRIDGE_FIELD(links_up),
};
/* A field added to the struct changes its size, one left out of the table the table's: neither
 * can go unnoticed (tests/integration/test_bridge.py reads the struct in wskit.h too). */
_Static_assert(sizeof(wsk_bridge_stats) == 8 * sizeof(uint64_t) + 2 * sizeof(unsigned) &&
                   sizeof bridge_fields / sizeof bridge_fields[0] == 8 + 2,
               "every field of wsk_bridge_stats belongs in bridge_fields");

/* The bridge's counters, every one, in one line ("bridge: forwarded=N failed=N ..."). */
static void bridge_summary(const struct serve *sv)
{
    wsk_bridge_stats bs;
    char line[512];
    size_t o = 0;
    if (wsk_server_bridge_stats(sv->srv, &bs) != 0) return;
    for (size_t i = 0; i < sizeof bridge_fields / sizeof bridge_fields[0]; i++) {
        const char *at = (const char *)&bs + bridge_fields[i].off;
        uint64_t v;
        if (bridge_fields[i].size == sizeof(uint64_t)) {
            memcpy(&v, at, sizeof v);
        } else {
            unsigned u;
            memcpy(&u, at, sizeof u);
            v = u;
        }
        int n = snprintf(line + o, sizeof line - o, " %s=%llu", bridge_fields[i].name,
                         (unsigned long long)v);
        if (n > 0 && (size_t)n < sizeof line - o) o += (size_t)n;
    }
    serve_log(sv, "bridge:%s", line);
}

/* Sets up server i of the process on its loop: the mode's state, the handlers with -v's log
 * lines around them, the server (a member of the group).  0, or -1 with the reason on stderr. */
static int start_server(struct proc *p, unsigned i, const struct config *c)
{
    struct serve *sv = &p->sv[i];
    *sv = (struct serve){
        .mode = c->mode,
        .config = c->mode_config[c->mode_index],
        .tls = c->so.tls_cert != NULL,
        .verbose = c->verbose,
        .stamps = !isatty(STDERR_FILENO),
        .no_console = c->no_console,
        .metrics_path = c->metrics_path,
        .loop = loop_of(p, i),
        .thread = i,
        .threads = p->n,
        .all = p->sv,
        .group = p->group,
    };
    wsk_server_opts so = c->so;
    if (p->n > 1 && c->accept == WSK_ACCEPT_REUSEPORT) so.reuse_port = 1;
    /* --max-connections is the process's: each thread takes its share (with --accept reuseport
     * the kernel, not wsserve, picks a connection's thread, so one may wait while another thread
     * has room; with --accept one a full thread is skipped). */
    if (p->n > 1 && so.max_connections)
        so.max_connections = so.max_connections / p->n + (i < so.max_connections % p->n);
    if (c->mode->setup(sv, &so, &sv->mode_h) < 0) return -1;
    wsk_handlers h = sv->mode_h;
    h.upgrade = on_upgrade;
    h.request = on_request;
    h.open = on_open;
    h.close = on_close;
    wsk_loop *loop = sv->loop;
    wsk_loop_set_log(loop,
                     c->quiet         ? WSK_LOG_ERROR
                     : c->verbose > 1 ? WSK_LOG_DEBUG
                     : c->verbose     ? WSK_LOG_INFO
                                      : WSK_LOG_WARN,
                     log_line, sv);
    sv->srv = wsk_server_new(loop, &so, &h, sv);
    if (!sv->srv || (p->group && wsk_group_add(p->group, sv->srv) < 0)) {
        fprintf(stderr, "wsserve: cannot start the server\n");
        return -1;
    }
    return 0;
}

/* The servers, from the last one: the first one's state, which the others share, goes last. */
static void free_servers(struct proc *p, unsigned started)
{
    while (started--) {
        struct serve *sv = &p->sv[started];
        if (!sv->mode) continue; /* never set up */
        serve_stats_stop(sv);
        if (sv->srv) wsk_server_free(sv->srv);
        sv->srv = NULL;
        if (sv->mode->teardown) sv->mode->teardown(sv);
    }
}

static void free_configs(struct config *c)
{
    for (size_t i = 0; i < NMODES; i++) free(c->mode_config[i]);
}

/* With --threads, each loop thread after the first allocates from a glibc arena of its own,
 * whose heap grows by what each allocation lacks (a send queue's 16 KiB block: one mprotect
 * each), not by M_TOP_PAD as the main heap does; a chat load's first second grew one by some
 * 11 MiB in 700 mprotect calls.  A new arena's first heap is made with M_TOP_PAD to spare, and
 * keeps that much when trimmed: 16 MiB of address space per thread (pages only as touched)
 * and the arena starts ready.  The process's only allocator setting; GLIBC_TUNABLES' own
 * top_pad, when given, stays. */
static void thread_heaps(unsigned threads)
{
    const char *t = getenv("GLIBC_TUNABLES");
    if (threads > 1 && !(t && strstr(t, "malloc.top_pad"))) mallopt(M_TOP_PAD, 16 << 20);
}

int main(int argc, char **argv)
{
    struct config c = {.threads = 1, .accept = DEFAULT_ACCEPT};
    wsk_server_opts_init(&c.so);
    parse(argc, argv, &c);
    if (c.so.max_connections && c.so.max_connections < c.threads)
        cli_usage_error(PROG, "--max-connections %zu is less than one per thread (--threads %u)",
                        (size_t)c.so.max_connections, c.threads);

    signal(SIGPIPE, SIG_IGN);
    thread_heaps(c.threads);
    struct proc p = {.n = c.threads};
    int status = 1;
    unsigned started = 0, ports[MAX_LISTEN] = {0};
    wsk_server *metrics_srv = NULL;
    p.sv = calloc(p.n, sizeof *p.sv);
    if (!p.sv) goto out;
    /* Never libev's default loop: its SIGCHLD watcher would reap (waitpid(-1)) the programs
     * that the program modes reap through their pidfds, each on its own loop (serve_child.h).
     * Loop 0 watches the signals. */
    if (p.n > 1 ? !(p.group = wsk_group_new(p.n, NULL)) || wsk_group_set_accept(p.group, c.accept)
                : !(p.ev = ev_loop_new(EVFLAG_AUTO)) || !(p.loop = wsk_loop_new(p.ev)))
        goto out;
    for (; started < p.n; started++)
        if (start_server(&p, started, &c) < 0) goto out;
    for (unsigned i = 0; p.n > 1 && (c.metrics || c.metrics_path) && i < p.n; i++)
        if (serve_stats_start(&p.sv[i]) < 0) goto out;
    /* The signal watchers come before the bridge and the mode's start-up wait (a signal then
     * ends the wait, and wsserve exits without listening), and before the "listening" line:
     * whoever waits for that line may send SIGTERM at once. */
    struct ev_loop *ev = wsk_loop_ev(loop_of(&p, 0));
    ev_signal_init(&p.sigint, on_signal, SIGINT);
    ev_signal_init(&p.sigterm, on_signal, SIGTERM);
    p.sigint.data = p.sigterm.data = &p;
    ev_signal_start(ev, &p.sigint);
    ev_signal_start(ev, &p.sigterm);
    if (bridge(&p.sv[0], &c) < 0) goto out;
    if (c.mode->before_listen) c.mode->before_listen(&p.sv[0]);
    int listening = 0, early = p.signals; /* early: a signal came first, a clean stop */
    if (!early && c.metrics && !(metrics_srv = serve_metrics_listen(&p.sv[0], c.metrics, c.quiet)))
        goto out;
    unsigned listeners = c.accept == WSK_ACCEPT_ROUND_ROBIN ? 1 : p.n;
    for (unsigned i = 0; !early && i < listeners && !(listening = listen_all(&p.sv[i], &c, ports));
         i++)
        ;
    for (unsigned i = 0; i < p.n; i++) p.sv[i].port = ports[0];
    p.listening = 1;
    if (early) {
        status = 0;
    } else if (listening == 0) {
        if (p.group)
            wsk_group_run(p.group);
        else
            ev_run(ev, 0);
        status = 0;
        for (unsigned i = 0; i < p.n; i++)
            if (p.sv[i].exit_code > status) status = p.sv[i].exit_code;
    }
    if (!c.quiet) bridge_summary(&p.sv[0]);
    /* A late signal must not kill the teardown and change the exit status (a second SIGTERM
     * during shutdown already meant "stop now"): stopping a watcher restores the default
     * action, so the signals stay blocked until they are ignored (one pending then is dropped). */
    sigset_t late;
    sigemptyset(&late);
    sigaddset(&late, SIGINT);
    sigaddset(&late, SIGTERM);
    sigprocmask(SIG_BLOCK, &late, NULL);
    ev_signal_stop(ev, &p.sigint);
    ev_signal_stop(ev, &p.sigterm);
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    sigprocmask(SIG_UNBLOCK, &late, NULL);
out:
    if (p.sigint.data) { /* a failure after the watchers started: they go with the loop */
        ev_signal_stop(wsk_loop_ev(loop_of(&p, 0)), &p.sigint);
        ev_signal_stop(wsk_loop_ev(loop_of(&p, 0)), &p.sigterm);
    }
    if (metrics_srv) wsk_server_free(metrics_srv);
    if (p.sv) free_servers(&p, started < p.n ? started + 1 : p.n);
    if (p.group) wsk_group_free(p.group);
    if (p.loop) wsk_loop_free(p.loop);
    if (p.ev) ev_loop_destroy(p.ev);
    free(p.sv);
    free_configs(&c);
    return status;
}
