/* Minimal unit-test harness: each check prints one TAP line ("ok N - name" or "not ok N - name").
 * tests/run counts the lines of every test program; a program that dies mid-way counts as a
 * failure of its own.  Include once per test program. */
#ifndef WSK_TEST_H
#define WSK_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* A silent assertion inside a loop: counts as one failed check the first time it fails and
 * prints what failed; use CHECK afterwards to record the loop as a whole. */
#define EXPECT(cond, ...)                                                                          \
    ((cond) ? 1                                                                                    \
            : (fprintf(stdout, "# %s:%d: expected %s: ", __FILE__, __LINE__, #cond),               \
               fprintf(stdout, __VA_ARGS__), fputc('\n', stdout), 0))

#define TEST_DONE() (fflush(stdout), test_failed ? 1 : 0)

#endif
