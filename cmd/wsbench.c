/* wsbench: a WebSocket load generator that is not the bottleneck.
 *
 *   wsbench [SCENARIO] [options] URL                   one run (bench_verdict.c)
 *   wsbench compare [SCENARIO] [options] [NAME=]URL... the same run against several servers,
 *                                                      in turn, for several rounds
 *                                                      (bench_compare.c)
 *
 * This file is the command line: options into a wb_opts and a list of targets.  The engine is
 * bench_run.c and what it drives (see bench.h). */
#include "bench.h"
#include "cli.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define PROG "wsbench"

static const char usage_head[] =
    "usage: wsbench [SCENARIO] [options] URL [URL...]   (connection i goes to URL i mod N)\n"
    "       wsbench compare [SCENARIO] [options] [NAME=]URL [NAME=]URL ...\n"
    "\n"
    "Scenarios:\n"
    "  echo      each connection keeps --window messages in flight (closed loop), or sends at\n"
    "            --rate (open loop); replies are timed (default)\n"
    "  chat      Bun's chat-room benchmark: -c clients named by ?name=, wait for \"ready\",\n"
    "            rounds of 1600 messages per client (wsserve --chat --clients N: N = -c)\n"
    "  connect   connect, handshake, one message, close, again: connections per second\n"
    "  hold      open -c connections and keep them idle for -d seconds\n"
    "  listen    -c connections that only receive (a server that broadcasts): messages per\n"
    "            second; latency when a message starts with its send time (wsbench(1))\n"
    "  pubsub    publishers and subscribers over topics (wsserve --pubsub)\n"
    "\n"
    "TIME is 10s, 500ms, 2m or seconds (1.5); SIZE is 16, 1k, 64KiB, 16M (powers of 1024).\n"
    "\n"
    "Options:\n";

static const char usage_tail[] =
    "\n"
    "Exit status:\n"
    "  0  the run measured what it was asked to\n"
    "  1  usage error\n"
    "  2  the run failed: no connection, no reply, every reply mismatched, a run shorter than\n"
    "     -d, chat clients not ready or lost (compare: a target failed)\n"
    "  3  a --threshold failed\n"
    "  130  interrupted twice (CTRL+C)\n"
    "See wsbench(1).\n";

enum {
    OPT_WARMUP = 256,
    OPT_BINARY,
    OPT_UTF8,
    OPT_COMPRESS,
    OPT_VERIFY,
    OPT_ROUND_DELAY,
    OPT_ROOMS,
    OPT_CONNECT_TIMEOUT,
    OPT_STOP_TIMEOUT,
    OPT_CONCURRENCY,
    OPT_SOURCE_IPS,
    OPT_TLS_RESUME,
    OPT_PUBLISHERS,
    OPT_SUBSCRIBERS,
    OPT_TOPICS,
    OPT_PATTERNS,
    OPT_PROTO,
    OPT_ORIGIN,
    OPT_JSON,
    OPT_CSV,
    OPT_THRESHOLD,
    OPT_PID,
    OPT_NO_STATUS,
    OPT_ROUNDS,
    OPT_PAUSE,
    OPT_MARKDOWN,
    OPT_PERCENTILES,
    OPT_REPORT,
};

