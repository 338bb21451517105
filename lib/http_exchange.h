/* The request a handler sees and the response it builds (internal; opaque in wskit.h). */
#ifndef WSK_HTTP_EXCHANGE_H
#define WSK_HTTP_EXCHANGE_H

#include "internal.h"
#include "parse_http.h"

struct wsk_request {
    const wsk_http_request *h; /* parsed head, pointing into the connection's bytes */
    const uint8_t *body;
    size_t body_len;
    const char *path, *query; /* split from h->target */
    size_t path_len, query_len;
    int fd;
};

struct wsk_response {
    int status;
    int upgrade;      /* answering an upgrade request */
    wsk_dbuf headers; /* "Name: value\r\n" lines added by the handler */
    wsk_dbuf body;
    void *data;         /* upgrade: user data of the new socket */
    char protocol[128]; /* upgrade: chosen subprotocol, "" for none */
    /* Upgrade: the request, whose offered subprotocols wsk_response_set_protocol checks. */
    const struct wsk_request *req;
    wsk_deferred *deferred; /* wsk_response_defer was called: the answer comes later */
};

void wsk_request_init(struct wsk_request *r, const wsk_http_request *h, int fd);
void wsk_response_init(struct wsk_response *res, int upgrade);
void wsk_response_free(struct wsk_response *res);
/* The standard reason phrase of an HTTP status. */
const char *wsk_http_reason(int status);
/* Queues status line, headers (plus Content-Length and Connection) and body on c.  0 or < 0. */
int wsk_response_queue(struct wsk_ws *c, const struct wsk_response *res, int keepalive,
                       int head_only);
/* The request handler deferred its answer (res->deferred, cleared here).  1: res became the
 * fallback (taken over, not to be freed), c waits without reading and the deferral's timer
 * runs; the answer keeps c open for the next request when keepalive is 1.  0: res is to be sent
 * now as usual (the handler answered before it returned: res holds the answer) or dropped (the
 * handler ended c). */
int wsk_deferred_start(struct wsk_ws *c, struct wsk_response *res, int keepalive, int head_only);
/* c waits for a deferred answer and the client sent more behind the request (pipelined): the
 * answer closes c (those bytes were read, and are not kept for after it). */
void wsk_deferred_pipelined(struct wsk_ws *c);
/* c, a server connection waiting for a deferred answer, is ending: the answer will not go. */
void wsk_deferred_gone(struct wsk_ws *c);
/* Queues a short text/plain refusal and ends the connection once it is written; extra is an
 * optional raw header line block ("Name: value\r\n"). */
void wsk_http_refuse(struct wsk_ws *c, int status, const char *why, const char *extra);

#endif
