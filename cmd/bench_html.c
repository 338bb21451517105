/* wsbench --report: one self-contained HTML file, no script, no request to anywhere.  One run:
 * its figures, throughput and latency each second, the latency percentile curve on a log axis,
 * open connections and errors each second.  A compare: the table, the median rates with their
 * min..max whiskers, and each target's percentile curve over all its rounds.  Then the command
 * line, the versions and the machine.  The file is well-formed XML (XHTML in an HTML5 page) so
 * tests read it with an XML parser; the charts are bench_svg.c's.  See bench.h. */
#include "bench.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define CHART_W 760
#define CHART_H 260

static const char style[] =
    "body{font-family:sans-serif;margin:2em auto;max-width:800px;color:#222}"
    "h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}"
    "table{border-collapse:collapse;margin:.5em 0}"
    "td,th{padding:.2em .8em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}"
    "td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}"
    "code{white-space:pre-wrap;word-break:break-all}"
    "svg{display:block;margin:1em 0}.fail{color:#b00}";

static void esc(FILE *f, const char *s)
{
    wb_xml_text(f, s);
}

static void row(FILE *f, const char *name, const char *value)
{
    fputs("<tr><th>", f);
    esc(f, name);
    fputs("</th><td>", f);
    esc(f, value);
    fputs("</td></tr>\n", f);
}

/* ----- tick labels ------------------------------------------------------------------------------
 */

static void fmt_time(char *buf, size_t cap, double ns)
{
    wb_fmt_time(buf, cap, ns);
}

static void fmt_count(char *buf, size_t cap, double v)
{
    if (v >= 1e6)
        snprintf(buf, cap, "%gM", v / 1e6);
    else if (v >= 1e3)
        snprintf(buf, cap, "%gk", v / 1e3);
    else
        snprintf(buf, cap, "%g", v);
}

/* The percentile axis is 1/(1 - p): 10 is 90%, 1000 is 99.9%. */
static void fmt_pct(char *buf, size_t cap, double v)
{
    int nines = (int)lround(log10(v));
    snprintf(buf, cap, "%.*f%%", nines > 2 ? nines - 2 : 0, 100 * (1 - 1 / v));
}

/* ----- charts ------------------------------------------------------------------------------------
 */

/* The percentile curves of n histograms (x: 1/(1 - p) on a log axis; the max at x = count, the
 * one-in-count value). */
static void percentile_chart(FILE *f, const char *title, const wb_hist *const *h,
                             const char *const *names, unsigned n)
{
    wb_pct *p = malloc(WB_PCT_MAX * sizeof *p);
    double *x = malloc(WB_PCT_MAX * sizeof *x), *y = malloc(WB_PCT_MAX * sizeof *y);
    double xmax = 10, ymax = 0;
    for (unsigned i = 0; i < n; i++) {
        if ((double)h[i]->count > xmax) xmax = (double)h[i]->count;
        if (h[i]->count && (double)h[i]->max > ymax) ymax = (double)h[i]->max;
    }
    wb_svg s;
    wb_svg_begin(&s, f, CHART_W, CHART_H, title);
    wb_svg_axes(&s,
                &(wb_axis){.min = 1, .max = xmax, .log = 1, .fmt = fmt_pct, .name = "percentile"},
                &(wb_axis){.min = 0, .max = ymax * 1.05, .fmt = fmt_time});
    for (unsigned i = 0; p && x && y && i < n; i++) {
        size_t k = wb_hist_spectrum(h[i], 5, p, WB_PCT_MAX);
        for (size_t j = 0; j < k; j++) {
            x[j] = p[j].pct < 1 ? 1 / (1 - p[j].pct) : (double)h[i]->count;
            y[j] = (double)p[j].value;
        }
        wb_svg_line(&s, x, y, k, i);
    }
    if (n > 1) wb_svg_legend(&s, names, n);
    wb_svg_end(&s);
    free(p);
    free(x);
    free(y);
}

typedef enum { PS_MSGS, PS_OPEN, PS_ERRORS } per_second;

