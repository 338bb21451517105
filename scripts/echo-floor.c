/* The floor the kernel sets under a WebSocket echo on this machine: what no echo server can
 * avoid, for scripts/bench-compare --large (the "floor" line beside the binary rows from 16 KiB).
 *
 *   echo-floor PORT        (listens on 127.0.0.1:PORT; built by bench-compare:
 *                           cc -std=c11 -O2 scripts/echo-floor.c -lmbedcrypto)
 *
 * It answers the opening handshake, then per readable socket: one read into one buffer shared by
 * every socket (kept hot in the cache, as wsserve's loop buffer), and one writev of what that read
 * brought: each frame's header rewritten in place without its mask, payload bytes as they came,
 * passed on as they arrive without waiting for the rest of their message.  What the kernel does
 * not take is copied and written when the socket is writable, before the next read.  It does NOT
 * unmask (the client gets its bytes still masked: binary payloads it does not check, except the
 * first of each connection, which wsbench compares with what it sent, and control frames: those
 * are unmasked), validate, assemble a message or keep any limit: so its CPU per message is the
 * reads, the writes and the TCP stack of the same load, the part of a server's figure that
 * belongs to the kernel.  A close is echoed and the socket closed.  Not a WebSocket server: a
 * measuring stick (a server must hold a message whole before its handler sees it, which costs
 * cache at 1 MiB and above: the floor there is further below any server). */
#define _GNU_SOURCE
#include <mbedtls/base64.h>
#include <mbedtls/sha1.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define RBUF    (512 * 1024) /* one receive buffer for every socket, as wsserve's loop has */
#define MAX_IOV 1024

struct conn {
    int fd, open, echoed; /* echoed: a data frame went back unmasked (the client checks one) */
    uint8_t hdr[14];      /* a frame header being gathered, hl bytes of it so far */
    size_t hl;
    uint64_t remaining; /* payload bytes of the current frame still to come */
    uint8_t mask[4];    /* the current frame's key, and where in it the next byte is */
    unsigned moff;
    int unmask, closing; /* the current frame is unmasked (the first data frame); a close */
    uint8_t req[4096];   /* the opening handshake's request */
    size_t reqlen;
    uint8_t *out; /* what the kernel did not take: out[off..olen) */
    size_t off, olen, ocap;
};

static uint8_t rbuf[RBUF];

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void drop(int ep, struct conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->out);
    free(c);
}

/* The request's Sec-WebSocket-Key, answered with 101; 0 while the request is incomplete. */
static int handshake(struct conn *c, const uint8_t *p, size_t n)
{
    if (n > sizeof c->req - 1 - c->reqlen) return -1;
    memcpy(c->req + c->reqlen, p, n);
    c->reqlen += n;
    c->req[c->reqlen] = 0;
    char *end = strstr((char *)c->req, "\r\n\r\n");
    if (!end) return 0;
    const char *k = strcasestr((const char *)c->req, "Sec-WebSocket-Key: ");
    if (!k || k > end) return -1;
    k += 19;
    const char *ke = strchr(k, '\r');
    char buf[128];
    size_t kl = (size_t)(ke - k);
    if (kl > 60) return -1;
    memcpy(buf, k, kl);
    memcpy(buf + kl, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 36);
    unsigned char sha[20], acc[32];
    size_t al;
    mbedtls_sha1_ret((unsigned char *)buf, kl + 36, sha);
    mbedtls_base64_encode(acc, sizeof acc, &al, sha, 20);
    char resp[256];
    int r = snprintf(resp, sizeof resp,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %.*s\r\n\r\n",
                     (int)al, acc);
    if (write(c->fd, resp, (size_t)r) != r) return -1;
    c->open = 1;
    return end + 4 == (char *)c->req + c->reqlen ? 1 : -1; /* wsbench waits for the 101 */
}

/* Writes what is left of out; 1 when it all went, 0 when the socket is full, -1 on error. */
static int flush_out(struct conn *c)
{
    while (c->off < c->olen) {
        ssize_t w = write(c->fd, c->out + c->off, c->olen - c->off);
        if (w < 0) return errno == EAGAIN ? 0 : -1;
        c->off += (size_t)w;
    }
    c->off = c->olen = 0;
    return 1;
}

/* One writev of iov[0..n) (none behind a queue); what the kernel does not take goes to out[].
 * -1 when the socket failed. */
static int put(struct conn *c, struct iovec *iov, int n)
{
    size_t total = 0, sent;
    for (int i = 0; i < n; i++) total += iov[i].iov_len;
    if (c->olen) {
        sent = 0; /* already queued: behind it */
    } else {
        ssize_t w = writev(c->fd, iov, n);
        if (w < 0 && errno != EAGAIN) return -1;
        sent = w < 0 ? 0 : (size_t)w;
    }
    if (sent == total) return 0;
    size_t need = c->olen + total - sent;
    if (need > c->ocap) {
        c->ocap = need * 2;
        if (!(c->out = realloc(c->out, c->ocap))) die("realloc");
    }
    for (int i = 0; i < n; i++) {
        size_t l = iov[i].iov_len;
        if (sent >= l) {
            sent -= l;
            continue;
        }
        memcpy(c->out + c->olen, (uint8_t *)iov[i].iov_base + sent, l - sent);
        c->olen += l - sent;
        sent = 0;
    }
    return 0;
}