static const cli_option options[] = {
    {"connections", 'c', "N",
     "connections (echo 64, chat 32, pubsub 64, connect 16, hold 1000, listen 100)"},
    {"threads", 't', "N", "worker threads, each with its own event loop (1)"},
    {"duration", 'd', "TIME", "measured time (10s; 0 = until -n)"},
    {"warmup", OPT_WARMUP, "TIME", "run this long before measuring (0)"},
    {"messages", 'n', "N", "stop after N messages (connect: connections)"},
    {"size", 's', "SIZE", "message payload (16)"},
    {"window", 'w', "N", "messages in flight per connection, closed loop (1)"},
    {"rate", 'r', "N", "open loop: N messages per second over all connections"},
    {"binary", OPT_BINARY, NULL, "binary messages (default: text)"},
    {"utf8", OPT_UTF8, NULL, "text with a third of its bytes in non-ASCII characters"},
    {"compress", OPT_COMPRESS, NULL, "offer permessage-deflate (each payload deflated once)"},
    {"verify", OPT_VERIFY, NULL, "check every byte of every echo reply"},
    {"round-delay", OPT_ROUND_DELAY, "TIME", "chat: next round at a timer's tick (Bun: 64ms)"},
    {"rooms", OPT_ROOMS, "N", "chat: client k joins room k mod N (wsserve --chat --rooms N)"},
    {"connect-timeout", OPT_CONNECT_TIMEOUT, "TIME",
     "limit connect + handshake (+ chat \"ready\") (10s; chat 15s)"},
    {"stop-timeout", OPT_STOP_TIMEOUT, "TIME", "wait for the closing handshakes at the end (3s)"},
    {"connect-concurrency", OPT_CONCURRENCY, "N",
     "connections being set up at once, per thread (256)"},
    {"source-ips", OPT_SOURCE_IPS, "N", "spread connections over 127.0.0.1 .. 127.0.0.N (auto)"},
    {"publishers", OPT_PUBLISHERS, "N", "pubsub: publishing connections (1)"},
    {"subscribers", OPT_SUBSCRIBERS, "N", "pubsub: subscribing connections (-c)"},
    {"topics", OPT_TOPICS, "N", "pubsub: topics (1)"},
    {"patterns", OPT_PATTERNS, NULL, "pubsub: subscribe by pattern (wsbench.K.*), not by name"},
    {"header", 'H', "'NAME: VALUE'", "add a request header (repeatable)"},
    {"subprotocol", OPT_PROTO, "PROTO", "offer a subprotocol (repeatable)"},
    {"origin", OPT_ORIGIN, "ORIGIN", "send an Origin header"},
    {"no-check", CLI_OPT_NO_CHECK, NULL, "do not verify the server's TLS certificate"},
    {"tls-resume", OPT_TLS_RESUME, NULL, "wss: resume each slot's last TLS session"},
    CLI_TLS_OPTIONS,
    {"json", OPT_JSON, NULL, "the result as JSON on stdout, instead of the summary"},
    {"csv", OPT_CSV, "FILE", "the per-second series as CSV (- for stdout)"},
    {"percentiles", OPT_PERCENTILES, "FILE",
     "the latency percentiles as HdrHistogram's .hgrm text, in ms (- for stdout)"},
    {"report", OPT_REPORT, "FILE", "a self-contained HTML report with charts (compare too)"},
    {"threshold", OPT_THRESHOLD, "EXPR",
     "check the result: 'p99<5ms', 'rate>=100k', 'errors<1' ..."},
    {"pid", OPT_PID, "PID", "also measure this server's CPU time (compare: one per target)"},
    {"quiet", 'q', NULL, "no per-second lines or status line"},
    {"no-status", OPT_NO_STATUS, NULL, "no live status line on stderr"},
    {"rounds", OPT_ROUNDS, "N",
     "compare: rounds of every target in turn, reversed every other round (3)"},
    {"pause", OPT_PAUSE, "TIME", "compare: pause between two runs (1s)"},
    {"markdown", OPT_MARKDOWN, NULL, "compare: print the table as Markdown"},
    {"help", 'h', NULL, "this help"},
    {"version", 'V', NULL, "print the version"},
    {NULL, 0, NULL, NULL},
};

/* The command line: options and targets. */
typedef struct cmdline {
    wb_opts o;
    int compare;
    wb_target targets[WB_MAX_TARGETS];
    unsigned ntargets;
    int pids[WB_MAX_TARGETS];
    unsigned npids;
    /* An option given that only means something with compare, or in one scenario: a flag that
     * would do nothing is a usage error. */
    const char *compare_flag, *chat_flag, *pubsub_flag;
} cmdline;

static unsigned long count_arg(int key, const char *arg, unsigned long min, unsigned long max)
{
    unsigned long v;
    if (cli_parse_ulong(arg, min, max, &v) < 0) {
        const char *name = "?";
        for (const cli_option *p = options; p->name; ++p)
            if (p->key == key) name = p->name;
        if (key == 'n' && strstr(arg, "://"))
            cli_usage_error(PROG, "-n is the message count (as in ab); --no-check or -k skips "
                                  "the certificate check");
        cli_usage_error(PROG, "invalid --%s '%s' (a whole number, %lu to %lu)", name, arg, min,
                        max);
    }
    return v;
}

