/* wsbench output: the summary people read, JSON and CSV for machines, thresholds for CI.  The
 * compare table is bench_compare.c's.  See bench.h. */
#include "bench.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ----- numbers for people --------------------------------------------------------------------- */

char *wb_fmt_count(char *buf, size_t cap, uint64_t v)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
    size_t o = 0;
    for (int i = 0; i < n && o + 2 < cap; i++) {
        if (i && (n - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = tmp[i];
    }
    buf[o] = 0;
    return buf;
}

char *wb_fmt_time(char *buf, size_t cap, double ns)
{
    if (ns < 1e3)
        snprintf(buf, cap, "%.0f ns", ns);
    else if (ns < 1e6)
        snprintf(buf, cap, "%.*f us", ns < 1e4 ? 2 : ns < 1e5 ? 1 : 0, ns / 1e3);
    else if (ns < 1e9)
        snprintf(buf, cap, "%.*f ms", ns < 1e7 ? 2 : ns < 1e8 ? 1 : 0, ns / 1e6);
    else
        snprintf(buf, cap, "%.2f s", ns / 1e9);
    return buf;
}

const char *wb_latency_name(int scenario)
{
    switch (scenario) {
    case WB_CHAT: return "round time";
    case WB_CONNECT: return "cycle time";
    default: return "latency";
    }
}

const char *wb_unit_name(int scenario)
{
    return scenario == WB_CONNECT ? "conn" : "msg";
}

const double wb_dist_levels[WB_DIST_LEVELS] = {.5, .75, .9, .99, .999, .9999};

uint64_t wb_errors_total(const wb_result *r)
{
    uint64_t n = 0;
    for (int e = 0; e < WB_E_COUNT; e++) n += r->c.err[e];
    return n;
}

/* ----- thresholds ----------------------------------------------------------------------------- */

enum wb_metric {
    M_P50,
    M_P90,
    M_P99,
    M_P999,
    M_MAX,
    M_MEAN,
    M_RATE,
    M_MBPS,
    M_ERRORS,
    M_OPEN,
    M_CONNECT_P99,
    M_COUNT
};

static const struct {
    const char *name;
    int is_time;
} metrics[M_COUNT] = {
    [M_P50] = {"p50", 1},
    [M_P90] = {"p90", 1},
    [M_P99] = {"p99", 1},
    [M_P999] = {"p99.9", 1},
    [M_MAX] = {"max", 1},
    [M_MEAN] = {"mean", 1},
    [M_RATE] = {"rate", 0},
    [M_MBPS] = {"mbps", 0},
    [M_ERRORS] = {"errors", 0},
    [M_OPEN] = {"open", 0},
    [M_CONNECT_P99] = {"connect_p99", 1},
};

int wb_threshold_parse(const char *s, wb_threshold *t)
{
    memset(t, 0, sizeof *t);
    snprintf(t->text, sizeof t->text, "%s", s);
    while (isspace((unsigned char)*s)) s++;
    size_t n = 0;
    while (s[n] && (isalnum((unsigned char)s[n]) || s[n] == '.' || s[n] == '_')) n++;
    t->metric = -1;
    for (int m = 0; m < M_COUNT; m++)
        if (strlen(metrics[m].name) == n && !strncmp(metrics[m].name, s, n)) t->metric = m;
    if (n == 4 && !strncmp(s, "p999", 4)) t->metric = M_P999;
    if (n == 4 && !strncmp(s, "msgs", 4)) t->metric = M_RATE;
    if (t->metric < 0) return -1;
    s += n;
    while (isspace((unsigned char)*s)) s++;
    if (s[0] == '<' && s[1] == '=')
        t->op = 'l', s += 2;
    else if (s[0] == '>' && s[1] == '=')
        t->op = 'g', s += 2;
    else if (s[0] == '<' || s[0] == '>')
        t->op = *s++;
    else
        return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || v < 0) return -1;
    while (isspace((unsigned char)*end)) end++;
    double mul = 1;
    if (metrics[t->metric].is_time) {
        /* A bare number is milliseconds, the unit latency goals are usually given in. */
        if (!*end || !strcmp(end, "ms"))
            mul = 1e6;
        else if (!strcmp(end, "ns"))
            mul = 1;
        else if (!strcmp(end, "us"))
            mul = 1e3;
        else if (!strcmp(end, "s"))
            mul = 1e9;
        else
            return -1;
    } else if (*end) {
        if (!strcmp(end, "k") || !strcmp(end, "K"))
            mul = 1e3;
        else if (!strcmp(end, "M") || !strcmp(end, "m"))
            mul = 1e6;
        else if (!strcmp(end, "G"))
            mul = 1e9;
        else
            return -1;
    }
    t->value = v * mul;
    return 0;
}

