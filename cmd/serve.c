/* What every wsserve mode shares: the log line and the URL of the server (serve.h). */
#include "serve.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define HOST_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:[]"

void serve_log(const struct serve *sv, const char *fmt, ...)
{
    char line[1024], stamp[40] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (sv->stamps) {
        /* ISO 8601 in UTC with milliseconds: sorts as text and merges with other logs. */
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        size_t n = strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(stamp + n, sizeof stamp - n, ".%03dZ ", (int)(ts.tv_nsec / 1000000));
    }
    /* One write: lines from the servers of several threads do not interleave (stdio may
     * split a line it formats into several writes). */
    char out[sizeof stamp + sizeof line + 16];
    int n = snprintf(out, sizeof out, "%swsserve: %s\n", stamp, line);
    if (n > (int)sizeof out - 1) n = (int)sizeof out - 1;
    if (n > 0 && write(STDERR_FILENO, out, (size_t)n) < 0) return; /* nowhere to say it */
}

const char *serve_base_url(const struct serve *sv, const wsk_request *req, int http, char *buf,
                           size_t cap)
{
    size_t hlen = 0;
    const char *host = wsk_request_header(req, "host", &hlen);
    const char *scheme = http ? (sv->tls ? "https" : "http") : (sv->tls ? "wss" : "ws");
    /* The Host header is what the client typed; one that is no host[:port] is not echoed into
     * commands meant to be pasted. */
    if (host && (!hlen || hlen > 255 || strspn(host, HOST_CHARS) < hlen)) host = NULL;
    if (host)
        snprintf(buf, cap, "%s://%.*s", scheme, (int)hlen, host);
    else
        snprintf(buf, cap, "%s://127.0.0.1:%u", scheme, sv->port);
    return buf;
}

int serve_text(wsk_response *res, int status, const char *body)
{
    wsk_response_add_header(res, "Content-Type", "text/plain; charset=utf-8");
    wsk_response_append_body(res, body, strlen(body));
    return status;
}
