/* wscat --subscribe: see topic_tail.h. */
#include "topic_tail.h"
#include "jsonproto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Where one topic stands for us: the last message printed. */
struct pos {
    char *topic;
    unsigned long long offset;
    char epoch[17];
};

struct topic_tail {
    const char *const *topics;
    size_t ntopics;
    const char *file;
    int resume; /* positions are to be asked for (--since, or printed in this run) */
    struct pos *pos;
    size_t npos, cap;
};

static struct pos *pos_find(topic_tail *t, const char *topic)
{
    for (size_t i = 0; i < t->npos; i++)
        if (!strcmp(t->pos[i].topic, topic)) return &t->pos[i];
    return NULL;
}

static struct pos *pos_get(topic_tail *t, const char *topic)
{
    struct pos *p = pos_find(t, topic);
    if (p) return p;
    if (t->npos == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 8;
        struct pos *np = realloc(t->pos, cap * sizeof *np);
        if (!np) return NULL;
        t->pos = np;
        t->cap = cap;
    }
    p = &t->pos[t->npos];
    memset(p, 0, sizeof *p);
    if (!(p->topic = strdup(topic))) return NULL;
    t->npos++;
    return p;
}

/* The file: one "OFFSET EPOCH TOPIC" line per topic. */
static int load(topic_tail *t)
{
    FILE *f = fopen(t->file, "r");
    if (!f) return errno == ENOENT ? 0 : -1;
    char line[512], topic[300], epoch[17];
    unsigned long long off;
    while (fgets(line, sizeof line, f)) {
        struct pos *p;
        if (sscanf(line, "%llu %16s %299s", &off, epoch, topic) != 3 || !(p = pos_get(t, topic)))
            continue;
        p->offset = off;
        memcpy(p->epoch, epoch, sizeof p->epoch);
    }
    fclose(f);
    return 0;
}

/* Rewritten whole and renamed into place: a tail killed mid-write leaves the last good file. */
static void save(const topic_tail *t)
{
    char tmp[4096];
    if (!t->file || snprintf(tmp, sizeof tmp, "%s.tmp", t->file) >= (int)sizeof tmp) return;
    FILE *f = fopen(tmp, "w");
    if (!f) return;
    for (size_t i = 0; i < t->npos; i++)
        if (t->pos[i].offset)
            fprintf(f, "%llu %s %s\n", t->pos[i].offset, t->pos[i].epoch, t->pos[i].topic);
    if (fclose(f) == 0) rename(tmp, t->file);
}

topic_tail *tail_new(const char *const *topics, size_t n, const char *offset_file, int since,
                     const char **err)
{
    topic_tail *t = calloc(1, sizeof *t);
    if (!t) {
        *err = "out of memory";
        return NULL;
    }
    t->topics = topics;
    t->ntopics = n;
    t->file = offset_file;
    t->resume = since;
    if (since && offset_file && load(t) < 0) {
        *err = strerror(errno);
        tail_free(t);
        return NULL;
    }
    return t;
}

void tail_free(topic_tail *t)
{
    if (!t) return;
    for (size_t i = 0; i < t->npos; i++) free(t->pos[i].topic);
    free(t->pos);
    free(t);
}

void tail_subscribe(topic_tail *t, void (*send)(void *arg, const char *text, size_t len), void *arg)
{
    for (size_t i = 0; i < t->ntopics; i++) {
        const struct pos *p = t->resume ? pos_find(t, t->topics[i]) : NULL;
        size_t n;
        char *s = jp_subscribe_request(t->topics[i], p && p->offset, p ? p->offset : 0,
                                       p ? p->epoch : "", &n);
        if (s) send(arg, s, n);
        free(s);
    }
}

int tail_message(topic_tail *t, const void *msg, size_t len, FILE *out, char *warn, size_t cap)
{
    jp_message m;
    if (jp_parse_message(msg, len, &m) == JP_OK) {
        fprintf(out, "%s: ", m.topic);
        fwrite(m.data, 1, m.len, out);
        fputc('\n', out);
        struct pos *p = m.offset ? pos_get(t, m.topic) : NULL;
        if (p) {
            p->offset = m.offset;
            memcpy(p->epoch, m.epoch, sizeof p->epoch);
            t->resume = 1; /* a reconnect resumes from here */
            fflush(out);   /* printed before it is recorded as printed */
            save(t);
        }
        jp_message_free(&m);
        return 0;
    }
    jp_reply r;
    if (jp_parse_reply(msg, len, &r) != JP_OK) return 0;
    if (r.type == JP_R_ERROR) {
        snprintf(warn, cap, "the broker refused: %s: %s", r.error, r.message);
        return 1;
    }
    if (r.type == JP_R_ACK && r.recovered == 0) {
        snprintf(warn, cap,
                 "the broker's history does not reach back to the last message "
                 "printed: some may be missing");
        return 1;
    }
    return 0;
}