static size_t header_size(const uint8_t *h)
{
    unsigned l = h[1] & 127;
    return (l == 126 ? 4 : l == 127 ? 10 : 2) + 4;
}

/* Adds q[0..m) to the read's reply: to the last piece when it follows it, or moved to its end
 * when short (so a read full of small frames goes out as one piece, as wsserve writes them), else
 * as a new piece; a full iov is written first.  q lies in the read's buffer, at or after the
 * last piece's end.  -1 when the socket failed. */
static int add(struct conn *c, struct iovec *iov, int *k, uint8_t *q, size_t m)
{
    if (*k) {
        uint8_t *end = (uint8_t *)iov[*k - 1].iov_base + iov[*k - 1].iov_len;
        if (end != q && m <= 256) q = memmove(end, q, m);
        if (end == q) {
            iov[*k - 1].iov_len += m;
            return 0;
        }
    }
    if (*k == MAX_IOV) {
        if (put(c, iov, *k) < 0) return -1;
        *k = 0;
    }
    iov[(*k)++] = (struct iovec){q, m};
    return 0;
}

/* The frames in p[0..n), as they arrive: a header when it is whole (rewritten without its mask),
 * the payload bytes as they are.  One writev for the read; what the kernel did not take is in
 * out[].  -1 to close. */
static int echo(struct conn *c, uint8_t *p, size_t n)
{
    struct iovec iov[MAX_IOV];
    int k = 0;
    size_t pos = 0;
    while (pos < n) {
        if (c->remaining) {
            size_t m = n - pos < c->remaining ? n - pos : (size_t)c->remaining;
            if (c->unmask)
                for (size_t i = 0; i < m; i++) p[pos + i] ^= c->mask[(c->moff + i) & 3];
            c->moff = (unsigned)((c->moff + m) & 3);
            if (add(c, iov, &k, p + pos, m) < 0) return -1;
            c->remaining -= m;
            pos += m;
            continue;
        }
        /* A header: whole in p, or gathered in c->hdr across reads. */
        size_t need = c->hl >= 2 ? header_size(c->hdr) : n - pos >= 2 ? header_size(p + pos) : 14;
        uint8_t *h;
        if (!c->hl && n - pos >= need) {
            h = p + pos;
            pos += need;
        } else {
            while (c->hl < need && pos < n) {
                c->hdr[c->hl++] = p[pos++];
                if (c->hl == 2) need = header_size(c->hdr);
            }
            if (c->hl < need) break;
            h = c->hdr;
            c->hl = 0;
        }
        size_t hl = need - 4;
        uint64_t len = h[1] & 127;
        if (len == 126) len = (uint64_t)h[2] << 8 | h[3];
        if (len == 127) {
            len = 0;
            for (int i = 2; i < 10; i++) len = len << 8 | h[i];
        }
        unsigned op = h[0] & 15;
        memcpy(c->mask, h + hl, 4);
        c->moff = 0;
        c->remaining = len;
        c->unmask = op >= 8 || !c->echoed; /* control frames, and the first data frame */
        if (op < 8) c->echoed = 1;
        if (op == 8) c->closing = 1;
        /* The reply's header, without the mask bit, ends where the request's key ended. */
        uint8_t *o = h + 4;
        memmove(o, h, hl);
        o[1] &= 127;
        if (h != c->hdr) {
            if (add(c, iov, &k, o, hl) < 0) return -1;
        } else { /* not in p: out now, before the payload that follows in p */
            if ((k && put(c, iov, k) < 0) || put(c, &(struct iovec){o, hl}, 1) < 0) return -1;
            k = 0;
        }
    }
    if (k && put(c, iov, k) < 0) return -1;
    return c->closing && !c->remaining ? -1 : 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: echo-floor PORT\n");
        return 1;
    }
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 1024)) die("listen");
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL}, evs[256];
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    for (;;) {
        int k = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < k; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    c = calloc(1, sizeof *c);
                    c->fd = fd;
                    ev = (struct epoll_event){.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
                }
                continue;
            }
            if (c->olen) { /* writable again: the rest first, then reading resumes */
                int r = flush_out(c);
                if (r == 1) {
                    ev = (struct epoll_event){.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                }
                if (r < 0) drop(ep, c);
                continue;
            }
            ssize_t got = read(c->fd, rbuf, sizeof rbuf);
            if (got == 0 || (got < 0 && errno != EAGAIN)) {
                drop(ep, c);
                continue;
            }
            if (got < 0) continue;
            if ((c->open ? echo(c, rbuf, (size_t)got) : handshake(c, rbuf, (size_t)got)) < 0) {
                drop(ep, c);
            } else if (c->olen) {
                ev = (struct epoll_event){.events = EPOLLOUT, .data.ptr = c};
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
            }
        }
    }
}
