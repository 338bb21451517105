/* wsbench: a WebSocket load generator that is not the bottleneck.
 *
 *   wsbench [SCENARIO] [options] URL                   one run
 *   wsbench compare [SCENARIO] [options] [NAME=]URL... the same run against several servers,
 *                                                      in turn, for several rounds
 *
 * This file is the command line; the engine is bench_run.c and what it drives (see bench.h). */
#include "bench.h"
#include "cli.h"

#include "wskit.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char usage[] =
    "usage: wsbench [SCENARIO] [options] URL\n"
    "       wsbench compare [SCENARIO] [options] [NAME=]URL [NAME=]URL ...\n"
    "\n"
    "Scenarios:\n"
    "  echo      each connection keeps --window messages in flight (closed loop), or sends at\n"
    "            --rate (open loop); replies are timed (default)\n"
    "  chat      Bun's chat-room benchmark: -c clients named by ?name=, wait for \"ready\",\n"
    "            rounds of 1600 messages per client; messages received per second\n"
    "  connect   connect, handshake, one message, close, again: connections per second\n"
    "  hold      open -c connections and keep them idle for -d seconds\n"
    "  pubsub    publishers and subscribers over topics (wsserve --pubsub)\n"
    "\n"
    "Load:\n"
    "  -c, --connections N     connections (echo 64, chat 32, connect 16, hold 1000)\n"
    "  -t, --threads N         worker threads, each with its own event loop (1)\n"
    "  -d, --duration TIME     measured time: 10, 10s, 500ms, 2m (10 s; 0 = until -n)\n"
    "      --warmup TIME       run this long before measuring (0)\n"
    "  -n, --messages N        stop after N messages (connect: connections); 1k, 2M ...\n"
    "  -s, --size BYTES        message payload: 16, 1k, 64KiB ... (16)\n"
    "  -w, --window N          messages in flight per connection, closed loop (1)\n"
    "  -r, --rate N            open loop: N messages per second over all connections; latency\n"
    "                          counts from each message's intended send time\n"
    "      --binary            binary messages (default: text)\n"
    "      --compress          offer permessage-deflate and send compressed messages\n"
    "      --verify            check every byte of every echo reply\n"
    "      --round-delay MS    chat: start a finished round's successor on an MS timer, as\n"
    "                          Bun's client does with 64 (default 0: at once)\n"
    "      --connect-timeout T connect + handshake (+ chat \"ready\") limit (10 s; chat 15 s)\n"
    "      --source-ips N      spread connections over 127.0.0.1 .. 127.0.0.N (auto)\n"
    "      --publishers P --subscribers S --topics T\n"
    "                          pubsub: P publishers (1), S subscribers (-c), T topics (1)\n"
    "\n"
    "Handshake:\n"
    "  -H, --header 'N: V'     extra request header (repeatable)\n"
    "      --subprotocol P     offer subprotocol P (repeatable)\n"
    "      --origin ORIGIN     Origin header\n"
    "      --ca FILE           wss://: CA bundle (default: the system's)\n"
    "      --cert FILE         wss://: client certificate   --key FILE   its key\n"
    "  -k, --insecure          wss://: do not verify the server certificate\n"
    "\n"
    "Output:\n"
    "      --json              the result as JSON on stdout, instead of the summary\n"
    "      --csv FILE          the per-second series as CSV (- for stdout)\n"
    "      --threshold EXPR    check the result: 'p99<5ms', 'rate>=100k', 'errors<1' ...\n"
    "                          (repeatable; exit status 3 when one fails)\n"
    "      --pid PID           also measure this server process's CPU time (compare: one per\n"
    "                          target, in order)\n"
    "  -q, --quiet             no per-second lines or status line\n"
    "      --no-status         no live status line on stderr\n"
    "\n"
    "Compare:\n"
    "      --rounds N          rounds; each runs every target once, in turn (3)\n"
    "      --pause TIME        between two runs (1 s)\n"
    "      --markdown          print the table as Markdown\n"
    "\n"
    "  -h, --help    -V, --version\n"
    "\n"
    "Exit status: 0 done, 1 usage, 2 the run failed (no connection, chat clients lost), 3 a\n"
    "threshold failed.  See wsbench(1).\n";

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

