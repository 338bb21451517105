/* The member servers of the group tests (test_group.c, test_group_churn.c) obey their clients:
 * "s<topic>" subscribes and "u<topic>" unsubscribes (each answered "ok"), "p<topic>\n<payload>"
 * publishes the payload with the message's opcode (compressed while cmd_compress is set); the
 * count that publish returned on member i goes to cmd_count[i].  Include after test.h. */
#ifndef WSK_TEST_GROUP_CMD_H
#define WSK_TEST_GROUP_CMD_H

#include "wskit.h"

#include <stdatomic.h>
#include <string.h>

static atomic_long cmd_count[8];
static atomic_int cmd_compress;

static void cmd_message(wsk_ws *ws, const void *data, size_t len, wsk_opcode op)
{
    const char *p = data;
    if (!len) return;
    if (p[0] == 's' || p[0] == 'u') {
        if (p[0] == 's')
            wsk_subscribe(ws, p + 1, len - 1);
        else
            wsk_unsubscribe(ws, p + 1, len - 1);
        wsk_send(ws, "ok", 2, WSK_OP_TEXT, 0);
    } else if (p[0] == 'p') {
        const char *nl = memchr(p, '\n', len);
        if (!nl) return;
        long r = wsk_publish(ws, p + 1, (size_t)(nl - p - 1), nl + 1, len - (size_t)(nl + 1 - p),
                             op, atomic_load(&cmd_compress));
        unsigned i;
        wsk_server_group(wsk_ws_server(ws), &i);
        if (i < 8) atomic_store(&cmd_count[i], r);
    }
}

#endif
