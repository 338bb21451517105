/* wsserve's console (serve.h): a browser's GET / gets a page to talk to this server
 * (cmd/console.html, embedded at build time by the Makefile as console_html[]).  The page
 * reads the mode from the <body data-mode> the server fills in. */
#include "serve.h"

#include <string.h>

extern const unsigned char console_html[];
extern const unsigned long console_html_len;

/* 1 when the request is a browser's GET or HEAD of "/": its Accept names text/html. */
static int wants_console(const wsk_request *req)
{
    size_t plen, mlen, alen;
    const char *path = wsk_request_path(req, &plen);
    const char *method = wsk_request_method(req, &mlen);
    const char *accept = wsk_request_header(req, "accept", &alen);
    if (plen != 1 || *path != '/' || !accept) return 0;
    if (!(mlen == 3 && !memcmp(method, "GET", 3)) && !(mlen == 4 && !memcmp(method, "HEAD", 4)))
        return 0;
    return memmem(accept, alen, "text/html", 9) != NULL;
}

int serve_console(struct serve *sv, const wsk_request *req, wsk_response *res)
{
    static const char mark[] = "@MODE@";
    if (sv->no_console || !wants_console(req)) return 0;
    const char *page = (const char *)console_html;
    const char *at = memmem(page, console_html_len, mark, sizeof mark - 1);
    size_t head = at ? (size_t)(at - page) : console_html_len;
    wsk_response_add_header(res, "Content-Type", "text/html; charset=utf-8");
    /* The page has no external assets and runs no inline event handlers. */
    wsk_response_add_header(
        res, "Content-Security-Policy",
        "default-src 'self' 'unsafe-inline'; img-src data:; connect-src ws: wss:");
    wsk_response_append_body(res, page, head);
    if (at) {
        wsk_response_append_body(res, sv->mode->name, strlen(sv->mode->name));
        head += sizeof mark - 1;
        wsk_response_append_body(res, page + head, console_html_len - head);
    }
    return 200;
}