static double metric_value(const wb_result *r, int m)
{
    switch (m) {
    case M_P50: return (double)wb_hist_quantile(&r->lat, .5);
    case M_P90: return (double)wb_hist_quantile(&r->lat, .9);
    case M_P99: return (double)wb_hist_quantile(&r->lat, .99);
    case M_P999: return (double)wb_hist_quantile(&r->lat, .999);
    case M_MAX: return r->lat.count ? (double)r->lat.max : 0;
    case M_MEAN: return wb_hist_mean(&r->lat);
    case M_RATE: return wb_rate(r);
    case M_MBPS: return r->seconds > 0 ? (double)r->c.bytes_rx / r->seconds / 1e6 : 0;
    case M_ERRORS: return (double)wb_errors_total(r);
    case M_OPEN: return r->conns_open;
    case M_CONNECT_P99: return (double)wb_hist_quantile(&r->conn, .99);
    default: return 0;
    }
}

unsigned wb_thresholds_check(const wb_opts *o, const wb_result *r, FILE *out)
{
    unsigned failed = 0;
    for (unsigned i = 0; i < o->nthresholds; i++) {
        const wb_threshold *t = &o->thresholds[i];
        double v = metric_value(r, t->metric);
        int ok = t->op == '<'   ? v < t->value
                 : t->op == '>' ? v > t->value
                 : t->op == 'l' ? v <= t->value
                                : v >= t->value;
        /* A run that measured nothing passes no threshold. */
        if (!r->ok) ok = 0;
        failed += !ok;
        char b[32];
        if (metrics[t->metric].is_time)
            wb_fmt_time(b, sizeof b, v);
        else
            snprintf(b, sizeof b, "%.6g", v);
        if (out)
            fprintf(out, "threshold %-16s %s (%s = %s)\n", t->text, ok ? "ok" : "FAILED",
                    metrics[t->metric].name, b);
    }
    return failed;
}

/* ----- the summary -----------------------------------------------------------------------------
 */

static void hist_line(FILE *out, const char *label, const wb_hist *h)
{
    char a[24], b[24], c[24], d[24], e[24];
    fprintf(out, "%sp50 %s   p90 %s   p99 %s   p99.9 %s   max %s\n", label,
            wb_fmt_time(a, sizeof a, (double)wb_hist_quantile(h, .5)),
            wb_fmt_time(b, sizeof b, (double)wb_hist_quantile(h, .9)),
            wb_fmt_time(c, sizeof c, (double)wb_hist_quantile(h, .99)),
            wb_fmt_time(d, sizeof d, (double)wb_hist_quantile(h, .999)),
            wb_fmt_time(e, sizeof e, (double)h->max));
}

/* HdrHistogram's percentile table, as wrk2 prints it: where the tail begins. */
static void distribution(FILE *out, const char *name, const wb_hist *h)
{
    const double *q = wb_dist_levels;
    char a[24];
    fprintf(out, "\n  %s distribution\n", name);
    for (size_t i = 0; i < WB_DIST_LEVELS; i++)
        fprintf(out, "  %10.3f%%  %10s\n", q[i] * 100,
                wb_fmt_time(a, sizeof a, (double)wb_hist_quantile(h, q[i])));
    fprintf(out, "  %10.3f%%  %10s  (max)\n", 100.0, wb_fmt_time(a, sizeof a, (double)h->max));
}

