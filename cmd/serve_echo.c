/* wsserve --echo: every message back to its sender, with its type (serve.h). */
#include "serve.h"

#include <stdio.h>

static void echo_message(wsk_ws *ws, const void *data, size_t len, wsk_opcode op)
{
    wsk_send(ws, data, len, op, 1);
}

static int echo_setup(struct serve *sv, wsk_server_opts *so, wsk_handlers *h)
{
    (void)sv;
    (void)so;
    h->message = echo_message;
    return 0;
}

/* A plain GET on the port says what this is and how to connect. */
static int echo_page(struct serve *sv, const wsk_request *req, wsk_response *res)
{
    if (serve_console(sv, req, res)) return 200;
    char url[300], body[1024];
    snprintf(body, sizeof body,
             "wsserve %s: a WebSocket echo server (libwskit).\n"
             "Connect with a WebSocket client, for example:\n"
             "  wscat -c %s/\n"
             "Every message is sent back with its type (text or binary).\n",
             WSK_VERSION, serve_base_url(sv, req, 0, url, sizeof url));
    return serve_text(res, 200, body);
}

const serve_mode serve_echo = {
    .name = "echo",
    .help = "send every message back to its sender, with its type",
    .setup = echo_setup,
    .request = echo_page,
};