static void die(const char *fmt, const char *arg)
{
    fputs("wsbench: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs("\n(see wsbench --help)\n", stderr);
    exit(1);
}

/* "10", "10s", "500ms", "2m", "1.5h" -> seconds. */
static int parse_time(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || v < 0 || !isfinite(v)) return -1;
    if (!*end || !strcmp(end, "s"))
        *out = v;
    else if (!strcmp(end, "ms"))
        *out = v / 1e3;
    else if (!strcmp(end, "us"))
        *out = v / 1e6;
    else if (!strcmp(end, "m"))
        *out = v * 60;
    else if (!strcmp(end, "h"))
        *out = v * 3600;
    else
        return -1;
    return 0;
}

/* "1000", "10k", "2M", "1G" (counts: powers of ten) or, with binary, "1k" = 1024, "1KiB". */
static int parse_amount(const char *s, int binary, uint64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || v < 0 || !isfinite(v)) return -1;
    double k = binary ? 1024 : 1000;
    double mul = 1;
    switch (*end) {
    case 'k':
    case 'K':
        mul = k;
        end++;
        break;
    case 'm':
    case 'M':
        mul = k * k;
        end++;
        break;
    case 'g':
    case 'G':
        mul = k * k * k;
        end++;
        break;
    default: break;
    }
    if (binary && mul > 1 && (*end == 'i' || *end == 'I')) end++;
    if (binary && (*end == 'b' || *end == 'B')) end++;
    if (*end) return -1;
    v *= mul;
    if (v > 1e18) return -1;
    *out = (uint64_t)v;
    return 0;
}

static unsigned parse_unsigned(const char *s, const char *what, unsigned min, unsigned max)
{
    uint64_t v;
    if (parse_amount(s, 0, &v) < 0 || v < min || v > max) die("invalid %s", what);
    return (unsigned)v;
}

static int scenario_of(const char *s)
{
    for (int i = 0; i < WB_NSCENARIOS; i++)
        if (!strcmp(s, wb_scenario_name(i))) return i;
    return -1;
}

enum {
    O_WARMUP = 256,
    O_BINARY,
    O_COMPRESS,
    O_VERIFY,
    O_ROUND_DELAY,
    O_CONNECT_TIMEOUT,
    O_SRC,
    O_PROTO,
    O_ORIGIN,
    O_CA,
    O_CERT,
    O_KEY,
    O_JSON,
    O_CSV,
    O_THRESHOLD,
    O_PID,
    O_NOSTATUS,
    O_ROUNDS,
    O_PAUSE,
    O_MARKDOWN,
    O_PUBLISHERS,
    O_SUBSCRIBERS,
    O_TOPICS,
    O_STOP_TIMEOUT,
    O_CONCURRENCY,
};