static void describe_load(const wb_opts *o, const wb_result *r, FILE *out)
{
    char what[160] = "";
    switch (r->scenario) {
    case WB_ECHO:
        if (o->rate > 0)
            snprintf(what, sizeof what, "%zu-byte %s messages at %.0f/s (open loop)", o->size,
                     o->binary ? "binary" : "text", o->rate);
        else
            snprintf(what, sizeof what, "%zu-byte %s messages, %u in flight per connection",
                     o->size,
                     o->binary ? "binary"
                     : o->utf8 ? "UTF-8 text"
                               : "text",
                     o->window ? o->window : 1);
        break;
    case WB_CHAT:
        snprintf(what, sizeof what, "Bun's chat room: %u clients x 1600 messages a round%s",
                 r->conns_wanted, o->round_delay_ms ? ", rounds on a timer" : "");
        break;
    case WB_CONNECT:
        snprintf(what, sizeof what, "connect, %zu-byte message, close; %u at a time", o->size,
                 r->conns_wanted);
        break;
    case WB_HOLD: snprintf(what, sizeof what, "idle connections"); break;
    case WB_LISTEN: snprintf(what, sizeof what, "connections that only receive"); break;
    case WB_PUBSUB:
        snprintf(what, sizeof what, "%u publishers at %.0f msg/s in all, %u topics, %zu-byte %s",
                 o->publishers, o->rate, o->topics, o->size < 16 ? 16 : o->size,
                 o->binary ? "binary" : "text");
        break;
    default: break;
    }
    char z[128] = "";
    if (o->compress)
        snprintf(z, sizeof z, "; permessage-deflate on %llu of %llu",
                 (unsigned long long)r->c.deflate, (unsigned long long)r->opened_all);
    if (o->tls_resume)
        snprintf(z + strlen(z), sizeof z - strlen(z), "; TLS session resumed on %llu of %llu",
                 (unsigned long long)r->c.tls_resumed, (unsigned long long)r->opened_all);
    fprintf(out, "  %u connection%s on %u thread%s; %s%s%s\n", r->conns_wanted,
            r->conns_wanted == 1 ? "" : "s", r->threads, r->threads == 1 ? "" : "s", what, z,
            o->verify ? "; verified" : "");
}