static double time_arg(const char *name, const char *arg)
{
    double v;
    if (cli_parse_duration(arg, &v) < 0)
        cli_usage_error(PROG, "invalid --%s '%s' (a time: 10s, 500ms, 2m)", name, arg);
    return v;
}

static int scenario_of(const char *s)
{
    for (int i = 0; i < WB_NSCENARIOS; i++)
        if (!strcmp(s, wb_scenario_name(i))) return i;
    return -1;
}

/* NAME=URL when the '=' comes before the scheme's ':' (a query may hold '=' too); else the
 * targets are named A, B, C ... */
static void target_of(const char *arg, unsigned i, wb_target *t)
{
    const char *eq = strchr(arg, '='), *colon = strchr(arg, ':');
    if (eq && (!colon || eq < colon) && eq > arg && (size_t)(eq - arg) < sizeof t->label) {
        snprintf(t->label, sizeof t->label, "%.*s", (int)(eq - arg), arg);
        t->url = eq + 1;
    } else {
        snprintf(t->label, sizeof t->label, "%c", 'A' + i);
        t->url = arg;
    }
}

/* The defaults that depend on the scenario and on other options. */
static void settle(cmdline *cl, int conns_set, int timeout_set, int duration_set)
{
    wb_opts *o = &cl->o;
    if (!conns_set) {
        static const unsigned deflt[WB_NSCENARIOS] = {64, 32, 64, 16, 1000, 100};
        o->conns = deflt[o->scenario];
    }
    if (o->scenario == WB_PUBSUB) {
        /* -c counts subscribers unless --subscribers does; publishers come on top. */
        if (!o->subscribers) o->subscribers = o->conns;
        o->conns = o->publishers + o->subscribers;
        if (o->rate <= 0) o->rate = 10000;
    }
    if (o->scenario == WB_CHAT && !timeout_set) o->connect_timeout = 15;
    if (o->count && !duration_set) o->duration = 0;
    if (o->duration <= 0 && !o->count && o->scenario != WB_HOLD)
        cli_usage_error(PROG, "-d 0 needs -n (a run must end)");
    if (o->csv && !strcmp(o->csv, "-")) {
        if (o->json)
            cli_usage_error(PROG, "--json and --csv - would share stdout: give --csv a file");
        o->quiet = 1; /* the chat scenario's per-second lines would go into the CSV */
    }
    if (o->percentiles && !strcmp(o->percentiles, "-")) o->quiet = 1;
    if (cl->compare_flag && !cl->compare)
        cli_usage_error(PROG, "--%s is for wsbench compare", cl->compare_flag);
    if (cl->compare && o->csv)
        cli_usage_error(PROG, "--csv is for one run (compare: --json holds every run's series)");
    if (cl->compare && o->percentiles)
        cli_usage_error(PROG, "--percentiles is for one run (compare: --report draws each "
                              "target's percentiles)");
    int outs = (o->csv && !strcmp(o->csv, "-")) + (o->percentiles && !strcmp(o->percentiles, "-")) +
               o->json;
    if (outs > 1) cli_usage_error(PROG, "--json, --csv - and --percentiles - would share stdout");
    if (cl->chat_flag && o->scenario != WB_CHAT)
        cli_usage_error(PROG, "--%s is for the chat scenario", cl->chat_flag);
    if (cl->pubsub_flag && o->scenario != WB_PUBSUB)
        cli_usage_error(PROG, "--%s is for the pubsub scenario", cl->pubsub_flag);
    o->compare = cl->compare;
    o->status = o->status && isatty(2) && !o->quiet && !o->compare;
}

