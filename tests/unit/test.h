/* Minimal unit-test harness: each check prints one TAP line ("ok N - name" or "not ok N - name").
 * tests/run counts the lines of every test program; a program that dies mid-way counts as a
 * failure of its own.  Include once per test program. */
#ifndef WSK_TEST_H
#define WSK_TEST_H

#include "wskit.h"

#include <arpa/inet.h>
#include <ev.h>
#include <malloc.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
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

/* Appends printf-style text to the string buf of cap bytes: a log of what handlers saw, in
 * order, that one strcmp can check. */
static inline void test_append(char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline void test_append(char *buf, size_t cap, const char *fmt, ...)
{
    size_t n = strlen(buf);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + n, cap - n, fmt, ap);
    va_end(ap);
}

/* Seconds on the monotonic clock. */
static inline double test_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs step (a turn of the event loop and a short poll, say) until cond holds, for at most 5 s.
 * Tests wait for the state they check, never for a fixed time: the suite also runs under
 * valgrind and ASan, where everything is slower.  CHECK(cond) afterwards. */
#define SPIN_UNTIL(cond, step)                                                                     \
    do {                                                                                           \
        double until_ = test_now() + 5;                                                            \
        while (!(cond) && test_now() < until_) {                                                   \
            step;                                                                                  \
        }                                                                                          \
    } while (0)

#define TEST_DONE() (fflush(stdout), test_failed ? 1 : 0)

/* Bytes allocated now: from ASan's allocator when it replaces malloc, else glibc's count (every
 * arena's).  The process's: threads that allocate meanwhile move it too. */
size_t __sanitizer_get_current_allocated_bytes(void) __attribute__((weak));
static inline size_t test_allocated(void)
{
    if (__sanitizer_get_current_allocated_bytes) return __sanitizer_get_current_allocated_bytes();
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

/* The loop of a test that runs the library's servers and clients: SIGPIPE ignored, *ev the
 * default libev loop, and a wsk_loop on it whose errors stay off the TAP output.  Aborts when
 * the loop cannot be made. */
static inline wsk_loop *test_loop(struct ev_loop **ev)
{
    signal(SIGPIPE, SIG_IGN);
    *ev = ev_default_loop(0);
    wsk_loop *loop = wsk_loop_new(*ev);
    if (!loop) abort();
    wsk_loop_set_log(loop, WSK_LOG_ERROR, NULL, NULL);
    return loop;
}

/* Sends req[0..n) to 127.0.0.1:port from a blocking socket while the loop ev runs, and reads
 * the answer into resp (NUL-terminated) until it holds `until`.  Bounded: 2000 turns of the
 * loop, each waiting at most 1 ms for the answer.  Returns the socket (the caller closes it),
 * -1 when it could not connect or send. */
static inline int test_exchange(struct ev_loop *ev, unsigned port, const char *req, size_t n,
                                const char *until, char *resp, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) return -1;
    if (write(fd, req, n) != (ssize_t)n) return -1;
    size_t got = 0;
    for (int i = 0; i < 2000 && !memmem(resp, got, until, strlen(until)); i++) {
        ev_run(ev, EVRUN_NOWAIT);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 1) == 1) {
            ssize_t r = read(fd, resp + got, cap - 1 - got);
            if (r <= 0) break;
            got += (size_t)r;
        }
    }
    resp[got] = 0;
    return fd;
}

/* A loopback port nothing listens on (it was free a moment ago). */
static inline unsigned test_free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

#endif
