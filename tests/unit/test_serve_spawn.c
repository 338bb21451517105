/* wsserve's spawner and reaper (cmd/serve_child.h: serve_spawn.c, serve_reap.c): programs
 * started by the spawner's threads, each with an environment the loop frees once the result
 * is back, reaped by the loop through pidfds and by polling (WSK_NO_PIDFD), every exit status
 * seen, no zombie left.  `make tsan` runs it: the hand-off from the spawner's threads to the
 * loop (and their descriptor tables of their own) must draw no report. */
#include "serve_child.h"
#include "test.h"

#include <errno.h>
#include <stddef.h>
#include <sys/wait.h>

#define N 24

struct prog {
    struct spawn sp;
    struct child_watch w;
    char *argv[4];
    char **envp;
    int status, done;
};

struct run {
    struct reaper reaper;
    struct prog p[N];
    int started, failed, exited, bad_status;
};

static void exited(struct child_watch *w, int st, int err)
{
    struct prog *p = (struct prog *)((char *)w - offsetof(struct prog, w));
    struct run *r = (struct run *)w->r; /* its first member */
    (void)err;
    p->status = st;
    p->done = 1;
    r->exited++;
    if (st != 3 << 8) r->bad_status++;
}

static void spawned(void *arg, struct spawn *sp)
{
    struct run *r = arg;
    struct prog *p = (struct prog *)((char *)sp - offsetof(struct prog, sp));
    env_free(p->envp); /* what the spawner's thread read: the loop's to free now */
    p->envp = NULL;
    if (sp->rc) {
        r->failed++;
        return;
    }
    r->started++;
    for (int i = 0; i < 3; i++) close(sp->fds[i]);
    reaper_watch(&r->reaper, &p->w, sp->pid, sp->pidfd, exited);
}

static void one_run(const char *how)
{
    struct ev_loop *ev = ev_loop_new(0);
    struct run *r = calloc(1, sizeof *r);
    const char *why = reaper_init(&r->reaper, ev);
    struct spawner *s = spawner_new(ev, r->reaper.pidfd, spawned, r);
    CHECK(s != NULL, "%s: a spawner (%s)", how, why ? why : "pidfds");
    for (int i = 0; i < N; i++) {
        struct prog *p = &r->p[i];
        struct envb e;
        struct child_env ce = {0};
        child_envp_begin(&e, &ce, 2);
        env_add(&e, "N", "%d", i);
        p->envp = child_envp_end(&e, &ce);
        p->argv[0] = "sh";
        p->argv[1] = "-c";
        p->argv[2] = "exit 3";
        p->sp.file = "/bin/sh";
        p->sp.argv = p->argv;
        p->sp.envp = p->envp;
        spawner_submit(s, &p->sp);
    }
    SPIN_UNTIL(r->exited + r->failed == N, ev_run(ev, EVRUN_ONCE));
    CHECK(r->started == N && r->exited == N && !r->bad_status,
          "%s: %d programs started on the spawner's threads, every exit seen with its status "
          "(%d started, %d exited, %d with another status)",
          how, N, r->started, r->exited, r->bad_status);
    spawner_free(s);
    int st;
    CHECK(waitpid(-1, &st, WNOHANG) < 0 && errno == ECHILD, "%s: no child left", how);
    ev_loop_destroy(ev);
    free(r);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    one_run("pidfd");
    setenv("WSK_NO_PIDFD", "1", 1);
    one_run("polled");
    return TEST_DONE();
}
