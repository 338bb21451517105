/* The wsbench run as the main thread sees it: the target, the worker threads started and
 * joined (bench_worker.c), the phases (connect, run, stop), a snapshot of the workers' counters
 * each second, and the result.  See bench_engine.h. */
#include "bench_engine.h"

#include "parse_url.h"

#include <math.h>
#include <netdb.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

volatile int wb_interrupted;

const char *wb_err_name(int e)
{
    static const char *const names[WB_E_COUNT] = {
        [WB_E_CONNECT] = "connect",     [WB_E_TIMEOUT] = "timeout",
        [WB_E_HANDSHAKE] = "handshake", [WB_E_TLS] = "tls",
        [WB_E_PROTOCOL] = "protocol",   [WB_E_CLOSED] = "closed by server",
        [WB_E_RESET] = "reset",         [WB_E_MISMATCH] = "mismatch",
        [WB_E_DEFLATE] = "deflate",     [WB_E_UNCLEAN] = "unclean close",
    };
    return e >= 0 && e < WB_E_COUNT ? names[e] : "?";
}

const char *wb_scenario_name(int s)
{
    static const char *const names[WB_NSCENARIOS] = {"echo",    "chat", "pubsub",
                                                     "connect", "hold", "listen"};
    return s >= 0 && s < WB_NSCENARIOS ? names[s] : "?";
}

/* The first error of the run, once it is complete ("" before). */
static const char *first_error(const wb_state *s)
{
    return __atomic_load_n(&s->first_err_set, __ATOMIC_ACQUIRE) == 2 ? s->first_err : "";
}

/* ----- the run, as the main thread sees it --------------------------------------------------- */

/* One URL's parts and address into *d. */
static int resolve(wb_dest *d, const char *url, char *why, size_t cap)
{
    wsk_url u;
    if (wsk_url_parse(url, strlen(url), &u) < 0) {
        snprintf(why, cap, "invalid URL: %s", url);
        return -1;
    }
    if (u.host_len >= sizeof d->host || u.path_len >= sizeof d->path) {
        snprintf(why, cap, "URL too long: %s", url);
        return -1;
    }
    memcpy(d->host, u.host, u.host_len);
    d->host[u.host_len] = 0;
    memcpy(d->path, u.path, u.path_len);
    d->path[u.path_len] = 0;
    d->port = u.port;
    d->secure = u.secure;
    if (u.userinfo) {
        /* Sent as Basic auth, percent-escapes decoded (RFC 3986 3.2.1), as wscat sends it. */
        if (wsk_url_decode(u.userinfo, u.userinfo_len, 0, d->userinfo, sizeof d->userinfo) >=
            sizeof d->userinfo) {
            snprintf(why, cap, "URL too long: %s", url);
            return -1;
        }
        d->has_userinfo = 1;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    char port[8];
    snprintf(port, sizeof port, "%u", d->port);
    int r = getaddrinfo(d->host, port, &hints, &ai);
    if (r) {
        snprintf(why, cap, "cannot resolve %s: %s", d->host, gai_strerror(r));
        return -1;
    }
    memcpy(&d->addr, ai->ai_addr, ai->ai_addrlen);
    d->addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

/* The targets (o->spread, else url): their parts and addresses; the source addresses. */
static int resolve_all(wb_state *s, const char *url, char *why, size_t cap)
{
    const wb_opts *o = s->o;
    s->ndst = o->nspread ? o->nspread : 1;
    for (unsigned i = 0; i < s->ndst; i++) {
        if (resolve(&s->dst[i], o->nspread ? o->spread[i] : url, why, cap) < 0) return -1;
        s->secure |= s->dst[i].secure;
    }
    unsigned nsrc = o->source_ips;
    int loop4 = 1; /* every target on 127/8: connections may come from 127.0.0.x */
    for (unsigned i = 0; i < s->ndst; i++) {
        const struct sockaddr_storage *a = &s->dst[i].addr;
        loop4 &= a->ss_family == AF_INET &&
                 (ntohl(((const struct sockaddr_in *)a)->sin_addr.s_addr) >> 24) == 127;
    }
    if (!nsrc && loop4) nsrc = (s->total + 19999) / 20000; /* ~28k ports per source address */
    s->nsrc = loop4 ? nsrc : 0;
    return 0;
}

/* Raises the open-file limit to the hard limit; says so when it is still too low. */
static int raise_nofile(unsigned need, char *why, size_t cap)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) return 0;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need + 32) {
        snprintf(why, cap, "%u connections need %u file descriptors; the limit is %llu", need,
                 need + 32, (unsigned long long)rl.rlim_cur);
        return -1;
    }
    return 0;
}

