#include "internal.h"
void wsk_client_http(struct wsk_ws *c, uint8_t *p, size_t n)
{
    (void)c;
    (void)p;
    (void)n;
}
void wsk_client_failed(struct wsk_ws *c, int err, const char *msg)
{
    (void)c;
    (void)err;
    (void)msg;
}
void wsk_ctx_release(wsk_ctx *ctx)
{
    (void)ctx;
}
