/* wsserve's metrics (serve.h): the server's wsk_stats in Prometheus's text format, on a
 * listener of their own (--metrics [HOST:]PORT, so they never reach the public port by
 * accident) or at a path of the main port (--metrics-path PATH, behind the token when the mode
 * has one). */
#include "cli.h"
#include "serve.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The metrics of srv as the body of res: 200, or 500 when memory is short. */
static int metrics_body(wsk_server *srv, wsk_response *res)
{
    wsk_stats st;
    wsk_server_stats(srv, &st, sizeof st);
    long n = wsk_stats_format(&st, NULL, 0);
    char *text = n > 0 ? malloc((size_t)n + 1) : NULL;
    if (!text) return serve_text(res, 500, "out of memory\n");
    wsk_stats_format(&st, text, (size_t)n + 1);
    /* The content type Prometheus asks for with the text format, version 0.0.4. */
    wsk_response_add_header(res, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    int r = wsk_response_append_body(res, text, (size_t)n);
    free(text);
    return r < 0 ? 500 : 200;
}

static int path_is(const wsk_request *req, const char *want)
{
    size_t n;
    const char *p = wsk_request_path(req, &n);
    return n == strlen(want) && !memcmp(p, want, n);
}

int serve_metrics_request(struct serve *sv, const wsk_request *req, wsk_response *res)
{
    if (!sv->metrics_path || !path_is(req, sv->metrics_path)) return 0;
    if (sv->mode->authorized && !sv->mode->authorized(sv, req)) {
        wsk_response_add_header(res, "WWW-Authenticate", "Bearer");
        return serve_text(res, 401, "the metrics need the token\n");
    }
    return metrics_body(sv->srv, res);
}

/* ----- the listener of --metrics ------------------------------------------------------------- */

static int metrics_only(wsk_server *msrv, const wsk_request *req, wsk_response *res)
{
    struct serve *sv = wsk_server_user(msrv);
    if (!path_is(req, "/metrics")) return serve_text(res, 404, "only /metrics here\n");
    return metrics_body(sv->srv, res);
}

static void metrics_request(wsk_server *msrv, const wsk_request *req, wsk_response *res)
{
    wsk_response_set_status(res, metrics_only(msrv, req, res));
}

/* No WebSocket on the metrics port. */
static int metrics_upgrade(wsk_server *msrv, const wsk_request *req, wsk_response *res)
{
    (void)msrv;
    (void)req;
    wsk_response_append_body(res, "only /metrics here\n", 19);
    return 404;
}

wsk_server *serve_metrics_listen(struct serve *sv, const char *hostport, int quiet)
{
    char host[256];
    unsigned port;
    if (cli_parse_hostport(hostport, host, sizeof host, &port) < 0) {
        fprintf(stderr, "wsserve: invalid --metrics address '%s' ([HOST:]PORT)\n", hostport);
        return NULL;
    }
    wsk_server_opts o;
    wsk_server_opts_init(&o);
    o.max_connections = 64; /* scrapers, not clients */
    o.idle_timeout = 30;
    wsk_handlers h = {.upgrade = metrics_upgrade, .request = metrics_request};
    wsk_server *m = wsk_server_new(wsk_server_loop(sv->srv), &o, &h, sv);
    if (!m) return NULL;
    int r = wsk_server_listen(m, host, port);
    if (r < 0) {
        fprintf(stderr, "wsserve: cannot listen on %s for --metrics: %s\n", hostport,
                r == WSK_ERR_DNS ? "unknown host" : strerror(errno));
        wsk_server_free(m);
        return NULL;
    }
    int v6 = strchr(host, ':') != NULL;
    if (!quiet)
        serve_log(sv, "metrics at http://%s%s%s:%u/metrics", v6 ? "[" : "",
                  *host ? host : "127.0.0.1", v6 ? "]" : "", wsk_server_port(m));
    return m;
}