/* One figure of the series per second of r: a line (bars for errors). */
static void series_chart(FILE *f, const char *title, const char *yname, const wb_result *r,
                         per_second what)
{
    size_t n = r->nseries;
    double *x = malloc((n + 1) * sizeof *x), *y = malloc((n + 1) * sizeof *y), ymax = 0;
    for (size_t i = 0; x && y && i < n; i++) {
        const wb_second *sec = &r->series[i];
        x[i] = (double)(i + 1);
        y[i] = (double)(what == PS_MSGS ? sec->msgs : what == PS_OPEN ? sec->open : sec->errors);
        if (y[i] > ymax) ymax = y[i];
    }
    wb_svg s;
    wb_svg_begin(&s, f, CHART_W, what == PS_MSGS ? CHART_H : CHART_H * 3 / 4, title);
    wb_svg_axes(&s, &(wb_axis){.min = 0.5, .max = (double)n + 0.5, .whole = 1, .name = "second"},
                &(wb_axis){.min = 0,
                           .max = ymax > 0 ? ymax * 1.1 : 1,
                           .whole = 1,
                           .fmt = fmt_count,
                           .name = yname});
    if (!ymax) wb_svg_note(&s, ((double)n + 1) / 2, 0.5, "none");
    if (x && y && what == PS_ERRORS) {
        /* Stacked by kind, a colour per kind that occurred. */
        const char *names[WB_E_COUNT];
        unsigned colour[WB_E_COUNT], kinds = 0;
        for (int e = 0; e < WB_E_COUNT; e++) {
            uint64_t any = 0;
            for (size_t i = 0; i < n; i++) any += r->series[i].err[e];
            if (any) colour[e] = kinds, names[kinds++] = wb_err_name(e);
        }
        for (size_t i = 0; i < n; i++) {
            double base = 0;
            for (int e = 0; e < WB_E_COUNT; e++) {
                double v = (double)r->series[i].err[e];
                if (!v) continue;
                wb_svg_bar(&s, x[i] - 0.3, x[i] + 0.3, base, base + v, colour[e]);
                base += v;
            }
        }
        wb_svg_legend(&s, names, kinds);
    } else if (x && y) {
        wb_svg_line(&s, x, y, n, what == PS_OPEN ? 2 : 0);
    }
    wb_svg_end(&s);
    free(x);
    free(y);
}

/* p50, p99 and max of what arrived in each second, on a log axis. */
static void latency_series_chart(FILE *f, const wb_result *r)
{
    size_t n = r->nseries;
    double *x = malloc((n + 1) * sizeof *x), *y = malloc((n + 1) * sizeof *y);
    double lo = 0, hi = 0;
    for (size_t i = 0; i < n; i++) {
        const wb_second *sec = &r->series[i];
        if (sec->p50 && (!lo || (double)sec->p50 < lo)) lo = (double)sec->p50;
        if ((double)sec->max > hi) hi = (double)sec->max;
    }
    char title[64];
    snprintf(title, sizeof title, "%s each second: p50, p99, max", wb_latency_name(r->scenario));
    wb_svg s;
    wb_svg_begin(&s, f, CHART_W, CHART_H, title);
    wb_svg_axes(&s, &(wb_axis){.min = 0.5, .max = (double)n + 0.5, .whole = 1, .name = "second"},
                &(wb_axis){.min = lo > 0 ? pow(10, floor(log10(lo))) : 1e3,
                           .max = hi > 0 ? pow(10, ceil(log10(hi * 1.01))) : 1e6,
                           .log = 1,
                           .fmt = fmt_time});
    for (int k = 0; x && y && k < 3; k++) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            const wb_second *sec = &r->series[i];
            uint64_t v = k == 0 ? sec->p50 : k == 1 ? sec->p99 : sec->max;
            if (!v) continue; /* nothing arrived that second */
            x[m] = (double)(i + 1);
            y[m++] = (double)v;
        }
        wb_svg_line(&s, x, y, m, (unsigned)k);
    }
    static const char *const names[] = {"p50", "p99", "max"};
    wb_svg_legend(&s, names, 3);
    wb_svg_end(&s);
    free(x);
    free(y);
}

