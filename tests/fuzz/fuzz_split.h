/* What the HTTP fuzz targets share: the input in two pieces, each in an allocation of its own
 * exact size (so an over-read is caught), split at a point that follows the content. */
#ifndef WSK_FUZZ_SPLIT_H
#define WSK_FUZZ_SPLIT_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define INSIDE(p, n, buf, len) ((const char *)(p) >= (buf) && (p) + (n) <= (buf) + (len))

/* first: the first `split` bytes; whole: every byte. Freed with fuzz_split_free. */
struct fuzz_split {
    uint32_t hash; /* FNV-1a of the input: the split and any other choice follow it */
    size_t split;
    char *first, *whole;
};

/* The split follows the content (FNV-1a), so inputs stay plain HTTP and every mutation moves
 * it. Aborts when out of memory. */
static void fuzz_split_init(struct fuzz_split *s, const uint8_t *data, size_t size)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < size; ++i) h = (h ^ data[i]) * 16777619u;
    s->hash = h;
    s->split = h % (size + 1);
    s->first = malloc(s->split ? s->split : 1);
    s->whole = malloc(size ? size : 1);
    if (!s->first || !s->whole) abort();
    memcpy(s->first, data, s->split);
    memcpy(s->whole, data, size);
}

static void fuzz_split_free(struct fuzz_split *s)
{
    free(s->first);
    free(s->whole);
}

/* A parser of one kind of head, its output behind a void pointer. */
typedef int (*fuzz_parse_fn)(const char *buf, size_t len, size_t *scanned, void *out);

/* Runs parse over the first piece, then, when that needs more, over the whole input with the
 * scan position kept; and once more over the whole input at once into `once`. A result reached
 * early (a complete head, or an error seen in the first bytes) is the result for the whole
 * input too: aborts when they differ. Returns the result and, in *buf, the piece the parsed
 * pointers point into. */
static int fuzz_parse_split(const struct fuzz_split *s, size_t size, fuzz_parse_fn parse, void *out,
                            void *once, const char **buf)
{
    size_t scanned = 0, scanned_once = 0;
    *buf = s->first;
    int r = parse(s->first, s->split, &scanned, out);
    if (r == 0) {
        *buf = s->whole;
        r = parse(s->whole, size, &scanned, out);
    }
    if (r != parse(s->whole, size, &scanned_once, once)) abort();
    return r;
}

#endif
