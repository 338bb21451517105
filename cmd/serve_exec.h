/* The options of wsserve --exec and --dir (serve_exec.c) and the static files they can serve
 * beside the programs (serve_static.c). */
#ifndef WSK_SERVE_EXEC_H
#define WSK_SERVE_EXEC_H

#include "serve_child.h"
#include "wskit.h"

#include <stddef.h>

struct exec_config {
    const char *command;     /* --exec 'COMMAND': run by /bin/sh -c */
    char **argv;             /* -- PROGRAM ARGS...: run without a shell */
    const char *dir;         /* --dir DIR: the path picks a program of DIR */
    const char *static_dir;  /* --static DIR: plain GETs serve its files */
    int listing;             /* --listing: directories without index.html are listed */
    int binary;              /* --binary: raw chunks both ways, binary messages */
    struct child_env env;    /* --passenv, --env */
    unsigned long max_forks; /* --max-forks N: 503 past N running programs; 0 = no limit */
    double close_grace;      /* --close-grace: SIGTERM, then SIGKILL, this long apart; 1 s */
};

/* A plain GET or HEAD of --static DIR: fills res and returns its status (200, 301, 403, 404,
 * 405); 0 when dir is NULL.  Never a file outside DIR: a path with a ".." segment (also
 * percent-encoded) is refused and a symbolic link that resolves outside DIR is not followed. */
int serve_static(const char *dir, int listing, const wsk_request *req, wsk_response *res);

#endif