/* The compare's median rates, min..max whiskers, one bar per target. */
static void rates_chart(FILE *f, const wb_result *runs, unsigned nt, unsigned rounds)
{
    wb_summary sum[WB_MAX_TARGETS];
    double top = 0;
    for (unsigned t = 0; t < nt; t++) {
        sum[t] = wb_summarise(runs, nt, rounds, t);
        if (sum[t].hi > top) top = sum[t].hi;
    }
    char title[96];
    snprintf(title, sizeof title, "%s/s: median of %u round%s, min .. max",
             wb_unit_name(runs[0].scenario), rounds, rounds == 1 ? "" : "s");
    wb_svg s;
    wb_svg_begin(&s, f, CHART_W, CHART_H, title);
    wb_svg_axes(&s, &(wb_axis){.min = 0, .max = nt, .hide = 1},
                &(wb_axis){.min = 0, .max = top > 0 ? top * 1.2 : 1, .fmt = fmt_count});
    for (unsigned t = 0; t < nt; t++) {
        const char *name = runs[t].label[0] ? runs[t].label : runs[t].url;
        char note[96], c[32];
        if (!sum[t].ok) {
            snprintf(note, sizeof note, "%s: failed", name);
            wb_svg_note(&s, t + 0.5, 0, note);
            continue;
        }
        wb_svg_bar(&s, t + 0.2, t + 0.8, 0, sum[t].rate, t);
        wb_svg_whisker(&s, t + 0.5, sum[t].lo, sum[t].hi);
        snprintf(note, sizeof note, "%s: %s", name,
                 wb_fmt_count(c, sizeof c, (uint64_t)sum[t].rate));
        wb_svg_note(&s, t + 0.5, sum[t].hi, note);
    }
    wb_svg_end(&s);
}

/* ----- tables ------------------------------------------------------------------------------------
 */

static void run_table(FILE *f, const wb_opts *o, const wb_result *r)
{
    char a[48], b[48], v[160];
    fputs("<table>\n", f);
    if (!r->ok) {
        fputs("<tr><th>failed</th><td class=\"fail\">", f);
        esc(f, r->fail[0] ? r->fail : "no measurement");
        fputs("</td></tr>\n", f);
    }
    snprintf(v, sizeof v, "%u wanted, %u opened, %s handshakes; %u thread%s", r->conns_wanted,
             r->conns_open, wb_fmt_count(a, sizeof a, r->opened_all), r->threads,
             r->threads == 1 ? "" : "s");
    row(f, "connections", v);
    snprintf(v, sizeof v, "%.2f s", r->seconds);
    row(f, "measured", v);
    snprintf(v, sizeof v, "%s %s/s (%s received)", wb_fmt_count(a, sizeof a, (uint64_t)wb_rate(r)),
             wb_unit_name(r->scenario),
             wb_fmt_count(b, sizeof b, r->scenario == WB_CONNECT ? r->c.opened : r->c.msgs_rx));
    row(f, "throughput", v);
    if (r->scenario != WB_CONNECT) {
        snprintf(v, sizeof v, "%.2f MB/s received",
                 r->seconds > 0 ? (double)r->c.bytes_rx / r->seconds / 1e6 : 0);
        row(f, "bytes", v);
    }
    if (r->lat.count) {
        const double *q = wb_dist_levels;
        for (size_t i = 0; i < WB_DIST_LEVELS; i++) {
            snprintf(a, sizeof a, "%s %g%%", wb_latency_name(r->scenario), q[i] * 100);
            row(f, a, wb_fmt_time(b, sizeof b, (double)wb_hist_quantile(&r->lat, q[i])));
        }
        snprintf(a, sizeof a, "%s max", wb_latency_name(r->scenario));
        row(f, a, wb_fmt_time(b, sizeof b, (double)r->lat.max));
    }
    if (r->conn.count) {
        char c[24];
        snprintf(v, sizeof v, "p50 %s, p99 %s, max %s",
                 wb_fmt_time(a, sizeof a, (double)wb_hist_quantile(&r->conn, .5)),
                 wb_fmt_time(b, sizeof b, (double)wb_hist_quantile(&r->conn, .99)),
                 wb_fmt_time(c, sizeof c, (double)r->conn.max));
        row(f, "connect time", v);
    }
    v[0] = 0;
    for (int e = 0; e < WB_E_COUNT; e++)
        if (r->c.err[e]) {
            size_t n = strlen(v);
            snprintf(v + n, sizeof v - n, "%s%s %s", n ? ", " : "",
                     wb_fmt_count(a, sizeof a, r->c.err[e]), wb_err_name(e));
        }
    row(f, "errors", wb_errors_total(r) ? v : "none");
    snprintf(v, sizeof v, "user %.2f s, sys %.2f s; busiest thread %.0f%%%s", r->cpu_user,
             r->cpu_sys, r->busy_max * 100,
             wb_saturated(r) ? " (wsbench was its own limit: try more threads)" : "");
    row(f, "wsbench cpu", v);
    if (r->server_cpu >= 0) {
        double n = r->scenario == WB_CONNECT ? (double)r->c.opened : (double)r->c.msgs_rx;
        snprintf(v, sizeof v, "%.2f s; %.3f s per million %ss", r->server_cpu,
                 n > 0 ? r->server_cpu / n * 1e6 : 0, wb_unit_name(r->scenario));
        row(f, "server cpu", v);
    }
    (void)o;
    fputs("</table>\n", f);
}

