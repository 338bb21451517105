/* Minimal unit-test harness: each check prints one TAP line ("ok N - name" or "not ok N - name").
 * tests/run counts the lines of every test program; a program that dies mid-way counts as a
 * failure of its own.  Include once per test program. */
#ifndef WSK_TEST_H
#define WSK_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int test_n, test_failed;

/* One named check. */
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        ++test_n;                                                                                  \
        if (cond) {                                                                                \
            printf("ok %d - ", test_n);                                                            \
        } else {                                                                                   \
            ++test_failed;                                                                         \
            printf("not ok %d - %s:%d: (%s) ", test_n, __FILE__, __LINE__, #cond);                 \
        }                                                                                          \
        printf(__VA_ARGS__);                                                                       \
        putchar('\n');                                                                             \
    } while (0)

/* A silent assertion inside a loop: 1 when cond holds; otherwise prints what failed as a TAP
 * comment and yields 0, counting nothing.  Fold the results and record the loop as a whole with
 * one CHECK afterwards. */
#define EXPECT(cond, ...)                                                                          \
    ((cond) ? 1                                                                                    \
            : (fprintf(stdout, "# %s:%d: expected %s: ", __FILE__, __LINE__, #cond),               \
               fprintf(stdout, __VA_ARGS__), fputc('\n', stdout), 0))

/* Copies s[0..n) to the end of a 64 KiB buffer that is followed by a PROT_NONE page, so a parser
 * that reads s[n] faults (picohttpparser's trick).  Each call reuses the same buffer. */
static inline char *guarded(const void *s, size_t n)
{
    enum { AREA = 1 << 16 };
    static char *area;
    if (!area) {
        size_t pg = (size_t)sysconf(_SC_PAGESIZE);
        char *m = mmap(NULL, AREA + pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED || mprotect(m + AREA, pg, PROT_NONE) != 0) abort();
        area = m;
    }
    if (n > AREA) abort();
    char *p = area + AREA - n;
    if (n) memmove(p, s, n);
    return p;
}

#define TEST_DONE() (fflush(stdout), test_failed ? 1 : 0)

#endif