/* What follows the options: [compare] [SCENARIO] [NAME=]URL... */
static void operands(int argc, char **argv, cmdline *cl)
{
    wb_opts *o = &cl->o;
    cl->compare = optind < argc && !strcmp(argv[optind], "compare");
    if (cl->compare) optind++;
    o->scenario = WB_ECHO;
    if (optind < argc && scenario_of(argv[optind]) >= 0) o->scenario = scenario_of(argv[optind++]);
    int n = argc - optind;
    if (n < 1) cli_usage_error(PROG, "give a ws:// or wss:// URL");
    if (!cl->compare && n > 1) { /* one run over several servers: connections take turns */
        if (n > WB_MAX_SPREAD) cli_usage_error(PROG, "at most %d URLs", WB_MAX_SPREAD);
        o->spread = (const char *const *)argv + optind;
        o->nspread = (unsigned)n;
        n = 1;
    }
    if (n > WB_MAX_TARGETS) cli_usage_error(PROG, "at most %d targets", WB_MAX_TARGETS);
    if (cl->npids && cl->npids != (unsigned)n)
        cli_usage_error(PROG, "give one --pid per target, in their order");
    cl->ntargets = (unsigned)n;
    for (unsigned i = 0; i < cl->ntargets; i++) {
        target_of(argv[optind + (int)i], i, &cl->targets[i]);
        cl->targets[i].pid = cl->npids ? cl->pids[i] : 0;
    }
}