void wb_report_text(const wb_opts *o, const wb_result *r, FILE *out)
{
    char a[32], b[32];
    fprintf(out, "\nwsbench %s %s\n", wb_scenario_name(r->scenario), r->url);
    describe_load(o, r, out);
    if (!r->ok) {
        fprintf(out, "  failed: %s\n", r->fail[0] ? r->fail : "no measurement");
    } else {
        fprintf(out, "  %.2f s measured%s\n\n", r->seconds,
                o->warmup > 0 ? " after the warm-up" : "");
        double secs = r->seconds > 0 ? r->seconds : 1;
        if (r->scenario == WB_HOLD) {
            uint64_t failed = r->c.unopened;
            fprintf(out, "  %-13s %u of %u open, %llu closed during the hold", "connections",
                    r->conns_open, r->conns_wanted, (unsigned long long)r->c.ended);
            if (failed) fprintf(out, ", %llu never opened", (unsigned long long)failed);
            fputc('\n', out);
        } else if (r->scenario == WB_CONNECT) {
            fprintf(out, "  %-13s %s conn/s   (%s connections)\n", "throughput",
                    wb_fmt_count(a, sizeof a, (uint64_t)wb_rate(r)),
                    wb_fmt_count(b, sizeof b, r->c.opened));
        } else {
            fprintf(out, "  %-13s %s msg/s   %.1f MB/s   (%s messages received", "throughput",
                    wb_fmt_count(a, sizeof a, (uint64_t)wb_rate(r)),
                    (double)r->c.bytes_rx / secs / 1e6, wb_fmt_count(b, sizeof b, r->c.msgs_rx));
            if (r->scenario == WB_CHAT)
                fprintf(out, ", %llu rounds)\n", (unsigned long long)r->c.rounds);
            else
                fprintf(out, ", %s sent)\n", wb_fmt_count(b, sizeof b, r->c.msgs_tx));
        }
        if (r->lat.count) {
            fprintf(out, "  %-13s ", wb_latency_name(r->scenario));
            hist_line(out, "", &r->lat);
        }
    }
    if (r->conn.count) {
        if (r->scenario == WB_CONNECT)
            fprintf(out, "  %-13s %s handshakes\n  %-13s ", "connect",
                    wb_fmt_count(a, sizeof a, r->opened_all), "");
        else
            fprintf(out, "  %-13s %u of %u, ", "connect", r->conns_open, r->conns_wanted);
        hist_line(out, "", &r->conn);
    }
    uint64_t errs = wb_errors_total(r);
    fprintf(out, "  %-13s", "errors");
    if (!errs) fputs(" none", out);
    for (int e = 0; e < WB_E_COUNT; e++)
        if (r->c.err[e])
            fprintf(out, " %s %s;", wb_fmt_count(a, sizeof a, r->c.err[e]), wb_err_name(e));
    fputc('\n', out);
    if (errs && r->fail[0] && r->ok) fprintf(out, "  %-13s %s\n", "first error", r->fail);
    if (r->ok && r->lat.count) distribution(out, wb_latency_name(r->scenario), &r->lat);
    if (r->ok) {
        if (r->lat.count) fputc('\n', out);
        double msgs = r->scenario == WB_CONNECT ? (double)r->c.opened : (double)r->c.msgs_rx;
        fprintf(out, "  %-13s user %.2f s, sys %.2f s; busiest thread %.0f%%", "wsbench cpu",
                r->cpu_user, r->cpu_sys, r->busy_max * 100);
        if (msgs > 0)
            fprintf(out, "; %.3f s per million %ss", (r->cpu_user + r->cpu_sys) / msgs * 1e6,
                    wb_unit_name(r->scenario));
        fputc('\n', out);
        if (r->server_cpu >= 0) {
            fprintf(out, "  %-13s %.2f s (%.0f%% of one core)", "server cpu", r->server_cpu,
                    r->server_cpu / (r->seconds > 0 ? r->seconds : 1) * 100);
            if (msgs > 0)
                fprintf(out, "; %.3f s per million %ss", r->server_cpu / msgs * 1e6,
                        wb_unit_name(r->scenario));
            fputc('\n', out);
        }
        wb_machine_share m = wb_machine(r);
        if (m.idle >= 0)
            fprintf(out,
                    "  %-13s %.0f%% idle, %.1f%% stolen by the hypervisor, %.0f%% used by others\n",
                    "machine cpu", m.idle * 100, m.steal * 100, m.others * 100);
        if (wb_saturated(r) && r->busy_max >= 0.9)
            fprintf(out,
                    "\nwarning: wsbench's busiest thread used %.0f%% of a core: the figures may be "
                    "wsbench's own limit, not the server's (try more threads, -t)\n",
                    r->busy_max * 100);
        else if (wb_saturated(r))
            fprintf(out,
                    "\nwarning: wsbench used %.0f%% of the %u CPU%s it may run on: the figures "
                    "may be wsbench's own limit, not the server's (more CPUs for it: taskset)\n",
                    wb_saturated(r) * 100, r->cpus, r->cpus == 1 ? "" : "s");
        else if (r->busy_sec_max >= 0.95)
            fprintf(out,
                    "\nnote: wsbench's busiest thread reached %.0f%% of a core in some seconds: "
                    "peaks there may be wsbench's limit\n",
                    r->busy_sec_max * 100);
    }
}

/* ----- JSON and CSV --------------------------------------------------------------------------- */

static cJSON *hist_json(const wb_hist *h)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "count", (double)h->count);
    cJSON_AddNumberToObject(o, "mean", wb_hist_mean(h));
    cJSON_AddNumberToObject(o, "min", h->count ? (double)h->min : 0);
    cJSON_AddNumberToObject(o, "p50", (double)wb_hist_quantile(h, .5));
    cJSON_AddNumberToObject(o, "p90", (double)wb_hist_quantile(h, .9));
    cJSON_AddNumberToObject(o, "p99", (double)wb_hist_quantile(h, .99));
    cJSON_AddNumberToObject(o, "p999", (double)wb_hist_quantile(h, .999));
    cJSON_AddNumberToObject(o, "max", (double)h->max);
    return o;
}

