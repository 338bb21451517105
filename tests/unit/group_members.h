/* The member servers of a group test: one per loop, each listening on a port of its own, so
 * the test knows which loop a client lands on (test_group.c, test_census.c).  Include after
 * test.h. */
#ifndef WSK_TEST_GROUP_MEMBERS_H
#define WSK_TEST_GROUP_MEMBERS_H

#include "wskit.h"

#include <stdlib.h>

/* srv[i] on loop i of g with options o and handlers h, listening on 127.0.0.1:port[i], a
 * member of g; errors are logged only; aborts when one cannot be made. */
static inline void group_members(wsk_group *g, const wsk_server_opts *o, const wsk_handlers *h,
                                 wsk_server **srv, unsigned *port)
{
    for (unsigned i = 0; i < wsk_group_size(g); i++) {
        wsk_loop *loop = wsk_group_loop(g, i);
        wsk_loop_set_log(loop, WSK_LOG_ERROR, NULL, NULL);
        srv[i] = wsk_server_new(loop, o, h, NULL);
        if (!srv[i] || wsk_server_listen(srv[i], "127.0.0.1", 0) < 0) abort();
        port[i] = wsk_server_port(srv[i]);
        if (wsk_group_add(g, srv[i]) < 0) abort();
    }
}

#endif
