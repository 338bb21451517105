/* wsbench's reading of CPU time (cmd/bench_run.c): when wsbench was its own limit, and where the
 * machine's CPU time went over a run. */
#include "bench.h"
#include "test.h"

#include <math.h>

/* A run of 1 s in which wsbench used cpu seconds over all its threads, its busiest thread
 * busy of them, on cpus CPUs. */
static wb_result run(double cpu, double busy, unsigned cpus)
{
    return (wb_result){.seconds = 1,
                       .cpu_user = cpu / 2,
                       .cpu_sys = cpu / 2,
                       .busy_max = busy,
                       .cpus = cpus,
                       .server_cpu = -1};
}

static void test_saturated(void)
{
    wb_result r = run(0.95, 0.95, 2);
    CHECK(fabs(wb_saturated(&r) - 0.95) < 1e-9, "the busiest thread at 95%% of a core: saturated");
    r = run(0.98, 0.49, 1);
    CHECK(fabs(wb_saturated(&r) - 0.98) < 1e-9,
          "two threads at 49%% each on the 1 CPU they may use: saturated (%g)", wb_saturated(&r));
    r = run(0.98, 0.49, 2);
    CHECK(wb_saturated(&r) == 0, "the same on 2 CPUs: not saturated (%g)", wb_saturated(&r));
    r = run(1.5, 0.8, 2);
    CHECK(wb_saturated(&r) == 0, "75%% of 2 CPUs, busiest thread 80%%: not saturated");
}

static void test_machine(void)
{
    wb_result r = run(0.5, 0.5, 2);
    CHECK(wb_machine(&r).idle < 0 && wb_machine(&r).others < 0,
          "no reading of the machine: every share unknown");
    r.server_cpu = 0.9;
    r.mach = (wb_cpus){.busy = 1.6, .idle = 0.3, .steal = 0.1}; /* 2 CPUs for 1 s */
    wb_machine_share m = wb_machine(&r);
    CHECK(fabs(m.idle - 0.15) < 1e-9 && fabs(m.steal - 0.05) < 1e-9 && fabs(m.others - 0.1) < 1e-9,
          "shares of all the CPUs' time: idle %g, stolen %g, others %g (busy less wsbench and "
          "the server)",
          m.idle, m.steal, m.others);
    r.server_cpu = 1.2; /* ticks against nanoseconds: wsbench and server above busy */
    CHECK(wb_machine(&r).others == 0, "others never below 0 (%g)", wb_machine(&r).others);
}

int main(void)
{
    test_saturated();
    test_machine();
    return TEST_DONE();
}
