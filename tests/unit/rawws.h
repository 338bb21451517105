/* The client side of the unit tests that play WebSocket clients with plain sockets
 * (test_pubsub.c, test_group.c): reading what arrived, skipping the 101 head, finding frames.
 * Include after test.h. */
#ifndef WSK_TEST_RAWWS_H
#define WSK_TEST_RAWWS_H

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Connects to 127.0.0.1:port and sends, in one write, an upgrade request with the extra header
 * lines `extra` ("" or lines each ending in CRLF) and then tail[0..tail_len) (frames pipelined
 * behind the request); the socket, made non-blocking, or -1. */
static inline int rawws_connect_with(unsigned port, const char *extra, const void *tail,
                                     size_t tail_len)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char req[1024];
    int n = snprintf(req, sizeof req - tail_len,
                     "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s\r\n",
                     extra);
    if (tail_len) memcpy(req + n, tail, tail_len);
    n += (int)tail_len;
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        send(fd, req, (size_t)n, 0) != n) {
        if (fd >= 0) close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

/* The same with nothing behind the request. */
static inline int rawws_connect(unsigned port, const char *extra)
{
    return rawws_connect_with(port, extra, NULL, 0);
}

/* Reads everything the non-blocking fd has into *buf (grown as needed); *eof at EOF.  Until
 * *open, a whole response head is cut off the front, and *open says whether it was a 101.
 * Returns 1 when frames may follow in *buf (the head is gone). */
static inline int rawws_read(int fd, uint8_t **buf, size_t *len, size_t *cap, int *open, int *eof)
{
    for (;;) {
        if (*cap - *len < 65536) {
            *cap = *cap ? *cap * 2 : 131072;
            *buf = realloc(*buf, *cap);
        }
        ssize_t r = recv(fd, *buf + *len, *cap - *len, 0);
        if (r == 0) *eof = 1;
        if (r <= 0) break;
        *len += (size_t)r;
    }
    if (!*open) {
        uint8_t *end = memmem(*buf, *len, "\r\n\r\n", 4);
        if (!end) return 0;
        *open = *len > 12 && !memcmp(*buf + 9, "101", 3);
        size_t head = (size_t)(end + 4 - *buf);
        memmove(*buf, *buf + head, *len - head);
        *len -= head;
    }
    return 1;
}

/* 1 when b[0..len) starts with a whole unmasked frame: its header is *hl bytes, its payload
 * *n. */
static inline int rawws_frame(const uint8_t *b, size_t len, size_t *hl, uint64_t *n)
{
    if (len < 2) return 0;
    *n = b[1] & 127;
    *hl = 2;
    if (*n == 126) {
        if (len < 4) return 0;
        *n = (uint64_t)b[2] << 8 | b[3];
        *hl = 4;
    } else if (*n == 127) {
        if (len < 10) return 0;
        *n = 0;
        for (int i = 0; i < 8; i++) *n = *n << 8 | b[2 + i];
        *hl = 10;
    }
    return len >= *hl + *n;
}

#endif