static cJSON *result_json(const wb_opts *o, const wb_result *r)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "scenario", wb_scenario_name(r->scenario));
    if (r->label[0]) cJSON_AddStringToObject(j, "label", r->label);
    cJSON_AddStringToObject(j, "url", r->url);
    cJSON_AddBoolToObject(j, "ok", r->ok);
    if (r->fail[0]) cJSON_AddStringToObject(j, r->ok ? "first_error" : "error", r->fail);
    cJSON_AddNumberToObject(j, "seconds", r->seconds);
    cJSON_AddNumberToObject(j, "threads", r->threads);
    cJSON *c = cJSON_AddObjectToObject(j, "connections");
    cJSON_AddNumberToObject(c, "wanted", r->conns_wanted);
    cJSON_AddNumberToObject(c, "opened", r->conns_open);
    cJSON_AddNumberToObject(c, "handshakes", (double)r->opened_all);
    cJSON *by = cJSON_AddArrayToObject(c, "handshakes_by_thread");
    for (unsigned i = 0; by && i < r->threads && i < WB_MAX_THREADS; i++)
        cJSON_AddItemToArray(by, cJSON_CreateNumber((double)r->opened_by_thread[i]));
    cJSON_AddNumberToObject(c, "deflate", (double)r->c.deflate);
    cJSON_AddNumberToObject(c, "tls_resumed", (double)r->c.tls_resumed);
    cJSON_AddItemToObject(c, "connect_ns", hist_json(&r->conn));
    cJSON *m = cJSON_AddObjectToObject(j, "messages");
    cJSON_AddNumberToObject(m, "received", (double)r->c.msgs_rx);
    cJSON_AddNumberToObject(m, "sent", (double)r->c.msgs_tx);
    cJSON_AddNumberToObject(m, "bytes_received", (double)r->c.bytes_rx);
    cJSON_AddNumberToObject(m, "bytes_sent", (double)r->c.bytes_tx);
    cJSON_AddNumberToObject(m, "per_second", wb_rate(r));
    cJSON_AddNumberToObject(m, "mb_per_second",
                            r->seconds > 0 ? (double)r->c.bytes_rx / r->seconds / 1e6 : 0);
    if (r->scenario == WB_CHAT) cJSON_AddNumberToObject(m, "rounds", (double)r->c.rounds);
    if (r->scenario == WB_CONNECT) cJSON_AddNumberToObject(j, "connections_per_second", wb_rate(r));
    cJSON_AddItemToObject(j,
                          r->scenario == WB_CHAT      ? "round_ns"
                          : r->scenario == WB_CONNECT ? "cycle_ns"
                                                      : "latency_ns",
                          hist_json(&r->lat));
    cJSON *e = cJSON_AddObjectToObject(j, "errors");
    for (int k = 0; k < WB_E_COUNT; k++)
        cJSON_AddNumberToObject(e, wb_err_name(k), (double)r->c.err[k]);
    cJSON *cpu = cJSON_AddObjectToObject(j, "cpu");
    cJSON_AddNumberToObject(cpu, "user", r->cpu_user);
    cJSON_AddNumberToObject(cpu, "sys", r->cpu_sys);
    cJSON_AddNumberToObject(cpu, "busiest_thread", r->busy_max);
    cJSON_AddBoolToObject(cpu, "saturated", wb_saturated(r) > 0);
    if (r->server_cpu >= 0) cJSON_AddNumberToObject(j, "server_cpu_seconds", r->server_cpu);
    wb_machine_share ms = wb_machine(r);
    if (ms.idle >= 0) {
        cJSON *mo = cJSON_AddObjectToObject(j, "machine");
        cJSON_AddNumberToObject(mo, "idle", ms.idle);
        cJSON_AddNumberToObject(mo, "steal", ms.steal);
        cJSON_AddNumberToObject(mo, "others", ms.others);
    }
    cJSON *s = cJSON_AddArrayToObject(j, "per_second");
    for (size_t i = 0; i < r->nseries; i++)
        cJSON_AddItemToArray(s, cJSON_CreateNumber((double)r->series[i].msgs));
    if (o->nthresholds) {
        cJSON *th = cJSON_AddObjectToObject(j, "thresholds");
        for (unsigned i = 0; i < o->nthresholds; i++) {
            wb_opts one = *o;
            one.thresholds[0] = o->thresholds[i];
            one.nthresholds = 1;
            cJSON_AddBoolToObject(th, o->thresholds[i].text, !wb_thresholds_check(&one, r, NULL));
        }
    }
    return j;
}