/* A snapshot of all workers. */
typedef struct snap {
    uint64_t at;
    wb_counters c;
    wb_hist lat, conn;
    double cpu[WB_MAX_THREADS];
    double user, sys;
    double server;
    wb_cpus mach;
} snap;

static double cpu_of(clockid_t id)
{
    struct timespec ts;
    if (clock_gettime(id, &ts) < 0) return 0;
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPUs this process may run on (its affinity: taskset), at least 1. */
static unsigned cpus_allowed(void)
{
    cpu_set_t set;
    int n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 0;
    return n > 0 ? (unsigned)n : 1;
}

/* utime + stime of a process, in seconds; < 0 when unknown. */
static double proc_cpu(int pid)
{
    if (pid <= 0) return -1;
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    /* The command name may hold spaces and parentheses: fields count from the last ')'. */
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    unsigned long long ut = 0, st = 0;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* The machine's CPU time so far, all CPUs (the "cpu" line of /proc/stat), in seconds; all 0
 * when unknown. */
static wb_cpus machine_cpu(void)
{
    wb_cpus m = {0};
    unsigned long long v[8] = {0}; /* user nice system idle iowait irq softirq steal */
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return m;
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n < 8) return m;
    double hz = (double)sysconf(_SC_CLK_TCK);
    m.idle = (double)(v[3] + v[4]) / hz;
    m.steal = (double)v[7] / hz;
    m.busy = (double)(v[0] + v[1] + v[2] + v[5] + v[6]) / hz;
    return m;
}

static void take(wb_state *s, snap *sn, int hist)
{
    memset(&sn->c, 0, sizeof sn->c);
    if (hist) {
        wb_hist_reset(&sn->lat);
        wb_hist_reset(&sn->conn);
    }
    sn->at = wb_now();
    for (unsigned i = 0; i < s->nthreads; i++) {
        wb_thread *t = &s->threads[i];
        const uint64_t *src = (const uint64_t *)&t->st;
        uint64_t *dst = (uint64_t *)&sn->c;
        for (size_t j = 0; j < sizeof sn->c / sizeof(uint64_t); j++) dst[j] += wb_get(&src[j]);
        if (hist) {
            wb_hist_add(&sn->lat, &t->lat);
            wb_hist_add(&sn->conn, &t->conn);
        }
        sn->cpu[i] = cpu_of(t->cpu_clock);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    sn->user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    sn->sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    sn->server = proc_cpu(s->o->pid);
    sn->mach = machine_cpu();
}

/* The main thread's view of a run. */
typedef struct watch {
    wb_state *s;
    wb_result *res;
    ev_timer poll, tick, rounds, end;
    uint64_t connect_deadline, t_measure, t_end;
    int measuring, ended, failed;
    int lost; /* chat: a client was lost; the figures stand, the exit status says so */
    snap base, prev, cur;
    uint64_t prev_lat_count;
    wb_hist prev_lat;
    unsigned seconds;
    int status_shown;
    unsigned polls;
} watch;

static void broadcast(wb_state *s, int phase)
{
    __atomic_store_n(&s->phase, phase, __ATOMIC_RELEASE);
    wb_wake_workers(s, NULL);
}

static void status_clear(watch *w)
{
    if (w->status_shown) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        w->status_shown = 0;
    }
}

static void check(watch *w);

static void on_end(struct ev_loop *ev, ev_timer *tw, int revents)
{
    (void)ev;
    (void)revents;
    check(tw->data);
}

/* Room for cap rows in the series: 0, or -1 when out of memory. */
static int series_reserve(wb_result *r, size_t cap)
{
    if (cap <= r->cap_series) return 0;
    wb_second *n = realloc(r->series, cap * sizeof *n);
    if (!n) return -1;
    r->series = n;
    r->cap_series = cap;
    return 0;
}

static void begin_measure(watch *w)
{
    take(w->s, &w->base, 1);
    w->prev = w->base;
    w->prev_lat = w->base.lat;
    w->measuring = 1;
    w->t_measure = w->base.at;
    /* A timed run's rows are made now: its seconds only fill them. */
    if (w->s->o->duration > 0) series_reserve(w->res, (size_t)ceil(w->s->o->duration) + 2);
    if (w->s->o->duration > 0) {
        w->t_end = w->t_measure + (uint64_t)(w->s->o->duration * 1e9);
        /* The 50 ms poll would end the run up to 50 ms late; this timer ends it on time. */
        ev_timer_init(&w->end, on_end, w->s->o->duration, 0);
        w->end.data = w;
        ev_timer_start(w->s->main_ev, &w->end);
    }
}

static wb_second second_push(watch *w, double wall);

/* The end of the measured time: the result is taken now; the workers then close. */
static void end_run(watch *w)
{
    wb_state *s = w->s;
    wb_result *r = w->res;
    if (w->ended) return;
    w->ended = 1;
    if (w->measuring) {
        take(s, &w->cur, 1);
        r->seconds = (double)(w->cur.at - w->base.at) / 1e9;
        const uint64_t *a = (const uint64_t *)&w->cur.c, *b = (const uint64_t *)&w->base.c;
        uint64_t *d = (uint64_t *)&r->c;
        for (size_t j = 0; j < sizeof r->c / sizeof(uint64_t); j++) d[j] = a[j] - b[j];
        r->lat = w->cur.lat;
        wb_hist_sub(&r->lat, &w->base.lat);
        r->cpu_user = w->cur.user - w->base.user;
        r->cpu_sys = w->cur.sys - w->base.sys;
        double wall = r->seconds > 0 ? r->seconds : 1;
        for (unsigned i = 0; i < s->nthreads; i++) {
            double b2 = (w->cur.cpu[i] - w->base.cpu[i]) / wall;
            if (b2 > r->busy_max) r->busy_max = b2;
        }
        r->server_cpu =
            w->cur.server >= 0 && w->base.server >= 0 ? w->cur.server - w->base.server : -1;
        r->mach =
            (wb_cpus){w->cur.mach.busy - w->base.mach.busy, w->cur.mach.idle - w->base.mach.idle,
                      w->cur.mach.steal - w->base.mach.steal};
        r->ok = 1;
        /* The series' last row: what the measured time holds after the last tick (all of
         * it when the run ends before its first).  A sliver is a tick that beat this timer;
         * so is a remainder once -d's seconds all have their row (a loaded machine fires the
         * end timer late): the summary counts it, the series keeps one row per second. */
        double rest = (double)(w->cur.at - w->prev.at) / 1e9, secs = s->o->duration;
        int full = secs > 0 && (double)r->nseries >= ceil(secs - 0.05);
        if (rest >= 0.05 && !full) second_push(w, rest);
    }
    status_clear(w);
    broadcast(s, WB_P_STOP);
    ev_timer_stop(s->main_ev, &w->tick);
    ev_timer_stop(s->main_ev, &w->rounds);
    ev_timer_stop(s->main_ev, &w->end);
}

static void series_push(wb_result *r, const wb_second *sec)
{
    if (r->nseries == r->cap_series &&
        series_reserve(r, r->cap_series ? r->cap_series * 2 : 64) < 0)
        return;
    r->series[r->nseries++] = *sec;
}

/* Adds a row to the series, from the snapshots prev to cur (wall seconds apart); returns it. */
static wb_second second_push(watch *w, double wall)
{
    wb_state *s = w->s;
    uint64_t msgs = w->cur.c.msgs_rx - w->prev.c.msgs_rx;
    if (s->sc == &wb_scen_connect) msgs = w->cur.c.opened - w->prev.c.opened;
    double busy = 0;
    for (unsigned i = 0; i < s->nthreads; i++) {
        double b = (w->cur.cpu[i] - w->prev.cpu[i]) / wall;
        if (b > busy) busy = b;
    }
    if (busy > w->res->busy_sec_max) w->res->busy_sec_max = busy;
    wb_hist win = w->cur.lat;
    wb_hist_sub(&win, &w->prev_lat);
    uint64_t errs = 0, errs_before = 0, err[WB_E_COUNT];
    for (int e = 0; e < WB_E_COUNT; e++) {
        errs += w->cur.c.err[e];
        errs_before += w->prev.c.err[e];
        err[e] = w->cur.c.err[e] - w->prev.c.err[e];
    }
    wb_second sec = {.msgs = msgs,
                     .bytes = w->cur.c.bytes_rx - w->prev.c.bytes_rx,
                     .errors = errs - errs_before,
                     .open = w->cur.c.opened - w->cur.c.ended,
                     .p50 = wb_hist_quantile(&win, .5),
                     .p99 = wb_hist_quantile(&win, .99),
                     .max = win.count ? win.max : 0,
                     .busy = busy};
    memcpy(sec.err, err, sizeof err);
    series_push(w->res, &sec);
    return sec;
}

/* Once a second from the start of the run phase: the per-second figures. */
static void on_tick(struct ev_loop *ev, ev_timer *tw, int revents)
{
    (void)ev;
    (void)revents;
    watch *w = tw->data;
    wb_state *s = w->s;
    const wb_opts *o = s->o;
    w->seconds++;
    if (!w->measuring) {
        if (wb_now() >= w->t_measure) begin_measure(w);
        return;
    }
    take(s, &w->cur, 1);
    double wall = (double)(w->cur.at - w->prev.at) / 1e9;
    if (wall <= 0) wall = 1;
    wb_second sec = second_push(w, wall);
    uint64_t msgs = sec.msgs, errs = 0;
    for (int e = 0; e < WB_E_COUNT; e++) errs += w->cur.c.err[e];
    if (s->sc == &wb_scen_chat && !o->quiet && !o->json && !o->compare) {
        status_clear(w);
        /* Bun's client prints exactly this line each second. */
        printf("%llu messages per second (%u clients x %u msg, min delay: %ums)\n",
               (unsigned long long)msgs, s->total, s->batch_msgs, o->round_delay_ms);
        fflush(stdout);
    }
    if (o->status) {
        char a[32], b[32], lat[48] = "";
        if (sec.max)
            snprintf(lat, sizeof lat, "  p99 %s", wb_fmt_time(b, sizeof b, (double)sec.p99));
        unsigned open = (unsigned)(w->cur.c.opened - w->cur.c.ended);
        fprintf(stderr, "\r\033[K%4us  %s %s/s  %.1f MB/s%s  %u conns  %llu errors  cpu %.0f%%",
                w->seconds, wb_fmt_count(a, sizeof a, (uint64_t)((double)msgs / wall)),
                s->sc == &wb_scen_connect ? "conn" : "msg",
                (double)(w->cur.c.bytes_rx - w->prev.c.bytes_rx) / wall / 1e6, lat, open,
                (unsigned long long)errs, sec.busy * 100);
        fflush(stderr);
        w->status_shown = 1;
    }
    w->prev = w->cur;
    w->prev_lat = w->cur.lat;
}

/* --round-delay: Bun's client looks for a finished round on a fixed interval. */
static void on_rounds(struct ev_loop *ev, ev_timer *tw, int revents)
{
    (void)ev;
    (void)revents;
    watch *w = tw->data;
    wb_state *s = w->s;
    if (!__atomic_exchange_n(&s->round_done, 0, __ATOMIC_ACQ_REL)) return;
    if (s->max_rounds && __atomic_load_n(&s->chat_round, __ATOMIC_ACQUIRE) >= s->max_rounds) {
        end_run(w);
        return;
    }
    __atomic_add_fetch(&s->chat_remaining, (int64_t)s->per_round, __ATOMIC_ACQ_REL);
    __atomic_store_n(&s->round_t0, wb_now(), __ATOMIC_RELEASE);
    __atomic_add_fetch(&s->chat_round, 1, __ATOMIC_ACQ_REL);
    wb_wake_workers(s, NULL);
}

static void start_run(watch *w)
{
    wb_state *s = w->s;
    const wb_opts *o = s->o;
    s->t_run = wb_now();
    w->t_measure = s->t_run + (uint64_t)(o->warmup * 1e9);
    if (o->warmup <= 0) begin_measure(w);
    if (s->sc == &wb_scen_chat) {
        __atomic_store_n(&s->chat_remaining, (int64_t)s->per_round, __ATOMIC_RELEASE);
        __atomic_store_n(&s->round_t0, s->t_run, __ATOMIC_RELEASE);
        __atomic_store_n(&s->chat_round, 1, __ATOMIC_RELEASE);
        if (o->round_delay_ms) {
            ev_timer_init(&w->rounds, on_rounds, o->round_delay_ms / 1e3, o->round_delay_ms / 1e3);
            w->rounds.data = w;
            ev_timer_start(s->main_ev, &w->rounds);
        }
    }
    if (s->sc == &wb_scen_hold && !o->json && !o->compare) {
        printf("holding %u of %u connections\n", wb_atomic_get(&s->n_open), s->total);
        fflush(stdout);
    }
    ev_timer_init(&w->tick, on_tick, 1.0, 1.0);
    w->tick.data = w;
    ev_timer_start(s->main_ev, &w->tick);
    broadcast(s, WB_P_RUN);
}

static void check(watch *w)
{
    wb_state *s = w->s;
    const wb_opts *o = s->o;
    uint64_t now = wb_now();
    if (w->ended) {
        if (wb_atomic_get(&s->threads_done) == s->nthreads) ev_break(s->main_ev, EVBREAK_ALL);
        return;
    }
    if (*s->stop) {
        end_run(w);
        return;
    }
    int phase = wb_phase(s);
    if (phase == WB_P_CONNECT) {
        unsigned settled = wb_atomic_get(&s->n_settled), open = wb_atomic_get(&s->n_open);
        int timed_out = now >= w->connect_deadline;
        if (s->sc->wait_first_message) {
            if (wb_atomic_get(&s->n_ready) == s->total) {
                start_run(w);
            } else if (timed_out || (settled == s->total && open < s->total)) {
                snprintf(w->res->fail, sizeof w->res->fail,
                         "%u of %u clients connected, %u got their first message within %.0f s%s%s",
                         open, s->total, wb_atomic_get(&s->n_ready), o->connect_timeout,
                         *first_error(s) ? ": " : "", first_error(s));
                w->failed = 1;
                end_run(w);
            }
            return;
        }
        if (settled == s->total || timed_out) {
            if (!open) {
                snprintf(w->res->fail, sizeof w->res->fail, "no connection opened%s%s",
                         *first_error(s) ? ": " : "", first_error(s));
                w->failed = 1;
                end_run(w);
                return;
            }
            start_run(w);
        }
        return;
    }
    if (phase != WB_P_RUN) return;
    if (!w->measuring && now >= w->t_measure) begin_measure(w);
    if (w->t_end && now >= w->t_end) {
        end_run(w);
        return;
    }
    unsigned open = wb_atomic_get(&s->n_open), ended = wb_atomic_get(&s->n_ended);
    if (s->sc == &wb_scen_chat && ended) {
        snprintf(w->res->fail, sizeof w->res->fail,
                 "a client's connection ended during the run%s%s", *first_error(s) ? ": " : "",
                 first_error(s));
        w->lost = 1;
        end_run(w);
        return;
    }
    if (!s->sc->start_on_run && open && ended >= open) {
        end_run(w);
        return;
    }
    /* -n: every connection (connect: every slot) reached its share. */
    unsigned need = s->sc->start_on_run || s->sc == &wb_scen_chat ? s->total : open - ended;
    if (o->count && wb_atomic_get(&s->n_done) >= need) end_run(w);
}

static void on_main_wake(struct ev_loop *ev, ev_async *aw, int revents)
{
    (void)ev;
    (void)revents;
    check(aw->data);
}

static void on_poll(struct ev_loop *ev, ev_timer *tw, int revents)
{
    (void)ev;
    (void)revents;
    watch *w = tw->data;
    check(w);
    if (!w->ended && w->s->o->status && wb_phase(w->s) == WB_P_CONNECT && ++w->polls % 5 == 0) {
        fprintf(stderr, "\r\033[Kconnecting: %u of %u open", wb_atomic_get(&w->s->n_open),
                w->s->total);
        fflush(stderr);
        w->status_shown = 1;
    }
}

static const wb_scen *scen_of(int id)
{
    switch (id) {
    case WB_CHAT: return &wb_scen_chat;
    case WB_PUBSUB: return &wb_scen_pubsub;
    case WB_CONNECT: return &wb_scen_connect;
    case WB_HOLD: return &wb_scen_hold;
    case WB_LISTEN: return &wb_scen_listen;
    default: return &wb_scen_echo;
    }
}

int wb_run(const wb_opts *o, const char *url, wb_result *res, volatile int *stop)
{
    wb_state *s = calloc(1, sizeof *s);
    watch *w = calloc(1, sizeof *w);
    int rc = -1;
    if (!s || !w) {
        snprintf(res->fail, sizeof res->fail, "out of memory");
        free(s);
        free(w);
        return -1;
    }
    if (o->nspread > 1)
        snprintf(res->url, sizeof res->url, "%s (and %u more)", url, o->nspread - 1);
    else
        snprintf(res->url, sizeof res->url, "%s", url);
    res->scenario = o->scenario;
    res->server_cpu = -1;
    res->cpus = cpus_allowed();
    wb_hist_reset(&res->lat);
    wb_hist_reset(&res->conn);
    s->o = o;
    s->sc = scen_of(o->scenario);
    s->stop = stop;
    s->total = o->conns;
    res->conns_wanted = s->total;
    unsigned nthreads = o->threads ? o->threads : 1;
    if (nthreads > s->total && s->total) nthreads = s->total;
    if (nthreads > WB_MAX_THREADS) nthreads = WB_MAX_THREADS;
    res->threads = nthreads;
    if (resolve_all(s, url, res->fail, sizeof res->fail) < 0) goto out;
    if (raise_nofile(s->total, res->fail, sizeof res->fail) < 0) goto out;
    if (o->compress && wb_pmd_offer(s->offer, sizeof s->offer) < 0) s->offer[0] = 0;
    if (s->sc->setup && s->sc->setup(s, res->fail, sizeof res->fail) < 0) goto out;
    if (wb_threads_init(s, nthreads, res->fail, sizeof res->fail) < 0) goto out_threads;

    s->main_ev = ev_loop_new(EVFLAG_AUTO);
    if (!s->main_ev) {
        snprintf(res->fail, sizeof res->fail, "no event loop");
        goto out_threads;
    }
    w->s = s;
    w->res = res;
    w->connect_deadline = wb_now() + (uint64_t)(o->connect_timeout * 1e9);
    ev_async_init(&s->main_wake, on_main_wake);
    s->main_wake.data = w;
    ev_async_start(s->main_ev, &s->main_wake);
    ev_timer_init(&w->poll, on_poll, 0.05, 0.05);
    w->poll.data = w;
    ev_timer_start(s->main_ev, &w->poll);

    unsigned started = 0;
    for (unsigned i = 0; i < nthreads; i++) {
        wb_thread *t = &s->threads[i];
        if (pthread_create(&t->tid, NULL, wb_worker_main, t) != 0) {
            snprintf(res->fail, sizeof res->fail, "cannot start thread %u", i);
            break;
        }
        pthread_getcpuclockid(t->tid, &t->cpu_clock);
        started++;
    }
    if (started == nthreads) {
        if (s->sc->start_on_run) start_run(w);
        ev_run(s->main_ev, 0);
    } else {
        broadcast(s, WB_P_STOP);
    }
    for (unsigned i = 0; i < started; i++) pthread_join(s->threads[i].tid, NULL);
    status_clear(w);

    /* Connection counts and errors cover the whole run, the stop included. */
    wb_counters all = {0};
    wb_hist conn;
    wb_hist_reset(&conn);
    for (unsigned i = 0; i < s->nthreads; i++) {
        const uint64_t *a = (const uint64_t *)&s->threads[i].st;
        uint64_t *d = (uint64_t *)&all;
        for (size_t j = 0; j < sizeof all / sizeof(uint64_t); j++) d[j] += a[j];
        res->opened_by_thread[i] = s->threads[i].st.opened;
        wb_hist_add(&conn, &s->threads[i].conn);
    }
    res->opened_all = all.opened;
    res->c.deflate = all.deflate;
    res->c.tls_resumed = all.tls_resumed;
    res->c.unopened = all.unopened; /* with the errors: a connect that times out in the stop */
    memcpy(res->c.err, all.err, sizeof all.err);
    res->conn = conn;
    res->conns_open = s->n_open;
    if (*first_error(s) && !res->fail[0])
        snprintf(res->fail, sizeof res->fail, "%s", first_error(s));
    rc = res->ok && !w->failed && !w->lost ? 0 : -1;
    if (w->failed) res->ok = 0;
    ev_loop_destroy(s->main_ev);
out_threads:
    wb_threads_free(s);
    if (s->sc->teardown) s->sc->teardown(s);
out:
    free(s);
    free(w);
    return rc;
}

void wb_result_free(wb_result *r)
{
    free(r->series);
    r->series = NULL;
    r->nseries = r->cap_series = 0;
}

double wb_rate(const wb_result *r)
{
    if (r->seconds <= 0) return 0;
    if (r->scenario == WB_CONNECT) return (double)r->c.opened / r->seconds;
    return (double)r->c.msgs_rx / r->seconds;
}

double wb_saturated(const wb_result *r)
{
    /* Its busiest thread at a core's limit, or all its threads at the CPUs it may use: -t 2
     * pinned to one CPU has each thread at half a core, and the two at all of it. */
    double all = r->cpus && r->seconds > 0 ? (r->cpu_user + r->cpu_sys) / r->seconds / r->cpus : 0;
    double share = r->busy_max > all ? r->busy_max : all;
    return share >= 0.9 ? share : 0;
}

wb_machine_share wb_machine(const wb_result *r)
{
    double all = r->mach.busy + r->mach.idle + r->mach.steal;
    if (all <= 0) return (wb_machine_share){-1, -1, -1};
    double others =
        r->mach.busy - r->cpu_user - r->cpu_sys - (r->server_cpu > 0 ? r->server_cpu : 0);
    return (wb_machine_share){r->mach.idle / all, r->mach.steal / all,
                              others > 0 ? others / all : 0};
}
