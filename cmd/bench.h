/* wsbench internals: the command line (wsbench.c), one run's verdict and report
 * (bench_verdict.c), the comparison of servers (bench_compare.c), the load engine (bench_conn.c,
 * bench_worker.c, bench_run.c), its scenarios (bench_scenario.c), the latency histogram
 * (bench_hist.c) and the reports (bench_report.c).  The non-ws*.c files of cmd/ go into an
 * archive that every command links, so everything here is named wb_ and only wsbench pulls it in.
 *
 * The data path of one connection, by file:
 *   bench_conn.c      socket, connect, handshake; then the library's socket: reads, TLS, frames
 *                     to messages, one writev per connection per loop turn
 *   bench_worker.c    worker threads: their loops, the scenario's turn, deadlines, the stop
 *   bench_run.c       the run as the main thread sees it: phases, snapshots, the result
 *   bench_scenario.c  what to send and what a received message means (echo, chat, ...)
 *   bench_hist.c      latencies into log-linear buckets
 *   bench_verdict.c   the verdict on a run (did it measure anything?), its report, exit status
 *   bench_report.c    summary, JSON, CSV, .hgrm percentiles, thresholds
 *   bench_html.c      the HTML report: tables and charts of one run or of a compare
 *   bench_svg.c       the charts' SVG writer
 *   bench_compare.c   several targets in turn, for several rounds; the compare table
 */
#ifndef WB_BENCH_H
#define WB_BENCH_H

#include <netinet/in.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "cli.h"
#include "parse_frame.h"

/* ----- histogram (bench_hist.c) -------------------------------------------------------------- */

/* HDR-style log-linear buckets over nanoseconds: values below 2^WB_HIST_SUB are exact, above
 * that every power of two is cut into 2^(WB_HIST_SUB - 1) equal buckets, so any value is known
 * to within 1/64 (1.6%) and the whole uint64_t range fits in a fixed 30 KB. */
#define WB_HIST_SUB     7
#define WB_HIST_BUCKETS ((64 - WB_HIST_SUB + 2) << (WB_HIST_SUB - 1))

/* One writer (a worker thread) updates it with relaxed atomic stores; another thread may copy it
 * at any time with wb_hist_add (a snapshot that is consistent enough for statistics). */
typedef struct wb_hist {
    uint64_t count, sum, min, max;
    uint64_t b[WB_HIST_BUCKETS];
} wb_hist;

void wb_hist_reset(wb_hist *h);
/* Records one value (single writer). */
void wb_hist_record(wb_hist *h, uint64_t v);
/* dst += src (src read with relaxed atomic loads: src may be live). */
void wb_hist_add(wb_hist *dst, const wb_hist *src);
/* dst -= src: what was recorded between two snapshots (min and max are those of dst). */
void wb_hist_sub(wb_hist *dst, const wb_hist *src);
/* The value at quantile q (0..1): the middle of its bucket, clamped to [min, max]; 0 when
 * empty. */
uint64_t wb_hist_quantile(const wb_hist *h, double q);
double wb_hist_mean(const wb_hist *h);
/* The standard deviation, from the middles of the buckets. */
double wb_hist_stddev(const wb_hist *h);

/* One row of the percentile spectrum: a value, the fraction of values at or below the level
 * (pct, 0..1) and how many values that is. */
typedef struct wb_pct {
    uint64_t value, total;
    double pct;
} wb_pct;
/* The spectrum as HdrHistogram's outputPercentileDistribution walks it (ticks rows per halving
 * of the distance to 100%; it prints with 5), each value the top of its bucket clamped to
 * [min, max], the last row at 1.0: at most cap rows into out, their number returned (0 when
 * empty).  A 2^64-value histogram needs fewer than WB_PCT_MAX rows at 5 ticks. */
#define WB_PCT_MAX 1024
size_t wb_hist_spectrum(const wb_hist *h, unsigned ticks, wb_pct *out, size_t cap);

/* Single-writer counters that another thread reads: relaxed loads and stores compile to plain
 * moves, where an atomic add would cost a locked instruction per update. */
