/* Topics of a server (internal side of wsk_subscribe / wsk_publish). */
#ifndef WSK_PUBSUB_H
#define WSK_PUBSUB_H

#include "internal.h"

/* The socket is closing: it leaves all its topics (empty topics are freed). */
void wsk_pubsub_conn_gone(struct wsk_ws *c);
/* Frees every topic of the server. */
void wsk_pubsub_server_free(wsk_server *srv);

#endif
