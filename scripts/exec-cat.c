/* cat, as cheap to start as a program can be: scripts/bench-exec runs it per connection through
 * wsserve --exec and websocketd to measure the servers' own cost of a connection with a program.
 *
 * /bin/cat is dynamically linked: mapping libc and relocating it costs several times what the
 * servers spend per connection (scripts/bench-exec's CPU table shows both), so connections per
 * second through /bin/cat measure the machine's exec, the same for both servers.  Built static;
 * on x86_64 also without libc (system calls by hand), so its start is execve and a few page
 * faults.  Copies stdin to stdout until EOF: each line back as it arrives. */
#if defined(__x86_64__)
static long sys3(long nr, long a, long b, long c)
{
    long r;
    __asm__ volatile("syscall"
                     : "=a"(r)
                     : "a"(nr), "D"(a), "S"(b), "d"(c)
                     : "rcx", "r11", "memory");
    return r;
}
static long rd(char *b, long n)
{
    return sys3(0, 0, (long)b, n); /* read(0, b, n) */
}
static long wr(const char *b, long n)
{
    return sys3(1, 1, (long)b, n); /* write(1, b, n) */
}
static void quit(int status)
{
    for (;;) sys3(231, status, 0, 0); /* exit_group */
}
#define ENTRY __attribute__((force_align_arg_pointer)) void _start(void)
#else
#include <unistd.h>
static long rd(char *b, long n)
{
    return (long)read(0, b, (size_t)n);
}
static long wr(const char *b, long n)
{
    return (long)write(1, b, (size_t)n);
}
static void quit(int status)
{
    _exit(status);
}
#define ENTRY int main(void)
#endif

ENTRY
{
    static char buf[4096];
    for (;;) {
        long n = rd(buf, sizeof buf);
        if (n <= 0) quit(0);
        for (long off = 0; off < n;) {
            long w = wr(buf + off, n - off);
            if (w <= 0) quit(1);
            off += w;
        }
    }
}
