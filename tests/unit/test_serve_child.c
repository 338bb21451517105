/* wsserve's program helpers (cmd/serve_child.h): output cut into lines whatever the reads look
 * like (every split point, one byte at a time), CRLF, lines over LINES_MAX in pieces, a stop
 * from the emitter; the stdin buffer through a real pipe. */
#include "serve_child.h"
#include "test.h"

#include <fcntl.h>
#include <signal.h>

/* What an emitter saw: lines joined by '|', so a split shows as a different string. */
struct seen {
    char s[4096];
    size_t n, lines, stop_after;
};

static int record(void *arg, const char *p, size_t n)
{
    struct seen *v = arg;
    if (v->lines++ && v->n < sizeof v->s - 1) v->s[v->n++] = '|';
    for (size_t i = 0; i < n && v->n < sizeof v->s - 1; i++) v->s[v->n++] = p[i];
    v->s[v->n] = 0;
    return !v->stop_after || v->lines < v->stop_after;
}

/* The lengths of what was emitted. */
struct lens {
    size_t len[8], k;
};

static int lengths(void *arg, const char *p, size_t n)
{
    struct lens *ls = arg;
    (void)p;
    if (ls->k < 8) ls->len[ls->k] = n;
    ls->k++;
    return 1;
}

/* Feeds in[0..n) cut at a and b (a <= b <= n), then EOF. */
static void feed3(struct seen *v, const char *in, size_t n, size_t a, size_t b)
{
    struct lines l = {0};
    memset(v, 0, sizeof *v);
    lines_feed(&l, in, a, record, v);
    lines_feed(&l, in + a, b - a, record, v);
    lines_feed(&l, in + b, n - b, record, v);
    lines_end(&l, record, v);
    lines_free(&l);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    static const char in[] = "one\ntwo\r\n\nfour\nfive";
    const char *want = "one|two||four|five";
    size_t n = strlen(in), good = 0, cases = 0;
    struct seen v;
    for (size_t a = 0; a <= n; a++)
        for (size_t b = a; b <= n; b++, cases++) {
            feed3(&v, in, n, a, b);
            good += EXPECT(!strcmp(v.s, want), "cut at %zu, %zu: %s", a, b, v.s);
        }
    CHECK(good == cases, "lines at every pair of split points (%zu of %zu)", good, cases);

    struct lines l = {0};
    memset(&v, 0, sizeof v);
    for (size_t i = 0; i < n; i++) lines_feed(&l, in + i, 1, record, &v);
    lines_end(&l, record, &v);
    CHECK(!strcmp(v.s, want), "one byte at a time: %s", v.s);

    /* A line of 2.5 x LINES_MAX, begun in one read and ended in another: two full pieces and
     * the rest. */
    size_t big = LINES_MAX * 5 / 2;
    char *p = malloc(big + 1);
    memset(p, 'x', big);
    p[big] = '\n';
    struct lens ls = {0};
    lines_feed(&l, p, 1000, lengths, &ls);
    CHECK(ls.k == 0, "no line before its newline");
    lines_feed(&l, p + 1000, big + 1 - 1000, lengths, &ls);
    CHECK(ls.k == 3 && ls.len[0] == LINES_MAX && ls.len[1] == LINES_MAX &&
              ls.len[2] == big - 2 * LINES_MAX,
          "a line over LINES_MAX goes in pieces (%zu: %zu, %zu, %zu)", ls.k, ls.len[0], ls.len[1],
          ls.len[2]);
    lines_free(&l);
    free(p);

    memset(&v, 0, sizeof v);
    v.stop_after = 2;
    lines_feed(&l, "a\nb\nc\nd\n", 8, record, &v);
    CHECK(v.lines == 2 && !strcmp(v.s, "a|b"), "the emitter stops the feed: %s", v.s);
    lines_free(&l);

    /* The stdin buffer: appends with a prefix, writes through a pipe, reports EPIPE. */
    int fd[2];
    CHECK(pipe(fd) == 0, "a pipe");
    fcntl(fd[1], F_SETFL, O_NONBLOCK);
    struct pipebuf b = {.max = 70 * 65536};
    CHECK(pipebuf_append(&b, NULL, 0, "x", b.max, 1) == -1 && pipebuf_pending(&b) == 0,
          "an append past the buffer's cap is refused whole");
    pipebuf_append(&b, "7\t", 2, "hi", 2, 1);
    CHECK(pipebuf_pending(&b) == 5 && pipebuf_write(&b, fd[1]) == 0 && pipebuf_pending(&b) == 0,
          "prefix, message and newline written");
    char got[16] = {0};
    CHECK(read(fd[0], got, sizeof got) == 5 && !memcmp(got, "7\thi\n", 5), "as one line");
    static char chunk[65536];
    int full = 0;
    for (int i = 0; i < 64 && !full; i++) {
        pipebuf_append(&b, NULL, 0, chunk, sizeof chunk, 0);
        full = pipebuf_write(&b, fd[1]) == 1;
    }
    CHECK(full && pipebuf_pending(&b) > 0, "a full pipe leaves bytes waiting (%zu)",
          pipebuf_pending(&b));
    close(fd[0]);
    CHECK(pipebuf_write(&b, fd[1]) == -1 && pipebuf_pending(&b) == 0,
          "the reader gone: -1 and the buffer emptied");
    close(fd[1]);
    pipebuf_free(&b);
    return TEST_DONE();
}
