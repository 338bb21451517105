/* Name resolution that does not block the loop (internal).
 *
 * getaddrinfo(3) blocks for as long as DNS takes, so a name runs on a thread of its own, which
 * wakes the loop through an ev_async when it is done; an address ("127.0.0.1", "::1") is
 * resolved at once, without a thread. */
#ifndef WSK_IO_RESOLVE_H
#define WSK_IO_RESOLVE_H

#include <ev.h>
#include <netdb.h>

typedef struct wsk_lookup wsk_lookup;

/* The outcome, on the loop's thread: res (the callee frees it with freeaddrinfo) or NULL with
 * a getaddrinfo error code in err (and errno's value in sys_err for EAI_SYSTEM). */
typedef void (*wsk_lookup_cb)(void *arg, struct addrinfo *res, int err, int sys_err);

/* Resolves host:port for a TCP connection (AF_UNSPEC).  An address resolves at once: the
 * result goes to *res and NULL is returned, *err being 0 (or the error, *res NULL).  A name
 * returns a lookup whose callback runs once from the loop, unless wsk_lookup_cancel comes
 * first; NULL with *err = EAI_SYSTEM when no thread could be started. */
wsk_lookup *wsk_lookup_start(struct ev_loop *ev, const char *host, const char *port,
                             wsk_lookup_cb cb, void *arg, struct addrinfo **res, int *err);

/* Abandons a lookup whose callback has not run yet: it never runs.  A getaddrinfo call in
 * progress cannot be interrupted; its thread finishes alone and frees what it holds. */
void wsk_lookup_cancel(wsk_lookup *l);

#endif
