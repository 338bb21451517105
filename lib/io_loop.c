/* wsk_loop: what every socket of one libev loop shares.
 *
 * The receive buffer: every read of every socket lands in the same WSK_RBUF_SIZE bytes and is
 * parsed in place, so a connection owns no receive memory while its messages arrive whole.
 * The flush: sends only append to a socket's queue and put the socket on the dirty list; an
 * ev_prepare watcher, which libev runs just before it waits for events again, writes each dirty
 * socket once.  So whatever a turn of the loop sends to a socket leaves in one writev. */
#include "internal.h"
#include "group.h"
#include "pmd_conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void default_log(void *arg, int level, const char *msg)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    (void)arg;
    fprintf(stderr, "wskit: %s: %s\n", names[level & 3], msg);
}

void wsk_log(wsk_loop *loop, int level, const char *fmt, ...)
{
    if (!loop->log_fn || level > loop->log_level) return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    loop->log_fn(loop->log_arg, level, line);
}

void wsk_loop_set_log(wsk_loop *loop, int max_level,
                      void (*fn)(void *arg, int level, const char *msg), void *arg)
{
    loop->log_level = max_level;
    loop->log_fn = fn;
    loop->log_arg = arg;
}

static void cache_trim(wsk_loop *loop);
static void cache_shrink(wsk_loop *loop, unsigned keep);

/* The end of a loop turn: one write per dirty socket; sockets that ended are freed here, where
 * no handler can still hold them. */
void wsk_loop_reap(wsk_loop *loop)
{
    while (loop->dirty) {
        struct wsk_ws *list = loop->dirty;
        loop->dirty = NULL;
        while (list) {
            struct wsk_ws *c = list;
            list = c->dirty_next;
            c->flags &= ~WSK_F_DIRTY;
            /* A socket waiting for EV_WRITE is written from its watcher: the kernel said it
             * is full, and asking again would only cost a system call per send. */
            if (c->state == WSK_ST_DEAD)
                wsk_conn_free(c);
            else if (!(c->flags & WSK_F_WANT_WRITE))
                wsk_flush(c);
        }
    }
    cache_trim(loop);
    /* The turn's publishes for other loops of a group leave with its writes. */
    if (loop->group && loop->group->nout) wsk_group_flush(loop->group);
}

static void on_prepare(struct ev_loop *ev, ev_prepare *w, int revents)
{
    (void)ev;
    (void)revents;
    wsk_loop_reap(w->data);
}

wsk_loop *wsk_loop_new(struct ev_loop *ev)
{
    wsk_loop *loop = calloc(1, sizeof *loop);
    if (!loop) return NULL;
    loop->ev = ev ? ev : ev_default_loop(0);
    loop->rbuf = malloc(WSK_RBUF_SIZE);
    if (!loop->ev || !loop->rbuf) {
        free(loop->rbuf);
        free(loop);
        return NULL;
    }
    loop->log_level = WSK_LOG_WARN;
    loop->log_fn = default_log;
    ev_prepare_init(&loop->flush_watcher, on_prepare);
    loop->flush_watcher.data = loop;
    ev_prepare_start(loop->ev, &loop->flush_watcher);
    ev_unref(loop->ev); /* the flush watcher alone must not keep ev_run going */
    return loop;
}

void wsk_loop_free(wsk_loop *loop)
{
    if (!loop) return;
    wsk_loop_reap(loop);
    ev_ref(loop->ev);
    ev_prepare_stop(loop->ev, &loop->flush_watcher);
    cache_shrink(loop, 0);
    wsk_pmd_loop_free(loop);
    free(loop->rbuf);
    free(loop);
}

struct ev_loop *wsk_loop_ev(wsk_loop *loop)
{
    return loop->ev;
}

/* Blocks of the default size are recycled through a per-loop cache: an echo or chat server
 * fills and frees one per socket per turn.  They hold a frame header more than the default size,
 * so a 16 KiB message (the largest TLS record) is one cached block too.  Their capacity is
 * WSK_BLOCK_CACHED.
 *
 * The cache keeps as many blocks as were in use at once during the last WSK_BLOCK_TRIM_MS (at
 * least WSK_BLOCK_CACHE), not a fixed count: 64 sockets echoing 32 KiB each per turn use about
 * 200 blocks, and blocks malloc'd and freed every turn move the top of the heap, whose trimming
 * by glibc then costs brk calls and fresh pages every turn (depending on the heap's layout: a
 * bimodal 1 KiB echo at 0.6 or 2.5 s of server CPU per million messages).  The free blocks are
 * listed through their own first 8 bytes (refs and len, unused while a block is free; aligned,
 * so leak checkers still see the list), so the cache itself never allocates. */
static wsk_block *cache_pop(wsk_loop *loop)
{
    wsk_block *b = loop->free_blocks;
    memcpy(&loop->free_blocks, (void *)b, sizeof b);
    loop->nfree_blocks--;
    return b;
}

/* Frees cached blocks until at most `keep` are left. */
static void cache_shrink(wsk_loop *loop, unsigned keep)
{
    while (loop->nfree_blocks > keep) free(cache_pop(loop));
}

/* Once per WSK_BLOCK_TRIM_MS, at the end of a turn: the blocks unused in the last period go. */
static void cache_trim(wsk_loop *loop)
{
    uint32_t now = wsk_ms(loop);
    if (now - loop->blocks_trim_ms < WSK_BLOCK_TRIM_MS) return;
    loop->blocks_trim_ms = now;
    unsigned want = loop->blocks_peak > WSK_BLOCK_CACHE ? loop->blocks_peak : WSK_BLOCK_CACHE;
    cache_shrink(loop, want > loop->blocks_out ? want - loop->blocks_out : 0);
    loop->blocks_peak = loop->blocks_out;
}

wsk_block *wsk_block_new(wsk_loop *loop, size_t cap)
{
    wsk_block *b;
    if (cap <= WSK_BLOCK_CACHED) {
        if (loop->nfree_blocks) {
            b = cache_pop(loop);
        } else {
            b = malloc(sizeof *b + WSK_BLOCK_CACHED);
            if (!b) return NULL;
            loop->blocks_malloced++;
        }
        cap = WSK_BLOCK_CACHED;
        if (++loop->blocks_out > loop->blocks_peak) loop->blocks_peak = loop->blocks_out;
    } else {
        if (cap > UINT32_MAX - sizeof *b) return NULL;
        b = malloc(sizeof *b + cap);
        if (!b) return NULL;
    }
    b->refs = 1;
    b->len = 0;
    b->cap = (uint32_t)cap;
    return b;
}

void wsk_block_unref(wsk_loop *loop, wsk_block *b)
{
    if (--b->refs) return;
    if (b->cap != WSK_BLOCK_CACHED) {
        free(b);
        return;
    }
    loop->blocks_out--;
    memcpy((void *)b, &loop->free_blocks, sizeof b);
    loop->free_blocks = b;
    loop->nfree_blocks++;
}
