/* One wsbench run: the engine's result, the verdict on it (did it measure anything?), the
 * report and the exit status.  See bench.h. */
#include "bench.h"
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int wb_verdict(const wb_opts *o, wb_result *r, int rc, int interrupted)
{
    (void)o;
    (void)r;
    (void)interrupted;
    return rc < 0 ? -1 : 0;
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
    snprintf(r->label, sizeof r->label, "%s", t->label);
    int rc = wb_run(&o, t->url, r, stop);
    int failed = wb_verdict(&o, r, rc, *stop) < 0;
    /* stdout carries one format: the CSV series with --csv -, and the summary goes to stderr
     * then (--json with --csv - is a usage error). */
    int csv_out = o.csv && !strcmp(o.csv, "-");
    FILE *text = o.json || csv_out ? stderr : stdout;
    if (o.json)
        wb_report_json(&o, r, 1, 0, stdout);
    else
        wb_report_text(&o, r, text);
    if (o.csv && wb_report_csv(&o, r, o.csv) < 0)
        cli_warn("wsbench", "cannot write %s: %s", o.csv, strerror(errno));
    unsigned th = wb_thresholds_check(&o, r, text);
    if (failed && o.json) cli_warn("wsbench", "%s", r->fail);
    wb_result_free(r);
    free(r);
    return failed ? WB_EXIT_FAILED : th ? WB_EXIT_THRESHOLD : WB_EXIT_OK;
}
