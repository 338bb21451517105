/* wsbench compare: the same run against several servers in turn (A B A B ...), for several
 * rounds, and the table of medians and per-round ratios.  See bench.h. */
#include "bench.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, unsigned n)
{
    if (!n) return 0;
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

typedef wb_summary summary;

summary wb_summarise(const wb_result *runs, unsigned nt, unsigned rounds, unsigned t)
{
    summary s = {0};
    double rate[64], ratio[64], p99[64], cpu[64], self[64];
    unsigned n = 0, nr = 0, nc = 0, np = 0;
    s.lo = INFINITY;
    for (unsigned r = 0; r < rounds && r < 64; r++) {
        const wb_result *x = &runs[r * nt + t], *base = &runs[r * nt];
        if (!x->ok) continue;
        double v = wb_rate(x);
        rate[n] = v;
        if (x->lat.count) p99[np++] = (double)wb_hist_quantile(&x->lat, .99);
        double msgs = x->scenario == WB_CONNECT ? (double)x->c.opened : (double)x->c.msgs_rx;
        self[n] = msgs > 0 ? (x->cpu_user + x->cpu_sys) / msgs * 1e6 : 0;
        n++;
        if (v < s.lo) s.lo = v;
        if (v > s.hi) s.hi = v;
        if (base->ok && wb_rate(base) > 0) ratio[nr++] = v / wb_rate(base);
        if (x->server_cpu >= 0 && msgs > 0) cpu[nc++] = x->server_cpu / msgs * 1e6;
        s.saturated += wb_saturated(x) > 0;
    }
    s.ok = n;
    s.rate = median(rate, n);
    s.p99 = np ? median(p99, np) : NAN;
    s.self_per_m = median(self, n);
    /* The ratio is the median of the ratios within each round: both servers of a round ran
     * under the same machine conditions, which noise between rounds does not cancel. */
    s.ratio = nr ? median(ratio, nr) : NAN;
    s.cpu_per_m = nc ? median(cpu, nc) : NAN;
    if (!n) s.lo = 0;
    return s;
}

/* The table: runs[round * nt + target]. */
static void table(const wb_opts *o, const wb_result *runs, unsigned nt, unsigned rounds, FILE *out)
{
    char a[32], b[32], c[32], d[32];
    const char *unit = wb_unit_name(runs[0].scenario);
    const char *first = runs[0].label[0] ? runs[0].label : "first";
    if (o->markdown) {
        fprintf(out,
                "| server | %s/s (median) | vs %s | range | %s p99 | server CPU s per M %s "
                "| runs |\n",
                unit, first, wb_latency_name(runs[0].scenario), unit);
        fputs("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n", out);
    } else {
        fprintf(out, "\nwsbench compare: %s, %u round%s of %g s, targets in turn\n\n",
                wb_scenario_name(runs[0].scenario), rounds, rounds == 1 ? "" : "s", o->duration);
        char vs[72];
        snprintf(vs, sizeof vs, "vs %s", first);
        fprintf(out, "  %-12s %16s %9s %25s %10s %13s  %s\n", "target", "median", vs, "min .. max",
                "p99", "server cpu/M", "url");
    }
    for (unsigned t = 0; t < nt; t++) {
        summary s = wb_summarise(runs, nt, rounds, t);
        const wb_result *r0 = &runs[t];
        const char *label = r0->label[0] ? r0->label : r0->url;
        char ratio[16] = "-", cpu[24] = "-", range[64];
        if (!isnan(s.ratio)) snprintf(ratio, sizeof ratio, "%.2fx", s.ratio);
        if (!isnan(s.cpu_per_m)) snprintf(cpu, sizeof cpu, "%.3f s", s.cpu_per_m);
        snprintf(range, sizeof range, "%s .. %s", wb_fmt_count(a, sizeof a, (uint64_t)s.lo),
                 wb_fmt_count(b, sizeof b, (uint64_t)s.hi));
        if (!s.ok) snprintf(range, sizeof range, "failed");
        if (o->markdown) {
            fprintf(out, "| %s | %s | %s | %s | %s | %s | %u%s |\n", label,
                    wb_fmt_count(c, sizeof c, (uint64_t)s.rate), ratio, range,
                    !isnan(s.p99) ? wb_fmt_time(d, sizeof d, s.p99) : "-", cpu, s.ok,
                    s.saturated ? " (wsbench saturated)" : "");
        } else {
            fprintf(out, "  %-12s %10s %s/s %9s %25s %10s %13s  %s%s\n", label,
                    wb_fmt_count(c, sizeof c, (uint64_t)s.rate), unit, ratio, range,
                    !isnan(s.p99) ? wb_fmt_time(d, sizeof d, s.p99) : "-", cpu, r0->url,
                    s.ok < rounds ? "  (failed)" : "");
        }
    }
    /* Why a target failed: its first failed run (the later rounds skipped it). */
    for (unsigned t = 0; t < nt; t++)
        for (unsigned r = 0; r < rounds; r++) {
            const wb_result *x = &runs[r * nt + t];
            if (x->ok) continue;
            fprintf(out, "%s%s failed in round %u: %s\n", o->markdown ? "\n" : "  ",
                    x->label[0] ? x->label : x->url, r + 1,
                    x->fail[0] ? x->fail : "no measurement");
            break;
        }
    if (!o->markdown) {
        unsigned sat = 0;
        for (unsigned i = 0; i < nt * rounds; i++) sat += wb_saturated(&runs[i]) > 0;
        if (sat)
            fprintf(out,
                    "\nwarning: wsbench was at its own CPU limit in %u of %u runs: those "
                    "figures are wsbench's, not the server's (try -t, or more CPUs for it)\n",
                    sat, nt * rounds);
    }
}

/* Sleeps; a signal (the user stopping compare) cuts it short. */
static void pause_for(double seconds)
{
    struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    nanosleep(&ts, NULL);
}

int wb_compare(wb_opts *o, const wb_target *t, unsigned nt, volatile int *stop)
{
    wb_result *runs = calloc((size_t)nt * o->rounds, sizeof *runs);
    if (!runs) {
        fputs("wsbench: out of memory\n", stderr);
        return WB_EXIT_FAILED;
    }
    int failed[WB_MAX_TARGETS] = {0}, any_failed = 0;
    unsigned done_rounds = 0, ran = 0, alive = nt;
    for (unsigned r = 0; r < o->rounds && alive && !*stop; r++) {
        /* Every other round runs the targets in reverse (A B, B A, ...): on a busy machine
         * the one that runs second is at a disadvantage that the medians would keep. */
        for (unsigned k = 0; k < nt && !*stop; k++) {
            unsigned i = r & 1 ? nt - 1 - k : k;
            wb_result *res = &runs[r * nt + i];
            snprintf(res->label, sizeof res->label, "%s", t[i].label);
            snprintf(res->url, sizeof res->url, "%s", t[i].url);
            res->scenario = o->scenario;
            res->server_cpu = -1;
            /* A failure (wrong URL, wrong server, wrong chat size) would fail again: the
             * target's first failed run is its last. */
            if (failed[i]) {
                snprintf(res->fail, sizeof res->fail, "not run: failed in an earlier round");
                continue;
            }
            if (ran++) pause_for(o->pause);
            o->pid = t[i].pid;
            int rc = wb_run(o, t[i].url, res, stop);
            char a[32];
            if (wb_verdict(o, res, rc, *stop) < 0) {
                failed[i] = any_failed = 1;
                alive--;
                fprintf(stderr, "round %u/%u  %-10s failed: %s\n", r + 1, o->rounds, t[i].label,
                        res->fail);
            } else if (!o->quiet) {
                /* Where the CPUs went: a round far from the others shows why (the server
                 * waited, the machine was busy with others or stolen). */
                char why[96] = "";
                wb_machine_share m = wb_machine(res);
                if (m.idle >= 0 && res->server_cpu >= 0)
                    snprintf(why, sizeof why,
                             "  server %.0f%%, idle %.0f%%, stolen %.1f%%, others %.0f%%",
                             res->server_cpu / (res->seconds > 0 ? res->seconds : 1) * 100,
                             m.idle * 100, m.steal * 100, m.others * 100);
                fprintf(stderr, "round %u/%u  %-10s %12s %s/s%s%s\n", r + 1, o->rounds, t[i].label,
                        wb_fmt_count(a, sizeof a, (uint64_t)wb_rate(res)),
                        wb_unit_name(o->scenario), why,
                        wb_saturated(res) ? "  (wsbench saturated)" : "");
            }
        }
        if (!*stop) done_rounds = r + 1;
    }
    if (!done_rounds) done_rounds = 1;
    if (o->json)
        wb_report_json(o, runs, done_rounds * nt, 1, stdout);
    else
        table(o, runs, nt, done_rounds, stdout);
    if (o->report && wb_report_html(o, runs, nt, done_rounds, o->report) < 0)
        fprintf(stderr, "wsbench: cannot write %s: %s\n", o->report, strerror(errno));
    for (unsigned i = 0; i < nt * o->rounds; i++) wb_result_free(&runs[i]);
    free(runs);
    return any_failed ? WB_EXIT_FAILED : WB_EXIT_OK;
}
