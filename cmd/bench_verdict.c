/* One wsbench run: the engine's result, the verdict on it (did it measure anything?), the
 * report and the exit status.  See bench.h. */
#include "bench.h"
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* Appends s to buf[0..cap), cut to fit. */
static void append(char *buf, size_t cap, const char *s)
{
    size_t n = strlen(buf), k = strlen(s);
    if (k > cap - n - 1) k = cap - n - 1;
    memcpy(buf + n, s, k);
    buf[n + k] = 0;
}

/* The reason of a failed run, followed by what the engine saw first (in parentheses). */
static int fail(wb_result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(wb_result *r, const char *fmt, ...)
{
    char first[sizeof r->fail];
    memcpy(first, r->fail, sizeof first);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->fail, sizeof r->fail, fmt, ap);
    va_end(ap);
    if (*first) {
        append(r->fail, sizeof r->fail, " (");
        append(r->fail, sizeof r->fail, first);
        append(r->fail, sizeof r->fail, ")");
    }
    r->ok = 0;
    return -1;
}

/* Echo's first-reply check (bench_scenario.c) words its error ("connection 3: does not echo:
 * first reply was ...") so that "the server at URL" completes it. */
#define NOT_ECHO "does not echo"

int wb_verdict(const wb_opts *o, wb_result *r, int rc, int interrupted)
{
    uint64_t errors = 0;
    for (int e = 0; e < WB_E_COUNT; e++) errors += r->c.err[e];
    if (rc < 0) {
        /* Chat clients that connected but never got "ready": the room waits for more (or
         * fewer) members than -c brought. */
        if (r->scenario == WB_CHAT && !r->ok && r->conns_open == r->conns_wanted && !errors) {
            char hint[160];
            snprintf(hint, sizeof hint,
                     ": the server probably waits for a different number of clients "
                     "(wsserve --chat --clients N must match -c N, here %u)",
                     r->conns_wanted);
            append(r->fail, sizeof r->fail, hint);
        }
        r->ok = 0; /* a chat client lost during the run: what was measured is not the room's */
        return -1;
    }
    uint64_t got = r->scenario == WB_CONNECT ? r->c.opened : r->c.msgs_rx;
    if (r->c.err[WB_E_MISMATCH] && !r->lat.count &&
        (r->scenario == WB_ECHO || r->scenario == WB_PUBSUB)) {
        if (r->scenario == WB_PUBSUB) return fail(r, "no delivery matched what was published");
        const char *said = strstr(r->fail, NOT_ECHO);
        if (said) {
            char first[sizeof r->fail];
            snprintf(first, sizeof first, "%s", said);
            snprintf(r->fail, sizeof r->fail, "the server at %s ", r->url);
            append(r->fail, sizeof r->fail, first);
            r->ok = 0;
            return -1;
        }
        r->fail[0] = 0;
        return fail(r, "the server at %s " NOT_ECHO ": every reply mismatched", r->url);
    }
    if (r->scenario != WB_HOLD && !got && !interrupted)
        return fail(r, "no %s %s in %.2f s", r->scenario == WB_CONNECT ? "connection" : "message",
                    r->scenario == WB_CONNECT ? "completed" : "received", r->seconds);
    if (!interrupted && o->duration > 0 && !o->count && r->seconds < o->duration * 0.9)
        return fail(r, "every connection ended after %.2f s of the %g s asked", r->seconds,
                    o->duration);
    return 0;
}

int wb_bench(const wb_opts *opts, const wb_target *t, volatile int *stop)
{
    wb_opts o = *opts;
    o.pid = t->pid;
    wb_result *r = calloc(1, sizeof *r);
    if (!r) {
        cli_warn("wsbench", "out of memory");
        return WB_EXIT_FAILED;
    }
    int rc = wb_run(&o, t->url, r, stop);
    int failed = wb_verdict(&o, r, rc, *stop) < 0;
    /* stdout carries one format: the CSV series with --csv -, and the summary goes to stderr
     * then (--json with --csv - is a usage error). */
    int csv_out = o.csv && !strcmp(o.csv, "-");
    int hgrm_out = o.percentiles && !strcmp(o.percentiles, "-");
    FILE *text = o.json || csv_out || hgrm_out ? stderr : stdout;
    if (o.json)
        wb_report_json(&o, r, 1, 0, stdout);
    else
        wb_report_text(&o, r, text);
    if (o.csv && wb_report_csv(&o, r, o.csv) < 0)
        cli_warn("wsbench", "cannot write %s: %s", o.csv, strerror(errno));
    if (o.percentiles && wb_report_hgrm(r, o.percentiles) < 0)
        cli_warn("wsbench", "cannot write %s: %s", o.percentiles, strerror(errno));
    if (o.report && wb_report_html(&o, r, 1, 1, o.report) < 0)
        cli_warn("wsbench", "cannot write %s: %s", o.report, strerror(errno));
    unsigned th = wb_thresholds_check(&o, r, text);
    if (failed && o.json) cli_warn("wsbench", "%s", r->fail);
    wb_result_free(r);
    free(r);
    return failed ? WB_EXIT_FAILED : th ? WB_EXIT_THRESHOLD : WB_EXIT_OK;
}