static void parse(int argc, char **argv, cmdline *cl)
{
    wb_opts *o = &cl->o;
    int conns_set = 0, timeout_set = 0, duration_set = 0;
    *o = (wb_opts){.threads = 1,
                   .duration = 10,
                   .size = 16,
                   .window = 1,
                   .connect_timeout = 10,
                   .stop_timeout = 3,
                   .rounds = 3,
                   .pause = 1,
                   .publishers = 1,
                   .topics = 1,
                   .rooms = 1,
                   .status = 1};
    /* The command line as given, for --report (option parsing reorders argv). */
    o->argc = argc;
    o->argv = malloc(((size_t)argc + 1) * sizeof *o->argv);
    if (o->argv)
        memcpy(o->argv, argv, ((size_t)argc + 1) * sizeof *argv);
    else
        o->argc = 0;
    const char *arg;
    int c;
    while ((c = cli_next_option(argc, argv, options, &arg)) != -1) {
        switch (c) {
        case 'c':
            o->conns = (unsigned)count_arg(c, arg, 1, 10000000);
            conns_set = 1;
            break;
        case 't': o->threads = (unsigned)count_arg(c, arg, 1, WB_MAX_THREADS); break;
        case 'd':
            o->duration = time_arg("duration", arg);
            duration_set = 1;
            break;
        case OPT_WARMUP: o->warmup = time_arg("warmup", arg); break;
        case 'n': o->count = count_arg(c, arg, 1, 1000000000000000ul); break;
        case 's':
            if (cli_parse_size(arg, &o->size) < 0 || o->size > (64u << 20))
                cli_usage_error(PROG, "invalid --size '%s' (16, 1k, 64KiB ... at most 64M)", arg);
            break;
        case 'w': o->window = (unsigned)count_arg(c, arg, 1, 1u << 20); break;
        case 'r': o->rate = (double)count_arg(c, arg, 1, 1000000000); break;
        case OPT_BINARY: o->binary = 1; break;
        case OPT_UTF8: o->utf8 = 1; break;
        case OPT_COMPRESS: o->compress = 1; break;
        case OPT_VERIFY: o->verify = 1; break;
        case OPT_ROUND_DELAY: {
            double d = time_arg("round-delay", arg);
            if (d > 60) cli_usage_error(PROG, "--round-delay '%s': at most 60s (Bun: 64ms)", arg);
            o->round_delay_ms = (unsigned)(d * 1000 + 0.5);
            cl->chat_flag = "round-delay";
            break;
        }
        case OPT_ROOMS:
            o->rooms = (unsigned)count_arg(c, arg, 1, 1000000);
            cl->chat_flag = "rooms";
            break;
        case OPT_CONNECT_TIMEOUT:
            o->connect_timeout = time_arg("connect-timeout", arg);
            if (o->connect_timeout <= 0)
                cli_usage_error(PROG, "--connect-timeout must be more than 0");
            timeout_set = 1;
            break;
        case OPT_STOP_TIMEOUT: o->stop_timeout = time_arg("stop-timeout", arg); break;
        case OPT_CONCURRENCY:
            o->connect_concurrency = (unsigned)count_arg(c, arg, 1, 1000000);
            break;
        case OPT_SOURCE_IPS: o->source_ips = (unsigned)count_arg(c, arg, 1, 254); break;
        case OPT_TLS_RESUME: o->tls_resume = 1; break;
        case OPT_PUBLISHERS:
            o->publishers = (unsigned)count_arg(c, arg, 1, 1000000);
            cl->pubsub_flag = "publishers";
            break;
        case OPT_SUBSCRIBERS:
            o->subscribers = (unsigned)count_arg(c, arg, 1, 1000000);
            cl->pubsub_flag = "subscribers";
            break;
        case OPT_TOPICS:
            o->topics = (unsigned)count_arg(c, arg, 1, 1000000);
            cl->pubsub_flag = "topics";
            break;
        case OPT_PATTERNS:
            o->patterns = 1;
            cl->pubsub_flag = "patterns";
            break;
        case 'H':
            if (o->nheaders == WB_MAX_HEADERS)
                cli_usage_error(PROG, "at most %d headers", WB_MAX_HEADERS);
            o->headers[o->nheaders++] = arg;
            break;
        case OPT_PROTO:
            if (o->nprotos == WB_MAX_PROTOS)
                cli_usage_error(PROG, "at most %d subprotocols", WB_MAX_PROTOS);
            o->protos[o->nprotos++] = arg;
            break;
        case OPT_ORIGIN: o->origin = arg; break;
        case OPT_JSON: o->json = 1; break;
        case OPT_CSV: o->csv = arg; break;
        case OPT_PERCENTILES: o->percentiles = arg; break;
        case OPT_REPORT: o->report = arg; break;
        case OPT_THRESHOLD:
            if (o->nthresholds == WB_MAX_THRESHOLDS)
                cli_usage_error(PROG, "at most %d thresholds", WB_MAX_THRESHOLDS);
            if (wb_threshold_parse(arg, &o->thresholds[o->nthresholds++]) < 0)
                cli_usage_error(
                    PROG, "invalid --threshold '%s' (try 'p99<5ms', 'rate>100k', 'errors<1')", arg);
            break;
        case OPT_PID:
            if (cl->npids == WB_MAX_TARGETS)
                cli_usage_error(PROG, "at most %d --pid", WB_MAX_TARGETS);
            cl->pids[cl->npids++] = (int)count_arg(c, arg, 1, 0x7FFFFFFF);
            break;
        case 'q': o->quiet = 1; break;
        case OPT_NO_STATUS: o->status = 0; break;
        case OPT_ROUNDS:
            o->rounds = (unsigned)count_arg(c, arg, 1, 64);
            cl->compare_flag = "rounds";
            break;
        case OPT_PAUSE:
            o->pause = time_arg("pause", arg);
            cl->compare_flag = "pause";
            break;
        case OPT_MARKDOWN:
            o->markdown = 1;
            cl->compare_flag = "markdown";
            break;
        case 'h':
            fputs(usage_head, stdout);
            cli_print_options(stdout, options);
            fputs(usage_tail, stdout);
            exit(WB_EXIT_OK);
        case 'V': cli_print_version(stdout, PROG); exit(WB_EXIT_OK);
        default:
            if (cli_tls_option(c, arg, &o->tls)) break;
            fprintf(stderr, "Try '%s --help'.\n", PROG);
            exit(CLI_EXIT_USAGE);
        }
    }
    cli_tls_check(PROG, &o->tls);
    operands(argc, argv, cl);
    settle(cl, conns_set, timeout_set, duration_set);
    for (unsigned i = 0; o->tls.no_check && i < cl->ntargets; i++)
        if (!strncasecmp(cl->targets[i].url, "wss:", 4)) {
            cli_warn(PROG, "warning: --no-check: the server's certificate is not verified, so "
                           "anyone on the path can impersonate it (insecure)");
            break;
        }
}

static volatile int stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    if (stop_flag) {
        /* A second signal: the user does not want the closing handshakes. */
        static const char msg[] = "\nwsbench: interrupted\n";
        if (write(2, msg, sizeof msg - 1) < 0) _exit(130);
        _exit(130);
    }
    stop_flag = 1;
    wb_interrupted = 1;
}

int main(int argc, char **argv)
{
    static cmdline cl;
    parse(argc, argv, &cl);

    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (cl.compare) return wb_compare(&cl.o, cl.targets, cl.ntargets, &stop_flag);
    return wb_bench(&cl.o, &cl.targets[0], &stop_flag);
}
