#include "io_tls.h"
#include "io_transport.h"
int wsk_tls_server_config(wsk_ctx *ctx)
{
    (void)ctx;
    return WSK_ERR_TLS;
}
int wsk_tls_accept(struct wsk_ws *c)
{
    (void)c;
    return WSK_ERR_TLS;
}
void wsk_tls_ctx_free(wsk_ctx *ctx)
{
    (void)ctx;
}