static void compare_table(FILE *f, const wb_result *runs, unsigned nt, unsigned rounds)
{
    char a[32], b[32], c[32];
    fprintf(f,
            "<table>\n<tr><th>target</th><th>median %s/s</th><th>vs first</th>"
            "<th>min .. max</th><th>p99</th><th>server cpu/M</th><th>runs</th><th>url</th></tr>\n",
            wb_unit_name(runs[0].scenario));
    for (unsigned t = 0; t < nt; t++) {
        wb_summary s = wb_summarise(runs, nt, rounds, t);
        fputs("<tr><td>", f);
        esc(f, runs[t].label[0] ? runs[t].label : runs[t].url);
        fprintf(f, "</td><td class=\"n\">%s</td><td class=\"n\">",
                wb_fmt_count(a, sizeof a, (uint64_t)s.rate));
        if (!isnan(s.ratio))
            fprintf(f, "%.2fx", s.ratio);
        else
            fputs("-", f);
        fprintf(f, "</td><td class=\"n\">%s .. %s</td><td class=\"n\">%s</td><td class=\"n\">",
                wb_fmt_count(a, sizeof a, (uint64_t)s.lo),
                wb_fmt_count(b, sizeof b, (uint64_t)s.hi),
                isnan(s.p99) ? "-" : wb_fmt_time(c, sizeof c, s.p99));
        if (!isnan(s.cpu_per_m))
            fprintf(f, "%.3f s", s.cpu_per_m);
        else
            fputs("-", f);
        fprintf(f, "</td><td class=\"n\">%u of %u</td><td>", s.ok, rounds);
        esc(f, runs[t].url);
        fputs("</td></tr>\n", f);
    }
    fputs("</table>\n", f);
    for (unsigned i = 0; i < nt * rounds; i++)
        if (!runs[i].ok && runs[i].fail[0]) {
            fprintf(f, "<p class=\"fail\">round %u, ", i / nt + 1);
            esc(f, runs[i].label[0] ? runs[i].label : runs[i].url);
            fputs(": ", f);
            esc(f, runs[i].fail);
            fputs("</p>\n", f);
        }
}

/* ----- the run: command line, versions, machine
 * --------------------------------------------------- */

/* The value of the first "key<spaces>: value" line of a /proc file, or "". */
static void proc_field(const char *path, const char *key, char *out, size_t cap)
{
    out[0] = 0;
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[512];
    size_t k = strlen(key);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, k) || !strchr(line, ':')) continue;
        const char *v = strchr(line, ':') + 1;
        while (*v == ' ' || *v == '\t') v++;
        snprintf(out, cap, "%.*s", (int)strcspn(v, "\n"), v);
        break;
    }
    fclose(f);
}

static void about_table(FILE *f, const wb_opts *o)
{
    char v[512], w[256];
    fputs("<table>\n<tr><th>command</th><td><code>", f);
    for (int i = 0; i < o->argc; i++) {
        /* Shell-quoted when it needs to be, so the line can be run again. */
        const char *a = o->argv[i];
        int plain = *a && strspn(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                    "0123456789-_=./:,%@+") == strlen(a);
        if (i) fputc(' ', f);
        if (plain) {
            esc(f, i ? a : "wsbench");
            continue;
        }
        fputc('\'', f);
        for (; *a; a++) {
            char c[2] = {*a, 0};
            esc(f, *a == '\'' ? "'\\''" : c);
        }
        fputc('\'', f);
    }
    fputs("</code></td></tr>\n", f);
    wsk_versions(w, sizeof w);
    snprintf(v, sizeof v, "wsbench %s (%s), built with %s", WSK_VERSION, w, __VERSION__);
    row(f, "versions", v);
    struct utsname u;
    if (!uname(&u)) {
        snprintf(v, sizeof v, "%s %s %s", u.sysname, u.release, u.machine);
        row(f, "system", v);
    }
    proc_field("/proc/cpuinfo", "model name", w, sizeof w);
    snprintf(v, sizeof v, "%s%s%ld online", w, w[0] ? "; " : "", sysconf(_SC_NPROCESSORS_ONLN));
    row(f, "cpu", v);
    proc_field("/proc/meminfo", "MemTotal", w, sizeof w);
    if (w[0]) row(f, "memory", w);
    double load[3];
    if (getloadavg(load, 3) == 3) {
        snprintf(v, sizeof v, "%.2f %.2f %.2f (1, 5, 15 minutes) when the report was written",
                 load[0], load[1], load[2]);
        row(f, "load", v);
    }
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(v, sizeof v, "%Y-%m-%d %H:%M:%S UTC", &tm);
    row(f, "written", v);
    fputs("</table>\n", f);
}

