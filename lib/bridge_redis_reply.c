/* hiredis reply objects from one arena per connection (bridge_redis_reply.h). */
#include "bridge_redis_reply.h"

#include <hiredis/read.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include <hiredis/hiredis.h>
#pragma GCC diagnostic pop

#define ALIGN  alignof(max_align_t)
#define PREFIX ALIGN /* before a reply's root: its pool, for freeObject, which gets no more */

struct wsk_rreply_big {
    struct wsk_rreply_big *next;
    alignas(max_align_t) char data[];
};

static void *take(wsk_rreply_pool *p, size_t n)
{
    n = (n + ALIGN - 1) & ~(ALIGN - 1);
    if (!p->base) p->base = malloc(WSK_RREPLY_ARENA);
    if (p->base && n <= WSK_RREPLY_ARENA - p->used) {
        p->used += n;
        return p->base + p->used - n;
    }
    struct wsk_rreply_big *b = malloc(sizeof *b + n);
    if (!b) return NULL;
    b->next = p->bigs;
    p->bigs = b;
    return b->data;
}

/* A reply object for task: the root carries its pool in front; a child takes its place in its
 * parent's elements. */
static redisReply *object(const redisReadTask *task, int type)
{
    wsk_rreply_pool *p = task->privdata;
    redisReply *r;
    if (task->parent) {
        if (!(r = take(p, sizeof *r))) return NULL;
        ((redisReply *)task->parent->obj)->element[task->idx] = r;
    } else {
        char *at = take(p, PREFIX + sizeof *r);
        if (!at) return NULL;
        memcpy(at, &p, sizeof p);
        r = (redisReply *)(void *)(at + PREFIX);
    }
    memset(r, 0, sizeof *r);
    r->type = type;
    return r;
}

static void *create_string(const redisReadTask *task, char *str, size_t len)
{
    char *buf = take(task->privdata, len + 1);
    redisReply *r = buf ? object(task, task->type) : NULL;
    if (!r) return NULL;
    memcpy(buf, str, len);
    buf[len] = 0;
    r->str = buf;
    r->len = len;
    return r;
}

static void *create_array(const redisReadTask *task, int elements)
{
    redisReply **el = NULL;
    if (elements > 0) {
        el = take(task->privdata, (size_t)elements * sizeof *el);
        if (!el) return NULL;
        memset(el, 0, (size_t)elements * sizeof *el);
    }
    redisReply *r = object(task, REDIS_REPLY_ARRAY);
    if (!r) return NULL;
    r->elements = (size_t)(elements > 0 ? elements : 0);
    r->element = el;
    return r;
}

static void *create_integer(const redisReadTask *task, long long value)
{
    redisReply *r = object(task, REDIS_REPLY_INTEGER);
    if (r) r->integer = value;
    return r;
}

static void *create_nil(const redisReadTask *task)
{
    return object(task, REDIS_REPLY_NIL);
}

static void empty(wsk_rreply_pool *p)
{
    while (p->bigs) {
        struct wsk_rreply_big *b = p->bigs;
        p->bigs = b->next;
        free(b);
    }
    p->used = 0;
}

/* hiredis frees roots only: the whole arena goes with one. */
static void free_reply(void *reply)
{
    wsk_rreply_pool *p;
    memcpy(&p, (char *)reply - PREFIX, sizeof p);
    empty(p);
}

static const redisReplyObjectFunctions fns = {
    create_string, create_array, create_integer, create_nil, free_reply,
};

void wsk_rreply_attach(void *reader, wsk_rreply_pool *p)
{
    redisReader *rd = reader;
    rd->fn = (redisReplyObjectFunctions *)&fns; /* hiredis never writes through it */
    rd->privdata = p;
}

void wsk_rreply_free(wsk_rreply_pool *p)
{
    empty(p);
    free(p->base);
    p->base = NULL;
}