static inline void wb_add(uint64_t *p, uint64_t v)
{
    __atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + v, __ATOMIC_RELAXED);
}
static inline uint64_t wb_get(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

/* ----- options ------------------------------------------------------------------------------- */

enum wb_scenario { WB_ECHO, WB_CHAT, WB_PUBSUB, WB_CONNECT, WB_HOLD, WB_LISTEN, WB_NSCENARIOS };

#define WB_MAX_HEADERS    32
#define WB_MAX_PROTOS     8
#define WB_MAX_THRESHOLDS 16
#define WB_MAX_THREADS    64

/* A check of the result ("p99<5ms"): metric, comparison, value in the metric's unit (ns for
 * times, messages/s for rate, ...). */
typedef struct wb_threshold {
    char text[48];
    int metric; /* enum wb_metric (bench_report.c) */
    int op;     /* '<', '>', 'l' (<=), 'g' (>=) */
    double value;
} wb_threshold;

typedef struct wb_opts {
    int scenario;
    unsigned conns;               /* -c: connections (chat: clients; connect: concurrent slots) */
    unsigned threads;             /* -t */
    double duration;              /* -d seconds; 0 = until -n or a signal */
    double warmup;                /* --warmup seconds, not measured */
    uint64_t count;               /* -n messages (connect: connections); 0 = no limit */
    size_t size;                  /* -s payload bytes */
    unsigned window;              /* --window: messages in flight per connection (closed loop) */
    double rate;                  /* --rate messages/s over all connections (open loop); 0 = off */
    int binary;                   /* --binary */
    int utf8;                     /* --utf8: text with non-ASCII characters */
    int compress;                 /* --compress: offer permessage-deflate */
    int verify;                   /* --verify: check every payload byte of replies */
    double connect_timeout;       /* seconds for TCP + TLS + handshake (+ "ready" for chat) */
    double stop_timeout;          /* seconds for the closing handshakes at the end */
    unsigned connect_concurrency; /* connections being set up at once, per thread */
    unsigned source_ips;          /* spread connections over 127.0.0.1 .. 127.0.0.N; 0 = auto */
    int tls_resume;               /* --tls-resume: resume the slot's last TLS session */
    const char *headers[WB_MAX_HEADERS];
    size_t nheaders;
    const char *protos[WB_MAX_PROTOS];
    size_t nprotos;
    const char *origin;
    unsigned round_delay_ms; /* chat: a finished round starts the next at this tick (Bun: 64) */
    unsigned rooms;          /* chat --rooms N: client k joins room k % N (?room=); 1: one */
    unsigned publishers, subscribers, topics; /* pubsub */
    int patterns;              /* pubsub --patterns: subscribers listen by pattern (wsbench.K.*) */
    const char *const *spread; /* several URLs for one run: connection i uses spread[i % n] */
    unsigned nspread;          /* 0: the run's one URL */
    cli_tls tls;               /* --no-check, -k, --ca, --cert, --key, --passphrase */
    int pid;                   /* server process whose CPU time is measured; 0 = none */
    /* output */
    int json, quiet, status, markdown;
    const char *csv;         /* per-second series: file name, "-" for stdout */
    const char *percentiles; /* --percentiles: the latency spectrum as an HdrHistogram .hgrm */
    const char *report;      /* --report: the HTML report */
    int argc;                /* the command line, for the report */
    char **argv;
    wb_threshold thresholds[WB_MAX_THRESHOLDS];
    unsigned nthresholds;
    /* compare */
    unsigned rounds;
    double pause;
    int compare; /* part of a compare: no per-second output */
} wb_opts;

const char *wb_scenario_name(int s);

/* One server to run against: its URL, its name in the compare table, the --pid to measure. */
#define WB_MAX_TARGETS 16
#define WB_MAX_SPREAD  64
typedef struct wb_target {
    const char *url;
    char label[64];
    int pid; /* 0 = none */
} wb_target;

/* wsbench's exit statuses (wsbench(1)); a usage error is CLI_EXIT_USAGE (1). */
enum {
    WB_EXIT_OK = 0,
    WB_EXIT_FAILED = 2,    /* the run failed: see wb_verdict */
    WB_EXIT_THRESHOLD = 3, /* a --threshold failed */
};

/* ----- results ------------------------------------------------------------------------------- */

enum wb_err {
    WB_E_CONNECT,   /* TCP connect failed */
    WB_E_TIMEOUT,   /* connect, handshake or "ready" took longer than --connect-timeout */
    WB_E_HANDSHAKE, /* upgrade refused or the response is not a valid handshake */
    WB_E_TLS,
    WB_E_PROTOCOL, /* a frame from the server broke RFC 6455 */
    WB_E_CLOSED,   /* the server closed the connection (close frame) during the run */
    WB_E_RESET,    /* the connection ended without a close frame (reset, EOF) */
    WB_E_MISMATCH, /* an echo reply differs from what was sent */
    WB_E_DEFLATE,  /* a compressed message did not inflate */
    WB_E_UNCLEAN,  /* no closing handshake within --stop-timeout at the end */
    WB_E_COUNT
};
const char *wb_err_name(int e);

/* Counters of one worker thread (single writer, read by the main thread with wb_get). */
typedef struct wb_counters {
    uint64_t msgs_rx, bytes_rx; /* data messages and their payload bytes received */
    uint64_t msgs_tx, bytes_tx; /* data messages and payload bytes handed to the kernel */
    uint64_t opened;            /* handshakes completed */
    uint64_t ended;             /* connections that had opened and ended */
    uint64_t unopened;          /* connections that ended before they opened (whole run) */
    uint64_t rounds;            /* chat: rounds completed */
    uint64_t deflate;           /* handshakes that negotiated permessage-deflate */
    uint64_t tls_resumed;       /* TLS handshakes that resumed a session (--tls-resume) */
    uint64_t err[WB_E_COUNT];
} wb_counters;

/* One measured second. */
typedef struct wb_second {
    uint64_t msgs, bytes;     /* received (connect: connections opened) */
    uint64_t errors;          /* new errors */
    uint64_t err[WB_E_COUNT]; /* of each kind */
    uint64_t open;            /* connections open at the end of the second */
    uint64_t p50, p99, max;   /* latency (ns) of what arrived in this second */
    double busy;              /* the busiest wsbench thread's CPU share */
} wb_second;

/* CPU seconds of the whole machine, all its CPUs, as /proc/stat counts them: busy (user,
 * system, interrupts), idle (with I/O wait), and stolen by the hypervisor. */
typedef struct wb_cpus {
    double busy, idle, steal;
} wb_cpus;

/* One run of one scenario against one server. */
typedef struct wb_result {
    char url[256];
    char label[64];
    int scenario;
    int ok;         /* the run measured something (wb_run), and wb_verdict found nothing wrong */
    char fail[512]; /* why not, or the first error seen */
    double seconds; /* measured wall time */
    wb_counters c;  /* over the measured time (opened/closed/err: whole run) */
    unsigned conns_wanted, conns_open;         /* connections asked for; opened (ever) */
    uint64_t opened_all;                       /* handshakes completed over the whole run */
    uint64_t opened_by_thread[WB_MAX_THREADS]; /* ... by each thread (-t spreads them evenly) */
    wb_hist lat;              /* echo/pubsub: latency; chat: round time; connect: whole cycle */
    wb_hist conn;             /* TCP connect to handshake done */
    double cpu_user, cpu_sys; /* wsbench, measured time */
    double busy_max;          /* the busiest thread's CPU / wall over the measured time */
    double busy_sec_max;      /* the busiest thread in its busiest measured second */
    unsigned cpus;            /* CPUs wsbench may run on (its affinity) */
    unsigned threads;
    double server_cpu; /* seconds of --pid's CPU over the measured time; < 0: unknown */
    wb_cpus mach;      /* the machine's, over the measured time; all 0: unknown */
    wb_second *series; /* each measured second */
    size_t nseries, cap_series;
} wb_result;

void wb_result_free(wb_result *r);
double wb_rate(const wb_result *r); /* messages received per second */
/* The busy share when wsbench was its own limit (its busiest thread at 90% of a core or more,
 * or all of it at 90% of the CPUs it may run on), else 0. */
double wb_saturated(const wb_result *r);
/* The share of the machine's CPU time over the run that was idle, stolen, or used by others than
 * wsbench and --pid's server (all CPUs: 1 is all of them); < 0 each when unknown. */
typedef struct wb_machine_share {
    double idle, steal, others;
} wb_machine_share;
wb_machine_share wb_machine(const wb_result *r);

/* ----- engine (bench_run.c) ------------------------------------------------------------------ */

/* Runs o->scenario against url and fills *res (zeroed by the caller, label set).  Output while
 * it runs (per-second lines, status line) follows o.  Returns 0, or -1 with res->fail set when
 * no measurement could be made.  *stop (set from a signal handler) ends the run early. */
int wb_run(const wb_opts *o, const char *url, wb_result *res, volatile int *stop);

/* 1 once *stop asked twice: give up at once. */
extern volatile int wb_interrupted;

/* ----- runs (bench_verdict.c, bench_compare.c) ----------------------------------------------- */

/* One run against t, its report on stdout (o->json, o->csv) and its verdict.  Returns the exit
 * status (WB_EXIT_*).  *stop is set by a signal handler to end the run early. */
int wb_bench(const wb_opts *o, const wb_target *t, volatile int *stop);

/* Every target in turn, o->rounds times; a target that failed a run is not run again.  Prints
 * the table (or JSON) on stdout; returns WB_EXIT_FAILED when a run failed, else WB_EXIT_OK. */
int wb_compare(wb_opts *o, const wb_target *t, unsigned n, volatile int *stop);

/* The verdict on a run wb_run completed (rc its return value; interrupted: a signal ended it):
 * 0 when its figures stand, else -1 with res->fail set to a one-line reason and res->ok
 * cleared.  A run fails when no connection opened, when nothing was received, when every reply
 * mismatched, or when it ended before the -d asked for. */
int wb_verdict(const wb_opts *o, wb_result *res, int rc, int interrupted);

/* ----- reports (bench_report.c) -------------------------------------------------------------- */

/* Parses "p99<5ms" into t; 0 or -1. */
int wb_threshold_parse(const char *s, wb_threshold *t);
/* Prints each threshold's verdict on out; returns the number that failed. */
unsigned wb_thresholds_check(const wb_opts *o, const wb_result *r, FILE *out);
void wb_report_text(const wb_opts *o, const wb_result *r, FILE *out);
void wb_report_json(const wb_opts *o, const wb_result *r, unsigned nr, int compare, FILE *out);
int wb_report_csv(const wb_opts *o, const wb_result *r, const char *path);
/* The latency spectrum of r in HdrHistogram's .hgrm text (values in milliseconds) into path
 * ("-" for stdout): 0, or -1 with errno set. */
int wb_report_hgrm(const wb_result *r, const char *path);
/* The percentiles of the summary's distribution table (and the report's): 50 .. 99.99%. */
#define WB_DIST_LEVELS 6
extern const double wb_dist_levels[WB_DIST_LEVELS];
/* Errors of every kind. */
uint64_t wb_errors_total(const wb_result *r);
/* What is counted: "msg", or "conn" for the connect scenario; the latency's name. */
const char *wb_unit_name(int scenario);
const char *wb_latency_name(int scenario);

/* Numbers for people: "1,234,567", "12.3 ms", "45.6 MB/s". */
char *wb_fmt_count(char *buf, size_t cap, uint64_t v);
char *wb_fmt_time(char *buf, size_t cap, double ns);

/* ----- compare figures (bench_compare.c) ----------------------------------------------------- */

/* Figures of one target over the rounds of a compare: medians of the rate (messages or
 * connections per second), of its ratio to the first target within each round, of p99 (ns) and
 * of CPU seconds per million (NAN when unknown); the range of the rate; runs that measured
 * something and runs where wsbench was its own limit. */
typedef struct wb_summary {
    double rate, lo, hi, ratio, p99, cpu_per_m, self_per_m;
    unsigned ok, saturated;
} wb_summary;
/* runs[round * nt + target]. */
wb_summary wb_summarise(const wb_result *runs, unsigned nt, unsigned rounds, unsigned t);

/* ----- the HTML report (bench_html.c, bench_svg.c) ------------------------------------------- */

/* Writes the report of runs[round * nt + target] (one run: nt = rounds = 1) to path: 0, or -1
 * with errno set. */
int wb_report_html(const wb_opts *o, const wb_result *runs, unsigned nt, unsigned rounds,
                   const char *path);

/* An axis: its range, linear or log10 (ticks at powers of ten), a tick label writer (NULL:
 * %g), its name; hide draws neither ticks nor grid lines. */
typedef struct wb_axis {
    double min, max;
    int log, hide, whole; /* whole: ticks at whole numbers only */
    void (*fmt)(char *buf, size_t cap, double v);
    const char *name;
} wb_axis;

/* One chart being written to f: wb_svg_begin, wb_svg_axes, then marks, then wb_svg_end.  The
 * marks take data coordinates and are clamped to the plot area. */
typedef struct wb_svg {
    FILE *f;
    int w, h;
    wb_axis x, y;
} wb_svg;

void wb_svg_begin(wb_svg *s, FILE *f, int w, int h, const char *title);
void wb_svg_axes(wb_svg *s, const wb_axis *x, const wb_axis *y);
double wb_svg_x(const wb_svg *s, double v);
double wb_svg_y(const wb_svg *s, double v);
/* A line through n points in the colour of series. */
void wb_svg_line(wb_svg *s, const double *x, const double *y, size_t n, unsigned series);
/* A bar between x0 and x1 from y0 up to y1 (stacked bars: y0 is the top of the one below). */
void wb_svg_bar(wb_svg *s, double x0, double x1, double y0, double y1, unsigned series);
/* A min..max whisker at x. */
void wb_svg_whisker(wb_svg *s, double x, double lo, double hi);
/* A text centred just above (x, y). */
void wb_svg_note(wb_svg *s, double x, double y, const char *str);
/* Coloured names of the series, top right. */
void wb_svg_legend(wb_svg *s, const char *const *names, unsigned n);
void wb_svg_end(wb_svg *s);
const char *wb_svg_colour(unsigned series);
/* s as XML character data or attribute value (&, <, >, " escaped). */
void wb_xml_text(FILE *f, const char *s);

#endif