/* ----- the page
 * ----------------------------------------------------------------------------------- */

static void one_run(FILE *f, const wb_opts *o, const wb_result *r)
{
    run_table(f, o, r);
    if (r->nseries && r->scenario != WB_HOLD) { /* hold sends nothing */
        char t[64], y[32];
        snprintf(t, sizeof t, "throughput: %s each second",
                 r->scenario == WB_CONNECT ? "connections completed" : "messages received");
        snprintf(y, sizeof y, "%s/s", wb_unit_name(r->scenario));
        series_chart(f, t, y, r, PS_MSGS);
        if (r->lat.count) latency_series_chart(f, r);
    }
    if (r->lat.count) {
        char t[80];
        snprintf(t, sizeof t, "%s percentiles (%s values)", wb_latency_name(r->scenario),
                 wb_fmt_count((char[32]){0}, 32, r->lat.count));
        const wb_hist *h = &r->lat;
        const char *name = r->label;
        percentile_chart(f, t, &h, &name, 1);
    }
    if (!r->nseries) fputs("<p>No figures per second: the run measured less than 50 ms.</p>\n", f);
    if (r->nseries) {
        series_chart(f, "connections open at the end of each second", "open", r, PS_OPEN);
        series_chart(f, "errors each second, by kind", "errors", r, PS_ERRORS);
    }
}

static void compare(FILE *f, const wb_result *runs, unsigned nt, unsigned rounds)
{
    compare_table(f, runs, nt, rounds);
    rates_chart(f, runs, nt, rounds);
    /* Each target's latency over all its measured rounds. */
    wb_hist *h = calloc(nt, sizeof *h);
    const wb_hist *hp[WB_MAX_TARGETS];
    const char *names[WB_MAX_TARGETS];
    if (!h) return;
    uint64_t any = 0;
    for (unsigned t = 0; t < nt; t++) {
        wb_hist_reset(&h[t]);
        for (unsigned r = 0; r < rounds; r++)
            if (runs[r * nt + t].ok) wb_hist_add(&h[t], &runs[r * nt + t].lat);
        hp[t] = &h[t];
        names[t] = runs[t].label[0] ? runs[t].label : runs[t].url;
        any += h[t].count;
    }
    if (any) {
        char title[80];
        snprintf(title, sizeof title, "%s percentiles, all rounds of each target",
                 wb_latency_name(runs[0].scenario));
        percentile_chart(f, title, hp, names, nt);
    }
    free(h);
}

int wb_report_html(const wb_opts *o, const wb_result *runs, unsigned nt, unsigned rounds,
                   const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    char title[320];
    if (nt > 1 || o->compare)
        snprintf(title, sizeof title, "wsbench compare %s: %u targets, %u round%s",
                 wb_scenario_name(o->scenario), nt, rounds, rounds == 1 ? "" : "s");
    else
        snprintf(title, sizeof title, "wsbench %s %s", wb_scenario_name(runs[0].scenario),
                 runs[0].url);
    fputs("<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n"
          "<meta charset=\"utf-8\"/>\n"
          "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
          "style-src 'unsafe-inline'\"/>\n<title>",
          f);
    esc(f, title);
    fprintf(f, "</title>\n<style>%s</style>\n</head>\n<body>\n<h1>", style);
    esc(f, title);
    fputs("</h1>\n", f);
    if (nt > 1 || o->compare)
        compare(f, runs, nt, rounds);
    else
        one_run(f, o, runs);
    fputs("<h2>How it ran</h2>\n", f);
    about_table(f, o);
    fputs("</body>\n</html>\n", f);
    return fclose(f);
}
