/* TCP sockets: listening, accepting, reading and writing without blocking or SIGPIPE. */
#include "internal.h"
#include "io_transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24 /* Linux 4.2; older headers lack it */
#endif

int wsk_tcp_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* reuse_port: SO_REUSEPORT, so that several processes (each its own listener) share the port and
 * the kernel spreads new connections over them.  Failing to set it is an error: without it the
 * bind of the second process would fail anyway, with a less helpful errno. */
static int listen_one(const struct sockaddr *sa, socklen_t len, int dual, int reuse_port)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    if (sa->sa_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, dual ? &zero : &one, sizeof one);
    if (bind(fd, sa, len) < 0 || listen(fd, 1024) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* Opens listening sockets for host:port into fds (at most max), with SO_REUSEPORT when
 * reuse_port; returns how many, or WSK_ERR_DNS / WSK_ERR_IO.  "*" listens on [::] accepting
 * IPv4 too (or 0.0.0.0 without IPv6). */
int wsk_tcp_listen(const char *host, unsigned port, int reuse_port, int *fds, int max)
{
    if (!host || !*host) host = "127.0.0.1";
    if (!strcmp(host, "*")) {
        struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
        int fd = listen_one((struct sockaddr *)&a6, sizeof a6, 1, reuse_port);
        if (fd < 0) {
            struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons(port)};
            fd = listen_one((struct sockaddr *)&a4, sizeof a4, 0, reuse_port);
        }
        if (fd < 0) return WSK_ERR_IO;
        fds[0] = fd;
        return 1;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res;
    char pstr[8];
    snprintf(pstr, sizeof pstr, "%u", port);
    if (getaddrinfo(host, pstr, &hints, &res) != 0) return WSK_ERR_DNS;
    int n = 0, err = 0;
    for (struct addrinfo *ai = res; ai && n < max; ai = ai->ai_next) {
        int fd = listen_one(ai->ai_addr, ai->ai_addrlen, 0, reuse_port);
        if (fd < 0) {
            err = errno;
            continue;
        }
        fds[n++] = fd;
        /* A name may resolve to the same address twice (once per socket type); one is enough,
         * and port 0 must not give two different ports. */
        if (port == 0) break;
    }
    freeaddrinfo(res);
    if (n == 0) {
        errno = err;
        return WSK_ERR_IO;
    }
    return n;
}

/* "1.2.3.4:port", "[::1]:port" (as wsk_addr_string). */
static const char *sockaddr_string(const struct sockaddr_storage *ss, char *buf, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (cap == 0) return buf;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        snprintf(buf, cap, "%s:%u", host, (unsigned)ntohs(a->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        snprintf(buf, cap, "[%s]:%u", host, (unsigned)ntohs(a->sin6_port));
    } else {
        snprintf(buf, cap, "unix");
    }
    return buf;
}

/* Frames are written whole, once per loop iteration, so Nagle's algorithm would only add
 * latency: every socket of ours has TCP_NODELAY, set here and in wsk_tcp_accept only. */
static void no_delay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* Accepts one connection, non-blocking, with TCP_NODELAY.  -1 with *err = errno; with peer,
 * the client's address goes to peer[0..cap), taken from accept itself (a client that has
 * already reset the connection has no address for getpeername any more). */
int wsk_tcp_accept(int lfd, int *err, char *peer, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int fd = accept4(lfd, peer ? (struct sockaddr *)&ss : NULL, peer ? &len : NULL,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        *err = errno;
        return -1;
    }
    if (peer) sockaddr_string(&ss, peer, cap);
    no_delay(fd);
    return fd;
}

int wsk_tcp_connect(const struct sockaddr *to, unsigned to_len, const struct sockaddr *from,
                    unsigned from_len, int *err)
{
    int fd = socket(to->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *err = errno;
        return -1;
    }
    no_delay(fd);
    if (from) {
        /* Only the source address is chosen: without this the kernel reserves a port at bind
         * time, for every destination, and a client opening tens of thousands of connections
         * from a few addresses runs out of ports; with it connect picks the port per 4-tuple. */
        int one = 1;
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    }
    int r = from ? bind(fd, from, from_len) : 0;
    if (r == 0) r = connect(fd, to, to_len);
    if (r < 0 && errno != EINPROGRESS) {
        *err = errno;
        close(fd);
        return -1;
    }
    *err = r < 0 ? EINPROGRESS : 0;
    return fd;
}

const char *wsk_addr_string(int fd, char *buf, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (cap == 0) return buf;
    if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0) {
        snprintf(buf, cap, "?");
        return buf;
    }
    return sockaddr_string(&ss, buf, cap);
}

static long read_result(ssize_t n)
{
    if (n > 0) return n;
    if (n == 0) return WSK_ERR_EOF;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return WSK_ERR_AGAIN;
    return WSK_ERR_IO;
}

long wsk_io_read(struct wsk_ws *c, uint8_t *buf, size_t cap)
{
    if (c->flags & WSK_F_TLS) return wsk_tls_read(c, buf, cap);
    return read_result(read(c->io.fd, buf, cap));
}

long wsk_io_readv(struct wsk_ws *c, const struct iovec *iov, int n)
{
    /* A TLS record is decrypted into one buffer; the next read takes the rest. */
    if (c->flags & WSK_F_TLS) return wsk_tls_read(c, iov[0].iov_base, iov[0].iov_len);
    return read_result(readv(c->io.fd, iov, n));
}

long wsk_io_writev(struct wsk_ws *c, const struct iovec *iov, int n)
{
    if (c->flags & WSK_F_TLS) return wsk_tls_writev(c, iov, n);
    struct msghdr mh = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n};
    ssize_t w = sendmsg(c->io.fd, &mh, MSG_NOSIGNAL);
    if (w >= 0) return w;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return WSK_ERR_AGAIN;
    return WSK_ERR_IO;
}

void wsk_io_release(struct wsk_ws *c)
{
    if (c->flags & WSK_F_TLS) wsk_tls_release(c);
}

const char *wsk_io_failure(struct wsk_ws *c)
{
    return c->flags & WSK_F_TLS ? wsk_tls_failure(c) : "connection failed";
}
