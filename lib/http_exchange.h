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
};

void wsk_request_init(struct wsk_request *r, const wsk_http_request *h, int fd);
void wsk_response_init(struct wsk_response *res, int upgrade);
void wsk_response_free(struct wsk_response *res);
/* The standard reason phrase of an HTTP status. */
const char *wsk_http_reason(int status);
/* Queues status line, headers (plus Content-Length and Connection) and body on c.  0 or < 0. */
int wsk_response_queue(struct wsk_ws *c, const struct wsk_response *res, int keepalive,
                       int head_only);
/* Queues a short text/plain refusal and ends the connection once it is written; extra is an
 * optional raw header line block ("Name: value\r\n"). */
void wsk_http_refuse(struct wsk_ws *c, int status, const char *why, const char *extra);

#endif