static const struct option longopts[] = {
    {"connections", required_argument, 0, 'c'},
    {"threads", required_argument, 0, 't'},
    {"duration", required_argument, 0, 'd'},
    {"warmup", required_argument, 0, O_WARMUP},
    {"messages", required_argument, 0, 'n'},
    {"size", required_argument, 0, 's'},
    {"window", required_argument, 0, 'w'},
    {"rate", required_argument, 0, 'r'},
    {"binary", no_argument, 0, O_BINARY},
    {"compress", no_argument, 0, O_COMPRESS},
    {"verify", no_argument, 0, O_VERIFY},
    {"round-delay", required_argument, 0, O_ROUND_DELAY},
    {"connect-timeout", required_argument, 0, O_CONNECT_TIMEOUT},
    {"stop-timeout", required_argument, 0, O_STOP_TIMEOUT},
    {"connect-concurrency", required_argument, 0, O_CONCURRENCY},
    {"source-ips", required_argument, 0, O_SRC},
    {"header", required_argument, 0, 'H'},
    {"subprotocol", required_argument, 0, O_PROTO},
    {"origin", required_argument, 0, O_ORIGIN},
    {"ca", required_argument, 0, O_CA},
    {"cert", required_argument, 0, O_CERT},
    {"key", required_argument, 0, O_KEY},
    {"insecure", no_argument, 0, 'k'},
    {"json", no_argument, 0, O_JSON},
    {"csv", required_argument, 0, O_CSV},
    {"threshold", required_argument, 0, O_THRESHOLD},
    {"pid", required_argument, 0, O_PID},
    {"quiet", no_argument, 0, 'q'},
    {"no-status", no_argument, 0, O_NOSTATUS},
    {"rounds", required_argument, 0, O_ROUNDS},
    {"pause", required_argument, 0, O_PAUSE},
    {"markdown", no_argument, 0, O_MARKDOWN},
    {"publishers", required_argument, 0, O_PUBLISHERS},
    {"subscribers", required_argument, 0, O_SUBSCRIBERS},
    {"topics", required_argument, 0, O_TOPICS},
    {"help", no_argument, 0, 'h'},
    {"version", no_argument, 0, 'V'},
    {0, 0, 0, 0},
};

#define MAX_TARGETS 16

