/* Unit tests of the client's way to a server: wsk_tcp_connect (lib/io_tcp.c). */
#include "internal.h"
#include "test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

/* A listening socket on 127.0.0.1 with a port from the kernel, in *a. */
static int listener(struct sockaddr_in *a)
{
    socklen_t len = sizeof *a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(a, 0, sizeof *a);
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)a, sizeof *a) < 0 || listen(fd, 4) < 0 ||
        getsockname(fd, (struct sockaddr *)a, &len) < 0)
        abort();
    return fd;
}

/* The outcome of a connect in progress: 0 or the socket's error, once it is writable. */
static int outcome(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int e = 0;
    socklen_t len = sizeof e;
    if (poll(&p, 1, 5000) != 1) return ETIMEDOUT;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len);
    return e;
}

static void tcp_connect(void)
{
    struct sockaddr_in a;
    int lfd = listener(&a), e = -1, nodelay = 0;
    socklen_t len = sizeof nodelay;
    int fd = wsk_tcp_connect((struct sockaddr *)&a, sizeof a, NULL, 0, &e);
    CHECK(fd >= 0 && (e == 0 || e == EINPROGRESS), "wsk_tcp_connect starts a connection (%d)", e);
    CHECK(fd >= 0 && outcome(fd) == 0, "... which connects");
    getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &len);
    CHECK(nodelay, "... with TCP_NODELAY");
    CHECK(fd >= 0 && (fcntl(fd, F_GETFL) & O_NONBLOCK) && (fcntl(fd, F_GETFD) & FD_CLOEXEC),
          "... non-blocking, close-on-exec");
    if (fd >= 0) close(fd);

    struct sockaddr_in from = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000002)};
    fd =
        wsk_tcp_connect((struct sockaddr *)&a, sizeof a, (struct sockaddr *)&from, sizeof from, &e);
    struct sockaddr_in mine;
    len = sizeof mine;
    getsockname(fd, (struct sockaddr *)&mine, &len);
    CHECK(fd >= 0 && outcome(fd) == 0 && mine.sin_addr.s_addr == from.sin_addr.s_addr,
          "a source address is bound before the connect");
    if (fd >= 0) close(fd);

    close(lfd); /* nothing listens on that port any more */
    fd = wsk_tcp_connect((struct sockaddr *)&a, sizeof a, NULL, 0, &e);
    int refused = fd < 0 ? e == ECONNREFUSED : e == EINPROGRESS && outcome(fd) == ECONNREFUSED;
    CHECK(refused, "a closed port: refused, at once or through SO_ERROR");
    if (fd >= 0) close(fd);
}

int main(void)
{
    tcp_connect();
    return TEST_DONE();
}
