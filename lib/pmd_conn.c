#include "pmd_conn.h"
int wsk_pmd_conn_negotiate(struct wsk_ws *c, const wsk_http_request *req, char *out, size_t cap)
{
    (void)c;
    (void)req;
    (void)out;
    (void)cap;
    return 0;
}
int wsk_pmd_conn_inflate(struct wsk_ws *c, const uint8_t *p, size_t n, int fin, wsk_dbuf *out)
{
    (void)c;
    (void)p;
    (void)n;
    (void)fin;
    (void)out;
    return WSK_ERR_DEFLATE;
}
long wsk_pmd_conn_send(struct wsk_ws *c, const void *data, size_t len, unsigned op)
{
    return wsk_send_frame(c, op, 0, data, len, 0);
}
void wsk_pmd_conn_free(struct wsk_ws *c)
{
    (void)c;
}
void wsk_pmd_loop_free(wsk_loop *loop)
{
    (void)loop;
}
#include <strings.h>
int wsk_compress_mode_parse(const char *name)
{
    static const char *const names[] = {"disable", "shared", "dedicated", "3KB",   "4KB",  "8KB",
                                        "16KB",    "32KB",   "64KB",      "128KB", "256KB"};
    for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++)
        if (!strcasecmp(name, names[i])) return i;
    return WSK_ERR_INVAL;
}