int main(int argc, char **argv)
{
    static wb_opts o;
    int pids[MAX_TARGETS], npids = 0;
    int conns_set = 0, timeout_set = 0, duration_set = 0, no_status = 0;
    o.threads = 1;
    o.duration = 10;
    o.size = 16;
    o.window = 1;
    o.connect_timeout = 10;
    o.stop_timeout = 3;
    o.rounds = 3;
    o.pause = 1;
    o.publishers = 1;
    o.topics = 1;

    int c;
    while ((c = getopt_long(argc, argv, "c:t:d:n:s:w:r:H:kqhV", longopts, NULL)) != -1) {
        uint64_t v;
        switch (c) {
        case 'c':
            o.conns = parse_unsigned(optarg, "connection count", 1, 10000000);
            conns_set = 1;
            break;
        case 't': o.threads = parse_unsigned(optarg, "thread count", 1, WB_MAX_THREADS); break;
        case 'd':
            if (parse_time(optarg, &o.duration) < 0) die("invalid duration: %s", optarg);
            duration_set = 1;
            break;
        case O_WARMUP:
            if (parse_time(optarg, &o.warmup) < 0) die("invalid warm-up: %s", optarg);
            break;
        case 'n':
            if (parse_amount(optarg, 0, &o.count) < 0) die("invalid message count: %s", optarg);
            break;
        case 's':
            if (parse_amount(optarg, 1, &v) < 0 || v > (64u << 20))
                die("invalid size (at most 64 MiB): %s", optarg);
            o.size = (size_t)v;
            break;
        case 'w': o.window = parse_unsigned(optarg, "window", 1, 1u << 20); break;
        case 'r':
            if (parse_amount(optarg, 0, &v) < 0 || !v) die("invalid rate: %s", optarg);
            o.rate = (double)v;
            break;
        case O_BINARY: o.binary = 1; break;
        case O_COMPRESS: o.compress = 1; break;
        case O_VERIFY: o.verify = 1; break;
        case O_ROUND_DELAY:
            o.round_delay_ms = parse_unsigned(optarg, "round delay", 0, 60000);
            break;
        case O_CONNECT_TIMEOUT:
            if (parse_time(optarg, &o.connect_timeout) < 0 || o.connect_timeout <= 0)
                die("invalid connect timeout: %s", optarg);
            timeout_set = 1;
            break;
        case O_STOP_TIMEOUT:
            if (parse_time(optarg, &o.stop_timeout) < 0) die("invalid stop timeout: %s", optarg);
            break;
        case O_CONCURRENCY:
            o.connect_concurrency = parse_unsigned(optarg, "connect concurrency", 1, 1000000);
            break;
        case O_SRC: o.source_ips = parse_unsigned(optarg, "source address count", 1, 254); break;
        case 'H':
            if (o.nheaders == WB_MAX_HEADERS) die("too many headers (%s)", "-H");
            o.headers[o.nheaders++] = optarg;
            break;
        case O_PROTO:
            if (o.nprotos == WB_MAX_PROTOS) die("too many subprotocols (%s)", "--subprotocol");
            o.protos[o.nprotos++] = optarg;
            break;
        case O_ORIGIN: o.origin = optarg; break;
        case O_CA: o.tls_ca = optarg; break;
        case O_CERT: o.tls_cert = optarg; break;
        case O_KEY: o.tls_key = optarg; break;
        case 'k': o.tls_insecure = 1; break;
        case O_JSON: o.json = 1; break;
        case O_CSV: o.csv = optarg; break;
        case O_THRESHOLD:
            if (o.nthresholds == WB_MAX_THRESHOLDS) die("too many thresholds (%s)", optarg);
            if (wb_threshold_parse(optarg, &o.thresholds[o.nthresholds++]) < 0)
                die("invalid threshold (try 'p99<5ms', 'rate>100k', 'errors<1'): %s", optarg);
            break;
        case O_PID:
            if (npids == MAX_TARGETS) die("too many --pid (%s)", optarg);
            pids[npids++] = (int)parse_unsigned(optarg, "pid", 1, 0x7FFFFFFF);
            break;
        case 'q': o.quiet = 1; break;
        case O_NOSTATUS: no_status = 1; break;
        case O_ROUNDS: o.rounds = parse_unsigned(optarg, "round count", 1, 64); break;
        case O_PAUSE:
            if (parse_time(optarg, &o.pause) < 0) die("invalid pause: %s", optarg);
            break;
        case O_MARKDOWN: o.markdown = 1; break;
        case O_PUBLISHERS:
            o.publishers = parse_unsigned(optarg, "publisher count", 1, 1000000);
            break;
        case O_SUBSCRIBERS:
            o.subscribers = parse_unsigned(optarg, "subscriber count", 1, 1000000);
            break;
        case O_TOPICS: o.topics = parse_unsigned(optarg, "topic count", 1, 1000000); break;
        case 'h': fputs(usage, stdout); return 0;
        case 'V': cli_print_version(stdout, "wsbench"); return 0;
        default: fputs("(see wsbench --help)\n", stderr); return 1;
        }
    }

    int compare = optind < argc && !strcmp(argv[optind], "compare");
    if (compare) optind++;
    o.scenario = WB_ECHO;
    if (optind < argc && scenario_of(argv[optind]) >= 0) o.scenario = scenario_of(argv[optind++]);
    int ntargets = argc - optind;
    if (ntargets < 1) die("no URL given%s", "");
    if (!compare && ntargets > 1)
        die("one URL per run (to compare servers: wsbench compare ...): %s", argv[optind + 1]);
    if (ntargets > MAX_TARGETS) die("at most 16 targets (%s)", "compare");
    if (npids && npids != (compare ? ntargets : 1))
        die("give one --pid per target, in their order%s", "");
    if (!conns_set) {
        static const unsigned deflt[WB_NSCENARIOS] = {64, 32, 64, 16, 1000};
        o.conns = deflt[o.scenario];
    }
    if (o.scenario == WB_PUBSUB) {
        /* -c counts subscribers unless --subscribers does; publishers come on top. */
        if (!o.subscribers) o.subscribers = o.conns;
        o.conns = o.publishers + o.subscribers;
        if (o.rate <= 0) o.rate = 10000;
    }
    if (o.scenario == WB_CHAT && !timeout_set) o.connect_timeout = 15;
    if (o.count && !duration_set) o.duration = 0;
    if (o.duration <= 0 && !o.count && o.scenario != WB_HOLD)
        die("-d 0 needs -n (a run must end)%s", "");
    o.compare = compare;
    o.status = isatty(2) && !o.quiet && !no_status && !compare;

    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (!compare) {
        static wb_result r;
        o.pid = npids ? pids[0] : 0;
        int rc = wb_run(&o, argv[optind], &r, &stop_flag);
        if (o.json)
            wb_report_json(&o, &r, 1, 0, stdout);
        else if (!(o.csv && !strcmp(o.csv, "-")))
            wb_report_text(&o, &r, stdout);
        if (o.csv && wb_report_csv(&o, &r, o.csv) < 0)
            fprintf(stderr, "wsbench: cannot write %s: %s\n", o.csv, strerror(errno));
        unsigned failed = wb_thresholds_check(&o, &r, o.json ? stderr : stdout);
        wb_result_free(&r);
        return rc < 0 ? 2 : failed ? 3 : 0;
    }

    /* compare: every round runs every target once, in the order given. */
    const char *urls[MAX_TARGETS];
    char labels[MAX_TARGETS][64];
    for (int i = 0; i < ntargets; i++) {
        const char *a = argv[optind + i], *eq = strchr(a, '='), *colon = strchr(a, ':');
        /* NAME=URL when the '=' comes before the scheme's ':' (a query may hold '=' too). */
        if (eq && (!colon || eq < colon) && eq > a && (size_t)(eq - a) < sizeof labels[i]) {
            snprintf(labels[i], sizeof labels[i], "%.*s", (int)(eq - a), a);
            urls[i] = eq + 1;
        } else {
            snprintf(labels[i], sizeof labels[i], "%c", 'A' + i);
            urls[i] = a;
        }
    }
    wb_result *runs = calloc((size_t)ntargets * o.rounds, sizeof *runs);
    if (!runs) die("out of memory%s", "");
    int any_failed = 0;
    unsigned done_rounds = 0;
    for (unsigned r = 0; r < o.rounds && !stop_flag; r++) {
        for (int i = 0; i < ntargets && !stop_flag; i++) {
            if (r || i) {
                struct timespec ts = {(time_t)o.pause, (long)((o.pause - (time_t)o.pause) * 1e9)};
                nanosleep(&ts, NULL);
            }
            wb_result *res = &runs[r * (unsigned)ntargets + (unsigned)i];
            snprintf(res->label, sizeof res->label, "%s", labels[i]);
            o.pid = npids ? pids[i] : 0;
            int rc = wb_run(&o, urls[i], res, &stop_flag);
            char a[32];
            if (rc < 0) {
                any_failed = 1;
                fprintf(stderr, "round %u/%u  %-10s failed: %s\n", r + 1, o.rounds, labels[i],
                        res->fail);
            } else if (!o.quiet) {
                fprintf(stderr, "round %u/%u  %-10s %12s %s/s%s\n", r + 1, o.rounds, labels[i],
                        wb_fmt_count(a, sizeof a, (uint64_t)wb_rate(res)),
                        o.scenario == WB_CONNECT ? "conn" : "msg",
                        wb_saturated(res) ? "  (wsbench saturated)" : "");
            }
        }
        if (!stop_flag) done_rounds = r + 1;
    }
    if (!done_rounds) done_rounds = 1;
    if (o.json)
        wb_report_json(&o, runs, done_rounds * (unsigned)ntargets, 1, stdout);
    else
        wb_report_compare(&o, runs, (unsigned)ntargets, done_rounds, stdout);
    for (unsigned i = 0; i < (unsigned)ntargets * o.rounds; i++) wb_result_free(&runs[i]);
    free(runs);
    return any_failed ? 2 : 0;
}