static void print_json(cJSON *j, FILE *out)
{
    char *txt = cJSON_Print(j);
    if (txt) {
        fputs(txt, out);
        fputc('\n', out);
        free(txt);
    }
    cJSON_Delete(j);
}

void wb_report_json(const wb_opts *o, const wb_result *r, unsigned nr, int compare, FILE *out)
{
    if (!compare) {
        print_json(result_json(o, r), out);
        return;
    }
    cJSON *a = cJSON_CreateArray();
    for (unsigned i = 0; i < nr; i++) cJSON_AddItemToArray(a, result_json(o, &r[i]));
    print_json(a, out);
}

int wb_report_csv(const wb_opts *o, const wb_result *r, const char *path)
{
    (void)o;
    FILE *f = strcmp(path, "-") ? fopen(path, "w") : stdout;
    if (!f) return -1;
    fprintf(f, "second,%s,mb,errors,p50_us,p99_us,max_us,wsbench_busy\n",
            r->scenario == WB_CONNECT ? "connections" : "messages");
    for (size_t i = 0; i < r->nseries; i++) {
        const wb_second *s = &r->series[i];
        fprintf(f, "%zu,%llu,%.3f,%llu,%.1f,%.1f,%.1f,%.2f\n", i + 1, (unsigned long long)s->msgs,
                (double)s->bytes / 1e6, (unsigned long long)s->errors, (double)s->p50 / 1e3,
                (double)s->p99 / 1e3, (double)s->max / 1e3, s->busy);
    }
    return f == stdout ? fflush(f) : fclose(f);
}

int wb_report_hgrm(const wb_result *r, const char *path)
{
    wb_pct *p = malloc(WB_PCT_MAX * sizeof *p);
    if (!p) return -1;
    size_t n = wb_hist_spectrum(&r->lat, 5, p, WB_PCT_MAX);
    FILE *f = strcmp(path, "-") ? fopen(path, "w") : stdout;
    if (!f) {
        free(p);
        return -1;
    }
    /* outputPercentileDistribution's layout: the header, a blank line, one row per level (the
     * last without 1/(1-Percentile), which is infinite), then the "#[...]" footer. */
    fprintf(f, "%12s %14s %10s %14s\n\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)");
    for (size_t i = 0; i < n; i++) {
        double ms = (double)p[i].value / 1e6;
        if (p[i].pct < 1)
            fprintf(f, "%12.6f %2.12f %10llu %14.2f\n", ms, p[i].pct,
                    (unsigned long long)p[i].total, 1 / (1 - p[i].pct));
        else
            fprintf(f, "%12.6f %2.12f %10llu\n", ms, p[i].pct, (unsigned long long)p[i].total);
    }
    free(p);
    fprintf(f, "#[Mean    = %12.6f, StdDeviation   = %12.6f]\n", wb_hist_mean(&r->lat) / 1e6,
            wb_hist_stddev(&r->lat) / 1e6);
    fprintf(f, "#[Max     = %12.6f, Total count    = %12llu]\n",
            r->lat.count ? (double)r->lat.max / 1e6 : 0, (unsigned long long)r->lat.count);
    fprintf(f, "#[Buckets = %12d, SubBuckets     = %12d]\n", 64 - WB_HIST_SUB + 1,
            1 << WB_HIST_SUB);
    return f == stdout ? fflush(f) : fclose(f);
}
